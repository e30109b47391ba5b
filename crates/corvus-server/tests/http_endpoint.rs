//! The HTTP endpoint over real sockets: `/metrics` against a broker with traffic, the health
//! checks, and the bearer token.

mod common;

use std::net::SocketAddr;

use common::auth::{connack, with_login, Secured};
use common::*;
use corvus_server::Server;
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: corvus\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
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
    // Every family is typed, every sample belongs to one.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
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
