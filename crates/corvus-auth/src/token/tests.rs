//! Tests of the token model: grants, attenuation as intersection, expiry, signatures,
//! tampering, revocation, and the files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::builder::BlockBuilder;
use biscuit_auth::UnverifiedBiscuit;

use super::*;
use crate::pattern::Access::{self, Publish, Retain, Subscribe};

/// 2023-11-14T22:13:20Z: a fixed `now`, since the library reads no clock.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn grants(texts: &[&str]) -> Vec<Grant> {
    texts.iter().map(|t| Grant::parse(t).unwrap()).collect()
}

fn mint_with(key: &RootKey, texts: &[&str], expires: SystemTime) -> String {
    mint(key, &grants(texts), expires, Some("sensor-7")).unwrap()
}

fn verify_ok(token: &str, key: &RootKey, at: SystemTime) -> VerifiedToken {
    verify(token, &key.public_key(), at, &RevocationList::new()).unwrap()
}

/// Every (access, topic) in `cases` is allowed exactly when its bool says so.
fn assert_allows(token: &VerifiedToken, cases: &[(Access, &str, bool)]) {
    for &(access, topic, expected) in cases {
        assert_eq!(
            token.allows(access, topic),
            expected,
            "{access} {topic:?} should be {}",
            if expected { "allowed" } else { "denied" }
        );
    }
}

#[test]
fn mint_and_verify_allows_exactly_the_grants() {
    let key = RootKey::generate();
    let token = mint_with(
        &key,
        &[
            "publish:site/1/#",
            "subscribe:site/1/+/temp",
            "retain:site/1/status",
        ],
        now() + days(30),
    );
    let verified = verify_ok(&token, &key, now());
    assert_allows(
        &verified,
        &[
            (Publish, "site/1/dev/7/temp", true),
            (Publish, "site/1", true),
            (Publish, "site/2/dev/7/temp", false),
            (Publish, "site", false),
            // Subscribe and retain are separate rights, not implied by publish.
            (Subscribe, "site/1/dev/temp", true),
            (Subscribe, "site/1/+/temp", true),
            (Subscribe, "site/1/dev/humidity", false),
            (Subscribe, "site/1/#", false),
            (Retain, "site/1/status", true),
            (Retain, "site/1/other", false),
            // And publish is not implied by subscribe or retain.
            (Publish, "site/1/status", true),
        ],
    );
    assert_eq!(verified.label(), Some("sensor-7"));
    assert_eq!(verified.expires_at(), now() + days(30));
    assert_eq!(verified.revocation_ids().count(), 1);
    assert_eq!(
        verified.revocation_ids().next().unwrap().len(),
        128,
        "ed25519 signature, hex"
    );

    let subscribe_only = mint_with(&key, &["subscribe:site/1/#"], now() + days(1));
    let verified = verify_ok(&subscribe_only, &key, now());
    assert_allows(
        &verified,
        &[
            (Subscribe, "site/1/#", true),
            (Publish, "site/1/a", false),
            (Retain, "site/1/a", false),
        ],
    );
}

#[test]
fn subscribe_is_containment_through_every_block() {
    let key = RootKey::generate();
    let token = mint_with(&key, &["subscribe:site/1/#"], now() + days(1));
    let verified = verify_ok(&token, &key, now());
    assert_allows(
        &verified,
        &[
            (Subscribe, "site/1/+/temp", true),
            (Subscribe, "site/1/#", true),
            // `site/#` also matches site/2/..., which the grant does not cover.
            (Subscribe, "site/#", false),
            (Subscribe, "+/1/temp", false),
            (Subscribe, "#", false),
        ],
    );
    // An attenuation to `site/1/+/temp`: a filter must now be inside both.
    let child = attenuate(&token, &grants(&["subscribe:site/1/+/temp"]), None).unwrap();
    let verified = verify_ok(&child, &key, now());
    assert_allows(
        &verified,
        &[
            (Subscribe, "site/1/+/temp", true),
            (Subscribe, "site/1/dev/temp", true),
            (Subscribe, "site/1/#", false),
            (Subscribe, "site/1/dev/#", false),
        ],
    );
}

#[test]
fn attenuation_narrows() {
    let key = RootKey::generate();
    let root = mint_with(
        &key,
        &["publish:site/1/#", "subscribe:site/1/#"],
        now() + days(30),
    );
    let child = attenuate(&root, &grants(&["publish:site/1/dev/7/#"]), None).unwrap();
    let verified = verify_ok(&child, &key, now());
    assert_allows(
        &verified,
        &[
            (Publish, "site/1/dev/7/temp", true),
            (Publish, "site/1/dev/8/temp", false),
            // The child block grants no subscribe at all: denied entirely.
            (Subscribe, "site/1/dev/7/temp", false),
        ],
    );
    assert_eq!(verified.revocation_ids().count(), 2);
    assert_eq!(verified.label(), Some("sensor-7"));
    // The parent is unchanged by attenuating.
    assert!(verify_ok(&root, &key, now()).allows(Publish, "site/1/dev/8/temp"));
}

#[test]
fn a_wider_later_block_widens_nothing() {
    let key = RootKey::generate();
    let root = mint_with(&key, &["publish:site/#"], now() + days(30));
    let narrow = attenuate(&root, &grants(&["publish:site/1/#"]), None).unwrap();
    // The holder of `narrow` tries to win back all of site/# (and more).
    let widened = attenuate(
        &narrow,
        &grants(&["publish:site/#", "publish:#", "subscribe:#"]),
        None,
    )
    .unwrap();
    let verified = verify_ok(&widened, &key, now());
    assert_eq!(verified.revocation_ids().count(), 3);
    assert_allows(
        &verified,
        &[
            (Publish, "site/1/a", true),
            (Publish, "site/2/a", false),
            (Publish, "other/a", false),
            (Subscribe, "site/1/a", false),
        ],
    );
}

#[test]
fn expiry() {
    let key = RootKey::generate();
    let root = mint_with(&key, &["publish:a/#"], now() + days(30));
    let verified = verify_ok(&root, &key, now() + days(30));
    assert_eq!(
        verified.expires_at(),
        now() + days(30),
        "valid at its expiry"
    );
    let late = now() + days(30) + Duration::from_secs(1);
    match verify(&root, &key.public_key(), late, &RevocationList::new()) {
        Err(TokenError::Expired { at }) => assert_eq!(at, now() + days(30)),
        other => panic!("expected Expired, got {other:?}"),
    }

    // An attenuation expiring before its parent: the child expires first, the parent not.
    let child = attenuate(&root, &grants(&["publish:a/b"]), Some(now() + days(1))).unwrap();
    assert_eq!(verify_ok(&child, &key, now()).expires_at(), now() + days(1));
    let day_two = now() + days(2);
    assert!(matches!(
        verify(&child, &key.public_key(), day_two, &RevocationList::new()),
        Err(TokenError::Expired { at }) if at == now() + days(1)
    ));
    verify_ok(&root, &key, day_two);

    // An attenuation asking for a later expiry than its parent's gets the parent's.
    let later = attenuate(&root, &grants(&["publish:a/b"]), Some(now() + days(90))).unwrap();
    let blocks = inspect(&later).unwrap();
    assert_eq!(blocks[1].expires_at(), Some(now() + days(30)));
    assert!(matches!(
        verify(
            &later,
            &key.public_key(),
            now() + days(31),
            &RevocationList::new()
        ),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn the_tokens_own_checks_are_run() {
    // A block written with another biscuit tool, checking something the broker never
    // provides: biscuit's authorizer refuses the token even though the grants would allow.
    let key = RootKey::generate();
    let root = mint_with(&key, &["publish:a/#"], now() + days(1));
    let block = BlockBuilder::new()
        .code("right(\"publish\", \"a/#\"); check if operation(\"write\");")
        .unwrap();
    let child = UnverifiedBiscuit::from_base64(&root)
        .unwrap()
        .append(block)
        .unwrap()
        .to_base64()
        .unwrap();
    assert!(matches!(
        verify(&child, &key.public_key(), now(), &RevocationList::new()),
        Err(TokenError::Refused(_))
    ));
}

#[test]
fn unknown_rights_make_a_block_invalid() {
    let key = RootKey::generate();
    let root = mint_with(&key, &["publish:a/#"], now() + days(1));
    for code in [
        "right(\"admin\", \"#\");",
        "right(\"publish\", \"a/#/b\");",
        "right(\"publish\");",
    ] {
        let block = BlockBuilder::new().code(code).unwrap();
        let child = UnverifiedBiscuit::from_base64(&root)
            .unwrap()
            .append(block)
            .unwrap()
            .to_base64()
            .unwrap();
        assert!(
            matches!(
                verify(&child, &key.public_key(), now(), &RevocationList::new()),
                Err(TokenError::InvalidBlock { block: 1, .. })
            ),
            "{code}"
        );
    }
}

/// base64url with padding, biscuit's encoding of a token.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn tampered_tokens_are_refused() {
    let key = RootKey::generate();
    let root = mint_with(&key, &["publish:site/1/#"], now() + days(1));
    let child = attenuate(&root, &grants(&["publish:site/1/a"]), None).unwrap();
    let bytes = UnverifiedBiscuit::from_base64(&child)
        .unwrap()
        .to_vec()
        .unwrap();
    // The encoder above is biscuit's encoding: the untouched bytes still verify.
    verify_ok(&base64url(&bytes), &key, now());

    // Widening the authority grant in place, same length, keeping the protobuf valid.
    let at = bytes
        .windows(8)
        .position(|w| w == b"site/1/#")
        .expect("the grant is in the token");
    let mut widened = bytes.clone();
    widened[at..at + 8].copy_from_slice(b"site/+/#");
    assert!(matches!(
        verify(
            &base64url(&widened),
            &key.public_key(),
            now(),
            &RevocationList::new()
        ),
        Err(TokenError::Signature(_))
    ));

    // Any single flipped byte anywhere.
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        let result = verify(
            &base64url(&tampered),
            &key.public_key(),
            now(),
            &RevocationList::new(),
        );
        assert!(
            result.is_err(),
            "byte {i} of {} flipped: accepted",
            bytes.len()
        );
    }
}

#[test]
fn a_token_of_another_namespace_is_refused() {
    let key = RootKey::generate();
    let other = RootKey::generate();
    let token = mint_with(&other, &["publish:#"], now() + days(1));
    assert!(matches!(
        verify(&token, &key.public_key(), now(), &RevocationList::new()),
        Err(TokenError::Signature(_))
    ));
    assert!(verify_signature(&token, &key.public_key()).is_err());
    verify_signature(&token, &other.public_key()).unwrap();
    // Garbage is refused as not a token.
    assert!(matches!(
        verify(
            "not a token",
            &key.public_key(),
            now(),
            &RevocationList::new()
        ),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        verify("", &key.public_key(), now(), &RevocationList::new()),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn revocation() {
    let key = RootKey::generate();
    let root = mint_with(&key, &["publish:a/#"], now() + days(1));
    let child = attenuate(&root, &grants(&["publish:a/b"]), None).unwrap();
    let root_ids: Vec<String> = verify_ok(&root, &key, now())
        .revocation_ids()
        .map(str::to_owned)
        .collect();
    let verified_child = verify_ok(&child, &key, now());
    let child_ids: Vec<&str> = verified_child.revocation_ids().collect();
    assert_eq!(
        child_ids[0], root_ids[0],
        "the child carries the parent's blocks"
    );

    // Revoking the root's block revokes the attenuated child too.
    let by_root = RevocationList::parse(&format!("{}\n", root_ids[0])).unwrap();
    for token in [&root, &child] {
        match verify(token, &key.public_key(), now(), &by_root) {
            Err(TokenError::Revoked { id }) => assert_eq!(id, root_ids[0]),
            other => panic!("expected Revoked, got {other:?}"),
        }
    }
    assert!(verified_child.is_revoked_by(&by_root));

    // Revoking the child's own block leaves the parent valid. Upper case is the same id.
    let by_child = RevocationList::parse(&child_ids[1].to_uppercase()).unwrap();
    assert!(matches!(
        verify(&child, &key.public_key(), now(), &by_child),
        Err(TokenError::Revoked { .. })
    ));
    verify(&root, &key.public_key(), now(), &by_child).unwrap();
    assert!(!verify_ok(&root, &key, now()).is_revoked_by(&by_child));
}

#[test]
fn revocation_list_format() {
    let id = "ab".repeat(64);
    let list = RevocationList::parse(&format!(
        "# revoked tokens\n\n{id}\n  {}  # sensor-7, lost\n",
        "CD".repeat(64)
    ))
    .unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.contains(&id));
    assert!(list.contains(&"cd".repeat(64)));
    assert!(!list.contains(&"ef".repeat(64)));
    assert!(RevocationList::parse("").unwrap().is_empty());

    for (text, line, needle) in [
        ("abcd\nnot-hex\n", 2, "not a hex digit"),
        ("# c\n\nabc\n", 3, "odd number"),
        ("ab\ncd ef\n", 2, "not a hex digit"),
    ] {
        match RevocationList::parse(text) {
            Err(e @ TokenError::RevocationLine { line: l, .. }) => {
                assert_eq!(l, line, "{text:?}");
                let message = e.to_string();
                assert!(message.starts_with(&format!("line {line}: ")), "{message}");
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("{text:?}: expected a line error, got {other:?}"),
        }
    }
}

#[test]
fn revocation_file_append_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revoked.txt");
    let (a, b) = ("aa".repeat(64), "bb".repeat(64));
    let added =
        RevocationList::append_to_file(&path, std::slice::from_ref(&a), "sensor-7").unwrap();
    assert_eq!(added, std::slice::from_ref(&a));
    // Again: already there, nothing added; then a second id.
    assert!(
        RevocationList::append_to_file(&path, std::slice::from_ref(&a), "x")
            .unwrap()
            .is_empty()
    );
    RevocationList::append_to_file(&path, std::slice::from_ref(&b), "").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{a}  # sensor-7\n{b}\n"));
    let list = RevocationList::load(&path).unwrap();
    assert!(list.contains(&a) && list.contains(&b));

    // A broken file is named with its line, and never appended to.
    std::fs::write(&path, "# list\nzz\n").unwrap();
    let message = RevocationList::load(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "{}: line 2: \"zz\" is not a revocation id: 'z' is not a hex digit",
            path.display()
        )
    );
    assert!(RevocationList::append_to_file(&path, &[a], "").is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# list\nzz\n");
}

#[test]
fn grant_syntax() {
    let grant = Grant::parse("publish:site/1/#").unwrap();
    assert_eq!(grant.access(), Publish);
    assert_eq!(grant.pattern().as_str(), "site/1/#");
    assert_eq!(grant.to_string(), "publish:site/1/#");
    // The pattern is everything after the first colon.
    assert_eq!(
        Grant::parse("retain:a:b/+").unwrap().pattern().as_str(),
        "a:b/+"
    );
    for bad in [
        "site/1/#",
        "write:site/1/#",
        "publish:",
        "publish:a/#/b",
        "subscribe:a+/b",
        "publish:a/\"b",
        "publish:a\\b",
    ] {
        match Grant::parse(bad) {
            Err(e @ TokenError::InvalidGrant { .. }) => {
                assert!(e
                    .to_string()
                    .starts_with(&format!("invalid grant {bad:?}: ")))
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn minting_refuses_what_cannot_be_a_token() {
    let key = RootKey::generate();
    let expires = now() + days(1);
    assert!(matches!(
        mint(&key, &[], expires, None),
        Err(TokenError::NoGrants)
    ));
    for label in ["", "a\"b", "a\nb", &"x".repeat(300)] {
        assert!(matches!(
            mint(&key, &grants(&["publish:a"]), expires, Some(label)),
            Err(TokenError::InvalidLabel { .. })
        ));
    }
    let token = mint(&key, &grants(&["publish:a"]), expires, None).unwrap();
    assert_eq!(verify_ok(&token, &key, now()).label(), None);
    assert!(matches!(
        attenuate(&token, &[], None),
        Err(TokenError::NoGrants)
    ));
}

#[test]
fn expiry_syntax() {
    let at = |text: &str| parse_expiry(text, now());
    assert_eq!(at("90s").unwrap(), now() + Duration::from_secs(90));
    assert_eq!(at("10m").unwrap(), now() + Duration::from_secs(600));
    assert_eq!(at("12h").unwrap(), now() + Duration::from_secs(12 * 3600));
    assert_eq!(at("30d").unwrap(), now() + days(30));
    assert_eq!(
        at("2030-01-01T00:00:00Z").unwrap(),
        UNIX_EPOCH + Duration::from_secs(1_893_456_000)
    );
    assert_eq!(
        format_time(at("2030-01-01T01:00:00+01:00").unwrap()),
        "2030-01-01T00:00:00Z"
    );
    // Fractions of a second are dropped, as a token stores whole seconds.
    let fraction = now() + Duration::from_millis(300);
    assert_eq!(
        parse_expiry("1s", fraction).unwrap(),
        now() + Duration::from_secs(1)
    );
    for bad in [
        "",
        "0s",
        "30",
        "d",
        "30w",
        "-5m",
        "2020-01-01T00:00:00Z",
        "tomorrow",
        "99999999999999999999d",
    ] {
        assert!(
            matches!(at(bad), Err(TokenError::InvalidExpiry { .. })),
            "{bad:?}: {:?}",
            at(bad)
        );
    }
}

#[test]
fn key_files() {
    let dir = tempfile::tempdir().unwrap();
    let namespace = dir.path().join("site.1");
    let (key_path, pub_path) = keygen(&namespace).unwrap();
    assert_eq!(key_path, dir.path().join("site.1.key"));
    assert_eq!(pub_path, dir.path().join("site.1.pub"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key = RootKey::load(&key_path).unwrap();
    let public = PublicKey::load(&pub_path).unwrap();
    assert_eq!(key.public_key(), public);
    let token = mint_with(&key, &["publish:a"], now() + days(1));
    verify(&token, &public, now(), &RevocationList::new()).unwrap();

    // Never overwritten, the key stays the same.
    let before = std::fs::read_to_string(&key_path).unwrap();
    assert!(matches!(keygen(&namespace), Err(TokenError::KeyExists(p)) if p == key_path));
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), before);

    // Text forms: comment lines skipped; a public key is not a private key.
    let text = public.to_file_text();
    assert!(text.starts_with('#') && text.contains("\ned25519/"));
    assert_eq!(PublicKey::parse(&text).unwrap(), public);
    let message = RootKey::load(&pub_path).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: invalid private key", pub_path.display())),
        "{message}"
    );
    assert!(PublicKey::parse("# nothing\n").is_err());
}

/// A verified token keeps its text (trimmed) so that it can be verified again later, e.g.
/// for a session recovered after a restart; its `Debug` never shows it.
#[test]
fn a_verified_token_keeps_its_text_for_verifying_again_and_hides_it_from_debug() {
    let key = RootKey::generate();
    let token = mint_with(&key, &["publish:site/1/#"], now() + days(1));
    let verified = verify_ok(&format!("  {token}\n"), &key, now());
    assert_eq!(verified.text(), token);
    let again = verify_ok(verified.text(), &key, now());
    assert!(again.revocation_ids().eq(verified.revocation_ids()));
    assert!(matches!(
        verify(
            verified.text(),
            &key.public_key(),
            now() + days(2),
            &RevocationList::new()
        ),
        Err(TokenError::Expired { .. })
    ));
    let debug = format!("{verified:?}");
    assert!(!debug.contains(&token), "{debug}");
    assert!(debug.contains("VerifiedToken"));
}
