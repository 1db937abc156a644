//! Resumable SSE streams of legacy-era sessions (MCP 2025-11-25 `Last-Event-ID`): event ids that name their shard and stream, bounded per-stream replay buffers, and the shard-local table a resuming GET attaches to.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sse;
use crate::observe::metrics::Registry;

/// Which kind of response a stream is: it decides what a resume of a stream that is gone gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The SSE answer to a POSTed request: it ends with that request's response.
    Post,
    /// The session's GET stream of unprompted messages.
    Get,
}

/// An SSE event id: `<shard>-<p|g><stream>-<seq>`. The shard that owns the stream is in it, so a
/// resume landing on another shard is handed there over the mailbox without shared state; stream
/// numbers are unique per shard, so ids are unique per session. Sequence 0 is the priming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    /// The shard the stream lives on.
    pub shard: usize,
    /// POST answer or GET stream.
    pub kind: Kind,
    /// The stream's number on its shard.
    pub stream: u64,
    /// The event's position in its stream (from 1; 0 primes).
    pub seq: u64,
}

impl EventId {
    /// Read an id the gateway wrote; `None` for anything else.
    pub fn parse(s: &str) -> Option<EventId> {
        let mut parts = s.splitn(3, '-');
        let shard = parts.next()?.parse().ok()?;
        let stream = parts.next()?;
        let seq = parts.next()?.parse().ok()?;
        let kind = match stream.as_bytes().first()? {
            b'p' => Kind::Post,
            b'g' => Kind::Get,
            _ => return None,
        };
        let stream = stream[1..].parse().ok()?;
        Some(EventId { shard, kind, stream, seq })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = if self.kind == Kind::Post { 'p' } else { 'g' };
        write!(f, "{}-{k}{}-{}", self.shard, self.stream, self.seq)
    }
}

/// How much is kept for replay (`config.mcp.resumption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events kept per stream; 0 turns resumption off.
    pub max_events: usize,
    /// Bytes kept per stream (the newest event is always kept).
    pub max_bytes: usize,
    /// How long a stream nobody reads, or a finished POST stream, stays resumable.
    pub retention: Duration,
    /// Streams kept per shard; past it, new streams carry no ids.
    pub max_streams: usize,
    /// SSE polling: an answer running longer than the first is handed back to its client, told
    /// to come back after the second (`retry`).
    pub poll: Option<(Duration, Duration)>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: 256,
            max_bytes: 256 << 10,
            retention: Duration::from_secs(60),
            max_streams: 1024,
            poll: None,
        }
    }
}

/// Why events after an id cannot be replayed.
#[derive(Debug, PartialEq, Eq)]
pub struct Gap;

/// One stream's replay buffer: its newest framed events, bounded by count and bytes.
#[derive(Debug)]
pub struct Tape {
    events: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
    next: u64,
    /// The highest sequence number evicted (0: none).
    evicted: u64,
    max_events: usize,
    max_bytes: usize,
}

impl Tape {
    /// An empty tape; the first event gets sequence 1.
    pub fn new(max_events: usize, max_bytes: usize) -> Tape {
        Tape { events: VecDeque::new(), bytes: 0, next: 1, evicted: 0, max_events: max_events.max(1), max_bytes }
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Keep a framed event (the one numbered [`Tape::next_seq`]); older events go while over a
    /// limit, but never the newest. Returns how many went.
    pub fn push(&mut self, framed: Vec<u8>) -> usize {
        self.bytes += framed.len();
        self.events.push_back((self.next, framed));
        self.next += 1;
        let mut gone = 0;
        while self.events.len() > 1 && (self.events.len() > self.max_events || self.bytes > self.max_bytes) {
            if let Some((seq, ev)) = self.events.pop_front() {
                self.bytes -= ev.len();
                self.evicted = seq;
                gone += 1;
            }
        }
        gone
    }

    /// The events after `seq`, oldest first; a [`Gap`] when one of them was evicted or `seq`
    /// was never sent.
    pub fn after(&self, seq: u64) -> Result<impl Iterator<Item = &[u8]>, Gap> {
        if seq < self.evicted || seq >= self.next {
            return Err(Gap);
        }
        Ok(self.events.iter().filter(move |(s, _)| *s > seq).map(|(_, e)| e.as_slice()))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Why a resume was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such stream here (never, ended, expired), or it belongs to another session.
    Unknown,
    /// Some of the events after the id were evicted.
    Gap,
}

/// Live events past this many (after a replay) waiting for a resumed connection's writer detach it
/// (it can resume again).
const CONSUMER_BACKLOG: usize = 1024;

/// A resumable stream, on the shard that produces its events.
pub struct Resumable {
    id: EventId,
    session: Box<str>,
    tape: RefCell<Tape>,
    /// The connection of a client that resumed: every new event goes there too.
    consumer: RefCell<Option<flume::Sender<Vec<u8>>>>,
    /// Since when no connection reads the stream.
    unattended: Cell<Option<Instant>>,
    /// Its last event is in (a POST answer's response, or a GET stream's end).
    done: Cell<bool>,
    /// A resume took the stream over from the connection that opened it.
    taken: Cell<bool>,
    reg: Arc<Registry>,
}

impl Resumable {
    /// The id of the stream's priming event.
    pub fn priming_id(&self) -> EventId {
        EventId { seq: 0, ..self.id }
    }

    /// Frame `data` as the stream's next event with its id, keep it for replay, and pass it to
    /// a resumed connection if there is one. Returns the framed event.
    pub fn frame(&self, data: &[u8]) -> Vec<u8> {
        let mut tape = self.tape.borrow_mut();
        let id = EventId { seq: tape.next_seq(), ..self.id }.to_string();
        let mut ev = Vec::with_capacity(data.len() + id.len() + 32);
        sse::write_event(&mut ev, Some(&id), Some("message"), data);
        let before = tape.bytes();
        // a resumed connection may hold a whole replay before it reads live events
        let backlog = tape.max_events + CONSUMER_BACKLOG;
        let evicted = tape.push(ev.clone());
        let stats = &self.reg.shards[self.id.shard];
        stats.mcp_replay_bytes.fetch_add(tape.bytes() as i64 - before as i64, Relaxed);
        stats.mcp_replay_evicted.fetch_add(evicted as u64, Relaxed);
        drop(tape);
        let mut consumer = self.consumer.borrow_mut();
        if let Some(tx) = consumer.as_ref() {
            if tx.len() > backlog || tx.send(ev.clone()).is_err() {
                *consumer = None;
                self.unattended.set(Some(Instant::now()));
            }
        }
        ev
    }

    /// The connection that opened the stream stopped reading it.
    pub fn detach(&self) {
        if !self.attended() {
            self.unattended.set(Some(Instant::now()));
        }
    }

    /// Whether a resumed connection took the stream over.
    pub fn taken(&self) -> bool {
        self.taken.get()
    }

    /// Whether a resumed connection still reads the stream.
    pub fn attended(&self) -> bool {
        self.consumer.borrow().as_ref().is_some_and(|tx| !tx.is_disconnected())
    }

    /// How long nobody has read the stream; `None` while a connection does.
    pub fn unattended_for(&self) -> Option<Duration> {
        if self.attended() {
            return None;
        }
        self.unattended.get().map(|t| t.elapsed())
    }

    /// The stream's last event is in: a resumed connection ends after it.
    pub fn finish(&self) {
        self.done.set(true);
        self.consumer.borrow_mut().take();
        if self.unattended.get().is_none() {
            self.unattended.set(Some(Instant::now()));
        }
    }

    /// Replay what came after `seq` into `tx`, then (while the stream goes on) every new event.
    fn attach(&self, session: &str, seq: u64, tx: flume::Sender<Vec<u8>>) -> Result<usize, Refused> {
        if *self.session != *session {
            return Err(Refused::Unknown);
        }
        let tape = self.tape.borrow();
        let mut n = 0;
        for ev in tape.after(seq).map_err(|_| Refused::Gap)? {
            let _ = tx.send(ev.to_vec());
            n += 1;
        }
        if !self.done.get() {
            // a connection that resumed before keeps its events up to here; the new one goes on
            *self.consumer.borrow_mut() = Some(tx);
            self.unattended.set(None);
            self.taken.set(true);
        }
        Ok(n)
    }
}

impl Drop for Resumable {
    fn drop(&mut self) {
        let bytes = self.tape.borrow().bytes() as i64;
        self.reg.shards[self.id.shard].mcp_replay_bytes.fetch_sub(bytes, Relaxed);
    }
}

/// A shard's resumable streams, by number.
#[derive(Default)]
pub struct Streams {
    map: RefCell<HashMap<u64, Rc<Resumable>>>,
    next: Cell<u64>,
}

impl Streams {
    /// Start a resumable stream of `session` on shard `shard`; `None` when resumption is off or
    /// the shard keeps `max_streams` live ones already. To make room, streams nobody read for
    /// `retention` go first, then finished ones (the longest finished first): under load a
    /// finished answer's replay is worth less than a running one's.
    pub fn open(
        &self,
        reg: &Arc<Registry>,
        shard: usize,
        kind: Kind,
        session: &str,
        limits: &Limits,
    ) -> Option<Rc<Resumable>> {
        if limits.max_events == 0 {
            return None;
        }
        let mut map = self.map.borrow_mut();
        let n = self.next.get() + 1;
        if map.len() >= limits.max_streams / 2 || n.is_multiple_of(64) {
            map.retain(|_, s| s.unattended_for().is_none_or(|d| d < limits.retention));
        }
        if map.len() >= limits.max_streams {
            let oldest =
                map.iter().filter(|(_, s)| s.done.get()).max_by_key(|(_, s)| s.unattended_for()).map(|(k, _)| *k);
            map.remove(&oldest?);
        }
        self.next.set(n);
        let s = Rc::new(Resumable {
            id: EventId { shard, kind, stream: n, seq: 0 },
            session: session.into(),
            tape: RefCell::new(Tape::new(limits.max_events, limits.max_bytes)),
            consumer: RefCell::new(None),
            unattended: Cell::new(None),
            done: Cell::new(false),
            taken: Cell::new(false),
            reg: reg.clone(),
        });
        map.insert(n, s.clone());
        Some(s)
    }

    /// Forget a stream (a GET stream that ended cannot be resumed).
    pub fn remove(&self, stream: u64) {
        self.map.borrow_mut().remove(&stream);
    }

    /// Attach a resuming connection to stream `id.stream` of `session`: the events after `id`
    /// go to `tx` now, later ones as they come. Returns how many were replayed.
    pub fn attach(
        &self,
        session: &str,
        id: EventId,
        retention: Duration,
        tx: flume::Sender<Vec<u8>>,
    ) -> Result<usize, Refused> {
        let s = self.map.borrow().get(&id.stream).cloned().ok_or(Refused::Unknown)?;
        if s.id.kind != id.kind || s.unattended_for().is_some_and(|d| d >= retention) {
            return Err(Refused::Unknown);
        }
        s.attach(session, id.seq, tx)
    }
}

impl Resumable {
    /// The stream's number on its shard.
    pub fn stream(&self) -> u64 {
        self.id.stream
    }

    /// POST answer or GET stream.
    pub fn kind(&self) -> Kind {
        self.id.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_refuse_foreign_ones() {
        let id = EventId { shard: 3, kind: Kind::Post, stream: 17, seq: 42 };
        assert_eq!(id.to_string(), "3-p17-42");
        assert_eq!(EventId::parse("3-p17-42"), Some(id));
        let get = EventId { shard: 0, kind: Kind::Get, stream: 1, seq: 0 };
        assert_eq!(EventId::parse(&get.to_string()), Some(get));
        for bad in ["", "3", "3-p17", "3-x17-1", "x-p1-1", "3-p-1", "3-p1-1-2", "-p1-1", "3-p1-", "1c2e9b0f-…"] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
    }

    fn seqs(t: &Tape, after: u64) -> Result<Vec<String>, Gap> {
        t.after(after).map(|it| it.map(|e| String::from_utf8_lossy(e).into_owned()).collect())
    }

    #[test]
    fn a_tape_replays_exactly_what_came_after_an_id() {
        let mut t = Tape::new(8, 1 << 20);
        for i in 1..=5 {
            assert_eq!(t.next_seq(), i);
            assert_eq!(t.push(format!("e{i}").into_bytes()), 0);
        }
        assert_eq!(seqs(&t, 0).unwrap(), ["e1", "e2", "e3", "e4", "e5"]);
        assert_eq!(seqs(&t, 3).unwrap(), ["e4", "e5"]);
        assert_eq!(seqs(&t, 5).unwrap(), Vec::<String>::new());
        // an id the stream never sent
        assert_eq!(seqs(&t, 6), Err(Gap));
    }

    #[test]
    fn a_tape_is_bounded_by_count_and_bytes_and_reports_what_it_lost() {
        let mut t = Tape::new(3, 1 << 20);
        for i in 1..=5 {
            t.push(format!("e{i}").into_bytes());
        }
        assert_eq!(t.bytes(), 6);
        assert_eq!(seqs(&t, 2).unwrap(), ["e3", "e4", "e5"]);
        // e2 was evicted: a client that saw only e1 would miss it
        assert_eq!(seqs(&t, 1), Err(Gap));
        let mut t = Tape::new(100, 10);
        t.push(vec![b'a'; 4]);
        t.push(vec![b'b'; 4]);
        assert_eq!(t.push(vec![b'c'; 4]), 1);
        assert_eq!(t.bytes(), 8);
        // one event larger than the budget is still kept: it may be the response
        assert_eq!(t.push(vec![b'd'; 50]), 2);
        assert_eq!(seqs(&t, 3).unwrap().len(), 1);
    }

    #[test]
    fn a_resume_gets_the_missed_events_then_the_rest_and_ends_with_the_stream() {
        let reg = Registry::new(2);
        let streams = Streams::default();
        let limits = Limits::default();
        let s = streams.open(&reg, 1, Kind::Post, "sess", &limits).unwrap();
        let e1 = s.frame(b"{\"n\":1}");
        assert!(String::from_utf8_lossy(&e1).starts_with(&format!("id: 1-p{}-1\n", s.stream())));
        s.frame(b"{\"n\":2}");
        assert!(reg.shards[1].mcp_replay_bytes.load(Relaxed) > 0);
        s.detach();
        let id = EventId { shard: 1, kind: Kind::Post, stream: s.stream(), seq: 1 };
        let (tx, rx) = flume::unbounded();
        // another session's id, or a GET id for a POST stream, is unknown
        assert_eq!(streams.attach("other", id, limits.retention, tx.clone()), Err(Refused::Unknown));
        let get = EventId { kind: Kind::Get, ..id };
        assert_eq!(streams.attach("sess", get, limits.retention, tx.clone()), Err(Refused::Unknown));
        assert_eq!(streams.attach("sess", id, limits.retention, tx), Ok(1));
        assert!(s.taken() && s.attended());
        s.frame(b"{\"n\":3}");
        s.finish();
        let got: Vec<String> = rx.drain().map(|e| String::from_utf8(e).unwrap()).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("{\"n\":2}") && got[1].contains("{\"n\":3}"), "{got:?}");
        assert!(rx.is_disconnected(), "the resumed connection ends with the stream");
        // a finished stream can still be replayed within its retention, and then not
        let (tx, rx) = flume::unbounded();
        assert_eq!(streams.attach("sess", id, limits.retention, tx), Ok(2));
        assert!(rx.is_disconnected());
        let (tx, _rx) = flume::unbounded();
        assert_eq!(streams.attach("sess", id, Duration::ZERO, tx), Err(Refused::Unknown));
        streams.remove(s.stream());
        drop(s);
        assert_eq!(reg.shards[1].mcp_replay_bytes.load(Relaxed), 0, "the gauge follows the buffers");
    }

    #[test]
    fn a_shard_keeps_at_most_max_streams_and_none_when_off() {
        let reg = Registry::new(1);
        let streams = Streams::default();
        let limits = Limits { max_streams: 2, ..Limits::default() };
        let a = streams.open(&reg, 0, Kind::Post, "s", &limits).unwrap();
        let _b = streams.open(&reg, 0, Kind::Get, "s", &limits).unwrap();
        assert!(streams.open(&reg, 0, Kind::Post, "s", &limits).is_none());
        // a finished stream makes room
        a.finish();
        let c = streams.open(&reg, 0, Kind::Post, "s", &limits).unwrap();
        let id = EventId { shard: 0, kind: Kind::Post, stream: a.stream(), seq: 0 };
        let (tx, _rx) = flume::unbounded();
        assert_eq!(streams.attach("s", id, limits.retention, tx), Err(Refused::Unknown), "it made room");
        // and one nobody read for its retention
        c.detach();
        let quick = Limits { retention: Duration::ZERO, ..limits };
        assert!(streams.open(&reg, 0, Kind::Post, "s", &quick).is_some());
        let off = Limits { max_events: 0, ..limits };
        assert!(streams.open(&reg, 0, Kind::Post, "s", &off).is_none());
    }
}
