//! Offline verification and listing of the keyed state (`corvus store check|dump`). Both open
//! the database read-only and change nothing; the broker must not be running (redb's lock
//! refuses a second opener).
//!
//! Inbound QoS 2 packet ids are in the queue journal, not here: `corvus store check|dump`
//! report them from the journal's replay (`crate::inspect`). An `inbound_qos2` table left by
//! an earlier build is not read.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use corvus_core::Millis;
use redb::{ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable};

use super::records::{self, decode_client_id, decode_mqtt_key};
use super::{
    decode_quarantine_entry, is_damage, lossy, read_meta, Attempt, BadRecord, Meta, FORMAT_VERSION,
    QUARANTINE, RETAINED, SESSIONS, STATE_FILE, SUBSCRIPTIONS, T_RETAINED, T_SESSIONS,
    T_SUBSCRIPTIONS,
};
use crate::error::{DbOp, StoreError};

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The database file.
    pub path: PathBuf,
    /// False if there is no state file (an empty store).
    pub exists: bool,
    /// Why the file cannot be opened, if it is damaged (the broker would quarantine it).
    pub damaged: Option<String>,
    /// The file was not shut down cleanly (the broker crashed or is running): it can only be
    /// checked after the broker has opened (and repaired) it.
    pub unclean_shutdown: bool,
    /// The format version, `None` if the store was never initialized.
    pub format_version: Option<u32>,
    pub sessions: usize,
    pub subscriptions: usize,
    pub retained: usize,
    /// Payload bytes of the retained messages.
    pub retained_bytes: u64,
    /// Entries in the `quarantine` table (records quarantined by earlier loads).
    pub quarantined_records: usize,
    /// Records that cannot be decoded (the next load quarantines them).
    pub undecodable: Vec<BadRecord>,
    /// Subscriptions (client id, filter) without a decodable session.
    pub orphan_subscriptions: Vec<(String, String)>,
}

impl CheckReport {
    /// True if nothing is damaged, undecodable or orphaned.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_none()
            && !self.unclean_shutdown
            && self.undecodable.is_empty()
            && self.orphan_subscriptions.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "state database: {}", self.path.display())?;
        if !self.exists {
            return writeln!(f, "  no state file (empty store)");
        }
        if self.unclean_shutdown {
            return writeln!(
                f,
                "  not shut down cleanly: the broker repairs it when it next starts; check \
                 again after that"
            );
        }
        if let Some(reason) = &self.damaged {
            writeln!(f, "  DAMAGED: {reason}")?;
            return writeln!(
                f,
                "  the broker will move it to quarantine/ and start with an empty store"
            );
        }
        match self.format_version {
            Some(v) => writeln!(f, "  format version: {v}")?,
            None => writeln!(f, "  not initialized (no tables)")?,
        }
        writeln!(f, "  sessions:        {}", self.sessions)?;
        writeln!(f, "  subscriptions:   {}", self.subscriptions)?;
        writeln!(
            f,
            "  retained:        {} ({} payload bytes)",
            self.retained, self.retained_bytes
        )?;
        writeln!(f, "  quarantined:     {}", self.quarantined_records)?;
        writeln!(f, "  undecodable:     {}", self.undecodable.len())?;
        for b in &self.undecodable {
            writeln!(f, "    {} [{}]: {}", b.table, b.key, b.reason)?;
        }
        writeln!(
            f,
            "  orphan subscriptions: {}",
            self.orphan_subscriptions.len()
        )?;
        for (c, filter) in &self.orphan_subscriptions {
            writeln!(f, "    {c} / {filter}")?;
        }
        writeln!(
            f,
            "  {}",
            if self.is_clean() {
                "OK"
            } else {
                "PROBLEMS FOUND"
            }
        )
    }
}

/// One session in a [`Dump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSession {
    pub client_id: String,
    pub expiry_interval: u32,
    pub disconnected_at: Option<Millis>,
    /// When the pending will is due, if there is one.
    pub will_due_at: Option<Millis>,
    /// Whether the connection that owns the session has a will (due if the broker stopped
    /// without that connection ending).
    pub armed_will: bool,
    pub subscriptions: usize,
}

/// What [`dump`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub path: PathBuf,
    /// Decodable sessions, sorted by client id.
    pub sessions: Vec<DumpSession>,
    pub retained_count: usize,
    pub retained_bytes: u64,
    /// Records skipped because they cannot be decoded (see [`check`]).
    pub undecodable: usize,
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "state database: {}", self.path.display())?;
        writeln!(f, "sessions: {}", self.sessions.len())?;
        for s in &self.sessions {
            write!(
                f,
                "  {}  expiry={}s subscriptions={}",
                s.client_id, s.expiry_interval, s.subscriptions
            )?;
            match s.disconnected_at {
                Some(at) => write!(f, " disconnected_at={at}")?,
                None => write!(f, " connected")?,
            }
            if let Some(due) = s.will_due_at {
                write!(f, " will_due_at={due}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "retained: {} messages, {} payload bytes",
            self.retained_count, self.retained_bytes
        )?;
        if self.undecodable > 0 {
            writeln!(
                f,
                "undecodable records skipped: {} (run `corvus store check`)",
                self.undecodable
            )?;
        }
        Ok(())
    }
}

/// Verifies the state database in `dir` without changing it.
///
/// Foreign or other-version files are errors (as at open); a damaged file is reported in
/// [`CheckReport::damaged`].
pub fn check(dir: &Path) -> Result<CheckReport, StoreError> {
    let path = dir.join(STATE_FILE);
    let mut report = CheckReport {
        path: path.clone(),
        ..CheckReport::default()
    };
    let db = match open_read_only(&path)? {
        Opened::Missing => return Ok(report),
        Opened::Unclean => {
            report.exists = true;
            report.unclean_shutdown = true;
            return Ok(report);
        }
        Opened::Damaged(reason) => {
            report.exists = true;
            report.damaged = Some(reason);
            return Ok(report);
        }
        Opened::Db(db, meta) => {
            report.exists = true;
            if meta == Meta::Uninitialized {
                return Ok(report);
            }
            report.format_version = Some(FORMAT_VERSION);
            db
        }
    };
    let scan = scan(&db, &path)?;
    report.sessions = scan.sessions.len();
    report.subscriptions = scan.subscriptions;
    report.retained = scan.retained;
    report.retained_bytes = scan.retained_bytes;
    report.quarantined_records = scan.quarantined;
    report.undecodable = scan.undecodable;
    report.orphan_subscriptions = scan.orphan_subscriptions;
    Ok(report)
}

/// Lists the sessions (with subscription counts) and the retained messages' count and size of
/// the state database in `dir`, without changing it. A damaged file is an error.
pub fn dump(dir: &Path) -> Result<Dump, StoreError> {
    let path = dir.join(STATE_FILE);
    let mut out = Dump {
        path: path.clone(),
        ..Dump::default()
    };
    let db = match open_read_only(&path)? {
        Opened::Missing | Opened::Db(_, Meta::Uninitialized) => return Ok(out),
        Opened::Damaged(reason) => return Err(StoreError::DamagedState { path, reason }),
        Opened::Unclean => {
            return Err(StoreError::DamagedState {
                path,
                reason: "not shut down cleanly; the broker repairs it when it next starts".into(),
            })
        }
        Opened::Db(db, Meta::Ours { .. }) => db,
    };
    let scan = scan(&db, &path)?;
    out.sessions = scan.sessions.into_values().collect();
    out.retained_count = scan.retained;
    out.retained_bytes = scan.retained_bytes;
    out.undecodable = scan.undecodable.len();
    Ok(out)
}

enum Opened {
    Missing,
    Unclean,
    Damaged(String),
    Db(ReadOnlyDatabase, Meta),
}

fn open_read_only(path: &Path) -> Result<Opened, StoreError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) => return Err(StoreError::io(crate::error::Op::Open, path, e)),
        Ok(m) if m.len() == 0 => return Ok(Opened::Missing),
        Ok(_) => {}
    }
    let opened = catch_unwind(AssertUnwindSafe(|| -> Result<Opened, StoreError> {
        let db = match ReadOnlyDatabase::open(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::RepairAborted) => return Ok(Opened::Unclean),
            Err(e) => {
                let e: redb::Error = e.into();
                if is_damage(&e) {
                    return Ok(Opened::Damaged(e.to_string()));
                }
                return Err(StoreError::db(DbOp::Open, path, e));
            }
        };
        match read_meta(&db, path) {
            Ok(v) => Ok(Opened::Db(db, v)),
            Err(Attempt::Damaged(reason)) => Ok(Opened::Damaged(reason)),
            Err(Attempt::Fatal(e)) => Err(e),
        }
    }));
    opened.unwrap_or_else(|_| Ok(Opened::Damaged("redb failed while opening".into())))
}

#[derive(Default)]
struct Scan {
    sessions: BTreeMap<String, DumpSession>,
    subscriptions: usize,
    retained: usize,
    retained_bytes: u64,
    quarantined: usize,
    undecodable: Vec<BadRecord>,
    orphan_subscriptions: Vec<(String, String)>,
}

fn scan(db: &ReadOnlyDatabase, path: &Path) -> Result<Scan, StoreError> {
    let txn = db
        .begin_read()
        .map_err(|e| StoreError::db(DbOp::Read, path, e))?;
    scan_txn(&txn).map_err(|e| StoreError::db(DbOp::Read, path, e))
}

fn scan_txn(txn: &ReadTransaction) -> Result<Scan, redb::Error> {
    let mut s = Scan::default();
    let mut live: HashSet<Vec<u8>> = HashSet::new();
    let bad = |table: &'static str, key: String, reason: String| BadRecord { table, key, reason };

    let table = table_opt(txn.open_table(SESSIONS))?;
    for item in rows(&table)? {
        let (k, v) = item?;
        let (k, v) = (k.value(), v.value());
        let Some(cid) = decode_client_id(k) else {
            s.undecodable
                .push(bad(T_SESSIONS, lossy(k), "client id is not UTF-8".into()));
            continue;
        };
        match records::decode_session(v) {
            Ok(r) => {
                live.insert(k.to_vec());
                s.sessions.insert(
                    cid.to_string(),
                    DumpSession {
                        client_id: cid.to_string(),
                        expiry_interval: r.expiry_interval,
                        disconnected_at: r.disconnected_at,
                        will_due_at: r.pending_will.map(|w| w.due_at),
                        armed_will: r.armed_will.is_some(),
                        subscriptions: 0,
                    },
                );
            }
            Err(e) => s.undecodable.push(bad(T_SESSIONS, lossy(k), e.to_string())),
        }
    }

    let table = table_opt(txn.open_table(SUBSCRIPTIONS))?;
    for item in rows(&table)? {
        let (k, v) = item?;
        let (c, f) = k.value();
        let display = format!("{} / {}", lossy(c), lossy(f));
        if decode_mqtt_key(f).is_none() {
            s.undecodable.push(bad(
                T_SUBSCRIPTIONS,
                display,
                "filter is not an MQTT string".into(),
            ));
            continue;
        }
        if let Err(e) = records::decode_subscription(v.value()) {
            s.undecodable
                .push(bad(T_SUBSCRIPTIONS, display, e.to_string()));
            continue;
        }
        s.subscriptions += 1;
        match s.sessions.get_mut(&lossy(c)).filter(|_| live.contains(c)) {
            Some(sess) => sess.subscriptions += 1,
            None => s.orphan_subscriptions.push((lossy(c), lossy(f))),
        }
    }

    let table = table_opt(txn.open_table(RETAINED))?;
    for item in rows(&table)? {
        let (k, v) = item?;
        let k = k.value();
        match records::decode_retained(v.value()) {
            Ok(m) if m.topic.as_bytes()[..] == k[..] => {
                s.retained += 1;
                s.retained_bytes += m.payload.len() as u64;
            }
            Ok(_) => s.undecodable.push(bad(
                T_RETAINED,
                lossy(k),
                "the message's topic differs from its key".into(),
            )),
            Err(e) => s.undecodable.push(bad(T_RETAINED, lossy(k), e.to_string())),
        }
    }

    let table = table_opt(txn.open_table(QUARANTINE))?;
    for item in rows(&table)? {
        let (_, v) = item?;
        s.quarantined += 1;
        // Entries are only counted; decoding them checks they are ours.
        let _ = decode_quarantine_entry(v.value());
    }
    Ok(s)
}

/// The rows of a table that may not exist: none if it does not.
#[allow(clippy::type_complexity)]
fn rows<'a, K: redb::Key + 'static, V: redb::Value + 'static>(
    table: &'a Option<redb::ReadOnlyTable<K, V>>,
) -> Result<
    impl Iterator<
            Item = Result<(redb::AccessGuard<'a, K>, redb::AccessGuard<'a, V>), redb::StorageError>,
        > + 'a,
    redb::StorageError,
> {
    Ok(table
        .as_ref()
        .map(|t| t.iter())
        .transpose()?
        .into_iter()
        .flatten())
}

/// A table, or `None` if it does not exist (the broker recreates it).
fn table_opt<K: redb::Key + 'static, V: redb::Value + 'static>(
    table: Result<redb::ReadOnlyTable<K, V>, redb::TableError>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, redb::Error> {
    match table {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
