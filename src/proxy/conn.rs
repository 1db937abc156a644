//! One client connection: read heads under limits, route, apply policies, forward or answer, log, repeat while keep-alive.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::admission::{self, Admitted};
use super::shard::{ShardCtx, ShardState};
use super::transform::Changes;
use super::upstream::{self, BodyOut, CopyError, Outgoing};
use super::{ext_authz, policy, route};
use crate::auth::Identity;
use crate::config::compile::{BindPlan, CorsPlan, HostPattern};
use crate::error::{write_error_response, Forbidden, McpReject, ProxyError};
use crate::http::codec::{self, Framing, RequestHead};
use crate::http::io::Peer;
use crate::mcp::access::Access;
use crate::observe::access_log::Entry;
use crate::tls::Stream;

/// Decrements the shard's connection count however the task ends.
struct ConnGuard(Rc<ShardCtx>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

enum ReadHead {
    /// Clean end: EOF or idle timeout before a byte, or drain.
    Quiet,
    /// The client broke a rule; answer and close.
    Fail(ProxyError),
}

/// Serve one accepted connection until it closes.
pub async fn serve(ctx: Rc<ShardCtx>, stream: monoio::net::TcpStream, peer: SocketAddr, bind: SocketAddr) {
    let _guard = ConnGuard(ctx.clone());
    let _ = stream.set_nodelay(true);
    // on a TLS bind, the hostname of the listener the SNI chose: requests must stay within it
    let (io, sni_listener) = {
        let state = ctx.current();
        match state.snap.binds.iter().find(|b| b.listen == bind) {
            // boxed: the handshake's state would otherwise size the connection's task for its life
            Some(b) if b.tls => match Box::pin(handshake(&ctx, &state, b, stream, peer)).await {
                Some((s, host)) => (s, Some(host)),
                None => return,
            },
            _ => (Stream::Plain(stream), None),
        }
    };
    let mut client = Peer::new(io, 8 * 1024);
    requests(&ctx, &mut client, peer, bind, sni_listener.as_ref()).await;
    if client.io.tls().is_some() {
        // close_notify, so that a client reading to the end knows nothing was cut off
        use monoio::io::AsyncWriteRent;
        let _ = monoio::time::timeout(Duration::from_secs(1), client.io.shutdown()).await;
    }
}

/// Read and answer requests on one connection until it should close.
async fn requests(
    ctx: &Rc<ShardCtx>,
    client: &mut Peer,
    peer: SocketAddr,
    bind: SocketAddr,
    sni_listener: Option<&Option<HostPattern>>,
) {
    loop {
        let head = match read_head(ctx, client).await {
            Ok(h) => h,
            Err(ReadHead::Quiet) => return,
            Err(ReadHead::Fail(e)) => {
                let started = Instant::now();
                let mut out = client.take_out();
                write_error_response(&e, true, &[], &mut out);
                let _ = client.send_out(out).await;
                count_error(ctx, &e);
                ctx.log.write(
                    ctx.index,
                    &Entry {
                        peer: Some(peer),
                        status: e.status(),
                        reason: Some(e.reason()),
                        error: Some(e.to_string()),
                        duration: started.elapsed(),
                        ..Default::default()
                    },
                );
                return;
            }
        };
        // taken once the head is here, not before the wait for it: a reload committed while
        // the connection was idle applies to its next request
        let state = ctx.current();
        ctx.in_flight.set(ctx.in_flight.get() + 1);
        let stats = &ctx.registry.shards[ctx.index];
        stats.active_requests.fetch_add(1, Relaxed);
        let keep = handle(ctx, &state, client, head, peer, bind, sni_listener).await;
        stats.active_requests.fetch_sub(1, Relaxed);
        ctx.in_flight.set(ctx.in_flight.get() - 1);
        if !keep || ctx.draining.is_fired() {
            return;
        }
    }
}

/// The server side of a TLS handshake within `handshakeTimeout`, counted either way; a failure
/// is also logged (with the reason rustls gives) and closes the connection.
async fn handshake(
    ctx: &ShardCtx,
    state: &ShardState,
    bind: &BindPlan,
    stream: monoio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(Stream, Option<HostPattern>)> {
    let stats = &ctx.registry.shards[ctx.index];
    let started = Instant::now();
    let accepted =
        monoio::time::timeout(state.snap.tls_handshake_timeout, crate::tls::accept(stream, |sni| bind.tls_for(sni)))
            .await;
    let refused = match accepted {
        Ok(Ok((tls, host))) => {
            stats.tls_handshakes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Some((Stream::Tls(Box::new(tls)), host));
        }
        Ok(Err(r)) => r,
        Err(_) => crate::tls::Refused { reason: "timeout", detail: "TLS handshake not finished in time".into() },
    };
    stats.count_tls_error(refused.reason);
    ctx.log.write(
        ctx.index,
        &Entry {
            peer: Some(peer),
            status: if refused.reason == "not_tls" { 400 } else { 0 },
            reason: Some(refused.reason),
            error: Some(format!("TLS handshake failed: {}", refused.detail)),
            duration: started.elapsed(),
            ..Default::default()
        },
    );
    None
}

fn count_error(ctx: &ShardCtx, e: &ProxyError) {
    ctx.registry.shards[ctx.index].count_error(e.reason());
}

/// Read one request head: idle timeout until the first byte, header timeout for the rest.
async fn read_head(ctx: &ShardCtx, client: &mut Peer) -> Result<RequestHead, ReadHead> {
    // copied out so that no snapshot is held while the connection waits
    let (limits, idle_timeout, header_read_timeout) = {
        let state = ctx.current();
        let l = &state.snap.limits;
        (
            codec::Limits { max_head_bytes: l.max_header_bytes, max_headers: l.max_headers },
            l.idle_timeout.get(),
            l.header_read_timeout.get(),
        )
    };
    let mut deadline: Option<Instant> = None;
    loop {
        if !client.buf.is_empty() {
            match codec::parse_request(&client.buf, &limits) {
                Ok(Some(p)) => {
                    // a copy, not a split: a head kept for a long-lived response (an event
                    // stream) must not pin the connection's whole read buffer
                    let raw = Bytes::copy_from_slice(&client.buf[..p.head_len]);
                    bytes::Buf::advance(&mut client.buf, p.head_len);
                    return Ok(p.into_head(raw));
                }
                Ok(None) => {}
                Err(e) => return Err(ReadHead::Fail(ProxyError::BadHead(e))),
            }
        }
        let read = if client.buf.is_empty() {
            // waiting for a new request: idle limit, and give way to drain
            if ctx.draining.is_fired() {
                return Err(ReadHead::Quiet);
            }
            let r = monoio::select! {
                r = monoio::time::timeout(idle_timeout, client.fill()) => r,
                _ = ctx.draining.fired() => return Err(ReadHead::Quiet),
            };
            match r {
                Ok(r) => r,
                Err(_) => {
                    let stats = &ctx.registry.shards[ctx.index];
                    stats.idle_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    stats.count_error("idle_timeout");
                    return Err(ReadHead::Quiet);
                }
            }
        } else {
            let until = *deadline.get_or_insert_with(|| Instant::now() + header_read_timeout);
            let left = until.saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, client.fill()).await {
                Ok(r) => r,
                Err(_) => return Err(ReadHead::Fail(ProxyError::HeaderTimeout)),
            }
        };
        match read {
            Ok(0) | Err(_) => return Err(ReadHead::Quiet),
            Ok(_) => {
                if deadline.is_none() {
                    deadline = Some(Instant::now() + header_read_timeout);
                }
            }
        }
    }
}

/// What happened to a request, for the log and metrics.
pub struct Done {
    status: u16,
    bytes: u64,
    keep_alive: bool,
    upstream: Option<SocketAddr>,
    attempts: u8,
    upstream_time: Option<Duration>,
}

impl Done {
    /// A request the gateway answered itself.
    pub fn local(status: u16, bytes: u64, keep_alive: bool) -> Self {
        Done { status, bytes, keep_alive, upstream: None, attempts: 0, upstream_time: None }
    }
}

/// A failure, and whether the response had already started (then we can only close).
pub struct Failed {
    error: ProxyError,
    started: bool,
    upstream: Option<SocketAddr>,
    attempts: u8,
}

impl Failed {
    /// A failure after the response started.
    pub fn started(error: ProxyError) -> Self {
        Failed { error, started: true, upstream: None, attempts: 0 }
    }
}

impl From<ProxyError> for Failed {
    fn from(error: ProxyError) -> Self {
        Failed { error, started: false, upstream: None, attempts: 0 }
    }
}

impl From<McpReject> for Failed {
    fn from(r: McpReject) -> Self {
        ProxyError::Mcp(r, None).into()
    }
}

async fn handle(
    ctx: &Rc<ShardCtx>,
    state: &ShardState,
    client: &mut Peer,
    head: RequestHead,
    peer: SocketAddr,
    bind: SocketAddr,
    sni_listener: Option<&Option<HostPattern>>,
) -> bool {
    let started = Instant::now();
    let snap = &state.snap;
    let selected = snap.binds.iter().position(|b| b.listen == bind).and_then(|i| route::select(snap, i, &head));
    let route_name = selected.as_ref().map(|s| s.route.name.clone());
    let mut who = None;
    let result = match &selected {
        None => Err(Failed::from(ProxyError::NoRoute)),
        // a Host of another listener than the handshake's would skip that listener's TLS policy
        // (its certificate, its client-certificate demand)
        Some(sel) if sni_listener.is_some_and(|h| *h != sel.listener.hostname) => {
            Err(Failed::from(ProxyError::Misdirected))
        }
        Some(sel) => serve_route(ctx, state, sel, client, &head, peer, &mut who).await,
    };
    let (status, keep, entry_err, bytes, upstream, attempts) = match result {
        Ok(d) => {
            if let (Some(sel), Some(t)) = (&selected, d.upstream_time) {
                sel.route.stats.shard(ctx.index).upstream.observe(t);
            }
            (d.status, d.keep_alive, None, d.bytes, d.upstream, d.attempts)
        }
        Err(f) => {
            count_error(ctx, &f.error);
            let mut keep = false;
            if !f.started {
                // an unread request body leaves the connection's framing unknown: close
                let unread_body = head.framing != Framing::None;
                let close = f.error.closes_connection() || unread_body || !head.keep_alive;
                let mut out = client.take_out();
                let mut cors = Vec::new();
                if let Some(c) = selected.as_ref().and_then(|s| s.route.policies.cors.as_ref()) {
                    policy::write_cors_headers(c, head.header_str("origin"), &mut cors);
                }
                write_error_response(&f.error, close, &cors, &mut out);
                keep = client.send_out(out).await.is_ok() && !close;
                if unread_body && !keep {
                    // boxed: rare, and its timed read would add to every connection's task
                    Box::pin(linger(client)).await;
                }
            }
            (f.error.status(), keep, Some(f.error), 0, f.upstream, f.attempts)
        }
    };
    let elapsed = started.elapsed();
    if let Some(sel) = &selected {
        let s = sel.route.stats.shard(ctx.index);
        s.count_status(status);
        s.duration.observe(elapsed);
    }
    if !ctx.log.enabled.get() {
        return keep;
    }
    let plan = &snap.log;
    let fields = if plan.needs_eval() {
        let anonymous = Identity::default();
        let cx = crate::auth::cel::Ctx {
            response: Some(status),
            ..admission::rule_ctx(who.as_ref().unwrap_or(&anonymous), &head, peer)
        };
        match plan.eval(&cx) {
            Some(f) => f,
            None => return keep,
        }
    } else {
        Vec::new()
    };
    ctx.log.write(
        ctx.index,
        &Entry {
            peer: Some(peer),
            method: head.method(),
            path: head.target(),
            host: head.host().unwrap_or(""),
            status,
            route: route_name.as_deref().unwrap_or(""),
            upstream,
            reason: entry_err.as_ref().map(|e| e.reason()),
            error: entry_err.as_ref().map(|e| e.to_string()),
            bytes_sent: bytes,
            duration: elapsed,
            attempts,
            fields: &fields,
            removed: &plan.remove,
        },
    );
    keep
}

/// Adds the SigV4 headers for the request as it will be sent upstream.
fn sign_aws<'p>(
    aws: &'p crate::config::compile::AwsPlan,
    method: &str,
    host: &str,
    target: &str,
    body: &[u8],
    edits: &mut Vec<(&'p str, Option<Vec<u8>>)>,
) {
    use crate::auth::sigv4;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let hash = crate::digest::sha256_hex(body);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let r = sigv4::Request { method, host, path, query, payload_sha256: &hash };
    let signed = aws.signer.sign(&r, &sigv4::amz_date(now));
    edits.push(("authorization", Some(signed.authorization.into_bytes())));
    edits.push(("x-amz-date", Some(signed.date.into_bytes())));
    edits.push(("x-amz-security-token", signed.security_token.map(String::into_bytes)));
}

/// Close after answering a request whose body we did not read: stop writing, then read and drop
/// what the client still sends for a moment, so our answer is not destroyed by a reset while the
/// client is still uploading (nginx's lingering close).
async fn linger(client: &mut Peer) {
    use monoio::io::AsyncWriteRent;
    const LINGER: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 8 << 20;
    let _ = client.io.shutdown().await;
    let until = Instant::now() + LINGER;
    let mut seen = 0;
    while seen < LINGER_BYTES {
        client.buf.clear();
        let left = until.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, client.fill()).await {
            Ok(Ok(n)) if n > 0 => seen += n,
            _ => return,
        }
    }
}

/// Answer a gateway-made response (redirect, direct, preflight); the body, if any, is unread so
/// the connection closes when the request had one.
async fn answer_local(client: &mut Peer, head: &RequestHead, status: u16, out: Vec<u8>) -> Result<Done, Failed> {
    let keep = head.keep_alive && head.framing == Framing::None;
    client.send_out(out).await.map_err(|_| Failed::started(ProxyError::ClientClosed))?;
    Ok(Done::local(status, 0, keep))
}

/// A gateway-made response with a body (direct response, protected-resource metadata): `headers`
/// and CORS added, the body left out for HEAD.
fn write_local<'h>(
    out: &mut Vec<u8>,
    head: &RequestHead,
    status: u16,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
    cors: Option<(&CorsPlan, Option<&str>)>,
    body: &[u8],
) {
    codec::write_status_line(out, status);
    codec::write_header(out, "content-length", body.len().to_string().as_bytes());
    for (n, v) in headers {
        codec::write_header(out, n, v.as_bytes());
    }
    if let Some((c, o)) = cors {
        policy::write_cors_headers(c, o, out);
    }
    finish_local_head(out, head);
    out.extend_from_slice(b"\r\n");
    if head.method() != "HEAD" {
        out.extend_from_slice(body);
    }
}

fn finish_local_head(out: &mut Vec<u8>, head: &RequestHead) {
    if !(head.keep_alive && head.framing == Framing::None) {
        codec::write_header(out, "connection", b"close");
    }
}

async fn serve_route(
    ctx: &Rc<ShardCtx>,
    state: &ShardState,
    sel: &route::Selected<'_>,
    client: &mut Peer,
    head: &RequestHead,
    peer: SocketAddr,
    who: &mut Option<Identity>,
) -> Result<Done, Failed> {
    let pol = &sel.route.policies;
    let limits = &state.snap.limits;

    if let Some(cors) = &pol.cors {
        if policy::is_preflight(head) {
            let mut out = client.take_out();
            policy::write_preflight(cors, head, &mut out);
            return answer_local(client, head, 200, out).await;
        }
    }
    let origin = head.header_str("origin");
    let cors = pol.cors.as_ref().map(|c| (c, origin));
    let identity = match admission::authenticate(ctx, sel, head)? {
        // kept by the caller for the access log
        Admitted::Serve(id) => &*who.insert(id),
        Admitted::Metadata(doc) => {
            let mut out = client.take_out();
            let json = std::iter::once(("content-type", "application/json"));
            write_local(&mut out, head, 200, json, cors, doc.as_bytes());
            return answer_local(client, head, 200, out).await;
        }
    };
    let mut continued = false;
    let mut edits = match &pol.ext_authz {
        Some(plan) => {
            let max_body = limits.max_body_bytes;
            let check = ext_authz::Check { head, id: identity, peer, idle: limits.idle_timeout.get(), max_body };
            // boxed: only routes with extAuthz pay for its state (see `forward`)
            Box::pin(ext_authz::check(ctx, plan, &check, client, &mut continued)).await?
        }
        None => Vec::new(),
    };
    admission::authorize(sel, identity, head, peer)?;
    admission::admit_global(ctx, sel, identity, head, peer).await?;
    if let Some(auth) = &pol.auth {
        auth.consumed(identity, pol.passthrough, |name| edits.push((name, None)));
    }
    let (to_upstream, to_client) = match &pol.transform {
        Some(t) => {
            let cx = admission::rule_ctx(identity, head, peer);
            (t.request.eval(&cx)?, t.response.eval(&cx)?)
        }
        None => Default::default(),
    };
    if let Some(r) = &pol.redirect {
        let (status, location) = policy::redirect(r, head, sel.prefix);
        let mut out = client.take_out();
        codec::write_status_line(&mut out, status);
        codec::write_header(&mut out, "location", location.as_bytes());
        codec::write_header(&mut out, "content-length", b"0");
        finish_local_head(&mut out, head);
        out.extend_from_slice(b"\r\n");
        return answer_local(client, head, status, out).await;
    }
    if let Some(d) = &pol.direct {
        let mut out = client.take_out();
        let configured = pol.response_headers.iter().flat_map(|ops| ops.extra()).map(|(n, v)| (n.as_str(), v.as_str()));
        let extra = configured.chain(to_client.headers());
        write_local(&mut out, head, d.status, extra, cors, d.body.as_bytes());
        return answer_local(client, head, d.status, out).await;
    }

    let max_body = limits.max_body_bytes;
    if let Framing::Length(n) = head.framing {
        if n > max_body {
            return Err(ProxyError::BodyTooLarge(max_body).into());
        }
    }
    if head.expect_continue && head.framing != Framing::None && !continued {
        client
            .send(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"))
            .await
            .map_err(|_| Failed::started(ProxyError::ClientClosed))?;
    }
    if let Some(plan) = &sel.route.mcp {
        if let Some(origin) = head.header_str("origin").filter(|_| plan.origin_check) {
            if !policy::mcp_origin_allowed(pol.cors.as_ref(), origin, head.host()) {
                return Err(ProxyError::Forbidden(Forbidden {
                    reason: "origin_refused",
                    message: format!(
                        "pages from {origin:?} may not use this MCP endpoint (see the route's cors.allowOrigins)"
                    ),
                    challenge: None,
                })
                .into());
            }
        }
        let access = Access { rules: pol.mcp_authorization.as_ref(), id: identity, head: Some(head), peer };
        // boxed: its state would otherwise size every connection's task, proxied ones and
        // long-lived event streams included
        return Box::pin(crate::mcp::serve::serve(ctx, sel, plan, access, client, head, limits)).await;
    }
    // boxed too: inlined, the exchange's state would size every connection's task for its whole
    // life, an MCP event stream's included (one allocation per forwarded request)
    let changes = (edits, to_upstream, to_client);
    Box::pin(forward(ctx, sel, client, head, peer, limits, changes, cors)).await
}

/// The request's header changes: per-request edits (`extAuthz`, consumed credentials), then the
/// route's transformations towards the upstream and towards the client.
type Edits<'p> = (Vec<(&'p str, Option<Vec<u8>>)>, Changes<'p>, Changes<'p>);

/// Forward the request to the route's upstream and its response to the client.
#[allow(clippy::too_many_arguments)]
async fn forward(
    ctx: &Rc<ShardCtx>,
    sel: &route::Selected<'_>,
    client: &mut Peer,
    head: &RequestHead,
    peer: SocketAddr,
    limits: &crate::config::model::HttpLimits,
    (mut edits, to_upstream, to_client): Edits<'_>,
    cors: Option<(&CorsPlan, Option<&str>)>,
) -> Result<Done, Failed> {
    let pol = &sel.route.policies;
    let max_body = limits.max_body_bytes;
    let idle = limits.idle_timeout.get();
    let replay = match head.framing {
        // a SigV4 signature covers the body's hash: read it whole (within maxBodyBytes)
        framing if pol.aws.is_some() => Some(upstream::read_body(client, framing, max_body, idle).await?),
        Framing::Length(n) if pol.retry.is_some() && n <= upstream::MAX_REPLAY_BYTES => {
            Some(upstream::buffer_body(client, n, idle).await?)
        }
        Framing::None => Some(Bytes::new()),
        // a small body that came with its head: holding it makes the request replayable on a
        // fresh connection, and it goes out in the head's write
        Framing::Length(n) if client.buf.len() as u64 >= n => Some(client.buf.split_to(n as usize).freeze()),
        _ => None,
    };
    let body_out = match (head.framing, &replay) {
        (Framing::None, _) => BodyOut::None,
        (_, Some(body)) if pol.aws.is_some() => BodyOut::Length(body.len() as u64),
        (Framing::Length(n), _) => BodyOut::Length(n),
        _ => BodyOut::Chunked,
    };
    let target = policy::rewritten_target(pol.rewrite.as_ref(), head, sel.prefix);
    let mut host = policy::rewritten_host(pol.rewrite.as_ref(), head);
    if let Some(aws) = &pol.aws {
        let host = host.get_or_insert_with(|| aws.host.clone());
        sign_aws(aws, head.method(), host, &target, replay.as_deref().unwrap_or_default(), &mut edits);
    }
    // built in the client's scratch buffer, which carries the response head afterwards
    let mut up_head = client.take_out();
    upstream::write_request_head(
        &mut up_head,
        head,
        &target,
        host.as_deref(),
        pol.request_headers.as_ref(),
        &edits,
        &to_upstream,
        body_out,
        peer,
    );
    let req = Outgoing {
        head: &up_head,
        replay,
        framing: head.framing,
        max_body,
        idle,
        is_head: head.method() == "HEAD",
        route: sel.route,
    };
    let exchanged = match pol.request_timeout {
        Some(t) => match monoio::time::timeout(t, upstream::exchange(ctx, &req, client)).await {
            Ok(r) => r,
            Err(_) => return Err(ProxyError::RequestTimeout.into()),
        },
        None => upstream::exchange(ctx, &req, client).await,
    };
    client.put_out(up_head);
    let mut answer = match exchanged {
        Ok(a) => a,
        Err(e) => return Err(Failed { error: e.error, started: false, upstream: e.addr, attempts: e.attempts }),
    };

    // response
    let resp = &answer.head;
    let client_http10 = head.minor_version == 0;
    let dechunk = client_http10 && resp.framing == Framing::Chunked;
    let keep_alive =
        head.keep_alive && !ctx.draining.is_fired() && !matches!(resp.framing, Framing::CloseDelimited) && !dechunk;
    let chunked_out = resp.framing == Framing::Chunked && !dechunk;
    let mut out = client.take_out();
    let ops = pol.response_headers.as_ref();
    upstream::write_response_head(&mut out, resp, ops, &to_client, cors, chunked_out, keep_alive);
    let status = resp.status;
    let framing = resp.framing;
    let upstream_keep = resp.keep_alive;
    let started_err = |error| Failed { error, started: true, upstream: Some(answer.addr), attempts: answer.attempts };
    let (first, rest) = upstream::split_buffered_body(&mut answer.up.buf, framing);
    let first_len = first.len() as u64;
    if client.send_out_with(out, first).await.is_err() {
        return Err(started_err(ProxyError::ClientClosed));
    }
    let copied = upstream::copy_body(&mut answer.up, client, rest, None, None, dechunk).await;
    let bytes = match copied {
        Ok(n) => n + first_len,
        Err(CopyError::Sink(_)) => return Err(started_err(ProxyError::ClientClosed)),
        Err(CopyError::BadChunk(e)) => return Err(started_err(ProxyError::UpstreamProtocol(e.to_string()))),
        Err(_) => return Err(started_err(ProxyError::UpstreamClosed)),
    };
    if upstream_keep && framing != Framing::CloseDelimited && answer.up.buf.is_empty() {
        ctx.pool.put_peer(answer.key, answer.up);
    }
    Ok(Done {
        status,
        bytes,
        keep_alive,
        upstream: Some(answer.addr),
        attempts: answer.attempts,
        upstream_time: Some(answer.upstream_time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task lives as long as the connection (an MCP event stream for hours): the
    /// states of a forwarded exchange, a TLS handshake or an MCP request are boxed, not inlined.
    #[test]
    fn a_connection_task_keeps_no_request_state_inline() {
        fn task_size<A, B, C, D, F>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = task_size(serve);
        eprintln!("connection task: {size} B");
        assert!(size <= 3 * 1024, "{size} B");
    }
}
