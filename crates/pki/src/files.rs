//! The certificate and key files on disk.

use crate::Pem;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `dir/stem.crt` and `dir/stem.key` (mode 0600), creating `dir`. Each file is written
/// to a temporary name and renamed into place, so a member that re-reads its certificate files
/// for new connections (rotation without restart) never sees a half-written file.
pub fn write_pem_files(dir: &Path, stem: &str, pem: &Pem) -> io::Result<(PathBuf, PathBuf)> {
    fs::create_dir_all(dir)?;
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    // The key first: a reader that sees the new certificate finds its key already there.
    write_atomic(&key, pem.key.as_bytes(), 0o600)?;
    write_atomic(&cert, pem.cert.as_bytes(), 0o644)?;
    Ok((cert, key))
}

impl Pem {
    /// Reads a certificate file and its key file (e.g. `ca.crt` and `ca.key`).
    pub fn read_files(cert: &Path, key: &Path) -> io::Result<Pem> {
        let read = |p: &Path| {
            fs::read_to_string(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Ok(Pem {
            cert: read(cert)?,
            key: read(key)?,
        })
    }
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pem");
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    // A temporary file left by a crashed earlier run with the same pid would block create_new.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = open_new(&tmp, mode)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn open_new(path: &Path, mode: u32) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Created with the final mode, so the key is never readable by others, not even briefly.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _mode: u32) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}
