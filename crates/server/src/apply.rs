//! The apply loop: the only place state changes. Committed raft entries are applied in log order
//! to the MVCC store and the lessor, one redb write transaction per batch of entries, with the
//! applied raft index stored in the same transaction so a restart neither skips nor repeats one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use oxcd_api::etcdserverpb::{
    CompactionResponse, InternalRaftRequest, LeaseGrantResponse, LeaseRevokeResponse,
    ResponseHeader,
};
use oxcd_api::mvccpb::event::EventType;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType};
use tokio::sync::watch;

use crate::error::{EtcdError, Result};
use crate::lease::Lessor;
use crate::membership::{ClusterInfo, Membership, META_KEY};
use crate::mvcc::{MvccStore, WatchHub, WriteBatch};
use crate::raft::node::{ApplyTask, NodeMsg, NodeStatus};
use crate::raft::storage::WalStorage;
use crate::raft::waiters::Waiters;
use crate::server::ApplyResponse;

/// etcd's `warnApplyDuration`: an apply slower than this is logged.
const WARN_APPLY_DURATION: Duration = Duration::from_millis(100);

/// How long applied state may stay only in the WAL before redb is made durable too; the WAL
/// already holds every entry, so this bounds replay work after a crash, not safety.
const DURABLE_INTERVAL: Duration = Duration::from_millis(100);
/// Entries kept in the WAL behind a compaction, for peers that fall a little behind (etcd's
/// SnapshotCatchUpEntries); never more than --snapshot-count, so a small snapshot count (tests)
/// makes a lagging peer take a snapshot soon, as a large one does with etcd's 5000.
const CATCH_UP_ENTRIES: u64 = 5000;
/// Upper bound of entries folded into one redb transaction.
const MAX_BATCH_ENTRIES: usize = 8192;

pub struct Applier {
    pub store: Arc<MvccStore>,
    pub lessor: Arc<Lessor>,
    pub watch_hub: Arc<WatchHub>,
    pub waiters: Arc<Waiters>,
    pub status: Arc<NodeStatus>,
    pub node_tx: Sender<NodeMsg>,
    pub applied_tx: watch::Sender<u64>,
    pub storage: WalStorage,
    pub member_id: u64,
    pub cluster_id: u64,
    pub snapshot_count: u64,
    pub membership: Arc<Membership>,
    /// --max-snapshots: snapshot files kept on disk.
    pub max_snapshots: usize,
    pub conf: crate::apply_conf::ConfApplier,
    /// The alarm set and the quota checked when applying writes.
    pub alarms: Arc<crate::alarm::Alarms>,
    /// Users, roles and tokens; also checks the permissions of writes.
    pub auth: Arc<crate::auth::AuthStore>,
}

struct Progress {
    last_durable: Instant,
    /// Applied entries committed to redb without fsync yet.
    dirty: bool,
    /// Applied index at the last WAL compaction (etcd's snapshot index): the next one comes
    /// --snapshot-count entries later.
    last_snapshot: u64,
    /// The WAL holds no entry at or below this index.
    last_compacted: u64,
}

impl Applier {
    pub fn run(self, rx: Receiver<ApplyTask>) {
        let mut progress = Progress {
            last_durable: Instant::now(),
            dirty: false,
            last_snapshot: self.store.consistent_index(),
            last_compacted: self.storage.snapshot_meta().index,
        };
        // A snapshot found while batching entries, applied right after them.
        let mut next: Option<ApplyTask> = None;
        loop {
            let task = match next.take() {
                Some(t) => Ok(t),
                None => rx.recv_timeout(DURABLE_INTERVAL),
            };
            let mut entries = match task {
                Ok(ApplyTask::Entries(e)) => e,
                Ok(ApplyTask::Snapshot { index, term, path }) => {
                    let r = self.install_snapshot(index, term, &path, &mut progress);
                    self.or_die(r);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if progress.dirty {
                        self.or_die(self.make_durable(&mut progress));
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if progress.dirty {
                        self.or_die(self.make_durable(&mut progress));
                    }
                    return;
                }
            };
            while entries.len() < MAX_BATCH_ENTRIES {
                match rx.try_recv() {
                    Ok(ApplyTask::Entries(more)) => entries.extend(more),
                    Ok(snap) => {
                        next = Some(snap);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let r = self.apply_entries(entries, &mut progress);
            self.or_die(r);
        }
    }

    /// A failed write to the backend leaves memory and disk out of step; stopping is the only
    /// safe answer (the WAL replays on restart).
    fn or_die(&self, r: Result<()>) {
        if let Err(e) = r {
            tracing::error!("failed to apply committed entries: {e}");
            std::process::exit(1);
        }
    }

    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.status.term.load(Ordering::Acquire),
        }
    }

    fn apply_entries(&self, entries: Vec<Entry>, progress: &mut Progress) -> Result<()> {
        let already = self.store.consistent_index();
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        if last_index <= already {
            // Replayed after a restart and already in redb.
            self.publish_applied(last_index);
            return Ok(());
        }
        let mut batch = self.store.write()?;
        let mut replies = Vec::new();
        let mut held = Vec::new();
        for e in &entries {
            if e.index <= already {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() {
                        // The empty entry a new leader appends to commit its term: from here
                        // on this member keeps the lease clocks, fresh, as etcd's primary does.
                        if self.status.is_leader.load(Ordering::Acquire) {
                            self.lessor.promote();
                        }
                        continue;
                    }
                    let req = match InternalRaftRequest::decode(&e.data[..]) {
                        Ok(r) => r,
                        Err(err) => {
                            tracing::error!("skipping undecodable entry {}: {err}", e.index);
                            continue;
                        }
                    };
                    let id = req.header.as_ref().map(|h| h.id).unwrap_or(req.id);
                    let start = Instant::now();
                    let reply = self.apply_request(&mut batch, req, e.index);
                    let took = start.elapsed();
                    if took > WARN_APPLY_DURATION {
                        tracing::warn!(
                            took = %crate::logging::go_duration(took),
                            "expected-duration" = %crate::logging::go_duration(WARN_APPLY_DURATION),
                            index = e.index,
                            "apply request took too long"
                        );
                    }
                    if matches!(reply, Err(EtcdError::NoSpace)) && !self.alarms.nospace() {
                        // Over the quota when applied: answered once this member's NOSPACE
                        // alarm is proposed, as etcd does.
                        tracing::warn!(
                            "quota-size-bytes" = self.alarms.quota().max_bytes().unwrap_or(0),
                            "quota-size" = %crate::quota::human_bytes(
                                self.alarms.quota().max_bytes().unwrap_or(0)
                            ),
                            error = "etcdserver: no space",
                            "message exceeded backend quota; raising alarm"
                        );
                        held.push(crate::alarm::HeldReply { id, reply });
                        continue;
                    }
                    replies.push((id, reply));
                }
                EntryType::EntryConfChange => {
                    let cc = match raft::eraftpb::ConfChange::parse_from_bytes(&e.data) {
                        Ok(cc) => cc,
                        Err(err) => {
                            tracing::error!("skipping undecodable conf change {}: {err}", e.index);
                            continue;
                        }
                    };
                    let header = self.header(batch.revision());
                    let reply = self.conf.apply(&mut batch, &cc, e.index, header)?;
                    replies.push((cc.id, reply));
                }
                EntryType::EntryConfChangeV2 => {
                    tracing::warn!("ignoring joint membership change at index {}", e.index);
                }
            }
        }
        batch.set_consistent_index(last_index, last_term);
        let revision = batch.revision();
        let durable = progress.last_durable.elapsed() >= DURABLE_INTERVAL;
        crate::failpoints::crash_point!("apply-before-commit");
        let start = Instant::now();
        let events = batch.commit(durable)?;
        if durable {
            crate::metrics::BACKEND_COMMIT.observe(start.elapsed().as_secs_f64());
            self.after_durable(last_index, progress)?;
        } else {
            progress.dirty = true;
        }
        crate::failpoints::crash_point!("apply-after-commit");
        if !events.is_empty() {
            self.watch_hub.notify(&events, revision);
        }
        for (id, reply) in replies {
            self.waiters.complete(id, reply);
        }
        for h in held {
            self.alarms.hold(h, &self.waiters);
        }
        self.publish_applied(last_index);
        Ok(())
    }

    fn publish_applied(&self, index: u64) {
        self.applied_tx.send_replace(index);
        let _ = self.node_tx.send(NodeMsg::Applied(index));
    }

    fn make_durable(&self, progress: &mut Progress) -> Result<()> {
        let batch = self.store.write()?;
        batch.commit(true)?;
        self.after_durable(self.store.consistent_index(), progress)
    }

    /// Once redb holds `index` durably, the WAL before it is only needed by lagging peers.
    fn after_durable(&self, index: u64, progress: &mut Progress) -> Result<()> {
        progress.last_durable = Instant::now();
        progress.dirty = false;
        if index.saturating_sub(progress.last_snapshot) > self.snapshot_count {
            progress.last_snapshot = index;
            let to = index.saturating_sub(CATCH_UP_ENTRIES.min(self.snapshot_count));
            if to > progress.last_compacted {
                let done = self
                    .storage
                    .compact(to)
                    .map_err(|e| EtcdError::Internal(format!("compacting raft log: {e:#}")))?;
                if done > progress.last_compacted {
                    tracing::info!("compacted raft logs up to index {done}");
                    progress.last_compacted = done;
                }
            }
        }
        Ok(())
    }

    /// Replaces the whole state with the snapshot database at `path` (raft restored a snapshot
    /// from the leader; every entry before it has been applied, none after it yet).
    fn install_snapshot(
        &self,
        index: u64,
        term: u64,
        path: &std::path::Path,
        progress: &mut Progress,
    ) -> Result<()> {
        if index <= self.store.consistent_index() {
            tracing::info!("snapshot at index {index} is not newer than the backend; skipped");
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
        let start = Instant::now();
        let info = install_snapshot_db(&self.store, path, (index, term), self.member_id)
            .map_err(|e| EtcdError::Internal(format!("installing snapshot: {e:#}")))?;
        self.lessor
            .recover(self.store.leases()?, self.store.keys_with_lease()?);
        self.membership.replace(info);
        self.alarms.reload(&self.store)?;
        self.auth.reload(&self.store)?;
        self.conf.after_snapshot();
        self.watch_hub.resync();
        progress.dirty = false;
        progress.last_durable = Instant::now();
        progress.last_compacted = progress.last_compacted.max(index);
        progress.last_snapshot = progress.last_snapshot.max(index);
        tracing::info!(
            "snapshot-index" = index,
            "snapshot-term" = term,
            revision = self.store.current_revision(),
            took = ?start.elapsed(),
            "restored database from snapshot"
        );
        if let Some(dir) = path.parent() {
            crate::raft::snapshot::purge(dir, index, false, self.max_snapshots);
        }
        self.publish_applied(index);
        Ok(())
    }

    /// Keeps the lessor's key -> lease map in step with the writes just made.
    fn track_leases(&self, batch: &WriteBatch<'_>, from: usize) {
        for ev in &batch.events()[from..] {
            let Some(kv) = ev.kv.as_ref() else { continue };
            if ev.r#type == EventType::Delete as i32 {
                self.lessor.on_delete(&kv.key);
            } else {
                self.lessor.on_put(&kv.key, kv.lease);
            }
        }
    }

    /// What an active alarm refuses (etcd's corrupt and capped appliers): CORRUPT every write,
    /// compaction and lease change; NOSPACE puts, txns whose puts cost something, lease grants.
    fn check_alarms(&self, req: &InternalRaftRequest) -> Result<()> {
        if self.alarms.corrupt()
            && (req.put.is_some()
                || req.delete_range.is_some()
                || req.txn.is_some()
                || req.compaction.is_some()
                || req.lease_grant.is_some()
                || req.lease_revoke.is_some())
        {
            return Err(EtcdError::Corrupt);
        }
        if self.alarms.nospace()
            && (req.put.is_some()
                || req.lease_grant.is_some()
                || req
                    .txn
                    .as_ref()
                    .is_some_and(|t| crate::quota::txn_cost(t) > 0))
        {
            return Err(EtcdError::NoSpace);
        }
        Ok(())
    }

    fn apply_request(
        &self,
        batch: &mut WriteBatch<'_>,
        req: InternalRaftRequest,
        index: u64,
    ) -> Result<ApplyResponse> {
        if let Some(r) = req.alarm {
            return Ok(ApplyResponse::Alarm(self.alarms.apply(batch, &r)?));
        }
        if crate::auth::apply::is_auth_entry(&req) {
            let reply = self.auth.apply(batch, &req, index)?;
            return Ok(ApplyResponse::Auth(self.header(batch.revision()), reply));
        }
        let lease_keys = |id: i64| {
            self.lessor
                .time_to_live(id, true)
                .map(|(_, _, keys)| keys)
                .unwrap_or_default()
        };
        self.auth.check_entry(&req, &lease_keys)?;
        self.check_alarms(&req)?;
        // etcd's quota applier: a write over the quota is applied, but answered with NoSpace.
        let quota = self.alarms.quota();
        let fits = |cost: usize| quota.available(self.store.db_size(), cost);
        let lessor = &self.lessor;
        let lease_exists = |id: i64| lessor.exists(id);
        let mark = batch.events().len();
        if let Some(r) = req.put {
            let fits = fits(crate::quota::put_cost(&r));
            let mut resp = batch.put(&r, &lease_exists)?;
            self.track_leases(batch, mark);
            if !fits {
                return Err(EtcdError::NoSpace);
            }
            resp.header = Some(self.header(batch.revision()));
            return Ok(ApplyResponse::Put(resp));
        }
        if let Some(r) = req.delete_range {
            let mut resp = batch.delete_range(&r)?;
            self.track_leases(batch, mark);
            resp.header = Some(self.header(batch.revision()));
            return Ok(ApplyResponse::DeleteRange(resp));
        }
        if let Some(r) = req.txn {
            let fits = fits(crate::quota::txn_cost(&r));
            let mut resp = batch.txn(&r, &lease_exists)?;
            self.track_leases(batch, mark);
            if !fits {
                return Err(EtcdError::NoSpace);
            }
            resp.header = Some(self.header(batch.revision()));
            return Ok(ApplyResponse::Txn(resp));
        }
        if let Some(r) = req.compaction {
            batch.compact(r.revision)?;
            return Ok(ApplyResponse::Compaction(CompactionResponse {
                header: Some(self.header(batch.revision())),
            }));
        }
        if let Some(r) = req.lease_grant {
            let fits = fits(crate::quota::lease_grant_cost());
            let ttl = self.lessor.grant(r.id, r.ttl)?;
            batch.put_lease(r.id, ttl)?;
            if !fits {
                return Err(EtcdError::NoSpace);
            }
            return Ok(ApplyResponse::LeaseGrant(LeaseGrantResponse {
                header: Some(self.header(batch.revision())),
                id: r.id,
                ttl,
                error: String::new(),
            }));
        }
        if let Some(r) = req.lease_revoke {
            let keys = self.lessor.revoke(r.id)?;
            batch.delete_keys(&keys)?;
            self.track_leases(batch, mark);
            batch.delete_lease(r.id)?;
            return Ok(ApplyResponse::LeaseRevoke(LeaseRevokeResponse {
                header: Some(self.header(batch.revision())),
            }));
        }
        if let Some(r) = req.cluster_member_attr_set {
            let attrs = r.member_attributes.unwrap_or_default();
            if self
                .membership
                .set_attributes(r.member_id, &attrs.name, &attrs.client_urls)
            {
                batch.meta_put(META_KEY, &self.membership.snapshot().encode())?;
            } else {
                tracing::warn!("ignoring attributes of unknown member {:x}", r.member_id);
            }
            return Ok(ApplyResponse::Header(self.header(batch.revision())));
        }
        Err(EtcdError::Internal(
            "etcdserver: unsupported request in raft entry".to_string(),
        ))
    }
}

/// Installs the snapshot database at `path`, which must hold the state at `(index, term)`, as
/// the member's backend, keeping this member's identity: the snapshot's membership record names
/// the sender as the local member, so it is rewritten (in the file, before the file replaces the
/// backend) to name `local_id`. Returns the membership the snapshot holds. Used by the apply loop
/// and, for a snapshot the WAL has but the backend lacks after a crash, at start-up.
pub fn install_snapshot_db(
    store: &MvccStore,
    path: &std::path::Path,
    (index, term): (u64, u64),
    local_id: u64,
) -> anyhow::Result<ClusterInfo> {
    let mut found = None;
    let held = MvccStore::update_meta_in_file(path, META_KEY, |raw| {
        let raw = raw
            .ok_or_else(|| EtcdError::Internal("snapshot has no cluster membership".to_string()))?;
        let mut info =
            ClusterInfo::decode(raw).map_err(|e| EtcdError::Internal(format!("{e:#}")))?;
        info.local_id = local_id;
        let out = info.encode();
        found = Some(info);
        Ok(out)
    })?;
    if held != (index, term) {
        anyhow::bail!(
            "{} holds index {} term {}, not the snapshot's index {index} term {term}",
            path.display(),
            held.0,
            held.1
        );
    }
    store.restore_from(path)?;
    found.ok_or_else(|| anyhow::anyhow!("snapshot has no cluster membership"))
}
