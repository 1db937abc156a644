//! JSON-RPC 2.0 framing: parsing one message off the wire and serialising the ones the gateway sends.

use serde_json::{Map, Value};

use super::raw::{Members, Peeked, RawObject};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
pub const HEADER_MISMATCH: i64 = -32020;
pub const MISSING_CAPABILITY: i64 = -32021;
pub const UNSUPPORTED_VERSION: i64 = -32022;
/// Ends a request the client cancelled (LSP's `RequestCancelled`), when its stream must end with something.
pub const REQUEST_CANCELLED: i64 = -32800;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without `data`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// Attach `data`, replacing any already set.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// `{"code","message"}` plus `"data"` when set.
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), self.code.into());
        obj.insert("message".into(), self.message.clone().into());
        if let Some(data) = &self.data {
            obj.insert("data".into(), data.clone());
        }
        Value::Object(obj)
    }

    /// Read an error object leniently: upstream servers are not all well-behaved, and a missing
    /// code or message must not stop the error from reaching the client.
    pub fn from_value(v: &Value) -> RpcError {
        RpcError {
            code: v.get("code").and_then(Value::as_i64).unwrap_or(INTERNAL_ERROR),
            message: v.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
            data: v.get("data").cloned(),
        }
    }
}

/// One JSON-RPC message as the gateway sees it. `params`/`result` are kept whole so fields the
/// gateway does not touch are forwarded unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// With `raw` (see [`parse_call`]), `params` holds only the members the gateway reads
    /// (`name`, `uri`, `_meta`), and `raw` the whole params as they came.
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
        raw: Option<RawObject>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    Response {
        id: Value,
        result: Value,
    },
    /// `id` is `Value::Null` when the peer could not read the request's id.
    Error {
        id: Value,
        error: Value,
    },
}

/// Methods whose params go to one owning target with only `name` or `uri` renamed: [`parse_call`]
/// keeps their params raw.
pub const RAW_PARAMS_METHODS: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// Members of the params of [`RAW_PARAMS_METHODS`] that the gateway reads.
const READ_PARAMS: [&str; 3] = ["name", "uri", "_meta"];

fn invalid(message: &str) -> RpcError {
    RpcError::new(INVALID_REQUEST, message)
}

/// Parse one message from a POST body or a stdio line / SSE data. Batches are rejected: only
/// 2025-03-26 allowed them, later versions removed them, and routing one per message keeps fan-out simple.
pub fn parse(body: &[u8]) -> Result<Message, RpcError> {
    // the common case, an object: only the members the gateway reads are built, the others are
    // skipped; anything unusual (another type, a duplicate member) goes the general way below,
    // which says precisely what is wrong
    if is_object(body) {
        if let Ok(w) = serde_json::from_slice::<Wire<Value, Value>>(body) {
            return classify(w.jsonrpc, w.id, w.method, w.params, w.result, w.error);
        }
    }
    parse_slow(body)
}

/// [`parse`] for a client's message: the params of a [`RAW_PARAMS_METHODS`] request stay raw
/// (`Message::Request::raw`), and only the members the gateway reads are built.
pub fn parse_call(body: &[u8]) -> Result<Message, RpcError> {
    // one pass over the text (checked as UTF-8 once, up front, so raw members need no second
    // check): params come as their members, unparsed
    if let Some(text) = object_text(body) {
        if let Ok(w) = serde_json::from_str::<Wire<Peeked, Value>>(text) {
            let hot = matches!(&w.method, Some(Value::String(m)) if RAW_PARAMS_METHODS.contains(&m.as_str()));
            let params = match w.params {
                Some(Peeked::Object(m)) => {
                    if let Some(raw) = hot.then(|| raw_object(text, &m)).flatten() {
                        let mut read = Map::new();
                        for (k, v) in m.iter().filter(|(k, _)| READ_PARAMS.contains(k)) {
                            // a value serde_json cannot hold (a number out of range): the
                            // general way says where in the body
                            let Ok(v) = serde_json::from_str(v.get()) else { return parse_slow(body) };
                            read.insert(k.to_owned(), v);
                        }
                        let msg = classify(w.jsonrpc, w.id, w.method, Some(Value::Object(read)), w.result, w.error)?;
                        return Ok(match msg {
                            Message::Request { id, method, params, .. } => {
                                Message::Request { id, method, params, raw: Some(raw) }
                            }
                            m => m,
                        });
                    }
                    let Ok(params) = m.to_value() else { return parse_slow(body) };
                    Some(params)
                }
                Some(Peeked::Other(v)) => Some(v),
                None => None,
            };
            return classify(w.jsonrpc, w.id, w.method, params, w.result, w.error);
        }
    }
    parse_slow(body)
}

/// A target's message about a call: its result kept raw, or any other message.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A successful response, its result (an object) as the text the target sent.
    Result { id: Value, result: RawObject },
    /// Anything else (errors, notifications, requests).
    Other(Message),
}

/// [`parse`] for a target's answer to a call: a response's result stays raw.
pub fn parse_answer(body: &[u8]) -> Result<Answer, RpcError> {
    if let Some(text) = object_text(body) {
        if let Ok(w) = serde_json::from_str::<Wire<Value, Peeked>>(text) {
            let Some(result) = w.result else {
                return classify(w.jsonrpc, w.id, w.method, w.params, None, w.error).map(Answer::Other);
            };
            // classified with a stand-in: only the presence of a result counts there
            return match classify(w.jsonrpc, w.id, w.method, w.params, Some(Value::Null), w.error)? {
                Message::Response { id, .. } => Ok(match result {
                    Peeked::Object(m) => match raw_object(text, &m) {
                        Some(result) => Answer::Result { id, result },
                        // not an object whose members can be spliced: a tree
                        None => match m.to_value() {
                            Ok(result) => Answer::Other(Message::Response { id, result }),
                            Err(_) => return parse_slow(body).map(Answer::Other),
                        },
                    },
                    Peeked::Other(result) => Answer::Other(Message::Response { id, result }),
                }),
                m => Ok(Answer::Other(m)),
            };
        }
    }
    parse_slow(body).map(Answer::Other)
}

/// The members `m` (read from `text`) as a [`RawObject`], if their names are distinct and
/// free of escapes.
fn raw_object(text: &str, m: &Members) -> Option<RawObject> {
    m.distinct().then(|| RawObject::of(text, m)).flatten()
}

/// `body` as text, if it is an object in valid UTF-8 (the fast ways' precondition).
fn object_text(body: &[u8]) -> Option<&str> {
    is_object(body).then(|| std::str::from_utf8(body).ok()).flatten()
}

fn is_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn parse_error(e: serde_json::Error) -> RpcError {
    RpcError::new(PARSE_ERROR, format!("parse error: {e}"))
}

/// The general way: a whole tree, then its members.
fn parse_slow(body: &[u8]) -> Result<Message, RpcError> {
    let value: Value = serde_json::from_slice(body).map_err(parse_error)?;
    let mut obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(invalid("batches are not supported; send one JSON-RPC message at a time")),
        _ => return Err(invalid("a JSON-RPC message must be a JSON object")),
    };
    let jsonrpc = obj.remove("jsonrpc");
    let (id, params) = (obj.remove("id"), obj.remove("params"));
    classify(jsonrpc, id, obj.remove("method"), params, obj.remove("result"), obj.remove("error"))
}

/// The members of a message object that the gateway reads. `Some(Value::Null)` is a member that
/// is present and null, which differs from an absent one for `id`, `params` and `result`. `P`
/// and `R` are how `params` and `result` are read: as a tree, or raw.
#[derive(serde::Deserialize)]
#[serde(bound(deserialize = "P: serde::Deserialize<'de>, R: serde::Deserialize<'de>"))]
struct Wire<P, R> {
    #[serde(default, deserialize_with = "present")]
    jsonrpc: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    method: Option<Value>,
    #[serde(default = "none", deserialize_with = "present")]
    params: Option<P>,
    #[serde(default = "none", deserialize_with = "present")]
    result: Option<R>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
}

fn none<T>() -> Option<T> {
    None
}

fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn classify(
    jsonrpc: Option<Value>,
    id: Option<Value>,
    method: Option<Value>,
    params: Option<Value>,
    result: Option<Value>,
    error: Option<Value>,
) -> Result<Message, RpcError> {
    if jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(r#""jsonrpc" must be "2.0""#));
    }
    if id.as_ref().is_some_and(|id| !(id.is_string() || id.is_i64() || id.is_u64() || id.is_null())) {
        return Err(invalid("id must be a string or an integer"));
    }
    if params.as_ref().is_some_and(|p| !p.is_object() && !p.is_array()) {
        return Err(invalid("params must be an object or an array"));
    }
    match (method, result, error) {
        (Some(Value::String(method)), None, None) => match id {
            None => Ok(Message::Notification { method, params }),
            Some(Value::Null) => Err(invalid("request id must not be null")),
            Some(id) => Ok(Message::Request { id, method, params, raw: None }),
        },
        (Some(Value::String(_)), _, _) => Err(invalid("a message cannot have both method and result/error")),
        (Some(_), _, _) => Err(invalid("method must be a string")),
        (None, Some(_), Some(_)) => Err(invalid("a response cannot have both result and error")),
        (None, Some(result), None) => match id {
            None | Some(Value::Null) => Err(invalid("response id must be a string or an integer")),
            Some(id) => Ok(Message::Response { id, result }),
        },
        (None, None, Some(error)) => match id {
            _ if !error.is_object() => Err(invalid("error must be an object")),
            None => Err(invalid("error response is missing id")),
            Some(id) => Ok(Message::Error { id, error }),
        },
        (None, None, None) => Err(invalid("message has neither method nor result/error")),
    }
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            _ => None,
        }
    }

    /// The params of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
            _ => None,
        }
    }

    /// The id of a request, response or error.
    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::Request { id, .. } | Message::Response { id, .. } | Message::Error { id, .. } => Some(id),
            Message::Notification { .. } => None,
        }
    }

    /// Compact JSON with `"jsonrpc":"2.0"`.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request { id, method, raw: Some(raw), .. } => {
                let mut params = Vec::new();
                raw.write(&mut params);
                request_raw(id, method, &params)
            }
            Message::Request { id, method, params, raw: None } => request(id, method, params.as_ref()),
            Message::Notification { method, params } => notification(method, params.as_ref()),
            Message::Response { id, result } => response(id, result),
            Message::Error { id, error } => write(&Envelope { id: Some(id), error: Some(error), ..Envelope::EMPTY }),
        }
    }
}

/// A message to write, borrowing its parts: nothing is cloned into a `Value` first.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a Value>,
}

impl Envelope<'_> {
    const EMPTY: Envelope<'static> =
        Envelope { jsonrpc: "2.0", id: None, method: None, params: None, result: None, error: None };
}

fn write(e: &Envelope<'_>) -> Vec<u8> {
    // serialising a Value into a Vec cannot fail (its map keys are strings)
    serde_json::to_vec(e).unwrap_or_default()
}

/// A request; `params` omitted when `None`.
pub fn request(id: &Value, method: &str, params: Option<&Value>) -> Vec<u8> {
    write(&Envelope { id: Some(id), method: Some(method), params, ..Envelope::EMPTY })
}

/// A notification; `params` omitted when `None`.
pub fn notification(method: &str, params: Option<&Value>) -> Vec<u8> {
    write(&Envelope { method: Some(method), params, ..Envelope::EMPTY })
}

/// A request whose params are JSON text already.
pub fn request_raw(id: &Value, method: &str, params: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(params.len() + method.len() + 48);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    // writing a Value into a Vec cannot fail
    let _ = serde_json::to_writer(&mut out, id);
    out.extend_from_slice(br#","method":"#);
    let _ = serde_json::to_writer(&mut out, method);
    out.extend_from_slice(br#","params":"#);
    out.extend_from_slice(params);
    out.push(b'}');
    out
}

/// A successful response whose result is JSON text already.
pub fn response_raw(id: &Value, result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(result.len() + 40);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    let _ = serde_json::to_writer(&mut out, id);
    out.extend_from_slice(br#","result":"#);
    out.extend_from_slice(result);
    out.push(b'}');
    out
}

/// A successful response.
pub fn response(id: &Value, result: &Value) -> Vec<u8> {
    write(&Envelope { id: Some(id), result: Some(result), ..Envelope::EMPTY })
}

/// An error response; `id: None` writes `"id":null`, for messages whose id could not be read.
pub fn error_response(id: Option<&Value>, err: &RpcError) -> Vec<u8> {
    let error = err.to_value();
    write(&Envelope { id: Some(id.unwrap_or(&Value::Null)), error: Some(&error), ..Envelope::EMPTY })
}

/// `params._meta[key]` if present.
pub fn meta<'a>(params: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    params?.get("_meta")?.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_value(v: Value) -> Result<Message, RpcError> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn parses_each_kind() {
        let cases = [
            (
                json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":[1]}}),
                Message::Request {
                    id: json!(1),
                    method: "tools/list".into(),
                    params: Some(json!({"x":[1]})),
                    raw: None,
                },
            ),
            (
                json!({"jsonrpc":"2.0","id":"a","method":"ping"}),
                Message::Request { id: json!("a"), method: "ping".into(), params: None, raw: None },
            ),
            (
                json!({"jsonrpc":"2.0","method":"notifications/initialized","params":[]}),
                Message::Notification { method: "notifications/initialized".into(), params: Some(json!([])) },
            ),
            (
                json!({"jsonrpc":"2.0","id":u64::MAX,"result":{}}),
                Message::Response { id: json!(u64::MAX), result: json!({}) },
            ),
            (
                json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}),
                Message::Error { id: Value::Null, error: json!({"code":-32700,"message":"x"}) },
            ),
        ];
        for (input, want) in cases {
            let got = parse_value(input.clone()).unwrap();
            assert_eq!(got, want, "{input}");
            assert_eq!(serde_json::from_slice::<Value>(&got.to_bytes()).unwrap(), input);
        }
    }

    #[test]
    fn both_parsers_agree_on_odd_objects() {
        // members the fast path builds, skips, or leaves to the general path (duplicates)
        let cases = [
            r#" {"x":[1,{"y":null}],"jsonrpc":"2.0","method":"m","id":"7","extra":"\u00e9"} "#,
            r#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","method":"m","params":{"a":1},"params":[2]}"#,
        ];
        let want = [
            Message::Request { id: json!("7"), method: "m".into(), params: None, raw: None },
            Message::Response { id: json!(1), result: Value::Null },
            Message::Request { id: json!(2), method: "m".into(), params: None, raw: None },
            Message::Notification { method: "m".into(), params: Some(json!([2])) },
        ];
        for (body, want) in cases.iter().zip(want) {
            assert_eq!(parse(body.as_bytes()).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn parse_call_keeps_call_params_raw_and_builds_only_what_is_read() {
        let body = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t_echo","arguments":{"n":1.50},"_meta":{"progressToken":7}}}"#;
        let Message::Request { id, method, params, raw } = parse_call(body).unwrap() else { panic!("not a request") };
        assert_eq!((id, method.as_str()), (json!(3), "tools/call"));
        assert_eq!(params, Some(json!({"name":"t_echo","_meta":{"progressToken":7}})));
        let raw = raw.unwrap();
        assert_eq!(raw.get("arguments"), Some(r#"{"n":1.50}"#));
        assert_eq!(raw.to_value(), json!({"name":"t_echo","arguments":{"n":1.5},"_meta":{"progressToken":7}}));
        let again = Message::Request { id: json!(3), method, params: None, raw: Some(raw) };
        assert_eq!(again.to_bytes(), body.to_vec());
        // escapes in a read member's value are decoded; the raw text keeps them
        let body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u00e9t\u00e9","arguments":[]}}"#;
        let Message::Request { params, raw, .. } = parse_call(body).unwrap() else { panic!("not a request") };
        assert_eq!((params, raw.unwrap().get("name")), (Some(json!({"name":"été"})), Some(r#""\u00e9t\u00e9""#)));
        // other methods, non-object params and duplicate members: the same message as parse
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"c"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"a":{"b":1,"b":2},"a":[true,null,-2,1e400]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"na\u006de":"x","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[{"a":1,"a":2},"s",1.5]}"#,
        ] {
            assert_eq!(parse_call(body.as_bytes()), parse(body.as_bytes()), "{body}");
        }
        // errors stay what parse says
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x""#[..],
            br#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{}}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}"#,
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\"}}",
        ] {
            assert_eq!(parse_call(body).unwrap_err(), parse(body).unwrap_err());
        }
    }

    #[test]
    fn parse_answer_keeps_results_raw() {
        let body = br#" {"result":{"content":[],"x":1.0},"id":"rg-1","jsonrpc":"2.0"}"#;
        let Answer::Result { id, result } = parse_answer(body).unwrap() else { panic!("not a result") };
        assert_eq!((id, result.get("x")), (json!("rg-1"), Some("1.0")));
        let mut text = Vec::new();
        result.write(&mut text);
        assert_eq!(response_raw(&json!(5), &text), br#"{"jsonrpc":"2.0","id":5,"result":{"content":[],"x":1.0}}"#);
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"\u0061":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":"done"}"#,
        ] {
            assert_eq!(parse_answer(body.as_bytes()), parse(body.as_bytes()).map(Answer::Other), "{body}");
        }
        for body in [&br#"{"jsonrpc":"2.0","result":{}}"#[..], br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#] {
            assert_eq!(parse_answer(body).unwrap_err(), parse(body).unwrap_err());
        }
    }

    #[test]
    fn rejects_malformed_with_codes() {
        for body in [&b"{\"jsonrpc\":"[..], b"", b"\xff"] {
            assert_eq!(parse(body).unwrap_err().code, PARSE_ERROR);
        }
        let cases = [
            (json!([{"jsonrpc":"2.0","id":1,"method":"ping"}]), "batches"),
            (json!("ping"), "JSON object"),
            (json!({"id":1,"method":"ping"}), "jsonrpc"),
            (json!({"jsonrpc":"1.0","id":1,"method":"ping"}), "jsonrpc"),
            (json!({"jsonrpc":"2.0","id":1.5,"method":"ping"}), "id must be"),
            (json!({"jsonrpc":"2.0","id":{},"method":"ping"}), "id must be"),
            (json!({"jsonrpc":"2.0","id":null,"method":"ping"}), "must not be null"),
            (json!({"jsonrpc":"2.0","id":1,"method":7}), "method must be a string"),
            (json!({"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}), "params"),
            (json!({"jsonrpc":"2.0","method":"ping","params":null}), "params"),
            (json!({"jsonrpc":"2.0","id":1,"method":"ping","result":{}}), "both method"),
            (json!({"jsonrpc":"2.0","id":1,"result":{},"error":{}}), "both result and error"),
            (json!({"jsonrpc":"2.0","result":{}}), "response id"),
            (json!({"jsonrpc":"2.0","id":null,"result":{}}), "response id"),
            (json!({"jsonrpc":"2.0","error":{"code":1,"message":""}}), "missing id"),
            (json!({"jsonrpc":"2.0","id":1,"error":"boom"}), "error must be an object"),
            (json!({"jsonrpc":"2.0","id":1}), "neither method"),
        ];
        for (input, needle) in cases {
            let err = parse_value(input.clone()).unwrap_err();
            assert_eq!(err.code, INVALID_REQUEST, "{input}");
            assert!(err.message.contains(needle), "{input}: {}", err.message);
        }
    }

    #[test]
    fn writers_escape_and_omit_absent_params() {
        let method = "we\"ird\n\u{1F600}";
        let bytes = request(&json!("1"), method, None);
        assert_eq!(
            parse(&bytes).unwrap(),
            Message::Request { id: json!("1"), method: method.into(), params: None, raw: None }
        );
        let v: Value = serde_json::from_slice(&notification("n", Some(&json!({"a":1})))).unwrap();
        assert_eq!(v, json!({"jsonrpc":"2.0","method":"n","params":{"a":1}}));
        assert_eq!(response(&json!(3), &json!({"ok":true})), br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#);
        assert_eq!(
            error_response(None, &RpcError::new(-1, "m")),
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"m"}}"#
        );
    }

    #[test]
    fn error_response_and_error_values() {
        let err = RpcError::new(UNSUPPORTED_VERSION, "nope").with_data(json!({"supported":["2026-07-28"]}));
        let v: Value = serde_json::from_slice(&error_response(None, &err)).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"], json!({"code":-32022,"message":"nope","data":{"supported":["2026-07-28"]}}));
        assert_eq!(RpcError::from_value(&v["error"]), err);
        assert!(RpcError::new(METHOD_NOT_FOUND, "m").to_value().get("data").is_none());
        assert_eq!(RpcError::from_value(&json!({"data":1})), RpcError::new(INTERNAL_ERROR, "").with_data(json!(1)));
        let v: Value = serde_json::from_slice(&error_response(Some(&json!(9)), &err)).unwrap();
        assert_eq!(v["id"], json!(9));
    }

    #[test]
    fn accessors_and_meta() {
        let msg =
            parse_value(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"_meta":{"progressToken":"t"}}}))
                .unwrap();
        assert_eq!((msg.method(), msg.id()), (Some("tools/call"), Some(&json!(5))));
        let params = match &msg {
            Message::Request { params, .. } => params.as_ref(),
            _ => None,
        };
        assert_eq!(meta(params, "progressToken"), Some(&json!("t")));
        assert_eq!(meta(params, "other"), None);
        assert_eq!(meta(Some(&json!({})), "progressToken"), None);
        assert_eq!(meta(None, "progressToken"), None);
        let note = Message::Notification { method: "x".into(), params: None };
        assert_eq!((note.method(), note.id()), (Some("x"), None));
        let resp = Message::Response { id: json!(1), result: json!({}) };
        assert_eq!((resp.method(), resp.id()), (None, Some(&json!(1))));
    }
}
