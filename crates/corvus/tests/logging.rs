//! The broker's log on the real binary: `--log-format json` writes one JSON object per line
//! with the shape tracing-subscriber gives it; `--log-file` appends the log to a private file
//! instead of standard output; a refused connection is logged once, with its client id, peer
//! address and reason code, and never with the password or token it presented; recovering a
//! large data directory shows its progress.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::CLIENT_TIMEOUT;

const WAIT: Duration = Duration::from_secs(10);

/// Every line of `text` as JSON; panics, naming the line, if one is not a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(value) if value.is_object() => value,
            _ => panic!("not a JSON object: {line:?}\n--- log ---\n{text}"),
        })
        .collect()
}

/// `fields.message` of a JSON log line.
fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

#[cfg(unix)]
#[test]
fn json_log_lines_are_objects_with_timestamp_level_and_message() {
    let mut broker =
        support::Broker::start_with("log-json", &["--log-format".as_ref(), "json".as_ref()]);
    // Some traffic: a connection that closes without a CONNECT.
    drop(TcpStream::connect(broker.addr).unwrap());
    let status = broker.terminate(WAIT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let log = broker.log();
    let lines = json_lines(&log);
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let start = lines
        .iter()
        .find(|l| message(l).contains("listening for MQTT on"))
        .unwrap_or_else(|| panic!("no start line: {log}"));
    assert_eq!(start["level"], "INFO", "{start}");
    assert!(message(start).contains(&broker.addr.to_string()), "{start}");
    assert!(
        lines
            .iter()
            .any(|l| message(l).starts_with("Authentication:")),
        "{log}"
    );
    assert!(lines.iter().any(|l| message(l) == "shutting down"), "{log}");
}

#[cfg(unix)]
#[test]
fn log_file_gets_the_log_instead_of_standard_output_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corvus.log");
    let mut broker =
        support::Broker::start_with("log-file", &["--log-file".as_ref(), file.as_os_str()]);
    let status = broker.terminate(WAIT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&file).unwrap();
    assert!(logged.contains("listening for MQTT on"), "{logged}");
    assert!(logged.contains(" INFO "), "{logged}");
    assert!(logged.contains("shutting down"), "{logged}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "log file mode {mode:o}");
    // Log events only in the file; the start summary is still printed (plain) on stdout.
    let log = broker.log();
    assert!(!log.contains("shutting down"), "{log}");
    assert!(!log.contains(" INFO "), "{log}");
}

#[test]
fn an_unwritable_log_file_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-such-dir").join("corvus.log");
    let out = support::run(
        "corvus --log-file",
        Command::new(env!("CARGO_BIN_EXE_corvus"))
            .env_remove("RUST_LOG")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--log-file")
            .arg(&file),
        CLIENT_TIMEOUT,
    );
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains(&file.display().to_string()), "{out}");
}

/// Sends a 3.1.1 CONNECT with these credentials and returns the CONNACK return code and
/// the client's own address (the peer address the broker sees).
fn connect(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> (u8, String) {
    let login = support::mqtt::login(user, password);
    let version = mqtt_codec::ProtocolVersion::V3_1_1;
    let (client, ack) = support::mqtt::Client::connect(addr, version, client_id, login);
    (
        ack.reason_code.to_v3_connack(),
        client.local_addr().to_string(),
    )
}

fn corvus_token(args: &[&str], namespace: &Path) -> String {
    let out = support::corvus(
        &[&["token"], args, &[namespace.to_str().unwrap()]].concat(),
        "",
    );
    out.assert_success();
    out.stdout.trim().to_owned()
}

/// A wrong password and a token from another namespace: each refusal is logged exactly once
/// with the client id, the peer address and the reason code, and neither the password nor
/// the token appears anywhere in the log.
#[cfg(unix)]
#[test]
fn a_refused_connection_is_logged_once_with_client_peer_and_reason_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cheap = corvus_auth::HashParams::new(64, 1, 1).unwrap();
    let mut users = corvus_auth::PasswordFile::new();
    let hash = corvus_auth::hash_password_with(b"right-password", &cheap).unwrap();
    users.add_or_replace("alice", &hash).unwrap();
    users.save(&dir.path().join("passwd")).unwrap();
    corvus_token(&["keygen", "--out"], &dir.path().join("site"));
    corvus_token(&["keygen", "--out"], &dir.path().join("other"));
    let foreign_token = corvus_token(
        &["mint", "--grant", "publish:x", "--expires", "1h", "--key"],
        &dir.path().join("other.key"),
    );
    assert!(foreign_token.len() > 20, "{foreign_token}");
    let config = dir.path().join("corvus.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\npassword_file = '{}'\ntoken_public_key = '{}'\n",
            dir.path().join("passwd").display(),
            dir.path().join("site.pub").display()
        ),
    )
    .unwrap();
    let mut broker = support::Broker::start_with(
        "log-refusal",
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ],
    );
    let password = "wrong-Password-4711";
    let (code, password_peer) = connect(broker.addr, "log-test-password", "alice", password);
    assert_eq!(code, 4, "bad user name or password");
    let (code, token_peer) = connect(broker.addr, "log-test-token", "token", &foreign_token);
    assert_eq!(code, 4, "bad user name or password");
    let status = broker.terminate(WAIT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");

    let log = broker.log();
    for secret in [password, foreign_token.as_str()] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    let lines = json_lines(&log);
    for (client, peer) in [
        ("log-test-password", password_peer),
        ("log-test-token", token_peer),
    ] {
        let refusals: Vec<&Value> = lines
            .iter()
            .filter(|l| message(l).starts_with("refused connection"))
            .filter(|l| l["fields"]["client"] == client || l["fields"]["peer"] == peer.as_str())
            .collect();
        assert_eq!(refusals.len(), 1, "{client}: {refusals:#?}\n{log}");
        let fields = &refusals[0]["fields"];
        assert_eq!(fields["client"], client, "{fields}");
        assert_eq!(fields["peer"], peer.as_str(), "{fields}");
        let reason = fields["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("0x86"), "reason code: {fields}");
        assert_eq!(refusals[0]["level"], "INFO", "{}", refusals[0]);
    }
}

/// SIGHUP reads the config file again: its new log level holds from then on (the reload is
/// logged at the old level, info, and a debug line follows once the level is debug).
#[cfg(unix)]
#[test]
fn sighup_applies_the_config_files_new_log_level() {
    let dir = support::unique_temp_dir("log-reload-config");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("corvus.toml");
    std::fs::write(&config, "log_level = \"info\"\n").unwrap();
    let mut broker = support::Broker::start_with_file_level(
        "log-reload",
        &["--config".as_ref(), config.as_os_str()],
    );
    // At info, a connection that never sends CONNECT leaves no line ("no CONNECT in time" is
    // debug); after the reload to debug, a client's connection is logged.
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    broker.send_signal("HUP");
    let reloaded = broker.wait_log(|l| l.contains("reloaded"), WAIT);
    assert!(
        reloaded
            .as_ref()
            .is_ok_and(|l| l.contains("log level debug")),
        "{reloaded:?}\n{}",
        broker.log()
    );
    let (code, _) = connect(broker.addr, "after-reload", "anyone", "x");
    assert_eq!(code, 0, "{}", broker.log());
    let debug_line = broker.wait_log(|l| l.contains("DEBUG") && l.contains("after-reload"), WAIT);
    assert!(
        debug_line.is_ok(),
        "no debug line after the reload:\n{}",
        broker.log()
    );

    // A bad level: the reload fails, says why, and the level stays debug.
    std::fs::write(&config, "log_level = \"verbose\"\n").unwrap();
    broker.send_signal("HUP");
    let failed = broker.wait_log(|l| l.contains("reload failed"), WAIT);
    assert!(
        failed.as_ref().is_ok_and(|l| l.contains("log_level")),
        "{failed:?}\n{}",
        broker.log()
    );
    broker.terminate(WAIT);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fills `dir` as a broker's data directory: one offline persistent session with `queued`
/// QoS 1 messages waiting for it.
fn fill_queue(dir: &Path, queued: usize) {
    use corvus_core::{Delivery, Message};
    use corvus_store::keyed::SessionRecord;
    use corvus_store::{Store, StoreOp, StoreOptions};
    use std::sync::Arc;

    let (store, _) = Store::open(dir, StoreOptions::default(), 0).expect("the store opens");
    store.submit([StoreOp::PutSession {
        client: "offline".into(),
        record: SessionRecord {
            expiry_interval: u32::MAX,
            disconnected_at: None,
            pending_will: None,
            armed_will: None,
            last_packet_id: 0,
            principal: None,
        },
    }]);
    let message = Arc::new(Message {
        topic: mqtt_codec::MqttString::from_static("site/queued"),
        payload: bytes::Bytes::from(vec![b'x'; 100]),
        qos: mqtt_codec::QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        expires_at: None,
        publisher: None,
        received_at: None,
    });
    let mut last = 0;
    for start in (0..queued).step_by(1000) {
        let ops = (start..queued.min(start + 1000)).map(|_| StoreOp::Enqueue {
            client: "offline".into(),
            delivery: Delivery {
                // Each its own body, as messages from different PUBLISHes are.
                message: Arc::new((*message).clone()),
                qos: mqtt_codec::QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![],
                stored_id: Some(store.next_message_id()),
                received_at: None,
            },
        });
        last = store.submit(ops.collect::<Vec<_>>());
    }
    assert!(store.wait_durable(last, WAIT), "the store did not sync");
}

/// `(done, total)` of a progress line such as "recovery: replaying the queue journal: 400
/// of 40000 records (1%), 0.1 s so far".
fn progress_of(line: &str, step: &str) -> Option<(u64, u64)> {
    let rest = line.split(&format!("recovery: {step}: ")).nth(1)?;
    let mut words = rest.split(' ');
    let done = words.next()?.parse().ok()?;
    let total = words.nth(1)?.parse().ok()?;
    Some((done, total))
}

/// Recovering a large data directory shows how far it has got: each step from 0 to its
/// total, in order (at debug level every report; at info level a line every few seconds,
/// which a test cannot wait for), then how long it took, and the broker serves what it
/// recovered.
#[test]
fn recovery_of_a_large_store_logs_its_progress() {
    const QUEUED: usize = 20_000;
    let data = support::unique_temp_dir("recovery-progress");
    fill_queue(&data, QUEUED);
    let broker = support::Broker::start_on(data, "debug");
    let log = broker.log();

    // A Message and an Enqueue record per message.
    let records = 2 * QUEUED as u64;
    let replay: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|l| progress_of(l, "replaying the queue journal"))
        .collect();
    assert_eq!(replay.len(), 101, "a line per hundredth:\n{log}");
    assert_eq!(replay.first(), Some(&(0, records)), "{log}");
    assert_eq!(replay.last(), Some(&(records, records)), "{log}");
    assert!(replay.windows(2).all(|w| w[0].0 < w[1].0), "{replay:?}");
    assert!(
        log.contains("(100%)") && log.contains(" records (1%), "),
        "percentages in the lines:\n{log}"
    );

    let order = [
        "loading sessions",
        "checking the queue journal",
        "replaying the queue journal",
        "done in",
    ];
    let first_line_of = |what: &str| {
        log.lines()
            .position(|l| l.contains(&format!("recovery: {what}")))
            .unwrap_or_else(|| panic!("no 'recovery: {what}' line:\n{log}"))
    };
    let at: Vec<usize> = order.iter().map(|what| first_line_of(what)).collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "steps out of order:\n{log}"
    );
    assert!(
        log.contains("recovery: loading sessions: 1 of 1 sessions (100%)"),
        "{log}"
    );
    // An empty step (no retained messages) says nothing.
    assert!(!log.contains("recovery: loading retained"), "{log}");
    // The journal is checked in MiB, up to all of it.
    let scanned = log
        .lines()
        .rfind(|l| l.contains("recovery: checking the queue journal: "))
        .unwrap_or_default();
    assert!(scanned.contains(" MiB (100%)"), "{scanned}");

    let start = log
        .lines()
        .find(|l| l.contains("listening for MQTT on"))
        .unwrap_or_default();
    assert!(
        start.contains(&format!("{QUEUED} queued")),
        "the start line says what was recovered: {start}"
    );
}
