//! The generator's own open-file limit: thousands of connections need as many descriptors,
//! and the soft limit is often far below the hard one.

/// Raises the soft limit on open files towards `wanted` (up to the hard limit). An error
/// says what the limit is when it cannot reach `wanted`.
#[cfg(target_os = "linux")]
pub fn raise_open_files(wanted: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    // rlim_t is u64 on Linux.
    let target = wanted.min(limit.rlim_max);
    if limit.rlim_cur < target {
        limit.rlim_cur = target;
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(format!(
                "cannot raise the open-file limit: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    if target < wanted {
        return Err(format!(
            "the open-file limit is {} (hard): fewer connections than asked can be opened",
            limit.rlim_max
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_files(_wanted: u64) -> Result<(), String> {
    Ok(())
}
