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
            ProxyError::UpstreamConnect(_) | ProxyError::UpstreamClosed | ProxyError::UpstreamProtocol(_) => 502,
            ProxyError::UpstreamTimeout | ProxyError::RequestTimeout => 504,
            // nginx's convention; never sent, only logged and counted
            ProxyError::ClientClosed => 499,
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
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamClosed => "upstream_closed",
            ProxyError::UpstreamProtocol(_) => "upstream_protocol",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::ClientClosed => "client_closed",
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
            | ProxyError::ClientClosed => Side::Client,
            ProxyError::NoBackend => Side::Gateway,
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
            ProxyError::UpstreamTimeout => f.write_str("upstream did not respond in time"),
            ProxyError::UpstreamClosed => f.write_str("upstream closed the connection before responding"),
            ProxyError::UpstreamProtocol(e) => write!(f, "invalid upstream response: {e}"),
            ProxyError::RequestTimeout => f.write_str("request timed out"),
            ProxyError::ClientClosed => f.write_str("client closed the connection"),
        }
    }
}

/// Render the error as a complete HTTP/1.1 response (JSON body) into `out`.
pub fn write_error_response(err: &ProxyError, close: bool, out: &mut Vec<u8>) {
    let body = serde_json::json!({ "error": { "type": err.reason(), "message": err.to_string() } }).to_string();
    crate::http::codec::write_status_line(out, err.status());
    crate::http::codec::write_header(out, "content-type", b"application/json");
    crate::http::codec::write_header(out, "content-length", body.len().to_string().as_bytes());
    if close {
        crate::http::codec::write_header(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}
