//! `corvus check-config FILE`: checks a config file the way the broker checks it at start,
//! without starting anything.
//!
//! It parses the file (unknown keys and bad values are errors), runs `Config::validate`, and
//! reads every file the config names: each TLS listener's certificate, key and client CA
//! (with the same code that sets up the listener) and the password file, ACL file, token
//! public key and revocation list (with `Security::load`, as at start). It must not bind a
//! port, or create, open or lock the data directory: a config is checked beside a running
//! broker, before a restart.

use std::path::Path;

use corvus_server::config::{Config, ConfigError, ListenerConfig, ListenerKind};
use corvus_server::security::Security;
use corvus_server::tls;

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
    let in_file = |problem: String| format!("config file {}: {problem}", path.display());
    let mut summary = Vec::new();
    for listener in config.all_listeners() {
        if let Some(files) = listener.tls_files() {
            tls::acceptor(&files)
                .map_err(|e| in_file(format!("listener {}: {e}", listener.bind)))?;
        }
        summary.push(format!("listener {}", describe_listener(&listener)));
    }
    let security = Security::load(&config).map_err(|e| in_file(e.to_string()))?;
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
    let kind = match listener.kind {
        ListenerKind::Mqtt => "mqtt",
        ListenerKind::Mqtts => "mqtts",
        ListenerKind::Ws => "ws",
        ListenerKind::Wss => "wss",
    };
    let mut text = format!("{kind} {}", listener.bind);
    if let Some(path) = listener.websocket_path() {
        text.push_str(&format!(" path {path}"));
    }
    if listener.client_ca.is_some() {
        text.push_str(" (client certificates required)");
    }
    text
}
