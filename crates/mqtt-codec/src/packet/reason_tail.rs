//! The "reason code, then properties" tail that MQTT 5.0 lets a sender cut short: PUBACK,
//! PUBREC, PUBREL and PUBCOMP after their packet identifier, DISCONNECT and AUTH on their own.
//! A tail that ends before the reason code means Success; one that ends before the property
//! length means no properties. Also DISCONNECT and AUTH, which are nothing but that tail.

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::properties::{self, AuthProperties, DisconnectProperties, PropertySet};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

/// Reads the tail; the reason code must be one the packet type allows.
pub(crate) fn read<P: PropertySet>(r: &mut Reader) -> Result<(ReasonCode, P), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, P::default()));
    }
    let packet = r.packet();
    let raw = r.u8("reason code")?;
    let code = ReasonCode::from_u8(raw)
        .filter(|c| c.allowed_in(packet))
        .ok_or(DecodeError::InvalidReasonCode { packet, code: raw })?;
    let props = if r.is_empty() {
        P::default()
    } else {
        properties::decode(r)?
    };
    Ok((code, props))
}

/// The shortest tail that says the same thing.
pub(crate) fn len<P: PropertySet>(code: ReasonCode, props: &P) -> usize {
    match (code, properties::is_empty(props)) {
        (ReasonCode::Success, true) => 0,
        (_, true) => 1,
        (_, false) => 1 + properties::encoded_len(props),
    }
}

pub(crate) fn write<P: PropertySet>(
    code: ReasonCode,
    props: &P,
    packet: PacketType,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    match len(code, props) {
        0 => Ok(()),
        1 => {
            buf.put_u8(code as u8);
            Ok(())
        }
        _ => {
            buf.put_u8(code as u8);
            properties::encode(props, buf, packet)
        }
    }
}

/// DISCONNECT. In MQTT 3.1.1 it has no body and only a client sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    pub reason_code: ReasonCode,
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Disconnect {
        Disconnect {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Disconnect, DecodeError> {
        let (reason_code, properties) = if version.is_v5() {
            read(&mut r)?
        } else {
            Default::default()
        };
        r.finish()?;
        Ok(Disconnect {
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            len(self.reason_code, &self.properties)
        } else {
            0
        }
    }

    pub(crate) fn write_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if version.is_v5() {
            write(
                self.reason_code,
                &self.properties,
                PacketType::Disconnect,
                buf,
            )
        } else {
            Ok(())
        }
    }
}

/// AUTH, MQTT 5.0 only: a step of enhanced authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(mut r: Reader) -> Result<Auth, DecodeError> {
        // Only the empty form (Success, no properties) may go without a method
        // (MQTT 5.0 section 3.15.2.2.2).
        let empty = r.is_empty();
        let (reason_code, properties): (ReasonCode, AuthProperties) = read(&mut r)?;
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            return Err(DecodeError::AuthDataWithoutMethod {
                packet: PacketType::Auth,
            });
        }
        if !empty && properties.authentication_method.is_none() {
            return Err(DecodeError::AuthWithoutMethod);
        }
        r.finish()?;
        Ok(Auth {
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self) -> usize {
        len(self.reason_code, &self.properties)
    }

    pub(crate) fn write_body(
        &self,
        _version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        write(self.reason_code, &self.properties, PacketType::Auth, buf)
    }
}
