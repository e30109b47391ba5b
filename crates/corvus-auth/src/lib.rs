//! Authentication and authorization for Corvus.
//!
//! This crate owns who a client is and what it may do: the ordered authentication chain of
//! `docs/security.md` and, later, the ACLs. For now it holds the first link of that chain,
//! the password file: its format ([`PasswordFile::parse`]), argon2id verification with uniform
//! timing for unknown users ([`PasswordFile::verify`]), hashing for `corvus passwd`
//! ([`hash_password`]) and editing it in place without losing comments
//! ([`PasswordFile::save`]).
//!
//! It does no networking and knows nothing of MQTT sessions: the broker asks it questions.

pub mod acl;
mod atomic_write;
mod error;
mod hash;
mod password_file;
pub mod pattern;
pub mod scram;
pub mod token;
mod user;

pub use error::{AuthError, LineError};
pub use hash::{hash_password, hash_password_with, HashParams};
pub use password_file::PasswordFile;
pub use user::validate_user_name;
