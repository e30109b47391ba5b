//! MQTT over TLS (`mqtts` listeners): certificates made by the test (rcgen), clients on
//! tokio-rustls speaking through the codec. TLS 1.2 and 1.3 both work; mutual TLS admits a
//! client certificate signed by the configured CA and refuses none or a foreign one; a
//! plaintext client on a TLS port gets nothing; broken certificate files stop the start
//! with a message naming the file.

mod common;

use std::net::SocketAddr;

use common::tls::*;
use common::*;
use corvus_server::config::ListenerKind;
use corvus_server::{Config, Server};
use mqtt_codec::{ProtocolVersion, QoS};
use rcgen::KeyPair;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Whether an MQTT session works over `stream`: CONNECT, then a QoS 1 message from it
/// reaches a plaintext subscriber.
async fn mqtt_works(stream: Box<dyn Stream>, plain: SocketAddr, id: &str) -> bool {
    let (mut publ, _) = Raw::over(stream, V5).handshake(id, |_| {}).await;
    delivers(&mut publ, plain, id).await
}

/// Whether a QoS 1 message from `publ` reaches a plaintext subscriber.
async fn delivers(publ: &mut Raw, plain: SocketAddr, id: &str) -> bool {
    let mut sub = Raw::connect(plain, V5, &format!("{id}-watcher")).await;
    let topic = format!("tls/{id}");
    sub.subscribe(1, &topic, QoS::AtLeastOnce).await;
    publ.publish(&topic, b"over TLS", QoS::AtLeastOnce, false, 1)
        .await;
    &sub.recv_publish().await.payload[..] == b"over TLS"
}

#[tokio::test]
async fn mqtt_over_tls_1_2_and_1_3() {
    let ca = Ca::new("Corvus test CA");
    let files = write_files(&ca, &ca.issue(&["localhost", "127.0.0.1"], false));
    let (server, plain, tls) = start_tls(&files, None).await;
    for (name, version) in [
        ("tls13", &rustls::version::TLS13),
        ("tls12", &rustls::version::TLS12),
    ] {
        let stream = tls_connect(tls, client_config(&ca, &[version], None))
            .await
            .unwrap_or_else(|e| panic!("{name} handshake: {e}"));
        let negotiated = stream.get_ref().1.protocol_version();
        assert_eq!(negotiated, Some(version.version), "{name}");
        assert!(mqtt_works(Box::new(stream), plain, name).await, "{name}");
    }
    // A client that does not trust the server's CA refuses it.
    let other = Ca::new("Another CA");
    let refused = tls_connect(tls, client_config(&other, &[&rustls::version::TLS13], None)).await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA was accepted"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_plaintext_client_on_a_tls_port_gets_no_mqtt() {
    let ca = Ca::new("Corvus test CA");
    let files = write_files(&ca, &ca.issue(&["localhost"], false));
    let (server, _plain, tls) = start_tls(&files, None).await;
    let mut raw = Raw::open(tls, V5).await;
    raw.send(mqtt_codec::Connect::new(V5, s("plain")).into())
        .await;
    // Whatever comes back is TLS, not a CONNACK: the codec cannot read it, or the broker
    // closes the connection.
    // (Not a time-out either: the broker acts at once.)
    let got = raw.try_recv(WAIT).await;
    assert!(
        matches!(got, Ok(None) | Err("undecodable packet from broker")),
        "a plaintext CONNECT was answered, or nothing happened: {got:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_from_the_client_ca() {
    let ca = Ca::new("Corvus test CA");
    let files = write_files(&ca, &ca.issue(&["localhost"], false));
    let client_ca = Ca::new("Device CA");
    let ca_file = files.ca.with_file_name("clients.pem");
    std::fs::write(&ca_file, client_ca.cert.pem()).unwrap();
    let (server, plain, tls) = start_tls(&files, Some(&ca_file)).await;
    let tls13 = [&rustls::version::TLS13];

    let device = client_ca.issue(&["device-1"], true);
    let stream = tls_connect(tls, client_config(&ca, &tls13, Some(&device)))
        .await
        .expect("a device certificate from the client CA is admitted");
    assert!(mqtt_works(Box::new(stream), plain, "device-1").await);

    // No certificate, or one from another CA: the handshake fails (with TLS 1.3 the server
    // may only say so after the client has finished, so the first read fails instead).
    let stranger = Ca::new("Stranger CA").issue(&["intruder"], true);
    for (what, identity) in [("no certificate", None), ("a foreign one", Some(&stranger))] {
        let outcome = match tls_connect(tls, client_config(&ca, &tls13, identity)).await {
            Err(_) => None,
            Ok(stream) => {
                let mut raw = Raw::over(Box::new(stream), V5);
                raw.send(mqtt_codec::Connect::new(V5, s("intruder")).into())
                    .await;
                // Refused by the broker, not merely a silence.
                let got = raw.try_recv(WAIT).await;
                assert!(!matches!(got, Err("timed out")), "{what}: nothing happened");
                got.ok().flatten()
            }
        };
        assert!(outcome.is_none(), "{what}: the broker answered {outcome:?}");
    }
    server.shutdown().await;
}

/// A reload (SIGHUP) gives new connections the new certificate and leaves open ones alone;
/// a reload of broken files changes nothing and says which file.
#[tokio::test]
async fn certificates_are_reloaded_without_dropping_connections() {
    let old_ca = Ca::new("Old CA");
    let files = write_files(&old_ca, &old_ca.issue(&["localhost"], false));
    let (server, plain, tls) = start_tls(&files, None).await;
    let tls13 = [&rustls::version::TLS13];
    let stream = tls_connect(tls, client_config(&old_ca, &tls13, None))
        .await
        .unwrap();
    let (mut kept, _) = Raw::over(Box::new(stream), V5)
        .handshake("kept", |_| {})
        .await;

    let new_ca = Ca::new("New CA");
    let (cert, key) = new_ca.issue(&["localhost"], false);
    std::fs::write(&files.cert, cert.pem() + &new_ca.cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    // What SIGHUP and `POST /api/v1/reload` run.
    let reloaded = server.reload().unwrap();
    assert!(
        reloaded.contains("certificates of 1 TLS listener(s)"),
        "{reloaded}"
    );
    let stale = tls_connect(tls, client_config(&old_ca, &tls13, None)).await;
    assert!(stale.is_err(), "the old certificate is still served");
    let stream = tls_connect(tls, client_config(&new_ca, &tls13, None))
        .await
        .expect("the new certificate is served");
    assert!(mqtt_works(Box::new(stream), plain, "after-reload").await);
    assert!(
        delivers(&mut kept, plain, "kept").await,
        "the connection opened before the reload was dropped"
    );

    std::fs::write(&files.key, "not a key\n").unwrap();
    let error = server.reload().unwrap_err();
    assert!(error.contains("server.key"), "{error}");
    let stream = tls_connect(tls, client_config(&new_ca, &tls13, None))
        .await
        .expect("a failed reload keeps the running certificate");
    assert!(mqtt_works(Box::new(stream), plain, "after-failed-reload").await);
    server.shutdown().await;
}

#[tokio::test]
async fn broken_certificate_files_stop_the_start_with_a_clear_message() {
    let ca = Ca::new("Corvus test CA");
    let files = write_files(&ca, &ca.issue(&["localhost"], false));
    let other_key = files.key.with_file_name("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let not_pem = files.key.with_file_name("notes.txt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let missing = files.key.with_file_name("missing.pem");
    let cases = [
        (
            "missing certificate",
            missing.clone(),
            files.key.clone(),
            "missing.pem",
        ),
        (
            "no certificate in the file",
            not_pem.clone(),
            files.key.clone(),
            "notes.txt",
        ),
        (
            "missing key",
            files.cert.clone(),
            missing.clone(),
            "missing.pem",
        ),
        (
            "key of another certificate",
            files.cert.clone(),
            other_key,
            "other.key",
        ),
    ];
    for (case, cert, key, named) in cases {
        let config = Config {
            listen: vec![],
            listeners: vec![mqtts_listener(Some(cert), Some(key), None)],
            data_dir: fresh_data_dir(),
            ..Config::default()
        };
        let error = match Server::start(&config).await {
            Ok(server) => {
                server.shutdown().await;
                panic!("{case}: the broker started");
            }
            Err(e) => e.to_string(),
        };
        assert!(error.contains(named), "{case}: {error}");
    }
}

/// Found in review: a config built in code is validated too, so an mqtts listener without
/// its certificate does not quietly serve plain TCP.
#[tokio::test]
async fn a_tls_listener_without_certificate_files_does_not_start() {
    let config = Config {
        listen: vec![],
        listeners: vec![mqtts_listener(None, None, None)],
        data_dir: fresh_data_dir(),
        ..Config::default()
    };
    let error = Server::start(&config).await.expect_err("refused");
    assert!(
        error.to_string().contains("needs both cert and key"),
        "{error}"
    );
}

#[test]
fn mqtts_listeners_are_configured_in_listener_tables() {
    let config = Config::parse(
        "[[listener]]\nkind = \"mqtts\"\nbind = \"0.0.0.0:8883\"\ncert = \"s.pem\"\nkey = \"s.key\"\nallow_anonymous = true\n",
    )
    .unwrap();
    assert_eq!(config.listeners[0].kind, ListenerKind::Mqtts);
    assert!(config.listeners[0].tls_files().is_some());
    for (text, complaint) in [
        (
            "kind = \"mqtts\"\nbind = \"127.0.0.1:8883\"\ncert = \"s.pem\"\n",
            "both cert and key",
        ),
        (
            "kind = \"mqtt\"\nbind = \"127.0.0.1:1884\"\ncert = \"s.pem\"\n",
            "belong to mqtts",
        ),
        (
            "kind = \"quic\"\nbind = \"127.0.0.1:1884\"\n",
            "unknown variant",
        ),
        (
            "kind = \"wss\"\nbind = \"127.0.0.1:8884\"\n",
            "both cert and key",
        ),
        (
            "kind = \"ws\"\nbind = \"127.0.0.1:8080\"\npath = \"mqtt\"\n",
            "starts with /",
        ),
        (
            "kind = \"mqtt\"\nbind = \"127.0.0.1:1884\"\npath = \"/mqtt\"\n",
            "belongs to ws",
        ),
    ] {
        let error = Config::parse(&format!("[[listener]]\n{text}")).unwrap_err();
        assert!(error.to_string().contains(complaint), "{text}: {error}");
    }
}
