//! CONNACK (MQTT 3.1.1 section 3.2, MQTT 5.0 section 3.2). The struct speaks MQTT 5.0 reason
//! codes; for 3.1.1 they are translated to and from the six return codes.

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::properties::{self, ConnAckProperties};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

/// A CONNACK packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason_code: ReasonCode,
    pub properties: ConnAckProperties,
}

impl ConnAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8("acknowledge flags")?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::ConnAckReservedFlags { flags });
        }
        let raw = r.u8("reason code")?;
        let reason_code = if version.is_v5() {
            ReasonCode::from_u8(raw).filter(|c| c.allowed_in(PacketType::ConnAck))
        } else {
            ReasonCode::from_v3_connack(raw)
        }
        .ok_or(DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code: raw,
        })?;
        let session_present = flags & 1 != 0;
        // A refused connection has no session [MQTT-3.2.2-4] (3.1.1), [MQTT-3.2.2-6] (5.0).
        if session_present && !reason_code.is_success() {
            return Err(DecodeError::SessionPresentOnRefusal);
        }
        let properties = if version.is_v5() {
            properties::decode(&mut r)?
        } else {
            ConnAckProperties::default()
        };
        r.finish()?;
        Ok(ConnAck {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + properties::encoded_len(&self.properties)
        } else {
            2
        }
    }

    pub(crate) fn write_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        // A refused connection has no session [MQTT-3.2.2-4], [MQTT-3.2.2-6].
        buf.put_u8(u8::from(
            self.session_present && self.reason_code.is_success(),
        ));
        if version.is_v5() {
            buf.put_u8(self.reason_code as u8);
            properties::encode(&self.properties, buf, PacketType::ConnAck)
        } else {
            buf.put_u8(self.reason_code.to_v3_connack());
            Ok(())
        }
    }
}
