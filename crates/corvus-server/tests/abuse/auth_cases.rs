//! Authentication and authorization, attacked: user names that look like wildcards,
//! `$share` used as a way around a grant, wills as a way to publish what may not be
//! published, and capability tokens expired, tampered with, foreign, revoked or widened.
//!
//! Every case runs on a broker with a password file, an ACL and a token namespace
//! ([`Secured`]); the sentinel and the harness's last check connect anonymously, and the ACL
//! grants anonymous clients exactly their topics.

use std::time::SystemTime;

use common::auth::{grants, in_an_hour, tamper, will, with_login, with_token, Secured};
use corvus_auth::token::attenuate;
use corvus_core::DropReason;
use mqtt_codec::Connect as MqttConnect;

use super::*;

/// The users in the password file; each one's password is its name reversed. The last three
/// names look like wildcards or levels (a name may not start with `#` in the file).
const USERS: [&str; 5] = ["alice", "ops", "x/#", "+", "dev#1"];
const WILD_USERS: [&str; 3] = ["x/#", "+", "dev#1"];

/// Everyone: publish and subscribe under `devices/%u/#`; ops: subscribe to `devices/#`;
/// anonymous clients (the sentinel and the harness's check): their own topics.
const ACL: &str = r#"
[[rule]]
everyone = true
allow = ["publish", "subscribe"]
topics = ["devices/%u/#"]

[[rule]]
user = "ops"
allow = ["subscribe"]
topics = ["devices/#"]

[[rule]]
anonymous = true
allow = ["publish", "subscribe"]
topics = ["sentinel/#", "still/#"]
"#;

/// The broker's files, with this module's users and ACL.
fn secured() -> Secured {
    Secured::new(&USERS, ACL)
}

/// A CONNECT with a fresh client id and clean start, `tune` applied (a login).
fn connect_as(version: ProtocolVersion, tune: impl FnOnce(&mut MqttConnect)) -> MqttConnect {
    let mut connect = MqttConnect::new(version, s(&format!("auth-{}", unique())));
    tune(&mut connect);
    connect
}

/// `user`, logged in with its password (v5).
fn as_user(user: &str) -> MqttConnect {
    connect_as(V5, with_login(user))
}

/// A client presenting `token` (v5).
fn token_holder(token: &str) -> MqttConnect {
    connect_as(V5, with_token(token))
}

/// Sends `connect` and expects CONNACK 0x00.
async fn admitted(case: &Case, connect: MqttConnect) -> Raw {
    let mut raw = Raw::open(case.addr, connect.protocol).await;
    let what = format!("{:?}", connect.username);
    raw.send(connect.into()).await;
    match raw.recv().await {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::Success, "{what}"),
        other => panic!("{what}: expected CONNACK, got {other:?}"),
    }
    raw
}

/// Sends `connect` and expects CONNACK `reason` (a 3.1.1 return code as the codec decodes
/// it), then the close [MQTT-3.2.2-7].
async fn refused(case: &Case, connect: MqttConnect, reason: ReasonCode, what: &str) {
    Raw::open(case.addr, connect.protocol)
        .await
        .expect_refused(connect, reason, what)
        .await;
}

/// ops, subscribed to `devices/#` at QoS 1: sees whatever reaches `devices/`.
async fn watcher(case: &Case) -> Raw {
    let mut ops = admitted(case, as_user("ops")).await;
    assert_eq!(
        ops.subscribe(1, "devices/#", QoS::AtLeastOnce).await,
        [ReasonCode::GrantedQoS1]
    );
    ops
}

// ---- user names ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_name_with_wildcards_gets_no_wildcard_rights_from_percent_u() {
    let secured = secured();
    run(
        |c| secured.configure(c),
        async |case| {
            let mut ops = watcher(case).await;
            let filters = ["devices/#", "devices/+/x", "#", "devices/+/#"];
            for user in WILD_USERS {
                let mut client = admitted(case, as_user(user)).await;
                assert_eq!(
                    subscribe_all(&mut client, 1, &filters).await,
                    [ReasonCode::NotAuthorized; 4],
                    "{user}: {filters:?}"
                );
                assert_eq!(
                    client
                        .publish("devices/bob/x", b"x", QoS::AtLeastOnce, false, 2)
                        .await,
                    ReasonCode::NotAuthorized,
                    "{user}"
                );
                client.disconnect().await;
            }
            // The rule itself works for a plain name: only alice's message reaches ops.
            let mut alice = admitted(case, as_user("alice")).await;
            assert_eq!(
                alice
                    .publish("devices/alice/x", b"alice", QoS::AtLeastOnce, false, 1)
                    .await,
                ReasonCode::Success
            );
            assert_eq!(&ops.recv_publish().await.payload[..], b"alice");
            ops.expect_nothing().await;
            alice.disconnect().await;
            ops.disconnect().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_prefix_grants_nothing_beyond_the_filter_inside_it() {
    let secured = secured();
    run(
        |c| secured.configure(c),
        async |case| {
            let mut alice = admitted(case, as_user("alice")).await;
            let filters = [
                "$share/g/devices/#",
                "$share/devices/#",
                "$share/g/#",
                "$share/devices/alice/#",
                "$share/g/devices/alice/#",
            ];
            use ReasonCode::{NotAuthorized as No, Success as Yes};
            assert_eq!(
                subscribe_all(&mut alice, 1, &filters).await,
                [No, No, No, No, Yes],
                "{filters:?}"
            );
            alice.disconnect().await;
        },
    )
    .await;
}

// ---- wills ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_beyond_the_grant_is_refused_at_connect() {
    let secured = secured();
    run(
        |c| secured.configure(c),
        async |case| {
            let cases = [
                ("v5, another user's topic", V5, "devices/bob/alarm", false),
                (
                    "3.1.1, another user's topic",
                    ProtocolVersion::V3_1_1,
                    "devices/bob/alarm",
                    false,
                ),
                (
                    "v5, retained without the retain right",
                    V5,
                    "devices/alice/alarm",
                    true,
                ),
                (
                    "3.1.1, retained without the retain right",
                    ProtocolVersion::V3_1_1,
                    "devices/alice/alarm",
                    true,
                ),
            ];
            for (what, version, topic, retain) in cases {
                let mut connect = connect_as(version, with_login("alice"));
                connect.will = Some(will(topic, retain));
                refused(case, connect, ReasonCode::NotAuthorized, what).await;
            }
            // Within the grant: admitted.
            let mut connect = as_user("alice");
            connect.will = Some(will("devices/alice/alarm", false));
            admitted(case, connect).await.disconnect().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_whose_grant_is_withdrawn_before_it_fires_is_not_delivered() {
    let secured = secured();
    let withdrawn = ACL.replace("devices/%u/#", "other/%u/#");
    run(
        |c| secured.configure(c),
        async |case| {
            secured.set_acl(&case.server, ACL);
            let mut ops = watcher(case).await;
            let with_will = || {
                let mut connect = as_user("alice");
                connect.will = Some(will("devices/alice/alarm", false));
                connect
            };
            // Granted throughout: the will is delivered when the connection drops.
            drop(admitted(case, with_will()).await);
            assert_eq!(&ops.recv_publish().await.payload[..], b"gone");
            // Granted at CONNECT, withdrawn before the connection drops: not delivered.
            let metrics = &case.server.broker().metrics;
            let refused_before = metrics.dropped(DropReason::NotAuthorized);
            let alice = admitted(case, with_will()).await;
            secured.set_acl(&case.server, &withdrawn);
            drop(alice);
            // The will was dropped as not authorized, and nothing reached ops.
            wait_dropped(&case.server, DropReason::NotAuthorized, refused_before + 1).await;
            assert_nothing_queued(&mut ops).await;
            ops.disconnect().await;
            secured.set_acl(&case.server, ACL);
        },
    )
    .await;
}

// ---- capability tokens ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tampered_and_foreign_tokens_are_refused() {
    let secured = secured();
    run(
        |c| secured.configure(c),
        async |case| {
            let grants = ["publish:site/#"];
            let expired = secured.mint(&grants, SystemTime::now() - Duration::from_secs(10));
            refused(
                case,
                token_holder(&expired),
                ReasonCode::NotAuthorized,
                "expired",
            )
            .await;

            let good = secured.mint(&grants, in_an_hour());
            let bad = ReasonCode::BadUserNameOrPassword;
            refused(case, token_holder(&tamper(&good)), bad, "tampered").await;

            let foreign = secured.mint_foreign(&grants);
            refused(case, token_holder(&foreign), bad, "another namespace's").await;
            refused(case, token_holder("not a token"), bad, "not a token").await;

            admitted(case, token_holder(&good)).await.disconnect().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_connected_is_disconnected_0x87() {
    let secured = secured();
    run(
        |c| secured.configure(c),
        async |case| {
            let token = secured.mint(&["publish:site/#"], in_an_hour());
            let mut holder = admitted(case, token_holder(&token)).await;
            assert_eq!(
                holder
                    .publish("site/1/x", b"x", QoS::AtLeastOnce, false, 1)
                    .await,
                ReasonCode::Success
            );
            secured.revoke(&case.server, &token);
            holder.expect_disconnect(ReasonCode::NotAuthorized).await;
            refused(
                case,
                token_holder(&token),
                ReasonCode::NotAuthorized,
                "revoked",
            )
            .await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attenuated_token_attenuated_again_more_widely_is_not_widened() {
    let secured = secured();
    run(
        |c| secured.configure(c),
        async |case| {
            let site = secured.mint(&["publish:site/#"], in_an_hour());
            let narrow = grants(&["publish:site/1/dev/7/#"]);
            let device = attenuate(&site, &narrow, None).unwrap();
            let wide = grants(&["publish:site/#"]);
            let widened = attenuate(&device, &wide, None).unwrap();
            let mut client = admitted(case, token_holder(&widened)).await;
            for (id, topic, expected) in [
                (1, "site/1/dev/7/x", ReasonCode::Success),
                (2, "site/1/dev/8/x", ReasonCode::NotAuthorized),
                (3, "site/2/x", ReasonCode::NotAuthorized),
            ] {
                assert_eq!(
                    client
                        .publish(topic, b"x", QoS::AtLeastOnce, false, id)
                        .await,
                    expected,
                    "{topic}"
                );
            }
            client.disconnect().await;
        },
    )
    .await;
}
