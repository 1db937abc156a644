//! `extAuthz` over HTTP without I/O: the compiled plan, the check request it writes, and what an answer means.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::cel::{Ctx, Program};
use super::plan::PlanError;
use crate::config::security::{ExtAuthz, ExtAuthzFailureMode, ExtAuthzProtocol};
use crate::error::ExtAuthzDenied;
use crate::http::codec::{self, RequestHead, ResponseHead};

/// Headers the gateway sets on every check. A client's headers of these names are never sent,
/// so the service can trust them.
pub const FORWARDED: [&str; 5] =
    ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-method", "x-forwarded-uri"];

/// Most of a denial's body passed on to the client; the rest is dropped.
pub const MAX_DENIAL_BODY: usize = 64 * 1024;

/// Default time for a whole check, as agentgateway's.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A compiled `extAuthz`.
pub struct ExtAuthzPlan {
    /// `host:port` as configured, sent as `Host`.
    pub authority: String,
    /// Resolved addresses, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// How the check's path is made.
    pub path: CheckPath,
    /// Client headers sent along (lower-case).
    pub include_request_headers: Vec<String>,
    /// Answer headers copied onto the upstream request (lower-case).
    pub include_response_headers: Vec<String>,
    /// Largest body sent to the service; `None`: the body is not read.
    pub max_body: Option<u64>,
    /// Time allowed for the whole check.
    pub timeout: Duration,
    /// What a check that could not be made means.
    pub on_failure: OnFailure,
}

/// How the check's path is made.
pub enum CheckPath {
    /// The client's path and query.
    Original,
    /// A literal prefix, then the client's path and query.
    Prefix(String),
    /// A CEL expression giving the whole path.
    Expr(Program),
}

/// What a check that could not be made means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Serve the request.
    Allow,
    /// Refuse it with this status.
    Deny(u16),
}

/// Per-request header changes for the upstream request: the client's headers of each name are
/// dropped and the value, if any, sent instead.
pub type HeaderEdits<'a> = Vec<(&'a str, Option<Vec<u8>>)>;

/// What the service decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Serve the request, with these header changes.
    Allow(HeaderEdits<'a>),
    /// Answer the client with the service's denial.
    Deny(ExtAuthzDenied),
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers whose meaning belongs to one connection or to the message framing.
fn is_managed(name: &str) -> bool {
    codec::is_hop_by_hop(name) || ["host", "content-length", "transfer-encoding", "expect"].contains(&name)
}

fn header_names(at: &str, names: &[String]) -> Result<Vec<String>, PlanError> {
    names
        .iter()
        .map(|n| {
            let n = n.to_ascii_lowercase();
            if n.starts_with(':') {
                return Err((at.to_string(), format!("pseudo-header `{n}` is not supported over HTTP/1.1")));
            }
            if !is_token(&n) {
                return Err((at.to_string(), format!("`{n}` is not a valid header name")));
            }
            if is_managed(&n) || FORWARDED.contains(&n.as_str()) {
                return Err((at.to_string(), format!("`{n}` is managed by the gateway and cannot be listed")));
            }
            Ok(n)
        })
        .collect()
}

/// Whether a path can go into a request line as is.
fn is_clean_path(p: &str) -> bool {
    p.starts_with('/') && p.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// Compile `extAuthz`; `addrs` are its `host`, resolved. Errors name the field under `extAuthz`.
pub fn compile(cfg: &ExtAuthz, addrs: Vec<SocketAddr>) -> Result<ExtAuthzPlan, PlanError> {
    let ExtAuthzProtocol::Http(http) = &cfg.protocol;
    let path = match (&http.path, &http.path_prefix) {
        (Some(_), Some(_)) => {
            return Err(("protocol.http.pathPrefix".into(), "set `path` (CEL) or `pathPrefix`, not both".into()))
        }
        (Some(expr), None) => {
            CheckPath::Expr(Program::compile(expr).map_err(|e| ("protocol.http.path".to_string(), e))?)
        }
        (None, Some(prefix)) => {
            if !is_clean_path(prefix) {
                let msg = format!("`{prefix}` must be a path starting with `/`, without spaces or control characters");
                return Err(("protocol.http.pathPrefix".into(), msg));
            }
            CheckPath::Prefix(prefix.trim_end_matches('/').to_string())
        }
        (None, None) => CheckPath::Original,
    };
    let mut include_request_headers = header_names("includeRequestHeaders", &cfg.include_request_headers)?;
    if cfg.include_request_headers.is_empty() {
        include_request_headers.push("authorization".into());
    }
    let include_response_headers =
        header_names("protocol.http.includeResponseHeaders", &http.include_response_headers)?;
    let max_body = match &cfg.include_request_body {
        Some(b) if b.allow_partial_message => {
            return Err((
                "includeRequestBody.allowPartialMessage".into(),
                "partial bodies are not supported by this build; a larger body is refused with 413".into(),
            ))
        }
        Some(b) if b.max_request_bytes == 0 => {
            return Err(("includeRequestBody.maxRequestBytes".into(), "must be at least 1".into()))
        }
        Some(b) => Some(u64::from(b.max_request_bytes)),
        None => None,
    };
    let timeout = cfg.timeout.map_or(DEFAULT_TIMEOUT, |d| d.get());
    if timeout.is_zero() {
        return Err(("timeout".into(), "must be more than 0".into()));
    }
    let on_failure = match cfg.failure_mode {
        ExtAuthzFailureMode::Allow => OnFailure::Allow,
        ExtAuthzFailureMode::Deny => OnFailure::Deny(403),
        ExtAuthzFailureMode::DenyWithStatus(s) if (400..=599).contains(&s) => OnFailure::Deny(s),
        ExtAuthzFailureMode::DenyWithStatus(s) => {
            return Err(("failureMode.denyWithStatus".into(), format!("{s} is not an error status (400-599)")))
        }
    };
    Ok(ExtAuthzPlan {
        authority: cfg.host.trim_start_matches("http://").to_string(),
        addrs,
        path,
        include_request_headers,
        include_response_headers,
        max_body,
        timeout,
        on_failure,
    })
}

impl ExtAuthzPlan {
    /// The path (and query) of the check; `Err` when the `path` expression fails or yields
    /// something that cannot go into a request line.
    pub fn check_path<'a>(&self, head: &RequestHead, cx: impl FnOnce() -> Ctx<'a>) -> Result<String, &'static str> {
        let original = || match head.query() {
            Some(q) => format!("{}?{q}", head.path()),
            None => head.path().to_string(),
        };
        match &self.path {
            CheckPath::Original => Ok(original()),
            CheckPath::Prefix(p) => Ok(format!("{p}{}", original())),
            CheckPath::Expr(e) => match e.eval_string(&cx()) {
                Some(p) if is_clean_path(&p) => Ok(p),
                Some(_) => Err("the `path` expression gave an invalid path"),
                None => Err("the `path` expression did not give a string"),
            },
        }
    }

    /// Write the check request: the client's method, `path`, the included headers, the
    /// gateway's `x-forwarded-*` headers and `body` (when the plan sends bodies).
    pub fn write_check(
        &self,
        out: &mut Vec<u8>,
        head: &RequestHead,
        path: &str,
        peer: SocketAddr,
        body: Option<&[u8]>,
    ) {
        let method = head.method();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        codec::write_header(out, "host", self.authority.as_bytes());
        for (name, value) in head.headers() {
            if let Some(n) = self.include_request_headers.iter().find(|n| n.eq_ignore_ascii_case(name)) {
                codec::write_header(out, n, value);
            }
        }
        // the address text needs no cleaning: written in place, as the proxy path does
        out.extend_from_slice(b"x-forwarded-for: ");
        codec::write_ip(out, peer.ip());
        out.extend_from_slice(b"\r\n");
        codec::write_header(out, "x-forwarded-host", head.host().unwrap_or("").as_bytes());
        codec::write_header(out, "x-forwarded-proto", b"http");
        codec::write_header(out, "x-forwarded-method", method.as_bytes());
        codec::write_header(out, "x-forwarded-uri", head.target().as_bytes());
        match body {
            Some(b) => {
                codec::write_header(out, "content-length", b.len().to_string().as_bytes());
                // Envoy's marker, which agentgateway sends too
                codec::write_header(out, "x-envoy-auth-partial-body", b"false");
            }
            None if matches!(method, "POST" | "PUT" | "PATCH") => codec::write_header(out, "content-length", b"0"),
            None => {}
        }
        out.extend_from_slice(b"\r\n");
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
    }

    /// The header changes when no answer can be used (fail open): the client's headers of the
    /// names the service owns are still dropped.
    pub fn drop_owned(&self) -> HeaderEdits<'_> {
        self.include_response_headers.iter().map(|n| (n.as_str(), None)).collect()
    }

    /// What the answer `resp` (with `body`, already bounded) decides.
    pub fn verdict(&self, resp: &ResponseHead, body: Bytes) -> Verdict<'_> {
        if (200..300).contains(&resp.status) {
            let edits = self
                .include_response_headers
                .iter()
                .map(|n| (n.as_str(), resp.header(n).map(<[u8]>::to_vec)))
                .collect();
            return Verdict::Allow(edits);
        }
        // a redirect to a login page is a denial too; an interim or unknown status is not an answer
        let status = if (300..600).contains(&resp.status) { resp.status } else { 403 };
        let named: Vec<String> = resp
            .header("connection")
            .map(|v| codec::connection_tokens(v).map(|t| String::from_utf8_lossy(t).to_ascii_lowercase()).collect())
            .unwrap_or_default();
        let mut headers = Vec::new();
        for (name, value) in resp.headers() {
            let lower = name.to_ascii_lowercase();
            if is_managed(&lower) || named.contains(&lower) {
                continue;
            }
            codec::write_header(&mut headers, name, value);
        }
        Verdict::Deny(ExtAuthzDenied { status, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::security::{ExtAuthzBody, ExtAuthzHttp};

    fn cfg(http: ExtAuthzHttp) -> ExtAuthz {
        ExtAuthz {
            host: "127.0.0.1:9".into(),
            protocol: ExtAuthzProtocol::Http(http),
            failure_mode: ExtAuthzFailureMode::Deny,
            include_request_headers: vec![],
            include_request_body: None,
            timeout: None,
        }
    }

    fn plan(http: ExtAuthzHttp) -> ExtAuthzPlan {
        compile(&cfg(http), vec!["127.0.0.1:9".parse().unwrap()]).unwrap()
    }

    fn request(raw: &str) -> RequestHead {
        let limits = codec::Limits { max_head_bytes: 8192, max_headers: 100 };
        let p = codec::parse_request(raw.as_bytes(), &limits).unwrap().unwrap();
        let len = p.head_len;
        p.into_head(Bytes::copy_from_slice(&raw.as_bytes()[..len]))
    }

    fn response(raw: &str) -> ResponseHead {
        let limits = codec::Limits { max_head_bytes: 8192, max_headers: 100 };
        let p = codec::parse_response(raw.as_bytes(), &limits, false).unwrap().unwrap();
        let len = p.head_len;
        p.into_head(Bytes::copy_from_slice(&raw.as_bytes()[..len]))
    }

    const PEER: &str = "10.1.2.3:4444";

    #[test]
    fn check_carries_method_path_chosen_headers_and_forwarded_facts() {
        let p = plan(ExtAuthzHttp { path_prefix: Some("/check/".into()), ..Default::default() });
        let head = request(
            "POST /api/x?y=1 HTTP/1.1\r\nhost: gw.test\r\nauthorization: Bearer t\r\ncookie: c=1\r\nx-forwarded-user: forged\r\nx-forwarded-for: 6.6.6.6\r\ncontent-length: 3\r\n\r\n",
        );
        let path = p.check_path(&head, Ctx::default).unwrap();
        assert_eq!(path, "/check/api/x?y=1");
        let mut out = Vec::new();
        p.write_check(&mut out, &head, &path, PEER.parse().unwrap(), None);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /check/api/x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nauthorization: Bearer t\r\nx-forwarded-for: 10.1.2.3\r\nx-forwarded-host: gw.test\r\nx-forwarded-proto: http\r\nx-forwarded-method: POST\r\nx-forwarded-uri: /api/x?y=1\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_body_goes_along_when_configured() {
        let mut c = cfg(ExtAuthzHttp::default());
        c.include_request_headers = vec!["X-Team".into()];
        c.include_request_body =
            Some(ExtAuthzBody { max_request_bytes: 10, allow_partial_message: false, pack_as_bytes: false });
        let p = compile(&c, vec![]).unwrap();
        assert_eq!(p.max_body, Some(10));
        let head =
            request("PUT /a HTTP/1.1\r\nhost: h\r\nx-team: red\r\nauthorization: no\r\ncontent-length: 2\r\n\r\n");
        let mut out = Vec::new();
        p.write_check(&mut out, &head, "/a", PEER.parse().unwrap(), Some(b"hi"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nx-team: red\r\n"), "{text}");
        assert!(!text.contains("authorization"), "only the listed headers: {text}");
        assert!(text.ends_with("content-length: 2\r\nx-envoy-auth-partial-body: false\r\n\r\nhi"), "{text}");
    }

    #[test]
    fn path_expression_is_checked_before_it_reaches_the_request_line() {
        let p = plan(ExtAuthzHttp { path: Some("\"/authz\" + request.path".into()), ..Default::default() });
        let head = request("GET /v1/a?q HTTP/1.1\r\nhost: h\r\n\r\n");
        let id = crate::auth::Identity::default();
        let peer = PEER.parse().unwrap();
        let cx = || crate::proxy::admission::rule_ctx(&id, &head, peer);
        assert_eq!(p.check_path(&head, cx).as_deref(), Ok("/authz/v1/a"));
        let bad = plan(ExtAuthzHttp { path: Some("\"/x HTTP/1.1\\r\\nx-evil: 1\"".into()), ..Default::default() });
        assert!(bad.check_path(&head, Ctx::default).is_err());
        let not_string = plan(ExtAuthzHttp { path: Some("1 + 1 == 2".into()), ..Default::default() });
        assert!(not_string.check_path(&head, Ctx::default).is_err());
    }

    #[test]
    fn config_errors_name_the_field() {
        let both = ExtAuthzHttp { path: Some("\"/a\"".into()), path_prefix: Some("/b".into()), ..Default::default() };
        assert_eq!(compile(&cfg(both), vec![]).err().unwrap().0, "protocol.http.pathPrefix");
        let spaced = ExtAuthzHttp { path_prefix: Some("/a b".into()), ..Default::default() };
        assert!(compile(&cfg(spaced), vec![]).is_err());
        let managed = ExtAuthzHttp { include_response_headers: vec!["Content-Length".into()], ..Default::default() };
        assert!(compile(&cfg(managed), vec![]).err().unwrap().1.contains("managed by the gateway"));
        let mut c = cfg(ExtAuthzHttp::default());
        c.include_request_headers = vec!["x-forwarded-for".into()];
        assert!(compile(&c, vec![]).is_err(), "clients cannot supply what the gateway vouches for");
        c.include_request_headers = vec![];
        c.failure_mode = ExtAuthzFailureMode::DenyWithStatus(200);
        assert_eq!(compile(&c, vec![]).err().unwrap().0, "failureMode.denyWithStatus");
        c.failure_mode = ExtAuthzFailureMode::DenyWithStatus(503);
        assert_eq!(compile(&c, vec![]).unwrap().on_failure, OnFailure::Deny(503));
        c.include_request_body =
            Some(ExtAuthzBody { max_request_bytes: 5, allow_partial_message: true, pack_as_bytes: false });
        assert!(compile(&c, vec![]).is_err());
    }

    #[test]
    fn an_answer_value_cannot_split_the_upstream_head() {
        let head = request("GET / HTTP/1.1\r\nhost: h\r\nx-user-id: forged\r\n\r\n");
        let edits = vec![("x-user-id", Some(b"alice\r\nx-injected: 1\0".to_vec()))];
        let mut out = Vec::new();
        let body = crate::proxy::upstream::BodyOut::None;
        crate::proxy::upstream::write_request_head(
            &mut out,
            &head,
            "/",
            None,
            None,
            &edits,
            &Default::default(),
            body,
            PEER.parse().unwrap(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nx-user-id: alice  x-injected: 1 \r\n"), "{text}");
        assert!(!text.contains("forged") && !text.contains("\r\nx-injected"), "{text}");
    }

    #[test]
    fn allow_copies_owned_headers_and_drops_absent_ones() {
        let p = plan(ExtAuthzHttp {
            include_response_headers: vec!["X-User".into(), "x-tenant".into()],
            ..Default::default()
        });
        let ok = response("HTTP/1.1 204 No Content\r\nx-user: alice\r\nx-other: 1\r\n\r\n");
        assert_eq!(
            p.verdict(&ok, Bytes::new()),
            Verdict::Allow(vec![("x-user", Some(b"alice".to_vec())), ("x-tenant", None)])
        );
        assert_eq!(p.drop_owned(), vec![("x-user", None), ("x-tenant", None)]);
    }

    #[test]
    fn denial_keeps_status_and_end_to_end_headers() {
        let p = plan(ExtAuthzHttp::default());
        let no = response(
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer\r\nconnection: x-hop\r\nx-hop: 1\r\nkeep-alive: 5\r\ncontent-length: 4\r\n\r\n",
        );
        let Verdict::Deny(d) = p.verdict(&no, Bytes::from_static(b"nope")) else { panic!() };
        assert_eq!(d.status, 401);
        assert_eq!(String::from_utf8(d.headers).unwrap(), "www-authenticate: Bearer\r\n");
        assert_eq!(&d.body[..], b"nope");
        let odd = response("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n");
        let Verdict::Deny(d) = p.verdict(&odd, Bytes::new()) else { panic!() };
        assert_eq!(d.status, 403, "a status that is no answer is a plain refusal");
    }
}
