//! A secured broker's files for tests: a password file (cheap argon2 parameters), an ACL, a
//! capability token namespace (and a foreign one), and a revocation list, in a temporary
//! directory; with the helpers to change them while the broker runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use corvus_auth::token::{inspect, mint, Grant, RevocationList, RootKey};
use corvus_auth::{hash_password_with, HashParams, PasswordFile};
use corvus_server::{Config, Server};
use mqtt_codec::{Connect, Packet, ProtocolVersion, ReasonCode};

use super::{s, Raw};

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
        let dir = tempfile::tempdir().unwrap();
        let mut passwords = PasswordFile::new();
        let cheap = HashParams::new(1024, 1, 1).unwrap();
        for user in users {
            let hash = hash_password_with(password(user).as_bytes(), &cheap).unwrap();
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
        let blocks = inspect(token).unwrap();
        let last = blocks.last().unwrap().revocation_id().to_owned();
        RevocationList::append_to_file(&self.path("revoked.txt"), &[last], "revoked by a test")
            .unwrap();
        server.reload_security().unwrap();
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
