//! Memory stays bounded: the queued messages of an offline session live on disk, not in
//! RAM, and come back from the store a window at a time when the client returns.
//!
//! This binary holds one test, so the process's resident memory (read from
//! `/proc/self/status`) is the broker's and this test's alone. 128 MiB are queued for an
//! offline session (with `sync = interval`, so that nothing but the store's own backpressure
//! slows the publisher); the process's resident memory may grow by less than half of that
//! while they are queued and while they are drained (in one run: 39 MiB and 23-32 MiB).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use corvus_server::config::SyncName;
use mqtt_codec::{Ack, Packet, ProtocolVersion, Publish, QoS};

const MESSAGES: usize = 1024;
const PAYLOAD: usize = 128 * 1024;
/// How much resident memory may grow while 128 MiB are queued (or drained): half of it.
/// Bodies held in memory would take all of it and more; what the broker does hold is the
/// store's bounded write-behind (`BACKLOG_LIMIT`, the journal's unsynced batch) and the
/// read-back window, with the allocator's slack.
const GROWTH_LIMIT: u64 = (MESSAGES * PAYLOAD / 2) as u64;

/// Resident memory of this process in bytes; `None` where `/proc` does not say.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn payload(i: usize) -> Bytes {
    let mut p = vec![(i % 251) as u8; PAYLOAD];
    p[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Bytes::from(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_of_an_offline_session_stay_on_disk() {
    let Some(baseline) = rss() else {
        eprintln!("skipping: /proc/self/status has no VmRSS on this system");
        return;
    };
    let dir = fresh_data_dir();
    let data_dir = dir.clone();
    let (server, addr) = start_with(move |c| {
        c.data_dir = data_dir;
        c.limits.max_packet_size = 1024 * 1024;
        c.limits.max_queued_messages = 10 * MESSAGES;
        c.limits.max_queued_bytes = 4 * MESSAGES * PAYLOAD;
        // Acknowledgements need not wait for the disk here: this test is about memory.
        c.store.sync = SyncName::Interval;
    })
    .await;
    let (mut sub, _) = Raw::connect_with(addr, ProtocolVersion::V5, "far", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    sub.subscribe(1, "m/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    wait_offline(&server, "far").await;

    let mut publ = Raw::connect(addr, ProtocolVersion::V5, "source").await;
    let mut peak = 0;
    for i in 0..MESSAGES {
        let mut publish = Publish::new(s("m/big"), payload(i));
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = Some(pid((i % 60_000 + 1) as u16));
        publ.publish_packet(publish).await;
        if i % 64 == 0 {
            peak = peak.max(rss().unwrap_or(0));
        }
    }
    {
        let handle = server.broker().session("far").expect("the session exists");
        let session = handle.lock();
        assert_eq!(session.queued_len(), MESSAGES);
        assert_eq!(session.queued_bytes(), MESSAGES * PAYLOAD);
        assert_eq!(
            session.queued_on_disk(),
            MESSAGES,
            "no body is held in memory"
        );
    }
    let queued = rss().unwrap_or(0).max(peak);
    assert!(
        queued.saturating_sub(baseline) < GROWTH_LIMIT,
        "resident memory grew by {} MiB while {} MiB were queued",
        queued.saturating_sub(baseline) >> 20,
        (MESSAGES * PAYLOAD) >> 20
    );

    // The client returns: everything arrives, in order, read back a window at a time.
    let (mut sub, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "far", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    assert!(ack.session_present);
    let mut peak = 0;
    for i in 0..MESSAGES {
        let publish = match sub.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected message {i}, got {other:?}"),
        };
        assert_eq!(publish.payload.len(), PAYLOAD);
        assert_eq!(
            publish.payload[..8],
            (i as u64).to_be_bytes(),
            "message {i} in order"
        );
        if let Some(id) = publish.packet_id {
            sub.send(Packet::PubAck(Ack::new(id))).await;
        }
        if i % 64 == 0 {
            peak = peak.max(rss().unwrap_or(0));
        }
    }
    assert_nothing_queued(&mut sub).await;
    assert!(
        peak.saturating_sub(baseline) < GROWTH_LIMIT,
        "resident memory grew by {} MiB while {} MiB were drained",
        peak.saturating_sub(baseline) >> 20,
        (MESSAGES * PAYLOAD) >> 20
    );
    eprintln!(
        "{} MiB queued for an offline session: resident memory grew by {} MiB while queued, \
         {} MiB while drained",
        (MESSAGES * PAYLOAD) >> 20,
        queued.saturating_sub(baseline) >> 20,
        peak.saturating_sub(baseline) >> 20
    );
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
