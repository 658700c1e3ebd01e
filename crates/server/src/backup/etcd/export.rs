//! An oxcd backend file -> a snapshot file in etcd 3.4's layout: a bbolt database followed by
//! the SHA-256 of its bytes, as `etcdctl snapshot save` writes one. etcd's `snapshot restore`
//! and `snapshot status` accept it, and an etcd member restored from it serves the same keys,
//! revisions, compaction, leases, users, roles and auth flag.
//!
//! The key and lease tables are streamed straight into their buckets; the rest is small.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oxcd_api::etcdserverpb::AlarmResponse;
use prost::Message;
use serde_json::json;

use super::super::bbolt::{BucketWriter, Writer};
use super::super::file::hash_reader;
use super::super::{go_path_err, Error, Result};
use super::{
    ALARM, AUTH, AUTH_ENABLED, AUTH_REVISION, AUTH_ROLES, AUTH_USERS, CLUSTER, CLUSTER_VERSION,
    KEY, LEASE, MEMBERS, MEMBERS_REMOVED, META,
};
use crate::alarm::META_ALARMS;
use crate::auth::store::{State, META_AUTH};
use crate::membership::{ClusterInfo, Member, META_KEY};
use crate::mvcc::raw::{RawFile, Table, SHARED_META_KEYS};

/// bbolt takes the OS page size; 4 KiB is what etcd's usual platforms (x86-64, most arm64)
/// have, and any bbolt reads a file whose meta names its page size.
const PAGE_SIZE: usize = 4096;

/// The cluster version written: the format is etcd 3.4's, and an etcd refuses a backend whose
/// cluster version is newer than itself.
const EXPORT_CLUSTER_VERSION: &[u8] = b"3.4.0";

type Out = Writer<BufWriter<File>>;

/// A bucket of `rows` (sorted by key here).
fn small_bucket(
    w: &mut Out,
    mut rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<super::super::bbolt::BucketValue> {
    rows.sort();
    let mut b = BucketWriter::new();
    for (k, v) in rows {
        b.put(w, &k, &v)?;
    }
    Ok(b.finish(w)?)
}

/// A member as etcd stores it in the "members" bucket: its ID in hex as the key, and JSON with
/// empty fields left out.
fn member_row(m: &Member) -> (Vec<u8>, Vec<u8>) {
    // Built by hand: etcd's field order, which a JSON map would sort.
    let mut o = format!("{{\"id\":{},\"peerURLs\":{}", m.id, json!(m.peer_urls));
    if m.is_learner {
        o.push_str(",\"isLearner\":true");
    }
    if !m.name.is_empty() {
        o.push_str(&format!(",\"name\":{}", json!(m.name)));
    }
    if !m.client_urls.is_empty() {
        o.push_str(&format!(",\"clientURLs\":{}", json!(m.client_urls)));
    }
    o.push('}');
    (format!("{:x}", m.id).into_bytes(), o.into_bytes())
}

/// A bucket streamed from table `t` of the backend at `src`.
fn table_bucket(
    w: &mut Out,
    src: &Path,
    file: &RawFile,
    t: Table,
) -> Result<super::super::bbolt::BucketValue> {
    let mut b = BucketWriter::new();
    let mut failed = None;
    file.for_each_row(t, &mut |k, v| {
        if let Err(e) = b.put(w, k, v) {
            failed = Some(e);
            return Err(crate::error::EtcdError::Internal("stopped".into()));
        }
        Ok(())
    })
    .map_err(|e| match failed.take() {
        Some(bolt) => Error::from(bolt),
        None => Error::new(format!("{}: {e}", src.display())),
    })?;
    Ok(b.finish(w)?)
}

/// Writes the etcd snapshot of the (closed) oxcd backend file `src` to the new file `dst`.
/// Returns the snapshot's size in bytes (database and hash).
pub fn export(src: &Path, dst: &Path) -> Result<u64> {
    // Opened (and every page checked) once for the three tables read below.
    let file = RawFile::open(src).map_err(|e| Error::new(format!("{}: {e}", src.display())))?;
    let mut meta = BTreeMap::new();
    file.for_each_row(Table::Meta, &mut |k, v| {
        meta.insert(k.to_vec(), v.to_vec());
        Ok(())
    })
    .map_err(|e| Error::new(format!("{}: {e}", src.display())))?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(format!("{}: {what}: {e}", src.display()))
    };
    let auth = State::decode(meta.get(META_AUTH.as_bytes()).cloned())
        .map_err(|e| corrupt("auth state", &e))?;
    let (members, removed) = match meta.get(META_KEY.as_bytes()) {
        Some(raw) => {
            let info = ClusterInfo::decode(raw).map_err(|e| corrupt("membership", &e))?;
            (info.members, info.removed)
        }
        None => (Vec::new(), Vec::new()),
    };
    let alarms = match meta.get(META_ALARMS.as_bytes()) {
        Some(raw) => {
            AlarmResponse::decode(&raw[..])
                .map_err(|e| corrupt("alarms", &e))?
                .alarms
        }
        None => Vec::new(),
    };

    let out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        // A snapshot holds password hashes: readable by its owner only, as etcdctl saves one.
        .mode(0o600)
        .open(dst)
        .map_err(|e| go_path_err("open", dst, &e))?;
    let mut w = Writer::new(BufWriter::new(out), PAGE_SIZE)?;
    let mut root = BucketWriter::new();
    // Top-level buckets in key order, as bbolt keeps them.
    let b = small_bucket(
        &mut w,
        alarms
            .iter()
            .map(|a| (a.encode_to_vec(), Vec::new()))
            .collect(),
    )?;
    root.put_bucket(&mut w, ALARM, b)?;
    let b = small_bucket(
        &mut w,
        vec![
            (AUTH_ENABLED.to_vec(), vec![u8::from(auth.enabled)]),
            (AUTH_REVISION.to_vec(), auth.revision.to_be_bytes().to_vec()),
        ],
    )?;
    root.put_bucket(&mut w, AUTH, b)?;
    let b = small_bucket(
        &mut w,
        auth.roles
            .iter()
            .map(|(n, r)| (n.as_bytes().to_vec(), r.encode_to_vec()))
            .collect(),
    )?;
    root.put_bucket(&mut w, AUTH_ROLES, b)?;
    let b = small_bucket(
        &mut w,
        auth.users
            .iter()
            .map(|(n, u)| (n.as_bytes().to_vec(), u.encode_to_vec()))
            .collect(),
    )?;
    root.put_bucket(&mut w, AUTH_USERS, b)?;
    let b = small_bucket(
        &mut w,
        vec![(CLUSTER_VERSION.to_vec(), EXPORT_CLUSTER_VERSION.to_vec())],
    )?;
    root.put_bucket(&mut w, CLUSTER, b)?;
    let b = table_bucket(&mut w, src, &file, Table::Key)?;
    root.put_bucket(&mut w, KEY, b)?;
    let b = table_bucket(&mut w, src, &file, Table::Lease)?;
    root.put_bucket(&mut w, LEASE, b)?;
    let b = small_bucket(&mut w, members.iter().map(member_row).collect())?;
    root.put_bucket(&mut w, MEMBERS, b)?;
    // etcd marks a removed member's ID (in hex) with the value "removed".
    let b = small_bucket(
        &mut w,
        removed
            .iter()
            .map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec()))
            .collect(),
    )?;
    root.put_bucket(&mut w, MEMBERS_REMOVED, b)?;
    let b = small_bucket(
        &mut w,
        meta.iter()
            .filter(|(k, _)| SHARED_META_KEYS.contains(&k.as_slice()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )?;
    root.put_bucket(&mut w, META, b)?;
    let out = w.finish(root)?;
    let mut file = out
        .into_inner()
        .map_err(|e| go_path_err("write", dst, e.error()))?;
    append_hash(&mut file, dst)
}

/// Appends the SHA-256 of the file's bytes, syncs it, and returns the new size.
fn append_hash(file: &mut File, path: &Path) -> Result<u64> {
    file.rewind().map_err(|e| go_path_err("seek", path, &e))?;
    let (_, hash) = hash_reader(file, path, &mut |_| Ok(()))?;
    // Reading left the offset at the end of the database.
    file.write_all(&hash)
        .map_err(|e| go_path_err("write", path, &e))?;
    file.sync_all().map_err(|e| go_path_err("sync", path, &e))?;
    let size = file
        .metadata()
        .map_err(|e| go_path_err("stat", path, &e))?
        .len();
    Ok(size)
}
