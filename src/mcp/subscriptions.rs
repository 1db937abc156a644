//! `subscriptions/listen` (MCP 2026-07-28): the listen request's answer is a long-lived SSE stream fed by upstream sessions of its own with legacy-era targets (their GET streams and `resources/subscribe`), by its own upstream `subscriptions/listen` with 2026-07-28 targets, and by the shard's hub, filtered to what the client asked for and tagged with its subscription id.

use std::rc::Rc;

use futures_util::future::join_all;
use futures_util::stream::LocalBoxStream;
use futures_util::FutureExt;
use serde_json::{json, Map, Value};

use super::access::Access;
use super::hub;
use super::jsonrpc::{self, Message};
use super::merge::{self, MODERN_VERSION};
use super::modern_listen;
use super::plan::{McpPlan, TargetKind};
use super::relay::{Relay, Via};
use super::serve::{self, Out, KEEPALIVE, TARGET_IDLE};
use super::session::{now_secs, Sealed};
use crate::config::compile::PolicyPlan;
use crate::http::codec::RequestHead;
use crate::http::io::Peer;
use crate::proxy::conn::{Done, Failed};
use crate::proxy::shard::ShardCtx;

/// The `_meta` key every message on a listen stream carries: the listen request's id.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// What a client asked to hear about (`params.notifications`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
    /// `notifications/resources/updated` for these URIs (as the client knows them: prefixed).
    pub uris: Vec<String>,
    /// Those of `uris` subscribed to at their owner (target index, URI as the client knows it):
    /// what is delivered, and echoed.
    pub owned: Vec<(usize, String)>,
}

impl Filter {
    /// Read `params.notifications`; what is absent, false or malformed is not asked for.
    pub fn from_params(params: Option<&Value>) -> Filter {
        let n = params.and_then(|p| p.get("notifications"));
        let flag = |k: &str| n.and_then(|n| n.get(k)).and_then(Value::as_bool).unwrap_or(false);
        let uris = n
            .and_then(|n| n.get("resourceSubscriptions"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
            owned: Vec::new(),
        }
    }

    /// The filter as the acknowledgement echoes it: what will be delivered, and nothing else.
    pub fn honored(&self) -> Value {
        let mut m = Map::new();
        for (k, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                m.insert(k.into(), Value::Bool(true));
            }
        }
        let mut uris: Vec<&str> = self.owned.iter().map(|(_, u)| u.as_str()).collect();
        uris.dedup();
        if !uris.is_empty() {
            m.insert("resourceSubscriptions".into(), json!(uris));
        }
        Value::Object(m)
    }

    fn wants(&self, method: &str) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => !self.owned.is_empty(),
            // logging and server→client requests have no place on a listen stream
            _ => false,
        }
    }

    /// The gateway's own list change (a reload changed what the client sees), if asked for.
    pub fn announce(&self, method: &str, subscription: &Value) -> Option<Vec<u8>> {
        if !self.wants(method) {
            return None;
        }
        let mut p = json!({});
        tag(&mut p, subscription);
        Some(jsonrpc::notification(method, Some(&p)))
    }

    /// Target `ti`'s notification as the listen stream carries it: only the kinds asked for, a
    /// resource's URI prefixed as the client knows it and only from the target it was
    /// subscribed at, tagged with the subscription id.
    pub fn deliver(
        &self,
        ti: usize,
        target: &str,
        prefixed: bool,
        msg: Message,
        subscription: &Value,
    ) -> Option<Vec<u8>> {
        let Message::Notification { method, params } = msg else { return None };
        if !self.wants(&method) {
            return None;
        }
        let mut p = match params {
            Some(Value::Object(o)) => Value::Object(o),
            _ => json!({}),
        };
        merge::prefix_notification(target, &method, &mut p, prefixed);
        if method == "notifications/resources/updated" {
            let uri = p.get("uri").and_then(Value::as_str)?;
            if !self.owned.iter().any(|(t, u)| *t == ti && u == uri) {
                return None;
            }
        }
        tag(&mut p, subscription);
        Some(jsonrpc::notification(&method, Some(&p)))
    }

    /// A 2026-07-28 target's notification from the stream's own upstream listen: a list change
    /// as the gateway's own (the same however many targets send it, so a burst merges), a
    /// resource update as [`Filter::deliver`] makes it.
    pub fn relay(
        &self,
        ti: usize,
        target: &str,
        prefixed: bool,
        msg: Message,
        subscription: &Value,
    ) -> Option<Vec<u8>> {
        match &msg {
            Message::Notification { method, .. } if method != "notifications/resources/updated" => {
                self.announce(method, subscription)
            }
            _ => self.deliver(ti, target, prefixed, msg, subscription),
        }
    }
}

/// Put the subscription id into `params._meta`.
fn tag(params: &mut Value, subscription: &Value) {
    if let Some(o) = params.as_object_mut() {
        let meta = o.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert(SUBSCRIPTION_ID.into(), subscription.clone());
        }
    }
}

/// The stream's first message.
pub fn acknowledgement(filter: &Filter, subscription: &Value) -> Vec<u8> {
    let mut p = json!({ "notifications": filter.honored() });
    tag(&mut p, subscription);
    jsonrpc::notification("notifications/subscriptions/acknowledged", Some(&p))
}

/// The graceful end of a listen stream: its request's result.
pub fn end(subscription: &Value) -> Vec<u8> {
    let mut r = json!({ "resultType": "complete" });
    tag(&mut r, subscription);
    jsonrpc::response(subscription, &r)
}

/// Serve `subscriptions/listen`: open upstream sessions of the stream's own with the HTTP
/// targets (initialize, their GET streams), join the shard's hub for the stdio and HTTP+SSE
/// targets (whose shared process or session every client of the shard uses), subscribe each URI
/// asked for at the target that owns it, listen at the 2026-07-28 targets (asking for the
/// client's kinds and their URIs, with its capabilities), answer with the acknowledgement, then
/// relay what the targets send, and the list changes a reload makes, until the client closes
/// the stream (the upstream sessions are deleted, the upstream listens closed, the hub
/// subscriptions given up), a legacy upstream stream ends, or the shard drains (both end with
/// the listen result: the client listens again). An upstream listen that ends is reopened.
#[allow(clippy::too_many_arguments)]
pub(super) async fn listen(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    pol: &PolicyPlan,
    access: Access<'_>,
    client: &mut Peer,
    head: &RequestHead,
    id: Value,
    params: Option<Value>,
) -> Result<Done, Failed> {
    // a reload committed from here on is seen below, one committed since this request's
    // configuration was taken right away
    let mut committed = ctx.committed.borrow().clone();
    let _open = OpenStream::count(ctx);
    let mut filter = Filter::from_params(params.as_ref());
    let relay = Relay { ctx, plan, idle: TARGET_IDLE, renew: None };
    let mut owners = Vec::new();
    for uri in &filter.uris {
        match serve::resource_owner(ctx, plan, access, uri).await {
            Ok((ti, local)) => owners.push((ti, uri.clone(), local)),
            Err(e) => eprintln!("mcp listen: not subscribing to {uri}: {}", e.message),
        }
    }
    let init = json!({
        "protocolVersion": merge::negotiate(None),
        "capabilities": {},
        "clientInfo": {"name": "ringgate", "version": env!("CARGO_PKG_VERSION")},
    });
    let opens =
        plan.targets.iter().enumerate().filter(|(_, t)| matches!(t.kind, TargetKind::Http(_))).map(|(ti, _)| {
            let (relay, init) = (&relay, &init);
            async move {
                let (_, up) = relay.initialize(ti, init, true).await.ok()?;
                relay.post_message(ti, &up, &jsonrpc::notification("notifications/initialized", None)).await;
                Some(up)
            }
        });
    let ups: Vec<_> = join_all(opens).await.into_iter().flatten().collect();
    // a target without an upstream session that speaks 2026-07-28 sends nothing unprompted: the
    // stream listens there itself
    let modern: Vec<usize> = plan
        .targets
        .iter()
        .enumerate()
        .filter(|(ti, t)| {
            let up = ups.iter().find(|u| *u.n == *t.name);
            up.is_some_and(|u| u.s.is_none() && (u.v == MODERN_VERSION || relay.known_modern(*ti)))
        })
        .map(|(ti, _)| ti)
        .collect();
    let sealed = Sealed { v: String::new(), t: ups, iat: now_secs(), h: None, c: None };
    // the stream's own upstream sessions are with HTTP targets only: every stdio and HTTP+SSE
    // target is heard through the hub
    let (mut members, _) = hub::join_shared(ctx, plan, &hub::own_upstreams(&sealed), TARGET_IDLE).await;
    let (owners, listened): (Vec<_>, Vec<_>) = owners.into_iter().partition(|(ti, _, _)| !modern.contains(ti));
    let caps = jsonrpc::meta(params.as_ref(), super::era::CLIENT_CAPABILITIES);
    let asks = modern.iter().map(|&ti| {
        let uris: Vec<&str> = listened.iter().filter(|(t, _, _)| *t == ti).map(|(_, _, l)| l.as_str()).collect();
        (ti, modern_listen::request_params(&filter, &uris, caps))
    });
    let (mut upstream, acknowledged) = modern_listen::open_all(ctx, plan, asks.collect()).await;
    for (ti, uri, local) in listened {
        if acknowledged.iter().any(|(t, l)| *t == ti && *l == local) {
            filter.owned.push((ti, uri));
        }
    }
    for (ti, uri, local) in owners {
        let subscribed = match &plan.targets[ti].kind {
            TargetKind::Http(_) => match sealed.target(&plan.targets[ti].name) {
                Some(up) => {
                    relay.call(ti, Via::Own(up), "resources/subscribe", Some(&json!({ "uri": local }))).await.map(drop)
                }
                None => continue,
            },
            _ => match members.iter_mut().find(|(t, _)| *t == ti) {
                Some((_, m)) => m.subscribe(&local).await,
                None => continue,
            },
        };
        match subscribed {
            Ok(_) => filter.owned.push((ti, uri)),
            Err(e) => eprintln!("mcp target {}: refused resources/subscribe: {}", plan.targets[ti].name, e.message),
        }
    }
    let mut merged = Box::pin(serve::unprompted(ctx, plan, &sealed)).await;
    let had_streams = merged.is_some();
    let mut shared = hub_streams(&members);
    let mut out = Out::http(pol, head, client, false);
    let mut graceful = out.event(&acknowledgement(&filter, &id)).await.is_ok();
    let mut view = plan.view;
    let mut reloaded = true;
    let mut messages = Vec::new();
    while graceful {
        if std::mem::take(&mut reloaded) {
            let now = serve::current_view(ctx, &plan.scope);
            messages.extend(serve::list_changes(view, now).into_iter().filter_map(|m| filter.announce(m, &id)));
            view = now;
        }
        for m in messages.drain(..) {
            graceful &= out.event(&m).await.is_ok();
        }
        if !graceful {
            break;
        }
        let mut tick = false;
        let mut heard = None;
        let mut ended = false;
        monoio::select! {
            m = serve::next_unprompted(&mut merged), if merged.is_some() => match m {
                Some((ti, msg)) => {
                    super::catalog::observe(ctx, &plan.targets[ti].name, &msg);
                    messages.extend(filter.deliver(ti, &plan.targets[ti].name, plan.prefixed, msg, &id));
                }
                None => break,
            },
            m = modern_listen::next(&mut upstream), if upstream.is_some() => match m {
                Some(m) => heard = Some(m),
                // a target no longer speaks 2026-07-28: the client listens again
                None => ended = true,
            },
            m = next_shared(&mut shared), if shared.is_some() => match m {
                Some((ti, msg)) => messages.extend(filter.deliver(ti, &plan.targets[ti].name, plan.prefixed, msg, &id)),
                // a shared upstream went away (a stdio process exited): what was subscribed
                // there is gone, so the client listens again
                None => break,
            },
            _ = monoio::time::sleep(KEEPALIVE) => tick = true,
            _ = committed.fired() => {
                committed = ctx.committed.borrow().clone();
                reloaded = true;
            }
            _ = ctx.draining.fired() => break,
            // closing the stream is how a client ends its subscription
            _ = out.client_gone() => graceful = false,
        }
        // what else the upstream listen streams sent meanwhile is taken too: a burst of list
        // changes (one per target) reaches the client as one of each kind
        while let Some((ti, msg)) = heard.take() {
            if let Some(m) = filter.relay(ti, &plan.targets[ti].name, plan.prefixed, msg, &id) {
                if !messages.contains(&m) {
                    messages.push(m);
                }
            }
            match modern_listen::next(&mut upstream).now_or_never() {
                Some(None) => ended = true,
                m => heard = m.flatten(),
            }
        }
        if ended {
            // a target no longer speaks 2026-07-28: what the burst brought goes out first
            for m in messages.drain(..) {
                graceful &= out.event(&m).await.is_ok();
            }
            break;
        }
        if tick {
            let mut ev = Vec::new();
            super::sse::write_comment(&mut ev, "keep-alive");
            graceful &= out.event_raw(ev).await.is_ok();
        }
    }
    if graceful {
        // an upstream stream ended, or the shard drains: the client should listen again
        let _ = out.event(&end(&id)).await;
        let _ = out.end_stream().await;
    }
    drop(merged);
    // closing them is how the 2026-07-28 targets learn that the listen is over
    drop(upstream);
    drop(shared);
    drop(members);
    if had_streams || !sealed.t.is_empty() {
        serve::delete_upstreams(ctx, plan, &sealed).await;
    }
    Ok(Done::local(200, out.bytes(), false))
}

/// Counts an open listen stream in the shard's gauge for as long as it lives, however it ends
/// (dropped last: after its hub subscriptions were given up).
struct OpenStream<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> OpenStream<'a> {
    fn count(ctx: &'a ShardCtx) -> Self {
        let g = &ctx.registry.shards[ctx.index].mcp_listen_streams;
        g.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenStream(g)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the shared upstreams a listen stream hears send, merged; an item `None` when one of
/// them went away.
pub(super) type Shared = Option<LocalBoxStream<'static, Option<(usize, Message)>>>;

pub(super) fn hub_streams(members: &[(usize, hub::Membership)]) -> Shared {
    use futures_util::stream::{self, StreamExt};
    let streams = members.iter().map(|(ti, m)| {
        let ti = *ti;
        stream::unfold(m.rx.clone(), move |rx| async move { rx.recv_async().await.ok().map(|m| (Some((ti, m)), rx)) })
            .chain(stream::once(async { None }))
            .boxed_local()
    });
    let streams: Vec<_> = streams.collect();
    (!streams.is_empty()).then(|| stream::select_all(streams).boxed_local())
}

/// The next message of a shared upstream; `None` once one of them went away.
pub(super) async fn next_shared(s: &mut Shared) -> Option<(usize, Message)> {
    use futures_util::StreamExt;
    match s {
        Some(s) => s.next().await.flatten(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(method: &str, params: Value) -> Message {
        Message::Notification { method: method.into(), params: Some(params) }
    }

    #[test]
    fn the_filter_reads_what_was_asked_and_echoes_only_that() {
        let f = Filter::from_params(Some(&json!({"notifications": {
            "toolsListChanged": true, "promptsListChanged": false, "resourceSubscriptions": ["a+file:///x", 3],
            "taskIds": ["t"]
        }})));
        assert_eq!(
            f,
            Filter { tools: true, prompts: false, resources: false, uris: vec!["a+file:///x".into()], owned: vec![] }
        );
        // a URI is honored once it is subscribed at its owner
        assert_eq!(f.honored(), json!({"toolsListChanged": true}));
        let f = Filter { owned: vec![(0, "a+file:///x".into())], ..f };
        assert_eq!(f.honored(), json!({"toolsListChanged": true, "resourceSubscriptions": ["a+file:///x"]}));
        assert_eq!(Filter::from_params(None).honored(), json!({}));
        let ack: Value = serde_json::from_slice(&acknowledgement(&f, &json!(7))).unwrap();
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], 7);
        let done: Value = serde_json::from_slice(&end(&json!("s1"))).unwrap();
        assert_eq!(done["id"], "s1");
        assert_eq!(done["result"], json!({"resultType": "complete", "_meta": {SUBSCRIPTION_ID: "s1"}}));
    }

    #[test]
    fn only_asked_for_notifications_pass_tagged_and_with_uris_prefixed() {
        let f = Filter {
            tools: false,
            prompts: true,
            resources: false,
            uris: vec!["a+file:///x".into()],
            owned: vec![(0, "a+file:///x".into())],
        };
        let sub = json!(5);
        assert!(f.deliver(0, "a", true, note("notifications/tools/list_changed", json!({})), &sub).is_none());
        assert!(f.deliver(0, "a", true, note("notifications/message", json!({"level": "info"})), &sub).is_none());
        let req = Message::Request { id: json!(1), method: "roots/list".into(), params: None, raw: None };
        assert!(f.deliver(0, "a", true, req, &sub).is_none());
        let p: Value = serde_json::from_slice(
            &f.deliver(0, "a", true, note("notifications/prompts/list_changed", json!({})), &sub).unwrap(),
        )
        .unwrap();
        assert_eq!(p["params"]["_meta"][SUBSCRIPTION_ID], 5);
        // the target's own URI comes out prefixed, as the client subscribed to it
        let u = f
            .deliver(0, "a", true, note("notifications/resources/updated", json!({"uri": "file:///x"})), &sub)
            .unwrap();
        let u: Value = serde_json::from_slice(&u).unwrap();
        assert_eq!((u["params"]["uri"].as_str(), &u["params"]["_meta"][SUBSCRIPTION_ID]), (Some("a+file:///x"), &sub));
        // another target's resource of the same name, or another resource, is not asked for
        assert!(f
            .deliver(1, "b", true, note("notifications/resources/updated", json!({"uri": "file:///x"})), &sub)
            .is_none());
        assert!(f
            .deliver(0, "a", true, note("notifications/resources/updated", json!({"uri": "file:///y"})), &sub)
            .is_none());
        // unprefixed (one target): URIs are the target's own
        let one = Filter { owned: vec![(0, "file:///x".into())], ..Filter::default() };
        assert!(one
            .deliver(0, "a", false, note("notifications/resources/updated", json!({"uri": "file:///x"})), &sub)
            .is_some());
        // prefixMode never: the same URI from a target it was not subscribed at is not asked for
        assert!(one
            .deliver(1, "b", false, note("notifications/resources/updated", json!({"uri": "file:///x"})), &sub)
            .is_none());
        // from a 2026-07-28 target's own listen: a list change is the gateway's, the same from
        // every target (so a burst merges), its params (the target's subscription id) dropped
        let tools = Filter { tools: true, ..Filter::default() };
        let upstream = note("notifications/tools/list_changed", json!({"_meta": {SUBSCRIPTION_ID: "rg-9"}}));
        let a = tools.relay(0, "a", true, upstream.clone(), &sub).unwrap();
        assert_eq!(Some(&a), tools.relay(1, "b", true, upstream, &sub).as_ref());
        let a: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(a["params"], json!({"_meta": {SUBSCRIPTION_ID: 5}}));
        assert!(tools.relay(0, "a", true, note("notifications/prompts/list_changed", json!({})), &sub).is_none());
        let updated =
            note("notifications/resources/updated", json!({"uri": "file:///x", "_meta": {SUBSCRIPTION_ID: "rg-9"}}));
        let u: Value = serde_json::from_slice(&f.relay(0, "a", true, updated.clone(), &sub).unwrap()).unwrap();
        assert_eq!(u["params"], json!({"uri": "a+file:///x", "_meta": {SUBSCRIPTION_ID: 5}}));
        assert!(f.relay(1, "b", true, updated, &sub).is_none());
        // a reload's list change, only where asked for
        assert!(f.announce("notifications/tools/list_changed", &sub).is_none());
        let p: Value =
            serde_json::from_slice(&f.announce("notifications/prompts/list_changed", &sub).unwrap()).unwrap();
        assert_eq!(p["params"]["_meta"][SUBSCRIPTION_ID], 5);
    }
}
