use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corvus_core::{Delivery, Message};
use mqtt_codec::{MqttString, PacketId, PublishProperties, QoS};

use super::*;
use crate::fs::fault::{FaultFs, Faults};
use crate::keyed::SessionRecord;

const WAIT: Duration = Duration::from_secs(10);

fn message(payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: MqttString::from_static("t"),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: None,
    })
}

fn enqueue(client: &str, m: &Arc<Message>, id: u64) -> Op {
    Op::Enqueue {
        client: client.into(),
        delivery: Delivery {
            message: m.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
            stored_id: Some(id),
        },
    }
}

fn session(client: &str) -> Op {
    Op::PutSession {
        client: client.into(),
        record: SessionRecord {
            expiry_interval: 3600,
            disconnected_at: None,
            pending_will: None,
            last_packet_id: 0,
        },
    }
}

/// Waits until `ticket` is durable; false on timeout.
fn wait_durable(store: &Store, ticket: Ticket, within: Duration) -> bool {
    let mut rx = store.durable();
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if *rx.borrow_and_update() >= ticket {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn a_batch_is_durable_and_recovered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, recovered) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
        assert!(recovered.queues.sessions.is_empty());
        let a = message(b"a");
        let b = message(b"b");
        let (ia, ib) = (store.next_message_id(), store.next_message_id());
        store.submit([session("s")]);
        store.submit([enqueue("s", &a, ia)]);
        let t = store.submit([enqueue("s", &b, ib)]);
        assert!(wait_durable(&store, t, WAIT));
        let t = store.submit([Op::Sent {
            client: "s".into(),
            message: ia,
            packet_id: PacketId::new(7).unwrap(),
        }]);
        assert!(wait_durable(&store, t, WAIT));
    }
    let (store, recovered) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let s = &recovered.queues.sessions["s"];
    assert_eq!(s.inflight.len(), 1);
    assert_eq!(s.inflight[0].packet_id.get(), 7);
    assert_eq!(&s.inflight[0].delivery.message.payload[..], b"a");
    assert_eq!(s.queue.len(), 1);
    assert_eq!(&s.queue[0].delivery.message.payload[..], b"b");
    // Ids handed out after a restart are above every id in the journal.
    assert!(store.next_message_id() > s.queue[0].message_id);
}

#[test]
fn the_queue_of_a_session_without_a_record_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
        let m = message(b"x");
        let id = store.next_message_id();
        store.submit([session("kept"), enqueue("kept", &m, id)]);
        let t = store.submit([enqueue("orphan", &m, id)]);
        assert!(wait_durable(&store, t, WAIT));
    }
    let (_store, recovered) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    assert!(recovered.queues.sessions.contains_key("kept"));
    assert!(!recovered.queues.sessions.contains_key("orphan"));
    assert_eq!(recovered.orphan_deliveries, 1);
}

#[test]
fn a_deleted_session_takes_its_queue_along() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
        let m = message(b"x");
        let id = store.next_message_id();
        store.submit([session("s"), enqueue("s", &m, id)]);
        let t = store.submit([Op::DeleteSession { client: "s".into() }, session("s")]);
        assert!(wait_durable(&store, t, WAIT));
    }
    let (_store, recovered) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    assert_eq!(recovered.state.sessions.len(), 1);
    assert!(recovered.queues.sessions.is_empty());
}

#[test]
fn a_body_is_written_again_when_a_late_delivery_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
        let m = message(b"x");
        let id = store.next_message_id();
        store.submit([session("a"), session("b"), enqueue("a", &m, id)]);
        let t = store.submit([Op::Done {
            client: "a".into(),
            message: id,
        }]);
        assert!(wait_durable(&store, t, WAIT));
        // The body was dropped with a's delivery; b's comes later and still gets it.
        let t = store.submit([enqueue("b", &m, id)]);
        assert!(wait_durable(&store, t, WAIT));
        assert_eq!(store.stats().refused.load(Ordering::Relaxed), 0);
    }
    let (_store, recovered) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    assert_eq!(recovered.queues.sessions["b"].queue.len(), 1);
    assert!(!recovered.queues.sessions.contains_key("a"));
}

#[test]
fn many_submissions_share_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    store.submit([session("s")]);
    let m = message(b"x");
    let mut last = 0;
    for _ in 0..2000 {
        let id = store.next_message_id();
        last = store.submit([enqueue("s", &m, id)]);
    }
    assert!(wait_durable(&store, last, WAIT));
    let syncs = store.stats().syncs.load(Ordering::Relaxed);
    // Tickets are batches: 2000 submissions went into far fewer batches than submissions.
    assert!(last < 2000, "tickets {last}");
    assert!(syncs <= last, "syncs {syncs} > batches {last}");
}

/// A failed fsync is never reported durable; the batch is written again and becomes
/// durable once the disk recovers, and the failure is reported meanwhile.
#[test]
fn a_failed_sync_is_never_acknowledged() {
    let fs = FaultFs::new();
    let root = tempfile::tempdir().unwrap();
    // Keyed state on the real disk, the journal on the faulty one.
    let state_dir = root.path();
    let (store, _) =
        Store::open_with(Arc::new(fs.clone()), state_dir, StoreOptions::default(), 0).unwrap();
    let t = store.submit([session("s")]);
    assert!(wait_durable(&store, t, WAIT));
    fs.set_faults(Faults {
        fail_syncs: 3,
        ..Faults::default()
    });
    let m = message(b"must not be acknowledged early");
    let id = store.next_message_id();
    let t = store.submit([enqueue("s", &m, id)]);
    // While syncs fail, the ticket is not durable and the error is visible.
    let deadline = std::time::Instant::now() + WAIT;
    while store.last_error().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let error = store.last_error().expect("the failure is reported");
    assert!(error.contains("injected fault"), "{error}");
    assert!(*store.durable().borrow() < t);
    // The faults run out: the same batch is written again and becomes durable.
    assert!(wait_durable(&store, t, WAIT));
    assert!(store.last_error().is_none());
    assert!(store.stats().errors.load(Ordering::Relaxed) >= 1);
    drop(store);
    // What was acknowledged is on the (faulty) disk.
    let (_store, recovered) =
        Store::open_with(Arc::new(fs), state_dir, StoreOptions::default(), 0).unwrap();
    assert_eq!(recovered.queues.sessions["s"].queue.len(), 1);
}

#[test]
fn enospc_and_short_writes_are_retried_not_acknowledged() {
    for faults in [
        Faults {
            space_left: Some(10),
            ..Faults::default()
        },
        Faults {
            short_write: Some(5),
            ..Faults::default()
        },
    ] {
        let fs = FaultFs::new();
        let root = tempfile::tempdir().unwrap();
        let (store, _) = Store::open_with(
            Arc::new(fs.clone()),
            root.path(),
            StoreOptions::default(),
            0,
        )
        .unwrap();
        let t = store.submit([session("s")]);
        assert!(wait_durable(&store, t, WAIT));
        fs.set_faults(faults.clone());
        let m = message(b"0123456789012345678901234567890123456789");
        let id = store.next_message_id();
        let t = store.submit([enqueue("s", &m, id)]);
        let deadline = std::time::Instant::now() + WAIT;
        while store.last_error().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(store.last_error().is_some(), "{faults:?}");
        assert!(*store.durable().borrow() < t, "{faults:?}");
        // Space comes back.
        fs.set_faults(Faults::default());
        assert!(wait_durable(&store, t, WAIT), "{faults:?}");
    }
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join(crate::QUEUE_DIR))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .count()
}

/// Acknowledged deliveries free their segments, while the store is busy or idle; a few
/// long-queued ones are copied forward rather than pinning old segments.
#[test]
fn space_is_reclaimed_as_deliveries_finish() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_message: 1024,
        segment_size: 0,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir.path(), options.clone(), 0).unwrap();
    store.submit([session("s")]);
    let body = Arc::new(Message {
        payload: Bytes::from(vec![7u8; 900]),
        ..(*message(b"")).clone()
    });
    let mut ids = Vec::new();
    let mut last = 0;
    for _ in 0..4000 {
        let id = store.next_message_id();
        ids.push(id);
        last = store.submit([enqueue("s", &body, id)]);
    }
    assert!(wait_durable(&store, last, WAIT));
    let before = segment_files(dir.path());
    assert!(before >= 5, "{before} segments");
    // All but the very first are acknowledged: that one pins the oldest segment.
    for &id in &ids[1..] {
        last = store.submit([Op::Done {
            client: "s".into(),
            message: id,
        }]);
    }
    assert!(wait_durable(&store, last, WAIT));
    let deadline = std::time::Instant::now() + WAIT;
    while segment_files(dir.path()) > 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = segment_files(dir.path());
    assert!(after <= 2, "{before} segments before, {after} after");
    drop(store);
    // The pinned delivery was carried forward, not lost.
    let (_store, recovered) = Store::open(dir.path(), options, 0).unwrap();
    let queue = &recovered.queues.sessions["s"].queue;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].message_id, ids[0]);
}
