//! Talking to upstreams: the per-shard connection pool, request/response head rewriting, body copying, retries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::tls::{Stream, UpstreamTls};

use crate::config::compile::{CorsPlan, HeaderOps, RoutePlan};
use crate::error::ProxyError;
use crate::http::codec::{self, ChunkedDecoder, Framing, RequestHead, ResponseHead};
use crate::http::io::Peer;
use crate::observe::metrics::ShardStats;
use crate::proxy::transform::Changes;

/// Index of `peek` in [`crate::observe::metrics::STALE_FOUND_BY`].
pub const STALE_PEEK: usize = 0;
/// Index of `retry` in [`crate::observe::metrics::STALE_FOUND_BY`].
pub const STALE_RETRY: usize = 1;

const MAX_IDLE_PER_HOST: usize = 256;
const POOL_IDLE_TTL: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Request bodies up to this size are buffered when a retry policy may need to replay them.
pub const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// Where a pooled connection goes: the address, and the TLS settings it was opened with (0 for
/// plain), so that a connection is only reused for the same name, roots and client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Upstream address.
    pub addr: SocketAddr,
    /// [`UpstreamTls::id`], or 0.
    pub tls: u64,
}

impl PoolKey {
    /// The key of connections to `addr` opened with `tls`.
    pub fn new(addr: SocketAddr, tls: Option<&UpstreamTls>) -> Self {
        PoolKey { addr, tls: tls.map_or(0, |t| t.id) }
    }
}

/// Read buffer of an upstream exchange: a 16 KiB body and its head arrive in one read.
pub const UPSTREAM_READ_BUF: usize = 32 * 1024;
/// Buffers of finished exchanges kept for the next ones, per shard (about 33 KiB each): enough for
/// this many exchanges at once without allocating, without holding much memory after a burst.
const SPARE_BUFFERS: usize = 64;

/// A cheap hasher for [`PoolKey`]s (multiply-rotate, as in rustc's FxHash). The keys are upstream
/// addresses from the configuration, not chosen by clients, so SipHash's flooding resistance buys
/// nothing here and cost two hashes' worth of instructions on every proxied request.
#[derive(Default)]
pub struct KeyHasher(u64);

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Idle connections by upstream, each with the time it was returned.
type IdleMap = HashMap<PoolKey, Vec<(Stream, Instant)>, BuildHasherDefault<KeyHasher>>;

/// Idle keep-alive connections per upstream, and spare exchange buffers; shard-local, so no lock.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<IdleMap>,
    spare: RefCell<Vec<(BytesMut, Vec<u8>)>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// An idle connection for `key`, if one is pooled, unprobed: the upstream may have closed it
    /// since. For a request the caller can resend whole on a fresh connection ([`Pool::forget`]
    /// the stale one), which saves the probe's syscall on every reuse.
    pub fn take(&self, key: PoolKey) -> Option<Stream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        while let Some((s, since)) = list.pop() {
            if since.elapsed() < POOL_IDLE_TTL {
                return Some(s);
            }
        }
        None
    }

    /// An idle connection for `key` that a probe found still open, for a request that cannot be
    /// resent (its body streams from the client): the stale ones are counted in `stats`.
    pub fn take_probed(&self, key: PoolKey, stats: &ShardStats) -> Option<Stream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        while let Some((s, since)) = list.pop() {
            if since.elapsed() >= POOL_IDLE_TTL {
                continue;
            }
            if s.is_idle_and_open() {
                return Some(s);
            }
            stats.stale_connections[STALE_PEEK].fetch_add(1, Relaxed);
        }
        None
    }

    /// Close a pooled connection that proved stale (it ended before any response byte) and count
    /// it as found by a retry; the caller resends on a fresh connection.
    pub fn forget(&self, up: Peer, stats: &ShardStats) {
        stats.stale_connections[STALE_RETRY].fetch_add(1, Relaxed);
        drop(up);
    }

    /// Return a connection whose last exchange completed cleanly.
    pub fn put(&self, key: PoolKey, s: Stream) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((s, Instant::now()));
        }
    }

    /// `s` with the buffers of a finished exchange (or new ones): no allocation per request.
    pub fn peer(&self, s: Stream) -> Peer {
        match self.spare.borrow_mut().pop() {
            Some((buf, out)) => Peer::with_buffers(s, buf, out, UPSTREAM_READ_BUF),
            None => Peer::new(s, UPSTREAM_READ_BUF),
        }
    }

    /// Return a connection whose last exchange completed cleanly (nothing unread in `up.buf`),
    /// keeping its buffers for the next exchange.
    pub fn put_peer(&self, key: PoolKey, up: Peer) {
        let (s, buf, out) = up.into_parts();
        self.put(key, s);
        let mut spare = self.spare.borrow_mut();
        if spare.len() < SPARE_BUFFERS && buf.is_empty() {
            spare.push((buf, out));
        }
    }
}

/// Open a new upstream connection, with its TLS handshake when `tls` is set (both within the
/// connect timeout).
pub async fn connect(addr: SocketAddr, tls: Option<&UpstreamTls>) -> Result<Stream, ProxyError> {
    let s = match monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ProxyError::UpstreamConnect(format!("{addr}: {e}"))),
        Err(_) => return Err(ProxyError::UpstreamConnect(format!("{addr}: connect timed out"))),
    };
    let _ = s.set_nodelay(true);
    let Some(tls) = tls else { return Ok(Stream::Plain(s)) };
    match monoio::time::timeout(CONNECT_TIMEOUT, crate::tls::connect(s, tls)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ProxyError::UpstreamTls(format!("{addr} as {}: {e}", tls.server_name.to_str()))),
        Err(_) => Err(ProxyError::UpstreamTls(format!("{addr}: TLS handshake timed out"))),
    }
}

/// Names listed in a `Connection` header (other than `close`/`keep-alive`) are hop-by-hop too.
fn connection_named(value: Option<&[u8]>) -> Vec<String> {
    value
        .map(|v| {
            codec::connection_tokens(v)
                .filter_map(|t| std::str::from_utf8(t).ok())
                .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
                .map(|t| t.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// How the request is framed towards the upstream.
#[derive(Clone, Copy)]
pub enum BodyOut {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// Chunked, passed through.
    Chunked,
}

/// Write the upstream request head. `edits` are decided per request (`extAuthz` answers,
/// credentials the gateway consumed); the route's `ops` come later in the policy order, so they win.
#[allow(clippy::too_many_arguments)]
pub fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    target: &str,
    host: Option<&str>,
    ops: Option<&HeaderOps>,
    edits: &[(&str, Option<Vec<u8>>)],
    changes: &Changes,
    body: BodyOut,
    peer: SocketAddr,
) {
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = connection_named(head.header("connection"));
    let mut xff: Option<&[u8]> = None;
    let mut wrote_host = false;
    for (name, value) in head.headers() {
        if codec::is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("expect")
            || named.iter().any(|n| n.eq_ignore_ascii_case(name))
            || ops.is_some_and(|o| o.drops(name))
            || edits.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            || changes.drops(name)
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            xff = Some(value);
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                continue;
            }
            wrote_host = true;
        }
        codec::write_header(out, name, value);
    }
    match host {
        Some(h) => codec::write_header(out, "host", h.as_bytes()),
        None if !wrote_host => codec::write_header(out, "host", head.host().unwrap_or("").as_bytes()),
        None => {}
    }
    // "x-forwarded-for: [previous, ]ip", written in place: the address text needs no cleaning
    match xff {
        Some(prev) => {
            codec::write_header(out, "x-forwarded-for", prev);
            out.truncate(out.len() - 2);
            out.extend_from_slice(b", ");
        }
        None => out.extend_from_slice(b"x-forwarded-for: "),
    }
    codec::write_ip(out, peer.ip());
    out.extend_from_slice(b"\r\n");
    match body {
        BodyOut::None if matches!(head.method(), "POST" | "PUT" | "PATCH") => {
            codec::write_header(out, "content-length", b"0")
        }
        BodyOut::None => {}
        BodyOut::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            codec::write_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyOut::Chunked => codec::write_header(out, "transfer-encoding", b"chunked"),
    }
    for (n, v) in edits {
        if let (Some(v), false) = (v, ops.is_some_and(|o| o.drops(n))) {
            codec::write_header(out, n, v);
        }
    }
    if let Some(o) = ops {
        for (n, v) in o.extra() {
            codec::write_header(out, n, v.as_bytes());
        }
    }
    for (n, v) in changes.headers() {
        codec::write_header(out, n, v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Write the response head sent to the client.
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    ops: Option<&HeaderOps>,
    changes: &Changes,
    cors: Option<(&CorsPlan, Option<&str>)>,
    chunked_out: bool,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    codec::write_u64(out, u64::from(resp.status));
    out.push(b' ');
    let reason = resp.reason();
    out.extend_from_slice(if reason.is_empty() { codec::reason_phrase(resp.status) } else { reason }.as_bytes());
    out.extend_from_slice(b"\r\n");
    let named = connection_named(resp.header("connection"));
    for (name, value) in resp.headers() {
        if codec::is_hop_by_hop(name)
            || named.iter().any(|n| n.eq_ignore_ascii_case(name))
            || ops.is_some_and(|o| o.drops(name))
            || changes.drops(name)
            || (resp.framing != Framing::None
                && !matches!(resp.framing, Framing::Length(_))
                && name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        codec::write_header(out, name, value);
    }
    if chunked_out {
        codec::write_header(out, "transfer-encoding", b"chunked");
    }
    if !keep_alive {
        codec::write_header(out, "connection", b"close");
    }
    if let Some(o) = ops {
        for (n, v) in o.extra() {
            codec::write_header(out, n, v.as_bytes());
        }
    }
    for (n, v) in changes.headers() {
        codec::write_header(out, n, v.as_bytes());
    }
    if let Some((c, origin)) = cors {
        crate::proxy::policy::write_cors_headers(c, origin, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// The start of a `Content-Length` body that arrived with its head, split off `buf` so that it
/// goes out in the same write as the head; returns it and the framing of the rest.
pub fn split_buffered_body(buf: &mut BytesMut, framing: Framing) -> (Bytes, Framing) {
    match framing {
        Framing::Length(n) if !buf.is_empty() => {
            let take = (buf.len() as u64).min(n) as usize;
            (buf.split_to(take).freeze(), Framing::Length(n - take as u64))
        }
        _ => (Bytes::new(), framing),
    }
}

/// Why copying a body stopped early.
#[derive(Debug)]
pub enum CopyError {
    /// The source ended or failed before the body was complete.
    Source(io::Error),
    /// Writing to the destination failed.
    Sink(io::Error),
    /// Invalid chunk framing from the source.
    BadChunk(codec::ChunkError),
    /// More payload than allowed.
    TooLarge,
    /// The source was idle too long.
    Timeout,
}

async fn fill(src: &mut Peer, idle: Option<Duration>) -> Result<(), CopyError> {
    let r = match idle {
        Some(d) => monoio::time::timeout(d, src.fill()).await.map_err(|_| CopyError::Timeout)?,
        None => src.fill().await,
    };
    match r {
        Ok(0) => Err(CopyError::Source(io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(CopyError::Source(e)),
    }
}

/// Copy one body framed as `framing` from `src` (starting with bytes already buffered) to `dst`,
/// forwarding each read as it arrives (so SSE events are never held back). Chunked bodies pass
/// through with their framing unless `dechunk` (for HTTP/1.0 clients). Returns payload bytes.
pub async fn copy_body(
    src: &mut Peer,
    dst: &mut Peer,
    framing: Framing,
    max: Option<u64>,
    idle: Option<Duration>,
    dechunk: bool,
) -> Result<u64, CopyError> {
    let mut total = 0u64;
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            if max.is_some_and(|m| n > m) {
                return Err(CopyError::TooLarge);
            }
            let mut left = n;
            while left > 0 {
                if src.buf.is_empty() {
                    fill(src, idle).await?;
                }
                let take = (src.buf.len() as u64).min(left) as usize;
                let piece = src.buf.split_to(take).freeze();
                dst.send(piece).await.map_err(CopyError::Sink)?;
                left -= take as u64;
                total += take as u64;
            }
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            loop {
                let mut pieces = Vec::new();
                let (pos, done) = dec
                    .decode_available(&src.buf, |r| {
                        total += r.len() as u64;
                        if dechunk {
                            pieces.push(r);
                        }
                    })
                    .map_err(CopyError::BadChunk)?;
                if max.is_some_and(|m| total > m) {
                    return Err(CopyError::TooLarge);
                }
                if pos > 0 {
                    let frame = src.buf.split_to(pos).freeze();
                    if dechunk {
                        for r in pieces {
                            dst.send(frame.slice(r)).await.map_err(CopyError::Sink)?;
                        }
                    } else {
                        dst.send(frame).await.map_err(CopyError::Sink)?;
                    }
                }
                if done {
                    break;
                }
                fill(src, idle).await?;
            }
        }
        Framing::CloseDelimited => loop {
            if !src.buf.is_empty() {
                let piece = src.buf.split().freeze();
                total += piece.len() as u64;
                dst.send(piece).await.map_err(CopyError::Sink)?;
            }
            match src.fill().await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(CopyError::Source(e)),
            }
        },
    }
    Ok(total)
}

/// Read a response head from the upstream, skipping interim 1xx responses.
pub async fn read_response_head(up: &mut Peer, request_was_head: bool) -> Result<ResponseHead, ProxyError> {
    let limits = codec::Limits { max_head_bytes: 64 * 1024, max_headers: 200 };
    loop {
        match codec::parse_response(&up.buf, &limits, request_was_head) {
            Ok(Some(p)) => {
                let raw = up.buf.split_to(p.head_len).freeze();
                let head = p.into_head(raw);
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(head);
            }
            Ok(None) => {}
            Err(e) => return Err(ProxyError::UpstreamProtocol(e.to_string())),
        }
        match up.fill().await {
            Ok(0) => return Err(ProxyError::UpstreamClosed),
            Ok(_) => {}
            // TLS refusals that come after the client's side of the handshake (TLS 1.3 servers
            // check client certificates then)
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ProxyError::UpstreamTls(e.to_string()))
            }
            Err(_) => return Err(ProxyError::UpstreamClosed),
        }
    }
}

/// An open upstream exchange after its response head arrived.
pub struct Answer {
    /// The upstream connection.
    pub up: Peer,
    /// Its address (for logs).
    pub addr: SocketAddr,
    /// Where it goes back to in the pool.
    pub key: PoolKey,
    /// The response head.
    pub head: ResponseHead,
    /// Attempts made.
    pub attempts: u8,
    /// Time to response head of the last attempt.
    pub upstream_time: Duration,
}

/// Failure of [`exchange`], with whether the client's body was (partly) consumed.
pub struct ExchangeError {
    /// What failed.
    pub error: ProxyError,
    /// Attempts made.
    pub attempts: u8,
    /// Last upstream tried.
    pub addr: Option<SocketAddr>,
}

/// The request as it will be sent upstream.
pub struct Outgoing<'a> {
    /// The head written upstream (built once, copied into each attempt's write buffer).
    pub head: &'a [u8],
    /// A buffered body for replay, or None when the body streams from the client.
    pub replay: Option<Bytes>,
    /// Framing of the client's body when streaming.
    pub framing: Framing,
    /// Body limit.
    pub max_body: u64,
    /// Client idle limit while reading the body.
    pub idle: Duration,
    /// Whether this is a HEAD request.
    pub is_head: bool,
    /// Route (backends, retry, timeouts).
    pub route: &'a RoutePlan,
}

/// Send the request (with retries as the route allows) and wait for a response head.
pub async fn exchange(
    ctx: &crate::proxy::shard::ShardCtx,
    req: &Outgoing<'_>,
    client: &mut Peer,
) -> Result<Answer, ExchangeError> {
    let route = req.route;
    let retry = route.policies.retry.as_ref();
    let replayable = req.replay.is_some() || matches!(req.framing, Framing::None);
    let max_attempts = if replayable { retry.map_or(1, |r| r.attempts) } else { 1 };
    let mut backoff = retry.map(|r| r.backoff).unwrap_or_default();
    let mut attempts = 0u8;
    loop {
        attempts += 1;
        let fail = |error, addr| ExchangeError { error, attempts, addr };
        let Some(bi) = crate::proxy::route::pick_backend(route, ctx.random()) else {
            return Err(fail(ProxyError::NoBackend, None));
        };
        let backend = &route.backends[bi];
        let addr = backend.addrs[(ctx.random() as usize) % backend.addrs.len().max(1)];
        let tls = backend.tls.as_deref();
        let result = attempt(ctx, req, client, PoolKey::new(addr, tls), tls, replayable).await;
        let retry_status = match &result {
            Ok(a) => retry.is_some_and(|r| r.codes.contains(&a.head.status)),
            Err(e) => e.retryable(),
        };
        if retry_status && attempts < max_attempts {
            ctx.registry.shards[ctx.index].retries.fetch_add(1, Relaxed);
            if !backoff.is_zero() {
                monoio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            continue;
        }
        return match result {
            Ok(mut a) => {
                a.attempts = attempts;
                Ok(a)
            }
            Err(error) => Err(fail(error, Some(addr))),
        };
    }
}

/// One attempt on `addr`. A pooled connection that turns out dead before any response byte is
/// replaced by a fresh one once, when the request can be replayed.
async fn attempt(
    ctx: &crate::proxy::shard::ShardCtx,
    req: &Outgoing<'_>,
    client: &mut Peer,
    key: PoolKey,
    tls: Option<&UpstreamTls>,
    replayable: bool,
) -> Result<Answer, ProxyError> {
    let addr = key.addr;
    let stats = &ctx.registry.shards[ctx.index];
    let mut pooled = if replayable { ctx.pool.take(key) } else { ctx.pool.take_probed(key, stats) };
    loop {
        let reused = pooled.is_some();
        let stream = match pooled.take() {
            Some(s) => s,
            None => connect(addr, tls).await?,
        };
        let mut up = ctx.pool.peer(stream);
        let started = Instant::now();
        let sent = send_request(req, client, &mut up).await;
        let head = match sent {
            Ok(()) => {
                let t = req.route.policies.backend_timeout;
                match t {
                    Some(t) => match monoio::time::timeout(t, read_response_head(&mut up, req.is_head)).await {
                        Ok(r) => r,
                        Err(_) => Err(ProxyError::UpstreamTimeout),
                    },
                    None => read_response_head(&mut up, req.is_head).await,
                }
            }
            Err(e) => Err(e),
        };
        // an upstream closing an idle connection may say so with a 408 first (as the peek
        // skipped here would have seen): that is no answer to this request either
        let stale = match &head {
            Ok(h) => h.status == 408,
            Err(ProxyError::UpstreamClosed) => up.buf.is_empty(),
            Err(_) => false,
        };
        if stale && reused && replayable {
            ctx.pool.forget(up, stats);
            continue;
        }
        return match head {
            Ok(head) => Ok(Answer { up, addr, key, head, attempts: 1, upstream_time: started.elapsed() }),
            Err(e) => Err(e),
        };
    }
}

async fn send_request(req: &Outgoing<'_>, client: &mut Peer, up: &mut Peer) -> Result<(), ProxyError> {
    let write_err = |_| ProxyError::UpstreamClosed;
    let mut out = up.take_out();
    out.extend_from_slice(req.head);
    if let Some(body) = &req.replay {
        return up.send_out_with(out, body.clone()).await.map_err(write_err);
    }
    up.send_out(out).await.map_err(write_err)?;
    match copy_body(client, up, req.framing, Some(req.max_body), Some(req.idle), false).await {
        Ok(_) => Ok(()),
        Err(CopyError::TooLarge) => Err(ProxyError::BodyTooLarge(req.max_body)),
        Err(CopyError::BadChunk(_)) => Err(ProxyError::BadBody("invalid chunked encoding")),
        Err(CopyError::Source(_)) | Err(CopyError::Timeout) => {
            Err(ProxyError::BadBody("client closed or stalled before the body was complete"))
        }
        Err(CopyError::Sink(_)) => Err(ProxyError::UpstreamClosed),
    }
}

/// Read a whole client body of known length (for replay).
pub async fn buffer_body(client: &mut Peer, n: u64, idle: Duration) -> Result<Bytes, ProxyError> {
    let n = n as usize;
    while client.buf.len() < n {
        fill_body(client, idle).await?;
    }
    Ok(client.buf.split_to(n).freeze())
}

/// Read a whole client body (length or chunked) of at most `max` bytes, for handlers that need
/// the payload itself (MCP).
pub async fn read_body(client: &mut Peer, framing: Framing, max: u64, idle: Duration) -> Result<Bytes, ProxyError> {
    match framing {
        Framing::None | Framing::CloseDelimited => Ok(Bytes::new()),
        Framing::Length(n) if n > max => Err(ProxyError::BodyTooLarge(max)),
        Framing::Length(n) => buffer_body(client, n, idle).await,
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut body = bytes::BytesMut::new();
            loop {
                let buf = &client.buf;
                let (pos, done) = dec
                    .decode_available(buf, |r| body.extend_from_slice(&buf[r]))
                    .map_err(|_| ProxyError::BadBody("invalid chunked framing"))?;
                if body.len() as u64 > max {
                    return Err(ProxyError::BodyTooLarge(max));
                }
                let _ = client.buf.split_to(pos);
                if done {
                    return Ok(body.freeze());
                }
                fill_body(client, idle).await?;
            }
        }
    }
}

/// Read more of a client body, which must come within `idle`.
async fn fill_body(client: &mut Peer, idle: Duration) -> Result<(), ProxyError> {
    match monoio::time::timeout(idle, client.fill()).await {
        Ok(Ok(0)) | Ok(Err(_)) => Err(ProxyError::BadBody("client closed before the body was complete")),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(ProxyError::BadBody("client stalled before the body was complete")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &[u8]) -> RequestHead {
        let limits = codec::Limits { max_head_bytes: 8192, max_headers: 64 };
        let p = codec::parse_request(raw, &limits).unwrap().unwrap();
        let n = p.head_len;
        p.into_head(Bytes::copy_from_slice(&raw[..n]))
    }

    fn head_out(raw: &[u8], body: BodyOut, peer: &str) -> String {
        let mut out = Vec::new();
        let head = request(raw);
        let changes = Changes::default();
        write_request_head(&mut out, &head, head.target(), None, None, &[], &changes, body, peer.parse().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_head_appends_the_client_to_x_forwarded_for() {
        let h = head_out(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", BodyOut::None, "10.0.0.7:5");
        assert_eq!(h, "GET /a HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 10.0.0.7\r\n\r\n");
        let raw = b"POST /a HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: h\r\nContent-Length: 12345\r\n\r\n";
        let h = head_out(raw, BodyOut::Length(12345), "[2001:db8::1]:5");
        assert_eq!(
            h,
            "POST /a HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 1.2.3.4, 2001:db8::1\r\ncontent-length: 12345\r\n\r\n"
        );
        let h = head_out(b"PUT /a HTTP/1.1\r\nHost: h\r\n\r\n", BodyOut::None, "127.0.0.1:1");
        assert!(h.ends_with("x-forwarded-for: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"), "{h}");
    }

    #[test]
    fn response_head_keeps_status_and_reason() {
        let limits = codec::Limits { max_head_bytes: 8192, max_headers: 64 };
        for (raw, want) in [
            (&b"HTTP/1.1 204 Nothing\r\nX-A: 1\r\n\r\n"[..], "HTTP/1.1 204 Nothing\r\nX-A: 1\r\n\r\n"),
            (&b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"[..], "HTTP/1.1 599 Unknown\r\nContent-Length: 0\r\n\r\n"),
        ] {
            let p = codec::parse_response(raw, &limits, false).unwrap().unwrap();
            let n = p.head_len;
            let resp = p.into_head(Bytes::copy_from_slice(&raw[..n]));
            let mut out = Vec::new();
            write_response_head(&mut out, &resp, None, &Changes::default(), None, false, true);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn buffered_body_start_is_split_off_length_bodies_only() {
        let mut buf = BytesMut::from(&b"helloNEXT"[..]);
        let (first, rest) = split_buffered_body(&mut buf, Framing::Length(5));
        assert_eq!((&first[..], rest), (&b"hello"[..], Framing::Length(0)));
        assert_eq!(&buf[..], b"NEXT", "bytes past the body stay");
        let mut buf = BytesMut::from(&b"abc"[..]);
        let (first, rest) = split_buffered_body(&mut buf, Framing::Length(10));
        assert_eq!((&first[..], rest), (&b"abc"[..], Framing::Length(7)));
        assert!(buf.is_empty());
        for framing in [Framing::Chunked, Framing::CloseDelimited, Framing::None] {
            let mut buf = BytesMut::from(&b"3\r\nabc\r\n"[..]);
            let (first, rest) = split_buffered_body(&mut buf, framing);
            assert!(first.is_empty());
            assert_eq!(rest, framing);
            assert_eq!(buf.len(), 8);
        }
        let mut empty = BytesMut::new();
        assert_eq!(split_buffered_body(&mut empty, Framing::Length(4)).1, Framing::Length(4));
    }

    #[test]
    fn pool_hands_buffers_of_finished_exchanges_to_the_next() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap();
        rt.block_on(async {
            let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let pool = Pool::new();
            let key = PoolKey::new(addr, None);
            let c = TcpStream::connect(addr).await.unwrap();
            let _server_side = l.accept().await.unwrap();
            let up = pool.peer(Stream::Plain(c));
            assert!(up.buf.capacity() >= UPSTREAM_READ_BUF);
            let start = up.buf.as_ptr();
            pool.put_peer(key, up);
            let s = pool.take(key).expect("the connection was pooled");
            let up = pool.peer(s);
            assert_eq!(up.buf.as_ptr(), start, "the same read buffer");
            // a connection with unread bytes is never pooled by callers; its buffer is not kept
            let mut up = up;
            up.buf.extend_from_slice(b"x");
            pool.put_peer(key, up);
            assert!(pool.spare.borrow().is_empty());
        });
    }

    #[test]
    fn key_hasher_separates_ports_and_addresses() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<KeyHasher>::default();
        let k = |a: &str| b.hash_one(PoolKey::new(a.parse().unwrap(), None));
        let keys = ["127.0.0.1:80", "127.0.0.1:81", "127.0.0.2:80", "[::1]:80", "10.0.0.1:80"];
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|a| k(a)).collect();
        assert_eq!(hashes.len(), keys.len());
    }
}
