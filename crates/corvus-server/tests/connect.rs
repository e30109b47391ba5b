//! CONNECT and CONNACK through a real listener, for MQTT 3.1.1 and 5.0: protocol level, the
//! first packet, the connect timeout, client identifiers, a second CONNECT, CONNACK
//! properties, authentication methods, keep alive, Server Keep Alive and graceful shutdown.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use mqtt_codec::{
    ConnAck, Connect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions,
};
use tokio::io::AsyncReadExt;

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// Opens a connection, sends `connect` and returns the broker's first reply, `None` if it
/// closed the connection without one. Asserts nothing about the reply.
async fn connect_reply(addr: std::net::SocketAddr, connect: Connect) -> (Raw, Option<Packet>) {
    let mut raw = Raw::open(addr, connect.protocol).await;
    raw.send(connect.into()).await;
    let reply = raw.try_recv(WAIT).await.expect("a reply or a close");
    (raw, reply)
}

fn connack(reply: Option<Packet>) -> ConnAck {
    match reply {
        Some(Packet::ConnAck(ack)) => *ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Reads raw bytes until the broker closes the connection.
async fn read_to_close(raw: &mut Raw) -> Vec<u8> {
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, raw.stream.read_to_end(&mut bytes))
        .await
        .expect("connection closed in time")
        .expect("read until close");
    bytes
}

fn encoded(packet: Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).unwrap();
    out
}

// ---- protocol name and level ----

#[tokio::test]
async fn v311_mqtt_3_1_2_2_unsupported_protocol_level_gets_connack_0x01_then_close() {
    let (server, addr) = start().await;
    // CONNECT "MQTT" level 6, clean session, keep alive 60, client id "a".
    let connect = [
        0x10, 13, 0x00, 0x04, b'M', b'Q', b'T', b'T', 6, 0x02, 0x00, 0x3C, 0x00, 0x01, b'a',
    ];
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1_1).await;
    raw.send_bytes(&connect).await;
    // The 3.1.1 form of CONNACK, the one such a client most likely reads: no properties,
    // Session Present 0, return code 0x01 (unacceptable protocol version).
    assert_eq!(read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x01]);
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_1_unknown_protocol_name_is_not_processed() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "watcher").await;
    sub.subscribe(1, "#", QoS::AtMostOnce).await;
    // "MQTX" level 4: the broker must not process it as MQTT (no session, no CONNACK 0x00).
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1_1).await;
    raw.send_bytes(&[
        0x10, 13, 0x00, 0x04, b'M', b'Q', b'T', b'X', 4, 0x02, 0x00, 0x3C, 0x00, 0x01, b'a',
    ])
    .await;
    let reply = read_to_close(&mut raw).await;
    assert!(
        reply.is_empty() || reply[0] == 0x20 && reply.get(3).is_some_and(|&rc| rc != 0),
        "only a refusal may come back, got {reply:?}"
    );
    assert!(server.broker().session("a").is_none());
    sub.expect_nothing().await;
    server.shutdown().await;
}

// ---- the first packet ----

#[tokio::test]
async fn mqtt_3_1_0_1_first_packet_other_than_connect_closes_the_connection() {
    let (server, addr) = start().await;
    for version in BOTH {
        let mut raw = Raw::open(addr, version).await;
        raw.send(Packet::PingReq).await;
        let seen = raw.expect_close().await;
        assert!(
            seen.is_empty(),
            "{version:?}: no reply expected, got {seen:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_0_1_publish_before_connect_is_not_routed() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "sub").await;
    sub.subscribe(1, "t", QoS::AtLeastOnce).await;
    for version in BOTH {
        let mut raw = Raw::open(addr, version).await;
        let mut publish = Publish::new(s("t"), Bytes::from_static(b"sneaky"));
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = Some(pid(1));
        raw.send(publish.into()).await;
        let seen = raw.expect_close().await;
        assert!(
            seen.is_empty(),
            "{version:?}: no reply expected, got {seen:?}"
        );
    }
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_4_5_data_after_a_refused_connect_is_not_processed() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "sub").await;
    sub.subscribe(1, "t", QoS::AtMostOnce).await;
    // A 3.1.1 CONNECT that must be refused (empty id, clean session 0) followed, in the same
    // write, by a PUBLISH.
    let mut connect = Connect::new(ProtocolVersion::V3_1_1, s(""));
    connect.clean_start = false;
    let mut bytes = encoded(connect.into(), ProtocolVersion::V3_1_1);
    let publish = Publish::new(s("t"), Bytes::from_static(b"after refusal"));
    bytes.extend_from_slice(&encoded(publish.into(), ProtocolVersion::V3_1_1));
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1_1).await;
    raw.send_bytes(&bytes).await;
    let seen = raw.expect_close().await;
    match seen.as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid)
        }
        other => panic!("expected one refusing CONNACK, got {other:?}"),
    }
    sub.expect_nothing().await;
    server.shutdown().await;
}

// ---- connect timeout ----

#[tokio::test]
async fn silent_connection_is_closed_after_the_connect_timeout() {
    let (server, addr) = start_with(|c| c.limits.connect_timeout = 1).await;
    for version in BOTH {
        let mut raw = Raw::open(addr, version).await;
        let seen = raw.expect_close().await;
        assert!(seen.is_empty(), "{version:?}: {seen:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn partial_connect_is_closed_after_the_connect_timeout() {
    let (server, addr) = start_with(|c| c.limits.connect_timeout = 1).await;
    let connect = encoded(
        Connect::new(ProtocolVersion::V5, s("slow")).into(),
        ProtocolVersion::V5,
    );
    let mut raw = Raw::open(addr, ProtocolVersion::V5).await;
    // Only the first half of the CONNECT ever arrives.
    raw.send_bytes(&connect[..connect.len() / 2]).await;
    let seen = raw.expect_close().await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(server.broker().session("slow").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_does_not_apply_once_connected() {
    let (server, addr) = start_with(|c| c.limits.connect_timeout = 1).await;
    let (mut raw, _) =
        Raw::connect_with(addr, ProtocolVersion::V5, "c", |c| c.keep_alive = 0).await;
    // Well past the connect timeout, the connection still works.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Packet::PingResp);
    raw.disconnect().await;
    server.shutdown().await;
}

// ---- size before CONNECT ----

/// Before CONNECT the broker takes only a small packet (`max_connect_size`, 64 KiB by
/// default): a first packet declaring more is refused at once, without waiting for its body
/// or the connect timeout, whatever kind it claims to be. A CONNECT within the limit is
/// accepted, and once connected the client may send packets up to `max_packet_size`.
#[tokio::test]
async fn a_first_packet_larger_than_max_connect_size_is_refused_at_once() {
    // A long connect timeout: a close within WAIT can only be the size limit.
    let (server, addr) = start_with(|c| c.limits.connect_timeout = 60).await;
    // 0xFF 0xFF 0xFF 0x7F: a remaining length of 256 MB - 1; and one just past 64 KiB.
    let huge = [0xFF, 0xFF, 0xFF, 0x7F];
    let past_64k = [0x81, 0x80, 0x04]; // 65537
    for first in [0x10u8, 0x30, 0x82] {
        for length in [&huge[..], &past_64k[..]] {
            let mut raw = Raw::open(addr, ProtocolVersion::V5).await;
            let mut bytes = vec![first];
            bytes.extend_from_slice(length);
            raw.send_bytes(&bytes).await;
            let seen = read_to_close(&mut raw).await;
            assert!(seen.is_empty(), "{first:#x} {length:?}: {seen:?}");
        }
    }
    // A CONNECT of 80 KiB (a 60 KiB will and a 20 KiB password, each near what its 16-bit
    // length allows) is over the default limit...
    let big_will = |c: &mut Connect| {
        c.will = Some(mqtt_codec::Will {
            topic: s("wills/big"),
            payload: Bytes::from(vec![7u8; 60 * 1024]),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        c.password = Some(Bytes::from(vec![b'p'; 20 * 1024]));
    };
    let mut connect = Connect::new(ProtocolVersion::V5, s("big-will"));
    big_will(&mut connect);
    let (_raw, reply) = connect_reply(addr, connect).await;
    assert!(reply.is_none(), "{reply:?}");
    assert!(server.broker().session("big-will").is_none());
    server.shutdown().await;

    // ...and accepted where the limit is raised; connected, a 200 KiB PUBLISH is fine.
    let (server, addr) = start_with(|c| c.limits.max_connect_size = 128 * 1024).await;
    let (mut raw, _) = Raw::connect_with(addr, ProtocolVersion::V5, "big-will", big_will).await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "sub").await;
    sub.subscribe(1, "big", QoS::AtLeastOnce).await;
    let payload = vec![1u8; 200 * 1024];
    raw.publish("big", &payload, QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(sub.recv_publish().await.payload.len(), payload.len());
    server.shutdown().await;
}

// ---- client identifiers ----

#[tokio::test]
async fn v311_mqtt_3_1_3_8_empty_client_id_with_clean_session_0_gets_connack_0x02_then_close() {
    let (server, addr) = start().await;
    let mut connect = Connect::new(ProtocolVersion::V3_1_1, s(""));
    connect.clean_start = false;
    let (mut raw, reply) = connect_reply(addr, connect).await;
    let ack = connack(reply);
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(!ack.session_present);
    assert!(raw.expect_close().await.is_empty());
    assert_eq!(server.broker().session_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_3_1_3_8_empty_client_id_refusal_is_return_code_0x02_on_the_wire() {
    let (server, addr) = start().await;
    let mut connect = Connect::new(ProtocolVersion::V3_1_1, s(""));
    connect.clean_start = false;
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1_1).await;
    raw.send(connect.into()).await;
    assert_eq!(read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x02]);
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_3_1_3_6_empty_client_id_with_clean_session_1_is_accepted() {
    let (server, addr) = start().await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (raw, ack) = Raw::connect_with(addr, ProtocolVersion::V3_1_1, "", |_| {}).await;
        assert!(!ack.session_present);
        clients.push(raw);
    }
    // Each got its own session: both are served.
    assert_eq!(server.broker().session_count(), 2);
    for (i, raw) in clients.iter_mut().enumerate() {
        raw.subscribe(1, &format!("anon/{i}"), QoS::AtLeastOnce)
            .await;
    }
    let mut publ = Raw::connect(addr, ProtocolVersion::V3_1_1, "pub").await;
    for i in 0..2 {
        publ.publish(&format!("anon/{i}"), b"hi", QoS::AtLeastOnce, false, 1)
            .await;
    }
    for (i, raw) in clients.iter_mut().enumerate() {
        assert_eq!(raw.recv_publish().await.topic, format!("anon/{i}").as_str());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_16_empty_client_id_gets_a_unique_assigned_client_identifier() {
    let (server, addr) = start().await;
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for clean_start in [true, false, true] {
        let (raw, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "", |c| {
            c.clean_start = clean_start
        })
        .await;
        assert!(!ack.session_present);
        let id = ack
            .properties
            .assigned_client_identifier
            .expect("Assigned Client Identifier in CONNACK");
        assert!(!id.is_empty());
        assert!(!ids.contains(&id), "{id:?} assigned twice");
        ids.push(id);
        clients.push(raw);
    }
    for id in &ids {
        assert!(
            server.broker().session(id).is_some(),
            "no session for {id:?}"
        );
    }
    // The assigned identifier names the session: connecting with it takes the session over.
    let mut first = clients.remove(0);
    let _taker = Raw::connect(addr, ProtocolVersion::V5, &ids[0]).await;
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_16_chosen_client_id_gets_no_assigned_client_identifier() {
    let (server, addr) = start().await;
    let (raw, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "mine", |_| {}).await;
    assert_eq!(ack.properties.assigned_client_identifier, None);
    raw.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_8_client_id_longer_than_the_limit_gets_connack_0x85() {
    let (server, addr) = start_with(|c| c.limits.max_client_id_len = 8).await;
    let (mut raw, reply) =
        connect_reply(addr, Connect::new(ProtocolVersion::V5, s("123456789"))).await;
    let ack = connack(reply);
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(raw.expect_close().await.is_empty());
    // The limit is inclusive.
    let raw = Raw::connect(addr, ProtocolVersion::V5, "12345678").await;
    raw.disconnect().await;
    server.shutdown().await;
}

// ---- a second CONNECT ----

#[tokio::test]
async fn mqtt_3_1_0_2_second_connect_gets_disconnect_0x82() {
    let (server, addr) = start().await;
    let mut raw = Raw::connect(addr, ProtocolVersion::V5, "twice").await;
    raw.send(Connect::new(ProtocolVersion::V5, s("twice")).into())
        .await;
    raw.expect_disconnect(ReasonCode::ProtocolError).await;
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_3_1_0_2_second_connect_closes_the_connection() {
    let (server, addr) = start().await;
    let mut raw = Raw::connect(addr, ProtocolVersion::V3_1_1, "twice").await;
    raw.send(Connect::new(ProtocolVersion::V3_1_1, s("twice")).into())
        .await;
    let seen = raw.expect_close().await;
    assert!(
        seen.is_empty(),
        "3.1.1 has no DISCONNECT from the server: {seen:?}"
    );
    server.shutdown().await;
}

// ---- CONNACK properties ----

#[tokio::test]
async fn connack_advertises_configured_receive_maximum_packet_size_and_topic_alias_maximum() {
    let (server, addr) = start_with(|c| {
        c.limits.receive_maximum = 7;
        c.limits.max_packet_size = 4096;
        c.limits.topic_alias_maximum = 3;
    })
    .await;
    let (raw, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "props", |_| {}).await;
    assert_eq!(ack.properties.receive_maximum, Some(7));
    assert_eq!(ack.properties.maximum_packet_size, Some(4096));
    assert_eq!(ack.properties.topic_alias_maximum, Some(3));
    // No Server Keep Alive unless a maximum is configured [MQTT-3.2.2-22].
    assert_eq!(ack.properties.server_keep_alive, None);
    raw.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn v311_connack_is_two_bytes_with_return_code_0() {
    let (server, addr) = start().await;
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1_1).await;
    raw.send(Connect::new(ProtocolVersion::V3_1_1, s("plain")).into())
        .await;
    raw.send(mqtt_codec::Disconnect::default().into()).await;
    assert_eq!(read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x00]);
    server.shutdown().await;
}

// ---- authentication ----

#[tokio::test]
async fn mqtt_4_12_0_1_unknown_authentication_method_gets_connack_0x8c_then_close() {
    let (server, addr) = start().await;
    let mut connect = Connect::new(ProtocolVersion::V5, s("auth"));
    connect.properties.authentication_method = Some(s("SCRAM-SHA-1"));
    connect.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    let (mut raw, reply) = connect_reply(addr, connect).await;
    let ack = connack(reply);
    assert_eq!(ack.reason_code, ReasonCode::BadAuthenticationMethod);
    assert!(!ack.session_present);
    assert!(raw.expect_close().await.is_empty());
    assert!(server.broker().session("auth").is_none());
    server.shutdown().await;
}

// ---- keep alive ----

#[tokio::test]
async fn mqtt_3_1_2_22_keep_alive_timeout_gets_disconnect_0x8d() {
    let (server, addr) = start().await;
    let (mut raw, _) =
        Raw::connect_with(addr, ProtocolVersion::V5, "idle", |c| c.keep_alive = 1).await;
    raw.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_3_1_2_24_keep_alive_timeout_closes_the_connection() {
    let (server, addr) = start().await;
    let (mut raw, _) =
        Raw::connect_with(addr, ProtocolVersion::V3_1_1, "idle", |c| c.keep_alive = 1).await;
    let seen = raw.expect_close().await;
    assert!(seen.is_empty(), "{seen:?}");
    server.shutdown().await;
}

/// Publishes 32 KiB QoS 0 messages to `topic` as fast as it can, for far longer than a
/// keep alive of 1 s: a subscriber's connection always has more to send than one round
/// writes (256 KiB).
fn flood(addr: std::net::SocketAddr, topic: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut publisher, _) =
            Raw::connect_with(addr, ProtocolVersion::V5, "flood", |c| c.keep_alive = 0).await;
        let payload = vec![b'x'; 32 * 1024];
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::time::Instant::now() < until {
            publisher
                .publish(topic, &payload, QoS::AtMostOnce, false, 0)
                .await;
        }
    })
}

/// The keep alive counts what the client sends, not what it receives: a client that sends
/// nothing while a flood of deliveries keeps its connection writing is still timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_22_keep_alive_times_out_a_client_kept_busy_by_deliveries() {
    let (server, addr) = start().await;
    let (mut quiet, _) =
        Raw::connect_with(addr, ProtocolVersion::V5, "quiet", |c| c.keep_alive = 1).await;
    assert_eq!(
        quiet.subscribe(1, "busy/stream", QoS::AtMostOnce).await,
        [ReasonCode::Success]
    );
    let publisher = flood(addr, "busy/stream");
    let mut delivered = 0;
    let disconnect = loop {
        match quiet.try_recv(Duration::from_secs(10)).await {
            Ok(Some(Packet::Publish(_))) => delivered += 1,
            Ok(Some(Packet::Disconnect(d))) => break d,
            other => panic!("expected deliveries then DISCONNECT 0x8D, got {other:?}"),
        }
    };
    assert_eq!(disconnect.reason_code, ReasonCode::KeepAliveTimeout);
    // It was timed out while messages were flowing to it.
    assert!(delivered > 10, "{delivered} deliveries before the timeout");
    assert!(!publisher.is_finished(), "the stream was still flowing");
    publisher.abort();
    server.shutdown().await;
}

/// A client that stops reading (the broker's writes to it block) and sends nothing is timed
/// out all the same, and its connection closed: it does not hold on for as long as the
/// stream lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_22_keep_alive_times_out_a_client_that_stopped_reading() {
    let (server, addr) = start().await;
    let (mut deaf, _) =
        Raw::connect_with(addr, ProtocolVersion::V5, "deaf", |c| c.keep_alive = 1).await;
    assert_eq!(
        deaf.subscribe(1, "deaf/stream", QoS::AtMostOnce).await,
        [ReasonCode::Success]
    );
    let publisher = flood(addr, "deaf/stream");
    // Never read: the socket's buffers fill and the broker's writes block. The session (a
    // clean one) is gone once the connection is closed: 1.5 s of keep alive, a 1 s grace
    // for the last write.
    let gone_by = tokio::time::Instant::now() + Duration::from_secs(8);
    while server.broker().session("deaf").is_some() {
        assert!(
            tokio::time::Instant::now() < gone_by,
            "a client that stopped reading outlived its keep alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!publisher.is_finished(), "the stream was still flowing");
    publisher.abort();
    drop(deaf);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_22_keep_alive_allows_one_and_a_half_periods() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut raw, _) = Raw::connect_with(addr, version, "patient", |c| c.keep_alive = 2).await;
        // Past one keep alive period, well before one and a half.
        match raw.try_recv(Duration::from_millis(2200)).await {
            Err("timed out") => {}
            other => panic!("{version:?}: closed before 1.5 x keep alive: {other:?}"),
        }
        raw.send(Packet::PingReq).await;
        assert_eq!(raw.recv().await, Packet::PingResp, "{version:?}");
        raw.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_12_4_1_pingreq_gets_pingresp_and_keeps_the_connection_alive() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut raw, _) = Raw::connect_with(addr, version, "pinger", |c| c.keep_alive = 1).await;
        // 2.5 s in all, longer than 1.5 x keep alive, with a PINGREQ every 0.5 s.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            raw.send(Packet::PingReq).await;
            assert_eq!(raw.recv().await, Packet::PingResp, "{version:?}");
        }
        raw.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_is_reset_by_any_packet_not_only_pingreq() {
    let (server, addr) = start().await;
    let (mut raw, _) =
        Raw::connect_with(addr, ProtocolVersion::V5, "busy", |c| c.keep_alive = 1).await;
    for i in 0..5u16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let code = raw
            .publish("busy/t", b"x", QoS::AtLeastOnce, false, i + 1)
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    // And once it stops, it is timed out.
    raw.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_0_disables_the_timeout() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut raw, _) = Raw::connect_with(addr, version, "forever", |c| c.keep_alive = 0).await;
        match raw.try_recv(Duration::from_millis(1600)).await {
            Err("timed out") => {}
            other => panic!("{version:?}: {other:?}"),
        }
        raw.send(Packet::PingReq).await;
        assert_eq!(raw.recv().await, Packet::PingResp);
        raw.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_21_server_keep_alive_replaces_a_longer_request_and_is_enforced() {
    let (server, addr) = start_with(|c| c.limits.max_keep_alive = 1).await;
    let (mut raw, ack) =
        Raw::connect_with(addr, ProtocolVersion::V5, "long", |c| c.keep_alive = 600).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    // Enforced at the granted value, not the requested 600 s.
    raw.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_21_server_keep_alive_replaces_keep_alive_0() {
    let (server, addr) = start_with(|c| c.limits.max_keep_alive = 1).await;
    let (mut raw, ack) =
        Raw::connect_with(addr, ProtocolVersion::V5, "none", |c| c.keep_alive = 0).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    raw.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_21_server_keep_alive_keeps_a_shorter_request() {
    let (server, addr) = start_with(|c| c.limits.max_keep_alive = 30).await;
    let (raw, ack) =
        Raw::connect_with(addr, ProtocolVersion::V5, "short", |c| c.keep_alive = 10).await;
    // Within the limit: the client's own value, restated.
    assert!(matches!(ack.properties.server_keep_alive, None | Some(10)));
    raw.disconnect().await;
    server.shutdown().await;
}

// ---- graceful shutdown ----

#[tokio::test]
async fn shutdown_sends_v5_clients_disconnect_0x8b_and_closes_v311_clients() {
    let (server, addr) = start().await;
    let mut v5 = Raw::connect(addr, ProtocolVersion::V5, "five").await;
    let mut v311 = Raw::connect(addr, ProtocolVersion::V3_1_1, "three").await;
    // Both are fully served before the shutdown starts.
    v5.send(Packet::PingReq).await;
    assert_eq!(v5.recv().await, Packet::PingResp);
    v311.send(Packet::PingReq).await;
    assert_eq!(v311.recv().await, Packet::PingResp);
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown completes");
    v5.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    let seen = v311.expect_close().await;
    assert!(
        seen.is_empty(),
        "3.1.1 has no DISCONNECT from the server: {seen:?}"
    );
}

/// A server dropped without `shutdown` (an embedding application unwinding) still tells its
/// clients and closes their connections: serving connections are not left running on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_still_disconnects_its_clients() {
    let (server, addr) = start().await;
    let mut v5 = Raw::connect(addr, ProtocolVersion::V5, "five").await;
    v5.send(Packet::PingReq).await;
    assert_eq!(v5.recv().await, Packet::PingResp);
    drop(server);
    v5.expect_disconnect(ReasonCode::ServerShuttingDown).await;
}

#[tokio::test]
async fn mqtt_3_2_0_1_connack_comes_before_queued_messages_of_a_resumed_session() {
    // CONNACK is the first packet the broker sends [MQTT-3.2.0-1], even when retained
    // messages are waiting for a resumed session's subscriptions.
    let (server, addr) = start().await;
    let (mut sub, _) = Raw::connect_with(addr, ProtocolVersion::V5, "first", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    sub.subscribe_with(
        1,
        "first/t",
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        },
        None,
    )
    .await;
    sub.disconnect().await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("first/t", b"queued", QoS::AtLeastOnce, false, 1)
        .await;
    let mut raw = Raw::open(addr, ProtocolVersion::V5).await;
    let mut connect = Connect::new(ProtocolVersion::V5, s("first"));
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    raw.send(connect.into()).await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(ack) if ack.session_present));
    assert_eq!(&raw.recv_publish().await.payload[..], b"queued");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_that_have_not_sent_connect() {
    // The default connect timeout (10 s) must not hold up a shutdown.
    let (server, addr) = start().await;
    let mut silent = Raw::open(addr, ProtocolVersion::V5).await;
    let mut client = Raw::connect(addr, ProtocolVersion::V5, "c").await;
    // The broker has accepted the silent connection: it is served after this CONNECT is.
    client.send(Packet::PingReq).await;
    assert_eq!(client.recv().await, Packet::PingResp);
    let shutdown = tokio::spawn(server.shutdown());
    assert!(silent.expect_close().await.is_empty());
    client
        .expect_disconnect(ReasonCode::ServerShuttingDown)
        .await;
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown completes")
        .unwrap();
}
