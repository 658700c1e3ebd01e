//! `snapshot convert`: an oxcd snapshot file to etcd 3.4's format (a bbolt database and its
//! SHA-256, which etcd restores), or an etcd snapshot to oxcd's (a redb database and its
//! SHA-256). The input's format is recognised from its bytes; its hash is checked as a restore
//! checks it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::file::{copy_out, hash_reader, HASH_LEN};
use super::status::TempDir;
use super::{etcd, go_path_err, Error, Result};

/// A snapshot file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// etcd 3.4: bbolt.
    Etcd,
    /// oxcd: redb.
    Oxcd,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s {
            "etcd" => Ok(Format::Etcd),
            "oxcd" => Ok(Format::Oxcd),
            _ => Err(Error::new(format!(
                "unknown snapshot format {s:?} (want etcd or oxcd)"
            ))),
        }
    }
}

impl Format {
    /// The format of the snapshot file at `path`.
    pub fn of_file(path: &Path) -> Format {
        if etcd::is_bbolt_file(path) {
            Format::Etcd
        } else {
            Format::Oxcd
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Etcd => "etcd",
            Format::Oxcd => "oxcd",
        }
    }
}

/// Converts the snapshot `input` into a new file `output` in format `to`. Returns the size of
/// the new file.
pub fn convert(input: &Path, output: &Path, to: Format, skip_hash_check: bool) -> Result<u64> {
    // A missing or unreadable input is said as such, not taken for a file of the other format.
    std::fs::File::open(input).map_err(|e| go_path_err("open", input, &e))?;
    let from = Format::of_file(input);
    if from == to {
        return Err(Error::new(format!(
            "{} is already a snapshot in {} format",
            input.display(),
            to.name()
        )));
    }
    if std::fs::symlink_metadata(output).is_ok() {
        return Err(Error::new(format!("{} exists", output.display())));
    }
    let tmp = TempDir::new("snapshot-convert")?;
    let db = tmp.0.join("db");
    let made = match to {
        Format::Etcd => {
            copy_out(input, &db, &mut |_, _| {})?.check(skip_hash_check)?;
            // redb panics on some damaged files: an invalid database, not a crash of the tool
            // (as `snapshot status` and `restore` treat it).
            std::panic::catch_unwind(|| etcd::export::export(&db, output))
                .map_err(|_| Error::new("invalid database"))?
        }
        Format::Oxcd => {
            let bolt = tmp.0.join("etcd.db");
            copy_out(input, &bolt, &mut |_, _| {})?.check(skip_hash_check)?;
            let f = std::fs::File::open(&bolt).map_err(|e| go_path_err("open", &bolt, &e))?;
            let src = super::bbolt::Source::file(&f).map_err(|e| go_path_err("stat", &bolt, &e))?;
            etcd::import::import(src, &db)?;
            with_hash(&db, output)
        }
    };
    if made.is_err() {
        let _ = std::fs::remove_file(output);
    }
    made
}

/// Writes `db`'s bytes followed by their SHA-256 to the new file `output`, a chunk at a time.
fn with_hash(db: &Path, output: &Path) -> Result<u64> {
    let mut from = std::fs::File::open(db).map_err(|e| go_path_err("open", db, &e))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        // A snapshot holds password hashes: readable by its owner only, as etcdctl saves one.
        .mode(0o600)
        .open(output)
        .map_err(|e| go_path_err("open", output, &e))?;
    let (size, hash) = hash_reader(&mut from, db, &mut |chunk| {
        to.write_all(chunk)
            .map_err(|e| go_path_err("write", output, &e))
    })?;
    to.write_all(&hash)
        .and_then(|_| to.sync_all())
        .map_err(|e| go_path_err("write", output, &e))?;
    Ok(size + HASH_LEN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::MvccStore;
    use oxcd_api::etcdserverpb::PutRequest;

    #[test]
    fn converts_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let store = MvccStore::open(&dir.path().join("m/db")).unwrap();
        let mut b = store.write().unwrap();
        b.put(
            &PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            },
            &|_| true,
        )
        .unwrap();
        b.commit(true).unwrap();
        let raw = dir.path().join("raw");
        store.snapshot_to(&raw).unwrap();
        let want = crate::backup::status(&raw).unwrap();

        let etcd = dir.path().join("etcd.db");
        let e = convert(&raw, &etcd, Format::Etcd, false).unwrap_err();
        assert_eq!(e.msg, "snapshot missing hash but --skip-hash-check=false");
        convert(&raw, &etcd, Format::Etcd, true).unwrap();
        assert_eq!(Format::of_file(&etcd), Format::Etcd);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&etcd).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(crate::backup::status(&etcd).unwrap().revision, 2);
        let e = convert(&etcd, &dir.path().join("x"), Format::Etcd, false).unwrap_err();
        assert!(
            e.msg.ends_with("is already a snapshot in etcd format"),
            "{}",
            e.msg
        );
        let e = convert(&raw, &etcd, Format::Etcd, true).unwrap_err();
        assert!(e.msg.ends_with("etcd.db exists"), "{}", e.msg);

        let back = dir.path().join("back.db");
        convert(&etcd, &back, Format::Oxcd, false).unwrap();
        assert_eq!(Format::of_file(&back), Format::Oxcd);
        // The export adds etcd's auth rows (auth off), which come back as oxcd's auth state.
        let got = crate::backup::status(&back).unwrap();
        assert_eq!(got.revision, want.revision);
        assert_eq!(got.total_key, want.total_key + 1);
        assert!("bolt".parse::<Format>().is_err());
    }
}
