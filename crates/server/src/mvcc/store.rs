//! The MVCC store: redb tables plus the in-memory key index, and the read side of the API.
//!
//! Consistency between concurrent readers and the single writer (the apply loop):
//! - the writer updates the index as it writes, but a reader only looks at revisions <= the
//!   published current revision, which is advanced only after the redb commit that made them
//!   durable-or-visible; so a reader never sees a half-applied batch;
//! - compaction removes revisions from the index (under its write lock) before the redb
//!   transaction that deletes their rows commits, and a reader begins its redb read transaction
//!   while holding the index read lock; so any revision a reader finds in the index is in its redb
//!   snapshot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use oxcd_api::etcdserverpb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle,
};

use super::codec::{parse_kv, LeaseRecord};
use super::compaction::{CompactJob, Compactions};
use super::hash::Crc32c;
use super::key_index::{KeyIndexTree, KeyRange};
use super::range::{self, read_kv};
use super::revision::{is_tombstone, Revision};
use super::txn;
use crate::error::{EtcdError, Result};

pub use super::batch::WriteBatch;

/// Table and key names are etcd's bucket and key names, so a snapshot converts 1:1.
pub(super) const KEY_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
pub(super) const META_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
pub(super) const LEASE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lease");
pub(super) const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub(super) const META_TERM: &[u8] = b"term";
pub(super) const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub(super) const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";

pub struct MvccStore {
    /// Replaced as a whole when a raft snapshot is installed. Whoever begins a transaction keeps
    /// its `Arc` alive until the transaction ends (see [`MvccStore::db`]).
    pub(super) db: RwLock<Arc<Database>>,
    pub(super) path: PathBuf,
    pub(super) index: RwLock<KeyIndexTree>,
    /// Highest revision readers may see (published after its commit).
    pub(super) current_rev: AtomicI64,
    /// etcd's compactMainRev: -1 until the first compaction (which may be at revision 0).
    pub(super) compact_rev: AtomicI64,
    pub(super) consistent_index: AtomicU64,
    pub(super) consistent_term: AtomicU64,
    /// Held by the one live WriteBatch.
    pub(super) writer: Mutex<()>,
    /// Compactions whose rows are still being deleted (see `compaction`).
    pub(super) compactions: Arc<Compactions>,
    /// The backend file's size as of the last commit: the quota asks for it on every write, so
    /// it is measured once per commit, not per request.
    pub(super) file_size: AtomicU64,
    /// `keys_with_lease` as read by the last full load, with the revision it holds at: the
    /// lessor asks right after a load, which then needs no second pass over the table.
    leased_at_load: Mutex<Option<(i64, LeasedKeys)>>,
}

/// Live keys with the lease each is attached to, sorted by key.
pub type LeasedKeys = Vec<(Vec<u8>, i64)>;

/// Everything rebuilt from disk at open (and after a failed batch).
struct Loaded {
    index: KeyIndexTree,
    current_rev: i64,
    compact_rev: i64,
    /// finishedCompactRev: every row of compactions up to it is deleted.
    finished_compact: i64,
    /// A compaction scheduled but not finished: the index is compacted, the rows remain.
    pending: Option<CompactJob>,
    consistent_index: u64,
    term: u64,
    /// Live keys attached to a lease, read in the same pass (see `keys_with_lease`).
    leased: LeasedKeys,
}

/// Bytes of rows copied per write transaction by `snapshot_to`.
const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024 * 1024;

/// fsync of a directory, so a rename or a new file in it survives a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EtcdError::Internal(format!("mvcc: sync {}: {e}", dir.display())))
}

fn u64_meta(v: Option<&[u8]>) -> u64 {
    v.and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn rev_meta(v: Option<&[u8]>) -> i64 {
    v.and_then(Revision::from_bytes).map_or(-1, |r| r.main)
}

/// redb's page cache per open database. redb's default (1 GiB) kept the whole file of a
/// 1M-key member in the heap after the start-up scan (540 MB resident for a 539 MB file). Hot
/// pages (the tree's upper levels, recent keys) stay in this cache; the kernel's page cache
/// serves the rest without counting against the member's memory.
pub const CACHE_BYTES: usize = 64 << 20;

/// Creates (or opens) a backend file with oxcd's cache size.
pub fn create_db(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
}

/// Opens an existing backend file with oxcd's cache size.
pub fn open_db(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    redb::Builder::new().set_cache_size(CACHE_BYTES).open(path)
}

impl MvccStore {
    pub fn open(path: &Path) -> Result<MvccStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| EtcdError::Internal(format!("mvcc: create {}: {e}", dir.display())))?;
        }
        // A defragmentation cut short by a crash left its unfinished copy.
        super::defrag::remove_stale(path)?;
        let db = create_db(path)?;
        let txn = db.begin_write()?;
        for t in [KEY_TABLE, META_TABLE, LEASE_TABLE] {
            txn.open_table(t)?;
        }
        txn.commit()?;
        let l = Self::load(&db)?;
        let store = MvccStore {
            db: RwLock::new(Arc::new(db)),
            path: path.to_path_buf(),
            index: RwLock::new(l.index),
            current_rev: AtomicI64::new(l.current_rev),
            compact_rev: AtomicI64::new(l.compact_rev),
            consistent_index: AtomicU64::new(l.consistent_index),
            consistent_term: AtomicU64::new(l.term),
            writer: Mutex::new(()),
            compactions: Arc::new(Compactions::new(l.finished_compact)),
            file_size: AtomicU64::new(0),
            leased_at_load: Mutex::new(Some((l.current_rev, l.leased))),
        };
        store.refresh_file_size();
        // A compaction scheduled but not finished (a crash, or a snapshot, mid-way) goes on once
        // the compactor starts; its revisions are already out of the index.
        store.compactions.enqueue(l.pending);
        Ok(store)
    }

    /// Rebuilds the index by scanning the key table in revision order (etcd's `restore`).
    fn load(db: &Database) -> Result<Loaded> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META_TABLE)?;
        let get =
            |k: &[u8]| -> Result<Option<Vec<u8>>> { Ok(meta.get(k)?.map(|g| g.value().to_vec())) };
        let finished_compact = rev_meta(get(META_FINISHED_COMPACT)?.as_deref());
        let mut compact_rev = finished_compact;
        let scheduled_compact = rev_meta(get(META_SCHEDULED_COMPACT)?.as_deref());
        let consistent_index = u64_meta(get(META_CONSISTENT_INDEX)?.as_deref());
        let term = u64_meta(get(META_TERM)?.as_deref());

        drop(meta);
        drop(txn);
        let super::rebuild::Rebuilt {
            mut index,
            last_rev,
            leased,
        } = super::rebuild::rebuild(db)?;
        let mut current_rev = last_rev.max(1);
        // Compaction may have removed every row up to it: the revision is then at least that.
        current_rev = current_rev.max(compact_rev);
        // etcd's restore: a compaction scheduled but not finished is redone (index now, rows by
        // the compactor).
        let mut pending = None;
        if scheduled_compact > compact_rev && scheduled_compact <= current_rev {
            let mut removed = Vec::new();
            index.compact_chunk(scheduled_compact, None, usize::MAX, &mut removed);
            compact_rev = scheduled_compact;
            pending = Some(CompactJob::new(scheduled_compact, removed));
        }
        Ok(Loaded {
            index,
            current_rev,
            compact_rev,
            finished_compact,
            pending,
            consistent_index,
            term,
            leased,
        })
    }

    /// Replaces all in-memory state with what is on disk: after a batch was dropped without
    /// committing, its index changes must not survive.
    pub(super) fn reload(&self) -> Result<()> {
        let l = Self::load(&self.db())?;
        let mut idx = self.index.write();
        *idx = l.index;
        self.current_rev.store(l.current_rev, Ordering::Release);
        self.compact_rev.store(l.compact_rev, Ordering::Release);
        self.consistent_index
            .store(l.consistent_index, Ordering::Release);
        self.consistent_term.store(l.term, Ordering::Release);
        self.compactions.reset(l.finished_compact, l.pending);
        // The lessor is not rebuilt after a discarded batch: nobody would take the list, and
        // it could be large.
        *self.leased_at_load.lock() = None;
        Ok(())
    }

    /// The current database. A transaction must not outlive the `Arc` it was begun from: the
    /// database it reads may have been replaced by a snapshot, and the last `Arc` closes it.
    pub(super) fn db(&self) -> Arc<Database> {
        self.db.read().clone()
    }

    pub fn current_revision(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    /// The last compacted revision, 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_raw().max(0)
    }

    /// etcd's compactMainRev (-1 = never compacted): the bound its checks use.
    pub(super) fn compact_raw(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire)
    }

    pub fn consistent_index(&self) -> u64 {
        self.consistent_index.load(Ordering::Acquire)
    }

    pub fn consistent_term(&self) -> u64 {
        self.consistent_term.load(Ordering::Acquire)
    }

    /// Number of keys in the index (live or with history), for metrics.
    pub fn index_len(&self) -> usize {
        self.index.read().len()
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        crate::metrics::MVCC_RANGE.inc();
        let idx = self.index.read();
        let plan = range::plan(&idx, req, self.current_revision(), self.compact_raw())?;
        if !plan.needs_fetch() {
            drop(idx);
            return range::fetch::<ReadOnlyTable<&[u8], &[u8]>>(plan, None, req);
        }
        // Snapshot taken under the index lock (see the module comment), rows read without it.
        let db = self.db();
        let txn = db.begin_read()?;
        drop(idx);
        let table = txn.open_table(KEY_TABLE)?;
        range::fetch(plan, Some(&table), req)
    }

    /// A txn whose every op is a Range (`txn::is_read_only`), answered from one snapshot without
    /// going through the writer. Errors with Internal on a txn that writes.
    pub fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        let idx = self.index.read();
        let db = self.db();
        let txn = db.begin_read()?;
        let table = txn.open_table(KEY_TABLE)?;
        txn::read_only(
            &idx,
            &table,
            req,
            self.current_revision(),
            self.compact_raw(),
        )
    }

    pub fn write(&self) -> Result<WriteBatch<'_>> {
        WriteBatch::begin(self)
    }

    /// Watch catch-up: the events of revisions `from_rev..=to_rev` on keys in `[key, range_end)`,
    /// in revision order, at most `limit` revisions (0 = no limit) and never part of one.
    ///
    /// Compacted only if `from_rev < compact_revision()`, like etcd's watch sync: starting exactly
    /// at the compacted revision is allowed (its deletes are gone, as in etcd).
    pub fn events_between(
        &self,
        key: &[u8],
        range_end: &[u8],
        from_rev: i64,
        to_rev: i64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let (_db, txn, to_rev) = {
            let _idx = self.index.read();
            if from_rev < self.compact_raw() {
                return Err(EtcdError::Compacted);
            }
            let db = self.db();
            let txn = db.begin_read()?;
            (db, txn, to_rev.min(self.current_revision()))
        };
        let mut events = Vec::new();
        if from_rev > to_rev {
            return Ok(events);
        }
        let range = KeyRange::new(key, range_end);
        let table = txn.open_table(KEY_TABLE)?;
        let lo = Revision::new(from_rev.max(0), 0).to_bytes();
        let hi = Revision::new(to_rev + 1, 0).to_bytes();
        let (mut revs, mut last_main) = (0usize, -1i64);
        for row in table.range::<&[u8]>(&lo[..]..&hi[..])? {
            let (k, v) = row?;
            let k = k.value();
            let Some(rev) = Revision::from_bytes(k) else {
                continue;
            };
            // Rows start at the compacted revision at the lowest; a tombstone written exactly
            // there is kept by compaction for this very read (see `KeyIndex::compact`).
            let kv = parse_kv(v.value())?;
            if !range.contains(kv.key) {
                continue;
            }
            if rev.main != last_main {
                if limit != 0 && revs == limit {
                    break;
                }
                revs += 1;
                last_main = rev.main;
            }
            events.push(if is_tombstone(k) {
                Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue {
                        key: kv.key.to_vec(),
                        mod_revision: rev.main,
                        ..Default::default()
                    }),
                    prev_kv: None,
                }
            } else {
                Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv.to_kv(false)),
                    prev_kv: None,
                }
            });
        }
        Ok(events)
    }

    /// The key's live value as of `rev` (a watch event's prev_kv reads at mod_revision - 1).
    pub fn kv_at(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        let idx = self.index.read();
        let at = match range::check_rev(rev, self.current_revision(), self.compact_raw()) {
            Ok(at) => at,
            Err(EtcdError::Compacted) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(h) = idx.get(key, at) else {
            return Ok(None);
        };
        let db = self.db();
        let txn = db.begin_read()?;
        drop(idx);
        let table = txn.open_table(KEY_TABLE)?;
        read_kv(&table, h.rev, false).map(Some)
    }

    /// Persisted leases as (id, ttl).
    pub fn leases(&self) -> Result<Vec<(i64, i64)>> {
        let db = self.db();
        let txn = db.begin_read()?;
        let table = txn.open_table(LEASE_TABLE)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            let l = LeaseRecord::decode(v.value())
                .map_err(|e| EtcdError::Internal(format!("mvcc: corrupt lease row: {e}")))?;
            out.push((l.id, l.ttl));
        }
        Ok(out)
    }

    /// Live keys (at the current revision) attached to a lease, for rebuilding the lessor.
    pub fn keys_with_lease(&self) -> Result<LeasedKeys> {
        let idx = self.index.read();
        let at = self.current_revision();
        // Every write moves the revision: at the loaded one, the load's list is current.
        if let Some((rev, leased)) = self.leased_at_load.lock().take() {
            if rev == at {
                return Ok(leased);
            }
        }
        let mut revs = Vec::with_capacity(idx.len());
        idx.visit(KeyRange::new(b"\0", b"\0"), |_, ki| {
            if let Some(h) = ki.get(at) {
                revs.push(h.rev);
            }
            true
        });
        let db = self.db();
        let txn = db.begin_read()?;
        drop(idx);
        // Revision order reads the table's pages sequentially.
        revs.sort_unstable();
        let table = txn.open_table(KEY_TABLE)?;
        let mut out = Vec::new();
        for rev in revs {
            range::with_row(&table, rev, |kv| {
                if kv.lease != 0 {
                    out.push((kv.key.to_vec(), kv.lease));
                }
            })?;
        }
        out.sort_unstable();
        Ok(out)
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let db = self.db();
        let txn = db.begin_read()?;
        let table = txn.open_table(META_TABLE)?;
        Ok(table.get(key.as_bytes())?.map(|g| g.value().to_vec()))
    }

    /// Writes a consistent point-in-time copy of the whole database (every table) into a new
    /// redb file at `path`, replacing any file there, and makes it durable. Returns the raft
    /// index and term the copy holds (its consistent index): the copy is exactly the state after
    /// applying the log up to that index.
    ///
    /// The copy is logical (row by row, so it is compact) and reads one redb snapshot; the writer
    /// is held up only while that read transaction begins.
    pub fn snapshot_to(&self, path: &Path) -> Result<(u64, u64)> {
        let start = std::time::Instant::now();
        let r = self.copy_to(path);
        crate::metrics::BACKEND_SNAPSHOT.observe(start.elapsed().as_secs_f64());
        r
    }

    fn copy_to(&self, path: &Path) -> Result<(u64, u64)> {
        let db = self.db();
        let src = {
            // Between batches: a batch may publish part of its rows early (`flush`, for a
            // compaction) before it records its consistent index.
            let _w = self.writer.lock();
            db.begin_read()?
        };
        let io = |what: &str, e: std::io::Error| {
            EtcdError::Internal(format!("mvcc: {what} {}: {e}", path.display()))
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", e)),
        }
        if src.list_multimap_tables()?.next().is_some() {
            return Err(EtcdError::Internal(
                "mvcc: snapshot of multimap tables is not supported".into(),
            ));
        }
        let names: Vec<String> = src.list_tables()?.map(|t| t.name().to_string()).collect();
        let dst = create_db(path)?;
        let mut txn = dst.begin_write()?;
        for name in &names {
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
            let from = src.open_table(def)?;
            let mut rows = from.iter()?;
            loop {
                // Rows go in chunks of write transactions, so a large database is not held in
                // one transaction's memory; only the last commit needs to be durable.
                let mut chunk = 0usize;
                let mut more = false;
                {
                    let mut to = txn.open_table(def)?;
                    for row in rows.by_ref() {
                        let (k, v) = row?;
                        to.insert(k.value(), v.value())?;
                        chunk += k.value().len() + v.value().len();
                        if chunk >= SNAPSHOT_CHUNK_BYTES {
                            more = true;
                            break;
                        }
                    }
                }
                if !more {
                    break;
                }
                txn.set_durability(Durability::None)
                    .map_err(|e| EtcdError::Internal(format!("backend: {e}")))?;
                txn.commit()?;
                txn = dst.begin_write()?;
            }
        }
        let meta = src.open_table(META_TABLE)?;
        let index = u64_meta(meta.get(META_CONSISTENT_INDEX)?.as_ref().map(|g| g.value()));
        let term = u64_meta(meta.get(META_TERM)?.as_ref().map(|g| g.value()));
        txn.commit()?;
        drop(dst);
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("sync", e))?;
        Ok((index, term))
    }

    /// Rewrites meta row `key` of the (closed) database file at `path`: `f` gets the current
    /// value and returns the new one. For member-local values in a received snapshot, before it
    /// is installed. Returns the consistent index and term the file holds.
    pub fn update_meta_in_file(
        path: &Path,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> Result<Vec<u8>>,
    ) -> Result<(u64, u64)> {
        let db = open_db(path)?;
        let txn = db.begin_write()?;
        let consistent = {
            let mut meta = txn.open_table(META_TABLE)?;
            let old = meta.get(key.as_bytes())?.map(|g| g.value().to_vec());
            let new = f(old.as_deref())?;
            meta.insert(key.as_bytes(), &new[..])?;
            let index = u64_meta(meta.get(META_CONSISTENT_INDEX)?.as_ref().map(|g| g.value()));
            let term = u64_meta(meta.get(META_TERM)?.as_ref().map(|g| g.value()));
            (index, term)
        };
        txn.commit()?;
        Ok(consistent)
    }

    /// Replaces the whole store with the database file at `path` (a snapshot made by
    /// [`MvccStore::snapshot_to`], durable on disk), which is moved over this store's file: the
    /// rename is the commit point, a crash leaves either the old or the new database. Rebuilds the
    /// key index, revisions and consistent index from it. Readers see the old state or the new,
    /// never a mix; transactions already begun finish on the old database.
    pub fn restore_from(&self, path: &Path) -> Result<()> {
        let db = open_db(path)?;
        let txn = db.begin_write()?;
        for t in [KEY_TABLE, META_TABLE, LEASE_TABLE] {
            txn.open_table(t)?;
        }
        txn.commit()?;
        let l = Self::load(&db)?;
        let _w = self.writer.lock();
        crate::failpoints::crash_point!("snapshot-install-before-rename");
        std::fs::rename(path, &self.path).map_err(|e| {
            EtcdError::Internal(format!(
                "mvcc: rename {} to {}: {e}",
                path.display(),
                self.path.display()
            ))
        })?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        crate::failpoints::crash_point!("snapshot-install-after-rename");
        let old = {
            let mut idx = self.index.write();
            let old = std::mem::replace(&mut *self.db.write(), Arc::new(db));
            *idx = l.index;
            self.current_rev.store(l.current_rev, Ordering::Release);
            self.compact_rev.store(l.compact_rev, Ordering::Release);
            self.consistent_index
                .store(l.consistent_index, Ordering::Release);
            self.consistent_term.store(l.term, Ordering::Release);
            // Jobs of the old database are moot; the snapshot's own unfinished one goes on.
            self.compactions.reset(l.finished_compact, l.pending);
            *self.leased_at_load.lock() = Some((l.current_rev, l.leased));
            self.refresh_file_size();
            old
        };
        // Closed here, or by the last reader still in a transaction on it.
        drop(old);
        Ok(())
    }

    pub fn db_size(&self) -> u64 {
        self.file_size.load(Ordering::Acquire)
    }

    /// Measures the backend file again; called after every commit and file swap.
    pub(super) fn refresh_file_size(&self) {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        self.file_size.store(size, Ordering::Release);
    }

    /// Bytes in allocated pages. redb reports page usage only from a write transaction, so this
    /// waits for the current batch (if any) and opens an empty one.
    pub fn db_size_in_use(&self) -> u64 {
        let size = self.db_size();
        let _w = self.writer.lock();
        let db = self.db();
        let Ok(txn) = db.begin_write() else {
            return size;
        };
        let used = txn
            .stats()
            .map_or(size, |s| s.allocated_pages() * s.page_size() as u64);
        let _ = txn.abort();
        used.min(size)
    }

    /// etcd 3.4's HashKV: CRC-32C (Castagnoli) over "key" and every key table row with main
    /// revision <= rev (0 = current), skipping rows at or below the compacted revision that a
    /// compaction at `rev` would drop. Returns (hash, compact_revision), the latter -1 if never
    /// compacted, as etcd reports it.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64)> {
        let idx = self.index.read();
        let (cur, compact) = (self.current_revision(), self.compact_raw());
        if rev > 0 && rev <= compact {
            return Err(EtcdError::Compacted);
        }
        if rev > cur {
            return Err(EtcdError::FutureRev);
        }
        let rev = if rev == 0 { cur } else { rev };
        // Only rows <= compact are ever checked against `keep`, so only those are stored; the
        // count keeps etcd's "an empty keep set skips nothing" rule exact.
        let mut keep = std::collections::HashSet::new();
        let mut keep_len = 0usize;
        idx.keep(rev, |r| {
            keep_len += 1;
            if r.main <= compact {
                keep.insert(r);
            }
        });
        // With an empty keep set etcd hashes every row still in the table, so rows a compaction
        // has yet to delete would make members that are at different points of their deletion
        // disagree: leave them out, as they are once the compaction has finished. Read before
        // the snapshot: a job gone from the queue has committed its deletes.
        let pending = if keep_len == 0 {
            self.compactions.pending_revs()
        } else {
            Default::default()
        };
        let db = self.db();
        let txn = db.begin_read()?;
        drop(idx);
        let table = txn.open_table(KEY_TABLE)?;
        let mut h = Crc32c::new();
        h.update(b"key");
        let hi = Revision::new(rev + 1, 0).to_bytes();
        for row in table.range::<&[u8]>(..&hi[..])? {
            let (k, v) = row?;
            let k = k.value();
            let Some(r) = Revision::from_bytes(k) else {
                continue;
            };
            if r.main <= compact && keep_len > 0 && !keep.contains(&r) {
                continue;
            }
            if r.main <= compact && pending.contains(&r) {
                continue;
            }
            // The tombstone compaction keeps at its own revision (for watches from there) is a
            // row etcd has deleted: leave it out, as etcd's hash does.
            if r.main <= compact && is_tombstone(k) {
                continue;
            }
            h.update(k);
            h.update(v.value());
        }
        Ok((h.finish(), compact))
    }
}

/// What `snapshot status` reports about a backend file besides its size (etcd's `snapshot.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStats {
    /// CRC-32C over every table's name followed by its rows' keys and values, tables in name
    /// order, rows in key order.
    pub hash: u32,
    /// The main revision of the last row of the key table (0 if it has none).
    pub revision: i64,
    /// Rows over all tables.
    pub total_keys: u64,
}

impl MvccStore {
    /// Reads the (closed) database file at `path` whole, for `snapshot status`. Opening may let
    /// redb repair a file that was not closed cleanly (a copy of a dead member's backend), so
    /// call it on a copy when the original must stay untouched.
    pub fn file_stats(path: &Path) -> Result<FileStats> {
        crate::corrupt::open_checked(path)?;
        let db = open_db(path)?;
        let txn = db.begin_read()?;
        if txn.list_multimap_tables()?.next().is_some() {
            return Err(EtcdError::Internal(
                "mvcc: multimap tables are not part of a backend".into(),
            ));
        }
        let mut names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
        names.sort_unstable();
        let mut h = Crc32c::new();
        let (mut revision, mut total_keys) = (0i64, 0u64);
        for name in &names {
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
            let table = txn.open_table(def)?;
            h.update(name.as_bytes());
            let is_key = def.name() == KEY_TABLE.name();
            for row in table.iter()? {
                let (k, v) = row?;
                h.update(k.value());
                h.update(v.value());
                if is_key {
                    if let Some(r) = Revision::from_bytes(k.value()) {
                        revision = r.main;
                    }
                }
                total_keys += 1;
            }
        }
        Ok(FileStats {
            hash: h.finish(),
            revision,
            total_keys,
        })
    }

    /// Makes the (closed) database file at `path` the backend of a member of a new cluster, as
    /// `snapshot restore` does: meta row `key` becomes `value` (the new membership), the
    /// consistent index and term become `(index, term)` (where the new cluster's bootstrapped
    /// log starts), and the three tables exist. Everything else (keys, revisions, compaction,
    /// leases) stays. Durable when this returns. Returns the last compacted revision the file
    /// holds, if it was ever compacted.
    pub fn reset_file_for_restore(
        path: &Path,
        key: &str,
        value: &[u8],
        (index, term): (u64, u64),
    ) -> Result<Option<i64>> {
        crate::corrupt::open_checked(path)?;
        let db = open_db(path)?;
        let txn = db.begin_write()?;
        for t in [KEY_TABLE, LEASE_TABLE] {
            txn.open_table(t)?;
        }
        let compacted = {
            let mut meta = txn.open_table(META_TABLE)?;
            meta.insert(key.as_bytes(), value)?;
            meta.insert(META_CONSISTENT_INDEX, &index.to_be_bytes()[..])?;
            meta.insert(META_TERM, &term.to_be_bytes()[..])?;
            let rev = rev_meta(meta.get(META_FINISHED_COMPACT)?.as_ref().map(|g| g.value()));
            (rev >= 0).then_some(rev)
        };
        txn.commit()?;
        drop(db);
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| EtcdError::Internal(format!("mvcc: sync {}: {e}", path.display())))?;
        Ok(compacted)
    }
}

#[cfg(test)]
mod snapshot_tests {
    use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    use super::MvccStore;

    fn put(s: &MvccStore, k: &str, v: &str, lease: i64) {
        let mut b = s.write().unwrap();
        b.put(
            &PutRequest {
                key: k.into(),
                value: v.into(),
                lease,
                ..Default::default()
            },
            &|_| true,
        )
        .unwrap();
        b.commit(false).unwrap();
    }

    fn all(s: &MvccStore, rev: i64) -> Vec<(Vec<u8>, Vec<u8>, i64, i64)> {
        let r = s
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                revision: rev,
                ..Default::default()
            })
            .unwrap();
        r.kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision, kv.lease))
            .collect()
    }

    #[test]
    fn snapshot_to_and_restore_from_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = MvccStore::open(&dir.path().join("a/member/snap/db")).unwrap();
        for i in 0..50 {
            put(&a, &format!("k{i:02}"), &format!("v{i}"), 0);
        }
        put(&a, "leased", "x", 7);
        {
            let mut b = a.write().unwrap();
            b.put_lease(7, 60).unwrap();
            b.delete_range(&DeleteRangeRequest {
                key: b"k00".to_vec(),
                ..Default::default()
            })
            .unwrap();
            b.compact(20).unwrap();
            b.meta_put("oxcd_cluster", b"members").unwrap();
            b.set_consistent_index(123, 4);
            // Not durable: a snapshot still sees every commit.
            b.commit(false).unwrap();
        }
        let snap = dir.path().join("snap.tmp");
        let rev = a.current_revision();
        assert_eq!(rev, 53);
        assert_eq!(a.snapshot_to(&snap).unwrap(), (123, 4));
        // Writes after the snapshot are not in it.
        put(&a, "later", "y", 0);

        let b = MvccStore::open(&dir.path().join("b/member/snap/db")).unwrap();
        put(&b, "stale", "z", 0);
        let hits = MvccStore::open(&dir.path().join("b/member/snap/db"));
        assert!(hits.is_err(), "a second open of the same file must fail");
        b.restore_from(&snap).unwrap();
        assert!(!snap.exists(), "the snapshot file is moved into place");
        assert_eq!(b.consistent_index(), 123);
        assert_eq!(b.consistent_term(), 4);
        assert_eq!(b.current_revision(), rev);
        assert_eq!(b.compact_revision(), 20);
        assert_eq!(b.leases().unwrap(), vec![(7, 60)]);
        assert_eq!(b.keys_with_lease().unwrap(), vec![(b"leased".to_vec(), 7)]);
        assert_eq!(b.meta_get("oxcd_cluster").unwrap().unwrap(), b"members");
        assert_eq!(all(&b, 0), all(&a, rev));
        assert_eq!(all(&b, 30), all(&a, 30));
        assert_eq!(b.hash_kv(rev).unwrap(), a.hash_kv(rev).unwrap());
        assert!(all(&b, 0).iter().all(|kv| kv.0 != b"stale"));

        // Writes go on from the snapshot, and a reopen finds the restored file.
        put(&b, "after", "w", 0);
        assert_eq!(b.current_revision(), rev + 1);
        let path = dir.path().join("b/member/snap/db");
        drop(b);
        let b = MvccStore::open(&path).unwrap();
        assert_eq!(b.consistent_index(), 123);
        assert_eq!(b.current_revision(), rev + 1);
        assert_eq!(all(&b, 0).len(), 51);

        // Member-local meta rows are rewritten in a snapshot file before it is installed.
        let snap2 = dir.path().join("snap2.tmp");
        a.snapshot_to(&snap2).unwrap();
        let held = MvccStore::update_meta_in_file(&snap2, "oxcd_cluster", |old| {
            assert_eq!(old, Some(&b"members"[..]));
            Ok(b"mine".to_vec())
        })
        .unwrap();
        assert_eq!(held, (123, 4));
        b.restore_from(&snap2).unwrap();
        assert_eq!(b.meta_get("oxcd_cluster").unwrap().unwrap(), b"mine");
        assert_eq!(b.current_revision(), rev + 1);
        assert!(all(&b, 0).iter().any(|kv| kv.0 == b"later"));
    }
}
