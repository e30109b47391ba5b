//! One grant, `ACCESS:PATTERN` (e.g. `publish:site/1/#`): as written on the command line,
//! as stored in a block (`right("publish", "site/1/#")`), and as checked against a request.

use std::fmt;

use crate::pattern::{Access, Pattern};

use super::TokenError;

/// One right a block gives: an access (publish, subscribe, retain) on a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    access: Access,
    pattern: Pattern,
}

impl Grant {
    /// A grant of `access` on `pattern`. Fails if the pattern cannot be stored in a token
    /// (no `"`, `\` or control characters: see docs/tokens.md).
    pub fn new(access: Access, pattern: Pattern) -> Result<Grant, TokenError> {
        check_token_string(pattern.as_str()).map_err(|reason| TokenError::InvalidGrant {
            text: format!("{access}:{pattern}"),
            reason: reason.into(),
        })?;
        Ok(Grant { access, pattern })
    }

    /// Parses `ACCESS:PATTERN`, ACCESS one of `publish`, `subscribe`, `retain`. The pattern
    /// is everything after the first `:`, so it may itself hold colons.
    pub fn parse(text: &str) -> Result<Grant, TokenError> {
        let invalid = |reason: String| TokenError::InvalidGrant {
            text: text.to_string(),
            reason,
        };
        let (access, pattern) = text.split_once(':').ok_or_else(|| {
            invalid("expected ACCESS:PATTERN, e.g. publish:site/1/# (ACCESS is publish, subscribe or retain)".into())
        })?;
        let access = access
            .parse::<Access>()
            .map_err(|e| invalid(e.to_string()))?;
        check_token_string(pattern).map_err(|reason| invalid(reason.into()))?;
        let pattern = Pattern::parse(pattern).map_err(|e| invalid(e.to_string()))?;
        Ok(Grant { access, pattern })
    }

    pub fn access(&self) -> Access {
        self.access
    }

    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Whether this grant alone allows `access` to `topic` (a topic name for publish and
    /// retain, a subscription filter for subscribe).
    pub fn allows(&self, access: Access, topic: &str) -> bool {
        self.access == access && self.pattern.allows(access, topic)
    }
}

/// `ACCESS:PATTERN`, the form [`Grant::parse`] reads.
impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.access, self.pattern)
    }
}

/// Refuses strings that could not be read back out of a token exactly as written.
///
/// Blocks are read back from the Datalog source biscuit prints for them, and biscuit prints
/// strings between double quotes without escaping anything. A `"` or `\` would therefore
/// change what the block reads as, and control characters have no place in a topic pattern or
/// a log label anyway.
pub(crate) fn check_token_string(text: &str) -> Result<(), &'static str> {
    if text.contains(['"', '\\']) {
        return Err("`\"` and `\\` cannot be stored in a token");
    }
    if text.chars().any(char::is_control) {
        return Err("control characters cannot be stored in a token");
    }
    Ok(())
}
