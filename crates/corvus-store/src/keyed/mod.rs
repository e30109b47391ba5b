//! The keyed half of the durable store: sessions, subscriptions and retained messages, in one
//! redb database (`<dir>/state.redb`).
//!
//! Inbound QoS 2 packet ids are not kept here: they live in the queue journal
//! ([`crate::journal`], `Received`/`InboundReleased` records), in the same record as the
//! copies their PUBLISH queued, so a crash keeps both or neither. Databases written by earlier
//! builds may still hold an `inbound_qos2` table; it is ignored (never read, written or
//! reported), so such a file opens like any other of format version 1.
//!
//! - [`KeyedStore::open`] opens or creates the database. A file of another program (a redb
//!   database without Corvus metadata, or with foreign metadata) or of a future format
//!   version is refused before anything is changed. A file that cannot be opened because it
//!   is damaged (including bytes that are not a redb database at all) is moved to
//!   `<dir>/quarantine/state.redb.<n>` and an empty store is started: the broker always
//!   starts. Both are reported in [`OpenReport`].
//! - Writes go through a [`Batch`]: operations are collected (and encoded) in memory, then
//!   applied in one write transaction by [`Batch::commit`], with the [`Durability`] the sync
//!   policy asks for. A batch dropped without commit leaves nothing behind. The single-op
//!   methods on [`KeyedStore`] are one-op batches committed with [`Durability::Immediate`].
//! - [`KeyedStore::load`] reads everything back for recovery, deleting what expired while the
//!   broker was down and moving undecodable records to the `quarantine` table.
//! - [`check`] and [`dump`] are the offline tools (`corvus store check|dump`).
//!
//! Record encodings are in [`records`]; the layout is documented in
//! `docs/storage-format.md`, "Keyed state (redb)".

mod check;
pub mod records;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use corvus_core::session::PendingWill;
use corvus_core::{ClientId, Message, Millis, SubscriptionEntry};
use mqtt_codec::MqttString;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, Table, TableDefinition,
    TableError, TableHandle, WriteTransaction,
};

use crate::error::{DbOp, IoContext, Op, StoreError};
use crate::fs::{FileSystem, OsFileSystem};
use crate::progress::{NoProgress, ProgressSink, RecoveryStep, StepReporter};

pub use check::{check, dump, CheckReport, Dump, DumpSession};
pub use records::{DecodeError, SessionRecord};

/// The database file's name in the state directory.
pub const STATE_FILE: &str = "state.redb";
/// The folder damaged database files are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The format version this build reads and writes (stored in the `meta` table).
pub const FORMAT_VERSION: u32 = 1;
/// The value of the `magic` key in the `meta` table.
pub const MAGIC: &[u8] = b"corvus-keyed-state";

pub(crate) const T_SESSIONS: &str = "sessions";
pub(crate) const T_SUBSCRIPTIONS: &str = "subscriptions";
pub(crate) const T_RETAINED: &str = "retained";

pub(crate) const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
pub(crate) const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new(T_SESSIONS);
pub(crate) const SUBSCRIPTIONS: TableDefinition<(&[u8], &[u8]), &[u8]> =
    TableDefinition::new(T_SUBSCRIPTIONS);
pub(crate) const RETAINED: TableDefinition<&[u8], &[u8]> = TableDefinition::new(T_RETAINED);
pub(crate) const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");

const META_MAGIC: &[u8] = b"magic";
const META_VERSION: &[u8] = b"format_version";

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before the commit returns (sync policy `always`).
    Immediate,
    /// No fsync: durable only once a later commit is `Immediate` or [`KeyedStore::sync`] runs
    /// (sync policies `interval` and `never`). After a crash the database is consistent, at
    /// the last durable commit.
    Eventual,
}

impl Durability {
    fn to_redb(self) -> redb::Durability {
        match self {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::Eventual => redb::Durability::None,
        }
    }
}

/// A damaged database file moved aside at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedFile {
    /// Where it was.
    pub from: PathBuf,
    /// Where it is now.
    pub to: PathBuf,
    /// Why it could not be opened.
    pub reason: String,
}

/// What [`KeyedStore::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The database file.
    pub path: PathBuf,
    /// True if a new, empty store was initialized (no file, an empty file, a file moved to
    /// quarantine, or a redb file with no table at all).
    pub created: bool,
    /// The damaged file moved to quarantine, if any.
    pub quarantined: Option<QuarantinedFile>,
}

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The table it is in.
    pub table: &'static str,
    /// Its key, for display (lossy UTF-8; composite keys joined by `" / "`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// One session as loaded, with its subscriptions (its inbound QoS 2 packet ids come from the
/// journal's replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSession {
    pub client_id: ClientId,
    pub record: SessionRecord,
    /// Sorted by filter.
    pub subscriptions: Vec<(MqttString, SubscriptionEntry)>,
}

/// What [`KeyedStore::load`] did besides loading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Sessions that expired while the broker was down (deleted, with their subscriptions).
    pub expired_sessions: Vec<ClientId>,
    /// Retained messages that expired (deleted).
    pub expired_retained: usize,
    /// Undecodable records: moved to the `quarantine` table and deleted from their table.
    pub quarantined: Vec<BadRecord>,
    /// Subscriptions whose session does not exist (left in place, not loaded).
    pub orphan_subscriptions: usize,
}

/// Everything recovered by [`KeyedStore::load`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedState {
    /// Live sessions, sorted by client id.
    pub sessions: Vec<LoadedSession>,
    /// Live retained messages, sorted by topic.
    pub retained: Vec<Message>,
    /// Pending wills of the sessions that expired while the broker was down: a will is due at
    /// the latest when its session ends, so the broker should publish these (unless the
    /// message itself expired). They are deleted from the store with their session.
    pub expired_wills: Vec<ExpiredWill>,
    pub report: LoadReport,
}

/// The pending will of a session that expired while the broker was down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredWill {
    pub client_id: ClientId,
    pub will: PendingWill,
    /// The session record's [`SessionRecord::principal`]: who may (or may not) publish it.
    pub principal: Option<corvus_core::Principal>,
}

/// The keyed state database.
#[derive(Debug)]
pub struct KeyedStore {
    db: Database,
    path: PathBuf,
}

/// Why an attempt to open failed: damage is recovered from, the rest is returned.
enum Attempt {
    Damaged(String),
    Fatal(StoreError),
}

impl KeyedStore {
    /// Opens or creates `dir/state.redb` (the directory 0700 and the file 0600 when created).
    pub fn open(dir: &Path) -> Result<(KeyedStore, OpenReport), StoreError> {
        OsFileSystem.create_dir(dir).ctx(Op::CreateDir, dir)?;
        let path = dir.join(STATE_FILE);
        let mut report = OpenReport {
            path: path.clone(),
            created: false,
            quarantined: None,
        };
        let mut fresh = create_file_if_missing(dir, &path)?;
        match try_open(&path) {
            Ok((db, created)) => {
                report.created = fresh || created;
                Ok((KeyedStore { db, path }, report))
            }
            Err(Attempt::Fatal(e)) => Err(e),
            Err(Attempt::Damaged(reason)) => {
                let to = quarantine_file(dir, &path)?;
                report.quarantined = Some(QuarantinedFile {
                    from: path.clone(),
                    to,
                    reason,
                });
                fresh = create_file_if_missing(dir, &path)?;
                debug_assert!(fresh);
                match try_open(&path) {
                    Ok((db, _)) => {
                        report.created = true;
                        Ok((KeyedStore { db, path }, report))
                    }
                    Err(Attempt::Fatal(e)) => Err(e),
                    Err(Attempt::Damaged(reason)) => Err(StoreError::DamagedState {
                        path,
                        reason: format!("a newly created database failed to open: {reason}"),
                    }),
                }
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts collecting operations to commit in one transaction.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            ops: Vec::new(),
        }
    }

    /// Makes every earlier [`Durability::Eventual`] commit durable (an empty commit with
    /// fsync).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.batch().commit(Durability::Immediate)
    }

    /// Stores a session record (one transaction, fsynced).
    pub fn put_session(&self, client_id: &str, record: &SessionRecord) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.put_session(client_id, record);
        b.commit(Durability::Immediate)
    }

    /// Deletes a session with its subscriptions.
    pub fn delete_session(&self, client_id: &str) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.delete_session(client_id);
        b.commit(Durability::Immediate)
    }

    /// Stores a subscription.
    pub fn put_subscription(
        &self,
        client_id: &str,
        filter: &MqttString,
        entry: &SubscriptionEntry,
    ) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.put_subscription(client_id, filter, entry);
        b.commit(Durability::Immediate)
    }

    /// Deletes a subscription.
    pub fn delete_subscription(&self, client_id: &str, filter: &str) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.delete_subscription(client_id, filter);
        b.commit(Durability::Immediate)
    }

    /// Stores a retained message under its topic.
    pub fn put_retained(&self, message: &Message) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.put_retained(message);
        b.commit(Durability::Immediate)
    }

    /// Deletes the retained message of a topic.
    pub fn delete_retained(&self, topic: &str) -> Result<(), StoreError> {
        let mut b = self.batch();
        b.delete_retained(topic);
        b.commit(Durability::Immediate)
    }

    /// Loads everything for recovery, in one write transaction (fsynced): sessions expired at
    /// `now` are deleted with their subscriptions (their pending wills are
    /// returned in [`LoadedState::expired_wills`]), expired retained messages are deleted,
    /// undecodable records are moved to the `quarantine` table. Never panics on stored bytes.
    pub fn load(&self, now: Millis) -> Result<LoadedState, StoreError> {
        self.load_reporting(now, &NoProgress)
    }

    /// [`load`](Self::load), telling `progress` how many sessions, subscriptions and
    /// retained messages it has read.
    pub fn load_reporting(
        &self,
        now: Millis,
        progress: &dyn ProgressSink,
    ) -> Result<LoadedState, StoreError> {
        let path = &self.path;
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db(DbOp::Write, path, e))?;
        let state =
            load_in(&txn, now, progress).map_err(|e| StoreError::db(DbOp::Write, path, e))?;
        txn.commit()
            .map_err(|e| StoreError::db(DbOp::Commit, path, e))?;
        Ok(state)
    }
}

// ---- opening ----

#[cfg(unix)]
fn create_mode(o: &mut std::fs::OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    o.mode(0o600);
}

#[cfg(not(unix))]
fn create_mode(_: &mut std::fs::OpenOptions) {}

/// Creates an empty file (0600) if there is none; true if it did.
fn create_file_if_missing(dir: &Path, path: &Path) -> Result<bool, StoreError> {
    if OsFileSystem.exists(path).ctx(Op::Open, path)? {
        return Ok(false);
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    create_mode(&mut o);
    let file = o.open(path).ctx(Op::Create, path)?;
    file.sync_all().ctx(Op::Sync, path)?;
    drop(file);
    OsFileSystem.sync_dir(dir).ctx(Op::SyncDir, dir)?;
    Ok(true)
}

/// Moves a damaged file to `dir/quarantine/state.redb.<n>` (the first free `n` from 1).
fn quarantine_file(dir: &Path, path: &Path) -> Result<PathBuf, StoreError> {
    let qdir = dir.join(QUARANTINE_DIR);
    OsFileSystem.create_dir(&qdir).ctx(Op::CreateDir, &qdir)?;
    let mut n: u64 = 1;
    let to = loop {
        let candidate = qdir.join(format!("{STATE_FILE}.{n}"));
        if !OsFileSystem.exists(&candidate).ctx(Op::Open, &candidate)? {
            break candidate;
        }
        n += 1;
    };
    OsFileSystem.rename(path, &to).ctx(Op::Rename, path)?;
    OsFileSystem.sync_dir(&qdir).ctx(Op::SyncDir, &qdir)?;
    OsFileSystem.sync_dir(dir).ctx(Op::SyncDir, dir)?;
    Ok(to)
}

/// Whether a redb error means the file is damaged (as opposed to locked, unreadable, ...).
fn is_damage(e: &redb::Error) -> bool {
    match e {
        redb::Error::Corrupted(_) => true,
        redb::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

fn classify(path: &Path, op: DbOp, e: impl Into<redb::Error>) -> Attempt {
    let e: redb::Error = e.into();
    if is_damage(&e) {
        Attempt::Damaged(e.to_string())
    } else {
        Attempt::Fatal(StoreError::db(op, path, e))
    }
}

/// Opens the file with redb (integrity checked, so damage is an error rather than a panic) and
/// checks or initializes the metadata. Returns whether the store was initialized.
fn try_open(path: &Path) -> Result<(Database, bool), Attempt> {
    let opened = catch_unwind(AssertUnwindSafe(|| -> Result<(Database, bool), Attempt> {
        precheck(path)?;
        let db = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .set_cache_size(64 * 1024 * 1024)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::Storage(StorageError::Corrupted(s)) => Attempt::Damaged(s),
                e => classify(path, DbOp::Open, e),
            })?;
        let created = check_meta(&db, path)?;
        Ok((db, created))
    }));
    match opened {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            Err(Attempt::Damaged(format!(
                "redb failed while opening: {what}"
            )))
        }
    }
}

/// Checks the metadata through a read-only open first, so that a foreign or other-version file
/// is refused before redb's integrity check (which commits) touches it. A file that was not
/// shut down cleanly cannot be opened read-only: it is checked after the repairing open.
fn precheck(path: &Path) -> Result<(), Attempt> {
    let len = std::fs::metadata(path)
        .map_err(|e| Attempt::Fatal(StoreError::io(Op::Open, path, e)))?
        .len();
    if len == 0 {
        return Ok(());
    }
    let checked = catch_unwind(AssertUnwindSafe(|| {
        match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => read_meta(&db, path).map(|_| ()),
            Err(e @ DatabaseError::DatabaseAlreadyOpen) => {
                Err(Attempt::Fatal(StoreError::db(DbOp::Open, path, e)))
            }
            // Not shut down cleanly, damaged or unreadable: the read-write open (which repairs
            // what can be repaired) decides.
            Err(_) => Ok(()),
        }
    }));
    match checked {
        Ok(Err(fatal @ Attempt::Fatal(_))) => Err(fatal),
        // A read-only open trusts the allocator state and may panic on damage (debug builds
        // of redb); the read-write open checks integrity first.
        _ => Ok(()),
    }
}

/// Checks the metadata: foreign or other-version databases are refused.
fn read_meta(db: &impl ReadableDatabase, path: &Path) -> Result<Meta, Attempt> {
    let txn = db.begin_read().map_err(|e| classify(path, DbOp::Read, e))?;
    let names: Vec<String> = txn
        .list_tables()
        .map_err(|e| classify(path, DbOp::Read, e))?
        .map(|t| t.name().to_string())
        .collect();
    if names.is_empty() {
        return Ok(Meta::Uninitialized);
    }
    let foreign = |reason: String| {
        Attempt::Fatal(StoreError::ForeignState {
            path: path.to_path_buf(),
            reason,
        })
    };
    if !names.iter().any(|n| n == META.name()) {
        return Err(foreign(format!(
            "a redb database without a `meta` table (tables: {})",
            names.join(", ")
        )));
    }
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableTypeMismatch { .. }) | Err(TableError::TableIsMultimap(_)) => {
            return Err(foreign("its `meta` table has other types".into()))
        }
        Err(e) => return Err(classify(path, DbOp::Read, e)),
    };
    let get = |key: &[u8]| -> Result<Option<Vec<u8>>, Attempt> {
        meta.get(key)
            .map(|v| v.map(|v| v.value().to_vec()))
            .map_err(|e| classify(path, DbOp::Read, e))
    };
    if get(META_MAGIC)?.as_deref() != Some(MAGIC) {
        return Err(foreign("its `meta` table has no Corvus magic".into()));
    }
    let version = match get(META_VERSION)? {
        Some(v) if v.len() == 4 => u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
        _ => {
            return Err(foreign(
                "its `meta` table has no valid format version".into(),
            ))
        }
    };
    if version != FORMAT_VERSION {
        return Err(Attempt::Fatal(StoreError::UnsupportedStateVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        }));
    }
    let all = [
        SESSIONS.name(),
        SUBSCRIPTIONS.name(),
        RETAINED.name(),
        QUARANTINE.name(),
    ];
    // Tables are created in the same transaction as the metadata; a missing one is recreated
    // empty by `check_meta`. Tables not listed here (the `inbound_qos2` table of earlier
    // builds) are left alone: they are neither required nor a sign of a foreign file.
    Ok(Meta::Ours {
        complete: all.iter().all(|t| names.iter().any(|n| n == t)),
    })
}

/// What [`read_meta`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    /// No table at all: a database to initialize.
    Uninitialized,
    /// Corvus metadata of this format version; `complete` if every table exists.
    Ours { complete: bool },
}

/// Checks the metadata, initializing a database with no table. True if it initialized.
fn check_meta(db: &Database, path: &Path) -> Result<bool, Attempt> {
    let found = read_meta(db, path)?;
    if found == (Meta::Ours { complete: true }) {
        return Ok(false);
    }
    let txn = db
        .begin_write()
        .map_err(|e| classify(path, DbOp::Write, e))?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| classify(path, DbOp::Write, e))?;
        meta.insert(META_MAGIC, MAGIC)
            .map_err(|e| classify(path, DbOp::Write, e))?;
        meta.insert(META_VERSION, &FORMAT_VERSION.to_le_bytes()[..])
            .map_err(|e| classify(path, DbOp::Write, e))?;
        open_tables(&txn).map_err(|e| classify(path, DbOp::Write, e))?;
        txn.open_table(QUARANTINE)
            .map_err(|e| classify(path, DbOp::Write, e))?;
    }
    txn.commit().map_err(|e| classify(path, DbOp::Commit, e))?;
    Ok(found == Meta::Uninitialized)
}

// ---- writing ----

type Tables<'t> = (
    Table<'t, &'static [u8], &'static [u8]>,
    Table<'t, (&'static [u8], &'static [u8]), &'static [u8]>,
    Table<'t, &'static [u8], &'static [u8]>,
);

fn open_tables(txn: &WriteTransaction) -> Result<Tables<'_>, redb::Error> {
    Ok((
        txn.open_table(SESSIONS)?,
        txn.open_table(SUBSCRIPTIONS)?,
        txn.open_table(RETAINED)?,
    ))
}

#[derive(Debug, Clone)]
enum BatchOp {
    PutSession(Vec<u8>, Vec<u8>),
    DeleteSession(Vec<u8>),
    PutSubscription(Vec<u8>, Vec<u8>, Vec<u8>),
    DeleteSubscription(Vec<u8>, Vec<u8>),
    PutRetained(Vec<u8>, Vec<u8>),
    DeleteRetained(Vec<u8>),
}

/// Operations collected for one write transaction (group commit). Records are encoded when
/// added; nothing touches the database until [`Batch::commit`]. Dropping a batch discards it.
#[derive(Debug)]
#[must_use = "a batch does nothing until committed"]
pub struct Batch<'s> {
    store: &'s KeyedStore,
    ops: Vec<BatchOp>,
}

impl Batch<'_> {
    /// Stores (replaces) a session record.
    pub fn put_session(&mut self, client_id: &str, record: &SessionRecord) -> &mut Self {
        self.ops.push(BatchOp::PutSession(
            client_id.as_bytes().to_vec(),
            records::encode_session(record),
        ));
        self
    }

    /// Deletes a session with its subscriptions.
    pub fn delete_session(&mut self, client_id: &str) -> &mut Self {
        self.ops
            .push(BatchOp::DeleteSession(client_id.as_bytes().to_vec()));
        self
    }

    /// Stores (replaces) a subscription. It is loaded only if its session exists.
    pub fn put_subscription(
        &mut self,
        client_id: &str,
        filter: &MqttString,
        entry: &SubscriptionEntry,
    ) -> &mut Self {
        self.ops.push(BatchOp::PutSubscription(
            client_id.as_bytes().to_vec(),
            filter.as_bytes().to_vec(),
            records::encode_subscription(entry),
        ));
        self
    }

    /// Deletes a subscription.
    pub fn delete_subscription(&mut self, client_id: &str, filter: &str) -> &mut Self {
        self.ops.push(BatchOp::DeleteSubscription(
            client_id.as_bytes().to_vec(),
            filter.as_bytes().to_vec(),
        ));
        self
    }

    /// Stores (replaces) the retained message of `message.topic`.
    pub fn put_retained(&mut self, message: &Message) -> &mut Self {
        self.ops.push(BatchOp::PutRetained(
            message.topic.as_bytes().to_vec(),
            records::encode_retained(message),
        ));
        self
    }

    /// Deletes the retained message of a topic.
    pub fn delete_retained(&mut self, topic: &str) -> &mut Self {
        self.ops
            .push(BatchOp::DeleteRetained(topic.as_bytes().to_vec()));
        self
    }

    /// Operations collected.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies every operation, in order, in one write transaction: all or nothing.
    pub fn commit(self, durability: Durability) -> Result<(), StoreError> {
        let path = &self.store.path;
        let w = |e: redb::Error| StoreError::db(DbOp::Write, path, e);
        let mut txn = self
            .store
            .db
            .begin_write()
            .map_err(|e| StoreError::db(DbOp::Write, path, e))?;
        txn.set_durability(durability.to_redb())
            .map_err(|e| w(e.into()))?;
        {
            let (mut sessions, mut subs, mut retained) = open_tables(&txn).map_err(w)?;
            for op in &self.ops {
                match op {
                    BatchOp::PutSession(k, v) => {
                        sessions.insert(&k[..], &v[..]).map_err(|e| w(e.into()))?;
                    }
                    BatchOp::DeleteSession(k) => {
                        delete_session_in(&mut sessions, &mut subs, k).map_err(w)?;
                    }
                    BatchOp::PutSubscription(c, f, v) => {
                        subs.insert((&c[..], &f[..]), &v[..])
                            .map_err(|e| w(e.into()))?;
                    }
                    BatchOp::DeleteSubscription(c, f) => {
                        subs.remove((&c[..], &f[..])).map_err(|e| w(e.into()))?;
                    }
                    BatchOp::PutRetained(k, v) => {
                        retained.insert(&k[..], &v[..]).map_err(|e| w(e.into()))?;
                    }
                    BatchOp::DeleteRetained(k) => {
                        retained.remove(&k[..]).map_err(|e| w(e.into()))?;
                    }
                }
            }
        }
        txn.commit()
            .map_err(|e| StoreError::db(DbOp::Commit, path, e))
    }
}

/// Keys of a client's subscriptions (filters).
fn subscription_filters(
    subs: &Table<'_, (&'static [u8], &'static [u8]), &'static [u8]>,
    client: &[u8],
) -> Result<Vec<Vec<u8>>, redb::Error> {
    let mut out = Vec::new();
    let empty: &[u8] = &[];
    for item in subs.range((client, empty)..)? {
        let (k, _) = item?;
        let (c, f) = k.value();
        if c != client {
            break;
        }
        out.push(f.to_vec());
    }
    Ok(out)
}

/// Deletes a session and its subscriptions. (Its inbound QoS 2 ids are in the journal, which
/// the engine tells to forget the client.)
fn delete_session_in(
    sessions: &mut Table<'_, &'static [u8], &'static [u8]>,
    subs: &mut Table<'_, (&'static [u8], &'static [u8]), &'static [u8]>,
    client: &[u8],
) -> Result<(), redb::Error> {
    sessions.remove(client)?;
    for f in subscription_filters(subs, client)? {
        subs.remove((client, &f[..]))?;
    }
    Ok(())
}

// ---- loading ----

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A composite key as raw bytes for the quarantine table: each part with a `u32` length.
fn composite_key(parts: &[&[u8]]) -> Vec<u8> {
    let mut w = records::Writer::default();
    for p in parts {
        w.bytes32(p);
    }
    w.finish()
}

/// Encodes a quarantine entry: version, table, key, value, reason.
fn quarantine_entry(table: &str, key: &[u8], value: &[u8], reason: &str) -> Vec<u8> {
    let mut w = records::Writer::record();
    w.bytes32(table.as_bytes());
    w.bytes32(key);
    w.bytes32(value);
    w.bytes32(reason.as_bytes());
    w.finish()
}

/// Decodes a quarantine entry into (table, key, value length, reason) for the tools.
fn decode_quarantine_entry(data: &[u8]) -> Result<(String, Vec<u8>, usize, String), DecodeError> {
    let mut r = records::Reader::record(data)?;
    let table = lossy(r.bytes32("table")?);
    let key = r.bytes32("key")?.to_vec();
    let value = r.bytes32("value")?.len();
    let reason = lossy(r.bytes32("reason")?);
    r.finish()?;
    Ok((table, key, value, reason))
}

struct Quarantiner<'t> {
    table: Table<'t, u64, &'static [u8]>,
    next: u64,
    bad: Vec<BadRecord>,
}

impl Quarantiner<'_> {
    fn put(
        &mut self,
        table: &'static str,
        raw_key: &[u8],
        display_key: String,
        value: &[u8],
        reason: String,
    ) -> Result<(), redb::Error> {
        let entry = quarantine_entry(table, raw_key, value, &reason);
        self.table.insert(self.next, &entry[..])?;
        self.next += 1;
        self.bad.push(BadRecord {
            table,
            key: display_key,
            reason,
        });
        Ok(())
    }
}

type Raw2 = (Vec<u8>, Vec<u8>);

fn collect_kv(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<Raw2>, redb::Error> {
    t.iter()?
        .map(|item| item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

fn load_in(
    txn: &WriteTransaction,
    now: Millis,
    progress: &dyn ProgressSink,
) -> Result<LoadedState, redb::Error> {
    let (mut sessions_t, mut subs_t, mut retained_t) = open_tables(txn)?;
    let qtable = txn.open_table(QUARANTINE)?;
    let next = qtable.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    let mut q = Quarantiner {
        table: qtable,
        next,
        bad: Vec::new(),
    };
    let mut state = LoadedState::default();

    // Sessions.
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let sessions = collect_kv(&sessions_t)?;
    let mut reporter = StepReporter::start(progress, RecoveryStep::LoadSessions, len(&sessions));
    for (n, (k, v)) in sessions.into_iter().enumerate() {
        reporter.at(n as u64);
        let decoded = match records::decode_client_id(&k) {
            None => Err("client id is not UTF-8".to_string()),
            Some(cid) => records::decode_session(&v)
                .map(|r| (cid, r))
                .map_err(|e| e.to_string()),
        };
        match decoded {
            Err(reason) => {
                q.put(T_SESSIONS, &k, lossy(&k), &v, reason)?;
                sessions_t.remove(&k[..])?;
            }
            Ok((cid, record)) if record.is_expired(now) => {
                delete_session_in(&mut sessions_t, &mut subs_t, &k)?;
                if let Some(will) = record.pending_will {
                    state.expired_wills.push(ExpiredWill {
                        client_id: cid.clone(),
                        will,
                        principal: record.principal,
                    });
                }
                state.report.expired_sessions.push(cid);
            }
            Ok((client_id, record)) => {
                index.insert(k, state.sessions.len());
                state.sessions.push(LoadedSession {
                    client_id,
                    record,
                    subscriptions: Vec::new(),
                });
            }
        }
    }

    // Subscriptions.
    let subs: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = subs_t
        .iter()?
        .map(|item| {
            item.map(|(k, v)| {
                let (c, f) = k.value();
                (c.to_vec(), f.to_vec(), v.value().to_vec())
            })
        })
        .collect::<Result<_, _>>()?;
    reporter.finish();
    let mut reporter = StepReporter::start(progress, RecoveryStep::LoadSubscriptions, len(&subs));
    for (n, (c, f, v)) in subs.into_iter().enumerate() {
        reporter.at(n as u64);
        let decoded = match records::decode_mqtt_key(&f) {
            None => Err("filter is not an MQTT string".to_string()),
            Some(filter) => records::decode_subscription(&v)
                .map(|e| (filter, e))
                .map_err(|e| e.to_string()),
        };
        match decoded {
            Err(reason) => {
                let display = format!("{} / {}", lossy(&c), lossy(&f));
                q.put(
                    T_SUBSCRIPTIONS,
                    &composite_key(&[&c, &f]),
                    display,
                    &v,
                    reason,
                )?;
                subs_t.remove((&c[..], &f[..]))?;
            }
            Ok((filter, entry)) => match index.get(&c) {
                Some(&i) => state.sessions[i].subscriptions.push((filter, entry)),
                None => state.report.orphan_subscriptions += 1,
            },
        }
    }

    reporter.finish();

    // Retained messages.
    let retained = collect_kv(&retained_t)?;
    let mut reporter = StepReporter::start(progress, RecoveryStep::LoadRetained, len(&retained));
    for (n, (k, v)) in retained.into_iter().enumerate() {
        reporter.at(n as u64);
        let decoded = records::decode_retained(&v)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.topic.as_bytes()[..] == k[..] {
                    Ok(m)
                } else {
                    Err("the message's topic differs from its key".to_string())
                }
            });
        match decoded {
            Err(reason) => {
                q.put(T_RETAINED, &k, lossy(&k), &v, reason)?;
                retained_t.remove(&k[..])?;
            }
            Ok(m) if m.is_expired(now) => {
                retained_t.remove(&k[..])?;
                state.report.expired_retained += 1;
            }
            Ok(m) => state.retained.push(m),
        }
    }

    reporter.finish();

    state.report.quarantined = q.bad;
    Ok(state)
}

/// How many items a step has, for its [`StepReporter`].
fn len<T>(items: &[T]) -> u64 {
    items.len() as u64
}
