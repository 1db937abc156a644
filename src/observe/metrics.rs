//! Metric names (Prometheus/OpenTelemetry style) and the counters behind them: written by one shard each without locks, summed at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Requests answered, by route and status code.
pub const REQUESTS_TOTAL: &str = "ringgate_requests_total";
/// Whole request duration (head received → response finished), by route.
pub const REQUEST_DURATION: &str = "ringgate_request_duration_seconds";
/// Upstream time to response head, by route.
pub const UPSTREAM_DURATION: &str = "ringgate_upstream_request_duration_seconds";
/// Requests that failed in the gateway, by reason (`bad_head`, `upstream_connect`, …).
pub const REQUEST_ERRORS_TOTAL: &str = "ringgate_request_errors_total";
/// Upstream attempts retried.
pub const UPSTREAM_RETRIES_TOTAL: &str = "ringgate_upstream_retries_total";
/// Open client connections, by shard.
pub const ACTIVE_CONNECTIONS: &str = "ringgate_active_connections";
/// Requests being served (head received, response not finished), by shard; open streams count.
pub const ACTIVE_REQUESTS: &str = "ringgate_active_requests";
/// Pooled upstream connections found closed by the upstream, by what found them
/// ([`STALE_FOUND_BY`]).
pub const UPSTREAM_STALE_TOTAL: &str = "ringgate_upstream_stale_connections_total";
/// The `found_by` labels of [`UPSTREAM_STALE_TOTAL`]: `peek` is the liveness probe taken before a
/// request that cannot be resent (a streamed body); `retry` is a request sent on a pooled
/// connection that ended before any response byte, resent on a fresh one.
pub const STALE_FOUND_BY: [&str; 2] = ["peek", "retry"];
/// Client connections accepted, by shard.
pub const CONNECTIONS_TOTAL: &str = "ringgate_connections_total";
/// Client keep-alive connections closed after waiting `idleTimeout` for a request, by shard.
pub const CONNECTIONS_IDLE_CLOSED_TOTAL: &str = "ringgate_connections_idle_closed_total";
/// Client connections refused because the shard was at `maxConnectionsPerShard`.
pub const CONNECTIONS_REJECTED_TOTAL: &str = "ringgate_connections_rejected_total";
/// Configuration reloads, by result (`success`, `invalid`, `aborted`).
pub const CONFIG_RELOADS_TOTAL: &str = "ringgate_config_reloads_total";
/// Tool-poisoning findings on MCP tool definitions, by kind (each reported once per tool).
pub const MCP_TOOL_FINDINGS_TOTAL: &str = "ringgate_mcp_tool_findings_total";
/// TLS handshakes completed by `HTTPS` listeners.
pub const TLS_HANDSHAKES_TOTAL: &str = "ringgate_tls_handshakes_total";
/// TLS handshakes refused or failed on `HTTPS` listeners, by reason (`crate::tls::HANDSHAKE_ERROR_REASONS`).
pub const TLS_HANDSHAKE_ERRORS_TOTAL: &str = "ringgate_tls_handshake_errors_total";
/// Bytes held in MCP replay buffers (resumable SSE streams), by shard.
pub const MCP_REPLAY_BUFFER_BYTES: &str = "ringgate_mcp_replay_buffer_bytes";
/// Events dropped from MCP replay buffers to stay within their limits.
pub const MCP_REPLAY_EVICTED_TOTAL: &str = "ringgate_mcp_replay_evicted_events_total";
/// GET requests with `Last-Event-ID`, by result (`resumed`, `unknown`, `gap`).
pub const MCP_STREAM_RESUMES_TOTAL: &str = "ringgate_mcp_stream_resumes_total";
/// Events replayed to clients that resumed a stream.
pub const MCP_REPLAYED_EVENTS_TOTAL: &str = "ringgate_mcp_replayed_events_total";
/// Era probes (`server/discover`) of Streamable HTTP MCP targets, by target and what they found
/// (`modern`, `legacy`, `failed`; `modern_only` when a target known modern refused `initialize`).
pub const MCP_ERA_PROBES_TOTAL: &str = "ringgate_mcp_era_probes_total";
/// Open MCP `subscriptions/listen` streams, by shard.
pub const MCP_LISTEN_STREAMS: &str = "ringgate_mcp_listen_streams";
/// The `result` labels of [`MCP_STREAM_RESUMES_TOTAL`].
pub const RESUME_RESULTS: [&str; 3] = ["resumed", "unknown", "gap"];
/// MCP list pages looked up in the catalog cache, by kind (`tools`, `prompts`, `resources`,
/// `resource_templates`) and result (`hit`, `miss`, `bypass`): one per target of each list.
pub const MCP_CATALOG_LOOKUPS_TOTAL: &str = "ringgate_mcp_catalog_lookups_total";
/// Catalog cache misses that waited for the same page's fetch already in flight on their
/// shard instead of asking the target, by kind.
pub const MCP_CATALOG_COALESCED_TOTAL: &str = "ringgate_mcp_catalog_coalesced_total";
/// Bytes of MCP list pages held in the catalog cache, by shard.
pub const MCP_CATALOG_BYTES: &str = "ringgate_mcp_catalog_bytes";
/// Crashed per-session stdio processes, by target and result (`restarted`, `gave_up`).
pub const MCP_STDIO_RESTARTS_TOTAL: &str = "ringgate_mcp_stdio_restarts_total";
/// The `result` labels of [`MCP_STDIO_RESTARTS_TOTAL`].
pub const STDIO_RESTART_RESULTS: [&str; 2] = ["restarted", "gave_up"];
/// 1 per shard, labelled with the I/O driver it runs (`io_uring` or `epoll`).
pub const RUNTIME_DRIVER_INFO: &str = "ringgate_runtime_driver_info";

/// Histogram bucket bounds in seconds.
pub const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

/// Error reasons we count; `ProxyError::reason` and head errors map into this list.
pub const ERROR_REASONS: [&str; 70] = [
    "head_too_large",
    "too_many_headers",
    "malformed",
    "bare_lf",
    "obs_fold",
    "cl_with_te",
    "invalid_content_length",
    "duplicate_content_length",
    "unsupported_transfer_encoding",
    "invalid_header_value",
    "unsupported_version",
    "missing_host",
    "dot_segment",
    "bad_body",
    "body_too_large",
    "header_timeout",
    "no_route",
    "no_backend",
    "upstream_connect",
    "upstream_tls",
    "misdirected_request",
    "upstream_timeout",
    "upstream_closed",
    "upstream_protocol",
    "request_timeout",
    "idle_timeout",
    "client_closed",
    "internal",
    "mcp_not_acceptable",
    "mcp_unsupported_media_type",
    "mcp_method_not_allowed",
    "mcp_session_required",
    "mcp_session_unknown",
    "mcp_parse_error",
    "mcp_invalid_request",
    "mcp_header_mismatch",
    "mcp_unsupported_version",
    "mcp_method_not_found",
    "mcp_invalid_params",
    "mcp_denied",
    "mcp_tool_blocked",
    "mcp_resume_unknown",
    "mcp_session_limit",
    "auth_missing",
    "jwt_missing",
    "jwt_too_large",
    "jwt_malformed",
    "jwt_algorithm_not_allowed",
    "jwt_unknown_kid",
    "jwt_key_mismatch",
    "jwt_bad_signature",
    "jwt_missing_exp",
    "jwt_missing_claim",
    "jwt_invalid_claim",
    "jwt_expired",
    "jwt_not_yet_valid",
    "jwt_issued_in_future",
    "jwt_wrong_issuer",
    "jwt_wrong_audience",
    "basic_auth_invalid",
    "api_key_invalid",
    "forbidden",
    "insufficient_scope",
    "rate_limited",
    "ext_authz_denied",
    "ext_authz_unavailable",
    "rate_limit_unavailable",
    "transform_invalid_value",
    "origin_refused",
    "other",
];

/// The `kind` labels of [`MCP_TOOL_FINDINGS_TOTAL`] (`mcp::poison::FindingKind` labels).
pub const TOOL_FINDING_KINDS: [&str; 6] =
    ["changed", "injection", "hidden_text", "encoded_blob", "shadowing", "name_collision"];

/// Restarts by target, process-wide like the stdio processes themselves; rare (a crash each), so
/// one lock is enough.
static STDIO_RESTARTS: Mutex<BTreeMap<String, [u64; STDIO_RESTART_RESULTS.len()]>> = Mutex::new(BTreeMap::new());

/// Count a crashed per-session process of stdio target `target` with a label of
/// [`STDIO_RESTART_RESULTS`].
pub fn count_stdio_restart(target: &str, result: &str) {
    let Some(i) = STDIO_RESTART_RESULTS.iter().position(|r| *r == result) else { return };
    let mut m = STDIO_RESTARTS.lock().unwrap_or_else(|p| p.into_inner());
    match m.get_mut(target) {
        Some(c) => c[i] += 1,
        None => {
            let mut c = [0; STDIO_RESTART_RESULTS.len()];
            c[i] = 1;
            m.insert(target.to_string(), c);
        }
    }
}

/// A latency histogram written by one shard.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    #[inline]
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

/// One shard's counters for one route. Status codes 100..=599 each have a slot.
pub struct RouteShardStats {
    status: Box<[AtomicU64]>,
    /// Request duration.
    pub duration: Histogram,
    /// Upstream duration.
    pub upstream: Histogram,
}

impl Default for RouteShardStats {
    fn default() -> Self {
        RouteShardStats {
            status: (0..500).map(|_| AtomicU64::new(0)).collect(),
            duration: Histogram::default(),
            upstream: Histogram::default(),
        }
    }
}

impl RouteShardStats {
    /// Count one response with `status`.
    #[inline]
    pub fn count_status(&self, status: u16) {
        let i = usize::from(status.clamp(100, 599) - 100);
        if let Some(c) = self.status.get(i) {
            c.fetch_add(1, Relaxed);
        }
    }
}

/// A route's counters, one set per shard so that no two cores write the same cache line.
pub struct RouteStats {
    /// The route label.
    pub name: Arc<str>,
    shards: Box<[RouteShardStats]>,
}

impl RouteStats {
    /// This shard's counters.
    #[inline]
    pub fn shard(&self, i: usize) -> &RouteShardStats {
        &self.shards[i.min(self.shards.len() - 1)]
    }
}

/// Process-wide counters for one shard.
pub struct ShardStats {
    /// Open client connections.
    pub active_connections: AtomicI64,
    /// Requests being served.
    pub active_requests: AtomicI64,
    /// Accepted client connections.
    pub connections_total: AtomicU64,
    /// Connections refused over the limit.
    pub connections_rejected: AtomicU64,
    /// Connections closed by the idle timeout.
    pub idle_closed: AtomicU64,
    /// Errors by index into [`ERROR_REASONS`].
    pub errors: [AtomicU64; ERROR_REASONS.len()],
    /// Retried attempts.
    pub retries: AtomicU64,
    /// Stale pooled upstream connections, by index into [`STALE_FOUND_BY`].
    pub stale_connections: [AtomicU64; STALE_FOUND_BY.len()],
    /// Completed TLS handshakes.
    pub tls_handshakes: AtomicU64,
    /// Failed TLS handshakes by index into [`crate::tls::HANDSHAKE_ERROR_REASONS`].
    pub tls_errors: [AtomicU64; crate::tls::HANDSHAKE_ERROR_REASONS.len()],
    /// Driver name, set once at start.
    pub driver: Mutex<&'static str>,
    /// Bytes in this shard's MCP replay buffers.
    pub mcp_replay_bytes: AtomicI64,
    /// Events evicted from them.
    pub mcp_replay_evicted: AtomicU64,
    /// Resume attempts answered by this shard, by index into [`RESUME_RESULTS`].
    pub mcp_resumes: [AtomicU64; RESUME_RESULTS.len()],
    /// Events replayed by this shard.
    pub mcp_replayed: AtomicU64,
    /// Catalog cache lookups, by kind and result (`mcp::catalog::KINDS` × `RESULTS`).
    pub mcp_catalog_lookups: [[AtomicU64; crate::mcp::catalog::RESULTS.len()]; crate::mcp::catalog::KINDS.len()],
    /// Catalog cache misses that shared a fetch in flight, by kind (`mcp::catalog::KINDS`).
    pub mcp_catalog_coalesced: [AtomicU64; crate::mcp::catalog::KINDS.len()],
    /// Bytes in this shard's catalog cache.
    pub mcp_catalog_bytes: AtomicI64,
    /// `subscriptions/listen` streams open on this shard.
    pub mcp_listen_streams: AtomicI64,
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats {
            active_connections: AtomicI64::new(0),
            active_requests: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            retries: AtomicU64::new(0),
            stale_connections: Default::default(),
            tls_handshakes: AtomicU64::new(0),
            tls_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            driver: Mutex::new(""),
            mcp_replay_bytes: AtomicI64::new(0),
            mcp_replay_evicted: AtomicU64::new(0),
            mcp_resumes: Default::default(),
            mcp_replayed: AtomicU64::new(0),
            mcp_catalog_lookups: Default::default(),
            mcp_catalog_coalesced: Default::default(),
            mcp_catalog_bytes: AtomicI64::new(0),
            mcp_listen_streams: AtomicI64::new(0),
        }
    }
}

impl ShardStats {
    /// Count an error by its reason label.
    #[inline]
    pub fn count_error(&self, reason: &str) {
        let i = ERROR_REASONS.iter().position(|r| *r == reason).unwrap_or(ERROR_REASONS.len() - 1);
        self.errors[i].fetch_add(1, Relaxed);
    }

    /// Count a failed TLS handshake by its reason label.
    #[inline]
    pub fn count_tls_error(&self, reason: &str) {
        let reasons = &crate::tls::HANDSHAKE_ERROR_REASONS;
        let i = reasons.iter().position(|r| *r == reason).unwrap_or(reasons.len() - 1);
        self.tls_errors[i].fetch_add(1, Relaxed);
    }
}

/// All metrics of the process. Routes are kept by name across reloads so counters never reset.
pub struct Registry {
    /// Per-shard process counters.
    pub shards: Box<[ShardStats]>,
    routes: Mutex<BTreeMap<Arc<str>, Arc<RouteStats>>>,
    reloads: [AtomicU64; 3],
    // rare (once per tool and finding), so one shared slot per kind is enough
    tool_findings: [AtomicU64; TOOL_FINDING_KINDS.len()],
    // rare (once per target and shard, and when a target changes era): a lock is cheap enough
    era_probes: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// Outcome of a reload, for [`CONFIG_RELOADS_TOTAL`].
#[derive(Clone, Copy, Debug)]
pub enum ReloadResult {
    /// Applied on every shard.
    Success = 0,
    /// Rejected by parsing or validation.
    Invalid = 1,
    /// A shard refused or did not answer the precommit.
    Aborted = 2,
}

impl Registry {
    /// A registry for `shards` shards.
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(Registry {
            shards: (0..shards.max(1)).map(|_| ShardStats::default()).collect(),
            routes: Mutex::new(BTreeMap::new()),
            reloads: Default::default(),
            tool_findings: Default::default(),
            era_probes: Mutex::new(BTreeMap::new()),
        })
    }

    /// The counters of route `name`, created on first use (config compile time, not per request).
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = routes.get(name) {
            return r.clone();
        }
        let name: Arc<str> = name.into();
        let stats = Arc::new(RouteStats {
            name: name.clone(),
            shards: (0..self.shards.len()).map(|_| RouteShardStats::default()).collect(),
        });
        routes.insert(name, stats.clone());
        stats
    }

    /// Count a reload.
    pub fn count_reload(&self, r: ReloadResult) {
        self.reloads[r as usize].fetch_add(1, Relaxed);
    }

    /// Count a tool-poisoning finding by its kind label.
    pub fn count_tool_finding(&self, kind: &str) {
        if let Some(i) = TOOL_FINDING_KINDS.iter().position(|k| *k == kind) {
            self.tool_findings[i].fetch_add(1, Relaxed);
        }
    }

    /// Count an era probe of MCP target `target` by what it found (see [`MCP_ERA_PROBES_TOTAL`]).
    pub fn count_era_probe(&self, target: &str, era: &'static str) {
        let mut m = self.era_probes.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((target.to_string(), era)).or_default() += 1;
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let routes: Vec<Arc<RouteStats>> =
            self.routes.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();

        header(&mut out, REQUESTS_TOTAL, "counter", "Requests answered, by route and status code.");
        for r in &routes {
            for code in 100..600u16 {
                let n: u64 = r.shards.iter().map(|s| s.status[usize::from(code - 100)].load(Relaxed)).sum();
                if n > 0 {
                    let _ = writeln!(out, "{REQUESTS_TOTAL}{{route=\"{}\",status=\"{code}\"}} {n}", esc(&r.name));
                }
            }
        }
        header(&mut out, REQUEST_DURATION, "histogram", "Request duration from head received to response end.");
        for r in &routes {
            histogram(&mut out, REQUEST_DURATION, &r.name, r.shards.iter().map(|s| &s.duration));
        }
        header(&mut out, UPSTREAM_DURATION, "histogram", "Upstream time to response head.");
        for r in &routes {
            histogram(&mut out, UPSTREAM_DURATION, &r.name, r.shards.iter().map(|s| &s.upstream));
        }
        header(&mut out, REQUEST_ERRORS_TOTAL, "counter", "Requests failed in the gateway, by reason.");
        for (i, reason) in ERROR_REASONS.iter().enumerate() {
            let n: u64 = self.shards.iter().map(|s| s.errors[i].load(Relaxed)).sum();
            if n > 0 {
                let _ = writeln!(out, "{REQUEST_ERRORS_TOTAL}{{reason=\"{reason}\"}} {n}");
            }
        }
        let retries: u64 = self.shards.iter().map(|s| s.retries.load(Relaxed)).sum();
        header(&mut out, UPSTREAM_RETRIES_TOTAL, "counter", "Upstream attempts retried.");
        let _ = writeln!(out, "{UPSTREAM_RETRIES_TOTAL} {retries}");
        header(
            &mut out,
            UPSTREAM_STALE_TOTAL,
            "counter",
            "Pooled upstream connections found closed, by what found them.",
        );
        for (i, by) in STALE_FOUND_BY.iter().enumerate() {
            let n: u64 = self.shards.iter().map(|s| s.stale_connections[i].load(Relaxed)).sum();
            let _ = writeln!(out, "{UPSTREAM_STALE_TOTAL}{{found_by=\"{by}\"}} {n}");
        }
        header(&mut out, ACTIVE_CONNECTIONS, "gauge", "Open client connections, by shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{ACTIVE_CONNECTIONS}{{shard=\"{i}\"}} {}", s.active_connections.load(Relaxed));
        }
        header(&mut out, ACTIVE_REQUESTS, "gauge", "Requests being served, by shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{ACTIVE_REQUESTS}{{shard=\"{i}\"}} {}", s.active_requests.load(Relaxed));
        }
        header(&mut out, CONNECTIONS_TOTAL, "counter", "Client connections accepted, by shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{CONNECTIONS_TOTAL}{{shard=\"{i}\"}} {}", s.connections_total.load(Relaxed));
        }
        header(&mut out, CONNECTIONS_REJECTED_TOTAL, "counter", "Connections refused over the per-shard limit.");
        for (i, s) in self.shards.iter().enumerate() {
            let n = s.connections_rejected.load(Relaxed);
            let _ = writeln!(out, "{CONNECTIONS_REJECTED_TOTAL}{{shard=\"{i}\"}} {n}");
        }
        header(&mut out, CONNECTIONS_IDLE_CLOSED_TOTAL, "counter", "Client connections closed idle, by shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let n = s.idle_closed.load(Relaxed);
            let _ = writeln!(out, "{CONNECTIONS_IDLE_CLOSED_TOTAL}{{shard=\"{i}\"}} {n}");
        }
        header(&mut out, CONFIG_RELOADS_TOTAL, "counter", "Configuration reloads, by result.");
        for (i, res) in ["success", "invalid", "aborted"].iter().enumerate() {
            let _ = writeln!(out, "{CONFIG_RELOADS_TOTAL}{{result=\"{res}\"}} {}", self.reloads[i].load(Relaxed));
        }
        header(&mut out, MCP_TOOL_FINDINGS_TOTAL, "counter", "Tool-poisoning findings on MCP tools, by kind.");
        for (i, kind) in TOOL_FINDING_KINDS.iter().enumerate() {
            let n = self.tool_findings[i].load(Relaxed);
            let _ = writeln!(out, "{MCP_TOOL_FINDINGS_TOTAL}{{kind=\"{kind}\"}} {n}");
        }
        header(&mut out, MCP_REPLAY_BUFFER_BYTES, "gauge", "Bytes held in MCP replay buffers, by shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{MCP_REPLAY_BUFFER_BYTES}{{shard=\"{i}\"}} {}", s.mcp_replay_bytes.load(Relaxed));
        }
        let evicted: u64 = self.shards.iter().map(|s| s.mcp_replay_evicted.load(Relaxed)).sum();
        header(
            &mut out,
            MCP_REPLAY_EVICTED_TOTAL,
            "counter",
            "Events dropped from MCP replay buffers at their limits.",
        );
        let _ = writeln!(out, "{MCP_REPLAY_EVICTED_TOTAL} {evicted}");
        header(&mut out, MCP_STREAM_RESUMES_TOTAL, "counter", "MCP stream resumptions (Last-Event-ID), by result.");
        for (i, res) in RESUME_RESULTS.iter().enumerate() {
            let n: u64 = self.shards.iter().map(|s| s.mcp_resumes[i].load(Relaxed)).sum();
            let _ = writeln!(out, "{MCP_STREAM_RESUMES_TOTAL}{{result=\"{res}\"}} {n}");
        }
        header(&mut out, MCP_ERA_PROBES_TOTAL, "counter", "Era probes of MCP targets, by target and result.");
        for ((target, era), n) in self.era_probes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "{MCP_ERA_PROBES_TOTAL}{{target=\"{}\",era=\"{era}\"}} {n}", esc(target));
        }
        let replayed: u64 = self.shards.iter().map(|s| s.mcp_replayed.load(Relaxed)).sum();
        header(
            &mut out,
            MCP_REPLAYED_EVENTS_TOTAL,
            "counter",
            "Events replayed to clients that resumed an MCP stream.",
        );
        let _ = writeln!(out, "{MCP_REPLAYED_EVENTS_TOTAL} {replayed}");
        header(&mut out, MCP_CATALOG_LOOKUPS_TOTAL, "counter", "MCP list pages looked up in the catalog cache.");
        for (k, kind) in crate::mcp::catalog::KINDS.iter().enumerate() {
            for (r, res) in crate::mcp::catalog::RESULTS.iter().enumerate() {
                let n: u64 = self.shards.iter().map(|s| s.mcp_catalog_lookups[k][r].load(Relaxed)).sum();
                let _ = writeln!(out, "{MCP_CATALOG_LOOKUPS_TOTAL}{{kind=\"{kind}\",result=\"{res}\"}} {n}");
            }
        }
        header(
            &mut out,
            MCP_CATALOG_COALESCED_TOTAL,
            "counter",
            "MCP catalog cache misses that shared a fetch already in flight.",
        );
        for (k, kind) in crate::mcp::catalog::KINDS.iter().enumerate() {
            let n: u64 = self.shards.iter().map(|s| s.mcp_catalog_coalesced[k].load(Relaxed)).sum();
            let _ = writeln!(out, "{MCP_CATALOG_COALESCED_TOTAL}{{kind=\"{kind}\"}} {n}");
        }
        header(&mut out, MCP_CATALOG_BYTES, "gauge", "Bytes of MCP list pages in the catalog cache, by shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{MCP_CATALOG_BYTES}{{shard=\"{i}\"}} {}", s.mcp_catalog_bytes.load(Relaxed));
        }
        header(&mut out, MCP_LISTEN_STREAMS, "gauge", "Open MCP subscriptions/listen streams, by shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{MCP_LISTEN_STREAMS}{{shard=\"{i}\"}} {}", s.mcp_listen_streams.load(Relaxed));
        }
        let ok: u64 = self.shards.iter().map(|s| s.tls_handshakes.load(Relaxed)).sum();
        header(&mut out, TLS_HANDSHAKES_TOTAL, "counter", "TLS handshakes completed by HTTPS listeners.");
        let _ = writeln!(out, "{TLS_HANDSHAKES_TOTAL} {ok}");
        header(&mut out, TLS_HANDSHAKE_ERRORS_TOTAL, "counter", "TLS handshakes failed on HTTPS listeners, by reason.");
        for (i, reason) in crate::tls::HANDSHAKE_ERROR_REASONS.iter().enumerate() {
            let n: u64 = self.shards.iter().map(|s| s.tls_errors[i].load(Relaxed)).sum();
            if n > 0 {
                let _ = writeln!(out, "{TLS_HANDSHAKE_ERRORS_TOTAL}{{reason=\"{reason}\"}} {n}");
            }
        }
        header(
            &mut out,
            MCP_STDIO_RESTARTS_TOTAL,
            "counter",
            "Crashed per-session stdio processes, by target and result.",
        );
        for (target, c) in STDIO_RESTARTS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for (i, res) in STDIO_RESTART_RESULTS.iter().enumerate() {
                let _ =
                    writeln!(out, "{MCP_STDIO_RESTARTS_TOTAL}{{target=\"{}\",result=\"{res}\"}} {}", esc(target), c[i]);
            }
        }
        header(&mut out, RUNTIME_DRIVER_INFO, "gauge", "The I/O driver of each shard.");
        for (i, s) in self.shards.iter().enumerate() {
            let d = *s.driver.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{RUNTIME_DRIVER_INFO}{{shard=\"{i}\",driver=\"{d}\"}} 1");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram<'a>(out: &mut String, name: &str, route: &str, hs: impl Iterator<Item = &'a Histogram> + Clone) {
    let count: u64 = hs.clone().map(|h| h.count.load(Relaxed)).sum();
    if count == 0 {
        return;
    }
    let route = esc(route);
    let mut cumulative = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        cumulative += hs.clone().map(|h| h.buckets[i].load(Relaxed)).sum::<u64>();
        let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{b}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}");
    let sum: u64 = hs.map(|h| h.sum_micros.load(Relaxed)).sum();
    let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", sum as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {count}");
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ERROR_REASONS` repeats the labels of `ProxyError::reason` and `HeadError::reason` (a fixed
    /// array keeps counting lock-free); an unlisted label would silently count as `other`.
    #[test]
    fn every_error_reason_has_its_own_slot() {
        use crate::error::{McpReject as M, ProxyError as P};
        use crate::http::codec::HeadError as H;
        let heads = [
            H::HeadTooLarge,
            H::TooManyHeaders,
            H::Malformed("x"),
            H::BareLf,
            H::ObsFold,
            H::ContentLengthWithTransferEncoding,
            H::InvalidContentLength,
            H::DuplicateContentLength,
            H::UnsupportedTransferEncoding,
            H::InvalidHeaderValue,
            H::UnsupportedVersion,
            H::MissingHost,
            H::DotSegment,
        ];
        let errors = heads
            .into_iter()
            .map(P::BadHead)
            .chain([
                P::BadBody("x"),
                P::BodyTooLarge(1),
                P::HeaderTimeout,
                P::NoRoute,
                P::NoBackend,
                P::UpstreamConnect(String::new()),
                P::UpstreamTls(String::new()),
                P::Misdirected,
                P::UpstreamTimeout,
                P::UpstreamClosed,
                P::UpstreamProtocol(String::new()),
                P::RequestTimeout,
                P::ClientClosed,
                P::Internal(String::new()),
                P::BadTransformValue(String::new()),
            ])
            .chain(
                [
                    M::NotAcceptable,
                    M::UnsupportedMediaType,
                    M::MethodNotAllowed("POST"),
                    M::SessionRequired("x"),
                    M::SessionUnknown,
                    M::Parse("x".into()),
                    M::InvalidRequest("x".into()),
                    M::HeaderMismatch("x".into()),
                    M::UnsupportedVersion("x".into()),
                    M::MethodNotFound("x".into()),
                    M::InvalidParams("x".into()),
                    M::ResumeUnknown,
                ]
                .map(|m| P::Mcp(m, None)),
            );
        for e in errors {
            assert!(ERROR_REASONS.contains(&e.reason()), "{} is missing from ERROR_REASONS", e.reason());
        }
    }

    #[test]
    fn tool_finding_kinds_match_the_finding_labels() {
        let labels: Vec<&str> = crate::mcp::poison::FindingKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, TOOL_FINDING_KINDS);
    }

    #[test]
    fn counts_survive_route_lookup_and_render() {
        let reg = Registry::new(2);
        let r = reg.route("3000/l/r");
        r.shard(0).count_status(200);
        r.shard(1).count_status(200);
        reg.route("3000/l/r").shard(1).count_status(404);
        r.shard(0).duration.observe(std::time::Duration::from_millis(3));
        reg.shards[1].count_error("no_route");
        let text = reg.render();
        assert!(text.contains("ringgate_requests_total{route=\"3000/l/r\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("status=\"404\"} 1"));
        assert!(text.contains("ringgate_request_duration_seconds_bucket{route=\"3000/l/r\",le=\"0.005\"} 1"));
        assert!(text.contains("ringgate_request_errors_total{reason=\"no_route\"} 1"));
    }
}
