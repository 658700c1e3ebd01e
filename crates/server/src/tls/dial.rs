//! [`PeerDialer`]: how a member dials another member's peer URL, over TLS for `https://` URLs.
//!
//! The member presents its peer certificate (`--peer-cert-file`, re-read when the file changes,
//! so a rotation reaches every new connection) and checks the peer's certificate against
//! `--peer-trusted-ca-file` (the system roots without one) and the URL's host, as Go does, plus
//! etcd's allowed CN/hostname rule. A generated (`--peer-auto-tls`) certificate skips the check,
//! as in etcd.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use super::files::CertFiles;
use super::{verify, TlsInfo, TlsOptions};
use crate::config::Url;

/// Dials peer URLs. Cheap to clone.
#[derive(Clone, Default)]
pub struct PeerDialer {
    /// None: this member has no TLS settings; `https://` peers cannot be dialed.
    tls: Option<Arc<LazyConfig>>,
}

/// The TLS client configuration, made at the first `https://` dial: a member of a plain
/// cluster never reads certificate files or the system's roots.
struct LazyConfig {
    info: TlsInfo,
    options: TlsOptions,
    config: std::sync::OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl LazyConfig {
    fn get(&self) -> Result<Arc<ClientConfig>, String> {
        self.config
            .get_or_init(|| client_config(&self.info, &self.options).map_err(|e| format!("{e:#}")))
            .clone()
    }
}

impl PeerDialer {
    /// A dialer for plain `http://` peers only (tests of the peer protocol).
    pub fn plain() -> PeerDialer {
        PeerDialer::default()
    }

    /// A dialer with the member's peer TLS settings.
    pub fn new(info: &TlsInfo, options: &TlsOptions) -> PeerDialer {
        PeerDialer {
            tls: Some(Arc::new(LazyConfig {
                info: info.clone(),
                options: options.clone(),
                config: std::sync::OnceLock::new(),
            })),
        }
    }

    /// The endpoint for `url`, to configure (timeouts, keep-alive) before [`PeerDialer::connect`].
    /// Its scheme is always `http`: TLS, when the URL asks for it, is this dialer's job.
    pub fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
        let plain = match url.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => url.to_string(),
        };
        Endpoint::from_shared(plain)
    }

    /// Connects `endpoint` (made by [`PeerDialer::endpoint`] from `url`).
    pub async fn connect(
        &self,
        url: &str,
        endpoint: Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        match self.tls_connector(url) {
            None => endpoint.connect().await,
            Some(c) => endpoint.connect_with_connector(c).await,
        }
    }

    /// Like [`PeerDialer::connect`], connecting on first use.
    pub fn connect_lazy(&self, url: &str, endpoint: Endpoint) -> Channel {
        match self.tls_connector(url) {
            None => endpoint.connect_lazy(),
            Some(c) => endpoint.connect_with_connector_lazy(c),
        }
    }

    /// The TLS connector for an `https://` URL; None for any other.
    fn tls_connector(&self, url: &str) -> Option<TlsConnect> {
        if !url.starts_with("https://") {
            return None;
        }
        let parsed = Url::parse(url).ok();
        Some(TlsConnect {
            config: self.tls.clone(),
            host: parsed.as_ref().map(|u| u.host.clone()).unwrap_or_default(),
            port: parsed.map_or(0, |u| u.port),
        })
    }
}

/// The client side of the peer TLS settings.
fn client_config(info: &TlsInfo, opts: &TlsOptions) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = opts.provider();
    let verifier = verify::server_verifier(info, &provider).map_err(anyhow::Error::msg)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&opts.versions())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = if info.is_empty() {
        builder.with_no_client_auth()
    } else {
        info.check_files()?;
        let certs = CertFiles::load(&info.cert_file, &info.key_file, provider)
            .map_err(anyhow::Error::msg)?;
        builder.with_client_cert_resolver(Arc::new(certs))
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    // A resumed session would skip presenting the (possibly rotated) certificate.
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Dials one `https://` peer URL: TCP, then TLS with the URL's host as the server name.
#[derive(Clone)]
struct TlsConnect {
    config: Option<Arc<LazyConfig>>,
    host: String,
    port: u16,
}

impl TlsConnect {
    async fn connect(self) -> std::io::Result<TokioIo<TlsStream<TcpStream>>> {
        use std::io::{Error, ErrorKind};
        let config = self
            .config
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    "no peer TLS configuration for an https peer URL",
                )
            })?
            .get()
            .map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        // Raft messages are small and latency-bound.
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(
                |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(err) => Error::new(e.kind(), super::acceptor::tls_error_text(err, false)),
                    None => e,
                },
            )?;
        Ok(TokioIo::new(tls))
    }
}

impl tower::Service<http::Uri> for TlsConnect {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect())
    }
}
