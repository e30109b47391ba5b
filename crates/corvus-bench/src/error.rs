//! Why a benchmark run could not go on.

use std::net::SocketAddr;

/// A failure that stops the run (as opposed to lost or reordered messages, which are
/// counted and reported).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot resolve {host}:{port}: {reason}")]
    Resolve {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("{client}: cannot connect to {addr}: {source}")]
    Connect {
        client: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{client}: the broker refused the connection with reason code 0x{code:02X}")]
    Refused { client: String, code: u8 },
    #[error("{client}: the broker refused the subscription to {filter} (0x{code:02X})")]
    SubscribeRefused {
        client: String,
        filter: String,
        code: u8,
    },
    #[error("{client}: the broker closed the connection{during}")]
    Closed { client: String, during: String },
    #[error("{client}: the broker sent a malformed packet: {reason}")]
    Malformed { client: String, reason: String },
    #[error("{client}: unexpected {what} from the broker")]
    Unexpected { client: String, what: String },
    #[error("{client}: {source}")]
    Io {
        client: String,
        source: std::io::Error,
    },
    #[error("{client}: no answer from the broker within {seconds} s ({waiting_for})")]
    Timeout {
        client: String,
        seconds: u64,
        waiting_for: String,
    },
    #[error("{client}: stalled with {unseen} messages sent and not received by every subscriber for {seconds} s (lost?)")]
    Stalled {
        client: String,
        unseen: u64,
        seconds: u64,
    },
    #[error("{client}: the broker granted QoS {granted} for {filter}, not the {asked} asked for")]
    Downgraded {
        client: String,
        filter: String,
        granted: u8,
        asked: u8,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}
