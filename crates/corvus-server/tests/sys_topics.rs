//! `$SYS/broker/...` topics against a broker with traffic (`sys_interval = 1`): every topic
//! arrives with values that reflect what the test did, a `#` subscriber never gets them, and
//! on a secured broker only a user granted `$SYS` may subscribe to them.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::auth::{with_login, Secured};
use common::{assert_nothing_queued, start_with, wait_offline, Raw};
use corvus_core::DropReason;
use corvus_server::metrics::SourceLimit;
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::time::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// How long a test waits for the `$SYS` values it expects (a few ticks of one second).
const SYS_WAIT: Duration = Duration::from_secs(15);

/// The topics Mosquitto users know, under `$SYS/broker/`.
const MOSQUITTO_TOPICS: &[&str] = &[
    "version",
    "uptime",
    "clients/connected",
    "clients/total",
    "clients/disconnected",
    "clients/maximum",
    "messages/received",
    "messages/sent",
    "bytes/received",
    "bytes/sent",
    "subscriptions/count",
    "retained messages/count",
    "publish/messages/dropped",
];

/// Corvus's own topics beyond Mosquitto's, under `$SYS/broker/` (the load averages, drops by
/// reason and refusals by limit are added by [`expected_topics`]).
const CORVUS_TOPICS: &[&str] = &[
    "messages/queued",
    "messages/inflight",
    "retained messages/bytes",
];

/// Every topic the broker must publish, full names.
fn expected_topics() -> Vec<String> {
    let mut names: Vec<String> = MOSQUITTO_TOPICS
        .iter()
        .chain(CORVUS_TOPICS)
        .map(|t| t.to_string())
        .collect();
    for load in [
        "messages/received",
        "messages/sent",
        "bytes/received",
        "bytes/sent",
        "connections",
        "publish/dropped",
    ] {
        for window in ["1min", "5min", "15min"] {
            names.push(format!("load/{load}/{window}"));
        }
    }
    for reason in DropReason::ALL {
        names.push(format!("messages/dropped/{}", reason.label()));
    }
    for limit in SourceLimit::ALL {
        names.push(format!("connections/refused/{}", limit.label()));
    }
    names
        .into_iter()
        .map(|n| format!("$SYS/broker/{n}"))
        .collect()
}

/// The latest value of each topic a client received.
#[derive(Debug, Default)]
struct Seen(HashMap<String, String>);

impl Seen {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(&format!("$SYS/broker/{name}"))
            .map(String::as_str)
    }

    fn number(&self, name: &str) -> Option<f64> {
        self.get(name)?.parse().ok()
    }

    fn has_all(&self) -> bool {
        expected_topics().iter().all(|t| self.0.contains_key(t))
    }
}

/// Receives PUBLISHes into `seen` until `done` holds; panics, showing what was seen, if it
/// does not within [`SYS_WAIT`].
async fn watch(raw: &mut Raw, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + SYS_WAIT;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match raw.try_recv(left).await {
            Ok(Some(Packet::Publish(p))) => {
                raw.ack(&p).await;
                let value = String::from_utf8_lossy(&p.payload).into_owned();
                seen.0.insert(p.topic.to_string(), value);
            }
            Ok(Some(other)) => panic!("expected PUBLISH, got {other:?}"),
            Ok(None) => panic!("broker closed the connection; seen {seen:#?}"),
            Err(e) => panic!("{e} waiting for $SYS values; seen {seen:#?}"),
        }
    }
}

#[tokio::test]
async fn every_sys_topic_arrives_with_values_that_reflect_the_traffic() {
    let (server, addr) = start_with(|c| c.sys_interval = 1).await;
    // A persistent session, away, subscribed to a topic.
    let (mut away, _) = Raw::connect_with(addr, V5, "away", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    away.subscribe(1, "app/away", QoS::AtLeastOnce).await;
    away.disconnect().await;
    wait_offline(&server, "away").await;
    let mut app = Raw::connect(addr, V311, "app").await;
    app.subscribe(1, "app/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(addr, V5, "publisher").await;
    const N: usize = 20;
    for i in 0..N {
        let code = publisher
            .publish("app/x", b"hello", QoS::AtLeastOnce, false, i as u16 + 1)
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    publisher
        .publish("app/retained", b"kept", QoS::AtLeastOnce, true, 100)
        .await;
    // QoS 0 for a client that is away: dropped, and counted.
    publisher
        .publish("app/away", b"missed", QoS::AtMostOnce, false, 0)
        .await;
    for _ in 0..N + 2 {
        app.recv_publish().await;
    }

    let mut sys = Raw::connect(addr, V5, "sys").await;
    assert_eq!(
        sys.subscribe(1, "$SYS/broker/#", QoS::AtMostOnce).await,
        [ReasonCode::GRANTED_QOS_0]
    );
    let mut seen = Seen::default();
    watch(&mut sys, &mut seen, |seen| {
        let at_least = |name: &str, n: usize| seen.number(name).is_some_and(|v| v >= n as f64);
        let exactly = |name: &str, n: usize| seen.number(name) == Some(n as f64);
        seen.has_all()
            // publisher, app and sys connected; away's session held.
            && exactly("clients/connected", 3)
            && exactly("clients/total", 4)
            && exactly("clients/disconnected", 1)
            // away left before the three others came.
            && exactly("clients/maximum", 3)
            // The PUBLISH packets the publisher sent (the broker's own are not received).
            && exactly("messages/received", N + 2)
            // app got them all; sys's $SYS messages count too.
            && at_least("messages/sent", N + 2)
            && at_least("bytes/received", 1)
            && at_least("bytes/sent", 1)
            // app/away, app/# and $SYS/broker/#.
            && exactly("subscriptions/count", 3)
            // The test's retained message; $SYS's own are held apart.
            && exactly("retained messages/count", 1)
            // Its topic and payload: "app/retained" and "kept".
            && exactly("retained messages/bytes", 12 + 4)
            // Every delivery acknowledged, nothing waiting.
            && exactly("messages/queued", 0)
            && exactly("messages/inflight", 0)
            // The QoS 0 message for away, and no other drop.
            && exactly("messages/dropped/qos0_offline", 1)
            && exactly("publish/messages/dropped", 1)
            && SourceLimit::ALL.iter().all(|limit| {
                exactly(&format!("connections/refused/{}", limit.label()), 0)
            })
            && seen.number("load/messages/received/1min").is_some_and(|v| v > 0.0)
            && seen.number("load/connections/1min").is_some_and(|v| v > 0.0)
    })
    .await;
    assert_eq!(
        seen.get("version"),
        Some(concat!("corvus ", env!("CARGO_PKG_VERSION")))
    );
    let uptime = seen.get("uptime").unwrap();
    let seconds = uptime.strip_suffix(" seconds").expect("N seconds");
    assert!(seconds.parse::<u64>().is_ok(), "{uptime}");
    for window in ["1min", "5min", "15min"] {
        let load = seen.get(&format!("load/bytes/sent/{window}")).unwrap();
        // As Mosquitto formats them: two decimals.
        assert_eq!(
            load.split_once('.').map(|(_, d)| d.len()),
            Some(2),
            "{load}"
        );
    }
    // Retained: a client subscribing now gets the latest values at once.
    let mut late = Raw::connect(addr, V311, "late").await;
    late.subscribe(1, "$SYS/broker/version", QoS::AtMostOnce)
        .await;
    let version = late.recv_publish().await;
    assert!(version.retain);
    server.shutdown().await;
}

#[tokio::test]
async fn a_hash_subscriber_gets_no_sys_topics() {
    let (server, addr) = start_with(|c| c.sys_interval = 1).await;
    let mut all = Raw::connect(addr, V5, "all").await;
    all.subscribe(1, "#", QoS::AtMostOnce).await;
    let mut plus = Raw::connect(addr, V311, "plus").await;
    plus.subscribe(1, "+/broker/#", QoS::AtMostOnce).await;
    let mut sys = Raw::connect(addr, V5, "sys").await;
    sys.subscribe(1, "$SYS/broker/uptime", QoS::AtMostOnce)
        .await;
    // Two publications of the uptime, the second after both wildcard subscriptions.
    let mut seen = Seen::default();
    watch(&mut sys, &mut seen, |seen| seen.get("uptime").is_some()).await;
    let first = seen.get("uptime").unwrap().to_owned();
    watch(&mut sys, &mut seen, |seen| {
        seen.get("uptime") != Some(&first)
    })
    .await;
    // What would have been queued for them with it is written before these PINGRESPs.
    assert_nothing_queued(&mut all).await;
    assert_nothing_queued(&mut plus).await;
    // And `#` does work.
    sys.publish("hello", b"x", QoS::AtMostOnce, false, 0).await;
    assert_eq!(&*all.recv_publish().await.topic, "hello");
    server.shutdown().await;
}

/// ops may read `$SYS`; alice may subscribe to everything else.
const ACL: &str = r##"
[[rule]]
user = "ops"
allow = ["subscribe"]
topics = ["$SYS/#"]

[[rule]]
user = "alice"
allow = ["publish", "subscribe"]
topics = ["#"]
"##;

async fn login(addr: std::net::SocketAddr, user: &str) -> Raw {
    Raw::connect_with(addr, V5, user, with_login(user)).await.0
}

#[tokio::test]
async fn on_a_secured_broker_only_a_user_granted_sys_reads_it() {
    let files = Secured::new(&["ops", "alice"], ACL);
    let (server, addr) = start_with(|c| {
        files.configure(c);
        c.sys_interval = 1;
    })
    .await;
    let mut alice = login(addr, "alice").await;
    for (i, filter) in ["$SYS/#", "$SYS/broker/uptime", "$share/g/$SYS/#"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            alice.subscribe(i as u16 + 1, filter, QoS::AtMostOnce).await,
            [ReasonCode::NotAuthorized],
            "{filter}"
        );
    }
    assert_eq!(
        alice.subscribe(9, "#", QoS::AtMostOnce).await,
        [ReasonCode::GRANTED_QOS_0]
    );
    let mut ops = login(addr, "ops").await;
    assert_eq!(
        ops.subscribe(1, "$SYS/#", QoS::AtMostOnce).await,
        [ReasonCode::GRANTED_QOS_0]
    );
    let mut seen = Seen::default();
    watch(&mut ops, &mut seen, Seen::has_all).await;
    // A publication after alice subscribed: nothing of it for her.
    let uptime = seen.get("uptime").unwrap().to_owned();
    watch(&mut ops, &mut seen, |seen| {
        seen.get("uptime") != Some(&uptime)
    })
    .await;
    assert_nothing_queued(&mut alice).await;
    server.shutdown().await;
}

/// `$SYS` messages are the broker's, held apart: they take no room in the clients' retained
/// quota, and they are not persisted, so a restart (here without `$SYS`) serves none.
#[tokio::test]
async fn sys_messages_take_no_retained_quota_and_are_not_persisted() {
    let dir = common::fresh_data_dir();
    let config_dir = dir.clone();
    let (server, addr) = start_with(move |c| {
        c.data_dir = config_dir;
        c.sys_interval = 1;
        c.limits.max_retained_messages = 1;
    })
    .await;
    let mut sys = Raw::connect(addr, V5, "sys").await;
    sys.subscribe(1, "$SYS/broker/uptime", QoS::AtMostOnce)
        .await;
    let mut seen = Seen::default();
    watch(&mut sys, &mut seen, |seen| seen.get("uptime").is_some()).await;
    let mut app = Raw::connect(addr, V5, "app").await;
    assert_eq!(
        app.publish("app/kept", b"1", QoS::AtLeastOnce, true, 1)
            .await,
        ReasonCode::Success,
        "the one retained message allowed is the client's"
    );
    server.shutdown().await;

    let (server, addr) = start_with(move |c| c.data_dir = dir).await;
    let mut later = Raw::connect(addr, V5, "later").await;
    later.subscribe(1, "$SYS/#", QoS::AtMostOnce).await;
    assert_nothing_queued(&mut later).await;
    later.subscribe(2, "app/#", QoS::AtMostOnce).await;
    assert_eq!(&later.recv_publish().await.payload[..], b"1");
    server.shutdown().await;
}
