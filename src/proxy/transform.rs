//! `transformations`: request and response header values computed per request by CEL expressions.

use crate::auth::cel::{Ctx, Program};
use crate::error::ProxyError;

/// A route's compiled `transformations`.
#[derive(Debug, Default)]
pub struct TransformPlan {
    /// Changes to the request sent upstream.
    pub request: HeaderExprs,
    /// Changes to the response sent to the client.
    pub response: HeaderExprs,
}

/// One direction's header changes; names are lower-case and valid, expressions compiled.
#[derive(Debug, Default)]
pub struct HeaderExprs {
    /// Appended.
    pub add: Vec<(String, Program)>,
    /// Replacing existing values.
    pub set: Vec<(String, Program)>,
    /// Removed.
    pub remove: Vec<String>,
}

/// The changes of one direction, evaluated for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes<'p> {
    dropped: Vec<&'p str>,
    put: Vec<(&'p str, String)>,
}

impl HeaderExprs {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }

    /// Evaluates every expression. One that fails leaves its header out (a missing claim means no
    /// header, as in agentgateway); a value with a control character refuses the request, since a
    /// claim like `"a\r\nx-admin: 1"` must not become a second header.
    pub fn eval<'p>(&'p self, cx: &Ctx<'_>) -> Result<Changes<'p>, ProxyError> {
        let mut c = Changes::default();
        c.dropped.extend(self.remove.iter().map(String::as_str));
        c.dropped.extend(self.set.iter().map(|(n, _)| n.as_str()));
        for (name, program) in self.set.iter().chain(&self.add) {
            let Some(value) = program.eval_string(cx) else { continue };
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(ProxyError::BadTransformValue(name.clone()));
            }
            c.put.push((name, value));
        }
        Ok(c)
    }
}

impl<'p> Changes<'p> {
    /// Whether the original header `name` (any case) must not be copied.
    pub fn drops(&self, name: &str) -> bool {
        self.dropped.iter().any(|d| d.eq_ignore_ascii_case(name))
    }

    /// The headers to write after the copied ones.
    pub fn headers(&self) -> impl Iterator<Item = (&'p str, &str)> {
        self.put.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn exprs(add: &[(&str, &str)], set: &[(&str, &str)], remove: &[&str]) -> HeaderExprs {
        let c = |v: &[(&str, &str)]| v.iter().map(|(n, e)| (n.to_string(), Program::compile(e).unwrap())).collect();
        HeaderExprs { add: c(add), set: c(set), remove: remove.iter().map(|s| s.to_string()).collect() }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn values_come_from_claims_and_failures_leave_the_header_out() {
        let e = exprs(&[("x-tier", "jwt.tier")], &[("x-user", "jwt.sub"), ("x-n", "jwt.n + 1")], &["cookie"]);
        let jwt = claims(json!({"sub": "alice", "n": 41}));
        let c = e.eval(&Ctx { jwt: Some(&jwt), ..Default::default() }).unwrap();
        assert_eq!(c.headers().collect::<Vec<_>>(), vec![("x-user", "alice"), ("x-n", "42")]);
        assert!(c.drops("Cookie") && c.drops("X-User") && !c.drops("x-tier"));
    }

    #[test]
    fn control_characters_refuse_the_request() {
        let e = exprs(&[], &[("x-user", "jwt.sub")], &[]);
        for bad in ["a\r\nx-admin: 1", "a\nb", "a\u{0}b", "a\u{7f}"] {
            let jwt = claims(json!({ "sub": bad }));
            let err = e.eval(&Ctx { jwt: Some(&jwt), ..Default::default() }).unwrap_err();
            assert_eq!(err, ProxyError::BadTransformValue("x-user".into()), "{bad:?}");
        }
        let jwt = claims(json!({"sub": "tab\tis fine"}));
        assert!(e.eval(&Ctx { jwt: Some(&jwt), ..Default::default() }).is_ok());
    }
}
