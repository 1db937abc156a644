//! Config model of the security policies: who the caller is (`jwtAuth`, `mcpAuthentication`, `apiKey`, `basicAuth`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// An `http://` URL serving the JWKS, fetched at load (retried until it answers; tokens are
    /// refused meanwhile) and refreshed in the background.
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
