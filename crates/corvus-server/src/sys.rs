//! The `$SYS/broker/...` topics, with the names Mosquitto users know: every `sys_interval`
//! seconds a snapshot of the broker ([`crate::stats`]) is published as retained QoS 0
//! messages (see `docs/sys-topics.md` for every topic).
//!
//! They go through the broker's ordinary routing (`MessageRouting::publish`, as wills do),
//! so what holds for any message holds for them: only subscriptions that the ACL let a
//! client make receive them (`$SYS` needs an explicit grant), a filter starting with a
//! wildcard never matches them (MQTT 5.0 section 4.7.2), and a new subscriber gets the
//! latest values at once, retained.
//!
//! Choices:
//! - A topic is published when its value changed since it was last published (every topic
//!   on the first tick), as Mosquitto does: subscribers are not sent what they already have
//!   (uptime changes at every tick anyway).
//! - The first tick comes one interval after start, not at once: a broker that lives a few
//!   seconds publishes nothing.
//! - Being retained, the messages are held by the broker apart from the clients' retained
//!   messages (`Broker::publish`): in memory only, never persisted, outside the retained
//!   quota and figures; a restart starts them afresh.
//!
//! This module must not compute statistics (that is `stats.rs`) nor deliver anything itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corvus_core::{DropReason, Message, Millis};
use mqtt_codec::{MqttString, PublishProperties, QoS};
use tokio::sync::watch;

use crate::broker::{Broker, MessageRouting};
use crate::clock;
#[cfg(test)]
use crate::stats::StatsTracker;
use crate::stats::{snapshot, BrokerStats, Load, SharedStats};

/// Where every topic of this module lives.
pub const PREFIX: &str = "$SYS/broker/";

/// What `$SYS/broker/version` says.
pub const VERSION: &str = concat!("corvus ", env!("CARGO_PKG_VERSION"));

/// Publishes the `$SYS` topics every `interval` until shutdown (never, with a zero
/// interval).
pub async fn run(
    broker: Arc<Broker>,
    stats: SharedStats,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if interval.is_zero() {
        return;
    }
    let mut topics = SysTopics::new(stats);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                // Walks every session (see `stats.rs`): fine every few seconds.
                topics.tick(&broker, Instant::now(), clock::now());
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// The `$SYS` topics' state between ticks: the statistics tracker and what each topic last
/// said.
#[derive(Debug)]
pub struct SysTopics {
    tracker: SharedStats,
    last: HashMap<String, String>,
}

impl SysTopics {
    /// Snapshots from `tracker`, which the HTTP endpoint shares.
    pub fn new(tracker: SharedStats) -> SysTopics {
        SysTopics {
            tracker,
            last: HashMap::new(),
        }
    }

    /// Takes a snapshot at `now` (`now_ms` for the broker's routing) and publishes every
    /// topic whose value changed. Returns how many were published.
    pub fn tick(&mut self, broker: &Broker, now: Instant, now_ms: Millis) -> usize {
        let stats = snapshot(&self.tracker, broker, now);
        let mut published = 0;
        for (topic, value) in topics(&stats) {
            if self.last.get(&topic) == Some(&value) {
                continue;
            }
            publish(broker, &topic, Bytes::from(value.clone()), now_ms);
            self.last.insert(topic, value);
            published += 1;
        }
        published
    }
}

/// Publishes one retained QoS 0 message from the broker itself.
fn publish(broker: &Broker, topic: &str, payload: Bytes, now: Millis) {
    // Every topic here is a valid topic name; one that were not is skipped, not routed.
    let Ok(topic) = MqttString::try_from(topic) else {
        return;
    };
    let message = Message {
        topic,
        payload,
        qos: QoS::AtMostOnce,
        retain: true,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: None,
        received_at: None,
    };
    broker.publish(Arc::new(message), None, now);
}

/// Every topic (full name) and its value, for a snapshot.
pub fn topics(stats: &BrokerStats) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(64);
    let mut put = |name: &str, value: String| out.push((format!("{PREFIX}{name}"), value));
    put("version", VERSION.to_owned());
    put("uptime", format!("{} seconds", stats.uptime_seconds));
    put("clients/connected", stats.clients_connected.to_string());
    put("clients/total", stats.clients_total.to_string());
    put(
        "clients/disconnected",
        stats.clients_disconnected.to_string(),
    );
    put("clients/maximum", stats.clients_maximum.to_string());
    put("messages/received", stats.messages_received.to_string());
    put("messages/sent", stats.messages_sent.to_string());
    put("messages/queued", stats.messages_queued.to_string());
    put("messages/inflight", stats.messages_inflight.to_string());
    put("bytes/received", stats.bytes_received.to_string());
    put("bytes/sent", stats.bytes_sent.to_string());
    put("subscriptions/count", stats.subscriptions.to_string());
    put(
        "retained messages/count",
        stats.retained_messages.to_string(),
    );
    put("retained messages/bytes", stats.retained_bytes.to_string());
    put(
        "publish/messages/dropped",
        stats.messages_dropped.to_string(),
    );
    for reason in DropReason::ALL {
        let n = stats
            .messages_dropped_by_reason
            .get(reason.label())
            .copied()
            .unwrap_or(0);
        put(
            &format!("messages/dropped/{}", reason.label()),
            n.to_string(),
        );
    }
    for (label, n) in &stats.connections_refused {
        put(&format!("connections/refused/{label}"), n.to_string());
    }
    let load = &stats.load;
    let loads: [(&str, &Load); 6] = [
        ("messages/received", &load.messages_received),
        ("messages/sent", &load.messages_sent),
        ("bytes/received", &load.bytes_received),
        ("bytes/sent", &load.bytes_sent),
        ("connections", &load.connections),
        ("publish/dropped", &load.messages_dropped),
    ];
    for (name, load) in loads {
        for (window, value) in ["1min", "5min", "15min"].into_iter().zip(load.windows()) {
            put(&format!("load/{name}/{window}"), format!("{value:.2}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::BrokerLoad;

    fn stats() -> BrokerStats {
        let broker = Broker::new(corvus_core::BrokerConfig::default());
        let mut stats = BrokerStats::collect(&broker, Duration::from_secs(3725));
        stats.messages_received = 12;
        stats.messages_dropped_by_reason.insert("queue_full", 3);
        stats.messages_dropped = 3;
        stats.load = BrokerLoad {
            messages_received: Load {
                one_minute: 1.0 / 3.0,
                five_minutes: 2.0,
                fifteen_minutes: 12345.678,
            },
            ..BrokerLoad::default()
        };
        stats
    }

    fn value<'a>(topics: &'a [(String, String)], name: &str) -> &'a str {
        let topic = format!("{PREFIX}{name}");
        let found: Vec<_> = topics.iter().filter(|(t, _)| *t == topic).collect();
        assert_eq!(found.len(), 1, "{topic} once in {topics:?}");
        &found[0].1
    }

    #[test]
    fn topics_have_mosquittos_names_and_formats() {
        let topics = topics(&stats());
        assert_eq!(value(&topics, "version"), VERSION);
        assert!(VERSION.starts_with("corvus "), "{VERSION}");
        assert_eq!(value(&topics, "uptime"), "3725 seconds");
        assert_eq!(value(&topics, "messages/received"), "12");
        assert_eq!(value(&topics, "clients/connected"), "0");
        assert_eq!(value(&topics, "retained messages/count"), "0");
        assert_eq!(value(&topics, "publish/messages/dropped"), "3");
        assert_eq!(value(&topics, "messages/dropped/queue_full"), "3");
        assert_eq!(value(&topics, "messages/dropped/expired"), "0");
        assert_eq!(value(&topics, "connections/refused/source_rate"), "0");
        assert_eq!(value(&topics, "load/messages/received/1min"), "0.33");
        assert_eq!(value(&topics, "load/messages/received/5min"), "2.00");
        assert_eq!(value(&topics, "load/messages/received/15min"), "12345.68");
        assert_eq!(value(&topics, "load/publish/dropped/15min"), "0.00");
        for name in [
            "clients/total",
            "clients/disconnected",
            "clients/maximum",
            "messages/sent",
            "bytes/received",
            "bytes/sent",
            "subscriptions/count",
        ] {
            value(&topics, name);
        }
        for load in [
            "messages/received",
            "messages/sent",
            "bytes/received",
            "bytes/sent",
            "connections",
            "publish/dropped",
        ] {
            for window in ["1min", "5min", "15min"] {
                value(&topics, &format!("load/{load}/{window}"));
            }
        }
        for reason in DropReason::ALL {
            value(&topics, &format!("messages/dropped/{}", reason.label()));
        }
        // Every one a valid topic name.
        for (topic, _) in &topics {
            assert!(
                mqtt_codec::topic::validate_topic_name(topic).is_ok(),
                "{topic}"
            );
        }
    }

    #[test]
    fn only_changed_topics_are_published_after_the_first_tick() {
        let broker = Broker::new(corvus_core::BrokerConfig::default());
        let start = Instant::now();
        let mut sys = SysTopics::new(Arc::new(std::sync::Mutex::new(StatsTracker::new(start))));
        let at = start + Duration::from_secs(10);
        let all = topics(&stats()).len();
        assert_eq!(sys.tick(&broker, at, 0), all);
        // Retained apart: not in the clients' retained figures, so nothing moved.
        assert_eq!(broker.retained_count(), 0);
        assert_eq!(sys.tick(&broker, at, 0), 0);
        // Ten seconds on, the uptime.
        assert_eq!(sys.tick(&broker, at + Duration::from_secs(10), 0), 1);
        let snapshot = snapshot(&sys.tracker, &broker, at + Duration::from_secs(10));
        assert_eq!(snapshot.messages_received, 0);
    }

    #[test]
    fn the_interval_is_validated() {
        use crate::config::Config;
        assert_eq!(Config::default().sys_interval, 10);
        assert_eq!(Config::parse("sys_interval = 0").unwrap().sys_interval, 0);
        assert_eq!(
            Config::parse("sys_interval = 3600").unwrap().sys_interval,
            3600
        );
        let err = Config::parse("sys_interval = 3601")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sys_interval"), "{err}");
        let err = Config::parse("sys_interval = -1").unwrap_err().to_string();
        assert!(err.contains("sys_interval"), "{err}");
    }
}
