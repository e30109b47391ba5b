//! One client connection's protocol state machine: CONNECT to close, for MQTT 3.1.1 and 5.0.
//!
//! Packets and timer events go in; [`Action`]s come out, in the order they must be carried
//! out. The connection owns what lasts as long as the network connection: the negotiated
//! limits, keep alive, topic alias tables and the will. What outlives it is in the
//! [`Session`], which the runtime lends for each call. Shared state (the subscription index,
//! retained messages, other sessions) is the runtime's: the connection asks for changes to it
//! through actions.

use std::collections::VecDeque;
use std::sync::Arc;

use mqtt_codec::{
    Ack, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, MqttString, Packet,
    PacketId, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use crate::authorize::{authorized_filter, AllowAll, Authorizer, Verdict};
use crate::config::BrokerConfig;
use crate::session::{ArmedWill, DropReason, OutState, Session, NEVER_EXPIRES};
use crate::topic_tree::SubscriptionEntry;
use crate::types::{ClientId, Delivery, Message, Millis, Stamp};

#[cfg(test)]
mod access_tests;
mod aliases;
#[cfg(test)]
mod auth_tests;
mod closing;
mod connect;
mod enhanced_auth;
mod inbound;
mod limits;
mod outbound;
#[cfg(test)]
mod tests;

/// Something the runtime must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this packet to the client.
    Send(Packet),
    /// Route a message the client published (and update the retained store when its RETAIN
    /// flag is set). Done before any acknowledgement that follows it.
    Publish {
        message: Arc<Message>,
        /// The packet id of a QoS 2 PUBLISH whose session persists its state
        /// (`Session::records_changes`): it now awaits PUBREL, and the store must keep it
        /// together with the copies routing queues, atomically. A crash that kept only one
        /// of them would have the publisher's re-send routed twice, or not at all.
        receipt: Option<PacketId>,
    },
    /// Add the session's subscription to the shared index.
    Subscribe {
        filter: MqttString,
        entry: SubscriptionEntry,
    },
    /// Remove it from the shared index.
    Unsubscribe { filter: MqttString },
    /// Queue the retained messages matching a subscription just made.
    SendRetained {
        filter: MqttString,
        entry: SubscriptionEntry,
    },
    /// A step of re-authentication (MQTT 5.0 section 4.12.1) arrived, in sequence (the
    /// core checks it): the runtime runs the method's next step with this data and answers
    /// with [`Connection::auth_continue`], [`Connection::reauth_succeeded`] or
    /// [`Connection::auth_failed`].
    Authenticate { data: Option<bytes::Bytes> },
    /// Close the connection once everything before has been written.
    Close,
}

/// The enhanced authentication a CONNECT asks for (MQTT 5.0 section 4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub method: MqttString,
    pub data: Option<bytes::Bytes>,
}

/// What a CONNECT asks for, once it has passed the protocol checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub client_id: ClientId,
    /// True if the broker chose the identifier.
    pub assigned_client_id: bool,
    pub clean_start: bool,
    pub username: Option<MqttString>,
    pub password: Option<bytes::Bytes>,
    pub protocol: ProtocolVersion,
    /// Set when the client names an authentication method: the runtime runs it (or refuses
    /// an unknown one with 0x8C) instead of checking the user name and password.
    pub authentication: Option<Authentication>,
}

/// A refused CONNECT: what to send (if anything) before closing.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: ReasonCode,
    /// Boxed: a packet is large, and a refusal is the rare path.
    pub connack: Option<Box<Packet>>,
}

/// What happens when a connection ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// A will to publish now.
    pub will: Option<Arc<Message>>,
    /// The session ends now (expiry 0): the runtime discards it and its subscriptions.
    pub session_ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingConnect,
    Connected,
    Closed,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Connection {
    config: Arc<BrokerConfig>,
    state: State,
    version: ProtocolVersion,
    client_id: Option<ClientId>,
    /// Seconds, as granted; 0 means none.
    keep_alive: u16,
    last_received: Millis,
    client_receive_maximum: u16,
    client_max_packet_size: u32,
    client_topic_alias_maximum: u16,
    problem_information: bool,
    aliases: aliases::TopicAliases,
    /// The will from CONNECT, until the session takes it (`Session::armed_will`).
    will: Option<ArmedWill>,
    connect_session_expiry: u32,
    session_expiry: u32,
    /// Messages of a resumed session still in flight but not yet re-sent on this connection,
    /// because the client's Receive Maximum had no room for them (MQTT 5.0 section 4.9).
    /// Boxed, and only while there are some: most connections never have any.
    #[allow(clippy::box_collection)]
    resend_later: Option<Box<VecDeque<PacketId>>>,
    /// What the client may do; everything until the runtime says otherwise
    /// ([`Connection::authorize`]).
    authorizer: Arc<dyn Authorizer>,
    /// Enhanced authentication: the method named in CONNECT, the data for the CONNACK, and
    /// whether a re-authentication is under way.
    auth: Option<Box<enhanced_auth::AuthState>>,
    /// The receive stamps of the messages the last [`Connection::fill_outgoing`] sent for
    /// the first time: the runtime measures publish-to-delivery latency from them. Replaced at
    /// each call, so it stays as small as one call's output whether it is read or not.
    sent_stamps: Vec<Stamp>,
}

/// Reason strings are for people; keep them short so they never threaten a packet limit.
const MAX_REASON_STRING: usize = 128;

impl Connection {
    pub fn new(config: Arc<BrokerConfig>, now: Millis) -> Connection {
        Connection {
            config,
            state: State::AwaitingConnect,
            version: ProtocolVersion::V5,
            client_id: None,
            keep_alive: 0,
            last_received: now,
            client_receive_maximum: u16::MAX,
            client_max_packet_size: mqtt_codec::MAX_PACKET_SIZE,
            client_topic_alias_maximum: 0,
            problem_information: true,
            aliases: Default::default(),
            will: None,
            connect_session_expiry: 0,
            session_expiry: 0,
            resend_later: None,
            authorizer: Arc::new(AllowAll),
            auth: None,
            sent_stamps: Vec::new(),
        }
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    pub fn client_id(&self) -> Option<&ClientId> {
        self.client_id.as_ref()
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Granted keep alive in seconds (0: none).
    pub fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// The largest packet the client accepts.
    pub fn client_max_packet_size(&self) -> u32 {
        self.client_max_packet_size
    }

    /// When the connection times out unless a packet arrives: one and a half keep alive
    /// periods after the last one [MQTT-3.1.2-24].
    pub fn keep_alive_deadline(&self) -> Option<Millis> {
        (self.state == State::Connected && self.keep_alive > 0)
            .then(|| self.last_received + u64::from(self.keep_alive) * 1500)
    }
}

/// `$SYS/` topics are written by the broker alone.
pub fn is_reserved_topic(topic: &str) -> bool {
    topic.starts_with("$SYS/") || topic == "$SYS"
}

fn truncated(text: &str) -> Option<MqttString> {
    let mut end = text.len().min(MAX_REASON_STRING);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    MqttString::try_from(&text[..end]).ok()
}
