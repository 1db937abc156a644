//! Per-client-session stdio targets through the real binary (`workers: 2`): a process per session, ended with it, capped; what it asks and tells relayed to its client; cancellation of stdio requests in both protocol eras.
//!
//! The stdio server is `tests/peers/session_server.py` (stdlib Python); server-everything and the
//! Python `mcp` client come from `tests/peers/install.sh`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mcp::{post_request, post_with};
use common::peers::*;
use common::*;
use serde_json::{json, Value};

fn gateway(targets: &str) -> Gateway {
    Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n{targets}"
    ))
}

/// A target running session_server.py, with extra target fields (`upstreamMode`, `maxSessions`).
fn session_target(name: &str, extra: &str) -> String {
    let script = root().join("tests/peers/session_server.py");
    format!(
        "          - name: {name}\n            stdio: {{ cmd: python3, args: [\"{}\"] }}\n{extra}",
        script.display()
    )
}

/// The JSON-RPC messages of a response: its JSON body, or the data of its SSE events.
fn messages(r: &Response) -> Vec<Value> {
    let body = r.body_str();
    if r.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")) {
        body.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect()
    } else {
        vec![serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))]
    }
}

/// The last message of a response (the answer).
fn answer(r: &Response) -> Value {
    messages(r).pop().unwrap()
}

fn initialize(addr: SocketAddr, capabilities: &str) -> Result<String, Value> {
    let r = post_with(
        addr,
        "/mcp",
        &[],
        &format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{capabilities},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    match r.header("mcp-session-id") {
        Some(s) => Ok(s.to_string()),
        None => Err(answer(&r)),
    }
}

fn call(addr: SocketAddr, sid: &str, tool: &str) -> Value {
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#);
    answer(&post_with(addr, "/mcp", &[("mcp-session-id", sid)], &body))
}

fn text(v: &Value) -> String {
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text result: {v}")).to_string()
}

fn delete(addr: SocketAddr, sid: &str) -> Response {
    raw(addr, format!("DELETE /mcp HTTP/1.1\r\nhost: t\r\nmcp-session-id: {sid}\r\n\r\n").as_bytes())
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A 2026-07-28 request (no session).
fn modern_call(tool: &str) -> String {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    post_request(
        "/mcp",
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", tool)],
        &body,
    )
}

/// The gateway's log line for what a target's stderr said, waited for: the `n`th (from 0) line
/// containing `needle`.
fn nth_line(gw: &Gateway, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = gw.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).nth(n) {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no line {n} containing {needle:?}: {:?}", gw.lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_session_gets_its_own_process_which_ends_with_it() {
    let gw = gateway(&session_target("s", ""));
    let addr = gw.addr();
    let a = initialize(addr, "{}").unwrap();
    let b = initialize(addr, "{}").unwrap();
    // many connections, so both shards serve each session: one process per session all the same
    let pids = |sid: &str| -> Vec<String> { (0..6).map(|_| text(&call(addr, sid, "pid"))).collect() };
    let (pa, pb) = (pids(&a), pids(&b));
    assert!(pa.iter().all(|p| *p == pa[0]) && pb.iter().all(|p| *p == pb[0]), "{pa:?} {pb:?}");
    let (pa, pb) = (pa[0].clone(), pb[0].clone());
    assert_ne!(pa, pb, "two sessions, two processes");
    assert!(alive(&pa) && alive(&pb));
    // a stateless 2026-07-28 request is served by the target's shared process
    let shared = text(&answer(&raw(addr, modern_call("pid").as_bytes())));
    assert!(shared != pa && shared != pb, "{shared}");

    assert_eq!(delete(addr, &a).status, 200);
    gw.wait_line(&format!("session process {pa} ended"));
    gw.wait_line(&format!("process exited (pid {pa})"));
    assert!(!alive(&pa), "DELETE ended the session's process");
    assert!(alive(&pb), "the other session's process runs on");
    assert_eq!(text(&call(addr, &b, "pid")), pb);
    assert_eq!(
        post_with(addr, "/mcp", &[("mcp-session-id", &a)], r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).status,
        404
    );

    // shutdown ends what is left, and the shared process
    gw.signal(libc::SIGTERM);
    let mut gw = gw;
    assert!(gw.child.wait().unwrap().success());
    assert!(gw.lines.lock().unwrap().iter().any(|l| l.contains("stdio_sessions_ended=1")), "{:?}", gw.lines);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(&pb) || alive(&shared) {
        assert!(Instant::now() < deadline, "processes left behind by a stopped gateway");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_gateway_leaves_no_session_process_behind() {
    let gw = gateway(&session_target("s", ""));
    let sid = initialize(gw.addr(), "{}").unwrap();
    let pid = text(&call(gw.addr(), &sid, "pid"));
    gw.signal(libc::SIGKILL);
    let mut gw = gw;
    let _ = gw.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(&pid) {
        assert!(Instant::now() < deadline, "process {pid} outlived its killed gateway");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_sessions_lose_their_process() {
    let yaml = format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\n  mcp:\n    sessionTtl: 2s\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n{}",
        session_target("s", "")
    );
    let gw = Gateway::start(&yaml);
    let sid = initialize(gw.addr(), "{}").unwrap();
    // the session's last use is at the gateway, between these two instants
    let before = Instant::now();
    let pid = text(&call(gw.addr(), &sid, "pid"));
    gw.wait_line(&format!("session process {pid} ended"));
    assert!(before.elapsed() >= Duration::from_secs(2), "ended before the session's TTL");
    gw.wait_line(&format!("process exited (pid {pid})"));
    assert!(!alive(&pid));
}

#[test]
fn the_process_cap_refuses_sessions_with_a_json_rpc_error() {
    let gw = gateway(&session_target("s", "            maxSessions: 1\n"));
    let addr = gw.addr();
    let a = initialize(addr, "{}").unwrap();
    let refused = initialize(addr, "{}").unwrap_err();
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("maxSessions"), "{refused}");
    gw.wait_metric("ringgate_request_errors_total{reason=\"mcp_session_limit\"} 1");
    // modern clients use the shared process, which the cap does not count
    assert!(answer(&raw(addr, modern_call("pid").as_bytes()))["result"].is_object());
    assert_eq!(delete(addr, &a).status, 200);
    let c = initialize(addr, "{}").unwrap();
    assert!(text(&call(addr, &c, "pid")).parse::<u32>().is_ok());
}

#[test]
fn a_reload_changes_the_cap_and_keeps_running_processes() {
    let config = |max: usize| {
        format!(
            "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n{}",
            session_target("s", &format!("            maxSessions: {max}\n"))
        )
    };
    let gw = Gateway::start(&config(1));
    let addr = gw.addr();
    let a = initialize(addr, "{}").unwrap();
    let pid = text(&call(addr, &a, "pid"));
    assert!(initialize(addr, "{}").is_err());
    gw.rewrite_config(&config(2));
    gw.wait_line("reload applied");
    // the running process counts against the new cap, and its session keeps it
    let b = initialize(addr, "{}").unwrap();
    assert!(initialize(addr, "{}").is_err(), "two running, cap two");
    assert_eq!(text(&call(addr, &a, "pid")), pid);
    assert_ne!(text(&call(addr, &b, "pid")), pid);
}

fn kill(pid: &str) {
    assert!(Command::new("kill").args(["-9", pid]).status().unwrap().success());
}

/// A session [`initialize`]d with `capabilities` that has sent `notifications/initialized`.
fn initialized(addr: SocketAddr, capabilities: &str) -> String {
    let sid = initialize(addr, capabilities).unwrap();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(post_with(addr, "/mcp", &[("mcp-session-id", &sid)], note).status, 202);
    sid
}

fn get_stream(addr: SocketAddr, sid: &str) -> BufReader<TcpStream> {
    let mut get = open(
        addr,
        &format!("GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n"),
    );
    let mut status = String::new();
    get.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    get
}

#[test]
fn a_crashed_session_process_is_restarted_and_its_calls_in_flight_fail() {
    let gw = gateway(&session_target("s", ""));
    let addr = gw.addr();
    let sid = initialized(addr, r#"{"elicitation":{}}"#);
    let s = ("mcp-session-id", sid.as_str());
    let mut get = get_stream(addr, &sid);
    let pid = text(&call(addr, &sid, "pid"));

    // a call in flight when the process dies gets a JSON-RPC error naming the target
    let body = r#"{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"wait","arguments":{}}}"#;
    let waiting = std::thread::spawn({
        let req = post_request("/mcp", &[s], body);
        move || raw(addr, req.as_bytes())
    });
    nth_line(&gw, "mcp target s: waiting ", 0);
    kill(&pid);
    let failed = answer(&waiting.join().unwrap());
    assert_eq!(failed["id"], 21, "{failed}");
    assert_eq!(failed["error"]["code"], -32603, "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("stdio target `s`"), "{failed}");

    // the next call waits for the restarted process, initialized with the client's params
    let new_pid = text(&call(addr, &sid, "pid"));
    assert_ne!(new_pid, pid);
    assert!(alive(&new_pid));
    let caps: Value = serde_json::from_str(&text(&call(addr, &sid, "caps"))).unwrap();
    assert_eq!(caps["elicitation"], json!({}), "{caps}");
    gw.wait_metric("ringgate_mcp_stdio_restarts_total{target=\"s\",result=\"restarted\"} 1");

    // the session's GET stream stays open and hears that the lists may have changed
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(
            read_until(&mut get, |v| v["method"].as_str().is_some_and(|m| m.ends_with("/list_changed")))["method"]
                .clone(),
        );
    }
    seen.sort_by_key(|m| m.to_string());
    assert_eq!(
        seen,
        [
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
            "notifications/tools/list_changed"
        ]
    );
}

#[test]
fn a_restarted_session_process_hears_the_sessions_log_level_and_subscriptions_again() {
    let gw = gateway(&session_target("s", ""));
    let addr = gw.addr();
    let sid = initialized(addr, r#"{"roots":{}}"#);
    let s = ("mcp-session-id", sid.as_str());
    let mut get = get_stream(addr, &sid);
    let rpc = |id: u32, method: &str, params: Value| {
        let a = answer(&post_with(
            addr,
            "/mcp",
            &[s],
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        ));
        assert_eq!(a["result"], json!({}), "{method}: {a}");
    };
    rpc(2, "logging/setLevel", json!({"level": "debug"}));
    rpc(3, "logging/setLevel", json!({"level": "warning"}));
    rpc(4, "resources/subscribe", json!({"uri": "test://a"}));
    rpc(5, "resources/subscribe", json!({"uri": "test://b"}));
    rpc(6, "resources/unsubscribe", json!({"uri": "test://b"}));
    let state = || -> Value { serde_json::from_str(&text(&call(addr, &sid, "state"))).unwrap() };
    let before = state();
    assert_eq!((&before["level"], &before["subscribed"]), (&json!("warning"), &json!(["test://a"])), "{before}");

    let pid = text(&call(addr, &sid, "pid"));
    kill(&pid);
    nth_line(&gw, &format!("process exited (pid {pid})"), 0);
    // the first call after the restart finds the last level and the subscriptions left in place
    let after = state();
    assert_eq!((&after["level"], &after["subscribed"]), (&json!("warning"), &json!(["test://a"])), "{after}");
    assert_ne!(text(&call(addr, &sid, "pid")), pid);

    // the restarted process asks for the roots again; the client's answer on its GET stream reaches it
    let ask = read_until(&mut get, |v| v["method"] == "roots/list");
    let roots = json!({"roots": [{"uri": "file:///work", "name": "work"}]});
    let reply = json!({"jsonrpc": "2.0", "id": ask["id"], "result": roots});
    assert_eq!(post_with(addr, "/mcp", &[s], &reply.to_string()).status, 202);
    assert_eq!(state()["roots"], roots);

    // an update of the subscribed URI from the new process reaches the client's GET stream; the
    // unsubscribed one, touched first, is not subscribed there
    for uri in ["test://b", "test://a"] {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "touch", "arguments": {"uri": uri}}});
        assert_eq!(text(&answer(&post_with(addr, "/mcp", &[s], &body.to_string()))), "touched");
    }
    let updated = read_until(&mut get, |v| v["method"] == "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "test://a", "{updated}");
}

#[test]
fn a_session_process_that_keeps_crashing_is_given_up_on_alone() {
    let gw = gateway(&session_target("s", ""));
    let addr = gw.addr();
    let fine = initialize(addr, "{}").unwrap();
    // this client's name makes every process started for it exit once initialized
    let r = post_with(
        addr,
        "/mcp",
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"crashy","version":"1"}}}"#,
    );
    let doomed = r.header("mcp-session-id").expect("a session").to_string();
    gw.wait_metric("ringgate_mcp_stdio_restarts_total{target=\"s\",result=\"gave_up\"} 1");
    let e = call(addr, &doomed, "pid");
    assert_eq!(e["error"]["code"], -32603, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("stdio target `s`") && msg.contains("not restarted again"), "{e}");
    // the other session of the same target is unharmed
    assert!(text(&call(addr, &fine, "pid")).parse::<u32>().is_ok());
}

/// Read an SSE response up to and including the first message `want` accepts (within 30 s:
/// keep-alives would keep a read timeout from ever firing).
fn read_until(r: &mut BufReader<TcpStream>, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    loop {
        assert!(Instant::now() < deadline, "no such message within 30 s");
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data.trim()).unwrap();
            if want(&v) {
                return v;
            }
        }
    }
}

fn open(addr: SocketAddr, req: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    BufReader::new(s)
}

#[test]
fn what_a_session_process_asks_and_tells_reaches_its_client() {
    let gw = gateway(&format!("{}{}", session_target("s", ""), session_target("t", "")));
    let addr = gw.addr();
    let sid = initialized(addr, r#"{"elicitation":{},"roots":{"listChanged":true}}"#);
    let s = ("mcp-session-id", sid.as_str());
    // the process was initialized with the client's own capabilities
    let caps: Value = serde_json::from_str(&text(&call(addr, &sid, "s_caps"))).unwrap();
    assert_eq!(caps["elicitation"], json!({}), "{caps}");

    // elicitation: the request arrives on the call's stream with a routable id; the answer,
    // POSTed on another connection (any shard), reaches the process, which then answers the call
    let body = r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"s_ask","arguments":{}}}"#;
    let mut stream = open(addr, &post_request("/mcp", &[s], body));
    let ask = read_until(&mut stream, |v| v["method"] == "elicitation/create");
    assert_eq!(ask["params"]["message"], "your name?");
    let id = ask["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("rg~0~"), "{id}");
    let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept", "content": {"name": "Ada"}}});
    assert_eq!(post_with(addr, "/mcp", &[s], &reply.to_string()).status, 202);
    let done = read_until(&mut stream, |v| v["id"] == 11);
    let got: Value = serde_json::from_str(&text(&done)).unwrap();
    assert_eq!(got, json!({"action": "accept", "content": {"name": "Ada"}}));

    // logging during a call comes on the call's stream, prefixed by nothing but its target
    let logged = messages(&post_with(
        addr,
        "/mcp",
        &[s],
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"t_log"}}"#,
    ));
    assert_eq!(logged[0]["method"], "notifications/message", "{logged:?}");
    assert!(logged[0]["params"]["data"].as_str().unwrap().starts_with("hello from "));

    // outside of any call: on the session's GET stream
    let mut get = open(
        addr,
        &format!("GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n"),
    );
    let mut status = String::new();
    get.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // the stream was attached to the processes before its head was written
    let note = r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#;
    assert_eq!(post_with(addr, "/mcp", &[s], note).status, 202);
    let seen = read_until(&mut get, |_| true);
    assert_eq!(seen["method"], "notifications/message", "{seen}");
    assert!(seen["params"]["data"].as_str().unwrap().starts_with("roots changed in "), "{seen}");
    // both processes got the client's notification; `initialized` came once, from the gateway
    nth_line(&gw, "mcp target t: notification notifications/roots/list_changed", 0);
    assert_eq!(gw.count_lines("mcp target s: notification notifications/initialized"), 1);

    // ending the session ends the processes and so the GET stream
    assert_eq!(delete(addr, &sid).status, 200);
    let mut rest = String::new();
    let mut line = String::new();
    while get.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        rest.push_str(&line);
        line.clear();
    }
    assert!(rest.ends_with("0\r\n\r\n"), "chunked stream terminated: {rest:?}");
}

#[test]
fn cancellation_reaches_stdio_targets_in_both_eras() {
    let gw =
        gateway(&format!("{}{}", session_target("s", ""), session_target("sh", "            upstreamMode: shared\n")));
    let addr = gw.addr();
    let sid = initialize(addr, "{}").unwrap();
    let s = ("mcp-session-id", sid.as_str());
    // legacy era: notifications/cancelled with the client's id reaches the process with its own
    for (n, tool) in ["s_wait", "sh_wait"].iter().enumerate() {
        let target = &tool[..tool.len() - 5];
        let id = 70 + n;
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
        let waiting = std::thread::spawn({
            let req = post_request("/mcp", &[s], &body);
            move || raw(addr, req.as_bytes())
        });
        let line = nth_line(&gw, &format!("mcp target {target}: waiting "), 0);
        let upstream_id = line.rsplit(' ').next().unwrap().to_string();
        let cancel = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"changed my mind"}}}}"#
        );
        assert_eq!(post_with(addr, "/mcp", &[s], &cancel).status, 202);
        nth_line(&gw, &format!("mcp target {target}: cancelled {upstream_id} changed my mind"), 0);
        // the POST does not hang on an answer the server will never send
        let r = waiting.join().unwrap();
        assert_eq!(answer(&r)["id"], id, "{}", r.body_str());
    }
    // 2026-07-28: closing the POST's stream is cancellation
    let before = gw.count_lines("mcp target sh: waiting ");
    let stream = open(addr, &modern_call("sh_wait"));
    let line = nth_line(&gw, "mcp target sh: waiting ", before);
    let upstream_id = line.rsplit(' ').next().unwrap().to_string();
    drop(stream);
    nth_line(&gw, &format!("mcp target sh: cancelled {upstream_id} the client closed the stream"), 0);
}

/// Run the Python `mcp` client script; returns its JSON output.
fn py_ok(url: &str, args: &[&str]) -> Value {
    let out = Command::new(peer("py/bin/python"))
        .arg(root().join("tests/peers/mcp_client.py"))
        .args(["--url", url, "--mode", "legacy", "--timeout", "30"])
        .args(args)
        .output()
        .expect("run mcp_client.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?}: {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap()
}

#[test]
fn server_everything_over_stdio_samples_and_elicits_through_the_gateway() {
    let targets = format!(
        "          - name: ev\n            stdio: {{ cmd: \"{}\", args: [stdio] }}\n{}",
        everything().display(),
        session_target("s", "")
    );
    let gw = gateway(&targets);
    let url = format!("http://{}/mcp", gw.addr());
    let r = py_ok(&url, &["sample", "ev_trigger-sampling-request", r#"{"prompt": "hello there", "maxTokens": 20}"#]);
    assert_eq!(r["samples"].as_array().unwrap().len(), 1, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("sampled: ") && text.contains("hello there"), "{text}");
    let content = r#"{"name": "Ada", "check": true, "email": "ada@example.com"}"#;
    let r = py_ok(&url, &["elicit", "ev_trigger-elicitation-request", "{}", content]);
    assert_eq!(r["elicitations"].as_array().unwrap().len(), 1, "{r}");
    let all = r["result"]["content"].to_string();
    assert!(all.contains("accept") && all.contains("Ada"), "{all}");
}

#[test]
fn sse_targets_in_per_session_mode_relay_sampling_and_elicitation() {
    let port = free_port();
    let _ev = start_peer(&everything(), &["sse"], &[("PORT", port.to_string())], port);
    let targets = format!(
        "          - name: evs\n            sse: {{ host: \"http://127.0.0.1:{port}/sse\" }}\n            upstreamMode: perSession\n{}",
        session_target("s", "")
    );
    let gw = gateway(&targets);
    let url = format!("http://{}/mcp", gw.addr());
    // the upstream session was initialized with the client's capabilities (the tools below
    // exist only for clients that declare them), and what it asks reaches this client
    let r = py_ok(&url, &["sample", "evs_trigger-sampling-request", r#"{"prompt": "over sse", "maxTokens": 20}"#]);
    assert_eq!(r["samples"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("over sse"), "{r}");
    let content = r#"{"name": "Ada", "check": true, "email": "ada@example.com"}"#;
    let r = py_ok(&url, &["elicit", "evs_trigger-elicitation-request", "{}", content]);
    assert_eq!(r["elicitations"].as_array().unwrap().len(), 1, "{r}");
    // each client session had an upstream session of its own, ended with it (the client DELETEs)
    nth_line(&gw, "mcp target evs: session stream ended", 1);
}

#[test]
fn the_session_cap_holds_for_sse_targets_in_per_session_mode() {
    let port = free_port();
    let _ev = start_peer(&everything(), &["sse"], &[("PORT", port.to_string())], port);
    let gw = gateway(&format!(
        "          - name: evs\n            sse: {{ host: \"http://127.0.0.1:{port}/sse\" }}\n            upstreamMode: perSession\n            maxSessions: 1\n"
    ));
    let addr = gw.addr();
    let a = initialize(addr, "{}").unwrap();
    let refused = initialize(addr, "{}").unwrap_err();
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains("sse target `evs`") && msg.contains("maxSessions"), "{refused}");
    gw.wait_metric("ringgate_request_errors_total{reason=\"mcp_session_limit\"} 1");
    // ending the session frees its place once its upstream stream has ended
    assert_eq!(delete(addr, &a).status, 200);
    gw.wait_line("mcp target evs: session stream ended");
    let b = initialize(addr, "{}").unwrap();
    let listed = answer(&post_with(
        addr,
        "/mcp",
        &[("mcp-session-id", &b)],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    ));
    assert!(listed["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{listed}");
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[test]
fn session_processes_add_no_threads() {
    let gw = gateway(&session_target("s", ""));
    let addr = gw.addr();
    // the first process starts what every later one shares (the I/O thread, the reaper)
    let first = initialize(addr, "{}").unwrap();
    assert!(text(&call(addr, &first, "pid")).parse::<u32>().is_ok());
    let before = threads(gw.child.id());
    let sids: Vec<String> = (0..10).map(|_| initialize(addr, "{}").unwrap()).collect();
    let pids: Vec<String> = sids.iter().map(|s| text(&call(addr, s, "pid"))).collect();
    assert!(pids.iter().all(|p| alive(p)), "{pids:?}");
    assert_eq!(threads(gw.child.id()), before, "ten more session processes, no more threads");
}
