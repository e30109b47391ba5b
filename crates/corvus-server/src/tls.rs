//! TLS for `mqtts` listeners: the server certificate and key read from PEM files, TLS 1.2
//! and 1.3 on rustls with the ring provider, and optionally client certificates (mutual
//! TLS) verified against a CA.
//!
//! Everything is checked when the listener is set up, so a missing file, a key that does
//! not parse or a certificate that does not match its key stops the broker at start with a
//! message naming the file, not at the first connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Why a TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {}: {reason}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{} holds no {what}", path.display())]
    Empty { what: &'static str, path: PathBuf },
    #[error("the certificate {} and the key {} do not make a TLS server: {reason}", cert.display(), key.display())]
    Server {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("the client CA {} cannot verify client certificates: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
}

/// Where a TLS listener's certificates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// If set, clients must present a certificate signed by a CA in this PEM file.
    pub client_ca: Option<PathBuf>,
}

/// The acceptor for a listener with these files.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert, "a certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Read {
        what: "a private key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let server = |reason: String| TlsError::Server {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| server(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs(path, "a CA certificate")? {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| server(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |reason: String| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}
