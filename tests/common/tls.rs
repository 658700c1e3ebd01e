//! Certificates for TLS tests, made with `oxcd_pki`, and a small rustls client that reads what a
//! listener presents.
//!
//! Every member runs on 127.0.0.1, so one server certificate and one peer certificate (SANs
//! `127.0.0.1` and `localhost`) serve the whole cluster; replacing those files rotates them on
//! every member at once.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxcd_pki::{CertRequest, KeyAlgo, Pem, Usage};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::cluster::{Secure, TlsGet};
use crate::http::{self, Response};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A test CA and the files it issued, under `dir`.
pub struct Pki {
    pub dir: PathBuf,
    ca: Pem,
}

/// A certificate and key file pair.
#[derive(Clone, Debug)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// `--cert X --key Y` style flags with the given names.
    pub fn flags(&self, cert_flag: &str, key_flag: &str) -> Vec<String> {
        vec![
            format!("--{cert_flag}={}", self.cert.display()),
            format!("--{key_flag}={}", self.key.display()),
        ]
    }

    /// The certificate's serial number (lowercase hex, no leading zeros).
    pub fn serial(&self) -> String {
        let text = std::fs::read_to_string(&self.cert).expect("read cert");
        oxcd_pki::inspect_pem(&text).expect("inspect cert")[0]
            .serial_hex
            .clone()
    }
}

impl Pki {
    /// A new CA named `name`, its certificate written to `dir/<name>.crt`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let ca = oxcd_pki::new_ca(name, KeyAlgo::EcdsaP256, DAY * 30).expect("new CA");
        oxcd_pki::write_pem_files(dir, name, &ca).expect("write CA");
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        let name = oxcd_pki::inspect_pem(&self.ca.cert).expect("inspect CA")[0]
            .common_name
            .clone()
            .unwrap_or_default();
        self.dir.join(format!("{name}.crt"))
    }

    /// Issues (or re-issues, replacing the files by rename) `<stem>.crt`/`<stem>.key` for
    /// 127.0.0.1 and localhost.
    pub fn issue(&self, stem: &str, cn: &str, usage: Usage) -> Files {
        let pem = oxcd_pki::issue(
            &self.ca,
            &CertRequest {
                common_name: cn.to_string(),
                organization: None,
                hosts: vec!["127.0.0.1".to_string(), "localhost".to_string()],
                algo: KeyAlgo::EcdsaP256,
                valid_for: DAY * 30,
                usage,
            },
        )
        .expect("issue certificate");
        let (cert, key) = oxcd_pki::write_pem_files(&self.dir, stem, &pem).expect("write cert");
        Files { cert, key }
    }

    /// A CRL revoking the given certificates, written to `<stem>.crl`.
    pub fn crl(&self, stem: &str, revoked: &[&Files]) -> PathBuf {
        let serials: Vec<String> = revoked.iter().map(|f| f.serial()).collect();
        let text = oxcd_pki::crl(&self.ca, &serials, DAY * 30).expect("make CRL");
        let path = self.dir.join(format!("{stem}.crl"));
        std::fs::write(&path, text).expect("write CRL");
        path
    }
}

/// The usual mTLS set-up for a cluster: server, peer and client (CN `root`) certificates from
/// one CA, every member verifying clients and peers.
pub struct MtlsSet {
    pub pki: Pki,
    pub server: Files,
    pub peer: Files,
    pub client: Files,
}

impl MtlsSet {
    pub fn new(dir: &Path) -> MtlsSet {
        let pki = Pki::new(dir, "ca");
        let server = pki.issue("server", "server", Usage::Server);
        let peer = pki.issue("peer", "peer", Usage::Peer);
        let client = pki.issue("client", "root", Usage::Client);
        MtlsSet {
            pki,
            server,
            peer,
            client,
        }
    }

    /// Flags of every member: client and peer TLS with client certificates required.
    pub fn server_flags(&self) -> Vec<String> {
        let ca = self.pki.ca_file().display().to_string();
        let mut f = self.server.flags("cert-file", "key-file");
        f.extend(self.peer.flags("peer-cert-file", "peer-key-file"));
        f.extend([
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth".to_string(),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".to_string(),
        ]);
        f
    }

    /// etcdctl/oxctl flags with the client certificate.
    pub fn ctl_flags(&self) -> Vec<String> {
        let mut f = vec![format!("--cacert={}", self.pki.ca_file().display())];
        f.extend(self.client.flags("cert", "key"));
        f
    }

    /// A cluster set-up with https client and peer URLs.
    pub fn secure(&self, extra_server_flags: &[&str]) -> Secure {
        let mut server_flags = self.server_flags();
        server_flags.extend(extra_server_flags.iter().map(|s| s.to_string()));
        Secure {
            client_https: true,
            peer_https: true,
            server_flags,
            ctl_flags: self.ctl_flags(),
            get: Some(getter(client_config(
                Some(&self.pki.ca_file()),
                Some(&self.client),
            ))),
        }
    }
}

/// A rustls client trusting `ca` (None: trusting anything, as `--insecure-skip-tls-verify`)
/// and presenting `identity`.
pub fn client_config(ca: Option<&Path>, identity: Option<&Files>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).expect("read CA") {
                roots.add(c.expect("CA cert")).expect("add CA");
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider))),
    };
    let cfg = match identity {
        Some(f) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&f.cert)
                .expect("read cert")
                .map(|c| c.expect("cert"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(&f.key).expect("read key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// A TLS connection to `127.0.0.1:port`, handshake done.
pub fn connect(
    config: &Arc<ClientConfig>,
    port: u16,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let conn = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(conn, http::connect(port)?);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    stream.flush()?;
    Ok(stream)
}

/// GET over TLS with `config`.
pub fn getter(config: Arc<ClientConfig>) -> TlsGet {
    Arc::new(move |port: u16, path: &str| -> std::io::Result<Response> {
        http::get_on(connect(&config, port)?, port, path)
    })
}

/// The serial number (lowercase hex, no leading zeros) of the certificate the listener on
/// `port` presents to a new connection.
pub fn presented_serial(config: &Arc<ClientConfig>, port: u16) -> std::io::Result<String> {
    let stream = connect(config, port)?;
    let leaf = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| std::io::Error::other("no server certificate"))?;
    oxcd_pki::inspect_der(leaf)
        .map(|c| c.serial_hex)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Accepts any server certificate (the handshake's signatures are still checked).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
