//! Reloading settings while the broker runs (`POST /api/v1/reload`, as SIGHUP does): the
//! config file is read again and its limits and log level applied, together with the
//! security files; a reload that fails changes nothing and says why.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::auth::{with_login, Secured};
use common::http::request;
use common::*;
use corvus_core::DropReason;
use corvus_server::metrics::SourceLimit;
use corvus_server::reload::LogLevel;
use corvus_server::{Config, Server};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// `alice` may publish and subscribe under `a/#`; a reload may change that.
const ACL: &str = r#"
[[rule]]
user = "alice"
allow = ["publish", "subscribe", "retain"]
topics = ["a/#"]
"#;

/// The log, as the binary's: levels it was asked to set.
#[derive(Default, Clone)]
struct RecordedLog(Arc<Mutex<Vec<String>>>);

impl LogLevel for RecordedLog {
    fn set(&self, level: &str) {
        self.0.lock().unwrap().push(level.to_owned());
    }
}

impl RecordedLog {
    fn levels(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A config file naming `files`' security files, with `extra` TOML at the top level.
fn write_config(path: &Path, files: &Secured, data_dir: &Path, extra: &str) {
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\ndata_dir = {data_dir:?}\n{extra}\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [auth]\npassword_file = {:?}\nacl_file = {:?}\nallow_anonymous = true\n",
        files.path("passwd"),
        files.path("acl.toml"),
    );
    std::fs::write(path, text).unwrap();
}

struct Running {
    server: Server,
    mqtt: SocketAddr,
    http: SocketAddr,
    config: PathBuf,
    log: RecordedLog,
    files: Secured,
    data_dir: PathBuf,
}

impl Running {
    async fn start(extra: &str) -> Running {
        let files = Secured::new(&["alice"], ACL);
        let data_dir = fresh_data_dir();
        let config = files.path("corvus.toml");
        write_config(&config, &files, &data_dir, extra);
        let server = Server::start(&Config::load(&config).unwrap())
            .await
            .unwrap();
        let log = RecordedLog::default();
        let path = config.clone();
        server.set_reload_hooks(
            Box::new(move || Config::load(&path).map_err(|e| e.to_string())),
            Some(Box::new(log.clone())),
        );
        Running {
            mqtt: server.local_addrs()[0],
            http: server.http_addr().unwrap(),
            server,
            config,
            log,
            files,
            data_dir,
        }
    }

    fn rewrite(&self, extra: &str) {
        write_config(&self.config, &self.files, &self.data_dir, extra);
    }

    /// `POST /api/v1/reload`: (status, the JSON body).
    async fn reload(&self) -> (u16, serde_json::Value) {
        let answer = request(self.http, "POST", "/api/v1/reload", None).await;
        (answer.status, answer.json())
    }

    /// The Maximum Packet Size a new connection's CONNACK announces.
    async fn announced_packet_size(&self) -> Option<u32> {
        let (_raw, ack) = Raw::connect_with(self.mqtt, V5, "probe", with_login("alice")).await;
        ack.properties.maximum_packet_size
    }
}

#[tokio::test]
async fn a_reload_applies_the_files_limits_and_log_level_to_what_comes_next() {
    let broker = Running::start("log_level = \"info\"\n[limits]\nmax_packet_size = 10000\n").await;
    assert_eq!(broker.announced_packet_size().await, Some(10000));
    let (mut early, _) = Raw::connect_with(broker.mqtt, V5, "early", with_login("alice")).await;

    broker.rewrite(
        "log_level = \"debug\"\n[limits]\nmax_packet_size = 5000\nmax_retained_messages = 1\n\
         max_connections_per_source = 2\nmax_queued_messages = 1\n",
    );
    let (status, body) = broker.reload().await;
    assert_eq!(status, 200, "{body}");
    let said = body["reloaded"].as_str().unwrap();
    assert!(said.contains("log level debug"), "{said}");
    assert!(said.contains("limits"), "{said}");
    assert_eq!(broker.log.levels(), ["debug"]);
    // New connections get the new limits.
    assert_eq!(broker.announced_packet_size().await, Some(5000));
    // The retained quota is the broker's: it holds for connections already open too.
    let code = early
        .publish("a/1", b"kept", QoS::AtLeastOnce, true, 1)
        .await;
    assert_eq!(code, ReasonCode::Success);
    let code = early
        .publish("a/2", b"over", QoS::AtLeastOnce, true, 2)
        .await;
    assert_eq!(code, ReasonCode::QuotaExceeded);
    // A client already connected keeps what its CONNACK announced: 6000 bytes pass.
    let big = vec![b'x'; 6000];
    let code = early
        .publish("a/big", &big, QoS::AtLeastOnce, false, 3)
        .await;
    assert_eq!(code, ReasonCode::Success);

    // A session made now holds one queued message: the next two are dropped.
    let (mut away, _) = Raw::connect_with(broker.mqtt, V5, "away", |c| {
        with_login("alice")(c);
        c.properties.session_expiry_interval = Some(600);
    })
    .await;
    away.subscribe(1, "a/queue", QoS::AtLeastOnce).await;
    away.disconnect().await;
    wait_offline(&broker.server, "away").await;
    for id in 4..=6 {
        early
            .publish("a/queue", b"q", QoS::AtLeastOnce, false, id)
            .await;
    }
    wait_dropped(&broker.server, DropReason::QueueFull, 2).await;

    // Two connections per address now: `early` and one more; a third is refused at once.
    let (_second, _) = Raw::connect_with(broker.mqtt, V5, "second", with_login("alice")).await;
    assert_refused(broker.mqtt).await;
    let metrics = &broker.server.broker().metrics;
    assert_eq!(metrics.refused(SourceLimit::TooMany), 1);
}

#[tokio::test]
async fn a_failed_reload_keeps_every_running_setting_and_says_why() {
    let broker = Running::start("[limits]\nmax_packet_size = 10000\n").await;
    let (mut alice, _) = Raw::connect_with(broker.mqtt, V5, "alice-1", with_login("alice")).await;

    // A bad value: named, with its key.
    broker.rewrite("[limits]\nmax_packet_size = 8\n");
    let (status, body) = broker.reload().await;
    assert_eq!(status, 422, "{body}");
    let why = body["error"].as_str().unwrap();
    assert!(why.contains("max_packet_size"), "{why}");

    // An unknown log level.
    broker.rewrite("log_level = \"verbose\"\n[limits]\nmax_packet_size = 5000\n");
    let (status, body) = broker.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("log_level"),
        "{body}"
    );

    // New limits with a broken ACL file: neither is taken.
    broker.rewrite("log_level = \"debug\"\n[limits]\nmax_packet_size = 5000\n");
    std::fs::write(broker.files.path("acl.toml"), "[[rule]\nbroken").unwrap();
    let (status, body) = broker.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("acl.toml"),
        "{body}"
    );

    // A broken password file: refused, named.
    let passwords = std::fs::read(broker.files.path("passwd")).unwrap();
    std::fs::write(broker.files.path("passwd"), "alice:not-a-hash\n").unwrap();
    let (status, body) = broker.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("passwd"), "{body}");
    std::fs::write(broker.files.path("passwd"), passwords).unwrap();

    // Everything runs as before: limits, log level, ACL.
    assert_eq!(broker.announced_packet_size().await, Some(10000));
    assert!(broker.log.levels().is_empty());
    let code = alice
        .publish("a/ok", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(code, ReasonCode::Success);
    let code = alice
        .publish("b/denied", b"x", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(code, ReasonCode::NotAuthorized);

    // Mended, the same reload goes through.
    std::fs::write(broker.files.path("acl.toml"), ACL).unwrap();
    let (status, body) = broker.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(broker.announced_packet_size().await, Some(5000));
    assert_eq!(broker.log.levels(), ["debug"]);
}

#[tokio::test]
async fn settings_only_a_restart_changes_are_reported_not_applied() {
    let broker = Running::start("").await;
    broker.rewrite("sys_interval = 30\n");
    let (status, body) = broker.reload().await;
    assert_eq!(status, 200, "{body}");
    let said = body["reloaded"].as_str().unwrap();
    assert!(
        said.contains("not sys_interval (they need a restart)"),
        "{said}"
    );
    assert_eq!(broker.server.local_addrs()[0], broker.mqtt);
}
