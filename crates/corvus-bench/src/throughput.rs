//! fanin, fanout, topics and latency: publishers send stamped messages for the run's
//! duration, subscribers check every one (sequence per publisher) and time it, and the run
//! waits a little for what is still on its way before counting what was lost.
//!
//! Unpaced runs are closed-loop: at most `--window` messages are on their way to any one
//! subscriber (each publisher gets its share), so the figure is what the broker delivers,
//! not how much it can buffer. With `--rate` the publishers are paced instead
//! (latency runs), still within the window.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{Ack, Disconnect, Packet, QoS};
use tokio::sync::{watch, Notify};

use crate::checker::{Checker, Verdict};
use crate::client::{Conn, Dial};
use crate::error::BenchError;
use crate::histogram::Histogram;
use crate::options::BenchArgs;
use crate::packet_ids::PacketIds;
use crate::plan::Plan;
use crate::progress::{thousands, ProgressLine};
use crate::report::{Latency, Report, Rss};
use crate::rss;
use crate::stamp::Stamp;

/// PUBLISHes encoded per write, at most.
const BATCH: u64 = 64;

/// What publishers and subscribers share while the run goes on.
struct Shared {
    t0: Instant,
    stop_at: Instant,
    /// Messages sent, per publisher.
    sent: Vec<AtomicU64>,
    /// Distinct messages each subscriber has received from each publisher (`[s][p]`), as
    /// its checker counts them.
    delivered: Vec<Vec<AtomicU64>>,
    /// PUBLISHes the broker acknowledged with an error.
    rejected: AtomicU64,
    /// Told when subscribers took deliveries (a publisher waiting on its window wakes).
    progress: Notify,
}

impl Shared {
    /// Nanoseconds since the run began (what stamps carry).
    fn ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Distinct messages received, over all subscribers and publishers.
    fn total_delivered(&self) -> u64 {
        self.delivered
            .iter()
            .flatten()
            .map(|d| d.load(Ordering::Acquire))
            .sum()
    }

    /// Messages of publisher `p` that every one of its `listeners` has received.
    fn slowest_listener(&self, p: usize, listeners: &[usize]) -> u64 {
        listeners
            .iter()
            .map(|&s| self.delivered[s][p].load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn total_sent(&self) -> u64 {
        self.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

/// How one publisher publishes.
#[derive(Debug, Clone)]
struct Publishing {
    qos: QoS,
    size: usize,
    window: u64,
    /// The subscribers that receive this publisher's messages: its window is measured
    /// against the slowest of them.
    listeners: Vec<usize>,
    /// How fast this publisher may send (`None`: as fast as its window allows).
    pace: Option<Pace>,
    drain: Duration,
}

/// Runs a throughput or latency scenario against `addr`, filling `report`.
pub async fn run(
    args: &BenchArgs,
    addr: SocketAddr,
    report: &mut Report,
) -> Result<(), BenchError> {
    let run_id = run_id();
    let publishers = args.publishers() as usize;
    let subscribers = args.subscribers() as usize;
    let plan = Plan::new(
        args.scenario,
        &run_id,
        publishers as u32,
        subscribers as u32,
    );
    let dial = Dial {
        addr,
        local: None,
        version: args.protocol(),
        keep_alive: 60,
        read_chunk: 64 * 1024,
    };
    let qos = args.qos();

    let mut sub_conns = Vec::with_capacity(subscribers);
    for (s, filters) in plan.filters.iter().enumerate() {
        let mut conn = Conn::open(&dial, &format!("bench-{run_id}-sub-{s}")).await?;
        conn.subscribe(filters, qos).await?;
        sub_conns.push(conn);
    }
    let mut pub_conns = Vec::with_capacity(publishers);
    for p in 0..publishers {
        pub_conns.push(Conn::open(&dial, &format!("bench-{run_id}-pub-{p}")).await?);
    }

    let rss_before = args.pid.and_then(rss::rss_kb);
    let sampler = args.pid.map(rss::Sampler::start);
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        t0,
        stop_at: t0 + args.duration(),
        sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
        delivered: (0..subscribers)
            .map(|_| (0..publishers).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        rejected: AtomicU64::new(0),
        progress: Notify::new(),
    });
    let progress = progress_line(args, shared.clone());

    let (finish, finished) = watch::channel(false);
    let mut sub_tasks = Vec::with_capacity(subscribers);
    for conn in sub_conns {
        let shared = shared.clone();
        let finished = finished.clone();
        let s = sub_tasks.len();
        sub_tasks.push(tokio::spawn(receive(conn, s, shared, publishers, finished)));
    }
    let window = per_publisher_window(args.window, &plan);
    let mut pub_tasks = Vec::with_capacity(publishers);
    for (p, conn) in pub_conns.into_iter().enumerate() {
        let how = Publishing {
            qos,
            size: args.size as usize,
            window,
            listeners: plan.listeners_of(p as u32),
            pace: (args.rate() > 0).then(|| Pace {
                per_second: args.rate(),
                publishers: publishers as u64,
            }),
            drain: args.drain(),
        };
        let topic = plan.topics[p].clone().into_bytes();
        pub_tasks.push(tokio::spawn(publish(conn, p, topic, shared.clone(), how)));
    }

    let mut conns = Vec::new();
    for task in pub_tasks {
        match task.await {
            Ok(Ok(conn)) => conns.push(conn),
            Ok(Err(e)) => report.errors.push(e.to_string()),
            Err(e) => report.errors.push(format!("a publisher failed: {e}")),
        }
    }
    let published_at = Instant::now();
    let sent: Vec<u64> = shared
        .sent
        .iter()
        .map(|s| s.load(Ordering::Acquire))
        .collect();
    let expected: u64 = plan
        .listens_to
        .iter()
        .map(|hears| hears.iter().map(|&p| sent[p as usize]).sum::<u64>())
        .sum();
    // What is still on its way gets `--drain` to arrive.
    let drain_until = published_at + args.drain();
    while shared.total_delivered() < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = finish.send(true);

    let mut verdict = Verdict::default();
    let mut latency = Histogram::default();
    let mut last_delivery = None::<Instant>;
    for (s, task) in sub_tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(received)) => {
                verdict.add(received.checker.verdict(&sent, &plan.listens_to[s]));
                latency.merge(&received.latency);
                last_delivery = last_delivery.max(received.last_delivery);
                conns.push(received.conn);
            }
            Ok(Err(e)) => report.errors.push(e.to_string()),
            Err(e) => report.errors.push(format!("a subscriber failed: {e}")),
        }
    }
    drop(progress);
    for conn in &mut conns {
        let _ = conn.queue(Packet::Disconnect(Disconnect::default()));
        let _ = conn.flush().await;
    }

    let sent_total = shared.total_sent();
    report.sent = sent_total;
    report.rejected = shared.rejected.load(Ordering::Relaxed);
    report.checked = verdict;
    // Publishers stop sending at `stop_at`; what follows is waiting for acknowledgements.
    let publishing = published_at
        .min(shared.stop_at)
        .duration_since(t0)
        .as_secs_f64()
        .max(1e-9);
    let delivering = last_delivery
        .map_or(publishing, |at| at.duration_since(t0).as_secs_f64())
        .max(1e-9);
    report.elapsed_s = delivering;
    report.sent_per_s = sent_total as f64 / publishing;
    report.received_per_s = verdict.received as f64 / delivering;
    report.latency_us = Latency::of(&latency);
    if let (Some(pid), Some(sampler)) = (args.pid, sampler) {
        let peak_kb = sampler.stop(pid);
        report.rss = Some(Rss {
            before_kb: rss_before.unwrap_or(0),
            after_kb: rss::rss_kb(pid).unwrap_or(0),
            peak_kb,
            per_connection_bytes: None,
        });
    }
    Ok(())
}

/// Each publisher's share of `window`: a subscriber hearing k publishers has at most
/// `window` messages on their way to it (so a broker's per-client queue of that size never
/// overflows in a closed-loop run).
fn per_publisher_window(window: u64, plan: &Plan) -> u64 {
    let most_heard = plan
        .listens_to
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(1)
        .max(1);
    (window / most_heard as u64).max(1)
}

/// A prefix unique to this run.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// Once a second: how far the run has got and the rates over the last second.
fn progress_line(args: &BenchArgs, shared: Arc<Shared>) -> ProgressLine {
    let name = args.scenario.name();
    let total = args.duration().as_secs_f64();
    let mut last = (0u64, 0u64, Duration::ZERO);
    ProgressLine::start(move |elapsed| {
        let sent = shared.total_sent();
        let received = shared.total_delivered();
        let span = (elapsed - last.2).as_secs_f64().max(1e-9);
        let rates = (
            (sent - last.0) as f64 / span,
            (received.saturating_sub(last.1)) as f64 / span,
        );
        last = (sent, received, elapsed);
        format!(
            "{name} {:.0}/{total:.0} s: sent {} ({} msg/s), received {} ({} msg/s)",
            elapsed.as_secs_f64(),
            thousands(sent),
            thousands(rates.0 as u64),
            thousands(received),
            thousands(rates.1 as u64),
        )
    })
}

/// One publisher: sends until the run's end, within its window (and pace), then waits for
/// its outstanding acknowledgements.
async fn publish(
    mut conn: Conn,
    p: usize,
    topic: Vec<u8>,
    shared: Arc<Shared>,
    how: Publishing,
) -> Result<Conn, BenchError> {
    let mut ids = PacketIds::default();
    let max_inflight = match how.qos {
        QoS::AtMostOnce => u64::MAX,
        _ => u64::from(conn.receive_maximum).min(how.window).max(1),
    };
    let mut seq = 0u64;
    let mut window_full_since = None::<Instant>;
    loop {
        let now = Instant::now();
        if now >= shared.stop_at {
            break;
        }
        let delivered = shared.slowest_listener(p, &how.listeners);
        let unseen = seq.saturating_sub(delivered);
        let mut room = how.window.saturating_sub(unseen);
        // Messages that never arrive (QoS 0 loss) would keep the window full for good:
        // a window full for longer than the drain time ends the run, said as such.
        if room == 0 {
            let since = *window_full_since.get_or_insert(now);
            if now.duration_since(since) > how.drain {
                return Err(BenchError::Stalled {
                    client: conn.name.clone(),
                    unseen,
                    seconds: how.drain.as_secs(),
                });
            }
        } else {
            window_full_since = None;
        }
        room = room.min(max_inflight.saturating_sub(ids.in_use()));
        let mut next_due = shared.stop_at;
        if let Some(pace) = how.pace {
            room = room.min(
                pace.allowed(now.duration_since(shared.t0))
                    .saturating_sub(seq),
            );
            next_due = shared.t0 + pace.due_at(seq);
        }
        let room = room.min(BATCH);
        if room > 0 {
            let sent_ns = shared.ns();
            for _ in 0..room {
                let id = match how.qos {
                    QoS::AtMostOnce => 0,
                    _ => ids.take(),
                };
                let stamp = Stamp {
                    publisher: p as u32,
                    seq,
                    sent_ns,
                };
                conn.queue_publish(&topic, how.qos, id, stamp, how.size);
                seq += 1;
            }
            shared.sent[p].store(seq, Ordering::Release);
            conn.flush().await?;
            if how.qos != QoS::AtMostOnce {
                while conn.try_read_more()? {}
                take_acks(&mut conn, &mut ids, &shared)?;
                conn.flush().await?;
            }
            continue;
        }
        // Nothing may go now: wait for acknowledgements, deliveries, the pace or the end.
        // (Armed only here: a waiter registered on every pass would cost two trips through
        // the lock every subscriber's wake-up takes.)
        let notified = shared.progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // A delivery since the reckoning above woke nobody: reckon again.
        if shared.slowest_listener(p, &how.listeners) != delivered {
            continue;
        }
        let wake = next_due
            .min(shared.stop_at)
            .max(now + Duration::from_micros(50));
        tokio::select! {
            read = conn.read_more(), if how.qos != QoS::AtMostOnce => {
                read?;
                take_acks(&mut conn, &mut ids, &shared)?;
                conn.flush().await?;
            }
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let deadline = Instant::now() + how.drain;
    while ids.in_use() > 0 {
        match tokio::time::timeout_at(deadline.into(), conn.read_more()).await {
            Ok(read) => read?,
            Err(_) => {
                return Err(BenchError::Timeout {
                    client: conn.name.clone(),
                    seconds: how.drain.as_secs(),
                    waiting_for: format!("{} acknowledgements", ids.in_use()),
                })
            }
        }
        take_acks(&mut conn, &mut ids, &shared)?;
        conn.flush().await?;
    }
    Ok(conn)
}

/// The pace of one of `publishers` publishers sharing an offered rate of `per_second`:
/// its message `n` (from 0) is due `n * publishers / per_second` seconds into the run.
/// Integer arithmetic, so that [`allowed`](Pace::allowed) and [`due_at`](Pace::due_at)
/// agree to the nanosecond (with floats, a message could be "due" and not yet allowed).
#[derive(Debug, Clone, Copy)]
struct Pace {
    per_second: u64,
    publishers: u64,
}

impl Pace {
    const NANOS: u128 = 1_000_000_000;

    /// How many messages may have been sent `elapsed` into the run.
    fn allowed(self, elapsed: Duration) -> u64 {
        let due = elapsed.as_nanos() * u128::from(self.per_second)
            / (u128::from(self.publishers) * Pace::NANOS);
        u64::try_from(due).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// When message `seq` is due (rounded up to the nanosecond).
    fn due_at(self, seq: u64) -> Duration {
        let nanos = (u128::from(seq) * u128::from(self.publishers) * Pace::NANOS)
            .div_ceil(u128::from(self.per_second));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Handles the acknowledgements read so far: frees their packet ids, answers PUBREC with
/// PUBREL, counts rejections.
fn take_acks(conn: &mut Conn, ids: &mut PacketIds, shared: &Shared) -> Result<(), BenchError> {
    while let Some(packet) = conn.try_decode()? {
        match packet {
            Packet::PubAck(ack) | Packet::PubComp(ack) => {
                if !ack.reason_code.is_success() {
                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                }
                ids.free(ack.packet_id.get());
            }
            Packet::PubRec(ack) if ack.reason_code.is_success() => {
                conn.queue(Packet::PubRel(Ack::new(ack.packet_id)))?;
            }
            Packet::PubRec(ack) => {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                ids.free(ack.packet_id.get());
            }
            Packet::PingResp => {}
            other => return Err(conn.unexpected(&other)),
        }
    }
    Ok(())
}

/// What a subscriber hands back at the end.
struct Received {
    conn: Conn,
    checker: Checker,
    latency: Histogram,
    last_delivery: Option<Instant>,
}

/// One subscriber: checks and times every message until told to finish.
async fn receive(
    mut conn: Conn,
    s: usize,
    shared: Arc<Shared>,
    publishers: usize,
    mut finished: watch::Receiver<bool>,
) -> Result<Received, BenchError> {
    let mut checker = Checker::new(publishers);
    let mut latency = Histogram::default();
    let mut last_delivery = None;
    loop {
        tokio::select! {
            read = conn.read_more() => read?,
            _ = finished.changed() => break,
        }
        let now_ns = shared.ns();
        let mut got = 0u64;
        while let Some(packet) = conn.try_decode()? {
            match packet {
                Packet::Publish(publish) => {
                    got += 1;
                    match Stamp::read(&publish.payload) {
                        Some(stamp) => {
                            checker.record(stamp.publisher, stamp.seq);
                            latency.record(now_ns.saturating_sub(stamp.sent_ns));
                        }
                        None => checker.foreign += 1,
                    }
                    match (publish.qos, publish.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => conn.queue(Packet::PubAck(Ack::new(id)))?,
                        (QoS::ExactlyOnce, Some(id)) => conn.queue(Packet::PubRec(Ack::new(id)))?,
                        _ => {}
                    }
                }
                Packet::PubRel(ack) => conn.queue(Packet::PubComp(Ack::new(ack.packet_id)))?,
                Packet::PingResp => {}
                other => return Err(conn.unexpected(&other)),
            }
        }
        conn.flush().await?;
        if got > 0 {
            last_delivery = Some(Instant::now());
            // Distinct messages only: duplicates and strays must neither end the drain early
            // nor open a publisher's window.
            for (p, delivered) in shared.delivered[s].iter().enumerate() {
                let distinct = checker.distinct_from(p as u32);
                // Written only when it moved: each store takes the line from the readers.
                if delivered.load(Ordering::Relaxed) != distinct {
                    delivered.store(distinct, Ordering::Release);
                }
            }
            shared.progress.notify_waiters();
        }
    }
    Ok(Received {
        conn,
        checker,
        latency,
        last_delivery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Scenario;

    #[test]
    fn a_paced_publisher_sends_each_message_when_due_and_not_before() {
        for (per_second, publishers) in [(5_000, 1), (20_000, 1), (3, 1), (5_000, 3), (7, 4)] {
            let pace = Pace {
                per_second,
                publishers,
            };
            for seq in [0, 1, 2, 999, 5_000, 123_457] {
                let due = pace.due_at(seq);
                // At its time message `seq` may go (seq + 1 in all), a moment before not.
                assert_eq!(pace.allowed(due), seq + 1, "{pace:?} #{seq}");
                if let Some(before) = due.checked_sub(Duration::from_nanos(1)) {
                    assert_eq!(pace.allowed(before), seq, "{pace:?} #{seq}");
                }
            }
        }
        // A 1 s run at 5,000/s sends 5,000 messages before its end (the 5,001st is due at
        // the end itself); shared by 4 publishers, 1,250 each.
        let second = Duration::from_secs(1) - Duration::from_nanos(1);
        let alone = Pace {
            per_second: 5_000,
            publishers: 1,
        };
        assert_eq!(alone.allowed(second), 5_000);
        let shared = Pace {
            per_second: 5_000,
            publishers: 4,
        };
        assert_eq!(shared.allowed(second), 1_250);
    }

    #[test]
    fn each_publisher_gets_its_share_of_the_window() {
        // fanin: one subscriber hears 4 publishers.
        let fanin = Plan::new(Scenario::Fanin, "r", 4, 1);
        assert_eq!(per_publisher_window(500, &fanin), 125);
        // fanout: each subscriber hears the one publisher.
        let fanout = Plan::new(Scenario::Fanout, "r", 1, 8);
        assert_eq!(per_publisher_window(500, &fanout), 500);
        // topics: the + and # subscribers hear all 8; never below 1.
        let topics = Plan::new(Scenario::Topics, "r", 8, 24);
        assert_eq!(per_publisher_window(500, &topics), 62);
        assert_eq!(per_publisher_window(3, &topics), 1);
    }
}
