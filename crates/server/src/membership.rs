//! Who is in the cluster: member IDs, names and URLs, and the cluster ID. Decided at bootstrap
//! from `--initial-cluster` and kept in the backend, so a restart does not depend on flags.

use anyhow::{bail, Context};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::config::Config;
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
}

pub const META_KEY: &str = "oxcd_cluster";

impl ClusterInfo {
    /// The cluster a fresh member bootstraps, exactly as etcd derives it from the same flags.
    pub fn bootstrap(cfg: &Config) -> anyhow::Result<ClusterInfo> {
        let mut seen_urls = std::collections::HashSet::new();
        for (_, urls) in &cfg.initial_cluster {
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
        for (name, peer_urls) in &cfg.initial_cluster {
            members.push(Member {
                id: ids::member_id(peer_urls, &cfg.initial_cluster_token),
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
        let mut advertised = cfg.initial_advertise_peer_urls.clone();
        advertised.sort();
        let mut listed = local.peer_urls.clone();
        listed.sort();
        if advertised != listed {
            bail!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (failed to resolve urls)",
                cfg.name,
                local.peer_urls.join(","),
                cfg.initial_advertise_peer_urls.join(",")
            );
        }
        local.client_urls = cfg.advertise_client_urls.clone();
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
}

impl Membership {
    pub fn new(info: ClusterInfo) -> Membership {
        Membership {
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
        *cur = info;
    }

    pub fn snapshot(&self) -> ClusterInfo {
        self.info.read().clone()
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
}
