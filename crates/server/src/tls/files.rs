//! Certificate files re-read when they change.
//!
//! etcd re-reads its certificate and key for every handshake, so an operator rotates them by
//! replacing the files. Here each handshake only looks at the files' metadata (inode, size,
//! modification time) and parses them again when that changed: replacing the files (ideally a
//! write to a temporary file and a rename) reaches the next connection. A pair that does not
//! load (a half-written file, the new key before its certificate) keeps the previous one in
//! use, with a warning, instead of failing every handshake as etcd would.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::go_io_error;

/// What identifies a file's content without reading it: a rename changes the inode, a write in
/// place the size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

fn stamp(path: &str) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        ino: m.ino(),
        len: m.len(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    })
}

/// Every certificate in a PEM file, leaf first.
pub fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| go_io_error("open", path, &e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{path}: tls: failed to find any PEM data in certificate input"
        ));
    }
    Ok(certs)
}

fn read_pair(cert: &str, key: &str, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = read_certs(cert)?;
    let data = std::fs::read(key).map_err(|e| go_io_error("open", key, &e))?;
    let der = PrivateKeyDer::from_pem_slice(&data)
        .map_err(|_| format!("{key}: tls: failed to find any PEM data in key input"))?;
    CertifiedKey::from_der(chain, der, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "tls: private key does not match public key".to_string()
        }
        e => format!("{key}: {e}"),
    })
}

/// A certificate and key file pair, loaded again when either changes.
#[derive(Debug)]
pub struct CertFiles {
    cert: String,
    key: String,
    provider: Arc<CryptoProvider>,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    /// The files as last looked at (loaded or failed).
    stamps: (Stamp, Stamp),
    current: Arc<CertifiedKey>,
}

impl CertFiles {
    /// Loads the pair; at start-up a pair that does not load is an error.
    pub fn load(cert: &str, key: &str, provider: Arc<CryptoProvider>) -> Result<CertFiles, String> {
        let stamps = (
            stamp(cert).map_err(|e| go_io_error("open", cert, &e))?,
            stamp(key).map_err(|e| go_io_error("open", key, &e))?,
        );
        let current = Arc::new(read_pair(cert, key, &provider)?);
        Ok(CertFiles {
            cert: cert.to_string(),
            key: key.to_string(),
            provider,
            state: Mutex::new(CertState { stamps, current }),
        })
    }

    /// The pair to present now: re-read if the files changed since last time.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock();
        let stamps = match (stamp(&self.cert), stamp(&self.key)) {
            (Ok(c), Ok(k)) => (c, k),
            // Gone for a moment (being replaced) or for good: serve what we have.
            _ => return state.current.clone(),
        };
        if stamps == state.stamps {
            return state.current.clone();
        }
        state.stamps = stamps;
        match read_pair(&self.cert, &self.key, &self.provider) {
            Ok(pair) => {
                state.current = Arc::new(pair);
                let serial = state
                    .current
                    .end_entity_cert()
                    .ok()
                    .and_then(|c| super::inspect_der(c))
                    .map(|i| i.serial_hex)
                    .unwrap_or_default();
                tracing::info!(
                    "cert-file" = %self.cert,
                    "key-file" = %self.key,
                    serial = %serial,
                    "reloaded certificate files"
                );
            }
            Err(e) => tracing::warn!(
                "cert-file" = %self.cert,
                "key-file" = %self.key,
                error = %e,
                "failed to reload certificate files; still using the previous certificate"
            ),
        }
        state.current.clone()
    }
}

impl rustls::server::ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for CertFiles {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A certificate revocation list file, read again when it changes. As in etcd, every accepted
/// connection is checked against it, and a CRL that cannot be read refuses the connection.
#[derive(Debug)]
pub struct CrlFile {
    path: String,
    /// The file as last read, and what it said.
    state: Mutex<Option<(Stamp, Revoked)>>,
}

/// The revoked serial numbers of a CRL, or why it could not be read.
type Revoked = Result<Arc<HashSet<Vec<u8>>>, String>;

/// A serial number as Go's `big.Int.Bytes` gives it: without leading zero bytes.
fn trim_serial(s: &[u8]) -> Vec<u8> {
    let start = s.iter().position(|b| *b != 0).unwrap_or(s.len());
    s[start..].to_vec()
}

fn read_crl(path: &str) -> Result<HashSet<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| go_io_error("open", path, &e))?;
    // PEM or DER, as Go's x509.ParseCRL takes either.
    let der = match x509_parser::pem::parse_x509_pem(&data) {
        Ok((_, pem)) => pem.contents,
        Err(_) => data,
    };
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| format!("{path}: {e}"))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| trim_serial(r.raw_serial()))
        .collect())
}

impl CrlFile {
    pub fn new(path: &str) -> CrlFile {
        CrlFile {
            path: path.to_string(),
            state: Mutex::new(None),
        }
    }

    /// Refuses a chain any of whose certificates the CRL revokes, in etcd's words.
    pub fn check(&self, chain: &[CertificateDer<'_>]) -> Result<(), String> {
        let revoked = self.revoked()?;
        for cert in chain {
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
                continue;
            };
            let serial = trim_serial(parsed.raw_serial());
            if revoked.contains(&serial) {
                let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
                return Err(format!("transport: certificate serial {hex} revoked"));
            }
        }
        Ok(())
    }

    fn revoked(&self) -> Revoked {
        let now = stamp(&self.path).map_err(|e| go_io_error("open", &self.path, &e))?;
        let mut state = self.state.lock();
        if let Some((s, result)) = state.as_ref() {
            if *s == now {
                return result.clone();
            }
        }
        let result = read_crl(&self.path).map(Arc::new);
        if let Err(e) = &result {
            tracing::warn!("crl-file" = %self.path, error = %e, "failed to read the CRL file");
        }
        *state = Some((now, result.clone()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_pki::{CertRequest, KeyAlgo, Usage};
    use std::time::Duration;

    fn issue(ca: &oxcd_pki::Pem, dir: &std::path::Path, stem: &str) -> (String, String) {
        let pem = oxcd_pki::issue(
            ca,
            &CertRequest {
                common_name: stem.to_string(),
                organization: None,
                hosts: vec!["127.0.0.1".to_string()],
                algo: KeyAlgo::EcdsaP256,
                valid_for: Duration::from_secs(3600),
                usage: Usage::Peer,
            },
        )
        .unwrap();
        let (c, k) = oxcd_pki::write_pem_files(dir, stem, &pem).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn serial(ck: &CertifiedKey) -> String {
        super::super::inspect_der(ck.end_entity_cert().unwrap())
            .unwrap()
            .serial_hex
    }

    #[test]
    fn replaced_files_are_reloaded_and_broken_ones_keep_the_previous_pair() {
        let dir = tempfile::tempdir().unwrap();
        let ca = oxcd_pki::new_ca("ca", KeyAlgo::EcdsaP256, Duration::from_secs(3600)).unwrap();
        let (cert, key) = issue(&ca, dir.path(), "m");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = CertFiles::load(&cert, &key, provider).unwrap();
        let first = serial(&files.current());
        assert_eq!(
            serial(&files.current()),
            first,
            "unchanged files: same pair"
        );

        issue(&ca, dir.path(), "m");
        let second = serial(&files.current());
        assert_ne!(second, first, "a rotated pair is used");

        // A key that does not match its certificate: the previous pair goes on.
        let other = issue(&ca, dir.path(), "other");
        std::fs::copy(&other.1, &key).unwrap();
        assert_eq!(serial(&files.current()), second);
        std::fs::write(&cert, "garbage").unwrap();
        assert_eq!(serial(&files.current()), second);
        assert!(CertFiles::load(
            &cert,
            &key,
            Arc::new(rustls::crypto::ring::default_provider())
        )
        .is_err());
    }

    #[test]
    fn crl_refuses_revoked_serials_and_is_reread() {
        let dir = tempfile::tempdir().unwrap();
        let ca = oxcd_pki::new_ca("ca", KeyAlgo::EcdsaP256, Duration::from_secs(3600)).unwrap();
        let (a, _) = issue(&ca, dir.path(), "a");
        let (b, _) = issue(&ca, dir.path(), "b");
        let chain = |p: &str| read_certs(p).unwrap();
        let serial_of = |p: &str| {
            oxcd_pki::inspect_pem(&std::fs::read_to_string(p).unwrap()).unwrap()[0]
                .serial_hex
                .clone()
        };
        let path = dir.path().join("crl.pem");
        let crl = CrlFile::new(&path.display().to_string());
        assert!(crl.check(&chain(&a)).unwrap_err().starts_with("open "));
        let write = |serials: &[String]| {
            let text = oxcd_pki::crl(&ca, serials, Duration::from_secs(3600)).unwrap();
            let tmp = dir.path().join("crl.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write(&[serial_of(&a)]);
        assert_eq!(
            crl.check(&chain(&a)).unwrap_err(),
            format!("transport: certificate serial {} revoked", serial_of(&a))
        );
        assert!(crl.check(&chain(&b)).is_ok());
        write(&[serial_of(&a), serial_of(&b)]);
        assert!(crl.check(&chain(&b)).is_err(), "the new CRL is read");
    }
}
