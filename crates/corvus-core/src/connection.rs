//! One client connection's protocol state machine: CONNECT to close, for MQTT 3.1.1 and 5.0.
//!
//! Packets and timer events go in; [`Action`]s come out, in the order they must be carried
//! out. The connection owns what lasts as long as the network connection: the negotiated
//! limits, keep alive, topic alias tables and the will. What outlives it is in the
//! [`Session`], which the runtime lends for each call. Shared state (the subscription index,
//! retained messages, other sessions) is the runtime's: the connection asks for changes to it
//! through actions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mqtt_codec::{
    Ack, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, MqttString, Packet,
    PacketId, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use crate::config::BrokerConfig;
use crate::session::{DropReason, OutState, Session, NEVER_EXPIRES};
use crate::topic_tree::SubscriptionEntry;
use crate::types::{ClientId, Delivery, Message, Millis};

/// Something the runtime must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this packet to the client.
    Send(Packet),
    /// Route a message the client published (and update the retained store when its RETAIN
    /// flag is set). Done before any acknowledgement that follows it.
    Publish(Arc<Message>),
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
    /// Close the connection once everything before has been written.
    Close,
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

#[derive(Debug, Clone)]
struct WillSpec {
    message: Message,
    delay_secs: u32,
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
    aliases_in: HashMap<u16, MqttString>,
    aliases_out: HashMap<MqttString, u16>,
    will: Option<WillSpec>,
    connect_session_expiry: u32,
    session_expiry: u32,
    /// Messages of a resumed session still in flight but not yet re-sent on this connection,
    /// because the client's Receive Maximum had no room for them (MQTT 5.0 section 4.9).
    resend_later: VecDeque<PacketId>,
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
            aliases_in: HashMap::new(),
            aliases_out: HashMap::new(),
            will: None,
            connect_session_expiry: 0,
            session_expiry: 0,
            resend_later: VecDeque::new(),
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

    // ---- CONNECT ----

    /// Checks a CONNECT. On success the runtime authenticates, finds or creates the session,
    /// and calls [`Connection::accept`]; on refusal it sends the CONNACK (if any) and closes.
    /// `generated_id` is used for an empty client identifier when one may be assigned.
    pub fn on_connect(
        &mut self,
        connect: Connect,
        now: Millis,
        generated_id: impl FnOnce() -> String,
    ) -> Result<ConnectRequest, Refusal> {
        if self.state != State::AwaitingConnect {
            // A second CONNECT is a protocol error [MQTT-3.1.0-2]; `on_packet` handles it.
            return Err(Refusal {
                reason: ReasonCode::ProtocolError,
                connack: None,
            });
        }
        self.version = connect.protocol;
        self.last_received = now;
        let v5 = connect.protocol.is_v5();
        let props = &connect.properties;

        if props.authentication_method.is_some() {
            // No enhanced authentication method is known to this broker.
            return Err(self.refuse(ReasonCode::BadAuthenticationMethod));
        }
        let (client_id, assigned) = if connect.client_id.is_empty() {
            // 3.1.1 assigns an identifier only to clean sessions [MQTT-3.1.3-8]; 3.1 never.
            let allowed =
                v5 || (connect.clean_start && connect.protocol == ProtocolVersion::V3_1_1);
            if !allowed {
                return Err(self.refuse(ReasonCode::ClientIdentifierNotValid));
            }
            (ClientId::from(generated_id()), true)
        } else {
            (ClientId::from(connect.client_id.as_str()), false)
        };
        if client_id.len() > self.config.max_client_id_len {
            return Err(self.refuse(ReasonCode::ClientIdentifierNotValid));
        }

        self.keep_alive = self.grant_keep_alive(connect.keep_alive);
        if v5 {
            self.client_receive_maximum = props.receive_maximum.unwrap_or(u16::MAX);
            self.client_max_packet_size = props
                .maximum_packet_size
                .unwrap_or(mqtt_codec::MAX_PACKET_SIZE);
            self.client_topic_alias_maximum = props.topic_alias_maximum.unwrap_or(0);
            self.problem_information = props.request_problem_information.unwrap_or(true);
            self.connect_session_expiry = props.session_expiry_interval.unwrap_or(0);
        } else {
            // 3.1.1: a persistent session lasts until the client cleans it.
            self.connect_session_expiry = if connect.clean_start {
                0
            } else {
                NEVER_EXPIRES
            };
        }
        self.session_expiry = self
            .connect_session_expiry
            .min(self.config.max_session_expiry);

        if let Some(will) = connect.will {
            let mut properties = mqtt_codec::PublishProperties {
                payload_format_indicator: will.properties.payload_format_indicator,
                content_type: will.properties.content_type,
                response_topic: will.properties.response_topic,
                correlation_data: will.properties.correlation_data,
                user_properties: will.properties.user_properties,
                ..Default::default()
            };
            let expiry_secs = will.properties.message_expiry_interval;
            properties.message_expiry_interval = None;
            if properties.payload_format_indicator == Some(true)
                && std::str::from_utf8(&will.payload).is_err()
            {
                return Err(self.refuse(ReasonCode::PayloadFormatInvalid));
            }
            if is_reserved_topic(&will.topic) {
                return Err(self.refuse(ReasonCode::TopicNameInvalid));
            }
            self.will = Some(WillSpec {
                message: Message {
                    topic: will.topic,
                    payload: will.payload,
                    qos: will.qos,
                    retain: will.retain,
                    properties,
                    // Counted from when the will is published; fixed in `will_message`.
                    expires_at: expiry_secs.map(u64::from),
                    publisher: Some(client_id.clone()),
                },
                delay_secs: will.properties.will_delay_interval.unwrap_or(0),
            });
        }
        self.client_id = Some(client_id.clone());
        Ok(ConnectRequest {
            client_id,
            assigned_client_id: assigned,
            clean_start: connect.clean_start,
            username: connect.username,
            password: connect.password,
            protocol: connect.protocol,
        })
    }

    fn grant_keep_alive(&self, requested: u16) -> u16 {
        let max = self.config.max_keep_alive;
        // Only a v5 client can be told a different value (Server Keep Alive).
        if self.version.is_v5() && max > 0 && (requested == 0 || requested > max) {
            max
        } else {
            requested
        }
    }

    /// A refusal CONNACK in the client's version. The session is never present [MQTT-3.2.2-6].
    pub fn refuse(&mut self, reason: ReasonCode) -> Refusal {
        self.state = State::Closed;
        let connack = ConnAck {
            session_present: false,
            reason_code: reason,
            properties: ConnAckProperties::default(),
        };
        Refusal {
            reason,
            connack: Some(Box::new(connack.into())),
        }
    }

    /// Completes a CONNECT: the session is the one found or created for the client (cleaned
    /// by the runtime if Clean Start was set). Sends CONNACK, then re-sends what was in flight.
    pub fn accept(
        &mut self,
        request: &ConnectRequest,
        session: &mut Session,
        session_present: bool,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        self.state = State::Connected;
        session.online = true;
        session.disconnected_at = None;
        // Reconnecting in time cancels a delayed will [MQTT-3.1.3-9].
        session.pending_will = None;
        session.expiry_interval = self.session_expiry;

        let mut properties = ConnAckProperties::default();
        if self.version.is_v5() {
            let config = &self.config;
            if request.assigned_client_id {
                properties.assigned_client_identifier =
                    MqttString::try_from(request.client_id.as_ref()).ok();
            }
            properties.receive_maximum = Some(config.receive_maximum);
            properties.maximum_packet_size = Some(config.max_packet_size);
            properties.topic_alias_maximum = Some(config.topic_alias_maximum);
            if self.session_expiry != self.connect_session_expiry {
                properties.session_expiry_interval = Some(self.session_expiry);
            }
            if config.max_keep_alive > 0 {
                properties.server_keep_alive = Some(self.keep_alive);
            }
        }
        out.push(Action::Send(
            ConnAck {
                session_present,
                reason_code: ReasonCode::Success,
                properties,
            }
            .into(),
        ));
        self.resend_inflight(session, now, out);
    }

    /// Re-sends unacknowledged messages in their original order, PUBLISH with DUP set, or
    /// PUBREL for those already received [MQTT-4.4.0-1]. The session may hold more than this
    /// client's Receive Maximum allows (an earlier connection allowed more): the rest wait in
    /// `resend_later` until acknowledgements make room [MQTT-4.9.0-2].
    fn resend_inflight(&mut self, session: &mut Session, now: Millis, out: &mut Vec<Action>) {
        let max_inflight = self.max_inflight();
        let ids: Vec<PacketId> = session.inflight().map(|f| f.packet_id).collect();
        for (i, packet_id) in ids.into_iter().enumerate() {
            if i < max_inflight {
                self.resend(packet_id, session, now, out);
            } else {
                self.resend_later.push_back(packet_id);
            }
        }
    }

    fn resend(
        &mut self,
        packet_id: PacketId,
        session: &mut Session,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(flight) = session.inflight().find(|f| f.packet_id == packet_id) else {
            return;
        };
        let packet = match flight.state {
            OutState::AwaitingPubComp => Packet::PubRel(Ack::new(packet_id)),
            state @ (OutState::AwaitingPubAck | OutState::AwaitingPubRec) => {
                let mut publish = self.build_publish(&flight.delivery, now);
                publish.dup = true;
                publish.packet_id = Some(packet_id);
                if !self.fit_for_client(&mut publish) {
                    // This client accepts less than the one it was first sent to: discarded,
                    // as if acknowledged [MQTT-3.1.2-25].
                    session.counters.count(DropReason::TooLargeForClient);
                    if state == OutState::AwaitingPubAck {
                        session.on_puback(packet_id);
                    } else {
                        session.on_pubrec(packet_id, false);
                    }
                    return;
                }
                Packet::Publish(publish)
            }
        };
        out.push(Action::Send(packet));
    }

    /// How many QoS 1/2 messages may be unacknowledged towards the client.
    fn max_inflight(&self) -> usize {
        usize::from(
            self.client_receive_maximum
                .min(self.config.max_inflight)
                .max(1),
        )
    }

    // ---- packets after CONNECT ----

    /// Handles one packet from the client.
    pub fn on_packet(
        &mut self,
        packet: Packet,
        session: &mut Session,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        if self.state != State::Connected {
            return;
        }
        self.last_received = now;
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, session, now, out),
            Packet::PubAck(ack) => {
                session.on_puback(ack.packet_id);
            }
            Packet::PubRec(ack) => {
                let success = ack.reason_code.is_success();
                if !session.on_pubrec(ack.packet_id, success) {
                    let reply = self.ack(ack.packet_id, ReasonCode::PacketIdentifierNotFound);
                    out.push(Action::Send(Packet::PubRel(reply)));
                } else if success {
                    out.push(Action::Send(Packet::PubRel(Ack::new(ack.packet_id))));
                }
            }
            Packet::PubRel(ack) => {
                let reason = if session.release_qos2(ack.packet_id) {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                out.push(Action::Send(Packet::PubComp(
                    self.ack(ack.packet_id, reason),
                )));
            }
            Packet::PubComp(ack) => {
                session.on_pubcomp(ack.packet_id);
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe, session, out),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe, session, out),
            Packet::PingReq => out.push(Action::Send(Packet::PingResp)),
            Packet::Disconnect(disconnect) => self.on_disconnect(disconnect, session, out),
            Packet::Connect(_) => {
                self.protocol_error(ReasonCode::ProtocolError, "second CONNECT", out)
            }
            // No enhanced authentication was started, so there is nothing to continue.
            Packet::Auth(_) => {
                self.protocol_error(ReasonCode::ProtocolError, "unexpected AUTH", out)
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.protocol_error(ReasonCode::ProtocolError, "packet only a server sends", out)
            }
        }
    }

    /// An acknowledgement, with a reason code only v5 can carry.
    fn ack(&self, packet_id: mqtt_codec::PacketId, reason: ReasonCode) -> Ack {
        Ack::with_reason(packet_id, reason)
    }

    fn on_publish(
        &mut self,
        mut publish: Publish,
        session: &mut Session,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        // Subscription Identifiers flow from the broker only [MQTT-3.3.4-6].
        if !publish.properties.subscription_identifiers.is_empty() {
            return self.protocol_error(
                ReasonCode::ProtocolError,
                "subscription identifier in a client's PUBLISH",
                out,
            );
        }
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias > self.config.topic_alias_maximum {
                return self.protocol_error(
                    ReasonCode::TopicAliasInvalid,
                    "topic alias above the maximum",
                    out,
                );
            }
            if publish.topic.is_empty() {
                match self.aliases_in.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return self.protocol_error(
                            ReasonCode::ProtocolError,
                            "unknown topic alias",
                            out,
                        )
                    }
                }
            } else {
                self.aliases_in.insert(alias, publish.topic.clone());
            }
        }
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            if let Some(id) = publish.packet_id {
                // A resend of a message still awaiting PUBREL is acknowledged, not delivered again.
                if session.is_awaiting_pubrel(id) {
                    out.push(Action::Send(Packet::PubRec(Ack::new(id))));
                    return;
                }
                if session.inbound_qos2_len() >= usize::from(self.config.receive_maximum) {
                    return self.protocol_error(
                        ReasonCode::ReceiveMaximumExceeded,
                        "receive maximum exceeded",
                        out,
                    );
                }
            }
        }
        let refusal = if is_reserved_topic(&publish.topic) {
            Some((
                ReasonCode::NotAuthorized,
                DropReason::NotAuthorized,
                "$SYS topics are the broker's",
            ))
        } else if publish.properties.payload_format_indicator == Some(true)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            Some((
                ReasonCode::PayloadFormatInvalid,
                DropReason::PayloadFormatInvalid,
                "payload is not UTF-8",
            ))
        } else {
            None
        };
        if let Some((reason, drop, text)) = refusal {
            // Counted against the publisher's session, like every other drop.
            session.counters.count(drop);
            if let Some(id) = publish.packet_id {
                let mut ack = self.ack(id, reason);
                ack.properties.reason_string = self.reason_string(text);
                // In 3.1.1 there is no negative acknowledgement: acknowledge and drop.
                let wrap = |ack| match qos {
                    QoS::AtLeastOnce => Packet::PubAck(ack),
                    _ => Packet::PubRec(ack),
                };
                let mut packet = wrap(ack.clone());
                // No reason string that would take the packet past the client's limit
                // [MQTT-3.4.2-2], [MQTT-3.5.2-2].
                if packet.encoded_len(self.version) as u64 > u64::from(self.client_max_packet_size)
                {
                    ack.properties.reason_string = None;
                    packet = wrap(ack);
                }
                out.push(Action::Send(packet));
            }
            return;
        }
        let mut properties = publish.properties;
        let expires_at = properties
            .message_expiry_interval
            .take()
            .map(|secs| now + u64::from(secs) * 1000);
        properties.subscription_identifiers.clear();
        let message = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos,
            retain: publish.retain,
            properties,
            expires_at,
            publisher: self.client_id.clone(),
        });
        out.push(Action::Publish(message));
        match (qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => out.push(Action::Send(Packet::PubAck(Ack::new(id)))),
            (QoS::ExactlyOnce, Some(id)) => {
                session.receive_qos2(id);
                out.push(Action::Send(Packet::PubRec(Ack::new(id))));
            }
            _ => {}
        }
    }

    fn on_subscribe(&mut self, subscribe: Subscribe, session: &mut Session, out: &mut Vec<Action>) {
        let identifier = subscribe.properties.subscription_identifier;
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained = Vec::new();
        for sub in subscribe.subscriptions {
            let entry = SubscriptionEntry {
                options: sub.options,
                identifier,
            };
            let replaced = session.add_subscription(sub.filter.clone(), entry.clone());
            out.push(Action::Subscribe {
                filter: sub.filter.clone(),
                entry: entry.clone(),
            });
            // Retained messages go to new non-shared subscriptions only (MQTT 5.0 3.3.1.3).
            let shared = mqtt_codec::topic::SharedFilter::parse(&sub.filter).is_some();
            let send = match sub.options.retain_handling {
                mqtt_codec::RetainHandling::SendAtSubscribe => true,
                mqtt_codec::RetainHandling::SendIfNew => !replaced,
                mqtt_codec::RetainHandling::DoNotSend => false,
            };
            if send && !shared {
                retained.push(Action::SendRetained {
                    filter: sub.filter,
                    entry,
                });
            }
            reason_codes.push(match sub.options.qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
        }
        out.push(Action::Send(
            SubAck {
                packet_id: subscribe.packet_id,
                properties: Default::default(),
                reason_codes,
            }
            .into(),
        ));
        out.extend(retained);
    }

    fn on_unsubscribe(
        &mut self,
        unsubscribe: Unsubscribe,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        let mut reason_codes = Vec::new();
        for filter in unsubscribe.filters {
            let existed = session.remove_subscription(&filter);
            out.push(Action::Unsubscribe { filter });
            if self.version.is_v5() {
                reason_codes.push(if existed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                });
            }
        }
        out.push(Action::Send(
            UnsubAck {
                packet_id: unsubscribe.packet_id,
                properties: Default::default(),
                reason_codes,
            }
            .into(),
        ));
    }

    fn on_disconnect(
        &mut self,
        disconnect: Disconnect,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            // A session created to end with the connection cannot be extended at the end
            // (MQTT 5.0 section 3.14.2.2.2).
            if self.connect_session_expiry == 0 && expiry != 0 {
                return self.protocol_error(
                    ReasonCode::ProtocolError,
                    "session expiry set on DISCONNECT after 0 on CONNECT",
                    out,
                );
            }
            self.session_expiry = expiry.min(self.config.max_session_expiry);
            session.expiry_interval = self.session_expiry;
        }
        // Only 0x04 asks for the will; any other client DISCONNECT discards it [MQTT-3.1.2-8].
        if disconnect.reason_code != ReasonCode::DisconnectWithWillMessage {
            self.will = None;
        }
        self.state = State::Closed;
        out.push(Action::Close);
    }

    // ---- errors, timeouts and the end ----

    /// A protocol violation: v5 clients are told why [MQTT-4.13.1-1]; then the connection
    /// closes, and the will is published (it did not end with a normal DISCONNECT).
    pub fn protocol_error(&mut self, reason: ReasonCode, text: &str, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        let was_connected = self.state == State::Connected;
        self.state = State::Closed;
        if self.version.is_v5() && was_connected {
            out.push(Action::Send(self.disconnect_packet(reason, text)));
        }
        out.push(Action::Close);
    }

    /// A packet that could not be decoded.
    pub fn on_decode_error(&mut self, error: &DecodeError, out: &mut Vec<Action>) {
        match self.state {
            State::Connected => self.protocol_error(error.reason_code(), &error.to_string(), out),
            State::AwaitingConnect => {
                self.state = State::Closed;
                // An unknown protocol level is answered in the 3.1.1 format the client most
                // likely reads [MQTT-3.1.2-2]; any other broken CONNECT is just closed.
                if matches!(error, DecodeError::UnsupportedProtocol { .. }) {
                    self.version = ProtocolVersion::V3_1_1;
                    let refusal = self.refuse(ReasonCode::UnsupportedProtocolVersion);
                    out.extend(refusal.connack.map(|p| Action::Send(*p)));
                }
                out.push(Action::Close);
            }
            State::Closed => {}
        }
    }

    /// Keep alive ran out [MQTT-3.1.2-24].
    pub fn on_keep_alive_timeout(&mut self, out: &mut Vec<Action>) {
        self.protocol_error(ReasonCode::KeepAliveTimeout, "keep alive timeout", out);
    }

    /// Another connection took the session over [MQTT-3.1.4-3].
    pub fn on_taken_over(&mut self, out: &mut Vec<Action>) {
        self.protocol_error(
            ReasonCode::SessionTakenOver,
            "another connection took the session over",
            out,
        );
    }

    /// The broker shuts down: v5 clients are told so. The will is published like for any
    /// close the client did not ask for with DISCONNECT 0x00 (MQTT 5.0 section 3.1.2.5).
    pub fn on_shutdown(&mut self, out: &mut Vec<Action>) {
        self.protocol_error(ReasonCode::ServerShuttingDown, "server shutting down", out);
    }

    /// A DISCONNECT with a reason and, when it fits the client's limit, a reason string.
    fn disconnect_packet(&self, reason: ReasonCode, text: &str) -> Packet {
        let mut disconnect = Disconnect::new(reason);
        // Problem information does not restrict DISCONNECT [MQTT-3.1.2-29].
        disconnect.properties.reason_string = truncated(text);
        let packet = Packet::Disconnect(disconnect.clone());
        if packet.encoded_len(self.version) as u64 <= u64::from(self.client_max_packet_size) {
            packet
        } else {
            Packet::Disconnect(Disconnect::new(reason))
        }
    }

    /// A reason string for an acknowledgement, if the client asked for problem information.
    fn reason_string(&self, text: &str) -> Option<MqttString> {
        (self.version.is_v5() && self.problem_information)
            .then(|| truncated(text))
            .flatten()
    }

    /// The connection has ended, by any path. Settles the session and the will.
    pub fn on_closed(&mut self, session: &mut Session, now: Millis) -> Closed {
        let was_open = self.state != State::AwaitingConnect;
        self.state = State::Closed;
        if !was_open || !session.online {
            return Closed {
                will: None,
                session_ended: false,
            };
        }
        session.online = false;
        session.disconnected_at = Some(now);
        let session_ended = session.expiry_interval == 0;
        let mut will = None;
        if let Some(spec) = self.will.take() {
            let message = Arc::new(will_message(spec.message, now));
            // The will waits for its delay or the end of the session, whichever is first.
            let delay_ms = u64::from(spec.delay_secs.min(session.expiry_interval)) * 1000;
            if session_ended || delay_ms == 0 {
                will = Some(message);
            } else {
                session.pending_will = Some(crate::session::PendingWill {
                    message,
                    due_at: now + delay_ms,
                });
            }
        }
        Closed {
            will,
            session_ended,
        }
    }

    // ---- messages towards the client ----

    /// Moves queued messages into packets, as far as the client's Receive Maximum allows and
    /// until about `budget` bytes of packets were produced. Returns true if it stopped for
    /// the budget: the runtime writes what it has and calls again.
    pub fn fill_outgoing(
        &mut self,
        session: &mut Session,
        now: Millis,
        budget: usize,
        out: &mut Vec<Action>,
    ) -> bool {
        if self.state != State::Connected {
            return false;
        }
        let max_inflight = self.max_inflight();
        // Resends that waited for room go first, so that order is kept; those the client
        // acknowledged meanwhile (it saw them on an earlier connection) need none.
        self.resend_later
            .retain(|id| session.inflight().any(|f| f.packet_id == *id));
        while session.inflight_len() - self.resend_later.len() < max_inflight {
            let Some(packet_id) = self.resend_later.pop_front() else {
                break;
            };
            self.resend(packet_id, session, now, out);
        }
        let mut produced = 0;
        while produced < budget {
            let Some(delivery) = session.next_to_send(max_inflight, now) else {
                break;
            };
            let mut publish = self.build_publish(&delivery, now);
            if delivery.qos != QoS::AtMostOnce {
                // Placeholder so the size below counts the identifier's two bytes.
                publish.packet_id = mqtt_codec::PacketId::new(1);
            }
            // Too large for the client: discarded, as if sent [MQTT-3.1.2-25].
            if !self.fit_for_client(&mut publish) {
                session.counters.count(DropReason::TooLargeForClient);
                continue;
            }
            produced += Packet::Publish(publish.clone()).encoded_len(self.version);
            if delivery.qos != QoS::AtMostOnce {
                publish.packet_id = Some(session.start_inflight(delivery));
            }
            out.push(Action::Send(Packet::Publish(publish)));
        }
        produced >= budget
    }

    fn build_publish(&self, delivery: &Delivery, now: Millis) -> Publish {
        let message = &delivery.message;
        let mut properties = message.properties.clone();
        if self.version.is_v5() {
            properties.message_expiry_interval = message.remaining_expiry_secs(now);
            properties.subscription_identifiers = delivery.subscription_ids.clone();
        }
        Publish {
            dup: false,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic.clone(),
            packet_id: None,
            properties,
            payload: message.payload.clone(),
        }
    }

    /// Applies a topic alias (see below) unless that takes the packet past the client's
    /// Maximum Packet Size: an alias can add up to three bytes, so without one it may still
    /// fit. False if the packet is too large for the client either way.
    fn fit_for_client(&mut self, publish: &mut Publish) -> bool {
        let (version, max) = (self.version, u64::from(self.client_max_packet_size));
        let fits =
            |publish: &Publish| Packet::Publish(publish.clone()).encoded_len(version) as u64 <= max;
        let plain = publish.clone();
        let known = self.aliases_out.len();
        self.apply_outgoing_alias(publish);
        if fits(publish) {
            return true;
        }
        // Forget an alias just assigned: the client never saw it.
        self.aliases_out
            .retain(|_, alias| usize::from(*alias) <= known);
        *publish = plain;
        fits(publish)
    }

    /// Uses a topic alias when the client accepts them: the first message on a topic
    /// carries topic and alias, later ones the alias alone. Aliases are never reassigned.
    fn apply_outgoing_alias(&mut self, publish: &mut Publish) {
        if !self.version.is_v5() || self.client_topic_alias_maximum == 0 {
            return;
        }
        if let Some(&alias) = self.aliases_out.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = MqttString::default();
            return;
        }
        let next = self.aliases_out.len() + 1;
        if next <= usize::from(self.client_topic_alias_maximum) {
            let alias = next as u16;
            self.aliases_out.insert(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
    }
}

/// A will becomes an ordinary message when published; its expiry counts from then.
fn will_message(mut message: Message, now: Millis) -> Message {
    message.expires_at = message.expires_at.map(|secs| now + secs * 1000);
    message
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_codec::PublishProperties;

    /// A v5 client connected with `setup` applied to its CONNECT; returns the CONNACK's actions.
    fn connect(
        session: &mut Session,
        setup: impl FnOnce(&mut Connect),
    ) -> (Connection, Vec<Action>) {
        let mut conn = Connection::new(Arc::new(BrokerConfig::default()), 0);
        let mut packet = Connect::new(ProtocolVersion::V5, MqttString::from_static("c"));
        packet.clean_start = false;
        setup(&mut packet);
        let request = conn.on_connect(packet, 0, String::new).unwrap();
        let mut out = Vec::new();
        conn.accept(&request, session, true, 0, &mut out);
        (conn, out)
    }

    fn delivery(topic: &'static str, payload: &'static [u8]) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: MqttString::from_static(topic),
                payload: Bytes::from_static(payload),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
                publisher: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        }
    }

    fn sent(out: &[Action]) -> Vec<&Packet> {
        out.iter()
            .filter_map(|a| match a {
                Action::Send(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mqtt_3_4_2_2_negative_ack_drops_a_reason_string_too_large_for_the_client() {
        let mut session = Session::new("c".into(), &BrokerConfig::default());
        let (mut conn, _) = connect(&mut session, |c| {
            c.properties.maximum_packet_size = Some(24);
        });
        let mut publish = Publish::new(MqttString::from_static("$SYS/x"), "x".into());
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = PacketId::new(1);
        let mut out = Vec::new();
        conn.on_packet(Packet::Publish(publish), &mut session, 0, &mut out);
        let packets = sent(&out);
        let [Packet::PubAck(ack)] = packets.as_slice() else {
            panic!("{out:?}");
        };
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
        assert_eq!(ack.properties.reason_string, None);
        assert!(packets[0].encoded_len(ProtocolVersion::V5) <= 24);
    }

    #[test]
    fn topic_alias_is_left_out_when_it_would_exceed_the_client_maximum_packet_size() {
        let mut session = Session::new("c".into(), &BrokerConfig::default());
        // PUBLISH "a", QoS 1, payload of 11 bytes: 2 + 3 + 2 + 1 + 11 = 19 bytes without an
        // alias, 22 with one.
        let (mut conn, _) = connect(&mut session, |c| {
            c.properties.maximum_packet_size = Some(19);
            c.properties.topic_alias_maximum = Some(5);
        });
        session.online = true;
        for _ in 0..2 {
            session.enqueue(delivery("a", b"01234567890"), 0);
        }
        let mut out = Vec::new();
        conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
        let packets = sent(&out);
        assert_eq!(packets.len(), 2, "{out:?}");
        for packet in packets {
            let Packet::Publish(publish) = packet else {
                panic!("{packet:?}");
            };
            assert_eq!(publish.properties.topic_alias, None);
            assert_eq!(publish.topic, "a");
            assert!(packet.encoded_len(ProtocolVersion::V5) <= 19);
        }
    }

    #[test]
    fn mqtt_4_9_0_2_resumed_session_resends_no_more_than_the_new_receive_maximum() {
        let config = BrokerConfig::default();
        let mut session = Session::new("c".into(), &config);
        let ids: Vec<PacketId> = (0..3)
            .map(|_| session.start_inflight(delivery("a", b"x")))
            .collect();
        let (mut conn, out) = connect(&mut session, |c| {
            c.properties.receive_maximum = Some(1);
        });
        let publishes = |out: &[Action]| -> Vec<PacketId> {
            sent(out)
                .into_iter()
                .filter_map(|p| match p {
                    Packet::Publish(p) => p.packet_id,
                    _ => None,
                })
                .collect()
        };
        assert_eq!(publishes(&out), vec![ids[0]]);
        let mut out = Vec::new();
        conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
        assert!(out.is_empty(), "no room yet: {out:?}");
        conn.on_packet(Packet::PubAck(Ack::new(ids[0])), &mut session, 0, &mut out);
        conn.fill_outgoing(&mut session, 0, usize::MAX, &mut out);
        assert_eq!(publishes(&out), vec![ids[1]], "the next resend, in order");
    }

    #[test]
    fn resend_too_large_for_the_new_connection_is_discarded_and_counted() {
        let config = BrokerConfig::default();
        let mut session = Session::new("c".into(), &config);
        session.start_inflight(delivery("a", &[b'x'; 40]));
        let (_conn, out) = connect(&mut session, |c| {
            c.properties.maximum_packet_size = Some(32);
        });
        assert!(
            matches!(sent(&out).as_slice(), [Packet::ConnAck(_)]),
            "{out:?}"
        );
        assert_eq!(session.inflight_len(), 0);
        assert_eq!(session.counters.dropped(DropReason::TooLargeForClient), 1);
    }
}
