//! The keyed records (format version 1): sessions, subscriptions, retained messages, in the
//! crate's shared encoding (`crate::encoding`, which also encodes the messages inside them).
//!
//! Every value starts with a record version byte ([`RECORD_VERSION`]). Integers are
//! little-endian. Strings that are MQTT strings (topics, filters, property strings) carry a
//! `u16` length and are validated as MQTT strings when read; client identifiers and binary
//! data carry a `u32` length. Optional fields are announced by a flags byte; unknown flag bits,
//! trailing bytes, lengths running past the end and invalid values are errors, never panics.
//! See `docs/storage-format.md`, "Keyed state (redb)".

use std::sync::Arc;

use corvus_core::session::{ArmedWill, PendingWill};
use corvus_core::{Message, Millis, Principal, SubscriptionEntry};
use mqtt_codec::{RetainHandling, SubscriptionOptions};

pub(crate) use crate::encoding::{
    decode_client_id, decode_mqtt_key, qos, read_message, write_message, Reader, Writer,
};
pub use crate::encoding::{DecodeError, RECORD_VERSION};

/// What the store keeps about one session (its subscriptions are kept in their own table, its
/// inbound QoS 2 packet ids in the queue journal). Its `Debug` does not show a token held in
/// the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session Expiry Interval in seconds; `corvus_core::session::NEVER_EXPIRES` for ever.
    pub expiry_interval: u32,
    /// When the last connection closed; `None` while a connection owned the session.
    pub disconnected_at: Option<Millis>,
    /// A will waiting for its delay.
    pub pending_will: Option<PendingWill>,
    /// The will of the connection that owned the session when this was written (`None`
    /// once it disconnected): due if the broker stopped without that connection ending.
    pub armed_will: Option<ArmedWill>,
    /// The last packet id handed out towards the client.
    pub last_packet_id: u16,
    /// Who the client that armed the will is (`corvus_core::Authorizer::principal`), so
    /// that a recovered will is checked again when it fires; opaque to the store. `None` in
    /// records written before it was kept (flag bit 3 absent), and in records without a
    /// will. May hold a bearer token (its `Debug` does not show it).
    pub principal: Option<Principal>,
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

// ---- records ----

const S_DISCONNECTED: u8 = 1 << 0;
const S_WILL: u8 = 1 << 1;
const S_ARMED_WILL: u8 = 1 << 2;
/// Added after the first release of record version 1: records without it still decode (as
/// no principal); a build from before it quarantines records with it.
const S_PRINCIPAL: u8 = 1 << 3;

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
    if s.armed_will.is_some() {
        flags |= S_ARMED_WILL;
    }
    if s.principal.is_some() {
        flags |= S_PRINCIPAL;
    }
    w.u8(flags);
    if let Some(at) = s.disconnected_at {
        w.u64(at);
    }
    if let Some(will) = &s.pending_will {
        w.u64(will.due_at);
        write_message(&mut w, &will.message);
    }
    if let Some(will) = &s.armed_will {
        w.u32(will.delay_secs);
        write_message(&mut w, &will.message);
    }
    if let Some(principal) = &s.principal {
        w.bytes32(principal.as_str().as_bytes());
    }
    w.finish()
}

/// Decodes a session record.
pub fn decode_session(data: &[u8]) -> Result<SessionRecord, DecodeError> {
    let mut r = Reader::record(data)?;
    let expiry_interval = r.u32("session expiry interval")?;
    let last_packet_id = r.u16("last packet id")?;
    let flags = r.u8("session flags")?;
    if flags & !(S_DISCONNECTED | S_WILL | S_ARMED_WILL | S_PRINCIPAL) != 0 {
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
    let armed_will = if flags & S_ARMED_WILL != 0 {
        let delay_secs = r.u32("armed will delay")?;
        let message = Arc::new(read_message(&mut r)?);
        Some(ArmedWill {
            message,
            delay_secs,
        })
    } else {
        None
    };
    let principal = if flags & S_PRINCIPAL != 0 {
        let b = r.bytes32("principal")?;
        let text = std::str::from_utf8(b).map_err(|_| DecodeError::Invalid("principal"))?;
        Some(Principal::from(text))
    } else {
        None
    };
    r.finish()?;
    Ok(SessionRecord {
        expiry_interval,
        disconnected_at,
        pending_will,
        armed_will,
        last_packet_id,
        principal,
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
