//! Stdio targets: child processes whose pipes one I/O thread serves for all (`stdio_io`); a target's shared process (restarted with backoff) and the per-session processes of stateful clients (started at `initialize`, restarted with backoff after a crash, ended with the session, capped).
//!
//! Where a session's own process lives: in a process-wide table, under a random key sealed into
//! the session id as the target's upstream session. Its I/O runs on the I/O thread, behind
//! locks held for a queue operation or a non-blocking write, so any shard can talk to it
//! directly: a request landing on another shard than the `initialize` needs no home shard and no
//! mailbox hop (the legacy `/sse` transport's way), and a shard that drains takes no process
//! with it. Shards cache the handle (`ShardSessions::stdio_proc`), so
//! the table's lock is taken when a session starts or ends, the first time a shard serves it,
//! and by the idle reaper, not on each request.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::{json, Value};

use super::holds::{Holder, Holds, Taken, MAX_SESSION_HOLDS};
use super::jsonrpc::{self, Message, RpcError, INTERNAL_ERROR, REQUEST_CANCELLED};
use super::stdio_io::{self, kill_group, Events, Input};
use super::waiters::Waiters;
use crate::config::mcp::StdioTarget;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The version the gateway offers when it initializes a shared stdio server.
const INIT_VERSION: &str = "2025-11-25";
/// How long an ended session's process may take to exit after SIGTERM before its group is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How often per-session processes are checked for idleness and death.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// JSON-RPC error code of an `initialize` refused because the target runs `maxSessions` processes.
pub const SESSION_LIMIT: i64 = -32000;
/// Prefix of the keys of per-session processes (a session's upstream session id for the target).
pub const KEY_PREFIX: &str = "stdio~";
/// A per-session process that ran this long before it crashed was healthy: its crash count starts over.
const HEALTHY: Duration = Duration::from_secs(30);
/// Crashes in a row (none after a healthy run) after which a session's process is not restarted.
const MAX_CRASHES: u32 = 3;
/// How long a restarted process may take to answer `initialize`, and then to answer the
/// requests replaying its session's state.
const RESTART_HANDSHAKE: Duration = Duration::from_secs(10);
/// Subscribed URIs a session's process remembers to replay after a restart; more are forwarded
/// but not replayed (a client subscribing to thousands would make every restart a storm).
const MAX_REMEMBERED_URIS: usize = 256;
/// Bytes of URI text a session's process remembers at most (with `MAX_REMEMBERED_URIS`, what
/// bounds its memory of subscriptions).
const MAX_REMEMBERED_URI_BYTES: usize = 64 * 1024;
/// The longest `logging/setLevel` level remembered (the spec's longest is `emergency`).
const MAX_LEVEL_LEN: usize = 32;

/// A stdio target: its shared process (started on first use) and the count of its per-session ones.
pub struct StdioServer {
    name: Arc<str>,
    cfg: StdioTarget,
    /// `maxSessions`, set by the latest configuration (which keeps this server, and the count of
    /// its processes, while the command is unchanged).
    max_sessions: AtomicUsize,
    /// Per-session processes running now.
    live: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: Option<Arc<Running>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// A started process. Dropping the last handle kills its process group.
struct Running {
    pid: u32,
    stdin: Arc<Input>,
    shared: Arc<Shared>,
    name: Arc<str>,
}

/// What the reader thread and callers share.
struct Shared {
    /// Requests waiting for messages about them; a session's own process relays what it asks
    /// and tells to its client, a shared one refuses it (it cannot know whom to ask).
    waiters: Waiters,
    /// The child's `initialize` result as JSON text (a tree of it would cost a session's idle
    /// process kilobytes: every JSON object is a B-tree node), or why the handshake failed.
    init: OnceLock<Result<Box<str>, String>>,
    /// Dropped (disconnected) when `init` is set, waking every waiter.
    /// Taken once the handshake is over, so that an idle process keeps no channel.
    ready: Mutex<Option<flume::Receiver<()>>>,
    alive: AtomicBool,
    /// Where a shared process's notifications go: one receiver per shard hub listening to it.
    taps: Mutex<Vec<flume::Sender<Message>>>,
    /// `resources/subscribe` holds by URI (shards' hubs and client sessions, over every shard):
    /// the process hears of a URI once, and of its end when nobody holds it any more.
    subs: Mutex<Holds>,
    /// The session whose process this is, once its handshake is done: told when it crashes.
    owner: Mutex<Owner>,
}

/// Who is told when a process exits.
enum Owner {
    /// Nobody (yet).
    None,
    /// A session, which restarts it.
    Session(Weak<SessionProc>),
    /// It exited before a session took it.
    Exited,
}

impl Shared {
    /// Wait until the handshake is over, either way.
    async fn handshake(&self) {
        let rx = self.ready.lock().ok().and_then(|r| r.clone());
        if let Some(rx) = rx {
            let _ = rx.recv_async().await;
        }
    }

    /// The handshake is over: wake whoever waits (`ready` is the sender) and drop the channel.
    fn handshake_over(&self, ready: &mut Option<flume::Sender<()>>) {
        *ready = None;
        if let Ok(mut r) = self.ready.lock() {
            r.take();
        }
    }

    /// The `initialize` result, once the handshake succeeded.
    fn init_result(&self) -> Option<Value> {
        let raw = self.init.get()?.as_ref().ok()?;
        serde_json::from_str(raw).ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // once the reader has reaped the child its pid may be reused: only signal a live one
        if self.shared.alive.load(Ordering::Acquire) {
            kill_group(self.pid, libc::SIGKILL);
        }
    }
}

impl Shared {
    /// Hand a notification to every hub listening; a hub that is gone or cannot keep up loses it
    /// (the reader never waits for a shard).
    fn tap(&self, msg: Message) {
        if let Ok(mut taps) = self.taps.lock() {
            taps.retain(|t| !matches!(t.try_send(msg.clone()), Err(flume::TrySendError::Disconnected(_))));
        }
    }
}

/// How many notifications may wait for a shard's hub before more are dropped.
const TAP_BACKLOG: usize = 256;

/// A stdio target's shared process as a source of notifications for a shard's hub.
#[derive(Clone)]
pub struct SharedProc(Arc<Running>);

impl SharedProc {
    /// Identifies the process (a restarted target is another source).
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// A new stream of the notifications the process sends unprompted; it ends when the process does.
    pub fn tap(&self) -> flume::Receiver<Message> {
        let (tx, rx) = flume::bounded(TAP_BACKLOG);
        if let Ok(mut t) = self.0.shared.taps.lock() {
            if self.0.shared.alive.load(Ordering::Acquire) {
                t.push(tx);
            }
        }
        rx
    }

    /// Hold a subscription to `uri` for `who`; the first hold sends `resources/subscribe` and
    /// returns the call to wait on.
    pub fn hold(&self, uri: &str, who: Holder<'_>) -> Option<Result<StdioCall, RpcError>> {
        let taken = self.0.shared.subs.lock().ok().map(|mut s| s.take(uri, who));
        match taken? {
            Taken::First => Some(self.0.call("resources/subscribe", Some(&json!({ "uri": uri })), false, None)),
            Taken::Held => None,
            Taken::Full => Some(Err(RpcError::new(
                INTERNAL_ERROR,
                format!("stdio target `{}` holds {MAX_SESSION_HOLDS} sessions' subscriptions already", self.0.name),
            ))),
        }
    }

    /// Give up `who`'s hold on `uri`; the last one sends `resources/unsubscribe` (whose answer
    /// nobody waits for).
    pub fn release(&self, uri: &str, who: Holder<'_>) {
        let last = self.0.shared.subs.lock().ok().is_some_and(|mut s| s.give_up(uri, who));
        if last {
            self.0.unsubscribe(uri);
        }
    }

    /// Whether client session `session` holds a subscription to `uri` here.
    pub fn held_by(&self, uri: &str, session: &str) -> bool {
        self.0.shared.subs.lock().is_ok_and(|s| s.held_by(uri, session))
    }
}

/// A request in flight on a stdio process: its messages (progress notifications, and on a
/// session's own process what the server asks or tells meanwhile, then the response with the
/// caller's id restored by the caller).
pub struct StdioCall {
    /// Messages about this request.
    pub rx: flume::Receiver<Message>,
    /// The id the request got on the child.
    pub upstream_id: u64,
    server: Arc<Running>,
}

impl Drop for StdioCall {
    fn drop(&mut self) {
        self.server.shared.waiters.remove(self.upstream_id);
    }
}

impl StdioCall {
    /// The result the process answers with, waiting for it at most `idle`.
    pub async fn answer(&self, idle: Duration) -> Result<Value, RpcError> {
        match monoio::time::timeout(idle, self.rx.recv_async()).await {
            Ok(Ok(Message::Response { result, .. })) => Ok(result),
            Ok(Ok(Message::Error { error, .. })) => Err(RpcError::from_value(&error)),
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                Err(RpcError::new(INTERNAL_ERROR, format!("stdio target `{}` did not answer", self.server.name)))
            }
        }
    }

    /// Tell the process the request is cancelled (the client left, or cancelled it).
    pub fn cancel(&self, reason: &str) {
        self.server.cancelled(self.upstream_id, Some(reason));
    }
}

impl StdioServer {
    /// A server for `cfg`; nothing runs yet. Client sessions may get processes of their own
    /// (`open_session`), at most `max_sessions` at once.
    pub fn new(name: &str, cfg: StdioTarget, max_sessions: usize) -> Self {
        StdioServer {
            name: name.into(),
            cfg,
            max_sessions: AtomicUsize::new(max_sessions),
            live: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// Change the cap on per-session processes (a reload); running ones are not ended.
    pub fn set_max_sessions(&self, max: usize) {
        self.max_sessions.store(max, Ordering::Relaxed);
    }

    /// The target name it serves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration it runs (reloads reuse a server whose configuration is unchanged).
    pub fn config(&self) -> &StdioTarget {
        &self.cfg
    }

    /// The shared process's `initialize` result, starting it if needed.
    pub async fn initialize(&self) -> Result<Value, RpcError> {
        // `running` only succeeds once the handshake has stored a result
        let r = self.running().await?;
        r.shared.init_result().ok_or_else(|| self.down("did not finish its handshake"))
    }

    /// Send a request to the shared process. `origin` (client session and request id) lets the
    /// client cancel it.
    pub async fn call(
        &self,
        method: &str,
        params: Option<&Value>,
        origin: Option<String>,
    ) -> Result<StdioCall, RpcError> {
        self.running().await?.call(method, params, false, origin)
    }

    /// The shared process (started if needed), as a source of notifications.
    pub async fn shared_proc(&self) -> Result<SharedProc, RpcError> {
        self.running().await.map(SharedProc)
    }

    /// A client session's `resources/subscribe` at the shared process (started if needed), held
    /// there with the shards' hubs' (see [`Holds`]): the result of the process's answer, or an
    /// empty one when the URI was held already.
    pub async fn subscribe_for(&self, session: &str, uri: &str, idle: Duration) -> Result<Value, RpcError> {
        let p = self.shared_proc().await?;
        let Some(call) = p.hold(uri, Holder::Session(session)) else { return Ok(json!({})) };
        let answer = match call {
            Ok(call) => call.answer(idle).await,
            Err(e) => Err(e),
        };
        if answer.is_err() {
            // not held: the session may try again
            p.release(uri, Holder::Session(session));
        }
        answer
    }

    /// A client session's `resources/unsubscribe` at the shared process: its hold is given up,
    /// and the process told only if nobody else (a hub, another session) holds the URI.
    pub fn unsubscribe_for(&self, session: &str, uri: &str) {
        if let Some(r) = self.current() {
            SharedProc(r).release(uri, Holder::Session(session));
        }
    }

    /// A client session ended: its holds at the shared process are given up.
    pub fn forget_session(&self, session: &str) {
        let Some(r) = self.current() else { return };
        let gone = r.shared.subs.lock().map(|mut s| s.forget(session)).unwrap_or_default();
        for uri in gone {
            r.unsubscribe(&uri);
        }
    }

    /// The shared process if one runs (none is started).
    fn current(&self) -> Option<Arc<Running>> {
        self.state.lock().ok().and_then(|st| st.running.clone())
    }

    /// Cancel the request the client knows as `origin` on the shared process, if it is there.
    pub fn cancel(&self, origin: &str, reason: Option<&str>) {
        let r = self.current();
        if let Some(r) = r {
            r.cancel(origin, reason);
        }
    }

    fn down(&self, what: &str) -> RpcError {
        RpcError::new(INTERNAL_ERROR, format!("stdio target `{}` {what}", self.name))
    }

    /// Start a process for one client session, initialized with the client's own `initialize`
    /// params (so the server sees its capabilities, and offers what needs them); its result
    /// and the key the session finds it by.
    pub async fn open_session(self: &Arc<Self>, params: &Value, ttl: Duration) -> Result<(Value, String), RpcError> {
        let max = self.max_sessions.load(Ordering::Relaxed);
        if self.live.fetch_add(1, Ordering::AcqRel) >= max {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(RpcError::new(
                SESSION_LIMIT,
                format!(
                    "stdio target `{}` runs {} per-session processes already (its maxSessions); end idle sessions or try later",
                    self.name, max
                ),
            ));
        }
        let init = json!({
            "protocolVersion": params.get("protocolVersion").cloned().unwrap_or_else(|| json!(INIT_VERSION)),
            "capabilities": params.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "clientInfo": params.get("clientInfo").cloned()
                .unwrap_or_else(|| json!({"name": "ringgate", "version": env!("CARGO_PKG_VERSION")})),
        });
        let r = match spawn(&self.name, &self.cfg, init.clone(), true, true) {
            Ok(r) => r,
            Err(e) => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                return Err(self.down(&format!("cannot start: {e}")));
            }
        };
        if r.shared.init.get().is_none() {
            r.shared.handshake().await;
        }
        let result = match r.shared.init.get() {
            Some(Ok(_)) => r.shared.init_result().unwrap_or_else(|| json!({})),
            failed => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                r.terminate();
                return Err(match failed {
                    Some(Err(e)) => RpcError::new(INTERNAL_ERROR, e.clone()),
                    _ => self.down("did not finish its handshake"),
                });
            }
        };
        let key = new_key().map_err(|e| self.down(&e))?;
        let proc = Arc::new(SessionProc {
            server: self.clone(),
            init: init.to_string().into(),
            running: ArcSwap::new(r.clone()),
            restart: Mutex::new(Restart { crashes: 0, started: Instant::now(), gave_up: false, done: None }),
            replaying: AtomicBool::new(false),
            remembered: Mutex::new(Remembered::default()),
            ttl,
            last_used: AtomicU64::new(now_ms()),
            ended: AtomicBool::new(false),
        });
        if !proc.adopt(&r) {
            // it exited between its handshake and now: a crash like any other
            if let Some(done) = proc.crashed() {
                schedule(Job { proc: proc.clone(), due: Instant::now() + backoff(0), _done: done });
            }
        }
        if let Ok(mut t) = PROCS.lock() {
            t.insert(key.clone(), proc);
        }
        ensure_reaper();
        Ok((result, key))
    }

    /// The live shared process, started (or restarted after backoff) if needed, with its handshake done.
    async fn running(&self) -> Result<Arc<Running>, RpcError> {
        let r = {
            let mut st = self.state.lock().map_err(|_| self.down("is unusable"))?;
            match &st.running {
                Some(r) if r.shared.alive.load(Ordering::Acquire) => r.clone(),
                _ => {
                    if let Some(t) = st.retry_at {
                        if Instant::now() < t {
                            return Err(self.down("is restarting after a crash"));
                        }
                    }
                    st.running = None;
                    let init = json!({
                        "protocolVersion": INIT_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "ringgate", "version": env!("CARGO_PKG_VERSION")},
                    });
                    match spawn(&self.name, &self.cfg, init, false, true) {
                        Ok(r) => {
                            st.running = Some(r.clone());
                            r
                        }
                        Err(e) => {
                            st.failures += 1;
                            st.retry_at = Some(Instant::now() + backoff(st.failures));
                            return Err(self.down(&format!("cannot start: {e}")));
                        }
                    }
                }
            }
        };
        if r.shared.init.get().is_none() {
            r.shared.handshake().await;
        }
        let ok = matches!(r.shared.init.get(), Some(Ok(_)));
        if let Ok(mut st) = self.state.lock() {
            if ok {
                st.failures = 0;
                st.retry_at = None;
            } else if st.running.as_ref().is_some_and(|x| Arc::ptr_eq(x, &r)) {
                st.failures += 1;
                st.retry_at = Some(Instant::now() + backoff(st.failures));
            }
        }
        match r.shared.init.get() {
            Some(Ok(_)) => Ok(r),
            Some(Err(e)) => Err(RpcError::new(INTERNAL_ERROR, e.clone())),
            None => Err(self.down("did not finish its handshake")),
        }
    }
}

impl Running {
    /// Send a request; `params._meta.progressToken` is replaced by the upstream id so progress
    /// finds its way back (on a shared process, among many clients' requests).
    fn call(
        self: &Arc<Self>,
        method: &str,
        params: Option<&Value>,
        relays: bool,
        origin: Option<String>,
    ) -> Result<StdioCall, RpcError> {
        let (tx, rx) = flume::unbounded();
        let down = || RpcError::new(INTERNAL_ERROR, format!("stdio target `{}` is unusable", self.name));
        let id = self.shared.waiters.add(tx, relays, origin).ok_or_else(down)?;
        let mut params = params.cloned();
        if let Some(meta) = params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
            if meta.contains_key("progressToken") {
                meta.insert("progressToken".into(), json!(id));
            }
        }
        // made before the write, so that a failed one leaves nothing pending
        let call = StdioCall { rx, upstream_id: id, server: self.clone() };
        let line = jsonrpc::request(&json!(id), method, params.as_ref());
        if self.stdin.send(line).is_err() {
            return Err(RpcError::new(INTERNAL_ERROR, format!("stdio target `{}` closed its input", self.name)));
        }
        Ok(call)
    }

    /// Tell a live process that nobody holds `uri` any more.
    fn unsubscribe(self: &Arc<Self>, uri: &str) {
        if self.shared.alive.load(Ordering::Acquire) {
            let _ = self.call("resources/unsubscribe", Some(&json!({ "uri": uri })), false, None);
        }
    }

    /// `notifications/cancelled` for the request the client knows as `origin`, if it waits here.
    /// The server will not answer it, so its client's POST is ended with an error (which the
    /// client, having cancelled, ignores) rather than left open.
    fn cancel(&self, origin: &str, reason: Option<&str>) {
        if let Some((id, tx)) = self.shared.waiters.find(origin) {
            self.cancelled(id, reason);
            let e = RpcError::new(REQUEST_CANCELLED, "request cancelled by the client");
            let _ = tx.send(Message::Error { id: json!(id), error: e.to_value() });
        }
    }

    fn cancelled(&self, upstream_id: u64, reason: Option<&str>) {
        let mut p = json!({"requestId": upstream_id});
        if let Some(r) = reason {
            p["reason"] = json!(r);
        }
        let _ = self.stdin.send(jsonrpc::notification("notifications/cancelled", Some(&p)));
    }

    /// Ask the process group to exit; kill it if it has not within `TERM_GRACE`.
    fn terminate(self: &Arc<Self>) {
        if !self.shared.alive.load(Ordering::Acquire) {
            return;
        }
        kill_group(self.pid, libc::SIGTERM);
        // the I/O thread kills the group unless it has seen the child exit by then
        stdio_io::kill_at(&self.stdin, Instant::now() + TERM_GRACE);
    }
}

/// A stateful client session's own process of a `perSession` stdio target. A crashed one is
/// started again (with backoff, initialized with the client's params) until it crashes
/// `MAX_CRASHES` times without a healthy run in between.
pub struct SessionProc {
    server: Arc<StdioServer>,
    /// The `initialize` params its processes get (the client's own), as JSON text (see
    /// `Shared::init`).
    init: Box<str>,
    /// The process serving now (the crashed one while a restart is under way).
    running: ArcSwap<Running>,
    restart: Mutex<Restart>,
    /// A restarted process is in place but still hearing its session's state replayed: calls
    /// wait for that as for the restart.
    replaying: AtomicBool,
    /// What the client set up on its process, replayed to a restarted one.
    remembered: Mutex<Remembered>,
    ttl: Duration,
    /// Last use by its session, in ms since `EPOCH`.
    last_used: AtomicU64,
    ended: AtomicBool,
}

/// The session state a client set up on its process with requests, which a restarted process
/// must hear again: the last `logging/setLevel` level and the URIs subscribed to (and not
/// unsubscribed from), at most `MAX_REMEMBERED_URIS` of them.
#[derive(Default)]
struct Remembered {
    level: Option<Box<str>>,
    uris: Vec<Box<str>>,
    /// Bytes of URI text in `uris`.
    uri_bytes: usize,
}

impl Remembered {
    /// Note what a request forwarded to the process sets up; false if it is not remembered
    /// because the bounds are reached.
    fn note(&mut self, method: &str, params: Option<&Value>) -> bool {
        let arg = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_str);
        match (method, arg("level"), arg("uri")) {
            ("logging/setLevel", Some(level), _) if level.len() <= MAX_LEVEL_LEN => self.level = Some(level.into()),
            ("logging/setLevel", Some(_), _) => return false,
            ("resources/subscribe", _, Some(uri)) if !self.uris.iter().any(|u| &**u == uri) => {
                if self.uris.len() >= MAX_REMEMBERED_URIS || self.uri_bytes + uri.len() > MAX_REMEMBERED_URI_BYTES {
                    return false;
                }
                self.uri_bytes += uri.len();
                self.uris.push(uri.into());
            }
            ("resources/unsubscribe", _, Some(uri)) => {
                if let Some(i) = self.uris.iter().position(|u| &**u == uri) {
                    self.uri_bytes -= uri.len();
                    self.uris.swap_remove(i);
                    if self.uris.is_empty() {
                        self.uris = Vec::new();
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// The requests that set it up again, in order: the level first, so that what a
    /// subscription logs is filtered by it.
    fn requests(&self) -> Vec<(&'static str, Value)> {
        let level = self.level.iter().map(|l| ("logging/setLevel", json!({ "level": &**l })));
        level.chain(self.uris.iter().map(|u| ("resources/subscribe", json!({ "uri": &**u })))).collect()
    }
}

/// A request replaying session state to a restarted process (its method), awaiting its answer.
type Replayed = (&'static str, StdioCall);

/// Crash bookkeeping of a session's process.
struct Restart {
    /// Crashes in a row without a healthy run in between.
    crashes: u32,
    /// When the serving process was started.
    started: Instant,
    gave_up: bool,
    /// While a restart is under way: dropped (waking every receiver) when it is over either way.
    done: Option<flume::Receiver<()>>,
}

impl SessionProc {
    /// Whether it can still serve (not ended; its process may be restarting, or given up on,
    /// which its calls are told).
    pub fn is_live(&self) -> bool {
        !self.ended.load(Ordering::Acquire)
    }

    /// The OS process id of the process serving now (for logs and tests).
    pub fn pid(&self) -> u32 {
        self.running.load().pid
    }

    /// Note that its session was used, which postpones its idle end.
    pub fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    fn down(&self, what: &str) -> RpcError {
        RpcError::new(INTERNAL_ERROR, format!("stdio target `{}` {what}", self.server.name))
    }

    /// The process to send to: the running one, or the one a restart under way brings up.
    async fn current(&self) -> Result<Arc<Running>, RpcError> {
        // each round waits for one restart to end; a few rounds cover a restart that crashed
        // again, more would mean a wake-up that changed nothing
        for _ in 0..=MAX_CRASHES + 1 {
            let r = self.running.load_full();
            let alive = r.shared.alive.load(Ordering::Acquire);
            if alive && !self.replaying.load(Ordering::Acquire) {
                return Ok(r);
            }
            let done = {
                let st = self.restart.lock().map_err(|_| self.down("is unusable"))?;
                if st.gave_up {
                    return Err(self.down(&format!(
                        "crashed {MAX_CRASHES} times in a row; this session's process is not restarted again; initialize a new session"
                    )));
                }
                if self.ended.load(Ordering::Acquire) {
                    return Err(self.down("ended this session's process; initialize a new session"));
                }
                let now = self.running.load_full();
                if !Arc::ptr_eq(&now, &r) {
                    continue;
                }
                match &st.done {
                    Some(d) => d.clone(),
                    // its replay ended meanwhile
                    None if alive => return Ok(r),
                    // its exit is being handled: a restart is about to be scheduled (or not)
                    None => return Err(self.down("exited; try again shortly")),
                }
            };
            // bounded: the restart ends after its backoff and handshake limit
            let _ = done.recv_async().await;
        }
        Err(self.down("is restarting after a crash; try again shortly"))
    }

    /// Send a request forwarded for the session's client (which gets what the server asks and
    /// tells while it runs) or, without `origin`, one of the gateway's own (fan-out). While its
    /// process is being restarted, it waits for the new one.
    pub async fn call(
        &self,
        method: &str,
        params: Option<&Value>,
        origin: Option<String>,
    ) -> Result<StdioCall, RpcError> {
        self.touch();
        let relays = origin.is_some();
        if matches!(method, "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe") {
            let kept = self.remembered.lock().is_ok_and(|mut m| m.note(method, params));
            if !kept {
                eprintln!(
                    "mcp target {}: a session's {method} is not replayed if its process restarts (over {MAX_REMEMBERED_URIS} URIs or {MAX_REMEMBERED_URI_BYTES} bytes of them, or a level over {MAX_LEVEL_LEN} bytes)",
                    self.server.name
                );
            }
        }
        self.current().await?.call(method, params, relays, origin)
    }

    /// Write one message from the client (a notification, or its answer to the server's request).
    pub fn send(&self, line: Vec<u8>) {
        self.touch();
        let _ = self.running.load().stdin.send(line);
    }

    /// Cancel the request the client knows as `origin`.
    pub fn cancel(&self, origin: &str, reason: Option<&str>) {
        self.running.load().cancel(origin, reason);
    }

    /// The session's GET stream: what the process sends while no relaying request waits. A new
    /// stream replaces an earlier one; it moves to a restarted process and ends when the
    /// session's process ends for good.
    pub fn listen(&self) -> flume::Receiver<Message> {
        // under the lock, so that a restart does not install a process between the two steps
        let st = self.restart.lock();
        let r = self.running.load_full();
        let rx = r.shared.waiters.listen();
        let restarting = st.as_ref().is_ok_and(|s| s.done.is_some());
        if !r.shared.alive.load(Ordering::Acquire) && !restarting {
            // it exited meanwhile for good: the stream ends at once instead of never
            r.shared.waiters.close();
        }
        rx
    }

    /// Its process crashed: whether to restart it (the channel a restart drops when it is over)
    /// or give up, counting crashes since the last healthy run.
    fn crashed(&self) -> Option<flume::Sender<()>> {
        let mut st = self.restart.lock().ok()?;
        // a replay under way is over: the `done` it would end is the next restart's
        self.replaying.store(false, Ordering::Release);
        if self.ended.load(Ordering::Acquire) {
            return None;
        }
        if st.started.elapsed() >= HEALTHY {
            st.crashes = 0;
        }
        if !self.another_crash(&mut st) {
            return None;
        }
        let (tx, rx) = flume::bounded(0);
        st.done = Some(rx);
        Some(tx)
    }

    /// Count one more crash: whether to restart (else it is given up on).
    fn another_crash(&self, st: &mut Restart) -> bool {
        st.crashes += 1;
        if st.crashes < MAX_CRASHES {
            return true;
        }
        st.gave_up = true;
        st.done = None;
        crate::observe::metrics::count_stdio_restart(&self.server.name, "gave_up");
        eprintln!(
            "mcp target {}: session process crashed {} times in a row; not restarting it",
            self.server.name, st.crashes
        );
        false
    }

    /// A restart attempt failed (the process did not start, or did not finish its handshake):
    /// when to try again, unless that was one crash too many.
    fn attempt_failed(&self) -> Option<Instant> {
        let mut st = self.restart.lock().ok()?;
        if self.ended.load(Ordering::Acquire) {
            st.done = None;
            return None;
        }
        self.another_crash(&mut st).then(|| Instant::now() + backoff(st.crashes - 1))
    }

    /// Become the owner of `r`, which is then restarted when it crashes; false if it exited already.
    fn adopt(self: &Arc<Self>, r: &Running) -> bool {
        let Ok(mut o) = r.shared.owner.lock() else { return false };
        if matches!(*o, Owner::Exited) {
            return false;
        }
        *o = Owner::Session(Arc::downgrade(self));
        true
    }

    /// Put a restarted process (`initialize` answered) in place of the crashed one: it hears
    /// `notifications/initialized`, the session's GET stream moves to it (so that what it asks
    /// once initialized, such as `roots/list`, reaches the client, and the client's answer
    /// reaches it) and hears that its lists may have changed, and the requests replaying the
    /// session's state are sent, whose answers calls wait for until [`SessionProc::replayed`].
    /// None if it exited already.
    fn install(self: &Arc<Self>, r: Arc<Running>) -> Option<Vec<Replayed>> {
        let Ok(mut st) = self.restart.lock() else { return Some(Vec::new()) };
        if self.ended.load(Ordering::Acquire) {
            st.done = None;
            drop(st);
            r.terminate();
            return Some(Vec::new());
        }
        if !self.adopt(&r) {
            return None;
        }
        // before the swap, so that no call finds the new process without it
        self.replaying.store(true, Ordering::Release);
        // the GET stream first: what it asks as soon as it is initialized goes there
        let old = self.running.load_full();
        old.shared.waiters.hand_over(&r.shared.waiters);
        // before the swap: before anything the client sends reaches it
        let _ = r.stdin.send(jsonrpc::notification("notifications/initialized", None));
        self.running.store(r.clone());
        st.started = Instant::now();
        crate::observe::metrics::count_stdio_restart(&self.server.name, "restarted");
        eprintln!("mcp target {}: session process restarted (pid {}, was {})", self.server.name, r.pid, old.pid);
        // a new process may list other tools, prompts or resources than the one it replaces
        let init = r.shared.init_result();
        let caps = init.as_ref().and_then(|i| i.get("capabilities"));
        for kind in ["tools", "prompts", "resources"] {
            if caps.and_then(|c| c.get(kind)).is_some() {
                let method = format!("notifications/{kind}/list_changed");
                let _ = r.shared.waiters.relay(Message::Notification { method, params: None });
            }
        }
        drop(st);
        let replay = self.remembered.lock().map(|m| m.requests()).unwrap_or_default();
        let calls =
            replay.into_iter().filter_map(|(method, p)| Some((method, r.call(method, Some(&p), false, None).ok()?)));
        Some(calls.collect())
    }

    /// The restarted process answered its replay (or took too long): calls go to it now, unless
    /// it crashed meanwhile and another restart is under way.
    fn replayed(&self) {
        if let Ok(mut st) = self.restart.lock() {
            if self.replaying.swap(false, Ordering::AcqRel) {
                st.done = None;
            }
        }
    }

    /// End it (once): SIGTERM to its group, SIGKILL after a grace period.
    fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.server.live.fetch_sub(1, Ordering::AcqRel);
            // taken after `ended` is set, so a restart finishing now sees it and ends its process
            let r = {
                let _st = self.restart.lock();
                self.running.load_full()
            };
            r.terminate();
            eprintln!("mcp target {}: session process {} ended", self.server.name, r.pid);
        }
    }
}

/// Per-session processes by key.
static PROCS: LazyLock<Mutex<HashMap<String, Arc<SessionProc>>>> = LazyLock::new(Default::default);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

fn new_key() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| format!("cannot make a session key: {e}"))?;
    Ok(format!("{KEY_PREFIX}{}", crate::digest::hex(&b)))
}

/// The per-session process under `key`, unless it ended.
pub fn session_proc(key: &str) -> Option<Arc<SessionProc>> {
    PROCS.lock().ok()?.get(key).filter(|p| p.is_live()).cloned()
}

/// End the per-session process under `key` (its session ended or initialized again).
pub fn end_session_proc(key: &str) {
    let p = PROCS.lock().ok().and_then(|mut t| t.remove(key));
    if let Some(p) = p {
        p.end();
    }
}

/// End every per-session process (gateway shutdown), waiting at most `TERM_GRACE` for them to
/// exit before their groups are killed. Returns how many there were.
pub fn end_all() -> usize {
    let all: Vec<_> = PROCS.lock().map(|mut t| t.drain().map(|(_, p)| p).collect()).unwrap_or_default();
    for p in &all {
        p.end();
    }
    let deadline = Instant::now() + TERM_GRACE;
    let alive = |p: &Arc<SessionProc>| p.running.load().shared.alive.load(Ordering::Acquire);
    while all.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in all.iter().filter(|p| alive(p)) {
        kill_group(p.pid(), libc::SIGKILL);
    }
    all.len()
}

/// Which per-session processes to end now: idle past their session's TTL, or exited.
fn expired(now: u64, t: &mut HashMap<String, Arc<SessionProc>>) -> Vec<Arc<SessionProc>> {
    let mut gone = Vec::new();
    t.retain(|_, p| {
        let idle = now.saturating_sub(p.last_used.load(Ordering::Relaxed));
        // a crashed one being restarted stays; one given up on stays to tell its session so
        let keep = p.is_live() && u128::from(idle) < p.ttl.as_millis();
        if !keep {
            gone.push(p.clone());
        }
        keep
    });
    gone
}

/// Start the reaper thread (once): per-session processes and HTTP+SSE sessions end with their
/// client session's idle lifetime.
pub fn ensure_reaper() {
    static REAPER: Once = Once::new();
    REAPER.call_once(|| {
        let _ = std::thread::Builder::new().name("mcp-session-reaper".into()).spawn(reap);
    });
}

fn reap() {
    loop {
        std::thread::sleep(REAP_EVERY);
        let gone = PROCS.lock().map(|mut t| expired(now_ms(), &mut t)).unwrap_or_default();
        for p in gone {
            p.end();
        }
        super::sse_client::expire_idle();
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(8))).min(MAX_BACKOFF)
}

/// Start `cfg` in a process group of its own that dies with the gateway, its pipes handed to
/// the I/O thread (`stdio_io`); the handshake is sent at once with `init` as params, and
/// `notifications/initialized` once it is answered if `initialized` (else by whoever waits for it).
fn spawn(
    name: &Arc<str>,
    cfg: &StdioTarget,
    init: Value,
    relays: bool,
    initialized: bool,
) -> std::io::Result<Arc<Running>> {
    let mut cmd = Command::new(&cfg.cmd);
    cmd.args(&cfg.args).envs(&cfg.env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec. The child
    // gets SIGKILL when the thread that started it exits (a gateway that was killed).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    if let Some(d) = &cfg.cwd {
        cmd.current_dir(d);
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    eprintln!("mcp target {name}: started `{}` (pid {pid})", cfg.cmd);
    let (ready_tx, ready_rx) = flume::bounded::<()>(1);
    let shared = Arc::new(Shared {
        waiters: Waiters::new(relays),
        init: OnceLock::new(),
        ready: Mutex::new(Some(ready_rx)),
        alive: AtomicBool::new(true),
        owner: Mutex::new(Owner::None),
        taps: Mutex::new(Vec::new()),
        subs: Mutex::new(Holds::default()),
    });
    let sh = shared.clone();
    let n = name.clone();
    let stdin = stdio_io::start(name.clone(), child, move |input| {
        Box::new(Reader { name: n, pid, shared: sh, input, ready: Some(ready_tx), initialized })
    })?;
    let _ = stdin.send(jsonrpc::request(&json!(0), "initialize", Some(&init)));
    Ok(Arc::new(Running { pid, stdin, shared, name: name.clone() }))
}

/// What a child writes, handled on the I/O thread: the handshake, then every message routed to
/// the request it is about, or to the client.
struct Reader {
    name: Arc<str>,
    pid: u32,
    shared: Arc<Shared>,
    input: Arc<Input>,
    /// Until the handshake is over; dropping it wakes whoever waits for it.
    ready: Option<flume::Sender<()>>,
    /// Whether it sends `notifications/initialized` when `initialize` is answered.
    initialized: bool,
}

impl Events for Reader {
    fn line(&mut self, line: &[u8]) {
        let (name, sh) = (&self.name, &self.shared);
        let msg = match jsonrpc::parse(line) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("mcp target {name}: ignoring a line that is not JSON-RPC: {}", e.message);
                return;
            }
        };
        match msg {
            Message::Response { id, result } if self.ready.is_some() && id == json!(0) => {
                // before the result is out: whoever sees it may send requests at once
                if self.initialized {
                    let _ = self.input.send(jsonrpc::notification("notifications/initialized", None));
                }
                let _ = sh.init.set(Ok(result.to_string().into()));
                sh.handshake_over(&mut self.ready);
            }
            Message::Error { id, error } if self.ready.is_some() && id == json!(0) => {
                let e = RpcError::from_value(&error);
                let _ = sh.init.set(Err(format!("stdio target `{name}` refused initialize: {}", e.message)));
                sh.handshake_over(&mut self.ready);
                // a server that refuses the handshake is of no use: it is ended
                kill_group(self.pid, libc::SIGKILL);
            }
            Message::Response { ref id, .. } | Message::Error { ref id, .. } => {
                if let Some(n) = id.as_u64() {
                    sh.waiters.answer(n, msg);
                }
            }
            Message::Notification { ref method, ref params } if method == "notifications/progress" => {
                if let Some(n) = params.as_ref().and_then(|p| p.get("progressToken")).and_then(Value::as_u64) {
                    sh.waiters.about(n, msg);
                }
            }
            // what nobody can take: a request is answered here, a notification goes to the
            // shard hubs listening (a shared process's), else nowhere
            msg => {
                // this thread is no shard: the epoch tells every shard the lists changed
                if let Message::Notification { method, .. } = &msg {
                    super::catalog::invalidate(name, method);
                }
                match sh.waiters.relay(msg) {
                    Some(n @ Message::Notification { .. }) => sh.tap(n),
                    Some(Message::Request { id, method, .. }) => {
                        let answer = if method == "ping" {
                            jsonrpc::response(&id, &json!({}))
                        } else {
                            let why = if sh.waiters.relays() {
                                "has no client stream open to relay it to"
                            } else {
                                "is not relayed to clients by a shared stdio target"
                            };
                            jsonrpc::error_response(
                                Some(&id),
                                &RpcError::new(jsonrpc::METHOD_NOT_FOUND, format!("`{method}` {why}")),
                            )
                        };
                        let _ = self.input.send(answer);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Reap the child and fail whatever is still waiting; a session's crashed process is
    /// restarted.
    fn exited(self: Box<Self>, child: &mut Child) {
        let (name, sh) = (&self.name, &self.shared);
        // decided before it is marked dead, so that a GET stream attached meanwhile is kept for
        // the restarted process
        let owner = match sh.owner.lock().as_deref_mut() {
            Ok(Owner::Session(w)) => w.upgrade(),
            Ok(o) => {
                *o = Owner::Exited;
                None
            }
            Err(_) => None,
        };
        let restart = owner.as_ref().and_then(|p| Some((p.clone(), p.crashed()?)));
        sh.alive.store(false, Ordering::Release);
        // the hubs' streams end: their listeners subscribe again on the next process
        if let Ok(mut t) = sh.taps.lock() {
            t.clear();
        }
        // what the child left behind in its group goes too; then the child is reaped (it has
        // exited, or its stdout ended and it is killed now)
        kill_group(child.id(), libc::SIGKILL);
        let status = child.wait();
        let _ = sh.init.set(Err(format!("stdio target `{name}` exited during its handshake")));
        let mut ready = self.ready;
        sh.handshake_over(&mut ready);
        eprintln!("mcp target {name}: process exited (pid {}): {}", child.id(), describe(status));
        let (waiting, what) = match &restart {
            Some(_) => (sh.waiters.drain(), "crashed before answering; it is being restarted"),
            None => (sh.waiters.close(), "exited before answering"),
        };
        for (id, tx) in waiting {
            let e = RpcError::new(INTERNAL_ERROR, format!("stdio target `{name}` {what}"));
            let _ = tx.send(Message::Error { id: json!(id), error: e.to_value() });
        }
        if let Some((proc, done)) = restart {
            let crashes = proc.restart.lock().map(|st| st.crashes).unwrap_or(1);
            schedule(Job { proc, due: Instant::now() + backoff(crashes.saturating_sub(1)), _done: done });
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// A session's process to start again at `due`; `done` is dropped when the restart is over.
struct Job {
    proc: Arc<SessionProc>,
    due: Instant,
    /// Never sent on: dropped with the job, which wakes the calls waiting for the restart.
    _done: flume::Sender<()>,
}

/// Hand a restart to the restarter thread; without one, the session's calls are not kept waiting.
fn schedule(job: Job) {
    if let Err(e) = restarter().send(job) {
        let p = &e.into_inner().proc;
        if let Ok(mut st) = p.restart.lock() {
            st.done = None;
        }
        eprintln!("mcp target {}: no restarter thread; the session process is not restarted", p.server.name);
    }
}

/// The restarter thread's queue, the thread started on first use. Processes are started there
/// because a child gets SIGKILL when the thread that started it exits (`PR_SET_PDEATHSIG`), so
/// it must be one that lives as long as the gateway.
fn restarter() -> &'static flume::Sender<Job> {
    static TX: OnceLock<flume::Sender<Job>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = flume::unbounded();
        let _ = std::thread::Builder::new().name("mcp-stdio-restart".into()).spawn(move || restart_loop(&rx));
        tx
    })
}

/// Start crashed session processes again when their backoff is over, and put each in place
/// once its handshake is done; an attempt that fails counts as one more crash.
fn restart_loop(rx: &flume::Receiver<Job>) {
    // jobs waiting for their time, and started processes waiting for their handshake
    let mut due: Vec<Job> = Vec::new();
    let mut starting: Vec<(Job, Arc<Running>, Instant)> = Vec::new();
    // installed processes whose replay of their session's state is not answered yet
    let mut replaying: Vec<(Job, Vec<Replayed>, Instant)> = Vec::new();
    loop {
        let now = Instant::now();
        let mut i = 0;
        while i < due.len() {
            if due[i].due > now {
                i += 1;
                continue;
            }
            let job = due.swap_remove(i);
            if job.proc.ended.load(Ordering::Acquire) {
                continue;
            }
            let s = &job.proc.server;
            let init = serde_json::from_str(&job.proc.init).unwrap_or_else(|_| json!({}));
            // `install` sends `notifications/initialized`, once the process is the session's
            match spawn(&s.name, &s.cfg, init, true, false) {
                Ok(r) => starting.push((job, r, now + RESTART_HANDSHAKE)),
                Err(e) => {
                    eprintln!("mcp target {}: cannot restart a session process: {e}", s.name);
                    if let Some(at) = job.proc.attempt_failed() {
                        due.push(Job { due: at, ..job });
                    }
                }
            }
        }
        let mut i = 0;
        while i < starting.len() {
            let (_, r, deadline) = &starting[i];
            let ok = matches!(r.shared.init.get(), Some(Ok(_)));
            if !ok && r.shared.init.get().is_none() && *deadline > now {
                i += 1;
                continue;
            }
            let (job, r, _) = starting.swap_remove(i);
            if ok {
                if let Some(calls) = job.proc.install(r.clone()) {
                    replaying.push((job, calls, now + RESTART_HANDSHAKE));
                    continue;
                }
            }
            eprintln!("mcp target {}: a restarted session process did not finish its handshake", job.proc.server.name);
            // dropping the last handle kills a process still running
            drop(r);
            if let Some(at) = job.proc.attempt_failed() {
                due.push(Job { due: at, ..job });
            }
        }
        let mut i = 0;
        while i < replaying.len() {
            let (job, calls, deadline) = &mut replaying[i];
            calls.retain(|(method, call)| match call.rx.try_recv() {
                Err(flume::TryRecvError::Empty) => true,
                Ok(Message::Error { error, .. }) => {
                    let e = RpcError::from_value(&error);
                    eprintln!(
                        "mcp target {}: a restarted session process refused the replayed {method}: {}",
                        job.proc.server.name, e.message
                    );
                    false
                }
                _ => false,
            });
            if !calls.is_empty() && *deadline > now {
                i += 1;
                continue;
            }
            if !calls.is_empty() {
                eprintln!(
                    "mcp target {}: a restarted session process did not answer its replayed state in time",
                    job.proc.server.name
                );
            }
            // dropping the job wakes the calls waiting
            replaying.swap_remove(i).0.proc.replayed();
        }
        // handshakes are polled: they are rare and short, and their readers run on other threads
        let wait = if starting.is_empty() && replaying.is_empty() {
            due.iter().map(|j| j.due.saturating_duration_since(now)).min()
        } else {
            Some(Duration::from_millis(10))
        };
        let got = match wait {
            Some(w) => rx.recv_timeout(w).map_err(|e| matches!(e, flume::RecvTimeoutError::Disconnected)),
            None => rx.recv().map_err(|_| true),
        };
        match got {
            Ok(job) => due.push(job),
            Err(true) => return,
            Err(false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(relays: bool) -> Shared {
        let ready = Mutex::new(None);
        Shared {
            waiters: Waiters::new(relays),
            init: OnceLock::new(),
            ready,
            alive: AtomicBool::new(true),
            owner: Mutex::new(Owner::None),
            taps: Mutex::new(Vec::new()),
            subs: Mutex::new(Holds::default()),
        }
    }

    fn session_proc(server: &Arc<StdioServer>, last_used: u64, alive: bool) -> Arc<SessionProc> {
        let sh = shared(true);
        sh.alive.store(alive, Ordering::Release);
        let stdin = stdio_io::detached();
        let running = Arc::new(Running { pid: 0, stdin, shared: Arc::new(sh), name: "t".into() });
        server.live.fetch_add(1, Ordering::AcqRel);
        Arc::new(SessionProc {
            server: server.clone(),
            init: "{}".into(),
            running: ArcSwap::new(running),
            restart: Mutex::new(Restart { crashes: 0, started: Instant::now(), gave_up: false, done: None }),
            replaying: AtomicBool::new(false),
            remembered: Mutex::new(Remembered::default()),
            ttl: Duration::from_secs(10),
            last_used: AtomicU64::new(last_used),
            ended: AtomicBool::new(false),
        })
    }

    fn server() -> Arc<StdioServer> {
        let cfg = StdioTarget { cmd: "true".into(), args: vec![], env: Default::default(), cwd: None };
        Arc::new(StdioServer::new("t", cfg, 10))
    }

    #[test]
    fn idle_and_ended_session_processes_expire_and_crashed_ones_stay() {
        let server = server();
        let mut t = HashMap::new();
        t.insert("fresh".to_string(), session_proc(&server, 95_000, true));
        t.insert("idle".to_string(), session_proc(&server, 80_000, true));
        // its process crashed: it is being restarted, and its session keeps it
        t.insert("crashed".to_string(), session_proc(&server, 99_000, false));
        let ended = session_proc(&server, 99_000, false);
        ended.ended.store(true, Ordering::Release);
        t.insert("ended".to_string(), ended);
        let mut gone: Vec<_> =
            expired(100_000, &mut t).into_iter().map(|p| p.last_used.load(Ordering::Relaxed)).collect();
        gone.sort();
        assert_eq!(gone, [80_000, 99_000]);
        let mut left: Vec<_> = t.keys().collect();
        left.sort();
        assert_eq!(left, ["crashed", "fresh"]);
        let fresh = &t["fresh"];
        fresh.end();
        fresh.end();
        assert_eq!(server.live.load(Ordering::Acquire), 3, "ended once");
        assert!(!fresh.is_live());
    }

    #[test]
    fn the_last_level_and_the_subscriptions_left_are_replayed_within_bounds() {
        let mut m = Remembered::default();
        let uri = |u: &str| Some(json!({ "uri": u }));
        assert!(m.note("logging/setLevel", Some(&json!({"level": "debug"}))));
        assert!(m.note("logging/setLevel", Some(&json!({"level": "error"}))));
        assert!(!m.note("logging/setLevel", Some(&json!({"level": "x".repeat(MAX_LEVEL_LEN + 1)}))));
        for u in ["a://1", "a://2", "a://1", "a://3"] {
            assert!(m.note("resources/subscribe", uri(u).as_ref()));
        }
        assert!(m.note("resources/unsubscribe", uri("a://2").as_ref()));
        assert!(m.note("tools/call", None));
        let replay: Vec<_> = m.requests().into_iter().map(|(method, p)| format!("{method} {p}")).collect();
        assert_eq!(
            replay,
            [
                r#"logging/setLevel {"level":"error"}"#,
                r#"resources/subscribe {"uri":"a://1"}"#,
                r#"resources/subscribe {"uri":"a://3"}"#
            ]
        );
        assert_eq!(m.uri_bytes, 10);
        // past the bounds a subscription is not remembered; an unsubscription makes room
        for i in m.uris.len()..MAX_REMEMBERED_URIS {
            assert!(m.note("resources/subscribe", uri(&format!("b://{i}")).as_ref()));
        }
        assert!(!m.note("resources/subscribe", uri("c://1").as_ref()));
        assert!(m.note("resources/unsubscribe", uri("a://1").as_ref()));
        assert!(m.note("resources/subscribe", uri("c://1").as_ref()));
        assert!(!m.note("resources/subscribe", uri(&"d".repeat(MAX_REMEMBERED_URI_BYTES)).as_ref()));
        assert_eq!(m.uris.len(), MAX_REMEMBERED_URIS);
    }

    #[test]
    fn crashes_in_a_row_give_up_and_a_healthy_run_starts_the_count_over() {
        let server = server();
        let p = session_proc(&server, 0, false);
        assert!(p.crashed().is_some());
        assert!(p.attempt_failed().is_some(), "second crash: restarted again");
        assert!(p.crashed().is_none(), "third crash: given up");
        assert!(p.restart.lock().unwrap().gave_up);

        let p = session_proc(&server, 0, false);
        assert!(p.crashed().is_some());
        assert!(p.crashed().is_some());
        p.restart.lock().unwrap().started = Instant::now() - HEALTHY;
        assert!(p.crashed().is_some(), "after a healthy run the count starts over");
        assert_eq!(p.restart.lock().unwrap().crashes, 1);
        p.ended.store(true, Ordering::Release);
        assert!(p.crashed().is_none(), "an ended session's process is not restarted");
    }
}
