//! A session: the state MQTT keeps for a client identifier across connections. Its
//! subscriptions, the queue of messages waiting to be sent, the messages in flight towards the
//! client (with their packet identifiers), the QoS 2 packet identifiers received and awaiting
//! PUBREL, and a will waiting for its delay to pass.
//!
//! A session is plain data with no I/O. The runtime keeps each one behind its own lock:
//! publishers enqueue into it, the client's connection drains it. Protocol decisions (what to
//! send when) are the connection's; the session only keeps the books and enforces its limits.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use mqtt_codec::{MqttString, PacketId, QoS};

use crate::authorize::{Authorizer, Verdict};
use crate::config::{BrokerConfig, QueueFullPolicy};
use crate::queue::{OutboundQueue, Queued};
use crate::topic_tree::SubscriptionEntry;
use crate::types::{ClientId, Delivery, Message, Millis, StoredDelivery};

/// Session Expiry Interval meaning "never expires" (MQTT 5.0 section 3.1.2.11.2).
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// Why a message was not delivered. Every drop is counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// The session's queue was at its message or byte limit.
    QueueFull,
    /// The message expired before it could be sent.
    Expired,
    /// The encoded PUBLISH exceeded the client's Maximum Packet Size.
    TooLargeForClient,
    /// A QoS 0 message for a session whose client is offline.
    Qos0Offline,
    /// A PUBLISH whose Payload Format Indicator says UTF-8 but whose payload is not.
    PayloadFormatInvalid,
    /// A PUBLISH the client was not allowed to make.
    NotAuthorized,
    /// A queued message whose body could not be read back from the store (damaged or lost
    /// since it was queued).
    StoreLost,
    /// A retained PUBLISH (or will) beyond the broker's retained messages quota.
    QuotaExceeded,
    /// A PUBLISH beyond a limit on its topic or user properties.
    LimitExceeded,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::QueueFull,
        DropReason::Expired,
        DropReason::TooLargeForClient,
        DropReason::Qos0Offline,
        DropReason::PayloadFormatInvalid,
        DropReason::NotAuthorized,
        DropReason::StoreLost,
        DropReason::QuotaExceeded,
        DropReason::LimitExceeded,
    ];

    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::TooLargeForClient => "too_large_for_client",
            DropReason::Qos0Offline => "qos0_offline",
            DropReason::PayloadFormatInvalid => "payload_format_invalid",
            DropReason::NotAuthorized => "not_authorized",
            DropReason::StoreLost => "store_lost",
            DropReason::QuotaExceeded => "quota_exceeded",
            DropReason::LimitExceeded => "limit_exceeded",
        }
    }
}

/// What became of an enqueued delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// Queued, after dropping the oldest queued message for room.
    QueuedDroppingOldest,
    Dropped(DropReason),
}

/// Where an outgoing QoS 1/2 message is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitingPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

/// A message in flight towards the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub packet_id: PacketId,
    pub delivery: Delivery,
    pub state: OutState,
}

/// Something that happened to the session's durable state, for the runtime to persist: the
/// session reports them, the runtime takes them ([`Session::take_store_events`]) after each
/// call and writes them to the store. Deliveries without a `stored_id` are never reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A subscription was made or replaced.
    Subscribed {
        filter: MqttString,
        entry: SubscriptionEntry,
    },
    /// A subscription was removed.
    Unsubscribed { filter: MqttString },
    /// A persisted delivery went in flight with this packet id.
    Sent { message: u64, packet_id: PacketId },
    /// PUBREC arrived for a persisted QoS 2 delivery: PUBREL is owed.
    Released { message: u64, packet_id: PacketId },
    /// A persisted delivery is finished: acknowledged, dropped or expired.
    Done { message: u64 },
    /// PUBREL arrived for a QoS 2 PUBLISH from the client. (Its arrival is not an event: its
    /// packet id is stored with the message's routing, see `Action::Publish`.)
    InboundQos2Removed(PacketId),
}

/// The will of the connection that owns the session, until that connection ends: it is then
/// published, left pending for its delay, or discarded by a normal DISCONNECT. It is kept with
/// the session rather than the connection so that it is persisted with it: a crash of the
/// broker ends every connection without DISCONNECT, and their wills are still due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmedWill {
    /// The message; its `expires_at` holds the Message Expiry Interval in seconds until it
    /// is published (the expiry counts from then).
    pub message: Arc<Message>,
    /// Will Delay Interval in seconds.
    pub delay_secs: u32,
}

/// A will waiting for its delay to pass (MQTT 5.0 section 3.1.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWill {
    pub message: Arc<Message>,
    pub due_at: Millis,
}

/// Messages dropped for one session, by reason ("why did my device miss messages").
///
/// Most sessions never drop a message, so the tallies are allocated at the first drop: a
/// session costs a pointer here, not 144 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCounters(Option<Box<DropTallies>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DropTallies {
    dropped: [u64; DropReason::ALL.len()],
    /// How much of `dropped` the runtime has already added to its broker-wide metrics.
    reported: [u64; DropReason::ALL.len()],
}

impl SessionCounters {
    pub fn count(&mut self, reason: DropReason) {
        self.0.get_or_insert_default().dropped[reason as usize] += 1;
    }

    /// Drops counted since the last call, for the broker-wide metrics.
    pub fn take_unreported(&mut self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.0.as_deref_mut().into_iter().flat_map(|tallies| {
            DropReason::ALL.into_iter().filter_map(move |reason| {
                let i = reason as usize;
                let new = tallies.dropped[i] - tallies.reported[i];
                tallies.reported[i] = tallies.dropped[i];
                (new > 0).then_some((reason, new))
            })
        })
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.0.as_ref().map_or(0, |t| t.dropped[reason as usize])
    }

    pub fn total_dropped(&self) -> u64 {
        self.0.as_ref().map_or(0, |t| t.dropped.iter().sum())
    }
}

/// The state of one session.
#[derive(Debug)]
pub struct Session {
    client_id: ClientId,
    /// Seconds the session outlives its connection; [`NEVER_EXPIRES`] for ever.
    pub expiry_interval: u32,
    /// True while a connection owns the session.
    pub online: bool,
    /// When the last connection closed, while offline.
    pub disconnected_at: Option<Millis>,
    /// A `BTreeMap`: a session has few, and its 24 bytes are half an empty `HashMap`'s.
    subscriptions: BTreeMap<MqttString, SubscriptionEntry>,
    queue: OutboundQueue,
    inflight: VecDeque<InFlight>,
    /// QoS 2 packet ids from the client awaiting PUBREL: made at the first one (most
    /// sessions never receive QoS 2), so an empty set costs a pointer.
    #[allow(clippy::box_collection)]
    inbound_qos2: Option<Box<HashSet<PacketId>>>,
    last_packet_id: u16,
    pub pending_will: Option<PendingWill>,
    pub armed_will: Option<ArmedWill>,
    pub counters: SessionCounters,
    /// What the client of the last connection may do: its will is checked again when it
    /// fires. For a session recovered from the store, the runtime's authorizer for the
    /// persisted [`Authorizer::principal`]. `None`: wills are not checked (a session the
    /// runtime built without one).
    pub authorizer: Option<Arc<dyn Authorizer>>,
    limits: QueueLimits,
    store_events: Vec<StoreEvent>,
}

#[derive(Debug, Clone, Copy)]
struct QueueLimits {
    /// `BrokerConfig::max_queued_messages`, at most `u32::MAX` (which no queue reaches).
    max_messages: u32,
    max_bytes: usize,
    queue_qos0_offline: bool,
    policy: QueueFullPolicy,
    /// `BrokerConfig::persistence`.
    persistence: bool,
}

impl Session {
    pub fn new(client_id: ClientId, config: &BrokerConfig) -> Session {
        Session {
            client_id,
            expiry_interval: 0,
            online: false,
            disconnected_at: None,
            subscriptions: BTreeMap::new(),
            queue: OutboundQueue::default(),
            inflight: VecDeque::new(),
            inbound_qos2: None,
            last_packet_id: 0,
            pending_will: None,
            armed_will: None,
            counters: SessionCounters::default(),
            authorizer: None,
            limits: QueueLimits {
                max_messages: u32::try_from(config.max_queued_messages).unwrap_or(u32::MAX),
                max_bytes: config.max_queued_bytes,
                queue_qos0_offline: config.queue_qos0_offline,
                policy: config.queue_full_policy,
                persistence: config.persistence,
            },
            store_events: Vec::new(),
        }
    }

    // ---- durable state ----

    /// Whether the session outlives its connection (Session Expiry Interval above 0), and so
    /// whether its state is worth persisting.
    pub fn is_persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    /// Whether changes to the session's own durable state (subscriptions, inbound QoS 2 ids)
    /// are reported. Delivery events need no such check: only persisted deliveries carry a
    /// `stored_id`.
    pub fn records_changes(&self) -> bool {
        self.limits.persistence && self.is_persistent()
    }

    /// Whether anything happened to persisted state since the last `take_store_events`.
    pub fn has_store_events(&self) -> bool {
        !self.store_events.is_empty()
    }

    /// What happened to persisted state since the last call, in order.
    pub fn take_store_events(&mut self) -> std::vec::Drain<'_, StoreEvent> {
        self.store_events.drain(..)
    }

    fn finished(&mut self, stored_id: Option<u64>) {
        if let Some(message) = stored_id {
            self.store_events.push(StoreEvent::Done { message });
        }
    }

    /// Drops a delivery taken from the queue without sending it, counting why.
    pub fn discard(&mut self, delivery: &Delivery, reason: DropReason) {
        self.drop_queued(delivery.stored_id, reason);
    }

    fn drop_queued(&mut self, stored_id: Option<u64>, reason: DropReason) {
        self.counters.count(reason);
        self.finished(stored_id);
    }

    /// The last packet id handed out towards the client (persisted with the session).
    pub fn last_packet_id(&self) -> u16 {
        self.last_packet_id
    }

    /// Rebuilds a session read back from the store: queued deliveries (oldest first) and
    /// deliveries in flight (in the order they were sent), taken as they are, without
    /// limits or events. Used at start, before any connection.
    pub fn restore_messages(
        &mut self,
        last_packet_id: u16,
        queue: impl IntoIterator<Item = StoredDelivery>,
        inflight: impl IntoIterator<Item = InFlight>,
    ) {
        self.last_packet_id = last_packet_id;
        for stub in queue {
            self.queue.push(Queued::OnDisk(stub));
        }
        self.inflight.extend(inflight);
    }

    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    // ---- subscriptions ----

    /// Records a subscription; true if it replaced one with the same filter.
    pub fn add_subscription(&mut self, filter: MqttString, entry: SubscriptionEntry) -> bool {
        if self.records_changes() {
            self.store_events.push(StoreEvent::Subscribed {
                filter: filter.clone(),
                entry: entry.clone(),
            });
        }
        self.subscriptions.insert(filter, entry).is_some()
    }

    pub fn remove_subscription(&mut self, filter: &str) -> bool {
        let Some((filter, _)) = self.subscriptions.remove_entry(filter) else {
            return false;
        };
        if self.records_changes() {
            self.store_events.push(StoreEvent::Unsubscribed { filter });
        }
        true
    }

    pub fn has_subscription(&self, filter: &str) -> bool {
        self.subscriptions.contains_key(filter)
    }

    /// Removes every subscription whose filter `keep` refuses (reporting each to the store);
    /// returns their filters. Only the removed ones are copied.
    pub fn remove_subscriptions_unless(&mut self, keep: impl Fn(&str) -> bool) -> Vec<MqttString> {
        let removed: Vec<MqttString> = self
            .subscriptions
            .keys()
            .filter(|filter| !keep(filter))
            .cloned()
            .collect();
        for filter in &removed {
            self.remove_subscription(filter);
        }
        removed
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = (&MqttString, &SubscriptionEntry)> {
        self.subscriptions.iter()
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    // ---- the outbound queue ----

    /// Queues a delivery for the client, within the session's limits.
    pub fn enqueue(&mut self, delivery: Delivery, now: Millis) -> Enqueued {
        let outcome = self.try_enqueue(delivery, now);
        match outcome {
            Enqueued::Dropped(reason) => self.counters.count(reason),
            Enqueued::QueuedDroppingOldest => self.counters.count(DropReason::QueueFull),
            Enqueued::Queued => {}
        }
        outcome
    }

    fn try_enqueue(&mut self, delivery: Delivery, now: Millis) -> Enqueued {
        if delivery.message.is_expired(now) {
            return Enqueued::Dropped(DropReason::Expired);
        }
        if delivery.qos == QoS::AtMostOnce && !self.online && !self.limits.queue_qos0_offline {
            return Enqueued::Dropped(DropReason::Qos0Offline);
        }
        let size = delivery.message.payload.len();
        let full = |s: &Session| {
            s.queue.len() >= s.limits.max_messages as usize
                || s.queue.bytes() + size > s.limits.max_bytes
        };
        if !full(self) {
            self.push(delivery);
            return Enqueued::Queued;
        }
        // QoS 0 is expendable: it never displaces anything.
        if delivery.qos == QoS::AtMostOnce || self.limits.policy == QueueFullPolicy::DropNewest {
            return Enqueued::Dropped(DropReason::QueueFull);
        }
        while full(self) {
            let Some(oldest) = self.queue.pop_front() else {
                // The message alone exceeds the byte limit.
                return Enqueued::Dropped(DropReason::QueueFull);
            };
            self.finished(oldest.stored_id());
        }
        self.push(delivery);
        Enqueued::QueuedDroppingOldest
    }

    /// Queues a delivery; while the client is away, a persisted one leaves its body to the
    /// store (see `crate::queue`).
    fn push(&mut self, delivery: Delivery) {
        let item = match StoredDelivery::of(&delivery) {
            Some(stub) if !self.online => Queued::OnDisk(stub),
            _ => Queued::Loaded(delivery),
        };
        self.queue.push(item);
    }

    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queue.bytes()
    }

    /// Queued deliveries whose body is in the store only.
    pub fn queued_on_disk(&self) -> usize {
        self.queue.on_disk()
    }

    /// Drops the queued deliveries that have expired, wherever they are in the queue (and
    /// counts them): for sessions whose client is away, so that expired messages do not
    /// hold memory or journal space until it returns. Returns how many were dropped.
    pub fn drop_expired(&mut self, now: Millis) -> usize {
        let expired = self.queue.take_expired(now);
        for item in &expired {
            self.drop_queued(item.stored_id(), DropReason::Expired);
        }
        expired.len()
    }

    /// Leaves the bodies of persisted queued deliveries to the store: called when the client
    /// goes away, so that memory does not grow with what offline sessions have queued.
    pub fn spill(&mut self) -> usize {
        self.queue.spill()
    }

    /// The stored ids of the deliveries to read back from the store next (among the first
    /// `window` queued, up to about `max_bytes`); empty when no body is needed.
    pub fn bodies_wanted(&self, window: usize, max_bytes: usize) -> Vec<u64> {
        self.queue.wanted(window, max_bytes)
    }

    /// Puts bodies read back from the store in place. A delivery whose body the store no
    /// longer has is dropped and counted (`DropReason::StoreLost`).
    pub fn load_bodies(&mut self, bodies: impl IntoIterator<Item = (u64, Option<Arc<Message>>)>) {
        for lost in self.queue.load(bodies) {
            self.drop_queued(Some(lost.stored_id), DropReason::StoreLost);
        }
    }

    /// Takes the next queued delivery that may be sent now. A QoS 1/2 delivery needs a free
    /// slot among `max_inflight`; while none is free, nothing behind it is sent either, so
    /// messages leave in the order they were queued. Expired deliveries are dropped and counted.
    ///
    /// A delivery whose body is still in the store stops the queue too, until the runtime
    /// has read it back ([`bodies_wanted`](Self::bodies_wanted),
    /// [`load_bodies`](Self::load_bodies)).
    pub fn next_to_send(&mut self, max_inflight: usize, now: Millis) -> Option<Delivery> {
        loop {
            let front = self.queue.front()?;
            if front.is_expired(now) {
                if let Some(expired) = self.queue.pop_front() {
                    self.drop_queued(expired.stored_id(), DropReason::Expired);
                }
                continue;
            }
            if front.qos() != QoS::AtMostOnce && self.inflight.len() >= max_inflight {
                return None;
            }
            if matches!(front, Queued::OnDisk(_)) {
                return None;
            }
            return match self.queue.pop_front() {
                Some(Queued::Loaded(delivery)) => Some(delivery),
                _ => None,
            };
        }
    }

    // ---- messages in flight towards the client ----

    /// Puts a QoS 1/2 delivery in flight under a fresh packet identifier.
    pub fn start_inflight(&mut self, delivery: Delivery) -> PacketId {
        let packet_id = self.allocate_packet_id();
        let state = if delivery.qos == QoS::ExactlyOnce {
            OutState::AwaitingPubRec
        } else {
            OutState::AwaitingPubAck
        };
        if let Some(message) = delivery.stored_id {
            self.store_events
                .push(StoreEvent::Sent { message, packet_id });
        }
        self.inflight.push_back(InFlight {
            packet_id,
            delivery,
            state,
        });
        packet_id
    }

    /// The next identifier after the last one used that is not in flight. Identifiers start
    /// at 1 and wrap after 65535. The caller keeps at most `max_inflight` (< 65535) in flight,
    /// so a free one always exists.
    fn allocate_packet_id(&mut self) -> PacketId {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            let Some(id) = PacketId::new(self.last_packet_id) else {
                continue;
            };
            if !self.inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
    }

    pub fn inflight(&self) -> impl Iterator<Item = &InFlight> {
        self.inflight.iter()
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    fn position(&self, packet_id: PacketId, state: OutState) -> Option<usize> {
        self.inflight
            .iter()
            .position(|f| f.packet_id == packet_id && f.state == state)
    }

    /// PUBACK for a QoS 1 message: true if it was in flight.
    pub fn on_puback(&mut self, packet_id: PacketId) -> bool {
        self.complete(packet_id, OutState::AwaitingPubAck)
    }

    fn complete(&mut self, packet_id: PacketId, state: OutState) -> bool {
        let Some(done) = self
            .position(packet_id, state)
            .and_then(|i| self.inflight.remove(i))
        else {
            return false;
        };
        self.finished(done.delivery.stored_id);
        true
    }

    /// PUBREC for a QoS 2 message: true if it was waiting for one. A failure reason code ends
    /// the flow there; success moves it on to PUBREL/PUBCOMP.
    pub fn on_pubrec(&mut self, packet_id: PacketId, success: bool) -> bool {
        let Some(i) = self.position(packet_id, OutState::AwaitingPubRec) else {
            // A repeated PUBREC for a message already released is answered with PUBREL again.
            return self
                .position(packet_id, OutState::AwaitingPubComp)
                .is_some();
        };
        if !success {
            return self.complete(packet_id, OutState::AwaitingPubRec);
        }
        let flight = &mut self.inflight[i];
        flight.state = OutState::AwaitingPubComp;
        if let Some(message) = flight.delivery.stored_id {
            self.store_events
                .push(StoreEvent::Released { message, packet_id });
        }
        true
    }

    /// PUBCOMP: true if the message was waiting for it.
    pub fn on_pubcomp(&mut self, packet_id: PacketId) -> bool {
        self.complete(packet_id, OutState::AwaitingPubComp)
    }

    // ---- QoS 2 from the client ----

    /// Records a received QoS 2 PUBLISH; false if its identifier is already awaiting PUBREL
    /// (a resend, not to be delivered again).
    pub fn receive_qos2(&mut self, packet_id: PacketId) -> bool {
        self.inbound_qos2.get_or_insert_default().insert(packet_id)
    }

    /// True if a QoS 2 PUBLISH with this identifier was received and is awaiting PUBREL.
    pub fn is_awaiting_pubrel(&self, packet_id: PacketId) -> bool {
        self.inbound_qos2
            .as_ref()
            .is_some_and(|ids| ids.contains(&packet_id))
    }

    /// PUBREL: true if the identifier was awaiting it.
    pub fn release_qos2(&mut self, packet_id: PacketId) -> bool {
        let known = self
            .inbound_qos2
            .as_mut()
            .is_some_and(|ids| ids.remove(&packet_id));
        if known && self.records_changes() {
            self.store_events
                .push(StoreEvent::InboundQos2Removed(packet_id));
        }
        known
    }

    /// The QoS 2 packet ids from the client awaiting PUBREL.
    pub fn inbound_qos2(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.inbound_qos2.iter().flat_map(|ids| ids.iter().copied())
    }

    pub fn inbound_qos2_len(&self) -> usize {
        self.inbound_qos2.as_ref().map_or(0, |ids| ids.len())
    }

    // ---- lifetime ----

    /// The connection that owned the session ended without a normal DISCONNECT (or the
    /// broker stopped while it was connected): its armed will is due (MQTT 5.0 section
    /// 3.1.3.2.2). Returns the will to publish now; with a delay, it waits as the pending
    /// will instead, unless the session ends now (a will is published at the latest when its
    /// session ends [MQTT-3.1.3-9]). Its expiry counts from now.
    pub fn release_armed_will(&mut self, now: Millis, session_ends: bool) -> Option<Arc<Message>> {
        let armed = self.armed_will.take()?;
        let mut message = Arc::unwrap_or_clone(armed.message);
        message.expires_at = message.expires_at.map(|secs| now + secs * 1000);
        let message = Arc::new(message);
        let delay_ms = u64::from(armed.delay_secs.min(self.expiry_interval)) * 1000;
        if session_ends || delay_ms == 0 {
            return self.authorized_will(message);
        }
        self.pending_will = Some(PendingWill {
            message,
            due_at: now + delay_ms,
        });
        None
    }

    /// When the session ends if nobody reconnects, while offline.
    pub fn expires_at(&self) -> Option<Millis> {
        let since = self.disconnected_at?;
        (self.expiry_interval != NEVER_EXPIRES)
            .then(|| since.saturating_add(u64::from(self.expiry_interval) * 1000))
    }

    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }

    /// Takes the pending will if its time has come.
    pub fn take_due_will(&mut self, now: Millis) -> Option<Arc<Message>> {
        match self.pending_will.as_ref()?.due_at <= now {
            true => self.take_ending_will(),
            false => None,
        }
    }

    /// Takes the pending will because the session ends now, before its delay passed (a
    /// will is published at the latest when its session ends [MQTT-3.1.3-9]): the will to
    /// publish, if the client may still publish it.
    pub fn take_ending_will(&mut self) -> Option<Arc<Message>> {
        let will = self.pending_will.take()?;
        self.authorized_will(will.message)
    }

    /// The will, if the client may still publish it (ACLs may have changed since CONNECT);
    /// otherwise it is dropped and counted.
    fn authorized_will(&mut self, will: Arc<Message>) -> Option<Arc<Message>> {
        authorized_will(self.authorizer.as_deref(), will, &mut self.counters)
    }
}

/// A will that fires, if `authorizer` lets its client publish it; otherwise it is dropped and
/// counted in `counters`. Without an authorizer it is not checked. The one check every will
/// goes through, including those of sessions that ended while the broker was down (which
/// have no [`Session`] any more).
pub fn authorized_will(
    authorizer: Option<&dyn Authorizer>,
    will: Arc<Message>,
    counters: &mut SessionCounters,
) -> Option<Arc<Message>> {
    let verdict = match authorizer {
        Some(authorizer) => authorizer.publish(&will.topic, will.retain, will.payload.len()),
        None => Verdict::Allowed,
    };
    match verdict.refusal() {
        None => Some(will),
        Some((_, drop, _)) => {
            counters.count(drop);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_codec::PublishProperties;

    pub(super) fn delivery(
        qos: QoS,
        payload: &'static [u8],
        expires_at: Option<Millis>,
    ) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: MqttString::from_static("t"),
                payload: Bytes::from_static(payload),
                qos,
                retain: false,
                properties: PublishProperties::default(),
                expires_at,
                publisher: None,
                received_at: None,
            }),
            qos,
            retain: false,
            subscription_ids: vec![],
            stored_id: None,
            received_at: None,
        }
    }

    fn session(max_messages: usize, max_bytes: usize, policy: QueueFullPolicy) -> Session {
        let config = BrokerConfig {
            max_queued_messages: max_messages,
            max_queued_bytes: max_bytes,
            queue_full_policy: policy,
            ..BrokerConfig::default()
        };
        let mut s = Session::new("c".into(), &config);
        s.online = true;
        s
    }

    #[test]
    fn packet_ids_start_at_one_and_skip_those_in_flight() {
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        let a = s.start_inflight(delivery(QoS::AtLeastOnce, b"a", None));
        assert_eq!(a.get(), 1);
        s.last_packet_id = u16::MAX;
        let b = s.start_inflight(delivery(QoS::AtLeastOnce, b"b", None));
        // Wrapped past 65535 and 0, and 1 is still in flight.
        assert_eq!(b.get(), 2);
    }

    #[test]
    fn full_queue_drops_qos0_and_counts_it() {
        let mut s = session(1, 1000, QueueFullPolicy::DropOldest);
        assert_eq!(
            s.enqueue(delivery(QoS::AtLeastOnce, b"1", None), 0),
            Enqueued::Queued
        );
        assert_eq!(
            s.enqueue(delivery(QoS::AtMostOnce, b"2", None), 0),
            Enqueued::Dropped(DropReason::QueueFull)
        );
        assert_eq!(s.counters.dropped(DropReason::QueueFull), 1);
    }

    #[test]
    fn drop_oldest_policy_makes_room_and_counts() {
        let mut s = session(2, 1000, QueueFullPolicy::DropOldest);
        s.enqueue(delivery(QoS::AtLeastOnce, b"1", None), 0);
        s.enqueue(delivery(QoS::AtLeastOnce, b"2", None), 0);
        let outcome = s.enqueue(delivery(QoS::AtLeastOnce, b"3", None), 0);
        assert_eq!(outcome, Enqueued::QueuedDroppingOldest);
        let payloads: Vec<_> = std::iter::from_fn(|| s.next_to_send(10, 0))
            .map(|d| d.message.payload.clone())
            .collect();
        assert_eq!(
            payloads,
            vec![Bytes::from_static(b"2"), Bytes::from_static(b"3")]
        );
        assert_eq!(s.counters.dropped(DropReason::QueueFull), 1);
    }

    #[test]
    fn byte_limit_applies() {
        let mut s = session(100, 3, QueueFullPolicy::DropNewest);
        assert_eq!(
            s.enqueue(delivery(QoS::AtLeastOnce, b"ab", None), 0),
            Enqueued::Queued
        );
        assert_eq!(
            s.enqueue(delivery(QoS::AtLeastOnce, b"cd", None), 0),
            Enqueued::Dropped(DropReason::QueueFull)
        );
        assert_eq!(s.queued_bytes(), 2);
    }

    #[test]
    fn expired_messages_are_dropped_when_dequeued() {
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        s.enqueue(delivery(QoS::AtLeastOnce, b"old", Some(100)), 0);
        s.enqueue(delivery(QoS::AtLeastOnce, b"new", None), 0);
        let next = s.next_to_send(10, 100).unwrap();
        assert_eq!(next.message.payload, Bytes::from_static(b"new"));
        assert_eq!(s.counters.dropped(DropReason::Expired), 1);
    }

    #[test]
    fn inflight_limit_holds_back_the_queue_in_order() {
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        s.enqueue(delivery(QoS::AtLeastOnce, b"1", None), 0);
        s.enqueue(delivery(QoS::AtLeastOnce, b"2", None), 0);
        s.enqueue(delivery(QoS::AtMostOnce, b"3", None), 0);
        let first = s.next_to_send(1, 0).unwrap();
        let id = s.start_inflight(first);
        // "2" needs a slot; "3" may not overtake it.
        assert!(s.next_to_send(1, 0).is_none());
        assert!(s.on_puback(id));
        let second = s.next_to_send(1, 0).unwrap();
        assert_eq!(second.message.payload, Bytes::from_static(b"2"));
        s.start_inflight(second);
        // QoS 0 needs no slot: it follows at once.
        let third = s.next_to_send(1, 0).unwrap();
        assert_eq!(third.message.payload, Bytes::from_static(b"3"));
    }

    #[test]
    fn qos2_outbound_flow() {
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        let id = s.start_inflight(delivery(QoS::ExactlyOnce, b"x", None));
        assert!(!s.on_puback(id), "PUBACK does not complete a QoS 2 flow");
        assert!(s.on_pubrec(id, true));
        assert!(s.on_pubrec(id, true), "a repeated PUBREC is answered again");
        assert!(s.on_pubcomp(id));
        assert_eq!(s.inflight_len(), 0);
    }

    #[test]
    fn qos2_inbound_resend_is_not_new() {
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        let id = PacketId::new(7).unwrap();
        assert!(s.receive_qos2(id));
        assert!(!s.receive_qos2(id));
        assert!(s.release_qos2(id));
        assert!(!s.release_qos2(id));
    }

    #[test]
    fn offline_qos0_is_not_queued_by_default() {
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        s.online = false;
        assert_eq!(
            s.enqueue(delivery(QoS::AtMostOnce, b"x", None), 0),
            Enqueued::Dropped(DropReason::Qos0Offline)
        );
    }

    /// An armed will is released when its connection is lost: at once without a delay, as
    /// the pending will with one (capped by the session expiry), at once if the session ends;
    /// its expiry counts from the release.
    #[test]
    fn an_armed_will_is_released_now_or_left_pending() {
        let will = |delay_secs| ArmedWill {
            message: Arc::new(Message {
                expires_at: Some(30),
                ..(*delivery(QoS::AtLeastOnce, b"gone", None).message).clone()
            }),
            delay_secs,
        };
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        s.expiry_interval = 60;
        assert_eq!(s.release_armed_will(1_000, false), None, "no will");
        s.armed_will = Some(will(0));
        let now = s
            .release_armed_will(1_000, false)
            .expect("published at once");
        assert_eq!(now.expires_at, Some(31_000));
        assert!(s.armed_will.is_none() && s.pending_will.is_none());
        s.armed_will = Some(will(100));
        assert_eq!(s.release_armed_will(1_000, false), None);
        let pending = s.pending_will.take().expect("waits for its delay");
        assert_eq!(
            pending.due_at, 61_000,
            "the delay is capped by the session expiry"
        );
        s.armed_will = Some(will(100));
        assert!(
            s.release_armed_will(1_000, true).is_some(),
            "the session ends now"
        );
        assert!(s.pending_will.is_none());
    }

    /// Refuses every PUBLISH, with a principal, like a recovered client whose grant is gone.
    #[derive(Debug)]
    struct Refuses;

    impl Authorizer for Refuses {
        fn publish(&self, _topic: &str, _retain: bool, _payload_len: usize) -> Verdict {
            Verdict::NotAuthorized
        }
        fn subscribe(&self, _filter: &str) -> bool {
            false
        }
        fn principal(&self) -> Option<crate::authorize::Principal> {
            Some("user:gone".into())
        }
    }

    /// Every way a will fires goes through the session's authorizer: at release, when its
    /// delay passes, when its session ends; and a will with no session left (it ended while
    /// the broker was down) through the same check. Refused wills are counted.
    #[test]
    fn every_firing_will_is_checked_by_the_sessions_authorizer() {
        let message = || delivery(QoS::AtLeastOnce, b"gone", None).message;
        let pending = |due_at| PendingWill {
            message: message(),
            due_at,
        };
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        s.expiry_interval = 60;
        s.authorizer = Some(Arc::new(Refuses));
        s.armed_will = Some(ArmedWill {
            message: message(),
            delay_secs: 0,
        });
        assert_eq!(s.release_armed_will(1_000, false), None);
        s.pending_will = Some(pending(2_000));
        assert_eq!(s.take_due_will(1_999), None, "not due yet");
        assert!(s.pending_will.is_some());
        assert_eq!(s.take_due_will(2_000), None, "due, refused");
        assert!(s.pending_will.is_none(), "a refused will is gone");
        s.pending_will = Some(pending(9_000));
        assert_eq!(s.take_ending_will(), None);
        assert!(s.pending_will.is_none());
        assert_eq!(s.counters.dropped(DropReason::NotAuthorized), 3);

        s.authorizer = Some(Arc::new(crate::authorize::AllowAll));
        s.pending_will = Some(pending(9_000));
        assert!(s.take_ending_will().is_some(), "allowed");

        let mut counters = SessionCounters::default();
        assert!(authorized_will(None, message(), &mut counters).is_some());
        assert_eq!(
            authorized_will(Some(&Refuses), message(), &mut counters),
            None
        );
        assert_eq!(counters.dropped(DropReason::NotAuthorized), 1);
        assert_eq!(Refuses.principal(), Some("user:gone".into()));
        assert_eq!(crate::authorize::AllowAll.principal(), None);
    }

    #[test]
    fn expiry_counts_from_disconnect() {
        let mut s = session(10, 1000, QueueFullPolicy::DropNewest);
        s.expiry_interval = 10;
        assert_eq!(s.expires_at(), None, "online sessions do not expire");
        s.disconnected_at = Some(5_000);
        assert_eq!(s.expires_at(), Some(15_000));
        assert!(!s.is_expired(14_999));
        assert!(s.is_expired(15_000));
        s.expiry_interval = NEVER_EXPIRES;
        assert_eq!(s.expires_at(), None);
    }
}

#[cfg(test)]
mod store_event_tests {
    use super::*;
    use mqtt_codec::SubscriptionOptions;

    fn stored(qos: QoS, id: u64, expires_at: Option<Millis>) -> Delivery {
        let mut delivery = super::tests::delivery(qos, b"p", expires_at);
        delivery.stored_id = Some(id);
        delivery
    }

    fn session(persistence: bool, expiry: u32, max_messages: usize) -> Session {
        let config = BrokerConfig {
            persistence,
            max_queued_messages: max_messages,
            queue_full_policy: QueueFullPolicy::DropOldest,
            ..BrokerConfig::default()
        };
        let mut s = Session::new("c".into(), &config);
        s.expiry_interval = expiry;
        s.online = true;
        s
    }

    fn events(s: &mut Session) -> Vec<StoreEvent> {
        s.take_store_events().collect()
    }

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn a_persistent_session_reports_its_subscriptions_and_inbound_qos2_ids() {
        let entry = SubscriptionEntry {
            options: SubscriptionOptions::default(),
            identifier: Some(3),
        };
        let filter = MqttString::from_static("a/#");
        let mut s = session(true, 60, 10);
        s.add_subscription(filter.clone(), entry.clone());
        s.remove_subscription("a/#");
        assert!(s.receive_qos2(pid(5)));
        assert!(!s.receive_qos2(pid(5)), "a resend");
        assert!(s.release_qos2(pid(5)));
        assert!(!s.release_qos2(pid(5)));
        assert_eq!(
            events(&mut s),
            vec![
                StoreEvent::Subscribed {
                    filter: filter.clone(),
                    entry: entry.clone()
                },
                StoreEvent::Unsubscribed {
                    filter: filter.clone()
                },
                StoreEvent::InboundQos2Removed(pid(5)),
            ]
        );
        // Nothing is reported by a session that ends with its connection, or without a store.
        for mut s in [session(true, 0, 10), session(false, 60, 10)] {
            s.add_subscription(filter.clone(), entry.clone());
            s.receive_qos2(pid(5));
            s.release_qos2(pid(5));
            assert_eq!(events(&mut s), vec![]);
        }
    }

    #[test]
    fn a_persisted_delivery_is_followed_through_its_flow() {
        let mut s = session(true, 60, 10);
        // QoS 1: sent, acknowledged.
        s.enqueue(stored(QoS::AtLeastOnce, 1, None), 0);
        let d = s.next_to_send(10, 0).unwrap();
        let id1 = s.start_inflight(d);
        assert!(s.on_puback(id1));
        // QoS 2: sent, PUBREC, PUBCOMP.
        s.enqueue(stored(QoS::ExactlyOnce, 2, None), 0);
        let d = s.next_to_send(10, 0).unwrap();
        let id2 = s.start_inflight(d);
        assert!(s.on_pubrec(id2, true));
        assert!(s.on_pubcomp(id2));
        // QoS 2 refused by the client's PUBREC.
        s.enqueue(stored(QoS::ExactlyOnce, 3, None), 0);
        let d = s.next_to_send(10, 0).unwrap();
        let id3 = s.start_inflight(d);
        assert!(s.on_pubrec(id3, false));
        assert_eq!(
            events(&mut s),
            vec![
                StoreEvent::Sent {
                    message: 1,
                    packet_id: id1
                },
                StoreEvent::Done { message: 1 },
                StoreEvent::Sent {
                    message: 2,
                    packet_id: id2
                },
                StoreEvent::Released {
                    message: 2,
                    packet_id: id2
                },
                StoreEvent::Done { message: 2 },
                StoreEvent::Sent {
                    message: 3,
                    packet_id: id3
                },
                StoreEvent::Done { message: 3 },
            ]
        );
    }

    /// While the client is away, a persisted delivery keeps no body in memory; when it is
    /// back, the queue waits for the bodies the runtime reads back, in order. A body the store
    /// lost is dropped and counted; an expired one is finished without being read.
    #[test]
    fn an_offline_session_keeps_persisted_bodies_on_disk() {
        let mut s = session(true, 60, 10);
        let kept = stored(QoS::AtLeastOnce, 1, None);
        s.enqueue(kept.clone(), 0);
        s.online = false;
        assert_eq!(s.spill(), 1);
        s.enqueue(stored(QoS::AtLeastOnce, 2, None), 0);
        s.enqueue(stored(QoS::AtLeastOnce, 3, Some(5)), 0);
        let mut memory_only = stored(QoS::AtLeastOnce, 0, None);
        memory_only.stored_id = None;
        s.enqueue(memory_only.clone(), 0);
        assert_eq!(
            Arc::strong_count(&kept.message),
            1,
            "the session let go of the body"
        );
        assert_eq!(
            (s.queued_len(), s.queued_on_disk(), s.queued_bytes()),
            (4, 3, 4)
        );
        s.online = true;
        assert_eq!(s.next_to_send(10, 0), None, "1 waits for its body");
        assert_eq!(s.bodies_wanted(10, 1 << 20), [1, 2, 3]);
        s.load_bodies([(1, Some(kept.message.clone())), (2, None)]);
        assert_eq!(s.next_to_send(10, 0), Some(kept));
        assert_eq!(s.counters.dropped(DropReason::StoreLost), 1);
        // 3 expired before its body was needed; the memory-only delivery follows.
        assert_eq!(s.next_to_send(10, 10), Some(memory_only));
        assert_eq!(s.queued_len(), 0);
        let d = super::tests::delivery(QoS::AtLeastOnce, b"p", None);
        assert!(matches!(s.enqueue(d, 10), Enqueued::Queued));
        assert_eq!(
            s.queued_on_disk(),
            0,
            "online sessions keep bodies in memory"
        );
        assert_eq!(
            events(&mut s),
            vec![
                StoreEvent::Done { message: 2 },
                StoreEvent::Done { message: 3 }
            ]
        );
    }

    #[test]
    fn a_persisted_delivery_dropped_or_expired_is_finished() {
        let mut s = session(true, 60, 1);
        s.enqueue(stored(QoS::AtLeastOnce, 1, None), 0);
        // Drop-oldest makes room: 1 is finished.
        s.enqueue(stored(QoS::AtLeastOnce, 2, Some(5)), 0);
        // 2 expires in the queue.
        assert_eq!(s.next_to_send(10, 10), None);
        s.enqueue(stored(QoS::AtLeastOnce, 3, None), 10);
        // 3 is discarded (too large for the client, say).
        let d = s.next_to_send(10, 10).unwrap();
        s.discard(&d, DropReason::TooLargeForClient);
        assert_eq!(
            events(&mut s),
            vec![
                StoreEvent::Done { message: 1 },
                StoreEvent::Done { message: 2 },
                StoreEvent::Done { message: 3 },
            ]
        );
        // Deliveries kept in memory only are never reported.
        let mut d = stored(QoS::AtLeastOnce, 4, None);
        d.stored_id = None;
        s.enqueue(d, 10);
        let d = s.next_to_send(10, 10).unwrap();
        let id = s.start_inflight(d);
        s.on_puback(id);
        assert_eq!(events(&mut s), vec![]);
    }
}
