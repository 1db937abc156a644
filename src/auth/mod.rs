//! Who is calling: the compiled authentication policies of a route and the per-request identity they yield.

pub mod apikey;
pub mod basic;
pub mod cel;
pub mod ext_authz;
pub mod jwks;
pub mod jwt;
pub mod plan;
pub mod sigv4;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::security::AuthMode;
use crate::error::{AuthReject, Forbidden, ProxyError};
use crate::http::codec::RequestHead;

/// The authentication policies of one route, compiled.
#[derive(Default)]
pub struct AuthPlan {
    /// `jwtAuth` or `mcpAuthentication`.
    pub jwt: Option<JwtPlan>,
    /// `apiKey`.
    pub api_key: Option<ApiKeyPlan>,
    /// `basicAuth`.
    pub basic: Option<BasicPlan>,
}

impl AuthPlan {
    /// The request headers that carried the credentials `id` was proven by. They are not sent
    /// upstream (as agentgateway), except the bearer JWT when `keep_jwt` (`backendAuth: passthrough`).
    pub fn consumed<'a>(&'a self, id: &Identity, keep_jwt: bool, mut f: impl FnMut(&'a str)) {
        if (id.jwt.is_some() && !keep_jwt) || id.basic.is_some() {
            f("authorization");
        }
        if let (Some(k), Some(_)) = (&self.api_key, &id.api_key) {
            f(&k.header);
        }
    }
}

/// Bearer JWTs from one or more issuers.
pub struct JwtPlan {
    /// What a request without a valid token gets.
    pub mode: AuthMode,
    /// Issuers; a token goes to the one whose `issuer` equals its (unverified) `iss`, else the first.
    pub providers: Vec<ProviderPlan>,
    /// Set for `mcpAuthentication`: the route is an OAuth protected resource.
    pub resource: Option<ProtectedResource>,
}

/// One issuer's rules and keys.
pub struct ProviderPlan {
    /// Claim rules.
    pub rules: jwt::Provider,
    /// Current keys.
    pub keys: Arc<jwks::KeyCell>,
    /// Unique per compiled provider: keeps cached tokens of one provider from answering for another.
    pub id: u32,
}

/// RFC 9728 protected-resource metadata of an MCP route.
pub struct ProtectedResource {
    /// `authorization_servers[0]`.
    pub issuer: String,
    /// The `resource` identifier, when configured; else derived from the request's host and path.
    pub resource: Option<String>,
    /// Further metadata fields, snake_case.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Scopes a token must carry (403 `insufficient_scope` otherwise).
    pub required_scopes: Vec<String>,
    /// The route's first path: the resource path of the bare well-known URL.
    pub default_path: String,
}

/// Static API keys.
pub struct ApiKeyPlan {
    /// The keys.
    pub keys: apikey::ApiKeys,
    /// What a request without a valid key gets.
    pub mode: AuthMode,
    /// Lower-case header name.
    pub header: String,
    /// Prefix before the key.
    pub prefix: String,
}

/// htpasswd users.
pub struct BasicPlan {
    /// The users.
    pub users: basic::Htpasswd,
    /// Realm of the challenge.
    pub realm: String,
    /// What a request without valid credentials gets.
    pub mode: AuthMode,
    /// Unique per compiled plan (keys the per-shard cache).
    pub id: usize,
}

/// The verified identity of a request, as rules and logs see it.
#[derive(Default, Clone)]
pub struct Identity {
    /// Claims of a verified JWT.
    pub jwt: Option<Rc<jwt::Claims>>,
    /// Holder of a valid API key.
    pub api_key: Option<Arc<apikey::KeyHolder>>,
    /// User of valid Basic credentials.
    pub basic: Option<Rc<str>>,
}

/// Per-shard caches of verified credentials.
pub struct ShardAuth {
    tokens: jwt::TokenCache,
    basic: basic::VerifiedCache,
}

impl Default for ShardAuth {
    fn default() -> Self {
        ShardAuth {
            tokens: jwt::TokenCache::new(jwt::DEFAULT_CACHE_CAPACITY, jwt::DEFAULT_CACHE_MAX_AGE_SECS),
            basic: basic::VerifiedCache::default(),
        }
    }
}

/// A unique id for a compiled provider or user list.
pub fn next_plan_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Where the request came in, for challenges and the metadata URL.
pub struct RequestSite<'a> {
    /// `Host`.
    pub host: &'a str,
    /// The matched path prefix (or path) of the route: the resource's path.
    pub resource_path: &'a str,
}

impl ProtectedResource {
    /// The resource identifier.
    pub fn resource_id(&self, site: &RequestSite) -> String {
        match &self.resource {
            Some(r) => r.clone(),
            None => format!("http://{}{}", site.host, site.resource_path),
        }
    }

    /// The RFC 9728 path-inserted metadata URL of the resource.
    pub fn metadata_url(&self, site: &RequestSite) -> String {
        let id = self.resource_id(site);
        let (scheme, rest) = id.split_once("://").unwrap_or(("http", id.as_str()));
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        format!("{scheme}://{authority}/.well-known/oauth-protected-resource{}", path.trim_end_matches('/'))
    }

    /// The metadata document.
    pub fn document(&self, site: &RequestSite) -> String {
        let mut doc = serde_json::Map::new();
        doc.insert("resource".into(), self.resource_id(site).into());
        doc.insert("authorization_servers".into(), serde_json::json!([self.issuer]));
        doc.insert("bearer_methods_supported".into(), serde_json::json!(["header"]));
        for (k, v) in &self.extra {
            doc.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(doc).to_string()
    }
}

/// A JSON-string-safe rendering for a challenge parameter.
fn quoted(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

impl JwtPlan {
    fn challenge(&self, site: &RequestSite, error: Option<(&str, &str)>) -> String {
        let mut c = String::from("Bearer realm=\"ringgate\"");
        if let Some((code, desc)) = error {
            c.push_str(&format!(", error=\"{code}\", error_description=\"{}\"", quoted(desc)));
        }
        if let Some(r) = &self.resource {
            c.push_str(&format!(", resource_metadata=\"{}\"", r.metadata_url(site)));
        }
        c
    }
}

/// The bearer token of an `Authorization` header.
fn bearer(head: &RequestHead) -> Option<&str> {
    let v = head.header_str("authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Run the route's authentication policies: the identity, or the 401 to send. `count` records
/// refused credentials that permissive mode lets through.
pub fn authenticate(
    cache: &RefCell<ShardAuth>,
    plan: &AuthPlan,
    head: &RequestHead,
    site: &RequestSite,
    count: &dyn Fn(&'static str),
) -> Result<Identity, ProxyError> {
    let mut id = Identity::default();
    if let Some(j) = &plan.jwt {
        id.jwt = check_jwt(cache, j, head, site, count)?;
    }
    if let Some(b) = &plan.basic {
        id.basic = check_basic(cache, b, head, count)?;
    }
    if let Some(k) = &plan.api_key {
        id.api_key = check_api_key(k, head, count)?;
    }
    Ok(id)
}

/// Apply `mode` to a refusal: strict/optional refuse, permissive counts and goes on.
fn refuse<T>(mode: AuthMode, reject: AuthReject, count: &dyn Fn(&'static str)) -> Result<Option<T>, ProxyError> {
    if mode == AuthMode::Permissive {
        count(reject.reason);
        return Ok(None);
    }
    Err(ProxyError::Unauthenticated(reject))
}

fn missing<T>(mode: AuthMode, what: &str, challenge: String) -> Result<Option<T>, ProxyError> {
    if mode == AuthMode::Strict {
        return Err(ProxyError::Unauthenticated(AuthReject {
            reason: "auth_missing",
            message: format!("authentication required: {what}"),
            challenge,
        }));
    }
    Ok(None)
}

fn check_jwt(
    cache: &RefCell<ShardAuth>,
    plan: &JwtPlan,
    head: &RequestHead,
    site: &RequestSite,
    count: &dyn Fn(&'static str),
) -> Result<Option<Rc<jwt::Claims>>, ProxyError> {
    let Some(token) = bearer(head) else {
        return missing(plan.mode, "send a bearer token in Authorization", plan.challenge(site, None));
    };
    let Some(first) = plan.providers.first() else { return Ok(None) };
    let provider = match plan.providers.len() {
        1 => first,
        _ => jwt::unverified_issuer(token, first.rules.max_token_bytes)
            .and_then(|iss| plan.providers.iter().find(|p| p.rules.issuer.as_deref() == Some(iss.as_str())))
            .unwrap_or(first),
    };
    let generation = (u64::from(provider.id) << 32) | (provider.keys.generation() & 0xffff_ffff);
    let verified = {
        let keys = provider.keys.keys();
        let mut c = cache.borrow_mut();
        jwt::verify_cached(&mut c.tokens, &provider.rules, &keys, generation, token, now_unix())
    };
    let claims = match verified {
        Ok(c) => c,
        Err(e) => {
            if e == jwt::JwtError::UnknownKid {
                provider.keys.refresh_soon();
            }
            let message = format!("invalid bearer token: {e}");
            let challenge = plan.challenge(site, Some(("invalid_token", &message)));
            return refuse(plan.mode, AuthReject { reason: e.reason(), message, challenge }, count);
        }
    };
    if let Some(r) = &plan.resource {
        let missing_scopes: Vec<&str> =
            r.required_scopes.iter().filter(|s| !has_scope(&claims, s)).map(String::as_str).collect();
        if !missing_scopes.is_empty() {
            let scope = r.required_scopes.join(" ");
            return Err(ProxyError::Forbidden(Forbidden {
                reason: "insufficient_scope",
                message: format!("the token lacks the scopes {}", missing_scopes.join(", ")),
                challenge: Some(format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
                    quoted(&scope),
                    r.metadata_url(site)
                )),
            }));
        }
    }
    Ok(Some(claims))
}

/// Whether `scope` (space-separated string) or `scp` (list or string) grants `want`.
fn has_scope(claims: &jwt::Claims, want: &str) -> bool {
    ["scope", "scp"].iter().any(|k| match claims.payload.get(*k) {
        Some(serde_json::Value::String(s)) => s.split_whitespace().any(|x| x == want),
        Some(serde_json::Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(want)),
        _ => false,
    })
}

fn check_basic(
    cache: &RefCell<ShardAuth>,
    plan: &BasicPlan,
    head: &RequestHead,
    count: &dyn Fn(&'static str),
) -> Result<Option<Rc<str>>, ProxyError> {
    let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", quoted(&plan.realm));
    let Some(value) =
        head.header_str("authorization").filter(|v| v.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")))
    else {
        return missing(plan.mode, "send Basic credentials in Authorization", challenge);
    };
    let user =
        basic::credentials(value).and_then(|(u, p)| cache.borrow_mut().basic.verify(&plan.users, plan.id, &u, &p));
    match user {
        Some(u) => Ok(Some(u)),
        None => refuse(
            plan.mode,
            AuthReject { reason: "basic_auth_invalid", message: "invalid user name or password".into(), challenge },
            count,
        ),
    }
}

fn check_api_key(
    plan: &ApiKeyPlan,
    head: &RequestHead,
    count: &dyn Fn(&'static str),
) -> Result<Option<Arc<apikey::KeyHolder>>, ProxyError> {
    let challenge = if plan.header == "authorization" {
        "Bearer realm=\"ringgate\"".to_string()
    } else {
        format!("ApiKey realm=\"ringgate\", header=\"{}\"", plan.header)
    };
    let presented = head.header_str(&plan.header).and_then(|v| {
        let p = &plan.prefix;
        v.get(..p.len()).filter(|s| s.eq_ignore_ascii_case(p)).and_then(|_| v.get(p.len()..)).map(str::trim)
    });
    let Some(key) = presented.filter(|k| !k.is_empty()) else {
        return missing(plan.mode, &format!("send an API key in {}", plan.header), challenge);
    };
    match plan.keys.lookup(key) {
        Some(h) => Ok(Some(h.clone())),
        None => refuse(
            plan.mode,
            AuthReject { reason: "api_key_invalid", message: "invalid API key".into(), challenge },
            count,
        ),
    }
}
