//! Route selection: listener by host, then the most specific matching route; pure, no I/O.

use crate::config::compile::{ListenerPlan, RoutePlan, Snapshot};
use crate::http::codec::RequestHead;

/// The route chosen for a request, with the matched path prefix (for prefix rewrites).
pub struct Selected<'a> {
    /// The route.
    pub route: &'a RoutePlan,
    /// The listener.
    pub listener: &'a ListenerPlan,
    /// The matched `pathPrefix`, if the winning match was a prefix.
    pub prefix: Option<&'a str>,
}

/// Host without port, lower-cased only when needed.
pub fn host_of(head: &RequestHead) -> &str {
    let h = head.host().unwrap_or("");
    // `[v6]:port`, `name:port`
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    h.rsplit_once(':').map_or(h, |(n, p)| if p.bytes().all(|b| b.is_ascii_digit()) { n } else { h })
}

/// Select the route for `head` on bind `bind`.
pub fn select<'a>(snap: &'a Snapshot, bind: usize, head: &RequestHead) -> Option<Selected<'a>> {
    let host = host_of(head);
    let listener = snap.listener(bind, host)?;
    let path = head.path();
    for &(ri, mi) in &listener.order {
        let route = &listener.routes[ri];
        if !route.hostnames.is_empty() && !route.hostnames.iter().any(|h| h.matches(host)) {
            continue;
        }
        let Some(mi) = mi else {
            return Some(Selected { route, listener, prefix: None });
        };
        let m = &route.matches[mi];
        if let Some(p) = &m.path {
            if !p.matches(path) {
                continue;
            }
        }
        if let Some(meth) = &m.method {
            if meth != head.method() {
                continue;
            }
        }
        if !m.headers.iter().all(|(n, v)| head.header_str(n).is_some_and(|hv| v.matches(hv))) {
            continue;
        }
        if !m.query.iter().all(|(n, v)| query_param(head.query(), n).is_some_and(|qv| v.matches(qv))) {
            continue;
        }
        let prefix = match &m.path {
            Some(crate::config::compile::PathPlan::Prefix(p)) => Some(p.as_str()),
            _ => None,
        };
        return Some(Selected { route, listener, prefix });
    }
    None
}

/// First value of query parameter `name` (not percent-decoded: configs compare raw values).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Pick a backend index by weight using `rand` (any u64).
pub fn pick_backend(route: &RoutePlan, rand: u64) -> Option<usize> {
    if route.total_weight == 0 {
        return None;
    }
    let mut x = rand % route.total_weight;
    for (i, b) in route.backends.iter().enumerate() {
        let w = u64::from(b.weight);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lookup() {
        assert_eq!(query_param(Some("a=1&b=2"), "b"), Some("2"));
        assert_eq!(query_param(Some("flag&b=2"), "flag"), Some(""));
        assert_eq!(query_param(None, "a"), None);
        assert_eq!(query_param(Some("ab=1"), "a"), None);
    }
}
