//! What a legacy session's GET stream hears from the 2026-07-28 targets it reaches, which have neither GET streams nor `resources/subscribe`: upstream `subscriptions/listen` requests of its own (see [`modern_listen`]) for every list change and the URIs the session subscribed to, its `resources/subscribe` kept on every shard for them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use futures_util::FutureExt;
use serde_json::{json, Value};

use super::jsonrpc::{self, Message};
use super::merge::{self, MODERN_VERSION};
use super::modern_listen::{self, Streams};
use super::plan::{McpPlan, TargetKind};
use super::serve::list_change;
use super::session::Sealed;
use super::subscriptions::Filter;
use crate::proxy::shard::{ShardCtx, ShardMsg};

/// Sessions whose subscriptions a shard keeps beyond those with a GET stream open on it; past
/// this, only those with one are kept.
const SESSIONS_MAX: usize = 4096;

/// The URIs legacy sessions subscribed to at 2026-07-28 targets, on every shard (a session's GET
/// stream and its `resources/subscribe` may be served by different shards), and the GET streams
/// of this shard that listen for them.
#[derive(Default)]
pub struct Subscribed(RefCell<HashMap<Box<str>, Entry>>);

#[derive(Default)]
struct Entry {
    /// (target name, URI as the target knows it)
    uris: Vec<(Arc<str>, Arc<str>)>,
    /// The open GET streams of the session on this shard: told when `uris` change.
    streams: Vec<flume::Sender<()>>,
}

impl Subscribed {
    /// Session `sid` subscribed to `uri` at `target` (`on`), or unsubscribed; its GET streams here
    /// are told when that changes what they listen for.
    pub fn learn(&self, sid: &str, target: &Arc<str>, uri: &Arc<str>, on: bool) {
        let mut all = self.0.borrow_mut();
        if all.len() >= SESSIONS_MAX && !all.contains_key(sid) {
            all.retain(|_, e| {
                e.streams.retain(|s| !s.is_disconnected());
                !e.streams.is_empty()
            });
        }
        let e = all.entry(sid.into()).or_default();
        let at = e.uris.iter().position(|(t, u)| t == target && u == uri);
        match (on, at) {
            (true, None) => e.uris.push((target.clone(), uri.clone())),
            (false, Some(i)) => drop(e.uris.swap_remove(i)),
            _ => return,
        }
        // a full channel already says it changed
        e.streams.retain(|s| !matches!(s.try_send(()), Err(flume::TrySendError::Disconnected(_))));
    }

    /// The URIs session `sid` subscribed to at `target`.
    fn uris(&self, sid: &str, target: &str) -> Vec<Arc<str>> {
        let all = self.0.borrow();
        let e = all.get(sid).map(|e| &e.uris[..]).unwrap_or_default();
        e.iter().filter(|(t, _)| &**t == target).map(|(_, u)| u.clone()).collect()
    }

    /// Tell a GET stream of session `sid` when its subscriptions change; the channel closes when
    /// the session ends.
    fn watch(&self, sid: &str) -> flume::Receiver<()> {
        let (tx, rx) = flume::bounded(1);
        self.0.borrow_mut().entry(sid.into()).or_default().streams.push(tx);
        rx
    }

    /// Session `sid` ended.
    pub fn forget(&self, sid: &str) {
        self.0.borrow_mut().remove(sid);
    }
}

/// `resources/subscribe` (`on`) or `resources/unsubscribe` of `uri` (as target `ti` knows it) in
/// a legacy session: when the session reaches the target in 2026-07-28, which has no such method,
/// every shard keeps it for the session's GET stream, which listens for it there; `false` for a
/// target to forward it to.
pub async fn remember(
    ctx: &ShardCtx,
    plan: &McpPlan,
    session: Option<&Sealed>,
    sid: Option<&str>,
    ti: usize,
    uri: &str,
    on: bool,
) -> bool {
    let (Some(s), Some(sid)) = (session, sid) else { return false };
    let t = &plan.targets[ti];
    if !matches!(t.kind, TargetKind::Http(_)) || !s.target(&t.name).is_some_and(listened) {
        return false;
    }
    let (session, uri): (Arc<str>, Arc<str>) = (sid.into(), uri.into());
    ctx.mcp.subscribed.learn(sid, &t.name, &uri, on);
    for (_, mb) in ctx.others() {
        let msg = ShardMsg::ListenUri { session: session.clone(), target: t.name.clone(), uri: uri.clone(), on };
        let _ = mb.send_async(msg).await;
    }
    true
}

/// A session's upstream that the gateway listens at: stateless, in 2026-07-28.
fn listened(u: &super::session::Upstream) -> bool {
    u.s.is_none() && u.v == MODERN_VERSION
}

/// A GET stream's upstream listens, opened again with what the session subscribes to.
struct Listens<'a> {
    ctx: &'a Rc<ShardCtx>,
    plan: &'a McpPlan,
    sid: Box<str>,
    targets: Vec<usize>,
    caps: Option<Value>,
    changed: flume::Receiver<()>,
    streams: Streams<'a>,
}

impl<'a> Listens<'a> {
    /// What to ask each target for: every list change, and the session's URIs there.
    fn asks(&self) -> Vec<(usize, Value)> {
        let every = Filter { tools: true, prompts: true, resources: true, ..Filter::default() };
        let asks = self.targets.iter().map(|&ti| {
            let uris = self.ctx.mcp.subscribed.uris(&self.sid, &self.plan.targets[ti].name);
            let uris: Vec<&str> = uris.iter().map(|u| &**u).collect();
            (ti, modern_listen::request_params(&every, &uris, self.caps.as_ref()))
        });
        asks.collect()
    }

    /// The next item of the upstream listens (`None` in it: one ended); `None` once all ended or
    /// the session did.
    async fn next(&mut self) -> Option<Option<(usize, Message)>> {
        loop {
            let (changed, streams) = (&self.changed, &mut self.streams);
            let reopen = monoio::select! {
                r = changed.recv_async() => r.is_ok(),
                m = async move { streams.as_mut()?.next().await } => return m,
            };
            if !reopen {
                return None;
            }
            // the new ones are open before the old ones close, so that nothing is missed between
            self.streams = Box::pin(modern_listen::open_all(self.ctx, self.plan, self.asks())).await.0;
        }
    }
}

/// Listen at each 2026-07-28 target `sealed` (session `sid`) reaches statelessly for every kind
/// of list change and the URIs the session subscribes to there, with the client's capabilities;
/// `None` without any. Dropping them closes the upstream listens.
pub async fn open<'a>(ctx: &'a Rc<ShardCtx>, plan: &'a McpPlan, sid: &str, sealed: &Sealed) -> Streams<'a> {
    let targets: Vec<usize> = plan
        .targets
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.kind, TargetKind::Http(_)) && sealed.target(&t.name).is_some_and(listened))
        .map(|(ti, _)| ti)
        .collect();
    if targets.is_empty() {
        return None;
    }
    let caps = sealed.c.as_ref().and_then(|c| c.get("capabilities")).cloned();
    let changed = ctx.mcp.subscribed.watch(sid);
    let mut l = Listens { ctx, plan, sid: sid.into(), targets, caps, changed, streams: None };
    l.streams = modern_listen::open_all(ctx, plan, l.asks()).await.0;
    let s = stream::unfold(Box::new(l), |mut l| async move { Some((l.next().await?, l)) });
    Some(s.boxed_local())
}

/// The next message of the upstream listens; `None` once all of them ended (a target that no
/// longer speaks 2026-07-28 is left out: the session must be initialized again to reach it),
/// pending forever without any.
pub async fn next(s: &mut Streams<'_>) -> Option<(usize, Message)> {
    let Some(streams) = s else { return std::future::pending().await };
    loop {
        match streams.next().await {
            Some(Some(m)) => return Some(m),
            // one ended: the others are still heard
            Some(None) => continue,
            None => return None,
        }
    }
}

/// Take `heard` (from [`next`]) and what else the upstream listens sent meanwhile: a burst of list
/// changes (one per target) adds the gateway's own notification of each kind to `messages` once;
/// resource updates go as the client knows the URI. The streams are gone once all of them ended.
pub fn heard(s: &mut Streams<'_>, plan: &McpPlan, mut heard: Option<(usize, Message)>, messages: &mut Vec<Vec<u8>>) {
    loop {
        let Some((ti, msg)) = heard.take() else {
            *s = None;
            return;
        };
        if let Some(note) = relayed(plan, ti, &msg) {
            if !messages.contains(&note) {
                messages.push(note);
            }
        }
        match next(s).now_or_never() {
            Some(m) => heard = m,
            None => return,
        }
    }
}

/// What the session hears of a notification from an upstream listen at target `ti`: a list change
/// as the gateway's own; a resource update with its URI alone, as the client knows it.
fn relayed(plan: &McpPlan, ti: usize, msg: &Message) -> Option<Vec<u8>> {
    if let Some(change) = list_change(msg) {
        return Some(jsonrpc::notification(change, None));
    }
    let Message::Notification { method, params } = msg else { return None };
    if method != "notifications/resources/updated" {
        return None;
    }
    let uri = params.as_ref()?.get("uri")?.as_str()?;
    let mut p = json!({ "uri": uri });
    merge::prefix_notification(&plan.targets[ti].name, method, &mut p, plan.prefixed);
    Some(jsonrpc::notification(method, Some(&p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_subscriptions_are_kept_by_target_and_its_streams_told_of_changes() {
        let s = Subscribed::default();
        let (py, other): (Arc<str>, Arc<str>) = ("py".into(), "other".into());
        let uri: Arc<str> = "test://static".into();
        let rx = s.watch("s1");
        s.learn("s1", &py, &uri, true);
        assert!(rx.try_recv().is_ok());
        // the same again changes nothing, and says nothing
        s.learn("s1", &py, &uri, true);
        assert!(rx.try_recv().is_err());
        assert_eq!(s.uris("s1", "py"), std::slice::from_ref(&uri));
        assert!(s.uris("s1", "other").is_empty() && s.uris("s2", "py").is_empty());
        s.learn("s1", &other, &uri, false);
        assert!(rx.try_recv().is_err());
        s.learn("s1", &py, &uri, false);
        assert!(rx.try_recv().is_ok() && s.uris("s1", "py").is_empty());
        // the session ends: its streams learn it
        s.forget("s1");
        assert!(rx.recv().is_err());
    }

    #[test]
    fn past_the_bound_only_sessions_with_an_open_stream_are_kept() {
        let s = Subscribed::default();
        let (t, u): (Arc<str>, Arc<str>) = ("py".into(), "a://1".into());
        let _rx = s.watch("streaming");
        s.learn("streaming", &t, &u, true);
        for i in 1..SESSIONS_MAX {
            s.learn(&format!("s{i}"), &t, &u, true);
        }
        s.learn("new", &t, &u, true);
        let all = s.0.borrow();
        assert_eq!(all.len(), 2, "{:?}", all.keys().collect::<Vec<_>>());
        assert!(all.contains_key("streaming") && all.contains_key("new"));
    }
}
