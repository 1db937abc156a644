//! The MCP catalog cache through the real binary: list pages served again from a shard's cache, dropped on every shard by a target's `list_changed`, never kept for a client's own upstream session (unless hinted public), for private or ttl-0 pages, nor beyond `maxBytes`.
//!
//! The target is a Streamable HTTP fixture in this process that counts the lists it answers per
//! path; the path picks its cache hints.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// What the fixture shares between its connections and the test.
#[derive(Default)]
struct State {
    /// `tools/list` answered, by path.
    lists: HashMap<String, usize>,
    /// Bumped by [`Fixture::change`]: the one tool is `v{version}`.
    version: u32,
    /// Open GET streams (chunked SSE) of upstream sessions.
    streams: Vec<TcpStream>,
    sessions: u32,
    /// Whether `/gated` lists are answered yet (they are held until [`Fixture::open`]).
    open: bool,
}

/// A Streamable HTTP MCP target: `initialize` gives a session, `tools/list` answers one tool
/// named after the version, with hints by path: `/plain` none, `/public` 60 s public,
/// `/private` 60 s private, `/ttl0` ttl 0 public, `/gated` none but answered only once the test
/// opens the gate.
struct Fixture {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Fixture {
    fn start() -> Fixture {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || serve(s, st));
            }
        });
        Fixture { addr, state }
    }

    fn lists(&self, path: &str) -> usize {
        self.state.lock().unwrap().lists.get(path).copied().unwrap_or(0)
    }

    fn streams(&self) -> usize {
        self.state.lock().unwrap().streams.len()
    }

    /// A new tool list, announced on every open GET stream.
    fn change(&self) {
        let mut st = self.state.lock().unwrap();
        st.version += 1;
        let ev = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
        let chunk = [format!("{:x}\r\n", ev.len()).as_bytes(), ev, b"\r\n"].concat();
        st.streams.retain_mut(|s| s.write_all(&chunk).is_ok());
    }

    /// Answer the `/gated` lists held so far and from now on.
    fn open(&self) {
        self.state.lock().unwrap().open = true;
    }

    fn host(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn serve(s: TcpStream, st: Arc<Mutex<State>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    while let Some(head) = read_head(&mut r) {
        let mut body = vec![0; head_header(&head, "content-length").map_or(0, |v| v.parse().unwrap())];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let line = head.lines().next().unwrap_or("").to_string();
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        if line.starts_with("GET") {
            let _ = w
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
            st.lock().unwrap().streams.push(w.try_clone().unwrap());
            // the stream stays open until the gateway closes it
            let mut sink = [0u8; 512];
            while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        if line.starts_with("DELETE") {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            continue;
        }
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(id) = msg.get("id").cloned() else {
            let _ = w.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
            continue;
        };
        let mut extra = String::new();
        let result = match msg["method"].as_str().unwrap_or("") {
            "initialize" => {
                let mut g = st.lock().unwrap();
                g.sessions += 1;
                extra = format!("mcp-session-id: fixture-{}\r\n", g.sessions);
                json!({"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {"listChanged": true}},
                       "serverInfo": {"name": "catalog-fixture", "version": "1"}})
            }
            "tools/list" => {
                *st.lock().unwrap().lists.entry(path.clone()).or_default() += 1;
                while path == "/gated" && !st.lock().unwrap().open {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let g = st.lock().unwrap();
                let mut r = json!({"tools": [{"name": format!("v{}", g.version), "description": "the current version",
                                              "inputSchema": {"type": "object"}}]});
                let hints = match path.as_str() {
                    "/public" => Some((60000, "public")),
                    "/private" => Some((60000, "private")),
                    "/ttl0" => Some((0, "public")),
                    _ => None,
                };
                if let Some((ttl, scope)) = hints {
                    r["ttlMs"] = json!(ttl);
                    r["cacheScope"] = json!(scope);
                }
                r
            }
            _ => json!({}),
        };
        let out = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{out}",
            out.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn config(targets: &str, cache: &str) -> String {
    config_on(0, targets, cache)
}

fn config_on(port: u16, targets: &str, cache: &str) -> String {
    format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\n  mcp:\n    catalogCache: {{{cache}}}\nbinds:\n- port: {port}\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: /mcp}}}}]\n      backends:\n      - mcp:\n          targets:\n{targets}"
    )
}

fn target(name: &str, host: &str) -> String {
    format!("          - name: {name}\n            mcp: {{host: \"{host}\"}}\n")
}

/// A 2026-07-28 `tools/list` (stateless: the targets are reached through the shard's pooled
/// upstream session).
fn modern_list() -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                      "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                           "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/list\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A legacy `tools/list` in session `sid`.
fn session_list(sid: &str) -> Vec<u8> {
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-session-id: {sid}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The tool names of a list answer.
fn names(r: &Response) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body_str());
    let v = common::mcp::message(r);
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// A metric's value (0 when absent).
fn metric(gw: &Gateway, line: &str) -> i64 {
    gw.metrics().lines().find_map(|l| l.strip_prefix(line).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

fn poll(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn a_second_list_is_served_from_the_cache_of_its_shard() {
    let fx = Fixture::start();
    let targets = [target("a", &fx.host("/plain")), "          - name: d\n            demo: {}\n".into()].concat();
    let gw = Gateway::start(&config(&targets, ""));
    let mut c = Client::connect(gw.addr());
    let first = names(&c.send(&modern_list()).unwrap());
    assert_eq!(first[0], "a_v0");
    assert!(first.contains(&"d_echo".to_string()), "{first:?}");
    let again = c.send(&modern_list()).unwrap();
    assert_eq!(names(&again), first, "the cached pages merge as the fetched ones did");
    let v = common::mcp::message(&again);
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["cacheScope"], "private", "the merged list is the caller's view");
    assert_eq!(fx.lists("/plain"), 1, "one keep-alive connection stays on its shard: its cache answered");
    assert_eq!(metric(&gw, "ringgate_mcp_catalog_lookups_total{kind=\"tools\",result=\"hit\"}"), 2);
    assert_eq!(metric(&gw, "ringgate_mcp_catalog_lookups_total{kind=\"tools\",result=\"miss\"}"), 2);
    let m = gw.metrics();
    let bytes: i64 = m
        .lines()
        .filter_map(|l| l.strip_prefix("ringgate_mcp_catalog_bytes{shard=").and_then(|r| r.split(' ').nth(1)))
        .map(|v| v.parse::<i64>().unwrap())
        .sum();
    assert!(bytes > 0, "{m}");
}

#[test]
fn concurrent_misses_on_a_shard_share_one_fetch() {
    const N: usize = 8;
    let fx = Fixture::start();
    // one shard: every request misses the same cache
    let gw = Gateway::start(&config(&target("slow", &fx.host("/gated")), "").replace("workers: 2", "workers: 1"));
    let addr = gw.addr();
    let clients: Vec<_> = (0..N).map(|_| std::thread::spawn(move || names(&raw(addr, &modern_list())))).collect();
    // each miss is counted before it fetches or joins the fetch in flight, which the gate holds
    let misses = "ringgate_mcp_catalog_lookups_total{kind=\"tools\",result=\"miss\"}";
    poll("every request to miss", || metric(&gw, misses) == N as i64);
    fx.open();
    for c in clients {
        assert_eq!(c.join().unwrap(), ["v0"]);
    }
    assert_eq!(fx.lists("/gated"), 1, "one fetch answered every concurrent miss");
    assert_eq!(metric(&gw, "ringgate_mcp_catalog_coalesced_total{kind=\"tools\"}"), N as i64 - 1);
    // and the page it fetched is cached
    assert_eq!(names(&raw(addr, &modern_list())), ["v0"]);
    assert_eq!(fx.lists("/gated"), 1);
}

#[test]
fn pages_not_meant_for_everyone_are_not_cached() {
    let fx = Fixture::start();
    let targets = [
        target("priv", &fx.host("/private")),
        target("zero", &fx.host("/ttl0")),
        target("pub", &fx.host("/public")),
        target("own", &fx.host("/plain")),
        "          - name: off\n            demo: {}\n            catalogMaxAge: 0s\n".into(),
    ]
    .concat();
    let gw = Gateway::start(&config(&targets, ""));
    // pooled upstream (a 2026-07-28 client): private and ttl 0 are fetched every time
    let mut c = Client::connect(gw.addr());
    for _ in 0..2 {
        names(&c.send(&modern_list()).unwrap());
    }
    assert_eq!((fx.lists("/private"), fx.lists("/ttl0"), fx.lists("/public"), fx.lists("/plain")), (2, 2, 1, 1));
    assert_eq!(
        metric(&gw, "ringgate_mcp_catalog_lookups_total{kind=\"tools\",result=\"bypass\"}"),
        2,
        "catalogMaxAge 0"
    );
    // the client's own upstream sessions (a legacy session): only the public page is shared
    let sid = common::mcp::initialize(gw.addr());
    let mut c = Client::connect(gw.addr());
    for _ in 0..2 {
        let n = names(&c.send(&session_list(&sid)).unwrap());
        assert!(n.contains(&"own_v0".to_string()), "{n:?}");
    }
    assert_eq!(fx.lists("/plain"), 3, "a session's own upstream session answered both");
    assert_eq!((fx.lists("/private"), fx.lists("/ttl0")), (4, 4));
    assert!(fx.lists("/public") <= 2, "the public page is served to sessions too");
}

/// Both shards hold cached pages (by their `ringgate_mcp_catalog_bytes` gauges).
fn both_shards_cache_pages(gw: &Gateway) -> bool {
    let m = gw.metrics();
    (0..2).all(|s| {
        m.lines()
            .any(|l| l.strip_prefix(&format!("ringgate_mcp_catalog_bytes{{shard=\"{s}\"}} ")).is_some_and(|v| v != "0"))
    })
}

#[test]
fn list_changed_on_an_upstream_stream_reaches_every_shard_before_the_client() {
    let fx = Fixture::start();
    let gw = Gateway::start(&config(&target("pub", &fx.host("/public")), ""));
    let addr = gw.addr();
    // fill both shards' caches (new connections spread over the shards)
    poll("both shards to cache the page", || {
        assert_eq!(names(&raw(addr, &modern_list())), ["v0"]);
        both_shards_cache_pages(&gw)
    });
    let lists = fx.lists("/public");
    for _ in 0..6 {
        assert_eq!(names(&raw(addr, &modern_list())), ["v0"]);
    }
    assert_eq!(fx.lists("/public"), lists, "every shard answers from its cache");
    // a session's GET stream carries the target's notifications
    let sid = common::mcp::initialize(addr);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /mcp HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n")
        .unwrap();
    let mut events = BufReader::new(stream);
    let head = read_head(&mut events).expect("stream head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    poll("the gateway's upstream GET stream", || fx.streams() == 1);
    fx.change();
    let mut line = String::new();
    while !line.contains("notifications/tools/list_changed") {
        line.clear();
        assert!(events.read_line(&mut line).unwrap() > 0, "stream ended");
    }
    // right after the notification, whichever shard answers: the new list
    for _ in 0..8 {
        assert_eq!(names(&raw(addr, &modern_list())), ["v1"]);
    }
    assert_eq!(names(&Client::connect(addr).send(&session_list(&sid)).unwrap()), ["v1"]);
    let refetched = fx.lists("/public") - lists;
    assert!((1..=2).contains(&refetched), "each shard fetched the new page once, then kept it: {refetched}");
}

#[test]
fn max_bytes_bounds_each_shard() {
    let fx = Fixture::start();
    let targets = [target("a", &fx.host("/plain")), target("b", &fx.host("/public"))].concat();
    // room for one of the two pages (about 300 bytes each), not both
    let gw = Gateway::start(&config(&targets, "maxBytes: 450"));
    let mut c = Client::connect(gw.addr());
    for _ in 0..3 {
        assert_eq!(names(&c.send(&modern_list()).unwrap()), ["a_v0", "b_v0"]);
    }
    let m = gw.metrics();
    for l in m.lines().filter(|l| l.starts_with("ringgate_mcp_catalog_bytes{")) {
        let v: i64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0..=450).contains(&v), "{l}");
    }
    // one page at a time stays: each list finds the one stored last and fetches the other
    assert_eq!(fx.lists("/plain") + fx.lists("/public"), 4);
    assert_eq!(metric(&gw, "ringgate_mcp_catalog_lookups_total{kind=\"tools\",result=\"hit\"}"), 2);
}

#[test]
fn a_reload_drops_the_pages_of_the_targets_it_changed() {
    let fx = Fixture::start();
    let (a, b) = (target("a", &fx.host("/plain")), target("b", &fx.host("/public")));
    // a reload keeps a route's identity (and so its pages) only on the same port: a fixed one,
    // as the other reload tests use
    let port = common::peers::free_port();
    let gw = Gateway::start(&config_on(port, &[a.clone(), b.clone()].concat(), ""));
    let mut c = Client::connect(gw.addr());
    for _ in 0..2 {
        assert_eq!(names(&c.send(&modern_list()).unwrap()), ["a_v0", "b_v0"]);
    }
    assert_eq!((fx.lists("/plain"), fx.lists("/public")), (1, 1));
    // a is changed (its own maxAge), b is not
    let changed = format!("{a}            catalogMaxAge: 20s\n{b}");
    gw.rewrite_config(&config_on(port, &changed, ""));
    gw.wait_line("reload applied");
    assert_eq!(names(&c.send(&modern_list()).unwrap()), ["a_v0", "b_v0"]);
    assert_eq!((fx.lists("/plain"), fx.lists("/public")), (2, 1), "only the changed target was fetched again");
}

/// A shared stdio target (Python, standard library): `tools/list` answers `v{version}`; the tool
/// `bump` changes the version and says so (`list_changed`) before its answer, `count` answers
/// how many lists it served.
const STDIO_SERVER: &str = r#"
import json, sys
version, lists = 0, 0
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    method = m.get("method")
    if method == "initialize":
        r = {"protocolVersion": m["params"].get("protocolVersion"), "capabilities": {"tools": {"listChanged": True}},
             "serverInfo": {"name": "catalog-stdio", "version": "1"}}
    elif method == "tools/list":
        lists += 1
        r = {"tools": [{"name": "v%d" % version, "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        if m["params"]["name"] == "bump":
            version += 1
            print(json.dumps({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}), flush=True)
        r = {"content": [{"type": "text", "text": str(lists)}]}
    else:
        r = {}
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#;

/// A 2026-07-28 `tools/call` of `name`; the answer's text.
fn modern_call(addr: SocketAddr, name: &str) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": name, "arguments": {},
                                 "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                           "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: {name}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = raw(addr, req.as_bytes());
    let v = common::mcp::message(&r);
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{v}")).to_string()
}

#[test]
fn list_changed_from_a_shared_stdio_process_reaches_every_shard() {
    let dir = tempdir();
    let script = dir.join("server.py");
    std::fs::write(&script, STDIO_SERVER).unwrap();
    let target = format!(
        "          - name: s\n            upstreamMode: shared\n            stdio: {{cmd: python3, args: [\"{}\"]}}\n",
        script.display()
    );
    let gw = Gateway::start(&config(&target, ""));
    let addr = gw.addr();
    poll("both shards to cache the page", || {
        assert_eq!(names(&raw(addr, &modern_list())), ["v0"]);
        both_shards_cache_pages(&gw)
    });
    let served: usize = modern_call(addr, "count").parse().unwrap();
    for _ in 0..6 {
        assert_eq!(names(&raw(addr, &modern_list())), ["v0"]);
    }
    assert_eq!(modern_call(addr, "count").parse::<usize>().unwrap(), served, "the shards' caches answered");
    // the process's notification comes before its answer: once the client has the answer,
    // no shard serves the old list
    modern_call(addr, "bump");
    for _ in 0..8 {
        assert_eq!(names(&raw(addr, &modern_list())), ["v1"]);
    }
}
