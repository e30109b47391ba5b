//! Shows how far store recovery has got while the broker starts: a large data directory
//! takes seconds to check and replay, and an operator watching the log must see that it is
//! working, how far it has got and what is left.
//!
//! Every report from the store is logged at debug level; at info level, a line at most every
//! [`INFO_INTERVAL`], and when recovery ends after such a line, how long it took in all.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use corvus_store::progress::{Progress, ProgressSink};
use tracing::{debug, info};

/// How often, at most, a progress line is logged at info level.
pub const INFO_INTERVAL: Duration = Duration::from_secs(3);

/// Logs the progress of one store recovery (pass it to `Store::open_reporting`).
#[derive(Debug)]
pub struct RecoveryLog {
    started: Instant,
    shown: Mutex<Shown>,
}

/// When the last info line was logged (the start, until there is one).
#[derive(Debug, Clone, Copy)]
struct Shown {
    last: Instant,
}

impl Shown {
    /// Whether a line at `now` is due at info level; if so, remembers it.
    fn take_turn(&mut self, now: Instant) -> bool {
        let due = now.saturating_duration_since(self.last) >= INFO_INTERVAL;
        if due {
            self.last = now;
        }
        due
    }
}

impl RecoveryLog {
    /// Starts timing a recovery that begins now.
    pub fn start() -> RecoveryLog {
        RecoveryLog::started_at(Instant::now())
    }

    fn started_at(started: Instant) -> RecoveryLog {
        RecoveryLog {
            started,
            shown: Mutex::new(Shown { last: started }),
        }
    }

    fn shown(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.shown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recovery is over: says how long it took, at info level if progress was shown there
    /// (someone waited for it), else at debug level.
    pub fn finish(&self) {
        let took = self.started.elapsed();
        match self.shown().last != self.started {
            true => info!("recovery: done in {:.1} s", took.as_secs_f64()),
            false => debug!("recovery: done in {:.3} s", took.as_secs_f64()),
        }
    }
}

impl ProgressSink for RecoveryLog {
    fn report(&self, progress: Progress) {
        let now = Instant::now();
        let line = describe(progress, now.saturating_duration_since(self.started));
        match self.shown().take_turn(now) {
            true => info!("recovery: {line}"),
            false => debug!("recovery: {line}"),
        }
    }
}

/// One progress line ("replaying the queue journal: 412000 of 1000000 records (41%), 3.2 s
/// so far").
fn describe(p: Progress, elapsed: Duration) -> String {
    let (done, total) = match p.step.unit() {
        "bytes" => (mebibytes(p.done), format!("{} MiB", mebibytes(p.total))),
        unit => (p.done.to_string(), format!("{} {unit}", p.total)),
    };
    format!(
        "{}: {done} of {total} ({}%), {:.1} s so far",
        p.step.describe(),
        p.percent(),
        elapsed.as_secs_f64()
    )
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvus_store::progress::RecoveryStep;

    #[test]
    fn info_lines_come_at_most_every_interval() {
        let t0 = Instant::now();
        let log = RecoveryLog::started_at(t0);
        let mut shown = log.shown();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Nothing at the start (a quick recovery logs nothing at info), then one line per
        // interval however many reports come in between.
        assert!(!shown.take_turn(at(0)));
        assert!(!shown.take_turn(at(2_999)));
        assert_eq!(shown.last, t0, "no info line yet");
        assert!(shown.take_turn(at(3_000)));
        assert!(!shown.take_turn(at(3_001)));
        assert!(!shown.take_turn(at(5_999)));
        assert!(shown.take_turn(at(6_100)));
        assert_eq!(shown.last, at(6_100));
    }

    #[test]
    fn lines_say_the_step_how_far_and_how_long() {
        let replay = Progress {
            step: RecoveryStep::ReplayJournal,
            done: 412_000,
            total: 1_000_000,
        };
        assert_eq!(
            describe(replay, Duration::from_millis(3_240)),
            "replaying the queue journal: 412000 of 1000000 records (41%), 3.2 s so far"
        );
        let scan = Progress {
            step: RecoveryStep::ScanJournal,
            done: 64 * 1024 * 1024,
            total: 152 * 1024 * 1024 + 300 * 1024,
        };
        assert_eq!(
            describe(scan, Duration::from_secs(1)),
            "checking the queue journal: 64.0 of 152.3 MiB (42%), 1.0 s so far"
        );
    }
}
