//! Property tests of the codec as a whole.
//!
//! * Every packet type, in every protocol version it exists in, with every field and property
//!   it can carry there, survives encode → decode unchanged; `encoded_len` is the size of the
//!   encoding; the decoder accepts the packet at a maximum packet size of exactly its size and
//!   refuses it at one byte less; and the same bytes fed in random-sized chunks (alone or as a
//!   stream of several packets) decode to the same packets.
//! * Arbitrary bytes, and valid encodings with bytes flipped, cut or inserted, never make a
//!   decoder panic, whatever the version and maximum packet size; every error it reports maps
//!   to a failure reason code (>= 0x80); whatever it does accept re-encodes to no more bytes
//!   than it took and decodes back to itself; and feeding the bytes in chunks changes nothing.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, MqttString, Packet,
    PacketId, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
    UnsubscribeProperties, UserProperties, Will, WillProperties, VARINT_MAX,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use ProtocolVersion::{V3_1, V3_1_1, V5};

// ---------------------------------------------------------------------------------------------
// Value strategies
// ---------------------------------------------------------------------------------------------

/// Any MQTT string: any characters but U+0000 (multi-byte ones included), short.
fn mqtt_string() -> impl Strategy<Value = MqttString> {
    "[^\u{0}]{0,10}".prop_map(|s| MqttString::try_from(s).unwrap())
}

/// One level of a topic: no separator, no wildcard, possibly empty.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9]{1,5}",
        1 => "[^\u{0}+#/]{0,5}",
    ]
}

/// A valid topic name: non-empty, no wildcards; empty levels and leading `/` or `$` allowed.
fn topic_name() -> impl Strategy<Value = MqttString> {
    vec(level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a topic name is not empty", |t| !t.is_empty())
        .prop_map(|t| MqttString::try_from(t).unwrap())
}

/// A valid topic filter: levels of text or `+`, optionally ending in `#`, optionally shared.
fn topic_filter() -> impl Strategy<Value = MqttString> {
    let level_or_plus = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
    let plain = (vec(level_or_plus, 0..4), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("a topic filter is not empty", |f| !f.is_empty());
    (option::weighted(0.25, "[a-z0-9]{1,4}"), plain).prop_map(|(group, filter)| {
        let filter = match group {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter,
        };
        MqttString::try_from(filter).unwrap()
    })
}

fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|id| NonZeroU16::new(id).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

/// User properties: repeats of a name included, order significant.
fn user_properties() -> impl Strategy<Value = UserProperties> {
    let name = prop_oneof![Just(MqttString::from_static("k")), mqtt_string()];
    vec((name, mqtt_string()), 0..4)
}

/// A Subscription Identifier: 1 to 268,435,455, the variable byte integer boundaries favoured.
fn subscription_identifier() -> impl Strategy<Value = u32> {
    prop_oneof![
        select(vec![
            1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX
        ]),
        1..=VARINT_MAX,
    ]
}

/// Every reason code a packet of `packet`'s type may carry in MQTT 5.0.
fn reason_code_v5(packet: mqtt_codec::PacketType) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<ReasonCode> = (0..=u8::MAX)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.allowed_in(packet))
        .collect();
    assert!(!allowed.is_empty(), "{packet} allows no reason code");
    select(allowed)
}

/// Authentication method and data; data only with a method, as the spec requires.
fn authentication() -> impl Strategy<Value = (Option<MqttString>, Option<Bytes>)> {
    (option::of(mqtt_string()), option::of(binary(8)))
        .prop_map(|(method, data)| (method.clone(), method.and(data)))
}

/// A payload: mostly short, sometimes past the 1- and 2-byte remaining length boundaries.
fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => binary(32),
        2 => vec(any::<u8>(), 100..300).prop_map(Bytes::from),
        1 => vec(any::<u8>(), 16_300..16_500).prop_map(Bytes::from),
    ]
}

// ---------------------------------------------------------------------------------------------
// Property set strategies (MQTT 5.0 only)
// ---------------------------------------------------------------------------------------------

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(1..=u32::MAX),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        authentication(),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, user_properties, (method, data))| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties,
                authentication_method: method,
                authentication_data: data,
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(mqtt_string()),
        option::of(topic_name()),
        option::of(binary(8)),
        user_properties(),
    )
        .prop_map(
            |(wdi, pfi, mei, ct, rt, cd, user_properties)| WillProperties {
                will_delay_interval: wdi,
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties,
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let numbers = (
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        // Maximum QoS may only be sent as 0 or 1.
        option::of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
        option::of(any::<bool>()),
        option::of(1..=u32::MAX),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
    );
    let texts = (
        option::of(mqtt_string()),
        option::of(mqtt_string()),
        option::of(mqtt_string()),
        option::of(mqtt_string()),
        user_properties(),
        authentication(),
    );
    (numbers, texts).prop_map(
        |((sei, rm, mq, ra, mps, tam, wsa, sia, ssa, ska), (aci, rs, ri, sr, up, (am, ad)))| {
            ConnAckProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_qos: mq,
                retain_available: ra,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                topic_alias_maximum: tam,
                reason_string: rs,
                user_properties: up,
                wildcard_subscription_available: wsa,
                subscription_identifiers_available: sia,
                shared_subscription_available: ssa,
                server_keep_alive: ska,
                response_information: ri,
                server_reference: sr,
                authentication_method: am,
                authentication_data: ad,
            }
        },
    )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(topic_name()),
        option::of(binary(8)),
        user_properties(),
        vec(subscription_identifier(), 0..4),
        option::of(mqtt_string()),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, up, sids, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: sids,
            content_type: ct,
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(mqtt_string()), user_properties()).prop_map(|(reason_string, user_properties)| {
        AckProperties {
            reason_string,
            user_properties,
        }
    })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(mqtt_string()),
        user_properties(),
        option::of(mqtt_string()),
    )
        .prop_map(|(sei, rs, up, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: up,
            server_reference: sr,
        })
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        authentication(),
        option::of(mqtt_string()),
        user_properties(),
    )
        .prop_map(
            |((method, data), reason_string, user_properties)| AuthProperties {
                authentication_method: method,
                authentication_data: data,
                reason_string,
                user_properties,
            },
        )
}

/// Properties in 5.0; the empty set in 3.1 and 3.1.1, which have none.
fn props<T, S>(version: ProtocolVersion, strategy: S) -> BoxedStrategy<T>
where
    T: Default + Clone + std::fmt::Debug + 'static,
    S: Strategy<Value = T> + 'static,
{
    if version.is_v5() {
        strategy.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// Packet strategies
// ---------------------------------------------------------------------------------------------

fn connect(protocol: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = option::of(
        (
            topic_name(),
            binary(16),
            qos(),
            any::<bool>(),
            props(protocol, will_properties()),
        )
            .prop_map(|(topic, payload, qos, retain, properties)| Will {
                topic,
                payload,
                qos,
                retain,
                properties,
            }),
    );
    (
        any::<bool>(),
        any::<u16>(),
        mqtt_string(),
        will,
        option::of(mqtt_string()),
        option::of(binary(12)),
        props(protocol, connect_properties()),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.1 and 3.1.1 allow a password only with a user name [MQTT-3.1.2-22].
                let password = if protocol.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::from(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason_code = if version.is_v5() {
        reason_code_v5(mqtt_codec::PacketType::ConnAck).boxed()
    } else {
        // The six codes 3.1.1 has; every other reason code is sent as one of them.
        (0..=5u8)
            .prop_map(|c| ReasonCode::from_v3_connack(c).unwrap())
            .boxed()
    };
    (
        any::<bool>(),
        reason_code,
        props(version, connack_properties()),
    )
        .prop_map(|(session_present, reason_code, properties)| {
            Packet::from(ConnAck {
                // A refusal never has a session [MQTT-3.2.2-4], [MQTT-3.2.2-6].
                session_present: session_present && reason_code.is_success(),
                reason_code,
                properties,
            })
        })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        props(version, publish_properties()),
        payload(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, alias_only, id, properties, payload)| {
                // A topic alias may stand in for the topic (5.0 only).
                let topic = if alias_only && properties.topic_alias.is_some() {
                    MqttString::default()
                } else {
                    topic
                };
                let qos0 = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    // DUP must be 0 on QoS 0 [MQTT-3.3.1-2].
                    dup: dup && !qos0,
                    qos,
                    retain,
                    topic,
                    packet_id: (!qos0).then_some(id),
                    properties,
                    payload,
                })
            },
        )
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
fn ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    use mqtt_codec::PacketType as T;
    select(vec![T::PubAck, T::PubRec, T::PubRel, T::PubComp]).prop_flat_map(move |packet| {
        let reason_code = if version.is_v5() {
            reason_code_v5(packet).boxed()
        } else {
            Just(ReasonCode::Success).boxed()
        };
        (packet_id(), reason_code, props(version, ack_properties())).prop_map(
            move |(packet_id, reason_code, properties)| {
                let ack = Ack {
                    packet_id,
                    reason_code,
                    properties,
                };
                match packet {
                    T::PubAck => Packet::PubAck(ack),
                    T::PubRec => Packet::PubRec(ack),
                    T::PubRel => Packet::PubRel(ack),
                    _ => Packet::PubComp(ack),
                }
            },
        )
    })
}

fn subscription(version: ProtocolVersion) -> impl Strategy<Value = Subscription> {
    let retain_handling = select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendIfNew,
        RetainHandling::DoNotSend,
    ]);
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling,
    )
        .prop_map(move |(filter, qos, no_local, rap, retain_handling)| {
            let options = if version.is_v5() {
                SubscriptionOptions {
                    qos,
                    // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
                    no_local: no_local && !filter.starts_with("$share/"),
                    retain_as_published: rap,
                    retain_handling,
                }
            } else {
                // 3.1.1 options carry the QoS alone.
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            };
            Subscription { filter, options }
        })
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let properties = (option::of(subscription_identifier()), user_properties()).prop_map(
        |(subscription_identifier, user_properties)| SubscribeProperties {
            subscription_identifier,
            user_properties,
        },
    );
    (
        packet_id(),
        props(version, properties),
        vec(subscription(version), 1..6),
    )
        .prop_map(|(packet_id, properties, subscriptions)| {
            Packet::from(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if version.is_v5() {
        reason_code_v5(mqtt_codec::PacketType::SubAck).boxed()
    } else {
        // The granted QoS or 0x80 Failure.
        select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    (
        packet_id(),
        props(version, ack_properties()),
        vec(code, 1..6),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::from(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let properties =
        user_properties().prop_map(|user_properties| UnsubscribeProperties { user_properties });
    (
        packet_id(),
        props(version, properties),
        vec(topic_filter(), 1..6),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::from(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    // A 3.1.1 UNSUBACK is a bare packet identifier.
    let codes = if version.is_v5() {
        vec(reason_code_v5(mqtt_codec::PacketType::UnsubAck), 1..6).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), props(version, ack_properties()), codes).prop_map(
        |(packet_id, properties, reason_codes)| {
            Packet::from(UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
        },
    )
}

fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !version.is_v5() {
        // A 3.1.1 DISCONNECT has no body.
        return Just(Packet::from(Disconnect::default())).boxed();
    }
    (
        reason_code_v5(mqtt_codec::PacketType::Disconnect),
        disconnect_properties(),
    )
        .prop_map(|(reason_code, properties)| {
            Packet::from(Disconnect {
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        reason_code_v5(mqtt_codec::PacketType::Auth),
        auth_properties(),
    )
        .prop_map(|(reason_code, mut properties)| {
            // Only the empty form may omit the method (MQTT 5.0 section 3.15.2.2.2).
            let empty =
                reason_code == ReasonCode::Success && properties == AuthProperties::default();
            if !empty && properties.authentication_method.is_none() {
                properties.authentication_method = Some(MqttString::from_static("SCRAM-SHA-256"));
            }
            Packet::from(Auth {
                reason_code,
                properties,
            })
        })
}

/// Every packet but CONNECT (which names its own version) in `version`.
fn session_packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connack(version),
        publish(version),
        ack(version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

/// Any packet valid in `version`, CONNECT included.
fn any_packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    prop_oneof![1 => connect(version), 10 => session_packet(version)].boxed()
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(vec![V3_1, V3_1_1, V5])
}

/// A version and a packet valid in it.
fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), any_packet(v)))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .expect("valid packet encodes");
    buf
}

/// Feeds `wire` to `decoder` in chunks of the given sizes (cycled), decoding after each chunk,
/// and returns every packet decoded. Fails on an error or on bytes left over.
fn decode_in_chunks(
    mut decoder: Decoder,
    wire: &[u8],
    chunk_sizes: &[usize],
) -> Result<Vec<Packet>, TestCaseError> {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut rest = wire;
    let mut sizes = chunk_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(e) => return Err(TestCaseError::fail(format!("decode error: {e}"))),
            }
        }
    }
    prop_assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(packets)
}

/// Runs the decoder over `input` in chunks of `chunk` bytes and records everything it
/// returns, up to and including the first error. Also checks, for every packet decoded, that
/// it re-encodes to no more bytes than it took, with `encoded_len` right, and decodes back to
/// itself; and that every error maps to a failure reason code.
fn decode_stream(
    version: ProtocolVersion,
    max: u32,
    input: &[u8],
    chunk: usize,
) -> Result<Vec<Result<Packet, DecodeError>>, TestCaseError> {
    let mut decoder = Decoder::new(version).with_max_packet_size(max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let session_version = decoder.version();
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let taken = before - buf.len();
                    let wire = encode(&packet, session_version);
                    prop_assert!(wire.len() <= taken, "{packet:?} grew on re-encoding");
                    prop_assert_eq!(packet.encoded_len(session_version), wire.len());
                    let mut again = wire.clone();
                    let redecoded = Decoder::new(session_version).decode(&mut again);
                    prop_assert_eq!(redecoded, Ok(Some(packet.clone())));
                    prop_assert!(again.is_empty());
                    events.push(Ok(packet));
                }
                Ok(None) => break,
                Err(e) => {
                    let code = e.reason_code();
                    prop_assert!(code as u8 >= 0x80, "{e} maps to {code}");
                    events.push(Err(e));
                    return Ok(events);
                }
            }
        }
    }
    Ok(events)
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn encode_then_decode_gives_the_packet_back((version, packet) in versioned_packet()) {
        let wire = encode(&packet, version);
        prop_assert_eq!(packet.encoded_len(version), wire.len());

        let mut buf = wire.clone();
        let decoded = Decoder::new(version).decode(&mut buf);
        prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        prop_assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
    }

    #[test]
    fn max_packet_size_is_inclusive((version, packet) in versioned_packet()) {
        let wire = encode(&packet, version);
        let size = u32::try_from(wire.len()).unwrap();

        let mut buf = wire.clone();
        let decoded = Decoder::new(version).with_max_packet_size(size).decode(&mut buf);
        prop_assert_eq!(decoded, Ok(Some(packet)));

        let mut buf = wire.clone();
        let refused = Decoder::new(version).with_max_packet_size(size - 1).decode(&mut buf);
        prop_assert!(
            matches!(refused, Err(DecodeError::PacketTooLarge { .. })),
            "{:?}", refused
        );
    }

    #[test]
    fn a_packet_fed_in_random_chunks_decodes_the_same(
        (version, packet) in versioned_packet(),
        chunk_sizes in vec(1usize..16, 1..8),
    ) {
        let wire = encode(&packet, version);
        let packets = decode_in_chunks(Decoder::new(version), &wire, &chunk_sizes)?;
        prop_assert_eq!(packets, vec![packet]);
    }

    #[test]
    fn a_stream_fed_in_random_chunks_decodes_in_order(
        (version, packets) in version()
            .prop_flat_map(|v| (Just(v), vec(session_packet(v), 1..5))),
        chunk_sizes in vec(1usize..64, 1..8),
    ) {
        let mut wire = BytesMut::new();
        for packet in &packets {
            packet.encode(version, &mut wire).unwrap();
        }
        let decoded = decode_in_chunks(Decoder::new(version), &wire, &chunk_sizes)?;
        prop_assert_eq!(decoded, packets);
    }

    #[test]
    fn connect_switches_the_decoder_to_its_version(
        (protocol, connect, next) in version()
            .prop_flat_map(|v| (Just(v), connect(v), session_packet(v))),
        start in version(),
    ) {
        // A server that does not know its peer's version yet may start with any; the packets
        // after CONNECT are read in CONNECT's version.
        let mut wire = encode(&connect, start);
        next.encode(protocol, &mut wire).unwrap();
        let decoded = decode_in_chunks(Decoder::new(start), &wire, &[7])?;
        prop_assert_eq!(decoded, vec![connect, next]);
    }
}

/// Garbage that is mostly not quite garbage: a valid encoding with a few bytes changed,
/// removed or added (mostly past the fixed header, so the body decoders see them), or left
/// alone.
fn mutated_encoding() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0..3u8, 0..4u8);
    (versioned_packet(), vec(edit, 0..4)).prop_map(|((version, packet), edits)| {
        let mut bytes = encode(&packet, version).to_vec();
        for (at, byte, kind, spot) in edits {
            // Three times in four, leave the first two bytes alone.
            let skip = if spot == 0 { 0 } else { 2.min(bytes.len()) };
            let span = bytes.len() - skip;
            match kind {
                0 if span > 0 => bytes[skip + at.index(span)] = byte,
                1 if span > 0 => {
                    bytes.remove(skip + at.index(span));
                }
                _ => bytes.insert(skip + at.index(span + 1), byte),
            }
        }
        bytes
    })
}

fn header_then_noise() -> impl Strategy<Value = Vec<u8>> {
    let first = prop_oneof![
        // First bytes that are legal for their packet type.
        select(vec![
            0x10u8, 0x20, 0x30, 0x32, 0x34, 0x3B, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0,
            0xC0, 0xD0, 0xE0, 0xF0,
        ]),
        any::<u8>(),
    ];
    (first, vec(any::<u8>(), 0..200)).prop_map(|(first, rest)| {
        let mut bytes = vec![first];
        // Half the time, a remaining length that matches what follows.
        if rest.first().is_some_and(|b| b & 1 == 0) && rest.len() < 128 {
            bytes.push(rest.len() as u8 - 1);
            bytes.extend_from_slice(&rest[1..]);
        } else {
            bytes.extend_from_slice(&rest);
        }
        bytes
    })
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        4 => mutated_encoding(),
        2 => header_then_noise(),
    ]
}

/// Maximum packet sizes: none, and a few small ones.
fn max_packet_size() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(mqtt_codec::MAX_PACKET_SIZE),
        1 => select(vec![1 << 20, 64, 16, 5, 2, 1]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn garbage_never_panics_and_errors_are_failures(
        input in garbage(),
        version in version(),
        max in max_packet_size(),
        chunk in 1usize..32,
    ) {
        let whole = decode_stream(version, max, &input, input.len())?;
        let chunked = decode_stream(version, max, &input, chunk)?;
        // The decoder only ever looks at complete fields, so how the bytes arrive cannot
        // change what it makes of them.
        prop_assert_eq!(whole, chunked);
    }
}
