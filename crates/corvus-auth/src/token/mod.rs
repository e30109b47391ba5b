//! Capability tokens: WAVE-style delegable grants, carried in [biscuit] tokens.
//!
//! A *namespace* is one root key pair. Its private key mints tokens ([`mint`]); the broker
//! holds only its public key and checks tokens against it ([`verify`]). A token is a chain of
//! blocks: the authority block, signed with the root key, then any number of attenuation blocks
//! that anyone holding the token may append offline, without a key ([`attenuate`]).
//!
//! Every block states its own grants (`right("publish", "site/1/#")` facts) and its own
//! expiry (a `check if time($time), $time <= DATE` check). A request is allowed only if
//! *every* block allows it, and the token expires at the earliest expiry of any block. That
//! intersection is what makes attenuation narrow-only: a later block can take rights away but
//! never add any, because the earlier blocks still have to allow the request.
//!
//! Each block has a revocation id; a [`RevocationList`] names revoked ids. Revoking a block's
//! id revokes that token and every token attenuated from it, never its parent.
//!
//! What lives where:
//! - `keys`: the root private key and the public key, their one-line text files, `keygen`.
//! - `grants`: one grant (`ACCESS:PATTERN`) and the strings a token may carry.
//! - `expiry`: expiry times: `30d` / RFC 3339 on the command line, seconds in a token.
//! - `blocks`: reading what each block of a token says ([`BlockInfo`], [`inspect`]).
//! - `mint`: making tokens and appending attenuation blocks.
//! - `verify`: the broker's check ([`verify`], [`VerifiedToken`]).
//! - `revocation`: the revocation list file.
//! - `error`: [`TokenError`].
//!
//! The library reads no clock: callers pass `now`. Only the key and revocation files are I/O.
//!
//! [biscuit]: https://www.biscuitsec.org/

mod blocks;
mod error;
mod expiry;
mod grants;
mod keys;
mod mint;
mod revocation;
mod verify;

#[cfg(test)]
mod tests;

pub use blocks::{inspect, BlockInfo};
pub use error::TokenError;
pub use expiry::{format_time, parse_expiry};
pub use grants::Grant;
pub use keys::{keygen, PublicKey, RootKey};
pub use mint::{attenuate, mint};
pub use revocation::RevocationList;
pub use verify::{verify, verify_signature, VerifiedToken};

/// The fact naming one grant: `right("publish", "site/1/#")`.
const RIGHT: &str = "right";
/// The fact holding the optional human label of a token (`--id`), for logs.
const LABEL: &str = "label";
/// The fact the broker supplies when it runs a token's own checks.
const TIME: &str = "time";

/// The largest token text accepted. MQTT carries a password in at most 65,535 bytes; this
/// also bounds the work a token can cost before its signature is even checked.
const MAX_TOKEN_LEN: usize = 65_535;
