//! Topic matching through the broker: `+` and `#`, empty levels, `$` topics, the reserved
//! `$SYS/` tree, invalid filters, unsubscribing, and overlapping subscriptions.

mod common;

use bytes::Bytes;
use common::*;
use mqtt_codec::{
    Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions, Unsubscribe,
};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// Published last; every subscriber also subscribes to it exactly, so once it arrives,
/// everything published before it has arrived too. `#` and `+` never match it (`$` topic).
const MARKER: &str = "$test/marker";

/// For each filter, the topics (out of `topics`) that a subscriber to it receives, in order.
async fn received_per_filter(
    version: ProtocolVersion,
    filters: &[&str],
    topics: &[&str],
) -> Vec<Vec<String>> {
    let (server, addr) = start().await;
    let mut subs = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        let mut sub = Raw::connect(addr, version, &format!("sub{i}")).await;
        let granted = sub.subscribe(1, filter, QoS::AtLeastOnce).await;
        assert_eq!(granted, vec![ReasonCode::GrantedQoS1], "{filter}");
        sub.subscribe(2, MARKER, QoS::AtLeastOnce).await;
        subs.push(sub);
    }
    let mut publ = Raw::connect(addr, version, "pub").await;
    for (i, topic) in topics.iter().enumerate() {
        let ack = publ
            .publish(
                topic,
                topic.as_bytes(),
                QoS::AtLeastOnce,
                false,
                i as u16 + 1,
            )
            .await;
        assert_eq!(ack, ReasonCode::Success, "{topic}");
    }
    publ.publish(MARKER, b"", QoS::AtLeastOnce, false, 1).await;
    let mut result = Vec::new();
    for (sub, filter) in subs.iter_mut().zip(filters) {
        let mut got = Vec::new();
        loop {
            let p = recv_publishes_acked(sub, 1).await.remove(0);
            if p.topic == MARKER {
                break;
            }
            assert_eq!(p.payload, p.topic.as_bytes(), "{filter}");
            got.push(p.topic.to_string());
        }
        result.push(got);
    }
    server.shutdown().await;
    result
}

/// Checks `(filter, expected topics)` cases against one set of published topics.
async fn check_matching(topics: &[&str], cases: &[(&str, &[&str])]) {
    let filters: Vec<&str> = cases.iter().map(|(f, _)| *f).collect();
    for version in VERSIONS {
        let received = received_per_filter(version, &filters, topics).await;
        for ((filter, expected), got) in cases.iter().zip(received) {
            assert_eq!(got, *expected, "{version:?}: filter {filter:?}");
        }
    }
}

const TOPICS: &[&str] = &[
    "sport",
    "sport/",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player1/score/wimbledon",
    "/finance",
    "finance",
    "a//b",
    "a/b",
    "/a",
    "a",
    "a/",
    "Accounts",
    "accounts",
];

#[tokio::test]
async fn multi_level_wildcard_matches_the_parent_level_and_any_number_of_levels() {
    check_matching(
        TOPICS,
        &[
            (
                "sport/tennis/player1/#",
                &[
                    "sport/tennis/player1",
                    "sport/tennis/player1/ranking",
                    "sport/tennis/player1/score/wimbledon",
                ],
            ),
            (
                "sport/#",
                &[
                    "sport",
                    "sport/",
                    "sport/tennis",
                    "sport/tennis/player1",
                    "sport/tennis/player1/ranking",
                    "sport/tennis/player1/score/wimbledon",
                ],
            ),
            ("a/#", &["a//b", "a/b", "a", "a/"]),
            ("#", TOPICS),
        ],
    )
    .await;
}

#[tokio::test]
async fn single_level_wildcard_matches_exactly_one_level_which_may_be_empty() {
    check_matching(
        TOPICS,
        &[
            ("sport/tennis/+", &["sport/tennis/player1"]),
            ("sport/+", &["sport/", "sport/tennis"]),
            ("+", &["sport", "finance", "a", "Accounts", "accounts"]),
            (
                "+/+",
                &["sport/", "sport/tennis", "/finance", "a/b", "/a", "a/"],
            ),
            ("/+", &["/finance", "/a"]),
            ("+/+/+", &["sport/tennis/player1", "a//b"]),
            ("a/+", &["a/b", "a/"]),
            ("a/+/b", &["a//b"]),
            ("+/a", &["/a"]),
            (
                "+/tennis/#",
                &[
                    "sport/tennis",
                    "sport/tennis/player1",
                    "sport/tennis/player1/ranking",
                    "sport/tennis/player1/score/wimbledon",
                ],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn empty_levels_and_leading_or_trailing_separators_are_significant() {
    check_matching(
        TOPICS,
        &[
            ("a//b", &["a//b"]),
            ("a/b", &["a/b"]),
            ("/a", &["/a"]),
            ("a", &["a"]),
            ("a/", &["a/"]),
            ("/finance", &["/finance"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn mqtt_4_7_3_4_topic_matching_does_not_normalise_case_or_levels() {
    check_matching(
        TOPICS,
        &[
            ("Accounts", &["Accounts"]),
            ("accounts", &["accounts"]),
            ("sport/tennis/", &[]),
            ("finance/", &[]),
        ],
    )
    .await;
}

#[tokio::test]
async fn mqtt_4_7_2_1_wildcards_at_the_first_level_do_not_match_topics_starting_with_dollar() {
    let topics = ["$foo", "$foo/bar", "foo/bar", "$foo/bar/baz"];
    check_matching(
        &topics,
        &[
            ("#", &["foo/bar"]),
            ("+", &[]),
            ("+/bar", &["foo/bar"]),
            ("+/#", &["foo/bar"]),
            ("$share/g/#", &["foo/bar"]),
            ("$share/g/$foo/#", &["$foo", "$foo/bar", "$foo/bar/baz"]),
            ("$foo/#", &["$foo", "$foo/bar", "$foo/bar/baz"]),
            ("$foo/+", &["$foo/bar"]),
            ("$foo", &["$foo"]),
            ("$foo/+/baz", &["$foo/bar/baz"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_client_may_not_publish_to_sys_topics() {
    for version in VERSIONS {
        let (server, addr) = start().await;
        let mut sub = Raw::connect(addr, version, "sub").await;
        sub.subscribe(1, "$SYS/#", QoS::ExactlyOnce).await;
        sub.subscribe(2, "$SYS", QoS::ExactlyOnce).await;
        sub.subscribe(3, MARKER, QoS::AtLeastOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        // v5 refuses with 0x87 Not authorized; 3.1.1 cannot say no, so it acknowledges and
        // drops [MQTT-3.3.5-2].
        let refused = if version.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::Success
        };
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            for topic in ["$SYS/broker/uptime", "$SYS"] {
                let ack = publ.publish(topic, b"fake", qos, false, i as u16 + 1).await;
                if qos != QoS::AtMostOnce {
                    assert_eq!(ack, refused, "{version:?} {qos:?} {topic}");
                }
            }
        }
        publ.publish(MARKER, b"", QoS::AtLeastOnce, false, 9).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(
            got[0].topic, MARKER,
            "{version:?}: nothing before the marker"
        );
        server.shutdown().await;
    }
}

async fn send_subscribe(raw: &mut Raw, filter: &str, options: SubscriptionOptions) {
    let subscribe = Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: s(filter),
            options,
        }],
    };
    raw.send(subscribe.into()).await;
}

const INVALID_FILTERS: [&str; 8] = ["a/#/b", "a+", "#/", "a/b#", "+a/b", "a/+b", "##", ""];

#[tokio::test]
async fn mqtt_4_7_1_1_and_4_7_1_2_subscribe_with_a_misplaced_wildcard_gets_disconnect_0x82() {
    let (server, addr) = start().await;
    for filter in INVALID_FILTERS {
        let mut client = Raw::connect(addr, ProtocolVersion::V5, "c").await;
        send_subscribe(&mut client, filter, Default::default()).await;
        let seen = client.expect_close().await;
        match seen.as_slice() {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason_code, ReasonCode::ProtocolError, "{filter:?}")
            }
            other => panic!("{filter:?}: expected DISCONNECT 0x82, got {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn v311_mqtt_4_7_1_2_and_4_7_1_3_subscribe_with_a_misplaced_wildcard_closes_the_connection() {
    let (server, addr) = start().await;
    for filter in INVALID_FILTERS {
        let mut client = Raw::connect(addr, ProtocolVersion::V3_1_1, "c").await;
        send_subscribe(&mut client, filter, Default::default()).await;
        let seen = client.expect_close().await;
        assert!(
            seen.is_empty(),
            "{filter:?}: closed without SUBACK, got {seen:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_2_2_publish_to_a_topic_name_with_wildcards_is_refused() {
    let (server, addr) = start().await;
    for version in VERSIONS {
        for topic in ["a/+", "a/#", "#", "a+b"] {
            let mut sub = Raw::connect(addr, version, "sub").await;
            sub.subscribe(1, "#", QoS::AtLeastOnce).await;
            let mut client = Raw::connect(addr, version, "c").await;
            let mut publish = Publish::new(s(topic), Bytes::from_static(b"x"));
            publish.qos = QoS::AtLeastOnce;
            publish.packet_id = Some(pid(1));
            client.send(publish.into()).await;
            let seen = client.expect_close().await;
            if version.is_v5() {
                assert!(
                    matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError),
                    "{topic}: {seen:?}"
                );
            } else {
                assert!(seen.is_empty(), "{topic}: {seen:?}");
            }
            assert_nothing_queued(&mut sub).await;
            sub.disconnect().await;
        }
    }
    server.shutdown().await;
}

async fn unsubscribe(raw: &mut Raw, id: u16, filters: &[&str]) -> Vec<ReasonCode> {
    let unsubscribe = Unsubscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: filters.iter().map(|f| s(f)).collect(),
    };
    raw.send(unsubscribe.into()).await;
    match raw.recv().await {
        Packet::UnsubAck(ack) => {
            assert_eq!(
                ack.packet_id,
                pid(id),
                "UNSUBACK carries the UNSUBSCRIBE's id"
            );
            ack.reason_codes
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtt_3_10_4_2_unsubscribe_stops_delivery_and_unsuback_reports_0x00_or_0x11() {
    for version in VERSIONS {
        let (server, addr) = start().await;
        let mut sub = Raw::connect(addr, version, "sub").await;
        sub.subscribe(1, "u/t", QoS::AtLeastOnce).await;
        sub.subscribe(2, MARKER, QoS::AtLeastOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("u/t", b"before", QoS::AtLeastOnce, false, 1)
            .await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(&got[0].payload[..], b"before");

        let codes = unsubscribe(&mut sub, 3, &["u/t", "never/subscribed"]).await;
        if version.is_v5() {
            assert_eq!(
                codes,
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            );
        } else {
            assert!(codes.is_empty(), "3.1.1 UNSUBACK has no payload");
        }
        publ.publish("u/t", b"after", QoS::AtLeastOnce, false, 2)
            .await;
        publ.publish(MARKER, b"", QoS::AtLeastOnce, false, 3).await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(
            got[0].topic, MARKER,
            "{version:?}: nothing after unsubscribing"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn mqtt_3_10_4_5_unsuback_is_sent_even_when_no_subscription_matched() {
    for version in VERSIONS {
        let (server, addr) = start().await;
        let mut sub = Raw::connect(addr, version, "sub").await;
        let codes = unsubscribe(&mut sub, 7, &["nothing/here"]).await;
        if version.is_v5() {
            assert_eq!(codes, vec![ReasonCode::NoSubscriptionExisted]);
        }
        assert_nothing_queued(&mut sub).await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn mqtt_3_10_4_1_unsubscribe_compares_filters_character_by_character() {
    for version in VERSIONS {
        let (server, addr) = start().await;
        let mut sub = Raw::connect(addr, version, "sub").await;
        sub.subscribe(1, "c/#", QoS::AtLeastOnce).await;
        // "c/t" is matched by "c/#" but is not the same filter: nothing is removed.
        let codes = unsubscribe(&mut sub, 2, &["c/t", "c/+", "C/#"]).await;
        if version.is_v5() {
            assert_eq!(codes, vec![ReasonCode::NoSubscriptionExisted; 3]);
        }
        let mut publ = Raw::connect(addr, version, "pub").await;
        publ.publish("c/t", b"still", QoS::AtLeastOnce, false, 1)
            .await;
        let got = recv_publishes_acked(&mut sub, 1).await;
        assert_eq!(&got[0].payload[..], b"still", "{version:?}");
        server.shutdown().await;
    }
}

/// Three overlapping subscriptions of one client: one copy, at the highest QoS that any of them
/// allows for the message.
async fn overlapping_one_copy(version: ProtocolVersion) {
    let (server, addr) = start().await;
    let mut sub = Raw::connect(addr, version, "sub").await;
    sub.subscribe(1, "o/+", QoS::AtMostOnce).await;
    sub.subscribe(2, "o/#", QoS::ExactlyOnce).await;
    sub.subscribe(3, "o/t", QoS::AtLeastOnce).await;
    sub.subscribe(4, MARKER, QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, version, "pub").await;
    let cases = [
        (QoS::ExactlyOnce, QoS::ExactlyOnce),
        (QoS::AtLeastOnce, QoS::AtLeastOnce),
        (QoS::AtMostOnce, QoS::AtMostOnce),
    ];
    for (i, (published, expected)) in cases.into_iter().enumerate() {
        publ.publish("o/t", b"x", published, false, i as u16 + 1)
            .await;
        publ.publish(MARKER, b"", QoS::AtLeastOnce, false, 9).await;
        let got = recv_publishes_acked(&mut sub, 2).await;
        assert_eq!(got[0].topic, "o/t");
        assert_eq!(
            got[0].qos, expected,
            "{version:?}: published at {published:?}"
        );
        assert_eq!(got[1].topic, MARKER, "{version:?}: exactly one copy");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_3_4_2_overlapping_subscriptions_give_one_copy_at_the_highest_qos() {
    overlapping_one_copy(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_mqtt_3_3_5_1_overlapping_subscriptions_give_one_copy_at_the_highest_qos() {
    overlapping_one_copy(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn mqtt_3_3_4_4_the_single_copy_carries_every_matching_subscription_identifier() {
    let (server, addr) = start().await;
    let v5 = ProtocolVersion::V5;
    let mut sub = Raw::connect(addr, v5, "sub").await;
    let qos = |qos| SubscriptionOptions {
        qos,
        ..Default::default()
    };
    sub.subscribe_with(1, "i/+", qos(QoS::AtMostOnce), Some(11))
        .await;
    sub.subscribe_with(2, "i/#", qos(QoS::ExactlyOnce), Some(22))
        .await;
    sub.subscribe_with(3, "i/t", qos(QoS::AtLeastOnce), None)
        .await;
    sub.subscribe_with(4, "i/t/+", qos(QoS::AtLeastOnce), Some(44))
        .await;
    sub.subscribe(5, MARKER, QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, v5, "pub").await;
    for (topic, ids) in [
        ("i/t", vec![11, 22]),
        ("i/u", vec![11, 22]),
        ("i/t/v", vec![22, 44]),
        ("i", vec![22]),
    ] {
        publ.publish(topic, b"x", QoS::ExactlyOnce, false, 1).await;
        publ.publish(MARKER, b"", QoS::AtLeastOnce, false, 2).await;
        let got = recv_publishes_acked(&mut sub, 2).await;
        assert_eq!(got[0].topic, topic);
        assert_eq!(got[0].qos, QoS::ExactlyOnce, "{topic}: highest QoS");
        let mut received = got[0].properties.subscription_identifiers.clone();
        received.sort();
        assert_eq!(received, ids, "{topic}");
        assert_eq!(got[1].topic, MARKER, "{topic}: one copy only");
    }
    server.shutdown().await;
}
