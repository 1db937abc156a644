//! Client sessions: what a sealed `Mcp-Session-Id` carries, and the shard-local state that cannot be sealed (revoked ids, last use, pooled upstream sessions, legacy HTTP+SSE streams and targets).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringgate_runtime::Signal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{HttpTargetPlan, McpPlan};
use super::seal::Sealer;
use super::sse_client::{self, SessionSse, SseConn};
use super::stdio::{self, SessionProc};

/// What a gateway session id seals: fixed at `initialize`, so any shard or replica holding the
/// key can serve the session's POSTs without a lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sealed {
    /// Protocol version negotiated with the client.
    pub v: String,
    /// Per target (by name): its upstream session id and the version it negotiated.
    pub t: Vec<Upstream>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// For a legacy HTTP+SSE session: the shard its stream lives on. Such an id is sealed when
    /// the stream opens, before `initialize`, so its upstream sessions are kept next to the
    /// stream instead (`v` and `t` stay empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<usize>,
    /// The client's `initialize` params (version, capabilities, client info): a target that
    /// forgets its upstream session is initialized again with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<Value>,
}

/// One target's part of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    /// Target name.
    pub n: String,
    /// Its session id, for HTTP targets that gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<String>,
    /// Protocol version the target negotiated.
    pub v: String,
}

impl Sealed {
    /// Seal into a session id.
    pub fn seal(&self, plan: &McpPlan) -> Result<String, String> {
        let bytes = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        plan.sealer.seal(&bytes)
    }

    /// Open a session id; `None` when it was not made with this key or is malformed.
    pub fn open(plan: &McpPlan, id: &str) -> Option<Sealed> {
        serde_json::from_slice(&plan.sealer.open(id)?).ok()
    }

    /// A legacy HTTP+SSE session whose stream lives on shard `home`.
    pub fn stream(home: usize) -> Sealed {
        Sealed { v: String::new(), t: Vec::new(), iat: now_secs(), h: Some(home), c: None }
    }

    /// This target's entry, by name (targets may have been added or removed by a reload).
    pub fn target(&self, name: &str) -> Option<&Upstream> {
        self.t.iter().find(|u| u.n == name)
    }

    /// Put `up` in place of its target's entry (a renewed upstream session).
    pub fn replace(&mut self, up: &Upstream) {
        if let Some(u) = self.t.iter_mut().find(|u| u.n == up.n) {
            *u = up.clone();
        }
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How a shard reaches a Streamable HTTP target for stateless requests: its era and, for a
/// legacy target, the upstream session it shares among them.
#[derive(Clone)]
pub struct Pooled {
    /// The era the target speaks (found by probing, or configured).
    pub era: super::era::Era,
    /// Upstream session id (empty when the target gave none, or speaks 2026-07-28).
    pub session: String,
    /// Version it negotiated.
    pub version: String,
    /// Its `initialize` result (for a 2026-07-28 target: made from its `server/discover` result).
    pub init: Value,
}

/// Shard-local MCP state.
#[derive(Default)]
pub struct ShardSessions {
    /// Ended (DELETEd) session ids, with when they may be forgotten.
    revoked: RefCell<HashMap<String, Instant>>,
    /// Last time this shard served each session, to extend its idle lifetime past `iat + ttl`.
    seen: RefCell<HashMap<String, Instant>>,
    /// Upstream sessions renewed after their target forgot the sealed ones, by client session
    /// id: the sealed id cannot change under the client, so every shard applies these to it.
    renewed: RefCell<HashMap<String, Vec<Renewed>>>,
    /// Upstream sessions shared by stateless requests, by target endpoint.
    pooled: RefCell<HashMap<String, Rc<Pooled>>>,
    /// Legacy HTTP+SSE sessions whose stream is open on this shard, by session id.
    streams: RefCell<HashMap<String, Rc<SseSession>>>,
    /// Upstream sessions with HTTP+SSE targets, shared by every client of this shard, by target endpoint.
    sse_conns: RefCell<HashMap<String, Rc<SseConn>>>,
    /// Handles of the per-session stdio processes this shard has served, by key: the
    /// process-wide table is consulted once per shard and session, not on each request.
    procs: RefCell<HashMap<String, Arc<SessionProc>>>,
    /// The same for client sessions' own upstream sessions with HTTP+SSE targets.
    own_sse: RefCell<HashMap<String, Arc<SessionSse>>>,
    /// Session ids this shard opened lately, with what they seal and the key that opened them:
    /// an id is immutable, so a repeat request skips the AEAD and the JSON (a third of a legacy
    /// call's instructions). Bounded by [`OPENED_MAX`]; emptied when full.
    opened: RefCell<HashMap<Box<str>, Opened>>,
    next_id: Cell<u64>,
    sweeps: Cell<u32>,
    /// Renewals of upstream sessions in flight, by (client session id, target, forgotten
    /// upstream session id): concurrent requests that found the same one forgotten wait for one
    /// new upstream session instead of each making one (all but one would be left unused).
    pub renewals: super::flight::Flights<RenewKey, Result<Upstream, super::jsonrpc::RpcError>>,
    /// Set-ups of this shard's pooled way to an HTTP target in flight, by pool key.
    pub pooled_setups: super::flight::Flights<String, Result<Rc<Pooled>, super::jsonrpc::RpcError>>,
    /// Resumable SSE streams this shard produces.
    pub resume: super::resume::Streams,
    /// List pages of targets, served again until they expire or their target's list changes.
    pub catalog: super::catalog::Catalog,
    /// What shared stdio processes and HTTP+SSE sessions send unprompted, for listen streams.
    pub hub: super::hub::Hub,
    /// What legacy sessions subscribed to at 2026-07-28 targets, for their GET streams.
    pub subscribed: super::session_listen::Subscribed,
}

/// An opened session id: the key that opened it and what it seals.
type Opened = (Arc<Sealer>, Sealed);

/// A renewed upstream session as a shard knows it.
struct Renewed {
    up: Upstream,
    /// The upstream session id it replaced (which the target forgot).
    from: Option<String>,
    /// Set when this shard made it: how to end it should another shard's renewal of the same
    /// forgotten session win.
    mine: Option<Rc<HttpTargetPlan>>,
}

/// What became of a renewal this shard made or was told of ([`ShardSessions::renew`]).
pub enum Took {
    /// It is the session's upstream session from now on.
    Kept,
    /// Another renewal of the same forgotten session won (or it was replaced since): that one
    /// is used instead, and this one is not.
    Beaten(Upstream),
    /// It won over one this shard made, which nobody should use any more: end that one.
    Displaced(String, Rc<HttpTargetPlan>),
}

/// What a renewal is shared under: the client session id (empty for a legacy HTTP+SSE
/// session), the target's name and the upstream session id it forgot.
pub type RenewKey = (Arc<str>, Arc<str>, Option<Box<str>>);

/// A legacy HTTP+SSE session, kept by the shard its stream lives on for as long as the stream is open.
pub struct SseSession {
    /// Framed SSE events for the client's stream.
    pub tx: flume::Sender<Vec<u8>>,
    /// Its upstream sessions, once the client has initialized (stateful backends).
    pub upstreams: RefCell<Option<Sealed>>,
    /// Bumped by each `initialize` that gives it new upstream sessions: the task relaying what
    /// the older ones (and the shared upstreams) send stops, so that nothing arrives twice.
    pub generation: Cell<u64>,
    /// Fired when the stream ends, to stop what feeds it.
    pub closed: Signal,
    /// Who opened the stream; its messages are authorized as this caller.
    pub caller: super::access::StreamCaller,
}

/// How many events may wait for a slow client before the targets feeding its stream are held back.
const STREAM_BACKLOG: usize = 64;

/// How many opened session ids a shard keeps ([`ShardSessions::admit`]'s cache): about 1 KiB
/// each, and far more than the sessions one shard serves at once in practice.
const OPENED_MAX: usize = 1024;

/// Why a session id is not admitted on its own word.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Not made with our key, malformed, or ended by DELETE.
    Unknown,
    /// Issued longer than the session TTL ago and not used on this shard since: only another
    /// shard can tell whether it is still in use (see [`ShardSessions::seen_elsewhere`]).
    Unseen(Box<Sealed>),
}

impl ShardSessions {
    /// Check `id` and note its use; the sealed upstream sessions come with the renewals this
    /// shard knows of applied.
    pub fn admit(&self, plan: &McpPlan, id: &str) -> Result<Sealed, Refused> {
        let mut s = self.open(plan, id).ok_or(Refused::Unknown)?;
        if self.revoked.borrow().contains_key(id) {
            return Err(Refused::Unknown);
        }
        if s.h.is_some() {
            // a legacy HTTP+SSE session lives exactly as long as its stream, which its home
            // shard knows
            return Ok(s);
        }
        let now = Instant::now();
        let ttl = plan.session_ttl;
        let fresh = now_secs().saturating_sub(s.iat) < ttl.as_secs().max(1);
        let renewed = self.renewed.borrow();
        // most shards never renew anything: no lookup then
        if let Some(r) = (!renewed.is_empty()).then(|| renewed.get(id)).flatten() {
            r.iter().for_each(|u| s.replace(&u.up));
        }
        drop(renewed);
        let mut seen = self.seen.borrow_mut();
        if !fresh && seen.get(id).is_none_or(|t| now.duration_since(*t) >= ttl) {
            return Err(Refused::Unseen(Box::new(s)));
        }
        match seen.get_mut(id) {
            Some(t) => *t = now,
            None => {
                seen.insert(id.to_string(), now);
            }
        }
        drop(seen);
        self.sweep(ttl);
        Ok(s)
    }

    /// [`Sealed::open`], from this shard's cache of ids opened with the same key when it can.
    fn open(&self, plan: &McpPlan, id: &str) -> Option<Sealed> {
        if let Some((key, s)) = self.opened.borrow().get(id) {
            if Arc::ptr_eq(key, &plan.sealer) {
                return Some(s.clone());
            }
        }
        let s = Sealed::open(plan, id)?;
        let mut opened = self.opened.borrow_mut();
        if opened.len() >= OPENED_MAX {
            opened.clear();
        }
        opened.insert(id.into(), (plan.sealer.clone(), s.clone()));
        Some(s)
    }

    /// When this shard last served session `id`, if it remembers.
    pub fn last_seen(&self, id: &str) -> Option<Instant> {
        self.seen.borrow().get(id).copied()
    }

    /// Admit a session another shard served within the TTL (`last`, its answer to
    /// [`ShardSessions::last_seen`]): it is in use, and this shard now knows it too.
    pub fn seen_elsewhere(&self, id: &str, last: Option<Instant>, ttl: Duration) -> bool {
        let now = Instant::now();
        if last.is_none_or(|t| now.saturating_duration_since(t) >= ttl) || self.revoked.borrow().contains_key(id) {
            return false;
        }
        self.seen.borrow_mut().insert(id.to_string(), now);
        true
    }

    /// Note that session `id` now reaches target `up.n` on upstream session `up`, which
    /// replaced `from`; `mine` when this shard made it. Two shards that renewed the same
    /// forgotten session at once each tell every shard: every shard keeps the same one of the
    /// two (the lower id, whatever the order they arrive in), and the shard that made the other
    /// learns it must end it.
    pub fn renew(&self, id: &str, up: Upstream, from: Option<String>, mine: Option<Rc<HttpTargetPlan>>) -> Took {
        let mut r = self.renewed.borrow_mut();
        let ups = r.entry(id.to_string()).or_default();
        let new = Renewed { up, from, mine };
        let Some(old) = ups.iter_mut().find(|u| u.up.n == new.up.n) else {
            ups.push(new);
            return Took::Kept;
        };
        if old.up.s == new.up.s {
            return Took::Kept;
        }
        let raced = old.from == new.from;
        // a renewal this shard knows to have been replaced already arrives late
        let stale = old.from.is_some() && old.from == new.up.s;
        if stale || raced && old.up.s < new.up.s {
            return Took::Beaten(old.up.clone());
        }
        let was = std::mem::replace(old, new);
        match (raced, was.mine, was.up.s) {
            (true, Some(h), Some(s)) => Took::Displaced(s, h),
            _ => Took::Kept,
        }
    }

    /// The upstream session that replaced the sealed one of session `id` with target `name`.
    pub fn renewed(&self, id: &str, name: &str) -> Option<Upstream> {
        self.renewed.borrow().get(id)?.iter().find(|u| u.up.n == name).map(|u| u.up.clone())
    }

    /// End a session on this shard.
    pub fn revoke(&self, id: &str, ttl: Duration) {
        self.seen.borrow_mut().remove(id);
        self.renewed.borrow_mut().remove(id);
        self.subscribed.forget(id);
        // keep the tombstone as long as the id could otherwise still be accepted
        self.revoked.borrow_mut().insert(id.to_string(), Instant::now() + ttl * 2);
    }

    /// Occasionally drop entries that no longer matter, so the maps stay bounded by live sessions.
    fn sweep(&self, ttl: Duration) {
        let n = self.sweeps.get().wrapping_add(1);
        self.sweeps.set(n);
        if !n.is_multiple_of(1024) {
            return;
        }
        let now = Instant::now();
        let mut seen = self.seen.borrow_mut();
        seen.retain(|_, t| now.duration_since(*t) < ttl);
        // a renewal outlives the session's use on this shard only as long as the session
        // could still be fresh here
        self.renewed.borrow_mut().retain(|id, _| seen.contains_key(id));
        self.revoked.borrow_mut().retain(|_, until| *until > now);
        self.procs.borrow_mut().retain(|_, p| p.is_live());
        self.own_sse.borrow_mut().retain(|_, c| c.is_live());
    }

    /// The live per-session stdio process under `key` (a session's upstream session id with a
    /// `perSession` stdio target), from this shard's cache or else the process-wide table.
    pub fn stdio_proc(&self, key: &str) -> Option<Arc<SessionProc>> {
        if let Some(p) = self.procs.borrow().get(key).filter(|p| p.is_live()) {
            return Some(p.clone());
        }
        let p = stdio::session_proc(key);
        let mut cache = self.procs.borrow_mut();
        match &p {
            Some(p) => cache.insert(key.to_string(), p.clone()),
            None => cache.remove(key),
        };
        p
    }

    /// A client session's own upstream session with an HTTP+SSE target, by key, from this
    /// shard's cache or else the process-wide table.
    pub fn sse_session(&self, key: &str) -> Option<Arc<SessionSse>> {
        if let Some(c) = self.own_sse.borrow().get(key).filter(|c| c.is_live()) {
            return Some(c.clone());
        }
        let c = sse_client::session_sse(key);
        let mut cache = self.own_sse.borrow_mut();
        match &c {
            Some(c) => cache.insert(key.to_string(), c.clone()),
            None => cache.remove(key),
        };
        c
    }

    /// Note a session's use on its own stdio processes and HTTP+SSE sessions, which end when it
    /// goes idle.
    pub fn touch_procs(&self, s: &Sealed) {
        for key in s.t.iter().filter_map(|u| u.s.as_deref()) {
            if key.starts_with(stdio::KEY_PREFIX) {
                if let Some(p) = self.stdio_proc(key) {
                    p.touch();
                }
            } else if key.starts_with(sse_client::KEY_PREFIX) {
                if let Some(c) = self.sse_session(key) {
                    c.touch();
                }
            }
        }
    }

    /// Register the stream of a new legacy HTTP+SSE session; the receiver yields its events.
    pub fn open_stream(
        &self,
        id: &str,
        caller: super::access::StreamCaller,
    ) -> (Rc<SseSession>, flume::Receiver<Vec<u8>>) {
        let (tx, rx) = flume::bounded(STREAM_BACKLOG);
        let s = Rc::new(SseSession {
            tx,
            upstreams: RefCell::new(None),
            generation: Cell::new(0),
            closed: Signal::new(),
            caller,
        });
        self.streams.borrow_mut().insert(id.to_string(), s.clone());
        (s, rx)
    }

    /// The legacy HTTP+SSE session with an open stream on this shard.
    pub fn stream(&self, id: &str) -> Option<Rc<SseSession>> {
        self.streams.borrow().get(id).cloned()
    }

    /// Forget a legacy HTTP+SSE session whose stream ended, and stop what feeds it.
    pub fn close_stream(&self, id: &str) -> Option<Rc<SseSession>> {
        let s = self.streams.borrow_mut().remove(id)?;
        s.closed.fire();
        Some(s)
    }

    /// This shard's session with an HTTP+SSE target.
    pub fn sse_conn(&self, key: &str) -> Option<Rc<SseConn>> {
        self.sse_conns.borrow().get(key).cloned()
    }

    /// This shard's sessions with HTTP+SSE targets.
    pub fn sse_conns(&self) -> Vec<Rc<SseConn>> {
        self.sse_conns.borrow().values().cloned().collect()
    }

    /// Remember or forget this shard's session with an HTTP+SSE target.
    pub fn set_sse_conn(&self, key: &str, v: Option<Rc<SseConn>>) {
        let mut c = self.sse_conns.borrow_mut();
        match v {
            Some(v) => c.insert(key.to_string(), v),
            None => c.remove(key),
        };
    }

    /// A fresh id for a request sent on a shared upstream session.
    pub fn next_id(&self) -> u64 {
        let n = self.next_id.get().wrapping_add(1);
        self.next_id.set(n);
        n
    }

    /// The pooled upstream session for an endpoint key (shared: every stateless request to the
    /// target reads it, and its `initialize` result is not copied for each).
    pub fn pooled(&self, key: &str) -> Option<Rc<Pooled>> {
        self.pooled.borrow().get(key).cloned()
    }

    /// Remember or forget a pooled upstream session.
    pub fn set_pooled(&self, key: &str, v: Option<Rc<Pooled>>) {
        let mut p = self.pooled.borrow_mut();
        match v {
            Some(v) => p.insert(key.to_string(), v),
            None => p.remove(key),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mcp::seal::Sealer;

    fn plan(ttl: Duration) -> McpPlan {
        McpPlan {
            scope: "test".into(),
            targets: vec![],
            prefixed: false,
            resolve: false,
            view: (0, 0),
            stateful: true,
            fail_open: false,
            origin_check: true,
            sealer: Arc::new(Sealer::new([7; 32])),
            session_ttl: ttl,
            resume: Default::default(),
            catalog_max_bytes: 0,
        }
    }

    fn sealed(iat: u64) -> Sealed {
        Sealed {
            v: "2025-11-25".into(),
            t: vec![Upstream { n: "a".into(), s: Some("up-1".into()), v: "2025-06-18".into() }],
            iat,
            h: None,
            c: Some(serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}}})),
        }
    }

    #[test]
    fn sealed_ids_round_trip_and_refuse_other_keys() {
        let p = plan(Duration::from_secs(60));
        let s = sealed(now_secs());
        let id = s.seal(&p).unwrap();
        assert_eq!(Sealed::open(&p, &id), Some(s.clone()));
        assert_eq!(s.target("a").and_then(|u| u.s.as_deref()), Some("up-1"));
        let other = McpPlan { sealer: Arc::new(Sealer::new([8; 32])), ..plan(Duration::from_secs(60)) };
        assert_eq!(Sealed::open(&other, &id), None);
    }

    #[test]
    fn admit_checks_revocation_and_idle_lifetime() {
        let p = plan(Duration::from_secs(60));
        let shard = ShardSessions::default();
        let id = sealed(now_secs()).seal(&p).unwrap();
        assert!(shard.admit(&p, &id).is_ok());
        assert_eq!(shard.admit(&p, "garbage").unwrap_err(), Refused::Unknown);
        // issued long ago and never seen here: only another shard can vouch for it
        let old = sealed(now_secs() - 3600).seal(&p).unwrap();
        assert!(matches!(shard.admit(&p, &old), Err(Refused::Unseen(s)) if s.iat < now_secs() - 60));
        assert_eq!(shard.last_seen(&old), None);
        shard.revoke(&id, p.session_ttl);
        assert_eq!(shard.admit(&p, &id).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn a_cached_opening_is_used_only_with_the_key_that_made_it() {
        let p = plan(Duration::from_secs(60));
        let shard = ShardSessions::default();
        let s = sealed(now_secs());
        let id = s.seal(&p).unwrap();
        assert_eq!(shard.admit(&p, &id), Ok(s.clone()));
        assert_eq!(shard.opened.borrow().len(), 1);
        assert_eq!(shard.admit(&p, &id), Ok(s));
        // a reload to another key: the cached opening is not trusted, the id no longer opens
        let other = McpPlan { sealer: Arc::new(Sealer::new([8; 32])), ..plan(Duration::from_secs(60)) };
        assert_eq!(shard.admit(&other, &id).unwrap_err(), Refused::Unknown);
        // the same key in a new plan (a reload that kept it) still opens it
        let same = McpPlan { sealer: Arc::new(Sealer::new([7; 32])), ..plan(Duration::from_secs(60)) };
        assert!(shard.admit(&same, &id).is_ok());
        // bounded
        for i in 0..OPENED_MAX + 1 {
            shard.admit(&p, &sealed(now_secs() - i as u64 % 30).seal(&p).unwrap()).unwrap();
        }
        assert!(shard.opened.borrow().len() <= OPENED_MAX);
    }

    #[test]
    fn a_session_served_by_another_shard_within_the_ttl_is_admitted_here_too() {
        let ttl = Duration::from_secs(60);
        let p = plan(ttl);
        let (here, there) = (ShardSessions::default(), ShardSessions::default());
        let old = sealed(now_secs() - 3600).seal(&p).unwrap();
        // nobody vouches, or only for a use longer ago than the TTL: refused
        assert!(!here.seen_elsewhere(&old, None, ttl));
        assert!(!here.seen_elsewhere(&old, Instant::now().checked_sub(ttl * 2), ttl));
        assert!(here.admit(&p, &old).is_err());
        // the other shard served it (as a fresh id, then kept alive there)
        let fresh = sealed(now_secs()).seal(&p).unwrap();
        there.admit(&p, &fresh).unwrap();
        let last = there.last_seen(&fresh);
        assert!(last.is_some());
        assert!(here.seen_elsewhere(&old, last, ttl));
        assert!(here.admit(&p, &old).is_ok(), "known here from now on");
        // an ended session is not revived by another shard's word
        here.revoke(&old, ttl);
        assert!(!here.seen_elsewhere(&old, last, ttl));
    }

    #[test]
    fn renewed_upstream_sessions_replace_the_sealed_ones_until_the_session_ends() {
        let p = plan(Duration::from_secs(60));
        let shard = ShardSessions::default();
        let mut s = sealed(now_secs());
        s.t.push(Upstream { n: "b".into(), s: Some("b-1".into()), v: "2025-06-18".into() });
        let id = s.seal(&p).unwrap();
        let up = Upstream { n: "a".into(), s: Some("up-2".into()), v: "2025-11-25".into() };
        assert!(matches!(shard.renew(&id, up.clone(), Some("a-1".into()), None), Took::Kept));
        assert_eq!(shard.renewed(&id, "a"), Some(up.clone()));
        assert_eq!(shard.renewed(&id, "b"), None);
        let admitted = shard.admit(&p, &id).unwrap();
        assert_eq!(admitted.target("a"), Some(&up));
        assert_eq!(admitted.target("b").and_then(|u| u.s.as_deref()), Some("b-1"), "other targets untouched");
        assert_eq!(admitted.c, s.c, "the client's params travel in the id");
        // renewed again (it expired once more): the latest wins
        let again = Upstream { s: Some("up-3".into()), ..up.clone() };
        assert!(matches!(shard.renew(&id, again.clone(), Some("up-2".into()), None), Took::Kept));
        assert_eq!(shard.admit(&p, &id).unwrap().target("a"), Some(&again));
        let late = shard.renew(&id, up, Some("a-1".into()), None);
        assert!(matches!(late, Took::Beaten(u) if u == again), "told late of the one before");
        shard.revoke(&id, p.session_ttl);
        assert_eq!(shard.renewed(&id, "a"), None);
    }

    #[test]
    fn two_shards_renewing_one_forgotten_session_agree_and_the_loser_ends_its_own() {
        let h = Rc::new(HttpTargetPlan {
            authority: "t".into(),
            path: "/mcp".into(),
            addrs: Vec::new(),
            credential: None,
            tls: None,
        });
        let up = |s: &str| Upstream { n: "a".into(), s: Some(s.into()), v: "2025-06-18".into() };
        let from = || Some("forgotten".to_string());
        // shard x made up-1, shard y up-2, from the same forgotten session; each hears of the
        // other's after keeping its own
        let (x, y) = (ShardSessions::default(), ShardSessions::default());
        assert!(matches!(x.renew("c", up("up-1"), from(), Some(h.clone())), Took::Kept));
        assert!(matches!(y.renew("c", up("up-2"), from(), Some(h.clone())), Took::Kept));
        assert!(matches!(x.renew("c", up("up-2"), from(), None), Took::Beaten(u) if u == up("up-1")));
        assert!(matches!(y.renew("c", up("up-1"), from(), None), Took::Displaced(s, _) if s == "up-2"));
        // a third shard hears of both, in either order: the same one
        for order in [["up-1", "up-2"], ["up-2", "up-1"]] {
            let z = ShardSessions::default();
            for s in order {
                z.renew("c", up(s), from(), None);
            }
            assert_eq!(z.renewed("c", "a"), Some(up("up-1")));
        }
        assert_eq!((x.renewed("c", "a"), y.renewed("c", "a")), (Some(up("up-1")), Some(up("up-1"))));
        // made after hearing of the winner: the new one is beaten before anyone used it
        let w = ShardSessions::default();
        w.renew("c", up("up-1"), from(), None);
        assert!(matches!(w.renew("c", up("up-3"), from(), Some(h)), Took::Beaten(u) if u == up("up-1")));
    }

    #[test]
    fn stream_sessions_live_as_long_as_their_stream() {
        let p = plan(Duration::from_secs(60));
        let shard = ShardSessions::default();
        // issued long ago: the TTL does not apply to a session whose stream is open
        let s = Sealed { iat: now_secs() - 3600, ..Sealed::stream(1) };
        let id = s.seal(&p).unwrap();
        assert_eq!(shard.admit(&p, &id).unwrap().h, Some(1));
        let caller = super::super::access::StreamCaller {
            rules: None,
            id: Default::default(),
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        let (entry, rx) = shard.open_stream(&id, caller);
        assert!(shard.stream(&id).is_some());
        shard.close_stream(&id);
        assert!(entry.closed.is_fired() && shard.stream(&id).is_none());
        drop(entry);
        assert!(rx.is_disconnected(), "the last sender went with the session");
        shard.revoke(&id, p.session_ttl);
        assert_eq!(shard.admit(&p, &id).unwrap_err(), Refused::Unknown);
    }
}
