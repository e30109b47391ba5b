use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use corvus_core::session::{ArmedWill, PendingWill, NEVER_EXPIRES};
use corvus_core::{ClientId, Message, SubscriptionEntry};
use mqtt_codec::{MqttString, PublishProperties, QoS, RetainHandling, SubscriptionOptions};
use proptest::prelude::*;
use redb::{ReadableDatabase, TableDefinition};

use super::records::*;
use super::*;

fn s(v: &str) -> MqttString {
    MqttString::try_from(v).unwrap()
}

fn full_message(topic: &str) -> Message {
    Message {
        topic: s(topic),
        payload: Bytes::from_static(b"\x00payload\xff"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(3600),
            topic_alias: Some(7),
            response_topic: Some(s("reply/to")),
            correlation_data: Some(Bytes::from_static(b"\x01\x02corr")),
            user_properties: vec![
                (s("z"), s("last-name-first")),
                (s("a"), s("1")),
                (s("a"), s("2")),
                (s(""), s("")),
            ],
            subscription_identifiers: vec![5, 268_435_455, 1],
            content_type: Some(s("application/json")),
        },
        expires_at: Some(1_700_000_000_000),
        publisher: Some(Arc::from("publisher-ü")),
        received_at: None,
    }
}

fn plain_message(topic: &str, expires_at: Option<u64>) -> Message {
    Message {
        topic: s(topic),
        payload: Bytes::from_static(b"p"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: PublishProperties::default(),
        expires_at,
        publisher: None,
        received_at: None,
    }
}

fn session(disconnected_at: Option<u64>, expiry: u32) -> SessionRecord {
    SessionRecord {
        expiry_interval: expiry,
        disconnected_at,
        armed_will: None,
        pending_will: None,
        last_packet_id: 42,
        principal: None,
    }
}

fn sub_entry(qos: QoS, id: Option<u32>) -> SubscriptionEntry {
    SubscriptionEntry {
        options: SubscriptionOptions {
            qos,
            no_local: true,
            retain_as_published: false,
            retain_handling: RetainHandling::DoNotSend,
        },
        identifier: id,
    }
}

fn open(dir: &Path) -> KeyedStore {
    let (store, report) = KeyedStore::open(dir).unwrap();
    assert!(report.quarantined.is_none(), "{report:?}");
    store
}

// ---- encodings ----

#[test]
fn message_round_trips_with_every_property_in_order() {
    let m = full_message("a/b");
    assert_eq!(decode_retained(&encode_retained(&m)).unwrap(), m);
    let bare = plain_message("x", None);
    assert_eq!(decode_retained(&encode_retained(&bare)).unwrap(), bare);
}

#[test]
fn session_record_round_trips() {
    for rec in [
        session(None, 0),
        session(Some(123), NEVER_EXPIRES),
        SessionRecord {
            expiry_interval: 60,
            disconnected_at: Some(5),
            armed_will: None,
            pending_will: Some(PendingWill {
                message: Arc::new(full_message("will/topic")),
                due_at: 99,
            }),
            last_packet_id: u16::MAX,
            principal: None,
        },
        // Online, with its connection's will armed (and one left pending by an earlier
        // connection is not possible then, but the format holds both).
        SessionRecord {
            expiry_interval: 60,
            disconnected_at: None,
            armed_will: Some(ArmedWill {
                message: Arc::new(full_message("will/armed")),
                delay_secs: 30,
            }),
            pending_will: Some(PendingWill {
                message: Arc::new(full_message("will/topic")),
                due_at: 99,
            }),
            last_packet_id: 7,
            principal: Some("token:EnEKBwoFc2l0ZS0x…ü".into()),
        },
        SessionRecord {
            principal: Some("".into()),
            ..session(Some(1), 5)
        },
    ] {
        let bytes = encode_session(&rec);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode_session(&bytes).unwrap(), rec);
    }
}

/// A session record as builds before the principal wrote it (flags bits 0-2 only) still
/// decodes, with no principal; the principal is flag bit 3 and a `bytes32` at the end.
#[test]
fn a_session_record_of_the_layout_before_the_principal_decodes_without_one() {
    let mut old = vec![1]; // record version
    old.extend_from_slice(&600u32.to_le_bytes()); // session expiry interval
    old.extend_from_slice(&9u16.to_le_bytes()); // last packet id
    old.push(0b011); // disconnected_at, pending will
    old.extend_from_slice(&1_000u64.to_le_bytes()); // disconnected_at
    old.extend_from_slice(&5_000u64.to_le_bytes()); // will due_at
    old.extend_from_slice(&6u16.to_le_bytes()); // message: topic
    old.extend_from_slice(b"a/will");
    old.extend_from_slice(&4u32.to_le_bytes()); // payload
    old.extend_from_slice(b"gone");
    old.push(0b001); // QoS 1, no retain, no expiry, no publisher
    old.push(0); // no properties
    old.extend_from_slice(&0u32.to_le_bytes()); // no user properties
    old.extend_from_slice(&0u32.to_le_bytes()); // no subscription identifiers
    let rec = decode_session(&old).expect("the old layout decodes");
    assert_eq!(rec.principal, None);
    assert_eq!(rec.expiry_interval, 600);
    assert_eq!(rec.last_packet_id, 9);
    assert_eq!(rec.disconnected_at, Some(1_000));
    let will = rec.pending_will.clone().expect("its will");
    assert_eq!(will.due_at, 5_000);
    assert_eq!(will.message.topic.as_str(), "a/will");
    assert_eq!(&will.message.payload[..], b"gone");
    assert_eq!(will.message.qos, QoS::AtLeastOnce);
    // Written again, it is the same bytes: no principal adds nothing.
    assert_eq!(encode_session(&rec), old);

    // The same record with a principal: flag bit 3, then its bytes32 at the very end.
    let with = encode_session(&SessionRecord {
        principal: Some("user:alice".into()),
        ..rec
    });
    assert_eq!(with[7], 0b1011);
    assert_eq!(&with[8..old.len()], &old[8..]);
    assert_eq!(&with[old.len()..old.len() + 4], &10u32.to_le_bytes());
    assert_eq!(&with[old.len() + 4..], b"user:alice");

    // Its Debug never shows a token.
    let token = SessionRecord {
        principal: Some("token:secret".into()),
        ..decode_session(&with).unwrap()
    };
    assert!(!format!("{token:?}").contains("secret"));

    // A principal that is not UTF-8 is an error, not a panic.
    let mut bad = with.clone();
    let end = bad.len();
    bad[end - 1] = 0xff;
    assert_eq!(decode_session(&bad), Err(DecodeError::Invalid("principal")));
    // Flag bits past bit 3 are still unknown.
    let mut unknown = old.clone();
    unknown[7] |= 0b1_0000;
    assert!(decode_session(&unknown).is_err());
}

#[test]
fn subscription_round_trips_every_option() {
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for rh in [
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ] {
            for (nl, rap) in [(false, false), (true, false), (false, true), (true, true)] {
                for id in [None, Some(1), Some(268_435_455)] {
                    let e = SubscriptionEntry {
                        options: SubscriptionOptions {
                            qos,
                            no_local: nl,
                            retain_as_published: rap,
                            retain_handling: rh,
                        },
                        identifier: id,
                    };
                    assert_eq!(decode_subscription(&encode_subscription(&e)).unwrap(), e);
                }
            }
        }
    }
}

#[test]
fn every_truncation_and_bad_version_is_an_error() {
    let rec = SessionRecord {
        expiry_interval: 60,
        disconnected_at: Some(5),
        armed_will: None,
        pending_will: Some(PendingWill {
            message: Arc::new(full_message("w")),
            due_at: 9,
        }),
        last_packet_id: 3,
        principal: Some("user:alice".into()),
    };
    let bytes = encode_session(&rec);
    for n in 0..bytes.len() {
        assert!(decode_session(&bytes[..n]).is_err(), "prefix {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode_session(&longer), Err(DecodeError::TrailingBytes(1)));
    let mut future = bytes.clone();
    future[0] = 2;
    assert_eq!(
        decode_session(&future),
        Err(DecodeError::UnsupportedVersion(2))
    );
    let m = encode_retained(&full_message("t"));
    for n in 0..m.len() {
        assert!(decode_retained(&m[..n]).is_err());
    }
    let e = encode_subscription(&sub_entry(QoS::AtLeastOnce, Some(3)));
    for n in 0..e.len() {
        assert!(decode_subscription(&e[..n]).is_err());
    }
    assert!(decode_subscription(&[1, 0b11, 0]).is_err(), "qos 3");
    assert!(
        decode_subscription(&[1, 0b11_0000, 0]).is_err(),
        "retain handling 3"
    );
    assert!(decode_subscription(&[1, 0, 2]).is_err(), "unknown flag");
}

#[test]
fn huge_counts_are_refused_without_allocating() {
    // A message with no optional property, then a user property count of u32::MAX.
    let mut w = Writer::record();
    w.u16(1);
    w.u8(b't');
    w.u32(0); // payload
    w.u8(0); // flags
    w.u8(0); // property flags
    w.u32(u32::MAX);
    assert!(matches!(
        decode_retained(&w.finish()),
        Err(DecodeError::Truncated(_))
    ));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_session(&data);
        let _ = decode_retained(&data);
        let _ = decode_subscription(&data);
        let mut v = data.clone();
        v.insert(0, RECORD_VERSION);
        let _ = decode_session(&v);
        let _ = decode_retained(&v);
        let _ = decode_subscription(&v);
    }
}

// ---- the store ----

#[test]
fn every_record_type_round_trips_through_the_store_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rec = SessionRecord {
        expiry_interval: NEVER_EXPIRES,
        disconnected_at: Some(1000),
        armed_will: None,
        pending_will: Some(PendingWill {
            message: Arc::new(full_message("will")),
            due_at: u64::MAX,
        }),
        last_packet_id: 17,
        principal: Some("user:alice".into()),
    };
    {
        let (store, report) = KeyedStore::open(dir.path()).unwrap();
        assert!(report.created);
        store.put_session("c1", &rec).unwrap();
        store
            .put_subscription("c1", &s("a/+"), &sub_entry(QoS::AtLeastOnce, Some(9)))
            .unwrap();
        store
            .put_subscription("c1", &s("$share/g/#"), &sub_entry(QoS::ExactlyOnce, None))
            .unwrap();
        store.put_retained(&full_message("a/b")).unwrap();
    }
    let (store, report) = KeyedStore::open(dir.path()).unwrap();
    assert!(!report.created);
    let state = store.load(0).unwrap();
    assert_eq!(state.report, LoadReport::default());
    assert_eq!(
        state.sessions,
        vec![LoadedSession {
            client_id: Arc::from("c1"),
            record: rec,
            subscriptions: vec![
                (s("$share/g/#"), sub_entry(QoS::ExactlyOnce, None)),
                (s("a/+"), sub_entry(QoS::AtLeastOnce, Some(9))),
            ],
        }]
    );
    assert_eq!(state.retained, vec![full_message("a/b")]);
}

#[test]
fn removals_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_session("c", &session(None, 10)).unwrap();
    store
        .put_subscription("c", &s("x"), &sub_entry(QoS::AtMostOnce, None))
        .unwrap();
    store.put_retained(&plain_message("r", None)).unwrap();
    store.delete_subscription("c", "x").unwrap();
    store.delete_retained("r").unwrap();
    let state = store.load(0).unwrap();
    assert_eq!(state.sessions.len(), 1);
    assert!(state.sessions[0].subscriptions.is_empty());
    assert!(state.retained.is_empty());
}

#[test]
fn an_uncommitted_batch_leaves_nothing_and_a_committed_one_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    {
        let mut b = store.batch();
        b.put_session("c", &session(None, 10))
            .put_subscription("c", &s("t"), &sub_entry(QoS::AtLeastOnce, None))
            .put_retained(&plain_message("r", None));
        assert_eq!(b.len(), 3);
        // dropped without commit
    }
    let state = store.load(0).unwrap();
    assert!(state.sessions.is_empty() && state.retained.is_empty());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.load(0).unwrap(), LoadedState::default());

    let mut b = store.batch();
    b.put_session("c", &session(None, 10))
        .put_subscription("c", &s("t"), &sub_entry(QoS::AtLeastOnce, None))
        .put_retained(&plain_message("r", None))
        .delete_retained("r")
        .put_retained(&plain_message("r2", None));
    b.commit(Durability::Eventual).unwrap();
    store.sync().unwrap();
    drop(store);
    let state = open(dir.path()).load(0).unwrap();
    assert_eq!(state.sessions.len(), 1);
    assert_eq!(state.sessions[0].subscriptions.len(), 1);
    assert_eq!(state.retained, vec![plain_message("r2", None)]);
}

#[test]
fn deleting_a_session_deletes_its_subscriptions_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = store.batch();
    for c in ["a", "ab", "b"] {
        b.put_session(c, &session(None, 10))
            .put_subscription(c, &s("f/1"), &sub_entry(QoS::AtMostOnce, None))
            .put_subscription(c, &s("f/2"), &sub_entry(QoS::AtMostOnce, None));
    }
    b.commit(Durability::Immediate).unwrap();
    store.delete_session("a").unwrap();
    // Re-creating the session must not bring anything back.
    store.put_session("a", &session(None, 10)).unwrap();
    let state = store.load(0).unwrap();
    let by_id: BTreeMap<_, _> = state
        .sessions
        .iter()
        .map(|l| (l.client_id.to_string(), l))
        .collect();
    assert!(by_id["a"].subscriptions.is_empty());
    for c in ["ab", "b"] {
        assert_eq!(by_id[c].subscriptions.len(), 2);
    }
    assert_eq!(state.report.orphan_subscriptions, 0);
}

#[test]
fn expired_sessions_and_retained_are_deleted_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let will = PendingWill {
        message: Arc::new(plain_message("will", None)),
        due_at: 50_000,
    };
    let mut b = store.batch();
    // Disconnected at 1000 with 10 s: expires at 11 000.
    b.put_session(
        "gone",
        &SessionRecord {
            armed_will: None,
            pending_will: Some(will.clone()),
            principal: Some("user:gone".into()),
            ..session(Some(1000), 10)
        },
    )
    .put_subscription("gone", &s("t"), &sub_entry(QoS::AtMostOnce, None))
    .put_session("edge", &session(Some(1000), 11)) // expires at 12 000
    .put_session("online", &session(None, 0))
    .put_session("forever", &session(Some(0), NEVER_EXPIRES))
    .put_retained(&plain_message("old", Some(11_000)))
    .put_retained(&plain_message("young", Some(11_001)))
    .put_retained(&plain_message("eternal", None));
    b.commit(Durability::Immediate).unwrap();
    drop(store);

    let store = open(dir.path());
    let state = store.load(11_000).unwrap();
    let ids: Vec<_> = state
        .sessions
        .iter()
        .map(|l| l.client_id.to_string())
        .collect();
    assert_eq!(ids, ["edge", "forever", "online"]);
    assert_eq!(state.report.expired_sessions, vec![ClientId::from("gone")]);
    assert_eq!(
        state.expired_wills,
        vec![ExpiredWill {
            client_id: ClientId::from("gone"),
            will,
            principal: Some("user:gone".into()),
        }]
    );
    assert_eq!(state.report.expired_retained, 1);
    let topics: Vec<_> = state.retained.iter().map(|m| m.topic.to_string()).collect();
    assert_eq!(topics, ["eternal", "young"]);
    assert_eq!(state.report.orphan_subscriptions, 0);

    // Deleted for good, subscriptions included.
    let state = store.load(0).unwrap();
    assert_eq!(state.sessions.len(), 3);
    assert_eq!(state.retained.len(), 2);
    assert_eq!(state.report, LoadReport::default());
    let report = check(dir.path());
    drop(store);
    assert!(report.is_err(), "the database is locked while open");
    let report = check(dir.path()).unwrap();
    assert_eq!(report.subscriptions, 0);
}

// ---- files ----

#[cfg(unix)]
#[test]
fn files_are_created_0600_in_a_0700_directory() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let _store = open(&dir);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
}

#[test]
fn an_empty_file_becomes_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), b"").unwrap();
    let (store, report) = KeyedStore::open(dir.path()).unwrap();
    assert!(report.created && report.quarantined.is_none());
    store.put_session("c", &session(None, 1)).unwrap();
    assert_eq!(store.load(0).unwrap().sessions.len(), 1);
}

fn assert_quarantined(dir: &Path, original: &[u8]) {
    let (store, report) = KeyedStore::open(dir).unwrap();
    let q = report.quarantined.expect("quarantined");
    assert!(report.created);
    assert_eq!(q.from, dir.join(STATE_FILE));
    assert_eq!(q.to, dir.join(QUARANTINE_DIR).join("state.redb.1"));
    assert_eq!(std::fs::read(&q.to).unwrap(), original);
    assert!(!q.reason.is_empty());
    assert_eq!(store.load(0).unwrap(), LoadedState::default());
    store.put_session("c", &session(None, 1)).unwrap();
    drop(store);
    assert_eq!(open(dir).load(0).unwrap().sessions.len(), 1);
}

#[test]
fn random_bytes_are_quarantined_and_an_empty_store_started() {
    let dir = tempfile::tempdir().unwrap();
    let junk: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.path().join(STATE_FILE), &junk).unwrap();
    assert_quarantined(dir.path(), &junk);
    // A second damaged file goes next to the first.
    drop(std::fs::write(dir.path().join(STATE_FILE), b"junk"));
    let (_s, report) = KeyedStore::open(dir.path()).unwrap();
    assert_eq!(
        report.quarantined.unwrap().to,
        dir.path().join(QUARANTINE_DIR).join("state.redb.2")
    );
}

#[test]
fn a_truncated_database_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.put_retained(&full_message("x")).unwrap();
    }
    let path = dir.path().join(STATE_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let cut = bytes[..bytes.len() / 3].to_vec();
    std::fs::write(&path, &cut).unwrap();
    assert_quarantined(dir.path(), &cut);
}

#[test]
fn a_redb_file_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<&str, u64>::new("theirs"))
            .unwrap()
            .insert("k", 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = KeyedStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::ForeignState { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("theirs"),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "left untouched");
    assert!(!dir.path().join(QUARANTINE_DIR).exists());
    assert!(matches!(
        check(dir.path()),
        Err(StoreError::ForeignState { .. })
    ));
}

fn set_meta(path: &Path, key: &[u8], value: &[u8]) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(key, value).unwrap();
    txn.commit().unwrap();
}

#[test]
fn foreign_metadata_and_a_future_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    drop(open(dir.path()));
    set_meta(&path, b"format_version", &2u32.to_le_bytes());
    let err = KeyedStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedStateVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert!(matches!(
        check(dir.path()),
        Err(StoreError::UnsupportedStateVersion { .. })
    ));

    set_meta(&path, b"format_version", &1u32.to_le_bytes());
    set_meta(&path, b"magic", b"something-else");
    let err = KeyedStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::ForeignState { .. }), "{err}");
}

#[test]
fn a_redb_file_without_any_table_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    drop(redb::Database::create(dir.path().join(STATE_FILE)).unwrap());
    let (_store, report) = KeyedStore::open(dir.path()).unwrap();
    assert!(report.created && report.quarantined.is_none());
}

// ---- undecodable records ----

#[test]
fn undecodable_records_are_skipped_quarantined_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    {
        let store = open(dir.path());
        let mut b = store.batch();
        b.put_session("good", &session(None, 5))
            .put_session("bad", &session(None, 5))
            .put_subscription("good", &s("g"), &sub_entry(QoS::AtLeastOnce, None))
            .put_subscription("bad", &s("b"), &sub_entry(QoS::AtLeastOnce, None))
            .put_retained(&plain_message("r1", None))
            .put_retained(&plain_message("r2", None));
        b.commit(Durability::Immediate).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SESSIONS).unwrap();
            t.insert(&b"bad"[..], &b"\x01garbage"[..]).unwrap();
            t.insert(&b"\xff\xfe"[..], &encode_session(&session(None, 1))[..])
                .unwrap();
            t.insert(&b"future"[..], &b"\x09"[..]).unwrap();
            let mut r = txn.open_table(RETAINED).unwrap();
            r.insert(
                &b"r2"[..],
                &encode_retained(&plain_message("other", None))[..],
            )
            .unwrap();
            let mut sub = txn.open_table(SUBSCRIPTIONS).unwrap();
            sub.insert((&b"good"[..], &b"h"[..]), &b""[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let report = check(dir.path()).unwrap();
    assert_eq!(report.undecodable.len(), 5, "{report}");
    assert_eq!(
        report.orphan_subscriptions,
        vec![("bad".into(), "b".into())]
    );
    assert!(!report.is_clean());
    let text = report.to_string();
    assert!(text.contains("invalid session flags"), "{text}");
    assert!(text.contains("PROBLEMS FOUND"), "{text}");

    let store = open(dir.path());
    let state = store.load(0).unwrap();
    let ids: Vec<_> = state
        .sessions
        .iter()
        .map(|l| l.client_id.to_string())
        .collect();
    assert_eq!(ids, ["good"]);
    assert_eq!(state.sessions[0].subscriptions.len(), 1);
    assert_eq!(state.retained, vec![plain_message("r1", None)]);
    let mut bad: Vec<_> = state
        .report
        .quarantined
        .iter()
        .map(|b| (b.table, b.key.clone()))
        .collect();
    bad.sort();
    assert_eq!(
        bad,
        [
            ("retained", "r2".to_string()),
            ("sessions", "bad".to_string()),
            ("sessions", "future".to_string()),
            ("sessions", "\u{fffd}\u{fffd}".to_string()),
            ("subscriptions", "good / h".to_string()),
        ]
    );
    assert!(state
        .report
        .quarantined
        .iter()
        .any(|b| b.reason.contains("record version 9")));
    assert_eq!(state.report.orphan_subscriptions, 1);
    // They were moved: the next load is clean apart from the orphan.
    let again = store.load(0).unwrap();
    assert!(again.report.quarantined.is_empty());
    drop(store);
    let report = check(dir.path()).unwrap();
    assert_eq!(report.quarantined_records, 5);
    assert!(report.undecodable.is_empty());
    // The quarantine table keeps the raw bytes.
    let db = redb::ReadOnlyDatabase::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let q = txn.open_table(QUARANTINE).unwrap();
    let entries: Vec<_> = redb::ReadableTable::iter(&q)
        .unwrap()
        .map(|e| decode_quarantine_entry(e.unwrap().1.value()).unwrap())
        .collect();
    assert!(entries
        .iter()
        .any(|(t, k, len, _)| t == "sessions" && k == b"bad" && *len == 8));
}

#[test]
fn check_and_dump_describe_the_store() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!check(dir.path()).unwrap().exists);
    {
        let store = open(dir.path());
        let mut b = store.batch();
        b.put_session("c1", &session(Some(7), 60))
            .put_subscription("c1", &s("a"), &sub_entry(QoS::AtMostOnce, None))
            .put_subscription("c1", &s("b"), &sub_entry(QoS::AtMostOnce, None))
            .put_session("c2", &session(None, 0))
            .put_retained(&plain_message("r", None))
            .put_retained(&full_message("f"));
        b.commit(Durability::Immediate).unwrap();
    }
    let report = check(dir.path()).unwrap();
    assert!(report.is_clean());
    assert_eq!(
        (report.sessions, report.subscriptions, report.retained),
        (2, 2, 2)
    );
    assert_eq!(report.retained_bytes, 1 + 9);
    assert!(report.to_string().contains("OK"));

    let d = dump(dir.path()).unwrap();
    assert_eq!(d.sessions.len(), 2);
    assert_eq!(d.sessions[0].client_id, "c1");
    assert_eq!(d.sessions[0].subscriptions, 2);
    assert_eq!(d.sessions[1].subscriptions, 0);
    assert_eq!((d.retained_count, d.retained_bytes), (2, 10));
    let text = d.to_string();
    assert!(
        text.contains("c1") && text.contains("subscriptions=2"),
        "{text}"
    );
    assert!(
        text.contains("retained: 2 messages, 10 payload bytes"),
        "{text}"
    );

    std::fs::write(dir.path().join(STATE_FILE), b"junk junk junk").unwrap();
    assert!(check(dir.path()).unwrap().damaged.is_some());
    assert!(matches!(
        dump(dir.path()),
        Err(StoreError::DamagedState { .. })
    ));
}

// ---- model test ----

#[derive(Debug, Clone)]
enum ModelOp {
    PutSession(u8, u32, Option<u64>, bool, u16),
    DeleteSession(u8),
    PutSub(u8, u8, u8, Option<u32>),
    DeleteSub(u8, u8),
    PutRetained(u8, Option<u64>, u8),
    DeleteRetained(u8),
    Commit,
}

fn op_strategy() -> impl Strategy<Value = ModelOp> {
    let c = 0u8..4;
    prop_oneof![
        (
            c.clone(),
            prop_oneof![Just(0u32), Just(5), Just(NEVER_EXPIRES)],
            proptest::option::of(0u64..20_000),
            any::<bool>(),
            any::<u16>()
        )
            .prop_map(|(c, e, d, w, l)| ModelOp::PutSession(c, e, d, w, l)),
        c.clone().prop_map(ModelOp::DeleteSession),
        (c.clone(), 0u8..3, 0u8..3, proptest::option::of(1u32..100))
            .prop_map(|(c, f, q, i)| ModelOp::PutSub(c, f, q, i)),
        (c, 0u8..3).prop_map(|(c, f)| ModelOp::DeleteSub(c, f)),
        (0u8..4, proptest::option::of(0u64..20_000), any::<u8>())
            .prop_map(|(t, e, p)| ModelOp::PutRetained(t, e, p)),
        (0u8..4).prop_map(ModelOp::DeleteRetained),
        Just(ModelOp::Commit),
    ]
}

#[derive(Default, Clone)]
struct Model {
    sessions: BTreeMap<String, SessionRecord>,
    subs: BTreeMap<(String, String), SubscriptionEntry>,
    retained: BTreeMap<String, Message>,
}

fn cid(c: u8) -> String {
    format!("client-{c}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_match_a_model_after_reopen(
        ops in proptest::collection::vec(op_strategy(), 0..40),
        now in 0u64..25_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut committed = Model::default();
        {
            let store = open(dir.path());
            let mut pending = committed.clone();
            let mut batch = store.batch();
            for op in ops {
                match op {
                    ModelOp::PutSession(c, e, d, w, l) => {
                        let rec = SessionRecord {
                            expiry_interval: e,
                            disconnected_at: d,
                            armed_will: None,
                            pending_will: w.then(|| PendingWill {
                                message: Arc::new(full_message("will")),
                                due_at: 3,
                            }),
                            last_packet_id: l,
                            principal: None,
                        };
                        batch.put_session(&cid(c), &rec);
                        pending.sessions.insert(cid(c), rec);
                    }
                    ModelOp::DeleteSession(c) => {
                        batch.delete_session(&cid(c));
                        pending.sessions.remove(&cid(c));
                        pending.subs.retain(|(k, _), _| *k != cid(c));
                    }
                    ModelOp::PutSub(c, f, q, i) => {
                        let e = sub_entry(QoS::from_bits(q).unwrap(), i);
                        let filter = format!("f/{f}");
                        batch.put_subscription(&cid(c), &s(&filter), &e);
                        pending.subs.insert((cid(c), filter), e);
                    }
                    ModelOp::DeleteSub(c, f) => {
                        let filter = format!("f/{f}");
                        batch.delete_subscription(&cid(c), &filter);
                        pending.subs.remove(&(cid(c), filter));
                    }
                    ModelOp::PutRetained(t, e, p) => {
                        let mut m = plain_message(&format!("t/{t}"), e);
                        m.payload = Bytes::from(vec![p; usize::from(p % 8)]);
                        batch.put_retained(&m);
                        pending.retained.insert(format!("t/{t}"), m);
                    }
                    ModelOp::DeleteRetained(t) => {
                        batch.delete_retained(&format!("t/{t}"));
                        pending.retained.remove(&format!("t/{t}"));
                    }
                    ModelOp::Commit => {
                        std::mem::replace(&mut batch, store.batch())
                            .commit(Durability::Eventual)
                            .unwrap();
                        committed = pending.clone();
                    }
                }
            }
            // The last batch is dropped uncommitted: it must leave nothing.
            drop(batch);
        }
        let store = open(dir.path());
        let state = store.load(now).unwrap();

        let mut expected = Vec::new();
        let mut expired = Vec::new();
        for (c, rec) in &committed.sessions {
            if rec.is_expired(now) {
                expired.push(ClientId::from(c.as_str()));
                continue;
            }
            expected.push(LoadedSession {
                client_id: ClientId::from(c.as_str()),
                record: rec.clone(),
                subscriptions: committed
                    .subs
                    .iter()
                    .filter(|((k, _), _)| k == c)
                    .map(|((_, f), e)| (s(f), e.clone()))
                    .collect(),
            });
        }
        let retained: Vec<Message> = committed
            .retained
            .values()
            .filter(|m| !m.is_expired(now))
            .cloned()
            .collect();
        prop_assert_eq!(&state.sessions, &expected);
        prop_assert_eq!(&state.retained, &retained);
        prop_assert_eq!(&state.report.expired_sessions, &expired);
        prop_assert!(state.report.quarantined.is_empty());
    }
}

#[test]
fn damage_anywhere_in_the_file_never_panics_and_never_refuses() {
    let src = tempfile::tempdir().unwrap();
    {
        let store = open(src.path());
        let mut b = store.batch();
        for i in 0..50u16 {
            let c = format!("client-{i}");
            b.put_session(&c, &session(Some(1), 60))
                .put_subscription(&c, &s("a/#"), &sub_entry(QoS::AtLeastOnce, Some(1)))
                .put_retained(&full_message(&format!("t/{i}")));
        }
        b.commit(Durability::Immediate).unwrap();
    }
    let original = std::fs::read(src.path().join(STATE_FILE)).unwrap();
    let step = (original.len() / 40).max(1);
    let mut quarantined = 0;
    for at in (0..original.len()).step_by(step) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = original.clone();
        for b in &mut bytes[at..(at + 64).min(original.len())] {
            *b ^= 0x5a;
        }
        std::fs::write(dir.path().join(STATE_FILE), &bytes).unwrap();
        match KeyedStore::open(dir.path()) {
            Ok((store, report)) => {
                if report.quarantined.is_some() {
                    quarantined += 1;
                }
                store.load(0).unwrap();
                let _ = check(dir.path());
            }
            Err(e) => panic!("damage at {at} refused: {e}"),
        }
    }
    assert!(quarantined > 0);
}

#[test]
fn a_missing_table_is_recreated_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    {
        let store = open(dir.path());
        store.put_session("c", &session(None, 5)).unwrap();
        store.put_retained(&plain_message("r", None)).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(RETAINED).unwrap());
        assert!(txn.delete_table(QUARANTINE).unwrap());
        txn.commit().unwrap();
    }
    let report = check(dir.path()).unwrap();
    assert_eq!((report.sessions, report.retained), (1, 0));
    assert!(report.is_clean(), "{report}");
    let (store, report) = KeyedStore::open(dir.path()).unwrap();
    assert!(!report.created && report.quarantined.is_none());
    let state = store.load(0).unwrap();
    assert_eq!(state.sessions.len(), 1);
    assert!(state.retained.is_empty());
    store.put_retained(&plain_message("r", None)).unwrap();
}

#[test]
fn an_inbound_qos2_table_left_by_an_earlier_build_is_ignored() {
    // Earlier builds kept inbound QoS 2 ids in this table; they now live in the journal.
    const OLD_INBOUND_QOS2: TableDefinition<(&[u8], u16), ()> =
        TableDefinition::new("inbound_qos2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    {
        let store = open(dir.path());
        let mut b = store.batch();
        b.put_session("c", &session(None, 5))
            .put_subscription("c", &s("t"), &sub_entry(QoS::ExactlyOnce, None))
            .put_retained(&plain_message("r", None));
        b.commit(Durability::Immediate).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(OLD_INBOUND_QOS2).unwrap();
            t.insert((&b"c"[..], 7u16), ()).unwrap();
            // Rows that the old load would have quarantined or counted as orphans.
            t.insert((&b"c"[..], 0u16), ()).unwrap();
            t.insert((&b"nobody"[..], 9u16), ()).unwrap();
        }
        txn.commit().unwrap();
    }

    let report = check(dir.path()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        (report.sessions, report.subscriptions, report.retained),
        (1, 1, 1)
    );
    let (store, open_report) = KeyedStore::open(dir.path()).unwrap();
    assert!(!open_report.created && open_report.quarantined.is_none());
    let state = store.load(0).unwrap();
    assert_eq!(state.report, LoadReport::default());
    assert_eq!(state.sessions.len(), 1);
    assert_eq!(state.sessions[0].subscriptions.len(), 1);
    assert_eq!(state.retained, vec![plain_message("r", None)]);
    // Deleting the session works and leaves the old table as it was.
    store.delete_session("c").unwrap();
    drop(store);
    let db = redb::ReadOnlyDatabase::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(OLD_INBOUND_QOS2).unwrap();
    assert_eq!(redb::ReadableTableMetadata::len(&t).unwrap(), 3);
}
