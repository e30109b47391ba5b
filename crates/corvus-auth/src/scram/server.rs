//! The broker's side of an exchange: client-first → server-first, then client-final →
//! server-final (or a refusal). Two steps, so the broker needs one AUTH round trip before
//! its CONNACK.

use subtle::ConstantTimeEq;

use super::attributes::{parse_client_final, parse_client_first};
use super::{b64, hmac, sha256, unb64, xor, Key, ScramCredentials, ScramError};

/// What the broker knows of the user a client names.
#[derive(Debug, Clone)]
pub enum Lookup {
    Known(ScramCredentials),
    /// No such user, or no SCRAM credentials for it: the exchange goes on with this salt and
    /// iteration count, made up but the same on every attempt, so that the server-first
    /// message does not tell whether the user exists; it fails at the end.
    Unknown {
        salt: Vec<u8>,
        iterations: u32,
    },
}

/// An exchange waiting for the client's final message.
#[derive(Debug)]
pub struct ServerExchange {
    user: String,
    credentials: Option<ScramCredentials>,
    gs2_header: String,
    /// The client's nonce followed by ours.
    nonce: String,
    /// `client-first-bare,server-first`: the AuthMessage up to the client-final part.
    auth_message_start: String,
}

/// Reads the client's first message and answers it. `server_nonce` must be fresh for every
/// exchange (see [`super::fresh_nonce`]).
pub fn start_exchange(
    client_first: &[u8],
    server_nonce: &str,
    lookup: impl FnOnce(&str) -> Lookup,
) -> Result<(ServerExchange, String), ScramError> {
    let text = std::str::from_utf8(client_first)
        .map_err(|_| ScramError::Malformed("the first message is not UTF-8"))?;
    let first = parse_client_first(text)?;
    let (credentials, salt, iterations) = match lookup(&first.user) {
        Lookup::Known(credentials) => {
            let (salt, iterations) = (credentials.salt.clone(), credentials.iterations);
            (Some(credentials), salt, iterations)
        }
        Lookup::Unknown { salt, iterations } => (None, salt, iterations),
    };
    let nonce = format!("{}{server_nonce}", first.nonce);
    let server_first = format!("r={nonce},s={},i={iterations}", b64(&salt));
    let exchange = ServerExchange {
        auth_message_start: format!("{},{server_first}", first.bare),
        gs2_header: first.gs2_header.to_string(),
        user: first.user,
        credentials,
        nonce,
    };
    Ok((exchange, server_first))
}

impl ServerExchange {
    /// The user the client claims to be (not yet proven).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client's proof. On success, the proven user name and the server-final
    /// message (the broker's signature, which the client checks).
    pub fn finish(self, client_final: &[u8]) -> Result<(String, String), ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("the final message is not UTF-8"))?;
        let last = parse_client_final(text)?;
        if unb64(last.binding).as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::BindingMismatch);
        }
        if last.nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof: Key = unb64(last.proof)
            .and_then(|p| Key::try_from(p.as_slice()).ok())
            .ok_or(ScramError::Malformed("the proof is not 32 bytes of base64"))?;
        let auth_message = format!("{},{}", self.auth_message_start, last.without_proof);
        let Some(credentials) = self.credentials else {
            // The same work as for a known user, then no.
            let _ = sha256(&xor(&proof, &hmac(&proof, &[auth_message.as_bytes()])));
            return Err(ScramError::UnknownUser(self.user));
        };
        let client_signature = hmac(&credentials.stored_key, &[auth_message.as_bytes()]);
        let client_key = xor(&proof, &client_signature);
        if !bool::from(sha256(&client_key).ct_eq(&credentials.stored_key)) {
            return Err(ScramError::InvalidProof(self.user));
        }
        let server_signature = hmac(&credentials.server_key, &[auth_message.as_bytes()]);
        Ok((self.user, format!("v={}", b64(&server_signature))))
    }
}
