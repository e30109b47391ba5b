//! Limits per source address, before anything else is known about a connection: how many
//! connections one address may have open, and how fast it may open new ones. A refused
//! connection is closed at once, before the TLS handshake or a byte of MQTT is read, so a
//! flood from one address costs the broker an accept and a close.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::open_connections::OpenConnections;
use crate::rate::TokenBucket;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRefusal {
    /// As the variant below, and the first refusal since the address was last admitted
    /// (the one worth logging: a flood must not flood the log too).
    First(SourceLimit),
    Again(SourceLimit),
}

impl SourceRefusal {
    pub fn limit(self) -> SourceLimit {
        match self {
            SourceRefusal::First(limit) | SourceRefusal::Again(limit) => limit,
        }
    }
}

/// A new variant must join [`SourceLimit::ALL`] (the exhaustive match in `label` is the
/// reminder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLimit {
    /// `max_connections_per_source` open already.
    TooMany,
    /// Opening faster than `connection_rate_per_source`.
    TooFast,
}

impl SourceLimit {
    /// Every per-source limit a connection can be refused by.
    pub const ALL: [SourceLimit; 2] = [SourceLimit::TooMany, SourceLimit::TooFast];

    pub fn describe(self) -> &'static str {
        match self {
            SourceLimit::TooMany => "too many connections open from this address",
            SourceLimit::TooFast => "connections opened too fast from this address",
        }
    }

    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            SourceLimit::TooMany => "source_connections",
            SourceLimit::TooFast => "source_rate",
        }
    }
}

#[derive(Debug)]
struct Source {
    open: usize,
    bucket: Option<TokenBucket>,
    /// Refusing since the last admission: only the first refusal of a run is logged.
    refusing: bool,
}

#[derive(Debug)]
pub struct SourceLimits {
    /// Replaced by a reload; addresses already seen keep their rate allowance's rate.
    max_open: AtomicUsize,
    rate: AtomicU32,
    sources: Mutex<HashMap<IpAddr, Source>>,
    /// Every connection the listener has open (each holds a slot until it ends).
    pub open: OpenConnections,
}

/// Held while a connection is open; counts it against its address until dropped.
#[derive(Debug)]
pub struct SourceSlot {
    limits: Arc<SourceLimits>,
    addr: IpAddr,
}

impl SourceLimits {
    /// `max_open` and `rate` of 0 mean no limit.
    pub fn new(max_open: usize, rate: u32) -> Arc<SourceLimits> {
        Arc::new(SourceLimits {
            max_open: AtomicUsize::new(max_open),
            rate: AtomicU32::new(rate),
            sources: Mutex::new(HashMap::new()),
            open: OpenConnections::default(),
        })
    }

    /// New limits (a reload): the count applies at once; a new rate to addresses not
    /// tracked at the moment.
    pub fn set_limits(&self, max_open: usize, rate: u32) {
        self.max_open.store(max_open, Ordering::Relaxed);
        self.rate.store(rate, Ordering::Relaxed);
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Source>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `addr`, or why not.
    pub fn admit(
        self: &Arc<Self>,
        addr: IpAddr,
        now: Instant,
    ) -> Result<SourceSlot, SourceRefusal> {
        let (max_open, rate) = (
            self.max_open.load(Ordering::Relaxed),
            self.rate.load(Ordering::Relaxed),
        );
        let mut sources = self.sources();
        let source = sources.entry(addr).or_insert_with(|| Source {
            open: 0,
            bucket: (rate > 0).then(|| TokenBucket::new(rate, now)),
            refusing: false,
        });
        let limit = if max_open > 0 && source.open >= max_open {
            Some(SourceLimit::TooMany)
        } else if source.bucket.as_mut().is_some_and(|b| !b.try_take(now)) {
            Some(SourceLimit::TooFast)
        } else {
            None
        };
        if let Some(limit) = limit {
            let first = !std::mem::replace(&mut source.refusing, true);
            return Err(match first {
                true => SourceRefusal::First(limit),
                false => SourceRefusal::Again(limit),
            });
        }
        source.refusing = false;
        source.open += 1;
        self.open.opened();
        Ok(SourceSlot {
            limits: self.clone(),
            addr,
        })
    }

    /// Forgets addresses with nothing open whose rate allowance is whole again, so that the
    /// table holds only addresses that matter now.
    pub fn sweep(&self, now: Instant) {
        self.sources().retain(|_, source| {
            source.open > 0 || source.bucket.as_mut().is_some_and(|b| !b.is_full(now))
        });
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.sources().len()
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Some(source) = self.limits.sources().get_mut(&self.addr) {
            source.open = source.open.saturating_sub(1);
        }
        self.limits.open.closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_connections_are_counted_per_address() {
        let limits = SourceLimits::new(2, 0);
        let now = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limits.admit(a, now).unwrap();
        let _second = limits.admit(a, now).unwrap();
        assert_eq!(
            limits.admit(a, now).unwrap_err(),
            SourceRefusal::First(SourceLimit::TooMany)
        );
        assert_eq!(
            limits.admit(a, now).unwrap_err(),
            SourceRefusal::Again(SourceLimit::TooMany)
        );
        let _other = limits.admit(b, now).unwrap();
        drop(first);
        assert!(limits.admit(a, now).is_ok());
    }

    #[test]
    fn the_rate_is_per_address_and_idle_addresses_are_forgotten() {
        let limits = SourceLimits::new(0, 3);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| limits.admit(a, now).unwrap()).collect();
        assert_eq!(
            limits.admit(a, now).unwrap_err(),
            SourceRefusal::First(SourceLimit::TooFast)
        );
        drop(slots);
        assert!(limits.admit(a, now + Duration::from_millis(400)).is_ok());
        limits.sweep(now + Duration::from_millis(400));
        assert_eq!(limits.tracked(), 1);
        limits.sweep(now + Duration::from_secs(5));
        assert_eq!(limits.tracked(), 0);
    }
}
