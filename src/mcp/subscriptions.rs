//! `subscriptions/listen` (MCP 2026-07-28) over legacy-era targets: the listen request's answer is a long-lived SSE stream fed by upstream sessions of its own (their GET streams and `resources/subscribe`), filtered to what the client asked for and tagged with its subscription id.

use std::rc::Rc;

use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use super::jsonrpc::{self, Message};
use super::merge;
use super::names;
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
        if !self.uris.is_empty() {
            m.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(m)
    }

    /// A target's notification as the listen stream carries it: only the kinds asked for, a
    /// resource's URI prefixed as the client knows it, tagged with the subscription id.
    pub fn deliver(&self, target: &str, prefixed: bool, msg: Message, subscription: &Value) -> Option<Vec<u8>> {
        let Message::Notification { method, params } = msg else { return None };
        let wanted = match method.as_str() {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => !self.uris.is_empty(),
            // logging and server→client requests have no place on a listen stream
            _ => false,
        };
        if !wanted {
            return None;
        }
        let mut p = match params {
            Some(Value::Object(o)) => Value::Object(o),
            _ => json!({}),
        };
        merge::prefix_notification(target, &method, &mut p, prefixed);
        if method == "notifications/resources/updated" {
            let uri = p.get("uri").and_then(Value::as_str)?;
            if !self.uris.iter().any(|u| u == uri) {
                return None;
            }
        }
        tag(&mut p, subscription);
        Some(jsonrpc::notification(&method, Some(&p)))
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
/// targets (initialize, their GET streams, `resources/subscribe` for the URIs asked for), answer
/// with the acknowledgement, then relay what they send until the client closes the stream (the
/// upstream sessions are deleted), the upstreams end theirs, or the shard drains (both end with
/// the listen result). Stdio, HTTP+SSE and demo targets contribute nothing yet.
pub(super) async fn listen(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    pol: &PolicyPlan,
    client: &mut Peer,
    head: &RequestHead,
    id: Value,
    params: Option<Value>,
) -> Result<Done, Failed> {
    let filter = Filter::from_params(params.as_ref());
    let relay = Relay { ctx, plan, idle: TARGET_IDLE, renew: None };
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
    let sealed = Sealed { v: String::new(), t: ups, iat: now_secs(), h: None, c: None };
    let names = plan.names();
    let subscribes = filter.uris.iter().filter_map(|uri| {
        let (ti, local) = if plan.prefixed { names::split_uri(uri, &names)? } else { (0, uri.as_str()) };
        let up = sealed.target(&plan.targets.get(ti)?.name)?;
        let relay = &relay;
        Some(async move {
            let _ = relay.call(ti, Via::Own(up), "resources/subscribe", Some(&json!({ "uri": local }))).await;
        })
    });
    join_all(subscribes).await;
    let mut merged = serve::unprompted(ctx, plan, &sealed).await;
    let had_streams = merged.is_some();
    let mut out = Out::http(pol, head, client, false);
    let mut graceful = out.event(&acknowledgement(&filter, &id)).await.is_ok();
    while graceful {
        let mut message = None;
        let mut tick = false;
        monoio::select! {
            m = serve::next_unprompted(&mut merged), if merged.is_some() => match m {
                Some((ti, msg)) => {
                    super::catalog::observe(ctx, &plan.targets[ti].name, &msg);
                    message = filter.deliver(&plan.targets[ti].name, plan.prefixed, msg, &id);
                }
                None => break,
            },
            _ = monoio::time::sleep(KEEPALIVE) => tick = true,
            _ = ctx.draining.fired() => break,
            // closing the stream is how a client ends its subscription
            _ = out.client_gone() => graceful = false,
        }
        let sent = match message {
            Some(m) => out.event(&m).await,
            None if tick => {
                let mut ev = Vec::new();
                super::sse::write_comment(&mut ev, "keep-alive");
                out.event_raw(ev).await
            }
            None => Ok(()),
        };
        graceful &= sent.is_ok();
    }
    if graceful {
        // the upstream streams ended, or the shard drains: the client should listen again
        let _ = out.event(&end(&id)).await;
        let _ = out.end_stream().await;
    }
    drop(merged);
    if had_streams || !sealed.t.is_empty() {
        serve::delete_upstreams(ctx, plan, &sealed).await;
    }
    Ok(Done::local(200, out.bytes(), false))
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
        assert_eq!(f, Filter { tools: true, prompts: false, resources: false, uris: vec!["a+file:///x".into()] });
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
        let f = Filter { tools: false, prompts: true, resources: false, uris: vec!["a+file:///x".into()] };
        let sub = json!(5);
        assert!(f.deliver("a", true, note("notifications/tools/list_changed", json!({})), &sub).is_none());
        assert!(f.deliver("a", true, note("notifications/message", json!({"level": "info"})), &sub).is_none());
        let req = Message::Request { id: json!(1), method: "roots/list".into(), params: None, raw: None };
        assert!(f.deliver("a", true, req, &sub).is_none());
        let p: Value = serde_json::from_slice(
            &f.deliver("a", true, note("notifications/prompts/list_changed", json!({})), &sub).unwrap(),
        )
        .unwrap();
        assert_eq!(p["params"]["_meta"][SUBSCRIPTION_ID], 5);
        // the target's own URI comes out prefixed, as the client subscribed to it
        let u =
            f.deliver("a", true, note("notifications/resources/updated", json!({"uri": "file:///x"})), &sub).unwrap();
        let u: Value = serde_json::from_slice(&u).unwrap();
        assert_eq!((u["params"]["uri"].as_str(), &u["params"]["_meta"][SUBSCRIPTION_ID]), (Some("a+file:///x"), &sub));
        // another target's resource of the same name, or another resource, is not asked for
        assert!(f
            .deliver("b", true, note("notifications/resources/updated", json!({"uri": "file:///x"})), &sub)
            .is_none());
        assert!(f
            .deliver("a", true, note("notifications/resources/updated", json!({"uri": "file:///y"})), &sub)
            .is_none());
        // unprefixed (one target): URIs are the target's own
        let one = Filter { uris: vec!["file:///x".into()], ..Filter::default() };
        assert!(one
            .deliver("a", false, note("notifications/resources/updated", json!({"uri": "file:///x"})), &sub)
            .is_some());
    }
}
