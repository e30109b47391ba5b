//! Will messages through a real listener, for MQTT 3.1.1 and 5.0: when they are published
//! (connection lost, protocol error, keep alive timeout, takeover, DISCONNECT 0x04) and when
//! not (normal DISCONNECT, reconnect within the Will Delay Interval), with their QoS, retain
//! flag and properties; the Will Delay Interval and its bound by the session's end; and wills
//! to reserved topics.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use mqtt_codec::{
    ConnAck, Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    SubscriptionOptions, Will, WillProperties,
};

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

fn will(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Will {
    Will {
        topic: s(topic),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

/// Connects `client_id` with a will; for v5, with a session expiry and a will delay.
async fn connect_with_will(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    will: Will,
    tune: impl FnOnce(&mut Connect),
) -> (Raw, ConnAck) {
    Raw::connect_with(addr, version, client_id, |c| {
        c.will = Some(will);
        tune(c);
    })
    .await
}

/// A v5 subscriber on `filter` at QoS 2 (so a will arrives with its own QoS).
async fn watcher(addr: SocketAddr, version: ProtocolVersion, filter: &str) -> Raw {
    let mut raw = Raw::connect(addr, version, &format!("watcher-{}", version.level())).await;
    raw.subscribe(1, filter, QoS::ExactlyOnce).await;
    raw
}

/// The next PUBLISH, acknowledged.
async fn next_will(raw: &mut Raw) -> Publish {
    raw.recv_publish().await
}

/// Asserts nothing arrives within `within`.
async fn nothing_for(raw: &mut Raw, within: Duration) {
    match raw.try_recv(within).await {
        Err("timed out") => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}

// ---- published when the connection is lost ----

#[tokio::test]
async fn v311_mqtt_3_1_2_8_will_published_when_connection_closes_without_disconnect() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V3_1_1, "will/#").await;
    let (raw, _) = connect_with_will(
        addr,
        ProtocolVersion::V3_1_1,
        "dying",
        will("will/dying", b"gone", QoS::AtLeastOnce, false),
        |_| {},
    )
    .await;
    drop(raw);
    let got = next_will(&mut sub).await;
    assert_eq!(got.topic, "will/dying");
    assert_eq!(&got.payload[..], b"gone");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert!(!got.retain);
    // Published once [MQTT-3.1.2-10].
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_when_connection_closes_without_disconnect() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let (raw, _) = connect_with_will(
            addr,
            ProtocolVersion::V5,
            "dying",
            will("will/dying", b"gone", qos, false),
            |_| {},
        )
        .await;
        drop(raw);
        let got = next_will(&mut sub).await;
        assert_eq!(got.topic, "will/dying");
        assert_eq!(&got.payload[..], b"gone");
        assert_eq!(got.qos, qos, "the will's QoS");
        assert!(!got.retain);
    }
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_10_will_properties_are_forwarded_with_user_properties_in_order() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will(
        "will/props",
        b"{\"state\":\"offline\"}",
        QoS::AtLeastOnce,
        false,
    );
    w.properties = WillProperties {
        payload_format_indicator: Some(true),
        message_expiry_interval: Some(100),
        content_type: Some(s("application/json")),
        response_topic: Some(s("will/replies")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            (s("b"), s("2")),
            (s("a"), s("1")),
            (s("b"), s("3")),
            (s("z"), s("")),
        ],
        ..Default::default()
    };
    let expected_user = w.properties.user_properties.clone();
    let (raw, _) = connect_with_will(addr, ProtocolVersion::V5, "props", w, |_| {}).await;
    drop(raw);
    let got = next_will(&mut sub).await;
    assert_eq!(got.topic, "will/props");
    assert_eq!(got.properties.payload_format_indicator, Some(true));
    assert_eq!(got.properties.content_type, Some(s("application/json")));
    assert_eq!(got.properties.response_topic, Some(s("will/replies")));
    assert_eq!(
        got.properties.correlation_data,
        Some(Bytes::from_static(b"\x00\x01corr"))
    );
    assert_eq!(got.properties.user_properties, expected_user);
    let expiry = got
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!((1..=100).contains(&expiry), "{expiry}");
    // Will Delay Interval is not a PUBLISH property, and no alias was asked for.
    assert_eq!(got.properties.topic_alias, None);
    server.shutdown().await;
}

#[tokio::test]
async fn v5_will_with_properties_reaches_v311_subscriber() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V3_1_1, "will/#").await;
    let mut w = will("will/x", b"bye", QoS::AtLeastOnce, false);
    w.properties.content_type = Some(s("text/plain"));
    w.properties.user_properties = vec![(s("k"), s("v"))];
    let (raw, _) = connect_with_will(addr, ProtocolVersion::V5, "x", w, |_| {}).await;
    drop(raw);
    let got = next_will(&mut sub).await;
    assert_eq!(&got.payload[..], b"bye");
    server.shutdown().await;
}

// ---- not published after a normal DISCONNECT ----

#[tokio::test]
async fn mqtt_3_14_4_3_will_discarded_after_normal_disconnect() {
    let (server, addr) = start().await;
    for version in BOTH {
        let mut sub = watcher(addr, version, "will/#").await;
        let (mut raw, _) = connect_with_will(
            addr,
            version,
            "polite",
            will("will/polite", b"should not appear", QoS::AtLeastOnce, true),
            |_| {},
        )
        .await;
        raw.send(Disconnect::default().into()).await;
        assert!(raw.expect_close().await.is_empty());
        sub.expect_nothing().await;
        assert_eq!(server.broker().retained_count(), 0, "{version:?}");
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_after_disconnect_with_will_message_0x04() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let (mut raw, _) = connect_with_will(
        addr,
        ProtocolVersion::V5,
        "asks",
        will("will/asks", b"as requested", QoS::AtLeastOnce, false),
        |_| {},
    )
    .await;
    raw.send(Disconnect::new(ReasonCode::DisconnectWithWillMessage).into())
        .await;
    assert!(raw.expect_close().await.is_empty());
    let got = next_will(&mut sub).await;
    assert_eq!(&got.payload[..], b"as requested");
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_disconnect_0x04_respects_the_will_delay() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/later", b"later", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(1);
    let (mut raw, _) = connect_with_will(addr, ProtocolVersion::V5, "later", w, |c| {
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    raw.send(Disconnect::new(ReasonCode::DisconnectWithWillMessage).into())
        .await;
    assert!(raw.expect_close().await.is_empty());
    // Not before the delay...
    sub.expect_nothing().await;
    // ...but after it.
    assert_eq!(&next_will(&mut sub).await.payload[..], b"later");
    server.shutdown().await;
}

// ---- published when the server closes the connection ----

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_on_keep_alive_timeout() {
    let (server, addr) = start().await;
    for version in BOTH {
        let mut sub = watcher(addr, version, "will/#").await;
        let (mut raw, _) = connect_with_will(
            addr,
            version,
            "silent",
            will("will/silent", b"timed out", QoS::AtLeastOnce, false),
            |c| c.keep_alive = 1,
        )
        .await;
        // The connection is closed for the timeout; the will follows.
        raw.expect_close().await;
        let got = next_will(&mut sub).await;
        assert_eq!(&got.payload[..], b"timed out", "{version:?}");
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_on_protocol_error() {
    let (server, addr) = start().await;
    for version in BOTH {
        let mut sub = watcher(addr, version, "will/#").await;
        let (mut raw, _) = connect_with_will(
            addr,
            version,
            "rude",
            will("will/rude", b"protocol error", QoS::AtLeastOnce, false),
            |_| {},
        )
        .await;
        // A second CONNECT [MQTT-3.1.0-2].
        raw.send(Connect::new(version, s("rude")).into()).await;
        raw.expect_close().await;
        assert_eq!(&next_will(&mut sub).await.payload[..], b"protocol error");
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_8_will_published_on_malformed_packet() {
    let (server, addr) = start().await;
    for version in BOTH {
        let mut sub = watcher(addr, version, "will/#").await;
        let (mut raw, _) = connect_with_will(
            addr,
            version,
            "garbled",
            will("will/garbled", b"malformed", QoS::AtLeastOnce, false),
            |_| {},
        )
        .await;
        // PINGREQ with reserved flags set.
        raw.send_bytes(&[0xC1, 0x00]).await;
        raw.expect_close().await;
        assert_eq!(&next_will(&mut sub).await.payload[..], b"malformed");
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_with_session_expiry_after_expiry_0_is_invalid_and_publishes_the_will() {
    // MQTT 5.0 section 3.14.2.2.2: the DISCONNECT is a Protocol Error, not a normal one.
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let (mut raw, _) = connect_with_will(
        addr,
        ProtocolVersion::V5,
        "bad-bye",
        will(
            "will/bad-bye",
            b"invalid disconnect",
            QoS::AtLeastOnce,
            false,
        ),
        |_| {},
    )
    .await;
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(30);
    raw.send(disconnect.into()).await;
    raw.expect_disconnect(ReasonCode::ProtocolError).await;
    assert_eq!(
        &next_will(&mut sub).await.payload[..],
        b"invalid disconnect"
    );
    server.shutdown().await;
}

// ---- retain ----

#[tokio::test]
async fn mqtt_3_1_2_15_retained_will_becomes_the_retained_message() {
    let (server, addr) = start().await;
    for version in BOTH {
        let topic = format!("will/retained/{}", version.level());
        // On this topic only: the other version's retained will must not reach it.
        let mut sub = watcher(addr, version, &topic).await;
        let (raw, _) = connect_with_will(
            addr,
            version,
            "keeper",
            Will {
                topic: s(&topic),
                payload: Bytes::from_static(b"last words"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            },
            |_| {},
        )
        .await;
        drop(raw);
        // Live subscribers get it without RETAIN [MQTT-3.3.1-9 in 3.1.1; Retain As
        // Published not set in 5.0].
        let live = next_will(&mut sub).await;
        assert!(!live.retain);
        // A new subscriber gets it as a retained message.
        let mut late = Raw::connect(addr, version, "late").await;
        late.subscribe(1, &topic, QoS::AtLeastOnce).await;
        let got = late.recv_publish().await;
        assert!(got.retain, "{version:?}");
        assert_eq!(&got.payload[..], b"last words");
        late.disconnect().await;
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_15_retained_will_with_retain_as_published_keeps_retain_flag() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "rap").await;
    sub.subscribe_with(
        1,
        "will/#",
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            retain_as_published: true,
            ..Default::default()
        },
        None,
    )
    .await;
    let (raw, _) = connect_with_will(
        addr,
        ProtocolVersion::V5,
        "keeper",
        will("will/rap", b"kept", QoS::AtLeastOnce, true),
        |_| {},
    )
    .await;
    drop(raw);
    assert!(next_will(&mut sub).await.retain);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_14_will_without_retain_is_not_retained() {
    let (server, addr) = start().await;
    for version in BOTH {
        let mut sub = watcher(addr, version, "will/#").await;
        let (raw, _) = connect_with_will(
            addr,
            version,
            "fleeting",
            will("will/fleeting", b"once", QoS::AtLeastOnce, false),
            |_| {},
        )
        .await;
        drop(raw);
        next_will(&mut sub).await;
        assert_eq!(server.broker().retained_count(), 0);
        let mut late = Raw::connect(addr, version, "late").await;
        late.subscribe(1, "will/fleeting", QoS::AtLeastOnce).await;
        late.expect_nothing().await;
        late.disconnect().await;
        sub.disconnect().await;
    }
    server.shutdown().await;
}

// ---- Will Delay Interval ----

#[tokio::test]
async fn will_delay_interval_delays_the_will() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/delayed", b"after a while", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(1);
    let (raw, _) = connect_with_will(addr, ProtocolVersion::V5, "delayed", w, |c| {
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    drop(raw);
    // Not at once (the delay is 1 s)...
    sub.expect_nothing().await;
    // ...but once it has passed.
    assert_eq!(&next_will(&mut sub).await.payload[..], b"after a while");
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_9_will_cancelled_when_client_reconnects_within_the_delay() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/back", b"should not appear", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(2);
    let session = |c: &mut Connect| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(60);
    };
    let (raw, _) = connect_with_will(addr, ProtocolVersion::V5, "back", w, session).await;
    drop(raw);
    // Back within the delay, to the same session.
    let (raw, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "back", session).await;
    assert!(ack.session_present);
    // Past the delay: the old connection's will never comes.
    nothing_for(&mut sub, Duration::from_millis(3000)).await;
    raw.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_3_9_will_cancelled_by_takeover_within_the_delay() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/taken", b"should not appear", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(2);
    let session = |c: &mut Connect| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(60);
    };
    let (mut old, _) = connect_with_will(addr, ProtocolVersion::V5, "taken", w, session).await;
    let (_new, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "taken", session).await;
    assert!(ack.session_present);
    old.expect_disconnect(ReasonCode::SessionTakenOver).await;
    nothing_for(&mut sub, Duration::from_millis(3000)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn will_published_at_session_end_when_session_expiry_is_shorter_than_the_delay() {
    // MQTT 5.0 section 3.1.3.2.2: the will waits for its delay or the end of the session,
    // whichever comes first.
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/expired", b"session over", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(60);
    let (raw, _) = connect_with_will(addr, ProtocolVersion::V5, "expiring", w, |c| {
        c.properties.session_expiry_interval = Some(1);
    })
    .await;
    drop(raw);
    // Within the 5 s wait, long before the 60 s delay.
    assert_eq!(&next_will(&mut sub).await.payload[..], b"session over");
    server.shutdown().await;
}

#[tokio::test]
async fn will_with_delay_published_at_once_when_session_expiry_is_0() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/now", b"session over", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(60);
    let (raw, _) = connect_with_will(addr, ProtocolVersion::V5, "now", w, |c| {
        c.properties.session_expiry_interval = Some(0);
    })
    .await;
    drop(raw);
    assert_eq!(&next_will(&mut sub).await.payload[..], b"session over");
    server.shutdown().await;
}

#[tokio::test]
async fn delayed_will_published_when_clean_start_ends_the_session_within_the_delay() {
    // A reconnect with Clean Start 1 does not continue the session [MQTT-3.1.2-4]: the
    // session ends, and a will waiting for its delay is published then (MQTT 5.0 section
    // 3.1.3.2.2), rather than being lost with the session.
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/restart", b"old session over", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(60);
    let (raw, _) = connect_with_will(addr, ProtocolVersion::V5, "restart", w, |c| {
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    drop(raw);
    let (_raw, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "restart", |c| {
        c.clean_start = true;
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    assert!(!ack.session_present);
    assert_eq!(&next_will(&mut sub).await.payload[..], b"old session over");
    server.shutdown().await;
}

#[tokio::test]
async fn delayed_will_published_when_clean_start_takeover_ends_the_session() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let mut w = will("will/ousted", b"old session over", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(60);
    let (mut old, _) = connect_with_will(addr, ProtocolVersion::V5, "ousted", w, |c| {
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    let (_new, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "ousted", |c| {
        c.clean_start = true;
    })
    .await;
    assert!(!ack.session_present);
    old.expect_disconnect(ReasonCode::SessionTakenOver).await;
    assert_eq!(&next_will(&mut sub).await.payload[..], b"old session over");
    server.shutdown().await;
}

// ---- takeover ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_4_3_takeover_publishes_the_old_connections_will() {
    let (server, addr) = start().await;
    for version in BOTH {
        let mut sub = watcher(addr, version, "will/#").await;
        let (mut old, _) = connect_with_will(
            addr,
            version,
            "twin",
            will("will/twin", b"replaced", QoS::AtLeastOnce, false),
            |c| {
                c.clean_start = false;
                c.properties.session_expiry_interval = version.is_v5().then_some(60);
            },
        )
        .await;
        let (new, _) = Raw::connect_with(addr, version, "twin", |c| {
            c.clean_start = false;
            c.properties.session_expiry_interval = version.is_v5().then_some(60);
        })
        .await;
        old.expect_close().await;
        let got = next_will(&mut sub).await;
        assert_eq!(&got.payload[..], b"replaced", "{version:?}");
        // Only the old connection's will: the new one has none.
        drop(new);
        sub.expect_nothing().await;
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_new_connection_will_replaces_the_old_one() {
    let (server, addr) = start().await;
    let mut sub = watcher(addr, ProtocolVersion::V5, "will/#").await;
    let (mut old, _) = connect_with_will(
        addr,
        ProtocolVersion::V5,
        "swap",
        will("will/swap", b"old", QoS::AtLeastOnce, false),
        |_| {},
    )
    .await;
    let (new, _) = connect_with_will(
        addr,
        ProtocolVersion::V5,
        "swap",
        will("will/swap", b"new", QoS::AtLeastOnce, false),
        |_| {},
    )
    .await;
    old.expect_disconnect(ReasonCode::SessionTakenOver).await;
    assert_eq!(&next_will(&mut sub).await.payload[..], b"old");
    drop(new);
    assert_eq!(&next_will(&mut sub).await.payload[..], b"new");
    sub.expect_nothing().await;
    server.shutdown().await;
}

// ---- refused wills ----

#[tokio::test]
async fn will_to_a_sys_topic_is_refused_with_connack_0x90() {
    let (server, addr) = start().await;
    let mut raw = Raw::open(addr, ProtocolVersion::V5).await;
    let mut connect = Connect::new(ProtocolVersion::V5, s("sneaky"));
    connect.will = Some(will("$SYS/broker/uptime", b"0", QoS::AtMostOnce, true));
    raw.send(connect.into()).await;
    let seen = raw.expect_close().await;
    match seen.as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason_code, ReasonCode::TopicNameInvalid);
            assert!(!ack.session_present);
        }
        other => panic!("expected one refusing CONNACK, got {other:?}"),
    }
    assert!(server.broker().session("sneaky").is_none());
    assert_eq!(server.broker().retained_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn v311_will_to_a_sys_topic_is_refused() {
    let (server, addr) = start().await;
    let mut raw = Raw::open(addr, ProtocolVersion::V3_1_1).await;
    let mut connect = Connect::new(ProtocolVersion::V3_1_1, s("sneaky"));
    connect.will = Some(will("$SYS/broker/uptime", b"0", QoS::AtMostOnce, true));
    raw.send(connect.into()).await;
    let seen = raw.expect_close().await;
    match seen.as_slice() {
        // 3.1.1 has no "topic name invalid": any refusal, or none [MQTT-3.2.2-6].
        [] => {}
        [Packet::ConnAck(ack)] => assert_ne!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(server.broker().session("sneaky").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn will_payload_not_utf8_with_payload_format_indicator_is_refused_with_0x99() {
    let (server, addr) = start().await;
    let mut raw = Raw::open(addr, ProtocolVersion::V5).await;
    let mut connect = Connect::new(ProtocolVersion::V5, s("badtext"));
    let mut w = will("will/bad", b"\xff\xfe", QoS::AtMostOnce, false);
    w.properties.payload_format_indicator = Some(true);
    connect.will = Some(w);
    raw.send(connect.into()).await;
    let seen = raw.expect_close().await;
    match seen.as_slice() {
        [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, ReasonCode::PayloadFormatInvalid),
        other => panic!("expected one refusing CONNACK, got {other:?}"),
    }
    server.shutdown().await;
}

// ---- shutdown ----

#[tokio::test]
async fn graceful_shutdown_closes_clients_with_wills() {
    let (server, addr) = start().await;
    let (mut v5, _) = connect_with_will(
        addr,
        ProtocolVersion::V5,
        "w5",
        will("will/w5", b"x", QoS::AtLeastOnce, false),
        |_| {},
    )
    .await;
    let (mut v311, _) = connect_with_will(
        addr,
        ProtocolVersion::V3_1_1,
        "w3",
        will("will/w3", b"x", QoS::AtLeastOnce, false),
        |_| {},
    )
    .await;
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown completes");
    v5.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    assert!(v311.expect_close().await.is_empty());
}

/// A shutdown closes connections without a DISCONNECT 0x00 from the client, so wills are
/// published (MQTT 5.0 section 3.1.2.5): an offline persistent subscriber has it queued.
#[tokio::test]
async fn mqtt_3_1_2_8_shutdown_publishes_wills() {
    let (server, addr) = start().await;
    let (mut sub, _) = Raw::connect_with(addr, ProtocolVersion::V5, "offline-sub", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    sub.subscribe(1, "will/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let (_client, _) = connect_with_will(
        addr,
        ProtocolVersion::V5,
        "dying",
        will("will/dying", b"gone", QoS::AtLeastOnce, false),
        |_| {},
    )
    .await;
    let broker = server.broker().clone();
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown completes");
    let session = broker
        .session("offline-sub")
        .expect("persistent session kept");
    assert_eq!(
        session.lock().queued_len(),
        1,
        "the will is queued for the subscriber"
    );
}
