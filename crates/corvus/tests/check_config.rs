//! `corvus check-config FILE` on the real binary: a config the broker would start with is
//! accepted with a summary; unknown keys, bad values and every file the config names that
//! cannot be read are refused with the file and the problem; and it starts nothing: a port in
//! use does not fail it, and the data directory is never created.

mod support;

use std::path::{Path, PathBuf};

/// Runs `corvus check-config FILE` to completion.
fn check_config(file: &Path) -> support::Output {
    support::corvus(&["check-config", file.to_str().unwrap()], "")
}

/// A directory holding every file a full config names: TLS certificate, key and CA, a
/// password file, an ACL file, a token namespace key; and the text of a config naming them
/// all, with a data directory that does not exist.
struct Files {
    dir: tempfile::TempDir,
    chain: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    passwd: PathBuf,
    acl: PathBuf,
    token_key: PathBuf,
    data_dir: PathBuf,
}

impl Files {
    fn new() -> Files {
        let (tls_dir, ca, chain, key) = support::tls_files();
        let dir = tempfile::tempdir().unwrap();
        let copy = |from: &Path, name: &str| {
            let to = dir.path().join(name);
            std::fs::copy(from, &to).unwrap();
            to
        };
        let (ca, chain, key) = (
            copy(&ca, "ca.pem"),
            copy(&chain, "server.pem"),
            copy(&key, "server.key"),
        );
        drop(tls_dir);
        let passwd = dir.path().join("passwd");
        let cheap = corvus_auth::HashParams::new(64, 1, 1).unwrap();
        let mut file = corvus_auth::PasswordFile::new();
        let hash = corvus_auth::hash_password_with(b"secret", &cheap).unwrap();
        file.add_or_replace("alice", &hash).unwrap();
        file.save(&passwd).unwrap();
        let acl = dir.path().join("acl.toml");
        std::fs::write(
            &acl,
            "[[rule]]\nuser = \"alice\"\nallow = [\"publish\"]\ntopics = [\"x\"]\n",
        )
        .unwrap();
        let namespace = dir.path().join("site");
        let keygen = support::corvus(
            &["token", "keygen", "--out", namespace.to_str().unwrap()],
            "",
        );
        keygen.assert_success();
        let data_dir = dir.path().join("data");
        Files {
            token_key: dir.path().join("site.pub"),
            dir,
            chain,
            key,
            ca,
            passwd,
            acl,
            data_dir,
        }
    }

    /// The full config, listening for plain MQTT on `listen`.
    fn config(&self, listen: &str) -> String {
        format!(
            "listen = [\"{listen}\"]\n\
             data_dir = '{data}'\n\
             [auth]\n\
             password_file = '{passwd}'\n\
             acl_file = '{acl}'\n\
             token_public_key = '{token}'\n\
             revocation_file = '{revoked}'\n\
             [[listener]]\n\
             kind = \"mqtts\"\n\
             bind = \"127.0.0.1:8883\"\n\
             cert = '{chain}'\n\
             key = '{key}'\n\
             client_ca = '{ca}'\n\
             [[listener]]\n\
             kind = \"ws\"\n\
             bind = \"127.0.0.1:8080\"\n",
            data = self.data_dir.display(),
            passwd = self.passwd.display(),
            acl = self.acl.display(),
            token = self.token_key.display(),
            // Not there yet: an empty list, as at start.
            revoked = self.dir.path().join("revoked").display(),
            chain = self.chain.display(),
            key = self.key.display(),
            ca = self.ca.display(),
        )
    }

    fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("corvus.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

#[test]
fn a_good_config_passes_with_a_summary_and_the_data_directory_is_not_created() {
    let files = Files::new();
    let config = files.write(&files.config("127.0.0.1:1883"));
    let out = check_config(&config);
    assert_eq!(out.code(), Some(0), "{out}");
    for line in [
        "OK",
        "listener mqtt 127.0.0.1:1883",
        "listener mqtts 127.0.0.1:8883 (client certificates required)",
        "listener ws 127.0.0.1:8080 path /mqtt",
        "authentication: capability tokens, password file, ACL file",
        &format!("data directory: {}", files.data_dir.display()),
    ] {
        assert!(out.stdout.contains(line), "missing {line:?}: {out}");
    }
    assert!(
        !files.data_dir.exists(),
        "check-config created the data dir"
    );
}

#[test]
fn an_unknown_key_is_refused_with_the_file_key_and_line() {
    let files = Files::new();
    let config = files.write("log_level = \"info\"\nlisen = [\"127.0.0.1:1\"]\n");
    let out = check_config(&config);
    assert_eq!(out.code(), Some(1), "{out}");
    for part in [&config.display().to_string(), "lisen", "line 2"] {
        assert!(out.stderr.contains(part), "missing {part:?}: {out}");
    }
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn a_bad_value_is_refused_with_the_file_and_key() {
    let files = Files::new();
    let config = files.write("[limits]\nreceive_maximum = 0\n");
    let out = check_config(&config);
    assert_eq!(out.code(), Some(1), "{out}");
    for part in [&config.display().to_string(), "limits.receive_maximum"] {
        assert!(out.stderr.contains(part), "missing {part:?}: {out}");
    }
}

#[test]
fn a_missing_config_file_is_refused_with_its_path() {
    let out = check_config(Path::new("/nonexistent/corvus.toml"));
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("/nonexistent/corvus.toml"), "{out}");
}

/// Every file the config names is read as at start: removing any one of them fails the
/// check with a message naming that file (and the config).
#[test]
fn each_missing_file_the_config_names_is_refused_by_name() {
    let files = Files::new();
    let text = files.config("127.0.0.1:1883");
    for (what, path) in [
        ("password file", &files.passwd),
        ("ACL file", &files.acl),
        ("token public key", &files.token_key),
        ("TLS certificate", &files.chain),
        ("TLS key", &files.key),
        ("TLS client CA", &files.ca),
    ] {
        let missing = path.with_extension("missing");
        let broken = text.replace(
            &format!("'{}'", path.display()),
            &format!("'{}'", missing.display()),
        );
        assert_ne!(broken, text, "{what} is not in the config");
        let config = files.write(&broken);
        let out = check_config(&config);
        assert_eq!(out.code(), Some(1), "{what}: {out}");
        for part in [
            &missing.display().to_string(),
            &config.display().to_string(),
        ] {
            assert!(out.stderr.contains(part), "{what}: missing {part:?}: {out}");
        }
    }
    assert!(
        !files.data_dir.exists(),
        "check-config created the data dir"
    );
}

/// A broken (not missing) file is refused too: a key that is not a key.
#[test]
fn a_tls_key_that_does_not_parse_is_refused_by_name() {
    let files = Files::new();
    std::fs::write(&files.key, "not a key\n").unwrap();
    let config = files.write(&files.config("127.0.0.1:1883"));
    let out = check_config(&config);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("server.key"), "{out}");
}

/// check-config binds nothing and leaves the data directory alone: it passes beside a
/// running broker on the same port and the same (locked) data directory.
#[test]
fn a_port_in_use_and_a_locked_data_directory_do_not_fail_it() {
    let broker = support::Broker::start("check-config-beside");
    let files = Files::new();
    let text = files.config(&broker.addr.to_string()).replace(
        &format!("'{}'", files.data_dir.display()),
        &format!("'{}'", broker.data_dir.display()),
    );
    let config = files.write(&text);
    let out = check_config(&config);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout
            .contains(&format!("listener mqtt {}", broker.addr)),
        "{out}"
    );
    std::net::TcpStream::connect(broker.addr).expect("the broker still serves");
}
