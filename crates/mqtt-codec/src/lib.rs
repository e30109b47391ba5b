//! The MQTT 3.1.1 and 5.0 wire format: every control packet, property and reason code, decoded
//! strictly and encoded exactly.
//!
//! This crate owns bytes ⇄ packets and nothing else: no sockets, no tasks, no clocks, no
//! session state. It checks everything that can be judged from one packet and its protocol
//! version (flags, lengths, UTF-8, topic syntax, property placement, duplication and ranges,
//! reason codes) and reports each failure with the reason code the spec asks for
//! ([`DecodeError::reason_code`]). Rules that need a session (packet id reuse, topic alias
//! tables, Receive Maximum) belong to the broker core.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_codec::{Decoder, MqttString, Packet, ProtocolVersion, Publish};
//!
//! let publish = Publish::new(MqttString::from_static("a/b"), "hi".into());
//! let mut wire = BytesMut::new();
//! Packet::from(publish.clone()).encode(ProtocolVersion::V5, &mut wire).unwrap();
//!
//! let mut decoder = Decoder::new(ProtocolVersion::V5);
//! assert_eq!(decoder.decode(&mut wire).unwrap(), Some(Packet::Publish(publish)));
//! ```

#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

mod decoder;
mod error;
mod packet;
pub mod properties;
mod reason;
mod string;
pub mod topic;
mod types;
mod wire;

pub use decoder::{Decoder, MAX_PACKET_SIZE};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Publish, RetainHandling, SubAck, Subscribe,
    Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, UserProperties, WillProperties,
};
pub use reason::ReasonCode;
pub use string::{MqttString, StringError};
pub use topic::TopicError;
pub use types::{PacketId, PacketType, ProtocolVersion, QoS};
pub use wire::{put_varint, VARINT_MAX};
