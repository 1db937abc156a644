//! The one error vocabulary of the request path: what failed, on whose side, whether a retry may help, and how it is answered.

use std::fmt;

use crate::http::codec::HeadError;

/// Whose fault an error is; decides the status class and the log field `side`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we refuse.
    Client,
    /// The upstream failed or misbehaved.
    Upstream,
    /// The gateway itself (config, capacity).
    Gateway,
}

/// Every way a request can fail before or while it is proxied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// The request head violates HTTP/1.1 or a limit.
    BadHead(HeadError),
    /// A malformed request body (bad chunk framing).
    BadBody(&'static str),
    /// The request body is larger than `maxBodyBytes`.
    BodyTooLarge(u64),
    /// The head did not arrive within `headerReadTimeout`.
    HeaderTimeout,
    /// No listener or route matches.
    NoRoute,
    /// The route has no usable backend.
    NoBackend,
    /// Connecting to the upstream failed.
    UpstreamConnect(String),
    /// The TLS handshake with the upstream failed (untrusted certificate, wrong name, …).
    UpstreamTls(String),
    /// The request names a host that the TLS listener chosen by the handshake's SNI does not serve.
    Misdirected,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream closed or reset before a full response head.
    UpstreamClosed,
    /// The upstream sent an invalid response.
    UpstreamProtocol(String),
    /// The route's `requestTimeout` expired.
    RequestTimeout,
    /// The client went away before the response was complete.
    ClientClosed,
    /// Something the gateway needs failed on its own side (e.g. the OS random source).
    Internal(String),
    /// An MCP request refused at the transport level (answered with a JSON-RPC error body that
    /// carries the request's id when the request was read).
    Mcp(McpReject, Option<serde_json::Value>),
    /// Credentials missing or invalid (401 with a challenge).
    Unauthenticated(AuthReject),
    /// The caller is known but a rule does not allow the request (403).
    Forbidden(Forbidden),
    /// Over a rate limit (429 with `Retry-After` and `x-ratelimit-*`).
    RateLimited(RateLimited),
    /// A `failClosed` global rate limit whose store (Redis) did not answer: why.
    RateLimitUnavailable(String),
    /// The `extAuthz` service refused the request; its answer goes to the client.
    ExtAuthzDenied(ExtAuthzDenied),
    /// The `extAuthz` service could not decide and the failure mode refuses.
    ExtAuthzUnavailable(ExtAuthzUnavailable),
    /// A `transformations` expression produced a header value with a control character: the header's name.
    BadTransformValue(String),
}

/// The denial of an `extAuthz` service, passed on to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtAuthzDenied {
    /// Its status (403 when the service answered with a status that is not a denial).
    pub status: u16,
    /// Its end-to-end header lines (`name: value\r\n`), values cleaned of CR/LF/NUL.
    pub headers: Vec<u8>,
    /// Its body, at most 64 KiB of it.
    pub body: bytes::Bytes,
}

/// An `extAuthz` check that could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtAuthzUnavailable {
    /// The status of `failureMode` (403 unless `denyWithStatus`).
    pub status: u16,
    /// What went wrong (no addresses or secrets).
    pub why: &'static str,
}

/// Why a request has no acceptable identity, and how the client should authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthReject {
    /// Metric label (`auth_missing`, `jwt_expired`, …).
    pub reason: &'static str,
    /// What is wrong, for the client; never contains the credential.
    pub message: String,
    /// `WWW-Authenticate` value.
    pub challenge: String,
}

/// A request an authorization rule refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forbidden {
    /// Metric label (`forbidden`, `insufficient_scope`).
    pub reason: &'static str,
    /// What is refused.
    pub message: String,
    /// `WWW-Authenticate` value, for `insufficient_scope`.
    pub challenge: Option<String>,
}

/// A request over a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Header lines (`name: value\r\n`) with `retry-after` and `x-ratelimit-*`.
    pub headers: String,
}

/// Why an MCP request is refused before it reaches a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McpReject {
    /// `Accept` lacks `application/json` or `text/event-stream`.
    NotAcceptable,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// A method the endpoint does not serve (GET/DELETE when stateless, PUT, ...); carries the
    /// `Allow` header's value (what that endpoint does serve).
    MethodNotAllowed(&'static str),
    /// No session id on a request that needs one; names where it was expected.
    SessionRequired(&'static str),
    /// The session id is not ours, malformed, ended or expired.
    SessionUnknown,
    /// The body is not JSON.
    Parse(String),
    /// The body is not a valid JSON-RPC message (or is a batch).
    InvalidRequest(String),
    /// A 2026-07-28 request whose `Mcp-*` headers disagree with its body.
    HeaderMismatch(String),
    /// A protocol version the gateway does not speak (the one the client asked for).
    UnsupportedVersion(String),
    /// A 2026-07-28 request for a method that era does not have.
    MethodNotFound(String),
    /// A 2026-07-28 request without a `_meta` field every request must carry.
    InvalidParams(String),
    /// A GET with a `Last-Event-ID` of a POST answer this session cannot resume (unknown, ended
    /// long ago, or events after it were dropped): a 400 rather than a fresh GET stream, on which
    /// the client would wait for its response forever.
    ResumeUnknown,
}

impl McpReject {
    fn status(&self) -> u16 {
        match self {
            McpReject::NotAcceptable => 406,
            McpReject::UnsupportedMediaType => 415,
            McpReject::MethodNotAllowed(_) => 405,
            McpReject::SessionUnknown | McpReject::MethodNotFound(_) => 404,
            _ => 400,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            McpReject::NotAcceptable => "mcp_not_acceptable",
            McpReject::UnsupportedMediaType => "mcp_unsupported_media_type",
            McpReject::MethodNotAllowed(_) => "mcp_method_not_allowed",
            McpReject::SessionRequired(_) => "mcp_session_required",
            McpReject::SessionUnknown => "mcp_session_unknown",
            McpReject::Parse(_) => "mcp_parse_error",
            McpReject::InvalidRequest(_) => "mcp_invalid_request",
            McpReject::HeaderMismatch(_) => "mcp_header_mismatch",
            McpReject::UnsupportedVersion(_) => "mcp_unsupported_version",
            McpReject::MethodNotFound(_) => "mcp_method_not_found",
            McpReject::InvalidParams(_) => "mcp_invalid_params",
            McpReject::ResumeUnknown => "mcp_resume_unknown",
        }
    }

    /// The JSON-RPC error's `data`: what the gateway supports for an unsupported version (SEP-2575).
    pub fn data(&self) -> Option<serde_json::Value> {
        match self {
            McpReject::UnsupportedVersion(v) => {
                Some(serde_json::json!({ "supported": supported_versions(), "requested": v }))
            }
            _ => None,
        }
    }

    /// The JSON-RPC error code of the body.
    pub fn code(&self) -> i64 {
        use crate::mcp::jsonrpc as j;
        match self {
            McpReject::Parse(_) => j::PARSE_ERROR,
            McpReject::HeaderMismatch(_) => j::HEADER_MISMATCH,
            McpReject::UnsupportedVersion(_) => j::UNSUPPORTED_VERSION,
            McpReject::MethodNotFound(_) => j::METHOD_NOT_FOUND,
            McpReject::InvalidParams(_) => j::INVALID_PARAMS,
            _ => j::INVALID_REQUEST,
        }
    }
}

impl fmt::Display for McpReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpReject::NotAcceptable => {
                f.write_str("Not Acceptable: the client must accept both application/json and text/event-stream")
            }
            McpReject::UnsupportedMediaType => f.write_str("Unsupported Media Type: the body must be application/json"),
            McpReject::MethodNotAllowed(_) => f.write_str("Method Not Allowed on this MCP endpoint"),
            McpReject::SessionRequired(what) => write!(f, "Bad Request: {what} is required"),
            McpReject::SessionUnknown => f.write_str("Session not found"),
            McpReject::Parse(m) => write!(f, "{m}"),
            McpReject::InvalidRequest(m) | McpReject::HeaderMismatch(m) | McpReject::InvalidParams(m) => f.write_str(m),
            McpReject::UnsupportedVersion(v) => {
                write!(f, "Unsupported protocol version: {v} (supported: {})", supported_versions().join(", "))
            }
            McpReject::MethodNotFound(m) => write!(f, "Method not found: {m}"),
            McpReject::ResumeUnknown => f.write_str(
                "Bad Request: Last-Event-ID names no stream of this session that can be resumed (unknown, expired, \
                 or its events were dropped); send the request again",
            ),
        }
    }
}

/// The MCP protocol versions the gateway speaks, oldest first.
fn supported_versions() -> Vec<&'static str> {
    let mut all = crate::mcp::merge::LEGACY_VERSIONS.to_vec();
    all.push(crate::mcp::merge::MODERN_VERSION);
    all
}

impl ProxyError {
    /// The HTTP status sent to the client.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadHead(h) => h.status(),
            ProxyError::BadBody(_) => 400,
            ProxyError::BodyTooLarge(_) => 413,
            ProxyError::HeaderTimeout => 408,
            ProxyError::NoRoute => 404,
            ProxyError::NoBackend => 503,
            ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamProtocol(_) => 502,
            ProxyError::Misdirected => 421,
            ProxyError::UpstreamTimeout | ProxyError::RequestTimeout => 504,
            ProxyError::Internal(_) => 500,
            // nginx's convention; never sent, only logged and counted
            ProxyError::ClientClosed => 499,
            ProxyError::Mcp(m, _) => m.status(),
            ProxyError::Unauthenticated(_) => 401,
            ProxyError::Forbidden(_) => 403,
            ProxyError::RateLimited(_) => 429,
            ProxyError::ExtAuthzDenied(d) => d.status,
            ProxyError::ExtAuthzUnavailable(u) => u.status,
            ProxyError::RateLimitUnavailable(_) => 503,
            ProxyError::BadTransformValue(_) => 400,
        }
    }

    /// Short, low-cardinality label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::BadHead(h) => h.reason(),
            ProxyError::BadBody(_) => "bad_body",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::HeaderTimeout => "header_timeout",
            ProxyError::NoRoute => "no_route",
            ProxyError::NoBackend => "no_backend",
            ProxyError::UpstreamConnect(_) => "upstream_connect",
            ProxyError::UpstreamTls(_) => "upstream_tls",
            ProxyError::Misdirected => "misdirected_request",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamClosed => "upstream_closed",
            ProxyError::UpstreamProtocol(_) => "upstream_protocol",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::ClientClosed => "client_closed",
            ProxyError::Internal(_) => "internal",
            ProxyError::Mcp(m, _) => m.reason(),
            ProxyError::Unauthenticated(a) => a.reason,
            ProxyError::Forbidden(f) => f.reason,
            ProxyError::RateLimited(_) => "rate_limited",
            ProxyError::ExtAuthzDenied(_) => "ext_authz_denied",
            ProxyError::ExtAuthzUnavailable(_) => "ext_authz_unavailable",
            ProxyError::RateLimitUnavailable(_) => "rate_limit_unavailable",
            ProxyError::BadTransformValue(_) => "transform_invalid_value",
        }
    }

    /// Whose fault it is.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadHead(_)
            | ProxyError::BadBody(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::HeaderTimeout
            | ProxyError::NoRoute
            | ProxyError::Misdirected
            | ProxyError::ClientClosed
            | ProxyError::Mcp(..)
            | ProxyError::Unauthenticated(_)
            | ProxyError::Forbidden(_)
            | ProxyError::RateLimited(_)
            | ProxyError::ExtAuthzDenied(_)
            | ProxyError::BadTransformValue(_) => Side::Client,
            ProxyError::NoBackend
            | ProxyError::Internal(_)
            | ProxyError::ExtAuthzUnavailable(_)
            | ProxyError::RateLimitUnavailable(_) => Side::Gateway,
            _ => Side::Upstream,
        }
    }

    /// Whether another attempt (possibly on another backend) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, ProxyError::UpstreamConnect(_) | ProxyError::UpstreamClosed)
    }

    /// Whether the client connection must be closed after the answer (its framing is unknown).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadHead(_) | ProxyError::BadBody(_) | ProxyError::BodyTooLarge(_) | ProxyError::HeaderTimeout
        )
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::BadHead(h) => write!(f, "{h}"),
            ProxyError::BadBody(m) => write!(f, "invalid request body: {m}"),
            ProxyError::BodyTooLarge(max) => write!(f, "request body exceeds the limit of {max} bytes"),
            ProxyError::HeaderTimeout => f.write_str("request head not received in time"),
            ProxyError::NoRoute => f.write_str("no route matches this request"),
            ProxyError::NoBackend => f.write_str("the route has no backend"),
            ProxyError::UpstreamConnect(e) => write!(f, "cannot connect to upstream: {e}"),
            ProxyError::UpstreamTls(e) => write!(f, "TLS handshake with upstream failed: {e}"),
            ProxyError::Misdirected => {
                f.write_str("this connection's TLS server name belongs to another listener than the request's host")
            }
            ProxyError::UpstreamTimeout => f.write_str("upstream did not respond in time"),
            ProxyError::UpstreamClosed => f.write_str("upstream closed the connection before responding"),
            ProxyError::UpstreamProtocol(e) => write!(f, "invalid upstream response: {e}"),
            ProxyError::RequestTimeout => f.write_str("request timed out"),
            ProxyError::ClientClosed => f.write_str("client closed the connection"),
            ProxyError::Internal(e) => write!(f, "internal error: {e}"),
            ProxyError::Mcp(m, _) => write!(f, "{m}"),
            ProxyError::Unauthenticated(a) => f.write_str(&a.message),
            ProxyError::Forbidden(x) => f.write_str(&x.message),
            ProxyError::RateLimited(_) => f.write_str("rate limit exceeded; retry after the time in Retry-After"),
            ProxyError::ExtAuthzDenied(d) => {
                write!(f, "the external authorization service denied the request ({})", d.status)
            }
            ProxyError::ExtAuthzUnavailable(u) => {
                write!(f, "the external authorization service could not decide: {}", u.why)
            }
            ProxyError::RateLimitUnavailable(why) => {
                write!(f, "the global rate limit cannot be checked and this route fails closed: {why}")
            }
            ProxyError::BadTransformValue(name) => {
                write!(f, "the value computed for header `{name}` contains a control character (CR, LF or NUL)")
            }
        }
    }
}

/// Render the error as a complete HTTP/1.1 response (JSON body) into `out`. `extra` holds header
/// lines (`name: value\r\n`) of the route that still apply, such as CORS: a browser client can
/// only read a 401's challenge or a 429's `Retry-After` when the refusal carries them.
pub fn write_error_response(err: &ProxyError, close: bool, extra: &[u8], out: &mut Vec<u8>) {
    if let ProxyError::ExtAuthzDenied(d) = err {
        // the service's own answer, so its clients see what it meant them to see
        crate::http::codec::write_status_line(out, d.status);
        out.extend_from_slice(&d.headers);
        out.extend_from_slice(extra);
        crate::http::codec::write_header(out, "content-length", d.body.len().to_string().as_bytes());
        if close {
            crate::http::codec::write_header(out, "connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&d.body);
        return;
    }
    let body = match err {
        // MCP clients read a JSON-RPC error, with the request's id (null when it is unknown)
        ProxyError::Mcp(m, id) => {
            let mut error = serde_json::json!({ "code": m.code(), "message": m.to_string() });
            if let Some(data) = m.data() {
                error["data"] = data;
            }
            serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error })
        }
        _ => serde_json::json!({ "error": { "type": err.reason(), "message": err.to_string() } }),
    }
    .to_string();
    crate::http::codec::write_status_line(out, err.status());
    crate::http::codec::write_header(out, "content-type", b"application/json");
    match err {
        ProxyError::Mcp(McpReject::MethodNotAllowed(allow), _) => {
            crate::http::codec::write_header(out, "allow", allow.as_bytes())
        }
        ProxyError::Unauthenticated(AuthReject { challenge, .. })
        | ProxyError::Forbidden(Forbidden { challenge: Some(challenge), .. }) => {
            crate::http::codec::write_header(out, "www-authenticate", challenge.as_bytes())
        }
        ProxyError::RateLimited(r) => out.extend_from_slice(r.headers.as_bytes()),
        _ => {}
    }
    out.extend_from_slice(extra);
    crate::http::codec::write_header(out, "content-length", body.len().to_string().as_bytes());
    if close {
        crate::http::codec::write_header(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}
