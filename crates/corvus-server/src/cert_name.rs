//! The name a verified client certificate gives its holder, when a listener says so
//! (`cert_identity`): the subject's Common Name, or the first DNS name or e-mail address of
//! its Subject Alternative Name. rustls has already verified the chain against the
//! listener's `client_ca`; this only reads the name.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::CertIdentity;

/// The name in the end-entity certificate `der`, or `None` if it has none of that kind (or
/// cannot be read, which a verified certificate can always be).
pub fn certificate_name(der: &[u8], which: CertIdentity) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let name = match which {
        CertIdentity::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        CertIdentity::San => {
            let san = cert.subject_alternative_name().ok()??;
            san.value.general_names.iter().find_map(|name| match name {
                GeneralName::DNSName(name) | GeneralName::RFC822Name(name) => {
                    Some((*name).to_owned())
                }
                _ => None,
            })
        }
    };
    // An empty name names nobody: it would be a user no password file can hold, and `%u`
    // would make it an empty topic level.
    name.filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: &str, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_common_name_or_the_first_alternative_name() {
        let der = certificate("device-7", &["d7.example", "other.example"]);
        assert_eq!(
            certificate_name(&der, CertIdentity::Cn).as_deref(),
            Some("device-7")
        );
        assert_eq!(
            certificate_name(&der, CertIdentity::San).as_deref(),
            Some("d7.example")
        );
        let bare = certificate("only-cn", &[]);
        assert_eq!(certificate_name(&bare, CertIdentity::San), None);
        let empty = certificate("", &[]);
        assert_eq!(certificate_name(&empty, CertIdentity::Cn), None);
        assert_eq!(
            certificate_name(b"not a certificate", CertIdentity::Cn),
            None
        );
    }
}
