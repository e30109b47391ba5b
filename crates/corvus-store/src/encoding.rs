//! The binary encoding shared by both stores: little-endian primitives, MQTT strings,
//! length-prefixed bytes, and the one encoding of an application [`Message`] with its
//! properties, used by keyed records (retained messages, wills) and by the queue journal alike.
//!
//! Writing never fails (every length fits by construction); reading is defensive: lengths are
//! checked before use, counts are refused before allocating, unknown flag bits and invalid
//! values are errors, never panics.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use corvus_core::{ClientId, Message};
use mqtt_codec::{MqttString, PublishProperties, QoS};

/// The version byte this build writes at the start of every record, and the only one it reads.
pub const RECORD_VERSION: u8 = 1;

/// Why stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is empty (no version byte).
    Empty,
    /// The record was written in a record version this build does not read.
    UnsupportedVersion(u8),
    /// The bytes end before the field.
    Truncated(&'static str),
    /// Bytes are left after the record.
    TrailingBytes(usize),
    /// A field holds a value that is not allowed.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty record"),
            DecodeError::UnsupportedVersion(v) => write!(
                f,
                "record version {v} is not supported (this build reads version {RECORD_VERSION})"
            ),
            DecodeError::Truncated(what) => write!(f, "truncated at {what}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            DecodeError::Invalid(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

// ---- primitives ----

#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn record() -> Writer {
        Writer {
            buf: vec![RECORD_VERSION],
        }
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// An MQTT string: at most 65,535 bytes by construction.
    pub(crate) fn mqtt_str(&mut self, s: &MqttString) {
        let b = s.as_bytes();
        // MqttString guarantees the length fits; saturate rather than panic regardless.
        self.u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
        self.buf
            .extend_from_slice(&b[..b.len().min(usize::from(u16::MAX))]);
    }
    /// Bytes with a `u32` length (payloads, client ids, correlation data).
    pub(crate) fn bytes32(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(&b[..len as usize]);
    }
}

pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over bytes with no record version byte in front (a message embedded in
    /// another record).
    pub(crate) fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    /// Checks the version byte and returns a reader over the rest.
    pub(crate) fn record(data: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        let (&version, rest) = data.split_first().ok_or(DecodeError::Empty)?;
        if version != RECORD_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        Ok(Reader { data: rest })
    }
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.data.len()))
        }
    }
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.data.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }
    fn remaining(&self) -> usize {
        self.data.len()
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn mqtt_str(&mut self, what: &'static str) -> Result<MqttString, DecodeError> {
        let len = self.u16(what)?;
        let b = self.take(usize::from(len), what)?;
        MqttString::from_bytes(Bytes::copy_from_slice(b)).map_err(|_| DecodeError::Invalid(what))
    }
    pub(crate) fn bytes32(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(what))?;
        self.take(len, what)
    }
    pub(crate) fn client_id(&mut self, what: &'static str) -> Result<ClientId, DecodeError> {
        let b = self.bytes32(what)?;
        decode_client_id(b).ok_or(DecodeError::Invalid(what))
    }
    /// A count of elements each at least `min_size` bytes long: refused if the rest of the
    /// record cannot hold that many, so a corrupt count cannot make us allocate.
    pub(crate) fn count(
        &mut self,
        min_size: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.remaining() {
            return Err(DecodeError::Truncated(what));
        }
        Ok(n)
    }
}

/// A client id stored as a key: UTF-8.
pub(crate) fn decode_client_id(b: &[u8]) -> Option<ClientId> {
    std::str::from_utf8(b).ok().map(Arc::from)
}

/// A topic or filter stored as a key: an MQTT string.
pub(crate) fn decode_mqtt_key(b: &[u8]) -> Option<MqttString> {
    if b.len() > MqttString::MAX_LEN {
        return None;
    }
    MqttString::from_bytes(Bytes::copy_from_slice(b)).ok()
}

pub(crate) fn qos(bits: u8) -> Result<QoS, DecodeError> {
    QoS::from_bits(bits).ok_or(DecodeError::Invalid("qos"))
}

// ---- message ----

const MSG_RETAIN: u8 = 1 << 2;
const MSG_EXPIRES: u8 = 1 << 3;
const MSG_PUBLISHER: u8 = 1 << 4;
const MSG_KNOWN: u8 = 0b11 | MSG_RETAIN | MSG_EXPIRES | MSG_PUBLISHER;

const P_PFI: u8 = 1 << 0;
const P_MEI: u8 = 1 << 1;
const P_ALIAS: u8 = 1 << 2;
const P_RESPONSE: u8 = 1 << 3;
const P_CORRELATION: u8 = 1 << 4;
const P_CONTENT: u8 = 1 << 5;
const P_KNOWN: u8 = 0b11_1111;

pub(crate) fn write_message(w: &mut Writer, m: &Message) {
    w.mqtt_str(&m.topic);
    w.bytes32(&m.payload);
    let mut flags = m.qos as u8;
    if m.retain {
        flags |= MSG_RETAIN;
    }
    if m.expires_at.is_some() {
        flags |= MSG_EXPIRES;
    }
    if m.publisher.is_some() {
        flags |= MSG_PUBLISHER;
    }
    w.u8(flags);
    if let Some(at) = m.expires_at {
        w.u64(at);
    }
    if let Some(p) = &m.publisher {
        w.bytes32(p.as_bytes());
    }
    write_properties(w, &m.properties);
}

pub(crate) fn read_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let topic = r.mqtt_str("message topic")?;
    let payload = Bytes::copy_from_slice(r.bytes32("message payload")?);
    let flags = r.u8("message flags")?;
    if flags & !MSG_KNOWN != 0 {
        return Err(DecodeError::Invalid("message flags"));
    }
    let qos = qos(flags & 0b11)?;
    let expires_at = if flags & MSG_EXPIRES != 0 {
        Some(r.u64("message expiry")?)
    } else {
        None
    };
    let publisher = if flags & MSG_PUBLISHER != 0 {
        Some(r.client_id("message publisher")?)
    } else {
        None
    };
    let properties = read_properties(r)?;
    Ok(Message {
        topic,
        payload,
        qos,
        retain: flags & MSG_RETAIN != 0,
        properties,
        expires_at,
        publisher,
        // Never written: a stamp from before a restart means nothing on the new clock.
        received_at: None,
    })
}

fn write_properties(w: &mut Writer, p: &PublishProperties) {
    let mut present = 0u8;
    for (bit, set) in [
        (P_PFI, p.payload_format_indicator.is_some()),
        (P_MEI, p.message_expiry_interval.is_some()),
        (P_ALIAS, p.topic_alias.is_some()),
        (P_RESPONSE, p.response_topic.is_some()),
        (P_CORRELATION, p.correlation_data.is_some()),
        (P_CONTENT, p.content_type.is_some()),
    ] {
        if set {
            present |= bit;
        }
    }
    w.u8(present);
    if let Some(v) = p.payload_format_indicator {
        w.u8(u8::from(v));
    }
    if let Some(v) = p.message_expiry_interval {
        w.u32(v);
    }
    if let Some(v) = p.topic_alias {
        w.u16(v);
    }
    if let Some(v) = &p.response_topic {
        w.mqtt_str(v);
    }
    if let Some(v) = &p.correlation_data {
        w.bytes32(v);
    }
    if let Some(v) = &p.content_type {
        w.mqtt_str(v);
    }
    w.u32(u32::try_from(p.user_properties.len()).unwrap_or(u32::MAX));
    for (k, v) in p.user_properties.iter().take(u32::MAX as usize) {
        w.mqtt_str(k);
        w.mqtt_str(v);
    }
    w.u32(u32::try_from(p.subscription_identifiers.len()).unwrap_or(u32::MAX));
    for &id in p.subscription_identifiers.iter().take(u32::MAX as usize) {
        w.u32(id);
    }
}

fn read_properties(r: &mut Reader<'_>) -> Result<PublishProperties, DecodeError> {
    let present = r.u8("property flags")?;
    if present & !P_KNOWN != 0 {
        return Err(DecodeError::Invalid("property flags"));
    }
    let mut p = PublishProperties::default();
    if present & P_PFI != 0 {
        p.payload_format_indicator = Some(match r.u8("payload format indicator")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("payload format indicator")),
        });
    }
    if present & P_MEI != 0 {
        p.message_expiry_interval = Some(r.u32("message expiry interval")?);
    }
    if present & P_ALIAS != 0 {
        p.topic_alias = Some(r.u16("topic alias")?);
    }
    if present & P_RESPONSE != 0 {
        p.response_topic = Some(r.mqtt_str("response topic")?);
    }
    if present & P_CORRELATION != 0 {
        p.correlation_data = Some(Bytes::copy_from_slice(r.bytes32("correlation data")?));
    }
    if present & P_CONTENT != 0 {
        p.content_type = Some(r.mqtt_str("content type")?);
    }
    let n = r.count(4, "user properties")?;
    p.user_properties.reserve(n);
    for _ in 0..n {
        let k = r.mqtt_str("user property name")?;
        let v = r.mqtt_str("user property value")?;
        p.user_properties.push((k, v));
    }
    let n = r.count(4, "subscription identifiers")?;
    p.subscription_identifiers.reserve(n);
    for _ in 0..n {
        p.subscription_identifiers
            .push(r.u32("subscription identifier")?);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_messages_receive_stamp_is_never_written() {
        let stamped = Message {
            topic: MqttString::from_static("t"),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: None,
            received_at: Some(corvus_core::Stamp::from_micros(42)),
        };
        let unstamped = Message {
            received_at: None,
            ..stamped.clone()
        };
        let encode = |m: &Message| {
            let mut w = Writer::default();
            write_message(&mut w, m);
            w.finish()
        };
        assert_eq!(encode(&stamped), encode(&unstamped));
        let bytes = encode(&stamped);
        let mut r = Reader::new(&bytes);
        assert_eq!(read_message(&mut r).unwrap(), unstamped);
    }
}
