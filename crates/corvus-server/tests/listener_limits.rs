//! `[listener.limits]`: one broker, two plain listeners with different limits; each
//! connection gets its own listener's (docs/configuration.md).

mod common;

use std::net::SocketAddr;

use common::*;
use corvus_server::config::{ListenerConfig, ListenerLimits};
use corvus_server::metrics::SourceLimit;
use corvus_server::Server;
use mqtt_codec::{Packet, ProtocolVersion::V5, QoS, ReasonCode};

/// A: small packets, few in flight and aliases, two connections per address, short topics.
/// B: other packet, in-flight and alias limits; the rest (three connections per address
/// in `[limits]`, long topics) from `[limits]`.
async fn two_listeners() -> (Server, SocketAddr, SocketAddr) {
    let (server, _) = start_with(|c| {
        c.limits.max_connections_per_source = 3;
        c.limits.connection_rate_per_source = 0;
        let mut a = ListenerConfig::plain("127.0.0.1:0".parse().unwrap());
        a.limits = ListenerLimits {
            max_packet_size: Some(256),
            receive_maximum: Some(5),
            topic_alias_maximum: Some(2),
            max_connections_per_source: Some(2),
            max_topic_length: Some(32),
            ..ListenerLimits::default()
        };
        let mut b = ListenerConfig::plain("127.0.0.1:0".parse().unwrap());
        b.limits = ListenerLimits {
            max_packet_size: Some(4096),
            receive_maximum: Some(50),
            topic_alias_maximum: Some(7),
            ..ListenerLimits::default()
        };
        c.listen = Vec::new();
        c.listeners = vec![a, b];
    })
    .await;
    let [a, b] = server.local_addrs()[..] else {
        panic!("two listeners")
    };
    (server, a, b)
}

#[tokio::test]
async fn connack_advertises_the_listeners_own_limits() {
    let (server, a, b) = two_listeners().await;
    let (_on_a, ack) = Raw::connect_with(a, V5, "on-a", |_| {}).await;
    let p = &ack.properties;
    assert_eq!(
        (
            p.maximum_packet_size,
            p.receive_maximum,
            p.topic_alias_maximum
        ),
        (Some(256), Some(5), Some(2))
    );
    let (_on_b, ack) = Raw::connect_with(b, V5, "on-b", |_| {}).await;
    let p = &ack.properties;
    assert_eq!(
        (
            p.maximum_packet_size,
            p.receive_maximum,
            p.topic_alias_maximum
        ),
        (Some(4096), Some(50), Some(7))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_publish_beyond_a_max_packet_size_is_0x95_on_a_and_accepted_on_b() {
    let (server, a, b) = two_listeners().await;
    let mut sub = Raw::connect(b, V5, "sub").await;
    sub.subscribe(1, "big/#", QoS::AtLeastOnce).await;
    let payload = [b'x'; 1000];

    let mut on_a = Raw::connect(a, V5, "pub-a").await;
    on_a.send(publish_packet("big/a", &payload, 1)).await;
    on_a.expect_disconnect(ReasonCode::PacketTooLarge).await;
    sub.expect_nothing().await;

    let mut on_b = Raw::connect(b, V5, "pub-b").await;
    let sent = on_b
        .publish("big/b", &payload, QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(sent, ReasonCode::Success);
    let got = sub.recv_publish().await;
    assert_eq!((&*got.topic, got.payload.len()), ("big/b", 1000));
    server.shutdown().await;
}

#[tokio::test]
async fn a_max_connections_per_source_is_counted_apart_from_b() {
    let (server, a, b) = two_listeners().await;
    let _a1 = Raw::connect(a, V5, "a1").await;
    let _a2 = Raw::connect(a, V5, "a2").await;
    // The third from this address on A is closed before a byte is read.
    assert_refused(a).await;
    // B counts on its own (`[limits]`: three), A's two open connections are not in it.
    let _b: Vec<Raw> = connect_all(b, &["b1", "b2", "b3"]).await;
    // And B's own limit holds: a fourth on B is closed before a byte is read.
    assert_refused(b).await;
    assert_eq!(server.broker().metrics.refused(SourceLimit::TooMany), 2);
    server.shutdown().await;
}

/// R sets its own `connection_rate_per_source` (one a second); S and T set no per-source
/// limit and so share `[limits]`' count (three per address, no rate).
#[tokio::test]
async fn listeners_without_source_limits_count_together_and_a_rate_is_per_listener() {
    let (server, _) = start_with(|c| {
        c.limits.max_connections_per_source = 3;
        c.limits.connection_rate_per_source = 0;
        let mut r = ListenerConfig::plain("127.0.0.1:0".parse().unwrap());
        r.limits.connection_rate_per_source = Some(1);
        let s = ListenerConfig::plain("127.0.0.1:0".parse().unwrap());
        let t = ListenerConfig::plain("127.0.0.1:0".parse().unwrap());
        c.listen = Vec::new();
        c.listeners = vec![r, s, t];
    })
    .await;
    let [r, s, t] = server.local_addrs()[..] else {
        panic!("three listeners")
    };
    let metrics = &server.broker().metrics;
    // R: one connection a second; the second at once is closed before a byte is read.
    let _r1 = Raw::connect(r, V5, "r1").await;
    assert_refused(r).await;
    assert_eq!(metrics.refused(SourceLimit::TooFast), 1);
    // S and T have no rate (R's is its own) and count together: three in all, R's not
    // among them.
    let mut _st: Vec<Raw> = connect_all(s, &["s1", "s2"]).await;
    _st.extend(connect_all(t, &["t1"]).await);
    assert_refused(t).await;
    assert_refused(s).await;
    assert_eq!(metrics.refused(SourceLimit::TooMany), 2);
    assert_eq!(metrics.refused(SourceLimit::TooFast), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_topic_beyond_a_max_topic_length_is_refused_on_a_only() {
    let (server, a, b) = two_listeners().await;
    let long = "t/".repeat(20); // 40 bytes: beyond A's 32, within `[limits]`.
    let filter = format!("{long}#");
    let mut on_a = Raw::connect(a, V5, "topic-a").await;
    let sent = on_a.publish(&long, b"x", QoS::AtLeastOnce, false, 1).await;
    assert_eq!(sent, ReasonCode::TopicNameInvalid);
    let codes = on_a.subscribe(2, &filter, QoS::AtLeastOnce).await;
    assert_eq!(codes, [ReasonCode::TopicFilterInvalid]);

    let mut on_b = Raw::connect(b, V5, "topic-b").await;
    let codes = on_b.subscribe(1, &filter, QoS::AtLeastOnce).await;
    assert_eq!(codes, [ReasonCode::GrantedQoS1]);
    let sent = on_b.publish(&long, b"x", QoS::AtLeastOnce, false, 2).await;
    assert_eq!(sent, ReasonCode::Success);
    assert_eq!(&*on_b.recv_publish().await.topic, long.as_str());
    server.shutdown().await;
}

/// A QoS 1 PUBLISH, as a packet.
fn publish_packet(topic: &str, payload: &[u8], id: u16) -> Packet {
    let mut publish = mqtt_codec::Publish::new(s(topic), payload.to_vec().into());
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = Some(pid(id));
    publish.into()
}

/// Connects one client per id, one after the other; each must be accepted.
async fn connect_all(addr: SocketAddr, ids: &[&str]) -> Vec<Raw> {
    let mut open = Vec::new();
    for id in ids {
        open.push(Raw::connect(addr, V5, id).await);
    }
    open
}
