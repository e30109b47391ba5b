//! A connection that authenticated with a capability token ends when the token does: at its
//! expiry (a deadline the connection's timer watches with its others), or when a reloaded
//! revocation list names it.

use std::sync::Arc;
use std::time::SystemTime;

use corvus_auth::token::{RevocationList, VerifiedToken};
use tokio::sync::watch;

#[derive(Debug)]
pub struct TokenWatch {
    token: Arc<VerifiedToken>,
    revocations: Option<watch::Receiver<Arc<RevocationList>>>,
    /// When it stops being valid, on the broker's clock (`clock::now`, milliseconds).
    expires: corvus_core::Millis,
}

impl TokenWatch {
    pub fn new(
        token: Arc<VerifiedToken>,
        revocations: Option<watch::Receiver<Arc<RevocationList>>>,
    ) -> TokenWatch {
        // The token is valid through its expiry second (see `VerifiedToken::expires_at`).
        let expires = token
            .expires_at()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as corvus_core::Millis)
            + 1000;
        TokenWatch {
            token,
            revocations,
            expires,
        }
    }

    /// When the token stops being valid (milliseconds since the Unix epoch).
    pub fn expires(&self) -> corvus_core::Millis {
        self.expires
    }

    /// Resolves once the revocation list revokes the token (never, if the broker has no
    /// list or is going away).
    pub async fn revoked(&mut self) {
        loop {
            let Some(revocations) = &mut self.revocations else {
                return std::future::pending().await;
            };
            if self.token.is_revoked_by(&revocations.borrow_and_update()) {
                return;
            }
            if revocations.changed().await.is_err() {
                self.revocations = None;
            }
        }
    }
}
