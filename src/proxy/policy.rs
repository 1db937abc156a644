//! Route policies that need no I/O: redirects, URL rewrites, CORS headers and direct responses.

use std::borrow::Cow;

use crate::config::compile::CorsPlan;
use crate::config::model::{AuthorityRewrite, PathRewrite, RequestRedirect, UrlRewrite};
use crate::http::codec::{write_header, write_status_line, RequestHead};

/// Replace the matched `prefix` of `path` with `with`, keeping one `/` between the parts.
fn replace_prefix(path: &str, prefix: Option<&str>, with: &str) -> String {
    let rest = match prefix {
        Some(p) if path.starts_with(p) => &path[p.len()..],
        _ => path,
    };
    match (with.ends_with('/'), rest.starts_with('/')) {
        (true, true) => format!("{with}{}", &rest[1..]),
        (false, false) if !rest.is_empty() => format!("{with}/{rest}"),
        _ if with.is_empty() && rest.is_empty() => "/".to_string(),
        _ => format!("{with}{rest}"),
    }
}

fn new_path(path: &str, prefix: Option<&str>, rw: &PathRewrite) -> String {
    match rw {
        PathRewrite::Full(p) => p.clone(),
        PathRewrite::Prefix(p) => replace_prefix(path, prefix, p.trim_end_matches('/')),
    }
}

fn new_authority(host: &str, rw: &AuthorityRewrite) -> String {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(']') || host.starts_with('[') => {
            (n, Some(p))
        }
        _ => (host, None),
    };
    match rw {
        AuthorityRewrite::Full(a) => a.clone(),
        AuthorityRewrite::Host(h) => match port {
            Some(p) => format!("{h}:{p}"),
            None => h.clone(),
        },
        AuthorityRewrite::Port(p) => format!("{name}:{p}"),
    }
}

/// Request target (path and query) after `urlRewrite`.
pub fn rewritten_target<'a>(rw: Option<&UrlRewrite>, head: &'a RequestHead, prefix: Option<&str>) -> Cow<'a, str> {
    let Some(p) = rw.and_then(|r| r.path.as_ref()) else {
        return Cow::Borrowed(head.target());
    };
    let mut t = new_path(head.path(), prefix, p);
    if let Some(q) = head.query() {
        t.push('?');
        t.push_str(q);
    }
    Cow::Owned(t)
}

/// `Host` after `urlRewrite`, if it changes it.
pub fn rewritten_host(rw: Option<&UrlRewrite>, head: &RequestHead) -> Option<String> {
    let a = rw?.authority.as_ref()?;
    Some(new_authority(head.host().unwrap_or(""), a))
}

/// Status and `Location` of a redirect.
pub fn redirect(r: &RequestRedirect, head: &RequestHead, prefix: Option<&str>) -> (u16, String) {
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let host = head.host().unwrap_or("");
    let authority = match &r.authority {
        Some(a) => new_authority(host, a),
        None => host.to_string(),
    };
    let path = match &r.path {
        Some(p) => new_path(head.path(), prefix, p),
        None => head.path().to_string(),
    };
    let mut loc = format!("{scheme}://{authority}{path}");
    if let Some(q) = head.query() {
        loc.push('?');
        loc.push_str(q);
    }
    (r.status.unwrap_or(302), loc)
}

/// Whether a browser page at `origin` may use an MCP route. The MCP transport spec asks servers to
/// check `Origin` against DNS rebinding: a page on `evil.example` whose name was rebound to
/// 127.0.0.1 reaches a local gateway with `Origin` and `Host` both saying `evil.example`, so
/// comparing the two proves nothing. Allowed are the origins the route's CORS policy allows, and
/// loopback pages talking to a gateway reached by a loopback name. Clients that are not browsers
/// send no `Origin` and are not affected.
pub fn mcp_origin_allowed(cors: Option<&CorsPlan>, origin: &str, host: Option<&str>) -> bool {
    if cors.is_some_and(|c| c.allows(origin)) {
        return true;
    }
    let page = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    page.is_some_and(is_loopback_authority) && host.is_some_and(is_loopback_authority)
}

fn is_loopback_authority(a: &str) -> bool {
    let host = crate::http::url::host_only(a);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether this request is a CORS preflight.
pub fn is_preflight(head: &RequestHead) -> bool {
    head.method() == "OPTIONS"
        && head.header("origin").is_some()
        && head.header("access-control-request-method").is_some()
}

/// Write the complete answer to a preflight: 200 with the allow headers when the origin is
/// allowed, 200 without them otherwise (the browser then blocks the request).
pub fn write_preflight(cors: &CorsPlan, head: &RequestHead, out: &mut Vec<u8>) {
    write_status_line(out, 200);
    if let Some(origin) = head.header_str("origin").filter(|o| cors.allows(o)) {
        allow_origin(cors, origin, out);
        if !cors.allow_methods.is_empty() {
            write_header(out, "access-control-allow-methods", cors.allow_methods.as_bytes());
        }
        if !cors.allow_headers.is_empty() {
            write_header(out, "access-control-allow-headers", cors.allow_headers.as_bytes());
        }
        if let Some(age) = cors.max_age {
            write_header(out, "access-control-max-age", age.to_string().as_bytes());
        }
    }
    write_header(out, "content-length", b"0");
    out.extend_from_slice(b"\r\n");
}

fn allow_origin(cors: &CorsPlan, origin: &str, out: &mut Vec<u8>) {
    if cors.is_any() {
        write_header(out, "access-control-allow-origin", b"*");
    } else {
        write_header(out, "access-control-allow-origin", origin.as_bytes());
        write_header(out, "vary", b"Origin");
    }
    if cors.allow_credentials {
        write_header(out, "access-control-allow-credentials", b"true");
    }
}

/// CORS headers added to a normal (non-preflight) response.
pub fn write_cors_headers(cors: &CorsPlan, origin: Option<&str>, out: &mut Vec<u8>) {
    let Some(origin) = origin.filter(|o| cors.allows(o)) else {
        return;
    };
    allow_origin(cors, origin, out);
    if !cors.expose_headers.is_empty() {
        write_header(out, "access-control-expose-headers", cors.expose_headers.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_keeps_one_slash() {
        assert_eq!(replace_prefix("/api/v1/x", Some("/api"), "/svc"), "/svc/v1/x");
        assert_eq!(replace_prefix("/api", Some("/api"), "/svc"), "/svc");
        assert_eq!(replace_prefix("/api/x", Some("/api"), ""), "/x");
        assert_eq!(replace_prefix("/api", Some("/api"), ""), "/");
        assert_eq!(replace_prefix("/api/x", Some("/api/"), "/svc/"), "/svc/x");
    }

    #[test]
    fn mcp_origins_are_loopback_pages_on_loopback_hosts_or_cors_allowed() {
        let ok = |o: &str, h: &str| mcp_origin_allowed(None, o, Some(h));
        assert!(ok("http://localhost:5173", "localhost:3000"));
        assert!(ok("http://127.0.0.1:6274", "127.0.0.1:3000"));
        assert!(ok("https://[::1]:8080", "[::1]:3000"));
        assert!(!ok("http://evil.example", "evil.example:3000"), "DNS rebinding: Origin equals Host");
        assert!(!ok("http://evil.example", "127.0.0.1:3000"));
        assert!(!ok("http://localhost.evil.example", "localhost:3000"));
        assert!(!ok("null", "localhost:3000"));
        assert!(!mcp_origin_allowed(None, "http://localhost", None));
        let cors = CorsPlan {
            allow_origins: vec![crate::config::compile::OriginPattern::Exact("https://app.example".into())],
            allow_methods: String::new(),
            allow_headers: String::new(),
            expose_headers: String::new(),
            allow_credentials: false,
            max_age: None,
        };
        assert!(mcp_origin_allowed(Some(&cors), "https://app.example", Some("mcp.example")));
        assert!(!mcp_origin_allowed(Some(&cors), "https://other.example", Some("mcp.example")));
    }

    #[test]
    fn authority_rewrites() {
        assert_eq!(new_authority("a.com:8080", &AuthorityRewrite::Host("b.com".into())), "b.com:8080");
        assert_eq!(new_authority("a.com", &AuthorityRewrite::Port(9)), "a.com:9");
        assert_eq!(new_authority("a.com:1", &AuthorityRewrite::Full("c:2".into())), "c:2");
    }
}
