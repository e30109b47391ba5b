//! Making tokens: [`mint`] signs an authority block with the root key; [`attenuate`] appends
//! a narrower block to any token, offline and without a key.
//!
//! Both write a block the same way: one `right(ACCESS, PATTERN)` fact per grant and one
//! expiry check. Facts are built as terms, not by formatting Datalog text, so no pattern can
//! inject Datalog into the block.

use std::time::SystemTime;

use biscuit_auth::builder::{fact, string, BlockBuilder};
use biscuit_auth::builder_ext::BuilderExt;
use biscuit_auth::Biscuit;

use super::blocks::{decode_unverified, read_blocks};
use super::grants::{check_token_string, Grant};
use super::keys::RootKey;
use super::{TokenError, LABEL, RIGHT};

/// The longest label accepted: it is for log lines.
const MAX_LABEL: usize = 256;

/// Mints a token: an authority block holding `grants`, expiring at `expires` (whole
/// seconds), with an optional human `label` for logs. Returns the token as base64.
pub fn mint(
    key: &RootKey,
    grants: &[Grant],
    expires: SystemTime,
    label: Option<&str>,
) -> Result<String, TokenError> {
    let mut builder = Biscuit::builder();
    for grant in block_facts(grants)? {
        builder = builder.fact(grant).map_err(internal)?;
    }
    if let Some(label) = label {
        check_label(label)?;
        builder = builder
            .fact(fact(LABEL, &[string(label)]))
            .map_err(internal)?;
    }
    builder
        .check_expiration_date(expires)
        .build(key.key_pair())
        .and_then(|token| token.to_base64())
        .map_err(internal)
}

/// Appends an attenuation block to `token`, without a key: its own `grants`, and its own
/// expiry, the earlier of `expires` and the token's current expiry (the earliest of its
/// blocks'), so the block also tells a reader the true expiry. Returns the new token.
///
/// The token's signature is not checked here (there is no key to check it with); a broker
/// refuses a tampered token anyway.
pub fn attenuate(
    token: &str,
    grants: &[Grant],
    expires: Option<SystemTime>,
) -> Result<String, TokenError> {
    let parent = decode_unverified(token)?;
    let blocks = read_blocks(
        parent.block_count(),
        |i| parent.print_block_source(i),
        parent.revocation_identifiers(),
    )?;
    let current = blocks.iter().filter_map(|b| b.expires_at()).min();
    let expires = match (expires, current) {
        (Some(given), Some(current)) => given.min(current),
        (Some(at), None) | (None, Some(at)) => at,
        (None, None) => return Err(TokenError::NoExpiry),
    };
    let mut block = BlockBuilder::new();
    for grant in block_facts(grants)? {
        block = block.fact(grant).map_err(internal)?;
    }
    parent
        .append(block.check_expiration_date(expires))
        .and_then(|token| token.to_base64())
        .map_err(internal)
}

/// The `right` facts of a block; at least one, since a block without grants denies all.
fn block_facts(grants: &[Grant]) -> Result<Vec<biscuit_auth::builder::Fact>, TokenError> {
    if grants.is_empty() {
        return Err(TokenError::NoGrants);
    }
    Ok(grants
        .iter()
        .map(|g| {
            fact(
                RIGHT,
                &[string(g.access().as_str()), string(g.pattern().as_str())],
            )
        })
        .collect())
}

fn check_label(label: &str) -> Result<(), TokenError> {
    let reason = if label.is_empty() {
        Some("empty")
    } else if label.len() > MAX_LABEL {
        Some("longer than 256 bytes")
    } else {
        check_token_string(label).err()
    };
    match reason {
        Some(reason) => Err(TokenError::InvalidLabel {
            label: label.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// An error from biscuit while building a block: our inputs are validated before, so this
/// is biscuit refusing something unexpected; report it as is.
fn internal(e: biscuit_auth::error::Token) -> TokenError {
    TokenError::Malformed(format!("biscuit refused to build the token: {e} ({e:?})"))
}
