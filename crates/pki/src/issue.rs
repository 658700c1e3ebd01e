//! Making certificates: a CA, certificates it signs, and self-signed ones.

use crate::{key, serial, KeyAlgo, Pem, PkiError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// What a certificate is for, which decides its extended key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// A member's client-port certificate: serverAuth and clientAuth. etcd's gRPC gateway dials
    /// its own client port presenting this certificate as a client certificate, so under
    /// `--client-cert-auth` a server certificate without clientAuth makes a real etcd refuse its
    /// own gateway ("certificate specifies an incompatible key usage").
    Server,
    /// serverAuth only, for servers that never present their certificate as a client.
    ServerOnly,
    /// TLS client: clientAuth.
    Client,
    /// A member's peer certificate: serverAuth and clientAuth, because a member both accepts
    /// connections from its peers and dials them with the same certificate.
    Peer,
}

impl std::str::FromStr for Usage {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Usage, PkiError> {
        match s.to_ascii_lowercase().as_str() {
            "server" => Ok(Usage::Server),
            "server-only" => Ok(Usage::ServerOnly),
            "client" => Ok(Usage::Client),
            "peer" => Ok(Usage::Peer),
            _ => Err(PkiError::Invalid(format!(
                "unknown usage {s:?} (expected server, server-only, client or peer)"
            ))),
        }
    }
}

/// A request for a leaf (non-CA) certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    pub common_name: String,
    pub organization: Option<String>,
    /// DNS names (`node1.example`, `*.example`) or IP addresses (`10.0.0.1`, `::1`, `[::1]`):
    /// each becomes a subject alternative name of its kind.
    pub hosts: Vec<String>,
    pub algo: KeyAlgo,
    pub valid_for: Duration,
    pub usage: Usage,
}

/// How far back a certificate's validity starts: members' clocks differ a little, and a
/// certificate that starts "in the future" on one of them is refused there.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A new self-signed CA: it signs certificates ([`issue`]) and CRLs ([`crate::crl`]).
pub fn new_ca(common_name: &str, algo: KeyAlgo, valid_for: Duration) -> Result<Pem, PkiError> {
    let mut params = base_params(common_name, None, valid_for)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = key::generate(algo)?;
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A leaf certificate for `req`, signed by `ca` (a CA's certificate and key, e.g. from
/// [`new_ca`] or [`Pem::read_files`]).
pub fn issue(ca: &Pem, req: &CertRequest) -> Result<Pem, PkiError> {
    let ca_key = key::load(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca_key)
        .map_err(|e| PkiError::Parse(format!("CA certificate: {e}")))?;
    let params = leaf_params(req)?;
    let key = key::generate(req.algo)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A leaf certificate for `req` signed by its own key, as `--auto-tls` makes: peers and clients
/// cannot verify it against a CA, so they skip verification.
pub fn self_signed(req: &CertRequest) -> Result<Pem, PkiError> {
    let params = leaf_params(req)?;
    let key: KeyPair = key::generate(req.algo)?;
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn leaf_params(req: &CertRequest) -> Result<CertificateParams, PkiError> {
    let mut params = base_params(&req.common_name, req.organization.as_deref(), req.valid_for)?;
    params.subject_alt_names = sans(&req.hosts)?;
    // ExplicitNoCa writes basicConstraints CA:FALSE and, with it, the subject key identifier.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if matches!(req.algo, KeyAlgo::Rsa2048 | KeyAlgo::Rsa4096) {
        // TLS 1.2 RSA key exchange encrypts the premaster secret to the certificate's key.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = match req.usage {
        Usage::ServerOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Server | Usage::Peer => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    Ok(params)
}

/// Subject, validity and serial, shared by CAs and leaves.
fn base_params(
    common_name: &str,
    organization: Option<&str>,
    valid_for: Duration,
) -> Result<CertificateParams, PkiError> {
    if common_name.trim().is_empty() {
        return Err(PkiError::Invalid("the common name is empty".into()));
    }
    if valid_for.is_zero() {
        return Err(PkiError::Invalid("the validity period is zero".into()));
    }
    let now = SystemTime::now();
    let not_after = now
        .checked_add(valid_for)
        .filter(|t| *t < SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799))
        .ok_or_else(|| PkiError::Invalid("the validity period ends after the year 9999".into()))?;
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization.filter(|o| !o.is_empty()) {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common_name);
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.not_before = (now - BACKDATE).into();
    params.not_after = not_after.into();
    params.serial_number = Some(serial::random());
    Ok(params)
}

/// Each host as a SAN: an IP address SAN if it parses as one (brackets allowed, as in URLs),
/// else a DNS name SAN. Duplicates are dropped.
fn sans(hosts: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut out: Vec<SanType> = Vec::new();
    for host in hosts {
        let h = host.trim();
        if h.is_empty() {
            continue;
        }
        let bare = h.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
        let san = match bare.unwrap_or(h).parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if bare.is_some() => {
                return Err(PkiError::Invalid(format!("invalid IP address {h:?}")))
            }
            Err(_) => SanType::DnsName(dns_name(h)?.try_into()?),
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// Checks a DNS name loosely (letters, digits, `-`, `_`, dots, a leading `*.`), so a typo such as
/// `https://node1:2379` or `node1,node2` is caught here and not by a member refusing the cert.
fn dns_name(h: &str) -> Result<String, PkiError> {
    let name = h.trim_end_matches('.').to_ascii_lowercase();
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    let ok = !rest.is_empty()
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(name)
    } else {
        Err(PkiError::Invalid(format!(
            "invalid host {h:?} (expected a DNS name or an IP address)"
        )))
    }
}
