//! The segment file format: encoding, and the recovery scan that classifies a segment's bytes.
//!
//! The scan is a pure function over bytes so it can be fed anything; it never panics.

use std::fmt;

/// The magic at the start of every segment.
pub const MAGIC: &[u8; 8] = b"CORVUSQ1";
/// The segment format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The length of a segment header.
pub const HEADER_LEN: u64 = 32;
/// The length of a record header: `[len u32][crc32 u32][seq u64]`.
pub const RECORD_HEADER_LEN: u64 = 16;
/// The largest payload length the format admits; a larger length field is damage.
pub const FORMAT_MAX_PAYLOAD: u32 = 256 * 1024 * 1024;
/// The extension of segment files.
pub const SEGMENT_EXT: &str = "seg";

/// A record's sequence number. Sequence numbers start at 1 and increase by one per append;
/// `Seq(0)` means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The file name of the segment whose first sequence number is `base`.
pub fn segment_file_name(base: Seq) -> String {
    format!("{:020}.{SEGMENT_EXT}", base.0)
}

/// Parses a segment file name back into its base sequence number.
pub fn parse_segment_file_name(name: &str) -> Option<Seq> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(Seq)
}

/// Encodes a segment header.
pub fn encode_header(base: Seq) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 12..16 flags, 24..28 reserved: zero.
    h[16..24].copy_from_slice(&base.0.to_le_bytes());
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record_crc(seq: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(seq);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends an encoded record to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: Seq, payload: &[u8]) {
    let seq_bytes = seq.0.to_le_bytes();
    let len = u32::try_from(payload.len()).expect("payload length checked by the caller");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(&seq_bytes, payload).to_le_bytes());
    out.extend_from_slice(&seq_bytes);
    out.extend_from_slice(payload);
}

/// The encoded length of a record with a payload of `len` bytes.
pub fn record_len(len: usize) -> u64 {
    RECORD_HEADER_LEN + len as u64
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes and checks the record at the start of `bytes`. Returns `(seq, payload range
/// end)` if the record is complete and its checksum matches.
pub fn decode_record(bytes: &[u8]) -> Option<(Seq, &[u8])> {
    if bytes.len() < RECORD_HEADER_LEN as usize {
        return None;
    }
    let len = u32_at(bytes, 0);
    if len > FORMAT_MAX_PAYLOAD {
        return None;
    }
    let end = RECORD_HEADER_LEN as usize + len as usize;
    if bytes.len() < end {
        return None;
    }
    let payload = &bytes[RECORD_HEADER_LEN as usize..end];
    if record_crc(&bytes[8..16], payload) != u32_at(bytes, 4) {
        return None;
    }
    Some((Seq(u64_at(bytes, 8)), payload))
}

/// What the header of a segment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A valid header with this base sequence number.
    Valid(Seq),
    /// Not our magic: the file was written by something else.
    Foreign(String),
    /// A valid header of another format version.
    UnsupportedVersion(u32),
    /// Shorter than a header but a prefix of ours: a segment torn while being created.
    Torn,
    /// Our magic but a checksum mismatch, or a base that disagrees with the file name.
    Corrupt(String),
}

/// Checks a segment header. `expected_base` comes from the file name.
pub fn check_header(bytes: &[u8], expected_base: Seq) -> HeaderCheck {
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return HeaderCheck::Foreign(format!(
            "expected magic \"CORVUSQ1\", found {:?}",
            String::from_utf8_lossy(&bytes[..n])
        ));
    }
    if bytes.len() < HEADER_LEN as usize {
        return HeaderCheck::Torn;
    }
    let h = &bytes[..HEADER_LEN as usize];
    if crc32fast::hash(&h[0..28]) != u32_at(h, 28) {
        return HeaderCheck::Corrupt("header checksum mismatch".into());
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return HeaderCheck::UnsupportedVersion(version);
    }
    let base = Seq(u64_at(h, 16));
    if base != expected_base {
        return HeaderCheck::Corrupt(format!(
            "header base sequence {base} disagrees with the file name ({expected_base})"
        ));
    }
    HeaderCheck::Valid(base)
}

/// The kind of damage recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The segment header was cut short (a crash while creating the segment).
    TornHeader,
    /// The segment header's checksum does not match.
    CorruptHeader,
    /// A record is cut short by the end of the file (a crash while writing it).
    TornRecord,
    /// A complete record whose checksum does not match.
    ChecksumMismatch,
    /// A record length that cannot be right; the records after it cannot be framed.
    BadLength,
    /// A record whose checksum matches but whose sequence number is not above the previous
    /// record's.
    OutOfOrder,
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DamageKind::TornHeader => "torn-header",
            DamageKind::CorruptHeader => "corrupt-header",
            DamageKind::TornRecord => "torn-record",
            DamageKind::ChecksumMismatch => "checksum-mismatch",
            DamageKind::BadLength => "bad-length",
            DamageKind::OutOfOrder => "out-of-order",
        })
    }
}

/// A damaged byte range found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where it starts.
    pub offset: u64,
    /// How long it is.
    pub len: u64,
    /// What it is.
    pub kind: DamageKind,
    /// Whether the range runs to the end of the file and the file is cut there (only in the
    /// last segment, which is appended to).
    pub truncate: bool,
    /// Whether the bytes should be copied to quarantine (complete records and ranges that are
    /// skipped; a torn tail from a crash is only cut).
    pub quarantine: bool,
}

/// The result of scanning a segment's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The valid records: sequence number and offset.
    pub records: Vec<(Seq, u64)>,
    /// The damage found, in file order.
    pub damage: Vec<Damage>,
    /// The length the file should have: shorter than the input if the tail is cut.
    pub valid_len: u64,
}

/// Where the next record after damage at `from` starts, in a segment whose framing was lost
/// (a damaged length): the first offset holding a complete record whose checksum matches and
/// whose sequence number follows `prev`. A random match needs a 32-bit checksum and a
/// plausible length and sequence number to agree; the cheap checks come first.
fn resync(bytes: &[u8], from: usize, prev: Seq) -> Option<usize> {
    let header = RECORD_HEADER_LEN as usize;
    (from + 1..bytes.len().saturating_sub(header - 1)).find(|&at| {
        let rest = &bytes[at..];
        let len = u32_at(rest, 0) as usize;
        let seq = u64_at(rest, 8);
        // No more records can follow `prev` than there are bytes left for them.
        let most = prev.0.saturating_add((rest.len() / header) as u64 + 1);
        len <= rest.len() - header
            && seq > prev.0
            && seq <= most
            && decode_record(rest).is_some_and(|(s, _)| s.0 == seq)
    })
}

/// Scans the records of a segment whose header is valid. `prev` is the highest sequence
/// number accepted so far (records at or below it are out of order); `is_last` says whether
/// this is the segment being appended to, whose damaged tail is cut rather than skipped.
///
/// A damaged length loses the framing. In an older segment (sealed: it was synced whole
/// before the next one was started, so damage there is corruption, not a torn write) the
/// scan looks for the next record that checks out and carries on from it: only the damaged
/// range is skipped. In the last segment it cuts there: after a power cut, records past a
/// torn write may be later ones of the same unsynced batch without the earlier ones, and
/// the journal's rule is that a crash keeps a prefix (a QoS 2 packet id must not outlive the
/// message body written before it).
pub fn scan_records(bytes: &[u8], base: Seq, prev: Seq, is_last: bool) -> Scan {
    let end = bytes.len();
    let mut scan = Scan {
        valid_len: end as u64,
        ..Scan::default()
    };
    let mut prev = prev;
    let mut off = HEADER_LEN as usize;
    // Damage that runs to the end of the file.
    let tail = |scan: &mut Scan, off: usize, kind: DamageKind, copy: bool| {
        scan.damage.push(Damage {
            offset: off as u64,
            len: (end - off) as u64,
            kind,
            truncate: is_last,
            quarantine: copy || !is_last,
        });
        if is_last {
            scan.valid_len = off as u64;
        }
    };
    while off < end {
        let rest = &bytes[off..];
        if rest.len() < RECORD_HEADER_LEN as usize {
            tail(&mut scan, off, DamageKind::TornRecord, false);
            break;
        }
        let len = u32_at(rest, 0);
        let lost_framing = |scan: &mut Scan| -> Option<usize> {
            let next = if is_last {
                None
            } else {
                resync(bytes, off, prev)
            };
            match next {
                Some(next) => scan.damage.push(Damage {
                    offset: off as u64,
                    len: (next - off) as u64,
                    kind: DamageKind::BadLength,
                    truncate: false,
                    quarantine: true,
                }),
                None => tail(scan, off, DamageKind::BadLength, true),
            }
            next
        };
        if len > FORMAT_MAX_PAYLOAD {
            match lost_framing(&mut scan) {
                Some(next) => {
                    off = next;
                    continue;
                }
                None => break,
            }
        }
        let rec_end = off + RECORD_HEADER_LEN as usize + len as usize;
        if rec_end > end {
            // In the last segment, a write torn by a crash; in an older one, a damaged length.
            if is_last {
                tail(&mut scan, off, DamageKind::TornRecord, false);
                break;
            }
            match lost_framing(&mut scan) {
                Some(next) => {
                    off = next;
                    continue;
                }
                None => break,
            }
        }
        match decode_record(rest) {
            Some((seq, _)) if seq > prev && seq >= base => {
                scan.records.push((seq, off as u64));
                prev = seq;
            }
            Some(_) => scan.damage.push(Damage {
                offset: off as u64,
                len: (rec_end - off) as u64,
                kind: DamageKind::OutOfOrder,
                truncate: false,
                quarantine: true,
            }),
            None if rec_end == end => {
                tail(&mut scan, off, DamageKind::ChecksumMismatch, true);
                break;
            }
            None if decode_record(&bytes[rec_end..]).is_some() => {
                // The length framing holds: the next record checks out. Skip this one.
                scan.damage.push(Damage {
                    offset: off as u64,
                    len: (rec_end - off) as u64,
                    kind: DamageKind::ChecksumMismatch,
                    truncate: false,
                    quarantine: true,
                });
            }
            None => {
                // The next record does not start where this one's length says.
                match lost_framing(&mut scan) {
                    Some(next) => {
                        off = next;
                        continue;
                    }
                    None => break,
                }
            }
        }
        off = rec_end;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(base: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = encode_header(Seq(base)).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut b, Seq(base + i as u64), p);
        }
        b
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(Seq(42)), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(Seq(42))
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
    }

    #[test]
    fn header_checks() {
        let h = encode_header(Seq(7));
        assert_eq!(check_header(&h, Seq(7)), HeaderCheck::Valid(Seq(7)));
        assert!(matches!(check_header(&h, Seq(8)), HeaderCheck::Corrupt(_)));
        assert_eq!(check_header(&h[..5], Seq(7)), HeaderCheck::Torn);
        assert_eq!(check_header(&[], Seq(7)), HeaderCheck::Torn);
        assert!(matches!(
            check_header(b"SQLite format 3\0", Seq(7)),
            HeaderCheck::Foreign(_)
        ));
        let mut v2 = h;
        v2[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&v2[0..28]);
        v2[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            check_header(&v2, Seq(7)),
            HeaderCheck::UnsupportedVersion(2)
        );
        let mut flipped = h;
        flipped[20] ^= 1;
        assert!(matches!(
            check_header(&flipped, Seq(7)),
            HeaderCheck::Corrupt(_)
        ));
    }

    #[test]
    fn clean_scan() {
        let b = segment(1, &[b"a", b"", b"ccc"]);
        let s = scan_records(&b, Seq(1), Seq(0), true);
        assert!(s.damage.is_empty());
        assert_eq!(
            s.records.iter().map(|r| r.0 .0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(s.valid_len, b.len() as u64);
    }

    #[test]
    fn middle_flip_is_skipped_when_framing_holds() {
        let mut b = segment(1, &[b"aaaa", b"bbbb", b"cccc"]);
        let second = (HEADER_LEN + record_len(4)) as usize;
        b[second + 17] ^= 0x40;
        let s = scan_records(&b, Seq(1), Seq(0), false);
        assert_eq!(
            s.records.iter().map(|r| r.0 .0).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(s.damage.len(), 1);
        assert_eq!(s.damage[0].kind, DamageKind::ChecksumMismatch);
        assert_eq!(s.damage[0].offset, second as u64);
    }

    #[test]
    fn broken_length_in_an_old_segment_skips_only_the_damaged_record() {
        let mut b = segment(1, &[b"aaaa", b"bbbb", b"cccc", b"dddd"]);
        let second = (HEADER_LEN + record_len(4)) as usize;
        for damaged in [2u8, 0xFF] {
            // Length 2, or far too long: the framing is lost either way.
            b[second] = damaged;
            b[second + 3] = damaged;
            let s = scan_records(&b, Seq(1), Seq(0), false);
            let seqs: Vec<u64> = s.records.iter().map(|r| r.0 .0).collect();
            assert_eq!(seqs, [1, 3, 4], "length byte {damaged}");
            assert_eq!(s.damage.len(), 1);
            assert_eq!(s.damage[0].kind, DamageKind::BadLength);
            assert_eq!(
                (s.damage[0].offset, s.damage[0].len),
                (second as u64, record_len(4))
            );
            assert!(!s.damage[0].truncate && s.damage[0].quarantine);
            assert_eq!(s.valid_len, b.len() as u64);
        }
    }

    #[test]
    fn broken_length_in_the_last_segment_cuts_there() {
        let mut b = segment(1, &[b"aaaa", b"bbbb", b"cccc"]);
        let second = (HEADER_LEN + record_len(4)) as usize;
        b[second] = 2;
        let s = scan_records(&b, Seq(1), Seq(0), true);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.damage[0].kind, DamageKind::BadLength);
        assert_eq!(s.damage[0].len, b.len() as u64 - second as u64);
        assert!(s.damage[0].truncate);
        assert_eq!(s.valid_len, second as u64);
    }

    proptest! {
        #[test]
        fn scan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                             is_last in any::<bool>(), prev in 0u64..5) {
            let check = check_header(&bytes, Seq(1));
            if matches!(check, HeaderCheck::Valid(_)) {
                let s = scan_records(&bytes, Seq(1), Seq(prev), is_last);
                prop_assert!(s.valid_len <= bytes.len() as u64);
            }
            let mut with_header = encode_header(Seq(1)).to_vec();
            with_header.extend_from_slice(&bytes);
            let s = scan_records(&with_header, Seq(1), Seq(prev), is_last);
            prop_assert!(s.valid_len <= with_header.len() as u64);
            for w in s.records.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
            }
        }
    }
}
