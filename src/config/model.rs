//! The configuration file's shape: agentgateway's standalone YAML (`config`, `binds → listeners → routes → backends`, `policies`, `mcp`), strict.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::mcp::{McpBackend, McpSettings, McpShorthand, SessionSettings};
use super::security::{ApiKeyAuth, BackendAuth, BasicAuth, ExtAuthz, JwtAuth, McpAuthentication};
use super::tls::{BackendPolicies, BackendTls, FrontendTls, ListenerTls};
pub use crate::auth::cel::RulesConfig as Rules;
use crate::ratelimit::global::GlobalRateLimit;
use crate::ratelimit::LocalRateLimit;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Static process settings, read at start (changes to most of them need a restart).
    #[serde(default)]
    pub config: ProcessConfig,
    /// Policies that apply to every listener: connection and HTTP limits, access log.
    #[serde(default)]
    pub frontend_policies: FrontendPolicies,
    /// Ports to listen on, each with its listeners and routes (agentgateway's older form;
    /// `gateways` is the newer one, and both may be used in one file).
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// Named gateways (agentgateway's newer form, replacing `binds`): a port each, with an
    /// implicit listener or named `listeners`, and gateway-level policies. A gateway and a bind
    /// never share a port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateways: BTreeMap<String, super::gateways::Gateway>,
    /// HTTP routes served on `gateways`, attached by name (`gateways: [name | name/listener]`,
    /// default the gateway `default`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<super::gateways::GatewayRoute>,
    /// agentgateway's TCP routes: ringgate has no TCP routing, so any entry is an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_routes: Vec<super::gateways::TcpRoute>,
    /// The MCP shorthand: federated MCP targets served at `/mcp` and `/sse`, on a port of its own
    /// or on `gateways`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpShorthand>,
    /// agentgateway's LLM shorthand: ringgate has no LLM backends, so it is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<super::gateways::Unsupported>,
    /// agentgateway's UI served on gateways: ringgate has no UI, so it is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<super::gateways::Unsupported>,
    /// Named backends that routes refer to with `backend: <name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<NamedBackend>,
    /// Policies attached to gateways (binds, listeners), routes or named backends from outside;
    /// inline `policies` of the same kind win over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<super::targeted::TargetedPolicy>,
}

/// A reusable backend (agentgateway's top-level `backends`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedBackend {
    /// The name routes use in `backend:`.
    pub name: String,
    /// Upstream `host:port` for plain HTTP proxying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// An MCP backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpBackend>,
    /// Policies of this backend (`backendTLS`), used by every route that names it unless the
    /// route's reference has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<BackendPolicies>,
}

/// Static process settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessConfig {
    /// Number of shards (one thread pinned per core): `auto` (CPUs in the affinity mask, capped by
    /// the cgroup CPU quota) or a number.
    #[serde(default, alias = "workerThreads")]
    pub workers: Workers,
    /// I/O driver: `auto` (io_uring, epoll when io_uring cannot start), `uring` or `legacy` (epoll).
    #[serde(default)]
    pub driver: Driver,
    /// Admin server address (health, readiness, metrics, config dump); `off` disables it.
    #[serde(default = "default_admin_addr")]
    pub admin_addr: String,
    /// How long draining on SIGTERM/SIGINT waits for in-flight requests before closing.
    #[serde(default = "default_drain", alias = "connectionTerminationDeadline")]
    pub drain_timeout: Duration,
    /// Logging of the gateway itself and of requests.
    #[serde(default)]
    pub logging: Logging,
    /// MCP session settings.
    #[serde(default)]
    pub mcp: McpSettings,
    /// Session id sealing.
    #[serde(default)]
    pub session: SessionSettings,
    /// How often upstream host names are resolved again; when one answers differently the
    /// config is reloaded with the new addresses. `0s` resolves only at load.
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh_interval: Duration,
}

fn default_admin_addr() -> String {
    "127.0.0.1:15000".into()
}
fn default_drain() -> Duration {
    Duration::from_secs(10)
}
fn default_dns_refresh() -> Duration {
    Duration::from_secs(30)
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            workers: Workers::default(),
            driver: Driver::default(),
            admin_addr: default_admin_addr(),
            drain_timeout: default_drain(),
            logging: Logging::default(),
            mcp: McpSettings::default(),
            session: SessionSettings::default(),
            dns_refresh_interval: default_dns_refresh(),
        }
    }
}

/// Shard count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Workers {
    /// `auto`: one shard per usable CPU.
    #[default]
    #[serde(with = "auto_keyword")]
    #[schemars(with = "auto_keyword::Auto")]
    Auto,
    /// A fixed number of shards.
    Count(u16),
}

mod auto_keyword {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Schema stand-in for the `auto` keyword: schemars reads `serde(with = "auto_keyword")`
    /// as a type path, which does not compile for a module.
    pub struct Auto;

    impl schemars::JsonSchema for Auto {
        fn schema_name() -> String {
            "Auto".into()
        }
        fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
            schemars::schema::SchemaObject {
                instance_type: Some(schemars::schema::InstanceType::String.into()),
                enum_values: Some(vec!["auto".into()]),
                ..Default::default()
            }
            .into()
        }
        fn is_referenceable() -> bool {
            false
        }
    }
    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("auto")
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!("expected `auto` or a number, got `{s}`")))
        }
    }
}

/// I/O driver choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring when it can start, epoll otherwise (logged and exported as a metric).
    #[default]
    Auto,
    /// io_uring only; fail to start without it.
    Uring,
    /// epoll only.
    Legacy,
}

/// Log settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// Access log line format.
    #[serde(default)]
    pub format: LogFormat,
    /// `info` logs every request; `warn` or `off` silences the access log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// CEL expression: a request is logged only when it is true (e.g. `response.code >= 400`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Fields added to or removed from every access log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<LogFields>,
}

/// Access log fields beyond the built-in ones.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogFields {
    /// `name: expression` (e.g. `user: jwt.sub`); left out of the line when the expression fails.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Built-in fields left out (e.g. `src.addr`, `http.host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Access log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` pairs.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Limits and behaviour of every HTTP listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FrontendPolicies {
    /// HTTP/1.1 server limits.
    #[serde(default)]
    pub http: HttpLimits,
    /// Access log switch (the format is `config.logging.format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// TLS handshake limits of `HTTPS` listeners.
    #[serde(default)]
    pub tls: FrontendTls,
}

/// Access log settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLog {
    /// Write one line per request (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// HTTP/1.1 server limits; each has the status it answers with when exceeded.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpLimits {
    /// Largest request head (request line and headers) in bytes; larger → 431.
    #[serde(default = "d_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in a request; more → 431.
    #[serde(default = "d_max_headers")]
    pub max_headers: usize,
    /// Largest request body in bytes; larger → 413.
    #[serde(default = "d_max_body_bytes", alias = "maxBufferSize")]
    pub max_body_bytes: u64,
    /// Time allowed to receive a whole request head once its first byte arrived; slower → 408.
    #[serde(default = "d_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// Keep-alive connections idle longer than this are closed.
    #[serde(default = "d_idle_timeout", alias = "http1IdleTimeout")]
    pub idle_timeout: Duration,
    /// Most open client connections per shard; further connections are closed at accept.
    #[serde(default = "d_max_connections")]
    pub max_connections_per_shard: usize,
}

fn d_max_header_bytes() -> usize {
    16 * 1024
}
fn d_max_headers() -> usize {
    100
}
fn d_max_body_bytes() -> u64 {
    16 * 1024 * 1024
}
fn d_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn d_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn d_max_connections() -> usize {
    10_000
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: d_max_header_bytes(),
            max_headers: d_max_headers(),
            max_body_bytes: d_max_body_bytes(),
            header_read_timeout: d_header_read_timeout(),
            idle_timeout: d_idle_timeout(),
            max_connections_per_shard: d_max_connections(),
        }
    }
}

/// One listening port.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bind {
    /// TCP port (0 picks a free one, another for each such bind; the bound port is logged as
    /// `listening bind=… address=…` and shown at `/listeners` on the admin server).
    pub port: u16,
    /// Address to bind (default 0.0.0.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Listeners on this port, chosen by the request's host.
    pub listeners: Vec<Listener>,
}

/// A set of routes served for one hostname (or all) on a port.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Name used in logs and metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host this listener serves: exact (`api.example.com`) or wildcard (`*.example.com`); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `HTTP` (default) or `HTTPS` (with `tls`). Every listener of a bind speaks the same protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ListenerProtocol>,
    /// The certificate of an `HTTPS` listener; listeners of one bind are chosen by SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Routes, tried in order; the first that matches serves the request.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// Listener protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1.
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 over TLS.
    #[serde(rename = "HTTPS")]
    Https,
}

/// A route: what it matches, what it does, where it sends.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// Name used in logs and metrics (default `route<N>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Hosts this route serves (exact or `*.` wildcard); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Any one of these must match (empty = match everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Traffic policies applied to requests on this route.
    #[serde(default)]
    pub policies: RoutePolicies,
    /// Where requests go; several are chosen by weight.
    #[serde(default)]
    pub backends: Vec<Backend>,
}

/// One match: every present condition must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// Path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Request method, e.g. `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<ValueMatch>,
}

/// A path condition.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PathMatch {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this, on a segment boundary (`/a` matches `/a` and `/a/b`, not `/ab`).
    PathPrefix(String),
    /// The whole path matches this regular expression.
    Regex(String),
}

/// A header or query parameter condition.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueMatch {
    /// Header (case-insensitive) or query parameter (case-sensitive) name.
    pub name: String,
    /// How the value must match.
    pub value: StringMatch,
}

/// How a string must match.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum StringMatch {
    /// Equal to this.
    Exact(String),
    /// Wholly matched by this regular expression.
    Regex(String),
}

/// Traffic policies on a route.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutePolicies {
    /// Headers changed on the request before it is sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// Headers changed on the response before it is sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    /// Rewrite the path or authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    /// Answer with a fixed response instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    /// Time limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Retries of failed upstream attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Cross-origin resource sharing, with preflight answered by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Bearer JWT authentication; claims become `jwt.*` in rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_auth: Option<JwtAuth>,
    /// OAuth 2.1 protected-resource authentication for MCP clients (RFC 9728 metadata, 401 challenges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_authentication: Option<McpAuthentication>,
    /// API key authentication; the key's metadata becomes `apiKey.*` in rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    /// HTTP Basic authentication from htpasswd; the user becomes `basicAuth.username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// An external HTTP service deciding which requests the route serves (after authentication,
    /// before `authorization` rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_authz: Option<ExtAuthz>,
    /// CEL rules deciding which requests the route serves (403 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Rules>,
    /// CEL rules deciding which MCP tools, prompts and resources a caller sees and may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_authorization: Option<Rules>,
    /// Token buckets limiting the route's request rate (429 when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_rate_limit: Vec<LocalRateLimit>,
    /// The credential sent to the backend: `passthrough` or a static `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_auth: Option<BackendAuth>,
    /// Token buckets in Redis, shared by every gateway replica (429 when empty); checked after `localRateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_rate_limit: Option<GlobalRateLimit>,
    /// Headers computed per request by CEL expressions (e.g. `x-user: jwt.sub`), after authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformations: Option<Transformations>,
    /// TLS towards this route's backends (a backend's own `policies.backendTLS` wins).
    #[serde(default, rename = "backendTLS", skip_serializing_if = "Option::is_none")]
    pub backend_tls: Option<BackendTls>,
}

/// `transformations`: header changes whose values are CEL expressions over the request and identity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transformations {
    /// Changes to the request sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderTransform>,
    /// Changes to the response sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderTransform>,
}

/// Header changes, applied in the order remove, set, add. An expression that fails (a missing claim)
/// leaves its header out; one whose value has a control character (CR, LF, NUL) refuses the request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderTransform {
    /// `name: expression`: appended (existing values kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// `name: expression`: replaces existing values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Header names removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Header changes, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    /// Headers appended (existing values kept).
    #[serde(default, skip_serializing_if = "HeaderList::is_empty")]
    pub add: HeaderList,
    /// Headers replaced (existing values dropped).
    #[serde(default, skip_serializing_if = "HeaderList::is_empty")]
    pub set: HeaderList,
    /// Header names removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Headers as a map (`name: value`) or a list of `{name, value}` (Gateway API style).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum HeaderList {
    /// `name: value` pairs.
    Map(BTreeMap<String, String>),
    /// `{name, value}` items.
    List(Vec<NameValue>),
}

impl Default for HeaderList {
    fn default() -> Self {
        HeaderList::List(Vec::new())
    }
}

impl HeaderList {
    /// True when no header is listed.
    pub fn is_empty(&self) -> bool {
        match self {
            HeaderList::Map(m) => m.is_empty(),
            HeaderList::List(l) => l.is_empty(),
        }
    }
    /// The pairs in order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            HeaderList::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            HeaderList::List(l) => l.iter().map(|nv| (nv.name.clone(), nv.value.clone())).collect(),
        }
    }
}

/// A header name and value.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// Redirect answer.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRedirect {
    /// New scheme (`http` or `https`); default keeps the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New authority; default keeps the request's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<AuthorityRewrite>,
    /// New path; default keeps the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// Status code: 301, 302 (default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Authority replacement.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum AuthorityRewrite {
    /// Replace host and port.
    Full(String),
    /// Replace the host, keep the port.
    Host(String),
    /// Replace the port, keep the host.
    Port(u16),
}

/// Path replacement.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PathRewrite {
    /// Replace the whole path.
    Full(String),
    /// Replace the part matched by the route's `pathPrefix`.
    Prefix(String),
}

/// Rewrite before forwarding.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    /// New authority (sent as `Host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<AuthorityRewrite>,
    /// New path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

/// Fixed response.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectResponse {
    /// Response body.
    #[serde(default)]
    pub body: String,
    /// Status code (default 200).
    #[serde(default = "d_200")]
    pub status: u16,
}

fn d_200() -> u16 {
    200
}

/// Time limits of a route.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeout {
    /// Whole request, including retries, until the response head is received; → 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// One upstream attempt until its response head is received; → 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request_timeout: Option<Duration>,
}

/// Retry of failed upstream attempts. Only requests whose body fits the replay buffer are retried.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Total attempts including the first (default 2).
    #[serde(default = "d_attempts")]
    pub attempts: u8,
    /// Wait between attempts (doubled after each), default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
    /// Response statuses that trigger a retry (default 503). Connect errors always do.
    #[serde(default = "d_codes")]
    pub codes: Vec<u16>,
}

fn d_attempts() -> u8 {
    2
}
fn d_codes() -> Vec<u16> {
    vec![503]
}

/// CORS settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cors {
    /// Send `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub allow_credentials: bool,
    /// Request headers allowed in preflight (`*` for any).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Methods allowed in preflight (`*` for any).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Origins allowed (`*` for any, or `https://*.example.com` wildcards).
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Response headers exposed to scripts.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a preflight answer may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

/// A backend of a route.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Upstream `host:port` (a DNS name or an IP) for HTTP proxying; `https://host[:port]`
    /// speaks TLS to it (as does a `backendTLS` policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// An MCP backend: targets federated behind this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpBackend>,
    /// The name of a top-level `backends` entry, instead of `host` or `mcp` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Share of requests relative to the other backends (default 1).
    #[serde(default = "d_weight")]
    pub weight: u32,
    /// Policies of this backend (`backendTLS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<BackendPolicies>,
}

fn d_weight() -> u32 {
    1
}
