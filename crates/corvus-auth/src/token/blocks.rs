//! What each block of a token says: its grants, its expiry, its label and its revocation id.
//!
//! biscuit-auth has no public accessor for one block's facts (an authorizer query merges the
//! facts of every block it trusts). Its public API does print one block as Datalog source
//! (`print_block_source`), and `BlockBuilder::code` parses such source back into facts and
//! checks. That round trip is how a block is read here. It is sound because strings are
//! printed without escaping only in blocks the holder wrote themselves: a quote smuggled into
//! an attenuation block can only change what *that* block reads as, and a block can only
//! narrow the token (the authority block, minted by us, holds no such strings: see
//! `check_token_string`).
//!
//! The biscuit must be signature-checked before its blocks are trusted; [`inspect`] reads
//! them without a key, for display only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::builder::{Binary, BlockBuilder, Check, CheckKind, Op, Term};
use biscuit_auth::UnverifiedBiscuit;

use super::grants::Grant;
use super::{TokenError, LABEL, MAX_TOKEN_LEN, RIGHT, TIME};
use crate::pattern::{Access, Pattern};

/// What one block of a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    grants: Vec<Grant>,
    expires_at: Option<SystemTime>,
    revocation_id: String,
    label: Option<String>,
}

impl BlockInfo {
    /// The block's `right` facts. A request must be allowed by one of them (and by one in
    /// every other block).
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The earliest of the block's `check if time($t), $t <= DATE` checks, if it has one.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The block's revocation id, in hex.
    pub fn revocation_id(&self) -> &str {
        &self.revocation_id
    }

    /// The block's `label` fact, if any (`corvus token mint --id`).
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Whether the block allows `access` to `topic`: whether one of its grants does.
    pub(crate) fn allows(&self, access: Access, topic: &str) -> bool {
        self.grants.iter().any(|grant| grant.allows(access, topic))
    }
}

/// Reads every block of a token WITHOUT checking its signature: for display
/// (`corvus token inspect`) and for attenuating (which needs no key). Never base an
/// authorization decision on this: use [`crate::token::verify`].
pub fn inspect(token: &str) -> Result<Vec<BlockInfo>, TokenError> {
    let token = decode_unverified(token)?;
    read_blocks(
        token.block_count(),
        |i| token.print_block_source(i),
        token.revocation_identifiers(),
    )
}

/// The token text without surrounding whitespace, parsed but not verified.
pub(crate) fn decode_unverified(token: &str) -> Result<UnverifiedBiscuit, TokenError> {
    let token = token_text(token)?;
    UnverifiedBiscuit::from_base64(token).map_err(malformed)
}

/// The token text without surrounding whitespace (a file's final newline), bounded in size.
pub(crate) fn token_text(token: &str) -> Result<&str, TokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "{} bytes, more than the {MAX_TOKEN_LEN} a token may have",
            token.len()
        )));
    }
    if token.is_empty() {
        return Err(TokenError::Malformed("empty".into()));
    }
    Ok(token)
}

/// A biscuit decoding error, as a [`TokenError`]: signature failures apart from the rest.
pub(crate) fn malformed(e: biscuit_auth::error::Token) -> TokenError {
    use biscuit_auth::error::{Format, Token};
    match e {
        Token::Format(
            f @ (Format::Signature(_)
            | Format::SealedSignature
            | Format::UnknownPublicKey
            | Format::InvalidKey(_)),
        ) => TokenError::Signature(format!("{f:?}")),
        Token::Format(f) => TokenError::Malformed(format!("{f} ({f:?})")),
        other => TokenError::Malformed(other.to_string()),
    }
}

/// Reads `count` blocks given how to print each one's source and their revocation ids.
pub(crate) fn read_blocks(
    count: usize,
    source: impl Fn(usize) -> Result<String, biscuit_auth::error::Token>,
    revocation_ids: Vec<Vec<u8>>,
) -> Result<Vec<BlockInfo>, TokenError> {
    if revocation_ids.len() != count {
        // Cannot happen with a well-formed biscuit; refuse rather than mis-attribute ids.
        return Err(TokenError::Malformed(format!(
            "{count} blocks but {} revocation ids",
            revocation_ids.len()
        )));
    }
    (0..count)
        .zip(revocation_ids)
        .map(|(index, id)| {
            let text = source(index).map_err(malformed)?;
            read_block(index, &text, hex::encode(id))
        })
        .collect()
}

/// Reads one block from its Datalog source.
fn read_block(index: usize, source: &str, revocation_id: String) -> Result<BlockInfo, TokenError> {
    let invalid = |reason: String| TokenError::InvalidBlock {
        block: index,
        reason,
    };
    let block = BlockBuilder::new()
        .code(source)
        .map_err(|e| invalid(format!("cannot read it back: {e}")))?;
    let mut info = BlockInfo {
        grants: Vec::new(),
        expires_at: None,
        revocation_id,
        label: None,
    };
    for fact in &block.facts {
        let terms = fact.predicate.terms.as_slice();
        match fact.predicate.name.as_str() {
            RIGHT => info.grants.push(read_grant(terms).map_err(invalid)?),
            LABEL => match terms {
                [Term::Str(label)] if info.label.is_none() => info.label = Some(label.clone()),
                [Term::Str(_)] => return Err(invalid("more than one label".into())),
                _ => return Err(invalid(format!("a malformed label fact: {fact}"))),
            },
            // Other facts are the block's own business: biscuit's checks may use them.
            _ => {}
        }
    }
    for check in &block.checks {
        if let Some(at) = expiry_of(check) {
            info.expires_at = Some(info.expires_at.map_or(at, |other| other.min(at)));
        }
    }
    Ok(info)
}

/// A `right("ACCESS", "PATTERN")` fact's grant. Anything else named `right` makes the block
/// invalid: silently ignoring it would hide a typo that denies what it was meant to allow.
fn read_grant(terms: &[Term]) -> Result<Grant, String> {
    let [Term::Str(access), Term::Str(pattern)] = terms else {
        return Err("a `right` fact that is not right(\"ACCESS\", \"PATTERN\")".into());
    };
    let access = access.parse::<Access>().map_err(|e| e.to_string())?;
    let pattern = Pattern::parse(pattern).map_err(|e| e.to_string())?;
    Grant::new(access, pattern).map_err(|e| e.to_string())
}

/// The date of a `check if time($t), $t <= DATE` check: exactly the shape biscuit's
/// `check_expiration_date` writes. Other checks are not expiries (the authorizer still runs
/// them all).
fn expiry_of(check: &Check) -> Option<SystemTime> {
    let [query] = check.queries.as_slice() else {
        return None;
    };
    if check.kind != CheckKind::One || !query.scopes.is_empty() {
        return None;
    }
    let [body] = query.body.as_slice() else {
        return None;
    };
    let [Term::Variable(var)] = body.terms.as_slice() else {
        return None;
    };
    let [expression] = query.expressions.as_slice() else {
        return None;
    };
    match (body.name.as_str(), expression.ops.as_slice()) {
        (
            TIME,
            [Op::Value(Term::Variable(v)), Op::Value(Term::Date(date)), Op::Binary(Binary::LessOrEqual)],
        ) if v == var => Some(UNIX_EPOCH + Duration::from_secs(*date)),
        _ => None,
    }
}
