//! rg-fixture: one fast upstream serving, by path, an MCP server (`/mcp…`, both eras), an OpenAI chat-completions stub (`/v1/chat/completions`) and plain HTTP (anything else).

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};
use serde_json::{json, Value};

use crate::client::Conn;
use crate::http::{write_chunk, write_response_head, RequestHead};
use crate::mcp::{LEGACY_VERSION, MODERN_VERSION};

/// Versions of the legacy era the fixture accepts in `MCP-Protocol-Version`.
const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", LEGACY_VERSION];

/// What the fixture serves.
#[derive(Clone, Debug)]
pub struct FixtureConfig {
    /// Tools `tools/list` returns (the first is always `echo`).
    pub tools: usize,
    /// Body size of a plain HTTP GET answer.
    pub body_bytes: usize,
    /// Interval of the notifications on an MCP GET stream.
    pub notify: Duration,
    /// Content chunks of a streamed chat completion.
    pub llm_chunks: usize,
    /// Pause between streamed chat-completion chunks.
    pub llm_chunk_gap: Duration,
    /// Delay before every MCP `tools/*` answer (a path segment `delay-<µs>` overrides it).
    pub delay: Duration,
    /// The `ttlMs` cache hint of a 2026-07-28 `tools/list` (0: do not cache; always `public`).
    pub list_ttl_ms: u64,
}

impl Default for FixtureConfig {
    fn default() -> Self {
        FixtureConfig {
            tools: 8,
            body_bytes: 5,
            notify: Duration::from_millis(1000),
            llm_chunks: 8,
            llm_chunk_gap: Duration::ZERO,
            delay: Duration::ZERO,
            list_ttl_ms: 0,
        }
    }
}

/// How to answer one request.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// A complete response, written at once (after `delay`).
    Full {
        /// The response bytes.
        bytes: Vec<u8>,
        /// Wait this long first.
        delay: Duration,
    },
    /// Open an MCP GET stream: periodic `notifications/message` events until the client leaves.
    Stream,
    /// A head, then chunks with a pause between them, then the end of the chunked body.
    Chunks {
        /// Status line and headers.
        head: Vec<u8>,
        /// Chunk payloads.
        chunks: Vec<Vec<u8>>,
        /// Pause before each chunk.
        gap: Duration,
    },
}

/// The fixture's state (one per thread): MCP sessions and precomputed answers.
pub struct Fixture {
    cfg: FixtureConfig,
    sessions: HashSet<String>,
    next_session: u64,
    tools_legacy: String,
    tools_modern: String,
    body: Vec<u8>,
    /// A stamp that keeps session ids of different fixture processes apart.
    stamp: u64,
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn json_response(status: u16, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    write_response_head(&mut out, status, "application/json", extra, Some(body.len()));
    out.extend_from_slice(body);
    out
}

fn rpc_result(id: &Value, result: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#).into_bytes()
}

fn rpc_error(id: Option<&Value>, code: i64, message: &str) -> Vec<u8> {
    let id = id.cloned().unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string().into_bytes()
}

fn full(bytes: Vec<u8>) -> Reply {
    Reply::Full { bytes, delay: Duration::ZERO }
}

impl Fixture {
    /// A fixture with no sessions.
    pub fn new(cfg: FixtureConfig) -> Fixture {
        let tools: Vec<Value> = (0..cfg.tools.max(1))
            .map(|i| {
                let name = if i == 0 { "echo".to_string() } else { format!("tool_{i}") };
                json!({
                    "name": name,
                    "description": format!("Fixture tool {i}: returns the message it is given"),
                    "inputSchema": {
                        "type": "object",
                        "properties": {"message": {"type": "string", "description": "Text to echo back"}},
                        "required": ["message"],
                    },
                })
            })
            .collect();
        let tools_legacy = json!({ "tools": tools }).to_string();
        let tools_modern =
            json!({ "tools": tools, "resultType": "complete", "ttlMs": cfg.list_ttl_ms, "cacheScope": "public" })
                .to_string();
        let stamp = unix_nanos() ^ u64::from(std::process::id()) << 20;
        Fixture {
            body: vec![b'x'; cfg.body_bytes],
            cfg,
            sessions: HashSet::new(),
            next_session: 0,
            tools_legacy,
            tools_modern,
            stamp,
        }
    }

    /// Live MCP sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Answer one request.
    pub fn handle(&mut self, head: &RequestHead, body: &[u8]) -> Reply {
        let path = head.path.split('?').next().unwrap_or("");
        if path.starts_with("/mcp") {
            self.mcp(head, path, body)
        } else if path == "/v1/chat/completions" {
            self.chat(head, body)
        } else {
            self.plain(head, body)
        }
    }

    fn plain(&self, head: &RequestHead, body: &[u8]) -> Reply {
        let payload = match head.method.as_str() {
            "POST" | "PUT" => body,
            _ => &self.body,
        };
        let mut out = Vec::with_capacity(96 + payload.len());
        write_response_head(&mut out, 200, "application/octet-stream", &[], Some(payload.len()));
        if head.method != "HEAD" {
            out.extend_from_slice(payload);
        }
        full(out)
    }

    fn mcp(&mut self, head: &RequestHead, path: &str, body: &[u8]) -> Reply {
        let modern_header = head.protocol_version.as_deref() == Some(MODERN_VERSION);
        match head.method.as_str() {
            "POST" => {}
            "GET" if !modern_header => {
                return match self.session_check(head) {
                    Ok(()) => Reply::Stream,
                    Err(r) => r,
                }
            }
            "DELETE" if !modern_header => {
                return match self.session_check(head) {
                    Ok(()) => {
                        if let Some(s) = &head.session {
                            self.sessions.remove(s);
                        }
                        full(json_response(200, &[], b""))
                    }
                    Err(r) => r,
                }
            }
            _ => return full(json_response(405, &[], b"")),
        }
        let Ok(msg) = serde_json::from_slice::<Value>(body) else {
            return full(json_response(400, &[], &rpc_error(None, -32700, "Parse error")));
        };
        if !msg.is_object() {
            return full(json_response(400, &[], &rpc_error(None, -32600, "batches are not supported")));
        }
        let id = msg.get("id");
        let method = msg.get("method").and_then(Value::as_str);
        let params = msg.get("params");
        let meta_version =
            params.and_then(|p| p.pointer("/_meta/io.modelcontextprotocol~1protocolVersion")).and_then(Value::as_str);
        let delay = path
            .split('/')
            .find_map(|s| s.strip_prefix("delay-"))
            .and_then(|us| us.parse().ok())
            .map_or(self.cfg.delay, Duration::from_micros);
        if meta_version.is_some() || modern_header {
            return self.modern(head, id, method, params, meta_version, delay);
        }
        if let Some(v) = &head.protocol_version {
            if !LEGACY_VERSIONS.contains(&v.as_str()) {
                return full(json_response(400, &[], &rpc_error(id, -32600, "Unsupported protocol version")));
            }
        }
        let (Some(method), Some(id)) = (method, id) else {
            // a notification or a client's response: accepted on a live session
            return match self.session_check(head) {
                Ok(()) => full(json_response(202, &[], b"")),
                Err(r) => r,
            };
        };
        if method == "initialize" {
            self.next_session += 1;
            let sid = format!("fx{:x}-{}", self.stamp, self.next_session);
            let result = initialize_result(params, json!({"tools": {}, "logging": {}}));
            let bytes = json_response(200, &[("mcp-session-id", &sid)], &rpc_result(id, &result));
            self.sessions.insert(sid);
            return full(bytes);
        }
        if let Err(r) = self.session_check(head) {
            return r;
        }
        let answer = self.legacy_answer(id, method, params);
        let delay = if method.starts_with("tools/") { delay } else { Duration::ZERO };
        Reply::Full { bytes: json_response(200, &[], &answer), delay }
    }

    /// The answer to a legacy-era request other than `initialize`.
    fn legacy_answer(&self, id: &Value, method: &str, params: Option<&Value>) -> Vec<u8> {
        match method {
            "ping" => rpc_result(id, "{}"),
            "tools/list" => rpc_result(id, &self.tools_legacy),
            "tools/call" => match echo(params) {
                Ok(r) => rpc_result(id, &r),
                Err(e) => rpc_error(Some(id), -32602, &e),
            },
            _ => rpc_error(Some(id), -32601, &format!("Method not found: {method}")),
        }
    }

    /// The answer to one line of the stdio transport (legacy era, no sessions): `None` for
    /// notifications and the client's responses.
    pub fn stdio(&self, line: &[u8]) -> Option<Vec<u8>> {
        let Ok(msg) = serde_json::from_slice::<Value>(line) else {
            return Some(rpc_error(None, -32700, "Parse error"));
        };
        let (Some(method), Some(id)) = (msg.get("method").and_then(Value::as_str), msg.get("id")) else {
            return None;
        };
        let params = msg.get("params");
        if method == "initialize" {
            // no logging over stdio: the fixture sends no notifications there
            return Some(rpc_result(id, &initialize_result(params, json!({"tools": {}}))));
        }
        Some(self.legacy_answer(id, method, params))
    }

    /// Legacy requests other than `initialize` need a live session: 400 without one, 404 for an unknown one.
    fn session_check(&self, head: &RequestHead) -> Result<(), Reply> {
        match &head.session {
            None => Err(full(json_response(400, &[], &rpc_error(None, -32600, "Missing session ID")))),
            Some(s) if !self.sessions.contains(s) => {
                Err(full(json_response(404, &[], &rpc_error(None, -32600, "Session not found"))))
            }
            Some(_) => Ok(()),
        }
    }

    /// A 2026-07-28 request: headers must agree with the body; no session.
    fn modern(
        &self,
        head: &RequestHead,
        id: Option<&Value>,
        method: Option<&str>,
        params: Option<&Value>,
        meta_version: Option<&str>,
        delay: Duration,
    ) -> Reply {
        if meta_version != Some(MODERN_VERSION) || head.protocol_version.as_deref() != meta_version {
            return full(json_response(400, &[], &rpc_error(id, -32020, "MCP-Protocol-Version mismatch")));
        }
        if head.mcp_method.as_deref() != method {
            return full(json_response(400, &[], &rpc_error(id, -32020, "Mcp-Method mismatch")));
        }
        let (Some(method), Some(id)) = (method, id) else { return full(json_response(202, &[], b"")) };
        let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
        if method == "tools/call" && head.mcp_name.as_deref() != name {
            return full(json_response(400, &[], &rpc_error(Some(id), -32020, "Mcp-Name mismatch")));
        }
        let server = r#""_meta":{"io.modelcontextprotocol/serverInfo":{"name":"rg-fixture","version":"1"}}"#;
        let answer = match method {
            "tools/list" => rpc_result(id, &self.tools_modern),
            "tools/call" => match echo(params) {
                Ok(r) => rpc_result(id, &format!("{},\"resultType\":\"complete\",{server}}}", &r[..r.len() - 1])),
                Err(e) => rpc_error(Some(id), -32602, &e),
            },
            "server/discover" => rpc_result(
                id,
                &format!(
                    r#"{{"supportedVersions":["{MODERN_VERSION}","{LEGACY_VERSION}"],"capabilities":{{"tools":{{}}}},"ttlMs":0,"cacheScope":"public","resultType":"complete",{server}}}"#
                ),
            ),
            m => {
                let body = rpc_error(Some(id), -32601, &format!("Method not found: {m}"));
                return full(json_response(404, &[], &body));
            }
        };
        Reply::Full { bytes: json_response(200, &[], &answer), delay }
    }

    fn chat(&self, head: &RequestHead, body: &[u8]) -> Reply {
        if head.method != "POST" {
            return full(json_response(405, &[], b""));
        }
        let Ok(req) = serde_json::from_slice::<Value>(body) else {
            let e = json!({"error": {"message": "invalid JSON", "type": "invalid_request_error"}});
            return full(json_response(400, &[], e.to_string().as_bytes()));
        };
        let model = req.get("model").and_then(Value::as_str).unwrap_or("rg-fixture");
        let created = unix_nanos() / 1_000_000_000;
        let n = self.cfg.llm_chunks.max(1);
        let usage = json!({"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n});
        if req.get("stream").and_then(Value::as_bool) != Some(true) {
            let text: String = (0..n).map(|i| format!("tok{i} ")).collect();
            let answer = json!({
                "id": "chatcmpl-fixture",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            });
            return full(json_response(200, &[], answer.to_string().as_bytes()));
        }
        let chunk = |delta: Value, finish: Value| {
            let c = json!({
                "id": "chatcmpl-fixture",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            format!("data: {c}\n\n").into_bytes()
        };
        let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        chunks.extend((0..n).map(|i| chunk(json!({"content": format!("tok{i} ")}), Value::Null)));
        chunks.push(chunk(json!({}), json!("stop")));
        let tail = json!({"id": "chatcmpl-fixture", "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [], "usage": usage});
        chunks.push(format!("data: {tail}\n\ndata: [DONE]\n\n").into_bytes());
        let mut h = Vec::new();
        write_response_head(&mut h, 200, "text/event-stream", &[("cache-control", "no-cache")], None);
        Reply::Chunks { head: h, chunks, gap: self.cfg.llm_chunk_gap }
    }
}

/// The `echo` tool's result (any fixture tool echoes), without the JSON-RPC envelope.
/// The `initialize` result: the legacy version the client asked for if the fixture knows it,
/// else the newest legacy one.
fn initialize_result(params: Option<&Value>, capabilities: Value) -> String {
    let asked = params.and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
    let version = asked.filter(|v| LEGACY_VERSIONS.contains(v)).unwrap_or(LEGACY_VERSION);
    json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": "rg-fixture", "version": env!("CARGO_PKG_VERSION")},
    })
    .to_string()
}

fn echo(params: Option<&Value>) -> Result<String, String> {
    let name = params.and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or("");
    if name != "echo" && !name.starts_with("tool_") {
        return Err(format!("Unknown tool: {name}"));
    }
    let msg = params.and_then(|p| p.pointer("/arguments/message")).and_then(Value::as_str).unwrap_or("");
    Ok(json!({"content": [{"type": "text", "text": msg}], "isError": false}).to_string())
}

/// The event a GET stream sends every interval: a log notification carrying its send time.
pub fn stream_event(seq: u64) -> Vec<u8> {
    let data = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","logger":"rg-fixture","data":{{"seq":{seq},"t":{}}}}}}}"#,
        unix_nanos()
    );
    format!("event: message\ndata: {data}\n\n").into_bytes()
}

/// Bind `addr` and serve until the process ends (on the calling thread's monoio runtime).
pub async fn serve(listener: TcpListener, cfg: FixtureConfig) {
    let state = Rc::new(RefCell::new(Fixture::new(cfg.clone())));
    loop {
        let Ok((io, _)) = listener.accept().await else { continue };
        let _ = io.set_nodelay(true);
        monoio::spawn(connection(io, state.clone(), cfg.notify));
    }
}

/// Bind a listener for [`serve`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let opts = monoio::net::ListenerOpts::new().reuse_addr(true).backlog(4096);
    TcpListener::bind_with_config(addr, &opts)
}

async fn connection(io: TcpStream, state: Rc<RefCell<Fixture>>, notify: Duration) {
    let mut c = Conn::new(io);
    let mut out = Vec::with_capacity(1024);
    loop {
        let Ok(Some((head, body))) = c.request().await else { return };
        let reply = state.borrow_mut().handle(&head, &body);
        match reply {
            Reply::Full { bytes, delay } => {
                if !delay.is_zero() {
                    monoio::time::sleep(delay).await;
                }
                out = bytes;
                let (r, b) = c.io.write_all(out).await;
                out = b;
                if r.is_err() || head.close {
                    return;
                }
            }
            Reply::Stream => return stream(c, notify).await,
            Reply::Chunks { head: h, chunks, gap } => {
                let (r, _) = c.io.write_all(h).await;
                if r.is_err() {
                    return;
                }
                for ch in chunks {
                    if !gap.is_zero() {
                        monoio::time::sleep(gap).await;
                    }
                    let mut b = Vec::with_capacity(ch.len() + 16);
                    write_chunk(&mut b, &ch);
                    if c.io.write_all(b).await.0.is_err() {
                        return;
                    }
                }
                if c.io.write_all(b"0\r\n\r\n".to_vec()).await.0.is_err() || head.close {
                    return;
                }
            }
        }
        out.clear();
    }
}

thread_local! {
    /// Streams opened on this thread, to spread their timers over the interval.
    static STREAMS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Where in the interval the `n`-th stream's events fall: spread evenly (golden-ratio sequence),
/// so N streams opened together do not all fire in the same instant and queue behind each other.
pub fn stream_phase(n: u64, every: Duration) -> Duration {
    let frac = (n as f64 * 0.618_033_988_749_895).fract();
    every.mul_f64(frac)
}

async fn stream(mut c: Conn, every: Duration) {
    let n = STREAMS.with(|s| {
        let n = s.get();
        s.set(n + 1);
        n
    });
    let mut h = Vec::new();
    write_response_head(&mut h, 200, "text/event-stream", &[("cache-control", "no-cache")], None);
    write_chunk(&mut h, b": stream open\n\n");
    if c.io.write_all(h).await.0.is_err() {
        return;
    }
    monoio::time::sleep(stream_phase(n, every)).await;
    let mut seq = 0;
    loop {
        monoio::time::sleep(every).await;
        seq += 1;
        let mut b = Vec::with_capacity(256);
        write_chunk(&mut b, &stream_event(seq));
        if c.io.write_all(b).await.0.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_rpc, Expect};
    use crate::http::{parse_request_head, parse_response_head, Chunked, Framing};
    use crate::mcp::{self, Era, Target};

    fn send(f: &mut Fixture, req: &[u8]) -> (u16, Option<String>, Vec<u8>) {
        let (head, n) = parse_request_head(req).unwrap().unwrap();
        match f.handle(&head, &req[n..]) {
            Reply::Full { bytes, .. } => {
                let (h, n) = parse_response_head(&bytes, false).unwrap().unwrap();
                if let Framing::Length(l) = h.framing {
                    assert_eq!(l, bytes.len() - n);
                }
                (h.status, h.session, bytes[n..].to_vec())
            }
            other => panic!("{other:?}"),
        }
    }

    fn target() -> Target {
        Target { host: "fx".into(), path: "/mcp".into(), headers: vec![] }
    }

    #[test]
    fn legacy_session_lifecycle() {
        let mut f = Fixture::new(FixtureConfig { tools: 5, ..FixtureConfig::default() });
        let t = target();
        // no session yet: 400; unknown: 404
        assert_eq!(send(&mut f, &mcp::call(&t, Era::Legacy, None, 1, "echo", "x")).0, 400);
        assert_eq!(send(&mut f, &mcp::call(&t, Era::Legacy, Some("nope"), 1, "echo", "x")).0, 404);
        let (status, sid, body) = send(&mut f, &mcp::initialize(&t, 0));
        assert_eq!(status, 200);
        check_rpc(status, false, &body, 0, &Expect::Initialize).unwrap();
        let sid = sid.unwrap();
        assert_eq!(f.sessions(), 1);
        assert_eq!(send(&mut f, &mcp::initialized(&t, Some(&sid))).0, 202);
        let (s, _, b) = send(&mut f, &mcp::call(&t, Era::Legacy, Some(&sid), 4, "echo", "hello"));
        check_rpc(s, false, &b, 4, &Expect::Echo("hello".into())).unwrap();
        let (s, _, b) = send(&mut f, &mcp::list(&t, Era::Legacy, Some(&sid), 5));
        check_rpc(s, false, &b, 5, &Expect::Tools(5)).unwrap();
        let (s, _, b) = send(&mut f, &mcp::call(&t, Era::Legacy, Some(&sid), 6, "rm", "x"));
        assert_eq!(
            (s, check_rpc(s, false, &b, 6, &Expect::Tools(0)).unwrap_err()),
            (200, crate::check::ErrorKind::RpcError)
        );
        let (head, _) = parse_request_head(&mcp::listen(&t, &sid)).unwrap().unwrap();
        assert_eq!(f.handle(&head, b""), Reply::Stream);
        assert_eq!(send(&mut f, &mcp::delete(&t, &sid)).0, 200);
        assert_eq!(f.sessions(), 0);
        assert_eq!(send(&mut f, &mcp::call(&t, Era::Legacy, Some(&sid), 7, "echo", "x")).0, 404);
    }

    #[test]
    fn modern_requests_are_stateless_and_header_checked() {
        let mut f = Fixture::new(FixtureConfig::default());
        let t = target();
        let (s, sid, b) = send(&mut f, &mcp::call(&t, Era::Modern, None, 3, "echo", "hi"));
        assert_eq!(sid, None);
        let msg = check_rpc(s, false, &b, 3, &Expect::Echo("hi".into())).unwrap();
        assert_eq!(msg["result"]["resultType"], "complete");
        let (s, _, b) = send(&mut f, &mcp::list(&t, Era::Modern, None, 4));
        let msg = check_rpc(s, false, &b, 4, &Expect::Tools(8)).unwrap();
        assert_eq!(msg["result"]["cacheScope"], "public");
        // Mcp-Name disagreeing with params.name
        let req = String::from_utf8(mcp::call(&t, Era::Modern, None, 5, "echo", "hi")).unwrap();
        let (s, _, b) = send(&mut f, req.replace("mcp-name: echo", "mcp-name: other").as_bytes());
        assert_eq!(s, 400);
        assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"], -32020);
        let get = b"GET /mcp HTTP/1.1\r\nmcp-protocol-version: 2026-07-28\r\n\r\n";
        assert_eq!(send(&mut f, get).0, 405);
        assert_eq!(f.sessions(), 0);
    }

    #[test]
    fn stdio_lines_are_answered_without_sessions() {
        let f = Fixture::new(FixtureConfig { tools: 2, ..FixtureConfig::default() });
        let init =
            f.stdio(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#);
        let init: Value = serde_json::from_slice(&init.unwrap()).unwrap();
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(f.stdio(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), None);
        let call = f.stdio(
            br#"{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
        );
        let call: Value = serde_json::from_slice(&call.unwrap()).unwrap();
        assert_eq!((call["id"].as_str(), call["result"]["content"][0]["text"].as_str()), (Some("c"), Some("hi")));
        let list: Value =
            serde_json::from_slice(&f.stdio(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).unwrap()).unwrap();
        assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(2));
        let bad: Value = serde_json::from_slice(&f.stdio(b"{oops").unwrap()).unwrap();
        assert_eq!(bad["error"]["code"], -32700);
    }

    #[test]
    fn delay_from_path_applies_to_tool_calls() {
        let mut f = Fixture::new(FixtureConfig::default());
        let t = Target { host: "fx".into(), path: "/mcp/t1/delay-1500".into(), headers: vec![] };
        let (head, n) = parse_request_head(&mcp::list(&t, Era::Modern, None, 1)).unwrap().unwrap();
        let req = mcp::list(&t, Era::Modern, None, 1);
        match f.handle(&head, &req[n..]) {
            Reply::Full { delay, .. } => assert_eq!(delay, Duration::from_micros(1500)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_http_and_chat_completions() {
        let mut f = Fixture::new(FixtureConfig { body_bytes: 16, llm_chunks: 3, ..FixtureConfig::default() });
        let (s, _, b) = send(&mut f, b"GET /x HTTP/1.1\r\n\r\n");
        assert_eq!((s, b.len()), (200, 16));
        let (s, _, b) = send(&mut f, b"POST /x HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc");
        assert_eq!((s, b.as_slice()), (200, &b"abc"[..]));

        let body = br#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;
        let req =
            [format!("POST /v1/chat/completions HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(), body]
                .concat();
        let (s, _, b) = send(&mut f, &req);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (s, v["model"].as_str(), v["choices"][0]["message"]["content"].as_str()),
            (200, Some("m1"), Some("tok0 tok1 tok2 "))
        );

        let body = br#"{"model":"m1","stream":true,"messages":[]}"#;
        let req =
            [format!("POST /v1/chat/completions HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(), body]
                .concat();
        let (head, n) = parse_request_head(&req).unwrap().unwrap();
        let Reply::Chunks { head: h, chunks, .. } = f.handle(&head, &req[n..]) else { panic!() };
        let (rh, _) = parse_response_head(&h, false).unwrap().unwrap();
        assert!(rh.is_sse() && rh.framing == Framing::Chunked);
        let mut wire = Vec::new();
        for c in &chunks {
            write_chunk(&mut wire, c);
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut text = Vec::new();
        let mut d = Chunked::default();
        d.feed(&wire, &mut text).unwrap();
        let mut ev = crate::http::SseEvents::default();
        ev.push(&text);
        let mut content = String::new();
        let mut last = String::new();
        while let Some(e) = ev.next_event() {
            if let Ok(v) = serde_json::from_str::<Value>(&e) {
                content.push_str(v.pointer("/choices/0/delta/content").and_then(Value::as_str).unwrap_or(""));
            }
            last = e;
        }
        assert_eq!((content.as_str(), last.as_str()), ("tok0 tok1 tok2 ", "[DONE]"));
    }

    #[test]
    fn stream_phases_spread_over_the_interval() {
        let every = Duration::from_millis(1000);
        let mut buckets = [0u32; 10];
        for n in 0..1000 {
            let p = stream_phase(n, every);
            assert!(p < every);
            buckets[(p.as_millis() / 100) as usize] += 1;
        }
        // every tenth of the interval gets about a tenth of the streams
        assert!(buckets.iter().all(|b| (90..=110).contains(b)), "{buckets:?}");
    }

    #[test]
    fn stream_events_carry_a_timestamp() {
        let before = unix_nanos();
        let ev = String::from_utf8(stream_event(4)).unwrap();
        let mut s = crate::http::SseEvents::default();
        s.push(ev.as_bytes());
        let t = crate::check::event_timestamp(&s.next_event().unwrap()).unwrap();
        assert!(t >= before && t < before + 10_000_000_000);
    }
}
