//! MQTT 5.0 (OASIS Standard, 7 March 2019) conformance of the wire format.
//!
//! One test per normative statement that a codec can judge from bytes alone. A test is named
//! after the statement's id (`[MQTT-3.8.3-5]` → `mqtt_3_8_3_5_...`), or, for an untagged rule
//! such as "It is a Protocol Error to include X more than once", after the section that states
//! it (`section_3_1_2_11_3_...`). Every packet is written out by hand, byte by byte; every error
//! is checked for its exact `DecodeError` variant and for the reason code a server would send.
//!
//! Statements left to the broker core: they need a session, a connection, knowledge of which
//! side sent the packet, or a policy the codec does not own. (The codec carries every field they
//! act on; `encoded_len` is what the Maximum Packet Size rules need.)
//!
//! * Session and connection state: MQTT-3.1.0-1, MQTT-3.1.0-2, MQTT-3.1.2-4, MQTT-3.1.2-5,
//!   MQTT-3.1.2-6, MQTT-3.1.2-7, MQTT-3.1.2-8, MQTT-3.1.2-10, MQTT-3.1.2-14, MQTT-3.1.2-15,
//!   MQTT-3.1.2-20, MQTT-3.1.2-21, MQTT-3.1.2-22, MQTT-3.1.2-23, MQTT-3.1.3-2, MQTT-3.1.3-7,
//!   MQTT-3.1.3-8, MQTT-3.1.3-9, MQTT-3.1.4-2, MQTT-3.1.4-3, MQTT-3.1.4-4, MQTT-3.1.4-5,
//!   MQTT-3.1.4-6, MQTT-3.2.0-1, MQTT-3.2.0-2, MQTT-3.2.2-2, MQTT-3.2.2-3, MQTT-3.2.2-4,
//!   MQTT-3.2.2-5, MQTT-3.2.2-7, MQTT-3.2.2-16, MQTT-3.2.2-21, MQTT-3.2.2-22, MQTT-3.14.0-1,
//!   MQTT-3.14.4-1, MQTT-3.14.4-2, MQTT-3.14.4-3, MQTT-4.1.0-1, MQTT-4.1.0-2, MQTT-4.2.0-1,
//!   MQTT-4.13.2-1, §3.14.2.2.2 (non-zero Session Expiry Interval in DISCONNECT after 0 in
//!   CONNECT), §3.15 (AUTH without the CONNECT's Authentication Method).
//! * Capabilities the server announced: MQTT-3.1.2-24 (the decision; the size check itself is
//!   tested below), MQTT-3.1.2-25, MQTT-3.1.2-26, MQTT-3.1.2-27, MQTT-3.1.2-28, MQTT-3.1.2-29,
//!   MQTT-3.1.2-30, MQTT-3.2.2-9, MQTT-3.2.2-11, MQTT-3.2.2-12, MQTT-3.2.2-13, MQTT-3.2.2-14,
//!   MQTT-3.2.2-17, MQTT-3.2.2-18, MQTT-3.3.2-9, MQTT-3.3.2-10, MQTT-3.3.2-11, MQTT-3.3.2-12,
//!   §3.2.2.3.11 and §3.2.2.3.13 (wildcard or shared subscription when unsupported → 0xA2,
//!   0x9E), §3.8.2.1.2 (Subscription Identifiers unsupported → 0xA1).
//! * Properties a sender drops to fit the receiver's Maximum Packet Size: MQTT-3.2.2-19,
//!   MQTT-3.2.2-20, MQTT-3.4.2-2, MQTT-3.4.2-3, MQTT-3.5.2-2, MQTT-3.5.2-3, MQTT-3.6.2-2,
//!   MQTT-3.6.2-3, MQTT-3.7.2-2, MQTT-3.7.2-3, MQTT-3.9.2-1, MQTT-3.9.2-2, MQTT-3.11.2-1,
//!   MQTT-3.11.2-2, MQTT-3.14.2-3, MQTT-3.14.2-4, MQTT-3.15.2-2, MQTT-3.15.2-3 (see
//!   `encoded_len_prices_reason_string_and_user_properties_exactly`).
//! * Direction (who sent the packet): MQTT-3.3.4-6 (Subscription
//!   Identifier in a client's PUBLISH), MQTT-3.14.2-2 (Session Expiry Interval in a server's
//!   DISCONNECT), the "sent by" column of tables 3-10 and 3-11.
//! * Message delivery: MQTT-3.3.1-3, MQTT-3.3.1-5, MQTT-3.3.1-6, MQTT-3.3.1-7, MQTT-3.3.1-8,
//!   MQTT-3.3.1-9, MQTT-3.3.1-10, MQTT-3.3.1-11, MQTT-3.3.1-12, MQTT-3.3.1-13, MQTT-3.3.2-3,
//!   MQTT-3.3.2-5, MQTT-3.3.2-6, MQTT-3.3.2-7, MQTT-3.3.2-15, MQTT-3.3.2-20, MQTT-3.3.4-1,
//!   MQTT-3.3.4-2, MQTT-3.3.4-3, MQTT-3.3.4-4, MQTT-3.3.4-5, MQTT-3.3.4-7, MQTT-3.3.4-8,
//!   MQTT-3.3.4-9, MQTT-3.3.4-10, §3.3.4 (alias without a mapping), MQTT-3.8.3-3,
//!   MQTT-3.8.4-1, MQTT-3.8.4-2, MQTT-3.8.4-3, MQTT-3.8.4-4, MQTT-3.8.4-5, MQTT-3.8.4-6,
//!   MQTT-3.8.4-7, MQTT-3.8.4-8, MQTT-3.10.4-1, MQTT-3.10.4-2, MQTT-3.10.4-3, MQTT-3.10.4-4,
//!   MQTT-3.10.4-5, MQTT-3.10.4-6, MQTT-3.12.4-1, MQTT-4.3.1-1, MQTT-4.3.2-1, MQTT-4.3.2-2,
//!   MQTT-4.3.2-3, MQTT-4.3.2-4, MQTT-4.3.2-5, MQTT-4.3.3-1 to MQTT-4.3.3-13, MQTT-4.4.0-1,
//!   MQTT-4.4.0-2, MQTT-4.5.0-1, MQTT-4.5.0-2, MQTT-4.6.0-1 to MQTT-4.6.0-6, MQTT-4.7.2-1,
//!   MQTT-4.7.3-4, MQTT-4.8.2-3, MQTT-4.8.2-4, MQTT-4.8.2-5, MQTT-4.8.2-6, MQTT-4.9.0-1,
//!   MQTT-4.9.0-2, MQTT-4.9.0-3.
//! * Packet identifiers in use: MQTT-2.2.1-4, MQTT-2.2.1-5, MQTT-2.2.1-6.
//! * Enhanced authentication: MQTT-4.12.0-1 to MQTT-4.12.0-7, MQTT-4.12.1-1, MQTT-4.12.1-2.
//! * Transport: MQTT-6.0.0-1, MQTT-6.0.0-3, MQTT-6.0.0-4.
//! * Content the sender chooses: §3.14.2.2.5 (Server Reference goes with 0x9C or 0x9D).
//!
//! MQTT-3.1.4-1 ("validate that the CONNECT packet matches the format described in section
//! 3.1") has no test of its own: it is the sum of the `mqtt_3_1_*` and `section_3_1_*` tests,
//! and `mqtt_4_13_1_1_...` checks that every CONNECT error can be answered in a CONNACK.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, EncodeError,
    MqttString, Packet, PacketId, PacketType, ProtocolVersion, Publish, PublishProperties, QoS,
    ReasonCode, RetainHandling, StringError, SubAck, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, TopicError, UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperties,
    Will, WillProperties,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL_ERROR: ReasonCode = ReasonCode::ProtocolError;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A Variable Byte Integer in its minimal form.
fn varint(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return out;
        }
    }
}

/// A whole packet: the first byte (type and flags), the Remaining Length, then `body`.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut wire = vec![first];
    wire.extend(varint(body.len()));
    wire.extend_from_slice(body);
    wire
}

/// A property block: the Property Length, then the properties.
fn props(properties: &[u8]) -> Vec<u8> {
    let mut block = varint(properties.len());
    block.extend_from_slice(properties);
    block
}

/// A UTF-8 Encoded String or Binary Data field: two length bytes, then the bytes.
fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut field = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    field.extend_from_slice(bytes);
    field
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A CONNECT of MQTT 5.0 with the given connect flags, property block and payload.
fn connect(flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    frame(
        0x10,
        &cat(&[
            &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name "MQTT"
            &[0x05],                               // protocol version 5
            &[flags],                              // connect flags
            &[0x00, 0x3C],                         // keep alive: 60 s
            properties,                            // property length and properties
            payload,                               // client id, will, user name, password
        ]),
    )
}

/// Decodes `wire` with a v5 decoder, insisting that it is exactly one whole packet.
fn decode(wire: &[u8]) -> Result<Packet, DecodeError> {
    decode_with(Decoder::new(V5), wire)
}

fn decode_with(mut decoder: Decoder, wire: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(wire);
    match decoder.decode(&mut buf)? {
        Some(packet) => {
            assert!(buf.is_empty(), "{} bytes left after {packet:?}", buf.len());
            Ok(packet)
        }
        None => panic!("the decoder wants more than the {} bytes given", wire.len()),
    }
}

/// The packet `wire` decodes to; fails the test on an error.
fn ok(wire: &[u8]) -> Packet {
    decode(wire).unwrap_or_else(|e| panic!("expected a packet from {wire:02X?}, got {e:?}"))
}

/// The error `wire` decodes to; fails the test if it decodes.
fn err(wire: &[u8]) -> DecodeError {
    match decode(wire) {
        Ok(packet) => panic!("expected an error from {wire:02X?}, got {packet:?}"),
        Err(e) => e,
    }
}

/// Asserts an error's variant (a pattern, optionally guarded) and its reason code.
macro_rules! assert_error {
    ($error:expr, $pattern:pat $(if $guard:expr)?, $code:expr) => {{
        let error: DecodeError = $error;
        assert!(
            matches!(error, $pattern $(if $guard)?),
            "expected {}, got {error:?}",
            stringify!($pattern)
        );
        assert_eq!(error.reason_code(), $code, "reason code of {error:?}");
    }};
}

/// Unwraps one variant of `Packet`.
macro_rules! expect {
    ($packet:expr, $variant:path) => {
        match $packet {
            $variant(inner) => inner,
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

/// Encodes `packet` in 5.0, checks that `encoded_len` is the number of bytes written and that
/// the bytes decode back to `packet`, and returns them.
fn round_trip(packet: &Packet) -> Vec<u8> {
    let mut wire = BytesMut::new();
    packet
        .encode(V5, &mut wire)
        .unwrap_or_else(|e| panic!("{packet:?} does not encode: {e}"));
    assert_eq!(
        wire.len(),
        packet.encoded_len(V5),
        "encoded_len of {packet:?}"
    );
    assert_eq!(&decode(&wire).expect("decodes back"), packet);
    wire.to_vec()
}

/// Encodes `packet` in 5.0 without decoding it back.
fn encode(packet: &Packet) -> Vec<u8> {
    let mut wire = BytesMut::new();
    packet.encode(V5, &mut wire).expect("encodes");
    assert_eq!(
        wire.len(),
        packet.encoded_len(V5),
        "encoded_len of {packet:?}"
    );
    wire.to_vec()
}

fn id(n: u16) -> PacketId {
    NonZeroU16::new(n).unwrap()
}

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn pair(key: &'static str, value: &'static str) -> (MqttString, MqttString) {
    (s(key), s(value))
}

/// A PUBLISH at QoS 0 to topic "a" with the given property block and no payload.
fn publish_with(properties: &[u8]) -> Vec<u8> {
    frame(
        0x30, // PUBLISH, QoS 0
        &cat(&[
            &[0x00, 0x01, b'a'], // topic name "a"
            properties,
        ]),
    )
}

/// A CONNACK (Success, no session) with the given property block.
fn connack_with(properties: &[u8]) -> Vec<u8> {
    frame(
        0x20,
        &cat(&[
            &[0x00], // acknowledge flags
            &[0x00], // reason code: Success
            properties,
        ]),
    )
}

/// A CONNECT with a will whose property block is `will_properties`.
fn connect_with_will(will_properties: &[u8]) -> Vec<u8> {
    connect(
        0x06, // clean start, will flag, will QoS 0
        &[0x00],
        &cat(&[
            &[0x00, 0x01, b'c'], // client identifier "c"
            will_properties,     // will properties
            &[0x00, 0x01, b'w'], // will topic "w"
            &[0x00, 0x01, b'p'], // will payload "p"
        ]),
    )
}

/// A SUBSCRIBE (packet id 1, no properties) for one filter with the given options byte.
fn subscribe_one(filter: &[u8], options: u8) -> Vec<u8> {
    frame(
        0x82,
        &cat(&[
            &[0x00, 0x01], // packet identifier 1
            &[0x00],       // property length 0
            &lp(filter),   // topic filter
            &[options],    // subscription options
        ]),
    )
}

/// An UNSUBSCRIBE (packet id 1, no properties) for one filter.
fn unsubscribe_one(filter: &[u8]) -> Vec<u8> {
    frame(
        0xA2,
        &cat(&[
            &[0x00, 0x01], // packet identifier 1
            &[0x00],       // property length 0
            &lp(filter),   // topic filter
        ]),
    )
}

// ---------------------------------------------------------------------------------------------
// 1.5 Data representation
// ---------------------------------------------------------------------------------------------

/// One packet per kind of UTF-8 Encoded String field, each holding `text`. The packets are in
/// their canonical encoding, so that decoding and re-encoding gives the same bytes.
fn string_fields(text: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let text = lp(text);
    vec![
        (
            "client identifier",
            connect(0x02, &[0x00], &text), // no properties, client id only
        ),
        (
            "will topic",
            connect(
                0x06, // will flag
                &[0x00],
                &cat(&[&[0x00, 0x01, b'c'], &[0x00], &text, &[0x00, 0x01, b'p']]),
            ),
        ),
        (
            "user name",
            connect(0x82, &[0x00], &cat(&[&[0x00, 0x01, b'c'], &text])),
        ),
        (
            "Authentication Method (CONNECT)",
            connect(0x02, &props(&cat(&[&[0x15], &text])), &[0x00, 0x01, b'c']),
        ),
        (
            "topic name",
            frame(0x30, &cat(&[&text, &[0x00]])), // topic, property length 0
        ),
        (
            "Content Type",
            publish_with(&props(&cat(&[&[0x03], &text]))),
        ),
        (
            "Response Topic",
            publish_with(&props(&cat(&[&[0x08], &text]))),
        ),
        (
            "User Property name",
            publish_with(&props(&cat(&[&[0x26], &text, &[0x00, 0x01, b'v']]))),
        ),
        (
            "User Property value",
            publish_with(&props(&cat(&[&[0x26], &[0x00, 0x01, b'k'], &text]))),
        ),
        (
            "topic filter (SUBSCRIBE)",
            frame(0x82, &cat(&[&[0x00, 0x01, 0x00], &text, &[0x00]])),
        ),
        (
            "topic filter (UNSUBSCRIBE)",
            frame(0xA2, &cat(&[&[0x00, 0x01, 0x00], &text])),
        ),
        (
            "Assigned Client Identifier",
            connack_with(&props(&cat(&[&[0x12], &text]))),
        ),
        (
            "Response Information",
            connack_with(&props(&cat(&[&[0x1A], &text]))),
        ),
        (
            "Server Reference",
            connack_with(&props(&cat(&[&[0x1C], &text]))),
        ),
        (
            "Reason String (PUBACK)",
            frame(
                0x40,
                &cat(&[&[0x00, 0x01, 0x00], &props(&cat(&[&[0x1F], &text]))]),
            ),
        ),
        (
            "Reason String (DISCONNECT)",
            frame(0xE0, &cat(&[&[0x00], &props(&cat(&[&[0x1F], &text]))])),
        ),
        (
            "Authentication Method (AUTH)",
            frame(0xF0, &cat(&[&[0x18], &props(&cat(&[&[0x15], &text]))])),
        ),
    ]
}

fn assert_every_string_field_refuses(text: &[u8], expected: StringError) {
    for (field, wire) in string_fields(text) {
        let error = err(&wire);
        assert!(
            matches!(error, DecodeError::InvalidString { error, .. } if error == expected),
            "{field}: expected {expected:?}, got {error:?}"
        );
        assert_eq!(error.reason_code(), MALFORMED, "{field}");
    }
}

#[test]
fn mqtt_1_5_4_1_ill_formed_utf8_is_malformed() {
    for bad in [
        &[b'a', 0xFF][..],         // 0xFF never appears in UTF-8
        &[0xC3],                   // a lead byte without its continuation
        &[0x80, b'a'],             // a continuation byte without a lead byte
        &[0xC0, 0xAF],             // overlong encoding of '/'
        &[0xE0, 0x80, 0xAF],       // overlong, three bytes
        &[0xF4, 0x90, 0x80, 0x80], // above U+10FFFF
    ] {
        assert_every_string_field_refuses(bad, StringError::InvalidUtf8);
    }
}

#[test]
fn mqtt_1_5_4_1_encoded_surrogates_are_malformed() {
    for surrogate in [
        [0xED, 0xA0, 0x80], // U+D800
        [0xED, 0xAF, 0xBF], // U+DBFF
        [0xED, 0xB0, 0x80], // U+DC00
        [0xED, 0xBF, 0xBF], // U+DFFF
    ] {
        assert_every_string_field_refuses(&surrogate, StringError::InvalidUtf8);
    }
}

#[test]
fn mqtt_1_5_4_2_null_character_is_malformed() {
    assert_every_string_field_refuses(b"a\0b", StringError::NullCharacter);
    assert_every_string_field_refuses(b"\0", StringError::NullCharacter);
    // The encoder cannot be handed one either.
    assert_eq!(
        MqttString::try_from("a\0b"),
        Err(StringError::NullCharacter)
    );
}

#[test]
fn mqtt_1_5_4_3_bom_is_neither_skipped_nor_stripped() {
    for (field, wire) in string_fields(&[0xEF, 0xBB, 0xBF, b'a']) {
        let packet = decode(&wire).unwrap_or_else(|e| panic!("{field}: {e:?}"));
        // Re-encoding gives back every byte, the BOM included.
        assert_eq!(encode(&packet), wire, "{field}");
    }
    let publish = expect!(
        ok(&frame(0x30, &[0x00, 0x04, 0xEF, 0xBB, 0xBF, b'a', 0x00])),
        Packet::Publish
    );
    assert_eq!(publish.topic.as_str(), "\u{FEFF}a");
}

#[test]
fn section_1_5_4_string_longer_than_its_packet_is_malformed() {
    // A topic that claims 5 bytes where 2 remain.
    assert_error!(
        err(&frame(0x30, &[0x00, 0x05, b'a', b'b'])),
        DecodeError::Truncated {
            packet: PacketType::Publish,
            ..
        },
        MALFORMED
    );
}

#[test]
fn section_1_5_4_discouraged_code_points_are_accepted() {
    // U+0001, U+007F, U+009F and the non-character U+FFFF SHOULD NOT be sent, but a receiver
    // only MAY refuse them; this codec passes them on.
    for text in ["\u{1}", "\u{7F}", "\u{9F}", "\u{FFFF}"] {
        for (field, wire) in string_fields(text.as_bytes()) {
            assert!(decode(&wire).is_ok(), "{field} {text:?}");
        }
    }
}

#[test]
fn section_1_5_4_longest_string_is_65535_bytes() {
    // The encoder cannot be handed a longer one [MQTT-4.7.3-3 too].
    let longest = "a".repeat(65_535);
    let topic = MqttString::try_from(longest.as_str()).unwrap();
    assert_eq!(
        MqttString::try_from("a".repeat(65_536)),
        Err(StringError::TooLong)
    );
    let wire = round_trip(&Packet::from(Publish::new(topic, Bytes::new())));
    assert_eq!(&wire[4..6], &[0xFF, 0xFF]); // the topic's length bytes, after a 3-byte length
}

#[test]
fn section_1_5_2_two_byte_integers_are_big_endian() {
    let wire = frame(
        0x10,
        &[
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x05, // version
            0x02, // connect flags
            0x01, 0x02, // keep alive 0x0102 = 258 s
            0x03, 0x21, 0x12, 0x34, // Receive Maximum 0x1234
            0x00, 0x01, b'c', // client identifier
        ],
    );
    let connect = expect!(ok(&wire), Packet::Connect);
    assert_eq!(connect.keep_alive, 258);
    assert_eq!(connect.properties.receive_maximum, Some(0x1234));
    assert_eq!(encode(&Packet::Connect(connect)), wire);
}

#[test]
fn section_1_5_3_four_byte_integers_are_big_endian() {
    let wire = connack_with(&[
        0x05, // property length
        0x11, 0x01, 0x02, 0x03, 0x04, // Session Expiry Interval 0x01020304
    ]);
    let connack = expect!(ok(&wire), Packet::ConnAck);
    assert_eq!(
        connack.properties.session_expiry_interval,
        Some(0x0102_0304)
    );
    assert_eq!(encode(&Packet::ConnAck(connack)), wire);
}

#[test]
fn mqtt_1_5_5_1_non_minimal_variable_byte_integer_is_malformed() {
    let cases: [(&str, Vec<u8>); 5] = [
        // PINGREQ with Remaining Length 0 written in two bytes.
        ("remaining length", vec![0xC0, 0x80, 0x00]),
        // PUBLISH with Remaining Length 4 written in three bytes.
        (
            "remaining length",
            vec![0x30, 0x84, 0x80, 0x00, 0x00, 0x01, b'a', 0x00],
        ),
        // CONNACK whose Property Length 0 takes two bytes.
        ("property length", frame(0x20, &[0x00, 0x00, 0x80, 0x00])),
        // CONNACK whose Receive Maximum identifier 0x21 takes two bytes.
        (
            "property identifier",
            connack_with(&[0x04, 0xA1, 0x00, 0x00, 0x0A]),
        ),
        // SUBSCRIBE whose Subscription Identifier 5 takes two bytes.
        (
            "Subscription Identifier",
            frame(
                0x82,
                &[0x00, 0x01, 0x03, 0x0B, 0x85, 0x00, 0x00, 0x01, b'a', 0x00],
            ),
        ),
    ];
    for (field, wire) in cases {
        assert_error!(
            err(&wire),
            DecodeError::VarIntNotMinimal { field: f } if f == field,
            MALFORMED
        );
    }
}

#[test]
fn mqtt_1_5_5_1_encoder_writes_minimal_variable_byte_integers() {
    // A PUBLISH to "a" with no properties has a Remaining Length of 4 + payload.
    for (payload, header) in [
        (123, &[0x30, 0x7F][..]),                     // 127
        (124, &[0x30, 0x80, 0x01]),                   // 128
        (16_379, &[0x30, 0xFF, 0x7F]),                // 16 383
        (16_380, &[0x30, 0x80, 0x80, 0x01]),          // 16 384
        (2_097_147, &[0x30, 0xFF, 0xFF, 0x7F]),       // 2 097 151
        (2_097_148, &[0x30, 0x80, 0x80, 0x80, 0x01]), // 2 097 152
    ] {
        let publish = Publish::new(s("a"), vec![0u8; payload].into());
        let wire = encode(&Packet::from(publish));
        assert_eq!(&wire[..header.len()], header, "payload of {payload} bytes");
    }
    // A Subscription Identifier too.
    for (sid, bytes) in [
        (127, &[0x7F][..]),
        (128, &[0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ] {
        let subscribe = Subscribe {
            packet_id: id(1),
            properties: SubscribeProperties {
                subscription_identifier: Some(sid),
                ..Default::default()
            },
            subscriptions: vec![Subscription {
                filter: s("a"),
                options: SubscriptionOptions::default(),
            }],
        };
        let wire = round_trip(&Packet::from(subscribe));
        // first byte, remaining length, packet id, property length, identifier 0x0B, value
        assert_eq!(&wire[5..6], &[0x0B]);
        assert_eq!(&wire[6..6 + bytes.len()], bytes, "identifier {sid}");
    }
}

#[test]
fn section_1_5_5_variable_byte_integer_of_five_bytes_is_malformed() {
    // Remaining Length.
    assert_error!(
        err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        DecodeError::VarIntTooLong {
            field: "remaining length"
        },
        MALFORMED
    );
    // Property Length.
    assert_error!(
        err(&connack_with(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F])),
        DecodeError::VarIntTooLong {
            field: "property length"
        },
        MALFORMED
    );
    // Known to be too long after the fourth byte, before a fifth arrives.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF][..]);
    assert_error!(
        Decoder::new(V5).decode(&mut buf).unwrap_err(),
        DecodeError::VarIntTooLong { .. },
        MALFORMED
    );
}

#[test]
fn section_1_5_5_largest_variable_byte_integer_is_268_435_455() {
    // Subscription Identifier 268 435 455 = FF FF FF 7F.
    let wire = frame(
        0x82,
        &[
            0x00, 0x01, // packet identifier
            0x05, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F, // Subscription Identifier 268 435 455
            0x00, 0x01, b'a', 0x00, // filter "a", QoS 0
        ],
    );
    let subscribe = expect!(ok(&wire), Packet::Subscribe);
    assert_eq!(
        subscribe.properties.subscription_identifier,
        Some(268_435_455)
    );
    assert_eq!(mqtt_codec::VARINT_MAX, 268_435_455);
}

#[test]
fn section_1_5_6_binary_data_is_not_checked_as_utf8() {
    // Correlation Data, Authentication Data, will payload and password may hold any bytes.
    let publish = expect!(
        ok(&publish_with(&props(&[0x09, 0x00, 0x03, 0x00, 0xFF, 0xED]))),
        Packet::Publish
    );
    assert_eq!(
        publish.properties.correlation_data.as_deref(),
        Some(&[0x00, 0xFF, 0xED][..])
    );
    let auth = expect!(
        ok(&frame(
            0xF0,
            &[
                0x18, // Continue authentication
                0x09, // property length
                0x15, 0x00, 0x01, b'm', // Authentication Method "m"
                0x16, 0x00, 0x02, 0x00, 0xFF, // Authentication Data 00 FF
            ]
        )),
        Packet::Auth
    );
    assert_eq!(
        auth.properties.authentication_data.as_deref(),
        Some(&[0x00, 0xFF][..])
    );
}

#[test]
fn mqtt_1_5_7_1_both_strings_of_a_user_property_must_be_utf8() {
    for (name, value) in [
        (&[0xFF][..], &b"v"[..]),
        (b"k", &[0xFF]),
        (b"k\0", b"v"),
        (b"k", b"\0"),
        (&[0xED, 0xA0, 0x80], b"v"),
    ] {
        let wire = frame(
            0xE0, // DISCONNECT
            &cat(&[&[0x00], &props(&cat(&[&[0x26], &lp(name), &lp(value)]))]),
        );
        assert_error!(
            err(&wire),
            DecodeError::InvalidString {
                packet: PacketType::Disconnect,
                field: "User Property",
                ..
            },
            MALFORMED
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2.1 Fixed header
// ---------------------------------------------------------------------------------------------

/// The first byte with the required flags and a minimal valid body, for each packet type but
/// PUBLISH.
fn minimal_packets() -> Vec<(PacketType, u8, Vec<u8>)> {
    vec![
        (
            PacketType::Connect,
            0x10,
            vec![
                0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x01, b'c',
            ],
        ),
        (PacketType::ConnAck, 0x20, vec![0x00, 0x00, 0x00]),
        (PacketType::PubAck, 0x40, vec![0x00, 0x01]),
        (PacketType::PubRec, 0x50, vec![0x00, 0x01]),
        (PacketType::PubRel, 0x62, vec![0x00, 0x01]),
        (PacketType::PubComp, 0x70, vec![0x00, 0x01]),
        (
            PacketType::Subscribe,
            0x82,
            vec![0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x00],
        ),
        (PacketType::SubAck, 0x90, vec![0x00, 0x01, 0x00, 0x00]),
        (
            PacketType::Unsubscribe,
            0xA2,
            vec![0x00, 0x01, 0x00, 0x00, 0x01, b'a'],
        ),
        (PacketType::UnsubAck, 0xB0, vec![0x00, 0x01, 0x00, 0x00]),
        (PacketType::PingReq, 0xC0, vec![]),
        (PacketType::PingResp, 0xD0, vec![]),
        (PacketType::Disconnect, 0xE0, vec![]),
        (PacketType::Auth, 0xF0, vec![]),
    ]
}

/// Every flag nibble but the required one is malformed, and is refused on the first byte.
fn assert_only_flags(packet: PacketType, first: u8, body: &[u8]) {
    assert_eq!(ok(&frame(first, body)).packet_type(), packet);
    for flags in 0..16u8 {
        let wrong = (first & 0xF0) | flags;
        if wrong == first {
            continue;
        }
        let mut buf = BytesMut::from(&[wrong][..]); // the first byte alone
        assert_error!(
            Decoder::new(V5).decode(&mut buf).unwrap_err(),
            DecodeError::InvalidFlags { packet: p, flags: f, expected }
                if p == packet && f == flags && expected == first & 0x0F,
            MALFORMED
        );
        assert_error!(
            err(&frame(wrong, body)),
            DecodeError::InvalidFlags { .. },
            MALFORMED
        );
    }
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_must_be_as_listed() {
    for (packet, first, body) in minimal_packets() {
        assert_only_flags(packet, first, &body);
    }
}

#[test]
fn mqtt_2_1_3_1_encoder_writes_the_listed_flags() {
    let packets: Vec<(Packet, u8)> = vec![
        (Packet::from(Connect::new(V5, s("c"))), 0x10),
        (Packet::from(ConnAck::default()), 0x20),
        (Packet::PubAck(Ack::new(id(1))), 0x40),
        (Packet::PubRec(Ack::new(id(1))), 0x50),
        (Packet::PubRel(Ack::new(id(1))), 0x62),
        (Packet::PubComp(Ack::new(id(1))), 0x70),
        (
            Packet::from(Subscribe {
                packet_id: id(1),
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: s("a"),
                    options: SubscriptionOptions::default(),
                }],
            }),
            0x82,
        ),
        (
            Packet::from(SubAck {
                packet_id: id(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::GrantedQoS1],
            }),
            0x90,
        ),
        (
            Packet::from(Unsubscribe {
                packet_id: id(1),
                properties: UnsubscribeProperties::default(),
                filters: vec![s("a")],
            }),
            0xA2,
        ),
        (
            Packet::from(UnsubAck {
                packet_id: id(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            }),
            0xB0,
        ),
        (Packet::PingReq, 0xC0),
        (Packet::PingResp, 0xD0),
        (Packet::from(Disconnect::default()), 0xE0),
        (Packet::from(Auth::default()), 0xF0),
    ];
    for (packet, first) in packets {
        assert_eq!(round_trip(&packet)[0], first, "{packet:?}");
    }
}

#[test]
fn section_2_1_2_packet_type_0_is_malformed() {
    for first in [0x00, 0x01, 0x0F] {
        let mut buf = BytesMut::from(&[first][..]);
        assert_error!(
            Decoder::new(V5).decode(&mut buf).unwrap_err(),
            DecodeError::ReservedPacketType,
            MALFORMED
        );
    }
}

#[test]
fn section_2_1_2_packet_type_15_is_auth() {
    assert_eq!(ok(&[0xF0, 0x00]), Packet::Auth(Auth::default()));
}

#[test]
fn section_2_1_4_remaining_length_must_cover_the_packet_exactly() {
    // One byte too many.
    assert_error!(
        err(&frame(0x20, &[0x00, 0x00, 0x00, 0x00])),
        DecodeError::TrailingBytes {
            packet: PacketType::ConnAck,
            count: 1
        },
        MALFORMED
    );
    assert_error!(
        err(&frame(0x40, &[0x00, 0x01, 0x00, 0x00, 0xAA])),
        DecodeError::TrailingBytes {
            packet: PacketType::PubAck,
            count: 1
        },
        MALFORMED
    );
    // Too few: CONNACK with no reason code.
    assert_error!(
        err(&frame(0x20, &[0x00])),
        DecodeError::Truncated {
            packet: PacketType::ConnAck,
            ..
        },
        MALFORMED
    );
    // A Property Length that runs past the Remaining Length.
    assert_error!(
        err(&connack_with(&[0x05, 0x21, 0x00, 0x0A])),
        DecodeError::Truncated {
            packet: PacketType::ConnAck,
            field: "properties"
        },
        MALFORMED
    );
}

#[test]
fn section_2_1_4_packet_size_includes_the_fixed_header() {
    // A 10-byte PUBLISH: 1 type byte, 1 length byte, 8 more.
    let wire = frame(0x30, &[0x00, 0x01, b'a', 0x00, 1, 2, 3, 4]);
    assert_eq!(wire.len(), 10);
    let publish = Packet::Publish(Publish::new(s("a"), vec![1, 2, 3, 4].into()));
    assert_eq!(publish.encoded_len(V5), 10);
    assert!(decode_with(Decoder::new(V5).with_max_packet_size(10), &wire).is_ok());
    assert_error!(
        decode_with(Decoder::new(V5).with_max_packet_size(9), &wire).unwrap_err(),
        DecodeError::PacketTooLarge { size: 10, max: 9 },
        ReasonCode::PacketTooLarge
    );
}

#[test]
fn mqtt_6_0_0_2_packets_need_not_arrive_whole_or_alone() {
    let mut stream = frame(0x30, &[0x00, 0x01, b'a', 0x00, b'h', b'i']); // PUBLISH "hi"
    stream.extend(frame(0x40, &[0x00, 0x07])); // PUBACK 7
    stream.extend([0xC0, 0x00]); // PINGREQ
    let mut decoder = Decoder::new(V5);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for &byte in &stream {
        buf.extend_from_slice(&[byte]);
        while let Some(packet) = decoder.decode(&mut buf).unwrap() {
            packets.push(packet);
        }
    }
    assert_eq!(
        packets,
        vec![
            Packet::Publish(Publish::new(s("a"), Bytes::from_static(b"hi"))),
            Packet::PubAck(Ack::new(id(7))),
            Packet::PingReq,
        ]
    );
    assert!(buf.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2.2.1 Packet Identifier
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_2_2_1_2_qos_0_publish_has_no_packet_identifier() {
    // At QoS 0 the two bytes after the topic are not an identifier: here they are the property
    // length 0 and the first payload byte.
    let publish = expect!(
        ok(&frame(0x30, &[0x00, 0x01, b'a', 0x00, 0x00, 0x01])),
        Packet::Publish
    );
    assert_eq!(publish.packet_id, None);
    assert_eq!(&publish.payload[..], &[0x00, 0x01]);
    // The encoder refuses an identifier at QoS 0, and its absence above QoS 0.
    let mut with_id = Publish::new(s("a"), Bytes::new());
    with_id.packet_id = Some(id(1));
    let mut buf = BytesMut::new();
    assert!(matches!(
        Packet::from(with_id).encode(V5, &mut buf),
        Err(EncodeError::PacketIdMismatch { .. })
    ));
    let mut without_id = Publish::new(s("a"), Bytes::new());
    without_id.qos = QoS::AtLeastOnce;
    assert!(matches!(
        Packet::from(without_id).encode(V5, &mut buf),
        Err(EncodeError::PacketIdMismatch { .. })
    ));
    assert!(
        buf.is_empty(),
        "a failed encode leaves the buffer as it was"
    );
}

#[test]
fn mqtt_2_2_1_3_packet_identifier_zero_is_protocol_error() {
    let cases = [
        (
            PacketType::Publish,
            frame(0x32, &[0x00, 0x01, b'a', 0x00, 0x00, 0x00]), // QoS 1, id 0
        ),
        (
            PacketType::Publish,
            frame(0x34, &[0x00, 0x01, b'a', 0x00, 0x00, 0x00]), // QoS 2, id 0
        ),
        (
            PacketType::Subscribe,
            frame(0x82, &[0x00, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]),
        ),
        (
            PacketType::Unsubscribe,
            frame(0xA2, &[0x00, 0x00, 0x00, 0x00, 0x01, b'a']),
        ),
        // Acknowledgements carry the identifier they acknowledge [MQTT-2.2.1-5], never 0.
        (PacketType::PubAck, frame(0x40, &[0x00, 0x00])),
        (PacketType::PubRec, frame(0x50, &[0x00, 0x00])),
        (PacketType::PubRel, frame(0x62, &[0x00, 0x00])),
        (PacketType::PubComp, frame(0x70, &[0x00, 0x00])),
        (PacketType::SubAck, frame(0x90, &[0x00, 0x00, 0x00, 0x00])),
        (PacketType::UnsubAck, frame(0xB0, &[0x00, 0x00, 0x00, 0x00])),
    ];
    for (packet, wire) in cases {
        assert_error!(
            err(&wire),
            DecodeError::ZeroPacketId { packet: p } if p == packet,
            PROTOCOL_ERROR
        );
    }
    // The identifier type cannot hold 0, so the encoder cannot send it.
    assert_eq!(PacketId::new(0), None);
}

// ---------------------------------------------------------------------------------------------
// 2.2.2 Properties
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_2_2_2_1_no_properties_is_sent_as_property_length_zero() {
    let mut will = Connect::new(V5, s("c"));
    will.will = Some(Will {
        topic: s("w"),
        payload: Bytes::from_static(b"p"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let cases: Vec<(Packet, Vec<u8>)> = vec![
        (
            Packet::from(Connect::new(V5, s("c"))),
            vec![
                0x10, 0x0E, // CONNECT, remaining length 14
                0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, // header
                0x00, // property length 0
                0x00, 0x01, b'c', // client identifier
            ],
        ),
        (
            Packet::from(will),
            vec![
                0x10, 0x15, // CONNECT, remaining length 21
                0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00, 0x3C, // header
                0x00, // property length 0
                0x00, 0x01, b'c', // client identifier
                0x00, // will property length 0
                0x00, 0x01, b'w', 0x00, 0x01, b'p', // will topic and payload
            ],
        ),
        (
            Packet::from(ConnAck::default()),
            vec![0x20, 0x03, 0x00, 0x00, 0x00], // flags, Success, property length 0
        ),
        (
            Packet::from(Publish::new(s("a"), Bytes::new())),
            vec![0x30, 0x04, 0x00, 0x01, b'a', 0x00], // topic, property length 0
        ),
        (
            Packet::from(Subscribe {
                packet_id: id(1),
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: s("a"),
                    options: SubscriptionOptions::default(),
                }],
            }),
            vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x00],
        ),
        (
            Packet::from(SubAck {
                packet_id: id(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            }),
            vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00],
        ),
        (
            Packet::from(Unsubscribe {
                packet_id: id(1),
                properties: UnsubscribeProperties::default(),
                filters: vec![s("a")],
            }),
            vec![0xA2, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a'],
        ),
        (
            Packet::from(UnsubAck {
                packet_id: id(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            }),
            vec![0xB0, 0x04, 0x00, 0x01, 0x00, 0x00],
        ),
    ];
    for (packet, wire) in cases {
        assert_eq!(round_trip(&packet), wire, "{packet:?}");
    }
}

#[test]
fn mqtt_2_2_2_1_missing_property_length_is_malformed() {
    // Where no short form is defined, the Property Length must be there.
    let cases = [
        (PacketType::ConnAck, frame(0x20, &[0x00, 0x00])),
        (PacketType::Publish, frame(0x30, &[0x00, 0x01, b'a'])),
        (
            PacketType::Connect,
            frame(
                0x10,
                &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C],
            ),
        ),
        (PacketType::Subscribe, frame(0x82, &[0x00, 0x01])),
        (PacketType::Unsubscribe, frame(0xA2, &[0x00, 0x01])),
        (PacketType::UnsubAck, frame(0xB0, &[0x00, 0x01])),
        // The will properties too.
        (
            PacketType::Connect,
            connect(0x06, &[0x00], &[0x00, 0x01, b'c']),
        ),
    ];
    for (packet, wire) in cases {
        assert_error!(
            err(&wire),
            DecodeError::Truncated { packet: p, .. } if p == packet,
            MALFORMED
        );
    }
}

#[test]
fn section_2_2_2_2_unknown_property_identifier_is_malformed() {
    let defined = [
        0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A,
        0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
    ];
    for identifier in 0..=0x7Fu8 {
        if defined.contains(&identifier) {
            continue;
        }
        // Followed by a byte, so that only the identifier can be wrong.
        let wire = connack_with(&props(&[identifier, 0x00]));
        assert_error!(
            err(&wire),
            DecodeError::UnknownProperty {
                packet: PacketType::ConnAck,
                id
            } if id == u32::from(identifier),
            MALFORMED
        );
    }
    // Identifiers are Variable Byte Integers: 0x80 0x01 is 128, which is not defined either.
    assert_error!(
        err(&connack_with(&props(&[0x80, 0x01, 0x00]))),
        DecodeError::UnknownProperty { id: 128, .. },
        MALFORMED
    );
}

#[test]
fn section_2_2_2_2_property_value_cut_short_is_malformed() {
    let cases: [(&str, &[u8]); 6] = [
        ("Session Expiry Interval", &[0x11, 0x00, 0x00, 0x01]), // 3 of 4 bytes
        ("Receive Maximum", &[0x21, 0x00]),                     // 1 of 2 bytes
        ("Maximum QoS", &[0x24]),                               // 0 of 1 byte
        ("Reason String", &[0x1F, 0x00, 0x05, b'a']),           // 1 of 5 bytes
        ("Authentication Data", &[0x16, 0x00]),                 // half a length
        ("User Property", &[0x26, 0x00, 0x01, b'k']),           // a name without a value
    ];
    for (name, property) in cases {
        assert_error!(
            err(&connack_with(&props(property))),
            DecodeError::Truncated {
                packet: PacketType::ConnAck,
                field
            } if field == name,
            MALFORMED
        );
    }
}

#[test]
fn section_2_2_2_2_property_order_is_not_significant() {
    let one = connack_with(&[
        0x05, // property length
        0x21, 0x00, 0x0A, // Receive Maximum 10
        0x24, 0x01, // Maximum QoS 1
    ]);
    let other = connack_with(&[
        0x05, // property length
        0x24, 0x01, // Maximum QoS 1
        0x21, 0x00, 0x0A, // Receive Maximum 10
    ]);
    assert_eq!(ok(&one), ok(&other));
    let connack = expect!(ok(&one), Packet::ConnAck);
    assert_eq!(connack.properties.receive_maximum, Some(10));
    assert_eq!(connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
}

/// The packets (and the will) that carry properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

const EVERYWHERE: [Ctx; 14] = [
    Ctx::Connect,
    Ctx::Will,
    Ctx::ConnAck,
    Ctx::Publish,
    Ctx::PubAck,
    Ctx::PubRec,
    Ctx::PubRel,
    Ctx::PubComp,
    Ctx::Subscribe,
    Ctx::SubAck,
    Ctx::Unsubscribe,
    Ctx::UnsubAck,
    Ctx::Disconnect,
    Ctx::Auth,
];

impl Ctx {
    /// The packet type an error names (the will travels in CONNECT).
    fn packet_type(self) -> PacketType {
        match self {
            Ctx::Connect | Ctx::Will => PacketType::Connect,
            Ctx::ConnAck => PacketType::ConnAck,
            Ctx::Publish => PacketType::Publish,
            Ctx::PubAck => PacketType::PubAck,
            Ctx::PubRec => PacketType::PubRec,
            Ctx::PubRel => PacketType::PubRel,
            Ctx::PubComp => PacketType::PubComp,
            Ctx::Subscribe => PacketType::Subscribe,
            Ctx::SubAck => PacketType::SubAck,
            Ctx::Unsubscribe => PacketType::Unsubscribe,
            Ctx::UnsubAck => PacketType::UnsubAck,
            Ctx::Disconnect => PacketType::Disconnect,
            Ctx::Auth => PacketType::Auth,
        }
    }

    /// A minimal valid packet whose property block holds `properties`.
    fn packet(self, properties: &[u8]) -> Vec<u8> {
        let block = props(properties);
        let ack = |first: u8| {
            frame(
                first,
                &cat(&[
                    &[0x00, 0x01], // packet identifier 1
                    &[0x00],       // reason code: Success
                    &block,
                ]),
            )
        };
        match self {
            Ctx::Connect => connect(0x02, &block, &[0x00, 0x01, b'c']),
            Ctx::Will => connect_with_will(&block),
            Ctx::ConnAck => connack_with(&block),
            Ctx::Publish => publish_with(&block),
            Ctx::PubAck => ack(0x40),
            Ctx::PubRec => ack(0x50),
            Ctx::PubRel => ack(0x62),
            Ctx::PubComp => ack(0x70),
            Ctx::Subscribe => frame(
                0x82,
                &cat(&[
                    &[0x00, 0x01],       // packet identifier 1
                    &block,              // properties
                    &[0x00, 0x01, b'a'], // topic filter "a"
                    &[0x00],             // subscription options: QoS 0
                ]),
            ),
            Ctx::SubAck => frame(
                0x90,
                &cat(&[
                    &[0x00, 0x01], // packet identifier 1
                    &block,        // properties
                    &[0x00],       // reason code: Granted QoS 0
                ]),
            ),
            Ctx::Unsubscribe => frame(
                0xA2,
                &cat(&[
                    &[0x00, 0x01],       // packet identifier 1
                    &block,              // properties
                    &[0x00, 0x01, b'a'], // topic filter "a"
                ]),
            ),
            Ctx::UnsubAck => frame(
                0xB0,
                &cat(&[
                    &[0x00, 0x01], // packet identifier 1
                    &block,        // properties
                    &[0x00],       // reason code: Success
                ]),
            ),
            Ctx::Disconnect => frame(
                0xE0,
                &cat(&[
                    &[0x00], // reason code: Normal disconnection
                    &block,
                ]),
            ),
            Ctx::Auth => {
                // An AUTH with a body must name its method (section 3.15.2.2.2): add one
                // unless the properties under test already hold it.
                let has_method = properties
                    .windows(AUTHENTICATION_METHOD_M.len())
                    .any(|w| w == AUTHENTICATION_METHOD_M)
                    || properties.first() == Some(&0x15);
                let block = if has_method {
                    block
                } else {
                    props(&cat(&[properties, AUTHENTICATION_METHOD_M]))
                };
                frame(
                    0xF0,
                    &cat(&[
                        &[0x18], // reason code: Continue authentication
                        &block,
                    ]),
                )
            }
        }
    }
}

/// The user properties of a decoded packet of kind `ctx`.
fn user_properties(ctx: Ctx, packet: Packet) -> UserProperties {
    match packet {
        Packet::Connect(c) if ctx == Ctx::Will => c.will.unwrap().properties.user_properties,
        Packet::Connect(c) => c.properties.user_properties,
        Packet::ConnAck(c) => c.properties.user_properties,
        Packet::Publish(p) => p.properties.user_properties,
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.properties.user_properties
        }
        Packet::Subscribe(p) => p.properties.user_properties,
        Packet::SubAck(p) => p.properties.user_properties,
        Packet::Unsubscribe(p) => p.properties.user_properties,
        Packet::UnsubAck(p) => p.properties.user_properties,
        Packet::Disconnect(p) => p.properties.user_properties,
        Packet::Auth(p) => p.properties.user_properties,
        other => panic!("{other:?} has no properties"),
    }
}

/// A row of table 2-4: a property, a valid instance of it, and where it may appear.
struct Property {
    name: &'static str,
    /// Identifier and a valid value.
    sample: &'static [u8],
    allowed: &'static [Ctx],
}

/// Authentication Data needs an Authentication Method beside it in CONNECT and AUTH. It goes
/// after the property under test, so that where that property is not allowed, it is what the
/// decoder trips on.
const AUTHENTICATION_METHOD_M: &[u8] = &[0x15, 0x00, 0x01, b'm'];

fn companion(property: &Property) -> &'static [u8] {
    if property.sample[0] == 0x16 {
        AUTHENTICATION_METHOD_M
    } else {
        &[]
    }
}

const PAYLOAD_FORMAT_INDICATOR: Property = Property {
    name: "Payload Format Indicator",
    sample: &[0x01, 0x01],
    allowed: &[Ctx::Publish, Ctx::Will],
};
const MESSAGE_EXPIRY_INTERVAL: Property = Property {
    name: "Message Expiry Interval",
    sample: &[0x02, 0x00, 0x00, 0x00, 0x0A],
    allowed: &[Ctx::Publish, Ctx::Will],
};
const CONTENT_TYPE: Property = Property {
    name: "Content Type",
    sample: &[0x03, 0x00, 0x04, b't', b'e', b'x', b't'],
    allowed: &[Ctx::Publish, Ctx::Will],
};
const RESPONSE_TOPIC: Property = Property {
    name: "Response Topic",
    sample: &[0x08, 0x00, 0x03, b'r', b'/', b'1'],
    allowed: &[Ctx::Publish, Ctx::Will],
};
const CORRELATION_DATA: Property = Property {
    name: "Correlation Data",
    sample: &[0x09, 0x00, 0x02, 0xCA, 0xFE],
    allowed: &[Ctx::Publish, Ctx::Will],
};
const SUBSCRIPTION_IDENTIFIER: Property = Property {
    name: "Subscription Identifier",
    sample: &[0x0B, 0x05],
    allowed: &[Ctx::Publish, Ctx::Subscribe],
};
const SESSION_EXPIRY_INTERVAL: Property = Property {
    name: "Session Expiry Interval",
    sample: &[0x11, 0x00, 0x00, 0x00, 0x3C],
    allowed: &[Ctx::Connect, Ctx::ConnAck, Ctx::Disconnect],
};
const ASSIGNED_CLIENT_IDENTIFIER: Property = Property {
    name: "Assigned Client Identifier",
    sample: &[0x12, 0x00, 0x02, b'i', b'd'],
    allowed: &[Ctx::ConnAck],
};
const SERVER_KEEP_ALIVE: Property = Property {
    name: "Server Keep Alive",
    sample: &[0x13, 0x00, 0x1E],
    allowed: &[Ctx::ConnAck],
};
const AUTHENTICATION_METHOD: Property = Property {
    name: "Authentication Method",
    sample: AUTHENTICATION_METHOD_M,
    allowed: &[Ctx::Connect, Ctx::ConnAck, Ctx::Auth],
};
const AUTHENTICATION_DATA: Property = Property {
    name: "Authentication Data",
    sample: &[0x16, 0x00, 0x02, 0x01, 0x02],
    allowed: &[Ctx::Connect, Ctx::ConnAck, Ctx::Auth],
};
const REQUEST_PROBLEM_INFORMATION: Property = Property {
    name: "Request Problem Information",
    sample: &[0x17, 0x01],
    allowed: &[Ctx::Connect],
};
const WILL_DELAY_INTERVAL: Property = Property {
    name: "Will Delay Interval",
    sample: &[0x18, 0x00, 0x00, 0x00, 0x05],
    allowed: &[Ctx::Will],
};
const REQUEST_RESPONSE_INFORMATION: Property = Property {
    name: "Request Response Information",
    sample: &[0x19, 0x01],
    allowed: &[Ctx::Connect],
};
const RESPONSE_INFORMATION: Property = Property {
    name: "Response Information",
    sample: &[0x1A, 0x00, 0x02, b'r', b'i'],
    allowed: &[Ctx::ConnAck],
};
const SERVER_REFERENCE: Property = Property {
    name: "Server Reference",
    sample: &[0x1C, 0x00, 0x02, b's', b'r'],
    allowed: &[Ctx::ConnAck, Ctx::Disconnect],
};
const REASON_STRING: Property = Property {
    name: "Reason String",
    sample: &[0x1F, 0x00, 0x02, b'r', b's'],
    allowed: &[
        Ctx::ConnAck,
        Ctx::PubAck,
        Ctx::PubRec,
        Ctx::PubRel,
        Ctx::PubComp,
        Ctx::SubAck,
        Ctx::UnsubAck,
        Ctx::Disconnect,
        Ctx::Auth,
    ],
};
const RECEIVE_MAXIMUM: Property = Property {
    name: "Receive Maximum",
    sample: &[0x21, 0x00, 0x0A],
    allowed: &[Ctx::Connect, Ctx::ConnAck],
};
const TOPIC_ALIAS_MAXIMUM: Property = Property {
    name: "Topic Alias Maximum",
    sample: &[0x22, 0x00, 0x0A],
    allowed: &[Ctx::Connect, Ctx::ConnAck],
};
const TOPIC_ALIAS: Property = Property {
    name: "Topic Alias",
    sample: &[0x23, 0x00, 0x01],
    allowed: &[Ctx::Publish],
};
const MAXIMUM_QOS: Property = Property {
    name: "Maximum QoS",
    sample: &[0x24, 0x01],
    allowed: &[Ctx::ConnAck],
};
const RETAIN_AVAILABLE: Property = Property {
    name: "Retain Available",
    sample: &[0x25, 0x01],
    allowed: &[Ctx::ConnAck],
};
const USER_PROPERTY: Property = Property {
    name: "User Property",
    sample: &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
    allowed: &EVERYWHERE,
};
const MAXIMUM_PACKET_SIZE: Property = Property {
    name: "Maximum Packet Size",
    sample: &[0x27, 0x00, 0x00, 0x04, 0x00],
    allowed: &[Ctx::Connect, Ctx::ConnAck],
};
const WILDCARD_SUBSCRIPTION_AVAILABLE: Property = Property {
    name: "Wildcard Subscription Available",
    sample: &[0x28, 0x01],
    allowed: &[Ctx::ConnAck],
};
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: Property = Property {
    name: "Subscription Identifier Available",
    sample: &[0x29, 0x01],
    allowed: &[Ctx::ConnAck],
};
const SHARED_SUBSCRIPTION_AVAILABLE: Property = Property {
    name: "Shared Subscription Available",
    sample: &[0x2A, 0x01],
    allowed: &[Ctx::ConnAck],
};

/// Decodes where table 2-4 allows the property; a Malformed Packet everywhere else.
fn check_placement(property: &Property) {
    for ctx in EVERYWHERE {
        let wire = ctx.packet(&cat(&[property.sample, companion(property)]));
        if property.allowed.contains(&ctx) {
            if let Err(e) = decode(&wire) {
                panic!("{} in {ctx:?}: {e:?}", property.name);
            }
        } else {
            assert_error!(
                err(&wire),
                DecodeError::PropertyNotAllowed { packet, name }
                    if packet == ctx.packet_type() && name == property.name,
                MALFORMED
            );
        }
    }
}

/// Twice is a Protocol Error wherever the property is allowed.
fn check_duplicate(property: &Property) {
    assert!(!property.allowed.is_empty());
    for &ctx in property.allowed {
        let wire = ctx.packet(&cat(&[
            property.sample,
            property.sample,
            companion(property),
        ]));
        assert_error!(
            err(&wire),
            DecodeError::DuplicateProperty { packet, name }
                if packet == ctx.packet_type() && name == property.name,
            PROTOCOL_ERROR
        );
    }
}

macro_rules! placement_tests {
    ($($test:ident: $property:ident;)*) => {$(
        #[test]
        fn $test() {
            check_placement(&$property);
        }
    )*};
}

macro_rules! duplicate_tests {
    ($($test:ident: $property:ident;)*) => {$(
        #[test]
        fn $test() {
            check_duplicate(&$property);
        }
    )*};
}

// §2.2.2.2: "A Control Packet which contains an Identifier which is not valid for its packet
// type ... is a Malformed Packet." Table 2-4 lists where each property is valid.
placement_tests! {
    section_2_2_2_2_payload_format_indicator_only_in_publish_and_will: PAYLOAD_FORMAT_INDICATOR;
    section_2_2_2_2_message_expiry_interval_only_in_publish_and_will: MESSAGE_EXPIRY_INTERVAL;
    section_2_2_2_2_content_type_only_in_publish_and_will: CONTENT_TYPE;
    section_2_2_2_2_response_topic_only_in_publish_and_will: RESPONSE_TOPIC;
    section_2_2_2_2_correlation_data_only_in_publish_and_will: CORRELATION_DATA;
    section_2_2_2_2_subscription_identifier_only_in_publish_and_subscribe: SUBSCRIPTION_IDENTIFIER;
    section_2_2_2_2_session_expiry_interval_only_in_connect_connack_disconnect: SESSION_EXPIRY_INTERVAL;
    section_2_2_2_2_assigned_client_identifier_only_in_connack: ASSIGNED_CLIENT_IDENTIFIER;
    section_2_2_2_2_server_keep_alive_only_in_connack: SERVER_KEEP_ALIVE;
    section_2_2_2_2_authentication_method_only_in_connect_connack_auth: AUTHENTICATION_METHOD;
    section_2_2_2_2_authentication_data_only_in_connect_connack_auth: AUTHENTICATION_DATA;
    section_2_2_2_2_request_problem_information_only_in_connect: REQUEST_PROBLEM_INFORMATION;
    section_2_2_2_2_will_delay_interval_only_in_will_properties: WILL_DELAY_INTERVAL;
    section_2_2_2_2_request_response_information_only_in_connect: REQUEST_RESPONSE_INFORMATION;
    section_2_2_2_2_response_information_only_in_connack: RESPONSE_INFORMATION;
    section_2_2_2_2_server_reference_only_in_connack_and_disconnect: SERVER_REFERENCE;
    section_2_2_2_2_reason_string_only_in_acknowledgements_disconnect_auth: REASON_STRING;
    section_2_2_2_2_receive_maximum_only_in_connect_and_connack: RECEIVE_MAXIMUM;
    section_2_2_2_2_topic_alias_maximum_only_in_connect_and_connack: TOPIC_ALIAS_MAXIMUM;
    section_2_2_2_2_topic_alias_only_in_publish: TOPIC_ALIAS;
    section_2_2_2_2_maximum_qos_only_in_connack: MAXIMUM_QOS;
    section_2_2_2_2_retain_available_only_in_connack: RETAIN_AVAILABLE;
    section_2_2_2_2_user_property_in_every_packet_with_properties: USER_PROPERTY;
    section_2_2_2_2_maximum_packet_size_only_in_connect_and_connack: MAXIMUM_PACKET_SIZE;
    section_2_2_2_2_wildcard_subscription_available_only_in_connack: WILDCARD_SUBSCRIPTION_AVAILABLE;
    section_2_2_2_2_subscription_identifier_available_only_in_connack: SUBSCRIPTION_IDENTIFIER_AVAILABLE;
    section_2_2_2_2_shared_subscription_available_only_in_connack: SHARED_SUBSCRIPTION_AVAILABLE;
}

// "It is a Protocol Error to include <property> more than once." Each test is named after the
// first section that says so; it checks every packet the property may appear in (the same
// sentence is repeated in the sections of those packets).
duplicate_tests! {
    // Also §3.3.2.3.2 (PUBLISH).
    section_3_1_3_2_3_payload_format_indicator_more_than_once_is_protocol_error: PAYLOAD_FORMAT_INDICATOR;
    // Also §3.3.2.3.3 (PUBLISH).
    section_3_1_3_2_4_message_expiry_interval_more_than_once_is_protocol_error: MESSAGE_EXPIRY_INTERVAL;
    // Also §3.3.2.3.9.
    section_3_1_3_2_5_content_type_more_than_once_is_protocol_error: CONTENT_TYPE;
    // Also §3.3.2.3.5.
    section_3_1_3_2_6_response_topic_more_than_once_is_protocol_error: RESPONSE_TOPIC;
    // Also §3.3.2.3.6.
    section_3_1_3_2_7_correlation_data_more_than_once_is_protocol_error: CORRELATION_DATA;
    section_3_1_3_2_2_will_delay_interval_more_than_once_is_protocol_error: WILL_DELAY_INTERVAL;
    // Also §3.2.2.3.2 (CONNACK) and §3.14.2.2.2 (DISCONNECT).
    section_3_1_2_11_2_session_expiry_interval_more_than_once_is_protocol_error: SESSION_EXPIRY_INTERVAL;
    // Also §3.2.2.3.3.
    section_3_1_2_11_3_receive_maximum_more_than_once_is_protocol_error: RECEIVE_MAXIMUM;
    // Also §3.2.2.3.6.
    section_3_1_2_11_4_maximum_packet_size_more_than_once_is_protocol_error: MAXIMUM_PACKET_SIZE;
    // Also §3.2.2.3.8.
    section_3_1_2_11_5_topic_alias_maximum_more_than_once_is_protocol_error: TOPIC_ALIAS_MAXIMUM;
    section_3_1_2_11_6_request_response_information_more_than_once_is_protocol_error: REQUEST_RESPONSE_INFORMATION;
    section_3_1_2_11_7_request_problem_information_more_than_once_is_protocol_error: REQUEST_PROBLEM_INFORMATION;
    // Also §3.2.2.3.17 (CONNACK) and §3.15.2.2.2 (AUTH).
    section_3_1_2_11_9_authentication_method_more_than_once_is_protocol_error: AUTHENTICATION_METHOD;
    // Also §3.2.2.3.18 (CONNACK) and §3.15.2.2.3 (AUTH).
    section_3_1_2_11_10_authentication_data_more_than_once_is_protocol_error: AUTHENTICATION_DATA;
    section_3_2_2_3_4_maximum_qos_more_than_once_is_protocol_error: MAXIMUM_QOS;
    section_3_2_2_3_5_retain_available_more_than_once_is_protocol_error: RETAIN_AVAILABLE;
    section_3_2_2_3_7_assigned_client_identifier_more_than_once_is_protocol_error: ASSIGNED_CLIENT_IDENTIFIER;
    // Also §3.4.2.2.2, §3.5.2.2.2, §3.6.2.2.2, §3.7.2.2.2, §3.9.2.1.2, §3.11.2.1.2,
    // §3.14.2.2.3 and §3.15.2.2.4.
    section_3_2_2_3_9_reason_string_more_than_once_is_protocol_error: REASON_STRING;
    section_3_2_2_3_11_wildcard_subscription_available_more_than_once_is_protocol_error: WILDCARD_SUBSCRIPTION_AVAILABLE;
    section_3_2_2_3_12_subscription_identifier_available_more_than_once_is_protocol_error: SUBSCRIPTION_IDENTIFIER_AVAILABLE;
    section_3_2_2_3_13_shared_subscription_available_more_than_once_is_protocol_error: SHARED_SUBSCRIPTION_AVAILABLE;
    section_3_2_2_3_14_server_keep_alive_more_than_once_is_protocol_error: SERVER_KEEP_ALIVE;
    section_3_2_2_3_15_response_information_more_than_once_is_protocol_error: RESPONSE_INFORMATION;
    // Also §3.14.2.2.5.
    section_3_2_2_3_16_server_reference_more_than_once_is_protocol_error: SERVER_REFERENCE;
    section_3_3_2_3_4_topic_alias_more_than_once_is_protocol_error: TOPIC_ALIAS;
}

#[test]
fn section_3_8_2_1_2_subscription_identifier_more_than_once_is_protocol_error() {
    let wire = Ctx::Subscribe.packet(&[
        0x0B, 0x05, // Subscription Identifier 5
        0x0B, 0x06, // Subscription Identifier 6
    ]);
    assert_error!(
        err(&wire),
        DecodeError::DuplicateProperty {
            packet: PacketType::Subscribe,
            name: "Subscription Identifier"
        },
        PROTOCOL_ERROR
    );
}

#[test]
fn section_3_3_2_3_8_subscription_identifier_may_repeat_in_publish() {
    let wire = Ctx::Publish.packet(&[
        0x0B, 0x05, // Subscription Identifier 5
        0x0B, 0x80, 0x01, // Subscription Identifier 128
        0x0B, 0x05, // Subscription Identifier 5 again
    ]);
    let publish = expect!(ok(&wire), Packet::Publish);
    assert_eq!(publish.properties.subscription_identifiers, vec![5, 128, 5]);
    round_trip(&Packet::Publish(publish));
}

#[test]
fn section_3_1_2_11_8_user_property_may_repeat_with_the_same_name() {
    // Also §3.1.3.2.8, §3.2.2.3.10, §3.3.2.3.7, §3.4.2.2.3 ... §3.15.2.2.5: "The User Property
    // is allowed to appear multiple times ... The same name is allowed to appear more than once."
    let three = [
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'1', // k = 1
        0x26, 0x00, 0x01, b'j', 0x00, 0x01, b'2', // j = 2
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'3', // k = 3
    ];
    for ctx in EVERYWHERE {
        let packet = ok(&ctx.packet(&three));
        assert_eq!(
            user_properties(ctx, packet),
            vec![pair("k", "1"), pair("j", "2"), pair("k", "3")],
            "{ctx:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Property values
// ---------------------------------------------------------------------------------------------

/// `identifier` with a one-byte value above 1 is a Protocol Error in `ctx`; 0 and 1 decode.
fn check_boolean_byte(ctx: Ctx, identifier: u8, name: &str) {
    for value in [0, 1] {
        assert!(
            decode(&ctx.packet(&[identifier, value])).is_ok(),
            "{name} {value}"
        );
    }
    for value in 2..=u8::MAX {
        assert_error!(
            err(&ctx.packet(&[identifier, value])),
            DecodeError::InvalidPropertyValue { packet, name: n, value: v }
                if packet == ctx.packet_type() && n == name && v == u32::from(value),
            PROTOCOL_ERROR
        );
    }
}

/// `property` (identifier and a zero value) is a Protocol Error in `ctx`.
fn check_zero(ctx: Ctx, property: &[u8], name: &str) {
    assert_error!(
        err(&ctx.packet(property)),
        DecodeError::InvalidPropertyValue { packet, name: n, value: 0 }
            if packet == ctx.packet_type() && n == name,
        PROTOCOL_ERROR
    );
}

#[test]
fn section_3_1_2_11_3_receive_maximum_zero_is_protocol_error() {
    check_zero(Ctx::Connect, &[0x21, 0x00, 0x00], "Receive Maximum");
    let connect = expect!(
        ok(&Ctx::Connect.packet(&[0x21, 0x00, 0x01])),
        Packet::Connect
    );
    assert_eq!(connect.properties.receive_maximum, Some(1));
}

#[test]
fn section_3_2_2_3_3_receive_maximum_zero_is_protocol_error() {
    check_zero(Ctx::ConnAck, &[0x21, 0x00, 0x00], "Receive Maximum");
    let connack = expect!(
        ok(&Ctx::ConnAck.packet(&[0x21, 0xFF, 0xFF])),
        Packet::ConnAck
    );
    assert_eq!(connack.properties.receive_maximum, Some(65_535));
}

#[test]
fn section_3_1_2_11_4_maximum_packet_size_zero_is_protocol_error() {
    check_zero(
        Ctx::Connect,
        &[0x27, 0x00, 0x00, 0x00, 0x00],
        "Maximum Packet Size",
    );
    let connect = expect!(
        ok(&Ctx::Connect.packet(&[0x27, 0x00, 0x00, 0x00, 0x01])),
        Packet::Connect
    );
    assert_eq!(connect.properties.maximum_packet_size, Some(1));
}

#[test]
fn section_3_2_2_3_6_maximum_packet_size_zero_is_protocol_error() {
    check_zero(
        Ctx::ConnAck,
        &[0x27, 0x00, 0x00, 0x00, 0x00],
        "Maximum Packet Size",
    );
    let connack = expect!(
        ok(&Ctx::ConnAck.packet(&[0x27, 0xFF, 0xFF, 0xFF, 0xFF])),
        Packet::ConnAck
    );
    assert_eq!(connack.properties.maximum_packet_size, Some(u32::MAX));
}

#[test]
fn section_3_1_2_11_6_request_response_information_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::Connect, 0x19, "Request Response Information");
}

#[test]
fn section_3_1_2_11_7_request_problem_information_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::Connect, 0x17, "Request Problem Information");
}

#[test]
fn section_3_1_3_2_3_will_payload_format_indicator_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::Will, 0x01, "Payload Format Indicator");
}

#[test]
fn section_3_3_2_3_2_payload_format_indicator_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::Publish, 0x01, "Payload Format Indicator");
}

#[test]
fn section_3_2_2_3_4_maximum_qos_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::ConnAck, 0x24, "Maximum QoS");
    for (byte, qos) in [(0x00, QoS::AtMostOnce), (0x01, QoS::AtLeastOnce)] {
        let connack = expect!(ok(&Ctx::ConnAck.packet(&[0x24, byte])), Packet::ConnAck);
        assert_eq!(connack.properties.maximum_qos, Some(qos));
    }
}

#[test]
fn section_3_2_2_3_5_retain_available_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::ConnAck, 0x25, "Retain Available");
}

#[test]
fn section_3_2_2_3_11_wildcard_subscription_available_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::ConnAck, 0x28, "Wildcard Subscription Available");
}

#[test]
fn section_3_2_2_3_12_subscription_identifiers_available_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::ConnAck, 0x29, "Subscription Identifier Available");
}

#[test]
fn section_3_2_2_3_13_shared_subscription_available_other_than_0_or_1_is_protocol_error() {
    check_boolean_byte(Ctx::ConnAck, 0x2A, "Shared Subscription Available");
}

#[test]
fn section_3_3_2_3_8_subscription_identifier_zero_is_protocol_error() {
    check_zero(Ctx::Publish, &[0x0B, 0x00], "Subscription Identifier");
}

#[test]
fn section_3_8_2_1_2_subscription_identifier_zero_is_protocol_error() {
    check_zero(Ctx::Subscribe, &[0x0B, 0x00], "Subscription Identifier");
}

#[test]
fn mqtt_3_3_2_8_topic_alias_zero_is_topic_alias_invalid() {
    // §3.3.2.3.4: "A Topic Alias of 0 is not permitted" → DISCONNECT 0x94 (Topic Alias invalid).
    assert_error!(
        err(&Ctx::Publish.packet(&[0x23, 0x00, 0x00])),
        DecodeError::TopicAliasZero,
        ReasonCode::TopicAliasInvalid
    );
    // Outside PUBLISH a Topic Alias of any value is simply not allowed (and 0x94 could not go
    // in a CONNACK).
    for ctx in [Ctx::Connect, Ctx::Will, Ctx::ConnAck] {
        assert_error!(
            err(&ctx.packet(&[0x23, 0x00, 0x00])),
            DecodeError::PropertyNotAllowed {
                name: "Topic Alias",
                ..
            },
            MALFORMED
        );
    }
    // The largest alias decodes; whether it is within Topic Alias Maximum is the session's call.
    let publish = expect!(
        ok(&Ctx::Publish.packet(&[0x23, 0xFF, 0xFF])),
        Packet::Publish
    );
    assert_eq!(publish.properties.topic_alias, Some(u16::MAX));
}

// ---------------------------------------------------------------------------------------------
// 3.1 CONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_2_1_protocol_name_must_be_mqtt() {
    for name in [&b"MQTX"[..], b"mqtt", b"MQTT ", b"MQIsdp"] {
        let wire = frame(
            0x10,
            &cat(&[
                &lp(name),           // protocol name
                &[0x05],             // protocol version 5
                &[0x02, 0x00, 0x3C], // flags, keep alive
                &[0x00],             // property length
                &[0x00, 0x01, b'c'], // client identifier
            ]),
        );
        assert_error!(
            err(&wire),
            DecodeError::UnsupportedProtocol { ref name, level: 5 } if !name.is_empty(),
            ReasonCode::UnsupportedProtocolVersion
        );
    }
    // Not even a UTF-8 string.
    assert_error!(
        err(&frame(0x10, &[0x00, 0x02, 0xFF, 0xFE, 0x05])),
        DecodeError::InvalidString {
            field: "protocol name",
            ..
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_version_is_0x84() {
    for level in [0, 1, 2, 3, 6, 7, 0x85, 0xFF] {
        let wire = frame(
            0x10,
            &[
                0x00, 0x04, b'M', b'Q', b'T', b'T',  // protocol name
                level, // protocol version
                0x02, 0x00, 0x3C, // flags, keep alive
                0x00, // property length
                0x00, 0x01, b'c', // client identifier
            ],
        );
        assert_error!(
            err(&wire),
            DecodeError::UnsupportedProtocol { level: l, .. } if l == level,
            ReasonCode::UnsupportedProtocolVersion
        );
    }
    // Version 5 is this protocol; a server may also take 4 (3.1.1, which has no properties).
    let v5 = expect!(
        ok(&connect(0x02, &[0x00], &[0x00, 0x01, b'c'])),
        Packet::Connect
    );
    assert_eq!(v5.protocol, V5);
    let v4 = frame(
        0x10,
        &[
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, b'c',
        ],
    );
    assert_eq!(
        expect!(ok(&v4), Packet::Connect).protocol,
        ProtocolVersion::V3_1_1
    );
}

#[test]
fn mqtt_3_1_2_3_reserved_flag_is_malformed() {
    for flags in [0x01, 0x03, 0xC3, 0xFF] {
        assert_error!(
            err(&connect(flags, &[0x00], &[0x00, 0x01, b'c'])),
            DecodeError::ConnectReservedFlag,
            MALFORMED
        );
    }
}

#[test]
fn mqtt_3_1_2_9_will_flag_requires_will_properties_topic_and_payload() {
    let client_id = [0x00, 0x01, b'c'];
    for payload in [
        cat(&[&client_id]),                                        // nothing of the will
        cat(&[&client_id, &[0x00]]),                               // will properties only
        cat(&[&client_id, &[0x00], &[0x00, 0x01, b'w']]),          // no will payload
        cat(&[&client_id, &[0x00], &[0x00, 0x01, b'w'], &[0x00]]), // half a payload length
    ] {
        assert_error!(
            err(&connect(0x06, &[0x00], &payload)),
            DecodeError::Truncated {
                packet: PacketType::Connect,
                ..
            },
            MALFORMED
        );
    }
    let connect = expect!(ok(&connect_with_will(&[0x00])), Packet::Connect);
    let will = connect.will.expect("a will");
    assert_eq!(will.topic, "w");
    assert_eq!(&will.payload[..], b"p");
    assert_eq!(will.properties, WillProperties::default());
}

#[test]
fn mqtt_3_1_2_11_will_qos_without_will_flag_is_malformed() {
    for flags in [0x0A, 0x12, 0x1A] {
        // clean start with will QoS 1, 2 or 3, and no will flag
        assert_error!(
            err(&connect(flags, &[0x00], &[0x00, 0x01, b'c'])),
            DecodeError::WillFlagsWithoutWill,
            MALFORMED
        );
    }
}

#[test]
fn mqtt_3_1_2_12_will_qos_3_is_malformed() {
    let will = [
        0x00, 0x01, b'c', // client identifier
        0x00, // will properties
        0x00, 0x01, b'w', // will topic
        0x00, 0x00, // empty will payload
    ];
    assert_error!(
        err(&connect(0x1E, &[0x00], &will)), // will flag, will QoS 3
        DecodeError::InvalidQoS {
            packet: PacketType::Connect,
            ..
        },
        MALFORMED
    );
    for (flags, qos) in [
        (0x06, QoS::AtMostOnce),
        (0x0E, QoS::AtLeastOnce),
        (0x16, QoS::ExactlyOnce),
    ] {
        let connect = expect!(ok(&connect(flags, &[0x00], &will)), Packet::Connect);
        assert_eq!(connect.will.unwrap().qos, qos);
    }
}

#[test]
fn mqtt_3_1_2_13_will_retain_without_will_flag_is_malformed() {
    assert_error!(
        err(&connect(0x22, &[0x00], &[0x00, 0x01, b'c'])),
        DecodeError::WillFlagsWithoutWill,
        MALFORMED
    );
    let with_will = connect(
        0x26, // will retain, will flag, clean start
        &[0x00],
        &[
            0x00, 0x01, b'c', 0x00, 0x00, 0x01, b'w', 0x00,
            0x00, // id, will props, topic, payload
        ],
    );
    assert!(
        expect!(ok(&with_will), Packet::Connect)
            .will
            .unwrap()
            .retain
    );
}

#[test]
fn mqtt_3_1_2_16_user_name_must_be_absent_when_its_flag_is_0() {
    assert_error!(
        err(&connect(
            0x02,
            &[0x00],
            &[0x00, 0x01, b'c', 0x00, 0x01, b'u']
        )),
        DecodeError::TrailingBytes {
            packet: PacketType::Connect,
            count: 3
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_2_17_user_name_must_be_present_when_its_flag_is_1() {
    assert_error!(
        err(&connect(0x82, &[0x00], &[0x00, 0x01, b'c'])),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "user name"
        },
        MALFORMED
    );
    let connect = expect!(
        ok(&connect(
            0x82,
            &[0x00],
            &[0x00, 0x01, b'c', 0x00, 0x01, b'u']
        )),
        Packet::Connect
    );
    assert_eq!(connect.username.as_deref(), Some("u"));
}

#[test]
fn mqtt_3_1_2_18_password_must_be_absent_when_its_flag_is_0() {
    let payload = [
        0x00, 0x01, b'c', // client identifier
        0x00, 0x01, b'u', // user name
        0x00, 0x01, b'p', // a password nobody announced
    ];
    assert_error!(
        err(&connect(0x82, &[0x00], &payload)),
        DecodeError::TrailingBytes {
            packet: PacketType::Connect,
            count: 3
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_2_19_password_must_be_present_when_its_flag_is_1() {
    assert_error!(
        err(&connect(
            0xC2,
            &[0x00],
            &[0x00, 0x01, b'c', 0x00, 0x01, b'u']
        )),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "password"
        },
        MALFORMED
    );
}

#[test]
fn section_3_1_2_9_password_without_user_name_is_allowed() {
    // Unlike MQTT 3.1.1 [MQTT-3.1.2-22 there], 5.0 lets a password come alone.
    let wire = connect(
        0x42, // password flag, clean start
        &[0x00],
        &[
            0x00, 0x01, b'c', // client identifier
            0x00, 0x02, 0xFF, 0x00, // password: binary, not UTF-8
        ],
    );
    let connect = expect!(ok(&wire), Packet::Connect);
    assert_eq!(connect.username, None);
    assert_eq!(connect.password.as_deref(), Some(&[0xFF, 0x00][..]));
    assert_eq!(round_trip(&Packet::Connect(connect)), wire);
}

#[test]
fn section_3_1_2_10_keep_alive_zero_is_allowed() {
    let wire = frame(
        0x10,
        &[
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, // name, version, flags
            0x00, 0x00, // keep alive 0: off
            0x00, 0x00, 0x01, b'c', // no properties, client identifier
        ],
    );
    assert_eq!(expect!(ok(&wire), Packet::Connect).keep_alive, 0);
}

#[test]
fn section_3_1_2_11_10_authentication_data_without_method_is_protocol_error() {
    assert_error!(
        err(&Ctx::Connect.packet(&[0x16, 0x00, 0x01, 0xAA])),
        DecodeError::AuthDataWithoutMethod {
            packet: PacketType::Connect
        },
        PROTOCOL_ERROR
    );
    let connect = expect!(
        ok(&Ctx::Connect.packet(&[
            0x16, 0x00, 0x01, 0xAA, // Authentication Data AA
            0x15, 0x00, 0x01, b'm', // Authentication Method "m", after the data
        ])),
        Packet::Connect
    );
    assert_eq!(
        connect.properties.authentication_method.as_deref(),
        Some("m")
    );
}

#[test]
fn mqtt_3_1_3_1_payload_fields_come_in_order() {
    let wire = frame(
        0x10,
        &[
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x05, // protocol version
            0xEE, // user name, password, will retain, will QoS 1, will, clean start
            0x00, 0x0A, // keep alive 10 s
            0x00, // property length
            0x00, 0x02, b'i', b'd', // client identifier "id"
            0x05, 0x18, 0x00, 0x00, 0x00, 0x1E, // will properties: Will Delay Interval 30 s
            0x00, 0x03, b'w', b'/', b't', // will topic "w/t"
            0x00, 0x02, 0xDE, 0xAD, // will payload DE AD
            0x00, 0x04, b'u', b's', b'e', b'r', // user name "user"
            0x00, 0x02, 0x00, 0xFF, // password 00 FF
        ],
    );
    let expected = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: s("id"),
        will: Some(Will {
            topic: s("w/t"),
            payload: Bytes::from_static(&[0xDE, 0xAD]),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                ..Default::default()
            },
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(&[0x00, 0xFF])),
        properties: ConnectProperties::default(),
    };
    assert_eq!(ok(&wire), Packet::from(expected.clone()));
    // The encoder writes the same fields in the same order.
    assert_eq!(round_trip(&Packet::from(expected)), wire);
}

#[test]
fn mqtt_3_1_3_3_client_identifier_must_be_present() {
    assert_error!(
        err(&connect(0x02, &[0x00], &[])),
        DecodeError::Truncated {
            packet: PacketType::Connect,
            field: "client identifier"
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_3_4_client_identifier_must_be_utf8() {
    assert_error!(
        err(&connect(0x02, &[0x00], &[0x00, 0x02, 0xC3, 0x28])),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "client identifier",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_3_5_short_alphanumeric_client_identifiers_are_accepted() {
    let alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for len in 1..=23 {
        for start in [0, 10, 36, 62 - len] {
            let client_id = &alphabet[start..start + len];
            let connect = expect!(
                ok(&connect(0x02, &[0x00], &lp(client_id.as_bytes()))),
                Packet::Connect
            );
            assert_eq!(connect.client_id, client_id);
        }
    }
    // Longer ones and other characters are the server's choice; the codec passes them on.
    let long = "client-with/a.long_identifier:0123456789";
    let connect = expect!(
        ok(&connect(0x02, &[0x00], &lp(long.as_bytes()))),
        Packet::Connect
    );
    assert_eq!(connect.client_id, long);
}

#[test]
fn mqtt_3_1_3_6_empty_client_identifier_decodes() {
    // Accepting it is the server's choice; in 5.0 even with Clean Start 0.
    for flags in [0x00, 0x02] {
        let connect = expect!(ok(&connect(flags, &[0x00], &[0x00, 0x00])), Packet::Connect);
        assert_eq!(connect.client_id, "");
    }
}

#[test]
fn mqtt_3_1_3_10_will_user_properties_keep_their_order() {
    let wire = connect_with_will(&props(&[
        0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'1', // b = 1
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'2', // a = 2
        0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'3', // b = 3
    ]));
    let connect = expect!(ok(&wire), Packet::Connect);
    let expected = vec![pair("b", "1"), pair("a", "2"), pair("b", "3")];
    assert_eq!(
        connect.will.as_ref().unwrap().properties.user_properties,
        expected
    );
    assert_eq!(round_trip(&Packet::Connect(connect)), wire);
}

#[test]
fn mqtt_3_1_3_11_will_topic_must_be_utf8() {
    let wire = connect(
        0x06,
        &[0x00],
        &[
            0x00, 0x01, b'c', // client identifier
            0x00, // will properties
            0x00, 0x01, 0xFF, // will topic: not UTF-8
            0x00, 0x00, // will payload
        ],
    );
    assert_error!(
        err(&wire),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "will topic",
            ..
        },
        MALFORMED
    );
    // It is a topic name, so it cannot be empty [MQTT-4.7.3-1] nor hold wildcards [MQTT-4.7.0-1].
    for (topic, expected) in [
        (&b""[..], TopicError::Empty),
        (b"a/+", TopicError::WildcardInName),
        (b"#", TopicError::WildcardInName),
    ] {
        let wire = connect(
            0x06,
            &[0x00],
            &cat(&[&[0x00, 0x01, b'c', 0x00], &lp(topic), &[0x00, 0x00]]),
        );
        assert_error!(
            err(&wire),
            DecodeError::InvalidTopicName {
                packet: PacketType::Connect,
                field: "will topic",
                error,
                ..
            } if error == expected,
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn mqtt_3_1_3_12_user_name_must_be_utf8() {
    assert_error!(
        err(&connect(
            0x82,
            &[0x00],
            &[0x00, 0x01, b'c', 0x00, 0x03, b'u', 0x00, b'x']
        )),
        DecodeError::InvalidString {
            packet: PacketType::Connect,
            field: "user name",
            error: StringError::NullCharacter
        },
        MALFORMED
    );
}

#[test]
fn section_3_1_3_4_will_payload_is_binary_data() {
    let wire = connect(
        0x06,
        &[0x00],
        &[
            0x00, 0x01, b'c', // client identifier
            0x00, // will properties
            0x00, 0x01, b'w', // will topic
            0x00, 0x04, 0x00, 0xFF, 0xED, 0xA0, // will payload: NUL, 0xFF, a surrogate prefix
        ],
    );
    let connect = expect!(ok(&wire), Packet::Connect);
    assert_eq!(
        &connect.will.unwrap().payload[..],
        &[0x00, 0xFF, 0xED, 0xA0]
    );
}

#[test]
fn section_3_1_3_2_will_properties_decode_into_their_fields() {
    let wire = connect_with_will(&props(&[
        0x18, 0x00, 0x00, 0x00, 0x05, // Will Delay Interval 5
        0x01, 0x01, // Payload Format Indicator: UTF-8
        0x02, 0x00, 0x00, 0x01, 0x00, // Message Expiry Interval 256
        0x03, 0x00, 0x01, b't', // Content Type "t"
        0x08, 0x00, 0x01, b'r', // Response Topic "r"
        0x09, 0x00, 0x01, 0x07, // Correlation Data 07
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property k = v
    ]));
    let connect = expect!(ok(&wire), Packet::Connect);
    assert_eq!(
        connect.will.as_ref().unwrap().properties,
        WillProperties {
            will_delay_interval: Some(5),
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(256),
            content_type: Some(s("t")),
            response_topic: Some(s("r")),
            correlation_data: Some(Bytes::from_static(&[0x07])),
            user_properties: vec![pair("k", "v")],
        }
    );
    round_trip(&Packet::Connect(connect));
}

// ---------------------------------------------------------------------------------------------
// 3.2 CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_2_2_1_connack_reserved_flags_are_malformed() {
    for flags in 0x02..=0xFFu8 {
        assert_error!(
            err(&frame(0x20, &[flags, 0x00, 0x00])),
            DecodeError::ConnAckReservedFlags { flags: f } if f == flags,
            MALFORMED
        );
    }
    let present = expect!(ok(&frame(0x20, &[0x01, 0x00, 0x00])), Packet::ConnAck);
    assert!(present.session_present);
    // The encoder sets bit 0 at most.
    let wire = round_trip(&Packet::from(ConnAck {
        session_present: true,
        ..Default::default()
    }));
    assert_eq!(wire, [0x20, 0x03, 0x01, 0x00, 0x00]);
}

#[test]
fn mqtt_3_2_2_6_session_present_with_a_failure_code_is_refused_and_never_encoded() {
    // Session Present 1 with 0x87 Not authorized.
    assert_error!(
        err(&frame(0x20, &[0x01, 0x87, 0x00])),
        DecodeError::SessionPresentOnRefusal,
        PROTOCOL_ERROR
    );
    let wire = encode(&Packet::from(ConnAck {
        session_present: true,
        reason_code: ReasonCode::NotAuthorized,
        ..Default::default()
    }));
    assert_eq!(wire, [0x20, 0x03, 0x00, 0x87, 0x00]);
}

/// Decodes `wire(code)` for every byte: the codes in `allowed` decode to themselves and encode
/// back to the same bytes; every other one is a Protocol Error.
fn check_reason_codes(
    packet: PacketType,
    allowed: &[u8],
    wire: impl Fn(u8) -> Vec<u8>,
    code_of: impl Fn(&Packet) -> ReasonCode,
) {
    for code in 0..=u8::MAX {
        let bytes = wire(code);
        if allowed.contains(&code) {
            let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{packet} {code:#04x}: {e:?}"));
            assert_eq!(code_of(&decoded) as u8, code, "{packet}");
            assert_eq!(round_trip(&decoded), bytes, "{packet} {code:#04x}");
        } else {
            assert_error!(
                err(&bytes),
                DecodeError::InvalidReasonCode { packet: p, code: c } if p == packet && c == code,
                PROTOCOL_ERROR
            );
        }
    }
}

/// Table 3-1.
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];

#[test]
fn mqtt_3_2_2_8_connack_reason_code_must_be_in_table_3_1() {
    check_reason_codes(
        PacketType::ConnAck,
        CONNACK_CODES,
        |code| frame(0x20, &[0x00, code, 0x00]), // flags, reason code, property length
        |p| expect!(p, Packet::ConnAck).reason_code,
    );
}

#[test]
fn mqtt_3_2_2_10_subscribe_may_request_any_qos() {
    // A server without QoS 1 or 2 still accepts the request; it grants less in SUBACK.
    for options in [0x00, 0x01, 0x02] {
        let subscribe = expect!(ok(&subscribe_one(b"a", options)), Packet::Subscribe);
        assert_eq!(subscribe.subscriptions[0].options.qos as u8, options);
    }
}

#[test]
fn section_3_2_2_3_connack_properties_decode_into_their_fields() {
    let wire = connack_with(&props(&[
        0x11, 0x00, 0x00, 0x00, 0x0A, // Session Expiry Interval 10
        0x12, 0x00, 0x01, b'x', // Assigned Client Identifier "x"
        0x13, 0x00, 0x1E, // Server Keep Alive 30
        0x15, 0x00, 0x01, b'm', // Authentication Method "m"
        0x16, 0x00, 0x01, 0x01, // Authentication Data 01
        0x1A, 0x00, 0x01, b'i', // Response Information "i"
        0x1C, 0x00, 0x01, b'h', // Server Reference "h"
        0x1F, 0x00, 0x01, b'r', // Reason String "r"
        0x21, 0x00, 0x14, // Receive Maximum 20
        0x22, 0x00, 0x05, // Topic Alias Maximum 5
        0x24, 0x00, // Maximum QoS 0
        0x25, 0x00, // Retain Available 0
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property k = v
        0x27, 0x00, 0x00, 0x10, 0x00, // Maximum Packet Size 4096
        0x28, 0x00, // Wildcard Subscription Available 0
        0x29, 0x01, // Subscription Identifier Available 1
        0x2A, 0x00, // Shared Subscription Available 0
    ]));
    let connack = expect!(ok(&wire), Packet::ConnAck);
    assert_eq!(
        connack.properties,
        ConnAckProperties {
            session_expiry_interval: Some(10),
            receive_maximum: Some(20),
            maximum_qos: Some(QoS::AtMostOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(4096),
            assigned_client_identifier: Some(s("x")),
            topic_alias_maximum: Some(5),
            reason_string: Some(s("r")),
            user_properties: vec![pair("k", "v")],
            wildcard_subscription_available: Some(false),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(30),
            response_information: Some(s("i")),
            server_reference: Some(s("h")),
            authentication_method: Some(s("m")),
            authentication_data: Some(Bytes::from_static(&[0x01])),
        }
    );
    // This order is the encoder's own, so the bytes come back unchanged.
    assert_eq!(round_trip(&Packet::ConnAck(connack)), wire);
}

// ---------------------------------------------------------------------------------------------
// 3.3 PUBLISH
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_3_1_1_dup_is_sent_on_redelivery() {
    let mut publish = Publish::new(s("a"), Bytes::new());
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = Some(id(1));
    publish.dup = true;
    let wire = round_trip(&Packet::from(publish));
    assert_eq!(wire[0], 0x3A); // PUBLISH, DUP, QoS 1
}

#[test]
fn mqtt_3_3_1_2_dup_on_qos_0_is_malformed() {
    // The receiver's side is unspecified; this codec refuses it on the first byte.
    for first in [0x38, 0x39] {
        let mut buf = BytesMut::from(&[first][..]);
        assert_error!(
            Decoder::new(V5).decode(&mut buf).unwrap_err(),
            DecodeError::DupOnQoS0,
            MALFORMED
        );
    }
    // The encoder never sets it at QoS 0.
    let mut publish = Publish::new(s("a"), Bytes::new());
    publish.dup = true;
    let wire = encode(&Packet::from(publish));
    assert_eq!(wire[0], 0x30);
}

#[test]
fn mqtt_3_3_1_4_qos_3_is_malformed() {
    for first in [0x36, 0x37, 0x3E, 0x3F] {
        // Refused on the first byte, before the body arrives.
        let mut buf = BytesMut::from(&[first][..]);
        assert_error!(
            Decoder::new(V5).decode(&mut buf).unwrap_err(),
            DecodeError::InvalidQoS {
                packet: PacketType::Publish,
                ..
            },
            MALFORMED
        );
    }
    // Every other combination of DUP, QoS and RETAIN decodes.
    for (first, qos, retain) in [
        (0x30, QoS::AtMostOnce, false),
        (0x31, QoS::AtMostOnce, true),
        (0x3A, QoS::AtLeastOnce, false),
        (0x3D, QoS::ExactlyOnce, true),
    ] {
        let body: &[u8] = if qos == QoS::AtMostOnce {
            &[0x00, 0x01, b'a', 0x00]
        } else {
            &[0x00, 0x01, b'a', 0x00, 0x09, 0x00]
        };
        let publish = expect!(ok(&frame(first, body)), Packet::Publish);
        assert_eq!((publish.qos, publish.retain), (qos, retain));
    }
}

#[test]
fn mqtt_3_3_2_1_topic_name_must_be_a_utf8_string() {
    assert_error!(
        err(&frame(0x30, &[0x00, 0x02, b'a', 0xFF, 0x00])),
        DecodeError::InvalidString {
            packet: PacketType::Publish,
            field: "topic name",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
}

#[test]
fn section_3_3_2_1_empty_topic_without_topic_alias_is_protocol_error() {
    assert_error!(
        err(&frame(0x30, &[0x00, 0x00, 0x00])), // empty topic, no properties
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL_ERROR
    );
    // Other properties do not stand in for an alias.
    assert_error!(
        err(&frame(0x30, &[0x00, 0x00, 0x02, 0x01, 0x01])),
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL_ERROR
    );
}

#[test]
fn section_3_3_2_3_4_empty_topic_with_topic_alias_is_allowed() {
    let wire = frame(
        0x32,
        &[
            0x00, 0x00, // empty topic name
            0x00, 0x05, // packet identifier 5
            0x03, 0x23, 0x00, 0x07, // Topic Alias 7
            b'x', // payload
        ],
    );
    let publish = expect!(ok(&wire), Packet::Publish);
    assert_eq!(publish.topic, "");
    assert_eq!(publish.properties.topic_alias, Some(7));
    assert_eq!(round_trip(&Packet::Publish(publish)), wire);
}

#[test]
fn mqtt_3_3_2_2_topic_name_with_wildcard_is_protocol_error() {
    for topic in [&b"+"[..], b"#", b"a/+", b"a/#", b"a+b", b"sport/tennis#"] {
        assert_error!(
            err(&frame(0x30, &cat(&[&lp(topic), &[0x00]]))),
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
fn mqtt_3_3_2_4_payload_format_indicator_is_kept_as_sent() {
    // 0, 1 and absent stay apart, so that a server can forward exactly what it got.
    for (properties, expected) in [
        (&[0x00][..], None),
        (&[0x02, 0x01, 0x00], Some(false)),
        (&[0x02, 0x01, 0x01], Some(true)),
    ] {
        let wire = publish_with(properties);
        let publish = expect!(ok(&wire), Packet::Publish);
        assert_eq!(publish.properties.payload_format_indicator, expected);
        assert_eq!(round_trip(&Packet::Publish(publish)), wire);
    }
}

#[test]
fn mqtt_3_3_2_13_response_topic_must_be_utf8() {
    assert_error!(
        err(&publish_with(&props(&[0x08, 0x00, 0x01, 0xFF]))),
        DecodeError::InvalidString {
            packet: PacketType::Publish,
            field: "Response Topic",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_3_2_14_response_topic_with_wildcard_is_protocol_error() {
    // In PUBLISH and in the will (§3.1.3.2.6 says the same).
    for ctx in [Ctx::Publish, Ctx::Will] {
        for topic in [&b"r/+"[..], b"r/#", b"#"] {
            assert_error!(
                err(&ctx.packet(&cat(&[&[0x08], &lp(topic)]))),
                DecodeError::InvalidTopicName {
                    field: "Response Topic",
                    error: TopicError::WildcardInName,
                    ..
                },
                PROTOCOL_ERROR
            );
        }
    }
}

#[test]
fn mqtt_3_3_2_16_correlation_data_is_kept_byte_for_byte() {
    let wire = publish_with(&props(&[0x09, 0x00, 0x04, 0x00, 0xFF, 0x00, 0x80]));
    let publish = expect!(ok(&wire), Packet::Publish);
    assert_eq!(
        publish.properties.correlation_data.as_deref(),
        Some(&[0x00, 0xFF, 0x00, 0x80][..])
    );
    assert_eq!(round_trip(&Packet::Publish(publish)), wire);
}

#[test]
fn mqtt_3_3_2_17_user_properties_are_all_kept() {
    let wire = publish_with(&props(&[
        0x26, 0x00, 0x01, b'k', 0x00, 0x00, // k = ""
        0x26, 0x00, 0x00, 0x00, 0x01, b'v', // "" = v
        0x26, 0x00, 0x01, b'k', 0x00, 0x00, // k = "" again
    ]));
    let publish = expect!(ok(&wire), Packet::Publish);
    assert_eq!(
        publish.properties.user_properties,
        vec![pair("k", ""), pair("", "v"), pair("k", "")]
    );
    assert_eq!(round_trip(&Packet::Publish(publish)), wire);
}

#[test]
fn mqtt_3_3_2_18_user_properties_keep_their_order() {
    let wire = publish_with(&props(&[
        0x26, 0x00, 0x01, b'z', 0x00, 0x01, b'1', // z = 1
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'2', // a = 2
        0x26, 0x00, 0x01, b'm', 0x00, 0x01, b'3', // m = 3
    ]));
    let publish = expect!(ok(&wire), Packet::Publish);
    let names: Vec<&str> = publish
        .properties
        .user_properties
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(names, ["z", "a", "m"]);
    assert_eq!(round_trip(&Packet::Publish(publish)), wire);
}

#[test]
fn mqtt_3_3_2_19_content_type_must_be_utf8() {
    assert_error!(
        err(&publish_with(&props(&[0x03, 0x00, 0x02, b't', 0x00]))),
        DecodeError::InvalidString {
            packet: PacketType::Publish,
            field: "Content Type",
            error: StringError::NullCharacter
        },
        MALFORMED
    );
}

#[test]
fn section_3_3_2_3_publish_properties_decode_into_their_fields() {
    let wire = frame(
        0x34,
        &[
            0x00, 0x03, b'a', b'/', b'b', // topic name "a/b"
            0x12, 0x34, // packet identifier 0x1234
            0x1F, // property length 31
            0x01, 0x01, // Payload Format Indicator: UTF-8
            0x02, 0x00, 0x00, 0x00, 0x3C, // Message Expiry Interval 60
            0x03, 0x00, 0x01, b't', // Content Type "t"
            0x08, 0x00, 0x01, b'r', // Response Topic "r"
            0x09, 0x00, 0x01, 0x42, // Correlation Data 42
            0x0B, 0x01, // Subscription Identifier 1
            0x0B, 0x02, // Subscription Identifier 2
            0x23, 0x00, 0x03, // Topic Alias 3
            0x26, 0x00, 0x00, 0x00, 0x00, // User Property "" = ""
            b'h', b'i', // payload
        ],
    );
    let publish = expect!(ok(&wire), Packet::Publish);
    assert_eq!(
        publish,
        Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: s("a/b"),
            packet_id: Some(id(0x1234)),
            properties: PublishProperties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(60),
                topic_alias: Some(3),
                response_topic: Some(s("r")),
                correlation_data: Some(Bytes::from_static(&[0x42])),
                user_properties: vec![pair("", "")],
                subscription_identifiers: vec![1, 2],
                content_type: Some(s("t")),
            },
            payload: Bytes::from_static(b"hi"),
        }
    );
    assert_eq!(round_trip(&Packet::Publish(publish)), wire);
}

#[test]
fn section_3_3_3_payload_is_the_rest_of_the_packet_and_may_be_empty() {
    let empty = expect!(ok(&frame(0x30, &[0x00, 0x01, b'a', 0x00])), Packet::Publish);
    assert!(empty.payload.is_empty());
    // The payload has no length of its own: it is whatever the Remaining Length leaves.
    let wire = frame(0x30, &[0x00, 0x01, b'a', 0x00, 0x00, 0x00, 0x00, 0x05]);
    let publish = expect!(ok(&wire), Packet::Publish);
    assert_eq!(&publish.payload[..], &[0x00, 0x00, 0x00, 0x05]);
}

// ---------------------------------------------------------------------------------------------
// 3.4 - 3.7 PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

/// An acknowledgement type, its first byte, and the `Packet` variant that holds it.
type AckKind = (PacketType, u8, fn(Ack) -> Packet);

/// The four acknowledgements.
fn acks() -> [AckKind; 4] {
    [
        (PacketType::PubAck, 0x40, Packet::PubAck),
        (PacketType::PubRec, 0x50, Packet::PubRec),
        (PacketType::PubRel, 0x62, Packet::PubRel),
        (PacketType::PubComp, 0x70, Packet::PubComp),
    ]
}

fn ack_of(packet: &Packet) -> &Ack {
    match packet {
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => a,
        other => panic!("not an acknowledgement: {other:?}"),
    }
}

#[test]
fn section_3_4_2_1_remaining_length_2_means_success_without_properties() {
    // Also §3.5.2.1, §3.6.2.1, §3.7.2.1.
    for (_, first, variant) in acks() {
        let wire = [first, 0x02, 0x12, 0x34];
        assert_eq!(ok(&wire), variant(Ack::new(id(0x1234))));
        // And the encoder uses this short form for Success without properties: 4 bytes.
        assert_eq!(round_trip(&variant(Ack::new(id(0x1234)))), wire);
    }
}

#[test]
fn section_3_4_2_2_1_remaining_length_3_means_no_properties() {
    // "If the Remaining Length is less than 4 there is no Property Length and the value of 0 is
    // used." Also §3.5.2.2.1, §3.6.2.2.1, §3.7.2.2.1.
    for (_, first, variant) in acks() {
        let code = if first == 0x62 || first == 0x70 {
            ReasonCode::PacketIdentifierNotFound
        } else {
            ReasonCode::NoMatchingSubscribers
        };
        let wire = [first, 0x03, 0x00, 0x01, code as u8];
        assert_eq!(ok(&wire), variant(Ack::with_reason(id(1), code)));
        assert_eq!(round_trip(&variant(Ack::with_reason(id(1), code))), wire);
        // Success and a Property Length of 0 is the long way of saying the short form.
        let long = [first, 0x04, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(ok(&long), variant(Ack::new(id(1))));
    }
}

#[test]
fn section_3_4_2_2_acknowledgement_properties_are_encoded_in_full() {
    for (_, first, variant) in acks() {
        let ack = Ack {
            packet_id: id(1),
            reason_code: ReasonCode::Success,
            properties: AckProperties {
                reason_string: Some(s("x")),
                user_properties: vec![pair("k", "v")],
            },
        };
        let wire = round_trip(&variant(ack));
        assert_eq!(
            wire,
            [
                first, 0x0F, // remaining length 15
                0x00, 0x01, // packet identifier
                0x00, // reason code: Success, written because properties follow
                0x0B, // property length 11
                0x1F, 0x00, 0x01, b'x', // Reason String "x"
                0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property k = v
            ]
        );
    }
}

/// Table 3-4 (PUBACK) and table 3-5 (PUBREC).
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// Table 3-6 (PUBREL) and table 3-7 (PUBCOMP).
const PUBREL_CODES: &[u8] = &[0x00, 0x92];

fn check_ack_codes(first: u8, packet: PacketType, allowed: &[u8]) {
    // The three-byte form [reason code, no properties] ...
    check_reason_codes(
        packet,
        allowed,
        |code| {
            if code == 0 {
                frame(first, &[0x00, 0x01]) // Success alone has a shorter form still
            } else {
                frame(first, &[0x00, 0x01, code])
            }
        },
        |p| ack_of(p).reason_code,
    );
    // ... and the full form with properties.
    for code in 0..=u8::MAX {
        let wire = frame(
            first,
            &[
                0x00, 0x01, code, 0x04, 0x1F, 0x00, 0x01, b'r', // id, code, Reason String "r"
            ],
        );
        if allowed.contains(&code) {
            assert_eq!(ack_of(&ok(&wire)).reason_code as u8, code);
        } else {
            assert_error!(
                err(&wire),
                DecodeError::InvalidReasonCode { packet: p, code: c } if p == packet && c == code,
                PROTOCOL_ERROR
            );
        }
    }
}

#[test]
fn mqtt_3_4_2_1_puback_reason_code_must_be_in_table_3_4() {
    check_ack_codes(0x40, PacketType::PubAck, PUBACK_CODES);
}

#[test]
fn mqtt_3_5_2_1_pubrec_reason_code_must_be_in_table_3_5() {
    check_ack_codes(0x50, PacketType::PubRec, PUBACK_CODES);
}

#[test]
fn mqtt_3_6_2_1_pubrel_reason_code_must_be_in_table_3_6() {
    check_ack_codes(0x62, PacketType::PubRel, PUBREL_CODES);
}

#[test]
fn mqtt_3_7_2_1_pubcomp_reason_code_must_be_in_table_3_7() {
    check_ack_codes(0x70, PacketType::PubComp, PUBREL_CODES);
}

#[test]
fn mqtt_3_6_1_1_pubrel_flags_must_be_0010() {
    assert_only_flags(PacketType::PubRel, 0x62, &[0x00, 0x01]);
    assert_eq!(
        round_trip(&Packet::PubRel(Ack::new(id(1)))),
        [0x62, 0x02, 0x00, 0x01]
    );
}

// ---------------------------------------------------------------------------------------------
// 3.8 SUBSCRIBE
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_8_1_1_subscribe_flags_must_be_0010() {
    assert_only_flags(
        PacketType::Subscribe,
        0x82,
        &[0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x00],
    );
}

#[test]
fn mqtt_3_8_3_1_topic_filter_must_be_a_utf8_string() {
    assert_error!(
        err(&subscribe_one(&[b'a', 0xC0, 0x80], 0x00)), // overlong NUL
        DecodeError::InvalidString {
            packet: PacketType::Subscribe,
            field: "topic filter",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    // A filter whose options byte is missing runs past the end.
    assert_error!(
        err(&frame(0x82, &[0x00, 0x01, 0x00, 0x00, 0x01, b'a'])),
        DecodeError::Truncated {
            packet: PacketType::Subscribe,
            field: "subscription options"
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_8_3_2_subscribe_without_topic_filter_is_protocol_error() {
    for properties in [&[0x00][..], &[0x02, 0x0B, 0x01]] {
        assert_error!(
            err(&frame(0x82, &cat(&[&[0x00, 0x01], properties]))),
            DecodeError::EmptyPayload {
                packet: PacketType::Subscribe
            },
            PROTOCOL_ERROR
        );
    }
    // The encoder refuses to send one.
    let empty = Subscribe {
        packet_id: id(1),
        properties: SubscribeProperties::default(),
        subscriptions: vec![],
    };
    let mut buf = BytesMut::new();
    assert!(matches!(
        Packet::from(empty).encode(V5, &mut buf),
        Err(EncodeError::Empty {
            packet: PacketType::Subscribe
        })
    ));
}

#[test]
fn mqtt_3_8_3_4_no_local_on_shared_subscription_is_protocol_error() {
    assert_error!(
        err(&subscribe_one(b"$share/g/a", 0x04)), // No Local
        DecodeError::NoLocalOnSharedSubscription { ref filter } if filter == "$share/g/a",
        PROTOCOL_ERROR
    );
    // The same options on an ordinary filter, and a shared filter without No Local, decode.
    let plain = expect!(ok(&subscribe_one(b"a", 0x04)), Packet::Subscribe);
    assert!(plain.subscriptions[0].options.no_local);
    assert!(decode(&subscribe_one(b"$share/g/a", 0x00)).is_ok());
    // "$sharex/..." is not a shared subscription.
    assert!(decode(&subscribe_one(b"$sharex/g/a", 0x04)).is_ok());
}

#[test]
fn mqtt_3_8_3_5_reserved_option_bits_are_malformed() {
    for options in [0x40, 0x80, 0xC0, 0x41, 0xEE] {
        assert_error!(
            err(&subscribe_one(b"a", options)),
            DecodeError::ReservedSubscriptionOptions { options: o } if o == options,
            MALFORMED
        );
    }
    // The encoder leaves them 0.
    let subscribe = Subscribe {
        packet_id: id(1),
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: s("a"),
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        }],
    };
    let wire = round_trip(&Packet::from(subscribe));
    assert_eq!(*wire.last().unwrap(), 0x2E); // 0b0010_1110
}

#[test]
fn section_3_8_3_1_maximum_qos_3_is_protocol_error() {
    for options in [0x03, 0x0F, 0x2F] {
        assert_error!(
            err(&subscribe_one(b"a", options)),
            DecodeError::InvalidQoS {
                packet: PacketType::Subscribe,
                ..
            },
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn section_3_8_3_1_retain_handling_3_is_protocol_error() {
    for options in [0x30, 0x31, 0x3E] {
        assert_error!(
            err(&subscribe_one(b"a", options)),
            DecodeError::InvalidRetainHandling,
            PROTOCOL_ERROR
        );
    }
}

#[test]
fn section_3_8_3_1_subscription_options_bits() {
    for (options, expected) in [
        (
            0x00,
            (
                QoS::AtMostOnce,
                false,
                false,
                RetainHandling::SendAtSubscribe,
            ),
        ),
        (
            0x01,
            (
                QoS::AtLeastOnce,
                false,
                false,
                RetainHandling::SendAtSubscribe,
            ),
        ),
        (
            0x06,
            (
                QoS::ExactlyOnce,
                true,
                false,
                RetainHandling::SendAtSubscribe,
            ),
        ),
        (
            0x08,
            (
                QoS::AtMostOnce,
                false,
                true,
                RetainHandling::SendAtSubscribe,
            ),
        ),
        (
            0x10,
            (QoS::AtMostOnce, false, false, RetainHandling::SendIfNew),
        ),
        (
            0x2D,
            (QoS::AtLeastOnce, true, true, RetainHandling::DoNotSend),
        ),
    ] {
        let wire = subscribe_one(b"a/b", options);
        let subscribe = expect!(ok(&wire), Packet::Subscribe);
        let o = subscribe.subscriptions[0].options;
        assert_eq!(
            (o.qos, o.no_local, o.retain_as_published, o.retain_handling),
            expected,
            "options {options:#04x}"
        );
        assert_eq!(round_trip(&Packet::Subscribe(subscribe)), wire);
    }
}

#[test]
fn section_3_8_3_subscribe_carries_several_filters_in_order() {
    let wire = frame(
        0x82,
        &[
            0x00, 0x0A, // packet identifier 10
            0x02, 0x0B, 0x07, // Subscription Identifier 7
            0x00, 0x01, b'b', 0x01, // "b", QoS 1
            0x00, 0x03, b'a', b'/', b'#', 0x02, // "a/#", QoS 2
            0x00, 0x01, b'+', 0x00, // "+", QoS 0
        ],
    );
    let subscribe = expect!(ok(&wire), Packet::Subscribe);
    let filters: Vec<&str> = subscribe
        .subscriptions
        .iter()
        .map(|s| s.filter.as_str())
        .collect();
    assert_eq!(filters, ["b", "a/#", "+"]);
    assert_eq!(subscribe.properties.subscription_identifier, Some(7));
    assert_eq!(round_trip(&Packet::Subscribe(subscribe)), wire);
}

// ---------------------------------------------------------------------------------------------
// 3.9 SUBACK
// ---------------------------------------------------------------------------------------------

/// Table 3-8.
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];

#[test]
fn mqtt_3_9_3_2_suback_reason_codes_must_be_in_table_3_8() {
    check_reason_codes(
        PacketType::SubAck,
        SUBACK_CODES,
        |code| frame(0x90, &[0x00, 0x01, 0x00, code]), // id, no properties, one code
        |p| match p {
            Packet::SubAck(a) => a.reason_codes[0],
            other => panic!("{other:?}"),
        },
    );
    // A bad code anywhere in the list.
    assert_error!(
        err(&frame(0x90, &[0x00, 0x01, 0x00, 0x00, 0x01, 0x03])),
        DecodeError::InvalidReasonCode {
            packet: PacketType::SubAck,
            code: 0x03
        },
        PROTOCOL_ERROR
    );
}

#[test]
fn mqtt_3_9_3_1_suback_reason_codes_keep_their_order() {
    let wire = frame(
        0x90,
        &[
            0x00, 0x02, // packet identifier
            0x00, // no properties
            0x02, 0x80, 0x00, 0xA2, // Granted QoS 2, Unspecified error, QoS 0, no wildcards
        ],
    );
    let suback = expect!(ok(&wire), Packet::SubAck);
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::WildcardSubscriptionsNotSupported,
        ]
    );
    assert_eq!(round_trip(&Packet::SubAck(suback)), wire);
}

#[test]
fn section_3_9_3_suback_needs_a_reason_code() {
    assert_error!(
        err(&frame(0x90, &[0x00, 0x01, 0x00])),
        DecodeError::EmptyPayload {
            packet: PacketType::SubAck
        },
        PROTOCOL_ERROR
    );
}

// ---------------------------------------------------------------------------------------------
// 3.10 UNSUBSCRIBE, 3.11 UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_10_1_1_unsubscribe_flags_must_be_0010() {
    assert_only_flags(
        PacketType::Unsubscribe,
        0xA2,
        &[0x00, 0x01, 0x00, 0x00, 0x01, b'a'],
    );
}

#[test]
fn mqtt_3_10_3_1_unsubscribe_topic_filters_are_utf8_strings() {
    assert_error!(
        err(&unsubscribe_one(&[0xED, 0xBF, 0xBF])), // U+DFFF
        DecodeError::InvalidString {
            packet: PacketType::Unsubscribe,
            field: "topic filter",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    // Packed back to back, no options byte.
    let wire = frame(
        0xA2,
        &[
            0x00, 0x01, 0x00, // packet identifier, no properties
            0x00, 0x01, b'a', // "a"
            0x00, 0x03, b'b', b'/', b'+', // "b/+"
            0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/',
            b'c', // "$share/g/c"
        ],
    );
    let unsubscribe = expect!(ok(&wire), Packet::Unsubscribe);
    assert_eq!(unsubscribe.filters, [s("a"), s("b/+"), s("$share/g/c")]);
    assert_eq!(round_trip(&Packet::Unsubscribe(unsubscribe)), wire);
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_topic_filter_is_protocol_error() {
    assert_error!(
        err(&frame(0xA2, &[0x00, 0x01, 0x00])),
        DecodeError::EmptyPayload {
            packet: PacketType::Unsubscribe
        },
        PROTOCOL_ERROR
    );
    let mut buf = BytesMut::new();
    let empty = Unsubscribe {
        packet_id: id(1),
        properties: UnsubscribeProperties::default(),
        filters: vec![],
    };
    assert!(matches!(
        Packet::from(empty).encode(V5, &mut buf),
        Err(EncodeError::Empty {
            packet: PacketType::Unsubscribe
        })
    ));
}

/// Table 3-9.
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

#[test]
fn mqtt_3_11_3_2_unsuback_reason_codes_must_be_in_table_3_9() {
    check_reason_codes(
        PacketType::UnsubAck,
        UNSUBACK_CODES,
        |code| frame(0xB0, &[0x00, 0x01, 0x00, code]),
        |p| match p {
            Packet::UnsubAck(a) => a.reason_codes[0],
            other => panic!("{other:?}"),
        },
    );
}

#[test]
fn mqtt_3_11_3_1_unsuback_reason_codes_keep_their_order() {
    let wire = frame(0xB0, &[0x00, 0x03, 0x00, 0x11, 0x00, 0x87]);
    let unsuback = expect!(ok(&wire), Packet::UnsubAck);
    assert_eq!(
        unsuback.reason_codes,
        [
            ReasonCode::NoSubscriptionExisted,
            ReasonCode::Success,
            ReasonCode::NotAuthorized
        ]
    );
    assert_eq!(round_trip(&Packet::UnsubAck(unsuback)), wire);
}

#[test]
fn section_3_11_3_unsuback_needs_a_reason_code() {
    assert_error!(
        err(&frame(0xB0, &[0x00, 0x01, 0x00])),
        DecodeError::EmptyPayload {
            packet: PacketType::UnsubAck
        },
        PROTOCOL_ERROR
    );
}

// ---------------------------------------------------------------------------------------------
// 3.12 PINGREQ, 3.13 PINGRESP
// ---------------------------------------------------------------------------------------------

#[test]
fn section_3_12_pingreq_has_no_variable_header_or_payload() {
    assert_eq!(ok(&[0xC0, 0x00]), Packet::PingReq);
    assert_eq!(round_trip(&Packet::PingReq), [0xC0, 0x00]);
    assert_error!(
        err(&[0xC0, 0x01, 0x00]),
        DecodeError::TrailingBytes {
            packet: PacketType::PingReq,
            count: 1
        },
        MALFORMED
    );
}

#[test]
fn section_3_13_pingresp_has_no_variable_header_or_payload() {
    assert_eq!(ok(&[0xD0, 0x00]), Packet::PingResp);
    assert_eq!(round_trip(&Packet::PingResp), [0xD0, 0x00]);
    assert_error!(
        err(&[0xD0, 0x02, 0x00, 0x00]),
        DecodeError::TrailingBytes {
            packet: PacketType::PingResp,
            count: 2
        },
        MALFORMED
    );
}

// ---------------------------------------------------------------------------------------------
// 3.14 DISCONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_14_1_1_disconnect_reserved_bits_are_malformed() {
    assert_only_flags(PacketType::Disconnect, 0xE0, &[]);
    assert_only_flags(PacketType::Disconnect, 0xE0, &[0x04, 0x00]);
}

#[test]
fn section_3_14_2_1_remaining_length_0_is_normal_disconnection() {
    assert_eq!(ok(&[0xE0, 0x00]), Packet::from(Disconnect::default()));
    // And the encoder uses this two-byte form for 0x00 without properties.
    assert_eq!(
        round_trip(&Packet::from(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION
        ))),
        [0xE0, 0x00]
    );
}

#[test]
fn section_3_14_2_2_1_remaining_length_1_means_no_properties() {
    // "If the Remaining Length is less than 2, a value of 0 is used."
    let wire = [0xE0, 0x01, 0x04];
    let disconnect = Disconnect::new(ReasonCode::DisconnectWithWillMessage);
    assert_eq!(ok(&wire), Packet::from(disconnect.clone()));
    assert_eq!(round_trip(&Packet::from(disconnect)), wire);
    assert_eq!(
        ok(&[0xE0, 0x02, 0x00, 0x00]),
        Packet::from(Disconnect::default())
    );
}

#[test]
fn section_3_14_2_2_disconnect_properties_decode_into_their_fields() {
    let wire = frame(
        0xE0,
        &[
            0x9C, // Use another server
            0x16, // property length 22
            0x11, 0x00, 0x00, 0x00, 0x00, // Session Expiry Interval 0
            0x1C, 0x00, 0x03, b'h', b':', b'1', // Server Reference "h:1"
            0x1F, 0x00, 0x01, b'r', // Reason String "r"
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property k = v
        ],
    );
    let disconnect = expect!(ok(&wire), Packet::Disconnect);
    assert_eq!(
        disconnect,
        Disconnect {
            reason_code: ReasonCode::UseAnotherServer,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("r")),
                user_properties: vec![pair("k", "v")],
                server_reference: Some(s("h:1")),
            },
        }
    );
    assert_eq!(round_trip(&Packet::Disconnect(disconnect)), wire);
}

/// Table 3-10.
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];

#[test]
fn mqtt_3_14_2_1_disconnect_reason_code_must_be_in_table_3_10() {
    // Table 2-6 also lists 0x8C (Bad authentication method) for DISCONNECT, table 3-10 does
    // not; the codec accepts it rather than drop a connection over the spec's own conflict.
    let allowed = cat(&[DISCONNECT_CODES, &[0x8C]]);
    check_reason_codes(
        PacketType::Disconnect,
        &allowed,
        |code| {
            if code == 0 {
                vec![0xE0, 0x00]
            } else {
                vec![0xE0, 0x01, code]
            }
        },
        |p| expect!(p, Packet::Disconnect).reason_code,
    );
}

// ---------------------------------------------------------------------------------------------
// 3.15 AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_15_1_1_auth_reserved_bits_are_malformed() {
    assert_only_flags(PacketType::Auth, 0xF0, &[]);
    assert_only_flags(
        PacketType::Auth,
        0xF0,
        &[0x18, 0x04, 0x15, 0x00, 0x01, b'm'],
    );
}

/// Table 3-11.
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

#[test]
fn mqtt_3_15_2_1_auth_reason_code_must_be_in_table_3_11() {
    check_reason_codes(
        PacketType::Auth,
        AUTH_CODES,
        |code| {
            frame(
                0xF0,
                &[
                    code, // reason code
                    0x04, 0x15, 0x00, 0x01, b'm', // Authentication Method "m"
                ],
            )
        },
        |p| expect!(p, Packet::Auth).reason_code,
    );
}

#[test]
fn section_3_15_2_1_remaining_length_0_is_success_without_properties() {
    assert_eq!(ok(&[0xF0, 0x00]), Packet::from(Auth::default()));
    assert_eq!(round_trip(&Packet::from(Auth::default())), [0xF0, 0x00]);
}

#[test]
fn section_3_15_2_2_auth_properties_decode_into_their_fields() {
    let wire = frame(
        0xF0,
        &[
            0x19, // Re-authenticate
            0x15, // property length 21
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // Authentication Method "SCRAM"
            0x16, 0x00, 0x02, 0x00, 0xFF, // Authentication Data 00 FF
            0x1F, 0x00, 0x00, // Reason String ""
            0x26, 0x00, 0x00, 0x00, 0x00, // User Property "" = ""
        ],
    );
    let auth = expect!(ok(&wire), Packet::Auth);
    assert_eq!(
        auth,
        Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(&[0x00, 0xFF])),
                reason_string: Some(s("")),
                user_properties: vec![pair("", "")],
            },
        }
    );
    assert_eq!(round_trip(&Packet::Auth(auth)), wire);
}

#[test]
fn section_3_15_2_2_2_authentication_data_without_method_is_protocol_error() {
    assert_error!(
        err(&frame(0xF0, &[0x18, 0x04, 0x16, 0x00, 0x01, 0xAA])),
        DecodeError::AuthDataWithoutMethod {
            packet: PacketType::Auth
        },
        PROTOCOL_ERROR
    );
}

#[test]
fn section_3_15_2_2_2_missing_authentication_method_is_protocol_error() {
    // "It is a Protocol Error to omit the Authentication Method". Only the Remaining Length 0
    // form (Success, no properties) goes without one.
    for body in [&[0x18][..], &[0x18, 0x00], &[0x19, 0x03, 0x1F, 0x00, 0x00]] {
        let error = err(&frame(0xF0, body));
        assert_eq!(
            error.reason_code(),
            PROTOCOL_ERROR,
            "{body:02X?}: {error:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4.7 Topic names and topic filters, 4.8 shared subscriptions
// ---------------------------------------------------------------------------------------------

/// The error a SUBSCRIBE and an UNSUBSCRIBE of `filter` fail with, which must be the same.
fn filter_error(filter: &[u8]) -> TopicError {
    let mut found = None;
    for (packet, wire) in [
        (PacketType::Subscribe, subscribe_one(filter, 0x00)),
        (PacketType::Unsubscribe, unsubscribe_one(filter)),
    ] {
        let error = err(&wire);
        assert_eq!(error.reason_code(), PROTOCOL_ERROR, "{error:?}");
        match error {
            DecodeError::InvalidTopicFilter {
                packet: p, error, ..
            } if p == packet => {
                if let Some(previous) = found {
                    assert_eq!(previous, error, "SUBSCRIBE and UNSUBSCRIBE disagree");
                }
                found = Some(error);
            }
            other => panic!("expected InvalidTopicFilter, got {other:?}"),
        }
    }
    found.unwrap()
}

fn assert_filter_ok(filter: &[u8]) {
    assert!(decode(&subscribe_one(filter, 0x00)).is_ok(), "{filter:?}");
    assert!(decode(&unsubscribe_one(filter)).is_ok(), "{filter:?}");
}

#[test]
fn mqtt_4_7_0_1_wildcards_are_not_allowed_in_topic_names() {
    // In a PUBLISH topic, a will topic and a Response Topic (see mqtt_3_3_2_2, mqtt_3_1_3_11,
    // mqtt_3_3_2_14); here in PUBLISH at every QoS.
    for first in [0x30, 0x32, 0x34] {
        let body = if first == 0x30 {
            vec![0x00, 0x03, b'a', b'/', b'+', 0x00]
        } else {
            vec![0x00, 0x03, b'a', b'/', b'#', 0x00, 0x01, 0x00]
        };
        assert_error!(
            err(&frame(first, &body)),
            DecodeError::InvalidTopicName {
                error: TopicError::WildcardInName,
                ..
            },
            PROTOCOL_ERROR
        );
    }
    // In filters they are fine.
    assert_filter_ok(b"a/+");
    assert_filter_ok(b"a/#");
}

#[test]
fn mqtt_4_7_1_1_multi_level_wildcard_must_be_last_and_alone_in_its_level() {
    for ok in [
        &b"#"[..],
        b"a/#",
        b"/#",
        b"a/b/#",
        b"+/#",
        b"sport/tennis/player1/#",
    ] {
        assert_filter_ok(ok);
    }
    for bad in [
        &b"a#"[..],
        b"a/#/b",
        b"#/",
        b"a/b#",
        b"##",
        b"sport/tennis#",
    ] {
        assert_eq!(
            filter_error(bad),
            TopicError::MisplacedMultiLevelWildcard,
            "{bad:?}"
        );
    }
}

#[test]
fn mqtt_4_7_1_2_single_level_wildcard_must_occupy_a_whole_level() {
    for ok in [&b"+"[..], b"+/+", b"/+", b"+/", b"a/+/b", b"+/tennis/#"] {
        assert_filter_ok(ok);
    }
    for bad in [&b"a+"[..], b"+a", b"a/b+/c", b"++", b"sport+"] {
        assert_eq!(
            filter_error(bad),
            TopicError::MisplacedSingleLevelWildcard,
            "{bad:?}"
        );
    }
}

#[test]
fn mqtt_4_7_3_1_topic_names_and_filters_are_at_least_one_character() {
    assert_eq!(filter_error(b""), TopicError::Empty);
    // An empty topic name is only allowed with a Topic Alias (§3.3.2.1), tested above; levels
    // may be empty.
    for topic in [&b"/"[..], b"//", b"a//b"] {
        assert!(decode(&frame(0x30, &cat(&[&lp(topic), &[0x00]]))).is_ok());
        assert_filter_ok(topic);
    }
}

#[test]
fn mqtt_4_7_3_2_null_character_in_topic_is_malformed() {
    assert_error!(
        err(&frame(0x30, &[0x00, 0x03, b'a', 0x00, b'b', 0x00])),
        DecodeError::InvalidString {
            field: "topic name",
            error: StringError::NullCharacter,
            ..
        },
        MALFORMED
    );
    for wire in [subscribe_one(b"a\0", 0x00), unsubscribe_one(b"\0")] {
        assert_error!(
            err(&wire),
            DecodeError::InvalidString {
                field: "topic filter",
                error: StringError::NullCharacter,
                ..
            },
            MALFORMED
        );
    }
}

#[test]
fn mqtt_4_7_3_3_topic_is_at_most_65535_bytes() {
    let longest = "t".repeat(65_535);
    let filter = MqttString::try_from(longest.as_str()).unwrap();
    let unsubscribe = Unsubscribe {
        packet_id: id(1),
        properties: UnsubscribeProperties::default(),
        filters: vec![filter],
    };
    round_trip(&Packet::from(unsubscribe));
    assert_eq!(
        MqttString::try_from(format!("{longest}t")),
        Err(StringError::TooLong)
    );
}

#[test]
fn mqtt_4_8_2_1_shared_subscription_needs_a_share_name() {
    for bad in [&b"$share/"[..], b"$share//a", b"$share//"] {
        assert_eq!(filter_error(bad), TopicError::InvalidShareName, "{bad:?}");
    }
    let subscribe = expect!(ok(&subscribe_one(b"$share/g/a", 0x01)), Packet::Subscribe);
    assert_eq!(subscribe.subscriptions[0].filter, "$share/g/a");
}

#[test]
fn mqtt_4_8_2_2_share_name_is_followed_by_a_slash_and_a_topic_filter() {
    // No '+' or '#' in the share name; a '/' after it; a valid filter after that.
    for bad in [
        &b"$share/g"[..],
        b"$share/g+/a",
        b"$share/#/a",
        b"$share/+/a",
    ] {
        assert_eq!(filter_error(bad), TopicError::InvalidShareName, "{bad:?}");
    }
    assert_eq!(filter_error(b"$share/g/"), TopicError::Empty);
    assert_eq!(
        filter_error(b"$share/g/a#"),
        TopicError::MisplacedMultiLevelWildcard
    );
    assert_eq!(
        filter_error(b"$share/g/a+"),
        TopicError::MisplacedSingleLevelWildcard
    );
    for ok in [&b"$share/g/#"[..], b"$share/group-1/a/+/c", b"$share/g//"] {
        assert_filter_ok(ok);
    }
}

// ---------------------------------------------------------------------------------------------
// Maximum Packet Size (§3.1.2.11.4, §3.2.2.3.6)
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_2_2_15_packet_over_maximum_packet_size_is_refused_from_its_header() {
    // Only the fixed header has arrived: it declares a packet of 1 + 4 + 268 435 455 bytes.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_error!(
        Decoder::new(V5)
            .with_max_packet_size(1024)
            .decode(&mut buf)
            .unwrap_err(),
        DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        },
        ReasonCode::PacketTooLarge
    );
    // A 1 025-byte PUBLISH (header 3 bytes), before any of its body is there.
    let mut buf = BytesMut::from(&[0x30, 0xFE, 0x07][..]);
    assert_error!(
        Decoder::new(V5)
            .with_max_packet_size(1024)
            .decode(&mut buf)
            .unwrap_err(),
        DecodeError::PacketTooLarge {
            size: 1025,
            max: 1024
        },
        ReasonCode::PacketTooLarge
    );
    // One byte less fits.
    let wire = frame(0x30, &cat(&[&[0x00, 0x01, b'a', 0x00], &[0u8; 1017]]));
    assert_eq!(wire.len(), 1024);
    assert!(decode_with(Decoder::new(V5).with_max_packet_size(1024), &wire).is_ok());
}

#[test]
fn mqtt_3_1_2_24_encoded_len_tells_the_sender_whether_a_packet_fits() {
    // The client said Maximum Packet Size 64; the server checks before it sends.
    let publish = Packet::from(Publish::new(s("a"), vec![0u8; 60].into()));
    assert_eq!(publish.encoded_len(V5), 66);
    let client = Decoder::new(V5).with_max_packet_size(64);
    let wire = encode(&publish);
    assert_error!(
        decode_with(client, &wire).unwrap_err(),
        DecodeError::PacketTooLarge { size: 66, max: 64 },
        ReasonCode::PacketTooLarge
    );
}

#[test]
fn encoded_len_prices_reason_string_and_user_properties_exactly() {
    // For MQTT-3.2.2-19, -20, 3.4.2-2, -3 and the like: a sender that must leave out a Reason
    // String or User Property to fit the peer's Maximum Packet Size learns the cost up front.
    let bare = Packet::PubAck(Ack::with_reason(id(1), ReasonCode::QuotaExceeded));
    let with_reason = Packet::PubAck(Ack {
        properties: AckProperties {
            reason_string: Some(s("quota")),
            user_properties: vec![],
        },
        ..Ack::with_reason(id(1), ReasonCode::QuotaExceeded)
    });
    let with_both = Packet::PubAck(Ack {
        properties: AckProperties {
            reason_string: Some(s("quota")),
            user_properties: vec![pair("a", "bc")],
        },
        ..Ack::with_reason(id(1), ReasonCode::QuotaExceeded)
    });
    assert_eq!(bare.encoded_len(V5), 5); // short form
    assert_eq!(with_reason.encoded_len(V5), 5 + 1 + 8); // property length, 0x1F + "quota"
    assert_eq!(with_both.encoded_len(V5), 14 + 8); // 0x26 + "a" + "bc"
    for packet in [bare, with_reason, with_both] {
        round_trip(&packet);
    }
}

// ---------------------------------------------------------------------------------------------
// 2.4 Reason codes, 4.13 Handling errors
// ---------------------------------------------------------------------------------------------

#[test]
fn section_2_4_reason_codes_below_0x80_mean_success() {
    for code in 0..=u8::MAX {
        if let Some(reason) = ReasonCode::from_u8(code) {
            assert_eq!(reason.is_success(), code < 0x80, "{reason}");
        }
    }
}

#[test]
fn mqtt_4_13_1_1_every_decode_error_has_a_reason_code_its_reply_can_carry() {
    // An error in a CONNECT is answered in CONNACK; any other in DISCONNECT (§4.13.1).
    let bad_connects = [
        connect(0x01, &[0x00], &[0x00, 0x01, b'c']), // reserved flag
        connect(0x1E, &[0x00], &[0x00, 0x01, b'c']), // will QoS 3
        connect(0x08, &[0x00], &[0x00, 0x01, b'c']), // will QoS without will
        connect(0x02, &[0x00], &[0x00, 0x01, 0xFF]), // client id not UTF-8
        connect(0x02, &[0x00], &[0x00, 0x01]),       // truncated
        connect(0x02, &[0x00], &[0x00, 0x01, b'c', 0x00]), // trailing byte
        frame(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x09]), // version 9
        Ctx::Connect.packet(&[0x23, 0x00, 0x00]),    // Topic Alias 0
        Ctx::Will.packet(&[0x23, 0x00, 0x00]),       // Topic Alias 0 in the will
        Ctx::Connect.packet(&[0x21, 0x00, 0x00]),    // Receive Maximum 0
        Ctx::Connect.packet(&[0x0B, 0x00]),          // Subscription Identifier 0
        Ctx::Connect.packet(&[0x04, 0x00]),          // unknown property
        Ctx::Connect.packet(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1]), // duplicate
        Ctx::Connect.packet(&[0x16, 0x00, 0x00]),    // data without method
        Ctx::Will.packet(&[0x08, 0x00, 0x01, b'#']), // wildcard Response Topic
    ];
    for wire in bad_connects {
        let code = err(&wire).reason_code();
        assert!(
            !code.is_success() && code.allowed_in(PacketType::ConnAck),
            "{code} for {wire:02X?}"
        );
    }
    let too_large = decode_with(
        Decoder::new(V5).with_max_packet_size(8),
        &connect(0x02, &[0x00], &[0x00, 0x01, b'c']),
    )
    .unwrap_err();
    assert!(too_large.reason_code().allowed_in(PacketType::ConnAck));

    let bad_others = [
        vec![0x36, 0x00],                         // QoS 3
        vec![0x38, 0x00],                         // DUP at QoS 0
        frame(0x30, &[0x00, 0x00, 0x00]),         // empty topic, no alias
        Ctx::Publish.packet(&[0x23, 0x00, 0x00]), // Topic Alias 0
        Ctx::Publish.packet(&[0x12, 0x00, 0x00]), // property not allowed
        subscribe_one(b"a", 0x03),                // Maximum QoS 3
        subscribe_one(b"a", 0x30),                // Retain Handling 3
        subscribe_one(b"a", 0xC0),                // reserved option bits
        subscribe_one(b"$share/g/a", 0x04),       // No Local on a shared subscription
        subscribe_one(b"a/#/b", 0x00),            // bad filter
        frame(0x40, &[0x00, 0x01, 0x05]),         // unknown PUBACK reason code
        frame(0x62, &[0x00, 0x01, 0x10]),         // PUBREL reason code of PUBACK's
        vec![0xE1, 0x00],                         // DISCONNECT flags
        vec![0xE0, 0x01, 0x85],                   // DISCONNECT reason code of CONNACK's
        frame(0xF0, &[0x01]),                     // AUTH reason code
        vec![0x00, 0x00],                         // packet type 0
    ];
    for wire in bad_others {
        let code = err(&wire).reason_code();
        assert!(
            !code.is_success() && code.allowed_in(PacketType::Disconnect),
            "{code} for {wire:02X?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder: every packet type
// ---------------------------------------------------------------------------------------------

#[test]
fn encoder_every_packet_type_round_trips_with_exact_encoded_len() {
    let user = || vec![pair("k", "v"), pair("k", "w")];
    let connect = Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 0,
        client_id: s("client"),
        will: Some(Will {
            topic: s("will/t"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(10),
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(3600),
                content_type: Some(s("text/plain")),
                response_topic: Some(s("reply/to")),
                correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
                user_properties: user(),
            },
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(&[0xFF; 3])),
        properties: ConnectProperties {
            session_expiry_interval: Some(u32::MAX),
            receive_maximum: Some(100),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: user(),
            authentication_method: Some(s("SCRAM-SHA-1")),
            authentication_data: Some(Bytes::from_static(b"n,,n=user")),
        },
    };
    let connack = ConnAck {
        session_present: true,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            session_expiry_interval: Some(60),
            receive_maximum: Some(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(65_536),
            assigned_client_identifier: Some(s("auto-1")),
            topic_alias_maximum: Some(5),
            reason_string: Some(s("welcome")),
            user_properties: user(),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(30),
            response_information: Some(s("resp/")),
            server_reference: Some(s("other:1883")),
            authentication_method: Some(s("SCRAM-SHA-1")),
            authentication_data: Some(Bytes::from_static(b"r=nonce")),
        },
    };
    let publish = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: s("a/b/c"),
        packet_id: Some(id(65_535)),
        properties: PublishProperties {
            payload_format_indicator: Some(false),
            message_expiry_interval: Some(0),
            topic_alias: Some(1),
            response_topic: Some(s("r/1")),
            correlation_data: Some(Bytes::new()),
            user_properties: user(),
            subscription_identifiers: vec![1, 268_435_455],
            content_type: Some(s("")),
        },
        payload: Bytes::from(vec![0xAB; 300]),
    };
    let ack = |code| Ack {
        packet_id: id(7),
        reason_code: code,
        properties: AckProperties {
            reason_string: Some(s("why")),
            user_properties: user(),
        },
    };
    let subscribe = Subscribe {
        packet_id: id(2),
        properties: SubscribeProperties {
            subscription_identifier: Some(16_384),
            user_properties: user(),
        },
        subscriptions: vec![
            Subscription {
                filter: s("$share/g/x/#"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            },
            Subscription {
                filter: s("+/y"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: false,
                    retain_handling: RetainHandling::DoNotSend,
                },
            },
        ],
    };
    let suback = SubAck {
        packet_id: id(2),
        properties: AckProperties {
            reason_string: Some(s("partly")),
            user_properties: user(),
        },
        reason_codes: vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized],
    };
    let unsubscribe = Unsubscribe {
        packet_id: id(3),
        properties: UnsubscribeProperties {
            user_properties: user(),
        },
        filters: vec![s("x/#"), s("$share/g/x/#")],
    };
    let unsuback = UnsubAck {
        packet_id: id(3),
        properties: AckProperties {
            reason_string: None,
            user_properties: user(),
        },
        reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
    };
    let disconnect = Disconnect {
        reason_code: ReasonCode::ServerMoved,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: Some(s("moving")),
            user_properties: user(),
            server_reference: Some(s("elsewhere")),
        },
    };
    let auth = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM-SHA-1")),
            authentication_data: Some(Bytes::from_static(b"c=biws")),
            reason_string: Some(s("step 2")),
            user_properties: user(),
        },
    };
    let packets = [
        Packet::from(connect),
        Packet::from(connack),
        Packet::from(publish),
        Packet::PubAck(ack(ReasonCode::NoMatchingSubscribers)),
        Packet::PubRec(ack(ReasonCode::PayloadFormatInvalid)),
        Packet::PubRel(ack(ReasonCode::PacketIdentifierNotFound)),
        Packet::PubComp(ack(ReasonCode::Success)),
        Packet::from(subscribe),
        Packet::from(suback),
        Packet::from(unsubscribe),
        Packet::from(unsuback),
        Packet::PingReq,
        Packet::PingResp,
        Packet::from(disconnect),
        Packet::from(auth),
    ];
    // One at a time, then all in one stream.
    let mut stream = Vec::new();
    for packet in &packets {
        stream.extend(round_trip(packet));
    }
    let mut decoder = Decoder::new(V5);
    let mut buf = BytesMut::from(&stream[..]);
    for packet in &packets {
        assert_eq!(decoder.decode(&mut buf).unwrap().as_ref(), Some(packet));
    }
    assert!(buf.is_empty());
}
