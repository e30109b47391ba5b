//! The one place the runtime reads clocks: the wall clock for the core's `Millis`, and a
//! monotonic clock for the receive stamps publish-to-delivery latency is measured from.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use corvus_core::{Millis, Stamp};

/// Milliseconds since the UNIX epoch; 0 if the clock is before it.
pub fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Microseconds on a monotonic clock (unlike [`now`], it never steps back when the wall
/// clock is set), counted from the first call in this process. Only differences mean
/// anything, and only within the process: stamps are never persisted.
pub fn stamp() -> Stamp {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    Stamp::from_micros(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX))
}

/// Microseconds from `earlier` to `later` (0 if they are out of order).
pub fn micros_between(earlier: Stamp, later: Stamp) -> u64 {
    later.micros().saturating_sub(earlier.micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_back() {
        let first = stamp();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = stamp();
        assert!(second >= first);
        assert!(micros_between(first, second) >= 2_000);
        assert_eq!(micros_between(second, first), 0);
    }
}
