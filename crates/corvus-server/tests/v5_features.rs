//! MQTT 5.0 features end to end: message expiry, topic aliases both ways, subscription
//! identifiers, No Local, Retain As Published, request/response, content type, payload format,
//! user properties, Maximum Packet Size both ways, reason strings and AUTH.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use corvus_core::DropReason;
use mqtt_codec::{
    Auth, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A PUBLISH with a packet identifier matching its QoS.
fn publish(topic: &str, payload: &[u8], qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(s(topic), Bytes::copy_from_slice(payload));
    p.qos = qos;
    p.packet_id = (qos != QoS::AtMostOnce).then(|| pid(id));
    p
}

/// Connects a v5 client whose session outlives the connection by a minute.
async fn persistent(addr: std::net::SocketAddr, id: &str, clean: bool) -> (Raw, bool) {
    let (raw, ack) = Raw::connect_with(addr, V5, id, |c| {
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    (raw, ack.session_present)
}

// ---- Message Expiry Interval ----

#[tokio::test]
async fn mqtt_3_3_2_6_message_expiry_is_forwarded_as_the_remaining_interval() {
    let (server, addr) = start().await;
    let (mut offline, _) = persistent(addr, "offline", true).await;
    offline.subscribe(1, "exp/#", QoS::AtLeastOnce).await;
    offline.disconnect().await;
    wait_offline(&server, "offline").await;
    let mut online = Raw::connect(addr, V5, "online").await;
    online.subscribe(1, "exp/#", QoS::AtLeastOnce).await;

    let mut publ = Raw::connect(addr, V5, "pub").await;
    let mut p = publish("exp/a", b"x", QoS::AtLeastOnce, 1);
    p.properties.message_expiry_interval = Some(10);
    assert_eq!(publ.publish_packet(p).await, ReasonCode::Success);

    // Delivered at once: (almost) nothing of the interval has passed; rounded up, never more.
    let got = online.recv_publish().await;
    let fresh = got
        .properties
        .message_expiry_interval
        .expect("interval forwarded");
    assert!((9..=10).contains(&fresh), "online copy: {fresh}");

    // Held while its subscriber was away: the time waited is subtracted.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (mut back, present) = persistent(addr, "offline", false).await;
    assert!(present);
    let got = back.recv_publish().await;
    assert_eq!(&got.payload[..], b"x");
    let held = got
        .properties
        .message_expiry_interval
        .expect("interval forwarded");
    assert!(
        (1..=9).contains(&held) && held < fresh,
        "held copy: {held}, fresh copy: {fresh}"
    );

    // A message without expiry is forwarded without one.
    publ.publish("exp/b", b"y", QoS::AtLeastOnce, false, 2)
        .await;
    let got = online.recv_publish().await;
    assert_eq!(got.properties.message_expiry_interval, None);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_5_message_expired_while_session_offline_is_not_delivered() {
    let (server, addr) = start().await;
    let (mut sub, _) = persistent(addr, "sub", true).await;
    sub.subscribe(1, "exp/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    wait_offline(&server, "sub").await;

    let mut publ = Raw::connect(addr, V5, "pub").await;
    let mut p = publish("exp/short", b"stale", QoS::AtLeastOnce, 1);
    p.properties.message_expiry_interval = Some(1);
    publ.publish_packet(p).await;
    let mut p = publish("exp/long", b"fresh", QoS::AtLeastOnce, 2);
    p.properties.message_expiry_interval = Some(60);
    publ.publish_packet(p).await;
    // Let the one-second expiry run out on the broker.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (mut sub, present) = persistent(addr, "sub", false).await;
    assert!(present);
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"fresh", "the expired message came first");
    publ.publish("exp/marker", b"marker", QoS::AtLeastOnce, false, 3)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"marker");
    let counters = server
        .broker()
        .session("sub")
        .unwrap()
        .lock()
        .counters
        .clone();
    assert_eq!(counters.dropped(DropReason::Expired), 1);
    assert_eq!(server.broker().metrics.dropped(DropReason::Expired), 1);
    server.shutdown().await;
}

// ---- topic aliases, client to broker ----

#[tokio::test]
async fn mqtt_3_3_2_12_client_topic_alias_is_set_then_used_with_an_empty_topic() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    sub.subscribe(1, "al/#", QoS::AtLeastOnce).await;
    let (mut publ, ack) = Raw::connect_with(addr, V5, "pub", |_| {}).await;
    let max = ack
        .properties
        .topic_alias_maximum
        .expect("broker advertises aliases");
    assert!(max >= 2, "{max}");

    let mut p = publish("al/one", b"1", QoS::AtLeastOnce, 1);
    p.properties.topic_alias = Some(1);
    assert_eq!(publ.publish_packet(p).await, ReasonCode::Success);
    let mut p = publish("", b"2", QoS::AtLeastOnce, 2);
    p.properties.topic_alias = Some(1);
    assert_eq!(publ.publish_packet(p).await, ReasonCode::Success);
    // The mapping can be replaced, and the highest alias advertised is accepted.
    let mut p = publish("al/two", b"3", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(1);
    publ.publish_packet(p).await;
    let mut p = publish("", b"4", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(1);
    publ.publish_packet(p).await;
    let mut p = publish("al/max", b"5", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(max);
    publ.publish_packet(p).await;
    let mut p = publish("", b"6", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(max);
    publ.publish_packet(p).await;

    let expected = [
        ("al/one", "1"),
        ("al/one", "2"),
        ("al/two", "3"),
        ("al/two", "4"),
        ("al/max", "5"),
        ("al/max", "6"),
    ];
    for (topic, payload) in expected {
        let got = sub.recv_publish().await;
        assert_eq!(
            (got.topic.as_str(), &got.payload[..]),
            (topic, payload.as_bytes())
        );
        // The subscriber did not ask for aliases: none of the publisher's leaks through.
        assert_eq!(got.properties.topic_alias, None);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_9_topic_alias_above_the_broker_maximum_is_disconnect_0x94() {
    let (server, addr) = start_with(|c| c.limits.topic_alias_maximum = 2).await;
    let (mut publ, ack) = Raw::connect_with(addr, V5, "pub", |_| {}).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(2));
    let mut p = publish("al/x", b"x", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(3);
    publ.send(p.into()).await;
    publ.expect_disconnect(ReasonCode::TopicAliasInvalid).await;

    // With aliases disabled, alias 1 is already too high.
    let (server0, addr0) = start_with(|c| c.limits.topic_alias_maximum = 0).await;
    let (mut publ, ack) = Raw::connect_with(addr0, V5, "pub", |_| {}).await;
    assert_eq!(ack.properties.topic_alias_maximum.unwrap_or(0), 0);
    let mut p = publish("al/x", b"x", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(1);
    publ.send(p.into()).await;
    publ.expect_disconnect(ReasonCode::TopicAliasInvalid).await;
    server0.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn v5_empty_topic_with_unknown_topic_alias_is_disconnect_0x82() {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    let mut p = publish("", b"x", QoS::AtLeastOnce, 1);
    p.properties.topic_alias = Some(1);
    publ.send(p.into()).await;
    publ.expect_disconnect(ReasonCode::ProtocolError).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_7_topic_alias_mappings_do_not_survive_a_reconnect() {
    let (server, addr) = start().await;
    let (mut publ, _) = persistent(addr, "pub", true).await;
    let mut p = publish("al/x", b"x", QoS::AtLeastOnce, 1);
    p.properties.topic_alias = Some(1);
    publ.publish_packet(p).await;
    publ.disconnect().await;
    let (mut publ, present) = persistent(addr, "pub", false).await;
    assert!(present, "same session, new connection");
    let mut p = publish("", b"x", QoS::AtLeastOnce, 2);
    p.properties.topic_alias = Some(1);
    publ.send(p.into()).await;
    publ.expect_disconnect(ReasonCode::ProtocolError).await;
    server.shutdown().await;
}

// ---- topic aliases, broker to client ----

#[tokio::test]
async fn mqtt_3_3_2_11_broker_aliases_stay_within_the_client_maximum() {
    let (server, addr) = start().await;
    let (mut sub, _) = Raw::connect_with(addr, V5, "sub", |c| {
        c.properties.topic_alias_maximum = Some(5);
    })
    .await;
    sub.subscribe(1, "ta/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;

    // The first message on a topic carries topic and alias, the next ones the alias alone.
    publ.publish("ta/0", b"a", QoS::AtLeastOnce, false, 1).await;
    let first = sub.recv_publish().await;
    assert_eq!(first.topic, "ta/0");
    let alias = first.properties.topic_alias.expect("alias assigned");
    assert!((1..=5).contains(&alias), "{alias}");
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publ.publish("ta/0", b"b", qos, false, 2 + i as u16).await;
        let next = sub.recv_publish().await;
        assert_eq!(next.topic, "", "alias alone on a known topic");
        assert_eq!(next.properties.topic_alias, Some(alias));
        assert_eq!(&next.payload[..], b"b");
    }

    // Many topics: whatever the broker does, every alias is within 1..=5 and resolves, the
    // way a client resolves it, to the topic published.
    let mut table: HashMap<u16, MqttString> = HashMap::new();
    table.insert(alias, s("ta/0"));
    for round in 0..2 {
        for n in 0..8u16 {
            let topic = format!("ta/{n}");
            publ.publish(&topic, b"c", QoS::AtLeastOnce, false, 10 + n)
                .await;
            let got = sub.recv_publish().await;
            let resolved = match got.properties.topic_alias {
                Some(a) => {
                    assert!((1..=5).contains(&a), "alias {a} above the client maximum");
                    if !got.topic.is_empty() {
                        table.insert(a, got.topic.clone());
                    }
                    table.get(&a).cloned().expect("alias was set before use")
                }
                None => got.topic.clone(),
            };
            assert_eq!(resolved, topic.as_str(), "round {round}");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_27_no_topic_alias_for_a_client_with_maximum_0() {
    let (server, addr) = start().await;
    let (mut absent, _) = Raw::connect_with(addr, V5, "absent", |_| {}).await;
    absent.subscribe(1, "ta/#", QoS::AtLeastOnce).await;
    let (mut zero, _) = Raw::connect_with(addr, V5, "zero", |c| {
        c.properties.topic_alias_maximum = Some(0);
    })
    .await;
    zero.subscribe(1, "ta/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    for id in 1..=3 {
        publ.publish("ta/same", b"x", QoS::AtLeastOnce, false, id)
            .await;
        for sub in [&mut absent, &mut zero] {
            let got = sub.recv_publish().await;
            assert_eq!(got.topic, "ta/same");
            assert_eq!(got.properties.topic_alias, None);
        }
    }
    server.shutdown().await;
}

// ---- subscription identifiers ----

#[tokio::test]
async fn mqtt_3_3_4_3_publish_carries_the_subscription_identifier() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    sub.subscribe_with(1, "sid/a", options, Some(42)).await;
    sub.subscribe_with(2, "sid/b", options, None).await;
    sub.subscribe_with(3, "sid/c", options, Some(268_435_455))
        .await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    for (topic, ids) in [
        ("sid/a", vec![42]),
        ("sid/b", vec![]),
        ("sid/c", vec![268_435_455]),
    ] {
        publ.publish(topic, b"x", QoS::AtLeastOnce, false, 1).await;
        let got = sub.recv_publish().await;
        assert_eq!(got.topic, topic);
        assert_eq!(got.properties.subscription_identifiers, ids, "{topic}");
    }
    // Replacing a subscription replaces its identifier.
    sub.subscribe_with(4, "sid/a", options, Some(7)).await;
    publ.publish("sid/a", b"x", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(
        sub.recv_publish().await.properties.subscription_identifiers,
        vec![7]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_4_4_overlapping_subscriptions_give_one_copy_with_every_identifier() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    let at = |qos| SubscriptionOptions {
        qos,
        ..Default::default()
    };
    sub.subscribe_with(1, "ov/+", at(QoS::AtMostOnce), Some(1))
        .await;
    sub.subscribe_with(2, "ov/#", at(QoS::AtLeastOnce), Some(2))
        .await;
    sub.subscribe_with(3, "ov/x", at(QoS::AtMostOnce), None)
        .await;
    sub.subscribe_with(4, "#", at(QoS::AtMostOnce), Some(3))
        .await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    publ.publish("ov/x", b"one", QoS::AtLeastOnce, false, 1)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"one");
    // One copy, at the highest QoS granted among the matches [MQTT-3.3.4-2].
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let mut ids = got.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    // No second copy: the next thing to arrive is the next message.
    publ.publish("other", b"two", QoS::AtLeastOnce, false, 2)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"two");
    assert_eq!(got.properties.subscription_identifiers, vec![3]);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_4_6_publish_from_a_client_with_a_subscription_identifier_is_a_protocol_error() {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    let mut p = publish("sid/x", b"x", QoS::AtLeastOnce, 1);
    p.properties.subscription_identifiers = vec![5];
    publ.send(p.into()).await;
    publ.expect_disconnect(ReasonCode::ProtocolError).await;
    server.shutdown().await;
}

// ---- No Local, Retain As Published ----

#[tokio::test]
async fn mqtt_3_8_3_3_no_local_messages_are_not_sent_back_to_their_publisher() {
    let (server, addr) = start().await;
    let mut me = Raw::connect(addr, V5, "me").await;
    let no_local = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        ..Default::default()
    };
    me.subscribe_with(1, "nl/#", no_local, None).await;
    let mut other = Raw::connect(addr, V5, "other").await;
    other.subscribe(1, "nl/#", QoS::AtLeastOnce).await;

    me.publish("nl/mine", b"mine", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&other.recv_publish().await.payload[..], b"mine");
    other
        .publish("nl/theirs", b"theirs", QoS::AtLeastOnce, false, 1)
        .await;
    // Other clients' messages still come; the own one never came before them.
    let got = me.recv_publish().await;
    assert_eq!(&got.payload[..], b"theirs");
    // Without No Local, the publisher's own message comes back.
    assert_eq!(&other.recv_publish().await.payload[..], b"theirs");
    me.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_12_retain_flag_is_cleared_without_retain_as_published() {
    let (server, addr) = start().await;
    let mut plain = Raw::connect(addr, V5, "plain").await;
    plain.subscribe(1, "rap/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    publ.publish("rap/x", b"x", QoS::AtLeastOnce, true, 1).await;
    let got = plain.recv_publish().await;
    assert!(!got.retain, "live message forwarded with RETAIN set");
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_13_retain_as_published_keeps_the_retain_flag() {
    let (server, addr) = start().await;
    let mut rap = Raw::connect(addr, V5, "rap").await;
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        retain_as_published: true,
        ..Default::default()
    };
    rap.subscribe_with(1, "rap/#", options, None).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    publ.publish("rap/x", b"retained", QoS::AtLeastOnce, true, 1)
        .await;
    publ.publish("rap/x", b"plain", QoS::AtLeastOnce, false, 2)
        .await;
    let got = rap.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"retained"[..], true));
    let got = rap.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"plain"[..], false));
    server.shutdown().await;
}

// ---- forwarded properties ----

#[tokio::test]
async fn mqtt_3_3_2_15_and_16_request_response_properties_are_forwarded_unchanged() {
    let (server, addr) = start().await;
    let mut responder = Raw::connect(addr, V5, "responder").await;
    responder.subscribe(1, "svc/req", QoS::AtLeastOnce).await;
    let mut requester = Raw::connect(addr, V5, "requester").await;
    requester
        .subscribe(1, "svc/resp/requester", QoS::AtLeastOnce)
        .await;

    // Correlation data is binary: bytes that are not UTF-8 must pass untouched.
    let correlation = Bytes::from_static(&[0x00, 0xFF, 0xC3, 0x28, 0x01]);
    let mut request = publish("svc/req", b"what time is it", QoS::AtLeastOnce, 1);
    request.properties.response_topic = Some(s("svc/resp/requester"));
    request.properties.correlation_data = Some(correlation.clone());
    requester.publish_packet(request).await;

    let got = responder.recv_publish().await;
    let response_topic = got
        .properties
        .response_topic
        .clone()
        .expect("response topic");
    assert_eq!(response_topic, "svc/resp/requester");
    assert_eq!(got.properties.correlation_data, Some(correlation.clone()));

    let mut response = publish(response_topic.as_str(), b"noon", QoS::AtLeastOnce, 1);
    response.properties.correlation_data = got.properties.correlation_data.clone();
    responder.publish_packet(response).await;
    let got = requester.recv_publish().await;
    assert_eq!(&got.payload[..], b"noon");
    assert_eq!(got.properties.correlation_data, Some(correlation));
    assert_eq!(got.properties.response_topic, None);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_20_content_type_is_forwarded_unchanged() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    sub.subscribe(1, "ct/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    let mut p = publish("ct/x", b"{}", QoS::AtLeastOnce, 1);
    p.properties.content_type = Some(s("application/json; charset=utf-8 ✓"));
    publ.publish_packet(p).await;
    let got = sub.recv_publish().await;
    assert_eq!(
        got.properties.content_type.as_ref().map(|c| c.as_str()),
        Some("application/json; charset=utf-8 ✓")
    );
    publ.publish("ct/y", b"raw", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(sub.recv_publish().await.properties.content_type, None);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_4_payload_format_indicator_is_forwarded_unchanged() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    sub.subscribe(1, "pfi/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    for (id, pfi, payload) in [
        (1, Some(true), &b"text \xE2\x9C\x93"[..]),
        (2, Some(false), &b"\xFF\xFE binary"[..]),
        (3, None, &b"\xFF unspecified"[..]),
    ] {
        let mut p = publish("pfi/x", payload, QoS::AtLeastOnce, id);
        p.properties.payload_format_indicator = pfi;
        assert_eq!(publ.publish_packet(p).await, ReasonCode::Success);
        let got = sub.recv_publish().await;
        assert_eq!(&got.payload[..], payload);
        // PFI 0 and absent mean the same; 1 must arrive as 1.
        assert_eq!(
            got.properties.payload_format_indicator.unwrap_or(false),
            pfi.unwrap_or(false)
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn v5_publish_with_utf8_format_and_invalid_payload_is_refused_with_0x99() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    sub.subscribe(1, "pfi/#", QoS::ExactlyOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    for (id, qos) in [
        (1, QoS::AtMostOnce),
        (2, QoS::AtLeastOnce),
        (3, QoS::ExactlyOnce),
    ] {
        let mut p = publish("pfi/bad", b"\xC3\x28 not utf-8", qos, id);
        p.properties.payload_format_indicator = Some(true);
        let reason = publ.publish_packet(p).await;
        if qos != QoS::AtMostOnce {
            // PUBACK for QoS 1, PUBREC for QoS 2 (publish_packet checks which).
            assert_eq!(reason, ReasonCode::PayloadFormatInvalid, "{qos:?}");
        }
    }
    // None was delivered: the first to arrive is the next valid message.
    publ.publish("pfi/good", b"ok", QoS::AtLeastOnce, false, 4)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(got.topic, "pfi/good");
    // The connection goes on after a refused PUBLISH.
    publ.publish("pfi/good", b"ok2", QoS::AtLeastOnce, false, 5)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"ok2");
    assert_eq!(
        server
            .broker()
            .metrics
            .dropped(DropReason::PayloadFormatInvalid),
        3
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_17_and_18_user_properties_are_forwarded_in_order() {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    sub.subscribe(1, "up/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    let props: Vec<(MqttString, MqttString)> = [
        ("z", "1"),
        ("a", "2"),
        ("z", "3"),
        ("dup", "same"),
        ("dup", "same"),
        ("", ""),
        ("ünï", "cødé"),
    ]
    .iter()
    .map(|(k, v)| (s(k), s(v)))
    .collect();
    let mut p = publish("up/x", b"x", QoS::AtLeastOnce, 1);
    p.properties.user_properties = props.clone();
    publ.publish_packet(p).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.properties.user_properties, props);
    server.shutdown().await;
}

// ---- Maximum Packet Size ----

#[tokio::test]
async fn mqtt_3_2_2_15_packet_larger_than_the_broker_maximum_is_disconnect_0x95() {
    let (server, addr) = start_with(|c| c.limits.max_packet_size = 128).await;
    let mut sub = Raw::connect(addr, V5, "sub").await;
    sub.subscribe(1, "mps/#", QoS::AtLeastOnce).await;
    let (mut publ, ack) = Raw::connect_with(addr, V5, "pub", |_| {}).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(128));
    // Just under the limit passes.
    let small = publish("mps/x", &[b'a'; 100], QoS::AtLeastOnce, 1);
    assert!(Packet::from(small.clone()).encoded_len(V5) <= 128);
    assert_eq!(publ.publish_packet(small).await, ReasonCode::Success);
    assert_eq!(sub.recv_publish().await.payload.len(), 100);

    let big = publish("mps/x", &[b'b'; 200], QoS::AtLeastOnce, 2);
    publ.send(big.into()).await;
    publ.expect_disconnect(ReasonCode::PacketTooLarge).await;
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_2_25_message_too_large_for_the_client_is_discarded_and_the_next_one_sent() {
    let (server, addr) = start().await;
    let (mut sub, _) = Raw::connect_with(addr, V5, "sub", |c| {
        c.properties.maximum_packet_size = Some(100);
    })
    .await;
    sub.subscribe(1, "mps/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        // The publisher is acknowledged as usual: the broker behaves as if it was sent.
        assert_eq!(
            publ.publish("mps/big", &[b'x'; 200], qos, false, 1).await,
            ReasonCode::Success
        );
    }
    publ.publish("mps/small", b"small", QoS::AtLeastOnce, false, 2)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(got.topic, "mps/small");
    assert_eq!(
        server
            .broker()
            .metrics
            .dropped(DropReason::TooLargeForClient),
        2
    );
    server.shutdown().await;
}

// ---- reason strings ----

/// Publishes to a `$SYS` topic at QoS 1 and returns the PUBACK.
async fn refused_sys_publish(
    addr: std::net::SocketAddr,
    problem_info: Option<bool>,
) -> mqtt_codec::Ack {
    let (mut client, _) = Raw::connect_with(addr, V5, "c", |c| {
        c.properties.request_problem_information = problem_info;
    })
    .await;
    client
        .send(publish("$SYS/broker/uptime", b"0", QoS::AtLeastOnce, 1).into())
        .await;
    match client.recv().await {
        Packet::PubAck(ack) => {
            assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
            client.disconnect().await;
            ack
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtt_3_1_2_29_no_reason_string_when_problem_information_is_not_requested() {
    let (server, addr) = start().await;
    let ack = refused_sys_publish(addr, Some(false)).await;
    assert_eq!(ack.properties.reason_string, None);
    assert!(ack.properties.user_properties.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn v5_reason_string_is_sent_when_problem_information_is_requested() {
    let (server, addr) = start().await;
    for requested in [Some(true), None] {
        let ack = refused_sys_publish(addr, requested).await;
        let text = ack.properties.reason_string.expect("reason string");
        assert!(!text.is_empty(), "{requested:?}");
    }
    server.shutdown().await;
}

// ---- AUTH ----

#[tokio::test]
async fn mqtt_4_12_0_7_auth_without_enhanced_authentication_is_disconnect_0x82() {
    let (server, addr) = start().await;
    let mut client = Raw::connect(addr, V5, "c").await;
    let mut auth = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        ..Default::default()
    };
    auth.properties.authentication_method = Some(s("SCRAM-SHA-256"));
    client.send(Packet::Auth(auth)).await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;

    let mut client = Raw::connect(addr, V5, "c2").await;
    let mut auth = Auth {
        reason_code: ReasonCode::ReAuthenticate,
        ..Default::default()
    };
    auth.properties.authentication_method = Some(s("PLAIN"));
    client.send(Packet::Auth(auth)).await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;
    server.shutdown().await;
}
