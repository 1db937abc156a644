//! Per-shard cache of the list pages targets answer (tools, prompts, resources, resource templates), kept as JSON text so that a hit is spliced into the merged answer without building a tree, and dropped when its target says the list changed.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cursor;
use super::flight::Flights;
use super::jsonrpc::{Message, RpcError};
use super::names::{has_scheme, Kind};
use crate::proxy::shard::{ShardCtx, ShardMsg};

/// The `result` labels of lookups: served from the cache, fetched (and maybe stored), or not
/// looked up because the target is never cached.
pub const RESULTS: [&str; 3] = ["hit", "miss", "bypass"];
/// Index of a hit, a miss and a bypass in [`RESULTS`].
pub const HIT: usize = 0;
/// See [`HIT`].
pub const MISS: usize = 1;
/// See [`HIT`].
pub const BYPASS: usize = 2;
/// The `kind` labels of lookups, by [`kind_index`].
pub const KINDS: [&str; 4] = ["tools", "prompts", "resources", "resource_templates"];

/// Index of `kind` in [`KINDS`].
pub fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Tool => 0,
        Kind::Prompt => 1,
        Kind::Resource => 2,
        Kind::ResourceTemplate => 3,
    }
}

/// The kinds a target's notification says changed (none for other notifications).
pub fn changed_kinds(method: &str) -> &'static [Kind] {
    match method {
        "notifications/tools/list_changed" => &[Kind::Tool],
        "notifications/prompts/list_changed" => &[Kind::Prompt],
        // templates have no notification of their own
        "notifications/resources/list_changed" => &[Kind::Resource, Kind::ResourceTemplate],
        _ => &[],
    }
}

// Invalidation has to be seen by every shard before the client that got the `list_changed`
// can list again, and it may come from a thread that is no shard (a shared stdio process's
// reader). A counter per stripe of (target, kind), bumped before the notification goes
// anywhere and compared on every hit, gives that order without waiting for other shards;
// a stripe shared by two targets only costs the other one a miss.
const STRIPES: usize = 64;
static EPOCHS: [AtomicU64; STRIPES] = [const { AtomicU64::new(0) }; STRIPES];

fn stripe(target: &str, kind: Kind) -> &'static AtomicU64 {
    // FNV-1a: a few instructions per byte of a short name
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ kind_index(kind) as u64;
    for b in target.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    &EPOCHS[(h % STRIPES as u64) as usize]
}

/// The invalidation epoch of `target`'s pages of `kind`, read before its list is fetched.
pub fn epoch(target: &str, kind: Kind) -> u64 {
    stripe(target, kind).load(Ordering::Acquire)
}

/// `target` says its lists of `method`'s kind changed: pages fetched before now are no longer
/// served on any shard. Returns the kinds concerned (empty for other notifications).
pub fn invalidate(target: &str, method: &str) -> &'static [Kind] {
    let kinds = changed_kinds(method);
    for k in kinds {
        stripe(target, *k).fetch_add(1, Ordering::AcqRel);
    }
    kinds
}

/// A message target `target` sent on one of this shard's upstream streams, before it goes on to
/// a client: a `list_changed` drops the target's pages here at once, and on the other shards
/// when they read their mailbox (the epoch keeps them from serving one meanwhile).
pub fn observe(ctx: &ShardCtx, target: &Arc<str>, msg: &Message) {
    let Message::Notification { method, .. } = msg else { return };
    let kinds = invalidate(target, method);
    if kinds.is_empty() {
        return;
    }
    forget(ctx, target, kinds);
    for (_, s) in ctx.others() {
        // a full mailbox only delays freeing the memory: the pages are stale already
        let _ = s.try_send(ShardMsg::CatalogChanged { target: target.clone(), kinds });
    }
}

/// Drop this shard's pages of `target` of `kinds`.
pub fn forget(ctx: &ShardCtx, target: &str, kinds: &[Kind]) {
    ctx.mcp.catalog.drop_target(target, kinds);
    publish(ctx);
}

/// Keep only the pages of targets the configuration now in use still has, unchanged.
pub fn reloaded(ctx: &ShardCtx) {
    let state = ctx.current();
    let routes = state.snap.binds.iter().flat_map(|b| &b.listeners).flat_map(|l| &l.routes);
    let plans: Vec<_> = routes.filter_map(|r| r.mcp.as_ref()).collect();
    ctx.mcp.catalog.retain_targets(|scope, target, fp| {
        plans.iter().any(|p| *p.scope == *scope && p.targets.iter().any(|t| *t.name == *target && t.catalog_fp == fp))
    });
    publish(ctx);
}

/// Export this shard's cache size.
pub fn publish(ctx: &ShardCtx) {
    let bytes = ctx.mcp.catalog.bytes() as i64;
    ctx.registry.shards[ctx.index].mcp_catalog_bytes.store(bytes, Ordering::Relaxed);
}

/// Whether a freshly fetched page may be kept, for how long and whether it is `public`.
/// `pooled`: it came through an upstream shared by every caller, so it cannot depend on one;
/// through a client's own upstream session only a page hinted `public` is kept. A 2026-07-28
/// page's `ttlMs` bounds `max_age`; `ttlMs: 0`, `private` and anything but a complete result
/// (`input_required`) are not kept.
pub fn admit(result: &Value, max_age: Duration, pooled: bool) -> Option<(Duration, bool)> {
    if result.get("resultType").and_then(Value::as_str).is_some_and(|t| t != "complete") {
        return None;
    }
    let scope = result.get("cacheScope").and_then(Value::as_str);
    let public = scope == Some("public");
    if scope == Some("private") || !(pooled || public) {
        return None;
    }
    let age = match result.get("ttlMs").and_then(Value::as_u64) {
        Some(0) => return None,
        Some(ms) => max_age.min(Duration::from_millis(ms)),
        None => max_age,
    };
    (!age.is_zero()).then_some((age, public))
}

/// One target's list page as JSON text: its items (unprefixed, each with where the target's
/// prefix goes) and its `nextCursor`.
pub struct Page {
    text: Box<[u8]>,
    keys: Box<str>,
    items: Box<[Item]>,
    next: Option<Box<str>>,
}

struct Item {
    text: Range<u32>,
    /// The item's key (name or URI) in `keys`, if it has a string one.
    key: Option<Range<u32>>,
    /// Where in `text` the prefix goes (the start of the key's string), if it takes one.
    prefix_at: Option<u32>,
}

impl Page {
    /// The page of a target's list `result`; `None` if it is too large to index.
    pub fn build(kind: Kind, result: &Value) -> Option<Page> {
        let empty = Vec::new();
        let list = result.get(kind.items_field()).and_then(Value::as_array).unwrap_or(&empty);
        let mut text = Vec::with_capacity(list.len() * 256);
        let mut keys = String::new();
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            let start = text.len();
            let at = write_item(&mut text, kind, item, &[]);
            let key = item.get(kind.key_field()).and_then(Value::as_str).map(|k| {
                let s = keys.len();
                keys.push_str(k);
                s..keys.len()
            });
            let r = |n: usize| u32::try_from(n).ok();
            items.push(Item {
                text: r(start)?..r(text.len())?,
                key: match key {
                    Some(k) => Some(r(k.start)?..r(k.end)?),
                    None => None,
                },
                prefix_at: match at {
                    Some(a) => Some(r(a)?),
                    None => None,
                },
            });
        }
        let next = result.get("nextCursor").and_then(Value::as_str).map(Box::from);
        Some(Page { text: text.into(), keys: keys.into(), items: items.into(), next })
    }

    /// What the page holds, in bytes, as counted against `maxBytes`.
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 160;
        self.text.len()
            + self.keys.len()
            + self.items.len() * std::mem::size_of::<Item>()
            + self.next.as_ref().map_or(0, |n| n.len())
            + OVERHEAD
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the page has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Write `item` as JSON with `prefix` in front of its key (a tool's or prompt's name, a
/// resource's URI with a scheme); returns where the key's string starts, if it took the prefix.
pub fn write_item(out: &mut Vec<u8>, kind: Kind, item: &Value, prefix: &[u8]) -> Option<usize> {
    let field = kind.key_field();
    let key = item.get(field).and_then(Value::as_str);
    let (Value::Object(map), Some(key)) = (item, key) else {
        let _ = serde_json::to_writer(&mut *out, item);
        return None;
    };
    if matches!(kind, Kind::Resource | Kind::ResourceTemplate) && !has_scheme(key) {
        let _ = serde_json::to_writer(&mut *out, item);
        return None;
    }
    let mut at = None;
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        if k == field {
            out.push(b'"');
            at = Some(out.len());
            out.extend_from_slice(prefix);
            // the key's escaped text without its quotes
            let s = out.len();
            let _ = serde_json::to_writer(&mut *out, key);
            out.remove(s);
        } else {
            let _ = serde_json::to_writer(&mut *out, v);
        }
    }
    out.push(b'}');
    at
}

/// A merged list result written as JSON text, part by part: cached pages are copied, fresh
/// ones written from their trees.
pub struct ListWriter {
    kind: Kind,
    out: Vec<u8>,
    first: bool,
    pending: Vec<(String, String)>,
    prefix: Vec<u8>,
}

impl ListWriter {
    /// An empty list of `kind`, with room for about `capacity` bytes.
    pub fn new(kind: Kind, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 256);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(kind.items_field().as_bytes());
        out.extend_from_slice(b"\":[");
        ListWriter { kind, out, first: true, pending: Vec::new(), prefix: Vec::new() }
    }

    fn set_prefix(&mut self, target: &str, prefixed: bool) {
        self.prefix.clear();
        if prefixed {
            self.prefix.extend_from_slice(target.as_bytes());
            self.prefix.push(if matches!(self.kind, Kind::Tool | Kind::Prompt) { b'_' } else { b'+' });
        }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// Target `target`'s cached page: the items `keep` keeps (given each one's key).
    pub fn cached(&mut self, target: &str, prefixed: bool, page: &Page, mut keep: impl FnMut(Option<&str>) -> bool) {
        self.set_prefix(target, prefixed);
        for it in page.items.iter() {
            let key = it.key.as_ref().map(|k| &page.keys[k.start as usize..k.end as usize]);
            if !keep(key) {
                continue;
            }
            self.comma();
            let (s, e) = (it.text.start as usize, it.text.end as usize);
            match it.prefix_at.map(|a| a as usize) {
                Some(a) if !self.prefix.is_empty() => {
                    self.out.extend_from_slice(&page.text[s..a]);
                    self.out.extend_from_slice(&self.prefix);
                    self.out.extend_from_slice(&page.text[a..e]);
                }
                _ => self.out.extend_from_slice(&page.text[s..e]),
            }
        }
        if let Some(next) = &page.next {
            self.pending.push((target.to_owned(), next.to_string()));
        }
    }

    /// Target `target`'s fetched page (filtered already).
    pub fn fresh(&mut self, target: &str, prefixed: bool, page: &Value) {
        self.set_prefix(target, prefixed);
        if let Some(items) = page.get(self.kind.items_field()).and_then(Value::as_array) {
            for item in items {
                self.comma();
                let prefix = std::mem::take(&mut self.prefix);
                write_item(&mut self.out, self.kind, item, &prefix);
                self.prefix = prefix;
            }
        }
        // "" is a valid cursor since 2026-07-28; only an absent or null nextCursor ends a target.
        if let Some(next) = page.get("nextCursor").and_then(Value::as_str) {
            self.pending.push((target.to_owned(), next.to_owned()));
        }
    }

    /// The result object's text; `extra` (members, each after a comma) goes at its end.
    pub fn finish(mut self, extra: &[u8]) -> Vec<u8> {
        self.out.push(b']');
        if let Some(next) = cursor::encode(self.kind.list_method(), &self.pending) {
            self.out.extend_from_slice(b",\"nextCursor\":");
            let _ = serde_json::to_writer(&mut self.out, &next);
        }
        self.out.extend_from_slice(extra);
        self.out.push(b'}');
        self.out
    }
}

/// What names a cached page: the route (scope), the target, the kind, the target's cursor, and
/// the target's configuration fingerprint (a reload that changes the target changes it).
pub struct Key<'a> {
    pub scope: &'a Arc<str>,
    pub target: &'a Arc<str>,
    pub kind: Kind,
    pub cursor: Option<&'a str>,
    pub fp: u64,
}

/// What a fetch of a page is shared under: the fields of its [`Key`], owned.
pub type FlightKey = (Arc<str>, Arc<str>, usize, Option<Box<str>>, u64);

impl Key<'_> {
    /// The key concurrent misses of this page share one fetch under.
    pub fn flight(&self) -> FlightKey {
        (self.scope.clone(), self.target.clone(), kind_index(self.kind), self.cursor.map(Box::from), self.fp)
    }

    fn hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.scope.hash(&mut h);
        self.target.hash(&mut h);
        kind_index(self.kind).hash(&mut h);
        self.cursor.hash(&mut h);
        h.finish()
    }
}

struct Entry {
    scope: Arc<str>,
    target: Arc<str>,
    kind: Kind,
    cursor: Option<Box<str>>,
    fp: u64,
    epoch: u64,
    expires: Instant,
    public: bool,
    used: u64,
    size: usize,
    page: Rc<Page>,
}

impl Entry {
    fn is(&self, k: &Key<'_>) -> bool {
        self.kind == k.kind
            && *self.target == **k.target
            && *self.scope == **k.scope
            && self.cursor.as_deref() == k.cursor
    }
}

/// One shard's cached pages, by the hash of their [`Key`] (a colliding key is a miss).
#[derive(Default)]
pub struct Catalog {
    entries: RefCell<HashMap<u64, Entry>>,
    bytes: Cell<usize>,
    tick: Cell<u64>,
    /// Pages being fetched from targets reached through a pooled upstream, tagged with the
    /// invalidation epoch they were fetched at: concurrent misses of one page wait for its one
    /// fetch, and get its error too (a failing target is not asked once per waiting client).
    pub flights: Flights<FlightKey, Result<Value, RpcError>>,
}

impl Catalog {
    /// The page under `key` if it is still good; `public_only` for a caller reached through its
    /// own upstream session, which may use only pages hinted public.
    pub fn get(&self, key: &Key<'_>, public_only: bool, now: Instant) -> Option<Rc<Page>> {
        let h = key.hash();
        let mut map = self.entries.borrow_mut();
        let e = map.get_mut(&h)?;
        if !e.is(key) {
            return None;
        }
        if e.fp != key.fp || e.expires <= now || e.epoch != epoch(key.target, key.kind) {
            let size = e.size;
            map.remove(&h);
            self.bytes.set(self.bytes.get() - size);
            return None;
        }
        if public_only && !e.public {
            return None;
        }
        let t = self.tick.get() + 1;
        self.tick.set(t);
        e.used = t;
        Some(e.page.clone())
    }

    /// Keep `page` under `key` for `ttl`, as fetched at invalidation `epoch`; the least recently
    /// used pages go to stay within `max_bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        key: &Key<'_>,
        epoch: u64,
        ttl: Duration,
        public: bool,
        page: Page,
        max_bytes: usize,
        now: Instant,
    ) {
        // fetched before a `list_changed`: storing it would only push out a newer fetch's page
        if epoch != self::epoch(key.target, key.kind) {
            return;
        }
        let size = page.size();
        let h = key.hash();
        let mut map = self.entries.borrow_mut();
        if let Some(old) = map.remove(&h) {
            self.bytes.set(self.bytes.get() - old.size);
        }
        if size > max_bytes {
            return;
        }
        let t = self.tick.get() + 1;
        self.tick.set(t);
        let mut bytes = self.bytes.get() + size;
        while bytes > max_bytes {
            // eviction is rare (a full cache) and the table small: a scan beats keeping an order
            let Some((&oldest, _)) = map.iter().min_by_key(|(_, e)| e.used) else { break };
            if let Some(e) = map.remove(&oldest) {
                bytes -= e.size;
            }
        }
        map.insert(
            h,
            Entry {
                scope: key.scope.clone(),
                target: key.target.clone(),
                kind: key.kind,
                cursor: key.cursor.map(Box::from),
                fp: key.fp,
                epoch,
                expires: now + ttl,
                public,
                used: t,
                size,
                page: Rc::new(page),
            },
        );
        self.bytes.set(bytes);
    }

    /// Drop `target`'s pages of `kinds` (in every route).
    pub fn drop_target(&self, target: &str, kinds: &[Kind]) {
        self.retain(|e| !(kinds.contains(&e.kind) && *e.target == *target));
    }

    /// Keep only the pages of targets for which `live(scope, target, fingerprint)` holds.
    pub fn retain_targets(&self, live: impl Fn(&str, &str, u64) -> bool) {
        self.retain(|e| live(&e.scope, &e.target, e.fp));
    }

    fn retain(&self, keep: impl Fn(&Entry) -> bool) {
        let mut bytes = self.bytes.get();
        self.entries.borrow_mut().retain(|_, e| {
            let k = keep(e);
            if !k {
                bytes -= e.size;
            }
            k
        });
        self.bytes.set(bytes);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Pages held.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether no page is held.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key<'a>(scope: &'a Arc<str>, target: &'a Arc<str>, cursor: Option<&'a str>) -> Key<'a> {
        Key { scope, target, kind: Kind::Tool, cursor, fp: 1 }
    }

    #[test]
    fn hints_decide_what_is_kept() {
        let age = Duration::from_secs(30);
        assert_eq!(admit(&json!({"tools": []}), age, true), Some((age, false)));
        assert_eq!(admit(&json!({"tools": []}), age, false), None, "a session's own upstream, no hints");
        let public = json!({"tools": [], "ttlMs": 5000, "cacheScope": "public"});
        assert_eq!(admit(&public, age, false), Some((Duration::from_secs(5), true)));
        let long = json!({"tools": [], "ttlMs": 600000, "cacheScope": "public"});
        assert_eq!(admit(&long, age, true), Some((age, true)), "maxAge bounds the hint");
        assert_eq!(admit(&json!({"ttlMs": 0, "cacheScope": "public"}), age, true), None);
        assert_eq!(admit(&json!({"ttlMs": 5000, "cacheScope": "private"}), age, true), None);
        assert_eq!(admit(&json!({"resultType": "input_required", "inputRequests": {}}), age, true), None);
        assert_eq!(admit(&json!({"resultType": "complete", "tools": []}), age, true), Some((age, false)));
    }

    #[test]
    fn a_cached_page_splices_like_the_tree_merge() {
        let a = json!({"tools": [{"name": "echo", "description": "say \"hi\"", "inputSchema": {"properties": {"name": {}}}}, {"title": "no name"}], "nextCursor": "p2"});
        let b = json!({"tools": [{"name": "now"}]});
        let page = Page::build(Kind::Tool, &a).unwrap();
        assert_eq!(page.len(), 2);
        let mut w = ListWriter::new(Kind::Tool, 0);
        w.cached("a", true, &page, |_| true);
        w.fresh("b", true, &b);
        let text = w.finish(br#","resultType":"complete""#);
        let got: Value = serde_json::from_slice(&text).unwrap();
        let mut want = super::super::merge::merge_list(Kind::Tool, [("a", a.clone()), ("b", b.clone())], true);
        want["resultType"] = json!("complete");
        assert_eq!(got, want);
        // unprefixed, and an item filtered by its key
        let mut w = ListWriter::new(Kind::Tool, 0);
        w.cached("a", false, &page, |k| k == Some("echo"));
        let got: Value = serde_json::from_slice(&w.finish(b"")).unwrap();
        assert_eq!(got["tools"], json!([a["tools"][0]]));
    }

    #[test]
    fn resources_take_the_prefix_only_with_a_scheme() {
        let r = json!({"resources": [{"uri": "test://x", "name": "x"}, {"uri": "relative", "name": "y"}]});
        let page = Page::build(Kind::Resource, &r).unwrap();
        let mut w = ListWriter::new(Kind::Resource, 0);
        w.cached("t", true, &page, |_| true);
        let got: Value = serde_json::from_slice(&w.finish(b"")).unwrap();
        assert_eq!(got["resources"][0]["uri"], "t+test://x");
        assert_eq!(got["resources"][1]["uri"], "relative");
    }

    #[test]
    fn pages_expire_are_invalidated_and_evicted() {
        let (scope, t1, t2) = (Arc::from("r"), Arc::from("catalog-unit-a"), Arc::from("catalog-unit-b"));
        let page = || Page::build(Kind::Tool, &json!({"tools": [{"name": "x"}]})).unwrap();
        let size = page().size();
        let cat = Catalog::default();
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        let k1 = key(&scope, &t1, None);
        cat.put(&k1, epoch(&t1, Kind::Tool), ttl, false, page(), 10 * size, now);
        assert!(cat.get(&k1, false, now).is_some());
        assert!(cat.get(&k1, true, now).is_none(), "not public");
        assert!(cat.get(&key(&scope, &t1, Some("c")), false, now).is_none(), "another cursor");
        assert!(cat.get(&Key { fp: 2, ..key(&scope, &t1, None) }, false, now).is_none(), "reloaded target");
        assert_eq!(cat.bytes(), 0, "a stale page is dropped when met");
        cat.put(&k1, epoch(&t1, Kind::Tool), ttl, false, page(), 10 * size, now);
        assert!(cat.get(&k1, false, now + ttl).is_none(), "expired");
        cat.put(&k1, epoch(&t1, Kind::Tool), ttl, false, page(), 10 * size, now);
        assert_eq!(invalidate(&t1, "notifications/prompts/list_changed"), [Kind::Prompt]);
        assert!(cat.get(&k1, false, now).is_some(), "another kind changed");
        let before = epoch(&t1, Kind::Tool);
        invalidate(&t1, "notifications/tools/list_changed");
        assert!(cat.get(&k1, false, now).is_none(), "list_changed");
        cat.put(&k1, before, ttl, false, page(), 10 * size, now);
        assert!(cat.is_empty(), "a page fetched before the list changed is not kept");
        // room for two: the least recently used goes
        let k2 = key(&scope, &t2, None);
        let k3 = key(&scope, &t2, Some("p2"));
        cat.put(&k1, epoch(&t1, Kind::Tool), ttl, false, page(), 2 * size, now);
        cat.put(&k2, epoch(&t2, Kind::Tool), ttl, false, page(), 2 * size, now);
        assert!(cat.get(&k1, false, now).is_some());
        cat.put(&k3, epoch(&t2, Kind::Tool), ttl, false, page(), 2 * size, now);
        assert_eq!((cat.len(), cat.bytes()), (2, 2 * size));
        assert!(cat.get(&k2, false, now).is_none(), "evicted");
        assert!(cat.get(&k1, false, now).is_some());
        cat.drop_target(&t1, &[Kind::Tool]);
        assert_eq!((cat.len(), cat.bytes()), (1, size));
        cat.retain_targets(|_, _, _| false);
        assert!(cat.is_empty());
        assert_eq!(cat.bytes(), 0);
    }
}
