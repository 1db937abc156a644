//! A shard's Redis connections for global rate limits: one per address, lazy, pipelined, reconnected with backoff.

// Pipelining without locks: a call appends its command to `Link::out` and its waiter to `Link::waiters` in
// one synchronous step, the writer task writes `out` in order and Redis answers in order, so the reader hands
// the n-th reply to the n-th waiter. Everything is shard-local (`Rc`, `RefCell`); each shard has its own
// connection. Any error (connect, I/O, protocol, a call timing out) closes the connection and fails every
// call queued on it; the next call reconnects at once, and while attempts keep failing they are spaced by a
// doubling backoff during which calls fail immediately: a Redis that is down costs a request its failure
// mode, not a timeout.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use ringgate_runtime::Signal;

use super::redis::{self, GlobalLimit, Mode, Reply, ReplyReader};
use super::Verdict;

/// Longest wait for a TCP connection (calls give up sooner, at their own timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Backoff after the second failed attempt in a row; it doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest backoff, so a recovered Redis is used again within this.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Calls waiting on one connection before new ones are refused (a stalled Redis must not eat memory).
const MAX_WAITING: usize = 16_384;

/// Why a call got no usable reply (without the server's address, which clients need not learn); the
/// request's failure mode decides what happens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("redis: {0}")]
pub struct Unavailable(pub String);

/// This shard's connections, by Redis address.
pub struct RedisClients {
    shard: usize,
    conns: RefCell<HashMap<SocketAddr, Rc<Conn>>>,
}

impl RedisClients {
    /// No connection yet; `shard` names this shard in log lines.
    pub fn new(shard: usize) -> Self {
        RedisClients { shard, conns: RefCell::new(HashMap::new()) }
    }

    /// The connection to `addr` (opened by its first call; kept across reloads).
    pub fn conn(&self, addr: SocketAddr) -> Rc<Conn> {
        self.conns
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| {
                Rc::new(Conn {
                    addr,
                    shard: self.shard,
                    link: RefCell::new(None),
                    backoff: Cell::new(Duration::ZERO),
                    retry_at: Cell::new(None),
                    down: RefCell::new(None),
                })
            })
            .clone()
    }
}

/// One Redis address as seen from one shard: its current link, or when to try again.
pub struct Conn {
    addr: SocketAddr,
    shard: usize,
    link: RefCell<Option<Rc<Link>>>,
    /// Wait before the next attempt after a failure; zero while the last attempt worked.
    backoff: Cell<Duration>,
    retry_at: Cell<Option<Instant>>,
    /// Why the last link failed, until a reply arrives again.
    down: RefCell<Option<String>>,
}

/// One TCP connection (connecting or connected) and the calls queued on it.
#[derive(Default)]
struct Link {
    /// Commands not yet written.
    out: RefCell<Vec<u8>>,
    /// One per command queued or written and not yet answered, in order.
    waiters: RefCell<VecDeque<Waiter>>,
    /// The writer task, parked while `out` is empty.
    writer: Cell<Option<Waker>>,
    /// Fired when the link fails; its tasks stop.
    closed: Signal,
}

enum Waiter {
    /// The `SCRIPT LOAD` every link starts with.
    ScriptLoad,
    /// A caller's command.
    Call(Rc<Slot>),
}

/// Where a reply (or the link's failure) is handed to its caller.
#[derive(Default)]
struct Slot {
    reply: RefCell<Option<Result<Reply, String>>>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn set(&self, r: Result<Reply, String>) {
        *self.reply.borrow_mut() = Some(r);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// A queued run of the bucket script.
pub struct Call {
    conn: Rc<Conn>,
    link: Rc<Link>,
    slot: Rc<Slot>,
    key: Vec<u8>,
    limit: GlobalLimit,
    cost: i64,
    mode: Mode,
}

impl Conn {
    /// Queues one run of the bucket script (`EVALSHA`) on the key; await [`Call::verdict`], or drop the call
    /// to not wait for the reply (the command still runs).
    pub fn bucket(self: &Rc<Self>, key: &[u8], limit: GlobalLimit, cost: i64, mode: Mode) -> Result<Call, Unavailable> {
        let (link, slot) =
            self.send(|out| redis::encode_evalsha(out, redis::script_sha1(), key, &limit, cost, mode))?;
        Ok(Call { conn: self.clone(), link, slot, key: key.to_vec(), limit, cost, mode })
    }

    /// Queues a command on the current link, opening one if none is open and no backoff is running.
    fn send(self: &Rc<Self>, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(Rc<Link>, Rc<Slot>), Unavailable> {
        let link = self.link()?;
        if link.waiters.borrow().len() >= MAX_WAITING {
            return Err(Unavailable(format!("{MAX_WAITING} calls already waiting")));
        }
        encode(&mut link.out.borrow_mut());
        let slot = Rc::new(Slot::default());
        link.waiters.borrow_mut().push_back(Waiter::Call(slot.clone()));
        if let Some(w) = link.writer.take() {
            w.wake();
        }
        Ok((link, slot))
    }

    fn link(self: &Rc<Self>) -> Result<Rc<Link>, Unavailable> {
        if let Some(l) = self.link.borrow().as_ref() {
            return Ok(l.clone());
        }
        let now = Instant::now();
        if let Some(at) = self.retry_at.get().filter(|at| *at > now) {
            let why = self.down.borrow().clone().unwrap_or_default();
            let left = at - now;
            return Err(Unavailable(format!("{why} (next attempt in {}ms)", left.as_millis())));
        }
        let link = Rc::new(Link::default());
        // Loaded once per connection; EVALSHA calls are pipelined right behind it (the hash is known).
        redis::encode_script_load(&mut link.out.borrow_mut());
        link.waiters.borrow_mut().push_back(Waiter::ScriptLoad);
        *self.link.borrow_mut() = Some(link.clone());
        monoio::spawn(drive(self.clone(), link.clone()));
        Ok(link)
    }

    /// Closes `link`, fails its calls, and (when it is the current link) schedules the next attempt.
    fn fail(&self, link: &Rc<Link>, why: String) {
        link.closed.fire();
        link.out.borrow_mut().clear();
        let waiters = std::mem::take(&mut *link.waiters.borrow_mut());
        for w in waiters {
            if let Waiter::Call(slot) = w {
                slot.set(Err(why.clone()));
            }
        }
        if let Some(w) = link.writer.take() {
            w.wake();
        }
        let current = self.link.borrow().as_ref().is_some_and(|l| Rc::ptr_eq(l, link));
        if !current {
            return;
        }
        self.link.borrow_mut().take();
        let wait = self.backoff.get();
        self.retry_at.set(Some(Instant::now() + wait));
        self.backoff.set((wait * 2).clamp(MIN_BACKOFF, MAX_BACKOFF));
        if self.down.borrow().is_none() {
            let addr = self.addr;
            eprintln!("shard {}: redis {addr}: {why}; global rate limits use their failure mode", self.shard);
        }
        *self.down.borrow_mut() = Some(why);
    }

    /// A reply arrived: attempts are no longer spaced out.
    fn healthy(&self) {
        self.backoff.set(Duration::ZERO);
        self.retry_at.set(None);
        if self.down.borrow_mut().take().is_some() {
            eprintln!("shard {}: redis {} answers again", self.shard, self.addr);
        }
    }

    /// Hands `reply` to the oldest waiter; `Err` when the stream is out of sync.
    fn deliver(&self, link: &Link, reply: Reply) -> Result<(), String> {
        let Some(waiter) = link.waiters.borrow_mut().pop_front() else {
            return Err("a reply nobody asked for".into());
        };
        match waiter {
            Waiter::Call(slot) => slot.set(Ok(reply)),
            Waiter::ScriptLoad => match reply {
                Reply::Bulk(Some(sha)) if sha == redis::script_sha1() => {}
                // e.g. an ACL refusing SCRIPT: EVALSHA then answers NOSCRIPT and each call falls back to EVAL
                Reply::Error(_) => {}
                other => return Err(format!("SCRIPT LOAD answered {other:?}")),
            },
        }
        self.healthy();
        Ok(())
    }
}

impl Call {
    /// The script's verdict, by `deadline`. A `NOSCRIPT` reply (Redis restarted or flushed its scripts)
    /// is answered by running the script by its text.
    pub async fn verdict(self, deadline: Instant) -> Result<Verdict, Unavailable> {
        let mut reply = self.conn.wait(&self.link, &self.slot, deadline).await?;
        if redis::is_noscript(&reply) {
            let (key, limit, cost, mode) = (&self.key, &self.limit, self.cost, self.mode);
            let (link, slot) = self.conn.send(|out| redis::encode_eval(out, key, limit, cost, mode))?;
            reply = self.conn.wait(&link, &slot, deadline).await?;
        }
        redis::parse_verdict(&reply, &self.limit).map_err(|e| Unavailable(e.to_string()))
    }
}

impl Conn {
    async fn wait(&self, link: &Rc<Link>, slot: &Slot, deadline: Instant) -> Result<Reply, Unavailable> {
        let left = deadline.saturating_duration_since(Instant::now());
        let reply = poll_fn(|cx| match slot.reply.borrow_mut().take() {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        });
        match monoio::time::timeout(left, reply).await {
            Ok(r) => r.map_err(Unavailable),
            Err(_) => {
                // A reply this late means Redis or the path to it is unwell: the calls queued behind it would
                // only time out too, so the link is dropped and the next call starts afresh.
                let why = "no reply within the timeout".to_string();
                self.fail(link, why.clone());
                Err(Unavailable(why))
            }
        }
    }
}

/// Connects `link`, then runs its writer here and its reader in a task of its own.
async fn drive(conn: Rc<Conn>, link: Rc<Link>) {
    let connected = monoio::select! {
        r = monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect_addr(conn.addr)) => r,
        _ = link.closed.fired() => return,
    };
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return conn.fail(&link, format!("cannot connect: {e}")),
        Err(_) => return conn.fail(&link, "cannot connect: timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    monoio::spawn(read_loop(conn.clone(), link.clone(), rd));
    write_loop(&conn, &link, wr).await;
}

async fn write_loop(conn: &Conn, link: &Rc<Link>, mut wr: OwnedWriteHalf<TcpStream>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let more = poll_fn(|cx| {
            if link.closed.is_fired() {
                Poll::Ready(false)
            } else if link.out.borrow().is_empty() {
                link.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(true)
            }
        })
        .await;
        if !more {
            return;
        }
        // Everything queued so far goes out in one write.
        std::mem::swap(&mut buf, &mut *link.out.borrow_mut());
        let (r, b) = monoio::select! {
            r = wr.write_all(buf) => r,
            _ = link.closed.fired() => return,
        };
        if let Err(e) = r {
            return conn.fail(link, format!("write failed: {e}"));
        }
        buf = b;
        buf.clear();
    }
}

async fn read_loop(conn: Rc<Conn>, link: Rc<Link>, mut rd: OwnedReadHalf<TcpStream>) {
    let mut replies = ReplyReader::new();
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (r, b) = monoio::select! {
            r = rd.read(buf) => r,
            _ = link.closed.fired() => return,
        };
        buf = b;
        match r {
            Ok(0) => return conn.fail(&link, "connection closed by redis".into()),
            Err(e) => return conn.fail(&link, format!("read failed: {e}")),
            Ok(_) => {}
        }
        replies.feed(&buf);
        buf.clear();
        loop {
            match replies.next_reply() {
                Ok(Some(reply)) => {
                    if let Err(why) = conn.deliver(&link, reply) {
                        return conn.fail(&link, why);
                    }
                }
                Ok(None) => break,
                Err(e) => return conn.fail(&link, e.to_string()),
            }
        }
    }
}
