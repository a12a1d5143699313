//! https endpoints: rustls (ring provider) with the configured CA bundle, or the
//! system bundle, and an optional client certificate.

use std::sync::Arc;

use provtarget_abi::{ConfigError, Error};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore,
};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::{TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY};

/// Debian's (and most distributions') bundle of trusted roots.
pub(crate) const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn bad(key: &str, path: &str, what: &str, e: impl std::fmt::Display) -> Error {
    ConfigError::new(key, path, &format!("{what} ({e})")).into()
}

/// Builds the TLS settings of the HTTP client from the configured files (empty = not
/// set), checking them here (with rustls on ring, as the requests will) so that a bad
/// file is a configuration error naming its key, not a failed request.
pub(crate) fn config(ca: &str, cert: &str, key: &str) -> Result<TlsConfig, Error> {
    let ca_path = if ca.is_empty() { SYSTEM_BUNDLE } else { ca };
    let mut roots = RootCertStore::empty();
    let mut root_list = Vec::new();
    let certs = CertificateDer::pem_file_iter(ca_path)
        .map_err(|e| bad(TLS_CA_KEY, ca_path, "a PEM file of CA certificates", e))?;
    for c in certs {
        let c = c.map_err(|e| bad(TLS_CA_KEY, ca_path, "a PEM file of CA certificates", e))?;
        root_list.push(Certificate::from_der(&c).to_owned());
        roots
            .add(c)
            .map_err(|e| bad(TLS_CA_KEY, ca_path, "valid CA certificates", e))?;
    }
    if roots.is_empty() {
        return Err(bad(
            TLS_CA_KEY,
            ca_path,
            "a PEM file of CA certificates",
            "none found",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots);
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .root_certs(RootCerts::Specific(Arc::new(root_list)));
    if !cert.is_empty() {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(TLS_CERT_KEY, cert, "a PEM certificate", e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(TLS_CERT_KEY, cert, "a PEM certificate", e))?;
        if chain.is_empty() {
            return Err(bad(TLS_CERT_KEY, cert, "a PEM certificate", "none found"));
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| bad(TLS_KEY_KEY, key, "a PEM private key", e))?;
        let pem = std::fs::read(key).map_err(|e| bad(TLS_KEY_KEY, key, "a PEM private key", e))?;
        let ureq_key = PrivateKey::from_pem(&pem)
            .map_err(|e| bad(TLS_KEY_KEY, key, "a PEM private key", e))?;
        let ureq_chain: Vec<Certificate<'static>> = chain
            .iter()
            .map(|c| Certificate::from_der(c).to_owned())
            .collect();
        builder
            .with_client_auth_cert(chain, private)
            .map_err(|e| bad(TLS_KEY_KEY, key, "the private key of the certificate", e))?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&ureq_chain, ureq_key)));
    }
    Ok(tls.build())
}
