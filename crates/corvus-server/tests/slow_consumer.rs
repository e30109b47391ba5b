//! Slow consumers and session queue limits: a subscriber that stops reading must cost the
//! broker a bounded queue and some counted drops, never a stalled publisher or a starved
//! neighbour.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use corvus_core::{DropReason, QueueFullPolicy};
use corvus_server::config::QueueFullPolicyName;
use corvus_server::Server;
use mqtt_codec::{ProtocolVersion, Publish, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn drops(server: &Server, reason: DropReason) -> u64 {
    server.broker().metrics.dropped(reason)
}

fn session_drops(server: &Server, client: &str, reason: DropReason) -> u64 {
    let handle = server.broker().session(client).expect("session exists");
    let session = handle.lock();
    session.counters.dropped(reason)
}

/// Connects a v5 client whose session outlives the connection by a minute.
async fn persistent(addr: SocketAddr, id: &str, clean: bool) -> Raw {
    let (raw, ack) = Raw::connect_with(addr, V5, id, |c| {
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(60);
    })
    .await;
    assert_eq!(ack.session_present, !clean);
    raw
}

/// A subscriber with a persistent session on `filter` that has gone offline.
async fn offline_subscriber(server: &Server, addr: SocketAddr, id: &str, filter: &str) {
    let mut sub = persistent(addr, id, true).await;
    sub.subscribe(1, filter, QoS::AtLeastOnce).await;
    sub.disconnect().await;
    wait_offline(server, id).await;
}

// ---- a subscriber that never reads its socket ----

/// Publishes one round (QoS 0 and QoS 1 alternating) and has `normal` read all of it, in order.
async fn round(publ: &mut Raw, normal: &mut Raw, first: u32, count: u32, payload: &[u8]) {
    for n in first..first + count {
        let qos = if n % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut body = n.to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        let mut p = Publish::new(s("feed"), Bytes::from(body));
        p.qos = qos;
        p.packet_id = (qos == QoS::AtLeastOnce).then(|| pid((n % 60_000 + 1) as u16));
        // A QoS 1 PUBACK must come within the harness's wait, whatever the slow one does.
        assert_eq!(
            publ.publish_packet(p).await,
            ReasonCode::Success,
            "message {n}"
        );
    }
    for n in first..first + count {
        let got = normal.recv_publish().await;
        assert_eq!(
            got.payload[..4],
            n.to_be_bytes(),
            "normal subscriber, message {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_that_never_reads_does_not_stall_the_publisher_or_other_subscribers() {
    let (server, addr) = start_with(|c| c.limits.max_queued_messages = 20).await;
    // Subscribes, then never reads again: the broker's writes to it back up in the socket.
    let mut slow = Raw::connect(addr, V5, "slow").await;
    slow.subscribe(1, "feed", QoS::AtLeastOnce).await;
    let mut normal = Raw::connect(addr, V5, "normal").await;
    normal.subscribe(1, "feed", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;

    let payload = vec![0x5A; 16 * 1024];
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        let mut next = 0;
        // Far more than any socket buffers (up to 64 MB): stop once the broker drops for it.
        while drops(&server, DropReason::QueueFull) == 0 && next < 4096 {
            round(&mut publ, &mut normal, next, 16, &payload).await;
            next += 16;
        }
        // And the flow goes on while the slow consumer stays stuck.
        for _ in 0..4 {
            round(&mut publ, &mut normal, next, 16, &payload).await;
            next += 16;
        }
        next
    })
    .await;
    let sent = outcome.expect("publisher and normal subscriber never stall");

    let dropped = drops(&server, DropReason::QueueFull);
    assert!(dropped > 0, "no drops after {sent} messages");
    assert_eq!(
        session_drops(&server, "slow", DropReason::QueueFull),
        dropped
    );
    let normal_session = server.broker().session("normal").unwrap();
    assert_eq!(normal_session.lock().counters.total_dropped(), 0);
    {
        let handle = server.broker().session("slow").unwrap();
        let session = handle.lock();
        assert!(
            session.queued_len() <= 20,
            "queue bound: {}",
            session.queued_len()
        );
    }
    drop(slow);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_holding_its_receive_maximum_has_a_bounded_queue() {
    const COUNT: u32 = 100;
    let (server, addr) = start_with(|c| c.limits.max_queued_messages = 10).await;
    // Takes two QoS 1 messages and never acknowledges them, nor reads anything else.
    let (mut slow, _) = Raw::connect_with(addr, V5, "slow", |c| {
        c.properties.receive_maximum = Some(2);
    })
    .await;
    slow.subscribe(1, "feed", QoS::AtLeastOnce).await;
    let mut normal = Raw::connect(addr, V5, "normal").await;
    normal.subscribe(1, "feed", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;

    // QoS 1 first, then alternating: the slow one has its 2 in flight after message 2.
    for n in 0..COUNT {
        let qos = if n % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let r = publ
            .publish("feed", &n.to_be_bytes(), qos, false, (n + 1) as u16)
            .await;
        assert_eq!(r, ReasonCode::Success);
        let got = normal.recv_publish().await;
        assert_eq!(got.payload[..], n.to_be_bytes());
    }

    let handle = server.broker().session("slow").unwrap();
    // Its connection task takes what it may from the queue when it next runs.
    tokio::time::timeout(WAIT, async {
        while handle.lock().inflight_len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("two messages in flight to the slow consumer");
    let (queued, inflight, dropped) = {
        let session = handle.lock();
        (
            session.queued_len(),
            session.inflight_len(),
            session.counters.dropped(DropReason::QueueFull),
        )
    };
    assert_eq!(inflight, 2, "Receive Maximum 2");
    assert_eq!(queued, 10, "max_queued_messages");
    // Written to it: the two in flight and at most the QoS 0 messages between them.
    let written = u64::from(COUNT) - queued as u64 - dropped;
    assert!(
        (2..=4).contains(&written),
        "written {written}, dropped {dropped}"
    );
    assert_eq!(drops(&server, DropReason::QueueFull), dropped);
    assert_eq!(normal.try_recv(QUIET).await, Err("timed out"));
    drop(slow);
    server.shutdown().await;
}

// ---- session queue limits ----

#[tokio::test]
async fn session_queue_limit_in_messages_drops_the_newest_and_counts_them() {
    let (server, addr) = start_with(|c| c.limits.max_queued_messages = 5).await;
    offline_subscriber(&server, addr, "sub", "q/#").await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    for n in 0..8u16 {
        let r = publ
            .publish("q/x", &[n as u8], QoS::AtLeastOnce, false, n + 1)
            .await;
        // The publisher is acknowledged even when its message is dropped for a subscriber.
        assert_eq!(r, ReasonCode::Success);
    }
    assert_eq!(session_drops(&server, "sub", DropReason::QueueFull), 3);
    assert_eq!(drops(&server, DropReason::QueueFull), 3);

    let mut sub = persistent(addr, "sub", false).await;
    for n in 0..5u8 {
        assert_eq!(&sub.recv_publish().await.payload[..], &[n]);
    }
    publ.publish("q/x", b"after", QoS::AtLeastOnce, false, 9)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"after");
    server.shutdown().await;
}

#[tokio::test]
async fn session_queue_limit_in_bytes_drops_and_counts() {
    let (server, addr) = start_with(|c| c.limits.max_queued_bytes = 100).await;
    offline_subscriber(&server, addr, "sub", "q/#").await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    // 30-byte payloads: three fit in 100 bytes.
    for n in 0..6u8 {
        publ.publish("q/x", &[n; 30], QoS::AtLeastOnce, false, u16::from(n) + 1)
            .await;
    }
    // Alone larger than the limit.
    publ.publish("q/x", &[9; 101], QoS::AtLeastOnce, false, 7)
        .await;
    {
        let handle = server.broker().session("sub").unwrap();
        let session = handle.lock();
        assert_eq!(session.queued_len(), 3);
        assert_eq!(session.queued_bytes(), 90);
    }
    assert_eq!(session_drops(&server, "sub", DropReason::QueueFull), 4);
    assert_eq!(drops(&server, DropReason::QueueFull), 4);

    let mut sub = persistent(addr, "sub", false).await;
    for n in 0..3u8 {
        assert_eq!(&sub.recv_publish().await.payload[..], &[n; 30]);
    }
    publ.publish("q/x", b"after", QoS::AtLeastOnce, false, 8)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"after");
    server.shutdown().await;
}

#[tokio::test]
async fn session_queue_drop_oldest_policy_keeps_the_newest() {
    let (server, addr) = start_with(|c| {
        c.limits.max_queued_messages = 5;
        c.limits.queue_full_policy = QueueFullPolicyName::DropOldest;
    })
    .await;
    assert_eq!(
        server.broker().config().queue_full_policy,
        QueueFullPolicy::DropOldest
    );
    offline_subscriber(&server, addr, "sub", "q/#").await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    for n in 0..8u16 {
        publ.publish("q/x", &[n as u8], QoS::AtLeastOnce, false, n + 1)
            .await;
    }
    assert_eq!(drops(&server, DropReason::QueueFull), 3);
    let mut sub = persistent(addr, "sub", false).await;
    for n in 3..8u8 {
        assert_eq!(&sub.recv_publish().await.payload[..], &[n]);
    }
    publ.publish("q/x", b"after", QoS::AtLeastOnce, false, 9)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"after");
    server.shutdown().await;
}

#[tokio::test]
async fn drops_are_counted_by_reason() {
    // Room for one 100-byte payload and a few small ones per session.
    let (server, addr) = start_with(|c| {
        c.limits.max_queued_bytes = 150;
        c.limits.max_retained_messages = 0;
        c.limits.max_topic_levels = 4;
    })
    .await;
    let mut publ = Raw::connect(addr, V5, "pub").await;

    // QoS 0 for an offline session.
    offline_subscriber(&server, addr, "offline0", "r/qos0").await;
    publ.publish("r/qos0", b"x", QoS::AtMostOnce, false, 0)
        .await;

    // A full queue.
    offline_subscriber(&server, addr, "full", "r/full").await;
    publ.publish("r/full", &[1; 100], QoS::AtLeastOnce, false, 1)
        .await;
    publ.publish("r/full", &[2; 100], QoS::AtLeastOnce, false, 2)
        .await;

    // Too large for the client.
    let (mut small, _) = Raw::connect_with(addr, V5, "small", |c| {
        c.properties.maximum_packet_size = Some(64);
    })
    .await;
    small.subscribe(1, "r/big", QoS::AtLeastOnce).await;
    publ.publish("r/big", &[0; 100], QoS::AtLeastOnce, false, 3)
        .await;
    publ.publish("r/big", b"fits", QoS::AtLeastOnce, false, 4)
        .await;
    assert_eq!(&small.recv_publish().await.payload[..], b"fits");

    // Refused publishes, counted against the publisher.
    let mut p = Publish::new(s("r/pfi"), Bytes::from_static(b"\xFF"));
    p.qos = QoS::AtLeastOnce;
    p.packet_id = Some(pid(5));
    p.properties.payload_format_indicator = Some(true);
    assert_eq!(
        publ.publish_packet(p).await,
        ReasonCode::PayloadFormatInvalid
    );
    let r = publ
        .publish("$SYS/broker/x", b"x", QoS::AtLeastOnce, false, 6)
        .await;
    assert_eq!(r, ReasonCode::NotAuthorized);
    let r = publ
        .publish("r/retained", b"x", QoS::AtLeastOnce, true, 9)
        .await;
    assert_eq!(r, ReasonCode::QuotaExceeded);
    let r = publ
        .publish("r/a/b/c/d", b"x", QoS::AtLeastOnce, false, 10)
        .await;
    assert_eq!(r, ReasonCode::TopicNameInvalid);

    // Expired while waiting for an offline session.
    offline_subscriber(&server, addr, "late", "r/exp").await;
    let mut p = Publish::new(s("r/exp"), Bytes::from_static(b"x"));
    p.qos = QoS::AtLeastOnce;
    p.packet_id = Some(pid(7));
    p.properties.message_expiry_interval = Some(1);
    publ.publish_packet(p).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut late = persistent(addr, "late", false).await;
    publ.publish("r/exp", b"marker", QoS::AtLeastOnce, false, 8)
        .await;
    assert_eq!(&late.recv_publish().await.payload[..], b"marker");

    let expected = [
        (DropReason::Qos0Offline, "offline0"),
        (DropReason::QueueFull, "full"),
        (DropReason::TooLargeForClient, "small"),
        (DropReason::PayloadFormatInvalid, "pub"),
        (DropReason::NotAuthorized, "pub"),
        (DropReason::QuotaExceeded, "pub"),
        (DropReason::LimitExceeded, "pub"),
        (DropReason::Expired, "late"),
    ];
    // A body the store lost (`store_lost`) needs damage on disk: see `durability.rs`,
    // `a_body_damaged_on_disk_is_dropped_and_counted_and_the_rest_delivered`.
    assert_eq!(
        expected.len() + 1,
        DropReason::ALL.len(),
        "every reason covered"
    );
    for (reason, client) in expected {
        assert_eq!(drops(&server, reason), 1, "{}", reason.label());
        assert_eq!(
            session_drops(&server, client, reason),
            1,
            "{}",
            reason.label()
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_settles_the_session_of_a_slow_consumer_stuck_in_a_write() {
    let (server, addr) = start_with(|c| c.limits.max_queued_messages = 20).await;
    let mut slow = persistent(addr, "slow", true).await;
    slow.subscribe(1, "feed", QoS::AtMostOnce).await;
    let mut publ = Raw::connect(addr, V5, "pub").await;
    let payload = vec![0x5A; 64 * 1024];
    // Until its socket is full and the broker drops for it: its connection is stuck writing.
    for n in 0..1024u16 {
        if drops(&server, DropReason::QueueFull) > 0 {
            break;
        }
        publ.publish("feed", &payload, QoS::AtMostOnce, false, n)
            .await;
        // A round trip, so the publisher's messages are routed before the next check.
        publ.send(mqtt_codec::Packet::PingReq).await;
        assert_eq!(publ.recv().await, mqtt_codec::Packet::PingResp);
    }
    assert!(drops(&server, DropReason::QueueFull) > 0);

    let broker = server.broker().clone();
    server.shutdown().await;
    // The stuck connection was told to stop and settled its session (which outlives it),
    // rather than being cut off mid-write with the session still marked as in use.
    let handle = broker.session("slow").expect("session kept");
    assert!(
        !handle.is_online(),
        "session still owned by a dead connection"
    );
    drop(slow);
}
