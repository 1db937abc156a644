//! The gateway's opaque list cursor: which targets still have pages, and each one's upstream cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::jsonrpc::{RpcError, INVALID_PARAMS};

/// Which targets still have pages, with their upstream cursors, in target order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub pending: Vec<(String, String)>,
}

/// Encode the pending targets for `list_method`; `None` when `pending` is empty (end of list).
/// The method is included so a cursor from one list is rejected by another.
pub fn encode(list_method: &str, pending: &[(String, String)]) -> Option<String> {
    if pending.is_empty() {
        return None;
    }
    let c: Map<String, Value> = pending.iter().map(|(t, c)| (t.clone(), Value::from(c.as_str()))).collect();
    Some(URL_SAFE_NO_PAD.encode(json!({"v": 1, "k": list_method, "c": c}).to_string()))
}

/// Decode a client cursor; Err is an INVALID_PARAMS RpcError ("invalid cursor") for anything malformed, a
/// different list method, or a target name not in `targets`. `pending` comes back in `targets` order, since
/// JSON object order is not preserved.
pub fn decode<S: AsRef<str>>(list_method: &str, cursor: &str, targets: &[S]) -> Result<Cursor, RpcError> {
    decode_opt(list_method, cursor, targets).ok_or_else(|| RpcError::new(INVALID_PARAMS, "invalid cursor"))
}

fn decode_opt<S: AsRef<str>>(list_method: &str, cursor: &str, targets: &[S]) -> Option<Cursor> {
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    if v.get("v")? != 1 || v.get("k")? != list_method {
        return None;
    }
    let mut pending = v
        .get("c")?
        .as_object()?
        .iter()
        .map(|(t, c)| Some((targets.iter().position(|x| x.as_ref() == t)?, t.clone(), c.as_str()?.to_owned())))
        .collect::<Option<Vec<_>>>()?;
    if pending.is_empty() {
        return None;
    }
    pending.sort_by_key(|p| p.0);
    Some(Cursor { pending: pending.into_iter().map(|(_, t, c)| (t, c)).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(t, c)| (t.to_string(), c.to_string())).collect()
    }

    #[test]
    fn round_trip_keeps_empty_cursor_and_target_order() {
        let targets = ["zeta", "alpha", "mid"];
        let pending = pairs(&[("zeta", "z/+=1"), ("alpha", ""), ("mid", "\"q\"")]);
        let enc = encode("tools/list", &pending).unwrap();
        assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{enc}");
        assert_eq!(decode("tools/list", &enc, &targets).unwrap(), Cursor { pending });
    }

    #[test]
    fn empty_pending_is_end_of_list() {
        assert_eq!(encode("tools/list", &[]), None);
    }

    #[test]
    fn rejects_bad_cursors() {
        let targets = vec!["a".to_string(), "b".to_string()];
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let good = encode("tools/list", &pairs(&[("a", "1")])).unwrap();
        let bad = [
            "!!!".to_string(),
            String::new(),
            format!("{good}="),
            b64("hello"),
            b64("[1]"),
            b64(r#"{"v":2,"k":"tools/list","c":{"a":"1"}}"#),
            b64(r#"{"k":"tools/list","c":{"a":"1"}}"#),
            b64(r#"{"v":1,"k":"tools/list","c":{}}"#),
            b64(r#"{"v":1,"k":"tools/list","c":{"a":1}}"#),
            b64(r#"{"v":1,"k":"tools/list","c":{"a":null}}"#),
            b64(r#"{"v":1,"k":"tools/list","c":["a","1"]}"#),
            encode("tools/list", &pairs(&[("a", "1"), ("c", "2")])).unwrap(),
        ];
        for cursor in &bad {
            let err = decode("tools/list", cursor, &targets).unwrap_err();
            assert_eq!((err.code, err.message.as_str()), (INVALID_PARAMS, "invalid cursor"), "{cursor}");
        }
        assert!(decode("prompts/list", &good, &targets).is_err());
        assert!(decode("tools/list", &good, &targets).is_ok());
    }
}
