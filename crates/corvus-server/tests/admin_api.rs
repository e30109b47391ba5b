//! The JSON admin API (`/api/v1/`) over real sockets, against a broker with traffic: every
//! endpoint, its filters and paging, the kick, ending a session, per-client drops, retained
//! messages, top topics, the bearer token, and errors.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::http::{get, request, Answer};
use common::*;
use corvus_server::{Config, Server};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode, Will, WillProperties};
use serde_json::Value;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

async fn start_http(tune: impl FnOnce(&mut Config)) -> (Server, SocketAddr, SocketAddr) {
    let (server, addr) = start_with(|c| {
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
        tune(c);
    })
    .await;
    let http = server.http_addr().expect("http listening");
    (server, addr, http)
}

/// `GET path` answered 200 with JSON.
async fn json(http: SocketAddr, path: &str) -> Value {
    let answer = get(http, path).await;
    assert_eq!(answer.status, 200, "GET {path}: {answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    answer.json()
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["client_id"].as_str().expect("client_id"))
        .collect()
}

#[tokio::test]
async fn clients_are_listed_with_filters_and_paging_and_shown_in_detail() {
    let (_server, addr, http) = start_http(|_| {}).await;
    let (mut subscriber, _) = Raw::connect_with(addr, V5, "sensor-sub", |c| {
        c.username = Some(s("ops"));
    })
    .await;
    subscriber.subscribe(1, "data/#", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(addr, V5, "sensor-pub").await;
    let _legacy = Raw::connect(addr, V3, "legacy").await;
    for i in 1..=3u16 {
        let code = publisher
            .publish("data/t", b"x", QoS::AtLeastOnce, false, i)
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    // The subscriber takes the three and acknowledges none: all in flight.
    for _ in 0..3 {
        next_publish_unacked(&mut subscriber).await;
    }

    let all = json(http, "/api/v1/clients").await;
    assert_eq!(all["total"], 3);
    assert_eq!(
        (all["offset"].as_u64(), all["limit"].as_u64()),
        (Some(0), Some(100))
    );
    assert_eq!(ids(&all), ["legacy", "sensor-pub", "sensor-sub"]);
    let sub = &all["items"][2];
    assert_eq!(sub["username"], "ops");
    assert_eq!(sub["protocol"], "5.0");
    assert_eq!(sub["transport"], "mqtt");
    assert_eq!(sub["listener"], addr.to_string());
    assert_eq!(sub["identity"], "anonymous");
    assert_eq!(sub["subscriptions"], 1);
    assert_eq!(sub["messages_sent"], 3);
    assert_eq!(sub["inflight"], 3);
    assert!(sub["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(sub["connected_at"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(all["items"][1]["messages_received"], 3);
    assert_eq!(all["items"][0]["protocol"], "3.1.1");

    // Filters, alone and together, and paging.
    assert_eq!(
        ids(&json(http, "/api/v1/clients?search=SENSOR").await),
        ["sensor-pub", "sensor-sub"]
    );
    assert_eq!(
        ids(&json(http, "/api/v1/clients?username=ops").await),
        ["sensor-sub"]
    );
    assert_eq!(
        ids(&json(http, "/api/v1/clients?protocol=3.1.1").await),
        ["legacy"]
    );
    assert_eq!(
        ids(&json(http, "/api/v1/clients?search=ops").await),
        ["sensor-sub"]
    );
    assert_eq!(
        ids(&json(http, "/api/v1/clients?search=nobody").await),
        Vec::<&str>::new()
    );
    let page = json(http, "/api/v1/clients?offset=1&limit=1").await;
    assert_eq!(
        (page["total"].as_u64(), ids(&page)),
        (Some(3), vec!["sensor-pub"])
    );
    for bad in [
        "limit=0",
        "limit=5000",
        "offset=x",
        "limit=1&limit=2",
        "search=%zz",
    ] {
        let answer = get(http, &format!("/api/v1/clients?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}: {answer:?}");
        assert!(answer.json()["error"].is_string());
    }

    // One client in detail: its queue, inflight, drops and subscriptions.
    let details = json(http, "/api/v1/clients/sensor-sub").await;
    assert_eq!(details["inflight"], 3);
    assert_eq!(details["queued"], 0);
    assert_eq!(details["queued_bytes"], 0);
    assert_eq!(details["inbound_qos2"], 0);
    assert_eq!(details["dropped"], 0);
    assert_eq!(details["dropped_by_reason"]["queue_full"], 0);
    assert_eq!(details["subscription_list"][0]["filter"], "data/#");
    assert_eq!(details["subscription_list"][0]["qos"], 1);
    assert_eq!(details["subscription_list"][0]["client_id"], "sensor-sub");
    let missing = get(http, "/api/v1/clients/nobody").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
}

#[tokio::test]
async fn a_kick_disconnects_with_administrative_action_and_publishes_the_will() {
    let (_server, addr, http) = start_http(|_| {}).await;
    let mut watcher = Raw::connect(addr, V5, "watcher").await;
    watcher.subscribe(1, "wills/#", QoS::AtLeastOnce).await;
    let will = |topic: &str| Will {
        topic: s(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    };
    let (mut v5, _) =
        Raw::connect_with(addr, V5, "dev/5", |c| c.will = Some(will("wills/5"))).await;
    let (mut v3, _) =
        Raw::connect_with(addr, V3, "dev 3", |c| c.will = Some(will("wills/3"))).await;

    // Client ids are one percent-encoded path segment.
    let kicked = request(http, "POST", "/api/v1/clients/dev%2F5/kick", None).await;
    assert_eq!(kicked.status, 200, "{kicked:?}");
    assert_eq!(kicked.json()["client_id"], "dev/5");
    assert_eq!(kicked.json()["kicked"], true);
    v5.expect_disconnect(ReasonCode::AdministrativeAction).await;
    assert_eq!(watcher.recv_publish().await.topic.as_str(), "wills/5");

    // MQTT 3.1.1 has no server DISCONNECT: the connection closes.
    let kicked = request(http, "POST", "/api/v1/clients/dev%203/kick", None).await;
    assert_eq!(kicked.status, 200, "{kicked:?}");
    assert!(v3.expect_close().await.is_empty());
    assert_eq!(watcher.recv_publish().await.topic.as_str(), "wills/3");

    // Gone from the list; a second kick finds nobody.
    assert_eq!(ids(&json(http, "/api/v1/clients").await), ["watcher"]);
    let again = request(http, "POST", "/api/v1/clients/dev%2F5/kick", None).await;
    assert_eq!(again.status, 404);
    let metrics = get(http, "/metrics").await.body;
    assert!(
        metrics.contains("corvus_disconnects_total{reason=\"administrative_action\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sessions_show_why_an_offline_device_missed_messages_and_can_be_ended() {
    let (server, addr, http) = start_http(|c| c.limits.max_queued_messages = 2).await;
    let (mut device, _) = Raw::connect_with(addr, V5, "device-7", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    device.subscribe(1, "cmd/device-7", QoS::AtLeastOnce).await;
    device.subscribe(2, "cmd/all", QoS::AtMostOnce).await;
    device.disconnect().await;
    wait_offline(&server, "device-7").await;
    let mut publisher = Raw::connect(addr, V5, "control").await;
    for i in 1..=5u16 {
        publisher
            .publish("cmd/device-7", b"do", QoS::AtLeastOnce, false, i)
            .await;
    }
    wait_dropped(&server, corvus_core::DropReason::QueueFull, 3).await;

    let session = json(http, "/api/v1/sessions/device-7").await;
    assert_eq!(session["connected"], false);
    assert_eq!(session["expiry_interval"], 3600);
    assert!(session["expires_at"].as_u64().is_some(), "{session}");
    assert_eq!(session["queued"], 2);
    assert_eq!(session["queued_bytes"], 4);
    assert_eq!(session["dropped"], 3);
    assert_eq!(session["dropped_by_reason"]["queue_full"], 3);
    assert_eq!(session["dropped_by_reason"]["expired"], 0);
    assert_eq!(session["client"], Value::Null);
    assert_eq!(session["subscriptions"], 2);

    let offline = json(http, "/api/v1/sessions?connected=false").await;
    assert_eq!(ids(&offline), ["device-7"]);
    let online = json(http, "/api/v1/sessions?connected=true").await;
    assert_eq!(ids(&online), ["control"]);
    assert_eq!(online["items"][0]["expires_at"], Value::Null);
    let control = json(http, "/api/v1/sessions/control").await;
    assert_eq!(control["client"]["client_id"], "control");
    assert_eq!(control["client"]["messages_received"], 5);
    assert_eq!(
        json(http, "/api/v1/sessions?search=DEVICE").await["total"],
        1
    );
    assert_eq!(
        get(http, "/api/v1/sessions?connected=maybe").await.status,
        400
    );

    let subscriptions = json(http, "/api/v1/subscriptions?client_id=device-7").await;
    let filters: Vec<&str> = subscriptions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["filter"].as_str().unwrap())
        .collect();
    assert_eq!(filters, ["cmd/all", "cmd/device-7"]);
    assert_eq!(subscriptions["items"][0]["qos"], 0);
    let containing = json(http, "/api/v1/subscriptions?filter=all").await;
    assert_eq!(containing["total"], 1);

    // Ending it: gone, with its subscriptions; the device starts afresh.
    let ended = request(http, "DELETE", "/api/v1/sessions/device-7", None).await;
    assert_eq!(ended.status, 204, "{ended:?}");
    assert_eq!(get(http, "/api/v1/sessions/device-7").await.status, 404);
    assert_eq!(json(http, "/api/v1/subscriptions").await["total"], 0);
    let (_device, ack) = Raw::connect_with(addr, V5, "device-7", |c| c.clean_start = false).await;
    assert!(!ack.session_present);
    let again = request(http, "DELETE", "/api/v1/sessions/nobody", None).await;
    assert_eq!(again.status, 404);
}

#[tokio::test]
async fn ending_a_connected_session_disconnects_it_first() {
    let (_server, addr, http) = start_http(|_| {}).await;
    let (mut device, _) = Raw::connect_with(addr, V5, "live", |c| {
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    device.subscribe(1, "x", QoS::AtMostOnce).await;
    let ended = request(http, "DELETE", "/api/v1/sessions/live", None).await;
    assert_eq!(ended.status, 204, "{ended:?}");
    device
        .expect_disconnect(ReasonCode::AdministrativeAction)
        .await;
    assert_eq!(json(http, "/api/v1/sessions").await["total"], 0);
}

#[tokio::test]
async fn retained_messages_are_listed_read_and_cleared_for_good() {
    let dir = fresh_data_dir();
    let tune = |c: &mut Config| {
        c.data_dir = dir.clone();
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
    };
    let (server, addr) = start_with(tune).await;
    let http = server.http_addr().unwrap();
    let mut publisher = Raw::connect(addr, V5, "pub").await;
    publisher
        .publish("a/b", b"hello", QoS::AtLeastOnce, true, 1)
        .await;
    publisher
        .publish("a/c", &[0xff, 0x00], QoS::AtMostOnce, true, 0)
        .await;
    publisher
        .publish("x", b"other", QoS::AtLeastOnce, true, 2)
        .await;

    let under_a = json(http, "/api/v1/retained?filter=a/%23").await;
    assert_eq!(under_a["total"], 2);
    let topics: Vec<&str> = under_a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["a/b", "a/c"]);
    assert_eq!(json(http, "/api/v1/retained").await["total"], 3);
    // `+` is a wildcard as written.
    assert_eq!(json(http, "/api/v1/retained?filter=a/+").await["total"], 2);
    assert_eq!(
        get(http, "/api/v1/retained?filter=a/%23/b").await.status,
        400
    );

    let text = json(http, "/api/v1/retained/a/b").await;
    assert_eq!(text["payload"], "hello");
    assert_eq!(text["payload_base64"], "aGVsbG8=");
    assert_eq!(text["payload_bytes"], 5);
    assert_eq!(text["qos"], 1);
    let binary = json(http, "/api/v1/retained/a%2Fc").await;
    assert_eq!(binary["payload"], Value::Null);
    assert_eq!(binary["payload_base64"], "/wA=");
    assert_eq!(get(http, "/api/v1/retained/a/none").await.status, 404);
    assert_eq!(get(http, "/api/v1/retained/a/%23").await.status, 400);

    let cleared = request(http, "DELETE", "/api/v1/retained/a/b", None).await;
    assert_eq!(cleared.status, 204, "{cleared:?}");
    assert_eq!(get(http, "/api/v1/retained/a/b").await.status, 404);
    assert_eq!(
        request(http, "DELETE", "/api/v1/retained/a/b", None)
            .await
            .status,
        404
    );
    let mut late = Raw::connect(addr, V5, "late").await;
    late.subscribe(1, "a/#", QoS::AtLeastOnce).await;
    assert_eq!(late.recv_publish().await.topic.as_str(), "a/c");
    late.expect_nothing().await;

    // Cleared in the store too: a restart does not bring it back.
    drop(late);
    drop(publisher);
    server.shutdown().await;
    let (server, _) = start_with(tune).await;
    let http = server.http_addr().unwrap();
    assert_eq!(get(http, "/api/v1/retained/a/b").await.status, 404);
    assert_eq!(json(http, "/api/v1/retained").await["total"], 2);
}

#[tokio::test]
async fn stats_and_top_topics_follow_the_traffic() {
    let (_server, addr, http) = start_http(|_| {}).await;
    let mut subscriber = Raw::connect(addr, V5, "sub").await;
    subscriber.subscribe(1, "#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(addr, V5, "pub").await;
    for (topic, n) in [("busy", 12), ("calm", 3), ("quiet", 1)] {
        for _ in 0..n {
            publisher
                .publish(topic, b"x", QoS::AtMostOnce, false, 0)
                .await;
        }
    }
    for _ in 0..16 {
        subscriber.recv_publish().await;
    }
    let stats = json(http, "/api/v1/stats").await;
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["messages_received"], 16);
    assert_eq!(stats["messages_sent"], 16);
    assert_eq!(stats["clients_connected"], 2);
    assert_eq!(stats["subscriptions"], 1);
    assert_eq!(stats["messages_dropped"], 0);
    assert_eq!(stats["messages_dropped_by_reason"]["queue_full"], 0);
    // The load averages have seen the 16 messages, and /metrics shows them from the same
    // tracker.
    let one_minute = stats["load"]["messages_received"]["one_minute"]
        .as_f64()
        .unwrap();
    assert!(one_minute > 0.0, "{stats}");
    let metrics = get(http, "/metrics").await.body;
    let series = "corvus_load_per_minute{what=\"messages_received\",window=\"1m\"} ";
    let exposed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    assert!(exposed > 0.0, "{metrics}");

    // The publisher hands its tally over when it leaves (or after a second).
    publisher.disconnect().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let top = loop {
        let top = json(http, "/api/v1/topics/top?limit=2").await;
        if top["items"]
            .as_array()
            .is_some_and(|items| items.len() == 2)
        {
            break top;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no top topics: {top}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(top["items"][0]["topic"], "busy");
    assert_eq!(top["items"][1]["topic"], "calm");
    let window = top["window_seconds"].as_f64().unwrap();
    let rate = top["items"][0]["messages_per_second"].as_f64().unwrap();
    assert!((rate * window - 12.0).abs() < 1e-6, "{top}");
    assert_eq!(get(http, "/api/v1/topics/top?limit=0").await.status, 400);
}

#[tokio::test]
async fn a_token_guards_the_api_but_not_its_description_or_the_dashboard_files() {
    let (_server, _, http) = start_http(|c| c.http.token = Some("s3cret".into())).await;
    let refused = get(http, "/api/v1/stats").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        request(http, "GET", "/api/v1/stats", Some("wrong"))
            .await
            .status,
        401
    );
    assert_eq!(
        request(http, "POST", "/api/v1/reload", None).await.status,
        401
    );
    assert_eq!(
        request(http, "GET", "/api/v1/stats", Some("s3cret"))
            .await
            .status,
        200
    );
    for public in ["/api/openapi.json", "/dashboard/", "/dashboard/app.js"] {
        assert_eq!(get(http, public).await.status, 200, "{public}");
    }
    let root = get(http, "/").await;
    assert_eq!(
        (root.status, root.header("location")),
        (302, Some("/dashboard/"))
    );
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_told_apart() {
    let (_server, _, http) = start_http(|_| {}).await;
    let wrong = get(http, "/api/v1/reload").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST"));
    let wrong = request(http, "PUT", "/api/v1/sessions/x", None).await;
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET, DELETE"))
    );
    for missing in ["/api/v1/nothing", "/api/v1/clients/a/b", "/api/v2/stats"] {
        let answer: Answer = get(http, missing).await;
        assert_eq!(answer.status, 404, "{missing}");
    }
    let document = get(http, "/api/openapi.json").await;
    assert_eq!(document.header("content-type"), Some("application/json"));
    assert_eq!(document.json()["openapi"], "3.1.0");
}

/// A client that publishes a burst and stays connected, quiet, still shows in the top
/// topics: its tally is handed over by a timer, not only by its next PUBLISH.
#[tokio::test]
async fn a_quiet_publishers_burst_reaches_the_top_topics() {
    let (_server, addr, http) = start_http(|_| {}).await;
    let mut publisher = Raw::connect(addr, V5, "bursty").await;
    for i in 1..=4u16 {
        let code = publisher
            .publish("burst/topic", b"x", QoS::AtLeastOnce, false, i)
            .await;
        assert_eq!(code, ReasonCode::Success);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let top = json(http, "/api/v1/topics/top").await;
        // All four counted (the first batch's tally is handed over at once, the rest by the
        // timer a second later).
        let counted = top["items"][0]["messages_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            * top["window_seconds"].as_f64().unwrap_or(0.0);
        if top["items"][0]["topic"] == "burst/topic" && (counted - 4.0).abs() < 1e-6 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no burst: {top}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Still connected: nothing else handed the tally over.
    assert_eq!(ids(&json(http, "/api/v1/clients").await), ["bursty"]);
}
