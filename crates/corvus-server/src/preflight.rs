//! What a start checks before anything listens or the data directory is touched: the config
//! is valid, and every file it names can be read (TLS certificates, keys and client CAs,
//! the password, ACL, token key and revocation files). `corvus check-config` runs exactly
//! this, so a config it passes gets past these checks at start too.

use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::security::Security;
use crate::{tls, StartError};

/// The config's files, read and checked.
pub struct Preflight {
    pub security: Security,
    /// Each listener's TLS acceptor (`None` for plain ones), in `Config::all_listeners`
    /// order.
    pub tls: Vec<Option<TlsAcceptor>>,
}

impl std::fmt::Debug for Preflight {
    // The acceptors have no Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preflight")
            .field("security", &self.security)
            .field("tls_listeners", &self.tls.iter().flatten().count())
            .finish()
    }
}

impl Preflight {
    pub fn check(config: &Config) -> Result<Preflight, StartError> {
        config.validate()?;
        let tls = config
            .all_listeners()
            .iter()
            .map(|listener| {
                listener
                    .tls_files()
                    .map(|files| tls::acceptor(&files))
                    .transpose()
                    .map_err(|source| StartError::Tls {
                        addr: listener.bind,
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Preflight {
            security: Security::load(config)?,
            tls,
        })
    }
}
