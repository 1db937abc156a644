//! The third-party MCP peers of `tests/peers/` (installed under target/peers by its install scripts): paths, free ports, and peer servers that are killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// Start a peer listening on `port` and wait until it accepts connections.
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
    let p = PeerServer(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "peer {} did not listen on {port}", cmd.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}
