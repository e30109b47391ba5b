//! Sessions through a real listener, for MQTT 3.1.1 and 5.0: takeover by a second connection,
//! Session Present, clean session / clean start, messages queued while offline, Session
//! Expiry Interval (from CONNECT and DISCONNECT), and the re-sending of messages in flight.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use mqtt_codec::{
    Ack, ConnAck, Disconnect, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode,
};

/// Connects with Clean Start / Clean Session 0 and, for v5, the given session expiry.
async fn persistent(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    expiry: u32,
) -> (Raw, ConnAck) {
    Raw::connect_with(addr, version, client_id, |c| {
        c.clean_start = false;
        if version.is_v5() {
            c.properties.session_expiry_interval = Some(expiry);
        }
    })
    .await
}

async fn clean(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> (Raw, ConnAck) {
    Raw::connect_with(addr, version, client_id, |c| c.clean_start = true).await
}

/// Closes the TCP connection without DISCONNECT and waits until the broker has let go of the
/// session (so that what follows happens while the client is offline).
async fn drop_connection(server: &corvus_server::Server, raw: Raw, client_id: &str) {
    drop(raw);
    wait_offline(server, client_id).await;
}

async fn wait_offline(server: &corvus_server::Server, client_id: &str) {
    let offline = async {
        loop {
            match server.broker().session(client_id) {
                Some(handle) if handle.is_online() => {}
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, offline)
        .await
        .expect("the broker noticed the close");
}

async fn disconnect(server: &corvus_server::Server, raw: Raw, client_id: &str) {
    raw.disconnect().await;
    wait_offline(server, client_id).await;
}

async fn recv_publish_raw(raw: &mut Raw) -> Publish {
    match raw.recv().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Receives `n` PUBLISH and completes every QoS flow, whatever order the broker interleaves
/// the next PUBLISH and a PUBREL in. Returns the PUBLISH in arrival order.
async fn receive_all(raw: &mut Raw, n: usize) -> Vec<Publish> {
    let mut got = Vec::new();
    let mut awaiting_pubrel = 0;
    while got.len() < n || awaiting_pubrel > 0 {
        match raw.recv().await {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => raw.send(Packet::PubAck(Ack::new(id))).await,
                    (QoS::ExactlyOnce, Some(id)) => {
                        awaiting_pubrel += 1;
                        raw.send(Packet::PubRec(Ack::new(id))).await
                    }
                    _ => {}
                }
                got.push(p);
            }
            Packet::PubRel(rel) => {
                awaiting_pubrel -= 1;
                raw.send(Packet::PubComp(Ack::new(rel.packet_id))).await;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
    got
}

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

// ---- takeover ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_4_3_takeover_disconnects_old_client_with_0x8e() {
    let (server, addr) = start().await;
    let (mut old, _) = persistent(addr, ProtocolVersion::V5, "dup", 60).await;
    old.subscribe(1, "dup/t", QoS::AtLeastOnce).await;
    let (mut new, ack) = persistent(addr, ProtocolVersion::V5, "dup", 60).await;
    old.expect_disconnect(ReasonCode::SessionTakenOver).await;
    // The new connection continues the session: Session Present, and its subscriptions.
    assert!(ack.session_present);
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("dup/t", b"to the new one", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&new.recv_publish().await.payload[..], b"to the new one");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_mqtt_3_1_4_2_takeover_closes_old_client() {
    let (server, addr) = start().await;
    let (mut old, _) = persistent(addr, ProtocolVersion::V3_1_1, "dup", 0).await;
    old.subscribe(1, "dup/t", QoS::AtLeastOnce).await;
    let (mut new, ack) = persistent(addr, ProtocolVersion::V3_1_1, "dup", 0).await;
    let seen = old.expect_close().await;
    assert!(
        seen.is_empty(),
        "3.1.1 has no DISCONNECT from the server: {seen:?}"
    );
    assert!(ack.session_present, "MQTT-3.2.2-2");
    let mut publ = Raw::connect(addr, ProtocolVersion::V3_1_1, "pub").await;
    publ.publish("dup/t", b"to the new one", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&new.recv_publish().await.payload[..], b"to the new one");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_4_4_takeover_with_clean_start_gets_a_new_session() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut old, _) = persistent(addr, version, "dup", 60).await;
        old.subscribe(1, "dup/t", QoS::AtLeastOnce).await;
        let (mut new, ack) = clean(addr, version, "dup").await;
        let seen = old.expect_close().await;
        if version.is_v5() {
            assert!(
                matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver),
                "{seen:?}"
            );
        } else {
            assert!(seen.is_empty(), "{seen:?}");
        }
        assert!(!ack.session_present, "{version:?}");
        // The old session's subscription went with it.
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("dup/t", b"x", QoS::AtLeastOnce, false, 1)
            .await;
        new.expect_nothing().await;
        new.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_4_3_takeover_across_protocol_versions() {
    let (server, addr) = start().await;
    let (mut old, _) = persistent(addr, ProtocolVersion::V5, "mixed", 60).await;
    let (_new, ack) = persistent(addr, ProtocolVersion::V3_1_1, "mixed", 0).await;
    old.expect_disconnect(ReasonCode::SessionTakenOver).await;
    assert!(ack.session_present);
    let (mut old, _) = persistent(addr, ProtocolVersion::V3_1_1, "mixed2", 0).await;
    let (_new, ack) = persistent(addr, ProtocolVersion::V5, "mixed2", 60).await;
    assert!(old.expect_close().await.is_empty());
    assert!(ack.session_present);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_of_a_session_with_expiry_0_starts_a_new_session() {
    // Session Expiry Interval 0: the session ends with its network connection
    // (MQTT 5.0 section 3.1.2.11.2), so the new connection cannot continue it.
    let (server, addr) = start().await;
    let (mut old, _) = persistent(addr, ProtocolVersion::V5, "brief", 0).await;
    old.subscribe(1, "brief/t", QoS::AtLeastOnce).await;
    let (mut new, ack) = persistent(addr, ProtocolVersion::V5, "brief", 60).await;
    old.expect_disconnect(ReasonCode::SessionTakenOver).await;
    assert!(!ack.session_present);
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("brief/t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    new.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_takeovers_leave_one_connection_serving_the_session() {
    let (server, addr) = start().await;
    let mut previous = persistent(addr, ProtocolVersion::V5, "hop", 60).await.0;
    previous.subscribe(1, "hop/t", QoS::AtLeastOnce).await;
    for _ in 0..5 {
        let (next, ack) = persistent(addr, ProtocolVersion::V5, "hop", 60).await;
        assert!(ack.session_present);
        previous
            .expect_disconnect(ReasonCode::SessionTakenOver)
            .await;
        previous = next;
    }
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("hop/t", b"last", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&previous.recv_publish().await.payload[..], b"last");
    previous.expect_nothing().await;
    assert_eq!(server.broker().session_count(), 2);
    server.shutdown().await;
}

// ---- Session Present ----

#[tokio::test]
async fn v311_mqtt_3_2_2_3_session_present_follows_stored_session() {
    let (server, addr) = start().await;
    let (raw, ack) = persistent(addr, ProtocolVersion::V3_1_1, "p", 0).await;
    assert!(!ack.session_present, "MQTT-3.2.2-3: no session stored yet");
    disconnect(&server, raw, "p").await;
    let (raw, ack) = persistent(addr, ProtocolVersion::V3_1_1, "p", 0).await;
    assert!(ack.session_present, "MQTT-3.2.2-2");
    disconnect(&server, raw, "p").await;
    let (raw, ack) = clean(addr, ProtocolVersion::V3_1_1, "p").await;
    assert!(!ack.session_present, "MQTT-3.2.2-1");
    disconnect(&server, raw, "p").await;
    // The clean session ended with its connection [MQTT-3.1.2-6].
    let (raw, ack) = persistent(addr, ProtocolVersion::V3_1_1, "p", 0).await;
    assert!(!ack.session_present);
    raw.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_2_2_3_session_present_follows_stored_session() {
    let (server, addr) = start().await;
    let (raw, ack) = persistent(addr, ProtocolVersion::V5, "p", 60).await;
    assert!(!ack.session_present, "no session stored yet");
    disconnect(&server, raw, "p").await;
    let (raw, ack) = persistent(addr, ProtocolVersion::V5, "p", 60).await;
    assert!(ack.session_present, "MQTT-3.2.2-3");
    disconnect(&server, raw, "p").await;
    let (raw, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "p", |c| {
        c.clean_start = true;
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    assert!(!ack.session_present, "MQTT-3.2.2-2");
    disconnect(&server, raw, "p").await;
    // Clean Start discarded the old one but the new session (expiry 60) is kept.
    let (raw, ack) = persistent(addr, ProtocolVersion::V5, "p", 60).await;
    assert!(ack.session_present);
    raw.disconnect().await;
    server.shutdown().await;
}

// ---- clean session / clean start ----

#[tokio::test]
async fn v311_mqtt_3_1_2_6_clean_session_discards_subscriptions_and_queued_messages() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V3_1_1, "c", 0).await;
    raw.subscribe(1, "c/t", QoS::AtLeastOnce).await;
    disconnect(&server, raw, "c").await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V3_1_1, "pub").await;
    publ.publish("c/t", b"queued", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(server.broker().session("c").unwrap().lock().queued_len(), 1);
    let (mut raw, ack) = clean(addr, ProtocolVersion::V3_1_1, "c").await;
    assert!(!ack.session_present);
    // Neither the queued message nor the subscription survived.
    raw.expect_nothing().await;
    publ.publish("c/t", b"after", QoS::AtLeastOnce, false, 2)
        .await;
    raw.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_4_clean_start_discards_subscriptions_and_queued_messages() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "c", 60).await;
    raw.subscribe(1, "c/t", QoS::AtLeastOnce).await;
    disconnect(&server, raw, "c").await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("c/t", b"queued", QoS::AtLeastOnce, false, 1)
        .await;
    let (mut raw, ack) = clean(addr, ProtocolVersion::V5, "c").await;
    assert!(!ack.session_present);
    raw.expect_nothing().await;
    publ.publish("c/t", b"after", QoS::AtLeastOnce, false, 2)
        .await;
    raw.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_3_1_2_6_clean_session_ends_with_the_connection() {
    let (server, addr) = start().await;
    let (mut raw, _) = clean(addr, ProtocolVersion::V3_1_1, "gone").await;
    raw.subscribe(1, "gone/t", QoS::AtLeastOnce).await;
    disconnect(&server, raw, "gone").await;
    assert!(server.broker().session("gone").is_none());
    assert_eq!(server.broker().subscription_count(), 0);
    server.shutdown().await;
}

// ---- offline queueing ----

#[tokio::test]
async fn v311_mqtt_3_1_2_5_qos1_and_qos2_are_queued_while_offline_and_delivered_on_reconnect() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V3_1_1, "off", 0).await;
    raw.subscribe(1, "off/#", QoS::ExactlyOnce).await;
    disconnect(&server, raw, "off").await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V3_1_1, "pub").await;
    publ.publish("off/1", b"one", QoS::AtLeastOnce, false, 1)
        .await;
    publ.publish("off/0", b"zero", QoS::AtMostOnce, false, 0)
        .await;
    publ.publish("off/2", b"two", QoS::ExactlyOnce, false, 2)
        .await;
    publ.publish("off/1", b"three", QoS::AtLeastOnce, false, 3)
        .await;
    let (mut raw, ack) = persistent(addr, ProtocolVersion::V3_1_1, "off", 0).await;
    assert!(ack.session_present);
    let got: Vec<_> = receive_all(&mut raw, 3)
        .await
        .into_iter()
        .map(|p| (p.payload.to_vec(), p.qos))
        .collect();
    assert_eq!(
        got,
        [
            (b"one".to_vec(), QoS::AtLeastOnce),
            (b"two".to_vec(), QoS::ExactlyOnce),
            (b"three".to_vec(), QoS::AtLeastOnce),
        ]
    );
    // QoS 0 was not kept for the offline session.
    raw.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_23_qos1_and_qos2_are_queued_while_offline_and_delivered_on_reconnect() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "off", 60).await;
    raw.subscribe(1, "off/#", QoS::ExactlyOnce).await;
    disconnect(&server, raw, "off").await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("off/1", b"one", QoS::AtLeastOnce, false, 1)
        .await;
    publ.publish("off/0", b"zero", QoS::AtMostOnce, false, 0)
        .await;
    publ.publish("off/2", b"two", QoS::ExactlyOnce, false, 2)
        .await;
    let (mut raw, ack) = persistent(addr, ProtocolVersion::V5, "off", 60).await;
    assert!(ack.session_present);
    let got = receive_all(&mut raw, 2).await;
    assert_eq!(
        (&got[0].payload[..], got[0].qos),
        (&b"one"[..], QoS::AtLeastOnce)
    );
    assert_eq!(
        (&got[1].payload[..], got[1].qos),
        (&b"two"[..], QoS::ExactlyOnce)
    );
    raw.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn qos0_is_not_queued_for_an_offline_session_by_default() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut raw, _) = persistent(addr, version, "q0", 60).await;
        raw.subscribe(1, "q0/t", QoS::AtLeastOnce).await;
        disconnect(&server, raw, "q0").await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("q0/t", b"lost", QoS::AtMostOnce, false, 0)
            .await;
        // Routed while the session exists, not queued: the drop is counted.
        let handle = server.broker().session("q0").unwrap();
        let dropped = async {
            while handle
                .lock()
                .counters
                .dropped(corvus_core::DropReason::Qos0Offline)
                == 0
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, dropped)
            .await
            .expect("QoS 0 offline drop counted");
        let (mut raw, ack) = persistent(addr, version, "q0", 60).await;
        assert!(ack.session_present);
        raw.expect_nothing().await;
        clean(addr, version, "q0").await.0.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn qos0_is_queued_for_an_offline_session_when_configured() {
    let (server, addr) = start_with(|c| c.limits.queue_qos0_offline = true).await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "q0", 60).await;
    raw.subscribe(1, "q0/t", QoS::AtLeastOnce).await;
    disconnect(&server, raw, "q0").await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("q0/t", b"kept", QoS::AtMostOnce, false, 0)
        .await;
    publ.publish("q0/t", b"sync", QoS::AtLeastOnce, false, 1)
        .await;
    let (mut raw, ack) = persistent(addr, ProtocolVersion::V5, "q0", 60).await;
    assert!(ack.session_present);
    let p = raw.recv_publish().await;
    assert_eq!((&p.payload[..], p.qos), (&b"kept"[..], QoS::AtMostOnce));
    assert_eq!(&raw.recv_publish().await.payload[..], b"sync");
    server.shutdown().await;
}

// ---- Session Expiry Interval ----

#[tokio::test]
async fn mqtt_3_1_2_23_session_expiry_0_ends_the_session_at_disconnect() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "zero", 0).await;
    raw.subscribe(1, "zero/t", QoS::AtLeastOnce).await;
    disconnect(&server, raw, "zero").await;
    assert!(server.broker().session("zero").is_none());
    let (mut raw, ack) = persistent(addr, ProtocolVersion::V5, "zero", 0).await;
    assert!(!ack.session_present);
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("zero/t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    raw.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_23_session_expiry_absent_means_0() {
    let (server, addr) = start().await;
    let (mut raw, _) = Raw::connect_with(addr, ProtocolVersion::V5, "absent", |c| {
        c.clean_start = false;
    })
    .await;
    raw.subscribe(1, "absent/t", QoS::AtLeastOnce).await;
    drop_connection(&server, raw, "absent").await;
    let (_raw, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "absent", |c| {
        c.clean_start = false;
    })
    .await;
    assert!(!ack.session_present);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_23_session_is_kept_within_expiry_and_gone_after_it() {
    let (server, addr) = start().await;
    // Kept: reconnecting well within the interval continues the session.
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "kept", 30).await;
    raw.subscribe(1, "kept/t", QoS::AtLeastOnce).await;
    drop_connection(&server, raw, "kept").await;
    let (mut raw, ack) = persistent(addr, ProtocolVersion::V5, "kept", 30).await;
    assert!(ack.session_present);
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("kept/t", b"still subscribed", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&raw.recv_publish().await.payload[..], b"still subscribed");

    // Gone: 1 s interval, reconnect after 2 s.
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "brief", 1).await;
    raw.subscribe(1, "brief/t", QoS::AtLeastOnce).await;
    drop_connection(&server, raw, "brief").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut raw, ack) = persistent(addr, ProtocolVersion::V5, "brief", 1).await;
    assert!(!ack.session_present);
    publ.publish("brief/t", b"x", QoS::AtLeastOnce, false, 2)
        .await;
    raw.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_23_expired_session_is_removed_by_the_broker() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "sweep", 1).await;
    raw.subscribe(1, "sweep/t", QoS::AtLeastOnce).await;
    disconnect(&server, raw, "sweep").await;
    assert!(server.broker().session("sweep").is_some());
    let removed = async {
        while server.broker().session("sweep").is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, removed)
        .await
        .expect("expired session removed");
    assert_eq!(server.broker().subscription_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_session_expiry_after_connect_expiry_0_is_a_protocol_error() {
    // MQTT 5.0 section 3.14.2.2.2.
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "late", 0).await;
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(60);
    raw.send(disconnect.into()).await;
    raw.expect_disconnect(ReasonCode::ProtocolError).await;
    wait_offline(&server, "late").await;
    // The DISCONNECT was not valid: the session still ended with the connection.
    let (_raw, ack) = persistent(addr, ProtocolVersion::V5, "late", 0).await;
    assert!(!ack.session_present);
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_session_expiry_0_ends_a_session_that_had_an_expiry() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "shorten", 60).await;
    raw.subscribe(1, "shorten/t", QoS::AtLeastOnce).await;
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(0);
    raw.send(disconnect.into()).await;
    assert!(raw.expect_close().await.is_empty());
    wait_offline(&server, "shorten").await;
    let (_raw, ack) = persistent(addr, ProtocolVersion::V5, "shorten", 60).await;
    assert!(!ack.session_present);
    assert_eq!(server.broker().subscription_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_session_expiry_extends_a_session() {
    let (server, addr) = start().await;
    let (mut raw, _) = persistent(addr, ProtocolVersion::V5, "extend", 1).await;
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(60);
    raw.send(disconnect.into()).await;
    assert!(raw.expect_close().await.is_empty());
    wait_offline(&server, "extend").await;
    // Past the CONNECT's 1 s: the DISCONNECT's 60 s applies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_raw, ack) = persistent(addr, ProtocolVersion::V5, "extend", 60).await;
    assert!(ack.session_present);
    server.shutdown().await;
}

#[tokio::test]
async fn session_expiry_is_capped_by_max_session_expiry_and_told_in_connack() {
    let (server, addr) = start_with(|c| c.limits.max_session_expiry = 1).await;
    let (raw, ack) = persistent(addr, ProtocolVersion::V5, "capped", 3600).await;
    assert_eq!(ack.properties.session_expiry_interval, Some(1));
    drop_connection(&server, raw, "capped").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_raw, ack) = persistent(addr, ProtocolVersion::V5, "capped", 3600).await;
    assert!(!ack.session_present);
    server.shutdown().await;
}

// ---- messages in flight across reconnects ----

/// Receives `n` QoS 1/2 PUBLISH without acknowledging them.
async fn receive_unacked(raw: &mut Raw, n: usize) -> Vec<(PacketId, Vec<u8>)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let p = recv_publish_raw(raw).await;
        assert!(!p.dup, "first delivery has DUP 0 [MQTT-3.3.1-1]");
        got.push((p.packet_id.expect("QoS > 0"), p.payload.to_vec()));
    }
    got
}

async fn inflight_resent_with_dup_in_order(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let (mut sub, _) = persistent(addr, version, "slow", 60).await;
    sub.subscribe(1, "slow/t", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    for (i, payload) in [&b"m1"[..], b"m2", b"m3"].into_iter().enumerate() {
        publ.publish("slow/t", payload, QoS::AtLeastOnce, false, i as u16 + 1)
            .await;
    }
    let first = receive_unacked(&mut sub, 3).await;
    assert_eq!(
        first.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(),
        [b"m1", b"m2", b"m3"]
    );
    drop_connection(&server, sub, "slow").await;

    let (mut sub, ack) = persistent(addr, version, "slow", 60).await;
    assert!(ack.session_present);
    let mut again = Vec::new();
    for _ in 0..3 {
        let p = recv_publish_raw(&mut sub).await;
        assert!(p.dup, "{version:?}: a re-delivery has DUP 1 [MQTT-3.3.1-1]");
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert_eq!(p.topic, "slow/t");
        again.push((p.packet_id.unwrap(), p.payload.to_vec()));
    }
    assert_eq!(again, first, "{version:?}: same order, same packet ids");
    // Acknowledged now: never sent again.
    for (id, _) in &again {
        sub.send(Packet::PubAck(Ack::new(*id))).await;
    }
    sub.expect_nothing().await;
    drop_connection(&server, sub, "slow").await;
    let (mut sub, ack) = persistent(addr, version, "slow", 60).await;
    assert!(ack.session_present);
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_4_4_0_1_unacknowledged_qos1_resent_with_dup_in_order_with_same_ids() {
    inflight_resent_with_dup_in_order(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_unacknowledged_qos1_resent_with_dup_in_order_with_same_ids() {
    inflight_resent_with_dup_in_order(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_inflight_resent_before_queued_messages() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut sub, _) = persistent(addr, version, "order", 60).await;
        sub.subscribe(1, "order/t", QoS::AtLeastOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("order/t", b"a", QoS::AtLeastOnce, false, 1)
            .await;
        let first = receive_unacked(&mut sub, 1).await;
        drop_connection(&server, sub, "order").await;
        // Queued while offline, behind the one in flight.
        publ.publish("order/t", b"b", QoS::AtLeastOnce, false, 2)
            .await;
        let (mut sub, _) = persistent(addr, version, "order", 60).await;
        let resent = recv_publish_raw(&mut sub).await;
        assert!(resent.dup);
        assert_eq!(
            (resent.packet_id.unwrap(), resent.payload.to_vec()),
            first[0]
        );
        sub.ack(&resent).await;
        let queued = sub.recv_publish().await;
        assert!(!queued.dup, "{version:?}: never sent before, so DUP 0");
        assert_eq!(&queued.payload[..], b"b");
        assert_ne!(queued.packet_id, resent.packet_id);
        clean(addr, version, "order").await.0.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_unacknowledged_qos2_publish_resent_with_dup() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut sub, _) = persistent(addr, version, "q2", 60).await;
        sub.subscribe(1, "q2/t", QoS::ExactlyOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("q2/t", b"exactly", QoS::ExactlyOnce, false, 1)
            .await;
        let first = recv_publish_raw(&mut sub).await;
        assert!(!first.dup);
        drop_connection(&server, sub, "q2").await;
        let (mut sub, ack) = persistent(addr, version, "q2", 60).await;
        assert!(ack.session_present);
        let again = recv_publish_raw(&mut sub).await;
        assert!(again.dup, "{version:?}");
        assert_eq!(again.packet_id, first.packet_id);
        assert_eq!(again.qos, QoS::ExactlyOnce);
        assert_eq!(again.payload, first.payload);
        // The flow completes on the new connection.
        sub.ack(&again).await;
        sub.expect_nothing().await;
        clean(addr, version, "q2").await.0.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_4_0_1_pubrel_resent_after_reconnect_when_pubrec_was_received() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut sub, _) = persistent(addr, version, "rel", 60).await;
        sub.subscribe(1, "rel/t", QoS::ExactlyOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("rel/t", b"exactly", QoS::ExactlyOnce, false, 1)
            .await;
        let publish = recv_publish_raw(&mut sub).await;
        let id = publish.packet_id.unwrap();
        sub.send(Packet::PubRec(Ack::new(id))).await;
        match sub.recv().await {
            Packet::PubRel(rel) => assert_eq!(rel.packet_id, id),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        // No PUBCOMP before the connection drops.
        drop_connection(&server, sub, "rel").await;
        let (mut sub, ack) = persistent(addr, version, "rel", 60).await;
        assert!(ack.session_present);
        match sub.recv().await {
            Packet::PubRel(rel) => assert_eq!(rel.packet_id, id, "{version:?}"),
            other => panic!("{version:?}: expected PUBREL again, got {other:?}"),
        }
        sub.send(Packet::PubComp(Ack::new(id))).await;
        // The PUBLISH itself is not sent again.
        sub.expect_nothing().await;
        drop_connection(&server, sub, "rel").await;
        let (mut sub, _) = persistent(addr, version, "rel", 60).await;
        sub.expect_nothing().await;
        clean(addr, version, "rel").await.0.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn session_keeps_inbound_qos2_awaiting_pubrel_across_reconnect() {
    // The session keeps the packet identifiers of QoS 2 messages received and not yet
    // released: a resent PUBLISH after reconnect is not delivered twice.
    let (server, addr) = start().await;
    for version in BOTH {
        let mut sub = Raw::connect(addr, version, "watch").await;
        sub.subscribe(1, "in/t", QoS::ExactlyOnce).await;
        let (mut publ, _) = persistent(addr, version, "sender", 60).await;
        let mut publish = Publish::new(s("in/t"), bytes::Bytes::from_static(b"once"));
        publish.qos = QoS::ExactlyOnce;
        publish.packet_id = Some(pid(9));
        publ.send(publish.clone().into()).await;
        assert!(matches!(publ.recv().await, Packet::PubRec(a) if a.packet_id == pid(9)));
        assert_eq!(&sub.recv_publish().await.payload[..], b"once");
        drop_connection(&server, publ, "sender").await;
        let (mut publ, ack) = persistent(addr, version, "sender", 60).await;
        assert!(ack.session_present);
        publish.dup = true;
        publ.send(publish.into()).await;
        assert!(matches!(publ.recv().await, Packet::PubRec(a) if a.packet_id == pid(9)));
        publ.send(Packet::PubRel(Ack::new(pid(9)))).await;
        match publ.recv().await {
            Packet::PubComp(a) => {
                assert_eq!(a.packet_id, pid(9));
                assert_eq!(a.reason_code, ReasonCode::Success);
            }
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        sub.expect_nothing().await;
        clean(addr, version, "sender").await.0.disconnect().await;
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_without_session_gets_no_resend() {
    let (server, addr) = start().await;
    for version in BOTH {
        let (mut sub, _) = persistent(addr, version, "fresh", 60).await;
        sub.subscribe(1, "fresh/t", QoS::AtLeastOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("fresh/t", b"x", QoS::AtLeastOnce, false, 1)
            .await;
        receive_unacked(&mut sub, 1).await;
        drop_connection(&server, sub, "fresh").await;
        let (mut sub, ack) = clean(addr, version, "fresh").await;
        assert!(!ack.session_present);
        sub.expect_nothing().await;
        sub.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_3_1_2_4_persistent_session_does_not_expire() {
    // A 3.1.1 session with Clean Session 0 lasts until the client cleans it.
    let (server, addr) = start().await;
    let (raw, _) = persistent(addr, ProtocolVersion::V3_1_1, "lasting", 0).await;
    disconnect(&server, raw, "lasting").await;
    // Several sweeps of expired sessions run meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(server.broker().session("lasting").is_some());
    let (_raw, ack) = persistent(addr, ProtocolVersion::V3_1_1, "lasting", 0).await;
    assert!(ack.session_present);
    server.shutdown().await;
}
