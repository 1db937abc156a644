//! What an MCP backend compiles to: its targets resolved and ready, shared read-only by every shard.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::poison::{Digest, Scanner};
use super::seal::Sealer;
use super::stdio::StdioServer;
use crate::config::mcp::{GuardMode, TargetProtocol};

/// A compiled MCP backend.
pub struct McpPlan {
    /// The route's label: what the process-wide tool-poisoning state is kept under, so that it
    /// survives reloads that keep the route.
    pub scope: Arc<str>,
    /// Targets in configuration order; their index is how sessions and cursors refer to them.
    pub targets: Vec<TargetPlan>,
    /// Whether names carry the `target_`/`target+` prefix.
    pub prefixed: bool,
    /// Whether unprefixed names of several targets share one namespace (`prefixMode: never`):
    /// the owner of a name is found by listing, and names of more than one target are refused.
    pub resolve: bool,
    /// Fingerprints of what clients can see of its tools, and of its prompts and resources: a
    /// reload that changes one tells the clients' open GET streams that the list changed.
    pub view: (u64, u64),
    /// Whether clients get sessions.
    pub stateful: bool,
    /// Whether failing targets are skipped rather than failing the request.
    pub fail_open: bool,
    /// Whether requests with an `Origin` are checked (`dnsRebindingProtection`).
    pub origin_check: bool,
    /// Seals and opens session ids.
    pub sealer: Arc<Sealer>,
    /// Idle lifetime of a client session.
    pub session_ttl: Duration,
    /// What is kept so clients can resume dropped SSE streams.
    pub resume: super::resume::Limits,
    /// Bytes of cached list pages a shard keeps (`config.mcp.catalogCache.maxBytes`).
    pub catalog_max_bytes: usize,
}

/// One target.
pub struct TargetPlan {
    /// Its name (the prefix).
    pub name: Arc<str>,
    /// How to reach it.
    pub kind: TargetKind,
    /// Tools it may expose; `None` = all.
    pub tools: Option<ToolFilterPlan>,
    /// Tool-poisoning defence; `None` when both of its checks are off.
    pub guard: Option<GuardPlan>,
    /// Stateful client sessions get an upstream of their own (a stdio process, an HTTP+SSE
    /// session) rather than the shared one (`upstreamMode: perSession`).
    pub per_session: bool,
    /// How long its list pages may be cached (zero: never).
    pub catalog_max_age: Duration,
    /// Fingerprint of its configuration and of the route's naming: pages cached under another
    /// one (before a reload changed the target) are not served.
    pub catalog_fp: u64,
    /// The era spoken to a Streamable HTTP target (`protocol`).
    pub protocol: TargetProtocol,
}

/// A target's tool-poisoning defence, resolved from the backend's and the target's `toolGuard`.
pub struct GuardPlan {
    /// What a changed definition does.
    pub pinning: GuardMode,
    /// What scan findings (and shadowing) do.
    pub scan: GuardMode,
    /// The scan rules.
    pub scanner: Scanner,
    /// Pins from `toolPins`.
    pub pins: HashMap<String, Digest>,
    /// Fingerprint of all of the above: tools evaluated under other settings are evaluated again.
    pub fp: u64,
}

/// How a target is reached.
pub enum TargetKind {
    /// ringgate's in-process demo server.
    Demo,
    /// Streamable HTTP.
    Http(HttpTargetPlan),
    /// Legacy HTTP+SSE (the plan's path is the GET stream's).
    Sse(HttpTargetPlan),
    /// A child process (shared, and one per session in `perSession` mode).
    Stdio(Arc<StdioServer>),
}

/// A resolved HTTP target (Streamable HTTP, or the stream of an HTTP+SSE one).
#[derive(Clone)]
pub struct HttpTargetPlan {
    /// `host[:port]` for the `Host` header.
    pub authority: String,
    /// The endpoint path.
    pub path: String,
    /// Resolved addresses, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// `backendAuth.key` of the route: header name and value sent with every request.
    pub credential: Option<(String, String)>,
    /// TLS towards the target (`https://` or `backendTLS`).
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
}

impl HttpTargetPlan {
    /// Key of this shard's shared upstream session: targets reached with different credentials
    /// never share one.
    pub fn session_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        match &self.credential {
            None => format!("{}{}", self.authority, self.path),
            Some(c) => {
                // a digest, so the secret is kept in one place only
                let mut h = std::collections::hash_map::DefaultHasher::new();
                c.hash(&mut h);
                format!("{}{}#{:016x}", self.authority, self.path, h.finish())
            }
        }
    }

    /// Write the credential header, if any.
    pub fn write_credential(&self, head: &mut Vec<u8>) {
        if let Some((name, value)) = &self.credential {
            crate::http::codec::write_header(head, name, value.as_bytes());
        }
    }
}

/// Tool selection by name.
pub struct ToolFilterPlan {
    /// Allowed names (empty: all).
    pub include: HashSet<String>,
    /// Refused names.
    pub exclude: HashSet<String>,
}

impl ToolFilterPlan {
    /// Whether a tool of this target may be listed and called.
    pub fn allows(&self, tool: &str) -> bool {
        (self.include.is_empty() || self.include.contains(tool)) && !self.exclude.contains(tool)
    }
}

impl McpPlan {
    /// Target names in order (for cursors and name splitting).
    pub fn names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| &*t.name).collect()
    }
}
