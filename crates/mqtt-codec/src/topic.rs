//! The syntax of topic names and topic filters (MQTT 3.1.1 section 4.7, MQTT 5.0 sections 4.7
//! and 4.8): which names and filters are well formed, and how a shared subscription
//! `$share/{group}/{filter}` splits. Matching names against filters is the broker's business.

/// Why a topic name or filter is not well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("is empty")]
    Empty,
    #[error("contains a wildcard character")]
    WildcardInName,
    #[error("'#' must be the last character and occupy a whole level")]
    MisplacedMultiLevelWildcard,
    #[error("'+' must occupy a whole level")]
    MisplacedSingleLevelWildcard,
    #[error(
        "shared subscription needs a share name without '+', '#' or '/', then '/' and a filter"
    )]
    InvalidShareName,
}

/// The prefix that marks a shared subscription.
pub const SHARE_PREFIX: &str = "$share/";

/// Checks a topic name: at least one character [MQTT-4.7.3-1], no wildcards [MQTT-3.3.2-2],
/// [MQTT-4.7.1-1].
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter, including the shared-subscription form.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    match SharedFilter::parse(filter) {
        Some(shared) => shared.map(|_| ()),
        None => validate_plain_filter(filter),
    }
}

/// Checks a filter that is not shared: at least one character, `#` alone in the last level
/// [MQTT-4.7.1-2], `+` alone in its level [MQTT-4.7.1-3].
fn validate_plain_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// True if the filter contains `+` or `#`.
pub fn has_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// A shared subscription's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The share name, the group that shares the messages.
    pub group: &'a str,
    /// The topic filter the group subscribes to.
    pub filter: &'a str,
}

impl<'a> SharedFilter<'a> {
    /// `None` if `filter` is not a shared subscription; otherwise its parts, or why it is
    /// malformed [MQTT-4.8.2-1], [MQTT-4.8.2-2].
    pub fn parse(filter: &'a str) -> Option<Result<SharedFilter<'a>, TopicError>> {
        let rest = filter.strip_prefix(SHARE_PREFIX)?;
        Some(Self::split(rest))
    }

    fn split(rest: &'a str) -> Result<SharedFilter<'a>, TopicError> {
        let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidShareName)?;
        if group.is_empty() || group.contains(['+', '#']) {
            return Err(TopicError::InvalidShareName);
        }
        validate_plain_filter(filter)?;
        Ok(SharedFilter { group, filter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_4_7_1_2_multi_level_wildcard_must_be_last_and_alone() {
        for ok in ["#", "a/#", "/#", "a/b/#", "+/#"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a#", "a/#/b", "#/", "a/b#", "##"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MisplacedMultiLevelWildcard),
                "{bad}"
            );
        }
    }

    #[test]
    fn mqtt_4_7_1_3_single_level_wildcard_must_occupy_a_level() {
        for ok in ["+", "+/+", "/+", "+/", "a/+/b", "sport/+/player1"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a+", "a/b+/c", "++", "+a"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MisplacedSingleLevelWildcard),
                "{bad}"
            );
        }
    }

    #[test]
    fn mqtt_4_7_3_1_empty_filter_and_name_are_invalid() {
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
    }

    #[test]
    fn empty_levels_are_valid() {
        for ok in ["/", "//", "a//b", "/a/"] {
            assert_eq!(validate_topic_name(ok), Ok(()));
            assert_eq!(validate_topic_filter(ok), Ok(()));
        }
    }

    #[test]
    fn mqtt_3_3_2_2_topic_name_must_not_contain_wildcards() {
        for bad in ["a/+", "#", "a/#", "a+b"] {
            assert_eq!(validate_topic_name(bad), Err(TopicError::WildcardInName));
        }
    }

    #[test]
    fn mqtt_4_8_2_1_and_2_shared_subscription_syntax() {
        assert_eq!(
            SharedFilter::parse("$share/g/a/+"),
            Some(Ok(SharedFilter {
                group: "g",
                filter: "a/+"
            }))
        );
        assert_eq!(SharedFilter::parse("$sharex/g/a"), None);
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g+/a",
            "$share/#/a",
        ] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::InvalidShareName),
                "{bad}"
            );
        }
        assert_eq!(validate_topic_filter("$share/g/"), Err(TopicError::Empty));
        assert_eq!(
            validate_topic_filter("$share/g/a#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
    }
}
