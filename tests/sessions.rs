//! MCP client sessions across shards and replicas through the real binary: upstream sessions a real Python `mcp` server forgets are renewed, replicas sharing a key serve each other's sessions, and the idle TTL counts use on any shard.
//!
//! The peers come from `tests/peers/install.sh` (run by `test.sh`); a missing peer fails the test.

mod common;

use std::time::{Duration, Instant};

use common::mcp::*;
use common::peers::*;
use common::*;

const KEY: &str = "5e55105e55105e55105e55105e55105e55105e55105e55105e55105e55105e55";

fn gateway_with(settings: &str, targets: &str) -> Gateway {
    Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\n{settings}binds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n          - name: demo\n            demo: {{}}\n{targets}"
    ))
}

fn py_target(port: u16) -> String {
    format!("          - name: py\n            mcp: {{ host: \"http://127.0.0.1:{port}/mcp\" }}\n")
}

/// The Python `mcp` 2.3.0 peer: stateful Streamable HTTP, sessions kept in memory only.
fn start_py(port: u16) -> PeerServer {
    let script = root().join("tests/peers/py_server.py");
    start_peer(&peer("py/bin/python"), &[script.to_str().unwrap(), "--port", &port.to_string()], &[], port)
}

const RENEWED: &str = "upstream session expired, re-initialized";

#[test]
fn an_upstream_session_the_target_forgot_is_renewed_once_for_every_shard() {
    let port = free_port();
    let py = start_py(port);
    let gw = gateway_with("", &py_target(port));
    let addr = gw.addr();
    let sid = initialize(addr);
    assert_eq!(call(addr, &sid, "py_echo", "before"), Ok("Echo: before".into()));

    // the server restarts and forgets every session; the client's sealed id still names the old one
    drop(py);
    let _py = start_py(port);
    for i in 0..20 {
        assert_eq!(call(addr, &sid, "py_echo", &format!("after {i}")), Ok(format!("Echo: after {i}")), "call {i}");
    }
    gw.wait_metric("ringgate_connections_total{shard=\"0\"}");
    gw.wait_metric("ringgate_connections_total{shard=\"1\"}");
    gw.wait_line(RENEWED);
    assert_eq!(gw.count_lines(RENEWED), 1, "one renewal, used by both shards: {:?}", gw.lines.lock().unwrap());
    // the other target of the session was left alone, and lists reach the renewed session too
    assert_eq!(call(addr, &sid, "demo_echo", "hi"), Ok("hi".into()));
    assert!(tool_names(addr, &sid).contains(&"py_echo".to_string()));

    // a DELETE ends the renewed upstream session too: the server no longer knows it
    let del = raw(addr, format!("DELETE /mcp HTTP/1.1\r\nhost: t\r\nmcp-session-id: {sid}\r\n\r\n").as_bytes());
    assert_eq!(del.status, 200);
    assert_eq!(post(addr, Some(&sid), r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#).status, 404);
}

#[test]
fn replicas_with_one_key_serve_each_others_sessions_and_renew_on_their_own() {
    let port = free_port();
    let py = start_py(port);
    let settings = format!("  session:\n    key: {KEY}\n");
    let (a, b) = (gateway_with(&settings, &py_target(port)), gateway_with(&settings, &py_target(port)));
    let sid = initialize(a.addr());
    for i in 0..10 {
        let replica = if i % 2 == 0 { a.addr() } else { b.addr() };
        assert_eq!(call(replica, &sid, "py_echo", &format!("m{i}")), Ok(format!("Echo: m{i}")), "post {i}");
        assert_eq!(call(replica, &sid, "demo_echo", "d"), Ok("d".into()));
    }
    // the upstream forgets the session: each replica renews it on its own, once
    drop(py);
    let _py = start_py(port);
    for i in 0..6 {
        let replica = if i % 2 == 0 { a.addr() } else { b.addr() };
        assert_eq!(call(replica, &sid, "py_echo", &format!("r{i}")), Ok(format!("Echo: r{i}")), "post {i}");
    }
    for gw in [&a, &b] {
        gw.wait_line(RENEWED);
        assert_eq!(gw.count_lines(RENEWED), 1, "{:?}", gw.lines.lock().unwrap());
    }
    // a gateway with another key does not know the session
    let other = gateway_with(
        "  session:\n    key: 0000000000000000000000000000000000000000000000000000000000000001\n",
        &py_target(port),
    );
    let r = post(other.addr(), Some(&sid), r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
    assert_eq!(r.status, 404, "{}", r.body_str());
}

#[test]
fn a_session_in_use_on_one_shard_stays_alive_on_the_other_past_the_ttl() {
    let ttl = Duration::from_secs(2);
    let gw = gateway_with("  mcp:\n    sessionTtl: 2s\n", "");
    let addr = gw.addr();
    let sid = initialize(addr);
    // one keep-alive connection (one shard) uses the session for longer than the TTL
    let mut c = Client::connect(addr);
    let list = format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-session-id: {sid}\r\ncontent-length: 46\r\n\r\n{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}}"
    );
    let start = Instant::now();
    while start.elapsed() < ttl * 2 {
        assert_eq!(c.send(list.as_bytes()).unwrap().status, 200);
        // paced so the session is never idle for half a TTL on that shard
        std::thread::sleep(ttl / 8);
    }
    // new connections land on both shards: the shard that never served it learns from the other
    for i in 0..20 {
        let r = post(addr, Some(&sid), r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
        assert_eq!(r.status, 200, "request {i}: {}", r.body_str());
    }
    gw.wait_metric("ringgate_connections_total{shard=\"0\"}");
    gw.wait_metric("ringgate_connections_total{shard=\"1\"}");
    // unused for longer than the TTL on every shard: gone (waiting is the point here)
    std::thread::sleep(ttl + Duration::from_millis(1100));
    for i in 0..4 {
        let r = post(addr, Some(&sid), r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
        assert_eq!(r.status, 404, "request {i}: {}", r.body_str());
    }
}
