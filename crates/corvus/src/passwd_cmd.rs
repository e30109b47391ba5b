//! `corvus passwd add FILE USER` and `corvus passwd delete FILE USER`: managing the password
//! file.
//!
//! This module owns the `passwd` subcommands: their arguments and help, reading the password,
//! what they print and their exit codes. The file format, hashing and the atomic save are
//! `corvus_auth`'s.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use corvus_auth::scram::ScramCredentials;
use corvus_auth::{hash_password, AuthError, PasswordFile};

/// Exit status of `delete` when the user is not in the file.
const EXIT_NO_USER: i32 = 1;
/// Exit status on error (unreadable or invalid file, bad user name, empty password).
const EXIT_ERROR: i32 = 2;
/// The longest password MQTT can carry (a two-byte length prefix).
const MAX_PASSWORD: usize = 65_535;

/// Manage a password file: one `user:argon2id-hash` line per user (with SCRAM-SHA-256
/// verifiers after the hash for users added with `--scram`).
#[derive(Debug, Subcommand)]
pub enum PasswdCommand {
    /// Add a user, or set a new password for an existing one.
    ///
    /// The password is read from standard input: one line, without its line end (prompted
    /// for on the terminal). It is hashed with argon2id (argon2's default parameters, a
    /// random salt). FILE is created (mode 0600) if missing; it is rewritten atomically,
    /// keeping comments and the order of the other lines.
    #[command(
        after_help = "Example: printf '%s\\n' \"$PASSWORD\" | corvus passwd add /etc/corvus/passwd alice\n\n\
                      Exit status: 0 on success; 2 on error (e.g. an invalid file, an empty \
                      password)."
    )]
    Add {
        /// The password file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The user name, taken literally (`+`, `#`, `/` and spaces included).
        #[arg(value_name = "USER")]
        user: String,
        /// Also store SCRAM-SHA-256 verifiers, so that MQTT 5 clients can authenticate with
        /// AUTH (method "SCRAM-SHA-256") without sending the password. They are weaker than
        /// the argon2id hash against someone who steals the file (PBKDF2): see
        /// docs/security.md.
        #[arg(long)]
        scram: bool,
        /// PBKDF2 iterations of the SCRAM verifiers (at least 4096, RFC 7677); each client
        /// pays them at every connection.
        #[arg(long, value_name = "N", default_value_t = corvus_auth::scram::MIN_ITERATIONS, requires = "scram")]
        scram_iterations: u32,
    },
    /// Remove a user.
    #[command(
        after_help = "Exit status: 0 on success; 1 if the user is not in the file; 2 on error \
                      (e.g. a missing or invalid file)."
    )]
    Delete {
        /// The password file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The user name.
        #[arg(value_name = "USER")]
        user: String,
    },
}

/// Runs the subcommand and returns the process's exit status.
pub fn run(cmd: &PasswdCommand) -> i32 {
    let (name, result) = match cmd {
        PasswdCommand::Add {
            file,
            user,
            scram,
            scram_iterations,
        } => ("add", add(file, user, scram.then_some(*scram_iterations))),
        PasswdCommand::Delete { file, user } => ("delete", delete(file, user)),
    };
    match result {
        Ok(Done::Changed(message)) => {
            println!("{message}");
            0
        }
        Ok(Done::NoUser(message)) => {
            eprintln!("corvus passwd {name}: {message}");
            EXIT_NO_USER
        }
        Err(message) => {
            eprintln!("corvus passwd {name}: {message}");
            EXIT_ERROR
        }
    }
}

enum Done {
    Changed(String),
    NoUser(String),
}

/// Adds or replaces `user`; with `scram` (an iteration count), with SCRAM verifiers too.
fn add(path: &Path, user: &str, scram: Option<u32>) -> Result<Done, String> {
    // Check everything that does not need the password first: no prompt for a doomed run.
    corvus_auth::validate_user_name(user).map_err(|e| e.to_string())?;
    if let Some(iterations) = scram {
        corvus_auth::scram::check_iterations(iterations)?;
    }
    let mut file = match PasswordFile::load(path) {
        Ok(file) => file,
        Err(AuthError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            PasswordFile::new()
        }
        Err(e) => return Err(e.to_string()),
    };
    let password = read_password(user)?;
    let mut hash = hash_password(&password).map_err(|e| e.to_string())?;
    if let Some(iterations) = scram {
        let verifiers = ScramCredentials::generate(&password, iterations)?;
        hash = format!("{hash} {}", verifiers.to_text());
    }
    let replaced = file.contains(user);
    file.add_or_replace(user, &hash)
        .and_then(|()| file.save(path))
        .map_err(|e| e.to_string())?;
    Ok(Done::Changed(match replaced {
        true => format!("replaced the password of {user:?} in {}", path.display()),
        false => format!("added {user:?} to {}", path.display()),
    }))
}

fn delete(path: &Path, user: &str) -> Result<Done, String> {
    let mut file = PasswordFile::load(path).map_err(|e| e.to_string())?;
    if !file.delete(user) {
        return Ok(Done::NoUser(format!(
            "no user {user:?} in {}",
            path.display()
        )));
    }
    file.save(path).map_err(|e| e.to_string())?;
    Ok(Done::Changed(format!(
        "deleted {user:?} from {}",
        path.display()
    )))
}

/// One line of standard input, without its `\n` or `\r\n`, as bytes (an MQTT password is
/// binary data, not necessarily UTF-8). On a terminal, prompts on stderr first (the
/// password is echoed: scripts pipe it in).
fn read_password(user: &str) -> Result<Vec<u8>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {user}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = Vec::new();
    // One byte more than a line end after the longest password, to tell a too long one.
    stdin
        .lock()
        .take(MAX_PASSWORD as u64 + 3)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.is_empty() {
        return Err("no password on standard input (an empty password is always refused)".into());
    }
    if line.len() > MAX_PASSWORD {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD} bytes, the most MQTT can carry"
        ));
    }
    Ok(line)
}
