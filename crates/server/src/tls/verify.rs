//! Certificate verification on both ends of a connection.
//!
//! A listener verifies client certificates against the trusted CA and, for the peer listener,
//! against `--peer-cert-allowed-cn` or `--peer-cert-allowed-hostname`. etcd applies those two
//! rules to every certificate its TLS configuration verifies, so a member dialing a peer checks
//! the peer's server certificate against them too; oxcd does the same, so a member with a
//! disallowed certificate can neither be dialed nor dial.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};

use super::files::read_certs;
use super::TlsInfo;

/// etcd's error when a certificate fails the allowed CN or hostname rule.
pub const AUTH_FAILED: &str = "client certificate authentication failed";

/// The trusted CAs: the given file, or the system's roots without one (as Go does).
pub fn roots(ca_file: &str) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    if ca_file.is_empty() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = store.add(cert);
        }
    } else {
        for cert in read_certs(ca_file)? {
            store.add(cert).map_err(|e| format!("{ca_file}: {e}"))?;
        }
    }
    Ok(Arc::new(store))
}

/// `--peer-cert-allowed-cn` / `--*-cert-allowed-hostname`.
#[derive(Debug, Clone)]
enum NameRule {
    Cn(String),
    Hostname(String),
}

impl NameRule {
    fn from_info(info: &TlsInfo) -> Option<NameRule> {
        if !info.allowed_cn.is_empty() {
            Some(NameRule::Cn(info.allowed_cn.clone()))
        } else if !info.allowed_hostname.is_empty() {
            Some(NameRule::Hostname(info.allowed_hostname.clone()))
        } else {
            None
        }
    }

    fn check(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let ok = super::inspect_der(leaf).is_some_and(|c| match self {
            NameRule::Cn(cn) => c.common_name.as_deref() == Some(cn.as_str()),
            NameRule::Hostname(host) => c.covers_host(host),
        });
        if ok {
            Ok(())
        } else {
            Err(refused(AUTH_FAILED))
        }
    }
}

/// A certificate refused with `why` (sent to the other side as a bad_certificate alert).
fn refused(why: &str) -> rustls::Error {
    #[derive(Debug)]
    struct Why(String);
    impl std::fmt::Display for Why {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Why {}
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(Why(
        why.to_string(),
    )))))
}

/// The client-certificate verifier of a listener, or `None` when clients are not asked for
/// one.
pub fn client_verifier(
    info: &TlsInfo,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    if !info.requires_client_cert() {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let inner = WebPkiClientVerifier::builder_with_provider(
        roots(&info.trusted_ca_file)?,
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("{}: {e}", info.trusted_ca_file))?;
    Ok(Arc::new(ClientAuth {
        inner,
        rule: NameRule::from_info(info),
    }))
}

#[derive(Debug)]
struct ClientAuth {
    inner: Arc<dyn ClientCertVerifier>,
    rule: Option<NameRule>,
}

impl ClientCertVerifier for ClientAuth {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Some(rule) = &self.rule {
            rule.check(end_entity)?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// How a dialing member checks the peer's server certificate: the trusted CA and the URL's
/// host, then the allowed CN/hostname rule; with a self-signed (auto TLS) certificate, nothing
/// but the handshake signatures, as etcd skips verification then.
pub fn server_verifier(
    info: &TlsInfo,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let skip = info.self_signed;
    let inner = if skip {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(
                roots(&info.trusted_ca_file)?,
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", info.trusted_ca_file))?,
        )
    };
    Ok(Arc::new(ServerAuth {
        inner,
        rule: NameRule::from_info(info),
        provider: provider.clone(),
    }))
}

#[derive(Debug)]
struct ServerAuth {
    /// None: verification skipped (self-signed certificates).
    inner: Option<Arc<WebPkiServerVerifier>>,
    rule: Option<NameRule>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerAuth {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        if let Some(rule) = &self.rule {
            rule.check(end_entity)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
