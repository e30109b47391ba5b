//! A connection that authenticated with a capability token ends when the token does: at its
//! expiry, or when a reloaded revocation list names it.

use std::sync::Arc;
use std::time::SystemTime;

use corvus_auth::token::{RevocationList, VerifiedToken};
use tokio::sync::watch;

#[derive(Debug)]
pub struct TokenWatch {
    token: Arc<VerifiedToken>,
    revocations: Option<watch::Receiver<Arc<RevocationList>>>,
}

impl TokenWatch {
    pub fn new(
        token: Arc<VerifiedToken>,
        revocations: Option<watch::Receiver<Arc<RevocationList>>>,
    ) -> TokenWatch {
        TokenWatch { token, revocations }
    }

    /// Resolves, with why, once the token is expired or revoked.
    pub async fn invalidated(&mut self) -> &'static str {
        // The token is valid through its expiry second (see `VerifiedToken::expires_at`).
        let left = self
            .token
            .expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + std::time::Duration::from_secs(1);
        let expired = tokio::time::sleep(left);
        tokio::pin!(expired);
        loop {
            let Some(revocations) = &mut self.revocations else {
                expired.as_mut().await;
                return "token expired";
            };
            if self.token.is_revoked_by(&revocations.borrow_and_update()) {
                return "token revoked";
            }
            tokio::select! {
                _ = expired.as_mut() => return "token expired",
                changed = revocations.changed() => {
                    if changed.is_err() {
                        // The broker is going away; expiry still applies.
                        self.revocations = None;
                    }
                }
            }
        }
    }
}
