//! The fifteen control packets, and the dispatch between a fixed header and the packet body
//! codecs. Each body codec lives in its own file; this module owns the fixed header on the
//! encoding side and the `Packet` enum.

mod ack;
mod connack;
mod connect;
mod publish;
mod reason_tail;
mod subscribe;
mod unsubscribe;

use bytes::{BufMut, Bytes, BytesMut};

pub use ack::Ack;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use publish::Publish;
pub use reason_tail::{Auth, Disconnect};
pub use subscribe::{RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions};
pub use unsubscribe::{UnsubAck, Unsubscribe};

use crate::error::{DecodeError, EncodeError};
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::{put_varint, varint_len, Reader, VARINT_MAX};

/// A decoded MQTT control packet, of either protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Decodes a packet body whose fixed header has already been read and checked.
    pub(crate) fn decode_body(
        packet: PacketType,
        flags: u8,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Packet, DecodeError> {
        let r = Reader::new(body, packet);
        Ok(match packet {
            PacketType::Connect => Packet::Connect(Box::new(Connect::decode(r)?)),
            PacketType::ConnAck => Packet::ConnAck(Box::new(ConnAck::decode(r, version)?)),
            PacketType::Publish => Packet::Publish(Publish::decode(r, flags, version)?),
            PacketType::PubAck => Packet::PubAck(Ack::decode(r, version)?),
            PacketType::PubRec => Packet::PubRec(Ack::decode(r, version)?),
            PacketType::PubRel => Packet::PubRel(Ack::decode(r, version)?),
            PacketType::PubComp => Packet::PubComp(Ack::decode(r, version)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, version)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, version)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version)?),
            PacketType::PingReq => {
                r.finish()?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                r.finish()?;
                Packet::PingResp
            }
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, version)?),
            PacketType::Auth => Packet::Auth(Auth::decode(r)?),
        })
    }

    /// The fixed header's low nibble.
    fn flags(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.flags(),
            other => other.packet_type().required_flags(),
        }
    }

    /// The remaining length: the size of everything after the fixed header.
    fn body_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Packet::Connect(p) => p.body_len(),
            Packet::ConnAck(p) => p.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.body_len(version)
            }
            Packet::Subscribe(p) => p.body_len(version),
            Packet::SubAck(p) => p.body_len(version),
            Packet::Unsubscribe(p) => p.body_len(version),
            Packet::UnsubAck(p) => p.body_len(version),
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(p) => p.body_len(version),
            Packet::Auth(p) => p.body_len(),
        }
    }

    fn write_body(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let packet = self.packet_type();
        match self {
            Packet::Connect(p) => p.write_body(buf),
            Packet::ConnAck(p) => p.write_body(version, buf),
            Packet::Publish(p) => p.write_body(version, buf),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.write_body(packet, version, buf)
            }
            Packet::Subscribe(p) => p.write_body(version, buf),
            Packet::SubAck(p) => p.write_body(version, buf),
            Packet::Unsubscribe(p) => p.write_body(version, buf),
            Packet::UnsubAck(p) => p.write_body(version, buf),
            Packet::PingReq | Packet::PingResp => Ok(()),
            Packet::Disconnect(p) => p.write_body(version, buf),
            Packet::Auth(p) => p.write_body(version, buf),
        }
    }

    /// The size of the whole packet on the wire in `version`, fixed header included. A CONNECT
    /// is always sized in its own protocol version.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        frame_len(self.body_len(self.effective_version(version)))
    }

    /// CONNECT names its own version; every other packet is encoded in the session's.
    fn effective_version(&self, version: ProtocolVersion) -> ProtocolVersion {
        match self {
            Packet::Connect(c) => c.protocol,
            _ => version,
        }
    }

    /// Appends the packet to `buf`. On error `buf` is left as it was.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let version = self.effective_version(version);
        let packet = self.packet_type();
        if packet == PacketType::Auth && !version.is_v5() {
            return Err(EncodeError::PacketNotInVersion { packet, version });
        }
        let body_len = self.body_len(version);
        if body_len > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge {
                packet,
                size: body_len,
                max: VARINT_MAX as usize,
            });
        }
        let start = buf.len();
        buf.reserve(1 + varint_len(body_len as u32) + body_len);
        buf.put_u8(((packet as u8) << 4) | self.flags());
        put_varint(buf, body_len as u32);
        let body_start = buf.len();
        match self.write_body(version, buf) {
            Ok(()) => {
                debug_assert_eq!(buf.len() - body_start, body_len, "{packet} size");
                Ok(())
            }
            Err(e) => {
                buf.truncate(start);
                Err(e)
            }
        }
    }
}

/// The size of a whole packet whose body (remaining length) is `body` bytes.
pub(crate) fn frame_len(body: usize) -> usize {
    1 + varint_len(u32::try_from(body).unwrap_or(u32::MAX)) + body
}

macro_rules! from_body {
    ($($variant:ident($ty:ty)),*) => {
        $(impl From<$ty> for Packet {
            fn from(p: $ty) -> Packet {
                Packet::$variant(p.into())
            }
        })*
    };
}

from_body!(
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    Disconnect(Disconnect),
    Auth(Auth)
);
