//! Authorization and limits as the connection applies them, fed events directly: what a
//! denied or oversized PUBLISH, SUBSCRIBE or will gets, in both protocol versions.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use bytes::Bytes;
use mqtt_codec::{SubscribeProperties, Subscription, SubscriptionOptions, Will, WillProperties};

/// Grants publish and subscribe under `allowed/`, retain nowhere; can be switched to deny
/// everything (as an ACL reload would).
#[derive(Debug, Default)]
struct Rules {
    deny_all: AtomicBool,
}

impl Authorizer for Rules {
    fn publish(&self, topic: &str, retain: bool, _len: usize) -> Verdict {
        if self.deny_all.load(Ordering::Relaxed) || !topic.starts_with("allowed/") {
            Verdict::NotAuthorized
        } else if retain {
            Verdict::QuotaExceeded
        } else {
            Verdict::Allowed
        }
    }

    fn subscribe(&self, filter: &str) -> bool {
        !self.deny_all.load(Ordering::Relaxed) && filter.starts_with("allowed/")
    }
}

fn connected(
    version: ProtocolVersion,
    rules: Arc<Rules>,
    config: BrokerConfig,
    session: &mut Session,
    setup: impl FnOnce(&mut Connect),
) -> Result<(Connection, Vec<Action>), Refusal> {
    let mut conn = Connection::new(Arc::new(config), 0);
    let mut packet = Connect::new(version, MqttString::from_static("c"));
    packet.clean_start = false;
    setup(&mut packet);
    let request = conn.on_connect(packet, 0, String::new)?;
    conn.authorize(rules)?;
    let mut out = Vec::new();
    conn.accept(&request, session, true, 0, &mut out);
    Ok((conn, out))
}

fn client(version: ProtocolVersion) -> (Connection, Session, Arc<Rules>) {
    client_with(version, BrokerConfig::default())
}

fn client_with(
    version: ProtocolVersion,
    config: BrokerConfig,
) -> (Connection, Session, Arc<Rules>) {
    let rules = Arc::new(Rules::default());
    let mut session = Session::new("c".into(), &config);
    let (conn, _) = connected(version, rules.clone(), config, &mut session, |_| {}).unwrap();
    (conn, session, rules)
}

fn publish(topic: &str, qos: QoS, retain: bool) -> Packet {
    let mut publish = Publish::new(
        MqttString::try_from(topic).unwrap(),
        Bytes::from_static(b"x"),
    );
    publish.qos = qos;
    publish.retain = retain;
    publish.packet_id = PacketId::new(7).filter(|_| qos != QoS::AtMostOnce);
    Packet::Publish(publish)
}

fn feed(conn: &mut Connection, session: &mut Session, packet: Packet) -> Vec<Action> {
    let mut out = Vec::new();
    conn.on_packet(packet, session, 0, &mut out);
    out
}

fn routed(out: &[Action]) -> bool {
    out.iter().any(|a| matches!(a, Action::Publish { .. }))
}

fn ack_reason(out: &[Action]) -> ReasonCode {
    match out.iter().find_map(|a| match a {
        Action::Send(Packet::PubAck(ack) | Packet::PubRec(ack)) => Some(ack.reason_code),
        _ => None,
    }) {
        Some(reason) => reason,
        None => panic!("no acknowledgement in {out:?}"),
    }
}

#[test]
fn a_denied_publish_is_answered_0x87_in_v5_and_never_routed() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let (mut conn, mut session, _) = client(ProtocolVersion::V5);
        let out = feed(&mut conn, &mut session, publish("other/x", qos, false));
        assert!(!routed(&out), "{out:?}");
        assert_eq!(ack_reason(&out), ReasonCode::NotAuthorized);
        // The QoS 2 flow ends with the negative PUBREC: nothing awaits PUBREL.
        assert!(!session.is_awaiting_pubrel(PacketId::new(7).unwrap()));
        assert_eq!(session.counters.dropped(DropReason::NotAuthorized), 1);
        assert!(conn.is_connected());
    }
    let (mut conn, mut session, _) = client(ProtocolVersion::V5);
    assert!(routed(&feed(
        &mut conn,
        &mut session,
        publish("allowed/x", QoS::AtLeastOnce, false)
    )));
}

#[test]
fn a_denied_publish_is_acknowledged_and_dropped_in_3_1_1() {
    let (mut conn, mut session, _) = client(ProtocolVersion::V3_1_1);
    let out = feed(
        &mut conn,
        &mut session,
        publish("other/x", QoS::AtLeastOnce, false),
    );
    assert!(!routed(&out));
    let mut encoded = bytes::BytesMut::new();
    let [Action::Send(ack)] = out.as_slice() else {
        panic!("{out:?}")
    };
    ack.encode(ProtocolVersion::V3_1_1, &mut encoded).unwrap();
    // A plain 3.1.1 PUBACK: no reason code on the wire.
    assert_eq!(&encoded[..], &[0x40, 2, 0, 7]);
    let out = feed(
        &mut conn,
        &mut session,
        publish("other/x", QoS::AtMostOnce, false),
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(session.counters.dropped(DropReason::NotAuthorized), 2);
}

#[test]
fn a_retained_publish_beyond_the_quota_is_answered_0x97_and_not_retained() {
    let (mut conn, mut session, _) = client(ProtocolVersion::V5);
    let out = feed(
        &mut conn,
        &mut session,
        publish("allowed/x", QoS::AtLeastOnce, true),
    );
    assert!(!routed(&out));
    assert_eq!(ack_reason(&out), ReasonCode::QuotaExceeded);
    assert_eq!(session.counters.dropped(DropReason::QuotaExceeded), 1);
}

fn subscribe(filters: &[&str]) -> Packet {
    Packet::Subscribe(mqtt_codec::Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: SubscribeProperties::default(),
        subscriptions: filters
            .iter()
            .map(|f| Subscription {
                filter: MqttString::try_from(*f).unwrap(),
                options: SubscriptionOptions::default(),
            })
            .collect(),
    })
}

fn suback(out: &[Action]) -> Vec<ReasonCode> {
    out.iter()
        .find_map(|a| match a {
            Action::Send(Packet::SubAck(ack)) => Some(ack.reason_codes.clone()),
            _ => None,
        })
        .expect("a SUBACK")
}

fn subscribed(out: &[Action]) -> Vec<&str> {
    out.iter()
        .filter_map(|a| match a {
            Action::Subscribe { filter, .. } => Some(filter.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn each_filter_gets_its_own_reason_code_and_share_is_authorized_as_its_filter() {
    let (mut conn, mut session, _) = client(ProtocolVersion::V5);
    let out = feed(
        &mut conn,
        &mut session,
        subscribe(&[
            "allowed/a",
            "#",
            "$share/g/allowed/b",
            "$share/allowed/#",
            "allowed/+/c",
        ]),
    );
    assert_eq!(
        suback(&out),
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::NotAuthorized,
            ReasonCode::GRANTED_QOS_0,
            // The group name is not part of what is granted: this is `#`.
            ReasonCode::NotAuthorized,
            ReasonCode::GRANTED_QOS_0,
        ]
    );
    assert_eq!(
        subscribed(&out),
        ["allowed/a", "$share/g/allowed/b", "allowed/+/c"]
    );
    assert_eq!(session.subscription_count(), 3);
}

#[test]
fn a_will_the_client_may_not_publish_refuses_the_connect() {
    for (version, topic, expected) in [
        (
            ProtocolVersion::V5,
            "other/will",
            Some(ReasonCode::NotAuthorized),
        ),
        (
            ProtocolVersion::V3_1_1,
            "other/will",
            Some(ReasonCode::NotAuthorized),
        ),
        (ProtocolVersion::V5, "allowed/will", None),
    ] {
        let mut session = Session::new("c".into(), &BrokerConfig::default());
        let result = connected(
            version,
            Arc::new(Rules::default()),
            BrokerConfig::default(),
            &mut session,
            |c| {
                c.will = Some(Will {
                    topic: MqttString::try_from(topic).unwrap(),
                    payload: Bytes::from_static(b"gone"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: WillProperties::default(),
                });
            },
        );
        assert_eq!(
            result.err().map(|r| r.reason),
            expected,
            "{version:?} {topic}"
        );
    }
}

#[test]
fn a_will_is_checked_again_when_it_fires() {
    let rules = Arc::new(Rules::default());
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    let will = |c: &mut Connect| {
        c.will = Some(Will {
            topic: MqttString::from_static("allowed/will"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        });
    };
    let (mut conn, _) = connected(
        ProtocolVersion::V5,
        rules.clone(),
        BrokerConfig::default(),
        &mut session,
        will,
    )
    .unwrap();
    // The grant is withdrawn while the client is connected.
    rules.deny_all.store(true, Ordering::Relaxed);
    let closed = conn.on_closed(&mut session, 10);
    assert_eq!(closed.will, None);
    assert_eq!(session.counters.dropped(DropReason::NotAuthorized), 1);

    // A delayed will is checked when its delay is over.
    let rules = Arc::new(Rules::default());
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    let (mut conn, _) = connected(
        ProtocolVersion::V5,
        rules.clone(),
        BrokerConfig::default(),
        &mut session,
        |c| {
            will(c);
            c.properties.session_expiry_interval = Some(60);
            if let Some(w) = &mut c.will {
                w.properties.will_delay_interval = Some(5);
            }
        },
    )
    .unwrap();
    assert_eq!(conn.on_closed(&mut session, 0).will, None);
    rules.deny_all.store(true, Ordering::Relaxed);
    assert_eq!(session.take_due_will(5_000), None);
    assert!(session.pending_will.is_none());
    assert_eq!(session.counters.dropped(DropReason::NotAuthorized), 1);
}

#[test]
fn a_resumed_session_loses_the_subscriptions_no_longer_allowed() {
    let (mut conn, mut session, rules) = client(ProtocolVersion::V5);
    feed(
        &mut conn,
        &mut session,
        subscribe(&["allowed/a", "allowed/b"]),
    );
    conn.on_closed(&mut session, 0);
    rules.deny_all.store(true, Ordering::Relaxed);
    let (_, out) = connected(
        ProtocolVersion::V5,
        rules,
        BrokerConfig::default(),
        &mut session,
        |_| {},
    )
    .unwrap();
    let mut removed: Vec<&str> = out
        .iter()
        .filter_map(|a| match a {
            Action::Unsubscribe { filter } => Some(filter.as_str()),
            _ => None,
        })
        .collect();
    removed.sort();
    assert_eq!(removed, ["allowed/a", "allowed/b"]);
    assert_eq!(session.subscription_count(), 0);
}

#[test]
fn topics_and_filters_beyond_the_length_and_depth_limits_are_refused() {
    let config = BrokerConfig {
        max_topic_length: 16,
        max_topic_levels: 3,
        ..BrokerConfig::default()
    };
    let (mut conn, mut session, _) = client_with(ProtocolVersion::V5, config);
    for topic in ["allowed/a/b/c", "allowed/aaaaaaaaaaaaaaa"] {
        let out = feed(
            &mut conn,
            &mut session,
            publish(topic, QoS::AtLeastOnce, false),
        );
        assert!(!routed(&out), "{topic}");
        assert_eq!(ack_reason(&out), ReasonCode::TopicNameInvalid, "{topic}");
    }
    assert!(routed(&feed(
        &mut conn,
        &mut session,
        publish("allowed/a/b", QoS::AtLeastOnce, false)
    )));
    // 65 000 levels, as many as a filter within the 65 535 bytes of a string can have.
    let deep = "allowed".to_string() + &"/".repeat(64_999);
    let out = feed(&mut conn, &mut session, subscribe(&[&deep, "allowed/+/c"]));
    assert_eq!(
        suback(&out),
        [ReasonCode::TopicFilterInvalid, ReasonCode::GRANTED_QOS_0]
    );
    assert_eq!(session.counters.dropped(DropReason::LimitExceeded), 2);
}

#[test]
fn user_properties_beyond_the_limits_are_refused() {
    let config = BrokerConfig {
        max_user_properties: 4,
        max_user_property_bytes: 64,
        ..BrokerConfig::default()
    };
    let (mut conn, mut session, _) = client_with(ProtocolVersion::V5, config);
    let with_properties = |count: usize, size: usize| {
        let Packet::Publish(mut p) = publish("allowed/x", QoS::AtLeastOnce, false) else {
            unreachable!()
        };
        let value = MqttString::try_from("v".repeat(size).as_str()).unwrap();
        p.properties.user_properties = vec![(MqttString::from_static("k"), value); count];
        Packet::Publish(p)
    };
    for (count, size, allowed) in [(4, 10, true), (5, 1, false), (2, 40, false)] {
        let out = feed(&mut conn, &mut session, with_properties(count, size));
        assert_eq!(routed(&out), allowed, "{count} x {size}");
        if !allowed {
            assert_eq!(ack_reason(&out), ReasonCode::ImplementationSpecificError);
        }
    }
}

#[test]
fn subscriptions_beyond_the_limit_get_0x97_but_replacing_one_is_fine() {
    let config = BrokerConfig {
        max_subscriptions: 2,
        ..BrokerConfig::default()
    };
    let (mut conn, mut session, _) = client_with(ProtocolVersion::V5, config);
    let out = feed(
        &mut conn,
        &mut session,
        subscribe(&["allowed/a", "allowed/b", "allowed/c", "allowed/a"]),
    );
    assert_eq!(
        suback(&out),
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::QuotaExceeded,
            ReasonCode::GRANTED_QOS_0,
        ]
    );
    assert_eq!(session.subscription_count(), 2);
}
