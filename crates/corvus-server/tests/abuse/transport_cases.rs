//! TLS and WebSocket listeners, stalled and overfed: a TLS client that sends nothing, or half
//! a ClientHello; a WebSocket upgrade trickled a byte at a time, or completed with no CONNECT
//! after it; WebSocket messages beyond what one may carry. The TLS handshake and the upgrade
//! count against `connect_timeout` like the CONNECT itself (docs/security.md, "Before a
//! client is connected"), and one WebSocket message may carry at most `max_packet_size` plus
//! 64 KiB, refused as soon as its header says more or its fragments add up to more.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use common::tls::{client_config, mqtts_listener, write_files, Ca, Files};
use corvus_server::config::{ListenerConfig, ListenerKind};
use mqtt_codec::Decoder;
use rustls::pki_types::ServerName;
use tokio::io::AsyncRead;

use super::*;

/// The connect timeout of the stall cases, in seconds.
const TIMEOUT: u64 = 2;
/// How much before the deadline (counted from our TCP connect) a close may come and still be
/// the deadline's: the broker starts its clock at its accept, which is not before our connect
/// returns, so this only covers the clocks' resolution.
const EARLY: Duration = Duration::from_millis(200);

/// The listener under test: the second one (the first is the harness's plain TCP listener,
/// which the sentinel uses).
fn second_listener(case: &Case) -> SocketAddr {
    case.server.local_addrs()[1]
}

/// A CA and the files of an `mqtts` listener it signed (for "localhost").
fn tls_files() -> (Ca, Files) {
    let ca = Ca::new("Corvus test CA");
    let files = write_files(&ca, &ca.issue(&["localhost"], false));
    (ca, files)
}

/// A `ws` listener on a free loopback port, on the default path `/mqtt`.
fn ws_listener() -> ListenerConfig {
    ListenerConfig {
        kind: ListenerKind::Ws,
        ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
    }
}

/// Reads whatever the broker sends on `stream` until it closes the connection (an EOF or a
/// reset), which must happen at the connect deadline: not before [`TIMEOUT`] (less
/// [`EARLY`]) after `start`, our TCP connect, and less than [`MAX_GAP`] after it. Returns
/// what arrived before the close.
async fn closed_at_the_deadline(
    mut stream: impl AsyncRead + Unpin,
    start: Instant,
    what: &str,
) -> Vec<u8> {
    let deadline = Duration::from_secs(TIMEOUT);
    let mut got = Vec::new();
    // A reset is a close too; what arrived before it is in `got`.
    let read = tokio::time::timeout(deadline + WAIT, stream.read_to_end(&mut got)).await;
    let took = start.elapsed();
    assert!(
        read.is_ok(),
        "{what}: still open after {took:?}; got {got:?}"
    );
    assert!(
        took >= deadline - EARLY && took < deadline + MAX_GAP,
        "{what}: closed after {took:?}, the connect timeout is {deadline:?}"
    );
    got
}

/// A client's whole first flight of TLS: the ClientHello (TLS 1.3 and 1.2 offered), as a
/// TLS record.
fn client_hello(ca: &Ca) -> Vec<u8> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let config = Arc::new(client_config(ca, &versions, None));
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut hello).unwrap();
    }
    // A handshake record (type 22), holding a ClientHello (handshake type 1).
    assert_eq!((hello[0], hello[5]), (0x16, 0x01), "{hello:?}");
    hello
}

// ---- stalls before CONNECT ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connection_sending_nothing_is_closed_at_the_connect_timeout() {
    let (_ca, files) = tls_files();
    let listener = mqtts_listener(Some(files.cert.clone()), Some(files.key.clone()), None);
    run(
        |c| {
            c.limits.connect_timeout = TIMEOUT;
            c.listeners.push(listener);
        },
        async |case| {
            let tcp = TcpStream::connect(second_listener(case)).await.unwrap();
            let start = Instant::now();
            let got = closed_at_the_deadline(tcp, start, "silent TLS client").await;
            assert!(got.is_empty(), "the broker sent {got:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connection_stopping_halfway_through_its_client_hello_is_closed_at_the_connect_timeout()
{
    let (ca, files) = tls_files();
    let listener = mqtts_listener(Some(files.cert.clone()), Some(files.key.clone()), None);
    let hello = client_hello(&ca);
    run(
        |c| {
            c.limits.connect_timeout = TIMEOUT;
            c.listeners.push(listener);
        },
        async |case| {
            let tls = second_listener(case);
            // The whole ClientHello is answered at once, with a handshake record (the
            // ServerHello): the listener does speak TLS to these bytes.
            let mut whole = TcpStream::connect(tls).await.unwrap();
            whole.write_all(&hello).await.unwrap();
            let mut first = [0u8; 1];
            tokio::time::timeout(MAX_GAP, whole.read_exact(&mut first))
                .await
                .expect("the whole ClientHello is answered at once")
                .expect("the whole ClientHello is answered");
            assert_eq!(first[0], 0x16, "a TLS handshake record");
            drop(whole);
            // Half of it, then silence: nothing comes back, and the connection is closed at
            // the deadline.
            let mut half = TcpStream::connect(tls).await.unwrap();
            let start = Instant::now();
            half.set_nodelay(true).unwrap();
            half.write_all(&hello[..hello.len() / 2]).await.unwrap();
            let got = closed_at_the_deadline(half, start, "half a ClientHello").await;
            assert!(got.is_empty(), "the broker sent {got:?}");
        },
    )
    .await;
}

/// A WebSocket upgrade request for `path`, offering the `mqtt` subprotocol.
fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_trickled_a_byte_at_a_time_is_closed_at_the_connect_timeout() {
    run(
        |c| {
            c.limits.connect_timeout = TIMEOUT;
            c.listeners.push(ws_listener());
        },
        async |case| {
            // About 200 bytes, one every 300 ms: a minute to arrive.
            let request = upgrade_request("/mqtt");
            let stream = TcpStream::connect(second_listener(case)).await.unwrap();
            let start = Instant::now();
            stream.set_nodelay(true).unwrap();
            let (reader, mut writer) = stream.into_split();
            let trickle = tokio::spawn(async move {
                for byte in request {
                    if writer.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            let got = closed_at_the_deadline(reader, start, "trickled upgrade").await;
            trickle.abort();
            // No HTTP response at all, not even a refusal.
            assert!(
                got.is_empty(),
                "the broker sent {:?}",
                String::from_utf8_lossy(&got)
            );
        },
    )
    .await;
}

// ---- WebSocket frames by hand ----

/// The masking key of every frame the test sends (a client's frames must be masked,
/// RFC 6455 section 5.3; the key's value does not matter).
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
/// Opcodes (RFC 6455 section 5.2).
const CONTINUATION: u8 = 0x0;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;

/// A client frame's header, masking key included, for a payload of `len` bytes.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=65_535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// A whole client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(fin, opcode, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// One frame from the broker at the start of `buf`: (FIN and opcode byte, payload), and how
/// many bytes it took; `None` if it is not all there yet.
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let second = *buf.get(1)?;
    let (len, mut at) = match second & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask: Option<[u8; 4]> = match second & 0x80 {
        0 => None,
        _ => {
            let key = buf.get(at..at + 4)?.try_into().unwrap();
            at += 4;
            Some(key)
        }
    };
    let mut payload = buf.get(at..at + len)?.to_vec();
    if let Some(key) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= key[i % 4]);
    }
    Some((buf[0], payload, at + len))
}

/// A WebSocket connection driven by hand: the test writes the bytes it wants (frames that
/// lie about their length, say) and reads the broker's frames as they come.
struct WsRaw {
    tcp: TcpStream,
    /// Bytes received and not yet parsed.
    buf: Vec<u8>,
    /// When the TCP connection was made.
    start: Instant,
}

impl WsRaw {
    /// Connects and completes the upgrade on `/mqtt`: the broker answers 101 and chooses
    /// `mqtt`.
    async fn upgrade(addr: SocketAddr) -> WsRaw {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(&upgrade_request("/mqtt")).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
                .await
                .expect("the upgrade is answered")
                .expect("read the upgrade response");
            assert!(n > 0, "closed during the upgrade: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("sec-websocket-protocol: mqtt\r\n"), "{head}");
        WsRaw {
            tcp,
            buf: buf.split_off(end),
            start,
        }
    }

    /// Writes `bytes`; the broker may have closed the connection meanwhile, which is what
    /// the caller then checks, so a failed write is not an error here.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = tokio::time::timeout(WAIT, self.tcp.write_all(bytes)).await;
    }

    /// Sends an MQTT packet in one binary message.
    async fn send_packet(&mut self, packet: Packet) {
        let mut bytes = BytesMut::new();
        packet.encode(V5, &mut bytes).unwrap();
        self.send(&frame(true, BINARY, &bytes)).await;
    }

    /// The next frame from the broker, or `None` once it closed the connection (an EOF or
    /// a reset).
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((first, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some((first, payload));
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(WAIT + Duration::from_secs(TIMEOUT), async {
                self.tcp.read(&mut chunk).await
            })
            .await
            .expect("the broker sends something or closes the connection");
            match read {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "a partial frame: {:?}", self.buf);
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next MQTT packet, which must come alone in one binary message.
    async fn recv_packet(&mut self) -> Packet {
        match self.next_frame().await {
            Some((first, payload)) if first == 0x80 | BINARY => {
                let mut buf = BytesMut::from(&payload[..]);
                let packet = Decoder::new(V5)
                    .decode(&mut buf)
                    .expect("a valid packet")
                    .expect("a whole packet");
                assert!(buf.is_empty(), "one packet per message");
                packet
            }
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Completes an MQTT CONNECT (v5) on the upgraded connection.
    async fn mqtt_connect(&mut self, id: &str) {
        self.send_packet(mqtt_codec::Connect::new(V5, s(id)).into())
            .await;
        match self.recv_packet().await {
            Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Waits for the broker to close the connection; returns the frames it sent first.
    async fn frames_until_close(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next_frame().await {
            frames.push(frame);
        }
        frames
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgraded_but_no_connect_is_closed_at_the_connect_timeout() {
    run(
        |c| {
            c.limits.connect_timeout = TIMEOUT;
            c.listeners.push(ws_listener());
        },
        async |case| {
            let ws = WsRaw::upgrade(second_listener(case)).await;
            assert!(ws.buf.is_empty(), "nothing after the 101: {:?}", ws.buf);
            // The upgrade took part of the time allowed; the CONNECT gets what is left.
            let got = closed_at_the_deadline(ws.tcp, ws.start, "upgraded, no CONNECT").await;
            assert!(got.is_empty(), "the broker sent {got:?}");
        },
    )
    .await;
}

// ---- WebSocket messages beyond the bound ----

/// The `max_packet_size` of the message cases: one WebSocket message may then carry
/// [`MAX_MESSAGE`] bytes.
const PACKET: u32 = 1024;
const MAX_MESSAGE: usize = PACKET as usize + 64 * 1024;

/// The broker closes the connection within [`MAX_GAP`] of `since` (long before the minute
/// of `connect_timeout` these cases run with), sending nothing first but, once the client is
/// connected, a WebSocket close frame without a status (the connection task ends the
/// WebSocket as it ends any connection; before CONNECT the socket is simply dropped).
async fn expect_prompt_close(ws: &mut WsRaw, since: Instant, connected: bool, what: &str) {
    let frames = ws.frames_until_close().await;
    let took = since.elapsed();
    let close = (0x80 | CLOSE, Vec::new());
    let expected = if connected { vec![close] } else { vec![] };
    assert_eq!(
        frames, expected,
        "{what}: what the broker sent before the close"
    );
    assert!(took < MAX_GAP, "{what}: closed after {took:?}");
}

/// 65 QoS 0 PUBLISHes on `topic` of exactly [`PACKET`] bytes each: [`MAX_MESSAGE`] bytes in
/// all.
fn packets_filling_a_message(topic: &str) -> Vec<u8> {
    // Fixed header 3 (a remaining length of 1021 takes two bytes), topic 2 + its length,
    // no properties 1.
    let payload = vec![b'x'; PACKET as usize - 3 - 2 - topic.len() - 1];
    let one = publish0(topic.as_bytes(), &payload);
    assert_eq!(one.len(), PACKET as usize);
    let all = one.repeat(MAX_MESSAGE / PACKET as usize);
    assert_eq!(all.len(), MAX_MESSAGE);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_message_beyond_the_bound_is_closed_without_being_buffered() {
    run(
        |c| {
            c.limits.connect_timeout = 60;
            c.limits.max_packet_size = PACKET;
            c.listeners.push(ws_listener());
        },
        async |case| {
            let addr = second_listener(case);
            // A frame declaring 16 MiB, 1 KiB of it sent, then silence; before CONNECT. The
            // header alone is refused: the broker does not wait for the rest.
            let mut ws = WsRaw::upgrade(addr).await;
            let mut bytes = frame_header(true, BINARY, 16 << 20);
            bytes.extend_from_slice(&[0; 1024]);
            let sent = Instant::now();
            ws.send(&bytes).await;
            expect_prompt_close(&mut ws, sent, false, "16 MiB frame before CONNECT").await;

            // A message in fragments of 16 KiB, each within the bound, adding up to one
            // fragment past it; then silence.
            let mut ws = WsRaw::upgrade(addr).await;
            let fragment = vec![0u8; 16 * 1024];
            let count = MAX_MESSAGE / fragment.len() + 1;
            let sent = Instant::now();
            for i in 0..count {
                let opcode = if i == 0 { BINARY } else { CONTINUATION };
                ws.send(&frame(false, opcode, &fragment)).await;
            }
            expect_prompt_close(&mut ws, sent, false, "fragments beyond the bound").await;

            // Once connected: a message of exactly the bound, holding 65 packets of the
            // largest size allowed, goes through; one byte more closes the connection.
            let mut ws = WsRaw::upgrade(addr).await;
            ws.mqtt_connect(&format!("ws-bulk-{}", unique())).await;
            let full = packets_filling_a_message("ws/bulk");
            ws.send(&frame(true, BINARY, &full)).await;
            ws.send_packet(Packet::PingReq).await;
            assert_eq!(ws.recv_packet().await, Packet::PingResp);
            let mut over = full;
            over.push(0xC0); // the first byte of a PINGREQ
            let sent = Instant::now();
            ws.send(&frame(true, BINARY, &over)).await;
            expect_prompt_close(&mut ws, sent, true, "one byte past the bound").await;

            // Once connected: the 16 MiB header.
            let mut ws = WsRaw::upgrade(addr).await;
            ws.mqtt_connect(&format!("ws-huge-{}", unique())).await;
            let sent = Instant::now();
            ws.send(&bytes).await;
            expect_prompt_close(&mut ws, sent, true, "16 MiB frame after CONNECT").await;
        },
    )
    .await;
}
