//! A secured broker's files for tests: a password file (cheap argon2 parameters), an ACL, a
//! capability token namespace (and a foreign one), and a revocation list, in a temporary
//! directory; with the helpers to change them while the broker runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use corvus_auth::scram::ScramCredentials;
use corvus_auth::token::{inspect, mint, Grant, RevocationList, RootKey};
use corvus_auth::{hash_password_with, HashParams, PasswordFile};
use corvus_server::{Config, Server};
use mqtt_codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode, Will, WillProperties};

use super::{s, start_with, Raw};

/// Each user's password: its name reversed.
pub fn password(user: &str) -> String {
    user.chars().rev().collect()
}

/// Logs in as `user` with its password (for [`Raw::connect_with`] and the like).
pub fn with_login(user: &str) -> impl Fn(&mut Connect) + Copy + '_ {
    move |c: &mut Connect| {
        c.username = Some(s(user));
        c.password = Some(password(user).into_bytes().into());
    }
}

/// Presents `token` (user name "token", the token as the password).
pub fn with_token(token: &str) -> impl Fn(&mut Connect) + Copy + '_ {
    move |c: &mut Connect| {
        c.username = Some(s("token"));
        c.password = Some(token.to_owned().into_bytes().into());
    }
}

/// A will on `topic`: QoS 1, payload "gone", no delay (callers set one).
pub fn will(topic: &str, retain: bool) -> Will {
    Will {
        topic: s(topic),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain,
        properties: WillProperties::default(),
    }
}

/// `token` with one byte in the middle changed: its signature no longer holds.
pub fn tamper(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

pub fn grants(grants: &[&str]) -> Vec<Grant> {
    grants.iter().map(|g| Grant::parse(g).unwrap()).collect()
}

pub fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

pub struct Secured {
    dir: tempfile::TempDir,
    key: RootKey,
    foreign: RootKey,
}

impl Secured {
    /// `users` in the password file, `acl` as the ACL file, and a fresh namespace.
    pub fn new(users: &[&str], acl: &str) -> Secured {
        Secured::new_with_scram(users, &[], acl)
    }

    /// [`new`](Self::new), with SCRAM-SHA-256 verifiers (4096 iterations) after the hash of
    /// each of `scram_users` (who must be among `users`).
    pub fn new_with_scram(users: &[&str], scram_users: &[&str], acl: &str) -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let mut passwords = PasswordFile::new();
        let cheap = HashParams::new(1024, 1, 1).unwrap();
        for user in users {
            let mut hash = hash_password_with(password(user).as_bytes(), &cheap).unwrap();
            if scram_users.contains(user) {
                let scram = ScramCredentials::generate(password(user).as_bytes(), 4096).unwrap();
                hash = format!("{hash} {}", scram.to_text());
            }
            passwords.add_or_replace(user, &hash).unwrap();
        }
        passwords.save(&dir.path().join("passwd")).unwrap();
        std::fs::write(dir.path().join("acl.toml"), acl).unwrap();
        let key = RootKey::generate();
        std::fs::write(dir.path().join("site.pub"), key.public_key().to_file_text()).unwrap();
        Secured {
            dir,
            key,
            foreign: RootKey::generate(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A broker on a free loopback port with these files configured, then `tune` applied.
    pub async fn start(&self, tune: impl FnOnce(&mut Config)) -> (Server, SocketAddr) {
        start_with(|c| {
            self.configure(c);
            tune(c);
        })
        .await
    }

    /// Every file in `[auth]`; anonymous clients allowed (they get the ACL's anonymous
    /// rules).
    pub fn configure(&self, config: &mut Config) {
        config.auth.password_file = Some(self.path("passwd"));
        config.auth.acl_file = Some(self.path("acl.toml"));
        config.auth.allow_anonymous = Some(true);
        config.auth.token_public_key = Some(self.path("site.pub"));
        config.auth.revocation_file = Some(self.path("revoked.txt"));
    }

    /// Replaces the ACL and reloads it.
    pub fn set_acl(&self, server: &Server, text: &str) {
        std::fs::write(self.path("acl.toml"), text).unwrap();
        server.reload_security().unwrap();
    }

    /// A token of this namespace granting `granted` until `expires`.
    pub fn mint(&self, granted: &[&str], expires: SystemTime) -> String {
        mint(&self.key, &grants(granted), expires, Some("site-1")).unwrap()
    }

    /// A token with these grants from another namespace's key.
    pub fn mint_foreign(&self, granted: &[&str]) -> String {
        mint(&self.foreign, &grants(granted), in_an_hour(), None).unwrap()
    }

    /// Revokes `token`'s last block (it and what was attenuated from it) and reloads.
    pub fn revoke(&self, server: &Server, token: &str) {
        self.revoke_offline(token);
        server.reload_security().unwrap();
    }

    /// Adds `token`'s last block to the revocation list, without telling any broker.
    pub fn revoke_offline(&self, token: &str) {
        let blocks = inspect(token).unwrap();
        let last = blocks.last().unwrap().revocation_id().to_owned();
        RevocationList::append_to_file(&self.path("revoked.txt"), &[last], "revoked by a test")
            .unwrap();
    }
}

/// The CONNACK code for a CONNECT with these credentials.
pub async fn connack(
    addr: SocketAddr,
    version: ProtocolVersion,
    user: Option<&str>,
    pass: Option<&str>,
) -> ReasonCode {
    let mut raw = Raw::open(addr, version).await;
    let mut connect = Connect::new(version, s("who"));
    connect.username = user.map(s);
    connect.password = pass.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    raw.send(connect.into()).await;
    match raw.recv().await {
        Packet::ConnAck(ack) => ack.reason_code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}
