//! MCP client sessions across shards and replicas through the real binary: upstream sessions a real Python `mcp` server forgets are renewed, replicas sharing a key serve each other's sessions, and the idle TTL counts use on any shard.
//!
//! The peers come from `tests/peers/install.sh` (run by `test.sh`); a missing peer fails the test.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::mcp::*;
use common::peers::*;
use common::*;

const KEY: &str = "5e55105e55105e55105e55105e55105e55105e55105e55105e55105e55105e55";

fn gateway_with(settings: &str, targets: &str) -> Gateway {
    gateway_on(2, settings, targets)
}

fn gateway_on(workers: usize, settings: &str, targets: &str) -> Gateway {
    Gateway::start(&format!(
        "config:\n  workers: {workers}\n  adminAddr: 127.0.0.1:0\n{settings}binds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n          - name: demo\n            demo: {{}}\n{targets}"
    ))
}

fn py_target(port: u16) -> String {
    format!("          - name: py\n            mcp: {{ host: \"http://127.0.0.1:{port}/mcp\" }}\n")
}

const RENEWED: &str = "upstream session expired, re-initialized";

/// What [`Forgetful`] shares between its connections and the test.
#[derive(Default)]
struct Upstreams {
    /// Sessions it knows.
    live: HashSet<String>,
    /// `initialize` requests of the client's (the gateway's own pooled session aside) received,
    /// each session named `up-{n}` after its number `n` among them.
    inits: usize,
    /// How many of those may be answered: later ones are held until it grows.
    gate: usize,
    /// Requests refused with 404 (a session it does not know).
    not_found: usize,
    /// `initialize` requests of the gateway's own pooled session received.
    pooled_inits: usize,
    /// Whether those are held.
    hold_pooled: bool,
    /// Sessions ended by DELETE.
    deleted: Vec<String>,
    /// The session of each `tools/call` answered.
    calls: Vec<String>,
}

/// A stateful Streamable HTTP MCP target in this process that can forget its sessions: `tools/call`
/// echoes `Echo: {message}`, a client's `initialize` can be held, and everything is counted.
struct Forgetful {
    addr: SocketAddr,
    st: Arc<Mutex<Upstreams>>,
}

impl Forgetful {
    fn start() -> Forgetful {
        let st = Arc::new(Mutex::new(Upstreams { gate: usize::MAX, ..Upstreams::default() }));
        let s = st.clone();
        let addr = serve_requests(move |head, body| Some(Forgetful::answer(&s, head, body)));
        Forgetful { addr, st }
    }

    fn answer(st: &Mutex<Upstreams>, head: &str, body: &[u8]) -> Vec<u8> {
        let session = head_header(head, "mcp-session-id");
        let reply = |status: &str, extra: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        if head.starts_with("DELETE") {
            let mut g = st.lock().unwrap();
            if let Some(s) = session {
                g.live.remove(&s);
                g.deleted.push(s);
            }
            return reply("200 OK", "", "");
        }
        if head.starts_with("GET") {
            return reply("405 Method Not Allowed", "", "");
        }
        let msg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if msg["method"] == "initialize" {
            let s = if msg["params"]["clientInfo"]["name"] == "ringgate" {
                st.lock().unwrap().pooled_inits += 1;
                while st.lock().unwrap().hold_pooled {
                    std::thread::sleep(Duration::from_millis(2));
                }
                "pooled".to_string()
            } else {
                let n = {
                    let mut g = st.lock().unwrap();
                    g.inits += 1;
                    g.inits
                };
                while n > st.lock().unwrap().gate {
                    std::thread::sleep(Duration::from_millis(2));
                }
                // fixed width: the ids order as their numbers do
                format!("up-{n:04}")
            };
            st.lock().unwrap().live.insert(s.clone());
            let out = json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}}, "serverInfo": {"name": "forgetful", "version": "1"}}});
            return reply("200 OK", &format!("mcp-session-id: {s}\r\n"), &out.to_string());
        }
        let mut g = st.lock().unwrap();
        if !session.is_some_and(|s| g.live.contains(&s)) {
            g.not_found += 1;
            return reply(
                "404 Not Found",
                "",
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#,
            );
        }
        let Some(id) = msg.get("id") else { return reply("202 Accepted", "", "") };
        let result = match msg["method"].as_str() {
            Some("tools/call") => {
                g.calls.push(head_header(head, "mcp-session-id").unwrap_or_default());
                json!({"content": [{"type": "text", "text": format!("Echo: {}", msg["params"]["arguments"]["message"].as_str().unwrap_or(""))}]})
            }
            Some("tools/list") => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
            _ => json!({}),
        };
        reply("200 OK", "", &json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
    }

    fn target(&self) -> String {
        format!("          - name: fx\n            mcp: {{ host: \"http://{}/mcp\" }}\n", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Upstreams) -> R) -> R {
        f(&mut self.st.lock().unwrap())
    }
}

/// Forget every session and hold the client's `initialize` from now on.
fn forget_and_hold(fx: &Forgetful) {
    fx.with(|u| {
        u.live.clear();
        u.gate = u.inits;
        u.not_found = 0;
    });
}

/// A `tools/call` of `fx_echo` with `text` on session `sid`, on a new connection, in a thread.
fn call_in_thread(addr: SocketAddr, sid: &str, text: String) -> std::thread::JoinHandle<Result<String, Value>> {
    let sid = sid.to_string();
    std::thread::spawn(move || call(addr, &sid, "fx_echo", &text))
}

/// Concurrent calls on `sid` after `fx` forgot every session (its `initialize` held until each
/// call was refused once); each call's answer.
fn calls_after_forgetting(fx: &Forgetful, addr: SocketAddr, n: usize, sid: &str) -> Vec<Result<String, Value>> {
    forget_and_hold(fx);
    let calls: Vec<_> = (0..n).map(|i| call_in_thread(addr, sid, format!("c{i}"))).collect();
    wait_until("every call to be refused", || fx.with(|u| u.not_found) == n);
    fx.with(|u| u.gate = usize::MAX);
    calls.into_iter().map(|c| c.join().unwrap()).collect()
}

/// Requests shard 0 is serving, by `ringgate_active_requests`.
fn active_requests(gw: &Gateway) -> u64 {
    let m = gw.metrics();
    let p = "ringgate_active_requests{shard=\"0\"} ";
    m.lines().find_map(|l| l.strip_prefix(p).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

/// Connections each shard has accepted, by `ringgate_connections_total`.
fn connections(gw: &Gateway) -> [u64; 2] {
    let m = gw.metrics();
    let n = |s: usize| {
        let p = format!("ringgate_connections_total{{shard=\"{s}\"}} ");
        m.lines().find_map(|l| l.strip_prefix(&p).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
    };
    [n(0), n(1)]
}

#[test]
fn concurrent_calls_on_a_shard_renew_a_forgotten_upstream_session_once() {
    const N: usize = 6;
    let fx = Forgetful::start();
    let gw = gateway_on(1, "", &fx.target());
    let addr = gw.addr();
    let sid = initialize(addr);
    assert_eq!(call(addr, &sid, "fx_echo", "before"), Ok("Echo: before".into()));
    // the shard's pooled upstream session and the client's own
    let inits = fx.with(|u| u.inits);
    let answers = calls_after_forgetting(&fx, addr, N, &sid);
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a, Ok(format!("Echo: c{i}")), "call {i}");
    }
    assert_eq!(fx.with(|u| u.inits), inits + 1, "one new upstream session for every waiting call");
    assert_eq!(gw.count_lines(RENEWED), 1);
    assert_eq!(call(addr, &sid, "fx_echo", "after"), Ok("Echo: after".into()));
    assert_eq!(fx.with(|u| u.inits), inits + 1);
}

#[test]
fn concurrent_first_requests_on_a_shard_set_up_one_pooled_upstream_session() {
    const N: usize = 6;
    let fx = Forgetful::start();
    fx.with(|u| u.hold_pooled = true);
    let gw = gateway_on(1, "", &fx.target());
    let addr = gw.addr();
    // 2026-07-28 clients share the shard's pooled session with a legacy target
    let calls: Vec<_> =
        (0..N).map(|i| std::thread::spawn(move || modern_call(addr, "fx_echo", &format!("c{i}")))).collect();
    wait_until("every request to be in the gateway", || active_requests(&gw) == N as u64);
    fx.with(|u| u.hold_pooled = false);
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.join().unwrap(), format!("Echo: c{i}"));
    }
    assert_eq!(fx.with(|u| u.pooled_inits), 1, "one pooled upstream session for all of them");
    assert_eq!(modern_call(addr, "fx_echo", "after"), "Echo: after");
    assert_eq!(fx.with(|u| u.pooled_inits), 1);
}

#[test]
fn of_two_shards_renewing_one_forgotten_upstream_session_the_later_ends_its_own() {
    let fx = Forgetful::start();
    let gw = gateway_with("", &fx.target());
    let addr = gw.addr();
    let sid = initialize(addr);
    assert_eq!(call(addr, &sid, "fx_echo", "before"), Ok("Echo: before".into()));
    let inits = fx.with(|u| u.inits);
    forget_and_hold(&fx);
    // calls on new connections until each shard has one waiting on its own renewal
    let base = connections(&gw);
    let mut calls = Vec::new();
    while connections(&gw).iter().zip(base).any(|(now, then)| *now == then) {
        assert!(calls.len() < 64, "new connections never reached both shards");
        let total = |c: [u64; 2]| c[0] + c[1];
        calls.push(call_in_thread(addr, &sid, format!("c{}", calls.len())));
        wait_until("the call's connection to be counted", || {
            total(connections(&gw)) == total(base) + calls.len() as u64
        });
    }
    wait_until("both shards to renew", || fx.with(|u| u.inits) == inits + 2);
    // one shard's renewal is answered first, and every shard learns of it before its calls go on
    let first = format!("up-{:04}", inits + 1);
    fx.with(|u| u.gate = inits + 1);
    wait_until("a call on the first renewal", || fx.with(|u| u.calls.contains(&first)));
    fx.with(|u| u.gate = usize::MAX);
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.join().unwrap(), Ok(format!("Echo: c{i}")), "call {i}");
    }
    let second = format!("up-{:04}", inits + 2);
    assert_eq!(fx.with(|u| u.deleted.clone()), std::slice::from_ref(&second), "the later renewal was ended unused");
    assert_eq!(gw.count_lines(RENEWED), 2);
    // every shard uses the first from now on
    let used = fx.with(|u| u.calls.len());
    for i in 0..12 {
        assert_eq!(call(addr, &sid, "fx_echo", &format!("a{i}")), Ok(format!("Echo: a{i}")));
    }
    assert!(fx.with(|u| u.calls[used..].iter().all(|s| *s == first)), "{:?}", fx.with(|u| u.calls.clone()));
    assert_eq!(fx.with(|u| u.inits), inits + 2);
    assert!(!fx.with(|u| u.calls.contains(&second)), "nobody used the ended one");
}

#[test]
fn an_upstream_session_the_target_forgot_is_renewed_once_for_every_shard() {
    let port = free_port();
    let py = py_server(port, &[]);
    let gw = gateway_with("", &py_target(port));
    let addr = gw.addr();
    let sid = initialize(addr);
    assert_eq!(call(addr, &sid, "py_echo", "before"), Ok("Echo: before".into()));

    // the server restarts and forgets every session; the client's sealed id still names the old one
    drop(py);
    let _py = py_server(port, &[]);
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
    let py = py_server(port, &[]);
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
    let _py = py_server(port, &[]);
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
