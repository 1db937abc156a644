//! Per-shard fan-out of what shared upstreams (a stdio target's shared process, the shard's HTTP+SSE session with a target) send unprompted, to the listen and session streams that hear them, with `resources/subscribe` sent upstream once per URI and `resources/unsubscribe` when its last holder leaves (at a shared process, client sessions' own subscriptions count too: see `holds`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use super::holds::Holder;
use super::jsonrpc::{Message, RpcError};
use super::plan::{HttpTargetPlan, McpPlan, TargetKind};
use super::session::Sealed;
use super::sse_client::{self, SseConn};
use super::stdio::SharedProc;
use crate::proxy::shard::{ShardCtx, ShardMsg};

/// How many notifications may wait for a slow listen stream before more are dropped for it.
const LISTENER_BACKLOG: usize = 64;

/// A shared upstream whose notifications the hub relays.
#[derive(Clone)]
pub enum Upstream {
    /// A stdio target's shared process (one for all shards: its subscriptions are counted over
    /// every shard).
    Stdio(SharedProc),
    /// This shard's HTTP+SSE session with a target.
    Sse(Rc<SseConn>),
}

impl Upstream {
    fn key(&self) -> usize {
        match self {
            Upstream::Stdio(p) => p.key(),
            Upstream::Sse(c) => Rc::as_ptr(c) as usize,
        }
    }

    fn tap(&self) -> flume::Receiver<Message> {
        match self {
            Upstream::Stdio(p) => p.tap(),
            Upstream::Sse(c) => c.tap(),
        }
    }

    /// The shard's first listener for `uri` subscribes.
    async fn subscribe(&self, ctx: &ShardCtx, uri: &str, idle: Duration) -> Result<(), RpcError> {
        match self {
            Upstream::Stdio(p) => match p.hold(uri, Holder::Hub) {
                Some(call) => call?.answer(idle).await.map(drop),
                None => Ok(()),
            },
            Upstream::Sse(c) => c.hold(ctx, uri, Holder::Hub, idle).await.map(drop),
        }
    }

    /// The shard's last listener for `uri` left.
    async fn unsubscribe(&self, ctx: &ShardCtx, uri: &str, idle: Duration) {
        match self {
            Upstream::Stdio(p) => p.release(uri, Holder::Hub),
            Upstream::Sse(c) => c.release(ctx, uri, Holder::Hub, idle).await,
        }
    }
}

/// The shard's hub: one source per shared upstream that a listen stream hears.
#[derive(Default)]
pub struct Hub {
    sources: RefCell<HashMap<usize, Weak<Source>>>,
    next_listener: Cell<u64>,
}

/// One shared upstream and the listen streams of this shard that hear it. Dropped with its last
/// listener, which stops its pump and so its stream from the upstream.
struct Source {
    upstream: Upstream,
    listeners: RefCell<Vec<(u64, flume::Sender<Message>)>>,
    /// Listeners by URI they subscribed to.
    uris: RefCell<HashMap<String, usize>>,
    /// Dropped to stop the pump.
    _stop: flume::Sender<()>,
}

/// A listen stream's place at one source: what the upstream sends, and its subscriptions,
/// given up when it is dropped.
pub struct Membership {
    ctx: Rc<ShardCtx>,
    source: Rc<Source>,
    id: u64,
    uris: Vec<String>,
    idle: Duration,
    /// What the upstream sends; ends when it goes away.
    pub rx: flume::Receiver<Message>,
}

impl Hub {
    /// Join the source for `upstream`, opening its stream on first use.
    pub fn join(&self, ctx: &Rc<ShardCtx>, upstream: Upstream, idle: Duration) -> Membership {
        let key = upstream.key();
        let mut sources = self.sources.borrow_mut();
        sources.retain(|_, s| s.strong_count() > 0);
        let source = match sources.get(&key).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let (stop, stopped) = flume::bounded(1);
                let s = Rc::new(Source {
                    upstream: upstream.clone(),
                    listeners: RefCell::new(Vec::new()),
                    uris: RefCell::new(HashMap::new()),
                    _stop: stop,
                });
                let from = upstream.tap();
                monoio::spawn(pump(Rc::downgrade(&s), from, stopped));
                sources.insert(key, Rc::downgrade(&s));
                s
            }
        };
        let id = self.next_listener.get();
        self.next_listener.set(id + 1);
        let (tx, rx) = flume::bounded(LISTENER_BACKLOG);
        source.listeners.borrow_mut().push((id, tx));
        Membership { ctx: ctx.clone(), source, id, uris: Vec::new(), idle, rx }
    }
}

/// A client session ended (every shard hears it): the subscriptions it held at this shard's
/// HTTP+SSE sessions are given up (a shared process's holds are given up once, where it ended).
pub fn session_ended(ctx: &Rc<ShardCtx>, session: &str) {
    let conns = ctx.mcp.sse_conns();
    if conns.iter().all(|c| !c.holds_any(session)) {
        return;
    }
    let (ctx, session) = (ctx.clone(), session.to_string());
    monoio::spawn(async move {
        for c in conns {
            c.forget_session(&ctx, &session, super::serve::TARGET_IDLE).await;
        }
    });
}

/// Legacy session `session` (un)subscribed (`on`) to `uri` at HTTP+SSE target `name` on this
/// shard: every other shard's session with the target takes or gives up the hold too, as the
/// session's GET stream may be open on any shard and hears only that shard's session. (A legacy
/// `/sse` session's messages are all served on its stream's shard: its holds stay there.)
pub async fn hold_everywhere(ctx: &ShardCtx, session: &str, name: &Arc<str>, at: &HttpTargetPlan, uri: &str, on: bool) {
    if ctx.mcp.stream(session).is_some() {
        return;
    }
    let (session, uri): (Arc<str>, Arc<str>) = (session.into(), uri.into());
    for (_, mb) in ctx.others() {
        let (session, target, at, uri) = (session.clone(), name.clone(), Box::new(at.clone()), uri.clone());
        let _ = mb.send_async(ShardMsg::SseHold { session, target, at, uri, on }).await;
    }
}

/// Another shard served a legacy session's `resources/(un)subscribe` at an HTTP+SSE target
/// ([`hold_everywhere`]): this shard's session with it takes the hold, opened if need be (the
/// session's GET stream may open here later), or gives it up, unsubscribing only when nobody
/// else here holds the URI.
pub fn held_elsewhere(
    ctx: &Rc<ShardCtx>,
    session: Arc<str>,
    name: Arc<str>,
    at: Box<HttpTargetPlan>,
    uri: Arc<str>,
    on: bool,
) {
    let ctx = ctx.clone();
    monoio::spawn(async move {
        let (who, idle) = (Holder::Session(&session), super::serve::TARGET_IDLE);
        if !on {
            // a session still opening may be taking the hold given up here: given up after it
            if ctx.mcp.sse_conn(&at.session_key()).is_none_or(|c| c.is_dead()) {
                return;
            }
            if let Ok(c) = sse_client::shared(&ctx, &name, &at, idle).await {
                c.release(&ctx, &uri, who, idle).await;
            }
            return;
        }
        let held = match sse_client::shared(&ctx, &name, &at, idle).await {
            Ok(c) => c.hold(&ctx, &uri, who, idle).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = held {
            eprintln!("mcp target {name}: a session's subscription to {uri} not held on this shard: {}", e.message);
        }
    });
}

/// The targets a session has an upstream of its own with, which [`join_shared`] leaves out.
pub fn own_upstreams(s: &Sealed) -> Vec<String> {
    s.t.iter().filter(|u| u.s.is_some()).map(|u| u.n.clone()).collect()
}

/// Join the shard's hub for every stdio and HTTP+SSE target of `plan` not named in `own` (the
/// session's [`own_upstreams`]): their shared process, the shard's shared session, started or
/// opened if needed; the memberships by target index, and whether every such target was joined.
pub async fn join_shared(
    ctx: &Rc<ShardCtx>,
    plan: &McpPlan,
    own: &[String],
    idle: Duration,
) -> (Vec<(usize, Membership)>, bool) {
    let mut members = Vec::new();
    let mut all = true;
    for (ti, t) in plan.targets.iter().enumerate() {
        if own.iter().any(|n| **n == *t.name) {
            continue;
        }
        let up = match &t.kind {
            TargetKind::Stdio(s) => s.shared_proc().await.map(Upstream::Stdio),
            TargetKind::Sse(h) => sse_client::shared(ctx, &t.name, h, idle).await.map(Upstream::Sse),
            _ => continue,
        };
        match up {
            Ok(up) => members.push((ti, ctx.mcp.hub.join(ctx, up, idle))),
            Err(e) => {
                all = false;
                eprintln!("mcp target {}: not heard by listen and GET streams: {}", t.name, e.message);
            }
        }
    }
    (members, all)
}

/// Relay what the upstream sends to every listener of the source, until the upstream's stream
/// ends (its listeners' streams end with it) or the source is dropped.
async fn pump(source: Weak<Source>, from: flume::Receiver<Message>, stop: flume::Receiver<()>) {
    loop {
        let m = monoio::select! {
            m = from.recv_async() => m.ok(),
            _ = stop.recv_async() => return,
        };
        let Some(s) = source.upgrade() else { return };
        let Some(m) = m else {
            // the listeners see their stream end and listen again, on a new upstream
            s.listeners.borrow_mut().clear();
            return;
        };
        // a listener that cannot keep up loses this one rather than hold the others back
        s.listeners
            .borrow_mut()
            .retain(|(_, tx)| !matches!(tx.try_send(m.clone()), Err(flume::TrySendError::Disconnected(_))));
    }
}

impl Membership {
    /// Subscribe to `uri` (as the upstream knows it): upstream only for the shard's first listener.
    pub async fn subscribe(&mut self, uri: &str) -> Result<(), RpcError> {
        self.uris.push(uri.to_string());
        let first = {
            let mut uris = self.source.uris.borrow_mut();
            let n = uris.entry(uri.to_string()).or_insert(0);
            *n += 1;
            *n == 1
        };
        if !first {
            return Ok(());
        }
        let subscribed = self.source.upstream.subscribe(&self.ctx, uri, self.idle).await;
        if subscribed.is_err() {
            // not held: the next listener for it tries again
            self.uris.pop();
            let mut uris = self.source.uris.borrow_mut();
            if let Some(n) = uris.get_mut(uri) {
                *n -= 1;
                if *n == 0 {
                    uris.remove(uri);
                    if let Upstream::Stdio(p) = &self.source.upstream {
                        p.release(uri, Holder::Hub);
                    }
                }
            }
        }
        subscribed
    }
}

impl Membership {
    /// Whether client session `session` subscribed to `uri` (as the upstream knows it) at this
    /// upstream, so that its streams carry the upstream's updates of it. A shared process is one
    /// for every shard and keeps its holds itself, so the session's `resources/subscribe` may
    /// have landed on any shard, and its stream on any other. A shard's HTTP+SSE session is its
    /// own: a Streamable HTTP session's subscription served on another shard is held here too
    /// ([`hold_everywhere`]; a legacy `/sse` session's messages are all served on its stream's
    /// shard).
    pub fn held_by(&self, uri: &str, session: &str) -> bool {
        match &self.source.upstream {
            Upstream::Stdio(p) => p.held_by(uri, session),
            Upstream::Sse(c) => c.held_by(uri, session),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.source.listeners.borrow_mut().retain(|(id, _)| *id != self.id);
        let mut last = Vec::new();
        {
            let mut uris = self.source.uris.borrow_mut();
            for u in self.uris.drain(..) {
                match uris.get_mut(&u) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        uris.remove(&u);
                        last.push(u);
                    }
                    None => {}
                }
            }
        }
        if last.is_empty() {
            return;
        }
        let (ctx, upstream, idle) = (self.ctx.clone(), self.source.upstream.clone(), self.idle);
        // dropped where nothing can wait (a stream's end): the upstream hears of it meanwhile
        monoio::spawn(async move {
            for u in last {
                upstream.unsubscribe(&ctx, &u, idle).await;
            }
        });
    }
}
