//! TLS settings as the file writes them: a listener's certificate (`tls`), handshake limits (`frontendPolicies.tls`) and `backendTLS`, in agentgateway's field names.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// The certificate an `HTTPS` listener serves, and whom it accepts as clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM file with the certificate chain, leaf first.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// PEM file of CA certificates: clients must present a certificate signed by one of them (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// With `root`: `required` (default; a client without a certificate is refused) or
    /// `optional` (a certificate, if presented, must verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// Lowest TLS version accepted: `1.2` (default) or `1.3`.
    #[serde(default, rename = "minTLSVersion", alias = "minTlsVersion", skip_serializing_if = "Option::is_none")]
    pub min_tls_version: Option<TlsVersion>,
    /// Highest TLS version accepted: `1.2` or `1.3` (default).
    #[serde(default, rename = "maxTLSVersion", alias = "maxTlsVersion", skip_serializing_if = "Option::is_none")]
    pub max_tls_version: Option<TlsVersion>,
}

/// Whether a client certificate is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientAuth {
    /// Refuse clients without a valid certificate.
    Required,
    /// Accept clients without a certificate; one that is presented must verify.
    Optional,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2", alias = "TLSv1_2", alias = "TLS_V1_2")]
    V1_2,
    /// TLS 1.3.
    #[serde(rename = "1.3", alias = "TLSv1_3", alias = "TLS_V1_3")]
    V1_3,
}

/// TLS handshake settings of every `HTTPS` listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FrontendTls {
    /// Time allowed from accept to the end of the handshake; slower clients are closed and
    /// counted (`ringgate_tls_handshake_errors_total{reason="timeout"}`).
    #[serde(default = "d_handshake_timeout")]
    pub handshake_timeout: Duration,
    /// ALPN protocols offered to clients. ringgate serves HTTP/1.1 only, so this may list only
    /// `http/1.1` (the default); a client that offers ALPN without it is refused.
    #[serde(default = "d_alpn")]
    pub alpn: Vec<String>,
}

fn d_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

fn d_alpn() -> Vec<String> {
    vec!["http/1.1".into()]
}

impl Default for FrontendTls {
    fn default() -> Self {
        FrontendTls { handshake_timeout: d_handshake_timeout(), alpn: d_alpn() }
    }
}

/// TLS towards a backend (agentgateway's `backendTLS`). Without `root`, the system's trust store is used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTls {
    /// PEM file with a client certificate chain to present (with `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM file with the client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// PEM file of CA certificates trusted for the backend's certificate (instead of the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Name sent as SNI and checked against the certificate; default: the backend's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Accept any certificate (no chain or name check). Only for testing: anyone on the path
    /// can read and change the traffic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Check the chain but not the name in the certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_host: bool,
    /// ALPN protocols offered (default `http/1.1`; only HTTP/1.1 is spoken to backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<Vec<String>>,
}

/// Policies of one backend or MCP target.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPolicies {
    /// TLS towards this backend; overrides the route's `backendTLS`.
    #[serde(default, rename = "backendTLS", skip_serializing_if = "Option::is_none")]
    pub backend_tls: Option<BackendTls>,
}
