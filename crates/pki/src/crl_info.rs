//! Reading CRLs back: which CA made them, until when they hold, which serials they revoke.

use crate::{serial, PkiError};
use std::time::SystemTime;

/// What one certificate revocation list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    pub issuer: String,
    pub this_update: SystemTime,
    pub next_update: Option<SystemTime>,
    /// The CRL number in hex, if the CRL has one.
    pub number_hex: Option<String>,
    /// Revoked serials, spelled as [`crate::CertInfo::serial_hex`].
    pub revoked_serials_hex: Vec<String>,
}

/// Every `X509 CRL` block in a PEM text, in order; other blocks are skipped. A text with no CRL
/// is an error.
pub fn inspect_crl_pem(pem: &str) -> Result<Vec<CrlInfo>, PkiError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| PkiError::Parse(format!("bad PEM: {e}")))?;
        if block.label != "X509 CRL" {
            continue;
        }
        let (_, crl) = x509_parser::parse_x509_crl(&block.contents)
            .map_err(|e| PkiError::Parse(format!("bad CRL: {e}")))?;
        out.push(CrlInfo {
            issuer: crl.issuer().to_string(),
            this_update: crl.last_update().to_datetime().into(),
            next_update: crl.next_update().map(|t| t.to_datetime().into()),
            number_hex: crl.crl_number().map(|n| n.to_str_radix(16)),
            revoked_serials_hex: crl
                .iter_revoked_certificates()
                .map(|r| serial::to_hex(r.raw_serial()))
                .collect(),
        });
    }
    if out.is_empty() {
        return Err(PkiError::Parse("no X509 CRL block in the PEM text".into()));
    }
    Ok(out)
}
