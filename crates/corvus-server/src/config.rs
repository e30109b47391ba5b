//! The configuration file (TOML) and its validation. Unknown keys and bad values are refused
//! with the key and line, never ignored: a typo in a security setting must not pass silently.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corvus_core::{BrokerConfig, QueueFullPolicy};
use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Everything `corvus` can be told, from the file or the command line.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to accept MQTT over TCP on.
    pub listen: Vec<SocketAddr>,
    /// Further listeners, each with its own transport (`[[listener]]` tables).
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    pub data_dir: PathBuf,
    pub log_level: String,
    /// Seconds between two publications of the `$SYS/broker/...` topics (0: none).
    pub sys_interval: u64,
    pub limits: Limits,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
}

/// The HTTP endpoint (`[http]`): Prometheus metrics, health checks and the admin API
/// (docs/operations.md). Off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: Option<SocketAddr>,
    /// The bearer token every request but `/healthz` and `/readyz` must carry. Without one,
    /// only clients on loopback are answered.
    pub token: Option<String>,
}

/// Authentication and authorization (`[auth]`). With none of it set, only anonymous clients
/// on loopback listeners are served, and they may do everything; as soon as any of it is
/// set, whatever is not granted is denied.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `user:argon2id-hash` lines, managed with `corvus passwd`; reloaded on SIGHUP.
    pub password_file: Option<PathBuf>,
    /// ACL rules (TOML `[[rule]]` tables); reloaded on SIGHUP.
    pub acl_file: Option<PathBuf>,
    /// Whether clients that present no credentials are served; per listener, overridden
    /// by the listener's own `allow_anonymous`. Default: only with no authentication
    /// configured, and then only on loopback.
    pub allow_anonymous: Option<bool>,
    /// The public key of the namespace whose capability tokens are accepted.
    pub token_public_key: Option<PathBuf>,
    /// The MQTT user name with which a client presents a token as its password.
    pub token_username: String,
    /// Revoked token ids, one per line; reloaded on SIGHUP.
    pub revocation_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            password_file: None,
            acl_file: None,
            allow_anonymous: None,
            token_public_key: None,
            token_username: "token".into(),
            revocation_file: None,
        }
    }
}

/// Which name in a client certificate becomes the client's user name.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CertIdentity {
    /// The subject's Common Name.
    Cn,
    /// The first DNS name or e-mail address of the Subject Alternative Name.
    San,
}

/// One `[[listener]]`: where, and over what.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub kind: ListenerKind,
    pub bind: SocketAddr,
    /// `mqtts`/`wss`: the server's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// `mqtts`/`wss`: its private key (PEM).
    pub key: Option<PathBuf>,
    /// `mqtts`/`wss`: require client certificates signed by a CA in this PEM file (mutual
    /// TLS).
    pub client_ca: Option<PathBuf>,
    /// `ws`/`wss`: the HTTP path of the WebSocket endpoint (default `/mqtt`).
    pub path: Option<String>,
    /// Overrides `[auth] allow_anonymous` for this listener.
    pub allow_anonymous: Option<bool>,
    /// With `client_ca`: the client certificate's name is the client's user name.
    pub cert_identity: Option<CertIdentity>,
    /// `[listener.limits]`: per-connection limits of this listener, overriding `[limits]`.
    #[serde(default)]
    pub limits: ListenerLimits,
}

/// `[listener.limits]`: the limits of `[limits]` that apply to one connection or one source
/// address, set for the connections one listener accepts; a key left out keeps `[limits]`'s
/// value. Broker-wide limits (retained messages, session queues and their policy) are not
/// here: naming one is an unknown key, refused.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    pub max_packet_size: Option<u32>,
    pub max_connect_size: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub max_inflight: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub max_keep_alive: Option<u16>,
    pub max_session_expiry: Option<u32>,
    pub max_client_id_len: Option<usize>,
    pub connect_timeout: Option<u64>,
    pub max_topic_length: Option<usize>,
    pub max_topic_levels: Option<usize>,
    pub max_user_properties: Option<usize>,
    pub max_user_property_bytes: Option<usize>,
    pub max_subscriptions: Option<usize>,
    /// Setting this or `connection_rate_per_source` gives the listener its own count of
    /// connections per source address, apart from the other listeners'.
    pub max_connections_per_source: Option<usize>,
    pub connection_rate_per_source: Option<u32>,
    pub max_message_rate: Option<u32>,
    pub message_rate_grace: Option<u64>,
}

impl ListenerLimits {
    /// `global` with these overrides applied: the limits in force on the listener.
    pub fn apply(&self, global: &Limits) -> Limits {
        let mut limits = global.clone();
        // Naming every field: a new one that is not applied does not compile.
        macro_rules! apply {
            ($($key:ident),* $(,)?) => {{
                let ListenerLimits { $($key),* } = self;
                $(if let Some(value) = $key {
                    limits.$key = *value;
                })*
            }};
        }
        apply!(
            max_packet_size,
            max_connect_size,
            receive_maximum,
            max_inflight,
            topic_alias_maximum,
            max_keep_alive,
            max_session_expiry,
            max_client_id_len,
            connect_timeout,
            max_topic_length,
            max_topic_levels,
            max_user_properties,
            max_user_property_bytes,
            max_subscriptions,
            max_connections_per_source,
            connection_rate_per_source,
            max_message_rate,
            message_rate_grace,
        );
        limits
    }

    /// Whether the listener counts connections per source address on its own (it sets a
    /// source limit), rather than together with the listeners that do not.
    pub fn own_source_limits(&self) -> bool {
        self.max_connections_per_source.is_some() || self.connection_rate_per_source.is_some()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    /// The name in the config (`mqtt`, `mqtts`, `ws`, `wss`).
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Mqtt => "mqtt",
            ListenerKind::Mqtts => "mqtts",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Mqtts | ListenerKind::Wss)
    }

    fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

impl ListenerConfig {
    /// MQTT over TCP on `bind`, nothing else set (a `listen` address).
    pub fn plain(bind: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            kind: ListenerKind::Mqtt,
            bind,
            cert: None,
            key: None,
            client_ca: None,
            path: None,
            allow_anonymous: None,
            cert_identity: None,
            limits: ListenerLimits::default(),
        }
    }

    /// The TLS files of an `mqtts` or `wss` listener (validated: both are set).
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        match (self.kind.is_tls(), &self.cert, &self.key) {
            (true, Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            }),
            _ => None,
        }
    }

    /// The WebSocket path of a `ws` or `wss` listener.
    pub fn websocket_path(&self) -> Option<&str> {
        self.kind
            .is_websocket()
            .then(|| self.path.as_deref().unwrap_or(crate::ws::DEFAULT_PATH))
    }
}

/// Durability (see `docs/durability.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Keep sessions, subscriptions, retained and queued messages in `data_dir` (true), or in
    /// memory only, losing them at every restart (false).
    pub enabled: bool,
    /// When writes reach the disk, and so when QoS 1/2 messages are acknowledged.
    pub sync: SyncName,
    /// The fsync period for `sync = "interval"`, in milliseconds.
    pub sync_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncName {
    /// PUBACK/PUBREC only after an fsync covering the message (group commit).
    #[default]
    Always,
    /// Acknowledge at once; fsync every `sync_interval_ms`.
    Interval,
    /// Acknowledge at once; leave writing back to the operating system.
    Never,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            sync: SyncName::Always,
            sync_interval_ms: 100,
        }
    }
}

impl StoreConfig {
    /// The sync policy as the start message states it.
    pub fn sync_description(&self) -> String {
        match self.sync {
            SyncName::Always => "always: acknowledged messages are on disk".into(),
            SyncName::Interval => format!("every {} ms", self.sync_interval_ms),
            SyncName::Never => "never: left to the operating system".into(),
        }
    }

    /// The store's options, sized so that any message the broker accepts fits the journal.
    pub fn options(&self, limits: &Limits) -> corvus_store::StoreOptions {
        corvus_store::StoreOptions {
            sync: match self.sync {
                SyncName::Always => corvus_store::SyncPolicy::Always,
                SyncName::Interval => {
                    corvus_store::SyncPolicy::Interval(Duration::from_millis(self.sync_interval_ms))
                }
                SyncName::Never => corvus_store::SyncPolicy::Never,
            },
            max_message: limits.max_packet_size,
            // A session that lost its record with a damaged state database gets the longest
            // expiry a client could have asked for.
            adopted_session_expiry: limits.max_session_expiry,
            ..corvus_store::StoreOptions::default()
        }
    }
}

/// Protocol and resource limits (see `docs/configuration.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_packet_size: u32,
    /// Largest CONNECT accepted, before the client is connected.
    pub max_connect_size: u32,
    pub receive_maximum: u16,
    pub max_inflight: u16,
    pub topic_alias_maximum: u16,
    pub max_keep_alive: u16,
    pub max_session_expiry: u32,
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    pub queue_qos0_offline: bool,
    pub queue_full_policy: QueueFullPolicyName,
    pub max_client_id_len: usize,
    /// Seconds a new connection has to complete its CONNECT.
    pub connect_timeout: u64,
    /// Longest topic name or filter, in bytes (PUBLISH 0x90, SUBSCRIBE 0x8F beyond).
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Most user properties on a PUBLISH or a will (0x83 beyond).
    pub max_user_properties: usize,
    /// Most bytes of user property names and values on a PUBLISH or a will.
    pub max_user_property_bytes: usize,
    /// Most subscriptions one session holds (SUBACK 0x97 for a new one beyond).
    pub max_subscriptions: usize,
    /// Retained messages the broker keeps, all clients together (PUBACK 0x97 beyond).
    pub max_retained_messages: usize,
    /// Topic and payload bytes of retained messages, all clients together.
    pub max_retained_bytes: usize,
    /// Connections open at once from one source address (0: no limit).
    pub max_connections_per_source: usize,
    /// New connections per second from one source address, in bursts of as many (0: no
    /// limit).
    pub connection_rate_per_source: u32,
    /// PUBLISH packets per second one client may send (0: no limit). Beyond it the broker
    /// stops reading the client's socket; a client that stays beyond it for
    /// `message_rate_grace` seconds is disconnected with 0x96.
    pub max_message_rate: u32,
    /// Seconds, see `max_message_rate`.
    pub message_rate_grace: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicyName {
    #[default]
    DropNewest,
    DropOldest,
}

/// Whether a listener serves clients that present no credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousPolicy {
    pub anonymous: bool,
    /// Set in the config (rather than the default).
    pub explicit: bool,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![DEFAULT_LISTEN.parse().expect("valid default address")],
            listeners: Vec::new(),
            data_dir: PathBuf::from("./corvus-data"),
            log_level: "info".into(),
            sys_interval: 10,
            limits: Limits::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let core = BrokerConfig::default();
        Limits {
            max_packet_size: core.max_packet_size,
            max_connect_size: core.max_connect_size,
            receive_maximum: core.receive_maximum,
            max_inflight: core.max_inflight,
            topic_alias_maximum: core.topic_alias_maximum,
            max_keep_alive: core.max_keep_alive,
            max_session_expiry: core.max_session_expiry,
            max_queued_messages: core.max_queued_messages,
            max_queued_bytes: core.max_queued_bytes,
            queue_qos0_offline: core.queue_qos0_offline,
            queue_full_policy: QueueFullPolicyName::DropNewest,
            max_client_id_len: core.max_client_id_len,
            connect_timeout: 10,
            max_topic_length: core.max_topic_length,
            max_topic_levels: core.max_topic_levels,
            max_user_properties: core.max_user_properties,
            max_user_property_bytes: core.max_user_property_bytes,
            max_subscriptions: core.max_subscriptions,
            max_retained_messages: 100_000,
            max_retained_bytes: 256 * 1024 * 1024,
            max_connections_per_source: 1024,
            connection_rate_per_source: 256,
            max_message_rate: 0,
            message_rate_grace: 5,
        }
    }
}

pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The longest `sys_interval`: beyond an hour, the 15-minute load averages would say nothing.
pub const MAX_SYS_INTERVAL: u64 = 3600;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text. toml's messages name the key, line and column.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            return invalid(
                "log_level",
                "must be one of error, warn, info, debug, trace",
            );
        }
        self.limits.check(None)?;
        if self.sys_interval > MAX_SYS_INTERVAL {
            return invalid(
                "sys_interval",
                "must be 0 (no $SYS topics) or at most 3600 seconds",
            );
        }
        if self.limits.max_queued_messages == 0 {
            return invalid("limits.max_queued_messages", "must be at least 1");
        }
        if self
            .http
            .token
            .as_ref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return invalid(
                "http.token",
                "must not be empty (leave it out to answer loopback only)",
            );
        }
        if self.store.sync == SyncName::Interval && self.store.sync_interval_ms == 0 {
            return invalid("store.sync_interval_ms", "must be at least 1 millisecond");
        }
        for listener in &self.listeners {
            // Only its overrides can fail: `[limits]` passed.
            listener
                .limits
                .apply(&self.limits)
                .check(Some(listener.bind))?;
            let kind = listener.kind;
            let tls =
                listener.cert.is_some() || listener.key.is_some() || listener.client_ca.is_some();
            if kind.is_tls() && (listener.cert.is_none() || listener.key.is_none()) {
                return invalid(
                    "listener",
                    "an mqtts or wss listener needs both cert and key",
                );
            }
            if !kind.is_tls() && tls {
                return invalid(
                    "listener",
                    "cert, key and client_ca belong to mqtts and wss listeners",
                );
            }
            if listener.cert_identity.is_some() && listener.client_ca.is_none() {
                return invalid(
                    "listener.cert_identity",
                    "needs client_ca: only a verified client certificate names a user",
                );
            }
            match &listener.path {
                Some(_) if !kind.is_websocket() => {
                    return invalid("listener", "path belongs to ws and wss listeners");
                }
                Some(path) if !path.starts_with('/') => {
                    return invalid("listener", "a WebSocket path starts with /");
                }
                _ => {}
            }
        }
        if self.auth.token_username.is_empty() {
            return invalid("auth.token_username", "must not be empty");
        }
        if self.auth.revocation_file.is_some() && self.auth.token_public_key.is_none() {
            return invalid("auth.revocation_file", "needs auth.token_public_key");
        }
        for listener in self.all_listeners() {
            let addr = listener.bind;
            let allow = self.anonymous_policy(&listener);
            if !addr.ip().is_loopback() && allow.anonymous && !allow.explicit {
                return Err(ConfigError::Invalid {
                    key: "allow_anonymous",
                    message: format!(
                        "listener {addr} is not on loopback and no authentication is configured: \
                         configure [auth], or set allow_anonymous = true to let anyone who can \
                         reach it do everything"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether any authentication or authorization is configured: from then on, whatever is
    /// not granted is denied.
    pub fn auth_configured(&self) -> bool {
        let a = &self.auth;
        a.password_file.is_some()
            || a.acl_file.is_some()
            || a.token_public_key.is_some()
            || self.names_users_by_certificate()
    }

    /// Whether a listener takes the user name from client certificates (`cert_identity`).
    pub fn names_users_by_certificate(&self) -> bool {
        self.listeners.iter().any(|l| l.cert_identity.is_some())
    }

    /// Every listener, in the order they are started: the plain `listen` addresses first
    /// (as `mqtt` listeners), then the `[[listener]]` tables.
    pub fn all_listeners(&self) -> Vec<ListenerConfig> {
        let plain = self.listen.iter().map(|&bind| ListenerConfig::plain(bind));
        plain.chain(self.listeners.iter().cloned()).collect()
    }

    /// Whether `listener` serves clients that present no credentials: its own setting, else
    /// `[auth]`'s, else only when no authentication is configured.
    pub fn anonymous_policy(&self, listener: &ListenerConfig) -> AnonymousPolicy {
        let explicit = listener.allow_anonymous.or(self.auth.allow_anonymous);
        AnonymousPolicy {
            anonymous: explicit.unwrap_or(!self.auth_configured()),
            explicit: explicit.is_some(),
        }
    }

    /// The limits in force on `listener`: `[limits]` with its `[listener.limits]`.
    pub fn listener_limits(&self, listener: &ListenerConfig) -> Limits {
        listener.limits.apply(&self.limits)
    }

    /// The store's options, sized for the largest packet and the longest session expiry any
    /// listener accepts.
    pub fn store_options(&self) -> corvus_store::StoreOptions {
        let mut largest = self.limits.clone();
        for listener in &self.listeners {
            let l = self.listener_limits(listener);
            largest.max_packet_size = largest.max_packet_size.max(l.max_packet_size);
            largest.max_session_expiry = largest.max_session_expiry.max(l.max_session_expiry);
        }
        self.store.options(&largest)
    }

    /// The limits in the form the broker core takes (`[limits]`; a listener's connections
    /// take [`Limits::broker_config`] of [`Config::listener_limits`]).
    pub fn broker_config(&self) -> BrokerConfig {
        self.limits.broker_config()
    }
}

impl Limits {
    /// The rules every set of limits in force keeps: `[limits]` (`listener` `None`), and
    /// each listener's with its overrides (the error then names the listener).
    fn check(&self, listener: Option<SocketAddr>) -> Result<(), ConfigError> {
        // The key as written: `limits.x` or `listener.limits.x`.
        macro_rules! key {
            ($name:literal) => {
                match listener {
                    None => concat!("limits.", $name),
                    Some(_) => concat!("listener.limits.", $name),
                }
            };
        }
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: match listener {
                    None => message.to_owned(),
                    Some(addr) => format!("{message} (listener {addr})"),
                },
            })
        };
        if self.max_packet_size < 64 {
            return invalid(key!("max_packet_size"), "must be at least 64 bytes");
        }
        if self.max_connect_size < 64 {
            return invalid(key!("max_connect_size"), "must be at least 64 bytes");
        }
        if self.receive_maximum == 0 {
            return invalid(key!("receive_maximum"), "must be at least 1");
        }
        if self.max_inflight == 0 || self.max_inflight == u16::MAX {
            return invalid(key!("max_inflight"), "must be between 1 and 65534");
        }
        if self.connect_timeout == 0 {
            return invalid(key!("connect_timeout"), "must be at least 1 second");
        }
        Ok(())
    }

    /// These limits in the form the broker core takes.
    pub fn broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            max_packet_size: self.max_packet_size,
            max_connect_size: self.max_connect_size,
            receive_maximum: self.receive_maximum,
            max_inflight: self.max_inflight,
            topic_alias_maximum: self.topic_alias_maximum,
            max_keep_alive: self.max_keep_alive,
            max_session_expiry: self.max_session_expiry,
            max_queued_messages: self.max_queued_messages,
            max_queued_bytes: self.max_queued_bytes,
            queue_qos0_offline: self.queue_qos0_offline,
            queue_full_policy: match self.queue_full_policy {
                QueueFullPolicyName::DropNewest => QueueFullPolicy::DropNewest,
                QueueFullPolicyName::DropOldest => QueueFullPolicy::DropOldest,
            },
            max_client_id_len: self.max_client_id_len,
            max_topic_length: self.max_topic_length,
            max_topic_levels: self.max_topic_levels,
            max_user_properties: self.max_user_properties,
            max_user_property_bytes: self.max_user_property_bytes,
            max_subscriptions: self.max_subscriptions,
            // The broker sets it: whether it was given a store.
            persistence: false,
        }
    }

    /// Time a new connection has to complete its CONNECT.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }

    /// PUBLISH packets per second a client may send and how long it may stay beyond that
    /// (`None`: no limit).
    pub fn message_rate(&self) -> Option<(u32, Duration)> {
        (self.max_message_rate > 0).then(|| {
            (
                self.max_message_rate,
                Duration::from_secs(self.message_rate_grace),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in docs/configuration.md is a valid configuration, every key of it.
    #[test]
    fn the_documented_configuration_parses() {
        let doc = include_str!("../../../docs/configuration.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("the block ends");
        let config = Config::parse(&doc[start..end]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listeners[0].kind, ListenerKind::Mqtts);
        assert!(config.listeners[0].tls_files().is_some());
        let web = config.listener_limits(&config.listeners[1]);
        assert_eq!(web.max_packet_size, 65536);
        assert_eq!(web.max_queued_messages, config.limits.max_queued_messages);
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_are_loopback_1883_and_corvus_data() {
        let config = Config::default();
        assert_eq!(config.listen, vec!["127.0.0.1:1883".parse().unwrap()]);
        assert_eq!(config.data_dir, PathBuf::from("./corvus-data"));
        assert_eq!(config.log_level, "info");
        assert_eq!(config.broker_config(), BrokerConfig::default());
    }

    #[test]
    fn unknown_key_is_refused_with_its_name_and_line() {
        let err = Config::parse("listen = [\"127.0.0.1:1\"]\nlisen = 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("lisen"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_value_is_refused_with_its_key_and_line() {
        let err = Config::parse("[limits]\nreceive_maximum = 70000\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("receive_maximum"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn store_settings_parse_and_default_to_always() {
        assert_eq!(Config::default().store.sync, SyncName::Always);
        assert!(Config::default().store.enabled);
        let c = Config::parse("[store]\nsync = \"interval\"\nsync_interval_ms = 20\n").unwrap();
        assert_eq!(
            c.store.options(&Limits::default()).sync,
            corvus_store::SyncPolicy::Interval(Duration::from_millis(20))
        );
        let err = Config::parse("[store]\nsync = \"sometimes\"\n").unwrap_err();
        assert!(err.to_string().contains("sync"), "{err}");
        let err =
            Config::parse("[store]\nsync = \"interval\"\nsync_interval_ms = 0\n").unwrap_err();
        assert!(err.to_string().contains("store.sync_interval_ms"), "{err}");
    }

    const TWO_LISTENERS: &str = "\
listen = []
[limits]
max_topic_length = 100
max_packet_size = 4096

[[listener]]
kind = \"mqtt\"
bind = \"127.0.0.1:1884\"
[listener.limits]
max_packet_size = 128
receive_maximum = 5
connect_timeout = 3
max_connections_per_source = 2

[[listener]]
kind = \"mqtt\"
bind = \"127.0.0.1:1885\"
";

    #[test]
    fn listener_limits_override_only_what_they_name() {
        let config = Config::parse(TWO_LISTENERS).unwrap();
        let [a, b] = &config.listeners[..] else {
            panic!("two listeners")
        };
        let la = config.listener_limits(a);
        assert_eq!(la.max_packet_size, 128);
        assert_eq!(la.receive_maximum, 5);
        assert_eq!(la.connect_timeout(), Duration::from_secs(3));
        assert_eq!(la.max_connections_per_source, 2);
        // Not named: `[limits]`'s, set or default.
        assert_eq!(la.max_topic_length, 100);
        assert_eq!(
            la.max_queued_messages,
            Limits::default().max_queued_messages
        );
        assert!(a.limits.own_source_limits());
        let core = la.broker_config();
        assert_eq!(
            (
                core.max_packet_size,
                core.receive_maximum,
                core.max_topic_length
            ),
            (128, 5, 100)
        );
        // A listener without `[listener.limits]` has `[limits]`, and shares its source counts.
        assert_eq!(b.limits, ListenerLimits::default());
        assert_eq!(config.listener_limits(b), config.limits);
        assert!(!b.limits.own_source_limits());
        // The store takes the largest packet any listener accepts.
        assert_eq!(config.store_options().max_message, 4096);
        let bigger = TWO_LISTENERS.replace("max_packet_size = 128", "max_packet_size = 9000");
        let config = Config::parse(&bigger).unwrap();
        assert_eq!(config.store_options().max_message, 9000);
    }

    #[test]
    fn unknown_or_broker_wide_keys_in_listener_limits_are_refused_by_name() {
        for key in [
            "max_retained_messages = 5",
            "max_queued_messages = 5",
            "max_pakcet_size = 5",
        ] {
            let text = TWO_LISTENERS.replace("receive_maximum = 5", key);
            let err = Config::parse(&text).unwrap_err().to_string();
            let name = key.split(' ').next().unwrap();
            assert!(err.contains(name), "{err}");
            assert!(err.contains("line 11"), "{err}");
        }
    }

    #[test]
    fn an_empty_http_token_is_refused() {
        let error = Config::parse("[http]\ntoken = \"  \"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("http.token"), "{error}");
    }

    #[test]
    fn listener_limits_are_validated_as_limits_are() {
        let text = TWO_LISTENERS.replace("max_packet_size = 128", "max_packet_size = 10");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("listener.limits.max_packet_size"), "{err}");
        assert!(err.contains("127.0.0.1:1884"), "{err}");
        let text = TWO_LISTENERS.replace("receive_maximum = 5", "receive_maximum = 0");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("listener.limits.receive_maximum"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = Config::parse("[limits]\nreceive_maximum = 0\n").unwrap_err();
        assert!(err.to_string().contains("limits.receive_maximum"), "{err}");
        let err = Config::parse("log_level = \"loud\"\n").unwrap_err();
        assert!(err.to_string().contains("log_level"), "{err}");
    }
}
