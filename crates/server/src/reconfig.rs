//! Runtime membership changes and leader transfer, as the Cluster and Maintenance services ask
//! for them: etcd's safety checks before proposing, then a raft conf change whose outcome the
//! apply loop decides (see `apply_conf`).

use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::ResponseHeader;

use crate::error::{EtcdError, Result};
use crate::membership::{Change, ClusterInfo, Member};
use crate::raft::ids;
use crate::raft::peer_service::PeerControl;
use crate::server::{ApplyResponse, EtcdServer};

/// How long every voting peer must have been connected before a change that could cost the
/// quorum is allowed (etcd's HealthInterval).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// A learner may be promoted once its log holds this share of the leader's.
const LEARNER_READY_PERCENT: f64 = 0.9;

/// A membership change's answer: the header, the member it was about, the members after it.
pub struct MembersReply {
    pub header: ResponseHeader,
    pub member: Option<Member>,
    pub members: Vec<Member>,
}

fn members_reply(r: ApplyResponse) -> Result<MembersReply> {
    match r {
        ApplyResponse::Members {
            header,
            member,
            members,
        } => Ok(MembersReply {
            header,
            member,
            members,
        }),
        other => Err(EtcdError::Internal(format!(
            "unexpected reply to a membership change: {other:?}"
        ))),
    }
}

/// Peer URLs as etcd's `types.NewURLs` accepts them.
fn check_urls(urls: &[String]) -> Result<()> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    for u in urls {
        let ok = crate::config::Url::parse(u).is_ok_and(|p| !p.host.is_empty());
        if !ok {
            return Err(EtcdError::MemberBadUrls);
        }
    }
    Ok(())
}

impl EtcdServer {
    /// etcd's `isConnectedFullySince`: every other voter's stream has been up since `since`.
    fn connected_to_all_voters_since(&self, since: Instant) -> bool {
        let me = self.member_id();
        self.membership
            .voters()
            .iter()
            .filter(|m| m.id != me)
            .all(|m| {
                self.transport
                    .active_since(m.id)
                    .is_some_and(|t| t <= since)
            })
    }

    /// Voters connected since `since`, this member included (etcd's `numConnectedSince`).
    fn voters_connected_since(&self, since: Instant) -> usize {
        let me = self.member_id();
        self.membership
            .voters()
            .iter()
            .filter(|m| {
                m.id == me
                    || self
                        .transport
                        .active_since(m.id)
                        .is_some_and(|t| t <= since)
            })
            .count()
    }

    fn health_horizon() -> Instant {
        Instant::now()
            .checked_sub(HEALTH_INTERVAL)
            .unwrap_or_else(Instant::now)
    }

    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<MembersReply> {
        check_urls(&peer_urls)?;
        let member = Member {
            id: ids::runtime_member_id(&peer_urls),
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner,
        };
        if self.cfg.strict_reconfig_check {
            if !is_learner && !self.membership.ready_to_add_voter() {
                tracing::warn!("rejecting member add request; not enough healthy members");
                return Err(EtcdError::NotEnoughStartedMembers);
            }
            if !self.connected_to_all_voters_since(Self::health_horizon()) {
                tracing::warn!(
                    "rejecting member add request; local member has not been connected to all peers, reconfigure breaks active quorum"
                );
                return Err(EtcdError::UnhealthyCluster);
            }
        }
        let cc = Change::Add(member).to_conf_change();
        members_reply(self.raft.propose_conf_change(cc).await?)
    }

    pub async fn member_remove(&self, id: u64) -> Result<MembersReply> {
        if self.cfg.strict_reconfig_check {
            self.may_remove_member(id)?;
        }
        let cc = Change::Remove(id).to_conf_change();
        members_reply(self.raft.propose_conf_change(cc).await?)
    }

    /// etcd's `mayRemoveMember`: removing a voter must leave a started, connected quorum.
    fn may_remove_member(&self, id: u64) -> Result<()> {
        let Some(m) = self.membership.member(id) else {
            // Unknown IDs fail when applied, with etcd's "member not found".
            return Ok(());
        };
        if m.is_learner {
            return Ok(());
        }
        if !self.membership.ready_to_remove_voter(id) {
            tracing::warn!("rejecting member remove request; not enough healthy members");
            return Err(EtcdError::NotEnoughStartedMembers);
        }
        // A member that is down is not part of the active quorum: removing it is safe.
        if id != self.member_id() && self.transport.active_since(id).is_none() {
            return Ok(());
        }
        let voters = self.membership.voters().len();
        let active = self.voters_connected_since(Self::health_horizon());
        if active.saturating_sub(1) < 1 + (voters - 1) / 2 {
            tracing::warn!(
                "rejecting member remove request; local member has not been connected to all peers, reconfigure breaks active quorum"
            );
            return Err(EtcdError::UnhealthyCluster);
        }
        Ok(())
    }

    pub async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<MembersReply> {
        check_urls(&peer_urls)?;
        let cc = Change::Update { id, peer_urls }.to_conf_change();
        members_reply(self.raft.propose_conf_change(cc).await?)
    }

    /// Promotes learner `id`. Only the leader knows how far the learner's log is, so a follower
    /// hands the request to the leader over the peer protocol.
    pub async fn member_promote(&self, id: u64) -> Result<MembersReply> {
        match self.raft.progress().await? {
            Some(progress) => {
                if let Some(matched) = progress.matched.get(&id) {
                    if (*matched as f64) < progress.leader_match as f64 * LEARNER_READY_PERCENT {
                        return Err(EtcdError::LearnerNotReady);
                    }
                }
                if self.cfg.strict_reconfig_check && !self.membership.ready_to_promote() {
                    return Err(EtcdError::NotEnoughStartedMembers);
                }
                let cc = Change::Promote(id).to_conf_change();
                members_reply(self.raft.propose_conf_change(cc).await?)
            }
            None => self.promote_at_leader(id).await,
        }
    }

    async fn promote_at_leader(&self, id: u64) -> Result<MembersReply> {
        let leader = self.raft.leader();
        let Some(lm) = (leader != 0)
            .then(|| self.membership.member(leader))
            .flatten()
        else {
            return Err(EtcdError::NoLeader);
        };
        let mut last = EtcdError::NoLeader;
        for url in &lm.peer_urls {
            match crate::raft::transport::promote_at(
                self.transport.dialer(),
                url,
                id,
                crate::server::request_timeout(&self.cfg),
            )
            .await
            {
                Ok(members) => {
                    // A read barrier brings this member up to the promotion, so its own member
                    // list agrees with the answer; the promotion stands even if it fails.
                    let _ = self.read_index().await;
                    return Ok(MembersReply {
                        header: self.header_at(0),
                        member: members.iter().find(|m| m.id == id).cloned(),
                        members,
                    });
                }
                Err(e @ crate::raft::transport::ForwardError::Refused(_)) => {
                    return Err(e.into_etcd())
                }
                Err(e) => last = e.into_etcd(),
            }
        }
        Err(last)
    }

    /// MoveLeader: hands leadership to voting member `to` and waits until it leads.
    pub async fn move_leader(&self, to: u64) -> Result<()> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        match self.membership.member(to) {
            Some(m) if !m.is_learner => {}
            _ => return Err(EtcdError::BadLeaderTransferee),
        }
        let from = self.member_id();
        tracing::info!("leadership transfer starting: from {from:x} to {to:x}");
        self.raft.transfer_leader(to)?;
        let tick = Duration::from_millis(self.cfg.heartbeat_interval_ms);
        let deadline = Instant::now() + crate::server::request_timeout(&self.cfg);
        while self.raft.leader() != to {
            if Instant::now() >= deadline {
                return Err(EtcdError::LeaderTransferTimeout);
            }
            tokio::time::sleep(tick).await;
        }
        tracing::info!("leadership transfer finished: from {from:x} to {to:x}");
        Ok(())
    }
}

#[tonic::async_trait]
impl PeerControl for EtcdServer {
    fn cluster(&self) -> ClusterInfo {
        self.membership.snapshot()
    }

    fn is_removed(&self, id: u64) -> bool {
        self.membership.is_removed(id)
    }

    async fn promote(&self, id: u64) -> Result<Vec<Member>> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        Ok(self.member_promote(id).await?.members)
    }

    fn hash_kv(&self, revision: i64) -> Result<oxcd_api::oxcdpeer::HashKvResponse> {
        crate::corrupt::local_hash_kv(&self.store, self.member_id(), revision)
    }
}
