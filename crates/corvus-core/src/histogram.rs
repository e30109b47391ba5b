//! A latency histogram with fixed buckets, recorded lock-free: the store times its syncs into
//! one and the runtime its publish-to-delivery latencies into another; metrics exposition
//! reads them as [`HistogramSnapshot`]s.
//!
//! It owns counting only: it reads no clock (callers pass what they measured, so it fits the
//! sans-IO core) and formats nothing. Values are whole microseconds; bucket bounds are
//! inclusive, as Prometheus' `le` means.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most bounds a histogram takes, so that [`Histogram::observe_all`] can count a batch on
/// the stack before touching the shared counters.
pub const MAX_BOUNDS: usize = 31;

#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in microseconds, strictly ascending.
    bounds: &'static [u64],
    /// One count per bound, then the values above the last bound. Not cumulative: each
    /// observation touches one counter, and [`Histogram::snapshot`] adds them up.
    counts: Box<[AtomicU64]>,
    /// Microseconds: at a million observations of a millisecond each per second, this
    /// wraps after some 580 years; nanoseconds would after seven months.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// A histogram with these bucket bounds, in microseconds.
    ///
    /// # Panics
    /// If `bounds` is empty, longer than [`MAX_BOUNDS`] or not strictly ascending: bounds
    /// are constants of the program, so this is a bug, never an input.
    pub fn new(bounds: &'static [u64]) -> Histogram {
        assert!(
            !bounds.is_empty() && bounds.len() <= MAX_BOUNDS,
            "a histogram takes 1 to {MAX_BOUNDS} bounds"
        );
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be strictly ascending"
        );
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// The bucket of a value: the first whose bound is at or above it (the last, past every
    /// bound, for the rest).
    fn bucket(&self, micros: u64) -> usize {
        self.bounds.partition_point(|&bound| bound < micros)
    }

    pub fn observe(&self, elapsed: Duration) {
        self.observe_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn observe_micros(&self, micros: u64) {
        self.counts[self.bucket(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Records many values with one atomic add per bucket they fall in, plus one for the sum,
    /// rather than two per value: the counters are shared by every connection.
    pub fn observe_all(&self, values: impl IntoIterator<Item = u64>) {
        let mut local = [0u64; MAX_BOUNDS + 1];
        let mut sum = 0u64;
        let mut any = false;
        for micros in values {
            local[self.bucket(micros)] += 1;
            sum = sum.saturating_add(micros);
            any = true;
        }
        if !any {
            return;
        }
        for (counter, n) in self.counts.iter().zip(local) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(sum, Ordering::Relaxed);
    }

    /// The counts now. Taken counter by counter while others may be adding: the total is the
    /// sum of the buckets read, so the `+Inf` bucket always equals the count; the sum may be
    /// a few observations apart from them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment, cumulative as Prometheus exposes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Upper bounds in microseconds.
    pub bounds: &'static [u64],
    /// Observations at or below each bound, then the count of all (the `+Inf` bucket).
    pub cumulative: Vec<u64>,
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Each bucket as (upper bound in microseconds, `None` for `+Inf`; observations at or
    /// below it).
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        self.bounds
            .iter()
            .map(|&b| Some(b))
            .chain(std::iter::once(None))
            .zip(self.cumulative.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[u64] = &[10, 100, 1000];

    #[test]
    fn bounds_are_inclusive_as_le_means() {
        let h = Histogram::new(BOUNDS);
        for micros in [0, 10, 11, 100, 101, 1000, 1001, u64::MAX / 2] {
            h.observe_micros(micros);
        }
        let s = h.snapshot();
        // 0 and 10 at or below 10; 11 and 100 up to 100; 101 and 1000 up to 1000; the rest
        // above every bound.
        assert_eq!(s.cumulative, vec![2, 4, 6, 8]);
        assert_eq!(s.count(), 8);
        assert_eq!(
            s.buckets().collect::<Vec<_>>(),
            vec![(Some(10), 2), (Some(100), 4), (Some(1000), 6), (None, 8)]
        );
    }

    #[test]
    fn buckets_are_cumulative_and_the_last_is_the_count() {
        let h = Histogram::new(BOUNDS);
        h.observe_micros(500);
        h.observe_micros(5);
        h.observe(Duration::from_millis(2));
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![1, 1, 2, 3]);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_micros, 500 + 5 + 2000);
    }

    #[test]
    fn durations_count_in_whole_microseconds() {
        let h = Histogram::new(BOUNDS);
        h.observe(Duration::from_nanos(10_999));
        h.observe(Duration::MAX);
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![1, 1, 1, 2]);
    }

    #[test]
    fn a_batch_counts_like_single_observations() {
        let one_by_one = Histogram::new(BOUNDS);
        let batched = Histogram::new(BOUNDS);
        let values = [3, 10, 10, 57, 999, 1000, 4000, 12];
        for v in values {
            one_by_one.observe_micros(v);
        }
        batched.observe_all(values);
        batched.observe_all([]);
        assert_eq!(batched.snapshot(), one_by_one.snapshot());
    }

    #[test]
    fn an_empty_histogram_counts_nothing() {
        let s = Histogram::new(BOUNDS).snapshot();
        assert_eq!(s.cumulative, vec![0, 0, 0, 0]);
        assert_eq!((s.count(), s.sum_micros), (0, 0));
    }

    #[test]
    #[should_panic(expected = "strictly ascending")]
    fn bounds_out_of_order_are_a_bug() {
        Histogram::new(&[10, 10]);
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let h = std::sync::Arc::new(Histogram::new(BOUNDS));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        h.observe_micros(i);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![4 * 11, 4 * 101, 4 * 1000, 4 * 1000]);
        assert_eq!(s.sum_micros, 4 * (999 * 1000 / 2));
    }
}
