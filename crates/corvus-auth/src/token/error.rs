//! [`TokenError`]: everything that can go wrong with keys, tokens and revocation lists. Each
//! message names the file, line, block or text it is about, so it can be printed as is.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::AuthError;

/// Why a key, a token, a grant or a revocation list was refused, or a file not written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A key or revocation file could not be read or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read" or "create".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a revocation list (atomically) failed.
    #[error(transparent)]
    Save(#[from] AuthError),
    /// `keygen` never overwrites a key file.
    #[error("{} already exists: refusing to overwrite a key", .0.display())]
    KeyExists(PathBuf),
    /// A key file, or key text, that holds no valid key.
    #[error("{}invalid {kind}: {reason}", in_file(path))]
    InvalidKey {
        /// "private key" or "public key".
        kind: &'static str,
        path: Option<PathBuf>,
        reason: String,
    },
    /// A grant that is not `ACCESS:PATTERN`, or whose pattern cannot go in a token.
    #[error("invalid grant {text:?}: {reason}")]
    InvalidGrant { text: String, reason: String },
    /// A token label that cannot go in a token.
    #[error("invalid label {label:?}: {reason}")]
    InvalidLabel { label: String, reason: &'static str },
    /// Minting or attenuating with no grant at all: such a block would deny everything.
    #[error("no grant given: a token (or an attenuation block) needs at least one")]
    NoGrants,
    /// An expiry that is neither a duration (`90s`, `10m`, `12h`, `30d`) nor an RFC 3339 time,
    /// or is not in the future.
    #[error("invalid expiry {text:?}: {reason}")]
    InvalidExpiry { text: String, reason: String },
    /// Not base64, not a biscuit, or too long.
    #[error("not a valid token: {0}")]
    Malformed(String),
    /// The signature chain does not verify against the namespace's public key: a token of
    /// another namespace, or one that was tampered with.
    #[error("the token's signature does not verify against the namespace key: {0}")]
    Signature(String),
    /// A block that does not say what a Corvus token block says (e.g. a `right` fact with an
    /// unknown access or an invalid pattern).
    #[error("block {block} of the token: {reason}")]
    InvalidBlock { block: usize, reason: String },
    /// The authority block has no expiry check: Corvus never mints such a token.
    #[error("the token has no expiry")]
    NoExpiry,
    /// `now` is past the earliest expiry of the token's blocks.
    #[error("the token expired at {}", crate::token::format_time(*.at))]
    Expired { at: SystemTime },
    /// One of the token's revocation ids is in the revocation list.
    #[error("the token is revoked (revocation id {id})")]
    Revoked { id: String },
    /// The token's own Datalog checks refused it (or exceeded the run limits).
    #[error("the token's own checks refuse it: {0}")]
    Refused(String),
    /// A line of a revocation list that is not a hex revocation id.
    #[error("{}line {line}: {problem}", in_file(path))]
    RevocationLine {
        path: Option<PathBuf>,
        /// 1-based.
        line: usize,
        problem: String,
    },
}

/// `"FILE: "` when there is a file to name.
fn in_file(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("{}: ", path.display()),
        None => String::new(),
    }
}

impl TokenError {
    /// A closure for `map_err` on an I/O result.
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| TokenError::Io {
            action,
            path,
            source,
        }
    }

    /// The same error, naming `path` if it is about a file's contents.
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            TokenError::InvalidKey { kind, reason, .. } => TokenError::InvalidKey {
                kind,
                path: Some(path.to_path_buf()),
                reason,
            },
            TokenError::RevocationLine { line, problem, .. } => TokenError::RevocationLine {
                path: Some(path.to_path_buf()),
                line,
                problem,
            },
            other => other,
        }
    }
}
