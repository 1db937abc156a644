//! MCP federation through the real binary: `prefixMode: never` (one namespace, owners found by listing, clashing names refused) and `list_changed` notifications on open GET streams when a reload changes what clients can see.
//!
//! The peers come from `tests/peers/install.sh` (run by `test.sh`); a missing peer fails the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::mcp::*;
use common::peers::*;
use common::*;
use serde_json::{json, Value};

fn config(port: u16, extra: &str, targets: &str, more_routes: &str) -> String {
    format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: {port}\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n{extra}          targets:\n{targets}{more_routes}"
    )
}

/// Every page of a list, followed through the gateway's cursor: the item keys.
fn list_all(addr: SocketAddr, sid: &str, method: &str, items: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut params = json!({});
    for _ in 0..20 {
        let v = rpc(addr, sid, method, params.clone());
        let page = v["result"][items].as_array().unwrap_or_else(|| panic!("{v}"));
        out.extend(page.iter().map(|i| i[key].as_str().unwrap().to_string()));
        match v["result"]["nextCursor"].as_str() {
            Some(c) => params = json!({"cursor": c}),
            None => return out,
        }
    }
    panic!("more than 20 pages")
}

fn text(v: &Value) -> &str {
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{v}"))
}

#[test]
fn prefix_mode_never_routes_unprefixed_names_to_their_one_owner() {
    let port = free_port();
    // py pages its tools by 3: the owner of a tool on a later page is found by paging
    let _py = py_server(port, &["--page-size", "3"]);
    let targets = format!(
        "          - name: demo\n            demo: {{}}\n          - name: py\n            mcp: {{ host: \"http://127.0.0.1:{port}/mcp\" }}\n"
    );
    let gw = Gateway::start(&config(0, "          prefixMode: never\n", &targets, ""));
    let addr = gw.addr();
    let sid = initialize(addr);

    // demo has echo, add, now; py has echo, add, slow, fail, t00..t04: echo and add clash
    let tools = list_all(addr, &sid, "tools/list", "tools", "name");
    for t in ["now", "slow", "fail", "t00", "t04"] {
        assert_eq!(tools.iter().filter(|x| *x == t).count(), 1, "{t} once, unprefixed: {tools:?}");
    }
    assert!(!tools.iter().any(|t| t == "echo" || t == "add" || t.contains('_')), "{tools:?}");

    assert_eq!(text(&rpc(addr, &sid, "tools/call", json!({"name": "t04", "arguments": {"x": 4}}))), "t04:4");
    assert!(text(&rpc(addr, &sid, "tools/call", json!({"name": "now", "arguments": {}}))).parse::<f64>().is_ok());
    let clash = rpc(addr, &sid, "tools/call", json!({"name": "echo", "arguments": {"message": "x"}}));
    assert_eq!(clash["error"]["code"], -32602, "{clash}");
    assert!(clash["error"]["message"].as_str().unwrap().contains("more than one target"), "{clash}");
    let unknown = rpc(addr, &sid, "tools/call", json!({"name": "demo_echo", "arguments": {"message": "x"}}));
    assert_eq!(unknown["error"]["code"], -32602, "prefixed names mean nothing here: {unknown}");

    let p = rpc(addr, &sid, "prompts/get", json!({"name": "greet", "arguments": {"name": "Ada"}}));
    assert_eq!(p["result"]["messages"][0]["content"]["text"], "Hello, Ada!", "{p}");
    let p = rpc(addr, &sid, "prompts/get", json!({"name": "greeting", "arguments": {"name": "Ada"}}));
    assert_eq!(p["result"]["messages"][0]["content"]["text"], "Say hello to Ada.", "{p}");
    // a listed resource, and one only a target's template matches
    let r = rpc(addr, &sid, "resources/read", json!({"uri": "demo://readme"}));
    assert_eq!(r["result"]["contents"][0]["uri"], "demo://readme", "{r}");
    let r = rpc(addr, &sid, "resources/read", json!({"uri": "test://item/5"}));
    assert_eq!(
        (r["result"]["contents"][0]["uri"].as_str(), r["result"]["contents"][0]["text"].as_str()),
        (Some("test://item/5"), Some("item 5")),
        "{r}"
    );
    let resources = list_all(addr, &sid, "resources/list", "resources", "uri");
    assert!(resources.contains(&"test://static".to_string()) && resources.contains(&"demo://readme".to_string()));
}

/// Wait until `needle` has been logged `n` times.
fn wait_count(gw: &Gateway, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.count_lines(needle) < n {
        assert!(Instant::now() < deadline, "{needle:?} logged fewer than {n} times: {:?}", gw.lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The methods of the next `n` messages on an SSE stream.
fn next_methods(r: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    // keep-alives arrive meanwhile, so the read timeout alone would not end a wait that fails
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        line.clear();
        assert!(Instant::now() < deadline, "only {out:?} arrived");
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended after {out:?}");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).unwrap();
            out.push(v["method"].as_str().unwrap_or("").to_string());
        }
    }
    out
}

#[test]
fn reloads_that_change_what_a_client_sees_are_announced_on_its_get_stream() {
    let two = "          - name: a\n            demo: {}\n          - name: b\n            demo: {}\n";
    let gw = Gateway::start(&config(0, "", two, ""));
    let (addr, port) = (gw.addr(), gw.addr().port());
    // later reloads name the port that port 0 got (they keep the route: see
    // a_reload_naming_the_port_that_port_0_got_keeps_the_route_and_announces_only_changes)
    gw.rewrite_config(&config(port, "", two, ""));
    wait_count(&gw, "reload applied", 1);
    let sid = initialize(addr);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !line.contains("stream open") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "no stream");
    }

    // 1: another route is added; this one is unchanged: nothing to announce
    let other = "    - matches: [{path: {pathPrefix: /other}}]\n      backends:\n      - mcp:\n          targets:\n          - name: c\n            demo: {}\n";
    gw.rewrite_config(&config(port, "", two, other));
    wait_count(&gw, "reload applied", 2);
    // 2: a tool filter: the tools list changed (had 1 announced anything, it would come first)
    let filtered = format!("{two}            tools: {{exclude: [add]}}\n");
    gw.rewrite_config(&config(port, "", &filtered, other));
    wait_count(&gw, "reload applied", 3);
    assert_eq!(
        next_methods(&mut r, 1),
        ["notifications/tools/list_changed"],
        "reload 1 announced nothing, 2 the tools"
    );
    // 3: target a is removed: every list changed
    let only_b = "          - name: b\n            demo: {}\n            tools: {exclude: [add]}\n";
    gw.rewrite_config(&config(port, "", only_b, other));
    wait_count(&gw, "reload applied", 4);
    let want = [
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    ];
    assert_eq!(next_methods(&mut r, 3), want);
    // and the session now sees the new configuration (one target: unprefixed)
    assert_eq!(tool_names(addr, &sid), ["echo", "now"]);
}
