//! The raft node loop: one thread owns the `RawNode`, turns proposals and ticks into `Ready`s,
//! persists them to the WAL and hands committed entries to the apply loop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use raft::eraftpb::{ConfChange, ConfState, Entry, Message};
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;

use super::storage::WalStorage;
use super::waiters::Waiters;
use crate::error::EtcdError;

/// Requests from the rest of the server to the node thread.
pub enum NodeMsg {
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    /// A membership change; its waiter is registered under `cc.id`.
    ProposeConfChange(ConfChange),
    /// The apply loop reached a committed, validated conf change: raft's configuration changes
    /// now, and the new one is persisted before the reply.
    ApplyConfChange {
        cc: ConfChange,
        reply: Sender<anyhow::Result<ConfState>>,
    },
    /// Hand leadership to this member (MoveLeader).
    TransferLeader(u64),
    /// What the leader knows of each member's log (None when not the leader).
    Progress(oneshot::Sender<Option<LogProgress>>),
    ReadIndex(ReadWaiter),
    /// The apply loop has applied everything up to this index.
    Applied(u64),
    /// Raft messages from peers.
    Step(Box<Message>),
    /// The transport could not deliver to this peer; raft slows down replication to it.
    Unreachable(u64),
    /// Whether a snapshot sent to this peer arrived; raft holds the peer until it hears.
    ReportSnapshot(u64, bool),
    Stop,
}

/// What the node thread publishes for everyone else to read without asking it.
#[derive(Default)]
pub struct NodeStatus {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub commit: AtomicU64,
    pub last_index: AtomicU64,
    pub is_leader: std::sync::atomic::AtomicBool,
}

/// The leader's view of how far each member's log matches its own.
#[derive(Debug, Clone)]
pub struct LogProgress {
    pub leader_match: u64,
    pub matched: HashMap<u64, u64>,
}

/// A proposal held while no leader is known.
pub enum Held {
    Entry(u64, Vec<u8>),
    ConfChange(ConfChange),
}

impl Held {
    fn id(&self) -> u64 {
        match self {
            Held::Entry(id, _) => *id,
            Held::ConfChange(cc) => cc.id,
        }
    }
}

type ReadWaiter = oneshot::Sender<Result<u64, EtcdError>>;
/// Reads waiting for the ReadIndex round identified by its context bytes.
type PendingReads = HashMap<Vec<u8>, Vec<ReadWaiter>>;

/// Where the node thread's outgoing raft messages go. Must never block: it is called from the
/// node thread between fsyncs.
pub trait PeerSender: Send {
    fn send(&self, msgs: Vec<Message>);
}

/// A member alone in its cluster has nobody to talk to.
pub struct NoPeers;

impl PeerSender for NoPeers {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            tracing::debug!("dropping raft message to {:x}: no peer transport", m.to);
        }
    }
}

/// What the apply loop is handed, in log order.
#[derive(Debug)]
pub enum ApplyTask {
    /// Committed entries, in the order raft committed them.
    Entries(Vec<Entry>),
    /// A snapshot from the leader replaces the whole state: the database file at `path` holds
    /// the state after applying the log up to `index` (whose term is `term`).
    Snapshot {
        index: u64,
        term: u64,
        path: PathBuf,
    },
}

pub type ApplySender = Sender<ApplyTask>;

pub struct NodeLoop {
    pub node: RawNode<WalStorage>,
    pub storage: WalStorage,
    pub rx: Receiver<NodeMsg>,
    pub apply_tx: ApplySender,
    pub status: Arc<NodeStatus>,
    pub waiters: Arc<Waiters>,
    /// Called when this member stops leading, so leader-only state (lease clocks) goes stale
    /// nowhere.
    pub on_step_down: Box<dyn Fn() + Send>,
    pub peers: Box<dyn PeerSender>,
    pub tick: Duration,
    /// `<data-dir>/member/snap`, where received snapshot files are.
    pub snap_dir: PathBuf,
    /// Proposals that arrived while no leader was known, waiting for one (etcd blocks them).
    pub pending_props: std::collections::VecDeque<Held>,
}

/// Most requests drained from the channel per turn, so ticks are never starved.
const MAX_DRAIN: usize = 4096;

impl NodeLoop {
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        let mut read_seq: u64 = 0;
        let read_nonce: u64 = rand::random();
        let mut pending_reads: PendingReads = HashMap::new();
        let mut new_reads = Vec::new();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match self.rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if let Some(first) = first {
                let mut msg = Some(first);
                let mut n = 0;
                while let Some(m) = msg.take() {
                    if !self.handle(m, &mut new_reads) {
                        return;
                    }
                    n += 1;
                    if n < MAX_DRAIN {
                        msg = self.rx.try_recv().ok();
                    }
                }
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    // The loop fell behind (a long fsync); do not fire a burst of ticks.
                    next_tick = Instant::now() + self.tick;
                }
            }
            self.flush_pending_proposals();
            if !new_reads.is_empty() {
                // One ReadIndex round serves every read that arrived in this turn.
                read_seq += 1;
                // Followers' contexts meet at the leader: member ID plus a per-start nonce keep
                // them apart across members and restarts.
                let mut ctx = Vec::with_capacity(24);
                ctx.extend_from_slice(&self.node.raft.id.to_be_bytes());
                ctx.extend_from_slice(&read_nonce.to_be_bytes());
                ctx.extend_from_slice(&read_seq.to_be_bytes());
                self.node.read_index(ctx.clone());
                // Rounds raft dropped (no leader) are abandoned by their readers, who start
                // new ones; forget them.
                pending_reads.retain(|_, waiting| {
                    waiting.retain(|tx| !tx.is_closed());
                    !waiting.is_empty()
                });
                pending_reads.insert(ctx, std::mem::take(&mut new_reads));
            }
            if let Err(e) = self.on_ready(&mut pending_reads) {
                // The WAL can no longer be written: serving on would risk acknowledging writes
                // that are not durable.
                tracing::error!("failed to persist raft log: {e:#}");
                std::process::exit(1);
            }
        }
    }

    fn propose(&mut self, held: Held) {
        let id = held.id();
        if !self.waiters.mark_proposed(id) {
            return; // its caller gave up while it waited for a leader
        }
        let r = match held {
            Held::Entry(_, data) => self.node.propose(vec![], data),
            Held::ConfChange(cc) => self.node.propose_conf_change(vec![], cc),
        };
        if let Err(e) = r {
            let err = match e {
                raft::Error::ProposalDropped => {
                    if self.node.raft.leader_id == raft::INVALID_ID {
                        EtcdError::NoLeader
                    } else {
                        EtcdError::NotLeader
                    }
                }
                other => EtcdError::Internal(other.to_string()),
            };
            self.waiters.fail(id, err);
        }
    }

    fn propose_or_hold(&mut self, held: Held) {
        if self.node.raft.leader_id == raft::INVALID_ID {
            self.pending_props.push_back(held);
        } else {
            self.propose(held);
        }
    }

    /// Proposes what waited for a leader once one is known; while none is, drops the ones whose
    /// callers have given up so the queue stays bounded.
    fn flush_pending_proposals(&mut self) {
        if self.pending_props.is_empty() {
            return;
        }
        if self.node.raft.leader_id == raft::INVALID_ID {
            let waiters = &self.waiters;
            self.pending_props.retain(|h| waiters.is_waiting(h.id()));
            return;
        }
        while let Some(held) = self.pending_props.pop_front() {
            self.propose(held);
        }
    }

    /// Returns false when the loop must stop.
    fn handle(&mut self, m: NodeMsg, new_reads: &mut Vec<ReadWaiter>) -> bool {
        match m {
            NodeMsg::Propose { id, data } => self.propose_or_hold(Held::Entry(id, data)),
            NodeMsg::ProposeConfChange(cc) => self.propose_or_hold(Held::ConfChange(cc)),
            NodeMsg::ApplyConfChange { cc, reply } => {
                let r = self
                    .node
                    .apply_conf_change(&cc)
                    .map_err(anyhow::Error::from)
                    .and_then(|cs| {
                        self.storage.set_conf_state(cs.clone())?;
                        Ok(cs)
                    });
                let _ = reply.send(r);
            }
            NodeMsg::TransferLeader(to) => self.node.transfer_leader(to),
            NodeMsg::Progress(reply) => {
                let raft = &self.node.raft;
                let p = (raft.state == StateRole::Leader).then(|| {
                    let matched: HashMap<u64, u64> =
                        raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect();
                    LogProgress {
                        leader_match: matched.get(&raft.id).copied().unwrap_or(0),
                        matched,
                    }
                });
                let _ = reply.send(p);
            }
            NodeMsg::ReadIndex(tx) => new_reads.push(tx),
            NodeMsg::Applied(index) => {
                if index > self.node.raft.raft_log.applied {
                    self.node.advance_apply_to(index);
                }
            }
            NodeMsg::Step(m) => {
                if let Err(e) = self.node.step(*m) {
                    tracing::debug!("raft step: {e}");
                }
            }
            NodeMsg::Unreachable(id) => self.node.report_unreachable(id),
            NodeMsg::ReportSnapshot(id, ok) => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.node.report_snapshot(id, status);
            }
            NodeMsg::Stop => return false,
        }
        true
    }

    fn on_ready(&mut self, pending_reads: &mut PendingReads) -> anyhow::Result<()> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut rd = self.node.ready();
        if let Some(ss) = rd.ss() {
            let old = self.status.leader.swap(ss.leader_id, Ordering::AcqRel);
            let term = self.node.raft.term;
            let me = self.node.raft.id;
            if old != ss.leader_id {
                if ss.leader_id == raft::INVALID_ID {
                    tracing::info!("raft.node: {me:x} lost leader {old:x} at term {term}");
                } else {
                    crate::metrics::LEADER_CHANGES.inc();
                    if old == raft::INVALID_ID {
                        tracing::info!(
                            "raft.node: {me:x} elected leader {:x} at term {term}",
                            ss.leader_id
                        );
                    } else {
                        tracing::info!(
                            "raft.node: {me:x} changed leader from {old:x} to {:x} at term {term}",
                            ss.leader_id
                        );
                    }
                }
            }
            let leader = ss.raft_state == StateRole::Leader;
            let was_leader = self.status.is_leader.swap(leader, Ordering::AcqRel);
            if was_leader && !leader {
                (self.on_step_down)();
            }
            if leader && !was_leader {
                tracing::info!("{me:x} became leader at term {term}");
            }
        }
        // A leader may send before its own fsync (raft thesis 10.2.1).
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            // Before this Ready's entries (which follow the snapshot) and after every entry
            // delivered so far (which precede it).
            self.install_snapshot(rd.snapshot())?;
        }
        self.deliver(rd.take_committed_entries());
        for rs in rd.take_read_states() {
            if let Some(waiting) = pending_reads.remove(&rs.request_ctx) {
                for tx in waiting {
                    let _ = tx.send(Ok(rs.index));
                }
            }
        }
        if !rd.entries().is_empty() || rd.hs().is_some() {
            crate::failpoints::crash_point!("raft-before-save");
        }
        self.storage.append(rd.entries(), rd.hs(), rd.must_sync())?;
        if !rd.entries().is_empty() || rd.hs().is_some() {
            crate::failpoints::crash_point!("raft-after-save");
        }
        if let Some(hs) = rd.hs() {
            self.status.term.store(hs.term, Ordering::Release);
            self.status.commit.store(hs.commit, Ordering::Release);
        }
        if let Some(last) = rd.entries().last() {
            self.status.last_index.store(last.index, Ordering::Release);
        }
        self.send(rd.take_persisted_messages());
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit)?;
            self.status.commit.store(commit, Ordering::Release);
        }
        self.send(light.take_messages());
        self.deliver(light.take_committed_entries());
        Ok(())
    }

    fn deliver(&self, entries: Vec<Entry>) {
        if !entries.is_empty() && self.apply_tx.send(ApplyTask::Entries(entries)).is_err() {
            tracing::warn!("apply loop has stopped; committed entries not delivered");
        }
    }

    /// A snapshot raft restored from the leader: the log restarts after it in the WAL now, and
    /// the apply loop swaps in its database once it has applied what came before.
    fn install_snapshot(&self, snap: &raft::eraftpb::Snapshot) -> anyhow::Result<()> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let name = std::str::from_utf8(&snap.data)
            .ok()
            .filter(|n| super::snapshot::parse_file_name(n) == Some((term, index)))
            .ok_or_else(|| {
                anyhow::anyhow!("raft snapshot at index {index} names no snapshot file")
            })?;
        let path = self.snap_dir.join(name);
        if !path.exists() {
            anyhow::bail!(
                "raft snapshot at index {index}: {} is missing",
                path.display()
            );
        }
        self.storage.apply_snapshot(snap)?;
        tracing::info!(
            "snapshot-index" = index,
            "snapshot-term" = term,
            "applying snapshot: raft log restarts after the snapshot, installing its database"
        );
        self.status.commit.fetch_max(index, Ordering::AcqRel);
        self.status.last_index.fetch_max(index, Ordering::AcqRel);
        if self
            .apply_tx
            .send(ApplyTask::Snapshot { index, term, path })
            .is_err()
        {
            tracing::warn!("apply loop has stopped; snapshot not installed");
        }
        Ok(())
    }

    fn send(&self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            self.peers.send(msgs);
        }
    }
}
