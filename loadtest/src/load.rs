//! rg-load: open-loop (fixed rate, latency from the intended send time) or closed-loop load over C connections, for plain HTTP and MCP, with every answer checked.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::check::{check_http, check_rpc, event_timestamp, ErrorKind, Expect};
use crate::client::Conn;
use crate::hist::Histogram;
use crate::http::{Chunked, SseEvents};
use crate::mcp::{self, Era, Target};
use crate::schedule::{latency_start, Schedule};

/// What each request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP (`method`, `body_bytes`).
    Http,
    /// `tools/call`: legacy (one session per connection, opened first) or modern (stateless).
    Call(Era),
    /// `tools/list`, as for `Call`.
    List(Era),
    /// One request = `initialize` → `notifications/initialized` (→ `DELETE` when `delete`).
    Session {
        /// End each session with DELETE.
        delete: bool,
    },
    /// Each connection opens a legacy session and its GET stream and measures event latency.
    Streams,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Call(Era::Legacy) => "mcp-call-legacy",
            Mode::Call(Era::Modern) => "mcp-call-modern",
            Mode::List(Era::Legacy) => "mcp-list-legacy",
            Mode::List(Era::Modern) => "mcp-list-modern",
            Mode::Session { delete: true } => "mcp-session",
            Mode::Session { delete: false } => "mcp-session-keep",
            Mode::Streams => "mcp-streams",
        }
    }

    /// Parse a mode name.
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "http" => Mode::Http,
            "mcp-call-legacy" => Mode::Call(Era::Legacy),
            "mcp-call-modern" => Mode::Call(Era::Modern),
            "mcp-list-legacy" => Mode::List(Era::Legacy),
            "mcp-list-modern" => Mode::List(Era::Modern),
            "mcp-session" => Mode::Session { delete: true },
            "mcp-session-keep" => Mode::Session { delete: false },
            "mcp-streams" => Mode::Streams,
            _ => return None,
        })
    }
}

/// A load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// Host header and path.
    pub target: Target,
    /// What to send.
    pub mode: Mode,
    /// Connections (streams in `Streams` mode).
    pub conns: usize,
    /// Requests per second over all connections; 0 = closed loop (saturation).
    pub rate: f64,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
    /// Stop after this many requests in all (0 = no limit); counts from the start.
    pub requests: u64,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// HTTP method (`Http` mode).
    pub method: String,
    /// Request body size (`Http` mode).
    pub body_bytes: usize,
    /// Expected response body size (`Http` mode).
    pub expect_bytes: Option<usize>,
    /// Tool to call.
    pub tool: String,
    /// `message` argument of the call, and the expected echo.
    pub message: String,
    /// Expected number of tools from `tools/list` (0 = at least one).
    pub expect_tools: usize,
    /// A file written once every stream is open (`Streams` mode) or the run's requests are done.
    pub ready_file: Option<PathBuf>,
}

impl LoadConfig {
    /// Defaults for `mode` against `addr`.
    pub fn new(addr: SocketAddr, mode: Mode) -> LoadConfig {
        LoadConfig {
            addr,
            target: Target {
                host: addr.to_string(),
                path: if mode == Mode::Http { "/" } else { "/mcp" }.into(),
                headers: Vec::new(),
            },
            mode,
            conns: 16,
            rate: 0.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            requests: 0,
            timeout: Duration::from_secs(5),
            method: "GET".into(),
            body_bytes: 0,
            expect_bytes: None,
            tool: "echo".into(),
            message: "hi".into(),
            expect_tools: 0,
            ready_file: None,
        }
    }
}

/// A failure with a short excerpt of what came back, for the report.
struct Fail {
    kind: ErrorKind,
    detail: String,
}

impl From<ErrorKind> for Fail {
    fn from(kind: ErrorKind) -> Fail {
        Fail { kind, detail: String::new() }
    }
}

fn fail(kind: ErrorKind, body: &[u8]) -> Fail {
    let n = body.len().min(200);
    Fail { kind, detail: String::from_utf8_lossy(&body[..n]).into_owned() }
}

#[derive(Default)]
struct Stats {
    latency: Histogram,
    service: Histogram,
    ok: u64,
    sent: u64,
    errors: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
    events: u64,
    opened: usize,
    all_open_after: Option<Duration>,
    last_done: Option<Instant>,
}

impl Stats {
    fn error(&mut self, f: Fail) {
        let key = f.kind.key();
        *self.errors.entry(key.clone()).or_default() += 1;
        if !f.detail.is_empty() {
            self.samples.entry(key).or_insert(f.detail);
        }
    }
}

/// One connection's client state.
struct Client<'a> {
    cfg: &'a LoadConfig,
    conn: Option<Conn>,
    session: Option<String>,
    /// The legacy-era `initialize` was done (`session` may still be `None`: a sessionless server).
    initialized: bool,
    id: u64,
}

impl Client<'_> {
    async fn conn(&mut self) -> Result<&mut Conn, Fail> {
        if self.conn.is_none() {
            self.conn = Some(Conn::connect(self.cfg.addr).await?);
        }
        self.conn.as_mut().ok_or_else(|| ErrorKind::Connect.into())
    }

    async fn roundtrip(&mut self, req: Vec<u8>) -> Result<(crate::http::ResponseHead, Vec<u8>), Fail> {
        let c = self.conn().await?;
        c.send(req).await?;
        let (head, body) = c.response().await?;
        if head.close {
            self.conn = None;
        }
        Ok((head, body))
    }

    /// `initialize` + `notifications/initialized`; the new session id.
    async fn open_session(&mut self) -> Result<String, Fail> {
        let (sid, body) = self.initialize().await?;
        sid.ok_or_else(|| fail(ErrorKind::NoSession, &body))
    }

    /// `initialize` + `notifications/initialized`; the session id, `None` from a legacy-era
    /// server that runs without sessions (the spec lets it), and the `initialize` answer.
    async fn initialize(&mut self) -> Result<(Option<String>, Vec<u8>), Fail> {
        let (head, body) = self.roundtrip(mcp::initialize(&self.cfg.target, 0)).await?;
        check_rpc(head.status, head.is_sse(), &body, 0, &Expect::Initialize).map_err(|k| fail(k, &body))?;
        let sid = head.session;
        let (head, notified) = self.roundtrip(mcp::initialized(&self.cfg.target, sid.as_deref())).await?;
        if head.status != 202 {
            return Err(fail(ErrorKind::Status(head.status), &notified));
        }
        Ok((sid, body))
    }

    /// One request of the run's mode, checked.
    async fn exchange(&mut self) -> Result<(), Fail> {
        let cfg = self.cfg;
        let t = &cfg.target;
        match cfg.mode {
            Mode::Http => {
                let mut h = vec![];
                if cfg.body_bytes > 0 {
                    h.push(("content-type", "application/octet-stream"));
                }
                let req = mcp::http_request(&cfg.method, t, &h, &vec![b'x'; cfg.body_bytes]);
                let (head, body) = self.roundtrip(req).await?;
                check_http(head.status, body.len(), cfg.expect_bytes).map_err(|k| fail(k, &body))
            }
            Mode::Call(era) | Mode::List(era) => {
                if era == Era::Legacy && !self.initialized {
                    self.session = self.initialize().await?.0;
                    self.initialized = true;
                }
                self.id += 1;
                let (id, s) = (self.id, self.session.as_deref());
                let (req, expect) = match cfg.mode {
                    Mode::Call(_) => {
                        (mcp::call(t, era, s, id, &cfg.tool, &cfg.message), Expect::Echo(cfg.message.clone()))
                    }
                    _ => (mcp::list(t, era, s, id), Expect::Tools(cfg.expect_tools)),
                };
                let (head, body) = self.roundtrip(req).await?;
                if head.status == 404 {
                    // the session is gone: the next request starts a new one
                    self.initialized = false;
                }
                check_rpc(head.status, head.is_sse(), &body, id, &expect).map(|_| ()).map_err(|k| fail(k, &body))
            }
            Mode::Session { delete } => {
                let sid = self.open_session().await?;
                if delete {
                    let (head, body) = self.roundtrip(mcp::delete(t, &sid)).await?;
                    if !(200..300).contains(&head.status) {
                        return Err(fail(ErrorKind::Status(head.status), &body));
                    }
                }
                Ok(())
            }
            Mode::Streams => Err(ErrorKind::Mismatch.into()),
        }
    }
}

/// Shared by the connection tasks of one run.
struct Run {
    cfg: LoadConfig,
    stats: RefCell<Stats>,
    schedule: Option<Schedule>,
    measure_from: Instant,
    end: Instant,
    claimed: Cell<u64>,
}

impl Run {
    /// Count one finished exchange (those started before the measured window only move `last_done`).
    fn account(&self, start: Instant, sent: Instant, done: Instant, r: Result<(), Fail>) {
        let mut st = self.stats.borrow_mut();
        st.last_done = Some(done);
        if start < self.measure_from {
            return;
        }
        st.sent += 1;
        match r {
            Ok(()) => {
                st.ok += 1;
                st.latency.record((done - start).as_nanos() as u64);
                st.service.record((done - sent).as_nanos() as u64);
            }
            Err(f) => st.error(f),
        }
    }
}

async fn request_loop(run: Rc<Run>, k: usize) {
    let cfg = &run.cfg;
    let mut client = Client { cfg, conn: None, session: None, initialized: false, id: 0 };
    let mut prev_done = Instant::now();
    for i in 0u64.. {
        let due = run.schedule.map(|s| s.intended(k, i));
        let now = Instant::now();
        if now >= run.end || due.is_some_and(|d| d >= run.end) {
            break;
        }
        if cfg.requests > 0 {
            let n = run.claimed.get();
            if n >= cfg.requests {
                break;
            }
            run.claimed.set(n + 1);
        }
        if let Some(d) = due.filter(|d| *d > now) {
            monoio::time::sleep_until(d.into()).await;
        }
        let sent = Instant::now();
        let r = match monoio::time::timeout(cfg.timeout, client.exchange()).await {
            Ok(r) => r,
            Err(_) => {
                // the connection is mid-exchange: start over on a new one
                client.conn = None;
                Err(ErrorKind::Timeout.into())
            }
        };
        let done = Instant::now();
        let start = latency_start(due, prev_done, sent);
        prev_done = done;
        let kind = r.as_ref().err().map(|f| f.kind.clone());
        run.account(start, sent, done, r);
        if kind.as_ref().is_some_and(broken) {
            client.conn = None;
        }
        if kind == Some(ErrorKind::Connect) {
            // don't spin on a refused connect
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// After these the connection is in an unknown state and is not reused.
fn broken(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Connect | ErrorKind::Io | ErrorKind::Closed | ErrorKind::Timeout | ErrorKind::BadHttp)
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

async fn open_stream(client: &mut Client<'_>) -> Result<crate::http::ResponseHead, Fail> {
    let sid = client.open_session().await?;
    let req = mcp::listen(&client.cfg.target, &sid);
    let c = client.conn().await?;
    c.send(req).await?;
    let head = c.response_head().await?;
    if head.status != 200 || !head.is_sse() {
        return Err(ErrorKind::Status(head.status).into());
    }
    Ok(head)
}

async fn stream_loop(run: Rc<Run>, started: Instant) {
    let cfg = &run.cfg;
    let mut client = Client { cfg, conn: None, session: None, initialized: false, id: 0 };
    let head = match monoio::time::timeout(cfg.timeout, open_stream(&mut client)).await {
        Ok(Ok(h)) => h,
        Ok(Err(f)) => return run.stats.borrow_mut().error(f),
        Err(_) => return run.stats.borrow_mut().error(ErrorKind::Timeout.into()),
    };
    {
        let mut st = run.stats.borrow_mut();
        st.opened += 1;
        if st.opened == cfg.conns {
            st.all_open_after = Some(started.elapsed());
            if let Some(p) = &cfg.ready_file {
                let _ = std::fs::write(p, format!("{}\n", st.opened));
            }
        }
    }
    let Some(c) = client.conn.as_mut() else { return };
    let (mut dec, mut ev) = (Chunked::default(), SseEvents::default());
    loop {
        let left = run.end.saturating_duration_since(Instant::now());
        let e = match monoio::time::timeout(left, c.next_event(head.framing, &mut dec, &mut ev)).await {
            Err(_) => return,
            Ok(Err(k)) => return run.stats.borrow_mut().error(k.into()),
            Ok(Ok(e)) => e,
        };
        let Some(t) = event_timestamp(&e) else { continue };
        let now = Instant::now();
        if now >= run.measure_from && now < run.end {
            let mut st = run.stats.borrow_mut();
            st.events += 1;
            st.ok += 1;
            st.latency.record(unix_nanos().saturating_sub(t));
        }
    }
}

/// Raise the open-files limit to its hard maximum (many streams need many sockets).
fn raise_nofile() {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a stack struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Run the load on the current thread's monoio runtime and return the JSON report.
pub async fn run(cfg: LoadConfig) -> Value {
    raise_nofile();
    let started = Instant::now();
    let measure_from = started + cfg.warmup;
    let schedule = (cfg.rate > 0.0 && cfg.mode != Mode::Streams).then_some(Schedule {
        start: started,
        rate: cfg.rate,
        conns: cfg.conns.max(1),
    });
    let run = Rc::new(Run {
        stats: RefCell::new(Stats::default()),
        schedule,
        measure_from,
        end: measure_from + cfg.duration,
        claimed: Cell::new(0),
        cfg,
    });
    let tasks: Vec<_> = (0..run.cfg.conns.max(1))
        .map(|k| {
            let r = run.clone();
            if run.cfg.mode == Mode::Streams {
                monoio::spawn(stream_loop(r, started))
            } else {
                monoio::spawn(request_loop(r, k))
            }
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let cfg = &run.cfg;
    if cfg.mode != Mode::Streams {
        if let Some(p) = &cfg.ready_file {
            let _ = std::fs::write(p, "done\n");
        }
    }
    let st = run.stats.borrow();
    // a run cut short by `requests` is measured up to its last answer
    let window = match (cfg.requests, st.last_done) {
        (n, Some(last)) if n > 0 => last.saturating_duration_since(measure_from),
        _ => cfg.duration,
    }
    .as_secs_f64()
    .max(1e-9);
    let errors: u64 = st.errors.values().sum();
    let mut report = json!({
        "tool": "rg-load",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": cfg.mode.name(),
        "url": format!("http://{}{}", cfg.addr, cfg.target.path),
        "conns": cfg.conns,
        "loop": if schedule.is_some() { "open (fixed rate, latency from the intended send time)" } else { "closed" },
        "rate": if schedule.is_some() { json!(cfg.rate) } else { Value::Null },
        "duration_s": (window * 1000.0).round() / 1000.0,
        "warmup_s": cfg.warmup.as_secs_f64(),
        "ok": st.ok,
        "errors": st.errors,
        "error_total": errors,
        "error_samples": st.samples,
        "throughput_rps": ((st.ok as f64 / window) * 10.0).round() / 10.0,
        "latency_us": st.latency.summary_us(),
    });
    if let Some(s) = schedule {
        let offered = s.offered(cfg.warmup + cfg.duration) - s.offered(cfg.warmup);
        report["offered"] = json!(offered);
        report["sent"] = json!(st.sent);
        report["service_time_us"] = st.service.summary_us();
    }
    if cfg.mode == Mode::Streams {
        report["streams_opened"] = json!(st.opened);
        report["events"] = json!(st.events);
        report["all_open_after_s"] = json!(st.all_open_after.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0));
        report["note"] = json!("latency_us is event latency: receive time minus the fixture's send timestamp");
    }
    report
}

/// Build a monoio runtime (io_uring, else epoll) with timers and run `f` on it.
pub fn block_on<F, Fut>(f: F) -> Fut::Output
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future,
{
    let uring = std::env::var("RG_DRIVER").map_or(true, |d| d != "legacy");
    if uring {
        if let Ok(mut rt) =
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(4096).enable_timer().build()
        {
            return rt.block_on(f());
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("cannot start a monoio runtime: {e}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for m in [
            Mode::Http,
            Mode::Call(Era::Legacy),
            Mode::Call(Era::Modern),
            Mode::List(Era::Legacy),
            Mode::List(Era::Modern),
            Mode::Session { delete: true },
            Mode::Session { delete: false },
            Mode::Streams,
        ] {
            assert_eq!(Mode::parse(m.name()), Some(m));
        }
        assert_eq!(Mode::parse("nope"), None);
    }
}
