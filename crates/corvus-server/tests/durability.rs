//! What survives a restart of the broker on the same data directory: persistent sessions
//! with their expiry, subscriptions with options and identifiers, retained messages, queued
//! and in-flight messages (with packet ids and in order), inbound QoS 2 ids awaiting PUBREL
//! and pending wills; expiry that keeps counting while the broker is down; sessions that end
//! with their connection leave nothing in the store; and, on a file layer that fails, a QoS 1
//! message is not acknowledged until it is on disk. Crashes (SIGKILL) of the real binary are
//! in `crates/corvus/tests/crash.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use corvus_core::DropReason;
use corvus_server::config::SyncName;
use corvus_server::{Config, Server, Store};
use corvus_store::fs::fault::{FaultFs, Faults};
use mqtt_codec::{
    Ack, ConnAck, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions, Will,
    WillProperties,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

async fn start_in(dir: &Path) -> (Server, SocketAddr) {
    let dir = dir.to_path_buf();
    start_with(move |c| c.data_dir = dir).await
}

async fn persistent(addr: SocketAddr, client_id: &str, expiry: u32) -> (Raw, ConnAck) {
    Raw::connect_with(addr, V5, client_id, |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(expiry);
    })
    .await
}

/// A persistent session (expiry 3600 s) subscribed to `filter`, then offline.
async fn offline_subscriber(server: &Server, addr: SocketAddr, id: &str, filter: &str, qos: QoS) {
    let (mut sub, _) = persistent(addr, id, 3600).await;
    sub.subscribe(1, filter, qos).await;
    sub.disconnect().await;
    wait_offline(server, id).await;
}

/// The broker's PUBREC for QoS 2 packet `id`.
async fn expect_pubrec(publ: &mut Raw, id: u16) {
    match publ.recv().await {
        Packet::PubRec(rec) => assert_eq!(rec.packet_id, pid(id)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
}

/// PUBREL for QoS 2 packet `id`, answered by a successful PUBCOMP.
async fn release(publ: &mut Raw, id: u16) {
    publ.send(Packet::PubRel(Ack::new(pid(id)))).await;
    match publ.recv().await {
        Packet::PubComp(comp) => assert_eq!(comp.reason_code, ReasonCode::Success),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

async fn restart(server: Server, dir: &Path) -> (Server, SocketAddr) {
    server.shutdown().await;
    start_in(dir).await
}

fn payloads(publishes: &[Publish]) -> Vec<Vec<u8>> {
    publishes.iter().map(|p| p.payload.to_vec()).collect()
}

/// Reconnects persistent session `id` (expiry 3600 s), which must still be there.
async fn resume(addr: SocketAddr, id: &str) -> Raw {
    let (raw, ack) = persistent(addr, id, 3600).await;
    assert!(
        ack.session_present,
        "{id}: the session survived the restart"
    );
    raw
}

/// The recovery summary of `server` says `what`.
fn assert_recovered(server: &Server, what: &str) {
    let summary = server.recovery_summary().expect("a recovery summary");
    assert!(summary.contains(what), "{what:?} not in {summary:?}");
}

/// A PUBLISH at `qos` (1 or 2) with packet id `id`.
fn publish_with_id(topic: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    let mut publish = Publish::new(s(topic), Bytes::from_static(payload));
    publish.qos = qos;
    publish.packet_id = Some(pid(id));
    publish
}

/// A QoS 1 PUBLISH with packet id `id` whose message expires after one second.
fn expiring_in_1s(topic: &str, payload: &'static [u8], id: u16) -> Publish {
    let mut publish = publish_with_id(topic, payload, QoS::AtLeastOnce, id);
    publish.properties.message_expiry_interval = Some(1);
    publish
}

/// A config for a broker on a free loopback port with its data in `dir`.
fn config_in(dir: &Path) -> Config {
    Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// A broker for `config` whose store is opened on the file layer `fs`, and its address.
async fn start_on(fs: &FaultFs, config: &Config) -> (Server, SocketAddr) {
    let store = Store::open_with(
        Arc::new(fs.clone()),
        &config.data_dir,
        config.store.options(&config.limits),
        corvus_server::clock::now(),
    )
    .expect("store opens");
    let server = Server::start_with_store(config, Some(store)).await.unwrap();
    let addr = server.local_addrs()[0];
    (server, addr)
}

#[tokio::test]
async fn a_persistent_session_and_its_subscriptions_survive_a_restart() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let (mut sub, ack) = persistent(addr, "keeper", 3600).await;
    assert!(!ack.session_present);
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        ..Default::default()
    };
    sub.subscribe_with(1, "d/#", options, Some(7)).await;
    sub.disconnect().await;
    wait_offline(&server, "keeper").await;

    let (server, addr) = restart(server, &dir).await;
    assert_recovered(&server, "recovered 1 session,");
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    publ.publish("d/x", b"kept", QoS::ExactlyOnce, true, 1)
        .await;
    let mut sub = resume(addr, "keeper").await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"kept");
    assert_eq!(got.qos, QoS::ExactlyOnce, "the subscription's QoS survived");
    assert!(got.retain, "Retain As Published survived");
    assert_eq!(got.properties.subscription_identifiers, vec![7]);
    // No Local survived: the subscriber's own message does not come back.
    sub.publish("d/own", b"mine", QoS::AtLeastOnce, false, 2)
        .await;
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn queued_messages_survive_a_restart_in_order() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    offline_subscriber(&server, addr, "offline", "q/#", QoS::ExactlyOnce).await;
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    let mut sent = Vec::new();
    for i in 0..40u16 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let payload = format!("m{i}").into_bytes();
        publ.publish("q/t", &payload, qos, false, i + 1).await;
        sent.push(payload);
    }
    drop(publ);

    let (server, addr) = restart(server, &dir).await;
    let mut sub = resume(addr, "offline").await;
    let got = recv_publishes_acked(&mut sub, sent.len()).await;
    assert_eq!(payloads(&got), sent, "every queued message, once, in order");
    sub.expect_nothing().await;
    // And they are gone from the store once acknowledged: another restart brings none back.
    sub.disconnect().await;
    wait_offline(&server, "offline").await;
    let (server, addr) = restart(server, &dir).await;
    let (mut sub, _) = persistent(addr, "offline", 3600).await;
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn inflight_messages_come_back_with_their_packet_ids_and_pubrel_state() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let (mut sub, _) = persistent(addr, "slow", 3600).await;
    sub.subscribe(1, "f/#", QoS::ExactlyOnce).await;
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    publ.publish("f/1", b"one", QoS::AtLeastOnce, false, 1)
        .await;
    publ.publish("f/2", b"two", QoS::ExactlyOnce, false, 2)
        .await;
    publ.publish("f/3", b"three", QoS::ExactlyOnce, false, 3)
        .await;
    let first = next_publish_unacked(&mut sub).await;
    let second = next_publish_unacked(&mut sub).await;
    let third = next_publish_unacked(&mut sub).await;
    // The third gets its PUBREC: the broker now owes a PUBREL for it.
    let third_id = third.packet_id.expect("QoS 2 has an id");
    sub.send(Packet::PubRec(Ack::new(third_id))).await;
    match sub.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.packet_id, third_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(sub);
    wait_offline(&server, "slow").await;

    let (server, addr) = restart(server, &dir).await;
    let mut sub = resume(addr, "slow").await;
    let again1 = next_publish_unacked(&mut sub).await;
    let again2 = next_publish_unacked(&mut sub).await;
    for (before, after) in [(&first, &again1), (&second, &again2)] {
        assert!(after.dup, "a re-send carries DUP");
        assert_eq!(after.packet_id, before.packet_id, "with the same packet id");
        assert_eq!(after.payload, before.payload);
        assert_eq!(after.qos, before.qos);
    }
    match sub.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.packet_id, third_id, "PUBREL owed, not the message"),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send(Packet::PubComp(Ack::new(third_id))).await;
    sub.ack(&again1).await;
    sub.ack(&again2).await;
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_qos2_message_awaiting_pubrel_is_not_delivered_twice_after_a_restart() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let mut sub = Raw::connect(addr, V5, "watcher").await;
    sub.subscribe(1, "x/#", QoS::ExactlyOnce).await;
    let (mut publ, _) = persistent(addr, "qos2-pub", 3600).await;
    let mut publish = publish_with_id("x/once", b"exactly once", QoS::ExactlyOnce, 9);
    publ.send(publish.clone().into()).await;
    expect_pubrec(&mut publ, 9).await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"exactly once");
    drop(publ);
    drop(sub);
    wait_offline(&server, "qos2-pub").await;

    let (server, addr) = restart(server, &dir).await;
    let mut sub = Raw::connect(addr, V5, "watcher").await;
    sub.subscribe(1, "x/#", QoS::ExactlyOnce).await;
    let mut publ = resume(addr, "qos2-pub").await;
    // The publisher never saw PUBCOMP, so it sends the PUBLISH again with DUP.
    publish.dup = true;
    publ.send(publish.into()).await;
    expect_pubrec(&mut publ, 9).await;
    release(&mut publ, 9).await;
    sub.expect_nothing().await;
    server.shutdown().await;
}

/// A QoS 2 PUBLISH from a persistent session is stored as one record with its packet id and
/// every queued copy, including two copies for a session whose shared and non-shared
/// subscriptions both match (MQTT 5.0 section 4.8.2): after a restart the copies are all
/// there, once each, and the publisher's re-send is recognised and not routed again.
#[tokio::test]
async fn a_qos2_publish_keeps_its_packet_id_and_every_copy_across_a_restart() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let (mut both, _) = persistent(addr, "both", 3600).await;
    both.subscribe(1, "q/#", QoS::ExactlyOnce).await;
    both.subscribe(2, "$share/g/q/#", QoS::ExactlyOnce).await;
    both.disconnect().await;
    wait_offline(&server, "both").await;
    offline_subscriber(&server, addr, "other", "q/+", QoS::AtLeastOnce).await;
    let (mut publ, _) = persistent(addr, "q2-pub", 3600).await;
    let mut publish = publish_with_id("q/x", b"twice for both", QoS::ExactlyOnce, 5);
    publ.send(publish.clone().into()).await;
    expect_pubrec(&mut publ, 5).await;
    drop(publ);
    wait_offline(&server, "q2-pub").await;

    let (server, addr) = restart(server, &dir).await;
    assert_recovered(&server, "3 queued and 0 in-flight");
    let mut publ = resume(addr, "q2-pub").await;
    publish.dup = true;
    publ.send(publish.into()).await;
    expect_pubrec(&mut publ, 5).await;
    release(&mut publ, 5).await;
    let (mut both, _) = persistent(addr, "both", 3600).await;
    let got = recv_publishes_acked(&mut both, 2).await;
    assert_eq!(
        payloads(&got),
        [b"twice for both".to_vec(), b"twice for both".to_vec()]
    );
    assert!(got.iter().all(|p| p.qos == QoS::ExactlyOnce));
    assert_nothing_queued(&mut both).await;
    let (mut other, _) = persistent(addr, "other", 3600).await;
    let got = recv_publishes_acked(&mut other, 1).await;
    assert_eq!(
        (got[0].qos, &got[0].payload[..]),
        (QoS::AtLeastOnce, &b"twice for both"[..])
    );
    assert_nothing_queued(&mut other).await;
    server.shutdown().await;
}

#[tokio::test]
async fn retained_messages_survive_and_their_expiry_counts_while_the_broker_is_down() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    publ.publish("r/forever", b"kept", QoS::AtLeastOnce, true, 1)
        .await;
    let mut brief = expiring_in_1s("r/brief", b"gone", 2);
    brief.retain = true;
    publ.publish_packet(brief).await;
    publ.publish("r/cleared", b"x", QoS::AtLeastOnce, true, 3)
        .await;
    publ.publish("r/cleared", b"", QoS::AtLeastOnce, true, 4)
        .await;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (server, addr) = start_in(&dir).await;
    assert_recovered(
        &server,
        "expired while stopped: 0 sessions, 1 retained message",
    );
    let mut sub = Raw::connect(addr, V5, "reader").await;
    sub.subscribe(1, "r/#", QoS::AtLeastOnce).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.topic, "r/forever");
    assert!(got.retain);
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_queued_message_that_expired_while_the_broker_was_down_is_not_delivered() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    offline_subscriber(&server, addr, "offline", "x/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    publ.publish_packet(expiring_in_1s("x/brief", b"expires", 1))
        .await;
    publ.publish("x/kept", b"kept", QoS::AtLeastOnce, false, 2)
        .await;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (server, addr) = start_in(&dir).await;
    let mut sub = resume(addr, "offline").await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"kept");
    sub.expect_nothing().await;
    server.shutdown().await;
}

/// A message that expires in the queue of an offline session leaves it then, not when the
/// client returns: it is counted, and its delivery is finished in the journal (so its space
/// can be reclaimed) while the session stays offline.
#[tokio::test]
async fn a_message_expiring_in_an_offline_queue_is_dropped_while_the_client_is_away() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    offline_subscriber(&server, addr, "away", "x/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    publ.publish("x/kept", b"kept", QoS::AtLeastOnce, false, 1)
        .await;
    publ.publish_packet(expiring_in_1s("x/brief", b"expires", 2))
        .await;
    let handle = server.broker().session("away").unwrap();
    assert_eq!(handle.lock().queued_len(), 2);
    let store = server.broker().store().unwrap().clone();
    let ops_before = store.stats().ops.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.lock().queued_len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dropped while offline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handle.lock().counters.dropped(DropReason::Expired), 1);
    assert!(
        store.stats().ops.load(Ordering::Relaxed) > ops_before,
        "its Done was written"
    );
    // Nothing is left for the restart to expire: only the kept message comes back.
    let (server, addr) = restart(server, &dir).await;
    assert_recovered(&server, "1 queued");
    let (mut sub, _) = persistent(addr, "away", 3600).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"kept");
    sub.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_that_expired_while_the_broker_was_down_is_gone() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let (mut sub, _) = persistent(addr, "brief", 1).await;
    sub.subscribe(1, "e/#", QoS::AtLeastOnce).await;
    let (mut long, _) = persistent(addr, "long", 3600).await;
    long.subscribe(1, "e/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    long.disconnect().await;
    wait_offline(&server, "brief").await;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let (server, addr) = start_in(&dir).await;
    let (_sub, ack) = persistent(addr, "brief", 1).await;
    assert!(!ack.session_present, "expired while the broker was down");
    let _long = resume(addr, "long").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_pending_will_survives_a_restart_and_fires_when_due() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let will = Will {
        topic: s("w/late"),
        payload: Bytes::from_static(b"gone for good"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(2),
            ..Default::default()
        },
    };
    let (raw, _) = Raw::connect_with(addr, V5, "mortal", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
        c.will = Some(will);
    })
    .await;
    drop(raw);
    wait_offline(&server, "mortal").await;

    let (server, addr) = restart(server, &dir).await;
    let mut watcher = Raw::connect(addr, V5, "watcher").await;
    watcher.subscribe(1, "w/#", QoS::AtLeastOnce).await;
    let got = match watcher.try_recv(Duration::from_secs(6)).await {
        Ok(Some(Packet::Publish(p))) => p,
        other => panic!("expected the will, got {other:?}"),
    };
    assert_eq!(&got.payload[..], b"gone for good");
    server.shutdown().await;
}

#[tokio::test]
async fn sessions_that_end_with_their_connection_write_nothing() {
    let dir = fresh_data_dir();
    let (server, addr) = start_in(&dir).await;
    let store = server.broker().store().expect("a store").clone();
    let mut sub = Raw::connect(addr, V5, "clean-sub").await;
    sub.subscribe(1, "c/#", QoS::ExactlyOnce).await;
    let mut publ = Raw::connect(addr, V5, "clean-pub").await;
    for i in 0..20u16 {
        let qos = [QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(i % 2)];
        publ.publish("c/t", b"x", qos, false, i + 1).await;
        sub.recv_publish().await;
    }
    sub.disconnect().await;
    publ.disconnect().await;
    // Their sessions ended with the connections, and nothing was written for them.
    tokio::time::sleep(QUIET).await;
    assert!(server.broker().session("clean-sub").is_none());
    assert_eq!(store.stats().ops.load(Ordering::Relaxed), 0);
    server.shutdown().await;
}

/// With the journal on a file layer whose fsyncs fail, a QoS 1 message for a persistent
/// session is not acknowledged; once the disk recovers, it is, and it survives a restart.
#[tokio::test]
async fn a_message_is_not_acknowledged_while_the_disk_fails() {
    let fs = FaultFs::new();
    let config = config_in(&fresh_data_dir());
    let (server, addr) = start_on(&fs, &config).await;
    offline_subscriber(&server, addr, "durable", "disk/#", QoS::AtLeastOnce).await;

    fs.set_faults(Faults {
        fail_syncs: u32::MAX,
        ..Faults::default()
    });
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    let publish = publish_with_id("disk/t", b"on disk first", QoS::AtLeastOnce, 1);
    publ.send(publish.into()).await;
    publ.expect_nothing().await;
    let store = server.broker().store().unwrap().clone();
    let error = store.last_error().expect("the failure is reported");
    assert!(error.contains("injected fault"), "{error}");

    fs.set_faults(Faults::default());
    match publ.recv().await {
        Packet::PubAck(ack) => assert_eq!(ack.packet_id, pid(1)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert!(store.last_error().is_none());
    drop(publ);
    drop(store);
    server.shutdown().await;

    let (server, addr) = start_on(&fs, &config).await;
    let (mut sub, _) = persistent(addr, "durable", 3600).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"on disk first");
    server.shutdown().await;
}

/// A queued message whose body was damaged on disk while its client was away is dropped
/// when the client returns, counted as `store_lost`; the messages around it are delivered.
#[tokio::test]
async fn a_body_damaged_on_disk_is_dropped_and_counted_and_the_rest_delivered() {
    let fs = FaultFs::new();
    let (server, addr) = start_on(&fs, &config_in(&fresh_data_dir())).await;
    offline_subscriber(&server, addr, "fragile", "dmg/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(addr, V5, "publisher").await;
    for (i, payload) in ["first", "second: damaged on disk", "third"]
        .iter()
        .enumerate()
    {
        publ.publish(
            "dmg/t",
            payload.as_bytes(),
            QoS::AtLeastOnce,
            false,
            i as u16 + 1,
        )
        .await;
    }
    // The body lives only on disk now: damage it there.
    let segment = fs
        .paths()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a queue segment");
    let mut bytes = fs.contents(&segment).unwrap();
    let needle = b"damaged on disk";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the body is in the segment");
    bytes[at] ^= 0xFF;
    fs.put(&segment, &bytes);

    let (mut sub, _) = persistent(addr, "fragile", 3600).await;
    let got = recv_publishes_acked(&mut sub, 2).await;
    assert_eq!(payloads(&got), [b"first".to_vec(), b"third".to_vec()]);
    assert_nothing_queued(&mut sub).await;
    let handle = server.broker().session("fragile").unwrap();
    assert_eq!(handle.lock().counters.dropped(DropReason::StoreLost), 1);
    assert_eq!(server.broker().metrics.dropped(DropReason::StoreLost), 1);
    let store = server.broker().store().unwrap();
    assert_eq!(store.stats().bodies_lost.load(Ordering::Relaxed), 1);
    server.shutdown().await;
}

/// Under `never` (and `interval`), acknowledgements do not wait for the disk.
#[tokio::test]
async fn without_sync_always_acknowledgements_do_not_wait_for_the_disk() {
    for sync in [SyncName::Never, SyncName::Interval] {
        let fs = FaultFs::new();
        let mut config = config_in(&fresh_data_dir());
        config.store.sync = sync;
        config.store.sync_interval_ms = 50;
        let (server, addr) = start_on(&fs, &config).await;
        let (mut sub, _) = persistent(addr, "durable", 3600).await;
        sub.subscribe(1, "disk/#", QoS::AtLeastOnce).await;
        fs.set_faults(Faults {
            fail_syncs: u32::MAX,
            ..Faults::default()
        });
        let mut publ = Raw::connect(addr, V5, "publisher").await;
        let code = publ
            .publish("disk/t", b"x", QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(code, ReasonCode::Success, "{sync:?}");
        assert_eq!(&sub.recv_publish().await.payload[..], b"x");
        fs.set_faults(Faults::default());
        server.shutdown().await;
    }
}
