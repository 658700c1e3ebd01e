//! An etcd 3.4 bbolt backend (or snapshot) -> a new oxcd backend file.
//!
//! Key, lease and compaction rows are copied as they are, streamed from the file's pages into
//! the new backend; the auth buckets become oxcd's auth state and the alarm bucket its alarm
//! list. Membership is left out: a restore writes the new cluster's. Every row is checked as it
//! goes; a damaged file leaves no half-made backend behind.

use std::path::Path;

use oxcd_api::authpb::{Role, User};
use oxcd_api::etcdserverpb::{AlarmMember, AlarmResponse};
use oxcd_api::mvccpb::KeyValue;
use prost::Message;

use super::super::bbolt::{self, Bucket, Item, Source};
use super::super::{Error, Result};
use super::{ALARM, AUTH, AUTH_ENABLED, AUTH_REVISION, AUTH_ROLES, AUTH_USERS, KEY, LEASE, META};
use crate::alarm::META_ALARMS;
use crate::auth::store::{StoredAuth, META_AUTH};
use crate::mvcc::raw::{self, NewRows, Table, SHARED_META_KEYS};
use crate::mvcc::revision::{is_tombstone, Revision, REV_BYTES_LEN};
use crate::mvcc::LeaseRecord;

/// What [`each_row`] calls with a row's key and value.
type RowFn<'f> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'f;

/// Calls `f` with every row of bucket `name` (none if it is missing); a nested bucket inside
/// one of etcd's is not etcd's layout. An error of `f` stops the walk and is returned as is.
fn each_row(root: &Bucket<'_>, name: &[u8], f: &mut RowFn<'_>) -> Result<()> {
    let Some(b) = root.bucket(name)? else {
        return Ok(());
    };
    let mut failed = None;
    let walked = b.for_each(&mut |k, item| match item {
        Item::Value(v) => f(k, v).map_err(|e| {
            failed = Some(e);
            bbolt::Error::new("stopped")
        }),
        Item::Bucket(_) => Err(bbolt::Error::new(format!(
            "bucket {} holds a nested bucket {:?}, which etcd never writes",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(k)
        ))),
    });
    match (failed, walked) {
        (Some(e), _) => Err(e),
        (None, walked) => Ok(walked?),
    }
}

/// A small bucket's rows, copied.
fn rows(root: &Bucket<'_>, name: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    each_row(root, name, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(())
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
    let get = |k: &[u8]| auth.iter().find(|(name, _)| name == k).map(|(_, v)| v);
    let enabled = get(AUTH_ENABLED).is_some_and(|v| v[..] == [1]);
    // etcd reads a missing or malformed revision as 0; its auth store starts at 1.
    let revision = get(AUTH_REVISION)
        .and_then(|v| v[..].try_into().ok())
        .map_or(1, u64::from_be_bytes);
    let users = users
        .iter()
        .map(|(k, v)| User::decode(&v[..]).map_err(|e| bad_row("authUsers", k, e)))
        .collect::<Result<Vec<_>>>()?;
    let roles = roles
        .iter()
        .map(|(k, v)| Role::decode(&v[..]).map_err(|e| bad_row("authRoles", k, e)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(StoredAuth {
        enabled,
        revision,
        users,
        roles,
    }))
}

/// The alarm bucket as oxcd's alarm list (`None` if there are no alarms).
fn alarm_list(root: &Bucket<'_>) -> Result<Option<Vec<u8>>> {
    let alarms = rows(root, ALARM)?
        .iter()
        .map(|(k, _)| AlarmMember::decode(&k[..]).map_err(|e| bad_row("alarm", k, e)))
        .collect::<Result<Vec<_>>>()?;
    Ok((!alarms.is_empty()).then(|| {
        AlarmResponse {
            alarms,
            ..Default::default()
        }
        .encode_to_vec()
    }))
}

/// Streams the key, lease and shared meta rows into `to`, checking each.
fn copy_tables(root: &Bucket<'_>, to: &mut NewRows) -> Result<()> {
    each_row(root, KEY, &mut |k, v| {
        let len_ok = k.len() == REV_BYTES_LEN || is_tombstone(k);
        if !len_ok || Revision::from_bytes(k).is_none() {
            return Err(bad_row("key", k, "not a revision"));
        }
        KeyValue::decode(v).map_err(|e| bad_row("key", k, e))?;
        Ok(to.insert(Table::Key, k, v)?)
    })?;
    each_row(root, LEASE, &mut |k, v| {
        if k.len() != 8 {
            return Err(bad_row("lease", k, "not a lease ID"));
        }
        LeaseRecord::decode(v).map_err(|e| bad_row("lease", k, e))?;
        Ok(to.insert(Table::Lease, k, v)?)
    })?;
    each_row(root, META, &mut |k, v| {
        if SHARED_META_KEYS.contains(&k) {
            to.insert(Table::Meta, k, v)?;
        }
        Ok(())
    })
}

/// Converts the bbolt file `src` into a new oxcd backend file at `dst`.
pub fn import<'s>(src: impl Into<Source<'s>>, dst: &Path) -> Result<()> {
    let db = bbolt::Db::open(src)?;
    db.check()?;
    let root = db.root();
    let auth = auth_state(&root)?.map(|a| a.encode_to_vec());
    let alarms = alarm_list(&root)?;
    raw::create_file(dst, |to| {
        copy_tables(&root, to)?;
        if let Some(a) = &auth {
            to.insert(Table::Meta, META_AUTH.as_bytes(), a)?;
        }
        if let Some(a) = &alarms {
            to.insert(Table::Meta, META_ALARMS.as_bytes(), a)?;
        }
        Ok(())
    })
}
