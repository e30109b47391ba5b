//! `corvus`: the command line. Parses flags, loads the config, sets up logging, and runs the
//! broker until SIGINT or SIGTERM, then shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use corvus_server::config::LOG_LEVELS;
use corvus_server::{Config, Server};
use tracing::info;

mod check_config;
mod logging;
mod passwd_cmd;
mod store_cmd;
mod token_cmd;

use logging::{LogFormat, LogHandle, LogSettings};

/// Corvus, a distributed MQTT broker (MQTT 3.1.1 and 5.0).
///
/// With no arguments it serves MQTT on 127.0.0.1:1883 and keeps its data in ./corvus-data.
/// Flags override the config file.
#[derive(Debug, Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    settings: Settings,

    /// How to write the log: human-readable text, or one JSON object per line. With json on
    /// standard output, the start summary is logged too, so that every line is JSON.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Append the log to this file (created with mode 0600) instead of standard output: the
    /// log then goes to the file only; the start summary is still printed, and logged too.
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

/// The flags that make the broker's configuration, with the config file: read again by a
/// reload (SIGHUP, `POST /api/v1/reload`), so that the flags keep winning over the file.
#[derive(Debug, Clone, clap::Args)]
struct Settings {
    /// Address to accept MQTT over TCP on, e.g. 0.0.0.0:1883 to listen publicly. Repeat the
    /// flag for several addresses. Default: 127.0.0.1:1883.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// Serve Prometheus metrics, health checks and the admin API over HTTP here: an address
    /// (e.g. 127.0.0.1:8080), or a port alone for loopback (8080). Off by default. Without
    /// `[http] token` in the config, only clients on loopback are answered.
    #[arg(long, value_name = "ADDR", value_parser = parse_http_listen)]
    http_listen: Option<SocketAddr>,

    /// A TOML config file. Unknown keys and bad values are refused with the key and line.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where the broker keeps its data. Default: ./corvus-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// How much to log. RUST_LOG, when set, replaces it (e.g. RUST_LOG=corvus_server=debug).
    #[arg(long, value_name = "LEVEL", value_parser = clap::builder::PossibleValuesParser::new(LOG_LEVELS))]
    log_level: Option<String>,
}

/// Subcommands; without one, `corvus` runs the broker.
#[derive(Debug, Subcommand)]
enum Command {
    /// Offline tools for a data directory: `check` and `dump`.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Manage a password file: `add` and `delete` users.
    #[command(subcommand)]
    Passwd(passwd_cmd::PasswdCommand),
    /// Capability tokens: `keygen`, `mint`, `attenuate`, `revoke` and `inspect`.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Load-test an MQTT broker (this one or any other) and check every message.
    Bench(corvus_bench::BenchArgs),
    /// Check a config file as the broker would at start, without starting it: parse it,
    /// validate it, and read every file it names (certificates, keys, password, ACL, token
    /// key, revocation list). Binds no port and leaves the data directory alone.
    #[command(
        after_help = "Example: corvus check-config /etc/corvus/corvus.toml\n\n\
                      Exit status: 0 if the broker would start with it (a summary is printed); \
                      1 if not (the message names the file and the problem); 2 on bad arguments."
    )]
    CheckConfig {
        /// The TOML config file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

impl Settings {
    /// The config file (or the defaults), with the flags laid over it.
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if !self.listen.is_empty() {
            config.listen = self.listen.clone();
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(level) = &self.log_level {
            config.log_level = level.clone();
        }
        if let Some(addr) = self.http_listen {
            config.http.listen = Some(addr);
        }
        config.validate()?;
        Ok(config)
    }
}

/// `--http-listen`: an address, or a port alone meaning loopback.
fn parse_http_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is neither an address (127.0.0.1:8080) nor a port"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Store(cmd)) = &cli.command {
        std::process::exit(store_cmd::run(cmd));
    }
    if let Some(Command::Passwd(cmd)) = &cli.command {
        std::process::exit(passwd_cmd::run(cmd));
    }
    if let Some(Command::Token(cmd)) = &cli.command {
        std::process::exit(token_cmd::run(cmd));
    }
    if let Some(Command::CheckConfig { file }) = &cli.command {
        std::process::exit(check_config::run(file));
    }
    if let Some(Command::Bench(args)) = cli.command {
        std::process::exit(corvus_bench::main(args));
    }
    let config = cli.settings.config()?;
    let log = logging::init(&LogSettings {
        level: config.log_level.clone(),
        format: cli.log_format,
        file: cli.log_file.clone(),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config, cli.settings, log))
}

/// The running log's level, as a reload sets it.
#[derive(Debug)]
struct ReloadableLog(LogHandle);

impl corvus_server::reload::LogLevel for ReloadableLog {
    fn set(&self, level: &str) {
        if let Err(e) = self.0.set_level(level) {
            tracing::error!("{e}");
        }
    }
}

async fn run(config: Config, settings: Settings, log: LogHandle) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    // One broker per data directory: the lock is held until the process exits.
    let _data_lock = match config.store.enabled {
        true => Some(corvus_store::DirLock::acquire(&config.data_dir)?),
        false => None,
    };
    let server = Server::start(&config).await?;
    // A reload reads the file again with the flags laid over it, as at start.
    server.set_reload_hooks(
        Box::new(move || settings.config().map_err(|e| format!("{e:#}"))),
        Some(Box::new(ReloadableLog(log.clone()))),
    );
    let addrs = server.listener_descriptions();
    let storage = match server.recovery_summary() {
        Some(recovered) => format!(
            "data in {} (sync {}; {recovered})",
            config.data_dir.display(),
            config.store.sync_description(),
        ),
        None => "state kept in memory only (store.enabled = false): a restart loses it".into(),
    };
    log.announce(&format!(
        "Corvus {} listening for MQTT on {}; {storage}.",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
    ));
    log.announce(&format!(
        "Authentication: {}.",
        server.security_description()
    ));
    let all_local = config
        .all_listeners()
        .iter()
        .all(|l| l.bind.ip().is_loopback());
    if let Some(http) = server.http_addr() {
        log.announce(&format!(
            "HTTP: metrics on http://{http}/metrics, admin API under http://{http}/api/v1/."
        ));
    }
    if all_local {
        log.announce("Only this machine can connect. To listen publicly, configure authentication (docs/security.md).");
    }
    // SIGHUP reloads the TLS certificates, the password and ACL files, the revocation
    // list, and the log level and limits of the config file; SIGINT or SIGTERM stops.
    while signals.wait().await? == Signal::Reload {
        match server.reload() {
            Ok(done) => info!("{done}"),
            Err(e) => tracing::error!("reload failed, the running settings stay: {e}"),
        }
    }
    info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// SIGINT and SIGTERM (and SIGHUP), watched from before the broker starts: a signal that
/// arrives while it is starting must shut it down gracefully, not kill it.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Shutdown,
    Reload,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                hangup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    async fn wait(&mut self) -> anyhow::Result<Signal> {
        #[cfg(unix)]
        return Ok(tokio::select! {
            _ = self.interrupt.recv() => Signal::Shutdown,
            _ = self.terminate.recv() => Signal::Shutdown,
            _ = self.hangup.recv() => Signal::Reload,
        });
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("cannot watch Ctrl-C")?;
            Ok(Signal::Shutdown)
        }
    }
}
