//! WriteBatch: the apply loop's write transaction.
//!
//! One batch = one redb write transaction spanning any number of requests (raft entries). Each
//! write request gets one new main revision, its changes sub revisions 0, 1, 2... (etcd's
//! `storeTxnWrite`: `beginRev + 1`, `len(changes)`). Rows and index entries are written as the
//! requests apply; readers see none of it until `commit` publishes the new revision.
//!
//! Requests validate before they change anything, so a failing request leaves the batch as it was.
//! An error after a change (a disk error) poisons the batch: `commit` refuses, and dropping an
//! uncommitted batch that touched the index rebuilds the index from disk.

use std::sync::atomic::Ordering;

use oxcd_api::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader, TxnRequest, TxnResponse,
};
use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use std::sync::Arc;

use parking_lot::MutexGuard;
use prost::Message;
use redb::{Database, Durability, Table, WriteTransaction};

use super::codec::LeaseRecord;
use super::compaction::{self, CompactJob};
use super::key_index::KeyRange;
use super::range::{self, read_kv};
use super::revision::Revision;
use super::store::{
    MvccStore, KEY_TABLE, LEASE_TABLE, META_CONSISTENT_INDEX, META_SCHEDULED_COMPACT, META_TABLE,
    META_TERM,
};
use super::txn;
use crate::error::{EtcdError, Result};

pub(super) type KeyTableMut<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// Keys compacted per index write-lock hold, so readers wait at most one chunk.
const COMPACT_CHUNK_KEYS: usize = 10_000;

pub(super) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Revision bookkeeping of one write request.
pub(super) struct OpCtx {
    /// The batch revision before this request.
    base: i64,
    /// Changes (rows) written so far by this request: the next sub revision.
    changes: i64,
}

impl OpCtx {
    fn new(base: i64) -> OpCtx {
        OpCtx { base, changes: 0 }
    }

    /// The revision reads inside this request see (etcd: beginRev, +1 once it has written).
    pub(super) fn read_rev(&self) -> i64 {
        if self.changes > 0 {
            self.base + 1
        } else {
            self.base
        }
    }

    fn next_rev(&mut self) -> Revision {
        let r = Revision::new(self.base + 1, self.changes);
        self.changes += 1;
        r
    }
}

/// Batch state kept apart from the redb transaction so a request can borrow a table of the
/// transaction and this state at once.
pub(super) struct BatchState {
    rev: i64,
    events: Vec<Event>,
    /// Reused encoding buffer for rows.
    buf: Vec<u8>,
    /// The index has changes not yet committed.
    dirty: bool,
}

impl BatchState {
    fn write_put(
        &mut self,
        store: &MvccStore,
        table: &mut KeyTableMut<'_>,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        rev: Revision,
    ) -> Result<()> {
        self.dirty = true;
        let (create_revision, version) = store.index.write().put(key, rev);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        self.buf.clear();
        kv.encode(&mut self.buf)
            .expect("a Vec grows to fit any message");
        table.insert(&rev.to_bytes()[..], &self.buf[..])?;
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(())
    }

    /// Deletes those of `keys` that are live, one sub revision each; returns how many.
    fn write_tombstones(
        &mut self,
        store: &MvccStore,
        table: &mut KeyTableMut<'_>,
        ctx: &mut OpCtx,
        keys: Vec<Vec<u8>>,
    ) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.dirty = true;
        let mut done = Vec::with_capacity(keys.len());
        {
            let mut idx = store.index.write();
            for k in keys {
                let rev = Revision::new(ctx.base + 1, ctx.changes);
                if idx.tombstone(&k, rev) {
                    ctx.changes += 1;
                    done.push((k, rev));
                }
            }
        }
        let n = done.len();
        for (key, rev) in done {
            // The row holds KeyValue{key} only, as etcd writes it.
            self.buf.clear();
            if !key.is_empty() {
                self.buf.push(0x0a); // field 1, length-delimited
                prost::encoding::encode_varint(key.len() as u64, &mut self.buf);
                self.buf.extend_from_slice(&key);
            }
            table.insert(&rev.to_tombstone_bytes()[..], &self.buf[..])?;
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key,
                    mod_revision: rev.main,
                    ..Default::default()
                }),
                prev_kv: None,
            });
        }
        Ok(n)
    }

    /// etcd's `applierV3backend.Put` inside a write txn (lease existence is checked by callers).
    pub(super) fn apply_put(
        &mut self,
        store: &MvccStore,
        table: &mut KeyTableMut<'_>,
        ctx: &mut OpCtx,
        req: &PutRequest,
    ) -> Result<PutResponse> {
        crate::metrics::MVCC_PUT.inc();
        let mut prev = None;
        if req.ignore_value || req.ignore_lease || req.prev_kv {
            let hit = store.index.read().get(&req.key, ctx.read_rev());
            if let Some(h) = hit {
                prev = Some(read_kv(&*table, h.rev, false)?);
            }
        }
        let (value, lease) = match &mut prev {
            None if req.ignore_value || req.ignore_lease => return Err(EtcdError::KeyNotFound),
            Some(p) if req.ignore_value => {
                // Move the old value unless the response needs it too.
                let v = if req.prev_kv {
                    p.value.clone()
                } else {
                    std::mem::take(&mut p.value)
                };
                (v, if req.ignore_lease { p.lease } else { req.lease })
            }
            Some(p) if req.ignore_lease => (req.value.clone(), p.lease),
            _ => (req.value.clone(), req.lease),
        };
        let rev = ctx.next_rev();
        self.write_put(store, table, &req.key, value, lease, rev)?;
        Ok(PutResponse {
            header: header(rev.main),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// etcd's `applierV3backend.DeleteRange` inside a write txn.
    pub(super) fn apply_delete(
        &mut self,
        store: &MvccStore,
        table: &mut KeyTableMut<'_>,
        ctx: &mut OpCtx,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        crate::metrics::MVCC_DELETE.inc();
        let at = ctx.read_rev();
        let (mut keys, mut revs) = (Vec::new(), Vec::new());
        store
            .index
            .read()
            .visit(KeyRange::new(&req.key, &req.range_end), |k, ki| {
                if let Some(h) = ki.get(at) {
                    keys.push(k.to_vec());
                    revs.push(h.rev);
                }
                true
            });
        let mut prev_kvs = Vec::new();
        if req.prev_kv {
            prev_kvs.reserve(revs.len());
            for r in revs {
                prev_kvs.push(read_kv(&*table, r, false)?);
            }
        }
        let deleted = self.write_tombstones(store, table, ctx, keys)? as i64;
        Ok(DeleteRangeResponse {
            // etcd: the new revision if this request (txn) has written anything, else the old.
            header: header(ctx.read_rev()),
            deleted,
            prev_kvs,
        })
    }
}

pub struct WriteBatch<'a> {
    store: &'a MvccStore,
    /// None only after commit, or after an intermediate commit failed.
    txn: Option<WriteTransaction>,
    /// The database `txn` belongs to, kept open while the batch lives (drops after `txn`).
    db: Arc<Database>,
    st: BatchState,
    consistent: Option<(u64, u64)>,
    /// Compactions applied by this batch whose rows the compactor deletes after the commit.
    compact_jobs: Vec<CompactJob>,
    /// A compaction this batch finished inline (no compactor running).
    finished_compact: Option<i64>,
    poisoned: bool,
    committed: bool,
    _writer: MutexGuard<'a, ()>,
}

fn no_txn() -> EtcdError {
    EtcdError::Internal("mvcc: write batch has no transaction (an earlier commit failed)".into())
}

fn durability_err(e: redb::SetDurabilityError) -> EtcdError {
    EtcdError::Internal(format!("backend: {e}"))
}

impl<'a> WriteBatch<'a> {
    pub(super) fn begin(store: &'a MvccStore) -> Result<WriteBatch<'a>> {
        let writer = store.writer.lock();
        let db = store.db();
        let txn = db.begin_write()?;
        Ok(WriteBatch {
            store,
            txn: Some(txn),
            db,
            st: BatchState {
                rev: store.current_revision(),
                events: Vec::new(),
                buf: Vec::new(),
                dirty: false,
            },
            consistent: None,
            compact_jobs: Vec::new(),
            finished_compact: None,
            poisoned: false,
            committed: false,
            _writer: writer,
        })
    }

    /// The current revision including this batch's writes.
    pub fn revision(&self) -> i64 {
        self.st.rev
    }

    /// The events written so far by this batch, in order (what `commit` will return).
    pub fn events(&self) -> &[Event] {
        &self.st.events
    }

    /// Runs one write request: one OpCtx, one open key table.
    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut BatchState, &MvccStore, &mut KeyTableMut<'_>, &mut OpCtx) -> Result<R>,
    ) -> Result<R> {
        let txn = self.txn.as_ref().ok_or_else(no_txn)?;
        let mut table = txn.open_table(KEY_TABLE)?;
        let mut ctx = OpCtx::new(self.st.rev);
        let r = f(&mut self.st, self.store, &mut table, &mut ctx);
        drop(table);
        match r {
            Ok(v) => {
                self.st.rev = ctx.read_rev();
                Ok(v)
            }
            Err(e) => {
                if ctx.changes > 0 {
                    self.poisoned = true;
                }
                Err(e)
            }
        }
    }

    /// A range that sees this batch's own writes.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let txn = self.txn.as_ref().ok_or_else(no_txn)?;
        let table = txn.open_table(KEY_TABLE)?;
        let idx = self.store.index.read();
        range::range(&idx, &table, req, self.st.rev, self.store.compact_raw())
    }

    pub fn put(
        &mut self,
        req: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<PutResponse> {
        // etcd checks the lease before anything else for a plain put.
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        self.run(|st, store, table, ctx| st.apply_put(store, table, ctx, req))
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.run(|st, store, table, ctx| st.apply_delete(store, table, ctx, req))
    }

    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<TxnResponse> {
        crate::metrics::MVCC_TXN.inc();
        self.run(|st, store, table, ctx| txn::apply(st, store, table, ctx, req, lease_exists))
    }

    /// Lease revoke: deletes the live ones of `keys` in one revision; returns the batch revision.
    pub fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Result<i64> {
        self.run(|st, store, table, ctx| {
            let at = ctx.read_rev();
            let live: Vec<Vec<u8>> = {
                let idx = store.index.read();
                keys.iter()
                    .filter(|k| idx.get(k, at).is_some())
                    .cloned()
                    .collect()
            };
            st.write_tombstones(store, table, ctx, live)
        })?;
        Ok(self.st.rev)
    }

    /// Commits what the batch holds so far without durability and publishes it, keeping the
    /// batch open. Crash-safe: a non-durable commit is lost unless a later durable commit (which
    /// carries the consistent index) follows.
    fn flush(&mut self) -> Result<()> {
        let mut txn = self.txn.take().ok_or_else(no_txn)?;
        txn.set_durability(Durability::None)
            .map_err(durability_err)?;
        txn.commit()?;
        self.store.current_rev.store(self.st.rev, Ordering::Release);
        self.txn = Some(self.db.begin_write()?);
        Ok(())
    }

    pub fn compact(&mut self, rev: i64) -> Result<()> {
        let store = self.store;
        if rev <= store.compact_raw() {
            return Err(EtcdError::Compacted);
        }
        if rev > self.st.rev {
            return Err(EtcdError::FutureRev);
        }
        // Compacting the index past the published revision would break reads at it; publish
        // this batch's writes first.
        if rev > store.current_revision() {
            self.flush()?;
        }
        self.st.dirty = true;
        let mut removed = Vec::new();
        let mut cursor: Option<Box<[u8]>> = None;
        let mut first = true;
        loop {
            let mut idx = store.index.write();
            if std::mem::take(&mut first) {
                // Before any revision leaves the index: reads below `rev` now fail cleanly.
                store.compact_rev.store(rev, Ordering::Release);
            }
            cursor = idx.compact_chunk(rev, cursor.as_deref(), COMPACT_CHUNK_KEYS, &mut removed);
            drop(idx);
            if cursor.is_none() {
                break;
            }
        }
        tracing::info!(revision = rev, "compact tree index");
        let background = store.compactions.background();
        let r = (|| -> Result<()> {
            let txn = self.txn.as_ref().ok_or_else(no_txn)?;
            let b = Revision::new(rev, 0).to_bytes();
            txn.open_table(META_TABLE)?
                .insert(META_SCHEDULED_COMPACT, &b[..])?;
            if !background {
                let start = std::time::Instant::now();
                compaction::delete_rows(txn, &removed)?;
                compaction::put_finished(txn, rev)?;
                tracing::info!(
                    "compact-revision" = rev,
                    took = %crate::compactor::go_duration_string(start.elapsed().as_nanos() as i64),
                    "finished scheduled compaction"
                );
            }
            Ok(())
        })();
        if r.is_err() {
            self.poisoned = true;
        } else if background {
            // Handed to the compactor once this batch commits.
            self.compact_jobs.push(CompactJob::new(rev, removed));
        } else {
            self.finished_compact = Some(rev);
        }
        r
    }

    /// Recorded now, written with the commit (same transaction as the data it describes).
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        self.consistent = Some((index, term));
    }

    pub fn put_lease(&mut self, id: i64, ttl: i64) -> Result<()> {
        let txn = self.txn.as_ref().ok_or_else(no_txn)?;
        let mut table = txn.open_table(LEASE_TABLE)?;
        let rec = LeaseRecord {
            id,
            ttl,
            remaining_ttl: 0,
        };
        table.insert(&id.to_be_bytes()[..], &rec.encode_to_vec()[..])?;
        Ok(())
    }

    pub fn delete_lease(&mut self, id: i64) -> Result<()> {
        let txn = self.txn.as_ref().ok_or_else(no_txn)?;
        txn.open_table(LEASE_TABLE)?.remove(&id.to_be_bytes()[..])?;
        Ok(())
    }

    pub fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let txn = self.txn.as_ref().ok_or_else(no_txn)?;
        txn.open_table(META_TABLE)?.insert(key.as_bytes(), value)?;
        Ok(())
    }

    /// Commits, then publishes the new revision; returns the batch's events in order.
    pub fn commit(mut self, durable: bool) -> Result<Vec<Event>> {
        if self.poisoned {
            return Err(EtcdError::Internal(
                "mvcc: a write failed part-way; batch discarded".into(),
            ));
        }
        let mut txn = self.txn.take().ok_or_else(no_txn)?;
        if let Some((index, term)) = self.consistent {
            let mut meta = txn.open_table(META_TABLE)?;
            meta.insert(META_CONSISTENT_INDEX, &index.to_be_bytes()[..])?;
            meta.insert(META_TERM, &term.to_be_bytes()[..])?;
        }
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(durability_err)?;
        txn.commit()?;
        self.committed = true;
        let s = self.store;
        s.refresh_file_size();
        s.current_rev.store(self.st.rev, Ordering::Release);
        if let Some((index, term)) = self.consistent {
            s.consistent_index.store(index, Ordering::Release);
            s.consistent_term.store(term, Ordering::Release);
        }
        if let Some(rev) = self.finished_compact {
            s.compactions.set_finished(rev);
        }
        if !self.compact_jobs.is_empty() {
            s.compactions
                .enqueue(std::mem::take(&mut self.compact_jobs));
        }
        Ok(std::mem::take(&mut self.st.events))
    }
}

impl Drop for WriteBatch<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(txn) = self.txn.take() {
            let _ = txn.abort();
        }
        // Runs before `_writer` is released, so no other batch sees the stale index.
        if self.st.dirty {
            if let Err(e) = self.store.reload() {
                tracing::error!(error = %e, "mvcc: rebuilding the key index after a discarded batch failed");
            }
        }
    }
}
