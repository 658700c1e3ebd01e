//! Whether a certificate or CRL was signed by a given CA: names can repeat across CAs (every
//! `oxutl pki ca` defaults to `CN=oxcd-ca`), signatures cannot.

use crate::PkiError;
use x509_parser::pem::Pem;

/// Whether the first certificate in `cert_pem` carries a valid signature by the key of the first
/// certificate in `ca_cert_pem`.
pub fn is_signed_by(cert_pem: &str, ca_cert_pem: &str) -> Result<bool, PkiError> {
    let cert = first_block(cert_pem, "CERTIFICATE")?;
    let cert = cert
        .parse_x509()
        .map_err(|e| PkiError::Parse(format!("bad X.509 certificate: {e}")))?;
    let ca = first_block(ca_cert_pem, "CERTIFICATE")?;
    let ca = ca
        .parse_x509()
        .map_err(|e| PkiError::Parse(format!("bad CA certificate: {e}")))?;
    Ok(cert.verify_signature(Some(ca.public_key())).is_ok())
}

/// Whether the first CRL in `crl_pem` carries a valid signature by the key of the first
/// certificate in `ca_cert_pem`.
pub fn crl_is_signed_by(crl_pem: &str, ca_cert_pem: &str) -> Result<bool, PkiError> {
    let crl = first_block(crl_pem, "X509 CRL")?;
    let (_, crl) = x509_parser::parse_x509_crl(&crl.contents)
        .map_err(|e| PkiError::Parse(format!("bad CRL: {e}")))?;
    let ca = first_block(ca_cert_pem, "CERTIFICATE")?;
    let ca = ca
        .parse_x509()
        .map_err(|e| PkiError::Parse(format!("bad CA certificate: {e}")))?;
    Ok(crl.verify_signature(ca.public_key()).is_ok())
}

fn first_block(pem: &str, label: &str) -> Result<Pem, PkiError> {
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| PkiError::Parse(format!("bad PEM: {e}")))?;
        if block.label == label {
            return Ok(block);
        }
    }
    Err(PkiError::Parse(format!("no {label} block in the PEM text")))
}
