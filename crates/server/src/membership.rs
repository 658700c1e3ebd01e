//! Who is in the cluster: member IDs, names and URLs, and the cluster ID. Decided at bootstrap
//! from `--initial-cluster` and kept in the backend, so a restart does not depend on flags.

use anyhow::{bail, Context};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::EtcdError;
use crate::raft::ids;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    #[serde(default)]
    pub is_learner: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: u64,
    pub local_id: u64,
    pub members: Vec<Member>,
    /// IDs removed from the cluster: they may never come back (etcd's members_removed).
    #[serde(default)]
    pub removed: Vec<u64>,
}

/// What a new cluster is bootstrapped from: the `--initial-*` flags (or `snapshot restore`'s).
pub struct InitialCluster<'a> {
    pub name: &'a str,
    pub initial_cluster: &'a [(String, Vec<String>)],
    pub token: &'a str,
    pub advertise_peer_urls: &'a [String],
    pub advertise_client_urls: &'a [String],
}

pub const META_KEY: &str = "oxcd_cluster";

impl ClusterInfo {
    /// The cluster a fresh member bootstraps, exactly as etcd derives it from the same flags.
    pub fn bootstrap(cfg: &Config) -> anyhow::Result<ClusterInfo> {
        ClusterInfo::from_initial(&InitialCluster {
            name: &cfg.name,
            initial_cluster: &cfg.initial_cluster,
            token: &cfg.initial_cluster_token,
            advertise_peer_urls: &cfg.initial_advertise_peer_urls,
            advertise_client_urls: &cfg.advertise_client_urls,
        })
    }

    /// The membership of a new cluster, with etcd's IDs and bootstrap errors.
    pub fn from_initial(cfg: &InitialCluster<'_>) -> anyhow::Result<ClusterInfo> {
        let mut seen_urls = std::collections::HashSet::new();
        for (_, urls) in cfg.initial_cluster {
            if !urls.iter().all(|u| seen_urls.insert(u.as_str())) {
                let mut pairs: Vec<String> = cfg
                    .initial_cluster
                    .iter()
                    .flat_map(|(n, urls)| urls.iter().map(move |u| format!("{n}={u}")))
                    .collect();
                pairs.sort();
                bail!("initial cluster {} has duplicate url", pairs.join(","));
            }
        }
        let mut members = Vec::new();
        for (name, peer_urls) in cfg.initial_cluster {
            members.push(Member {
                id: ids::member_id(peer_urls, cfg.token),
                name: name.clone(),
                peer_urls: peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            });
        }
        let Some(local) = members.iter_mut().find(|m| m.name == cfg.name) else {
            bail!(
                "couldn't find local name {:?} in the initial cluster configuration",
                cfg.name
            );
        };
        let mut advertised = cfg.advertise_peer_urls.to_vec();
        advertised.sort();
        let mut listed = local.peer_urls.clone();
        listed.sort();
        if advertised != listed {
            bail!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (failed to resolve urls)",
                cfg.name,
                local.peer_urls.join(","),
                cfg.advertise_peer_urls.join(",")
            );
        }
        local.client_urls = cfg.advertise_client_urls.to_vec();
        let local_id = local.id;
        let member_ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        let mut seen = member_ids.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != member_ids.len() {
            bail!("--initial-cluster has duplicate peer URLs or names");
        }
        Ok(ClusterInfo {
            cluster_id: ids::cluster_id(&member_ids),
            local_id,
            members,
            removed: Vec::new(),
        })
    }

    pub fn decode(raw: &[u8]) -> anyhow::Result<ClusterInfo> {
        serde_json::from_slice(raw).context("decoding stored cluster membership")
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("membership serializes")
    }
}

/// The live membership, read by the Cluster service and the status endpoints.
pub struct Membership {
    info: RwLock<ClusterInfo>,
    /// Whether this member is a learner: asked on every client request, so kept apart from the
    /// lock and refreshed whenever the list changes.
    local_learner: AtomicBool,
}

fn is_local_learner(info: &ClusterInfo) -> bool {
    info.members
        .iter()
        .any(|m| m.id == info.local_id && m.is_learner)
}

impl Membership {
    pub fn new(info: ClusterInfo) -> Membership {
        Membership {
            local_learner: AtomicBool::new(is_local_learner(&info)),
            info: RwLock::new(info),
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.info.read().cluster_id
    }

    pub fn local_id(&self) -> u64 {
        self.info.read().local_id
    }

    /// Members in ascending ID order, as etcd lists them.
    pub fn members(&self) -> Vec<Member> {
        let mut members = self.info.read().members.clone();
        members.sort_by_key(|m| m.id);
        members
    }

    /// Client URLs change with flags across restarts, as etcd republishes its attributes.
    pub fn set_local_client_urls(&self, urls: Vec<String>) {
        let mut info = self.info.write();
        let local = info.local_id;
        if let Some(m) = info.members.iter_mut().find(|m| m.id == local) {
            m.client_urls = urls;
        }
    }

    /// Applies a member's published name and client URLs; false if the member is unknown.
    pub fn set_attributes(&self, id: u64, name: &str, client_urls: &[String]) -> bool {
        let mut info = self.info.write();
        match info.members.iter_mut().find(|m| m.id == id) {
            Some(m) => {
                m.name = name.to_string();
                m.client_urls = client_urls.to_vec();
                true
            }
            None => false,
        }
    }

    /// Replaces the member list with `info` (from an installed raft snapshot). This member's
    /// identity and its client URLs (from its flags) stay as they are.
    pub fn replace(&self, mut info: ClusterInfo) {
        let mut cur = self.info.write();
        info.local_id = cur.local_id;
        let local_urls = cur
            .members
            .iter()
            .find(|m| m.id == cur.local_id)
            .map(|m| m.client_urls.clone());
        if let (Some(urls), Some(m)) = (
            local_urls,
            info.members.iter_mut().find(|m| m.id == info.local_id),
        ) {
            if !urls.is_empty() {
                m.client_urls = urls;
            }
        }
        self.local_learner
            .store(is_local_learner(&info), Ordering::Release);
        *cur = info;
    }

    pub fn snapshot(&self) -> ClusterInfo {
        self.info.read().clone()
    }
}

/// What a membership conf change entry carries in its context (JSON, as etcd's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfChangeContext {
    pub member: Member,
    /// A learner becoming a voter (an `AddNode` for a member that exists as a learner).
    #[serde(default)]
    pub is_promote: bool,
    /// New peer URLs for an existing member. raft-rs has no `UpdateNode`, so an update rides in
    /// an `AddNode` entry that raft's configuration never sees: only the member list changes.
    #[serde(default)]
    pub is_update: bool,
}

impl Change {
    /// The raft conf change entry that carries this change.
    pub fn to_conf_change(&self) -> raft::eraftpb::ConfChange {
        use raft::eraftpb::ConfChangeType;
        let mut cc = raft::eraftpb::ConfChange {
            node_id: self.node_id(),
            ..Default::default()
        };
        let (ty, ctx) = match self {
            Change::Add(m) => (
                if m.is_learner {
                    ConfChangeType::AddLearnerNode
                } else {
                    ConfChangeType::AddNode
                },
                Some(ConfChangeContext {
                    member: m.clone(),
                    is_promote: false,
                    is_update: false,
                }),
            ),
            Change::Promote(id) => (
                ConfChangeType::AddNode,
                Some(ConfChangeContext {
                    member: Member {
                        id: *id,
                        name: String::new(),
                        peer_urls: vec![],
                        client_urls: vec![],
                        is_learner: false,
                    },
                    is_promote: true,
                    is_update: false,
                }),
            ),
            Change::Remove(_) => (ConfChangeType::RemoveNode, None),
            Change::Update { id, peer_urls } => (
                ConfChangeType::AddNode,
                Some(ConfChangeContext {
                    member: Member {
                        id: *id,
                        name: String::new(),
                        peer_urls: peer_urls.clone(),
                        client_urls: vec![],
                        is_learner: false,
                    },
                    is_promote: false,
                    is_update: true,
                }),
            ),
        };
        cc.set_change_type(ty);
        if let Some(ctx) = ctx {
            cc.context = serde_json::to_vec(&ctx)
                .expect("conf change context serializes")
                .into();
        }
        cc
    }

    /// Decodes a committed conf change entry's change.
    pub fn from_conf_change(cc: &raft::eraftpb::ConfChange) -> anyhow::Result<Change> {
        use raft::eraftpb::ConfChangeType;
        let ctx = || -> anyhow::Result<ConfChangeContext> {
            serde_json::from_slice(&cc.context).context("decoding conf change context")
        };
        Ok(match cc.get_change_type() {
            ConfChangeType::RemoveNode => Change::Remove(cc.node_id),
            ConfChangeType::AddLearnerNode => {
                let mut m = ctx()?.member;
                m.is_learner = true;
                Change::Add(m)
            }
            ConfChangeType::AddNode => {
                let c = ctx()?;
                if c.is_promote {
                    Change::Promote(cc.node_id)
                } else if c.is_update {
                    Change::Update {
                        id: cc.node_id,
                        peer_urls: c.member.peer_urls,
                    }
                } else {
                    let mut m = c.member;
                    m.is_learner = false;
                    Change::Add(m)
                }
            }
        })
    }

    /// Whether raft's own configuration changes with it (an update of URLs does not).
    pub fn changes_raft_config(&self) -> bool {
        !matches!(self, Change::Update { .. })
    }
}

/// A membership change, decoded from a raft conf change entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add(Member),
    Promote(u64),
    Remove(u64),
    Update { id: u64, peer_urls: Vec<String> },
}

impl Change {
    /// The raft node the change is about.
    pub fn node_id(&self) -> u64 {
        match self {
            Change::Add(m) => m.id,
            Change::Promote(id) | Change::Remove(id) => *id,
            Change::Update { id, .. } => *id,
        }
    }
}

impl Membership {
    pub fn member(&self, id: u64) -> Option<Member> {
        self.info
            .read()
            .members
            .iter()
            .find(|m| m.id == id)
            .cloned()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.info.read().removed.contains(&id)
    }

    /// Whether this member is a learner (it refuses most client requests).
    pub fn local_is_learner(&self) -> bool {
        self.local_learner.load(Ordering::Acquire)
    }

    /// Voting members (not learners), in ID order.
    pub fn voters(&self) -> Vec<Member> {
        self.members()
            .into_iter()
            .filter(|m| !m.is_learner)
            .collect()
    }

    /// Whether `change` may be applied to the current membership; the same answer on every
    /// member, since every member applies the same entries in the same order.
    pub fn validate(&self, change: &Change, max_learners: usize) -> Result<(), EtcdError> {
        let info = self.info.read();
        if info.removed.contains(&change.node_id()) {
            return Err(EtcdError::MemberNotFound);
        }
        let find = |id: u64| info.members.iter().find(|m| m.id == id);
        let urls_taken_by_other = |id: u64, urls: &[String]| {
            info.members
                .iter()
                .filter(|m| m.id != id)
                .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
        };
        match change {
            Change::Add(m) => {
                if find(m.id).is_some() {
                    return Err(EtcdError::MemberExist);
                }
                if urls_taken_by_other(m.id, &m.peer_urls) {
                    return Err(EtcdError::PeerUrlExist);
                }
                if m.is_learner {
                    let learners = info.members.iter().filter(|m| m.is_learner).count();
                    if learners + 1 > max_learners {
                        return Err(EtcdError::TooManyLearners);
                    }
                }
            }
            Change::Promote(id) => match find(*id) {
                None => return Err(EtcdError::MemberNotFound),
                Some(m) if !m.is_learner => return Err(EtcdError::MemberNotLearner),
                Some(_) => {}
            },
            Change::Remove(id) => {
                if find(*id).is_none() {
                    return Err(EtcdError::MemberNotFound);
                }
            }
            Change::Update { id, peer_urls } => {
                if find(*id).is_none() {
                    return Err(EtcdError::MemberNotFound);
                }
                if urls_taken_by_other(*id, peer_urls) {
                    return Err(EtcdError::PeerUrlExist);
                }
            }
        }
        Ok(())
    }

    /// Applies a validated change.
    pub fn apply(&self, change: &Change) {
        let mut info = self.info.write();
        match change {
            Change::Add(m) => {
                let mut m = m.clone();
                if m.id == info.local_id {
                    // Our own record may already carry our client URLs.
                    if let Some(old) = info.members.iter().find(|x| x.id == m.id) {
                        m.client_urls = old.client_urls.clone();
                    }
                }
                info.members.retain(|x| x.id != m.id);
                info.members.push(m);
            }
            Change::Promote(id) => {
                if let Some(m) = info.members.iter_mut().find(|m| m.id == *id) {
                    m.is_learner = false;
                }
            }
            Change::Remove(id) => {
                info.members.retain(|m| m.id != *id);
                if !info.removed.contains(id) {
                    info.removed.push(*id);
                }
            }
            Change::Update { id, peer_urls } => {
                if let Some(m) = info.members.iter_mut().find(|m| m.id == *id) {
                    m.peer_urls = peer_urls.clone();
                }
            }
        }
        self.local_learner
            .store(is_local_learner(&info), Ordering::Release);
    }

    /// etcd's `IsReadyToAddVotingMember`: after adding one more voter, a quorum of the voters
    /// must already be started (have published a name).
    pub fn ready_to_add_voter(&self) -> bool {
        let voters = self.voters();
        let started = voters.iter().filter(|m| !m.name.is_empty()).count();
        let members = voters.len() + 1;
        if started == 1 && members == 2 {
            // Growing a one-member cluster (after a restore or --force-new-cluster).
            return true;
        }
        started > members / 2
    }

    /// etcd's `IsReadyToRemoveVotingMember`: the voters left must hold a quorum of started ones.
    pub fn ready_to_remove_voter(&self, id: u64) -> bool {
        let rest: Vec<Member> = self.voters().into_iter().filter(|m| m.id != id).collect();
        let started = rest.iter().filter(|m| !m.name.is_empty()).count();
        started > rest.len() / 2
    }

    /// etcd's `IsReadyToPromoteMember`: the promoted learner counts as a started voter.
    pub fn ready_to_promote(&self) -> bool {
        let voters = self.voters();
        let started = voters.iter().filter(|m| !m.name.is_empty()).count() + 1;
        let members = voters.len() + 1;
        started > members / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_flags, Config};

    fn cfg(args: &[&str]) -> Config {
        let mut v = vec!["oxcd".to_string()];
        v.extend(args.iter().map(|a| a.to_string()));
        Config::from_flags(parse_flags(&v, &[]).expect("flags parse")).expect("valid config")
    }

    #[test]
    fn bootstrap_errors_match_etcd() {
        let c = cfg(&[
            "--name",
            "foo",
            "--initial-cluster",
            "bar=http://127.0.0.1:1",
        ]);
        let e = ClusterInfo::bootstrap(&c).unwrap_err().to_string();
        assert_eq!(
            e,
            "couldn't find local name \"foo\" in the initial cluster configuration"
        );
        let c = cfg(&[
            "--name",
            "a",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:1",
            "--initial-cluster",
            "b=http://127.0.0.1:1,a=http://127.0.0.1:1",
        ]);
        let e = ClusterInfo::bootstrap(&c).unwrap_err().to_string();
        assert_eq!(
            e,
            "initial cluster a=http://127.0.0.1:1,b=http://127.0.0.1:1 has duplicate url"
        );
    }

    #[test]
    fn three_members_get_etcds_ids() {
        let c = cfg(&[
            "--name",
            "m1",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:41001",
            "--initial-cluster",
            "m1=http://127.0.0.1:41001,m2=http://127.0.0.1:41002,m3=http://127.0.0.1:41003",
        ]);
        let info = ClusterInfo::bootstrap(&c).unwrap();
        assert_eq!(info.members.len(), 3);
        assert_eq!(info.local_id, info.members[0].id);
        let ids: Vec<u64> = info.members.iter().map(|m| m.id).collect();
        assert_eq!(info.cluster_id, ids::cluster_id(&ids));
    }

    fn member(id: u64, name: &str, url: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.to_string(),
            peer_urls: vec![url.to_string()],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    fn three() -> Membership {
        Membership::new(ClusterInfo {
            cluster_id: 9,
            local_id: 1,
            members: vec![
                member(1, "a", "http://h:1", false),
                member(2, "b", "http://h:2", false),
                member(3, "c", "http://h:3", false),
            ],
            removed: vec![],
        })
    }

    #[test]
    fn conf_change_round_trips_through_raft_entries() {
        for change in [
            Change::Add(member(7, "", "http://h:7", true)),
            Change::Add(member(8, "", "http://h:8", false)),
            Change::Promote(7),
            Change::Remove(2),
            Change::Update {
                id: 3,
                peer_urls: vec!["http://h:33".into()],
            },
        ] {
            let cc = change.to_conf_change();
            assert_eq!(Change::from_conf_change(&cc).unwrap(), change);
        }
    }

    #[test]
    fn validation_gives_etcds_errors() {
        let m = three();
        let add = |id, url: &str, learner| Change::Add(member(id, "", url, learner));
        assert_eq!(
            m.validate(&add(1, "http://h:9", false), 1),
            Err(EtcdError::MemberExist)
        );
        assert_eq!(
            m.validate(&add(9, "http://h:2", false), 1),
            Err(EtcdError::PeerUrlExist)
        );
        assert_eq!(m.validate(&add(9, "http://h:9", true), 1), Ok(()));
        m.apply(&add(9, "http://h:9", true));
        assert!(m.member(9).unwrap().is_learner);
        assert_eq!(
            m.validate(&add(10, "http://h:10", true), 1),
            Err(EtcdError::TooManyLearners)
        );
        assert_eq!(m.validate(&add(10, "http://h:10", true), 2), Ok(()));
        assert_eq!(
            m.validate(&Change::Promote(2), 1),
            Err(EtcdError::MemberNotLearner)
        );
        assert_eq!(
            m.validate(&Change::Promote(42), 1),
            Err(EtcdError::MemberNotFound)
        );
        m.apply(&Change::Promote(9));
        assert!(!m.member(9).unwrap().is_learner);
        assert_eq!(
            m.validate(&Change::Remove(42), 1),
            Err(EtcdError::MemberNotFound)
        );
        let update = Change::Update {
            id: 3,
            peer_urls: vec!["http://h:1".into()],
        };
        assert_eq!(m.validate(&update, 1), Err(EtcdError::PeerUrlExist));
        m.apply(&Change::Remove(3));
        assert!(m.is_removed(3));
        assert_eq!(
            m.validate(&add(3, "http://h:3", false), 1),
            Err(EtcdError::MemberNotFound),
            "a removed ID never comes back"
        );
    }

    #[test]
    fn strict_checks_count_started_voters() {
        let m = three();
        assert!(m.ready_to_add_voter());
        m.apply(&Change::Add(member(4, "", "http://h:4", false)));
        // 4 voters, 3 started: a fifth needs 3 of 5 started.
        assert!(m.ready_to_add_voter());
        m.apply(&Change::Add(member(5, "", "http://h:5", false)));
        // 5 voters, 3 started: a sixth needs 4 of 6.
        assert!(!m.ready_to_add_voter());
        assert!(!m.ready_to_remove_voter(1), "2 started of 4 left");
        assert!(m.ready_to_remove_voter(4));

        let solo = Membership::new(ClusterInfo {
            cluster_id: 9,
            local_id: 1,
            members: vec![member(1, "a", "http://h:1", false)],
            removed: vec![],
        });
        assert!(solo.ready_to_add_voter(), "growing a one-member cluster");
        solo.apply(&Change::Add(member(2, "", "http://h:2", false)));
        assert!(
            !solo.ready_to_add_voter(),
            "etcd: not enough started members"
        );
    }

    #[test]
    fn local_learner_flag_follows_the_list() {
        let m = Membership::new(ClusterInfo {
            cluster_id: 9,
            local_id: 7,
            members: vec![member(1, "a", "http://h:1", false)],
            removed: vec![],
        });
        assert!(!m.local_is_learner());
        m.apply(&Change::Add(member(7, "", "http://h:7", true)));
        assert!(m.local_is_learner());
        m.apply(&Change::Promote(7));
        assert!(!m.local_is_learner());
        let mut info = m.snapshot();
        info.members[1].is_learner = true;
        m.replace(info);
        assert!(m.local_is_learner());
    }
}
