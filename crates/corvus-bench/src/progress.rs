//! The progress line on standard error: once a second, what the run has done so far. On a
//! terminal it is rewritten in place; elsewhere (a log, a CI job) it is a line per second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Prints `line(elapsed)` every second until dropped.
#[derive(Debug)]
pub struct ProgressLine {
    task: tokio::task::JoinHandle<()>,
    terminal: bool,
}

impl ProgressLine {
    pub fn start<F>(mut line: F) -> ProgressLine
    where
        F: FnMut(Duration) -> String + Send + 'static,
    {
        let terminal = std::io::stderr().is_terminal();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let text = line(started.elapsed());
                let mut err = std::io::stderr().lock();
                let _ = match terminal {
                    true => write!(err, "\r\x1b[2K{text}"),
                    false => writeln!(err, "{text}"),
                };
                let _ = err.flush();
            }
        });
        ProgressLine { task, terminal }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.task.abort();
        if self.terminal {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
