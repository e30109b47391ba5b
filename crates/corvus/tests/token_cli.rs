//! `corvus token keygen|mint|attenuate|revoke|inspect` on the real binary: the key files and
//! their modes, what inspect shows of minted and attenuated tokens, tokens through standard
//! input, revocation ids that `corvus_auth::token::RevocationList` then holds, and errors.

mod support;

use std::path::Path;
use std::time::SystemTime;

use corvus_auth::pattern::Access;
use corvus_auth::token::{self, PublicKey, RevocationList};

/// Runs `corvus token ARGS` with `stdin` as its standard input, to completion.
fn corvus_token(args: &[&str], stdin: &str) -> support::Output {
    support::corvus(&[&["token"], args].concat(), stdin)
}

fn token(args: &[&str]) -> support::Output {
    corvus_token(args, "")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Lines of `inspect` output starting with `prefix` (after indentation).
fn lines_starting(out: &support::Output, prefix: &str) -> Vec<String> {
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn keygen_writes_a_secret_key_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("site1");
    let out = token(&["keygen", "--out", path(&ns)]);
    assert_eq!(out.code(), Some(0), "{out}");
    let key = dir.path().join("site1.key");
    let public = dir.path().join("site1.pub");
    assert!(out.stdout.contains(path(&key)), "{out}");
    support::assert_mode_0600(&key);
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.contains("\ned25519-private/"), "{key_text}");
    PublicKey::load(&public).unwrap();

    let again = token(&["keygen", "--out", path(&ns)]);
    assert_eq!(again.code(), Some(2), "{again}");
    assert!(
        again
            .stderr
            .contains("already exists: refusing to overwrite a key"),
        "{again}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_text);
}

#[test]
fn mint_attenuate_inspect_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("site1");
    token(&["keygen", "--out", path(&ns)]).assert_success();
    let key = dir.path().join("site1.key");
    let public_path = dir.path().join("site1.pub");

    let minted = token(&[
        "mint",
        "--key",
        path(&key),
        "--grant",
        "publish:site/1/#",
        "--grant",
        "subscribe:site/1/#",
        "--expires",
        "30d",
        "--id",
        "gateway-1",
    ]);
    assert_eq!(minted.code(), Some(0), "{minted}");
    let root_file = dir.path().join("root.tok");
    std::fs::write(&root_file, &minted.stdout).unwrap();

    let shown = token(&[
        "inspect",
        "--token",
        path(&root_file),
        "--key",
        path(&public_path),
    ]);
    assert_eq!(shown.code(), Some(0), "{shown}");
    assert_eq!(lines_starting(&shown, "block "), ["block 0 (authority)"]);
    assert_eq!(
        lines_starting(&shown, "grant: "),
        ["grant: publish:site/1/#", "grant: subscribe:site/1/#"]
    );
    assert_eq!(lines_starting(&shown, "label: "), ["label: gateway-1"]);
    assert_eq!(
        lines_starting(&shown, "signature: valid").len(),
        1,
        "{shown}"
    );

    // The broker's view agrees: the minted token verifies with the public key file.
    let public = PublicKey::load(&public_path).unwrap();
    let none = RevocationList::new();
    let now = SystemTime::now();
    let root = token::verify(&minted.stdout, &public, now, &none).unwrap();
    assert!(root.allows(Access::Publish, "site/1/dev/8/x"));

    // Attenuate through standard input.
    let child = corvus_token(
        &[
            "attenuate",
            "--token",
            "-",
            "--grant",
            "publish:site/1/dev/7/#",
            "--expires",
            "1d",
        ],
        &minted.stdout,
    );
    assert_eq!(child.code(), Some(0), "{child}");
    let child_file = dir.path().join("child.tok");
    std::fs::write(&child_file, &child.stdout).unwrap();
    let shown = token(&["inspect", "--token", path(&child_file)]);
    assert_eq!(shown.code(), Some(0), "{shown}");
    assert_eq!(
        lines_starting(&shown, "block "),
        ["block 0 (authority)", "block 1 (attenuation)"]
    );
    assert_eq!(
        lines_starting(&shown, "grant: "),
        [
            "grant: publish:site/1/#",
            "grant: subscribe:site/1/#",
            "grant: publish:site/1/dev/7/#"
        ]
    );
    assert_eq!(lines_starting(&shown, "expires: ").len(), 2, "{shown}");
    let ids = lines_starting(&shown, "revocation id: ");
    assert_eq!(ids.len(), 2, "{shown}");
    let child_id = ids[1].trim_start_matches("revocation id: ").to_string();
    let root_id = ids[0].trim_start_matches("revocation id: ").to_string();

    let verified = token::verify(&child.stdout, &public, now, &none).unwrap();
    assert!(verified.allows(Access::Publish, "site/1/dev/7/x"));
    assert!(!verified.allows(Access::Publish, "site/1/dev/8/x"));
    assert!(!verified.allows(Access::Subscribe, "site/1/dev/7/x"));

    // Revoke the child: its last block's id goes into the list, the root stays valid.
    let list_path = dir.path().join("revoked.txt");
    let out = token(&[
        "revoke",
        "--token",
        path(&child_file),
        "--file",
        path(&list_path),
    ]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains(&child_id), "{out}");
    let list = RevocationList::load(&list_path).unwrap();
    assert_eq!(list.len(), 1);
    assert!(list.contains(&child_id));
    assert!(!list.contains(&root_id));
    assert!(matches!(
        token::verify(&child.stdout, &public, now, &list),
        Err(token::TokenError::Revoked { .. })
    ));
    token::verify(&minted.stdout, &public, now, &list).unwrap();

    // Revoking again adds nothing; --all on the root's token adds the root's id.
    token(&[
        "revoke",
        "--token",
        path(&child_file),
        "--file",
        path(&list_path),
    ])
    .assert_success();
    assert_eq!(RevocationList::load(&list_path).unwrap().len(), 1);
    token(&[
        "revoke",
        "--token",
        path(&child_file),
        "--file",
        path(&list_path),
        "--all",
    ])
    .assert_success();
    let list = RevocationList::load(&list_path).unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.contains(&root_id));
}

#[test]
fn a_token_of_another_namespace_fails_inspect_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for ns in ["a", "b"] {
        token(&["keygen", "--out", path(&dir.path().join(ns))]).assert_success();
    }
    let minted = token(&[
        "mint",
        "--key",
        path(&dir.path().join("a.key")),
        "--grant",
        "publish:x",
        "--expires",
        "10m",
    ]);
    assert_eq!(minted.code(), Some(0), "{minted}");
    let b_pub = dir.path().join("b.pub");
    let out = corvus_token(
        &["inspect", "--token", "-", "--key", path(&b_pub)],
        &minted.stdout,
    );
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(lines_starting(&out, "signature: INVALID").len(), 1, "{out}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("ns");
    token(&["keygen", "--out", path(&ns)]).assert_success();
    let key = dir.path().join("ns.key");
    let mint = |grant: &str, expires: &str| {
        token(&[
            "mint",
            "--key",
            path(&key),
            "--grant",
            grant,
            "--expires",
            expires,
        ])
    };

    let out = mint("site/1/#", "1d");
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr
            .starts_with("corvus token mint: invalid grant \"site/1/#\": expected ACCESS:PATTERN"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");

    let out = mint("write:site/1/#", "1d");
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("unknown access \"write\""), "{out}");

    let out = mint("publish:a/#/b", "1d");
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("invalid grant \"publish:a/#/b\""),
        "{out}"
    );

    let out = mint("publish:a", "soon");
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("invalid expiry \"soon\""), "{out}");

    let out = token(&["inspect", "--token", "-"]);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("not a valid token"), "{out}");

    // --grant and --expires are required by mint.
    let out = token(&["mint", "--key", path(&key), "--expires", "1d"]);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--grant"), "{out}");
}

/// Connects (MQTT 5.0) presenting `token` (as `corvus token` printed it); returns the
/// client and the CONNACK's reason code.
fn token_client(
    addr: std::net::SocketAddr,
    id: &str,
    token: &str,
) -> (support::mqtt::Client, mqtt_codec::ReasonCode) {
    let login = support::mqtt::login("token", token.trim());
    let (client, ack) =
        support::mqtt::Client::connect(addr, mqtt_codec::ProtocolVersion::V5, id, login);
    (client, ack.reason_code)
}

/// The walk-through of docs/security.md with the real binary: a namespace, a token for a
/// site, one attenuated for a device, both connected to a broker that trusts the namespace;
/// `corvus token revoke` then SIGHUP disconnects the device's holder with 0x87 and refuses
/// it from then on, and leaves the site's holder alone.
#[cfg(unix)]
#[test]
fn a_token_revoked_and_reloaded_by_sighup_disconnects_its_holder() {
    use mqtt_codec::{Packet, ReasonCode};
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("site1");
    token(&["keygen", "--out", path(&ns)]).assert_success();
    let key = dir.path().join("site1.key");
    let gateway = token(&[
        "mint",
        "--key",
        path(&key),
        "--id",
        "gateway",
        "--grant",
        "publish:site/1/#",
        "--grant",
        "subscribe:site/1/#",
        "--expires",
        "30d",
    ]);
    gateway.assert_success();
    let gateway_file = dir.path().join("gateway.tok");
    std::fs::write(&gateway_file, &gateway.stdout).unwrap();
    let dev7 = token(&[
        "attenuate",
        "--token",
        path(&gateway_file),
        "--grant",
        "publish:site/1/dev/7/#",
        "--expires",
        "1d",
    ]);
    dev7.assert_success();
    let dev7_file = dir.path().join("dev7.tok");
    std::fs::write(&dev7_file, &dev7.stdout).unwrap();

    let revoked = dir.path().join("revoked.txt");
    let config = dir.path().join("corvus.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\ntoken_public_key = '{}'\nrevocation_file = '{}'\n",
            dir.path().join("site1.pub").display(),
            revoked.display()
        ),
    )
    .unwrap();
    let mut broker =
        support::Broker::start_with("token-sighup", &["--config".as_ref(), config.as_os_str()]);
    let (mut site, code) = token_client(broker.addr, "gateway", &gateway.stdout);
    assert_eq!(code, ReasonCode::Success, "{}", broker.log());
    let (mut device, code) = token_client(broker.addr, "dev7", &dev7.stdout);
    assert_eq!(code, ReasonCode::Success, "{}", broker.log());

    token(&[
        "revoke",
        "--token",
        path(&dev7_file),
        "--file",
        path(&revoked),
    ])
    .assert_success();
    broker.send_signal("HUP");
    match device.next() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::NotAuthorized),
        other => panic!("expected DISCONNECT 0x87, got {other:?}\n{}", broker.log()),
    }
    assert!(device.next().is_none(), "closed after the DISCONNECT");
    let (_, code) = token_client(broker.addr, "dev7", &dev7.stdout);
    assert_eq!(code, ReasonCode::NotAuthorized);
    // The gateway's token is its parent: still valid, its connection still served.
    site.send(Packet::PingReq);
    assert_eq!(site.next(), Some(Packet::PingResp));
    let status = broker
        .terminate(std::time::Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}
