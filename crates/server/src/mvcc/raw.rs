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

/// Bytes of rows per write transaction while a file is made: a large backend is written in
/// chunks, so no transaction holds all of it in memory. Tiny in unit tests, so that their
/// files are written in many chunks.
const CHUNK_BYTES: usize = if cfg!(test) { 1024 } else { 64 * 1024 * 1024 };

/// A backend file being made, for [`create_file`]: rows are buffered and written a chunk per
/// transaction.
pub struct NewRows {
    db: redb::Database,
    rows: Vec<(Table, Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

impl NewRows {
    pub fn insert(&mut self, t: Table, k: &[u8], v: &[u8]) -> Result<()> {
        self.bytes += k.len() + v.len();
        self.rows.push((t, k.to_vec(), v.to_vec()));
        if self.bytes >= CHUNK_BYTES {
            self.write(false)?;
        }
        Ok(())
    }

    /// Writes the buffered rows in one transaction; only the last needs to be durable.
    fn write(&mut self, durable: bool) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| EtcdError::Internal(format!("backend: {e}")))?;
        }
        {
            let mut key = txn.open_table(KEY_TABLE)?;
            let mut lease = txn.open_table(LEASE_TABLE)?;
            let mut meta = txn.open_table(META_TABLE)?;
            for (t, k, v) in self.rows.drain(..) {
                match t {
                    Table::Key => key.insert(&k[..], &v[..])?,
                    Table::Lease => lease.insert(&k[..], &v[..])?,
                    Table::Meta => meta.insert(&k[..], &v[..])?,
                };
            }
        }
        txn.commit()?;
        self.bytes = 0;
        Ok(())
    }
}

/// Creates a new backend file at `path` (which must not exist) holding the rows `fill`
/// inserts, durable when this returns. If `fill` (or a write) fails, no file is left.
pub fn create_file<E: From<EtcdError>>(
    path: &Path,
    fill: impl FnOnce(&mut NewRows) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    if path.exists() {
        return Err(EtcdError::Internal(format!("mvcc: {} exists", path.display())).into());
    }
    let made = (|| {
        let mut rows = NewRows {
            db: create_db(path).map_err(EtcdError::from)?,
            rows: Vec::new(),
            bytes: 0,
        };
        fill(&mut rows)?;
        rows.write(true)?;
        Ok(())
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// A visitor of rows (key, value).
pub type RowFn<'f> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'f;

/// A closed backend file opened for reading its rows, after redb has checked every page.
pub struct RawFile {
    db: redb::Database,
}

impl RawFile {
    pub fn open(path: &Path) -> Result<RawFile> {
        crate::corrupt::open_checked(path)?;
        Ok(RawFile { db: open_db(path)? })
    }

    /// Calls `f` with every row of table `t`, in key order. A missing table has no rows.
    pub fn for_each_row(&self, t: Table, f: &mut RowFn<'_>) -> Result<()> {
        let txn = self.db.begin_read()?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let fill = |rows: &mut NewRows| -> Result<()> {
            rows.insert(Table::Key, b"k2", b"v2")?;
            rows.insert(Table::Key, b"k1", b"v1")?;
            rows.insert(Table::Meta, b"m", b"x")
        };
        create_file(&path, fill).unwrap();
        assert!(
            create_file(&path, |_| Ok::<_, EtcdError>(())).is_err(),
            "never overwrites"
        );
        let failed = dir.path().join("failed");
        let e = create_file(&failed, |_| Err(EtcdError::Internal("no".into())));
        assert!(e.is_err());
        assert!(!failed.exists(), "a failed fill leaves no file");
        let mut got = Vec::new();
        let file = RawFile::open(&path).unwrap();
        for t in [Table::Key, Table::Lease, Table::Meta] {
            file.for_each_row(t, &mut |k, v| {
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
