//! Stdio targets: one child process per target shared by all sessions, bridged to the shards by threads and channels, restarted with backoff when it dies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::jsonrpc::{self, Message, RpcError, INTERNAL_ERROR};
use crate::config::mcp::StdioTarget;

/// Longest line accepted from a child (a message is one line).
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The version the gateway offers when it initializes a stdio server.
const INIT_VERSION: &str = "2025-11-25";

/// A stdio target. The process starts on first use.
pub struct StdioServer {
    name: String,
    cfg: StdioTarget,
    state: Mutex<State>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct State {
    running: Option<Arc<Running>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// A started process. Dropping it kills the process.
struct Running {
    child: Mutex<Child>,
    stdin: flume::Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// What the reader thread and callers share.
struct Shared {
    /// Callers waiting for messages about their request, by upstream id.
    pending: Mutex<HashMap<u64, flume::Sender<Message>>>,
    /// The child's `initialize` result, or why the handshake failed.
    init: OnceLock<Result<Value, String>>,
    /// Dropped (disconnected) when `init` is set, waking every waiter.
    ready: flume::Receiver<()>,
    alive: AtomicBool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A request in flight on a stdio target: its messages (progress notifications, then the
/// response with the caller's id restored by the caller).
pub struct StdioCall {
    /// Messages about this request.
    pub rx: flume::Receiver<Message>,
    /// The id the request got on the child.
    pub upstream_id: u64,
    server: Arc<Running>,
}

impl Drop for StdioCall {
    fn drop(&mut self) {
        if let Ok(mut p) = self.server.shared.pending.lock() {
            p.remove(&self.upstream_id);
        }
    }
}

impl StdioServer {
    /// A server for `cfg`; nothing runs yet.
    pub fn new(name: &str, cfg: StdioTarget) -> Self {
        StdioServer { name: name.to_string(), cfg, state: Mutex::new(State::default()), next_id: AtomicU64::new(1) }
    }

    /// The target name it serves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration it runs (reloads reuse a server whose configuration is unchanged).
    pub fn config(&self) -> &StdioTarget {
        &self.cfg
    }

    /// The child's `initialize` result, starting it if needed.
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

    /// Send a request; `params._meta.progressToken` is replaced by the upstream id so progress
    /// from a process shared by many clients finds its way back.
    pub async fn call(&self, method: &str, params: Option<&Value>) -> Result<StdioCall, RpcError> {
        let server = self.running().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut params = params.cloned();
        if let Some(meta) = params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
            if meta.contains_key("progressToken") {
                meta.insert("progressToken".into(), json!(id));
            }
        }
        let (tx, rx) = flume::unbounded();
        server.shared.pending.lock().map_err(|_| self.down("is unusable"))?.insert(id, tx);
        let line = jsonrpc::request(&json!(id), method, params.as_ref());
        if server.stdin.send(line).is_err() {
            return Err(self.down("closed its input"));
        }
        Ok(StdioCall { rx, upstream_id: id, server })
    }

    fn down(&self, what: &str) -> RpcError {
        RpcError::new(INTERNAL_ERROR, format!("stdio target `{}` {what}", self.name))
    }

    /// The live process, started (or restarted after backoff) if needed, with its handshake done.
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
                    match self.spawn() {
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

    fn spawn(&self) -> std::io::Result<Arc<Running>> {
        let mut cmd = Command::new(&self.cfg.cmd);
        cmd.args(&self.cfg.args)
            .envs(&self.cfg.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &self.cfg.cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err(std::io::Error::other("no pipes"));
        };
        eprintln!("mcp target {}: started `{}` (pid {})", self.name, self.cfg.cmd, child.id());
        let (stdin_tx, stdin_rx) = flume::unbounded::<Vec<u8>>();
        let (ready_tx, ready_rx) = flume::bounded::<()>(1);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            init: OnceLock::new(),
            ready: ready_rx,
            alive: AtomicBool::new(true),
        });
        let name = self.name.clone();
        std::thread::Builder::new().name(format!("mcp-{}-in", self.name)).spawn(move || write_loop(stdin, stdin_rx))?;
        let (sh, tx, n) = (shared.clone(), stdin_tx.clone(), name.clone());
        std::thread::Builder::new()
            .name(format!("mcp-{}-out", self.name))
            .spawn(move || read_loop(&n, stdout, &sh, &tx, ready_tx))?;
        std::thread::Builder::new().name(format!("mcp-{}-err", self.name)).spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => eprintln!("mcp target {name}: {l}"),
                    Err(_) => break,
                }
            }
        })?;
        Ok(Arc::new(Running { child: Mutex::new(child), stdin: stdin_tx, shared }))
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(8))).min(MAX_BACKOFF)
}

fn write_loop(mut stdin: ChildStdin, rx: flume::Receiver<Vec<u8>>) {
    while let Ok(mut line) = rx.recv() {
        line.push(b'\n');
        if stdin.write_all(&line).and_then(|_| stdin.flush()).is_err() {
            return;
        }
    }
}

/// Handshake, then route every line the child writes; on exit fail whatever is still waiting.
fn read_loop(name: &str, stdout: ChildStdout, sh: &Shared, stdin: &flume::Sender<Vec<u8>>, ready: flume::Sender<()>) {
    let mut lines = BufReader::new(stdout);
    let init = json!({
        "protocolVersion": INIT_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "ringgate", "version": env!("CARGO_PKG_VERSION")},
    });
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
                if let Some(tx) = id.as_u64().and_then(|n| sh.pending.lock().ok()?.get(&n).cloned()) {
                    let _ = tx.send(msg);
                }
            }
            Message::Notification { ref method, ref params } if method == "notifications/progress" => {
                let token = params.as_ref().and_then(|p| p.get("progressToken")).and_then(Value::as_u64);
                if let Some(tx) = token.and_then(|n| sh.pending.lock().ok()?.get(&n).cloned()) {
                    let _ = tx.send(msg);
                }
            }
            Message::Notification { .. } => {}
            Message::Request { id, method, .. } => {
                // a process shared by many clients cannot know whom to ask
                let e = RpcError::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("`{method}` is not relayed to clients by a shared stdio target"),
                );
                let _ = stdin.send(jsonrpc::error_response(Some(&id), &e));
            }
        }
    }
    sh.alive.store(false, Ordering::Release);
    let _ = sh.init.set(Err(format!("stdio target `{name}` exited during its handshake")));
    drop(ready);
    eprintln!("mcp target {name}: process exited");
    let waiting: Vec<_> = sh.pending.lock().map(|mut p| p.drain().collect()).unwrap_or_default();
    for (id, tx) in waiting {
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
