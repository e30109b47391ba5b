//! Incremental decoding from a connection's read buffer.
//!
//! The caller appends whatever arrived to a `BytesMut` and calls [`Decoder::decode`] until it
//! returns `Ok(None)`. A packet is decoded only once all of it has arrived; until then nothing
//! is copied and nothing is allocated beyond the packet's declared size, which is checked
//! against the maximum packet size as soon as the fixed header is readable, so a peer that
//! declares 256 MB and sends nothing costs nothing. The first byte is checked as soon as it
//! arrives: a reserved type or bad flags fail before any body is waited for.

use bytes::BytesMut;

use crate::error::DecodeError;
use crate::packet::{Packet, Publish};
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::{read_varint, VarInt, VARINT_MAX};

/// The largest packet MQTT can express: a 1-byte type, a 4-byte remaining length and the
/// largest remaining length.
pub const MAX_PACKET_SIZE: u32 = 1 + 4 + VARINT_MAX;

/// The most [`Decoder::decode`] reserves in the read buffer for the rest of a partial packet.
const RESERVE_AHEAD: usize = 8 * 1024;

/// Decodes a stream of packets of one connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    version: ProtocolVersion,
    max_packet_size: u32,
}

impl Decoder {
    /// A decoder for `version` that accepts packets of any size MQTT allows. A server that
    /// does not yet know its peer's version can pass any: CONNECT carries its own, and
    /// decoding one switches the decoder to it.
    pub fn new(version: ProtocolVersion) -> Decoder {
        Decoder {
            version,
            max_packet_size: MAX_PACKET_SIZE,
        }
    }

    /// Refuses packets larger than `max` bytes, fixed header included (MQTT 5.0's Maximum
    /// Packet Size). 0 is treated as 1, the smallest meaningful limit.
    pub fn with_max_packet_size(mut self, max: u32) -> Decoder {
        self.set_max_packet_size(max);
        self
    }

    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max.clamp(1, MAX_PACKET_SIZE);
    }

    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// Takes one complete packet off the front of `buf`, or returns `Ok(None)` if more bytes
    /// are needed. After an error the stream cannot be resynchronised: close the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet = self.check_first_byte(first)?;
        let (remaining, len_bytes) = match read_varint(&buf[1..], "remaining length")? {
            VarInt::Complete(remaining, len_bytes) => (remaining, len_bytes),
            VarInt::Incomplete => return Ok(None),
        };
        let size = 1 + len_bytes as u64 + u64::from(remaining);
        if size > u64::from(self.max_packet_size) {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        // `size` is at most MAX_PACKET_SIZE, which fits any usize this crate builds for.
        let size = size as usize;
        if buf.len() < size {
            // Make room for more of the rest, but only a bounded amount: reserving the whole
            // declared size would let 5 bytes claiming 256 MB allocate 256 MB. `BytesMut`
            // grows by doubling, so a large packet still costs few reallocations.
            buf.reserve((size - buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let mut frame = buf.split_to(size).freeze();
        let body = frame.split_off(1 + len_bytes);
        let decoded = Packet::decode_body(packet, first & 0x0F, body, self.version)?;
        if let Packet::Connect(connect) = &decoded {
            self.version = connect.protocol;
        }
        Ok(Some(decoded))
    }

    /// Checks the packet type and its flags [MQTT-2.2.2-1], [MQTT-2.1.3-1].
    fn check_first_byte(&self, first: u8) -> Result<PacketType, DecodeError> {
        let packet = PacketType::from_nibble(first >> 4).ok_or(DecodeError::ReservedPacketType)?;
        let flags = first & 0x0F;
        if packet == PacketType::Publish {
            Publish::check_flags(flags)?;
        } else if flags != packet.required_flags() {
            return Err(DecodeError::InvalidFlags {
                packet,
                flags,
                expected: packet.required_flags(),
            });
        }
        if packet == PacketType::Auth && !self.version.is_v5() {
            return Err(DecodeError::PacketNotInVersion {
                packet,
                version: self.version,
            });
        }
        Ok(packet)
    }
}
