//! `--auto-tls` and `--peer-auto-tls`: a self-signed certificate for the listen URLs' hosts,
//! kept where etcd keeps its own (`<data-dir>/fixtures/client`, `<data-dir>/fixtures/peer`, as
//! `cert.pem` and `key.pem`) and reused by later starts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use oxcd_pki::{CertRequest, KeyAlgo, Usage};

use super::TlsInfo;
use crate::config::Url;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Fills `info` with a generated certificate when auto TLS is on and no files are given
/// (etcd's `ClientSelfCert`/`PeerSelfCert`: the generated settings replace the side's).
/// `which` is `client` or `peer`; `years` is `--self-signed-cert-validity`.
pub fn apply(
    info: &mut TlsInfo,
    which: &str,
    data_dir: &Path,
    urls: &[Url],
    name: &str,
    years: u32,
) -> anyhow::Result<()> {
    if !info.auto_tls {
        return Ok(());
    }
    if !info.is_empty() {
        tracing::warn!("ignoring {which} auto TLS since certs given");
        return Ok(());
    }
    let dir = data_dir.join("fixtures").join(which);
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !(cert.exists() && key.exists()) {
        let mut hosts: Vec<String> = urls.iter().map(|u| u.host.clone()).collect();
        hosts.dedup();
        let pem = oxcd_pki::self_signed(&CertRequest {
            common_name: name.to_string(),
            organization: Some("etcd".to_string()),
            hosts,
            algo: KeyAlgo::EcdsaP384,
            valid_for: DAY * 365 * years,
            // A member presents its peer certificate when it dials, too.
            usage: Usage::Peer,
        })
        .map_err(|e| anyhow::anyhow!("cannot generate cert: {e}"))?;
        std::fs::create_dir_all(&dir)?;
        write_file(&cert, pem.cert.as_bytes(), 0o644)?;
        tracing::info!(path = %cert.display(), "created cert file");
        write_file(&key, pem.key.as_bytes(), 0o600)?;
        tracing::info!(path = %key.display(), "created key file");
    }
    *info = TlsInfo {
        cert_file: cert.display().to_string(),
        key_file: key.display().to_string(),
        self_signed: true,
        ..TlsInfo::default()
    };
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
