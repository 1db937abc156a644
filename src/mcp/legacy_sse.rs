//! The legacy HTTP+SSE transport (2024-11-05) towards clients: `GET …/sse` opens a session's stream, whose first event names the message endpoint; POSTs there carry the client's messages, answered 202 while everything the gateway sends goes on the stream, served by the shard the stream lives on.

use super::access::{Access, StreamCaller};
use std::rc::Rc;
use std::sync::Arc;

use super::jsonrpc::{self, Message};
use super::mrtr;
use super::plan::McpPlan;
use super::relay::Relay;
use super::serve::{self, Out, KEEPALIVE, TARGET_IDLE};
use super::session::Sealed;
use super::sse;
use crate::config::compile::PolicyPlan;
use crate::error::{McpReject, ProxyError};
use crate::http::codec::RequestHead;
use crate::http::io::Peer;
use crate::proxy::conn::{Done, Failed};
use crate::proxy::route;
use crate::proxy::shard::{ShardCtx, ShardMsg};

/// Whether `path` is the route's HTTP+SSE endpoint: `/sse` itself, or `/sse` right under the
/// path prefix the route matched (`/mcp/sse` for a route on `/mcp`).
pub fn is_endpoint(path: &str, prefix: Option<&str>) -> bool {
    path == "/sse" || prefix.is_some_and(|p| path.strip_prefix(p.trim_end_matches('/')) == Some("/sse"))
}

/// GET: open a session and its stream. The session ends with the stream (client gone, or the
/// shard draining): its upstream sessions are deleted and its id stops working everywhere.
pub async fn open(
    ctx: &ShardCtx,
    plan: &McpPlan,
    pol: &PolicyPlan,
    access: Access<'_>,
    client: &mut Peer,
    head: &RequestHead,
) -> Result<Done, Failed> {
    if let Some(accept) = head.header_str("accept") {
        if !(accept.contains("text/event-stream") || accept.contains("*/*")) {
            return Err(McpReject::NotAcceptable.into());
        }
    }
    let id = Sealed::stream(ctx.index).seal(plan).map_err(ProxyError::Internal)?;
    let endpoint = format!("{}?sessionId={id}", head.path());
    let caller = StreamCaller { rules: access.rules.cloned(), id: access.id.clone(), peer: access.peer };
    let (s, rx) = ctx.mcp.open_stream(&id, caller);
    // the client only POSTs elsewhere from now on: this connection's reads just watch for it leaving
    client.park();
    let mut out = Out::http(pol, head, client, false);
    let mut ev = Vec::with_capacity(endpoint.len() + 32);
    sse::write_event(&mut ev, None, Some("endpoint"), endpoint.as_bytes());
    let mut open = out.event_raw(ev).await.is_ok();
    // a reload that changes what the client sees is announced, like on a Streamable HTTP GET
    // stream; one committed since this request's configuration was taken, right away
    let mut committed = ctx.committed.borrow().clone();
    let mut view = plan.view;
    let mut reloaded = true;
    while open {
        if std::mem::take(&mut reloaded) {
            let now = serve::current_view(ctx, &plan.scope);
            for m in serve::list_changes(view, now) {
                let mut ev = Vec::new();
                sse::write_event(&mut ev, None, Some("message"), &jsonrpc::notification(m, None));
                open &= out.event_raw(ev).await.is_ok();
            }
            view = now;
        }
        if !open {
            break;
        }
        let mut drained = false;
        let ev = monoio::select! {
            // the session holds a sender, so the channel never disconnects here
            ev = rx.recv_async() => ev.ok(),
            _ = monoio::time::sleep(KEEPALIVE) => {
                let mut c = Vec::new();
                sse::write_comment(&mut c, "keep-alive");
                Some(c)
            }
            _ = ctx.draining.fired() => {
                drained = true;
                None
            }
            _ = out.client_gone() => None,
            _ = committed.fired() => {
                committed = ctx.committed.borrow().clone();
                reloaded = true;
                continue;
            }
        };
        match ev {
            Some(ev) => open = out.event_raw(ev).await.is_ok(),
            None if drained => {
                let _ = out.end_stream().await;
                break;
            }
            None => break,
        }
    }
    ctx.mcp.close_stream(&id);
    // senders still working for this session fail from now on instead of waiting for room
    drop(rx);
    let upstreams = s.upstreams.borrow().clone();
    serve::end_session(ctx, plan, &id, upstreams.as_ref()).await;
    Ok(Done::local(200, out.bytes(), false))
}

/// POST to the message endpoint: check the message and its session here, hand it to the shard
/// the session's stream lives on (this one or another), and answer 202 once that shard took it.
/// Every message is served in the legacy era; a dual-era client probing with `server/discover`
/// gets "method not found" on the stream and falls back to `initialize`.
pub async fn post(
    ctx: &ShardCtx,
    plan: &Arc<McpPlan>,
    pol: &PolicyPlan,
    client: &mut Peer,
    head: &RequestHead,
    max_body: u64,
    idle: std::time::Duration,
) -> Result<Done, Failed> {
    let msg = serve::read_message(plan, client, head, max_body, idle).await?;
    let id = route::query_param(head.query(), "sessionId")
        .filter(|id| !id.is_empty())
        .ok_or(McpReject::SessionRequired("the sessionId query parameter"))?;
    // an id of a Streamable HTTP session is not one of this endpoint's
    let Ok(Sealed { h: Some(home), .. }) = ctx.mcp.admit(plan, id) else {
        return Err(McpReject::SessionUnknown.into());
    };
    // an id sealed by a replica with more shards than this one
    let mailbox = ctx.siblings.get(home).ok_or(McpReject::SessionUnknown)?;
    let (ack, acked) = flume::bounded(1);
    let handoff = ShardMsg::SseMessage { id: id.into(), plan: plan.clone(), msg, ack };
    mailbox.send_async(handoff).await.map_err(|_| McpReject::SessionUnknown)?;
    // no answer at all: the home shard stopped
    acked.recv_async().await.map_err(|_| McpReject::SessionUnknown)??;
    let keep = head.keep_alive && !ctx.draining.is_fired();
    let mut out = Out::http(pol, head, client, keep);
    out.accepted().await?;
    Ok(Done::local(202, 0, keep))
}

/// On the shard a session's stream lives on: take a message POSTed to the session (from its
/// mailbox). An answer to a relayed server→client request, or to one the gateway asked itself
/// while bridging, is checked before it is taken, so its POST can be refused. Everything else is served by a task of its own: a request may wait on
/// its target for long, and the client POSTs its next message (a cancellation, or the answer to
/// a sampling request that target is waiting for) meanwhile.
pub fn deliver(ctx: &Rc<ShardCtx>, id: &str, plan: Arc<McpPlan>, msg: Message) -> Result<(), McpReject> {
    let s = ctx.mcp.stream(id).ok_or(McpReject::SessionUnknown)?;
    let ctx = ctx.clone();
    let id = id.to_string();
    if mrtr::is_ask_id(&msg) {
        // the answer to one of the gateway's own questions (a bridged `input_required`): to the
        // call waiting for it, which runs on this shard but is found like on any other
        return match mrtr::deliver(&id, msg) {
            true => Ok(()),
            false => Err(McpReject::InvalidRequest("response to an unknown request id".into())),
        };
    }
    if let Message::Response { .. } | Message::Error { .. } = msg {
        let (ti, up, body) = serve::route_answer(&plan, s.upstreams.borrow().as_ref(), msg)?;
        monoio::spawn(async move {
            Relay { ctx: &ctx, plan: &plan, idle: TARGET_IDLE, renew: None }.post_message(ti, &up, &body).await;
        });
        return Ok(());
    }
    monoio::spawn(async move {
        if let Some(upstreams) = serve::on_stream(&ctx, &plan, &id, &s, msg).await {
            serve::pump(&ctx, &plan, &id, &s, &upstreams).await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_sse_under_the_matched_prefix() {
        assert!(is_endpoint("/sse", None));
        assert!(is_endpoint("/sse", Some("/sse")));
        assert!(is_endpoint("/mcp/sse", Some("/mcp")));
        assert!(is_endpoint("/mcp/sse", Some("/mcp/")));
        assert!(is_endpoint("/sse", Some("/")));
        assert!(!is_endpoint("/mcp", Some("/mcp")));
        assert!(!is_endpoint("/mcp/sse/x", Some("/mcp")));
        assert!(!is_endpoint("/mcp/ssex", Some("/mcp")));
        assert!(!is_endpoint("/other/sse", Some("/mcp")));
    }
}
