//! Logging: where the broker's log goes (standard output or a file), in which format (human
//! text or one JSON object per line), and at which level, which can be changed while the
//! broker runs through [`LogHandle::set_level`].
//!
//! This module owns the global tracing subscriber and nothing else: what is logged, and that
//! no password or token is ever logged, belongs to the code that logs.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use corvus_server::config::LOG_LEVELS;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, and `fields` with `message`
    /// and the event's fields.
    Json,
}

/// Why logging could not be set up or changed.
#[derive(Debug)]
pub enum LogError {
    /// Not one of [`LOG_LEVELS`].
    UnknownLevel(String),
    /// The log file could not be opened for appending.
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The filter could not be replaced (the subscriber is gone).
    Reload(String),
    /// A global subscriber was already installed.
    Init(String),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::UnknownLevel(level) => write!(
                f,
                "unknown log level {level:?}: must be one of {}",
                LOG_LEVELS.join(", ")
            ),
            LogError::File { path, source } => {
                write!(f, "cannot open the log file {}: {source}", path.display())
            }
            LogError::Reload(e) => write!(f, "cannot change the log level: {e}"),
            LogError::Init(e) => write!(f, "cannot set up logging: {e}"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What the command line asks of the log.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// One of [`LOG_LEVELS`].
    pub level: String,
    pub format: LogFormat,
    /// Append the log to this file (created 0600) instead of writing it to standard output.
    pub file: Option<PathBuf>,
}

/// The live log filter: changes the level of the running subscriber.
#[derive(Debug, Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG as it was at start, if it was set and valid: it stays in force.
    env: Option<String>,
    announce: Announce,
}

impl LogHandle {
    /// Sets the level (`error`, `warn`, `info`, `debug` or `trace`) from now on, as a reload
    /// does. When RUST_LOG was set at start, it keeps deciding, as it does at start: the
    /// level is checked but changes nothing.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let filter = build_filter(level, self.env.as_deref())?;
        self.filter
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))
    }

    /// The filter in force, as EnvFilter directives (e.g. `info`).
    #[cfg(test)]
    pub fn current(&self) -> String {
        self.filter
            .with_current(|f| f.to_string())
            .unwrap_or_default()
    }

    /// Says a line of the start summary. With the default log (text on standard output) it
    /// is printed as it is, without timestamp or level; with a JSON log on standard output
    /// it is logged (INFO) instead, so that every line there is JSON; with a log file it is
    /// printed on standard output and also logged to the file.
    pub fn announce(&self, line: &str) {
        if self.announce.print {
            println!("{line}");
        }
        if self.announce.log {
            tracing::info!(target: "corvus", "{line}");
        }
    }
}

/// Where [`LogHandle::announce`] says the start summary.
#[derive(Debug, Clone, Copy)]
struct Announce {
    print: bool,
    log: bool,
}

/// The filter for `level`, or for RUST_LOG's directives when they were given (e.g.
/// `RUST_LOG=corvus_server=debug`), which win as they always have.
fn build_filter(level: &str, env: Option<&str>) -> Result<EnvFilter, LogError> {
    if !LOG_LEVELS.contains(&level) {
        return Err(LogError::UnknownLevel(level.to_owned()));
    }
    Ok(env
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(level)))
}

/// RUST_LOG, when set to directives that parse.
fn env_directives() -> Option<String> {
    let value = std::env::var("RUST_LOG").ok()?;
    let value = value.trim();
    (!value.is_empty() && EnvFilter::try_new(value).is_ok()).then(|| value.to_owned())
}

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// The subscriber for `settings` writing to `writer`, and the handle of its filter. Not
/// installed: [`init`] installs it; tests run it in a scope.
fn subscriber(
    settings: &LogSettings,
    env: Option<String>,
    writer: BoxMakeWriter,
    ansi: bool,
) -> Result<(impl tracing::Subscriber + Send + Sync, LogHandle), LogError> {
    let (filter, handle) = reload::Layer::new(build_filter(&settings.level, env.as_deref())?);
    let output: Box<dyn Layer<Filtered> + Send + Sync> = match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    let handle = LogHandle {
        filter: handle,
        env,
        announce: Announce {
            print: settings.format == LogFormat::Text || settings.file.is_some(),
            log: settings.format == LogFormat::Json || settings.file.is_some(),
        },
    };
    Ok((Registry::default().with(filter).with(output), handle))
}

/// Opens the log file for appending; a new file is created readable by its owner only (logs
/// name clients, users and addresses). An existing file keeps its mode.
fn open_log_file(path: &Path) -> Result<std::fs::File, LogError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| LogError::File {
        path: path.to_owned(),
        source,
    })
}

/// Installs the process's subscriber. RUST_LOG, when set, replaces the level (e.g.
/// `RUST_LOG=corvus_server=debug`).
pub fn init(settings: &LogSettings) -> Result<LogHandle, LogError> {
    let (writer, ansi) = match &settings.file {
        Some(path) => (BoxMakeWriter::new(Mutex::new(open_log_file(path)?)), false),
        // Colour codes only for a terminal, not in pipes.
        None => (
            BoxMakeWriter::new(std::io::stdout),
            settings.format == LogFormat::Text && std::io::stdout().is_terminal(),
        ),
    };
    let (subscriber, handle) = subscriber(settings, env_directives(), writer, ansi)?;
    subscriber
        .try_init()
        .map_err(|e| LogError::Init(e.to_string()))?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer, to read what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn settings(level: &str, format: LogFormat) -> LogSettings {
        LogSettings {
            level: level.into(),
            format,
            file: None,
        }
    }

    fn captured(
        settings: &LogSettings,
        env: Option<&str>,
    ) -> (impl tracing::Subscriber + Send + Sync, LogHandle, Captured) {
        let out = Captured::default();
        let writer = out.clone();
        let (subscriber, handle) = subscriber(
            settings,
            env.map(str::to_owned),
            BoxMakeWriter::new(move || writer.clone()),
            false,
        )
        .unwrap();
        (subscriber, handle, out)
    }

    #[test]
    fn set_level_changes_what_is_logged_from_then_on() {
        let (subscriber, handle, out) = captured(&settings("info", LogFormat::Text), None);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden at info");
            tracing::info!("shown at info");
            handle.set_level("debug").unwrap();
            assert_eq!(handle.current(), "debug");
            tracing::debug!("shown at debug");
            handle.set_level("warn").unwrap();
            tracing::info!("hidden at warn");
            tracing::warn!("shown at warn");
        });
        let text = out.text();
        assert!(!text.contains("hidden"), "{text}");
        for line in ["shown at info", "shown at debug", "shown at warn"] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
    }

    #[test]
    fn set_level_refuses_an_unknown_level_and_keeps_the_running_one() {
        let (subscriber, handle, out) = captured(&settings("info", LogFormat::Text), None);
        tracing::subscriber::with_default(subscriber, || {
            let err = handle.set_level("loud").unwrap_err();
            assert!(err.to_string().contains("loud"), "{err}");
            assert_eq!(handle.current(), "info");
            tracing::info!("still at info");
            tracing::debug!("still hidden");
        });
        let text = out.text();
        assert!(text.contains("still at info") && !text.contains("still hidden"));
    }

    #[test]
    fn rust_log_stays_in_force_across_set_level() {
        let (subscriber, handle, out) = captured(&settings("info", LogFormat::Text), Some("warn"));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("hidden by RUST_LOG");
            handle.set_level("debug").unwrap();
            assert_eq!(handle.current(), "warn");
            tracing::info!("still hidden by RUST_LOG");
            tracing::warn!("shown");
        });
        let text = out.text();
        assert!(!text.contains("hidden") && text.contains("shown"), "{text}");
    }

    #[test]
    fn json_lines_carry_level_message_and_fields() {
        let (subscriber, _handle, out) = captured(&settings("info", LogFormat::Json), None);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(client = "c1", "refused connection");
        });
        let text = out.text();
        let line = text.lines().next().expect("one line");
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(line.contains(r#""level":"INFO""#), "{line}");
        assert!(line.contains(r#""message":"refused connection""#), "{line}");
        assert!(line.contains(r#""client":"c1""#), "{line}");
    }

    #[test]
    fn a_new_log_file_is_private_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corvus.log");
        std::io::Write::write_all(&mut open_log_file(&path).unwrap(), b"one\n").unwrap();
        std::io::Write::write_all(&mut open_log_file(&path).unwrap(), b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{mode:o}");
        }
        let missing = dir.path().join("no-dir").join("corvus.log");
        let err = open_log_file(&missing).unwrap_err();
        assert!(err.to_string().contains("no-dir"), "{err}");
    }
}
