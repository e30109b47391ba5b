//! A real client library against the broker: rumqttc, in MQTT 3.1.1 (`rumqttc::AsyncClient`)
//! and MQTT 5.0 (`rumqttc::v5::AsyncClient`). Each client's event loop runs in a spawned task
//! that forwards its events to the test; every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start, QUIET, WAIT};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Waits for the first event that `pick` accepts, skipping the others; panics on a connection
/// error or after [`WAIT`].
async fn wait_for<E: std::fmt::Debug, T>(
    events: &mut mpsc::UnboundedReceiver<Result<E, String>>,
    what: &str,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Ok(event)) => {
                    if let Some(t) = pick(&event) {
                        return t;
                    }
                }
                Some(Err(e)) => panic!("{what}: connection error {e}"),
                None => panic!("{what}: event loop ended"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// Asserts that no event `pick` accepts arrives for a while.
async fn expect_none<E: std::fmt::Debug>(
    events: &mut mpsc::UnboundedReceiver<Result<E, String>>,
    what: &str,
    mut pick: impl FnMut(&E) -> bool,
) {
    let _ = tokio::time::timeout(QUIET, async {
        while let Some(Ok(event)) = events.recv().await {
            assert!(!pick(&event), "{what}: unexpected {event:?}");
        }
    })
    .await;
}

// ---- MQTT 3.1.1 ----

mod v311 {
    use super::*;
    use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS};

    pub struct Client {
        pub client: AsyncClient,
        pub events: mpsc::UnboundedReceiver<Result<Event, String>>,
        pub task: JoinHandle<()>,
    }

    pub async fn connect(
        addr: SocketAddr,
        id: &str,
        tune: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        tune(&mut options);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| e.to_string());
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut c = Client {
            client,
            events,
            task,
        };
        let ack = wait_for(&mut c.events, "CONNACK", |e| match e {
            Event::Incoming(Packet::ConnAck(ack)) => Some(ack.clone()),
            _ => None,
        })
        .await;
        assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
        c
    }

    impl Client {
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client.subscribe(filter, qos).await.unwrap();
            let ack = wait_for(&mut self.events, "SUBACK", |e| match e {
                Event::Incoming(Packet::SubAck(ack)) => Some(ack.clone()),
                _ => None,
            })
            .await;
            assert!(
                matches!(
                    ack.return_codes[..],
                    [rumqttc::SubscribeReasonCode::Success(_)]
                ),
                "{ack:?}"
            );
        }

        /// Publishes and waits for the end of the QoS flow (PUBACK, PUBCOMP).
        pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
            self.client
                .publish(topic, qos, retain, payload.to_vec())
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    wait_for(&mut self.events, "PUBACK", |e| {
                        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
                    })
                    .await
                }
                QoS::ExactlyOnce => {
                    wait_for(&mut self.events, "PUBCOMP", |e| {
                        matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
                    })
                    .await
                }
            }
        }

        pub async fn next_publish(&mut self) -> Publish {
            wait_for(&mut self.events, "PUBLISH", |e| match e {
                Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
        }

        pub async fn expect_no_publish(&mut self) {
            expect_none(&mut self.events, "PUBLISH", |e| {
                matches!(e, Event::Incoming(Packet::Publish(_)))
            })
            .await
        }

        /// DISCONNECT, then waits for the broker to close the connection.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            let closed = tokio::time::timeout(WAIT, async {
                while let Some(Ok(_)) = self.events.recv().await {}
            })
            .await;
            assert!(closed.is_ok(), "broker did not close after DISCONNECT");
        }
    }

    pub fn will(topic: &str, payload: &[u8]) -> LastWill {
        LastWill::new(topic, payload.to_vec(), QoS::AtLeastOnce, false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v311_publish_and_receive_at_every_qos() {
    use rumqttc::QoS;
    let (server, addr) = start().await;
    let mut sub = v311::connect(addr, "sub", |_| {}).await;
    sub.subscribe("lib/+", QoS::ExactlyOnce).await;
    let mut low = v311::connect(addr, "low", |_| {}).await;
    low.subscribe("lib/#", QoS::AtMostOnce).await;
    let mut publ = v311::connect(addr, "pub", |_| {}).await;
    for (qos, payload) in [
        (QoS::AtMostOnce, &b"zero"[..]),
        (QoS::AtLeastOnce, b"one"),
        (QoS::ExactlyOnce, b"two"),
    ] {
        publ.publish("lib/x", payload, qos, false).await;
        let got = sub.next_publish().await;
        assert_eq!(
            (got.topic.as_str(), &got.payload[..], got.qos),
            ("lib/x", payload, qos)
        );
        assert!(!got.retain);
        // Downgraded to the subscription's QoS.
        let got = low.next_publish().await;
        assert_eq!((&got.payload[..], got.qos), (payload, QoS::AtMostOnce));
    }
    sub.disconnect().await;
    low.disconnect().await;
    publ.disconnect().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v311_retained_message_reaches_a_later_subscriber_until_cleared() {
    use rumqttc::QoS;
    let (server, addr) = start().await;
    let mut publ = v311::connect(addr, "pub", |_| {}).await;
    publ.publish("lib/state", b"on", QoS::AtLeastOnce, true)
        .await;

    let mut late = v311::connect(addr, "late", |_| {}).await;
    late.subscribe("lib/#", QoS::AtLeastOnce).await;
    let got = late.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("lib/state", &b"on"[..])
    );
    assert!(got.retain, "retained message sent with RETAIN set");

    // An empty retained message clears it (and is itself delivered to current subscribers).
    publ.publish("lib/state", b"", QoS::AtLeastOnce, true).await;
    assert!(late.next_publish().await.payload.is_empty());
    let mut later = v311::connect(addr, "later", |_| {}).await;
    later.subscribe("lib/#", QoS::AtLeastOnce).await;
    later.expect_no_publish().await;
    publ.disconnect().await;
    late.disconnect().await;
    later.disconnect().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v311_last_will_is_published_on_abrupt_close_only() {
    use rumqttc::QoS;
    let (server, addr) = start().await;
    let mut observer = v311::connect(addr, "observer", |_| {}).await;
    observer.subscribe("will/#", QoS::AtLeastOnce).await;

    // A normal DISCONNECT discards the will.
    let polite = v311::connect(addr, "polite", |o| {
        o.set_last_will(v311::will("will/polite", b"gone"));
    })
    .await;
    polite.disconnect().await;

    // Dropping the connection (the event loop owns the socket) publishes it.
    let rude = v311::connect(addr, "rude", |o| {
        o.set_last_will(v311::will("will/rude", b"lost"));
    })
    .await;
    rude.task.abort();
    let got = observer.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("will/rude", &b"lost"[..])
    );
    assert_eq!(got.qos, QoS::AtLeastOnce);
    observer.expect_no_publish().await;
    observer.disconnect().await;
    server.shutdown().await;
}

// ---- MQTT 5.0 ----

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode, LastWill, LastWillProperties, Packet, Publish, PublishProperties,
        SubscribeReasonCode,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub struct Client {
        pub client: AsyncClient,
        pub events: mpsc::UnboundedReceiver<Result<Event, String>>,
        pub task: JoinHandle<()>,
    }

    pub async fn connect(
        addr: SocketAddr,
        id: &str,
        tune: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        tune(&mut options);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| e.to_string());
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut c = Client {
            client,
            events,
            task,
        };
        let ack = wait_for(&mut c.events, "CONNACK", |e| match e {
            Event::Incoming(Packet::ConnAck(ack)) => Some(ack.clone()),
            _ => None,
        })
        .await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        c
    }

    impl Client {
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client.subscribe(filter, qos).await.unwrap();
            let ack = wait_for(&mut self.events, "SUBACK", |e| match e {
                Event::Incoming(Packet::SubAck(ack)) => Some(ack.clone()),
                _ => None,
            })
            .await;
            assert!(
                matches!(ack.return_codes[..], [SubscribeReasonCode::Success(_)]),
                "{ack:?}"
            );
        }

        /// Publishes and waits for the end of the QoS flow (PUBACK, PUBCOMP).
        pub async fn publish_with(
            &mut self,
            topic: &str,
            payload: &[u8],
            qos: QoS,
            retain: bool,
            properties: Option<PublishProperties>,
        ) {
            let payload = payload.to_vec();
            match properties {
                Some(p) => self
                    .client
                    .publish_with_properties(topic, qos, retain, payload, p)
                    .await
                    .unwrap(),
                None => self
                    .client
                    .publish(topic, qos, retain, payload)
                    .await
                    .unwrap(),
            }
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    wait_for(&mut self.events, "PUBACK", |e| {
                        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
                    })
                    .await
                }
                QoS::ExactlyOnce => {
                    wait_for(&mut self.events, "PUBCOMP", |e| {
                        matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
                    })
                    .await
                }
            }
        }

        pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
            self.publish_with(topic, payload, qos, retain, None).await
        }

        pub async fn next_publish(&mut self) -> Publish {
            wait_for(&mut self.events, "PUBLISH", |e| match e {
                Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
        }

        pub async fn expect_no_publish(&mut self) {
            expect_none(&mut self.events, "PUBLISH", |e| {
                matches!(e, Event::Incoming(Packet::Publish(_)))
            })
            .await
        }

        /// DISCONNECT, then waits for the broker to close the connection.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            let closed = tokio::time::timeout(WAIT, async {
                while let Some(Ok(_)) = self.events.recv().await {}
            })
            .await;
            assert!(closed.is_ok(), "broker did not close after DISCONNECT");
        }
    }

    pub fn will(topic: &str, payload: &[u8], properties: Option<LastWillProperties>) -> LastWill {
        LastWill::new(topic, payload.to_vec(), QoS::AtLeastOnce, false, properties)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_publish_and_receive_at_every_qos() {
    use rumqttc::v5::mqttbytes::QoS;
    let (server, addr) = start().await;
    let mut sub = v5::connect(addr, "sub", |_| {}).await;
    sub.subscribe("lib/+", QoS::ExactlyOnce).await;
    let mut low = v5::connect(addr, "low", |_| {}).await;
    low.subscribe("lib/#", QoS::AtLeastOnce).await;
    let mut publ = v5::connect(addr, "pub", |_| {}).await;
    for (qos, payload) in [
        (QoS::AtMostOnce, &b"zero"[..]),
        (QoS::AtLeastOnce, b"one"),
        (QoS::ExactlyOnce, b"two"),
    ] {
        publ.publish("lib/x", payload, qos, false).await;
        let got = sub.next_publish().await;
        assert_eq!(
            (&got.topic[..], &got.payload[..], got.qos),
            (&b"lib/x"[..], payload, qos)
        );
        assert!(!got.retain);
        let got = low.next_publish().await;
        let capped = if qos == QoS::ExactlyOnce {
            QoS::AtLeastOnce
        } else {
            qos
        };
        assert_eq!((&got.payload[..], got.qos), (payload, capped));
    }
    sub.disconnect().await;
    low.disconnect().await;
    publ.disconnect().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_properties_pass_through_the_broker() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use rumqttc::v5::mqttbytes::QoS;
    let (server, addr) = start().await;
    let mut sub = v5::connect(addr, "sub", |_| {}).await;
    sub.subscribe("lib/props", QoS::AtLeastOnce).await;
    let mut publ = v5::connect(addr, "pub", |_| {}).await;
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        response_topic: Some("lib/reply".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x01\x02")),
        user_properties: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    publ.publish_with(
        "lib/props",
        b"hello",
        QoS::AtLeastOnce,
        false,
        Some(properties),
    )
    .await;
    let got = sub.next_publish().await;
    let p = got.properties.expect("properties forwarded");
    assert_eq!(p.payload_format_indicator, Some(1));
    assert!(
        matches!(p.message_expiry_interval, Some(3599..=3600)),
        "{p:?}"
    );
    assert_eq!(p.response_topic.as_deref(), Some("lib/reply"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
    assert_eq!(
        p.user_properties,
        vec![
            ("k".to_string(), "1".to_string()),
            ("k".to_string(), "2".to_string())
        ]
    );
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    sub.disconnect().await;
    publ.disconnect().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_retained_message_reaches_a_later_subscriber_until_cleared() {
    use rumqttc::v5::mqttbytes::QoS;
    let (server, addr) = start().await;
    let mut publ = v5::connect(addr, "pub", |_| {}).await;
    publ.publish("lib/state", b"on", QoS::ExactlyOnce, true)
        .await;

    let mut late = v5::connect(addr, "late", |_| {}).await;
    late.subscribe("lib/#", QoS::ExactlyOnce).await;
    let got = late.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"lib/state"[..], &b"on"[..])
    );
    assert!(got.retain, "retained message sent with RETAIN set");
    assert_eq!(got.qos, QoS::ExactlyOnce);

    publ.publish("lib/state", b"", QoS::AtLeastOnce, true).await;
    assert!(late.next_publish().await.payload.is_empty());
    let mut later = v5::connect(addr, "later", |_| {}).await;
    later.subscribe("lib/#", QoS::AtLeastOnce).await;
    later.expect_no_publish().await;
    publ.disconnect().await;
    late.disconnect().await;
    later.disconnect().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_last_will_is_published_on_abrupt_close_only() {
    use rumqttc::v5::mqttbytes::v5::LastWillProperties;
    use rumqttc::v5::mqttbytes::QoS;
    let (server, addr) = start().await;
    let mut observer = v5::connect(addr, "observer", |_| {}).await;
    observer.subscribe("will/#", QoS::AtLeastOnce).await;

    let polite = v5::connect(addr, "polite", |o| {
        o.set_last_will(v5::will("will/polite", b"gone", None));
    })
    .await;
    polite.disconnect().await;

    let properties = LastWillProperties {
        delay_interval: None,
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: Some("text/plain".into()),
        response_topic: None,
        correlation_data: None,
        user_properties: vec![("why".into(), "crash".into())],
    };
    let rude = v5::connect(addr, "rude", |o| {
        o.set_last_will(v5::will("will/rude", b"lost", Some(properties)));
    })
    .await;
    rude.task.abort();
    let got = observer.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"will/rude"[..], &b"lost"[..])
    );
    let p = got.properties.expect("will properties forwarded");
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        p.user_properties,
        vec![("why".to_string(), "crash".to_string())]
    );
    observer.expect_no_publish().await;
    observer.disconnect().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v311_and_v5_clients_talk_to_each_other() {
    let (server, addr) = start().await;
    let mut old = v311::connect(addr, "old", |_| {}).await;
    old.subscribe("mix/from5", rumqttc::QoS::AtLeastOnce).await;
    let mut new = v5::connect(addr, "new", |_| {}).await;
    new.subscribe("mix/from311", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;

    old.publish(
        "mix/from311",
        b"hi from 3.1.1",
        rumqttc::QoS::ExactlyOnce,
        false,
    )
    .await;
    let got = new.next_publish().await;
    assert_eq!(&got.payload[..], b"hi from 3.1.1");
    assert_eq!(got.qos, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);

    new.publish(
        "mix/from5",
        b"hi from 5",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
    )
    .await;
    let got = old.next_publish().await;
    assert_eq!(&got.payload[..], b"hi from 5");
    old.disconnect().await;
    new.disconnect().await;
    server.shutdown().await;
}
