//! Test harness: runs the real `ringgate` binary on port-0 configs, small std upstreams, and a raw HTTP/1.1 client.
#![allow(dead_code)]

pub mod mcp;
pub mod peers;
pub mod seccomp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running gateway process.
pub struct Gateway {
    pub child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub admin: SocketAddr,
    /// configured bind port → bound address, in config order
    pub binds: Vec<SocketAddr>,
    pub lines: Arc<Mutex<Vec<String>>>,
    line_rx: mpsc::Receiver<String>,
}

/// A fresh directory under the system temp dir, unique per test process and call.
pub fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "ringgate-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Extra CLI args from the environment: the suite runs once per driver.
fn driver_args() -> Vec<String> {
    match std::env::var("RINGGATE_TEST_DRIVER") {
        Ok(d) if !d.is_empty() => vec!["--driver".into(), d],
        _ => vec![],
    }
}

impl Gateway {
    /// Start with `yaml` (which should use port 0 binds and `adminAddr: 127.0.0.1:0`).
    pub fn start(yaml: &str) -> Gateway {
        Self::start_args(yaml, &[])
    }

    pub fn start_args(yaml: &str, args: &[&str]) -> Gateway {
        let dir = tempdir();
        let config = dir.join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_file(dir, config, args)
    }

    /// Start with the config file `config` already in place (a symlink, say) under `dir`, which
    /// is removed on drop.
    pub fn start_file(dir: PathBuf, config: PathBuf, args: &[&str]) -> Gateway {
        Self::start_with(dir, config, args, &[], |c| c)
    }

    /// Start with `yaml` and these environment variables set.
    pub fn start_env(yaml: &str, envs: &[(&str, &str)]) -> Gateway {
        let dir = tempdir();
        let config = dir.join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_with(dir, config, &[], envs, |c| c)
    }

    /// Start with `yaml` and `args` in a process whose io_uring syscalls fail with EPERM, as in a
    /// container under Docker's default seccomp profile.
    pub fn start_without_io_uring(yaml: &str, args: &[&str]) -> Gateway {
        let dir = tempdir();
        let config = dir.join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        // the filter, not a forced legacy driver, is what must make it fall back
        Self::start_with(dir, config, args, &[], |c| seccomp::deny_io_uring(c.env_remove("MONOIO_FORCE_LEGACY_DRIVER")))
    }

    fn start_with(
        dir: PathBuf,
        config: PathBuf,
        args: &[&str],
        envs: &[(&str, &str)],
        prepare: fn(&mut Command) -> &mut Command,
    ) -> Gateway {
        let mut child = prepare(&mut Command::new(env!("CARGO_BIN_EXE_ringgate")))
            .arg("-c")
            .arg(&config)
            .args(driver_args())
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringgate");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, line_rx) = mpsc::channel();
        for r in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let lines = lines.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l.clone());
                    let _ = tx.send(l);
                }
            });
        }
        let mut g = Gateway { child, dir, config, admin: "0.0.0.0:0".parse().unwrap(), binds: vec![], lines, line_rx };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = g
                .line_rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("gateway did not start: {:?}", g.lines.lock().unwrap()));
            if let Some(a) = l.split("listening bind=").nth(1) {
                let addr = a.split("address=").nth(1).unwrap().trim().parse().unwrap();
                g.binds.push(addr);
            }
            if let Some(a) = l.split("admin listening address=").nth(1) {
                g.admin = a.trim().parse().unwrap();
                break;
            }
        }
        g
    }

    pub fn addr(&self) -> SocketAddr {
        self.binds[0]
    }

    /// Wait until a stdout/stderr line contains `needle`.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.line_rx.recv_timeout(left.min(Duration::from_millis(200))).is_err() && left.is_zero() {
                panic!("no line containing {needle:?}: {:?}", self.lines.lock().unwrap());
            }
        }
    }

    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics").body_str()
    }

    /// Metrics are counted after the response is written: poll until `needle` shows up.
    pub fn wait_metric(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.metrics();
            if m.contains(needle) {
                return m;
            }
            assert!(Instant::now() < deadline, "metric {needle:?} never appeared: {m}");
            std::thread::yield_now();
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Replace the config file (the gateway polls it).
    pub fn rewrite_config(&self, yaml: &str) {
        let tmp = self.dir.join("next.yaml");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // what the gateway said last, to read next to the failed assertion
            let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            let from = lines.len().saturating_sub(40);
            eprintln!("--- last gateway log lines ---\n{}", lines[from..].join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server (tests/peers/install_redis.sh puts it under target/peers/redis) on a loopback port, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

fn redis_binary() -> String {
    let path = std::env::var("RINGGATE_REDIS_SERVER")
        .unwrap_or_else(|_| format!("{}/target/peers/redis/bin/redis-server", env!("CARGO_MANIFEST_DIR")));
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run tests/peers/install_redis.sh (or set RINGGATE_REDIS_SERVER)"
    );
    path
}

impl RedisServer {
    /// On a free port. redis cannot listen on port 0: the kernel picks a free port and it is handed over;
    /// another process may grab it in between, so a failed start is retried on a new port.
    pub fn start() -> RedisServer {
        let mut log = String::new();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            match Self::start_on(port) {
                Ok(s) => return s,
                Err(l) => log.push_str(&l),
            }
        }
        panic!("redis-server did not start:\n{log}");
    }

    /// On `port`, once it says it is ready; its log when it exits instead.
    pub fn start_on(port: u16) -> Result<RedisServer, String> {
        let mut child = Command::new(redis_binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut log = String::new();
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            log.push_str(&line);
            if line.contains("Ready to accept connections") {
                // Keep draining its log so redis never blocks on a full pipe.
                std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
                return Ok(RedisServer { child, port });
            }
            line.clear();
        }
        let _ = child.wait();
        Err(log)
    }

    /// Runs one inline command (`CLIENT PAUSE 500 ALL`) and returns the first line of its reply.
    pub fn command(&self, line: &str) -> String {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (&s).write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one response from `r`. `head_request` for HEAD.
pub fn read_response<R: BufRead>(r: &mut R) -> std::io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').unwrap();
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let resp = Response { status, headers, body: vec![] };
    let mut body = vec![];
    if let Some(cl) = resp.header("content-length") {
        body.resize(cl.parse().unwrap(), 0);
        r.read_exact(&mut body)?;
    } else if resp.header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut sz = String::new();
            r.read_line(&mut sz)?;
            let n = usize::from_str_radix(sz.trim().split(';').next().unwrap(), 16).unwrap();
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        r.read_to_end(&mut body)?;
    }
    Ok(Response { body, ..resp })
}

/// A keep-alive client connection.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }
    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<Response> {
        self.w.write_all(raw)?;
        read_response(&mut self.r)
    }
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes()).unwrap()
    }
    /// True when the server closed the connection (EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).get(path)
}

pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    Client::connect(addr).send(bytes).unwrap()
}

/// A std upstream. Echo: answers `{name} {METHOD} {target}` plus request headers and body.
/// Special paths: `/status/N` answers N; `/slow/MS` sleeps first; `/sse` streams two events,
/// the second only after `release` is signalled; `/flaky` answers 503 on odd calls.
pub struct Upstream {
    pub addr: SocketAddr,
    pub release: mpsc::Sender<()>,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
}

pub fn upstream(name: &'static str) -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (release, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h2 = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let rx = rx.clone();
            let hits = h2.clone();
            std::thread::spawn(move || serve_upstream(name, s, rx, hits));
        }
    });
    Upstream { addr, release, hits }
}

fn serve_upstream(
    name: &str,
    s: TcpStream,
    rx: Arc<Mutex<mpsc::Receiver<()>>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = String::new();
        let mut cl = 0usize;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                cl = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            headers.push_str(&lower);
        }
        let mut body = vec![0; cl];
        r.read_exact(&mut body).unwrap();
        if chunked {
            loop {
                let mut sz = String::new();
                r.read_line(&mut sz).unwrap();
                let n = usize::from_str_radix(sz.trim().split(';').next().unwrap(), 16).unwrap();
                let mut c = vec![0; n + 2];
                r.read_exact(&mut c).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&c[..n]);
            }
        }
        let n = hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if target == "/sse" {
            let _ = w
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
            let ev = b"data: first\n\n";
            let _ = w.write_all(format!("{:x}\r\n", ev.len()).as_bytes());
            let _ = w.write_all(ev);
            let _ = w.write_all(b"\r\n");
            let _ = w.flush();
            let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
            let ev = b"data: second\n\n";
            let _ = w.write_all(format!("{:x}\r\n{}\r\n0\r\n\r\n", ev.len(), String::from_utf8_lossy(ev)).as_bytes());
            continue;
        }
        let mut status = 200;
        if let Some(code) = target.strip_prefix("/status/") {
            status = code.parse().unwrap_or(200);
        }
        if let Some(ms) = target.strip_prefix("/slow/") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(100)));
        }
        if target == "/flaky" && n.is_multiple_of(2) {
            status = 503;
        }
        let mut out = format!("{name} {method} {target}\n{headers}\n").into_bytes();
        out.extend_from_slice(&body);
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-upstream: {name}\r\nconnection: keep-alive, x-hop\r\nx-hop: secret\r\nkeep-alive: timeout=5\r\n\r\n",
            out.len()
        );
        if w.write_all(resp.as_bytes()).is_err() || w.write_all(&out).is_err() {
            return;
        }
    }
}

/// The next request head (its lines as received, CRLFs kept, through the blank line), or `None`
/// when the peer closed first.
pub fn read_head<R: BufRead>(r: &mut R) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// A std HTTP/1.1 server on a loopback port 0, a thread per connection: each request's head (its
/// lines as received, CRLFs kept) and Content-Length body go to `answer`, whose bytes are written
/// back. Connections are kept alive, except after an HTTP/1.0 request or when `answer` gives `None`.
pub fn serve_requests<F>(answer: F) -> SocketAddr
where
    F: Fn(&str, &[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                while let Some(head) = read_head(&mut r) {
                    let mut body = vec![0; head_header(&head, "content-length").map_or(0, |v| v.parse().unwrap())];
                    r.read_exact(&mut body).unwrap();
                    let http10 = head.lines().next().is_some_and(|l| l.ends_with("HTTP/1.0"));
                    match answer(&head, &body) {
                        Some(resp) if w.write_all(&resp).is_ok() && !http10 => {}
                        _ => return,
                    }
                }
            });
        }
    });
    addr
}

/// The first value of header `name` in a request head, trimmed.
pub fn head_header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v.trim().to_string())
}

/// A std upstream that answers one request per connection (`ok {METHOD} {target} {body}`) and then
/// closes it without saying so (no `Connection: close`), as an upstream whose keep-alive idle
/// timeout fired does. The counter is the connections it has closed.
pub fn closing_upstream() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = closed.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let closed = c.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                if let Some(head) = read_head(&mut r) {
                    let mut body = vec![0; head_header(&head, "content-length").map_or(0, |v| v.parse().unwrap())];
                    if head_header(&head, "transfer-encoding").is_some() {
                        // the test's chunked bodies are one chunk: size line, data, then the end
                        let mut sz = String::new();
                        r.read_line(&mut sz).unwrap();
                        body = vec![0; usize::from_str_radix(sz.trim(), 16).unwrap() + 2];
                        r.read_exact(&mut body).unwrap();
                        body.truncate(body.len() - 2);
                        let mut end = String::new();
                        while end != "\r\n" {
                            end.clear();
                            r.read_line(&mut end).unwrap();
                        }
                    } else {
                        r.read_exact(&mut body).unwrap();
                    }
                    let line = head.lines().next().unwrap_or("");
                    let mut parts = line.split_whitespace();
                    let text = format!(
                        "ok {} {} {}",
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                        String::from_utf8_lossy(&body)
                    );
                    let mut w = s;
                    let _ = write!(w, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len());
                    drop(w);
                }
                drop(r);
                closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (addr, closed)
}

/// Poll `cond` until it holds, failing with `what` after 10 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
