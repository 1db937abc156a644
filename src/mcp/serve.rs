//! The client side of an MCP route: Streamable HTTP POST and DELETE for both protocol eras, sessions, fan-out and merge, answers as JSON or SSE.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::FutureExt;
use serde_json::{json, Value};

use super::access::Access;
use super::catalog;
use super::flight::Join;
use super::jsonrpc::{
    self, Answer, Message, RpcError, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, REQUEST_CANCELLED,
};
use super::merge::{self, Part, LEGACY_VERSIONS, MODERN_VERSION};
use super::names::{self, Kind};
use super::plan::{McpPlan, TargetKind};
use super::raw::RawObject;
use super::relay::{InFlight, Relay, Renewal, Via};
use super::resume::{self, Resumable};
use super::session::{now_secs, Refused, Sealed, SseSession, Upstream};
use super::{cursor, hub, legacy_sse, mrtr, sse, subscriptions};
use crate::config::compile::PolicyPlan;
use crate::config::model::HttpLimits;
use crate::error::{McpReject, ProxyError};
use crate::http::codec::{self, RequestHead};
use crate::http::io::Peer;
use crate::proxy::conn::{Done, Failed};
use crate::proxy::policy;
use crate::proxy::route::Selected;
use crate::proxy::shard::{ShardCtx, ShardMsg};
use crate::proxy::upstream;

/// How long a target may stay silent while the gateway waits on it.
pub(super) const TARGET_IDLE: Duration = Duration::from_secs(300);
const SERVER_NAME: &str = "ringgate";
/// How long a bridged `input_required` waits for the client's answer to one question (a person
/// may be filling in a form).
const ASK_WAIT: Duration = TARGET_IDLE;
/// `_meta` keys of the 2026-07-28 era, which legacy upstream sessions must not see.
const MODERN_META_PREFIX: &str = "io.modelcontextprotocol/";
/// Prefix of the ids the gateway gives server→client requests, to route the client's answer.
const RELAYED_ID: &str = "rg~";

/// Serve one request on an MCP route.
pub async fn serve(
    ctx: &Rc<ShardCtx>,
    sel: &Selected<'_>,
    plan: &Arc<McpPlan>,
    access: Access<'_>,
    client: &mut Peer,
    head: &RequestHead,
    limits: &HttpLimits,
) -> Result<Done, Failed> {
    let (max_body, idle) = (limits.max_body_bytes, limits.idle_timeout.get());
    let pol = &sel.route.policies;
    if legacy_sse::is_endpoint(head.path(), sel.prefix) {
        return match head.method() {
            "GET" => Box::pin(legacy_sse::open(ctx, plan, pol, access, client, head)).await,
            "POST" => Box::pin(legacy_sse::post(ctx, plan, pol, client, head, max_body, idle)).await,
            _ => Err(McpReject::MethodNotAllowed("GET, POST").into()),
        };
    }
    let modern_header = head.header_str("mcp-protocol-version") == Some(MODERN_VERSION);
    match head.method() {
        "POST" => {}
        "DELETE" if plan.stateful && !modern_header => return Box::pin(delete(ctx, plan, pol, client, head)).await,
        // boxed: a GET stream keeps this future for its whole life, and inlined here it would
        // also be sized by a POST exchange's states (and those by it)
        "GET" if plan.stateful && !modern_header => return Box::pin(listen(ctx, plan, pol, client, head)).await,
        _ if plan.stateful && !modern_header => return Err(McpReject::MethodNotAllowed("GET, POST, DELETE").into()),
        _ => return Err(McpReject::MethodNotAllowed("POST").into()),
    }
    // boxed, as every branch above: this future is what an open stream's connection keeps
    // (boxed in `conn`), so it must not be sized by the states of the others
    Box::pin(post(ctx, plan, pol, access, client, head, modern_header, limits)).await
}

/// A POSTed JSON-RPC message: its answer (JSON, or an SSE stream while the targets send more).
#[allow(clippy::too_many_arguments)]
async fn post(
    ctx: &Rc<ShardCtx>,
    plan: &Arc<McpPlan>,
    pol: &PolicyPlan,
    access: Access<'_>,
    client: &mut Peer,
    head: &RequestHead,
    modern_header: bool,
    limits: &HttpLimits,
) -> Result<Done, Failed> {
    let (max_body, idle) = (limits.max_body_bytes, limits.idle_timeout.get());
    let accept = head.header_str("accept").unwrap_or("");
    let any = accept.contains("*/*");
    if !(any || accept.contains("application/json") && accept.contains("text/event-stream")) {
        return Err(McpReject::NotAcceptable.into());
    }
    let msg = read_message(plan, client, head, max_body, idle).await?;
    // from here on the request's id is known, and its error answer carries it
    let refuse = |r: McpReject| refused(r, msg.id());
    let meta_version = jsonrpc::meta(msg.params(), "io.modelcontextprotocol/protocolVersion").and_then(Value::as_str);
    let mut modern = false;
    let mut session = None;
    let mut sid = None;
    let mut renewal = None;
    if meta_version.is_some() || modern_header {
        check_modern_headers(head, &msg, meta_version).map_err(refuse)?;
        modern = true;
        if let Message::Request { id, method, params, .. } = &msg {
            if method == "subscriptions/listen" {
                let (id, params) = (id.clone(), params.clone());
                return Box::pin(subscriptions::listen(ctx, plan, pol, access, client, head, id, params)).await;
            }
        }
    } else {
        if let Some(v) = head.header_str("mcp-protocol-version") {
            if !LEGACY_VERSIONS.contains(&v) {
                return Err(refuse(McpReject::UnsupportedVersion(v.to_string())));
            }
        }
        let is_init = msg.method() == Some("initialize");
        if plan.stateful && !is_init {
            let (id, s) = self::session(ctx, plan, head).await.map_err(refuse)?;
            ctx.mcp.touch_procs(&s);
            renewal = renewal_of(Some(id.into()), &s);
            sid = Some(id);
            session = Some(s);
        }
    }
    let caps = jsonrpc::meta(msg.params(), super::era::CLIENT_CAPABILITIES).filter(|_| modern).cloned();
    let keep = head.keep_alive && !ctx.draining.is_fired();
    let mut out = Out::http(pol, head, client, keep);
    if let (Some(id), Some(s)) = (sid, &session) {
        out.resumable(ctx, id, resume::Kind::Post, &s.v, plan.resume);
    }
    let mut ex = Exchange {
        relay: Relay { ctx, plan, idle: TARGET_IDLE, renew: renewal.as_ref() },
        out,
        access,
        modern,
        session,
        sid,
        tail: None,
        param_headers: param_headers(head),
        caps,
    };
    ex.handle(msg).await?;
    // a client that left a resumable answer has nothing more to read here
    Ok(Done::local(ex.out.status, ex.out.bytes, keep && !ex.out.gone))
}

/// Read and parse a POSTed JSON-RPC message (one, not a batch). With an HTTP target in `plan`,
/// calls keep their params raw for it ([`jsonrpc::parse_call`]); other targets need trees.
pub(super) async fn read_message(
    plan: &McpPlan,
    client: &mut Peer,
    head: &RequestHead,
    max_body: u64,
    idle: Duration,
) -> Result<Message, Failed> {
    if !head.header_str("content-type").is_some_and(|c| c.trim_start().starts_with("application/json")) {
        return Err(McpReject::UnsupportedMediaType.into());
    }
    let body = upstream::read_body(client, head.framing, max_body, idle).await?;
    let raw = plan.targets.iter().any(|t| matches!(t.kind, TargetKind::Http(_)));
    let msg = if raw { jsonrpc::parse_call(&body) } else { jsonrpc::parse(&body) };
    let msg = msg.map_err(|e| {
        if e.code == jsonrpc::PARSE_ERROR {
            McpReject::Parse(e.message)
        } else {
            McpReject::InvalidRequest(e.message)
        }
    })?;
    Ok(msg)
}

/// The request's session: its id must be present (400) and one of ours, live (404). Ids of
/// legacy HTTP+SSE sessions only work on their message endpoint.
async fn session<'h>(ctx: &ShardCtx, plan: &McpPlan, head: &'h RequestHead) -> Result<(&'h str, Sealed), McpReject> {
    let id = head.header_str("mcp-session-id").ok_or(McpReject::SessionRequired("the Mcp-Session-Id header"))?;
    match admit(ctx, plan, id).await {
        Some(s) if s.h.is_none() => Ok((id, s)),
        _ => Err(McpReject::SessionUnknown),
    }
}

/// How long a shard waits for the others to say whether they served a session lately.
const ASK_SHARDS: Duration = Duration::from_secs(1);

/// Check a session id. One issued longer than the TTL ago that this shard has not served
/// lately is live if another shard has: they are asked over their mailboxes (rare: once per
/// session and shard and TTL, and only for sessions older than the TTL).
pub(super) async fn admit(ctx: &ShardCtx, plan: &McpPlan, id: &str) -> Option<Sealed> {
    let s = match ctx.mcp.admit(plan, id) {
        Ok(s) => return Some(s),
        Err(Refused::Unknown) => return None,
        Err(Refused::Unseen(s)) => s,
    };
    let (reply, replies) = flume::bounded(ctx.siblings.len());
    let shared: Arc<str> = id.into();
    let ask = async {
        for (_, mb) in ctx.others() {
            let _ = mb.send_async(ShardMsg::SessionSeen { id: shared.clone(), reply: reply.clone() }).await;
        }
        drop(reply);
        let mut last = None;
        while let Ok(t) = replies.recv_async().await {
            last = last.max(t);
        }
        last
    };
    // a shard that does not answer in time (draining) has not served it
    let last = monoio::time::timeout(ASK_SHARDS, ask).await.ok().flatten();
    ctx.mcp.seen_elsewhere(id, last, plan.session_ttl).then_some(*s)
}

/// What renewing `s`'s upstream sessions needs; `None` for an id sealed before ids carried the
/// client's params.
fn renewal_of(id: Option<Arc<str>>, s: &Sealed) -> Option<Renewal> {
    Some(Renewal { id, params: s.c.clone()?, fresh: Default::default() })
}

/// Serve a message POSTed to a legacy HTTP+SSE session, on the shard its stream lives on: what a
/// Streamable HTTP client would get as the POST's answer goes on the stream instead. Returns the
/// session's new upstream sessions when the message was an `initialize` that made some.
pub(super) async fn on_stream(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    sid: &str,
    s: &SseSession,
    msg: Message,
) -> Option<Sealed> {
    let init = msg.method() == Some("initialize");
    let before = s.upstreams.borrow().clone();
    if let Some(b) = &before {
        ctx.mcp.touch_procs(b);
    }
    let renewal = before.as_ref().and_then(|b| renewal_of(None, b));
    let mut ex = Exchange {
        relay: Relay { ctx, plan, idle: TARGET_IDLE, renew: renewal.as_ref() },
        out: Out::stream(s.tx.clone()),
        access: s.caller.access(),
        modern: false,
        session: before.clone(),
        sid: Some(sid),
        tail: None,
        param_headers: Vec::new(),
        caps: None,
    };
    // the one way to fail once the POST was accepted is the stream being gone
    ex.handle(msg).await.ok()?;
    let after = ex.session.take();
    // upstream sessions renewed on the way are the session's from now on
    if let (Some(r), Some(u)) = (&renewal, s.upstreams.borrow_mut().as_mut()) {
        r.fresh.borrow().iter().for_each(|up| u.replace(up));
    }
    if !init || after.is_none() || after == before {
        return None;
    }
    // a client that initializes again gets new upstream sessions; the old ones are ended
    s.generation.set(s.generation.get() + 1);
    if let Some(old) = s.upstreams.replace(after.clone()) {
        delete_upstreams(ctx, plan, &old).await;
    }
    after
}

/// Relay what a legacy HTTP+SSE session's targets send unprompted onto its stream: what its own
/// upstreams send, and what the GET stream of a Streamable HTTP session hears of the shared ones
/// through the shard's hub ([`from_shared`]), until the stream ends, the session initializes
/// again (the pump of its new upstreams takes over), or nothing is left to hear.
pub(super) async fn pump(ctx: &Rc<ShardCtx>, plan: &McpPlan, sid: &str, s: &SseSession, sealed: &Sealed) {
    // called right after the `initialize` that made `sealed`: its generation
    let generation = s.generation.get();
    let mut merged = Box::pin(unprompted(ctx, plan, sealed)).await;
    let own = hub::own_upstreams(sealed);
    let (mut members, all) = join_hub(ctx, plan, &own).await;
    let mut shared = subscriptions::hub_streams(&members);
    let mut heard_from = members.len();
    let mut rejoin_at = (!all).then(|| Instant::now() + KEEPALIVE);
    while merged.is_some() || shared.is_some() || rejoin_at.is_some() {
        let rejoin_in = rejoin_at.map(|t| t.saturating_duration_since(Instant::now()));
        let (mut note, mut rejoin) = (None, false);
        monoio::select! {
            m = next_unprompted(&mut merged), if merged.is_some() => match m {
                Some((ti, msg)) => {
                    catalog::observe(ctx, &plan.targets[ti].name, &msg);
                    note = outbound(ti, &plan.targets[ti].name, plan.prefixed, msg);
                }
                None => merged = None,
            },
            m = subscriptions::next_shared(&mut shared), if shared.is_some() => match m {
                Some((ti, msg)) => note = from_shared(plan, &members, sid, ti, msg),
                // one went away (a stdio process exited): its next one is joined soon
                None => {
                    heard_from = heard_from.saturating_sub(1);
                    if heard_from == 0 {
                        shared = None;
                    }
                    rejoin_at.get_or_insert_with(|| Instant::now() + REJOIN_AFTER);
                }
            },
            _ = monoio::time::sleep(rejoin_in.unwrap_or_default()), if rejoin_in.is_some() => rejoin = true,
            _ = s.closed.fired() => break,
        }
        if s.generation.get() != generation {
            // initialized again: another pump hears for the new upstreams
            break;
        }
        if rejoin {
            let (m, all) = join_hub(ctx, plan, &own).await;
            members = m;
            shared = subscriptions::hub_streams(&members);
            heard_from = members.len();
            rejoin_at = (!all).then(|| Instant::now() + KEEPALIVE);
        }
        let Some(bytes) = note else { continue };
        let mut ev = Vec::with_capacity(bytes.len() + 32);
        sse::write_event(&mut ev, None, Some("message"), &bytes);
        if s.tx.send_async(ev).await.is_err() {
            break;
        }
    }
}

/// [`Exchange::resource_owner`] for what a 2026-07-28 request names outside of a request to
/// the owner (a listen stream's `resourceSubscriptions`), so that it finds the owner
/// `resources/read` and `resources/subscribe` would.
pub(super) async fn resource_owner(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    access: Access<'_>,
    uri: &str,
) -> Result<(usize, String), RpcError> {
    // a lookup answers nobody: its sink is never written to
    let (nowhere, _) = flume::bounded(1);
    let ex = Exchange {
        relay: Relay { ctx, plan, idle: TARGET_IDLE, renew: None },
        out: Out::stream(nowhere),
        access,
        modern: true,
        session: None,
        sid: None,
        tail: None,
        param_headers: Vec::new(),
        caps: None,
    };
    ex.resource_owner(uri).await
}

/// A message refused at the transport level after it was read: the error answer carries its id.
fn refused(r: McpReject, id: Option<&Value>) -> Failed {
    ProxyError::Mcp(r, id.cloned()).into()
}

/// The 2026-07-28 header rules: `MCP-Protocol-Version`, `Mcp-Method` and, for calls, `Mcp-Name`
/// must be present and agree with the body.
fn check_modern_headers(head: &RequestHead, msg: &Message, meta_version: Option<&str>) -> Result<(), McpReject> {
    let header_version = head.header_str("mcp-protocol-version");
    if let (Some(h), Some(m)) = (header_version, meta_version) {
        // disagreeing header and body are a mismatch whichever of them names an unknown version
        if h != m {
            return Err(McpReject::HeaderMismatch(format!(
                "MCP-Protocol-Version header {h} does not match _meta protocolVersion {m}"
            )));
        }
    }
    let version = meta_version.or(header_version).unwrap_or("");
    if version != MODERN_VERSION {
        return Err(McpReject::UnsupportedVersion(version.to_string()));
    }
    if header_version != Some(version) {
        return Err(McpReject::HeaderMismatch(format!(
            "MCP-Protocol-Version header {header_version:?} does not match _meta protocolVersion {version}"
        )));
    }
    let Some(method) = msg.method() else {
        return Err(McpReject::InvalidRequest("clients must not send responses in the 2026-07-28 era".into()));
    };
    let header_method = head.header_str("mcp-method").map(decode_header_value);
    if header_method.as_deref() != Some(method) {
        return Err(McpReject::HeaderMismatch(format!(
            "Mcp-Method header {header_method:?} does not match method {method}"
        )));
    }
    let params = msg.params();
    let name_field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = name_field {
        let body_name = params.and_then(|p| p.get(field)).and_then(Value::as_str);
        let header_name = head.header_str("mcp-name").map(decode_header_value);
        if header_name.is_none() || header_name.as_deref() != body_name {
            return Err(McpReject::HeaderMismatch(format!(
                "Mcp-Name header {header_name:?} does not match params.{field} {body_name:?}"
            )));
        }
    }
    // every request carries its version and the client's capabilities in _meta
    if let Message::Request { .. } = msg {
        for key in ["io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities"] {
            if jsonrpc::meta(params, key).is_none() {
                return Err(McpReject::InvalidParams(format!("params._meta lacks {key}")));
            }
        }
    }
    Ok(())
}

/// The request's `Mcp-Param-*` headers as header lines: intermediaries must forward them (2026-07-28;
/// a tool's `x-mcp-header` parameters), whether or not they know them, so they go to the target
/// as the client wrote them.
fn param_headers(head: &RequestHead) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in head.headers() {
        if name.len() > 10 && name[..10].eq_ignore_ascii_case("mcp-param-") {
            codec::write_header(&mut out, name, value);
        }
    }
    out
}

/// Header values that are not safe ASCII travel as `=?base64?<b64>?=`.
fn decode_header_value(v: &str) -> String {
    use base64::Engine;
    let inner = v.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?="));
    match inner.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => v.to_string(),
    }
}

/// Where the answers to one client message go.
enum Sink<'a> {
    /// The HTTP response to the request that carried it.
    Http {
        /// The client connection.
        client: &'a mut Peer,
        /// Whether the connection stays open after the response.
        keep: bool,
    },
    /// A legacy HTTP+SSE session's stream, as framed events; the POST was answered 202 already.
    Stream(flume::Sender<Vec<u8>>),
}

/// The response being written: one JSON body, or an SSE stream once a target sends more than
/// its answer; or events on a legacy HTTP+SSE stream.
pub(super) struct Out<'a> {
    pol: Option<&'a PolicyPlan>,
    origin: Option<&'a str>,
    /// A session id to announce (on the `initialize` answer).
    session: Option<String>,
    sink: Sink<'a>,
    sse: bool,
    status: u16,
    bytes: u64,
    /// Event ids and the replay buffer of a resumable stream (a legacy-era session's).
    resume: Option<Resume<'a>>,
    /// The client stopped reading, or a client that resumed took the stream over: events only go
    /// to the replay buffer (and on to that client).
    gone: bool,
}

/// What makes a stream resumable: its events are numbered and kept on this shard.
struct Resume<'a> {
    ctx: &'a ShardCtx,
    session: &'a str,
    kind: resume::Kind,
    /// The client negotiated 2025-11-25 or later, so it expects (and copes with) a priming event.
    priming: bool,
    limits: resume::Limits,
    /// Opened with the stream; `None` when the shard keeps too many streams already.
    tape: Option<Rc<Resumable>>,
    opened: bool,
}

impl Resume<'_> {
    /// Open the replay buffer when the stream starts, with a priming event (an id, no data) for
    /// clients that know it: older ones would choke on an empty message.
    fn open(&mut self, out: &mut Vec<u8>) {
        if self.opened {
            return;
        }
        self.opened = true;
        let ctx = self.ctx;
        self.tape = ctx.mcp.resume.open(&ctx.registry, ctx.index, self.kind, self.session, &self.limits);
        if let (Some(t), true) = (&self.tape, self.priming) {
            sse::write_event(out, Some(&t.priming_id().to_string()), None, b"");
        }
    }
}

impl<'a> Out<'a> {
    pub(super) fn http(pol: &'a PolicyPlan, head: &'a RequestHead, client: &'a mut Peer, keep: bool) -> Self {
        let sink = Sink::Http { client, keep };
        Out {
            pol: Some(pol),
            origin: head.header_str("origin"),
            session: None,
            sink,
            sse: false,
            status: 200,
            bytes: 0,
            resume: None,
            gone: false,
        }
    }

    fn stream(tx: flume::Sender<Vec<u8>>) -> Self {
        Out {
            pol: None,
            origin: None,
            session: None,
            sink: Sink::Stream(tx),
            sse: true,
            status: 200,
            bytes: 0,
            resume: None,
            gone: false,
        }
    }

    /// Make the event stream of session `session` (negotiated `version`) resumable.
    fn resumable(
        &mut self,
        ctx: &'a ShardCtx,
        session: &'a str,
        kind: resume::Kind,
        version: &str,
        limits: resume::Limits,
    ) {
        // versions are dates, so they compare as strings
        let priming = version >= "2025-11-25";
        self.resume = Some(Resume { ctx, session, kind, priming, limits, tape: None, opened: false });
    }

    /// The replay buffer of a resumable stream, once open.
    fn tape(&self) -> Option<&Rc<Resumable>> {
        self.resume.as_ref()?.tape.as_ref()
    }

    /// Start the event stream: a priming event where the client expects one, else a comment, so
    /// the client sees the stream open at once.
    async fn prime(&mut self) -> Result<(), Failed> {
        let mut ev = Vec::new();
        if let Some(r) = self.resume.as_mut() {
            r.open(&mut ev);
        }
        if ev.is_empty() {
            sse::write_comment(&mut ev, "stream open");
        }
        self.event_raw(ev).await
    }

    fn keep(&self) -> bool {
        matches!(self.sink, Sink::Http { keep: true, .. })
    }

    fn head(&self, out: &mut Vec<u8>, status: u16, content_type: &[u8]) {
        codec::write_status_line(out, status);
        codec::write_header(out, "content-type", content_type);
        if let Some(s) = &self.session {
            codec::write_header(out, "mcp-session-id", s.as_bytes());
        }
        if let Some(pol) = self.pol {
            if let Some(ops) = &pol.response_headers {
                for (n, v) in ops.extra() {
                    codec::write_header(out, n, v.as_bytes());
                }
            }
            if let Some(c) = &pol.cors {
                policy::write_cors_headers(c, self.origin, out);
            }
        }
        if !self.keep() {
            codec::write_header(out, "connection", b"close");
        }
    }

    /// A scratch buffer (the connection's, reused).
    fn buf(&mut self) -> Vec<u8> {
        match &mut self.sink {
            Sink::Http { client, .. } => client.take_out(),
            Sink::Stream(_) => Vec::new(),
        }
    }

    async fn write(&mut self, out: Vec<u8>) -> Result<(), Failed> {
        let sent = match &mut self.sink {
            Sink::Http { client, .. } => client.send_out(out).await.is_ok(),
            Sink::Stream(tx) => tx.send_async(out).await.is_ok(),
        };
        sent.then_some(()).ok_or_else(|| Failed::started(ProxyError::ClientClosed))
    }

    async fn json(&mut self, status: u16, body: &[u8]) -> Result<(), Failed> {
        if let Sink::Stream(_) = self.sink {
            return self.event(body).await;
        }
        let mut out = self.buf();
        self.head(&mut out, status, b"application/json");
        codec::write_header(&mut out, "content-length", body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        self.status = status;
        self.bytes += body.len() as u64;
        self.write(out).await
    }

    pub(super) async fn accepted(&mut self) -> Result<(), Failed> {
        if let Sink::Stream(_) = self.sink {
            return Ok(());
        }
        let mut out = self.buf();
        self.head(&mut out, 202, b"application/json");
        out.extend_from_slice(b"content-length: 0\r\n\r\n");
        self.status = 202;
        self.write(out).await
    }

    /// Write one message as an SSE event, starting the stream if needed (with its id and kept
    /// for replay when the stream is resumable).
    pub(super) async fn event(&mut self, data: &[u8]) -> Result<(), Failed> {
        let mut ev = Vec::with_capacity(data.len() + 32);
        if let Some(r) = self.resume.as_mut() {
            r.open(&mut ev);
        }
        match self.tape() {
            Some(t) => ev.extend_from_slice(&t.frame(data)),
            None => sse::write_event(&mut ev, None, Some("message"), data),
        }
        self.event_raw(ev).await
    }

    /// Write already framed SSE text as one chunk, starting the stream if needed. On a
    /// resumable stream a client that is gone is no failure: its events wait for it to resume.
    pub(super) async fn event_raw(&mut self, ev: Vec<u8>) -> Result<(), Failed> {
        self.bytes += ev.len() as u64;
        if let Sink::Stream(_) = self.sink {
            return self.write(ev).await;
        }
        if self.tape().is_some_and(|t| t.taken()) {
            self.gone = true;
        }
        if self.gone {
            return Ok(());
        }
        let mut out = self.buf();
        if !self.sse {
            self.sse = true;
            self.status = 200;
            if self.poll().is_some() {
                // a stream that may be handed back ends early; the connection must not carry
                // another request meanwhile (the handler goes on with it)
                if let Sink::Http { keep, .. } = &mut self.sink {
                    *keep = false;
                }
            }
            self.head(&mut out, 200, b"text/event-stream");
            out.extend_from_slice(
                b"cache-control: no-cache\r\nx-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n",
            );
        }
        out.extend_from_slice(format!("{:x}\r\n", ev.len()).as_bytes());
        out.extend_from_slice(&ev);
        out.extend_from_slice(b"\r\n");
        let sent = self.write(out).await;
        match self.tape() {
            Some(t) if sent.is_err() => {
                t.detach();
                self.gone = true;
                Ok(())
            }
            _ => sent,
        }
    }

    /// SSE polling (SEP-1699): how long an answer may keep its connection before it is handed
    /// back, and the `retry` the client is then told; only for clients that expect it (they
    /// know priming events) on a resumable stream.
    fn poll(&self) -> Option<(Duration, Duration)> {
        let r = self.resume.as_ref()?;
        if !r.priming || !matches!(self.sink, Sink::Http { .. }) {
            return None;
        }
        r.limits.poll
    }

    /// Hand a running answer back to its client: the stream is started (with its priming
    /// event) if need be, then gets a `retry` and ends without the answer, so the client comes
    /// back with `Last-Event-ID` after `retry` for the rest, which is kept meanwhile. A stream
    /// that cannot be resumed (the shard keeps too many) goes on as it was.
    async fn hand_back(&mut self, retry: Duration) -> Result<(), Failed> {
        if !self.sse {
            self.prime().await?;
        }
        let Some(t) = self.tape().cloned() else { return Ok(()) };
        let mut ev = Vec::new();
        sse::write_retry(&mut ev, retry.as_millis() as u64);
        self.event_raw(ev).await?;
        self.end_stream().await?;
        t.detach();
        self.gone = true;
        Ok(())
    }

    /// How long nobody has read this resumable stream (`None` while someone does, or when it is
    /// not resumable).
    fn unattended_for(&self) -> Option<Duration> {
        if !self.gone {
            return None;
        }
        self.tape()?.unattended_for()
    }

    /// End a chunked event stream of an HTTP response.
    pub(super) async fn end_stream(&mut self) -> Result<(), Failed> {
        if self.gone {
            return Ok(());
        }
        match &mut self.sink {
            Sink::Http { client, .. } if self.sse => client
                .send(bytes::Bytes::from_static(b"0\r\n\r\n"))
                .await
                .map_err(|_| Failed::started(ProxyError::ClientClosed)),
            _ => Ok(()),
        }
    }

    /// Bytes of body written so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Completes when the client closes its connection (what it sends meanwhile is dropped);
    /// never for a stream sink.
    pub(super) async fn client_gone(&mut self) {
        let Sink::Http { client, .. } = &mut self.sink else { return std::future::pending().await };
        while let Ok(n) = client.fill().await {
            if n == 0 {
                return;
            }
            client.buf.clear();
        }
    }

    /// Whether `client_left` can watch the connection: a request's answer on a connection with
    /// nothing unread (a read cancelled midway must not lose what the client sent).
    fn can_watch(&self) -> bool {
        matches!(&self.sink, Sink::Http { client, .. } if client.buf.is_empty())
    }

    /// Completes when the client closes its connection; once it sends anything (which stays
    /// unread) it is there, and this never completes.
    async fn client_left(&mut self) {
        if let Sink::Http { client, .. } = &mut self.sink {
            // what a client sent stays unread, never in a read that may be cancelled
            if client.buf.is_empty() && matches!(client.fill().await, Ok(0) | Err(_)) {
                return;
            }
        }
        std::future::pending().await
    }

    /// Send a final message: as JSON, or as the last event of the stream.
    async fn finish(&mut self, data: &[u8]) -> Result<(), Failed> {
        if !self.sse {
            return self.json(200, data).await;
        }
        self.event(data).await?;
        if let Some(t) = self.tape() {
            // a client that resumed has it all now
            t.finish();
        }
        self.end_stream().await
    }
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        let Some(r) = &self.resume else { return };
        if let Some(t) = &r.tape {
            t.finish();
            // a GET stream goes on only as long as its loop runs; a POST answer stays for replay
            if t.kind() == resume::Kind::Get {
                r.ctx.mcp.resume.remove(t.stream());
            }
        }
    }
}

/// One client message being served.
struct Exchange<'a> {
    relay: Relay<'a>,
    out: Out<'a>,
    /// What the caller may see and use.
    access: Access<'a>,
    /// The request is in the 2026-07-28 era.
    modern: bool,
    /// The client's session (stateful legacy era).
    session: Option<Sealed>,
    /// Its id, which with a request's id names the request for cancellation.
    sid: Option<&'a str>,
    /// A target answer whose stream still has to be read to its end after the client has its response.
    tail: Option<InFlight>,
    /// The client's `Mcp-Param-*` header lines, for the target the request goes to.
    param_headers: Vec<u8>,
    /// The capabilities a 2026-07-28 client declared on the request, which a target of that era
    /// is told when the gateway forwards it (its params are not kept raw otherwise).
    caps: Option<Value>,
}

/// A request's result on its way to the client: a tree, or the bytes its target sent.
enum Served {
    Tree(Value),
    Raw(RawObject),
    /// The whole result object's text, final (a list merged from cached pages).
    Text(Vec<u8>),
}

/// A request's params on their way to its one owning target.
enum Outgoing {
    /// Whole (or none).
    Tree(Option<Value>),
    /// As the client sent them ([`Message::Request`]'s `raw`), with member `field` to be set to
    /// `value`; `token` is their `_meta.progressToken`.
    Raw { raw: RawObject, field: &'static str, value: String, token: Option<Value> },
}

impl Outgoing {
    /// `params` with `field` set to `value`; kept raw when the client's params were.
    fn renamed(params: Option<Value>, raw: Option<RawObject>, field: &'static str, value: String) -> Self {
        match raw {
            Some(raw) => {
                // the members the gateway reads (`_meta` among them) came as a tree next to raw
                let token = jsonrpc::meta(params.as_ref(), "progressToken").cloned();
                Outgoing::Raw { raw, field, value, token }
            }
            None => Outgoing::Tree(with_field(params, field, value)),
        }
    }

    /// The whole params as a tree, for targets that need one (demo, stdio, legacy SSE).
    fn tree(self, modern: bool) -> Option<Value> {
        match self {
            Outgoing::Tree(p) => p,
            Outgoing::Raw { raw, field, value, .. } => {
                let p = Some(raw.to_value());
                with_field(if modern { strip_modern_meta(p) } else { p }, field, value)
            }
        }
    }
}

/// A target's answer to a fanned-out request.
type Answers = Vec<(usize, Result<Value, RpcError>)>;

impl Exchange<'_> {
    fn plan(&self) -> &McpPlan {
        self.relay.plan
    }

    /// How requests to target `ti` travel; `None` when this session has no upstream session
    /// with it (it was added by a reload, or failed to initialize under failOpen). A target
    /// that answered the session's `initialize` without a session id is stateless: it is still
    /// part of the session, and is reached without an id.
    fn via(&self, ti: usize) -> Option<Via<'_>> {
        let t = &self.plan().targets[ti];
        match t.kind {
            TargetKind::Http(_) => {}
            // a session's own process or session, if it has one (else: the shared one)
            TargetKind::Stdio(_) | TargetKind::Sse(_) => {
                return Some(
                    self.session
                        .as_ref()
                        .and_then(|s| s.target(&t.name))
                        .filter(|u| u.s.is_some())
                        .map_or(Via::Pooled, Via::Own),
                )
            }
            _ => return Some(Via::Pooled),
        }
        match &self.session {
            Some(s) => s.target(&t.name).map(Via::Own),
            None if self.plan().stateful && !self.modern => None,
            None => Some(Via::Pooled),
        }
    }

    async fn handle(&mut self, msg: Message) -> Result<(), Failed> {
        match msg {
            Message::Request { id, method, params, raw } => {
                let body = match self.request(&id, &method, params, raw).await? {
                    Ok(Served::Tree(r)) => jsonrpc::response(&id, &self.finish_result(&method, r)),
                    Ok(Served::Raw(r)) => self.finish_raw(&id, &method, r),
                    Ok(Served::Text(t)) => jsonrpc::response_raw(&id, &t),
                    Err(e) => jsonrpc::error_response(Some(&id), &e),
                };
                self.out.finish(&body).await?;
                if let Some(t) = self.tail.take() {
                    t.close(&self.relay).await;
                }
                Ok(())
            }
            Message::Notification { method, params } => {
                self.notification(&method, params.as_ref()).await;
                self.out.accepted().await
            }
            reply @ (Message::Response { .. } | Message::Error { .. }) if !self.modern => {
                self.client_answer(reply).await?;
                self.out.accepted().await
            }
            _ => Err(McpReject::InvalidRequest("clients must not send responses in the 2026-07-28 era".into()).into()),
        }
    }

    /// Serve a request; the result is the client's answer (the caller restores its id).
    async fn request(
        &mut self,
        id: &Value,
        method: &str,
        params: Option<Value>,
        raw: Option<RawObject>,
    ) -> Result<Result<Served, RpcError>, Failed> {
        let params = if self.modern { strip_modern_meta(params) } else { params };
        let removed_in_modern = matches!(
            method,
            "initialize" | "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe"
        );
        if self.modern && removed_in_modern {
            return Err(refused(McpReject::MethodNotFound(method.to_string()), Some(id)));
        }
        let names = self.plan().names();
        let tree = match method {
            "initialize" => self.initialize(params.unwrap_or_else(|| json!({}))).await,
            "server/discover" if self.modern => self.discover().await,
            "ping" => Ok(json!({})),
            "logging/setLevel" => {
                let all = (0..names.len()).map(|ti| (ti, params.clone()));
                // a target without the logging capability has no level to set: its "method not
                // found" is no failure (clients such as the inspector set a level on connect)
                let answers = self.fanout(all, method).await.into_iter().map(|(ti, r)| match r {
                    Err(e) if e.code == METHOD_NOT_FOUND => (ti, Ok(json!({}))),
                    r => (ti, r),
                });
                self.settle(answers.collect()).map(|_| json!({}))
            }
            "tools/call" | "prompts/get" => {
                let kind = if method == "tools/call" { Kind::Tool } else { Kind::Prompt };
                match self.locate(kind, param_str(&params, "name")).await {
                    Ok((ti, name)) if !self.access.allows(self.plan(), ti, kind, &name) => {
                        Err(self.hidden(kind, &params))
                    }
                    Ok((ti, name))
                        if kind == Kind::Tool && super::toolguard::global().refuses(self.plan(), ti, &name) =>
                    {
                        Err(self.blocked(&params))
                    }
                    Ok((ti, name)) => {
                        let out = Outgoing::renamed(params, raw, "name", name);
                        return self.forward(ti, id, method, out).await;
                    }
                    Err(e) => Err(e),
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                match self.resource_owner(param_str(&params, "uri")).await {
                    Ok((ti, uri)) if method != "resources/read" && self.holds_at_shared(ti) => {
                        self.shared_subscription(ti, method, &uri).await
                    }
                    // a 2026-07-28 target has no such method: the session's GET stream listens there
                    Ok((ti, uri)) if method != "resources/read" && self.listens_for(ti, &uri, method).await => {
                        Ok(json!({}))
                    }
                    Ok((ti, uri)) => {
                        return self.forward(ti, id, method, Outgoing::renamed(params, raw, "uri", uri)).await
                    }
                    Err(e) => Err(e),
                }
            }
            "completion/complete" => match self.completion_owner(params.as_ref()).await {
                Ok((ti, params)) => return self.forward(ti, id, method, Outgoing::Tree(Some(params))).await,
                Err(e) => Err(e),
            },
            m => match Kind::from_list_method(m) {
                Some(kind) => return Ok(self.list(kind, params).await),
                None if self.modern => return Err(refused(McpReject::MethodNotFound(m.to_string()), Some(id))),
                None => Err(RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {m}"))),
            },
        };
        Ok(tree.map(Served::Tree))
    }

    /// [`super::session_listen::remember`] for this session's `resources/(un)subscribe`.
    async fn listens_for(&self, ti: usize, uri: &str, method: &str) -> bool {
        let (ctx, plan, on) = (self.relay.ctx, self.plan(), method == "resources/subscribe");
        super::session_listen::remember(ctx, plan, self.session.as_ref(), self.sid, ti, uri, on).await
    }

    /// The target owning resource `uri` as the client names it (by its prefix, or under
    /// `prefixMode: never` the one that lists it or whose template matches it), and the URI it
    /// knows it by. A resource the caller may not see is as unknown as one that does not exist.
    async fn resource_owner(&self, uri: &str) -> Result<(usize, String), RpcError> {
        let (ti, local) = self.locate(Kind::Resource, uri).await?;
        if !self.access.allows(self.plan(), ti, Kind::Resource, &local) {
            return Err(self.hidden(Kind::Resource, &Some(json!({ "uri": uri }))));
        }
        Ok((ti, local))
    }

    /// Whether this legacy session's `resources/subscribe` at target `ti` is a hold of its own at
    /// a shared upstream (a stdio target's shared process, the shard's HTTP+SSE session with the
    /// target: the session has none of its own there) under its id.
    fn holds_at_shared(&self, ti: usize) -> bool {
        let shared_kind = matches!(self.plan().targets[ti].kind, TargetKind::Stdio(_) | TargetKind::Sse(_));
        shared_kind && !self.modern && self.sid.is_some() && matches!(self.via(ti), Some(Via::Pooled))
    }

    /// `resources/subscribe` or `resources/unsubscribe` at a shared upstream: a hold of the
    /// session's there, counted with the hubs' ([`super::holds`]), so that one client
    /// unsubscribing does not end what others still listen to. The session's GET or `/sse`
    /// stream finds the hold and carries the upstream's updates of the URI (from a shared
    /// process, or every shard's HTTP+SSE session, on any shard; see
    /// [`hub::Membership::held_by`]).
    async fn shared_subscription(&self, ti: usize, method: &str, uri: &str) -> Result<Value, RpcError> {
        let (ctx, sid) = (self.relay.ctx, self.sid.unwrap_or_default());
        let t = &self.plan().targets[ti];
        let subscribe = method == "resources/subscribe";
        let who = super::holds::Holder::Session(sid);
        match &t.kind {
            TargetKind::Stdio(s) if subscribe => s.subscribe_for(sid, uri, TARGET_IDLE).await,
            TargetKind::Stdio(s) => {
                s.unsubscribe_for(sid, uri);
                Ok(json!({}))
            }
            TargetKind::Sse(h) if subscribe => {
                let c = super::sse_client::shared(ctx, &t.name, h, TARGET_IDLE).await?;
                let held = c.hold(ctx, uri, who, TARGET_IDLE).await?;
                hub::hold_everywhere(ctx, sid, &t.name, h, uri, true).await;
                Ok(held)
            }
            TargetKind::Sse(h) => {
                // nothing is held on a session the shard does not have (any more)
                if let Some(c) = ctx.mcp.sse_conn(&h.session_key()) {
                    c.release(ctx, uri, who, TARGET_IDLE).await;
                }
                hub::hold_everywhere(ctx, sid, &t.name, h, uri, false).await;
                Ok(json!({}))
            }
            _ => Err(RpcError::new(INTERNAL_ERROR, "not a shared upstream")),
        }
    }

    /// The target owning a (possibly prefixed) tool/prompt name or resource URI, and the name
    /// it knows it by.
    async fn locate(&self, kind: Kind, key: &str) -> Result<(usize, String), RpcError> {
        if self.plan().resolve {
            return self.resolve(kind, key).await;
        }
        let by_uri = matches!(kind, Kind::Resource | Kind::ResourceTemplate);
        if !self.plan().prefixed {
            return Ok((0, key.to_string()));
        }
        let names = self.plan().names();
        let split = if by_uri { names::split_uri(key, &names) } else { names::split_name(key, &names) };
        let what = if by_uri { "resource" } else { "name" };
        split
            .map(|(ti, k)| (ti, k.to_string()))
            .ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("Unknown {what}: {key} (no target has that prefix)")))
    }

    /// `prefixMode: never`: the one target whose complete list (as this caller sees it) has
    /// `key`; a resource URI no list names may match one target's templates instead. A name of
    /// several targets is refused, as it is left out of lists.
    async fn resolve(&self, kind: Kind, key: &str) -> Result<(usize, String), RpcError> {
        let mut found = merge::owners(kind, key, &self.list_everywhere(kind).await?);
        if found.is_empty() && kind == Kind::Resource {
            found = merge::owners(Kind::ResourceTemplate, key, &self.list_everywhere(Kind::ResourceTemplate).await?);
        }
        let what = match kind {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
            Kind::ResourceTemplate => "resource template",
        };
        match found[..] {
            [ti] => Ok((ti, key.to_string())),
            [] => Err(RpcError::new(INVALID_PARAMS, format!("Unknown {what}: {key}"))),
            _ => Err(RpcError::new(
                INVALID_PARAMS,
                format!("Ambiguous {what}: {key} is served by more than one target (prefixMode: never)"),
            )),
        }
    }

    /// Every reachable target's complete list of `kind` (all its pages, up to a bound), filtered
    /// as this caller sees it; targets failing to list count as the failure mode says.
    async fn list_everywhere(&self, kind: Kind) -> Result<Vec<(usize, Value)>, RpcError> {
        /// Pages read per target before the rest of a list is ignored (agentgateway's bound).
        const MAX_PAGES: usize = 64;
        let method = kind.list_method();
        let lists = (0..self.plan().targets.len()).filter_map(|ti| {
            let via = self.via(ti)?;
            Some(async move {
                let mut items = Vec::new();
                let mut cursor = None;
                for _ in 0..MAX_PAGES {
                    let params = cursor.take().map(|c: String| json!({"cursor": c}));
                    let mut page = match self.relay.call(ti, via, method, params.as_ref()).await {
                        Ok(p) => p,
                        Err(e) => return (ti, Err(e)),
                    };
                    if let Some(Value::Array(a)) = page.get_mut(kind.items_field()).map(Value::take) {
                        items.extend(a);
                    }
                    match page.get("nextCursor").and_then(Value::as_str) {
                        Some(c) => cursor = Some(c.to_string()),
                        None => break,
                    }
                }
                (ti, Ok(json!({ kind.items_field(): items })))
            })
        });
        let mut pages = self.settle(join_all(lists).await)?;
        for (ti, page) in &mut pages {
            self.access.filter_page(self.plan(), *ti, kind, page);
        }
        Ok(pages)
    }

    async fn completion_owner(&self, params: Option<&Value>) -> Result<(usize, Value), RpcError> {
        let mut params = params.cloned().unwrap_or_else(|| json!({}));
        let r = params.get_mut("ref").and_then(Value::as_object_mut);
        let Some(r) = r else { return Err(RpcError::new(INVALID_PARAMS, "completion/complete needs params.ref")) };
        let (field, kind) = if r.get("type").and_then(Value::as_str) == Some("ref/resource") {
            ("uri", Kind::ResourceTemplate)
        } else {
            ("name", Kind::Prompt)
        };
        let key = r.get(field).and_then(Value::as_str).unwrap_or("").to_string();
        let (ti, local) = self.locate(kind, &key).await?;
        if let Some(r) = params.get_mut("ref").and_then(Value::as_object_mut) {
            r.insert(field.into(), Value::String(local));
        }
        Ok((ti, params))
    }

    /// Fanned-out results as merge input, each with its target's name.
    fn view<'p>(&'p self, parts: &'p [(usize, Value)]) -> Vec<Part<'p>> {
        parts.iter().map(|(ti, r)| Part { target: &self.plan().targets[*ti].name, result: r }).collect()
    }

    /// The error for an item the caller may not see: the same as for one that does not exist.
    fn hidden(&self, kind: Kind, params: &Option<Value>) -> RpcError {
        let shard = &self.relay.ctx.registry.shards[self.relay.ctx.index];
        shard.count_error("mcp_denied");
        let (what, field) = match kind {
            Kind::Tool => ("tool", "name"),
            Kind::Prompt => ("prompt", "name"),
            _ => ("resource", "uri"),
        };
        RpcError::new(INVALID_PARAMS, format!("Unknown {what}: {}", param_str(params, field)))
    }

    /// The error for a tool the tool guard hides: the same as for one that does not exist, but
    /// counted apart.
    fn blocked(&self, params: &Option<Value>) -> RpcError {
        self.relay.ctx.registry.shards[self.relay.ctx.index].count_error("mcp_tool_blocked");
        RpcError::new(INVALID_PARAMS, format!("Unknown tool: {}", param_str(params, "name")))
    }

    /// Send `method` to each given target concurrently (targets this session cannot reach are skipped).
    async fn fanout(&self, targets: impl Iterator<Item = (usize, Option<Value>)>, method: &str) -> Answers {
        let calls = targets.filter_map(|(ti, params)| {
            let via = self.via(ti)?;
            Some(async move { (ti, self.relay.call(ti, via, method, params.as_ref()).await) })
        });
        join_all(calls).await
    }

    /// Apply the failure mode to fanned-out answers.
    fn settle(&self, answers: Answers) -> Result<Vec<(usize, Value)>, RpcError> {
        self.settle_with(answers, 0)
    }

    /// [`Exchange::settle`] when `have` targets answered already (from the catalog cache).
    fn settle_with(&self, answers: Answers, have: usize) -> Result<Vec<(usize, Value)>, RpcError> {
        let mut ok = Vec::with_capacity(answers.len());
        let mut first_err = None;
        for (ti, a) in answers {
            match a {
                Ok(v) => ok.push((ti, v)),
                Err(e) => {
                    let name = &self.plan().targets[ti].name;
                    eprintln!("mcp target {name}: {}", e.message);
                    if first_err.is_none() {
                        first_err = Some(RpcError::new(e.code, format!("target `{name}`: {}", e.message)));
                    }
                }
            }
        }
        match first_err {
            Some(e) if !self.plan().fail_open || ok.is_empty() && have == 0 => Err(e),
            _ => Ok(ok),
        }
    }

    /// Target `ti`'s page of `kind` at `cursor`, which this shard's cache missed: fetched and
    /// kept if it may be. Through a pooled upstream the answer is the same for every caller, so
    /// concurrent misses of the page share one fetch (and its error); one from after a
    /// `list_changed` does not get a fetch from before it. A client's own upstream session
    /// answers for that client alone: its misses fetch on their own.
    async fn fetch_page(
        &self,
        ti: usize,
        via: Via<'_>,
        kind: Kind,
        cursor: Option<&str>,
        params: Option<&Value>,
    ) -> Result<Value, RpcError> {
        let plan = self.plan();
        let ctx = self.relay.ctx;
        let t = &plan.targets[ti];
        let pooled = matches!(via, Via::Pooled);
        let key = catalog::Key { scope: &plan.scope, target: &t.name, kind, cursor, fp: t.catalog_fp };
        let method = kind.list_method();
        loop {
            let epoch = catalog::epoch(&t.name, kind);
            let lead = if pooled {
                match ctx.mcp.catalog.flights.join(&key.flight(), epoch) {
                    Join::Lead(l) => Some(l),
                    Join::Wait(w) => {
                        ctx.registry.shards[ctx.index].mcp_catalog_coalesced[catalog::kind_index(kind)]
                            .fetch_add(1, Relaxed);
                        match w.await {
                            Some(answer) => return answer,
                            // its client left before the answer: fetch anew (or wait for whoever does)
                            None => continue,
                        }
                    }
                }
            } else {
                None
            };
            let answer = self.relay.call(ti, via, method, params).await;
            if let Ok(page) = &answer {
                let admitted = catalog::admit(page, t.catalog_max_age, pooled);
                if let Some(((ttl, public), built)) = admitted.zip(catalog::Page::build(kind, page)) {
                    let now = std::time::Instant::now();
                    ctx.mcp.catalog.put(&key, epoch, ttl, public, built, plan.catalog_max_bytes, now);
                }
            }
            // stored first: a miss right after the waiters wake finds the page
            if let Some(l) = lead {
                l.land(&answer);
            }
            return answer;
        }
    }

    /// A list request: each target's page from this shard's catalog cache where it has a good
    /// one, from the target otherwise (fanned out concurrently), merged in target order.
    async fn list(&self, kind: Kind, params: Option<Value>) -> Result<Served, RpcError> {
        let plan = self.plan();
        let names = plan.names();
        let method = kind.list_method();
        let cursor = params.as_ref().and_then(|p| p.get("cursor")).and_then(Value::as_str);
        let targets: Vec<(usize, Option<String>)> = match cursor {
            None => (0..names.len()).map(|ti| (ti, None)).collect(),
            Some(c) => cursor::decode(method, c, &names)?
                .pending
                .into_iter()
                .filter_map(|(n, c)| Some((names.iter().position(|x| *x == n)?, Some(c))))
                .collect(),
        };
        let ctx = self.relay.ctx;
        let stats = &ctx.registry.shards[ctx.index].mcp_catalog_lookups[catalog::kind_index(kind)];
        // `prefixMode: never` drops clashing names across every target's whole tree
        let cache_on = !plan.resolve && plan.catalog_max_bytes > 0;
        let now = std::time::Instant::now();
        let mut hits = Vec::new();
        // per target asked: its params and, if its page may be kept, how to keep it
        let mut calls = Vec::with_capacity(targets.len());
        for (ti, c) in targets {
            let t = &plan.targets[ti];
            let Some(via) = self.via(ti) else { continue };
            let pooled = matches!(via, Via::Pooled);
            if !cache_on || t.catalog_max_age.is_zero() {
                stats[catalog::BYPASS].fetch_add(1, Relaxed);
                calls.push((ti, via, with_cursor(params.clone(), c.clone()), None));
                continue;
            }
            let key =
                catalog::Key { scope: &plan.scope, target: &t.name, kind, cursor: c.as_deref(), fp: t.catalog_fp };
            match ctx.mcp.catalog.get(&key, !pooled, now) {
                Some(page) => {
                    stats[catalog::HIT].fetch_add(1, Relaxed);
                    hits.push((ti, page));
                }
                None => {
                    stats[catalog::MISS].fetch_add(1, Relaxed);
                    calls.push((ti, via, with_cursor(params.clone(), c.clone()), Some(c)));
                }
            }
        }
        let fetches = calls.into_iter().map(|(ti, via, p, fill)| async move {
            let answer = match fill {
                None => self.relay.call(ti, via, method, p.as_ref()).await,
                Some(c) => self.fetch_page(ti, via, kind, c.as_deref(), p.as_ref()).await,
            };
            (ti, answer)
        });
        let answers = join_all(fetches).await;
        if cache_on {
            catalog::publish(ctx);
        }
        let mut parts = self.settle_with(answers, hits.len())?;
        if kind == Kind::Tool {
            super::toolguard::global().review(plan, &mut parts, &ctx.registry);
        }
        for (ti, page) in &mut parts {
            self.access.filter_page(plan, *ti, kind, page);
        }
        if plan.resolve {
            merge::drop_clashes(kind, &mut parts);
        }
        if hits.is_empty() {
            let merged = merge::merge_list(
                kind,
                parts.into_iter().map(|(ti, page)| (&*plan.targets[ti].name, page)),
                plan.prefixed,
            );
            return Ok(Served::Tree(merged));
        }
        let size: usize = hits.iter().map(|(_, p)| p.size()).sum();
        let mut w = catalog::ListWriter::new(kind, size);
        let (mut hits, mut parts) = (hits.into_iter().peekable(), parts.into_iter().peekable());
        // both are in target order; so is the merge
        loop {
            let hit_first = match (hits.peek(), parts.peek()) {
                (Some((h, _)), Some((p, _))) => h < p,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if hit_first {
                let Some((ti, page)) = hits.next() else { break };
                let t = &plan.targets[ti];
                let filtered = self.access.rules.is_some() || kind == Kind::Tool && t.tools.is_some();
                let guarded = kind == Kind::Tool && t.guard.is_some();
                w.cached(&t.name, plan.prefixed, &page, |key| {
                    let allowed = !filtered || key.is_some_and(|k| self.access.allows(plan, ti, kind, k));
                    allowed && !(guarded && key.is_some_and(|k| super::toolguard::global().refuses(plan, ti, k)))
                });
            } else if let Some((ti, page)) = parts.next() {
                w.fresh(&plan.targets[ti].name, plan.prefixed, &page);
            }
        }
        Ok(Served::Text(w.finish(if self.modern { MODERN_LIST_MEMBERS.as_bytes() } else { b"" })))
    }

    /// Forward a request to its one owning target, relaying what it sends before its answer. A
    /// legacy client cannot read a 2026-07-28 target's `input_required`: the gateway asks it
    /// the target's questions itself and retries with its answers ([`Exchange::bridge`]).
    async fn forward(
        &mut self,
        ti: usize,
        id: &Value,
        method: &str,
        params: Outgoing,
    ) -> Result<Result<Served, RpcError>, Failed> {
        let declared = match self.bridges(ti) {
            Some(declared) => declared,
            None => return self.forward_once(ti, id, method, params).await,
        };
        // the target asks only what it is told the client can answer
        let params = mrtr::with_capabilities(params.tree(false), &declared);
        let first = self.forward_once(ti, id, method, Outgoing::Tree(Some(params.clone()))).await?;
        self.bridge(ti, id, method, params, &declared, first).await
    }

    /// What the client declared it can answer (its `initialize` capabilities), when a request
    /// to target `ti` may come back `input_required` for a legacy client to be asked: the
    /// client's session speaks to the target in 2026-07-28.
    fn bridges(&self, ti: usize) -> Option<Value> {
        if self.modern || !self.is_http(ti) {
            return None;
        }
        let s = self.session.as_ref()?;
        s.target(&self.plan().targets[ti].name).filter(|u| u.v == MODERN_VERSION)?;
        Some(s.c.as_ref().and_then(|c| c.get("capabilities")).cloned().unwrap_or_else(|| json!({})))
    }

    /// Answer `input_required` rounds for a legacy client: each input request goes to it on
    /// this request's stream as a server→client request with an id of the gateway's, and with
    /// its answers the original request goes to the target again (a new id, `inputResponses`,
    /// the echoed `requestState`), until the target completes or [`mrtr::MAX_ROUNDS`] pass.
    async fn bridge(
        &mut self,
        ti: usize,
        id: &Value,
        method: &str,
        mut params: Value,
        declared: &Value,
        mut answer: Result<Served, RpcError>,
    ) -> Result<Result<Served, RpcError>, Failed> {
        let target = self.plan().targets[ti].name.clone();
        let Some(sid) = self.sid.map(str::to_string) else { return Ok(answer) };
        for round in 1..=mrtr::MAX_ROUNDS + 1 {
            let result = match &answer {
                Ok(Served::Tree(r)) if mrtr::is_input_required(r) => r,
                _ => return Ok(answer),
            };
            if round > mrtr::MAX_ROUNDS {
                let why = format!("target `{target}` still asked for input after {} rounds", mrtr::MAX_ROUNDS);
                return Ok(Err(RpcError::new(INTERNAL_ERROR, why)));
            }
            let asked = match mrtr::parse(result, &target) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if let Some(e) = mrtr::missing_capability(&asked, Some(declared), &target) {
                return Ok(Err(e));
            }
            // the previous round's answer is read; its connection goes back to the pool
            if let Some(t) = self.tail.take() {
                t.close(&self.relay).await;
            }
            // every question goes out before any answer is awaited: a client may answer in any order
            let mut pending = Vec::with_capacity(asked.asks.len());
            for ask in &asked.asks {
                let p = mrtr::Pending::new(&sid, id);
                self.out.event(&jsonrpc::request(&p.id(), &ask.method, ask.params.as_ref())).await?;
                pending.push(p);
            }
            let mut responses = serde_json::Map::new();
            for (i, (ask, p)) in asked.asks.iter().zip(&pending).enumerate() {
                let msg = match monoio::time::timeout(ASK_WAIT, p.rx.recv_async()).await {
                    Ok(Ok(msg)) => msg,
                    _ => {
                        let why = format!("the client did not answer `{}` for target `{target}` in time", ask.method);
                        return Ok(Err(RpcError::new(INTERNAL_ERROR, why)));
                    }
                };
                if mrtr::is_cancellation(&msg) {
                    // the client gave up on the call: its questions still open are withdrawn,
                    // and the target has nothing to be told (between rounds a 2026-07-28
                    // request is nowhere in flight: the last round's answer was read to its end)
                    for q in &pending[i..] {
                        if q.rx.try_recv().map_or(true, |m| mrtr::is_cancellation(&m)) {
                            self.out.event(&mrtr::withdraw(&q.id())).await?;
                        }
                    }
                    return Ok(Err(RpcError::new(REQUEST_CANCELLED, "request cancelled by the client")));
                }
                match mrtr::answer(msg, ask, &target) {
                    Ok(v) => responses.insert(ask.key.clone(), v),
                    Err(e) => return Ok(Err(e)),
                };
            }
            params = mrtr::retry_params(Some(&params), responses, asked.state);
            let retry = mrtr::retry_id(id, round);
            answer = self.forward_once(ti, &retry, method, Outgoing::Tree(Some(params.clone()))).await?;
        }
        Ok(answer)
    }

    /// [`Exchange::forward`] of one request as it is.
    async fn forward_once(
        &mut self,
        ti: usize,
        id: &Value,
        method: &str,
        params: Outgoing,
    ) -> Result<Result<Served, RpcError>, Failed> {
        let Some(via) = self.via(ti) else {
            let name = &self.plan().targets[ti].name;
            return Ok(Err(RpcError::new(
                INTERNAL_ERROR,
                format!("target `{name}` is not part of this session; initialize a new session"),
            )));
        };
        let token = match &params {
            Outgoing::Tree(p) => jsonrpc::meta(p.as_ref(), "progressToken").cloned(),
            Outgoing::Raw { token, .. } => token.clone(),
        };
        // an HTTP target gets the client's params as they came, with the name rewritten, and
        // its result goes back the same way (unless the gateway rewrites it: resources/read)
        let raw_body = match (&self.plan().targets[ti].kind, &params) {
            (TargetKind::Http(h), Outgoing::Raw { raw, field, value, .. }) => {
                let strip = self.modern.then_some(MODERN_META_PREFIX);
                // a 2026-07-28 client's params keep its own `_meta` envelope for a target of that era
                let client = self.modern.then_some((raw, *field, value.as_str()));
                super::raw::rename_params(raw, field, value, strip).map(|b| (h, b, value.as_str(), client))
            }
            _ => None,
        };
        let raw_answer = raw_body.is_some() && method != "resources/read";
        // only stdio and HTTP+SSE targets run requests under the gateway's ids
        let rewrites = matches!(self.plan().targets[ti].kind, TargetKind::Stdio(_) | TargetKind::Sse(_));
        let origin = self.sid.filter(|_| rewrites).map(|s| origin(s, id));
        let headers = &self.param_headers;
        let started = match raw_body {
            Some((h, body, name, client)) => {
                self.relay.start_raw(ti, h, via, id, method, &body, name, client, headers).await
            }
            None => {
                let mut params = params.tree(self.modern);
                if let (Some(c), true) = (&self.caps, self.is_http(ti)) {
                    params = Some(mrtr::with_capabilities(params, c));
                }
                self.relay.start_with(ti, via, id, method, params.as_ref(), origin, headers).await
            }
        };
        let mut f = match started {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let progress_id = f.progress_id();
        let target = self.plan().targets[ti].name.clone();
        let prefixed = self.plan().prefixed;
        // 2026-07-28: a client closing the POST's response stream cancels the request (a legacy
        // client cancels with a notification instead). Watched only while an answer may take
        // long, and only with nothing unread from the client (a pipelined request stays intact).
        let watch = self.modern && f.streams() && self.out.can_watch();
        // SSE polling: when a slow answer is handed back to its client
        let mut poll = self.out.poll().filter(|_| f.streams()).map(|(after, retry)| (Instant::now() + after, retry));
        loop {
            let next = {
                let relay = &self.relay;
                let fetch = async {
                    if raw_answer {
                        f.next_answer(relay).await
                    } else {
                        f.next(relay).await.map(|m| m.map(Answer::Other))
                    }
                };
                // kept across a hand-back: a read cut short could lose what the target sent
                let mut fetch = std::pin::pin!(fetch);
                loop {
                    let due = poll.map(|(at, _)| at);
                    monoio::select! {
                        m = &mut fetch => break Some(m),
                        // a client handed back comes back elsewhere: its leaving cancels nothing
                        _ = self.out.client_left(), if watch && !self.out.gone => break None,
                        _ = monoio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                            let retry = poll.take().map_or(Duration::ZERO, |(_, r)| r);
                            self.out.hand_back(retry).await?;
                        }
                    }
                }
            };
            let Some(next) = next else {
                if let Some(via) = self.via(ti) {
                    f.cancel(&self.relay, ti, via, "the client closed the stream").await;
                }
                return Err(Failed::started(ProxyError::ClientClosed));
            };
            let m = match next {
                Ok(Some(Answer::Result { result, .. })) => {
                    self.tail = Some(f);
                    return Ok(Ok(Served::Raw(result)));
                }
                Ok(Some(Answer::Other(m))) => m,
                Ok(None) => {
                    return Ok(Err(RpcError::new(INTERNAL_ERROR, format!("target `{target}` ended without answering"))))
                }
                Err(e) => return Ok(Err(e)),
            };
            match m {
                Message::Response { mut result, .. } => {
                    if method == "resources/read" {
                        merge::prefix_read_result(&target, &mut result, prefixed);
                    }
                    self.tail = Some(f);
                    return Ok(Ok(Served::Tree(result)));
                }
                Message::Error { error, .. } => {
                    self.tail = Some(f);
                    return Ok(Err(RpcError::from_value(&error)));
                }
                Message::Notification { method: nm, params: mut np } => {
                    if let (Some(p), Some(up)) = (np.as_mut(), progress_id) {
                        if p.get("progressToken").and_then(Value::as_u64) == Some(up) {
                            if let Some(t) = &token {
                                p["progressToken"] = t.clone();
                            }
                        }
                    }
                    let m = Message::Notification { method: nm, params: np };
                    catalog::observe(self.relay.ctx, &target, &m);
                    if let Some(bytes) = outbound(ti, &target, prefixed, m) {
                        self.out.event(&bytes).await?;
                    }
                }
                // 2026-07-28 has no server→client requests on a stream
                m @ Message::Request { .. } if !self.modern => {
                    if let Some(bytes) = outbound(ti, &target, prefixed, m) {
                        self.out.event(&bytes).await?;
                    }
                }
                Message::Request { .. } => {}
            }
        }
    }

    /// A client's answer to a relayed server→client request: back to the target that asked.
    async fn client_answer(&self, msg: Message) -> Result<(), Failed> {
        if mrtr::is_ask_id(&msg) {
            // one of the gateway's own questions (a bridged `input_required`): to the request
            // waiting for it, wherever it runs
            let sid = self.sid.unwrap_or_default();
            if !mrtr::deliver(sid, msg) {
                return Err(McpReject::InvalidRequest("response to an unknown request id".into()).into());
            }
            return Ok(());
        }
        let (ti, up, body) = route_answer(self.plan(), self.session.as_ref(), msg)?;
        self.relay.post_message(ti, &up, &body).await;
        Ok(())
    }

    /// Client notifications go to the targets that have a session of this client's, except
    /// `initialized` to stdio processes (the gateway did their handshake). A cancellation also
    /// reaches the shared processes and sessions where the request runs under the gateway's id.
    async fn notification(&self, method: &str, params: Option<&Value>) {
        if self.modern {
            return;
        }
        if method == "notifications/cancelled" {
            return self.cancelled(params).await;
        }
        let body = jsonrpc::notification(method, params);
        let sends = (0..self.plan().targets.len()).filter_map(|ti| match self.via(ti)? {
            Via::Own(_) if method == "notifications/initialized" && !self.is_http(ti) => None,
            Via::Own(up) => Some(self.relay.post_message(ti, up, &body)),
            Via::Pooled => None,
        });
        join_all(sends).await;
    }

    fn is_http(&self, ti: usize) -> bool {
        matches!(self.plan().targets[ti].kind, TargetKind::Http(_))
    }

    /// `notifications/cancelled`: to HTTP targets on the client's own upstream session as is
    /// (ids pass unchanged there); to stdio and HTTP+SSE targets with `requestId` rewritten to
    /// the id the request got there, found by the client's session and id.
    async fn cancelled(&self, params: Option<&Value>) {
        let (Some(sid), Some(rid)) = (self.sid, params.and_then(|p| p.get("requestId"))) else { return };
        // a call bridging a 2026-07-28 target's `input_required` stops waiting for the
        // client's answers, on whichever shard it runs
        mrtr::cancel(sid, rid, params);
        let key = origin(sid, rid);
        let reason = params.and_then(|p| p.get("reason")).and_then(Value::as_str);
        let body = jsonrpc::notification("notifications/cancelled", params);
        let ctx = self.relay.ctx;
        let sends = (0..self.plan().targets.len()).filter_map(|ti| {
            let via = self.via(ti)?;
            let body = &body;
            let key = &key;
            Some(async move {
                match (&self.plan().targets[ti].kind, via) {
                    // a 2026-07-28 target has no cancellation over HTTP but a closed stream
                    (TargetKind::Http(_), Via::Own(up)) if up.v != MODERN_VERSION => {
                        self.relay.post_message(ti, up, body).await
                    }
                    (TargetKind::Stdio(_), Via::Own(up)) => {
                        if let Ok(p) = self.relay.stdio_proc(ti, up) {
                            p.cancel(key, reason);
                        }
                    }
                    (TargetKind::Stdio(s), Via::Pooled) => s.cancel(key, reason),
                    (TargetKind::Sse(_), Via::Own(up)) => {
                        if let Ok(c) = self.relay.sse_session(ti, up) {
                            c.cancel(ctx, key, reason).await;
                        }
                    }
                    (TargetKind::Sse(h), Via::Pooled) => {
                        // the shard's session with it: a request forwarded on another shard is
                        // not found here
                        if let Some(c) = ctx.mcp.sse_conn(&h.session_key()) {
                            c.cancel(ctx, key, reason).await;
                        }
                    }
                    _ => {}
                }
            })
        });
        join_all(sends).await;
    }

    async fn initialize(&mut self, params: Value) -> Result<Value, RpcError> {
        let version = merge::negotiate(params.get("protocolVersion").and_then(Value::as_str));
        let own = self.plan().stateful;
        let (parts, ups) = self.initialize_targets(&params, own).await?;
        let view = self.view(&parts);
        let result =
            merge::merge_initialize(&view, self.plan().prefixed, version, SERVER_NAME, env!("CARGO_PKG_VERSION"));
        if own {
            // what a renewed upstream session is initialized with (nothing else of the params),
            // sealed only when there is an upstream session to renew
            let keep = ["protocolVersion", "capabilities", "clientInfo"];
            // (a target spoken to statelessly may come back as a legacy one, which needs them too)
            let renewable = ups.iter().any(|u| u.s.is_some() || u.v == MODERN_VERSION);
            let c = params.as_object().filter(|_| renewable).map(|o| {
                Value::Object(
                    o.iter().filter(|(k, _)| keep.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect(),
                )
            });
            let sealed = Sealed { v: version.to_string(), t: ups, iat: now_secs(), h: None, c };
            // a Streamable HTTP client learns its session from the answer's header; a legacy
            // HTTP+SSE session keeps it next to its stream
            if let Sink::Http { .. } = self.out.sink {
                self.out.session = Some(sealed.seal(self.plan()).map_err(|e| RpcError::new(INTERNAL_ERROR, e))?);
            }
            self.session = Some(sealed);
        }
        Ok(result)
    }

    /// `server/discover` (2026-07-28): the merged capabilities of every target.
    async fn discover(&self) -> Result<Value, RpcError> {
        let params = json!({
            "protocolVersion": merge::negotiate(None),
            "capabilities": {},
            "clientInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")},
        });
        let (parts, _) = self.initialize_targets(&params, false).await?;
        let mut versions = vec![MODERN_VERSION];
        versions.extend(LEGACY_VERSIONS.iter().rev());
        // serverInfo, resultType and the cache hints are added by finish_result like everywhere
        Ok(json!({"supportedVersions": versions, "capabilities": merge::merge_capabilities(&self.view(&parts))}))
    }

    /// `initialize` on every target concurrently: their results (after the failure mode) and
    /// the session parts of those that answered.
    async fn initialize_targets(
        &self,
        params: &Value,
        own: bool,
    ) -> Result<(Vec<(usize, Value)>, Vec<Upstream>), RpcError> {
        let relay = &self.relay;
        let inits =
            (0..relay.plan.targets.len()).map(|ti| async move { (ti, relay.initialize(ti, params, own).await) });
        let mut ups = Vec::new();
        let mut answers = Vec::new();
        for (ti, r) in join_all(inits).await {
            answers.push((
                ti,
                r.map(|(result, up)| {
                    ups.push(up);
                    result
                }),
            ));
        }
        match self.settle(answers) {
            Ok(parts) => Ok((parts, ups)),
            Err(e) => {
                // the session is not made: processes started for it end now
                end_procs(&ups);
                Err(e)
            }
        }
    }

    /// The client's answer with a target's raw result: as it came, or in the 2026-07-28 era with
    /// what [`Exchange::finish_result`] adds, put in without parsing the rest.
    fn finish_raw(&self, id: &Value, method: &str, result: RawObject) -> Vec<u8> {
        if !self.modern {
            let mut text = Vec::with_capacity(256);
            result.write(&mut text);
            return jsonrpc::response_raw(id, &text);
        }
        let cacheable = method == "resources/read" || Kind::from_list_method(method).is_some();
        let set: &[(&str, &str)] = if cacheable { &[("ttlMs", "0"), ("cacheScope", r#""private""#)] } else { &[] };
        let add = super::raw::Additions {
            set,
            defaults: &[("resultType", r#""complete""#)],
            meta: &[("io.modelcontextprotocol/serverInfo", SERVER_INFO)],
        };
        match super::raw::add_to_result(&result, &add) {
            Some(r) => jsonrpc::response_raw(id, &r),
            // not a plain object: the tree way decides what it gets
            None => jsonrpc::response(id, &self.finish_result(method, result.to_value())),
        }
    }

    /// What the client gets for a result: in the 2026-07-28 era with `resultType` and, for
    /// cacheable methods, cache hints (private: what a caller sees may depend on who it is).
    fn finish_result(&self, method: &str, mut result: Value) -> Value {
        if self.modern {
            finish_modern(method, &mut result);
        }
        result
    }
}

/// What a 2026-07-28 result gets: `resultType` and, for cacheable methods, cache hints
/// (private: what a caller sees may depend on who it is).
fn finish_modern(method: &str, result: &mut Value) {
    if let Some(o) = result.as_object_mut() {
        o.entry("resultType").or_insert_with(|| json!("complete"));
        let cacheable =
            method == "server/discover" || method == "resources/read" || Kind::from_list_method(method).is_some();
        if cacheable {
            o.insert("ttlMs".into(), json!(0));
            o.insert("cacheScope".into(), json!("private"));
        }
        let meta = o.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert(
                "io.modelcontextprotocol/serverInfo".into(),
                json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")}),
            );
        }
    }
}

/// `_meta.serverInfo` of the gateway's 2026-07-28 results, as JSON text.
const SERVER_INFO: &str = concat!(r#"{"name":"ringgate","version":""#, env!("CARGO_PKG_VERSION"), r#""}"#);
/// What [`Exchange::finish_result`] adds to a 2026-07-28 list result, as JSON members.
const MODERN_LIST_MEMBERS: &str = concat!(
    r#","resultType":"complete","ttlMs":0,"cacheScope":"private","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"ringgate","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}}"#
);

/// A target's message on its way to the client: notifications with names prefixed, requests
/// with ids that route the client's answer back to the target.
fn outbound(ti: usize, target: &str, prefixed: bool, m: Message) -> Option<Vec<u8>> {
    match m {
        Message::Notification { method, mut params } => {
            if let Some(p) = params.as_mut() {
                merge::prefix_notification(target, &method, p, prefixed);
            }
            Some(jsonrpc::notification(&method, params.as_ref()))
        }
        Message::Request { id, method, params, raw } => {
            let relayed = json!(format!("{RELAYED_ID}{ti}~{id}"));
            Some(match raw {
                Some(raw) => {
                    let mut p = Vec::new();
                    raw.write(&mut p);
                    jsonrpc::request_raw(&relayed, &method, &p)
                }
                None => jsonrpc::request(&relayed, &method, params.as_ref()),
            })
        }
        _ => None,
    }
}

/// Where a client's answer to a relayed server→client request goes: the target that asked (by
/// the id the gateway gave the request) on the client's own upstream session with it, and the
/// answer with the target's id restored.
pub(super) fn route_answer(
    plan: &McpPlan,
    session: Option<&Sealed>,
    msg: Message,
) -> Result<(usize, Upstream, Vec<u8>), McpReject> {
    let unknown = || McpReject::InvalidRequest("response to an unknown request id".into());
    let id = msg.id().and_then(Value::as_str).ok_or_else(unknown)?;
    let (ti, orig) = id.strip_prefix(RELAYED_ID).and_then(|r| r.split_once('~')).ok_or_else(unknown)?;
    let ti: usize = ti.parse().map_err(|_| unknown())?;
    let orig: Value = serde_json::from_str(orig).map_err(|_| unknown())?;
    let t = plan.targets.get(ti).ok_or_else(unknown)?;
    if matches!(t.kind, TargetKind::Demo) {
        return Err(unknown());
    }
    let up = session.and_then(|s| s.target(&t.name)).filter(|u| u.s.is_some()).ok_or_else(unknown)?;
    let restored = match msg {
        Message::Response { result, .. } => Message::Response { id: orig, result },
        Message::Error { error, .. } => Message::Error { id: orig, error },
        _ => return Err(unknown()),
    };
    Ok((ti, up.clone(), restored.to_bytes()))
}

/// How often an idle GET stream gets a comment, so dead clients are noticed and proxies keep it.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(15);
/// GET streams may stay silent for this long.
pub(super) const STREAM_IDLE: Duration = Duration::from_secs(24 * 3600);

/// The legacy GET stream: what the session's own upstreams send unprompted (list changes,
/// resource updates, logging, server→client requests), merged, and the list changes of the
/// shared upstreams it uses (stdio targets' shared processes, the shard's HTTP+SSE sessions,
/// heard through the shard's hub) with the resource updates the session subscribed to there
/// ([`from_shared`]), until the client leaves or the shard drains.
async fn listen(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    pol: &PolicyPlan,
    client: &mut Peer,
    head: &RequestHead,
) -> Result<Done, Failed> {
    let accept = head.header_str("accept").unwrap_or("");
    if !(accept.contains("text/event-stream") || accept.contains("*/*")) {
        return Err(McpReject::NotAcceptable.into());
    }
    // a reload committed from here on is seen below; one committed since this request's
    // configuration was taken shows as a difference right away
    let mut committed = ctx.committed.borrow().clone();
    let (id, sealed) = session(ctx, plan, head).await?;
    if let Some(last) = head.header_str("last-event-id") {
        // boxed, as is opening the upstream streams: states the stream's loop below never
        // returns to would otherwise size the future the stream keeps while it is open
        if let Some(done) = Box::pin(resume_stream(ctx, plan, pol, client, head, id, last)).await? {
            return Ok(done);
        }
    }
    let mut merged = Box::pin(unprompted(ctx, plan, &sealed)).await;
    // what a rejoin needs of the session, which is dropped below
    let own = hub::own_upstreams(&sealed);
    let (mut members, all) = Box::pin(join_hub(ctx, plan, &own)).await;
    let mut shared = subscriptions::hub_streams(&members);
    let mut modern = Box::pin(super::session_listen::open(ctx, plan, id, &sealed)).await;
    // how many of them have not gone away
    let mut heard_from = members.len();
    // a shared upstream that could not be joined, or went away, is joined again later
    let mut rejoin_at = (!all).then(|| Instant::now() + KEEPALIVE);
    // the client sends nothing more on this connection: its read buffer would only sit there
    client.park();
    let mut out = Out::http(pol, head, client, false);
    out.resumable(ctx, id, resume::Kind::Get, &sealed.v, plan.resume);
    // the upstream streams are open: the session's state is not needed for the stream's life
    drop(sealed);
    out.prime().await?;
    let mut view = current_view(ctx, &plan.scope);
    let mut messages: Vec<Vec<u8>> =
        list_changes(plan.view, view).into_iter().map(|m| jsonrpc::notification(m, None)).collect();
    loop {
        for m in messages.drain(..) {
            if out.event(&m).await.is_err() {
                // the client left a stream it cannot resume: nothing more to send
                return Ok(Done::local(200, out.bytes, false));
            }
        }
        if out.unattended_for().is_some_and(|d| d >= plan.resume.retention) {
            // nobody came back for it
            break;
        }
        let mut tick = false;
        let mut heard = None;
        let rejoin = rejoin_at.is_some();
        let rejoin_in = rejoin_at.map(|t| t.saturating_duration_since(Instant::now()));
        let wait = rejoin_in.map_or(KEEPALIVE, |r| r.min(KEEPALIVE));
        monoio::select! {
            // without any upstream stream, the client still gets an open stream (keep-alives
            // only), so it does not reconnect in a loop
            m = next_unprompted(&mut merged), if merged.is_some() => match m {
                Some((ti, msg)) => {
                    catalog::observe(ctx, &plan.targets[ti].name, &msg);
                    messages.extend(outbound(ti, &plan.targets[ti].name, plan.prefixed, msg));
                }
                // every upstream ended its stream (e.g. the session was deleted): so do we
                None => break,
            },
            m = subscriptions::next_shared(&mut shared), if shared.is_some() => heard = Some(m),
            m = super::session_listen::next(&mut modern), if modern.is_some() => {
                super::session_listen::heard(&mut modern, plan, m, &mut messages);
            }
            // one timer for both: each costs the stream's future hundreds of bytes
            _ = monoio::time::sleep(wait) => {
                if rejoin_in.is_some_and(|r| r <= wait) {
                    rejoin_at = None;
                }
                tick = wait == KEEPALIVE;
            }
            _ = committed.fired() => {
                committed = ctx.committed.borrow().clone();
                let now = current_view(ctx, &plan.scope);
                messages.extend(list_changes(view, now).into_iter().map(|m| jsonrpc::notification(m, None)));
                view = now;
            }
            _ = ctx.draining.fired() => break,
        }
        if rejoin && rejoin_at.is_none() {
            let (m, all) = Box::pin(join_hub(ctx, plan, &own)).await;
            // joined before the old memberships go, so that sources still heard stay open
            members = m;
            shared = subscriptions::hub_streams(&members);
            heard_from = members.len();
            rejoin_at = (!all).then(|| Instant::now() + KEEPALIVE);
        }
        // what else the shared upstreams sent meanwhile is taken too: a burst of list changes
        // (one per target) reaches the client as one of each kind
        while let Some(m) = heard.take() {
            let Some((ti, msg)) = m else {
                // a shared upstream went away (a stdio process exited): its next one is joined
                // soon; the others are still heard meanwhile
                heard_from = heard_from.saturating_sub(1);
                if heard_from == 0 {
                    shared = None;
                }
                rejoin_at.get_or_insert_with(|| Instant::now() + REJOIN_AFTER);
                break;
            };
            if let Some(note) = from_shared(plan, &members, id, ti, msg) {
                if !messages.contains(&note) {
                    messages.push(note);
                }
            }
            heard = subscriptions::next_shared(&mut shared).now_or_never();
        }
        // a client that resumed gets its keep-alives from the connection it resumed on
        if tick && !out.gone {
            let mut ev = Vec::new();
            sse::write_comment(&mut ev, "keep-alive");
            if out.event_raw(ev).await.is_err() {
                return Ok(Done::local(200, out.bytes, false));
            }
        }
    }
    let _ = out.end_stream().await;
    Ok(Done::local(200, out.bytes, false))
}

/// How long a GET stream waits before joining a shared upstream that went away again.
const REJOIN_AFTER: Duration = Duration::from_secs(1);

/// [`hub::join_shared`] for a GET stream, which waits for a shared upstream that is slow to
/// start or answer no longer than a keep-alive (it is joined again later). Boxed: a GET stream's
/// future would otherwise keep room for it for its whole life.
async fn join_hub(ctx: &Rc<ShardCtx>, plan: &McpPlan, own: &[String]) -> (Vec<(usize, hub::Membership)>, bool) {
    let join = Box::pin(hub::join_shared(ctx, plan, own, TARGET_IDLE));
    monoio::time::timeout(KEEPALIVE, join).await.unwrap_or_default()
}

/// What a session's stream (GET, or legacy `/sse`) carries of target `ti`'s message heard from
/// the shard's hub: a list change as the gateway's own notification (without the target's
/// params), and `resources/updated` (its URI prefixed) if session `sid` holds a subscription to
/// the URI there. What else a shared upstream sends (logging, requests) is no one session's.
fn from_shared(
    plan: &McpPlan,
    members: &[(usize, hub::Membership)],
    sid: &str,
    ti: usize,
    msg: Message,
) -> Option<Vec<u8>> {
    if let Some(change) = list_change(&msg) {
        return Some(jsonrpc::notification(change, None));
    }
    let Message::Notification { method, params } = &msg else { return None };
    let uri = params.as_ref().and_then(|p| p.get("uri")).and_then(Value::as_str)?;
    let (_, m) = members.iter().find(|(t, _)| *t == ti)?;
    if method != "notifications/resources/updated" || !m.held_by(uri, sid) {
        return None;
    }
    outbound(ti, &plan.targets[ti].name, plan.prefixed, msg)
}

/// A shared upstream's list change as a session's stream carries it.
pub(super) fn list_change(msg: &Message) -> Option<&'static str> {
    let Message::Notification { method, .. } = msg else { return None };
    ["notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"]
        .into_iter()
        .find(|m| m == method)
}

/// A GET with `Last-Event-ID`: the shard that produces the stream (named in the id) replays what
/// the client missed on that stream and goes on feeding this connection, until the stream ends.
/// `None` for a GET stream that cannot be resumed: the caller opens a fresh one, as a server
/// without resumption would (the spec lets a server ignore the header). A POST answer that
/// cannot be resumed is a 400: a fresh GET stream would leave the client waiting for its
/// response forever, while an error lets it give up and send the request again.
async fn resume_stream(
    ctx: &ShardCtx,
    plan: &McpPlan,
    pol: &PolicyPlan,
    client: &mut Peer,
    head: &RequestHead,
    session: &str,
    last: &str,
) -> Result<Option<Done>, Failed> {
    let stats = &ctx.registry.shards[ctx.index];
    let last = resume::EventId::parse(last.trim());
    let (tx, rx) = flume::unbounded();
    let attached = match last.and_then(|l| Some((l, ctx.siblings.get(l.shard)?))) {
        Some((last, mailbox)) => {
            let (ack, acked) = flume::bounded(1);
            let retention = plan.resume.retention;
            let msg = ShardMsg::Resume { session: session.into(), last, retention, tx, ack };
            match mailbox.send_async(msg).await {
                Ok(()) => acked.recv_async().await.unwrap_or(Err(resume::Refused::Unknown)),
                Err(_) => Err(resume::Refused::Unknown),
            }
        }
        None => Err(resume::Refused::Unknown),
    };
    let replayed = match attached {
        Ok(n) => n,
        Err(why) => {
            stats.mcp_resumes[if why == resume::Refused::Gap { 2 } else { 1 }].fetch_add(1, Relaxed);
            if last.is_some_and(|l| l.kind == resume::Kind::Get) {
                return Ok(None);
            }
            return Err(McpReject::ResumeUnknown.into());
        }
    };
    stats.mcp_resumes[0].fetch_add(1, Relaxed);
    stats.mcp_replayed.fetch_add(replayed as u64, Relaxed);
    client.park();
    let mut out = Out::http(pol, head, client, false);
    let mut first = Vec::new();
    sse::write_comment(&mut first, "resumed");
    out.event_raw(first).await?;
    loop {
        let ev = monoio::select! {
            ev = rx.recv_async() => match ev {
                Ok(ev) => ev,
                // the stream ended (its response is out), or another connection resumed it
                Err(_) => break,
            },
            _ = monoio::time::sleep(KEEPALIVE) => {
                let mut c = Vec::new();
                sse::write_comment(&mut c, "keep-alive");
                c
            }
            _ = ctx.draining.fired() => break,
        };
        if out.event_raw(ev).await.is_err() {
            // gone again: the producing shard notices the closed channel and keeps the events
            return Ok(Some(Done::local(200, out.bytes, false)));
        }
    }
    let _ = out.end_stream().await;
    Ok(Some(Done::local(200, out.bytes, false)))
}

/// What clients of the MCP route `scope` can see under the configuration now in use (a route
/// that is gone shows nothing, which differs from any real view).
pub(super) fn current_view(ctx: &ShardCtx, scope: &str) -> (u64, u64) {
    let state = ctx.current();
    let routes = state.snap.binds.iter().flat_map(|b| &b.listeners).flat_map(|l| &l.routes);
    routes.filter_map(|r| r.mcp.as_ref()).find(|m| &*m.scope == scope).map_or((0, 0), |m| m.view)
}

/// The `list_changed` notifications a client gets when what it can see changes from `was` to
/// `now` (fingerprints of tools, and of prompts and resources).
pub(super) fn list_changes(was: (u64, u64), now: (u64, u64)) -> Vec<&'static str> {
    let mut out = Vec::new();
    if was.0 != now.0 {
        out.push("notifications/tools/list_changed");
    }
    if was.1 != now.1 {
        out.extend(["notifications/prompts/list_changed", "notifications/resources/list_changed"]);
    }
    out
}

/// What the targets of a session send unprompted, merged: the GET streams of its upstream
/// sessions with HTTP targets (`None` when it has none).
type Unprompted<'a> = Option<futures_util::stream::LocalBoxStream<'a, (usize, Message)>>;

/// Open the GET streams of `sealed`'s upstream sessions. A target without one (405) is left out,
/// which the spec allows.
pub(super) async fn unprompted<'a>(ctx: &'a ShardCtx, plan: &'a McpPlan, sealed: &Sealed) -> Unprompted<'a> {
    use futures_util::stream::{self, StreamExt};
    let opens = plan.targets.iter().enumerate().filter_map(|(ti, t)| {
        let TargetKind::Http(h) = &t.kind else { return None };
        let up = sealed.target(&t.name)?;
        let (s, v) = (up.s.clone()?, up.v.clone());
        Some(async move { (ti, super::http_client::get(ctx, h, Some(&s), Some(&v), TARGET_IDLE).await) })
    });
    let mut streams = Vec::new();
    // the session's own stdio processes and HTTP+SSE sessions: what they send while no request
    // of the client waits
    for (ti, t) in plan.targets.iter().enumerate() {
        let Some(key) = sealed.target(&t.name).and_then(|u| u.s.as_deref()) else { continue };
        let rx = match &t.kind {
            TargetKind::Stdio(_) => ctx.mcp.stdio_proc(key).map(|p| p.listen()),
            TargetKind::Sse(_) => ctx.mcp.sse_session(key).map(|c| c.listen()),
            _ => None,
        };
        if let Some(rx) = rx {
            streams.push(
                stream::unfold(rx, move |rx| async move { rx.recv_async().await.ok().map(|m| ((ti, m), rx)) })
                    .boxed_local(),
            );
        }
    }
    for (ti, r) in join_all(opens).await {
        match r {
            Ok(reply) => streams.push(
                stream::unfold((ti, reply), move |(ti, mut r)| async move {
                    // the stream waits for its upstream in a small future and reads in a boxed one
                    r.readable(STREAM_IDLE).await.ok()?;
                    match Box::pin(r.next(ctx, STREAM_IDLE)).await {
                        Ok(Some(m)) => Some(((ti, m), (ti, r))),
                        _ => None,
                    }
                })
                .boxed_local(),
            ),
            Err(e) => eprintln!("mcp target {}: no GET stream: {e}", plan.targets[ti].name),
        }
    }
    // one stream (one target) needs no merging, nor select_all's queue and task nodes
    match streams.len() {
        0 => None,
        1 => streams.pop(),
        _ => Some(stream::select_all(streams).boxed_local()),
    }
}

/// The next unprompted message; `None` once every upstream stream has ended.
pub(super) async fn next_unprompted(u: &mut Unprompted<'_>) -> Option<(usize, Message)> {
    use futures_util::StreamExt;
    match u {
        Some(s) => s.next().await,
        None => None,
    }
}

/// End a client session: its upstream sessions are deleted and its id stops working here.
async fn delete(
    ctx: &ShardCtx,
    plan: &McpPlan,
    pol: &PolicyPlan,
    client: &mut Peer,
    head: &RequestHead,
) -> Result<Done, Failed> {
    let (id, sealed) = session(ctx, plan, head).await?;
    end_session(ctx, plan, id, Some(&sealed)).await;
    let keep = head.keep_alive && head.framing == codec::Framing::None;
    let mut out = Out::http(pol, head, client, keep);
    out.json(200, b"").await?;
    Ok(Done::local(200, 0, keep))
}

/// End the stdio processes and HTTP+SSE sessions of its own among a session's upstreams.
fn end_procs(ups: &[Upstream]) {
    for key in ups.iter().filter_map(|u| u.s.as_deref()) {
        if key.starts_with(super::stdio::KEY_PREFIX) {
            super::stdio::end_session_proc(key);
        } else if key.starts_with(super::sse_client::KEY_PREFIX) {
            super::sse_client::end_session_sse(key);
        }
    }
}

/// Delete a session's upstream sessions with HTTP targets and end its own stdio processes and
/// HTTP+SSE sessions (best effort).
pub(super) async fn delete_upstreams(ctx: &ShardCtx, plan: &McpPlan, sealed: &Sealed) {
    end_procs(&sealed.t);
    let deletes = plan.targets.iter().filter_map(|t| {
        let TargetKind::Http(h) = &t.kind else { return None };
        let s = sealed.target(&t.name)?.s.clone()?;
        Some(async move { super::http_client::delete(ctx, h, &s, TARGET_IDLE).await })
    });
    join_all(deletes).await;
}

/// Delete a session's upstream sessions with HTTP targets and stop accepting its id on every shard.
pub(super) async fn end_session(ctx: &ShardCtx, plan: &McpPlan, id: &str, upstreams: Option<&Sealed>) {
    if let Some(u) = upstreams {
        delete_upstreams(ctx, plan, u).await;
    }
    // what it subscribed to at shared processes is not held for it any more (at the shards'
    // HTTP+SSE sessions: each shard gives that up as it hears of the end)
    for t in &plan.targets {
        if let TargetKind::Stdio(s) = &t.kind {
            s.forget_session(id);
        }
    }
    // every shard, this one included, learns it through its mailbox, and has revoked it before
    // the client hears back: a message only queued would let the client's next request, landing
    // on that shard first, through
    let id: Arc<str> = id.into();
    let (ack, acked) = flume::bounded(ctx.siblings.len());
    let tell = async {
        for s in &ctx.siblings {
            let _ =
                s.send_async(ShardMsg::EndSession { id: id.clone(), ttl: plan.session_ttl, ack: ack.clone() }).await;
        }
        drop(ack);
        while acked.recv_async().await.is_ok() {}
    };
    // a shard that does not answer in time (draining) has stopped taking requests anyway
    let _ = monoio::time::timeout(ASK_SHARDS, tell).await;
}

/// How a client's request is known for cancellation: its session and its id.
fn origin(sid: &str, id: &Value) -> String {
    format!("{sid}\n{id}")
}

fn param_str<'a>(params: &'a Option<Value>, field: &str) -> &'a str {
    params.as_ref().and_then(|p| p.get(field)).and_then(Value::as_str).unwrap_or("")
}

fn with_field(params: Option<Value>, field: &str, value: String) -> Option<Value> {
    let mut p = params.unwrap_or_else(|| json!({}));
    if let Some(o) = p.as_object_mut() {
        o.insert(field.into(), Value::String(value));
    }
    Some(p)
}

fn with_cursor(params: Option<Value>, cursor: Option<String>) -> Option<Value> {
    let mut p = params.unwrap_or_else(|| json!({}));
    if let Some(o) = p.as_object_mut() {
        match cursor {
            Some(c) => o.insert("cursor".into(), Value::String(c)),
            None => o.remove("cursor"),
        };
        if o.is_empty() {
            return None;
        }
    }
    Some(p)
}

/// Remove the 2026-07-28 `_meta` keys before a request goes to a legacy upstream session.
fn strip_modern_meta(params: Option<Value>) -> Option<Value> {
    let mut p = params?;
    if let Some(o) = p.as_object_mut() {
        if let Some(meta) = o.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.retain(|k, _| !k.starts_with(MODERN_META_PREFIX));
            if meta.is_empty() {
                o.remove("_meta");
            }
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open GET stream keeps `serve`'s future (boxed by `conn`) and `listen`'s for its whole
    /// life: neither may carry the states of a POST exchange or of opening the stream.
    #[test]
    fn an_open_stream_keeps_small_futures() {
        #[allow(clippy::type_complexity)]
        fn serve_size<'a, F>(
            _: impl FnOnce(
                &'a Rc<ShardCtx>,
                &'a Selected<'a>,
                &'a Arc<McpPlan>,
                Access<'a>,
                &'a mut Peer,
                &'a RequestHead,
                &'a HttpLimits,
            ) -> F,
        ) -> usize {
            std::mem::size_of::<F>()
        }
        fn listen_size<'a, F>(
            _: impl FnOnce(&'a Rc<ShardCtx>, &'a McpPlan, &'a PolicyPlan, &'a mut Peer, &'a RequestHead) -> F,
        ) -> usize {
            std::mem::size_of::<F>()
        }
        // what each upstream stream of it waits in (it reads in a transient, boxed future)
        fn wait_size<'a, F>(_: impl FnOnce(&'a mut crate::mcp::http_client::Reply, Duration) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let (serve, listen) = (serve_size(serve), listen_size(listen));
        let wait = wait_size(crate::mcp::http_client::Reply::readable);
        eprintln!("future sizes: serve {serve} B, listen {listen} B, upstream wait {wait} B");
        assert!(wait <= 256, "upstream wait: {wait} B");
        assert!(serve <= 512, "serve: {serve} B");
        // 1,664 B before GET streams joined the hub (rejoin state, the shared streams)
        assert!(listen <= 2048, "listen: {listen} B");
    }

    #[test]
    fn a_reload_announces_the_lists_whose_view_changed() {
        assert!(list_changes((1, 2), (1, 2)).is_empty());
        assert_eq!(list_changes((1, 2), (3, 2)), ["notifications/tools/list_changed"]);
        assert_eq!(
            list_changes((1, 2), (3, 4)),
            [
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed"
            ]
        );
    }

    #[test]
    fn a_get_stream_takes_only_list_changes_from_shared_upstreams() {
        let note = |method: &str| Message::Notification { method: method.into(), params: Some(json!({"x": 1})) };
        assert_eq!(
            list_change(&note("notifications/prompts/list_changed")),
            Some("notifications/prompts/list_changed")
        );
        assert_eq!(list_change(&note("notifications/resources/updated")), None);
        assert_eq!(list_change(&note("notifications/message")), None);
        let ask = Message::Request { id: json!(1), method: "roots/list".into(), params: None, raw: None };
        assert_eq!(list_change(&ask), None);
    }

    #[test]
    fn raw_server_info_names_the_gateway_like_the_tree_one() {
        let info: Value = serde_json::from_str(SERVER_INFO).unwrap();
        assert_eq!(info, json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")}));
    }

    #[test]
    fn a_list_spliced_from_cached_pages_ends_like_a_merged_one() {
        let text = catalog::ListWriter::new(Kind::Tool, 0).finish(MODERN_LIST_MEMBERS.as_bytes());
        let spliced: Value = serde_json::from_slice(&text).unwrap();
        let mut tree = json!({"tools": []});
        finish_modern("tools/list", &mut tree);
        assert_eq!(spliced, tree);
    }
}
