//! Plain `http://` URLs as the config writes them: authority and path, and the default port made explicit.

/// The authority and path of `http://authority/path` (the scheme may be left out); `default_path`
/// when the URL has no path.
pub fn split<'a>(url: &'a str, default_path: &'a str) -> (&'a str, &'a str) {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, default_path),
    }
}

/// `authority` as `host:port`, with `:80` added when it names no port (`[::1]` included).
pub fn with_port(authority: &str) -> String {
    if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_defaults() {
        assert_eq!(split("http://idp:8080/realms/x/certs", "/"), ("idp:8080", "/realms/x/certs"));
        assert_eq!(split("h:9", "/mcp"), ("h:9", "/mcp"));
        assert_eq!(split("http://h", "/"), ("h", "/"));
        assert_eq!(with_port("h:9"), "h:9");
        assert_eq!(with_port("h"), "h:80");
        assert_eq!(with_port("[::1]"), "[::1]:80");
        assert_eq!(with_port("[::1]:81"), "[::1]:81");
    }
}
