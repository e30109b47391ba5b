//! The Corvus runtime: listeners (TCP and TLS), one task per connection, the shared broker state, the
//! periodic sweep of sessions and wills, and graceful shutdown. Everything that touches a
//! socket, a clock or a task lives here; the protocol itself is in `corvus-core`.

pub mod alarms;
pub mod broker;
mod cert_name;
mod client;
pub mod clock;
pub mod config;
pub mod connection_info;
mod held;
pub mod http;
pub mod kick;
pub mod listener_metrics;
pub mod metrics;
mod open_connections;
pub mod persist;
pub mod preflight;
mod rate;
pub mod recovery_log;
pub mod reload;
pub mod security;
mod signal;
pub mod sources;
pub mod stats;
mod sys;
pub mod tls;
pub mod topic_rates;
pub mod ws;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use broker::{Broker, MessageRouting};
use client::{Accepted, ListenerShared};
pub use config::{Config, ConfigError};
pub use corvus_store::{Recovered, Store};
pub use listener_metrics::ListenerFigures;
use security::{ListenerAuth, Security};
use sources::{SourceLimits, SourceRefusal};

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
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("listener {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: tls::TlsError,
    },
    #[error(transparent)]
    Security(#[from] security::SecurityError),
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
    /// What the listener at the same place in `addrs` speaks besides MQTT over TCP (empty
    /// for nothing), for people.
    transports: Vec<String>,
    /// What SIGHUP and `POST /api/v1/reload` reload.
    reloader: Arc<reload::Reloader>,
    /// Where the HTTP endpoint listens, when it does.
    http_addr: Option<SocketAddr>,
    security: Arc<Security>,
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
            let options = config.store_options();
            let opened = tokio::task::spawn_blocking(move || {
                let progress = recovery_log::RecoveryLog::start();
                let opened = Store::open_reporting(&dir, options, clock::now(), &progress);
                if opened.is_ok() {
                    progress.finish();
                }
                opened
            })
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
        // A config built in code is held to what a config file is (an mqtts listener
        // without its certificate must not quietly serve plain TCP).
        let preflight = preflight::Preflight::check(config)?;
        let security = Arc::new(preflight.security);
        let mut acceptors = preflight.tls.into_iter();
        let mut recovered_summary = None;
        let broker = match store {
            None => Arc::new(Broker::new(config.broker_config())),
            Some((store, recovered)) => {
                for warning in recovered.warnings() {
                    warn!("recovery: {warning}");
                }
                recovered_summary = Some(recovered.summary());
                let now = clock::now();
                // Recovered sessions are authorized as their recorded principal is now, and
                // the wills returned are those still allowed.
                let restore = |principal: Option<&str>, client_id: &str, broker: &Arc<Broker>| {
                    security.restore_authorizer(principal, client_id, broker)
                };
                let (broker, wills) = Broker::with_store(
                    config.broker_config(),
                    Arc::new(store),
                    recovered,
                    now,
                    &restore,
                );
                for will in wills {
                    broker.publish(will, None, now);
                }
                broker
            }
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        let mut transports = Vec::new();
        let mut tls_listeners = Vec::new();
        let mut live_listeners = Vec::new();
        // Connections per source address are counted together on the listeners that keep
        // `[limits]`' source limits, and apart on each listener that sets its own.
        let shared_sources = SourceLimits::new(
            config.limits.max_connections_per_source,
            config.limits.connection_rate_per_source,
        );
        let mut all_sources = vec![shared_sources.clone()];
        for listener in config.all_listeners() {
            let addr = listener.bind;
            let acceptor = acceptors.next().flatten();
            let limits = config.listener_limits(&listener);
            let sources = match listener.limits.own_source_limits() {
                false => shared_sources.clone(),
                true => {
                    let own = SourceLimits::new(
                        limits.max_connections_per_source,
                        limits.connection_rate_per_source,
                    );
                    all_sources.push(own.clone());
                    own
                }
            };
            let policy = config.anonymous_policy(&listener);
            if policy.anonymous && !addr.ip().is_loopback() {
                match security.is_configured() {
                    true => warn!("listener {addr}: clients without credentials are served (allow_anonymous = true) on an address others can reach"),
                    false => warn!("listener {addr}: no authentication configured and allow_anonymous = true: anyone who can reach it may do everything"),
                }
            }
            // Certificates were checked before anything listens (`Preflight`).
            let tls = match listener.tls_files().zip(acceptor) {
                None => None,
                Some((files, acceptor)) => {
                    let shared = Arc::new(RwLock::new(acceptor));
                    tls_listeners.push(LiveTls {
                        addr,
                        files,
                        acceptor: shared.clone(),
                    });
                    Some(shared)
                }
            };
            let transport = Transport {
                tls,
                websocket: listener.websocket_path().map(Arc::from),
                // A WebSocket message may carry a whole packet and a little more.
                max_message: limits.max_packet_size as usize + 64 * 1024,
            };
            let listener_kind = listener.kind.name();
            let cert_identity = listener.cert_identity;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            addrs.push(local);
            transports.push(transport.describe());
            let figures = broker.metrics.register_listener(local, listener_kind);
            let shared = Arc::new(ListenerShared {
                broker: broker.clone(),
                security: security.clone(),
                auth: ListenerAuth {
                    anonymous: policy.anonymous,
                    cert_identity,
                },
                limits: RwLock::new(reload::connection_limits(&limits, &broker)),
                figures: figures.clone(),
            });
            live_listeners.push(reload::LiveListener {
                shared: shared.clone(),
                sources: sources.clone(),
            });
            tasks.spawn(accept_loop(
                listener,
                transport,
                shared,
                sources,
                shutdown_rx.clone(),
            ));
        }
        let reloader = Arc::new(reload::Reloader::new(
            broker.clone(),
            security.clone(),
            tls_listeners,
            live_listeners,
            config.clone(),
        ));
        // One tracker for `$SYS` and the HTTP endpoint: one start, one set of load averages.
        let stats = Arc::new(std::sync::Mutex::new(stats::StatsTracker::new(
            std::time::Instant::now(),
        )));
        let http_addr = match config.http.listen {
            None => None,
            Some(addr) => {
                if !addr.ip().is_loopback() && config.http.token.is_none() {
                    warn!("http {addr}: no [http] token configured, so only clients on loopback are answered");
                }
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                let local = listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { addr, source })?;
                let state = Arc::new(http::HttpState {
                    broker: broker.clone(),
                    token: config.http.token.clone(),
                    stats: stats.clone(),
                    reloader: reloader.clone(),
                });
                tasks.spawn(http::serve(listener, state, shutdown_rx.clone()));
                Some(local)
            }
        };
        tasks.spawn(sys::run(
            broker.clone(),
            stats,
            Duration::from_secs(config.sys_interval),
            shutdown_rx.clone(),
        ));
        tasks.spawn(broker.alarms.clone().run(shutdown_rx.clone()));
        tasks.spawn(sweep_loop(broker.clone(), all_sources, shutdown_rx));
        Ok(Server {
            broker,
            addrs,
            transports,
            http_addr,
            reloader,
            security,
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

    /// Reloads what SIGHUP and `POST /api/v1/reload` reload (see `reload.rs`): the TLS
    /// certificates, the password file, ACL file and revocation list, and, with
    /// [`set_reload_hooks`](Self::set_reload_hooks), the log level and limits from the config
    /// file. All or nothing: what was reloaded, or why nothing was (the running ones stay).
    pub fn reload(&self) -> Result<String, String> {
        self.reloader.reload()
    }

    /// Where a reload reads the configuration again (the binary: its file and command
    /// line), and the log whose level it sets.
    pub fn set_reload_hooks(
        &self,
        source: reload::ConfigSource,
        log: Option<Box<dyn reload::LogLevel>>,
    ) {
        self.reloader.set_hooks(source, log);
    }

    /// Where the HTTP endpoint listens (`[http] listen`), if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Reads the password file, the ACL file and the revocation list again (SIGHUP): all
    /// or nothing. Connections holding a token the new list revokes are disconnected; ACL
    /// changes apply to what connected clients do from now on.
    pub fn reload_security(&self) -> Result<(), security::SecurityError> {
        self.security.reload()
    }

    /// How clients are authenticated, for people.
    pub fn security_description(&self) -> String {
        self.security.describe()
    }

    /// The listeners for people: each address, with what it speaks after it when that is
    /// not plain TCP: "(TLS)", "(WebSocket /mqtt)", "(WebSocket over TLS /mqtt)".
    pub fn listener_descriptions(&self) -> Vec<String> {
        self.addrs
            .iter()
            .zip(&self.transports)
            .map(|(addr, what)| match what.is_empty() {
                true => addr.to_string(),
                false => format!("{addr} ({what})"),
            })
            .collect()
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, tells every client the server is shutting down (DISCONNECT 0x8B for
    /// v5 clients) and waits, within a grace period, for the connections to close.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // Connections serving a session do not watch the flag while they wait (it would cost
        // each a future): they are told through their session's kick slot.
        self.broker.shutdown_connections();
        // The listeners end once their connections have closed.
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!("connections still open after the grace period; stopping without them");
            self.tasks.abort_all();
        }
        if let Some(store) = self.broker.store().cloned() {
            // Everything written so far is synced, whatever the policy.
            let _ = tokio::task::spawn_blocking(move || store.close(SHUTDOWN_GRACE)).await;
        }
    }
}

impl Drop for Server {
    /// A server dropped without [`shutdown`](Server::shutdown) still tells its connections
    /// to leave (its tasks, dropped with it, no longer hold them).
    fn drop(&mut self) {
        // Nothing to do after `shutdown`, which told them already.
        if self.broker.shutdown_connections() {
            let _ = self.shutdown.send(true);
        }
    }
}

use reload::{LiveTls, SharedAcceptor};

/// What a listener speaks over TCP: TLS or not, WebSocket (on a path) or not.
struct Transport {
    tls: Option<SharedAcceptor>,
    websocket: Option<Arc<str>>,
    /// The largest WebSocket message taken.
    max_message: usize,
}

impl Transport {
    fn describe(&self) -> String {
        match (&self.tls, &self.websocket) {
            (None, None) => String::new(),
            (Some(_), None) => "TLS".into(),
            (None, Some(path)) => format!("WebSocket {path}"),
            (Some(_), Some(path)) => format!("WebSocket over TLS {path}"),
        }
    }
}

/// Runs one connection: the TLS handshake and the WebSocket upgrade first, if the listener
/// has them, in the connection's own task so that a slow client never holds up the listener.
async fn serve_connection(
    tls: Option<tokio_rustls::TlsAcceptor>,
    websocket: Option<(Arc<str>, usize)>,
    stream: tokio::net::TcpStream,
    mut accepted: Accepted,
    shared: Arc<ListenerShared>,
    connect_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let mut steps = Handshake {
        peer: accepted.peer,
        deadline: tokio::time::Instant::now() + connect_timeout,
        shutdown: shutdown.clone(),
    };
    // Each transport's future is boxed on its own: held inline, every connection would
    // carry the largest of them (a TLS session over WebSocket, about 26 kB) for its whole
    // life, plain TCP ones included.
    match tls {
        None => {
            Box::pin(serve_upgraded(
                stream, websocket, steps, accepted, shared, shutdown,
            ))
            .await
        }
        Some(tls) => {
            Box::pin(async move {
                if let Some(stream) = steps.step("TLS handshake", tls.accept(stream)).await {
                    if let Some(which) = shared.auth.cert_identity {
                        accepted.certificate_name = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|cert| cert_name::certificate_name(cert, which));
                    }
                    serve_upgraded(stream, websocket, steps, accepted, shared, shutdown).await;
                }
            })
            .await
        }
    }
}

/// [`serve_connection`] after TLS: the WebSocket upgrade, if any, then MQTT.
async fn serve_upgraded<S>(
    stream: S,
    websocket: Option<(Arc<str>, usize)>,
    mut steps: Handshake,
    accepted: Accepted,
    shared: Arc<ListenerShared>,
    shutdown: watch::Receiver<bool>,
) where
    S: client::Transport + Send,
{
    match websocket {
        None => client::serve(stream, accepted, shared, steps.left(), shutdown).await,
        Some((path, max)) => {
            Box::pin(async move {
                let upgrade = ws::accept(stream, &path, max);
                if let Some(stream) = steps.step("WebSocket upgrade", upgrade).await {
                    client::serve(stream, accepted, shared, steps.left(), shutdown).await;
                }
            })
            .await
        }
    }
}

/// The steps a connection takes before MQTT (TLS handshake, WebSocket upgrade): all within
/// the time allowed for CONNECT, and given up at shutdown.
struct Handshake {
    peer: SocketAddr,
    deadline: tokio::time::Instant,
    shutdown: watch::Receiver<bool>,
}

impl Handshake {
    /// The step's result, or `None` (logged) if it failed, ran out of time or the broker
    /// is shutting down.
    async fn step<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        step: impl std::future::Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let peer = self.peer;
        tokio::select! {
            done = tokio::time::timeout_at(self.deadline, step) => match done {
                Ok(Ok(done)) => Some(done),
                Ok(Err(e)) => {
                    info!(peer = %peer, error = %e, "refused connection: {what} failed");
                    None
                }
                Err(_) => {
                    info!(peer = %peer, "refused connection: {what} not done in time");
                    None
                }
            },
            _ = self.shutdown.changed() => None,
        }
    }

    /// What is left of the time allowed for CONNECT.
    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    shared: Arc<ListenerShared>,
    sources: Arc<SourceLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Refused before a byte is read: dropping the stream closes it.
                    let slot = match sources.admit(peer.ip(), std::time::Instant::now()) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            shared.broker.metrics.count_refused(refusal.limit());
                            if let SourceRefusal::First(limit) = refusal {
                                info!(peer = %peer, "refusing connections: {} (logged once until one is accepted again)", limit.describe());
                            }
                            continue;
                        }
                    };
                    // Small packets (acks) must not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    // The certificates current now, even if reloaded meanwhile.
                    let tls = transport
                        .tls
                        .as_ref()
                        .map(|t| t.read().unwrap_or_else(|p| p.into_inner()).clone());
                    let websocket = transport
                        .websocket
                        .clone()
                        .map(|path| (path, transport.max_message));
                    // The limits in force now, even if reloaded meanwhile.
                    let limits = shared.limits();
                    let connect_timeout = limits.connect_timeout;
                    let accepted = Accepted {
                        peer,
                        certificate_name: None,
                        slot,
                        limits,
                    };
                    // Plain TCP, the common case, is served straight: its task is the MQTT
                    // connection alone, with nothing of the handshakes it does not make.
                    // Not kept: `sources` counts the open connections (`open_connections.rs`).
                    match (tls, websocket) {
                        (None, None) => tokio::spawn(client::serve(
                            stream,
                            accepted,
                            shared.clone(),
                            connect_timeout,
                            shutdown.clone(),
                        )),
                        (tls, websocket) => tokio::spawn(serve_connection(
                            tls,
                            websocket,
                            stream,
                            accepted,
                            shared.clone(),
                            connect_timeout,
                            shutdown.clone(),
                        )),
                    };
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    info!("listener stopped; waiting for connections to close");
    sources.open.all_closed().await;
}

async fn sweep_loop(
    broker: Arc<Broker>,
    sources: Vec<Arc<SourceLimits>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                broker.sweep(clock::now());
                let now = std::time::Instant::now();
                for sources in &sources {
                    sources.sweep(now);
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}
