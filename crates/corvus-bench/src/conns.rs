//! conns: how fast the broker accepts connections, whether it keeps them all (every PING
//! answered while they are held), and what each costs it in memory.
//!
//! Connections come from 127.0.0.2 to 127.0.0.251 in turn when the broker is on 127.0.0.1
//! (the whole 127/8 is loopback on Linux), so that neither the per-source limits a broker
//! may have nor the ephemeral ports of one source address are what is measured.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{Disconnect, Packet};
use tokio::sync::{watch, Semaphore};

use crate::client::{Conn, Dial};
use crate::error::BenchError;
use crate::options::BenchArgs;
use crate::progress::{thousands, ProgressLine};
use crate::report::{Connections, Report, Rss};
use crate::rss;

/// Source addresses used in turn.
const SOURCES: u32 = 250;
/// How often each held connection pings.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a ping may wait for its answer after the hold ends.
const PONG_WITHIN: Duration = Duration::from_secs(10);
/// Memory settles a moment after the last connection before it is read.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    failed: AtomicU64,
    pings: AtomicU64,
    pongs: AtomicU64,
    dropped: AtomicU64,
}

/// The source address of connection `i` for a broker at `broker`.
fn source_of(i: u32, broker: SocketAddr) -> Option<IpAddr> {
    match broker.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Some(IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (i % SOURCES) as u8,
        ))),
        _ => None,
    }
}

pub async fn run(
    args: &BenchArgs,
    addr: SocketAddr,
    report: &mut Report,
) -> Result<(), BenchError> {
    let wanted = args.connections;
    if let Err(e) = crate::limits::raise_open_files(u64::from(wanted) + 100) {
        report.errors.push(e);
    }
    let rss_before = args.pid.and_then(rss::rss_kb);
    let cpu_before = args.pid.and_then(crate::cpu::cpu_seconds);
    let sampler = args.pid.map(rss::Sampler::start);
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1) as usize));
    let (stop, stopped) = watch::channel(false);
    let (hold_tx, hold) = watch::channel(None::<Instant>);
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let progress = {
        let counters = counters.clone();
        ProgressLine::start(move |elapsed| {
            format!(
                "conns {:.0} s: {} of {} connected, {} failed, pings {} answered {}",
                elapsed.as_secs_f64(),
                thousands(counters.opened.load(Ordering::Relaxed)),
                thousands(u64::from(wanted)),
                counters.failed.load(Ordering::Relaxed),
                thousands(counters.pings.load(Ordering::Relaxed)),
                thousands(counters.pongs.load(Ordering::Relaxed)),
            )
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(wanted as usize);
    for i in 0..wanted {
        let dial = Dial {
            addr,
            local: source_of(i, addr),
            version: args.protocol(),
            keep_alive: 60,
            read_chunk: 64,
        };
        let counters = counters.clone();
        let gate = gate.clone();
        let stopped = stopped.clone();
        let hold = hold.clone();
        let first_error = first_error.clone();
        let stagger = PING_EVERY.mul_f64(f64::from(i % 1000) / 1000.0);
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened = Conn::open(&dial, &format!("bench-conn-{i}")).await;
            drop(permit);
            match opened {
                Ok(conn) => {
                    counters.opened.fetch_add(1, Ordering::Relaxed);
                    hold_connection(conn, &counters, stagger, hold, stopped).await;
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }));
    }
    // Every attempt answered (or failed).
    while counters.opened.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
        < u64::from(wanted)
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let connecting = started.elapsed().as_secs_f64().max(1e-9);
    let cpu_connected = args.pid.and_then(crate::cpu::cpu_seconds);
    tokio::time::sleep(SETTLE).await;
    let rss_connected = args.pid.and_then(rss::rss_kb);
    // The connections the broker held when its memory was read.
    let held = counters.opened.load(Ordering::Relaxed) - counters.dropped.load(Ordering::Relaxed);
    let _ = hold_tx.send(Some(Instant::now()));
    tokio::time::sleep(args.duration()).await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    drop(progress);

    let opened = counters.opened.load(Ordering::Relaxed);
    report.connections = Some(Connections {
        opened,
        failed: counters.failed.load(Ordering::Relaxed),
        per_s: opened as f64 / connecting,
        pings: counters.pings.load(Ordering::Relaxed),
        pongs: counters.pongs.load(Ordering::Relaxed),
        dropped: counters.dropped.load(Ordering::Relaxed),
        broker_cpu_us: cpu_before
            .zip(cpu_connected)
            .filter(|_| opened > 0)
            .map(|(before, after)| (after - before) * 1e6 / opened as f64),
    });
    report.elapsed_s = started.elapsed().as_secs_f64();
    if let Some(e) = first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        report.errors.push(format!("first failed connection: {e}"));
    }
    if let (Some(pid), Some(sampler)) = (args.pid, sampler) {
        let before_kb = rss_before.unwrap_or(0);
        let connected_kb = rss_connected.unwrap_or(0);
        report.rss = Some(Rss {
            before_kb,
            after_kb: rss::rss_kb(pid).unwrap_or(0),
            peak_kb: sampler.stop(pid),
            per_connection_bytes: (held > 0)
                .then(|| connected_kb.saturating_sub(before_kb) as f64 * 1024.0 / held as f64),
        });
    }
    Ok(())
}

/// Holds one connection until told to stop: pings every [`PING_EVERY`] (the first after
/// `stagger`, so that pings spread out) and counts the answers; counts the connection as
/// dropped if the broker closes it.
async fn hold_connection(
    mut conn: Conn,
    counters: &Counters,
    stagger: Duration,
    mut hold: watch::Receiver<Option<Instant>>,
    mut stopped: watch::Receiver<bool>,
) {
    // Pinging starts with the hold, once every connection is open.
    let held_from = loop {
        if let Some(at) = *hold.borrow_and_update() {
            break at;
        }
        tokio::select! {
            changed = hold.changed() => if changed.is_err() { return },
            read = conn.read_more() => {
                if read.is_err() {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    };
    let mut next_ping = held_from + stagger;
    let mut awaiting = false;
    let mut stopping_at = None::<Instant>;
    loop {
        if stopping_at.is_some() && !awaiting {
            break;
        }
        let pinging = !awaiting && stopping_at.is_none();
        let give_up = stopping_at.unwrap_or(next_ping) + PONG_WITHIN;
        tokio::select! {
            _ = tokio::time::sleep_until(next_ping.into()), if pinging => {
                if conn.queue(Packet::PingReq).is_err() || conn.flush().await.is_err() {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                counters.pings.fetch_add(1, Ordering::Relaxed);
                awaiting = true;
                next_ping += PING_EVERY;
            }
            read = conn.read_more() => {
                if read.is_err() {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                loop {
                    match conn.try_decode() {
                        Ok(Some(Packet::PingResp)) if awaiting => {
                            counters.pongs.fetch_add(1, Ordering::Relaxed);
                            awaiting = false;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        // A malformed packet ends the connection as the broker closing it
                        // would: the run is not clean.
                        Err(_) => {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
            _ = stopped.changed(), if stopping_at.is_none() => {
                stopping_at = Some(Instant::now());
            }
            _ = tokio::time::sleep_until(give_up.into()), if stopping_at.is_some() => break,
        }
    }
    let _ = conn.queue(Packet::Disconnect(Disconnect::default()));
    let _ = conn.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_spread_over_loopback_sources() {
        let broker: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let at = |i| source_of(i, broker);
        assert_eq!(at(0), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(at(1), Some("127.0.0.3".parse().unwrap()));
        assert_eq!(at(SOURCES - 1), Some("127.0.0.251".parse().unwrap()));
        // After SOURCES addresses, round again.
        assert_eq!(at(SOURCES), at(0));
        // A broker elsewhere is reached from the system's choice of address.
        assert_eq!(source_of(0, "10.0.0.1:1883".parse().unwrap()), None);
        assert_eq!(source_of(0, "[::1]:1883".parse().unwrap()), None);
    }
}
