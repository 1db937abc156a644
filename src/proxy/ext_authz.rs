//! Asking the `extAuthz` service: read the body when the plan sends it, call over the shard's pool, apply the failure mode.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::admission::rule_ctx;
use super::shard::ShardCtx;
use super::upstream;
use crate::auth::ext_authz::{ExtAuthzPlan, HeaderEdits, OnFailure, Verdict, MAX_DENIAL_BODY};
use crate::auth::Identity;
use crate::error::{ExtAuthzUnavailable, ProxyError};
use crate::http::codec::{ChunkedDecoder, Framing, RequestHead, ResponseHead};
use crate::http::io::Peer;

/// The request as the service should see it.
pub struct Check<'a> {
    /// The client's head.
    pub head: &'a RequestHead,
    /// Who the caller is (for a `path` expression).
    pub id: &'a Identity,
    /// The client's address.
    pub peer: SocketAddr,
    /// How long the client may pause while sending its body.
    pub idle: Duration,
    /// The listener's body limit (the plan's own may be larger).
    pub max_body: u64,
}

/// Run the check. `Ok` carries the header changes for the upstream request; a denial, or a
/// failure under `deny`, is the error to answer with. `continued` records that `100 Continue`
/// was sent (to read the body).
pub async fn check<'p>(
    ctx: &ShardCtx,
    plan: &'p ExtAuthzPlan,
    req: &Check<'_>,
    client: &mut Peer,
    continued: &mut bool,
) -> Result<HeaderEdits<'p>, ProxyError> {
    let head = req.head;
    let path = match plan.check_path(head, || rule_ctx(req.id, head, req.peer)) {
        Ok(p) => p,
        // a broken expression is a config mistake: refuse whatever the failure mode says
        Err(why) => return Err(ProxyError::ExtAuthzUnavailable(ExtAuthzUnavailable { status: 403, why })),
    };
    let body = match plan.max_body {
        Some(max) if head.framing != Framing::None => {
            if head.expect_continue && !*continued {
                client
                    .send(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"))
                    .await
                    .map_err(|_| ProxyError::ClientClosed)?;
                *continued = true;
            }
            Some(peek_body(client, head.framing, max.min(req.max_body), req.idle).await?)
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(512 + body.as_ref().map_or(0, Bytes::len));
    plan.write_check(&mut out, head, &path, req.peer, body.as_deref());
    let is_head = head.method() == "HEAD";
    let answer = match monoio::time::timeout(plan.timeout, call(ctx, plan, Bytes::from(out), is_head)).await {
        Ok(r) => r,
        Err(_) => Err("no answer in time"),
    };
    match answer {
        Ok((resp, body)) => match plan.verdict(&resp, body) {
            Verdict::Allow(edits) => Ok(edits),
            Verdict::Deny(d) => Err(ProxyError::ExtAuthzDenied(d)),
        },
        Err(why) => match plan.on_failure {
            OnFailure::Allow => {
                ctx.registry.shards[ctx.index].count_error("ext_authz_unavailable");
                Ok(plan.drop_owned())
            }
            OnFailure::Deny(status) => Err(ProxyError::ExtAuthzUnavailable(ExtAuthzUnavailable { status, why })),
        },
    }
}

/// The client's body, at most `max` bytes, read without consuming it: it stays in the buffer
/// for the upstream (or the MCP handler) as if it had not been looked at.
async fn peek_body(client: &mut Peer, framing: Framing, max: u64, idle: Duration) -> Result<Bytes, ProxyError> {
    let too_large = ProxyError::BodyTooLarge(max);
    match framing {
        Framing::Length(n) if n > max => Err(too_large),
        Framing::Length(n) => {
            let n = n as usize;
            while client.buf.len() < n {
                fill(client, idle).await?;
            }
            Ok(Bytes::copy_from_slice(&client.buf[..n]))
        }
        Framing::Chunked => {
            // chunk framing may cost more than the payload, but not without bound
            let max_raw = (max as usize).saturating_mul(2).saturating_add(16 * 1024);
            let mut dec = ChunkedDecoder::new();
            let mut body = BytesMut::new();
            let mut at = 0;
            loop {
                let buf = &client.buf[at..];
                let (used, done) = dec
                    .decode_available(buf, |r| body.extend_from_slice(&buf[r]))
                    .map_err(|_| ProxyError::BadBody("invalid chunked framing"))?;
                at += used;
                if body.len() as u64 > max || at > max_raw {
                    return Err(too_large);
                }
                if done {
                    return Ok(body.freeze());
                }
                fill(client, idle).await?;
            }
        }
        Framing::None | Framing::CloseDelimited => Ok(Bytes::new()),
    }
}

async fn fill(client: &mut Peer, idle: Duration) -> Result<(), ProxyError> {
    match monoio::time::timeout(idle, client.fill()).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(_) => Err(ProxyError::BadBody("client closed before the body was complete")),
        Err(_) => Err(ProxyError::BadBody("client stalled before the body was complete")),
    }
}

/// Send `req` and read the answer: a pooled connection first, unprobed (one fresh retry if it
/// turns out closed), then each address in turn.
async fn call(
    ctx: &ShardCtx,
    plan: &ExtAuthzPlan,
    req: Bytes,
    is_head: bool,
) -> Result<(ResponseHead, Bytes), &'static str> {
    let mut why = "no address";
    for &addr in &plan.addrs {
        let key = upstream::PoolKey::new(addr, None);
        for pooled in [true, false] {
            let io = match pooled {
                true => match ctx.pool.take(key) {
                    Some(io) => io,
                    None => continue,
                },
                false => match upstream::connect(addr, None).await {
                    Ok(io) => io,
                    Err(_) => {
                        why = "cannot connect";
                        break;
                    }
                },
            };
            let mut up = Peer::new(io, 4096);
            if up.send(req.clone()).await.is_err() {
                why = "connection closed";
                if pooled {
                    ctx.pool.forget(up, &ctx.registry.shards[ctx.index]);
                }
                continue;
            }
            let resp = match upstream::read_response_head(&mut up, is_head).await {
                Ok(r) => r,
                Err(ProxyError::UpstreamProtocol(_)) => return Err("invalid answer"),
                Err(_) => {
                    why = "connection closed before an answer";
                    if pooled {
                        ctx.pool.forget(up, &ctx.registry.shards[ctx.index]);
                    }
                    continue;
                }
            };
            let (body, complete) = read_bounded(&mut up, resp.framing, MAX_DENIAL_BODY).await?;
            if complete && resp.keep_alive && resp.framing != Framing::CloseDelimited && up.buf.is_empty() {
                ctx.pool.put(key, up.io);
            }
            return Ok((resp, body));
        }
    }
    Err(why)
}

/// Up to `cap` bytes of a body, and whether that was all of it.
async fn read_bounded(up: &mut Peer, framing: Framing, cap: usize) -> Result<(Bytes, bool), &'static str> {
    let closed = "answer body cut short";
    match framing {
        Framing::None => Ok((Bytes::new(), true)),
        Framing::Length(n) => {
            let want = (n as usize).min(cap);
            while up.buf.len() < want {
                if up.fill().await.map_err(|_| closed)? == 0 {
                    return Err(closed);
                }
            }
            let body = up.buf.split_to(want).freeze();
            Ok((body, want as u64 == n))
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut body = BytesMut::new();
            loop {
                let buf = &up.buf;
                let (used, done) = dec
                    .decode_available(buf, |r| body.extend_from_slice(&buf[r]))
                    .map_err(|_| "invalid answer body")?;
                let _ = up.buf.split_to(used);
                if body.len() >= cap {
                    body.truncate(cap);
                    return Ok((body.freeze(), false));
                }
                if done {
                    return Ok((body.freeze(), true));
                }
                if up.fill().await.map_err(|_| closed)? == 0 {
                    return Err(closed);
                }
            }
        }
        Framing::CloseDelimited => {
            while up.buf.len() < cap {
                match up.fill().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return Err(closed),
                }
            }
            let take = up.buf.len().min(cap);
            Ok((up.buf.split_to(take).freeze(), false))
        }
    }
}
