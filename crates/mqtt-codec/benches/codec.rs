//! Decoding and encoding throughput of representative packets.
//!
//! Run with `cargo bench -p mqtt-codec --bench codec`. Each case is measured both ways:
//! `decode` parses one complete packet from a buffer (the cost of `Decoder::decode` per
//! packet, including splitting it off the read buffer), `encode` appends it to a buffer with
//! room reserved (the cost of `Packet::encode`). Throughput is in bytes of wire format.

use std::hint::black_box;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mqtt_codec::{
    Connect, ConnectProperties, Decoder, MqttString, Packet, ProtocolVersion, Publish,
    PublishProperties, QoS, RetainHandling, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, Will, WillProperties,
};

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn publish(version: ProtocolVersion, payload_len: usize) -> Packet {
    let properties = if version.is_v5() {
        PublishProperties {
            message_expiry_interval: Some(3600),
            content_type: Some(s("application/octet-stream")),
            user_properties: vec![(s("trace-id"), s("4bf92f3577b34da6"))],
            ..PublishProperties::default()
        }
    } else {
        PublishProperties::default()
    };
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: s("sensors/building-7/floor-3/temperature"),
        packet_id: NonZeroU16::new(4242),
        properties,
        payload: Bytes::from(vec![0xA5; payload_len]),
    })
}

fn connect_v5() -> Packet {
    Packet::from(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: s("bench-client-0001"),
        will: Some(Will {
            topic: s("clients/bench-client-0001/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(5),
                content_type: Some(s("text/plain")),
                ..WillProperties::default()
            },
        }),
        username: Some(s("bench")),
        password: Some(Bytes::from_static(b"not-a-real-password")),
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(100),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(16),
            user_properties: vec![(s("region"), s("eu-west"))],
            ..ConnectProperties::default()
        },
    })
}

fn subscribe_v5() -> Packet {
    let filters = [
        "sensors/+/temperature",
        "sensors/+/humidity",
        "alerts/#",
        "$share/workers/jobs/+",
        "devices/+/status",
        "devices/+/config/+",
        "cmd/building-7/#",
        "metrics/+/+/cpu",
        "logs/error",
        "+/heartbeat",
    ];
    Packet::from(Subscribe {
        packet_id: NonZeroU16::new(17).unwrap(),
        properties: SubscribeProperties {
            subscription_identifier: Some(42),
            user_properties: Vec::new(),
        },
        subscriptions: filters
            .iter()
            .map(|&f| Subscription {
                filter: s(f),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            })
            .collect(),
    })
}

fn cases() -> Vec<(&'static str, ProtocolVersion, Packet)> {
    use ProtocolVersion::{V3_1_1, V5};
    vec![
        ("publish_64B/v3.1.1", V3_1_1, publish(V3_1_1, 64)),
        ("publish_64B/v5", V5, publish(V5, 64)),
        ("publish_4KiB/v3.1.1", V3_1_1, publish(V3_1_1, 4096)),
        ("publish_4KiB/v5", V5, publish(V5, 4096)),
        ("connect_will_props/v5", V5, connect_v5()),
        ("subscribe_10_filters/v5", V5, subscribe_v5()),
    ]
}

fn codec(c: &mut Criterion) {
    for (name, version, packet) in cases() {
        let mut wire = BytesMut::new();
        packet.encode(version, &mut wire).unwrap();
        let wire = wire.freeze();

        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(wire.len() as u64));

        group.bench_function("decode", |b| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    let mut decoder = Decoder::new(version);
                    black_box(decoder.decode(buf).unwrap().unwrap())
                },
                BatchSize::SmallInput,
            )
        });

        group.bench_function("encode", |b| {
            let mut buf = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                buf.clear();
                black_box(&packet).encode(version, &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
