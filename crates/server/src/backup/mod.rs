//! Backups: snapshot files, their status, and restoring one into the data dir of a member of a
//! new cluster. Shared by `oxutl snapshot ...` and `oxctl snapshot ...` (etcdutl's and etcdctl
//! 3.4's commands), and by the Maintenance `Snapshot` service, which produces the files.
//!
//! A snapshot file is the bytes of a backend database (`member/snap/db`, a redb file) followed
//! by the 32-byte SHA-256 of those bytes, as etcd appends one to its bolt database. A member's
//! `member/snap/db` copied by hand has no hash; it is accepted with `--skip-hash-check`.
//!
//! etcd 3.4's snapshots (a bbolt database and its SHA-256) are accepted by status and restore,
//! and written by `snapshot save --format etcd` and `snapshot convert`:
//!
//! - [`bbolt`]: bbolt's page format, read and written by our own code;
//! - [`etcd`]: etcd's bucket layout, its status, and conversion to and from oxcd's backend;
//! - [`convert`]: `snapshot convert` between the two formats;
//! - [`file`]: the file format (hash detection and check, copying the database out);
//! - [`status`]: hash, revision, total keys and size of a snapshot, and its output formats;
//! - [`restore`]: building `<data-dir>/member/{snap/db,wal}` for a member of a new cluster;
//! - [`log`]: etcdctl's progress lines (zap-style JSON on stderr);
//! - [`stream`]: the Maintenance `Snapshot` stream (chunks, then the hash).

pub mod bbolt;
pub mod convert;
pub mod etcd;
pub mod file;
pub mod log;
pub mod restore;
pub mod status;
pub mod stream;

pub use file::{SnapshotFile, HASH_LEN};
pub use restore::{restore, RestoreOptions};
pub use status::{render_status, status, SnapshotStatus};

/// A failed backup operation. The text is etcd's, word for word where etcd has one; the
/// command line tools print it after `Error: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub msg: String,
    /// etcdctl's exit code for it (1, or 4 for an unsupported output format).
    pub code: i32,
}

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error {
            msg: msg.into(),
            code: EXIT_ERROR,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// etcdctl's ExitError.
pub const EXIT_ERROR: i32 = 1;
/// etcdctl's ExitBadFeature (an output format a command does not support).
pub const EXIT_BAD_FEATURE: i32 = 4;

/// Go's `*PathError` text for an I/O error on `path`: "open x: no such file or directory".
pub fn go_path_err(op: &str, path: &std::path::Path, e: &std::io::Error) -> Error {
    Error::new(format!("{op} {}: {}", path.display(), go_errno_text(e)))
}

/// The C library's text of an I/O error as Go prints it: "no such file or directory".
pub fn go_errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Go's `%q` of a string (printable ASCII as is, the rest escaped).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// go-humanize's `Bytes` (SI units), as etcdctl prints sizes: "20 kB", "2.1 MB".
pub fn humanize_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = ((s as f64).ln() / 1000f64.ln()).floor();
    let suffix = SIZES[(e as usize).min(SIZES.len() - 1)];
    let val = ((s as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_like_go() {
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(2_097_152), "2.1 MB");
        assert_eq!(humanize_bytes(999), "999 B");
        assert_eq!(humanize_bytes(1000), "1.0 kB");
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a b"), "\"a b\"");
        assert_eq!(go_quote("a\"b\\"), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn path_errors_like_go() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(
            go_path_err("stat", std::path::Path::new("x.db"), &e).msg,
            "stat x.db: no such file or directory"
        );
    }
}
