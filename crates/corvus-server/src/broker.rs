//! The broker's shared state and the operations on it that span sessions: the session
//! registry (with takeover), the subscription index, retained messages, and routing.
//!
//! [`SessionOwnership`] and [`MessageRouting`] are the seams a cluster replaces; [`Broker`] is
//! their single-node implementation.
//!
//! Locking discipline, which keeps publishers and connections free of deadlocks: a session's
//! lock is never held while taking the index, retained or registry locks, and the index lock
//! is taken before the registry lock, never after. Publishing takes the index for reading
//! only, so publishers proceed in parallel; each matching session is locked briefly, alone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use corvus_core::connection::is_reserved_topic;
use corvus_core::retained::RetainedStore;
use corvus_core::router::{plan_deliveries, retained_delivery};
use corvus_core::session::{authorized_will, Enqueued, SessionCounters};
use corvus_core::topic_tree::{SubscriptionEntry, SubscriptionTree};
use corvus_core::{BrokerConfig, ClientId, Delivery, Message, Millis, Session};
use corvus_store::{Recovered, Store, StoreOp, Ticket};
use mqtt_codec::{PacketId, QoS};
use tokio::sync::oneshot;

use crate::connection_info::ConnectionInfo;
use crate::metrics::Metrics;
use crate::persist;
use crate::security::RetainedQuota;
use crate::topic_rates::TopicRates;

/// Why a connection is asked to leave its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictReason {
    /// Another connection with the same client id takes the session over (DISCONNECT 0x8E).
    TakenOver,
    /// An administrator disconnects the client (DISCONNECT 0x98), through the admin API.
    Administrator,
}

/// Sent to the connection that owns a session to make it leave. The owner closes, settles
/// the session, and then answers on `done`.
#[derive(Debug)]
pub struct Evict {
    pub reason: EvictReason,
    pub done: oneshot::Sender<()>,
}

/// The connection currently owning a session.
#[derive(Debug)]
pub struct Owner {
    pub connection: u64,
    pub kick: crate::kick::Kick,
    /// Who is connected, for the admin API.
    pub info: Arc<ConnectionInfo>,
}

/// What asking a client to leave did ([`Broker::evict`]).
#[derive(Debug)]
pub enum Eviction {
    /// No connection holds the client's session.
    NotConnected,
    /// Its connection was asked; the receiver resolves once it has closed.
    Asked(oneshot::Receiver<()>),
    /// Its connection is leaving already (asked by someone else).
    Leaving,
}

/// A session and what other tasks need to reach it.
#[derive(Debug)]
pub struct SessionHandle {
    session: Mutex<Session>,
    /// Wakes the owning connection when messages are queued.
    pub notify: crate::signal::Signal,
    online: AtomicBool,
    owner: Mutex<Option<Owner>>,
    /// Whether the store holds a record of this session (so its end must delete it).
    stored: AtomicBool,
}

impl SessionHandle {
    fn new(session: Session) -> SessionHandle {
        SessionHandle {
            session: Mutex::new(session),
            notify: Default::default(),
            online: AtomicBool::new(false),
            owner: Mutex::new(None),
            stored: AtomicBool::new(false),
        }
    }

    /// The op that records the session's state in the store (its record, or its deletion
    /// when it no longer outlives its connection), if the store must hear of it.
    pub fn record_op(&self, session: &Session) -> Option<StoreOp> {
        let persistent = session.is_persistent();
        let was_stored = self.stored.swap(persistent, Ordering::AcqRel);
        (persistent || was_stored).then(|| persist::record_op(session))
    }

    /// The op that deletes the session from the store, if it is there.
    fn delete_op(&self, client: &ClientId) -> Option<StoreOp> {
        self.stored
            .swap(false, Ordering::AcqRel)
            .then(|| StoreOp::DeleteSession {
                client: client.clone(),
            })
    }

    /// Locks the session. A panic elsewhere while holding it must not take every client of
    /// the session down with it, so poisoning is ignored: the data is plain bookkeeping.
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    fn owner(&self) -> MutexGuard<'_, Option<Owner>> {
        self.owner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection holding the session now, if one does.
    pub fn connection_info(&self) -> Option<Arc<ConnectionInfo>> {
        self.owner().as_ref().map(|owner| owner.info.clone())
    }
}

/// The outcome of claiming a session for a new connection.
#[derive(Debug)]
pub enum Claim {
    /// The session is this connection's; `existed` says whether it was there before.
    Owned {
        handle: Arc<SessionHandle>,
        existed: bool,
    },
    /// Another connection owns it: ask it to leave through this sender, wait, and claim
    /// again. The owner stays the owner until it has settled the session and let go.
    Busy(crate::kick::Kick),
}

/// Who owns each client's session. On a single node the registry is a map in memory; in a
/// cluster, claiming is a compare-and-swap on the replicated registry and the session is
/// handed over from the node that owned it. Connection tasks use only this interface.
pub trait SessionOwnership: Send + Sync {
    /// Claims the session of `client` for connection `owner`, creating it if needed.
    fn claim_session(&self, client: &ClientId, owner: Owner) -> Claim;
    /// Starts a claimed session afresh (Clean Start, or an expired session).
    fn reset_session(&self, handle: &SessionHandle, now: Millis);
    /// Gives up ownership after the connection closed; true if `connection` was the owner.
    fn release_session(&self, handle: &Arc<SessionHandle>, connection: u64) -> bool;
    /// Removes an ended session and its subscriptions, unless it was claimed since.
    fn end_session(&self, client: &ClientId, handle: &Arc<SessionHandle>, now: Millis);
}

/// What routing one message did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Routed {
    /// Sessions it was queued for.
    pub queued: usize,
    /// The store batch holding what routing wrote (queued copies, the retained message):
    /// an acknowledgement of the message waits for it when the sync policy says so.
    pub ticket: Option<Ticket>,
}

/// The store ids of one message's persisted copies. The store knows a delivery by session
/// and message id, so the copies share one id, except a second copy for the same session (a
/// shared and a non-shared subscription both matched, MQTT 5.0 section 4.8.2), which gets
/// its own.
#[derive(Debug, Default)]
struct StoreIds {
    message: Option<u64>,
    sessions: HashSet<ClientId>,
}

impl StoreIds {
    fn for_session(&mut self, client: &ClientId, store: &Store) -> u64 {
        if self.sessions.insert(client.clone()) {
            *self.message.get_or_insert_with(|| store.next_message_id())
        } else {
            store.next_message_id()
        }
    }
}

/// The op that records a delivery queued for `session`.
fn enqueue_op(session: &Session, delivery: Delivery) -> StoreOp {
    StoreOp::Enqueue {
        client: session.client_id().clone(),
        delivery,
    }
}

/// A recipient of a message being routed.
struct Target {
    client: ClientId,
    handle: Arc<SessionHandle>,
    delivery: Delivery,
}

/// The packet id of a QoS 2 PUBLISH from a persistent session, to be stored together with
/// the copies its routing queues (see `corvus_core::Action::Publish`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The publisher.
    pub client: ClientId,
    pub packet_id: PacketId,
}

/// Where messages go and who is subscribed. On a single node: the matching sessions here. In
/// a cluster: also one copy to each node with subscribers, and subscriptions replicated so
/// every node knows where to send. Connection tasks use only this interface.
pub trait MessageRouting: Send + Sync {
    /// Routes a message to every matching session (and keeps it if retained). With a
    /// `receipt`, the packet id and every queued copy are stored as one.
    fn publish(&self, message: Arc<Message>, receipt: Option<Receipt>, now: Millis) -> Routed;
    fn subscribe(&self, client: &ClientId, filter: &str, entry: SubscriptionEntry);
    fn unsubscribe(&self, client: &ClientId, filter: &str);
    /// Queues the retained messages matching a new subscription for its session.
    fn send_retained(
        &self,
        handle: &SessionHandle,
        filter: &str,
        entry: &SubscriptionEntry,
        now: Millis,
    ) -> Option<Ticket>;
}

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    /// The limits new sessions are created with; a reload replaces them.
    config: RwLock<Arc<BrokerConfig>>,
    sessions: RwLock<HashMap<ClientId, Arc<SessionHandle>>>,
    /// The sessions no connection owns, which the sweep walks (a will's delay, a session's
    /// expiry, expiring queued messages): its cost follows them, not every session. Walking
    /// all sessions four times a second would cost a broker with a million connected
    /// clients about a core. Keyed by the handle's address (unique while the entry holds
    /// it); changed under the session's owner lock, so it follows ownership in order.
    offline: Mutex<HashMap<usize, Arc<SessionHandle>>>,
    tree: RwLock<SubscriptionTree>,
    retained: RwLock<RetainedStore>,
    /// The broker's own `$SYS` messages (`sys.rs`) are retained apart: in memory only,
    /// never persisted, outside the clients' retained quota and figures. Only a `$SYS`
    /// filter can match them (a filter starting with a wildcard never does).
    sys_retained: RwLock<RetainedStore>,
    pub metrics: Metrics,
    /// The topics clients publish to most (the admin API's top topics).
    pub topic_rates: TopicRates,
    /// The connections' timers, rung by one task the server runs.
    pub alarms: Arc<crate::kick::ConnectionAlarms>,
    /// Set by [`Broker::shutdown_connections`]: a session claimed after it is told at once.
    shutting_down: AtomicBool,
    next_connection: AtomicU64,
    store: Option<Arc<Store>>,
}

/// A session's key in [`Broker::offline`].
fn offline_key(handle: &Arc<SessionHandle>) -> usize {
    Arc::as_ptr(handle) as usize
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
    /// A broker that keeps everything in memory.
    pub fn new(config: BrokerConfig) -> Broker {
        Broker::build(config, None)
    }

    fn build(config: BrokerConfig, store: Option<Arc<Store>>) -> Broker {
        Broker {
            // Sessions report what to persist exactly when there is a store to hear it.
            config: RwLock::new(Arc::new(BrokerConfig {
                persistence: store.is_some(),
                ..config
            })),
            sessions: RwLock::new(HashMap::new()),
            offline: Mutex::default(),
            tree: RwLock::new(SubscriptionTree::new()),
            retained: RwLock::new(RetainedStore::new()),
            sys_retained: RwLock::new(RetainedStore::new()),
            metrics: Metrics::default(),
            topic_rates: TopicRates::default(),
            alarms: Default::default(),
            shutting_down: AtomicBool::new(false),
            next_connection: AtomicU64::new(1),
            store,
        }
    }

    /// A broker that persists to `store`, starting from what it recovered. Returns the
    /// broker and the wills due now (to publish): those of sessions that expired while it was
    /// down, and those of connections it had when it stopped without their ending (a crash).
    ///
    /// Every recovered session gets the authorizer `restore` makes from the principal in its
    /// record (`persist::restore_session`), and every will is checked with it as when a will
    /// fires normally (`corvus_core::session::authorized_will`): the wills returned are the
    /// ones still allowed; the others are counted as dropped.
    pub fn with_store(
        config: BrokerConfig,
        store: Arc<Store>,
        recovered: Recovered,
        now: Millis,
        restore: &persist::RestoreAuthorizer<'_>,
    ) -> (Arc<Broker>, Vec<Arc<Message>>) {
        let broker = Arc::new(Broker::build(config, Some(store)));
        let Recovered {
            state, mut queues, ..
        } = recovered;
        let mut records = Vec::new();
        let mut wills: Vec<Arc<Message>> = Vec::new();
        // Retained messages first: a retained will is checked against the retained quota.
        {
            let mut retained = write(&broker.retained);
            let mut stale = Vec::new();
            for message in state.retained {
                // `$SYS` messages an earlier version persisted: never served again.
                match is_reserved_topic(&message.topic) {
                    true => stale.push(StoreOp::DeleteRetained(message.topic)),
                    false => {
                        retained.set(Arc::new(message));
                    }
                }
            }
            broker.persist(stale);
        }
        {
            let mut sessions = write(&broker.sessions);
            let mut tree = write(&broker.tree);
            for loaded in state.sessions {
                let client = loaded.client_id.clone();
                let was_online = loaded.record.disconnected_at.is_none();
                let queue = queues.sessions.remove(&client);
                let mut session = persist::restore_session(&broker, loaded, queue, now, restore);
                for (filter, entry) in session.subscriptions() {
                    tree.subscribe(&client, filter, entry.clone());
                }
                if was_online {
                    // Its connection ended with the broker, without DISCONNECT: its will is
                    // due now, or pending for its delay.
                    wills.extend(session.release_armed_will(now, false));
                    // Its expiry counts from now: record when that was, and the will's fate.
                    records.push(persist::record_op(&session));
                }
                // A will refused here is counted now.
                broker.settle_into(&mut session, &mut records);
                let handle = Arc::new(SessionHandle::new(session));
                handle.stored.store(true, Ordering::Release);
                // Recovered sessions start offline.
                broker
                    .offline()
                    .insert(offline_key(&handle), handle.clone());
                sessions.insert(client, handle);
            }
        }
        broker.persist(records);
        // Their sessions are gone: each is checked with the authorizer its record's principal
        // stands for, and a refusal counted, as for a session's own will.
        let mut counters = SessionCounters::default();
        for expired in state.expired_wills {
            if expired.will.message.is_expired(now) {
                continue;
            }
            let authorizer = restore(
                expired
                    .principal
                    .as_ref()
                    .map(corvus_core::Principal::as_str),
                &expired.client_id,
                &broker,
            );
            wills.extend(authorized_will(
                Some(&*authorizer),
                expired.will.message,
                &mut counters,
            ));
        }
        for (reason, n) in counters.take_unreported() {
            broker.metrics.count_drops(reason, n);
        }
        (broker, wills)
    }

    fn offline(&self) -> MutexGuard<'_, HashMap<usize, Arc<SessionHandle>>> {
        self.offline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits new sessions are created with.
    pub fn config(&self) -> Arc<BrokerConfig> {
        read(&self.config).clone()
    }

    /// Replaces the limits new sessions are created with (a reload); whether the broker
    /// persists stays as it started.
    pub fn set_config(&self, config: BrokerConfig) {
        let mut current = write(&self.config);
        *current = Arc::new(BrokerConfig {
            persistence: current.persistence,
            ..config
        });
    }

    /// The store, if the broker persists.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Hands ops to the store; the ticket of their batch, or `None` if nothing was written.
    pub fn persist(&self, ops: Vec<StoreOp>) -> Option<Ticket> {
        let store = self.store.as_ref()?;
        if ops.is_empty() {
            return None;
        }
        Some(store.submit(ops))
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    // ---- sessions ----

    pub fn session(&self, client: &str) -> Option<Arc<SessionHandle>> {
        read(&self.sessions).get(client).cloned()
    }

    pub fn session_count(&self) -> usize {
        read(&self.sessions).len()
    }

    /// Every session's handle at this moment, copied out so that the caller looks at each
    /// session without holding the registry (periodic statistics; as costly as `sweep`).
    pub fn session_handles(&self) -> Vec<Arc<SessionHandle>> {
        read(&self.sessions).values().cloned().collect()
    }

    /// Every session with its client id, copied out as [`session_handles`](Self::session_handles).
    pub fn sessions_by_client(&self) -> Vec<(ClientId, Arc<SessionHandle>)> {
        read(&self.sessions)
            .iter()
            .map(|(client, handle)| (client.clone(), handle.clone()))
            .collect()
    }

    /// Tells every connection that owns a session, now or later, that the broker is
    /// shutting down (through its kick slot: a waiting connection watches nothing else).
    /// True the first time.
    pub fn shutdown_connections(&self) -> bool {
        // Set before the walk: a claim the walk misses sees it (`claim_session`).
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return false;
        }
        for handle in read(&self.sessions).values() {
            if let Some(owner) = handle.owner().as_ref() {
                owner.kick.shutdown();
            }
        }
        true
    }

    /// Asks the connection holding `client`'s session to leave, for `reason`.
    pub fn evict(&self, client: &str, reason: EvictReason) -> Eviction {
        let Some(handle) = self.session(client) else {
            return Eviction::NotConnected;
        };
        let owner = handle.owner();
        let Some(owner) = owner.as_ref() else {
            return Eviction::NotConnected;
        };
        let (done, left) = oneshot::channel();
        match owner.kick.try_send(Evict { reason, done }) {
            Ok(()) => Eviction::Asked(left),
            // One request at a time: a full channel means it is already being asked; a
            // closed one, that its task is finishing.
            Err(_) => Eviction::Leaving,
        }
    }

    /// Ends `client`'s session as an administrator asks: its connection, if any, must have
    /// left first (see [`evict`](Self::evict)). Its will, if any, is published as at any
    /// session's end. False if there is no such session, or a connection holds it again.
    pub fn discard_session(&self, client: &str, now: Millis) -> bool {
        let Some(handle) = self.session(client) else {
            return false;
        };
        if handle.owner().is_some() {
            return false;
        }
        let client = handle.lock().client_id().clone();
        self.end_session(&client, &handle, now);
        self.session(client.as_ref())
            .is_none_or(|current| !Arc::ptr_eq(&current, &handle))
    }

    /// Fires due delayed wills and ends expired sessions. Called periodically.
    pub fn sweep(&self, now: Millis) {
        let offline: Vec<Arc<SessionHandle>> = self.offline().values().cloned().collect();
        for handle in offline {
            // Claimed since the list was taken.
            if handle.is_online() {
                continue;
            }
            let (client, will, expired) = {
                let mut session = handle.lock();
                let client = session.client_id().clone();
                // Expired messages leave an offline queue now, not when the client returns:
                // their journal space is reclaimed.
                if session.drop_expired(now) > 0 {
                    self.settle(&mut session);
                }
                let had_will = session.pending_will.is_some();
                let will = session.take_due_will(now);
                let expired = session.is_expired(now);
                if had_will && session.pending_will.is_none() && !expired {
                    // Fired or refused (and counted): either way it is gone from the record.
                    let record = handle.record_op(&session).into_iter().collect();
                    self.settle_with(&mut session, record);
                }
                (client, will, expired)
            };
            if let Some(will) = will {
                self.publish(will, None, now);
            }
            if expired {
                self.end_session(&client, &handle, now);
            }
        }
    }

    // ---- subscriptions and retained messages ----

    pub fn subscription_count(&self) -> usize {
        read(&self.tree).len()
    }

    /// Whether retaining a payload of `len` bytes on `topic` stays within `quota` (counted
    /// as the retained store counts: topic and payload bytes). Replacing the topic's current
    /// message frees what it held.
    pub fn retained_admits(&self, topic: &str, len: usize, quota: RetainedQuota) -> bool {
        let retained = read(&self.retained);
        let (count, freed) = match retained.get(topic) {
            Some(current) => (retained.len(), current.topic.len() + current.payload.len()),
            None => (retained.len() + 1, 0),
        };
        let bytes = retained.bytes().saturating_sub(freed) + topic.len() + len;
        count <= quota.max_messages && bytes <= quota.max_bytes
    }

    pub fn retained_count(&self) -> usize {
        read(&self.retained).len()
    }

    /// Topic and payload bytes of the retained messages held (as the quota counts them).
    pub fn retained_bytes(&self) -> usize {
        read(&self.retained).bytes()
    }

    /// The message retained on `topic`, if any (expired or not: the sweep of the retained
    /// store is lazy, so callers check [`Message::is_expired`]).
    pub fn retained_message(&self, topic: &str) -> Option<Arc<Message>> {
        read(self.retained_for(topic)).get(topic).cloned()
    }

    /// The live retained messages matching `filter`, as a new subscription would get them.
    pub fn retained_matching(&self, filter: &str, now: Millis) -> Vec<Arc<Message>> {
        read(self.retained_for(filter)).matching(filter, now)
    }

    /// Clears the message retained on `topic` (and from the store), as a retained PUBLISH
    /// with an empty payload would, without delivering anything. False if there was none.
    pub fn clear_retained(&self, topic: &str) -> bool {
        let lock = self.retained_for(topic);
        let mut retained = write(lock);
        let Some(old) = retained.remove(topic) else {
            return false;
        };
        // `$SYS` is never persisted; written under the lock, as `publish` does, so the store
        // sees retained changes in order.
        if !std::ptr::eq(lock, &self.sys_retained) {
            self.persist(vec![StoreOp::DeleteRetained(old.topic.clone())]);
        }
        true
    }

    /// Where messages retained on `topic`, or matching `filter`, are held.
    fn retained_for(&self, topic_or_filter: &str) -> &RwLock<RetainedStore> {
        match is_reserved_topic(topic_or_filter) {
            true => &self.sys_retained,
            false => &self.retained,
        }
    }

    // ---- routing ----

    /// Takes what a session reported since last time: its drops go to the broker-wide
    /// metrics (every drop is counted by its session first, so this is the one path into the
    /// metrics), its changes to durable state go to the store, in the order they happened.
    /// Called with the session locked, so one session's writes reach the store in order.
    pub fn settle(&self, session: &mut Session) -> Option<Ticket> {
        self.settle_with(session, Vec::new())
    }

    /// [`settle`](Self::settle), with `ops` written first.
    pub fn settle_with(&self, session: &mut Session, mut ops: Vec<StoreOp>) -> Option<Ticket> {
        self.settle_into(session, &mut ops);
        self.persist(ops)
    }

    /// [`settle`](Self::settle), with the session's store ops added to `ops` rather than
    /// written.
    fn settle_into(&self, session: &mut Session, ops: &mut Vec<StoreOp>) {
        for (reason, n) in session.counters.take_unreported() {
            self.metrics.count_drops(reason, n);
        }
        // Without a store, sessions report nothing (`BrokerConfig::persistence`).
        if self.store.is_some() {
            persist::session_ops(session, ops);
        }
    }

    /// Queues one delivery for a locked session. A delivery to be persisted gets its store
    /// id (see [`StoreIds`]) first. Returns whether it was queued and, if it was and is
    /// persisted, the copy the store must record.
    fn queue_delivery(
        &self,
        session: &mut Session,
        mut delivery: Delivery,
        ids: &mut StoreIds,
        now: Millis,
    ) -> (bool, Option<Delivery>) {
        let persisted = match &self.store {
            Some(store) if delivery.qos != QoS::AtMostOnce && session.is_persistent() => {
                delivery.stored_id = Some(ids.for_session(session.client_id(), store));
                true
            }
            _ => false,
        };
        let copy = persisted.then(|| delivery.clone());
        let queued = !matches!(session.enqueue(delivery, now), Enqueued::Dropped(_));
        (queued, copy.filter(|_| queued))
    }
}

impl Broker {
    /// Queues a message's deliveries, locking each recipient's session alone. Each
    /// session's copy is written to the store under its lock. Returns how many sessions
    /// queued it and the store batch written.
    fn route(&self, targets: Vec<Target>, now: Millis) -> (usize, Option<Ticket>) {
        let mut queued = 0;
        let mut ticket = None;
        let mut stored_ids = StoreIds::default();
        for Target {
            handle, delivery, ..
        } in targets
        {
            let was_queued = {
                let mut session = handle.lock();
                let (was_queued, copy) =
                    self.queue_delivery(&mut session, delivery, &mut stored_ids, now);
                let op = copy.map(|delivery| enqueue_op(&session, delivery));
                let written = self.settle_with(&mut session, op.into_iter().collect());
                ticket = ticket.max(written);
                was_queued
            };
            if was_queued {
                queued += 1;
                handle.notify.raise();
            }
        }
        (queued, ticket)
    }

    /// Queues a QoS 2 message whose packet id must be stored together with its copies:
    /// one store op holds the id and every copy. Every recipient's session stays locked
    /// until that op is submitted, so none can send its copy (and store that it did) before
    /// the copy itself is stored. The sessions are locked in client id order, the one order
    /// every multi-session lock follows, so two publishers never wait for each other; a
    /// session that gets two copies (a shared and a non-shared subscription) is locked once.
    fn route_with_receipt(
        &self,
        mut targets: Vec<Target>,
        receipt: Receipt,
        now: Millis,
    ) -> (usize, Option<Ticket>) {
        targets.sort_by(|a, b| a.client.cmp(&b.client));
        let handles: Vec<Arc<SessionHandle>> = targets.iter().map(|t| t.handle.clone()).collect();
        let mut sessions: Vec<MutexGuard<'_, Session>> = Vec::new();
        let mut slots = Vec::with_capacity(targets.len());
        for (i, handle) in handles.iter().enumerate() {
            if i == 0 || targets[i - 1].client != targets[i].client {
                sessions.push(handle.lock());
            }
            slots.push(sessions.len() - 1);
        }
        let mut ops = Vec::new();
        let mut copies = Vec::new();
        let mut stored_ids = StoreIds::default();
        let mut queued = Vec::with_capacity(targets.len());
        for (target, slot) in targets.into_iter().zip(slots) {
            let session = &mut sessions[slot];
            let (was_queued, copy) =
                self.queue_delivery(session, target.delivery, &mut stored_ids, now);
            copies.extend(copy.map(|delivery| (target.client, delivery)));
            if was_queued {
                queued.push(target.handle);
            }
            // What the session reported (drops, a delivery it evicted) goes first.
            self.settle_into(session, &mut ops);
        }
        ops.push(StoreOp::Received {
            client: receipt.client,
            packet_id: receipt.packet_id,
            copies,
        });
        let ticket = self.persist(ops);
        drop(sessions);
        for handle in &queued {
            handle.notify.raise();
        }
        (queued.len(), ticket)
    }
}

impl SessionOwnership for Broker {
    /// Claims the session of `client` for connection `owner`, creating it if needed.
    fn claim_session(&self, client: &ClientId, owner: Owner) -> Claim {
        let mut sessions = write(&self.sessions);
        let mut existed = true;
        let handle = sessions
            .entry(client.clone())
            .or_insert_with(|| {
                existed = false;
                Arc::new(SessionHandle::new(Session::new(
                    client.clone(),
                    &self.config(),
                )))
            })
            .clone();
        drop(sessions);
        let mut current = handle.owner();
        if let Some(previous) = current.as_ref() {
            return Claim::Busy(previous.kick.clone());
        }
        let owner = current.insert(owner);
        // Under the owner's lock, which the shutdown walk takes too: either the walk comes
        // after and kicks this owner, or the flag it set first is seen here.
        if self.shutting_down.load(Ordering::SeqCst) {
            owner.kick.shutdown();
        }
        handle.online.store(true, Ordering::Release);
        self.offline().remove(&offline_key(&handle));
        drop(current);
        Claim::Owned { handle, existed }
    }

    /// Starts a claimed session afresh (Clean Start, or an expired session): its
    /// subscriptions leave the index and its messages are discarded. The old session ends
    /// here, so a will still waiting for its delay is published now (MQTT 5.0 3.1.3.2.2).
    fn reset_session(&self, handle: &SessionHandle, now: Millis) {
        let (client, filters, will) = {
            let mut session = handle.lock();
            // Checked with the old session's authorizer (the new connection's is not set
            // yet), and counted by the settle if refused.
            let will = session.take_ending_will();
            self.settle(&mut session);
            let filters: Vec<_> = session.subscriptions().map(|(f, _)| f.clone()).collect();
            let client = session.client_id().clone();
            *session = Session::new(client.clone(), &self.config());
            self.persist(handle.delete_op(&client).into_iter().collect());
            (client, filters, will)
        };
        {
            let mut tree = write(&self.tree);
            for filter in filters {
                tree.unsubscribe(&client, &filter);
            }
        }
        if let Some(will) = will {
            self.publish(will, None, now);
        }
    }

    /// Gives up ownership after the connection closed. Returns true if `connection` was the
    /// owner (a connection that was taken over no longer is).
    fn release_session(&self, handle: &Arc<SessionHandle>, connection: u64) -> bool {
        let mut owner = handle.owner();
        let mine = owner.as_ref().is_some_and(|o| o.connection == connection);
        if mine {
            *owner = None;
            handle.online.store(false, Ordering::Release);
            self.offline().insert(offline_key(handle), handle.clone());
        }
        mine
    }

    /// Removes an ended session and its subscriptions, unless a connection claimed it since.
    fn end_session(&self, client: &ClientId, handle: &Arc<SessionHandle>, now: Millis) {
        {
            let mut sessions = write(&self.sessions);
            let current = sessions.get(client).is_some_and(|h| Arc::ptr_eq(h, handle));
            let owner = handle.owner();
            if !current || owner.is_some() {
                return;
            }
            sessions.remove(client);
            self.offline().remove(&offline_key(handle));
        }
        // The session's end is the latest moment for a delayed will [MQTT-3.1.3-9].
        let (filters, will) = {
            let mut session = handle.lock();
            let filters: Vec<_> = session.subscriptions().map(|(f, _)| f.clone()).collect();
            let will = session.take_ending_will();
            self.settle(&mut session);
            self.persist(handle.delete_op(client).into_iter().collect());
            (filters, will)
        };
        {
            let mut tree = write(&self.tree);
            for filter in filters {
                tree.unsubscribe(client, &filter);
            }
        }
        if let Some(will) = will {
            self.publish(will, None, now);
        }
    }
}

impl MessageRouting for Broker {
    /// Routes a message to every matching session and, if its RETAIN flag is set, makes it
    /// the topic's retained message (or clears that, for an empty payload). Returns the
    /// number of sessions it was queued for.
    fn publish(&self, message: Arc<Message>, receipt: Option<Receipt>, now: Millis) -> Routed {
        let mut ticket = None;
        if message.retain && is_reserved_topic(&message.topic) {
            write(&self.sys_retained).set(message.clone());
        } else if message.retain {
            let mut retained = write(&self.retained);
            retained.set(message.clone());
            // Written under the index lock, so the store sees retained changes in the order
            // the index does.
            ticket = self.persist(vec![persist::retained_op(&message)]);
        }
        // One pass under the index and registry locks finds every recipient's session; the
        // sessions are then locked with no other lock held.
        let targets: Vec<Target> = {
            let tree = read(&self.tree);
            let sessions = read(&self.sessions);
            plan_deliveries(&message, &tree, |client| {
                sessions.get(client).is_some_and(|h| h.is_online())
            })
            .into_iter()
            .filter_map(|(client, delivery)| {
                let handle = sessions.get(&client)?.clone();
                Some(Target {
                    client,
                    handle,
                    delivery,
                })
            })
            .collect()
        };
        let (queued, written) = match receipt {
            Some(receipt) if self.store.is_some() => self.route_with_receipt(targets, receipt, now),
            _ => self.route(targets, now),
        };
        Routed {
            queued,
            ticket: ticket.max(written),
        }
    }

    fn subscribe(&self, client: &ClientId, filter: &str, entry: SubscriptionEntry) {
        write(&self.tree).subscribe(client, filter, entry);
    }

    fn unsubscribe(&self, client: &ClientId, filter: &str) {
        write(&self.tree).unsubscribe(client, filter);
    }

    /// Queues the retained messages matching a new subscription for its session.
    fn send_retained(
        &self,
        handle: &SessionHandle,
        filter: &str,
        entry: &SubscriptionEntry,
        now: Millis,
    ) -> Option<Ticket> {
        let messages = read(self.retained_for(filter)).matching(filter, now);
        if messages.is_empty() {
            return None;
        }
        let mut session = handle.lock();
        let mut ops = Vec::new();
        for message in messages {
            let delivery = retained_delivery(&message, entry);
            let (_, copy) =
                self.queue_delivery(&mut session, delivery, &mut StoreIds::default(), now);
            ops.extend(copy.map(|delivery| enqueue_op(&session, delivery)));
        }
        self.settle_with(&mut session, ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(broker: &Broker, client: &str, connection: u64) -> Arc<SessionHandle> {
        let owner = Owner {
            connection,
            kick: crate::kick::channel().0,
            info: crate::connection_info::tests::info(),
        };
        match broker.claim_session(&client.into(), owner) {
            Claim::Owned { handle, .. } => handle,
            Claim::Busy(_) => panic!("{client} is owned already"),
        }
    }

    /// Leaves a session that outlives its connection by a second, as the connection's end
    /// does.
    fn leave(broker: &Broker, handle: &Arc<SessionHandle>, connection: u64, now: Millis) {
        {
            let mut session = handle.lock();
            session.expiry_interval = 1;
            session.disconnected_at = Some(now);
        }
        assert!(broker.release_session(handle, connection));
    }

    #[test]
    fn the_sweep_walks_only_the_sessions_no_connection_owns() {
        let broker = Broker::new(BrokerConfig::default());
        let now = 1_000_000;
        let _online = claim(&broker, "online", 1);
        let leaving = claim(&broker, "leaving", 2);
        assert_eq!(
            broker.offline().len(),
            0,
            "connected sessions are not swept"
        );
        leave(&broker, &leaving, 2, now);
        assert_eq!(broker.offline().len(), 1);
        // Not expired yet: kept, and still swept.
        broker.sweep(now + 999);
        assert!(broker.session("leaving").is_some());
        assert_eq!(broker.offline().len(), 1);
        // Back before its expiry: its connection owns it again, and the sweep leaves it.
        let back = claim(&broker, "leaving", 3);
        assert!(Arc::ptr_eq(&back, &leaving));
        assert_eq!(broker.offline().len(), 0);
        // Gone again, and expired: the sweep ends it and forgets it.
        leave(&broker, &back, 3, now + 2_000);
        broker.sweep(now + 3_000);
        assert!(broker.session("leaving").is_none());
        assert_eq!(broker.offline().len(), 0);
        // A connected session is never ended by the sweep, however late.
        broker.sweep(Millis::MAX);
        assert!(broker.session("online").is_some());
    }

    #[test]
    fn a_taken_over_session_is_not_offline() {
        let broker = Broker::new(BrokerConfig::default());
        let first = claim(&broker, "twice", 1);
        // The first connection left the session to a second one before it released it: its
        // release is not the owner's, and changes nothing.
        {
            let mut owner = first.owner();
            *owner = None;
        }
        let second = claim(&broker, "twice", 2);
        assert!(!broker.release_session(&first, 1));
        assert_eq!(broker.offline().len(), 0);
        assert!(second.is_online());
    }
}
