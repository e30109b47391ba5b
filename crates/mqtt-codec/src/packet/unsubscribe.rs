//! UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 sections 3.10-3.11, MQTT 5.0 sections 3.10-3.11).
//! A 3.1.1 UNSUBACK is a bare packet identifier; a 5.0 one has a reason code per filter.

use bytes::{BufMut, BytesMut};

use super::subscribe::{ack_with_codes_len, read_filter, read_reason_codes, write_ack_with_codes};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{self, AckProperties, UnsubscribeProperties};
use crate::reason::ReasonCode;
use crate::string::MqttString;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{prefixed_len, put_binary, Reader};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub properties: UnsubscribeProperties,
    pub filters: Vec<MqttString>,
}

impl Unsubscribe {
    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            properties::decode(&mut r)?
        } else {
            UnsubscribeProperties::default()
        };
        if r.is_empty() {
            return Err(DecodeError::EmptyPayload {
                packet: PacketType::Unsubscribe,
            });
        }
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(&mut r)?);
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            properties::encoded_len(&self.properties)
        } else {
            0
        };
        2 + props
            + self
                .filters
                .iter()
                .map(|f| prefixed_len(f.len()))
                .sum::<usize>()
    }

    pub(crate) fn write_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        const P: PacketType = PacketType::Unsubscribe;
        if self.filters.is_empty() {
            return Err(EncodeError::Empty { packet: P });
        }
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            properties::encode(&self.properties, buf, P)?;
        }
        for filter in &self.filters {
            put_binary(buf, filter.as_bytes(), P, "topic filter")?;
        }
        Ok(())
    }
}

/// An UNSUBACK packet. `reason_codes` is empty in MQTT 3.1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    pub properties: AckProperties,
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
        let packet_id = r.packet_id()?;
        if !version.is_v5() {
            r.finish()?;
            return Ok(UnsubAck {
                packet_id,
                properties: AckProperties::default(),
                reason_codes: Vec::new(),
            });
        }
        let properties = properties::decode(&mut r)?;
        let reason_codes = read_reason_codes(&mut r, version)?;
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            ack_with_codes_len(&self.properties, &self.reason_codes, version)
        } else {
            2
        }
    }

    pub(crate) fn write_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if !version.is_v5() {
            buf.put_u16(self.packet_id.get());
            return Ok(());
        }
        write_ack_with_codes(
            PacketType::UnsubAck,
            self.packet_id,
            &self.properties,
            &self.reason_codes,
            version,
            buf,
        )
    }
}
