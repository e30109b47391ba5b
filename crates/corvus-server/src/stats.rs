//! What the broker is doing, at one moment: [`BrokerStats`], a plain snapshot of its gauges
//! and counters, and the load averages ([`LoadAverages`]) that turn counters into rates.
//! `$SYS` publishes it (`sys.rs`); the Prometheus exposition and the admin API can read the
//! same struct.
//!
//! Taking a snapshot only reads the broker: atomics, the index and retained counts, and one
//! walk over the sessions ([`BrokerStats::collect`]) that locks each session briefly, alone,
//! with no registry lock held. That walk is made for a snapshot every few seconds, like the
//! sweep; it must never run per message or per connection.
//!
//! The load average math reads no clock: the caller passes the elapsed time in.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corvus_core::DropReason;

use crate::broker::Broker;
use crate::metrics::SourceLimit;

/// The load average windows, as Mosquitto's: 1, 5 and 15 minutes.
pub const LOAD_WINDOWS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
];

/// A snapshot of the broker. Counters ("since start") only grow while the broker runs;
/// gauges ("now") are what holds at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BrokerStats {
    /// Seconds since the broker started serving.
    pub uptime_seconds: u64,
    /// Gauge: clients connected now (sessions with a connection attached).
    pub clients_connected: u64,
    /// Gauge: sessions the broker holds, connected or not.
    pub clients_total: u64,
    /// Gauge: sessions held for a client that is not connected (persistent sessions, and
    /// for a moment those whose connection has just closed). `clients_total -
    /// clients_connected`.
    pub clients_disconnected: u64,
    /// The highest `clients_connected` seen by a snapshot since start: sampled at each
    /// snapshot (as Mosquitto's `clients/maximum` is), so a peak between two is missed.
    /// Equal to `clients_connected` in a snapshot taken without a [`StatsTracker`].
    pub clients_maximum: u64,
    /// Gauge: network connections open now, including those that have not completed CONNECT
    /// yet (counted after TLS and the WebSocket upgrade).
    pub connections_open: u64,
    /// Counter: network connections that reached MQTT since start (after TLS and the
    /// WebSocket upgrade; connections refused by a per-source limit are not among them).
    pub connections_total: u64,
    /// Counter: connections refused by a per-source limit since start, before any MQTT, by
    /// the limit's label (`source_connections`, `source_rate`).
    pub connections_refused: BTreeMap<&'static str, u64>,
    /// Counter: PUBLISH packets received from clients since start, as Mosquitto counts them
    /// (a re-sent one again). The broker's own messages (wills, `$SYS`) are not counted.
    pub messages_received: u64,
    /// Counter: PUBLISH packets written to clients since start (resends and `$SYS` messages
    /// included).
    pub messages_sent: u64,
    /// Counter: MQTT bytes read from clients since start (inside TLS and WebSocket framing).
    pub bytes_received: u64,
    /// Counter: MQTT bytes written to clients since start (inside TLS and WebSocket framing).
    pub bytes_sent: u64,
    /// Gauge: subscriptions, one per (client, filter); a client in a shared group counts
    /// once.
    pub subscriptions: u64,
    /// Gauge: retained messages of clients held (`$SYS`'s own are apart).
    pub retained_messages: u64,
    /// Gauge: bytes of retained messages held, topic plus payload (as the quota counts them).
    pub retained_bytes: u64,
    /// Gauge: messages waiting in sessions' queues to be sent (not yet in flight), whether
    /// their client is connected or not.
    pub messages_queued: u64,
    /// Gauge: payload bytes of `messages_queued`.
    pub messages_queued_bytes: u64,
    /// Gauge: QoS 1/2 messages sent and not yet acknowledged by their client.
    pub messages_inflight: u64,
    /// Counter: messages not delivered since start, every reason together (the sum of
    /// `messages_dropped_by_reason`).
    pub messages_dropped: u64,
    /// Counter: messages not delivered since start, by reason label (`DropReason::label`).
    /// Every reason is present, 0 included.
    pub messages_dropped_by_reason: BTreeMap<&'static str, u64>,
    /// Rates, per minute, averaged over 1, 5 and 15 minutes. All zero in a snapshot taken
    /// without a [`StatsTracker`].
    pub load: BrokerLoad,
}

impl BrokerStats {
    /// Reads the broker now. Walks every session (see the module docs): for snapshots every
    /// few seconds, never per message. `load` is left at zero and `clients_maximum` at
    /// `clients_connected`: [`StatsTracker::snapshot`] fills them in.
    pub fn collect(broker: &Broker, uptime: Duration) -> BrokerStats {
        let metrics = &broker.metrics;
        let mut clients_total = 0u64;
        let mut clients_connected = 0u64;
        let mut messages_queued = 0u64;
        let mut messages_queued_bytes = 0u64;
        let mut messages_inflight = 0u64;
        for handle in broker.session_handles() {
            clients_total += 1;
            clients_connected += u64::from(handle.is_online());
            let session = handle.lock();
            messages_queued += session.queued_len() as u64;
            messages_queued_bytes += session.queued_bytes() as u64;
            messages_inflight += session.inflight_len() as u64;
        }
        let messages_dropped_by_reason: BTreeMap<_, _> = DropReason::ALL
            .iter()
            .map(|&reason| (reason.label(), metrics.dropped(reason)))
            .collect();
        BrokerStats {
            uptime_seconds: uptime.as_secs(),
            clients_connected,
            clients_total,
            clients_disconnected: clients_total - clients_connected,
            clients_maximum: clients_connected,
            connections_open: metrics.connections_current(),
            connections_total: metrics.connections_total(),
            connections_refused: SourceLimit::ALL
                .iter()
                .map(|&limit| (limit.label(), metrics.refused(limit)))
                .collect(),
            messages_received: metrics.messages_received(),
            messages_sent: metrics.messages_sent(),
            bytes_received: metrics.bytes_received(),
            bytes_sent: metrics.bytes_sent(),
            subscriptions: broker.subscription_count() as u64,
            retained_messages: broker.retained_count() as u64,
            retained_bytes: broker.retained_bytes() as u64,
            messages_queued,
            messages_queued_bytes,
            messages_inflight,
            messages_dropped: messages_dropped_by_reason.values().sum(),
            messages_dropped_by_reason,
            load: BrokerLoad::default(),
        }
    }

    /// The counters the load averages are made of.
    pub fn load_counters(&self) -> LoadCounters {
        LoadCounters {
            messages_received: self.messages_received,
            messages_sent: self.messages_sent,
            bytes_received: self.bytes_received,
            bytes_sent: self.bytes_sent,
            connections: self.connections_total,
            messages_dropped: self.messages_dropped,
        }
    }
}

/// One rate averaged over the three windows, in units per minute (Mosquitto's unit).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Load {
    pub one_minute: f64,
    pub five_minutes: f64,
    pub fifteen_minutes: f64,
}

impl Load {
    /// Folds in `per_minute`, the rate seen over the last `elapsed`: each average moves
    /// towards it by `1 - e^(-elapsed / window)`, as Unix and Mosquitto load averages do. A
    /// constant rate is approached with time constant `window` (63% of the way after one
    /// window); after the rate drops to zero, an average decays as `e^(-t / window)`.
    pub fn update(&mut self, per_minute: f64, elapsed: Duration) {
        let elapsed = elapsed.as_secs_f64();
        let [one, five, fifteen] = LOAD_WINDOWS;
        for (average, window) in [
            (&mut self.one_minute, one),
            (&mut self.five_minutes, five),
            (&mut self.fifteen_minutes, fifteen),
        ] {
            let decay = (-elapsed / window.as_secs_f64()).exp();
            *average = per_minute + decay * (*average - per_minute);
        }
    }

    /// The averages as `[1 min, 5 min, 15 min]`.
    pub fn windows(&self) -> [f64; 3] {
        [self.one_minute, self.five_minutes, self.fifteen_minutes]
    }
}

/// Every load average the broker keeps, each per minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct BrokerLoad {
    /// PUBLISH packets received per minute (`BrokerStats::messages_received`).
    pub messages_received: Load,
    /// PUBLISH packets sent per minute.
    pub messages_sent: Load,
    /// Bytes read per minute.
    pub bytes_received: Load,
    /// Bytes written per minute.
    pub bytes_sent: Load,
    /// New connections per minute.
    pub connections: Load,
    /// Messages dropped per minute, every reason together.
    pub messages_dropped: Load,
}

/// The counters behind [`BrokerLoad`], read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounters {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub connections: u64,
    pub messages_dropped: u64,
}

/// Load averages made from counters read at successive moments.
#[derive(Debug, Clone, Default)]
pub struct LoadAverages {
    last: LoadCounters,
    load: BrokerLoad,
}

impl LoadAverages {
    /// Averages starting at zero, from counters at `start` (zero at the broker's start).
    pub fn new(start: LoadCounters) -> LoadAverages {
        LoadAverages {
            last: start,
            load: BrokerLoad::default(),
        }
    }

    /// Folds in what the counters did over `elapsed`, since the last update. No time
    /// elapsed, nothing changes (what was counted meanwhile goes into the next update).
    pub fn update(&mut self, counters: LoadCounters, elapsed: Duration) {
        if elapsed.is_zero() {
            return;
        }
        let last = std::mem::replace(&mut self.last, counters);
        let minutes = elapsed.as_secs_f64() / 60.0;
        // Counters never go down; if one did, it counts as nothing happening.
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / minutes;
        let l = &mut self.load;
        let c = counters;
        l.messages_received
            .update(rate(c.messages_received, last.messages_received), elapsed);
        l.messages_sent
            .update(rate(c.messages_sent, last.messages_sent), elapsed);
        l.bytes_received
            .update(rate(c.bytes_received, last.bytes_received), elapsed);
        l.bytes_sent
            .update(rate(c.bytes_sent, last.bytes_sent), elapsed);
        l.connections
            .update(rate(c.connections, last.connections), elapsed);
        l.messages_dropped
            .update(rate(c.messages_dropped, last.messages_dropped), elapsed);
    }

    pub fn current(&self) -> BrokerLoad {
        self.load
    }
}

/// The broker's one tracker, shared by `$SYS` and the HTTP endpoint (one start, one set of
/// load averages).
pub type SharedStats = Arc<Mutex<StatsTracker>>;

/// A snapshot from the shared tracker (see [`StatsTracker::snapshot`]). The walk over the
/// sessions runs before the tracker is locked: `$SYS`, `/metrics` and the admin API do not
/// wait for each other's walks.
pub fn snapshot(tracker: &SharedStats, broker: &Broker, now: Instant) -> BrokerStats {
    let started = tracker.lock().unwrap_or_else(|p| p.into_inner()).started;
    let stats = BrokerStats::collect(broker, now.saturating_duration_since(started));
    tracker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .fold(stats, now)
}

/// What successive snapshots need to remember: when the broker started, the load averages,
/// the highest number of clients connected.
#[derive(Debug, Clone)]
pub struct StatsTracker {
    started: Instant,
    last_at: Instant,
    load: LoadAverages,
    clients_maximum: u64,
}

impl StatsTracker {
    /// A tracker for a broker that started at `started`, with its counters at zero then.
    pub fn new(started: Instant) -> StatsTracker {
        StatsTracker {
            started,
            last_at: started,
            load: LoadAverages::default(),
            clients_maximum: 0,
        }
    }

    /// A snapshot at `now`, with the load averages brought up to it. Walks every session
    /// ([`BrokerStats::collect`]).
    pub fn snapshot(&mut self, broker: &Broker, now: Instant) -> BrokerStats {
        let stats = BrokerStats::collect(broker, now.saturating_duration_since(self.started));
        self.fold(stats, now)
    }

    /// Completes a snapshot collected at `now`: the maximum of clients connected, and the
    /// load averages brought up to it.
    pub fn fold(&mut self, mut stats: BrokerStats, now: Instant) -> BrokerStats {
        self.clients_maximum = self.clients_maximum.max(stats.clients_connected);
        stats.clients_maximum = self.clients_maximum;
        self.load.update(
            stats.load_counters(),
            now.saturating_duration_since(self.last_at),
        );
        self.last_at = self.last_at.max(now);
        stats.load = self.load.current();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Claim, Owner, SessionOwnership};

    const TICK: Duration = Duration::from_secs(10);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    /// Feeds `per_minute` for `ticks` ticks of `TICK`.
    fn run(load: &mut Load, per_minute: f64, ticks: u32) {
        for _ in 0..ticks {
            load.update(per_minute, TICK);
        }
    }

    #[test]
    fn a_constant_rate_is_approached_with_each_windows_time_constant() {
        let mut load = Load::default();
        // One minute of 600 per minute.
        run(&mut load, 600.0, 6);
        let after = |window: f64| 600.0 * (1.0 - (-60.0 / window).exp());
        assert!(close(load.one_minute, after(60.0)), "{load:?}");
        assert!(close(load.five_minutes, after(300.0)), "{load:?}");
        assert!(close(load.fifteen_minutes, after(900.0)), "{load:?}");
        // 63% of the way after one window, each.
        assert!(close(load.one_minute, 600.0 * (1.0 - (-1.0f64).exp())));
        // Four hours on, every window has converged.
        run(&mut load, 600.0, 6 * 240);
        for average in load.windows() {
            assert!((average - 600.0).abs() < 0.01, "{load:?}");
        }
    }

    #[test]
    fn a_stop_decays_with_each_windows_time_constant() {
        let mut load = Load {
            one_minute: 100.0,
            five_minutes: 100.0,
            fifteen_minutes: 100.0,
        };
        // Five minutes of nothing.
        run(&mut load, 0.0, 30);
        assert!(close(load.one_minute, 100.0 * (-5.0f64).exp()), "{load:?}");
        assert!(
            close(load.five_minutes, 100.0 * (-1.0f64).exp()),
            "{load:?}"
        );
        assert!(
            close(load.fifteen_minutes, 100.0 * (-1.0f64 / 3.0).exp()),
            "{load:?}"
        );
        assert!(load.one_minute < load.five_minutes && load.five_minutes < load.fifteen_minutes);
    }

    #[test]
    fn the_result_does_not_depend_on_how_time_is_cut() {
        let mut coarse = Load::default();
        coarse.update(120.0, Duration::from_secs(60));
        let mut fine = Load::default();
        for _ in 0..60 {
            fine.update(120.0, Duration::from_secs(1));
        }
        for (a, b) in coarse.windows().into_iter().zip(fine.windows()) {
            assert!(close(a, b), "{coarse:?} {fine:?}");
        }
    }

    #[test]
    fn counters_become_rates_per_minute() {
        let mut averages = LoadAverages::new(LoadCounters::default());
        let mut counters = LoadCounters::default();
        // 5 messages a second, 1 connection every 10 s, for an hour.
        for _ in 0..360 {
            counters.messages_received += 50;
            counters.bytes_sent += 5000;
            counters.connections += 1;
            averages.update(counters, TICK);
        }
        let load = averages.current();
        let after_an_hour = |per_minute: f64, window: Duration| {
            per_minute * (1.0 - (-3600.0 / window.as_secs_f64()).exp())
        };
        for (average, window) in load
            .messages_received
            .windows()
            .into_iter()
            .zip(LOAD_WINDOWS)
        {
            assert!(close(average, after_an_hour(300.0, window)), "{load:?}");
        }
        assert!(close(
            load.bytes_sent.one_minute,
            after_an_hour(30_000.0, LOAD_WINDOWS[0])
        ));
        assert!(close(
            load.connections.five_minutes,
            after_an_hour(6.0, LOAD_WINDOWS[1])
        ));
        assert_eq!(load.messages_sent, Load::default());
        assert_eq!(load.messages_dropped, Load::default());
    }

    #[test]
    fn no_elapsed_time_keeps_what_was_counted_for_the_next_update() {
        let mut averages = LoadAverages::new(LoadCounters::default());
        let counters = LoadCounters {
            messages_sent: 60,
            ..LoadCounters::default()
        };
        averages.update(counters, Duration::ZERO);
        assert_eq!(averages.current(), BrokerLoad::default());
        averages.update(counters, Duration::from_secs(60));
        let expected = 60.0 * (1.0 - (-1.0f64).exp());
        assert!(close(averages.current().messages_sent.one_minute, expected));
    }

    #[test]
    fn a_snapshot_counts_sessions_and_tracks_the_maximum() {
        let broker = Broker::new(corvus_core::BrokerConfig::default());
        let start = Instant::now();
        let mut tracker = StatsTracker::new(start);
        let stats = tracker.snapshot(&broker, start + Duration::from_secs(42));
        assert_eq!(stats.uptime_seconds, 42);
        assert_eq!(
            (stats.clients_total, stats.clients_connected),
            (0, 0),
            "{stats:?}"
        );
        assert_eq!(
            stats.messages_dropped_by_reason.len(),
            DropReason::ALL.len()
        );
        assert_eq!(stats.connections_refused.len(), SourceLimit::ALL.len());
        // One client connects: connected, and the maximum remembers it after it leaves.
        let owner = Owner {
            connection: 1,
            kick: crate::kick::channel().0,
            info: crate::connection_info::tests::info(),
        };
        let Claim::Owned { handle, .. } = broker.claim_session(&"a".into(), owner) else {
            panic!("a new session is owned at once");
        };
        let stats = tracker.snapshot(&broker, start + Duration::from_secs(43));
        assert_eq!(
            (
                stats.clients_total,
                stats.clients_connected,
                stats.clients_maximum
            ),
            (1, 1, 1)
        );
        assert!(broker.release_session(&handle, 1));
        let stats = tracker.snapshot(&broker, start + Duration::from_secs(44));
        assert_eq!(
            (
                stats.clients_total,
                stats.clients_connected,
                stats.clients_disconnected,
                stats.clients_maximum
            ),
            (1, 0, 1, 1)
        );
        // Clients' PUBLISH packets, every QoS.
        broker
            .metrics
            .count_publish_received(mqtt_codec::QoS::AtMostOnce, 1);
        broker
            .metrics
            .count_publish_received(mqtt_codec::QoS::ExactlyOnce, 1);
        broker
            .metrics
            .count_publish_received(mqtt_codec::QoS::AtLeastOnce, 1);
        let stats = tracker.snapshot(&broker, start + Duration::from_secs(54));
        assert_eq!(stats.messages_received, 3);
        assert!(stats.load.messages_received.one_minute > 0.0);
    }
}
