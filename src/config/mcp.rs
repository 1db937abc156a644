//! The MCP parts of the configuration file: the `mcp:` shorthand, MCP backends and their targets, session settings.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::model::RoutePolicies;

/// The `mcp:` shorthand: one port serving the federated targets at `/mcp` (Streamable HTTP) and
/// `/sse` (legacy HTTP+SSE), as agentgateway does.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpShorthand {
    /// TCP port of a port of its own (default 3000 when no `gateways` are defined; 0 picks a
    /// free one). Deprecated in agentgateway in favour of `gateways`; not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Gateways (`name` or `name/listener`) the MCP route is served on, next to their routes.
    /// Default: the gateway named `default` when top-level `gateways` are defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Address to bind (default 0.0.0.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    // The backend's fields are repeated rather than `#[serde(flatten)]`ed: serde cannot combine
    // flatten with deny_unknown_fields, and typos must stay errors. `backend()` maps them back.
    /// The MCP servers behind this port.
    pub targets: Vec<McpTarget>,
    /// `stateful` (default) or `stateless`, as for MCP backends.
    #[serde(default)]
    pub stateful_mode: StatefulMode,
    /// How names are prefixed, as for MCP backends.
    #[serde(default)]
    pub prefix_mode: PrefixMode,
    /// What a failing target does, as for MCP backends.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Tool-poisoning defence for every target, as for MCP backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_guard: Option<ToolGuard>,
    /// The `Origin` check against DNS rebinding, as for MCP backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_rebinding_protection: Option<bool>,
    /// Route policies (CORS, headers, timeouts) for the MCP route.
    #[serde(default)]
    pub policies: RoutePolicies,
}

impl McpShorthand {
    /// The port of the shorthand's own bind (when it is not attached to `gateways`).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(3000)
    }

    /// The backend the shorthand stands for.
    pub fn backend(&self) -> McpBackend {
        McpBackend {
            targets: self.targets.clone(),
            stateful_mode: self.stateful_mode,
            prefix_mode: self.prefix_mode,
            failure_mode: self.failure_mode,
            tool_guard: self.tool_guard.clone(),
            dns_rebinding_protection: self.dns_rebinding_protection,
        }
    }
}

/// A federated MCP backend: its targets and how they are combined.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpBackend {
    /// The MCP servers behind this backend.
    pub targets: Vec<McpTarget>,
    /// `stateful` (default): clients get a session; `stateless`: every request stands alone and
    /// GET/DELETE answer 405.
    #[serde(default)]
    pub stateful_mode: StatefulMode,
    /// How tool, prompt and resource names are prefixed with their target's name.
    #[serde(default)]
    pub prefix_mode: PrefixMode,
    /// What a failing target does to a fanned-out request.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Tool-poisoning defence (pinning and scanning of tool definitions) for every target; a
    /// target's own `toolGuard` overrides it field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_guard: Option<ToolGuard>,
    /// Refuse browser pages from origins the route's CORS policy does not allow (403), as the
    /// MCP transport spec requires; loopback pages on a loopback host pass. Default true (in
    /// agentgateway this is opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_rebinding_protection: Option<bool>,
}

/// Session handling towards clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StatefulMode {
    /// Sessions with `Mcp-Session-Id`, GET streams and DELETE.
    #[default]
    Stateful,
    /// No sessions.
    Stateless,
}

/// Name prefixing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PrefixMode {
    /// Prefix only when there is more than one target.
    #[default]
    Conditional,
    /// Always prefix (`target_tool`, `target+uri`).
    Always,
    /// Never prefix: a call is routed to the one target listing that name (every target is
    /// listed to find it); names more than one target serves are left out of lists and refused.
    Never,
}

/// Failure handling across targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Any failing target fails the request (or session).
    #[default]
    FailClosed,
    /// Failing targets are left out; the request fails only when every target fails.
    FailOpen,
}

/// One MCP server behind a backend: give exactly one of `stdio`, `mcp`, `sse` or `demo`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpTarget {
    /// Name used as the prefix of its tools, prompts and resources: lowercase letters, digits and `-`.
    pub name: String,
    /// A local server run as a child process speaking newline-delimited JSON-RPC on stdio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<StdioTarget>,
    /// A Streamable HTTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<HttpTarget>,
    /// A legacy HTTP+SSE server (`GET /sse`, then POSTs to the endpoint it names). Each shard
    /// keeps one upstream session with it, shared by every client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<HttpTarget>,
    /// `perSession` gives each stateful client session an upstream of its own, started at its
    /// `initialize` and ended with it (DELETE, idle expiry, gateway shutdown), so what the server
    /// asks or tells (sampling, elicitation, roots, logging, list changes) reaches that client:
    /// a process for `stdio` targets (their default), an upstream session for `sse` targets.
    /// `shared` (the default for `sse`) serves every client with one process, or one upstream
    /// session per shard, which cannot relay such traffic. Stateless and 2026-07-28 clients
    /// always use the shared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_mode: Option<UpstreamMode>,
    /// Which MCP era the gateway speaks to an `mcp` (Streamable HTTP) target: `auto` (default)
    /// probes with `server/discover` on first use, per shard, as MCP clients do, and remembers
    /// the answer; `legacy` always uses sessions (`initialize`, `Mcp-Session-Id`); `modern`
    /// always sends stateless 2026-07-28 requests. A ringgate extension (agentgateway has no
    /// such field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TargetProtocol>,
    /// In `perSession` mode: at most this many processes (`stdio`) or upstream sessions (`sse`)
    /// of this target exist at once (default 100); an `initialize` beyond it fails with
    /// JSON-RPC error -32000, counted as `mcp_session_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    /// ringgate's built-in demo server (a few tools, a prompt, resources), run in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo: Option<DemoTarget>,
    /// Which of the target's tools clients see and may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolFilter>,
    /// Tool-poisoning defence for this target; each field given overrides the backend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_guard: Option<ToolGuard>,
    /// Tool name → SHA-256 (64 hex digits) of its definition, as `/mcp/tools` on the admin
    /// server shows it: fixed pins that take precedence over the ones the gateway learns. A
    /// reload with a new value accepts a changed tool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_pins: BTreeMap<String, String>,
    /// Policies of this target (`backendTLS` for an `https://` or TLS-only server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<super::tls::BackendPolicies>,
    /// How long this target's list pages may be served from the catalog cache, overriding
    /// `config.mcp.catalogCache.maxAge`; `0s` never caches this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_max_age: Option<Duration>,
}

/// Whether a target's upstream (a stdio process) belongs to one client session or is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamMode {
    /// One per stateful client session.
    PerSession,
    /// One for every client.
    Shared,
}

/// The MCP era spoken to a Streamable HTTP target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TargetProtocol {
    /// Probe with `server/discover` and fall back to `initialize` on anything but a 2026-07-28
    /// answer; probe again when the target answers as if redeployed in the other era.
    #[default]
    Auto,
    /// Sessions of the 2025 era only, never probed.
    Legacy,
    /// 2026-07-28 only: no upstream `initialize` or session, also for legacy clients (whose
    /// session then lives in the gateway alone).
    Modern,
}

/// A child-process target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdioTarget {
    /// Program to run (looked up on `PATH`).
    pub cmd: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// An HTTP target.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTarget {
    /// `http://host:port/path`, `https://host[:port]/path` or `host:port` (path defaults to
    /// `/mcp`, or `/sse` for `sse`).
    pub host: String,
}

/// The built-in demo target (no settings).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoTarget {}

/// Tool selection by exact name, applied before prefixing.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolFilter {
    /// Only these tools (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Never these tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Tool-poisoning defence: pin each tool's definition and scan it for instructions aimed at the
/// model. Every field is optional so that a target can override single fields of its backend's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolGuard {
    /// Rug-pull detection: the definition (name, title, description, inputSchema, outputSchema,
    /// annotations) a tool had when the gateway first saw it is pinned; a later list showing a
    /// different one is a `changed` finding. Default `alert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinning: Option<GuardMode>,
    /// Scanning of descriptions and input schemas for injected instructions, hidden characters,
    /// encoded blobs, and references to other targets' tools. Default `alert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<GuardMode>,
    /// Whether the built-in rules run: injection patterns (`<IMPORTANT>` tags, "ignore previous
    /// instructions", "do not tell the user", paths such as `~/.ssh`), invisible characters and
    /// base64-looking blobs. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_patterns: Option<bool>,
    /// Extra regular expressions (Rust `regex` syntax) that make a tool's text an `injection`
    /// finding; a target's list replaces its backend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
}

/// What a tool-poisoning check does with a finding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GuardMode {
    /// The check does not run.
    Off,
    /// Findings are logged, counted and shown on the admin server; the tool stays usable.
    #[default]
    Alert,
    /// As `alert`, and the tool is hidden from lists and refused on calls ("Unknown tool")
    /// until the finding goes away (a changed tool: until an operator accepts it).
    Block,
}

/// Process-wide MCP settings (`config.mcp`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpSettings {
    /// How long a client session may go unused before its id stops being accepted (default 30m).
    #[serde(default = "d_session_ttl")]
    pub session_ttl: Duration,
    /// Replay buffers that let a legacy-era (session) client resume a dropped SSE stream with
    /// `GET` + `Last-Event-ID` (MCP 2025-11-25).
    #[serde(default)]
    pub resumption: Resumption,
    /// The per-shard cache of the list pages targets answer (`tools/list`, `prompts/list`,
    /// `resources/list`, `resources/templates/list`).
    #[serde(default)]
    pub catalog_cache: CatalogCache,
}

/// The catalog cache (`config.mcp.catalogCache`). Pages of targets whose answers cannot depend
/// on the caller (demo, shared stdio and HTTP+SSE, pooled HTTP) are kept for `maxAge`; a page
/// with 2026-07-28 cache hints for at most its `ttlMs`, and only a `public` one when it came
/// through a client's own upstream session. A target's `list_changed` drops its pages on every
/// shard.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogCache {
    /// Longest time a page is served from the cache (default 30s); `0s` turns the cache off.
    #[serde(default = "d_catalog_max_age")]
    pub max_age: Duration,
    /// Bytes of cached pages per shard (default 4194304); the least recently used pages make
    /// room.
    #[serde(default = "d_catalog_max_bytes")]
    pub max_bytes: usize,
}

fn d_catalog_max_age() -> Duration {
    Duration::from_secs(30)
}

fn d_catalog_max_bytes() -> usize {
    4 << 20
}

impl Default for CatalogCache {
    fn default() -> Self {
        CatalogCache { max_age: d_catalog_max_age(), max_bytes: d_catalog_max_bytes() }
    }
}

fn d_session_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings {
            session_ttl: d_session_ttl(),
            resumption: Resumption::default(),
            catalog_cache: CatalogCache::default(),
        }
    }
}

/// SSE stream resumption (`config.mcp.resumption`). Every SSE answer to a session's POST and its
/// GET stream carry event ids; the newest events of each are kept on the shard that produces
/// them, so a client that lost its connection gets exactly what it missed on that stream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resumption {
    /// Events kept per stream (default 256); 0 turns resumption off (no event ids, no priming).
    #[serde(default = "d_max_events")]
    pub max_events: usize,
    /// Bytes kept per stream (default 262144); the newest event is kept whatever its size. At most
    /// `maxStreams × maxBytes` per shard (plus one event per stream).
    #[serde(default = "d_max_bytes")]
    pub max_bytes: usize,
    /// How long a stream nobody reads (the client left), or a POST answer that has ended, stays
    /// resumable (default 60s).
    #[serde(default = "d_retention")]
    pub retention: Duration,
    /// Resumable streams per shard (default 1024). When full, finished answers make room; past
    /// that, new answers carry no event ids.
    #[serde(default = "d_max_streams")]
    pub max_streams: usize,
    /// SSE polling (2025-11-25, SEP-1699): an answer still running after this long is handed
    /// back to the client, which is told (`retry`) when to come back with `Last-Event-ID` for
    /// the rest, and its connection is closed. Off unless set; only for sessions of 2025-11-25
    /// or later, whose clients expect it.
    #[serde(default)]
    pub poll_after: Option<Duration>,
    /// How long a client handed back by `pollAfter` waits before it comes back (the `retry` it
    /// is sent; default 1s).
    #[serde(default = "d_poll_retry")]
    pub poll_retry: Duration,
}

fn d_poll_retry() -> Duration {
    Duration::from_secs(1)
}

fn d_max_events() -> usize {
    256
}

fn d_max_bytes() -> usize {
    256 << 10
}

fn d_retention() -> Duration {
    Duration::from_secs(60)
}

fn d_max_streams() -> usize {
    1024
}

impl Default for Resumption {
    fn default() -> Self {
        Resumption {
            max_events: d_max_events(),
            max_bytes: d_max_bytes(),
            retention: d_retention(),
            max_streams: d_max_streams(),
            poll_after: None,
            poll_retry: d_poll_retry(),
        }
    }
}

/// Session id sealing (`config.session`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSettings {
    /// 64 hex characters: the key that seals session ids, shared by replicas that must accept each
    /// other's sessions. Absent: a random key per process start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}
