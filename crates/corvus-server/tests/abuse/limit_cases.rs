//! Limits the protocol leaves open, pushed far past them: user properties, topic depth,
//! subscriptions per session, connections per source address, messages per second. Each is
//! answered for the one packet, filter or connection beyond it; the rest goes on.

use std::net::SocketAddr;

use bytes::BytesMut;
use corvus_server::config::Limits;
use corvus_server::metrics::SourceLimit;
use mqtt_codec::Decoder;
use tokio::task::JoinSet;

use super::*;

// ---- user properties ----

const PROPERTIES: usize = 100_000;

/// A QoS 1 PUBLISH (packet id 1) on `topic` carrying [`PROPERTIES`] user properties, each
/// `name` = `value`.
fn publish_with_properties(topic: &str, name: &[u8], value: &[u8]) -> Vec<u8> {
    let props = (0..PROPERTIES).fold(Body::new(), |props, _| {
        props.prop_pair(prop::USER_PROPERTY, name, value)
    });
    publish(0x32, topic.as_bytes(), Some(1), props, b"x")
}

/// 700 000 bytes: within the default Maximum Packet Size (1 MiB).
fn small_properties(topic: &str) -> Vec<u8> {
    publish_with_properties(topic, b"k", b"v")
}

/// 1 400 000 bytes: beyond the default Maximum Packet Size, within 2 MiB.
fn large_properties(topic: &str) -> Vec<u8> {
    publish_with_properties(topic, b"name", b"value")
}

/// A fresh client subscribed to a topic of its own sends the PUBLISH `build` makes for that
/// topic: PUBACK 0x83 (Implementation specific error), the message is not delivered (not
/// even to the sender's own subscription), and the connection goes on.
async fn expect_properties_refused(case: &Case, build: fn(&str) -> Vec<u8>, what: &str) {
    let n = unique();
    let topic = format!("props/{n}");
    let mut raw = case.connect(&format!("props-{n}")).await;
    assert_eq!(
        subscribe_all(&mut raw, 1, &[&topic]).await,
        [ReasonCode::Success]
    );
    raw.send_bytes(&build(&topic)).await;
    match raw.recv().await {
        Packet::PubAck(ack) => assert_eq!(
            (ack.packet_id, ack.reason_code),
            (pid(1), ReasonCode::ImplementationSpecificError),
            "{what}"
        ),
        other => panic!("{what}: expected PUBACK 0x83, got {other:?}"),
    }
    expect_alive_and_nothing_delivered(&mut raw, what).await;
    raw.disconnect().await;
}

/// Writes `bytes`, which the broker may stop reading and close the connection in the middle
/// of: a failed write is not an error here, what the broker sent before closing is what
/// counts.
async fn send_into_close(raw: &mut Raw, bytes: &[u8]) {
    let _ = tokio::time::timeout(WAIT, raw.stream.write_all(bytes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_user_properties_are_0x83_or_0x95_beyond_the_packet_size() {
    let max = Limits::default().max_packet_size as usize;
    run(
        |_| {},
        async |case| {
            let small = small_properties("props/0");
            assert!(small.len() <= max, "{} bytes", small.len());
            expect_properties_refused(case, small_properties, "700 kB of properties").await;
            // Too large to decode at all: MQTT 5.0 section 3.2.2.3.6, DISCONNECT 0x95.
            let large = large_properties("props/0");
            assert!(large.len() > max, "{} bytes", large.len());
            let mut raw = case.connect(&format!("props-{}", unique())).await;
            send_into_close(&mut raw, &large).await;
            match raw.expect_close().await.as_slice() {
                [Packet::Disconnect(d)] => {
                    assert_eq!(d.reason_code, ReasonCode::PacketTooLarge, "{d:?}")
                }
                other => panic!("1.4 MB of properties: expected DISCONNECT 0x95, got {other:?}"),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_user_properties_within_the_packet_size_are_0x83() {
    run(
        |c| c.limits.max_packet_size = 2 * 1024 * 1024,
        async |case| {
            expect_properties_refused(case, large_properties, "1.4 MB of properties").await;
        },
    )
    .await;
}

/// Two user properties `k` = 40 × `v`: 82 bytes, for a limit of 4 properties and 64 bytes.
fn properties_beyond_the_bytes(topic: &str) -> Vec<u8> {
    let value = [b'v'; 40];
    let props = Body::new()
        .prop_pair(prop::USER_PROPERTY, b"k", &value)
        .prop_pair(prop::USER_PROPERTY, b"k", &value);
    publish(0x32, topic.as_bytes(), Some(1), props, b"x")
}

/// `count` user properties `k` = `size` × `v`.
fn user_properties(count: usize, size: usize) -> mqtt_codec::UserProperties {
    vec![(s("k"), s(&"v".repeat(size))); count]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_within_the_count_but_beyond_the_bytes_are_0x83() {
    run(
        |c| {
            c.limits.max_user_properties = 4;
            c.limits.max_user_property_bytes = 64;
        },
        async |case| {
            // Within both (2 × 31 bytes): delivered.
            let n = unique();
            let topic = format!("props/{n}");
            let mut raw = case.connect(&format!("props-{n}")).await;
            assert_eq!(
                subscribe_all(&mut raw, 1, &[&topic]).await,
                [ReasonCode::Success]
            );
            let mut within = Publish::new(s(&topic), "x".into());
            within.qos = QoS::AtLeastOnce;
            within.packet_id = Some(pid(2));
            within.properties.user_properties = user_properties(2, 30);
            assert_eq!(raw.publish_packet(within).await, ReasonCode::Success);
            let got = next_publish_unacked(&mut raw).await;
            assert_eq!(got.properties.user_properties, user_properties(2, 30));
            raw.ack(&got).await;
            raw.disconnect().await;
            // Two properties, 82 bytes: PUBACK 0x83, not delivered.
            expect_properties_refused(case, properties_beyond_the_bytes, "82 bytes in 2").await;
            // A will with them: CONNACK 0x83, then the close.
            let mut raw = case.open().await;
            let mut connect = mqtt_codec::Connect::new(V5, s(&format!("will-props-{}", unique())));
            connect.will = Some(mqtt_codec::Will {
                topic: s("props/will"),
                payload: "gone".into(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: mqtt_codec::WillProperties {
                    user_properties: user_properties(2, 40),
                    ..Default::default()
                },
            });
            raw.expect_refused(
                connect,
                ReasonCode::ImplementationSpecificError,
                "a will with 82 bytes of properties",
            )
            .await;
        },
    )
    .await;
}

// ---- topic depth ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_of_65_000_levels_is_refused_alone_with_0x8f() {
    let deep = format!("a{}", "/".repeat(64_999));
    assert_eq!(deep.split('/').count(), 65_000);
    run(
        |_| {},
        async |case| {
            let id = format!("deep-{}", unique());
            let mut raw = case.connect(&id).await;
            let filters = ["deep/1", deep.as_str(), "deep/2"];
            assert_eq!(
                subscribe_all(&mut raw, 1, &filters).await,
                [
                    ReasonCode::Success,
                    ReasonCode::TopicFilterInvalid,
                    ReasonCode::Success
                ]
            );
            let held = case
                .server
                .broker()
                .session(&id)
                .unwrap()
                .lock()
                .subscription_count();
            assert_eq!(held, 2, "only the two granted filters are held");
            // The same depth as a topic name: PUBACK 0x90 (Topic Name invalid).
            let p = publish(0x32, deep.as_bytes(), Some(2), Body::new(), b"x");
            raw.send_bytes(&p).await;
            match raw.recv().await {
                Packet::PubAck(ack) => assert_eq!(ack.reason_code, ReasonCode::TopicNameInvalid),
                other => panic!("expected PUBACK 0x90, got {other:?}"),
            }
            expect_alive_and_nothing_delivered(&mut raw, "deep").await;
            raw.disconnect().await;
        },
    )
    .await;
}

// ---- subscriptions per session ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_subscriptions_from_one_client_stop_at_the_quota() {
    const PACKETS: usize = 1_000;
    const FILTERS: usize = 1_000;
    const BOUND: Duration = Duration::from_secs(60);
    let quota = Limits::default().max_subscriptions;
    run(
        |_| {},
        async |case| {
            let rss_before = rss_mib();
            let id = format!("hoarder-{}", unique());
            let mut raw = case.connect(&id).await;
            let start = Instant::now();
            for packet in 0..PACKETS {
                let first = packet * FILTERS;
                let filters: Vec<String> = (first..first + FILTERS)
                    .map(|n| format!("hoard/{n}"))
                    .collect();
                let expected: Vec<ReasonCode> = (first..first + FILTERS)
                    .map(|n| match n < quota {
                        true => ReasonCode::Success,
                        false => ReasonCode::QuotaExceeded,
                    })
                    .collect();
                let id = u16::try_from(packet + 1).unwrap();
                let codes = subscribe_all(&mut raw, id, &filters).await;
                assert!(codes == expected, "SUBSCRIBE {packet}: unexpected codes");
            }
            let took = start.elapsed();
            let held = case
                .server
                .broker()
                .session(&id)
                .unwrap()
                .lock()
                .subscription_count();
            assert_eq!(held, quota);
            // A filter the session holds already is no new subscription: granted again.
            assert_eq!(
                subscribe_all(&mut raw, 1, &["hoard/0", "hoard/999999"]).await,
                [ReasonCode::Success, ReasonCode::QuotaExceeded]
            );
            let grown = rss_mib().saturating_sub(rss_before);
            eprintln!(
                "{} subscriptions asked for in {took:?}, {held} held, resident memory grew \
                 {grown} MiB",
                PACKETS * FILTERS
            );
            assert!(took < BOUND, "took {took:?}");
            assert!(grown < RSS_GROWTH_MIB, "resident memory grew {grown} MiB");
            raw.disconnect().await;
        },
    )
    .await;
}

// ---- connections per source address ----

const ATTEMPTS: usize = 10_000;
/// Connection attempts under way at once.
const CONCURRENCY: usize = 64;
/// The sentinel's connections, which count against the same address (127.0.0.1).
const SENTINEL_CONNECTIONS: usize = 2;
/// File descriptors this process needs besides the crowd's (the sentinel, the other cases of
/// this binary running at the same time, the stores).
const SPARE_FDS: u64 = 512;

/// The soft limit on open files of this process, from /proc/self/limits.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `max_connections_per_source` for a connection flood: the default, unless this process
/// may not hold that many connections at both ends (the broker runs in it too, so every
/// admitted connection takes two descriptors).
fn per_source_limit() -> usize {
    let default = Limits::default().max_connections_per_source;
    let Some(files) = open_file_limit() else {
        return default;
    };
    let fits = files.saturating_sub(SPARE_FDS + 2 * CONCURRENCY as u64) / 2;
    let fits = usize::try_from(fits).unwrap_or(usize::MAX).max(16);
    if fits < default {
        eprintln!(
            "open-file limit {files}: max_connections_per_source lowered from {default} to {fits}"
        );
    }
    fits.min(default)
}

enum Attempt {
    /// CONNACK 0x00.
    Admitted(Raw),
    /// Closed with nothing sent; how long after the TCP connect.
    Refused(Duration),
}

/// A TCP connection and a CONNECT on it.
async fn attempt(addr: SocketAddr) -> Attempt {
    let stream = TcpStream::connect(addr).await.expect("TCP connect");
    let start = Instant::now();
    let mut raw = Raw::over(Box::new(stream), V5);
    let id = format!("crowd-{}", unique());
    // A refused connection may be closed before the CONNECT is written.
    let _ = raw
        .stream
        .write_all(&Connect::new(id.as_bytes()).bytes())
        .await;
    match raw.try_recv(WAIT).await {
        Ok(Some(Packet::ConnAck(ack))) if ack.reason_code == ReasonCode::Success => {
            Attempt::Admitted(raw)
        }
        Ok(None) => Attempt::Refused(start.elapsed()),
        other => panic!("{id}: expected CONNACK 0x00 or a bare close, got {other:?}"),
    }
}

struct Crowd {
    /// Held open until dropped.
    admitted: Vec<Raw>,
    refused: usize,
    slowest_refusal: Duration,
    took: Duration,
}

/// [`ATTEMPTS`] connections from 127.0.0.1, [`CONCURRENCY`] at a time; the admitted ones are
/// kept open, the refused ones are gone.
async fn crowd(addr: SocketAddr) -> Crowd {
    let start = Instant::now();
    let mut crowd = Crowd {
        admitted: Vec::new(),
        refused: 0,
        slowest_refusal: Duration::ZERO,
        took: Duration::ZERO,
    };
    let mut left = ATTEMPTS;
    while left > 0 {
        let batch = left.min(CONCURRENCY);
        let mut attempts = JoinSet::new();
        for _ in 0..batch {
            attempts.spawn(attempt(addr));
        }
        while let Some(done) = attempts.join_next().await {
            match done.expect("attempt task") {
                Attempt::Admitted(raw) => crowd.admitted.push(raw),
                Attempt::Refused(took) => {
                    crowd.refused += 1;
                    crowd.slowest_refusal = crowd.slowest_refusal.max(took);
                }
            }
        }
        left -= batch;
    }
    crowd.took = start.elapsed();
    eprintln!(
        "{ATTEMPTS} connection attempts in {:?}: {} admitted, {} refused (slowest refusal {:?})",
        crowd.took,
        crowd.admitted.len(),
        crowd.refused,
        crowd.slowest_refusal
    );
    assert_eq!(crowd.admitted.len() + crowd.refused, ATTEMPTS);
    assert!(
        crowd.slowest_refusal < MAX_GAP,
        "a refusal took {:?}",
        crowd.slowest_refusal
    );
    crowd
}

/// Connections refused so far, by limit: (too many open, too fast).
fn refusals(server: &Server) -> (u64, u64) {
    let metrics = &server.broker().metrics;
    (
        metrics.refused(SourceLimit::TooMany),
        metrics.refused(SourceLimit::TooFast),
    )
}

/// Closes the crowd, waits until the broker holds only the sentinel's connections again,
/// then a new connection from the same address is served (as soon as the rate allows).
async fn disperse(case: &Case, crowd: Crowd) {
    drop(crowd.admitted);
    let current = || case.server.broker().metrics.connections_current();
    let settled = tokio::time::timeout(WAIT, async {
        while current() != SENTINEL_CONNECTIONS as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "{} connections still open", current());
    let served = tokio::time::timeout(WAIT, async {
        loop {
            if let Attempt::Admitted(raw) = attempt(case.addr).await {
                return raw;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut raw = served.expect("a new connection is served after the crowd left");
    expect_alive_and_nothing_delivered(&mut raw, "after the crowd").await;
    raw.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_from_one_address_are_held_to_the_open_limit() {
    // No rate limit: only max_connections_per_source applies, so the count is exact.
    let max_open = per_source_limit();
    run(
        |c| {
            c.limits.max_connections_per_source = max_open;
            c.limits.connection_rate_per_source = 0;
        },
        async |case| {
            let before = refusals(&case.server);
            let crowd = crowd(case.addr).await;
            assert_eq!(
                crowd.admitted.len(),
                max_open - SENTINEL_CONNECTIONS,
                "admitted up to the limit, the sentinel's connections included"
            );
            let after = refusals(&case.server);
            assert_eq!(
                (after.0 - before.0, after.1 - before.1),
                (crowd.refused as u64, 0),
                "every refusal counted as too many open"
            );
            disperse(case, crowd).await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_from_one_address_are_held_to_the_rate_and_open_limits() {
    // The default limits (max_connections_per_source lowered only if the open-file limit
    // requires it).
    let max_open = per_source_limit();
    let rate = Limits::default().connection_rate_per_source;
    run(
        |c| c.limits.max_connections_per_source = max_open,
        async |case| {
            let before = refusals(&case.server);
            let crowd = crowd(case.addr).await;
            let admitted = crowd.admitted.len();
            // The bucket: `rate` at once, then `rate` a second.
            let allowance = f64::from(rate) * (1.0 + crowd.took.as_secs_f64());
            assert!(
                admitted as f64 <= allowance + 1.0,
                "{admitted} admitted in {:?} at {rate}/s",
                crowd.took
            );
            assert!(
                admitted + SENTINEL_CONNECTIONS <= max_open,
                "{admitted} admitted"
            );
            assert!(
                admitted >= rate as usize / 2,
                "only {admitted} admitted: at least most of a burst should be"
            );
            let after = refusals(&case.server);
            let (too_many, too_fast) = (after.0 - before.0, after.1 - before.1);
            assert_eq!(too_many + too_fast, crowd.refused as u64);
            assert!(too_fast > 0, "the rate limit refused none");
            eprintln!("refused: {too_many} too many open, {too_fast} too fast");
            disperse(case, crowd).await;
        },
    )
    .await;
}

// ---- message rate ----

/// Every packet in `bytes`, which must all be whole and valid.
fn decode_all(bytes: &[u8]) -> Vec<Packet> {
    let mut decoder = Decoder::new(V5);
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::new();
    while let Some(packet) = decoder
        .decode(&mut buf)
        .expect("valid packets from the broker")
    {
        packets.push(packet);
    }
    assert!(buf.is_empty(), "a partial packet at the end: {buf:?}");
    packets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_beyond_the_message_rate_is_disconnected_0x96() {
    // Four times the sentinel's own rate (one QoS 1 PUBLISH per 2 ms at most, so at most
    // 500/s): the sentinel's publisher must never be limited itself.
    const RATE: u32 = 2_000;
    const GRACE: u64 = 1;
    // 1 000 QoS 0 PUBLISHes of 7 bytes a write, as fast as the broker takes them.
    const BATCH: usize = 1_000;
    let within = Duration::from_secs(GRACE + 9);
    run(
        |c| {
            c.limits.max_message_rate = RATE;
            c.limits.message_rate_grace = GRACE;
        },
        async |case| {
            let raw = case.connect(&format!("flood-{}", unique())).await;
            let (mut reader, mut writer) = tokio::io::split(raw.stream);
            let batch = publish0(b"r", b"x").repeat(BATCH);
            let start = Instant::now();
            let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = sent.clone();
            let writing = tokio::spawn(async move {
                while writer.write_all(&batch).await.is_ok() {
                    counter.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let mut answer = Vec::new();
            // A reset is a close too; what arrived before it is in `answer`.
            let closed = tokio::time::timeout(within, reader.read_to_end(&mut answer)).await;
            let took = start.elapsed();
            writing.abort();
            let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                closed.is_ok(),
                "still connected after {took:?} of flooding at well beyond {RATE}/s \
                 (got {:?})",
                decode_all(&answer)
            );
            match decode_all(&answer).as_slice() {
                [Packet::Disconnect(d)] => {
                    assert_eq!(d.reason_code, ReasonCode::MessageRateTooHigh, "{d:?}")
                }
                other => panic!("expected DISCONNECT 0x96, got {other:?}"),
            }
            assert!(
                took >= Duration::from_secs(GRACE),
                "disconnected after {took:?}, before the grace period of {GRACE} s"
            );
            eprintln!("flooder disconnected after {took:?} ({sent} PUBLISHes written)");
        },
    )
    .await;
}

// ---- retained quota (broker-wide) ----

/// Removes the retained message on each of `topics` (an empty retained PUBLISH, which the
/// quota never refuses), so that the next round starts from an empty store.
async fn clear_retained(raw: &mut Raw, topics: &[String]) {
    for (i, topic) in topics.iter().enumerate() {
        let id = u16::try_from(i + 1).unwrap();
        assert_eq!(
            raw.publish(topic, b"", QoS::AtLeastOnce, true, id).await,
            ReasonCode::Success,
            "clearing {topic}"
        );
    }
}

/// Receives exactly `n` PUBLISHes and nothing more; returns their (topic, payload).
async fn received(raw: &mut Raw, n: usize) -> Vec<(String, Vec<u8>)> {
    let got = recv_publishes_acked(raw, n).await;
    assert_nothing_queued(raw).await;
    got.into_iter()
        .map(|p| (p.topic.to_string(), p.payload.to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_beyond_the_count_quota_are_0x97_and_go_nowhere() {
    const QUOTA: usize = 10;
    const BEYOND: usize = 1_000;
    run(
        |c| c.limits.max_retained_messages = QUOTA,
        async |case| {
            let n = unique();
            let topics: Vec<String> = (0..QUOTA + BEYOND)
                .map(|i| format!("hoard/{n}/{i}"))
                .collect();
            let mut live = case.connect(&format!("hoard-live-{n}")).await;
            let filter = format!("hoard/{n}/#");
            assert_eq!(
                subscribe_all(&mut live, 1, &[&filter]).await,
                [ReasonCode::Success]
            );
            let metrics = &case.server.broker().metrics;
            let dropped_before = metrics.dropped(DropReason::QuotaExceeded);
            let mut hoarder = case.connect(&format!("hoarder-{n}")).await;
            for (i, topic) in topics.iter().enumerate() {
                let expected = match i < QUOTA {
                    true => ReasonCode::Success,
                    false => ReasonCode::QuotaExceeded,
                };
                let got = hoarder
                    .publish(topic, b"kept", QoS::AtLeastOnce, true, 1)
                    .await;
                assert_eq!(got, expected, "{topic}");
            }
            // At QoS 2 too: PUBREC 0x97, and the flow ends there.
            let beyond = format!("hoard/{n}/qos2");
            assert_eq!(
                hoarder
                    .publish(&beyond, b"kept", QoS::ExactlyOnce, true, 2)
                    .await,
                ReasonCode::QuotaExceeded
            );
            // Replacing a retained message is within the quota.
            assert_eq!(
                hoarder
                    .publish(&topics[0], b"again", QoS::AtLeastOnce, true, 3)
                    .await,
                ReasonCode::Success
            );
            wait_dropped(
                &case.server,
                DropReason::QuotaExceeded,
                dropped_before + BEYOND as u64 + 1,
            )
            .await;
            // Delivered: the ones within the quota and the replacement; nothing refused.
            let mut expected: Vec<(String, Vec<u8>)> = topics[..QUOTA]
                .iter()
                .map(|t| (t.clone(), b"kept".to_vec()))
                .collect();
            expected.push((topics[0].clone(), b"again".to_vec()));
            assert_eq!(received(&mut live, QUOTA + 1).await, expected);
            assert_eq!(case.server.broker().retained_count(), QUOTA);
            // A later subscriber gets the ones kept, the latest of each.
            let mut late = case.connect(&format!("hoard-late-{n}")).await;
            assert_eq!(
                subscribe_all(&mut late, 1, &[&filter]).await,
                [ReasonCode::Success]
            );
            let mut kept = received(&mut late, QUOTA).await;
            kept.sort();
            expected.remove(0);
            expected.sort();
            assert_eq!(kept, expected);
            clear_retained(&mut hoarder, &topics[..QUOTA]).await;
            assert_eq!(case.server.broker().retained_count(), 0);
            for raw in [live, late, hoarder] {
                raw.disconnect().await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_beyond_the_byte_quota_are_0x97_and_go_nowhere() {
    // Counted as topic plus payload bytes.
    const QUOTA: usize = 4096;
    const BIG: usize = 64 * 1024;
    const FLOOD: usize = 100;
    run(
        |c| c.limits.max_retained_bytes = QUOTA,
        async |case| {
            let n = unique();
            let (first, big, last) = (
                format!("heavy/{n}/first"),
                format!("heavy/{n}/big"),
                format!("heavy/{n}/last"),
            );
            let mut live = case.connect(&format!("heavy-live-{n}")).await;
            let filter = format!("heavy/{n}/#");
            assert_eq!(
                subscribe_all(&mut live, 1, &[&filter]).await,
                [ReasonCode::Success]
            );
            let metrics = &case.server.broker().metrics;
            let dropped_before = metrics.dropped(DropReason::QuotaExceeded);
            let mut hoarder = case.connect(&format!("heavy-{n}")).await;
            let small = vec![b'a'; 1000];
            assert_eq!(
                hoarder
                    .publish(&first, &small, QoS::AtLeastOnce, true, 1)
                    .await,
                ReasonCode::Success
            );
            // 100 retained messages of 64 KiB, 6.4 MB in all: each one refused.
            let heavy = vec![b'b'; BIG];
            for _ in 0..FLOOD {
                assert_eq!(
                    hoarder
                        .publish(&big, &heavy, QoS::AtLeastOnce, true, 2)
                        .await,
                    ReasonCode::QuotaExceeded
                );
            }
            // What is left of the quota, to the byte: one byte more is refused, exactly
            // that is taken.
            let left = QUOTA - (first.len() + small.len()) - last.len();
            let over = vec![b'c'; left + 1];
            assert_eq!(
                hoarder
                    .publish(&last, &over, QoS::AtLeastOnce, true, 3)
                    .await,
                ReasonCode::QuotaExceeded
            );
            let fits = vec![b'c'; left];
            assert_eq!(
                hoarder
                    .publish(&last, &fits, QoS::AtLeastOnce, true, 4)
                    .await,
                ReasonCode::Success
            );
            wait_dropped(
                &case.server,
                DropReason::QuotaExceeded,
                dropped_before + FLOOD as u64 + 1,
            )
            .await;
            assert_eq!(case.server.broker().retained_bytes(), QUOTA);
            assert_eq!(case.server.broker().retained_count(), 2);
            // Delivered live: the two within the quota, nothing refused.
            assert_eq!(
                received(&mut live, 2).await,
                [(first.clone(), small.clone()), (last.clone(), fits.clone())]
            );
            clear_retained(&mut hoarder, &[first, last]).await;
            assert_eq!(case.server.broker().retained_bytes(), 0);
            live.disconnect().await;
            hoarder.disconnect().await;
        },
    )
    .await;
}

// ---- topic length ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_beyond_max_topic_length_are_refused_alone() {
    const MAX: usize = 64;
    run(
        |c| c.limits.max_topic_length = MAX,
        async |case| {
            let n = unique();
            let base = format!("long/{n}/");
            let sized = |len: usize| format!("{base}{}", "x".repeat(len - base.len()));
            let (exact, beyond) = (sized(MAX), sized(MAX + 1));
            // The longest a topic can be: 65 535 bytes (within the default packet size).
            let longest = sized(65_535);
            let mut watcher = case.connect(&format!("long-watcher-{n}")).await;
            assert_eq!(
                subscribe_all(&mut watcher, 1, &[format!("{base}#")]).await,
                [ReasonCode::Success]
            );
            // SUBSCRIBE: 0x8F for each filter beyond, the others granted.
            let id = format!("long-{n}");
            let mut client = case.connect(&id).await;
            assert_eq!(
                subscribe_all(&mut client, 1, &[&exact, &beyond, &longest]).await,
                [
                    ReasonCode::Success,
                    ReasonCode::TopicFilterInvalid,
                    ReasonCode::TopicFilterInvalid
                ]
            );
            let held = case
                .server
                .broker()
                .session(&id)
                .unwrap()
                .lock()
                .subscription_count();
            assert_eq!(held, 1, "only the filter within the limit is held");
            // PUBLISH: 0x90 (PUBACK, PUBREC), not delivered; the connection goes on.
            for (topic, qos, expected) in [
                (&beyond, QoS::AtLeastOnce, ReasonCode::TopicNameInvalid),
                (&longest, QoS::AtLeastOnce, ReasonCode::TopicNameInvalid),
                (&beyond, QoS::ExactlyOnce, ReasonCode::TopicNameInvalid),
                (&beyond, QoS::AtMostOnce, ReasonCode::Success),
                (&exact, QoS::AtLeastOnce, ReasonCode::Success),
            ] {
                let sent = client.publish(topic, b"x", qos, false, 2).await;
                assert_eq!(sent, expected, "{} bytes at {qos:?}", topic.len());
            }
            // Only the topic within the limit reached anyone (the client's own
            // subscription to it, and the watcher).
            assert_eq!(
                received(&mut watcher, 1).await,
                [(exact.clone(), b"x".to_vec())]
            );
            assert_eq!(
                received(&mut client, 1).await,
                [(exact.clone(), b"x".to_vec())]
            );
            // A will beyond it: CONNACK 0x90, then the close.
            let mut raw = case.open().await;
            let mut connect = mqtt_codec::Connect::new(V5, s(&format!("long-will-{n}")));
            connect.will = Some(mqtt_codec::Will {
                topic: s(&beyond),
                payload: "gone".into(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            });
            raw.expect_refused(
                connect,
                ReasonCode::TopicNameInvalid,
                "a will beyond max_topic_length",
            )
            .await;
            watcher.disconnect().await;
            client.disconnect().await;
        },
    )
    .await;
}

// ---- session expiry cap ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_asking_to_outlive_max_session_expiry_are_capped_and_expire() {
    const CAP: u32 = 2;
    run(
        |c| c.limits.max_session_expiry = CAP,
        async |case| {
            let n = unique();
            // v5 asking for an hour, and for never; v5 asking for 1 s and then for never on
            // DISCONNECT; 3.1.1 with a persistent session (never, in 3.1.1).
            let asks: [(&str, ProtocolVersion, Option<u32>, Option<u32>); 4] = [
                ("hour", V5, Some(3600), None),
                ("never", V5, Some(u32::MAX), None),
                ("extended", V5, Some(1), Some(u32::MAX)),
                ("v311", ProtocolVersion::V3_1_1, None, None),
            ];
            let mut ids = Vec::new();
            for (what, version, at_connect, at_disconnect) in asks {
                let id = format!("expiry-{what}-{n}");
                let (mut raw, ack) = Raw::connect_with(case.addr, version, &id, |c| {
                    c.clean_start = false;
                    c.properties.session_expiry_interval = at_connect;
                })
                .await;
                if let Some(asked) = at_connect {
                    // Told when it differs from what was asked (MQTT 5.0 section 3.2.2.3.2).
                    let told = ack.properties.session_expiry_interval.unwrap_or(asked);
                    assert_eq!(told, asked.min(CAP), "{what}: the expiry granted");
                }
                assert_eq!(
                    raw.subscribe(1, &format!("expiry/{n}"), QoS::AtLeastOnce)
                        .await,
                    [ReasonCode::GrantedQoS1]
                );
                let mut disconnect = mqtt_codec::Disconnect::default();
                disconnect.properties.session_expiry_interval = at_disconnect;
                raw.send(disconnect.into()).await;
                assert!(raw.expect_close().await.is_empty(), "{what}");
                ids.push((what, version, id));
            }
            // Kept for now, for the cap (the broker closes on the DISCONNECT, then settles
            // the session)...
            for (what, _, id) in &ids {
                wait_offline(&case.server, id).await;
                let handle = case.server.broker().session(id);
                let expiry = handle.map(|h| h.lock().expiry_interval);
                assert_eq!(expiry, Some(CAP), "{what}: kept, for the cap");
            }
            // ...and gone after the cap, whatever was asked.
            let broker = case.server.broker();
            let gone = tokio::time::timeout(Duration::from_secs(CAP.into()) + WAIT, async {
                while ids.iter().any(|(_, _, id)| broker.session(id).is_some()) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            let left: Vec<_> = ids
                .iter()
                .filter(|(_, _, id)| broker.session(id).is_some())
                .map(|(what, _, _)| *what)
                .collect();
            assert!(gone.is_ok(), "sessions past the cap of {CAP} s: {left:?}");
            // A reconnection finds no session (and leaves none: a clean one ends it).
            for (what, version, id) in ids {
                let (raw, ack) = Raw::connect_with(case.addr, version, &id, |c| {
                    c.clean_start = false;
                })
                .await;
                assert!(!ack.session_present, "{what}: the session expired");
                raw.disconnect().await;
                Raw::connect(case.addr, version, &id)
                    .await
                    .disconnect()
                    .await;
            }
        },
    )
    .await;
}
