//! [`SegmentLog`]: appends, group commit, reads (in order from a sequence number, or one
//! record by sequence number wherever it is: unwritten batch, OS, or disk), reclaiming space,
//! and recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{IoContext, Op, StoreError};
use crate::fs::{FileSystem, StorageFile};
use crate::progress::{NoProgress, ProgressSink, RecoveryStep, StepReporter};
use crate::segment::{
    self, check_header, decode_record, encode_header, encode_record, parse_segment_file_name,
    scan_records, segment_file_name, DamageKind, HeaderCheck, Seq, FORMAT_MAX_PAYLOAD,
    FORMAT_VERSION, HEADER_LEN, RECORD_HEADER_LEN,
};

/// The name of the folder, inside the log's directory, that damaged bytes are copied to.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Written but unsynced records are kept in memory, to be written again if their sync fails.
/// Past this many bytes, [`SegmentLog::flush`] syncs instead, so memory stays bounded under
/// the `interval` and `never` policies too.
pub const MAX_UNSYNCED_BYTES: usize = 16 * 1024 * 1024;
/// The batch buffer keeps at most this much capacity once a batch is durable: one burst must
/// not hold its peak for ever.
const RETAINED_BATCH_CAPACITY: usize = 1024 * 1024;

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every batch is synced before it is acknowledged. The caller appends a batch and calls
    /// [`SegmentLog::sync`] (or [`SegmentLog::poll_sync`]) once: group commit.
    Always,
    /// Synced when at least this long has passed since the last sync.
    Interval(Duration),
    /// Never synced by [`SegmentLog::poll_sync`], only written to the OS; left to the OS.
    Never,
}

/// How a log is laid out and synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The maximum size of a segment file, header included. A segment is closed and a new
    /// one started when the next record would not fit.
    pub segment_size: u64,
    /// The largest payload accepted by [`SegmentLog::append`].
    pub max_payload: u32,
    /// What [`SegmentLog::poll_sync`] does.
    pub sync_policy: SyncPolicy,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size: 64 * 1024 * 1024,
            max_payload: 16 * 1024 * 1024,
            sync_policy: SyncPolicy::Always,
        }
    }
}

impl LogOptions {
    fn validate(&self) -> Result<(), StoreError> {
        if self.max_payload > FORMAT_MAX_PAYLOAD {
            return Err(StoreError::InvalidOptions(format!(
                "max_payload {} exceeds the format's limit of {FORMAT_MAX_PAYLOAD}",
                self.max_payload
            )));
        }
        let need = HEADER_LEN + RECORD_HEADER_LEN + u64::from(self.max_payload);
        if self.segment_size < need {
            return Err(StoreError::InvalidOptions(format!(
                "segment_size {} cannot hold a record of max_payload {} bytes (needs {need})",
                self.segment_size, self.max_payload
            )));
        }
        Ok(())
    }
}

/// A cut made at the end of the last segment during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment.
    pub path: PathBuf,
    /// Where the file was cut.
    pub offset: u64,
    /// How many bytes were dropped.
    pub len: u64,
    /// Why.
    pub kind: DamageKind,
    /// Whether the whole file was removed (a segment torn while being created).
    pub file_removed: bool,
}

/// Damaged bytes that recovery skipped and copied aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The segment they came from.
    pub path: PathBuf,
    /// Where they start in it.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
    /// Why.
    pub kind: DamageKind,
    /// Where the copy is (for a whole segment, where the segment was moved to).
    pub copy: PathBuf,
}

/// What [`SegmentLog::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files in use after recovery.
    pub segments: usize,
    /// Records recovered.
    pub records: u64,
    /// The highest sequence number recovered (`Seq(0)` if none).
    pub last_seq: Seq,
    /// Damaged tails cut off.
    pub truncated: Vec<Truncation>,
    /// Damaged ranges skipped and copied to the quarantine folder.
    pub quarantined: Vec<Quarantined>,
}

impl RecoveryReport {
    /// Whether recovery found no damage.
    pub fn is_clean(&self) -> bool {
        self.truncated.is_empty() && self.quarantined.is_empty()
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: Box<dyn StorageFile>,
    /// Records written to the file (durable or not): sequence number and offset.
    index: Vec<(Seq, u64)>,
    written_len: u64,
    durable_len: u64,
    /// Whether the file's directory entry is durable.
    entry_durable: bool,
}

/// A segment file found at open (pass 1), with what its header said.
struct Found {
    base: Seq,
    path: PathBuf,
    check: HeaderCheck,
    len: u64,
    file: Box<dyn StorageFile>,
}

/// An append-only log of records in segment files. See the crate docs for the format and
/// the guarantees.
#[derive(Debug)]
pub struct SegmentLog {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    options: LogOptions,
    /// Never empty; the last one is appended to.
    segments: Vec<Segment>,
    /// Encoded records not yet durable.
    pending_buf: Vec<u8>,
    /// Sequence number and start in `pending_buf` of each record not yet durable.
    pending: Vec<(Seq, usize)>,
    /// How many of `pending` are written to files (but not synced).
    written: usize,
    next_seq: Seq,
    durable_seq: Seq,
    last_sync: Option<Instant>,
    poisoned: Option<String>,
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir`, recovering what is there.
    ///
    /// Damaged data never stops the open: a damaged tail of the last segment is cut, other
    /// damage is copied to `dir/quarantine/` and skipped; both are listed in the report.
    /// Files that are not Corvus segments of this format version are refused
    /// ([`StoreError::Foreign`], [`StoreError::UnsupportedVersion`]) before anything is changed.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<(SegmentLog, RecoveryReport), StoreError> {
        SegmentLog::open_reporting(fs, dir, options, &NoProgress)
    }

    /// [`open`](Self::open), telling `progress` how many bytes of segments it has checked
    /// ([`RecoveryStep::ScanJournal`]).
    pub fn open_reporting(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        options: LogOptions,
        progress: &dyn ProgressSink,
    ) -> Result<(SegmentLog, RecoveryReport), StoreError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir(&dir).ctx(Op::CreateDir, &dir)?;

        // Pass 1: find the segments and check every header before touching anything.
        let mut found: Vec<Found> = Vec::new();
        for entry in fs.list(&dir).ctx(Op::List, &dir)? {
            let name = entry.name.as_deref();
            if entry.is_dir && name == Some(QUARANTINE_DIR) {
                continue;
            }
            if name.is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            let base = match name.and_then(parse_segment_file_name) {
                Some(base) if !entry.is_dir => base,
                _ => {
                    return Err(StoreError::Foreign {
                        path: entry.path,
                        reason: "unexpected entry in a queue directory".into(),
                    })
                }
            };
            let file = fs.open(&entry.path).ctx(Op::Open, &entry.path)?;
            let len = file.len().ctx(Op::Read, &entry.path)?;
            let mut head = vec![0u8; len.min(HEADER_LEN) as usize];
            file.read_at(0, &mut head).ctx(Op::Read, &entry.path)?;
            let check = check_header(&head, base);
            match &check {
                HeaderCheck::Foreign(reason) => {
                    return Err(StoreError::Foreign {
                        path: entry.path,
                        reason: reason.clone(),
                    })
                }
                HeaderCheck::UnsupportedVersion(found) => {
                    return Err(StoreError::UnsupportedVersion {
                        path: entry.path,
                        found: *found,
                        supported: FORMAT_VERSION,
                    })
                }
                _ => {}
            }
            found.push(Found {
                base,
                path: entry.path,
                check,
                len,
                file,
            });
        }
        found.sort_by_key(|f| f.base);

        // Pass 2: scan, cut and quarantine.
        let last_valid = found
            .iter()
            .rposition(|f| matches!(f.check, HeaderCheck::Valid(_)));
        let to_scan: u64 = found
            .iter()
            .filter(|f| matches!(f.check, HeaderCheck::Valid(_)))
            .map(|f| f.len)
            .sum();
        let mut scanned = 0;
        let mut reporter = StepReporter::start(progress, RecoveryStep::ScanJournal, to_scan);
        let mut report = RecoveryReport::default();
        let mut quarantine = Quarantine::new(&*fs, &dir);
        let mut segments = Vec::new();
        let mut prev = Seq(0);
        let mut max_base = Seq(1);
        // The files opened and the lengths read in pass 1 (nothing has changed them since).
        for (i, found) in found.into_iter().enumerate() {
            let Found {
                base,
                path,
                check,
                len,
                mut file,
            } = found;
            max_base = max_base.max(base);
            let is_last = Some(i) == last_valid;
            match check {
                HeaderCheck::Valid(_) => {}
                HeaderCheck::Torn if last_valid.is_none_or(|l| i > l) => {
                    // Torn while being created, after the last good segment: drop it.
                    fs.remove(&path).ctx(Op::Remove, &path)?;
                    report.truncated.push(Truncation {
                        path,
                        offset: 0,
                        len,
                        kind: DamageKind::TornHeader,
                        file_removed: true,
                    });
                    continue;
                }
                other => {
                    let kind = if other == HeaderCheck::Torn {
                        DamageKind::TornHeader
                    } else {
                        DamageKind::CorruptHeader
                    };
                    let copy = quarantine.move_file(&path, kind)?;
                    report.quarantined.push(Quarantined {
                        path,
                        offset: 0,
                        len,
                        kind,
                        copy,
                    });
                    continue;
                }
            }
            let mut bytes = vec![0u8; len as usize];
            file.read_at(0, &mut bytes).ctx(Op::Read, &path)?;
            let scan = scan_records(&bytes, base, prev, is_last);
            for d in &scan.damage {
                let range = &bytes[d.offset as usize..(d.offset + d.len) as usize];
                if d.quarantine {
                    let copy = quarantine.copy_bytes(&path, d.offset, d.kind, range)?;
                    report.quarantined.push(Quarantined {
                        path: path.clone(),
                        offset: d.offset,
                        len: d.len,
                        kind: d.kind,
                        copy,
                    });
                }
                if d.truncate {
                    report.truncated.push(Truncation {
                        path: path.clone(),
                        offset: d.offset,
                        len: d.len,
                        kind: d.kind,
                        file_removed: false,
                    });
                }
            }
            if scan.valid_len < len {
                file.truncate(scan.valid_len).ctx(Op::Truncate, &path)?;
            }
            if is_last {
                // Recovered data may have reached only the OS cache before a process crash.
                file.sync().ctx(Op::Sync, &path)?;
            }
            if let Some(&(last, _)) = scan.records.last() {
                prev = last;
            }
            report.records += scan.records.len() as u64;
            scanned += len;
            reporter.at(scanned);
            segments.push(Segment {
                path,
                file,
                index: scan.records,
                written_len: scan.valid_len,
                durable_len: scan.valid_len,
                entry_durable: true,
            });
        }
        quarantine.finish()?;
        reporter.finish();

        let next_seq = Seq((prev.0 + 1).max(max_base.0));
        if segments.is_empty() {
            let path = dir.join(segment_file_name(next_seq));
            let file = fs.create(&path).ctx(Op::Create, &path)?;
            segments.push(new_segment(path, file));
            let seg = segments.last_mut().expect("just pushed");
            seg.file
                .write_at(0, &encode_header(next_seq))
                .ctx(Op::Write, &seg.path)?;
            seg.written_len = HEADER_LEN;
            seg.file.sync().ctx(Op::Sync, &seg.path)?;
            seg.durable_len = seg.written_len;
            seg.entry_durable = true;
        }
        fs.sync_dir(&dir).ctx(Op::SyncDir, &dir)?;
        report.segments = segments.len();
        report.last_seq = prev;
        let log = SegmentLog {
            fs,
            dir,
            options,
            segments,
            pending_buf: Vec::new(),
            pending: Vec::new(),
            written: 0,
            next_seq,
            durable_seq: prev,
            last_sync: None,
            poisoned: None,
        };
        Ok((log, report))
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    fn check_poisoned(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(reason) => Err(StoreError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends a record to the in-memory batch and returns its sequence number. Nothing is
    /// durable until [`sync`](Self::sync) returns a sequence number at or above it.
    pub fn append(&mut self, payload: &[u8]) -> Result<Seq, StoreError> {
        self.check_poisoned()?;
        if payload.len() > self.options.max_payload as usize {
            return Err(StoreError::PayloadTooLarge {
                len: payload.len(),
                max: self.options.max_payload,
            });
        }
        let seq = self.next_seq;
        self.pending.push((seq, self.pending_buf.len()));
        encode_record(&mut self.pending_buf, seq, payload);
        self.next_seq = Seq(seq.0 + 1);
        Ok(seq)
    }

    /// Writes the batch to the segment files and fsyncs them: one write and one fsync per
    /// segment touched, however many records the batch holds (group commit). Returns the
    /// highest durable sequence number.
    ///
    /// On error nothing of the batch counts as durable: the files are cut back to their last
    /// durable length and the batch is kept, to be written again by the next call. If the
    /// cut itself fails the log refuses further writes ([`StoreError::Poisoned`]).
    pub fn sync(&mut self) -> Result<Seq, StoreError> {
        self.check_poisoned()?;
        let needs_sync = self.segments.iter().any(|s| s.written_len > s.durable_len);
        if self.pending.is_empty() && !needs_sync {
            return Ok(self.durable_seq);
        }
        if let Err(e) = self.write_pending().and_then(|()| self.sync_written()) {
            self.rollback(&e);
            return Err(e);
        }
        for seg in &mut self.segments {
            seg.durable_len = seg.written_len;
            seg.entry_durable = true;
        }
        if let Some(&(last, _)) = self.pending.last() {
            self.durable_seq = last;
        }
        self.pending.clear();
        self.pending_buf.clear();
        self.pending_buf.shrink_to(RETAINED_BATCH_CAPACITY);
        self.pending.shrink_to(RETAINED_BATCH_CAPACITY / 64);
        self.written = 0;
        Ok(self.durable_seq)
    }

    /// Writes the batch to the segment files without fsync (it reaches the OS, not
    /// necessarily the disk). Same error handling as [`sync`](Self::sync). Once more than
    /// [`MAX_UNSYNCED_BYTES`] are written but unsynced, syncs instead.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending_buf.len() > MAX_UNSYNCED_BYTES {
            return self.sync().map(|_| ());
        }
        self.check_poisoned()?;
        if let Err(e) = self.write_pending() {
            self.rollback(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Applies the sync policy at time `now` (the log reads no clock): syncs if the policy
    /// says so and returns the durable sequence number, otherwise writes the batch to the OS
    /// and returns `None`.
    pub fn poll_sync(&mut self, now: Instant) -> Result<Option<Seq>, StoreError> {
        let due = match self.options.sync_policy {
            SyncPolicy::Always => true,
            SyncPolicy::Interval(every) => self
                .last_sync
                .is_none_or(|t| now.saturating_duration_since(t) >= every),
            SyncPolicy::Never => false,
        };
        if due {
            let seq = self.sync()?;
            self.last_sync = Some(now);
            Ok(Some(seq))
        } else {
            self.flush()?;
            Ok(None)
        }
    }

    /// Syncs and closes the log.
    pub fn close(mut self) -> Result<Seq, StoreError> {
        self.sync()
    }

    fn pending_range(&self, i: usize) -> (usize, usize) {
        let start = self.pending[i].1;
        let end = self
            .pending
            .get(i + 1)
            .map_or(self.pending_buf.len(), |p| p.1);
        (start, end)
    }

    fn write_pending(&mut self) -> Result<(), StoreError> {
        let n = self.pending.len();
        while self.written < n {
            let seg = self.segments.last_mut().expect("never empty");
            let first = self.written;
            let mut size = seg.written_len;
            let mut j = first;
            let mut index = Vec::new();
            while j < n {
                let start = self.pending[j].1;
                let end = self
                    .pending
                    .get(j + 1)
                    .map_or(self.pending_buf.len(), |p| p.1);
                let len = (end - start) as u64;
                if size + len > self.options.segment_size && size > HEADER_LEN {
                    break;
                }
                index.push((self.pending[j].0, size));
                size += len;
                j += 1;
            }
            if j > first {
                let (start, _) = self.pending_range(first);
                let (_, end) = self.pending_range(j - 1);
                let seg = self.segments.last_mut().expect("never empty");
                seg.file
                    .write_at(seg.written_len, &self.pending_buf[start..end])
                    .ctx(Op::Write, &seg.path)?;
                seg.written_len = size;
                seg.index.extend(index);
                self.written = j;
            }
            if self.written < n {
                // Roll over: finish this segment durably before starting the next one, so
                // only the last segment can ever have a torn tail.
                let seg = self.segments.last_mut().expect("never empty");
                seg.file.sync().ctx(Op::Sync, &seg.path)?;
                let base = self.pending[self.written].0;
                let path = self.dir.join(segment_file_name(base));
                let file = self.fs.create(&path).ctx(Op::Create, &path)?;
                // Tracked before the header is written, so a rollback removes it.
                self.segments.push(new_segment(path, file));
                let seg = self.segments.last_mut().expect("just pushed");
                seg.file
                    .write_at(0, &encode_header(base))
                    .ctx(Op::Write, &seg.path)?;
                seg.written_len = HEADER_LEN;
            }
        }
        Ok(())
    }

    fn sync_written(&mut self) -> Result<(), StoreError> {
        let mut new_entries = false;
        for seg in &mut self.segments {
            if seg.written_len > seg.durable_len || !seg.entry_durable {
                seg.file.sync().ctx(Op::Sync, &seg.path)?;
            }
            new_entries |= !seg.entry_durable;
        }
        if new_entries {
            self.fs.sync_dir(&self.dir).ctx(Op::SyncDir, &self.dir)?;
        }
        Ok(())
    }

    /// Undoes everything since the last durable state, so the batch can be written again.
    fn rollback(&mut self, cause: &StoreError) {
        let mut failure = None;
        while self.segments.len() > 1 && !self.segments.last().expect("non-empty").entry_durable {
            let seg = self.segments.pop().expect("non-empty");
            drop(seg.file);
            if let Err(e) = self.fs.remove(&seg.path) {
                failure = Some(StoreError::io(Op::Remove, &seg.path, e));
            }
        }
        let seg = self.segments.last_mut().expect("never empty");
        // Cut even when the lengths agree: a failed write may have left bytes past them.
        // The sync is best effort: if the cut is lost, the failed records may come back
        // after a crash, intact (checksums) but never reported durable.
        if let Err(e) = seg.file.truncate(seg.durable_len) {
            failure = Some(StoreError::io(Op::Truncate, &seg.path, e));
        } else {
            let _ = seg.file.sync();
        }
        let durable_len = seg.durable_len;
        seg.index.retain(|&(_, off)| off < durable_len);
        seg.written_len = durable_len;
        self.written = 0;
        if let Some(f) = failure {
            self.poisoned = Some(format!("{cause}; then, undoing it: {f}"));
        }
    }

    /// The highest sequence number known durable (`Seq(0)` if none).
    pub fn durable_seq(&self) -> Seq {
        self.durable_seq
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// Records in the log, durable or not.
    pub fn len(&self) -> u64 {
        let written: usize = self.segments.iter().map(|s| s.index.len()).sum();
        (written + self.pending.len() - self.written) as u64
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in segment files, headers included, plus the batch not yet written.
    pub fn bytes(&self) -> u64 {
        let on_disk: u64 = self.segments.iter().map(|s| s.written_len).sum();
        let unwritten = match self.pending.get(self.written) {
            Some(&(_, start)) => (self.pending_buf.len() - start) as u64,
            None => 0,
        };
        on_disk + unwritten
    }

    /// The number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The first and last sequence numbers of the records written to each segment file,
    /// oldest first (`None` for a segment with no records written yet). Records still in the
    /// unwritten batch are not counted.
    pub fn segment_ranges(&self) -> Vec<Option<(Seq, Seq)>> {
        self.segments
            .iter()
            .map(|s| Some((s.index.first()?.0, s.index.last()?.0)))
            .collect()
    }

    /// Removes the segment files whose records all have sequence numbers below `upto`,
    /// oldest first. The segment being appended to is never removed. Returns how many files
    /// were removed.
    pub fn truncate_front(&mut self, upto: Seq) -> Result<usize, StoreError> {
        self.check_poisoned()?;
        let mut removed = 0;
        // The segment a failed sync would cut back to (the last one whose directory entry is
        // durable) must stay.
        let keep_from = self
            .segments
            .iter()
            .rposition(|s| s.entry_durable)
            .unwrap_or(0)
            .min(self.segments.len() - 1);
        while removed < keep_from {
            let seg = &self.segments[0];
            if seg.index.last().is_some_and(|&(last, _)| last >= upto) {
                break;
            }
            self.fs.remove(&seg.path).ctx(Op::Remove, &seg.path)?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            self.fs.sync_dir(&self.dir).ctx(Op::SyncDir, &self.dir)?;
        }
        Ok(removed)
    }

    /// Reads the record numbered `seq`, wherever it is: in the batch not yet written, in a
    /// segment file but not synced, or durable. `None` if the log holds no such record (never
    /// appended, removed with its segment, or skipped as damaged by recovery). The record is
    /// checked (sequence number and checksum) as [`read_from`](Self::read_from) checks it.
    pub fn read_seq(&self, seq: Seq) -> Result<Option<Vec<u8>>, StoreError> {
        if seq >= self.next_seq {
            return Ok(None);
        }
        if let Some(payload) = self.read_unwritten(seq)? {
            return Ok(Some(payload));
        }
        let Some(seg) = self.segments.get(self.segment_reaching(seq)) else {
            return Ok(None);
        };
        match seg.index.binary_search_by_key(&seq, |&(s, _)| s) {
            Ok(at) => seg.read_record(seq, seg.index[at].1).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// A record of the batch that is not yet written to a segment file (those written are
    /// read back from the file, like durable ones).
    fn read_unwritten(&self, seq: Seq) -> Result<Option<Vec<u8>>, StoreError> {
        let unwritten = &self.pending[self.written..];
        let Ok(at) = unwritten.binary_search_by_key(&seq, |&(s, _)| s) else {
            return Ok(None);
        };
        let (start, end) = self.pending_range(self.written + at);
        let payload = verify_record(&self.pending_buf[start..end], seq).map_err(|what| {
            let seg = self.segments.last().expect("never empty");
            StoreError::Corrupt {
                path: seg.path.clone(),
                offset: seg.written_len,
                what: format!("record {seq} in the unwritten batch: {what}"),
            }
        })?;
        Ok(Some(payload.to_vec()))
    }

    /// The first segment holding a record numbered `seq` or above (`segments.len()` if
    /// none). Segments with no records (every one of them skipped as damaged by recovery)
    /// can sit anywhere, so this looks at each rather than searching by halves.
    fn segment_reaching(&self, seq: Seq) -> usize {
        self.segments
            .iter()
            .position(|s| s.index.last().is_some_and(|&(last, _)| last >= seq))
            .unwrap_or(self.segments.len())
    }

    /// Reads the durable records with sequence numbers at or above `from`, in order.
    pub fn read_from(&self, from: Seq) -> ReadIter<'_> {
        let seg = self.segment_reaching(from);
        let pos = self
            .segments
            .get(seg)
            .map_or(0, |s| s.index.partition_point(|&(seq, _)| seq < from));
        ReadIter {
            log: self,
            seg,
            pos,
            upto: self.durable_seq,
            done: false,
        }
    }
}

/// Iterator over durable records, from [`SegmentLog::read_from`].
#[derive(Debug)]
pub struct ReadIter<'a> {
    log: &'a SegmentLog,
    seg: usize,
    pos: usize,
    upto: Seq,
    done: bool,
}

impl Segment {
    /// Reads the record numbered `seq` at `off` from the file, checked as [`verify_record`]
    /// does: the file may have changed underneath since the record was indexed.
    fn read_record(&self, seq: Seq, off: u64) -> Result<Vec<u8>, StoreError> {
        let mut head = [0u8; RECORD_HEADER_LEN as usize];
        self.file
            .read_at(off, &mut head)
            .ctx(Op::Read, &self.path)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let corrupt = |what: &str| StoreError::Corrupt {
            path: self.path.clone(),
            offset: off,
            what: what.to_owned(),
        };
        if len > FORMAT_MAX_PAYLOAD || off + segment::record_len(len as usize) > self.written_len {
            return Err(corrupt("record length changed since recovery"));
        }
        let mut rec = vec![0u8; segment::record_len(len as usize) as usize];
        self.file.read_at(off, &mut rec).ctx(Op::Read, &self.path)?;
        verify_record(&rec, seq).map_err(corrupt)?;
        rec.drain(..RECORD_HEADER_LEN as usize);
        Ok(rec)
    }
}

/// Checks that `rec` is one whole record numbered `seq` with an intact checksum and returns
/// its payload; otherwise says what is wrong. Every read of a record goes through here,
/// whether it comes from a file or from the batch not yet written.
fn verify_record(rec: &[u8], seq: Seq) -> Result<&[u8], &'static str> {
    match decode_record(rec) {
        Some((s, payload)) if s == seq => Ok(payload),
        Some(_) => Err("sequence number changed since recovery"),
        None => Err("checksum mismatch"),
    }
}

impl Iterator for ReadIter<'_> {
    type Item = Result<(Seq, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let seg = self.log.segments.get(self.seg)?;
            let Some(&(seq, off)) = seg.index.get(self.pos) else {
                self.seg += 1;
                self.pos = 0;
                continue;
            };
            if seq > self.upto {
                self.done = true;
                return None;
            }
            self.pos += 1;
            let item = seg.read_record(seq, off).map(|payload| (seq, payload));
            self.done = item.is_err();
            return Some(item);
        }
    }
}

fn new_segment(path: PathBuf, file: Box<dyn StorageFile>) -> Segment {
    Segment {
        path,
        file,
        index: Vec::new(),
        written_len: 0,
        durable_len: 0,
        entry_durable: false,
    }
}

/// Copies damaged bytes to `dir/quarantine/`.
struct Quarantine<'a> {
    fs: &'a dyn FileSystem,
    dir: PathBuf,
    parent: &'a Path,
    used: bool,
}

impl<'a> Quarantine<'a> {
    fn new(fs: &'a dyn FileSystem, parent: &'a Path) -> Self {
        Quarantine {
            fs,
            dir: parent.join(QUARANTINE_DIR),
            parent,
            used: false,
        }
    }

    fn target(
        &mut self,
        source: &Path,
        offset: u64,
        kind: DamageKind,
    ) -> Result<PathBuf, StoreError> {
        if !self.used {
            self.fs
                .create_dir(&self.dir)
                .ctx(Op::CreateDir, &self.dir)?;
            self.used = true;
        }
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        Ok(self.dir.join(format!("{name}@{offset:020}.{kind}")))
    }

    fn copy_bytes(
        &mut self,
        source: &Path,
        offset: u64,
        kind: DamageKind,
        bytes: &[u8],
    ) -> Result<PathBuf, StoreError> {
        let target = self.target(source, offset, kind)?;
        let tmp = target.with_extension("tmp");
        if self.fs.exists(&tmp).ctx(Op::Open, &tmp)? {
            self.fs.remove(&tmp).ctx(Op::Remove, &tmp)?;
        }
        let mut file = self.fs.create(&tmp).ctx(Op::Create, &tmp)?;
        file.write_at(0, bytes).ctx(Op::Write, &tmp)?;
        file.sync().ctx(Op::Sync, &tmp)?;
        drop(file);
        self.fs.rename(&tmp, &target).ctx(Op::Rename, &tmp)?;
        Ok(target)
    }

    fn move_file(&mut self, source: &Path, kind: DamageKind) -> Result<PathBuf, StoreError> {
        let target = self.target(source, 0, kind)?;
        self.fs.rename(source, &target).ctx(Op::Rename, source)?;
        Ok(target)
    }

    fn finish(self) -> Result<(), StoreError> {
        if self.used {
            self.fs.sync_dir(&self.dir).ctx(Op::SyncDir, &self.dir)?;
            self.fs
                .sync_dir(self.parent)
                .ctx(Op::SyncDir, self.parent)?;
        }
        Ok(())
    }
}
