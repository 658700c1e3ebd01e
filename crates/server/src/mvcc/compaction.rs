//! Physical compaction in the background, in batches, as etcd does it.
//!
//! Applying a Compaction request (in the apply loop) compacts the in-memory key index, which is
//! what reads and HashKV go by, and records `scheduledCompactRev`; the rows the index dropped are
//! then deleted from the key table by the compactor thread, `--experimental-compaction-batch-limit`
//! rows per write transaction with a 10 ms pause between transactions, so a compaction of millions
//! of revisions never holds the writer (and the apply loop behind it) for long. The last batch
//! records `finishedCompactRev` durably. A restart with a compaction scheduled but not finished
//! compacts the index again at start-up and resumes the deletion.
//!
//! Until the compactor is started (tools, unit tests), compaction deletes the rows inline, in the
//! batch that applies it.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redb::{Durability, WriteTransaction};

use super::key_index::RemovedRev;
use super::revision::Revision;
use super::store::{MvccStore, KEY_TABLE, META_FINISHED_COMPACT, META_TABLE};
use crate::error::{EtcdError, Result};

/// Pause between two batches (etcd waits 10 ms after each).
const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// The rows one compaction still has to delete, in revision order.
#[derive(Debug)]
pub(super) struct CompactJob {
    pub rev: i64,
    pub removed: Vec<RemovedRev>,
    pub pos: usize,
    pub started: Instant,
}

impl CompactJob {
    pub fn new(rev: i64, mut removed: Vec<RemovedRev>) -> CompactJob {
        removed.sort_unstable_by_key(|r| r.rev);
        CompactJob {
            rev,
            removed,
            pos: 0,
            started: Instant::now(),
        }
    }
}

/// Queue of scheduled compactions plus what waiters need. Lock order: the store's writer first.
pub(super) struct Compactions {
    pub jobs: Mutex<VecDeque<CompactJob>>,
    wake: Condvar,
    /// The last compaction whose rows are all deleted (-1: none).
    finished: tokio::sync::watch::Sender<i64>,
    /// Rows per batch once the compactor thread runs; 0 = not started (compact inline).
    batch_limit: std::sync::atomic::AtomicUsize,
}

impl Compactions {
    pub fn new(finished: i64) -> Compactions {
        Compactions {
            jobs: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            finished: tokio::sync::watch::Sender::new(finished),
            batch_limit: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn background(&self) -> bool {
        self.batch_limit.load(Ordering::Acquire) > 0
    }

    /// Jobs whose scheduling batch has committed.
    pub fn enqueue(&self, jobs: impl IntoIterator<Item = CompactJob>) {
        let mut q = self.jobs.lock();
        q.extend(jobs);
        self.wake.notify_all();
    }

    /// Drops every queued job (the database they refer to was replaced) and queues `pending`.
    pub fn reset(&self, finished: i64, pending: Option<CompactJob>) {
        let mut q = self.jobs.lock();
        q.clear();
        q.extend(pending);
        self.finished.send_replace(finished);
        self.wake.notify_all();
    }

    pub fn set_finished(&self, rev: i64) {
        self.finished.send_if_modified(|f| {
            let newer = rev > *f;
            if newer {
                *f = rev;
            }
            newer
        });
    }

    /// Revisions scheduled for deletion but maybe still in the key table.
    pub fn pending_revs(&self) -> HashSet<Revision> {
        let q = self.jobs.lock();
        q.iter()
            .flat_map(|j| j.removed[j.pos..].iter().map(|r| r.rev))
            .collect()
    }
}

/// Deletes `rows` from the key table of `txn`.
pub(super) fn delete_rows(txn: &WriteTransaction, rows: &[RemovedRev]) -> Result<()> {
    let mut table = txn.open_table(KEY_TABLE)?;
    for r in rows {
        if r.tombstone {
            table.remove(&r.rev.to_tombstone_bytes()[..])?;
        } else {
            table.remove(&r.rev.to_bytes()[..])?;
        }
    }
    Ok(())
}

pub(super) fn put_finished(txn: &WriteTransaction, rev: i64) -> Result<()> {
    let b = Revision::new(rev, 0).to_bytes();
    txn.open_table(META_TABLE)?
        .insert(META_FINISHED_COMPACT, &b[..])?;
    Ok(())
}

impl MvccStore {
    /// Starts the compactor thread: from now on compactions delete their rows in the background,
    /// `batch_limit` rows per transaction. The thread ends when the store is dropped.
    pub fn start_compactor(self: &Arc<Self>, batch_limit: usize) {
        let batch_limit = batch_limit.max(1);
        if self
            .compactions
            .batch_limit
            .swap(batch_limit, Ordering::AcqRel)
            != 0
        {
            return;
        }
        let weak: Weak<MvccStore> = Arc::downgrade(self);
        let c = self.compactions.clone();
        let spawned = std::thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || loop {
                // The store is held only during a batch, never while idle: dropping it closes
                // the database.
                let more = {
                    let Some(store) = weak.upgrade() else { return };
                    match store.compaction_step(batch_limit) {
                        Ok(more) => more,
                        Err(e) => {
                            tracing::error!(error = %e, "mvcc: compaction batch failed; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                            true
                        }
                    }
                };
                if more {
                    std::thread::sleep(BATCH_PAUSE);
                    continue;
                }
                let mut q = c.jobs.lock();
                if q.is_empty() {
                    // Wakes up now and then to notice the store is gone.
                    c.wake.wait_for(&mut q, Duration::from_secs(1));
                }
            });
        if let Err(e) = spawned {
            tracing::error!("mvcc: cannot start the compactor thread: {e}");
            self.compactions.batch_limit.store(0, Ordering::Release);
        }
    }

    /// Deletes the next batch of the oldest scheduled compaction; returns whether work remains.
    fn compaction_step(&self, limit: usize) -> Result<bool> {
        let _w = self.writer.lock();
        let mut q = self.compactions.jobs.lock();
        let Some(job) = q.front_mut() else {
            return Ok(false);
        };
        let end = job.pos.saturating_add(limit).min(job.removed.len());
        let done = end == job.removed.len();
        let db = self.db();
        let mut txn = db.begin_write()?;
        delete_rows(&txn, &job.removed[job.pos..end])?;
        if done {
            put_finished(&txn, job.rev)?;
        }
        // The end of a compaction is made durable (etcd commits it at once); batches before it
        // ride on the next durable commit, and a crash before it just redoes the deletes.
        txn.set_durability(if done {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| EtcdError::Internal(format!("backend: {e}")))?;
        crate::failpoints::crash_point!("compact-before-commit-batch");
        txn.commit()?;
        crate::failpoints::crash_point!("compact-after-commit-batch");
        self.refresh_file_size();
        job.pos = end;
        if done {
            let job = q.pop_front().expect("front exists");
            self.compactions.set_finished(job.rev);
            tracing::info!(
                "compact-revision" = job.rev,
                took = %crate::compactor::go_duration_string(
                    job.started.elapsed().as_nanos() as i64
                ),
                "finished scheduled compaction"
            );
        }
        Ok(!q.is_empty())
    }

    /// The last compaction whose rows are all deleted from the backend (-1: none yet).
    pub fn finished_compact_revision(&self) -> i64 {
        *self.compactions.finished.borrow()
    }

    /// Waits until the compaction at `rev` (already applied) has deleted its rows: a Compact
    /// request with `physical` set answers only then.
    pub async fn wait_compacted(&self, rev: i64) {
        let mut rx = self.compactions.finished.subscribe();
        let _ = rx.wait_for(|f| *f >= rev).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    use super::MvccStore;
    use crate::error::EtcdError;

    /// The same history in a store: 20 keys written 10 times each, half of them deleted, then
    /// all deleted (so HashKV's keep set is empty at the end).
    fn history(s: &MvccStore) {
        for round in 0..10 {
            for k in 0..20 {
                let mut b = s.write().unwrap();
                b.put(
                    &PutRequest {
                        key: format!("k{k:02}").into_bytes(),
                        value: format!("v{round}").into_bytes(),
                        ..Default::default()
                    },
                    &|_| true,
                )
                .unwrap();
                b.commit(false).unwrap();
            }
        }
        let del = |s: &MvccStore, key: &str, end: &str| {
            let mut b = s.write().unwrap();
            b.delete_range(&DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                prev_kv: false,
            })
            .unwrap();
            b.commit(false).unwrap();
        };
        del(s, "k00", "k10"); // 202
        del(s, "\0", "\0"); // 203
    }

    fn compact(s: &MvccStore, rev: i64) {
        let mut b = s.write().unwrap();
        b.compact(rev).unwrap();
        b.commit(false).unwrap();
    }

    fn key_rows(s: &MvccStore) -> usize {
        let db = s.db();
        let txn = redb::ReadableDatabase::begin_read(&*db).unwrap();
        let t = txn.open_table(super::KEY_TABLE).unwrap();
        redb::ReadableTableMetadata::len(&t).unwrap() as usize
    }

    fn wait_finished(s: &MvccStore, rev: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.finished_compact_revision() < rev {
            assert!(
                Instant::now() < deadline,
                "compaction at {rev} never finished"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn old_read(s: &MvccStore, rev: i64) -> Result<usize, EtcdError> {
        s.range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        })
        .map(|r| r.kvs.len())
    }

    #[test]
    fn background_compaction_matches_inline() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let inline = MvccStore::open(&da.path().join("db")).unwrap();
        let bg = Arc::new(MvccStore::open(&db.path().join("db")).unwrap());
        bg.start_compactor(7);
        history(&inline);
        history(&bg);
        let rows = key_rows(&bg);
        for rev in [50, 150, 202] {
            compact(&inline, rev);
            compact(&bg, rev);
            // Reads go by the index: compacted at once, whatever the deletion's progress.
            assert_eq!(old_read(&bg, rev - 1), Err(EtcdError::Compacted));
            assert_eq!(old_read(&bg, rev), old_read(&inline, rev));
            for at in [0, rev + 1, 203] {
                assert_eq!(bg.hash_kv(at).unwrap(), inline.hash_kv(at).unwrap());
            }
            wait_finished(&bg, rev);
            for at in [0, rev + 1, 203] {
                assert_eq!(bg.hash_kv(at).unwrap(), inline.hash_kv(at).unwrap());
            }
            assert_eq!(key_rows(&bg), key_rows(&inline));
        }
        assert!(key_rows(&bg) < rows);
        assert_eq!(inline.finished_compact_revision(), 202);
        assert_eq!(
            bg.events_between(b"\0", b"\0", 202, 203, 0).unwrap(),
            inline.events_between(b"\0", b"\0", 202, 203, 0).unwrap()
        );
    }

    #[test]
    fn unfinished_compaction_resumes_after_restart() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let inline = MvccStore::open(&da.path().join("db")).unwrap();
        history(&inline);
        compact(&inline, 150);
        let path = db.path().join("db");
        {
            let s = MvccStore::open(&path).unwrap();
            history(&s);
            // Background mode without a thread: the job waits, as after a crash mid-way.
            s.compactions.batch_limit.store(5, Ordering::Release);
            compact(&s, 150);
            let b = s.write().unwrap();
            b.commit(true).unwrap();
            assert_eq!(s.finished_compact_revision(), -1);
        }
        let s = Arc::new(MvccStore::open(&path).unwrap());
        assert_eq!(s.compact_revision(), 150);
        assert_eq!(old_read(&s, 149), Err(EtcdError::Compacted));
        assert_eq!(s.hash_kv(0).unwrap(), inline.hash_kv(0).unwrap());
        assert_eq!(s.finished_compact_revision(), -1);
        assert!(key_rows(&s) > key_rows(&inline));
        s.start_compactor(5);
        wait_finished(&s, 150);
        assert_eq!(key_rows(&s), key_rows(&inline));
        assert_eq!(s.hash_kv(0).unwrap(), inline.hash_kv(0).unwrap());
        // The compactor may hold the store for a moment; wait until this is the last reference.
        let mut s = s;
        let deadline = Instant::now() + Duration::from_secs(10);
        let s_owned = loop {
            match Arc::try_unwrap(s) {
                Ok(owned) => break owned,
                Err(back) => s = back,
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        };
        drop(s_owned);
        let s = MvccStore::open(&path).unwrap();
        assert_eq!(s.finished_compact_revision(), 150);
        assert_eq!(s.compactions.jobs.lock().len(), 0);
    }
}
