//! The one error type of the crate.

/// Why a certificate, key or CRL could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Bad input from the caller: a host name, a serial number, a key type, a duration.
    #[error("{0}")]
    Invalid(String),
    /// A private key that cannot be read or used.
    #[error("private key: {0}")]
    Key(String),
    /// A certificate or CRL text that cannot be parsed.
    #[error("certificate: {0}")]
    Parse(String),
    /// Key generation or signing failed.
    #[error("signing: {0}")]
    Sign(#[from] rcgen::Error),
}
