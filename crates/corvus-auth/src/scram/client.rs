//! The client's side of an exchange, for tests and tools: client-first, then client-final
//! from the server-first, then the check of the server's signature.

use subtle::ConstantTimeEq;

use super::attributes::{encode_saslname, parse_server_final, parse_server_first};
use super::{
    b64, client_and_server_keys, hmac, salted_password, sha256, unb64, xor, Key, ScramError,
    MIN_ITERATIONS,
};

/// GS2 header of a client without channel binding, and its base64 (`c=` in client-final).
const GS2_HEADER: &str = "n,,";

/// A client that has sent its first message.
pub struct ScramClient {
    password: Vec<u8>,
    nonce: String,
    first_bare: String,
}

/// A client that has sent its final message and waits for the server's signature.
#[derive(Debug)]
pub struct ScramClientFinal {
    server_signature: Key,
}

impl std::fmt::Debug for ScramClient {
    // Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange; returns the client and its first message.
    pub fn start(user: &str, password: &[u8], nonce: &str) -> (ScramClient, String) {
        let first_bare = format!("n={},r={nonce}", encode_saslname(user));
        let message = format!("{GS2_HEADER}{first_bare}");
        let client = ScramClient {
            password: password.to_vec(),
            nonce: nonce.to_string(),
            first_bare,
        };
        (client, message)
    }

    /// Answers the server's first message with the proof.
    pub fn respond(self, server_first: &[u8]) -> Result<(ScramClientFinal, String), ScramError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("the server's message is not UTF-8"))?;
        let first = parse_server_first(text)?;
        // The server's nonce must extend ours, or this is someone else's exchange.
        if !first.nonce.starts_with(&self.nonce) || first.nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        if first.iterations < MIN_ITERATIONS {
            return Err(ScramError::Malformed("the iteration count is too low"));
        }
        let salt = unb64(first.salt).ok_or(ScramError::Malformed("the salt is not base64"))?;
        let (client_key, server_key) =
            client_and_server_keys(&salted_password(&self.password, &salt, first.iterations));
        let without_proof = format!("c={},r={}", b64(GS2_HEADER.as_bytes()), first.nonce);
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let client_signature = hmac(&sha256(&client_key), &[auth_message.as_bytes()]);
        let proof = xor(&client_key, &client_signature);
        let server_signature = hmac(&server_key, &[auth_message.as_bytes()]);
        let message = format!("{without_proof},p={}", b64(&proof));
        Ok((ScramClientFinal { server_signature }, message))
    }
}

impl ScramClientFinal {
    /// Checks the server's signature: only a server holding our verifier can make it.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("the server's message is not UTF-8"))?;
        let signature = unb64(parse_server_final(text)?)
            .ok_or(ScramError::Malformed("the signature is not base64"))?;
        match bool::from(signature.ct_eq(&self.server_signature)) {
            true => Ok(()),
            false => Err(ScramError::InvalidServerSignature),
        }
    }
}
