//! MQTT 5.0 enhanced authentication over real sockets: SCRAM-SHA-256 against the password
//! file's SCRAM verifiers, before CONNACK and as re-authentication, and every way a client
//! can get it wrong.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::auth::{password, with_login, Secured};
use common::*;
use corvus_auth::scram::{fresh_nonce, ScramClient, ScramClientFinal};
use corvus_server::Server;
use mqtt_codec::{
    Auth, AuthProperties, ConnAck, Connect, Packet, ProtocolVersion, QoS, ReasonCode,
};

const METHOD: &str = "SCRAM-SHA-256";
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Each user publishes and subscribes under `devices/<user>/#` only.
const ACL: &str = r#"
[[rule]]
everyone = true
allow = ["publish", "subscribe"]
topics = ["devices/%u/#"]
"#;

/// alice and bob have SCRAM verifiers; carol only her argon2id hash.
async fn start() -> (Server, SocketAddr, Secured) {
    let files = Secured::new_with_scram(&["alice", "bob", "carol"], &["alice", "bob"], ACL);
    let (server, addr) = files.start(|c| c.limits.connect_timeout = 2).await;
    (server, addr, files)
}

fn auth_packet(reason_code: ReasonCode, method: &str, data: &str) -> Packet {
    Packet::Auth(Auth {
        reason_code,
        properties: AuthProperties {
            authentication_method: Some(s(method)),
            authentication_data: Some(Bytes::copy_from_slice(data.as_bytes())),
            ..Default::default()
        },
    })
}

/// The data of an AUTH 0x18 naming the method.
async fn recv_challenge(raw: &mut Raw) -> Bytes {
    match raw.recv().await {
        Packet::Auth(auth) => {
            assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(
                auth.properties
                    .authentication_method
                    .as_ref()
                    .map(|m| m.as_str()),
                Some(METHOD)
            );
            auth.properties.authentication_data.unwrap()
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

async fn recv_connack(raw: &mut Raw) -> ConnAck {
    match raw.recv().await {
        Packet::ConnAck(ack) => *ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// CONNECT with SCRAM as `user`/`pass`, through to the server-first message.
async fn begin(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    pass: &str,
) -> (Raw, ScramClient, Bytes) {
    let (client, first) = ScramClient::start(user, pass.as_bytes(), &fresh_nonce().unwrap());
    let mut raw = Raw::open(addr, V5).await;
    let mut connect = Connect::new(V5, s(client_id));
    connect.properties.authentication_method = Some(s(METHOD));
    connect.properties.authentication_data = Some(Bytes::from(first));
    raw.send(connect.into()).await;
    let server_first = recv_challenge(&mut raw).await;
    (raw, client, server_first)
}

/// Answers `server_first` with the client-final message (AUTH 0x18); returns the client's
/// last state, to check the broker's signature with.
async fn send_client_final(
    raw: &mut Raw,
    client: ScramClient,
    server_first: &[u8],
) -> ScramClientFinal {
    let (last, client_final) = client.respond(server_first).unwrap();
    raw.send(auth_packet(
        ReasonCode::ContinueAuthentication,
        METHOD,
        &client_final,
    ))
    .await;
    last
}

/// A whole SCRAM CONNECT; returns the client, the CONNACK and the client's last state.
async fn scram_connect(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    pass: &str,
) -> (Raw, ConnAck, ScramClientFinal) {
    let (mut raw, client, server_first) = begin(addr, client_id, user, pass).await;
    let last = send_client_final(&mut raw, client, &server_first).await;
    let ack = recv_connack(&mut raw).await;
    (raw, ack, last)
}

/// The `s=` (salt, decoded length) and `i=` (iterations) of a server-first message.
fn salt_and_iterations(server_first: &[u8]) -> (usize, u32) {
    let text = std::str::from_utf8(server_first).unwrap();
    let field = |name: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let salt = field("s=");
    assert!(
        salt.len() % 4 == 0
            && salt
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
        "not base64: {salt}"
    );
    let padding = salt.bytes().rev().take_while(|&b| b == b'=').count();
    (salt.len() / 4 * 3 - padding, field("i=").parse().unwrap())
}

#[tokio::test]
async fn scram_proves_the_user_and_the_broker_and_the_acl_follows_the_user() {
    let (server, addr, _files) = start().await;
    let (mut raw, ack, last) = scram_connect(addr, "a1", "alice", &password("alice")).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(
        ack.properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some(METHOD)
    );
    // The broker proves it holds alice's verifier.
    last.verify(&ack.properties.authentication_data.unwrap())
        .unwrap();
    // alice's rules, not anyone else's.
    assert_eq!(
        raw.subscribe(1, "devices/alice/#", QoS::AtLeastOnce).await,
        [ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        raw.subscribe(2, "devices/bob/#", QoS::AtLeastOnce).await,
        [ReasonCode::NotAuthorized]
    );
    assert_eq!(
        raw.publish("devices/bob/t", b"no", QoS::AtLeastOnce, false, 3)
            .await,
        ReasonCode::NotAuthorized
    );
    raw.publish("devices/alice/t", b"hi", QoS::AtMostOnce, false, 0)
        .await;
    assert_eq!(&raw.recv_publish().await.payload[..], b"hi");
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_passwords_unknown_users_and_users_without_verifiers_get_0x86_after_one_round() {
    let (server, addr, _files) = start().await;
    for (user, pass) in [
        ("alice", "wrong"),
        ("mallory", "yrollam"),
        ("carol", password("carol").as_str()),
    ] {
        let (mut raw, ack, _) = scram_connect(addr, "x", user, pass).await;
        assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword, "{user}");
        assert!(ack.properties.authentication_data.is_none());
        assert!(raw.expect_close().await.is_empty(), "{user}");
    }
    // Users who do not exist get a first answer shaped like a real one, the same each time.
    let salt_of = |first: &Bytes| {
        let text = std::str::from_utf8(first).unwrap().to_owned();
        text.split(',').skip(1).collect::<Vec<_>>().join(",")
    };
    let (_, _, first) = begin(addr, "y", "mallory", "x").await;
    let (_, _, again) = begin(addr, "y", "mallory", "x").await;
    assert_eq!(salt_of(&first), salt_of(&again));
    // Its made-up salt is as long as a real one, with the same iterations.
    let (_, _, real) = begin(addr, "y", "alice", "x").await;
    assert_eq!(salt_and_iterations(&first), salt_and_iterations(&real));
    assert_eq!(salt_and_iterations(&first).1, 4096);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_method_is_0x8c_even_with_scram_configured() {
    let (server, addr, _files) = start().await;
    for method in ["PLAIN", "SCRAM-SHA-1", "scram-sha-256"] {
        let mut raw = Raw::open(addr, V5).await;
        let mut connect = Connect::new(V5, s("m"));
        connect.properties.authentication_method = Some(s(method));
        raw.send(connect.into()).await;
        let ack = recv_connack(&mut raw).await;
        assert_eq!(
            ack.reason_code,
            ReasonCode::BadAuthenticationMethod,
            "{method}"
        );
        assert!(raw.expect_close().await.is_empty());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn anything_but_the_next_auth_before_connack_is_0x82_and_silence_times_out() {
    let (server, addr, _files) = start().await;
    let wrong_answers = [
        Packet::PingReq,
        auth_packet(ReasonCode::ContinueAuthentication, "PLAIN", "x"),
        auth_packet(ReasonCode::ReAuthenticate, METHOD, "x"),
    ];
    for wrong in wrong_answers {
        let (mut raw, _, _) = begin(addr, "w", "alice", &password("alice")).await;
        raw.send(wrong.clone()).await;
        let ack = recv_connack(&mut raw).await;
        assert_eq!(ack.reason_code, ReasonCode::ProtocolError, "{wrong:?}");
        assert!(raw.expect_close().await.is_empty());
    }
    // A malformed SCRAM message is refused, not answered.
    let (mut raw, _, _) = begin(addr, "w", "alice", &password("alice")).await;
    raw.send(auth_packet(
        ReasonCode::ContinueAuthentication,
        METHOD,
        "c=biws,r=x",
    ))
    .await;
    assert_eq!(
        recv_connack(&mut raw).await.reason_code,
        ReasonCode::NotAuthorized
    );
    assert!(raw.expect_close().await.is_empty());
    // A client that never answers is closed at the connect timeout (2 s here; expect_close
    // waits at most WAIT for it).
    let (mut raw, _, _) = begin(addr, "w", "alice", &password("alice")).await;
    assert!(raw.expect_close().await.is_empty());
    assert!(server.broker().session("w").is_none());
    server.shutdown().await;
}

/// Runs a re-authentication as `user`/`pass` on a connected client; returns what the broker
/// sent last.
async fn reauthenticate(raw: &mut Raw, user: &str, pass: &str) -> Packet {
    let (client, first) = ScramClient::start(user, pass.as_bytes(), &fresh_nonce().unwrap());
    raw.send(auth_packet(ReasonCode::ReAuthenticate, METHOD, &first))
        .await;
    let server_first = recv_challenge(raw).await;
    let last = send_client_final(raw, client, &server_first).await;
    let answer = raw.recv().await;
    if let Packet::Auth(auth) = &answer {
        last.verify(auth.properties.authentication_data.as_ref().unwrap())
            .unwrap();
    }
    answer
}

#[tokio::test]
async fn re_authentication_keeps_the_connection_only_for_the_same_user() {
    let (server, addr, _files) = start().await;
    let (mut raw, ack, _) = scram_connect(addr, "r", "alice", &password("alice")).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    for _ in 0..2 {
        match reauthenticate(&mut raw, "alice", &password("alice")).await {
            Packet::Auth(auth) => assert_eq!(auth.reason_code, ReasonCode::Success),
            other => panic!("expected AUTH 0x00, got {other:?}"),
        }
        raw.send(Packet::PingReq).await;
        assert_eq!(raw.recv().await, Packet::PingResp);
    }

    // bob's valid password does not make alice's connection bob's.
    match reauthenticate(&mut raw, "bob", &password("bob")).await {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::NotAuthorized),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
    assert!(raw.expect_close().await.is_empty());

    // A wrong password disconnects with 0x87.
    let (mut raw, _, _) = scram_connect(addr, "r", "alice", &password("alice")).await;
    match reauthenticate(&mut raw, "alice", "wrong").await {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::NotAuthorized),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
    assert!(raw.expect_close().await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_authenticated_with_a_password_cannot_re_authenticate() {
    let (server, addr, _files) = start().await;
    let (mut raw, _) = Raw::connect_with(addr, V5, "p", with_login("alice")).await;
    raw.send(auth_packet(
        ReasonCode::ReAuthenticate,
        METHOD,
        "n,,n=alice,r=x",
    ))
    .await;
    raw.expect_disconnect(ReasonCode::ProtocolError).await;
    server.shutdown().await;
}
