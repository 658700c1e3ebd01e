//! TLS for the client and peer listeners and for dialing peers (rustls with ring).
//!
//! * [`TlsInfo`]: one side's files and checks (`--cert-file`... or `--peer-cert-file`...).
//! * [`options`]: `--cipher-suites`, `--tls-min-version`, `--tls-max-version`.
//! * [`files`]: certificate/key pairs and CRLs re-read when the files change, so replacing them
//!   on disk rotates what new connections use without a restart.
//! * [`verify`]: client-certificate checks (trusted CA, allowed CN or hostname) and the
//!   server-certificate check of a dialing member.
//! * [`acceptor`]: the handshake of an accepted connection, the checks after it (CRL, peer SAN)
//!   and etcd's "rejected connection" log line.
//! * [`dial`]: [`PeerDialer`], the one way every member dials another member's peer URL.
//! * [`auto`]: `--auto-tls`/`--peer-auto-tls` self-signed certificates in the data dir.
//! * [`expiry`]: the warning about certificates close to expiry.

use std::sync::Arc;

pub mod acceptor;
pub mod auto;
pub mod dial;
pub mod expiry;
pub mod files;
pub mod options;
pub mod verify;

pub use acceptor::Acceptor;
pub use dial::PeerDialer;
pub use options::{TlsOptions, TlsVersion};

/// The verified client certificate's common name, put into the extensions of every request that
/// arrives on a TLS connection whose client presented one, so auth can log the client in by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub common_name: String,
}

/// One side's TLS settings (client or peer), as etcd's `TLSInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
    pub crl_file: String,
    /// `--peer-cert-allowed-cn`: a client certificate's CN must be this.
    pub allowed_cn: String,
    /// `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`: a client certificate
    /// must be valid for this host name (its SANs, as a TLS client checks a server).
    pub allowed_hostname: String,
    /// `--auto-tls` / `--peer-auto-tls`: use a generated self-signed certificate when no
    /// certificate files are given.
    pub auto_tls: bool,
    /// The certificate was generated (auto TLS): dialing with it skips verifying the other
    /// side, which holds a self-signed certificate too.
    pub self_signed: bool,
    /// `--experimental-peer-skip-client-san-verification`: the peer listener does not check a
    /// client certificate's SANs against the connection's remote address.
    pub skip_client_san_verify: bool,
}

impl TlsInfo {
    /// No certificate files: TLS cannot be served (etcd's `TLSInfo.Empty`).
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_empty() && self.key_file.is_empty()
    }

    /// Whether accepted connections must present a certificate the trusted CA signed: etcd
    /// requires one as soon as a trusted CA file is given, even without client-cert-auth.
    pub fn requires_client_cert(&self) -> bool {
        !self.trusted_ca_file.is_empty() || self.client_cert_auth
    }

    /// etcd's description in the "starting with ... TLS" log line.
    pub fn describe(&self) -> String {
        format!(
            "cert = {}, key = {}, trusted-ca = {}, client-cert-auth = {}, crl-file = {}",
            self.cert_file,
            self.key_file,
            self.trusted_ca_file,
            self.client_cert_auth,
            self.crl_file
        )
    }

    /// etcd's checks of the files before a listener serves TLS with them.
    pub fn check_files(&self) -> anyhow::Result<()> {
        if self.cert_file.is_empty() || self.key_file.is_empty() {
            anyhow::bail!(
                "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                self.key_file,
                self.cert_file
            );
        }
        if !self.allowed_cn.is_empty() && !self.allowed_hostname.is_empty() {
            anyhow::bail!(
                "AllowedCN and AllowedHostname are mutually exclusive (cn={:?}, hostname={:?})",
                self.allowed_cn,
                self.allowed_hostname
            );
        }
        Ok(())
    }
}

/// An I/O error about `path` in Go's words ("open x: no such file or directory"), as etcd
/// reports unreadable certificate files.
pub(crate) fn go_io_error(op: &str, path: &str, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("{op} {path}: {why}")
}

/// What a leaf certificate (DER) says.
pub(crate) fn inspect_der(der: &[u8]) -> Option<oxcd_pki::CertInfo> {
    oxcd_pki::inspect_der(der).ok()
}

/// Start-up: generates auto TLS certificates, checks each listen URL's scheme against the TLS
/// settings with etcd's warnings and errors, and logs the TLS settings as etcd does.
pub fn prepare(cfg: &mut crate::config::Config) -> anyhow::Result<()> {
    let years = cfg.self_signed_cert_validity;
    auto::apply(
        &mut cfg.peer_tls,
        "peer",
        &cfg.data_dir,
        &cfg.listen_peer_urls,
        &cfg.name,
        years,
    )?;
    check_schemes("peer", &cfg.listen_peer_urls, &cfg.peer_tls)?;
    if !cfg.peer_tls.is_empty() {
        tracing::info!(
            "tls-info" = %cfg.peer_tls.describe(),
            "cipher-suites" = ?cfg.tls_options.cipher_suite_names,
            "starting with peer TLS"
        );
    }
    auto::apply(
        &mut cfg.client_tls,
        "client",
        &cfg.data_dir,
        &cfg.listen_client_urls,
        &cfg.name,
        years,
    )?;
    check_schemes("client", &cfg.listen_client_urls, &cfg.client_tls)?;
    if !cfg.client_tls.is_empty() {
        tracing::info!(
            "tls-info" = %cfg.client_tls.describe(),
            "cipher-suites" = ?cfg.tls_options.cipher_suite_names,
            "starting with client TLS"
        );
    }
    Ok(())
}

/// etcd's warnings for `http://` URLs with TLS settings, and its errors for `https://` URLs
/// without certificates.
fn check_schemes(side: &str, urls: &[crate::config::Url], info: &TlsInfo) -> anyhow::Result<()> {
    let auth_flag = if side == "peer" {
        "--peer-client-cert-auth"
    } else {
        "--client-cert-auth"
    };
    for u in urls {
        if u.scheme == "http" {
            let mut warnings = Vec::new();
            if !info.is_empty() {
                warnings.push(
                    "scheme is HTTP while key and cert files are present; ignoring key and cert files"
                        .to_string(),
                );
            }
            if info.client_cert_auth {
                warnings.push(format!(
                    "scheme is HTTP while {auth_flag} is enabled; ignoring client cert auth for this URL"
                ));
            }
            for w in warnings {
                // Field names are static: one call per side.
                if side == "peer" {
                    tracing::warn!("peer-url" = %u.raw, "{w}");
                } else {
                    tracing::warn!("client-url" = %u.raw, "{w}");
                }
            }
        } else if info.is_empty() {
            if side == "peer" {
                anyhow::bail!(
                    "cannot listen on TLS for {}:{}: KeyFile and CertFile are not presented",
                    u.host,
                    u.port
                );
            }
            anyhow::bail!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
                u.raw
            );
        }
    }
    Ok(())
}

/// The acceptor of the `https://` client URLs, if there are any.
pub fn client_acceptor(cfg: &crate::config::Config) -> anyhow::Result<Option<Arc<Acceptor>>> {
    acceptor(cfg, &cfg.listen_client_urls, &cfg.client_tls, false)
}

/// The acceptor of the `https://` peer URLs, if there are any.
pub fn peer_acceptor(cfg: &crate::config::Config) -> anyhow::Result<Option<Arc<Acceptor>>> {
    acceptor(cfg, &cfg.listen_peer_urls, &cfg.peer_tls, true)
}

fn acceptor(
    cfg: &crate::config::Config,
    urls: &[crate::config::Url],
    info: &TlsInfo,
    peer: bool,
) -> anyhow::Result<Option<Arc<Acceptor>>> {
    if !urls.iter().any(|u| u.scheme == "https") {
        return Ok(None);
    }
    Ok(Some(Arc::new(Acceptor::new(info, &cfg.tls_options, peer)?)))
}

/// The certificate files the member serves with, for the expiry warning.
pub fn cert_files(cfg: &crate::config::Config) -> Vec<String> {
    let mut files: Vec<String> = [&cfg.client_tls.cert_file, &cfg.peer_tls.cert_file]
        .into_iter()
        .filter(|f| !f.is_empty())
        .cloned()
        .collect();
    files.dedup();
    files
}

impl PeerDialer {
    /// The dialer for this member's configuration (its peer TLS settings).
    pub fn from_config(cfg: &crate::config::Config) -> PeerDialer {
        PeerDialer::new(&cfg.peer_tls, &cfg.tls_options)
    }
}
