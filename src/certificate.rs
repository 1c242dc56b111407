//! Certificates as the proxy serves them: PEM parsed and checked (the key must match the
//! certificate), a TLS server configuration per certificate, and the self-signed
//! default for when none is configured.

use crate::store::CertificatePem;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ProducesTickets;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// Why a certificate cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    /// No certificate in the PEM, or a malformed one.
    #[error("no valid PEM certificate: {0}")]
    Certificate(String),
    /// No private key in the PEM, or a malformed one.
    #[error("no valid PEM private key: {0}")]
    Key(String),
    /// The key does not belong to the certificate, or its type is not supported.
    #[error("the key does not fit the certificate: {0}")]
    Mismatch(String),
    /// The self-signed default could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// The one crypto provider of the process (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain (leaf first) and key, and checks they belong together.
pub fn parse(certificate: &[u8], key: &[u8]) -> Result<CertifiedKey, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(certificate)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertificateError::Certificate("none found".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| CertificateError::Key(e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| CertificateError::Mismatch(e.to_string()))
}

/// [`parse`] of a stored pair.
pub fn parse_stored(pem: &CertificatePem) -> Result<CertifiedKey, CertificateError> {
    parse(pem.certificate.as_bytes(), pem.key.as_bytes())
}

/// [`parse`] of two files.
pub fn load(certificate: &Path, key: &Path) -> Result<CertifiedKey, CertificateError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| CertificateError::Read(path.display().to_string(), e.to_string()))
    };
    parse(&read(certificate)?, &read(key)?)
}

/// A certificate for `localhost`, signed by its own key, made now.
pub fn self_signed() -> Result<CertifiedKey, CertificateError> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| CertificateError::SelfSigned(e.to_string()))?;
    parse(
        made.cert.pem().as_bytes(),
        made.signing_key.serialize_pem().as_bytes(),
    )
}

/// A TLS 1.2 + 1.3 server configuration that presents `key`, offers HTTP/2 and
/// HTTP/1.1 by ALPN, and lets clients resume sessions with tickets.
pub fn server_config(key: CertifiedKey) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(ticketer) = TICKETER.as_ref() {
        config.ticketer = ticketer.clone();
    }
    Arc::new(config)
}

/// One ticket key (rotated by rustls every 6 hours) for every certificate's
/// configuration, so that a resumed handshake skips the key exchange and signature
/// whichever certificate the host has; none (full handshakes) if it cannot be made.
static TICKETER: LazyLock<Option<Arc<dyn ProducesTickets>>> =
    LazyLock::new(|| match rustls::crypto::ring::Ticketer::new() {
        Ok(ticketer) => Some(ticketer),
        Err(e) => {
            tracing::warn!(error = %e, "no TLS session tickets");
            None
        }
    });
