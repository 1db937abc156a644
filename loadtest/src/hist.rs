//! A log-linear latency histogram (HdrHistogram-like, 64 sub-buckets per power of two: ≤ 1.6 % error) in nanoseconds.

/// Sub-buckets per power of two; the relative error of a bucket is at most 1 / `HALF`.
const HALF: u64 = 64;
const SUB_BITS: u32 = 7;
/// Enough buckets for any u64.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * HALF as usize + HALF as usize;

/// Counts of values (nanoseconds) in log-linear buckets, with the exact min, max and sum.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    min: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0, min: u64::MAX, sum: 0 }
    }
}

/// The bucket a value falls in.
fn index(v: u64) -> usize {
    let bits = 64 - v.leading_zeros();
    if bits <= SUB_BITS {
        return v as usize;
    }
    let shift = bits - SUB_BITS;
    (shift as u64 * HALF + (v >> shift)) as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * HALF {
        return i;
    }
    let shift = i / HALF - 1;
    let mantissa = i - shift * HALF;
    let top = ((mantissa as u128 + 1) << shift) - 1;
    top.min(u64::MAX as u128) as u64
}

impl Histogram {
    /// Record one value.
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
        self.min = self.min.min(ns);
        self.sum += ns as u128;
    }

    /// Add another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
        self.sum += other.sum;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Smallest value recorded (0 when empty).
    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    /// Mean of the recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1): the top of the bucket holding the ⌈q·n⌉-th smallest
    /// value, never above the true maximum (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max).max(self.min);
            }
        }
        self.max
    }

    /// `{count, mean, p50, p90, p99, p99_9, max}` in microseconds, as JSON.
    pub fn summary_us(&self) -> serde_json::Value {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        serde_json::json!({
            "count": self.total,
            "mean": (self.mean() / 100.0).round() / 10.0,
            "p50": us(self.quantile(0.50)),
            "p90": us(self.quantile(0.90)),
            "p99": us(self.quantile(0.99)),
            "p99_9": us(self.quantile(0.999)),
            "max": us(self.max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut prev = None;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v}");
            assert!(upper(i) >= v, "{v} above its bucket's top {}", upper(i));
            if let Some(p) = prev {
                assert!(i == p || i == p + 1 || v > 100_000, "gap after {v}");
            }
            prev = Some(i);
            // the bucket is at most 1/64 of its values wide
            let lo = if i == 0 { 0 } else { upper(i - 1) + 1 };
            assert!(lo <= v && (upper(i) - lo) as f64 <= (v as f64 / 64.0).max(1.0), "{v}: {lo}..{}", upper(i));
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 10_000);
        for (q, want) in [(0.5, 5_000_000.0), (0.99, 9_900_000.0), (0.999, 9_990_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.016, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.min(), 1000);
        assert!((h.mean() - 5_000_500.0).abs() < 1.0);
    }

    #[test]
    fn one_outlier_shows_in_the_tail_only() {
        let mut h = Histogram::default();
        for _ in 0..999 {
            h.record(100_000);
        }
        h.record(50_000_000);
        assert!(h.quantile(0.99) <= 101_600);
        assert_eq!(h.quantile(0.9995), 50_000_000);
        assert_eq!(h.quantile(0.999), h.quantile(0.5), "the 999th value is still a normal one");
    }

    #[test]
    fn empty_and_merge() {
        let mut a = Histogram::default();
        assert_eq!((a.quantile(0.5), a.max(), a.min(), a.mean()), (0, 0, 0, 0.0));
        let mut b = Histogram::default();
        b.record(7);
        b.record(3_000);
        a.record(20);
        a.merge(&b);
        assert_eq!((a.count(), a.min(), a.max()), (3, 7, 3_000));
        assert_eq!(a.quantile(0.5), 20);
        let s = a.summary_us();
        assert_eq!((s["count"].as_u64(), s["max"].as_f64()), (Some(3), Some(3.0)));
    }
}
