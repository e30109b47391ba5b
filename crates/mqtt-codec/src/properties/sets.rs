//! The property set of each packet type. A set's `set` decides which properties the packet
//! allows (anything else is a Malformed Packet); its `visit` lists them for encoding.

use bytes::Bytes;

use super::{id, PropertySet, Sink, Value};
use crate::string::MqttString;
use crate::types::QoS;

/// User properties, in the order they were sent; the spec lets names repeat.
pub type UserProperties = Vec<(MqttString, MqttString)>;

/// Properties of CONNECT (MQTT 5.0 section 3.1.2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: UserProperties,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnectProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::SESSION_EXPIRY_INTERVAL, Value::FourByte(v)) => {
                self.session_expiry_interval = Some(v)
            }
            (id::RECEIVE_MAXIMUM, Value::TwoByte(v)) => self.receive_maximum = Some(v),
            (id::MAXIMUM_PACKET_SIZE, Value::FourByte(v)) => self.maximum_packet_size = Some(v),
            (id::TOPIC_ALIAS_MAXIMUM, Value::TwoByte(v)) => self.topic_alias_maximum = Some(v),
            (id::REQUEST_RESPONSE_INFORMATION, Value::Byte(v)) => {
                self.request_response_information = Some(v == 1)
            }
            (id::REQUEST_PROBLEM_INFORMATION, Value::Byte(v)) => {
                self.request_problem_information = Some(v == 1)
            }
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id::AUTHENTICATION_METHOD, Value::Utf8(v)) => self.authentication_method = Some(v),
            (id::AUTHENTICATION_DATA, Value::Binary(v)) => self.authentication_data = Some(v),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.four_byte(id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        s.utf8(
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        s.binary(id::AUTHENTICATION_DATA, self.authentication_data.as_ref());
        s.flag(
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        s.flag(
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        s.two_byte(id::RECEIVE_MAXIMUM, self.receive_maximum);
        s.two_byte(id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        s.pairs(&self.user_properties);
        s.four_byte(id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
    }
}

/// Properties of a will message, carried in CONNECT's payload (MQTT 5.0 section 3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<MqttString>,
    pub response_topic: Option<MqttString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

impl PropertySet for WillProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::WILL_DELAY_INTERVAL, Value::FourByte(v)) => self.will_delay_interval = Some(v),
            (id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                self.payload_format_indicator = Some(v == 1)
            }
            (id::MESSAGE_EXPIRY_INTERVAL, Value::FourByte(v)) => {
                self.message_expiry_interval = Some(v)
            }
            (id::CONTENT_TYPE, Value::Utf8(v)) => self.content_type = Some(v),
            (id::RESPONSE_TOPIC, Value::Utf8(v)) => self.response_topic = Some(v),
            (id::CORRELATION_DATA, Value::Binary(v)) => self.correlation_data = Some(v),
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.flag(id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        s.four_byte(id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        s.utf8(id::CONTENT_TYPE, self.content_type.as_ref());
        s.utf8(id::RESPONSE_TOPIC, self.response_topic.as_ref());
        s.binary(id::CORRELATION_DATA, self.correlation_data.as_ref());
        s.four_byte(id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        s.pairs(&self.user_properties);
    }
}

/// Properties of CONNACK (MQTT 5.0 section 3.2.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    /// Only QoS 0 or 1 may be sent; absent means QoS 2 is available.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<MqttString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<MqttString>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<MqttString>,
    pub server_reference: Option<MqttString>,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnAckProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::SESSION_EXPIRY_INTERVAL, Value::FourByte(v)) => {
                self.session_expiry_interval = Some(v)
            }
            (id::RECEIVE_MAXIMUM, Value::TwoByte(v)) => self.receive_maximum = Some(v),
            // The range check admits only 0 and 1.
            (id::MAXIMUM_QOS, Value::Byte(v)) => self.maximum_qos = QoS::from_bits(v),
            (id::RETAIN_AVAILABLE, Value::Byte(v)) => self.retain_available = Some(v == 1),
            (id::MAXIMUM_PACKET_SIZE, Value::FourByte(v)) => self.maximum_packet_size = Some(v),
            (id::ASSIGNED_CLIENT_IDENTIFIER, Value::Utf8(v)) => {
                self.assigned_client_identifier = Some(v)
            }
            (id::TOPIC_ALIAS_MAXIMUM, Value::TwoByte(v)) => self.topic_alias_maximum = Some(v),
            (id::REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id::WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                self.wildcard_subscription_available = Some(v == 1)
            }
            (id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(v)) => {
                self.subscription_identifiers_available = Some(v == 1)
            }
            (id::SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                self.shared_subscription_available = Some(v == 1)
            }
            (id::SERVER_KEEP_ALIVE, Value::TwoByte(v)) => self.server_keep_alive = Some(v),
            (id::RESPONSE_INFORMATION, Value::Utf8(v)) => self.response_information = Some(v),
            (id::SERVER_REFERENCE, Value::Utf8(v)) => self.server_reference = Some(v),
            (id::AUTHENTICATION_METHOD, Value::Utf8(v)) => self.authentication_method = Some(v),
            (id::AUTHENTICATION_DATA, Value::Binary(v)) => self.authentication_data = Some(v),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.four_byte(id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        s.utf8(
            id::ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_ref(),
        );
        s.two_byte(id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        s.utf8(
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        s.binary(id::AUTHENTICATION_DATA, self.authentication_data.as_ref());
        s.utf8(id::RESPONSE_INFORMATION, self.response_information.as_ref());
        s.utf8(id::SERVER_REFERENCE, self.server_reference.as_ref());
        s.utf8(id::REASON_STRING, self.reason_string.as_ref());
        s.two_byte(id::RECEIVE_MAXIMUM, self.receive_maximum);
        s.two_byte(id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        s.byte(id::MAXIMUM_QOS, self.maximum_qos.map(|q| q as u8));
        s.flag(id::RETAIN_AVAILABLE, self.retain_available);
        s.pairs(&self.user_properties);
        s.four_byte(id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        s.flag(
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        s.flag(
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        s.flag(
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
    }
}

/// Properties of PUBLISH (MQTT 5.0 section 3.3.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<u16>,
    pub response_topic: Option<MqttString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
    /// Several when the server delivers one copy for several matching subscriptions.
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<MqttString>,
}

impl PropertySet for PublishProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                self.payload_format_indicator = Some(v == 1)
            }
            (id::MESSAGE_EXPIRY_INTERVAL, Value::FourByte(v)) => {
                self.message_expiry_interval = Some(v)
            }
            (id::TOPIC_ALIAS, Value::TwoByte(v)) => self.topic_alias = Some(v),
            (id::RESPONSE_TOPIC, Value::Utf8(v)) => self.response_topic = Some(v),
            (id::CORRELATION_DATA, Value::Binary(v)) => self.correlation_data = Some(v),
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id::SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => {
                self.subscription_identifiers.push(v)
            }
            (id::CONTENT_TYPE, Value::Utf8(v)) => self.content_type = Some(v),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.flag(id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        s.four_byte(id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        s.utf8(id::CONTENT_TYPE, self.content_type.as_ref());
        s.utf8(id::RESPONSE_TOPIC, self.response_topic.as_ref());
        s.binary(id::CORRELATION_DATA, self.correlation_data.as_ref());
        for &sid in &self.subscription_identifiers {
            s.varint(id::SUBSCRIPTION_IDENTIFIER, Some(sid));
        }
        s.two_byte(id::TOPIC_ALIAS, self.topic_alias);
        s.pairs(&self.user_properties);
    }

    fn repeatable(pid: u8) -> bool {
        pid == id::USER_PROPERTY || pid == id::SUBSCRIPTION_IDENTIFIER
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a reason string and
/// user properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    pub reason_string: Option<MqttString>,
    pub user_properties: UserProperties,
}

impl AckProperties {
    /// True when there is nothing to send, which lets short acknowledgements omit the block.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl PropertySet for AckProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.utf8(id::REASON_STRING, self.reason_string.as_ref());
        s.pairs(&self.user_properties);
    }
}

/// Properties of SUBSCRIBE (MQTT 5.0 section 3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties,
}

impl PropertySet for SubscribeProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => {
                self.subscription_identifier = Some(v)
            }
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.varint(id::SUBSCRIPTION_IDENTIFIER, self.subscription_identifier);
        s.pairs(&self.user_properties);
    }
}

/// Properties of UNSUBSCRIBE: user properties only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    pub user_properties: UserProperties,
}

impl PropertySet for UnsubscribeProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.pairs(&self.user_properties);
    }
}

/// Properties of DISCONNECT (MQTT 5.0 section 3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<MqttString>,
    pub user_properties: UserProperties,
    pub server_reference: Option<MqttString>,
}

impl PropertySet for DisconnectProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::SESSION_EXPIRY_INTERVAL, Value::FourByte(v)) => {
                self.session_expiry_interval = Some(v)
            }
            (id::REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id::SERVER_REFERENCE, Value::Utf8(v)) => self.server_reference = Some(v),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.four_byte(id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        s.utf8(id::SERVER_REFERENCE, self.server_reference.as_ref());
        s.utf8(id::REASON_STRING, self.reason_string.as_ref());
        s.pairs(&self.user_properties);
    }
}

/// Properties of AUTH (MQTT 5.0 section 3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<MqttString>,
    pub user_properties: UserProperties,
}

impl PropertySet for AuthProperties {
    fn set(&mut self, pid: u8, value: Value) -> bool {
        match (pid, value) {
            (id::AUTHENTICATION_METHOD, Value::Utf8(v)) => self.authentication_method = Some(v),
            (id::AUTHENTICATION_DATA, Value::Binary(v)) => self.authentication_data = Some(v),
            (id::REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (id::USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn visit<S: Sink>(&self, s: &mut S) {
        s.utf8(
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        s.binary(id::AUTHENTICATION_DATA, self.authentication_data.as_ref());
        s.utf8(id::REASON_STRING, self.reason_string.as_ref());
        s.pairs(&self.user_properties);
    }
}
