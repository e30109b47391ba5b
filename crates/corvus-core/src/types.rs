//! Values that flow through the broker: client identifiers, time, application messages and
//! the per-subscriber deliveries made of them.

use std::num::NonZeroU64;
use std::sync::Arc;

use bytes::Bytes;
use mqtt_codec::{MqttString, PublishProperties, QoS};

/// A client identifier. Cheap to clone: the broker keys maps and subscriptions by it.
pub type ClientId = Arc<str>;

/// Milliseconds since the UNIX epoch. The core never reads a clock: the runtime passes the
/// current time in. Wall-clock time (not a monotonic instant) so that expiry can be persisted
/// and keep counting across a restart.
pub type Millis = u64;

/// When the broker received a message, on the runtime's monotonic clock in microseconds: the
/// start of its publish-to-delivery latency. Opaque to the core, which only carries it from
/// the PUBLISH to the deliveries made of it and reports it when one is sent
/// ([`Connection::sent_stamps`](crate::Connection::sent_stamps)). Non-zero so that an
/// `Option<Stamp>` costs no more than the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NonZeroU64);

impl Stamp {
    /// The stamp for `micros` on the runtime's clock; 0 is taken as 1, a microsecond being
    /// below what latency is measured in.
    pub fn from_micros(micros: u64) -> Stamp {
        Stamp(NonZeroU64::new(micros).unwrap_or(NonZeroU64::MIN))
    }

    pub fn micros(self) -> u64 {
        self.0.get()
    }
}

/// An application message as the broker stores and routes it: one allocation shared by every
/// subscriber that receives it (`Arc<Message>`); the payload is never copied per subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: MqttString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Forwarded properties. Per-hop ones (topic alias, subscription identifiers) are never
    /// stored here; the message expiry interval is kept as `expires_at` instead.
    pub properties: PublishProperties,
    /// When the message expires, if it has a Message Expiry Interval.
    pub expires_at: Option<Millis>,
    /// The client that published it, for No Local; `None` for the broker's own messages.
    pub publisher: Option<ClientId>,
    /// When the runtime decoded the PUBLISH, for the publish-to-delivery latency. In memory
    /// only: the store never writes it, so a message read back from the store has none, and
    /// neither have wills and the broker's own messages.
    pub received_at: Option<Stamp>,
}

impl Message {
    /// True once `now` has reached the expiry time.
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The Message Expiry Interval to forward: whole seconds left, rounded up so that a message
    /// is never forwarded with 0 while still alive. `None` if it does not expire.
    pub fn remaining_expiry_secs(&self, now: Millis) -> Option<u32> {
        self.expires_at.map(|at| {
            let left_ms = at.saturating_sub(now);
            u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }
}

/// One message on its way to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// The QoS it is delivered with: the lower of the message's and the subscription's.
    pub qos: QoS,
    /// The RETAIN flag as delivered (Retain As Published, or a retained message sent at
    /// subscribe time).
    pub retain: bool,
    /// Identifiers of every subscription of this session that matched (MQTT 5.0).
    pub subscription_ids: Vec<u32>,
    /// The message's id in the durable queue journal when this delivery is persisted;
    /// `None` for deliveries kept in memory only (QoS 0, sessions that end with their
    /// connection, a broker without a store). The session reports what happens to persisted
    /// deliveries as [`StoreEvent`](crate::session::StoreEvent)s.
    pub stored_id: Option<u64>,
    /// The message's [`Message::received_at`] when this delivery was routed from it as it
    /// arrived; `None` for the deliveries whose latency says nothing about the broker's
    /// speed: retained messages sent at subscribe time, and bodies read back from the store.
    pub received_at: Option<Stamp>,
}

/// A persisted delivery whose message body is in the store, not in memory: what a session
/// keeps of a queued delivery while its client is away, so that memory does not grow with
/// what offline sessions have queued. The body is read back from the store when the client
/// returns and the delivery reaches the front of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The message's id in the queue journal.
    pub stored_id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// The payload's length, counted against the session's byte limit.
    pub payload_len: usize,
    /// When the message expires, if it does.
    pub expires_at: Option<Millis>,
}

impl StoredDelivery {
    /// What is kept of a persisted delivery once its body leaves memory; `None` for one that
    /// is not persisted.
    pub fn of(delivery: &Delivery) -> Option<StoredDelivery> {
        Some(StoredDelivery {
            stored_id: delivery.stored_id?,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
            payload_len: delivery.message.payload.len(),
            expires_at: delivery.message.expires_at,
        })
    }

    /// The delivery again, with its body read back from the store.
    pub fn with_message(self, message: Arc<Message>) -> Delivery {
        Delivery {
            message,
            qos: self.qos,
            retain: self.retain,
            subscription_ids: self.subscription_ids,
            stored_id: Some(self.stored_id),
            received_at: None,
        }
    }

    /// True once `now` has reached the expiry time.
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}
