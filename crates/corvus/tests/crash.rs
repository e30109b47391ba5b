//! Crash tests: the real `corvus` binary is killed with SIGKILL while clients use it, and
//! restarted on the same data directory.
//!
//! What is demonstrated, for several seeds (each seed fixes the QoS of every message, the kill
//! points and whether the broker is also killed while the subscriber drains its queue):
//!
//! 1. A persistent subscriber ("sub", MQTT 5.0, Session Expiry Interval 3600 s) subscribes to
//!    `crash/#` with QoS 2 and goes offline.
//! 2. A publisher with a persistent session ("pub") sends [`MESSAGES`] messages, QoS 1 and QoS 2
//!    at random, pipelined with up to [`WINDOW`] in flight. The payload is the 8-byte big-endian
//!    sequence number and the QoS. A message is *acknowledged* when its PUBACK (QoS 1) or PUBREC
//!    (QoS 2) arrives; for QoS 2 the publisher then sends PUBREL and waits for PUBCOMP.
//! 3. Meanwhile the broker is killed with SIGKILL at random points (20-250 ms after it started)
//!    and restarted on the same data directory. The publisher reconnects with Clean Start 0 and,
//!    as MQTT requires, re-sends every unacknowledged PUBLISH with DUP=1 and the same packet id,
//!    and PUBREL for every QoS 2 message that got PUBREC but no PUBCOMP, then carries on.
//! 4. Once every message is acknowledged, the subscriber reconnects (Clean Start 0) and reads
//!    until the broker has been quiet for [`QUIET`], acknowledging as a real client does: it
//!    keeps the QoS 2 packet ids awaiting PUBREL across reconnects, so a QoS 2 PUBLISH re-sent
//!    with a packet id it already answered with PUBREC is the same delivery, not a new one. For
//!    some seeds the broker is also killed once while the subscriber drains.
//! 5. The checks: every acknowledged message arrives; every QoS 2 message arrives exactly once;
//!    QoS 1 messages at least once; and the first deliveries come in publish order (a QoS 1
//!    message may be delivered again; its repeats are ignored for the order).
//!
//! These tests found a bug, now fixed: an inbound QoS 2 packet id and the message's queued
//! copies were committed in two steps, so a kill between them duplicated or lost a QoS 2
//! message. They are now one journal record (`Received`).
//!
//! With `sync = always` (the default) the broker sends PUBACK/PUBREC only after the message is
//! fsynced for every persistent session that receives it, so no kill may lose an acknowledged
//! message. Every broker process is killed when the test ends, data directories are temporary,
//! and each step has a time limit: a hung broker fails the test instead of hanging it. On
//! failure the logs of every broker run are printed. Run with `--nocapture` to see the summary
//! line of each seed (messages, acknowledgements, kills, deliveries, duplicates, time).

mod support;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId, ProtocolVersion,
    Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, Will, WillProperties,
};
use support::{Proc, Rng};

/// Messages the publisher sends per seed.
const MESSAGES: u64 = 5000;
/// QoS 1/2 PUBLISH the publisher keeps unacknowledged at most (the broker allows 1024).
const WINDOW: usize = 20;
/// Kills while the publisher runs, per seed.
const KILLS: u32 = 12;
/// The broker is killed this long after it (re)started: a random point in this range (ms).
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 20..=250;
/// The subscriber stops reading after this long with nothing new.
const QUIET: Duration = Duration::from_secs(2);
/// How long the broker has to print its start line (debug build, recovery included).
const START: Duration = Duration::from_secs(60);
/// How long one exchange (CONNECT to CONNACK, a write) may take.
const STEP: Duration = Duration::from_secs(15);
/// How long the publisher may go without any acknowledgement while connected.
const STALL: Duration = Duration::from_secs(20);
/// Upper bound for the publishing phase of one seed.
const PUBLISH_LIMIT: Duration = Duration::from_secs(180);
/// Upper bound for the subscriber's draining.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);
const SESSION_EXPIRY: u32 = 3600;
const TOPIC: &str = "crash/data";

/// Which QoS the publisher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// QoS 1 only.
    Qos1,
    /// QoS 1 and QoS 2 at random.
    Qos1And2,
}

#[test]
fn sigkill_while_publishing_qos1_seed_1() {
    run_seed(1, Mix::Qos1);
}

#[test]
fn sigkill_while_publishing_qos1_seed_2() {
    run_seed(2, Mix::Qos1);
}

#[test]
fn sigkill_while_publishing_qos1_seed_3() {
    run_seed(3, Mix::Qos1);
}

#[test]
fn sigkill_while_publishing_qos1_and_qos2_seed_1() {
    run_seed(1, Mix::Qos1And2);
}

#[test]
fn sigkill_while_publishing_qos1_and_qos2_seed_2() {
    run_seed(2, Mix::Qos1And2);
}

#[test]
fn sigkill_while_publishing_qos1_and_qos2_seed_3() {
    run_seed(3, Mix::Qos1And2);
}

/// A crash ends every connection without DISCONNECT, so the will of a persistent session
/// whose client was connected is due after the restart: published once, and not again after
/// a second restart.
#[test]
fn sigkill_publishes_the_will_of_a_connected_client_once_after_the_restart() {
    let mut node = Node::new(100);
    node.start();
    // A watcher with a persistent session, subscribed to the wills, then offline.
    let (mut watcher, _) = Conn::connect(node.addr, "watcher", true, None).expect("connects");
    subscribe(&mut watcher, "wills/#", QoS::AtLeastOnce);
    watcher.disconnect();
    // A device with a persistent session and a will, connected when the broker dies. Its
    // CONNACK is sent once its session (with the will) is on disk.
    let (_device, ack) = Conn::connect_with(node.addr, "device", true, |c| {
        c.will = Some(Will {
            topic: s("wills/device"),
            payload: Bytes::from_static(b"device lost"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        });
    })
    .expect("the device connects");
    assert!(!ack.session_present);
    node.kill();
    node.start();
    let (mut watcher, _) = Conn::connect(node.addr, "watcher", false, None).expect("connects");
    match watcher.recv(STEP).expect("read the will") {
        Some(Packet::Publish(p)) => {
            assert_eq!(
                (p.topic.as_str(), &p.payload[..]),
                ("wills/device", &b"device lost"[..])
            );
            let id = p.packet_id.expect("QoS 1");
            watcher.send(Packet::PubAck(Ack::new(id))).expect("PUBACK");
        }
        other => panic!("expected the device's will, got {other:?}"),
    }
    assert_eq!(watcher.recv(QUIET).expect("quiet"), None, "one will, once");
    // The will is not armed any more: another restart does not publish it again.
    node.kill();
    node.start();
    let (mut watcher, _) = Conn::connect(node.addr, "watcher", false, None).expect("connects");
    assert_eq!(watcher.recv(QUIET).expect("quiet"), None, "published again");
}

/// SUBSCRIBE one filter and check the SUBACK grants the QoS asked for.
fn subscribe(conn: &mut Conn, filter: &str, qos: QoS) {
    let subscribe = Subscribe {
        packet_id: NonZeroU16::new(1).expect("nonzero"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: s(filter),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
    };
    conn.send(subscribe.into()).expect("send SUBSCRIBE");
    match conn.recv(STEP).expect("read SUBACK") {
        Some(Packet::SubAck(ack)) => {
            let granted = match qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            };
            assert_eq!(ack.reason_codes, vec![granted], "{ack:?}")
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

// ---- the broker process ----

/// The `corvus` binary on one data directory, started and killed as the test says. Every run's
/// output is kept and printed if the test fails.
struct Node {
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    addr: SocketAddr,
    runs: u32,
    started: Instant,
    /// The output of the runs that were killed.
    history: String,
}

impl Node {
    fn new(seed: u64) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("corvus-crash-{seed}-"))
            .tempdir()
            .expect("create a temporary data directory");
        Node {
            dir,
            proc: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            runs: 0,
            started: Instant::now(),
            history: String::new(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts the broker on a port of its choosing and waits for its start line.
    fn start(&mut self) {
        assert!(self.proc.is_none(), "the broker is already running");
        self.runs += 1;
        let mut proc = Proc::spawn(
            "corvus",
            Command::new(env!("CARGO_BIN_EXE_corvus"))
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(self.data_dir())
                .args(["--log-level", "info"])
                .env_remove("RUST_LOG"),
        );
        let line = proc.wait_line(|l| l.contains("listening for MQTT on"), START);
        self.started = Instant::now();
        self.proc = Some(proc);
        let line = line.unwrap_or_else(|e| {
            panic!(
                "run {} of the broker did not start (after a SIGKILL): {e}",
                self.runs
            )
        });
        self.addr = line
            .split("listening for MQTT on ")
            .nth(1)
            .and_then(|rest| rest.split([';', ',']).next())
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in the start line: {line}"));
    }

    /// SIGKILL, and the process reaped.
    fn kill(&mut self) {
        let mut proc = self.proc.take().expect("kill: the broker is not running");
        proc.kill();
        let out = proc.output();
        self.history.push_str(&format!(
            "--- corvus run {} (killed with SIGKILL) ---\n{}{}",
            self.runs, out.stdout, out.stderr
        ));
    }

    /// Panics (with the reason) if the broker exited although nobody killed it.
    fn assert_alive(&mut self, what: &str) {
        let proc = self.proc.as_mut().expect("the broker is running");
        if let Some(status) = proc.exited() {
            panic!("the broker exited by itself ({status}) {what}");
        }
    }

    fn log(&self) -> String {
        let mut log = self.history.clone();
        if let Some(proc) = &self.proc {
            let out = proc.output();
            log.push_str(&format!(
                "--- corvus run {} (current) ---\n{}{}",
                self.runs, out.stdout, out.stderr
            ));
        }
        log
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(proc) = &mut self.proc {
            proc.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- corvus logs (data dir {}) ---\n{}--- end of corvus logs ---",
                self.dir.path().display(),
                self.log()
            );
        }
    }
}

// ---- a blocking MQTT 5.0 client connection on the codec ----

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).expect("valid MQTT string")
}

struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    /// Connects and completes CONNECT/CONNACK; the CONNACK must be a success.
    fn connect(
        addr: SocketAddr,
        client_id: &str,
        clean_start: bool,
        receive_maximum: Option<u16>,
    ) -> io::Result<(Conn, ConnAck)> {
        Conn::connect_with(addr, client_id, clean_start, |c| {
            c.properties.receive_maximum = receive_maximum;
        })
    }

    /// [`connect`](Self::connect) with `tune` applied to the CONNECT.
    fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        clean_start: bool,
        tune: impl FnOnce(&mut Connect),
    ) -> io::Result<(Conn, ConnAck)> {
        let stream = TcpStream::connect_timeout(&addr, STEP)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(STEP))?;
        let mut conn = Conn {
            stream,
            decoder: Decoder::new(ProtocolVersion::V5),
            buf: BytesMut::new(),
        };
        let mut connect = Connect::new(ProtocolVersion::V5, s(client_id));
        connect.clean_start = clean_start;
        connect.keep_alive = 0;
        connect.properties.session_expiry_interval = Some(SESSION_EXPIRY);
        tune(&mut connect);
        conn.send(connect.into())?;
        match conn.recv(STEP)? {
            Some(Packet::ConnAck(ack)) => {
                assert_eq!(
                    ack.reason_code,
                    ReasonCode::Success,
                    "{client_id}: CONNACK {ack:?}"
                );
                Ok((conn, *ack))
            }
            Some(other) => panic!("{client_id}: expected CONNACK, got {other:?}"),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no CONNACK in time",
            )),
        }
    }

    fn send(&mut self, packet: Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        packet
            .encode(ProtocolVersion::V5, &mut out)
            .expect("test packet encodes");
        self.stream.write_all(&out)
    }

    /// The next packet, None if nothing came within `wait`; an error if the connection closed.
    fn recv(&mut self, wait: Duration) -> io::Result<Option<Packet>> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(packet) = self
                .decoder
                .decode(&mut self.buf)
                .unwrap_or_else(|e| panic!("the broker sent an undecodable packet: {e}"))
            {
                return Ok(Some(packet));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// DISCONNECT (normal: the session stays) and wait for the broker to close.
    fn disconnect(mut self) {
        if self.send(Disconnect::default().into()).is_ok() {
            while let Ok(Some(_)) = self.recv(STEP) {}
        }
    }
}

fn payload(seq: u64, qos: QoS) -> Bytes {
    let mut p = seq.to_be_bytes().to_vec();
    p.push(qos as u8);
    Bytes::from(p)
}

fn qos_name(qos: QoS) -> u8 {
    qos as u8
}

// ---- the publisher ----

/// A QoS 1/2 message the publisher has sent and not finished.
#[derive(Debug)]
struct Flight {
    seq: u64,
    qos: QoS,
    pid: PacketId,
    /// QoS 2: PUBREC received, PUBREL sent, PUBCOMP awaited.
    released: bool,
    /// The PUBREL was sent again after a reconnect.
    rel_resent: bool,
}

struct Publisher {
    qos: Vec<QoS>,
    next_seq: u64,
    inflight: VecDeque<Flight>,
    acked: Vec<bool>,
    acked_count: u64,
    next_pid: u16,
    /// PUBLISH re-sent with DUP after a reconnect, and PUBREL re-sent.
    resent: u64,
    rereleased: u64,
    /// PUBCOMP 0x92 (Packet Identifier not found) for a re-sent PUBREL.
    comp_not_found: u64,
    connects: u32,
    last_progress: Instant,
    /// What happened to each message, for failure reports.
    trace: Vec<Vec<String>>,
}

impl Publisher {
    fn new(rng: &mut Rng, mix: Mix) -> Publisher {
        let qos = (0..MESSAGES)
            .map(|_| match (mix, rng.next() % 2) {
                (Mix::Qos1, _) | (_, 0) => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            })
            .collect();
        Publisher {
            qos,
            next_seq: 0,
            inflight: VecDeque::new(),
            acked: vec![false; MESSAGES as usize],
            acked_count: 0,
            next_pid: 0,
            resent: 0,
            rereleased: 0,
            comp_not_found: 0,
            connects: 0,
            last_progress: Instant::now(),
            trace: vec![Vec::new(); MESSAGES as usize],
        }
    }

    fn done(&self) -> bool {
        self.next_seq == MESSAGES && self.inflight.is_empty()
    }

    fn alloc_pid(&mut self) -> PacketId {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let Some(pid) = NonZeroU16::new(self.next_pid) else {
                continue;
            };
            if self.inflight.iter().all(|f| f.pid != pid) {
                return pid;
            }
        }
    }

    fn publish_packet(f: &Flight, dup: bool) -> Packet {
        let mut publish = Publish::new(s(TOPIC), payload(f.seq, f.qos));
        publish.qos = f.qos;
        publish.dup = dup;
        publish.packet_id = Some(f.pid);
        publish.into()
    }

    /// Connects (Clean Start 0 after the first time) and re-sends what is unfinished.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Conn> {
        let first = self.connects == 0;
        let (mut conn, ack) = Conn::connect(addr, "pub", first, None)?;
        self.connects += 1;
        if !first && !ack.session_present {
            assert!(
                self.acked_count == 0,
                "the publisher's session was lost by a restart (CONNACK session present 0) \
                 after {} messages were acknowledged; unfinished: {:?}",
                self.acked_count,
                self.inflight
            );
        }
        if let Some(max) = ack.properties.receive_maximum {
            assert!(
                usize::from(max) >= WINDOW,
                "broker Receive Maximum {max} < {WINDOW}"
            );
        }
        for f in &mut self.inflight {
            if f.released {
                self.rereleased += 1;
                f.rel_resent = true;
                let c = self.connects;
                self.trace[f.seq as usize].push(format!("pub#{c} PUBREL again {}", f.pid));
                conn.send(Packet::PubRel(Ack::new(f.pid)))?;
            } else {
                self.resent += 1;
                let c = self.connects;
                self.trace[f.seq as usize].push(format!("pub#{c} DUP {}", f.pid));
                conn.send(Self::publish_packet(f, true))?;
            }
        }
        self.last_progress = Instant::now();
        Ok(conn)
    }

    /// Sends new messages while the window has room.
    fn fill(&mut self, conn: &mut Conn) -> io::Result<()> {
        while self.inflight.len() < WINDOW && self.next_seq < MESSAGES {
            let seq = self.next_seq;
            let f = Flight {
                seq,
                qos: self.qos[seq as usize],
                pid: self.alloc_pid(),
                released: false,
                rel_resent: false,
            };
            let c = self.connects;
            self.trace[seq as usize].push(format!("pub#{c} PUBLISH {}", f.pid));
            conn.send(Self::publish_packet(&f, false))?;
            self.inflight.push_back(f);
            self.next_seq += 1;
        }
        Ok(())
    }

    fn position(&self, pid: PacketId, what: &str) -> usize {
        self.inflight
            .iter()
            .position(|f| f.pid == pid)
            .unwrap_or_else(|| panic!("{what} for packet id {pid}, which is not in flight"))
    }

    fn note(&mut self, seq: u64, what: &str) {
        let c = self.connects;
        self.trace[seq as usize].push(format!("pub#{c} {what}"));
    }

    fn ack(&mut self, seq: u64) {
        if !self.acked[seq as usize] {
            self.acked[seq as usize] = true;
            self.acked_count += 1;
        }
        self.last_progress = Instant::now();
    }

    fn handle(&mut self, conn: &mut Conn, packet: Packet) -> io::Result<()> {
        match packet {
            Packet::PubAck(a) => {
                let i = self.position(a.packet_id, "PUBACK");
                let f = &self.inflight[i];
                assert!(
                    f.qos == QoS::AtLeastOnce,
                    "PUBACK for a QoS 2 message: {f:?}"
                );
                assert_eq!(
                    a.reason_code,
                    ReasonCode::Success,
                    "PUBACK for {f:?}: {a:?}"
                );
                let seq = f.seq;
                self.inflight.remove(i);
                self.ack(seq);
                self.note(seq, "PUBACK");
            }
            Packet::PubRec(a) => {
                let i = self.position(a.packet_id, "PUBREC");
                let f = &mut self.inflight[i];
                assert!(
                    f.qos == QoS::ExactlyOnce,
                    "PUBREC for a QoS 1 message: {f:?}"
                );
                assert_eq!(
                    a.reason_code,
                    ReasonCode::Success,
                    "PUBREC for {f:?}: {a:?}"
                );
                f.released = true;
                let seq = f.seq;
                self.ack(seq);
                self.note(seq, "PUBREC");
                conn.send(Packet::PubRel(Ack::new(a.packet_id)))?;
            }
            Packet::PubComp(a) => {
                let i = self.position(a.packet_id, "PUBCOMP");
                let f = &self.inflight[i];
                assert!(f.released, "PUBCOMP before PUBREC: {f:?}");
                // A PUBREL re-sent after a crash may find the id already released (the first
                // PUBREL was processed, its PUBCOMP lost): 0x92 is then the right answer.
                match a.reason_code {
                    ReasonCode::Success => {}
                    ReasonCode::PacketIdentifierNotFound if f.rel_resent => {
                        self.comp_not_found += 1
                    }
                    other => panic!("PUBCOMP {other:?} for {f:?}: {a:?}"),
                }
                let seq = f.seq;
                self.inflight.remove(i);
                self.note(seq, &format!("PUBCOMP {:?}", a.reason_code));
                self.last_progress = Instant::now();
            }
            other => panic!("publisher: unexpected packet from the broker: {other:?}"),
        }
        Ok(())
    }
}

// ---- the subscriber ----

struct Subscriber {
    /// QoS 2 packet ids answered with PUBREC and awaiting PUBREL, with their sequence number.
    awaiting: HashMap<PacketId, u64>,
    /// Deliveries per sequence number (application level).
    count: Vec<u32>,
    /// Sequence numbers in the order of their first delivery.
    first: Vec<u64>,
    qos1_duplicates: u64,
    /// QoS 2 PUBLISH re-sent with a packet id still awaiting PUBREL (one delivery).
    qos2_resent: u64,
    connects: u32,
    /// Every PUBLISH received per message, for failure reports.
    trace: Vec<Vec<String>>,
}

impl Subscriber {
    fn new() -> Subscriber {
        Subscriber {
            awaiting: HashMap::new(),
            count: vec![0; MESSAGES as usize],
            first: Vec::new(),
            qos1_duplicates: 0,
            qos2_resent: 0,
            connects: 0,
            trace: vec![Vec::new(); MESSAGES as usize],
        }
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<Conn> {
        let (conn, ack) = Conn::connect(addr, "sub", false, Some(100))?;
        self.connects += 1;
        assert!(
            ack.session_present,
            "the subscriber's persistent session was lost (CONNACK session present 0)"
        );
        Ok(conn)
    }

    /// The first connection: a new session subscribed to `crash/#` at QoS 2, then offline.
    fn setup(addr: SocketAddr) {
        let (mut conn, _) = Conn::connect(addr, "sub", true, Some(100)).expect("sub connects");
        subscribe(&mut conn, "crash/#", QoS::ExactlyOnce);
        conn.disconnect();
    }

    fn handle(&mut self, conn: &mut Conn, packet: Packet, published: &[QoS]) -> io::Result<()> {
        match packet {
            Packet::Publish(p) => {
                assert_eq!(p.topic.as_str(), TOPIC);
                assert_eq!(p.payload.len(), 9, "unexpected payload {:?}", p.payload);
                let seq = u64::from_be_bytes(p.payload[..8].try_into().expect("8 bytes"));
                let qos = published
                    .get(seq as usize)
                    .copied()
                    .unwrap_or_else(|| panic!("delivered message {seq} was never published"));
                assert_eq!(p.payload[8], qos_name(qos), "payload of {seq}");
                assert!(
                    p.qos == qos,
                    "message {seq} published at {qos:?} delivered at {:?}",
                    p.qos
                );
                let pid = p.packet_id.expect("QoS 1/2 PUBLISH has a packet id");
                let c = self.connects;
                let dup = if p.dup { " DUP" } else { "" };
                self.trace[seq as usize].push(format!("sub#{c} got {pid}{dup}"));
                match qos {
                    QoS::AtLeastOnce => {
                        self.deliver(seq);
                        conn.send(Packet::PubAck(Ack::new(pid)))?;
                    }
                    _ => {
                        match self.awaiting.get(&pid) {
                            Some(&s) if s == seq => self.qos2_resent += 1,
                            Some(&s) => panic!(
                                "QoS 2 message {seq} delivered with packet id {pid}, which still \
                                 awaits PUBREL for message {s}"
                            ),
                            None => {
                                self.awaiting.insert(pid, seq);
                                self.deliver(seq);
                            }
                        }
                        conn.send(Packet::PubRec(Ack::new(pid)))?;
                    }
                }
            }
            Packet::PubRel(a) => {
                self.awaiting.remove(&a.packet_id);
                conn.send(Packet::PubComp(Ack::new(a.packet_id)))?;
            }
            other => panic!("subscriber: unexpected packet from the broker: {other:?}"),
        }
        Ok(())
    }

    fn deliver(&mut self, seq: u64) {
        let n = &mut self.count[seq as usize];
        *n += 1;
        if *n == 1 {
            self.first.push(seq);
        } else {
            self.qos1_duplicates += 1;
        }
    }

    fn distinct(&self) -> usize {
        self.first.len()
    }
}

// ---- one seed ----

fn run_seed(seed: u64, mix: Mix) {
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let mut node = Node::new(seed);
    let mut kills: Vec<String> = Vec::new();
    node.start();
    Subscriber::setup(node.addr);

    // Publishing, with kills.
    let mut publisher = Publisher::new(&mut rng, mix);
    let mut kill_at = Some(node.started + Duration::from_millis(rng.range(KILL_AFTER_MS)));
    let mut conn: Option<Conn> = None;
    let limit = Instant::now() + PUBLISH_LIMIT;
    while !publisher.done() {
        assert!(
            Instant::now() < limit,
            "seed {seed}: publishing not finished within {PUBLISH_LIMIT:?}: {} of {MESSAGES} \
             acknowledged, {} in flight",
            publisher.acked_count,
            publisher.inflight.len()
        );
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            let ms = node.started.elapsed().as_millis();
            node.kill();
            conn = None;
            kills.push(format!(
                "run {} killed {ms} ms after start, publisher connection {} ({} sent, {} \
                 acknowledged, {} in flight)",
                node.runs,
                publisher.connects,
                publisher.next_seq,
                publisher.acked_count,
                publisher.inflight.len()
            ));
            node.start();
            kill_at = (kills.len() < KILLS as usize)
                .then(|| node.started + Duration::from_millis(rng.range(KILL_AFTER_MS)));
        }
        let c = match &mut conn {
            Some(c) => c,
            None => {
                let c = publisher
                    .connect(node.addr)
                    .unwrap_or_else(|e| panic!("seed {seed}: the publisher cannot connect: {e}"));
                conn.insert(c)
            }
        };
        let step = publisher.fill(c).and_then(|()| {
            let wait = match kill_at {
                Some(t) => t
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
                None => Duration::from_millis(50),
            };
            while let Some(packet) = c.recv(wait)? {
                publisher.handle(c, packet)?;
                if publisher.inflight.len() < WINDOW / 2 {
                    break;
                }
            }
            Ok(())
        });
        if let Err(e) = step {
            node.assert_alive("while the publisher was connected");
            panic!("seed {seed}: the broker closed the publisher's connection: {e}");
        }
        assert!(
            publisher.last_progress.elapsed() < STALL,
            "seed {seed}: no acknowledgement for {STALL:?} ({} of {MESSAGES} acknowledged, in \
             flight: {:?})",
            publisher.acked_count,
            publisher.inflight
        );
    }
    if let Some(c) = conn.take() {
        c.disconnect();
    }
    let publish_time = t0.elapsed();

    // Sometimes one more crash with everything queued for the offline subscriber.
    if rng.coin() {
        node.kill();
        kills.push(format!("run {} killed after publishing", node.runs));
        node.start();
    }

    // Draining, maybe with one kill after some deliveries.
    let mut sub = Subscriber::new();
    let mut drain_kill = rng.coin().then(|| rng.range(1..=MESSAGES / 2) as usize);
    let mut conn = Some(sub.connect(node.addr).expect("the subscriber connects"));
    let limit = Instant::now() + DRAIN_LIMIT;
    let mut last_new = Instant::now();
    while last_new.elapsed() < QUIET && Instant::now() < limit {
        if drain_kill.is_some_and(|n| sub.distinct() >= n) {
            drain_kill = None;
            node.kill();
            kills.push(format!(
                "run {} killed while the subscriber drained ({} received)",
                node.runs,
                sub.distinct()
            ));
            node.start();
            conn = Some(sub.connect(node.addr).expect("the subscriber reconnects"));
            last_new = Instant::now();
        }
        let c = conn.as_mut().expect("connected");
        let step = c.recv(Duration::from_millis(100)).and_then(|p| match p {
            Some(packet) => {
                last_new = Instant::now();
                sub.handle(c, packet, &publisher.qos)
            }
            None => Ok(()),
        });
        if let Err(e) = step {
            node.assert_alive("while the subscriber was draining");
            panic!("seed {seed}: the broker closed the subscriber's connection: {e}");
        }
    }
    if let Some(c) = conn.take() {
        c.disconnect();
    }

    // The verdict.
    let qos2_total = publisher
        .qos
        .iter()
        .filter(|&&q| q == QoS::ExactlyOnce)
        .count();
    println!(
        "seed {seed}: {MESSAGES} messages ({qos2_total} QoS 2), {} acknowledged, {} re-sent \
         with DUP, {} PUBREL re-sent ({} answered 0x92), {} kills, publisher connections {}; subscriber: {} \
         delivered, {} QoS 1 duplicates, {} QoS 2 re-sends of a pending id, {} connections; \
         publishing {:.1} s, total {:.1} s",
        publisher.acked_count,
        publisher.resent,
        publisher.rereleased,
        publisher.comp_not_found,
        kills.len(),
        publisher.connects,
        sub.distinct(),
        sub.qos1_duplicates,
        sub.qos2_resent,
        sub.connects,
        publish_time.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let kill_list = kills.join("\n  ");
    println!("seed {seed} kills:\n  {kill_list}");

    let lost: Vec<(u64, QoS)> = (0..MESSAGES)
        .filter(|&seq| publisher.acked[seq as usize] && sub.count[seq as usize] == 0)
        .map(|seq| (seq, publisher.qos[seq as usize]))
        .collect();
    let qos2_duplicated: Vec<(u64, u32)> = (0..MESSAGES)
        .filter(|&seq| publisher.qos[seq as usize] == QoS::ExactlyOnce)
        .map(|seq| (seq, sub.count[seq as usize]))
        .filter(|&(_, n)| n > 1)
        .collect();
    let out_of_order: Vec<(u64, u64)> = sub
        .first
        .windows(2)
        .filter(|w| w[1] <= w[0])
        .map(|w| (w[0], w[1]))
        .collect();
    let mut problems = Vec::new();
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged messages never arrived (seq, qos), first ones: {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        ));
    }
    if !qos2_duplicated.is_empty() {
        problems.push(format!(
            "{} QoS 2 messages arrived more than once (seq, times), first ones: {:?}",
            qos2_duplicated.len(),
            &qos2_duplicated[..qos2_duplicated.len().min(20)]
        ));
    }
    if !out_of_order.is_empty() {
        problems.push(format!(
            "{} first deliveries out of publish order (previous seq, next seq), first ones: {:?}",
            out_of_order.len(),
            &out_of_order[..out_of_order.len().min(20)]
        ));
    }
    if !sub.awaiting.is_empty() {
        problems.push(format!(
            "the subscriber still awaits PUBREL for {:?}",
            sub.awaiting
        ));
    }
    let mut suspects: Vec<u64> = lost.iter().map(|&(seq, _)| seq).take(8).collect();
    suspects.extend(qos2_duplicated.iter().map(|&(seq, _)| seq).take(8));
    suspects.extend(out_of_order.iter().map(|&(_, seq)| seq).take(8));
    let traces: Vec<String> = suspects
        .iter()
        .map(|&seq| {
            let i = seq as usize;
            format!(
                "{seq} ({:?}): {}; {}",
                publisher.qos[i],
                publisher.trace[i].join(", "),
                sub.trace[i].join(", ")
            )
        })
        .collect();
    assert!(
        problems.is_empty(),
        "seed {seed}:\n{}\nkills:\n  {kill_list}\nwhat happened to those messages (pub#N: \
         the publisher's Nth connection, sub#N: the subscriber's):\n  {}",
        problems.join("\n"),
        traces.join("\n  ")
    );
}
