//! The log on the real file system.

use std::path::Path;
use std::sync::Arc;

use corvus_store::fs::OsFileSystem;
use corvus_store::{DamageKind, LogOptions, SegmentLog, Seq, StoreError, SyncPolicy};

fn options() -> LogOptions {
    LogOptions {
        segment_size: 512,
        max_payload: 200,
        sync_policy: SyncPolicy::Always,
    }
}

fn open(dir: &Path) -> (SegmentLog, corvus_store::RecoveryReport) {
    SegmentLog::open(Arc::new(OsFileSystem), dir, options()).expect("open")
}

fn payload(i: u64) -> Vec<u8> {
    format!("payload {i} ")
        .repeat((i % 5) as usize + 1)
        .into_bytes()
}

fn all(log: &SegmentLog) -> Vec<(u64, Vec<u8>)> {
    log.read_from(Seq(1))
        .map(|r| r.map(|(s, p)| (s.0, p)).unwrap())
        .collect()
}

fn expected(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, payload(i))).collect()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_rollover_reopen_and_reclaim() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("queue");
    let (mut log, report) = open(&dir);
    assert!(report.is_clean());
    for i in 1..=100 {
        log.append(&payload(i)).unwrap();
        if i % 10 == 0 {
            assert_eq!(log.sync().unwrap(), Seq(i));
        }
    }
    assert_eq!(all(&log), expected(1..=100));
    log.close().unwrap();
    let files = segments(&dir);
    assert!(files.len() > 3);

    let (mut log, report) = open(&dir);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records, 100);
    assert_eq!(all(&log), expected(1..=100));
    let second: u64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(log.truncate_front(Seq(second)).unwrap(), 1);
    assert!(!files[0].exists());
    assert_eq!(all(&log), expected(second..=100));
}

#[test]
fn torn_tail_at_every_offset_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let (mut log, _) = open(&dir);
    for i in 1..=4 {
        log.append(&payload(i)).unwrap();
    }
    log.close().unwrap();
    let path = segments(&dir).pop().unwrap();
    let full = std::fs::read(&path).unwrap();
    let last_len = 16 + payload(4).len();
    let start = full.len() - last_len;
    for cut in start..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (mut log, report) = open(&dir);
        assert_eq!(all(&log), expected(1..=3), "cut at {cut}");
        assert_eq!(report.truncated.len(), usize::from(cut > start));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), start as u64);
        assert_eq!(log.append(b"again").unwrap(), Seq(4));
        log.close().unwrap();
        let (log, report) = open(&dir);
        assert!(report.is_clean());
        assert_eq!(all(&log).last().unwrap(), &(4, b"again".to_vec()));
    }
}

#[test]
fn flipped_byte_is_quarantined_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    let (mut log, _) = open(&dir);
    for i in 1..=3 {
        log.append(&payload(i)).unwrap();
    }
    log.close().unwrap();
    let path = segments(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let second = 32 + 16 + payload(1).len();
    bytes[second + 18] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    let (log, report) = open(&dir);
    assert_eq!(report.quarantined.len(), 1);
    let q = &report.quarantined[0];
    assert_eq!(q.kind, DamageKind::ChecksumMismatch);
    assert_eq!(q.offset, second as u64);
    assert!(q.copy.exists());
    assert_eq!(
        std::fs::read(&q.copy).unwrap(),
        &bytes[second..second + q.len as usize]
    );
    let got: Vec<u64> = all(&log).into_iter().map(|r| r.0).collect();
    assert_eq!(got, vec![1, 3]);
}

#[test]
fn foreign_directory_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("00000000000000000001.seg"),
        b"PK\x03\x04 a zip file",
    )
    .unwrap();
    let err = SegmentLog::open(Arc::new(OsFileSystem), tmp.path(), options()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(
        err.to_string().contains("not a Corvus queue segment"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[cfg(unix)]
#[test]
fn files_are_0600_and_folders_0700() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a").join("queue");
    let (mut log, _) = open(&dir);
    for i in 1..=30 {
        log.append(&payload(i)).unwrap();
    }
    log.close().unwrap();
    // Damage a record so a quarantine folder and file are created too.
    let first = segments(&dir)[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[32 + 20] ^= 1;
    std::fs::write(&first, &bytes).unwrap();
    let (_log, report) = open(&dir);
    assert_eq!(report.quarantined.len(), 1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for p in [tmp.path().join("a"), dir.clone(), dir.join("quarantine")] {
        assert_eq!(mode(&p), 0o700, "{}", p.display());
    }
    for p in segments(&dir)
        .iter()
        .skip(1)
        .chain([&report.quarantined[0].copy])
    {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
}
