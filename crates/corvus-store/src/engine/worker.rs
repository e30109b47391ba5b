//! The store thread: takes the waiting ops as one batch, applies them in order (journal
//! records to the segment log, keyed ops to one redb transaction), makes the batch durable as
//! the sync policy says, and announces its ticket. A batch that fails to reach the disk is
//! retried, with a pause, until it does: its ticket is never announced before, so nothing it
//! covers is acknowledged. Between batches it reclaims journal space.
//!
//! It also answers [`Store::read_bodies`](super::Store::read_bodies): each request is
//! answered once the ops submitted before it are applied to the journal (appended to the
//! log's batch, which the log reads back from too), before the batch is made durable. A body
//! that cannot be read is answered `None` and counted; it never stops the thread.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{Bodies, BodyRead, Op, Shared, Ticket};
use crate::error::StoreError;
use corvus_core::{ClientId, Delivery, Message};

use crate::journal::{Journal, MessageId, QueuedCopy, Record};
use crate::keyed::{Durability, KeyedStore};
use crate::log::SyncPolicy;

/// How often the thread wakes when idle: periodic syncs and space reclamation.
const TICK: Duration = Duration::from_millis(200);
/// Under `never`, the keyed state still needs a durable redb commit now and then: redb keeps
/// non-durable commits only until the process ends.
const NEVER_KEYED_SYNC: Duration = Duration::from_secs(1);
/// How often journal space is reclaimed.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
/// Pauses between attempts to write a failing batch.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

pub(super) struct Worker {
    keyed: KeyedStore,
    journal: Journal,
    sync: SyncPolicy,
    shared: Arc<Shared>,
    durable: watch::Sender<Ticket>,
    /// Keyed changes committed without fsync since the last durable commit.
    keyed_dirty: bool,
    last_sync: Instant,
    last_reclaim: Instant,
    max_record: usize,
}

impl Worker {
    pub(super) fn new(
        keyed: KeyedStore,
        journal: Journal,
        sync: SyncPolicy,
        shared: Arc<Shared>,
        durable: watch::Sender<Ticket>,
    ) -> Worker {
        let max_record = journal.log().options().max_payload as usize;
        Worker {
            keyed,
            journal,
            sync,
            shared,
            durable,
            keyed_dirty: false,
            last_sync: Instant::now(),
            last_reclaim: Instant::now(),
            max_record,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let work = self.take();
            if !work.ops.is_empty() {
                self.commit(work);
            } else {
                // Reads asked for while nothing else is pending are answered right away.
                self.answer_all(work.reads);
                if work.closing {
                    self.final_sync();
                    return;
                }
                self.idle();
            }
            // Also under constant load, which never leaves the thread idle.
            self.maybe_reclaim();
        }
    }

    /// Waits (at most a tick) for work and takes everything waiting.
    fn take(&self) -> Work {
        let mut pending = self.shared.pending();
        if pending.ops.is_empty() && pending.reads.is_empty() && !pending.closing {
            pending = self
                .shared
                .wake
                .wait_timeout(pending, TICK)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let ticket = pending.ticket;
        let ops = std::mem::take(&mut pending.ops);
        if !ops.is_empty() {
            pending.ticket += 1;
        }
        pending.body_ids.clear();
        Work {
            ticket,
            ops,
            body_bytes: std::mem::take(&mut pending.body_bytes),
            reads: std::mem::take(&mut pending.reads),
            closing: pending.closing,
        }
    }

    /// Applies one batch (answering its body reads in order with its ops) and makes it
    /// durable, retrying until it is (or, when closing, giving up after a few attempts: the
    /// process is about to end anyway).
    fn commit(&mut self, work: Work) {
        let Work {
            ticket,
            ops,
            body_bytes,
            reads,
            closing,
        } = work;
        let stats = &self.shared.stats;
        stats.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
        let mut keyed_ops = self.apply_in_order(ops, reads);
        // The bodies are in the journal's batch now, whose memory the log bounds.
        self.shared.backlog.fetch_sub(body_bytes, Ordering::Relaxed);
        self.shared.drained.notify_waiters();
        let mut pause = RETRY_FIRST;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.make_durable(&mut keyed_ops) {
                Ok(()) => break,
                Err(e) => {
                    self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    error!(error = %e, "store: a write failed; the messages it holds are not acknowledged until it succeeds (retrying)");
                    *self.last_error() = Some(e.to_string());
                    if closing && attempts >= 3 {
                        return;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
        if self.last_error().take().is_some() {
            info!("store: writes succeed again");
        }
        self.shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.durable.send_replace(ticket);
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the batch's journal ops (see [`apply_journal`](Self::apply_journal)) and
    /// answers each body read once the ops submitted before it are applied: a body enqueued
    /// just before the read is found, and one whose last delivery was finished just before
    /// is not. Returns the keyed ops, in order.
    fn apply_in_order(&mut self, ops: Vec<Op>, reads: Vec<BodyRead>) -> Vec<Op> {
        let mut keyed = Vec::new();
        let mut ops = ops.into_iter();
        let mut applied = 0;
        // Reads are in the order they were asked for, so `after` never decreases.
        for read in reads {
            let before_it = read.after.saturating_sub(applied);
            keyed.extend(self.apply_journal(ops.by_ref().take(before_it)));
            applied = applied.max(read.after);
            self.answer(read);
        }
        keyed.extend(self.apply_journal(ops));
        keyed
    }

    fn answer_all(&self, reads: Vec<BodyRead>) {
        for read in reads {
            self.answer(read);
        }
    }

    /// Answers one body read from the journal. Bodies it cannot give are `None`, counted,
    /// and logged once for the request.
    fn answer(&self, read: BodyRead) {
        let stats = &self.shared.stats;
        let asked = read.ids.len();
        let mut lost = 0u64;
        let mut first_loss = None;
        let bodies: Bodies = read
            .ids
            .into_iter()
            .map(|id| match self.read_body(id) {
                Ok(message) => (id, Some(message)),
                Err(reason) => {
                    lost += 1;
                    first_loss.get_or_insert((id, reason));
                    (id, None)
                }
            })
            .collect();
        stats
            .bodies_read
            .fetch_add(asked as u64 - lost, Ordering::Relaxed);
        if let Some((id, reason)) = first_loss {
            stats.bodies_lost.fetch_add(lost, Ordering::Relaxed);
            warn!(
                lost,
                asked,
                first = id,
                %reason,
                "store: message bodies asked for cannot be read from the journal; their deliveries cannot be sent"
            );
        }
        // The asker may be gone (its session ended meanwhile): nothing to do then.
        let _ = read.reply.send(bodies);
    }

    /// One body, or why there is none.
    fn read_body(&self, id: MessageId) -> Result<Arc<Message>, String> {
        match self.journal.read_body(id) {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(format!("the journal holds no body {id}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Appends the journal's part of the batch to the log (in memory until synced or
    /// flushed) and returns the keyed part, in order.
    fn apply_journal(&mut self, ops: impl IntoIterator<Item = Op>) -> Vec<Op> {
        let mut keyed = Vec::new();
        let mut records = Vec::new();
        let mut bodies = HashSet::new();
        for op in ops {
            match op {
                Op::Enqueue { client, delivery } => {
                    if let Some(id) = self.body(&client, &delivery, &mut bodies, &mut records) {
                        records.push(Record::Enqueue {
                            client,
                            message: id,
                            qos: delivery.qos,
                            retain: delivery.retain,
                            subscription_ids: delivery.subscription_ids,
                        });
                    }
                }
                Op::Received {
                    client,
                    packet_id,
                    copies,
                } => {
                    // A copy that cannot be stored leaves the others stored, and the packet
                    // id with them.
                    let mut queued = Vec::with_capacity(copies.len());
                    for (to, delivery) in copies {
                        if let Some(id) = self.body(&to, &delivery, &mut bodies, &mut records) {
                            queued.push(QueuedCopy {
                                client: to,
                                message: id,
                                qos: delivery.qos,
                                retain: delivery.retain,
                                subscription_ids: delivery.subscription_ids,
                            });
                        }
                    }
                    records.push(Record::Received {
                        client,
                        packet_id,
                        copies: queued,
                    });
                }
                Op::InboundReleased { client, packet_id } => {
                    records.push(Record::InboundReleased { client, packet_id })
                }
                Op::Sent {
                    client,
                    message,
                    packet_id,
                } => records.push(Record::Sent {
                    client,
                    message,
                    packet_id,
                }),
                Op::Released {
                    client,
                    message,
                    packet_id,
                } => records.push(Record::Released {
                    client,
                    message,
                    packet_id,
                }),
                Op::Done { client, message } => records.push(Record::Done { client, message }),
                Op::DeleteSession { client } => {
                    self.write_records(&mut records);
                    bodies.clear();
                    if let Err(e) = self.journal.forget_client(&client) {
                        self.refuse(&format!("forgetting the queue of {client}: {e}"));
                    }
                    keyed.push(Op::DeleteSession { client });
                }
                other => keyed.push(other),
            }
        }
        self.write_records(&mut records);
        keyed
    }

    /// The journal id of a delivery's message, with its `Message` record added to `records`
    /// unless the journal (or this batch, in `bodies`) has it; `None` for a delivery that is
    /// not stored or a message too large for the journal (refused and reported).
    fn body(
        &self,
        client: &ClientId,
        delivery: &Delivery,
        bodies: &mut HashSet<MessageId>,
        records: &mut Vec<Record>,
    ) -> Option<MessageId> {
        let id = delivery.stored_id?;
        let message = &delivery.message;
        if message.payload.len() + message.topic.len() > self.max_record {
            self.refuse(&format!(
                "message of {} bytes for {client} is larger than the journal takes",
                message.payload.len()
            ));
            return None;
        }
        if !self.journal.has_body(id) && bodies.insert(id) {
            records.push(Record::Message {
                id,
                message: message.clone(),
            });
        }
        Some(id)
    }

    fn write_records(&mut self, records: &mut Vec<Record>) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.journal.write(records) {
            // Refused records (the journal checks every one before appending any) are a bug
            // in the caller; the rest of the batch must not be lost with them.
            warn!(error = %e, "store: a journal batch was refused; writing its records one by one");
            for r in records.iter() {
                let one = match r {
                    // A body goes with the delivery that follows it.
                    Record::Message { .. } => continue,
                    Record::Enqueue { .. } | Record::Received { .. } => {
                        let mut one: Vec<Record> = records
                            .iter()
                            .filter(|m| {
                                matches!(m, Record::Message { .. }) && r.needs_body(m.message_id())
                            })
                            .cloned()
                            .collect();
                        one.push(r.clone());
                        one
                    }
                    _ => vec![r.clone()],
                };
                if let Err(e) = self.journal.write(&one) {
                    self.refuse(&format!("{r}: {e}"));
                }
            }
        }
        records.clear();
    }

    fn refuse(&self, what: &str) {
        self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        error!("store: not persisted: {what}");
    }

    /// Makes the keyed ops and the journal's batch durable as the policy says. The keyed
    /// ops are taken once they are committed, so a retry after a journal failure does not
    /// repeat them.
    ///
    /// The keyed state goes first: a QoS 2 PUBLISH's packet id is in the journal (with its
    /// queued copies) and its retained message in the keyed state, and a crash between the
    /// two must lose the id rather than the retained message the id says was handled (the
    /// publisher's re-send then routes and retains it again).
    fn make_durable(&mut self, keyed_ops: &mut Vec<Op>) -> Result<(), StoreError> {
        let started = Instant::now();
        let durable_now = match self.sync {
            SyncPolicy::Always => true,
            SyncPolicy::Interval(every) => started.duration_since(self.last_sync) >= every,
            SyncPolicy::Never => false,
        };
        if !keyed_ops.is_empty() {
            let mut batch = self.keyed.batch();
            for op in keyed_ops.iter() {
                add_keyed(&mut batch, op);
            }
            let durability = if durable_now {
                Durability::Immediate
            } else {
                Durability::Eventual
            };
            batch.commit(durability)?;
            keyed_ops.clear();
            self.keyed_dirty = !durable_now;
        } else if durable_now && self.keyed_dirty {
            self.keyed.sync()?;
            self.keyed_dirty = false;
        }
        if durable_now {
            self.journal.sync()?;
        } else {
            self.journal.log_flush()?;
        }
        if durable_now {
            self.last_sync = Instant::now();
            self.count_sync(started);
        }
        Ok(())
    }

    /// Times a sync (an fsync of the journal and/or a durable redb commit) that succeeded.
    fn count_sync(&self, started: Instant) {
        self.shared.sync_latency.observe(started.elapsed());
    }

    /// Between batches: the periodic syncs of `interval` and `never`, and space reclamation.
    fn idle(&mut self) {
        let now = Instant::now();
        let due = match self.sync {
            SyncPolicy::Always => false,
            SyncPolicy::Interval(every) => now.duration_since(self.last_sync) >= every,
            SyncPolicy::Never => {
                self.keyed_dirty && now.duration_since(self.last_sync) >= NEVER_KEYED_SYNC
            }
        };
        if due {
            let result = match self.sync {
                SyncPolicy::Never => self.keyed.sync(),
                _ => self.journal.sync().map(|_| ()).and_then(|()| {
                    if self.keyed_dirty {
                        self.keyed.sync()
                    } else {
                        Ok(())
                    }
                }),
            };
            match result {
                Ok(()) => {
                    self.keyed_dirty = false;
                    self.last_sync = now;
                    self.count_sync(now);
                }
                Err(e) => {
                    self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    error!(error = %e, "store: periodic sync failed (retrying)");
                }
            }
        }
    }

    fn maybe_reclaim(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_reclaim) >= RECLAIM_EVERY {
            self.last_reclaim = now;
            if let Err(e) = self.reclaim() {
                warn!(error = %e, "store: reclaiming journal space failed (retrying later)");
            }
        }
    }

    /// Removes journal segments nothing live needs; when the oldest segment is mostly dead
    /// but pinned by a few long-queued deliveries, copies those forward first.
    fn reclaim(&mut self) -> Result<(), StoreError> {
        let segments = self.journal.segments();
        if segments.len() < 2 {
            return Ok(());
        }
        let oldest = segments[0];
        let records = oldest.last.0 - oldest.first.0 + 1;
        if oldest.live > 0 && (oldest.live as u64) * 4 < records {
            self.journal.compact_front()?;
        } else if oldest.live == 0 {
            self.journal.reclaim()?;
        }
        Ok(())
    }

    fn final_sync(&mut self) {
        let result = self.journal.sync().map(|_| ()).and_then(|()| {
            if self.keyed_dirty {
                self.keyed.sync()
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            error!(error = %e, "store: the final sync at shutdown failed");
        }
    }
}

impl Drop for Worker {
    /// However the thread ends (returning at close, or panicking), nobody is left waiting
    /// for it: reads not yet taken are refused, and so are later ones.
    fn drop(&mut self) {
        let mut pending = self.shared.pending();
        pending.closing = true;
        pending.reads.clear();
        // Nothing will take the ops left: connections must not wait for them.
        pending.body_bytes = 0;
        self.shared.backlog.store(0, Ordering::Relaxed);
        self.shared.drained.notify_waiters();
    }
}

/// Everything waiting for the thread, taken at once.
struct Work {
    ticket: Ticket,
    ops: Vec<Op>,
    /// What `ops` added to the backlog.
    body_bytes: usize,
    reads: Vec<BodyRead>,
    closing: bool,
}

fn add_keyed(batch: &mut crate::keyed::Batch<'_>, op: &Op) {
    match op {
        Op::PutSession { client, record } => {
            batch.put_session(client, record);
        }
        Op::DeleteSession { client } => {
            batch.delete_session(client);
        }
        Op::PutSubscription {
            client,
            filter,
            entry,
        } => {
            batch.put_subscription(client, filter, entry);
        }
        Op::DeleteSubscription { client, filter } => {
            batch.delete_subscription(client, filter);
        }
        Op::PutRetained(message) => {
            batch.put_retained(message);
        }
        Op::DeleteRetained(topic) => {
            batch.delete_retained(topic);
        }
        // Journal ops never reach here (see `apply_journal`).
        Op::Enqueue { .. }
        | Op::Sent { .. }
        | Op::Released { .. }
        | Op::Done { .. }
        | Op::Received { .. }
        | Op::InboundReleased { .. } => {}
    }
}
