//! Config model of the security policies: who the caller is (`jwtAuth`, `mcpAuthentication`, `apiKey`, `basicAuth`), what an external service decides (`extAuthz`), and what the upstream is shown (`backendAuth`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

use super::duration::Duration;

/// What happens to a request without valid credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthMode {
    /// Credentials are required and must be valid; otherwise 401.
    Strict,
    /// Credentials may be absent; when present they must be valid.
    #[default]
    Optional,
    /// Invalid credentials are ignored (logged and counted); the request goes on unauthenticated.
    Permissive,
}

/// Where a JWKS comes from; exactly one of `file`, `url` or `inline`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jwks {
    /// A file holding a JWKS (or one JWK), read at config load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// An `http://` or `https://` URL serving the JWKS, fetched at load (retried until it
    /// answers; tokens are refused meanwhile) and refreshed in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The JWKS itself, as a JSON string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// How often a `url` JWKS is fetched again (default 15m, as agentgateway). A token with an
    /// unknown `kid` also triggers a fetch, at most once per `minRefreshInterval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<Duration>,
    /// Least time between two fetches of a `url` JWKS (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_refresh_interval: Option<Duration>,
    /// TLS for an `https://` URL (custom CA, client certificate, SNI); default: the system's roots.
    #[serde(default, rename = "backendTLS", skip_serializing_if = "Option::is_none")]
    pub backend_tls: Option<super::tls::BackendTls>,
}

/// Which registered claims must be present.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtValidationOptions {
    /// Registered claims that must exist (`exp`, `nbf`, `aud`, `iss`, `sub`); default `[exp]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_claims: Option<Vec<String>>,
}

/// One token issuer: whose tokens are accepted and with which keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtProvider {
    /// Required `iss`; unset accepts any issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one must be in the token); empty accepts any audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Signing keys.
    pub jwks: Jwks,
    /// Accepted signature algorithms (default RS256/384/512, PS256/384/512, ES256, ES384, EdDSA). HMAC and
    /// `none` are never accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Claim presence rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_validation_options: Option<JwtValidationOptions>,
}

/// `jwtAuth`: bearer JWTs checked against one issuer (inline fields) or several (`providers`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuth {
    /// Behaviour without a valid token (default `optional`, as agentgateway).
    #[serde(default)]
    pub mode: AuthMode,
    /// Several issuers; a token is checked against the one whose `issuer` matches its `iss`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<JwtProvider>,
    /// Required `iss` of the single inline provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted audiences of the single inline provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Keys of the single inline provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Jwks>,
    /// Accepted algorithms of the single inline provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Claim presence rules of the single inline provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_validation_options: Option<JwtValidationOptions>,
}

impl JwtAuth {
    /// The providers, whether written inline or as a list.
    pub fn all_providers(&self) -> Vec<JwtProvider> {
        let mut v = self.providers.clone();
        if let Some(jwks) = &self.jwks {
            v.push(JwtProvider {
                issuer: self.issuer.clone(),
                audiences: self.audiences.clone(),
                jwks: jwks.clone(),
                algorithms: self.algorithms.clone(),
                jwt_validation_options: self.jwt_validation_options.clone(),
            });
        }
        v
    }
}

/// `mcpAuthentication`: the MCP route is an OAuth 2.1 protected resource (RFC 9728).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpAuthentication {
    /// The authorization server's issuer; also the required `iss`.
    pub issuer: String,
    /// Accepted audiences (the resource URL, usually).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Signing keys of the issuer.
    pub jwks: Jwks,
    /// Behaviour without a valid token (default `strict`: a protected resource answers 401).
    #[serde(default = "strict")]
    pub mode: AuthMode,
    /// Accepted algorithms (default as `jwtAuth`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Extra fields of the protected-resource metadata document, camelCase here and snake_case
    /// on the wire (`resource`, `scopesSupported`, `bearerMethodsSupported`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub resource_metadata: BTreeMap<String, serde_json::Value>,
    /// Claim presence rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_validation_options: Option<JwtValidationOptions>,
    /// Scopes every token must grant (`scope` or `scp` claim); otherwise 403 `insufficient_scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
}

fn strict() -> AuthMode {
    AuthMode::Strict
}

/// One API key and what rules may know about its holder.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The key in clear text (kept only as a hash in memory, redacted in the config dump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's SHA-256 as 64 hex digits, so the config need not hold the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Free-form metadata, visible to rules as `apiKey.<field>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// `apiKey`: static keys presented as `Authorization: Bearer <key>` (or another header).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Accepted keys.
    pub keys: Vec<ApiKeyEntry>,
    /// Behaviour without a valid key (default `strict`).
    #[serde(default = "strict")]
    pub mode: AuthMode,
    /// Header carrying the key (default `authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Prefix before the key in that header (default `Bearer ` for `authorization`, none otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// An htpasswd source: the file contents inline, or `{file: path}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Htpasswd {
    /// The file's contents.
    Inline(String),
    /// A path read at config load.
    File {
        /// Path of an htpasswd file.
        file: String,
    },
}

/// `basicAuth`: users from an htpasswd file (bcrypt `$2y$`/`$2b$` entries).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// The users.
    pub htpasswd: Htpasswd,
    /// Realm sent in `WWW-Authenticate` (default `ringgate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Behaviour without valid credentials (default `strict`).
    #[serde(default = "strict")]
    pub mode: AuthMode,
}

/// `extAuthz`: an external HTTP service decides whether each request is served. It runs after
/// authentication and before the `authorization` rules and rate limits (agentgateway's order).
/// A 2xx answer allows the request; any other answer is sent to the client as the denial (its
/// status, headers and up to 64 KiB of body). When the service cannot be reached or does not
/// answer within `timeout`, `failureMode` decides.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthz {
    /// The service as `host:port` (a DNS name or an IP, resolved at load).
    pub host: String,
    /// How to call it. Required: agentgateway's default is gRPC, which this build does not speak,
    /// so a config must say `protocol: {http: {}}` rather than silently change meaning.
    pub protocol: ExtAuthzProtocol,
    /// What happens when the service cannot decide: unreachable, too slow, or a broken answer
    /// (default `deny`, answered 403).
    #[serde(default)]
    pub failure_mode: ExtAuthzFailureMode,
    /// Client request headers sent to the service (default `[authorization]`, as agentgateway).
    /// The gateway always adds `x-forwarded-for`, `x-forwarded-host`, `x-forwarded-proto`,
    /// `x-forwarded-method` and `x-forwarded-uri`, which clients cannot set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_request_headers: Vec<String>,
    /// Send the request body too (buffered up to `maxRequestBytes`); without it no body is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body: Option<ExtAuthzBody>,
    /// Time allowed for the whole check: connect, answer and denial body (default 2s, as agentgateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// The protocol spoken to the authorization service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ExtAuthzProtocol {
    /// Plain HTTP: the check is the client's method and path (plus `pathPrefix`, or `path`) with
    /// the included headers.
    Http(ExtAuthzHttp),
}

/// The HTTP protocol's settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzHttp {
    /// A CEL expression giving the whole path (and query) of the check, e.g.
    /// `"/authz" + request.path`; default the client's own path and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A literal prefix put before the client's path and query (Envoy's `pathPrefix`); not with `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Headers of an allowing answer copied onto the request sent upstream, replacing the
    /// client's. The client's headers of these names are never forwarded, even when the answer
    /// lacks them, so the service owns them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_response_headers: Vec<String>,
}

/// Behaviour when the authorization service cannot decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ExtAuthzFailureMode {
    /// Serve the request anyway (counted as `ext_authz_unavailable`). Also spelled `failOpen`.
    #[serde(alias = "failOpen")]
    Allow,
    /// Refuse with 403. Also spelled `failClosed`.
    #[default]
    #[serde(alias = "failClosed")]
    Deny,
    /// Refuse with this status (e.g. 503, to tell clients to retry).
    DenyWithStatus(u16),
}

/// Which part of the request body goes to the authorization service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzBody {
    /// Largest body sent (default 8192); a larger body is refused with 413.
    #[serde(default = "d_max_request_bytes")]
    pub max_request_bytes: u32,
    /// Send the first `maxRequestBytes` of a larger body instead of refusing it (not supported
    /// by this build: must be false).
    #[serde(default)]
    pub allow_partial_message: bool,
    /// gRPC only (raw bytes instead of a string); accepted for agentgateway configs, no effect.
    #[serde(default)]
    pub pack_as_bytes: bool,
}

fn d_max_request_bytes() -> u32 {
    8192
}

/// A secret from the config. It is never printed: the config dump and `Debug` show `<redacted>`.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret written inline or read from a file at load.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretSource {
    /// The value itself (usually `$VAR`).
    Inline(Secret),
    /// A file holding it (surrounding whitespace trimmed).
    File {
        /// Path of the file.
        file: String,
    },
}

/// `backendAuth`: the credential the upstream sees. Applies to plain HTTP backends and to the
/// HTTP targets of an MCP backend (`key` only there: upstream MCP sessions are shared by callers).
///
/// Without it, a credential the gateway validated (`jwtAuth`/`mcpAuthentication` token, `basicAuth`
/// user, `apiKey`) is removed from the request sent upstream, as agentgateway does; other
/// `Authorization` headers are forwarded unchanged on plain HTTP routes (MCP targets never get
/// client headers).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum BackendAuth {
    /// Forward the client's validated bearer JWT in `Authorization` (other credentials stay removed).
    Passthrough(Passthrough),
    /// A static credential, replacing whatever the client sent in that header.
    Key(BackendKey),
    /// AWS Signature Version 4 (the request body is read whole to be hashed).
    Aws(AwsAuth),
}

/// `backendAuth.aws`: SigV4 signing. Unset credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), read at load.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsAuth {
    /// Access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    /// Region; default `AWS_REGION`, `AWS_DEFAULT_REGION`, or the one in a `*.<region>.amazonaws.com` host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Signing name of the service (`bedrock` for `bedrock-runtime` endpoints); default the first
    /// label of a `<service>.<region>.amazonaws.com` host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// `passthrough: {}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Passthrough {}

/// A static backend credential: `key: $SECRET` (sent as `Authorization: Bearer $SECRET`) or
/// `key: {value, location}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum BackendKey {
    /// The secret alone, sent as `Authorization: Bearer <secret>`.
    Value(Secret),
    /// The secret and where it goes.
    Full(BackendKeyFull),
}

/// A secret and where it goes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendKeyFull {
    /// The secret, inline or `{file: path}`.
    pub value: SecretSource,
    /// Where it is sent (default `Authorization` with prefix `Bearer `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<AuthLocation>,
}

/// Where a credential is sent.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum AuthLocation {
    /// In a request header.
    Header {
        /// Header name (e.g. `x-api-key`).
        name: String,
        /// Text before the secret (e.g. `Bearer `); none by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
}
