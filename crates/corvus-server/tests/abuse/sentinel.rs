//! The sentinel: a well-behaved QoS 1 stream that runs on the same broker while a case abuses
//! it, and the frame every case runs in ([`run`]). Whatever one client does, the others must
//! get every message, in order, once, without a stall.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corvus_server::{Config, Server};
use mqtt_codec::{Ack, Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use tokio::task::JoinHandle;

use crate::common::{pid, s, start_with, Raw, WAIT};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// How often the sentinel publishes.
const PACE: Duration = Duration::from_millis(2);
/// At least this many messages go through the stream before it may finish.
pub const MIN_MESSAGES: u32 = 50;
/// No gap between two deliveries (or a PUBLISH and its PUBACK) may be longer: a check that
/// nothing stalls, not a speed assertion, so generous for slow CI machines.
pub const MAX_GAP: Duration = Duration::from_secs(2);
/// How long either sentinel client waits for anything before calling it dead.
const GIVE_UP: Duration = Duration::from_secs(20);
/// The upper bound on a whole case, sentinel included.
const CASE_LIMIT: Duration = Duration::from_secs(120);
/// The payload that ends the stream.
const END: &[u8] = b"end";

/// A number no other sentinel, case client or probe in this process has.
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What the sentinel's publisher did.
struct Published {
    client: Raw,
    /// Sequence numbers 0..count were published and acknowledged.
    count: u32,
    /// The longest wait for a PUBACK.
    slowest_ack: Duration,
}

/// What the sentinel's subscriber saw.
struct Received {
    client: Raw,
    sequence: Vec<u32>,
    /// The longest time between two deliveries.
    longest_gap: Duration,
    /// Deliveries flagged DUP (none are expected: no reconnect happens).
    duplicates: usize,
}

/// A v5 publisher and subscriber (clean start, QoS 1) streaming sequence numbers on a topic
/// of their own every [`PACE`], in spawned tasks, until [`Sentinel::finish`].
pub struct Sentinel {
    stop: Arc<AtomicBool>,
    /// Messages acknowledged so far (for the record of how many flowed during the abuse).
    acked: Arc<AtomicU64>,
    publisher: JoinHandle<Result<Published, String>>,
    subscriber: JoinHandle<Result<Received, String>>,
    topic: String,
}

impl Sentinel {
    /// Connects both clients, proves the stream with a first message, then leaves it running.
    pub async fn start(addr: SocketAddr) -> Sentinel {
        let n = unique();
        let topic = format!("sentinel/{n}");
        let mut sub = Raw::connect(addr, V5, &format!("sentinel-sub-{n}")).await;
        assert_eq!(
            sub.subscribe(1, &topic, QoS::AtLeastOnce).await,
            [ReasonCode::GrantedQoS1]
        );
        let mut publ = Raw::connect(addr, V5, &format!("sentinel-pub-{n}")).await;
        // Message 0, in step: the stream works before the abuse starts.
        let first = message(&topic, &0u32.to_be_bytes(), 0);
        assert_eq!(publ.publish_packet(first).await, ReasonCode::Success);
        let got = sub.recv_publish().await;
        assert_eq!(&got.payload[..], 0u32.to_be_bytes());

        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(1));
        let publisher = tokio::spawn(publish_stream(
            publ,
            topic.clone(),
            stop.clone(),
            acked.clone(),
        ));
        let subscriber = tokio::spawn(receive_stream(sub));
        Sentinel {
            stop,
            acked,
            publisher,
            subscriber,
            topic,
        }
    }

    /// Messages published and acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// False once either client of the stream has stopped (on an error, which
    /// [`Sentinel::finish`] reports).
    pub fn is_running(&self) -> bool {
        !self.publisher.is_finished() && !self.subscriber.is_finished()
    }

    /// Stops the stream (after at least [`MIN_MESSAGES`]) and asserts that every message
    /// published and acknowledged was received exactly once, in order, with no gap longer
    /// than [`MAX_GAP`]; both clients are still connected and answer a PINGREQ.
    pub async fn finish(self) {
        self.stop.store(true, Ordering::Release);
        let published = self.publisher.await.expect("sentinel publisher task");
        let received = self.subscriber.await.expect("sentinel subscriber task");
        let topic = &self.topic;
        let mut published = published.unwrap_or_else(|e| panic!("sentinel {topic}: {e}"));
        let mut received = received.unwrap_or_else(|e| panic!("sentinel {topic}: {e}"));
        let count = published.count;
        assert!(
            count >= MIN_MESSAGES,
            "sentinel {topic}: only {count} messages"
        );
        let expected: Vec<u32> = (0..count).collect();
        if received.sequence != expected {
            panic!(
                "sentinel {topic}: published and acknowledged 0..{count}, received {} messages; \
                 first difference at index {:?}",
                received.sequence.len(),
                received
                    .sequence
                    .iter()
                    .zip(&expected)
                    .position(|(a, b)| a != b)
                    .or(Some(received.sequence.len().min(expected.len())))
            );
        }
        assert_eq!(
            received.duplicates, 0,
            "sentinel {topic}: redeliveries without a reconnect"
        );
        assert!(
            received.longest_gap <= MAX_GAP,
            "sentinel {topic}: stalled, {:?} between two deliveries",
            received.longest_gap
        );
        assert!(
            published.slowest_ack <= MAX_GAP,
            "sentinel {topic}: stalled, a PUBACK took {:?}",
            published.slowest_ack
        );
        for client in [&mut published.client, &mut received.client] {
            client.send(Packet::PingReq).await;
            assert_eq!(client.recv().await, Packet::PingResp, "sentinel {topic}");
        }
        eprintln!(
            "sentinel {topic}: {count} messages, longest gap {:?}, slowest PUBACK {:?}",
            received.longest_gap, published.slowest_ack
        );
        published.client.disconnect().await;
        received.client.disconnect().await;
    }
}

fn message(topic: &str, payload: &[u8], seq: u32) -> Publish {
    let mut p = Publish::new(s(topic), Bytes::copy_from_slice(payload));
    p.qos = QoS::AtLeastOnce;
    p.packet_id = Some(pid((seq % 65_000) as u16 + 1));
    p
}

/// Publishes and waits for the PUBACK; returns how long that took.
async fn publish_acked(client: &mut Raw, publish: Publish) -> Result<Duration, String> {
    let id = publish.packet_id;
    let sent = Instant::now();
    client.send(publish.into()).await;
    match client.try_recv(GIVE_UP).await {
        Ok(Some(Packet::PubAck(ack))) if Some(ack.packet_id) == id => {
            if ack.reason_code != ReasonCode::Success {
                return Err(format!("PUBACK {:?}", ack.reason_code));
            }
            Ok(sent.elapsed())
        }
        other => Err(format!("expected PUBACK for {id:?}, got {other:?}")),
    }
}

async fn publish_stream(
    mut client: Raw,
    topic: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> Result<Published, String> {
    let mut ticks = tokio::time::interval(PACE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u32 = 1;
    let mut slowest_ack = Duration::ZERO;
    while seq < MIN_MESSAGES || !stop.load(Ordering::Acquire) {
        ticks.tick().await;
        let took = publish_acked(&mut client, message(&topic, &seq.to_be_bytes(), seq))
            .await
            .map_err(|e| format!("message {seq}: {e}"))?;
        slowest_ack = slowest_ack.max(took);
        seq += 1;
        acked.store(u64::from(seq), Ordering::Relaxed);
    }
    publish_acked(&mut client, message(&topic, END, seq))
        .await
        .map_err(|e| format!("end marker: {e}"))?;
    Ok(Published {
        client,
        count: seq,
        slowest_ack,
    })
}

async fn receive_stream(mut client: Raw) -> Result<Received, String> {
    let mut sequence = vec![0];
    let mut longest_gap = Duration::ZERO;
    let mut duplicates = 0;
    let mut last = Instant::now();
    loop {
        let publish = match client.try_recv(GIVE_UP).await {
            Ok(Some(Packet::Publish(p))) => p,
            other => {
                return Err(format!(
                    "after {} deliveries: expected PUBLISH, got {other:?}",
                    sequence.len()
                ))
            }
        };
        longest_gap = longest_gap.max(last.elapsed());
        last = Instant::now();
        if let Some(id) = publish.packet_id {
            client.send(Packet::PubAck(Ack::new(id))).await;
        }
        duplicates += usize::from(publish.dup);
        if &publish.payload[..] == END {
            return Ok(Received {
                client,
                sequence,
                longest_gap,
                duplicates,
            });
        }
        let seq = <[u8; 4]>::try_from(&publish.payload[..])
            .map(u32::from_be_bytes)
            .map_err(|_| format!("unexpected payload {:?}", publish.payload))?;
        sequence.push(seq);
    }
}

/// A fresh client connects, subscribes, publishes at QoS 1 and receives its own message.
pub async fn assert_still_serves(addr: SocketAddr) {
    let n = unique();
    let topic = format!("still/{n}");
    let mut client = Raw::connect(addr, V5, &format!("still-{n}")).await;
    assert_eq!(
        client.subscribe(1, &topic, QoS::AtLeastOnce).await,
        [ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        client
            .publish(&topic, b"still here", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    let got = client.recv_publish().await;
    assert_eq!(&got.payload[..], b"still here");
    client.disconnect().await;
}

/// Waits until the broker holds no connection and no session: every connection the case
/// opened (all closed by now, by the broker or by being dropped) has ended its task, and no
/// clean session outlived its connection.
async fn assert_let_go(server: &Server) {
    let broker = server.broker();
    let load = || (broker.metrics.connections_current(), broker.session_count());
    let idle = tokio::time::timeout(WAIT, async {
        while load() != (0, 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (connections, sessions) = load();
    assert!(
        idle.is_ok(),
        "after the case: {connections} connections and {sessions} sessions still held"
    );
}

/// A broker with a sentinel running: what a case abuses.
pub struct Case {
    pub server: Server,
    pub addr: SocketAddr,
}

impl Case {
    /// A bare socket to the broker, nothing sent yet.
    pub async fn open(&self) -> Raw {
        Raw::open(self.addr, V5).await
    }

    /// A connected v5 client with client id `id` (each case has a broker of its own).
    pub async fn connect(&self, id: &str) -> Raw {
        Raw::connect(self.addr, V5, id).await
    }
}

/// Runs one case: a broker with `tune` applied to its config and a sentinel started; then
/// `abuse`, again and again until at least [`MIN_MESSAGES`] sentinel messages have gone
/// through while it ran (once for a case that lasts long enough, many times for one over in
/// milliseconds: so an abuse must work on any broker it has already been run against). Then
/// the sentinel must have come through unharmed, a fresh client must be served, and the
/// broker must shut down. All of it within [`CASE_LIMIT`].
pub async fn run(tune: impl FnOnce(&mut Config), abuse: impl AsyncFn(&Case)) {
    let body = async {
        let (server, addr) = start_with(tune).await;
        let case = Case { server, addr };
        let sentinel = Sentinel::start(addr).await;
        let before = sentinel.acked();
        let mut rounds = 0;
        while rounds == 0 || sentinel.acked() - before < u64::from(MIN_MESSAGES) {
            abuse(&case).await;
            rounds += 1;
            if !sentinel.is_running() {
                // finish() says why.
                break;
            }
        }
        let during = sentinel.acked() - before;
        sentinel.finish().await;
        assert!(
            during >= u64::from(MIN_MESSAGES),
            "only {during} sentinel messages during the abuse"
        );
        eprintln!("{rounds} round(s) of abuse, {during} sentinel messages meanwhile");
        assert_let_go(&case.server).await;
        assert_still_serves(addr).await;
        tokio::time::timeout(WAIT, case.server.shutdown())
            .await
            .expect("broker shuts down");
    };
    tokio::time::timeout(CASE_LIMIT, body)
        .await
        .expect("case finished in time");
}
