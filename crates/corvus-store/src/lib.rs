//! Corvus durability, first building block: an append-only, checksummed segment log that
//! holds a message queue, and its recovery.
//!
//! # What this crate owns
//!
//! - [`SegmentLog`]: records (opaque payloads) appended to a directory of segment files,
//!   each record numbered by a [`Seq`]; batched appends made durable by one fsync (group
//!   commit); reads of the durable records in order ([`SegmentLog::read_from`]) and of any
//!   one record by sequence number, durable or not ([`SegmentLog::read_seq`]); space
//!   reclaimed a whole segment at a time ([`SegmentLog::truncate_front`]); recovery on
//!   [`SegmentLog::open`], reported in a [`RecoveryReport`].
//! - [`journal`]: sessions' queued and in-flight deliveries as records in a segment log.
//!   Message bodies stay on disk and are read back on request ([`Journal::read_body`]).
//! - [`engine`]: the [`Store`] the broker uses: one thread applying ops in batches and
//!   answering body reads ([`Store::read_bodies`]).
//! - [`keyed`]: the keyed state (sessions, subscriptions, retained messages, inbound QoS 2
//!   packet ids) in a redb database, with batched commits, recovery (`load`) and the offline
//!   `check`/`dump` tools. See `docs/storage-format.md`, "Keyed state (redb)".
//! - [`fs`]: the small file layer it is written against, with the real implementation and
//!   (under `cfg(test)` or the `testing` feature) a fault-injecting in-memory one.
//!
//! - [`progress`]: how far recovery has got, reported to whoever opens the store.
//!
//! The log, the journal and the keyed state read no clocks and spawn no threads: the log's
//! sync policy is applied when the caller passes the time in ([`SegmentLog::poll_sync`]), and
//! progress is reported at fixed points, not on a timer. Only the [`engine`] runs a thread
//! (the store thread, which reads the clock to apply the sync policy and time its syncs).
//!
//! # On-disk format (version 1)
//!
//! A log is a directory of segment files named `NNNNNNNNNNNNNNNNNNNN.seg` (the first sequence
//! number the segment was created for, 20 decimal digits), plus an optional `quarantine/`
//! folder. All integers are little-endian.
//!
//! ```text
//! segment header (32 bytes)
//!   0..8    magic "CORVUSQ1"
//!   8..12   format version (u32) = 1
//!   12..16  flags (u32) = 0
//!   16..24  base sequence number (u64), equal to the one in the file name
//!   24..28  reserved = 0
//!   28..32  CRC-32 (IEEE) of bytes 0..28
//! record (16 bytes + payload), repeated
//!   0..4    payload length (u32)
//!   4..8    CRC-32 of the sequence number's 8 bytes followed by the payload
//!   8..16   sequence number (u64), strictly increasing through the log
//!   16..    payload
//! ```
//!
//! Every future version keeps the magic at 0..8, the version at 8..12 and the header CRC at
//! 28..32, so a header from another version is recognized as such. See
//! `docs/storage-format.md` for the full recovery rules.
//!
//! # Guarantees
//!
//! - A record is durable once [`SegmentLog::sync`] has returned a sequence number at or above
//!   its own. A failed sync is reported with the file and the operation, advances nothing,
//!   and its records only become durable if a later sync writes them again (it does: the
//!   failed batch is cut off the file and kept for the next attempt).
//! - Recovery never panics and never refuses to start over damaged data: a torn or corrupt
//!   tail of the last segment is cut; damage elsewhere is copied to `quarantine/` and
//!   skipped; both are reported with paths and offsets. Records recovered are exactly
//!   records that were appended, in order, with intact checksums.
//! - Data from another program (wrong magic, unexpected files) or another format version is
//!   refused with a clear error, before anything in the directory is changed.
//! - Files are created with mode 0600 and directories with 0700 on unix.

mod encoding;
pub mod engine;
pub mod error;
pub mod fs;
pub mod inspect;
pub mod journal;
pub mod keyed;
mod lock;
mod log;
pub mod progress;
pub mod segment;

/// The data directory's layout: keyed state (redb) in `DIR/state`, the queue journal's
/// segments in `DIR/queue`, and the lock file `DIR/LOCK`.
pub const STATE_DIR: &str = "state";
/// See [`STATE_DIR`].
pub const QUEUE_DIR: &str = "queue";

pub use engine::{
    Op as StoreOp, Recovered, Store, StoreOptions, StoreStats, Ticket, BACKLOG_LIMIT,
};
pub use error::{DbOp, Op, StoreError};
pub use journal::{Journal, ReplayReport, ReplayedState};
pub use lock::{DirLock, LOCK_FILE};
pub use log::{
    LogOptions, Quarantined, ReadIter, RecoveryReport, SegmentLog, SyncPolicy, Truncation,
    QUARANTINE_DIR,
};
pub use segment::{DamageKind, Seq};

#[cfg(test)]
mod log_tests;
