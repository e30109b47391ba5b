//! MQTT 5.0 properties (section 2.2.2): the identifier table, one generic decode loop, and a
//! visitor that sizes and writes a property set. The per-packet sets live in `sets`.
//!
//! The decode loop owns every rule that does not depend on the packet: unknown identifiers and
//! wrongly typed values are malformed; a repeated property is a Protocol Error unless the set
//! allows repeats; out-of-range values (Receive Maximum 0, Payload Format Indicator 2 ...) are
//! Protocol Errors. Whether a property is allowed at all is decided by the set it is read into.

mod sets;

use bytes::{BufMut, Bytes, BytesMut};

pub use sets::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, UserProperties, WillProperties,
};

use crate::error::{excerpt, DecodeError, EncodeError};
use crate::string::MqttString;
use crate::topic::validate_topic_name;
use crate::types::PacketType;
use crate::wire::{prefixed_len, put_binary, put_varint, varint_len, Reader, VARINT_MAX};

/// Property identifiers (MQTT 5.0 table 2-4).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// The data type of a property's value (MQTT 5.0 section 1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    TwoByte,
    FourByte,
    VarInt,
    Utf8,
    Binary,
    Pair,
}

/// What the spec allows a property's value to be, beyond its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Any,
    /// 0 or 1 only.
    Boolean,
    /// Zero is a Protocol Error.
    NonZero,
    /// A topic name (Response Topic).
    TopicName,
    /// Zero is invalid, with a code of its own: 0x94 (MQTT 5.0 section 3.3.4).
    TopicAlias,
}

struct Definition {
    name: &'static str,
    kind: Kind,
    range: Range,
}

/// The definition of property `id`, or `None` for an identifier the spec does not define.
fn definition(id: u8) -> Option<Definition> {
    use Kind::*;
    use Range::*;
    let (name, kind, range) = match id {
        id::PAYLOAD_FORMAT_INDICATOR => ("Payload Format Indicator", Byte, Boolean),
        id::MESSAGE_EXPIRY_INTERVAL => ("Message Expiry Interval", FourByte, Any),
        id::CONTENT_TYPE => ("Content Type", Utf8, Any),
        id::RESPONSE_TOPIC => ("Response Topic", Utf8, TopicName),
        id::CORRELATION_DATA => ("Correlation Data", Binary, Any),
        id::SUBSCRIPTION_IDENTIFIER => ("Subscription Identifier", VarInt, NonZero),
        id::SESSION_EXPIRY_INTERVAL => ("Session Expiry Interval", FourByte, Any),
        id::ASSIGNED_CLIENT_IDENTIFIER => ("Assigned Client Identifier", Utf8, Any),
        id::SERVER_KEEP_ALIVE => ("Server Keep Alive", TwoByte, Any),
        id::AUTHENTICATION_METHOD => ("Authentication Method", Utf8, Any),
        id::AUTHENTICATION_DATA => ("Authentication Data", Binary, Any),
        id::REQUEST_PROBLEM_INFORMATION => ("Request Problem Information", Byte, Boolean),
        id::WILL_DELAY_INTERVAL => ("Will Delay Interval", FourByte, Any),
        id::REQUEST_RESPONSE_INFORMATION => ("Request Response Information", Byte, Boolean),
        id::RESPONSE_INFORMATION => ("Response Information", Utf8, Any),
        id::SERVER_REFERENCE => ("Server Reference", Utf8, Any),
        id::REASON_STRING => ("Reason String", Utf8, Any),
        id::RECEIVE_MAXIMUM => ("Receive Maximum", TwoByte, NonZero),
        id::TOPIC_ALIAS_MAXIMUM => ("Topic Alias Maximum", TwoByte, Any),
        id::TOPIC_ALIAS => ("Topic Alias", TwoByte, TopicAlias),
        id::MAXIMUM_QOS => ("Maximum QoS", Byte, Boolean),
        id::RETAIN_AVAILABLE => ("Retain Available", Byte, Boolean),
        id::USER_PROPERTY => ("User Property", Pair, Any),
        id::MAXIMUM_PACKET_SIZE => ("Maximum Packet Size", FourByte, NonZero),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => ("Wildcard Subscription Available", Byte, Boolean),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            ("Subscription Identifier Available", Byte, Boolean)
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => ("Shared Subscription Available", Byte, Boolean),
        _ => return None,
    };
    Some(Definition { name, kind, range })
}

/// The name the spec gives property `id` (for messages).
pub fn property_name(id: u8) -> &'static str {
    definition(id).map_or("unknown property", |d| d.name)
}

/// A decoded property value.
#[derive(Debug)]
pub(crate) enum Value {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VarInt(u32),
    Utf8(MqttString),
    Binary(Bytes),
    Pair(MqttString, MqttString),
}

impl Value {
    fn read(kind: Kind, r: &mut Reader, name: &'static str) -> Result<Value, DecodeError> {
        Ok(match kind {
            Kind::Byte => Value::Byte(r.u8(name)?),
            Kind::TwoByte => Value::TwoByte(r.u16(name)?),
            Kind::FourByte => Value::FourByte(r.u32(name)?),
            Kind::VarInt => Value::VarInt(r.varint(name)?),
            Kind::Utf8 => Value::Utf8(r.string(name)?),
            Kind::Binary => Value::Binary(r.binary(name)?),
            Kind::Pair => Value::Pair(r.string(name)?, r.string(name)?),
        })
    }

    /// The numeric value, for range checks.
    fn number(&self) -> Option<u32> {
        match *self {
            Value::Byte(v) => Some(v.into()),
            Value::TwoByte(v) => Some(v.into()),
            Value::FourByte(v) | Value::VarInt(v) => Some(v),
            _ => None,
        }
    }
}

/// A set of properties one packet type may carry.
pub(crate) trait PropertySet: Default {
    /// Stores a property; false if this packet type does not allow it.
    fn set(&mut self, id: u8, value: Value) -> bool;
    /// Hands every present property to `sink`, always in the same order.
    fn visit<S: Sink>(&self, sink: &mut S);
    /// Whether the property may appear more than once.
    fn repeatable(id: u8) -> bool {
        id == id::USER_PROPERTY
    }
}

/// Reads a property length and the properties it covers into a `P`.
pub(crate) fn decode<P: PropertySet>(r: &mut Reader) -> Result<P, DecodeError> {
    let packet = r.packet();
    let len = r.varint("property length")? as usize;
    let mut body = Reader::new(r.take(len, "properties")?, packet);
    let mut props = P::default();
    // Identifiers are below 64, so one bit each records what was seen.
    let mut seen: u64 = 0;
    while !body.is_empty() {
        let raw_id = body.varint("property identifier")?;
        let def = u8::try_from(raw_id)
            .ok()
            .and_then(|id| definition(id).map(|d| (id, d)));
        let Some((id, def)) = def else {
            return Err(DecodeError::UnknownProperty { packet, id: raw_id });
        };
        let value = Value::read(def.kind, &mut body, def.name)?;
        check_range(&def, &value, packet)?;
        if !props.set(id, value) {
            return Err(DecodeError::PropertyNotAllowed {
                packet,
                name: def.name,
            });
        }
        let bit = 1u64 << id;
        if seen & bit != 0 && !P::repeatable(id) {
            return Err(DecodeError::DuplicateProperty {
                packet,
                name: def.name,
            });
        }
        seen |= bit;
    }
    Ok(props)
}

fn check_range(def: &Definition, value: &Value, packet: PacketType) -> Result<(), DecodeError> {
    let invalid = |value| DecodeError::InvalidPropertyValue {
        packet,
        name: def.name,
        value,
    };
    match (def.range, value.number()) {
        (Range::Boolean, Some(n)) if n > 1 => Err(invalid(n)),
        // Elsewhere Topic Alias is simply not allowed (0x81), and 0x94 cannot go in a CONNACK.
        (Range::TopicAlias, Some(0)) if packet == PacketType::Publish => {
            Err(DecodeError::TopicAliasZero)
        }
        (Range::NonZero, Some(0)) => Err(invalid(0)),
        (Range::TopicName, _) => match value {
            Value::Utf8(topic) => {
                validate_topic_name(topic).map_err(|error| DecodeError::InvalidTopicName {
                    packet,
                    field: def.name,
                    topic: excerpt(topic),
                    error,
                })
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Receives the properties of a set, to size or to write them.
pub(crate) trait Sink {
    fn byte(&mut self, id: u8, value: Option<u8>);
    fn two_byte(&mut self, id: u8, value: Option<u16>);
    fn four_byte(&mut self, id: u8, value: Option<u32>);
    fn varint(&mut self, id: u8, value: Option<u32>);
    fn utf8(&mut self, id: u8, value: Option<&MqttString>);
    fn binary(&mut self, id: u8, value: Option<&Bytes>);
    fn pairs(&mut self, pairs: &UserProperties);

    fn flag(&mut self, id: u8, value: Option<bool>) {
        self.byte(id, value.map(u8::from));
    }
}

/// Adds up the encoded size of a property set.
#[derive(Default)]
struct Counter(usize);

impl Sink for Counter {
    fn byte(&mut self, _: u8, value: Option<u8>) {
        self.0 += value.map_or(0, |_| 2);
    }
    fn two_byte(&mut self, _: u8, value: Option<u16>) {
        self.0 += value.map_or(0, |_| 3);
    }
    fn four_byte(&mut self, _: u8, value: Option<u32>) {
        self.0 += value.map_or(0, |_| 5);
    }
    fn varint(&mut self, _: u8, value: Option<u32>) {
        self.0 += value.map_or(0, |v| 1 + varint_len(v));
    }
    fn utf8(&mut self, _: u8, value: Option<&MqttString>) {
        self.0 += value.map_or(0, |v| 1 + prefixed_len(v.len()));
    }
    fn binary(&mut self, _: u8, value: Option<&Bytes>) {
        self.0 += value.map_or(0, |v| 1 + prefixed_len(v.len()));
    }
    fn pairs(&mut self, pairs: &UserProperties) {
        self.0 += pairs
            .iter()
            .map(|(k, v)| 1 + prefixed_len(k.len()) + prefixed_len(v.len()))
            .sum::<usize>();
    }
}

/// Writes a property set, remembering the first value that cannot be encoded.
struct Writer<'a> {
    buf: &'a mut BytesMut,
    packet: PacketType,
    error: Option<EncodeError>,
}

impl Writer<'_> {
    fn bytes(&mut self, id: u8, bytes: &[u8]) {
        self.buf.put_u8(id);
        if let Err(e) = put_binary(self.buf, bytes, self.packet, property_name(id)) {
            self.error.get_or_insert(e);
        }
    }
}

impl Sink for Writer<'_> {
    fn byte(&mut self, id: u8, value: Option<u8>) {
        if let Some(v) = value {
            self.buf.put_u8(id);
            self.buf.put_u8(v);
        }
    }
    fn two_byte(&mut self, id: u8, value: Option<u16>) {
        if let Some(v) = value {
            self.buf.put_u8(id);
            self.buf.put_u16(v);
        }
    }
    fn four_byte(&mut self, id: u8, value: Option<u32>) {
        if let Some(v) = value {
            self.buf.put_u8(id);
            self.buf.put_u32(v);
        }
    }
    fn varint(&mut self, id: u8, value: Option<u32>) {
        if let Some(v) = value {
            if v > VARINT_MAX {
                self.error.get_or_insert(EncodeError::VarIntTooLarge {
                    packet: self.packet,
                    field: property_name(id),
                    value: v.into(),
                });
                return;
            }
            self.buf.put_u8(id);
            put_varint(self.buf, v);
        }
    }
    fn utf8(&mut self, id: u8, value: Option<&MqttString>) {
        if let Some(v) = value {
            self.bytes(id, v.as_bytes());
        }
    }
    fn binary(&mut self, id: u8, value: Option<&Bytes>) {
        if let Some(v) = value {
            self.bytes(id, v);
        }
    }
    fn pairs(&mut self, pairs: &UserProperties) {
        for (k, v) in pairs {
            self.bytes(id::USER_PROPERTY, k.as_bytes());
            // The value follows the key with no identifier of its own.
            if let Err(e) = put_binary(self.buf, v.as_bytes(), self.packet, "User Property") {
                self.error.get_or_insert(e);
            }
        }
    }
}

/// The size of a set's properties without the property length in front.
fn content_len<P: PropertySet>(props: &P) -> usize {
    let mut counter = Counter::default();
    props.visit(&mut counter);
    counter.0
}

/// The size of a set on the wire, property length included.
pub(crate) fn encoded_len<P: PropertySet>(props: &P) -> usize {
    let len = content_len(props);
    varint_len(u32::try_from(len).unwrap_or(u32::MAX)) + len
}

/// Writes the property length and the properties.
pub(crate) fn encode<P: PropertySet>(
    props: &P,
    buf: &mut BytesMut,
    packet: PacketType,
) -> Result<(), EncodeError> {
    let len = content_len(props);
    let len = u32::try_from(len).ok().filter(|&l| l <= VARINT_MAX).ok_or(
        EncodeError::VarIntTooLarge {
            packet,
            field: "property length",
            value: len as u64,
        },
    )?;
    put_varint(buf, len);
    let mut writer = Writer {
        buf,
        packet,
        error: None,
    };
    props.visit(&mut writer);
    writer.error.map_or(Ok(()), Err)
}

/// True when the set has nothing to encode.
pub(crate) fn is_empty<P: PropertySet>(props: &P) -> bool {
    content_len(props) == 0
}
