//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the enhanced authentication method MQTT 5.0 clients
//! can name in CONNECT (`Authentication Method` "SCRAM-SHA-256") instead of sending their
//! password. The password never crosses the network, and the client learns that the broker
//! knows its verifier (the server signature), so a broker impersonating this one is caught.
//!
//! This module owns the mechanism and nothing else: the stored verifiers and their text form
//! ([`ScramCredentials`], RFC 5803), the server side of an exchange ([`ServerExchange`]), and
//! the client side ([`ScramClient`]) used by tests and tools. It does no I/O: the broker moves
//! the messages in AUTH packets.
//!
//! Not supported, and refused as such: channel binding (`p=`), an authorization identity
//! other than the user, and mandatory extensions (`m=`). User names and passwords are used as
//! they are given (no SASLprep normalization): ASCII is unaffected.

mod attributes;
mod client;
mod credentials;
mod server;

pub use client::{ScramClient, ScramClientFinal};
pub use credentials::{check_iterations, ScramCredentials, MIN_ITERATIONS};
pub use server::{start_exchange, Lookup, ServerExchange};

/// The method name in MQTT's Authentication Method property.
pub const METHOD: &str = "SCRAM-SHA-256";

/// Why an exchange failed. The broker tells the client only that it is refused; these say why
/// in its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("an authorization identity other than the user is not supported")]
    AuthorizationIdentity,
    #[error("the nonce does not continue the exchange's")]
    NonceMismatch,
    #[error("the channel binding data differs from the first message's")]
    BindingMismatch,
    #[error("unknown user {0:?}, or no SCRAM credentials for it")]
    UnknownUser(String),
    #[error("wrong proof (wrong password) for user {0:?}")]
    InvalidProof(String),
    #[error("the server's signature is wrong: it does not know this user's verifier")]
    InvalidServerSignature,
    #[error("the server refused: {0}")]
    ServerError(String),
}

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;
/// The output size of SHA-256, and so of every key in SCRAM-SHA-256.
const KEY_LEN: usize = 32;
type Key = [u8; KEY_LEN];

fn hmac(key: &[u8], parts: &[&[u8]]) -> Key {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

fn xor(a: &Key, b: &Key) -> Key {
    let mut out = [0u8; KEY_LEN];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC-SHA-256 and one output block.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Key {
    let keyed = match HmacSha256::new_from_slice(password) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: Key = mac.finalize().into_bytes().into();
    let mut result = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        result = xor(&result, &u);
    }
    result
}

/// ClientKey and ServerKey from the salted password (RFC 5802 section 3).
fn client_and_server_keys(salted: &Key) -> (Key, Key) {
    (
        hmac(salted, &[b"Client Key"]),
        hmac(salted, &[b"Server Key"]),
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    Base64::encode_string(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64ct::{Base64, Encoding};
    Base64::decode_vec(text).ok()
}

/// The key of made-up salts, from a secret text.
pub(crate) fn mock_key(secret: &str) -> Key {
    hmac(secret.as_bytes(), &[b"corvus scram mock key"])
}

/// A salt for a user who has no SCRAM credentials: keyed by a secret, so the same user always
/// gets the same one and nobody can tell it from a real one (as long as a real one).
pub(crate) fn mock_salt(key: &Key, user: &str) -> Vec<u8> {
    let mut salt = hmac(key, &[b"corvus scram mock salt\0", user.as_bytes()]).to_vec();
    salt.truncate(credentials::SALT_LEN);
    salt
}

/// A fresh nonce: 24 random bytes, base64 (printable, no comma, as RFC 5802 requires).
pub fn fresh_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes)?;
    Ok(b64(&bytes))
}

#[cfg(test)]
mod tests;
