//! A session's queue of deliveries waiting to be sent, oldest first, with its byte count.
//!
//! Memory must not grow with what offline sessions have queued: a persisted delivery (one
//! with a `stored_id`) of a session whose client is away keeps only a [`StoredDelivery`] in
//! memory, and its message body stays in the store. When the client is back, the runtime
//! asks which bodies to read back ([`OutboundQueue::wanted`]: a window at the front of the
//! queue, so memory stays bounded however long the queue is) and puts them in place
//! ([`OutboundQueue::load`]). Deliveries that are not persisted always keep their body.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mqtt_codec::QoS;

use crate::types::{Delivery, Message, Millis, StoredDelivery};

/// One queued delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// With its message body in memory.
    Loaded(Delivery),
    /// Persisted, with its body in the store.
    OnDisk(StoredDelivery),
}

impl Queued {
    pub fn stored_id(&self) -> Option<u64> {
        match self {
            Queued::Loaded(d) => d.stored_id,
            Queued::OnDisk(s) => Some(s.stored_id),
        }
    }

    pub fn payload_len(&self) -> usize {
        match self {
            Queued::Loaded(d) => d.message.payload.len(),
            Queued::OnDisk(s) => s.payload_len,
        }
    }

    pub fn qos(&self) -> QoS {
        match self {
            Queued::Loaded(d) => d.qos,
            Queued::OnDisk(s) => s.qos,
        }
    }

    pub fn expires_at(&self) -> Option<Millis> {
        match self {
            Queued::Loaded(d) => d.message.expires_at,
            Queued::OnDisk(s) => s.expires_at,
        }
    }

    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }

    /// The same delivery with its body left to the store, if it is persisted.
    fn spilled(self) -> Queued {
        match self {
            Queued::Loaded(d) => match StoredDelivery::of(&d) {
                Some(stub) => Queued::OnDisk(stub),
                None => Queued::Loaded(d),
            },
            on_disk => on_disk,
        }
    }
}

/// The queue. See the module docs.
#[derive(Debug)]
pub struct OutboundQueue {
    items: VecDeque<Queued>,
    /// Payload bytes of every queued delivery, in memory or not (the session's byte limit
    /// counts what the client will receive).
    bytes: usize,
    /// How many items are `OnDisk`.
    on_disk: usize,
    /// No queued delivery expires before this (a lower bound: it is not raised when the
    /// delivery that set it leaves), so that looking for expired ones costs nothing until
    /// one may be due. [`Millis::MAX`] when nothing queued expires (not an `Option`: every
    /// session has a queue, and this keeps it 8 bytes smaller).
    earliest_expiry: Millis,
}

impl Default for OutboundQueue {
    fn default() -> OutboundQueue {
        OutboundQueue {
            items: VecDeque::new(),
            bytes: 0,
            on_disk: 0,
            earliest_expiry: Millis::MAX,
        }
    }
}

impl OutboundQueue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many queued deliveries have their body in the store only.
    pub fn on_disk(&self) -> usize {
        self.on_disk
    }

    pub fn front(&self) -> Option<&Queued> {
        self.items.front()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.items.iter()
    }

    pub fn push(&mut self, item: Queued) {
        if let Some(at) = item.expires_at() {
            self.earliest_expiry = self.earliest_expiry.min(at);
        }
        self.bytes += item.payload_len();
        self.on_disk += usize::from(matches!(item, Queued::OnDisk(_)));
        self.items.push_back(item);
    }

    pub fn pop_front(&mut self) -> Option<Queued> {
        let item = self.items.pop_front()?;
        self.uncount(&item);
        Some(item)
    }

    /// Takes an item that left the queue out of the counts.
    fn uncount(&mut self, item: &Queued) {
        self.bytes -= item.payload_len();
        self.on_disk -= usize::from(matches!(item, Queued::OnDisk(_)));
    }

    /// Takes every delivery that has expired at `now` out of the queue (wherever it is in
    /// it). Cheap until one may be due.
    pub fn take_expired(&mut self, now: Millis) -> Vec<Queued> {
        if self.earliest_expiry > now {
            return Vec::new();
        }
        let items = std::mem::take(&mut self.items);
        let (expired, kept): (VecDeque<Queued>, VecDeque<Queued>) =
            items.into_iter().partition(|q| q.is_expired(now));
        self.items = kept;
        for item in &expired {
            self.uncount(item);
        }
        self.earliest_expiry =
            (self.items.iter().filter_map(Queued::expires_at).min()).unwrap_or(Millis::MAX);
        expired.into()
    }

    /// Leaves the bodies of persisted deliveries to the store (the client went away).
    /// Returns how many bodies left memory.
    pub fn spill(&mut self) -> usize {
        let before = self.on_disk;
        let items = std::mem::take(&mut self.items);
        self.items = items.into_iter().map(Queued::spilled).collect();
        self.on_disk = self
            .items
            .iter()
            .filter(|q| matches!(q, Queued::OnDisk(_)))
            .count();
        self.on_disk - before
    }

    /// The stored ids of the deliveries among the first `window` whose bodies are in the
    /// store, oldest first, stopping once `max_bytes` of payload is reached (at least one):
    /// what to read back next.
    pub fn wanted(&self, window: usize, max_bytes: usize) -> Vec<u64> {
        if self.on_disk == 0 {
            return Vec::new();
        }
        let mut ids = Vec::new();
        let mut bytes = 0;
        for item in self.items.iter().take(window) {
            if let Queued::OnDisk(stub) = item {
                if !ids.is_empty() && bytes + stub.payload_len > max_bytes {
                    break;
                }
                bytes += stub.payload_len;
                ids.push(stub.stored_id);
            }
        }
        ids
    }

    /// Puts bodies read back from the store in place. A delivery whose body the store no
    /// longer has (`None`) leaves the queue: it is returned, for the caller to count.
    pub fn load(
        &mut self,
        bodies: impl IntoIterator<Item = (u64, Option<Arc<Message>>)>,
    ) -> Vec<StoredDelivery> {
        let mut bodies: HashMap<u64, Option<Arc<Message>>> = bodies.into_iter().collect();
        let mut lost = Vec::new();
        let items = std::mem::take(&mut self.items);
        let mut kept = VecDeque::with_capacity(items.len());
        for item in items {
            let found = match &item {
                Queued::OnDisk(stub) if !bodies.is_empty() => bodies.remove(&stub.stored_id),
                _ => None,
            };
            match (item, found) {
                (Queued::OnDisk(stub), Some(Some(message))) => {
                    self.on_disk -= 1;
                    kept.push_back(Queued::Loaded(stub.with_message(message)));
                }
                (Queued::OnDisk(stub), Some(None)) => {
                    self.on_disk -= 1;
                    self.bytes -= stub.payload_len;
                    lost.push(stub);
                }
                (item, _) => kept.push_back(item),
            }
        }
        self.items = kept;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_codec::{MqttString, PublishProperties};

    fn delivery(payload: &'static [u8], stored_id: Option<u64>) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: MqttString::from_static("t"),
                payload: Bytes::from_static(payload),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: Some(50),
                publisher: None,
                received_at: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![3],
            stored_id,
            received_at: None,
        }
    }

    #[test]
    fn spilled_deliveries_keep_no_body_and_come_back_in_order() {
        let mut q = OutboundQueue::default();
        let persisted: Vec<Delivery> = (1..=4).map(|i| delivery(b"body", Some(i))).collect();
        q.push(Queued::Loaded(persisted[0].clone()));
        q.push(Queued::Loaded(delivery(b"memory only", None)));
        for d in &persisted[1..] {
            q.push(Queued::Loaded(d.clone()));
        }
        assert_eq!((q.len(), q.bytes(), q.on_disk()), (5, 4 * 4 + 11, 0));
        assert_eq!(q.spill(), 4);
        assert_eq!((q.len(), q.bytes(), q.on_disk()), (5, 4 * 4 + 11, 4));
        // The queue holds no reference to the persisted bodies any more.
        assert!(persisted.iter().all(|d| Arc::strong_count(&d.message) == 1));
        assert!(q
            .iter()
            .any(|i| matches!(i, Queued::Loaded(d) if d.stored_id.is_none())));
        // A window of 3 at the front, and a byte budget that stops after 2 bodies.
        assert_eq!(q.wanted(3, 100), [1, 2]);
        assert_eq!(q.wanted(10, 8), [1, 2]);
        assert_eq!(q.wanted(10, 1), [1], "at least one, however large");
        let lost = q.load([(1, Some(persisted[0].message.clone())), (2, None)]);
        assert_eq!(lost.iter().map(|s| s.stored_id).collect::<Vec<_>>(), [2]);
        assert_eq!((q.len(), q.bytes(), q.on_disk()), (4, 3 * 4 + 11, 2));
        assert_eq!(q.pop_front(), Some(Queued::Loaded(persisted[0].clone())));
        assert_eq!(q.wanted(10, 100), [3, 4]);
        let bodies = persisted[2..]
            .iter()
            .map(|d| (d.stored_id.unwrap(), Some(d.message.clone())));
        assert!(q.load(bodies).is_empty());
        assert_eq!(q.on_disk(), 0);
        let rest: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(rest.len(), 3);
        assert_eq!(rest[1], Queued::Loaded(persisted[2].clone()));
        assert_eq!((q.bytes(), q.on_disk()), (0, 0));
    }

    #[test]
    fn expired_deliveries_are_taken_from_anywhere_in_the_queue() {
        let mut q = OutboundQueue::default();
        let at = |payload, expires_at, id| {
            let mut d = delivery(payload, Some(id));
            Arc::make_mut(&mut d.message).expires_at = expires_at;
            Queued::Loaded(d)
        };
        q.push(at(b"keep", None, 1));
        q.push(at(b"soon", Some(10), 2));
        q.push(at(b"later", Some(20), 3));
        q.spill();
        assert!(q.take_expired(9).is_empty(), "nothing due yet");
        let gone = q.take_expired(10);
        assert_eq!(
            gone.iter().map(|g| g.stored_id()).collect::<Vec<_>>(),
            [Some(2)]
        );
        assert_eq!((q.len(), q.bytes(), q.on_disk()), (2, 9, 2));
        assert!(q.take_expired(19).is_empty());
        assert_eq!(q.take_expired(25).len(), 1);
        assert_eq!(
            q.take_expired(u64::MAX).len(),
            0,
            "what never expires stays"
        );
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_stub_keeps_what_limits_and_expiry_need() {
        let d = delivery(b"12345", Some(9));
        let stub = Queued::Loaded(d.clone()).spilled();
        assert_eq!(stub.payload_len(), 5);
        assert_eq!(stub.qos(), QoS::AtLeastOnce);
        assert_eq!(stub.stored_id(), Some(9));
        assert!(!stub.is_expired(49) && stub.is_expired(50));
        let Queued::OnDisk(s) = stub else {
            panic!("persisted deliveries spill");
        };
        assert_eq!(s.with_message(d.message.clone()), d);
    }
}
