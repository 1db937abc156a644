//! One shard's life: its state, its accept loops, its mailbox (precommit/commit/abort, drain, MCP session hand-offs), and the request counter drain waits on.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use ringgate_runtime::shard::ShardInfo;
use ringgate_runtime::swap::Ack;
use ringgate_runtime::Signal;

use super::upstream::Pool;
use crate::config::Snapshot;
use crate::error::McpReject;
use crate::mcp::jsonrpc::Message;
use crate::mcp::plan::McpPlan;
use crate::mcp::session::ShardSessions;
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::Registry;

/// A message from the control thread to a shard.
pub enum ShardMsg {
    /// Build state for `snapshot`, start accepting on `listeners` (new binds), and answer `ack`.
    Precommit {
        /// The new configuration.
        snapshot: Arc<Snapshot>,
        /// This shard's sockets for binds that are new in this snapshot, by bound address.
        listeners: Vec<(SocketAddr, std::net::TcpListener)>,
        /// Where to answer.
        ack: flume::Sender<Ack>,
    },
    /// Switch to the precommitted state, then answer `done` so the control thread knows every
    /// shard serves the new configuration before it reports the reload as applied.
    Commit {
        /// Where to answer.
        done: flume::Sender<()>,
    },
    /// Drop the precommitted state.
    Abort,
    /// An MCP session was ended (DELETE) on another shard: stop accepting its id here too.
    EndSession {
        /// The session id.
        id: Arc<str>,
        /// How long the id could otherwise still be accepted.
        ttl: Duration,
        /// Learns it is revoked here.
        ack: flume::Sender<()>,
    },
    /// Another shard asks when this one last served an MCP session, to keep a session alive that
    /// is in use though not here.
    SessionSeen {
        /// The session id.
        id: Arc<str>,
        /// Where to answer.
        reply: flume::Sender<Option<std::time::Instant>>,
    },
    /// An MCP target said its list of these kinds changed (seen on another shard's upstream
    /// stream): drop its cached pages.
    CatalogChanged {
        /// The target's name.
        target: Arc<str>,
        /// The kinds of list.
        kinds: &'static [crate::mcp::names::Kind],
    },
    /// A target forgot an upstream session of an MCP client session and another shard started a
    /// new one: use it from now on; `ack` learns it is in place.
    Renewed {
        /// The client session id.
        id: Arc<str>,
        /// The target's new upstream session.
        up: crate::mcp::session::Upstream,
        /// The upstream session id it replaced (another shard may have replaced it at once).
        from: Option<String>,
        /// Where to answer.
        ack: flume::Sender<()>,
    },
    /// A legacy session (un)subscribed to a resource of a 2026-07-28 target on another shard:
    /// a GET stream of the session here listens for it.
    ListenUri {
        /// The client session id.
        session: Arc<str>,
        /// The target's name.
        target: Arc<str>,
        /// The URI as the target knows it.
        uri: Arc<str>,
        /// Subscribed, or unsubscribed.
        on: bool,
    },
    /// A legacy Streamable HTTP session (un)subscribed to a resource of an HTTP+SSE target on
    /// another shard: this shard's session with the target takes or gives up the hold too.
    SseHold {
        /// The client session id.
        session: Arc<str>,
        /// The target's name.
        target: Arc<str>,
        /// Where the target is.
        at: Box<crate::mcp::plan::HttpTargetPlan>,
        /// The URI as the target knows it.
        uri: Arc<str>,
        /// Subscribed, or unsubscribed.
        on: bool,
    },
    /// A message a client POSTed to a legacy HTTP+SSE session whose stream lives on this shard;
    /// `ack` learns whether it was taken (the POST is answered 202) or refused.
    SseMessage {
        /// The session id.
        id: Arc<str>,
        /// The MCP backend of the route the POST came in on.
        plan: Arc<McpPlan>,
        /// The message.
        msg: Message,
        /// Where to answer.
        ack: flume::Sender<Result<(), McpReject>>,
    },
    /// A client resumes a stream this shard produces (`Last-Event-ID`): replay what it missed
    /// into `tx` and keep feeding it; `ack` learns how many events were replayed, or why not.
    Resume {
        /// The client's session id (the stream must be one of this session's).
        session: Arc<str>,
        /// The last event the client saw.
        last: crate::mcp::resume::EventId,
        /// How long an unread stream stays resumable.
        retention: Duration,
        /// The resuming connection's events.
        tx: flume::Sender<Vec<u8>>,
        /// Where to answer.
        ack: flume::Sender<Result<usize, crate::mcp::resume::Refused>>,
    },
    /// Stop accepting, finish in-flight requests within `deadline`, then exit; answer with the
    /// number of connections that had to be cut.
    Drain {
        /// How long in-flight requests may take.
        deadline: Duration,
        /// Where to answer.
        done: flume::Sender<usize>,
    },
}

/// What a request is served with; swapped whole on commit. Requests keep the `Rc` they started with.
pub struct ShardState {
    /// The configuration.
    pub snap: Arc<Snapshot>,
}

struct Pending {
    state: Rc<ShardState>,
    listeners: Vec<(SocketAddr, monoio::net::TcpListener)>,
}

/// Everything shard-local.
pub struct ShardCtx {
    /// Shard index.
    pub index: usize,
    /// Metrics (this shard writes only its own slots).
    pub registry: Arc<Registry>,
    state: RefCell<Rc<ShardState>>,
    pending: RefCell<Option<Pending>>,
    /// Idle upstream connections, kept across reloads.
    pub pool: Pool,
    /// Fired when the shard starts draining.
    pub draining: Signal,
    /// Fired (and replaced) whenever a new configuration is committed, for long-lived streams
    /// that tell their clients what the reload changed.
    pub committed: RefCell<Signal>,
    /// Open client connections.
    pub connections: Cell<usize>,
    /// Requests being served right now.
    pub in_flight: Cell<usize>,
    /// Fired whenever a connection closes while draining, so drain can re-check.
    conn_closed: RefCell<Signal>,
    /// Accept loops by bound address.
    accepting: RefCell<HashMap<SocketAddr, Signal>>,
    rng: Cell<u64>,
    /// Access log buffer.
    pub log: AccessLog,
    /// MCP session state that cannot be sealed into session ids.
    pub mcp: ShardSessions,
    /// Credentials this shard has verified.
    pub auth: RefCell<crate::auth::ShardAuth>,
    /// Connections to the Redis servers of global rate limits.
    pub redis: crate::ratelimit::redis_client::RedisClients,
    /// Every shard's mailbox (this one's included), for what one shard must tell the others.
    pub siblings: Vec<flume::Sender<ShardMsg>>,
}

impl ShardCtx {
    /// Every other shard's index and mailbox.
    pub fn others(&self) -> impl Iterator<Item = (usize, &flume::Sender<ShardMsg>)> + '_ {
        self.siblings.iter().enumerate().filter(move |(i, _)| *i != self.index)
    }

    /// The state new requests use.
    #[inline]
    pub fn current(&self) -> Rc<ShardState> {
        self.state.borrow().clone()
    }

    /// A fast non-cryptographic random number (xorshift64*), for weighted backend choice.
    #[inline]
    pub fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Called by a connection when it ends.
    pub fn connection_closed(&self) {
        self.connections.set(self.connections.get().saturating_sub(1));
        self.registry.shards[self.index].active_connections.fetch_sub(1, Relaxed);
        if self.draining.is_fired() {
            let s = std::mem::take(&mut *self.conn_closed.borrow_mut());
            s.fire();
        }
    }
}

/// The shard's main future: serve `initial` until told to drain.
pub async fn run(
    info: ShardInfo,
    initial: Arc<Snapshot>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    mailbox: flume::Receiver<ShardMsg>,
    siblings: Vec<flume::Sender<ShardMsg>>,
    registry: Arc<Registry>,
) {
    let log = AccessLog::new(initial.log_format, initial.access_log);
    let ctx = Rc::new(ShardCtx {
        index: info.index,
        registry,
        state: RefCell::new(Rc::new(ShardState { snap: initial })),
        pending: RefCell::new(None),
        pool: Pool::new(),
        mcp: ShardSessions::default(),
        auth: RefCell::new(crate::auth::ShardAuth::default()),
        redis: crate::ratelimit::redis_client::RedisClients::new(info.index),
        siblings,
        draining: Signal::new(),
        committed: RefCell::new(Signal::new()),
        connections: Cell::new(0),
        in_flight: Cell::new(0),
        conn_closed: RefCell::new(Signal::new()),
        accepting: RefCell::new(HashMap::new()),
        rng: Cell::new(0x9e37_79b9_7f4a_7c15 ^ ((info.index as u64 + 1) << 32) ^ seed()),
        log,
    });
    for (key, l) in listeners {
        match monoio::net::TcpListener::from_std(l) {
            Ok(l) => start_accepting(&ctx, key, l),
            Err(e) => eprintln!("shard {}: cannot use listener {key}: {e}", info.index),
        }
    }
    let flusher = ctx.clone();
    monoio::spawn(async move {
        // lines wait at most 100 ms; an idle shard is not woken for an empty buffer
        loop {
            flusher.log.pending().await;
            monoio::time::sleep(Duration::from_millis(100)).await;
            flusher.log.flush();
        }
    });

    while let Ok(msg) = mailbox.recv_async().await {
        match msg {
            ShardMsg::Precommit { snapshot, listeners, ack } => {
                let mut ls = Vec::with_capacity(listeners.len());
                let mut err = None;
                for (key, l) in listeners {
                    match monoio::net::TcpListener::from_std(l) {
                        Ok(l) => ls.push((key, l)),
                        Err(e) => err = Some(format!("shard {}: listener {key}: {e}", ctx.index)),
                    }
                }
                let reply = match err {
                    Some(e) => Err(e),
                    None => {
                        *ctx.pending.borrow_mut() =
                            Some(Pending { state: Rc::new(ShardState { snap: snapshot }), listeners: ls });
                        Ok(())
                    }
                };
                let _ = ack.send(reply);
            }
            ShardMsg::Commit { done } => {
                if let Some(p) = ctx.pending.borrow_mut().take() {
                    let keep: Vec<SocketAddr> = p.state.snap.binds.iter().map(|b| b.listen).collect();
                    ctx.log.format.set(p.state.snap.log_format);
                    ctx.log.enabled.set(p.state.snap.access_log);
                    *ctx.state.borrow_mut() = p.state;
                    // stop accept loops of removed binds; their open connections finish normally
                    ctx.accepting.borrow_mut().retain(|k, stop| {
                        let kept = keep.contains(k);
                        if !kept {
                            stop.fire();
                        }
                        kept
                    });
                    for (key, l) in p.listeners {
                        start_accepting(&ctx, key, l);
                    }
                    crate::mcp::catalog::reloaded(&ctx);
                    let committed = std::mem::take(&mut *ctx.committed.borrow_mut());
                    committed.fire();
                }
                let _ = done.send(());
            }
            ShardMsg::Abort => {
                ctx.pending.borrow_mut().take();
            }
            ShardMsg::EndSession { id, ttl, ack } => {
                ctx.mcp.revoke(&id, ttl);
                let _ = ack.try_send(());
                crate::mcp::hub::session_ended(&ctx, &id);
            }
            ShardMsg::SessionSeen { id, reply } => {
                let _ = reply.try_send(ctx.mcp.last_seen(&id));
            }
            ShardMsg::CatalogChanged { target, kinds } => crate::mcp::catalog::forget(&ctx, &target, kinds),
            ShardMsg::Renewed { id, up, from, ack } => {
                crate::mcp::relay::renewed_elsewhere(&ctx, &id, up, from);
                let _ = ack.try_send(());
            }
            ShardMsg::ListenUri { session, target, uri, on } => ctx.mcp.subscribed.learn(&session, &target, &uri, on),
            ShardMsg::SseHold { session, target, at, uri, on } => {
                crate::mcp::hub::held_elsewhere(&ctx, session, target, at, uri, on)
            }
            ShardMsg::SseMessage { id, plan, msg, ack } => {
                let _ = ack.send(crate::mcp::legacy_sse::deliver(&ctx, &id, plan, msg));
            }
            ShardMsg::Resume { session, last, retention, tx, ack } => {
                let _ = ack.send(ctx.mcp.resume.attach(&session, last, retention, tx));
            }
            ShardMsg::Drain { deadline, done } => {
                let cut = drain(&ctx, deadline).await;
                ctx.log.flush();
                let _ = done.send(cut);
                return;
            }
        }
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

fn start_accepting(ctx: &Rc<ShardCtx>, key: SocketAddr, listener: monoio::net::TcpListener) {
    let stop = Signal::new();
    if let Some(old) = ctx.accepting.borrow_mut().insert(key, stop.clone()) {
        old.fire();
    }
    monoio::spawn(accept_loop(ctx.clone(), key, listener, stop));
}

async fn accept_loop(ctx: Rc<ShardCtx>, key: SocketAddr, listener: monoio::net::TcpListener, stop: Signal) {
    let stats = &ctx.registry.shards[ctx.index];
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = stop.fired() => break,
            _ = ctx.draining.fired() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let max = ctx.current().snap.limits.max_connections_per_shard;
                if ctx.connections.get() >= max {
                    stats.connections_rejected.fetch_add(1, Relaxed);
                    drop(stream);
                    continue;
                }
                ctx.connections.set(ctx.connections.get() + 1);
                stats.active_connections.fetch_add(1, Relaxed);
                stats.connections_total.fetch_add(1, Relaxed);
                monoio::spawn(super::conn::serve(ctx.clone(), stream, peer, key));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning
                eprintln!("shard {}: accept on {key} failed: {e}", ctx.index);
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Stop accepting; wait until no connection is open or the deadline passes. Idle keep-alive
/// connections close themselves when `draining` fires; busy ones after their current response.
async fn drain(ctx: &Rc<ShardCtx>, deadline: Duration) -> usize {
    ctx.draining.fire();
    let until = monoio::time::Instant::now() + deadline;
    while ctx.connections.get() > 0 {
        let closed = ctx.conn_closed.borrow().clone();
        let timed_out = monoio::select! {
            _ = closed.fired() => false,
            _ = monoio::time::sleep_until(until) => true,
        };
        if timed_out {
            break;
        }
    }
    ctx.connections.get()
}
