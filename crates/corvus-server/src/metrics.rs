//! Broker-wide counters, updated lock-free on the hot paths. Exposition (Prometheus, `$SYS`)
//! reads them; nothing here formats anything.

use std::sync::atomic::{AtomicU64, Ordering};

use corvus_core::DropReason;

pub use crate::sources::SourceLimit;

#[derive(Debug, Default)]
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

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }
}
