//! `corvus bench` on the real binary against a running broker: every scenario completes
//! with every message checked (the JSON says how many and that none was lost, duplicated
//! or reordered), text output has its progress line, and a broker that is not there fails
//! the run with a reason and exit status 1. No speed is asserted: speed is for benchmarks.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::Broker;

const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `corvus bench ARGS --port PORT` and returns its output.
fn bench(port: u16, args: &[&str]) -> support::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corvus"));
    cmd.arg("bench")
        .args(args)
        .args(["--port", &port.to_string()])
        .env_remove("RUST_LOG");
    let name = format!("corvus bench {}", args.join(" "));
    let out = support::run(&name, &mut cmd, RUN_LIMIT);
    assert!(!out.timed_out, "{name} did not finish: {out}");
    out
}

/// Runs a scenario with `--json` and returns the parsed result, asserting a clean run.
fn clean_run(broker: &Broker, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--json", "--duration", "1"]);
    let out = bench(broker.addr.port(), &all);
    let report: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {out}"));
    assert_eq!(report["ok"], true, "{report}\n{}", broker.log());
    assert_eq!(out.code(), Some(0), "{out}");
    for field in ["lost", "duplicated", "reordered", "foreign", "rejected"] {
        assert_eq!(report[field], 0, "{field}: {report}");
    }
    report
}

fn number(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count: {report}"))
}

#[test]
fn every_throughput_scenario_checks_every_message() {
    let broker = Broker::start("bench-throughput");
    let pid = broker.pid().to_string();
    for (scenario, qos, mqtt, publishers, subscribers, fanout) in [
        ("fanin", "0", "5", 4, 1, 1),
        ("fanin", "1", "3", 4, 1, 1),
        ("fanout", "2", "5", 1, 8, 8),
        ("topics", "1", "5", 8, 24, 17),
    ] {
        let report = clean_run(
            &broker,
            &[scenario, "--qos", qos, "--mqtt", mqtt, "--pid", &pid],
        );
        let what = format!("{scenario} QoS {qos}: {report}");
        assert_eq!(number(&report, "publishers"), publishers, "{what}");
        assert_eq!(number(&report, "subscribers"), subscribers, "{what}");
        let sent = number(&report, "sent");
        assert!(sent > 0, "{what}");
        // Every publisher is heard by `fanout` subscribers (topics: 8 exact, + and # each).
        assert_eq!(number(&report, "expected"), sent * fanout, "{what}");
        assert_eq!(
            number(&report, "received"),
            number(&report, "expected"),
            "{what}"
        );
        let latency = &report["latency_us"];
        assert_eq!(latency["samples"], report["received"], "{what}");
        let us = |q: &str| {
            latency[q]
                .as_f64()
                .unwrap_or_else(|| panic!("no latency {q}: {what}"))
        };
        assert!(us("p50") <= us("p99") && us("p99") <= us("max"), "{what}");
        assert!(report["rss"]["peak_kb"].as_u64() > Some(0), "{what}");
    }
}

#[test]
fn latency_runs_at_the_offered_rate() {
    let broker = Broker::start("bench-latency");
    let report = clean_run(&broker, &["latency", "--rate", "2000", "--qos", "1"]);
    // Paced: about rate x duration messages, never more than the pace allows.
    let sent = number(&report, "sent");
    assert!((1..=2001).contains(&sent), "{report}");
    assert_eq!(number(&report, "received"), sent, "{report}");
    assert!(
        report["latency_us"]["p999"].as_f64() > Some(0.0),
        "{report}"
    );
}

#[test]
fn conns_opens_holds_and_pings_every_connection() {
    let broker = Broker::start("bench-conns");
    let pid = broker.pid().to_string();
    let report = clean_run(&broker, &["conns", "--connections", "300", "--pid", &pid]);
    let c = &report["connections"];
    assert_eq!(c["opened"], 300, "{report}");
    assert_eq!(c["failed"], 0, "{report}");
    assert_eq!(c["dropped"], 0, "{report}");
    assert!(c["pings"].as_u64() > Some(0), "{report}");
    assert_eq!(c["pings"], c["pongs"], "{report}");
    assert!(
        report["rss"]["per_connection_bytes"].as_f64() > Some(0.0),
        "{report}"
    );
    // Read from /proc in ticks of 10 ms, which 300 connections may not fill: present, and
    // not negative (`cpu.rs`'s tests show it is read and grows).
    assert!(
        c["broker_cpu_us"].as_f64().is_some_and(|us| us >= 0.0),
        "{report}"
    );
}

#[test]
fn text_output_has_a_progress_line_and_a_summary() {
    let broker = Broker::start("bench-text");
    let out = bench(broker.addr.port(), &["fanin", "--duration", "2"]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("fanin ") && l.contains(" msg/s), received ")),
        "no progress line: {out}"
    );
    for line in [
        "sent ",
        "received ",
        "checked      every message once, in order",
        "latency      p50 ",
        "result       ok",
    ] {
        assert!(out.stdout.contains(line), "no '{line}' in: {out}");
    }
}

#[test]
fn a_missing_broker_fails_the_run_with_its_reason() {
    let port = support::free_port();
    let out = bench(port, &["fanin", "--duration", "1", "--json"]);
    assert_eq!(out.code(), Some(1), "{out}");
    let report: Value = serde_json::from_str(out.stdout.trim()).expect("JSON even on failure");
    assert_eq!(report["ok"], false);
    let errors = report["errors"].to_string();
    assert!(errors.contains("cannot connect"), "{errors}");
}

/// `bench/render.py --selftest` renders fake results into a copy of the document and checks
/// the table, the markers and the SVG; `bench/compare.sh` parses. Skipped without python3.
#[test]
fn the_comparison_scripts_check_out() {
    let root = support::repo_root();
    if !support::require(
        "the_comparison_scripts_check_out",
        "python3",
        support::which("python3").is_some(),
    ) {
        return;
    }
    let mut render = Command::new("python3");
    render.arg(root.join("bench/render.py")).arg("--selftest");
    let out = support::run("render.py --selftest", &mut render, RUN_LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("selftest: ok"), "{out}");
    let mut syntax = Command::new("bash");
    syntax.arg("-n").arg(root.join("bench/compare.sh"));
    let out = support::run("bash -n compare.sh", &mut syntax, RUN_LIMIT);
    assert_eq!(out.code(), Some(0), "{out}");
}
