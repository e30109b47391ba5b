//! What the broker knows of a connected client beyond its session: where it came from, how
//! it authenticated, when, and what it has sent and received on this connection. The
//! connection task creates it at CONNECT and keeps its counters; the session's owner record
//! holds it so the admin API can show who is connected (`http/api/clients.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use corvus_core::Millis;
use mqtt_codec::ProtocolVersion;

use crate::listener_metrics::ListenerFigures;

#[derive(Debug)]
pub struct ConnectionInfo {
    pub facts: ConnectionFacts,
    /// PUBLISH packets read from it and written to it on this connection. Only its own
    /// task writes them, so they cost an uncontended atomic each.
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
}

/// What is known of a connection when its CONNECT is accepted.
#[derive(Debug)]
pub struct ConnectionFacts {
    pub peer: SocketAddr,
    /// The listener it connected to (its address and kind: `mqtt`, `mqtts`, `ws` or `wss`),
    /// shared by its connections.
    pub listener: Arc<ListenerFigures>,
    pub protocol: ProtocolVersion,
    /// The user name its CONNECT carried (never the password).
    pub username: Option<Box<str>>,
    /// Who it was authenticated as, as `Identity::describe` says it (never a token).
    pub identity: Arc<str>,
    /// When its CONNECT was accepted, in milliseconds since the Unix epoch.
    pub connected_at: Millis,
    pub keep_alive: u16,
    pub clean_start: bool,
}

impl ConnectionInfo {
    pub fn new(facts: ConnectionFacts) -> ConnectionInfo {
        ConnectionInfo {
            facts,
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
        }
    }

    pub fn count_received(&self, n: u64) {
        self.messages_received.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_sent(&self, n: u64) {
        self.messages_sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn messages_received(&self) -> u64 {
        self.messages_received.load(Ordering::Relaxed)
    }

    pub fn messages_sent(&self) -> u64 {
        self.messages_sent.load(Ordering::Relaxed)
    }

    /// The protocol version as people write it.
    pub fn protocol_name(&self) -> &'static str {
        match self.facts.protocol {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// A connection's info for unit tests that need an owner.
    pub(crate) fn info() -> Arc<ConnectionInfo> {
        Arc::new(ConnectionInfo::new(ConnectionFacts {
            peer: "127.0.0.1:50000".parse().expect("an address"),
            listener: Arc::new(ListenerFigures::new(
                "127.0.0.1:1883".parse().expect("an address"),
                "mqtt",
            )),
            protocol: ProtocolVersion::V5,
            username: None,
            identity: "anonymous".into(),
            connected_at: 0,
            keep_alive: 60,
            clean_start: true,
        }))
    }

    #[test]
    fn counters_start_at_zero_and_count() {
        let info = info();
        info.count_received(3);
        info.count_sent(1);
        assert_eq!((info.messages_received(), info.messages_sent()), (3, 1));
        assert_eq!(info.protocol_name(), "5.0");
    }
}
