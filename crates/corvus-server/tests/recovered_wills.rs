//! Wills recovered from the store after a restart are checked like any other will when they
//! fire (issue #5): the identity of the client that armed a will is persisted with its
//! session (its principal) and judged again at recovery against the files as they are then,
//! failing closed. Pending delayed wills, wills armed when the broker stopped, and wills of
//! sessions that expired while it was down are all covered; the store-level decoding of
//! records without a principal is in `corvus-store` (`keyed::tests`).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::auth::{in_an_hour, will, with_login, with_token, Secured};
use common::*;
use corvus_core::session::{ArmedWill, PendingWill};
use corvus_core::{DropReason, Message, SubscriptionEntry};
use corvus_server::{Server, Store};
use corvus_store::keyed::SessionRecord;
use corvus_store::{StoreOp, StoreOptions};
use mqtt_codec::{
    Connect, Packet, ProtocolVersion, PublishProperties, QoS, ReasonCode, SubscriptionOptions,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Everyone publishes under `devices/{user}/#`; ops subscribes to `devices/#`.
const ACL: &str = r#"
[[rule]]
everyone = true
allow = ["publish", "subscribe"]
topics = ["devices/%u/#"]

[[rule]]
user = "ops"
allow = ["subscribe"]
topics = ["devices/#"]
"#;

/// How long a test waits for a will whose delay (2 s) runs from before the restart. ops's
/// session is subscribed before the first broker stops, so a will firing before ops is back
/// is queued for it, not missed.
const WILL_WAIT: Duration = Duration::from_secs(6);

fn secured() -> Secured {
    Secured::new(&["alice", "ops"], ACL)
}

/// A secured broker on a free loopback port, persisting in `dir`.
async fn start_secured_in(files: &Secured, dir: &Path) -> (Server, SocketAddr) {
    files.start(|c| c.data_dir = dir.to_path_buf()).await
}

/// A persistent session (expiry 3600 s) with a will on `topic` delayed by 2 s, logged in by
/// `login` ([`with_login`] or [`with_token`]).
fn with_delayed_will<'a>(
    topic: &'a str,
    login: impl FnOnce(&mut Connect) + 'a,
) -> impl FnOnce(&mut Connect) + 'a {
    move |c: &mut Connect| {
        login(c);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
        let mut will = will(topic, false);
        will.properties.will_delay_interval = Some(2);
        c.will = Some(will);
    }
}

/// Logs in as ops to its persistent session "ops-watch"; returns the connection and whether
/// the session was there.
async fn ops_session(addr: SocketAddr) -> (Raw, bool) {
    let (ops, ack) = Raw::connect_with(addr, V5, "ops-watch", |c| {
        with_login("ops")(c);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    (ops, ack.session_present)
}

/// Ops back after the restart, in its session subscribed to `devices/#` before it.
async fn ops_watching(addr: SocketAddr) -> Raw {
    let (ops, present) = ops_session(addr).await;
    assert!(present, "ops's session was recovered");
    ops
}

/// Subscribes ops's persistent session to `devices/#` (then disconnects it), connects
/// `client_id` with a delayed will, drops the connection (the will is then pending) and stops
/// the broker with it pending.
async fn leave_a_pending_will(
    server: Server,
    addr: SocketAddr,
    client_id: &str,
    topic: &str,
    login: impl FnOnce(&mut Connect),
) {
    let (mut ops, _) = ops_session(addr).await;
    assert_eq!(
        ops.subscribe(1, "devices/#", QoS::AtLeastOnce).await,
        [ReasonCode::GrantedQoS1]
    );
    ops.disconnect().await;
    wait_offline(&server, "ops-watch").await;
    let (raw, _) = Raw::connect_with(addr, V5, client_id, with_delayed_will(topic, login)).await;
    drop(raw);
    wait_offline(&server, client_id).await;
    let pending = server
        .broker()
        .session(client_id)
        .unwrap()
        .lock()
        .pending_will
        .is_some();
    assert!(pending, "the will waits for its delay");
    server.shutdown().await;
}

/// The next will `ops` receives within the will's wait, acknowledged.
async fn next_will(ops: &mut Raw) -> mqtt_codec::Publish {
    match ops.try_recv(WILL_WAIT).await {
        Ok(Some(Packet::Publish(p))) => {
            ops.ack(&p).await;
            p
        }
        other => panic!("expected the will, got {other:?}"),
    }
}

/// The principal the recovered session of `client_id` was given.
fn principal_of(server: &Server, client_id: &str) -> Option<String> {
    let handle = server.broker().session(client_id).expect("the session");
    let session = handle.lock();
    session
        .authorizer
        .as_ref()
        .and_then(|a| a.principal())
        .map(|p| p.as_str().to_owned())
}

#[tokio::test]
async fn a_recovered_delayed_will_of_a_user_still_allowed_is_delivered() {
    let files = secured();
    let dir = fresh_data_dir();
    let (server, addr) = start_secured_in(&files, &dir).await;
    let alice = with_login("alice");
    leave_a_pending_will(server, addr, "alice-1", "devices/alice/alarm", alice).await;

    let (server, addr) = start_secured_in(&files, &dir).await;
    assert_eq!(
        principal_of(&server, "alice-1").as_deref(),
        Some("user:alice")
    );
    let mut ops = ops_watching(addr).await;
    let will = next_will(&mut ops).await;
    assert_eq!(will.topic.as_str(), "devices/alice/alarm");
    assert_eq!(&will.payload[..], b"gone");
    // The one will, once, and nothing dropped.
    assert_nothing_queued(&mut ops).await;
    assert_eq!(
        server.broker().metrics.dropped(DropReason::NotAuthorized),
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_recovered_will_whose_grant_was_withdrawn_while_down_is_dropped() {
    let files = secured();
    let dir = fresh_data_dir();
    let (server, addr) = start_secured_in(&files, &dir).await;
    let alice = with_login("alice");
    leave_a_pending_will(server, addr, "alice-1", "devices/alice/alarm", alice).await;

    // While the broker is down, users may no longer publish under devices/ (ops may still
    // read there).
    std::fs::write(
        files.path("acl.toml"),
        ACL.replace("devices/%u/#", "other/%u/#"),
    )
    .unwrap();
    let (server, addr) = start_secured_in(&files, &dir).await;
    let mut ops = ops_watching(addr).await;
    match ops.try_recv(WILL_WAIT).await {
        Err("timed out") => {}
        other => panic!("the will must not be delivered, got {other:?}"),
    }
    wait_dropped(&server, DropReason::NotAuthorized, 1).await;
    // Gone from the session, so it is not judged again.
    let handle = server.broker().session("alice-1").expect("the session");
    assert!(handle.lock().pending_will.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_holders_recovered_will_is_verified_again_and_delivered() {
    let files = secured();
    let dir = fresh_data_dir();
    let (server, addr) = start_secured_in(&files, &dir).await;
    let token = files.mint(&["publish:devices/tok/#"], in_an_hour());
    leave_a_pending_will(
        server,
        addr,
        "tok-1",
        "devices/tok/alarm",
        with_token(&token),
    )
    .await;

    let (server, addr) = start_secured_in(&files, &dir).await;
    assert_eq!(
        principal_of(&server, "tok-1"),
        Some(format!("token:{token}"))
    );
    let mut ops = ops_watching(addr).await;
    assert_eq!(
        next_will(&mut ops).await.topic.as_str(),
        "devices/tok/alarm"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_revoked_while_the_broker_was_down_loses_its_recovered_will() {
    let files = secured();
    let dir = fresh_data_dir();
    let (server, addr) = start_secured_in(&files, &dir).await;
    let token = files.mint(&["publish:devices/tok/#"], in_an_hour());
    leave_a_pending_will(
        server,
        addr,
        "tok-1",
        "devices/tok/alarm",
        with_token(&token),
    )
    .await;

    files.revoke_offline(&token);
    let (server, addr) = start_secured_in(&files, &dir).await;
    let mut ops = ops_watching(addr).await;
    match ops.try_recv(WILL_WAIT).await {
        Err("timed out") => {}
        other => panic!("the will must not be delivered, got {other:?}"),
    }
    wait_dropped(&server, DropReason::NotAuthorized, 1).await;
    server.shutdown().await;
}

// ---- records written straight into a store, as a crash (or an older build) leaves them ----

fn will_message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: s(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: None,
        received_at: None,
    })
}

/// A session that was online when the broker stopped, with its will armed (no delay): due
/// at the restart.
fn online_with_armed_will(topic: &str, principal: Option<&str>) -> SessionRecord {
    SessionRecord {
        expiry_interval: 3600,
        disconnected_at: None,
        pending_will: None,
        armed_will: Some(ArmedWill {
            message: will_message(topic),
            delay_secs: 0,
        }),
        last_packet_id: 0,
        principal: principal.map(Into::into),
    }
}

/// A session that expired while the broker was down, with a will pending for its delay: due
/// at the restart, its session gone.
fn expired_with_pending_will(topic: &str, principal: Option<&str>, now: u64) -> SessionRecord {
    SessionRecord {
        expiry_interval: 10,
        disconnected_at: Some(now - 60_000),
        pending_will: Some(PendingWill {
            message: will_message(topic),
            due_at: now + 3_600_000,
        }),
        armed_will: None,
        last_packet_id: 0,
        principal: principal.map(Into::into),
    }
}

/// Writes `sessions` and an offline "watcher" session subscribed to `devices/#` into a new
/// store in `dir`, as the broker would have left them.
fn craft_store(dir: &Path, sessions: Vec<(&str, SessionRecord)>, now: u64) {
    let (store, _) = Store::open(dir, StoreOptions::default(), now).expect("store opens");
    let mut ops = vec![
        StoreOp::PutSession {
            client: "watcher".into(),
            record: SessionRecord {
                expiry_interval: 3600,
                disconnected_at: Some(now),
                pending_will: None,
                armed_will: None,
                last_packet_id: 0,
                principal: Some("user:ops".into()),
            },
        },
        StoreOp::PutSubscription {
            client: "watcher".into(),
            filter: s("devices/#"),
            entry: SubscriptionEntry {
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
                identifier: None,
            },
        },
    ];
    for (client, record) in sessions {
        ops.push(StoreOp::PutSession {
            client: client.into(),
            record,
        });
    }
    let ticket = store.submit(ops);
    assert!(
        store.wait_durable(ticket, WAIT),
        "the crafted records are written"
    );
    store.close(WAIT);
}

/// The wills the watcher's session got queued, in the order they arrive (within a bounded
/// wait for each; the last wait ends the list).
async fn watcher_wills(addr: SocketAddr) -> Vec<String> {
    let (mut watcher, ack) = Raw::connect_with(addr, V5, "watcher", |c| {
        with_login("ops")(c);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    assert!(ack.session_present, "the watcher's session was recovered");
    let mut topics = Vec::new();
    loop {
        match watcher.try_recv(Duration::from_secs(1)).await {
            Ok(Some(Packet::Publish(p))) => {
                watcher.ack(&p).await;
                topics.push(p.topic.to_string());
            }
            Err("timed out") => return topics,
            other => panic!("expected wills, got {other:?}"),
        }
    }
}

/// With authentication configured, the wills due at the restart (armed when the broker
/// stopped, or of sessions that expired while it was down) are published only if their
/// principal is still granted them: not for a record without a principal (written before
/// principals were kept), nor for a user no longer in the password file, a revoked token,
/// a token of another key, or a principal this build does not know.
#[tokio::test]
async fn wills_due_at_the_restart_are_published_only_for_principals_still_granted() {
    let files = secured();
    let dir = fresh_data_dir();
    let now = corvus_server::clock::now();
    let valid = files.mint(&["publish:devices/tok/#"], in_an_hour());
    let revoked = files.mint(&["publish:devices/tok/#"], in_an_hour());
    let foreign = files.mint_foreign(&["publish:devices/tok/#"]);
    files.revoke_offline(&revoked);
    let token = |t: &str| format!("token:{t}");
    let (valid, revoked, foreign) = (token(&valid), token(&revoked), token(&foreign));
    craft_store(
        &dir,
        vec![
            // Published.
            (
                "alice-armed",
                online_with_armed_will("devices/alice/armed", Some("user:alice")),
            ),
            (
                "alice-expired",
                expired_with_pending_will("devices/alice/expired", Some("user:alice"), now),
            ),
            (
                "tok-valid",
                online_with_armed_will("devices/tok/valid", Some(&valid)),
            ),
            // Dropped.
            (
                "legacy",
                online_with_armed_will("devices/legacy/armed", None),
            ),
            (
                "legacy-expired",
                expired_with_pending_will("devices/legacy/expired", None, now),
            ),
            (
                "bob",
                online_with_armed_will("devices/bob/armed", Some("user:bob")),
            ),
            (
                "tok-revoked",
                online_with_armed_will("devices/tok/revoked", Some(&revoked)),
            ),
            (
                "tok-foreign",
                expired_with_pending_will("devices/tok/foreign", Some(&foreign), now),
            ),
            (
                "strange",
                online_with_armed_will("devices/strange/armed", Some("cert:strange")),
            ),
            (
                "was-open",
                online_with_armed_will("devices/alice/open", Some("everything")),
            ),
            // Granted at CONNECT, no longer: alice may not publish under bob's topics.
            (
                "alice-elsewhere",
                online_with_armed_will("devices/bob/alice", Some("user:alice")),
            ),
        ],
        now,
    );

    let (server, addr) = start_secured_in(&files, &dir).await;
    wait_dropped(&server, DropReason::NotAuthorized, 8).await;
    let mut topics = watcher_wills(addr).await;
    topics.sort();
    assert_eq!(
        topics,
        [
            "devices/alice/armed",
            "devices/alice/expired",
            "devices/tok/valid"
        ]
    );
    // A recovered session keeps its principal, as recorded.
    assert_eq!(principal_of(&server, "legacy"), None);
    assert_eq!(principal_of(&server, "bob").as_deref(), Some("user:bob"));
    server.shutdown().await;
}

/// Without authentication configured, a recovered will is published whatever its record
/// says (as before principals were kept).
#[tokio::test]
async fn without_authentication_recovered_wills_are_published_as_before() {
    let dir = fresh_data_dir();
    let now = corvus_server::clock::now();
    craft_store(
        &dir,
        vec![
            (
                "legacy",
                online_with_armed_will("devices/legacy/armed", None),
            ),
            (
                "bob",
                online_with_armed_will("devices/bob/armed", Some("user:bob")),
            ),
            (
                "gone",
                expired_with_pending_will("devices/gone/expired", None, now),
            ),
        ],
        now,
    );
    let dir_for_config = dir.clone();
    let (server, addr) = start_with(move |c| c.data_dir = dir_for_config).await;
    let (mut watcher, ack) = Raw::connect_with(addr, V5, "watcher", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    assert!(ack.session_present);
    let mut topics = Vec::new();
    for _ in 0..3 {
        let p = watcher.recv_publish().await;
        topics.push(p.topic.to_string());
    }
    // And no fourth.
    assert_nothing_queued(&mut watcher).await;
    topics.sort();
    assert_eq!(
        topics,
        [
            "devices/bob/armed",
            "devices/gone/expired",
            "devices/legacy/armed"
        ]
    );
    assert_eq!(
        server.broker().metrics.dropped(DropReason::NotAuthorized),
        0
    );
    server.shutdown().await;
}
