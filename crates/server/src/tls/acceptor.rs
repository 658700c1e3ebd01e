//! The TLS side of an accepted connection: the handshake, then etcd's checks after it (the CRL
//! and, on the peer listener, the client certificate's SANs against the remote address), and
//! etcd's "rejected connection" log line when any of them fails.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::server::NoServerSessionStorage;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::files::{CertFiles, CrlFile};
use super::{verify, PeerIdentity, TlsInfo, TlsOptions};

/// A client that has not finished its handshake by then is dropped, so half-open connections
/// do not pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS connections for one side (client or peer); shared by that side's listeners.
pub struct Acceptor {
    tls: tokio_rustls::TlsAcceptor,
    crl: Option<CrlFile>,
    /// The peer listener checks a client certificate's SANs against the remote address.
    check_san: bool,
}

impl Acceptor {
    /// `peer_listener`: the acceptor of `--listen-peer-urls`.
    pub fn new(info: &TlsInfo, opts: &TlsOptions, peer_listener: bool) -> anyhow::Result<Acceptor> {
        info.check_files()?;
        let provider = opts.provider();
        let certs = CertFiles::load(&info.cert_file, &info.key_file, provider.clone())
            .map_err(anyhow::Error::msg)?;
        let verifier = verify::client_verifier(info, &provider).map_err(anyhow::Error::msg)?;
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&opts.versions())?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(certs));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Every connection makes a full handshake, so it sees the current certificate files
        // and CRL, as in etcd, which re-reads them for each handshake.
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(Acceptor {
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
            crl: (!info.crl_file.is_empty()).then(|| CrlFile::new(&info.crl_file)),
            check_san: peer_listener && !info.skip_client_san_verify,
        })
    }

    /// Runs the handshake and the checks; `None` (after logging why) when the connection is
    /// refused. The identity is the verified client certificate's CN, if it has one.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
    ) -> Option<(TlsStream<TcpStream>, Option<PeerIdentity>)> {
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                rejected(remote, "", None, &handshake_error(&e));
                return None;
            }
            Err(_) => {
                rejected(remote, "", None, "tls: handshake timed out");
                return None;
            }
        };
        let (_, conn) = stream.get_ref();
        let server_name = conn.server_name().unwrap_or("").to_string();
        let chain: Vec<CertificateDer<'static>> = conn
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let Some(leaf) = chain.first() else {
            return Some((stream, None));
        };
        let info = super::inspect_der(leaf);
        let mut check = self.crl.as_ref().map_or(Ok(()), |crl| crl.check(&chain));
        if check.is_ok() && self.check_san {
            if let Some(info) = &info {
                check = check_cert_san(info, remote.ip()).await;
            }
        }
        if let Err(e) = check {
            rejected(remote, &server_name, info.as_ref(), &e);
            return None;
        }
        let identity = info
            .and_then(|i| i.common_name)
            .map(|common_name| PeerIdentity { common_name });
        Some((stream, identity))
    }
}

/// etcd's warning for a refused connection, with the certificate's addresses when there is one.
fn rejected(remote: SocketAddr, server_name: &str, cert: Option<&oxcd_pki::CertInfo>, error: &str) {
    match cert {
        Some(c) => {
            let ips: Vec<String> = c.ip_addresses.iter().map(ToString::to_string).collect();
            tracing::warn!(
                "remote-addr" = %remote,
                "server-name" = %server_name,
                "ip-addresses" = ?ips,
                "dns-names" = ?c.dns_names,
                error = %error,
                "rejected connection"
            );
        }
        None => tracing::warn!(
            "remote-addr" = %remote,
            "server-name" = %server_name,
            error = %error,
            "rejected connection"
        ),
    }
}

/// A failed handshake of an accepted connection, in Go's words where they differ.
pub fn handshake_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(err) => tls_error_text(err, true),
        None => e.to_string(),
    }
}

/// A TLS error as Go's crypto/tls words it, so logs read as etcd's do; `verifying_client`: the
/// error is about the other side's client certificate (on a listener).
pub fn tls_error_text(err: &rustls::Error, verifying_client: bool) -> String {
    use rustls::{AlertDescription, CertificateError, Error};
    let x509 = |why: &str| {
        if verifying_client {
            format!("tls: failed to verify client certificate: x509: {why}")
        } else {
            format!("x509: {why}")
        }
    };
    match err {
        Error::NoCertificatesPresented => "tls: client didn't provide a certificate".to_string(),
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            x509("certificate signed by unknown authority")
        }
        Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => x509("certificate has expired or is not yet valid"),
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => x509("certificate is not valid for the requested host name"),
        Error::InvalidCertificate(CertificateError::Other(why)) => why.to_string(),
        Error::AlertReceived(
            AlertDescription::BadCertificate | AlertDescription::CertificateUnknown,
        ) => "remote error: tls: bad certificate".to_string(),
        Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "tls: first record does not look like a TLS handshake".to_string()
        }
        other => other.to_string(),
    }
}

/// etcd's check of a peer's client certificate against the address it connects from: an IP
/// SAN must be that address, or a DNS SAN must resolve to it. A certificate without SANs
/// passes.
async fn check_cert_san(cert: &oxcd_pki::CertInfo, remote: IpAddr) -> Result<(), String> {
    if cert.ip_addresses.is_empty() && cert.dns_names.is_empty() {
        return Ok(());
    }
    let host = remote.to_string();
    if !cert.ip_addresses.is_empty() {
        if cert.ip_addresses.contains(&remote) {
            return Ok(());
        }
        if cert.dns_names.is_empty() {
            let valid: Vec<String> = cert.ip_addresses.iter().map(ToString::to_string).collect();
            return Err(format!(
                "x509: certificate is valid for {}, not {host}",
                valid.join(", ")
            ));
        }
    }
    for name in &cert.dns_names {
        if let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 0)).await {
            if addrs.into_iter().any(|a| a.ip() == remote) {
                return Ok(());
            }
        }
    }
    let names: Vec<String> = cert.dns_names.iter().map(|n| format!("{n:?}")).collect();
    Err(format!(
        "tls: {host:?} does not match any of DNSNames [{}]",
        names.join(" ")
    ))
}
