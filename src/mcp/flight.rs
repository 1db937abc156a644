//! Single flight on one shard: concurrent requests for the same thing (a target's list page, a renewed upstream session) wait for the one fetch the first of them started instead of each making their own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The fetches in flight on a shard, by key. Single-threaded: a shard's tasks never run at once.
pub struct Flights<K, T> {
    map: RefCell<HashMap<K, Rc<Flight<T>>>>,
}

impl<K, T> Default for Flights<K, T> {
    fn default() -> Self {
        Flights { map: RefCell::new(HashMap::new()) }
    }
}

struct Flight<T> {
    /// What the fetch was started under (an invalidation epoch): a later one does not join it.
    tag: u64,
    state: RefCell<State<T>>,
}

enum State<T> {
    Running(Vec<Waker>),
    Done(T),
    /// The leader went away (its client left) before it had a result.
    Abandoned,
}

/// What the caller of [`Flights::join`] does.
pub enum Join<'a, K: Eq + Hash, T> {
    /// Fetch, then [`Lead::land`] the result for the others.
    Lead(Lead<'a, K, T>),
    /// Wait for the leader's result.
    Wait(Wait<T>),
}

impl<K: Eq + Hash + Clone, T: Clone> Flights<K, T> {
    /// Wait for the fetch of `key` in flight, if one started under `tag`, or lead a new one. A
    /// flight started under another tag (before an invalidation) is not joined: the new one takes
    /// its place here, and its own waiters still get its result.
    pub fn join(&self, key: &K, tag: u64) -> Join<'_, K, T> {
        let mut map = self.map.borrow_mut();
        if let Some(f) = map.get(key).filter(|f| f.tag == tag && matches!(*f.state.borrow(), State::Running(_))) {
            return Join::Wait(Wait { flight: f.clone() });
        }
        let flight = Rc::new(Flight { tag, state: RefCell::new(State::Running(Vec::new())) });
        map.insert(key.clone(), flight.clone());
        Join::Lead(Lead { flights: self, key: key.clone(), flight })
    }

    /// Fetches in flight (for tests and leak checks).
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }
}

/// The one fetching; dropped without [`Lead::land`], its waiters are told to try again.
pub struct Lead<'a, K: Eq + Hash, T> {
    flights: &'a Flights<K, T>,
    key: K,
    flight: Rc<Flight<T>>,
}

impl<K: Eq + Hash, T: Clone> Lead<'_, K, T> {
    /// Hand `result` to every waiter.
    pub fn land(self, result: &T) {
        // the common lone miss clones nothing
        if self.has_waiters() {
            self.finish(State::Done(result.clone()));
        }
    }
}

impl<K: Eq + Hash, T> Lead<'_, K, T> {
    /// Whether anyone waits for this fetch: holds it besides this lead and the table.
    pub fn has_waiters(&self) -> bool {
        let listed = self.flights.map.borrow().get(&self.key).is_some_and(|f| Rc::ptr_eq(f, &self.flight));
        Rc::strong_count(&self.flight) > 1 + usize::from(listed)
    }

    fn finish(&self, to: State<T>) {
        let was = std::mem::replace(&mut *self.flight.state.borrow_mut(), to);
        if let State::Running(wakers) = was {
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

impl<K: Eq + Hash, T> Drop for Lead<'_, K, T> {
    fn drop(&mut self) {
        if matches!(*self.flight.state.borrow(), State::Running(_)) {
            self.finish(State::Abandoned);
        }
        let mut map = self.flights.map.borrow_mut();
        // a newer flight may have taken the key (after an invalidation): it stays
        if map.get(&self.key).is_some_and(|f| Rc::ptr_eq(f, &self.flight)) {
            map.remove(&self.key);
        }
    }
}

/// A waiter: resolves to the leader's result, or `None` when the leader went away without one
/// (the waiter then joins again, and may lead). Dropping it (its own client left) concerns no one else.
pub struct Wait<T> {
    flight: Rc<Flight<T>>,
}

impl<T: Clone> Future for Wait<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match &mut *self.flight.state.borrow_mut() {
            State::Done(v) => Poll::Ready(Some(v.clone())),
            State::Abandoned => Poll::Ready(None),
            State::Running(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn poll<T: Clone>(w: &mut Wait<T>, waker: &Waker) -> Poll<Option<T>> {
        Pin::new(w).poll(&mut Context::from_waker(waker))
    }

    fn wait<T>(j: Join<'_, &'static str, T>) -> Wait<T> {
        match j {
            Join::Wait(w) => w,
            Join::Lead(_) => panic!("led"),
        }
    }

    fn lead<'a, T>(j: Join<'a, &'static str, T>) -> Lead<'a, &'static str, T> {
        match j {
            Join::Lead(l) => l,
            Join::Wait(_) => panic!("waited"),
        }
    }

    #[test]
    fn concurrent_joins_share_the_first_ones_result_errors_included() {
        let f: Flights<&str, Result<u32, String>> = Flights::default();
        let (ca, cb) = (std::sync::Arc::new(Count(0.into())), std::sync::Arc::new(Count(0.into())));
        let (wa, wb) = (Waker::from(ca.clone()), Waker::from(cb.clone()));
        let l = lead(f.join(&"k", 0));
        assert!(!l.has_waiters());
        let (mut a, mut b) = (wait(f.join(&"k", 0)), wait(f.join(&"k", 0)));
        let other = lead(f.join(&"other", 0));
        assert!(l.has_waiters());
        assert!(poll(&mut a, &wa).is_pending() && poll(&mut b, &wb).is_pending());
        // a waiter whose client left changes nothing for the others
        let gone = wait(f.join(&"k", 0));
        drop(gone);
        l.land(&Err("target down".into()));
        let woken = |c: &Count| c.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!((woken(&ca), woken(&cb)), (1, 1), "both waiters woken");
        assert_eq!(poll(&mut a, &wa), Poll::Ready(Some(Err("target down".into()))));
        assert_eq!(poll(&mut b, &wb), Poll::Ready(Some(Err("target down".into()))));
        assert_eq!(f.len(), 1, "landed flights leave the table; another key's stays");
        other.land(&Ok(1));
        assert!(f.is_empty());
        // after landing, a join fetches anew (what was fetched is the cache's business)
        let again = lead(f.join(&"k", 0));
        again.land(&Ok(2));
    }

    #[test]
    fn a_lead_that_goes_away_lets_a_waiter_lead() {
        let f: Flights<&str, u32> = Flights::default();
        let waker = Waker::from(std::sync::Arc::new(Count(0.into())));
        let l = lead(f.join(&"k", 0));
        let mut w = wait(f.join(&"k", 0));
        assert!(poll(&mut w, &waker).is_pending());
        drop(l);
        assert_eq!(poll(&mut w, &waker), Poll::Ready(None));
        assert!(f.is_empty());
        let next = lead(f.join(&"k", 0));
        let mut w2 = wait(f.join(&"k", 0));
        next.land(&7);
        assert_eq!(poll(&mut w2, &waker), Poll::Ready(Some(7)));
    }

    #[test]
    fn joins_after_an_invalidation_do_not_get_the_older_fetch() {
        let f: Flights<&str, u32> = Flights::default();
        let waker = Waker::from(std::sync::Arc::new(Count(0.into())));
        let old = lead(f.join(&"k", 1));
        let mut before = wait(f.join(&"k", 1));
        // the epoch moved on: a new fetch, which later arrivals join
        let new = lead(f.join(&"k", 2));
        let mut after = wait(f.join(&"k", 2));
        old.land(&10);
        assert_eq!(poll(&mut before, &waker), Poll::Ready(Some(10)));
        assert!(poll(&mut after, &waker).is_pending(), "not the fetch from before the invalidation");
        assert_eq!(f.len(), 1, "the older flight did not remove the newer one");
        new.land(&20);
        assert_eq!(poll(&mut after, &waker), Poll::Ready(Some(20)));
        assert!(f.is_empty());
    }
}
