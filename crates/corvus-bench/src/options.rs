//! The command line of `corvus bench`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::stamp::STAMP_LEN;

/// The largest payload: a PUBLISH's Remaining Length (payload, topic and header) must stay
/// within 268,435,455 bytes.
const MAX_PAYLOAD: i64 = 268_000_000;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// P publishers, each on its own topic, to one subscriber on a `#` filter.
    Fanin,
    /// One publisher to N subscribers of its topic.
    Fanout,
    /// P publishers, each on its own topic, to N subscribers with a mix of exact, `+` and
    /// `#` filters (and filters that match nothing, so the broker has a tree to search).
    Topics,
    /// One publisher at a fixed `--rate` to one subscriber: end-to-end latency percentiles.
    Latency,
    /// C idle connections from 127.0.0.x source addresses: connection rate, every PING
    /// answered, and the broker's memory per connection (with `--pid`).
    Conns,
}

/// The MQTT version the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[value(name = "3")]
    V3,
    /// MQTT 5.0.
    #[value(name = "5")]
    V5,
}

/// Load-test an MQTT broker (any broker) and check every message: per-publisher sequence
/// numbers show loss, duplication and reordering, and a timestamp in each payload gives
/// end-to-end latency. Progress goes to standard error; the result to standard output, as
/// text or (with --json) one JSON object. Exit status 1 when a message was lost,
/// duplicated or reordered, or the broker misbehaved.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    corvus bench fanin --qos 1 --duration 10\n  \
    corvus bench latency --rate 5000 --duration 10 --json\n  \
    corvus bench conns --connections 10000 --pid $(pidof corvus)")]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// The broker's address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// The broker's port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,

    /// MQTT version: 5 (5.0) or 3 (3.1.1).
    #[arg(long, value_enum, default_value = "5")]
    pub mqtt: MqttVersion,

    /// QoS of the messages and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// Payload bytes per message (at least 20: the header with publisher, sequence number
    /// and send time; at most 268,000,000, so that a PUBLISH stays within MQTT's largest
    /// packet).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(STAMP_LEN as i64..=MAX_PAYLOAD))]
    pub size: u32,

    /// Seconds to publish (conns: to hold the connections).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Publishers (fanin: 4, topics: 8; fanout and latency: 1).
    #[arg(long)]
    pub publishers: Option<u32>,

    /// Subscribers (fanout: 8, topics: 24; fanin and latency: 1).
    #[arg(long)]
    pub subscribers: Option<u32>,

    /// Messages per second offered, all publishers together (latency: 5000); 0 for as
    /// fast as the window lets.
    #[arg(long)]
    pub rate: Option<u64>,

    /// Messages on their way to each subscriber at most (sent and not yet received):
    /// throughput runs measure what the broker delivers, not what it can buffer, and stay
    /// within a broker's per-client queue (Mosquitto's holds 1000 by default). Each
    /// publisher gets an equal share; for QoS 1 and 2 the broker's Receive Maximum bounds
    /// it too.
    #[arg(long, default_value_t = 500)]
    pub window: u64,

    /// Connections to open (conns).
    #[arg(long, default_value_t = 1000)]
    pub connections: u32,

    /// Connection attempts in flight at once (conns).
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: u32,

    /// The broker's process id: its resident memory is read from /proc (peak during the
    /// run, and per connection for conns).
    #[arg(long)]
    pub pid: Option<u32>,

    /// Seconds to wait, after publishing stops, for messages still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,

    /// Write the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl Scenario {
    /// The name on the command line (`fanin`).
    pub fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    }
}

impl BenchArgs {
    /// Publishers for the scenario.
    pub fn publishers(&self) -> u32 {
        match self.scenario {
            Scenario::Fanout | Scenario::Latency => 1,
            Scenario::Fanin => self.publishers.unwrap_or(4),
            Scenario::Topics => self.publishers.unwrap_or(8),
            Scenario::Conns => 0,
        }
        .max(u32::from(self.scenario != Scenario::Conns))
    }

    /// Subscribers for the scenario.
    pub fn subscribers(&self) -> u32 {
        match self.scenario {
            Scenario::Fanin | Scenario::Latency => 1,
            Scenario::Fanout => self.subscribers.unwrap_or(8),
            Scenario::Topics => self.subscribers.unwrap_or(24),
            Scenario::Conns => 0,
        }
        .max(u32::from(self.scenario != Scenario::Conns))
    }

    /// The offered rate (0: unpaced).
    pub fn rate(&self) -> u64 {
        match self.scenario {
            Scenario::Latency => self.rate.unwrap_or(5000).max(1),
            _ => self.rate.unwrap_or(0),
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.clamp(0.0, 86_400.0))
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.drain.clamp(0.0, 3_600.0))
    }

    pub fn protocol(&self) -> mqtt_codec::ProtocolVersion {
        match self.mqtt {
            MqttVersion::V3 => mqtt_codec::ProtocolVersion::V3_1_1,
            MqttVersion::V5 => mqtt_codec::ProtocolVersion::V5,
        }
    }

    pub fn qos(&self) -> mqtt_codec::QoS {
        match self.qos {
            0 => mqtt_codec::QoS::AtMostOnce,
            1 => mqtt_codec::QoS::AtLeastOnce,
            _ => mqtt_codec::QoS::ExactlyOnce,
        }
    }
}
