//! Streamable HTTP towards upstream MCP servers: POST one message over a pooled connection and read the answer as JSON-RPC messages, whether it comes as JSON or as SSE.

use std::time::Duration;

use bytes::Bytes;

use super::jsonrpc::{self, Answer, Message, RpcError};
use super::plan::HttpTargetPlan;
use super::sse;
use crate::error::ProxyError;
use crate::http::codec::{self, ChunkedDecoder, Framing};
use crate::http::io::Peer;
use crate::proxy::shard::ShardCtx;
use crate::proxy::upstream;

/// Largest JSON answer or SSE event accepted from an upstream.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Most of an error answer's body kept for the message passed on (the rest is read and dropped).
const MAX_ERROR_BODY: usize = 4 * 1024;

/// What goes wrong talking to an HTTP target.
#[derive(Debug)]
pub enum HttpError {
    /// Connecting, writing or reading failed, or the upstream broke HTTP.
    Transport(ProxyError),
    /// The upstream answered with an HTTP status other than 200/202 (404 means its session is gone).
    Status(u16, String),
    /// The body was not a JSON-RPC message.
    Payload(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Transport(e) => write!(f, "{e}"),
            HttpError::Status(s, body) => write!(f, "upstream answered HTTP {s}: {body}"),
            HttpError::Payload(m) => write!(f, "upstream sent an invalid message: {m}"),
        }
    }
}

/// An upstream answer after its head: the session it named and its messages.
pub struct Reply {
    /// HTTP status (200 or 202).
    pub status: u16,
    /// `Mcp-Session-Id` the upstream set, if any.
    pub session: Option<String>,
    body: Body,
    sse: Option<sse::Parser>,
}

/// Request headers specific to one POST.
pub struct Post<'a> {
    /// Upstream session id.
    pub session: Option<&'a str>,
    /// `MCP-Protocol-Version` to send (omitted on `initialize`).
    pub version: Option<&'a str>,
    /// The JSON-RPC message.
    pub body: &'a [u8],
}

/// POST `msg` to `t` and wait for the response head.
pub async fn post(ctx: &ShardCtx, t: &HttpTargetPlan, p: &Post<'_>, idle: Duration) -> Result<Reply, HttpError> {
    post_with_headers(ctx, t, p, &[], idle).await
}

/// [`post`] with more header lines (`name: value\r\n` each), e.g. the client's `Mcp-Param-*`.
pub async fn post_with_headers(
    ctx: &ShardCtx,
    t: &HttpTargetPlan,
    p: &Post<'_>,
    extra: &[u8],
    idle: Duration,
) -> Result<Reply, HttpError> {
    let mut head = Vec::with_capacity(256 + extra.len() + p.body.len());
    head.extend_from_slice(b"POST ");
    head.extend_from_slice(t.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    codec::write_header(&mut head, "host", t.authority.as_bytes());
    codec::write_header(&mut head, "content-type", b"application/json");
    codec::write_header(&mut head, "accept", b"application/json, text/event-stream");
    t.write_credential(&mut head);
    if let Some(s) = p.session {
        codec::write_header(&mut head, "mcp-session-id", s.as_bytes());
    }
    if let Some(v) = p.version {
        codec::write_header(&mut head, "mcp-protocol-version", v.as_bytes());
    }
    head.extend_from_slice(extra);
    codec::write_header(&mut head, "content-length", p.body.len().to_string().as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(p.body);
    send(ctx, t, Bytes::from(head), idle, false).await
}

/// Open a GET stream of server→client messages: an upstream session's (Streamable HTTP), or a
/// legacy HTTP+SSE server's (no session yet: its first event names where to POST).
pub async fn get(
    ctx: &ShardCtx,
    t: &HttpTargetPlan,
    session: Option<&str>,
    version: Option<&str>,
    idle: Duration,
) -> Result<Reply, HttpError> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(t.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    codec::write_header(&mut head, "host", t.authority.as_bytes());
    codec::write_header(&mut head, "accept", b"text/event-stream");
    t.write_credential(&mut head);
    if let Some(s) = session {
        codec::write_header(&mut head, "mcp-session-id", s.as_bytes());
    }
    if let Some(v) = version {
        codec::write_header(&mut head, "mcp-protocol-version", v.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    // a GET stream stays open for the session's life with small events: it reads with small room
    send(ctx, t, Bytes::from(head), idle, true).await
}

/// DELETE the upstream session (best effort; the answer is ignored).
pub async fn delete(ctx: &ShardCtx, t: &HttpTargetPlan, session: &str, idle: Duration) {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"DELETE ");
    head.extend_from_slice(t.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    codec::write_header(&mut head, "host", t.authority.as_bytes());
    codec::write_header(&mut head, "mcp-session-id", session.as_bytes());
    t.write_credential(&mut head);
    head.extend_from_slice(b"content-length: 0\r\n\r\n");
    if let Ok(mut r) = send(ctx, t, Bytes::from(head), idle, false).await {
        while let Ok(Some(_)) = r.body.next(ctx, idle).await {}
    }
}

/// `stream`: the answer is expected to be a long-lived event stream (see [`Peer::new_small`]).
async fn send(
    ctx: &ShardCtx,
    t: &HttpTargetPlan,
    req: Bytes,
    idle: Duration,
    stream: bool,
) -> Result<Reply, HttpError> {
    let mut last = None;
    let tls = t.tls.as_deref();
    for &addr in t.addrs.iter() {
        let key = upstream::PoolKey::new(addr, tls);
        // a pooled connection is not probed (the request is whole, so it can be resent): when the
        // upstream closed it meanwhile, one fresh retry
        for pooled in [true, false] {
            let io = match if pooled { ctx.pool.take(key) } else { None } {
                Some(io) => io,
                None if pooled => continue,
                None => match upstream::connect(addr, tls).await {
                    Ok(io) => io,
                    Err(e) => {
                        last = Some(e);
                        break;
                    }
                },
            };
            // an answer read whole takes the buffers a finished exchange left in the pool
            let mut up = if stream { Peer::new_small(io) } else { ctx.pool.peer(io) };
            if up.send(req.clone()).await.is_err() {
                last = Some(ProxyError::UpstreamClosed);
                if pooled {
                    ctx.pool.forget(up, &ctx.registry.shards[ctx.index]);
                }
                continue;
            }
            let head = match monoio::time::timeout(idle, upstream::read_response_head(&mut up, false)).await {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    if pooled && matches!(e, ProxyError::UpstreamClosed) {
                        ctx.pool.forget(up, &ctx.registry.shards[ctx.index]);
                    }
                    last = Some(e);
                    continue;
                }
                Err(_) => return Err(HttpError::Transport(ProxyError::UpstreamTimeout)),
            };
            let session = head.header("mcp-session-id").and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned);
            let is_sse = head.header("content-type").is_some_and(|v| v.starts_with(b"text/event-stream"));
            let left = if let Framing::Length(n) = head.framing { n } else { 0 };
            let mut body = Body {
                up: Some(up),
                key,
                framing: head.framing,
                left,
                dec: ChunkedDecoder::new(),
                keep: head.keep_alive,
                done: head.framing == Framing::None,
                pooled_buffers: !stream,
            };
            if !matches!(head.status, 200 | 202) {
                // read to the end so the connection can be reused, keeping only the start
                let mut text = Vec::new();
                while let Ok(Some(b)) = body.next(ctx, idle).await {
                    let room = MAX_ERROR_BODY - text.len();
                    text.extend_from_slice(&b[..b.len().min(room)]);
                }
                return Err(HttpError::Status(head.status, String::from_utf8_lossy(&text).into_owned()));
            }
            let sse = is_sse.then(|| sse::Parser::new(MAX_MESSAGE_BYTES));
            return Ok(Reply { status: head.status, session, body, sse });
        }
    }
    Err(HttpError::Transport(last.unwrap_or(ProxyError::NoBackend)))
}

impl Reply {
    /// Whether the answer is an event stream (rather than one JSON body).
    pub fn is_event_stream(&self) -> bool {
        self.sse.is_some()
    }

    /// The next JSON-RPC message of the answer; `None` at its end. SSE events without data
    /// (priming) are skipped.
    pub async fn next(&mut self, ctx: &ShardCtx, idle: Duration) -> Result<Option<Message>, HttpError> {
        self.next_as(ctx, idle, jsonrpc::parse).await
    }

    /// [`Reply::next`] with a response's result kept as the bytes the target sent.
    pub async fn next_answer(&mut self, ctx: &ShardCtx, idle: Duration) -> Result<Option<Answer>, HttpError> {
        self.next_as(ctx, idle, jsonrpc::parse_answer).await
    }

    async fn next_as<T>(
        &mut self,
        ctx: &ShardCtx,
        idle: Duration,
        parse: fn(&[u8]) -> Result<T, RpcError>,
    ) -> Result<Option<T>, HttpError> {
        if self.sse.is_none() {
            let Some(first) = self.body.next(ctx, idle).await? else { return Ok(None) };
            // usually the whole body came in one read: parsed where it lies, no copy
            let Some(second) = self.body.next(ctx, idle).await? else {
                return parse(&first).map(Some).map_err(|e| HttpError::Payload(e.message));
            };
            let mut all = Vec::with_capacity(first.len() + second.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&second);
            while let Some(b) = self.body.next(ctx, idle).await? {
                if all.len() + b.len() > MAX_MESSAGE_BYTES {
                    return Err(HttpError::Payload("answer too large".into()));
                }
                all.extend_from_slice(&b);
            }
            if all.len() > MAX_MESSAGE_BYTES {
                return Err(HttpError::Payload("answer too large".into()));
            }
            return parse(&all).map(Some).map_err(|e| HttpError::Payload(e.message));
        }
        loop {
            match self.next_event(ctx, idle).await? {
                Some(ev) if ev.data.is_empty() => continue,
                Some(ev) => return parse(ev.data.as_bytes()).map(Some).map_err(|e| HttpError::Payload(e.message)),
                None => return Ok(None),
            }
        }
    }

    /// Wait, at most `idle`, until the next message may be read without waiting for the
    /// upstream: bytes are buffered, or the (plain) socket is readable. A long-lived stream waits
    /// here, in a small future holding no read buffer (the parser's is given back too), and
    /// reads with [`Reply::next`] in a transient one.
    pub async fn readable(&mut self, idle: Duration) -> Result<(), HttpError> {
        let Some(up) = self.body.up.as_ref() else { return Ok(()) };
        let consumed = self.sse.as_mut().is_none_or(sse::Parser::release_if_consumed);
        if !consumed || !up.buf.is_empty() {
            return Ok(());
        }
        // TLS may hold decrypted bytes already: only a plain socket's readiness says it all
        let crate::tls::Stream::Plain(s) = &up.io else { return Ok(()) };
        // boxed: a timer is most of a waiting future's size, and a waiting stream keeps its future
        match Box::pin(monoio::time::timeout(idle, s.readable(false))).await {
            Err(_) => Err(HttpError::Transport(ProxyError::UpstreamTimeout)),
            // a failed socket fails the read that follows
            Ok(_) => Ok(()),
        }
    }

    /// The next SSE event of an event-stream answer; `None` at its end (or for a JSON answer).
    pub async fn next_event(&mut self, ctx: &ShardCtx, idle: Duration) -> Result<Option<sse::Event>, HttpError> {
        let Some(parser) = &mut self.sse else { return Ok(None) };
        loop {
            match parser.next_event() {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                Err(e) => return Err(HttpError::Payload(e.to_string())),
            }
            match self.body.next(ctx, idle).await? {
                Some(b) => parser.push(&b),
                None => return Ok(None),
            }
        }
    }

    /// Read the rest so the connection can go back to the pool (used after a 202).
    pub async fn finish(mut self, ctx: &ShardCtx, idle: Duration) {
        while let Ok(Some(_)) = self.body.next(ctx, idle).await {}
    }
}

/// A response body being read; the connection returns to the pool when it ends cleanly.
struct Body {
    up: Option<Peer>,
    key: upstream::PoolKey,
    framing: Framing,
    left: u64,
    dec: ChunkedDecoder,
    keep: bool,
    done: bool,
    /// The peer's buffers came from the pool ([`upstream::Pool::peer`]) and go back with it.
    pooled_buffers: bool,
}

impl Body {
    async fn next(&mut self, ctx: &ShardCtx, idle: Duration) -> Result<Option<Bytes>, HttpError> {
        loop {
            if self.done {
                self.release(ctx);
                return Ok(None);
            }
            let Some(up) = self.up.as_mut() else { return Ok(None) };
            match self.framing {
                Framing::None => self.done = true,
                Framing::Length(_) => {
                    if self.left == 0 {
                        self.done = true;
                        continue;
                    }
                    if !up.buf.is_empty() {
                        let take = (up.buf.len() as u64).min(self.left) as usize;
                        self.left -= take as u64;
                        return Ok(Some(up.buf.split_to(take).freeze()));
                    }
                }
                Framing::Chunked => {
                    let mut out = bytes::BytesMut::new();
                    let buf = &up.buf;
                    let (pos, done) =
                        self.dec.decode_available(buf, |r| out.extend_from_slice(&buf[r])).map_err(|e| {
                            HttpError::Transport(ProxyError::UpstreamProtocol(format!("chunked body: {e}")))
                        })?;
                    self.done = done;
                    let _ = up.buf.split_to(pos);
                    if !out.is_empty() {
                        return Ok(Some(out.freeze()));
                    }
                    if self.done {
                        continue;
                    }
                }
                Framing::CloseDelimited => {
                    self.keep = false;
                    if !up.buf.is_empty() {
                        return Ok(Some(up.buf.split().freeze()));
                    }
                }
            }
            if self.done {
                continue;
            }
            let up = self.up.as_mut().ok_or(HttpError::Transport(ProxyError::UpstreamClosed))?;
            match monoio::time::timeout(idle, up.fill()).await {
                Err(_) => return Err(HttpError::Transport(ProxyError::UpstreamTimeout)),
                Ok(Ok(0)) if self.framing == Framing::CloseDelimited => {
                    self.done = true;
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.up = None;
                    return Err(HttpError::Transport(ProxyError::UpstreamClosed));
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    fn release(&mut self, ctx: &ShardCtx) {
        if let Some(up) = self.up.take() {
            if self.keep && self.framing != Framing::CloseDelimited && up.buf.is_empty() {
                if self.pooled_buffers {
                    ctx.pool.put_peer(self.key, up);
                } else {
                    ctx.pool.put(self.key, up.io);
                }
            }
        }
    }
}
