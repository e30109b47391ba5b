//! The namespace's keys and their files.
//!
//! Both files are text: optional `#` comment lines and one line with the key in biscuit's own
//! string form, `ed25519-private/HEX` for the private key, `ed25519/HEX` for the public key,
//! so the keys also work with other biscuit tools. The types wrap biscuit's so that callers
//! (the broker, the CLI) need not depend on biscuit themselves.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use biscuit_auth::KeyPair;

use super::TokenError;

/// The comment heading a private key file.
const PRIVATE_HEADER: &str =
    "# Corvus token namespace: the root PRIVATE key. Keep it secret: it mints tokens.";
/// The comment heading a public key file.
const PUBLIC_HEADER: &str =
    "# Corvus token namespace: the public key. The broker verifies tokens with it.";

/// A namespace's root key pair: what mints tokens.
pub struct RootKey(KeyPair);

impl RootKey {
    /// A new random key pair (ed25519, from the operating system's random generator).
    pub fn generate() -> RootKey {
        RootKey(KeyPair::new())
    }

    /// The public half, which verifies the tokens this key mints.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public())
    }

    /// Parses the text of a private key file.
    pub fn parse(text: &str) -> Result<RootKey, TokenError> {
        let line = key_line(text, "private key")?;
        let private = line
            .parse::<biscuit_auth::PrivateKey>()
            .map_err(|e| invalid("private key", e))?;
        Ok(RootKey(KeyPair::from(&private)))
    }

    /// Reads and parses a private key file.
    pub fn load(path: &Path) -> Result<RootKey, TokenError> {
        let text = std::fs::read_to_string(path).map_err(TokenError::io("read", path))?;
        RootKey::parse(&text).map_err(|e| e.in_file(path))
    }

    /// The text of a private key file: a comment line, then the key.
    pub fn to_file_text(&self) -> String {
        format!(
            "{PRIVATE_HEADER}\n{}\n",
            self.0.private().to_prefixed_string()
        )
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.0
    }
}

// No Debug derive for the private key: it must not end up in a log by accident.
impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootKey(public {})", self.0.public())
    }
}

/// A namespace's public key: what the broker verifies tokens with.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey(biscuit_auth::PublicKey);

impl PublicKey {
    /// Parses the text of a public key file (or just `ed25519/HEX`).
    pub fn parse(text: &str) -> Result<PublicKey, TokenError> {
        let line = key_line(text, "public key")?;
        let key = line
            .parse::<biscuit_auth::PublicKey>()
            .map_err(|e| invalid("public key", e))?;
        Ok(PublicKey(key))
    }

    /// Reads and parses a public key file.
    pub fn load(path: &Path) -> Result<PublicKey, TokenError> {
        let text = std::fs::read_to_string(path).map_err(TokenError::io("read", path))?;
        PublicKey::parse(&text).map_err(|e| e.in_file(path))
    }

    /// The text of a public key file: a comment line, then the key.
    pub fn to_file_text(&self) -> String {
        format!("{PUBLIC_HEADER}\n{}\n", self.0)
    }

    pub(crate) fn inner(&self) -> &biscuit_auth::PublicKey {
        &self.0
    }
}

/// `ed25519/HEX`.
impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Creates a new namespace: `NAMESPACE.key` (mode 0600 on unix) and `NAMESPACE.pub`, and
/// returns their paths. Refuses if either exists: overwriting a root key would orphan every
/// token minted with it.
pub fn keygen(namespace: &Path) -> Result<(PathBuf, PathBuf), TokenError> {
    let key_path = with_suffix(namespace, ".key");
    let pub_path = with_suffix(namespace, ".pub");
    for path in [&key_path, &pub_path] {
        // symlink_metadata: a dangling symlink exists too.
        if path.symlink_metadata().is_ok() {
            return Err(TokenError::KeyExists(path.clone()));
        }
    }
    let key = RootKey::generate();
    write_new(&key_path, key.to_file_text().as_bytes(), true)?;
    if let Err(e) = write_new(&pub_path, key.public_key().to_file_text().as_bytes(), false) {
        // Leave no half namespace behind: a private key without its public key file.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((key_path, pub_path))
}

/// `NAMESPACE` + `suffix`, keeping any dots already in the name (`site.1` → `site.1.key`).
fn with_suffix(namespace: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(namespace.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` (never replacing an existing file), writes and fsyncs it. `secret` files
/// are created 0600 from the start, so the key is never readable by others, even briefly.
fn write_new(path: &Path, contents: &[u8], secret: bool) -> Result<(), TokenError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => TokenError::KeyExists(path.to_path_buf()),
        _ => TokenError::io("create", path)(e),
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(TokenError::io("write", path))
}

/// The one line of a key file that is not blank or a `#` comment.
fn key_line<'a>(text: &'a str, kind: &'static str) -> Result<&'a str, TokenError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let line = lines.next().ok_or_else(|| TokenError::InvalidKey {
        kind,
        path: None,
        reason: "no key in it".into(),
    })?;
    if lines.next().is_some() {
        return Err(TokenError::InvalidKey {
            kind,
            path: None,
            reason: "more than one key line".into(),
        });
    }
    Ok(line)
}

fn invalid(kind: &'static str, e: biscuit_auth::error::Format) -> TokenError {
    TokenError::InvalidKey {
        kind,
        path: None,
        reason: format!("{e} ({e:?})"),
    }
}
