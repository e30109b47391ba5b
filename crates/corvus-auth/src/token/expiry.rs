//! Expiry times. On the command line: a duration from now (`90s`, `10m`, `12h`, `30d`) or an
//! RFC 3339 time. In a token: whole seconds since the Unix epoch (biscuit's date type), in a
//! `check if time($time), $time <= DATE` check, so any biscuit tool enforces it too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::TokenError;

/// The latest expiry accepted: the end of year 9999, the last one RFC 3339 can write (and
/// biscuit prints dates as RFC 3339).
const LATEST: u64 = 253_402_300_799;

/// Parses `--expires`: a positive duration from `now` (`90s`, `10m`, `12h`, `30d`) or an
/// RFC 3339 time (`2030-01-01T00:00:00Z`), which must be after `now`. The result is whole
/// seconds, as a token stores it.
pub fn parse_expiry(text: &str, now: SystemTime) -> Result<SystemTime, TokenError> {
    let invalid = |reason: &str| TokenError::InvalidExpiry {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let at = match parse_duration(text) {
        Some(Ok(duration)) if duration.is_zero() => return Err(invalid("a zero duration")),
        Some(Ok(duration)) => now
            .checked_add(duration)
            .ok_or_else(|| invalid("too far"))?,
        Some(Err(reason)) => return Err(invalid(reason)),
        None => {
            let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                invalid("expected a duration (90s, 10m, 12h, 30d) or an RFC 3339 time (2030-01-01T00:00:00Z)")
            })?;
            let secs = u64::try_from(at.unix_timestamp()).map_err(|_| invalid("before 1970"))?;
            UNIX_EPOCH + Duration::from_secs(secs)
        }
    };
    let at = truncate(at);
    if at <= now {
        return Err(invalid("it is not in the future"));
    }
    if seconds(at) > LATEST {
        return Err(invalid("later than the year 9999"));
    }
    Ok(at)
}

/// `Some` if `text` looks like `DIGITS UNIT`: the duration, or why it is refused.
fn parse_duration(text: &str) -> Option<Result<Duration, &'static str>> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(unit_at);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    if digits.is_empty() {
        return None;
    }
    Some(
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|secs| *secs <= LATEST)
            .map(Duration::from_secs)
            .ok_or("too far"),
    )
}

/// RFC 3339 in UTC, e.g. `2030-01-01T00:00:00Z`.
pub fn format_time(at: SystemTime) -> String {
    i64::try_from(seconds(at))
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{} seconds after 1970", seconds(at)))
}

/// Whole seconds since the epoch (0 before it): the resolution of biscuit dates.
pub(crate) fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `at` without its fraction of a second.
pub(crate) fn truncate(at: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds(at))
}
