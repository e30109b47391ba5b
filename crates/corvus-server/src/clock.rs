//! The one place the runtime reads the wall clock, for the core's `Millis`.

use std::time::{SystemTime, UNIX_EPOCH};

use corvus_core::Millis;

/// Milliseconds since the UNIX epoch; 0 if the clock is before it.
pub fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}
