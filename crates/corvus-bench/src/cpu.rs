//! The broker's CPU time, read from `/proc/PID/stat` (Linux): user and system time of all
//! its threads, those that ended included.
//!
//! The rate at which connections are opened is set by whichever side is slower, and on a
//! small machine that is often the generator: then every broker shows about the same rate.
//! The broker's CPU time per connection is its own cost, whatever limits the run.

/// User plus system CPU seconds process `pid` has used; `None` if it cannot be read (no
/// such process, not Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_cpu_ticks(&stat)?;
    // SAFETY: sysconf reads a system constant and touches no memory of ours.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field
/// 2, in parentheses) may hold spaces and parentheses, so fields are counted from the last
/// `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_past_a_name_with_spaces() {
        // Fields 3 to 15: state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
        // majflt, cmajflt, utime, stime.
        let stat = "4242 (corvus (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 3";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
        assert_eq!(parse_cpu_ticks("4242 (corvus) S 1"), None);
        assert_eq!(parse_cpu_ticks("no name"), None);
    }

    #[test]
    fn our_own_cpu_time_is_readable_and_grows() {
        let before = cpu_seconds(std::process::id()).expect("readable");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        // About 50 ms of work: more than the 10 ms a tick is.
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_seconds(std::process::id()).expect("readable");
        assert!(after > before, "{before} then {after}");
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}
