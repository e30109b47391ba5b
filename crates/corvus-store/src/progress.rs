//! How far a long store operation (recovery, when the broker starts) has got, told to
//! whoever opened the store.
//!
//! The store reads no clock for this: it reports at fixed points (each step's start, about
//! every hundredth of it, and its end), and the receiver decides what to show and when (the
//! broker logs a line every few seconds). A step with nothing to do is not reported.

/// One step of recovering a data directory, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryStep {
    /// Reading the sessions of the state database.
    LoadSessions,
    /// Reading the subscriptions.
    LoadSubscriptions,
    /// Reading the retained messages.
    LoadRetained,
    /// Reading and checking the queue journal's segment files (counted in bytes).
    ScanJournal,
    /// Rebuilding the queued and in-flight deliveries from the journal's records.
    ReplayJournal,
}

impl RecoveryStep {
    /// What the step does, for people ("replaying the queue journal").
    pub fn describe(self) -> &'static str {
        match self {
            RecoveryStep::LoadSessions => "loading sessions",
            RecoveryStep::LoadSubscriptions => "loading subscriptions",
            RecoveryStep::LoadRetained => "loading retained messages",
            RecoveryStep::ScanJournal => "checking the queue journal",
            RecoveryStep::ReplayJournal => "replaying the queue journal",
        }
    }

    /// What [`Progress::done`] and [`Progress::total`] count.
    pub fn unit(self) -> &'static str {
        match self {
            RecoveryStep::LoadSessions => "sessions",
            RecoveryStep::LoadSubscriptions => "subscriptions",
            RecoveryStep::LoadRetained => "retained messages",
            RecoveryStep::ScanJournal => "bytes",
            RecoveryStep::ReplayJournal => "records",
        }
    }
}

/// How far a step has got: `done` of `total` (never more, and `total` is never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The step.
    pub step: RecoveryStep,
    /// How much of it is done, in the step's [`unit`](RecoveryStep::unit).
    pub done: u64,
    /// How much there is.
    pub total: u64,
}

impl Progress {
    /// Percent done, rounded down.
    pub fn percent(&self) -> u64 {
        // Both fit in u128 without overflow; total is never 0.
        (u128::from(self.done) * 100 / u128::from(self.total.max(1))) as u64
    }
}

/// Receives progress reports. Called on the thread that opens the store, so it should be
/// quick (a check of the time and, now and then, a log line).
pub trait ProgressSink: Sync {
    /// One report.
    fn report(&self, progress: Progress);
}

impl<F: Fn(Progress) + Sync> ProgressSink for F {
    fn report(&self, progress: Progress) {
        self(progress)
    }
}

/// Discards every report.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: Progress) {}
}

/// How many reports a step makes between its start and its end, at most.
const REPORTS_PER_STEP: u64 = 100;

/// Reports one step: at its start, each time another hundredth is done, and at its end.
pub(crate) struct StepReporter<'a> {
    sink: &'a dyn ProgressSink,
    step: RecoveryStep,
    total: u64,
    every: u64,
    next: u64,
}

impl<'a> StepReporter<'a> {
    /// Starts `step` with `total` to do (reports `0 of total` unless `total` is 0, when the
    /// step reports nothing at all).
    pub(crate) fn start(sink: &'a dyn ProgressSink, step: RecoveryStep, total: u64) -> Self {
        let every = total.div_ceil(REPORTS_PER_STEP).max(1);
        let reporter = StepReporter {
            sink,
            step,
            total,
            every,
            next: every,
        };
        reporter.send(0);
        reporter
    }

    /// `done` of the total is done now (reported when it crossed the next hundredth).
    pub(crate) fn at(&mut self, done: u64) {
        let done = done.min(self.total);
        if done >= self.next && done < self.total {
            self.send(done);
            self.next = (done / self.every + 1) * self.every;
        }
    }

    /// The step is finished (reports `total of total`).
    pub(crate) fn finish(self) {
        self.send(self.total);
    }

    fn send(&self, done: u64) {
        if self.total > 0 {
            self.sink.report(Progress {
                step: self.step,
                done,
                total: self.total,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn collect(total: u64, steps: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let seen = Mutex::new(Vec::new());
        let sink = |p: Progress| seen.lock().unwrap().push(p.done);
        let mut r = StepReporter::start(&sink, RecoveryStep::ReplayJournal, total);
        for done in steps {
            r.at(done);
        }
        r.finish();
        seen.into_inner().unwrap()
    }

    #[test]
    fn a_step_reports_its_start_each_hundredth_and_its_end() {
        let seen = collect(1000, 1..=1000);
        let expected: Vec<u64> = (0..100).map(|i| i * 10).chain([1000]).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_small_step_reports_every_unit_and_an_empty_one_nothing() {
        assert_eq!(collect(3, 1..=3), vec![0, 1, 2, 3]);
        assert_eq!(collect(0, []), Vec::<u64>::new());
    }

    #[test]
    fn jumps_report_once_and_never_past_the_total() {
        // Segments of uneven size: each jump crosses several hundredths but reports once.
        assert_eq!(
            collect(1000, [450, 455, 999, 5000]),
            vec![0, 450, 999, 1000]
        );
    }

    #[test]
    fn percent_rounds_down() {
        let p = |done, total| Progress {
            step: RecoveryStep::ScanJournal,
            done,
            total,
        };
        assert_eq!(p(0, 3).percent(), 0);
        assert_eq!(p(2, 3).percent(), 66);
        assert_eq!(p(3, 3).percent(), 100);
        assert_eq!(p(u64::MAX - 1, u64::MAX).percent(), 99);
    }
}
