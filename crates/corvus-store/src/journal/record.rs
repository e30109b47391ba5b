//! Journal records and their binary encoding (see `docs/storage-format.md`, "Queue journal").
//!
//! Every record starts with a record-type byte and a version byte; integers are
//! little-endian. Decoding never panics and never allocates more than the input can hold.

use std::fmt;
use std::num::NonZeroU16;
use std::sync::Arc;

use corvus_core::{ClientId, Message};
use mqtt_codec::{PacketId, QoS};

use crate::encoding;
use crate::segment::Seq;

/// A message id, assigned by the journal writer ([`Journal::next_message_id`]).
///
/// [`Journal::next_message_id`]: super::Journal::next_message_id
pub type MessageId = u64;

/// The version of every record type this build writes and reads.
pub const RECORD_VERSION: u8 = 1;

/// Record-type bytes.
pub mod kind {
    /// [`Record::Message`](super::Record::Message).
    pub const MESSAGE: u8 = 1;
    /// [`Record::Enqueue`](super::Record::Enqueue).
    pub const ENQUEUE: u8 = 2;
    /// [`Record::Sent`](super::Record::Sent).
    pub const SENT: u8 = 3;
    /// [`Record::Released`](super::Record::Released).
    pub const RELEASED: u8 = 4;
    /// [`Record::Done`](super::Record::Done).
    pub const DONE: u8 = 5;
    /// [`Record::Copied`](super::Record::Copied).
    pub const COPIED: u8 = 6;
    /// [`Record::Received`](super::Record::Received).
    pub const RECEIVED: u8 = 7;
    /// [`Record::InboundReleased`](super::Record::InboundReleased).
    pub const INBOUND_RELEASED: u8 = 8;
}

/// One queued copy of a message, in a [`Record::Received`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCopy {
    /// The session it is queued for.
    pub client: ClientId,
    /// The message (its `Message` record precedes the `Received`). Copies of one PUBLISH
    /// share it, except a second copy for the same session (a shared and a non-shared
    /// subscription both matched), which has its own: a delivery is known by session and
    /// message id.
    pub message: MessageId,
    /// The QoS it is delivered with.
    pub qos: QoS,
    /// The RETAIN flag as delivered.
    pub retain: bool,
    /// Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

/// Where a copied inflight entry was (see [`Record::Copied`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedSent {
    /// Its packet id.
    pub packet_id: PacketId,
    /// The sequence number of the `Sent` record that put it in flight: its place in the
    /// inflight window.
    pub sent_at: Seq,
    /// Whether PUBREC was received (PUBREL owed).
    pub released: bool,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A message body, written once however many sessions receive it, before its first
    /// `Enqueue`.
    Message {
        /// Its id.
        id: MessageId,
        /// The message.
        message: Arc<Message>,
    },
    /// A delivery of a message to one session, appended to the end of its queue.
    Enqueue {
        /// The session.
        client: ClientId,
        /// The message (its `Message` record precedes this one).
        message: MessageId,
        /// The QoS it is delivered with.
        qos: QoS,
        /// The RETAIN flag as delivered.
        retain: bool,
        /// Identifiers of the matching subscriptions.
        subscription_ids: Vec<u32>,
    },
    /// The delivery went in flight with this packet id (for QoS 0: it was sent, and is gone).
    Sent {
        /// The session.
        client: ClientId,
        /// The message.
        message: MessageId,
        /// The packet id.
        packet_id: PacketId,
    },
    /// PUBREC received for a QoS 2 delivery in flight: PUBREL is owed. Carries the message id
    /// as well as the packet id, so it never depends on what packet ids meant before.
    Released {
        /// The session.
        client: ClientId,
        /// The message.
        message: MessageId,
        /// The packet id.
        packet_id: PacketId,
    },
    /// The delivery is finished: acknowledged, dropped or expired.
    Done {
        /// The session.
        client: ClientId,
        /// The message.
        message: MessageId,
    },
    /// Written by compaction only: a live delivery carried forward from an old segment, with
    /// its whole state and its original places in the queue and the inflight window. It
    /// replaces whatever earlier records said about the delivery.
    Copied {
        /// The session.
        client: ClientId,
        /// The message.
        message: MessageId,
        /// The QoS it is delivered with.
        qos: QoS,
        /// The RETAIN flag as delivered.
        retain: bool,
        /// Identifiers of the matching subscriptions.
        subscription_ids: Vec<u32>,
        /// The sequence number of its original `Enqueue`: its place in the queue.
        queued_at: Seq,
        /// Set if it is in flight.
        sent: Option<CopiedSent>,
    },
    /// A QoS 2 PUBLISH received from a persistent session: its packet id, awaiting PUBREL
    /// (a re-send with the same id is not routed again), and every copy of the message queued
    /// for a persistent session, each appended to the end of its queue as by an `Enqueue`.
    /// One record, so a crash keeps the id and the copies together or neither: the
    /// publisher's re-send then finds exactly what the first routing did. Compaction carries a
    /// live id forward as a `Received` with no copies.
    Received {
        /// The publishing session.
        client: ClientId,
        /// The PUBLISH's packet id.
        packet_id: PacketId,
        /// The copies, in the order they were queued.
        copies: Vec<QueuedCopy>,
    },
    /// PUBREL received for an inbound QoS 2 packet id: it is free again.
    InboundReleased {
        /// The publishing session.
        client: ClientId,
        /// The packet id.
        packet_id: PacketId,
    },
}

impl Record {
    /// The client the record is about (`None` for a message body).
    pub fn client(&self) -> Option<&ClientId> {
        match self {
            Record::Message { .. } => None,
            Record::Enqueue { client, .. }
            | Record::Sent { client, .. }
            | Record::Released { client, .. }
            | Record::Done { client, .. }
            | Record::Copied { client, .. }
            | Record::Received { client, .. }
            | Record::InboundReleased { client, .. } => Some(client),
        }
    }

    /// The message id the record refers to (0 for none; the highest, for `Received`).
    pub fn message_id(&self) -> MessageId {
        match self {
            Record::Message { id, .. } => *id,
            Record::Enqueue { message, .. }
            | Record::Sent { message, .. }
            | Record::Released { message, .. }
            | Record::Done { message, .. }
            | Record::Copied { message, .. } => *message,
            Record::Received { copies, .. } => copies.iter().map(|c| c.message).max().unwrap_or(0),
            Record::InboundReleased { .. } => 0,
        }
    }

    /// Whether the record defines a delivery of message `id` (so its body must come first).
    pub fn needs_body(&self, id: MessageId) -> bool {
        match self {
            Record::Enqueue { message, .. } | Record::Copied { message, .. } => *message == id,
            Record::Received { copies, .. } => copies.iter().any(|c| c.message == id),
            _ => false,
        }
    }

    /// Encodes the record. Fails only for a client id or a count too long for the format.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeRecordError> {
        let mut w = Writer(Vec::with_capacity(64));
        match self {
            Record::Message { id, message } => {
                w.head(kind::MESSAGE);
                w.u64(*id);
                encode_message(&mut w, message)?;
            }
            Record::Enqueue {
                client,
                message,
                qos,
                retain,
                subscription_ids,
            } => {
                w.head(kind::ENQUEUE);
                w.delivery(client, *message, *qos, *retain, subscription_ids)?;
            }
            Record::Sent {
                client,
                message,
                packet_id,
            } => {
                w.head(kind::SENT);
                w.str16("client id", client)?;
                w.u64(*message);
                w.u16(packet_id.get());
            }
            Record::Released {
                client,
                message,
                packet_id,
            } => {
                w.head(kind::RELEASED);
                w.str16("client id", client)?;
                w.u64(*message);
                w.u16(packet_id.get());
            }
            Record::Done { client, message } => {
                w.head(kind::DONE);
                w.str16("client id", client)?;
                w.u64(*message);
            }
            Record::Copied {
                client,
                message,
                qos,
                retain,
                subscription_ids,
                queued_at,
                sent,
            } => {
                w.head(kind::COPIED);
                w.delivery(client, *message, *qos, *retain, subscription_ids)?;
                w.u64(queued_at.0);
                match sent {
                    None => w.u8(0),
                    Some(s) => {
                        w.u8(if s.released { 2 } else { 1 });
                        w.u16(s.packet_id.get());
                        w.u64(s.sent_at.0);
                    }
                }
            }
            Record::Received {
                client,
                packet_id,
                copies,
            } => {
                w.head(kind::RECEIVED);
                w.str16("client id", client)?;
                w.u16(packet_id.get());
                w.count32("copies", copies.len())?;
                for c in copies {
                    w.delivery(&c.client, c.message, c.qos, c.retain, &c.subscription_ids)?;
                }
            }
            Record::InboundReleased { client, packet_id } => {
                w.head(kind::INBOUND_RELEASED);
                w.str16("client id", client)?;
                w.u16(packet_id.get());
            }
        }
        Ok(w.0)
    }

    /// Decodes a record. Never panics; the error says what was wrong and where.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let mut r = Reader { bytes, pos: 0 };
        let kind = r.u8("record type")?;
        if !(kind::MESSAGE..=kind::INBOUND_RELEASED).contains(&kind) {
            return Err(RecordError::UnknownType(kind));
        }
        let version = r.u8("record version")?;
        if version != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion { kind, version });
        }
        let record = match kind {
            kind::MESSAGE => {
                let id = r.u64("message id")?;
                let message = Arc::new(decode_message(&mut r)?);
                Record::Message { id, message }
            }
            kind::ENQUEUE => {
                let QueuedCopy {
                    client,
                    message,
                    qos,
                    retain,
                    subscription_ids,
                } = r.delivery()?;
                Record::Enqueue {
                    client,
                    message,
                    qos,
                    retain,
                    subscription_ids,
                }
            }
            kind::SENT | kind::RELEASED => {
                let client = r.client()?;
                let message = r.u64("message id")?;
                let packet_id = r.packet_id()?;
                if kind == kind::SENT {
                    Record::Sent {
                        client,
                        message,
                        packet_id,
                    }
                } else {
                    Record::Released {
                        client,
                        message,
                        packet_id,
                    }
                }
            }
            kind::DONE => {
                let client = r.client()?;
                let message = r.u64("message id")?;
                Record::Done { client, message }
            }
            kind::RECEIVED => {
                let client = r.client()?;
                let packet_id = r.packet_id()?;
                // A copy is at least a client id length, a message id, flags and a list count.
                let n = r.count32("copies", 15)?;
                let mut copies = Vec::with_capacity(n);
                for _ in 0..n {
                    copies.push(r.delivery()?);
                }
                Record::Received {
                    client,
                    packet_id,
                    copies,
                }
            }
            kind::INBOUND_RELEASED => {
                let client = r.client()?;
                let packet_id = r.packet_id()?;
                Record::InboundReleased { client, packet_id }
            }
            _ => {
                let QueuedCopy {
                    client,
                    message,
                    qos,
                    retain,
                    subscription_ids,
                } = r.delivery()?;
                let queued_at = Seq(r.u64("queued_at")?);
                let at = r.pos;
                let sent = match r.u8("sent state")? {
                    0 => None,
                    s @ (1 | 2) => Some(CopiedSent {
                        packet_id: r.packet_id()?,
                        sent_at: Seq(r.u64("sent_at")?),
                        released: s == 2,
                    }),
                    other => {
                        return Err(RecordError::Invalid {
                            field: "sent state",
                            offset: at,
                            reason: format!("{other} is not 0, 1 or 2"),
                        })
                    }
                };
                Record::Copied {
                    client,
                    message,
                    qos,
                    retain,
                    subscription_ids,
                    queued_at,
                    sent,
                }
            }
        };
        if r.pos != bytes.len() {
            return Err(RecordError::Trailing {
                offset: r.pos,
                extra: bytes.len() - r.pos,
            });
        }
        Ok(record)
    }
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {field}: {reason}")]
pub struct EncodeRecordError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record-type byte is not one this build knows.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// The record type is known but its version is not.
    #[error("record type {kind} version {version} is not supported (this build reads version 1)")]
    UnsupportedVersion {
        /// The record type.
        kind: u8,
        /// The version found.
        version: u8,
    },
    /// The record ends in the middle of a field.
    #[error("record truncated at byte {offset}: {field} needs {need} bytes, {have} left")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {field} at byte {offset}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Bytes left over after the last field.
    #[error("{extra} unexpected bytes after the record's end at byte {offset}")]
    Trailing {
        /// Where the record should have ended.
        offset: usize,
        /// How many bytes follow.
        extra: usize,
    },
}

fn delivery_flags(qos: QoS, retain: bool) -> u8 {
    (qos as u8) << 1 | u8::from(retain)
}

/// A message body, in the encoding the keyed store uses for retained messages and wills
/// (`crate::encoding`), as one length-prefixed field: one message format for the whole store.
fn encode_message(w: &mut Writer, m: &Message) -> Result<(), EncodeRecordError> {
    let mut body = encoding::Writer::default();
    encoding::write_message(&mut body, m);
    w.bytes32("message", &body.finish())
}

fn decode_message(r: &mut Reader) -> Result<Message, RecordError> {
    let offset = r.pos;
    let bytes = r.bytes32("message")?;
    let mut body = encoding::Reader::new(bytes);
    encoding::read_message(&mut body)
        .and_then(|message| body.finish().map(|()| message))
        .map_err(|e| RecordError::Invalid {
            field: "message",
            offset,
            reason: e.to_string(),
        })
}

fn qos_from_bits(bits: u8, field: &'static str, offset: usize) -> Result<QoS, RecordError> {
    QoS::from_bits(bits).ok_or(RecordError::Invalid {
        field,
        offset,
        reason: "QoS 3".into(),
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn head(&mut self, kind: u8) {
        self.0.push(kind);
        self.0.push(RECORD_VERSION);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn count32(&mut self, field: &'static str, n: usize) -> Result<(), EncodeRecordError> {
        let n = u32::try_from(n).map_err(|_| EncodeRecordError {
            field,
            reason: format!("{n} is more than 2^32 - 1"),
        })?;
        self.u32(n);
        Ok(())
    }
    fn str16(&mut self, field: &'static str, s: &str) -> Result<(), EncodeRecordError> {
        let n = u16::try_from(s.len()).map_err(|_| EncodeRecordError {
            field,
            reason: format!("{} bytes is longer than 65535", s.len()),
        })?;
        self.u16(n);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn bytes32(&mut self, field: &'static str, b: &[u8]) -> Result<(), EncodeRecordError> {
        self.count32(field, b.len())?;
        self.0.extend_from_slice(b);
        Ok(())
    }
    /// What every delivery record (`Enqueue`, `Copied`, each copy in a `Received`) starts
    /// with: client id, message id, delivery flags, subscription ids.
    fn delivery(
        &mut self,
        client: &str,
        message: MessageId,
        qos: QoS,
        retain: bool,
        subscription_ids: &[u32],
    ) -> Result<(), EncodeRecordError> {
        self.str16("client id", client)?;
        self.u64(message);
        self.u8(delivery_flags(qos, retain));
        self.u32_list("subscription ids", subscription_ids)
    }
    fn u32_list(&mut self, field: &'static str, v: &[u32]) -> Result<(), EncodeRecordError> {
        self.count32(field, v.len())?;
        for &x in v {
            self.u32(x);
        }
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], RecordError> {
        let have = self.bytes.len() - self.pos;
        if n > have {
            return Err(RecordError::Truncated {
                field,
                offset: self.pos,
                need: n,
                have,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    /// A count of elements of at least `min_size` bytes each, checked against what is left.
    fn count32(&mut self, field: &'static str, min_size: usize) -> Result<usize, RecordError> {
        let at = self.pos;
        let n = self.u32(field)? as usize;
        let left = self.bytes.len() - self.pos;
        if n.saturating_mul(min_size) > left {
            return Err(RecordError::Invalid {
                field,
                offset: at,
                reason: format!("count {n} does not fit in the {left} bytes left"),
            });
        }
        Ok(n)
    }
    fn str16(&mut self, field: &'static str) -> Result<&'a str, RecordError> {
        let n = self.u16(field)? as usize;
        let at = self.pos;
        let b = self.take(field, n)?;
        std::str::from_utf8(b).map_err(|e| RecordError::Invalid {
            field,
            offset: at,
            reason: e.to_string(),
        })
    }
    fn client(&mut self) -> Result<ClientId, RecordError> {
        Ok(self.str16("client id")?.into())
    }
    /// A length-prefixed field, borrowed: the message decoder copies what it keeps.
    fn bytes32(&mut self, field: &'static str) -> Result<&'a [u8], RecordError> {
        let n = self.count32(field, 1)?;
        self.take(field, n)
    }
    fn u32_list(&mut self, field: &'static str) -> Result<Vec<u32>, RecordError> {
        let n = self.count32(field, 4)?;
        (0..n).map(|_| self.u32(field)).collect()
    }
    /// The fields [`Writer::delivery`] writes.
    fn delivery(&mut self) -> Result<QueuedCopy, RecordError> {
        let client = self.client()?;
        let message = self.u64("message id")?;
        let (qos, retain) = self.delivery_flags()?;
        let subscription_ids = self.u32_list("subscription ids")?;
        Ok(QueuedCopy {
            client,
            message,
            qos,
            retain,
            subscription_ids,
        })
    }
    fn delivery_flags(&mut self) -> Result<(QoS, bool), RecordError> {
        let at = self.pos;
        let f = self.u8("delivery flags")?;
        if f & !0x07 != 0 {
            return Err(RecordError::Invalid {
                field: "delivery flags",
                offset: at,
                reason: format!("unknown bits in {f:#04x}"),
            });
        }
        Ok((qos_from_bits(f >> 1, "delivery flags", at)?, f & 1 != 0))
    }
    fn packet_id(&mut self) -> Result<PacketId, RecordError> {
        let at = self.pos;
        NonZeroU16::new(self.u16("packet id")?).ok_or(RecordError::Invalid {
            field: "packet id",
            offset: at,
            reason: "0".into(),
        })
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Message { id, message } => {
                write!(f, "Message {id} topic {:?}", message.topic.as_str())
            }
            Record::Enqueue {
                client, message, ..
            } => write!(f, "Enqueue {client:?} {message}"),
            Record::Sent {
                client,
                message,
                packet_id,
            } => write!(f, "Sent {client:?} {message} packet {packet_id}"),
            Record::Released {
                client,
                message,
                packet_id,
            } => write!(f, "Released {client:?} {message} packet {packet_id}"),
            Record::Done { client, message } => write!(f, "Done {client:?} {message}"),
            Record::Copied {
                client, message, ..
            } => write!(f, "Copied {client:?} {message}"),
            Record::Received {
                client,
                packet_id,
                copies,
            } => write!(
                f,
                "Received {client:?} packet {packet_id} ({} copies)",
                copies.len()
            ),
            Record::InboundReleased { client, packet_id } => {
                write!(f, "InboundReleased {client:?} packet {packet_id}")
            }
        }
    }
}
