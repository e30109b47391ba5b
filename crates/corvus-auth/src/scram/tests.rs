use super::*;

/// RFC 7677 section 3: user "user", password "pencil".
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn pencil() -> ScramCredentials {
    ScramCredentials::derive(b"pencil", &unb64(SALT).unwrap(), 4096)
}

fn known(credentials: ScramCredentials) -> impl FnOnce(&str) -> Lookup {
    move |user| match user {
        "user" => Lookup::Known(credentials),
        _ => Lookup::Unknown {
            salt: b"made up".to_vec(),
            iterations: 4096,
        },
    }
}

#[test]
fn the_server_side_reproduces_rfc_7677() {
    let (exchange, server_first) =
        start_exchange(CLIENT_FIRST.as_bytes(), SERVER_NONCE, known(pencil())).unwrap();
    assert_eq!(server_first, SERVER_FIRST);
    assert_eq!(exchange.user(), "user");
    let (user, server_final) = exchange.finish(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(user, "user");
    assert_eq!(server_final, SERVER_FINAL);
}

#[test]
fn the_client_side_reproduces_rfc_7677() {
    let (client, first) = ScramClient::start("user", b"pencil", CLIENT_NONCE);
    assert_eq!(first, CLIENT_FIRST);
    let (last, client_final) = client.respond(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(client_final, CLIENT_FINAL);
    last.verify(SERVER_FINAL.as_bytes()).unwrap();
    assert_eq!(
        last.verify(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        Err(ScramError::InvalidServerSignature)
    );
}

/// Runs a whole exchange between our client and our server.
fn exchange(user: &str, password: &[u8], stored: ScramCredentials) -> Result<String, ScramError> {
    let (client, first) = ScramClient::start(user, password, &fresh_nonce().unwrap());
    let lookup = move |name: &str| match name == "alice" {
        true => Lookup::Known(stored),
        false => Lookup::Unknown {
            salt: b"made up".to_vec(),
            iterations: 4096,
        },
    };
    let (server, server_first) = start_exchange(first.as_bytes(), &fresh_nonce().unwrap(), lookup)?;
    let (last, client_final) = client.respond(server_first.as_bytes())?;
    let (proven, server_final) = server.finish(client_final.as_bytes())?;
    last.verify(server_final.as_bytes())?;
    Ok(proven)
}

#[test]
fn the_right_password_proves_the_user_and_others_do_not() {
    let stored = ScramCredentials::generate(b"s3cret", 4096).unwrap();
    assert_eq!(
        exchange("alice", b"s3cret", stored.clone()),
        Ok("alice".into())
    );
    assert_eq!(
        exchange("alice", b"wrong", stored.clone()),
        Err(ScramError::InvalidProof("alice".into()))
    );
    assert_eq!(
        exchange("mallory", b"s3cret", stored),
        Err(ScramError::UnknownUser("mallory".into()))
    );
}

#[test]
fn an_unknown_user_gets_a_first_answer_like_a_known_one() {
    let lookup = |_: &str| Lookup::Unknown {
        salt: b"made up".to_vec(),
        iterations: 4096,
    };
    let (_, first) = start_exchange(b"n,,n=nobody,r=abc", "xyz", lookup).unwrap();
    assert_eq!(first, format!("r=abcxyz,s={},i=4096", b64(b"made up")));
}

#[test]
fn a_final_message_from_another_exchange_is_refused() {
    let start = || start_exchange(CLIENT_FIRST.as_bytes(), SERVER_NONCE, known(pencil()));
    let (server, _) = start().unwrap();
    let other_nonce = CLIENT_FINAL.replace("k0,p=", "k1,p=");
    assert_eq!(
        server.finish(other_nonce.as_bytes()).unwrap_err(),
        ScramError::NonceMismatch
    );
    let (server, _) = start().unwrap();
    // `eSws` is `y,,`: not the header the first message had.
    let other_binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
    assert_eq!(
        server.finish(other_binding.as_bytes()).unwrap_err(),
        ScramError::BindingMismatch
    );
    let (server, _) = start().unwrap();
    let flipped = CLIENT_FINAL.replace("p=dH", "p=dI");
    assert_eq!(
        server.finish(flipped.as_bytes()).unwrap_err(),
        ScramError::InvalidProof("user".into())
    );
}

#[test]
fn unsupported_and_malformed_first_messages_are_refused() {
    let start = |message: &str| {
        start_exchange(message.as_bytes(), "x", known(pencil()))
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        start("p=tls-unique,,n=user,r=a"),
        ScramError::ChannelBinding
    );
    assert_eq!(
        start("n,a=admin,n=user,r=a"),
        ScramError::AuthorizationIdentity
    );
    for bad in [
        "",
        "n,,",
        "n,,n=user",
        "n,,r=a,n=user",
        "n,,n=,r=a",
        "n,,n=us=er,r=a",
        "n,,n=user,r=",
        "n,,m=ext,n=user,r=a",
        "x,,n=user,r=a",
    ] {
        assert!(
            matches!(start(bad), ScramError::Malformed(_)),
            "{bad:?}: {:?}",
            start(bad)
        );
    }
    assert!(matches!(
        start_exchange(b"n,,n=\xff,r=a", "x", known(pencil())),
        Err(ScramError::Malformed(_))
    ));
    // The authorization identity may name the user itself.
    assert!(start_exchange(b"n,a=user,n=user,r=a", "x", known(pencil())).is_ok());
}

#[test]
fn user_names_with_commas_and_equals_are_escaped() {
    let stored = ScramCredentials::generate(b"pw", 4096).unwrap();
    let (client, first) = ScramClient::start("a,b=c", b"pw", "nonce");
    assert_eq!(first, "n,,n=a=2Cb=3Dc,r=nonce");
    let (server, server_first) = start_exchange(first.as_bytes(), "more", |user| {
        assert_eq!(user, "a,b=c");
        Lookup::Known(stored)
    })
    .unwrap();
    let (_, client_final) = client.respond(server_first.as_bytes()).unwrap();
    assert_eq!(server.finish(client_final.as_bytes()).unwrap().0, "a,b=c");
}

#[test]
fn credentials_round_trip_through_their_rfc_5803_text() {
    let credentials = pencil();
    let text = credentials.to_text();
    assert!(
        text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
        "{text}"
    );
    assert_eq!(ScramCredentials::parse(&text).unwrap(), credentials);
    for bad in [
        "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AA==:AA==",
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==",
        "SCRAM-SHA-256$1000:W22ZaJ0SNY7soEsUEjb6gQ==$AA==:AA==",
        "SCRAM-SHA-256$many:W22ZaJ0SNY7soEsUEjb6gQ==$AA==:AA==",
        "SCRAM-SHA-256$4096:!!$AA==:AA==",
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AA==:AA==",
    ] {
        assert!(ScramCredentials::parse(bad).is_err(), "{bad}");
    }
    assert!(!format!("{credentials:?}").contains(&b64(&credentials.stored_key)));
}

#[test]
fn a_server_asking_for_too_few_iterations_is_refused_by_the_client() {
    let (client, _) = ScramClient::start("user", b"pencil", CLIENT_NONCE);
    let weak = SERVER_FIRST.replace("i=4096", "i=1");
    assert!(matches!(
        client.respond(weak.as_bytes()),
        Err(ScramError::Malformed(_))
    ));
    let (client, _) = ScramClient::start("user", b"pencil", CLIENT_NONCE);
    assert_eq!(
        client.respond(b"r=someone-else,s=AAAA,i=4096").unwrap_err(),
        ScramError::NonceMismatch
    );
}
