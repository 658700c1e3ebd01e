//! Certificate revocation lists.

use crate::{key, serial, Pem, PkiError};
use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams};
use std::time::{Duration, SystemTime};

/// A CRL (PEM `X509 CRL`) signed by `ca` that revokes the given serials (hex, as
/// [`crate::CertInfo::serial_hex`] spells them; `:` separators and `0x` are accepted too), valid
/// from now for `valid_for`. The CRL number is the current Unix time, so a newer CRL from the
/// same CA always has a higher number without the tool keeping state.
pub fn crl(
    ca: &Pem,
    revoked_serials_hex: &[String],
    valid_for: Duration,
) -> Result<String, PkiError> {
    if valid_for.is_zero() {
        return Err(PkiError::Invalid("the validity period is zero".into()));
    }
    let ca_key = key::load(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca_key)
        .map_err(|e| PkiError::Parse(format!("CA certificate: {e}")))?;
    let now = SystemTime::now();
    let next = now
        .checked_add(valid_for)
        .ok_or_else(|| PkiError::Invalid("the validity period is too long".into()))?;
    let mut revoked_certs = Vec::new();
    for s in revoked_serials_hex {
        let serial_number = rcgen::SerialNumber::from_slice(&serial::parse_hex(s)?);
        if revoked_certs
            .iter()
            .any(|r: &RevokedCertParams| r.serial_number == serial_number)
        {
            continue;
        }
        revoked_certs.push(RevokedCertParams {
            serial_number,
            revocation_time: now.into(),
            reason_code: None,
            invalidity_date: None,
        });
    }
    let crl_number = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_be_bytes();
    let params = CertificateRevocationListParams {
        this_update: now.into(),
        next_update: next.into(),
        crl_number: rcgen::SerialNumber::from_slice(&crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: ca_key_id(&ca.cert)?,
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}

/// How the CRL names its CA's key (authority key identifier): the CA certificate's own subject
/// key identifier when it has one, since verifiers match the two, and a CA made by another tool
/// (openssl hashes with SHA-1) need not derive it as rcgen does.
fn ca_key_id(ca_cert_pem: &str) -> Result<KeyIdMethod, PkiError> {
    use x509_parser::extensions::ParsedExtension;
    let block = x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
        .map_err(|e| PkiError::Parse(format!("CA certificate: bad PEM: {e}")))?
        .1;
    let cert = block
        .parse_x509()
        .map_err(|e| PkiError::Parse(format!("CA certificate: {e}")))?;
    let ski = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    Ok(ski.map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified))
}
