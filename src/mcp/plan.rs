//! What an MCP backend compiles to: its targets resolved and ready, shared read-only by every shard.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::seal::Sealer;
use super::stdio::StdioServer;

/// A compiled MCP backend.
pub struct McpPlan {
    /// Targets in configuration order; their index is how sessions and cursors refer to them.
    pub targets: Vec<TargetPlan>,
    /// Whether names carry the `target_`/`target+` prefix.
    pub prefixed: bool,
    /// Whether clients get sessions.
    pub stateful: bool,
    /// Whether failing targets are skipped rather than failing the request.
    pub fail_open: bool,
    /// Seals and opens session ids.
    pub sealer: Arc<Sealer>,
    /// Idle lifetime of a client session.
    pub session_ttl: Duration,
}

/// One target.
pub struct TargetPlan {
    /// Its name (the prefix).
    pub name: Arc<str>,
    /// How to reach it.
    pub kind: TargetKind,
    /// Tools it may expose; `None` = all.
    pub tools: Option<ToolFilterPlan>,
}

/// How a target is reached.
pub enum TargetKind {
    /// ringgate's in-process demo server.
    Demo,
    /// Streamable HTTP.
    Http(HttpTargetPlan),
    /// Legacy HTTP+SSE (the plan's path is the GET stream's).
    Sse(HttpTargetPlan),
    /// A child process (shared by every session).
    Stdio(Arc<StdioServer>),
}

/// A resolved HTTP target (Streamable HTTP, or the stream of an HTTP+SSE one).
pub struct HttpTargetPlan {
    /// `host[:port]` for the `Host` header.
    pub authority: String,
    /// The endpoint path.
    pub path: String,
    /// Resolved addresses, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// `backendAuth.key` of the route: header name and value sent with every request.
    pub credential: Option<(String, String)>,
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
