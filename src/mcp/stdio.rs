//! Stdio targets: child processes bridged to the shards by threads and channels; a target's shared process (restarted with backoff) and the per-session processes of stateful clients (started at `initialize`, ended with the session, capped).
//!
//! Where a session's own process lives: in a process-wide table, under a random key sealed into
//! the session id as the target's upstream session. Its I/O runs on threads behind channels, so
//! any shard can talk to it directly: a request landing on another shard than the `initialize`
//! needs no home shard and no mailbox hop (the legacy `/sse` transport's way), and a shard that
//! drains takes no process with it. Shards cache the handle (`ShardSessions::stdio_proc`), so
//! the table's lock is taken when a session starts or ends, the first time a shard serves it,
//! and by the idle reaper, not on each request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::jsonrpc::{self, Message, RpcError, INTERNAL_ERROR};
use super::waiters::Waiters;
use crate::config::mcp::StdioTarget;

/// Longest line accepted from a child (a message is one line).
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The version the gateway offers when it initializes a shared stdio server.
const INIT_VERSION: &str = "2025-11-25";
/// How long an ended session's process may take to exit after SIGTERM before its group is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How often per-session processes are checked for idleness and death.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// JSON-RPC error code of an `initialize` refused because the target runs `maxSessions` processes.
pub const SESSION_LIMIT: i64 = -32000;
/// JSON-RPC error code ending a request the client cancelled (LSP's `RequestCancelled`).
const REQUEST_CANCELLED: i64 = -32800;
/// Prefix of the keys of per-session processes (a session's upstream session id for the target).
pub const KEY_PREFIX: &str = "stdio~";

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
    stdin: flume::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    name: Arc<str>,
}

/// What the reader thread and callers share.
struct Shared {
    /// Requests waiting for messages about them; a session's own process relays what it asks
    /// and tells to its client, a shared one refuses it (it cannot know whom to ask).
    waiters: Waiters,
    /// The child's `initialize` result, or why the handshake failed.
    init: OnceLock<Result<Value, String>>,
    /// Dropped (disconnected) when `init` is set, waking every waiter.
    ready: flume::Receiver<()>,
    alive: AtomicBool,
    /// Where a shared process's notifications go: one receiver per shard hub listening to it.
    taps: Mutex<Vec<flume::Sender<Message>>>,
    /// `resources/subscribe` holds by URI, over every shard: the process hears of a URI once.
    subs: Mutex<HashMap<String, usize>>,
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

    /// Hold a subscription to `uri` for a shard; the first hold sends `resources/subscribe` and
    /// returns the call to wait on.
    pub fn hold(&self, uri: &str) -> Option<Result<StdioCall, RpcError>> {
        let first = self.0.shared.subs.lock().ok().map(|mut s| {
            let n = s.entry(uri.to_string()).or_insert(0);
            *n += 1;
            *n == 1
        });
        first?.then(|| self.0.call("resources/subscribe", Some(&json!({ "uri": uri })), false, None))
    }

    /// Give up a shard's hold on `uri`; the last one sends `resources/unsubscribe` (whose answer
    /// nobody waits for).
    pub fn release(&self, uri: &str) {
        let last = self.0.shared.subs.lock().ok().is_some_and(|mut s| match s.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                s.remove(uri);
                true
            }
            None => false,
        });
        if last && self.0.shared.alive.load(Ordering::Acquire) {
            let _ = self.0.call("resources/unsubscribe", Some(&json!({ "uri": uri })), false, None);
        }
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
        r.shared
            .init
            .get()
            .and_then(|i| i.as_ref().ok())
            .cloned()
            .ok_or_else(|| self.down("did not finish its handshake"))
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

    /// Cancel the request the client knows as `origin` on the shared process, if it is there.
    pub fn cancel(&self, origin: &str, reason: Option<&str>) {
        let r = self.state.lock().ok().and_then(|st| st.running.clone());
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
        let r = match spawn(&self.name, &self.cfg, init, true) {
            Ok(r) => r,
            Err(e) => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                return Err(self.down(&format!("cannot start: {e}")));
            }
        };
        if r.shared.init.get().is_none() {
            let _ = r.shared.ready.recv_async().await;
        }
        let result = match r.shared.init.get() {
            Some(Ok(v)) => v.clone(),
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
            running: r,
            ttl,
            last_used: AtomicU64::new(now_ms()),
            ended: AtomicBool::new(false),
        });
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
                    match spawn(&self.name, &self.cfg, init, false) {
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
            let _ = r.shared.ready.recv_async().await;
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
        let me = self.clone();
        let _ = std::thread::Builder::new().name("mcp-stdio-term".into()).spawn(move || {
            let deadline = Instant::now() + TERM_GRACE;
            while me.shared.alive.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if me.shared.alive.load(Ordering::Acquire) {
                kill_group(me.pid, libc::SIGKILL);
            }
        });
    }
}

/// Signal a child's whole process group (each child leads its own), so helpers it started go too.
fn kill_group(pid: u32, sig: i32) {
    // pid 0 would name the gateway's own group
    let Ok(pid @ 1..) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory effects; a negative pid names the child's own group
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// A stateful client session's own process of a `perSession` stdio target.
pub struct SessionProc {
    server: Arc<StdioServer>,
    running: Arc<Running>,
    ttl: Duration,
    /// Last use by its session, in ms since `EPOCH`.
    last_used: AtomicU64,
    ended: AtomicBool,
}

impl SessionProc {
    /// Whether it can still serve (not ended, process running).
    pub fn is_live(&self) -> bool {
        !self.ended.load(Ordering::Acquire) && self.running.shared.alive.load(Ordering::Acquire)
    }

    /// The OS process id (for logs and tests).
    pub fn pid(&self) -> u32 {
        self.running.pid
    }

    /// Note that its session was used, which postpones its idle end.
    pub fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// Send a request forwarded for the session's client (which gets what the server asks and
    /// tells while it runs) or, without `origin`, one of the gateway's own (fan-out).
    pub fn call(&self, method: &str, params: Option<&Value>, origin: Option<String>) -> Result<StdioCall, RpcError> {
        self.touch();
        let relays = origin.is_some();
        self.running.call(method, params, relays, origin)
    }

    /// Write one message from the client (a notification, or its answer to the server's request).
    pub fn send(&self, line: Vec<u8>) {
        self.touch();
        let _ = self.running.stdin.send(line);
    }

    /// Cancel the request the client knows as `origin`.
    pub fn cancel(&self, origin: &str, reason: Option<&str>) {
        self.running.cancel(origin, reason);
    }

    /// The session's GET stream: what the process sends while no relaying request waits. A new
    /// stream replaces an earlier one; the receiver ends when the process does.
    pub fn listen(&self) -> flume::Receiver<Message> {
        let sh = &self.running.shared;
        let rx = sh.waiters.listen();
        if !sh.alive.load(Ordering::Acquire) {
            // it exited meanwhile: the stream ends at once instead of never
            sh.waiters.close();
        }
        rx
    }

    /// End it (once): SIGTERM to its group, SIGKILL after a grace period.
    fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.server.live.fetch_sub(1, Ordering::AcqRel);
            self.running.terminate();
            eprintln!("mcp target {}: session process {} ended", self.server.name, self.running.pid);
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
    while all.iter().any(|p| p.running.shared.alive.load(Ordering::Acquire)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in all.iter().filter(|p| p.running.shared.alive.load(Ordering::Acquire)) {
        kill_group(p.running.pid, libc::SIGKILL);
    }
    all.len()
}

/// Which per-session processes to end now: idle past their session's TTL, or exited.
fn expired(now: u64, t: &mut HashMap<String, Arc<SessionProc>>) -> Vec<Arc<SessionProc>> {
    let mut gone = Vec::new();
    t.retain(|_, p| {
        let idle = now.saturating_sub(p.last_used.load(Ordering::Relaxed));
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

/// Start `cfg` in a process group of its own that dies with the gateway, and the threads that
/// bridge its pipes; the reader does the handshake with `init` as params.
fn spawn(name: &Arc<str>, cfg: &StdioTarget, init: Value, relays: bool) -> std::io::Result<Arc<Running>> {
    let mut cmd = Command::new(&cfg.cmd);
    cmd.args(&cfg.args).envs(&cfg.env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec. The child
    // gets SIGKILL when the shard thread that started it exits (a gateway that was killed).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    if let Some(d) = &cfg.cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn()?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("no pipes"));
    };
    let pid = child.id();
    eprintln!("mcp target {name}: started `{}` (pid {pid})", cfg.cmd);
    let (stdin_tx, stdin_rx) = flume::unbounded::<Vec<u8>>();
    let (ready_tx, ready_rx) = flume::bounded::<()>(1);
    let shared = Arc::new(Shared {
        waiters: Waiters::new(relays),
        init: OnceLock::new(),
        ready: ready_rx,
        alive: AtomicBool::new(true),
        taps: Mutex::new(Vec::new()),
        subs: Mutex::new(HashMap::new()),
    });
    std::thread::Builder::new().name(format!("mcp-{name}-in")).spawn(move || write_loop(stdin, stdin_rx))?;
    let (sh, tx, n) = (shared.clone(), stdin_tx.clone(), name.clone());
    std::thread::Builder::new()
        .name(format!("mcp-{name}-out"))
        .spawn(move || read_loop(&n, stdout, child, &sh, &tx, init, ready_tx))?;
    let n = name.clone();
    std::thread::Builder::new().name(format!("mcp-{name}-err")).spawn(move || {
        for line in BufReader::new(stderr).lines() {
            match line {
                Ok(l) => eprintln!("mcp target {n}: {l}"),
                Err(_) => break,
            }
        }
    })?;
    Ok(Arc::new(Running { pid, stdin: stdin_tx, shared, name: name.clone() }))
}

fn write_loop(mut stdin: ChildStdin, rx: flume::Receiver<Vec<u8>>) {
    while let Ok(mut line) = rx.recv() {
        line.push(b'\n');
        if stdin.write_all(&line).and_then(|_| stdin.flush()).is_err() {
            return;
        }
    }
}

/// Handshake, then route every line the child writes; on exit reap the child and fail whatever
/// is still waiting.
fn read_loop(
    name: &str,
    stdout: ChildStdout,
    mut child: Child,
    sh: &Shared,
    stdin: &flume::Sender<Vec<u8>>,
    init: Value,
    ready: flume::Sender<()>,
) {
    let mut lines = BufReader::new(stdout);
    let _ = stdin.send(jsonrpc::request(&json!(0), "initialize", Some(&init)));
    let mut ready = Some(ready);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line(&mut lines, &mut buf) {
            Ok(true) => {}
            _ => break,
        }
        let msg = match jsonrpc::parse(&buf) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("mcp target {name}: ignoring a line that is not JSON-RPC: {}", e.message);
                continue;
            }
        };
        match msg {
            Message::Response { id, result } if ready.is_some() && id == json!(0) => {
                let _ = sh.init.set(Ok(result));
                let _ = stdin.send(jsonrpc::notification("notifications/initialized", None));
                ready = None;
            }
            Message::Error { id, error } if ready.is_some() && id == json!(0) => {
                let e = RpcError::from_value(&error);
                let _ = sh.init.set(Err(format!("stdio target `{name}` refused initialize: {}", e.message)));
                break;
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
            msg => match sh.waiters.relay(msg) {
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
                    let _ = stdin.send(answer);
                }
                _ => {}
            },
        }
    }
    sh.alive.store(false, Ordering::Release);
    // the hubs' streams end: their listeners subscribe again on the next process
    if let Ok(mut t) = sh.taps.lock() {
        t.clear();
    }
    // what the child left behind in its group goes too; then the child is reaped
    kill_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
    let _ = sh.init.set(Err(format!("stdio target `{name}` exited during its handshake")));
    drop(ready);
    eprintln!("mcp target {name}: process exited (pid {})", child.id());
    for (id, tx) in sh.waiters.close() {
        let e = RpcError::new(INTERNAL_ERROR, format!("stdio target `{name}` exited before answering"));
        let _ = tx.send(Message::Error { id: json!(id), error: e.to_value() });
    }
}

/// One line without its newline; `Ok(false)` at end of stream.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(false);
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&avail[..i]);
            r.consume(i + 1);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
        let n = avail.len();
        buf.extend_from_slice(avail);
        r.consume(n);
        if buf.len() > MAX_LINE_BYTES {
            return Err(std::io::Error::other("line too long"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(relays: bool) -> Shared {
        let (_, ready) = flume::bounded(1);
        Shared {
            waiters: Waiters::new(relays),
            init: OnceLock::new(),
            ready,
            alive: AtomicBool::new(true),
            taps: Mutex::new(Vec::new()),
            subs: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn idle_and_exited_session_processes_expire() {
        let cfg = StdioTarget { cmd: "true".into(), args: vec![], env: Default::default(), cwd: None };
        let server = Arc::new(StdioServer::new("t", cfg, 10));
        let proc = |last_used: u64, alive: bool| {
            let sh = shared(true);
            sh.alive.store(alive, Ordering::Release);
            let (stdin, _) = flume::unbounded();
            let running = Arc::new(Running { pid: 0, stdin, shared: Arc::new(sh), name: "t".into() });
            server.live.fetch_add(1, Ordering::AcqRel);
            Arc::new(SessionProc {
                server: server.clone(),
                running,
                ttl: Duration::from_secs(10),
                last_used: AtomicU64::new(last_used),
                ended: AtomicBool::new(false),
            })
        };
        let mut t = HashMap::new();
        t.insert("fresh".to_string(), proc(95_000, true));
        t.insert("idle".to_string(), proc(80_000, true));
        t.insert("exited".to_string(), proc(99_000, false));
        let mut gone: Vec<_> =
            expired(100_000, &mut t).into_iter().map(|p| p.last_used.load(Ordering::Relaxed)).collect();
        gone.sort();
        assert_eq!(gone, [80_000, 99_000]);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["fresh"]);
        let fresh = &t["fresh"];
        fresh.end();
        fresh.end();
        assert_eq!(server.live.load(Ordering::Acquire), 2, "ended once");
        assert!(!fresh.is_live());
    }
}
