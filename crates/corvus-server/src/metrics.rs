//! Broker-wide counters and latency histograms, updated lock-free on the hot paths.
//! Exposition (Prometheus, `$SYS`) reads them; nothing here formats anything or reads a
//! clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use corvus_core::{DropReason, Histogram, HistogramSnapshot, Stamp};

use crate::listener_metrics::ListenerFigures;
pub use crate::sources::SourceLimit;

/// Bucket bounds of the publish-to-delivery latency, in microseconds: from a copy handed on
/// within the same wake-up to one that waited seconds for a slow or offline subscriber.
pub const DELIVERY_LATENCY_BOUNDS: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

#[derive(Debug)]
pub struct Metrics {
    /// Each listener's connections and bytes; the broker's are their sums.
    listeners: Mutex<Vec<Arc<ListenerFigures>>>,
    dropped: [AtomicU64; DropReason::ALL.len()],
    refused_too_many: AtomicU64,
    refused_too_fast: AtomicU64,
    /// PUBLISH packets and their payload bytes, by QoS, received from clients and sent to
    /// them.
    publish_received: [AtomicU64; 3],
    publish_received_bytes: [AtomicU64; 3],
    publish_sent: [AtomicU64; 3],
    publish_sent_bytes: [AtomicU64; 3],
    /// Refused CONNECTs by the reason code of the CONNACK sent.
    refused_by_code: [AtomicU64; 256],
    /// DISCONNECTs the broker sent, by reason code.
    disconnects_by_code: [AtomicU64; 256],
    /// From a client's PUBLISH decoded to each copy of it encoded for a subscriber.
    delivery_latency: Histogram,
}

/// A family of counters by reason code: the codes with a count, for exposition.
fn by_code(counters: &[AtomicU64; 256]) -> impl Iterator<Item = (u8, u64)> + '_ {
    counters.iter().enumerate().filter_map(|(code, counter)| {
        let n = counter.load(Ordering::Relaxed);
        (n > 0).then_some((code as u8, n))
    })
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listeners: Mutex::new(Vec::new()),
            dropped: Default::default(),
            refused_too_many: AtomicU64::new(0),
            refused_too_fast: AtomicU64::new(0),
            publish_received: Default::default(),
            publish_received_bytes: Default::default(),
            publish_sent: Default::default(),
            publish_sent_bytes: Default::default(),
            // Arrays this long have no Default.
            refused_by_code: std::array::from_fn(|_| AtomicU64::new(0)),
            disconnects_by_code: std::array::from_fn(|_| AtomicU64::new(0)),
            delivery_latency: Histogram::new(DELIVERY_LATENCY_BOUNDS),
        }
    }
}

impl Metrics {
    /// A new listener's figures, counted from now on.
    pub fn register_listener(
        &self,
        addr: std::net::SocketAddr,
        kind: &'static str,
    ) -> Arc<ListenerFigures> {
        let figures = Arc::new(ListenerFigures::new(addr, kind));
        self.listeners().push(figures.clone());
        figures
    }

    /// The listeners' figures, in the order they started.
    pub fn listeners(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ListenerFigures>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One figure summed over the listeners.
    fn sum(&self, field: fn(&ListenerFigures) -> &AtomicU64) -> u64 {
        self.listeners()
            .iter()
            .map(|l| Metrics::get(field(l)))
            .sum()
    }

    /// MQTT network connections open now, all listeners.
    pub fn connections_current(&self) -> u64 {
        self.sum(|l| &l.connections_current)
    }

    /// Connections accepted since start, all listeners.
    pub fn connections_total(&self) -> u64 {
        self.sum(|l| &l.connections_total)
    }

    /// Bytes read from clients, all listeners.
    pub fn bytes_received(&self) -> u64 {
        self.sum(|l| &l.bytes_received)
    }

    /// Bytes written to clients, all listeners.
    pub fn bytes_sent(&self) -> u64 {
        self.sum(|l| &l.bytes_sent)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A connection refused by a per-source limit, before any MQTT.
    pub fn count_refused(&self, limit: SourceLimit) {
        let counter = match limit {
            SourceLimit::TooMany => &self.refused_too_many,
            SourceLimit::TooFast => &self.refused_too_fast,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, limit: SourceLimit) -> u64 {
        match limit {
            SourceLimit::TooMany => Metrics::get(&self.refused_too_many),
            SourceLimit::TooFast => Metrics::get(&self.refused_too_fast),
        }
    }

    pub fn count_publish_received(&self, qos: mqtt_codec::QoS, payload: usize) {
        Metrics::add(&self.publish_received[qos as usize], 1);
        Metrics::add(&self.publish_received_bytes[qos as usize], payload as u64);
    }

    pub fn count_publish_sent(&self, qos: mqtt_codec::QoS, payload: usize) {
        Metrics::add(&self.publish_sent[qos as usize], 1);
        Metrics::add(&self.publish_sent_bytes[qos as usize], payload as u64);
    }

    /// (packets, payload bytes) received with this QoS.
    pub fn publish_received(&self, qos: mqtt_codec::QoS) -> (u64, u64) {
        let i = qos as usize;
        (
            Metrics::get(&self.publish_received[i]),
            Metrics::get(&self.publish_received_bytes[i]),
        )
    }

    /// PUBLISH packets received from clients, all QoS together (the broker's own messages,
    /// wills and `$SYS`, are not received).
    pub fn messages_received(&self) -> u64 {
        self.publish_received.iter().map(Metrics::get).sum()
    }

    /// PUBLISH packets sent to clients, all QoS together.
    pub fn messages_sent(&self) -> u64 {
        self.publish_sent.iter().map(Metrics::get).sum()
    }

    /// (packets, payload bytes) sent with this QoS.
    pub fn publish_sent(&self, qos: mqtt_codec::QoS) -> (u64, u64) {
        let i = qos as usize;
        (
            Metrics::get(&self.publish_sent[i]),
            Metrics::get(&self.publish_sent_bytes[i]),
        )
    }

    pub fn count_refused_connect(&self, reason: mqtt_codec::ReasonCode) {
        Metrics::add(&self.refused_by_code[reason as usize], 1);
    }

    pub fn count_disconnect(&self, reason: mqtt_codec::ReasonCode) {
        Metrics::add(&self.disconnects_by_code[reason as usize], 1);
    }

    /// Refused CONNECTs by reason code, the codes that happened.
    pub fn refused_connects(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        by_code(&self.refused_by_code)
    }

    /// DISCONNECTs sent by reason code, the codes that happened.
    pub fn disconnects(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        by_code(&self.disconnects_by_code)
    }

    /// Copies of messages sent for the first time just now, by the receive stamps of their
    /// PUBLISH ([`corvus_core::Connection::sent_stamps`]): one batch, few atomic adds. The
    /// clock (`now`) is read only if there is something to observe.
    pub fn observe_deliveries(&self, sent: &[Stamp], now: impl FnOnce() -> Stamp) {
        if !sent.is_empty() {
            let now = now();
            self.delivery_latency
                .observe_all(sent.iter().map(|&at| crate::clock::micros_between(at, now)));
        }
    }

    /// The publish-to-delivery latencies observed so far.
    pub fn delivery_latency(&self) -> HistogramSnapshot {
        self.delivery_latency.snapshot()
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }
}
