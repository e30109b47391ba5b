//! Broker-wide counters, updated lock-free on the hot paths. Exposition (Prometheus, `$SYS`)
//! reads them; nothing here formats anything.

use std::sync::atomic::{AtomicU64, Ordering};

use corvus_core::DropReason;

pub use crate::sources::SourceLimit;

#[derive(Debug)]
pub struct Metrics {
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    refused_too_many: AtomicU64,
    refused_too_fast: AtomicU64,
    /// Messages the broker published itself on `$SYS` (counted in `sys.rs`). Routing counts
    /// them in `messages_received` like any message; statistics take them out again.
    pub sys_published: AtomicU64,
    /// PUBLISH packets and their payload bytes, by QoS, received from clients and sent to
    /// them.
    publish_received: [AtomicU64; 3],
    publish_received_bytes: [AtomicU64; 3],
    publish_sent: [AtomicU64; 3],
    publish_sent_bytes: [AtomicU64; 3],
    /// Refused CONNECTs by the CONNACK reason code sent (or that would have been sent).
    refused_by_code: [AtomicU64; 256],
    /// DISCONNECTs the broker sent, by reason code.
    disconnects_by_code: [AtomicU64; 256],
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
            connections_current: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            dropped: Default::default(),
            refused_too_many: AtomicU64::new(0),
            refused_too_fast: AtomicU64::new(0),
            sys_published: AtomicU64::new(0),
            publish_received: Default::default(),
            publish_received_bytes: Default::default(),
            publish_sent: Default::default(),
            publish_sent_bytes: Default::default(),
            // Arrays this long have no Default.
            refused_by_code: std::array::from_fn(|_| AtomicU64::new(0)),
            disconnects_by_code: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Metrics {
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

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }
}
