//! Torn writes and corruption in a data directory, through the real `corvus` binary.
//!
//! Each test fills a fresh data directory through MQTT: 50 retained messages on `r/<i>` and
//! 500 QoS 1 messages `q/<i>` queued for an offline persistent subscriber `sub` (all
//! acknowledged, so durable with the default `sync = always`), stops the broker (SIGKILL for
//! the torn-tail cases, SIGTERM otherwise), damages the files the way a crash, a bad disk or
//! a stray program would, and starts the broker again on the same directory. What is shown:
//!
//! - a queue segment cut at random offsets: the broker starts, reports the cut tail (unless
//!   the cut fell on a record boundary) and delivers exactly the messages whose records lie
//!   before the cut, in order, none twice; the retained messages are all served;
//! - random bytes flipped in one record in the middle of the segment: the broker starts,
//!   reports the damaged record, never delivers the damaged message and delivers the intact
//!   ones in order (all of them, unless the flip hit a length field of the segment being
//!   appended to: then framing is lost and the tail from the damaged record on is cut, as
//!   docs/storage-format.md says);
//!   `corvus store check` reports the damage before the restart;
//! - garbage appended to the segment: cut and reported, all 500 messages delivered;
//! - `state.redb` overwritten, cut to half or with flipped bytes: the broker never refuses to
//!   start, reports the quarantine of the database (or of records) whenever data is missing,
//!   serves only intact data, and a fresh publish/subscribe round trip works; when the whole
//!   database is quarantined, the subscriber's queue (intact in the journal) is kept, in a
//!   session rebuilt for it, and all its messages are delivered;
//! - a foreign file in `queue/`: the broker refuses to start, names the file, and leaves it
//!   (and the segments) untouched.
//!
//! The oracle for the queue cases is an independent parse of the undamaged segment's framing
//! (records mapped to messages with `corvus_store::journal::Record::decode`), not the store's
//! own recovery code. Random offsets come from a seeded xorshift generator, so every run
//! damages the same bytes. Every wait is bounded, processes are killed on drop, and the
//! temporary directories are removed.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corvus_store::journal::Record;
use mqtt_codec::{
    Ack, Disconnect, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions,
};
use support::mqtt::{s, Client};
use support::{last_segment, Output, Proc, Rng};

/// Retained messages written by the setup.
const RETAINED: usize = 50;
/// Messages queued for the offline subscriber by the setup.
const QUEUED: usize = 500;
/// How long the broker has to start (or to refuse to).
const START: Duration = Duration::from_secs(30);
/// How long a client waits for one packet it expects.
const WAIT: Duration = Duration::from_secs(10);
/// How long a client waits to be sure nothing more comes.
const QUIET: Duration = Duration::from_millis(700);
/// How long a stopped broker has to exit.
const STOP: Duration = Duration::from_secs(15);
/// The subscriber's Session Expiry Interval: never.
const NEVER: u32 = u32::MAX;

// ---- the broker process ----

fn payload_of_queued(i: usize) -> Vec<u8> {
    // Long enough that a record has a payload worth damaging.
    format!("queued message {i:04} ........................................").into_bytes()
}

fn payload_of_retained(i: usize) -> Vec<u8> {
    format!("retained message {i:04}").into_bytes()
}

/// A running `corvus`, killed on drop (through [`Proc`]).
struct Corvus {
    proc: Proc,
    addr: SocketAddr,
    start_line: String,
}

/// Starts `corvus` on `dir` with port 0. Err with everything it printed if it does not say it
/// is listening (it refused to start, or took too long).
fn start(dir: &Path) -> Result<Corvus, Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corvus"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "info",
        "--data-dir",
    ])
    .arg(dir)
    .env_remove("RUST_LOG");
    let mut proc = Proc::spawn("corvus", &mut cmd);
    match proc.wait_line(|l| l.contains("listening for MQTT on"), START) {
        Ok(line) => {
            let addr = line
                .split("listening for MQTT on ")
                .nth(1)
                .and_then(|rest| rest.split(';').next())
                .and_then(|a| a.trim().parse().ok())
                .unwrap_or_else(|| panic!("no address in the start line: {line}"));
            Ok(Corvus {
                proc,
                addr,
                start_line: line,
            })
        }
        Err(_) => Err(proc.finish(STOP)),
    }
}

fn start_ok(dir: &Path, what: &str) -> Corvus {
    start(dir).unwrap_or_else(|out| panic!("{what}: the broker did not start: {out}"))
}

impl Corvus {
    /// Everything printed so far, stdout then stderr.
    fn log(&self) -> String {
        let out = self.proc.output();
        format!("{}{}", out.stdout, out.stderr)
    }

    /// The `recovery: ...` lines logged so far (WARN lines, wherever they were written).
    fn recovery_lines(&self) -> Vec<String> {
        // The log is written by another thread: give a warning logged before the start line
        // a moment to arrive if it went to the other stream.
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            let lines: Vec<String> = self
                .log()
                .lines()
                .filter(|l| l.contains("recovery:"))
                .map(str::to_string)
                .collect();
            if !lines.is_empty() || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the start line says was recovered: (sessions, retained, queued).
    fn recovered(&self) -> (usize, usize, usize) {
        let words: Vec<&str> = self.start_line.split([' ', ',', '(', ';']).collect();
        let before = |what: &str| -> usize {
            let at = words
                .iter()
                .position(|w| *w == what || w.strip_suffix('s') == Some(what))
                .unwrap_or_else(|| panic!("no '{what}' in the start line {}", self.start_line));
            words[at - 1].parse().expect("a count before the word")
        };
        (before("session"), before("retained"), before("queued"))
    }

    /// SIGKILL: no shutdown at all, as in a crash.
    fn crash(mut self) {
        self.proc.kill();
    }

    /// SIGTERM, and waits for a clean exit.
    fn stop(self) -> Output {
        let pid = self.proc.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIGTERM");
        let out = self.proc.finish(STOP);
        assert!(out.success(), "the broker did not shut down cleanly: {out}");
        out
    }
}

// ---- MQTT clients ----

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// Connects with MQTT 5.0; returns the client and whether a session was present.
fn connect(addr: SocketAddr, id: &str, clean_start: bool, expiry: u32) -> (Client, bool) {
    let (client, ack) = Client::connect(addr, ProtocolVersion::V5, id, |c| {
        c.clean_start = clean_start;
        c.properties.session_expiry_interval = (expiry > 0).then_some(expiry);
    });
    assert_eq!(ack.reason_code, ReasonCode::Success, "{id}: {ack:?}");
    (client, ack.session_present)
}

/// What the setup and the checks do with a client.
trait Session {
    /// The next packet within `within`; None on timeout. Panics if the connection closes.
    fn try_recv(&mut self, within: Duration) -> Option<Packet>;
    fn recv(&mut self) -> Packet;
    fn subscribe(&mut self, filter: &str);
    fn publish_all(&mut self, messages: &[(String, Vec<u8>)], retain: bool);
    fn collect(&mut self, expected: usize) -> Vec<(String, Vec<u8>)>;
    fn disconnect(self);
}

impl Session for Client {
    fn try_recv(&mut self, within: Duration) -> Option<Packet> {
        match self.next_within(within) {
            Ok(Some(packet)) => Some(packet),
            Ok(None) => panic!("the broker closed the connection"),
            Err(_) => None,
        }
    }

    fn recv(&mut self) -> Packet {
        self.try_recv(WAIT)
            .unwrap_or_else(|| panic!("no packet from the broker within {WAIT:?}"))
    }

    fn subscribe(&mut self, filter: &str) {
        let subscribe = Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: s(filter),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            }],
        };
        self.send(subscribe.into());
        // Retained messages may come right after the SUBACK: keep them for `collect`.
        match self.recv() {
            Packet::SubAck(ack) => assert_eq!(ack.reason_codes, vec![ReasonCode::GrantedQoS1]),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes QoS 1 messages, `window` at a time, and checks every PUBACK.
    fn publish_all(&mut self, messages: &[(String, Vec<u8>)], retain: bool) {
        const WINDOW: usize = 25;
        for (n, chunk) in messages.chunks(WINDOW).enumerate() {
            for (k, (topic, payload)) in chunk.iter().enumerate() {
                let mut publish = Publish::new(s(topic), Bytes::copy_from_slice(payload));
                publish.qos = QoS::AtLeastOnce;
                publish.retain = retain;
                publish.packet_id = Some(pid((n * WINDOW + k) as u16 % 60000 + 1));
                self.send(publish.into());
            }
            for _ in chunk {
                match self.recv() {
                    Packet::PubAck(ack) => {
                        assert!(ack.reason_code.is_success(), "PUBACK {:?}", ack.reason_code)
                    }
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            }
        }
    }

    /// Receives PUBLISHes (acknowledging them) until `expected` have come and then nothing
    /// for [`QUIET`], or nothing for [`WAIT`]. Returns (topic, payload) in arrival order.
    fn collect(&mut self, expected: usize) -> Vec<(String, Vec<u8>)> {
        let mut got = Vec::new();
        loop {
            let within = if got.len() >= expected { QUIET } else { WAIT };
            match self.try_recv(within) {
                None => return got,
                Some(Packet::Publish(p)) => {
                    if let Some(id) = p.packet_id {
                        self.send(Packet::PubAck(Ack::new(id)));
                    }
                    got.push((p.topic.as_str().to_string(), p.payload.to_vec()));
                }
                Some(other) => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    fn disconnect(mut self) {
        self.send(Disconnect::new(ReasonCode::Success).into());
    }
}

// ---- the data directory ----

/// A temporary directory (removed on drop) with a data directory filled by the setup.
struct Filled {
    _tmp: tempfile::TempDir,
    data: PathBuf,
}

/// Starts a broker on a fresh directory, fills it, and stops it (SIGKILL if `crash`).
fn fill(test: &str, crash: bool) -> Filled {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("corvus-damaged-{test}-"))
        .tempdir()
        .unwrap();
    let data = tmp.path().join("pristine");
    let broker = start_ok(&data, "setup");

    let (sub, _) = connect(broker.addr, "sub", true, NEVER);
    let mut sub = sub;
    sub.subscribe("q/#");
    sub.disconnect();

    let (mut publisher, _) = connect(broker.addr, "publisher", true, 0);
    let retained: Vec<_> = (0..RETAINED)
        .map(|i| (format!("r/{i}"), payload_of_retained(i)))
        .collect();
    publisher.publish_all(&retained, true);
    let queued: Vec<_> = (0..QUEUED)
        .map(|i| (format!("q/{i}"), payload_of_queued(i)))
        .collect();
    publisher.publish_all(&queued, false);
    publisher.disconnect();
    // Every message was acknowledged, so (sync = always) it is on disk already.
    if crash {
        broker.crash();
    } else {
        broker.stop();
    }
    Filled { _tmp: tmp, data }
}

impl Filled {
    /// A fresh copy of the filled data directory, named `name`.
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.data.with_file_name(name);
        copy_dir(&self.data, &to);
        to
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn state_db(data: &Path) -> PathBuf {
    data.join("state").join("state.redb")
}

/// One record of a segment, as framed in the undamaged file.
#[derive(Debug, Clone)]
struct Rec {
    /// Where it starts and ends in the file.
    start: u64,
    end: u64,
    /// The queued message `q/<i>` it belongs to (its body or its delivery to `sub`).
    message: Option<usize>,
}

/// The records of an undamaged segment, framed independently of the store's recovery.
fn records(segment: &[u8]) -> Vec<Rec> {
    const HEADER: usize = corvus_store::segment::HEADER_LEN as usize;
    assert_eq!(&segment[..8], b"CORVUSQ1", "not a segment");
    let mut out = Vec::new();
    let mut ids: HashMap<u64, usize> = HashMap::new();
    let mut off = HEADER;
    while off < segment.len() {
        assert!(
            off + 16 <= segment.len(),
            "torn record in the pristine segment"
        );
        let len = u32::from_le_bytes(segment[off..off + 4].try_into().unwrap()) as usize;
        let end = off + 16 + len;
        assert!(end <= segment.len(), "torn record in the pristine segment");
        let record = Record::decode(&segment[off + 16..end]).expect("decodable record");
        let message = match &record {
            Record::Message { id, message } => {
                let topic = message.topic.as_str();
                let index = topic.strip_prefix("q/").and_then(|i| i.parse().ok());
                if let Some(i) = index {
                    ids.insert(*id, i);
                }
                index
            }
            Record::Enqueue { message, .. } => ids.get(message).copied(),
            _ => None,
        };
        // The subscriber was offline throughout: nothing but bodies and deliveries.
        assert!(
            message.is_some(),
            "unexpected record in the journal: {record:?}"
        );
        out.push(Rec {
            start: off as u64,
            end: end as u64,
            message,
        });
        off = end;
    }
    out
}

// ---- checks after the restart ----

/// Subscribes to `r/#` and returns the retained messages served, after checking each is
/// intact and served once.
fn retained_served(addr: SocketAddr, expected: usize) -> BTreeMap<usize, Vec<u8>> {
    let (mut client, _) = connect(addr, "check-retained", true, 0);
    client.subscribe("r/#");
    let got = client.collect(expected);
    client.disconnect();
    let mut out = BTreeMap::new();
    for (topic, payload) in got {
        let i: usize = topic
            .strip_prefix("r/")
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("unexpected retained topic {topic}"));
        assert!(i < RETAINED, "unexpected retained topic {topic}");
        assert_eq!(
            payload,
            payload_of_retained(i),
            "retained {topic} served with damaged payload"
        );
        assert!(
            out.insert(i, payload).is_none(),
            "retained {topic} served twice"
        );
    }
    out
}

/// Reconnects `sub` and returns the indices of the queued messages it receives, in order,
/// after checking every payload is intact, none comes twice and the order is kept.
fn queued_served(addr: SocketAddr, expected: usize) -> (bool, Vec<usize>) {
    let (mut sub, present) = connect(addr, "sub", false, NEVER);
    let got = sub.collect(expected);
    sub.disconnect();
    let mut out: Vec<usize> = Vec::new();
    for (topic, payload) in got {
        let i: usize = topic
            .strip_prefix("q/")
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("unexpected topic {topic}"));
        assert!(i < QUEUED, "unexpected topic {topic}");
        assert_eq!(
            payload,
            payload_of_queued(i),
            "{topic} served with damaged payload"
        );
        if let Some(&last) = out.last() {
            assert!(
                i > last,
                "q/{i} delivered after q/{last}: out of order or duplicated"
            );
        }
        out.push(i);
    }
    (present, out)
}

/// A fresh publish/subscribe round trip between two new clients.
fn round_trip(addr: SocketAddr) {
    let (mut sub, _) = connect(addr, "fresh-sub", true, 0);
    sub.subscribe("fresh/topic");
    let (mut publisher, _) = connect(addr, "fresh-pub", true, 0);
    publisher.publish_all(&[("fresh/topic".to_string(), b"hello".to_vec())], false);
    let got = sub.collect(1);
    assert_eq!(got, vec![("fresh/topic".to_string(), b"hello".to_vec())]);
    publisher.disconnect();
    sub.disconnect();
}

fn report(case: &str, broker: &Corvus, warnings: &[String]) {
    println!("[{case}] start line: {}", broker.start_line);
    for w in warnings {
        println!("[{case}]   {w}");
    }
    if warnings.is_empty() {
        println!("[{case}]   (no recovery warning)");
    }
}

/// `corvus store check DIR` (`when`: before or after the restart, for the log of `case`):
/// its exit code and output.
fn store_check(dir: &Path, case: &str, when: &str) -> (Option<i32>, Output) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corvus"));
    cmd.env_remove("RUST_LOG").args(["store", "check"]).arg(dir);
    let out = Proc::spawn("corvus store check", &mut cmd).finish(START);
    assert!(!out.timed_out, "store check did not finish: {out}");
    let code = out.code();
    println!("[{case}] store check {when}: exit {code:?}\n{}", out.stdout);
    (code, out)
}

/// Starts the broker on the damaged `data` and prints what it says it recovered; returns it
/// with its recovery warnings.
fn restart_damaged(data: &Path, case: &str) -> (Corvus, Vec<String>) {
    let broker = start_ok(data, case);
    let warnings = broker.recovery_lines();
    report(case, &broker, &warnings);
    (broker, warnings)
}

/// Starts the broker on `data`, whose queue journal was damaged, and checks what every such
/// case must show: the damage is reported (checked when `unreported`, the failure message,
/// is given), all retained messages are served and the subscriber's session is still there.
/// Returns the running broker and the queued messages delivered (awaiting `expected`).
fn restart_after_queue_damage(
    data: &Path,
    case: &str,
    unreported: Option<&str>,
    expected: usize,
) -> (Corvus, Vec<usize>) {
    let (broker, warnings) = restart_damaged(data, case);
    if let Some(complaint) = unreported {
        assert!(
            warnings.iter().any(|w| w.contains("queue journal")),
            "{case}: {complaint}:\n{}",
            broker.log()
        );
    }
    let retained = retained_served(broker.addr, RETAINED);
    assert_eq!(retained.len(), RETAINED, "{case}: retained messages lost");
    let (present, got) = queued_served(broker.addr, expected);
    assert!(present, "{case}: the subscriber's session was lost");
    (broker, got)
}

// ---- the cases ----

/// The last segment cut at random offsets (a torn write, or a disk that lost the tail).
#[test]
fn truncated_queue_segment_serves_the_prefix_before_the_cut() {
    let filled = fill("truncate", true);
    let pristine = std::fs::read(last_segment(&filled.data)).unwrap();
    let recs = records(&pristine);
    let boundaries: Vec<u64> = recs.iter().map(|r| r.start).collect();
    let header = corvus_store::segment::HEADER_LEN;
    let mut cuts: Vec<u64> = (1..=6u64)
        .map(|seed| Rng::new(seed).range(header..pristine.len() as u64))
        .collect();
    // And one exactly on a record boundary: nothing to report there.
    cuts.push(recs[recs.len() / 3].start);
    for (n, cut) in cuts.into_iter().enumerate() {
        let case = format!("truncate@{cut}");
        let data = filled.copy(&format!("cut-{n}"));
        let segment = last_segment(&data);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(cut)
            .unwrap();
        // Messages whose body and delivery both lie before the cut.
        let mut expected: Vec<usize> = (0..QUEUED)
            .filter(|&i| {
                recs.iter()
                    .filter(|r| r.message == Some(i))
                    .all(|r| r.end <= cut)
            })
            .collect();
        expected.sort_unstable();
        assert_eq!(
            expected,
            (0..expected.len()).collect::<Vec<_>>(),
            "the journal is not in publish order"
        );
        let on_boundary = boundaries.contains(&cut);
        if n == 0 {
            // `corvus store check` sees the torn tail, and a clean directory once the broker
            // has cut it.
            let (code, out) = store_check(&data, &case, "before the restart");
            assert_eq!(code, Some(1), "store check misses the torn tail: {out}");
            assert!(out.stdout.contains("torn-record"), "{out}");
        }

        let unreported = (!on_boundary).then_some("the cut tail is not reported");
        let (broker, got) = restart_after_queue_damage(&data, &case, unreported, expected.len());
        println!(
            "[{case}]   delivered q/0..q/{} ({} of {QUEUED})",
            got.len() as isize - 1,
            got.len()
        );
        assert_eq!(
            got,
            expected,
            "{case}: expected exactly the {} messages before the cut\n{}",
            expected.len(),
            broker.log()
        );
        broker.stop();
        if n == 0 {
            let (code, out) = store_check(&data, &case, "after the repair");
            assert_eq!(
                code,
                Some(0),
                "store check after the broker cut the tail: {out}"
            );
        }
        std::fs::remove_dir_all(&data).unwrap();
    }
}

/// Bytes flipped in one record in the middle of the segment (bit rot, a bad sector).
#[test]
fn flipped_bytes_in_a_queue_segment_are_reported_and_the_rest_is_served() {
    let filled = fill("flip", false);
    let pristine = std::fs::read(last_segment(&filled.data)).unwrap();
    let recs = records(&pristine);
    // Seed 7 hits a length field on purpose: framing is lost there.
    for seed in 1..=7u64 {
        let mut rng = Rng::new(seed);
        let data = filled.copy(&format!("flip-{seed}"));
        let segment = last_segment(&data);
        // A record in the middle half, and 1 to 3 of its bytes.
        let r = rng.range(recs.len() as u64 / 4..recs.len() as u64 * 3 / 4) as usize;
        let rec = recs[r].clone();
        let mut bytes = pristine.clone();
        let mut flipped = Vec::new();
        for _ in 0..rng.range(1..4) {
            let at = rng.range(rec.start..rec.end);
            bytes[at as usize] ^= rng.nonzero_byte();
            flipped.push(at);
        }
        if seed == 7 {
            // The length's second byte: the record claims 256 bytes more than it has.
            bytes[rec.start as usize + 1] ^= 1;
            flipped.push(rec.start + 1);
        }
        std::fs::write(&segment, &bytes).unwrap();
        let damaged = rec.message.expect("every record belongs to a message");
        let length_hit = flipped.iter().any(|&at| at < rec.start + 4);
        let case = format!("flip record {r} (q/{damaged}) at {flipped:?}");
        // Without framing (a damaged length), the tail from the record on is cut.
        let must: Vec<usize> = (0..QUEUED)
            .filter(|&i| i != damaged)
            .filter(|&i| {
                !length_hit
                    || recs
                        .iter()
                        .filter(|x| x.message == Some(i))
                        .all(|x| x.end <= rec.start)
            })
            .collect();

        if seed == 1 {
            // `corvus store check` sees the damage before the broker repairs anything.
            let (code, out) = store_check(&data, &case, "before the restart");
            assert_eq!(code, Some(1), "store check misses the damage: {out}");
            assert!(out.stdout.contains(".seg"), "{out}");
            assert_eq!(
                std::fs::read(&segment).unwrap(),
                bytes,
                "store check changed the segment"
            );
        }

        let unreported = Some("the damaged record is not reported");
        let (broker, got) = restart_after_queue_damage(&data, &case, unreported, must.len());
        println!(
            "[{case}]   delivered {} of {QUEUED}; length field hit: {length_hit}",
            got.len()
        );
        assert!(
            !got.contains(&damaged),
            "{case}: the damaged message was delivered"
        );
        let missing: Vec<usize> = must.iter().filter(|i| !got.contains(i)).copied().collect();
        assert!(
            missing.is_empty(),
            "{case}: intact messages lost: {missing:?}\n{}",
            broker.log()
        );
        broker.stop();

        if seed == 1 {
            // The broker copied the record to quarantine/ but, as docs/storage-format.md says,
            // quarantined bytes stay in the segment (here the one appended to, so never
            // reclaimed): `store check` keeps reporting them, and keeps exiting 1.
            let (code, out) = store_check(&data, &case, "after the repair");
            assert_eq!(
                code,
                Some(1),
                "store check after the broker's repair: {out}"
            );
            assert!(out.stdout.contains("1 files in quarantine/"), "{out}");
        }
        std::fs::remove_dir_all(&data).unwrap();
    }
}

/// Garbage after the last record (a write torn in a way that left junk, a stray append).
#[test]
fn garbage_after_the_last_record_is_cut_and_every_message_served() {
    let filled = fill("garbage", true);
    // 7 bytes: shorter than a record header (a torn record); then longer runs.
    for (seed, len) in [(1u64, 7u64), (2, 0), (3, 0)] {
        let mut rng = Rng::new(seed);
        let data = filled.copy(&format!("garbage-{seed}"));
        let segment = last_segment(&data);
        let len = if len > 0 { len } else { rng.range(16..300) } as usize;
        let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&garbage)
            .unwrap();
        let case = format!("garbage {len} bytes");
        let unreported = Some("the cut tail is not reported");
        let (broker, got) = restart_after_queue_damage(&data, &case, unreported, QUEUED);
        assert_eq!(got, (0..QUEUED).collect::<Vec<_>>(), "{case}");
        broker.stop();
        std::fs::remove_dir_all(&data).unwrap();
    }
}

/// A damaged state database: overwritten, cut to half, bytes flipped. The broker starts
/// anyway, says what it lost, serves nothing damaged, and works for new clients.
#[test]
fn damaged_state_database_is_quarantined_and_the_broker_serves() {
    let filled = fill("state", false);
    let pristine = std::fs::read(state_db(&filled.data)).unwrap();
    let mut cases: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut rng = Rng::new(42);
    let garbage: Vec<u8> = (0..pristine.len()).map(|_| rng.next() as u8).collect();
    cases.push(("state.redb overwritten with garbage".into(), garbage, true));
    cases.push((
        "state.redb cut to half".into(),
        pristine[..pristine.len() / 2].to_vec(),
        true,
    ));
    for seed in 1..=4u64 {
        let mut rng = Rng::new(seed);
        let mut bytes = pristine.clone();
        let mut at = Vec::new();
        for _ in 0..8 {
            let i = rng.range(pristine.len() as u64 / 8..pristine.len() as u64) as usize;
            bytes[i] ^= rng.nonzero_byte();
            at.push(i);
        }
        cases.push((format!("state.redb bytes flipped at {at:?}"), bytes, false));
    }
    for (n, (case, bytes, must_quarantine)) in cases.into_iter().enumerate() {
        let data = filled.copy(&format!("state-{n}"));
        std::fs::write(state_db(&data), &bytes).unwrap();
        let (broker, warnings) = restart_damaged(&data, &case);
        let quarantined = warnings
            .iter()
            .any(|w| w.contains("state database") || w.contains("state: undecodable"));
        if must_quarantine {
            assert!(
                warnings.iter().any(|w| w.contains("state database")),
                "{case}: the quarantine is not reported:\n{}",
                broker.log()
            );
            let moved = std::fs::read_dir(data.join("state").join("quarantine"))
                .map(|d| d.count())
                .unwrap_or(0);
            assert!(moved > 0, "{case}: nothing in state/quarantine/");
            // The queue journal is intact: the subscriber's queue is kept, in a session
            // rebuilt for it, and reported.
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("kept for sessions whose records were lost")),
                "{case}: the kept queue is not reported:\n{}",
                broker.log()
            );
            assert_eq!(broker.recovered().2, QUEUED, "{case}: queued messages lost");
        }
        round_trip(broker.addr);
        // What the broker says it recovered is what it serves.
        let (sessions, retained_count, queued_count) = broker.recovered();
        let retained = retained_served(broker.addr, retained_count);
        let (present, got) = queued_served(broker.addr, queued_count);
        assert_eq!(retained.len(), retained_count, "{case}");
        assert_eq!(got.len(), queued_count, "{case}");
        assert_eq!(present, sessions == 1, "{case}: session present");
        println!(
            "[{case}]   retained served: {}; sub session present: {present}; \
             queued delivered: {}",
            retained.len(),
            got.len()
        );
        if retained.len() < RETAINED || got.len() < QUEUED {
            assert!(
                quarantined,
                "{case}: data lost without a report: {} retained, {} queued\n{}",
                retained.len(),
                got.len(),
                broker.log()
            );
        }
        broker.stop();
        std::fs::remove_dir_all(&data).unwrap();
    }
}

/// A file of another program in `queue/`: refused, named, untouched.
#[test]
fn a_foreign_file_in_the_queue_directory_is_refused_and_left_alone() {
    let filled = fill("foreign", false);
    let data = filled.copy("foreign");
    let notes = data.join("queue").join("notes.txt");
    let text = b"shopping list: milk, eggs\n";
    std::fs::write(&notes, text).unwrap();
    let segment = last_segment(&data);
    let segment_before = std::fs::read(&segment).unwrap();
    let out = match start(&data) {
        Ok(broker) => panic!("the broker started over a foreign file:\n{}", broker.log()),
        Err(out) => out,
    };
    println!("[foreign file] the broker said: {}", out.stderr.trim());
    assert!(
        !out.timed_out,
        "the broker neither started nor exited: {out}"
    );
    assert!(
        out.status.is_some_and(|s| !s.success()),
        "exit status: {out}"
    );
    assert!(
        out.stderr.contains("notes.txt"),
        "the file is not named: {out}"
    );
    assert_eq!(
        std::fs::read(&notes).unwrap(),
        text,
        "notes.txt was changed"
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        segment_before,
        "the segment was changed"
    );
    assert!(
        !data.join("queue").join("quarantine").exists(),
        "something was quarantined"
    );
}
