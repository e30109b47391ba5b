//! The store as the broker uses it: one thread owns the keyed state (redb) and the queue
//! journal (segment log) of a data directory, and applies the broker's writes in batches.
//!
//! Connection tasks [`submit`](Store::submit) [`Op`]s and get a [`Ticket`]: the number of the
//! batch their ops joined. The store thread takes everything waiting, applies it in order,
//! makes it durable as the [`SyncPolicy`] says (one fsync for the whole batch: group commit)
//! and then announces the ticket on [`Store::durable`]. Under `SyncPolicy::Always` the broker
//! holds a PUBACK/PUBREC (and anything it sends after) until its ticket is durable; a failed
//! write is retried and never announced, so nothing it covers is ever acknowledged.
//!
//! Ops submitted by one thread, or under one session's lock, are applied in that order:
//! a session's `Sent` never overtakes its `Enqueue`.
//!
//! Message bodies of queued deliveries live in the journal's log, not in memory: sessions
//! keep [`StoredDelivery`](corvus_core::StoredDelivery) stubs while their client is away and
//! ask for the bodies with [`Store::read_bodies`] when it returns. The store thread answers
//! such a request in order with the ops (everything submitted before it is applied first),
//! so connection tasks never read files themselves: they only await the answer.
//!
//! [`Store::open`] recovers the directory (see [`Recovered`]) before the thread starts; the
//! recovered queues come without bodies, in-flight deliveries with theirs.

mod worker;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use corvus_core::{
    ClientId, Delivery, Histogram, HistogramSnapshot, Message, Millis, SubscriptionEntry,
};
use mqtt_codec::{MqttString, PacketId};
use tokio::sync::{oneshot, watch};

use crate::error::StoreError;
use crate::fs::{FileSystem, OsFileSystem};
use crate::journal::{Journal, ReplayReport, ReplayedState};
use crate::keyed::{KeyedStore, LoadedSession, LoadedState, OpenReport, SessionRecord};
use crate::log::{LogOptions, RecoveryReport, SyncPolicy};
use crate::progress::{NoProgress, ProgressSink};
use crate::{QUEUE_DIR, STATE_DIR};

/// Message bodies (payload bytes) that may wait for the store thread before connections
/// stop reading from their clients (see [`Store::is_backlogged`]).
pub const BACKLOG_LIMIT: usize = 8 * 1024 * 1024;

/// Bucket bounds of [`Store::sync_latency`], in microseconds: from a fast NVMe flush (tens
/// of microseconds) to a disk in trouble (seconds).
pub const SYNC_LATENCY_BOUNDS: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// The payload bytes of the message bodies an op hands to the store, counting each message
/// once however many copies refer to it (`seen`: the store ids counted so far): one message
/// to a thousand sessions is one body in memory, not a thousand.
fn new_body_bytes(op: &Op, seen: &mut HashSet<u64>) -> usize {
    let deliveries: &mut dyn Iterator<Item = &Delivery> = match op {
        Op::Enqueue { delivery, .. } => &mut std::iter::once(delivery),
        Op::Received { copies, .. } => &mut copies.iter().map(|(_, delivery)| delivery),
        _ => &mut std::iter::empty(),
    };
    deliveries
        .filter(|d| d.stored_id.is_some_and(|id| seen.insert(id)))
        .map(|d| d.message.payload.len())
        .sum()
}

/// The number of a batch of ops. Tickets grow by one per batch; a batch is durable once
/// [`Store::durable`] has reached its ticket.
pub type Ticket = u64;

/// One write to the store.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create or update a session's record.
    PutSession {
        client: ClientId,
        record: SessionRecord,
    },
    /// A session ended: its record, subscriptions, inbound QoS 2 ids and every delivery of
    /// its queue go.
    DeleteSession { client: ClientId },
    PutSubscription {
        client: ClientId,
        filter: MqttString,
        entry: SubscriptionEntry,
    },
    DeleteSubscription {
        client: ClientId,
        filter: MqttString,
    },
    /// Make this the retained message of its topic.
    PutRetained(Arc<Message>),
    /// The topic has no retained message any more.
    DeleteRetained(MqttString),
    /// A QoS 2 PUBLISH from `client`'s persistent session, with every copy routing queued
    /// for a persistent session (each with the message's `stored_id`): written as one
    /// journal record, so a crash keeps the packet id and the copies together or neither.
    Received {
        client: ClientId,
        packet_id: PacketId,
        copies: Vec<(ClientId, Delivery)>,
    },
    /// PUBREL for an inbound QoS 2 packet id of `client`.
    InboundReleased {
        client: ClientId,
        packet_id: PacketId,
    },
    /// A delivery joins the end of a session's queue. Its `stored_id` names the message;
    /// the body is written once, with the first delivery that needs it.
    Enqueue {
        client: ClientId,
        delivery: Delivery,
    },
    /// The delivery went in flight under this packet id.
    Sent {
        client: ClientId,
        message: u64,
        packet_id: PacketId,
    },
    /// PUBREC received: PUBREL owed.
    Released {
        client: ClientId,
        message: u64,
        packet_id: PacketId,
    },
    /// The delivery is finished (acknowledged, dropped or expired).
    Done { client: ClientId, message: u64 },
}

/// How the store is laid out and synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// When writes reach the disk.
    pub sync: SyncPolicy,
    /// The largest message body the journal takes (bigger ones are refused and reported).
    pub max_message: u32,
    /// The size of a journal segment file.
    pub segment_size: u64,
    /// The Session Expiry Interval (seconds) of a session rebuilt for a queue whose session
    /// record was lost with a damaged state database (see [`Recovered::adopted`]).
    pub adopted_session_expiry: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: SyncPolicy::Always,
            max_message: 16 * 1024 * 1024,
            segment_size: 64 * 1024 * 1024,
            adopted_session_expiry: 24 * 60 * 60,
        }
    }
}

impl StoreOptions {
    fn log_options(&self) -> LogOptions {
        // A record is the body plus its topic, properties and a little framing.
        let max_payload = self.max_message.saturating_add(512 * 1024);
        LogOptions {
            segment_size: self.segment_size.max(u64::from(max_payload) + 4096),
            max_payload,
            sync_policy: self.sync,
        }
    }
}

/// What [`Store::open`] found and repaired.
#[derive(Debug)]
pub struct Recovered {
    /// Sessions (with subscriptions and inbound QoS 2 ids), retained messages, wills of
    /// sessions that expired while the broker was down, and what was dropped.
    pub state: LoadedState,
    /// Every live session's queue and inflight window.
    pub queues: ReplayedState,
    pub state_open: OpenReport,
    pub journal_replay: ReplayReport,
    pub journal_recovery: RecoveryReport,
    /// Journal deliveries of sessions that no longer exist (ended or expired), finished.
    pub orphan_deliveries: usize,
    /// Sessions rebuilt for queues in the journal whose session records were lost with a
    /// damaged state database (quarantined whole, or their record undecodable): their
    /// queued messages are intact, so they are kept, in a session that expires after
    /// [`StoreOptions::adopted_session_expiry`] and has no subscriptions (those were lost).
    pub adopted: Vec<ClientId>,
}

impl Recovered {
    /// One line per thing an operator should know: damage cut or quarantined, data lost.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(q) = &self.state_open.quarantined {
            out.push(format!(
                "state database {} was damaged ({}); moved to {} and started empty",
                q.from.display(),
                q.reason,
                q.to.display()
            ));
        }
        for bad in &self.state.report.quarantined {
            out.push(format!(
                "state: undecodable {} record {:?} quarantined: {}",
                bad.table, bad.key, bad.reason
            ));
        }
        for t in &self.journal_recovery.truncated {
            out.push(if t.file_removed {
                format!(
                    "queue journal: {} was torn while being created ({}); removed",
                    t.path.display(),
                    t.kind
                )
            } else {
                format!(
                    "queue journal: {} cut at offset {} ({}): {} bytes dropped",
                    t.path.display(),
                    t.offset,
                    t.kind,
                    t.len
                )
            });
        }
        for q in &self.journal_recovery.quarantined {
            out.push(format!(
                "queue journal: {} bytes at offset {} of {} are damaged ({}): skipped, copied to {}",
                q.len,
                q.offset,
                q.path.display(),
                q.kind,
                q.copy.display()
            ));
        }
        if !self.adopted.is_empty() {
            out.push(format!(
                "queue journal: {} kept for sessions whose records were lost with the state \
                 database ({}); restored without subscriptions",
                count(self.adopted.len(), "queue"),
                self.adopted
                    .iter()
                    .map(|c| c.as_ref())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let r = &self.journal_replay;
        if !r.undecodable.is_empty() {
            out.push(format!(
                "queue journal: {} undecodable records skipped",
                r.undecodable.len()
            ));
        }
        if !r.lost.is_empty() {
            out.push(format!(
                "queue journal: {} queued deliveries lost with damaged message bodies",
                r.lost.len()
            ));
        }
        out
    }

    /// A one-line summary of what was recovered.
    pub fn summary(&self) -> String {
        let queued: usize = self.queues.sessions.values().map(|s| s.queue.len()).sum();
        let inflight: usize = self
            .queues
            .sessions
            .values()
            .map(|s| s.inflight.len())
            .sum();
        format!(
            "recovered {}, {}, {queued} queued and {inflight} in-flight messages; \
             expired while stopped: {}, {}",
            count(self.state.sessions.len(), "session"),
            count(self.state.retained.len(), "retained message"),
            count(self.state.report.expired_sessions.len(), "session"),
            count(self.state.report.expired_retained, "retained message"),
        )
    }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Counters about the store's work, for metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Ops applied.
    pub ops: AtomicU64,
    /// Failed attempts to write or sync (each is retried).
    pub errors: AtomicU64,
    /// Ops the store could not take at all (a message larger than the journal allows).
    pub refused: AtomicU64,
    /// Message bodies read back from the journal for [`Store::read_bodies`].
    pub bodies_read: AtomicU64,
    /// Message bodies asked for with [`Store::read_bodies`] that the journal does not hold
    /// or cannot read (answered `None`).
    pub bodies_lost: AtomicU64,
}

/// The answer to [`Store::read_bodies`]: each id asked for, in order, with its body.
type Bodies = Vec<(u64, Option<Arc<Message>>)>;

/// A [`Store::read_bodies`] request waiting for the store thread.
#[derive(Debug)]
struct BodyRead {
    /// How many of [`Pending::ops`] were submitted before it: those are applied first.
    after: usize,
    ids: Vec<u64>,
    reply: oneshot::Sender<Bodies>,
}

#[derive(Debug)]
struct Pending {
    ops: Vec<Op>,
    /// Body reads, in the order they were asked for.
    reads: Vec<BodyRead>,
    /// The ticket of the batch now filling.
    ticket: Ticket,
    /// Payload bytes of the distinct message bodies in `ops` (see [`Store::is_backlogged`]),
    /// and the store ids counted.
    body_bytes: usize,
    body_ids: HashSet<u64>,
    /// Set by [`Store::close`], or by the thread when it stops: later reads are refused (the
    /// sender dropped at once) rather than left waiting for a thread that is gone.
    closing: bool,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    stats: StoreStats,
    /// How long each sync took (see [`Store::sync_latency`]).
    sync_latency: Histogram,
    last_error: Mutex<Option<String>>,
    /// Payload bytes of the message bodies submitted and not yet handed to the journal
    /// (see [`Store::is_backlogged`]).
    backlog: AtomicUsize,
    /// Told when the store thread took a batch off the backlog.
    drained: tokio::sync::Notify,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A data directory open for the broker. See the module docs.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    durable: watch::Receiver<Ticket>,
    next_message_id: AtomicU64,
    sync: SyncPolicy,
    dir: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` (`dir/state` and `dir/queue`), recovers
    /// it at time `now` and starts its thread.
    pub fn open(
        dir: &Path,
        options: StoreOptions,
        now: Millis,
    ) -> Result<(Store, Recovered), StoreError> {
        Store::open_reporting(dir, options, now, &NoProgress)
    }

    /// [`open`](Self::open), telling `progress` how far recovery has got (see
    /// [`RecoveryStep`](crate::progress::RecoveryStep) for the steps).
    pub fn open_reporting(
        dir: &Path,
        options: StoreOptions,
        now: Millis,
        progress: &dyn ProgressSink,
    ) -> Result<(Store, Recovered), StoreError> {
        Store::open_on(Arc::new(OsFileSystem), dir, options, now, progress)
    }

    /// [`open`](Self::open) with the journal on a given file layer (fault injection in tests).
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: StoreOptions,
        now: Millis,
    ) -> Result<(Store, Recovered), StoreError> {
        Store::open_on(fs, dir, options, now, &NoProgress)
    }

    fn open_on(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: StoreOptions,
        now: Millis,
        progress: &dyn ProgressSink,
    ) -> Result<(Store, Recovered), StoreError> {
        let (keyed, state_open) = KeyedStore::open(&dir.join(STATE_DIR))?;
        let mut state = keyed.load_reporting(now, progress)?;
        let (mut journal, mut queues, journal_replay, journal_recovery) = Journal::open_reporting(
            fs,
            dir.join(QUEUE_DIR),
            options.log_options(),
            now,
            progress,
        )?;
        let orphans: Vec<ClientId> = queues
            .sessions
            .keys()
            .filter(|c| {
                state
                    .sessions
                    .binary_search_by(|s| s.client_id.as_ref().cmp(c.as_ref()))
                    .is_err()
            })
            .cloned()
            .collect();
        // A queue whose session record was lost with damaged state is intact: it is kept,
        // in a session rebuilt for it. Any other orphan belongs to a session that ended or
        // expired (its end reached the state database first) and is finished.
        let lost_records: HashSet<&str> = state
            .report
            .quarantined
            .iter()
            .filter(|bad| bad.table == crate::keyed::T_SESSIONS)
            .map(|bad| bad.key.as_str())
            .collect();
        let state_lost = state_open.quarantined.is_some();
        let (adopted, finished): (Vec<ClientId>, Vec<ClientId>) = orphans
            .into_iter()
            .partition(|c| state_lost || lost_records.contains(c.as_ref()));
        let mut orphan_deliveries = 0;
        for client in &finished {
            orphan_deliveries += journal.forget_client(client)?;
            queues.sessions.remove(client);
        }
        for client in &adopted {
            let record = SessionRecord {
                expiry_interval: options.adopted_session_expiry,
                disconnected_at: Some(now),
                pending_will: None,
                armed_will: None,
                last_packet_id: 0,
                principal: None,
            };
            keyed.put_session(client, &record)?;
            let at = state
                .sessions
                .binary_search_by(|s| s.client_id.as_ref().cmp(client.as_ref()))
                .unwrap_or_else(|at| at);
            state.sessions.insert(
                at,
                LoadedSession {
                    client_id: client.clone(),
                    record,
                    subscriptions: Vec::new(),
                },
            );
        }
        journal.sync()?;
        journal.reclaim()?;
        let next_message_id = journal.next_message_id();
        let (durable_tx, durable) = watch::channel(0);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                ops: Vec::new(),
                reads: Vec::new(),
                ticket: 1,
                body_bytes: 0,
                body_ids: HashSet::new(),
                closing: false,
            }),
            wake: Condvar::new(),
            stats: StoreStats::default(),
            sync_latency: Histogram::new(SYNC_LATENCY_BOUNDS),
            last_error: Mutex::new(None),
            backlog: AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
        });
        let worker = worker::Worker::new(keyed, journal, options.sync, shared.clone(), durable_tx);
        let thread = std::thread::Builder::new()
            .name("corvus-store".into())
            .spawn(move || worker.run())
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        let store = Store {
            shared,
            durable,
            next_message_id: AtomicU64::new(next_message_id),
            sync: options.sync,
            dir: dir.to_path_buf(),
            thread: Mutex::new(Some(thread)),
        };
        let recovered = Recovered {
            state,
            queues,
            state_open,
            journal_replay,
            journal_recovery,
            orphan_deliveries,
            adopted,
        };
        Ok((store, recovered))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues ops for the next batch and returns its ticket. Never blocks on I/O.
    pub fn submit(&self, ops: impl IntoIterator<Item = Op>) -> Ticket {
        let mut guard = self.shared.pending();
        let pending = &mut *guard;
        let before = pending.ops.len();
        pending.ops.extend(ops);
        let ticket = pending.ticket;
        let added = pending.ops.len() > before;
        // After close nothing will take these ops: they must not hold the backlog up.
        if !pending.closing {
            let bytes: usize = pending.ops[before..]
                .iter()
                .map(|op| new_body_bytes(op, &mut pending.body_ids))
                .sum();
            pending.body_bytes += bytes;
            self.shared.backlog.fetch_add(bytes, Ordering::Relaxed);
        }
        drop(guard);
        if added {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// True while the message bodies waiting for the store thread exceed [`BACKLOG_LIMIT`]:
    /// connections then stop reading from their clients until it has caught up
    /// ([`backlog_drained`](Self::backlog_drained)). Without this, a policy whose
    /// acknowledgements do not wait for the disk (`interval`, `never`) would let fast
    /// publishers fill memory with messages the disk has not taken yet.
    pub fn is_backlogged(&self) -> bool {
        self.shared.backlog.load(Ordering::Relaxed) > BACKLOG_LIMIT
    }

    /// Payload bytes of message bodies waiting for the store thread.
    pub fn backlog_bytes(&self) -> usize {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    /// Resolves once the backlog is at or below [`BACKLOG_LIMIT`].
    pub async fn backlog_drained(&self) {
        loop {
            let drained = self.shared.drained.notified();
            if !self.is_backlogged() {
                return;
            }
            drained.await;
        }
    }

    /// Asks the store thread for the message bodies `ids` (the `stored_id`s of queued
    /// deliveries). The answer lists every id, in order, with its body, or `None` for one the
    /// journal does not hold or cannot read (logged and counted in
    /// [`StoreStats::bodies_lost`]). Everything submitted before this call is applied first,
    /// so a body submitted just before is found. Never blocks on I/O: await the receiver.
    ///
    /// The receiver reports an error (its sender dropped, never answered) only when the
    /// store is closing or its thread has stopped.
    pub fn read_bodies(
        &self,
        ids: Vec<u64>,
    ) -> oneshot::Receiver<Vec<(u64, Option<Arc<Message>>)>> {
        let (reply, answer) = oneshot::channel();
        let mut pending = self.shared.pending();
        if pending.closing {
            // Nobody would answer: dropping the sender ends the wait at once.
            return answer;
        }
        let after = pending.ops.len();
        pending.reads.push(BodyRead { after, ids, reply });
        drop(pending);
        self.shared.wake.notify_one();
        answer
    }

    /// True if acknowledgements must wait for their ticket to be durable (`always`).
    pub fn acks_wait_for_sync(&self) -> bool {
        self.sync == SyncPolicy::Always
    }

    /// The sync policy.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync
    }

    /// The highest durable ticket now.
    pub fn durable_ticket(&self) -> Ticket {
        *self.durable.borrow()
    }

    /// The highest durable ticket, with change notification.
    pub fn durable(&self) -> watch::Receiver<Ticket> {
        self.durable.clone()
    }

    /// Blocks until `ticket` is durable, for at most `within`; false if it is not by then.
    /// For tools and tests that write outside a runtime (the broker watches [`durable`]).
    ///
    /// [`durable`]: Store::durable
    pub fn wait_durable(&self, ticket: Ticket, within: std::time::Duration) -> bool {
        let mut durable = self.durable();
        let deadline = std::time::Instant::now() + within;
        loop {
            if *durable.borrow_and_update() >= ticket {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// A new id for a message body in the journal.
    pub fn next_message_id(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// How long each sync took: the durable commit of a batch (group commit: the redb commit
    /// and the journal's fsync together), or a periodic sync under `interval` and `never`.
    /// Only syncs that succeeded; the sync at close is not counted.
    pub fn sync_latency(&self) -> HistogramSnapshot {
        self.shared.sync_latency.snapshot()
    }

    /// The last write or sync failure, while the store is failing (cleared by a success).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies everything submitted, answers the body reads asked for, syncs it whatever the
    /// policy, and stops the thread. Later submissions are ignored and later reads refused.
    /// Waits at most `grace` for a failing disk; reads still unanswered then are refused.
    pub fn close(&self, grace: Duration) {
        self.shared.pending().closing = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let deadline = std::time::Instant::now() + grace;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        // A thread stuck on a failing disk may never get to them: nobody waits forever.
        self.shared.pending().reads.clear();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close(Duration::from_secs(5));
    }
}
