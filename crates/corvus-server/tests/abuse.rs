//! The packet-level abuse suite: raw sockets sending what a broken or hostile client sends.
//!
//! Every case runs on its own broker with a [`Sentinel`](sentinel::Sentinel) streaming QoS 1
//! messages between two other clients meanwhile ([`run`]): the case asserts the exact outcome
//! for the abuser (the reason code the spec requires, or a close with no answer where the spec
//! says close), and the frame then asserts that the sentinel lost, duplicated, reordered and
//! stalled nothing, and that a fresh client is still served.
//!
//! To add a case: a `#[tokio::test]` calling `run(tune, async |case| { ... })`, building the
//! bad bytes with the `wire` helpers and checking the answer with the `expect_*` helpers below.
//! A case the broker gets wrong stays, marked `#[ignore = "broker bug: ..."]`.

mod common;
#[path = "abuse/sentinel.rs"]
mod sentinel;
#[path = "abuse/wire.rs"]
mod wire;
// The cases on limits beyond the protocol and on authentication and authorization.
#[path = "abuse/auth_cases.rs"]
mod auth_cases;
#[path = "abuse/limit_cases.rs"]
mod limit_cases;
// Stalls and oversized input on TLS and WebSocket listeners.
#[path = "abuse/transport_cases.rs"]
mod transport_cases;

use std::time::{Duration, Instant};

use common::*;
use corvus_core::DropReason;
use corvus_server::Server;
use mqtt_codec::{
    Ack, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions,
};
use sentinel::{run, unique, Case, MAX_GAP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wire::{header_only, prop, publish, publish0, publish2, subscribe, Body, Connect, HUGE};

const V5: ProtocolVersion = ProtocolVersion::V5;

// ---- what the abuser gets back ----

/// The broker closes the connection without sending anything; returns how long that took.
async fn expect_silent_close(raw: &mut Raw, what: &str) -> Duration {
    let start = Instant::now();
    let seen = raw.expect_close().await;
    assert!(
        seen.is_empty(),
        "{what}: expected a bare close, got {seen:?}"
    );
    start.elapsed()
}

/// The answer to a CONNECT that must be refused: the connection is closed, after at most a
/// CONNACK carrying `reason`. MQTT 5.0 section 4.13.1 and [MQTT-3.1.4-1]: the server closes
/// the connection, and MAY first send a CONNACK with a reason code of 0x80 or above.
async fn expect_connect_refused(raw: &mut Raw, reason: ReasonCode, what: &str) {
    match raw.expect_close().await.as_slice() {
        [] => {}
        [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, reason, "{what}: {ack:?}"),
        other => panic!("{what}: expected a close or CONNACK {reason}, got {other:?}"),
    }
}

/// Sends `bytes` on a fresh connected v5 client and expects DISCONNECT `reason`, then the
/// close [MQTT-4.13.1-1].
async fn expect_disconnect_after(case: &Case, bytes: &[u8], reason: ReasonCode, what: &str) {
    let mut raw = case.connect("abuser").await;
    raw.send_bytes(bytes).await;
    match raw.expect_close().await.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, reason, "{what}: {d:?}"),
        other => panic!("{what}: expected DISCONNECT {reason}, got {other:?}"),
    }
}

/// Sends `connect` on a fresh socket and expects it refused with `reason` (see
/// [`expect_connect_refused`]).
async fn expect_connect_refused_for(case: &Case, connect: Vec<u8>, reason: ReasonCode, what: &str) {
    let mut raw = case.open().await;
    raw.send_bytes(&connect).await;
    expect_connect_refused(&mut raw, reason, what).await;
}

/// Sends one SUBSCRIBE of `filters` (QoS 0 each) and returns the SUBACK's reason codes.
async fn subscribe_all(raw: &mut Raw, id: u16, filters: &[impl AsRef<str>]) -> Vec<ReasonCode> {
    let subscriptions = filters
        .iter()
        .map(|filter| Subscription {
            filter: s(filter.as_ref()),
            options: SubscriptionOptions::default(),
        })
        .collect();
    let subscribe = Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        subscriptions,
    };
    raw.send(subscribe.into()).await;
    match raw.recv().await {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, pid(id));
            ack.reason_codes
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// A PINGREQ is answered with a PINGRESP and nothing before it: the connection goes on, and
/// nothing was delivered to it meanwhile.
async fn expect_alive_and_nothing_delivered(raw: &mut Raw, what: &str) {
    raw.send(Packet::PingReq).await;
    match raw.recv().await {
        Packet::PingResp => {}
        other => panic!("{what}: expected PINGRESP, got {other:?}"),
    }
}

// ---- floods ----

/// Publishes `count` messages at `qos` (1 or 2) on `topic`, with up to `window` flows open at
/// a time, completing every flow; every acknowledgement must be a success. Payloads start
/// with the message's number.
async fn flood(
    publisher: &mut Raw,
    topic: &str,
    count: u32,
    qos: QoS,
    payload: &[u8],
    window: u16,
) {
    let mut free: Vec<u16> = (1..=window).rev().collect();
    let (mut sent, mut done) = (0u32, 0u32);
    while done < count {
        while sent < count {
            let Some(id) = free.pop() else { break };
            let mut body = sent.to_be_bytes().to_vec();
            body.extend_from_slice(payload);
            let mut p = Publish::new(s(topic), body.into());
            p.qos = qos;
            p.packet_id = Some(pid(id));
            publisher.send(p.into()).await;
            sent += 1;
        }
        match publisher.recv().await {
            Packet::PubAck(ack) if qos == QoS::AtLeastOnce => {
                assert_eq!(ack.reason_code, ReasonCode::Success, "{ack:?}");
                free.push(ack.packet_id.get());
                done += 1;
            }
            Packet::PubRec(rec) if qos == QoS::ExactlyOnce => {
                assert_eq!(rec.reason_code, ReasonCode::Success, "{rec:?}");
                publisher
                    .send(Packet::PubRel(Ack::new(rec.packet_id)))
                    .await;
            }
            Packet::PubComp(comp) if qos == QoS::ExactlyOnce => {
                assert_eq!(comp.reason_code, ReasonCode::Success, "{comp:?}");
                free.push(comp.packet_id.get());
                done += 1;
            }
            other => panic!("flood at {qos:?}, {done} of {count} done: got {other:?}"),
        }
    }
}

/// A session's (in flight, queued, dropped for a full queue).
fn session_load(server: &Server, client: &str) -> (usize, usize, u64) {
    let handle = server.broker().session(client).expect("session exists");
    let session = handle.lock();
    (
        session.inflight_len(),
        session.queued_len(),
        session.counters.dropped(DropReason::QueueFull),
    )
}

/// Waits until the session's load is `expected` (its connection task takes what it may
/// from the queue when it next runs).
async fn wait_for_load(server: &Server, client: &str, expected: (usize, usize, u64)) {
    let settled = tokio::time::timeout(WAIT, async {
        while session_load(server, client) != expected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let load = session_load(server, client);
    assert!(
        settled.is_ok(),
        "{client}: (in flight, queued, dropped) is {load:?}, expected {expected:?}"
    );
}

/// Receives exactly `n` PUBLISHes at `qos`, acknowledging none, then asserts nothing more
/// comes; returns their packet ids.
async fn take_unacked(raw: &mut Raw, n: usize, qos: QoS) -> Vec<u16> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let p = next_publish_unacked(raw).await;
        assert_eq!(p.qos, qos);
        ids.push(p.packet_id.expect("QoS > 0 has an id").get());
    }
    raw.expect_nothing().await;
    ids
}

/// This process's resident memory in MiB (the broker runs in it).
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib / 1024
}

/// A generous bound on memory growth during a flood: only a sanity check (the test binary
/// runs several brokers at once), not a measurement.
const RSS_GROWTH_MIB: u64 = 256;

// ---- 1-4: lengths, and before CONNECT ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_packet_not_connect_declaring_256_mb_is_closed_at_once() {
    // A long connect timeout: a close now can only be the max_connect_size check
    // [MQTT-3.1.0-1], without the broker waiting for, or buffering, the body.
    run(
        |c| c.limits.connect_timeout = 60,
        async |case| {
            for first in [0x30, 0x82, 0xC0] {
                let mut raw = case.open().await;
                raw.send_bytes(&header_only(first, HUGE)).await;
                let took = expect_silent_close(&mut raw, &format!("{first:#04x}")).await;
                assert!(took < MAX_GAP, "{first:#04x}: closed after {took:?}");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_byte_remaining_length_is_malformed() {
    // MQTT 5.0 section 1.5.5: a Variable Byte Integer has at most four bytes; this one has a
    // fifth. Before CONNECT: closed. After: DISCONNECT 0x81 [MQTT-4.13.1-1].
    let five = [0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
    run(
        |c| c.limits.connect_timeout = 60,
        async |case| {
            let mut raw = case.open().await;
            raw.send_bytes(&[&[0x10][..], &five].concat()).await;
            let took = expect_silent_close(&mut raw, "CONNECT").await;
            assert!(took < MAX_GAP, "closed after {took:?}");
            let publish = [&[0x30][..], &five].concat();
            expect_disconnect_after(case, &publish, ReasonCode::MalformedPacket, "PUBLISH").await;
            // [MQTT-1.5.5-1]: the minimum number of bytes; a PINGREQ with a remaining length
            // of 0 in two bytes is malformed too.
            let pingreq = [0xC0, 0x80, 0x00];
            expect_disconnect_after(case, &pingreq, ReasonCode::MalformedPacket, "0 in 2 bytes")
                .await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_declaring_256_mb_then_silence_is_closed_before_the_connect_timeout() {
    run(
        |c| c.limits.connect_timeout = 60,
        async |case| {
            // 256 MB, and one byte past max_connect_size (64 KiB by default).
            for declared in [HUGE, 64 * 1024 + 1] {
                let mut raw = case.open().await;
                raw.send_bytes(&header_only(0x10, declared)).await;
                let took = expect_silent_close(&mut raw, &format!("CONNECT of {declared}")).await;
                assert!(took < MAX_GAP, "{declared}: closed after {took:?}");
            }
            assert_eq!(
                case.server.broker().session_count(),
                2,
                "only the sentinel's"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connect_one_byte_per_second_is_closed_at_the_connect_timeout() {
    const TIMEOUT: u64 = 2;
    run(
        |c| c.limits.connect_timeout = TIMEOUT,
        async |case| {
            // A valid CONNECT of 24 bytes: it would take 24 s to arrive.
            let connect = Connect::new(b"slowloris").bytes();
            let stream = TcpStream::connect(case.addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut reader, mut writer) = stream.into_split();
            let start = Instant::now();
            let trickle = tokio::spawn(async move {
                for byte in connect {
                    if writer.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            let mut reply = Vec::new();
            let read = tokio::time::timeout(WAIT + Duration::from_secs(TIMEOUT), async {
                reader.read_to_end(&mut reply).await
            })
            .await
            .expect("closed in time");
            let took = start.elapsed();
            trickle.abort();
            // A reset is a close too; either way nothing was sent, no CONNACK above all.
            assert!(read.is_ok() || reply.is_empty(), "{read:?}");
            assert!(reply.is_empty(), "got {reply:?}");
            let deadline = Duration::from_secs(TIMEOUT);
            assert!(
                took >= deadline - Duration::from_millis(100) && took < deadline + MAX_GAP,
                "closed after {took:?}, the connect timeout is {deadline:?}"
            );
            assert!(case.server.broker().session("slowloris").is_none());
        },
    )
    .await;
}

// ---- 5: UTF-8 [MQTT-1.5.4-1], [MQTT-1.5.4-2] ----

/// Strings a receiver must treat as a Malformed Packet: ill-formed UTF-8 [MQTT-1.5.4-1], an
/// encoded surrogate (also [MQTT-1.5.4-1]) and U+0000 [MQTT-1.5.4-2].
const BAD_STRINGS: [(&str, &[u8]); 4] = [
    ("ill-formed UTF-8", b"a\xC3\x28"),
    ("truncated sequence", b"a\xE2\x82"),
    ("surrogate", b"a\xED\xA0\x80"),
    ("U+0000", b"a\x00b"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_utf8_in_connect_client_id_or_user_name_is_refused() {
    run(
        |_| {},
        async |case| {
            for (what, bad) in BAD_STRINGS {
                let connect = Connect::new(bad).bytes();
                let what = format!("client id, {what}");
                expect_connect_refused_for(case, connect, ReasonCode::MalformedPacket, &what).await;
                let connect = Connect::new(b"fine").username(bad).bytes();
                let what = format!("user name, {what}");
                expect_connect_refused_for(case, connect, ReasonCode::MalformedPacket, &what).await;
            }
            assert!(case.server.broker().session("fine").is_none());
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_utf8_in_a_publish_topic_is_disconnect_0x81() {
    run(
        |_| {},
        async |case| {
            for (what, bad) in BAD_STRINGS {
                let bytes = publish0(bad, b"x");
                expect_disconnect_after(case, &bytes, ReasonCode::MalformedPacket, what).await;
            }
        },
    )
    .await;
}

// ---- 6: properties ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_property_in_publish_is_disconnect_0x82() {
    // MQTT 5.0 section 3.3.2.3: "It is a Protocol Error to include the Message Expiry
    // Interval more than once"; the same for Content Type (3.3.2.3.9).
    let cases = [
        (
            "Message Expiry Interval twice",
            Body::new()
                .prop_u32(prop::MESSAGE_EXPIRY_INTERVAL, 9)
                .prop_u32(prop::MESSAGE_EXPIRY_INTERVAL, 9),
        ),
        (
            "Content Type twice",
            Body::new()
                .prop_str(prop::CONTENT_TYPE, b"a")
                .prop_str(prop::CONTENT_TYPE, b"b"),
        ),
    ];
    run(
        |_| {},
        async |case| {
            for (what, props) in &cases {
                let bytes = publish(0x32, b"t", Some(1), props.clone(), b"x");
                expect_disconnect_after(case, &bytes, ReasonCode::ProtocolError, what).await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_or_duplicate_connect_properties_are_refused() {
    // MQTT 5.0 section 3.1.2.11: each of these "is a Protocol Error".
    let cases = [
        (
            "Receive Maximum 0 (3.1.2.11.3)",
            Body::new().prop_u16(prop::RECEIVE_MAXIMUM, 0),
        ),
        (
            "Receive Maximum twice (3.1.2.11.3)",
            Body::new()
                .prop_u16(prop::RECEIVE_MAXIMUM, 5)
                .prop_u16(prop::RECEIVE_MAXIMUM, 5),
        ),
        (
            "Maximum Packet Size 0 (3.1.2.11.4)",
            Body::new().prop_u32(prop::MAXIMUM_PACKET_SIZE, 0),
        ),
        (
            "Request Problem Information 2 (3.1.2.11.7)",
            Body::new().prop_u8(prop::REQUEST_PROBLEM_INFORMATION, 2),
        ),
    ];
    run(
        |_| {},
        async |case| {
            for (what, props) in &cases {
                let connect = Connect::new(b"props").props(props.clone()).bytes();
                expect_connect_refused_for(case, connect, ReasonCode::ProtocolError, what).await;
            }
            assert!(case.server.broker().session("props").is_none());
        },
    )
    .await;
}

// ---- 7-10: PUBLISH and SUBSCRIBE content ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_id_0_is_disconnect_0x82() {
    // [MQTT-2.2.1-3]: SUBSCRIBE and PUBLISH with QoS > 0 carry a non-zero Packet Identifier.
    run(
        |_| {},
        async |case| {
            let cases = [
                (
                    "QoS 1 PUBLISH",
                    publish(0x32, b"t", Some(0), Body::new(), b"x"),
                ),
                ("QoS 2 PUBLISH", publish2(b"t", 0, b"x")),
                ("SUBSCRIBE", subscribe(0, b"t", 0x01)),
            ];
            for (what, bytes) in cases {
                expect_disconnect_after(case, &bytes, ReasonCode::ProtocolError, what).await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_qos_3_is_disconnect_0x81() {
    // [MQTT-3.3.1-4]: both QoS bits set is a Malformed Packet.
    run(
        |_| {},
        async |case| {
            let bytes = publish(0x36, b"t", Some(1), Body::new(), b"x");
            expect_disconnect_after(case, &bytes, ReasonCode::MalformedPacket, "QoS 3").await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_in_a_publish_topic_name_is_disconnect_0x82() {
    // [MQTT-3.3.2-2]: no wildcard characters in a Topic Name. The spec names no reason code;
    // the packet parses but breaks a rule, which is a Protocol Error (MQTT 5.0 section 1.2).
    // 0x90 (Topic Name invalid) is for a name "correctly formed, but not accepted".
    run(
        |_| {},
        async |case| {
            for topic in ["a/+", "a/#", "+", "#", "a/b#", "a+b"] {
                let bytes = publish(0x32, topic.as_bytes(), Some(1), Body::new(), b"x");
                expect_disconnect_after(case, &bytes, ReasonCode::ProtocolError, topic).await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_topic_and_bad_topic_aliases_are_refused() {
    const MAX: u16 = 10;
    let alias = |n| Body::new().prop_u16(prop::TOPIC_ALIAS, n);
    run(
        |c| c.limits.topic_alias_maximum = MAX,
        async |case| {
            let cases = [
                // MQTT 5.0 section 3.3.2.1: a zero-length Topic Name without a Topic Alias
                // is a Protocol Error.
                (
                    "empty topic, no alias",
                    publish(0x30, b"", None, Body::new(), b"x"),
                    ReasonCode::ProtocolError,
                ),
                // Section 3.3.2.3.4: an alias the receiver has no mapping for is a Protocol
                // Error; mappings do not carry over from another connection [MQTT-3.3.2-7].
                (
                    "unknown alias within the maximum",
                    publish(0x30, b"", None, alias(5), b"x"),
                    ReasonCode::ProtocolError,
                ),
                // [MQTT-3.3.2-9], [MQTT-3.3.2-8]: 0 or above the Topic Alias Maximum is
                // DISCONNECT 0x94 (Topic Alias invalid).
                (
                    "alias above the maximum",
                    publish(0x30, b"t", None, alias(MAX + 1), b"x"),
                    ReasonCode::TopicAliasInvalid,
                ),
                (
                    "alias 0",
                    publish(0x30, b"t", None, alias(0), b"x"),
                    ReasonCode::TopicAliasInvalid,
                ),
            ];
            // Alias 5 was set on another connection: still unknown on the next one.
            let mut other = case.connect("alias-setter").await;
            other
                .send_bytes(&publish(0x30, b"t", None, alias(5), b"x"))
                .await;
            other.send(Packet::PingReq).await;
            assert_eq!(other.recv().await, Packet::PingResp);
            for (what, bytes, reason) in cases {
                expect_disconnect_after(case, &bytes, reason, what).await;
            }
        },
    )
    .await;
}

// ---- 11-14: flow control and slow or silent peers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publishes_beyond_receive_maximum_are_disconnect_0x93() {
    const RECEIVE_MAXIMUM: u16 = 10;
    run(
        |c| c.limits.receive_maximum = RECEIVE_MAXIMUM,
        async |case| {
            let id = format!("greedy-{}", unique());
            let (mut raw, ack) = Raw::connect_with(case.addr, V5, &id, |_| {}).await;
            assert_eq!(ack.properties.receive_maximum, Some(RECEIVE_MAXIMUM));
            // Ten QoS 2 messages acknowledged with PUBREC and never released...
            for id in 1..=RECEIVE_MAXIMUM {
                raw.send_bytes(&publish2(b"greedy", id, b"x")).await;
                match raw.recv().await {
                    Packet::PubRec(rec) => {
                        assert_eq!(
                            (rec.packet_id.get(), rec.reason_code),
                            (id, ReasonCode::Success)
                        )
                    }
                    other => panic!("expected PUBREC {id}, got {other:?}"),
                }
            }
            // ...and the eleventh: MQTT 5.0 section 3.3.4, DISCONNECT 0x93.
            raw.send_bytes(&publish2(b"greedy", RECEIVE_MAXIMUM + 1, b"x"))
                .await;
            raw.expect_disconnect(ReasonCode::ReceiveMaximumExceeded)
                .await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_flood_to_a_subscriber_that_never_sends_pubrec_is_bounded() {
    const INFLIGHT: u16 = 20;
    const QUEUED: usize = 100;
    const COUNT: u32 = 10_000;
    run(
        |c| {
            c.limits.max_inflight = INFLIGHT;
            c.limits.max_queued_messages = QUEUED;
        },
        async |case| {
            let rss_before = rss_mib();
            let dropped_before = case.server.broker().metrics.dropped(DropReason::QueueFull);
            let (id, topic) = (format!("mute-{}", unique()), format!("flood/{}", unique()));
            let mut mute = case.connect(&id).await;
            assert_eq!(
                mute.subscribe(1, &topic, QoS::ExactlyOnce).await,
                [ReasonCode::GrantedQoS2]
            );
            let mut publisher = case.connect(&format!("flooder-{}", unique())).await;
            flood(
                &mut publisher,
                &topic,
                COUNT,
                QoS::ExactlyOnce,
                &[0; 100],
                64,
            )
            .await;
            // The broker's inflight window, then nothing: no PUBREC came back.
            let ids = take_unacked(&mut mute, INFLIGHT.into(), QoS::ExactlyOnce).await;
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                ids.len(),
                "packet ids in flight are unique: {ids:?}"
            );
            // The window in flight, the queue full, every other message dropped and counted.
            let dropped = u64::from(COUNT) - u64::from(INFLIGHT) - QUEUED as u64;
            wait_for_load(&case.server, &id, (INFLIGHT.into(), QUEUED, dropped)).await;
            let broker_drops = case.server.broker().metrics.dropped(DropReason::QueueFull);
            assert_eq!(
                broker_drops - dropped_before,
                dropped,
                "counted broker-wide too"
            );
            let grown = rss_mib().saturating_sub(rss_before);
            assert!(grown < RSS_GROWTH_MIB, "resident memory grew {grown} MiB");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_that_never_reads_10_mb_is_bounded() {
    const QUEUED_BYTES: usize = 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    const COUNT: u32 = 160; // 10 MiB
    run(
        |c| c.limits.max_queued_bytes = QUEUED_BYTES,
        async |case| {
            let rss_before = rss_mib();
            // A small receive buffer on our side, so the broker's writes back up quickly.
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let stream = socket.connect(case.addr).await.unwrap();
            let (id, topic) = (format!("slow-{}", unique()), format!("bulk/{}", unique()));
            let (mut slow, _) = Raw::over(Box::new(stream), V5).handshake(&id, |_| {}).await;
            assert_eq!(
                slow.subscribe(1, &topic, QoS::AtLeastOnce).await,
                [ReasonCode::GrantedQoS1]
            );
            // From here on the slow consumer never reads. The publisher is never held up:
            // every PUBACK arrives (within the harness's wait).
            let mut publisher = case.connect(&format!("bulk-publisher-{}", unique())).await;
            flood(
                &mut publisher,
                &topic,
                COUNT,
                QoS::AtLeastOnce,
                &vec![0x5A; CHUNK],
                16,
            )
            .await;
            let (_, _, dropped) = session_load(&case.server, &id);
            let queued_bytes = {
                let handle = case.server.broker().session(&id).unwrap();
                let session = handle.lock();
                session.queued_bytes()
            };
            assert!(queued_bytes <= QUEUED_BYTES, "queued {queued_bytes} bytes");
            assert!(
                dropped > 0,
                "10 MiB cannot all fit in socket buffers and the queue"
            );
            let grown = rss_mib().saturating_sub(rss_before);
            assert!(grown < RSS_GROWTH_MIB, "resident memory grew {grown} MiB");
            drop(slow);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_subscriber_that_never_sends_puback_is_bounded() {
    const INFLIGHT: u16 = 20;
    const QUEUED: usize = 100;
    const COUNT: u32 = 2_000;
    run(
        |c| {
            c.limits.max_inflight = INFLIGHT;
            c.limits.max_queued_messages = QUEUED;
        },
        async |case| {
            let (id, topic) = (format!("mute-{}", unique()), format!("feed/{}", unique()));
            let mut mute = case.connect(&id).await;
            assert_eq!(
                mute.subscribe(1, &topic, QoS::AtLeastOnce).await,
                [ReasonCode::GrantedQoS1]
            );
            let mut publisher = case.connect(&format!("feeder-{}", unique())).await;
            flood(&mut publisher, &topic, COUNT, QoS::AtLeastOnce, b"x", 64).await;
            let ids = take_unacked(&mut mute, INFLIGHT.into(), QoS::AtLeastOnce).await;
            assert_eq!(ids, (1..=INFLIGHT).collect::<Vec<_>>());
            let dropped = u64::from(COUNT) - u64::from(INFLIGHT) - QUEUED as u64;
            wait_for_load(&case.server, &id, (INFLIGHT.into(), QUEUED, dropped)).await;
        },
    )
    .await;
}

// ---- 15: size after CONNECT ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_above_maximum_packet_size_is_disconnect_0x95() {
    // MQTT 5.0 section 3.2.2.3.6: a packet above the Maximum Packet Size the server sent
    // in CONNACK is DISCONNECT 0x95 (Packet too large).
    const MAX: u32 = 1024;
    run(
        |c| c.limits.max_packet_size = MAX,
        async |case| {
            let (_, ack) = Raw::connect_with(case.addr, V5, "probe", |_| {}).await;
            assert_eq!(ack.properties.maximum_packet_size, Some(MAX));
            // A QoS 0 PUBLISH on "t" of this size takes 7 bytes besides its payload.
            let sized = |size: u32| publish0(b"t", &vec![b'x'; size as usize - 7]);
            assert_eq!(sized(MAX).len(), MAX as usize);
            // Exactly the maximum is fine.
            let mut fits = case.connect("fits").await;
            fits.send_bytes(&sized(MAX)).await;
            fits.send(Packet::PingReq).await;
            assert_eq!(fits.recv().await, Packet::PingResp);
            let cases = [
                ("one byte over", sized(MAX + 1)),
                ("2000-byte PUBLISH", sized(2000)),
                ("declared 256 MB", header_only(0x30, HUGE)),
            ];
            for (what, bytes) in cases {
                expect_disconnect_after(case, &bytes, ReasonCode::PacketTooLarge, what).await;
            }
        },
    )
    .await;
}
