//! Which protocol era a Streamable HTTP target speaks, told apart as the TypeScript SDK v2 client does (a `server/discover` probe; legacy unless the answer is modern evidence), and what a 2026-07-28 request to a target carries.

use serde_json::Value;

use super::merge::{LEGACY_VERSIONS, MODERN_VERSION};
use crate::http::codec;

/// What the gateway knows of a target's era on one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// Sessions only (`initialize`, `Mcp-Session-Id`); `server/discover` gave no modern evidence.
    Legacy,
    /// Answers 2026-07-28 requests; legacy clients still get an upstream session of their own
    /// until the target refuses `initialize`.
    Modern,
    /// 2026-07-28 only: it refused `initialize` (or the config says `protocol: modern`), so a
    /// legacy client's session exists in the gateway alone.
    ModernOnly,
}

impl Era {
    /// Whether requests go to the target statelessly.
    pub fn is_modern(self) -> bool {
        self != Era::Legacy
    }

    /// The `era` label of `ringgate_mcp_era_probes_total`.
    pub fn label(self) -> &'static str {
        match self {
            Era::Legacy => "legacy",
            Era::Modern => "modern",
            Era::ModernOnly => "modern_only",
        }
    }
}

/// What a probe's answer says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A usable `server/discover` result offering 2026-07-28.
    Modern,
    /// No modern evidence: fall back to `initialize`.
    Legacy,
    /// Neither (authorization, a server error, a modern server without our version): the
    /// request fails and the next one probes again.
    Failed(String),
}

/// UnsupportedProtocolVersion: the one error code that is era evidence (the SDK deliberately
/// reads no other, not even HeaderMismatch or the `Session not found` -32001 of 2025 servers).
const UNSUPPORTED_VERSION: i64 = -32022;

/// Classify a probe answered 200 with a result.
pub fn classify_result(result: &Value) -> Verdict {
    let versions = result.get("supportedVersions").and_then(Value::as_array);
    let usable = versions.is_some_and(|v| v.iter().all(Value::is_string))
        && result.get("capabilities").is_some_and(Value::is_object);
    match versions {
        Some(v) if usable && v.iter().any(|x| x == MODERN_VERSION) => Verdict::Modern,
        // a modern server without our version: the gateway speaks legacy to it (it may serve that)
        _ => Verdict::Legacy,
    }
}

/// Classify a probe answered with a JSON-RPC error (`error`, the error object).
pub fn classify_rpc_error(error: &Value) -> Verdict {
    if error.get("code").and_then(Value::as_i64) != Some(UNSUPPORTED_VERSION) {
        return Verdict::Legacy;
    }
    let supported = error.get("data").and_then(|d| d.get("supported")).and_then(Value::as_array);
    let Some(supported) = supported.filter(|s| !s.is_empty() && s.iter().all(Value::is_string)) else {
        return Verdict::Legacy;
    };
    let modern = supported.iter().filter_map(Value::as_str).filter(|v| !LEGACY_VERSIONS.contains(v)).count();
    if modern > 0 {
        // it is modern but refused the one modern version the gateway speaks (the SDK's
        // corrective retry could only offer the same one again)
        return Verdict::Failed(format!(
            "the target speaks no 2026-07-28 (it supports {supported:?})",
            supported = supported
        ));
    }
    Verdict::Legacy
}

/// Classify a probe answered with an HTTP status other than 200/202 and `body`.
pub fn classify_status(status: u16, body: &str) -> Verdict {
    match status {
        401 | 403 => Verdict::Failed(format!("the target refused the gateway (HTTP {status})")),
        s if s >= 500 => Verdict::Failed(format!("the target answered the era probe with HTTP {status}")),
        _ => match rpc_error(body) {
            Some(e) => classify_rpc_error(&e),
            None => Verdict::Legacy,
        },
    }
}

/// The error object of a JSON-RPC error response body.
fn rpc_error(body: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(body).ok()?;
    let e = v.get("error")?;
    e.get("code")?.as_i64()?;
    Some(e.clone())
}

/// Codes a 2026-07-28 server answers a well-formed request with at HTTP 4xx: an answer with one
/// of them is the target's word on the request, not a sign that it was redeployed.
const MODERN_REJECTIONS: [i64; 5] = [-32601, -32602, -32020, -32021, UNSUPPORTED_VERSION];

/// Whether a target believed modern that answered a 2026-07-28 request with `status` and
/// `body` no longer speaks that era (redeployed as a legacy server): 400, 404 or 405 without
/// a modern JSON-RPC rejection.
pub fn redeployed_legacy(status: u16, body: &str) -> bool {
    matches!(status, 400 | 404 | 405) && modern_rejection(body).is_none()
}

/// Whether a target that answered a legacy session's request with `status` and `body` may have
/// been redeployed as a 2026-07-28-only server: 405, or a 400 saying the legacy version is not
/// supported. (A 404 renews the session, and its `initialize` tells.)
pub fn redeployed_modern(status: u16, body: &str) -> bool {
    status == 405 || status == 400 && modern_rejection(body) == Some(UNSUPPORTED_VERSION)
}

/// The code of a 2026-07-28 rejection in a 4xx body.
fn modern_rejection(body: &str) -> Option<i64> {
    let code = rpc_error(body)?.get("code")?.as_i64()?;
    MODERN_REJECTIONS.contains(&code).then_some(code)
}

/// The JSON-RPC error a 2026-07-28 target's 4xx answer carries, to pass on to the client.
pub fn rejection(body: &str) -> Option<Value> {
    modern_rejection(body)?;
    rpc_error(body)
}

/// The `_meta` key of the capabilities a 2026-07-28 request's client declares.
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// The prefix of the `_meta` keys of the 2026-07-28 envelope.
const ENVELOPE_PREFIX: &str = "io.modelcontextprotocol/";

/// `params` without the 2026-07-28 `_meta` members (what a client declared for a target of that
/// era), for a legacy upstream session; `None` when they have none (send them as they are).
pub fn without_envelope(params: Option<&Value>) -> Option<Value> {
    let meta = params?.get("_meta")?.as_object()?;
    if !meta.keys().any(|k| k.starts_with(ENVELOPE_PREFIX)) {
        return None;
    }
    let mut p = params?.clone();
    if let Some(o) = p.as_object_mut() {
        if let Some(m) = o.get_mut("_meta").and_then(Value::as_object_mut) {
            m.retain(|k, _| !k.starts_with(ENVELOPE_PREFIX));
            if m.is_empty() {
                o.remove("_meta");
            }
        }
    }
    Some(p)
}

/// `_meta` members every 2026-07-28 request carries (what the gateway says of itself as the
/// target's client), as JSON text.
pub const ENVELOPE: [(&str, &str); 3] = [
    ("io.modelcontextprotocol/protocolVersion", r#""2026-07-28""#),
    (CLIENT_CAPABILITIES, "{}"),
    (
        "io.modelcontextprotocol/clientInfo",
        concat!(r#"{"name":"ringgate","version":""#, env!("CARGO_PKG_VERSION"), r#""}"#),
    ),
];

/// `params` with the gateway's envelope in `_meta` (members already there are kept).
pub fn with_envelope(params: Option<&Value>) -> Value {
    let mut p = params.cloned().unwrap_or_else(|| Value::Object(Default::default()));
    if let Some(o) = p.as_object_mut() {
        let meta = o.entry("_meta").or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            for (k, v) in ENVELOPE {
                if !m.contains_key(k) {
                    // the constants are valid JSON
                    m.insert(k.into(), serde_json::from_str(v).unwrap_or(Value::Null));
                }
            }
        }
    }
    p
}

/// Params that are JSON text already (an object) with the gateway's envelope put in `_meta`;
/// as they came when they are not a plain object.
pub fn envelope_raw(params: &[u8]) -> Vec<u8> {
    let add = super::raw::Additions { set: &[], defaults: &[], meta: &ENVELOPE };
    std::str::from_utf8(params)
        .ok()
        .and_then(super::raw::RawObject::parse)
        .and_then(|o| super::raw::add_to_result(&o, &add))
        .unwrap_or_else(|| params.to_vec())
}

/// The `server/discover` probe (with the id given).
pub fn probe_request(id: &Value) -> Vec<u8> {
    super::jsonrpc::request(id, "server/discover", Some(&with_envelope(None)))
}

/// Header lines a 2026-07-28 request needs besides the version: `Mcp-Method`, and `Mcp-Name`
/// for the methods that name what they act on.
pub fn write_headers(out: &mut Vec<u8>, method: &str, name: Option<&str>) {
    write_value(out, "mcp-method", method);
    if let Some(n) = name {
        write_value(out, "mcp-name", n);
    }
}

/// A header value as 2026-07-28 wants it: as is when it is safe ASCII, else `=?base64?…?=`.
fn write_value(out: &mut Vec<u8>, name: &str, value: &str) {
    let safe = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?");
    if safe {
        codec::write_header(out, name, value.as_bytes());
    } else {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        codec::write_header(out, name, format!("=?base64?{b64}?=").as_bytes());
    }
}

/// The `initialize`-shaped result merged for clients, from a `server/discover` result.
pub fn init_from_discover(discover: &Value, target: &str) -> Value {
    let mut init = serde_json::Map::new();
    init.insert("protocolVersion".into(), MODERN_VERSION.into());
    init.insert("capabilities".into(), discover.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})));
    let info = discover.get("_meta").and_then(|m| m.get("io.modelcontextprotocol/serverInfo")).cloned();
    init.insert("serverInfo".into(), info.unwrap_or_else(|| serde_json::json!({"name": target, "version": ""})));
    if let Some(i) = discover.get("instructions").filter(|i| i.is_string()) {
        init.insert("instructions".into(), i.clone());
    }
    Value::Object(init)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_discover_result_offering_our_version_is_modern_and_anything_else_legacy() {
        let ok = json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "ttlMs": 0});
        assert_eq!(classify_result(&ok), Verdict::Modern);
        // what a legacy server that answers unknown methods with an empty result sends
        assert_eq!(classify_result(&json!({})), Verdict::Legacy);
        assert_eq!(classify_result(&json!({"supportedVersions": ["2027-01-01"], "capabilities": {}})), Verdict::Legacy);
        assert_eq!(classify_result(&json!({"supportedVersions": "2026-07-28", "capabilities": {}})), Verdict::Legacy);
        assert_eq!(classify_result(&json!({"supportedVersions": ["2026-07-28"]})), Verdict::Legacy);
    }

    #[test]
    fn errors_are_legacy_except_an_unsupported_version_naming_modern_ones() {
        // method not found (mcp 1.x), session not found, header mismatch: no era evidence
        for code in [-32601, -32600, -32001, -32000, -32020, -32021] {
            assert_eq!(classify_rpc_error(&json!({"code": code, "message": "x"})), Verdict::Legacy, "{code}");
        }
        let legacy_list = json!({"code": -32022, "message": "x", "data": {"supported": ["2025-06-18"]}});
        assert_eq!(classify_rpc_error(&legacy_list), Verdict::Legacy);
        assert_eq!(classify_rpc_error(&json!({"code": -32022, "message": "x"})), Verdict::Legacy);
        let newer = json!({"code": -32022, "message": "x", "data": {"supported": ["2027-01-01", "2025-11-25"]}});
        assert!(matches!(classify_rpc_error(&newer), Verdict::Failed(_)));
    }

    #[test]
    fn http_statuses_classify_as_the_sdk_does() {
        assert!(matches!(classify_status(401, ""), Verdict::Failed(_)));
        assert!(matches!(classify_status(403, ""), Verdict::Failed(_)));
        assert!(matches!(classify_status(502, ""), Verdict::Failed(_)));
        // a stateful legacy server without a session id, a plain 404 or 405: fall back
        let missing = r#"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#;
        assert_eq!(classify_status(400, missing), Verdict::Legacy);
        assert_eq!(classify_status(404, "Not Found"), Verdict::Legacy);
        assert_eq!(classify_status(405, ""), Verdict::Legacy);
        let newer =
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2027-01-01"]}}}"#;
        assert!(matches!(classify_status(400, newer), Verdict::Failed(_)));
    }

    #[test]
    fn a_modern_target_is_redeployed_when_it_refuses_without_a_modern_error() {
        let missing = r#"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#;
        assert!(redeployed_legacy(400, missing));
        assert!(redeployed_legacy(404, ""));
        assert!(redeployed_legacy(405, "Method Not Allowed"));
        let unknown = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#;
        assert!(!redeployed_legacy(404, unknown), "an unknown method is the request's fault");
        assert_eq!(rejection(unknown).and_then(|e| e["code"].as_i64()), Some(-32601));
        assert!(!redeployed_legacy(400, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"m"}}"#));
        assert!(!redeployed_legacy(500, ""));
        assert!(rejection(missing).is_none());
    }

    #[test]
    fn a_legacy_session_is_redeployed_when_its_version_is_refused() {
        let refused =
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"m","data":{"supported":["2026-07-28"]}}}"#;
        assert!(redeployed_modern(400, refused));
        assert!(redeployed_modern(405, ""));
        assert!(!redeployed_modern(400, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"bad"}}"#));
        assert!(!redeployed_modern(404, refused), "404 renews the session instead");
    }

    #[test]
    fn the_envelope_is_added_without_replacing_the_clients() {
        let p = with_envelope(Some(&json!({"name": "x", "_meta": {"progressToken": 1}})));
        assert_eq!(p["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
        assert_eq!(p["_meta"]["io.modelcontextprotocol/clientCapabilities"], json!({}));
        assert_eq!(p["_meta"]["io.modelcontextprotocol/clientInfo"]["name"], "ringgate");
        assert_eq!(p["_meta"]["progressToken"], 1);
        let theirs = json!({"_meta": {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}});
        assert_eq!(
            with_envelope(Some(&theirs))["_meta"]["io.modelcontextprotocol/clientCapabilities"],
            json!({"elicitation": {}})
        );
        let raw: Value = serde_json::from_slice(&envelope_raw(br#"{"name":"x","arguments":{"a":1}}"#)).unwrap();
        assert_eq!(raw["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
        assert_eq!(raw["arguments"], json!({"a": 1}));
        let probe: Value = serde_json::from_slice(&probe_request(&json!(1))).unwrap();
        assert_eq!(probe["method"], "server/discover");
        assert_eq!(probe["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
    }

    #[test]
    fn a_legacy_session_gets_params_without_the_envelope() {
        let p = json!({"name": "x", "_meta": {CLIENT_CAPABILITIES: {"elicitation": {}}, "progressToken": 1}});
        assert_eq!(without_envelope(Some(&p)), Some(json!({"name": "x", "_meta": {"progressToken": 1}})));
        let only = json!({"name": "x", "_meta": {CLIENT_CAPABILITIES: {}}});
        assert_eq!(without_envelope(Some(&only)), Some(json!({"name": "x"})));
        // nothing to take away: sent as they are
        assert_eq!(without_envelope(Some(&json!({"name": "x", "_meta": {"progressToken": 1}}))), None);
        assert_eq!(without_envelope(Some(&json!({"name": "x"}))), None);
        assert_eq!(without_envelope(None), None);
    }

    #[test]
    fn header_values_that_are_not_safe_ascii_travel_as_base64() {
        let mut out = Vec::new();
        write_headers(&mut out, "tools/call", Some("echo"));
        assert_eq!(out, b"mcp-method: tools/call\r\nmcp-name: echo\r\n");
        let mut out = Vec::new();
        write_headers(&mut out, "resources/read", Some("file:///caf\u{e9}"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("mcp-name: =?base64?ZmlsZTovLy9jYWbDqQ==?=\r\n"), "{text}");
    }

    #[test]
    fn a_discover_result_reads_as_an_initialize_result() {
        let d = json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {"listChanged": true}},
            "instructions": "be nice", "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "up", "version": "2"}}});
        let init = init_from_discover(&d, "t");
        assert_eq!(init["capabilities"], json!({"tools": {"listChanged": true}}));
        assert_eq!(init["serverInfo"]["name"], "up");
        assert_eq!(init["instructions"], "be nice");
        assert_eq!(init_from_discover(&json!({}), "t")["serverInfo"]["name"], "t");
    }
}
