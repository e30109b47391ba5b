//! What the broker stores per user for SCRAM-SHA-256 (never the password): the salt, the
//! iteration count, StoredKey and ServerKey. Their text form is RFC 5803's, as LDAP and
//! PostgreSQL write it: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.

use super::{b64, client_and_server_keys, salted_password, sha256, unb64, Key, KEY_LEN, METHOD};

/// RFC 7677: the iteration count SHOULD be at least 4096. Fewer is refused.
pub const MIN_ITERATIONS: u32 = 4096;
/// More than this is a typo (and a way to make every AUTH cost the client minutes).
const MAX_ITERATIONS: u32 = 10_000_000;
pub(super) const SALT_LEN: usize = 16;

#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Key,
    pub server_key: Key,
}

impl std::fmt::Debug for ScramCredentials {
    // The keys let whoever holds them impersonate the broker: not for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// The verifiers of `password` with this salt and iteration count.
    pub(crate) fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramCredentials {
        let (client_key, server_key) =
            client_and_server_keys(&salted_password(password, salt, iterations));
        ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key,
        }
    }

    /// The verifiers of `password` with a fresh random salt.
    pub fn generate(password: &[u8], iterations: u32) -> Result<ScramCredentials, String> {
        check_iterations(iterations)?;
        let mut salt = [0u8; SALT_LEN];
        getrandom::getrandom(&mut salt)
            .map_err(|e| format!("the OS random generator failed: {e}"))?;
        Ok(ScramCredentials::derive(password, &salt, iterations))
    }

    /// Parses the RFC 5803 form.
    pub fn parse(text: &str) -> Result<ScramCredentials, String> {
        let rest = text
            .strip_prefix(METHOD)
            .and_then(|rest| rest.strip_prefix('$'))
            .ok_or_else(|| format!("expected `{METHOD}$iterations:salt$StoredKey:ServerKey`"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or("expected `$` between the salt and the keys")?;
        let (iterations, salt) = params.split_once(':').ok_or("expected `iterations:salt`")?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| format!("iteration count {iterations:?} is not a number"))?;
        check_iterations(iterations)?;
        let salt = unb64(salt).ok_or("the salt is not base64")?;
        if salt.is_empty() {
            return Err("the salt is empty".into());
        }
        let (stored, server) = keys
            .split_once(':')
            .ok_or("expected `StoredKey:ServerKey`")?;
        Ok(ScramCredentials {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey")?,
            server_key: key(server, "ServerKey")?,
        })
    }

    /// The RFC 5803 form.
    pub fn to_text(&self) -> String {
        format!(
            "{METHOD}${}:{}${}:{}",
            self.iterations,
            b64(&self.salt),
            b64(&self.stored_key),
            b64(&self.server_key)
        )
    }
}

/// Whether `iterations` is an iteration count verifiers may have.
pub fn check_iterations(iterations: u32) -> Result<(), String> {
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "iteration count {iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
        ));
    }
    Ok(())
}

fn key(text: &str, name: &str) -> Result<Key, String> {
    unb64(text)
        .and_then(|bytes| Key::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| format!("{name} is not {KEY_LEN} bytes of base64"))
}
