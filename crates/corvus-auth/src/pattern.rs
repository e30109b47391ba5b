//! Topic patterns: what a grant (an ACL rule or a token's `right`) covers, and the two
//! questions the broker asks of one: may a PUBLISH to this topic name go ahead
//! ([`Pattern::matches_topic`]), and is every topic a subscription filter can match covered
//! ([`Pattern::contains_filter`]).
//!
//! Containment, not overlap, is what makes a SUBSCRIBE safe: a grant of `site/1/#` must not let
//! a client subscribe to `#` or `site/+/temp`, which match topics outside it.
//!
//! A pattern whose first level is a wildcard does not cover topics starting with `$` (as
//! subscriptions do not match them, MQTT 5.0 section 4.7.2): `$SYS/#` needs a grant of its own.
//!
//! Patterns may be built from an identity ([`Template`]: `%u` for the user name, `%c` for the
//! client identifier). The identity is substituted *literally*: the level it lands in matches
//! only that exact text, so a `+`, `#` or `/` in a user name never becomes a wildcard or a
//! level separator.

use std::fmt;
use std::str::FromStr;

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// PUBLISH to a topic (wills included).
    Publish,
    /// SUBSCRIBE with a filter.
    Subscribe,
    /// PUBLISH with the RETAIN flag: needs `publish` as well.
    Retain,
}

impl Access {
    pub const ALL: [Access; 3] = [Access::Publish, Access::Subscribe, Access::Retain];

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Publish => "publish",
            Access::Subscribe => "subscribe",
            Access::Retain => "retain",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Access, PatternError> {
        Access::ALL
            .into_iter()
            .find(|access| access.as_str() == text)
            .ok_or_else(|| PatternError::UnknownAccess(text.to_string()))
    }
}

/// Why a pattern or an access name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty topic pattern")]
    Empty,
    #[error("topic pattern {0:?}: `#` must be the last level, alone")]
    MisplacedMultiLevel(String),
    #[error("topic pattern {0:?}: `+` must be alone in its level")]
    MisplacedSingleLevel(String),
    #[error("topic pattern {0:?} contains U+0000")]
    Null(String),
    #[error("topic pattern {0:?}: `%` must be followed by `u` (user name) or `c` (client id); write `%%` for a literal `%`")]
    BadPlaceholder(String),
    #[error("unknown access {0:?}: expected publish, subscribe or retain")]
    UnknownAccess(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    /// `+`
    Single,
    /// `#`
    Multi,
}

/// A topic pattern with no placeholders, ready to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    levels: Vec<Level>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        check_text(text)?;
        let levels = text
            .split('/')
            .map(|level| wildcard_level(text, level).unwrap_or_else(|| Ok(exact(level))))
            .collect::<Result<Vec<_>, _>>()?;
        check_multi_last(text, &levels)?;
        Ok(Pattern {
            text: text.to_string(),
            levels,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a PUBLISH to `topic` (a topic name: no wildcards) is covered.
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.covers(topic.split('/').map(FilterLevel::Literal))
    }

    /// Whether this pattern grants `access` to `topic`: a topic name it matches for publish
    /// and retain, a subscription filter it contains for subscribe.
    pub fn allows(&self, access: Access, topic: &str) -> bool {
        match access {
            Access::Subscribe => self.contains_filter(topic),
            Access::Publish | Access::Retain => self.matches_topic(topic),
        }
    }

    /// Whether every topic `filter` matches is covered. A shared subscription's
    /// `$share/{group}/` prefix must be taken off by the caller first.
    pub fn contains_filter(&self, filter: &str) -> bool {
        self.covers(filter.split('/').map(|level| match level {
            "+" => FilterLevel::Single,
            "#" => FilterLevel::Multi,
            literal => FilterLevel::Literal(literal),
        }))
    }

    fn covers<'a>(&self, mut filter: impl Iterator<Item = FilterLevel<'a>>) -> bool {
        for (index, level) in self.levels.iter().enumerate() {
            let next = filter.next();
            // A wildcard first level never reaches `$` topics.
            let dollar =
                index == 0 && matches!(next, Some(FilterLevel::Literal(l)) if l.starts_with('$'));
            match level {
                // `a/#` covers `a` itself and everything below it.
                Level::Multi => return !dollar,
                Level::Single => match next {
                    Some(FilterLevel::Literal(_) | FilterLevel::Single) if !dollar => {}
                    _ => return false,
                },
                Level::Exact(text) => match next {
                    Some(FilterLevel::Literal(literal)) if literal == text => {}
                    _ => return false,
                },
            }
        }
        filter.next().is_none()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, Copy)]
enum FilterLevel<'a> {
    Literal(&'a str),
    Single,
    Multi,
}

/// Who a [`Template`] is instantiated for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    User,
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateLevel {
    Fixed(Level),
    /// A level with at least one placeholder: always exact once substituted.
    Substituted(Vec<Part>),
}

/// A pattern that may hold `%u` and `%c` placeholders (ACL rules). `%%` is a literal `%`;
/// a level without placeholders is taken as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    levels: Vec<TemplateLevel>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, PatternError> {
        check_text(text)?;
        let mut levels = Vec::new();
        for level in text.split('/') {
            if let Some(wildcard) = wildcard_level(text, level) {
                levels.push(TemplateLevel::Fixed(wildcard?));
                continue;
            }
            let parts = placeholder_parts(text, level)?;
            levels.push(match parts.as_slice() {
                [] => TemplateLevel::Fixed(exact("")),
                [Part::Text(text)] => TemplateLevel::Fixed(exact(text)),
                _ => TemplateLevel::Substituted(parts),
            });
        }
        let last = levels.len() - 1;
        let misplaced = levels
            .iter()
            .enumerate()
            .any(|(i, level)| i != last && *level == TemplateLevel::Fixed(Level::Multi));
        if misplaced {
            return Err(PatternError::MisplacedMultiLevel(text.to_string()));
        }
        Ok(Template {
            text: text.to_string(),
            levels,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the template names the user (so it cannot apply to an anonymous client).
    pub fn uses_username(&self) -> bool {
        self.parts().any(|part| *part == Part::User)
    }

    fn parts(&self) -> impl Iterator<Item = &Part> {
        self.levels.iter().flat_map(|level| match level {
            TemplateLevel::Substituted(parts) => parts.as_slice(),
            TemplateLevel::Fixed(_) => &[],
        })
    }

    /// The pattern for `subject`; `None` when it names a user and the client has none.
    pub fn instantiate(&self, subject: Subject<'_>) -> Option<Pattern> {
        let mut levels = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            levels.push(match level {
                TemplateLevel::Fixed(level) => level.clone(),
                TemplateLevel::Substituted(parts) => {
                    let mut text = String::new();
                    for part in parts {
                        match part {
                            Part::Text(t) => text.push_str(t),
                            Part::User => text.push_str(subject.username?),
                            Part::Client => text.push_str(subject.client_id),
                        }
                    }
                    Level::Exact(text)
                }
            });
        }
        Some(Pattern {
            text: self.text.clone(),
            levels,
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn check_text(text: &str) -> Result<(), PatternError> {
    if text.is_empty() {
        return Err(PatternError::Empty);
    }
    if text.contains('\0') {
        return Err(PatternError::Null(text.to_string()));
    }
    Ok(())
}

fn exact(level: &str) -> Level {
    Level::Exact(level.to_string())
}

/// `Some` for a level that is or holds a wildcard: the wildcard, or the error of one mixed
/// with other characters.
fn wildcard_level(text: &str, level: &str) -> Option<Result<Level, PatternError>> {
    match level {
        "+" => Some(Ok(Level::Single)),
        "#" => Some(Ok(Level::Multi)),
        _ if level.contains('#') => Some(Err(PatternError::MisplacedMultiLevel(text.to_string()))),
        _ if level.contains('+') => Some(Err(PatternError::MisplacedSingleLevel(text.to_string()))),
        _ => None,
    }
}

fn check_multi_last(text: &str, levels: &[Level]) -> Result<(), PatternError> {
    let misplaced = levels
        .iter()
        .rev()
        .skip(1)
        .any(|level| *level == Level::Multi);
    if misplaced {
        return Err(PatternError::MisplacedMultiLevel(text.to_string()));
    }
    Ok(())
}

fn placeholder_parts(text: &str, level: &str) -> Result<Vec<Part>, PatternError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = level.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let placeholder = match chars.next() {
            Some('%') => {
                literal.push('%');
                continue;
            }
            Some('u') => Part::User,
            Some('c') => Part::Client,
            _ => return Err(PatternError::BadPlaceholder(text.to_string())),
        };
        if !literal.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut literal)));
        }
        parts.push(placeholder);
    }
    if !literal.is_empty() || parts.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn topics_match_as_subscriptions_would() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("#", "anything/at/all", true),
            ("#", "$SYS/uptime", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("a/+/c", "a//c", true),
            ("", "", false),
        ];
        for (pattern, topic, expected) in cases {
            if pattern.is_empty() {
                assert_eq!(Pattern::parse(pattern), Err(PatternError::Empty));
                continue;
            }
            assert_eq!(
                p(pattern).matches_topic(topic),
                expected,
                "{pattern} {topic}"
            );
        }
    }

    #[test]
    fn a_filter_is_allowed_only_when_contained() {
        let cases = [
            ("site/1/#", "site/1/+/temp", true),
            ("site/1/#", "site/1/#", true),
            ("site/1/#", "site/1", true),
            ("site/1/#", "site/#", false),
            ("site/1/#", "site/+/temp", false),
            ("site/1/#", "#", false),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/+", "a/b", true),
            ("a/b", "a/+", false),
            ("#", "#", true),
            ("#", "$SYS/#", false),
            ("#", "+/x", true),
            ("$SYS/#", "$SYS/#", true),
            ("$SYS/#", "+/#", false),
        ];
        for (pattern, filter, expected) in cases {
            assert_eq!(
                p(pattern).contains_filter(filter),
                expected,
                "{pattern} ⊇ {filter}"
            );
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for text in ["a/#/b", "a#", "a/b+", "+a", "x\0"] {
            assert!(Pattern::parse(text).is_err(), "{text:?}");
            assert!(Template::parse(text).is_err(), "{text:?}");
        }
        assert!(matches!(
            Template::parse("a/%x"),
            Err(PatternError::BadPlaceholder(_))
        ));
        assert!(Template::parse("a/#/%u").is_err());
    }

    fn alice(user: Option<&str>, client: &str) -> Subject<'static> {
        Subject {
            username: user.map(|u| &*Box::leak(u.to_string().into_boxed_str())),
            client_id: Box::leak(client.to_string().into_boxed_str()),
        }
    }

    #[test]
    fn placeholders_are_substituted_literally() {
        let template = Template::parse("devices/%u/#").unwrap();
        let own = template.instantiate(alice(Some("alice"), "c1")).unwrap();
        assert!(own.matches_topic("devices/alice/temp"));
        assert!(!own.matches_topic("devices/bob/temp"));

        // A user named `#` or `+` gets a level with that literal text: it covers no filter
        // with a wildcard there, and no topic (topic names have no wildcards).
        for user in ["#", "+"] {
            let pattern = template.instantiate(alice(Some(user), "c1")).unwrap();
            assert!(!pattern.contains_filter("devices/#"), "{user}");
            assert!(!pattern.contains_filter("devices/+/temp"), "{user}");
            assert!(!pattern.matches_topic("devices/bob/temp"), "{user}");
        }
        // A `/` in a name never makes two levels.
        let slashed = template.instantiate(alice(Some("a/b"), "c1")).unwrap();
        assert!(!slashed.matches_topic("devices/a/b"));
        assert!(!slashed.contains_filter("devices/a/b/#"));

        let client = Template::parse("c/pre-%c-post/%%u").unwrap();
        let pattern = client.instantiate(alice(None, "x+y")).unwrap();
        assert!(pattern.matches_topic("c/pre-x+y-post/%u"));
        assert!(!client.uses_username());
        // No user name: a template naming one does not apply.
        assert!(template.instantiate(alice(None, "c1")).is_none());
        assert!(template.uses_username());
    }

    #[test]
    fn access_names_round_trip() {
        for access in Access::ALL {
            assert_eq!(access.as_str().parse::<Access>(), Ok(access));
        }
        assert!("write".parse::<Access>().is_err());
    }
}
