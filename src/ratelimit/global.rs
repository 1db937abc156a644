//! `globalRateLimit`: config, and token buckets shared by every gateway replica through Redis.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration as StdDuration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::redis::{GlobalLimit, Mode};
use super::redis_client::{Conn, Unavailable};
use super::Verdict;
use crate::auth::cel::Program;
use crate::config::duration::Duration;

/// How long a check waits for Redis when `timeout` is not set.
pub const DEFAULT_TIMEOUT: StdDuration = StdDuration::from_millis(50);
/// The start of every key when `prefix` is not set.
pub const DEFAULT_PREFIX: &str = "ringgate:rl:";
/// Longest caller key kept as is in a Redis key name; longer ones are replaced by their SHA-256.
const MAX_RAW_KEY: usize = 128;

/// What a request gets when Redis cannot answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Serve it, unlimited, and count `rate_limit_unavailable` (agentgateway's default for its remote limit).
    #[default]
    FailOpen,
    /// Answer 503 (counted as `rate_limit_unavailable` too).
    FailClosed,
}

/// ringgate extension `globalRateLimit`: token buckets kept in Redis, so every gateway replica using the same
/// Redis counts against the same buckets. (agentgateway's `remoteRateLimit` asks Envoy's rate-limit gRPC
/// service instead; ringgate does not speak it.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalRateLimit {
    /// The Redis server as `host:port` (resolved when the config is loaded; no TLS, AUTH or cluster).
    pub redis: String,
    /// The buckets; a request takes one token from each, or from none when one is empty.
    pub limits: Vec<GlobalBucket>,
    /// What happens when Redis cannot answer within `timeout` (default `failOpen`).
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// How long a request may wait for Redis (default `50ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Start of the Redis key names (default `ringgate:rl:`), to share one Redis with other users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// One global bucket: `maxTokens`, refilled by `tokensPerFill` at every whole `fillInterval` of Redis's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalBucket {
    /// Bucket capacity: the initial level and the largest burst.
    pub max_tokens: u64,
    /// Tokens added at each fill, never beyond `maxTokens`.
    pub tokens_per_fill: u64,
    /// Time between fills, e.g. `1s` or `100ms`.
    pub fill_interval: Duration,
    /// An expression (e.g. `jwt.sub` or `request.headers["x-user"]`) whose value picks a bucket per caller;
    /// callers it cannot name share one bucket. Without it, one bucket for the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A route's compiled `globalRateLimit`.
pub struct GlobalPlan {
    /// The resolved Redis address.
    pub addr: SocketAddr,
    /// Whether requests pass while Redis cannot answer.
    pub fail_open: bool,
    /// How long a check may wait for Redis.
    pub timeout: StdDuration,
    /// The buckets, in config order.
    pub buckets: Vec<Bucket>,
}

/// One compiled bucket.
pub struct Bucket {
    /// Its shape, in the script's units.
    pub shape: GlobalLimit,
    /// The Redis key name, or its start when keyed per caller.
    pub name: String,
    /// The per-caller key expression.
    pub key: Option<Program>,
}

impl GlobalPlan {
    /// Checks and compiles `spec` for the route named `route`; errors name the field (`limits[1].key: …`).
    pub fn new(spec: &GlobalRateLimit, route: &str, addr: SocketAddr) -> Result<Self, (String, String)> {
        if spec.limits.is_empty() {
            return Err(("limits".into(), "needs at least one bucket".into()));
        }
        let timeout = spec.timeout.map_or(DEFAULT_TIMEOUT, Duration::get);
        if timeout.is_zero() {
            return Err(("timeout".into(), "must be more than 0".into()));
        }
        let prefix = spec.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
        let mut buckets = Vec::with_capacity(spec.limits.len());
        for (i, b) in spec.limits.iter().enumerate() {
            let at = |field: &str| format!("limits[{i}].{field}");
            let shape = GlobalLimit::new(b.max_tokens, b.tokens_per_fill, b.fill_interval.get()).ok_or_else(|| {
                (
                    at("maxTokens"),
                    "needs 1 <= tokensPerFill <= maxTokens < 2^53 and fillInterval between 1ms and 100 years".into(),
                )
            })?;
            let key = b.key.as_deref().map(Program::compile).transpose().map_err(|e| (at("key"), e))?;
            // Route, index and shape name the bucket: replicas with the same config share it, and a changed
            // shape starts a fresh bucket instead of reading state kept in other units.
            let name = format!(
                "{prefix}{route}:{i}:{}:{}:{}",
                shape.max_tokens, shape.tokens_per_fill, shape.fill_interval_us
            );
            buckets.push(Bucket { shape, name, key });
        }
        Ok(GlobalPlan { addr, fail_open: spec.failure_mode == FailureMode::FailOpen, timeout, buckets })
    }

    /// The Redis key of bucket `i` for a caller whose key expression gave `value` (`None` without `key`).
    pub fn redis_key(&self, i: usize, value: Option<&str>) -> Vec<u8> {
        let mut k = self.buckets[i].name.as_bytes().to_vec();
        if let Some(v) = value {
            k.push(b':');
            if v.len() <= MAX_RAW_KEY {
                k.extend_from_slice(v.as_bytes());
            } else {
                // Long values (a header can be kilobytes) become a fixed-size name, the same in every replica.
                k.extend_from_slice(b"sha256:");
                k.extend_from_slice(crate::digest::sha256_hex(v.as_bytes()).as_bytes());
            }
        }
        k
    }

    /// Takes one token from every bucket (`keys[i]` from [`GlobalPlan::redis_key`]), all calls pipelined on
    /// one connection, or none: on a denial the buckets that granted get their token back. Returns the
    /// binding verdict: the denial, else the one with the fewest tokens left.
    pub async fn take(&self, conn: &Rc<Conn>, keys: &[Vec<u8>]) -> Result<Verdict, Unavailable> {
        let deadline = Instant::now() + self.timeout;
        let calls = self
            .buckets
            .iter()
            .zip(keys)
            .map(|(b, k)| conn.bucket(k, b.shape, 1, Mode::Take))
            .collect::<Result<Vec<_>, _>>()?;
        let mut verdicts = Vec::with_capacity(calls.len());
        for c in calls {
            verdicts.push(c.verdict(deadline).await?);
        }
        if let Some(denied) = verdicts.iter().find(|v| !v.allowed) {
            for ((b, k), v) in self.buckets.iter().zip(keys).zip(&verdicts) {
                if v.allowed {
                    // Not awaited: a refund lost with the connection only makes the limit stricter.
                    let _ = conn.bucket(k, b.shape, -1, Mode::Amend);
                }
            }
            return Ok(*denied);
        }
        let mut binding = verdicts[0];
        for v in &verdicts[1..] {
            if v.tighter_than(&binding) {
                binding = *v;
            }
        }
        Ok(binding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<GlobalRateLimit, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:6379".parse().unwrap()
    }

    #[test]
    fn config_shape_and_defaults() {
        let g =
            parse("redis: 127.0.0.1:6379\nlimits:\n- { maxTokens: 10, tokensPerFill: 2, fillInterval: 1s }\n").unwrap();
        assert_eq!((g.failure_mode, g.timeout, g.prefix.as_deref()), (FailureMode::FailOpen, None, None));
        let plan = GlobalPlan::new(&g, "80/l/r", addr()).unwrap();
        assert!(plan.fail_open);
        assert_eq!(plan.timeout, DEFAULT_TIMEOUT);
        assert_eq!(plan.redis_key(0, None), b"ringgate:rl:80/l/r:0:10:2:1000000");

        let g = parse(
            "redis: r:1\nfailureMode: failClosed\ntimeout: 20ms\nprefix: 'app:'\nlimits:\n- { maxTokens: 1, tokensPerFill: 1, fillInterval: 1m, key: 'jwt.sub' }\n",
        )
        .unwrap();
        let plan = GlobalPlan::new(&g, "r", addr()).unwrap();
        assert!(!plan.fail_open);
        assert_eq!(plan.timeout, StdDuration::from_millis(20));
        assert_eq!(plan.redis_key(0, Some("alice")), b"app:r:0:1:1:60000000:alice");
        assert_eq!(plan.redis_key(0, Some("")), b"app:r:0:1:1:60000000:", "unnamed callers share one bucket");
        let long = "x".repeat(MAX_RAW_KEY + 1);
        let k = String::from_utf8(plan.redis_key(0, Some(&long))).unwrap();
        assert_eq!(k.strip_prefix("app:r:0:1:1:60000000:sha256:").map(str::len), Some(64), "{k}");

        for bad in [
            "redis: r:1\nlimits: []\nburst: 1\n",
            "redis: r:1\nlimits:\n- { maxTokens: 1, tokensPerFill: 1, fillInterval: 1s, type: tokens }\n",
            "redis: r:1\nlimits:\n- { maxTokens: 1, fillInterval: 1s }\n",
            "redis: r:1\nfailureMode: failSometimes\nlimits: []\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_plans_name_the_field() {
        let spec = |limits: &str, extra: &str| parse(&format!("redis: r:1\n{extra}limits: {limits}\n")).unwrap();
        let err = |s: GlobalRateLimit| GlobalPlan::new(&s, "r", addr()).err().unwrap();
        assert_eq!(err(spec("[]", "")).0, "limits");
        assert_eq!(err(spec("[{maxTokens: 1, tokensPerFill: 1, fillInterval: 1s}]", "timeout: 0ms\n")).0, "timeout");
        let e = err(spec(
            "[{maxTokens: 1, tokensPerFill: 1, fillInterval: 1s}, {maxTokens: 1, tokensPerFill: 2, fillInterval: 1s}]",
            "",
        ));
        assert_eq!(e.0, "limits[1].maxTokens");
        let e = err(spec("[{maxTokens: 1, tokensPerFill: 1, fillInterval: 1s, key: 'nope.x'}]", ""));
        assert_eq!(e.0, "limits[0].key");
    }
}
