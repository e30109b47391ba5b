//! A token bucket: `rate` events per second, in bursts of up to `rate`. Time is passed in, so
//! the arithmetic is testable without a clock.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be above 0.
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens even if there are not as many (the bucket goes into debt).
    pub fn take(&mut self, n: u32, now: Instant) {
        self.refill(now);
        self.tokens -= f64::from(n);
    }

    /// How long until the bucket is out of debt (zero if it is not in debt).
    pub fn debt_clears_in(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Whether the bucket is full again (nothing taken that has not been refilled).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_rate_then_rate_per_second() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        assert_eq!((0..20).filter(|_| bucket.try_take(start)).count(), 10);
        let later = start + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| bucket.try_take(later)).count(), 5);
        assert!(!bucket.is_full(later));
        assert!(bucket.is_full(later + Duration::from_secs(1)));
    }

    #[test]
    fn a_client_that_keeps_exceeding_the_rate_is_over_it_across_throttles() {
        let start = Instant::now();
        let mut rate = MessageRate::new(100, Duration::from_secs(1));
        let mut now = start;
        // Each read brings 150 messages: always more than the rate paid back meanwhile.
        for _ in 0..5 {
            rate.record(150, now);
            now += rate.wait(now);
        }
        assert!(rate.over_for_too_long(now));

        // One within the rate after a burst starts afresh.
        let mut rate = MessageRate::new(100, Duration::from_secs(1));
        rate.record(150, start);
        let later = start + Duration::from_secs(2);
        rate.record(1, later);
        assert!(!rate.over_for_too_long(later + Duration::from_secs(5)));
    }

    #[test]
    fn debt_is_paid_back_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, start);
        bucket.take(150, start);
        assert_eq!(bucket.debt_clears_in(start), Duration::from_millis(500));
        assert_eq!(
            bucket.debt_clears_in(start + Duration::from_millis(500)),
            Duration::ZERO
        );
    }
}

/// A client's PUBLISH rate: counted as packets are decoded; while the client is beyond it the
/// connection stops reading (so TCP flow control slows the client down, and nothing piles up
/// in the broker); a client that stays beyond it for the grace period is disconnected (0x96).
#[derive(Debug)]
pub struct MessageRate {
    bucket: TokenBucket,
    grace: Duration,
    /// Since when the client has been beyond the rate without a break.
    over_since: Option<Instant>,
}

impl MessageRate {
    pub fn new(rate: u32, grace: Duration) -> MessageRate {
        MessageRate {
            bucket: TokenBucket::new(rate.max(1), Instant::now()),
            grace,
            over_since: None,
        }
    }

    /// The PUBLISH packets one read brought: a client they leave beyond its rate stays (or
    /// starts being) over it; one they leave within it starts afresh. Only reads say whether
    /// the client keeps up the pace: the rate being paid back while the broker does not read
    /// proves nothing.
    pub fn record(&mut self, publishes: u32, now: Instant) {
        self.bucket.take(publishes, now);
        if self.bucket.debt_clears_in(now).is_zero() {
            self.over_since = None;
        } else {
            self.over_since.get_or_insert(now);
        }
    }

    /// How long to stop reading (zero: read on).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.bucket.debt_clears_in(now)
    }

    /// Whether the client has been beyond its rate for longer than the grace period.
    pub fn over_for_too_long(&self, now: Instant) -> bool {
        self.over_since
            .is_some_and(|since| now.saturating_duration_since(since) > self.grace)
    }
}
