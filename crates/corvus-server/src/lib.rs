//! The Corvus runtime: TCP listeners, one task per connection, the shared broker state, the
//! periodic sweep of sessions and wills, and graceful shutdown. Everything that touches a
//! socket, a clock or a task lives here; the protocol itself is in `corvus-core`.

pub mod broker;
mod client;
pub mod clock;
pub mod config;
mod held;
pub mod metrics;
pub mod persist;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use broker::{Broker, MessageRouting};
pub use config::{Config, ConfigError};
pub use corvus_store::{Recovered, Store};

/// How often delayed wills and session expiry are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the data directory {}: {source}", dir.display())]
    Store {
        dir: std::path::PathBuf,
        source: corvus_store::StoreError,
    },
}

/// A running broker.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    recovered: Option<String>,
}

impl Server {
    /// Binds every listener and starts serving. Listening addresses with port 0 get a free
    /// port: [`Server::local_addrs`] says which.
    ///
    /// With the store enabled, the data directory is opened and recovered first (the caller
    /// holds its lock: see `corvus_store::DirLock`).
    pub async fn start(config: &Config) -> Result<Server, StartError> {
        let store = if config.store.enabled {
            let dir = config.data_dir.clone();
            let options = config.store.options(&config.limits);
            let opened =
                tokio::task::spawn_blocking(move || Store::open(&dir, options, clock::now()))
                    .await
                    .map_err(|e| StartError::Store {
                        dir: config.data_dir.clone(),
                        source: corvus_store::StoreError::Thread(e.to_string()),
                    })?
                    .map_err(|source| StartError::Store {
                        dir: config.data_dir.clone(),
                        source,
                    })?;
            Some(opened)
        } else {
            None
        };
        Server::start_with_store(config, store).await
    }

    /// Starts with a store opened by the caller (tests use one on a fault-injecting file
    /// layer), or none to keep everything in memory.
    pub async fn start_with_store(
        config: &Config,
        store: Option<(Store, Recovered)>,
    ) -> Result<Server, StartError> {
        let mut recovered_summary = None;
        let broker = match store {
            None => Arc::new(Broker::new(config.broker_config())),
            Some((store, recovered)) => {
                for warning in recovered.warnings() {
                    warn!("recovery: {warning}");
                }
                recovered_summary = Some(recovered.summary());
                let now = clock::now();
                let (broker, wills) =
                    Broker::with_store(config.broker_config(), Arc::new(store), recovered, now);
                let broker = Arc::new(broker);
                for will in wills {
                    broker.publish(will, None, now);
                }
                broker
            }
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for &addr in &config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            addrs.push(local);
            tasks.spawn(accept_loop(
                listener,
                broker.clone(),
                config.connect_timeout(),
                shutdown_rx.clone(),
            ));
        }
        tasks.spawn(sweep_loop(broker.clone(), shutdown_rx));
        Ok(Server {
            broker,
            addrs,
            shutdown,
            tasks,
            recovered: recovered_summary,
        })
    }

    /// What was recovered from the data directory at start (`None` without a store).
    pub fn recovery_summary(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, tells every client the server is shutting down (DISCONNECT 0x8B for
    /// v5 clients) and waits, within a grace period, for the connections to close.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!("connections still open after the grace period; closing them");
            self.tasks.abort_all();
        }
        if let Some(store) = self.broker.store().cloned() {
            // Everything written so far is synced, whatever the policy.
            let _ = tokio::task::spawn_blocking(move || store.close(SHUTDOWN_GRACE)).await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    connect_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small packets (acks) must not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(client::serve(stream, peer, broker.clone(), connect_timeout, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    info!("listener stopped; waiting for connections to close");
    while connections.join_next().await.is_some() {}
}

async fn sweep_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => broker.sweep(clock::now()),
            _ = shutdown.changed() => break,
        }
    }
}
