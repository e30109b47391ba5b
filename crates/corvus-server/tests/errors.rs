//! Protocol errors after CONNECT: a v5 client is told the precise reason in a DISCONNECT before
//! the close [MQTT-4.13.1-1]; a 3.1.1 client is simply disconnected [MQTT-4.8.0-1]. Whatever
//! one client sends, the others' streams go on.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use mqtt_codec::{ConnAck, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, UnsubAck};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A PUBLISH packet by hand: first byte, topic bytes, packet id bytes (if any), v5 property
/// bytes (if any, without their length), payload.
fn raw_publish(
    first: u8,
    topic: &[u8],
    id: Option<[u8; 2]>,
    props: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    if let Some(id) = id {
        body.extend_from_slice(&id);
    }
    if let Some(props) = props {
        assert!(props.len() < 128);
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    frame(first, &body)
}

/// A fixed header (with a one- or two-byte remaining length) and the body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let len = body.len();
    assert!(len < 16_384);
    if len < 128 {
        out.push(len as u8);
    } else {
        out.push((len % 128) as u8 | 0x80);
        out.push((len / 128) as u8);
    }
    out.extend_from_slice(body);
    out
}

/// Sends `bytes` on a fresh connection of `version` and returns what came back before the close.
async fn after(addr: SocketAddr, version: ProtocolVersion, bytes: &[u8]) -> Vec<Packet> {
    let mut client = Raw::connect(addr, version, "bad").await;
    client.send_bytes(bytes).await;
    client.expect_close().await
}

/// For v5: exactly one DISCONNECT with `reason`, then the close. For 3.1.1 (when `v311` is
/// given, the same fault in 3.1.1 form): the close and nothing else.
async fn check(addr: SocketAddr, what: &str, v5: &[u8], reason: ReasonCode, v311: Option<&[u8]>) {
    match after(addr, V5, v5).await.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, reason, "{what}: {d:?}"),
        other => panic!("{what}: expected DISCONNECT {reason}, got {other:?}"),
    }
    if let Some(bytes) = v311 {
        let seen = after(addr, V311, bytes).await;
        assert!(
            seen.is_empty(),
            "{what} (3.1.1): expected a bare close, got {seen:?}"
        );
    }
}

#[tokio::test]
async fn mqtt_2_1_3_1_reserved_fixed_header_flags_are_disconnect_0x81() {
    let (server, addr) = start().await;
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "SUBSCRIBE flags 0000",
            frame(0x80, &[0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x00]),
        ),
        ("PUBREL flags 0000", frame(0x60, &[0x00, 0x01])),
        ("PINGREQ flags 0001", vec![0xC1, 0x00]),
        ("DISCONNECT flags 1000", vec![0xE8, 0x00]),
        (
            "UNSUBSCRIBE flags 0000",
            frame(0xA0, &[0x00, 0x01, 0x00, 0x00, 0x01, b'a']),
        ),
    ];
    for (what, bytes) in &cases {
        // The 3.1.1 forms have no property lengths; the first byte alone is already fatal.
        let v311: Vec<u8> = match bytes[0] {
            0x80 => frame(0x80, &[0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
            0xA0 => frame(0xA0, &[0x00, 0x01, 0x00, 0x01, b'a']),
            _ => bytes.clone(),
        };
        check(addr, what, bytes, ReasonCode::MalformedPacket, Some(&v311)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_4_publish_with_qos_3_is_disconnect_0x81() {
    let (server, addr) = start().await;
    let v5 = raw_publish(0x36, b"t", Some([0, 1]), Some(&[]), b"x");
    let v311 = raw_publish(0x36, b"t", Some([0, 1]), None, b"x");
    check(addr, "QoS 3", &v5, ReasonCode::MalformedPacket, Some(&v311)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn v5_duplicate_property_is_disconnect_0x82() {
    let (server, addr) = start().await;
    // Content Type twice.
    let props = [0x03, 0x00, 0x01, b'a', 0x03, 0x00, 0x01, b'b'];
    let v5 = raw_publish(0x30, b"t", None, Some(&props), b"x");
    check(
        addr,
        "duplicate Content Type",
        &v5,
        ReasonCode::ProtocolError,
        None,
    )
    .await;
    // Message Expiry Interval twice.
    let props = [0x02, 0, 0, 0, 9, 0x02, 0, 0, 0, 9];
    let v5 = raw_publish(0x30, b"t", None, Some(&props), b"x");
    check(
        addr,
        "duplicate expiry",
        &v5,
        ReasonCode::ProtocolError,
        None,
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_2_2_1_3_packet_identifier_0_is_disconnect_0x82() {
    let (server, addr) = start().await;
    let v5 = raw_publish(0x32, b"t", Some([0, 0]), Some(&[]), b"x");
    let v311 = raw_publish(0x32, b"t", Some([0, 0]), None, b"x");
    check(
        addr,
        "PUBLISH id 0",
        &v5,
        ReasonCode::ProtocolError,
        Some(&v311),
    )
    .await;
    let v5 = frame(0x82, &[0x00, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]);
    let v311 = frame(0x82, &[0x00, 0x00, 0x00, 0x01, b'a', 0x00]);
    check(
        addr,
        "SUBSCRIBE id 0",
        &v5,
        ReasonCode::ProtocolError,
        Some(&v311),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn v5_packet_above_the_maximum_packet_size_is_disconnect_0x95() {
    let (server, addr) = start_with(|c| c.limits.max_packet_size = 256).await;
    let v5 = raw_publish(0x30, b"t", None, Some(&[]), &[b'x'; 300]);
    let v311 = raw_publish(0x30, b"t", None, None, &[b'x'; 300]);
    check(
        addr,
        "300-byte PUBLISH",
        &v5,
        ReasonCode::PacketTooLarge,
        Some(&v311),
    )
    .await;
    // The declared length is enough: nothing after the fixed header needs to arrive.
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    check(
        addr,
        "declared 256 MB",
        &header,
        ReasonCode::PacketTooLarge,
        Some(&header),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_1_5_4_1_topic_that_is_not_utf8_is_disconnect_0x81() {
    let (server, addr) = start().await;
    for (what, topic) in [
        ("ill-formed UTF-8", &b"a/\xC3\x28"[..]),
        ("surrogate", &b"a/\xED\xA0\x80"[..]),
        ("U+0000", &b"a/\x00"[..]),
    ] {
        let v5 = raw_publish(0x30, topic, None, Some(&[]), b"x");
        let v311 = raw_publish(0x30, topic, None, None, b"x");
        check(addr, what, &v5, ReasonCode::MalformedPacket, Some(&v311)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_2_wildcard_in_a_topic_name_is_disconnect_0x82() {
    let (server, addr) = start().await;
    for topic in [&b"a/+"[..], b"a/#", b"+", b"#"] {
        let v5 = raw_publish(0x32, topic, Some([0, 1]), Some(&[]), b"x");
        let v311 = raw_publish(0x32, topic, Some([0, 1]), None, b"x");
        let what = String::from_utf8_lossy(topic);
        check(addr, &what, &v5, ReasonCode::ProtocolError, Some(&v311)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn v5_packets_only_a_server_sends_are_a_protocol_error() {
    let (server, addr) = start().await;
    let packets = [
        Packet::ConnAck(Box::new(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: Default::default(),
        })),
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: Default::default(),
            reason_codes: vec![ReasonCode::Success],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(1),
            properties: Default::default(),
            reason_codes: vec![ReasonCode::Success],
        }),
        Packet::PingResp,
    ];
    for packet in packets {
        let mut client = Raw::connect(addr, V5, "c").await;
        client.send(packet.clone()).await;
        match client.expect_close().await.as_slice() {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason_code, ReasonCode::ProtocolError, "{packet:?}")
            }
            other => panic!("{packet:?}: expected DISCONNECT 0x82, got {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_4_8_0_1_packets_only_a_server_sends_close_the_connection() {
    let (server, addr) = start().await;
    let packets = [
        Packet::ConnAck(Box::new(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: Default::default(),
        })),
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: Default::default(),
            reason_codes: vec![ReasonCode::Success],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(1),
            properties: Default::default(),
            reason_codes: vec![],
        }),
        Packet::PingResp,
    ];
    for packet in packets {
        let mut client = Raw::connect(addr, V311, "c").await;
        client.send(packet.clone()).await;
        let seen = client.expect_close().await;
        assert!(seen.is_empty(), "{packet:?}: got {seen:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_0_2_second_connect_is_disconnect_0x82() {
    let (server, addr) = start().await;
    let mut client = Raw::connect(addr, V5, "c").await;
    client
        .send(mqtt_codec::Connect::new(V5, s("c")).into())
        .await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;
    let mut client = Raw::connect(addr, V311, "c").await;
    client
        .send(mqtt_codec::Connect::new(V311, s("c")).into())
        .await;
    assert!(client.expect_close().await.is_empty());
    server.shutdown().await;
}

/// Bytes that break the protocol in as many ways as the tests above, and some more: (version,
/// CONNECT first, bytes). Without a CONNECT the bytes are sent on a bare socket, which is then
/// dropped; with one, the broker must close the connection.
fn garbage() -> Vec<(ProtocolVersion, bool, Vec<u8>)> {
    vec![
        (V5, false, vec![0x00, 0x00]),
        (V5, false, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (V5, false, vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        (V5, true, vec![0x36, 0x03, 0x00, 0x01, b't']),
        (V5, true, raw_publish(0x30, b"a/+", None, Some(&[]), b"x")),
        (V5, true, raw_publish(0x30, b"\xFF", None, Some(&[]), b"x")),
        (
            V5,
            true,
            raw_publish(0x32, b"t", Some([0, 0]), Some(&[]), b"x"),
        ),
        (V5, true, vec![0xD0, 0x00]),
        (V5, true, vec![0xF0, 0x00]),
        (V5, true, vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F]),
        (V311, true, vec![0xF0, 0x00]),
        (V311, true, vec![0x20, 0x02, 0x00, 0x00]),
        (V311, true, raw_publish(0x30, b"a/#", None, None, b"x")),
        (V311, true, vec![0x62, 0x02, 0x00, 0x00]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_a_broken_client_does_not_disturb_another_clients_qos1_stream() {
    // The stream runs at least this long, and on until the vandals are done.
    const MIN: u32 = 200;
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sentinel-sub").await;
    sub.subscribe(1, "sentinel", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "sentinel-pub").await;
    let vandals_done = Arc::new(AtomicBool::new(false));

    let done = vandals_done.clone();
    let publisher = tokio::spawn(async move {
        let mut n: u32 = 0;
        while n < MIN || !done.load(Ordering::Acquire) {
            let mut p = Publish::new(s("sentinel"), Bytes::from(n.to_be_bytes().to_vec()));
            p.qos = QoS::AtLeastOnce;
            p.packet_id = Some(pid((n % 60_000 + 1) as u16));
            assert_eq!(
                publ.publish_packet(p).await,
                ReasonCode::Success,
                "message {n}"
            );
            n += 1;
        }
        // The end marker.
        publ.publish("sentinel", b"end", QoS::AtLeastOnce, false, 60_001)
            .await;
        (publ, n)
    });
    let subscriber = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let got = sub.recv_publish().await;
            assert!(!got.dup, "no redelivery without a reconnect");
            if &got.payload[..] == b"end" {
                return (sub, seen);
            }
            seen.push(u32::from_be_bytes(got.payload[..].try_into().unwrap()));
        }
    });
    let vandals = tokio::spawn(async move {
        for round in 0..4 {
            for (i, (version, connect, bytes)) in garbage().into_iter().enumerate() {
                let id = format!("vandal-{round}-{i}");
                if connect {
                    let mut client = Raw::connect(addr, version, &id).await;
                    client.send_bytes(&bytes).await;
                    client.expect_close().await;
                } else {
                    let mut stream = TcpStream::connect(addr).await.unwrap();
                    let _ = stream.write_all(&bytes).await;
                    drop(stream);
                }
                // Connected, half a packet, then gone.
                let mut client = Raw::connect(addr, version, &id).await;
                client.send_bytes(&[0x32, 0x0A, 0x00, 0x01]).await;
                drop(client);
            }
        }
        vandals_done.store(true, Ordering::Release);
    });

    let (vandals, published, received) = tokio::time::timeout(Duration::from_secs(60), async {
        let vandals = vandals.await;
        (vandals, publisher.await, subscriber.await)
    })
    .await
    .expect("sentinel stream finishes");
    vandals.expect("vandals ran");
    let (mut publ, sent) = published.expect("publisher ok");
    let (mut sub, seen) = received.expect("subscriber ok");
    assert_eq!(
        seen,
        (0..sent).collect::<Vec<_>>(),
        "every message, in order, once"
    );

    // Both sentinel connections are still alive.
    for client in [&mut publ, &mut sub] {
        client.send(Packet::PingReq).await;
        assert_eq!(client.recv().await, Packet::PingResp);
    }
    server.shutdown().await;
}
