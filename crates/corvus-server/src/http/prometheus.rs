//! `/metrics`: the broker's figures in the Prometheus text exposition format (version
//! 0.0.4). Every name starts with `corvus_`; counters end in `_total`; units are in the
//! name (`_bytes`, `_seconds`). docs/operations.md lists them all.

use std::fmt::Write;

use corvus_core::{DropReason, HistogramSnapshot};
use mqtt_codec::{QoS, ReasonCode};

use super::HttpState;
use crate::metrics::{Metrics, SourceLimit};
use crate::stats::BrokerLoad;

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

    /// A histogram family in seconds: cumulative `_bucket`s by `le`, ending with `+Inf`
    /// (equal to `_count`), then `_sum` and `_count`.
    fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, n) in snapshot.buckets() {
            let le = bound.map_or_else(|| "+Inf".to_owned(), micros_as_seconds);
            self.sample(&bucket, &[("le", &le)], n);
        }
        self.sample(
            &format!("{name}_sum"),
            &[],
            micros_as_seconds(snapshot.sum_micros),
        );
        self.sample(&format!("{name}_count"), &[], snapshot.count());
    }
}

/// Microseconds as decimal seconds, exactly (`2500` is `0.0025`): bucket bounds must read
/// the same at every scrape, and float formatting of a division need not.
fn micros_as_seconds(micros: u64) -> String {
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        return secs.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{secs}.{}", frac.trim_end_matches('0'))
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
    let stats = state.snapshot();
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

    out.histogram(
        "corvus_publish_delivery_seconds",
        "From a client's PUBLISH decoded to each copy of it written for a subscriber, first sends only (not re-sends, retained messages sent at subscribe time, or messages read back from the store).",
        &metrics.delivery_latency(),
    );
    // Absent without a store: there is nothing to sync, and zeros would read as a store
    // that never synced.
    if let Some(store) = broker.store() {
        out.histogram(
            "corvus_store_sync_seconds",
            "Time each store sync took: a batch's durable commit (group commit), or a periodic sync.",
            &store.sync_latency(),
        );
    }

    load_averages(&mut out, &stats.load);
    listeners(&mut out, &metrics.listeners());
    out.0
}

/// The load averages `$SYS` publishes, as gauges: one family, by what is counted and the
/// window. Prometheus computes its own rates from the counters; these are for dashboards
/// that show what `$SYS` shows.
fn load_averages(out: &mut Exposition, load: &BrokerLoad) {
    const NAME: &str = "corvus_load_per_minute";
    out.family(
        NAME,
        "gauge",
        "Rates per minute averaged over 1, 5 and 15 minutes, as $SYS/broker/load publishes them.",
    );
    for (what, average) in [
        ("messages_received", load.messages_received),
        ("messages_sent", load.messages_sent),
        ("bytes_received", load.bytes_received),
        ("bytes_sent", load.bytes_sent),
        ("connections", load.connections),
        ("messages_dropped", load.messages_dropped),
    ] {
        for (window, value) in ["1m", "5m", "15m"].into_iter().zip(average.windows()) {
            out.sample(NAME, &[("what", what), ("window", window)], value);
        }
    }
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
    fn bounds_and_sums_are_exact_decimal_seconds() {
        assert_eq!(micros_as_seconds(0), "0");
        assert_eq!(micros_as_seconds(10), "0.00001");
        assert_eq!(micros_as_seconds(2_500), "0.0025");
        assert_eq!(micros_as_seconds(1_000_000), "1");
        assert_eq!(micros_as_seconds(12_345_678), "12.345678");
    }

    #[test]
    fn a_histogram_is_exposed_cumulative_with_inf_equal_to_count() {
        let h = corvus_core::Histogram::new(&[50, 1_000]);
        for micros in [50, 51, 2_000_000] {
            h.observe_micros(micros);
        }
        let mut out = Exposition(String::new());
        out.histogram("corvus_x_seconds", "X.", &h.snapshot());
        assert_eq!(
            out.0,
            "# HELP corvus_x_seconds X.\n\
             # TYPE corvus_x_seconds histogram\n\
             corvus_x_seconds_bucket{le=\"0.00005\"} 1\n\
             corvus_x_seconds_bucket{le=\"0.001\"} 2\n\
             corvus_x_seconds_bucket{le=\"+Inf\"} 3\n\
             corvus_x_seconds_sum 2.000101\n\
             corvus_x_seconds_count 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition(String::new());
        out.sample("m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(out.0, "m{l=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
