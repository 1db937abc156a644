//! Streamable HTTP targets of either MCP era through the real binary (`workers: 2`): the gateway probes each target's era per shard and speaks it (stateless 2026-07-28 requests, or legacy sessions), clients of both eras reach targets of every era, a target redeployed in the other era is probed again, and `protocol` fixes the era.
//!
//! Targets: `tests/peers/py_server.py` (Python `mcp` 2.x; dual-era, or `--modern-only`, with a
//! `--log` of the requests that reached it) and `tests/peers/py1_server.py` (Python `mcp` 1.x,
//! legacy only).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mcp::{message, modern, modern_call, post, post_with, SseStream};
use common::peers::*;
use common::*;
use serde_json::{json, Value};

fn gateway(targets: &str) -> Gateway {
    Gateway::start(&format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          prefixMode: always\n          targets:\n{targets}"
    ))
}

fn target(name: &str, port: u16, extra: &str) -> String {
    format!("          - name: {name}\n            mcp: {{ host: 'http://127.0.0.1:{port}/mcp' }}\n{extra}")
}

/// py_server.py on `port` (a free one when 0) with `args`, logging the requests it gets to `log`.
fn py_server(port: u16, log: &Path, args: &[&str]) -> (PeerServer, u16) {
    let script = root().join("tests/peers/py_server.py");
    let mut all = vec![script.to_str().unwrap(), "--port", "{port}", "--log", log.to_str().unwrap()];
    all.extend_from_slice(args);
    start(&peer("py/bin/python"), &all, port)
}

/// py1_server.py (legacy only) on `port` (a free one when 0).
fn py1_server(port: u16) -> (PeerServer, u16) {
    let script = root().join("tests/peers/py1_server.py");
    start(&peer("py1/bin/python"), &[script.to_str().unwrap(), "--port", "{port}"], port)
}

fn start(cmd: &Path, args: &[&str], port: u16) -> (PeerServer, u16) {
    if port == 0 {
        return start_peer_on_free_port(cmd, args, &[]);
    }
    let args: Vec<String> = args.iter().map(|a| a.replace("{port}", &port.to_string())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (start_peer(cmd, &args, &[], port), port)
}

fn log_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&p);
    p
}

/// The requests a py_server.py logged, one JSON object each.
fn logged(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The `tools/call`s a py_server.py logged.
fn logged_calls(log: &Path) -> Vec<Value> {
    logged(log).into_iter().filter(|l| l["method"] == "tools/call").collect()
}

/// A gateway (`workers: 2`) whose one target, `modern`, is py_server.py answering 2026-07-28
/// only, with the tools that ask for input (`--mrtr`); its request log (under `name`).
fn bridged(name: &str) -> (Gateway, PathBuf, PeerServer) {
    let log = log_file(&tempdir(), name);
    let (server, port) = py_server(0, &log, &["--modern-only", "--mrtr"]);
    (gateway(&target("modern", port, "")), log, server)
}

fn modern_tools(addr: SocketAddr) -> Vec<String> {
    let v = modern(addr, "tools/list", json!({}));
    names(&v)
}

fn names(v: &Value) -> Vec<String> {
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("{v}"));
    tools.iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

/// A legacy (2025-11-25) session: initialize, then initialized; its id.
fn legacy_session(addr: SocketAddr) -> String {
    legacy_session_with(addr, json!({}))
}

/// [`legacy_session`] of a client declaring `capabilities`.
fn legacy_session_with(addr: SocketAddr, capabilities: Value) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": capabilities, "clientInfo": {"name": "era-test", "version": "1"}}});
    let r = post(addr, None, &init.to_string());
    assert_eq!(r.status, 200, "{}", r.body_str());
    let sid = r.header("mcp-session-id").unwrap_or_else(|| panic!("no session: {}", r.body_str())).to_string();
    let n = post(addr, Some(&sid), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(n.status, 202, "{}", n.body_str());
    sid
}

fn legacy(addr: SocketAddr, sid: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params}).to_string();
    message(&post_with(addr, "/mcp", &[("mcp-session-id", sid), ("mcp-protocol-version", "2025-11-25")], &body))
}

fn legacy_call(addr: SocketAddr, sid: &str, tool: &str, text: &str) -> String {
    let v = legacy(addr, sid, "tools/call", json!({"name": tool, "arguments": {"message": text}}));
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{tool}: {v}")).to_string()
}

/// A probe count of the gateway's metrics (0 when absent).
fn probes(gw: &Gateway, target: &str, era: &str) -> u64 {
    let needle = format!("ringgate_mcp_era_probes_total{{target=\"{target}\",era=\"{era}\"}} ");
    gw.metrics().lines().find_map(|l| l.strip_prefix(&needle)?.parse().ok()).unwrap_or(0)
}

#[test]
fn clients_of_both_eras_reach_modern_only_dual_and_legacy_only_targets() {
    let dir = tempdir();
    let (modern_log, dual_log) = (log_file(&dir, "modern"), log_file(&dir, "dual"));
    let (_m, m_port) = py_server(0, &modern_log, &["--modern-only"]);
    let (_d, d_port) = py_server(0, &dual_log, &[]);
    let (_l, l_port) = py1_server(0);
    let targets = [target("modern", m_port, ""), target("dual", d_port, ""), target("legacy", l_port, "")].concat();
    let gw = gateway(&targets);
    let addr = gw.addr();

    // 2026-07-28 clients, on new connections (both shards)
    for i in 0..4 {
        let tools = modern_tools(addr);
        for t in ["modern_echo", "dual_echo", "legacy_echo"] {
            assert!(tools.contains(&t.to_string()), "{t} missing from {tools:?}");
        }
        for t in ["modern", "dual", "legacy"] {
            assert_eq!(modern_call(addr, &format!("{t}_echo"), &format!("m{i}")), format!("Echo: m{i}"));
        }
    }
    // the modern-capable targets saw 2026-07-28 requests only, with the headers the era wants,
    // and never an upstream session
    for log in [&modern_log, &dual_log] {
        let lines = logged(log);
        assert!(!lines.is_empty());
        for l in &lines {
            assert_eq!(l["version"], "2026-07-28", "{l}");
            assert_eq!(l["session"], false, "{l}");
            assert_eq!(l["mcp_method"], l["method"], "{l}");
            assert_ne!(l["method"], "initialize", "{l}");
            if l["method"] == "tools/call" {
                assert_eq!(l["mcp_name"], "echo", "{l}");
            }
        }
        let discovers = lines.iter().filter(|l| l["method"] == "server/discover").count();
        assert!((1..=2).contains(&discovers), "probed once per shard at most: {lines:?}");
    }
    assert!(probes(&gw, "modern", "modern") >= 1 && probes(&gw, "dual", "modern") >= 1);
    assert!(probes(&gw, "legacy", "legacy") >= 1, "{}", gw.metrics());
    let (modern_seen, dual_seen) = (logged(&modern_log).len(), logged(&dual_log).len());

    // legacy clients: the dual target gives them an upstream session, the modern-only one
    // refuses initialize (once per shard), after which their session lives in the gateway alone
    for i in 0..4 {
        let sid = legacy_session(addr);
        let tools = names(&legacy(addr, &sid, "tools/list", json!({})));
        assert!(tools.contains(&"modern_echo".to_string()) && tools.contains(&"legacy_echo".to_string()), "{tools:?}");
        for t in ["modern", "dual", "legacy"] {
            assert_eq!(legacy_call(addr, &sid, &format!("{t}_echo"), &format!("l{i}")), format!("Echo: l{i}"));
        }
    }
    let modern_new = &logged(&modern_log)[modern_seen..];
    let refused: Vec<_> = modern_new.iter().filter(|l| l["method"] == "initialize").collect();
    assert!((1..=2).contains(&refused.len()), "initialize tried once per shard at most: {modern_new:?}");
    assert!(refused.iter().all(|l| l["status"] == 400));
    for l in modern_new.iter().filter(|l| l["method"] != "initialize") {
        assert_eq!(l["version"], "2026-07-28", "{l}");
        assert_eq!(l["status"], 200, "{l}");
    }
    assert!(modern_new.iter().filter(|l| l["method"] == "tools/call").count() >= 4);
    assert!(probes(&gw, "modern", "modern_only") >= 1, "{}", gw.metrics());
    let dual_new = &logged(&dual_log)[dual_seen..];
    assert_eq!(
        dual_new.iter().filter(|l| l["method"] == "initialize" && l["status"] == 200).count(),
        4,
        "{dual_new:?}"
    );
    let calls: Vec<_> = dual_new.iter().filter(|l| l["method"] == "tools/call").collect();
    assert_eq!(calls.len(), 4);
    for l in calls {
        assert_eq!((l["session"].as_bool(), l["version"].as_str()), (Some(true), Some("2025-11-25")), "{l}");
    }

    // the real Python client in both modes agrees; a 2026-07-28 client's calls carry its own
    // envelope (capabilities, client info) to the target, a legacy client's the gateway's
    let url = format!("http://{addr}/mcp");
    for mode in ["2026-07-28", "legacy"] {
        let v = py_ok(&url, mode, &["call", "modern_echo", r#"{"message":"py"}"#]);
        assert_eq!(v["content"][0]["text"], "Echo: py", "{mode}: {v}");
        let last = logged(&modern_log).into_iter().rev().find(|l| l["method"] == "tools/call").unwrap();
        let client = last["client"].as_str().unwrap_or_else(|| panic!("no clientInfo: {last}"));
        assert_eq!(client == "ringgate", mode == "legacy", "{mode}: {last}");
    }
}

#[test]
fn a_modern_clients_capabilities_reach_a_modern_target_whether_its_params_stay_raw_or_not() {
    let dir = tempdir();
    let log = log_file(&dir, "caps");
    let (_m, port) = py_server(0, &log, &["--modern-only"]);
    let gw = gateway(&target("m", port, ""));
    let caps = json!({"elicitation": {}});
    let meta = json!({"io.modelcontextprotocol/clientCapabilities": caps});
    // a call's params go raw; a completion's are rebuilt (the prompt renamed inside `ref`)
    let call = json!({"name": "m_echo", "arguments": {"message": "c"}, "_meta": meta});
    assert_eq!(modern(gw.addr(), "tools/call", call)["result"]["content"][0]["text"], "Echo: c");
    let complete = json!({"ref": {"type": "ref/prompt", "name": "m_greet"}, "argument": {"name": "name", "value": "a"}, "_meta": meta});
    modern(gw.addr(), "completion/complete", complete);
    let lines = logged(&log);
    for method in ["tools/call", "completion/complete"] {
        let l = lines.iter().find(|l| l["method"] == method).unwrap_or_else(|| panic!("no {method}: {lines:?}"));
        assert_eq!(l["capabilities"], caps, "{l}");
    }
    // what the gateway asks for itself (its era probe) declares nothing
    let probe = lines.iter().find(|l| l["method"] == "server/discover").unwrap();
    assert_eq!(probe["capabilities"], json!({}), "{probe}");
}

#[test]
fn a_target_redeployed_in_the_other_era_is_probed_again() {
    let dir = tempdir();
    let log = log_file(&dir, "t");
    let (dual, port) = py_server(0, &log, &[]);
    let gw = gateway(&target("t", port, ""));
    let addr = gw.addr();
    for i in 0..4 {
        assert_eq!(modern_call(addr, "t_echo", &format!("a{i}")), format!("Echo: a{i}"));
    }
    assert!(probes(&gw, "t", "modern") >= 1);
    assert!(logged(&log).iter().all(|l| l["version"] == "2026-07-28"));

    // redeployed as a legacy-only server on the same port: its refusals of 2026-07-28 requests
    // make every shard probe again, and the same requests go on in sessions
    drop(dual);
    let (py1, _) = py1_server(port);
    for i in 0..4 {
        assert_eq!(modern_call(addr, "t_echo", &format!("b{i}")), format!("Echo: b{i}"));
    }
    assert!(probes(&gw, "t", "legacy") >= 1, "{}", gw.metrics());
    // a legacy client's session made now has an upstream session of its own with it
    let sid = legacy_session(addr);
    assert_eq!(legacy_call(addr, &sid, "t_echo", "s1"), "Echo: s1");

    // and back as a 2026-07-28-only server: the shared and the client's own upstream sessions
    // are refused, probed again, and the requests go on statelessly
    drop(py1);
    let _modern = py_server(port, &log, &["--modern-only"]);
    let before = logged(&log).len();
    let modern_probes = probes(&gw, "t", "modern");
    for i in 0..4 {
        assert_eq!(modern_call(addr, "t_echo", &format!("c{i}")), format!("Echo: c{i}"));
    }
    assert_eq!(legacy_call(addr, &sid, "t_echo", "s2"), "Echo: s2");
    assert!(probes(&gw, "t", "modern") > modern_probes, "{}", gw.metrics());
    let calls: Vec<_> = logged(&log)[before..].iter().filter(|l| l["method"] == "tools/call").cloned().collect();
    let (answered, refused): (Vec<_>, Vec<_>) = calls.iter().partition(|l| l["status"] == 200);
    assert_eq!(answered.len(), 5, "{calls:?}");
    assert!(answered.iter().all(|l| l["version"] == "2026-07-28" && l["session"] == false), "{calls:?}");
    // what was refused: the first request on each old session (the shards' shared ones, the client's own)
    assert!((1..=3).contains(&refused.len()), "{calls:?}");
    assert!(refused.iter().all(|l| l["session"] == true && l["status"] == 400), "{calls:?}");
}

#[test]
fn protocol_fixes_the_era_without_probing() {
    let dir = tempdir();
    let (old_log, new_log) = (log_file(&dir, "old"), log_file(&dir, "new"));
    let (_a, a_port) = py_server(0, &old_log, &[]);
    let (_b, b_port) = py_server(0, &new_log, &[]);
    let targets = [
        target("old", a_port, "            protocol: legacy\n"),
        target("new", b_port, "            protocol: modern\n"),
    ]
    .concat();
    let gw = gateway(&targets);
    let addr = gw.addr();
    for i in 0..3 {
        assert_eq!(modern_call(addr, "old_echo", &format!("m{i}")), format!("Echo: m{i}"));
        assert_eq!(modern_call(addr, "new_echo", &format!("m{i}")), format!("Echo: m{i}"));
    }
    let sid = legacy_session(addr);
    assert_eq!(legacy_call(addr, &sid, "old_echo", "l"), "Echo: l");
    assert_eq!(legacy_call(addr, &sid, "new_echo", "l"), "Echo: l");
    // `legacy`: sessions only, never a probe, though the server speaks 2026-07-28 too
    let old = logged(&old_log);
    assert!(old.iter().all(|l| l["method"] != "server/discover"), "{old:?}");
    assert!(old
        .iter()
        .filter(|l| l["method"] == "tools/call")
        .all(|l| l["session"] == true && l["version"] != "2026-07-28"));
    assert_eq!(probes(&gw, "old", "legacy") + probes(&gw, "old", "modern"), 0);
    // `modern`: no initialize even for the legacy client, whose session lives in the gateway
    let new = logged(&new_log);
    assert!(new.iter().all(|l| l["version"] == "2026-07-28" && l["session"] == false), "{new:?}");
    assert_eq!(new.iter().filter(|l| l["method"] == "tools/call").count(), 4);
    // a `protocol` on a target that is not Streamable HTTP is a configuration error
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["validate", "-c"])
        .arg({
            let p = dir.join("bad.yaml");
            std::fs::write(&p, "mcp:\n  port: 0\n  targets:\n  - name: d\n    demo: {}\n    protocol: modern\n")
                .unwrap();
            p
        })
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("protocol"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// A legacy client cannot read a 2026-07-28 target's `input_required`: the gateway asks it the
/// target's questions as server→client requests on the call's stream and retries with its
/// answers (`inputResponses`, the echoed `requestState`, a new id), round after round; what the
/// client did not declare it can answer is a -32021 error naming the target.
#[test]
fn a_legacy_client_answers_a_modern_only_targets_input_requests() {
    let (gw, log, _m) = bridged("mrtr");
    let url = format!("http://{}/mcp", gw.addr());

    let content = r#"{"name":"Ada","colour":"teal"}"#;
    let v = py_ok(&url, "legacy", &["elicit", "modern_ask_name", "{}", content]);
    assert_eq!(v["protocol"], "2025-11-25", "{v}");
    assert_eq!(v["elicitations"], json!(["What is your name?", "What is your favourite colour?"]), "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "Ada likes teal", "{v}");
    assert_eq!(v["result"]["isError"], false, "{v}");
    // three rounds reached the target, each as a 2026-07-28 request, the retries under new ids
    let calls = logged_calls(&log);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|l| l["version"] == "2026-07-28" && l["status"] == 200), "{calls:?}");

    // the elicit client declares elicitation, not sampling
    let (v, code) = py_client(&url, "legacy", &["elicit", "modern_ask_llm", "{}", "{}"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["code"], -32021, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("`modern`") && msg.contains("sampling"), "{v}");
    assert_eq!(v["error"]["data"]["requiredCapabilities"], json!({"sampling": {}}), "{v}");
    // nor roots; the target asked once and got no retry either time
    let (v, code) = py_client(&url, "legacy", &["elicit", "modern_ask_roots", "{}", "{}"]);
    assert_eq!((code, &v["error"]["code"]), (1, &json!(-32021)), "{v}");
    assert_eq!(v["error"]["data"]["requiredCapabilities"], json!({"roots": {}}), "{v}");
    let asked = |tool: &str| logged_calls(&log).iter().filter(|l| l["mcp_name"] == tool).count();
    assert_eq!((asked("ask_llm"), asked("ask_roots")), (1, 1));
}

/// Sampling and roots rounds are bridged like elicitation: the legacy client is asked
/// `sampling/createMessage` and `roots/list` on the call's stream, having declared it can
/// answer (which the target is told), and the target completes with its answers.
#[test]
fn a_legacy_client_answers_sampling_and_roots_rounds_of_a_modern_only_target() {
    let (gw, log, _m) = bridged("mrtr-kinds");
    let url = format!("http://{}/mcp", gw.addr());

    let v = py_ok(&url, "legacy", &["sample", "modern_ask_llm", "{}"]);
    assert_eq!(v["protocol"], "2025-11-25", "{v}");
    assert_eq!(v["samples"], json!([["Say hi"]]), "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "LLM: sampled: Say hi", "{v}");

    let roots = ["file:///work/alpha", "file:///work/beta"];
    let v = py_ok(&url, "legacy", &[&["roots", "modern_ask_roots", "{}"][..], &roots].concat());
    assert_eq!(v["roots_asked"], 1, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "Roots: file:///work/alpha, file:///work/beta", "{v}");

    // two rounds each, in 2026-07-28, each carrying what the client declared
    let calls = logged_calls(&log);
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls.iter().all(|l| l["version"] == "2026-07-28" && l["status"] == 200), "{calls:?}");
    for (tool, cap) in [("ask_llm", "sampling"), ("ask_roots", "roots")] {
        let of: Vec<_> = calls.iter().filter(|l| l["mcp_name"] == tool).collect();
        assert_eq!(of.len(), 2, "{calls:?}");
        assert!(of.iter().all(|l| l["capabilities"].get(cap).is_some()), "{of:?}");
    }
}

/// A legacy HTTP+SSE (2024-11-05) client is bridged too: the questions go on its session's
/// stream, its answers come by POST to the message endpoint (on whichever shard) and reach the
/// call waiting for them.
#[test]
fn a_legacy_http_sse_client_answers_a_modern_only_targets_input_requests() {
    let (gw, log, _m) = bridged("mrtr-sse");
    let url = format!("http://{}/mcp/sse", gw.addr());
    let sse = |args: &[&str]| py_ok(&url, "legacy", &[&["--transport", "sse"][..], args].concat());

    let v = sse(&["elicit", "modern_ask_name", "{}", r#"{"name":"Grace","colour":"navy"}"#]);
    assert_eq!(v["elicitations"], json!(["What is your name?", "What is your favourite colour?"]), "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "Grace likes navy", "{v}");
    let v = sse(&["sample", "modern_ask_llm", "{}"]);
    assert_eq!(v["result"]["content"][0]["text"], "LLM: sampled: Say hi", "{v}");
    let v = sse(&["roots", "modern_ask_roots", "{}", "file:///sse"]);
    assert_eq!(v["result"]["content"][0]["text"], "Roots: file:///sse", "{v}");
    let calls = logged_calls(&log);
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert!(calls.iter().all(|l| l["version"] == "2026-07-28" && l["status"] == 200), "{calls:?}");
}

/// The same wait for a legacy HTTP+SSE session: its `notifications/cancelled`, POSTed to the
/// message endpoint on either shard, reaches the call bridging on the shard of its stream.
#[test]
fn a_legacy_http_sse_client_cancelling_a_bridged_call_ends_the_wait_for_its_answer() {
    let (gw, log, _m) = bridged("mrtr-sse-cancel");
    let addr = gw.addr();
    let (mut stream, endpoint) = SseStream::open(addr, "/mcp/sse");
    let send = |v: Value| post_with(addr, &endpoint, &[], &v.to_string()).status;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {}}, "clientInfo": {"name": "era-test", "version": "1"}}});
    assert_eq!(send(init), 202);
    stream.until(|v| v["id"] == 1);
    assert_eq!(send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})), 202);
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "modern_ask_name", "arguments": {}}});
    assert_eq!(send(call), 202);
    let (asked, _) = stream.until(|v| v["method"] == "elicitation/create");

    let started = Instant::now();
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5}});
    assert_eq!(send(cancel), 202);
    let (withdrawn, _) = stream.until(|v| v["method"] == "notifications/cancelled");
    assert_eq!(withdrawn["params"]["requestId"], asked["id"], "{withdrawn}");
    let (ended, _) = stream.until(|v| v["id"] == 5);
    assert_eq!(ended["error"]["code"], -32800, "{ended}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let late = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": "Ada"}}});
    assert_eq!(send(late), 400);
    assert_eq!(logged_calls(&log).len(), 1);
}

/// A client that answers the gateway's question with a JSON-RPC error fails the call with that
/// error's code (on either transport), and the target is not asked again.
#[test]
fn a_legacy_clients_error_answer_fails_the_bridged_call_without_a_retry() {
    let (gw, log, _m) = bridged("mrtr-refuse");
    let http = format!("http://{}/mcp", gw.addr());
    let sse = format!("http://{}/mcp/sse", gw.addr());
    let runs = [
        (&http, "http", "modern_ask_llm", "sampling/createMessage", "ask_llm"),
        (&http, "http", "modern_ask_roots", "roots/list", "ask_roots"),
        (&http, "http", "modern_ask_name", "elicitation/create", "ask_name"),
        (&sse, "sse", "modern_ask_llm", "sampling/createMessage", "ask_llm"),
    ];
    for (url, transport, tool, method, target_tool) in runs {
        let before = logged(&log).iter().filter(|l| l["mcp_name"] == target_tool).count();
        let (v, code) = py_client(url, "legacy", &["--transport", transport, "refuse", tool, "{}", "-32050"]);
        assert_eq!((code, &v["error"]["code"]), (1, &json!(-32050)), "{transport} {tool}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(method) && msg.contains("`modern`") && msg.contains("the test refuses"), "{v}");
        let after = logged(&log).iter().filter(|l| l["mcp_name"] == target_tool).count();
        assert_eq!(after - before, 1, "{transport} {tool}: the target was asked again");
    }
}

/// A legacy client that cancels a bridged call while the gateway waits for its answer: the wait
/// ends (not after 300 s), the question is withdrawn, the call ends with -32800, and the target
/// hears of no retry.
#[test]
fn a_legacy_client_cancelling_a_bridged_call_ends_the_wait_for_its_answer() {
    let (gw, log, _m) = bridged("mrtr-cancel");
    let addr = gw.addr();
    let sid = legacy_session_with(addr, json!({"elicitation": {}}));
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "modern_ask_name", "arguments": {}}});
    let headers = [("mcp-session-id", sid.as_str()), ("mcp-protocol-version", "2025-11-25")];
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(common::mcp::post_request("/mcp", &headers, &call.to_string()).as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s);
    let head = read_head(&mut r).expect("a response");
    assert!(head.to_ascii_lowercase().contains("text/event-stream"), "{head}");
    // the messages of the call's stream, until it ends (or 20 s pass)
    let mut next = || -> Option<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if let Some(m) = line.trim_end().strip_prefix("data:").and_then(|d| serde_json::from_str(d.trim()).ok()) {
                return Some(m);
            }
        }
    };
    let asked = next().expect("the target's question");
    assert_eq!(asked["method"], "elicitation/create", "{asked}");

    // the cancellation lands on either shard
    let cancel =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "bored"}});
    let started = Instant::now();
    assert_eq!(post_with(addr, "/mcp", &headers, &cancel.to_string()).status, 202);
    let withdrawn = next().expect("the question withdrawn");
    assert_eq!(withdrawn["method"], "notifications/cancelled", "{withdrawn}");
    assert_eq!(withdrawn["params"]["requestId"], asked["id"], "{withdrawn}");
    let ended = next().expect("the call's end");
    assert_eq!((&ended["id"], &ended["error"]["code"]), (&json!(5), &json!(-32800)), "{ended}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // a late answer is for an unknown request, and the target saw the first round only
    let late = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": "Ada"}}});
    assert_eq!(post_with(addr, "/mcp", &headers, &late.to_string()).status, 400);
    assert_eq!(logged_calls(&log).len(), 1);
}
