//! https endpoints: rustls (ring provider) with the configured CA bundle, or the
//! system bundle, and an optional client certificate.

use std::{net::TcpStream, sync::Arc};

use provtarget_abi::{ConfigError, Error};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
};

use crate::{
    etcd::TlsWrap,
    http::{Endpoint, Stream},
    TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY,
};

/// Debian's (and most distributions') bundle of trusted roots.
pub(crate) const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn bad(key: &str, path: &str, what: &str, e: impl std::fmt::Display) -> Error {
    ConfigError::new(key, path, &format!("{what} ({e})")).into()
}

/// Builds the TLS wrapper from the configured files (empty = not set).
pub(crate) fn wrapper(ca: &str, cert: &str, key: &str) -> Result<TlsWrap, Error> {
    let ca_path = if ca.is_empty() { SYSTEM_BUNDLE } else { ca };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_path)
        .map_err(|e| bad(TLS_CA_KEY, ca_path, "a PEM file of CA certificates", e))?;
    for c in certs {
        let c = c.map_err(|e| bad(TLS_CA_KEY, ca_path, "a PEM file of CA certificates", e))?;
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
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots);
    let config = if cert.is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(TLS_CERT_KEY, cert, "a PEM certificate", e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(TLS_CERT_KEY, cert, "a PEM certificate", e))?;
        if chain.is_empty() {
            return Err(bad(TLS_CERT_KEY, cert, "a PEM certificate", "none found"));
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| bad(TLS_KEY_KEY, key, "a PEM private key", e))?;
        builder
            .with_client_auth_cert(chain, private)
            .map_err(|e| bad(TLS_KEY_KEY, key, "the private key of the certificate", e))?
    };
    let config = Arc::new(config);
    Ok(Arc::new(move |ep: &Endpoint, tcp: TcpStream| {
        let name = ServerName::try_from(ep.host.clone())
            .map_err(|e| format!("{} is not a TLS server name: {e}", ep.host))?;
        let conn = ClientConnection::new(Arc::clone(&config), name)
            .map_err(|e| format!("cannot start TLS: {e}"))?;
        Ok(Box::new(StreamOwned::new(conn, tcp)) as Box<dyn Stream>)
    }))
}
