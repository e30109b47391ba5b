//! MQTT over WebSocket (`ws` and `wss` listeners, MQTT 5.0 section 6): the upgrade on the
//! configured path with the `mqtt` subprotocol, packets carried in binary messages however
//! they are split or joined, text messages refused, and WebSocket over TLS.

mod common;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use common::tls::*;
use common::*;
use corvus_server::config::{ListenerConfig, ListenerKind};
use corvus_server::ws::WsIo;
use corvus_server::{Config, Server};
use futures_util::SinkExt;
use mqtt_codec::{Connect, Packet, ProtocolVersion, QoS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn listener(kind: ListenerKind, files: Option<&Files>, path: Option<&str>) -> ListenerConfig {
    ListenerConfig {
        kind,
        cert: files.map(|f| f.cert.clone()),
        key: files.map(|f| f.key.clone()),
        path: path.map(str::to_owned),
        ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
    }
}

/// A broker with a plain TCP listener and `extra`; returns (server, plain, extra's address).
async fn start(extra: ListenerConfig) -> (Server, SocketAddr, SocketAddr) {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        listeners: vec![extra],
        data_dir: fresh_data_dir(),
        ..Config::default()
    };
    let server = Server::start(&config).await.expect("broker starts");
    let addrs = server.local_addrs().to_vec();
    (server, addrs[0], addrs[1])
}

/// The WebSocket upgrade over `stream` to `url`, offering `protocol` (none if `None`).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    protocol: Option<&str>,
) -> Result<(WebSocketStream<S>, Option<String>), WsError> {
    let mut request = url.into_client_request()?;
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocol).unwrap(),
        );
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    let chosen = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, chosen))
}

async fn ws_client(addr: SocketAddr, path: &str) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, chosen) = upgrade(tcp, &format!("ws://{addr}{path}"), Some("mqtt"))
        .await
        .expect("the upgrade succeeds");
    assert_eq!(chosen.as_deref(), Some("mqtt"), "the subprotocol is echoed");
    ws
}

#[tokio::test]
async fn mqtt_over_websocket_both_ways() {
    let (server, plain, ws) = start(listener(ListenerKind::Ws, None, None)).await;
    assert_eq!(
        server.listener_descriptions()[1],
        format!("{ws} (WebSocket /mqtt)")
    );
    // A WebSocket subscriber and a TCP publisher, then the other way round.
    let stream = WsIo::new(ws_client(ws, "/mqtt").await);
    let (mut ws_sub, _) = Raw::over(Box::new(stream), V5)
        .handshake("ws-sub", |_| {})
        .await;
    ws_sub.subscribe(1, "web/#", QoS::AtLeastOnce).await;
    let mut tcp_pub = Raw::connect(plain, V5, "tcp-pub").await;
    tcp_pub
        .publish("web/in", b"to the browser", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&ws_sub.recv_publish().await.payload[..], b"to the browser");

    let mut tcp_sub = Raw::connect(plain, V5, "tcp-sub").await;
    tcp_sub.subscribe(1, "browser/out", QoS::AtLeastOnce).await;
    ws_sub
        .publish(
            "browser/out",
            b"from the browser",
            QoS::ExactlyOnce,
            false,
            7,
        )
        .await;
    assert_eq!(
        &tcp_sub.recv_publish().await.payload[..],
        b"from the browser"
    );
    server.shutdown().await;
}

/// MQTT packets are a byte stream inside WebSocket: a CONNECT split over two messages, and
/// a SUBSCRIBE and a PUBLISH in one message, are read as the packets they are.
#[tokio::test]
async fn packets_may_span_or_share_websocket_messages() {
    let (server, _plain, ws) = start(listener(ListenerKind::Ws, None, Some("/brokers/mqtt"))).await;
    let mut client = ws_client(ws, "/brokers/mqtt").await;
    let mut connect = BytesMut::new();
    Packet::from(Connect::new(V5, s("split")))
        .encode(V5, &mut connect)
        .unwrap();
    let (first, second) = connect.split_at(5);
    for part in [first, second] {
        client
            .send(Message::Binary(Bytes::copy_from_slice(part)))
            .await
            .unwrap();
    }
    let mut raw = Raw::over(Box::new(WsIo::new(client)), V5);
    assert!(matches!(raw.recv().await, Packet::ConnAck(_)));
    let mut both = BytesMut::new();
    let subscribe = mqtt_codec::Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        subscriptions: vec![mqtt_codec::Subscription {
            filter: s("echo"),
            options: Default::default(),
        }],
    };
    Packet::from(subscribe).encode(V5, &mut both).unwrap();
    Packet::from(mqtt_codec::Publish::new(
        s("echo"),
        Bytes::from_static(b"one message"),
    ))
    .encode(V5, &mut both)
    .unwrap();
    raw.send_bytes(&both).await;
    assert!(matches!(raw.recv().await, Packet::SubAck(_)));
    assert_eq!(&raw.recv_publish().await.payload[..], b"one message");
    server.shutdown().await;
}

#[tokio::test]
async fn the_upgrade_needs_the_path_and_the_mqtt_subprotocol() {
    let (server, _plain, ws) = start(listener(ListenerKind::Ws, None, None)).await;
    let status = |e: WsError| match e {
        WsError::Http(response) => response.status(),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    let tcp = TcpStream::connect(ws).await.unwrap();
    let wrong_path = upgrade(tcp, &format!("ws://{ws}/other"), Some("mqtt")).await;
    assert_eq!(status(wrong_path.err().unwrap()), StatusCode::NOT_FOUND);
    let tcp = TcpStream::connect(ws).await.unwrap();
    let no_protocol = upgrade(tcp, &format!("ws://{ws}/mqtt"), None).await;
    assert_eq!(status(no_protocol.err().unwrap()), StatusCode::BAD_REQUEST);
    let tcp = TcpStream::connect(ws).await.unwrap();
    let chat = upgrade(tcp, &format!("ws://{ws}/mqtt"), Some("chat")).await;
    assert_eq!(status(chat.err().unwrap()), StatusCode::BAD_REQUEST);
    // Several offered, mqtt among them: mqtt is chosen.
    let tcp = TcpStream::connect(ws).await.unwrap();
    let (_ws, chosen) = upgrade(tcp, &format!("ws://{ws}/mqtt"), Some("chat, mqtt"))
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    server.shutdown().await;
}

/// MQTT travels in binary messages [MQTT-6.0.0-1]: a text message closes the connection,
/// even one holding a valid CONNECT, which the same bytes in a binary message are answered.
#[tokio::test]
async fn a_text_message_closes_the_connection() {
    let (server, _plain, ws) = start(listener(ListenerKind::Ws, None, None)).await;
    let mut connect = BytesMut::new();
    Packet::from(Connect::new(V5, s("text")))
        .encode(V5, &mut connect)
        .unwrap();
    let text = String::from_utf8(connect.to_vec()).expect("this CONNECT is valid UTF-8");
    for as_text in [false, true] {
        let mut client = ws_client(ws, "/mqtt").await;
        let message = match as_text {
            true => Message::Text(text.clone().into()),
            false => Message::Binary(connect.clone().freeze()),
        };
        client.send(message).await.unwrap();
        let mut raw = Raw::over(Box::new(WsIo::new(client)), V5);
        let got = raw.try_recv(WAIT).await;
        match as_text {
            false => assert!(matches!(got, Ok(Some(Packet::ConnAck(_)))), "{got:?}"),
            true => assert!(matches!(got, Ok(None)), "expected the close, got {got:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_over_websocket_over_tls() {
    let ca = Ca::new("Corvus test CA");
    let files = write_files(&ca, &ca.issue(&["localhost"], false));
    let (server, plain, wss) = start(listener(ListenerKind::Wss, Some(&files), None)).await;
    assert_eq!(
        server.listener_descriptions()[1],
        format!("{wss} (WebSocket over TLS /mqtt)")
    );
    let tls = tls_connect(wss, client_config(&ca, &[&rustls::version::TLS13], None))
        .await
        .expect("the TLS handshake succeeds");
    let (client, chosen) = upgrade(tls, "wss://localhost/mqtt", Some("mqtt"))
        .await
        .expect("the upgrade succeeds");
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    let (mut publ, _) = Raw::over(Box::new(WsIo::new(client)), V5)
        .handshake("wss-pub", |_| {})
        .await;
    let mut sub = Raw::connect(plain, V5, "tcp-sub").await;
    sub.subscribe(1, "secure/web", QoS::AtLeastOnce).await;
    publ.publish("secure/web", b"over wss", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"over wss");
    server.shutdown().await;
}
