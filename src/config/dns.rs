//! Re-resolution of upstream host names: tells the control thread when a name now resolves elsewhere.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::compile::Snapshot;
use crate::mcp::plan::TargetKind;

/// A host name of the snapshot with the port it is reached on and the addresses in use.
#[derive(Debug, PartialEq, Eq)]
pub struct Name {
    /// The DNS name (IP literals are never listed).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Addresses the snapshot uses, sorted.
    pub addrs: Vec<SocketAddr>,
}

/// Every HTTP backend and MCP HTTP/SSE target addressed by a DNS name.
pub fn names(snap: &Snapshot) -> Vec<Name> {
    let mut out: Vec<Name> = Vec::new();
    let mut add = |authority: &str, addrs: &[SocketAddr]| {
        let Some(first) = addrs.first() else { return };
        let host = crate::http::url::host_only(authority);
        if host.parse::<IpAddr>().is_ok() || out.iter().any(|n| n.host == host && n.port == first.port()) {
            return;
        }
        let mut addrs = addrs.to_vec();
        addrs.sort();
        out.push(Name { host: host.to_string(), port: first.port(), addrs });
    };
    for route in snap.binds.iter().flat_map(|b| &b.listeners).flat_map(|l| &l.routes) {
        for b in &route.backends {
            add(&b.authority, &b.addrs);
        }
        for t in route.mcp.iter().flat_map(|m| &m.targets) {
            if let TargetKind::Http(h) | TargetKind::Sse(h) = &t.kind {
                add(&h.authority, &h.addrs);
            }
        }
    }
    out
}

/// The first name that now resolves to another set of addresses. A name that does not resolve
/// at all is not a change: the last good addresses keep serving through a DNS outage.
pub fn changed(names: &[Name], resolve: impl Fn(&str, u16) -> Option<Vec<SocketAddr>>) -> Option<&Name> {
    names.iter().find(|n| {
        resolve(&n.host, n.port).filter(|a| !a.is_empty()).is_some_and(|mut now| {
            now.sort();
            now.dedup();
            now != n.addrs
        })
    })
}

/// The system resolver.
pub fn system_resolve(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().ok().map(Iterator::collect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::Registry;

    fn snap(yaml: &str) -> Snapshot {
        let cfg = crate::config::load::parse_str(yaml, "t.yaml").unwrap();
        crate::config::compile::compile(cfg, "t.yaml", &Registry::new(1)).unwrap()
    }

    #[test]
    fn names_come_from_backends_and_mcp_targets_but_not_ip_literals() {
        let s = snap(
            "binds:\n- port: 0\n  listeners:\n  - routes:\n    - matches: [{path: {pathPrefix: /a}}]\n      backends: [{host: 'localhost:9000'}, {host: '127.0.0.1:9001'}, {host: 'localhost:9000'}]\n    - backends:\n      - mcp: {targets: [{name: t, mcp: {host: 'http://localhost:9100/mcp'}}, {name: u, mcp: {host: 'http://[::1]:9101/mcp'}}]}\n",
        );
        let got: Vec<(String, u16)> = names(&s).into_iter().map(|n| (n.host, n.port)).collect();
        assert_eq!(got, [("localhost".to_string(), 9000), ("localhost".to_string(), 9100)]);
    }

    #[test]
    fn only_a_different_answer_is_a_change() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let names = vec![Name { host: "svc".into(), port: 80, addrs: vec![a, b] }];
        assert!(changed(&names, |_, _| Some(vec![b, a, a])).is_none(), "order and duplicates do not matter");
        assert!(changed(&names, |_, _| None).is_none(), "a failed lookup keeps the old addresses");
        assert!(changed(&names, |_, _| Some(vec![])).is_none());
        assert_eq!(changed(&names, |_, _| Some(vec![a])).map(|n| n.host.as_str()), Some("svc"));
    }
}
