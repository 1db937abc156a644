//! `localRateLimit`: config, an exact lock-free token bucket shared by every shard, keyed bucket tables, headers.

// How a bucket is one word. agentgateway's bucket holds `maxTokens`, starts full and gains `tokensPerFill`
// at each whole `fillInterval` since it was built, capped at `maxTokens`. Counting time in ticks of
// `fillInterval` from an epoch, the tokens granted up to tick `n` are `base = n * tokensPerFill`, and the
// whole state is one number `tat` ("theoretical arrival", GCRA's name, here in token units): the bucket
// is short of full by `deficit = tat - base` (0 when `tat <= base`). Taking `c` tokens sets
// `tat = max(tat, base) + c` when `deficit + c <= maxTokens`. So one `AtomicU64` and a CAS loop give a
// bucket that is exact across shards (every grant is one successful CAS on the same word), with the same
// discrete refills as agentgateway's. A denial writes nothing, so a flood of denied requests only reads.

pub mod global;
pub mod redis;
pub mod redis_client;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::duration::Duration;

/// Keyed buckets per limit when `maxKeys` is not set.
pub const DEFAULT_MAX_KEYS: u32 = 65_536;
/// Upper bound for `maxKeys` (16 Mi slots = 256 MiB), so a typo cannot eat the machine.
pub const MAX_KEYS_LIMIT: u32 = 1 << 24;
/// Slots a key may live in, starting at its hash: 8 slots of 16 bytes are two cache lines.
const PROBE: usize = 8;
/// How long a limiter must count without overflow: any rate up to ~5.8e9 tokens/s passes.
const HORIZON_NS: u64 = 100 * 365 * 24 * 3600 * 1_000_000_000;

/// What one unit of a limit counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitType {
    /// Each request costs one token.
    #[default]
    Requests,
    /// LLM tokens: checked before the upstream call (an estimate, or "at least one left") and trued up after.
    Tokens,
}

/// One `localRateLimit` entry: a bucket of `maxTokens`, refilled by `tokensPerFill` every `fillInterval`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRateLimit {
    /// Bucket capacity: the initial level and the largest burst.
    #[serde(default)]
    pub max_tokens: u64,
    /// Tokens added at each fill, never beyond `maxTokens`.
    #[serde(default)]
    pub tokens_per_fill: u64,
    /// Time between fills, e.g. `1s` or `100ms`.
    pub fill_interval: Duration,
    /// Whether the bucket counts requests or LLM tokens.
    #[serde(default, rename = "type")]
    pub limit_type: RateLimitType,
    /// ringgate extension: an expression (e.g. `jwt.sub`) whose value picks a bucket per caller. Without
    /// it the limit is one bucket for the whole gateway, as in agentgateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// ringgate extension: keyed buckets kept for `key` (rounded up to a power of two, default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
}

/// The outcome of one check, with what the rate-limit response headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may proceed (its cost has then been taken).
    pub allowed: bool,
    /// The bucket capacity (`maxTokens`).
    pub limit: u64,
    /// Tokens left after this check.
    pub remaining: u64,
    /// Time until the next fill adds tokens; zero when the bucket is full.
    pub reset_after: StdDuration,
    /// When denied, the time until the cost fits (until full when the cost exceeds `maxTokens`).
    pub retry_after: Option<StdDuration>,
}

impl Verdict {
    /// Whether this verdict binds tighter than `other`: a denial, or else fewer tokens left.
    fn tighter_than(&self, other: &Verdict) -> bool {
        (!self.allowed && other.allowed) || (self.allowed == other.allowed && self.remaining < other.remaining)
    }
}

/// Whole seconds, rounded up so a client never retries early.
pub fn ceil_secs(d: StdDuration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Appends `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset` (seconds, rounded up) and,
/// when denied, `retry-after`, each as a `name: value\r\n` line.
pub fn write_headers(v: &Verdict, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "x-ratelimit-limit: {}\r\nx-ratelimit-remaining: {}\r\nx-ratelimit-reset: {}\r\n",
        v.limit,
        v.remaining,
        ceil_secs(v.reset_after)
    );
    if let Some(retry) = v.retry_after {
        let _ = write!(out, "retry-after: {}\r\n", ceil_secs(retry));
    }
}

/// What a check does to a bucket.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Take this many tokens if they are all there; 0 asks only that one token is left.
    Take(u64),
    /// Charge (positive) or refund (negative) after the fact: never denied, clamped to the bucket.
    Amend(i64),
}

/// A validated bucket shape.
#[derive(Clone, Copy, Debug)]
struct Params {
    cap: u64,
    per_fill: u64,
    interval_ns: u64,
}

impl Params {
    fn new(spec: &LocalRateLimit) -> Result<Self, String> {
        let (cap, per_fill) = (spec.max_tokens, spec.tokens_per_fill);
        if cap == 0 {
            return Err("localRateLimit: maxTokens must be at least 1".into());
        }
        if per_fill == 0 {
            return Err("localRateLimit: tokensPerFill must be at least 1".into());
        }
        if per_fill > cap {
            return Err(format!("localRateLimit: tokensPerFill ({per_fill}) cannot exceed maxTokens ({cap})"));
        }
        let interval_ns = u64::try_from(spec.fill_interval.get().as_nanos()).unwrap_or(u64::MAX);
        if interval_ns == 0 || interval_ns > HORIZON_NS {
            return Err(format!(
                "localRateLimit: fillInterval {} must be between 1ms and 100 years",
                spec.fill_interval
            ));
        }
        if (HORIZON_NS / interval_ns).checked_mul(per_fill).and_then(|v| v.checked_add(cap)).is_none() {
            return Err("localRateLimit: tokensPerFill / fillInterval is above 5e9 tokens per second".into());
        }
        Ok(Params { cap, per_fill, interval_ns })
    }

    /// Tokens granted by all fills up to and including the one at or before `now_ns`.
    fn base_at(&self, now_ns: u64) -> u64 {
        (now_ns / self.interval_ns).saturating_mul(self.per_fill)
    }

    fn until_tick(&self, tick: u64, now_ns: u64) -> StdDuration {
        StdDuration::from_nanos(tick.saturating_mul(self.interval_ns).saturating_sub(now_ns))
    }

    /// Applies `op` to state `tat` at `now_ns`: the new state if it changes, and the verdict.
    fn apply(&self, tat: u64, now_ns: u64, op: Op) -> (Option<u64>, Verdict) {
        let tick = now_ns / self.interval_ns;
        let base = tick.saturating_mul(self.per_fill);
        // Not clamped to `cap`: a shard whose clock reads a tick behind another may see more than `cap`, and
        // must then neither grant nor lower the state.
        let deficit = tat.saturating_sub(base);
        let available = self.cap.saturating_sub(deficit);
        let (after, allowed) = match op {
            Op::Take(0) => (deficit, available >= 1),
            Op::Take(cost) if cost <= available => (deficit + cost, true),
            Op::Take(_) => (deficit, false),
            Op::Amend(d) if d >= 0 => (deficit.saturating_add(d.unsigned_abs()).min(self.cap.max(deficit)), true),
            Op::Amend(d) => (deficit.saturating_sub(d.unsigned_abs()), true),
        };
        let retry_after = (!allowed).then(|| {
            let want = match op {
                Op::Take(cost) => cost.max(1),
                Op::Amend(_) => 1,
            };
            // The deficit must drop to `cap - want`; a cost above `cap` never fits, so report the time to full.
            let target = self.cap.saturating_sub(want.min(self.cap));
            let fills = (deficit - target).div_ceil(self.per_fill);
            self.until_tick(tick.saturating_add(fills), now_ns)
        });
        let verdict = Verdict {
            allowed,
            limit: self.cap,
            remaining: self.cap.saturating_sub(after),
            reset_after: if after > 0 { self.until_tick(tick + 1, now_ns) } else { StdDuration::ZERO },
            retry_after,
        };
        let next = (after != deficit).then(|| base.saturating_add(after));
        (next, verdict)
    }
}

/// Runs `f` on the word's value and stores its result with a CAS, retrying on races.
fn update(word: &AtomicU64, f: impl Fn(u64) -> (Option<u64>, Verdict)) -> Verdict {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let (next, verdict) = f(cur);
        let Some(next) = next else { return verdict };
        match word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return verdict,
            Err(seen) => cur = seen,
        }
    }
}

/// A gateway-wide bucket on its own pair of cache lines, so hot limits do not false-share.
#[repr(align(128))]
struct Cell(AtomicU64);

/// One keyed bucket: `key` is the caller's 64-bit hash (0 = never used), `tat` its state.
#[derive(Default)]
struct Slot {
    key: AtomicU64,
    tat: AtomicU64,
}

/// Keyed buckets: a fixed open-addressed table; a key lives in one of the `PROBE` slots after its hash.
///
/// Accuracy: a key that keeps its slot is exact, like the global bucket. Slots are never freed; when a new
/// key finds its window full it takes over the bucket with the smallest deficit. A full bucket is what a
/// new key starts with, so that costs nothing; a non-full one (more than `PROBE` keys of one window
/// active within one refill period, i.e. the table is too small) is counted in `lossy_evictions` and its
/// key starts again full when it returns: that key may exceed its limit by up to what it had spent,
/// `maxTokens` at most, once per eviction. Two races are tolerated rather than locked out: a check of the
/// evicted key that had already read its slot may land on the new key (charging it, never refunding
/// anything), and two shards admitting the same new key at once may briefly use two slots (one request).
/// Keys are 64-bit hashes: two keys with one hash share a bucket (2^-64 per pair with `hash_key`).
struct Table {
    slots: Box<[Slot]>,
    mask: usize,
    lossy_evictions: AtomicU64,
}

impl Table {
    fn new(max_keys: u32) -> Self {
        let n = (max_keys as usize).next_power_of_two().max(PROBE);
        Table { slots: (0..n).map(|_| Slot::default()).collect(), mask: n - 1, lossy_evictions: AtomicU64::new(0) }
    }

    fn run(&self, p: &Params, key_hash: u64, now_ns: u64, op: Op) -> Verdict {
        let h = key_hash.max(1);
        'find: loop {
            let slot = self.slot_for(p, h, now_ns);
            let mut cur = slot.tat.load(Ordering::Acquire);
            loop {
                // The key is checked after the state is read: once the slot is handed to another key, a
                // stale state cannot be charged here except by a CAS already between these two lines.
                if slot.key.load(Ordering::Acquire) != h {
                    continue 'find;
                }
                let (next, verdict) = p.apply(cur, now_ns, op);
                let Some(next) = next else { return verdict };
                match slot.tat.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return verdict,
                    Err(seen) => cur = seen,
                }
            }
        }
    }

    /// Finds `h`'s slot, else claims the first never-used slot of its window, else evicts the window's
    /// fullest bucket (a full one costs nothing: it is what a new key starts with).
    fn slot_for(&self, p: &Params, h: u64, now_ns: u64) -> &Slot {
        let start = h as usize & self.mask;
        let base = p.base_at(now_ns);
        loop {
            let mut empty = None;
            let mut victim: Option<(&Slot, u64, u64, u64)> = None;
            for i in 0..PROBE {
                let slot = &self.slots[(start + i) & self.mask];
                let k = slot.key.load(Ordering::Acquire);
                if k == h {
                    return slot;
                }
                if k == 0 {
                    empty = empty.or(Some(slot));
                    continue;
                }
                let tat = slot.tat.load(Ordering::Acquire);
                let deficit = tat.saturating_sub(base);
                if victim.is_none_or(|v| deficit < v.3) {
                    victim = Some((slot, k, tat, deficit));
                }
            }
            if let Some(slot) = empty {
                match slot.key.compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return slot,
                    Err(k) if k == h => return slot,
                    Err(_) => continue,
                }
            }
            let Some((slot, k, tat, deficit)) = victim else { continue };
            match slot.key.compare_exchange(k, h, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if deficit > 0 {
                        self.lossy_evictions.fetch_add(1, Ordering::Relaxed);
                    }
                    if tat != 0 {
                        // Start the new key full, unless a charge landed since the scan: then keep it (stricter).
                        let _ = slot.tat.compare_exchange(tat, 0, Ordering::AcqRel, Ordering::Relaxed);
                    }
                    return slot;
                }
                Err(k) if k == h => return slot,
                Err(_) => continue,
            }
        }
    }
}

enum Store {
    Global(Cell),
    Keyed(Table),
}

/// One compiled limit, shared by every shard (`Arc` it or keep it in the shared config snapshot).
pub struct Limiter {
    params: Params,
    limit_type: RateLimitType,
    key: Option<String>,
    epoch: Instant,
    hasher: RandomState,
    store: Store,
}

impl Limiter {
    /// Builds the limit, full, with fills counted from `epoch` (build time, as in agentgateway).
    pub fn new(spec: &LocalRateLimit, epoch: Instant) -> Result<Self, String> {
        let params = Params::new(spec)?;
        let store = match (&spec.key, spec.max_keys) {
            (None, None) => Store::Global(Cell(AtomicU64::new(0))),
            (None, Some(_)) => return Err("localRateLimit: maxKeys needs key".into()),
            (Some(_), max_keys) => {
                let n = max_keys.unwrap_or(DEFAULT_MAX_KEYS);
                if n == 0 || n > MAX_KEYS_LIMIT {
                    return Err(format!("localRateLimit: maxKeys must be between 1 and {MAX_KEYS_LIMIT}"));
                }
                Store::Keyed(Table::new(n))
            }
        };
        Ok(Limiter {
            params,
            limit_type: spec.limit_type,
            key: spec.key.clone(),
            epoch,
            hasher: RandomState::new(),
            store,
        })
    }

    /// What this limit counts.
    pub fn limit_type(&self) -> RateLimitType {
        self.limit_type
    }

    /// The configured key expression; `None` for a gateway-wide bucket.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Hashes a key value with this process's random seed, so callers cannot aim keys at one table window.
    pub fn hash_key(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Takes `cost` tokens (0: only asks that one is left) from the bucket of `key_hash` (ignored without
    /// `key`) at `now`; all or nothing.
    pub fn check(&self, key_hash: u64, now: Instant, cost: u64) -> Verdict {
        self.run(key_hash, now, Op::Take(cost))
    }

    /// Charges (`delta > 0`, at most down to empty) or refunds (`delta < 0`) tokens after the fact.
    pub fn amend(&self, key_hash: u64, now: Instant, delta: i64) -> Verdict {
        self.run(key_hash, now, Op::Amend(delta))
    }

    /// Keyed buckets evicted while not full (each lost its history: that key got a fresh full bucket).
    pub fn lossy_evictions(&self) -> u64 {
        match &self.store {
            Store::Global(_) => 0,
            Store::Keyed(t) => t.lossy_evictions.load(Ordering::Relaxed),
        }
    }

    fn run(&self, key_hash: u64, now: Instant, op: Op) -> Verdict {
        let now_ns = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        match &self.store {
            Store::Global(cell) => update(&cell.0, |tat| self.params.apply(tat, now_ns, op)),
            Store::Keyed(table) => table.run(&self.params, key_hash, now_ns, op),
        }
    }
}

/// The compiled `localRateLimit` list of one route or policy: every limit of a kind must allow.
pub struct LocalRateLimits {
    limits: Box<[Limiter]>,
}

impl LocalRateLimits {
    /// Validates and builds every entry, fills counted from `epoch`.
    pub fn new(specs: &[LocalRateLimit], epoch: Instant) -> Result<Self, String> {
        let limits = specs.iter().map(|s| Limiter::new(s, epoch)).collect::<Result<_, _>>()?;
        Ok(LocalRateLimits { limits })
    }

    /// The limits, in config order (index `i` is what `key_hash` is called with).
    pub fn limits(&self) -> &[Limiter] {
        &self.limits
    }

    /// Takes one token from every `requests` limit, or none: on a denial the limits already charged get
    /// their token back. Returns the binding verdict (the denial, else the least remaining), `None` when
    /// no `requests` limit is configured. `key_hash(i)` may be called twice per limit.
    pub fn check_request(&self, now: Instant, key_hash: impl Fn(usize) -> u64) -> Option<Verdict> {
        self.take_all(RateLimitType::Requests, now, 1, key_hash)
    }

    /// The same for `tokens` limits with `cost` tokens (0 when not estimated: allowed while one is left).
    pub fn check_tokens(&self, now: Instant, cost: u64, key_hash: impl Fn(usize) -> u64) -> Option<Verdict> {
        self.take_all(RateLimitType::Tokens, now, cost, key_hash)
    }

    /// Trues up every `tokens` limit once the real usage is known: `delta = actual - charged`.
    pub fn amend_tokens(&self, now: Instant, delta: i64, key_hash: impl Fn(usize) -> u64) {
        if delta == 0 {
            return;
        }
        for (i, l) in self.limits.iter().enumerate() {
            if l.limit_type == RateLimitType::Tokens {
                l.amend(key_hash(i), now, delta);
            }
        }
    }

    fn take_all(
        &self,
        kind: RateLimitType,
        now: Instant,
        cost: u64,
        key_hash: impl Fn(usize) -> u64,
    ) -> Option<Verdict> {
        let mut binding: Option<Verdict> = None;
        for (i, l) in self.limits.iter().enumerate() {
            if l.limit_type != kind {
                continue;
            }
            let v = l.check(key_hash(i), now, cost);
            if !v.allowed {
                let refund = i64::try_from(cost).unwrap_or(i64::MAX);
                if refund > 0 {
                    for (j, earlier) in self.limits[..i].iter().enumerate() {
                        if earlier.limit_type == kind {
                            earlier.amend(key_hash(j), now, -refund);
                        }
                    }
                }
                return Some(v);
            }
            if binding.is_none_or(|b| v.tighter_than(&b)) {
                binding = Some(v);
            }
        }
        binding
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Barrier};

    use super::*;

    fn spec(max: u64, per: u64, ms: u64) -> LocalRateLimit {
        LocalRateLimit {
            max_tokens: max,
            tokens_per_fill: per,
            fill_interval: Duration::from_millis(ms),
            limit_type: RateLimitType::Requests,
            key: None,
            max_keys: None,
        }
    }

    fn keyed(max: u64, per: u64, ms: u64, max_keys: u32) -> LocalRateLimit {
        LocalRateLimit { key: Some("jwt.sub".into()), max_keys: Some(max_keys), ..spec(max, per, ms) }
    }

    fn ms(n: u64) -> StdDuration {
        StdDuration::from_millis(n)
    }

    #[test]
    fn config_matches_agentgateway_shape() {
        let s: LocalRateLimit =
            serde_json::from_str(r#"{"maxTokens":10,"tokensPerFill":2,"fillInterval":"100ms"}"#).unwrap();
        assert_eq!(s, spec(10, 2, 100));
        let s: LocalRateLimit = serde_json::from_str(
            r#"{"maxTokens":5,"tokensPerFill":5,"fillInterval":"1m","type":"tokens","key":"jwt.sub","maxKeys":100}"#,
        )
        .unwrap();
        assert_eq!(s.limit_type, RateLimitType::Tokens);
        assert_eq!(s.key.as_deref(), Some("jwt.sub"));
        assert_eq!(s.fill_interval, Duration::from_secs(60));
        let err = serde_json::from_str::<LocalRateLimit>(r#"{"maxTokens":1,"fillInterval":"1s","burst":2}"#);
        assert!(err.unwrap_err().to_string().contains("unknown field `burst`"));
        let err = serde_json::from_str::<LocalRateLimit>(r#"{"maxTokens":1,"fillInterval":"1s","type":"bytes"}"#);
        assert!(err.is_err());
        let schema = serde_json::to_string(&schemars::schema_for!(LocalRateLimit)).unwrap();
        assert!(schema.contains("tokensPerFill") && schema.contains("maxKeys"), "{schema}");
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let e = Instant::now();
        let err = |s: LocalRateLimit| Limiter::new(&s, e).err().unwrap();
        assert!(err(spec(0, 0, 1000)).contains("maxTokens"));
        assert!(err(spec(5, 0, 1000)).contains("tokensPerFill must"));
        assert!(err(spec(5, 6, 1000)).contains("cannot exceed"));
        assert!(err(spec(5, 1, 0)).contains("fillInterval"));
        assert!(err(spec(u64::MAX, u64::MAX / 2, 1)).contains("tokens per second"));
        assert!(err(LocalRateLimit { max_keys: Some(8), ..spec(5, 1, 1000) }).contains("needs key"));
        assert!(err(keyed(5, 1, 1000, 0)).contains("maxKeys"));
        assert!(Limiter::new(&spec(5_000_000_000, 5_000_000_000, 1000), e).is_ok());
    }

    #[test]
    fn burst_then_discrete_refill() {
        let t0 = Instant::now();
        let l = Limiter::new(&spec(3, 2, 1000), t0).unwrap();
        for left in [2, 1, 0] {
            let v = l.check(0, t0, 1);
            assert!(v.allowed);
            assert_eq!((v.limit, v.remaining, v.reset_after, v.retry_after), (3, left, ms(1000), None));
        }
        let v = l.check(0, t0 + ms(250), 1);
        assert_eq!((v.allowed, v.remaining, v.retry_after), (false, 0, Some(ms(750))));
        // Refills come whole at each interval, as in agentgateway: nothing at 999ms, two at 1s.
        assert!(!l.check(0, t0 + ms(999), 1).allowed);
        assert!(l.check(0, t0 + ms(1000), 1).allowed);
        let v = l.check(0, t0 + ms(1500), 1);
        assert_eq!((v.allowed, v.remaining, v.reset_after), (true, 0, ms(500)));
        assert!(!l.check(0, t0 + ms(1500), 1).allowed);
        // Idle for long: back to full, never above.
        let later = t0 + ms(60_000);
        assert_eq!(l.check(0, later, 0).remaining, 3);
        assert_eq!((0..10).filter(|_| l.check(0, later, 1).allowed).count(), 3);
    }

    #[test]
    fn multi_token_costs_and_retry_after() {
        let t0 = Instant::now();
        let l = Limiter::new(&spec(10, 2, 100), t0).unwrap();
        assert!(l.check(0, t0, 7).allowed);
        let v = l.check(0, t0 + ms(10), 7);
        // 3 left, 7 needed: two fills (4 tokens) at 100ms and 200ms.
        assert_eq!((v.allowed, v.remaining, v.retry_after), (false, 3, Some(ms(190))));
        assert!(!l.check(0, t0 + ms(199), 7).allowed);
        assert!(l.check(0, t0 + ms(200), 7).allowed);
        // A cost above maxTokens never fits: denied, retry when full.
        let v = l.check(0, t0 + ms(200), 11);
        assert_eq!((v.allowed, v.remaining, v.retry_after), (false, 0, Some(ms(500))));
    }

    #[test]
    fn token_limits_peek_and_amend() {
        let t0 = Instant::now();
        let l = Limiter::new(&LocalRateLimit { limit_type: RateLimitType::Tokens, ..spec(100, 10, 1000) }, t0).unwrap();
        // Unestimated request: allowed while one token is left, nothing taken.
        assert_eq!(l.check(0, t0, 0).remaining, 100);
        // Usage of 250 drains the bucket and no further (agentgateway's amend floors at zero).
        assert_eq!(l.amend(0, t0, 250).remaining, 0);
        let v = l.check(0, t0, 0);
        assert_eq!((v.allowed, v.retry_after), (false, Some(ms(1000))));
        assert_eq!(l.amend(0, t0, -30).remaining, 30);
        assert_eq!(l.check(0, t0 + ms(1000), 0).remaining, 40);
        assert_eq!(l.amend(0, t0 + ms(1000), -1000).remaining, 100);
    }

    /// Every thread takes as many tokens as it can at each tick; a barrier ends each tick.
    fn hammer(l: &Arc<Limiter>, threads: usize, ticks: u64, interval: StdDuration, key: impl Fn(usize) -> u64) -> u64 {
        let t0 = l.epoch;
        let total = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (l, total, barrier) = (l.clone(), total.clone(), barrier.clone());
                let k = key(t);
                std::thread::spawn(move || {
                    for tick in 0..ticks {
                        let now = t0 + interval * tick as u32;
                        let mut denied = 0;
                        while denied < 100 {
                            if l.check(k, now, 1).allowed {
                                total.fetch_add(1, Ordering::Relaxed);
                            } else {
                                denied += 1;
                            }
                        }
                        barrier.wait();
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        total.load(Ordering::Relaxed)
    }

    #[test]
    fn exact_under_contention_global() {
        let t0 = Instant::now();
        for threads in [2, 4] {
            let l = Arc::new(Limiter::new(&spec(5000, 700, 100), t0).unwrap());
            assert_eq!(hammer(&l, threads, 6, ms(100), |_| 0), 5000 + 5 * 700);
        }
    }

    #[test]
    fn exact_under_contention_one_key() {
        let t0 = Instant::now();
        let l = Arc::new(Limiter::new(&keyed(3000, 1000, 50, 1024), t0).unwrap());
        let h = l.hash_key("alice");
        assert_eq!(hammer(&l, 4, 4, ms(50), |_| h), 3000 + 3 * 1000);
        assert_eq!(l.lossy_evictions(), 0);
    }

    #[test]
    fn keys_are_separate_and_exact_per_key() {
        let t0 = Instant::now();
        let l = Arc::new(Limiter::new(&keyed(500, 500, 1000, 4096), t0).unwrap());
        let hashes: Vec<u64> = (0..4).map(|t| l.hash_key(&format!("user-{t}"))).collect();
        // Each thread drains its own key: per-key exact, no cross-talk.
        assert_eq!(hammer(&l, 4, 1, ms(1000), |t| hashes[t]), 4 * 500);
        let other = l.hash_key("bob");
        assert_eq!(l.check(other, t0, 1).remaining, 499);
        assert!(!l.check(hashes[0], t0, 1).allowed);
        // Without `key` the hash is ignored: one bucket for all.
        let g = Limiter::new(&spec(2, 1, 1000), t0).unwrap();
        assert!(g.check(1, t0, 1).allowed && g.check(2, t0, 1).allowed && !g.check(3, t0, 1).allowed);
    }

    #[test]
    fn full_table_evicts_fullest_bucket_first() {
        let t0 = Instant::now();
        // 8 slots: the whole table is one probe window.
        let l = Limiter::new(&keyed(2, 1, 1000, 8), t0).unwrap();
        for k in 1..=7u64 {
            assert!(l.check(k, t0, 2).allowed);
        }
        // Key 8 takes the last slot but spends nothing: its bucket stays full.
        assert!(l.check(8, t0, 0).allowed);
        // Key 9 evicts key 8 (full: no information lost).
        assert!(l.check(9, t0, 2).allowed);
        assert_eq!(l.lossy_evictions(), 0);
        for k in 1..=7u64 {
            assert!(!l.check(k, t0, 1).allowed, "key {k} kept its drained bucket");
        }
        // Key 10 finds only drained buckets: the first in its window (key 2) is evicted, and counted.
        assert!(l.check(10, t0, 1).allowed);
        assert_eq!(l.lossy_evictions(), 1);
        assert_eq!(resident(&l), [1, 3, 4, 5, 6, 7, 9, 10]);
        assert_eq!(l.check(10, t0, 0).remaining, 1, "the new key started full");
        // A fill later every bucket is full again, so admitting 8 new keys loses nothing.
        let later = t0 + ms(2000);
        assert!((100..108).all(|k| l.check(k, later, 1).allowed));
        assert_eq!(l.lossy_evictions(), 1);
        assert_eq!(resident(&l), (100..108).collect::<Vec<_>>());
    }

    fn resident(l: &Limiter) -> Vec<u64> {
        let Store::Keyed(t) = &l.store else { panic!("not keyed") };
        let mut keys: Vec<u64> = t.slots.iter().map(|s| s.key.load(Ordering::Relaxed)).filter(|&k| k != 0).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn list_is_all_or_nothing_and_reports_tightest() {
        let t0 = Instant::now();
        let wide = spec(100, 100, 1000);
        let narrow = spec(2, 1, 1000);
        let tokens = LocalRateLimit { limit_type: RateLimitType::Tokens, ..spec(1000, 1000, 1000) };
        let set = LocalRateLimits::new(&[wide, narrow, tokens], t0).unwrap();
        let v = set.check_request(t0, |_| 0).unwrap();
        assert_eq!((v.allowed, v.limit, v.remaining), (true, 2, 1));
        assert!(set.check_request(t0, |_| 0).unwrap().allowed);
        let v = set.check_request(t0, |_| 0).unwrap();
        assert_eq!((v.allowed, v.limit), (false, 2));
        // The denied request gave its token back to the wide limit: 100 - 2 taken.
        assert_eq!(set.limits()[0].check(0, t0, 0).remaining, 98);
        assert_eq!(set.check_tokens(t0, 0, |_| 0).unwrap().remaining, 1000);
        set.amend_tokens(t0, 600, |_| 0);
        assert!(!set.check_tokens(t0, 500, |_| 0).unwrap().allowed);
        assert!(LocalRateLimits::new(&[], t0).unwrap().check_request(t0, |_| 0).is_none());
    }

    #[test]
    fn header_lines() {
        let mut out = Vec::new();
        let allowed = Verdict { allowed: true, limit: 10, remaining: 7, reset_after: ms(1), retry_after: None };
        write_headers(&allowed, &mut out);
        assert_eq!(out, b"x-ratelimit-limit: 10\r\nx-ratelimit-remaining: 7\r\nx-ratelimit-reset: 1\r\n");
        out.clear();
        let t0 = Instant::now();
        let l = Limiter::new(&spec(1, 1, 2500), t0).unwrap();
        l.check(0, t0, 1);
        write_headers(&l.check(0, t0 + ms(1000), 1), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-ratelimit-limit: 1\r\nx-ratelimit-remaining: 0\r\nx-ratelimit-reset: 2\r\nretry-after: 2\r\n"
        );
        assert_eq!(ceil_secs(StdDuration::ZERO), 0);
        assert_eq!(ceil_secs(ms(2000)), 2);
    }
}
