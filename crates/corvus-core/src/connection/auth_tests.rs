//! Enhanced authentication as the connection enforces it, fed packets directly: the exchange
//! before CONNACK, re-authentication, and every packet out of sequence.

use super::*;
use bytes::Bytes;
use mqtt_codec::{Auth, AuthProperties};

const METHOD: &str = "SCRAM-SHA-256";

fn auth(reason_code: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    Packet::Auth(Auth {
        reason_code,
        properties: AuthProperties {
            authentication_method: Some(MqttString::try_from(method).unwrap()),
            authentication_data: Some(Bytes::from_static(data)),
            ..Default::default()
        },
    })
}

fn sent(out: &[Action]) -> Vec<&Packet> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// A connection whose CONNECT named the method, after its first message.
fn started() -> (Connection, ConnectRequest) {
    let mut conn = Connection::new(Arc::new(BrokerConfig::default()), 0);
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::from_static("c"));
    connect.properties.authentication_method = Some(MqttString::from_static(METHOD));
    connect.properties.authentication_data = Some(Bytes::from_static(b"first"));
    let request = conn.on_connect(connect, 0, String::new).unwrap();
    (conn, request)
}

/// Connected after a one-round exchange.
fn connected() -> (Connection, Session) {
    let (mut conn, request) = started();
    let mut out = Vec::new();
    conn.auth_completed(None);
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    conn.accept(&request, &mut session, false, 0, &mut out);
    (conn, session)
}

#[test]
fn the_exchange_before_connack_carries_the_method_and_its_data() {
    let (mut conn, request) = started();
    let asked = request.authentication.clone().unwrap();
    assert_eq!(asked.method.as_str(), METHOD);
    assert_eq!(asked.data.as_deref(), Some(&b"first"[..]));

    let mut out = Vec::new();
    conn.auth_continue(Bytes::from_static(b"challenge"), &mut out);
    assert_eq!(
        sent(&out),
        [&auth(
            ReasonCode::ContinueAuthentication,
            METHOD,
            b"challenge"
        )]
    );
    let answer = conn
        .on_auth_response(auth(ReasonCode::ContinueAuthentication, METHOD, b"answer"))
        .unwrap();
    assert_eq!(answer.as_deref(), Some(&b"answer"[..]));

    out.clear();
    conn.auth_completed(Some(Bytes::from_static(b"final")));
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    conn.accept(&request, &mut session, false, 0, &mut out);
    let Packet::ConnAck(ack) = sent(&out)[0] else {
        panic!("{out:?}")
    };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(
        ack.properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some(METHOD)
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"final"[..])
    );
}

#[test]
fn anything_but_the_methods_next_step_before_connack_is_refused_with_0x82() {
    for wrong in [
        auth(ReasonCode::ContinueAuthentication, "PLAIN", b"x"),
        auth(ReasonCode::ReAuthenticate, METHOD, b"x"),
        auth(ReasonCode::Success, METHOD, b"x"),
        Packet::PingReq,
    ] {
        let (mut conn, _) = started();
        let refusal = conn.on_auth_response(wrong.clone()).unwrap_err();
        assert_eq!(refusal.reason, ReasonCode::ProtocolError, "{wrong:?}");
        let Some(packet) = refusal.connack else {
            panic!("{wrong:?}: no CONNACK")
        };
        assert!(
            matches!(*packet, Packet::ConnAck(ref a) if a.reason_code == ReasonCode::ProtocolError)
        );
        assert!(conn.is_closed());
    }
    // A client that gives up gets no answer.
    let (mut conn, _) = started();
    let refusal = conn
        .on_auth_response(Packet::Disconnect(Default::default()))
        .unwrap_err();
    assert!(refusal.connack.is_none());
    assert!(conn.is_closed());
}

#[test]
fn without_a_method_connack_names_none() {
    let mut conn = Connection::new(Arc::new(BrokerConfig::default()), 0);
    let connect = Connect::new(ProtocolVersion::V5, MqttString::from_static("c"));
    let request = conn.on_connect(connect, 0, String::new).unwrap();
    assert!(request.authentication.is_none());
    let mut out = Vec::new();
    conn.auth_continue(Bytes::from_static(b"x"), &mut out);
    assert!(
        out.is_empty(),
        "never an AUTH without a method [MQTT-4.12.0-6]"
    );
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    conn.accept(&request, &mut session, false, 0, &mut out);
    let Packet::ConnAck(ack) = sent(&out)[0] else {
        panic!("{out:?}")
    };
    assert!(ack.properties.authentication_method.is_none());
    assert!(ack.properties.authentication_data.is_none());
}

#[test]
fn re_authentication_runs_one_exchange_at_a_time_and_ends_in_auth_success() {
    let (mut conn, mut session) = connected();
    let mut out = Vec::new();
    conn.on_packet(
        auth(ReasonCode::ReAuthenticate, METHOD, b"again"),
        &mut session,
        0,
        &mut out,
    );
    assert_eq!(
        out,
        [Action::Authenticate {
            data: Some(Bytes::from_static(b"again")),
        }]
    );
    out.clear();
    conn.auth_continue(Bytes::from_static(b"challenge"), &mut out);
    conn.on_packet(
        auth(ReasonCode::ContinueAuthentication, METHOD, b"answer"),
        &mut session,
        0,
        &mut out,
    );
    // The broker's challenge, then the client's answer for the runtime: nothing else.
    assert_eq!(
        out,
        [
            Action::Send(auth(
                ReasonCode::ContinueAuthentication,
                METHOD,
                b"challenge"
            )),
            Action::Authenticate {
                data: Some(Bytes::from_static(b"answer")),
            }
        ]
    );
    out.clear();
    conn.reauth_succeeded(Some(Bytes::from_static(b"final")), &mut out);
    assert_eq!(sent(&out), [&auth(ReasonCode::Success, METHOD, b"final")]);
    assert!(conn.is_connected());

    // And again, later: a new exchange may start.
    out.clear();
    conn.on_packet(
        auth(ReasonCode::ReAuthenticate, METHOD, b"third"),
        &mut session,
        0,
        &mut out,
    );
    assert!(matches!(out[..], [Action::Authenticate { .. }]));
}

#[test]
fn re_authentication_out_of_sequence_or_with_another_method_is_disconnect_0x82() {
    let cases: [&[Packet]; 4] = [
        &[auth(ReasonCode::ContinueAuthentication, METHOD, b"x")],
        &[
            auth(ReasonCode::ReAuthenticate, METHOD, b"x"),
            auth(ReasonCode::ReAuthenticate, METHOD, b"x"),
        ],
        &[auth(ReasonCode::ReAuthenticate, "PLAIN", b"x")],
        &[auth(ReasonCode::Success, METHOD, b"x")],
    ];
    for packets in cases {
        let (mut conn, mut session) = connected();
        let mut out = Vec::new();
        let (last, before) = packets.split_last().unwrap();
        for packet in before {
            conn.on_packet(packet.clone(), &mut session, 0, &mut out);
        }
        assert!(!conn.is_closed(), "{packets:?}");
        out.clear();
        // The packet out of sequence: DISCONNECT 0x82 and the close, nothing else.
        conn.on_packet(last.clone(), &mut session, 0, &mut out);
        assert!(conn.is_closed(), "{packets:?}");
        match &out[..] {
            [Action::Send(Packet::Disconnect(d)), Action::Close] => {
                assert_eq!(d.reason_code, ReasonCode::ProtocolError, "{packets:?}")
            }
            other => panic!("{packets:?}: expected DISCONNECT 0x82 then Close, got {other:?}"),
        }
    }
}

#[test]
fn a_failed_re_authentication_is_disconnect_0x87() {
    let (mut conn, mut session) = connected();
    let mut out = Vec::new();
    conn.on_packet(
        auth(ReasonCode::ReAuthenticate, METHOD, b"x"),
        &mut session,
        0,
        &mut out,
    );
    out.clear();
    conn.auth_failed(&mut out);
    assert!(matches!(
        sent(&out)[..],
        [Packet::Disconnect(ref d)] if d.reason_code == ReasonCode::NotAuthorized
    ));
    assert_eq!(out.last(), Some(&Action::Close));
    assert!(conn.is_closed());
}

/// A runtime that accepts a client without running the method it named (a bug there) does
/// not get a CONNACK claiming the method succeeded.
#[test]
fn connack_names_the_method_only_once_it_completed() {
    let (mut conn, request) = started();
    let mut out = Vec::new();
    let mut session = Session::new("c".into(), &BrokerConfig::default());
    conn.accept(&request, &mut session, false, 0, &mut out);
    let Packet::ConnAck(ack) = sent(&out)[0] else {
        panic!("{out:?}")
    };
    assert!(ack.properties.authentication_method.is_none());
    assert!(ack.properties.authentication_data.is_none());
}
