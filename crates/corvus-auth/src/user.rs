//! What a user name may be. MQTT user names are arbitrary UTF-8, and may well contain `+`, `#`,
//! `/` or spaces: they are kept literally, never interpreted. Only what would break the line
//! format is refused.

use crate::AuthError;

/// Checks that `user` can be written as the first field of a password file line: not empty,
/// no `:` (the separator), no line break (CR or LF: a second line), and not starting with `#`
/// (the line would read back as a comment).
pub fn validate_user_name(user: &str) -> Result<(), AuthError> {
    let reason = if user.is_empty() {
        "it is empty"
    } else if user.contains(':') {
        "it contains `:`, the separator of the password file"
    } else if user.contains(['\n', '\r']) {
        "it contains a line break"
    } else if user.starts_with('#') {
        "it starts with `#`, which would make its line a comment"
    } else {
        return Ok(());
    };
    Err(AuthError::InvalidUser {
        user: user.to_string(),
        reason,
    })
}

/// User names MQTT allows that look like wildcards, levels or padding: all kept literally.
#[cfg(test)]
pub(crate) const LITERAL_NAMES: [&str; 8] = [
    "alice",
    "a+b",
    "sensors/#",
    "x#y",
    "with space",
    " lead",
    "Zoë",
    "雀/+/#",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_mqtt_names_are_accepted() {
        for user in LITERAL_NAMES {
            assert!(validate_user_name(user).is_ok(), "{user:?}");
        }
    }

    #[test]
    fn names_that_break_the_format_are_refused() {
        for user in ["", "a:b", "a\nb", "a\rb", "#root"] {
            assert!(
                matches!(validate_user_name(user), Err(AuthError::InvalidUser { .. })),
                "{user:?}"
            );
        }
    }
}
