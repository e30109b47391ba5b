//! Who a client is, as written with its session record, and the authorizer a session
//! recovered from the store gets from it, so that a recovered will (pending for its delay,
//! armed when the broker stopped, or of a session that expired while it was down) is checked
//! when it fires like any other will.
//!
//! The text ([`Authorizer::principal`] of a client's authorizer) is one of:
//! - `everything`: a client of a broker with no authentication configured;
//! - `anonymous`: an anonymous client, under the ACL's anonymous rules;
//! - `user:{name}`: a user of the password file, or named by its client certificate (its
//!   ACL rules also depend on the client id, which the session keeps);
//! - `token:{token}`: a capability token, whole: a bearer secret, kept in the data directory
//!   (see `docs/security.md`). It is never logged.
//!
//! At recovery ([`Security::restore_authorizer`]) it is judged against the files as they are
//! now, failing closed. With no authentication configured, everything is allowed, as before.
//! Otherwise a recovered session gets:
//! - `anonymous`: the current ACL's anonymous rules;
//! - `user:{name}`: the current ACL's rules for that user, if the password file still has it
//!   (or some listener names users by client certificate: a certificate cannot be checked
//!   again, and the text does not say which method named the user);
//! - `token:{token}`: the token's rights, if it still verifies now (signature against the
//!   current public key, expiry, revocation list);
//! - anything else (no principal, as in records written before it was kept; `everything`,
//!   from a time nothing was configured; text this build does not know; a user gone; a
//!   token that no longer verifies): nothing. Its wills are dropped when they fire, counted
//!   as `not_authorized`.
//!
//! The session keeps the principal it was recovered with (it is written again with its
//! record), so every restart judges it again; a reconnecting client replaces it with its own.

use std::sync::Arc;
use std::time::SystemTime;

use corvus_core::{Authorizer, Verdict};
use tracing::debug;

use super::authorizer::Granted;
use super::{Identity, Security};
use crate::broker::Broker;

/// A principal, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Principal<'a> {
    Everything,
    Anonymous,
    User(&'a str),
    /// The token's text: never log it.
    Token(&'a str),
}

const EVERYTHING: &str = "everything";
const ANONYMOUS: &str = "anonymous";
const USER: &str = "user:";
const TOKEN: &str = "token:";

impl<'a> Principal<'a> {
    /// Who a client granted `granted` is.
    pub(super) fn of(granted: &'a Granted) -> Principal<'a> {
        match granted {
            Granted::Everything => Principal::Everything,
            Granted::Acl { username, .. } => match username {
                Some(name) => Principal::User(name),
                None => Principal::Anonymous,
            },
            Granted::Token(token) => Principal::Token(token.text()),
        }
    }

    pub(super) fn to_text(self) -> String {
        match self {
            Principal::Everything => EVERYTHING.into(),
            Principal::Anonymous => ANONYMOUS.into(),
            Principal::User(name) => format!("{USER}{name}"),
            Principal::Token(text) => format!("{TOKEN}{text}"),
        }
    }

    fn parse(text: &'a str) -> Option<Principal<'a>> {
        match text {
            EVERYTHING => Some(Principal::Everything),
            ANONYMOUS => Some(Principal::Anonymous),
            _ => {
                if let Some(name) = text.strip_prefix(USER) {
                    Some(Principal::User(name))
                } else {
                    text.strip_prefix(TOKEN).map(Principal::Token)
                }
            }
        }
    }

    /// For logs: never the token.
    fn describe(text: Option<&str>) -> String {
        match text.map(|t| (t, Principal::parse(t))) {
            None => "no principal (a record from before principals were kept)".into(),
            Some((_, Some(Principal::Everything))) => "everything".into(),
            Some((_, Some(Principal::Anonymous))) => "anonymous".into(),
            Some((_, Some(Principal::User(name)))) => format!("user {name:?}"),
            Some((_, Some(Principal::Token(_)))) => "a token".into(),
            Some((t, None)) => format!("an unknown principal of {} bytes", t.len()),
        }
    }
}

/// The authorizer of a recovered session: the one its principal stands for now, or nothing
/// granted; it keeps the principal it was recovered with.
#[derive(Debug)]
struct Recovered {
    principal: Option<corvus_core::Principal>,
    /// `None`: everything is denied.
    granted: Option<Arc<dyn Authorizer>>,
}

impl Authorizer for Recovered {
    fn publish(&self, topic: &str, retain: bool, payload_len: usize) -> Verdict {
        match &self.granted {
            Some(granted) => granted.publish(topic, retain, payload_len),
            None => Verdict::NotAuthorized,
        }
    }

    fn subscribe(&self, filter: &str) -> bool {
        self.granted.as_ref().is_some_and(|g| g.subscribe(filter))
    }

    fn principal(&self) -> Option<corvus_core::Principal> {
        self.principal.clone()
    }
}

impl Security {
    /// The authorizer of a session of `client_id` recovered from the store with `principal`
    /// (see the module docs for the rules).
    pub fn restore_authorizer(
        &self,
        principal: Option<&str>,
        client_id: &str,
        broker: &Arc<Broker>,
    ) -> Arc<dyn Authorizer> {
        let identity = match self.configured {
            false => Some(Identity::Everything),
            true => principal
                .and_then(Principal::parse)
                .and_then(|p| self.recovered_identity(p)),
        };
        if identity.is_none() {
            debug!(
                "recovered session {client_id:?}: {} is granted nothing now; its will is dropped if it fires",
                Principal::describe(principal)
            );
        }
        Arc::new(Recovered {
            principal: principal.map(corvus_core::Principal::from),
            granted: identity.map(|identity| self.authorizer(&identity, client_id, broker)),
        })
    }

    /// Who `principal` is now, with authentication configured; `None` if nobody.
    fn recovered_identity(&self, principal: Principal<'_>) -> Option<Identity> {
        match principal {
            // Recorded when nothing was configured: it is not an identity now.
            Principal::Everything => None,
            Principal::Anonymous => Some(Identity::Anonymous),
            Principal::User(name) => {
                let known = self.passwords().is_some_and(|p| p.contains(name));
                (known || self.certificates).then(|| Identity::User(name.to_owned()))
            }
            Principal::Token(text) => {
                let tokens = self.tokens.as_ref()?;
                let revoked = tokens.revoked.borrow().clone();
                corvus_auth::token::verify(text, &tokens.key, SystemTime::now(), &revoked)
                    .ok()
                    .map(|token| Identity::Token(Arc::new(token)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_round_trip_through_their_text() {
        for p in [
            Principal::Everything,
            Principal::Anonymous,
            Principal::User("alice"),
            Principal::User(""),
            Principal::User("user:x/#"),
            Principal::Token("EnEKBw.x"),
        ] {
            assert_eq!(Principal::parse(&p.to_text()), Some(p));
        }
        for bad in [
            "",
            "Everything",
            "user",
            "token",
            "cert:alice",
            "anonymous ",
        ] {
            assert_eq!(Principal::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn descriptions_never_show_a_token() {
        let text = Principal::Token("secret-token").to_text();
        let described = Principal::describe(Some(&text));
        assert!(!described.contains("secret"), "{described}");
        let recovered = Recovered {
            principal: Some(text.into()),
            granted: None,
        };
        assert!(!format!("{recovered:?}").contains("secret"));
        assert_eq!(recovered.publish("t", false, 1), Verdict::NotAuthorized);
        assert!(!recovered.subscribe("t"));
        assert_eq!(
            recovered.principal(),
            Some("token:secret-token".into()),
            "kept as recovered"
        );
    }
}
