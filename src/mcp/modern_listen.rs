//! A listen stream's own `subscriptions/listen` requests to 2026-07-28 targets (which have neither GET streams nor `resources/subscribe`): asking for what the client asked with URIs as the target knows them, reopened with backoff while the client listens, and closed with its stream.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use serde_json::{json, Map, Value};

use super::era::CLIENT_CAPABILITIES;
use super::http_client::Reply;
use super::jsonrpc::Message;
use super::plan::McpPlan;
use super::relay::{InFlight, Relay, Via};
use super::serve::{STREAM_IDLE, TARGET_IDLE};
use super::subscriptions::Filter;
use crate::proxy::shard::ShardCtx;

/// The first message of a listen stream.
pub const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";

/// The longest wait before an upstream listen stream is opened again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a target may take to acknowledge a listen: the client's acknowledgement waits for
/// the first ones, and a target slower than this is tried again later.
const ACK_WAIT: Duration = Duration::from_secs(15);

/// The params of the upstream request to one target: the `list_changed` kinds the client asked
/// for, the URIs it asked for that this target owns (`uris`, as the target knows them), and the
/// client's declared capabilities, when known, in `_meta` (the gateway asks on its behalf; the
/// rest of the envelope is added on the way).
pub fn request_params(filter: &Filter, uris: &[&str], caps: Option<&Value>) -> Value {
    let mut n = Map::new();
    for (k, on) in [
        ("toolsListChanged", filter.tools),
        ("promptsListChanged", filter.prompts),
        ("resourcesListChanged", filter.resources),
    ] {
        if on {
            n.insert(k.into(), Value::Bool(true));
        }
    }
    if !uris.is_empty() {
        n.insert("resourceSubscriptions".into(), json!(uris));
    }
    let mut p = json!({ "notifications": n });
    if let Some(c) = caps {
        p["_meta"] = json!({ CLIENT_CAPABILITIES: c });
    }
    p
}

/// The URIs (as the target knows them) its acknowledgement's params say it will deliver.
pub fn honored(ack: Option<&Value>) -> Vec<String> {
    let uris = ack.and_then(|p| p.get("notifications")).and_then(|n| n.get("resourceSubscriptions"));
    uris.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// How long to wait before opening an upstream listen stream again after `failures` failed or
/// ended streams in a row: none before the first, then 1 s doubling up to [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 1).min(5)).min(MAX_BACKOFF),
    }
}

/// One target's upstream listen stream, as the client's stream hears it.
struct Upstream<'a> {
    ctx: &'a Rc<ShardCtx>,
    plan: &'a McpPlan,
    ti: usize,
    params: Value,
    reply: Option<Box<Reply>>,
    /// Failed or ended streams since the last one acknowledged.
    failures: u32,
}

/// What a listen stream's upstream listen streams send, merged (`None` without any). Each is
/// opened again when it ends, until its target no longer speaks 2026-07-28 (it was redeployed):
/// then it ends, and the client should listen again. Dropping it closes them, which is how a
/// 2026-07-28 target learns a listen is over.
pub type Streams<'a> = Option<LocalBoxStream<'a, Option<(usize, Message)>>>;

/// Open an upstream listen stream with each target of `asks` (target index, request params),
/// all at once: the streams, and the URIs each target acknowledged (target index, URI as the
/// target knows it). A target that cannot be reached now is tried again later.
pub async fn open_all<'a>(
    ctx: &'a Rc<ShardCtx>,
    plan: &'a McpPlan,
    asks: Vec<(usize, Value)>,
) -> (Streams<'a>, Vec<(usize, String)>) {
    let opens = asks.into_iter().map(|(ti, params)| async move {
        let opened = open(ctx, plan, ti, &params).await;
        (ti, params, opened)
    });
    let mut honored = Vec::new();
    let mut streams = Vec::new();
    for (ti, params, opened) in join_all(opens).await {
        let (reply, failures) = match opened {
            Ok((reply, uris)) => {
                honored.extend(uris.into_iter().map(|u| (ti, u)));
                (Some(reply), 0)
            }
            Err(why) => {
                eprintln!("mcp target {}: no subscriptions/listen stream: {why}", plan.targets[ti].name);
                (None, 1)
            }
        };
        let up = Upstream { ctx, plan, ti, params, reply, failures };
        // an item `None` says the stream ended (the merge would not tell)
        let s = stream::unfold(Some(up), |up| async move {
            let mut up = up?;
            match up.next().await {
                Some(m) => Some((Some((up.ti, m)), Some(up))),
                None => Some((None, None)),
            }
        });
        streams.push(s.boxed_local());
    }
    let merged = match streams.len() {
        0 => None,
        1 => streams.pop(),
        _ => Some(stream::select_all(streams).boxed_local()),
    };
    (merged, honored)
}

/// The next message of merged upstream listen streams; `None` once one of them ended, pending
/// forever without any.
pub async fn next(s: &mut Streams<'_>) -> Option<(usize, Message)> {
    match s {
        Some(s) => s.next().await.flatten(),
        None => std::future::pending().await,
    }
}

/// Send `subscriptions/listen` to target `ti` and read its acknowledgement: the stream, and
/// the URIs it will deliver updates of.
async fn open(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    ti: usize,
    params: &Value,
) -> Result<(Box<Reply>, Vec<String>), String> {
    let opened = monoio::time::timeout(ACK_WAIT, open_once(ctx, plan, ti, params)).await;
    opened.unwrap_or_else(|_| Err(format!("no acknowledgement in {ACK_WAIT:?}")))
}

async fn open_once(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    ti: usize,
    params: &Value,
) -> Result<(Box<Reply>, Vec<String>), String> {
    let relay = Relay { ctx, plan, idle: TARGET_IDLE, renew: None };
    let id = json!(format!("rg-{}", ctx.mcp.next_id()));
    let started = relay.start(ti, Via::Pooled, &id, "subscriptions/listen", Some(params), None).await;
    let mut reply = match started.map_err(|e| e.message)? {
        InFlight::Http(reply, _) => reply,
        _ => return Err("not a Streamable HTTP target".into()),
    };
    match reply.next(ctx, TARGET_IDLE).await {
        Ok(Some(Message::Notification { method, params })) if method == ACKNOWLEDGED => {
            Ok((reply, honored(params.as_ref())))
        }
        Ok(Some(Message::Error { error, .. })) => Err(format!("refused: {error}")),
        Ok(Some(_)) => Err("its first message was no acknowledgement".into()),
        Ok(None) => Err("it ended the stream unacknowledged".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl Upstream<'_> {
    /// The next notification the target sends, through as many reopenings as it takes; `None`
    /// once the target no longer speaks 2026-07-28.
    async fn next(&mut self) -> Option<Message> {
        let plan = self.plan;
        let name = &plan.targets[self.ti].name;
        loop {
            let Some(reply) = self.reply.as_mut() else {
                monoio::time::sleep(backoff(self.failures)).await;
                match open(self.ctx, self.plan, self.ti, &self.params).await {
                    Ok((reply, _)) => {
                        self.reply = Some(reply);
                        self.failures = 0;
                    }
                    Err(why) => {
                        self.failures = self.failures.saturating_add(1);
                        eprintln!("mcp target {name}: subscriptions/listen not reopened: {why}");
                        let relay = Relay { ctx: self.ctx, plan, idle: TARGET_IDLE, renew: None };
                        if !relay.known_modern(self.ti) {
                            // redeployed as a legacy server: a new listen hears it that way
                            return None;
                        }
                    }
                }
                continue;
            };
            // the stream waits in a small future and reads in a boxed one, as GET streams do
            let read = match reply.readable(STREAM_IDLE).await {
                Ok(()) => Box::pin(reply.next(self.ctx, STREAM_IDLE)).await,
                Err(e) => Err(e),
            };
            match read {
                Ok(Some(m @ Message::Notification { .. })) => return Some(m),
                // 2026-07-28 has no server→client requests
                Ok(Some(Message::Request { .. })) => continue,
                // a graceful end (its result), an error, a broken or ended stream: listen again
                Ok(Some(_)) | Ok(None) => eprintln!("mcp target {name}: subscriptions/listen ended; reopening"),
                Err(e) => eprintln!("mcp target {name}: subscriptions/listen failed: {e}; reopening"),
            }
            self.reply = None;
            self.failures = self.failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_asks_for_what_the_client_asked_with_the_targets_uris_and_its_capabilities() {
        let f = Filter { tools: true, resources: true, ..Filter::default() };
        let caps = json!({"elicitation": {}});
        assert_eq!(
            request_params(&f, &["test://static"], Some(&caps)),
            json!({
                "notifications": {"toolsListChanged": true, "resourcesListChanged": true, "resourceSubscriptions": ["test://static"]},
                "_meta": {CLIENT_CAPABILITIES: {"elicitation": {}}}
            })
        );
        // nothing asked for: an empty filter (the target still acknowledges), the envelope's own capabilities
        assert_eq!(request_params(&Filter::default(), &[], None), json!({"notifications": {}}));
    }

    #[test]
    fn an_acknowledgement_names_the_uris_the_target_delivers() {
        let ack = json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["a://1", 2, "b://2"]}});
        assert_eq!(honored(Some(&ack)), ["a://1", "b://2"]);
        assert!(honored(Some(&json!({"notifications": {"toolsListChanged": true}}))).is_empty());
        assert!(honored(None).is_empty());
    }

    #[test]
    fn reopening_backs_off_doubling_to_a_bound() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
