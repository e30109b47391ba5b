//! `corvus check-config FILE`: checks a config file the way the broker checks it at start,
//! without starting anything.
//!
//! It parses the file (unknown keys and bad values are errors) and runs the checks a start
//! makes before anything listens (`corvus_server::preflight`): `Config::validate`, and
//! reading every file the config names (each TLS listener's certificate, key and client CA;
//! the password file, ACL file, token public key and revocation list). It must not bind a
//! port, or create, open or lock the data directory: a config is checked beside a running
//! broker, before a restart.

use std::path::Path;

use corvus_server::config::{Config, ConfigError, ListenerConfig};
use corvus_server::preflight::Preflight;

/// Exit status when the config would not start the broker.
const INVALID: i32 = 1;

/// Checks `path`, prints a summary (on success) or the problem (on failure), and returns the
/// exit status.
pub fn run(path: &Path) -> i32 {
    match check(path) {
        Ok(summary) => {
            println!("{}: OK", path.display());
            for line in summary {
                println!("  {line}");
            }
            0
        }
        Err(problem) => {
            eprintln!("corvus check-config: {problem}");
            INVALID
        }
    }
}

/// The summary lines of a config that would start, or what is wrong with it.
fn check(path: &Path) -> Result<Vec<String>, String> {
    // `load` parses and then runs `Config::validate`, the validation done at start.
    let config = Config::load(path).map_err(|e| describe_config_error(path, e))?;
    // The checks a start makes before anything listens, the same code.
    let preflight =
        Preflight::check(&config).map_err(|e| format!("config file {}: {e}", path.display()))?;
    let mut summary: Vec<String> = config
        .all_listeners()
        .iter()
        .map(|listener| format!("listener {}", describe_listener(listener)))
        .collect();
    let security = preflight.security;
    summary.push(format!("authentication: {}", security.describe()));
    summary.push(match config.store.enabled {
        true => format!(
            "data directory: {} ({}; sync {})",
            config.data_dir.display(),
            // Only looked at: creating or opening it is the broker's.
            match config.data_dir.is_dir() {
                true => "exists",
                false => "created at start",
            },
            config.store.sync_description(),
        ),
        false => "data directory: none (store.enabled = false: state kept in memory only)".into(),
    });
    summary.push(format!("log level: {}", config.log_level));
    Ok(summary)
}

/// The error with the file named: `Config::validate`'s errors name the key only.
fn describe_config_error(path: &Path, error: ConfigError) -> String {
    match error {
        ConfigError::Invalid { key, message } => {
            format!("config file {}: {key}: {message}", path.display())
        }
        other => other.to_string(),
    }
}

/// `mqtts 0.0.0.0:8883 (client certificates required)`, `ws 127.0.0.1:8080 path /mqtt`.
fn describe_listener(listener: &ListenerConfig) -> String {
    let mut text = format!("{} {}", listener.kind.name(), listener.bind);
    if let Some(path) = listener.websocket_path() {
        text.push_str(&format!(" path {path}"));
    }
    if listener.client_ca.is_some() {
        text.push_str(" (client certificates required)");
    }
    text
}
