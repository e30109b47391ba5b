//! `corvus`: the command line. Parses flags, loads the config, sets up logging, and runs the
//! broker until SIGINT or SIGTERM, then shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use corvus_server::config::LOG_LEVELS;
use corvus_server::{Config, Server};
use tracing::info;

mod passwd_cmd;
mod store_cmd;
mod token_cmd;

/// Corvus, a distributed MQTT broker (MQTT 3.1.1 and 5.0).
///
/// With no arguments it serves MQTT on 127.0.0.1:1883 and keeps its data in ./corvus-data.
/// Flags override the config file.
#[derive(Debug, Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to accept MQTT over TCP on, e.g. 0.0.0.0:1883 to listen publicly. Repeat the
    /// flag for several addresses. Default: 127.0.0.1:1883.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// A TOML config file. Unknown keys and bad values are refused with the key and line.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where the broker keeps its data. Default: ./corvus-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// How much to log.
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
}

impl Cli {
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
        config.validate()?;
        Ok(config)
    }
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
    let config = cli.config()?;
    init_logging(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    // One broker per data directory: the lock is held until the process exits.
    let _data_lock = match config.store.enabled {
        true => Some(corvus_store::DirLock::acquire(&config.data_dir)?),
        false => None,
    };
    let server = Server::start(&config).await?;
    let addrs = server.listener_descriptions();
    let storage = match server.recovery_summary() {
        Some(recovered) => format!(
            "data in {} (sync {}; {recovered})",
            config.data_dir.display(),
            config.store.sync_description(),
        ),
        None => "state kept in memory only (store.enabled = false): a restart loses it".into(),
    };
    println!(
        "Corvus {} listening for MQTT on {}; {storage}.",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
    );
    println!("Authentication: {}.", server.security_description());
    let all_local = config
        .all_listeners()
        .iter()
        .all(|l| l.bind.ip().is_loopback());
    if all_local {
        println!("Only this machine can connect. To listen publicly, configure authentication (docs/security.md).");
    }
    // SIGHUP reloads the TLS certificates, the password and ACL files and the revocation
    // list; SIGINT or SIGTERM stops.
    while signals.wait().await? == Signal::Reload {
        match server.reload_tls() {
            Ok(n) => info!("reloaded the certificates of {n} TLS listener(s)"),
            Err(e) => tracing::error!("reload failed, the running certificates stay: {e}"),
        }
        match server.reload_security() {
            Ok(()) => info!("reloaded the password file, ACL file and revocation list"),
            Err(e) => tracing::error!("reload failed, the running security settings stay: {e}"),
        }
    }
    info!("shutting down");
    server.shutdown().await;
    Ok(())
}

fn init_logging(level: &str) {
    // RUST_LOG, when set, refines the level (e.g. RUST_LOG=corvus_server=debug).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only for a terminal, not in files and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
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
