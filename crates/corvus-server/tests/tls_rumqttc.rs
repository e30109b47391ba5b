//! A real client library over TLS: rumqttc (rustls on the ring provider) against an `mqtts`
//! listener with certificates made by the test (rcgen). MQTT 3.1.1 and 5.0 clients verify
//! the server as "localhost" against the test CA and exchange a QoS 1 message with
//! themselves; with mutual TLS a client certificate from the client CA is admitted and none,
//! or one from another CA, is refused; a client that trusts another CA refuses the server.
//! Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tls::*;
use common::WAIT;
use corvus_server::Server;
use rcgen::{Certificate, KeyPair};
use rumqttc::{TlsConfiguration, Transport};

/// A broker with a plaintext listener and an `mqtts` one; returns the TLS address.
async fn start_tls(files: &Files, client_ca: Option<&Path>) -> (Server, SocketAddr) {
    let (server, _plain, tls) = common::tls::start_tls(files, client_ca).await;
    (server, tls)
}

/// rustls through rumqttc: trust `ca` (PEM), and present `identity` if given.
fn transport(ca: &Ca, identity: Option<&(Certificate, KeyPair)>) -> Transport {
    Transport::Tls(TlsConfiguration::Simple {
        ca: ca.cert.pem().into_bytes(),
        alpn: None,
        client_auth: identity
            .map(|(cert, key)| (cert.pem().into_bytes(), key.serialize_pem().into_bytes())),
    })
}

/// A CA, and a server certificate from it for "localhost" and 127.0.0.1, in PEM files.
fn server_files() -> (Ca, Files) {
    let ca = Ca::new("Corvus test CA");
    let files = write_files(&ca, &ca.issue(&["localhost", "127.0.0.1"], false));
    (ca, files)
}

// ---- MQTT 3.1.1 ----

mod v311 {
    use super::*;
    use rumqttc::{
        AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    };

    pub fn options(tls: SocketAddr, id: &str, transport: Transport) -> MqttOptions {
        // The host is also the name the server certificate is verified against.
        let mut options = MqttOptions::new(id, "localhost", tls.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_transport(transport);
        options
    }

    /// Polls until `pick` accepts an event; panics on a connection error or after [`WAIT`].
    async fn until<T>(
        eventloop: &mut EventLoop,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if let Some(t) = pick(&event) {
                            return t;
                        }
                    }
                    Err(e) => panic!("{what}: connection error {e}"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
    }

    /// Connects, subscribes with QoS 1, publishes with QoS 1 to that topic and receives the
    /// message back: topic, payload and QoS as sent, and the PUBLISH acknowledged.
    pub async fn round_trip(options: MqttOptions, topic: &str, payload: &[u8]) {
        let id = options.client_id();
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let ack = until(&mut eventloop, "CONNACK", |e| match e {
            Event::Incoming(Packet::ConnAck(ack)) => Some(ack.clone()),
            _ => None,
        })
        .await;
        assert_eq!(ack.code, ConnectReturnCode::Success, "{id}: {ack:?}");

        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        let suback = until(&mut eventloop, "SUBACK", |e| match e {
            Event::Incoming(Packet::SubAck(ack)) => Some(ack.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            suback.return_codes,
            vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "{id}"
        );

        client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
        let (mut acked, mut received) = (false, None);
        until(&mut eventloop, "PUBACK and the message", |e| {
            match e {
                Event::Incoming(Packet::PubAck(_)) => acked = true,
                Event::Incoming(Packet::Publish(p)) => received = Some(p.clone()),
                _ => {}
            }
            (acked && received.is_some()).then_some(())
        })
        .await;
        let publish = received.unwrap();
        assert_eq!(publish.topic, topic, "{id}");
        assert_eq!(&publish.payload[..], payload, "{id}");
        assert_eq!(publish.qos, QoS::AtLeastOnce, "{id}");

        client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(WAIT, async { while eventloop.poll().await.is_ok() {} }).await;
    }

    /// The first outcome of connecting, which must be an error and never a CONNACK.
    pub async fn refused(options: MqttOptions) -> ConnectionError {
        let id = options.client_id();
        let (_client, mut eventloop) = AsyncClient::new(options, 16);
        let outcome = tokio::time::timeout(WAIT * 2, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        panic!("{id}: the broker answered with {ack:?}")
                    }
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
        })
        .await;
        outcome.unwrap_or_else(|_| panic!("{id}: neither refused nor admitted"))
    }
}

// ---- MQTT 5.0 ----

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    pub fn options(tls: SocketAddr, id: &str, transport: Transport) -> MqttOptions {
        let mut options = MqttOptions::new(id, "localhost", tls.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_transport(transport);
        options
    }

    async fn until<T>(
        eventloop: &mut EventLoop,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if let Some(t) = pick(&event) {
                            return t;
                        }
                    }
                    Err(e) => panic!("{what}: connection error {e}"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
    }

    /// As [`super::v311::round_trip`], in MQTT 5.0.
    pub async fn round_trip(options: MqttOptions, topic: &str, payload: &[u8]) {
        let id = options.client_id();
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let ack = until(&mut eventloop, "CONNACK", |e| match e {
            Event::Incoming(Packet::ConnAck(ack)) => Some(ack.clone()),
            _ => None,
        })
        .await;
        assert_eq!(ack.code, ConnectReturnCode::Success, "{id}: {ack:?}");

        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        let suback = until(&mut eventloop, "SUBACK", |e| match e {
            Event::Incoming(Packet::SubAck(ack)) => Some(ack.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            suback.return_codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "{id}"
        );

        client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap();
        let (mut acked, mut received) = (false, None);
        until(&mut eventloop, "PUBACK and the message", |e| {
            match e {
                Event::Incoming(Packet::PubAck(_)) => acked = true,
                Event::Incoming(Packet::Publish(p)) => received = Some(p.clone()),
                _ => {}
            }
            (acked && received.is_some()).then_some(())
        })
        .await;
        let publish = received.unwrap();
        assert_eq!(&publish.topic[..], topic.as_bytes(), "{id}");
        assert_eq!(&publish.payload[..], payload, "{id}");
        assert_eq!(publish.qos, QoS::AtLeastOnce, "{id}");

        client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(WAIT, async { while eventloop.poll().await.is_ok() {} }).await;
    }
}

#[tokio::test]
async fn rumqttc_v311_over_tls_verifies_the_server_and_exchanges_qos1() {
    let (ca, files) = server_files();
    let (server, tls) = start_tls(&files, None).await;
    let options = v311::options(tls, "tls-v311", transport(&ca, None));
    v311::round_trip(options, "tls/v311", b"over TLS, 3.1.1").await;
    server.shutdown().await;
}

#[tokio::test]
async fn rumqttc_v5_over_tls_verifies_the_server_and_exchanges_qos1() {
    let (ca, files) = server_files();
    let (server, tls) = start_tls(&files, None).await;
    let options = v5::options(tls, "tls-v5", transport(&ca, None));
    v5::round_trip(options, "tls/v5", b"over TLS, 5.0").await;
    server.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_admits_a_rumqttc_client_certificate_from_the_client_ca_only() {
    let (ca, files) = server_files();
    let client_ca = Ca::new("Device CA");
    let ca_file = files.ca.with_file_name("clients.pem");
    std::fs::write(&ca_file, client_ca.cert.pem()).unwrap();
    let (server, tls) = start_tls(&files, Some(&ca_file)).await;

    // A certificate signed by the client CA: admitted, in both protocol versions.
    let device = client_ca.issue(&["device-1"], true);
    let options = v311::options(tls, "device-1", transport(&ca, Some(&device)));
    v311::round_trip(options, "mtls/device-1", b"with a certificate").await;
    let options = v5::options(tls, "device-1-v5", transport(&ca, Some(&device)));
    v5::round_trip(options, "mtls/device-1-v5", b"with a certificate, 5.0").await;

    // No certificate, or one from another CA: a connection error, never a CONNACK. With
    // TLS 1.3 the client finishes its side of the handshake first, so the broker's alert
    // arrives when rumqttc reads the CONNACK; or, if the broker has closed by then, the
    // client sees the connection reset or cut, without the alert.
    let stranger = Ca::new("Stranger CA").issue(&["intruder"], true);
    for (what, identity, alert) in [
        ("no certificate", None, "CertificateRequired"),
        ("a foreign one", Some(&stranger), "UnknownCA"),
    ] {
        let options = v311::options(tls, "intruder", transport(&ca, identity));
        let error = v311::refused(options).await;
        let text = error.to_string();
        match &error {
            rumqttc::ConnectionError::Tls(_) => assert!(text.contains(alert), "{what}: {text}"),
            rumqttc::ConnectionError::Io(io) => {
                use std::io::ErrorKind::*;
                let cut = matches!(
                    io.kind(),
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
                );
                assert!(text.contains(alert) || cut, "{what}: {error:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_rumqttc_client_trusting_another_ca_refuses_the_server() {
    let (_ca, files) = server_files();
    let (server, tls) = start_tls(&files, None).await;
    let other = Ca::new("Another CA");
    let error = v311::refused(v311::options(tls, "doubter", transport(&other, None))).await;
    // The client's own handshake fails: the certificate's issuer is unknown to it.
    assert!(
        matches!(error, rumqttc::ConnectionError::Tls(_)),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("UnknownIssuer"), "{text}");
    server.shutdown().await;
}
