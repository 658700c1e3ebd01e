//! The snapshot file: a backend database followed by the SHA-256 of its bytes.
//!
//! Whether a file ends in a hash is decided as etcd decides it for its bolt files, whose size
//! is a whole number of 512-byte units: a size of `512 * n + 32` means a hash is there. A redb
//! file is a whole number of pages as well; in case one ever is not, a file whose last 32 bytes
//! are the SHA-256 of the rest also counts as hashed. Anything else is a bare database (a copy
//! of `member/snap/db`), accepted only with `--skip-hash-check`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{go_path_err, Error, Result};

/// Bytes of the trailing SHA-256.
pub const HASH_LEN: usize = 32;

/// Bytes read and written per step while copying.
const COPY_CHUNK: usize = 1024 * 1024;

/// What [`copy_out`] found in a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Bytes in the file.
    pub size: u64,
    /// Bytes of the database (the file without its hash, if it has one).
    pub db_len: u64,
    /// The file's last 32 bytes, if it has that many.
    pub stored: Option<[u8; HASH_LEN]>,
    /// SHA-256 of everything before the last 32 bytes.
    pub computed: Option<[u8; HASH_LEN]>,
}

impl SnapshotFile {
    /// The file ends in a hash (by etcd's size rule, or because the last 32 bytes are the
    /// SHA-256 of the rest).
    pub fn has_hash(&self) -> bool {
        self.stored.is_some()
            && (self.size % 512 == HASH_LEN as u64 || self.stored == self.computed)
    }

    /// etcd's integrity check at restore: a file with a hash must match it, one without is
    /// refused unless `skip_hash_check`; with `skip_hash_check` nothing is compared.
    pub fn check(&self, skip_hash_check: bool) -> Result<()> {
        if skip_hash_check {
            return Ok(());
        }
        if !self.has_hash() {
            return Err(Error::new(
                "snapshot missing hash but --skip-hash-check=false",
            ));
        }
        if self.stored != self.computed {
            return Err(Error::new(format!(
                "expected sha256 {}, got {}",
                go_bytes(self.stored.as_ref().map_or(&[][..], |h| &h[..])),
                go_bytes(self.computed.as_ref().map_or(&[][..], |h| &h[..]))
            )));
        }
        Ok(())
    }
}

/// Go's `%v` of a `[]byte`: `[59 230 80]`.
pub fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(" "))
}

/// Progress of a long copy: (bytes done, bytes in all), called at most about once a second.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Copies the database in snapshot file `src` to a new file `dst` (which must not exist),
/// leaving out a trailing hash, and syncs it. Reads `src` once, hashing as it goes. Errors
/// name `src` as etcd does ("open x.db: no such file or directory"; "seek x.db: invalid
/// argument" for a file shorter than a hash).
pub fn copy_out(src: &Path, dst: &Path, progress: Progress<'_>) -> Result<SnapshotFile> {
    let mut from = File::open(src).map_err(|e| go_path_err("open", src, &e))?;
    let size = from
        .metadata()
        .map_err(|e| go_path_err("stat", src, &e))?
        .len();
    if size < HASH_LEN as u64 {
        return Err(Error::new(format!(
            "seek {}: invalid argument",
            src.display()
        )));
    }
    let body = size - HASH_LEN as u64;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| go_path_err("open", dst, &e))?;
    let mut sha = Sha256::new();
    let mut tail = Vec::with_capacity(HASH_LEN);
    let mut buf = vec![0u8; COPY_CHUNK];
    let (mut done, mut last_report) = (0u64, Instant::now());
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| go_path_err("read", src, &e))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        // The part of this chunk that belongs to the body (hashed) and to the last 32 bytes.
        let in_body = body.saturating_sub(done).min(n as u64) as usize;
        sha.update(&chunk[..in_body]);
        tail.extend_from_slice(&chunk[in_body..]);
        to.write_all(chunk)
            .map_err(|e| go_path_err("write", dst, &e))?;
        done += n as u64;
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress(done, size);
            last_report = Instant::now();
        }
    }
    if done != size || tail.len() != HASH_LEN {
        return Err(Error::new(format!(
            "read {}: file changed while it was copied",
            src.display()
        )));
    }
    let mut stored = [0u8; HASH_LEN];
    stored.copy_from_slice(&tail);
    let mut computed = [0u8; HASH_LEN];
    computed.copy_from_slice(&sha.finalize());
    let found = SnapshotFile {
        size,
        db_len: size,
        stored: Some(stored),
        computed: Some(computed),
    };
    let db_len = if found.has_hash() { body } else { size };
    if db_len != size {
        to.set_len(db_len)
            .map_err(|e| go_path_err("truncate", dst, &e))?;
    }
    to.sync_all().map_err(|e| go_path_err("sync", dst, &e))?;
    Ok(SnapshotFile { db_len, ..found })
}

/// SHA-256 of a whole stream of chunks: what the Maintenance service appends to a snapshot.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, b: &[u8]) {
        self.0.update(b);
    }
    pub fn finish(self) -> [u8; HASH_LEN] {
        self.0.finalize().into()
    }
}

/// Reads `from` (the file at `path`) to its end a chunk at a time, handing each chunk to
/// `each`. Returns the bytes read and their SHA-256.
pub fn hash_reader(
    from: &mut dyn Read,
    path: &Path,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<(u64, [u8; HASH_LEN])> {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut size = 0u64;
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| go_path_err("read", path, &e))?;
        if n == 0 {
            return Ok((size, sha.finalize().into()));
        }
        sha.update(&buf[..n]);
        each(&buf[..n])?;
        size += n as u64;
    }
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; HASH_LEN] {
    Sha256::digest(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, b: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b).unwrap();
        p
    }

    #[test]
    fn hashed_raw_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let db: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut hashed = db.clone();
        hashed.extend_from_slice(&sha256(&db));

        let src = write(dir.path(), "hashed", &hashed);
        let f = copy_out(&src, &dir.path().join("out1"), &mut |_, _| {}).unwrap();
        assert!(f.has_hash());
        assert_eq!(f.db_len, 4096);
        f.check(false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out1")).unwrap(), db);

        let src = write(dir.path(), "raw", &db);
        let f = copy_out(&src, &dir.path().join("out2"), &mut |_, _| {}).unwrap();
        assert!(!f.has_hash());
        assert_eq!(f.db_len, 4096);
        assert_eq!(
            f.check(false).unwrap_err().msg,
            "snapshot missing hash but --skip-hash-check=false"
        );
        f.check(true).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out2")).unwrap(), db);

        let mut bad = hashed.clone();
        bad[10] ^= 1;
        let src = write(dir.path(), "bad", &bad);
        let f = copy_out(&src, &dir.path().join("out3"), &mut |_, _| {}).unwrap();
        let e = f.check(false).unwrap_err().msg;
        assert!(e.starts_with("expected sha256 ["), "{e}");
        assert_eq!(
            f.db_len, 4096,
            "the hash is cut off even when it does not match"
        );

        // Not page-sized, but ends in the hash of the rest.
        let odd = &db[..1000];
        let mut odd_hashed = odd.to_vec();
        odd_hashed.extend_from_slice(&sha256(odd));
        let src = write(dir.path(), "odd", &odd_hashed);
        let f = copy_out(&src, &dir.path().join("out4"), &mut |_, _| {}).unwrap();
        assert!(f.has_hash());
        assert_eq!(f.db_len, 1000);

        let src = write(dir.path(), "tiny", b"hello\n");
        let e = copy_out(&src, &dir.path().join("out5"), &mut |_, _| {}).unwrap_err();
        assert_eq!(e.msg, format!("seek {}: invalid argument", src.display()));

        let e = copy_out(
            &dir.path().join("nope"),
            &dir.path().join("out6"),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            e.msg.ends_with("nope: no such file or directory"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn go_byte_slices() {
        assert_eq!(go_bytes(&[59, 230, 0]), "[59 230 0]");
    }
}
