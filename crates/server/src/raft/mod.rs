//! Consensus: raft-rs driven by a node thread, its log and hard state kept by raft-engine.

pub mod entry_cache;
pub mod ids;
pub mod logger;
pub mod node;
pub mod peer_service;
pub mod snapshot;
pub mod storage;
pub mod transport;
pub mod waiters;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use oxcd_api::etcdserverpb::{InternalRaftRequest, RequestHeader};
use prost::Message as _;
use tokio::sync::{oneshot, watch};

use crate::error::{EtcdError, Result};
use crate::server::ApplyResponse;
use ids::IdGenerator;
use node::{NodeMsg, NodeStatus};
use waiters::Waiters;

/// etcd's `readIndexRetryTime`: how long a ReadIndex round may go unanswered before another.
const READ_INDEX_RETRY: Duration = Duration::from_millis(500);

/// The rest of the server's way into raft. Cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    inner: Arc<Inner>,
}

/// What `RaftHandle::new` is built from: the node thread's channel and shared state.
pub(crate) struct HandleParts {
    pub tx: Sender<NodeMsg>,
    pub status: Arc<NodeStatus>,
    pub waiters: Arc<Waiters>,
    pub applied: watch::Receiver<u64>,
    pub member_id: u64,
    pub cluster_id: u64,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
}

struct Inner {
    tx: Sender<NodeMsg>,
    status: Arc<NodeStatus>,
    waiters: Arc<Waiters>,
    applied: watch::Receiver<u64>,
    ids: IdGenerator,
    member_id: u64,
    cluster_id: u64,
    max_request_bytes: usize,
    request_timeout: Duration,
}

impl RaftHandle {
    pub(crate) fn new(parts: HandleParts) -> RaftHandle {
        let member_id = parts.member_id;
        RaftHandle {
            inner: Arc::new(Inner {
                tx: parts.tx,
                status: parts.status,
                waiters: parts.waiters,
                applied: parts.applied,
                ids: IdGenerator::new(member_id),
                member_id,
                cluster_id: parts.cluster_id,
                max_request_bytes: parts.max_request_bytes,
                request_timeout: parts.request_timeout,
            }),
        }
    }

    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    pub fn term(&self) -> u64 {
        self.inner.status.term.load(Ordering::Acquire)
    }

    pub fn leader(&self) -> u64 {
        self.inner.status.leader.load(Ordering::Acquire)
    }

    pub fn is_leader(&self) -> bool {
        self.inner.status.is_leader.load(Ordering::Acquire)
    }

    pub fn commit_index(&self) -> u64 {
        self.inner.status.commit.load(Ordering::Acquire)
    }

    pub fn applied_index(&self) -> u64 {
        *self.inner.applied.borrow()
    }

    /// A fresh ID, unique across members and restarts (request IDs, lease IDs).
    pub fn next_id(&self) -> u64 {
        self.inner.ids.next()
    }

    pub async fn propose(&self, mut req: InternalRaftRequest) -> Result<ApplyResponse> {
        let id = match req.header.as_ref().map(|h| h.id) {
            Some(id) if id != 0 => id,
            _ => self.next_id(),
        };
        let header = req.header.get_or_insert_with(RequestHeader::default);
        header.id = id;
        req.id = id;
        let data = req.encode_to_vec();
        if data.len() > self.inner.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let _pending = crate::metrics::PendingProposal::start();
        let rx = self.inner.waiters.register(id);
        if self.inner.tx.send(NodeMsg::Propose { id, data }).is_err() {
            self.inner.waiters.forget(id);
            crate::metrics::PROPOSALS_FAILED.inc();
            return Err(EtcdError::Stopped);
        }
        let r = self.wait_reply(id, rx).await;
        if matches!(
            r,
            Err(EtcdError::Timeout
                | EtcdError::DeadlineExceeded
                | EtcdError::Stopped
                | EtcdError::NoLeader
                | EtcdError::NotLeader)
        ) {
            // As etcd: a proposal that raft never committed and applied for its caller.
            crate::metrics::PROPOSALS_FAILED.inc();
        }
        r
    }

    /// Waits for the apply loop's answer to proposal `id`, up to the request timeout.
    async fn wait_reply(
        &self,
        id: u64,
        rx: oneshot::Receiver<Result<ApplyResponse>>,
    ) -> Result<ApplyResponse> {
        match tokio::time::timeout(self.inner.request_timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                if self.inner.waiters.forget(id) {
                    // Handed to raft but not applied in time.
                    Err(EtcdError::Timeout)
                } else {
                    // Still waiting for a leader at the deadline.
                    Err(EtcdError::DeadlineExceeded)
                }
            }
        }
    }

    /// Proposes a membership change and waits until it is applied here (or refused by the
    /// apply loop's validation, whose error comes back).
    pub async fn propose_conf_change(
        &self,
        mut cc: raft::eraftpb::ConfChange,
    ) -> Result<ApplyResponse> {
        cc.id = self.next_id();
        let id = cc.id;
        let rx = self.inner.waiters.register(id);
        if self.inner.tx.send(NodeMsg::ProposeConfChange(cc)).is_err() {
            self.inner.waiters.forget(id);
            return Err(EtcdError::Stopped);
        }
        self.wait_reply(id, rx).await
    }

    /// Asks raft to hand leadership to `to`; raft does it once `to`'s log has caught up.
    pub fn transfer_leader(&self, to: u64) -> Result<()> {
        self.inner
            .tx
            .send(NodeMsg::TransferLeader(to))
            .map_err(|_| EtcdError::Stopped)
    }

    /// The leader's view of every member's log; None when this member is not the leader.
    pub async fn progress(&self) -> Result<Option<node::LogProgress>> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(NodeMsg::Progress(tx))
            .map_err(|_| EtcdError::Stopped)?;
        rx.await.map_err(|_| EtcdError::Stopped)
    }

    /// Linearizable read barrier: learns the commit index through raft's ReadIndex, then waits
    /// until this member has applied up to it.
    ///
    /// As etcd, a round unanswered after 500 ms (raft drops a ReadIndex while there is no
    /// leader) is logged and started again, until the request timeout.
    pub async fn read_index(&self) -> Result<()> {
        let wait = async {
            let index = loop {
                let (tx, rx) = oneshot::channel();
                if self.inner.tx.send(NodeMsg::ReadIndex(tx)).is_err() {
                    return Err(EtcdError::Stopped);
                }
                match tokio::time::timeout(READ_INDEX_RETRY, rx).await {
                    Ok(r) => break r.map_err(|_| EtcdError::Stopped)??,
                    Err(_) => tracing::warn!(
                        retry_timeout = %crate::logging::go_duration(READ_INDEX_RETRY),
                        "waiting for ReadIndex response took too long, retrying"
                    ),
                }
            };
            self.wait_applied(index).await
        };
        match tokio::time::timeout(self.inner.request_timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    /// Waits until the apply loop has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<()> {
        let mut applied = self.inner.applied.clone();
        applied
            .wait_for(|a| *a >= index)
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::Stopped)
    }

    /// The node thread's inbox, for the peer service to deliver raft messages into.
    pub fn node_sender(&self) -> Sender<NodeMsg> {
        self.inner.tx.clone()
    }

    /// Asks the node thread to stop; in-flight proposals fail with "server stopped".
    pub fn stop(&self) {
        let _ = self.inner.tx.send(NodeMsg::Stop);
    }
}
