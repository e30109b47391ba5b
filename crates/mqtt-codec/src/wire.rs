//! Primitive wire types (MQTT section 1.5 in both versions): integers, variable byte integers,
//! UTF-8 strings, binary data. [`Reader`] decodes them from a packet body without copying;
//! the `put_*` functions encode them into a `BytesMut`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::string::MqttString;
use crate::types::{PacketId, PacketType};

/// The largest value a variable byte integer can carry (four bytes).
pub const VARINT_MAX: u32 = 268_435_455;

/// Outcome of reading a variable byte integer from the front of a buffer that may be partial.
pub(crate) enum VarInt {
    /// The value and how many bytes it took.
    Complete(u32, usize),
    /// The buffer ends inside the integer.
    Incomplete,
}

/// Reads a variable byte integer, insisting on at most four bytes and on the minimal encoding
/// [MQTT-1.5.5-1]. `field` names what is being read, for the error.
pub(crate) fn read_varint(buf: &[u8], field: &'static str) -> Result<VarInt, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A final byte of zero after a continuation adds nothing: not the minimal form.
            if i > 0 && byte == 0 {
                return Err(DecodeError::VarIntNotMinimal { field });
            }
            return Ok(VarInt::Complete(value, i + 1));
        }
    }
    if buf.len() >= 4 {
        Err(DecodeError::VarIntTooLong { field })
    } else {
        Ok(VarInt::Incomplete)
    }
}

/// How many bytes `value` takes as a variable byte integer.
pub(crate) const fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a Variable Byte Integer (MQTT 5.0 section 1.5.5: a Remaining Length, say); the
/// caller has checked `value <= VARINT_MAX`. Public for encoders outside the codec (the load
/// generator writes its PUBLISH packets by hand).
pub fn put_varint(buf: &mut BytesMut, mut value: u32) {
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Writes a two-byte length and the bytes; fails if they do not fit a two-byte length.
pub(crate) fn put_binary(
    buf: &mut BytesMut,
    bytes: &[u8],
    packet: PacketType,
    field: &'static str,
) -> Result<(), EncodeError> {
    let len =
        u16::try_from(bytes.len()).map_err(|_| EncodeError::StringTooLong { packet, field })?;
    buf.put_u16(len);
    buf.put_slice(bytes);
    Ok(())
}

/// Encoded size of a string or binary field: two length bytes and the content.
pub(crate) const fn prefixed_len(bytes: usize) -> usize {
    2 + bytes
}

/// A cursor over one packet's body. Every read names its field so errors say what was cut off.
pub(crate) struct Reader {
    buf: Bytes,
    packet: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Reader {
        Reader { buf, packet }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated {
                packet: self.packet,
                field,
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        match read_varint(&self.buf, field)? {
            VarInt::Complete(value, len) => {
                self.buf.advance(len);
                Ok(value)
            }
            VarInt::Incomplete => Err(DecodeError::Truncated {
                packet: self.packet,
                field,
            }),
        }
    }

    /// A non-zero packet identifier [MQTT-2.2.1-3].
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        let raw = self.u16("packet identifier")?;
        PacketId::new(raw).ok_or(DecodeError::ZeroPacketId {
            packet: self.packet,
        })
    }

    /// Binary Data: a two-byte length and that many bytes, sliced without copying.
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16(field)?);
        self.take(len, field)
    }

    /// A UTF-8 Encoded String, validated [MQTT-1.5.3-1].
    pub(crate) fn string(&mut self, field: &'static str) -> Result<MqttString, DecodeError> {
        let bytes = self.binary(field)?;
        MqttString::from_bytes(bytes).map_err(|error| DecodeError::InvalidString {
            packet: self.packet,
            field,
            error,
        })
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(len, field)?;
        Ok(self.buf.split_to(len))
    }

    /// Everything that is left (a PUBLISH payload, say).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails if anything is left: a packet longer than its content is malformed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
                count: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (u32, usize) {
        match read_varint(bytes, "test").unwrap() {
            VarInt::Complete(v, n) => (v, n),
            VarInt::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for value in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value));
            assert_eq!(complete(&buf), (value, buf.len()));
        }
    }

    #[test]
    fn mqtt_1_5_5_1_non_minimal_varint_is_malformed() {
        assert!(matches!(
            read_varint(&[0x80, 0x00], "test"),
            Err(DecodeError::VarIntNotMinimal { .. })
        ));
    }

    #[test]
    fn five_byte_varint_is_malformed() {
        assert!(matches!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F], "test"),
            Err(DecodeError::VarIntTooLong { .. })
        ));
    }

    #[test]
    fn partial_varint_is_incomplete() {
        assert!(matches!(
            read_varint(&[0xFF, 0xFF], "test"),
            Ok(VarInt::Incomplete)
        ));
    }
}
