//! What a legacy session's GET stream hears from the 2026-07-28 targets it reaches, which have no GET stream: upstream `subscriptions/listen` requests of its own (see [`modern_listen`]), their list changes relayed as the gateway's own.

use std::rc::Rc;

use futures_util::{FutureExt, StreamExt};

use super::jsonrpc::{self, Message};
use super::merge::MODERN_VERSION;
use super::modern_listen::{self, Streams};
use super::plan::{McpPlan, TargetKind};
use super::serve::list_change;
use super::session::Sealed;
use super::subscriptions::Filter;
use crate::proxy::shard::ShardCtx;

/// Listen at each 2026-07-28 target `sealed` reaches statelessly (an upstream without a session
/// id, in that era) for every kind of list change, with the client's capabilities; `None`
/// without any. Dropping them closes the upstream listens.
pub async fn open<'a>(ctx: &'a Rc<ShardCtx>, plan: &'a McpPlan, sealed: &Sealed) -> Streams<'a> {
    let every = Filter { tools: true, prompts: true, resources: true, ..Filter::default() };
    let caps = sealed.c.as_ref().and_then(|c| c.get("capabilities"));
    let asks: Vec<_> = plan
        .targets
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.kind, TargetKind::Http(_)))
        .filter(|(_, t)| sealed.target(&t.name).is_some_and(|u| u.s.is_none() && u.v == MODERN_VERSION))
        .map(|(ti, _)| (ti, modern_listen::request_params(&every, &[], caps)))
        .collect();
    if asks.is_empty() {
        return None;
    }
    modern_listen::open_all(ctx, plan, asks).await.0
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
/// changes (one per target) adds the gateway's own notification of each kind to `messages` once.
/// The streams are gone once all of them ended.
pub fn heard(s: &mut Streams<'_>, mut heard: Option<(usize, Message)>, messages: &mut Vec<Vec<u8>>) {
    loop {
        let Some((_, msg)) = heard.take() else {
            *s = None;
            return;
        };
        if let Some(change) = list_change(&msg) {
            let note = jsonrpc::notification(change, None);
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
