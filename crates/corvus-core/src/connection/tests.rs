//! Regression tests for the connection state machine, fed events directly.

use super::*;
use bytes::Bytes;
use mqtt_codec::PublishProperties;

/// A v5 client connected with `setup` applied to its CONNECT; returns the CONNACK's actions.
fn connect(session: &mut Session, setup: impl FnOnce(&mut Connect)) -> (Connection, Vec<Action>) {
    let mut conn = Connection::new(Arc::new(BrokerConfig::default()), 0);
    let mut packet = Connect::new(ProtocolVersion::V5, MqttString::from_static("c"));
    packet.clean_start = false;
    setup(&mut packet);
    let request = conn.on_connect(packet, 0, String::new).unwrap();
    let mut out = Vec::new();
    conn.accept(&request, session, true, 0, &mut out);
    (conn, out)
}

fn delivery(topic: &'static str, payload: &'static [u8]) -> Delivery {
    Delivery {
        message: Arc::new(Message {
            topic: MqttString::from_static(topic),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: None,
            received_at: None,
        }),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
        stored_id: None,
        received_at: None,
    }
}

fn sent(out: &[Action]) -> Vec<&Packet> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn mqtt_3_4_2_2_negative_ack_drops_a_reason_string_too_large_for_the_client() {
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    let (mut conn, _) = connect(&mut session, |c| {
        c.properties.maximum_packet_size = Some(24);
    });
    let mut publish = Publish::new(MqttString::from_static("$SYS/x"), "x".into());
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = PacketId::new(1);
    let mut out = Vec::new();
    conn.on_packet(Packet::Publish(publish), &mut session, 0, &mut out);
    let packets = sent(&out);
    let [Packet::PubAck(ack)] = packets.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert_eq!(ack.properties.reason_string, None);
    assert!(packets[0].encoded_len(ProtocolVersion::V5) <= 24);
}

#[test]
fn topic_alias_is_left_out_when_it_would_exceed_the_client_maximum_packet_size() {
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    // PUBLISH "a", QoS 1, payload of 11 bytes: 2 + 3 + 2 + 1 + 11 = 19 bytes without an
    // alias, 22 with one.
    let (mut conn, _) = connect(&mut session, |c| {
        c.properties.maximum_packet_size = Some(19);
        c.properties.topic_alias_maximum = Some(5);
    });
    session.online = true;
    for _ in 0..2 {
        session.enqueue(delivery("a", b"01234567890"), 0);
    }
    let mut out = Vec::new();
    conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
    let packets = sent(&out);
    assert_eq!(packets.len(), 2, "{out:?}");
    for packet in packets {
        let Packet::Publish(publish) = packet else {
            panic!("{packet:?}");
        };
        assert_eq!(publish.properties.topic_alias, None);
        assert_eq!(publish.topic, "a");
        assert!(packet.encoded_len(ProtocolVersion::V5) <= 19);
    }
}

#[test]
fn mqtt_4_9_0_2_resumed_session_resends_no_more_than_the_new_receive_maximum() {
    let config = BrokerConfig::default();
    let mut session = Session::new("c".into(), &config);
    let ids: Vec<PacketId> = (0..3)
        .map(|_| session.start_inflight(delivery("a", b"x")))
        .collect();
    let (mut conn, out) = connect(&mut session, |c| {
        c.properties.receive_maximum = Some(1);
    });
    let publishes = |out: &[Action]| -> Vec<PacketId> {
        sent(out)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => p.packet_id,
                _ => None,
            })
            .collect()
    };
    assert_eq!(publishes(&out), vec![ids[0]]);
    let mut out = Vec::new();
    conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
    assert!(out.is_empty(), "no room yet: {out:?}");
    conn.on_packet(Packet::PubAck(Ack::new(ids[0])), &mut session, 0, &mut out);
    conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
    assert_eq!(publishes(&out), vec![ids[1]], "the next resend, in order");
}

#[test]
fn resend_too_large_for_the_new_connection_is_discarded_and_counted() {
    let config = BrokerConfig::default();
    let mut session = Session::new("c".into(), &config);
    session.start_inflight(delivery("a", &[b'x'; 40]));
    let (_conn, out) = connect(&mut session, |c| {
        c.properties.maximum_packet_size = Some(32);
    });
    assert!(
        matches!(sent(&out).as_slice(), [Packet::ConnAck(_)]),
        "{out:?}"
    );
    assert_eq!(session.inflight_len(), 0);
    assert_eq!(session.counters.dropped(DropReason::TooLargeForClient), 1);
}

/// The packet id of a QoS 2 PUBLISH travels with the message to routing exactly when the
/// session persists its state, so the store can keep the id and the queued copies as one.
#[test]
fn a_qos2_publish_carries_its_receipt_when_the_session_persists() {
    let cases = [
        // (store, session expiry, QoS, receipt expected)
        (true, 60, QoS::ExactlyOnce, true),
        (true, 60, QoS::AtLeastOnce, false),
        (true, 0, QoS::ExactlyOnce, false),
        (false, 60, QoS::ExactlyOnce, false),
    ];
    for (persistence, expiry, qos, expected) in cases {
        let config = BrokerConfig {
            persistence,
            ..BrokerConfig::default()
        };
        let mut session = Session::new("c".into(), &config);
        let mut conn = Connection::new(Arc::new(config), 0);
        let mut packet = Connect::new(ProtocolVersion::V5, MqttString::from_static("c"));
        packet.properties.session_expiry_interval = Some(expiry);
        let request = conn.on_connect(packet, 0, String::new).unwrap();
        conn.accept(&request, &mut session, false, 0, &mut Vec::new());
        let mut publish = Publish::new(MqttString::from_static("t"), "x".into());
        publish.qos = qos;
        publish.packet_id = PacketId::new(7);
        let mut out = Vec::new();
        conn.on_packet(Packet::Publish(publish.clone()), &mut session, 0, &mut out);
        let receipts: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::Publish { receipt, .. } => Some(*receipt),
                _ => None,
            })
            .collect();
        let want = expected.then(|| PacketId::new(7).unwrap());
        assert_eq!(receipts, [want], "{persistence} {expiry} {qos:?}");
        // A re-send of a QoS 2 id awaiting PUBREL is not routed again.
        if qos == QoS::ExactlyOnce {
            publish.dup = true;
            let mut out = Vec::new();
            conn.on_packet(Packet::Publish(publish), &mut session, 0, &mut out);
            assert!(!out.iter().any(|a| matches!(a, Action::Publish { .. })));
        }
    }
}

/// Each message sent for the first time reports its receive stamp once; re-sends of a
/// resumed session and deliveries without a stamp report none; each call replaces the last.
#[test]
fn sent_stamps_are_those_of_first_sends_in_the_last_call() {
    let stamped = |topic: &'static str, qos: QoS, micros: u64| {
        let mut d = delivery(topic, b"x");
        d.qos = qos;
        d.received_at = Some(Stamp::from_micros(micros));
        d
    };
    let config = BrokerConfig::default();
    let mut session = Session::new("c".into(), &config);
    let old: Vec<PacketId> = (1..=2)
        .map(|i| session.start_inflight(stamped("old", QoS::AtLeastOnce, i)))
        .collect();
    let (mut conn, _) = connect(&mut session, |c| {
        c.properties.receive_maximum = Some(1);
    });
    let mut out = Vec::new();
    conn.on_packet(Packet::PubAck(Ack::new(old[0])), &mut session, 0, &mut out);
    conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
    assert_eq!(sent(&out).len(), 1, "the second re-send: {out:?}");
    assert!(conn.sent_stamps().is_empty(), "a re-send is not timed");
    conn.on_packet(Packet::PubAck(Ack::new(old[1])), &mut session, 0, &mut out);
    session.enqueue(stamped("c", QoS::AtMostOnce, 30), 0);
    session.enqueue(stamped("a", QoS::AtLeastOnce, 10), 0);
    // Retained at subscribe time, or read back from the store: no stamp.
    session.enqueue(delivery("b", b"x"), 0);
    out.clear();
    conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
    assert_eq!(sent(&out).len(), 2, "b waits for room: {out:?}");
    assert_eq!(
        conn.sent_stamps(),
        [Stamp::from_micros(30), Stamp::from_micros(10)]
    );
    let Some(Packet::Publish(a)) = sent(&out).pop().cloned() else {
        panic!("{out:?}");
    };
    let a_id = a.packet_id.expect("QoS 1");
    conn.on_packet(Packet::PubAck(Ack::new(a_id)), &mut session, 0, &mut out);
    out.clear();
    conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
    assert_eq!(sent(&out).len(), 1, "{out:?}");
    assert!(
        conn.sent_stamps().is_empty(),
        "b has none, and a was reported before"
    );
}
