//! Bridging a 2026-07-28 target's multi-round-trip answer (`resultType: "input_required"`) for a legacy client: what to ask it as server→client requests, whether it declared it can answer, its answers by key, and the retry's params; plus where a client's answer, or its cancellation of the request, finds the request waiting for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};

use super::jsonrpc::{Message, RpcError, INTERNAL_ERROR, MISSING_CAPABILITY};

/// Rounds of `input_required` one request may take before the gateway gives up on its target
/// (a target that never completes would otherwise hold the client's stream forever).
pub const MAX_ROUNDS: usize = 8;

/// How the ids of the gateway's own server→client requests begin (the relayed ones of targets
/// are `rg~<target>~<id>`; `i` is no target index, so the two never mix).
pub const ASK_ID: &str = "rg~i~";

/// One input request of an `input_required` result.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The target's key, under which the answer goes back.
    pub key: String,
    /// `elicitation/create`, `sampling/createMessage` or `roots/list`.
    pub method: String,
    pub params: Option<Value>,
}

/// What one `input_required` result asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub asks: Vec<Ask>,
    /// The opaque `requestState`, echoed on the retry as it came.
    pub state: Option<Value>,
}

/// Whether a result asks for input instead of completing.
pub fn is_input_required(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// The client capability a server→client request needs.
fn capability(method: &str) -> Option<&'static str> {
    match method {
        "elicitation/create" => Some("elicitation"),
        "sampling/createMessage" => Some("sampling"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Read an `input_required` result; an error (for the client) when it is malformed or asks
/// something the spec does not allow in it.
pub fn parse(result: &Value, target: &str) -> Result<Round, RpcError> {
    let bad = |why: &str| RpcError::new(INTERNAL_ERROR, format!("target `{target}` asked for input {why}"));
    let mut asks = Vec::new();
    match result.get("inputRequests") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (key, req) in m {
                let method = req.get("method").and_then(Value::as_str).ok_or_else(|| bad("without a method"))?;
                if capability(method).is_none() {
                    return Err(bad(&format!("with `{method}`, which no input request may be")));
                }
                let params = req.get("params").filter(|p| !p.is_null()).cloned();
                asks.push(Ask { key: key.clone(), method: method.to_string(), params });
            }
        }
        Some(_) => return Err(bad("with inputRequests that are no object")),
    }
    let state = result.get("requestState").filter(|s| !s.is_null()).cloned();
    if asks.is_empty() && state.is_none() {
        return Err(bad("with neither inputRequests nor requestState"));
    }
    Ok(Round { asks, state })
}

/// The first request the client cannot take by the capabilities it declared at `initialize`
/// (`None`: it declared none), as a MissingRequiredClientCapability error naming the target.
pub fn missing_capability(round: &Round, declared: Option<&Value>, target: &str) -> Option<RpcError> {
    let ask = round.asks.iter().find(|a| {
        let cap = capability(&a.method).unwrap_or_default();
        declared.and_then(|d| d.get(cap)).is_none_or(Value::is_null)
    })?;
    let cap = capability(&ask.method).unwrap_or_default();
    let e = RpcError::new(
        MISSING_CAPABILITY,
        format!("target `{target}` needs `{}` from the client, which did not declare the {cap} capability", ask.method),
    );
    Some(e.with_data(json!({"requiredCapabilities": {cap: {}}})))
}

/// The client's answer to one request: its result, or (an error answer, or not an answer at
/// all) the error the call fails with.
pub fn answer(msg: Message, ask: &Ask, target: &str) -> Result<Value, RpcError> {
    match msg {
        Message::Response { result, .. } => Ok(result),
        Message::Error { error, .. } => {
            let e = RpcError::from_value(&error);
            let why = format!("the client refused `{}` for target `{target}`: {}", ask.method, e.message);
            Err(RpcError { message: why, ..e })
        }
        _ => Err(RpcError::new(INTERNAL_ERROR, format!("no answer to `{}` for target `{target}`", ask.method))),
    }
}

/// The original request's params for the retry: the answers under `inputResponses` and the
/// echoed `requestState` (both replaced: the previous round's are spent).
pub fn retry_params(original: Option<&Value>, responses: Map<String, Value>, state: Option<Value>) -> Value {
    let mut p = match original {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    p.insert("inputResponses".into(), Value::Object(responses));
    match state {
        Some(s) => p.insert("requestState".into(), s),
        None => p.remove("requestState"),
    };
    Value::Object(p)
}

/// The id of the retry after `round` (a new one, as the spec wants; distinct per round).
pub fn retry_id(id: &Value, round: usize) -> Value {
    match id {
        Value::String(s) => json!(format!("{s}~mrtr{round}")),
        other => json!(format!("{other}~mrtr{round}")),
    }
}

/// The capabilities a legacy client declared at `initialize`, as its `_meta` would carry them
/// in 2026-07-28 (that era asks only what a request's client declared).
pub fn with_capabilities(params: Option<Value>, declared: &Value) -> Value {
    let mut p = match params {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    let meta = p.entry("_meta").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.insert("io.modelcontextprotocol/clientCapabilities".into(), declared.clone());
    }
    Value::Object(p)
}

/// The requests the gateway asked clients and waits on, by token: the client session that may
/// answer, the client's request they were asked for (its id as JSON text, which the client's
/// `notifications/cancelled` names), and where the answer goes.
type Waiting = Mutex<HashMap<u64, (String, String, flume::Sender<Message>)>>;

/// Process-wide because the answer's POST may land on any shard; the lock is touched only while
/// bridging, never on a plain request, and never held across I/O.
fn waiting() -> &'static Waiting {
    static WAITING: OnceLock<Waiting> = OnceLock::new();
    WAITING.get_or_init(Default::default)
}

/// A request asked of a client session: its id on the client's stream, and the answer's way in.
/// Dropping it forgets the request (a late answer is then for an unknown id).
pub struct Pending {
    token: u64,
    pub rx: flume::Receiver<Message>,
}

impl Pending {
    /// Wait for an answer from client session `sid`, asked for its request `request`.
    pub fn new(sid: &str, request: &Value) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let token = NEXT.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        if let Ok(mut w) = waiting().lock() {
            w.insert(token, (sid.to_string(), request.to_string(), tx));
        }
        Pending { token, rx }
    }

    /// The id the client sees.
    pub fn id(&self) -> Value {
        json!(format!("{ASK_ID}{}", self.token))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut w) = waiting().lock() {
            w.remove(&self.token);
        }
    }
}

/// Hand client session `sid`'s answer (its id one of [`Pending::id`]) to the request waiting
/// for it; `false` when none of this session's is (unknown, answered already, or given up).
pub fn deliver(sid: &str, msg: Message) -> bool {
    let Some(token) = msg.id().and_then(Value::as_str).and_then(|id| id.strip_prefix(ASK_ID)?.parse::<u64>().ok())
    else {
        return false;
    };
    let tx = waiting().lock().ok().and_then(|mut w| match w.get(&token) {
        Some((owner, _, _)) if owner == sid => w.remove(&token).map(|(_, _, tx)| tx),
        _ => None,
    });
    tx.is_some_and(|tx| tx.send(msg).is_ok())
}

/// Client session `sid` cancelled its request `request`: what was asked for it stops waiting
/// (wherever it waits), woken with the client's `notifications/cancelled` instead of an answer;
/// `false` when nothing waited.
pub fn cancel(sid: &str, request: &Value, params: Option<&Value>) -> bool {
    let request = request.to_string();
    let woken: Vec<_> = match waiting().lock() {
        Ok(mut w) => {
            let tokens: Vec<u64> =
                w.iter().filter(|(_, (s, r, _))| s == sid && *r == request).map(|(t, _)| *t).collect();
            tokens.into_iter().filter_map(|t| w.remove(&t)).map(|(_, _, tx)| tx).collect()
        }
        Err(_) => Vec::new(),
    };
    let note = || Message::Notification { method: CANCELLED.into(), params: params.cloned() };
    woken.iter().filter(|tx| tx.try_send(note()).is_ok()).count() > 0
}

const CANCELLED: &str = "notifications/cancelled";

/// Whether what a waiting request was woken with is its client's cancellation ([`cancel`]).
pub fn is_cancellation(msg: &Message) -> bool {
    matches!(msg, Message::Notification { method, .. } if method == CANCELLED)
}

/// The gateway's `notifications/cancelled` for its question `asked` (a [`Pending::id`]) that the
/// client need not answer any more.
pub fn withdraw(asked: &Value) -> Vec<u8> {
    let p = json!({"requestId": asked, "reason": "the request it was asked for was cancelled"});
    super::jsonrpc::notification(CANCELLED, Some(&p))
}

/// Whether a client's answer is to one of the gateway's own requests.
pub fn is_ask_id(msg: &Message) -> bool {
    msg.id().and_then(Value::as_str).is_some_and(|id| id.starts_with(ASK_ID))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Value {
        json!({"resultType": "input_required", "requestState": "s1", "inputRequests": {
            "user_name": {"method": "elicitation/create", "params": {"message": "Name?"}},
            "roots": {"method": "roots/list"}}})
    }

    #[test]
    fn an_input_required_result_reads_as_asks_and_state() {
        assert!(is_input_required(&asked()));
        assert!(!is_input_required(&json!({"content": []})));
        assert!(!is_input_required(&json!({"resultType": "complete"})));
        let r = parse(&asked(), "t").unwrap();
        assert_eq!(r.state, Some(json!("s1")));
        let keys: Vec<_> = r.asks.iter().map(|a| (a.key.as_str(), a.method.as_str())).collect();
        assert_eq!(keys, [("roots", "roots/list"), ("user_name", "elicitation/create")]);
        assert_eq!(r.asks[1].params, Some(json!({"message": "Name?"})));
        assert_eq!(r.asks[0].params, None);
        // state alone is a valid round (nothing to ask, retry at once)
        assert!(parse(&json!({"resultType": "input_required", "requestState": "x"}), "t").unwrap().asks.is_empty());
    }

    #[test]
    fn malformed_or_forbidden_asks_are_errors_naming_the_target() {
        for bad in [
            json!({"resultType": "input_required"}),
            json!({"resultType": "input_required", "inputRequests": []}),
            json!({"resultType": "input_required", "inputRequests": {"k": {"params": {}}}}),
            json!({"resultType": "input_required", "inputRequests": {"k": {"method": "tools/call"}}}),
        ] {
            let e = parse(&bad, "fx").unwrap_err();
            assert!(e.message.contains("`fx`"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn a_request_the_client_did_not_declare_is_a_missing_capability() {
        let r = parse(&asked(), "fx").unwrap();
        assert!(
            missing_capability(&r, Some(&json!({"elicitation": {}, "roots": {"listChanged": true}})), "fx").is_none()
        );
        let e = missing_capability(&r, Some(&json!({"elicitation": {}})), "fx").unwrap();
        assert_eq!(e.code, MISSING_CAPABILITY);
        assert!(e.message.contains("roots/list") && e.message.contains("`fx`"), "{}", e.message);
        assert_eq!(e.data, Some(json!({"requiredCapabilities": {"roots": {}}})));
        assert!(missing_capability(&r, None, "fx").is_some(), "nothing declared");
        assert!(missing_capability(&r, Some(&json!({"roots": null, "elicitation": {}})), "fx").is_some());
    }

    #[test]
    fn answers_become_input_responses_and_errors_fail_the_call() {
        let ask = Ask { key: "k".into(), method: "elicitation/create".into(), params: None };
        let ok = Message::Response { id: json!("rg~i~1"), result: json!({"action": "accept"}) };
        assert_eq!(answer(ok, &ask, "fx").unwrap(), json!({"action": "accept"}));
        let no = Message::Error { id: json!("rg~i~1"), error: json!({"code": -1, "message": "user closed it"}) };
        let e = answer(no, &ask, "fx").unwrap_err();
        assert_eq!(e.code, -1);
        assert!(e.message.contains("user closed it") && e.message.contains("elicitation/create"), "{}", e.message);
    }

    #[test]
    fn the_retry_carries_the_answers_and_the_echoed_state_under_a_new_id() {
        let original =
            json!({"name": "ask", "arguments": {"a": 1}, "inputResponses": {"old": {}}, "requestState": "s0"});
        let mut answers = Map::new();
        answers.insert("user_name".into(), json!({"action": "accept", "content": {"name": "Ada"}}));
        let p = retry_params(Some(&original), answers.clone(), Some(json!("s1")));
        assert_eq!(p["name"], "ask");
        assert_eq!(p["arguments"], json!({"a": 1}));
        assert_eq!(p["inputResponses"], json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}}));
        assert_eq!(p["requestState"], "s1");
        let p = retry_params(Some(&original), answers, None);
        assert!(p.get("requestState").is_none(), "a spent state is not echoed again");
        assert_eq!(retry_id(&json!(7), 1), json!("7~mrtr1"));
        assert_eq!(retry_id(&json!("a"), 2), json!("a~mrtr2"));
        let caps = json!({"elicitation": {}});
        let p = with_capabilities(Some(json!({"name": "x", "_meta": {"progressToken": 3}})), &caps);
        assert_eq!(p["_meta"]["io.modelcontextprotocol/clientCapabilities"], caps);
        assert_eq!(p["_meta"]["progressToken"], 3);
    }

    #[test]
    fn a_cancellation_wakes_only_what_was_asked_for_that_request_of_that_session() {
        let (a1, a2) = (Pending::new("cancel-a", &json!(1)), Pending::new("cancel-a", &json!(1)));
        let (other_request, other_session) =
            (Pending::new("cancel-a", &json!("1")), Pending::new("cancel-b", &json!(1)));
        let why = json!({"requestId": 1, "reason": "user"});
        assert!(cancel("cancel-a", &json!(1), Some(&why)));
        for p in [&a1, &a2] {
            let m = p.rx.try_recv().unwrap();
            assert!(is_cancellation(&m), "{m:?}");
        }
        assert!(other_request.rx.try_recv().is_err() && other_session.rx.try_recv().is_err());
        // woken once: an answer arriving after it is for an unknown id
        assert!(!cancel("cancel-a", &json!(1), None));
        assert!(!deliver("cancel-a", Message::Response { id: a1.id(), result: json!({}) }));
        assert!(!is_cancellation(&Message::Response { id: json!(1), result: json!({}) }));
        let w: Value = serde_json::from_slice(&withdraw(&a1.id())).unwrap();
        assert_eq!((w["method"].as_str(), &w["params"]["requestId"]), (Some(CANCELLED), &a1.id()));
    }

    #[test]
    fn an_answer_reaches_only_the_request_of_the_session_that_was_asked() {
        let p = Pending::new("session-a", &json!(1));
        let id = p.id();
        let msg = || Message::Response { id: id.clone(), result: json!({"roots": []}) };
        assert!(is_ask_id(&msg()));
        assert!(!deliver("session-b", msg()), "another session cannot answer it");
        assert!(deliver("session-a", msg()));
        assert!(p.rx.try_recv().is_ok());
        assert!(!deliver("session-a", msg()), "answered already");
        let q = Pending::new("session-a", &json!(1));
        let late = Message::Response { id: q.id(), result: json!({}) };
        drop(q);
        assert!(!deliver("session-a", late), "given up");
        let other = Message::Response { id: json!("rg~0~5"), result: json!({}) };
        assert!(!is_ask_id(&other) && !deliver("session-a", other));
    }
}
