//! QoS 0, 1 and 2 through the broker in both directions: the delivered QoS, the packet
//! identifiers the broker chooses, exactly-once delivery of QoS 2 (resends, unknown PUBREL,
//! a publisher reconnecting mid-flow), Receive Maximum in both directions, and ordering.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use mqtt_codec::{Ack, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];
const ALL_QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

fn publish_packet(topic: &str, payload: &[u8], qos: QoS, id: Option<u16>) -> Publish {
    let mut publish = Publish::new(s(topic), Bytes::copy_from_slice(payload));
    publish.qos = qos;
    publish.packet_id = id.map(pid);
    publish
}

async fn expect_ack(raw: &mut Raw, kind: &str, id: u16) -> Ack {
    let packet = raw.recv().await;
    let ack = match (&packet, kind) {
        (Packet::PubAck(a), "PUBACK")
        | (Packet::PubRec(a), "PUBREC")
        | (Packet::PubComp(a), "PUBCOMP")
        | (Packet::PubRel(a), "PUBREL") => a.clone(),
        _ => panic!("expected {kind} {id}, got {packet:?}"),
    };
    assert_eq!(ack.packet_id, pid(id), "{kind}");
    ack
}

fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

/// Every publish QoS against every subscription QoS: the copy arrives at the lower of the two,
/// with DUP 0, a packet identifier exactly when QoS > 0, and the flows complete both ways.
async fn delivered_qos_is_the_minimum(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    for sub_qos in ALL_QOS {
        let mut sub = Raw::connect(addr, version, &format!("sub-{}", sub_qos as u8)).await;
        assert_eq!(
            sub.subscribe(1, "q/t", sub_qos).await,
            vec![granted(sub_qos)]
        );
        for pub_qos in ALL_QOS {
            let payload = format!("{pub_qos:?} to {sub_qos:?}");
            let ack = publ
                .publish("q/t", payload.as_bytes(), pub_qos, false, 10)
                .await;
            assert_eq!(ack, ReasonCode::Success);
            let got = next_publish_unacked(&mut sub).await;
            assert_eq!(got.topic, "q/t");
            assert_eq!(&got.payload[..], payload.as_bytes());
            assert_eq!(got.qos, pub_qos.min(sub_qos), "{payload}");
            assert!(!got.dup, "a first delivery has DUP 0: {payload}");
            assert_eq!(
                got.packet_id.is_some(),
                got.qos != QoS::AtMostOnce,
                "{payload}"
            );
            // PUBACK, or PUBREC / PUBREL (same id) / PUBCOMP.
            sub.ack(&got).await;
        }
        assert_nothing_queued(&mut sub).await;
        sub.disconnect().await;
    }
    publ.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_8_4_8_delivered_qos_is_the_minimum_of_publish_and_subscription_qos() {
    delivered_qos_is_the_minimum(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_3_8_4_6_delivered_qos_is_the_minimum_of_publish_and_subscription_qos() {
    delivered_qos_is_the_minimum(ProtocolVersion::V3_1_1).await;
}

/// The broker numbers its QoS 1/2 PUBLISHes per session from 1, never 0, never reusing one
/// still in flight.
async fn server_packet_ids(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    for client in ["sub-a", "sub-b"] {
        let mut sub = Raw::connect(addr, version, client).await;
        sub.subscribe(1, "ids", QoS::ExactlyOnce).await;
        // Three QoS 1 and three QoS 2, none acknowledged: six identifiers in flight together.
        for (i, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce]
            .repeat(3)
            .iter()
            .enumerate()
        {
            publ.publish("ids", format!("{i}").as_bytes(), *qos, false, 1)
                .await;
        }
        let mut ids = Vec::new();
        let mut received = Vec::new();
        for _ in 0..6 {
            let p = next_publish_unacked(&mut sub).await;
            ids.push(p.packet_id.expect("QoS > 0 carries an id").get());
            received.push(p);
        }
        assert_eq!(
            ids[0], 1,
            "{client}: the first identifier of a session is 1"
        );
        assert!(ids.iter().all(|&id| id != 0));
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            6,
            "{client}: ids in flight are unique: {ids:?}"
        );
        for p in &received {
            sub.ack(p).await;
        }
        sub.disconnect().await;
    }
    publ.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_2_2_1_4_server_packet_ids_are_non_zero_unused_and_start_at_1_per_session() {
    server_packet_ids(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_2_3_1_4_server_packet_ids_are_non_zero_unused_and_start_at_1_per_session() {
    server_packet_ids(ProtocolVersion::V3_1_1).await;
}

/// A QoS 2 PUBLISH re-sent (DUP 1) before PUBREL is acknowledged with PUBREC again but not
/// delivered again; after PUBCOMP the same identifier starts a new message.
async fn qos2_resend_before_pubrel(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, version, "sub").await;
    sub.subscribe(1, "x", QoS::ExactlyOnce).await;
    let mut publ = Raw::connect(addr, version, "pub").await;

    let mut first = publish_packet("x", b"once", QoS::ExactlyOnce, Some(7));
    publ.send(first.clone().into()).await;
    let rec = expect_ack(&mut publ, "PUBREC", 7).await;
    assert_eq!(rec.reason_code, ReasonCode::Success);
    first.dup = true;
    for _ in 0..2 {
        publ.send(first.clone().into()).await;
        let rec = expect_ack(&mut publ, "PUBREC", 7).await;
        assert_eq!(rec.reason_code, ReasonCode::Success);
    }
    publ.send(Packet::PubRel(Ack::new(pid(7)))).await;
    let comp = expect_ack(&mut publ, "PUBCOMP", 7).await;
    assert_eq!(comp.reason_code, ReasonCode::Success);

    // After PUBCOMP, identifier 7 is free: this is a new message and is delivered.
    assert_eq!(
        publ.publish("x", b"again", QoS::ExactlyOnce, false, 7)
            .await,
        ReasonCode::Success
    );
    let got = recv_publishes_acked(&mut sub, 2).await;
    assert_eq!(&got[0].payload[..], b"once");
    assert_eq!(
        &got[1].payload[..],
        b"again",
        "the resends were not delivered"
    );
    assert_nothing_queued(&mut sub).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_10_qos2_resend_before_pubrel_is_acknowledged_with_pubrec_but_delivered_once() {
    qos2_resend_before_pubrel(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_4_3_3_2_qos2_resend_before_pubrel_is_acknowledged_with_pubrec_but_delivered_once(
) {
    qos2_resend_before_pubrel(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn mqtt_4_3_3_11_pubrel_for_an_unknown_id_is_answered_with_pubcomp_0x92() {
    let (server, addr) = start().await;
    let mut client = Raw::connect(addr, ProtocolVersion::V5, "c").await;
    client.send(Packet::PubRel(Ack::new(pid(42)))).await;
    let comp = expect_ack(&mut client, "PUBCOMP", 42).await;
    assert_eq!(comp.reason_code, ReasonCode::PacketIdentifierNotFound);
    // Not a protocol error: the connection goes on.
    assert_nothing_queued(&mut client).await;
    client.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_4_3_3_2_pubrel_for_an_unknown_id_is_answered_with_pubcomp() {
    let (server, addr) = start().await;
    let mut client = Raw::connect(addr, ProtocolVersion::V3_1_1, "c").await;
    client.send(Packet::PubRel(Ack::new(pid(42)))).await;
    expect_ack(&mut client, "PUBCOMP", 42).await;
    assert_nothing_queued(&mut client).await;
    client.disconnect().await;
    server.shutdown().await;
}

/// The publisher sends QoS 2, gets PUBREC, loses its connection, comes back to its session and
/// re-sends the PUBLISH (DUP 1) and then PUBREL: the subscriber gets the message once.
async fn qos2_once_across_reconnect(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, version, "sub").await;
    sub.subscribe(1, "r", QoS::ExactlyOnce).await;

    let persistent = |c: &mut mqtt_codec::Connect| {
        c.clean_start = false;
        if c.protocol.is_v5() {
            c.properties.session_expiry_interval = Some(60);
        }
    };
    let (mut publ, _) = Raw::connect_with(addr, version, "pub", persistent).await;
    let mut publish = publish_packet("r", b"exactly once", QoS::ExactlyOnce, Some(3));
    publ.send(publish.clone().into()).await;
    expect_ack(&mut publ, "PUBREC", 3).await;
    // The connection drops without DISCONNECT.
    drop(publ);

    let (mut publ, connack) = Raw::connect_with(addr, version, "pub", persistent).await;
    assert!(connack.session_present, "the publisher's session was kept");
    publish.dup = true;
    publ.send(publish.into()).await;
    let rec = expect_ack(&mut publ, "PUBREC", 3).await;
    assert_eq!(rec.reason_code, ReasonCode::Success);
    publ.send(Packet::PubRel(Ack::new(pid(3)))).await;
    let comp = expect_ack(&mut publ, "PUBCOMP", 3).await;
    assert_eq!(
        comp.reason_code,
        ReasonCode::Success,
        "the session remembered the identifier awaiting PUBREL"
    );

    // A marker published after everything else: whatever came before it was all there was.
    publ.publish("r", b"marker", QoS::AtLeastOnce, false, 4)
        .await;
    let got = recv_publishes_acked(&mut sub, 2).await;
    assert_eq!(&got[0].payload[..], b"exactly once");
    assert_eq!(&got[1].payload[..], b"marker");
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_3_3_10_qos2_is_delivered_once_across_a_publisher_reconnect() {
    qos2_once_across_reconnect(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_4_3_3_2_qos2_is_delivered_once_across_a_publisher_reconnect() {
    qos2_once_across_reconnect(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn mqtt_3_3_4_9_server_sends_no_more_than_the_client_receive_maximum() {
    let (server, addr) = start().await;
    let (mut sub, _) = Raw::connect_with(addr, ProtocolVersion::V5, "sub", |c| {
        c.properties.receive_maximum = Some(2);
    })
    .await;
    sub.subscribe(1, "rm", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    for i in 0..5u16 {
        publ.publish("rm", &[b'0' + i as u8], QoS::AtLeastOnce, false, 1 + i)
            .await;
    }
    let first = next_publish_unacked(&mut sub).await;
    let second = next_publish_unacked(&mut sub).await;
    assert_eq!(&first.payload[..], b"0");
    assert_eq!(&second.payload[..], b"1");
    // Two unacknowledged: nothing more, but other packets still flow [MQTT-3.3.4-10].
    assert_nothing_queued(&mut sub).await;

    sub.ack(&first).await;
    let third = next_publish_unacked(&mut sub).await;
    assert_eq!(&third.payload[..], b"2");
    assert_nothing_queued(&mut sub).await;

    sub.ack(&second).await;
    sub.ack(&third).await;
    let fourth = next_publish_unacked(&mut sub).await;
    let fifth = next_publish_unacked(&mut sub).await;
    assert_eq!(&fourth.payload[..], b"3");
    assert_eq!(&fifth.payload[..], b"4");
    sub.ack(&fourth).await;
    sub.ack(&fifth).await;
    assert_nothing_queued(&mut sub).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_9_0_2_a_qos2_delivery_holds_its_receive_maximum_slot_until_pubcomp() {
    let (server, addr) = start().await;
    let (mut sub, _) = Raw::connect_with(addr, ProtocolVersion::V5, "sub", |c| {
        c.properties.receive_maximum = Some(1);
    })
    .await;
    sub.subscribe(1, "rm2", QoS::ExactlyOnce).await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    for i in 0..2u16 {
        publ.publish("rm2", &[b'a' + i as u8], QoS::ExactlyOnce, false, 1 + i)
            .await;
    }
    let first = next_publish_unacked(&mut sub).await;
    let id = first.packet_id.unwrap();
    sub.send(Packet::PubRec(Ack::new(id))).await;
    expect_ack(&mut sub, "PUBREL", id.get()).await;
    // PUBREC does not free the slot; PUBCOMP does.
    assert_nothing_queued(&mut sub).await;
    sub.send(Packet::PubComp(Ack::new(id))).await;
    let second = next_publish_unacked(&mut sub).await;
    assert_eq!(&second.payload[..], b"b");
    sub.ack(&second).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_4_7_client_exceeding_server_receive_maximum_gets_disconnect_0x93() {
    let (server, addr) = start_with(|c| c.limits.receive_maximum = 2).await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "sub").await;
    sub.subscribe(1, "flood", QoS::ExactlyOnce).await;
    let (mut publ, connack) = Raw::connect_with(addr, ProtocolVersion::V5, "pub", |_| {}).await;
    assert_eq!(connack.properties.receive_maximum, Some(2));
    let send = |id: u16, dup: bool| {
        let mut p = publish_packet("flood", &[b'0' + id as u8], QoS::ExactlyOnce, Some(id));
        p.dup = dup;
        Packet::from(p)
    };
    for id in 1..=2 {
        publ.send(send(id, false)).await;
        expect_ack(&mut publ, "PUBREC", id).await;
    }
    // At the limit, a resend of a message awaiting PUBREL is not a new message: no error.
    publ.send(send(2, true)).await;
    expect_ack(&mut publ, "PUBREC", 2).await;
    // PUBREL frees a place for one more.
    publ.send(Packet::PubRel(Ack::new(pid(1)))).await;
    expect_ack(&mut publ, "PUBCOMP", 1).await;
    publ.send(send(3, false)).await;
    expect_ack(&mut publ, "PUBREC", 3).await;
    // A new QoS 2 PUBLISH while two (2 and 3) await PUBREL exceeds the Receive Maximum.
    publ.send(send(4, false)).await;
    publ.expect_disconnect(ReasonCode::ReceiveMaximumExceeded)
        .await;

    // The first three were accepted, once each; the fourth was not.
    let mut other = Raw::connect(addr, ProtocolVersion::V5, "other").await;
    other
        .publish("flood", b"marker", QoS::AtLeastOnce, false, 1)
        .await;
    let got: Vec<_> = recv_publishes_acked(&mut sub, 4)
        .await
        .into_iter()
        .map(|p| p.payload)
        .collect();
    assert_eq!(got, vec![&b"1"[..], &b"2"[..], &b"3"[..], &b"marker"[..]]);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_6_0_6_order_of_a_burst_of_200_qos1_messages_from_one_publisher_is_kept() {
    const N: u16 = 200;
    let (server, addr) = start().await;
    for version in VERSIONS {
        let mut sub = Raw::connect(addr, version, "sub").await;
        sub.subscribe(1, "order/+", QoS::AtLeastOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        // All 200 in one write, without waiting for any PUBACK.
        let mut burst = BytesMut::new();
        for i in 0..N {
            let p = publish_packet(
                "order/t",
                i.to_string().as_bytes(),
                QoS::AtLeastOnce,
                Some(i + 1),
            );
            Packet::from(p).encode(version, &mut burst).unwrap();
        }
        publ.send_bytes(&burst).await;
        let mut acked = Vec::new();
        for _ in 0..N {
            match publ.recv().await {
                Packet::PubAck(a) => acked.push(a.packet_id.get()),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        acked.sort();
        assert_eq!(acked, (1..=N).collect::<Vec<_>>());
        for i in 0..N {
            let p = sub.recv_publish().await;
            assert_eq!(p.topic, "order/t");
            assert_eq!(
                p.payload,
                i.to_string(),
                "{version:?}: message {i} out of order"
            );
        }
        sub.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}
