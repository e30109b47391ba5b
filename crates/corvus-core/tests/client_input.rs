//! Nothing a client sends can crash the broker core or break its invariants.
//!
//! A small sans-IO harness stands in for the runtime: two client slots, each with at most one
//! [`Connection`] at a time, the sessions they are lent, a [`SubscriptionTree`], a
//! [`RetainedStore`] and a tiny router that carries out the actions the connections produce,
//! the way `corvus-server` does. Random sequences of client input are fed through the real
//! codec (encoded by the "client", decoded as the broker would): valid packets of every kind a
//! client may send, packets it must not send, garbage, keep alive timeouts, abrupt closes and
//! reconnects, in MQTT 3.1.1 and 5.0, with time advancing randomly. Every step is followed by
//! `fill_outgoing` and by a check of the invariants.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use corvus_core::router::{plan_deliveries, retained_delivery};
use corvus_core::{
    Action, BrokerConfig, ClientId, Connection, Message, Millis, QueueFullPolicy, RetainedStore,
    Session, SubscriptionTree,
};
use mqtt_codec::{
    Ack, Auth, ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId,
    ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use proptest::prelude::*;

// ---- what a client may do ----

const TOPICS: &[&str] = &["a", "a/b", "b"];
const WILL_TOPICS: &[&str] = &["a", "a/b", "$SYS/x"];
const FILTERS: &[&str] = &[
    "a",
    "a/b",
    "a/+",
    "a/#",
    "#",
    "+",
    "+/b",
    "$SYS/#",
    "$share/g/a",
    "$share/g/#",
    "$share/h/a/+",
];
/// Bytes no decoder should turn into a packet a client may send (the last one is AUTH, which
/// 3.1.1 lacks and 5.0 only allows after an authentication method).
const GARBAGE: &[&[u8]] = &[
    &[0x00, 0x00],
    &[0x36, 0x00],
    &[0x62, 0x02, 0x00, 0x00],
    &[0x30, 0xFF, 0xFF, 0xFF, 0x7F],
    &[0x82, 0x00],
    &[0xE0, 0x01, 0x99],
    &[0x32, 0x04, 0x00, 0x01, b'#', 0x00],
    &[0xF0, 0x00],
];

#[derive(Debug, Clone)]
struct ConnectSpec {
    version: ProtocolVersion,
    /// 0: the slot's own identifier; 1: empty (the broker assigns one); 2: too long.
    client_id: u8,
    clean_start: bool,
    keep_alive: u16,
    session_expiry: Option<u32>,
    receive_maximum: Option<u16>,
    maximum_packet_size: Option<u32>,
    topic_alias_maximum: Option<u16>,
    problem_information: Option<bool>,
    user_property: bool,
    auth_method: bool,
    will: Option<WillSpec>,
    /// Protocol level 6: refused with a 3.1.1 CONNACK.
    bad_protocol_level: bool,
}

#[derive(Debug, Clone)]
struct WillSpec {
    topic: &'static str,
    qos: QoS,
    retain: bool,
    delay: Option<u32>,
    expiry: Option<u32>,
    utf8: Option<bool>,
    invalid_utf8: bool,
}

#[derive(Debug, Clone, Copy)]
enum PayloadSpec {
    Seq,
    Padded(usize),
    InvalidUtf8,
    Empty,
    /// Larger than the broker's Maximum Packet Size: a decode error.
    Huge,
}

#[derive(Debug, Clone)]
struct PublishSpec {
    qos: QoS,
    topic: &'static str,
    alias: Option<u16>,
    retain: bool,
    dup: bool,
    id: u16,
    payload: PayloadSpec,
    utf8: Option<bool>,
    expiry: Option<u32>,
    user_property: bool,
    subscription_id: bool,
}

type SubSpec = (&'static str, QoS, bool, bool, RetainHandling);

#[derive(Debug, Clone)]
enum PacketSpec {
    Publish(PublishSpec),
    PubAck(u16),
    PubRec(u16, bool),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        id: u16,
        subs: Vec<SubSpec>,
        identifier: Option<u32>,
    },
    Unsubscribe {
        id: u16,
        filters: Vec<&'static str>,
    },
    PingReq,
    Disconnect {
        reason: ReasonCode,
        session_expiry: Option<u32>,
    },
    // Packets a client must not send.
    Connect(Box<ConnectSpec>),
    ConnAck,
    SubAck(u16),
    UnsubAck(u16),
    PingResp,
    Auth,
}

#[derive(Debug, Clone)]
enum Event {
    /// A new connection for the slot (taking the session over if the slot is connected).
    Connect(Box<ConnectSpec>),
    Send(PacketSpec),
    /// The slot's last PUBLISH again, DUP set.
    ResendLastPublish,
    Garbage(usize),
    KeepAliveTimeout,
    /// The network connection drops, without DISCONNECT.
    Drop,
}

#[derive(Debug, Clone)]
struct Step {
    client: usize,
    /// Milliseconds that pass before the event.
    dt: u64,
    /// `fill_outgoing` budget after the event.
    budget: usize,
    /// A client whose connection is gone mostly reconnects before its next packet, resuming
    /// its session with the settings that last worked.
    revive: bool,
    event: Event,
}

fn packet_id(id: u16) -> PacketId {
    PacketId::new(id).expect("ids are drawn from 1..=5")
}

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).expect("valid string")
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn id() -> impl Strategy<Value = u16> {
    1u16..=5
}

fn will_spec() -> BoxedStrategy<WillSpec> {
    (
        prop::sample::select(WILL_TOPICS),
        qos(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![0u32, 5, 1000])),
        prop::option::of(prop::sample::select(vec![0u32, 1, 60])),
        prop::option::of(any::<bool>()),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(topic, qos, retain, delay, expiry, utf8, invalid_utf8)| WillSpec {
                topic,
                qos,
                retain,
                delay,
                expiry,
                utf8,
                invalid_utf8,
            },
        )
        .boxed()
}

fn connect_spec() -> BoxedStrategy<ConnectSpec> {
    (
        (
            prop_oneof![
                4 => Just(ProtocolVersion::V5),
                3 => Just(ProtocolVersion::V3_1_1),
                1 => Just(ProtocolVersion::V3_1),
            ],
            prop_oneof![8 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
            any::<bool>(),
            prop::sample::select(vec![0u16, 0, 0, 0, 1, 10, 60]),
            prop::option::of(prop::sample::select(vec![0u32, 10, 1000, u32::MAX])),
            prop::option::of(prop::sample::select(vec![1u16, 2, 5])),
        ),
        (
            prop::option::of(prop::sample::select(vec![24u32, 40, 64, 128])),
            prop::option::of(prop::sample::select(vec![0u16, 1, 2])),
            prop::option::of(any::<bool>()),
            any::<bool>(),
            prop::bool::weighted(0.05),
            prop::option::weighted(0.3, will_spec()),
            prop::bool::weighted(0.05),
        ),
    )
        .prop_map(
            |(
                (version, client_id, clean_start, keep_alive, session_expiry, receive_maximum),
                (
                    maximum_packet_size,
                    topic_alias_maximum,
                    problem_information,
                    user_property,
                    auth_method,
                    will,
                    bad_protocol_level,
                ),
            )| ConnectSpec {
                version,
                client_id,
                clean_start,
                keep_alive,
                session_expiry,
                receive_maximum,
                maximum_packet_size,
                topic_alias_maximum,
                problem_information,
                user_property,
                auth_method,
                will,
                bad_protocol_level,
            },
        )
        .boxed()
}

fn publish_spec() -> BoxedStrategy<PublishSpec> {
    (
        (
            qos(),
            prop_oneof![
                12 => prop::sample::select(TOPICS),
                1 => Just("$SYS/x"),
                1 => Just(""),
            ],
            // Aliases 1..=3 are allowed; 0, 4 and unknown ones are protocol errors.
            prop_oneof![
                14 => Just(None),
                5 => (1u16..=3).prop_map(Some),
                1 => prop::sample::select(vec![0u16, 4]).prop_map(Some),
            ],
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.1),
            id(),
        ),
        (
            prop_oneof![
                12 => Just(PayloadSpec::Seq),
                4 => prop::sample::select(vec![8usize, 40]).prop_map(PayloadSpec::Padded),
                2 => Just(PayloadSpec::InvalidUtf8),
                2 => Just(PayloadSpec::Empty),
                1 => Just(PayloadSpec::Huge),
            ],
            prop::option::weighted(0.3, any::<bool>()),
            prop::option::weighted(0.2, prop::sample::select(vec![0u32, 1, 60])),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.02),
        ),
    )
        .prop_map(
            |(
                (qos, topic, alias, retain, dup, id),
                (payload, utf8, expiry, user_property, subscription_id),
            )| PublishSpec {
                qos,
                topic,
                alias,
                retain,
                dup,
                id,
                payload,
                utf8,
                expiry,
                user_property,
                subscription_id,
            },
        )
        .boxed()
}

fn sub_spec() -> BoxedStrategy<SubSpec> {
    (
        prop::sample::select(FILTERS),
        qos(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
        prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendIfNew),
            Just(RetainHandling::DoNotSend),
        ],
    )
        .boxed()
}

fn packet_spec() -> BoxedStrategy<PacketSpec> {
    prop_oneof![
        12 => publish_spec().prop_map(PacketSpec::Publish),
        3 => id().prop_map(PacketSpec::PubAck),
        3 => (id(), prop::bool::weighted(0.8)).prop_map(|(id, ok)| PacketSpec::PubRec(id, ok)),
        3 => id().prop_map(PacketSpec::PubRel),
        3 => id().prop_map(PacketSpec::PubComp),
        5 => (
            id(),
            prop::collection::vec(sub_spec(), 1..=3),
            prop::option::weighted(0.3, 1u32..=3),
        )
            .prop_map(|(id, subs, identifier)| PacketSpec::Subscribe { id, subs, identifier }),
        2 => (id(), prop::collection::vec(prop::sample::select(FILTERS), 1..=2))
            .prop_map(|(id, filters)| PacketSpec::Unsubscribe { id, filters }),
        1 => Just(PacketSpec::PingReq),
        1 => (
            prop::sample::select(vec![
                ReasonCode::Success,
                ReasonCode::DisconnectWithWillMessage,
                ReasonCode::UnspecifiedError,
            ]),
            prop::option::of(prop::sample::select(vec![0u32, 5, 1000])),
        )
            .prop_map(|(reason, session_expiry)| PacketSpec::Disconnect { reason, session_expiry }),
        1 => prop_oneof![
            connect_spec().prop_map(|c| PacketSpec::Connect(Box::new(c))),
            Just(PacketSpec::ConnAck),
            id().prop_map(PacketSpec::SubAck),
            id().prop_map(PacketSpec::UnsubAck),
            Just(PacketSpec::PingResp),
            Just(PacketSpec::Auth),
        ],
    ]
    .boxed()
}

fn event() -> BoxedStrategy<Event> {
    prop_oneof![
        5 => connect_spec().prop_map(|c| Event::Connect(Box::new(c))),
        50 => packet_spec().prop_map(Event::Send),
        4 => Just(Event::ResendLastPublish),
        1 => (0..GARBAGE.len()).prop_map(Event::Garbage),
        1 => Just(Event::KeepAliveTimeout),
        1 => Just(Event::Drop),
    ]
    .boxed()
}

fn step() -> BoxedStrategy<Step> {
    (
        0..2usize,
        prop_oneof![
            16 => Just(0u64),
            6 => Just(300u64),
            2 => Just(4_000u64),
            1 => Just(20_000u64),
            1 => Just(200_000u64),
        ],
        prop::sample::select(vec![1usize, 60, 10_000]),
        prop::bool::weighted(0.8),
        event(),
    )
        .prop_map(|(client, dt, budget, revive, event)| Step {
            client,
            dt,
            budget,
            revive,
            event,
        })
        .boxed()
}

fn broker_config() -> impl Strategy<Value = BrokerConfig> {
    (
        prop_oneof![
            Just(QueueFullPolicy::DropNewest),
            Just(QueueFullPolicy::DropOldest)
        ],
        any::<bool>(),
        prop::sample::select(vec![0u16, 0, 0, 30]),
    )
        .prop_map(
            |(queue_full_policy, queue_qos0_offline, max_keep_alive)| BrokerConfig {
                max_packet_size: 256,
                max_connect_size: 256,
                receive_maximum: 2,
                max_inflight: 3,
                topic_alias_maximum: 3,
                max_keep_alive,
                max_session_expiry: 100,
                max_queued_messages: 5,
                max_queued_bytes: 64,
                queue_qos0_offline,
                queue_full_policy,
                max_client_id_len: 16,
                max_topic_length: 24,
                max_topic_levels: 4,
                max_user_properties: 2,
                max_user_property_bytes: 32,
                max_subscriptions: 4,
                persistence: false,
            },
        )
}

// ---- the harness ----

/// One client's side of things: its current connection and what the client knows.
struct Slot {
    own_id: &'static str,
    conn: Option<Connection>,
    decoder: Decoder,
    /// The session the connection was given, once accepted.
    client_id: Option<ClientId>,
    /// Accepted and not yet closed.
    live: bool,
    receive_maximum: u16,
    topic_alias_maximum: u16,
    /// Topic aliases the broker set up towards this client.
    aliases: HashMap<u16, MqttString>,
    last_publish: Option<Publish>,
    /// The last CONNECT that was accepted.
    accepted: Option<ConnectSpec>,
    /// Packet ids of QoS 1/2 PUBLISH sent on this connection: the messages in flight with one
    /// of these use the client's send quota (MQTT 5.0 section 4.9).
    sent_ids: HashSet<PacketId>,
    /// The session was resumed with more in flight than this connection allows.
    resumed_over_limit: bool,
}

/// What one call into a connection produced.
#[derive(Default)]
struct Outcome {
    sends: Vec<Packet>,
    publishes: usize,
    closed: bool,
}

struct Harness {
    config: Arc<BrokerConfig>,
    now: Millis,
    sessions: HashMap<ClientId, Session>,
    /// Model: QoS 2 packet identifiers from the client awaiting PUBREL, per session.
    awaiting_pubrel: HashMap<ClientId, HashSet<u16>>,
    tree: SubscriptionTree,
    retained: RetainedStore,
    slots: [Slot; 2],
    next_seq: u64,
    generated: u32,
    /// Who published the message with each sequence number.
    publisher_of: HashMap<u64, Option<ClientId>>,
    /// Last sequence number delivered, per (subscriber, publisher, topic).
    last_delivered: HashMap<(ClientId, Option<ClientId>, String), u64>,
}

fn new_slot(own_id: &'static str, config: &BrokerConfig) -> Slot {
    Slot {
        own_id,
        conn: None,
        decoder: Decoder::new(ProtocolVersion::V5).with_max_packet_size(config.max_packet_size),
        client_id: None,
        live: false,
        receive_maximum: u16::MAX,
        topic_alias_maximum: 0,
        aliases: HashMap::new(),
        last_publish: None,
        accepted: None,
        sent_ids: HashSet::new(),
        resumed_over_limit: false,
    }
}

/// The sequence number a payload starts with, if any.
fn seq_of(payload: &[u8]) -> Option<u64> {
    let digits: Vec<u8> = payload
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

impl Harness {
    fn new(config: BrokerConfig) -> Harness {
        let config = Arc::new(config);
        Harness {
            slots: [new_slot("c1", &config), new_slot("c2", &config)],
            config,
            now: 1_000_000,
            sessions: HashMap::new(),
            awaiting_pubrel: HashMap::new(),
            tree: SubscriptionTree::new(),
            retained: RetainedStore::new(),
            next_seq: 1,
            generated: 0,
            publisher_of: HashMap::new(),
            last_delivered: HashMap::new(),
        }
    }

    fn run(&mut self, step: Step) {
        self.now += step.dt;
        self.timers();
        let i = step.client;
        let sends = matches!(step.event, Event::Send(_) | Event::ResendLastPublish);
        if step.revive && sends && !self.slots[i].live {
            if let Some(mut spec) = self.slots[i].accepted.clone() {
                spec.clean_start = false;
                self.connect(i, &spec);
            }
        }
        match step.event {
            Event::Connect(spec) => self.connect(i, &spec),
            Event::Send(spec) => {
                if self.slots[i].conn.is_some() {
                    let packet = self.build(i, &spec);
                    self.send(i, packet);
                }
            }
            Event::ResendLastPublish => {
                if let Some(mut publish) = self.slots[i].last_publish.clone() {
                    publish.dup = publish.qos != QoS::AtMostOnce;
                    self.send(i, Packet::Publish(publish));
                }
            }
            Event::Garbage(k) => self.feed(i, BytesMut::from(GARBAGE[k])),
            Event::KeepAliveTimeout => {
                if let Some(conn) = self.slots[i].conn.as_mut() {
                    let was_closed = conn.is_closed();
                    let mut out = Vec::new();
                    conn.on_keep_alive_timeout(&mut out);
                    self.execute(i, was_closed, out);
                }
            }
            Event::Drop => {
                if self.slots[i].live {
                    self.settle(i);
                }
            }
        }
        self.fill(step.budget);
        self.check_invariants();
    }

    // ---- the runtime's timers ----

    fn timers(&mut self) {
        for i in 0..2 {
            let slot = &mut self.slots[i];
            if !slot.live {
                continue;
            }
            let conn = slot.conn.as_mut().expect("a live slot has a connection");
            if conn.keep_alive_deadline().is_some_and(|at| at <= self.now) {
                let mut out = Vec::new();
                conn.on_keep_alive_timeout(&mut out);
                self.execute(i, false, out);
                assert!(!self.slots[i].live, "keep alive timeout closes");
            }
        }
        let offline: Vec<ClientId> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.online)
            .map(|(c, _)| c.clone())
            .collect();
        for client in offline {
            let session = self.sessions.get_mut(&client).expect("listed");
            let will = session.take_due_will(self.now);
            let expired = session.is_expired(self.now);
            if let Some(will) = will {
                self.route(will);
            }
            if expired {
                self.end_session(&client);
            }
        }
    }

    // ---- the router ----

    fn route(&mut self, message: Arc<Message>) {
        if message.retain {
            self.retained.set(message.clone());
        }
        let sessions = &self.sessions;
        let plan = plan_deliveries(&message, &self.tree, |c| {
            sessions.get(c).is_some_and(|s| s.online)
        });
        for (client, delivery) in plan {
            let session = self
                .sessions
                .get_mut(&client)
                .expect("every subscription belongs to a live session");
            session.enqueue(delivery, self.now);
        }
    }

    fn drop_subscriptions(&mut self, client: &ClientId) -> Option<Arc<Message>> {
        let session = self.sessions.get_mut(client)?;
        let filters: Vec<MqttString> = session.subscriptions().map(|(f, _)| f.clone()).collect();
        let will = session.pending_will.take().map(|w| w.message);
        for filter in filters {
            self.tree.unsubscribe(client, &filter);
        }
        will
    }

    /// Clean Start, or an expired session resumed: start afresh.
    fn reset_session(&mut self, client: &ClientId) {
        let will = self.drop_subscriptions(client);
        self.sessions
            .insert(client.clone(), Session::new(client.clone(), &self.config));
        self.awaiting_pubrel.insert(client.clone(), HashSet::new());
        if let Some(will) = will {
            self.route(will);
        }
    }

    fn end_session(&mut self, client: &ClientId) {
        let will = self.drop_subscriptions(client);
        self.sessions.remove(client);
        self.awaiting_pubrel.remove(client);
        if let Some(will) = will {
            self.route(will);
        }
    }

    // ---- carrying out actions ----

    /// Carries out what a connection asked for, checking each action on the way.
    fn execute(&mut self, i: usize, was_closed: bool, actions: Vec<Action>) -> Outcome {
        if was_closed {
            assert!(
                actions.is_empty(),
                "a closed connection produced {actions:?}"
            );
        }
        let mut outcome = Outcome::default();
        for action in actions {
            assert!(!outcome.closed, "{action:?} after Action::Close");
            let client = self.slots[i].client_id.clone();
            match action {
                Action::Send(packet) => {
                    self.check_sent(i, &packet);
                    outcome.sends.push(packet);
                }
                Action::Publish { message, .. } => {
                    outcome.publishes += 1;
                    self.route(message);
                }
                Action::Subscribe { filter, entry } => {
                    let client = client.expect("subscribe needs a session");
                    self.tree.subscribe(&client, &filter, entry);
                }
                Action::Unsubscribe { filter } => {
                    let client = client.expect("unsubscribe needs a session");
                    self.tree.unsubscribe(&client, &filter);
                }
                Action::SendRetained { filter, entry } => {
                    let client = client.expect("retained messages need a session");
                    let messages = self.retained.matching(&filter, self.now);
                    let session = self.sessions.get_mut(&client).expect("session");
                    for message in messages {
                        session.enqueue(retained_delivery(&message, &entry), self.now);
                    }
                }
                Action::Authenticate { .. } => {
                    panic!("re-authentication without a method accepted at CONNECT")
                }
                Action::Close => outcome.closed = true,
            }
        }
        if outcome.closed {
            let conn = self.slots[i].conn.as_ref().expect("connection");
            assert!(conn.is_closed(), "Action::Close from an open connection");
            assert!(!conn.is_connected());
            if self.slots[i].live {
                self.settle(i);
            }
        }
        outcome
    }

    /// The connection has ended: settle the session, publish the will, end the session.
    fn settle(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.live = false;
        let client = slot.client_id.clone().expect("a live slot has a session");
        let conn = slot.conn.as_mut().expect("a live slot has a connection");
        let session = self.sessions.get_mut(&client).expect("session");
        let closed = conn.on_closed(session, self.now);
        assert!(
            !session.online,
            "a closed connection leaves its session offline"
        );
        assert!(conn.is_closed());
        if let Some(will) = closed.will {
            self.route(will);
        }
        if closed.session_ended {
            self.end_session(&client);
        }
    }

    /// Every packet the broker sends must be one the client can read.
    fn check_sent(&mut self, i: usize, packet: &Packet) {
        let slot = &mut self.slots[i];
        let conn = slot.conn.as_ref().expect("connection");
        let version = conn.version();
        let mut wire = BytesMut::new();
        if let Err(e) = packet.encode(version, &mut wire) {
            panic!("{packet:?} does not encode in {version}: {e}");
        }
        assert_eq!(wire.len(), packet.encoded_len(version), "{packet:?}");
        // A CONNACK is exempt: every property it carries is one the broker must send
        // (assigned identifier, granted session expiry and keep alive, its own limits), so a
        // client announcing a limit below about 40 bytes cannot be given a compliant one.
        if version.is_v5() && !matches!(packet, Packet::ConnAck(_)) {
            assert!(
                wire.len() as u64 <= u64::from(conn.client_max_packet_size()),
                "{} bytes exceed the client's Maximum Packet Size {}: {packet:?}",
                wire.len(),
                conn.client_max_packet_size(),
            );
        }
        match Decoder::new(version).decode(&mut wire) {
            Ok(Some(_)) if wire.is_empty() => {}
            other => panic!("{packet:?} does not decode back in {version}: {other:?}"),
        }
        let Packet::Publish(publish) = packet else {
            return;
        };
        slot.sent_ids.extend(publish.packet_id);
        // The client resolves topic aliases as the broker set them up.
        let mut topic = publish.topic.clone();
        if let Some(alias) = publish.properties.topic_alias {
            assert!(version.is_v5(), "topic alias towards a {version} client");
            assert!(
                (1..=slot.topic_alias_maximum).contains(&alias),
                "topic alias {alias} above the client's maximum {}",
                slot.topic_alias_maximum
            );
            if topic.is_empty() {
                topic = slot
                    .aliases
                    .get(&alias)
                    .unwrap_or_else(|| panic!("topic alias {alias} was never set up"))
                    .clone();
            } else {
                slot.aliases.insert(alias, topic.clone());
            }
        }
        assert!(!topic.is_empty(), "PUBLISH without a topic: {publish:?}");
        if publish.dup || publish.retain {
            // Resends and retained messages may repeat older messages.
            return;
        }
        let Some(seq) = seq_of(&publish.payload) else {
            return;
        };
        let subscriber = slot.client_id.clone().expect("deliveries need a session");
        let publisher = self.publisher_of[&seq].clone();
        let key = (subscriber, publisher, topic.to_string());
        let last = self.last_delivered.entry(key.clone()).or_insert(0);
        assert!(
            seq >= *last,
            "message {seq} delivered after {last}, for {key:?}"
        );
        *last = seq;
    }

    // ---- client input ----

    fn connect(&mut self, i: usize, spec: &ConnectSpec) {
        if self.slots[i].live {
            // A new connection takes the session over from the old one.
            let mut out = Vec::new();
            let conn = self.slots[i].conn.as_mut().expect("connection");
            conn.on_taken_over(&mut out);
            let outcome = self.execute(i, false, out);
            assert!(outcome.closed, "a taken-over connection closes");
        }
        let config = self.config.clone();
        let slot = &mut self.slots[i];
        slot.conn = Some(Connection::new(config.clone(), self.now));
        slot.decoder =
            Decoder::new(ProtocolVersion::V5).with_max_packet_size(config.max_packet_size);
        slot.client_id = None;
        slot.live = false;
        slot.aliases.clear();
        slot.last_publish = None;
        slot.sent_ids.clear();
        slot.resumed_over_limit = false;
        slot.receive_maximum = u16::MAX;
        slot.topic_alias_maximum = 0;
        if spec.version.is_v5() {
            slot.receive_maximum = spec.receive_maximum.unwrap_or(u16::MAX);
            slot.topic_alias_maximum = spec.topic_alias_maximum.unwrap_or(0);
        }
        let connect = connect_packet(slot.own_id, spec);
        let mut wire = BytesMut::new();
        Packet::from(connect)
            .encode(spec.version, &mut wire)
            .expect("the client's CONNECT encodes");
        if spec.bad_protocol_level {
            // Fixed header (2), protocol name (2 + 4 or 6), then the level.
            let at = 4 + spec.version.protocol_name().len();
            wire[at] = 6;
        }
        let decoded = slot.decoder.decode(&mut wire);
        let conn = slot.conn.as_mut().expect("just made");
        let connect = match decoded {
            Ok(Some(Packet::Connect(connect))) => connect,
            Ok(other) => panic!("CONNECT decoded as {other:?}"),
            Err(e) => {
                let mut out = Vec::new();
                conn.on_decode_error(&e, &mut out);
                let outcome = self.execute(i, false, out);
                assert!(outcome.closed, "a broken CONNECT closes the connection");
                return;
            }
        };
        self.generated += 1;
        let generated = format!("gen{}", self.generated);
        // Like the broker, this runtime refuses an authentication method it does not know
        // (it knows none).
        let connected = conn
            .on_connect(*connect, self.now, || generated)
            .and_then(|request| match request.authentication {
                Some(_) => Err(conn.refuse(ReasonCode::BadAuthenticationMethod)),
                None => Ok(request),
            });
        let request = match connected {
            Ok(request) => request,
            Err(refusal) => {
                assert!(!refusal.reason.is_success());
                assert!(conn.is_closed(), "a refused CONNECT closes");
                let mut out: Vec<Action> = refusal
                    .connack
                    .map(|p| Action::Send(*p))
                    .into_iter()
                    .collect();
                out.push(Action::Close);
                self.execute(i, false, out);
                return;
            }
        };
        let client = request.client_id.clone();
        let existed = self.sessions.contains_key(&client);
        let resumable =
            existed && !request.clean_start && !self.sessions[&client].is_expired(self.now);
        if existed && !resumable {
            self.reset_session(&client);
        }
        if !existed {
            self.sessions
                .insert(client.clone(), Session::new(client.clone(), &self.config));
            self.awaiting_pubrel.insert(client.clone(), HashSet::new());
        }
        let slot = &mut self.slots[i];
        slot.client_id = Some(client.clone());
        slot.live = true;
        slot.accepted = Some(spec.clone());
        let conn = slot.conn.as_mut().expect("connection");
        let session = self.sessions.get_mut(&client).expect("session");
        slot.resumed_over_limit = session.inflight_len()
            > usize::from(slot.receive_maximum.min(self.config.max_inflight));
        let mut out = Vec::new();
        conn.accept(&request, session, resumable, self.now, &mut out);
        let outcome = self.execute(i, false, out);
        match outcome.sends.first() {
            Some(Packet::ConnAck(connack)) => {
                assert!(connack.reason_code.is_success());
                assert_eq!(connack.session_present, resumable);
            }
            other => panic!("accept sent {other:?} first"),
        }
    }

    /// Builds the packet the client sends, in the slot's protocol version.
    fn build(&mut self, i: usize, spec: &PacketSpec) -> Packet {
        let own_id = self.slots[i].own_id;
        match spec {
            PacketSpec::Publish(p) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.publisher_of
                    .insert(seq, self.slots[i].client_id.clone());
                let mut payload = seq.to_string().into_bytes();
                match p.payload {
                    PayloadSpec::Seq => {}
                    PayloadSpec::Padded(n) => payload.extend(std::iter::repeat_n(b'x', n)),
                    PayloadSpec::InvalidUtf8 => payload.extend([0xFF, 0xFE]),
                    PayloadSpec::Empty => payload.clear(),
                    PayloadSpec::Huge => payload.extend(std::iter::repeat_n(b'x', 300)),
                }
                let mut publish = Publish::new(s(p.topic), Bytes::from(payload));
                publish.qos = p.qos;
                publish.retain = p.retain;
                publish.dup = p.dup && p.qos != QoS::AtMostOnce;
                publish.packet_id = (p.qos != QoS::AtMostOnce).then(|| packet_id(p.id));
                publish.properties.topic_alias = p.alias;
                publish.properties.payload_format_indicator = p.utf8;
                publish.properties.message_expiry_interval = p.expiry;
                if p.user_property {
                    publish.properties.user_properties.push((s("k"), s("v")));
                }
                if p.subscription_id {
                    publish.properties.subscription_identifiers.push(1);
                }
                self.slots[i].last_publish = Some(publish.clone());
                Packet::Publish(publish)
            }
            PacketSpec::PubAck(id) => Packet::PubAck(Ack::new(packet_id(*id))),
            PacketSpec::PubRec(id, ok) => Packet::PubRec(if *ok {
                Ack::new(packet_id(*id))
            } else {
                Ack::with_reason(packet_id(*id), ReasonCode::UnspecifiedError)
            }),
            PacketSpec::PubRel(id) => Packet::PubRel(Ack::new(packet_id(*id))),
            PacketSpec::PubComp(id) => Packet::PubComp(Ack::new(packet_id(*id))),
            PacketSpec::Subscribe {
                id,
                subs,
                identifier,
            } => {
                let mut subscribe = Subscribe {
                    packet_id: packet_id(*id),
                    properties: Default::default(),
                    subscriptions: subs
                        .iter()
                        .map(|&(filter, qos, no_local, rap, rh)| Subscription {
                            filter: s(filter),
                            options: SubscriptionOptions {
                                qos,
                                no_local,
                                retain_as_published: rap,
                                retain_handling: rh,
                            },
                        })
                        .collect(),
                };
                subscribe.properties.subscription_identifier = *identifier;
                Packet::Subscribe(subscribe)
            }
            PacketSpec::Unsubscribe { id, filters } => Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(*id),
                properties: Default::default(),
                filters: filters.iter().map(|f| s(f)).collect(),
            }),
            PacketSpec::PingReq => Packet::PingReq,
            PacketSpec::Disconnect {
                reason,
                session_expiry,
            } => {
                let mut disconnect = Disconnect::new(*reason);
                disconnect.properties.session_expiry_interval = *session_expiry;
                Packet::Disconnect(disconnect)
            }
            PacketSpec::Connect(spec) => Packet::from(connect_packet(own_id, spec)),
            PacketSpec::ConnAck => Packet::from(ConnAck {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: Default::default(),
            }),
            PacketSpec::SubAck(id) => Packet::from(SubAck {
                packet_id: packet_id(*id),
                properties: Default::default(),
                reason_codes: vec![ReasonCode::GrantedQoS1],
            }),
            PacketSpec::UnsubAck(id) => Packet::from(UnsubAck {
                packet_id: packet_id(*id),
                properties: Default::default(),
                reason_codes: vec![ReasonCode::Success],
            }),
            PacketSpec::PingResp => Packet::PingResp,
            PacketSpec::Auth => Packet::from(Auth {
                reason_code: ReasonCode::ReAuthenticate,
                properties: Default::default(),
            }),
        }
    }

    /// The client writes a packet; the broker decodes what arrives.
    fn send(&mut self, i: usize, packet: Packet) {
        let version = self.slots[i].decoder.version();
        let mut wire = BytesMut::new();
        if packet.encode(version, &mut wire).is_err() {
            // Not expressible in this version (AUTH in 3.1.1): GARBAGE covers the bytes.
            return;
        }
        self.feed(i, wire);
    }

    fn feed(&mut self, i: usize, mut wire: BytesMut) {
        if self.slots[i].conn.is_none() {
            return;
        }
        loop {
            match self.slots[i].decoder.decode(&mut wire) {
                Ok(Some(packet)) => self.on_packet(i, packet),
                // A partial packet that never completes: the client went quiet.
                Ok(None) => return,
                Err(e) => {
                    let conn = self.slots[i].conn.as_mut().expect("connection");
                    let was_closed = conn.is_closed();
                    let mut out = Vec::new();
                    conn.on_decode_error(&e, &mut out);
                    let outcome = self.execute(i, was_closed, out);
                    assert!(was_closed || outcome.closed, "a decode error closes");
                    return;
                }
            }
        }
    }

    fn on_packet(&mut self, i: usize, packet: Packet) {
        let now = self.now;
        let slot = &mut self.slots[i];
        let conn = slot.conn.as_mut().expect("connection");
        if !slot.live {
            assert!(conn.is_closed());
            let mut spare = Session::new("spare".into(), &self.config);
            let mut out = Vec::new();
            conn.on_packet(packet, &mut spare, now, &mut out);
            assert!(out.is_empty(), "a closed connection answered: {out:?}");
            assert_eq!(spare.subscription_count(), 0);
            assert_eq!(spare.inbound_qos2_len(), 0);
            return;
        }
        let client = slot.client_id.clone().expect("live");
        let session = self.sessions.get_mut(&client).expect("session");
        let publish = match &packet {
            Packet::Publish(p) => Some((p.qos, p.packet_id)),
            _ => None,
        };
        let pubrel = match &packet {
            Packet::PubRel(ack) => Some(ack.packet_id.get()),
            _ => None,
        };
        let mut out = Vec::new();
        conn.on_packet(packet, session, now, &mut out);
        let outcome = self.execute(i, false, out);
        let model = self.awaiting_pubrel.get_mut(&client);
        if let Some(id) = pubrel {
            if let Some(model) = model {
                model.remove(&id);
            }
            return;
        }
        let Some((qos, id)) = publish else {
            return;
        };
        assert!(outcome.publishes <= 1, "one PUBLISH routed more than once");
        let acks = |want: fn(&Packet) -> Option<PacketId>| {
            outcome
                .sends
                .iter()
                .filter(|p| want(p).is_some() && want(p) == id)
                .count()
        };
        let pubacks = acks(|p| match p {
            Packet::PubAck(a) => Some(a.packet_id),
            _ => None,
        });
        let pubrecs = acks(|p| match p {
            Packet::PubRec(a) => Some(a.packet_id),
            _ => None,
        });
        let expected = usize::from(!outcome.closed);
        match qos {
            QoS::AtMostOnce => assert_eq!(pubacks + pubrecs, 0),
            QoS::AtLeastOnce => {
                assert_eq!(pubacks, expected, "PUBACKs for a QoS 1 PUBLISH");
                assert_eq!(pubrecs, 0);
            }
            QoS::ExactlyOnce => {
                assert_eq!(pubrecs, expected, "PUBRECs for a QoS 2 PUBLISH");
                assert_eq!(pubacks, 0);
                let id = id.expect("QoS 2 has an id").get();
                // The session may have ended when the connection closed.
                if let Some(model) = model {
                    if model.contains(&id) {
                        assert_eq!(outcome.publishes, 0, "QoS 2 resend {id} delivered again");
                    } else if outcome.publishes == 1 {
                        model.insert(id);
                    }
                }
            }
        }
    }

    // ---- towards the clients ----

    fn fill(&mut self, budget: usize) {
        for i in 0..2 {
            let now = self.now;
            let slot = &mut self.slots[i];
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            if !slot.live {
                // A closed connection sends nothing, even with a session full of messages.
                let mut out = Vec::new();
                let queued = slot
                    .client_id
                    .as_ref()
                    .and_then(|c| self.sessions.get_mut(c))
                    .map(|session| {
                        let before = session.queued_len();
                        assert!(!conn.fill_outgoing(session, now, budget, &mut out));
                        (before, session.queued_len())
                    });
                assert!(out.is_empty(), "a closed connection sent {out:?}");
                if let Some((before, after)) = queued {
                    assert_eq!(before, after);
                }
                continue;
            }
            let client = slot.client_id.clone().expect("live");
            let mut rounds = 0;
            loop {
                rounds += 1;
                assert!(rounds < 1000, "fill_outgoing never finishes");
                let conn = self.slots[i].conn.as_mut().expect("connection");
                let session = self.sessions.get_mut(&client).expect("session");
                let mut out = Vec::new();
                let more = conn.fill_outgoing(session, now, budget, &mut out);
                assert!(
                    out.iter()
                        .all(|a| matches!(a, Action::Send(Packet::Publish(_)))),
                    "fill_outgoing produced {out:?}"
                );
                let sent: Vec<PacketId> = out
                    .iter()
                    .filter_map(|a| match a {
                        Action::Send(Packet::Publish(p)) => p.packet_id,
                        _ => None,
                    })
                    .collect();
                self.execute(i, false, out);
                let session = &self.sessions[&client];
                for id in sent {
                    let n = session.inflight().filter(|f| f.packet_id == id).count();
                    assert_eq!(n, 1, "packet id {id} sent but {n} in flight with it");
                }
                if !more {
                    break;
                }
            }
        }
    }

    fn check_invariants(&self) {
        let config = &self.config;
        for slot in &self.slots {
            if let Some(conn) = &slot.conn {
                assert_eq!(slot.live, conn.is_connected());
            }
            if !slot.live {
                continue;
            }
            let session = &self.sessions[slot.client_id.as_ref().expect("live")];
            assert!(session.online);
            let limit = usize::from(slot.receive_maximum.min(config.max_inflight));
            // Flow control on the wire: unacknowledged messages sent on this connection.
            let using_quota = session
                .inflight()
                .filter(|f| slot.sent_ids.contains(&f.packet_id))
                .count();
            assert!(
                using_quota <= limit,
                "{using_quota} sent and unacknowledged, the client's limit is {limit}"
            );
            // A session resumed with more in flight (an earlier connection allowed more)
            // holds them until acknowledged; otherwise the session never exceeds the limit.
            if !slot.resumed_over_limit {
                assert!(
                    session.inflight_len() <= limit,
                    "{} in flight, the limit is {limit}",
                    session.inflight_len()
                );
            }
        }
        for (client, session) in &self.sessions {
            assert!(session.queued_len() <= config.max_queued_messages);
            assert!(session.queued_bytes() <= config.max_queued_bytes);
            assert!(session.inflight_len() <= usize::from(config.max_inflight));
            let ids: HashSet<PacketId> = session.inflight().map(|f| f.packet_id).collect();
            assert_eq!(
                ids.len(),
                session.inflight_len(),
                "packet ids in flight repeat"
            );
            let model = &self.awaiting_pubrel[client];
            assert_eq!(session.inbound_qos2_len(), model.len());
            for id in model {
                assert!(session.is_awaiting_pubrel(packet_id(*id)));
            }
            assert!(session.inbound_qos2_len() <= usize::from(config.receive_maximum));
        }
        assert_eq!(
            self.tree.len(),
            self.sessions
                .values()
                .map(|s| s.subscription_count())
                .sum::<usize>(),
            "the index and the sessions disagree on subscriptions"
        );
    }
}

fn connect_packet(own_id: &str, spec: &ConnectSpec) -> Connect {
    let client_id = match spec.client_id {
        0 => s(own_id),
        1 => MqttString::default(),
        _ => s("a-client-identifier-too-long"),
    };
    let mut connect = Connect::new(spec.version, client_id);
    connect.clean_start = spec.clean_start;
    connect.keep_alive = spec.keep_alive;
    let props = &mut connect.properties;
    props.session_expiry_interval = spec.session_expiry;
    props.receive_maximum = spec.receive_maximum;
    props.maximum_packet_size = spec.maximum_packet_size;
    props.topic_alias_maximum = spec.topic_alias_maximum;
    props.request_problem_information = spec.problem_information;
    if spec.user_property {
        props.user_properties.push((s("k"), s("v")));
    }
    if spec.auth_method {
        props.authentication_method = Some(s("SCRAM-SHA-1"));
    }
    connect.will = spec.will.as_ref().map(|w| {
        let mut payload = b"will".to_vec();
        if w.invalid_utf8 {
            payload.push(0xFF);
        }
        let mut will = Will {
            topic: s(w.topic),
            payload: Bytes::from(payload),
            qos: w.qos,
            retain: w.retain,
            properties: Default::default(),
        };
        will.properties.will_delay_interval = w.delay;
        will.properties.message_expiry_interval = w.expiry;
        will.properties.payload_format_indicator = w.utf8;
        will
    });
    connect
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    // Most runs start by connecting both clients, so that the steps after do something.
    (
        prop::collection::vec(step(), 1..=60),
        connect_spec(),
        connect_spec(),
    )
        .prop_map(|(mut steps, a, b)| {
            for (client, spec) in [(1, b), (0, a)] {
                steps.insert(
                    0,
                    Step {
                        client,
                        dt: 0,
                        budget: 10_000,
                        revive: false,
                        event: Event::Connect(Box::new(spec)),
                    },
                );
            }
            steps
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of client input, valid or not, in either protocol version: the core never
    /// panics; everything it sends encodes, decodes back and fits the client's Maximum Packet
    /// Size; flow control, queue limits and packet identifiers hold; closed connections stay
    /// silent; QoS 1 is acknowledged once, QoS 2 delivered once per identifier; and each
    /// publisher's messages on a topic reach each subscriber in order.
    #[test]
    fn no_client_input_breaks_the_broker_invariants(
        config in broker_config(),
        steps in steps(),
    ) {
        let mut harness = Harness::new(config);
        for step in steps {
            harness.run(step);
        }
        // Finally every client goes away; the sessions settle.
        for i in 0..2 {
            if harness.slots[i].live {
                harness.settle(i);
            }
        }
        harness.check_invariants();
    }
}
