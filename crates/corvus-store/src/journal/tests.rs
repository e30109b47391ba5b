//! Tests of the queue journal: encoding, replay, crashes, damage, expiry, compaction, and a
//! model-based property test.

use std::collections::BTreeMap;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use corvus_core::session::OutState;
use corvus_core::{ClientId, Message, Millis, StoredDelivery};
use mqtt_codec::{MqttString, PacketId, PublishProperties, QoS};
use proptest::prelude::*;

use super::*;
use crate::fs::fault::{CrashMode, FaultFs};
use crate::segment::{record_len, HEADER_LEN};
use crate::{LogOptions, SyncPolicy};

fn dir() -> PathBuf {
    PathBuf::from("/data/journal")
}

fn small() -> LogOptions {
    LogOptions {
        segment_size: 600,
        max_payload: 400,
        sync_policy: SyncPolicy::Always,
    }
}

fn open_at(
    fs: &FaultFs,
    options: LogOptions,
    now: Millis,
) -> (Journal, ReplayedState, ReplayReport, RecoveryReport) {
    Journal::open(Arc::new(fs.clone()), dir(), options, now).expect("open")
}

fn open(fs: &FaultFs, options: LogOptions) -> (Journal, ReplayedState, ReplayReport) {
    let (j, s, r, _) = open_at(fs, options, 0);
    (j, s, r)
}

fn client(s: &str) -> ClientId {
    s.into()
}

fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).unwrap()
}

fn message(topic: &str, payload: &str, qos: QoS, expires_at: Option<Millis>) -> Arc<Message> {
    Arc::new(Message {
        topic: MqttString::try_from(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: PublishProperties::default(),
        expires_at,
        publisher: Some(client("pub")),
        received_at: None,
    })
}

fn enqueue(c: &str, id: MessageId, qos: QoS) -> Record {
    Record::Enqueue {
        client: client(c),
        message: id,
        qos,
        retain: false,
        subscription_ids: vec![id as u32 % 5 + 1],
    }
}

fn sent(c: &str, id: MessageId, p: u16) -> Record {
    Record::Sent {
        client: client(c),
        message: id,
        packet_id: pid(p),
    }
}

fn released(c: &str, id: MessageId, p: u16) -> Record {
    Record::Released {
        client: client(c),
        message: id,
        packet_id: pid(p),
    }
}

fn done(c: &str, id: MessageId) -> Record {
    Record::Done {
        client: client(c),
        message: id,
    }
}

// ---- a simple model: what the state should be after a list of (valid) records ----

#[derive(Debug, Clone, Default)]
struct Model {
    bodies: BTreeMap<MessageId, Arc<Message>>,
    sessions: BTreeMap<ClientId, ReplayedSession>,
}

impl Model {
    fn apply(&mut self, r: &Record) {
        match r {
            Record::Message { id, message } => {
                self.bodies.insert(*id, message.clone());
            }
            Record::Enqueue {
                client,
                message,
                qos,
                retain,
                subscription_ids,
            } => self.enqueue(client, *message, *qos, *retain, subscription_ids),
            Record::Received {
                client,
                packet_id,
                copies,
            } => {
                let inbound = &mut self
                    .sessions
                    .entry(client.clone())
                    .or_default()
                    .inbound_qos2;
                inbound.push(*packet_id);
                inbound.sort();
                for c in copies {
                    self.enqueue(&c.client, c.message, c.qos, c.retain, &c.subscription_ids);
                }
            }
            Record::InboundReleased { client, packet_id } => {
                let s = self.sessions.get_mut(client).unwrap();
                s.inbound_qos2.retain(|p| p != packet_id);
            }
            Record::Sent {
                client,
                message,
                packet_id,
            } => {
                let s = self.sessions.get_mut(client).unwrap();
                let i = s
                    .queue
                    .iter()
                    .position(|e| e.message_id == *message)
                    .unwrap();
                let e = s.queue.remove(i);
                let state = match e.delivery.qos {
                    QoS::AtMostOnce => None,
                    QoS::AtLeastOnce => Some(OutState::AwaitingPubAck),
                    QoS::ExactlyOnce => Some(OutState::AwaitingPubRec),
                };
                if let Some(state) = state {
                    // In flight deliveries come with their bodies.
                    let body = self.bodies[message].clone();
                    s.inflight.push(InflightEntry {
                        message_id: *message,
                        packet_id: *packet_id,
                        delivery: e.delivery.with_message(body),
                        state,
                    });
                }
            }
            Record::Released {
                client, message, ..
            } => {
                let s = self.sessions.get_mut(client).unwrap();
                let e = s
                    .inflight
                    .iter_mut()
                    .find(|e| e.message_id == *message)
                    .unwrap();
                e.state = OutState::AwaitingPubComp;
            }
            Record::Done { client, message } => {
                let s = self.sessions.get_mut(client).unwrap();
                s.queue.retain(|e| e.message_id != *message);
                s.inflight.retain(|e| e.message_id != *message);
            }
            Record::Copied { .. } => unreachable!("the model gets user records only"),
        }
        self.sessions.retain(|_, s| {
            !s.queue.is_empty() || !s.inflight.is_empty() || !s.inbound_qos2.is_empty()
        });
    }

    fn enqueue(
        &mut self,
        client: &ClientId,
        message: MessageId,
        qos: QoS,
        retain: bool,
        subscription_ids: &[u32],
    ) {
        // Queued deliveries come without bodies.
        let body = &self.bodies[&message];
        let delivery = StoredDelivery {
            stored_id: message,
            qos,
            retain,
            subscription_ids: subscription_ids.to_vec(),
            payload_len: body.payload.len(),
            expires_at: body.expires_at,
        };
        self.sessions
            .entry(client.clone())
            .or_default()
            .queue
            .push(QueuedEntry {
                message_id: message,
                delivery,
            });
    }

    /// Finishes the queued deliveries expired at `now`, as an open does; returns the `Done`s.
    fn expire(&mut self, now: Millis) -> Vec<Record> {
        let mut expired = Vec::new();
        for (c, s) in &self.sessions {
            for e in &s.queue {
                if e.delivery.is_expired(now) {
                    expired.push((c.clone(), e.message_id));
                }
            }
        }
        expired.sort();
        let done: Vec<_> = expired
            .into_iter()
            .map(|(client, message)| Record::Done { client, message })
            .collect();
        for r in &done {
            self.apply(r);
        }
        done
    }

    fn state(&self) -> ReplayedState {
        ReplayedState {
            sessions: self.sessions.clone(),
        }
    }
}

fn apply_all(records: &[Record]) -> Model {
    let mut m = Model::default();
    for r in records {
        m.apply(r);
    }
    m
}

// ---- encoding ----

fn mqtt_string() -> impl Strategy<Value = MqttString> {
    "[a-zA-Z0-9/#+ éü-]{0,12}".prop_map(|s| MqttString::try_from(s).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn client_id() -> impl Strategy<Value = ClientId> {
    "[a-z0-9é]{0,10}".prop_map(|s| s.as_str().into())
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(pid)
}

prop_compose! {
    fn properties()(
        payload_format_indicator in proptest::option::of(any::<bool>()),
        message_expiry_interval in proptest::option::of(any::<u32>()),
        topic_alias in proptest::option::of(any::<u16>()),
        response_topic in proptest::option::of(mqtt_string()),
        correlation_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        user_properties in proptest::collection::vec((mqtt_string(), mqtt_string()), 0..5),
        subscription_identifiers in proptest::collection::vec(any::<u32>(), 0..4),
        content_type in proptest::option::of(mqtt_string()),
    ) -> PublishProperties {
        PublishProperties {
            payload_format_indicator,
            message_expiry_interval,
            topic_alias,
            response_topic,
            correlation_data: correlation_data.map(Bytes::from),
            user_properties,
            subscription_identifiers,
            content_type,
        }
    }
}

prop_compose! {
    fn any_message()(
        topic in mqtt_string(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        qos in qos(),
        retain in any::<bool>(),
        properties in properties(),
        expires_at in proptest::option::of(any::<u64>()),
        publisher in proptest::option::of(client_id()),
    ) -> Message {
        Message { topic, payload: Bytes::from(payload), qos, retain, properties, expires_at, publisher, received_at: None }
    }
}

fn any_record() -> impl Strategy<Value = Record> {
    let sub_ids = || proptest::collection::vec(any::<u32>(), 0..4);
    prop_oneof![
        (any::<u64>(), any_message()).prop_map(|(id, m)| Record::Message {
            id,
            message: Arc::new(m)
        }),
        (client_id(), any::<u64>(), qos(), any::<bool>(), sub_ids()).prop_map(
            |(client, message, qos, retain, subscription_ids)| Record::Enqueue {
                client,
                message,
                qos,
                retain,
                subscription_ids
            }
        ),
        (client_id(), any::<u64>(), packet_id()).prop_map(|(client, message, packet_id)| {
            Record::Sent {
                client,
                message,
                packet_id,
            }
        }),
        (client_id(), any::<u64>(), packet_id()).prop_map(|(client, message, packet_id)| {
            Record::Released {
                client,
                message,
                packet_id,
            }
        }),
        (client_id(), any::<u64>()).prop_map(|(client, message)| Record::Done { client, message }),
        (
            client_id(),
            packet_id(),
            proptest::collection::vec(
                (client_id(), any::<u64>(), qos(), any::<bool>(), sub_ids()),
                0..4
            )
        )
            .prop_map(|(client, packet_id, copies)| Record::Received {
                client,
                packet_id,
                copies: copies
                    .into_iter()
                    .map(
                        |(client, message, qos, retain, subscription_ids)| QueuedCopy {
                            client,
                            message,
                            qos,
                            retain,
                            subscription_ids
                        }
                    )
                    .collect(),
            }),
        (client_id(), packet_id())
            .prop_map(|(client, packet_id)| Record::InboundReleased { client, packet_id }),
        (
            client_id(),
            any::<u64>(),
            qos(),
            any::<bool>(),
            sub_ids(),
            any::<u64>(),
            proptest::option::of((packet_id(), any::<u64>(), any::<bool>()))
        )
            .prop_map(
                |(client, message, qos, retain, subscription_ids, queued_at, sent)| {
                    Record::Copied {
                        client,
                        message,
                        qos,
                        retain,
                        subscription_ids,
                        queued_at: Seq(queued_at),
                        sent: sent.map(|(packet_id, at, released)| CopiedSent {
                            packet_id,
                            sent_at: Seq(at),
                            released,
                        }),
                    }
                }
            ),
    ]
}

proptest! {
    #[test]
    fn every_record_round_trips(record in any_record()) {
        let bytes = record.encode().unwrap();
        prop_assert_eq!(bytes[0], match &record {
            Record::Message { .. } => kind::MESSAGE,
            Record::Enqueue { .. } => kind::ENQUEUE,
            Record::Sent { .. } => kind::SENT,
            Record::Released { .. } => kind::RELEASED,
            Record::Done { .. } => kind::DONE,
            Record::Copied { .. } => kind::COPIED,
            Record::Received { .. } => kind::RECEIVED,
            Record::InboundReleased { .. } => kind::INBOUND_RELEASED,
        });
        prop_assert_eq!(bytes[1], RECORD_VERSION);
        prop_assert_eq!(Record::decode(&bytes).unwrap(), record);
        // Every strict prefix is refused, and so is trailing garbage.
        for n in 0..bytes.len() {
            prop_assert!(Record::decode(&bytes[..n]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let trailing = matches!(Record::decode(&longer), Err(RecordError::Trailing { .. }));
        prop_assert!(trailing);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Record::decode(&bytes);
    }

    #[test]
    fn decoding_mutated_records_never_panics(record in any_record(), at in any::<usize>(), xor in 1u8..) {
        let mut bytes = record.encode().unwrap();
        let i = at % bytes.len();
        bytes[i] ^= xor;
        let _ = Record::decode(&bytes);
    }
}

#[test]
fn decode_errors_say_what_was_wrong() {
    assert_eq!(
        Record::decode(&[]).unwrap_err().to_string(),
        "record truncated at byte 0: record type needs 1 bytes, 0 left"
    );
    assert_eq!(
        Record::decode(&[9, 1]).unwrap_err(),
        RecordError::UnknownType(9)
    );
    assert_eq!(
        Record::decode(&[kind::DONE, 2]).unwrap_err(),
        RecordError::UnsupportedVersion {
            kind: kind::DONE,
            version: 2
        }
    );
    let mut bytes = sent("a", 1, 1).encode().unwrap();
    let n = bytes.len();
    bytes[n - 2..].copy_from_slice(&[0, 0]);
    let err = Record::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::Invalid {
                field: "packet id",
                ..
            }
        ),
        "{err}"
    );
    // A huge count is refused before anything is allocated.
    let mut bytes = enqueue("a", 1, QoS::AtLeastOnce).encode().unwrap();
    let n = bytes.len();
    bytes[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = Record::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::Invalid {
                field: "subscription ids",
                ..
            }
        ),
        "{err}"
    );
}

// ---- replay ----

/// Two sessions sharing one body: send, ack, release, complete.
fn scripted() -> Vec<Record> {
    let m1 = message("t/1", "one", QoS::ExactlyOnce, None);
    let m2 = message("t/2", "two", QoS::AtLeastOnce, None);
    let m3 = message("t/3", "three", QoS::ExactlyOnce, None);
    vec![
        Record::Message { id: 1, message: m1 },
        enqueue("a", 1, QoS::AtLeastOnce),
        enqueue("b", 1, QoS::ExactlyOnce),
        Record::Message { id: 2, message: m2 },
        enqueue("a", 2, QoS::AtLeastOnce),
        enqueue("b", 2, QoS::AtLeastOnce),
        Record::Message { id: 3, message: m3 },
        enqueue("a", 3, QoS::ExactlyOnce),
        enqueue("b", 3, QoS::ExactlyOnce),
        sent("a", 1, 10),
        sent("a", 2, 11),
        sent("b", 1, 20),
        sent("b", 2, 21),
        sent("b", 3, 22),
        done("a", 1),         // PUBACK
        released("b", 1, 20), // PUBREC
        released("b", 3, 22),
        done("b", 2), // PUBACK
        done("b", 1), // PUBCOMP
    ]
}

#[test]
fn scripted_replay_rebuilds_queues_and_inflight_in_order() {
    let fs = FaultFs::new();
    let (mut j, state, report) = open(&fs, LogOptions::default());
    assert!(state.sessions.is_empty());
    assert!(report.is_clean());
    let records = scripted();
    j.write(&records).unwrap();
    j.sync().unwrap();
    let model = apply_all(&records).state();
    assert_eq!(j.state().unwrap(), model);
    drop(j);

    let (j, state, report) = open(&fs, LogOptions::default());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records, records.len() as u64);
    assert_eq!(state, model);
    let a = &state.sessions[&client("a")];
    let b = &state.sessions[&client("b")];
    assert_eq!(
        a.queue.iter().map(|e| e.message_id).collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(
        a.inflight
            .iter()
            .map(|e| (e.message_id, e.packet_id.get(), e.state))
            .collect::<Vec<_>>(),
        [(2, 11, OutState::AwaitingPubAck)]
    );
    assert!(b.queue.is_empty());
    assert_eq!(
        b.inflight
            .iter()
            .map(|e| (e.message_id, e.packet_id.get(), e.state))
            .collect::<Vec<_>>(),
        [(3, 22, OutState::AwaitingPubComp)]
    );
    assert_eq!(b.inflight[0].delivery.qos, QoS::ExactlyOnce);
    // In flight: the body is read back at open. Queued: only its length and expiry, the
    // body is read on request.
    assert_eq!(&b.inflight[0].delivery.message.payload[..], b"three");
    assert_eq!(a.queue[0].delivery.payload_len, 5);
    assert_eq!(a.queue[0].delivery.stored_id, 3);
    let body = j.read_body(3).unwrap().expect("a live body");
    assert_eq!(&body.payload[..], b"three");
    assert_eq!(j.read_body(1).unwrap(), None, "every delivery of 1 is done");
    assert_eq!(j.next_message_id_peek(), 4);
}

impl Journal {
    fn next_message_id_peek(&self) -> MessageId {
        self.next_message_id
    }
}

#[test]
fn write_refuses_enqueue_without_body_and_appends_nothing() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let before = j.log().next_seq();
    let err = j
        .write(&[
            Record::Message {
                id: 1,
                message: message("t", "x", QoS::AtLeastOnce, None),
            },
            enqueue("a", 1, QoS::AtLeastOnce),
            enqueue("a", 2, QoS::AtLeastOnce),
        ])
        .unwrap_err();
    assert!(
        matches!(err, crate::StoreError::JournalRefused { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("message 2"), "{err}");
    assert_eq!(j.log().next_seq(), before);
    assert!(j.state().unwrap().sessions.is_empty());
}

#[test]
fn crash_replays_exactly_the_synced_records() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let records = scripted();
    let (synced, unsynced) = records.split_at(11);
    j.write(synced).unwrap();
    j.sync().unwrap();
    j.write(unsynced).unwrap();
    j.log.flush().unwrap();
    fs.crash(CrashMode::LoseUnsynced);
    drop(j);
    let (mut j, state, report) = open(&fs, LogOptions::default());
    assert!(report.is_clean());
    assert_eq!(state, apply_all(synced).state());
    // It carries on from there.
    j.write(unsynced).unwrap();
    j.sync().unwrap();
    drop(j);
    let (_, state, _) = open(&fs, LogOptions::default());
    assert_eq!(state, apply_all(&records).state());
}

#[test]
fn corrupt_middle_record_skips_its_deliveries_and_keeps_the_rest() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let records = vec![
        Record::Message {
            id: 1,
            message: message("t/1", "one", QoS::AtLeastOnce, None),
        },
        enqueue("a", 1, QoS::AtLeastOnce),
        Record::Message {
            id: 2,
            message: message("t/2", "two", QoS::AtLeastOnce, None),
        },
        enqueue("a", 2, QoS::AtLeastOnce),
        enqueue("b", 2, QoS::AtLeastOnce),
        sent("b", 2, 5),
        Record::Message {
            id: 3,
            message: message("t/3", "three", QoS::AtLeastOnce, None),
        },
        enqueue("a", 3, QoS::AtLeastOnce),
        enqueue("b", 3, QoS::AtLeastOnce),
    ];
    j.write(&records).unwrap();
    j.sync().unwrap();
    drop(j);
    // Damage the body of message 2 (the third record).
    let seg = dir().join(format!("{:020}.seg", 1));
    let mut bytes = fs.contents(&seg).unwrap();
    let off = HEADER_LEN
        + records[..2]
            .iter()
            .map(|r| record_len(r.encode().unwrap().len()))
            .sum::<u64>();
    bytes[off as usize + 20] ^= 0x40;
    fs.put(&seg, &bytes);

    let (_, state, report, recovery) = open_at(&fs, LogOptions::default(), 0);
    assert_eq!(recovery.quarantined.len(), 1, "{recovery:?}");
    assert_eq!(report.lost, vec![(client("a"), 2), (client("b"), 2)]);
    assert_eq!(report.skipped, 3, "{report:?}");
    assert!(!report.is_clean());
    let mut intact = records.clone();
    intact.retain(|r| r.message_id() != 2);
    assert_eq!(state, apply_all(&intact).state());
}

#[test]
fn undecodable_record_is_skipped_and_reported() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let records = scripted();
    j.write(&records[..3]).unwrap();
    j.log.append(&[kind::DONE, 9, 1, 2]).unwrap();
    j.log.append(&[77]).unwrap();
    j.sync().unwrap();
    drop(j);
    let (_, state, report) = open(&fs, LogOptions::default());
    assert_eq!(
        report.undecodable,
        vec![
            (
                Seq(4),
                RecordError::UnsupportedVersion {
                    kind: kind::DONE,
                    version: 9
                }
            ),
            (Seq(5), RecordError::UnknownType(77)),
        ]
    );
    assert_eq!(state, apply_all(&records[..3]).state());
}

#[test]
fn expired_queued_messages_are_dropped_on_replay() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let records = vec![
        Record::Message {
            id: 1,
            message: message("t/1", "old", QoS::AtLeastOnce, Some(1_000)),
        },
        enqueue("a", 1, QoS::AtLeastOnce),
        enqueue("b", 1, QoS::AtLeastOnce),
        sent("b", 1, 3), // in flight: delivery started, kept
        Record::Message {
            id: 2,
            message: message("t/2", "new", QoS::AtLeastOnce, Some(5_000)),
        },
        enqueue("a", 2, QoS::AtLeastOnce),
    ];
    j.write(&records).unwrap();
    j.sync().unwrap();
    drop(j);
    let (_, state, report, _) = open_at(&fs, LogOptions::default(), 999);
    assert_eq!(report.expired, 0);
    assert_eq!(state, apply_all(&records).state());
    let (_, state, report, _) = open_at(&fs, LogOptions::default(), 1_000);
    assert_eq!(report.expired, 1);
    let mut want = records.clone();
    want.push(done("a", 1));
    assert_eq!(state, apply_all(&want).state());
    let (_, state, report, _) = open_at(&fs, LogOptions::default(), 10_000);
    assert_eq!(report.expired, 2);
    assert!(report.is_clean());
    assert_eq!(state.sessions.keys().collect::<Vec<_>>(), [&client("b")]);
}

// ---- compaction ----

fn publish(j: &mut Journal, clients: &[&str], qos: QoS, model: &mut Model) -> MessageId {
    let id = j.next_message_id();
    let mut records = vec![Record::Message {
        id,
        message: message(&format!("t/{id}"), &"x".repeat(40), qos, None),
    }];
    records.extend(clients.iter().map(|c| enqueue(c, id, qos)));
    j.write(&records).unwrap();
    for r in &records {
        model.apply(r);
    }
    id
}

fn write(j: &mut Journal, records: &[Record], model: &mut Model) {
    j.write(records).unwrap();
    for r in records {
        model.apply(r);
    }
}

#[test]
fn acked_segments_are_reclaimed() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, small());
    let mut model = Model::default();
    let ids: Vec<_> = (0..30)
        .map(|_| publish(&mut j, &["a"], QoS::AtLeastOnce, &mut model))
        .collect();
    j.sync().unwrap();
    let segments = j.log().segment_count();
    assert!(segments > 4, "{segments}");
    assert_eq!(j.reclaim().unwrap(), 0, "everything is live");
    for (i, &id) in ids.iter().enumerate().take(20) {
        write(
            &mut j,
            &[sent("a", id, i as u16 + 1), done("a", id)],
            &mut model,
        );
    }
    j.sync().unwrap();
    let usage = j.segments();
    assert_eq!(usage[0].live, 0);
    let segments = j.log().segment_count();
    let upto = j.reclaimable_upto();
    assert!(upto > usage[0].last);
    let removed = j.reclaim().unwrap();
    assert!(removed > 0);
    assert_eq!(j.log().segment_count(), segments - removed);
    assert!(j.segments()[0].live >= 1);
    assert_eq!(j.state().unwrap(), model.state());
    drop(j);
    let (_, state, report) = open(&fs, small());
    assert_eq!(state, model.state());
    assert!(report.is_clean());
}

#[test]
fn long_offline_session_survives_compaction() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, small());
    let mut model = Model::default();
    // "off" receives a few messages early, then goes offline with one QoS 1 in flight,
    // one QoS 2 released and one still queued.
    let m1 = publish(&mut j, &["off", "on"], QoS::AtLeastOnce, &mut model);
    let m2 = publish(&mut j, &["off", "on"], QoS::ExactlyOnce, &mut model);
    let m3 = publish(&mut j, &["off", "on"], QoS::ExactlyOnce, &mut model);
    let m4 = publish(&mut j, &["off"], QoS::AtLeastOnce, &mut model);
    write(
        &mut j,
        &[
            sent("off", m2, 2),
            sent("off", m1, 1),
            released("off", m2, 2),
        ],
        &mut model,
    );
    // "on" keeps up with a stream of messages.
    let mut p = 0u16;
    for id in [m1, m2, m3] {
        p += 1;
        write(&mut j, &[sent("on", id, p), done("on", id)], &mut model);
    }
    for _ in 0..40 {
        let id = publish(&mut j, &["on"], QoS::AtLeastOnce, &mut model);
        p += 1;
        write(&mut j, &[sent("on", id, p), done("on", id)], &mut model);
    }
    j.sync().unwrap();
    let before = j.log().segment_count();
    assert!(before > 5, "{before}");
    assert_eq!(j.reclaim().unwrap(), 0, "the offline session pins the log");

    let mut total = Compaction::default();
    for _ in 0..4 {
        let c = j.compact_front().unwrap();
        total.copied += c.copied;
        total.bodies += c.bodies;
        total.removed += c.removed;
        assert_eq!(j.state().unwrap(), model.state());
    }
    assert!(total.copied >= 4 && total.bodies >= 4, "{total:?}");
    assert!(total.removed >= before - 3, "{total:?}");
    assert!(j.log().segment_count() <= 3, "{}", j.log().segment_count());
    drop(j);

    let (mut j, state, report) = open(&fs, small());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(state, model.state());
    let off = &state.sessions[&client("off")];
    assert_eq!(
        off.inflight
            .iter()
            .map(|e| (e.message_id, e.state))
            .collect::<Vec<_>>(),
        [
            (m2, OutState::AwaitingPubComp),
            (m1, OutState::AwaitingPubAck)
        ]
    );
    assert_eq!(
        off.queue.iter().map(|e| e.message_id).collect::<Vec<_>>(),
        [m3, m4]
    );
    // The session comes back and carries on from where it was.
    write(
        &mut j,
        &[done("off", m2), done("off", m1), sent("off", m3, 3)],
        &mut model,
    );
    let m5 = publish(&mut j, &["off"], QoS::AtLeastOnce, &mut model);
    write(&mut j, &[sent("off", m4, 4)], &mut model);
    j.sync().unwrap();
    drop(j);
    let (_, state, _) = open(&fs, small());
    assert_eq!(state, model.state());
    let off = &state.sessions[&client("off")];
    assert_eq!(
        off.queue.iter().map(|e| e.message_id).collect::<Vec<_>>(),
        [m5]
    );
    assert_eq!(
        off.inflight
            .iter()
            .map(|e| e.message_id)
            .collect::<Vec<_>>(),
        [m3, m4]
    );
}

// ---- bodies stay on disk ----

fn body_payload(j: &Journal, id: MessageId) -> Option<Vec<u8>> {
    j.read_body(id).unwrap().map(|m| m.payload.to_vec())
}

/// `read_body` finds a body's record wherever it is, until the body is dropped.
#[test]
fn read_body_finds_a_body_pending_flushed_synced_and_after_reopen() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let m = message("t/1", "the body", QoS::AtLeastOnce, Some(7_000));
    j.write(&[
        Record::Message {
            id: 1,
            message: m.clone(),
        },
        enqueue("a", 1, QoS::AtLeastOnce),
    ])
    .unwrap();
    let pending = j.read_body(1).unwrap().expect("pending");
    assert_eq!(*pending, *m);
    j.log_flush().unwrap();
    assert_eq!(
        body_payload(&j, 1).as_deref(),
        Some(&b"the body"[..]),
        "flushed"
    );
    j.sync().unwrap();
    assert_eq!(
        body_payload(&j, 1).as_deref(),
        Some(&b"the body"[..]),
        "synced"
    );
    assert_eq!(j.read_body(2).unwrap(), None, "never written");
    drop(j);

    let (mut j, state, _) = open(&fs, LogOptions::default());
    let after = j.read_body(1).unwrap().expect("after reopen");
    assert_eq!(*after, *m);
    let queued = &state.sessions[&client("a")].queue[0];
    assert_eq!(queued.delivery.payload_len, 8);
    assert_eq!(queued.delivery.expires_at, Some(7_000));
    j.write(&[sent("a", 1, 1), done("a", 1)]).unwrap();
    assert_eq!(
        j.read_body(1).unwrap(),
        None,
        "dropped with its last delivery"
    );
}

/// A body copied forward by compaction is read from its new place once the segment it was
/// first written to is gone.
#[test]
fn a_body_copied_forward_is_read_from_its_new_place() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, small());
    let mut model = Model::default();
    let kept = publish(&mut j, &["off"], QoS::AtLeastOnce, &mut model);
    for p in 1..=30u16 {
        let id = publish(&mut j, &["on"], QoS::AtLeastOnce, &mut model);
        write(&mut j, &[sent("on", id, p), done("on", id)], &mut model);
    }
    j.sync().unwrap();
    let first_segment = dir().join(format!("{:020}.seg", 1));
    assert!(fs.contents(&first_segment).is_some());
    let c = j.compact_front().unwrap();
    assert_eq!(c.bodies, 1, "{c:?}");
    assert!(c.removed >= 1, "{c:?}");
    assert!(
        fs.contents(&first_segment).is_none(),
        "the old segment is gone"
    );
    let want = model.bodies[&kept].clone();
    assert_eq!(j.read_body(kept).unwrap().as_deref(), Some(&*want));
    drop(j);
    let (j, state, report) = open(&fs, small());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(state, model.state());
    assert_eq!(j.read_body(kept).unwrap().as_deref(), Some(&*want));
}

/// A live body damaged on disk does not block compaction for ever: its deliveries are
/// finished and counted, the others are carried forward, and the old segment goes.
#[test]
fn compaction_finishes_deliveries_whose_body_is_damaged() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, small());
    let mut model = Model::default();
    let kept = publish(&mut j, &["off"], QoS::AtLeastOnce, &mut model);
    let damaged = publish(&mut j, &["off", "away"], QoS::AtLeastOnce, &mut model);
    for p in 1..=30u16 {
        let id = publish(&mut j, &["on"], QoS::AtLeastOnce, &mut model);
        write(&mut j, &[sent("on", id, p), done("on", id)], &mut model);
    }
    j.sync().unwrap();
    let first_segment = dir().join(format!("{:020}.seg", 1));
    let mut bytes = fs.contents(&first_segment).unwrap();
    let topic = format!("t/{damaged}");
    let at = bytes
        .windows(topic.len())
        .position(|w| w == topic.as_bytes())
        .expect("the damaged body is in the first segment");
    bytes[at] ^= 0x20;
    fs.put(&first_segment, &bytes);
    let c = j.compact_front().unwrap();
    assert_eq!((c.lost, c.bodies), (2, 1), "{c:?}");
    assert!(c.removed >= 1, "{c:?}");
    assert!(
        fs.contents(&first_segment).is_none(),
        "the old segment is gone"
    );
    assert_eq!(j.read_body(damaged).unwrap(), None);
    assert!(j.read_body(kept).unwrap().is_some());
    for c in ["off", "away"] {
        model.apply(&done(c, damaged));
    }
    assert_eq!(j.state().unwrap(), model.state());
}

/// The journal holds on to no message: every `Arc` handed to `write` is back to one owner,
/// and queued entries describe their bodies without them.
#[test]
fn the_journal_keeps_no_message_bodies_in_memory() {
    const N: u64 = 40;
    const PAYLOAD: usize = 256 * 1024;
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let mut written = Vec::new();
    for id in 1..=N {
        let m = Arc::new(Message {
            payload: Bytes::from(vec![id as u8; PAYLOAD + id as usize]),
            ..(*message(&format!("t/{id}"), "", QoS::AtLeastOnce, Some(1_000 + id))).clone()
        });
        j.write(&[
            Record::Message {
                id,
                message: m.clone(),
            },
            enqueue("a", id, QoS::AtLeastOnce),
        ])
        .unwrap();
        assert_eq!(Arc::strong_count(&m), 1, "message {id} retained by write");
        written.push(m);
    }
    // One goes in flight: its body comes with the state, read from the log.
    j.write(&[sent("a", 1, 1)]).unwrap();
    j.sync().unwrap();
    assert!(written.iter().all(|m| Arc::strong_count(m) == 1));

    let check = |state: &ReplayedState| {
        let a = &state.sessions[&client("a")];
        assert_eq!(a.inflight.len(), 1);
        assert_eq!(*a.inflight[0].delivery.message, *written[0]);
        assert_eq!(a.queue.len(), N as usize - 1);
        for (e, m) in a.queue.iter().zip(&written[1..]) {
            assert_eq!(e.delivery.stored_id, e.message_id);
            assert_eq!(e.delivery.payload_len, m.payload.len());
            assert_eq!(e.delivery.expires_at, m.expires_at);
        }
    };
    check(&j.state().unwrap());
    drop(j);
    let (j, state, _) = open(&fs, LogOptions::default());
    check(&state);
    // Read back on request, and let go again by the journal.
    let body = j.read_body(N).unwrap().expect("queued body");
    assert_eq!(*body, *written[N as usize - 1]);
    assert_eq!(Arc::strong_count(&body), 1);
}

// ---- model-based property test ----

#[derive(Debug, Clone)]
enum Op {
    Publish {
        to: u8,
        qos: u8,
        len: u8,
        ttl: Option<u8>,
    },
    /// A QoS 2 PUBLISH from a persistent session: its packet id and its copies in one
    /// `Received`.
    Receive {
        from: u8,
        to: u8,
        qos: u8,
        len: u8,
    },
    /// PUBREL for one of a client's inbound QoS 2 ids.
    Pubrel {
        client: u8,
        pick: u8,
    },
    Send {
        client: u8,
    },
    Ack {
        client: u8,
        pick: u8,
    },
    Drop {
        client: u8,
        pick: u8,
    },
    Sync,
    Crash {
        keep: u8,
        advance: u8,
    },
    Compact,
    Reclaim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..8, 0u8..3, 0u8..60, proptest::option::weighted(0.2, any::<u8>()))
            .prop_map(|(to, qos, len, ttl)| Op::Publish { to, qos, len, ttl }),
        2 => (0u8..3, 0u8..16, 0u8..3, 0u8..60)
            .prop_map(|(from, to, qos, len)| Op::Receive { from, to, qos, len }),
        1 => (0u8..3, any::<u8>()).prop_map(|(client, pick)| Op::Pubrel { client, pick }),
        3 => (0u8..3).prop_map(|client| Op::Send { client }),
        3 => (0u8..3, any::<u8>()).prop_map(|(client, pick)| Op::Ack { client, pick }),
        1 => (0u8..3, any::<u8>()).prop_map(|(client, pick)| Op::Drop { client, pick }),
        2 => Just(Op::Sync),
        1 => (0u8..2, any::<u8>()).prop_map(|(keep, advance)| Op::Crash { keep, advance }),
        1 => Just(Op::Compact),
        1 => Just(Op::Reclaim),
    ]
}

const CLIENTS: [&str; 3] = ["c0", "c1", "c2"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replay_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run_ops(ops)?;
    }
}

fn dump(fs: &FaultFs) {
    let (j, _, _) = open(fs, small());
    for r in j.log().read_from(Seq(0)) {
        let (seq, b) = r.unwrap();
        eprintln!("{seq:?} {}", Record::decode(&b).unwrap());
    }
}

fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, small());
    // Every user record written, with its sequence number; the model is their fold.
    let mut history: Vec<(Seq, Record)> = Vec::new();
    let mut model = Model::default();
    let mut next_pid = 0u16;
    let mut next_inbound = 0u16;
    let mut now: Millis = 0;
    for op in ops {
        let mut records = Vec::new();
        match op {
            Op::Publish { to, qos, len, ttl } => {
                let id = j.next_message_id();
                let qos = QoS::from_bits(qos).unwrap();
                let expires_at = ttl.map(|t| now + u64::from(t));
                records.push(Record::Message {
                    id,
                    message: message(&format!("t/{id}"), &"p".repeat(len.into()), qos, expires_at),
                });
                for (i, c) in CLIENTS.iter().enumerate() {
                    if to & (1 << i) != 0 {
                        records.push(enqueue(c, id, qos));
                    }
                }
            }
            Op::Receive { from, to, qos, len } => {
                let publisher = self::client(CLIENTS[from as usize]);
                next_inbound = next_inbound % 1000 + 1;
                let qos = QoS::from_bits(qos).unwrap();
                let id = j.next_message_id();
                let mut copies: Vec<QueuedCopy> = CLIENTS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| to & (1 << i) != 0)
                    .map(|(_, c)| QueuedCopy {
                        client: self::client(c),
                        message: id,
                        qos,
                        retain: false,
                        subscription_ids: vec![],
                    })
                    .collect();
                let body = message(&format!("t/{id}"), &"r".repeat(len.into()), qos, None);
                if !copies.is_empty() {
                    records.push(Record::Message {
                        id,
                        message: body.clone(),
                    });
                }
                // A second copy for the first recipient (a shared and a non-shared
                // subscription both matched), under its own message id.
                if to & 8 != 0 && !copies.is_empty() {
                    let second = j.next_message_id();
                    records.push(Record::Message {
                        id: second,
                        message: body,
                    });
                    copies.push(QueuedCopy {
                        message: second,
                        ..copies[0].clone()
                    });
                }
                records.push(Record::Received {
                    client: publisher,
                    packet_id: pid(next_inbound),
                    copies,
                });
            }
            Op::Pubrel { client, pick } => {
                let c = CLIENTS[client as usize];
                if let Some(s) = model.sessions.get(&self::client(c)) {
                    if !s.inbound_qos2.is_empty() {
                        let packet_id = s.inbound_qos2[pick as usize % s.inbound_qos2.len()];
                        records.push(Record::InboundReleased {
                            client: self::client(c),
                            packet_id,
                        });
                    }
                }
            }
            Op::Send { client } => {
                let c = CLIENTS[client as usize];
                if let Some(e) = model
                    .sessions
                    .get(&self::client(c))
                    .and_then(|s| s.queue.first())
                {
                    next_pid = next_pid % 1000 + 1;
                    records.push(sent(c, e.message_id, next_pid));
                }
            }
            Op::Ack { client, pick } => {
                let c = CLIENTS[client as usize];
                if let Some(s) = model.sessions.get(&self::client(c)) {
                    if !s.inflight.is_empty() {
                        let e = &s.inflight[pick as usize % s.inflight.len()];
                        records.push(match e.state {
                            OutState::AwaitingPubRec => {
                                released(c, e.message_id, e.packet_id.get())
                            }
                            _ => done(c, e.message_id),
                        });
                    }
                }
            }
            Op::Drop { client, pick } => {
                let c = CLIENTS[client as usize];
                if let Some(s) = model.sessions.get(&self::client(c)) {
                    if !s.queue.is_empty() {
                        records.push(done(c, s.queue[pick as usize % s.queue.len()].message_id));
                    }
                }
            }
            Op::Sync => {
                j.sync().unwrap();
            }
            Op::Crash { keep, advance } => {
                now += u64::from(advance);
                j.log.flush().unwrap();
                fs.crash(if keep == 0 {
                    CrashMode::LoseUnsynced
                } else {
                    CrashMode::KeepUnsyncedPrefix(37)
                });
                drop(j);
                let (j2, state, report, recovery) = open_at(&fs, small(), now);
                j = j2;
                prop_assert!(report.is_clean(), "{:?}", report);
                // What survives is a prefix of what was written (at least what was synced).
                history.retain(|(seq, _)| *seq <= recovery.last_seq);
                model = Model::default();
                for (_, r) in &history {
                    model.apply(r);
                }
                // Queued deliveries that expired are finished by the open.
                let expired = model.expire(now);
                prop_assert_eq!(report.expired, expired.len() as u64);
                let first = j.log().next_seq().0 - expired.len() as u64;
                for (i, r) in expired.into_iter().enumerate() {
                    history.push((Seq(first + i as u64), r));
                }
                prop_assert_eq!(state, model.state());
            }
            Op::Compact => {
                j.compact_front().unwrap();
            }
            Op::Reclaim => {
                j.reclaim().unwrap();
            }
        }
        if !records.is_empty() {
            let first = j.log().next_seq();
            j.write(&records).unwrap();
            for (i, r) in records.into_iter().enumerate() {
                model.apply(&r);
                history.push((Seq(first.0 + i as u64), r));
            }
        }
        prop_assert_eq!(j.state().unwrap(), model.state());
        // Queued bodies are on disk only, and read back as written.
        for s in model.sessions.values() {
            for e in &s.queue {
                let body = j.read_body(e.message_id).unwrap();
                prop_assert_eq!(body.as_deref(), Some(&*model.bodies[&e.message_id]));
            }
        }
    }
    j.sync().unwrap();
    drop(j);
    let (_, state, report, _) = open_at(&fs, small(), now);
    model.expire(now);
    if !report.is_clean() {
        dump(&fs);
    }
    prop_assert!(report.is_clean(), "{:?}", report);
    prop_assert_eq!(state, model.state());
    Ok(())
}

/// Found by `replay_matches_the_model`: a stale `Copied` of a QoS 0 delivery, finished by
/// `Sent`, whose body copy had moved past it, was reported lost.
#[test]
fn stale_copy_of_a_finished_qos0_delivery_is_not_lost() {
    use Op::*;
    run_ops(vec![
        Publish {
            to: 1,
            qos: 1,
            len: 17,
            ttl: None,
        },
        Publish {
            to: 2,
            qos: 1,
            len: 31,
            ttl: None,
        },
        Publish {
            to: 1,
            qos: 0,
            len: 59,
            ttl: None,
        },
        Compact,
        Publish {
            to: 7,
            qos: 0,
            len: 28,
            ttl: None,
        },
        Publish {
            to: 3,
            qos: 0,
            len: 25,
            ttl: None,
        },
        Publish {
            to: 7,
            qos: 0,
            len: 14,
            ttl: None,
        },
        Compact,
        Publish {
            to: 1,
            qos: 0,
            len: 0,
            ttl: None,
        },
        Compact,
        Publish {
            to: 3,
            qos: 0,
            len: 0,
            ttl: None,
        },
        Publish {
            to: 1,
            qos: 0,
            len: 0,
            ttl: None,
        },
        Crash {
            keep: 0,
            advance: 0,
        },
        Send { client: 1 },
        Send { client: 1 },
        Publish {
            to: 1,
            qos: 0,
            len: 0,
            ttl: None,
        },
        Ack { client: 1, pick: 0 },
        Publish {
            to: 2,
            qos: 0,
            len: 0,
            ttl: None,
        },
        Send { client: 1 },
        Ack { client: 0, pick: 0 },
        Publish {
            to: 1,
            qos: 0,
            len: 0,
            ttl: None,
        },
        Publish {
            to: 1,
            qos: 2,
            len: 31,
            ttl: None,
        },
        Drop { client: 2, pick: 0 },
        Ack {
            client: 0,
            pick: 211,
        },
        Compact,
        Compact,
        Send { client: 2 },
        Compact,
        Compact,
    ])
    .unwrap();
}

#[test]
fn forgotten_client_is_gone_after_replay() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let records = scripted();
    j.write(&records).unwrap();
    assert_eq!(j.forget_client(&client("a")).unwrap(), 2);
    assert_eq!(j.forget_client(&client("nobody")).unwrap(), 0);
    j.sync().unwrap();
    drop(j);
    let (_, state, report) = open(&fs, LogOptions::default());
    assert!(report.is_clean());
    assert_eq!(state.sessions.keys().collect::<Vec<_>>(), [&client("b")]);
    assert_eq!(
        state.sessions[&client("b")],
        apply_all(&records).sessions[&client("b")]
    );
}

/// A QoS 2 PUBLISH's packet id and its queued copies are one record: a write torn at any
/// byte keeps both or neither, never the id without the copies (the publisher's re-send
/// would be acknowledged and lost) or the copies without the id (it would be routed twice).
#[test]
fn a_received_packet_id_and_its_copies_survive_a_torn_write_together() {
    let received = |message| Record::Received {
        client: client("pub"),
        packet_id: pid(9),
        copies: ["a", "b", "c"]
            .iter()
            .map(|c| QueuedCopy {
                client: client(c),
                message,
                qos: QoS::ExactlyOnce,
                retain: false,
                subscription_ids: vec![4],
            })
            .collect(),
    };
    let mut torn_at = 0;
    loop {
        let fs = FaultFs::new();
        let (mut j, _, _) = open(&fs, LogOptions::default());
        j.sync().unwrap();
        let id = j.next_message_id();
        let records = [
            Record::Message {
                id,
                message: message("t/q2", "exactly once", QoS::ExactlyOnce, None),
            },
            received(id),
        ];
        j.write(&records).unwrap();
        j.log.flush().unwrap();
        let written = j.log().bytes();
        drop(j);
        fs.crash(CrashMode::KeepUnsyncedPrefix(torn_at));
        let (_, state, report) = open(&fs, LogOptions::default());
        assert!(report.is_clean(), "torn at {torn_at}: {report:?}");
        let publisher = state.sessions.get(&client("pub"));
        let queued: Vec<_> = ["a", "b", "c"]
            .iter()
            .filter(|c| state.sessions.contains_key(&client(c)))
            .collect();
        match publisher {
            Some(p) => {
                assert_eq!(p.inbound_qos2, [pid(9)], "torn at {torn_at}");
                assert_eq!(
                    queued.len(),
                    3,
                    "torn at {torn_at}: the id without every copy"
                );
                assert_eq!(state, apply_all(&records).state());
            }
            None => assert!(
                queued.is_empty(),
                "torn at {torn_at}: copies without the id"
            ),
        }
        if torn_at >= written {
            assert!(publisher.is_some(), "the whole write is kept");
            break;
        }
        torn_at += 1;
    }
}

#[test]
fn inbound_ids_are_released_by_pubrel_and_by_forgetting_the_client() {
    let fs = FaultFs::new();
    let (mut j, _, _) = open(&fs, LogOptions::default());
    let ids = |c: &str| Record::Received {
        client: client(c),
        packet_id: pid(1),
        copies: vec![],
    };
    j.write(&[
        ids("p"),
        Record::Received {
            client: client("p"),
            packet_id: pid(2),
            copies: vec![],
        },
        ids("q"),
        Record::InboundReleased {
            client: client("p"),
            packet_id: pid(1),
        },
    ])
    .unwrap();
    assert_eq!(
        j.state().unwrap().sessions[&client("p")].inbound_qos2,
        [pid(2)]
    );
    assert_eq!(j.forget_client(&client("q")).unwrap(), 0, "no deliveries");
    j.sync().unwrap();
    drop(j);
    let (mut j, state, report) = open(&fs, LogOptions::default());
    assert!(report.is_clean());
    assert_eq!(state.sessions.keys().collect::<Vec<_>>(), [&client("p")]);
    assert_eq!(state.sessions[&client("p")].inbound_qos2, [pid(2)]);
    j.forget_client(&client("p")).unwrap();
    assert!(j.state().unwrap().sessions.is_empty());
    // Nothing live is left, so everything can be reclaimed.
    assert_eq!(j.reclaimable_upto(), j.log().next_seq());
}
