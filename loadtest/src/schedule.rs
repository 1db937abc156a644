//! The open-loop send schedule and where a request's latency starts (coordinated-omission correction).

use std::time::{Duration, Instant};

/// When each connection sends its requests at a fixed total rate: connection `k` of `conns`
/// sends its `i`-th request at `start + (i·conns + k) / rate`, so the connections interleave
/// evenly and together offer exactly `rate` requests per second.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Time zero of the schedule.
    pub start: Instant,
    /// Requests per second offered by all connections together.
    pub rate: f64,
    /// Connections sharing the rate.
    pub conns: usize,
}

impl Schedule {
    /// Intended send time of connection `k`'s `i`-th request.
    pub fn intended(&self, k: usize, i: u64) -> Instant {
        let slot = i as f64 * self.conns as f64 + k as f64;
        self.start + Duration::from_nanos((slot * 1e9 / self.rate).round() as u64)
    }

    /// How many requests the schedule offers in the first `d`.
    pub fn offered(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * self.rate).floor() as u64
    }
}

/// Where a request's latency is measured from.
///
/// Open loop, a request is due at `intended`. If the connection was still busy with the
/// previous response then (`prev_done > intended`), the server made it late: the wait counts,
/// so latency starts at `intended` (coordinated-omission correction, as wrk2 and oha do). If the
/// connection was free and only the generator's timer woke late, the server is not to blame and
/// latency starts at the actual send. Closed loop (`intended = None`) it starts at the send.
pub fn latency_start(intended: Option<Instant>, prev_done: Instant, sent: Instant) -> Instant {
    match intended {
        Some(due) if prev_done > due => due,
        _ => sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_at_the_total_rate() {
        let start = Instant::now();
        let s = Schedule { start, rate: 1000.0, conns: 4 };
        // slots of 1 ms: conn 0 at 0, 4, 8 ms; conn 3 at 3, 7 ms
        assert_eq!(s.intended(0, 0), start);
        assert_eq!(s.intended(0, 2) - start, Duration::from_millis(8));
        assert_eq!(s.intended(3, 1) - start, Duration::from_millis(7));
        let mut all: Vec<Duration> = (0..4).flat_map(|k| (0..250).map(move |i| s.intended(k, i) - start)).collect();
        all.sort();
        assert_eq!(all.len(), 1000);
        for (n, d) in all.iter().enumerate() {
            assert_eq!(*d, Duration::from_millis(n as u64), "every slot once");
        }
        assert_eq!(s.offered(Duration::from_millis(2500)), 2500);
    }

    #[test]
    fn late_server_counts_late_timer_does_not() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_millis(10);
        let sent = t0 + Duration::from_millis(12);
        // previous answer came at 11 ms, after the due time: the 2 ms wait is the server's
        assert_eq!(latency_start(Some(due), t0 + Duration::from_millis(11), sent), due);
        // previous answer at 5 ms, the timer fired 2 ms late: start at the send
        assert_eq!(latency_start(Some(due), t0 + Duration::from_millis(5), sent), sent);
        assert_eq!(latency_start(None, t0 + Duration::from_millis(11), sent), sent);
    }
}
