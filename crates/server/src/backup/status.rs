//! `snapshot status FILE`: hash, revision, total keys and total size of a snapshot file (or of a
//! bare `member/snap/db`), in etcdctl 3.4's output formats.
//!
//! The file itself is never opened as a database: redb may repair a file that was not closed
//! cleanly, so the database is copied out to a temporary file and read there.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::file::{copy_out, HASH_LEN};
use super::{go_path_err, humanize_bytes, Error, Result, EXIT_BAD_FEATURE};
use crate::mvcc::MvccStore;

/// etcd's `snapshot.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32C over every table's name and rows (see [`MvccStore::file_stats`]).
    pub hash: u32,
    /// The newest revision in the file.
    pub revision: i64,
    /// Rows over all tables.
    pub total_key: u64,
    /// Bytes of the database (without the trailing hash).
    pub total_size: u64,
}

/// A directory of our own under the system temp dir, removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(what: &str) -> Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "oxcd-{what}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(|e| go_path_err("mkdir", &dir, &e))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads the status of the snapshot file at `path`: an oxcd snapshot, or an etcd one (a bbolt
/// file, see [`super::etcd::status`]). Errors as etcdctl's: "stat x: no such file or
/// directory", "invalid database".
pub fn status(path: &Path) -> Result<SnapshotStatus> {
    let meta = std::fs::metadata(path).map_err(|e| go_path_err("stat", path, &e))?;
    if meta.len() < HASH_LEN as u64 || !meta.is_file() {
        return Err(Error::new("invalid database"));
    }
    if super::etcd::is_bbolt_file(path) {
        let f = std::fs::File::open(path).map_err(|e| go_path_err("open", path, &e))?;
        let src = super::bbolt::Source::file(&f).map_err(|e| go_path_err("stat", path, &e))?;
        return super::etcd::status(src);
    }
    let tmp = TempDir::new("snapshot-status")?;
    let db = tmp.0.join("db");
    let found = copy_out(path, &db, &mut |_, _| {})?;
    // redb panics on some damaged files (when it frees pages while closing one it repaired):
    // that too is an invalid database, not a crash of the tool.
    let stats = std::panic::catch_unwind(|| MvccStore::file_stats(&db))
        .map_err(|_| Error::new("invalid database"))?
        .map_err(|_| Error::new("invalid database"))?;
    Ok(SnapshotStatus {
        hash: stats.hash,
        revision: stats.revision,
        total_key: stats.total_keys,
        total_size: found.db_len,
    })
}

/// The status in one of etcdctl's `--write-out` formats, ending in a newline. `protobuf` and
/// unknown formats fail as in etcdctl (exit code 4).
pub fn render_status(s: &SnapshotStatus, format: &str) -> Result<String> {
    match format {
        "simple" => Ok(format!(
            "{:x}, {}, {}, {}\n",
            s.hash,
            s.revision,
            s.total_key,
            humanize_bytes(s.total_size)
        )),
        "json" => Ok(format!(
            "{}\n",
            json!({
                "hash": s.hash,
                "revision": s.revision,
                "totalKey": s.total_key,
                "totalSize": s.total_size,
            })
        )),
        "fields" => Ok(format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            s.hash, s.revision, s.total_key, s.total_size
        )),
        "table" => Ok(table(
            &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            &[
                format!("{:x}", s.hash),
                s.revision.to_string(),
                s.total_key.to_string(),
                humanize_bytes(s.total_size),
            ],
        )),
        "protobuf" => Err(Error {
            msg: "protobuf not supported as output format".into(),
            code: EXIT_BAD_FEATURE,
        }),
        _ => Err(Error {
            msg: "unsupported output format".into(),
            code: EXIT_BAD_FEATURE,
        }),
    }
}

/// A one-row table as etcdctl's tablewriter draws it: centered headers, right-aligned cells.
fn table(header: &[&str], row: &[String]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .zip(row)
        .map(|(h, c)| h.chars().count().max(c.chars().count()))
        .collect();
    let border: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = border.clone();
    for (h, w) in header.iter().zip(&widths) {
        let gap = w - h.chars().count();
        let left = gap / 2;
        out.push_str(&format!(
            "| {}{}{} ",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push_str("|\n");
    out.push_str(&border);
    for (c, w) in row.iter().zip(&widths) {
        out.push_str(&format!("| {c:>w$} "));
    }
    out.push_str("|\n");
    out.push_str(&border);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SnapshotStatus = SnapshotStatus {
        hash: 1850419914,
        revision: 6,
        total_key: 10,
        total_size: 20480,
    };

    #[test]
    fn formats_match_etcdctl() {
        assert_eq!(
            render_status(&S, "simple").unwrap(),
            "6e4b2aca, 6, 10, 20 kB\n"
        );
        assert_eq!(
            render_status(&S, "json").unwrap(),
            "{\"hash\":1850419914,\"revision\":6,\"totalKey\":10,\"totalSize\":20480}\n"
        );
        assert_eq!(
            render_status(&S, "fields").unwrap(),
            "\"Hash\" : 1850419914\n\"Revision\" : 6\n\"Keys\" : 10\n\"Size\" : 20480\n"
        );
        assert_eq!(
            render_status(&S, "table").unwrap(),
            "\
+----------+----------+------------+------------+
|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |
+----------+----------+------------+------------+
| 6e4b2aca |        6 |         10 |      20 kB |
+----------+----------+------------+------------+
"
        );
        let e = render_status(&S, "protobuf").unwrap_err();
        assert_eq!(
            (e.msg.as_str(), e.code),
            ("protobuf not supported as output format", 4)
        );
        let e = render_status(&S, "yaml").unwrap_err();
        assert_eq!((e.msg.as_str(), e.code), ("unsupported output format", 4));
    }
}
