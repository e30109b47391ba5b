//! The errors of this crate: each names the file (and line) or the user it is about, so a
//! message printed as is tells an operator what to fix.

use std::path::PathBuf;

/// Everything that can go wrong loading, editing, saving or hashing.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read" or "rename a temporary file over".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the password file is not `user:argon2id-hash`.
    #[error("{}:{line}: {problem}", path.display())]
    Parse {
        path: PathBuf,
        /// 1-based.
        line: usize,
        problem: LineError,
    },
    /// A user name that cannot be stored in the file.
    #[error("invalid user name {user:?}: {reason}")]
    InvalidUser { user: String, reason: &'static str },
    /// A hash given to [`crate::PasswordFile::add_or_replace`] that is not an argon2id PHC
    /// string.
    #[error("invalid password hash: {0}")]
    InvalidHash(String),
    /// Argon2 parameters out of range.
    #[error("invalid argon2 parameters: {0}")]
    InvalidParams(String),
    /// Hashing failed (the OS random generator, or argon2 itself).
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// Why one line of a password file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected `user:hash`, found no `:`")]
    MissingColon,
    #[error("invalid user name {user:?}: {reason}")]
    InvalidUser { user: String, reason: &'static str },
    #[error("user {user:?} is already defined on line {first_line}")]
    DuplicateUser { user: String, first_line: usize },
    #[error("invalid password hash for user {user:?}: {reason}")]
    InvalidHash { user: String, reason: String },
    #[error("not valid UTF-8")]
    NotUtf8,
}
