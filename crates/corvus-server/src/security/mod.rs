//! Who a client is and what it may do: the authentication chain at CONNECT, the
//! [`Authorizer`] each connection hands the core, and reloading the files they read.
//!
//! The chain is ordered and fails closed: the first method that applies to a client decides,
//! and a client it refuses is not tried against the next one.
//! 1. A capability token, presented as the password with the token user name.
//! 2. The listener's client certificate, when it has `cert_identity`: its name is the user.
//! 3. The password file, for any other user name.
//! 4. No credentials: anonymous, if the listener allows it.
//!
//! A v5 client that names an authentication method in CONNECT is authenticated by that
//! method alone (`enhanced.rs`: SCRAM-SHA-256 against the password file), or refused with
//! 0x8C if the broker does not know it.
//!
//! With nothing configured, anonymous clients (on loopback listeners only, see
//! `Config::validate`) may do everything. Once anything is configured, what is not granted
//! is denied: users and anonymous clients get their ACL rules, token holders their token's
//! rights.

mod authorizer;
mod bounded;
mod enhanced;
mod principal;
mod token_watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use corvus_auth::acl::{Acl, AclError};
use corvus_auth::token::{PublicKey, RevocationList, TokenError, VerifiedToken};
use corvus_auth::{AuthError, PasswordFile};
use corvus_core::Authorizer;
use mqtt_codec::ReasonCode;
use tokio::sync::watch;

use authorizer::{ClientAuthorizer, Granted};
pub use authorizer::{LiveQuota, RetainedQuota};
use bounded::BoundedBlocking;
pub use enhanced::Exchange;
pub use token_watch::TokenWatch;

use crate::broker::Broker;
use crate::config::{CertIdentity, Config};

/// Who a client was authenticated as.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Anonymous, with no authentication configured: may do everything.
    Everything,
    /// Anonymous, with authentication configured: the ACL's anonymous rules.
    Anonymous,
    /// A user of the password file, or named by a client certificate.
    User(String),
    Token(Arc<VerifiedToken>),
}

impl Identity {
    pub fn username(&self) -> Option<&str> {
        match self {
            Identity::User(name) => Some(name),
            _ => None,
        }
    }

    /// For logs and the admin API: never a password or a token. Shared, and "anonymous"
    /// (most clients of an open broker) without an allocation per client: every connection
    /// keeps it (`ConnectionInfo`).
    pub fn describe(&self) -> Arc<str> {
        static ANONYMOUS: OnceLock<Arc<str>> = OnceLock::new();
        match self {
            Identity::Everything | Identity::Anonymous => {
                ANONYMOUS.get_or_init(|| Arc::from("anonymous")).clone()
            }
            Identity::User(name) => format!("user {name:?}").into(),
            Identity::Token(token) => match token.label() {
                Some(label) => format!("token {label:?}").into(),
                None => "token".into(),
            },
        }
    }
}

/// What a client presented.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// The name in its verified client certificate, when the listener reads one.
    pub certificate_name: Option<String>,
}

/// What a listener allows, for the chain.
#[derive(Debug, Clone, Copy)]
pub struct ListenerAuth {
    pub anonymous: bool,
    pub cert_identity: Option<CertIdentity>,
}

/// A refused CONNECT: the reason code, and why, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub reason: ReasonCode,
    pub why: String,
}

fn denied(reason: ReasonCode, why: impl Into<String>) -> Denied {
    Denied {
        reason,
        why: why.into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("password file: {0}")]
    Passwords(#[from] AuthError),
    #[error(transparent)]
    Acl(#[from] AclError),
    #[error("capability tokens: {0}")]
    Tokens(#[from] TokenError),
}

/// The ACL file's rules, replaced whole on reload; the generation tells authorizers that
/// their client's grants must be made again.
#[derive(Debug, Default)]
pub struct LiveAcl {
    generation: AtomicU64,
    acl: RwLock<Arc<Acl>>,
}

impl LiveAcl {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Arc<Acl> {
        self.acl.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, acl: Acl) {
        *self.acl.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(acl);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Tokens {
    key: PublicKey,
    username: String,
    revocation_file: Option<PathBuf>,
    /// Replaced on reload; connections holding a token watch it.
    revoked: watch::Sender<Arc<RevocationList>>,
}

/// The configured authentication and authorization, shared by every listener.
#[derive(Debug)]
pub struct Security {
    configured: bool,
    /// Whether some listener names users by their client certificate.
    certificates: bool,
    password_file: Option<PathBuf>,
    passwords: RwLock<Option<Arc<PasswordFile>>>,
    /// argon2 runs here, a few at a time.
    password_checks: BoundedBlocking,
    acl_file: Option<PathBuf>,
    /// Empty (nothing granted) without an ACL file.
    acl: Arc<LiveAcl>,
    tokens: Option<Tokens>,
    quota: Arc<LiveQuota>,
    /// The one authorizer of every client when nothing is configured (they all may do
    /// everything): shared, not one per connection.
    everything: OnceLock<Arc<dyn Authorizer>>,
}

impl Security {
    /// Reads every file the config names; any error stops the start.
    pub fn load(config: &Config) -> Result<Security, SecurityError> {
        let auth = &config.auth;
        let passwords = match &auth.password_file {
            Some(path) => Some(Arc::new(PasswordFile::load(path)?)),
            None => None,
        };
        let acl = Arc::new(LiveAcl::default());
        if let Some(path) = &auth.acl_file {
            acl.replace(Acl::load(path)?);
        }
        let tokens = match &auth.token_public_key {
            Some(path) => {
                let revoked = match &auth.revocation_file {
                    Some(file) => load_revocations(file)?,
                    None => RevocationList::new(),
                };
                Some(Tokens {
                    key: PublicKey::load(path)?,
                    username: auth.token_username.clone(),
                    revocation_file: auth.revocation_file.clone(),
                    revoked: watch::channel(Arc::new(revoked)).0,
                })
            }
            None => None,
        };
        Ok(Security {
            configured: config.auth_configured(),
            certificates: config.names_users_by_certificate(),
            password_file: auth.password_file.clone(),
            passwords: RwLock::new(passwords),
            password_checks: BoundedBlocking::per_core(),
            acl_file: auth.acl_file.clone(),
            acl,
            tokens,
            quota: Arc::new(LiveQuota::new(RetainedQuota {
                max_messages: config.limits.max_retained_messages,
                max_bytes: config.limits.max_retained_bytes,
            })),
            everything: OnceLock::new(),
        })
    }

    /// Replaces the retained quota (a reload): every client's next retained PUBLISH is held
    /// to it.
    pub fn set_retained_quota(&self, quota: RetainedQuota) {
        self.quota.set(quota);
    }

    /// Whether anything is configured (and so everything not granted denied).
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// Runs the chain for one CONNECT.
    pub async fn authenticate(
        &self,
        credentials: Credentials,
        listener: ListenerAuth,
    ) -> Result<Identity, Denied> {
        let Credentials {
            username,
            password,
            certificate_name,
        } = credentials;
        if let (Some(tokens), Some(user)) = (&self.tokens, &username) {
            if *user == tokens.username {
                return self.authenticate_token(tokens, password.as_deref());
            }
        }
        if listener.cert_identity.is_some() {
            // The listener verified the certificate against its CA; its name is the user.
            return match certificate_name {
                Some(name) => Ok(Identity::User(name)),
                None => Err(denied(
                    ReasonCode::NotAuthorized,
                    "the client certificate has no name of the configured kind",
                )),
            };
        }
        match (username, self.passwords()) {
            (Some(user), Some(passwords)) => {
                let password = password.unwrap_or_default();
                let (user, ok) = self
                    .password_checks
                    .run(move || {
                        let ok = passwords.verify(&user, &password);
                        (user, ok)
                    })
                    .await
                    .ok_or_else(|| denied(ReasonCode::UnspecifiedError, "password check failed"))?;
                match ok {
                    true => Ok(Identity::User(user)),
                    false => Err(denied(
                        ReasonCode::BadUserNameOrPassword,
                        format!("wrong password or unknown user {user:?}"),
                    )),
                }
            }
            // A user name nothing can check authenticates nobody: the client is anonymous
            // (and the name grants nothing).
            _ if !listener.anonymous => Err(denied(
                ReasonCode::NotAuthorized,
                "anonymous clients are not allowed on this listener",
            )),
            _ if self.configured => Ok(Identity::Anonymous),
            _ => Ok(Identity::Everything),
        }
    }

    /// The password file as loaded now.
    fn passwords(&self) -> Option<Arc<PasswordFile>> {
        self.passwords
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn authenticate_token(
        &self,
        tokens: &Tokens,
        password: Option<&[u8]>,
    ) -> Result<Identity, Denied> {
        let text = password
            .and_then(|p| std::str::from_utf8(p).ok())
            .ok_or_else(|| {
                denied(
                    ReasonCode::BadUserNameOrPassword,
                    "no token as the password",
                )
            })?;
        let revoked = tokens.revoked.borrow().clone();
        match corvus_auth::token::verify(text, &tokens.key, SystemTime::now(), &revoked) {
            Ok(token) => Ok(Identity::Token(Arc::new(token))),
            // Valid, but no longer: the holder is known and not authorized.
            Err(e @ (TokenError::Expired { .. } | TokenError::Revoked { .. })) => {
                Err(denied(ReasonCode::NotAuthorized, e.to_string()))
            }
            Err(e) => Err(denied(ReasonCode::BadUserNameOrPassword, e.to_string())),
        }
    }

    /// The core's authorizer for a client authenticated as `identity`.
    pub fn authorizer(
        &self,
        identity: &Identity,
        client_id: &str,
        broker: &Arc<Broker>,
    ) -> Arc<dyn Authorizer> {
        let build = || -> Arc<dyn Authorizer> {
            Arc::new(ClientAuthorizer {
                granted: Granted::new(identity, client_id, &self.acl),
                quota: self.quota.clone(),
                broker: Arc::downgrade(broker),
            })
        };
        match identity {
            // Nothing in it depends on the client (the broker is the same for all).
            Identity::Everything => self.everything.get_or_init(build).clone(),
            _ => build(),
        }
    }

    /// The revocation list as it changes, for connections holding a token.
    pub fn revocations(&self) -> Option<watch::Receiver<Arc<RevocationList>>> {
        self.tokens.as_ref().map(|t| t.revoked.subscribe())
    }

    /// Reads the password file, the ACL file and the revocation list again (SIGHUP). All or
    /// nothing: if any is broken, nothing changes and the error says which.
    pub fn reload(&self) -> Result<(), SecurityError> {
        let passwords = match &self.password_file {
            Some(path) => Some(Arc::new(PasswordFile::load(path)?)),
            None => None,
        };
        let acl = match &self.acl_file {
            Some(path) => Some(Acl::load(path)?),
            None => None,
        };
        let revoked = match self
            .tokens
            .as_ref()
            .and_then(|t| t.revocation_file.as_ref())
        {
            Some(path) => Some(load_revocations(path)?),
            None => None,
        };
        *self.passwords.write().unwrap_or_else(|p| p.into_inner()) = passwords;
        if let Some(acl) = acl {
            self.acl.replace(acl);
        }
        if let (Some(tokens), Some(revoked)) = (&self.tokens, revoked) {
            tokens.revoked.send_replace(Arc::new(revoked));
        }
        Ok(())
    }

    /// For the start line.
    pub fn describe(&self) -> String {
        if !self.configured {
            return "none configured: anonymous clients on loopback may do everything".into();
        }
        let mut methods = Vec::new();
        if self.tokens.is_some() {
            methods.push("capability tokens");
        }
        if self.certificates {
            methods.push("client certificates");
        }
        if self.password_file.is_some() {
            methods.push("password file");
        }
        if self.passwords().is_some_and(|p| p.has_scram()) {
            methods.push("SCRAM-SHA-256 (v5 AUTH)");
        }
        if self.acl_file.is_some() {
            methods.push("ACL file");
        }
        format!("{}; whatever is not granted is denied", methods.join(", "))
    }
}

/// A missing revocation file is an empty list (nothing revoked yet); a broken one is an
/// error.
fn load_revocations(path: &std::path::Path) -> Result<RevocationList, TokenError> {
    if !path.exists() {
        return Ok(RevocationList::new());
    }
    RevocationList::load(path)
}
