//! Authentication and authorization end to end, over real sockets: the chain at CONNECT
//! (passwords, client certificates, capability tokens, anonymous), ACLs with their
//! placeholders, wills, resumed sessions, reloading, and the limits that are not protocol
//! rules (retained quota, message rate, connections per source).

mod common;

use std::time::{Duration, SystemTime};

use common::auth::{connack, grants, in_an_hour, password, will, with_login, with_token, Secured};
use common::tls::{client_config, mqtts_listener, tls_connect, write_files, Ca};
use common::*;
use corvus_auth::token::attenuate;
use corvus_server::config::{CertIdentity, ListenerConfig};
use corvus_server::{Config, Server};
use mqtt_codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};

/// Users alice, ops, `+` and `x/#` (passwords: their names reversed), and:
/// - everyone: publish and subscribe under `devices/%u/#`;
/// - ops: subscribe to `devices/#` and `$SYS/#`, publish and retain `status/#`;
/// - anonymous: subscribe to `public/#`.
const ACL: &str = r#"
[[rule]]
everyone = true
allow = ["publish", "subscribe"]
topics = ["devices/%u/#"]

[[rule]]
user = "ops"
allow = ["subscribe"]
topics = ["devices/#", "$SYS/#"]

[[rule]]
user = "ops"
allow = ["publish", "retain", "subscribe"]
topics = ["status/#"]

[[rule]]
anonymous = true
allow = ["subscribe"]
topics = ["public/#"]
"#;

const USERS: [&str; 4] = ["alice", "ops", "+", "x/#"];

/// The broker's files, with this test file's users and ACL.
fn secured() -> Secured {
    Secured::new(&USERS, ACL)
}

async fn login(addr: std::net::SocketAddr, user: &str, client: &str) -> Raw {
    Raw::connect_with(addr, ProtocolVersion::V5, client, with_login(user))
        .await
        .0
}

#[tokio::test]
async fn the_chain_admits_good_passwords_and_refuses_the_rest() {
    let files = secured();
    let (server, addr) = files.start(|c| c.auth.allow_anonymous = Some(false)).await;
    let v5 = ProtocolVersion::V5;
    assert_eq!(
        connack(addr, v5, Some("alice"), Some(&password("alice"))).await,
        ReasonCode::Success
    );
    assert_eq!(
        connack(addr, v5, Some("alice"), Some("wrong")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connack(addr, v5, Some("mallory"), Some("x")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connack(addr, v5, Some("alice"), None).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connack(addr, v5, None, None).await,
        ReasonCode::NotAuthorized
    );
    // 3.1.1 return codes 4 and 5.
    let v3 = ProtocolVersion::V3_1_1;
    assert_eq!(
        connack(addr, v3, Some("alice"), Some("wrong")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connack(addr, v3, None, None).await,
        ReasonCode::NotAuthorized
    );
    server.shutdown().await;
}

#[tokio::test]
async fn what_is_not_granted_is_denied_and_never_delivered_or_retained() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let mut ops = login(addr, "ops", "ops").await;
    assert_eq!(
        ops.subscribe(1, "devices/#", QoS::AtLeastOnce).await,
        [ReasonCode::GrantedQoS1]
    );
    let mut alice = login(addr, "alice", "alice").await;
    assert_eq!(
        alice
            .publish("devices/bob/cmd", b"no", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        alice
            .publish("devices/bob/cmd", b"no", QoS::ExactlyOnce, false, 2)
            .await,
        ReasonCode::NotAuthorized
    );
    // Publishing is granted, retaining is not: the whole PUBLISH is refused.
    assert_eq!(
        alice
            .publish("devices/alice/t", b"no", QoS::AtLeastOnce, true, 3)
            .await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        alice
            .publish("devices/alice/t", b"yes", QoS::AtLeastOnce, false, 4)
            .await,
        ReasonCode::Success
    );
    let got = ops.recv_publish().await;
    assert_eq!(&got.payload[..], b"yes");
    ops.expect_nothing().await;
    // Nothing was retained.
    let mut late = login(addr, "ops", "ops-late").await;
    late.subscribe(1, "devices/#", QoS::AtLeastOnce).await;
    late.expect_nothing().await;

    // 3.1.1 has no negative acknowledgement: acknowledged, and dropped.
    let (mut old, _) =
        Raw::connect_with(addr, ProtocolVersion::V3_1_1, "old", with_login("alice")).await;
    assert_eq!(
        old.publish("devices/bob/cmd", b"no", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    ops.expect_nothing().await;
    server.shutdown().await;
}

#[tokio::test]
async fn each_filter_stands_alone_and_share_and_sys_grant_nothing_extra() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let mut alice = login(addr, "alice", "alice").await;
    let filters = [
        "devices/alice/#",
        "devices/#",
        "$share/g/devices/#",
        "$share/g/devices/alice/+",
        "$SYS/#",
        "#",
        "+/alice/#",
    ];
    let mut codes = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        codes.extend(alice.subscribe(i as u16 + 1, filter, QoS::AtMostOnce).await);
    }
    use ReasonCode::{NotAuthorized as No, Success as Yes};
    assert_eq!(codes, [Yes, No, No, Yes, No, No, No]);
    // `#` does not reach `$SYS` even for a client granted `#`-like rights: ops has `$SYS/#`
    // explicitly.
    let mut ops = login(addr, "ops", "ops").await;
    assert_eq!(ops.subscribe(1, "$SYS/#", QoS::AtMostOnce).await, [Yes]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_wildcard_or_slash_in_a_user_name_is_only_ever_literal() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let mut ops = login(addr, "ops", "ops").await;
    ops.subscribe(1, "devices/#", QoS::AtLeastOnce).await;
    for user in ["+", "x/#"] {
        let mut client = login(addr, user, "wild").await;
        for filter in ["devices/#", "devices/+/temp", "devices/x/#", "#"] {
            assert_eq!(
                client.subscribe(1, filter, QoS::AtMostOnce).await,
                [ReasonCode::NotAuthorized],
                "{user} {filter}"
            );
        }
        for topic in ["devices/bob/temp", "devices/x/y"] {
            assert_eq!(
                client
                    .publish(topic, b"x", QoS::AtLeastOnce, false, 1)
                    .await,
                ReasonCode::NotAuthorized,
                "{user} {topic}"
            );
        }
        client.disconnect().await;
    }
    ops.expect_nothing().await;
    server.shutdown().await;
}

/// Every client publishes and subscribes under `clients/%c/#`; only the client "watcher"
/// may subscribe to all of `clients/#`.
const CLIENT_ACL: &str = r#"
[[rule]]
everyone = true
allow = ["publish", "subscribe"]
topics = ["clients/%c/#"]

[[rule]]
client = "watcher"
allow = ["subscribe"]
topics = ["clients/#"]
"#;

#[tokio::test]
async fn a_wildcard_or_slash_in_a_client_id_is_only_ever_literal() {
    let files = Secured::new(&[], CLIENT_ACL);
    let (server, addr) = files.start(|_| {}).await;
    let v5 = ProtocolVersion::V5;
    let mut watcher = Raw::connect(addr, v5, "watcher").await;
    assert_eq!(
        watcher.subscribe(1, "clients/#", QoS::AtLeastOnce).await,
        [ReasonCode::GrantedQoS1]
    );
    // The `client` rule names that one client id only.
    let mut other = Raw::connect(addr, v5, "watcher2").await;
    assert_eq!(
        other.subscribe(1, "clients/#", QoS::AtMostOnce).await,
        [ReasonCode::NotAuthorized]
    );
    // An ordinary client id gets its own level.
    let mut plain = Raw::connect(addr, v5, "dev-1").await;
    assert_eq!(
        plain
            .publish("clients/dev-1/t", b"mine", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    assert_eq!(&watcher.recv_publish().await.payload[..], b"mine");
    // A client id with `/`, `+` or `#` gets a level of exactly that text: no topic name
    // reaches it, and it widens no filter.
    for id in ["x/y", "+", "#", "a+b", "dev-1/#"] {
        let mut client = Raw::connect(addr, v5, id).await;
        for filter in [
            "clients/#",
            "clients/+/#",
            "clients/x/#",
            "clients/dev-1/#",
            "#",
        ] {
            assert_eq!(
                client.subscribe(1, filter, QoS::AtMostOnce).await,
                [ReasonCode::NotAuthorized],
                "{id} {filter}"
            );
        }
        for topic in [
            "clients/x/y",
            "clients/x/y/t",
            "clients/dev-1/t",
            "clients/a/t",
        ] {
            assert_eq!(
                client
                    .publish(topic, b"x", QoS::AtLeastOnce, false, 2)
                    .await,
                ReasonCode::NotAuthorized,
                "{id} {topic}"
            );
        }
        client.disconnect().await;
    }
    assert_nothing_queued(&mut watcher).await;
    server.shutdown().await;
}

fn will_to(topic: &str) -> impl FnOnce(&mut Connect) + '_ {
    move |c: &mut Connect| {
        with_login("alice")(c);
        c.will = Some(will(topic, false));
    }
}

#[tokio::test]
async fn wills_are_checked_at_connect_and_again_when_they_fire() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let mut ops = login(addr, "ops", "ops").await;
    ops.subscribe(1, "devices/#", QoS::AtLeastOnce).await;

    let mut raw = Raw::open(addr, ProtocolVersion::V5).await;
    let mut connect = Connect::new(ProtocolVersion::V5, s("bypass"));
    will_to("devices/bob/alarm")(&mut connect);
    raw.send(connect.into()).await;
    match raw.recv().await {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::NotAuthorized),
        other => panic!("{other:?}"),
    }

    // Allowed at CONNECT; the grant is withdrawn before the connection drops.
    let (alice, _) = Raw::connect_with(
        addr,
        ProtocolVersion::V5,
        "alice",
        will_to("devices/alice/alarm"),
    )
    .await;
    files.set_acl(&server, &ACL.replace("devices/%u/#", "other/%u/#"));
    drop(alice);
    wait_dropped(&server, corvus_core::DropReason::NotAuthorized, 1).await;
    assert_nothing_queued(&mut ops).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_resumed_session_loses_subscriptions_no_longer_granted() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let persistent = |c: &mut Connect| {
        with_login("alice")(c);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(600);
    };
    let (mut alice, _) = Raw::connect_with(addr, ProtocolVersion::V5, "alice", persistent).await;
    alice
        .subscribe(1, "devices/alice/#", QoS::AtLeastOnce)
        .await;
    alice.disconnect().await;
    files.set_acl(&server, &ACL.replace("devices/%u/#", "other/%u/#"));
    let (mut alice, ack) = Raw::connect_with(addr, ProtocolVersion::V5, "alice", persistent).await;
    assert!(ack.session_present);
    // ops may still publish there (status is its own); nothing reaches alice's old filter.
    let mut ops = login(addr, "ops", "ops").await;
    let ops_publishes = "\n[[rule]]\nuser=\"ops\"\nallow=[\"publish\"]\ntopics=[\"devices/#\"]\n";
    files.set_acl(
        &server,
        &(ACL.replace("devices/%u/#", "other/%u/#") + ops_publishes),
    );
    assert_eq!(
        ops.publish("devices/alice/x", b"x", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    alice.expect_nothing().await;
    assert_eq!(
        server
            .broker()
            .session("alice")
            .unwrap()
            .lock()
            .subscription_count(),
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_broken_reload_changes_nothing_and_says_which_file() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    std::fs::write(
        files.path("acl.toml"),
        "[[rule]]\nuser = \"alice\"\nallow = [\"fly\"]\ntopics = [\"#\"]\n",
    )
    .unwrap();
    let error = server.reload_security().unwrap_err().to_string();
    assert!(
        error.contains("acl.toml") && error.contains("fly"),
        "{error}"
    );
    let mut alice = login(addr, "alice", "alice").await;
    assert_eq!(
        alice
            .publish("devices/alice/x", b"x", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    server.shutdown().await;
}

#[tokio::test]
async fn anonymous_clients_get_the_anonymous_rules_only() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let mut anon = Raw::connect(addr, ProtocolVersion::V5, "anon").await;
    assert_eq!(
        anon.subscribe(1, "public/#", QoS::AtMostOnce).await,
        [ReasonCode::Success]
    );
    assert_eq!(
        anon.subscribe(2, "devices/#", QoS::AtMostOnce).await,
        [ReasonCode::NotAuthorized]
    );
    assert_eq!(
        anon.publish("public/x", b"x", QoS::AtLeastOnce, false, 3)
            .await,
        ReasonCode::NotAuthorized
    );
    // A wrong password for a known user is refused, never downgraded to anonymous.
    assert_eq!(
        connack(addr, ProtocolVersion::V5, Some("alice"), Some("nope")).await,
        ReasonCode::BadUserNameOrPassword
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_user_name_nothing_can_check_names_nobody() {
    // An ACL, but no password file: a client calling itself "ops" is anonymous, and the
    // rules for the user ops do not apply to it.
    let files = secured();
    let (server, addr) = files.start(|c| c.auth.password_file = None).await;
    let (mut claimed, _) =
        Raw::connect_with(addr, ProtocolVersion::V5, "claims-ops", with_login("ops")).await;
    assert_eq!(
        claimed.subscribe(1, "devices/#", QoS::AtMostOnce).await,
        [ReasonCode::NotAuthorized]
    );
    assert_eq!(
        claimed.subscribe(2, "public/#", QoS::AtMostOnce).await,
        [ReasonCode::Success]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_non_loopback_listener_needs_authentication_or_an_explicit_allow() {
    let mut config = Config {
        listen: vec!["0.0.0.0:0".parse().unwrap()],
        data_dir: fresh_data_dir(),
        ..Config::default()
    };
    let error = Server::start(&config).await.unwrap_err().to_string();
    assert!(
        error.contains("allow_anonymous") && error.contains("0.0.0.0"),
        "{error}"
    );
    config.auth.allow_anonymous = Some(true);
    let server = Server::start(&config).await.expect("explicitly open");
    server.shutdown().await;
}

// ---- client certificates ----

#[tokio::test]
async fn a_client_certificate_names_the_user() {
    let files = secured();
    let ca = Ca::new("Corvus test CA");
    let tls_files = write_files(&ca, &ca.issue(&["localhost"], false));
    let devices = Ca::new("Device CA");
    let devices_pem = files.path("devices.pem");
    std::fs::write(&devices_pem, devices.cert.pem()).unwrap();
    let (server, addr) = files
        .start(|c| {
            c.listeners.push(ListenerConfig {
                cert_identity: Some(CertIdentity::San),
                ..mqtts_listener(
                    Some(tls_files.cert.clone()),
                    Some(tls_files.key.clone()),
                    Some(devices_pem.clone()),
                )
            });
        })
        .await;
    let tls = server.local_addrs()[1];
    let mut ops = login(addr, "ops", "ops").await;
    ops.subscribe(1, "devices/#", QoS::AtLeastOnce).await;

    let device = devices.issue(&["alice"], true);
    let tls13 = [&rustls::version::TLS13];
    let stream = tls_connect(tls, client_config(&ca, &tls13, Some(&device)))
        .await
        .unwrap();
    // The user name in the CONNECT is not what counts: the certificate is.
    let (mut alice, _) = Raw::over(Box::new(stream), ProtocolVersion::V5)
        .handshake("cert-client", |c| c.username = Some(s("ops")))
        .await;
    assert_eq!(
        alice
            .publish("devices/alice/t", b"by cert", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    assert_eq!(
        alice
            .publish("status/x", b"not ops", QoS::AtLeastOnce, false, 2)
            .await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(&ops.recv_publish().await.payload[..], b"by cert");
    server.shutdown().await;
}

/// A broker with `files` configured, its plain listener, and two `mqtts` listeners that
/// require a certificate from `devices` and take the user name from it: by Common Name, and
/// by Subject Alternative Name.
struct CertBroker {
    server: Server,
    plain: std::net::SocketAddr,
    cn: std::net::SocketAddr,
    san: std::net::SocketAddr,
    /// The CA of the broker's own certificate.
    ca: Ca,
    /// The CA of the client certificates.
    devices: Ca,
    _tls: common::tls::Files,
}

impl CertBroker {
    async fn start(files: &Secured) -> CertBroker {
        let ca = Ca::new("Corvus test CA");
        let tls = write_files(&ca, &ca.issue(&["localhost"], false));
        let devices = Ca::new("Device CA");
        let devices_pem = files.path("devices.pem");
        std::fs::write(&devices_pem, devices.cert.pem()).unwrap();
        let listener = |which| ListenerConfig {
            cert_identity: Some(which),
            ..mqtts_listener(
                Some(tls.cert.clone()),
                Some(tls.key.clone()),
                Some(devices_pem.clone()),
            )
        };
        let (server, plain) = files
            .start(|c| {
                c.listeners.push(listener(CertIdentity::Cn));
                c.listeners.push(listener(CertIdentity::San));
            })
            .await;
        let [_, cn, san] = server.local_addrs()[..] else {
            panic!("three listeners: {:?}", server.local_addrs())
        };
        CertBroker {
            server,
            plain,
            cn,
            san,
            ca,
            devices,
            _tls: tls,
        }
    }

    /// A client over TLS to `addr` presenting `cert` (the handshake must succeed: the
    /// certificate is the client CA's), nothing sent yet.
    async fn open(
        &self,
        addr: std::net::SocketAddr,
        version: ProtocolVersion,
        cert: &(rcgen::Certificate, rcgen::KeyPair),
    ) -> Raw {
        let config = client_config(&self.ca, &[&rustls::version::TLS13], Some(cert));
        let stream = tls_connect(addr, config)
            .await
            .expect("a certificate of the client CA passes the handshake");
        Raw::over(Box::new(stream), version)
    }
}

#[tokio::test]
async fn a_client_certificate_common_name_names_the_user_and_gets_that_users_rules() {
    let files = secured();
    let broker = CertBroker::start(&files).await;
    let v5 = ProtocolVersion::V5;
    // CN "ops", and a Subject Alternative Name "alice".
    let device = broker.devices.issue_client_named(Some("ops"), &["alice"]);
    // On the CN listener the user is ops, whatever the CONNECT says: here alice's own name
    // and password.
    let (mut by_cn, _) = broker
        .open(broker.cn, v5, &device)
        .await
        .handshake("cert-cn", with_login("alice"))
        .await;
    use ReasonCode::{GrantedQoS1 as Granted, NotAuthorized as No};
    // ops's rules: publish status/#, and devices/ops/# (everyone's devices/%u/#)...
    let mut watcher = login(broker.plain, "ops", "ops-watcher").await;
    assert_eq!(
        watcher
            .subscribe_many(1, &["devices/#", "status/#"], QoS::AtLeastOnce)
            .await,
        [Granted, Granted]
    );
    for (id, topic, expected) in [
        (1, "status/x", ReasonCode::Success),
        (2, "devices/ops/x", ReasonCode::Success),
        (3, "devices/alice/x", No), // alice's, not ops's
        (4, "other/x", No),
    ] {
        let got = by_cn
            .publish_packet(qos1(topic, topic.as_bytes(), id))
            .await;
        assert_eq!(got, expected, "{topic}");
    }
    let got: Vec<_> = recv_publishes_acked(&mut watcher, 2)
        .await
        .into_iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(got, ["status/x", "devices/ops/x"]);
    assert_nothing_queued(&mut watcher).await;
    // ...subscribe devices/# and status/#, nothing else.
    assert_eq!(
        by_cn
            .subscribe_many(5, &["devices/#", "status/#", "other/#"], QoS::AtLeastOnce)
            .await,
        [Granted, Granted, No]
    );
    // A message of alice's (logged in with her password) reaches it through devices/#.
    let mut alice = login(broker.plain, "alice", "alice").await;
    assert_eq!(
        alice
            .publish("devices/alice/t", b"from alice", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    let got = by_cn.recv_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("devices/alice/t", &b"from alice"[..])
    );
    assert_nothing_queued(&mut by_cn).await;

    // The same certificate on the SAN listener names alice: alice's rules.
    let (mut by_san, _) = broker
        .open(broker.san, v5, &device)
        .await
        .handshake("cert-san", |_| {})
        .await;
    assert_eq!(
        by_san
            .subscribe_many(1, &["devices/#", "devices/alice/#"], QoS::AtLeastOnce)
            .await,
        [No, Granted]
    );
    assert_eq!(by_san.publish_packet(qos1("status/x", b"x", 2)).await, No);
    broker.server.shutdown().await;
}

/// A QoS 1 PUBLISH of `payload` on `topic` with packet id `id`.
fn qos1(topic: &str, payload: &[u8], id: u16) -> mqtt_codec::Publish {
    let mut publish = mqtt_codec::Publish::new(s(topic), payload.to_vec().into());
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = Some(pid(id));
    publish
}

impl CertBroker {
    /// A client presenting `cert` on `addr` is refused with CONNACK 0x87 (3.1.1: return code
    /// 5) and the close, in MQTT 5.0 and 3.1.1, though its CONNECT carries alice's valid
    /// password: the certificate decides.
    async fn expect_refused(
        &self,
        addr: std::net::SocketAddr,
        cert: &(rcgen::Certificate, rcgen::KeyPair),
        what: &str,
    ) {
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            let mut raw = self.open(addr, version, cert).await;
            let mut connect = Connect::new(version, s("nameless"));
            with_login("alice")(&mut connect);
            raw.expect_refused(
                connect,
                ReasonCode::NotAuthorized,
                &format!("{what}, {version:?}"),
            )
            .await;
        }
        assert!(self.server.broker().session("nameless").is_none(), "{what}");
    }
}

#[tokio::test]
async fn a_client_certificate_without_a_name_of_the_configured_kind_is_refused_0x87() {
    let files = secured();
    let broker = CertBroker::start(&files).await;
    let devices = &broker.devices;
    let cases = [
        (
            "no Common Name (an empty subject), on the CN listener",
            broker.cn,
            devices.issue_client_named(None, &["alice"]),
        ),
        (
            "no Subject Alternative Name, on the SAN listener",
            broker.san,
            devices.issue_client_named(Some("alice"), &[]),
        ),
        (
            "only an IP address as Subject Alternative Name, on the SAN listener",
            broker.san,
            devices.issue_client_named(Some("alice"), &["127.0.0.1"]),
        ),
    ];
    for (what, addr, cert) in &cases {
        broker.expect_refused(*addr, cert, what).await;
    }
    // A certificate with the name is admitted on both.
    for addr in [broker.cn, broker.san] {
        let named = devices.issue_client_named(Some("alice"), &["alice"]);
        let (raw, _) = broker
            .open(addr, ProtocolVersion::V5, &named)
            .await
            .handshake("named", |_| {})
            .await;
        raw.disconnect().await;
    }
    broker.server.shutdown().await;
}

/// An empty Common Name is no name either: the password file cannot hold a user "" (user
/// names are non-empty), and `%u` would make it an empty topic level.
#[tokio::test]
async fn a_client_certificate_with_an_empty_common_name_is_refused_0x87() {
    let files = secured();
    let broker = CertBroker::start(&files).await;
    let empty = broker.devices.issue_client_named(Some(""), &["alice"]);
    broker
        .expect_refused(
            broker.cn,
            &empty,
            "an empty Common Name, on the CN listener",
        )
        .await;
    broker.server.shutdown().await;
}

// ---- SUBSCRIBE, $SYS and retained, end to end ----

#[tokio::test]
async fn a_subscribe_mixing_denied_and_granted_filters_delivers_only_what_was_granted() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    // Publishers for every filter: ops on status/#, a token holder anywhere under devices/.
    let token = files.mint(&["publish:devices/#"], in_an_hour());
    let mut ops = login(addr, "ops", "ops").await;
    let mut holder = token_client(addr, &token, "holder").await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let (mut alice, _) = Raw::connect_with(addr, version, "alice", with_login("alice")).await;
        let filters = ["status/#", "devices/alice/#", "devices/#", "$SYS/#"];
        // v5: 0x87 for each denied filter; 3.1.1: the failure code 0x80.
        let no = match version {
            ProtocolVersion::V5 => ReasonCode::NotAuthorized,
            _ => ReasonCode::UnspecifiedError,
        };
        assert_eq!(
            alice.subscribe_many(1, &filters, QoS::AtLeastOnce).await,
            [no, ReasonCode::GrantedQoS1, no, no],
            "{version:?}"
        );
        let held = server
            .broker()
            .session("alice")
            .unwrap()
            .lock()
            .subscription_count();
        assert_eq!(held, 1, "{version:?}: only the granted filter is held");
        // Messages matching only the denied filters, then one matching the granted one.
        let published = [
            (true, "status/x"),
            (false, "devices/bob/x"),
            (false, "devices/alice/x"),
        ];
        for (i, (by_ops, topic)) in published.into_iter().enumerate() {
            let publisher = if by_ops { &mut ops } else { &mut holder };
            let sent = publisher
                .publish(
                    topic,
                    topic.as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                    i as u16 + 1,
                )
                .await;
            assert_eq!(sent, ReasonCode::Success, "{topic}");
        }
        let got = alice.recv_publish().await;
        assert_eq!(
            (got.topic.as_str(), &got.payload[..], got.qos),
            ("devices/alice/x", &b"devices/alice/x"[..], QoS::AtLeastOnce),
            "{version:?}"
        );
        assert_nothing_queued(&mut alice).await;
        alice.disconnect().await;
    }
    server.shutdown().await;
}

/// root may do anything with every topic (`#`); ops may read `$SYS`.
const SYS_ACL: &str = r##"
[[rule]]
user = "root"
allow = ["publish", "subscribe", "retain"]
topics = ["#"]

[[rule]]
user = "ops"
allow = ["subscribe"]
topics = ["$SYS/#"]
"##;

#[tokio::test]
async fn sys_needs_a_grant_of_its_own_even_for_a_user_granted_everything() {
    let files = Secured::new(&["root", "ops"], SYS_ACL);
    let (server, addr) = files.start(|c| c.sys_interval = 1).await;
    let mut root = login(addr, "root", "root").await;
    use ReasonCode::{NotAuthorized as No, Success as Yes};
    assert_eq!(
        root.subscribe_many(
            1,
            &["$SYS/#", "$SYS/broker/uptime", "$share/g/$SYS/#", "#"],
            QoS::AtMostOnce
        )
        .await,
        [No, No, No, Yes]
    );
    // Nor may it publish there: `$SYS` is the broker's.
    assert_eq!(
        root.publish("$SYS/broker/uptime", b"0", QoS::AtLeastOnce, false, 2)
            .await,
        No
    );
    let mut ops = login(addr, "ops", "ops").await;
    assert_eq!(
        ops.subscribe_many(1, &["$SYS/#", "#"], QoS::AtMostOnce)
            .await,
        [Yes, No]
    );
    // ops gets the broker's uptime, twice with different values: the second was published
    // after root subscribed to `#`.
    let mut uptimes = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        while uptimes.len() < 2 {
            let p = ops.recv_publish().await;
            assert!(p.topic.starts_with("$SYS/broker/"), "{}", p.topic);
            if p.topic.as_str() == "$SYS/broker/uptime" && uptimes.last() != Some(&p.payload) {
                uptimes.push(p.payload);
            }
        }
    })
    .await
    .expect("$SYS/broker/uptime published twice");
    // root got none of it; its `#` does work for other topics.
    assert_nothing_queued(&mut root).await;
    assert_eq!(
        root.publish("plain/topic", b"x", QoS::AtLeastOnce, false, 3)
            .await,
        Yes
    );
    assert_eq!(root.recv_publish().await.topic.as_str(), "plain/topic");
    server.shutdown().await;
}

#[tokio::test]
async fn a_denied_retained_publish_from_a_3_1_1_client_is_neither_delivered_nor_retained() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let v311 = ProtocolVersion::V3_1_1;
    let mut live = login(addr, "ops", "ops-live").await;
    assert_eq!(
        live.subscribe_many(1, &["devices/#", "status/#"], QoS::AtLeastOnce)
            .await,
        [ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS1]
    );
    let (mut old, _) = Raw::connect_with(addr, v311, "old-alice", with_login("alice")).await;
    // Another user's topic; and alice's own, where she may publish but not retain. 3.1.1
    // has no negative acknowledgement: each flow completes as if it went through.
    for (topic, qos, id) in [
        ("devices/bob/t", QoS::AtLeastOnce, 1),
        ("devices/alice/t", QoS::AtLeastOnce, 2),
        ("devices/alice/t", QoS::ExactlyOnce, 3),
        ("devices/alice/t0", QoS::AtMostOnce, 0),
    ] {
        assert_eq!(
            old.publish(topic, b"denied", qos, true, id).await,
            ReasonCode::Success,
            "{topic} at {qos:?}"
        );
    }
    wait_dropped(&server, corvus_core::DropReason::NotAuthorized, 4).await;
    assert_nothing_queued(&mut live).await;
    assert_eq!(server.broker().retained_count(), 0);
    // A later subscriber, allowed to read all of it, gets nothing.
    let (mut late, _) = Raw::connect_with(addr, v311, "late-ops", with_login("ops")).await;
    assert_eq!(
        late.subscribe_many(1, &["devices/#"], QoS::AtLeastOnce)
            .await,
        [ReasonCode::GrantedQoS1]
    );
    assert_nothing_queued(&mut late).await;
    // The same from a client granted retain (ops on status/#) is retained.
    let (mut old_ops, _) = Raw::connect_with(addr, v311, "old-ops", with_login("ops")).await;
    assert_eq!(
        old_ops
            .publish("status/kept", b"kept", QoS::AtLeastOnce, true, 1)
            .await,
        ReasonCode::Success
    );
    assert_eq!(&live.recv_publish().await.payload[..], b"kept");
    assert_eq!(
        late.subscribe_many(2, &["status/#"], QoS::AtLeastOnce)
            .await,
        [ReasonCode::GrantedQoS1]
    );
    let kept = late.recv_publish().await;
    assert_eq!((kept.topic.as_str(), kept.retain), ("status/kept", true));
    server.shutdown().await;
}

// ---- capability tokens ----

async fn token_client(addr: std::net::SocketAddr, token: &str, client: &str) -> Raw {
    Raw::connect_with(addr, ProtocolVersion::V5, client, with_token(token))
        .await
        .0
}

#[tokio::test]
async fn a_token_grants_exactly_its_rights_and_attenuation_only_narrows() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let site = files.mint(&["publish:site/1/#", "subscribe:site/1/#"], in_an_hour());
    let mut holder = token_client(addr, &site, "site").await;
    assert_eq!(
        holder.subscribe(1, "site/1/+/temp", QoS::AtMostOnce).await,
        [ReasonCode::Success]
    );
    assert_eq!(
        holder.subscribe(2, "site/#", QoS::AtMostOnce).await,
        [ReasonCode::NotAuthorized]
    );
    assert_eq!(
        holder
            .publish("site/2/x", b"x", QoS::AtLeastOnce, false, 3)
            .await,
        ReasonCode::NotAuthorized
    );
    // No retain right.
    assert_eq!(
        holder
            .publish("site/1/x", b"x", QoS::AtLeastOnce, true, 4)
            .await,
        ReasonCode::NotAuthorized
    );

    let device = attenuate(&site, &grants(&["publish:site/1/dev/7/#"]), None).unwrap();
    // Widened again by whoever holds the device token: the device block still applies.
    let widened = attenuate(&device, &grants(&["publish:site/#"]), None).unwrap();
    for (token, id) in [(&device, "dev"), (&widened, "wide")] {
        let mut client = token_client(addr, token, id).await;
        assert_eq!(
            client
                .publish("site/1/dev/7/t", b"x", QoS::AtLeastOnce, false, 1)
                .await,
            ReasonCode::Success,
            "{id}"
        );
        for topic in ["site/1/dev/8/t", "site/2/x"] {
            assert_eq!(
                client
                    .publish(topic, b"x", QoS::AtLeastOnce, false, 2)
                    .await,
                ReasonCode::NotAuthorized,
                "{id} {topic}"
            );
        }
        // The device block grants no subscribe at all.
        assert_eq!(
            client.subscribe(3, "site/1/dev/7/#", QoS::AtMostOnce).await,
            [ReasonCode::NotAuthorized]
        );
    }
    // 3.1.1 clients present tokens the same way.
    assert_eq!(
        connack(addr, ProtocolVersion::V3_1_1, Some("token"), Some(&site)).await,
        ReasonCode::Success
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_configured_token_user_name_carries_tokens_and_token_is_then_an_ordinary_user() {
    // "token" is a user in the password file (password "nekot").
    let files = Secured::new(&["alice", "token"], ACL);
    let (server, addr) = files
        .start(|c| {
            c.auth.allow_anonymous = Some(false);
            c.auth.token_username = "bearer".into();
        })
        .await;
    let v5 = ProtocolVersion::V5;
    let site = files.mint(&["publish:site/#"], in_an_hour());
    let (mut holder, _) = Raw::connect_with(addr, v5, "holder", |c| {
        c.username = Some(s("bearer"));
        c.password = Some(site.clone().into_bytes().into());
    })
    .await;
    assert_eq!(
        holder
            .publish("site/1", b"x", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success,
        "the token's rights"
    );
    assert_eq!(
        holder
            .publish("devices/bearer/x", b"x", QoS::AtLeastOnce, false, 2)
            .await,
        ReasonCode::NotAuthorized,
        "no user's rights"
    );
    // "token" now names a user: a token is its wrong password, its own password logs it in
    // with the rules for that user.
    assert_eq!(
        connack(addr, v5, Some("token"), Some(&site)).await,
        ReasonCode::BadUserNameOrPassword
    );
    let mut user = login(addr, "token", "user-token").await;
    assert_eq!(
        user.publish("devices/token/x", b"x", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::Success
    );
    assert_eq!(
        user.publish("site/1", b"x", QoS::AtLeastOnce, false, 2)
            .await,
        ReasonCode::NotAuthorized
    );
    server.shutdown().await;
}

/// A plain token's revocation while connected is in the abuse suite
/// (`a_token_revoked_while_connected_is_disconnected_0x87`); here, an attenuated token's:
/// its holder is disconnected, refused afterwards, and the holder of its parent is left
/// alone; and expiry.
#[tokio::test]
async fn a_token_revoked_or_expiring_while_connected_disconnects_its_holder() {
    let files = secured();
    let (server, addr) = files.start(|_| {}).await;
    let site = files.mint(&["publish:site/#", "subscribe:site/#"], in_an_hour());
    let device = attenuate(&site, &grants(&["publish:site/dev/#"]), None).unwrap();
    let mut parent = token_client(addr, &site, "parent").await;
    let mut child = token_client(addr, &device, "child").await;

    files.revoke(&server, &device);
    child.expect_disconnect(ReasonCode::NotAuthorized).await;
    // Revoking the child leaves its parent alone, and the attenuated token stays refused.
    parent.expect_nothing().await;
    let refused = connack(addr, ProtocolVersion::V5, Some("token"), Some(&device)).await;
    assert_eq!(refused, ReasonCode::NotAuthorized);

    // Expiry: a token valid for two more seconds.
    let brief = files.mint(
        &["publish:site/#"],
        SystemTime::now() + Duration::from_secs(2),
    );
    let mut brief_holder = token_client(addr, &brief, "brief").await;
    tokio::time::timeout(
        Duration::from_secs(10),
        brief_holder.expect_disconnect(ReasonCode::NotAuthorized),
    )
    .await
    .expect("disconnected at expiry");
    parent.expect_nothing().await;
    server.shutdown().await;
}

// ---- limits beyond the protocol ----

#[tokio::test]
async fn retained_messages_beyond_the_quota_get_0x97() {
    let (server, addr) = start_with(|c| c.limits.max_retained_messages = 2).await;
    let mut client = Raw::connect(addr, ProtocolVersion::V5, "r").await;
    for (topic, expected) in [
        ("r/1", ReasonCode::Success),
        ("r/2", ReasonCode::Success),
        ("r/3", ReasonCode::QuotaExceeded),
        // Replacing one is within the quota.
        ("r/1", ReasonCode::Success),
    ] {
        assert_eq!(
            client.publish(topic, b"v", QoS::AtLeastOnce, true, 1).await,
            expected,
            "{topic}"
        );
    }
    assert_eq!(server.broker().retained_count(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn retained_messages_beyond_the_byte_quota_get_0x97_and_go_nowhere() {
    // Counted as topic plus payload bytes.
    let (server, addr) = start_with(|c| c.limits.max_retained_bytes = 20).await;
    let v5 = ProtocolVersion::V5;
    let mut live = Raw::connect(addr, v5, "live").await;
    live.subscribe(1, "r/#", QoS::AtLeastOnce).await;
    let mut client = Raw::connect(addr, v5, "r").await;
    // 3 + 10 bytes: within.
    assert_eq!(
        client
            .publish("r/1", b"0123456789", QoS::AtLeastOnce, true, 1)
            .await,
        ReasonCode::Success
    );
    assert_eq!(&live.recv_publish().await.payload[..], b"0123456789");
    // 13 + 3 + 10 bytes: beyond. The whole PUBLISH is refused: not retained, not delivered.
    assert_eq!(
        client
            .publish("r/2", b"abcdefghij", QoS::AtLeastOnce, true, 2)
            .await,
        ReasonCode::QuotaExceeded
    );
    wait_dropped(&server, corvus_core::DropReason::QuotaExceeded, 1).await;
    assert_nothing_queued(&mut live).await;
    // Replacing r/1 frees what it held: 3 + 15 bytes are within.
    assert_eq!(
        client
            .publish("r/1", b"012345678901234", QoS::AtLeastOnce, true, 3)
            .await,
        ReasonCode::Success
    );
    assert_eq!(&live.recv_publish().await.payload[..], b"012345678901234");
    // A later subscriber gets r/1's latest, and nothing of r/2.
    let mut late = Raw::connect(addr, v5, "late").await;
    late.subscribe(1, "r/#", QoS::AtLeastOnce).await;
    let kept = late.recv_publish().await;
    assert_eq!(
        (kept.topic.as_str(), &kept.payload[..]),
        ("r/1", &b"012345678901234"[..])
    );
    assert_nothing_queued(&mut late).await;
    assert_eq!(server.broker().retained_count(), 1);
    assert_eq!(server.broker().retained_bytes(), 3 + 15);
    server.shutdown().await;
}

/// The broker stops reading a client beyond its rate until it is back within it: what it
/// takes from a flooder writing as fast as it can is one burst and then its rate, until the
/// disconnect (0x96), which comes no sooner than the grace period. (The abuse suite
/// floods with many small PUBLISHes per read, and checks other clients are not held up.)
#[tokio::test]
async fn a_client_beyond_its_message_rate_is_slowed_then_disconnected_with_0x96() {
    const RATE: u32 = 20;
    const GRACE: u64 = 1;
    let (server, addr) = start_with(|c| {
        c.limits.max_message_rate = RATE;
        c.limits.message_rate_grace = GRACE;
    })
    .await;
    let flood = Raw::connect(addr, ProtocolVersion::V5, "flood").await;
    let mut polite = Raw::connect(addr, ProtocolVersion::V5, "polite").await;
    // QoS 0 PUBLISHes of 8 KiB: a read of the broker's brings one or two of them.
    let mut bytes = bytes::BytesMut::new();
    Packet::Publish(mqtt_codec::Publish::new(s("f"), vec![b'x'; 8192].into()))
        .encode(ProtocolVersion::V5, &mut bytes)
        .unwrap();
    let (mut reader, mut writer) = tokio::io::split(flood.stream);
    let start = tokio::time::Instant::now();
    let flooding = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while writer.write_all(&bytes).await.is_ok() {}
    });
    // A client within the rate goes on.
    for i in 0..5 {
        assert_eq!(
            polite
                .publish("p", b"x", QoS::AtLeastOnce, false, i + 1)
                .await,
            ReasonCode::Success
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = Vec::new();
    // A reset is a close too; what arrived before it is in `answer`.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let _ = reader.read_to_end(&mut answer).await;
    })
    .await;
    let took = start.elapsed();
    flooding.abort();
    assert!(closed.is_ok(), "still connected after {took:?}");
    let mut decoder = mqtt_codec::Decoder::new(ProtocolVersion::V5);
    let mut buf = bytes::BytesMut::from(&answer[..]);
    match decoder.decode(&mut buf) {
        Ok(Some(Packet::Disconnect(d))) if buf.is_empty() => {
            assert_eq!(d.reason_code, ReasonCode::MessageRateTooHigh, "{d:?}")
        }
        other => panic!("expected DISCONNECT 0x96 alone, got {other:?} of {answer:?}"),
    }
    assert!(
        took >= Duration::from_secs(GRACE),
        "disconnected after {took:?}, before the grace period of {GRACE} s"
    );
    let (taken, _) = server.broker().metrics.publish_received(QoS::AtMostOnce);
    // One burst (a second's worth) and a second's worth per second since, plus half a second
    // for the last read and the clocks; unslowed, it would be thousands.
    let allowed = f64::from(RATE) * (took.as_secs_f64() + 1.5);
    eprintln!("{taken} PUBLISHes taken before the disconnect after {took:?}");
    assert!(
        taken as f64 <= allowed,
        "{taken} PUBLISHes taken in {took:?} at {RATE}/s (at most {allowed})"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_per_source_limit_are_closed_at_once() {
    let (server, addr) = start_with(|c| {
        c.limits.max_connections_per_source = 3;
        c.limits.connection_rate_per_source = 0;
    })
    .await;
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(Raw::connect(addr, ProtocolVersion::V5, &format!("c{i}")).await);
    }
    let mut refused = Raw::open(addr, ProtocolVersion::V5).await;
    refused
        .send(Connect::new(ProtocolVersion::V5, s("c4")).into())
        .await;
    assert!(refused.expect_close().await.is_empty());
    open.pop().unwrap().disconnect().await;
    // The slot comes back once the connection is gone.
    let mut again = None;
    for _ in 0..50 {
        let mut raw = Raw::open(addr, ProtocolVersion::V5).await;
        raw.send(Connect::new(ProtocolVersion::V5, s("c5")).into())
            .await;
        if let Ok(Some(Packet::ConnAck(_))) = raw.try_recv(Duration::from_millis(500)).await {
            again = Some(raw);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a slot was freed");
    assert!(
        server
            .broker()
            .metrics
            .refused(corvus_server::metrics::SourceLimit::TooMany)
            >= 1
    );
    server.shutdown().await;
}
