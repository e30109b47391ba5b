//! What a connected client may do, as the core asks it: the runtime decides (ACLs, tokens,
//! quotas) and hands each connection an [`Authorizer`]; the core asks it before anything a
//! client sends takes effect (PUBLISH, SUBSCRIBE, a will at CONNECT and when it fires, the
//! subscriptions of a resumed session), and answers the client with the reason code.
//!
//! The answer may change while the client is connected (ACLs reloaded, a retained quota
//! filling up): it is asked every time, never cached here.

use std::fmt::Debug;

use mqtt_codec::ReasonCode;

use crate::session::DropReason;

/// The answer for one PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Not granted: PUBACK/PUBREC 0x87 in v5, dropped in 3.1.1.
    NotAuthorized,
    /// Granted, but a broker-wide limit (retained messages) is reached: 0x97.
    QuotaExceeded,
}

impl Verdict {
    /// What a refused PUBLISH (or will) gets: the reason code for its acknowledgement, the
    /// drop reason it is counted under, and a reason string. `None` when allowed.
    pub fn refusal(self) -> Option<(ReasonCode, DropReason, &'static str)> {
        match self {
            Verdict::Allowed => None,
            Verdict::NotAuthorized => Some((
                ReasonCode::NotAuthorized,
                DropReason::NotAuthorized,
                "not authorized",
            )),
            Verdict::QuotaExceeded => Some((
                ReasonCode::QuotaExceeded,
                DropReason::QuotaExceeded,
                "retained message quota exceeded",
            )),
        }
    }
}

pub trait Authorizer: Send + Sync + Debug {
    /// May the client publish to `topic` (a topic name), with the RETAIN flag as given,
    /// `payload_len` bytes?
    fn publish(&self, topic: &str, retain: bool, payload_len: usize) -> Verdict;

    /// May the client subscribe with `filter`? A shared subscription is asked with its
    /// `$share/{group}/` prefix taken off: the group name grants nothing.
    fn subscribe(&self, filter: &str) -> bool;

    /// Who the client is, as an opaque text the runtime persists with the session and turns
    /// back into an authorizer after a restart, so that a recovered will is checked again
    /// when it fires. Its meaning is the runtime's; the core only carries it. `None`:
    /// nothing to persist, and the runtime decides what a recovered session without one may
    /// do (a runtime with authorization configured should deny it everything).
    ///
    /// It may hold a secret (a bearer token): [`Principal`]'s `Debug` never shows it.
    fn principal(&self) -> Option<Principal> {
        None
    }
}

/// Who a client is, as the runtime persists it with its session
/// ([`Authorizer::principal`]): opaque to the core and the store. It may hold a bearer
/// secret, so `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal(String);

impl Principal {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Principal {
    fn from(text: String) -> Principal {
        Principal(text)
    }
}

impl From<&str> for Principal {
    fn from(text: &str) -> Principal {
        Principal(text.to_owned())
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Principal({} bytes)", self.0.len())
    }
}

/// Everything is allowed: the loopback-only default with no authentication configured.
///
/// Its [`principal`](Authorizer::principal) is `None`: "everything" is not an identity the
/// core can vouch for after a restart, so what a recovered session may do is the runtime's
/// rule, not a grant written to disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn publish(&self, _topic: &str, _retain: bool, _payload_len: usize) -> Verdict {
        Verdict::Allowed
    }

    fn subscribe(&self, _filter: &str) -> bool {
        true
    }
}

/// The filter a subscription is authorized as: `$share/{group}/{filter}` as `{filter}`.
pub fn authorized_filter(filter: &str) -> &str {
    match mqtt_codec::topic::SharedFilter::parse(filter) {
        Some(Ok(shared)) => shared.filter,
        // A malformed one is authorized as written, which no grant outside `$share` covers.
        Some(Err(_)) | None => filter,
    }
}
