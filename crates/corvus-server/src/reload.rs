//! Reloading settings while the broker runs (SIGHUP, `POST /api/v1/reload`): TLS
//! certificates, the password file, ACL file and revocation list, and, when the broker was
//! started from a config file, the log level and the limits from that file read again.
//!
//! All or nothing: everything that can fail (reading and checking the config, the log
//! level, the certificates, the security files) is done before anything is installed, so a
//! reload that fails leaves every running setting as it was, and says why.
//!
//! What a reload changes applies from then on: new connections get the new certificates
//! and limits, new sessions the new queue limits; a connected client keeps the limits its
//! CONNACK announced. Settings only a restart can change (listeners, the data directory,
//! the store, the HTTP endpoint, which security files are used) are reported when the file
//! changed them, and left as they run.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use tracing::warn;

use crate::broker::Broker;
use crate::client::{ConnectionLimits, ListenerShared};
use crate::config::{Config, Limits};
use crate::security::Security;
use crate::sources::SourceLimits;
use crate::tls;

/// A TLS listener's acceptor, replaced when certificates are reloaded.
pub type SharedAcceptor = Arc<RwLock<tokio_rustls::TlsAcceptor>>;

/// A running TLS listener: where its files are, and its acceptor.
pub struct LiveTls {
    pub addr: SocketAddr,
    pub files: tls::TlsFiles,
    pub acceptor: SharedAcceptor,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls")
            .field("addr", &self.addr)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A running MQTT listener's limits, as a reload replaces them.
#[derive(Debug)]
pub struct LiveListener {
    pub shared: Arc<ListenerShared>,
    /// Its per-source limits: its own, or those it shares with the listeners that keep
    /// `[limits]`' (a listener's limits then hold the same values as `[limits]`).
    pub sources: Arc<SourceLimits>,
}

/// Reads the configuration again, as the broker was started with it (the binary reads its
/// file and applies its command line again).
pub type ConfigSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// The running log's level.
pub trait LogLevel: Send + Sync {
    /// Sets `level`, a level `Config::validate` accepted.
    fn set(&self, level: &str);
}

/// What a reload needs from the running broker.
pub struct Reloader {
    pub(crate) broker: Arc<Broker>,
    pub(crate) security: Arc<Security>,
    pub(crate) tls: Vec<LiveTls>,
    pub(crate) listeners: Vec<LiveListener>,
    /// The configuration the broker runs with now.
    pub(crate) running: Mutex<Config>,
    source: Mutex<Option<ConfigSource>>,
    log: Mutex<Option<Box<dyn LogLevel>>>,
    /// One reload at a time (SIGHUP and the API may come together).
    busy: Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("tls", &self.tls)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// The limits a listener's new connections get from `limits`.
pub fn connection_limits(limits: &Limits, broker: &Broker) -> ConnectionLimits {
    ConnectionLimits {
        // Persisting or not is the broker's, whatever the listener.
        config: Arc::new(corvus_core::BrokerConfig {
            persistence: broker.config().persistence,
            ..limits.broker_config()
        }),
        message_rate: limits.message_rate(),
        connect_timeout: limits.connect_timeout(),
    }
}

impl Reloader {
    pub(crate) fn new(
        broker: Arc<Broker>,
        security: Arc<Security>,
        tls: Vec<LiveTls>,
        listeners: Vec<LiveListener>,
        running: Config,
    ) -> Reloader {
        Reloader {
            broker,
            security,
            tls,
            listeners,
            running: Mutex::new(running),
            source: Mutex::new(None),
            log: Mutex::new(None),
            busy: Mutex::new(()),
        }
    }

    /// Where a reload reads the configuration again, and the log whose level it sets.
    pub fn set_hooks(&self, source: ConfigSource, log: Option<Box<dyn LogLevel>>) {
        *lock(&self.source) = Some(source);
        *lock(&self.log) = log;
    }

    /// New acceptors from every TLS listener's files, or the first error (naming the
    /// listener).
    fn fresh_acceptors(&self) -> Result<Vec<tokio_rustls::TlsAcceptor>, String> {
        self.tls
            .iter()
            .map(|live| {
                tls::acceptor(&live.files).map_err(|e| format!("listener {}: {e}", live.addr))
            })
            .collect()
    }

    fn install_acceptors(&self, fresh: Vec<tokio_rustls::TlsAcceptor>) {
        for (live, acceptor) in self.tls.iter().zip(fresh) {
            *live.acceptor.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
        }
    }

    /// Reloads everything it can, all or nothing: what was reloaded, or why nothing was.
    pub fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = lock(&self.busy);
        // Everything that can fail, first.
        // Read and validated (the log level and limits included) as at start.
        let fresh_config = match &*lock(&self.source) {
            Some(source) => Some(source().map_err(|e| format!("the config file: {e}"))?),
            None => None,
        };
        let acceptors = self.fresh_acceptors()?;
        // Loads and installs the security files, or changes nothing: the last step that can
        // fail.
        self.security.reload().map_err(|e| e.to_string())?;
        // Nothing fails from here on.
        self.install_acceptors(acceptors);
        let mut done = vec![format!(
            "the certificates of {} TLS listener(s), the password file, ACL file and revocation list",
            self.tls.len()
        )];
        if let Some(config) = fresh_config {
            let mut running = lock(&self.running);
            let needs_restart = restart_only_changes(&running, &config);
            if !needs_restart.is_empty() {
                warn!(
                    "reload: {} changed in the config file; they take effect at the next restart",
                    needs_restart.join(", ")
                );
                done.push(format!(
                    "not {} (they need a restart)",
                    needs_restart.join(", ")
                ));
            }
            if let Some(log) = &*lock(&self.log) {
                log.set(&config.log_level);
                done.push(format!("log level {}", config.log_level));
            }
            self.install_limits(&config);
            done.push("limits (for new connections and sessions)".into());
            *running = config;
        }
        Ok(format!("reloaded {}", done.join("; ")))
    }

    /// Installs `config`'s limits: each listener's for its new connections, the broker's for
    /// new sessions and retained messages, the per-source ones.
    fn install_limits(&self, config: &Config) {
        self.broker.set_config(config.broker_config());
        self.security
            .set_retained_quota(crate::security::RetainedQuota {
                max_messages: config.limits.max_retained_messages,
                max_bytes: config.limits.max_retained_bytes,
            });
        // Listeners are matched by place: a file that changed them needs a restart anyway
        // (and is reported), and then the limits of those at the same places apply.
        for (live, listener) in self.listeners.iter().zip(config.all_listeners()) {
            let limits = config.listener_limits(&listener);
            *live
                .shared
                .limits
                .write()
                .unwrap_or_else(|p| p.into_inner()) = connection_limits(&limits, &self.broker);
            live.sources.set_limits(
                limits.max_connections_per_source,
                limits.connection_rate_per_source,
            );
        }
    }
}

/// The settings `fresh` changes that only a restart applies, by name.
fn restart_only_changes(running: &Config, fresh: &Config) -> Vec<&'static str> {
    // A listener's limits reload; the rest of it does not.
    let listeners = |config: &Config| -> Vec<_> {
        let mut listeners = config.all_listeners();
        for listener in &mut listeners {
            listener.limits = Default::default();
        }
        listeners
    };
    let mut changed = Vec::new();
    if listeners(running) != listeners(fresh) {
        changed.push("listeners");
    }
    if running.data_dir != fresh.data_dir {
        changed.push("data_dir");
    }
    if running.store != fresh.store {
        changed.push("[store]");
    }
    if running.auth != fresh.auth {
        changed.push("[auth]");
    }
    if running.http != fresh.http {
        changed.push("[http]");
    }
    if running.sys_interval != fresh.sys_interval {
        changed.push("sys_interval");
    }
    changed
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
