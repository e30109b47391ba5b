//! The Corvus broker's logic, with no I/O: no sockets, files, clocks or randomness. Time and
//! generated identifiers are passed in, packets go in and actions come out, so every rule of
//! the protocol can be tested by feeding events.
//!
//! - [`connection`]: one connection's protocol state machine, CONNECT to close.
//! - [`session`]: what outlives a connection: subscriptions, queue, messages in flight.
//! - [`topic_tree`]: the subscription index (filters, wildcards, shared groups).
//! - [`router`]: who gets a published message, at which QoS, with which identifiers.
//! - [`retained`]: retained messages, found by filter.
//! - [`authorize`]: what the runtime's access control answers the core.
//! - [`config`]: the limits the core enforces and advertises.
//! - [`histogram`]: latency histograms the runtime and the store record into.

mod arena;
pub mod authorize;
pub mod config;
pub mod connection;
pub mod histogram;
pub mod queue;
pub mod retained;
pub mod router;
pub mod session;
#[cfg(test)]
mod test_model;
pub mod topic_tree;
pub mod types;

pub use authorize::{AllowAll, Authorizer, Principal, Verdict};
pub use config::{BrokerConfig, QueueFullPolicy};
pub use connection::{Action, Authentication, Closed, ConnectRequest, Connection, Refusal};
pub use histogram::{Histogram, HistogramSnapshot};
pub use retained::RetainedStore;
pub use session::{DropReason, Session, StoreEvent};
pub use topic_tree::{Match, SharedGroup, SubscriptionEntry, SubscriptionTree};
pub use types::{ClientId, Delivery, Message, Millis, Stamp, StoredDelivery};
