//! The broker's resident memory, read from `/proc/PID/status` (Linux), sampled while a run
//! goes on so that the peak is seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the sampler reads the broker's memory.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// `VmRSS` of process `pid` in KiB; `None` if it cannot be read (no such process, not Linux).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The highest RSS seen since [`Sampler::start`].
#[derive(Debug)]
pub struct Sampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid` every 100 ms.
    pub fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(rss_kb(pid).unwrap_or(0)));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                if let Some(kb) = rss_kb(pid) {
                    seen.fetch_max(kb, Ordering::Relaxed);
                }
            }
        });
        Sampler { peak, task }
    }

    /// Stops sampling; the peak in KiB.
    pub fn stop(self, pid: u32) -> u64 {
        self.task.abort();
        if let Some(kb) = rss_kb(pid) {
            self.peak.fetch_max(kb, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_a_status_file() {
        let status = "Name:\tcorvus\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn our_own_rss_is_readable() {
        assert!(rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
        assert_eq!(rss_kb(u32::MAX), None);
    }
}
