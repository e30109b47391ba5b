//! Test TLS: certificate authorities and certificates made with rcgen, PEM files for a
//! listener, and client configurations for tokio-rustls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A certificate authority made for one test.
pub struct Ca {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses), for a server or a client.
    pub fn issue(&self, names: &[&str], client: bool) -> (Certificate, KeyPair) {
        self.sign(names, client, None)
    }

    /// A client certificate with exactly this subject Common Name (none if `None`: an empty
    /// subject) and these Subject Alternative Names (DNS names, or IP addresses), for tests of
    /// the name a certificate gives its holder (`cert_identity`).
    pub fn issue_client_named(&self, cn: Option<&str>, sans: &[&str]) -> (Certificate, KeyPair) {
        let mut subject = DistinguishedName::new();
        if let Some(cn) = cn {
            subject.push(DnType::CommonName, cn);
        }
        self.sign(sans, true, Some(subject))
    }

    /// A leaf certificate signed by this CA (rcgen's default subject unless `subject`).
    fn sign(
        &self,
        names: &[&str],
        client: bool,
        subject: Option<DistinguishedName>,
    ) -> (Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if let Some(subject) = subject {
            params.distinguished_name = subject;
        }
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert, key)
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

/// The PEM files of a TLS listener, in a temporary directory.
pub struct Files {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub fn write_files(ca: &Ca, server: &(Certificate, KeyPair)) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // The chain: the leaf, then the CA (clients only need to trust the CA).
    let cert = write("server.pem", server.0.pem() + &ca.cert.pem());
    let key = write("server.key", server.1.serialize_pem());
    let ca = write("ca.pem", ca.cert.pem());
    Files {
        _dir: dir,
        cert,
        key,
        ca,
    }
}

pub fn client_config(
    ca: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    identity: Option<&(Certificate, KeyPair)>,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca.roots());
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            builder
                .with_client_auth_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
                .unwrap()
        }
    }
}

/// A TLS session to `addr` (verified as "localhost"), or the handshake's error.
pub async fn tls_connect(
    addr: SocketAddr,
    config: ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A broker (as [`super::start_with`] makes them) with a plaintext listener and an `mqtts`
/// one with these files, requiring client certificates from `client_ca` if given; returns
/// the plaintext and the TLS addresses.
pub async fn start_tls(
    files: &Files,
    client_ca: Option<&std::path::Path>,
) -> (corvus_server::Server, SocketAddr, SocketAddr) {
    let (server, plain) = super::start_with(|c| {
        c.listeners = vec![mqtts_listener(
            Some(files.cert.clone()),
            Some(files.key.clone()),
            client_ca.map(std::path::Path::to_path_buf),
        )];
    })
    .await;
    let tls = server.local_addrs()[1];
    assert_eq!(server.listener_descriptions()[1], format!("{tls} (TLS)"));
    (server, plain, tls)
}

/// An `mqtts` listener on a free loopback port with these files.
pub fn mqtts_listener(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> corvus_server::config::ListenerConfig {
    use corvus_server::config::{ListenerConfig, ListenerKind};
    ListenerConfig {
        kind: ListenerKind::Mqtts,
        cert,
        key,
        client_ca,
        ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
    }
}
