//! The core's [`Authorizer`] for one client: its grants (everything, its ACL rules, or its
//! token's rights) and the broker-wide retained message quota.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use corvus_auth::acl::{Grants, Who};
use corvus_auth::pattern::Access;
use corvus_core::{Authorizer, Verdict};

use super::{Identity, LiveAcl};
use crate::broker::Broker;

/// What one client is granted.
#[derive(Debug)]
pub(super) enum Granted {
    /// The loopback default with no authentication configured.
    Everything,
    /// ACL rules for this client, instantiated again when the ACL file is reloaded.
    Acl {
        live: Arc<LiveAcl>,
        username: Option<String>,
        client_id: String,
        /// The grants and the ACL generation they were made from.
        cached: RwLock<(u64, Arc<Grants>)>,
    },
    /// A capability token's rights, and nothing else.
    Token(Arc<corvus_auth::token::VerifiedToken>),
}

impl Granted {
    pub(super) fn new(identity: &Identity, client_id: &str, acl: &Arc<LiveAcl>) -> Granted {
        match identity {
            Identity::Token(token) => Granted::Token(token.clone()),
            Identity::Everything => Granted::Everything,
            // Without an ACL file the ACL is empty: deny by default.
            Identity::Anonymous | Identity::User(_) => Granted::Acl {
                live: acl.clone(),
                username: identity.username().map(str::to_owned),
                client_id: client_id.to_owned(),
                cached: RwLock::new((u64::MAX, Arc::default())),
            },
        }
    }

    /// Whether every one of `accesses` is granted on `topic`, judged on one version of the
    /// grants (a reload between two checks cannot split them).
    fn allows(&self, accesses: &[Access], topic: &str) -> bool {
        match self {
            Granted::Everything => true,
            Granted::Token(token) => accesses.iter().all(|&a| token.allows(a, topic)),
            Granted::Acl {
                live,
                username,
                client_id,
                cached,
            } => {
                let generation = live.generation();
                let current = {
                    let cached = cached.read().unwrap_or_else(|p| p.into_inner());
                    (cached.0 == generation).then(|| cached.1.clone())
                };
                let grants = current.unwrap_or_else(|| {
                    let grants = Arc::new(live.current().grants(Who {
                        username: username.as_deref(),
                        client_id,
                    }));
                    *cached.write().unwrap_or_else(|p| p.into_inner()) =
                        (generation, grants.clone());
                    grants
                });
                accesses.iter().all(|&a| grants.allows(a, topic))
            }
        }
    }
}

/// Retained messages the broker keeps at most, all clients together.
#[derive(Debug, Clone, Copy)]
pub struct RetainedQuota {
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// The retained quota in force, shared by every authorizer: a reload changes it for every
/// client at once.
#[derive(Debug)]
pub struct LiveQuota {
    max_messages: AtomicUsize,
    max_bytes: AtomicUsize,
}

impl LiveQuota {
    pub fn new(quota: RetainedQuota) -> LiveQuota {
        LiveQuota {
            max_messages: AtomicUsize::new(quota.max_messages),
            max_bytes: AtomicUsize::new(quota.max_bytes),
        }
    }

    pub fn get(&self) -> RetainedQuota {
        RetainedQuota {
            max_messages: self.max_messages.load(Ordering::Relaxed),
            max_bytes: self.max_bytes.load(Ordering::Relaxed),
        }
    }

    pub fn set(&self, quota: RetainedQuota) {
        self.max_messages
            .store(quota.max_messages, Ordering::Relaxed);
        self.max_bytes.store(quota.max_bytes, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(super) struct ClientAuthorizer {
    pub(super) granted: Granted,
    pub(super) quota: Arc<LiveQuota>,
    /// Weak: sessions (which keep their authorizer) belong to the broker.
    pub(super) broker: Weak<Broker>,
}

impl Authorizer for ClientAuthorizer {
    fn publish(&self, topic: &str, retain: bool, payload_len: usize) -> Verdict {
        let needed: &[Access] = match retain {
            true => &[Access::Publish, Access::Retain],
            false => &[Access::Publish],
        };
        let allowed = self.granted.allows(needed, topic);
        if !allowed {
            return Verdict::NotAuthorized;
        }
        // An empty retained payload deletes: always within the quota.
        if retain && payload_len > 0 {
            if let Some(broker) = self.broker.upgrade() {
                if !broker.retained_admits(topic, payload_len, self.quota.get()) {
                    return Verdict::QuotaExceeded;
                }
            }
        }
        Verdict::Allowed
    }

    fn subscribe(&self, filter: &str) -> bool {
        self.granted.allows(&[Access::Subscribe], filter)
    }

    /// See `principal.rs`: `everything`, `anonymous`, `user:{name}` or `token:{token}`.
    fn principal(&self) -> Option<corvus_core::Principal> {
        Some(
            super::principal::Principal::of(&self.granted)
                .to_text()
                .into(),
        )
    }
}
