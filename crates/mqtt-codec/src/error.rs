//! Decode and encode errors. Each decode error knows the MQTT 5.0 reason code a server should
//! answer it with ([`DecodeError::reason_code`]), so the session can send the precise
//! DISCONNECT or CONNACK before it closes the connection.

use crate::reason::ReasonCode;
use crate::string::StringError;
use crate::topic::TopicError;
use crate::types::{PacketType, ProtocolVersion};

/// Why bytes are not a valid MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("reserved control packet type 0")]
    ReservedPacketType,
    #[error("{packet} does not exist in MQTT {version}")]
    PacketNotInVersion {
        packet: PacketType,
        version: ProtocolVersion,
    },
    #[error("{packet}: fixed header flags {flags:#06b}, must be {expected:#06b}")]
    InvalidFlags {
        packet: PacketType,
        flags: u8,
        expected: u8,
    },
    #[error("{packet}: {field} has QoS 3")]
    InvalidQoS {
        packet: PacketType,
        field: &'static str,
    },
    #[error("PUBLISH: DUP flag set on a QoS 0 message")]
    DupOnQoS0,
    #[error("{field}: variable byte integer longer than 4 bytes")]
    VarIntTooLong { field: &'static str },
    #[error("{field}: variable byte integer not encoded in the fewest bytes")]
    VarIntNotMinimal { field: &'static str },
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: u64, max: u32 },
    #[error("{packet}: {field} runs past the end of the packet")]
    Truncated {
        packet: PacketType,
        field: &'static str,
    },
    #[error("{packet}: {count} unexpected bytes after the end of the packet")]
    TrailingBytes { packet: PacketType, count: usize },
    #[error("{packet}: {field} {error}")]
    InvalidString {
        packet: PacketType,
        field: &'static str,
        error: StringError,
    },
    #[error("{packet}: packet identifier 0")]
    ZeroPacketId { packet: PacketType },
    #[error("CONNECT: protocol {name:?} level {level} is not supported")]
    UnsupportedProtocol { name: String, level: u8 },
    #[error("CONNECT: reserved flag is set")]
    ConnectReservedFlag,
    #[error("CONNECT: will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    #[error("CONNECT: password flag set without the user name flag")]
    PasswordWithoutUsername,
    #[error("CONNACK: reserved acknowledge flags {flags:#04x}")]
    ConnAckReservedFlags { flags: u8 },
    #[error("CONNACK: Session Present set on a refusal")]
    SessionPresentOnRefusal,
    #[error("AUTH: no authentication method")]
    AuthWithoutMethod,
    #[error("{packet}: reason code {code:#04x} is not allowed")]
    InvalidReasonCode { packet: PacketType, code: u8 },
    #[error("{packet}: unknown property identifier {id:#04x}")]
    UnknownProperty { packet: PacketType, id: u32 },
    #[error("{packet}: property {name} is not allowed")]
    PropertyNotAllowed {
        packet: PacketType,
        name: &'static str,
    },
    #[error("{packet}: property {name} appears more than once")]
    DuplicateProperty {
        packet: PacketType,
        name: &'static str,
    },
    #[error("{packet}: property {name} has the invalid value {value}")]
    InvalidPropertyValue {
        packet: PacketType,
        name: &'static str,
        value: u32,
    },
    #[error("PUBLISH: topic alias 0")]
    TopicAliasZero,
    #[error("{packet}: authentication data without an authentication method")]
    AuthDataWithoutMethod { packet: PacketType },
    #[error("{packet}: {field} {topic:?} is not a valid topic name: {error}")]
    InvalidTopicName {
        packet: PacketType,
        field: &'static str,
        topic: String,
        error: TopicError,
    },
    #[error("PUBLISH: empty topic name without a topic alias")]
    EmptyTopicWithoutAlias,
    #[error("{packet}: topic filter {filter:?} is not valid: {error}")]
    InvalidTopicFilter {
        packet: PacketType,
        filter: String,
        error: TopicError,
    },
    #[error("{packet}: the payload is empty")]
    EmptyPayload { packet: PacketType },
    #[error("SUBSCRIBE: reserved bits set in subscription options {options:#04x}")]
    ReservedSubscriptionOptions { options: u8 },
    #[error("SUBSCRIBE: retain handling 3")]
    InvalidRetainHandling,
    #[error("SUBSCRIBE: No Local set on shared subscription {filter:?}")]
    NoLocalOnSharedSubscription { filter: String },
}

impl DecodeError {
    /// The reason code a v5 server sends for this error (in CONNACK when it concerns CONNECT,
    /// in DISCONNECT otherwise). Where the spec names a code for a rule, that code; where it is
    /// silent, MQTT 5.0 section 4.13's split: a packet that cannot be parsed is a Malformed
    /// Packet (0x81), a parsed packet whose content the spec forbids is a Protocol Error (0x82).
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            TopicAliasZero => ReasonCode::TopicAliasInvalid,
            UnsupportedProtocol { .. } => ReasonCode::UnsupportedProtocolVersion,
            // MQTT 5.0 section 3.8.3.1: a Maximum QoS of 3 in subscription options is a Protocol
            // Error; QoS 3 in PUBLISH or the will is a Malformed Packet.
            InvalidQoS {
                packet: PacketType::Subscribe,
                ..
            }
            | ZeroPacketId { .. }
            | InvalidReasonCode { .. }
            | InvalidTopicName { .. }
            | InvalidTopicFilter { .. }
            | SessionPresentOnRefusal
            | AuthWithoutMethod
            | DuplicateProperty { .. }
            | InvalidPropertyValue { .. }
            | AuthDataWithoutMethod { .. }
            | EmptyTopicWithoutAlias
            | EmptyPayload { .. }
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription { .. } => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{packet} does not exist in MQTT {version}")]
    PacketNotInVersion {
        packet: PacketType,
        version: ProtocolVersion,
    },
    #[error("{packet}: {field} is longer than 65535 bytes")]
    StringTooLong {
        packet: PacketType,
        field: &'static str,
    },
    #[error("{packet}: {field} value {value} exceeds 268435455")]
    VarIntTooLarge {
        packet: PacketType,
        field: &'static str,
        value: u64,
    },
    #[error("{packet}: packet identifier must be present exactly when QoS is above 0")]
    PacketIdMismatch { packet: PacketType },
    #[error("{packet}: needs at least one entry")]
    Empty { packet: PacketType },
    #[error("CONNECT: MQTT 3.1.1 does not allow a password without a user name")]
    PasswordWithoutUsername,
    #[error("{packet}: packet of {size} bytes exceeds the limit of {max} bytes")]
    PacketTooLarge {
        packet: PacketType,
        size: usize,
        max: usize,
    },
}

/// Keeps at most 100 bytes of client-supplied text for an error message, on a char boundary.
pub(crate) fn excerpt(text: &str) -> String {
    const LIMIT: usize = 100;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
