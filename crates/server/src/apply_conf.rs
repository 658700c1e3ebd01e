//! Applying a committed membership change: validate it against the member list (the same
//! verdict on every member), change raft's configuration through the node thread, record the new
//! member list in the backend with the rest of the batch, and connect or disconnect the peer.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::ResponseHeader;
use raft::eraftpb::ConfChange;

use crate::error::{EtcdError, Result};
use crate::membership::{Change, Membership, META_KEY};
use crate::mvcc::WriteBatch;
use crate::raft::node::NodeMsg;
use crate::raft::transport::Transport;
use crate::server::ApplyResponse;

/// What the apply loop needs to apply membership changes.
pub struct ConfApplier {
    pub membership: Arc<Membership>,
    pub transport: Transport,
    pub node_tx: crossbeam_channel::Sender<NodeMsg>,
    pub local_id: u64,
    /// --experimental-max-learners.
    pub max_learners: usize,
    /// How long a removed member keeps running so its last messages (the commit of its own
    /// removal) reach the others: etcd waits ten heartbeats.
    pub stop_delay: Duration,
}

impl ConfApplier {
    /// Applies the conf change `cc` (committed at `index`). The outer error means the member
    /// cannot go on; the inner result is the proposer's answer.
    pub fn apply(
        &self,
        batch: &mut WriteBatch<'_>,
        cc: &ConfChange,
        index: u64,
        header: ResponseHeader,
    ) -> Result<Result<ApplyResponse>> {
        let change = match Change::from_conf_change(cc) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("skipping undecodable conf change at index {index}: {e:#}");
                return Ok(Err(EtcdError::Internal(format!("{e:#}"))));
            }
        };
        if let Err(e) = self.membership.validate(&change, self.max_learners) {
            tracing::warn!("rejected membership change at index {index}: {e}");
            return Ok(Err(e));
        }
        if change.changes_raft_config() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.node_tx
                .send(NodeMsg::ApplyConfChange {
                    cc: cc.clone(),
                    reply: tx,
                })
                .map_err(|_| EtcdError::Stopped)?;
            let cs = rx
                .recv()
                .map_err(|_| EtcdError::Stopped)?
                .map_err(|e| EtcdError::Internal(format!("applying conf change: {e:#}")))?;
            tracing::debug!(
                "raft configuration now voters {:?} learners {:?}",
                cs.voters,
                cs.learners
            );
        }
        self.membership.apply(&change);
        batch.meta_put(META_KEY, &self.membership.snapshot().encode())?;
        let id = change.node_id();
        match &change {
            Change::Add(m) => {
                tracing::info!(
                    "added member {:x} {:?} to cluster (learner: {})",
                    m.id,
                    m.peer_urls,
                    m.is_learner
                );
                if m.id != self.local_id {
                    self.transport.add_peer(m.id, m.peer_urls.clone());
                }
            }
            Change::Promote(id) => tracing::info!("promoted learner member {id:x}"),
            Change::Remove(id) => {
                tracing::info!("removed member {id:x} from cluster");
                if *id == self.local_id {
                    self.stop_removed();
                } else {
                    self.transport.remove_peer(*id);
                }
            }
            Change::Update { id, peer_urls } => {
                tracing::info!("updated member {id:x} peer URLs to {peer_urls:?}");
                if *id != self.local_id {
                    self.transport.add_peer(*id, peer_urls.clone());
                }
            }
        }
        Ok(Ok(ApplyResponse::Members {
            header,
            member: self.membership.member(id),
            members: self.membership.members(),
        }))
    }

    /// A snapshot replaced the member list: peers follow it, and a member the snapshot says was
    /// removed stops.
    pub fn after_snapshot(&self) {
        let members: Vec<(u64, Vec<String>)> = self
            .membership
            .members()
            .into_iter()
            .map(|m| (m.id, m.peer_urls))
            .collect();
        self.transport.sync(&members);
        if self.membership.is_removed(self.local_id) {
            self.stop_removed();
        }
    }

    /// This member applied its own removal: it stops after a short delay, as etcd does.
    fn stop_removed(&self) {
        let delay = self.stop_delay;
        let spawned = std::thread::Builder::new()
            .name("removed".into())
            .spawn(move || {
                std::thread::sleep(delay);
                crate::server::exit_removed();
            });
        if spawned.is_err() {
            crate::server::exit_removed();
        }
    }
}
