//! `subscriptions/listen` through the real binary with shared upstreams (a stdio target's shared process, HTTP+SSE targets), a 2026-07-28-only target listened at on the client's behalf (a listen stream's, or a legacy session's GET stream's), subscriptions counted per URI, owners found under `prefixMode: never`, and reloads announced on every kind of client stream.
//!
//! The peers come from `tests/peers/install.sh` (run by `test.sh`); a missing peer fails the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::peers::*;
use common::*;
use serde_json::{json, Value};

fn config(port: u16, extra: &str, targets: &str) -> String {
    format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\nbinds:\n- port: {port}\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n{extra}          targets:\n{targets}"
    )
}

/// A target running tests/peers/py_server.py over stdio, with `--notify`.
fn py_stdio(name: &str) -> String {
    let script = root().join("tests/peers/py_server.py");
    format!(
        "          - name: {name}\n            stdio: {{ cmd: \"{}\", args: [\"{}\", --transport, stdio, --notify] }}\n",
        peer("py/bin/python").display(),
        script.display()
    )
}

/// tests/peers/py_server.py over HTTP+SSE with `--notify`, logging to `log`; the server and its port.
fn py_sse(log: &std::path::Path) -> (PeerServer, u16) {
    let port = free_port();
    let script = root().join("tests/peers/py_server.py");
    let args = [script.to_str().unwrap(), "--port", &port.to_string(), "--transport", "sse", "--notify"];
    (start_peer_logged(&peer("py/bin/python"), &args, &[], port, Some(log)), port)
}

/// A 2026-07-28 request (headers and `_meta` as the era wants them; the client's capabilities
/// are those of `params._meta`, if any, else none).
fn modern(method: &str, name: Option<&str>, id: u64, mut params: Value) -> String {
    let caps = params["_meta"].get(CAPABILITIES).cloned().unwrap_or_else(|| json!({}));
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        CAPABILITIES: caps,
    });
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    let name = name.map(|n| format!("mcp-name: {n}\r\n")).unwrap_or_default();
    format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: {method}\r\n{name}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

const CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// `tools/call` in the 2026-07-28 era; the answer's text.
fn call(addr: SocketAddr, tool: &str, args: Value) -> String {
    let r = raw(addr, modern("tools/call", Some(tool), 2, json!({"name": tool, "arguments": args})).as_bytes());
    let v = common::mcp::message(&r);
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{v}")).to_string()
}

/// An SSE response read message by message (comments, ids and chunk framing skipped).
struct Stream(BufReader<TcpStream>);

impl Stream {
    /// Send `request` and read up to the body; the response must be an event stream.
    fn open(addr: SocketAddr, request: &str) -> Stream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let head = read_head(&mut r).expect("a response");
        // short reads from here on, so that waits for what may not come end on time
        r.get_ref().set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        Stream(r)
    }

    /// A legacy session's GET stream.
    fn get(addr: SocketAddr, sid: &str) -> Stream {
        Stream::open(
            addr,
            &format!("GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n"),
        )
    }

    /// A legacy HTTP+SSE stream, and the message endpoint its first event names.
    fn sse(addr: SocketAddr) -> (Stream, String) {
        let mut s = Stream::open(addr, "GET /mcp/sse HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\n\r\n");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if let Ok(0) = s.0.read_line(&mut line) {
                break;
            }
            if let Some(path) = line.trim_end().strip_prefix("data:").map(str::trim).filter(|d| d.starts_with('/')) {
                return (s, path.to_string());
            }
        }
        panic!("no endpoint event")
    }

    /// A `subscriptions/listen` stream; its acknowledgement is read.
    fn listen(addr: SocketAddr, notifications: Value) -> (Stream, Value) {
        Stream::listen_as(addr, notifications, json!({}))
    }

    /// [`Stream::listen`] by a client declaring `capabilities`.
    fn listen_as(addr: SocketAddr, notifications: Value, capabilities: Value) -> (Stream, Value) {
        let params = json!({"notifications": notifications, "_meta": {CAPABILITIES: capabilities}});
        let mut s = Stream::open(addr, &modern("subscriptions/listen", None, 1, params));
        let ack = s.message(Duration::from_secs(30)).expect("an acknowledgement");
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
        (s, ack)
    }

    /// The next message, if one comes within `wait` (keep-alives do not count).
    fn message(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            match self.0.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {
                    // a legacy stream's `endpoint` event carries a path, not a message
                    let data = line.trim_end().strip_prefix("data:").map(str::trim);
                    if let Some(m) = data.and_then(|d| serde_json::from_str(d).ok()) {
                        return Some(m);
                    }
                }
                // the read timeout: look at the deadline again
                Err(_) => {}
            }
        }
        None
    }

    /// Nothing with `method` comes within half a second (the peer may send more of other kinds).
    fn hears_no(&mut self, method: &str) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some(m) = self.message(deadline.saturating_duration_since(Instant::now())) {
            assert_ne!(m["method"], method, "{m}");
        }
    }

    /// Messages until the answer with `id` arrives (within 20 s).
    fn until_id(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(m) = self.message(deadline.saturating_duration_since(Instant::now())) {
            if m["id"] == id {
                return m;
            }
        }
        panic!("no answer {id}")
    }

    /// Messages until one with `method` arrives, calling `touch` before each wait: for what
    /// the gateway may learn only after the answer that set it up (within 20 s).
    fn until_touched(&mut self, method: &str, mut touch: impl FnMut()) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            touch();
            match self.message(Duration::from_millis(500)) {
                Some(m) if m["method"] == method => return m,
                m => assert!(Instant::now() < deadline, "no {method}: {m:?}"),
            }
        }
    }

    /// Messages until one with `method` arrives (within 20 s).
    fn until(&mut self, method: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.message(deadline - Instant::now()) {
                Some(m) if m["method"] == method => return m,
                Some(m) => seen.push(m),
                None => break,
            }
        }
        panic!("no {method}; saw {seen:?}")
    }
}

/// The gauge summed over shards.
fn listen_streams(gw: &Gateway) -> u64 {
    let m = gw.metrics();
    m.lines()
        .filter(|l| l.starts_with("ringgate_mcp_listen_streams{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The gateway's open client connections, by shard.
fn connections(gw: &Gateway) -> Vec<u64> {
    let m = gw.metrics();
    let open = m.lines().filter(|l| l.starts_with("ringgate_active_connections{"));
    open.filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn listen_streams_hear_shared_stdio_and_legacy_sse_targets() {
    let log = tempdir().join("py-sse.log");
    let (_sse, port) = py_sse(&log);
    let targets =
        format!("{}          - name: pys\n            sse: {{ host: \"127.0.0.1:{port}\" }}\n", py_stdio("pyo"));
    let gw = Gateway::start(&config(0, "", &targets));
    let url = format!("http://{}/mcp", gw.addr());
    // a real client listens, then calls a tool that makes the target notify every session that
    // subscribed: here the shared process, and the shard's shared session with the sse target
    for t in ["pyo", "pys"] {
        let out = py_ok(
            &url,
            "2026-07-28",
            &["listen", &format!("{t}_touch"), r#"{"uri": "test://static"}"#, &format!("{t}+test://static")],
        );
        assert_eq!(out["honored"]["resourceSubscriptions"], json!([format!("{t}+test://static")]), "{out}");
        let events = out["events"].as_array().unwrap();
        assert!(events.iter().any(|e| e["type"] == "ToolsListChanged"), "{t}: {out}");
        assert!(
            events.iter().any(|e| e["type"] == "ResourceUpdated" && e["uri"] == format!("{t}+test://static")),
            "{t}: {out}"
        );
    }
    // the client closed its streams: the sse target's sessions were unsubscribed
    wait_for("unsubscribe at the sse target", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("unsubscribe test://static")
    });
}

/// tests/peers/py_server.py as a 2026-07-28-only Streamable HTTP target with `--notify` on
/// The requests a py_server.py logged (`--log`), one JSON object each.
fn logged(log: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A gateway with the demo target and `target` (a targets entry) and a legacy session of it.
/// Resumption is off, so that a GET stream ends when its client leaves, not a retention later.
fn gateway_and_session(target: &str) -> (Gateway, String) {
    let targets = format!("          - name: demo\n            demo: {{}}\n{target}");
    let cfg = config(0, "", &targets).replacen("\nbinds:", "\n  mcp:\n    resumption: { maxEvents: 0 }\nbinds:", 1);
    let gw = Gateway::start(&cfg);
    let sid = common::mcp::initialize(gw.addr());
    (gw, sid)
}

/// `port`, logging its requests to `log`.
fn py_modern_only(port: u16, log: &std::path::Path) -> PeerServer {
    py_server(port, &["--modern-only", "--notify", "--log", log.to_str().unwrap()])
}

#[test]
fn listen_streams_hear_a_modern_only_target_through_a_listen_of_their_own_reopened_when_it_restarts() {
    let log = tempdir().join("py-modern.log");
    let port = free_port();
    let py = py_modern_only(port, &log);
    let targets = format!(
        "          - name: demo\n            demo: {{}}\n          - name: py\n            mcp: {{ host: \"127.0.0.1:{port}\" }}\n"
    );
    let gw = Gateway::start(&config(0, "", &targets));
    let addr = gw.addr();
    // a real client listens, then calls a tool that makes the target publish a tool list change
    // and an update of the resource: it has no GET stream nor resources/subscribe, only its
    // own listen streams, one of which the gateway opened for this client
    let url = format!("http://{addr}/mcp");
    let out = py_ok(&url, "2026-07-28", &["listen", "py_touch", r#"{"uri": "test://static"}"#, "py+test://static"]);
    assert_eq!(out["honored"]["resourceSubscriptions"], json!(["py+test://static"]), "{out}");
    let events = out["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "ToolsListChanged"), "{out}");
    assert!(events.iter().any(|e| e["type"] == "ResourceUpdated" && e["uri"] == "py+test://static"), "{out}");

    // a client declaring capabilities: the target is asked on its behalf, with them
    let caps = json!({"elicitation": {}});
    let asked = json!({"toolsListChanged": true, "resourceSubscriptions": ["py+test://static"]});
    let (mut s, ack) = Stream::listen_as(addr, asked, caps.clone());
    assert_eq!(ack["params"]["notifications"]["resourceSubscriptions"], json!(["py+test://static"]), "{ack}");
    let listens = || logged(&log).into_iter().filter(|l| l["method"] == "subscriptions/listen").collect::<Vec<_>>();
    let ended = || logged(&log).iter().filter(|l| l["ended"] == "subscriptions/listen").count();
    // the real client closed its stream: so did the gateway its listen at the target
    wait_for("the first upstream listen to end", || ended() == 1);
    let last = listens().pop().expect("a listen reached the target");
    assert_eq!((&last["mcp_method"], &last["capabilities"]), (&json!("subscriptions/listen"), &caps), "{last}");
    call(addr, "py_touch", json!({"uri": "test://static"}));
    let m = s.until("notifications/tools/list_changed");
    assert_eq!(m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 1, "{m}");
    let m = s.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "py+test://static", "{m}");
    assert_eq!(m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 1, "{m}");

    // the target restarts: its listen stream broke, and is opened again while the client's is open
    let before = listens().len();
    drop(py);
    let _py = py_modern_only(port, &log);
    wait_for("the listen to be reopened", || listens().len() > before);
    let touch = json!({"name": "py_touch", "arguments": {"uri": "test://static"}});
    assert!(common::mcp::modern(addr, "tools/call", touch)["result"].is_object());
    let m = s.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "py+test://static", "{m}");
    // the client leaves: the restarted target sees its listen end
    let before = ended();
    drop(s);
    wait_for("the reopened upstream listen to end", || ended() > before);
}

#[test]
fn a_listen_ends_when_its_modern_only_target_comes_back_as_a_legacy_server() {
    let port = free_port();
    let py = py_modern_only(port, &tempdir().join("py-modern.log"));
    let targets = format!("          - name: py\n            mcp: {{ host: \"127.0.0.1:{port}\" }}\n");
    let gw = Gateway::start(&config(0, "", &targets));
    let (mut s, _) = Stream::listen(gw.addr(), json!({"toolsListChanged": true}));
    // redeployed as a legacy-only server: the listen there cannot be reopened, and the client is
    // told to listen again (which then hears the target the legacy way)
    drop(py);
    let script = root().join("tests/peers/py1_server.py");
    let _legacy =
        start_peer(&peer("py1/bin/python"), &[script.to_str().unwrap(), "--port", &port.to_string()], &[], port);
    let end = s.message(Duration::from_secs(30)).expect("the listen's result");
    assert_eq!((&end["id"], &end["result"]["resultType"]), (&json!(1), &json!("complete")), "{end}");
    gw.wait_line("mcp target py: subscriptions/listen not reopened");
}

#[test]
fn a_legacy_sessions_get_stream_hears_a_modern_only_target_through_a_listen_of_its_own_closed_with_it() {
    let log = tempdir().join("py-modern.log");
    let port = free_port();
    let _py = py_modern_only(port, &log);
    let (gw, sid) =
        gateway_and_session(&format!("          - name: py\n            mcp: {{ host: \"127.0.0.1:{port}\" }}\n"));
    let addr = gw.addr();
    let mut s = Stream::get(addr, &sid);
    let listens = || logged(&log).iter().filter(|l| l["method"] == "subscriptions/listen").count();
    let ended = || logged(&log).iter().filter(|l| l["ended"] == "subscriptions/listen").count();
    // requests of the session, each on a new connection: either shard serves them
    let rpc = |method: &str, params: Value| {
        let v = common::mcp::rpc(addr, &sid, method, params);
        assert!(v["result"].is_object(), "{method}: {v}");
    };
    let touch = || rpc("tools/call", json!({"name": "py_touch", "arguments": {"uri": "test://static"}}));
    // the target has no GET stream: the gateway listens there for the session's stream
    touch();
    let m = s.until("notifications/tools/list_changed");
    // the gateway's own notification, as for any other target
    assert_eq!(m, json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
    assert_eq!((listens(), ended()), (1, 0));

    // nor has it resources/subscribe: the stream's listen there asks for the URI instead. The
    // subscription is made on the shard the stream is not on, which learns of it by mailbox.
    subscribe_on_the_other_shard(&gw, &sid, "py+test://static");
    // the stream may learn of the subscription after its answer: touched until it hears
    let updated = s.until_touched("notifications/resources/updated", touch);
    let uri = json!({"uri": "py+test://static"});
    assert_eq!(updated, json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": uri}));
    rpc("resources/unsubscribe", json!({"uri": "py+test://static"}));

    // the client leaves: the gateway notices when it next writes, and closes its listens
    drop(s);
    wait_for("every upstream listen to end with the GET stream", || {
        touch();
        ended() == listens()
    });
}

/// `resources/subscribe` of `uri` in session `sid`, sent on a connection to the shard that does
/// not serve the session's one open connection (its GET stream); it must succeed.
fn subscribe_on_the_other_shard(gw: &Gateway, sid: &str, uri: &str) {
    let open = || connections(gw).iter().sum::<u64>();
    wait_for("the GET stream's connection alone", || open() == 1);
    let stream_shard = connections(gw).iter().position(|&n| n == 1).unwrap();
    let mut other = loop {
        let c = TcpStream::connect(gw.addr()).unwrap();
        wait_for("the connection to be accepted", || open() == 2);
        if connections(gw)[stream_shard] == 1 {
            break c;
        }
        drop(c);
        wait_for("the connection to close", || open() == 1);
    };
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": {"uri": uri}});
    let headers = [("mcp-session-id", sid), ("connection", "close")];
    other.write_all(common::mcp::post_request("/mcp", &headers, &body.to_string()).as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut other, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with(r#""result":{}}"#), "{answer}");
}

#[test]
fn a_legacy_sessions_get_stream_hears_a_shared_stdio_process_change_its_lists() {
    let targets = format!("{}            upstreamMode: shared\n", py_stdio("pyo"));
    let gw = Gateway::start(&config(0, "", &format!("          - name: demo\n            demo: {{}}\n{targets}")));
    let addr = gw.addr();
    let sid = common::mcp::initialize(addr);
    let mut get = Stream::get(addr, &sid);
    // the shared process notifies the sessions that subscribed: this one's requests go to it
    let rpc = |id: u64, method: &str, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let v = common::mcp::message(&common::mcp::post(addr, Some(&sid), &body));
        assert!(v.get("result").is_some(), "{method}: {v}");
    };
    rpc(2, "resources/subscribe", json!({"uri": "pyo+test://static"}));
    gw.wait_line("mcp target pyo: subscribe test://static");
    rpc(3, "tools/call", json!({"name": "pyo_touch", "arguments": {"uri": "test://static"}}));
    let m = get.until("notifications/tools/list_changed");
    // the gateway's own notification: nothing of the target's goes with it
    assert_eq!(m, json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));

    // the shared process dies; the stream stays open and hears the one started after it
    let started = gw.wait_line("mcp target pyo: started");
    let pid = started.rsplit("(pid ").next().unwrap().trim_end_matches(')');
    assert!(std::process::Command::new("kill").args(["-9", pid]).status().unwrap().success());
    gw.wait_line(&format!("process exited (pid {pid})"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // the new process knows no subscription: this session subscribes again
        rpc(4, "resources/subscribe", json!({"uri": "pyo+test://static"}));
        rpc(5, "tools/call", json!({"name": "pyo_touch", "arguments": {"uri": "test://static"}}));
        match get.message(Duration::from_millis(500)) {
            Some(m) if m["method"] == "notifications/tools/list_changed" => break,
            m => assert!(Instant::now() < deadline, "nothing from the new process: {m:?}"),
        }
    }
    assert_eq!(gw.count_lines("mcp target pyo: started"), 2);
}

/// Demo and a shared process of py_server.py.
fn shared_py() -> String {
    format!("          - name: demo\n            demo: {{}}\n{}            upstreamMode: shared\n", py_stdio("pyo"))
}

/// A request in legacy session `sid` that must succeed.
fn ok(addr: SocketAddr, sid: &str, method: &str, params: Value) {
    let v = common::mcp::rpc(addr, sid, method, params);
    assert!(v.get("result").is_some(), "{method}: {v}");
}

fn touch(addr: SocketAddr, sid: &str) {
    ok(addr, sid, "tools/call", json!({"name": "pyo_touch", "arguments": {"uri": "test://static"}}));
}

#[test]
fn a_legacy_sessions_get_stream_hears_the_updates_it_subscribed_to_at_a_shared_stdio_process() {
    let gw = Gateway::start(&config(0, "", &shared_py()));
    let addr = gw.addr();
    let (a, b) = (common::mcp::initialize(addr), common::mcp::initialize(addr));
    // every GET and POST lands on either shard: a session's subscription is found wherever its stream is
    let (mut get_a, mut get_b) = (Stream::get(addr, &a), Stream::get(addr, &b));
    ok(addr, &b, "resources/subscribe", json!({"uri": "pyo+test://item/1"}));
    ok(addr, &a, "resources/subscribe", json!({"uri": "pyo+test://static"}));
    touch(addr, &a);
    let m = get_a.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "pyo+test://static", "{m}");
    // b hears the list change, and not the resource it did not subscribe to
    get_b.until("notifications/tools/list_changed");
    get_b.hears_no("notifications/resources/updated");

    // a unsubscribes: the process is told (nobody else holds the URI), a hears no more updates
    ok(addr, &a, "resources/unsubscribe", json!({"uri": "pyo+test://static"}));
    gw.wait_line("mcp target pyo: unsubscribe test://static");
    touch(addr, &a);
    get_a.until("notifications/tools/list_changed");
    get_a.hears_no("notifications/resources/updated");
}

#[test]
fn a_legacy_unsubscribe_keeps_what_others_still_hold_at_a_shared_stdio_process() {
    let gw = Gateway::start(&config(0, "", &shared_py()));
    let addr = gw.addr();
    let subscribed = "mcp target pyo: subscribe test://static";
    let unsubscribed = "mcp target pyo: unsubscribe test://static";
    let (mut listen, _) = Stream::listen(addr, json!({"resourceSubscriptions": ["pyo+test://static"]}));
    gw.wait_line(subscribed);
    // a session subscribes and unsubscribes (twice: the second is a no-op) while the listen stream holds the URI
    let sid = common::mcp::initialize(addr);
    let uri = json!({"uri": "pyo+test://static"});
    ok(addr, &sid, "resources/subscribe", uri.clone());
    ok(addr, &sid, "resources/unsubscribe", uri.clone());
    ok(addr, &sid, "resources/unsubscribe", uri.clone());
    call(addr, "pyo_touch", json!({"uri": "test://static"}));
    let m = listen.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "pyo+test://static", "{m}");
    assert_eq!(gw.count_lines(subscribed), 1, "the process heard of the URI once");
    assert_eq!(gw.count_lines(unsubscribed), 0, "the listen stream still holds it");

    // the session subscribes again and the listen stream leaves: the session's hold keeps it
    let mut get = Stream::get(addr, &sid);
    ok(addr, &sid, "resources/subscribe", uri.clone());
    drop(listen);
    wait_for("the listen stream to end", || listen_streams(&gw) == 0);
    touch(addr, &sid);
    let m = get.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "pyo+test://static", "{m}");
    assert_eq!(gw.count_lines(unsubscribed), 0);

    // the session ends: nobody holds the URI any more
    let r = raw(addr, format!("DELETE /mcp HTTP/1.1\r\nhost: t\r\nmcp-session-id: {sid}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200, "{}", r.body_str());
    gw.wait_line(unsubscribed);
    assert_eq!(gw.count_lines(subscribed), 1);
}

#[test]
fn a_legacy_sse_stream_hears_a_shared_stdio_process_change_its_lists_and_update_what_it_subscribed_to() {
    let gw = Gateway::start(&config(0, "", &shared_py()));
    let addr = gw.addr();
    let (mut sse, endpoint) = Stream::sse(addr);
    let (mut other, other_endpoint) = Stream::sse(addr);
    // the messages land on either shard and are served on the stream's
    let send = |endpoint: &str, body: Value| {
        let r = common::mcp::post_with(addr, endpoint, &[], &body.to_string());
        assert_eq!(r.status, 202, "{}", r.body_str());
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for (s, e) in [(&mut sse, &endpoint), (&mut other, &other_endpoint)] {
        send(e, init.clone());
        assert!(s.until_id(1)["result"].is_object());
        send(e, json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }
    let subscribe =
        json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": "pyo+test://static"}});
    send(&endpoint, subscribe);
    assert!(sse.until_id(2)["result"].is_object());
    gw.wait_line("mcp target pyo: subscribe test://static");
    let touch = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "pyo_touch", "arguments": {"uri": "test://static"}}});
    send(&endpoint, touch);
    let m = sse.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "pyo+test://static", "{m}");
    // the other stream hears the list change, not the update it did not subscribe to
    assert_eq!(
        other.until("notifications/tools/list_changed"),
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    );
    other.hears_no("notifications/resources/updated");
}

#[test]
fn at_a_shared_sse_target_a_legacy_unsubscribe_keeps_what_a_listen_stream_holds_and_sse_streams_hear_their_updates() {
    let log = tempdir().join("py-sse-holds.log");
    let (_sse, port) = py_sse(&log);
    let targets = format!(
        "          - name: demo\n            demo: {{}}\n          - name: pys\n            sse: {{ host: \"127.0.0.1:{port}\" }}\n"
    );
    let gw = Gateway::start(&config(0, "", &targets));
    let addr = gw.addr();
    let (mut listen, _) = Stream::listen(addr, json!({"resourceSubscriptions": ["pys+test://static"]}));
    // each shard has its own session with the target: some of these land on the listen
    // stream's, whose subscription must survive them
    let sid = common::mcp::initialize(addr);
    let uri = json!({"uri": "pys+test://static"});
    for _ in 0..6 {
        ok(addr, &sid, "resources/subscribe", uri.clone());
        ok(addr, &sid, "resources/unsubscribe", uri.clone());
    }
    call(addr, "pys_touch", json!({"uri": "test://static"}));
    let m = listen.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "pys+test://static", "{m}");

    // a legacy /sse session's messages are served on its stream's shard: it hears what it subscribed to
    let (mut sse, endpoint) = Stream::sse(addr);
    let send = |body: Value| {
        let r = common::mcp::post_with(addr, &endpoint, &[], &body.to_string());
        assert_eq!(r.status, 202, "{}", r.body_str());
    };
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}));
    assert!(sse.until_id(1)["result"].is_object());
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": "pys+test://static"}}));
    assert!(sse.until_id(2)["result"].is_object());
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "pys_touch", "arguments": {"uri": "test://static"}}}));
    let m = sse.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "pys+test://static", "{m}");
}

#[test]
fn at_a_shared_sse_target_a_legacy_sessions_get_stream_hears_what_it_subscribed_to_on_the_other_shard() {
    let log = tempdir().join("py-sse-shards.log");
    let (_sse, port) = py_sse(&log);
    let (gw, sid) =
        gateway_and_session(&format!("          - name: pys\n            sse: {{ host: \"127.0.0.1:{port}\" }}\n"));
    let addr = gw.addr();
    let mut get = Stream::get(addr, &sid);
    // each shard has its own session with the target; the stream hears its shard's, and the
    // subscription is served by the other shard
    subscribe_on_the_other_shard(&gw, &sid, "pys+test://static");
    // the stream's shard may take the hold after the answer: touched until it hears
    let updated = get.until_touched("notifications/resources/updated", || {
        ok(addr, &sid, "tools/call", json!({"name": "pys_touch", "arguments": {"uri": "test://static"}}))
    });
    let uri = json!({"uri": "pys+test://static"});
    assert_eq!(updated, json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": uri}));

    // it unsubscribes (on either shard): every shard's session with the target is unsubscribed
    ok(addr, &sid, "resources/unsubscribe", uri.clone());
    let unsubscribed = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().filter(|l| l.contains("unsubscribe test://static")).count()
    };
    wait_for("both shards' sessions to unsubscribe", || unsubscribed() == 2);
}

#[test]
fn a_uri_is_subscribed_upstream_once_and_unsubscribed_when_its_last_listener_leaves() {
    let gw =
        Gateway::start(&config(0, "", &format!("          - name: demo\n            demo: {{}}\n{}", py_stdio("pyo"))));
    let addr = gw.addr();
    let subscribed = "mcp target pyo: subscribe test://static";
    let unsubscribed = "mcp target pyo: unsubscribe test://static";
    let asked = json!({"resourceSubscriptions": ["pyo+test://static"]});
    // new connections land on either shard: the process is shared by both, and so is the count
    let (mut first, ack) = Stream::listen(addr, asked.clone());
    assert_eq!(ack["params"]["notifications"]["resourceSubscriptions"], json!(["pyo+test://static"]), "{ack}");
    let (mut second, _) = Stream::listen(addr, asked.clone());
    gw.wait_line(subscribed);
    assert_eq!(gw.count_lines(subscribed), 1, "subscribed once for both listeners");

    call(addr, "pyo_touch", json!({"uri": "test://static"}));
    for s in [&mut first, &mut second] {
        let m = s.until("notifications/resources/updated");
        assert_eq!(m["params"]["uri"], "pyo+test://static", "{m}");
        assert_eq!(m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 1, "{m}");
    }

    // the first leaves; once its stream is gone the second still hears the resource
    drop(first);
    wait_for("the first stream to end", || listen_streams(&gw) == 1);
    call(addr, "pyo_touch", json!({"uri": "test://static"}));
    let m = second.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "pyo+test://static", "{m}");
    assert_eq!(gw.count_lines(unsubscribed), 0, "still listened to");

    // the last one leaves: the process is told
    drop(second);
    gw.wait_line(unsubscribed);
    assert_eq!(gw.count_lines(unsubscribed), 1);
    // the process wrote every subscribe before that line: the count is final
    assert_eq!(gw.count_lines(subscribed), 1);
}

#[test]
fn under_prefix_mode_never_a_listen_uri_goes_to_the_target_that_lists_it() {
    // demo is first: a URI without a prefix used to go to the first target
    let targets = format!("          - name: demo\n            demo: {{}}\n{}", py_stdio("py"));
    let gw = Gateway::start(&config(0, "          prefixMode: never\n", &targets));
    let addr = gw.addr();
    let (mut s, ack) = Stream::listen(addr, json!({"resourceSubscriptions": ["test://static", "nope://x"]}));
    // only what has an owner is honored
    assert_eq!(ack["params"]["notifications"]["resourceSubscriptions"], json!(["test://static"]), "{ack}");
    gw.wait_line("mcp target py: subscribe test://static");
    call(addr, "touch", json!({"uri": "test://static"}));
    let m = s.until("notifications/resources/updated");
    assert_eq!(m["params"]["uri"], "test://static", "{m}");
}

#[test]
fn a_reload_that_adds_a_target_is_announced_on_get_sse_and_listen_streams() {
    let one = "          - name: a\n            demo: {}\n";
    let gw = Gateway::start(&config(0, "", one));
    let addr = gw.addr();

    // a Streamable HTTP session's GET stream
    let sid = common::mcp::initialize(addr);
    let mut get = Stream::get(addr, &sid);
    // a legacy HTTP+SSE stream (its first event names the endpoint)
    let (mut sse, _) = Stream::sse(addr);
    // a listen stream asking for tool list changes only
    let (mut listen, _) = Stream::listen(addr, json!({"toolsListChanged": true}));
    wait_for("the listen stream", || listen_streams(&gw) == 1);

    // the same port, as the file names it: port 0 stays the bound one
    gw.rewrite_config(&config(0, "", &format!("{one}          - name: b\n            demo: {{}}\n")));
    gw.wait_line("reload applied");
    for (kind, s) in [("GET", &mut get), ("/sse", &mut sse)] {
        assert_eq!(s.until("notifications/tools/list_changed")["method"], "notifications/tools/list_changed", "{kind}");
        s.until("notifications/resources/list_changed");
    }
    let m = listen.until("notifications/tools/list_changed");
    assert_eq!(m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 1, "{m}");
    // what it did not ask for does not come
    let more = listen.message(Duration::from_millis(300));
    assert!(more.is_none(), "{more:?}");
}

#[test]
fn a_reload_naming_the_port_that_port_0_got_keeps_the_route_and_announces_only_changes() {
    let two = "          - name: a\n            demo: {}\n          - name: b\n            demo: {}\n";
    let gw = Gateway::start(&config(0, "", two));
    let (addr, port) = (gw.addr(), gw.addr().port());
    let sid = common::mcp::initialize(addr);
    let mut get = Stream::get(addr, &sid);
    // the file now names the port the gateway announced: the same bind, the same route, the
    // same view, so nothing to announce
    gw.rewrite_config(&config(port, "", two));
    gw.wait_line("reload applied");
    // a tool filter changes the tools list only
    gw.rewrite_config(&config(port, "", &format!("{two}            tools: {{exclude: [add]}}\n")));
    wait_for("the second reload", || gw.count_lines("reload applied") == 2);
    assert_eq!(get.until("notifications/tools/list_changed")["method"], "notifications/tools/list_changed");
    let more = get.message(Duration::from_millis(500));
    assert!(more.is_none(), "the first reload announced nothing, the second only the tools: {more:?}");
    let m = gw.metrics();
    assert!(m.contains("route=\"0/listener0/route0\""), "the route keeps its name: {m}");
    assert!(!m.contains(&format!("route=\"{port}/listener0/route0\"")), "{m}");
}
