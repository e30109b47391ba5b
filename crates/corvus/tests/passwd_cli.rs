//! `corvus passwd add|delete FILE USER` on the real binary: users added with the password on
//! standard input, replaced and deleted, the file's mode and lines, exit statuses, and that
//! `corvus_auth::PasswordFile` accepts the passwords the command set.
//!
//! The binary hashes with argon2's real default parameters (about half a second per hash in a
//! debug build), so these tests hash and verify only as often as they must.

mod support;

use std::path::Path;

use corvus_auth::PasswordFile;
use support::assert_mode_0600;

/// The PHC prefix of a hash made with argon2's default parameters.
const DEFAULT_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// Runs `corvus passwd ARGS` with `stdin` as its standard input, to completion.
fn passwd(args: &[&str], stdin: &[u8]) -> support::Output {
    support::corvus(&[&["passwd"], args].concat(), stdin)
}

fn add(file: &Path, user: &str, stdin: &[u8]) -> support::Output {
    passwd(&["add", file.to_str().unwrap(), user], stdin)
}

fn delete(file: &Path, user: &str) -> support::Output {
    passwd(&["delete", file.to_str().unwrap(), user], b"")
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn add_replace_and_delete_users() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("passwd");
    let bob = "bob/+ #é";

    let out = add(&file, "alice", b"wonderland\n");
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        out.stdout.trim(),
        format!("added \"alice\" to {}", file.display())
    );
    assert_mode_0600(&file);
    // A CRLF line end is stripped like a LF one.
    add(&file, bob, b"builder\r\n").assert_success();

    let two = lines(&file);
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(
        two[0].starts_with(&format!("alice:{DEFAULT_PREFIX}")),
        "{two:?}"
    );
    assert!(
        two[1].starts_with(&format!("{bob}:{DEFAULT_PREFIX}")),
        "{two:?}"
    );
    assert_mode_0600(&file);
    let loaded = PasswordFile::load(&file).unwrap();
    assert!(loaded.verify("alice", b"wonderland"));
    assert!(loaded.verify(bob, b"builder"));

    let out = add(&file, "alice", b"looking-glass\n");
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        out.stdout.trim(),
        format!("replaced the password of \"alice\" in {}", file.display())
    );
    let replaced = lines(&file);
    assert_eq!(replaced.len(), 2);
    assert_ne!(replaced[0], two[0], "alice has a new hash");
    assert!(replaced[0].starts_with(&format!("alice:{DEFAULT_PREFIX}")));
    assert_eq!(replaced[1], two[1], "bob's line is untouched");
    let loaded = PasswordFile::load(&file).unwrap();
    assert!(loaded.verify("alice", b"looking-glass"));
    assert!(!loaded.verify("alice", b"wonderland"));

    let out = delete(&file, bob);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(lines(&file), replaced[..1]);
    assert_mode_0600(&file);

    let out = delete(&file, bob);
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(
        out.stderr.trim(),
        format!(
            "corvus passwd delete: no user \"{bob}\" in {}",
            file.display()
        )
    );
    assert_eq!(lines(&file), replaced[..1], "unchanged");

    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["passwd"], "no temporary file left behind");
}

#[test]
fn comments_and_other_users_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("passwd");
    // A hash with small parameters, as another tool might have written: kept as it is.
    let small = corvus_auth::HashParams::new(64, 1, 1).unwrap();
    let carol = corvus_auth::hash_password_with(b"c", &small).unwrap();
    let before = format!("# Corvus users\n\ncarol:{carol}\n# end\n");
    std::fs::write(&file, &before).unwrap();

    add(&file, "dave", b"d").assert_success();
    let after = lines(&file);
    assert_eq!(
        after[..4],
        ["# Corvus users", "", &format!("carol:{carol}"), "# end"]
    );
    assert!(
        after[4].starts_with(&format!("dave:{DEFAULT_PREFIX}")),
        "{after:?}"
    );
    assert_eq!(after.len(), 5);
    assert_mode_0600(&file);

    delete(&file, "dave").assert_success();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn errors_exit_2_and_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad");
    std::fs::write(&bad, "# users\nalice\n").unwrap();
    for out in [add(&bad, "bob", b"pw\n"), delete(&bad, "alice")] {
        assert_eq!(out.code(), Some(2), "{out}");
        assert!(
            out.stderr
                .contains(&format!("{}:2: expected `user:hash`", bad.display())),
            "{out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "# users\nalice\n",
        "a bad file is left alone"
    );

    let missing = tmp.path().join("missing");
    let out = delete(&missing, "alice");
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains(&*missing.to_string_lossy()), "{out}");

    // Refused before anything is written: no file appears.
    for (user, stdin) in [
        ("alice", &b""[..]),
        ("alice", b"\n"),
        ("a:b", b"pw\n"),
        ("#x", b"pw\n"),
    ] {
        let out = add(&missing, user, stdin);
        assert_eq!(out.code(), Some(2), "{user:?} {stdin:?}: {out}");
        assert!(out.stderr.starts_with("corvus passwd add: "), "{out}");
    }
    assert!(!missing.exists());

    let in_missing_dir = tmp.path().join("no-dir").join("passwd");
    let out = add(&in_missing_dir, "alice", b"pw\n");
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("no-dir"), "{out}");
}

#[test]
fn help_lists_the_passwd_commands() {
    let out = passwd(&["--help"], b"");
    out.assert_success();
    assert!(
        out.stdout.contains("add") && out.stdout.contains("delete"),
        "{out}"
    );
    let out = support::corvus(&["--help"], "");
    out.assert_success();
    assert!(out.stdout.contains("passwd"), "{out}");
}

/// `--scram` stores SCRAM-SHA-256 verifiers after the hash; a SCRAM exchange with the password
/// succeeds against them, and the argon2id hash still verifies CONNECT passwords.
#[test]
fn add_with_scram_stores_verifiers_that_a_scram_client_proves() {
    use corvus_auth::scram::{start_exchange, Lookup, ScramClient};
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("passwd");
    let path = file.to_str().unwrap();
    let out = passwd(
        &["add", path, "dev", "--scram", "--scram-iterations", "5000"],
        b"pw\n",
    );
    out.assert_success();
    let line = &lines(&file)[0];
    assert!(line.starts_with(&format!("dev:{DEFAULT_PREFIX}")), "{line}");
    assert!(line.contains(" SCRAM-SHA-256$5000:"), "{line}");
    let loaded = PasswordFile::load(&file).unwrap();
    assert!(loaded.verify("dev", b"pw"));
    let (client, first) = ScramClient::start("dev", b"pw", "client-nonce");
    let (server, server_first) =
        start_exchange(first.as_bytes(), "server-nonce", |u| loaded.scram_lookup(u)).unwrap();
    let (client, last) = client.respond(server_first.as_bytes()).unwrap();
    let (user, server_final) = server.finish(last.as_bytes()).unwrap();
    assert_eq!(user, "dev");
    client.verify(server_final.as_bytes()).unwrap();
    assert!(matches!(loaded.scram_lookup("dev"), Lookup::Known(_)));

    // Too few iterations is refused before anything is written.
    let out = passwd(
        &["add", path, "weak", "--scram", "--scram-iterations", "10"],
        b"pw\n",
    );
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("iteration"), "{out}");
    assert_eq!(lines(&file).len(), 1);
}
