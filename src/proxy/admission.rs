//! Request admission, in agentgateway's order: authentication, (`extAuthz`, async, in `conn`), `authorization` rules, local then global rate limits.

use std::net::SocketAddr;
use std::time::Instant;

use super::route::Selected;
use super::shard::ShardCtx;
use crate::auth::cel::{self, Decision};
use crate::auth::{self, Identity, RequestSite};
use crate::config::compile::RateLimitPlan;
use crate::error::{Forbidden, ProxyError, RateLimited};
use crate::http::codec::RequestHead;
use crate::ratelimit::Verdict;

/// RFC 9728's well-known prefix.
pub const PROTECTED_RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";

impl cel::Headers for RequestHead {
    fn get(&self, name: &str) -> Option<&str> {
        self.header_str(name)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        for (n, v) in self.headers() {
            if let Ok(v) = std::str::from_utf8(v) {
                f(n, v);
            }
        }
    }
}

/// What admission decided for a request that may proceed.
pub enum Admitted {
    /// Serve it, as this caller.
    Serve(Identity),
    /// Answer with the protected-resource metadata document (JSON).
    Metadata(String),
}

/// The rule context of an identity alone.
pub fn identity_ctx(id: &Identity) -> cel::Ctx<'_> {
    cel::Ctx {
        jwt: id.jwt.as_deref().map(|c| &c.payload),
        api_key: id.api_key.as_deref().map(|k| cel::ApiKey { key: &k.id, metadata: &k.metadata }),
        basic_auth: id.basic.as_deref(),
        ..Default::default()
    }
}

/// The rule context of a request: identity, request attributes and peer.
pub fn rule_ctx<'a>(id: &'a Identity, head: &'a RequestHead, peer: SocketAddr) -> cel::Ctx<'a> {
    cel::Ctx {
        request: Some(cel::Request {
            method: head.method(),
            path: head.path(),
            host: head.host().unwrap_or(""),
            headers: head,
        }),
        source: Some(peer),
        ..identity_ctx(id)
    }
}

/// Authenticate a request for its route: who the caller is, or why not (or the route's
/// protected-resource metadata, which needs no credentials).
pub fn authenticate(ctx: &ShardCtx, sel: &Selected, head: &RequestHead) -> Result<Admitted, ProxyError> {
    let Some(plan) = &sel.route.policies.auth else { return Ok(Admitted::Serve(Identity::default())) };
    let resource = plan.jwt.as_ref().and_then(|j| j.resource.as_ref());
    let host = head.host().unwrap_or("");
    if let (Some(r), Some(rest)) = (resource, head.path().strip_prefix(PROTECTED_RESOURCE_PATH)) {
        // path-inserted (`…/mcp`) or root; the metadata names the resource either way
        let path = if rest.is_empty() { r.default_path.as_str() } else { rest };
        return Ok(Admitted::Metadata(r.document(&RequestSite { host, resource_path: path })));
    }
    let path = sel.prefix.or(resource.map(|r| r.default_path.as_str())).unwrap_or(head.path());
    let site = RequestSite { host, resource_path: path };
    let shard = &ctx.registry.shards[ctx.index];
    auth::authenticate(&ctx.auth, plan, head, &site, &|r| shard.count_error(r)).map(Admitted::Serve)
}

/// After authentication (and `extAuthz`): the route's `authorization` rules, then its rate limits.
pub fn authorize(sel: &Selected, id: &Identity, head: &RequestHead, peer: SocketAddr) -> Result<(), ProxyError> {
    let pol = &sel.route.policies;
    if let Some(rules) = &pol.authorization {
        if let Decision::Deny { rule } = rules.check(&rule_ctx(id, head, peer)) {
            let which = rule.map_or("no allow rule matches".to_string(), |i| format!("refused by rule {i}"));
            return Err(ProxyError::Forbidden(Forbidden {
                reason: "forbidden",
                message: format!("the route's authorization rules refuse this request ({which})"),
                challenge: None,
            }));
        }
    }
    if let Some(rl) = &pol.rate_limit {
        check_rate(rl, id, head, peer)?;
    }
    Ok(())
}

/// Take a token from every limit of the route; 429 with the limit's headers when one is empty.
fn check_rate(rl: &RateLimitPlan, id: &Identity, head: &RequestHead, peer: SocketAddr) -> Result<(), ProxyError> {
    let keyed = rl.keys.iter().any(Option::is_some);
    let cx = keyed.then(|| rule_ctx(id, head, peer));
    let key_hash = |i: usize| match (rl.keys.get(i).and_then(Option::as_ref), &cx) {
        (Some(p), Some(cx)) => {
            // callers the key expression cannot name share one bucket
            let k = p.eval_string(cx).unwrap_or_default();
            rl.limits.limits()[i].hash_key(&k)
        }
        _ => 0,
    };
    match rl.limits.check_request(Instant::now(), key_hash) {
        Some(v) if !v.allowed => Err(rate_limited(&v)),
        _ => Ok(()),
    }
}

fn rate_limited(v: &Verdict) -> ProxyError {
    let mut h = Vec::with_capacity(128);
    crate::ratelimit::write_headers(v, &mut h);
    ProxyError::RateLimited(RateLimited { headers: String::from_utf8_lossy(&h).into_owned() })
}

/// The route's `globalRateLimit`, after [`admit`]: a token from every bucket in Redis, else 429. When Redis
/// cannot answer in time the failure mode decides: `failOpen` serves the request, `failClosed` answers 503;
/// both count `rate_limit_unavailable`.
pub async fn admit_global(
    ctx: &ShardCtx,
    sel: &Selected<'_>,
    id: &Identity,
    head: &RequestHead,
    peer: SocketAddr,
) -> Result<(), ProxyError> {
    let Some(g) = &sel.route.policies.global_rate_limit else { return Ok(()) };
    let keys: Vec<Vec<u8>> = {
        let cx = g.buckets.iter().any(|b| b.key.is_some()).then(|| rule_ctx(id, head, peer));
        let value = |p: &crate::auth::cel::Program| cx.as_ref().and_then(|cx| p.eval_string(cx)).unwrap_or_default();
        g.buckets.iter().enumerate().map(|(i, b)| g.redis_key(i, b.key.as_ref().map(value).as_deref())).collect()
    };
    // boxed: only routes with a global limit pay for the Redis exchange's state, which would
    // otherwise size every connection's task (an open event stream's for its whole life)
    match Box::pin(g.take(&ctx.redis.conn(g.addr), &keys)).await {
        Ok(v) if !v.allowed => Err(rate_limited(&v)),
        Ok(_) => Ok(()),
        Err(_) if g.fail_open => {
            ctx.registry.shards[ctx.index].count_error("rate_limit_unavailable");
            Ok(())
        }
        Err(e) => Err(ProxyError::RateLimitUnavailable(e.to_string())),
    }
}
