//! Offline, read-only inspection of a whole data directory (`corvus store check|dump DIR`).
//!
//! # What this module owns
//!
//! - [`check_dir`]: verifies a data directory without changing a byte of it: the keyed state
//!   (`DIR/state`, through [`keyed::check`]), every queue segment (`DIR/queue`, read with
//!   plain file reads and the pure functions of [`crate::segment`]: headers, records, damage
//!   with offsets), every journal record (decoded), and the live queued and inflight
//!   deliveries and inbound QoS 2 packet ids awaiting PUBREL (the journal's own replay, fed
//!   the records read here). The result is a [`DirCheck`], whose `Display` is a short report
//!   for people.
//! - [`dump_dir`]: lists the sessions ([`keyed::dump`]) with their queue sizes and inbound
//!   QoS 2 ids from the same replay, as a table ([`DirDump`]).
//!
//! Inbound QoS 2 ids are journal state (`Received`/`InboundReleased` records), not keyed
//! state: they are counted with the live deliveries, and a client that has only inbound ids
//! in the journal but no session is an orphan like a client with only a queue (the broker
//! releases both when it opens the store).
//!
//! [`SegmentLog::open`](crate::SegmentLog::open) and [`Journal::open`](crate::Journal::open)
//! repair what they find (tails cut, damage quarantined), so neither is used here. A missing
//! directory, `state` or `queue` folder is an empty store, not an error. Foreign files and
//! other format versions are reported, not errors, so one look shows everything wrong.
//!
//! No clock is read: queued messages whose expiry has passed are still counted (the broker
//! drops them when it opens the journal).
//!
//! Whether a broker is running is read from `DIR/LOCK`: a shared lock is tried on it, opened
//! read-only, and released at once. While a broker runs the figures may change under the
//! reader.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use corvus_core::Millis;

use crate::error::{IoContext, Op, StoreError};
use crate::fs::{DirEntry, FileSystem, OsFileSystem};
use crate::journal::{ReadOnlyReplay, ReplayReport};
use crate::keyed::{self, CheckReport, Dump};
use crate::log::QUARANTINE_DIR;
use crate::segment::{
    check_header, decode_record, parse_segment_file_name, scan_records, Damage, HeaderCheck, Seq,
    FORMAT_VERSION,
};
use crate::{LOCK_FILE, QUEUE_DIR, STATE_DIR};

/// Expiry is not applied offline (no clock): only messages that expired at the epoch count.
const NO_CLOCK: Millis = 0;

/// An entry that has no place where it was found, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The file or directory.
    pub path: PathBuf,
    /// What gave it away.
    pub reason: String,
}

/// What the header of a queue segment says (foreign and other-version headers are
/// [`Foreign`] entries instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeader {
    /// A valid header: the records were scanned.
    Valid,
    /// Shorter than a header (a crash while creating the segment). `removed`: the broker
    /// removes it (it comes after the last valid segment); otherwise it is quarantined.
    Torn {
        /// See above.
        removed: bool,
    },
    /// A header checksum mismatch or a base disagreeing with the file name: the broker moves
    /// the segment to quarantine whole.
    Corrupt(String),
}

/// One queue segment, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCheck {
    /// The segment file.
    pub path: PathBuf,
    /// The base sequence number from its name.
    pub base: Seq,
    /// Its length in bytes.
    pub len: u64,
    /// What its header says.
    pub header: SegmentHeader,
    /// Valid records in it.
    pub records: u64,
    /// The first and last sequence numbers of its valid records.
    pub first: Option<Seq>,
    /// See `first`.
    pub last: Option<Seq>,
    /// Damaged ranges, with what the broker does about each (as [`scan_records`] reports).
    pub damage: Vec<Damage>,
}

impl SegmentCheck {
    /// Whether the segment is undamaged.
    pub fn is_clean(&self) -> bool {
        self.header == SegmentHeader::Valid && self.damage.is_empty()
    }
}

/// One session's live deliveries and inbound QoS 2 ids in the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientQueue {
    /// Deliveries waiting to be sent.
    pub queued: usize,
    /// Deliveries in flight.
    pub inflight: usize,
    /// Payload bytes of both.
    pub bytes: u64,
    /// Packet ids of QoS 2 PUBLISHes received from the client and awaiting PUBREL.
    pub inbound_qos2: usize,
}

impl ClientQueue {
    /// Both together (for totals).
    fn plus(self, other: ClientQueue) -> ClientQueue {
        ClientQueue {
            queued: self.queued + other.queued,
            inflight: self.inflight + other.inflight,
            bytes: self.bytes + other.bytes,
            inbound_qos2: self.inbound_qos2 + other.inbound_qos2,
        }
    }
}

/// What was read of the queue journal (`DIR/queue`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCheck {
    /// The queue directory.
    pub path: PathBuf,
    /// False if there is no queue directory (an empty journal).
    pub exists: bool,
    /// The segments, in base order.
    pub segments: Vec<SegmentCheck>,
    /// Files in `queue/quarantine/` (damage set aside by earlier recoveries).
    pub quarantined_files: usize,
    /// The replay of every valid record: records read, undecodable ones, lost deliveries.
    pub replay: ReplayReport,
    /// Live deliveries and inbound QoS 2 ids by client id (clients with neither are absent).
    pub clients: BTreeMap<String, ClientQueue>,
}

impl QueueCheck {
    /// Valid records in all segments.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Bytes of all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Live deliveries and inbound QoS 2 ids of every client together.
    pub fn totals(&self) -> ClientQueue {
        self.clients
            .values()
            .fold(ClientQueue::default(), |t, &c| t.plus(c))
    }

    /// Damage found: damaged segments, undecodable records, lost deliveries.
    pub fn is_clean(&self) -> bool {
        self.segments.iter().all(SegmentCheck::is_clean) && self.replay.is_clean()
    }
}

/// What [`check_dir`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirCheck {
    /// The data directory.
    pub dir: PathBuf,
    /// False if it does not exist (an empty store).
    pub exists: bool,
    /// A broker holds the directory's lock: figures may change while they are read.
    pub locked: bool,
    /// Top-level entries that are not part of a data directory (ignored by the broker).
    pub unexpected: Vec<PathBuf>,
    /// Entries the broker would refuse to start with: files in `queue/` that are not
    /// segments, segments of another program or format version, a foreign state database,
    /// `state` or `queue` not being directories.
    pub foreign: Vec<Foreign>,
    /// The keyed state ([`keyed::check`] of `DIR/state`; `exists` is false without one).
    pub state: CheckReport,
    /// The queue journal.
    pub queue: QueueCheck,
}

impl DirCheck {
    /// False if the directory exists but holds neither `state` nor `queue`, and other things:
    /// probably a wrong path.
    pub fn is_data_dir(&self) -> bool {
        !self.exists || self.state.exists || self.queue.exists || self.unexpected.is_empty()
    }

    /// True if nothing is damaged, undecodable, lost, orphaned or foreign (a missing
    /// directory is clean: an empty store).
    pub fn is_clean(&self) -> bool {
        self.is_data_dir()
            && self.foreign.is_empty()
            && self.state.is_clean()
            && self.queue.is_clean()
    }
}

/// Verifies the data directory `dir` without changing anything in it. Errors are I/O
/// failures (unreadable files) and database errors; damage and foreign files are reported in
/// the [`DirCheck`].
pub fn check_dir(dir: &Path) -> Result<DirCheck, StoreError> {
    let mut out = DirCheck {
        dir: dir.to_path_buf(),
        ..DirCheck::default()
    };
    let layout = read_layout(dir)?;
    out.exists = layout.exists;
    out.locked = layout.locked;
    out.unexpected = layout.unexpected;
    out.foreign = layout.foreign;
    out.state.path = dir.join(STATE_DIR).join("state.redb");
    if layout.state_dir {
        match keyed::check(&dir.join(STATE_DIR)) {
            Ok(report) => out.state = report,
            Err(
                e @ (StoreError::ForeignState { .. } | StoreError::UnsupportedStateVersion { .. }),
            ) => out.foreign.push(Foreign {
                path: out.state.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) => return Err(in_use(e, dir, out.locked)),
        }
    }
    out.queue = scan_queue(&dir.join(QUEUE_DIR), layout.queue_dir, &mut out.foreign)?;
    Ok(out)
}

/// What [`dump_dir`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirDump {
    /// The data directory.
    pub dir: PathBuf,
    /// False if it does not exist (an empty store).
    pub exists: bool,
    /// A broker holds the directory's lock: figures may change while they are read.
    pub locked: bool,
    /// The keyed state: sessions, retained messages.
    pub state: Dump,
    /// Live deliveries and inbound QoS 2 ids by client id, from the journal.
    pub queues: BTreeMap<String, ClientQueue>,
    /// Damaged segments, undecodable records, lost deliveries and foreign entries met on the
    /// way (listed by [`check_dir`]).
    pub problems: usize,
}

impl DirDump {
    /// Client ids with deliveries or inbound QoS 2 ids in the journal but no session in the
    /// keyed state (the broker finishes them when it opens the store, or keeps them in rebuilt
    /// sessions if the state database was damaged).
    pub fn orphan_queues(&self) -> impl Iterator<Item = (&String, &ClientQueue)> {
        self.queues.iter().filter(|(client, _)| {
            self.state
                .sessions
                .binary_search_by(|s| s.client_id.as_str().cmp(client.as_str()))
                .is_err()
        })
    }
}

/// Lists the sessions of the data directory `dir` with their queue sizes, and the retained
/// messages' count and size, without changing anything. A damaged or foreign state database
/// is an error (see [`keyed::dump`]); damage in the queue is counted in
/// [`DirDump::problems`].
pub fn dump_dir(dir: &Path) -> Result<DirDump, StoreError> {
    let layout = read_layout(dir)?;
    let mut foreign = layout.foreign;
    let state = if layout.state_dir {
        keyed::dump(&dir.join(STATE_DIR)).map_err(|e| in_use(e, dir, layout.locked))?
    } else {
        Dump {
            path: dir.join(STATE_DIR).join("state.redb"),
            ..Dump::default()
        }
    };
    let queue = scan_queue(&dir.join(QUEUE_DIR), layout.queue_dir, &mut foreign)?;
    let problems = foreign.len()
        + queue.segments.iter().filter(|s| !s.is_clean()).count()
        + queue.replay.undecodable.len()
        + queue.replay.lost.len();
    Ok(DirDump {
        dir: dir.to_path_buf(),
        exists: layout.exists,
        locked: layout.locked,
        state,
        queues: queue.clients,
        problems,
    })
}

/// A database error while a broker holds the directory is the broker's lock on the state
/// database (redb admits one process): the directory is in use, nothing is wrong with it.
fn in_use(e: StoreError, dir: &Path, locked: bool) -> StoreError {
    match e {
        StoreError::Database { .. } if locked => StoreError::InUse {
            dir: dir.to_path_buf(),
            lock: dir.join(LOCK_FILE),
        },
        e => e,
    }
}

/// The top level of a data directory.
#[derive(Default)]
struct Layout {
    exists: bool,
    locked: bool,
    state_dir: bool,
    queue_dir: bool,
    unexpected: Vec<PathBuf>,
    foreign: Vec<Foreign>,
}

fn read_layout(dir: &Path) -> Result<Layout, StoreError> {
    let mut layout = Layout::default();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(layout),
        Err(e) => return Err(StoreError::io(Op::Open, dir, e)),
        Ok(m) if !m.is_dir() => {
            layout.exists = true;
            layout.foreign.push(Foreign {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
            return Ok(layout);
        }
        Ok(_) => layout.exists = true,
    }
    layout.locked = is_locked(dir)?;
    for DirEntry { name, path, is_dir } in OsFileSystem.list(dir).ctx(Op::List, dir)? {
        match name.as_deref() {
            Some(n) if n.starts_with('.') => {}
            Some(LOCK_FILE) if !is_dir => {}
            Some(n @ (STATE_DIR | QUEUE_DIR)) if is_dir => {
                if n == STATE_DIR {
                    layout.state_dir = true;
                } else {
                    layout.queue_dir = true;
                }
            }
            Some(STATE_DIR | QUEUE_DIR | LOCK_FILE) => layout.foreign.push(Foreign {
                path,
                reason: if is_dir {
                    "a directory where the lock file belongs".into()
                } else {
                    "not a directory".into()
                },
            }),
            _ => layout.unexpected.push(path),
        }
    }
    layout.unexpected.sort();
    Ok(layout)
}

/// Whether a process holds `DIR/LOCK` (a running broker). The lock is tried shared on a
/// read-only handle and released at once; a missing lock file means no broker.
fn is_locked(dir: &Path) -> Result<bool, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io(Op::Open, &path, e)),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            // Released when the handle closes; unlocking first keeps the window short.
            let _ = file.unlock();
            Ok(false)
        }
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(StoreError::io(Op::Lock, &path, e)),
    }
}

/// Reads the queue journal in `dir` (which exists as a directory if `exists`), reporting
/// foreign entries in `foreign`.
fn scan_queue(
    dir: &Path,
    exists: bool,
    foreign: &mut Vec<Foreign>,
) -> Result<QueueCheck, StoreError> {
    let mut out = QueueCheck {
        path: dir.to_path_buf(),
        exists,
        ..QueueCheck::default()
    };
    if !exists {
        return Ok(out);
    }
    // Pass 1, as `SegmentLog::open` lists the directory.
    let mut found: Vec<(Seq, PathBuf)> = Vec::new();
    for DirEntry { name, path, is_dir } in OsFileSystem.list(dir).ctx(Op::List, dir)? {
        let name = name.as_deref();
        if is_dir && name == Some(QUARANTINE_DIR) {
            out.quarantined_files = count_entries(&path)?;
            continue;
        }
        if name.is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        match name.and_then(parse_segment_file_name) {
            Some(base) if !is_dir => found.push((base, path)),
            _ => foreign.push(Foreign {
                path,
                reason: "unexpected entry in a queue directory".into(),
            }),
        }
    }
    found.sort();

    // Pass 2: read every segment once (headers first decide which one is the last valid).
    let mut segments = Vec::new();
    for (base, path) in found {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Removed since the listing (a running broker reclaimed it): nothing to check.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(Op::Read, &path, e)),
        };
        let header = match check_header(&bytes, base) {
            HeaderCheck::Valid(_) => SegmentHeader::Valid,
            HeaderCheck::Torn => SegmentHeader::Torn { removed: false },
            HeaderCheck::Corrupt(reason) => SegmentHeader::Corrupt(reason),
            HeaderCheck::Foreign(reason) => {
                foreign.push(Foreign { path, reason });
                continue;
            }
            HeaderCheck::UnsupportedVersion(found) => {
                foreign.push(Foreign {
                    path,
                    reason: format!(
                        "segment format version {found} (this build reads version \
                         {FORMAT_VERSION}): written by a different Corvus version"
                    ),
                });
                continue;
            }
        };
        segments.push((base, path, header, bytes));
    }
    let last_valid = segments
        .iter()
        .rposition(|(_, _, h, _)| *h == SegmentHeader::Valid);
    let mut replay = ReadOnlyReplay::default();
    let mut prev = Seq(0);
    for (i, (base, path, header, bytes)) in segments.into_iter().enumerate() {
        let mut seg = SegmentCheck {
            path,
            base,
            len: bytes.len() as u64,
            header,
            records: 0,
            first: None,
            last: None,
            damage: Vec::new(),
        };
        match &mut seg.header {
            SegmentHeader::Valid => {
                let scan = scan_records(&bytes, base, prev, Some(i) == last_valid);
                for &(seq, offset) in &scan.records {
                    let payload = usize::try_from(offset)
                        .ok()
                        .and_then(|o| bytes.get(o..))
                        .and_then(decode_record);
                    // The scan only lists records that decode; anything else is a bug there.
                    if let Some((_, payload)) = payload {
                        replay.apply(seq, payload);
                    }
                }
                seg.records = scan.records.len() as u64;
                seg.first = scan.records.first().map(|r| r.0);
                seg.last = scan.records.last().map(|r| r.0);
                if let Some(last) = seg.last {
                    prev = last;
                }
                seg.damage = scan.damage;
            }
            // Torn while being created, after the last valid segment: the broker drops it.
            SegmentHeader::Torn { removed } => *removed = last_valid.is_none_or(|l| i > l),
            SegmentHeader::Corrupt(_) => {}
        }
        out.segments.push(seg);
    }
    let (state, report) = replay.finish(NO_CLOCK);
    out.replay = report;
    for (client, session) in state.sessions {
        let bytes = session
            .queue
            .iter()
            .map(|e| &e.delivery)
            .chain(session.inflight.iter().map(|e| &e.delivery))
            .map(|d| d.payload_len as u64)
            .sum();
        out.clients.insert(
            client.to_string(),
            ClientQueue {
                queued: session.queue.len(),
                inflight: session.inflight.len(),
                bytes,
                inbound_qos2: session.inbound_qos2.len(),
            },
        );
    }
    Ok(out)
}

fn count_entries(dir: &Path) -> Result<usize, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(Op::List, dir, e))?;
    let mut n = 0;
    for entry in entries {
        entry.map_err(|e| StoreError::io(Op::List, dir, e))?;
        n += 1;
    }
    Ok(n)
}

// ---- reports ----

/// `path` relative to `base` when it is inside it, for shorter lines.
fn rel<'a>(path: &'a Path, base: &Path) -> std::path::Display<'a> {
    path.strip_prefix(base).unwrap_or(path).display()
}

fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

const RUNNING: &str = "a broker is running on this directory; figures may change";

fn damage_fate(d: &Damage) -> &'static str {
    match (d.truncate, d.quarantine) {
        (true, true) => "the broker cuts the file here and copies the bytes to quarantine/",
        (true, false) => "a write torn by a crash: the broker cuts the file here",
        (false, _) => "the broker skips it and copies it to quarantine/",
    }
}

impl fmt::Display for DirCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = &self.dir;
        writeln!(f, "data directory: {}", dir.display())?;
        if !self.exists {
            writeln!(f, "does not exist: empty store")?;
            return writeln!(f, "result: OK");
        }
        if self.locked {
            writeln!(f, "{RUNNING}")?;
        }
        if !self.is_data_dir() {
            writeln!(
                f,
                "NOT A CORVUS DATA DIRECTORY: no {STATE_DIR}/ or {QUEUE_DIR}/, and it holds \
                 {} other entries (e.g. {})",
                self.unexpected.len(),
                self.unexpected
                    .iter()
                    .take(3)
                    .map(|p| rel(p, dir).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        } else if !self.unexpected.is_empty() {
            let names: Vec<String> = self
                .unexpected
                .iter()
                .map(|p| rel(p, dir).to_string())
                .collect();
            writeln!(
                f,
                "note: unexpected entries (ignored): {}",
                names.join(", ")
            )?;
        }

        let s = &self.state;
        if !s.exists {
            writeln!(f, "state: no state database (empty)")?;
        } else if s.unclean_shutdown {
            writeln!(
                f,
                "state: {}: not shut down cleanly (the broker repairs it when it next starts; \
                 check again after that)",
                rel(&s.path, dir)
            )?;
        } else if let Some(reason) = &s.damaged {
            writeln!(
                f,
                "state: {}: DAMAGED: {reason} (the broker moves it to quarantine/ and starts \
                 with an empty state)",
                rel(&s.path, dir)
            )?;
        } else {
            writeln!(
                f,
                "state: {}, {}, {} ({} payload bytes){}",
                plural(s.sessions as u64, "session", "sessions"),
                plural(s.subscriptions as u64, "subscription", "subscriptions"),
                plural(s.retained as u64, "retained message", "retained messages"),
                s.retained_bytes,
                if s.quarantined_records > 0 {
                    format!("; {} quarantined records", s.quarantined_records)
                } else {
                    String::new()
                }
            )?;
        }

        let q = &self.queue;
        if !q.exists {
            writeln!(f, "queue: no queue journal (empty)")?;
        } else {
            write!(
                f,
                "queue: {}, {}, {} bytes",
                plural(q.segments.len() as u64, "segment", "segments"),
                plural(q.records(), "record", "records"),
                q.bytes()
            )?;
            if q.quarantined_files > 0 {
                write!(f, "; {} files in quarantine/", q.quarantined_files)?;
            }
            writeln!(f)?;
        }
        let t = q.totals();
        writeln!(
            f,
            "live: {} queued, {} inflight ({} payload bytes), {} awaiting PUBREL for {}",
            t.queued,
            t.inflight,
            t.bytes,
            plural(
                t.inbound_qos2 as u64,
                "inbound QoS 2 id",
                "inbound QoS 2 ids"
            ),
            plural(q.clients.len() as u64, "client", "clients")
        )?;

        let mut damage = Vec::new();
        for b in &s.undecodable {
            damage.push(format!(
                "state: undecodable {} record [{}]: {} (the broker quarantines it)",
                b.table, b.key, b.reason
            ));
        }
        for (c, filter) in &s.orphan_subscriptions {
            damage.push(format!(
                "state: subscription without a session: {c} / {filter}"
            ));
        }
        for seg in &q.segments {
            let name = rel(&seg.path, dir);
            match &seg.header {
                SegmentHeader::Valid => {}
                SegmentHeader::Torn { removed: true } => damage.push(format!(
                    "{name}: torn header ({} bytes; a crash while creating it): the broker \
                     removes it",
                    seg.len
                )),
                SegmentHeader::Torn { removed: false } => damage.push(format!(
                    "{name}: torn header ({} bytes): the broker moves it to quarantine/",
                    seg.len
                )),
                SegmentHeader::Corrupt(reason) => damage.push(format!(
                    "{name}: corrupt header ({reason}): the broker moves it to quarantine/"
                )),
            }
            for d in &seg.damage {
                damage.push(format!(
                    "{name} @ {}: {}, {} bytes: {}",
                    d.offset,
                    d.kind,
                    d.len,
                    damage_fate(d)
                ));
            }
        }
        for (seq, e) in &q.replay.undecodable {
            damage.push(format!("queue record {seq}: undecodable: {e} (skipped)"));
        }
        for (client, id) in &q.replay.lost {
            damage.push(format!(
                "queue: delivery of message {id} to {client} lost (its body is damaged)"
            ));
        }
        if damage.is_empty() {
            writeln!(f, "damage: none")?;
        } else {
            writeln!(f, "damage: {}", damage.len())?;
            for d in &damage {
                writeln!(f, "  {d}")?;
            }
        }
        if !self.foreign.is_empty() {
            writeln!(
                f,
                "foreign: {} (the broker refuses to start until they are moved out)",
                self.foreign.len()
            )?;
            for x in &self.foreign {
                writeln!(f, "  {}: {}", rel(&x.path, dir), x.reason)?;
            }
        }
        writeln!(
            f,
            "result: {}",
            if self.is_clean() {
                "OK"
            } else {
                "PROBLEMS FOUND"
            }
        )
    }
}

/// Milliseconds since the UNIX epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn utc(ms: Millis) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A client id for a table cell: control characters escaped.
fn cell(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl fmt::Display for DirDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data directory: {}", self.dir.display())?;
        if !self.exists {
            writeln!(f, "does not exist: empty store")?;
        }
        if self.locked {
            writeln!(f, "{RUNNING}")?;
        }
        let header = [
            "CLIENT", "EXPIRY", "STATE", "WILL", "SUBS", "QOS2-IN", "QUEUED", "INFLIGHT", "BYTES",
        ];
        let mut rows: Vec<[String; 9]> = Vec::new();
        let empty = ClientQueue::default();
        for s in &self.state.sessions {
            let q = self.queues.get(&s.client_id).unwrap_or(&empty);
            rows.push([
                cell(&s.client_id),
                if s.expiry_interval == corvus_core::session::NEVER_EXPIRES {
                    "never".into()
                } else {
                    format!("{}s", s.expiry_interval)
                },
                match s.disconnected_at {
                    Some(at) => format!("offline since {}", utc(at)),
                    None => "online".into(),
                },
                match (s.will_due_at, s.armed_will) {
                    (Some(at), _) => format!("due {}", utc(at)),
                    (None, true) => "armed".into(),
                    (None, false) => "-".into(),
                },
                s.subscriptions.to_string(),
                q.inbound_qos2.to_string(),
                q.queued.to_string(),
                q.inflight.to_string(),
                q.bytes.to_string(),
            ]);
        }
        let orphans: Vec<_> = self.orphan_queues().collect();
        for (client, q) in &orphans {
            rows.push([
                cell(client),
                "-".into(),
                "orphan queue".into(),
                "-".into(),
                "-".into(),
                q.inbound_qos2.to_string(),
                q.queued.to_string(),
                q.inflight.to_string(),
                q.bytes.to_string(),
            ]);
        }
        if rows.is_empty() {
            writeln!(f, "no sessions")?;
        } else {
            let mut widths = header.map(str::len);
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 9]| -> fmt::Result {
                let mut out = String::new();
                for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                    // Text columns left-aligned, counts right-aligned.
                    let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                    if i < 4 {
                        out.push_str(c);
                        out.push_str(&pad);
                    } else {
                        out.push_str(&pad);
                        out.push_str(c);
                    }
                    out.push_str("  ");
                }
                writeln!(f, "{}", out.trim_end())
            };
            line(f, header)?;
            for row in &rows {
                line(f, row.each_ref().map(String::as_str))?;
            }
        }
        writeln!(
            f,
            "retained: {}, {} payload bytes",
            plural(self.state.retained_count as u64, "message", "messages"),
            self.state.retained_bytes
        )?;
        let t = self.queues.values().fold(empty, |t, &c| t.plus(c));
        let subscriptions: usize = self.state.sessions.iter().map(|s| s.subscriptions).sum();
        writeln!(
            f,
            "total: {} ({}), {}, {} queued, {} inflight, {} payload bytes queued",
            plural(self.state.sessions.len() as u64, "session", "sessions"),
            plural(orphans.len() as u64, "orphan queue", "orphan queues"),
            plural(subscriptions as u64, "subscription", "subscriptions"),
            t.queued,
            t.inflight,
            t.bytes
        )?;
        if self.state.undecodable > 0 || self.problems > 0 {
            writeln!(
                f,
                "problems: {} (run `corvus store check {}`)",
                self.state.undecodable + self.problems,
                self.dir.display()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;
    use std::sync::Arc;

    use bytes::Bytes;
    use corvus_core::{ClientId, Message, SubscriptionEntry};
    use mqtt_codec::{MqttString, PublishProperties, QoS, RetainHandling, SubscriptionOptions};

    use super::*;

    use crate::journal::{Journal, QueuedCopy, Record};
    use crate::keyed::{KeyedStore, SessionRecord};
    use crate::segment::{DamageKind, HEADER_LEN};
    use crate::{DirLock, LogOptions};

    fn message(topic: &str, payload: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: MqttString::try_from(topic).unwrap(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: None,
            received_at: None,
        })
    }

    fn enqueue(c: &str, id: u64) -> Record {
        Record::Enqueue {
            client: ClientId::from(c),
            message: id,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        }
    }

    /// A data directory with 2 sessions (a: 2 subscriptions, b: none), 1 retained message,
    /// and a journal where a has 2 queued and 1 inflight, b 1 queued, and "ghost" (no
    /// session) 1 queued.
    fn populate(dir: &Path) {
        let (keyed, _) = KeyedStore::open(&dir.join(STATE_DIR)).unwrap();
        let session = |disconnected_at| SessionRecord {
            expiry_interval: 3600,
            disconnected_at,
            armed_will: None,
            pending_will: None,
            last_packet_id: 1,
            principal: None,
        };
        keyed
            .put_session("a", &session(Some(1_700_000_000_000)))
            .unwrap();
        keyed.put_session("b", &session(None)).unwrap();
        let sub = SubscriptionEntry {
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: RetainHandling::SendAtSubscribe,
            },
            identifier: None,
        };
        for filter in ["t/#", "u/+"] {
            keyed
                .put_subscription("a", &MqttString::try_from(filter).unwrap(), &sub)
                .unwrap();
        }
        keyed.put_retained(&message("r/1", "retained")).unwrap();
        drop(keyed);

        let mut journal = open_journal(dir);
        let mut records = Vec::new();
        for id in 1..=4 {
            records.push(Record::Message {
                id,
                message: message("t/x", "0123456789"),
            });
        }
        records.extend([
            enqueue("a", 1),
            enqueue("a", 2),
            enqueue("a", 3),
            enqueue("b", 1),
            enqueue("ghost", 4),
            Record::Sent {
                client: "a".into(),
                message: 1,
                packet_id: NonZeroU16::new(7).unwrap(),
            },
            enqueue("b", 2),
            Record::Done {
                client: "b".into(),
                message: 2,
            },
        ]);
        journal.write(&records).unwrap();
        journal.sync().unwrap();
    }

    /// The queue journal of the data directory `dir`, as the broker opens it.
    fn open_journal(dir: &Path) -> Journal {
        let (journal, ..) = Journal::open(
            Arc::new(OsFileSystem),
            dir.join(QUEUE_DIR),
            LogOptions::default(),
            0,
        )
        .unwrap();
        journal
    }

    /// Asserts that each of `lines` is a whole line of `text`.
    fn assert_has_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(
                text.lines().any(|l| l == *line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    /// The clients of `dump` that have a queue but no session.
    fn orphans(dump: &DirDump) -> Vec<&str> {
        dump.orphan_queues().map(|(c, _)| c.as_str()).collect()
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join(QUEUE_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        segs
    }

    /// Every file under `dir` with its bytes.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn a_missing_directory_is_an_empty_clean_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nope");
        let check = check_dir(&dir).unwrap();
        assert!(!check.exists);
        assert!(check.is_clean());
        assert!(check.to_string().contains("empty store"), "{check}");
        let dump = dump_dir(&dir).unwrap();
        assert!(dump.state.sessions.is_empty() && dump.queues.is_empty());
        assert!(!dir.exists(), "nothing created");

        // An existing but empty directory: empty state and queue.
        std::fs::create_dir(&dir).unwrap();
        let check = check_dir(&dir).unwrap();
        assert!(check.is_clean(), "{check}");
        let text = check.to_string();
        assert!(text.contains("state: no state database (empty)"), "{text}");
        assert!(text.contains("queue: no queue journal (empty)"), "{text}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn check_and_dump_count_state_and_live_deliveries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        populate(dir);
        let before = snapshot(dir);

        let check = check_dir(dir).unwrap();
        assert!(check.is_clean(), "{check}");
        assert!(!check.locked);
        assert_eq!(check.state.sessions, 2);
        assert_eq!(check.state.subscriptions, 2);
        assert_eq!(check.state.retained, 1);
        assert_eq!(check.queue.segments.len(), 1);
        assert_eq!(check.queue.records(), 12);
        let t = check.queue.totals();
        assert_eq!((t.queued, t.inflight, t.bytes), (4, 1, 50));
        assert_eq!(
            check.queue.clients["a"],
            ClientQueue {
                queued: 2,
                inflight: 1,
                bytes: 30,
                inbound_qos2: 0,
            }
        );
        let text = check.to_string();
        assert_has_lines(
            &text,
            &[
                "state: 2 sessions, 2 subscriptions, 1 retained message (8 payload bytes)",
                "live: 4 queued, 1 inflight (50 payload bytes), 0 inbound QoS 2 ids awaiting \
                 PUBREL for 3 clients",
                "damage: none",
                "result: OK",
            ],
        );
        assert!(text.contains("queue: 1 segment, 12 records,"), "{text}");

        let dump = dump_dir(dir).unwrap();
        assert_eq!(dump.problems, 0);
        assert_eq!(orphans(&dump), ["ghost"]);
        let text = dump.to_string();
        assert!(
            text.contains("offline since 2023-11-14T22:13:20Z"),
            "{text}"
        );
        let a = text.lines().find(|l| l.starts_with("a ")).unwrap();
        let cells: Vec<_> = a.split_whitespace().collect();
        assert_eq!(cells[cells.len() - 3..], ["2", "1", "30"], "{text}");
        assert!(text.contains("orphan queue"), "{text}");
        assert!(
            text.contains("retained: 1 message, 8 payload bytes"),
            "{text}"
        );
        assert!(
            text.contains("total: 2 sessions (1 orphan queue)"),
            "{text}"
        );

        assert_eq!(snapshot(dir), before, "check and dump changed nothing");
    }

    #[test]
    fn inbound_qos2_ids_are_counted_from_the_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (keyed, _) = KeyedStore::open(&dir.join(STATE_DIR)).unwrap();
        let session = SessionRecord {
            expiry_interval: 60,
            disconnected_at: None,
            armed_will: None,
            pending_will: None,
            last_packet_id: 0,
            principal: None,
        };
        keyed.put_session("pub", &session).unwrap();
        keyed.put_session("sub", &session).unwrap();
        drop(keyed);
        let mut journal = open_journal(dir);
        let pid = |n| NonZeroU16::new(n).unwrap();
        let received = |client: &str, packet_id, copies| Record::Received {
            client: ClientId::from(client),
            packet_id: pid(packet_id),
            copies,
        };
        journal
            .write(&[
                Record::Message {
                    id: 1,
                    message: message("t/x", "0123456789"),
                },
                // "pub" published message 1 at QoS 2: one copy queued for "sub".
                received(
                    "pub",
                    5,
                    vec![QueuedCopy {
                        client: ClientId::from("sub"),
                        message: 1,
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        subscription_ids: vec![3],
                    }],
                ),
                // Two more with no subscriber, one of them released since.
                received("pub", 6, vec![]),
                received("pub", 7, vec![]),
                Record::InboundReleased {
                    client: ClientId::from("pub"),
                    packet_id: pid(6),
                },
                // A client whose session is gone, with only an inbound id left.
                received("ghost", 1, vec![]),
            ])
            .unwrap();
        journal.sync().unwrap();
        drop(journal);
        let before = snapshot(dir);

        let check = check_dir(dir).unwrap();
        assert!(check.is_clean(), "{check}");
        let clients = &check.queue.clients;
        assert_eq!((clients["pub"].inbound_qos2, clients["pub"].queued), (2, 0));
        assert_eq!((clients["sub"].inbound_qos2, clients["sub"].queued), (0, 1));
        assert_eq!(clients["ghost"].inbound_qos2, 1);
        assert_has_lines(
            &check.to_string(),
            &[
                "state: 2 sessions, 0 subscriptions, 0 retained messages (0 payload bytes)",
                "live: 1 queued, 0 inflight (10 payload bytes), 3 inbound QoS 2 ids awaiting \
                 PUBREL for 3 clients",
            ],
        );

        let dump = dump_dir(dir).unwrap();
        assert_eq!(orphans(&dump), ["ghost"]);
        let text = dump.to_string();
        let header = text.lines().find(|l| l.starts_with("CLIENT")).unwrap();
        let cells: Vec<_> = header.split_whitespace().collect();
        let col = cells.iter().position(|&c| c == "QOS2-IN").unwrap();
        // The header's columns are one word each; rows have a two-word STATE or WILL, so the
        // counts are taken from the end.
        let from_end = cells.len() - col;
        let count = |client: &str| -> String {
            let row = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(client))
                .unwrap_or_else(|| panic!("no row for {client}:\n{text}"));
            let cells: Vec<_> = row.split_whitespace().collect();
            cells[cells.len() - from_end].to_string()
        };
        assert_eq!(count("pub"), "2", "{text}");
        assert_eq!(count("sub"), "0", "{text}");
        assert_eq!(count("ghost"), "1", "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("ghost") && l.contains("orphan queue")),
            "{text}"
        );
        assert!(
            text.contains("total: 2 sessions (1 orphan queue)"),
            "{text}"
        );

        assert_eq!(snapshot(dir), before, "check and dump changed nothing");
    }

    #[test]
    fn damage_is_reported_and_nothing_is_modified() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        populate(dir);
        let seg = segments(dir).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        // Flip a payload byte of the 6th record (an Enqueue of "a"), cut the last record short.
        let mut offsets = Vec::new();
        let mut off = HEADER_LEN as usize;
        while off < bytes.len() {
            offsets.push(off);
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            off += 16 + len;
        }
        let middle = offsets[5];
        bytes[middle + 17] ^= 0x55;
        let cut = bytes.len() - 3;
        bytes.truncate(cut);
        std::fs::write(&seg, &bytes).unwrap();
        let before = snapshot(dir);

        let check = check_dir(dir).unwrap();
        assert!(!check.is_clean());
        let damage = &check.queue.segments[0].damage;
        assert_eq!(damage.len(), 2, "{damage:?}");
        assert_eq!(damage[0].kind, DamageKind::ChecksumMismatch);
        assert_eq!(damage[0].offset, middle as u64);
        assert!(!damage[0].truncate && damage[0].quarantine);
        assert_eq!(damage[1].kind, DamageKind::TornRecord);
        assert_eq!(damage[1].offset, *offsets.last().unwrap() as u64);
        assert!(damage[1].truncate);
        assert_eq!(check.queue.records(), 10);
        let text = check.to_string();
        assert!(
            text.contains(&format!("@ {middle}: checksum-mismatch")),
            "{text}"
        );
        assert!(text.contains("torn-record"), "{text}");
        assert!(text.contains("result: PROBLEMS FOUND"), "{text}");
        assert!(dump_dir(dir).unwrap().problems > 0);

        assert_eq!(snapshot(dir), before, "check and dump changed nothing");
        assert!(!dir.join(QUEUE_DIR).join(QUARANTINE_DIR).exists());
    }

    #[test]
    fn undecodable_records_are_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut log, _) = crate::SegmentLog::open(
            Arc::new(OsFileSystem),
            dir.join(QUEUE_DIR),
            LogOptions::default(),
        )
        .unwrap();
        log.append(&[0xEE, 1, 2, 3]).unwrap();
        log.sync().unwrap();
        drop(log);
        let check = check_dir(dir).unwrap();
        assert_eq!(check.queue.replay.undecodable.len(), 1);
        assert!(!check.is_clean());
        assert!(check.to_string().contains("queue record 1: undecodable"));
    }

    #[test]
    fn foreign_entries_and_wrong_paths_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        populate(dir);
        std::fs::write(dir.join(QUEUE_DIR).join("notes.txt"), b"hello").unwrap();
        std::fs::write(
            dir.join(QUEUE_DIR).join("00000000000000000099.seg"),
            b"SQLite format 3\0",
        )
        .unwrap();
        let before = snapshot(dir);
        let check = check_dir(dir).unwrap();
        assert!(!check.is_clean());
        assert_eq!(check.foreign.len(), 2, "{:?}", check.foreign);
        let text = check.to_string();
        assert!(text.contains("queue/notes.txt: unexpected entry"), "{text}");
        assert!(
            text.contains("00000000000000000099.seg: expected magic"),
            "{text}"
        );
        assert_eq!(
            check.queue.totals().queued,
            4,
            "the segments are still read"
        );
        assert_eq!(snapshot(dir), before);

        // A directory that is not a data directory at all.
        let other = tmp.path().join("home");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("thesis.tex"), b"x").unwrap();
        let check = check_dir(&other).unwrap();
        assert!(!check.is_data_dir() && !check.is_clean());
        assert!(check.to_string().contains("NOT A CORVUS DATA DIRECTORY"));
    }

    #[test]
    fn a_running_broker_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let lock = DirLock::acquire(&dir).unwrap();
        let check = check_dir(&dir).unwrap();
        assert!(check.locked);
        assert!(check.is_clean(), "{check}");
        assert!(check.to_string().contains(RUNNING));

        // A broker that has the state database open: it cannot be read, and that is said.
        let (keyed, _) = KeyedStore::open(&dir.join(STATE_DIR)).unwrap();
        for result in [check_dir(&dir).map(|_| ()), dump_dir(&dir).map(|_| ())] {
            match result {
                Err(StoreError::InUse { dir: d, .. }) => assert_eq!(d, dir),
                other => panic!("expected InUse, got {other:?}"),
            }
        }
        drop((keyed, lock));
        let check = check_dir(&dir).unwrap();
        assert!(!check.locked && check.is_clean(), "{check}");
    }

    #[test]
    fn utc_formats_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14T22:13:20Z");
        let _ = utc(u64::MAX);
    }
}
