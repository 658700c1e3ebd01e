//! The two unusual ways a member starts: joining a running cluster with an empty data dir
//! (`--initial-cluster-state existing`), and restarting alone with `--force-new-cluster`.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::bail;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType};

use crate::config::Config;
use crate::membership::{Change, ClusterInfo};
use crate::raft::storage::WalStorage;

/// How long asking one peer for the member list may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// A member with no state joining a running cluster: asks the peers named in
/// `--initial-cluster` for the member list, checks that the flags describe that same cluster, and
/// takes its IDs from it (etcd's `GetClusterFromRemotePeers` and `ValidateClusterAndAssignIDs`).
/// Needs a tokio runtime to block on (called from a blocking thread).
pub fn join_existing(cfg: &Config) -> anyhow::Result<ClusterInfo> {
    let local = ClusterInfo::bootstrap(cfg)?;
    let remote_urls: Vec<String> = cfg
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name != cfg.name)
        .flat_map(|(_, urls)| urls.iter().cloned())
        .collect();
    let rt = tokio::runtime::Handle::current();
    let dialer = crate::tls::PeerDialer::from_config(cfg);
    let mut existing = None;
    for url in &remote_urls {
        match rt.block_on(crate::raft::transport::fetch_cluster(
            &dialer,
            url,
            FETCH_TIMEOUT,
        )) {
            Ok(info) => {
                existing = Some(info);
                break;
            }
            Err(e) => tracing::warn!(
                "remote-peer-url" = %url,
                error = %e,
                "failed to get cluster response"
            ),
        }
    }
    let Some(existing) = existing else {
        bail!(
            "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs"
        );
    };
    let members = validate_join(&local, &existing).map_err(|why| {
        anyhow::anyhow!(
            "error validating peerURLs {}: {why}",
            describe_cluster(&existing)
        )
    })?;
    let local_id = members
        .iter()
        .find(|(name, _)| *name == cfg.name)
        .map(|(_, id)| *id)
        .ok_or_else(|| anyhow::anyhow!("member {} is not in the existing cluster", cfg.name))?;
    if existing.removed.contains(&local_id) {
        bail!("{}", crate::raft::peer_service::REMOVED_TEXT);
    }
    let mut info = existing;
    info.local_id = local_id;
    if let Some(m) = info.members.iter_mut().find(|m| m.id == local_id) {
        m.client_urls = cfg.advertise_client_urls.clone();
    }
    tracing::info!(
        "joining existing cluster {:x} as member {:x}",
        info.cluster_id,
        local_id
    );
    Ok(info)
}

/// Matches every existing member (in ID order) with a member of the flags that has the same
/// peer URLs (etcd's `ValidateClusterAndAssignIDs`); returns the flags' names with the existing
/// IDs, or why the flags do not describe the same cluster, in etcd 3.4's words.
fn validate_join(
    local: &ClusterInfo,
    existing: &ClusterInfo,
) -> Result<Vec<(String, u64)>, String> {
    if local.members.len() != existing.members.len() {
        return Err("member count is unequal".to_string());
    }
    let sorted = |urls: &[String]| {
        let mut u = urls.to_vec();
        u.sort();
        u
    };
    let mut existing_members = existing.members.clone();
    existing_members.sort_by_key(|m| m.id);
    let mut assigned = Vec::new();
    for em in &existing_members {
        let want = sorted(&em.peer_urls);
        match local
            .members
            .iter()
            .find(|lm| sorted(&lm.peer_urls) == want)
        {
            Some(lm) => assigned.push((lm.name.clone(), em.id)),
            None => {
                let last = local
                    .members
                    .last()
                    .map(|m| sorted(&m.peer_urls))
                    .unwrap_or_default();
                return Err(format!(
                    "PeerURLs: no match found for existing member ({:x}, [{}]), last resolver error (resolved urls: {:?} != {:?})",
                    em.id,
                    em.peer_urls.join(" "),
                    want.join(","),
                    last.join(",")
                ));
            }
        }
    }
    Ok(assigned)
}

/// The cluster as etcd prints a `RaftCluster` in this error.
fn describe_cluster(c: &ClusterInfo) -> String {
    let members: Vec<String> = c
        .members
        .iter()
        .map(|m| {
            format!(
                "&{{ID:{:x} RaftAttributes:{{PeerURLs:[{}] IsLearner:{}}} Attributes:{{Name:{} ClientURLs:[{}]}}}}",
                m.id,
                m.peer_urls.join(" "),
                m.is_learner,
                m.name,
                m.client_urls.join(" ")
            )
        })
        .collect();
    let removed: Vec<String> = c.removed.iter().map(|id| format!("{id:x}")).collect();
    format!(
        "{{ClusterID:{:x} Members:[{}] RemovedMemberIDs:[{}]}}",
        c.cluster_id,
        members.join(" "),
        removed.join(" ")
    )
}

/// `--force-new-cluster` on a member with state: every other member is removed through
/// committed conf change entries appended after the commit index (uncommitted entries are
/// dropped), and raft's configuration becomes this member alone. The apply loop then removes
/// them from the member list as it applies those entries, as etcd's `restartAsStandaloneNode`.
pub fn force_new_cluster(wal: &WalStorage, info: &ClusterInfo, applied: u64) -> anyhow::Result<()> {
    let local = info.local_id;
    // Members the backend knows, plus any the unapplied part of the log adds.
    let mut ids: BTreeSet<u64> = info.members.iter().map(|m| m.id).collect();
    let commit = wal.hard_state().commit;
    let first = wal.snapshot_meta().index.max(applied) + 1;
    for e in wal.entries_between(first, commit + 1)? {
        if e.get_entry_type() != EntryType::EntryConfChange {
            continue;
        }
        let Ok(cc) = ConfChange::parse_from_bytes(&e.data) else {
            continue;
        };
        match Change::from_conf_change(&cc) {
            Ok(Change::Add(m)) => {
                ids.insert(m.id);
            }
            Ok(Change::Remove(id)) => {
                ids.remove(&id);
            }
            _ => {}
        }
    }
    ids.remove(&local);
    let mut forced = Vec::new();
    for id in &ids {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::RemoveNode);
        cc.node_id = *id;
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.data = cc.write_to_bytes()?.into();
        forced.push(e);
    }
    let commit = wal.force_new_cluster(
        forced,
        ConfState {
            voters: vec![local],
            ..Default::default()
        },
    )?;
    tracing::info!(
        "local-member-id" = %format_args!("{local:x}"),
        "removed-members" = ?ids.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(),
        "commit-index" = commit,
        "forcing restart member as a new single-member cluster"
    );
    Ok(())
}
