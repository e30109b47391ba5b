//! Per-listener figures: connections and bytes of each MQTT listener, so an operator sees
//! which one (the public WebSocket port, the gateways' TLS port) carries what.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use crate::metrics::Metrics;

#[derive(Debug)]
pub struct ListenerFigures {
    /// The address it listens on (the port chosen, for port 0).
    pub addr: SocketAddr,
    /// `mqtt`, `mqtts`, `ws` or `wss`.
    pub kind: &'static str,
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
}

impl ListenerFigures {
    pub fn new(addr: SocketAddr, kind: &'static str) -> ListenerFigures {
        ListenerFigures {
            addr,
            kind,
            connections_current: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }

    pub fn connected(&self) {
        Metrics::add(&self.connections_total, 1);
        Metrics::add(&self.connections_current, 1);
    }

    pub fn disconnected(&self) {
        self.connections_current
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
