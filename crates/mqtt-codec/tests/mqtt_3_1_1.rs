//! MQTT 3.1.1 (OASIS Standard, 29 October 2014) conformance of the codec: one test per
//! normative statement that concerns the wire format, named after the statement's id
//! (`MQTT-3.1.2-3` -> `mqtt_3_1_2_3_...`; the spec's typo `MQTT-3-8.3-4` -> `mqtt_3_8_3_4_...`).
//! Rules the spec states without an id are tested under `section_x_y_z_...`. Every packet is
//! built by hand from bytes, and every failure is checked for its exact `DecodeError` variant
//! and `reason_code()`.
//!
//! Left to the broker core (session, delivery, retain, keep-alive or subscription behaviour,
//! not wire format):
//! MQTT-2.3.1-2, MQTT-2.3.1-3, MQTT-2.3.1-4, MQTT-3.1.0-1, MQTT-3.1.0-2, MQTT-3.1.2-4,
//! MQTT-3.1.2-5, MQTT-3.1.2-6, MQTT-3.1.2.7, MQTT-3.1.2-8, MQTT-3.1.2-10, MQTT-3.1.2-12,
//! MQTT-3.1.2-16, MQTT-3.1.2-17, MQTT-3.1.2-23, MQTT-3.1.2-24, MQTT-3.1.3-2, MQTT-3.1.4-2,
//! MQTT-3.1.4-3, MQTT-3.1.4-4, MQTT-3.1.4-5, MQTT-3.2.0-1, MQTT-3.2.2-1, MQTT-3.2.2-2,
//! MQTT-3.2.2-3, MQTT-3.2.2-5, MQTT-3.2.2-6, MQTT-3.3.1-3, MQTT-3.3.1-5,
//! MQTT-3.3.1-6, MQTT-3.3.1-7, MQTT-3.3.1-8, MQTT-3.3.1-9, MQTT-3.3.1-10, MQTT-3.3.1-11,
//! MQTT-3.3.1-12, MQTT-3.3.2-3, MQTT-3.3.4-1, MQTT-3.3.5-1, MQTT-3.3.5-2, MQTT-3.8.3-2,
//! MQTT-3.8.4-1, MQTT-3.8.4-2, MQTT-3.8.4-3, MQTT-3.8.4-4, MQTT-3.8.4-6, MQTT-3.10.4-1,
//! MQTT-3.10.4-2, MQTT-3.10.4-3, MQTT-3.10.4-4, MQTT-3.10.4-5, MQTT-3.10.4-6, MQTT-3.12.4-1,
//! MQTT-3.14.4-1, MQTT-3.14.4-2, MQTT-3.14.4-3, MQTT-4.1.0-1, MQTT-4.1.0-2, MQTT-4.3.2-1,
//! MQTT-4.3.2-2, MQTT-4.3.3-1, MQTT-4.3.3-2, MQTT-4.4.0-1, MQTT-4.5.0-1, MQTT-4.5.0-2,
//! MQTT-4.6.0-1, MQTT-4.6.0-2, MQTT-4.6.0-3, MQTT-4.6.0-4, MQTT-4.6.0-5, MQTT-4.6.0-6,
//! MQTT-4.7.2-1, MQTT-4.7.3-4, MQTT-4.8.0-2, MQTT-7.0.0-1, MQTT-7.0.0-2, MQTT-7.1.1-1,
//! MQTT-7.1.2-1
//!
//! Left to the client or the transport (not the broker's codec):
//! MQTT-3.1.3-7 (a client obligation; the decoder must accept its violation so the broker can
//! answer 0x02, see the MQTT-3.1.3-8 test), MQTT-6.0.0-1, MQTT-6.0.0-3, MQTT-6.0.0-4.

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, Auth, ConnAck, Connect, DecodeError, Decoder, Disconnect, EncodeError, MqttString, Packet,
    PacketId, PacketType, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, StringError,
    SubAck, Subscribe, Subscription, SubscriptionOptions, TopicError, UnsubAck, Unsubscribe, Will,
};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL_ERROR: ReasonCode = ReasonCode::ProtocolError;

// ---------------------------------------------------------------------------------------------
// Frame builders
// ---------------------------------------------------------------------------------------------

/// A UTF-8 string or binary field: a two-byte big-endian length, then the bytes.
fn lp(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).expect("field fits a two-byte length");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A variable byte integer, minimally encoded.
fn varint(mut value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return out;
        }
    }
}

/// A whole packet: the first byte (type and flags), the remaining length, the body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(u32::try_from(body.len()).unwrap()));
    out.extend_from_slice(body);
    out
}

/// CONNECT connect-flag bits (3.1.1 section 3.1.2.3).
const CLEAN: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_QOS_1: u8 = 0x08;
const WILL_QOS_2: u8 = 0x10;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// A CONNECT with an arbitrary protocol name and level, connect flags, keep alive 60 and the
/// given payload fields (already length-prefixed).
fn connect_with(name: &[u8], level: u8, flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    let mut body = lp(name); // protocol name
    body.push(level); // protocol level
    body.push(flags); // connect flags
    body.extend_from_slice(&[0x00, 0x3C]); // keep alive: 60 s
    for field in payload {
        body.extend_from_slice(field); // client id, will topic, will message, user, password
    }
    frame(0x10, &body)
}

/// A 3.1.1 CONNECT: protocol name "MQTT", level 4.
fn connect(flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    connect_with(b"MQTT", 4, flags, payload)
}

/// A PUBLISH: first byte (0x30 | DUP/QoS/RETAIN), topic, optional packet id, payload.
fn publish(first: u8, topic: &[u8], packet_id: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = lp(topic); // topic name
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes()); // packet identifier
    }
    body.extend_from_slice(payload); // payload, no length prefix
    frame(first, &body)
}

/// A SUBSCRIBE: packet id, then (filter, requested-QoS byte) pairs.
fn subscribe(packet_id: u16, pairs: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec(); // packet identifier
    for (filter, options) in pairs {
        body.extend(lp(filter)); // topic filter
        body.push(*options); // requested QoS
    }
    frame(0x82, &body)
}

/// An UNSUBSCRIBE: packet id, then filters back to back.
fn unsubscribe(packet_id: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec(); // packet identifier
    for filter in filters {
        body.extend(lp(filter)); // topic filter
    }
    frame(0xA2, &body)
}

// ---------------------------------------------------------------------------------------------
// Decode / encode helpers
// ---------------------------------------------------------------------------------------------

fn decode(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    Decoder::new(V4).decode(&mut buf)
}

/// Decodes one packet that fills `bytes` exactly.
fn decode_ok(bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = Decoder::new(V4)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{bytes:02X?} failed: {e:?}"))
        .unwrap_or_else(|| panic!("{bytes:02X?} is incomplete"));
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packet
}

fn decode_err(bytes: &[u8]) -> DecodeError {
    match decode(bytes) {
        Err(e) => e,
        Ok(p) => panic!("{bytes:02X?} decoded to {p:?}, expected an error"),
    }
}

/// Decodes `$bytes` with a 3.1.1 decoder and asserts the error variant and reason code.
macro_rules! assert_decode_err {
    ($bytes:expr, $pattern:pat $(if $guard:expr)?, $reason:expr) => {{
        let err = decode_err(&$bytes);
        assert!(
            matches!(err, $pattern $(if $guard)?),
            "unexpected error {err:?} for {:02X?}",
            &$bytes[..]
        );
        assert_eq!(err.reason_code(), $reason, "{err:?}");
        err
    }};
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(V4, &mut buf).expect("encodes");
    assert_eq!(
        buf.len(),
        packet.encoded_len(V4),
        "encoded_len of {packet:?}"
    );
    buf.to_vec()
}

fn encode_err(packet: &Packet) -> EncodeError {
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = packet.encode(V4, &mut buf).expect_err("must not encode");
    assert_eq!(
        &buf[..],
        b"keep",
        "a failed encode leaves the buffer as it was"
    );
    err
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn connect_packet(bytes: &[u8]) -> Connect {
    match decode_ok(bytes) {
        Packet::Connect(c) => *c,
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

fn publish_packet(bytes: &[u8]) -> Publish {
    match decode_ok(bytes) {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn subscribe_packet(bytes: &[u8]) -> Subscribe {
    match decode_ok(bytes) {
        Packet::Subscribe(p) => p,
        other => panic!("expected SUBSCRIBE, got {other:?}"),
    }
}

fn qos1_publish(topic: &'static str, packet_id: u16, payload: &'static [u8]) -> Publish {
    Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(id(packet_id)),
        ..Publish::new(s(topic), Bytes::from_static(payload))
    }
}

fn one_subscription(filter: &'static str, qos: QoS) -> Subscribe {
    Subscribe {
        packet_id: id(1),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: s(filter),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
    }
}

/// Ill-formed UTF-8: an overlong encoding of '/'.
const OVERLONG: &[u8] = &[0xC0, 0xAF];
/// Ill-formed UTF-8: the surrogate U+D800 encoded as if it were a character.
const SURROGATE: &[u8] = &[0xED, 0xA0, 0x80];

// ---------------------------------------------------------------------------------------------
// 1.5 Data representation
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_1_5_3_1_ill_formed_utf8_is_malformed() {
    let bad_strings: [&[u8]; 4] = [OVERLONG, SURROGATE, &[0xFF], &[b'a', 0xE2, 0x82]];
    for bad in bad_strings {
        // In a PUBLISH topic name.
        assert_decode_err!(
            publish(0x30, bad, None, b""),
            DecodeError::InvalidString {
                packet: PacketType::Publish,
                field: "topic name",
                error: StringError::InvalidUtf8,
            },
            MALFORMED
        );
        // In the CONNECT client identifier.
        assert_decode_err!(
            connect(CLEAN, &[&lp(bad)]),
            DecodeError::InvalidString {
                packet: PacketType::Connect,
                field: "client identifier",
                error: StringError::InvalidUtf8,
            },
            MALFORMED
        );
        // In a SUBSCRIBE topic filter.
        assert_decode_err!(
            subscribe(1, &[(bad, 0)]),
            DecodeError::InvalidString {
                packet: PacketType::Subscribe,
                field: "topic filter",
                error: StringError::InvalidUtf8,
            },
            MALFORMED
        );
    }
}

#[test]
fn mqtt_1_5_3_1_encoder_only_emits_well_formed_utf8() {
    // Every string the encoder writes is an MqttString, which cannot hold ill-formed UTF-8.
    for bad in [OVERLONG, SURROGATE] {
        assert_eq!(
            MqttString::from_bytes(Bytes::from_static(bad)),
            Err(StringError::InvalidUtf8)
        );
    }
    // A character outside the BMP (4 bytes) is well-formed and survives a round trip.
    let topic = MqttString::try_from("a/\u{1F600}").unwrap();
    let wire = encode(&Publish::new(topic.clone(), Bytes::new()).into());
    assert_eq!(&wire[2..4], &[0x00, 0x06]); // topic length: 'a' '/' + 4 bytes
    assert_eq!(&wire[4..], "a/\u{1F600}".as_bytes());
    assert_eq!(publish_packet(&wire).topic, topic);
}

#[test]
fn mqtt_1_5_3_2_null_character_is_malformed() {
    assert_decode_err!(
        publish(0x30, b"a\0b", None, b""),
        DecodeError::InvalidString {
            packet: PacketType::Publish,
            field: "topic name",
            error: StringError::NullCharacter,
        },
        MALFORMED
    );
    assert_decode_err!(
        connect(CLEAN | USERNAME, &[&lp(b"c"), &lp(b"\0")]),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "user name",
            error: StringError::NullCharacter,
        },
        MALFORMED
    );
    // The encoder cannot be handed one.
    assert_eq!(
        MqttString::try_from("a\0b"),
        Err(StringError::NullCharacter)
    );
}

#[test]
fn mqtt_1_5_3_3_byte_order_mark_is_not_stripped() {
    // EF BB BF is U+FEFF, a character of the topic like any other.
    let p = publish_packet(&publish(0x30, b"\xEF\xBB\xBFa", None, b"x"));
    assert_eq!(p.topic, "\u{FEFF}a");
    assert_eq!(p.payload, &b"x"[..]);
    let c = connect_packet(&connect(CLEAN, &[&lp(b"\xEF\xBB\xBF")]));
    assert_eq!(c.client_id, "\u{FEFF}");
    // And the encoder writes it back.
    assert_eq!(
        &encode(&p.into())[2..7],
        &[0x00, 0x04, 0xEF, 0xBB, 0xBF][..]
    );
}

#[test]
fn section_1_5_3_string_running_past_the_packet_is_malformed() {
    // Topic length 10, but only "a/b" follows.
    let bytes = frame(0x30, &[0x00, 0x0A, b'a', b'/', b'b']);
    assert_decode_err!(
        bytes,
        DecodeError::Truncated {
            packet: PacketType::Publish,
            field: "topic name"
        },
        MALFORMED
    );
    // Only one byte of a length prefix.
    assert_decode_err!(
        frame(0x30, &[0x00]),
        DecodeError::Truncated {
            packet: PacketType::Publish,
            field: "topic name"
        },
        MALFORMED
    );
}

#[test]
fn section_1_5_3_fields_longer_than_65535_bytes_are_not_encoded() {
    let mut c = Connect::new(V4, s("c"));
    c.username = Some(s("u"));
    c.password = Some(Bytes::from(vec![0u8; 65_536]));
    assert!(matches!(
        encode_err(&c.clone().into()),
        EncodeError::StringTooLong {
            packet: PacketType::Connect,
            field: "password"
        }
    ));
    c.password = Some(Bytes::from(vec![0u8; 65_535]));
    let wire = encode(&c.clone().into());
    assert_eq!(connect_packet(&wire), c);

    assert_eq!(
        MqttString::try_from("x".repeat(65_536)),
        Err(StringError::TooLong)
    );
}

#[test]
fn section_1_5_2_integers_are_big_endian() {
    // Keep alive 0x0102 = 258 s.
    let mut bytes = connect(CLEAN, &[&lp(b"c")]);
    bytes[10..12].copy_from_slice(&[0x01, 0x02]);
    assert_eq!(connect_packet(&bytes).keep_alive, 258);
    // Packet identifier 0x1234.
    let Packet::PubAck(ack) = decode_ok(&[0x40, 0x02, 0x12, 0x34]) else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.packet_id.get(), 0x1234);
    // The encoder writes them big-endian too.
    let mut c = Connect::new(V4, s("c"));
    c.keep_alive = 0xABCD;
    assert_eq!(&encode(&c.into())[10..12], &[0xAB, 0xCD]);
    assert_eq!(
        encode(&Packet::PubAck(Ack::new(id(0x1234)))),
        [0x40, 0x02, 0x12, 0x34]
    );
}

// ---------------------------------------------------------------------------------------------
// 2.2 Fixed header
// ---------------------------------------------------------------------------------------------

/// Every packet type but PUBLISH with its Table 2.2 flags and a minimal valid 3.1.1 body.
fn fixed_header_table() -> Vec<(PacketType, u8, Vec<u8>)> {
    vec![
        (
            PacketType::Connect,
            0x0,
            connect(CLEAN, &[&lp(b"c")])[2..].to_vec(),
        ),
        (PacketType::ConnAck, 0x0, vec![0x00, 0x00]),
        (PacketType::PubAck, 0x0, vec![0x00, 0x01]),
        (PacketType::PubRec, 0x0, vec![0x00, 0x01]),
        (PacketType::PubRel, 0x2, vec![0x00, 0x01]),
        (PacketType::PubComp, 0x0, vec![0x00, 0x01]),
        (
            PacketType::Subscribe,
            0x2,
            subscribe(1, &[(b"a", 0)])[2..].to_vec(),
        ),
        (PacketType::SubAck, 0x0, vec![0x00, 0x01, 0x00]),
        (
            PacketType::Unsubscribe,
            0x2,
            unsubscribe(1, &[b"a"])[2..].to_vec(),
        ),
        (PacketType::UnsubAck, 0x0, vec![0x00, 0x01]),
        (PacketType::PingReq, 0x0, vec![]),
        (PacketType::PingResp, 0x0, vec![]),
        (PacketType::Disconnect, 0x0, vec![]),
    ]
}

#[test]
fn mqtt_2_2_2_1_reserved_flags_must_match_table_2_2() {
    for (packet, expected, body) in fixed_header_table() {
        let type_bits = (packet as u8) << 4;
        // The table's flags: the packet decodes.
        let decoded = decode_ok(&frame(type_bits | expected, &body));
        assert_eq!(decoded.packet_type(), packet);
        // Any other flags: refused, whatever follows.
        for flags in (0..16u8).filter(|&f| f != expected) {
            assert_decode_err!(
                frame(type_bits | flags, &body),
                DecodeError::InvalidFlags { packet: p, flags: f, expected: e }
                    if p == packet && f == flags && e == expected,
                MALFORMED
            );
        }
    }
}

#[test]
fn mqtt_2_2_2_1_encoder_writes_table_2_2_flags() {
    let cases: Vec<(Packet, u8)> = vec![
        (Connect::new(V4, s("c")).into(), 0x10),
        (ConnAck::default().into(), 0x20),
        (Publish::new(s("t"), Bytes::new()).into(), 0x30),
        (Packet::PubAck(Ack::new(id(1))), 0x40),
        (Packet::PubRec(Ack::new(id(1))), 0x50),
        (Packet::PubRel(Ack::new(id(1))), 0x62),
        (Packet::PubComp(Ack::new(id(1))), 0x70),
        (one_subscription("a", QoS::AtMostOnce).into(), 0x82),
        (
            SubAck {
                packet_id: id(1),
                properties: Default::default(),
                reason_codes: vec![ReasonCode::Success],
            }
            .into(),
            0x90,
        ),
        (
            Unsubscribe {
                packet_id: id(1),
                properties: Default::default(),
                filters: vec![s("a")],
            }
            .into(),
            0xA2,
        ),
        (
            UnsubAck {
                packet_id: id(1),
                properties: Default::default(),
                reason_codes: vec![],
            }
            .into(),
            0xB0,
        ),
        (Packet::PingReq, 0xC0),
        (Packet::PingResp, 0xD0),
        (Disconnect::default().into(), 0xE0),
    ];
    for (packet, first) in cases {
        let wire = encode(&packet);
        assert_eq!(wire[0], first, "{packet:?}");
        // And what the encoder writes, the decoder takes back unchanged.
        assert_eq!(decode_ok(&wire), packet);
    }
    // PUBLISH carries DUP (bit 3), QoS (bits 2-1) and RETAIN (bit 0).
    let p = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: true,
        packet_id: Some(id(7)),
        ..Publish::new(s("t"), Bytes::new())
    };
    assert_eq!(encode(&p.clone().into())[0], 0x3D);
    assert_eq!(publish_packet(&encode(&p.clone().into())), p);
    let p = Publish {
        retain: true,
        ..Publish::new(s("t"), Bytes::new())
    };
    assert_eq!(encode(&p.clone().into())[0], 0x31);
    assert_eq!(publish_packet(&encode(&p.clone().into())), p);
}

#[test]
fn mqtt_2_2_2_2_invalid_flags_fail_on_the_first_byte() {
    // The receiver closes the connection on bad flags: the decoder says so as soon as the
    // first byte arrives, without waiting for a remaining length or a body.
    for first in [
        0x11u8, 0x21, 0x41, 0x60, 0x63, 0x80, 0x8F, 0xA0, 0xB8, 0xC4, 0xD2, 0xE1,
    ] {
        let mut buf = BytesMut::from(&[first][..]);
        let err = Decoder::new(V4).decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidFlags { flags, .. } if flags == first & 0x0F),
            "{first:#04x}: {err:?}"
        );
        assert_eq!(err.reason_code(), MALFORMED);
    }
}

#[test]
fn section_2_2_1_packet_types_0_and_15_are_reserved() {
    assert_decode_err!([0x00u8, 0x00], DecodeError::ReservedPacketType, MALFORMED);
    // Type 15 is AUTH, which MQTT 3.1.1 does not have.
    assert_decode_err!(
        [0xF0u8, 0x00],
        DecodeError::PacketNotInVersion {
            packet: PacketType::Auth,
            version: ProtocolVersion::V3_1_1
        },
        MALFORMED
    );
    // Nor MQTT 3.1.
    let mut buf = BytesMut::from(&[0xF0u8, 0x00][..]);
    assert!(matches!(
        Decoder::new(ProtocolVersion::V3_1).decode(&mut buf),
        Err(DecodeError::PacketNotInVersion {
            packet: PacketType::Auth,
            version: ProtocolVersion::V3_1
        })
    ));
    // And the encoder refuses to write one.
    assert!(matches!(
        encode_err(&Auth::default().into()),
        EncodeError::PacketNotInVersion {
            packet: PacketType::Auth,
            version: ProtocolVersion::V3_1_1
        }
    ));
}

#[test]
fn section_2_2_3_remaining_length_is_at_most_four_bytes() {
    // Four continuation bytes: a fifth length byte would be needed.
    assert_decode_err!(
        [0x30u8, 0xFF, 0xFF, 0xFF, 0xFF],
        DecodeError::VarIntTooLong {
            field: "remaining length"
        },
        MALFORMED
    );
    // Lengths at the one/two/three byte boundaries decode.
    // Body: topic "t" (3 bytes) + payload, so remaining lengths 127, 128, 16,383 and 16,384.
    for (payload_len, len_bytes) in [(124usize, 1usize), (125, 2), (16_380, 2), (16_381, 3)] {
        let mut bytes = vec![0x30]; // PUBLISH, QoS 0
        bytes.extend(varint(3 + payload_len as u32)); // remaining length
        assert_eq!(bytes.len(), 1 + len_bytes);
        bytes.extend(lp(b"t")); // topic name
        bytes.extend(vec![0xAB; payload_len]); // payload
        assert_eq!(publish_packet(&bytes).payload.len(), payload_len);
    }
}

#[test]
fn section_2_2_3_remaining_length_must_match_the_content() {
    // One byte too many for a PUBACK.
    assert_decode_err!(
        [0x40u8, 0x03, 0x00, 0x01, 0x00],
        DecodeError::TrailingBytes {
            packet: PacketType::PubAck,
            count: 1
        },
        MALFORMED
    );
    // One byte too few.
    assert_decode_err!(
        [0x40u8, 0x01, 0x00],
        DecodeError::Truncated {
            packet: PacketType::PubAck,
            field: "packet identifier"
        },
        MALFORMED
    );
    // A CONNECT whose remaining length covers one byte past the client id.
    let mut bytes = connect(CLEAN, &[&lp(b"c"), &[0x00]]);
    assert_decode_err!(
        bytes,
        DecodeError::TrailingBytes {
            packet: PacketType::Connect,
            count: 1
        },
        MALFORMED
    );
    // A CONNECT whose remaining length stops inside the client id.
    bytes = connect(CLEAN, &[&[0x00, 0x05, b'c']]);
    assert_decode_err!(
        bytes,
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "client identifier"
        },
        MALFORMED
    );
}

#[test]
fn section_2_2_3_encoder_writes_the_shortest_remaining_length() {
    for (payload_len, len_bytes) in [(124usize, &[0x7Fu8][..]), (125, &[0x80, 0x01])] {
        // Topic "t" takes 3 bytes: remaining lengths 127 and 128.
        let p = Publish::new(s("t"), Bytes::from(vec![0u8; payload_len]));
        let wire = encode(&p.into());
        assert_eq!(&wire[1..1 + len_bytes.len()], len_bytes);
    }
    let big = Publish::new(s("t"), Bytes::from(vec![0u8; 2_097_152 - 3]));
    let wire = encode(&big.into());
    assert_eq!(&wire[1..5], &[0x80, 0x80, 0x80, 0x01]); // 2,097,152 in four bytes
}

// ---------------------------------------------------------------------------------------------
// 2.3 Packet identifiers
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_2_3_1_1_packet_identifier_must_be_non_zero() {
    assert_decode_err!(
        subscribe(0, &[(b"a", 0)]),
        DecodeError::ZeroPacketId {
            packet: PacketType::Subscribe
        },
        PROTOCOL_ERROR
    );
    assert_decode_err!(
        unsubscribe(0, &[b"a"]),
        DecodeError::ZeroPacketId {
            packet: PacketType::Unsubscribe
        },
        PROTOCOL_ERROR
    );
    for first in [0x32u8, 0x34, 0x3A, 0x3C] {
        assert_decode_err!(
            publish(first, b"t", Some(0), b"x"),
            DecodeError::ZeroPacketId {
                packet: PacketType::Publish
            },
            PROTOCOL_ERROR
        );
    }
    // The acknowledgements echo an identifier, so they cannot carry 0 either.
    for (first, packet) in [
        (0x40u8, PacketType::PubAck),
        (0x50, PacketType::PubRec),
        (0x62, PacketType::PubRel),
        (0x70, PacketType::PubComp),
        (0xB0, PacketType::UnsubAck),
    ] {
        assert_decode_err!(
            [first, 0x02, 0x00, 0x00],
            DecodeError::ZeroPacketId { packet: p } if p == packet,
            PROTOCOL_ERROR
        );
    }
    assert_decode_err!(
        [0x90u8, 0x03, 0x00, 0x00, 0x00],
        DecodeError::ZeroPacketId {
            packet: PacketType::SubAck
        },
        PROTOCOL_ERROR
    );
    // The encoder's identifier type cannot hold 0.
    assert_eq!(PacketId::new(0), None);
}

#[test]
fn mqtt_2_3_1_5_qos_0_publish_has_no_packet_identifier() {
    // QoS 0: the two bytes after the topic are payload, not an identifier.
    let p = publish_packet(&publish(0x30, b"a/b", None, &[0x00, 0x01, b'x']));
    assert_eq!(p.packet_id, None);
    assert_eq!(p.payload, &[0x00, 0x01, b'x'][..]);
    // QoS 1: they are the identifier.
    let p = publish_packet(&publish(0x32, b"a/b", Some(1), b"x"));
    assert_eq!(p.packet_id, Some(id(1)));
    assert_eq!(p.payload, &b"x"[..]);
    // The encoder writes none for QoS 0 ...
    let wire = encode(&Publish::new(s("a/b"), Bytes::from_static(b"x")).into());
    assert_eq!(wire, [0x30, 0x06, 0x00, 0x03, b'a', b'/', b'b', b'x']);
    // ... and refuses an identifier on QoS 0 or its absence on QoS 1.
    let with_id = Publish {
        packet_id: Some(id(1)),
        ..Publish::new(s("a/b"), Bytes::new())
    };
    assert!(matches!(
        encode_err(&with_id.into()),
        EncodeError::PacketIdMismatch {
            packet: PacketType::Publish
        }
    ));
    let without_id = Publish {
        qos: QoS::AtLeastOnce,
        ..Publish::new(s("a/b"), Bytes::new())
    };
    assert!(matches!(
        encode_err(&without_id.into()),
        EncodeError::PacketIdMismatch {
            packet: PacketType::Publish
        }
    ));
}

#[test]
fn mqtt_2_3_1_6_publish_acknowledgements_carry_the_packet_identifier() {
    for first in [0x40u8, 0x50, 0x62, 0x70] {
        let bytes = [first, 0x02, 0xBE, 0xEF]; // type, remaining length 2, identifier 0xBEEF
        let packet = decode_ok(&bytes);
        let (Packet::PubAck(ack)
        | Packet::PubRec(ack)
        | Packet::PubRel(ack)
        | Packet::PubComp(ack)) = &packet
        else {
            panic!("{packet:?}")
        };
        assert_eq!(ack.packet_id, id(0xBEEF));
        assert_eq!(encode(&packet), bytes);
    }
}

#[test]
fn mqtt_2_3_1_7_suback_and_unsuback_carry_the_packet_identifier() {
    // SUBACK: identifier 0x0102, one return code.
    let bytes = [0x90u8, 0x03, 0x01, 0x02, 0x01];
    let packet = decode_ok(&bytes);
    let Packet::SubAck(ack) = &packet else {
        panic!("{packet:?}")
    };
    assert_eq!(ack.packet_id, id(0x0102));
    assert_eq!(encode(&packet), bytes);
    // UNSUBACK: identifier 0x0304.
    let bytes = [0xB0u8, 0x02, 0x03, 0x04];
    let packet = decode_ok(&bytes);
    let Packet::UnsubAck(ack) = &packet else {
        panic!("{packet:?}")
    };
    assert_eq!(ack.packet_id, id(0x0304));
    assert_eq!(encode(&packet), bytes);
}

// ---------------------------------------------------------------------------------------------
// 3.1 CONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_2_1_protocol_name_other_than_mqtt_is_refused() {
    let refused: [(&[u8], u8); 6] = [
        (b"MQTX", 4),
        (b"mqtt", 4),
        (b"MQTT ", 4),
        (b"", 4),
        // MQTT 3.1's name only goes with its level, and 3.1.1's name only with 4 or 5.
        (b"MQIsdp", 4),
        (b"MQTT", 3),
    ];
    for (name, level) in refused {
        let bytes = connect_with(name, level, CLEAN, &[&lp(b"c")]);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut decoder = Decoder::new(V4);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert!(
            matches!(&err, DecodeError::UnsupportedProtocol { name: n, level: l }
                if n.as_bytes() == name && *l == level),
            "{err:?}"
        );
        assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
        assert_eq!(err.reason_code() as u8, 0x84);
        // No half-parsed CONNECT: the decoder has not switched to some other protocol.
        assert_eq!(decoder.version(), V4);
    }
    // A protocol name that is not even UTF-8 is malformed.
    assert_decode_err!(
        connect_with(SURROGATE, 4, CLEAN, &[&lp(b"c")]),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "protocol name",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_is_answered_with_return_code_0x01() {
    for level in [0u8, 1, 2, 3, 6, 0x84, 0xFF] {
        let err = assert_decode_err!(
            connect_with(b"MQTT", level, CLEAN, &[&lp(b"c")]),
            DecodeError::UnsupportedProtocol { ref name, level: l } if name == "MQTT" && l == level,
            ReasonCode::UnsupportedProtocolVersion
        );
        // The broker answers with the error's reason code; in 3.1.1 that is return code 0x01.
        let connack = ConnAck {
            reason_code: err.reason_code(),
            ..ConnAck::default()
        };
        assert_eq!(encode(&connack.into()), [0x20, 0x02, 0x00, 0x01]);
    }
}

#[test]
fn mqtt_3_1_2_2_levels_4_and_3_are_supported() {
    // Level 4, "MQTT": MQTT 3.1.1.
    let c = connect_packet(&connect(CLEAN, &[&lp(b"c")]));
    assert_eq!(c.protocol, ProtocolVersion::V3_1_1);
    // Level 3, "MQIsdp": MQTT 3.1, which has 3.1.1's packet formats.
    let bytes = connect_with(b"MQIsdp", 3, CLEAN, &[&lp(b"c")]);
    let mut decoder = Decoder::new(ProtocolVersion::V5);
    let mut buf = BytesMut::from(&bytes[..]);
    let Some(Packet::Connect(c)) = decoder.decode(&mut buf).unwrap() else {
        panic!("expected CONNECT")
    };
    assert_eq!(c.protocol, ProtocolVersion::V3_1);
    // The decoder follows the CONNECT's version: a 5.0-style PUBACK (with a reason code) is now
    // one byte too long.
    assert_eq!(decoder.version(), ProtocolVersion::V3_1);
    let mut buf = BytesMut::from(&[0x40u8, 0x03, 0x00, 0x01, 0x10][..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(DecodeError::TrailingBytes {
            packet: PacketType::PubAck,
            count: 1
        })
    ));
    // The encoder writes each version's name and level.
    let wire = encode(&Connect::new(ProtocolVersion::V3_1, s("c")).into());
    assert_eq!(&wire[2..11], b"\x00\x06MQIsdp\x03");
    let wire = encode(&Connect::new(V4, s("c")).into());
    assert_eq!(&wire[2..9], b"\x00\x04MQTT\x04");
}

#[test]
fn mqtt_3_1_2_3_reserved_connect_flag_is_malformed() {
    for flags in [0x01u8, CLEAN | 0x01, 0xFF] {
        assert_decode_err!(
            connect(flags, &[&lp(b"c")]),
            DecodeError::ConnectReservedFlag,
            MALFORMED
        );
    }
    // The encoder never sets it, even with every other flag on.
    let mut c = Connect::new(V4, s("c"));
    c.will = Some(Will {
        topic: s("w"),
        payload: Bytes::from_static(b"m"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Default::default(),
    });
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"p"));
    assert_eq!(encode(&c.into())[9], 0xF6); // user, password, retain, QoS 2, will, clean
}

#[test]
fn mqtt_3_1_2_9_will_flag_requires_will_topic_and_message() {
    // Will flag, but the payload ends after the client id.
    assert_decode_err!(
        connect(CLEAN | WILL, &[&lp(b"c")]),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "will topic"
        },
        MALFORMED
    );
    // Will topic, but no will message.
    assert_decode_err!(
        connect(CLEAN | WILL, &[&lp(b"c"), &lp(b"w/t")]),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "will payload"
        },
        MALFORMED
    );
    // Both: the will is there.
    let c = connect_packet(&connect(
        CLEAN | WILL,
        &[&lp(b"c"), &lp(b"w/t"), &lp(b"bye")],
    ));
    let will = c.will.expect("will");
    assert_eq!(will.topic, "w/t");
    assert_eq!(will.payload, &b"bye"[..]);
    assert_eq!(will.qos, QoS::AtMostOnce);
    assert!(!will.retain);
}

#[test]
fn mqtt_3_1_2_11_without_will_flag_no_will_fields() {
    // Will QoS or Will Retain set without the Will Flag.
    for flags in [
        WILL_QOS_1,
        WILL_QOS_2,
        WILL_RETAIN,
        WILL_QOS_1 | WILL_RETAIN,
    ] {
        assert_decode_err!(
            connect(CLEAN | flags, &[&lp(b"c")]),
            DecodeError::WillFlagsWithoutWill,
            MALFORMED
        );
    }
    // Will topic and message present without the Will Flag: left over after the client id.
    assert_decode_err!(
        connect(CLEAN, &[&lp(b"c"), &lp(b"w"), &lp(b"m")]),
        DecodeError::TrailingBytes {
            packet: PacketType::Connect,
            count: 6
        },
        MALFORMED
    );
    // The encoder writes none of them for a CONNECT without a will.
    let wire = encode(&Connect::new(V4, s("c")).into());
    assert_eq!(wire[9], CLEAN);
    assert_eq!(&wire[12..], &lp(b"c")[..]);
}

#[test]
fn mqtt_3_1_2_13_will_qos_must_be_0_without_will_flag() {
    for qos_bits in [WILL_QOS_1, WILL_QOS_2, WILL_QOS_1 | WILL_QOS_2] {
        assert_decode_err!(
            connect(CLEAN | qos_bits, &[&lp(b"c")]),
            DecodeError::WillFlagsWithoutWill,
            MALFORMED
        );
    }
    let wire = encode(&Connect::new(V4, s("c")).into());
    assert_eq!(wire[9] & 0x18, 0, "will QoS bits");
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_is_malformed() {
    assert_decode_err!(
        connect(
            CLEAN | WILL | WILL_QOS_1 | WILL_QOS_2,
            &[&lp(b"c"), &lp(b"w"), &lp(b"m")]
        ),
        DecodeError::InvalidQoS {
            packet: PacketType::Connect,
            field: "will QoS"
        },
        MALFORMED
    );
    for (bits, qos) in [
        (0, QoS::AtMostOnce),
        (WILL_QOS_1, QoS::AtLeastOnce),
        (WILL_QOS_2, QoS::ExactlyOnce),
    ] {
        let c = connect_packet(&connect(
            CLEAN | WILL | bits,
            &[&lp(b"c"), &lp(b"w"), &lp(b"m")],
        ));
        assert_eq!(c.will.as_ref().unwrap().qos, qos);
        // The encoder writes the will QoS in bits 4-3.
        assert_eq!(encode(&c.into())[9] & 0x18, bits);
    }
}

#[test]
fn mqtt_3_1_2_15_will_retain_must_be_0_without_will_flag() {
    assert_decode_err!(
        connect(CLEAN | WILL_RETAIN, &[&lp(b"c")]),
        DecodeError::WillFlagsWithoutWill,
        MALFORMED
    );
    // With the will flag it is allowed, and written back.
    let c = connect_packet(&connect(
        CLEAN | WILL | WILL_RETAIN,
        &[&lp(b"c"), &lp(b"w"), &lp(b"m")],
    ));
    assert!(c.will.as_ref().unwrap().retain);
    assert_eq!(encode(&c.into())[9], CLEAN | WILL | WILL_RETAIN);
    let wire = encode(&Connect::new(V4, s("c")).into());
    assert_eq!(wire[9] & WILL_RETAIN, 0);
}

#[test]
fn mqtt_3_1_2_18_no_user_name_without_user_name_flag() {
    assert_decode_err!(
        connect(CLEAN, &[&lp(b"c"), &lp(b"user")]),
        DecodeError::TrailingBytes {
            packet: PacketType::Connect,
            count: 6
        },
        MALFORMED
    );
    let c = connect_packet(&connect(CLEAN, &[&lp(b"c")]));
    assert_eq!(c.username, None);
    assert_eq!(encode(&c.into())[9] & USERNAME, 0);
}

#[test]
fn mqtt_3_1_2_19_user_name_present_with_user_name_flag() {
    assert_decode_err!(
        connect(CLEAN | USERNAME, &[&lp(b"c")]),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "user name"
        },
        MALFORMED
    );
    let c = connect_packet(&connect(CLEAN | USERNAME, &[&lp(b"c"), &lp(b"user")]));
    assert_eq!(c.username, Some(s("user")));
    let wire = encode(&c.into());
    assert_eq!(wire[9] & USERNAME, USERNAME);
    assert!(wire.ends_with(&lp(b"user")));
}

#[test]
fn mqtt_3_1_2_20_no_password_without_password_flag() {
    assert_decode_err!(
        connect(CLEAN | USERNAME, &[&lp(b"c"), &lp(b"u"), &lp(b"pw")]),
        DecodeError::TrailingBytes {
            packet: PacketType::Connect,
            count: 4
        },
        MALFORMED
    );
    let c = connect_packet(&connect(CLEAN | USERNAME, &[&lp(b"c"), &lp(b"u")]));
    assert_eq!(c.password, None);
    assert_eq!(encode(&c.into())[9] & PASSWORD, 0);
}

#[test]
fn mqtt_3_1_2_21_password_present_with_password_flag() {
    assert_decode_err!(
        connect(CLEAN | USERNAME | PASSWORD, &[&lp(b"c"), &lp(b"u")]),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "password"
        },
        MALFORMED
    );
    let c = connect_packet(&connect(
        CLEAN | USERNAME | PASSWORD,
        &[&lp(b"c"), &lp(b"u"), &lp(b"pw")],
    ));
    assert_eq!(c.password, Some(Bytes::from_static(b"pw")));
    let wire = encode(&c.into());
    assert_eq!(wire[9] & PASSWORD, PASSWORD);
    assert!(wire.ends_with(&lp(b"pw")));
}

#[test]
fn mqtt_3_1_2_22_password_without_user_name_is_malformed() {
    assert_decode_err!(
        connect(CLEAN | PASSWORD, &[&lp(b"c"), &lp(b"pw")]),
        DecodeError::PasswordWithoutUsername,
        MALFORMED
    );
    // MQTT 3.1 has the same rule.
    let mut buf =
        BytesMut::from(&connect_with(b"MQIsdp", 3, CLEAN | PASSWORD, &[&lp(b"c"), &lp(b"pw")])[..]);
    assert!(matches!(
        Decoder::new(V4).decode(&mut buf),
        Err(DecodeError::PasswordWithoutUsername)
    ));
    // The encoder does not write what the decoder calls malformed.
    for version in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1] {
        let mut c = Connect::new(version, s("c"));
        c.password = Some(Bytes::from_static(b"pw"));
        assert!(matches!(
            encode_err(&c.into()),
            EncodeError::PasswordWithoutUsername
        ));
    }
}

#[test]
fn mqtt_3_1_3_1_payload_fields_are_in_order() {
    let bytes = connect(
        CLEAN | WILL | WILL_QOS_1 | WILL_RETAIN | USERNAME | PASSWORD,
        &[
            &lp(b"cid"),        // client identifier
            &lp(b"w/t"),        // will topic
            &lp(&[0xDE, 0xAD]), // will message
            &lp(b"user"),       // user name
            &lp(&[0x00, 0xFF]), // password
        ],
    );
    let expected = Connect {
        protocol: V4,
        clean_start: true,
        keep_alive: 60,
        client_id: s("cid"),
        will: Some(Will {
            topic: s("w/t"),
            payload: Bytes::from_static(&[0xDE, 0xAD]),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(&[0x00, 0xFF])),
        properties: Default::default(),
    };
    assert_eq!(connect_packet(&bytes), expected);
    assert_eq!(encode(&expected.into()), bytes);
}

#[test]
fn mqtt_3_1_3_3_client_identifier_must_be_present() {
    assert_decode_err!(
        connect(CLEAN, &[]),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "client identifier"
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_3_4_client_identifier_is_a_utf8_string() {
    assert_decode_err!(
        connect(CLEAN, &[&lp(SURROGATE)]),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "client identifier",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    assert_decode_err!(
        connect(CLEAN, &[&lp(b"a\0")]),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "client identifier",
            error: StringError::NullCharacter
        },
        MALFORMED
    );
    let c = connect_packet(&connect(CLEAN, &[&lp("ü-ß".as_bytes())]));
    assert_eq!(c.client_id, "ü-ß");
}

#[test]
fn mqtt_3_1_3_5_short_alphanumeric_client_identifiers_are_accepted() {
    let alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for len in 1..=23 {
        let client_id = &alphabet[alphabet.len() - len..];
        let c = connect_packet(&connect(CLEAN, &[&lp(client_id.as_bytes())]));
        assert_eq!(c.client_id, client_id);
    }
    // Longer ones and other characters are the broker's call, not the codec's.
    let long = "x".repeat(1000);
    let c = connect_packet(&connect(0, &[&lp(long.as_bytes())]));
    assert_eq!(c.client_id.len(), 1000);
}

#[test]
fn mqtt_3_1_3_6_zero_length_client_identifier_is_accepted() {
    let c = connect_packet(&connect(CLEAN, &[&lp(b"")]));
    assert_eq!(c.client_id, "");
    assert!(c.clean_start);
    let wire = encode(&c.into());
    assert_eq!(&wire[12..], &[0x00, 0x00]);
}

#[test]
fn mqtt_3_1_3_8_zero_length_client_identifier_without_clean_session_decodes() {
    // The broker must answer 0x02 rather than drop the connection, so this is not a decode error.
    let c = connect_packet(&connect(0, &[&lp(b"")]));
    assert_eq!(c.client_id, "");
    assert!(!c.clean_start);
}

#[test]
fn mqtt_3_1_3_9_rejected_client_identifier_is_return_code_0x02() {
    let connack = ConnAck {
        reason_code: ReasonCode::ClientIdentifierNotValid,
        ..ConnAck::default()
    };
    assert_eq!(encode(&connack.into()), [0x20, 0x02, 0x00, 0x02]);
    let Packet::ConnAck(decoded) = decode_ok(&[0x20, 0x02, 0x00, 0x02]) else {
        panic!("expected CONNACK")
    };
    assert_eq!(decoded.reason_code, ReasonCode::ClientIdentifierNotValid);
}

#[test]
fn mqtt_3_1_3_10_will_topic_is_a_utf8_topic_name() {
    assert_decode_err!(
        connect(CLEAN | WILL, &[&lp(b"c"), &lp(OVERLONG), &lp(b"m")]),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "will topic",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    let invalid: [(&[u8], TopicError); 3] = [
        (b"a/#", TopicError::WildcardInName),
        (b"+", TopicError::WildcardInName),
        (b"", TopicError::Empty),
    ];
    for (topic, error) in invalid {
        assert_decode_err!(
            connect(CLEAN | WILL, &[&lp(b"c"), &lp(topic), &lp(b"m")]),
            DecodeError::InvalidTopicName {
                packet: PacketType::Connect,
                field: "will topic",
                error: e,
                ..
            } if e == error,
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn mqtt_3_1_3_11_user_name_is_a_utf8_string() {
    assert_decode_err!(
        connect(CLEAN | USERNAME, &[&lp(b"c"), &lp(SURROGATE)]),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "user name",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    let c = connect_packet(&connect(
        CLEAN | USERNAME,
        &[&lp(b"c"), &lp("jürgen".as_bytes())],
    ));
    assert_eq!(c.username, Some(s("jürgen")));
}

#[test]
fn section_3_1_3_will_message_and_password_are_binary() {
    // Neither is UTF-8 checked: NUL, 0xFF and a lone continuation byte are all fine.
    let binary: &[u8] = &[0x00, 0xFF, 0x80];
    let c = connect_packet(&connect(
        CLEAN | WILL | USERNAME | PASSWORD,
        &[&lp(b"c"), &lp(b"w"), &lp(binary), &lp(b"u"), &lp(binary)],
    ));
    assert_eq!(c.will.as_ref().unwrap().payload, binary);
    assert_eq!(c.password.as_deref(), Some(binary));
    // Zero-length ones too.
    let c = connect_packet(&connect(
        CLEAN | WILL | USERNAME | PASSWORD,
        &[&lp(b"c"), &lp(b"w"), &lp(b""), &lp(b"u"), &lp(b"")],
    ));
    assert_eq!(c.will.unwrap().payload.len(), 0);
    assert_eq!(c.password.unwrap().len(), 0);
}

#[test]
fn mqtt_3_1_4_1_malformed_connect_is_refused_without_connack() {
    // Every CONNECT that breaks section 3.1, other than an unsupported protocol, is reported
    // with a code that the broker answers by closing (0x81/0x82), never by a 3.1.1 CONNACK
    // return code, and leaves the decoder's version alone.
    let bad = [
        connect(CLEAN | 0x01, &[&lp(b"c")]),
        connect(CLEAN | WILL_QOS_1, &[&lp(b"c")]),
        connect(CLEAN | PASSWORD, &[&lp(b"c"), &lp(b"p")]),
        connect(CLEAN | WILL, &[&lp(b"c"), &lp(b"#"), &lp(b"m")]),
        connect(CLEAN, &[&lp(SURROGATE)]),
        connect(CLEAN, &[&lp(b"c"), &[0x00]]),
        connect(CLEAN, &[]),
        frame(0x11, &connect(CLEAN, &[&lp(b"c")])[2..]),
    ];
    for bytes in bad {
        let mut decoder = Decoder::new(ProtocolVersion::V5);
        let mut buf = BytesMut::from(&bytes[..]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err.reason_code(), MALFORMED | PROTOCOL_ERROR),
            "{err:?}"
        );
        assert_eq!(decoder.version(), ProtocolVersion::V5, "{err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3.2 CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn section_3_2_2_1_connack_reserved_flags_are_malformed() {
    for flags in [0x02u8, 0x80, 0xFE, 0xFF] {
        assert_decode_err!(
            [0x20, 0x02, flags, 0x00],
            DecodeError::ConnAckReservedFlags { flags: f } if f == flags,
            MALFORMED
        );
    }
    // Bit 0 is Session Present.
    for (flags, present) in [(0x00u8, false), (0x01, true)] {
        let Packet::ConnAck(c) = decode_ok(&[0x20, 0x02, flags, 0x00]) else {
            panic!("expected CONNACK")
        };
        assert_eq!(c.session_present, present);
        assert_eq!(encode(&Packet::ConnAck(c)), [0x20, 0x02, flags, 0x00]);
    }
}

#[test]
fn section_3_2_connack_remaining_length_is_2() {
    // A 5.0-style CONNACK (property length 0) is one byte too long for 3.1.1.
    assert_decode_err!(
        [0x20u8, 0x03, 0x00, 0x00, 0x00],
        DecodeError::TrailingBytes {
            packet: PacketType::ConnAck,
            count: 1
        },
        MALFORMED
    );
    assert_decode_err!(
        [0x20u8, 0x01, 0x00],
        DecodeError::Truncated {
            packet: PacketType::ConnAck,
            field: "reason code"
        },
        MALFORMED
    );
    // The encoder writes no properties in 3.1.1.
    let mut connack = ConnAck::default();
    connack.properties.reason_string = Some(s("not in 3.1.1"));
    connack.properties.session_expiry_interval = Some(10);
    assert_eq!(encode(&connack.into()), [0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn section_3_2_2_3_connack_return_codes() {
    // 0 to 5 decode to the matching reason codes.
    for (code, reason) in [
        (0x00u8, ReasonCode::Success),
        (0x01, ReasonCode::UnsupportedProtocolVersion),
        (0x02, ReasonCode::ClientIdentifierNotValid),
        (0x03, ReasonCode::ServerUnavailable),
        (0x04, ReasonCode::BadUserNameOrPassword),
        (0x05, ReasonCode::NotAuthorized),
    ] {
        let Packet::ConnAck(c) = decode_ok(&[0x20, 0x02, 0x00, code]) else {
            panic!("expected CONNACK")
        };
        assert_eq!(c.reason_code, reason);
        assert_eq!(encode(&Packet::ConnAck(c)), [0x20, 0x02, 0x00, code]);
    }
    // 6 to 255 are reserved; 5.0 reason codes are not 3.1.1 return codes.
    for code in [0x06u8, 0x80, 0x84, 0x87, 0xFF] {
        assert_decode_err!(
            [0x20, 0x02, 0x00, code],
            DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code: c
            } if c == code,
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn section_3_2_2_3_v5_reason_codes_are_encoded_as_3_1_1_return_codes() {
    for (reason, code) in [
        (ReasonCode::Success, 0x00u8),
        (ReasonCode::UnsupportedProtocolVersion, 0x01),
        (ReasonCode::ClientIdentifierNotValid, 0x02),
        (ReasonCode::ServerUnavailable, 0x03),
        (ReasonCode::ServerBusy, 0x03),
        (ReasonCode::UnspecifiedError, 0x03),
        (ReasonCode::QuotaExceeded, 0x03),
        (ReasonCode::BadUserNameOrPassword, 0x04),
        (ReasonCode::BadAuthenticationMethod, 0x04),
        (ReasonCode::NotAuthorized, 0x05),
        (ReasonCode::Banned, 0x05),
    ] {
        let connack = ConnAck {
            reason_code: reason,
            ..ConnAck::default()
        };
        assert_eq!(
            encode(&connack.into()),
            [0x20, 0x02, 0x00, code],
            "{reason:?}"
        );
    }
    // No reason code, whatever it is, turns into a reserved return code.
    for raw in 0..=255u8 {
        if let Some(reason) = ReasonCode::from_u8(raw) {
            let connack = ConnAck {
                reason_code: reason,
                ..ConnAck::default()
            };
            let wire = encode(&connack.into());
            assert!(wire[3] <= 0x05, "{reason:?} -> {:#04x}", wire[3]);
            // And what is written decodes.
            decode_ok(&wire);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3.3 PUBLISH
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_3_1_1_dup_flag_is_carried_on_redelivery() {
    for (first, qos) in [(0x3Au8, QoS::AtLeastOnce), (0x3C, QoS::ExactlyOnce)] {
        let p = publish_packet(&publish(first, b"t", Some(5), b"x"));
        assert!(p.dup);
        assert_eq!(p.qos, qos);
        assert_eq!(encode(&p.into())[0], first);
    }
    let mut p = qos1_publish("t", 5, b"x");
    assert_eq!(encode(&p.clone().into())[0], 0x32);
    p.dup = true;
    assert_eq!(encode(&p.into())[0], 0x3A);
}

#[test]
fn mqtt_3_3_1_2_dup_must_be_0_on_qos_0() {
    // Refused on the first byte, retained or not.
    for first in [0x38u8, 0x39] {
        let mut buf = BytesMut::from(&[first][..]);
        let err = Decoder::new(V4).decode(&mut buf).unwrap_err();
        assert!(matches!(err, DecodeError::DupOnQoS0), "{err:?}");
        assert_eq!(err.reason_code(), MALFORMED);
    }
    assert_decode_err!(
        publish(0x38, b"t", None, b"x"),
        DecodeError::DupOnQoS0,
        MALFORMED
    );
    // The encoder never writes DUP on a QoS 0 message.
    let p = Publish {
        dup: true,
        ..Publish::new(s("t"), Bytes::from_static(b"x"))
    };
    let wire = encode(&p.into());
    assert_eq!(wire[0], 0x30);
    assert!(!publish_packet(&wire).dup);
}

#[test]
fn mqtt_4_3_1_1_qos_0_message_goes_out_with_qos_0_and_dup_0() {
    // A new message is built with DUP 0; and whatever the struct says, a QoS 0 PUBLISH is
    // written with DUP 0, e.g. when a redelivered QoS 1 message is downgraded for a subscriber.
    let fresh = Publish::new(s("t"), Bytes::from_static(b"x"));
    assert!(!fresh.dup);
    let downgraded = Publish {
        qos: QoS::AtMostOnce,
        packet_id: None,
        ..Publish {
            dup: true,
            ..qos1_publish("t", 1, b"x")
        }
    };
    for p in [fresh, downgraded] {
        assert_eq!(
            encode(&p.into()),
            [0x30, 0x04, 0x00, 0x01, b't', b'x'], // QoS 0, DUP 0, no packet identifier
        );
    }
}

#[test]
fn mqtt_3_3_1_4_qos_3_is_malformed() {
    for first in [0x36u8, 0x37, 0x3E, 0x3F] {
        // Refused as soon as the first byte is there ...
        let mut buf = BytesMut::from(&[first][..]);
        let err = Decoder::new(V4).decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::InvalidQoS {
                    packet: PacketType::Publish,
                    field: "QoS"
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.reason_code(), MALFORMED);
        // ... and in a whole packet.
        assert_decode_err!(
            publish(first, b"t", Some(1), b"x"),
            DecodeError::InvalidQoS {
                packet: PacketType::Publish,
                field: "QoS"
            },
            MALFORMED
        );
    }
}

#[test]
fn mqtt_3_3_2_1_topic_name_is_the_first_field_and_a_utf8_string() {
    let p = publish_packet(&publish(0x34, "a/ü".as_bytes(), Some(9), b"payload"));
    assert_eq!(p.topic, "a/ü");
    assert_eq!(p.packet_id, Some(id(9)));
    assert_eq!(p.payload, &b"payload"[..]);
    assert_decode_err!(
        publish(0x32, SURROGATE, Some(1), b""),
        DecodeError::InvalidString {
            packet: PacketType::Publish,
            field: "topic name",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    // 3.1.1 has no topic alias: a zero-length topic is not a topic.
    assert_decode_err!(
        publish(0x30, b"", None, b"x"),
        DecodeError::InvalidTopicName {
            packet: PacketType::Publish,
            field: "topic name",
            error: TopicError::Empty,
            ..
        },
        PROTOCOL_ERROR
    );
}

#[test]
fn mqtt_3_3_2_2_topic_name_must_not_contain_wildcards() {
    let wildcards: [&[u8]; 6] = [b"a/+", b"+", b"#", b"a/#", b"sport+", b"a#b"];
    for topic in wildcards {
        assert_decode_err!(
            publish(0x30, topic, None, b"x"),
            DecodeError::InvalidTopicName {
                packet: PacketType::Publish,
                field: "topic name",
                error: TopicError::WildcardInName,
                ..
            },
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn section_3_3_3_payload_is_the_rest_of_the_packet() {
    // Zero-length payload, QoS 0 and QoS 2.
    let p = publish_packet(&publish(0x30, b"t", None, b""));
    assert!(p.payload.is_empty());
    let p = publish_packet(&publish(0x35, b"t", Some(2), b""));
    assert!(p.payload.is_empty());
    assert!(p.retain);
    assert_eq!(p.qos, QoS::ExactlyOnce);
    // The payload is not length-prefixed: it is everything after the variable header.
    let payload = [0x00u8, 0x03, b'a', b'b', b'c', 0xFF];
    let p = publish_packet(&publish(0x32, b"t", Some(1), &payload));
    assert_eq!(p.payload, &payload[..]);
    assert_eq!(encode(&p.into()), publish(0x32, b"t", Some(1), &payload));
}

// ---------------------------------------------------------------------------------------------
// 3.4 - 3.7 PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_6_1_1_pubrel_flags_must_be_0010() {
    for first in [0x60u8, 0x61, 0x63, 0x66, 0x6A, 0x6F] {
        assert_decode_err!(
            [first, 0x02, 0x00, 0x01],
            DecodeError::InvalidFlags {
                packet: PacketType::PubRel,
                flags: f,
                expected: 0x02
            } if f == first & 0x0F,
            MALFORMED
        );
    }
    assert!(matches!(
        decode_ok(&[0x62, 0x02, 0x00, 0x01]),
        Packet::PubRel(Ack { packet_id, .. }) if packet_id == id(1)
    ));
    assert_eq!(
        encode(&Packet::PubRel(Ack::new(id(1)))),
        [0x62, 0x02, 0x00, 0x01]
    );
}

#[test]
fn section_3_4_to_3_7_publish_acknowledgements_have_remaining_length_2() {
    for (first, packet) in [
        (0x40u8, PacketType::PubAck),
        (0x50, PacketType::PubRec),
        (0x62, PacketType::PubRel),
        (0x70, PacketType::PubComp),
    ] {
        // 5.0's reason code (and property length) are not 3.1.1.
        assert_decode_err!(
            [first, 0x03, 0x00, 0x01, 0x00],
            DecodeError::TrailingBytes { packet: p, count: 1 } if p == packet,
            MALFORMED
        );
        assert_decode_err!(
            [first, 0x04, 0x00, 0x01, 0x10, 0x00],
            DecodeError::TrailingBytes { packet: p, count: 2 } if p == packet,
            MALFORMED
        );
        assert_decode_err!(
            [first, 0x00],
            DecodeError::Truncated { packet: p, field: "packet identifier" } if p == packet,
            MALFORMED
        );
        // The encoder leaves out a 5.0 reason code.
        let ack = Ack::with_reason(id(3), ReasonCode::PacketIdentifierNotFound);
        let packet = match packet {
            PacketType::PubAck => Packet::PubAck(ack),
            PacketType::PubRec => Packet::PubRec(ack),
            PacketType::PubRel => Packet::PubRel(ack),
            _ => Packet::PubComp(ack),
        };
        assert_eq!(encode(&packet), [first, 0x02, 0x00, 0x03]);
    }
}

// ---------------------------------------------------------------------------------------------
// 3.8 SUBSCRIBE, 3.9 SUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_8_1_1_subscribe_flags_must_be_0010() {
    let body = subscribe(1, &[(b"a", 1)])[2..].to_vec();
    for first in [0x80u8, 0x81, 0x83, 0x8A, 0x8F] {
        assert_decode_err!(
            frame(first, &body),
            DecodeError::InvalidFlags {
                packet: PacketType::Subscribe,
                flags: f,
                expected: 0x02
            } if f == first & 0x0F,
            MALFORMED
        );
    }
    let sub = subscribe_packet(&frame(0x82, &body));
    assert_eq!(encode(&sub.into())[0], 0x82);
}

#[test]
fn mqtt_3_8_3_1_topic_filters_are_utf8_strings() {
    let pairs: [(&[u8], u8); 3] = [(b"a/+/c", 0), (b"#", 1), ("ü/#".as_bytes(), 2)];
    let sub = subscribe_packet(&subscribe(10, &pairs));
    assert_eq!(sub.packet_id, id(10));
    let filters: Vec<_> = sub
        .subscriptions
        .iter()
        .map(|s| (s.filter.as_str(), s.options.qos))
        .collect();
    assert_eq!(
        filters,
        [
            ("a/+/c", QoS::AtMostOnce),
            ("#", QoS::AtLeastOnce),
            ("ü/#", QoS::ExactlyOnce)
        ]
    );
    let invalid: [(&[u8], StringError); 2] = [
        (SURROGATE, StringError::InvalidUtf8),
        (b"a/\0", StringError::NullCharacter),
    ];
    for (bad, error) in invalid {
        assert_decode_err!(
            subscribe(1, &[(b"ok", 0), (bad, 0)]),
            DecodeError::InvalidString {
                packet: PacketType::Subscribe,
                field: "topic filter",
                error: e
            } if e == error,
            MALFORMED
        );
    }
}

#[test]
fn mqtt_3_8_3_3_subscribe_payload_must_not_be_empty() {
    assert_decode_err!(
        [0x82u8, 0x02, 0x00, 0x01],
        DecodeError::EmptyPayload {
            packet: PacketType::Subscribe
        },
        PROTOCOL_ERROR
    );
    let empty = Subscribe {
        packet_id: id(1),
        properties: Default::default(),
        subscriptions: vec![],
    };
    assert!(matches!(
        encode_err(&empty.into()),
        EncodeError::Empty {
            packet: PacketType::Subscribe
        }
    ));
}

#[test]
fn mqtt_3_8_3_4_reserved_requested_qos_bits_and_qos_3_are_malformed() {
    // Bits 7-2 are reserved in 3.1.1, including those 5.0 uses for No Local, Retain As
    // Published and Retain Handling.
    for options in [0x04u8, 0x08, 0x10, 0x20, 0x30, 0x40, 0x80, 0xFC, 0x05] {
        assert_decode_err!(
            subscribe(1, &[(b"a", options)]),
            DecodeError::ReservedSubscriptionOptions { options: o } if o == options,
            MALFORMED
        );
    }
    // QoS 3. 3.1.1 just closes the connection; the reason code is 5.0's, where a Maximum QoS of
    // 3 is a Protocol Error (MQTT 5.0 section 3.8.3.1).
    assert_decode_err!(
        subscribe(1, &[(b"a", 0), (b"b", 0x03)]),
        DecodeError::InvalidQoS {
            packet: PacketType::Subscribe,
            field: "subscription options"
        },
        PROTOCOL_ERROR
    );
    // A filter without its requested-QoS byte.
    assert_decode_err!(
        frame(0x82, &[&[0x00, 0x01][..], &lp(b"a")].concat()),
        DecodeError::Truncated {
            packet: PacketType::Subscribe,
            field: "subscription options"
        },
        MALFORMED
    );
    // The encoder writes only the QoS bits in 3.1.1.
    let mut sub = one_subscription("a", QoS::AtLeastOnce);
    sub.subscriptions[0].options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    assert_eq!(encode(&sub.into()), subscribe(1, &[(b"a", 0x01)]));
}

#[test]
fn mqtt_3_8_4_5_suback_has_one_return_code_per_filter() {
    let sub = subscribe_packet(&subscribe(4, &[(b"a", 0), (b"b", 1), (b"c", 2)]));
    let suback = SubAck {
        packet_id: sub.packet_id,
        properties: Default::default(),
        reason_codes: sub
            .subscriptions
            .iter()
            .map(|s| match s.options.qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            })
            .collect(),
    };
    // Identifier, then exactly three return codes.
    assert_eq!(
        encode(&suback.into()),
        [0x90, 0x05, 0x00, 0x04, 0x00, 0x01, 0x02]
    );
}

#[test]
fn mqtt_3_9_3_1_suback_return_codes_keep_their_order() {
    let bytes = [0x90u8, 0x06, 0x00, 0x07, 0x02, 0x80, 0x00, 0x01];
    let Packet::SubAck(ack) = decode_ok(&bytes) else {
        panic!("expected SUBACK")
    };
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
            ReasonCode::Success,
            ReasonCode::GrantedQoS1
        ]
    );
    assert_eq!(encode(&Packet::SubAck(ack)), bytes);
}

#[test]
fn mqtt_3_9_3_2_suback_reserved_return_codes() {
    for code in [0x03u8, 0x04, 0x7F, 0x81, 0x87, 0x8F, 0xFF] {
        assert_decode_err!(
            [0x90, 0x04, 0x00, 0x01, 0x00, code],
            DecodeError::InvalidReasonCode {
                packet: PacketType::SubAck,
                code: c
            } if c == code,
            PROTOCOL_ERROR
        );
    }
    // Every 5.0 failure code goes out as 0x80.
    let failures = [
        ReasonCode::UnspecifiedError,
        ReasonCode::ImplementationSpecificError,
        ReasonCode::NotAuthorized,
        ReasonCode::TopicFilterInvalid,
        ReasonCode::PacketIdentifierInUse,
        ReasonCode::QuotaExceeded,
        ReasonCode::SharedSubscriptionsNotSupported,
        ReasonCode::SubscriptionIdentifiersNotSupported,
        ReasonCode::WildcardSubscriptionsNotSupported,
    ];
    let suback = SubAck {
        packet_id: id(1),
        properties: Default::default(),
        reason_codes: failures.to_vec(),
    };
    let wire = encode(&suback.into());
    assert_eq!(&wire[..4], [0x90, 2 + failures.len() as u8, 0x00, 0x01]);
    assert!(wire[4..].iter().all(|&c| c == 0x80), "{wire:02X?}");
    // No reason code at all turns into a reserved return code.
    for raw in 0..=255u8 {
        if let Some(reason) = ReasonCode::from_u8(raw) {
            let suback = SubAck {
                packet_id: id(1),
                properties: Default::default(),
                reason_codes: vec![reason],
            };
            let wire = encode(&suback.into());
            assert!(matches!(wire[4], 0x00 | 0x01 | 0x02 | 0x80), "{reason:?}");
        }
    }
}

#[test]
fn section_3_9_suback_payload_must_not_be_empty() {
    assert_decode_err!(
        [0x90u8, 0x02, 0x00, 0x01],
        DecodeError::EmptyPayload {
            packet: PacketType::SubAck
        },
        PROTOCOL_ERROR
    );
    let empty = SubAck {
        packet_id: id(1),
        properties: Default::default(),
        reason_codes: vec![],
    };
    assert!(matches!(
        encode_err(&empty.into()),
        EncodeError::Empty {
            packet: PacketType::SubAck
        }
    ));
}

// ---------------------------------------------------------------------------------------------
// 3.10 UNSUBSCRIBE, 3.11 UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_10_1_1_unsubscribe_flags_must_be_0010() {
    let body = unsubscribe(1, &[b"a"])[2..].to_vec();
    for first in [0xA0u8, 0xA1, 0xA3, 0xAA, 0xAF] {
        assert_decode_err!(
            frame(first, &body),
            DecodeError::InvalidFlags {
                packet: PacketType::Unsubscribe,
                flags: f,
                expected: 0x02
            } if f == first & 0x0F,
            MALFORMED
        );
    }
    let packet = decode_ok(&frame(0xA2, &body));
    assert_eq!(encode(&packet)[0], 0xA2);
}

#[test]
fn mqtt_3_10_3_1_unsubscribe_topic_filters_are_utf8_strings_back_to_back() {
    let filters: [&[u8]; 3] = [b"a/+", b"#", "ü".as_bytes()];
    let bytes = unsubscribe(0x0A0B, &filters);
    let packet = decode_ok(&bytes);
    let Packet::Unsubscribe(unsub) = &packet else {
        panic!("{packet:?}")
    };
    assert_eq!(unsub.packet_id, id(0x0A0B));
    assert_eq!(unsub.filters, [s("a/+"), s("#"), s("ü")]);
    assert_eq!(encode(&packet), bytes);
    assert_decode_err!(
        unsubscribe(1, &[b"a", OVERLONG]),
        DecodeError::InvalidString {
            packet: PacketType::Unsubscribe,
            field: "topic filter",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    // A stray byte after the last filter is not a filter.
    let mut body = unsubscribe(1, &[b"a"])[2..].to_vec();
    body.push(0x00);
    assert_decode_err!(
        frame(0xA2, &body),
        DecodeError::Truncated {
            packet: PacketType::Unsubscribe,
            field: "topic filter"
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_payload_must_not_be_empty() {
    assert_decode_err!(
        [0xA2u8, 0x02, 0x00, 0x01],
        DecodeError::EmptyPayload {
            packet: PacketType::Unsubscribe
        },
        PROTOCOL_ERROR
    );
    let empty = Unsubscribe {
        packet_id: id(1),
        properties: Default::default(),
        filters: vec![],
    };
    assert!(matches!(
        encode_err(&empty.into()),
        EncodeError::Empty {
            packet: PacketType::Unsubscribe
        }
    ));
}

#[test]
fn section_3_11_unsuback_remaining_length_is_2() {
    assert_decode_err!(
        [0xB0u8, 0x03, 0x00, 0x01, 0x00],
        DecodeError::TrailingBytes {
            packet: PacketType::UnsubAck,
            count: 1
        },
        MALFORMED
    );
    // A 5.0 UNSUBACK (property length, reason code) is not a 3.1.1 one.
    assert_decode_err!(
        [0xB0u8, 0x04, 0x00, 0x01, 0x00, 0x00],
        DecodeError::TrailingBytes {
            packet: PacketType::UnsubAck,
            count: 2
        },
        MALFORMED
    );
    assert_decode_err!(
        [0xB0u8, 0x01, 0x00],
        DecodeError::Truncated {
            packet: PacketType::UnsubAck,
            field: "packet identifier"
        },
        MALFORMED
    );
    // The encoder leaves out 5.0 reason codes.
    let unsuback = UnsubAck {
        packet_id: id(2),
        properties: Default::default(),
        reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
    };
    assert_eq!(encode(&unsuback.into()), [0xB0, 0x02, 0x00, 0x02]);
}

// ---------------------------------------------------------------------------------------------
// 3.12 PINGREQ, 3.13 PINGRESP, 3.14 DISCONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn section_3_12_and_3_13_ping_packets_have_remaining_length_0() {
    for (first, packet, expected) in [
        (0xC0u8, PacketType::PingReq, Packet::PingReq),
        (0xD0, PacketType::PingResp, Packet::PingResp),
    ] {
        assert_eq!(decode_ok(&[first, 0x00]), expected);
        assert_eq!(encode(&expected), [first, 0x00]);
        assert_decode_err!(
            [first, 0x01, 0x00],
            DecodeError::TrailingBytes { packet: p, count: 1 } if p == packet,
            MALFORMED
        );
    }
}

#[test]
fn mqtt_3_14_1_1_disconnect_reserved_flags_must_be_0() {
    for first in [0xE1u8, 0xE2, 0xE8, 0xEF] {
        assert_decode_err!(
            [first, 0x00],
            DecodeError::InvalidFlags {
                packet: PacketType::Disconnect,
                flags: f,
                expected: 0
            } if f == first & 0x0F,
            MALFORMED
        );
    }
    assert_eq!(
        decode_ok(&[0xE0, 0x00]),
        Packet::Disconnect(Disconnect::default())
    );
    // Remaining length 0: a 5.0 reason code is one byte too many.
    assert_decode_err!(
        [0xE0u8, 0x01, 0x00],
        DecodeError::TrailingBytes {
            packet: PacketType::Disconnect,
            count: 1
        },
        MALFORMED
    );
    // The encoder writes no reason code in 3.1.1.
    assert_eq!(
        encode(&Disconnect::new(ReasonCode::ServerShuttingDown).into()),
        [0xE0, 0x00]
    );
}

// ---------------------------------------------------------------------------------------------
// 4.7 Topic names and topic filters
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_4_7_1_1_wildcards_only_in_topic_filters() {
    // In filters they are fine ...
    let sub = subscribe_packet(&subscribe(1, &[(b"+/a/#", 1)]));
    assert_eq!(sub.subscriptions[0].filter, "+/a/#");
    decode_ok(&unsubscribe(1, &[b"+/a/#"]));
    // ... in names they are not: PUBLISH topics and will topics.
    assert_decode_err!(
        publish(0x32, b"+/a/#", Some(1), b""),
        DecodeError::InvalidTopicName {
            packet: PacketType::Publish,
            error: TopicError::WildcardInName,
            ..
        },
        PROTOCOL_ERROR
    );
    assert_decode_err!(
        connect(CLEAN | WILL, &[&lp(b"c"), &lp(b"a/+"), &lp(b"m")]),
        DecodeError::InvalidTopicName {
            packet: PacketType::Connect,
            error: TopicError::WildcardInName,
            ..
        },
        PROTOCOL_ERROR
    );
}

#[test]
fn mqtt_4_7_1_2_multi_level_wildcard_is_alone_and_last() {
    for ok in ["#", "a/#", "/#", "a/b/#", "+/#", "sport/tennis/player1/#"] {
        let sub = subscribe_packet(&subscribe(1, &[(ok.as_bytes(), 0)]));
        assert_eq!(sub.subscriptions[0].filter, ok);
        decode_ok(&unsubscribe(1, &[ok.as_bytes()]));
    }
    for bad in ["a#", "a/#/b", "#/", "a/b#", "##", "sport/tennis#", "#/+"] {
        assert_decode_err!(
            subscribe(1, &[(bad.as_bytes(), 0)]),
            DecodeError::InvalidTopicFilter {
                packet: PacketType::Subscribe,
                ref filter,
                error: TopicError::MisplacedMultiLevelWildcard,
            } if filter == bad,
            PROTOCOL_ERROR
        );
        assert_decode_err!(
            unsubscribe(1, &[bad.as_bytes()]),
            DecodeError::InvalidTopicFilter {
                packet: PacketType::Unsubscribe,
                error: TopicError::MisplacedMultiLevelWildcard,
                ..
            },
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn mqtt_4_7_1_3_single_level_wildcard_occupies_a_whole_level() {
    for ok in [
        "+",
        "+/+",
        "/+",
        "+/",
        "a/+/b",
        "+/a/+",
        "sport/+/player1",
        "+/#",
    ] {
        let sub = subscribe_packet(&subscribe(1, &[(ok.as_bytes(), 2)]));
        assert_eq!(sub.subscriptions[0].filter, ok);
        decode_ok(&unsubscribe(1, &[ok.as_bytes()]));
    }
    for bad in ["a+", "+a", "a/b+/c", "++", "sport+"] {
        assert_decode_err!(
            subscribe(1, &[(bad.as_bytes(), 0)]),
            DecodeError::InvalidTopicFilter {
                packet: PacketType::Subscribe,
                ref filter,
                error: TopicError::MisplacedSingleLevelWildcard,
            } if filter == bad,
            PROTOCOL_ERROR
        );
        assert_decode_err!(
            unsubscribe(1, &[bad.as_bytes()]),
            DecodeError::InvalidTopicFilter {
                packet: PacketType::Unsubscribe,
                error: TopicError::MisplacedSingleLevelWildcard,
                ..
            },
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn mqtt_4_7_3_1_topic_names_and_filters_are_at_least_one_character() {
    assert_decode_err!(
        publish(0x30, b"", None, b""),
        DecodeError::InvalidTopicName {
            packet: PacketType::Publish,
            error: TopicError::Empty,
            ..
        },
        PROTOCOL_ERROR
    );
    assert_decode_err!(
        subscribe(1, &[(b"a", 0), (b"", 0)]),
        DecodeError::InvalidTopicFilter {
            packet: PacketType::Subscribe,
            error: TopicError::Empty,
            ..
        },
        PROTOCOL_ERROR
    );
    assert_decode_err!(
        unsubscribe(1, &[b""]),
        DecodeError::InvalidTopicFilter {
            packet: PacketType::Unsubscribe,
            error: TopicError::Empty,
            ..
        },
        PROTOCOL_ERROR
    );
    // One character, even just a separator, is enough.
    assert_eq!(publish_packet(&publish(0x30, b"/", None, b"")).topic, "/");
    decode_ok(&subscribe(1, &[(b"/", 0)]));
}

#[test]
fn mqtt_4_7_3_2_topic_names_and_filters_must_not_contain_null() {
    let err = StringError::NullCharacter;
    assert_decode_err!(
        publish(0x30, b"a\0", None, b""),
        DecodeError::InvalidString { packet: PacketType::Publish, error: e, .. } if e == err,
        MALFORMED
    );
    assert_decode_err!(
        subscribe(1, &[(b"\0", 0)]),
        DecodeError::InvalidString { packet: PacketType::Subscribe, error: e, .. } if e == err,
        MALFORMED
    );
    assert_decode_err!(
        unsubscribe(1, &[b"a/\0/b"]),
        DecodeError::InvalidString { packet: PacketType::Unsubscribe, error: e, .. } if e == err,
        MALFORMED
    );
    assert_decode_err!(
        connect(CLEAN | WILL, &[&lp(b"c"), &lp(b"\0"), &lp(b"m")]),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "will topic",
            error: e
        } if e == err,
        MALFORMED
    );
}

#[test]
fn mqtt_4_7_3_3_topic_names_and_filters_are_at_most_65535_bytes() {
    // The longest topic encodes and decodes.
    let longest = "t".repeat(65_535);
    let topic = MqttString::try_from(longest.as_str()).unwrap();
    let wire = encode(&Publish::new(topic.clone(), Bytes::new()).into());
    assert_eq!(&wire[4..6], &[0xFF, 0xFF]); // after the 3-byte remaining length
    assert_eq!(publish_packet(&wire).topic, topic);
    let filter = MqttString::try_from(longest.as_str()).unwrap();
    let sub = Subscribe {
        packet_id: id(1),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter,
            options: Default::default(),
        }],
    };
    let wire = encode(&sub.clone().into());
    assert_eq!(subscribe_packet(&wire), sub);
    // One more byte cannot even be built.
    assert_eq!(
        MqttString::try_from("t".repeat(65_536)),
        Err(StringError::TooLong)
    );
}

// ---------------------------------------------------------------------------------------------
// 4.8 Error handling
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_4_8_0_1_protocol_violation_is_reported_not_skipped() {
    // A SUBSCRIBE with packet id 0, then a valid PINGREQ: the decoder reports the violation
    // (a failure code for the connection to close on) and does not move on to the PINGREQ.
    let mut bytes = subscribe(0, &[(b"a", 0)]);
    bytes.extend_from_slice(&[0xC0, 0x00]);
    let mut buf = BytesMut::from(&bytes[..]);
    let err = Decoder::new(V4).decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::ZeroPacketId {
            packet: PacketType::Subscribe
        }
    ));
    assert!(!err.reason_code().is_success());
}

// ---------------------------------------------------------------------------------------------
// 6.0 Packets split across or packed into reads, and the decoder's limits
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_6_0_0_2_packet_fed_one_byte_at_a_time_decodes_when_complete() {
    let bytes = connect(
        CLEAN | WILL | USERNAME | PASSWORD,
        &[&lp(b"cid"), &lp(b"w"), &lp(b"m"), &lp(b"u"), &lp(b"p")],
    );
    let mut decoder = Decoder::new(V4);
    let mut buf = BytesMut::new();
    for (i, &byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        let result = decoder.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert_eq!(result, None, "after {} of {} bytes", i + 1, bytes.len());
            assert_eq!(
                buf.len(),
                i + 1,
                "nothing is consumed before the packet is whole"
            );
        } else {
            let Some(Packet::Connect(c)) = result else {
                panic!("expected CONNECT, got {result:?}")
            };
            assert_eq!(c.client_id, "cid");
            assert_eq!(c.password, Some(Bytes::from_static(b"p")));
        }
    }
    assert!(buf.is_empty());
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn mqtt_6_0_0_2_packets_in_one_buffer_decode_in_order() {
    let mut bytes = publish(0x32, b"a/b", Some(1), b"one");
    bytes.extend(publish(0x30, b"c", None, b"two"));
    bytes.extend([0xC0, 0x00]); // PINGREQ
    let third = [0x62u8, 0x02, 0x00, 0x01]; // PUBREL, of which only half has arrived
    bytes.extend(&third[..2]);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut decoder = Decoder::new(V4);
    let Some(Packet::Publish(first)) = decoder.decode(&mut buf).unwrap() else {
        panic!("expected PUBLISH")
    };
    assert_eq!(
        (first.topic.as_str(), &first.payload[..]),
        ("a/b", &b"one"[..])
    );
    let Some(Packet::Publish(second)) = decoder.decode(&mut buf).unwrap() else {
        panic!("expected PUBLISH")
    };
    assert_eq!(
        (second.topic.as_str(), &second.payload[..]),
        ("c", &b"two"[..])
    );
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], &third[..2]);
    buf.extend_from_slice(&third[2..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::PubRel(Ack::new(id(1)))))
    );
    assert!(buf.is_empty());
}

#[test]
fn declared_256_mb_packet_is_refused_as_soon_as_its_header_is_readable() {
    const MIB: u32 = 1 << 20;
    let mut decoder = Decoder::new(V4).with_max_packet_size(MIB);
    // PUBLISH with remaining length 268,435,455 (FF FF FF 7F), fed byte by byte.
    let header = [0x30u8, 0xFF, 0xFF, 0xFF, 0x7F];
    let mut buf = BytesMut::with_capacity(16);
    for &byte in &header[..4] {
        buf.extend_from_slice(&[byte]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }
    buf.extend_from_slice(&header[4..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, DecodeError::PacketTooLarge { size, max }
            if size == 5 + 268_435_455 && max == MIB),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    // Nothing was reserved for the body that will never be accepted.
    assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
}

#[test]
fn max_packet_size_counts_the_whole_packet() {
    // PUBLISH "t" with a 5-byte payload: 1 + 1 + 3 + 5 = 10 bytes.
    let bytes = publish(0x30, b"t", None, b"12345");
    assert_eq!(bytes.len(), 10);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(Decoder::new(V4)
        .with_max_packet_size(10)
        .decode(&mut buf)
        .unwrap()
        .is_some());
    let mut buf = BytesMut::from(&bytes[..2]); // only the fixed header has arrived
    assert!(matches!(
        Decoder::new(V4).with_max_packet_size(9).decode(&mut buf),
        Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
    ));
}

#[test]
fn bad_first_byte_fails_before_the_body_arrives() {
    for (first, check) in [
        (0x00u8, "reserved type"),
        (0xF0, "AUTH in 3.1.1"),
        (0x61, "PUBREL flags"),
        (0x36, "PUBLISH QoS 3"),
        (0x38, "PUBLISH DUP on QoS 0"),
    ] {
        let mut buf = BytesMut::from(&[first][..]);
        let err = Decoder::new(V4).decode(&mut buf).unwrap_err();
        assert_eq!(err.reason_code(), MALFORMED, "{check}: {err:?}");
        let expected = match first {
            0x00 => matches!(err, DecodeError::ReservedPacketType),
            0xF0 => matches!(err, DecodeError::PacketNotInVersion { .. }),
            0x61 => matches!(err, DecodeError::InvalidFlags { .. }),
            0x36 => matches!(err, DecodeError::InvalidQoS { .. }),
            _ => matches!(err, DecodeError::DupOnQoS0),
        };
        assert!(expected, "{check}: {err:?}");
    }
    // Even with a remaining length that promises a large body still to come.
    let mut buf = BytesMut::from(&[0x81u8, 0xFF, 0xFF, 0x7F][..]);
    assert!(matches!(
        Decoder::new(V4).decode(&mut buf),
        Err(DecodeError::InvalidFlags {
            packet: PacketType::Subscribe,
            flags: 0x01,
            expected: 0x02
        })
    ));
}

#[test]
fn mqtt_3_2_2_4_session_present_with_a_refusal_is_refused_and_never_encoded() {
    // Session Present 1 with return code 0x05 (not authorized).
    assert_decode_err!(
        frame(0x20, &[0x01, 0x05]),
        DecodeError::SessionPresentOnRefusal,
        ReasonCode::ProtocolError
    );
    let wire = encode(&Packet::from(ConnAck {
        session_present: true,
        reason_code: ReasonCode::NotAuthorized,
        ..Default::default()
    }));
    assert_eq!(wire, [0x20, 0x02, 0x00, 0x05]);
}
