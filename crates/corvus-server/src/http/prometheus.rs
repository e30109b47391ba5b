//! `/metrics`: the broker's figures in the Prometheus text exposition format (version
//! 0.0.4). Every name starts with `corvus_`; counters end in `_total`; units are in the
//! name (`_bytes`, `_seconds`). docs/operations.md lists them all.

use std::fmt::Write;

use corvus_core::DropReason;
use mqtt_codec::{QoS, ReasonCode};

use super::HttpState;
use crate::metrics::{Metrics, SourceLimit};
use crate::stats::BrokerStats;

/// Builds the exposition text, one family after another.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A reason code as a label value: its specification name in snake case.
pub fn reason_label(code: u8) -> String {
    let Some(reason) = ReasonCode::from_u8(code) else {
        return format!("0x{code:02x}");
    };
    let mut label = String::new();
    for c in reason.description().chars() {
        match c.is_ascii_alphanumeric() {
            true => label.push(c.to_ascii_lowercase()),
            false if !label.ends_with('_') => label.push('_'),
            false => {}
        }
    }
    label.trim_end_matches('_').to_string()
}

const QOS: [(QoS, &str); 3] = [
    (QoS::AtMostOnce, "0"),
    (QoS::AtLeastOnce, "1"),
    (QoS::ExactlyOnce, "2"),
];

/// The exposition. Takes a [`BrokerStats`] snapshot, which walks the sessions: fine at
/// scrape intervals.
pub fn render(state: &HttpState) -> String {
    let broker = &state.broker;
    let metrics = &broker.metrics;
    let stats = BrokerStats::collect(broker, state.started.elapsed());
    let mut out = Exposition(String::with_capacity(8 * 1024));

    out.single(
        "corvus_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        stats.uptime_seconds,
    );
    out.single(
        "corvus_connections",
        "gauge",
        "Network connections open now (MQTT, all listeners).",
        stats.connections_open,
    );
    out.single(
        "corvus_connections_total",
        "counter",
        "Network connections accepted since start.",
        stats.connections_total,
    );
    out.family(
        "corvus_sessions",
        "gauge",
        "Sessions held, by whether their client is connected.",
    );
    out.sample(
        "corvus_sessions",
        &[("state", "online")],
        stats.clients_connected,
    );
    out.sample(
        "corvus_sessions",
        &[("state", "offline")],
        stats.clients_disconnected,
    );

    out.family(
        "corvus_connections_refused_total",
        "counter",
        "Connections refused, by reason: a per-source limit before any MQTT, or the CONNACK reason code.",
    );
    for limit in SourceLimit::ALL {
        out.sample(
            "corvus_connections_refused_total",
            &[("reason", limit.label())],
            metrics.refused(limit),
        );
    }
    for (code, n) in metrics.refused_connects() {
        out.sample(
            "corvus_connections_refused_total",
            &[("reason", &reason_label(code))],
            n,
        );
    }
    out.family(
        "corvus_disconnects_total",
        "counter",
        "DISCONNECT packets the broker sent (MQTT 5.0), by reason code.",
    );
    for (code, n) in metrics.disconnects() {
        out.sample(
            "corvus_disconnects_total",
            &[("reason", &reason_label(code))],
            n,
        );
    }

    for (direction, counts) in [
        (
            "received",
            Metrics::publish_received as fn(&Metrics, QoS) -> (u64, u64),
        ),
        ("sent", Metrics::publish_sent),
    ] {
        let messages = format!("corvus_messages_{direction}_total");
        out.family(
            &messages,
            "counter",
            &format!("PUBLISH packets {direction}, by QoS."),
        );
        for (qos, label) in QOS {
            out.sample(&messages, &[("qos", label)], counts(metrics, qos).0);
        }
        let bytes = format!("corvus_payload_bytes_{direction}_total");
        out.family(
            &bytes,
            "counter",
            &format!("Payload bytes of PUBLISH packets {direction}, by QoS."),
        );
        for (qos, label) in QOS {
            out.sample(&bytes, &[("qos", label)], counts(metrics, qos).1);
        }
    }
    out.single(
        "corvus_bytes_received_total",
        "counter",
        "Bytes read from clients (MQTT, all listeners).",
        stats.bytes_received,
    );
    out.single(
        "corvus_bytes_sent_total",
        "counter",
        "Bytes written to clients (MQTT, all listeners).",
        stats.bytes_sent,
    );

    out.family(
        "corvus_messages_dropped_total",
        "counter",
        "Messages the broker did not deliver, by reason.",
    );
    for reason in DropReason::ALL {
        out.sample(
            "corvus_messages_dropped_total",
            &[("reason", reason.label())],
            metrics.dropped(reason),
        );
    }

    out.single(
        "corvus_retained_messages",
        "gauge",
        "Retained messages of clients held.",
        stats.retained_messages,
    );
    out.single(
        "corvus_retained_bytes",
        "gauge",
        "Topic and payload bytes of the retained messages held (as the quota counts them).",
        stats.retained_bytes,
    );
    out.single(
        "corvus_subscriptions",
        "gauge",
        "Subscriptions of all sessions (shared ones included).",
        stats.subscriptions,
    );
    out.single(
        "corvus_queued_messages",
        "gauge",
        "Messages waiting in session queues, connected or not, not yet in flight.",
        stats.messages_queued,
    );
    out.single(
        "corvus_queued_bytes",
        "gauge",
        "Payload bytes of the queued messages.",
        stats.messages_queued_bytes,
    );
    out.single(
        "corvus_inflight_messages",
        "gauge",
        "QoS 1 and 2 messages sent and not yet acknowledged.",
        stats.messages_inflight,
    );

    listeners(&mut out, &metrics.listeners());
    out.0
}

/// The per-listener families, one sample per listener (labels `listener`, its address, and
/// `kind`).
fn listeners(out: &mut Exposition, listeners: &[std::sync::Arc<crate::ListenerFigures>]) {
    type Field = fn(&crate::ListenerFigures) -> &std::sync::atomic::AtomicU64;
    let families: [(&str, &str, &str, Field); 4] = [
        (
            "corvus_listener_connections",
            "gauge",
            "Connections open now, per listener.",
            |l| &l.connections_current,
        ),
        (
            "corvus_listener_connections_total",
            "counter",
            "Connections accepted since start, per listener.",
            |l| &l.connections_total,
        ),
        (
            "corvus_listener_bytes_received_total",
            "counter",
            "Bytes read from clients, per listener.",
            |l| &l.bytes_received,
        ),
        (
            "corvus_listener_bytes_sent_total",
            "counter",
            "Bytes written to clients, per listener.",
            |l| &l.bytes_sent,
        ),
    ];
    for (name, kind, help, field) in families {
        out.family(name, kind, help);
        for listener in listeners {
            let addr = listener.addr.to_string();
            out.sample(
                name,
                &[("listener", &addr), ("kind", listener.kind)],
                Metrics::get(field(listener)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_become_snake_case_labels() {
        assert_eq!(reason_label(0x86), "bad_user_name_or_password");
        assert_eq!(reason_label(0x87), "not_authorized");
        assert_eq!(reason_label(0x8E), "session_taken_over");
        assert_eq!(reason_label(0x9F), "connection_rate_exceeded");
        assert_eq!(reason_label(0x03), "0x03");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition(String::new());
        out.sample("m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(out.0, "m{l=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
