//! What counts as a good response, and the kinds of failure the load generator counts. No I/O.

use serde_json::Value;

use crate::http::SseEvents;

/// Why one request (or session step, or stream) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connect failed.
    Connect,
    /// A read or write failed.
    Io,
    /// The peer closed the connection before the response was complete.
    Closed,
    /// No complete response within the timeout.
    Timeout,
    /// Not parseable as HTTP/1.1.
    BadHttp,
    /// An unexpected status code.
    Status(u16),
    /// The body is not the JSON-RPC message expected (not JSON, no response in the SSE stream…).
    BadJson,
    /// A JSON-RPC error response.
    RpcError,
    /// A result, but not the expected one (wrong id, echo text, tool count, body size…).
    Mismatch,
    /// `initialize` answered without an `Mcp-Session-Id`.
    NoSession,
}

impl ErrorKind {
    /// The key errors are counted under in the JSON report.
    pub fn key(&self) -> String {
        match self {
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Io => "io".into(),
            ErrorKind::Closed => "closed".into(),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::BadHttp => "bad_http".into(),
            ErrorKind::Status(s) => format!("status_{s}"),
            ErrorKind::BadJson => "bad_json".into(),
            ErrorKind::RpcError => "jsonrpc_error".into(),
            ErrorKind::Mismatch => "mismatch".into(),
            ErrorKind::NoSession => "no_session".into(),
        }
    }
}

/// What a good answer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `tools/call echo`: `result.content[0].text` is this text and `isError` is not true.
    Echo(String),
    /// `tools/list`: this many tools (0 = at least one).
    Tools(usize),
    /// `initialize`: a result with a `protocolVersion`.
    Initialize,
    /// Plain HTTP: status 200, and this many body bytes when given.
    Body(Option<usize>),
}

/// The JSON-RPC response in a body: the JSON object itself, or, for an SSE answer, the event
/// carrying the response (notifications and requests before it are skipped).
pub fn rpc_response(body: &[u8], sse: bool) -> Result<Value, ErrorKind> {
    if !sse {
        return serde_json::from_slice(body).map_err(|_| ErrorKind::BadJson);
    }
    let mut events = SseEvents::default();
    events.push(body);
    events.push(b"\n\n");
    while let Some(data) = events.next_event() {
        let Ok(v) = serde_json::from_str::<Value>(&data) else { return Err(ErrorKind::BadJson) };
        if v.get("result").is_some() || v.get("error").is_some() {
            return Ok(v);
        }
    }
    Err(ErrorKind::BadJson)
}

/// Check a JSON-RPC answer: status 200, the response to `id`, a result and the expected one.
pub fn check_rpc(status: u16, sse: bool, body: &[u8], id: u64, expect: &Expect) -> Result<Value, ErrorKind> {
    if status != 200 {
        return Err(ErrorKind::Status(status));
    }
    let msg = rpc_response(body, sse)?;
    if msg.get("error").is_some() {
        return Err(ErrorKind::RpcError);
    }
    if msg.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(ErrorKind::Mismatch);
    }
    let result = msg.get("result").ok_or(ErrorKind::BadJson)?;
    let good = match expect {
        Expect::Echo(text) => {
            result.pointer("/content/0/text").and_then(Value::as_str) == Some(text.as_str())
                && result.get("isError") != Some(&Value::Bool(true))
        }
        Expect::Tools(n) => match result.get("tools").and_then(Value::as_array) {
            Some(t) if *n == 0 => !t.is_empty(),
            Some(t) => t.len() == *n,
            None => false,
        },
        Expect::Initialize => result.get("protocolVersion").and_then(Value::as_str).is_some(),
        Expect::Body(_) => true,
    };
    if good {
        Ok(msg)
    } else {
        Err(ErrorKind::Mismatch)
    }
}

/// Check a plain HTTP answer.
pub fn check_http(status: u16, body_len: usize, expect_len: Option<usize>) -> Result<(), ErrorKind> {
    if !(200..300).contains(&status) {
        return Err(ErrorKind::Status(status));
    }
    match expect_len {
        Some(n) if n != body_len => Err(ErrorKind::Mismatch),
        _ => Ok(()),
    }
}

/// The fixture's timestamp (`params.data.t`, Unix nanoseconds) in a streamed notification.
pub fn event_timestamp(data: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(data).ok()?;
    v.pointer("/params/data/t").and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &[u8] =
        br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}],"isError":false}}"#;

    #[test]
    fn echo_answers_as_json_and_sse() {
        let hi = Expect::Echo("hi".into());
        assert!(check_rpc(200, false, ECHO, 7, &hi).is_ok());
        let mut sse =
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n"
                .to_vec();
        sse.extend_from_slice(b"event: message\ndata: ");
        sse.extend_from_slice(ECHO);
        // the last event may lack its blank line when the body was cut at the stream's end
        assert!(check_rpc(200, true, &sse, 7, &hi).is_ok());
        assert_eq!(check_rpc(200, false, ECHO, 8, &hi), Err(ErrorKind::Mismatch), "another request's answer");
        assert_eq!(check_rpc(200, false, ECHO, 7, &Expect::Echo("ho".into())), Err(ErrorKind::Mismatch));
        assert_eq!(check_rpc(502, false, ECHO, 7, &hi), Err(ErrorKind::Status(502)));
        assert_eq!(check_rpc(200, false, b"<html>", 7, &hi), Err(ErrorKind::BadJson));
        assert_eq!(check_rpc(200, true, b": only a comment\n\n", 7, &hi), Err(ErrorKind::BadJson));
        let tool_error =
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}],"isError":true}}"#;
        assert_eq!(check_rpc(200, false, tool_error, 7, &hi), Err(ErrorKind::Mismatch));
    }

    #[test]
    fn rpc_errors_are_their_own_kind() {
        let e = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool"}}"#;
        assert_eq!(check_rpc(200, false, e, 7, &Expect::Tools(0)), Err(ErrorKind::RpcError));
        assert_eq!(ErrorKind::RpcError.key(), "jsonrpc_error");
        assert_eq!(ErrorKind::Status(404).key(), "status_404");
    }

    #[test]
    fn tool_counts_and_initialize() {
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#;
        assert!(check_rpc(200, false, list, 1, &Expect::Tools(2)).is_ok());
        assert!(check_rpc(200, false, list, 1, &Expect::Tools(0)).is_ok());
        assert_eq!(check_rpc(200, false, list, 1, &Expect::Tools(3)), Err(ErrorKind::Mismatch));
        let empty = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#;
        assert_eq!(check_rpc(200, false, empty, 1, &Expect::Tools(0)), Err(ErrorKind::Mismatch));
        let init = br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}"#;
        assert!(check_rpc(200, false, init, 0, &Expect::Initialize).is_ok());
        assert_eq!(check_rpc(200, false, list, 1, &Expect::Initialize), Err(ErrorKind::Mismatch));
    }

    #[test]
    fn http_checks_and_timestamps() {
        assert!(check_http(200, 5, Some(5)).is_ok());
        assert!(check_http(204, 0, None).is_ok());
        assert_eq!(check_http(200, 4, Some(5)), Err(ErrorKind::Mismatch));
        assert_eq!(check_http(503, 5, None), Err(ErrorKind::Status(503)));
        let ev = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"seq":3,"t":1700000000000000000}}}"#;
        assert_eq!(event_timestamp(ev), Some(1_700_000_000_000_000_000));
        assert_eq!(event_timestamp("{}"), None);
    }
}
