//! What durability costs: QoS 1 fan-in (several publishers, one persistent subscriber) with
//! the store's sync policies `always`, `interval` and `never`, beside the broker with no
//! store; and how long recovery takes for a store holding a million queued messages.
//!
//! `cargo bench -p corvus-server --bench durability` (options: `--messages N` per run,
//! `--publishers P`, `--window W` QoS 1 messages in flight per publisher, `--recovery N`
//! queued messages for the recovery run, 0 to skip). Everything runs on 127.0.0.1 and stops
//! by itself. Figures are printed as a Markdown table; compare ratios within one run, the
//! machine is shared.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use corvus_server::config::SyncName;
use corvus_server::{Config, Server};
use mqtt_codec::{
    Ack, Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe,
    Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
/// A run that takes longer than this is cut short and reported as such.
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Options {
    messages: usize,
    publishers: usize,
    window: usize,
    recovery: usize,
    payload: usize,
}

fn options() -> Options {
    let mut o = Options {
        messages: 50_000,
        publishers: 4,
        window: 32,
        recovery: 1_000_000,
        payload: 64,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse().ok());
        match (args[i].as_str(), value) {
            ("--messages", Some(v)) => o.messages = v,
            ("--publishers", Some(v)) => o.publishers = v,
            ("--window", Some(v)) => o.window = v,
            ("--recovery", Some(v)) => o.recovery = v,
            ("--payload", Some(v)) => o.payload = v,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corvus-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).expect("valid string")
}

/// A minimal pipelining MQTT client on the project's codec.
struct Client {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    out: BytesMut,
}

impl Client {
    async fn connect(addr: SocketAddr, id: &str, expiry: u32) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut c = Client {
            stream,
            decoder: Decoder::new(V5),
            buf: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::new(),
        };
        let mut connect = Connect::new(V5, s(id));
        connect.clean_start = expiry == 0;
        connect.properties.session_expiry_interval = Some(expiry);
        connect.properties.receive_maximum = Some(u16::MAX);
        c.send(connect.into()).await;
        match c.recv().await {
            Packet::ConnAck(_) => c,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn queue(&mut self, packet: Packet) {
        packet.encode(V5, &mut self.out).expect("encodes");
    }

    async fn flush(&mut self) {
        self.stream.write_all(&self.out).await.expect("write");
        self.out.clear();
    }

    async fn send(&mut self, packet: Packet) {
        self.queue(packet);
        self.flush().await;
    }

    async fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid packet") {
                return p;
            }
            let n = self.stream.read_buf(&mut self.buf).await.expect("read");
            assert!(n > 0, "broker closed the connection");
        }
    }
}

struct RunResult {
    rate: f64,
    p50: Duration,
    p99: Duration,
    complete: bool,
}

/// P publishers send QoS 1 messages (W in flight each) to one persistent subscriber.
async fn fan_in(addr: SocketAddr, o: &Options) -> RunResult {
    let mut sink = Client::connect(addr, "sink", 3600).await;
    let sub = Subscribe {
        packet_id: PacketId::new(1).expect("nonzero"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: s("bench/#"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        }],
    };
    sink.send(sub.into()).await;
    let _suback = sink.recv().await;
    let per = o.messages / o.publishers;
    let total = per * o.publishers;
    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            match tokio::time::timeout(Duration::from_secs(10), sink.recv()).await {
                Ok(Packet::Publish(p)) => {
                    got += 1;
                    if let Some(id) = p.packet_id {
                        sink.queue(Packet::PubAck(Ack::new(id)));
                    }
                    if sink.buf.is_empty() || sink.out.len() > 16 * 1024 {
                        sink.flush().await;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        sink.flush().await;
        got
    });
    let mut publishers = Vec::new();
    for p in 0..o.publishers {
        let window = o.window;
        let payload = Bytes::from(vec![b'x'; o.payload]);
        publishers.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, &format!("pub-{p}"), 0).await;
            let topic = s(&format!("bench/{p}"));
            let mut latencies = Vec::with_capacity(per);
            let mut pending: VecDeque<(u16, Instant)> = VecDeque::new();
            let mut next = 0usize;
            while latencies.len() < per {
                while next < per && pending.len() < window {
                    let id = (next % 60_000) as u16 + 1;
                    let mut publish = Publish::new(topic.clone(), payload.clone());
                    publish.qos = QoS::AtLeastOnce;
                    publish.packet_id = PacketId::new(id);
                    c.queue(publish.into());
                    pending.push_back((id, Instant::now()));
                    next += 1;
                }
                c.flush().await;
                match tokio::time::timeout(Duration::from_secs(10), c.recv()).await {
                    Ok(Packet::PubAck(ack)) => {
                        if let Some(i) = pending
                            .iter()
                            .position(|(id, _)| *id == ack.packet_id.get())
                        {
                            if let Some((_, at)) = pending.remove(i) {
                                latencies.push(at.elapsed());
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for p in publishers {
        latencies.extend(p.await.expect("publisher"));
    }
    let got = tokio::time::timeout(RUN_LIMIT, receiver)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(0);
    let elapsed = started.elapsed();
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    RunResult {
        rate: got as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        complete: got == total,
    }
}

async fn run_mode(name: &str, sync: Option<SyncName>, o: &Options) -> RunResult {
    let dir = scratch_dir(name);
    let mut config = Config {
        listen: vec!["127.0.0.1:0".parse().expect("address")],
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.limits.max_queued_messages = o.messages + 1;
    config.limits.max_inflight = 1000;
    match sync {
        Some(policy) => config.store.sync = policy,
        None => config.store.enabled = false,
    }
    let server = Server::start(&config).await.expect("broker starts");
    let addr = server.local_addrs()[0];
    let result = fan_in(addr, o).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Fills a store with `n` queued messages for one offline session, then times opening it
/// and rebuilding the broker's sessions from it.
fn recovery(n: usize, payload: usize) -> (Duration, Duration, u64) {
    use corvus_core::{Delivery, Message};
    use corvus_server::Store;
    use corvus_store::keyed::SessionRecord;
    use corvus_store::{StoreOp, StoreOptions};

    let dir = scratch_dir("recovery");
    let now = corvus_server::clock::now();
    {
        let (store, _) = Store::open(&dir, StoreOptions::default(), now).expect("store opens");
        store.submit([StoreOp::PutSession {
            client: "offline".into(),
            record: SessionRecord {
                expiry_interval: u32::MAX,
                disconnected_at: Some(now),
                pending_will: None,
                armed_will: None,
                last_packet_id: 0,
                principal: None,
            },
        }]);
        let body = Bytes::from(vec![b'x'; payload]);
        let mut last = 0;
        for chunk in 0..n.div_ceil(10_000) {
            let ops: Vec<StoreOp> = (chunk * 10_000..((chunk + 1) * 10_000).min(n))
                .map(|_| {
                    let message = Arc::new(Message {
                        topic: s("recovery/t"),
                        payload: body.clone(),
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        properties: Default::default(),
                        expires_at: None,
                        publisher: None,
                        received_at: None,
                    });
                    StoreOp::Enqueue {
                        client: "offline".into(),
                        delivery: Delivery {
                            message,
                            qos: QoS::AtLeastOnce,
                            retain: false,
                            subscription_ids: vec![],
                            stored_id: Some(store.next_message_id()),
                            received_at: None,
                        },
                    }
                })
                .collect();
            last = store.submit(ops);
        }
        assert!(store.wait_durable(last, Duration::from_secs(60)), "synced");
    }
    let bytes = dir_size(&dir);
    let started = Instant::now();
    let (store, recovered) = Store::open(&dir, StoreOptions::default(), now).expect("reopens");
    let opened = started.elapsed();
    let queued: usize = recovered
        .queues
        .sessions
        .values()
        .map(|s| s.queue.len())
        .sum();
    assert_eq!(queued, n, "every queued message recovered");
    let allow_all = |_: Option<&str>, _: &str, _: &Arc<corvus_server::Broker>| {
        Arc::new(corvus_core::AllowAll) as Arc<dyn corvus_core::Authorizer>
    };
    let (broker, _) = corvus_server::Broker::with_store(
        Config::default().broker_config(),
        Arc::new(store),
        recovered,
        now,
        &allow_all,
    );
    let rebuilt = started.elapsed();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    (opened, rebuilt, bytes)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            total += if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
        }
    }
    total
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too, with nothing to do.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "QoS 1 fan-in: {} publishers x {} messages of {} bytes, {} in flight each, one persistent subscriber\n",
        o.publishers,
        o.messages / o.publishers,
        o.payload,
        o.window
    );
    println!("| store | delivered msg/s | PUBACK p50 | PUBACK p99 | vs never |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let modes: [(&str, Option<SyncName>); 4] = [
        ("in memory (no store)", None),
        ("sync = never", Some(SyncName::Never)),
        ("sync = interval (100 ms)", Some(SyncName::Interval)),
        ("sync = always", Some(SyncName::Always)),
    ];
    let mut never_rate = None;
    for (name, sync) in modes {
        let r = runtime.block_on(run_mode(&name.replace(' ', "_"), sync, &o));
        if sync == Some(SyncName::Never) {
            never_rate = Some(r.rate);
        }
        let ratio = never_rate.map_or("".into(), |n| format!("{:.2}", r.rate / n));
        println!(
            "| {name}{} | {:.0} | {:.2} ms | {:.2} ms | {ratio} |",
            if r.complete { "" } else { " (incomplete)" },
            r.rate,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0,
        );
    }
    if o.recovery > 0 {
        let (opened, rebuilt, bytes) = recovery(o.recovery, o.payload);
        println!(
            "\nRecovery of {} queued messages ({} MiB on disk): store open and journal replay {:.2} s; \
             sessions rebuilt {:.2} s in all",
            o.recovery,
            bytes / (1024 * 1024),
            opened.as_secs_f64(),
            rebuilt.as_secs_f64()
        );
    }
}
