//! The journal's state: every live delivery, rebuilt by applying records in sequence order.
//! The same code replays the log on open and follows the writer afterwards, so what the
//! writer believes is live is exactly what a replay of its records would rebuild.
//!
//! It holds no message bodies: of each live body it keeps where its `Message` record is in
//! the log, how many live deliveries refer to it, its expiry time and its payload's length.
//! A snapshot ([`State::snapshot`]) therefore describes deliveries as [`StoredDelivery`]s;
//! the journal reads the bodies of in-flight ones back from the log
//! ([`Snapshot::with_bodies`]), queued ones stay on disk until a session asks for them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use corvus_core::session::OutState;
use corvus_core::{ClientId, Delivery, Message, Millis, StoredDelivery};
use mqtt_codec::{PacketId, QoS};

use super::record::{CopiedSent, MessageId, QueuedCopy, Record, RecordError};
use crate::error::StoreError;
use crate::segment::Seq;

/// A delivery waiting in a session's queue. Its message body stays in the journal's log
/// (read it with [`Journal::read_body`](super::Journal::read_body) under `message_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEntry {
    /// The message id (for later `Sent`/`Done` records, and to read the body back).
    pub message_id: MessageId,
    /// The delivery, without its body.
    pub delivery: StoredDelivery,
}

/// A delivery in flight towards a session's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightEntry {
    /// The message id.
    pub message_id: MessageId,
    /// Its packet id.
    pub packet_id: PacketId,
    /// The delivery, with its body (read from the log: in-flight deliveries are re-sent as
    /// soon as their session's client returns, and there are few of them).
    pub delivery: Delivery,
    /// `AwaitingPubAck`/`AwaitingPubRec` after `Sent`, `AwaitingPubComp` after `Released`.
    pub state: OutState,
}

/// One session's journal state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayedSession {
    /// Deliveries not yet sent, oldest first.
    pub queue: Vec<QueuedEntry>,
    /// Deliveries in flight, in the order they were sent.
    pub inflight: Vec<InflightEntry>,
    /// Packet ids of QoS 2 PUBLISHes received from the session's client and awaiting PUBREL,
    /// ascending.
    pub inbound_qos2: Vec<PacketId>,
}

/// Every session's queue and inflight window, as the journal holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayedState {
    /// By client id; sessions with nothing queued, in flight or awaiting PUBREL are absent.
    pub sessions: BTreeMap<ClientId, ReplayedSession>,
}

/// A [`ReplayedState`] before the bodies of in-flight deliveries are read from the log:
/// what [`State::snapshot`] can tell without reading anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) sessions: BTreeMap<ClientId, SessionSnapshot>,
}

/// A [`ReplayedSession`] whose in-flight deliveries have no body yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionSnapshot {
    pub(crate) queue: Vec<QueuedEntry>,
    pub(crate) inflight: Vec<InflightStub>,
    pub(crate) inbound_qos2: Vec<PacketId>,
}

/// An [`InflightEntry`] whose body has not been read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InflightStub {
    pub(crate) message_id: MessageId,
    pub(crate) packet_id: PacketId,
    pub(crate) delivery: StoredDelivery,
    pub(crate) state: OutState,
}

impl Snapshot {
    /// The state as sessions want it: in-flight deliveries with their bodies, obtained from
    /// `read` (one read per message, shared by every session that has it in flight).
    pub(crate) fn with_bodies(
        self,
        mut read: impl FnMut(MessageId) -> Result<Arc<Message>, StoreError>,
    ) -> Result<ReplayedState, StoreError> {
        let mut read_so_far: HashMap<MessageId, Arc<Message>> = HashMap::new();
        let mut sessions = BTreeMap::new();
        for (client, s) in self.sessions {
            let mut inflight = Vec::with_capacity(s.inflight.len());
            for e in s.inflight {
                let message = match read_so_far.get(&e.message_id) {
                    Some(m) => m.clone(),
                    None => {
                        let m = read(e.message_id)?;
                        read_so_far.insert(e.message_id, m.clone());
                        m
                    }
                };
                inflight.push(InflightEntry {
                    message_id: e.message_id,
                    packet_id: e.packet_id,
                    delivery: e.delivery.with_message(message),
                    state: e.state,
                });
            }
            let session = ReplayedSession {
                queue: s.queue,
                inflight,
                inbound_qos2: s.inbound_qos2,
            };
            sessions.insert(client, session);
        }
        Ok(ReplayedState { sessions })
    }
}

/// What replay skipped or dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records read.
    pub records: u64,
    /// Records that could not be decoded (skipped), with their sequence numbers.
    pub undecodable: Vec<(Seq, RecordError)>,
    /// Deliveries still live at the end of the journal whose message body is missing
    /// (quarantined): lost, and left out of the state.
    pub lost: Vec<(ClientId, MessageId)>,
    /// Records skipped because they belong to the deliveries in `lost`. (Records of
    /// deliveries whose body is gone but that were finished, or carried forward with their
    /// body by compaction, are normal after segments were reclaimed and not counted.)
    pub skipped: u64,
    /// Records about deliveries the journal does not hold (normal for records whose
    /// `Enqueue` was in a reclaimed segment; also what a quarantined `Enqueue` leaves), or that
    /// do not fit the delivery's state. Ignored.
    pub unmatched: u64,
    /// Queued deliveries dropped because their message had expired.
    pub expired: u64,
}

impl ReplayReport {
    /// Whether replay lost nothing to damage (expiry and unmatched records do not count).
    pub fn is_clean(&self) -> bool {
        self.undecodable.is_empty() && self.lost.is_empty() && self.skipped == 0
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) packet_id: PacketId,
    pub(crate) sent_at: Seq,
    pub(crate) released: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) subscription_ids: Vec<u32>,
    pub(crate) queued_at: Seq,
    pub(crate) sent: Option<Sent>,
    /// The record that defines it (`Enqueue` or `Copied`): what keeps it alive in the log.
    pub(crate) defined_at: Seq,
}

#[derive(Debug)]
struct Ghost {
    /// Records seen about it.
    records: u64,
    qos: QoS,
}

#[derive(Debug, Default)]
pub(crate) struct Client {
    pub(crate) entries: HashMap<MessageId, Entry>,
    /// By place in the queue: the defining record's sequence number, then the message id
    /// (a `Received` queues several copies with one sequence number, two of them for the
    /// same session when a shared and a non-shared subscription both matched; the second
    /// copy has the higher id).
    queue: BTreeMap<(Seq, MessageId), MessageId>,
    inflight: BTreeMap<Seq, MessageId>,
    /// Inbound QoS 2 packet ids awaiting PUBREL, with the record that keeps each alive.
    pub(crate) inbound: BTreeMap<PacketId, Seq>,
}

impl Client {
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.inbound.is_empty()
    }
}

/// What is kept in memory of a message body: where to read it back, and the little replay
/// and snapshots need without reading it. The message itself stays in the log.
#[derive(Debug)]
pub(crate) struct Body {
    /// The newest `Message` record holding it.
    pub(crate) seq: Seq,
    /// Live entries referring to it.
    pub(crate) refs: usize,
    /// When the message expires (queued deliveries of an expired message are dropped at
    /// open).
    pub(crate) expires_at: Option<Millis>,
    /// Its payload's length (what sessions count against their byte limits).
    pub(crate) payload_len: usize,
}

impl Body {
    fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// The live deliveries, the bodies they need and where in the log those records are.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) clients: HashMap<ClientId, Client>,
    pub(crate) bodies: HashMap<MessageId, Body>,
    /// Sequence numbers of the records live entries need (defining records and bodies):
    /// a multiset. Nothing below its first key is needed.
    pub(crate) pins: BTreeMap<Seq, usize>,
    /// Deliveries whose body is missing, with the records seen about them.
    ghosts: HashMap<(ClientId, MessageId), Ghost>,
    /// The highest message id seen in any record.
    pub(crate) max_message_id: Option<MessageId>,
    pub(crate) report: ReplayReport,
}

impl State {
    fn pin(&mut self, seq: Seq) {
        *self.pins.entry(seq).or_default() += 1;
    }

    fn unpin(&mut self, seq: Seq) {
        if let Some(n) = self.pins.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.pins.remove(&seq);
            }
        }
    }

    /// Whether a record may refer to the body of `id` (it is known).
    pub(crate) fn has_body(&self, id: MessageId) -> bool {
        self.bodies.contains_key(&id)
    }

    fn add_ref(&mut self, id: MessageId) {
        let body = self.bodies.get_mut(&id).expect("checked by caller");
        body.refs += 1;
        if body.refs == 1 {
            let seq = body.seq;
            self.pin(seq);
        }
    }

    fn drop_ref(&mut self, id: MessageId) {
        if let Some(body) = self.bodies.get_mut(&id) {
            body.refs -= 1;
            if body.refs == 0 {
                let seq = body.seq;
                self.unpin(seq);
            }
        }
    }

    /// Forgets bodies no live entry refers to.
    pub(crate) fn drop_unreferenced(&mut self) {
        self.bodies.retain(|_, b| b.refs > 0);
    }

    fn insert(&mut self, client: &ClientId, id: MessageId, entry: Entry) {
        self.pin(entry.defined_at);
        self.add_ref(id);
        let c = self.clients.entry(client.clone()).or_default();
        match &entry.sent {
            Some(s) => c.inflight.insert(s.sent_at, id),
            None => c.queue.insert((entry.queued_at, id), id),
        };
        c.entries.insert(id, entry);
    }

    /// A delivery appended to the end of a session's queue by the record at `seq`.
    fn enqueue(&mut self, seq: Seq, copy: QueuedCopy) {
        let QueuedCopy {
            client,
            message,
            qos,
            retain,
            subscription_ids,
        } = copy;
        let key = (client, message);
        if self.ghosts.contains_key(&key) || self.entry_mut(&key.0, message).is_some() {
            self.report.unmatched += 1;
        } else if !self.has_body(message) {
            self.ghosts.insert(key, Ghost { records: 1, qos });
        } else {
            let entry = Entry {
                qos,
                retain,
                subscription_ids,
                queued_at: seq,
                sent: None,
                defined_at: seq,
            };
            self.insert(&key.0, message, entry);
        }
    }

    /// An inbound QoS 2 id now kept alive by the record at `seq` (a copy carried forward by
    /// compaction replaces the earlier one).
    fn receive(&mut self, seq: Seq, client: &ClientId, packet_id: PacketId) {
        let c = self.clients.entry(client.clone()).or_default();
        let old = c.inbound.insert(packet_id, seq);
        if let Some(old) = old {
            self.unpin(old);
        }
        self.pin(seq);
    }

    /// PUBREL for an inbound QoS 2 id; false if it was not awaiting one.
    fn release_inbound(&mut self, client: &ClientId, packet_id: PacketId) -> bool {
        let Some(c) = self.clients.get_mut(client) else {
            return false;
        };
        let Some(seq) = c.inbound.remove(&packet_id) else {
            return false;
        };
        if c.is_empty() {
            self.clients.remove(client);
        }
        self.unpin(seq);
        true
    }

    pub(crate) fn remove(&mut self, client: &ClientId, id: MessageId) -> Option<Entry> {
        let c = self.clients.get_mut(client)?;
        let entry = c.entries.remove(&id)?;
        match &entry.sent {
            Some(s) => c.inflight.remove(&s.sent_at),
            None => c.queue.remove(&(entry.queued_at, id)),
        };
        if c.is_empty() {
            self.clients.remove(client);
        }
        self.unpin(entry.defined_at);
        self.drop_ref(id);
        Some(entry)
    }

    fn entry_mut(&mut self, client: &ClientId, id: MessageId) -> Option<&mut Entry> {
        self.clients.get_mut(client)?.entries.get_mut(&id)
    }

    /// Decodes and applies one log payload found at `seq`; an undecodable one is counted and
    /// listed in the report, and skipped.
    pub(crate) fn apply_payload(&mut self, seq: Seq, bytes: &[u8]) {
        match Record::decode(bytes) {
            Ok(record) => self.apply(seq, record),
            Err(e) => {
                self.report.records += 1;
                self.report.undecodable.push((seq, e));
            }
        }
    }

    /// Applies one record found at `seq`.
    pub(crate) fn apply(&mut self, seq: Seq, record: Record) {
        self.report.records += 1;
        let id = record.message_id();
        self.max_message_id = Some(self.max_message_id.map_or(id, |m| m.max(id)));
        match record {
            Record::Message { id, message } => match self.bodies.get_mut(&id) {
                Some(body) => {
                    // A copy written by compaction: it holds the body from now on.
                    let old = body.seq;
                    body.seq = seq;
                    if body.refs > 0 {
                        self.unpin(old);
                        self.pin(seq);
                    }
                }
                None => {
                    // The message itself is dropped here: it is read back from the log.
                    let body = Body {
                        seq,
                        refs: 0,
                        expires_at: message.expires_at,
                        payload_len: message.payload.len(),
                    };
                    self.bodies.insert(id, body);
                }
            },
            Record::Enqueue {
                client,
                message,
                qos,
                retain,
                subscription_ids,
            } => self.enqueue(
                seq,
                QueuedCopy {
                    client,
                    message,
                    qos,
                    retain,
                    subscription_ids,
                },
            ),
            Record::Received {
                client,
                packet_id,
                copies,
            } => {
                self.receive(seq, &client, packet_id);
                for copy in copies {
                    self.enqueue(seq, copy);
                }
            }
            Record::InboundReleased { client, packet_id } => {
                if !self.release_inbound(&client, packet_id) {
                    self.report.unmatched += 1;
                }
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
                self.remove(&client, message);
                let key = (client, message);
                if !self.has_body(message) {
                    let records = self.ghosts.get(&key).map_or(0, |g| g.records) + 1;
                    self.ghosts.insert(key, Ghost { records, qos });
                } else {
                    self.ghosts.remove(&key);
                    let entry = Entry {
                        qos,
                        retain,
                        subscription_ids,
                        queued_at,
                        sent: sent.map(|s: CopiedSent| Sent {
                            packet_id: s.packet_id,
                            sent_at: s.sent_at,
                            released: s.released,
                        }),
                        defined_at: seq,
                    };
                    self.insert(&key.0, message, entry);
                }
            }
            Record::Sent {
                client,
                message,
                packet_id,
            } => {
                let key = (client, message);
                if let Some(g) = self.ghosts.get_mut(&key) {
                    g.records += 1;
                    if g.qos == QoS::AtMostOnce {
                        // Sent means finished: nothing lost.
                        self.ghosts.remove(&key);
                    }
                    return;
                }
                let client = key.0;
                let Some(entry) = self.entry_mut(&client, message) else {
                    self.report.unmatched += 1;
                    return;
                };
                if let Some(s) = &mut entry.sent {
                    // Sent again (a resend): same place in the window.
                    s.packet_id = packet_id;
                    s.released = false;
                    return;
                }
                if entry.qos == QoS::AtMostOnce {
                    // QoS 0 is never in flight: sent means gone.
                    self.remove(&client, message);
                    return;
                }
                entry.sent = Some(Sent {
                    packet_id,
                    sent_at: seq,
                    released: false,
                });
                let queued_at = entry.queued_at;
                let c = self.clients.get_mut(&client).expect("entry exists");
                c.queue.remove(&(queued_at, message));
                c.inflight.insert(seq, message);
            }
            Record::Released {
                client,
                message,
                packet_id,
            } => {
                if let Some(g) = self.ghosts.get_mut(&(client.clone(), message)) {
                    g.records += 1;
                    return;
                }
                match self.entry_mut(&client, message) {
                    Some(Entry {
                        qos: QoS::ExactlyOnce,
                        sent: Some(s),
                        ..
                    }) if s.packet_id == packet_id => s.released = true,
                    _ => self.report.unmatched += 1,
                }
            }
            Record::Done { client, message } => {
                if self.ghosts.remove(&(client.clone(), message)).is_some() {
                    // Finished: nothing lost.
                } else if self.remove(&client, message).is_none() {
                    self.report.unmatched += 1;
                }
            }
        }
    }

    /// Ends a replay: reports lost deliveries, forgets bodies nothing refers to, and returns
    /// the queued deliveries whose message has expired (counted; the caller journals their
    /// `Done`).
    pub(crate) fn finish_replay(&mut self, now: Millis) -> Vec<Record> {
        let mut expired = Vec::new();
        for (client, c) in &self.clients {
            for (&id, e) in &c.entries {
                let is_expired = self.bodies.get(&id).is_some_and(|b| b.is_expired(now));
                if e.sent.is_none() && is_expired {
                    expired.push((client.clone(), id));
                }
            }
        }
        expired.sort();
        self.report.expired = expired.len() as u64;
        let mut lost = Vec::new();
        for (key, ghost) in self.ghosts.drain() {
            self.report.skipped += ghost.records;
            lost.push(key);
        }
        lost.sort();
        self.report.lost = lost;
        self.drop_unreferenced();
        expired
            .into_iter()
            .map(|(client, message)| Record::Done { client, message })
            .collect()
    }

    /// A live delivery, without its body.
    fn delivery(&self, id: MessageId, e: &Entry) -> StoredDelivery {
        let body = self.bodies.get(&id);
        StoredDelivery {
            stored_id: id,
            qos: e.qos,
            retain: e.retain,
            subscription_ids: e.subscription_ids.clone(),
            payload_len: body.map_or(0, |b| b.payload_len),
            expires_at: body.and_then(|b| b.expires_at),
        }
    }

    /// The state, bodies left in the log.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut sessions = BTreeMap::new();
        for (client, c) in &self.clients {
            let queue = c
                .queue
                .values()
                .map(|&id| QueuedEntry {
                    message_id: id,
                    delivery: self.delivery(id, &c.entries[&id]),
                })
                .collect();
            let inflight = c
                .inflight
                .values()
                .map(|&id| {
                    let e = &c.entries[&id];
                    let s = e.sent.as_ref().expect("inflight entries are sent");
                    InflightStub {
                        message_id: id,
                        packet_id: s.packet_id,
                        delivery: self.delivery(id, e),
                        state: match (s.released, e.qos) {
                            (true, _) => OutState::AwaitingPubComp,
                            (false, QoS::ExactlyOnce) => OutState::AwaitingPubRec,
                            (false, _) => OutState::AwaitingPubAck,
                        },
                    }
                })
                .collect();
            let inbound_qos2 = c.inbound.keys().copied().collect();
            sessions.insert(
                client.clone(),
                SessionSnapshot {
                    queue,
                    inflight,
                    inbound_qos2,
                },
            );
        }
        Snapshot { sessions }
    }

    /// The record that keeps a live inbound QoS 2 id wherever it is written.
    pub(crate) fn copy_inbound_record(client: &ClientId, packet_id: PacketId) -> Record {
        Record::Received {
            client: client.clone(),
            packet_id,
            copies: Vec::new(),
        }
    }

    /// The record that recreates a live entry wherever it is written.
    pub(crate) fn copy_record(client: &ClientId, id: MessageId, e: &Entry) -> Record {
        Record::Copied {
            client: client.clone(),
            message: id,
            qos: e.qos,
            retain: e.retain,
            subscription_ids: e.subscription_ids.clone(),
            queued_at: e.queued_at,
            sent: e.sent.as_ref().map(|s| CopiedSent {
                packet_id: s.packet_id,
                sent_at: s.sent_at,
                released: s.released,
            }),
        }
    }
}
