use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corvus_core::{Delivery, Message};
use mqtt_codec::{MqttString, PacketId, PublishProperties, QoS};

use super::*;
use crate::fs::fault::{FaultFs, Faults};
use crate::keyed::SessionRecord;

const WAIT: Duration = Duration::from_secs(10);

fn message(payload: &[u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: MqttString::from_static("t"),
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: None,
        received_at: None,
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
            received_at: None,
        },
    }
}

fn session(client: &str) -> Op {
    Op::PutSession {
        client: client.into(),
        record: SessionRecord {
            expiry_interval: 3600,
            disconnected_at: None,
            armed_will: None,
            pending_will: None,
            last_packet_id: 0,
            principal: None,
        },
    }
}

/// A store whose journal is on a fault-injecting file layer (the keyed state on the real
/// disk, in `root`), with session "s" already durable.
fn faulty_store(root: &std::path::Path) -> (FaultFs, Store) {
    let fs = FaultFs::new();
    let (store, _) =
        Store::open_with(Arc::new(fs.clone()), root, StoreOptions::default(), 0).unwrap();
    let t = store.submit([session("s")]);
    assert!(store.wait_durable(t, WAIT));
    (fs, store)
}

/// Waits until the store reports a failing write.
fn wait_for_error(store: &Store) {
    let deadline = std::time::Instant::now() + WAIT;
    while store.last_error().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(store.last_error().is_some(), "no failure reported");
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
        assert!(store.wait_durable(t, WAIT));
        let t = store.submit([Op::Sent {
            client: "s".into(),
            message: ia,
            packet_id: PacketId::new(7).unwrap(),
        }]);
        assert!(store.wait_durable(t, WAIT));
    }
    let (store, recovered) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let s = &recovered.queues.sessions["s"];
    assert_eq!(s.inflight.len(), 1);
    assert_eq!(s.inflight[0].packet_id.get(), 7);
    assert_eq!(&s.inflight[0].delivery.message.payload[..], b"a");
    assert_eq!(s.queue.len(), 1);
    assert_eq!(s.queue[0].delivery.payload_len, 1);
    // The queued body stays on disk until asked for.
    let bodies = store
        .read_bodies(vec![s.queue[0].message_id])
        .blocking_recv()
        .unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(&bodies[0].1.as_ref().unwrap().payload[..], b"b");
    // Ids handed out after a restart are above every id in the journal.
    assert!(store.next_message_id() > s.queue[0].message_id);
}

/// When the state database is damaged and quarantined, the sessions it held are lost, but
/// their queues in the journal are intact: they are kept, in sessions rebuilt for them (with
/// the configured expiry, without subscriptions), and reported.
#[test]
fn queues_outlive_a_state_database_lost_to_damage() {
    let dir = tempfile::tempdir().unwrap();
    let m = message(b"still here");
    let id;
    {
        let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
        id = store.next_message_id();
        let t = store.submit([session("s"), enqueue("s", &m, id)]);
        assert!(store.wait_durable(t, WAIT));
    }
    let db = dir
        .path()
        .join(crate::STATE_DIR)
        .join(crate::keyed::STATE_FILE);
    std::fs::write(&db, vec![0x5Au8; 8192]).unwrap();
    let options = StoreOptions {
        adopted_session_expiry: 600,
        ..StoreOptions::default()
    };
    let (store, recovered) = Store::open(dir.path(), options.clone(), 1_000).unwrap();
    assert!(recovered.state_open.quarantined.is_some());
    assert_eq!(recovered.adopted, [ClientId::from("s")]);
    let sessions = &recovered.state.sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].record.expiry_interval, 600);
    assert_eq!(sessions[0].record.disconnected_at, Some(1_000));
    assert_eq!(recovered.queues.sessions["s"].queue[0].message_id, id);
    let warnings = recovered.warnings().join("\n");
    assert!(
        warnings.contains("1 queue kept for sessions whose records were lost"),
        "{warnings}"
    );
    let bodies = store.read_bodies(vec![id]).blocking_recv().unwrap();
    assert_eq!(&bodies[0].1.as_ref().unwrap().payload[..], b"still here");
    drop(store);
    // The rebuilt session is recorded: the next start finds it, with its queue.
    let (_store, recovered) = Store::open(dir.path(), options, 2_000).unwrap();
    assert!(recovered.adopted.is_empty());
    assert_eq!(recovered.state.sessions[0].client_id.as_ref(), "s");
    assert_eq!(recovered.queues.sessions["s"].queue.len(), 1);
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
        assert!(store.wait_durable(t, WAIT));
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
        assert!(store.wait_durable(t, WAIT));
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
        assert!(store.wait_durable(t, WAIT));
        // The body was dropped with a's delivery; b's comes later and still gets it.
        let t = store.submit([enqueue("b", &m, id)]);
        assert!(store.wait_durable(t, WAIT));
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
    assert!(store.wait_durable(last, WAIT));
    let syncs = store.sync_latency().count();
    // Tickets are batches: 2000 submissions went into far fewer batches than submissions.
    assert!(last < 2000, "tickets {last}");
    assert!(syncs <= last, "syncs {syncs} > batches {last}");
}

/// A failed fsync is never reported durable; the batch is written again and becomes
/// durable once the disk recovers, and the failure is reported meanwhile.
#[test]
fn a_failed_sync_is_never_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let (fs, store) = faulty_store(root.path());
    fs.set_faults(Faults {
        fail_syncs: 3,
        ..Faults::default()
    });
    let m = message(b"must not be acknowledged early");
    let id = store.next_message_id();
    let t = store.submit([enqueue("s", &m, id)]);
    // While syncs fail, the ticket is not durable and the error is visible.
    wait_for_error(&store);
    let error = store.last_error().expect("the failure is reported");
    assert!(error.contains("injected fault"), "{error}");
    assert!(*store.durable().borrow() < t);
    // The faults run out: the same batch is written again and becomes durable.
    assert!(store.wait_durable(t, WAIT));
    assert!(store.last_error().is_none());
    assert!(store.stats().errors.load(Ordering::Relaxed) >= 1);
    drop(store);
    // What was acknowledged is on the (faulty) disk.
    let (_store, recovered) =
        Store::open_with(Arc::new(fs), root.path(), StoreOptions::default(), 0).unwrap();
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
        let root = tempfile::tempdir().unwrap();
        let (fs, store) = faulty_store(root.path());
        fs.set_faults(faults.clone());
        let m = message(b"0123456789012345678901234567890123456789");
        let id = store.next_message_id();
        let t = store.submit([enqueue("s", &m, id)]);
        wait_for_error(&store);
        assert!(*store.durable().borrow() < t, "{faults:?}");
        // Space comes back.
        fs.set_faults(Faults::default());
        assert!(store.wait_durable(t, WAIT), "{faults:?}");
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
    assert!(store.wait_durable(last, WAIT));
    let before = segment_files(dir.path());
    assert!(before >= 5, "{before} segments");
    // All but the very first are acknowledged: that one pins the oldest segment.
    for &id in &ids[1..] {
        last = store.submit([Op::Done {
            client: "s".into(),
            message: id,
        }]);
    }
    assert!(store.wait_durable(last, WAIT));
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

// ---- reading bodies back ----

type Answer = Vec<(u64, Option<Arc<Message>>)>;

/// Waits for an answer to `read_bodies`: `Some(Ok)` answered, `Some(Err)` refused (sender
/// dropped), `None` still waiting after `within`.
fn recv_within(
    rx: &mut tokio::sync::oneshot::Receiver<Answer>,
    within: Duration,
) -> Option<Result<Answer, ()>> {
    use tokio::sync::oneshot::error::TryRecvError;
    let deadline = std::time::Instant::now() + within;
    loop {
        match rx.try_recv() {
            Ok(answer) => return Some(Ok(answer)),
            Err(TryRecvError::Closed) => return Some(Err(())),
            Err(TryRecvError::Empty) if std::time::Instant::now() >= deadline => return None,
            Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn payloads(answer: &Answer) -> Vec<(u64, Option<&[u8]>)> {
    answer
        .iter()
        .map(|(id, m)| (*id, m.as_ref().map(|m| &m.payload[..])))
        .collect()
}

#[test]
fn read_bodies_right_after_submit_finds_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let m = message(b"just enqueued");
    let id = store.next_message_id();
    store.submit([session("s"), enqueue("s", &m, id)]);
    let mut rx = store.read_bodies(vec![id]);
    let answer = recv_within(&mut rx, WAIT)
        .expect("answered")
        .expect("not refused");
    assert_eq!(payloads(&answer), [(id, Some(&b"just enqueued"[..]))]);
    assert_eq!(store.stats().bodies_read.load(Ordering::Relaxed), 1);
    assert_eq!(store.stats().bodies_lost.load(Ordering::Relaxed), 0);
    // The store let go of it: only the test and the answer hold the message.
    drop(answer);
    assert_eq!(Arc::strong_count(&m), 1);
}

#[test]
fn an_unknown_body_is_none_and_counted_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let m = message(b"known");
    let id = store.next_message_id();
    store.submit([session("s"), enqueue("s", &m, id)]);
    let mut rx = store.read_bodies(vec![999_999, id, 888_888]);
    let answer = recv_within(&mut rx, WAIT)
        .expect("answered")
        .expect("not refused");
    assert_eq!(
        payloads(&answer),
        [(999_999, None), (id, Some(&b"known"[..])), (888_888, None)]
    );
    assert_eq!(store.stats().bodies_lost.load(Ordering::Relaxed), 2);
    assert_eq!(store.stats().bodies_read.load(Ordering::Relaxed), 1);
    // A body whose last delivery is done before the read is gone by then.
    store.submit([Op::Done {
        client: "s".into(),
        message: id,
    }]);
    let mut rx = store.read_bodies(vec![id]);
    let answer = recv_within(&mut rx, WAIT)
        .expect("answered")
        .expect("not refused");
    assert_eq!(payloads(&answer), [(id, None)]);
    assert_eq!(store.stats().bodies_lost.load(Ordering::Relaxed), 3);
}

#[test]
fn a_read_while_the_thread_is_idle_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let m = message(b"durable");
    let id = store.next_message_id();
    let t = store.submit([session("s"), enqueue("s", &m, id)]);
    assert!(store.wait_durable(t, WAIT));
    // Nothing else is pending: the thread sleeps until the read wakes it.
    std::thread::sleep(Duration::from_millis(50));
    let mut rx = store.read_bodies(vec![id]);
    let answer = recv_within(&mut rx, WAIT)
        .expect("answered")
        .expect("not refused");
    assert_eq!(payloads(&answer), [(id, Some(&b"durable"[..]))]);
    // An empty request is answered too.
    let mut rx = store.read_bodies(vec![]);
    assert_eq!(recv_within(&mut rx, WAIT), Some(Ok(vec![])));
}

/// Bodies of a restarted store's queues are read from the journal on request.
#[test]
fn queued_bodies_are_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u64> = {
        let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
        store.submit([session("s")]);
        let mut ids = Vec::new();
        let mut t = 0;
        for payload in [&b"one"[..], b"two", b"three"] {
            let id = store.next_message_id();
            let m = Arc::new(Message {
                payload: Bytes::copy_from_slice(payload),
                ..(*message(b"")).clone()
            });
            t = store.submit([enqueue("s", &m, id)]);
            ids.push(id);
        }
        assert!(store.wait_durable(t, WAIT));
        ids
    };
    let (store, recovered) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let queue = &recovered.queues.sessions["s"].queue;
    let stubs: Vec<u64> = queue.iter().map(|e| e.delivery.stored_id).collect();
    assert_eq!(stubs, ids);
    let mut rx = store.read_bodies(stubs);
    let answer = recv_within(&mut rx, WAIT)
        .expect("answered")
        .expect("not refused");
    let deliveries: Vec<Delivery> = queue
        .iter()
        .zip(answer)
        .map(|(e, (_, body))| e.delivery.clone().with_message(body.unwrap()))
        .collect();
    let got: Vec<&[u8]> = deliveries.iter().map(|d| &d.message.payload[..]).collect();
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    assert!(deliveries
        .iter()
        .zip(&ids)
        .all(|(d, id)| d.stored_id == Some(*id)));
}

/// Reads asked for before `close` are answered; one the thread cannot get to (it is stuck
/// retrying a failing disk) is refused when the grace period ends; later ones at once.
#[test]
fn close_with_a_read_outstanding_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let m = message(b"before close");
    let id = store.next_message_id();
    store.submit([session("s"), enqueue("s", &m, id)]);
    let mut rx = store.read_bodies(vec![id]);
    store.close(WAIT);
    let answer = recv_within(&mut rx, WAIT)
        .expect("answered")
        .expect("not refused");
    assert_eq!(payloads(&answer), [(id, Some(&b"before close"[..]))]);
    let mut late = store.read_bodies(vec![id]);
    assert_eq!(recv_within(&mut late, Duration::ZERO), Some(Err(())));

    let root = tempfile::tempdir().unwrap();
    let (fs, store) = faulty_store(root.path());
    fs.set_faults(Faults {
        fail_syncs: u32::MAX,
        ..Faults::default()
    });
    let id = store.next_message_id();
    store.submit([enqueue("s", &m, id)]);
    // The thread is now retrying the batch; the read waits behind it.
    wait_for_error(&store);
    let mut stuck = store.read_bodies(vec![id]);
    store.close(Duration::from_millis(100));
    assert_eq!(recv_within(&mut stuck, WAIT), Some(Err(())));
    // Let the thread finish.
    fs.set_faults(Faults::default());
}

/// The backlog counts a message's body once however many sessions it is queued for (one
/// message to many sessions is one body in memory), returns to zero once the thread has
/// taken everything, and does not hold connections after the store is closed.
#[test]
fn the_backlog_counts_each_body_once_and_drains() {
    let m = message(&[7u8; 1000]);
    let mut seen = std::collections::HashSet::new();
    let fan_out: Vec<Op> = (0..500).map(|i| enqueue(&format!("s{i}"), &m, 1)).collect();
    let counted: usize = fan_out.iter().map(|op| new_body_bytes(op, &mut seen)).sum();
    assert_eq!(counted, 1000, "one body, however many copies");

    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default(), 0).unwrap();
    let id = store.next_message_id();
    let mut ops = vec![session("s0")];
    ops.extend((0..50).map(|i| enqueue("s0", &message(&[i as u8; 4096]), id + 1 + i)));
    let t = store.submit(ops);
    assert!(store.wait_durable(t, WAIT));
    assert_eq!(store.backlog_bytes(), 0);
    store.close(WAIT);
    store.submit([enqueue("s0", &m, id + 100)]);
    assert_eq!(store.backlog_bytes(), 0, "ops after close hold nothing");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(async { tokio::time::timeout(WAIT, store.backlog_drained()).await })
        .expect("not backlogged");
}

/// Each sync that reached the disk is timed once; failed attempts are not.
#[test]
fn each_successful_sync_is_timed_once() {
    let root = tempfile::tempdir().unwrap();
    let (fs, store) = faulty_store(root.path());
    fs.set_faults(Faults {
        fail_syncs: 2,
        ..Faults::default()
    });
    let m = message(b"timed");
    let id = store.next_message_id();
    let t = store.submit([enqueue("s", &m, id)]);
    assert!(store.wait_durable(t, WAIT));
    assert!(store.stats().errors.load(Ordering::Relaxed) >= 1);
    let timed = store.sync_latency();
    // The session's batch and this one.
    assert!(timed.count() >= 2, "{timed:?}");
    assert_eq!(timed.bounds, SYNC_LATENCY_BOUNDS);
    assert!(timed.cumulative.windows(2).all(|w| w[0] <= w[1]));
}

/// Recovery of a large store reports every step, in order, from 0 to its total: the
/// sessions, subscriptions and retained messages read, the journal's bytes checked (several
/// segments) and its records replayed, each a bounded number of times.
#[test]
fn recovery_reports_its_progress_step_by_step() {
    use crate::progress::{Progress, RecoveryStep};
    use std::sync::Mutex;

    const SESSIONS: usize = 300;
    const SUBSCRIPTIONS_EACH: usize = 3;
    const RETAINED: usize = 250;
    const QUEUED: usize = 20_000;
    let options = StoreOptions {
        max_message: 1024,
        segment_size: 1024 * 1024,
        ..StoreOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), options.clone(), 0).unwrap();
        let mut ops = Vec::new();
        for s in 0..SESSIONS {
            let client = format!("c{s}");
            ops.push(session(&client));
            for f in 0..SUBSCRIPTIONS_EACH {
                ops.push(Op::PutSubscription {
                    client: client.as_str().into(),
                    filter: MqttString::try_from(format!("site/{s}/{f}/#")).unwrap(),
                    entry: corvus_core::SubscriptionEntry {
                        options: Default::default(),
                        identifier: None,
                    },
                });
            }
        }
        for r in 0..RETAINED {
            let mut m = (*message(b"retained")).clone();
            m.topic = MqttString::try_from(format!("status/{r}")).unwrap();
            m.retain = true;
            ops.push(Op::PutRetained(Arc::new(m)));
        }
        store.submit(ops);
        let payload = [b'x'; 200];
        let mut last = 0;
        for chunk in 0..QUEUED / 1000 {
            let ops: Vec<Op> = (0..1000)
                .map(|i| {
                    let client = format!("c{}", (chunk * 1000 + i) % SESSIONS);
                    enqueue(&client, &message(&payload), store.next_message_id())
                })
                .collect();
            last = store.submit(ops);
        }
        assert!(store.wait_durable(last, WAIT));
    }
    let queue_bytes: u64 = std::fs::read_dir(dir.path().join(crate::QUEUE_DIR))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    let seen = Mutex::new(Vec::<Progress>::new());
    let sink = |p: Progress| seen.lock().unwrap().push(p);
    let (_store, recovered) = Store::open_reporting(dir.path(), options, 0, &sink).unwrap();
    let seen = seen.into_inner().unwrap();

    let order = [
        RecoveryStep::LoadSessions,
        RecoveryStep::LoadSubscriptions,
        RecoveryStep::LoadRetained,
        RecoveryStep::ScanJournal,
        RecoveryStep::ReplayJournal,
    ];
    let steps: Vec<RecoveryStep> = seen.iter().map(|p| p.step).fold(Vec::new(), |mut v, s| {
        if v.last() != Some(&s) {
            v.push(s);
        }
        v
    });
    assert_eq!(steps, order, "each step once, in order");
    let totals = [
        SESSIONS as u64,
        (SESSIONS * SUBSCRIPTIONS_EACH) as u64,
        RETAINED as u64,
        queue_bytes,
        recovered.journal_recovery.records,
    ];
    assert_eq!(recovered.journal_replay.records, QUEUED as u64 * 2);
    for (step, total) in order.into_iter().zip(totals) {
        let reports: Vec<&Progress> = seen.iter().filter(|p| p.step == step).collect();
        assert!(
            reports.iter().all(|p| p.total == total),
            "{step:?}: {reports:?}"
        );
        assert_eq!(reports.first().unwrap().done, 0, "{step:?} starts at 0");
        assert_eq!(
            reports.last().unwrap().done,
            total,
            "{step:?} ends at its total"
        );
        assert!(
            reports.windows(2).all(|w| w[0].done < w[1].done),
            "{step:?} only moves forward: {reports:?}"
        );
        assert!(
            reports.len() <= 102,
            "{step:?} reported {} times",
            reports.len()
        );
    }
    let scan = seen
        .iter()
        .filter(|p| p.step == RecoveryStep::ScanJournal)
        .count();
    assert!(scan >= 5, "one report per segment checked, {scan} in all");
    let replay = seen
        .iter()
        .filter(|p| p.step == RecoveryStep::ReplayJournal)
        .count();
    assert_eq!(replay, 101, "a report every hundredth of the records");
}
