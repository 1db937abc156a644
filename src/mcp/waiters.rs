//! Requests waiting on an upstream that any shard may use (a stdio process, a session's own HTTP+SSE session): their channels by upstream id, cancellation by the client's id, and where what the upstream sends unprompted goes (the newest request forwarded for the client, else the session's GET stream).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::jsonrpc::Message;

/// How many unprompted messages may wait for a session's slow GET stream before more are dropped.
const LISTEN_BACKLOG: usize = 64;

/// The waiting requests of one upstream. The locks are held for map operations only, never
/// across I/O, and are contended only by the shards using the same upstream and its reader.
pub struct Waiters {
    /// By upstream id (ascending: newest last).
    map: Mutex<BTreeMap<u64, Waiter>>,
    /// The session's GET stream.
    listener: Mutex<Option<flume::Sender<Message>>>,
    next_id: AtomicU64,
    /// Whether what the upstream sends unprompted goes to a client (an upstream of one client
    /// session); an upstream shared by many cannot know whom to tell.
    relays: bool,
}

/// One request waiting on the upstream.
struct Waiter {
    tx: flume::Sender<Message>,
    /// Forwarded for a client, whose stream takes what the upstream asks and tells meanwhile.
    relays: bool,
    /// `<client session>\n<client's id>`: how the client's `notifications/cancelled` finds it.
    origin: Option<String>,
}

impl Waiters {
    /// No requests yet; ids start at 1 (`0` is the gateway's `initialize`).
    pub fn new(relays: bool) -> Self {
        Waiters { map: Mutex::new(BTreeMap::new()), listener: Mutex::new(None), next_id: AtomicU64::new(1), relays }
    }

    /// Whether unprompted messages are relayed.
    pub fn relays(&self) -> bool {
        self.relays
    }

    /// Register a request under a fresh id, which is returned.
    pub fn add(&self, tx: flume::Sender<Message>, relays: bool, origin: Option<String>) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.map.lock().ok()?.insert(id, Waiter { tx, relays, origin });
        Some(id)
    }

    /// Forget a request (its caller is done).
    pub fn remove(&self, id: u64) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
            shrink(&mut m);
        }
    }

    /// Deliver the answer to request `id`; an answered request stops taking relayed messages at
    /// once, not when its caller is done with it.
    pub fn answer(&self, id: u64, msg: Message) {
        let w = self.map.lock().ok().and_then(|mut m| {
            let w = m.remove(&id);
            shrink(&mut m);
            w
        });
        if let Some(w) = w {
            let _ = w.tx.send(msg);
        }
    }

    /// Deliver a message about request `id` (progress).
    pub fn about(&self, id: u64, msg: Message) {
        if let Some(tx) = self.map.lock().ok().and_then(|m| Some(m.get(&id)?.tx.clone())) {
            let _ = tx.send(msg);
        }
    }

    /// The request the client knows as `origin`: its upstream id and channel.
    pub fn find(&self, origin: &str) -> Option<(u64, flume::Sender<Message>)> {
        let m = self.map.lock().ok()?;
        m.iter().find(|(_, w)| w.origin.as_deref() == Some(origin)).map(|(id, w)| (*id, w.tx.clone()))
    }

    /// Hand a server→client request or a notification (other than progress) to the client: on
    /// the stream of the newest request forwarded for it, else on its GET stream. Returns the
    /// message when nobody can take it.
    pub fn relay(&self, msg: Message) -> Option<Message> {
        if !self.relays {
            return Some(msg);
        }
        let waiting = self.map.lock().ok().and_then(|m| m.values().rev().find(|w| w.relays).map(|w| w.tx.clone()));
        let msg = match waiting {
            Some(tx) => match tx.send(msg) {
                Ok(()) => return None,
                Err(e) => e.0,
            },
            None => msg,
        };
        let listener = self.listener.lock().ok().and_then(|l| l.clone());
        match listener {
            Some(tx) => tx.try_send(msg).err().map(|e| e.into_inner()),
            None => Some(msg),
        }
    }

    /// Attach the session's GET stream (replacing an earlier one).
    pub fn listen(&self) -> flume::Receiver<Message> {
        let (tx, rx) = flume::bounded(LISTEN_BACKLOG);
        if let Ok(mut l) = self.listener.lock() {
            *l = Some(tx);
        }
        rx
    }

    /// The upstream is gone: end the GET stream and return every waiting request.
    pub fn close(&self) -> Vec<(u64, flume::Sender<Message>)> {
        if let Ok(mut l) = self.listener.lock() {
            l.take();
        }
        self.drain()
    }

    /// The upstream is gone but another takes its place: return every waiting request and keep
    /// the GET stream, which [`Waiters::hand_over`] moves to the new upstream.
    pub fn drain(&self) -> Vec<(u64, flume::Sender<Message>)> {
        let m = self.map.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
        m.into_iter().map(|(id, w)| (id, w.tx)).collect()
    }

    /// Move the GET stream to `to` (the upstream that replaced this one).
    pub fn hand_over(&self, to: &Waiters) {
        let l = self.listener.lock().ok().and_then(|mut l| l.take());
        if let (Some(tx), Ok(mut dst)) = (l, to.listener.lock()) {
            *dst = Some(tx);
        }
    }
}

/// An emptied B-tree keeps its root node (over 500 bytes here); an idle upstream, of which a
/// gateway may have thousands, keeps none.
fn shrink(m: &mut BTreeMap<u64, Waiter>) {
    if m.is_empty() {
        *m = BTreeMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(w: &Waiters, relays: bool) -> (u64, flume::Receiver<Message>) {
        let (tx, rx) = flume::unbounded();
        (w.add(tx, relays, Some(format!("s\n{relays}"))).unwrap(), rx)
    }

    fn note() -> Message {
        Message::Notification { method: "notifications/message".into(), params: None }
    }

    #[test]
    fn unprompted_messages_go_to_the_newest_client_request_else_the_get_stream() {
        let w = Waiters::new(true);
        assert!(w.relay(note()).is_some(), "nobody to take it");
        let get = w.listen();
        assert!(w.relay(note()).is_none());
        assert!(get.try_recv().is_ok(), "no request waits: the GET stream");
        let (older, older_rx) = waiter(&w, true);
        let (newer, newer_rx) = waiter(&w, true);
        // the gateway's own requests (fan-out) never take what is meant for the client
        let (_, own_rx) = waiter(&w, false);
        assert!(w.relay(note()).is_none());
        assert!(newer_rx.try_recv().is_ok() && older_rx.is_empty() && own_rx.is_empty() && get.is_empty());
        // answered: it takes nothing more, even before its caller is done with it
        w.answer(newer, note());
        assert!(newer_rx.try_recv().is_ok());
        assert!(w.relay(note()).is_none());
        assert!(older_rx.try_recv().is_ok() && newer_rx.is_empty());
        assert_eq!(w.find("s\ntrue").map(|(id, _)| id), Some(older));
        w.remove(older);
        assert!(w.find("s\ntrue").is_none());
        // a full GET stream drops rather than blocks the reader
        for _ in 0..LISTEN_BACKLOG {
            assert!(w.relay(note()).is_none());
        }
        assert!(w.relay(note()).is_some());
        assert_eq!(w.close().len(), 1, "the fan-out request is failed by the caller of close");
        drop(get);
    }

    #[test]
    fn a_shared_upstream_relays_nothing() {
        let w = Waiters::new(false);
        let _r = waiter(&w, true);
        let _get = w.listen();
        assert!(w.relay(note()).is_some());
    }
}
