//! Test harness: a broker on a free loopback port, and a raw MQTT client built on the codec
//! that sends exactly the bytes a test wants and reports exactly what came back.

#![allow(dead_code)]

pub mod auth;
pub mod http;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use corvus_server::{Config, Server};
use mqtt_codec::{
    Ack, Connect, Decoder, Disconnect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// Starts a broker on 127.0.0.1 with a free port, with `tune` applied to the default config.
pub async fn start_with(tune: impl FnOnce(&mut Config)) -> (Server, SocketAddr) {
    let mut config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: fresh_data_dir(),
        // No $SYS messages (retained) unless a test asks: they would change what tests count.
        sys_interval: 0,
        ..Config::default()
    };
    tune(&mut config);
    let server = Server::start(&config).await.expect("broker starts");
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// A new, empty data directory under cargo's scratch folder for integration tests (inside
/// `target/`, so `cargo clean` removes it). Every test broker persists, with the default
/// sync policy, so the whole suite runs through the store.
pub fn fresh_data_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "corvus-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub async fn start() -> (Server, SocketAddr) {
    start_with(|_| {}).await
}

pub fn s(text: &str) -> MqttString {
    MqttString::try_from(text).unwrap()
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// A byte stream a [`Raw`] client speaks over: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A client that speaks through the codec, one packet at a time.
pub struct Raw {
    pub stream: Box<dyn Stream>,
    pub version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
}

impl Raw {
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to broker");
        stream.set_nodelay(true).unwrap();
        Raw::over(Box::new(stream), version)
    }

    /// A client on a stream opened by the caller (a TLS session, say).
    pub fn over(stream: Box<dyn Stream>, version: ProtocolVersion) -> Raw {
        Raw {
            stream,
            version,
            decoder: Decoder::new(version),
            buf: BytesMut::new(),
        }
    }

    /// Opens a connection and completes a CONNECT with `tune` applied; asserts success.
    pub async fn connect_with(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
        tune: impl FnOnce(&mut Connect),
    ) -> (Raw, mqtt_codec::ConnAck) {
        let raw = Raw::open(addr, version).await;
        raw.handshake(client_id, tune).await
    }

    /// Completes a CONNECT with `tune` applied; asserts success.
    pub async fn handshake(
        mut self,
        client_id: &str,
        tune: impl FnOnce(&mut Connect),
    ) -> (Raw, mqtt_codec::ConnAck) {
        let mut connect = Connect::new(self.version, s(client_id));
        tune(&mut connect);
        self.send(connect.into()).await;
        match self.recv().await {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK {ack:?}");
                (self, *ack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Raw {
        Raw::connect_with(addr, version, client_id, |_| {}).await.0
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet
            .encode(self.version, &mut out)
            .expect("test packet encodes");
        self.stream.write_all(&out).await.expect("write to broker");
        self.stream.flush().await.expect("flush to broker");
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
        self.stream.flush().await.expect("flush to broker");
    }

    /// The next packet, or `None` if the broker closed the connection.
    pub async fn try_recv(&mut self, within: Duration) -> Result<Option<Packet>, &'static str> {
        let read = async {
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(packet)) => return Ok(Some(packet)),
                    Ok(None) => {}
                    Err(_) => return Err("undecodable packet from broker"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .map_err(|_| "timed out")?
    }

    /// The next packet; panics on close or timeout.
    pub async fn recv(&mut self) -> Packet {
        match self.try_recv(WAIT).await {
            Ok(Some(packet)) => packet,
            Ok(None) => panic!("broker closed the connection"),
            Err(e) => panic!("no packet: {e}"),
        }
    }

    /// Asserts nothing arrives for a while.
    pub async fn expect_nothing(&mut self) {
        match self.try_recv(QUIET).await {
            Err("timed out") => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    /// Asserts the broker closes the connection (after any packets, which are returned).
    pub async fn expect_close(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        loop {
            match self.try_recv(WAIT).await {
                Ok(None) => return seen,
                Ok(Some(p)) => seen.push(p),
                Err(e) => panic!("connection not closed: {e}; got {seen:?}"),
            }
        }
    }

    /// Asserts a v5 DISCONNECT with `reason` and then the close.
    /// Sends `connect` and expects CONNACK `reason` (a 3.1.1 return code as the codec
    /// decodes it) and then the close [MQTT-3.2.2-7]; `what` names the case in a failure.
    pub async fn expect_refused(&mut self, connect: Connect, reason: ReasonCode, what: &str) {
        self.send(connect.into()).await;
        match self.expect_close().await.as_slice() {
            [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, reason, "{what}: {ack:?}"),
            other => panic!("{what}: expected CONNACK {reason} and a close, got {other:?}"),
        }
    }

    pub async fn expect_disconnect(&mut self, reason: ReasonCode) {
        let seen = self.expect_close().await;
        match seen.as_slice() {
            [Packet::Disconnect(d)] => assert_eq!(d.reason_code, reason, "{d:?}"),
            other => panic!("expected DISCONNECT {reason}, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, id: u16, filter: &str, qos: QoS) -> Vec<ReasonCode> {
        self.subscribe_with(
            id,
            filter,
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
            None,
        )
        .await
    }

    pub async fn subscribe_with(
        &mut self,
        id: u16,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> Vec<ReasonCode> {
        let mut subscribe = Subscribe {
            packet_id: pid(id),
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: s(filter),
                options,
            }],
        };
        subscribe.properties.subscription_identifier = identifier;
        self.suback_for(subscribe).await
    }

    /// Sends `subscribe` and returns its SUBACK's codes (checking the packet id).
    async fn suback_for(&mut self, subscribe: Subscribe) -> Vec<ReasonCode> {
        let id = subscribe.packet_id;
        self.send(subscribe.into()).await;
        match self.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, id);
                ack.reason_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// One SUBSCRIBE carrying every filter of `filters` at `qos`; returns the SUBACK's codes
    /// (a 3.1.1 failure, 0x80, as [`ReasonCode::UnspecifiedError`]).
    pub async fn subscribe_many(&mut self, id: u16, filters: &[&str], qos: QoS) -> Vec<ReasonCode> {
        let subscriptions = filters
            .iter()
            .map(|filter| Subscription {
                filter: s(filter),
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            })
            .collect();
        self.suback_for(Subscribe {
            packet_id: pid(id),
            properties: Default::default(),
            subscriptions,
        })
        .await
    }

    /// Publishes and completes the QoS flow; returns the broker's acknowledgement code.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        id: u16,
    ) -> ReasonCode {
        let mut publish = Publish::new(s(topic), Bytes::copy_from_slice(payload));
        publish.qos = qos;
        publish.retain = retain;
        publish.packet_id = (qos != QoS::AtMostOnce).then(|| pid(id));
        self.publish_packet(publish).await
    }

    pub async fn publish_packet(&mut self, publish: Publish) -> ReasonCode {
        let qos = publish.qos;
        let id = publish.packet_id;
        self.send(publish.into()).await;
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => match self.recv().await {
                Packet::PubAck(ack) if Some(ack.packet_id) == id => ack.reason_code,
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let rec = match self.recv().await {
                    Packet::PubRec(ack) if Some(ack.packet_id) == id => ack,
                    other => panic!("expected PUBREC, got {other:?}"),
                };
                if !rec.reason_code.is_success() {
                    return rec.reason_code;
                }
                self.send(Packet::PubRel(Ack::new(rec.packet_id))).await;
                match self.recv().await {
                    Packet::PubComp(ack) if ack.packet_id == rec.packet_id => rec.reason_code,
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// The next PUBLISH, acknowledged as its QoS requires (QoS 2 through PUBCOMP).
    pub async fn recv_publish(&mut self) -> Publish {
        let publish = match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        self.ack(&publish).await;
        publish
    }

    /// Acknowledges a received PUBLISH as its QoS requires.
    pub async fn ack(&mut self, publish: &Publish) {
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(Packet::PubAck(Ack::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(Packet::PubRec(Ack::new(id))).await;
                match self.recv().await {
                    Packet::PubRel(rel) if rel.packet_id == id => {}
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(Packet::PubComp(Ack::new(id))).await;
            }
            _ => {}
        }
    }

    pub async fn disconnect(mut self) {
        self.send(Disconnect::default().into()).await;
        let _ = self.try_recv(WAIT).await;
    }
}

// ---- delivery helpers (qos, retained, topics and shared tests) ----

/// The next packet, which must be a PUBLISH; not acknowledged.
pub async fn next_publish_unacked(raw: &mut Raw) -> Publish {
    match raw.recv().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Receives `n` PUBLISHes, in arrival order, acknowledging each as its QoS requires and
/// completing every QoS 2 flow. Unlike [`Raw::recv_publish`], it accepts further PUBLISHes
/// arriving before a PUBREL.
pub async fn recv_publishes_acked(raw: &mut Raw, n: usize) -> Vec<Publish> {
    let mut got = Vec::new();
    let mut awaiting_pubrel = Vec::new();
    while got.len() < n || !awaiting_pubrel.is_empty() {
        match raw.recv().await {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => raw.send(Packet::PubAck(Ack::new(id))).await,
                    (QoS::ExactlyOnce, Some(id)) => {
                        raw.send(Packet::PubRec(Ack::new(id))).await;
                        awaiting_pubrel.push(id);
                    }
                    _ => {}
                }
                got.push(p);
                assert!(got.len() <= n, "more PUBLISHes than expected: {got:?}");
            }
            Packet::PubRel(rel) => {
                let i = awaiting_pubrel
                    .iter()
                    .position(|&id| id == rel.packet_id)
                    .unwrap_or_else(|| panic!("unexpected PUBREL {rel:?}"));
                awaiting_pubrel.remove(i);
                raw.send(Packet::PubComp(Ack::new(rel.packet_id))).await;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
    got
}

/// Asserts the broker has nothing to send this client right now (two PINGREQ round trips:
/// whatever was queued for the client when the first PINGREQ arrived is written, at the latest,
/// together with the first PINGRESP, so the second one would come after it).
pub async fn assert_nothing_queued(raw: &mut Raw) {
    for _ in 0..2 {
        raw.send(Packet::PingReq).await;
        match raw.recv().await {
            Packet::PingResp => {}
            other => panic!("expected nothing before PINGRESP, got {other:?}"),
        }
    }
}

/// Waits (bounded) until `server` has counted exactly `n` messages dropped for `reason`, then
/// makes sure no further one is counted for a while; panics with the count otherwise.
pub async fn wait_dropped(server: &Server, reason: corvus_core::DropReason, n: u64) {
    let metrics = &server.broker().metrics;
    let reached = tokio::time::timeout(WAIT, async {
        while metrics.dropped(reason) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{n} drops ({reason:?}) expected, {} counted",
        metrics.dropped(reason)
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(metrics.dropped(reason), n, "drops ({reason:?})");
}

/// A connection to `addr` is closed at once, before any packet (refused at accept, by a
/// per-source limit).
pub async fn assert_refused(addr: SocketAddr) {
    let mut refused = Raw::open(addr, ProtocolVersion::V5).await;
    let seen = refused.expect_close().await;
    assert!(seen.is_empty(), "closed without a packet, got {seen:?}");
}

/// Waits until the broker has settled a closed connection's session as offline.
pub async fn wait_offline(server: &Server, client: &str) {
    let handle = server.broker().session(client).expect("session exists");
    tokio::time::timeout(WAIT, async {
        while handle.is_online() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("session goes offline");
}
