//! The HTTP endpoint over real sockets: `/metrics` against a broker with traffic, the health
//! checks, and the bearer token.

mod common;

use std::net::SocketAddr;

use common::auth::{connack, with_login, Secured};
use common::*;
use corvus_server::Server;
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// `alice` may publish and subscribe under `devices/alice/#`.
const ACL: &str = r#"
[[rule]]
user = "alice"
allow = ["publish", "subscribe"]
topics = ["devices/alice/#"]
"#;

/// (status, body) of `GET path`, with an `Authorization: Bearer` header when given.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let answer = common::http::request(addr, "GET", path, token).await;
    (answer.status, answer.body)
}

/// The value of the sample `name{labels}` (exactly as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn start(files: &Secured, token: Option<&str>) -> (Server, SocketAddr, SocketAddr) {
    let (server, addr) = start_with(|c| {
        files.configure(c);
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
        c.http.token = token.map(str::to_owned);
    })
    .await;
    let http = server.http_addr().expect("http listening");
    (server, addr, http)
}

#[tokio::test]
async fn metrics_show_the_traffic_refusals_drops_and_listeners() {
    let files = Secured::new(&["alice"], ACL);
    let (server, addr, http) = start(&files, None).await;
    let login = with_login("alice");
    let (mut sub, _) = Raw::connect_with(addr, V5, "sub", login).await;
    sub.subscribe(1, "devices/alice/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = Raw::connect_with(addr, V5, "pub", login).await;
    for i in 0..3u16 {
        let code = publisher
            .publish("devices/alice/t", b"12345", QoS::AtLeastOnce, false, i + 1)
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    publisher
        .publish("devices/alice/t", b"0", QoS::AtMostOnce, false, 0)
        .await;
    assert_eq!(recv_publishes_acked(&mut sub, 4).await.len(), 4);
    // Refused: not granted (dropped, not_authorized) and a wrong password.
    let denied = publisher
        .publish("elsewhere", b"x", QoS::AtLeastOnce, false, 9)
        .await;
    assert_eq!(denied, ReasonCode::NotAuthorized);
    assert_eq!(
        connack(addr, V5, Some("alice"), Some("wrong")).await,
        ReasonCode::BadUserNameOrPassword
    );

    // The refused client's connection ends after its CONNACK: read the exposition once its
    // task has gone (the open-connection gauges back at 2), within a bounded wait.
    let listener = format!("{{listener=\"{addr}\",kind=\"mqtt\"}}");
    let open_gauges = [
        "corvus_connections".to_owned(),
        format!("corvus_listener_connections{listener}"),
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    let text = loop {
        let (status, text) = get(http, "/metrics", None).await;
        assert_eq!(status, 200, "{text}");
        if open_gauges.iter().all(|g| sample(&text, g) == Some(2.0)) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the open connections never came back to 2:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));
    assert_eq!(value("corvus_messages_received_total{qos=\"1\"}"), 4.0);
    assert_eq!(value("corvus_messages_received_total{qos=\"0\"}"), 1.0);
    assert_eq!(
        value("corvus_payload_bytes_received_total{qos=\"1\"}"),
        16.0
    );
    // sub's subscription is QoS 1: each message goes out at the QoS it came in.
    assert_eq!(value("corvus_messages_sent_total{qos=\"1\"}"), 3.0);
    assert_eq!(value("corvus_messages_sent_total{qos=\"0\"}"), 1.0);
    assert_eq!(
        value("corvus_connections_refused_total{reason=\"bad_user_name_or_password\"}"),
        1.0
    );
    assert_eq!(
        value("corvus_messages_dropped_total{reason=\"not_authorized\"}"),
        1.0
    );
    assert_eq!(value("corvus_connections"), 2.0);
    // sub, pub and the refused client.
    assert_eq!(value("corvus_connections_total"), 3.0);
    assert_eq!(value("corvus_subscriptions"), 1.0);
    assert_eq!(
        value(&format!("corvus_listener_connections{listener}")),
        2.0
    );
    assert!(value(&format!("corvus_listener_bytes_received_total{listener}")) > 0.0);
    // Every family is typed, every sample belongs to one (a histogram's by its suffixes).
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let sample = line.split(['{', ' ']).next().unwrap();
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find(|base| text.contains(&format!("# TYPE {base} histogram\n")))
            .unwrap_or(sample);
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "untyped sample {line}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn health_checks_answer_without_a_token_and_the_rest_needs_it() {
    let files = Secured::new(&["alice"], ACL);
    let (server, _, http) = start(&files, Some("let-me-in")).await;
    assert_eq!(get(http, "/healthz", None).await.0, 200);
    assert_eq!(get(http, "/readyz", None).await.0, 200);
    assert_eq!(get(http, "/metrics", None).await.0, 401);
    assert_eq!(get(http, "/metrics", Some("let-me-out")).await.0, 401);
    let (status, text) = get(http, "/metrics", Some("let-me-in")).await;
    assert_eq!(status, 200);
    assert!(text.contains("corvus_uptime_seconds"));
    assert_eq!(get(http, "/no/such/page", Some("let-me-in")).await.0, 404);
    server.shutdown().await;
}

/// A histogram family as scraped: its buckets (`le` label, cumulative count), sum and count.
#[derive(Debug)]
struct Scraped {
    buckets: Vec<(String, f64)>,
    sum: f64,
    count: f64,
}

/// The histogram family `name` of an exposition, if it has one.
fn histogram(text: &str, name: &str) -> Option<Scraped> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets = text
        .lines()
        .filter_map(|line| {
            let (le, value) = line.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((le.to_owned(), value.parse().ok()?))
        })
        .collect();
    let sum = sample(text, &format!("{name}_sum"))?;
    let count = sample(text, &format!("{name}_count"))?;
    assert!(
        text.contains(&format!("# TYPE {name} histogram\n")),
        "{name} is not typed a histogram:\n{text}"
    );
    Some(Scraped {
        buckets,
        sum,
        count,
    })
}

/// Buckets ascending by bound, counts cumulative, the last `+Inf` and equal to the count.
fn assert_well_formed(name: &str, h: &Scraped) {
    assert!(h.buckets.len() > 1, "{name}: {h:?}");
    let (last, finite) = h.buckets.split_last().unwrap();
    assert_eq!(last, &("+Inf".to_owned(), h.count), "{name}");
    let bounds: Vec<f64> = finite.iter().map(|(le, _)| le.parse().unwrap()).collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{name}: {bounds:?}");
    assert!(
        h.buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name}: not cumulative {h:?}"
    );
}

/// Both latency histograms under real traffic through a store that syncs every batch: one
/// observation per copy sent for the first time (two subscribers, QoS 1 and QoS 0), none for
/// a retained message sent at subscribe time. Never a bound on how fast anything was.
#[tokio::test]
async fn latency_histograms_count_each_delivered_copy_and_each_sync() {
    const N: u16 = 20;
    let (server, addr) = start_with(|c| {
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
        c.store.sync = corvus_server::config::SyncName::Always;
    })
    .await;
    let http = server.http_addr().expect("http listening");
    let mut publisher = Raw::connect(addr, V5, "pub").await;
    let code = publisher
        .publish("t/retained", b"old", QoS::AtLeastOnce, true, 1)
        .await;
    assert_eq!(code, ReasonCode::Success);
    let mut at_least_once = Raw::connect(addr, V5, "sub1").await;
    at_least_once.subscribe(1, "t/#", QoS::AtLeastOnce).await;
    let mut at_most_once = Raw::connect(addr, V5, "sub0").await;
    at_most_once.subscribe(1, "t/#", QoS::AtMostOnce).await;
    // The retained message, sent at subscribe time: delivered, not timed.
    for sub in [&mut at_least_once, &mut at_most_once] {
        let retained = recv_publishes_acked(sub, 1).await;
        assert!(retained[0].retain, "{retained:?}");
    }
    for i in 0..N {
        let code = publisher
            .publish("t/live", &i.to_be_bytes(), QoS::AtLeastOnce, false, i + 2)
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    for sub in [&mut at_least_once, &mut at_most_once] {
        assert_eq!(
            recv_publishes_acked(sub, N.into()).await.len(),
            usize::from(N)
        );
    }

    // Each copy is timed as it is encoded, before the subscriber can see it: the figures are
    // final once both have received everything.
    let (status, text) = get(http, "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    let copies = 2.0 * f64::from(N);
    assert_eq!(
        sample(&text, "corvus_messages_sent_total{qos=\"1\"}").unwrap()
            + sample(&text, "corvus_messages_sent_total{qos=\"0\"}").unwrap(),
        copies + 2.0,
        "the live copies and the two retained ones were sent"
    );
    let delivery = histogram(&text, "corvus_publish_delivery_seconds").expect(&text);
    assert_well_formed("corvus_publish_delivery_seconds", &delivery);
    assert_eq!(
        delivery.count, copies,
        "one observation per live copy:\n{text}"
    );
    assert!(delivery.sum > 0.0, "{text}");
    let syncs = histogram(&text, "corvus_store_sync_seconds").expect(&text);
    assert_well_formed("corvus_store_sync_seconds", &syncs);
    // Every acknowledged QoS 1 PUBLISH waited for a sync.
    assert!(syncs.count >= 1.0, "{text}");
    server.shutdown().await;
}

/// Without a store there is nothing to sync: no sync histogram, rather than one of zeros.
/// Deliveries are timed all the same.
#[tokio::test]
async fn without_a_store_there_is_no_sync_histogram() {
    let (server, addr) = start_with(|c| {
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
        c.store.enabled = false;
    })
    .await;
    let http = server.http_addr().expect("http listening");
    let mut sub = Raw::connect(addr, V5, "sub").await;
    sub.subscribe(1, "t", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(addr, V5, "pub").await;
    publisher
        .publish("t", b"x", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(recv_publishes_acked(&mut sub, 1).await.len(), 1);
    let (status, text) = get(http, "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("corvus_store_sync_seconds"), "{text}");
    let delivery = histogram(&text, "corvus_publish_delivery_seconds").expect(&text);
    assert_well_formed("corvus_publish_delivery_seconds", &delivery);
    assert_eq!(delivery.count, 1.0, "{text}");
    server.shutdown().await;
}
