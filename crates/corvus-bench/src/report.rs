//! The result of a run: as JSON for scripts, as text for people.

use std::fmt::Write;

use serde::Serialize;

use crate::checker::Verdict;
use crate::histogram::Histogram;
use crate::options::{BenchArgs, MqttVersion, Scenario};
use crate::progress::thousands;

/// End-to-end latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub samples: u64,
}

impl Latency {
    pub fn of(h: &Histogram) -> Option<Latency> {
        let us = |ns: u64| ns as f64 / 1000.0;
        (!h.is_empty()).then(|| Latency {
            p50: us(h.quantile(0.50)),
            p90: us(h.quantile(0.90)),
            p99: us(h.quantile(0.99)),
            p999: us(h.quantile(0.999)),
            max: us(h.max()),
            samples: h.len(),
        })
    }
}

/// What the conns scenario saw.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Connections {
    pub opened: u64,
    pub failed: u64,
    /// Connections established per second (CONNECT answered with a successful CONNACK).
    pub per_s: f64,
    pub pings: u64,
    pub pongs: u64,
    /// Connections the broker closed while they were held.
    pub dropped: u64,
    /// With `--pid`: the broker's CPU time (user and system, microseconds) per connection
    /// opened, while they were being opened: its own cost, whatever limited the rate.
    pub broker_cpu_us: Option<f64>,
}

/// The broker's resident memory (with `--pid`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rss {
    pub before_kb: u64,
    pub after_kb: u64,
    pub peak_kb: u64,
    /// conns only: (after connecting - before) / connections.
    pub per_connection_bytes: Option<f64>,
}

/// One run's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    /// "5" or "3" (3.1.1).
    pub mqtt: &'static str,
    pub qos: u8,
    pub size: u32,
    pub publishers: u32,
    pub subscribers: u32,
    pub duration_s: f64,
    /// Offered rate (0: as fast as the window lets).
    pub rate: u64,
    pub sent: u64,
    /// What the subscribers received, checked (over all of them).
    #[serde(flatten)]
    pub checked: Verdict,
    /// PUBLISHes the broker acknowledged with an error reason code.
    pub rejected: u64,
    /// Every message arrived once and in order, and nothing failed.
    pub ok: bool,
    /// From the first PUBLISH to the last delivery.
    pub elapsed_s: f64,
    pub received_per_s: f64,
    pub sent_per_s: f64,
    pub latency_us: Option<Latency>,
    pub connections: Option<Connections>,
    pub rss: Option<Rss>,
    /// What went wrong, if anything.
    pub errors: Vec<String>,
}

impl Report {
    /// An empty report of a run with `args`.
    pub fn new(args: &BenchArgs) -> Report {
        Report {
            scenario: args.scenario,
            mqtt: match args.mqtt {
                MqttVersion::V3 => "3",
                MqttVersion::V5 => "5",
            },
            qos: args.qos,
            size: args.size,
            publishers: args.publishers(),
            subscribers: args.subscribers(),
            duration_s: args.duration().as_secs_f64(),
            rate: args.rate(),
            sent: 0,
            checked: Verdict::default(),
            rejected: 0,
            ok: false,
            elapsed_s: 0.0,
            received_per_s: 0.0,
            sent_per_s: 0.0,
            latency_us: None,
            connections: None,
            rss: None,
            errors: Vec::new(),
        }
    }

    /// Decides `ok`: no error, and every message once, in order.
    pub fn conclude(&mut self) {
        let clean = self.is_clean();
        let connections_ok = self
            .connections
            .as_ref()
            .is_none_or(|c| c.failed == 0 && c.dropped == 0 && c.pongs == c.pings);
        self.ok = self.errors.is_empty() && clean && connections_ok;
    }

    /// Every message arrived once and in order, and the broker refused none.
    fn is_clean(&self) -> bool {
        self.checked.is_clean() && self.rejected == 0
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let qos = self.qos;
        let mqtt = if self.mqtt == "3" { "3.1.1" } else { "5.0" };
        let _ = match self.scenario {
            Scenario::Conns => writeln!(out, "conns: MQTT {mqtt}, held {:.0} s", self.duration_s),
            s => writeln!(
                out,
                "{}: {} publisher{} -> {} subscriber{}, QoS {qos}, {}-byte payloads, MQTT {mqtt}, {:.0} s{}",
                s.name(),
                self.publishers,
                plural(self.publishers),
                self.subscribers,
                plural(self.subscribers),
                self.size,
                self.duration_s,
                if self.rate > 0 { format!(", offered {} msg/s", thousands(self.rate)) } else { String::new() },
            ),
        };
        if let Some(c) = &self.connections {
            let _ = writeln!(
                out,
                "  connections  {} opened ({:.0}/s), {} failed, {} dropped while held",
                thousands(c.opened),
                c.per_s,
                c.failed,
                c.dropped
            );
            if let Some(cpu) = c.broker_cpu_us {
                let _ = writeln!(out, "  broker CPU   {cpu:.1} us per connection opened");
            }
            let _ = writeln!(
                out,
                "  pings        {} sent, {} answered",
                thousands(c.pings),
                thousands(c.pongs)
            );
        } else {
            let _ = writeln!(
                out,
                "  sent         {} msg ({} msg/s)",
                thousands(self.sent),
                thousands(self.sent_per_s as u64)
            );
            let _ = writeln!(
                out,
                "  received     {} msg ({} msg/s) of {} expected",
                thousands(self.checked.received),
                thousands(self.received_per_s as u64),
                thousands(self.checked.expected)
            );
            let c = &self.checked;
            let checked = match self.is_clean() {
                true => "every message once, in order".to_string(),
                false => format!(
                    "{} lost, {} duplicated, {} reordered, {} foreign, {} rejected by the broker",
                    c.lost, c.duplicated, c.reordered, c.foreign, self.rejected
                ),
            };
            let _ = writeln!(out, "  checked      {checked}");
        }
        if let Some(l) = &self.latency_us {
            let _ = writeln!(
                out,
                "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                micros(l.p50),
                micros(l.p90),
                micros(l.p99),
                micros(l.p999),
                micros(l.max)
            );
        }
        if let Some(r) = &self.rss {
            let _ = write!(
                out,
                "  broker RSS   {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after",
                r.before_kb as f64 / 1024.0,
                r.peak_kb as f64 / 1024.0,
                r.after_kb as f64 / 1024.0
            );
            if let Some(per) = r.per_connection_bytes {
                let _ = write!(out, "; {per:.0} bytes per connection");
            }
            out.push('\n');
        }
        for e in &self.errors {
            let _ = writeln!(out, "  error        {e}");
        }
        let _ = writeln!(
            out,
            "  result       {}",
            if self.ok { "ok" } else { "FAILED" }
        );
        out
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Microseconds for people: `312 us`, `4.21 ms`.
fn micros(us: f64) -> String {
    match us {
        us if us < 1000.0 => format!("{us:.0} us"),
        us => format!("{:.2} ms", us / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn report(scenario: &str) -> Report {
        Report::new(&Cli::parse_from(["bench", scenario]).args)
    }

    /// Every message is checked and the verdict says so: one lost, duplicated or reordered
    /// message, or one the broker refused, fails the run (exit status 1) and is named.
    #[test]
    fn any_defect_fails_the_run_and_is_named() {
        let mut clean = report("fanin");
        clean.checked.expected = 10;
        clean.checked.received = 10;
        clean.conclude();
        assert!(clean.ok);
        assert!(clean.text().contains("every message once, in order"));

        type Defect = fn(&mut Report);
        let defects: [(Defect, &str); 4] = [
            (|r| r.checked.lost = 1, "1 lost"),
            (|r| r.checked.duplicated = 1, "1 duplicated"),
            (|r| r.checked.reordered = 1, "1 reordered"),
            (|r| r.rejected = 1, "1 rejected"),
        ];
        for (defect, named) in defects {
            let mut dirty = report("fanin");
            dirty.checked.expected = 10;
            dirty.checked.received = 10;
            defect(&mut dirty);
            dirty.conclude();
            assert!(!dirty.ok);
            let text = dirty.text();
            assert!(!text.contains("every message once"), "{text}");
            assert!(text.contains(named), "{named}: {text}");
        }
    }

    #[test]
    fn conns_fail_on_a_failed_connection_or_an_unanswered_ping() {
        let held = |failed, dropped, pongs| Connections {
            opened: 10,
            failed,
            per_s: 1.0,
            pings: 20,
            pongs,
            dropped,
            broker_cpu_us: None,
        };
        for (connections, ok) in [
            (held(0, 0, 20), true),
            (held(1, 0, 20), false),
            (held(0, 1, 20), false),
            (held(0, 0, 19), false),
        ] {
            let mut r = report("conns");
            r.connections = Some(connections);
            r.conclude();
            assert_eq!(r.ok, ok, "{:?}", r.connections);
        }
    }
}
