//! Legacy HTTP+SSE targets (2024-11-05): one upstream session per target and shard shared by every client on that shard, or one per client session (`upstreamMode: perSession`); a session's GET stream is read by a task of its own that hands each answer to the request waiting for it.
//!
//! A client session's own upstream session is reached from any shard, like a per-session stdio
//! process: its message endpoint is a plain URL any shard can POST to, and its waiting requests
//! are behind locks (`Waiters`), so only the reader of its stream stays on the shard that
//! opened it. It is found by a key sealed into the client's session id, in a process-wide table.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ringgate_runtime::Signal;
use serde_json::{json, Value};

use super::holds::{Holder, Holds, Taken, MAX_SESSION_HOLDS};
use super::http_client::{self, Post, Reply};
use super::jsonrpc::{self, Message, RpcError, INTERNAL_ERROR};
use super::merge;
use super::plan::HttpTargetPlan;
use super::relay::upstream_error;
use super::waiters::Waiters;
use crate::proxy::shard::ShardCtx;

/// How many notifications may wait for the shard's hub before more are dropped.
const TAP_BACKLOG: usize = 256;
/// How long the target may take to accept the gateway's answer to its own request.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The stream may stay silent this long (servers that send no keep-alives are idle between calls).
const STREAM_IDLE: Duration = Duration::from_secs(24 * 3600);

/// One upstream HTTP+SSE session. Ids and progress tokens on it are the gateway's, so requests
/// of many clients can share it; what the target sends unprompted cannot be told apart by
/// client and is not relayed.
pub struct SseConn {
    name: Arc<str>,
    /// Where messages are POSTed: the target's address with the `endpoint` event's path.
    post_to: RefCell<Option<Rc<HttpTargetPlan>>>,
    /// Callers waiting for messages about their request, by the id it has on this session.
    pending: RefCell<HashMap<u64, flume::Sender<Message>>>,
    /// Requests forwarded for clients, by `<client session>\n<client's id>`, so that a client's
    /// `notifications/cancelled` finds the id its request has here.
    origins: RefCell<HashMap<String, u64>>,
    /// The target's `initialize` result, once the handshake is done.
    init: RefCell<Option<Value>>,
    /// Protocol version the target negotiated.
    version: RefCell<Option<String>>,
    /// The stream ended or a POST failed: the next request opens a new session.
    dead: Cell<bool>,
    /// Stops the stream's reader.
    stop: Signal,
    /// Fired when the handshake is over, either way.
    ready: Signal,
    /// Where its notifications go: the shard hub's stream, while a listen stream hears it.
    tap: RefCell<Option<flume::Sender<Message>>>,
    /// `resources/subscribe` holds by URI: the shard's hub and the client sessions whose
    /// subscriptions were forwarded through this shard.
    holds: RefCell<Holds>,
}

/// A request in flight on an HTTP+SSE target: its messages (progress, with the token set to
/// `upstream_id`, then the answer).
pub struct SseCall {
    /// Messages about this request.
    pub rx: flume::Receiver<Message>,
    /// The id the request has on the upstream session.
    pub upstream_id: u64,
    conn: Rc<SseConn>,
    origin: Option<String>,
}

impl Drop for SseCall {
    fn drop(&mut self) {
        self.conn.pending.borrow_mut().remove(&self.upstream_id);
        if let Some(o) = &self.origin {
            self.conn.origins.borrow_mut().remove(o);
        }
    }
}

impl SseCall {
    /// Tell the target the request is cancelled (best effort).
    pub async fn cancel(&self, ctx: &ShardCtx, reason: &str) {
        self.conn.cancelled(ctx, self.upstream_id, Some(reason)).await;
    }
}

/// This shard's session with the target at `t`, opened (GET, `endpoint`, `initialize`) on first
/// use and again after it failed.
pub async fn shared(
    ctx: &Rc<ShardCtx>,
    name: &Arc<str>,
    t: &HttpTargetPlan,
    idle: Duration,
) -> Result<Rc<SseConn>, RpcError> {
    let key = t.session_key();
    if let Some(c) = ctx.mcp.sse_conn(&key).filter(|c| !c.dead.get()) {
        // opened by an earlier request, or being opened by one still waiting for the handshake
        c.ready.fired().await;
        if c.init.borrow().is_some() && !c.dead.get() {
            return Ok(c);
        }
        return Err(c.down("is not reachable"));
    }
    let c = Rc::new(SseConn {
        name: name.clone(),
        post_to: RefCell::new(None),
        pending: RefCell::new(HashMap::new()),
        origins: RefCell::new(HashMap::new()),
        init: RefCell::new(None),
        version: RefCell::new(None),
        dead: Cell::new(false),
        stop: Signal::new(),
        ready: Signal::new(),
        tap: RefCell::new(None),
        holds: RefCell::new(Holds::default()),
    });
    ctx.mcp.set_sse_conn(&key, Some(c.clone()));
    let started = c.start(ctx, t, idle).await;
    if started.is_err() {
        c.close();
        if ctx.mcp.sse_conn(&key).is_some_and(|x| Rc::ptr_eq(&x, &c)) {
            ctx.mcp.set_sse_conn(&key, None);
        }
    }
    c.ready.fire();
    started.map(|()| c)
}

impl SseConn {
    /// The target's `initialize` result.
    pub fn init(&self) -> Value {
        self.init.borrow().clone().unwrap_or_else(|| json!({}))
    }

    /// Whether the session failed; the next request opens a new one.
    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// A new stream of the notifications the target sends unprompted (replacing an earlier
    /// one: the shard has one hub); it ends with the session.
    pub fn tap(&self) -> flume::Receiver<Message> {
        let (tx, rx) = flume::bounded(TAP_BACKLOG);
        if !self.dead.get() {
            *self.tap.borrow_mut() = Some(tx);
        }
        rx
    }

    /// Hold a subscription to `uri` for `who`: the first hold sends `resources/subscribe` (the
    /// target's answer, or an empty result when the URI was held already).
    pub async fn hold(
        self: &Rc<Self>,
        ctx: &ShardCtx,
        uri: &str,
        who: Holder<'_>,
        idle: Duration,
    ) -> Result<Value, RpcError> {
        let taken = self.holds.borrow_mut().take(uri, who);
        match taken {
            Taken::Held => return Ok(json!({})),
            Taken::Full => return Err(self.down(&format!("holds {MAX_SESSION_HOLDS} sessions' subscriptions already"))),
            Taken::First => {}
        }
        let r = self.request(ctx, "resources/subscribe", &json!({ "uri": uri }), idle).await;
        if r.is_err() {
            // not held: the next holder tries again
            self.holds.borrow_mut().give_up(uri, who);
        }
        r
    }

    /// Give up `who`'s hold on `uri`; the last one sends `resources/unsubscribe`.
    pub async fn release(self: &Rc<Self>, ctx: &ShardCtx, uri: &str, who: Holder<'_>, idle: Duration) {
        let last = self.holds.borrow_mut().give_up(uri, who);
        if last && !self.dead.get() {
            let _ = self.request(ctx, "resources/unsubscribe", &json!({ "uri": uri }), idle).await;
        }
    }

    /// A client session ended: its holds here are given up.
    pub async fn forget_session(self: &Rc<Self>, ctx: &ShardCtx, session: &str, idle: Duration) {
        let gone = self.holds.borrow_mut().forget(session);
        for uri in gone.iter().filter(|_| !self.dead.get()) {
            let _ = self.request(ctx, "resources/unsubscribe", &json!({ "uri": uri }), idle).await;
        }
    }

    /// Whether client session `session` holds any subscription here.
    pub fn holds_any(&self, session: &str) -> bool {
        self.holds.borrow().holds_any(session)
    }

    /// Whether client session `session` holds a subscription to `uri` here.
    pub fn held_by(&self, uri: &str, session: &str) -> bool {
        self.holds.borrow().held_by(uri, session)
    }

    /// Send a request and wait for its answer (the hub's `resources/subscribe`).
    pub async fn request(
        self: &Rc<Self>,
        ctx: &ShardCtx,
        method: &str,
        params: &Value,
        idle: Duration,
    ) -> Result<Value, RpcError> {
        let call = self.call(ctx, method, Some(params), idle, None).await?;
        loop {
            match monoio::time::timeout(idle, call.rx.recv_async()).await {
                Ok(Ok(Message::Response { result, .. })) => return Ok(result),
                Ok(Ok(Message::Error { error, .. })) => return Err(RpcError::from_value(&error)),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(self.down("lost its stream before answering")),
                Err(_) => return Err(self.down("did not answer in time")),
            }
        }
    }

    /// Send a request; `params._meta.progressToken` is replaced by the request's id so progress
    /// finds its way back on a session shared by many clients.
    pub async fn call(
        self: &Rc<Self>,
        ctx: &ShardCtx,
        method: &str,
        params: Option<&Value>,
        idle: Duration,
        origin: Option<String>,
    ) -> Result<SseCall, RpcError> {
        if self.dead.get() {
            return Err(self.down("lost its session"));
        }
        let id = ctx.mcp.next_id();
        let mut params = params.cloned();
        if let Some(meta) = params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
            if meta.contains_key("progressToken") {
                meta.insert("progressToken".into(), json!(id));
            }
        }
        let (tx, rx) = flume::unbounded();
        self.pending.borrow_mut().insert(id, tx);
        // made before the POST, so that a failed POST leaves nothing pending
        if let Some(o) = &origin {
            self.origins.borrow_mut().insert(o.clone(), id);
        }
        let call = SseCall { rx, upstream_id: id, conn: self.clone(), origin };
        self.post(ctx, &jsonrpc::request(&json!(id), method, params.as_ref()), idle).await?;
        Ok(call)
    }

    fn down(&self, what: &str) -> RpcError {
        RpcError::new(INTERNAL_ERROR, format!("sse target `{}` {what}", self.name))
    }

    /// Cancel the request a client knows as `origin`, if it waits on this session.
    pub async fn cancel(&self, ctx: &ShardCtx, origin: &str, reason: Option<&str>) {
        let id = self.origins.borrow().get(origin).copied();
        if let Some(id) = id {
            self.cancelled(ctx, id, reason).await;
        }
    }

    async fn cancelled(&self, ctx: &ShardCtx, id: u64, reason: Option<&str>) {
        let mut p = json!({"requestId": id});
        if let Some(r) = reason {
            p["reason"] = json!(r);
        }
        let _ = self.post(ctx, &jsonrpc::notification("notifications/cancelled", Some(&p)), ANSWER_WAIT).await;
    }

    /// Mark the session unusable and stop its reader.
    fn close(&self) {
        self.dead.set(true);
        self.stop.fire();
        // the hub's stream ends: its listeners subscribe again on the next session
        self.tap.borrow_mut().take();
    }

    /// Open the stream, learn the endpoint, start the reader and do the handshake.
    async fn start(self: &Rc<Self>, ctx: &Rc<ShardCtx>, t: &HttpTargetPlan, idle: Duration) -> Result<(), RpcError> {
        let mut reply = http_client::get(ctx, t, None, None, idle).await.map_err(|e| upstream_error(&e))?;
        if !reply.is_event_stream() {
            return Err(self.down("answered its GET without an event stream"));
        }
        let endpoint = loop {
            match reply.next_event(ctx, idle).await {
                Ok(Some(ev)) if ev.event.as_deref() == Some("endpoint") => break ev.data,
                Ok(Some(_)) => {}
                Ok(None) => return Err(self.down("ended its stream before naming its endpoint")),
                Err(e) => return Err(upstream_error(&e)),
            }
        };
        let path = resolve_endpoint(&t.path, &t.authority, endpoint.trim()).map_err(|e| self.down(&e))?;
        let to = HttpTargetPlan {
            authority: t.authority.clone(),
            path,
            addrs: t.addrs.clone(),
            credential: t.credential.clone(),
            tls: t.tls.clone(),
        };
        *self.post_to.borrow_mut() = Some(Rc::new(to));
        let (me, cx) = (self.clone(), ctx.clone());
        monoio::spawn(async move { me.read(&cx, reply).await });

        let params = json!({
            "protocolVersion": merge::negotiate(None),
            "capabilities": {},
            "clientInfo": {"name": "ringgate", "version": env!("CARGO_PKG_VERSION")},
        });
        let call = self.call(ctx, "initialize", Some(&params), idle, None).await?;
        let init = initialize_answer(&call.rx, idle, |what| self.down(what)).await?;
        let version = init.get("protocolVersion").and_then(Value::as_str).unwrap_or("2024-11-05");
        *self.version.borrow_mut() = Some(version.to_string());
        *self.init.borrow_mut() = Some(init);
        self.post(ctx, &jsonrpc::notification("notifications/initialized", None), idle).await
    }

    /// POST one message to the endpoint; the target answers 202 and sends any answer on the stream.
    async fn post(&self, ctx: &ShardCtx, body: &[u8], idle: Duration) -> Result<(), RpcError> {
        let Some(to) = self.post_to.borrow().clone() else { return Err(self.down("has no endpoint")) };
        let version = self.version.borrow().clone();
        let p = Post { session: None, version: version.as_deref(), body };
        match http_client::post(ctx, &to, &p, idle).await {
            Ok(reply) => {
                reply.finish(ctx, idle).await;
                Ok(())
            }
            Err(e) => {
                // its session is gone (e.g. the target restarted): start over on the next request
                self.close();
                Err(upstream_error(&e))
            }
        }
    }

    /// Read the stream until it ends or the session is closed, handing each message to the
    /// request it is about; then fail whatever still waits.
    async fn read(self: Rc<Self>, ctx: &ShardCtx, mut reply: Reply) {
        loop {
            let ev = monoio::select! {
                ev = reply.next_event(ctx, STREAM_IDLE) => ev,
                _ = self.stop.fired() => break,
            };
            let ev = match ev {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    eprintln!("mcp target {}: stream ended", self.name);
                    break;
                }
                Err(e) => {
                    eprintln!("mcp target {}: stream failed: {e}", self.name);
                    break;
                }
            };
            if ev.data.is_empty() || ev.event.as_deref().is_some_and(|e| e != "message") {
                continue;
            }
            match jsonrpc::parse(ev.data.as_bytes()) {
                Ok(m) => self.dispatch(ctx, m).await,
                Err(e) => eprintln!("mcp target {}: ignoring an event that is not JSON-RPC: {}", self.name, e.message),
            }
        }
        self.close();
        let waiting: Vec<_> = self.pending.borrow_mut().drain().collect();
        for (id, tx) in waiting {
            let _ = tx.send(Message::Error {
                id: json!(id),
                error: self.down("lost its stream before answering").to_value(),
            });
        }
    }

    async fn dispatch(&self, ctx: &ShardCtx, msg: Message) {
        super::catalog::observe(ctx, &self.name, &msg);
        let about = match &msg {
            Message::Response { id, .. } | Message::Error { id, .. } => id.as_u64(),
            Message::Notification { method, params } if method == "notifications/progress" => {
                params.as_ref().and_then(|p| p.get("progressToken")).and_then(Value::as_u64)
            }
            Message::Notification { .. } => {
                let tap = self.tap.borrow().clone();
                if let Some(tx) = tap {
                    // a hub that cannot keep up loses it rather than stall the stream
                    if let Err(flume::TrySendError::Disconnected(_)) = tx.try_send(msg) {
                        self.tap.borrow_mut().take();
                    }
                }
                return;
            }
            Message::Request { id, method, .. } => {
                let answer = if method == "ping" {
                    jsonrpc::response(id, &json!({}))
                } else {
                    // a session shared by many clients cannot know whom to ask
                    let e = RpcError::new(
                        jsonrpc::METHOD_NOT_FOUND,
                        format!("`{method}` is not relayed to clients by a shared sse target"),
                    );
                    jsonrpc::error_response(Some(id), &e)
                };
                let _ = self.post(ctx, &answer, ANSWER_WAIT).await;
                None
            }
        };
        let tx = about.and_then(|id| self.pending.borrow().get(&id).cloned());
        if let Some(tx) = tx {
            let _ = tx.send(msg);
        }
    }
}

/// Prefix of the keys of client sessions' own upstream sessions.
pub const KEY_PREFIX: &str = "sse~";

/// A client session's own upstream session with an HTTP+SSE target.
pub struct SessionSse {
    name: Arc<str>,
    key: OnceLock<String>,
    /// The target's address with the `endpoint` event's path.
    post_to: HttpTargetPlan,
    version: OnceLock<String>,
    waiters: Waiters,
    dead: AtomicBool,
    /// Dropped to stop the stream's reader.
    stop: Mutex<Option<flume::Sender<()>>>,
    ttl: Duration,
    /// Last use by its session, in ms since `EPOCH`.
    last_used: AtomicU64,
    /// Its place under the target's `maxSessions`, given up when its stream ends.
    slot: Mutex<Option<Slot>>,
}

/// A request in flight on a client session's own upstream session.
pub struct SessionSseCall {
    /// Messages about this request.
    pub rx: flume::Receiver<Message>,
    /// The id the request has on the upstream session.
    pub upstream_id: u64,
    conn: Arc<SessionSse>,
}

impl Drop for SessionSseCall {
    fn drop(&mut self) {
        self.conn.waiters.remove(self.upstream_id);
    }
}

impl SessionSseCall {
    /// Tell the target the request is cancelled (best effort).
    pub async fn cancel(&self, ctx: &ShardCtx, reason: &str) {
        self.conn.cancelled(ctx, self.upstream_id, Some(reason)).await;
    }
}

static SESSIONS: LazyLock<Mutex<HashMap<String, Arc<SessionSse>>>> = LazyLock::new(Default::default);

/// `maxSessions` of each target in `perSession` mode and its client sessions' own upstream
/// sessions open now, by target name and endpoint: process-wide and kept across reloads, like
/// the sessions they count.
static CAPS: LazyLock<Mutex<HashMap<String, Arc<Cap>>>> = LazyLock::new(Default::default);

struct Cap {
    max: AtomicUsize,
    open: AtomicUsize,
}

/// One upstream session counted against its target's `maxSessions`; released when dropped.
struct Slot(Arc<Cap>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn cap_key(name: &str, t: &HttpTargetPlan) -> String {
    format!("{name} {}", t.session_key())
}

/// Set the cap on client sessions' own upstream sessions with target `name` at `t` (config
/// compile; a reload lowering it ends none).
pub fn set_max_sessions(name: &str, t: &HttpTargetPlan, max: usize) {
    if let Ok(mut m) = CAPS.lock() {
        let c = m
            .entry(cap_key(name, t))
            .or_insert_with(|| Arc::new(Cap { max: AtomicUsize::new(max), open: AtomicUsize::new(0) }));
        c.max.store(max, Ordering::Relaxed);
    }
}

/// Count one more upstream session with target `name` at `t`, unless it has `maxSessions` open.
fn reserve(name: &str, t: &HttpTargetPlan) -> Result<Option<Slot>, RpcError> {
    let Some(cap) = CAPS.lock().ok().and_then(|m| m.get(&cap_key(name, t)).cloned()) else { return Ok(None) };
    let max = cap.max.load(Ordering::Relaxed);
    if cap.open.fetch_add(1, Ordering::AcqRel) >= max {
        cap.open.fetch_sub(1, Ordering::AcqRel);
        return Err(RpcError::new(
            super::stdio::SESSION_LIMIT,
            format!(
                "sse target `{name}` has {max} per-session upstream sessions open already (its maxSessions); end idle sessions or try later"
            ),
        ));
    }
    Ok(Some(Slot(cap)))
}
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Open an upstream session with `t` for one client session, initialized with the client's own
/// `initialize` params (so the target sees its capabilities): the target's result and the key
/// the session finds it by. Its stream is read on this shard.
pub async fn open_session(
    ctx: &Rc<ShardCtx>,
    name: &Arc<str>,
    t: &HttpTargetPlan,
    params: &Value,
    ttl: Duration,
    idle: Duration,
) -> Result<(Value, String), RpcError> {
    let down = |what: &str| RpcError::new(INTERNAL_ERROR, format!("sse target `{name}` {what}"));
    // held by the session from here on, so a failed open counts nothing
    let slot = reserve(name, t)?;
    let mut reply = http_client::get(ctx, t, None, None, idle).await.map_err(|e| upstream_error(&e))?;
    if !reply.is_event_stream() {
        return Err(down("answered its GET without an event stream"));
    }
    let endpoint = loop {
        match reply.next_event(ctx, idle).await {
            Ok(Some(ev)) if ev.event.as_deref() == Some("endpoint") => break ev.data,
            Ok(Some(_)) => {}
            Ok(None) => return Err(down("ended its stream before naming its endpoint")),
            Err(e) => return Err(upstream_error(&e)),
        }
    };
    let path = resolve_endpoint(&t.path, &t.authority, endpoint.trim()).map_err(|e| down(&e))?;
    let (stop_tx, stop_rx) = flume::bounded::<()>(1);
    let conn = Arc::new(SessionSse {
        name: name.clone(),
        key: OnceLock::new(),
        post_to: HttpTargetPlan {
            authority: t.authority.clone(),
            path,
            addrs: t.addrs.clone(),
            credential: t.credential.clone(),
            tls: t.tls.clone(),
        },
        version: OnceLock::new(),
        waiters: Waiters::new(true),
        dead: AtomicBool::new(false),
        stop: Mutex::new(Some(stop_tx)),
        ttl,
        last_used: AtomicU64::new(now_ms()),
        slot: Mutex::new(slot),
    });
    let (me, cx) = (conn.clone(), ctx.clone());
    monoio::spawn(async move { me.read(&cx, reply, stop_rx).await });
    let init = json!({
        "protocolVersion": params.get("protocolVersion").cloned().unwrap_or_else(|| json!(merge::negotiate(None))),
        "capabilities": params.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "clientInfo": params.get("clientInfo").cloned()
            .unwrap_or_else(|| json!({"name": "ringgate", "version": env!("CARGO_PKG_VERSION")})),
    });
    let started = conn.handshake(ctx, &init, idle).await;
    let result = match started {
        Ok(r) => r,
        Err(e) => {
            conn.end();
            return Err(e);
        }
    };
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| down(&format!("cannot make a session key: {e}")))?;
    let key = format!("{KEY_PREFIX}{}", crate::digest::hex(&b));
    let _ = conn.key.set(key.clone());
    if let Ok(mut t) = SESSIONS.lock() {
        t.insert(key.clone(), conn.clone());
    }
    super::stdio::ensure_reaper();
    Ok((result, key))
}

/// The client session's own upstream session under `key`, unless it ended.
pub fn session_sse(key: &str) -> Option<Arc<SessionSse>> {
    SESSIONS.lock().ok()?.get(key).filter(|c| c.is_live()).cloned()
}

/// End the upstream session under `key` (its client session ended or initialized again).
pub fn end_session_sse(key: &str) {
    let c = SESSIONS.lock().ok().and_then(|mut t| t.remove(key));
    if let Some(c) = c {
        c.end();
    }
}

/// End the upstream sessions whose client session went idle, or whose stream ended (called by
/// the reaper thread).
pub fn expire_idle() {
    let now = now_ms();
    let mut gone = Vec::new();
    if let Ok(mut t) = SESSIONS.lock() {
        t.retain(|_, c| {
            let idle = now.saturating_sub(c.last_used.load(Ordering::Relaxed));
            let keep = c.is_live() && u128::from(idle) < c.ttl.as_millis();
            if !keep {
                gone.push(c.clone());
            }
            keep
        });
    }
    for c in gone {
        c.end();
    }
}

impl SessionSse {
    /// Whether it can still serve.
    pub fn is_live(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }

    /// Note that its client session was used, which postpones its idle end.
    pub fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// Stop its reader; the reader fails what still waits.
    fn end(&self) {
        self.dead.store(true, Ordering::Release);
        if let Ok(mut s) = self.stop.lock() {
            s.take();
        }
    }

    fn down(&self, what: &str) -> RpcError {
        RpcError::new(INTERNAL_ERROR, format!("sse target `{}` {what}", self.name))
    }

    async fn handshake(self: &Arc<Self>, ctx: &ShardCtx, init: &Value, idle: Duration) -> Result<Value, RpcError> {
        let call = self.start(ctx, "initialize", Some(init), idle, None).await?;
        let result = initialize_answer(&call.rx, idle, |what| self.down(what)).await?;
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or("2024-11-05");
        let _ = self.version.set(version.to_string());
        self.post(ctx, &jsonrpc::notification("notifications/initialized", None), idle).await?;
        Ok(result)
    }

    /// Send a request forwarded for the client (which gets what the target asks and tells while
    /// it runs) or, without `origin`, one of the gateway's own; progress tokens become its id.
    pub async fn call(
        self: &Arc<Self>,
        ctx: &ShardCtx,
        method: &str,
        params: Option<&Value>,
        idle: Duration,
        origin: Option<String>,
    ) -> Result<SessionSseCall, RpcError> {
        self.touch();
        self.start(ctx, method, params, idle, origin).await
    }

    async fn start(
        self: &Arc<Self>,
        ctx: &ShardCtx,
        method: &str,
        params: Option<&Value>,
        idle: Duration,
        origin: Option<String>,
    ) -> Result<SessionSseCall, RpcError> {
        if !self.is_live() {
            return Err(self.down("lost this session's upstream session; initialize a new session"));
        }
        let (tx, rx) = flume::unbounded();
        let id = self.waiters.add(tx, origin.is_some(), origin).ok_or_else(|| self.down("is unusable"))?;
        // made before the POST, so that a failed POST leaves nothing waiting
        let call = SessionSseCall { rx, upstream_id: id, conn: self.clone() };
        let mut params = params.cloned();
        if let Some(meta) = params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
            if meta.contains_key("progressToken") {
                meta.insert("progressToken".into(), json!(id));
            }
        }
        self.post(ctx, &jsonrpc::request(&json!(id), method, params.as_ref()), idle).await?;
        Ok(call)
    }

    /// POST one message from the client (a notification, or its answer to the target's request).
    pub async fn send(&self, ctx: &ShardCtx, body: &[u8], idle: Duration) {
        self.touch();
        let _ = self.post(ctx, body, idle).await;
    }

    /// Cancel the request the client knows as `origin`; the target will not answer it, so its
    /// client's POST is ended with an error the client ignores.
    pub async fn cancel(&self, ctx: &ShardCtx, origin: &str, reason: Option<&str>) {
        if let Some((id, tx)) = self.waiters.find(origin) {
            self.cancelled(ctx, id, reason).await;
            let e = RpcError::new(jsonrpc::REQUEST_CANCELLED, "request cancelled by the client");
            let _ = tx.send(Message::Error { id: json!(id), error: e.to_value() });
        }
    }

    async fn cancelled(&self, ctx: &ShardCtx, id: u64, reason: Option<&str>) {
        let mut p = json!({"requestId": id});
        if let Some(r) = reason {
            p["reason"] = json!(r);
        }
        let _ = self.post(ctx, &jsonrpc::notification("notifications/cancelled", Some(&p)), ANSWER_WAIT).await;
    }

    /// The session's GET stream: what the target sends while no request of the client waits.
    pub fn listen(&self) -> flume::Receiver<Message> {
        let rx = self.waiters.listen();
        if !self.is_live() {
            self.waiters.close();
        }
        rx
    }

    async fn post(&self, ctx: &ShardCtx, body: &[u8], idle: Duration) -> Result<(), RpcError> {
        let p = Post { session: None, version: self.version.get().map(String::as_str), body };
        match http_client::post(ctx, &self.post_to, &p, idle).await {
            Ok(reply) => {
                reply.finish(ctx, idle).await;
                Ok(())
            }
            Err(e) => Err(upstream_error(&e)),
        }
    }

    /// Read the stream until it ends or the session is ended, handing each message to the
    /// request it is about or to the client; then fail whatever still waits.
    async fn read(self: Arc<Self>, ctx: &ShardCtx, mut reply: Reply, stop: flume::Receiver<()>) {
        loop {
            let ev = monoio::select! {
                ev = reply.next_event(ctx, STREAM_IDLE) => ev,
                _ = stop.recv_async() => break,
            };
            let ev = match ev {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("mcp target {}: session stream failed: {e}", self.name);
                    break;
                }
            };
            if ev.data.is_empty() || ev.event.as_deref().is_some_and(|e| e != "message") {
                continue;
            }
            let msg = match jsonrpc::parse(ev.data.as_bytes()) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("mcp target {}: ignoring an event that is not JSON-RPC: {}", self.name, e.message);
                    continue;
                }
            };
            super::catalog::observe(ctx, &self.name, &msg);
            match msg {
                Message::Response { ref id, .. } | Message::Error { ref id, .. } => {
                    if let Some(n) = id.as_u64() {
                        self.waiters.answer(n, msg);
                    }
                }
                Message::Notification { ref method, ref params } if method == "notifications/progress" => {
                    if let Some(n) = params.as_ref().and_then(|p| p.get("progressToken")).and_then(Value::as_u64) {
                        self.waiters.about(n, msg);
                    }
                }
                msg => {
                    // what nobody can take: a request is answered here, a notification dropped
                    if let Some(Message::Request { id, method, .. }) = self.waiters.relay(msg) {
                        let answer = if method == "ping" {
                            jsonrpc::response(&id, &json!({}))
                        } else {
                            let e = RpcError::new(
                                jsonrpc::METHOD_NOT_FOUND,
                                format!("`{method}` has no client stream open to relay it to"),
                            );
                            jsonrpc::error_response(Some(&id), &e)
                        };
                        let _ = self.post(ctx, &answer, ANSWER_WAIT).await;
                    }
                }
            }
        }
        self.dead.store(true, Ordering::Release);
        if let Ok(mut s) = self.slot.lock() {
            s.take();
        }
        eprintln!("mcp target {}: session stream ended", self.name);
        if let Some(key) = self.key.get() {
            if let Ok(mut t) = SESSIONS.lock() {
                t.remove(key);
            }
        }
        for (id, tx) in self.waiters.close() {
            let _ = tx.send(Message::Error {
                id: json!(id),
                error: self.down("lost its stream before answering").to_value(),
            });
        }
    }
}

/// The path (with query) to POST to, from an `endpoint` event's data: an absolute path, a path
/// relative to the stream's, or an absolute URL on the same host (the target's addresses are the
/// only ones known).
pub fn resolve_endpoint(stream_path: &str, authority: &str, data: &str) -> Result<String, String> {
    if data.is_empty() || data.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("named an invalid endpoint {data:?}"));
    }
    if let Some(rest) = data.strip_prefix("http://").or_else(|| data.strip_prefix("https://")) {
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !host.eq_ignore_ascii_case(authority) {
            return Err(format!("named an endpoint on another host: {data}"));
        }
        return Ok(if path.is_empty() { "/".into() } else { path.into() });
    }
    if data.starts_with('/') {
        return Ok(data.into());
    }
    let dir = stream_path.split('?').next().unwrap_or("/");
    let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
    Ok(format!("{}{data}", if dir.is_empty() { "/" } else { dir }))
}

/// The target's answer to `initialize` from the stream that carries it; what else arrives
/// meanwhile is skipped. `down` words the failure with the target's name.
async fn initialize_answer(
    rx: &flume::Receiver<Message>,
    idle: Duration,
    down: impl Fn(&str) -> RpcError,
) -> Result<Value, RpcError> {
    loop {
        match monoio::time::timeout(idle, rx.recv_async()).await {
            Ok(Ok(Message::Response { result, .. })) => return Ok(result),
            Ok(Ok(Message::Error { error, .. })) => return Err(RpcError::from_value(&error)),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(down("ended its stream during initialize")),
            Err(_) => return Err(down("did not answer initialize in time")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_against_the_stream() {
        let r = |data: &str| resolve_endpoint("/sse", "127.0.0.1:3001", data);
        // server-everything and the Python SDK
        assert_eq!(r("/message?sessionId=abc").unwrap(), "/message?sessionId=abc");
        assert_eq!(r("/messages/?session_id=0f").unwrap(), "/messages/?session_id=0f");
        assert_eq!(r("http://127.0.0.1:3001/m?s=1").unwrap(), "/m?s=1");
        assert_eq!(r("messages?s=1").unwrap(), "/messages?s=1");
        assert_eq!(resolve_endpoint("/a/sse", "h:1", "m?s=1").unwrap(), "/a/m?s=1");
        assert!(r("http://elsewhere:3001/m").is_err());
        assert!(r("").is_err());
        assert!(r("/m?s=1\r\nx: y").is_err());
    }
}
