//! A lean MQTT client for load: CONNECT and SUBSCRIBE through the project's codec, and
//! PUBLISH and acknowledgements encoded by hand straight into the output buffer (a
//! benchmark's hot path must cost the generator less than it costs the broker). Every
//! packet from the broker is decoded strictly by the codec.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use mqtt_codec::{
    put_varint, Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, QoS, Subscribe,
    Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::BenchError;
use crate::stamp::{Stamp, STAMP_LEN};

/// How long the broker may take to answer CONNECT or SUBSCRIBE.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// One connection to the broker.
#[derive(Debug)]
pub struct Conn {
    pub name: String,
    stream: TcpStream,
    decoder: Decoder,
    inbuf: BytesMut,
    out: BytesMut,
    version: ProtocolVersion,
    /// The broker's Receive Maximum (MQTT 5.0; 65535 when it sets none, and for 3.1.1).
    pub receive_maximum: u16,
    /// Padding after the stamp of each payload this connection publishes.
    padding: Vec<u8>,
    read_chunk: usize,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Dial {
    pub addr: SocketAddr,
    /// A source address to bind to first (conns spreads over 127.0.0.x).
    pub local: Option<IpAddr>,
    pub version: ProtocolVersion,
    pub keep_alive: u16,
    /// How much room to make in the read buffer at a time: large for clients that receive
    /// messages, small for the thousands of idle ones of conns (their memory adds up).
    pub read_chunk: usize,
}

impl Conn {
    /// Connects (clean start, no session kept) and waits for a successful CONNACK.
    pub async fn open(dial: &Dial, client_id: &str) -> Result<Conn, BenchError> {
        let name = client_id.to_string();
        let io = |source| BenchError::Io {
            client: name.clone(),
            source,
        };
        let connect_error = |source| BenchError::Connect {
            client: name.clone(),
            addr: dial.addr,
            source,
        };
        let socket = match dial.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(connect_error)?;
        if let Some(local) = dial.local {
            socket
                .bind(SocketAddr::new(local, 0))
                .map_err(connect_error)?;
        }
        // A broker whose accept queue is full may leave the handshake hanging.
        let stream = match tokio::time::timeout(ANSWER_WITHIN, socket.connect(dial.addr)).await {
            Ok(connected) => connected.map_err(connect_error)?,
            Err(_) => {
                return Err(BenchError::Timeout {
                    client: name,
                    seconds: ANSWER_WITHIN.as_secs(),
                    waiting_for: "the TCP handshake".into(),
                })
            }
        };
        stream.set_nodelay(true).map_err(io)?;
        let mut conn = Conn {
            name: name.clone(),
            stream,
            decoder: Decoder::new(dial.version),
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            read_chunk: dial.read_chunk.max(64),
            version: dial.version,
            receive_maximum: u16::MAX,
            padding: Vec::new(),
        };
        let id = MqttString::try_from(client_id).map_err(|e| BenchError::Unexpected {
            client: name.clone(),
            what: format!("client id ({e})"),
        })?;
        let mut connect = Connect::new(dial.version, id);
        connect.clean_start = true;
        connect.keep_alive = dial.keep_alive;
        conn.queue(Packet::Connect(Box::new(connect)))?;
        conn.flush().await?;
        match conn.next_within(ANSWER_WITHIN, "CONNACK").await? {
            Packet::ConnAck(ack) if ack.reason_code.is_success() => {
                if let Some(max) = ack.properties.receive_maximum {
                    conn.receive_maximum = max;
                }
                Ok(conn)
            }
            Packet::ConnAck(ack) => Err(BenchError::Refused {
                client: name,
                code: ack.reason_code as u8,
            }),
            other => Err(conn.unexpected(&other)),
        }
    }

    /// Subscribes to `filters` at `qos` in one SUBSCRIBE and checks that each was granted.
    pub async fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<(), BenchError> {
        let mut subscriptions = Vec::with_capacity(filters.len());
        for f in filters {
            subscriptions.push(Subscription {
                filter: MqttString::try_from(f.as_str()).map_err(|e| BenchError::Unexpected {
                    client: self.name.clone(),
                    what: format!("filter {f} ({e})"),
                })?,
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            });
        }
        let packet_id = PacketId::new(1).expect("1 is a valid packet id");
        self.queue(Packet::Subscribe(Subscribe {
            packet_id,
            properties: Default::default(),
            subscriptions,
        }))?;
        self.flush().await?;
        match self.next_within(ANSWER_WITHIN, "SUBACK").await? {
            Packet::SubAck(ack) if ack.reason_codes.len() != filters.len() => {
                Err(BenchError::Unexpected {
                    client: self.name.clone(),
                    what: format!(
                        "SUBACK with {} reason codes for {} filters",
                        ack.reason_codes.len(),
                        filters.len()
                    ),
                })
            }
            Packet::SubAck(ack) => {
                for (filter, code) in filters.iter().zip(&ack.reason_codes) {
                    let code = *code as u8;
                    if code >= 0x80 {
                        return Err(BenchError::SubscribeRefused {
                            client: self.name.clone(),
                            filter: filter.clone(),
                            code,
                        });
                    }
                    // Granted QoS 0-2 are the codes 0-2: a lower one would run another test.
                    if code < qos as u8 {
                        return Err(BenchError::Downgraded {
                            client: self.name.clone(),
                            filter: filter.clone(),
                            granted: code,
                            asked: qos as u8,
                        });
                    }
                }
                Ok(())
            }
            other => Err(self.unexpected(&other)),
        }
    }

    /// Queues `packet` (acknowledgements, PINGREQ, DISCONNECT: the codec writes them in
    /// their short form; only PUBLISH is hand-encoded, see [`OutgoingPublish`]).
    pub fn queue(&mut self, packet: Packet) -> Result<(), BenchError> {
        packet
            .encode(self.version, &mut self.out)
            .map_err(|e| BenchError::Unexpected {
                client: self.name.clone(),
                what: format!("packet that cannot be encoded ({e})"),
            })
    }

    /// Queues a PUBLISH of a `size`-byte payload starting with `stamp`.
    pub fn queue_publish(
        &mut self,
        topic: &[u8],
        qos: QoS,
        packet_id: u16,
        stamp: Stamp,
        size: usize,
    ) {
        let publish = OutgoingPublish {
            topic,
            qos,
            packet_id,
            stamp,
            size,
        };
        publish.encode(self.version, &mut self.out, &mut self.padding);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), BenchError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|source| BenchError::Io {
            client: self.name.clone(),
            source,
        })
    }

    /// The next complete packet already read, if any.
    pub fn try_decode(&mut self) -> Result<Option<Packet>, BenchError> {
        self.decoder
            .decode(&mut self.inbuf)
            .map_err(|e| BenchError::Malformed {
                client: self.name.clone(),
                reason: e.to_string(),
            })
    }

    fn make_room(&mut self) {
        if self.inbuf.capacity() - self.inbuf.len() < self.read_chunk / 4 {
            self.inbuf.reserve(self.read_chunk);
        }
    }

    /// Reads whatever the broker sent next (waits for at least one byte).
    pub async fn read_more(&mut self) -> Result<(), BenchError> {
        self.make_room();
        match self.stream.read_buf(&mut self.inbuf).await {
            Ok(0) => Err(BenchError::Closed {
                client: self.name.clone(),
                during: String::new(),
            }),
            Ok(_) => Ok(()),
            Err(source) => Err(BenchError::Io {
                client: self.name.clone(),
                source,
            }),
        }
    }

    /// Reads what has arrived without waiting; false if nothing had.
    pub fn try_read_more(&mut self) -> Result<bool, BenchError> {
        self.make_room();
        match self.stream.try_read_buf(&mut self.inbuf) {
            Ok(0) => Err(BenchError::Closed {
                client: self.name.clone(),
                during: String::new(),
            }),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(source) => Err(BenchError::Io {
                client: self.name.clone(),
                source,
            }),
        }
    }

    /// The next packet, read within `within`.
    pub async fn next_within(
        &mut self,
        within: Duration,
        waiting_for: &str,
    ) -> Result<Packet, BenchError> {
        let read = async {
            loop {
                if let Some(p) = self.try_decode()? {
                    return Ok(p);
                }
                self.read_more().await.map_err(|e| match e {
                    BenchError::Closed { client, .. } => BenchError::Closed {
                        client,
                        during: format!(" while waiting for {waiting_for}"),
                    },
                    e => e,
                })?;
            }
        };
        match tokio::time::timeout(within, read).await {
            Ok(result) => result,
            Err(_) => Err(BenchError::Timeout {
                client: self.name.clone(),
                seconds: within.as_secs(),
                waiting_for: waiting_for.to_string(),
            }),
        }
    }

    /// An error naming a packet that came when another was expected.
    pub fn unexpected(&self, packet: &Packet) -> BenchError {
        let what = match packet {
            Packet::Disconnect(d) => format!("DISCONNECT (0x{:02X})", d.reason_code as u8),
            other => format!("{:?}", other.packet_type()),
        };
        BenchError::Unexpected {
            client: self.name.clone(),
            what,
        }
    }
}

/// A benchmark PUBLISH, encoded by hand.
struct OutgoingPublish<'a> {
    topic: &'a [u8],
    qos: QoS,
    packet_id: u16,
    stamp: Stamp,
    size: usize,
}

impl OutgoingPublish<'_> {
    /// Appends the packet to `out`; `padding` is a reusable run of filler bytes.
    fn encode(&self, version: ProtocolVersion, out: &mut BytesMut, padding: &mut Vec<u8>) {
        let id_len = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        let props_len = usize::from(version == ProtocolVersion::V5);
        let remaining = 2 + self.topic.len() + id_len + props_len + self.size;
        out.reserve(5 + remaining);
        out.put_u8(0x30 | ((self.qos as u8) << 1));
        // The command line caps the payload so that this stays within VARINT_MAX.
        put_varint(out, remaining as u32);
        out.put_u16(self.topic.len() as u16);
        out.put_slice(self.topic);
        if id_len > 0 {
            out.put_u16(self.packet_id);
        }
        if props_len > 0 {
            out.put_u8(0);
        }
        let mut header = [0u8; STAMP_LEN];
        self.stamp.write(&mut header);
        out.put_slice(&header);
        let pad = self.size.saturating_sub(STAMP_LEN);
        if padding.len() < pad {
            padding.resize(pad, b'x');
        }
        out.put_slice(&padding[..pad]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-encoded PUBLISH is what the codec decodes.
    #[test]
    fn hand_encoded_packets_decode() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for (qos, size) in [
                (QoS::AtMostOnce, 20),
                (QoS::AtLeastOnce, 200),
                (QoS::ExactlyOnce, 70_000),
            ] {
                let mut out = BytesMut::new();
                let publish = OutgoingPublish {
                    topic: b"bench/t",
                    qos,
                    packet_id: 9,
                    stamp: Stamp {
                        publisher: 3,
                        seq: 42,
                        sent_ns: 99,
                    },
                    size,
                };
                publish.encode(version, &mut out, &mut Vec::new());
                let mut decoder = Decoder::new(version);
                let Some(Packet::Publish(p)) = decoder.decode(&mut out).unwrap() else {
                    panic!("not a PUBLISH");
                };
                assert_eq!(p.topic.as_str(), "bench/t");
                assert_eq!(p.qos, qos);
                assert_eq!(
                    p.packet_id.map(|i| i.get()),
                    (qos != QoS::AtMostOnce).then_some(9)
                );
                assert_eq!(p.payload.len(), size);
                let stamp = Stamp::read(&p.payload).unwrap();
                assert_eq!((stamp.publisher, stamp.seq, stamp.sent_ns), (3, 42, 99));
                assert!(out.is_empty());
            }
        }
    }
}
