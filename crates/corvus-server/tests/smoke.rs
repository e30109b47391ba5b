//! Basic end-to-end flows through a real listener.

mod common;

use common::*;
use mqtt_codec::{ProtocolVersion, QoS};

#[tokio::test]
async fn publish_reaches_subscriber_in_both_versions() {
    let (server, addr) = start().await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut sub = Raw::connect(addr, version, "sub").await;
        sub.subscribe(1, "a/+", QoS::ExactlyOnce).await;
        let mut publ = Raw::connect(addr, version, "pub").await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            publ.publish("a/b", b"hello", qos, false, 10).await;
            let got = sub.recv_publish().await;
            assert_eq!(got.topic, "a/b");
            assert_eq!(&got.payload[..], b"hello");
            assert_eq!(got.qos, qos);
        }
        sub.disconnect().await;
        publ.disconnect().await;
    }
    server.shutdown().await;
}
