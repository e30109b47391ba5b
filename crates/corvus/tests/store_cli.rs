//! `corvus store check|dump DIR` on the real binary: a missing directory, a directory
//! populated through the `corvus-store` API, a damaged one (exit codes, key lines, nothing
//! modified), and the help of the new subcommands next to the broker's flags.

mod support;

use std::collections::BTreeMap;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use corvus_core::session::ArmedWill;
use corvus_core::{ClientId, Message};
use corvus_store::fs::OsFileSystem;
use corvus_store::journal::Record;
use corvus_store::keyed::{KeyedStore, SessionRecord};
use corvus_store::segment::HEADER_LEN;
use corvus_store::{Journal, LogOptions, QUEUE_DIR, STATE_DIR};
use mqtt_codec::{MqttString, PublishProperties, QoS};
use support::{last_segment, Proc, CLIENT_TIMEOUT};

/// Runs `corvus ARGS` to completion (killed after its time limit) and returns its output.
fn corvus(args: &[&str]) -> support::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corvus"));
    cmd.env_remove("RUST_LOG").args(args);
    let name = format!("corvus {}", args.join(" "));
    let out = Proc::spawn(&name, &mut cmd).finish(CLIENT_TIMEOUT);
    assert!(!out.timed_out, "{name} did not exit: {out}");
    out
}

fn store(sub: &str, dir: &Path) -> support::Output {
    let dir = dir.to_str().expect("temp paths are UTF-8");
    corvus(&["store", sub, dir])
}

fn code(out: &support::Output) -> Option<i32> {
    out.status.and_then(|s| s.code())
}

fn message(payload: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: MqttString::try_from("sensors/kitchen").unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: None,
        received_at: None,
    })
}

fn enqueue(client: &str, id: u64) -> Record {
    Record::Enqueue {
        client: ClientId::from(client),
        message: id,
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
    }
}

/// Sessions "kitchen" (offline, 2 queued + 1 inflight) and "hall" (online, with a will armed,
/// nothing queued, one inbound QoS 2 id awaiting PUBREL), one retained message, and a queue for
/// "gone", which has no session.
fn populate(dir: &Path) {
    let (keyed, _) = KeyedStore::open(&dir.join(STATE_DIR)).unwrap();
    let session = |disconnected_at: Option<u64>| SessionRecord {
        expiry_interval: 3600,
        disconnected_at,
        pending_will: None,
        // An online session's connection has its will armed.
        armed_will: disconnected_at.is_none().then(|| ArmedWill {
            message: message("hall lost"),
            delay_secs: 5,
        }),
        last_packet_id: 0,
        principal: None,
    };
    keyed
        .put_session("kitchen", &session(Some(1_700_000_000_000)))
        .unwrap();
    keyed.put_session("hall", &session(None)).unwrap();
    keyed.put_retained(&message("21.5")).unwrap();
    drop(keyed);

    let (mut journal, ..) = Journal::open(
        Arc::new(OsFileSystem),
        dir.join(QUEUE_DIR),
        LogOptions::default(),
        0,
    )
    .unwrap();
    let mut records: Vec<Record> = (1..=4)
        .map(|id| Record::Message {
            id,
            message: message("0123456789"),
        })
        .collect();
    records.extend([
        enqueue("kitchen", 1),
        enqueue("kitchen", 2),
        enqueue("kitchen", 3),
        Record::Sent {
            client: "kitchen".into(),
            message: 1,
            packet_id: NonZeroU16::new(1).unwrap(),
        },
        enqueue("gone", 4),
        Record::Received {
            client: "hall".into(),
            packet_id: NonZeroU16::new(3).unwrap(),
            copies: vec![],
        },
    ]);
    journal.write(&records).unwrap();
    journal.sync().unwrap();
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn assert_lines(out: &support::Output, lines: &[&str]) {
    for line in lines {
        assert!(out.stdout.contains(line), "missing {line:?}: {out}");
    }
}

#[test]
fn help_lists_the_store_commands_and_the_broker_flags_still_work() {
    let out = corvus(&["--help"]);
    assert!(out.success(), "{out}");
    assert_lines(&out, &["--listen", "--data-dir", "store"]);

    let out = corvus(&["store", "--help"]);
    assert!(out.success(), "{out}");
    assert_lines(&out, &["check", "dump"]);

    let out = corvus(&["store", "check", "--help"]);
    assert!(out.success(), "{out}");
    assert_lines(&out, &["Exit status", "1 when damage was found"]);

    // Broker flags and subcommands do not mix; flag errors are still reported as before.
    let out = corvus(&["--log-level", "loud"]);
    assert_eq!(code(&out), Some(2), "{out}");
    let out = corvus(&["store", "check"]);
    assert_eq!(code(&out), Some(2), "a DIR is required: {out}");
}

#[test]
fn a_missing_directory_is_an_empty_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("no-such-dir");
    let out = store("check", &dir);
    assert_eq!(code(&out), Some(0), "{out}");
    assert_lines(&out, &["does not exist: empty store", "result: OK"]);
    let out = store("dump", &dir);
    assert_eq!(code(&out), Some(0), "{out}");
    assert_lines(&out, &["no sessions", "retained: 0 messages"]);
    assert!(!dir.exists(), "the tools created the directory");
}

#[test]
fn a_populated_directory_is_checked_and_dumped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir);
    let before = files(dir);

    let out = store("check", dir);
    assert_eq!(code(&out), Some(0), "{out}");
    assert_lines(
        &out,
        &[
            "state: 2 sessions, 0 subscriptions, 1 retained message (4 payload bytes)",
            "queue: 1 segment, 10 records,",
            "live: 3 queued, 1 inflight (40 payload bytes), 1 inbound QoS 2 id awaiting PUBREL \
             for 3 clients",
            "damage: none",
            "result: OK",
        ],
    );

    let out = store("dump", dir);
    assert_eq!(code(&out), Some(0), "{out}");
    assert_lines(
        &out,
        &[
            "CLIENT",
            "offline since 2023-11-14T22:13:20Z",
            "orphan queue",
            "retained: 1 message, 4 payload bytes",
            "total: 2 sessions (1 orphan queue)",
        ],
    );
    // The last four columns: QOS2-IN, QUEUED, INFLIGHT, BYTES.
    let kitchen = out.lines_with("kitchen");
    let cells: Vec<&str> = kitchen[0].split_whitespace().collect();
    assert_eq!(cells[cells.len() - 4..], ["0", "2", "1", "30"], "{out}");
    let hall = out.lines_with("hall");
    assert!(hall[0].contains("online"), "{out}");
    let cells: Vec<&str> = hall[0].split_whitespace().collect();
    // The row without its client id: EXPIRY, STATE, WILL, ...
    assert_eq!(cells[2], "armed", "the WILL column: {out}");
    assert_eq!(cells[cells.len() - 4..], ["1", "0", "0", "0"], "{out}");

    assert_eq!(files(dir), before, "check and dump changed the directory");
}

#[test]
fn damage_exits_1_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir);
    let seg = last_segment(dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let first = HEADER_LEN as usize;
    bytes[first + 20] ^= 0xFF; // inside the first record's payload
    let torn = bytes.len() - 5;
    bytes.truncate(torn); // the last record cut short
    std::fs::write(&seg, &bytes).unwrap();
    let before = files(dir);

    let out = store("check", dir);
    assert_eq!(code(&out), Some(1), "{out}");
    assert_lines(
        &out,
        &[
            &format!("@ {first}: checksum-mismatch"),
            "torn-record",
            "result: PROBLEMS FOUND",
        ],
    );
    let out = store("dump", dir);
    assert_eq!(code(&out), Some(0), "{out}");
    assert_lines(&out, &["problems:", "corvus store check"]);

    assert_eq!(files(dir), before, "check and dump changed the directory");
}

#[test]
fn an_unreadable_state_is_an_error_and_foreign_files_are_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir);
    std::fs::write(dir.join(QUEUE_DIR).join("notes.txt"), b"not a segment").unwrap();
    let out = store("check", dir);
    assert_eq!(code(&out), Some(1), "{out}");
    assert_lines(&out, &["foreign: 1", "notes.txt: unexpected entry"]);

    // A state "database" that is a directory cannot be read: exit 2 with the path.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join(STATE_DIR).join("state.redb")).unwrap();
    let out = store("check", &other);
    assert_eq!(code(&out), Some(2), "{out}");
    assert!(out.stderr.contains("state.redb"), "{out}");
}
