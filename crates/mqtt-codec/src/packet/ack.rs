//! PUBACK, PUBREC, PUBREL and PUBCOMP: a packet identifier, and in MQTT 5.0 an optional
//! reason code and properties. One struct serves the four; the `Packet` variant says which.

use bytes::{BufMut, BytesMut};

use super::reason_tail;
use crate::error::{DecodeError, EncodeError};
use crate::properties::AckProperties;
use crate::reason::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::Reader;

/// The body of PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: PacketId,
    pub reason_code: ReasonCode,
    pub properties: AckProperties,
}

impl Ack {
    /// A successful acknowledgement with no properties.
    pub fn new(packet_id: PacketId) -> Ack {
        Ack::with_reason(packet_id, ReasonCode::Success)
    }

    /// An acknowledgement with `reason_code` and no properties.
    pub fn with_reason(packet_id: PacketId, reason_code: ReasonCode) -> Ack {
        Ack {
            packet_id,
            reason_code,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Ack, DecodeError> {
        let packet_id = r.packet_id()?;
        let (reason_code, properties) = if version.is_v5() {
            reason_tail::read(&mut r)?
        } else {
            (ReasonCode::Success, AckProperties::default())
        };
        r.finish()?;
        Ok(Ack {
            packet_id,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + reason_tail::len(self.reason_code, &self.properties)
        } else {
            2
        }
    }

    pub(crate) fn write_body(
        &self,
        packet: PacketType,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            reason_tail::write(self.reason_code, &self.properties, packet, buf)?;
        }
        Ok(())
    }
}
