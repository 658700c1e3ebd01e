//! oxcd-pki: a small certificate authority for oxcd clusters.
//!
//! Operators of etcd clusters usually keep hand-written cfssl JSON files to make a CA and the
//! server, peer and client certificates, and find out too late that a new member's address is
//! missing from a certificate's SANs. This crate makes those certificates directly and inspects
//! existing ones, for `oxutl pki`, for the server (`--auto-tls`, the expiry warning) and for tests.
//!
//! - [`new_ca`], [`issue`], [`self_signed`]: keys and certificates, as PEM texts ([`Pem`]);
//! - [`inspect_pem`], [`inspect_der`]: what a certificate says ([`CertInfo`]): names, SANs, validity, usages;
//! - [`crl`]: a certificate revocation list signed by a CA; [`inspect_crl_pem`] reads one back;
//! - [`is_signed_by`], [`crl_is_signed_by`]: whether a CA really signed a certificate or CRL;
//! - [`write_pem_files`] / [`Pem::read_files`]: the `NAME.crt` + `NAME.key` pair on disk.
//!
//! Signing uses rcgen with ring; RSA keys come from the `rsa` crate because ring cannot
//! generate them. Keys are written as PKCS#8 (`PRIVATE KEY`), which Go's crypto/tls (etcd)
//! and rustls both load.

mod crl;
mod crl_info;
mod error;
mod files;
mod inspect;
mod issue;
mod key;
mod serial;
#[cfg(test)]
mod tests;
mod verify;

pub use crl::crl;
pub use crl_info::{inspect_crl_pem, CrlInfo};
pub use error::PkiError;
pub use files::write_pem_files;
pub use inspect::{inspect_der, inspect_pem, CertInfo};
pub use issue::{issue, new_ca, self_signed, CertRequest, Usage};
pub use key::KeyAlgo;
pub use verify::{crl_is_signed_by, is_signed_by};

/// A certificate and its private key as PEM texts.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// One `CERTIFICATE` block.
    pub cert: String,
    /// One `PRIVATE KEY` (PKCS#8) block.
    pub key: String,
}

// The key is a secret: keep it out of logs and panic messages.
impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}
