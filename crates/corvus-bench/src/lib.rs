//! `corvus bench`: a load generator for MQTT brokers (any broker, not only Corvus), in the
//! spirit of `nats bench` and `redis-benchmark`, that checks every message it sends.
//!
//! # What this crate owns
//!
//! - the scenarios: [`throughput`] (fanin, fanout, topics, and latency, which is a paced
//!   run of the same machinery) and [`conns`];
//! - [`plan`]: the topics and filters of each scenario, and whom each subscriber must hear;
//! - [`checker`]: per-publisher sequence numbers: loss, duplication, reordering;
//! - [`histogram`]: end-to-end latency percentiles from the send time in each payload
//!   ([`stamp`]);
//! - [`client`]: a lean MQTT client (hand-encoded PUBLISH, strict decoding by the codec);
//! - [`report`]: the result as text or JSON, and [`progress`]: the progress line.
//!
//! Publishers and subscribers share one process and one monotonic clock, so latency needs no
//! clock sync. The generator runs on a multi-threaded runtime with a worker per core it is
//! given (pin it with `taskset` to keep it off the broker's cores).

mod checker;
mod client;
mod conns;
mod cpu;
mod error;
mod histogram;
mod limits;
pub mod options;
mod packet_ids;
mod plan;
mod progress;
mod report;
mod rss;
mod stamp;
mod throughput;

use std::net::SocketAddr;

pub use error::BenchError;
pub use options::{BenchArgs, Scenario};
pub use report::Report;

/// Runs `corvus bench` with `args`: prints the result and returns the exit status (0 when
/// every message arrived once and in order and nothing failed, else 1).
pub fn main(args: BenchArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("corvus bench: {}", BenchError::Runtime(e));
            return 1;
        }
    };
    let report = runtime.block_on(run(&args));
    // Connections still closing must not hold the exit up.
    runtime.shutdown_background();
    if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("corvus bench: cannot write the report as JSON: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", report.text());
    }
    i32::from(!report.ok)
}

/// Runs one benchmark and reports what it saw (failures included, in `errors`).
pub async fn run(args: &BenchArgs) -> Report {
    let mut report = Report::new(args);
    let outcome = match resolve(&args.host, args.port).await {
        Ok(addr) => match args.scenario {
            Scenario::Conns => conns::run(args, addr, &mut report).await,
            _ => throughput::run(args, addr, &mut report).await,
        },
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        report.errors.push(e.to_string());
    }
    report.conclude();
    report
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    let unresolved = |reason: String| BenchError::Resolve {
        host: host.to_string(),
        port,
        reason,
    };
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| unresolved(e.to_string()))?
        .next()
        .ok_or_else(|| unresolved("no address".into()))
}
