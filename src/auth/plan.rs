//! Compiling the security policies of a route: keys loaded, algorithms and claims checked, errors located.

use std::sync::Arc;
use std::time::Duration;

use super::{apikey, basic, jwks, jwt, ApiKeyPlan, AuthPlan, BasicPlan, JwtPlan, ProtectedResource, ProviderPlan};
use crate::config::model::RoutePolicies;
use crate::config::security::{Jwks, JwtValidationOptions};

/// A config error: the field path under the policies, and what is wrong.
pub type PlanError = (String, String);

/// The route's authentication plan, `None` when it has none.
pub fn compile(pol: &RoutePolicies) -> Result<Option<AuthPlan>, PlanError> {
    let mut plan = AuthPlan::default();
    match (&pol.jwt_auth, &pol.mcp_authentication) {
        (Some(_), Some(_)) => {
            return Err((
                "mcpAuthentication".into(),
                "a route takes `jwtAuth` or `mcpAuthentication`, not both (mcpAuthentication already checks the JWT)"
                    .into(),
            ))
        }
        (Some(j), None) => {
            let all = j.all_providers();
            if all.is_empty() {
                return Err(("jwtAuth".into(), "set `jwks` (and `issuer`, `audiences`) or `providers`".into()));
            }
            let providers = all
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let at =
                        if j.providers.is_empty() { "jwtAuth".to_string() } else { format!("jwtAuth.providers[{i}]") };
                    provider(
                        &at,
                        p.issuer.clone(),
                        &p.audiences,
                        &p.algorithms,
                        p.jwt_validation_options.as_ref(),
                        &p.jwks,
                    )
                })
                .collect::<Result<_, _>>()?;
            plan.jwt = Some(JwtPlan { mode: j.mode, providers, resource: None });
        }
        (None, Some(m)) => {
            let at = "mcpAuthentication";
            let p = provider(
                at,
                Some(m.issuer.clone()),
                &m.audiences,
                &m.algorithms,
                m.jwt_validation_options.as_ref(),
                &m.jwks,
            )?;
            let mut extra = serde_json::Map::new();
            let mut resource = None;
            for (k, v) in &m.resource_metadata {
                let k = snake_case(k);
                if k == "resource" {
                    let Some(r) = v.as_str().filter(|r| r.starts_with("http://") || r.starts_with("https://")) else {
                        return Err((format!("{at}.resourceMetadata.resource"), "must be an http(s) URL".into()));
                    };
                    resource = Some(r.trim_end_matches('/').to_string());
                } else {
                    extra.insert(k, v.clone());
                }
            }
            let resource = ProtectedResource {
                issuer: m.issuer.clone(),
                resource,
                extra,
                required_scopes: m.required_scopes.clone(),
                default_path: String::new(),
            };
            plan.jwt = Some(JwtPlan { mode: m.mode, providers: vec![p], resource: Some(resource) });
        }
        (None, None) => {}
    }
    if let Some(k) = &pol.api_key {
        let keys = apikey::ApiKeys::new(&k.keys).map_err(|e| ("apiKey".to_string(), e))?;
        let header = k.header.as_deref().unwrap_or("authorization").to_ascii_lowercase();
        let prefix =
            k.prefix
                .clone()
                .unwrap_or_else(|| if header == "authorization" { "Bearer ".into() } else { String::new() });
        plan.api_key = Some(ApiKeyPlan { keys, mode: k.mode, header, prefix });
    }
    if let Some(b) = &pol.basic_auth {
        let text = match &b.htpasswd {
            crate::config::security::Htpasswd::Inline(t) => t.clone(),
            crate::config::security::Htpasswd::File { file } => std::fs::read_to_string(file)
                .map_err(|e| ("basicAuth.htpasswd.file".to_string(), format!("cannot read {file}: {e}")))?,
        };
        let users = basic::Htpasswd::parse(&text).map_err(|e| ("basicAuth.htpasswd".to_string(), e))?;
        let realm = b.realm.clone().unwrap_or_else(|| "ringgate".into());
        plan.basic = Some(BasicPlan { users, realm, mode: b.mode, id: super::next_plan_id() as usize });
    }
    let empty = plan.jwt.is_none() && plan.api_key.is_none() && plan.basic.is_none();
    Ok((!empty).then_some(plan))
}

fn provider(
    at: &str,
    issuer: Option<String>,
    audiences: &[String],
    algorithms: &[String],
    options: Option<&JwtValidationOptions>,
    source: &Jwks,
) -> Result<ProviderPlan, PlanError> {
    let algorithms = if algorithms.is_empty() {
        jwt::Algorithm::DEFAULT.to_vec()
    } else {
        jwt::Algorithm::parse_list(algorithms).map_err(|e| (format!("{at}.algorithms"), e))?
    };
    let required = match options.and_then(|o| o.required_claims.as_ref()) {
        Some(names) => {
            jwt::RequiredClaims::parse(names).map_err(|e| (format!("{at}.jwtValidationOptions.requiredClaims"), e))?
        }
        None => jwt::RequiredClaims::default(),
    };
    let rules = jwt::Provider { issuer, audiences: audiences.to_vec(), algorithms, required, ..Default::default() };
    let keys = key_cell(&format!("{at}.jwks"), source)?;
    Ok(ProviderPlan { rules, keys, id: super::next_plan_id() })
}

fn key_cell(at: &str, j: &Jwks) -> Result<Arc<jwks::KeyCell>, PlanError> {
    let err = |e: String| (at.to_string(), e);
    match (&j.file, &j.url, &j.inline) {
        (Some(f), None, None) => {
            let doc = std::fs::read(f).map_err(|e| err(format!("cannot read {f}: {e}")))?;
            jwks::fixed(format!("file:{f}"), &doc).map_err(|e| err(format!("{f}: {e}")))
        }
        (None, Some(u), None) => {
            let every = j.refresh_interval.map_or(Duration::from_secs(15 * 60), |d| d.get());
            let min_gap = j.min_refresh_interval.map_or(Duration::from_secs(10), |d| d.get());
            jwks::remote(u, every, min_gap, j.backend_tls.as_ref()).map_err(err)
        }
        (None, None, Some(doc)) => jwks::fixed("inline".into(), doc.as_bytes()).map_err(err),
        _ => Err(err("set exactly one of `file`, `url` and `inline`".into())),
    }
}

/// `scopesSupported` → `scopes_supported`.
fn snake_case(k: &str) -> String {
    let mut out = String::with_capacity(k.len() + 4);
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_become_snake_case() {
        assert_eq!(snake_case("scopesSupported"), "scopes_supported");
        assert_eq!(snake_case("resource"), "resource");
        assert_eq!(snake_case("bearer_methods_supported"), "bearer_methods_supported");
    }
}
