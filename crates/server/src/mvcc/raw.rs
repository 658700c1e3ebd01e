//! Row-level access to a closed backend file, table by table: what converting a backend to and
//! from etcd's bbolt layout needs. The tables hold etcd's bucket rows byte for byte (see
//! `revision` and `codec`), so a conversion copies rows and only the meta rows that oxcd keeps
//! differently (auth, membership, alarms) need translating.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::store::{
    create_db, open_db, KEY_TABLE, LEASE_TABLE, META_CONSISTENT_INDEX, META_FINISHED_COMPACT,
    META_SCHEDULED_COMPACT, META_TABLE,
};
use crate::error::{EtcdError, Result};

/// The meta rows that have the same name and encoding in etcd's "meta" bucket.
pub const SHARED_META_KEYS: [&[u8]; 3] = [
    META_CONSISTENT_INDEX,
    META_FINISHED_COMPACT,
    META_SCHEDULED_COMPACT,
];

/// A backend table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Revision -> `mvccpb.KeyValue`, etcd's "key" bucket.
    Key,
    /// Lease ID (8 bytes, big-endian) -> `leasepb.Lease`, etcd's "lease" bucket.
    Lease,
    /// Named values: etcd's "meta" bucket rows and oxcd's own state.
    Meta,
}

impl Table {
    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            Table::Key => KEY_TABLE,
            Table::Lease => LEASE_TABLE,
            Table::Meta => META_TABLE,
        }
    }
}

/// Creates a new backend file at `path` (which must not exist) holding `rows`, in one durable
/// transaction.
pub fn create_file<'a>(
    path: &Path,
    rows: impl IntoIterator<Item = (Table, &'a [u8], &'a [u8])>,
) -> Result<()> {
    if path.exists() {
        return Err(EtcdError::Internal(format!(
            "mvcc: {} exists",
            path.display()
        )));
    }
    let db = create_db(path)?;
    let txn = db.begin_write()?;
    {
        let mut key = txn.open_table(KEY_TABLE)?;
        let mut lease = txn.open_table(LEASE_TABLE)?;
        let mut meta = txn.open_table(META_TABLE)?;
        for (t, k, v) in rows {
            match t {
                Table::Key => key.insert(k, v)?,
                Table::Lease => lease.insert(k, v)?,
                Table::Meta => meta.insert(k, v)?,
            };
        }
    }
    txn.commit()?;
    Ok(())
}

/// A visitor of rows (key, value).
pub type RowFn<'f> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'f;

/// Calls `f` with every row of table `t` of the (closed) backend file at `path`, in key order.
/// A missing table has no rows.
pub fn for_each_row(path: &Path, t: Table, f: &mut RowFn<'_>) -> Result<()> {
    crate::corrupt::open_checked(path)?;
    let db = open_db(path)?;
    let txn = db.begin_read()?;
    let table = match txn.open_table(t.def()) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for row in table.iter()? {
        let (k, v) = row?;
        f(k.value(), v.value())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        create_file(
            &path,
            [
                (Table::Key, &b"k2"[..], &b"v2"[..]),
                (Table::Key, b"k1", b"v1"),
                (Table::Meta, b"m", b"x"),
            ],
        )
        .unwrap();
        assert!(create_file(&path, []).is_err(), "never overwrites");
        let mut got = Vec::new();
        for t in [Table::Key, Table::Lease, Table::Meta] {
            for_each_row(&path, t, &mut |k, v| {
                got.push((t, k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            got,
            vec![
                (Table::Key, b"k1".to_vec(), b"v1".to_vec()),
                (Table::Key, b"k2".to_vec(), b"v2".to_vec()),
                (Table::Meta, b"m".to_vec(), b"x".to_vec()),
            ]
        );
    }
}
