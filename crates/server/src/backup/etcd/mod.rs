//! etcd 3.4's backend layout in a bbolt file, and conversions between it and oxcd's backend.
//!
//! Buckets (all at the top level) and what oxcd keeps of them:
//! - `key`: revision (8-byte big-endian main, `_`, 8-byte sub, `t` for a tombstone) ->
//!   `mvccpb.KeyValue`; oxcd's key table has the same rows;
//! - `meta`: `consistent_index` (8 bytes), `scheduledCompactRev` and `finishedCompactRev`
//!   (revision bytes); the same rows in oxcd's meta table;
//! - `lease`: lease ID (8 bytes) -> `leasepb.Lease`; the same rows in oxcd's lease table;
//! - `auth` (`authEnabled`: one byte, 1 = on; `authRevision`: 8 bytes), `authUsers` (name ->
//!   `authpb.User`, with its bcrypt hash, which oxcd verifies as is), `authRoles` (name ->
//!   `authpb.Role`): one encoded auth state in oxcd's meta table;
//! - `alarm`: `etcdserverpb.AlarmMember` keys with empty values: oxcd's alarm list;
//! - `members`, `members_removed`: the old membership, which a restore replaces anyway;
//! - `cluster`: `clusterVersion`.
//!
//! [`import`] turns such a file into an oxcd backend file; [`export`] writes one from an oxcd
//! backend file; [`status`] is etcdctl's `snapshot status` of it.

pub mod export;
pub mod import;

use super::bbolt::{self, Item};
use super::status::SnapshotStatus;
use super::{Error, Result};
use crate::mvcc::Crc32c;

pub const KEY: &[u8] = b"key";
pub const META: &[u8] = b"meta";
pub const LEASE: &[u8] = b"lease";
pub const AUTH: &[u8] = b"auth";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const AUTH_ROLES: &[u8] = b"authRoles";
pub const ALARM: &[u8] = b"alarm";
pub const MEMBERS: &[u8] = b"members";
pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
pub const CLUSTER: &[u8] = b"cluster";

pub const AUTH_ENABLED: &[u8] = b"authEnabled";
pub const AUTH_REVISION: &[u8] = b"authRevision";
pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";

impl From<crate::error::EtcdError> for Error {
    fn from(e: crate::error::EtcdError) -> Error {
        Error::new(e.to_string())
    }
}

impl From<bbolt::Error> for Error {
    fn from(e: bbolt::Error) -> Error {
        Error::new(e.to_string())
    }
}

/// Whether the file at `path` is a bbolt database (an etcd snapshot or backend), by the meta
/// magic on page 0 or 1. A file that cannot be read is not.
pub fn is_bbolt_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    // Enough for page 1's meta at the largest page size.
    let mut head = Vec::new();
    let limit = (bbolt::page::PAGE_SIZES[bbolt::page::PAGE_SIZES.len() - 1] + 64) as u64;
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut head))
        .is_ok_and(|_| bbolt::looks_like_bbolt(&head))
}

/// etcdctl's `snapshot status` of the bbolt file `src` (a snapshot, with or without its
/// hash): CRC-32C over each top-level bucket's name and its rows' keys and values, the main
/// revision of the last row of `key`, the number of rows, and the database's size (pages in
/// use times page size). The file must pass bbolt's consistency check first, as in etcdctl.
pub fn status<'s>(src: impl Into<bbolt::Source<'s>>) -> Result<SnapshotStatus> {
    let db = bbolt::Db::open(src)?;
    db.check().map_err(|e| {
        Error::new(format!(
            "snapshot file integrity check failed. 1 errors found.\n{e}"
        ))
    })?;
    let mut h = Crc32c::new();
    let (mut revision, mut total_key) = (0i64, 0u64);
    db.root().for_each(&mut |name, item| {
        let Item::Bucket(b) = item else {
            return Err(bbolt::Error::new(format!(
                "cannot get hash of bucket {}",
                String::from_utf8_lossy(name)
            )));
        };
        h.update(name);
        let is_key = name == KEY;
        b.for_each(&mut |k, v| {
            h.update(k);
            // A nested bucket's value counts as empty, as bbolt hands it out.
            if let Item::Value(v) = v {
                h.update(v);
            }
            if is_key {
                if let Some(main) = k.get(..8) {
                    revision = i64::from_be_bytes(main.try_into().unwrap_or_default());
                }
            }
            total_key += 1;
            Ok(())
        })
    })?;
    Ok(SnapshotStatus {
        hash: h.finish(),
        revision,
        total_key,
        total_size: db.size(),
    })
}

#[cfg(test)]
mod tests;
