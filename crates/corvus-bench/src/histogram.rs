//! Latency percentiles without keeping every sample: a log-linear histogram of nanoseconds
//! (each power of two split into 128 buckets, so a value is known to within 1%), cheap
//! enough to record every message of a run at hundreds of thousands a second.

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Bucket rows: values to 2^47 ns (39 hours) each have their bucket; larger ones share the
/// last, which reports the exact maximum.
const POWERS: usize = 41;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; POWERS * SUB],
            total: 0,
            max: 0,
        }
    }
}

/// The bucket of a value: values below [`SUB`] each have their own; above, the power of two
/// and the next [`SUB_BITS`] bits.
fn bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let power = 63 - ns.leading_zeros(); // >= SUB_BITS
    let shift = power - SUB_BITS;
    let sub = ((ns >> shift) as usize) & (SUB - 1);
    let index = (shift as usize + 1) * SUB + sub;
    index.min(POWERS * SUB - 1)
}

/// The highest value of a bucket (what a percentile in it reports: never an understatement).
fn bucket_top(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let shift = (index / SUB - 1) as u32;
    let sub = (index % SUB) as u64;
    ((SUB as u64 + sub + 1) << shift) - 1
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The largest sample, exactly.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which `q` (0..=1) of the samples are; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let last = self.counts.len() - 1;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                // The last bucket also holds every larger value: only the maximum is sure.
                return match i == last {
                    true => self.max,
                    false => bucket_top(i).min(self.max),
                };
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values_within_one_percent() {
        for ns in [
            0u64,
            1,
            127,
            128,
            129,
            1_000,
            65_535,
            270_000,
            10_000_000,
            1 << 39,
        ] {
            let top = bucket_top(bucket(ns));
            assert!(top >= ns, "{ns}: top {top}");
            assert!(
                (top - ns) as f64 <= ns as f64 / 100.0 + 1.0,
                "{ns}: top {top}"
            );
        }
        // Buckets are in order of value.
        for ns in (1..5_000_000u64).step_by(997) {
            assert!(bucket(ns) <= bucket(ns + 1));
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 / 100.0;
        assert!(near(h.quantile(0.5), 500_000), "{}", h.quantile(0.5));
        assert!(near(h.quantile(0.99), 990_000), "{}", h.quantile(0.99));
        assert!(near(h.quantile(0.999), 999_000), "{}", h.quantile(0.999));
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(h.len(), 1000);
    }

    #[test]
    fn values_beyond_the_last_bucket_are_not_understated() {
        let mut h = Histogram::default();
        h.record(u64::MAX / 2);
        assert_eq!(h.quantile(0.5), u64::MAX / 2);
    }

    #[test]
    fn merged_histograms_count_both() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(2_000_000);
        a.merge(&b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.max(), 2_000_000);
        assert_eq!(a.quantile(0.5), 10);
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }
}
