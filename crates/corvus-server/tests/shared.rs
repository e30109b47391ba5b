//! Shared subscriptions `$share/{group}/{filter}`: one member of each group gets each message,
//! round robin; groups are independent; members leave by unsubscribing or ending their session;
//! 3.1.1 clients may share too; No Local is refused.

mod common;

use common::*;
use mqtt_codec::{
    Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
    Unsubscribe,
};

/// Publishes `n` QoS 1 messages with payloads "0".."n-1" (each routed before its PUBACK).
async fn publish_numbered(publ: &mut Raw, topic: &str, n: usize) {
    for i in 0..n {
        let ack = publ
            .publish(topic, i.to_string().as_bytes(), QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(ack, ReasonCode::Success);
    }
}

/// Receives exactly `n` messages (and then nothing more) and returns their payloads as numbers.
async fn numbers(raw: &mut Raw, n: usize) -> Vec<usize> {
    let got = recv_publishes_acked(raw, n).await;
    assert_nothing_queued(raw).await;
    got.iter()
        .map(|p| std::str::from_utf8(&p.payload).unwrap().parse().unwrap())
        .collect()
}

/// Two members of one group, ten messages: five each, alternating.
async fn round_robin(versions: [ProtocolVersion; 2]) {
    let (server, addr) = start().await;
    let mut members = Vec::new();
    for (i, version) in versions.into_iter().enumerate() {
        let mut m = Raw::connect(addr, version, &format!("member{i}")).await;
        assert_eq!(
            m.subscribe(1, "$share/g/s/+", QoS::AtLeastOnce).await,
            vec![ReasonCode::GrantedQoS1],
            "{version:?} member accepted"
        );
        members.push(m);
    }
    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "pub").await;
    publish_numbered(&mut publ, "s/t", 10).await;
    let a = numbers(&mut members[0], 5).await;
    let b = numbers(&mut members[1], 5).await;
    let (evens, odds): (Vec<usize>, Vec<usize>) = (0..10).partition(|i| i % 2 == 0);
    assert!(
        (a == evens && b == odds) || (a == odds && b == evens),
        "alternating: {a:?} / {b:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_gives_each_message_to_exactly_one_member_round_robin() {
    round_robin([ProtocolVersion::V5, ProtocolVersion::V5]).await;
}

#[tokio::test]
async fn shared_subscriptions_are_accepted_from_v311_clients() {
    round_robin([ProtocolVersion::V3_1_1, ProtocolVersion::V3_1_1]).await;
    round_robin([ProtocolVersion::V3_1_1, ProtocolVersion::V5]).await;
}

#[tokio::test]
async fn separate_groups_each_get_a_copy() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut g1a = Raw::connect(addr, v5, "g1a").await;
    g1a.subscribe(1, "$share/g1/s/t", QoS::AtLeastOnce).await;
    let mut g1b = Raw::connect(addr, v5, "g1b").await;
    g1b.subscribe(1, "$share/g1/s/t", QoS::AtLeastOnce).await;
    let mut g2 = Raw::connect(addr, v5, "g2").await;
    g2.subscribe(1, "$share/g2/s/t", QoS::AtLeastOnce).await;
    // The same share name on another filter is another group.
    let mut g1_other = Raw::connect(addr, v5, "g1-other").await;
    g1_other
        .subscribe(1, "$share/g1/s/+", QoS::AtLeastOnce)
        .await;
    let mut plain = Raw::connect(addr, v5, "plain").await;
    plain.subscribe(1, "s/t", QoS::AtLeastOnce).await;

    let mut publ = Raw::connect(addr, v5, "pub").await;
    publish_numbered(&mut publ, "s/t", 4).await;
    let mut group1 = numbers(&mut g1a, 2).await;
    group1.extend(numbers(&mut g1b, 2).await);
    group1.sort();
    assert_eq!(group1, vec![0, 1, 2, 3], "group g1 gets each message once");
    assert_eq!(numbers(&mut g2, 4).await, vec![0, 1, 2, 3]);
    assert_eq!(numbers(&mut g1_other, 4).await, vec![0, 1, 2, 3]);
    assert_eq!(numbers(&mut plain, 4).await, vec![0, 1, 2, 3]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_member_that_unsubscribes_gets_no_more_messages() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut a = Raw::connect(addr, v5, "a").await;
    a.subscribe(1, "$share/g/u", QoS::AtLeastOnce).await;
    let mut b = Raw::connect(addr, v5, "b").await;
    b.subscribe(1, "$share/g/u", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, v5, "pub").await;
    publish_numbered(&mut publ, "u", 2).await;
    assert_eq!(numbers(&mut a, 1).await.len(), 1);
    assert_eq!(numbers(&mut b, 1).await.len(), 1);

    a.send(
        Unsubscribe {
            packet_id: pid(2),
            properties: Default::default(),
            filters: vec![s("$share/g/u")],
        }
        .into(),
    )
    .await;
    match a.recv().await {
        Packet::UnsubAck(ack) => assert_eq!(ack.reason_codes, vec![ReasonCode::Success]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    publish_numbered(&mut publ, "u", 4).await;
    assert_eq!(numbers(&mut b, 4).await, vec![0, 1, 2, 3]);
    assert_nothing_queued(&mut a).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_member_whose_session_ends_leaves_the_group() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut a = Raw::connect(addr, v5, "a").await;
    a.subscribe(1, "$share/g/e", QoS::AtLeastOnce).await;
    let mut b = Raw::connect(addr, v5, "b").await;
    b.subscribe(1, "$share/g/e", QoS::AtLeastOnce).await;
    assert_eq!(server.broker().subscription_count(), 2);
    // Session Expiry 0: the session, and its membership, end with the connection, before the
    // client sees the close.
    a.disconnect().await;
    assert!(server.broker().session("a").is_none(), "a's session ended");
    assert_eq!(server.broker().subscription_count(), 1, "a left the group");
    let mut publ = Raw::connect(addr, v5, "pub").await;
    publish_numbered(&mut publ, "e", 4).await;
    assert_eq!(numbers(&mut b, 4).await, vec![0, 1, 2, 3]);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_4_8_2_3_each_member_gets_messages_at_its_own_granted_qos() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut low = Raw::connect(addr, v5, "low").await;
    low.subscribe(1, "$share/g/q", QoS::AtMostOnce).await;
    let mut high = Raw::connect(addr, v5, "high").await;
    high.subscribe(1, "$share/g/q", QoS::ExactlyOnce).await;
    let mut publ = Raw::connect(addr, v5, "pub").await;
    for i in 0..2 {
        publ.publish("q", b"x", QoS::ExactlyOnce, false, i + 1)
            .await;
    }
    let got = recv_publishes_acked(&mut low, 1).await;
    assert_eq!(got[0].qos, QoS::AtMostOnce);
    let got = recv_publishes_acked(&mut high, 1).await;
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_8_3_4_no_local_on_a_shared_subscription_gets_disconnect_0x82() {
    let (server, addr) = start().await;
    let mut client = Raw::connect(addr, ProtocolVersion::V5, "c").await;
    let subscribe = Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: s("$share/g/nl"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                ..Default::default()
            },
        }],
    };
    client.send(subscribe.into()).await;
    client.expect_disconnect(ReasonCode::ProtocolError).await;
    // Nothing was subscribed.
    assert_eq!(server.broker().subscription_count(), 0);
    server.shutdown().await;
}
