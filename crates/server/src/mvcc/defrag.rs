//! Defragmentation: the backend is rewritten into a fresh file that holds only live data, which
//! then replaces the old one, while the member keeps serving reads and writes.
//!
//! redb, like bbolt, never gives freed pages back to the file system; the file keeps the size of
//! its high-water mark. A logical copy (rows inserted in key order into a new file) packs every
//! B-tree, so the copy's size is about the bytes in use.
//!
//! Online ([`MvccStore::defragment`]), in three steps:
//! 1. **copy**: one read snapshot of the live database is copied table by table into
//!    `<db>.defrag`; the apply loop goes on writing to the live database meanwhile;
//! 2. **catch up**, without any lock: a newer snapshot is merged into the copy. Key table rows are
//!    immutable and keyed by revision, and every new row has a revision above every row that
//!    existed before, so the new rows are exactly those after the copy's last key. Rows leave the
//!    key table only through compaction, all at or below the compacted revision: when the row
//!    counts differ (O(1) in redb), that part is diffed. The other tables (meta, lease) are small
//!    and diffed whole. Repeated until a round finds little to do and no compaction is deleting
//!    rows in the background (scheduledCompactRev ahead of finishedCompactRev);
//! 3. **swap**, holding the writer lock (the apply loop waits; reads go on): a last round makes
//!    the copy equal to the live database, it is committed durably and fsynced, renamed over the
//!    database file (the commit point) and the directory fsynced; the store then switches to the
//!    copy (already open: no reopen, no index rebuild, since the contents are the same). Readers
//!    still in a transaction on the old file finish on it; it is closed by the last of them.
//!
//! redb grows a file below 4 GiB by doubling it, so the copy may end with up to half its pages
//! free. If nothing was written since the last round (an idle member, or one refusing writes
//! for NOSPACE), the swap also trims that tail (`Database::compact` on the copy, which nobody
//! else uses yet); under writes it would only hold them up, since the next growth doubles again.
//!
//! The apply loop (and the compactor) are held up only for step 3: the writes of one short round,
//! the fsyncs and the rename. If rows were deleted since the last round, the swap lets go and
//! another round runs first; only after a few such tries is the diff done under the lock.
//!
//! Crash safety: before the rename the database file is untouched, and the unfinished copy is
//! deleted at the next open or defrag; after it, the file is the copy, durable and consistent, at
//! a consistent index at least as recent as the old file's durable one (the WAL holds the rest).
//!
//! Offline ([`defrag_file`], `oxutl defrag`): the same copy of a closed file, then the rename.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};

use super::revision::Revision;
use super::store::{
    MvccStore, KEY_TABLE, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TABLE,
};
use crate::error::{EtcdError, Result};

type Def<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

/// Bytes of rows per write transaction while copying. Each is made durable: fsyncs of a few MB
/// at a time share the disk with the WAL's fsyncs, where one fsync of the whole copy would
/// hold them up for as long as it takes to write it all.
const CHUNK_BYTES: usize = 8 << 20;

/// A catch-up round that changed fewer rows than this is followed by the swap.
const SMALL_ROUND: u64 = 2_000;

/// Catch-up rounds without the lock before the swap is tried anyway.
const MAX_ROUNDS: usize = 16;

/// Swaps put off because rows were deleted just before (a compaction); after that the
/// deleted rows are found under the lock.
const MAX_SWAP_TRIES: usize = 3;

/// How long the swap waits for a compaction deleting rows in the background to finish.
const MAX_COMPACTION_WAIT: Duration = Duration::from_secs(60);
const COMPACTION_POLL: Duration = Duration::from_millis(20);

/// Whole defragmentations restarted because a raft snapshot replaced the database meanwhile.
const MAX_RESTARTS: usize = 3;

/// One defragmentation at a time per process (a second caller waits, as in etcd).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What one defragmentation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragReport {
    /// File size before and after.
    pub size_before: u64,
    pub size_after: u64,
    /// Catch-up rounds run while serving, and rows they changed.
    pub rounds: usize,
    /// How long the apply loop was held (the writer lock) for the swap.
    pub writes_held: Duration,
    pub took: Duration,
}

/// Where the copy is built: next to the database, so the rename stays in one file system.
pub fn temp_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".defrag");
    db.with_file_name(name)
}

/// Deletes a copy left by a defragmentation that did not finish (a crash).
pub fn remove_stale(db: &Path) -> Result<()> {
    let tmp = temp_path(db);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {
            tracing::info!(path = %tmp.display(), "removed an unfinished defragmentation copy");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &tmp, e)),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> EtcdError {
    EtcdError::Internal(format!("defrag: {what} {}: {e}", path.display()))
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("sync", path, e))
}

fn sync_dir(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => sync_file(dir),
        None => sync_file(Path::new(".")),
    }
}

fn commit(mut txn: WriteTransaction, durable: bool) -> Result<()> {
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })
    .map_err(|e| EtcdError::Internal(format!("backend: {e}")))?;
    txn.commit()?;
    Ok(())
}

fn table_names(src: &ReadTransaction) -> Result<Vec<String>> {
    if src.list_multimap_tables()?.next().is_some() {
        return Err(EtcdError::Internal(
            "defrag: multimap tables are not part of a backend".into(),
        ));
    }
    Ok(src.list_tables()?.map(|t| t.name().to_string()).collect())
}

/// Inserts the rows of table `name` after `after` (all if None) into `dst`, in durable write
/// transactions of about [`CHUNK_BYTES`]. Creates the table
/// even if it has no rows. Returns the number of rows.
fn copy_rows(
    src: &ReadTransaction,
    dst: &Database,
    name: &str,
    after: Option<&[u8]>,
) -> Result<u64> {
    let def: Def = TableDefinition::new(name);
    let from = src.open_table(def)?;
    let lo = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut rows = from.range::<&[u8]>((lo, Bound::Unbounded))?;
    let mut n = 0u64;
    loop {
        let txn = dst.begin_write()?;
        let mut more = false;
        {
            let mut to = txn.open_table(def)?;
            let mut bytes = 0usize;
            for row in rows.by_ref() {
                let (k, v) = row?;
                to.insert(k.value(), v.value())?;
                n += 1;
                bytes += k.value().len() + v.value().len();
                if bytes >= CHUNK_BYTES {
                    more = true;
                    break;
                }
            }
        }
        commit(txn, true)?;
        if !more {
            return Ok(n);
        }
    }
}

/// Makes the rows of table `name` within `range` in `txn` equal to those in `src`: a merge of
/// the two sorted row streams. Values are compared only if `values` (key table rows never
/// change). Returns the rows inserted, replaced or removed.
fn diff_rows(
    src: &ReadTransaction,
    txn: &WriteTransaction,
    name: &str,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    values: bool,
) -> Result<u64> {
    let def: Def = TableDefinition::new(name);
    let from = src.open_table(def)?;
    let mut to = txn.open_table(def)?;
    let mut put: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut del: Vec<Vec<u8>> = Vec::new();
    {
        let mut a = from.range::<&[u8]>(range)?;
        let mut b = to.range::<&[u8]>(range)?;
        let mut x = a.next().transpose()?;
        let mut y = b.next().transpose()?;
        loop {
            let order = match (&x, &y) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.value().cmp(kb.value()),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let (k, v) = x.as_ref().expect("Less only with a source row");
                    put.push((k.value().to_vec(), v.value().to_vec()));
                    x = a.next().transpose()?;
                }
                std::cmp::Ordering::Greater => {
                    let (k, _) = y.as_ref().expect("Greater only with a copy row");
                    del.push(k.value().to_vec());
                    y = b.next().transpose()?;
                }
                std::cmp::Ordering::Equal => {
                    let ((k, va), (_, vb)) = (x.as_ref().unwrap(), y.as_ref().unwrap());
                    if values && va.value() != vb.value() {
                        put.push((k.value().to_vec(), va.value().to_vec()));
                    }
                    x = a.next().transpose()?;
                    y = b.next().transpose()?;
                }
            }
        }
    }
    let n = (put.len() + del.len()) as u64;
    for k in del {
        to.remove(&k[..])?;
    }
    for (k, v) in put {
        to.insert(&k[..], &v[..])?;
    }
    Ok(n)
}

/// What the copy holds of the key table, to find what changed since.
#[derive(Default)]
struct Mark {
    /// The copy's last key table row key.
    last_key: Option<Vec<u8>>,
}

impl Mark {
    fn of(src: &ReadTransaction) -> Result<Mark> {
        let keys = src.open_table(KEY_TABLE)?;
        let last_key = keys.last()?.map(|(k, _)| k.value().to_vec());
        Ok(Mark { last_key })
    }
}

/// A compaction row of the meta table as a revision (-1 if absent).
fn compact_meta(src: &ReadTransaction, key: &[u8]) -> Result<i64> {
    let meta = src.open_table(META_TABLE)?;
    let v = meta.get(key)?;
    Ok(v.as_ref()
        .and_then(|g| Revision::from_bytes(g.value()))
        .map_or(-1, |r| r.main))
}

/// Whether a compaction is scheduled whose rows are still being deleted (in the background).
fn compacting(src: &ReadTransaction) -> Result<bool> {
    Ok(compact_meta(src, META_SCHEDULED_COMPACT)? > compact_meta(src, META_FINISHED_COMPACT)?)
}

/// Copies every table of `src` into the empty database `dst`, none of it durable yet.
fn copy_all(src: &ReadTransaction, dst: &Database) -> Result<u64> {
    let mut n = 0;
    for name in table_names(src)? {
        n += copy_rows(src, dst, &name, None)?;
    }
    Ok(n)
}

/// Brings the copy `dst` (which matches `mark`) level with the snapshot `src` in one write
/// transaction. Returns the rows changed, or None (and changes nothing) if rows were deleted
/// from the key table since and `diff_deleted` is false: finding them means walking every row
/// up to the compacted revision.
fn catch_up(
    src: &ReadTransaction,
    dst: &Database,
    mark: &mut Mark,
    durable: bool,
    diff_deleted: bool,
) -> Result<Option<u64>> {
    let names = table_names(src)?;
    let txn = dst.begin_write()?;
    let mut changed = 0u64;
    let mut last_key = mark.last_key.clone();
    let gone: Vec<String> = txn
        .list_tables()?
        .map(|t| t.name().to_string())
        .filter(|n| !names.contains(n))
        .collect();
    for name in gone {
        txn.delete_table(Def::new(&name))?;
        changed += 1;
    }
    for name in &names {
        if name.as_str() != KEY_TABLE.name() {
            changed += diff_rows(src, &txn, name, (Bound::Unbounded, Bound::Unbounded), true)?;
            continue;
        }
        // New revisions: after the last row copied.
        let from = src.open_table(KEY_TABLE)?;
        let copied_len = {
            let mut to = txn.open_table(KEY_TABLE)?;
            let lo = last_key
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Excluded);
            for row in from.range::<&[u8]>((lo, Bound::Unbounded))? {
                let (k, v) = row?;
                to.insert(k.value(), v.value())?;
                changed += 1;
            }
            to.len()?
        };
        last_key = from.last()?.map(|(k, _)| k.value().to_vec());
        if copied_len == from.len()? {
            continue;
        }
        // Rows were deleted: a compaction, all at or below its revision.
        if !diff_deleted {
            txn.abort()?;
            return Ok(None);
        }
        let rev = compact_meta(src, META_SCHEDULED_COMPACT)?
            .max(compact_meta(src, META_FINISHED_COMPACT)?);
        let hi = Revision::new(rev.max(0) + 1, 0).to_bytes();
        changed += diff_rows(
            src,
            &txn,
            KEY_TABLE.name(),
            (Bound::Unbounded, Bound::Excluded(&hi[..])),
            false,
        )?;
        if txn.open_table(KEY_TABLE)?.len()? != from.len()? {
            // Never expected (rows leave only through compaction); stay correct anyway.
            tracing::warn!("defrag: key table rows changed above the compacted revision");
            changed += diff_rows(
                src,
                &txn,
                KEY_TABLE.name(),
                (Bound::Unbounded, Bound::Unbounded),
                true,
            )?;
        }
    }
    commit(txn, durable)?;
    mark.last_key = last_key;
    Ok(Some(changed))
}

/// Why an attempt did not finish.
enum Stop {
    /// The database was replaced (a raft snapshot was installed): start again from it.
    Replaced,
    Failed(EtcdError),
}

impl From<EtcdError> for Stop {
    fn from(e: EtcdError) -> Stop {
        Stop::Failed(e)
    }
}

impl From<redb::Error> for Stop {
    fn from(e: redb::Error) -> Stop {
        Stop::Failed(e.into())
    }
}

impl MvccStore {
    /// Defragments the backend while the store keeps serving (see the module comment). Returns
    /// once the new file is in place and durable.
    pub fn defragment(&self) -> Result<DefragReport> {
        let _one = ONE_AT_A_TIME.lock();
        let start = Instant::now();
        let size_before = self.db_size();
        let tmp = temp_path(&self.path);
        for _ in 0..MAX_RESTARTS {
            remove_stale(&self.path)?;
            match self.defrag_once(&tmp) {
                Ok((rounds, writes_held)) => {
                    crate::metrics::DEFRAG.observe(start.elapsed().as_secs_f64());
                    return Ok(DefragReport {
                        size_before,
                        size_after: self.db_size(),
                        rounds,
                        writes_held,
                        took: start.elapsed(),
                    });
                }
                Err(Stop::Replaced) => {
                    tracing::info!("defrag: the backend was replaced by a snapshot; starting again")
                }
                Err(Stop::Failed(e)) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        let _ = std::fs::remove_file(&tmp);
        Err(EtcdError::Internal(
            "defrag: the backend kept being replaced by snapshots".into(),
        ))
    }

    /// A read snapshot of `live` taken between batches, or `Replaced` if `live` is no longer
    /// the store's database.
    fn snapshot_of(&self, live: &Arc<Database>) -> std::result::Result<ReadTransaction, Stop> {
        let _w = self.writer.lock();
        if !Arc::ptr_eq(&self.db(), live) {
            return Err(Stop::Replaced);
        }
        Ok(live.begin_read().map_err(EtcdError::from)?)
    }

    fn defrag_once(&self, tmp: &Path) -> std::result::Result<(usize, Duration), Stop> {
        let live = self.db();
        let mut dst = super::store::create_db(tmp).map_err(EtcdError::from)?;
        crate::failpoints::crash_point!("defrag-before-copy");
        let mut mark = {
            let src = self.snapshot_of(&live)?;
            copy_all(&src, &dst)?;
            Mark::of(&src)?
        };
        let (mut rounds, mut tries) = (0, 0);
        let waiting_since = Instant::now();
        loop {
            // Catch up while serving, until a round finds little to do and no compaction is
            // deleting rows in the background (the swap would have to diff what it deleted).
            let mut in_round = 0;
            loop {
                let src = self.snapshot_of(&live)?;
                // Durable: the swap then only has to write and fsync the last round's rows.
                let changed = catch_up(&src, &dst, &mut mark, true, true)?.unwrap_or(0);
                let busy = compacting(&src)? && waiting_since.elapsed() < MAX_COMPACTION_WAIT;
                drop(src);
                rounds += 1;
                in_round += 1;
                if busy {
                    std::thread::sleep(COMPACTION_POLL);
                } else if changed < SMALL_ROUND || in_round >= MAX_ROUNDS {
                    break;
                }
            }
            let w = self.writer.lock();
            let held = Instant::now();
            if !Arc::ptr_eq(&self.db(), &live) {
                return Err(Stop::Replaced);
            }
            let src = live.begin_read().map_err(EtcdError::from)?;
            tries += 1;
            // Rows deleted since the last round are found only by walking the compacted part
            // of the key table: do that without the lock, unless it keeps happening.
            let diff_deleted = tries > MAX_SWAP_TRIES;
            let Some(changed) = catch_up(&src, &dst, &mut mark, true, diff_deleted)? else {
                drop(src);
                drop(w);
                continue;
            };
            drop(src);
            if changed == 0 {
                // Nothing was written since the last round: the member is idle (say, writes
                // refused for NOSPACE), so trimming the copy's free tail is worth the wait and
                // holds nobody up. Under writes it is not done: redb doubles a file below 4 GiB
                // when it runs out of free pages, so the first write would undo it.
                if let Err(e) = dst.compact() {
                    tracing::warn!(error = %e, "defrag: trimming the copy failed");
                }
            }
            sync_file(tmp)?;
            crate::failpoints::crash_point!("defrag-before-rename");
            std::fs::rename(tmp, &self.path).map_err(|e| io_err("rename", tmp, e))?;
            // From here the file at the path is the copy: the store must use it, whatever
            // happens next.
            let old = {
                let _idx = self.index.write();
                let old = std::mem::replace(&mut *self.db.write(), Arc::new(dst));
                self.refresh_file_size();
                old
            };
            // Before any write reaches the copy (the WAL is compacted behind what it holds),
            // the rename must be durable.
            let synced = sync_dir(&self.path).or_else(|_| sync_dir(&self.path));
            let writes_held = held.elapsed();
            drop(w);
            drop(live);
            // Closed here, or by the last reader still in a transaction on it.
            drop(old);
            synced?;
            crate::failpoints::crash_point!("defrag-after-rename");
            return Ok((rounds, writes_held));
        }
    }
}

/// Defragments the closed database file at `path` (`oxutl defrag`): a packed copy is written
/// next to it, made durable and renamed over it. Returns the sizes before and after.
pub fn defrag_file(path: &Path) -> Result<(u64, u64)> {
    let before = std::fs::metadata(path)
        .map_err(|e| io_err("open", path, e))?
        .len();
    remove_stale(path)?;
    let tmp = temp_path(path);
    let r = (|| -> Result<()> {
        let src_db = super::store::open_db(path)?;
        let src = src_db.begin_read()?;
        let mut dst = super::store::create_db(&tmp)?;
        copy_all(&src, &dst)?;
        // An empty durable commit makes the whole copy durable.
        commit(dst.begin_write()?, true)?;
        // The copy grew by doubling: trim its free tail.
        dst.compact()
            .map_err(|e| EtcdError::Internal(format!("defrag: trimming the copy: {e}")))?;
        drop(src);
        drop(dst);
        drop(src_db);
        sync_file(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| io_err("rename", &tmp, e))?;
        sync_dir(path)
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let after = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    use super::{defrag_file, temp_path};
    use crate::mvcc::MvccStore;

    fn put(s: &MvccStore, k: &str, v: &[u8]) {
        let mut b = s.write().unwrap();
        b.put(
            &PutRequest {
                key: k.into(),
                value: v.to_vec(),
                ..Default::default()
            },
            &|_| true,
        )
        .unwrap();
        b.commit(false).unwrap();
    }

    fn all(s: &MvccStore, rev: i64) -> Vec<(Vec<u8>, Vec<u8>, i64, i64)> {
        s.range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        })
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.create_revision, kv.mod_revision))
        .collect()
    }

    /// Many large rows, most deleted and compacted away: lots of free pages.
    fn fragmented(s: &MvccStore) {
        let big = vec![7u8; 4096];
        for i in 0..2000 {
            put(s, &format!("k{i:05}"), &big);
        }
        let mut b = s.write().unwrap();
        b.delete_range(&DeleteRangeRequest {
            key: b"k00".to_vec(),
            range_end: b"k018".to_vec(),
            ..Default::default()
        })
        .unwrap();
        b.put_lease(9, 100).unwrap();
        b.meta_put("oxcd_cluster", b"members").unwrap();
        b.set_consistent_index(77, 3);
        b.commit(true).unwrap();
        let rev = s.current_revision();
        let mut b = s.write().unwrap();
        b.compact(rev).unwrap();
        b.commit(true).unwrap();
    }

    #[test]
    fn packs_the_file_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member/snap/db");
        let s = MvccStore::open(&path).unwrap();
        fragmented(&s);
        let rev = s.current_revision();
        let (before, used) = (s.db_size(), s.db_size_in_use());
        let (kvs, hash) = (all(&s, 0), s.hash_kv(0).unwrap());
        let r = s.defragment().unwrap();
        assert_eq!(r.size_before, before);
        assert!(r.size_after < before / 2, "{r:?} in use {used}");
        assert!(
            r.size_after <= used + used / 2 + (1 << 20),
            "{r:?} in use {used}"
        );
        assert!(!temp_path(&path).exists());
        assert_eq!(all(&s, 0), kvs);
        assert_eq!(s.hash_kv(0).unwrap(), hash);
        assert_eq!(s.leases().unwrap(), vec![(9, 100)]);
        assert_eq!(s.meta_get("oxcd_cluster").unwrap().unwrap(), b"members");
        // Writes go on into the new file, and a reopen finds it all.
        put(&s, "after", b"x");
        {
            let mut b = s.write().unwrap();
            b.set_consistent_index(78, 3);
            b.commit(true).unwrap();
        }
        drop(s);
        let s = MvccStore::open(&path).unwrap();
        assert_eq!(s.current_revision(), rev + 1);
        assert_eq!(s.consistent_index(), 78);
        assert_eq!(s.compact_revision(), rev);
        assert_eq!(all(&s, 0).len(), kvs.len() + 1);
    }

    #[test]
    fn writes_during_defrag_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Arc::new(MvccStore::open(&path).unwrap());
        fragmented(&s);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 200 {
                    put(&s, &format!("w{:06}", n % 500), format!("v{n}").as_bytes());
                    n += 1;
                    if n.is_multiple_of(300) {
                        // Compactions while the copy is being made.
                        let rev = s.current_revision() - 10;
                        let mut b = s.write().unwrap();
                        b.compact(rev).unwrap();
                        b.set_consistent_index(1000 + n, 4);
                        b.commit(false).unwrap();
                    }
                    let mut b = s.write().unwrap();
                    b.put_lease(n as i64 % 7, n as i64).unwrap();
                    b.delete_lease((n as i64 + 3) % 7).unwrap();
                    b.commit(false).unwrap();
                }
                n
            })
        };
        for _ in 0..3 {
            s.defragment().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let n = writer.join().unwrap();
        assert!(n >= 200);
        let (kvs, hash, leases) = (all(&s, 0), s.hash_kv(0).unwrap(), s.leases().unwrap());
        let compacted = s.compact_revision();
        let history = all(&s, compacted + 1);
        {
            let b = s.write().unwrap();
            b.commit(true).unwrap();
        }
        drop(s);
        let s = MvccStore::open(&path).unwrap();
        assert_eq!(all(&s, 0), kvs);
        assert_eq!(all(&s, compacted + 1), history);
        assert_eq!(s.hash_kv(0).unwrap(), hash);
        assert_eq!(s.leases().unwrap(), leases);
    }

    /// Every row of every table.
    fn rows(s: &MvccStore) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
        let db = s.db();
        let txn = db.begin_read().unwrap();
        let mut out = Vec::new();
        let mut names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        names.sort();
        for name in names {
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
            for row in txn.open_table(def).unwrap().iter().unwrap() {
                let (k, v) = row.unwrap();
                out.push((name.clone(), k.value().to_vec(), v.value().to_vec()));
            }
        }
        out
    }

    /// The same writes and compactions, the compactor deleting rows in small background batches.
    fn drive(s: &MvccStore) {
        for n in 1..=3000u64 {
            put(s, &format!("h{:03}", n % 100), &[n as u8; 300]);
            if n.is_multiple_of(250) {
                let mut b = s.write().unwrap();
                b.compact(s.current_revision() - 20).unwrap();
                b.set_consistent_index(n, 2);
                b.commit(false).unwrap();
            }
        }
    }

    fn wait_compactions(s: &MvccStore) {
        for _ in 0..2000 {
            if s.finished_compact_revision() >= s.compact_revision() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("compactions did not finish");
    }

    #[test]
    fn rows_deleted_by_background_compaction_stay_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(MvccStore::open(&dir.path().join("a")).unwrap());
        let b = Arc::new(MvccStore::open(&dir.path().join("b")).unwrap());
        a.start_compactor(40);
        b.start_compactor(40);
        let writer = {
            let a = a.clone();
            std::thread::spawn(move || drive(&a))
        };
        let mut defrags = 0;
        while !writer.is_finished() || defrags == 0 {
            a.defragment().unwrap();
            defrags += 1;
        }
        writer.join().unwrap();
        drive(&b);
        wait_compactions(&a);
        wait_compactions(&b);
        assert_eq!(rows(&a), rows(&b), "after {defrags} defrags");
        a.defragment().unwrap();
        assert_eq!(rows(&a), rows(&b));
        assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
    }

    #[test]
    fn offline_defrag_and_stale_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = MvccStore::open(&path).unwrap();
        fragmented(&s);
        let (kvs, hash) = (all(&s, 0), s.hash_kv(0).unwrap());
        drop(s);
        let (before, after) = defrag_file(&path).unwrap();
        assert!(after < before / 2, "{before} -> {after}");
        // A copy left by a crash is removed at open.
        std::fs::write(temp_path(&path), b"partial").unwrap();
        let s = MvccStore::open(&path).unwrap();
        assert!(!temp_path(&path).exists());
        assert_eq!(all(&s, 0), kvs);
        assert_eq!(s.hash_kv(0).unwrap(), hash);
        assert_eq!(s.consistent_index(), 77);
    }
}
