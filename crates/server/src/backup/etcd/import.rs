//! An etcd 3.4 bbolt backend (or snapshot) -> a new oxcd backend file.
//!
//! Key, lease and compaction rows are copied as they are; the auth buckets become oxcd's auth
//! state and the alarm bucket its alarm list. Membership is left out: a restore writes the new
//! cluster's. Every row is checked before anything is written, so a damaged file leaves no
//! half-made backend behind.

use std::path::Path;

use oxcd_api::authpb::{Role, User};
use oxcd_api::etcdserverpb::{AlarmMember, AlarmResponse};
use oxcd_api::mvccpb::KeyValue;
use prost::Message;

use super::super::bbolt::{self, Bucket, Item};
use super::super::{Error, Result};
use super::{ALARM, AUTH, AUTH_ENABLED, AUTH_REVISION, AUTH_ROLES, AUTH_USERS, KEY, LEASE, META};
use crate::alarm::META_ALARMS;
use crate::auth::store::{StoredAuth, META_AUTH};
use crate::mvcc::raw::{self, Table, SHARED_META_KEYS};
use crate::mvcc::revision::{Revision, REV_BYTES_LEN, TOMBSTONE_REV_BYTES_LEN};
use crate::mvcc::LeaseRecord;

/// A bucket's rows, borrowed from the file. A missing bucket has none; a nested bucket inside
/// one of etcd's is not etcd's layout.
fn rows<'a>(root: &Bucket<'a>, name: &[u8]) -> Result<Vec<(&'a [u8], &'a [u8])>> {
    let Some(b) = root.bucket(name)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    b.for_each(&mut |k, item| match item {
        Item::Value(v) => {
            out.push((k, v));
            Ok(())
        }
        Item::Bucket(_) => Err(bbolt::Error::new(format!(
            "bucket {} holds a nested bucket {:?}, which etcd never writes",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(k)
        ))),
    })?;
    Ok(out)
}

fn bad_row(bucket: &str, key: &[u8], why: impl std::fmt::Display) -> Error {
    Error::new(format!(
        "etcd snapshot: bucket {bucket}: row {}: {why}",
        hex(key)
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The auth buckets as oxcd's auth state (`None` if the file has no auth bucket at all).
fn auth_state(root: &Bucket<'_>) -> Result<Option<StoredAuth>> {
    let auth = rows(root, AUTH)?;
    let users = rows(root, AUTH_USERS)?;
    let roles = rows(root, AUTH_ROLES)?;
    if auth.is_empty() && users.is_empty() && roles.is_empty() {
        return Ok(None);
    }
    let get = |k: &[u8]| auth.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
    let enabled = get(AUTH_ENABLED).is_some_and(|v| v == [1]);
    // etcd reads a missing or malformed revision as 0; its auth store starts at 1.
    let revision = get(AUTH_REVISION)
        .and_then(|v| v.try_into().ok())
        .map_or(1, u64::from_be_bytes);
    let users = users
        .iter()
        .map(|(k, v)| User::decode(*v).map_err(|e| bad_row("authUsers", k, e)))
        .collect::<Result<Vec<_>>>()?;
    let roles = roles
        .iter()
        .map(|(k, v)| Role::decode(*v).map_err(|e| bad_row("authRoles", k, e)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(StoredAuth {
        enabled,
        revision,
        users,
        roles,
    }))
}

/// Converts the bbolt file `data` into a new oxcd backend file at `dst`.
pub fn import(data: &[u8], dst: &Path) -> Result<()> {
    let db = bbolt::Db::open(data)?;
    db.check()?;
    let root = db.root();
    let keys = rows(&root, KEY)?;
    for (k, v) in &keys {
        let len_ok = k.len() == REV_BYTES_LEN || k.len() == TOMBSTONE_REV_BYTES_LEN;
        if !len_ok || Revision::from_bytes(k).is_none() {
            return Err(bad_row("key", k, "not a revision"));
        }
        KeyValue::decode(*v).map_err(|e| bad_row("key", k, e))?;
    }
    let leases = rows(&root, LEASE)?;
    for (k, v) in &leases {
        if k.len() != 8 {
            return Err(bad_row("lease", k, "not a lease ID"));
        }
        LeaseRecord::decode(*v).map_err(|e| bad_row("lease", k, e))?;
    }
    let meta: Vec<_> = rows(&root, META)?
        .into_iter()
        .filter(|(k, _)| SHARED_META_KEYS.contains(k))
        .collect();
    let auth = auth_state(&root)?.map(|a| a.encode_to_vec());
    let alarms = rows(&root, ALARM)?
        .iter()
        .map(|(k, _)| AlarmMember::decode(*k).map_err(|e| bad_row("alarm", k, e)))
        .collect::<Result<Vec<_>>>()?;
    let alarms = (!alarms.is_empty()).then(|| {
        AlarmResponse {
            alarms,
            ..Default::default()
        }
        .encode_to_vec()
    });

    let mut all: Vec<(Table, &[u8], &[u8])> = Vec::with_capacity(keys.len() + leases.len() + 8);
    all.extend(keys.iter().map(|(k, v)| (Table::Key, *k, *v)));
    all.extend(leases.iter().map(|(k, v)| (Table::Lease, *k, *v)));
    all.extend(meta.iter().map(|(k, v)| (Table::Meta, *k, *v)));
    if let Some(a) = &auth {
        all.push((Table::Meta, META_AUTH.as_bytes(), a));
    }
    if let Some(a) = &alarms {
        all.push((Table::Meta, META_ALARMS.as_bytes(), a));
    }
    raw::create_file(dst, all).map_err(|e| Error::new(format!("{}: {e}", dst.display())))
}
