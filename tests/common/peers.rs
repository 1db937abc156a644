//! The third-party MCP peers of `tests/peers/` (installed under target/peers by its install scripts): paths, free ports, and peer servers that are killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An installed peer under target/peers; a missing one fails the test.
pub fn peer(rel: &str) -> PathBuf {
    let p = root().join("target/peers").join(rel);
    assert!(p.exists(), "{} is missing: run tests/peers/install.sh and tests/peers/install_interop.sh", p.display());
    p
}

/// server-everything's launcher.
pub fn everything() -> PathBuf {
    peer("node/node_modules/.bin/mcp-server-everything")
}

/// A free loopback port for a peer that cannot report the port it bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A peer server process, killed on drop.
pub struct PeerServer(pub Child);

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a peer server that listens on `port` and waits until it does.
pub fn start_peer(cmd: &Path, args: &[&str], env: &[(&str, String)], port: u16) -> PeerServer {
    start_peer_logged(cmd, args, env, port, None)
}

/// `start_peer`, with the peer's stdout and stderr written to `log`.
pub fn start_peer_logged(
    cmd: &Path,
    args: &[&str],
    env: &[(&str, String)],
    port: u16,
    log: Option<&Path>,
) -> PeerServer {
    try_start_peer(cmd, args, env, port, log).unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a peer on a free port, written wherever `{port}` appears in `args` or `env` values, and
/// returns it with the port. A port handed out by `free_port` can be taken by another process before
/// the peer binds it; the peer then exits, and it is started again on another port.
pub fn start_peer_on_free_port(cmd: &Path, args: &[&str], env: &[(&str, &str)]) -> (PeerServer, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let fill = |s: &str| s.replace("{port}", &port.to_string());
        let args: Vec<String> = args.iter().map(|a| fill(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, fill(v))).collect();
        match try_start_peer(cmd, &args, &env, port, None) {
            Ok(p) => return (p, port),
            Err(e) => last = e,
        }
    }
    panic!("{last}")
}

/// Starts the peer and waits until it (or a process it started) holds the listening socket on `port`:
/// a connection alone could reach another process that took the port.
fn try_start_peer(
    cmd: &Path,
    args: &[&str],
    env: &[(&str, String)],
    port: u16,
    log: Option<&Path>,
) -> Result<PeerServer, String> {
    let out = || match log {
        Some(p) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap()),
        None => Stdio::null(),
    };
    let child = Command::new(cmd)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(out())
        .stderr(out())
        .spawn()
        .expect("start peer");
    let mut p = PeerServer(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = p.0.try_wait() {
            return Err(format!("peer {} exited ({status}) before listening on {port}", cmd.display()));
        }
        if TcpStream::connect(addr).is_ok() && listens_on(p.0.id(), port) {
            return Ok(p);
        }
        if Instant::now() > deadline {
            return Err(format!("peer {} did not listen on {port}", cmd.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` or one of its descendants holds a listening TCP socket on `port`.
fn listens_on(pid: u32, port: u16) -> bool {
    let inodes = listening_inodes(port);
    let mut pids = vec![pid];
    while let Some(pid) = pids.pop() {
        let owns = std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| {
                let l = l.to_string_lossy();
                l.strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .is_some_and(|i| inodes.contains(&i.to_string()))
            })
        });
        if owns {
            return true;
        }
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    false
}

/// The socket inodes of the TCP sockets listening on `port` (IPv4 and IPv6), from /proc/net.
fn listening_inodes(port: u16) -> Vec<String> {
    let hex_port = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is column 1, st column 3 (0A = LISTEN), inode column 9
            if cols.len() > 9 && cols[1].ends_with(&hex_port) && cols[3] == "0A" {
                inodes.push(cols[9].to_string());
            }
        }
    }
    inodes
}

/// Run the Python `mcp` 2.x client script (tests/peers/mcp_client.py) in `mode`: its JSON output
/// and its exit status.
pub fn py_client(url: &str, mode: &str, args: &[&str]) -> (serde_json::Value, i32) {
    let out: Output = Command::new(peer("py/bin/python"))
        .arg(root().join("tests/peers/mcp_client.py"))
        .args(["--url", url, "--mode", mode, "--timeout", "30"])
        .args(args)
        .output()
        .expect("run mcp_client.py");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("client printed no JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        // shown with the test's output when it fails
        eprintln!("mcp_client.py {args:?} exited {code}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (v, code)
}

/// `tests/peers/py_server.py` (the Python `mcp` 2.3.0 server: stateful Streamable HTTP, sessions in
/// memory) on `port`, with `args` after `--port`.
pub fn py_server(port: u16, args: &[&str]) -> PeerServer {
    let script = root().join("tests/peers/py_server.py");
    let port_arg = port.to_string();
    let argv: Vec<&str> =
        [script.to_str().unwrap(), "--port", &port_arg].into_iter().chain(args.iter().copied()).collect();
    start_peer(&peer("py/bin/python"), &argv, &[], port)
}

/// [`py_client`] that must succeed: its JSON output.
pub fn py_ok(url: &str, mode: &str, args: &[&str]) -> serde_json::Value {
    let (v, code) = py_client(url, mode, args);
    assert_eq!(code, 0, "{mode} {args:?}: {v}");
    v
}
