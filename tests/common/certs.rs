//! Self-signed certificates made on the spot. Shared with the benchmark
//! (`bench/main.rs` includes this file), so it uses nothing else from the harness.

use ceryx::store::CertificatePem;
use rustls::pki_types::CertificateDer;

/// A fresh certificate for `names`: its PEM pair and its DER.
pub fn issue(names: &[&str]) -> (CertificatePem, CertificateDer<'static>) {
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let made = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
    let pem = CertificatePem {
        certificate: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
    };
    (pem, made.cert.der().clone())
}
