//! Raw MCP over Streamable HTTP for integration tests: POSTs on new connections, answers as JSON or SSE, sessions; and a legacy HTTP+SSE session's stream.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use super::{raw, Response};

/// The text of a POST of a JSON-RPC message to `path`, with the content headers MCP asks for and
/// `headers`: for a request sent by hand (on a kept stream, from another thread).
pub fn post_request(path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// POST a JSON-RPC message to `path` with `headers` on a new connection (so SO_REUSEPORT spreads
/// them over shards).
pub fn post_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    raw(addr, post_request(path, headers, body).as_bytes())
}

/// POST a JSON-RPC message to /mcp, in `session` if given, on a new connection.
pub fn post(addr: SocketAddr, session: Option<&str>, body: &str) -> Response {
    let headers: Vec<(&str, &str)> = session.map(|s| ("mcp-session-id", s)).into_iter().collect();
    post_with(addr, "/mcp", &headers, body)
}

/// The one JSON-RPC message of an answer, whether it came as JSON or as an SSE stream.
pub fn message(r: &Response) -> Value {
    let text = r.body_str();
    let json = match text.lines().rev().find_map(|l| l.strip_prefix("data: ")) {
        Some(data) => data.to_string(),
        None => text.clone(),
    };
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A 2026-07-28 request (a new connection each, so requests spread over the shards), by a
/// client declaring the capabilities in `params._meta`, if any, else none.
pub fn modern(addr: SocketAddr, method: &str, params: Value) -> Value {
    let mut params = params;
    let caps = params["_meta"].get("io.modelcontextprotocol/clientCapabilities").cloned();
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps.unwrap_or_else(|| json!({})),
    });
    let name = params.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", method)];
    if method == "tools/call" {
        headers.push(("mcp-name", &name));
    }
    message(&post_with(addr, "/mcp", &headers, &body))
}

/// A 2026-07-28 `tools/call` of `tool` with a message; the answer's text.
pub fn modern_call(addr: SocketAddr, tool: &str, text: &str) -> String {
    let v = modern(addr, "tools/call", json!({"name": tool, "arguments": {"message": text}}));
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{tool}: {v}")).to_string()
}

/// Initialize a session (and send `initialized`); returns its id.
pub fn initialize(addr: SocketAddr) -> String {
    let r = post(
        addr,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"sessions-test","version":"1"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let sid = r.header("mcp-session-id").expect("session id").to_string();
    let n = post(addr, Some(&sid), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(n.status, 202, "{}", n.body_str());
    sid
}

/// `tools/call` of `tool` with a message; the answer's text (or the whole error).
pub fn call(addr: SocketAddr, sid: &str, tool: &str, text: &str) -> Result<String, Value> {
    let body =
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":{"message":text}}});
    let r = post(addr, Some(sid), &body.to_string());
    let v = message(&r);
    match v["result"]["content"][0]["text"].as_str() {
        Some(t) if r.status == 200 => Ok(t.to_string()),
        _ => Err(json!({"status": r.status, "body": v})),
    }
}

pub fn tool_names(addr: SocketAddr, sid: &str) -> Vec<String> {
    let v = message(&post(addr, Some(sid), r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#));
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().into())
        .collect()
}

/// A JSON-RPC request in session `sid`; the answer message.
pub fn rpc(addr: SocketAddr, sid: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params});
    message(&post(addr, Some(sid), &body.to_string()))
}

/// A client's legacy HTTP+SSE stream, read event by event.
pub struct SseStream(std::io::BufReader<TcpStream>);

impl SseStream {
    /// `GET path`; returns the stream and the data of its first event, which must be `endpoint`.
    pub fn open(addr: SocketAddr, path: &str) -> (SseStream, String) {
        use std::io::{BufRead, Write};
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\n\r\n").unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut sse = SseStream(r);
        let (event, data) = sse.next();
        assert_eq!(event, "endpoint");
        (sse, data)
    }

    /// The next event (type, data); comments and chunk framing are skipped.
    pub fn next(&mut self) -> (String, String) {
        use std::io::BufRead;
        let mut event = "message".to_string();
        loop {
            let mut line = String::new();
            assert!(self.0.read_line(&mut line).unwrap() > 0, "stream ended");
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                return (event, d.trim_end().to_string());
            }
        }
    }

    /// Messages until one satisfies `want`; the others are returned too.
    pub fn until(&mut self, want: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            let (event, data) = self.next();
            assert_eq!(event, "message");
            let v: Value = serde_json::from_str(&data).unwrap();
            if want(&v) {
                return (v, seen);
            }
            seen.push(v);
        }
    }
}
