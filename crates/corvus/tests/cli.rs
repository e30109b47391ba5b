//! The command line of the real `corvus` binary: help, flags, the config file and how flags
//! override it, errors that name the key and line, the start message, the data directory.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::{unique_temp_dir, Proc};

fn corvus() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corvus"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// A config file with `text` in a fresh directory.
fn config_file(test: &str, text: &str) -> std::path::PathBuf {
    let dir = unique_temp_dir(test);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("corvus.toml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap();
    path
}

#[test]
fn help_explains_every_flag() {
    let out = support::corvus(&["--help"], "");
    assert!(out.success(), "{out}");
    for flag in [
        "--listen",
        "--config",
        "--data-dir",
        "--log-level",
        "0.0.0.0:1883",
    ] {
        assert!(
            out.stdout.contains(flag),
            "--help does not mention {flag}: {out}"
        );
    }
}

#[test]
fn unknown_config_key_is_refused_with_its_name_and_line() {
    let path = config_file(
        "cli-unknown-key",
        "log_level = \"info\"\nlisen = [\"127.0.0.1:1\"]\n",
    );
    let out = support::corvus(&["--config", path.to_str().unwrap()], "");
    assert!(!out.success(), "started with a bad config: {out}");
    assert!(out.stderr.contains("lisen"), "{out}");
    assert!(out.stderr.contains("line 2"), "{out}");
}

#[test]
fn bad_config_value_is_refused_with_its_key() {
    let path = config_file("cli-bad-value", "[limits]\nreceive_maximum = 0\n");
    let out = support::corvus(&["--config", path.to_str().unwrap()], "");
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("limits.receive_maximum"), "{out}");
}

#[test]
fn unknown_log_level_is_refused() {
    let out = support::corvus(&["--log-level", "loud"], "");
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("loud"), "{out}");
}

#[test]
fn missing_config_file_is_refused_with_its_path() {
    let out = support::corvus(&["--config", "/nonexistent/corvus.toml"], "");
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("/nonexistent/corvus.toml"), "{out}");
}

/// Flags win over the file; the start line says where it listens, where the data lives and
/// how to listen publicly; the data directory is created private (0700).
#[test]
fn flags_override_the_config_file_and_the_start_message_says_where_things_are() {
    let file_dir = unique_temp_dir("cli-file-data");
    let flag_dir = unique_temp_dir("cli-flag-data");
    let path = config_file(
        "cli-override",
        &format!(
            "listen = [\"127.0.0.1:9\"]\nlog_level = \"debug\"\ndata_dir = \"{}\"\n",
            file_dir.display()
        ),
    );
    let mut broker = Proc::spawn(
        "corvus",
        corvus()
            .arg("--config")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&flag_dir),
    );
    let line = broker.expect_line(|l| l.contains("listening for MQTT on"), "start line");
    // Port 0 in the flag (not 9 from the file): the line names the port actually bound.
    let addr = line
        .split("listening for MQTT on ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("address in the start line")
        .trim()
        .to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":9"),
        "{line}"
    );
    assert!(line.contains(&flag_dir.display().to_string()), "{line}");
    // With nothing configured, the start says who may do what.
    broker.expect_line(
        |l| {
            l.contains(
                "Authentication: none configured: anonymous clients on loopback may do everything",
            )
        },
        "the anonymous local default",
    );
    broker.expect_line(
        |l| l.contains("To listen publicly, configure authentication"),
        "how to listen publicly",
    );
    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
        .expect("the broker accepts connections where it said");
    assert!(
        !file_dir.exists(),
        "the file's data_dir was used despite --data-dir"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&flag_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "data directory mode {mode:o}");
    }
    broker.kill();
    let _ = std::fs::remove_dir_all(&flag_dir);
}

/// SIGINT (Ctrl-C) and SIGTERM both shut down gracefully: a v5 client is told 0x8B (Server
/// shutting down) before the close, and the process exits 0.
#[cfg(unix)]
#[test]
fn sigint_and_sigterm_shut_down_gracefully_with_exit_status_0() {
    use std::io::Read;
    // CONNECT, MQTT 5.0, clean start, keep alive 60, no properties, client id "x".
    let connect = [
        0x10, 14, // fixed header, remaining length
        0x00, 0x04, b'M', b'Q', b'T', b'T', 5, // protocol name and level
        0x02, 0, 60, 0, // flags, keep alive, property length
        0, 1, b'x', // client identifier
    ];
    for signal in ["INT", "TERM"] {
        let mut broker = support::Broker::start(&format!("cli-sig{signal}"));
        let mut client = TcpStream::connect(broker.addr).expect("connect");
        client.write_all(&connect).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut connack = [0u8; 64];
        let n = client.read(&mut connack).expect("CONNACK");
        assert!(
            n >= 4 && connack[0] == 0x20 && connack[3] == 0x00,
            "CONNACK {:02X?}",
            &connack[..n]
        );
        let status = broker
            .signal(signal, Duration::from_secs(10))
            .expect("exits after the signal");
        assert!(status.success(), "SIG{signal}: exit status {status:?}");
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        // DISCONNECT with reason 0x8B, then the close.
        assert!(
            rest.len() >= 3 && rest[0] == 0xE0 && rest[2] == 0x8B,
            "SIG{signal}: {rest:02X?}"
        );
    }
}

/// Two brokers on one data directory would corrupt it: the second is refused with a message
/// that names the directory, and the first keeps serving.
#[test]
fn a_second_broker_on_the_same_data_directory_is_refused() {
    let first = support::Broker::start("cli-lock");
    let data_dir = first.data_dir.to_str().unwrap();
    let out = support::corvus(&["--listen", "127.0.0.1:0", "--data-dir", data_dir], "");
    assert!(
        !out.success(),
        "a second broker started on the same directory: {out}"
    );
    assert!(out.stderr.contains("in use by another process"), "{out}");
    assert!(
        out.stderr.contains(&first.data_dir.display().to_string()),
        "{out}"
    );
    TcpStream::connect_timeout(&first.addr, Duration::from_secs(5))
        .expect("the first still serves");
}

/// SIGHUP reloads the TLS listeners' certificates: the broker says so and keeps running; a
/// reload of broken files is refused, naming the file, and the running certificates stay.
#[cfg(unix)]
#[test]
fn sighup_reloads_the_tls_certificates() {
    let (dir, _ca, chain, key) = support::tls_files();
    let tls_port = support::free_port();
    let config = support::listeners_config(dir.path(), &[("mqtts", tls_port)], &chain, &key);
    let mut broker =
        support::Broker::start_with("sighup", &["--config".as_ref(), config.as_os_str()]);
    let wait = std::time::Duration::from_secs(10);
    broker.sighup(|l| l.contains("reloaded the certificates of 1 TLS listener"));
    std::fs::write(&key, "not a key\n").unwrap();
    let line = broker.sighup(|l| l.contains("reload failed"));
    assert!(line.contains("server.key"), "{line}");
    assert!(broker.is_running(), "a failed reload stopped the broker");
    let status = broker.terminate(wait).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// SIGHUP swaps the certificate for new TLS connections and leaves the open ones alone, in
/// the real binary (driven through `openssl s_client`): a client connected before the
/// reload stays connected and is still answered and delivered to; a client connecting after
/// it is presented the new certificate, which verifies against the new CA and not against the
/// old one. A reload of a broken key then changes nothing, for either.
#[cfg(unix)]
#[test]
fn sighup_gives_new_tls_connections_the_new_certificate_and_keeps_the_open_ones() {
    use mqtt_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode};
    use support::openssl::{certificate_body, presented_certificate, TlsClient};

    let test = "sighup_gives_new_tls_connections_the_new_certificate_and_keeps_the_open_ones";
    if !support::require(test, "openssl", support::openssl::available()) {
        return;
    }
    // Two CAs, each with its server certificate; the broker's files start as the first's.
    let (dir, old_ca, chain, key) = support::tls_files();
    let (_new_dir, new_ca, new_chain, new_key) = support::tls_files();
    let leaf = |chain: &std::path::Path| {
        certificate_body(&std::fs::read_to_string(chain).unwrap()).expect("a certificate")
    };
    let (old_cert, new_cert) = (leaf(&chain), leaf(&new_chain));
    assert_ne!(old_cert, new_cert);
    let tls_port = support::free_port();
    let config = support::listeners_config(dir.path(), &[("mqtts", tls_port)], &chain, &key);
    let mut broker = support::Broker::start_with(
        "sighup-tls-swap",
        &["--config".as_ref(), config.as_os_str()],
    );
    let wait = Duration::from_secs(10);
    let presented = |ca: &std::path::Path| {
        presented_certificate(tls_port, ca)
            .unwrap_or_else(|out| panic!("TLS handshake trusting {}: {out}", ca.display()))
    };
    let refused = |ca: &std::path::Path| match presented_certificate(tls_port, ca) {
        Ok(_) => panic!("the certificate verified against {}", ca.display()),
        Err(out) => assert!(
            out.stderr.contains("certificate verify failed"),
            "not a verification failure: {out}"
        ),
    };
    let ping = |client: &mut TlsClient| {
        client.send(Packet::PingReq);
        assert_eq!(client.next(), Some(Packet::PingResp));
    };

    // Before the reload: the first certificate, which the new CA does not vouch for.
    assert_eq!(presented(&old_ca), old_cert);
    refused(&new_ca);
    let (mut before, ack) =
        support::openssl::connect(tls_port, &old_ca, ProtocolVersion::V5, "before");
    assert_eq!(ack.reason_code, ReasonCode::Success);
    before.send(
        mqtt_codec::Subscribe {
            packet_id: std::num::NonZeroU16::new(1).unwrap(),
            properties: Default::default(),
            subscriptions: vec![mqtt_codec::Subscription {
                filter: support::mqtt::s("reload/#"),
                options: Default::default(),
            }],
        }
        .into(),
    );
    match before.next() {
        Some(Packet::SubAck(ack)) => assert_eq!(ack.reason_codes, [ReasonCode::Success]),
        other => panic!("expected SUBACK, got {other:?}"),
    }

    std::fs::copy(&new_chain, &chain).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    broker.sighup(|l| l.contains("reloaded the certificates of 1 TLS listener"));

    // The connection opened before is still open, answered, and delivered to.
    ping(&mut before);
    let message = |topic: &str, qos: QoS| {
        let mut publish = Publish::new(support::mqtt::s(topic), topic.as_bytes().to_vec().into());
        publish.qos = qos;
        publish.packet_id = (qos != QoS::AtMostOnce).then(|| std::num::NonZeroU16::new(7).unwrap());
        publish
    };
    let delivered = |client: &mut TlsClient, topic: &str| match client.next() {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic.as_str(), topic);
            assert_eq!(&p.payload[..], topic.as_bytes());
        }
        other => panic!("expected the PUBLISH to {topic}, got {other:?}"),
    };
    before.send(message("reload/own", QoS::AtMostOnce).into());
    delivered(&mut before, "reload/own");

    // A new connection gets the new certificate: verified by the new CA, not by the old.
    assert_eq!(presented(&new_ca), new_cert);
    refused(&old_ca);
    let (mut after, ack) =
        support::openssl::connect(tls_port, &new_ca, ProtocolVersion::V5, "after");
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // And the two talk: from the new connection to the old one.
    after.send(message("reload/across", QoS::AtLeastOnce).into());
    match after.next() {
        Some(Packet::PubAck(ack)) => assert!(ack.reason_code.is_success(), "{ack:?}"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    delivered(&mut before, "reload/across");

    // A reload of a broken key changes nothing: new connections still get the new
    // certificate, and both connections are still served.
    std::fs::write(&key, "not a key\n").unwrap();
    broker.sighup(|l| l.contains("reload failed"));
    assert_eq!(presented(&new_ca), new_cert);
    ping(&mut before);
    ping(&mut after);

    drop((before, after));
    let status = broker.terminate(wait).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// The 3.1.1 CONNACK return code for a CONNECT with these credentials (0: accepted, 4: bad
/// user name or password).
fn connack_code(addr: std::net::SocketAddr, user: &str, password: &str) -> u8 {
    let login = support::mqtt::login(user, password);
    let version = mqtt_codec::ProtocolVersion::V3_1_1;
    let (_, ack) = support::mqtt::Client::connect(addr, version, "cli", login);
    ack.reason_code.to_v3_connack()
}

/// SIGHUP reloads the password file and the ACL file in the real binary, and a broken file
/// is refused with the running ones kept.
#[test]
fn sighup_reloads_the_password_and_acl_files() {
    let dir = unique_temp_dir("sighup-auth");
    std::fs::create_dir_all(&dir).unwrap();
    let cheap = corvus_auth::HashParams::new(64, 1, 1).unwrap();
    let write_users = |users: &[&str]| {
        let mut file = corvus_auth::PasswordFile::new();
        for user in users {
            let hash = corvus_auth::hash_password_with(b"secret", &cheap).unwrap();
            file.add_or_replace(user, &hash).unwrap();
        }
        file.save(&dir.join("passwd")).unwrap();
    };
    write_users(&["alice"]);
    let acl = "[[rule]]\neveryone = true\nallow = [\"publish\"]\ntopics = [\"x\"]\n";
    std::fs::write(dir.join("acl.toml"), acl).unwrap();
    let config = dir.join("corvus.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\npassword_file = '{}'\nacl_file = '{}'\n",
            dir.join("passwd").display(),
            dir.join("acl.toml").display()
        ),
    )
    .unwrap();
    let mut broker =
        support::Broker::start_with("sighup-auth", &["--config".as_ref(), config.as_os_str()]);
    let wait = Duration::from_secs(10);
    assert_eq!(connack_code(broker.addr, "alice", "secret"), 0);
    assert_eq!(connack_code(broker.addr, "bob", "secret"), 4);

    write_users(&["alice", "bob"]);
    broker.sighup(|l| l.contains("reloaded") && l.contains("the password file"));
    assert_eq!(connack_code(broker.addr, "bob", "secret"), 0);

    std::fs::write(dir.join("acl.toml"), "[[rule]]\nallow = [\"fly\"]\n").unwrap();
    write_users(&["alice"]);
    let line = broker.sighup(|l| l.contains("reload failed, the running settings stay"));
    assert!(line.contains("acl.toml"), "{line}");
    // All or nothing: the password file read with the broken ACL was not taken either.
    assert_eq!(connack_code(broker.addr, "bob", "secret"), 0);
    let status = broker.terminate(wait).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// A listener others can reach, open to anonymous clients because the config says so
/// (`allow_anonymous = true`): the broker starts, and warns about it in its log.
#[test]
fn an_open_non_loopback_listener_is_warned_about() {
    let path = config_file(
        "cli-open-listener",
        "[auth]\nallow_anonymous = true\n\n[[listener]]\nkind = \"mqtt\"\nbind = \"0.0.0.0:0\"\n",
    );
    let mut broker = support::Broker::start_with(
        "cli-open-listener",
        &["--config".as_ref(), path.as_os_str()],
    );
    let deadline = std::time::Instant::now() + support::WAIT;
    let warned = |log: &str| {
        log.lines().any(|l| {
            l.contains("WARN")
                && l.contains("listener 0.0.0.0:")
                && l.contains("allow_anonymous = true")
        })
    };
    while !warned(&broker.log()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning about the open listener:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The loopback listener of --listen is not warned about.
    let loopback = format!("listener {}", broker.addr);
    let log = broker.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains(&loopback)),
        "{log}"
    );
    let status = broker
        .terminate(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}
