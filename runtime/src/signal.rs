//! A one-shot, shard-local signal (drain, stop accepting) that any number of tasks can await; no atomics.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    fired: bool,
    /// One slot per waiting [`Fired`], freed when it is dropped: a connection that waits for its
    /// next request in a `select!` with the signal drops the future on every request, so wakers
    /// must not pile up (nor be told apart by `Waker::will_wake`, which is false for equal wakers
    /// whose vtables were duplicated across codegen units).
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// Cloneable handle; `fire` wakes every task waiting in `fired()`.
#[derive(Clone, Default)]
pub struct Signal(Rc<RefCell<Inner>>);

impl Signal {
    /// A signal not yet fired.
    pub fn new() -> Self {
        Self::default()
    }
    /// Fire it; later `fired()` calls complete at once.
    pub fn fire(&self) {
        let waiters = {
            let mut i = self.0.borrow_mut();
            i.fired = true;
            i.free.clear();
            std::mem::take(&mut i.slots)
        };
        for w in waiters.into_iter().flatten() {
            w.wake();
        }
    }
    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        self.0.borrow().fired
    }
    /// Completes once the signal fires.
    pub fn fired(&self) -> Fired {
        Fired { signal: self.clone(), slot: None }
    }
    /// Wakers held for pending `fired()` futures.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.0.borrow().slots.iter().flatten().count()
    }
}

/// Future returned by [`Signal::fired`].
pub struct Fired {
    signal: Signal,
    slot: Option<usize>,
}

impl Future for Fired {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut i = this.signal.0.borrow_mut();
        if i.fired {
            return Poll::Ready(());
        }
        match this.slot {
            Some(s) => match &mut i.slots[s] {
                Some(w) => w.clone_from(cx.waker()),
                empty => *empty = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let s = match i.free.pop() {
                    Some(s) => {
                        i.slots[s] = waker;
                        s
                    }
                    None => {
                        i.slots.push(waker);
                        i.slots.len() - 1
                    }
                };
                this.slot = Some(s);
            }
        }
        Poll::Pending
    }
}

impl Drop for Fired {
    fn drop(&mut self) {
        let Some(s) = self.slot else { return };
        let mut i = self.signal.0.borrow_mut();
        // after `fire` the slots are gone and must not be handed out again
        if !i.fired {
            if let Some(slot) = i.slots.get_mut(s) {
                *slot = None;
                i.free.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(f: &mut Fired, w: &Waker) -> Poll<()> {
        Pin::new(f).poll(&mut Context::from_waker(w))
    }

    #[test]
    fn dropped_futures_release_their_wakers() {
        let sig = Signal::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        for _ in 0..1000 {
            let mut f = sig.fired();
            assert!(poll(&mut f, &waker).is_pending());
            assert!(poll(&mut f, &waker).is_pending());
            assert_eq!(sig.waiting(), 1);
        }
        assert_eq!(sig.waiting(), 0);
        assert_eq!(sig.0.borrow().slots.len(), 1, "slots are reused");
        assert_eq!(Arc::strong_count(&count), 2, "no waker clone is kept");
    }

    #[test]
    fn fire_wakes_every_pending_future_once() {
        let sig = Signal::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut pending: Vec<Fired> = (0..3).map(|_| sig.fired()).collect();
        for f in &mut pending {
            assert!(poll(f, &waker).is_pending());
        }
        drop(pending.remove(1));
        sig.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        for f in &mut pending {
            assert!(poll(f, &waker).is_ready());
        }
        drop(pending);
        assert!(poll(&mut sig.fired(), &waker).is_ready());
        assert_eq!(sig.waiting(), 0);
    }
}
