//! MCP requests as the load generator sends them, for both protocol eras. No I/O.

/// The legacy-era version the generator negotiates.
pub const LEGACY_VERSION: &str = "2025-11-25";
/// The stateless era.
pub const MODERN_VERSION: &str = "2026-07-28";
/// `_meta` every modern request carries.
const MODERN_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"rg-load","version":"1"}}"#;

/// Which MCP protocol era a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25 and before: `initialize`, a session id on every later request.
    Legacy,
    /// 2026-07-28: stateless, `_meta` and `Mcp-Method`/`Mcp-Name` headers on every request.
    Modern,
}

/// Where requests go.
#[derive(Clone, Debug)]
pub struct Target {
    /// `Host` header value.
    pub host: String,
    /// Request path.
    pub path: String,
    /// Sent on every request after the others (`--header`), e.g. a gateway's API key.
    pub headers: Vec<(String, String)>,
}

/// A full HTTP/1.1 request.
pub fn http_request(method: &str, t: &Target, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("{method} {} HTTP/1.1\r\nhost: {}\r\n", t.path, t.host).as_bytes());
    for (n, v) in headers.iter().copied().chain(t.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Escape a string as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A JSON-RPC request body; `params` is the inside of the params object (may be empty).
fn rpc(id: u64, method: &str, era: Era, params: &str) -> Vec<u8> {
    let params = match (era, params.is_empty()) {
        (Era::Legacy, _) => params.to_string(),
        (Era::Modern, true) => MODERN_META.to_string(),
        (Era::Modern, false) => format!("{params},{MODERN_META}"),
    };
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}}}}}"#).into_bytes()
}

/// POST one JSON-RPC message with the headers of its era: the session (legacy, after
/// `initialize`), or `MCP-Protocol-Version` + `Mcp-Method` (+ `Mcp-Name`) (modern).
pub fn post(t: &Target, era: Era, session: Option<&str>, method: &str, name: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut h: Vec<(&str, &str)> =
        vec![("content-type", "application/json"), ("accept", "application/json, text/event-stream")];
    match era {
        Era::Legacy => {
            if let Some(s) = session {
                h.push(("mcp-session-id", s));
                h.push(("mcp-protocol-version", LEGACY_VERSION));
            }
        }
        Era::Modern => {
            h.push(("mcp-protocol-version", MODERN_VERSION));
            h.push(("mcp-method", method));
            if let Some(n) = name {
                h.push(("mcp-name", n));
            }
        }
    }
    http_request("POST", t, &h, body)
}

/// `initialize` (legacy era).
pub fn initialize(t: &Target, id: u64) -> Vec<u8> {
    let params = format!(
        r#""protocolVersion":"{LEGACY_VERSION}","capabilities":{{}},"clientInfo":{{"name":"rg-load","version":"1"}}"#
    );
    post(t, Era::Legacy, None, "initialize", None, &rpc(id, "initialize", Era::Legacy, &params))
}

/// `notifications/initialized` on a session (`None`: a server that runs without sessions).
pub fn initialized(t: &Target, session: Option<&str>) -> Vec<u8> {
    let body = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    post(t, Era::Legacy, session, "notifications/initialized", None, body)
}

/// `tools/call` of `tool` with `{"message": message}`.
pub fn call(t: &Target, era: Era, session: Option<&str>, id: u64, tool: &str, message: &str) -> Vec<u8> {
    let params = format!(r#""name":{},"arguments":{{"message":{}}}"#, json_str(tool), json_str(message));
    post(t, era, session, "tools/call", Some(tool), &rpc(id, "tools/call", era, &params))
}

/// `tools/list` (first page).
pub fn list(t: &Target, era: Era, session: Option<&str>, id: u64) -> Vec<u8> {
    post(t, era, session, "tools/list", None, &rpc(id, "tools/list", era, ""))
}

/// `DELETE` of a session.
pub fn delete(t: &Target, session: &str) -> Vec<u8> {
    http_request("DELETE", t, &[("mcp-session-id", session), ("mcp-protocol-version", LEGACY_VERSION)], b"")
}

/// The session's GET stream.
pub fn listen(t: &Target, session: &str) -> Vec<u8> {
    let h = [("accept", "text/event-stream"), ("mcp-session-id", session), ("mcp-protocol-version", LEGACY_VERSION)];
    http_request("GET", t, &h, b"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request_head, Framing};
    use serde_json::Value;

    fn split(req: &[u8]) -> (crate::http::RequestHead, Value) {
        let (head, n) = parse_request_head(req).unwrap().unwrap();
        assert_eq!(head.framing, Some(Framing::Length(req.len() - n)));
        (head, serde_json::from_slice(&req[n..]).unwrap())
    }

    #[test]
    fn modern_call_headers_agree_with_the_body() {
        let t = Target { host: "h:1".into(), path: "/mcp".into(), headers: vec![] };
        let (head, body) = split(&call(&t, Era::Modern, None, 9, "echo", "say \"hi\""));
        assert_eq!(head.mcp_method.as_deref(), Some("tools/call"));
        assert_eq!(head.mcp_name.as_deref(), Some("echo"));
        assert_eq!(head.protocol_version.as_deref(), Some(MODERN_VERSION));
        assert_eq!(head.session, None);
        assert_eq!(body["id"], 9);
        assert_eq!(body["params"]["arguments"]["message"], "say \"hi\"");
        assert_eq!(body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], MODERN_VERSION);
        let (head, body) = split(&list(&t, Era::Modern, None, 2));
        assert_eq!((head.mcp_method.as_deref(), head.mcp_name), (Some("tools/list"), None));
        assert!(body["params"]["_meta"].is_object());
    }

    #[test]
    fn legacy_requests_carry_the_session_only() {
        let t = Target { host: "h".into(), path: "/mcp".into(), headers: vec![] };
        let (head, body) = split(&initialize(&t, 0));
        assert_eq!((head.session, head.mcp_method), (None, None));
        assert_eq!(body["params"]["protocolVersion"], LEGACY_VERSION);
        let (head, body) = split(&call(&t, Era::Legacy, Some("s1"), 3, "echo", "x"));
        assert_eq!(head.session.as_deref(), Some("s1"));
        assert_eq!(head.protocol_version.as_deref(), Some(LEGACY_VERSION));
        assert_eq!(head.mcp_method, None);
        assert!(body["params"].get("_meta").is_none());
        let (head, body) = split(&initialized(&t, Some("s1")));
        assert_eq!((head.session.as_deref(), body.get("id")), (Some("s1"), None));
        let (head, n) = parse_request_head(&delete(&t, "s1")).unwrap().unwrap();
        assert_eq!(
            (head.method.as_str(), head.framing, head.session.as_deref()),
            ("DELETE", Some(Framing::None), Some("s1"))
        );
        assert_eq!(n, delete(&t, "s1").len());
    }
}
