//! The queue journal: sessions' queued and inflight deliveries as records in a
//! [`SegmentLog`], replayed on open, with space reclaimed a segment at a time.
//!
//! Records (see [`Record`] and `docs/storage-format.md`, "Queue journal"): `Message` (a body,
//! once per message), `Enqueue` (one per receiving session), `Sent`, `Released`, `Done`,
//! `Copied` (written by compaction), and for QoS 2 PUBLISHes received from persistent
//! sessions `Received` (the packet id with every queued copy, atomically) and
//! `InboundReleased` (its PUBREL). [`Journal::open`] replays them in sequence order into a
//! [`ReplayedState`]; [`Journal::write`] appends more and [`Journal::sync`] makes them durable
//! (group commit by the log).
//!
//! Space: a delivery is *live* until its `Done`, an inbound QoS 2 id until its
//! `InboundReleased`. Live deliveries pin their defining record (`Enqueue`, `Received`, or
//! the `Copied` that replaced it) and their message body, live ids their `Received`;
//! everything below
//! the oldest pin can go ([`Journal::reclaimable_upto`], [`Journal::reclaim`]).
//! [`Journal::compact_front`] copies the live deliveries of the oldest segment (and their
//! bodies, read back from the log) to the tail, keeping their places in the queue and the
//! inflight window, so one long-offline session cannot pin the log.
//!
//! Memory: the journal keeps no message bodies, so what offline sessions have queued costs
//! disk, not RAM. Of each live body it keeps the sequence number of its `Message` record,
//! its reference count, expiry time and payload length; [`Journal::read_body`] reads the
//! message back from the log (from the unwritten batch, the OS, or the disk, wherever the
//! record is). Queued deliveries come out of [`Journal::open`] and [`Journal::state`] as
//! [`StoredDelivery`](corvus_core::StoredDelivery)s without bodies; in-flight ones, few and
//! due to be re-sent at once, with their bodies read from the log.

mod record;
mod replay;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use corvus_core::{ClientId, Message, Millis};

use crate::error::StoreError;
use crate::fs::FileSystem;
use crate::log::{LogOptions, RecoveryReport, SegmentLog};
use crate::progress::{NoProgress, ProgressSink, RecoveryStep, StepReporter};
use crate::segment::Seq;

pub use record::{
    kind, CopiedSent, EncodeRecordError, MessageId, QueuedCopy, Record, RecordError, RECORD_VERSION,
};
pub(crate) use replay::Snapshot;
use replay::State;
pub use replay::{InflightEntry, QueuedEntry, ReplayReport, ReplayedSession, ReplayedState};

/// A replay of journal records read by other means: the offline tools read the segments
/// themselves, because [`SegmentLog::open`] repairs the directory. The same replay as
/// [`Journal::open`], fed `(sequence number, log payload)` pairs in sequence order, one
/// segment at a time, changing nothing.
#[derive(Debug, Default)]
pub(crate) struct ReadOnlyReplay {
    state: State,
}

impl ReadOnlyReplay {
    /// Decodes and applies one log payload (an undecodable one is counted and skipped).
    pub(crate) fn apply(&mut self, seq: Seq, payload: &[u8]) {
        self.state.apply_payload(seq, payload);
    }

    /// Ends the replay as [`Journal::open`] does: lost deliveries are reported, and queued
    /// deliveries expired at `now` are counted and left out (without journaling their `Done`).
    /// Deliveries come without bodies (in flight ones too): the tools count, not send.
    pub(crate) fn finish(mut self, now: Millis) -> (Snapshot, ReplayReport) {
        let expired = self.state.finish_replay(now);
        let report = std::mem::take(&mut self.state.report);
        for record in &expired {
            if let Record::Done { client, message } = record {
                self.state.remove(client, *message);
            }
        }
        self.state.drop_unreferenced();
        (self.state.snapshot(), report)
    }
}

/// Live records in one segment (see [`Journal::segments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentUsage {
    /// The first and last sequence numbers of records written to it.
    pub first: Seq,
    /// See `first`.
    pub last: Seq,
    /// Records in it that live deliveries need (defining records and message bodies).
    pub live: usize,
}

/// What one [`Journal::compact_front`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Live deliveries copied to the tail.
    pub copied: usize,
    /// Message bodies copied to the tail.
    pub bodies: usize,
    /// Inbound QoS 2 ids copied to the tail.
    pub inbound: usize,
    /// Deliveries finished because their body was found damaged.
    pub lost: usize,
    /// Segment files removed.
    pub removed: usize,
}

/// The queue journal. See the module docs.
#[derive(Debug)]
pub struct Journal {
    log: SegmentLog,
    state: State,
    next_message_id: MessageId,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and replays it. `now` decides which
    /// queued deliveries have expired (they are dropped and counted).
    ///
    /// Damage never stops the open: the log cuts or quarantines damaged bytes (the
    /// [`RecoveryReport`]); undecodable records are skipped and deliveries whose message body
    /// was lost are left out (the [`ReplayReport`]). Queued deliveries expired at `now` are
    /// finished with `Done` records, appended (durable with the next sync).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        options: LogOptions,
        now: Millis,
    ) -> Result<(Journal, ReplayedState, ReplayReport, RecoveryReport), StoreError> {
        Journal::open_reporting(fs, dir, options, now, &NoProgress)
    }

    /// [`open`](Self::open), telling `progress` how far it has checked the segments
    /// ([`RecoveryStep::ScanJournal`]) and replayed their records
    /// ([`RecoveryStep::ReplayJournal`]).
    pub fn open_reporting(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        options: LogOptions,
        now: Millis,
        progress: &dyn ProgressSink,
    ) -> Result<(Journal, ReplayedState, ReplayReport, RecoveryReport), StoreError> {
        let (log, recovery) = SegmentLog::open_reporting(fs, dir, options, progress)?;
        let mut state = State::default();
        let mut reporter =
            StepReporter::start(progress, RecoveryStep::ReplayJournal, recovery.records);
        for (replayed, item) in log.read_from(Seq(0)).enumerate() {
            let (seq, bytes) = item?;
            state.apply_payload(seq, &bytes);
            reporter.at(replayed as u64 + 1);
        }
        reporter.finish();
        let expired = state.finish_replay(now);
        let report = std::mem::take(&mut state.report);
        let next_message_id = state.max_message_id.map_or(1, |m| m.saturating_add(1));
        let mut journal = Journal {
            log,
            state,
            next_message_id,
        };
        // Expired deliveries are finished like any other (synced with the next batch), so
        // nothing of theirs is left to look lost once their body's segment is reclaimed.
        journal.write(&expired)?;
        let replayed = journal.state()?;
        Ok((journal, replayed, report, recovery))
    }

    /// Reads the message body `id` back from the log, wherever its `Message` record is (not
    /// yet written, written but not synced, or durable). `None` if no live delivery refers
    /// to such a body (never written, or dropped once its deliveries were done).
    ///
    /// An error means the journal holds the body but cannot read it (an I/O error, or the
    /// record changed on disk since it was written or recovered).
    pub fn read_body(&self, id: MessageId) -> Result<Option<Arc<Message>>, StoreError> {
        match self.state.bodies.get(&id) {
            Some(body) if body.refs > 0 => self.read_body_at(id, body.seq).map(Some),
            _ => Ok(None),
        }
    }

    /// Reads the `Message` record of body `id` at `seq`.
    fn read_body_at(&self, id: MessageId, seq: Seq) -> Result<Arc<Message>, StoreError> {
        let unreadable = |reason: String| StoreError::BodyUnreadable { id, seq, reason };
        let bytes = self
            .log
            .read_seq(seq)?
            .ok_or_else(|| unreadable("the log no longer holds that record".into()))?;
        match Record::decode(&bytes) {
            Ok(Record::Message { id: found, message }) if found == id => Ok(message),
            Ok(other) => Err(unreadable(format!("the record there is {other}"))),
            Err(e) => Err(unreadable(e.to_string())),
        }
    }

    /// The body of a delivery the state says is live: one the log no longer has is an error.
    fn read_live_body(&self, id: MessageId) -> Result<Arc<Message>, StoreError> {
        self.read_body(id)?
            .ok_or_else(|| StoreError::BodyUnreadable {
                id,
                seq: Seq(0),
                reason: "a live delivery refers to a body the journal does not hold".into(),
            })
    }

    /// Hands out a message id for a new `Message` record (above every id in the journal).
    pub fn next_message_id(&mut self) -> MessageId {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }

    /// Whether the journal holds the body of message `id` (a live delivery refers to it), so
    /// that an `Enqueue` may refer to it without writing it again.
    pub fn has_body(&self, id: MessageId) -> bool {
        self.state.has_body(id)
    }

    /// Appends records to the log's batch (not durable until [`sync`](Self::sync)).
    ///
    /// An `Enqueue` (or `Copied`) must refer to a message whose `Message` record is earlier in
    /// the same call or still referred to by a live delivery; otherwise nothing is appended
    /// and [`StoreError::JournalRefused`] says why. Records that do not fit the state
    /// (a `Done` for an unknown delivery, say) are appended and ignored, as replay would.
    pub fn write(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut batch_bodies = HashSet::new();
        let mut encoded = Vec::with_capacity(records.len());
        for r in records {
            match r {
                Record::Message { id, .. } => {
                    batch_bodies.insert(*id);
                }
                Record::Enqueue { message, .. } | Record::Copied { message, .. }
                    if !batch_bodies.contains(message) && !self.state.has_body(*message) =>
                {
                    return Err(StoreError::JournalRefused {
                        reason: format!("{r}: message {message} has no body in the journal"),
                    });
                }
                Record::Received { copies, .. } => {
                    let without_body = copies.iter().find(|c| {
                        !batch_bodies.contains(&c.message) && !self.state.has_body(c.message)
                    });
                    if let Some(c) = without_body {
                        return Err(StoreError::JournalRefused {
                            reason: format!(
                                "{r}: message {} has no body in the journal",
                                c.message
                            ),
                        });
                    }
                }
                _ => {}
            }
            let bytes = r.encode().map_err(|e| StoreError::JournalRefused {
                reason: format!("{r}: {e}"),
            })?;
            if bytes.len() > self.log.options().max_payload as usize {
                return Err(StoreError::PayloadTooLarge {
                    len: bytes.len(),
                    max: self.log.options().max_payload,
                });
            }
            encoded.push(bytes);
        }
        for (r, bytes) in records.iter().zip(&encoded) {
            let seq = self.log.append(bytes)?;
            if let Record::Message { id, .. } = r {
                self.next_message_id = self.next_message_id.max(id.saturating_add(1));
            }
            self.state.apply(seq, r.clone());
        }
        self.state.drop_unreferenced();
        Ok(())
    }

    /// Finishes every delivery of `client` (writes its `Done`s) and frees its inbound QoS 2
    /// ids, for a session that no longer exists. Returns how many deliveries there were.
    pub fn forget_client(&mut self, client: &ClientId) -> Result<usize, StoreError> {
        let Some(c) = self.state.clients.get(client) else {
            return Ok(0);
        };
        let deliveries = c.entries.len();
        let done: Vec<Record> = c
            .entries
            .keys()
            .map(|&message| Record::Done {
                client: client.clone(),
                message,
            })
            .chain(c.inbound.keys().map(|&packet_id| Record::InboundReleased {
                client: client.clone(),
                packet_id,
            }))
            .collect();
        self.write(&done)?;
        Ok(deliveries)
    }

    /// Makes everything written durable: one fsync for the whole batch (group commit).
    /// Returns the highest durable sequence number.
    pub fn sync(&mut self) -> Result<Seq, StoreError> {
        self.log.sync()
    }

    /// Writes everything written so far to the OS without fsync (it survives a crash of
    /// the process, not of the machine).
    pub fn log_flush(&mut self) -> Result<(), StoreError> {
        self.log.flush()
    }

    /// The underlying log (read-only).
    pub fn log(&self) -> &SegmentLog {
        &self.log
    }

    /// The live state, as a replay of everything written so far would rebuild it (before
    /// expiry): queued deliveries without bodies, in-flight ones with their bodies read from
    /// the log.
    pub fn state(&self) -> Result<ReplayedState, StoreError> {
        self.state
            .snapshot()
            .with_bodies(|id| self.read_live_body(id))
    }

    /// The sequence number below which no record is needed: whole segments below it can be
    /// removed ([`SegmentLog::truncate_front`]). Only valid once everything written is
    /// synced (a `Done` not yet durable already counts); [`reclaim`](Self::reclaim) syncs
    /// first.
    pub fn reclaimable_upto(&self) -> Seq {
        self.state
            .pins
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.log.next_seq())
    }

    /// Live records per segment, oldest segment first (segments with no records yet are left
    /// out).
    pub fn segments(&self) -> Vec<SegmentUsage> {
        self.log
            .segment_ranges()
            .into_iter()
            .flatten()
            .map(|(first, last)| SegmentUsage {
                first,
                last,
                live: self.state.pins.range(first..=last).map(|(_, n)| n).sum(),
            })
            .collect()
    }

    /// Syncs, then removes the oldest segments that hold nothing live. Returns how many
    /// files were removed.
    pub fn reclaim(&mut self) -> Result<usize, StoreError> {
        self.log.sync()?;
        self.log.truncate_front(self.reclaimable_upto())
    }

    /// Copies the live deliveries of the oldest segment (and the message bodies they need,
    /// when those are in it) to the tail, syncs, and removes the segments that no longer hold
    /// anything live. The segment being appended to is never compacted.
    pub fn compact_front(&mut self) -> Result<Compaction, StoreError> {
        self.log.sync()?;
        let ranges = self.log.segment_ranges();
        let mut out = Compaction::default();
        if ranges.len() < 2 {
            return Ok(out);
        }
        if let Some((_, last)) = ranges[0] {
            let mut records = Vec::new();
            let mut copied_bodies = HashSet::new();
            let mut lost_bodies = HashSet::new();
            let mut entries: Vec<_> = self
                .state
                .clients
                .iter()
                .flat_map(|(client, c)| c.entries.iter().map(move |(&id, e)| (client, id, e)))
                .collect();
            entries.sort_by_key(|(client, id, e)| (e.defined_at, (*client).clone(), *id));
            for (client, id, e) in entries {
                let body_seq = self.state.bodies.get(&id).map(|b| b.seq);
                let moves = body_seq.is_some_and(|seq| seq <= last);
                if moves && !copied_bodies.contains(&id) && !lost_bodies.contains(&id) {
                    // Read back from the log (the journal keeps no bodies): at most one
                    // segment's worth of them is in memory at once.
                    match self.read_live_body(id) {
                        Ok(message) => {
                            copied_bodies.insert(id);
                            records.push(Record::Message { id, message });
                        }
                        // A body damaged on disk since it was written can never be sent:
                        // its deliveries are finished (and counted) rather than blocking
                        // compaction for ever. A read that failed for another reason is
                        // tried again later.
                        Err(
                            e @ (StoreError::Corrupt { .. } | StoreError::BodyUnreadable { .. }),
                        ) => {
                            tracing::warn!(error = %e, message = id, "store: a queued message's body is damaged; its deliveries are dropped");
                            lost_bodies.insert(id);
                        }
                        Err(e) => return Err(e),
                    }
                }
                if lost_bodies.contains(&id) {
                    records.push(Record::Done {
                        client: client.clone(),
                        message: id,
                    });
                    out.lost += 1;
                    continue;
                }
                // An entry whose body moves is copied after it too: replay needs a body
                // before the record that defines an entry.
                if e.defined_at <= last || copied_bodies.contains(&id) {
                    records.push(State::copy_record(client, id, e));
                    out.copied += 1;
                }
            }
            out.bodies = copied_bodies.len();
            let mut inbound: Vec<_> = self
                .state
                .clients
                .iter()
                .flat_map(|(client, c)| c.inbound.iter().map(move |(&id, &seq)| (seq, client, id)))
                .filter(|&(seq, _, _)| seq <= last)
                .collect();
            inbound.sort();
            out.inbound = inbound.len();
            records.extend(
                inbound
                    .into_iter()
                    .map(|(_, client, id)| State::copy_inbound_record(client, id)),
            );
            self.write(&records)?;
        }
        out.removed = self.reclaim()?;
        Ok(out)
    }
}
