//! PUBLISH (MQTT 3.1.1 section 3.3, MQTT 5.0 section 3.3). The payload and topic are slices of
//! the received frame: decoding copies neither.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{excerpt, DecodeError, EncodeError};
use crate::properties::{self, PublishProperties};
use crate::string::MqttString;
use crate::topic::validate_topic_name;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{prefixed_len, put_binary, Reader};

const DUP: u8 = 0b1000;
const RETAIN: u8 = 0b0001;

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in MQTT 5.0, when `properties.topic_alias` names the topic.
    pub topic: MqttString,
    /// Present exactly when `qos` is above 0.
    pub packet_id: Option<PacketId>,
    pub properties: PublishProperties,
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message with no properties.
    pub fn new(topic: MqttString, payload: Bytes) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: PublishProperties::default(),
            payload,
        }
    }

    /// The fixed header's flag nibble (DUP, QoS, RETAIN). DUP is always 0 at QoS 0
    /// [MQTT-3.3.1-2].
    pub(crate) fn flags(&self) -> u8 {
        let mut flags = (self.qos as u8) << 1;
        if self.dup && self.qos != QoS::AtMostOnce {
            flags |= DUP;
        }
        if self.retain {
            flags |= RETAIN;
        }
        flags
    }

    /// Checks the flag nibble alone, so that a bad first byte is refused before the body
    /// arrives [MQTT-3.3.1-4], [MQTT-3.3.1-2].
    pub(crate) fn check_flags(flags: u8) -> Result<QoS, DecodeError> {
        let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS {
            packet: PacketType::Publish,
            field: "QoS",
        })?;
        if qos == QoS::AtMostOnce && flags & DUP != 0 {
            return Err(DecodeError::DupOnQoS0);
        }
        Ok(qos)
    }

    pub(crate) fn decode(
        mut r: Reader,
        flags: u8,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = Publish::check_flags(flags)?;
        let topic = r.string("topic name")?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id()?)
        };
        let properties: PublishProperties = if version.is_v5() {
            properties::decode(&mut r)?
        } else {
            PublishProperties::default()
        };
        if topic.is_empty() && version.is_v5() {
            // An alias stands in for the topic; without one there is no topic at all.
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
        } else {
            validate_topic_name(&topic).map_err(|error| DecodeError::InvalidTopicName {
                packet: PacketType::Publish,
                field: "topic name",
                topic: excerpt(&topic),
                error,
            })?;
        }
        Ok(Publish {
            dup: flags & DUP != 0,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    /// The size of the whole packet on the wire in `version`, as [`Packet::encoded_len`](crate::Packet::encoded_len)
    /// gives it, without building a `Packet`: the broker sizes every outgoing message.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        super::frame_len(self.body_len(version))
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = prefixed_len(self.topic.len());
        if self.packet_id.is_some() {
            len += 2;
        }
        if version.is_v5() {
            len += properties::encoded_len(&self.properties);
        }
        len + self.payload.len()
    }

    pub(crate) fn write_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        const P: PacketType = PacketType::Publish;
        if self.packet_id.is_some() != (self.qos != QoS::AtMostOnce) {
            return Err(EncodeError::PacketIdMismatch { packet: P });
        }
        put_binary(buf, self.topic.as_bytes(), P, "topic name")?;
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        if version.is_v5() {
            properties::encode(&self.properties, buf, P)?;
        }
        buf.put_slice(&self.payload);
        Ok(())
    }
}
