//! SUBSCRIBE and SUBACK (MQTT 3.1.1 sections 3.8-3.9, MQTT 5.0 sections 3.8-3.9), with the
//! subscription options byte.

use bytes::{BufMut, BytesMut};

use crate::error::{excerpt, DecodeError, EncodeError};
use crate::properties::{self, AckProperties, SubscribeProperties};
use crate::reason::ReasonCode;
use crate::string::MqttString;
use crate::topic::{validate_topic_filter, SharedFilter};
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{prefixed_len, put_binary, Reader};

/// When retained messages are sent for a new subscription (MQTT 5.0 section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not already exist.
    SendIfNew = 1,
    /// Do not send them.
    DoNotSend = 2,
}

/// The options byte of one subscription. MQTT 3.1.1 carries only the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn decode(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
        // 3.1.1 reserves bits 7-2 [MQTT-3-8.3-4]; 5.0 reserves bits 7-6 [MQTT-3.8.3-5].
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::ReservedSubscriptionOptions { options: byte });
        }
        let qos = QoS::from_bits(byte & 0b11).ok_or(DecodeError::InvalidQoS {
            packet: PacketType::Subscribe,
            field: "subscription options",
        })?;
        let retain_handling = match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling,
        })
    }

    fn encode(&self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            byte |= u8::from(self.no_local) << 2;
            byte |= u8::from(self.retain_as_published) << 3;
            byte |= (self.retain_handling as u8) << 4;
        }
        byte
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: MqttString,
    pub options: SubscriptionOptions,
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub properties: SubscribeProperties,
    pub subscriptions: Vec<Subscription>,
}

/// Reads and checks one topic filter of SUBSCRIBE or UNSUBSCRIBE.
pub(crate) fn read_filter(r: &mut Reader) -> Result<MqttString, DecodeError> {
    let filter = r.string("topic filter")?;
    validate_topic_filter(&filter).map_err(|error| DecodeError::InvalidTopicFilter {
        packet: r.packet(),
        filter: excerpt(&filter),
        error,
    })?;
    Ok(filter)
}

impl Subscribe {
    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Subscribe, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            properties::decode(&mut r)?
        } else {
            SubscribeProperties::default()
        };
        if r.is_empty() {
            return Err(DecodeError::EmptyPayload {
                packet: PacketType::Subscribe,
            });
        }
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = read_filter(&mut r)?;
            let options = SubscriptionOptions::decode(r.u8("subscription options")?, version)?;
            if options.no_local && SharedFilter::parse(&filter).is_some() {
                return Err(DecodeError::NoLocalOnSharedSubscription {
                    filter: excerpt(&filter),
                });
            }
            subscriptions.push(Subscription { filter, options });
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = 2;
        if version.is_v5() {
            len += properties::encoded_len(&self.properties);
        }
        len + self
            .subscriptions
            .iter()
            .map(|s| prefixed_len(s.filter.len()) + 1)
            .sum::<usize>()
    }

    pub(crate) fn write_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        const P: PacketType = PacketType::Subscribe;
        if self.subscriptions.is_empty() {
            return Err(EncodeError::Empty { packet: P });
        }
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            properties::encode(&self.properties, buf, P)?;
        }
        for s in &self.subscriptions {
            put_binary(buf, s.filter.as_bytes(), P, "topic filter")?;
            buf.put_u8(s.options.encode(version));
        }
        Ok(())
    }
}

/// A SUBACK packet: one reason code per subscription, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub properties: AckProperties,
    pub reason_codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            properties::decode(&mut r)?
        } else {
            AckProperties::default()
        };
        let reason_codes = read_reason_codes(&mut r, version)?;
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        ack_with_codes_len(&self.properties, &self.reason_codes, version)
    }

    pub(crate) fn write_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        write_ack_with_codes(
            PacketType::SubAck,
            self.packet_id,
            &self.properties,
            &self.reason_codes,
            version,
            buf,
        )
    }
}

/// Reads the reason codes that fill the rest of a SUBACK or v5 UNSUBACK; at least one.
pub(crate) fn read_reason_codes(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Vec<ReasonCode>, DecodeError> {
    let packet = r.packet();
    if r.is_empty() {
        return Err(DecodeError::EmptyPayload { packet });
    }
    let mut codes = Vec::new();
    while !r.is_empty() {
        let raw = r.u8("reason code")?;
        let code = match (version.is_v5(), raw) {
            (true, _) => ReasonCode::from_u8(raw).filter(|c| c.allowed_in(packet)),
            // 3.1.1 SUBACK return codes [MQTT-3.9.3-2].
            (false, 0x00..=0x02) => ReasonCode::from_u8(raw),
            (false, 0x80) => Some(ReasonCode::UnspecifiedError),
            (false, _) => None,
        };
        codes.push(code.ok_or(DecodeError::InvalidReasonCode { packet, code: raw })?);
    }
    Ok(codes)
}

/// Size of packet id, v5 properties and reason codes.
pub(crate) fn ack_with_codes_len(
    props: &AckProperties,
    codes: &[ReasonCode],
    version: ProtocolVersion,
) -> usize {
    let props_len = if version.is_v5() {
        properties::encoded_len(props)
    } else {
        0
    };
    2 + props_len + codes.len()
}

pub(crate) fn write_ack_with_codes(
    packet: PacketType,
    packet_id: PacketId,
    props: &AckProperties,
    codes: &[ReasonCode],
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if codes.is_empty() {
        return Err(EncodeError::Empty { packet });
    }
    buf.put_u16(packet_id.get());
    if version.is_v5() {
        properties::encode(props, buf, packet)?;
        buf.extend(codes.iter().map(|&c| c as u8));
    } else {
        buf.extend(codes.iter().map(|c| c.to_v3_suback()));
    }
    Ok(())
}
