//! The broker's check of a token: [`verify`], and what a verified token allows
//! ([`VerifiedToken`]). No I/O and no clock: the caller passes `now` and the revocation list.

use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{date, fact};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit};

use super::blocks::{malformed, read_blocks, token_text, BlockInfo};
use super::expiry::{seconds, truncate};
use super::keys::PublicKey;
use super::revocation::RevocationList;
use super::{TokenError, TIME};
use crate::pattern::Access;

/// Limits on running a token's own Datalog. Our blocks hold a few facts and one check; these
/// only bound what a hostile attenuation block could cost. biscuit's default time limit (1 ms)
/// is too tight for a loaded machine and a debug build.
const LIMITS: AuthorizerLimits = AuthorizerLimits {
    max_facts: 1000,
    max_iterations: 100,
    max_time: Duration::from_millis(20),
};

/// A token whose signature, expiry, revocation and own checks passed at some `now`.
#[derive(Clone)]
pub struct VerifiedToken {
    blocks: Vec<BlockInfo>,
    expires_at: SystemTime,
    /// The token as verified (whitespace trimmed): a bearer secret, never in `Debug`.
    text: String,
}

impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("blocks", &self.blocks)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl VerifiedToken {
    /// Whether the token allows `access` to `topic` (a topic name for publish and retain, a
    /// subscription filter for subscribe): iff EVERY block has a grant of that access whose
    /// pattern allows it. So a later block narrows, never widens.
    pub fn allows(&self, access: Access, topic: &str) -> bool {
        self.blocks.iter().all(|block| block.allows(access, topic))
    }

    /// When the token stops being valid: the earliest expiry of its blocks. It is still
    /// valid at exactly this second.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// The revocation ids of its blocks, in hex, authority block first.
    pub fn revocation_ids(&self) -> impl Iterator<Item = &str> {
        self.blocks.iter().map(BlockInfo::revocation_id)
    }

    /// The token as it was verified (surrounding whitespace trimmed), to verify it again
    /// later, e.g. when the broker recovers a session it authorized. A bearer secret: never
    /// log it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The authority block's label (`corvus token mint --id`), for logs.
    pub fn label(&self) -> Option<&str> {
        self.blocks.first().and_then(BlockInfo::label)
    }

    /// Whether `list` revokes the token (holds the id of any of its blocks): for re-checking
    /// live connections after the list is reloaded.
    pub fn is_revoked_by(&self, list: &RevocationList) -> bool {
        self.revoked_id(list).is_some()
    }

    fn revoked_id(&self, list: &RevocationList) -> Option<&str> {
        self.revocation_ids().find(|id| list.contains(id))
    }
}

/// Verifies `token` (base64, surrounding whitespace ignored) for the namespace of `key` at
/// `now`:
/// - its signatures, against `key` (another namespace's token, or any tampering: refused);
/// - revocation: no block's id may be in `revoked`;
/// - expiry: `now` must not be past the earliest expiry of its blocks (the authority block
///   must have one);
/// - its own Datalog checks, run by biscuit's authorizer with a `time(now)` fact, so that
///   whatever a block checks is honoured too.
pub fn verify(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
    revoked: &RevocationList,
) -> Result<VerifiedToken, TokenError> {
    let text = token_text(token)?.to_owned();
    let biscuit = decode_verified(&text, key)?;
    // Only now, with the signatures checked, do the blocks say what their signers wrote.
    let blocks = read_blocks(
        biscuit.block_count(),
        |i| biscuit.print_block_source(i),
        biscuit.revocation_identifiers(),
    )?;
    let expires_at = blocks
        .first()
        .and_then(BlockInfo::expires_at)
        .ok_or(TokenError::NoExpiry)?;
    let expires_at = blocks
        .iter()
        .filter_map(BlockInfo::expires_at)
        .fold(expires_at, SystemTime::min);
    let verified = VerifiedToken {
        blocks,
        expires_at,
        text,
    };
    if let Some(id) = verified.revoked_id(revoked) {
        return Err(TokenError::Revoked { id: id.to_string() });
    }
    // Whole seconds, as biscuit compares them: valid through the expiry's second.
    if seconds(now) > seconds(expires_at) {
        return Err(TokenError::Expired { at: expires_at });
    }
    run_own_checks(&biscuit, now)?;
    Ok(verified)
}

/// Checks only the signatures of `token` against `key` (`corvus token inspect --key`):
/// no expiry, no revocation.
pub fn verify_signature(token: &str, key: &PublicKey) -> Result<(), TokenError> {
    decode_verified(token, key).map(drop)
}

fn decode_verified(token: &str, key: &PublicKey) -> Result<Biscuit, TokenError> {
    Biscuit::from_base64(token_text(token)?, *key.inner()).map_err(malformed)
}

/// Runs biscuit's authorizer: every check of every block must pass with `time(now)`, and the
/// only policy allows (the grants are decided by [`VerifiedToken::allows`], not in Datalog).
fn run_own_checks(biscuit: &Biscuit, now: SystemTime) -> Result<(), TokenError> {
    let refused = |e: biscuit_auth::error::Token| TokenError::Refused(format!("{e} ({e:?})"));
    AuthorizerBuilder::new()
        .fact(fact(TIME, &[date(&truncate(now))]))
        .and_then(|b| b.policy("allow if true"))
        .map(|b| b.set_limits(LIMITS))
        .and_then(|b| b.build(biscuit))
        .and_then(|mut authorizer| authorizer.authorize())
        .map(drop)
        .map_err(refused)
}
