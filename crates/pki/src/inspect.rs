//! Reading certificates: what names and addresses they cover, who issued them, until when.

use crate::{serial, PkiError};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

/// What one certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject as RFC 4514-like text: `CN=node1, O=example`.
    pub subject: String,
    pub common_name: Option<String>,
    pub issuer: String,
    /// Lowercase hex without separators or leading zeros, as [`crate::crl`] takes it.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub is_ca: bool,
    /// `RSA 2048`, `ECDSA P-256`, `Ed25519`, ...
    pub key_algorithm: String,
    /// `digitalSignature`, `keyEncipherment`, `keyCertSign`, `cRLSign`, ...
    pub key_usage: Vec<String>,
    /// `serverAuth`, `clientAuth`, ... (other purposes as their OIDs).
    pub ext_key_usage: Vec<String>,
}

/// Every `CERTIFICATE` block in a PEM text (a bundle gives several), in order; other blocks
/// (keys, CRLs) are skipped. A text with no certificate is an error.
pub fn inspect_pem(pem: &str) -> Result<Vec<CertInfo>, PkiError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| PkiError::Parse(format!("bad PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .map_err(|e| PkiError::Parse(format!("bad X.509 certificate: {e}")))?;
        out.push(info(&cert)?);
    }
    if out.is_empty() {
        return Err(PkiError::Parse(
            "no CERTIFICATE block in the PEM text".into(),
        ));
    }
    Ok(out)
}

/// One DER-encoded certificate, e.g. a peer's leaf as a TLS library hands it over.
pub fn inspect_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::Parse(format!("bad X.509 certificate: {e}")))?;
    info(&cert)
}

fn info(cert: &X509Certificate<'_>) -> Result<CertInfo, PkiError> {
    let bad = |e: x509_parser::error::X509Error| PkiError::Parse(format!("bad extension: {e}"));
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Some(san) = cert.subject_alternative_name().map_err(bad)? {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => ip_addresses.extend(ip_from_bytes(b)),
                _ => {}
            }
        }
    }
    let key_usage = match cert.key_usage().map_err(bad)? {
        Some(ku) => key_usage_names(ku.value),
        None => Vec::new(),
    };
    let ext_key_usage = match cert.extended_key_usage().map_err(bad)? {
        Some(eku) => eku_names(eku.value),
        None => Vec::new(),
    };
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        issuer: cert.issuer().to_string(),
        serial_hex: serial::to_hex(cert.raw_serial()),
        not_before: validity.not_before.to_datetime().into(),
        not_after: validity.not_after.to_datetime().into(),
        dns_names,
        ip_addresses,
        is_ca: cert.is_ca(),
        key_algorithm: key_algorithm(cert),
        key_usage,
        ext_key_usage,
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(k)) => format!("RSA {}", k.key_size()),
        Ok(PublicKey::EC(k)) => format!("ECDSA P-{}", k.key_size()),
        _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            "Ed25519".to_string()
        }
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

fn key_usage_names(ku: &x509_parser::extensions::KeyUsage) -> Vec<String> {
    [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_string())
    .collect()
}

fn eku_names(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let mut out: Vec<String> = [
        (eku.any, "any"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_string())
    .collect();
    out.extend(eku.other.iter().map(|oid| oid.to_id_string()));
    out
}

impl CertInfo {
    /// Whether a TLS client checking `host` against this certificate would accept it: an IP
    /// address must be one of the IP SANs, a name must match a DNS SAN (case-insensitively; a
    /// `*.` SAN matches exactly one more label). The common name is not consulted, as Go (since
    /// 1.15) and rustls do not. `host` may be bracketed (`[::1]`) or end in a dot.
    pub fn covers_host(&self, host: &str) -> bool {
        let h = host.trim();
        let bare = h.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
        if let Ok(ip) = bare.unwrap_or(h).parse::<IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        let name = h.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        self.dns_names.iter().any(|san| dns_matches(san, &name))
    }

    /// Whether the certificate is no longer valid `d` from now (an expired one is, for any `d`).
    pub fn expires_within(&self, d: Duration) -> bool {
        match SystemTime::now().checked_add(d) {
            Some(t) => self.not_after <= t,
            None => true,
        }
    }

    /// How long until the certificate expires; zero if it has.
    pub fn remaining(&self) -> Duration {
        self.not_after
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

/// `name` is lowercase without a trailing dot.
fn dns_matches(san: &str, name: &str) -> bool {
    let san = san.trim_end_matches('.').to_ascii_lowercase();
    match san.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => san == name,
    }
}
