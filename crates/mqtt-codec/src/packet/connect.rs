//! CONNECT (MQTT 3.1.1 section 3.1, MQTT 5.0 section 3.1): protocol name and level, connect
//! flags, keep alive, properties, and the payload (client id, will, user name, password).
//! The packet names its own protocol version, so it decodes without one.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{excerpt, DecodeError, EncodeError};
use crate::properties::{self, ConnectProperties, WillProperties};
use crate::string::MqttString;
use crate::topic::validate_topic_name;
use crate::types::{PacketType, ProtocolVersion, QoS};
use crate::wire::{prefixed_len, put_binary, Reader};

const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// Clean Session in 3.1.1, Clean Start in 5.0.
    pub clean_start: bool,
    /// Seconds; 0 turns keep alive off.
    pub keep_alive: u16,
    pub client_id: MqttString,
    pub will: Option<Will>,
    pub username: Option<MqttString>,
    pub password: Option<Bytes>,
    pub properties: ConnectProperties,
}

/// The will message a CONNECT registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: MqttString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: WillProperties,
}

impl Connect {
    /// A CONNECT with a client id and everything else at its default: clean start, a keep
    /// alive of 60 s, no will, no credentials.
    pub fn new(protocol: ProtocolVersion, client_id: MqttString) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader) -> Result<Connect, DecodeError> {
        let name = r.string("protocol name")?;
        let level = r.u8("protocol level")?;
        let protocol = match (name.as_str(), level) {
            ("MQTT", 4) => ProtocolVersion::V3_1_1,
            ("MQTT", 5) => ProtocolVersion::V5,
            ("MQIsdp", 3) => ProtocolVersion::V3_1,
            _ => {
                return Err(DecodeError::UnsupportedProtocol {
                    name: excerpt(&name),
                    level,
                })
            }
        };
        let flags = r.u8("connect flags")?;
        if flags & RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let has_will = flags & WILL != 0;
        let will_qos_bits = (flags >> WILL_QOS_SHIFT) & 0b11;
        let will_retain = flags & WILL_RETAIN != 0;
        if !has_will && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        let will_qos = QoS::from_bits(will_qos_bits).ok_or(DecodeError::InvalidQoS {
            packet: PacketType::Connect,
            field: "will QoS",
        })?;
        let has_username = flags & USERNAME != 0;
        let has_password = flags & PASSWORD != 0;
        // MQTT 5.0 allows a password alone; 3.1.1 does not [MQTT-3.1.2-22].
        if has_password && !has_username && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16("keep alive")?;
        let properties: ConnectProperties = if protocol.is_v5() {
            properties::decode(&mut r)?
        } else {
            ConnectProperties::default()
        };
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            return Err(DecodeError::AuthDataWithoutMethod {
                packet: PacketType::Connect,
            });
        }
        let client_id = r.string("client identifier")?;
        let will = if has_will {
            let properties = if protocol.is_v5() {
                properties::decode(&mut r)?
            } else {
                WillProperties::default()
            };
            let topic = r.string("will topic")?;
            validate_topic_name(&topic).map_err(|error| DecodeError::InvalidTopicName {
                packet: PacketType::Connect,
                field: "will topic",
                topic: excerpt(&topic),
                error,
            })?;
            let payload = r.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string("user name")?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary("password")?)
        } else {
            None
        };
        r.finish()?;
        Ok(Connect {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        flags
    }

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.protocol.is_v5();
        let mut len = prefixed_len(self.protocol.protocol_name().len()) + 1 + 1 + 2;
        if v5 {
            len += properties::encoded_len(&self.properties);
        }
        len += prefixed_len(self.client_id.len());
        if let Some(will) = &self.will {
            if v5 {
                len += properties::encoded_len(&will.properties);
            }
            len += prefixed_len(will.topic.len()) + prefixed_len(will.payload.len());
        }
        len += self.username.as_ref().map_or(0, |u| prefixed_len(u.len()));
        len += self.password.as_ref().map_or(0, |p| prefixed_len(p.len()));
        len
    }

    pub(crate) fn write_body(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        const P: PacketType = PacketType::Connect;
        let v5 = self.protocol.is_v5();
        // The decoder refuses this as malformed in 3.1.1 and 3.1 [MQTT-3.1.2-22].
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::PasswordWithoutUsername);
        }
        put_binary(
            buf,
            self.protocol.protocol_name().as_bytes(),
            P,
            "protocol name",
        )?;
        buf.put_u8(self.protocol.level());
        buf.put_u8(self.flags());
        buf.put_u16(self.keep_alive);
        if v5 {
            properties::encode(&self.properties, buf, P)?;
        }
        put_binary(buf, self.client_id.as_bytes(), P, "client identifier")?;
        if let Some(will) = &self.will {
            if v5 {
                properties::encode(&will.properties, buf, P)?;
            }
            put_binary(buf, will.topic.as_bytes(), P, "will topic")?;
            put_binary(buf, &will.payload, P, "will payload")?;
        }
        if let Some(username) = &self.username {
            put_binary(buf, username.as_bytes(), P, "user name")?;
        }
        if let Some(password) = &self.password {
            put_binary(buf, password, P, "password")?;
        }
        Ok(())
    }
}
