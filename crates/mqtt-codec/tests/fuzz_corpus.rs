//! Replays the fuzz corpus (`fuzz/corpus/decode/` at the repository root) through the same
//! checks as the fuzz target (`fuzz/check.rs`, included by both), so every seed, and every input a
//! fuzzing run found interesting and someone committed, is a regression test on stable Rust.
//!
//! The seeds themselves are made here, by [`seeds`]: valid and malformed packets of every type
//! in both versions. `seeds_do_what_their_names_say` checks each decodes (or fails) as named,
//! `corpus_holds_every_seed` that the committed files are current; after changing [`seeds`],
//! rewrite the files with
//! `cargo test -p mqtt-codec --test fuzz_corpus -- --ignored regenerate_seed_corpus`.
//!
//! A corpus file is one selector byte and then the bytes to decode. The selector picks:
//! bits 0-1 the version the decoder starts in (0: 3.1.1, 2: 3.1, 1 or 3: 5.0); bits 2-4 the
//! maximum packet size (an index into [`MAX_PACKET_SIZES`]); bits 5-7 the size of the chunks the
//! bytes are also fed in, 2^n.

use std::num::NonZeroU16;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, MqttString, Packet,
    ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
    UnsubscribeProperties, Will, WillProperties,
};

// The checks, shared with the fuzz target.
#[path = "../../../fuzz/check.rs"]
mod check;
use check::{check, run, MAX_PACKET_SIZES};

// ---------------------------------------------------------------------------------------------
// Replaying the corpus
// ---------------------------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode")
}

#[test]
fn every_corpus_file_passes_the_fuzz_checks() {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus/decode exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= seeds().len(),
        "only {} corpus files",
        files.len()
    );
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails the fuzz checks", path.display());
    }
}

#[test]
fn corpus_holds_every_seed() {
    for seed in seeds() {
        let path = corpus_dir().join(seed.name);
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == seed.data(),
            "{} is missing or stale: rerun regenerate_seed_corpus",
            path.display()
        );
    }
}

#[test]
fn seeds_do_what_their_names_say() {
    let mut names = std::collections::HashSet::new();
    for seed in seeds() {
        assert!(names.insert(seed.name), "two seeds named {}", seed.name);
        let events = run(seed.version, seed.max(), &seed.bytes, seed.bytes.len());
        let mut buf = BytesMut::from(&seed.bytes[..]);
        let mut decoder = Decoder::new(seed.version).with_max_packet_size(seed.max());
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        let left = buf.len();
        match seed.expect {
            Expect::Packets(n) => assert!(
                events.len() == n && events.iter().all(Result::is_ok) && left == 0,
                "{}: expected {n} packets, got {events:?} and {left} bytes left",
                seed.name
            ),
            Expect::Pending(n) => assert!(
                events.len() == n && events.iter().all(Result::is_ok) && left > 0,
                "{}: expected {n} packets and then a wait, got {events:?}",
                seed.name
            ),
            Expect::Error(matches) => match events.last() {
                Some(Err(e)) if matches(e) => {}
                other => panic!("{}: expected a specific error, got {other:?}", seed.name),
            },
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus/decode; run after changing the seeds"]
fn regenerate_seed_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for seed in seeds() {
        std::fs::write(dir.join(seed.name), seed.data()).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The seeds
// ---------------------------------------------------------------------------------------------

/// What decoding a seed's bytes in one piece gives.
enum Expect {
    /// This many packets, and nothing left.
    Packets(usize),
    /// This many packets, then the decoder waits for more.
    Pending(usize),
    /// An error (after any number of packets) that this recognises.
    Error(fn(&DecodeError) -> bool),
}

struct Seed {
    name: &'static str,
    version: ProtocolVersion,
    /// Index into `MAX_PACKET_SIZES`.
    max_index: u8,
    /// The chunk size is 2^chunk_log2.
    chunk_log2: u8,
    bytes: Vec<u8>,
    expect: Expect,
}

impl Seed {
    fn selector(&self) -> u8 {
        let version = match self.version {
            ProtocolVersion::V3_1_1 => 0,
            ProtocolVersion::V5 => 1,
            ProtocolVersion::V3_1 => 2,
        };
        version | (self.max_index << 2) | (self.chunk_log2 << 5)
    }

    fn max(&self) -> u32 {
        MAX_PACKET_SIZES[usize::from(self.max_index)]
    }

    fn data(&self) -> Vec<u8> {
        let mut data = vec![self.selector()];
        data.extend_from_slice(&self.bytes);
        data
    }
}

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn id(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

fn encode(version: ProtocolVersion, packets: &[Packet]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for packet in packets {
        packet.encode(version, &mut buf).unwrap();
    }
    buf.to_vec()
}

/// A packet from its first byte and body, with the remaining length filled in.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(body);
    bytes
}

/// A seed decoded as `version` without a size limit, fed in chunks of 2^`chunk_log2` bytes.
fn seed(
    name: &'static str,
    version: ProtocolVersion,
    chunk_log2: u8,
    bytes: Vec<u8>,
    expect: Expect,
) -> Seed {
    Seed {
        name,
        version,
        max_index: 0,
        chunk_log2,
        bytes,
        expect,
    }
}

fn valid(name: &'static str, version: ProtocolVersion, chunk_log2: u8, packet: Packet) -> Seed {
    seed(
        name,
        version,
        chunk_log2,
        encode(version, &[packet]),
        Expect::Packets(1),
    )
}

fn v5_connect() -> Connect {
    Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 30,
        client_id: s("sensor-17"),
        will: Some(Will {
            topic: s("status/sensor-17"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(10),
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(3600),
                content_type: Some(s("text/plain")),
                response_topic: Some(s("status/ack")),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![(s("k"), s("v")), (s("k"), s("v2"))],
            },
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"secret")),
        properties: ConnectProperties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(20),
            maximum_packet_size: Some(65_536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: vec![(s("region"), s("eu"))],
            authentication_method: Some(s("SCRAM-SHA-1")),
            authentication_data: Some(Bytes::from_static(b"client-first")),
        },
    }
}

fn v5_publish() -> Publish {
    Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: s("sensors/17/temperature"),
        packet_id: Some(id(7)),
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(60),
            topic_alias: Some(3),
            response_topic: Some(s("replies/17")),
            correlation_data: Some(Bytes::from_static(b"req-1")),
            user_properties: vec![(s("unit"), s("C"))],
            subscription_identifiers: vec![1, 200, 268_435_455],
            content_type: Some(s("text/plain")),
        },
        payload: Bytes::from_static(b"21.5"),
    }
}

fn subscriptions(version: ProtocolVersion) -> Vec<Subscription> {
    let v5 = version.is_v5();
    let opts = |qos, no_local, rap, rh| SubscriptionOptions {
        qos,
        no_local: v5 && no_local,
        retain_as_published: v5 && rap,
        retain_handling: if v5 { rh } else { RetainHandling::default() },
    };
    vec![
        Subscription {
            filter: s("sensors/+/temperature"),
            options: opts(QoS::AtMostOnce, true, false, RetainHandling::SendIfNew),
        },
        Subscription {
            filter: s("alerts/#"),
            options: opts(QoS::AtLeastOnce, false, true, RetainHandling::DoNotSend),
        },
        Subscription {
            filter: s("$share/workers/jobs/+"),
            options: opts(
                QoS::ExactlyOnce,
                false,
                false,
                RetainHandling::SendAtSubscribe,
            ),
        },
    ]
}

fn seeds() -> Vec<Seed> {
    use DecodeError as E;
    let mut seeds = vec![
        // --- MQTT 3.1.1 and 3.1, valid ------------------------------------------------------
        valid("v3-connect-minimal", V3_1_1, 0, Connect::new(V3_1_1, s("c")).into()),
        valid("v3-connect-will-user-pass", V3_1_1, 2, {
            let mut c = Connect::new(V3_1_1, s("client-1"));
            c.will = Some(Will {
                topic: s("clients/client-1/status"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: WillProperties::default(),
            });
            c.username = Some(s("alice"));
            c.password = Some(Bytes::from_static(b"pw"));
            c.into()
        }),
        valid("v31-connect-mqisdp", V3_1, 1, Connect::new(V3_1, s("legacy")).into()),
        valid(
            "v3-connack-session-present",
            V3_1_1,
            0,
            ConnAck {
                session_present: true,
                ..ConnAck::default()
            }
            .into(),
        ),
        valid(
            "v3-connack-not-authorized",
            V3_1_1,
            0,
            ConnAck {
                reason_code: ReasonCode::NotAuthorized,
                ..ConnAck::default()
            }
            .into(),
        ),
        valid(
            "v3-publish-qos0",
            V3_1_1,
            0,
            Publish::new(s("a/b"), Bytes::from_static(b"hello")).into(),
        ),
        valid(
            "v3-publish-qos1-retain-128-byte-payload",
            V3_1_1,
            3,
            Publish {
                qos: QoS::AtLeastOnce,
                retain: true,
                packet_id: Some(id(1)),
                ..Publish::new(s("/leading/slash"), vec![0x5A; 128].into())
            }
            .into(),
        ),
        valid(
            "v3-publish-qos2-dup",
            V3_1_1,
            0,
            Publish {
                dup: true,
                qos: QoS::ExactlyOnce,
                packet_id: Some(id(65_535)),
                ..Publish::new(s("$SYS/x"), Bytes::new())
            }
            .into(),
        ),
        valid("v3-puback", V3_1_1, 0, Packet::PubAck(Ack::new(id(1)))),
        valid("v3-pubrec", V3_1_1, 0, Packet::PubRec(Ack::new(id(2)))),
        valid("v3-pubrel", V3_1_1, 0, Packet::PubRel(Ack::new(id(3)))),
        valid("v3-pubcomp", V3_1_1, 0, Packet::PubComp(Ack::new(id(4)))),
        valid(
            "v3-subscribe-wildcards-shared",
            V3_1_1,
            1,
            Subscribe {
                packet_id: id(10),
                properties: SubscribeProperties::default(),
                subscriptions: subscriptions(V3_1_1),
            }
            .into(),
        ),
        valid(
            "v3-suback-granted-and-failure",
            V3_1_1,
            0,
            SubAck {
                packet_id: id(10),
                properties: AckProperties::default(),
                reason_codes: vec![
                    ReasonCode::Success,
                    ReasonCode::GrantedQoS1,
                    ReasonCode::GrantedQoS2,
                    ReasonCode::UnspecifiedError,
                ],
            }
            .into(),
        ),
        valid(
            "v3-unsubscribe",
            V3_1_1,
            0,
            Unsubscribe {
                packet_id: id(11),
                properties: UnsubscribeProperties::default(),
                filters: vec![s("a/+"), s("#")],
            }
            .into(),
        ),
        valid(
            "v3-unsuback",
            V3_1_1,
            0,
            UnsubAck {
                packet_id: id(11),
                properties: AckProperties::default(),
                reason_codes: Vec::new(),
            }
            .into(),
        ),
        valid("v3-pingreq", V3_1_1, 0, Packet::PingReq),
        valid("v3-pingresp", V3_1_1, 0, Packet::PingResp),
        valid("v3-disconnect", V3_1_1, 0, Disconnect::default().into()),
        seed(
            "v3-stream-connect-publish-pingreq-disconnect",
            V3_1_1,
            0,
            encode(
                V3_1_1,
                &[
                    Connect::new(V3_1_1, s("streamer")).into(),
                    Publish::new(s("t"), Bytes::from_static(b"1")).into(),
                    Packet::PingReq,
                    Disconnect::default().into(),
                ],
            ),
            Expect::Packets(4),
        ),
        // --- MQTT 5.0, valid -------------------------------------------------------------------
        valid("v5-connect-will-props", V5, 2, v5_connect().into()),
        valid("v5-connect-password-without-username", V5, 0, {
            let mut c = Connect::new(V5, s(""));
            c.password = Some(Bytes::from_static(b"token"));
            c.into()
        }),
        valid(
            "v5-connack-all-props",
            V5,
            3,
            ConnAck {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: ConnAckProperties {
                    session_expiry_interval: Some(0),
                    receive_maximum: Some(100),
                    maximum_qos: Some(QoS::AtLeastOnce),
                    retain_available: Some(false),
                    maximum_packet_size: Some(1 << 20),
                    assigned_client_identifier: Some(s("auto-4f2a")),
                    topic_alias_maximum: Some(16),
                    reason_string: Some(s("welcome")),
                    user_properties: vec![(s("node"), s("b1"))],
                    wildcard_subscription_available: Some(true),
                    subscription_identifiers_available: Some(true),
                    shared_subscription_available: Some(false),
                    server_keep_alive: Some(45),
                    response_information: Some(s("replies/")),
                    server_reference: Some(s("other:1883")),
                    authentication_method: Some(s("SCRAM-SHA-1")),
                    authentication_data: Some(Bytes::from_static(b"server-final")),
                },
            }
            .into(),
        ),
        valid(
            "v5-publish-props-subscription-ids",
            V5,
            1,
            v5_publish().into(),
        ),
        valid(
            "v5-publish-topic-alias-empty-topic",
            V5,
            0,
            Publish {
                properties: PublishProperties {
                    topic_alias: Some(3),
                    ..PublishProperties::default()
                },
                ..Publish::new(MqttString::default(), Bytes::from_static(b"22.0"))
            }
            .into(),
        ),
        valid(
            "v5-puback-reason-props",
            V5,
            0,
            Packet::PubAck(Ack {
                packet_id: id(7),
                reason_code: ReasonCode::NoMatchingSubscribers,
                properties: AckProperties {
                    reason_string: Some(s("nobody listens")),
                    user_properties: vec![(s("a"), s("b"))],
                },
            }),
        ),
        // PUBREC with only a packet identifier: the short form means Success.
        valid("v5-pubrec-short-form", V5, 0, Packet::PubRec(Ack::new(id(8)))),
        valid(
            "v5-pubrel-reason-only",
            V5,
            0,
            Packet::PubRel(Ack::with_reason(id(9), ReasonCode::PacketIdentifierNotFound)),
        ),
        valid(
            "v5-subscribe-options-shared",
            V5,
            2,
            Subscribe {
                packet_id: id(12),
                properties: SubscribeProperties {
                    subscription_identifier: Some(16_384),
                    user_properties: vec![(s("x"), s("y"))],
                },
                subscriptions: subscriptions(V5),
            }
            .into(),
        ),
        valid(
            "v5-suback-reasons",
            V5,
            0,
            SubAck {
                packet_id: id(12),
                properties: AckProperties {
                    reason_string: Some(s("partly")),
                    user_properties: Vec::new(),
                },
                reason_codes: vec![
                    ReasonCode::GrantedQoS2,
                    ReasonCode::SharedSubscriptionsNotSupported,
                    ReasonCode::WildcardSubscriptionsNotSupported,
                ],
            }
            .into(),
        ),
        valid(
            "v5-unsubscribe-user-props",
            V5,
            0,
            Unsubscribe {
                packet_id: id(13),
                properties: UnsubscribeProperties {
                    user_properties: vec![(s("why"), s("done")), (s("why"), s("really"))],
                },
                filters: vec![s("$share/workers/jobs/+"), s("alerts/#")],
            }
            .into(),
        ),
        valid(
            "v5-unsuback-reasons",
            V5,
            0,
            UnsubAck {
                packet_id: id(13),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
            }
            .into(),
        ),
        valid(
            "v5-disconnect-reason-props",
            V5,
            0,
            Disconnect {
                reason_code: ReasonCode::ServerMoved,
                properties: DisconnectProperties {
                    session_expiry_interval: Some(0),
                    reason_string: Some(s("moving")),
                    user_properties: Vec::new(),
                    server_reference: Some(s("elsewhere:1883")),
                },
            }
            .into(),
        ),
        valid(
            "v5-auth-continue",
            V5,
            0,
            Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some(s("SCRAM-SHA-1")),
                    authentication_data: Some(Bytes::from_static(b"server-first")),
                    reason_string: None,
                    user_properties: Vec::new(),
                },
            }
            .into(),
        ),
        // A server that starts in 3.1.1 and switches on reading a 5.0 CONNECT.
        seed(
            "v5-stream-after-v3-start-byte-by-byte",
            V3_1_1,
            0,
            encode(
                V5,
                &[
                    v5_connect().into(),
                    v5_publish().into(),
                    Packet::PubAck(Ack::new(id(7))),
                    Auth::default().into(),
                    Disconnect::new(ReasonCode::DisconnectWithWillMessage).into(),
                ],
            ),
            Expect::Packets(5),
        ),
        // --- Malformed and refused -------------------------------------------------------------
        seed(
            "v3-subscribe-qos3",
            V3_1_1,
            0,
            frame(0x82, b"\x00\x01\x00\x01a\x03"),
            Expect::Error(|e| matches!(e, E::InvalidQoS { .. })),
        ),
        seed(
            "v3-subscribe-v5-option-bits",
            V3_1_1,
            0,
            frame(0x82, b"\x00\x01\x00\x01a\x04"),
            Expect::Error(|e| matches!(e, E::ReservedSubscriptionOptions { .. })),
        ),
        seed(
            "v3-subscribe-empty-payload",
            V3_1_1,
            0,
            frame(0x82, b"\x00\x01"),
            Expect::Error(|e| matches!(e, E::EmptyPayload { .. })),
        ),
        seed(
            "v3-subscribe-hash-not-last",
            V3_1_1,
            0,
            frame(0x82, b"\x00\x01\x00\x03#/a\x00"),
            Expect::Error(|e| matches!(e, E::InvalidTopicFilter { .. })),
        ),
        seed(
            "v3-auth-not-in-version",
            V3_1_1,
            0,
            frame(0xF0, b""),
            Expect::Error(|e| matches!(e, E::PacketNotInVersion { .. })),
        ),
        seed(
            "v3-connect-password-without-username",
            V3_1_1,
            0,
            frame(0x10, b"\x00\x04MQTT\x04\x40\x00\x3C\x00\x01c\x00\x02pw"),
            Expect::Error(|e| matches!(e, E::PasswordWithoutUsername)),
        ),
        seed(
            "v3-connect-reserved-flag",
            V3_1_1,
            0,
            frame(0x10, b"\x00\x04MQTT\x04\x03\x00\x3C\x00\x01c"),
            Expect::Error(|e| matches!(e, E::ConnectReservedFlag)),
        ),
        seed(
            "v3-connect-will-qos-without-will",
            V3_1_1,
            0,
            frame(0x10, b"\x00\x04MQTT\x04\x0A\x00\x3C\x00\x01c"),
            Expect::Error(|e| matches!(e, E::WillFlagsWithoutWill)),
        ),
        seed(
            "v3-connect-unsupported-level-6",
            V3_1_1,
            0,
            frame(0x10, b"\x00\x04MQTT\x06\x02\x00\x3C\x00\x01c"),
            Expect::Error(|e| matches!(e, E::UnsupportedProtocol { .. })),
        ),
        seed(
            "v3-connack-reserved-return-code",
            V3_1_1,
            0,
            frame(0x20, b"\x00\x06"),
            Expect::Error(|e| matches!(e, E::InvalidReasonCode { .. })),
        ),
        seed(
            "v3-publish-wildcard-topic",
            V3_1_1,
            0,
            frame(0x30, b"\x00\x03a/+x"),
            Expect::Error(|e| matches!(e, E::InvalidTopicName { .. })),
        ),
        seed(
            "v3-publish-qos3-flags",
            V3_1_1,
            0,
            frame(0x36, b"\x00\x01a\x00\x01"),
            Expect::Error(|e| matches!(e, E::InvalidQoS { .. })),
        ),
        seed(
            "v3-publish-dup-on-qos0",
            V3_1_1,
            0,
            frame(0x38, b"\x00\x01a"),
            Expect::Error(|e| matches!(e, E::DupOnQoS0)),
        ),
        seed(
            "v3-publish-invalid-utf8-topic",
            V3_1_1,
            0,
            frame(0x30, b"\x00\x02\xC0\xAF"),
            Expect::Error(|e| matches!(e, E::InvalidString { .. })),
        ),
        seed(
            "v3-publish-null-in-topic",
            V3_1_1,
            0,
            frame(0x30, b"\x00\x03a\x00b"),
            Expect::Error(|e| matches!(e, E::InvalidString { .. })),
        ),
        seed(
            "v3-publish-topic-runs-past-end",
            V3_1_1,
            0,
            frame(0x30, b"\x00\x09ab"),
            Expect::Error(|e| matches!(e, E::Truncated { .. })),
        ),
        seed(
            "v3-pubrel-flags-zero",
            V3_1_1,
            0,
            frame(0x60, b"\x00\x01"),
            Expect::Error(|e| matches!(e, E::InvalidFlags { .. })),
        ),
        seed(
            "v3-puback-zero-packet-id",
            V3_1_1,
            0,
            frame(0x40, b"\x00\x00"),
            Expect::Error(|e| matches!(e, E::ZeroPacketId { .. })),
        ),
        seed(
            "v3-pingreq-trailing-byte",
            V3_1_1,
            0,
            frame(0xC0, b"\x00"),
            Expect::Error(|e| matches!(e, E::TrailingBytes { .. })),
        ),
        seed(
            "v3-reserved-packet-type-0",
            V3_1_1,
            0,
            frame(0x00, b""),
            Expect::Error(|e| matches!(e, E::ReservedPacketType)),
        ),
        seed(
            "v3-remaining-length-5-bytes",
            V3_1_1,
            0,
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            Expect::Error(|e| matches!(e, E::VarIntTooLong { .. })),
        ),
        seed(
            "v3-remaining-length-not-minimal",
            V3_1_1,
            0,
            vec![0xC0, 0x80, 0x00],
            Expect::Error(|e| matches!(e, E::VarIntNotMinimal { .. })),
        ),
        seed(
            "v3-declares-256mib-sends-nothing",
            V3_1_1,
            0,
            vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F],
            Expect::Pending(0),
        ),
        Seed {
            max_index: 1,
            ..seed(
                "v5-declares-256mib-over-1mib-limit",
                V5,
                0,
                vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F],
                Expect::Error(|e| matches!(e, E::PacketTooLarge { .. })),
            )
        },
        Seed {
            max_index: 5,
            ..seed(
                "v5-publish-over-16-byte-limit",
                V5,
                0,
                encode(
                    V5,
                    &[Publish::new(s("a/b"), Bytes::from_static(b"0123456789")).into()],
                ),
                Expect::Error(|e| matches!(e, E::PacketTooLarge { .. })),
            )
        },
        seed(
            "v5-publish-topic-alias-zero",
            V5,
            0,
            frame(0x30, b"\x00\x01a\x03\x23\x00\x00"),
            Expect::Error(|e| matches!(e, E::TopicAliasZero)),
        ),
        seed(
            "v5-publish-empty-topic-without-alias",
            V5,
            0,
            frame(0x30, b"\x00\x00\x00payload"),
            Expect::Error(|e| matches!(e, E::EmptyTopicWithoutAlias)),
        ),
        seed(
            "v5-publish-subscription-id-zero",
            V5,
            0,
            frame(0x30, b"\x00\x01a\x02\x0B\x00"),
            Expect::Error(|e| matches!(e, E::InvalidPropertyValue { .. })),
        ),
        seed(
            "v5-publish-property-length-past-end",
            V5,
            0,
            frame(0x30, b"\x00\x01a\x09\x01\x01"),
            Expect::Error(|e| matches!(e, E::Truncated { .. })),
        ),
        seed(
            "v5-connect-duplicate-session-expiry",
            V5,
            0,
            frame(
                0x10,
                b"\x00\x04MQTT\x05\x02\x00\x3C\x0A\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02\x00\x01c",
            ),
            Expect::Error(|e| matches!(e, E::DuplicateProperty { .. })),
        ),
        seed(
            "v5-connect-auth-data-without-method",
            V5,
            0,
            frame(0x10, b"\x00\x04MQTT\x05\x02\x00\x3C\x04\x16\x00\x01x\x00\x01c"),
            Expect::Error(|e| matches!(e, E::AuthDataWithoutMethod { .. })),
        ),
        seed(
            "v5-connect-unknown-property",
            V5,
            0,
            frame(0x10, b"\x00\x04MQTT\x05\x02\x00\x3C\x02\x7F\x00\x00\x01c"),
            Expect::Error(|e| matches!(e, E::UnknownProperty { .. })),
        ),
        seed(
            "v5-connect-will-property-in-connect",
            V5,
            0,
            frame(0x10, b"\x00\x04MQTT\x05\x02\x00\x3C\x05\x18\x00\x00\x00\x01\x00\x01c"),
            Expect::Error(|e| matches!(e, E::PropertyNotAllowed { .. })),
        ),
        seed(
            "v5-connack-maximum-qos-2",
            V5,
            0,
            frame(0x20, b"\x00\x00\x02\x24\x02"),
            Expect::Error(|e| matches!(e, E::InvalidPropertyValue { .. })),
        ),
        seed(
            "v5-connack-reserved-flags",
            V5,
            0,
            frame(0x20, b"\x02\x00\x00"),
            Expect::Error(|e| matches!(e, E::ConnAckReservedFlags { .. })),
        ),
        seed(
            "v5-subscribe-no-local-shared",
            V5,
            0,
            frame(0x82, b"\x00\x01\x00\x00\x0A$share/g/a\x04"),
            Expect::Error(|e| matches!(e, E::NoLocalOnSharedSubscription { .. })),
        ),
        seed(
            "v5-subscribe-retain-handling-3",
            V5,
            0,
            frame(0x82, b"\x00\x01\x00\x00\x01a\x30"),
            Expect::Error(|e| matches!(e, E::InvalidRetainHandling)),
        ),
        seed(
            "v5-puback-reason-not-allowed",
            V5,
            0,
            frame(0x40, b"\x00\x01\x92"),
            Expect::Error(|e| matches!(e, E::InvalidReasonCode { .. })),
        ),
        seed(
            "v5-auth-data-without-method",
            V5,
            0,
            frame(0xF0, b"\x18\x04\x16\x00\x01x"),
            Expect::Error(|e| matches!(e, E::AuthDataWithoutMethod { .. })),
        ),
    ];
    // A valid packet cut short: the decoder waits.
    let mut cut = encode(V5, &[v5_publish().into()]);
    cut.truncate(cut.len() - 3);
    seeds.push(seed(
        "v5-publish-truncated-waits",
        V5,
        4,
        cut,
        Expect::Pending(0),
    ));
    seeds
}
