//! Access control lists: which client may publish, subscribe or retain where. Only grants:
//! whatever no rule allows is denied, so a forgotten rule fails closed.
//!
//! The file is TOML, one `[[rule]]` table per grant:
//!
//! ```toml
//! [[rule]]
//! user = "alice"              # or: client = "sensor-7", anonymous = true, everyone = true
//! allow = ["publish", "subscribe"]
//! topics = ["devices/%u/#"]   # %u: the user name, %c: the client id, substituted literally
//! ```
//!
//! A rule for `everyone` applies to every client, anonymous ones included (a `%u` pattern
//! simply does not apply to a client without a user name). A `user` rule applies only to a
//! client authenticated as that user: a user name sent by an anonymous client names nobody.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::pattern::{Access, Pattern, PatternError, Subject, Template};

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSubject {
    User(String),
    Client(String),
    Anonymous,
    Everyone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub subject: RuleSubject,
    pub allow: Vec<Access>,
    pub topics: Vec<Template>,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("cannot read ACL file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ACL file {}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("ACL file {}: rule {rule}: {message}", path.display())]
    Rule {
        path: PathBuf,
        /// 1-based, in file order.
        rule: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default, rename = "rule")]
    rules: Vec<RuleToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    user: Option<String>,
    client: Option<String>,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    everyone: bool,
    allow: Vec<String>,
    topics: Vec<String>,
}

/// The client a question is about.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The authenticated user name; `None` for an anonymous client.
    pub username: Option<&'a str>,
    pub client_id: &'a str,
}

impl Acl {
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Read {
            path: path.to_owned(),
            source,
        })?;
        Acl::parse(&text, path)
    }

    /// Parses the text of an ACL file; `path` is for messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Acl, AclError> {
        let file: FileToml = toml::from_str(text).map_err(|e| AclError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let rules = file
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                rule.into_rule().map_err(|message| AclError::Rule {
                    path: path.to_owned(),
                    rule: i + 1,
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Acl { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Everything `who` is granted, with its placeholders filled in.
    pub fn grants(&self, who: Who<'_>) -> Grants {
        let subject = Subject {
            username: who.username,
            client_id: who.client_id,
        };
        let mut grants = Grants::default();
        for rule in self.rules.iter().filter(|rule| rule.applies_to(who)) {
            for template in &rule.topics {
                let Some(pattern) = template.instantiate(subject) else {
                    continue;
                };
                for &access in &rule.allow {
                    grants.by_access[access as usize].push(pattern.clone());
                }
            }
        }
        grants
    }
}

impl Rule {
    fn applies_to(&self, who: Who<'_>) -> bool {
        match &self.subject {
            RuleSubject::User(user) => who.username == Some(user.as_str()),
            RuleSubject::Client(client) => who.client_id == client,
            RuleSubject::Anonymous => who.username.is_none(),
            RuleSubject::Everyone => true,
        }
    }
}

impl RuleToml {
    fn into_rule(self) -> Result<Rule, String> {
        let subjects = [
            self.user.map(RuleSubject::User),
            self.client.map(RuleSubject::Client),
            self.anonymous.then_some(RuleSubject::Anonymous),
            self.everyone.then_some(RuleSubject::Everyone),
        ];
        let mut subjects = subjects.into_iter().flatten();
        let (Some(subject), None) = (subjects.next(), subjects.next()) else {
            return Err(
                "give exactly one of user = \"...\", client = \"...\", anonymous = true, everyone = true".into(),
            );
        };
        if self.allow.is_empty() {
            return Err("`allow` is empty: name publish, subscribe or retain".into());
        }
        if self.topics.is_empty() {
            return Err("`topics` is empty".into());
        }
        let allow = self
            .allow
            .iter()
            .map(|a| a.parse::<Access>())
            .collect::<Result<Vec<_>, PatternError>>()
            .map_err(|e| e.to_string())?;
        let topics = self
            .topics
            .iter()
            .map(|t| Template::parse(t))
            .collect::<Result<Vec<_>, PatternError>>()
            .map_err(|e| e.to_string())?;
        if subject == RuleSubject::Anonymous && topics.iter().any(Template::uses_username) {
            return Err(
                "a rule for anonymous clients cannot use %u: they have no user name".into(),
            );
        }
        Ok(Rule {
            subject,
            allow,
            topics,
        })
    }
}

/// What one client is granted: patterns by access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    by_access: [Vec<Pattern>; 3],
}

impl Grants {
    /// Whether `access` is granted on `topic` (a topic name for publish and retain, a filter
    /// for subscribe, which must be contained in a granted pattern).
    pub fn allows(&self, access: Access, topic: &str) -> bool {
        self.by_access[access as usize]
            .iter()
            .any(|p| p.allows(access, topic))
    }

    pub fn is_empty(&self) -> bool {
        self.by_access.iter().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[rule]]
        everyone = true
        allow = ["publish", "subscribe"]
        topics = ["devices/%u/#"]

        [[rule]]
        user = "ops"
        allow = ["subscribe"]
        topics = ["devices/#", "$SYS/#"]

        [[rule]]
        client = "gateway-1"
        allow = ["publish", "retain"]
        topics = ["status/%c"]

        [[rule]]
        anonymous = true
        allow = ["subscribe"]
        topics = ["public/#"]
    "#;

    fn acl() -> Acl {
        Acl::parse(EXAMPLE, Path::new("acl.toml")).unwrap()
    }

    fn user(name: &'static str) -> Who<'static> {
        Who {
            username: Some(name),
            client_id: "c1",
        }
    }

    #[test]
    fn each_client_gets_the_rules_that_name_it_and_nothing_else() {
        let acl = acl();
        let alice = acl.grants(user("alice"));
        assert!(alice.allows(Access::Publish, "devices/alice/temp"));
        assert!(alice.allows(Access::Subscribe, "devices/alice/#"));
        assert!(!alice.allows(Access::Publish, "devices/bob/temp"));
        assert!(!alice.allows(Access::Subscribe, "devices/#"));
        assert!(!alice.allows(Access::Retain, "devices/alice/temp"));
        assert!(!alice.allows(Access::Subscribe, "public/news"));

        let ops = acl.grants(user("ops"));
        assert!(ops.allows(Access::Subscribe, "devices/#"));
        assert!(ops.allows(Access::Subscribe, "$SYS/broker/uptime"));
        assert!(!ops.allows(Access::Publish, "devices/x/y"));

        let gateway = acl.grants(Who {
            username: Some("alice"),
            client_id: "gateway-1",
        });
        assert!(gateway.allows(Access::Retain, "status/gateway-1"));
        assert!(!gateway.allows(Access::Retain, "status/gateway-2"));

        let anonymous = acl.grants(Who {
            username: None,
            client_id: "c9",
        });
        assert!(anonymous.allows(Access::Subscribe, "public/#"));
        assert!(!anonymous.allows(Access::Publish, "devices/c9/x"));
        // The `everyone` rule's %u does not apply without a user name.
        assert!(!anonymous.allows(Access::Subscribe, "devices/+/x"));
    }

    #[test]
    fn a_wildcard_in_a_user_name_grants_no_wildcard() {
        let acl = acl();
        for name in ["#", "+", "a/b", "+/#"] {
            let grants = acl.grants(user(name));
            for filter in ["devices/#", "devices/+/temp", "#", "devices/+/#"] {
                assert!(!grants.allows(Access::Subscribe, filter), "{name} {filter}");
            }
            assert!(!grants.allows(Access::Publish, "devices/bob/x"), "{name}");
        }
    }

    #[test]
    fn nothing_is_granted_by_an_empty_acl() {
        let grants = Acl::default().grants(user("alice"));
        assert!(grants.is_empty());
        assert!(!grants.allows(Access::Publish, "a"));
    }

    #[test]
    fn mistakes_are_refused_with_the_rule_number() {
        let cases = [
            (
                "[[rule]]\nallow=[\"publish\"]\ntopics=[\"a\"]",
                "rule 1: give exactly one",
            ),
            (
                "[[rule]]\nuser=\"a\"\nclient=\"b\"\nallow=[\"publish\"]\ntopics=[\"a\"]",
                "rule 1: give exactly one",
            ),
            (
                "[[rule]]\nuser=\"a\"\nallow=[\"write\"]\ntopics=[\"a\"]",
                "unknown access",
            ),
            (
                "[[rule]]\nuser=\"a\"\nallow=[\"publish\"]\ntopics=[\"a/#/b\"]",
                "`#` must be",
            ),
            (
                "[[rule]]\nanonymous=true\nallow=[\"publish\"]\ntopics=[\"%u\"]",
                "cannot use %u",
            ),
            (
                "[[rule]]\nuser=\"a\"\nallow=[\"publish\"]\ntopics=[\"a\"]\ntopic=[\"b\"]",
                "unknown field",
            ),
            (
                "[[rule]]\nuser=\"a\"\nallow=[]\ntopics=[\"a\"]",
                "`allow` is empty",
            ),
        ];
        for (text, expected) in cases {
            let error = Acl::parse(text, Path::new("acl.toml"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(error.contains("acl.toml"), "{error}");
        }
    }
}
