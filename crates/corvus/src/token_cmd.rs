//! `corvus token keygen|mint|attenuate|revoke|inspect`: managing capability tokens.
//!
//! This module owns the `token` subcommands: their arguments and help, reading tokens from
//! files or standard input, what they print and their exit codes. The token model, the key
//! and revocation file formats and the atomic writes are `corvus_auth::token`'s (see
//! docs/tokens.md).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Subcommand;
use corvus_auth::token::{self, Grant, PublicKey, RevocationList, RootKey};

/// Exit status of `inspect --key` when the signature does not verify.
const EXIT_BAD_SIGNATURE: i32 = 1;
/// Exit status on error (bad arguments, unreadable or invalid files or tokens).
const EXIT_ERROR: i32 = 2;

/// Capability tokens: create a namespace, mint, attenuate, revoke and inspect tokens.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a namespace: a root key pair, NAMESPACE.key (private, mode 0600) and
    /// NAMESPACE.pub (public, for the broker).
    #[command(
        after_help = "Example: corvus token keygen --out /etc/corvus/site1\n\n\
                      Exit status: 0 on success; 2 on error (e.g. a key file already exists: \
                      keys are never overwritten)."
    )]
    Keygen {
        /// The namespace's path without extension.
        #[arg(long, value_name = "NAMESPACE")]
        out: PathBuf,
    },
    /// Mint a token with the namespace's private key and print it on standard output.
    #[command(
        after_help = "Example: corvus token mint --key site1.key --grant 'publish:site/1/#' \
                      --grant 'subscribe:site/1/#' --expires 30d --id gateway-1\n\n\
                      Exit status: 0 on success; 2 on error."
    )]
    Mint {
        /// The namespace's private key file (NAMESPACE.key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// What the token allows, as ACCESS:PATTERN: ACCESS is publish, subscribe or retain,
        /// PATTERN an MQTT topic pattern (`+`, `#` allowed). Repeat for several.
        #[arg(long = "grant", value_name = "ACCESS:PATTERN", required = true)]
        grants: Vec<String>,
        /// When the token expires: a duration from now (90s, 10m, 12h, 30d) or an RFC 3339
        /// time (2030-01-01T00:00:00Z).
        #[arg(long, value_name = "WHEN")]
        expires: String,
        /// A label for the token, shown in logs and by `inspect`.
        #[arg(long = "id", value_name = "NAME")]
        id: Option<String>,
    },
    /// Narrow a token, offline and without any key: append a block with its own grants and
    /// expiry, and print the new token. The new token allows only what EVERY block allows.
    #[command(after_help = "Example: corvus token attenuate --token gateway.tok \
                      --grant 'publish:site/1/dev/7/#' --expires 1d > dev7.tok\n\n\
                      Exit status: 0 on success; 2 on error.")]
    Attenuate {
        /// The token to narrow: a file, or - for standard input.
        #[arg(long, value_name = "FILE_OR_-")]
        token: String,
        /// What the new block allows, as ACCESS:PATTERN. Repeat for several. A grant wider
        /// than the token's own widens nothing.
        #[arg(long = "grant", value_name = "ACCESS:PATTERN", required = true)]
        grants: Vec<String>,
        /// When the new token expires (a duration or an RFC 3339 time); never later than the
        /// token's own expiry. Default: the token's own expiry.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// Revoke a token: add its last block's revocation id to a revocation list file (created
    /// if missing, rewritten atomically). This revokes the token and every token attenuated
    /// from it, not the token it was attenuated from.
    #[command(after_help = "Exit status: 0 on success (also if already revoked); 2 on error.")]
    Revoke {
        /// The token to revoke: a file, or - for standard input.
        #[arg(long, value_name = "FILE_OR_-")]
        token: String,
        /// The revocation list file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Add the id of every block: revokes the whole family, from the root token down.
        #[arg(long)]
        all: bool,
    },
    /// Show what each block of a token says: grants, expiry, revocation id, label.
    #[command(
        after_help = "Without --key nothing is verified: the output is what the token claims.\n\n\
                      Exit status: 0 on success; 1 if --key is given and the signature does \
                      not verify; 2 on error."
    )]
    Inspect {
        /// The token: a file, or - for standard input.
        #[arg(long, value_name = "FILE_OR_-")]
        token: String,
        /// The namespace's public key file (NAMESPACE.pub): also check the signature.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

/// Runs the subcommand and returns the process's exit status.
pub fn run(cmd: &TokenCommand) -> i32 {
    let (name, result) = match cmd {
        TokenCommand::Keygen { out } => ("keygen", keygen(out)),
        TokenCommand::Mint {
            key,
            grants,
            expires,
            id,
        } => ("mint", mint(key, grants, expires, id.as_deref())),
        TokenCommand::Attenuate {
            token,
            grants,
            expires,
        } => ("attenuate", attenuate(token, grants, expires.as_deref())),
        TokenCommand::Revoke { token, file, all } => ("revoke", revoke(token, file, *all)),
        TokenCommand::Inspect { token, key } => ("inspect", inspect(token, key.as_deref())),
    };
    match result {
        Ok(Done::Print(output)) => {
            print!("{output}");
            0
        }
        Ok(Done::BadSignature(output)) => {
            print!("{output}");
            EXIT_BAD_SIGNATURE
        }
        Err(message) => {
            eprintln!("corvus token {name}: {message}");
            EXIT_ERROR
        }
    }
}

enum Done {
    /// Success: this goes to standard output.
    Print(String),
    /// `inspect --key`: the blocks, but the signature does not verify.
    BadSignature(String),
}

fn keygen(namespace: &Path) -> Result<Done, String> {
    let (key, public) = token::keygen(namespace).map_err(|e| e.to_string())?;
    Ok(Done::Print(format!(
        "wrote the private key to {} (keep it secret: it mints tokens)\n\
         wrote the public key to {} (the broker verifies tokens with it)\n",
        key.display(),
        public.display()
    )))
}

fn mint(key: &Path, grants: &[String], expires: &str, id: Option<&str>) -> Result<Done, String> {
    // Arguments first: no key read for a doomed run.
    let grants = parse_grants(grants)?;
    let expires = token::parse_expiry(expires, SystemTime::now()).map_err(|e| e.to_string())?;
    let key = RootKey::load(key).map_err(|e| e.to_string())?;
    let token = token::mint(&key, &grants, expires, id).map_err(|e| e.to_string())?;
    Ok(Done::Print(format!("{token}\n")))
}

fn attenuate(source: &str, grants: &[String], expires: Option<&str>) -> Result<Done, String> {
    let grants = parse_grants(grants)?;
    let now = SystemTime::now();
    let expires = expires
        .map(|text| token::parse_expiry(text, now))
        .transpose()
        .map_err(|e| e.to_string())?;
    let text = read_token(source)?;
    if let Some(asked) = expires {
        let current = token::inspect(&text)
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|b| b.expires_at())
            .min();
        if let Some(current) = current.filter(|current| *current < asked) {
            eprintln!(
                "corvus token attenuate: note: the token already expires at {}, earlier than \
                 --expires; the new block keeps that time",
                token::format_time(current)
            );
        }
    }
    let token = token::attenuate(&text, &grants, expires).map_err(|e| e.to_string())?;
    Ok(Done::Print(format!("{token}\n")))
}

fn revoke(source: &str, file: &Path, all: bool) -> Result<Done, String> {
    let text = read_token(source)?;
    let blocks = token::inspect(&text).map_err(|e| e.to_string())?;
    let label = blocks.first().and_then(|b| b.label());
    let revoking = match all {
        true => &blocks[..],
        false => &blocks[blocks.len().saturating_sub(1)..],
    };
    let ids: Vec<String> = revoking
        .iter()
        .map(|b| b.revocation_id().to_string())
        .collect();
    let comment = format!(
        "{}{} block(s), revoked {}",
        label.map(|l| format!("{l}, ")).unwrap_or_default(),
        blocks.len(),
        token::format_time(SystemTime::now())
    );
    let added = RevocationList::append_to_file(file, &ids, &comment).map_err(|e| e.to_string())?;
    let mut output = String::new();
    for id in &ids {
        let verb = match added.contains(id) {
            true => "added",
            false => "already listed:",
        };
        output.push_str(&format!("{verb} {id} to {}\n", file.display()));
    }
    Ok(Done::Print(output))
}

fn inspect(source: &str, key: Option<&Path>) -> Result<Done, String> {
    let text = read_token(source)?;
    let blocks = token::inspect(&text).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for (index, block) in blocks.iter().enumerate() {
        let kind = match index {
            0 => "authority",
            _ => "attenuation",
        };
        out.push_str(&format!("block {index} ({kind})\n"));
        if let Some(label) = block.label() {
            out.push_str(&format!("  label: {label}\n"));
        }
        match block.expires_at() {
            Some(at) => out.push_str(&format!("  expires: {}\n", token::format_time(at))),
            None => out.push_str("  expires: (no expiry in this block)\n"),
        }
        out.push_str(&format!("  revocation id: {}\n", block.revocation_id()));
        if block.grants().is_empty() {
            out.push_str("  grants: none (this block denies everything)\n");
        }
        for grant in block.grants() {
            out.push_str(&format!("  grant: {grant}\n"));
        }
    }
    if let Some(at) = blocks.iter().filter_map(|b| b.expires_at()).min() {
        out.push_str(&format!("token expires: {}\n", token::format_time(at)));
    }
    let Some(path) = key else {
        out.push_str("signature: not checked (no --key)\n");
        return Ok(Done::Print(out));
    };
    let public = PublicKey::load(path).map_err(|e| e.to_string())?;
    match token::verify_signature(&text, &public) {
        Ok(()) => {
            out.push_str(&format!("signature: valid for {public}\n"));
            Ok(Done::Print(out))
        }
        Err(e) => {
            out.push_str(&format!("signature: INVALID for {public}: {e}\n"));
            Ok(Done::BadSignature(out))
        }
    }
}

fn parse_grants(texts: &[String]) -> Result<Vec<Grant>, String> {
    texts
        .iter()
        .map(|text| Grant::parse(text).map_err(|e| e.to_string()))
        .collect()
}

/// The token text from a file, or standard input for `-`.
fn read_token(source: &str) -> Result<String, String> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(source).map_err(|e| format!("cannot read {source}: {e}"))
}
