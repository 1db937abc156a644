//! `http://` and `https://` URLs as the config writes them: scheme, authority and path, and the default port made explicit.

/// Whether `url` names the `https` scheme.
pub fn is_https(url: &str) -> bool {
    url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The authority and path of `http[s]://authority/path` (the scheme may be left out);
/// `default_path` when the URL has no path.
pub fn split<'a>(url: &'a str, default_path: &'a str) -> (&'a str, &'a str) {
    let rest = if is_https(url) { &url[8..] } else { url.strip_prefix("http://").unwrap_or(url) };
    match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, default_path),
    }
}

/// `authority` as `host:port`, with `:80` (`:443` when `https`) added when it names no port
/// (`[::1]` included).
pub fn with_port(authority: &str, https: bool) -> String {
    if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    }
}

/// The host of `host:port` or `[v6]:port` (brackets kept off), for SNI and certificate checks.
pub fn host_only(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_defaults() {
        assert_eq!(split("http://idp:8080/realms/x/certs", "/"), ("idp:8080", "/realms/x/certs"));
        assert_eq!(split("HTTPS://idp/keys", "/"), ("idp", "/keys"));
        assert!(is_https("https://x") && !is_https("http://x") && !is_https("x:443"));
        assert_eq!(split("h:9", "/mcp"), ("h:9", "/mcp"));
        assert_eq!(split("http://h", "/"), ("h", "/"));
        assert_eq!(with_port("h:9", false), "h:9");
        assert_eq!(with_port("h", false), "h:80");
        assert_eq!(with_port("h", true), "h:443");
        assert_eq!(with_port("[::1]", false), "[::1]:80");
        assert_eq!(with_port("[::1]:81", true), "[::1]:81");
        assert_eq!(host_only("[::1]:81"), "::1");
        assert_eq!(host_only("api.example.com:443"), "api.example.com");
        assert_eq!(host_only("api.example.com"), "api.example.com");
    }
}
