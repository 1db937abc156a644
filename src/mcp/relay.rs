//! Talking to targets on behalf of one client request: start a request on a target of any kind, read what it sends back, and set up upstream sessions.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::demo;
use super::era::{self, Era, Verdict};
use super::flight::Join;
use super::http_client::{self, HttpError, Post, Reply};
use super::jsonrpc::{self, Answer, Message, RpcError, INTERNAL_ERROR};
use super::merge::{self, MODERN_VERSION};
use super::plan::{HttpTargetPlan, McpPlan, TargetKind};
use super::raw::{rename_params, RawObject};
use super::session::{Pooled, RenewKey, Took, Upstream};
use super::sse_client::{self, SessionSse, SessionSseCall, SseCall};
use super::stdio::{SessionProc, StdioCall, SESSION_LIMIT};
use crate::config::mcp::TargetProtocol;
use crate::proxy::shard::{ShardCtx, ShardMsg};

/// Which upstream session a request to an HTTP target uses.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    /// The client session's own upstream session: ids pass unchanged (so cancellation works).
    Own(&'a Upstream),
    /// A session this shard shares among stateless requests: ids are the gateway's own.
    Pooled,
}

/// Everything needed to reach targets for one client request.
pub struct Relay<'a> {
    /// The shard (tasks that outlive the request, like an upstream stream's reader, hold it).
    pub ctx: &'a Rc<ShardCtx>,
    /// The backend.
    pub plan: &'a McpPlan,
    /// Idle limit while waiting on a target.
    pub idle: Duration,
    /// The client session whose upstream sessions a request may renew, if any.
    pub renew: Option<&'a Renewal>,
}

/// What a client session needs to renew an upstream session its target forgot (answered 404).
pub struct Renewal {
    /// The client session id, under which every shard learns of the renewal; `None` for a
    /// legacy HTTP+SSE session, whose upstream sessions live next to its stream on one shard.
    pub id: Option<Arc<str>>,
    /// The client's `initialize` params, which the new upstream session is initialized with.
    pub params: Value,
    /// Upstream sessions renewed while serving this request.
    pub fresh: RefCell<Vec<Upstream>>,
}

/// How long a shard waits for the others to take in a renewed upstream session before it goes on.
const RENEW_ACK: Duration = Duration::from_secs(1);

/// How long an upstream session that lost a renewal race (two shards renewed the same forgotten
/// session at once, and each used its own) stays open before it is ended: the requests already
/// sent on it finish first.
const LOSER_GRACE: Duration = Duration::from_secs(60);

/// Another shard renewed an upstream session of client session `id` in place of `from`: use it
/// from now on. If it won over one this shard made at the same moment, ours is ended.
pub fn renewed_elsewhere(ctx: &Rc<ShardCtx>, id: &str, up: Upstream, from: Option<String>) {
    if let Took::Displaced(s, h) = ctx.mcp.renew(id, up, from, None) {
        end_later(ctx, s, h);
    }
}

/// End upstream session `s` of `h` after [`LOSER_GRACE`].
fn end_later(ctx: &Rc<ShardCtx>, s: String, h: Rc<HttpTargetPlan>) {
    eprintln!("mcp: another shard's renewal of an upstream session won; ending ours in {LOSER_GRACE:?}");
    let ctx = ctx.clone();
    monoio::spawn(async move {
        monoio::time::sleep(LOSER_GRACE).await;
        http_client::delete(&ctx, &h, &s, LOSER_GRACE).await;
    });
}

/// A request in flight on one target.
pub enum InFlight {
    /// Answered already (demo target, or a local error).
    Ready(Option<Message>),
    /// Streamable HTTP answer, and the id the request has upstream.
    Http(Box<Reply>, Value),
    /// Stdio.
    Stdio(StdioCall),
    /// Legacy HTTP+SSE (answers come on the target's stream).
    Sse(SseCall),
    /// Legacy HTTP+SSE on the client session's own upstream session.
    SseOwn(SessionSseCall),
}

impl InFlight {
    /// The next message the target sends about this request; `None` when it is done.
    pub async fn next(&mut self, r: &Relay<'_>) -> Result<Option<Message>, RpcError> {
        match self {
            InFlight::Ready(m) => Ok(m.take()),
            InFlight::Http(reply, _) => reply.next(r.ctx, r.idle).await.map_err(|e| upstream_error(&e)),
            InFlight::Stdio(call) => match monoio::time::timeout(r.idle, call.rx.recv_async()).await {
                Ok(Ok(m)) => Ok(Some(m)),
                Ok(Err(_)) => Ok(None),
                Err(_) => Err(RpcError::new(INTERNAL_ERROR, "stdio target did not answer in time")),
            },
            InFlight::Sse(SseCall { rx, .. }) | InFlight::SseOwn(SessionSseCall { rx, .. }) => {
                match monoio::time::timeout(r.idle, rx.recv_async()).await {
                    Ok(Ok(m)) => Ok(Some(m)),
                    Ok(Err(_)) => Ok(None),
                    Err(_) => Err(RpcError::new(INTERNAL_ERROR, "sse target did not answer in time")),
                }
            }
        }
    }

    /// [`InFlight::next`] with a response's result kept raw where the target's answer is read
    /// here (HTTP); other targets answer with trees.
    pub async fn next_answer(&mut self, r: &Relay<'_>) -> Result<Option<Answer>, RpcError> {
        match self {
            InFlight::Http(reply, _) => reply.next_answer(r.ctx, r.idle).await.map_err(|e| upstream_error(&e)),
            _ => Ok(self.next(r).await?.map(Answer::Other)),
        }
    }

    /// The progress token the target sees in place of the client's, on targets shared by many
    /// clients (stdio, HTTP+SSE); progress carrying it is the client's.
    pub fn progress_id(&self) -> Option<u64> {
        match self {
            InFlight::Stdio(c) => Some(c.upstream_id),
            InFlight::Sse(c) => Some(c.upstream_id),
            InFlight::SseOwn(c) => Some(c.upstream_id),
            _ => None,
        }
    }
}

impl InFlight {
    /// After the response: read the rest of an HTTP answer (the end of its SSE stream), briefly,
    /// so the connection goes back to the pool instead of being dropped.
    pub async fn close(self, r: &Relay<'_>) {
        if let InFlight::Http(reply, _) = self {
            let _ = monoio::time::timeout(TAIL_WAIT, reply.finish(r.ctx, r.idle)).await;
        }
    }

    /// Whether the answer may take long: anything but a ready answer or a plain JSON one.
    pub fn streams(&self) -> bool {
        match self {
            InFlight::Ready(_) => false,
            InFlight::Http(reply, _) => reply.is_event_stream(),
            InFlight::Stdio(_) | InFlight::Sse(_) | InFlight::SseOwn(_) => true,
        }
    }

    /// Tell target `ti` that the client gave up on this request (`notifications/cancelled`
    /// with the id the request has there), best effort.
    pub async fn cancel(&self, r: &Relay<'_>, ti: usize, via: Via<'_>, reason: &str) {
        match self {
            InFlight::Ready(_) => {}
            InFlight::Stdio(call) => call.cancel(reason),
            InFlight::Sse(call) => call.cancel(r.ctx, reason).await,
            InFlight::SseOwn(call) => call.cancel(r.ctx, reason).await,
            InFlight::Http(_, id) => {
                let body =
                    jsonrpc::notification("notifications/cancelled", Some(&json!({"requestId": id, "reason": reason})));
                let TargetKind::Http(h) = &r.plan.targets[ti].kind else { return };
                let (session, version) = match via {
                    Via::Own(u) => (u.s.clone(), u.v.clone()),
                    Via::Pooled => match r.ctx.mcp.pooled(&pool_key(h)) {
                        Some(p) => (Some(p.session.clone()).filter(|s| !s.is_empty()), p.version.clone()),
                        None => return,
                    },
                };
                // a 2026-07-28 target takes the closed stream as the cancellation
                if version == MODERN_VERSION {
                    return;
                }
                let post = Post { session: session.as_deref(), version: Some(&version), body: &body };
                if let Ok(reply) = http_client::post(r.ctx, h, &post, r.idle).await {
                    reply.finish(r.ctx, r.idle).await;
                }
            }
        }
    }
}

/// How long an upstream may take to end its stream after its response before its connection
/// is dropped rather than pooled.
const TAIL_WAIT: Duration = Duration::from_millis(250);

/// The JSON-RPC error a client sees when a target fails at the transport level.
pub fn upstream_error(e: &HttpError) -> RpcError {
    RpcError::new(INTERNAL_ERROR, format!("target failed: {e}"))
}

impl Relay<'_> {
    /// Send a request to target `ti`. The response keeps the target's id; callers restore the
    /// client's id. A request forwarded for a client has an `origin` (its session and id): on
    /// stdio targets the client may cancel it, and a session's own process relays to the
    /// client what it asks and tells meanwhile.
    pub async fn start(
        &self,
        ti: usize,
        via: Via<'_>,
        id: &Value,
        method: &str,
        params: Option<&Value>,
        origin: Option<String>,
    ) -> Result<InFlight, RpcError> {
        self.start_with(ti, via, id, method, params, origin, &[]).await
    }

    /// [`Relay::start`], with header lines for an HTTP target (the client's `Mcp-Param-*`).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_with(
        &self,
        ti: usize,
        via: Via<'_>,
        id: &Value,
        method: &str,
        params: Option<&Value>,
        origin: Option<String>,
        headers: &[u8],
    ) -> Result<InFlight, RpcError> {
        match &self.plan.targets[ti].kind {
            TargetKind::Demo => {
                let m = match demo::handle(method, params) {
                    Ok(result) => Message::Response { id: id.clone(), result },
                    Err(e) => Message::Error { id: id.clone(), error: e.to_value() },
                };
                Ok(InFlight::Ready(Some(m)))
            }
            TargetKind::Stdio(s) => match via {
                Via::Own(u) => {
                    let p = self.stdio_proc(ti, u)?;
                    Ok(InFlight::Stdio(p.call(method, params, origin).await?))
                }
                Via::Pooled => Ok(InFlight::Stdio(s.call(method, params, origin).await?)),
            },
            TargetKind::Sse(h) => match via {
                Via::Own(u) => {
                    let conn = self.sse_session(ti, u)?;
                    Ok(InFlight::SseOwn(conn.call(self.ctx, method, params, self.idle, origin).await?))
                }
                Via::Pooled => {
                    let name = &self.plan.targets[ti].name;
                    let conn = sse_client::shared(self.ctx, name, h, self.idle).await?;
                    match conn.call(self.ctx, method, params, self.idle, origin.clone()).await {
                        Ok(call) => Ok(InFlight::Sse(call)),
                        // the target refused the POST, so its session is gone (it restarted
                        // before its stream's end reached us): once more on a new one
                        Err(_) if conn.is_dead() => {
                            let conn = sse_client::shared(self.ctx, name, h, self.idle).await?;
                            Ok(InFlight::Sse(conn.call(self.ctx, method, params, self.idle, origin).await?))
                        }
                        Err(e) => Err(e),
                    }
                }
            },
            TargetKind::Http(h) => {
                let call = Call { method, name: named(method, params), headers };
                self.post(ti, h, via, id, &call, |id, modern| match modern {
                    true => jsonrpc::request(id, method, Some(&era::with_envelope(params))),
                    // what a 2026-07-28 client declared is no legacy session's business
                    false => jsonrpc::request(id, method, era::without_envelope(params).as_ref().or(params)),
                })
                .await
            }
        }
    }

    /// [`Relay::start_with`] for an HTTP target with params that are JSON text already (without
    /// 2026-07-28 `_meta` members), naming `name` (a tool, prompt or resource). A 2026-07-28
    /// client's own params (`client`: its raw params, and the member to set to what) go to a
    /// target of that era with its envelope (capabilities, client info) as it sent them.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_raw(
        &self,
        ti: usize,
        h: &HttpTargetPlan,
        via: Via<'_>,
        id: &Value,
        method: &str,
        params: &[u8],
        name: &str,
        client: Option<(&RawObject, &str, &str)>,
        headers: &[u8],
    ) -> Result<InFlight, RpcError> {
        let call = Call { method, name: Some(name), headers };
        self.post(ti, h, via, id, &call, |id, modern| {
            let theirs =
                client.filter(|_| modern).and_then(|(raw, field, value)| rename_params(raw, field, value, None));
            match (modern, theirs) {
                (true, Some(p)) => jsonrpc::request_raw(id, method, &p),
                (true, None) => jsonrpc::request_raw(id, method, &era::envelope_raw(params)),
                (false, _) => jsonrpc::request_raw(id, method, params),
            }
        })
        .await
    }

    /// POST a request to HTTP target `ti`: `body` writes it with the id given (the client's on
    /// its own upstream session, one of the gateway's on a pooled one) for a legacy session or,
    /// when told so, as a 2026-07-28 request. A pooled session the target forgot is replaced
    /// once; the client's own is renewed once (`Relay::renew`). A target whose answer says it
    /// now speaks the other era is probed again, and the request sent once more in that era.
    async fn post(
        &self,
        ti: usize,
        h: &HttpTargetPlan,
        via: Via<'_>,
        id: &Value,
        call: &Call<'_>,
        body: impl Fn(&Value, bool) -> Vec<u8>,
    ) -> Result<InFlight, RpcError> {
        let (session, version, rewritten) = match via {
            Via::Own(u) => (u.s.clone(), u.v.clone(), None),
            Via::Pooled => {
                let p = self.pooled_session(ti, h).await?;
                let session = Some(p.session.clone()).filter(|s| !s.is_empty());
                (session, p.version.clone(), Some(json!(self.ctx.mcp.next_id())))
            }
        };
        let up_id = rewritten.unwrap_or_else(|| id.clone());
        let modern = version == MODERN_VERSION;
        let (status, text) = match self.send(h, session.as_deref(), &version, call, &body(&up_id, modern)).await {
            Ok(reply) => return Ok(InFlight::Http(Box::new(reply), up_id)),
            Err(HttpError::Status(status, text)) => (status, text),
            Err(e) => return Err(upstream_error(&e)),
        };
        let auto = self.plan.targets[ti].protocol == TargetProtocol::Auto;
        let failed = |status, text| upstream_error(&HttpError::Status(status, text));
        let name = &self.plan.targets[ti].name;
        if modern {
            // the target's own word on the request (unknown method, bad params) goes to the client
            if let Some(e) = era::rejection(&text) {
                return Err(RpcError::from_value(&e));
            }
            if !(auto && era::redeployed_legacy(status, &text)) {
                return Err(failed(status, text));
            }
            eprintln!("mcp target {name}: refused a 2026-07-28 request (HTTP {status}); probing its era again");
            self.ctx.mcp.set_pooled(&pool_key(h), None);
            if self.pooled_session(ti, h).await?.era.is_modern() {
                return Err(failed(status, text));
            }
        } else {
            let redeployed = auto && era::redeployed_modern(status, &text);
            if status != 404 && !redeployed {
                return Err(failed(status, text));
            }
            // the shared session expired, or the target may speak another era now: a new way
            // to it is set up (and its era probed) below
            if matches!(via, Via::Pooled) || redeployed {
                self.ctx.mcp.set_pooled(&pool_key(h), None);
            }
        }
        let (session, version) = match (via, self.renew) {
            (Via::Pooled, _) => {
                let p = self.pooled_session(ti, h).await?;
                (Some(p.session.clone()).filter(|s| !s.is_empty()), p.version.clone())
            }
            // the target forgot the client's upstream session, or changed era: a new one, once
            (Via::Own(old), Some(r)) if old.s.is_some() || modern => {
                let up = self.renew_own(ti, h, old, r).await?;
                (up.s, up.v)
            }
            _ => return Err(failed(status, text)),
        };
        let modern = version == MODERN_VERSION;
        let reply = self
            .send(h, session.as_deref(), &version, call, &body(&up_id, modern))
            .await
            .map_err(|e| upstream_error(&e))?;
        Ok(InFlight::Http(Box::new(reply), up_id))
    }

    /// POST one message: on a legacy session (`version` is its), or as a 2026-07-28 request with
    /// the headers that era wants.
    async fn send(
        &self,
        h: &HttpTargetPlan,
        session: Option<&str>,
        version: &str,
        call: &Call<'_>,
        body: &[u8],
    ) -> Result<Reply, HttpError> {
        if version != MODERN_VERSION {
            let post = Post { session, version: Some(version), body };
            return http_client::post_with_headers(self.ctx, h, &post, call.headers, self.idle).await;
        }
        let mut extra = Vec::with_capacity(call.headers.len() + 64);
        extra.extend_from_slice(call.headers);
        era::write_headers(&mut extra, call.method, call.name);
        let post = Post { session: None, version: Some(MODERN_VERSION), body };
        http_client::post_with_headers(self.ctx, h, &post, &extra, self.idle).await
    }

    /// A new upstream session of the client's with target `ti` in place of `old`, which the
    /// target forgot: one another request renewed already, or a new one initialized with the
    /// client's own params. Every shard learns of it before the client's answer is sent, so its
    /// next request uses it wherever it lands (a replica renews on its own).
    async fn renew_own(
        &self,
        ti: usize,
        h: &HttpTargetPlan,
        old: &Upstream,
        r: &Renewal,
    ) -> Result<Upstream, RpcError> {
        let name = &self.plan.targets[ti].name;
        // a legacy HTTP+SSE session has no id of its own: its forgotten upstream session names it
        let key: Option<RenewKey> = match (&r.id, &old.s) {
            (Some(id), s) => Some((id.clone(), name.clone(), s.as_deref().map(Box::from))),
            (None, Some(s)) => Some((Arc::from(""), name.clone(), Some(Box::from(s.as_str())))),
            (None, None) => None,
        };
        loop {
            let known = r.id.as_deref().and_then(|id| self.ctx.mcp.renewed(id, name)).filter(|u| u.s != old.s);
            if let Some(up) = known {
                r.fresh.borrow_mut().push(up.clone());
                return Ok(up);
            }
            let lead = match key.as_ref().map(|k| self.ctx.mcp.renewals.join(k, 0)) {
                Some(Join::Wait(w)) => match w.await {
                    Some(Ok(up)) => {
                        r.fresh.borrow_mut().push(up.clone());
                        return Ok(up);
                    }
                    Some(Err(e)) => return Err(e),
                    // the request renewing went away before it had: look again, maybe renew
                    None => continue,
                },
                Some(Join::Lead(l)) => Some(l),
                None => None,
            };
            let renewed = self.renew_fresh(ti, h, old, r).await;
            if let Ok(up) = &renewed {
                r.fresh.borrow_mut().push(up.clone());
            }
            // after every shard took it in: a waiter's client may go to another shard next
            if let Some(l) = lead {
                l.land(&renewed);
            }
            return renewed;
        }
    }

    /// Initialize a new upstream session of the client's with target `ti` in place of `old` and
    /// tell every shard. If another shard's renewal of `old` is known by then, the new one is
    /// ended unused and the other one used.
    async fn renew_fresh(
        &self,
        ti: usize,
        h: &HttpTargetPlan,
        old: &Upstream,
        r: &Renewal,
    ) -> Result<Upstream, RpcError> {
        let name = &self.plan.targets[ti].name;
        let (_, up) = self.own_upstream(ti, h, &r.params, true).await?;
        eprintln!("mcp target {name}: upstream session expired, re-initialized for its client session");
        let Some(id) = &r.id else { return Ok(up) };
        let mine = Some(Rc::new(h.clone()));
        match self.ctx.mcp.renew(id, up.clone(), old.s.clone(), mine) {
            Took::Kept => {}
            Took::Beaten(winner) => {
                if let Some(s) = &up.s {
                    eprintln!("mcp target {name}: another shard renewed the same upstream session; ending ours");
                    http_client::delete(self.ctx, h, s, self.idle).await;
                }
                return Ok(winner);
            }
            // not expected (a shard renews a forgotten session once), but ended like any loser
            Took::Displaced(s, h) => end_later(self.ctx, s, h),
        }
        let (ack, acked) = flume::bounded(self.ctx.siblings.len());
        let tell = async {
            for (i, s) in self.ctx.others() {
                let msg = ShardMsg::Renewed { id: id.clone(), up: up.clone(), from: old.s.clone(), ack: ack.clone() };
                if s.send_async(msg).await.is_err() {
                    eprintln!("mcp: shard {i} stopped; it will renew on its own");
                }
            }
            drop(ack);
            while acked.recv_async().await.is_ok() {}
        };
        // a shard that does not answer in time (draining) renews on its own if it must
        let _ = monoio::time::timeout(RENEW_ACK, tell).await;
        // another shard that renewed the same session at once may have won meanwhile
        Ok(self.ctx.mcp.renewed(id, name).unwrap_or(up))
    }

    /// Send a request and wait for its result, ignoring notifications on the way.
    pub async fn call(&self, ti: usize, via: Via<'_>, method: &str, params: Option<&Value>) -> Result<Value, RpcError> {
        let id = json!(format!("rg-{}", self.ctx.mcp.next_id()));
        let mut f = self.start(ti, via, &id, method, params, None).await?;
        while let Some(m) = f.next(self).await? {
            match m {
                Message::Response { result, .. } => {
                    f.close(self).await;
                    return Ok(result);
                }
                Message::Error { error, .. } => {
                    f.close(self).await;
                    return Err(RpcError::from_value(&error));
                }
                _ => {}
            }
        }
        Err(RpcError::new(
            INTERNAL_ERROR,
            format!("target `{}` ended its answer without a response", self.plan.targets[ti].name),
        ))
    }

    /// Send a notification or a client's answer on the client's own upstream session with an
    /// HTTP target, or to its own stdio process (best effort). Shared sessions and processes
    /// never get them: their ids and tokens belong to the gateway.
    pub async fn post_message(&self, ti: usize, u: &Upstream, body: &[u8]) {
        match &self.plan.targets[ti].kind {
            // 2026-07-28 has nothing a client tells or answers a target outside its requests
            TargetKind::Http(_) if u.v == MODERN_VERSION => {}
            TargetKind::Http(h) => {
                let post = Post { session: u.s.as_deref(), version: Some(&u.v), body };
                if let Ok(reply) = http_client::post(self.ctx, h, &post, self.idle).await {
                    reply.finish(self.ctx, self.idle).await;
                }
            }
            TargetKind::Stdio(_) => {
                if let Ok(p) = self.stdio_proc(ti, u) {
                    p.send(body.to_vec());
                }
            }
            TargetKind::Sse(_) => {
                if let Ok(c) = self.sse_session(ti, u) {
                    c.send(self.ctx, body, self.idle).await;
                }
            }
            TargetKind::Demo => {}
        }
    }

    /// The session's own upstream session with HTTP+SSE target `ti`.
    pub fn sse_session(&self, ti: usize, u: &Upstream) -> Result<Arc<SessionSse>, RpcError> {
        u.s.as_deref().and_then(|k| self.ctx.mcp.sse_session(k)).ok_or_else(|| {
            let name = &self.plan.targets[ti].name;
            RpcError::new(
                INTERNAL_ERROR,
                format!("this session's upstream session with sse target `{name}` has ended; initialize a new session"),
            )
        })
    }

    /// The session's own process of stdio target `ti`.
    pub fn stdio_proc(&self, ti: usize, u: &Upstream) -> Result<Arc<SessionProc>, RpcError> {
        u.s.as_deref().and_then(|k| self.ctx.mcp.stdio_proc(k)).ok_or_else(|| {
            let name = &self.plan.targets[ti].name;
            RpcError::new(
                INTERNAL_ERROR,
                format!("this session's process of stdio target `{name}` has ended; initialize a new session"),
            )
        })
    }

    /// Initialize target `ti` for a client: its `initialize` result and its part of the sealed
    /// session. With `own`, HTTP targets get an upstream session of the client's own; otherwise
    /// the shard's shared one answers.
    pub async fn initialize(&self, ti: usize, params: &Value, own: bool) -> Result<(Value, Upstream), RpcError> {
        let t = &self.plan.targets[ti];
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let (result, session) = match &t.kind {
            TargetKind::Demo => (demo::handle("initialize", Some(params))?, None),
            TargetKind::Stdio(s) if own && t.per_session => match s.open_session(params, self.plan.session_ttl).await {
                Ok((result, key)) => (result, Some(key)),
                Err(e) => {
                    if e.code == SESSION_LIMIT {
                        self.ctx.registry.shards[self.ctx.index].count_error("mcp_session_limit");
                    }
                    return Err(e);
                }
            },
            TargetKind::Stdio(s) => (s.initialize().await?, None),
            TargetKind::Sse(h) if own && t.per_session => {
                let ttl = self.plan.session_ttl;
                match sse_client::open_session(self.ctx, &t.name, h, params, ttl, self.idle).await {
                    Ok((result, key)) => (result, Some(key)),
                    Err(e) => {
                        if e.code == SESSION_LIMIT {
                            self.ctx.registry.shards[self.ctx.index].count_error("mcp_session_limit");
                        }
                        return Err(e);
                    }
                }
            }
            TargetKind::Sse(h) => (sse_client::shared(self.ctx, &t.name, h, self.idle).await?.init(), None),
            TargetKind::Http(h) if own => return self.own_upstream(ti, h, params, false).await,
            TargetKind::Http(h) => (self.pooled_session(ti, h).await?.init.clone(), None),
        };
        let v = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(merge::negotiate(asked)).to_string();
        Ok((result, Upstream { n: t.name.to_string(), s: session, v }))
    }

    /// `initialize` on `h`: its result and the session id it gave. The error says whether the
    /// target refused it (400, 404 or 405, as a server without the method answers, or a
    /// JSON-RPC error) rather than failed (unreachable, unauthorized, broken).
    async fn http_initialize(
        &self,
        h: &HttpTargetPlan,
        params: &Value,
    ) -> Result<(Value, Option<String>), (RpcError, bool)> {
        let body = jsonrpc::request(&json!(0), "initialize", Some(params));
        let post = Post { session: None, version: None, body: &body };
        let refused = |e: &HttpError| matches!(e, HttpError::Status(400 | 404 | 405, _));
        let mut reply = match http_client::post(self.ctx, h, &post, self.idle).await {
            Ok(r) => r,
            Err(e) => return Err((upstream_error(&e), refused(&e))),
        };
        let session = reply.session.take();
        loop {
            match reply.next(self.ctx, self.idle).await.map_err(|e| (upstream_error(&e), false))? {
                Some(Message::Response { result, .. }) => {
                    InFlight::Http(Box::new(reply), json!(0)).close(self).await;
                    return Ok((result, session));
                }
                Some(Message::Error { error, .. }) => return Err((RpcError::from_value(&error), true)),
                Some(_) => {}
                None => {
                    return Err((RpcError::new(INTERNAL_ERROR, "target ended initialize without a response"), false))
                }
            }
        }
    }

    /// A new upstream session with `h` (initialize, then initialized when `notify`): its
    /// `initialize` result, its id (none from a stateless target) and the version it negotiated.
    async fn http_session(
        &self,
        h: &HttpTargetPlan,
        params: &Value,
        notify: bool,
    ) -> Result<(Value, Option<String>, String), (RpcError, bool)> {
        let (init, session) = self.http_initialize(h, params).await?;
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let version =
            init.get("protocolVersion").and_then(Value::as_str).unwrap_or(merge::negotiate(asked)).to_string();
        if notify {
            let note = jsonrpc::notification("notifications/initialized", None);
            let post = Post { session: session.as_deref(), version: Some(&version), body: &note };
            if let Ok(r) = http_client::post(self.ctx, h, &post, self.idle).await {
                r.finish(self.ctx, self.idle).await;
            }
        }
        Ok((init, session, version))
    }

    /// A client session's own way to HTTP target `ti` (initialized with the client's `params`):
    /// an upstream session of its own, or, with a target that speaks 2026-07-28 only, none (the
    /// session exists in the gateway alone). A target known to be modern that refuses
    /// `initialize` is such a target from then on; a legacy one that refuses it is probed again.
    async fn own_upstream(
        &self,
        ti: usize,
        h: &HttpTargetPlan,
        params: &Value,
        notify: bool,
    ) -> Result<(Value, Upstream), RpcError> {
        let t = &self.plan.targets[ti];
        let modern_only =
            |p: &Pooled| (p.init.clone(), Upstream { n: t.name.to_string(), s: None, v: MODERN_VERSION.into() });
        let known = match t.protocol {
            TargetProtocol::Legacy => None,
            _ => Some(self.pooled_session(ti, h).await?),
        };
        if let Some(p) = known.as_ref().filter(|p| p.era == Era::ModernOnly) {
            return Ok(modern_only(p));
        }
        let e = match self.http_session(h, params, notify).await {
            Ok((init, s, v)) => return Ok((init, Upstream { n: t.name.to_string(), s, v })),
            Err((e, refused)) if refused && t.protocol == TargetProtocol::Auto => e,
            Err((e, _)) => return Err(e),
        };
        let p = match known {
            Some(p) if p.era == Era::Modern => p,
            _ => {
                eprintln!("mcp target {}: refused initialize; probing its era again", t.name);
                self.ctx.mcp.set_pooled(&pool_key(h), None);
                self.pooled_session(ti, h).await?
            }
        };
        if !p.era.is_modern() {
            return Err(e);
        }
        let only = Rc::new(Pooled { era: Era::ModernOnly, ..(*p).clone() });
        self.ctx.mcp.set_pooled(&pool_key(h), Some(only.clone()));
        self.ctx.registry.count_era_probe(&t.name, Era::ModernOnly.label());
        Ok(modern_only(&only))
    }

    /// Whether HTTP target `ti` is known on this shard to speak 2026-07-28 (no request is sent:
    /// what its last probe, or its configuration, said).
    pub fn known_modern(&self, ti: usize) -> bool {
        let TargetKind::Http(h) = &self.plan.targets[ti].kind else { return false };
        self.ctx.mcp.pooled(&pool_key(h)).is_some_and(|p| p.era.is_modern())
    }

    /// This shard's way to `h` for stateless requests, set up on first use: its era (probed, or
    /// configured) and, for a legacy target, a shared upstream session.
    async fn pooled_session(&self, ti: usize, h: &HttpTargetPlan) -> Result<Rc<Pooled>, RpcError> {
        let key = pool_key(h);
        loop {
            if let Some(p) = self.ctx.mcp.pooled(&key) {
                return Ok(p);
            }
            // concurrent first requests set up one session, not one each (the others would leak)
            match self.ctx.mcp.pooled_setups.join(&key, 0) {
                Join::Lead(lead) => {
                    let set_up = self.set_up_pooled(ti, h, &key).await;
                    lead.land(&set_up);
                    return set_up;
                }
                Join::Wait(w) => {
                    if let Some(set_up) = w.await {
                        return set_up;
                    }
                }
            }
        }
    }

    async fn set_up_pooled(&self, ti: usize, h: &HttpTargetPlan, key: &str) -> Result<Rc<Pooled>, RpcError> {
        let t = &self.plan.targets[ti];
        let discovered = match t.protocol {
            TargetProtocol::Legacy => None,
            TargetProtocol::Auto => self.probe(ti, h).await?,
            TargetProtocol::Modern => Some(self.probe(ti, h).await?.ok_or_else(|| {
                let why = "did not answer server/discover as a 2026-07-28 server (it is configured `protocol: modern`)";
                RpcError::new(INTERNAL_ERROR, format!("target `{}` {why}", t.name))
            })?),
        };
        let p = match discovered {
            Some(d) => {
                let era = if t.protocol == TargetProtocol::Modern { Era::ModernOnly } else { Era::Modern };
                let init = era::init_from_discover(&d, &t.name);
                Pooled { era, session: String::new(), version: MODERN_VERSION.into(), init }
            }
            None => {
                let params = json!({
                    "protocolVersion": merge::negotiate(None),
                    "capabilities": {},
                    "clientInfo": {"name": "ringgate", "version": env!("CARGO_PKG_VERSION")},
                });
                let (init, session, version) = self.http_session(h, &params, true).await.map_err(|(e, _)| e)?;
                Pooled { era: Era::Legacy, session: session.unwrap_or_default(), version, init }
            }
        };
        let p = Rc::new(p);
        self.ctx.mcp.set_pooled(key, Some(p.clone()));
        Ok(p)
    }

    /// Ask target `ti` which era it speaks (`server/discover`, classified as the TypeScript SDK
    /// v2 client does): its discover result when it speaks 2026-07-28, `None` for legacy.
    async fn probe(&self, ti: usize, h: &HttpTargetPlan) -> Result<Option<Value>, RpcError> {
        let name = &self.plan.targets[ti].name;
        let id = json!(format!("rg-{}", self.ctx.mcp.next_id()));
        let body = era::probe_request(&id);
        let call = Call { method: "server/discover", name: None, headers: &[] };
        let idle = self.idle.min(PROBE_WAIT);
        let relay = Relay { idle, ..*self };
        let (verdict, result) = match relay.send(h, None, MODERN_VERSION, &call, &body).await {
            Ok(mut reply) => loop {
                match reply.next(self.ctx, idle).await {
                    Ok(Some(Message::Response { result, .. })) => {
                        InFlight::Http(Box::new(reply), id).close(self).await;
                        break (era::classify_result(&result), Some(result));
                    }
                    Ok(Some(Message::Error { error, .. })) => break (era::classify_rpc_error(&error), None),
                    Ok(Some(_)) => {}
                    Ok(None) => break (Verdict::Failed("no answer to server/discover".into()), None),
                    Err(e) => break (Verdict::Failed(e.to_string()), None),
                }
            },
            Err(HttpError::Status(status, text)) => (era::classify_status(status, &text), None),
            Err(e) => (Verdict::Failed(e.to_string()), None),
        };
        let label = match &verdict {
            Verdict::Modern => "modern",
            Verdict::Legacy => "legacy",
            Verdict::Failed(_) => "failed",
        };
        self.ctx.registry.count_era_probe(name, label);
        match verdict {
            Verdict::Modern => Ok(result),
            Verdict::Legacy => Ok(None),
            Verdict::Failed(why) => {
                Err(RpcError::new(INTERNAL_ERROR, format!("target `{name}`: its era is unknown: {why}")))
            }
        }
    }
}

/// How long an era probe may take.
const PROBE_WAIT: Duration = Duration::from_secs(30);

/// What a request tells a 2026-07-28 target in its headers, and the header lines it carries
/// anyway (the client's `Mcp-Param-*`).
pub struct Call<'a> {
    /// `Mcp-Method`.
    pub method: &'a str,
    /// `Mcp-Name`, for the methods that have one.
    pub name: Option<&'a str>,
    /// Header lines sent in either era.
    pub headers: &'a [u8],
}

/// What `Mcp-Name` carries for `method`: `params.name` or `params.uri`.
fn named<'p>(method: &str, params: Option<&'p Value>) -> Option<&'p str> {
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    params?.get(field)?.as_str()
}

fn pool_key(h: &HttpTargetPlan) -> String {
    h.session_key()
}
