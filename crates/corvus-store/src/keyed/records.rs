//! The hand-written binary encoding of the keyed records (format version 1).
//!
//! Every value starts with a record version byte ([`RECORD_VERSION`]). Integers are
//! little-endian. Strings that are MQTT strings (topics, filters, property strings) carry a
//! `u16` length and are validated as MQTT strings when read; client identifiers and binary
//! data carry a `u32` length. Optional fields are announced by a flags byte; unknown flag bits,
//! trailing bytes, lengths running past the end and invalid values are errors, never panics.
//! See `docs/storage-format.md`, "Keyed state (redb)".

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use corvus_core::session::PendingWill;
use corvus_core::{ClientId, Message, Millis, SubscriptionEntry};
use mqtt_codec::{MqttString, PublishProperties, QoS, RetainHandling, SubscriptionOptions};

/// The version byte this build writes at the start of every record, and the only one it reads.
pub const RECORD_VERSION: u8 = 1;

/// What the store keeps about one session (its subscriptions and inbound QoS 2 packet ids are
/// kept in their own tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session Expiry Interval in seconds; `corvus_core::session::NEVER_EXPIRES` for ever.
    pub expiry_interval: u32,
    /// When the last connection closed; `None` while a connection owned the session.
    pub disconnected_at: Option<Millis>,
    /// A will waiting for its delay.
    pub pending_will: Option<PendingWill>,
    /// The last packet id handed out towards the client.
    pub last_packet_id: u16,
}

impl SessionRecord {
    /// When the session ends if nobody reconnects (same rule as `Session::expires_at`).
    pub fn expires_at(&self) -> Option<Millis> {
        let since = self.disconnected_at?;
        (self.expiry_interval != corvus_core::session::NEVER_EXPIRES)
            .then(|| since.saturating_add(u64::from(self.expiry_interval) * 1000))
    }

    /// True once `now` has reached the expiry time.
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }
}

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
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
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
    fn count(&mut self, min_size: usize, what: &'static str) -> Result<usize, DecodeError> {
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

fn qos(bits: u8) -> Result<QoS, DecodeError> {
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

// ---- records ----

const S_DISCONNECTED: u8 = 1 << 0;
const S_WILL: u8 = 1 << 1;

/// Encodes a session record.
pub fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::record();
    w.u32(s.expiry_interval);
    w.u16(s.last_packet_id);
    let mut flags = 0;
    if s.disconnected_at.is_some() {
        flags |= S_DISCONNECTED;
    }
    if s.pending_will.is_some() {
        flags |= S_WILL;
    }
    w.u8(flags);
    if let Some(at) = s.disconnected_at {
        w.u64(at);
    }
    if let Some(will) = &s.pending_will {
        w.u64(will.due_at);
        write_message(&mut w, &will.message);
    }
    w.finish()
}

/// Decodes a session record.
pub fn decode_session(data: &[u8]) -> Result<SessionRecord, DecodeError> {
    let mut r = Reader::record(data)?;
    let expiry_interval = r.u32("session expiry interval")?;
    let last_packet_id = r.u16("last packet id")?;
    let flags = r.u8("session flags")?;
    if flags & !(S_DISCONNECTED | S_WILL) != 0 {
        return Err(DecodeError::Invalid("session flags"));
    }
    let disconnected_at = if flags & S_DISCONNECTED != 0 {
        Some(r.u64("disconnected at")?)
    } else {
        None
    };
    let pending_will = if flags & S_WILL != 0 {
        let due_at = r.u64("will due at")?;
        let message = Arc::new(read_message(&mut r)?);
        Some(PendingWill { message, due_at })
    } else {
        None
    };
    r.finish()?;
    Ok(SessionRecord {
        expiry_interval,
        disconnected_at,
        pending_will,
        last_packet_id,
    })
}

const SUB_IDENTIFIER: u8 = 1 << 0;

/// Encodes a subscription entry. The options byte has the layout of the SUBSCRIBE options byte
/// (MQTT 5.0 section 3.8.3.1).
pub fn encode_subscription(e: &SubscriptionEntry) -> Vec<u8> {
    let mut w = Writer::record();
    let o = &e.options;
    w.u8(o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4);
    w.u8(if e.identifier.is_some() {
        SUB_IDENTIFIER
    } else {
        0
    });
    if let Some(id) = e.identifier {
        w.u32(id);
    }
    w.finish()
}

/// Decodes a subscription entry.
pub fn decode_subscription(data: &[u8]) -> Result<SubscriptionEntry, DecodeError> {
    let mut r = Reader::record(data)?;
    let o = r.u8("subscription options")?;
    if o & 0xC0 != 0 {
        return Err(DecodeError::Invalid("subscription options"));
    }
    let retain_handling = match (o >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Invalid("retain handling")),
    };
    let options = SubscriptionOptions {
        qos: qos(o & 0b11)?,
        no_local: o & (1 << 2) != 0,
        retain_as_published: o & (1 << 3) != 0,
        retain_handling,
    };
    let flags = r.u8("subscription flags")?;
    if flags & !SUB_IDENTIFIER != 0 {
        return Err(DecodeError::Invalid("subscription flags"));
    }
    let identifier = if flags & SUB_IDENTIFIER != 0 {
        Some(r.u32("subscription identifier")?)
    } else {
        None
    };
    r.finish()?;
    Ok(SubscriptionEntry {
        options,
        identifier,
    })
}

/// Encodes a retained message.
pub fn encode_retained(m: &Message) -> Vec<u8> {
    let mut w = Writer::record();
    write_message(&mut w, m);
    w.finish()
}

/// Decodes a retained message.
pub fn decode_retained(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::record(data)?;
    let m = read_message(&mut r)?;
    r.finish()?;
    Ok(m)
}
