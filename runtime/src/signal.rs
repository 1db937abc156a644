//! A one-shot, shard-local signal (drain, stop accepting) that any number of tasks can await; no atomics.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    fired: bool,
    waiters: Vec<Waker>,
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
            std::mem::take(&mut i.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        self.0.borrow().fired
    }
    /// Completes once the signal fires.
    pub fn fired(&self) -> Fired {
        Fired(self.clone())
    }
}

/// Future returned by [`Signal::fired`].
pub struct Fired(Signal);

impl Future for Fired {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut i = (self.0).0.borrow_mut();
        if i.fired {
            return Poll::Ready(());
        }
        if !i.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            i.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
