//! Retained messages: stored, replaced and cleared; sent to new subscriptions with RETAIN 1
//! and to existing ones with RETAIN 0 (unless Retain As Published); Retain Handling; message
//! expiry; the subscription's QoS cap; wildcards; shared subscriptions.

mod common;

use bytes::Bytes;
use common::*;
use mqtt_codec::{ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubscriptionOptions};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

fn options(
    qos: QoS,
    retain_handling: RetainHandling,
    retain_as_published: bool,
) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        retain_handling,
        retain_as_published,
        ..Default::default()
    }
}

/// Publishes retained "v1", then "v2": a new subscriber gets only the last one, with RETAIN 1.
async fn stored_replaced_and_sent(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    publ.publish("r/t", b"v1", QoS::AtLeastOnce, true, 1).await;

    let mut first = Raw::connect(addr, version, "first").await;
    first.subscribe(1, "r/t", QoS::AtLeastOnce).await;
    let got = recv_publishes_acked(&mut first, 1).await;
    assert_eq!(&got[0].payload[..], b"v1");
    assert!(
        got[0].retain,
        "sent because of a new subscription: RETAIN 1"
    );
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_nothing_queued(&mut first).await;

    publ.publish("r/t", b"v2", QoS::AtLeastOnce, true, 2).await;
    let mut second = Raw::connect(addr, version, "second").await;
    second.subscribe(1, "r/t", QoS::AtLeastOnce).await;
    let got = recv_publishes_acked(&mut second, 1).await;
    assert_eq!(&got[0].payload[..], b"v2", "replaced");
    assert!(got[0].retain);
    assert_nothing_queued(&mut second).await;
    assert_eq!(server.broker().retained_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_5_retained_message_is_stored_replaced_and_sent_to_new_subscribers_with_retain_1(
) {
    stored_replaced_and_sent(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_3_3_1_6_and_3_3_1_8_retained_message_is_replaced_and_sent_to_new_subscribers_with_retain_1(
) {
    stored_replaced_and_sent(ProtocolVersion::V3_1_1).await;
}

/// A retained PUBLISH reaching an existing subscription goes out with RETAIN 0.
async fn existing_subscribers_get_retain_0(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, version, "sub").await;
    sub.subscribe(1, "r/live", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    publ.publish("r/live", b"now", QoS::AtLeastOnce, true, 1)
        .await;
    let got = recv_publishes_acked(&mut sub, 1).await;
    assert_eq!(&got[0].payload[..], b"now");
    assert!(!got[0].retain, "existing subscription: RETAIN 0");
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_12_existing_subscribers_get_a_retained_publish_with_retain_0() {
    existing_subscribers_get_retain_0(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_3_3_1_9_existing_subscribers_get_a_retained_publish_with_retain_0() {
    existing_subscribers_get_retain_0(ProtocolVersion::V3_1_1).await;
}

/// A retained PUBLISH with an empty payload is delivered to current subscribers like any other
/// message (RETAIN 0), and clears the topic's retained message without being stored itself.
async fn empty_payload_clears(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    publ.publish("r/clear", b"old", QoS::AtLeastOnce, true, 1)
        .await;
    let mut sub = Raw::connect(addr, version, "sub").await;
    sub.subscribe(1, "r/clear", QoS::AtLeastOnce).await;
    assert!(recv_publishes_acked(&mut sub, 1).await[0].retain);
    assert_eq!(server.broker().retained_count(), 1);

    publ.publish("r/clear", b"", QoS::AtLeastOnce, true, 2)
        .await;
    let got = recv_publishes_acked(&mut sub, 1).await;
    assert!(got[0].payload.is_empty());
    assert!(!got[0].retain);

    let mut late = Raw::connect(addr, version, "late").await;
    late.subscribe(1, "r/clear", QoS::AtLeastOnce).await;
    assert_nothing_queued(&mut late).await;
    assert_eq!(server.broker().retained_count(), 0, "nothing stored");
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_6_and_3_3_1_7_empty_retained_payload_clears_and_still_reaches_subscribers() {
    empty_payload_clears(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_3_3_1_10_and_3_3_1_11_empty_retained_payload_clears_and_still_reaches_subscribers(
) {
    empty_payload_clears(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn mqtt_3_3_1_8_a_publish_without_retain_leaves_the_retained_message_alone() {
    // The same rule is MQTT-3.3.1-12 in 3.1.1.
    for version in VERSIONS {
        let (server, addr) = start().await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("r/k", b"kept", QoS::AtLeastOnce, true, 1)
            .await;
        publ.publish("r/k", b"live", QoS::AtLeastOnce, false, 2)
            .await;
        publ.publish("r/k", b"", QoS::AtLeastOnce, false, 3).await;
        let mut sub = Raw::connect(addr, version, "sub").await;
        sub.subscribe(1, "r/k", QoS::AtLeastOnce).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(&got[0].payload[..], b"kept", "{version:?}");
        assert_nothing_queued(&mut sub).await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn v311_mqtt_3_3_1_7_a_retained_qos0_message_replaces_the_previous_one() {
    let (server, addr) = start().await;
    let version = ProtocolVersion::V3_1_1;
    let mut publ = Raw::connect(addr, version, "pub").await;
    publ.publish("r/q0", b"qos1", QoS::AtLeastOnce, true, 1)
        .await;
    publ.publish("r/q0", b"qos0", QoS::AtMostOnce, true, 0)
        .await;
    // A QoS 1 marker after it: the QoS 0 publish has been handled once this is acknowledged.
    publ.publish("r/other", b"x", QoS::AtLeastOnce, false, 2)
        .await;
    let mut sub = Raw::connect(addr, version, "sub").await;
    sub.subscribe(1, "r/q0", QoS::AtLeastOnce).await;
    let got = recv_publishes_acked(&mut sub, 1).await;
    assert_eq!(&got[0].payload[..], b"qos0");
    assert_eq!(got[0].qos, QoS::AtMostOnce);
    assert_nothing_queued(&mut sub).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_9_retain_handling_0_sends_retained_messages_at_every_subscribe() {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("rh/0", b"r", QoS::AtLeastOnce, true, 1).await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "sub").await;
    for round in 0..2 {
        let opts = options(QoS::AtLeastOnce, RetainHandling::SendAtSubscribe, false);
        sub.subscribe_with(1, "rh/0", opts, None).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(&got[0].payload[..], b"r", "subscribe #{round}");
        assert!(got[0].retain);
        assert_nothing_queued(&mut sub).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_3_8_4_3_resubscribing_sends_the_retained_messages_again() {
    let (server, addr) = start().await;
    let version = ProtocolVersion::V3_1_1;
    let mut publ = Raw::connect(addr, version, "pub").await;
    publ.publish("rh/again", b"r", QoS::AtLeastOnce, true, 1)
        .await;
    let mut sub = Raw::connect(addr, version, "sub").await;
    for round in 0..2 {
        sub.subscribe(1, "rh/again", QoS::AtLeastOnce).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(&got[0].payload[..], b"r", "subscribe #{round}");
        assert!(got[0].retain);
        assert_nothing_queued(&mut sub).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_10_retain_handling_1_sends_retained_messages_only_for_a_new_subscription() {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("rh/1", b"r", QoS::AtLeastOnce, true, 1).await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "sub").await;
    let opts = options(QoS::AtLeastOnce, RetainHandling::SendIfNew, false);
    sub.subscribe_with(1, "rh/1", opts, None).await;
    let got = recv_publishes_acked(&mut sub, 1).await;
    assert_eq!(&got[0].payload[..], b"r");
    assert!(got[0].retain);
    // The same filter again replaces an existing subscription: nothing is sent.
    sub.subscribe_with(2, "rh/1", opts, None).await;
    assert_nothing_queued(&mut sub).await;
    // Even with another QoS: still the same subscription being replaced.
    let opts_qos0 = options(QoS::AtMostOnce, RetainHandling::SendIfNew, false);
    sub.subscribe_with(3, "rh/1", opts_qos0, None).await;
    assert_nothing_queued(&mut sub).await;
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_11_retain_handling_2_never_sends_retained_messages_at_subscribe() {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publ.publish("rh/2", b"r", QoS::AtLeastOnce, true, 1).await;
    let mut sub = Raw::connect(addr, ProtocolVersion::V5, "sub").await;
    let opts = options(QoS::AtLeastOnce, RetainHandling::DoNotSend, false);
    assert_eq!(
        sub.subscribe_with(1, "rh/2", opts, None).await,
        vec![ReasonCode::GrantedQoS1]
    );
    assert_nothing_queued(&mut sub).await;
    // The subscription works: later messages arrive.
    publ.publish("rh/2", b"later", QoS::AtLeastOnce, true, 2)
        .await;
    let got = recv_publishes_acked(&mut sub, 1).await;
    assert_eq!(&got[0].payload[..], b"later");
    assert!(!got[0].retain);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_1_13_retain_as_published_keeps_the_retain_flag_of_the_publish() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut rap = Raw::connect(addr, v5, "rap").await;
    rap.subscribe_with(
        1,
        "rap/t",
        options(QoS::AtLeastOnce, RetainHandling::SendAtSubscribe, true),
        None,
    )
    .await;
    let mut plain = Raw::connect(addr, v5, "plain").await;
    plain.subscribe(1, "rap/t", QoS::AtLeastOnce).await;

    let mut publ = Raw::connect(addr, v5, "pub").await;
    publ.publish("rap/t", b"retained", QoS::AtLeastOnce, true, 1)
        .await;
    publ.publish("rap/t", b"plain", QoS::AtLeastOnce, false, 2)
        .await;
    let got = recv_publishes_acked(&mut rap, 2).await;
    assert!(got[0].retain, "Retain As Published: RETAIN 1 as published");
    assert!(!got[1].retain, "Retain As Published: RETAIN 0 as published");
    let got = recv_publishes_acked(&mut plain, 2).await;
    assert!(
        !got[0].retain && !got[1].retain,
        "MQTT-3.3.1-12: without Retain As Published, RETAIN 0"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_5_an_expired_retained_message_is_not_sent() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut publ = Raw::connect(addr, v5, "pub").await;
    let mut expiring = Publish::new(s("exp/short"), Bytes::from_static(b"short-lived"));
    expiring.qos = QoS::AtLeastOnce;
    expiring.retain = true;
    expiring.packet_id = Some(pid(1));
    expiring.properties.message_expiry_interval = Some(1);
    publ.publish_packet(expiring).await;
    publ.publish("exp/keep", b"keeper", QoS::AtLeastOnce, true, 2)
        .await;

    let mut early = Raw::connect(addr, v5, "early").await;
    early.subscribe(1, "exp/short", QoS::AtLeastOnce).await;
    let got = recv_publishes_acked(&mut early, 1).await;
    assert_eq!(&got[0].payload[..], b"short-lived");
    assert_eq!(
        got[0].properties.message_expiry_interval,
        Some(1),
        "MQTT-3.3.2-6: the remaining lifetime, never more than published"
    );

    // Let the 1 s expiry interval pass.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let mut late = Raw::connect(addr, v5, "late").await;
    late.subscribe(1, "exp/#", QoS::AtLeastOnce).await;
    let got = recv_publishes_acked(&mut late, 1).await;
    assert_eq!(&got[0].payload[..], b"keeper", "only the unexpired one");
    assert_nothing_queued(&mut late).await;
    server.shutdown().await;
}

/// The retained message goes out at the lower of its own QoS and the subscription's.
async fn retained_qos_capped(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    publ.publish("cap/2", b"two", QoS::ExactlyOnce, true, 1)
        .await;
    publ.publish("cap/1", b"one", QoS::AtLeastOnce, true, 2)
        .await;
    for sub_qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut sub = Raw::connect(addr, version, &format!("sub{}", sub_qos as u8)).await;
        sub.subscribe(1, "cap/2", sub_qos).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(
            got[0].qos,
            sub_qos.min(QoS::ExactlyOnce),
            "cap/2 at {sub_qos:?}"
        );
        sub.subscribe(2, "cap/1", sub_qos).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(
            got[0].qos,
            sub_qos.min(QoS::AtLeastOnce),
            "cap/1 at {sub_qos:?}"
        );
        assert_nothing_queued(&mut sub).await;
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_8_4_8_a_retained_message_is_sent_at_most_at_the_subscription_qos() {
    retained_qos_capped(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_3_8_4_6_a_retained_message_is_sent_at_most_at_the_subscription_qos() {
    retained_qos_capped(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn retained_messages_of_every_topic_a_wildcard_filter_matches_are_sent() {
    for version in VERSIONS {
        let (server, addr) = start().await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        let topics = ["w", "w/a", "w/b", "w/b/c", "w//d", "x/a", "ww/a", "$w/a"];
        for (i, topic) in topics.iter().enumerate() {
            publ.publish(
                topic,
                topic.as_bytes(),
                QoS::AtLeastOnce,
                true,
                i as u16 + 1,
            )
            .await;
        }
        for (filter, expected) in [
            ("w/#", vec!["w", "w//d", "w/a", "w/b", "w/b/c"]),
            ("w/+", vec!["w/a", "w/b"]),
            // Not "$w/a": a first-level wildcard does not match a `$` topic [MQTT-4.7.2-1].
            ("#", topics[..7].to_vec()),
            ("+/a", vec!["w/a", "ww/a", "x/a"]),
            ("$w/#", vec!["$w/a"]),
        ] {
            let mut sub = Raw::connect(addr, version, "sub").await;
            sub.subscribe(1, filter, QoS::AtLeastOnce).await;
            let got = recv_publishes_acked(&mut sub, expected.len()).await;
            let mut topics: Vec<String> = got.iter().map(|p| p.topic.to_string()).collect();
            topics.sort();
            let mut expected: Vec<String> = expected.iter().map(|t| t.to_string()).collect();
            expected.sort();
            assert_eq!(topics, expected, "{version:?} {filter}");
            assert!(got
                .iter()
                .all(|p| p.retain && p.payload == p.topic.as_bytes()));
            assert_nothing_queued(&mut sub).await;
            sub.disconnect().await;
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_shared_subscription_gets_no_retained_messages() {
    for version in VERSIONS {
        let (server, addr) = start().await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("sh/t", b"r", QoS::AtLeastOnce, true, 1).await;
        let mut sub = Raw::connect(addr, version, "sub").await;
        assert_eq!(
            sub.subscribe(1, "$share/g/sh/t", QoS::AtLeastOnce).await,
            vec![ReasonCode::GrantedQoS1]
        );
        assert_nothing_queued(&mut sub).await;
        // The same client subscribing without sharing does get it.
        sub.subscribe(2, "sh/t", QoS::AtLeastOnce).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert!(got[0].retain, "{version:?}");
        assert_nothing_queued(&mut sub).await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn mqtt_3_3_4_3_a_retained_message_sent_at_subscribe_carries_the_subscription_identifier() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut publ = Raw::connect(addr, v5, "pub").await;
    publ.publish("sid/t", b"r", QoS::AtLeastOnce, true, 1).await;
    let mut sub = Raw::connect(addr, v5, "sub").await;
    let opts = options(QoS::AtLeastOnce, RetainHandling::SendAtSubscribe, false);
    sub.subscribe_with(1, "sid/+", opts, Some(77)).await;
    let got = recv_publishes_acked(&mut sub, 1).await;
    assert!(got[0].retain);
    assert_eq!(got[0].properties.subscription_identifiers, vec![77]);
    server.shutdown().await;
}
