//! The limits and capabilities the broker core enforces and advertises. Plain values: the
//! runtime loads them from the config file and hands them in.

/// What happens to a QoS 1/2 message for a session whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueFullPolicy {
    /// Keep what is queued and drop the new message (the publisher is still acknowledged:
    /// a slow subscriber must not stall publishers).
    #[default]
    DropNewest,
    /// Drop the oldest queued message to make room.
    DropOldest,
}

/// Broker-wide protocol limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Largest packet accepted from a client, fixed header included; advertised in CONNACK.
    pub max_packet_size: u32,
    /// Largest first packet (the CONNECT) accepted from a client not yet connected: before
    /// anything is known about a client, it may not make the broker buffer much. The
    /// effective limit is the smaller of this and `max_packet_size`.
    pub max_connect_size: u32,
    /// How many QoS 1/2 PUBLISH a client may have unacknowledged towards the broker;
    /// advertised as Receive Maximum, exceeding it is DISCONNECT 0x93.
    pub receive_maximum: u16,
    /// Upper bound on unacknowledged QoS 1/2 PUBLISH towards a client, whatever its own
    /// Receive Maximum says.
    pub max_inflight: u16,
    /// Topic aliases a client may use towards the broker (0 disables them).
    pub topic_alias_maximum: u16,
    /// Longest keep alive a client may choose; a v5 client asking for more (or for none) is
    /// told this one in Server Keep Alive. 0 means no limit.
    pub max_keep_alive: u16,
    /// Longest session expiry granted, in seconds.
    pub max_session_expiry: u32,
    /// Messages a session may hold queued (not yet in flight).
    pub max_queued_messages: usize,
    /// Payload bytes a session may hold queued.
    pub max_queued_bytes: usize,
    /// Whether QoS 0 messages are queued for sessions whose client is offline.
    pub queue_qos0_offline: bool,
    pub queue_full_policy: QueueFullPolicy,
    /// Longest client identifier accepted, in bytes.
    pub max_client_id_len: usize,
    /// Longest topic name or filter accepted, in bytes (PUBLISH: 0x90, SUBSCRIBE: 0x8F).
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter (each `/` starts one more).
    pub max_topic_levels: usize,
    /// Most user properties on a PUBLISH or a will (0x83 beyond).
    pub max_user_properties: usize,
    /// Most bytes of user property names and values together on a PUBLISH or a will.
    pub max_user_property_bytes: usize,
    /// Most subscriptions one session may hold (SUBACK 0x97 for a new one beyond).
    pub max_subscriptions: usize,
    /// Whether the runtime persists sessions: persistent sessions then report the changes
    /// to their durable state as [`StoreEvent`](crate::session::StoreEvent)s.
    pub persistence: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_packet_size: 1024 * 1024,
            max_connect_size: 64 * 1024,
            receive_maximum: 1024,
            max_inflight: 1024,
            topic_alias_maximum: 1024,
            max_keep_alive: 0,
            max_session_expiry: u32::MAX,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            queue_qos0_offline: false,
            queue_full_policy: QueueFullPolicy::DropNewest,
            max_client_id_len: 65_535,
            max_topic_length: 4096,
            max_topic_levels: 64,
            max_user_properties: 64,
            max_user_property_bytes: 16 * 1024,
            max_subscriptions: 1024,
            persistence: false,
        }
    }
}
