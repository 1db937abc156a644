//! Busy polling after activity: a shard that has just started a request keeps polling its driver for a short window instead of sleeping, so the upstream reply it waits for costs no wake-up.
//!
//! A sleeping shard thread is woken by an interrupt when its I/O completes; on a virtual
//! machine whose vCPU halted, that wake-up alone costs tens of microseconds, twice per proxied
//! request (client in, upstream reply). Seastar spins before sleeping for the same reason
//! (`--idle-poll-time-us`). The spinner is one task per shard that re-queues itself while the
//! window is open, which keeps monoio's loop submitting and reaping without blocking.
//!
//! monoio drains wake-ups sent from other threads (mailboxes) only when it parks, so spinning is
//! capped at [`MAX_BURST`] at a time; then the spinner rests on a timer, which fires only after
//! the runtime has parked at least once.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Longest stretch of uninterrupted spinning before the runtime is let park once.
pub const MAX_BURST: Duration = Duration::from_millis(1);

thread_local! {
    static SPIN: Rc<Spin> = Rc::new(Spin::default());
}

#[derive(Default)]
struct Spin {
    /// Zero = off.
    window: Cell<Duration>,
    /// Spin until then.
    until: Cell<Option<Instant>>,
    /// The spinner waits for a touch here; `None` while it spins or rests.
    idle: Cell<Option<Waker>>,
}

/// Start this shard's spinner with `window` (zero: none). Call once per shard, inside its runtime.
pub fn start(window: Duration) {
    if window.is_zero() {
        return;
    }
    let spin = SPIN.with(|s| s.clone());
    spin.window.set(window);
    monoio::spawn(async move {
        loop {
            WaitTouch(&spin).await;
            let mut burst = Instant::now();
            loop {
                let now = Instant::now();
                match spin.until.get() {
                    Some(t) if now < t => {}
                    _ => break,
                }
                if now - burst >= MAX_BURST {
                    // a timer fires only from park, so this lets foreign wakers in
                    monoio::time::sleep(Duration::from_micros(1)).await;
                    burst = Instant::now();
                } else {
                    YieldNow(false).await;
                }
            }
            spin.until.set(None);
        }
    });
}

/// Mark activity on this shard: keep polling for the window from now.
#[inline]
pub fn touch() {
    SPIN.with(|s| {
        let window = s.window.get();
        if window.is_zero() {
            return;
        }
        s.until.set(Some(Instant::now() + window));
        if let Some(w) = s.idle.take() {
            w.wake();
        }
    });
}

/// Ready once a touch has opened the window.
struct WaitTouch<'a>(&'a Spin);

impl Future for WaitTouch<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.until.get().is_some() {
            return Poll::Ready(());
        }
        self.0.idle.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Pending once, re-queued at once: the runtime polls its driver without blocking before it
/// runs the task again.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_opens_the_window_and_the_spinner_closes_it_when_quiet() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("runtime");
        rt.block_on(async {
            start(Duration::from_micros(200));
            let spin = SPIN.with(|s| s.clone());
            monoio::time::sleep(Duration::from_millis(2)).await;
            assert!(spin.until.get().is_none(), "no touch, no spinning");
            touch();
            assert!(spin.until.get().is_some());
            // the spinner ends the window by itself once it has passed
            let deadline = Instant::now() + Duration::from_secs(5);
            while spin.until.get().is_some() {
                assert!(Instant::now() < deadline, "the window never closed");
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            touch();
            assert!(spin.until.get().is_some(), "a later touch opens it again");
        });
    }

    #[test]
    fn off_means_no_window() {
        SPIN.with(|s| s.window.set(Duration::ZERO));
        touch();
        assert!(SPIN.with(|s| s.until.get()).is_none());
    }
}
