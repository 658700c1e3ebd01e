//! `EtcdServer`: the handle every gRPC service holds. It owns the stores and the way into raft.
//!
//! Reads go straight to `store` (after `read_index` for linearizable ones); every write goes
//! through `propose`, which returns only once the entry has been applied on this member.

use std::sync::Arc;

use oxcd_api::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, InternalRaftRequest, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
};

use anyhow::Context;

use crate::apply::Applier;
use crate::config::Config;
use crate::error::Result;
use crate::lease::Lessor;
use crate::membership::{ClusterInfo, Membership, META_KEY};
use crate::mvcc::{MvccStore, WatchHub};
use crate::raft::node::{NodeLoop, NodeStatus};
use crate::raft::peer_service::{peer_routes, PeerService};
use crate::raft::snapshot::Snapshotter;
use crate::raft::storage::WalStorage;
use crate::raft::transport::Transport;
use crate::raft::waiters::Waiters;
use crate::raft::{HandleParts, RaftHandle};

/// What applying one proposal produced; the header is already filled in by the apply loop.
#[derive(Debug, Clone)]
pub enum ApplyResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// Requests whose response carries nothing but the header.
    Header(ResponseHeader),
    /// An auth request: the header and what it answers.
    Auth(ResponseHeader, crate::auth::apply::AuthReply),
    /// An alarm request (etcd answers it without a header).
    Alarm(oxcd_api::etcdserverpb::AlarmResponse),
    /// A membership change: the member it was about and the members after it.
    Members {
        header: ResponseHeader,
        member: Option<crate::membership::Member>,
        members: Vec<crate::membership::Member>,
    },
}

pub struct EtcdServer {
    pub cfg: Config,
    pub store: Arc<MvccStore>,
    pub lessor: Arc<Lessor>,
    pub watch_hub: Arc<WatchHub>,
    pub raft: RaftHandle,
    pub membership: Arc<Membership>,
    pub wal: WalStorage,
    pub transport: Transport,
    /// Active alarms and the backend quota.
    pub alarms: Arc<crate::alarm::Alarms>,
    /// Users, roles, permissions and tokens.
    pub auth: Arc<crate::auth::AuthStore>,
}

impl EtcdServer {
    pub fn cluster_id(&self) -> u64 {
        self.raft.cluster_id()
    }

    pub fn member_id(&self) -> u64 {
        self.raft.member_id()
    }

    /// Response header at the store's current revision.
    pub fn header(&self) -> ResponseHeader {
        self.header_at(self.store.current_revision())
    }

    pub fn header_at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id(),
            member_id: self.member_id(),
            revision,
            raft_term: self.raft.term(),
        }
    }

    /// Replicates `req` through raft and waits until this member has applied it.
    pub async fn propose(&self, req: InternalRaftRequest) -> Result<ApplyResponse> {
        self.raft.propose(req).await
    }

    /// Replicates `req` on behalf of `caller`: the entry carries the caller's identity, which the
    /// apply loop checks. An entry refused because auth changed since the identity was resolved
    /// is proposed again with the identity resolved anew, as etcd does.
    pub async fn propose_as(
        &self,
        caller: &crate::auth::Caller,
        mut req: InternalRaftRequest,
    ) -> Result<ApplyResponse> {
        let mut attempts = 0;
        loop {
            let info = self.auth_info(caller).await?;
            let header = req.header.get_or_insert_with(Default::default);
            header.id = 0;
            header.username = info
                .as_ref()
                .map(|i| i.username.clone())
                .unwrap_or_default();
            header.auth_revision = info.as_ref().map_or(0, |i| i.revision);
            attempts += 1;
            match self.raft.propose(req.clone()).await {
                Err(crate::error::EtcdError::AuthOldRevision) if attempts < AUTH_RETRIES => {}
                r => return r,
            }
        }
    }

    /// Replicates a request the member makes itself (a lease expiring), which may touch any
    /// key: it runs as the root user, as etcd's do.
    pub async fn propose_as_root(&self, mut req: InternalRaftRequest) -> Result<ApplyResponse> {
        if self.auth.enabled() {
            let header = req.header.get_or_insert_with(Default::default);
            header.username = crate::auth::store::ROOT.to_string();
            header.auth_revision = self.auth.revision();
        }
        self.raft.propose(req).await
    }

    /// Refuses a caller without the root role (while auth is enabled).
    pub async fn check_admin(&self, caller: &crate::auth::Caller) -> Result<()> {
        let who = self.auth_info(caller).await?;
        self.auth.check_admin(who.as_ref())
    }

    /// The caller's identity, checked: an invalid token fails the call. A simple token made by
    /// an entry this member has not applied yet (the client authenticated on a member ahead of
    /// this one) is looked up again once it has.
    pub async fn auth_info(
        &self,
        caller: &crate::auth::Caller,
    ) -> Result<Option<crate::auth::AuthInfo>> {
        match self.auth.resolve(caller) {
            Err(crate::error::EtcdError::InvalidAuthToken) => {
                let index = caller
                    .token
                    .as_deref()
                    .and_then(crate::auth::token::simple_token_index);
                match index {
                    Some(i) if i > self.raft.applied_index() => {
                        let wait = self.raft.wait_applied(i);
                        let _ = tokio::time::timeout(request_timeout(&self.cfg), wait).await;
                        self.auth.resolve(caller)
                    }
                    _ => Err(crate::error::EtcdError::InvalidAuthToken),
                }
            }
            r => r,
        }
    }

    /// Waits until this member has applied everything committed before the call (ReadIndex),
    /// so a read that follows sees every write acknowledged before it started.
    pub async fn read_index(&self) -> Result<()> {
        self.raft.read_index().await
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }
}

/// How often a proposal refused for an outdated auth revision is re-tried.
const AUTH_RETRIES: u32 = 3;

/// `<data-dir>/member/snap`: the backend and the raft snapshot files.
fn snap_dir(cfg: &Config) -> std::path::PathBuf {
    let db = cfg.backend_path();
    db.parent().map_or_else(|| db.clone(), |d| d.to_path_buf())
}

/// How long a proposal may wait to be applied before the client gets "request timed out":
/// etcd's 5 s plus two election timeouts. Also bounds requests forwarded to other members.
pub fn request_timeout(cfg: &Config) -> std::time::Duration {
    std::time::Duration::from_millis(5000 + 2 * cfg.election_timeout_ms)
}

impl EtcdServer {
    /// Opens (or bootstraps) the member's data dir and starts the raft node and apply threads.
    pub fn start(cfg: Config) -> anyhow::Result<Arc<EtcdServer>> {
        let store = Arc::new(crate::corrupt::open_backend(
            &cfg.backend_path(),
            &cfg.wal_dir,
        )?);
        let wal = WalStorage::open(&cfg.wal_dir)
            .with_context(|| format!("opening WAL {}", cfg.wal_dir.display()))?;

        let restarting = !wal.is_empty();
        let info = if wal.is_empty() {
            let info = if cfg.initial_cluster_state_new {
                let info = ClusterInfo::bootstrap(&cfg)?;
                let voters: Vec<u64> = info.members.iter().map(|m| m.id).collect();
                wal.bootstrap(raft::eraftpb::ConfState {
                    voters,
                    ..Default::default()
                })?;
                tracing::info!(
                    "starting a new cluster: cluster-id {:x}, local-member-id {:x}",
                    info.cluster_id,
                    info.local_id
                );
                info
            } else {
                // raft's state (configuration and data) arrives with the leader's snapshot.
                crate::bootstrap::join_existing(&cfg)?
            };
            let mut batch = store.write()?;
            batch.meta_put(META_KEY, &info.encode())?;
            if cfg.initial_cluster_state_new {
                // The backend holds the bootstrap state the log starts after.
                let bootstrap = crate::raft::storage::BOOTSTRAP_INDEX;
                batch.set_consistent_index(bootstrap, 1);
            }
            batch.commit(true)?;
            info
        } else {
            let raw = store.meta_get(META_KEY)?.with_context(|| {
                format!(
                    "the WAL exists but the backend {} has no cluster membership: data dir is damaged",
                    cfg.backend_path().display()
                )
            })?;
            let mut info = ClusterInfo::decode(&raw)?;
            let snap = wal.snapshot_meta();
            if snap.index > store.consistent_index() {
                // A snapshot from the leader was recorded in the WAL, but the member stopped
                // before its database replaced the backend: install it now.
                let name = crate::raft::snapshot::file_name(snap.term, snap.index);
                let path = snap_dir(&cfg).join(&name);
                if !path.exists() {
                    anyhow::bail!(
                        "the WAL starts after a snapshot at index {} but the backend is at index {} and {} is missing: data dir is damaged",
                        snap.index,
                        store.consistent_index(),
                        path.display()
                    );
                }
                tracing::info!(
                    "snapshot-index" = snap.index,
                    "installing the database of a snapshot received before the restart"
                );
                info = crate::apply::install_snapshot_db(
                    &store,
                    &path,
                    (snap.index, snap.term),
                    info.local_id,
                )
                .with_context(|| format!("installing snapshot {}", path.display()))?;
            }
            if info.removed.contains(&info.local_id) {
                // It applied its own removal before it stopped: as etcd, stop again, quietly.
                exit_removed();
            }
            if cfg.force_new_cluster {
                crate::bootstrap::force_new_cluster(&wal, &info, store.consistent_index())?;
            }
            tracing::info!(
                "restarting local member: cluster-id {:x}, local-member-id {:x}, commit-index {}",
                info.cluster_id,
                info.local_id,
                wal.hard_state().commit
            );
            info
        };
        if restarting && cfg.initial_corrupt_check {
            // Before raft starts and anything is served, as etcd does.
            crate::corrupt::initial_check(&cfg, &store, &info)?;
        }
        let alarms = Arc::new(crate::alarm::Alarms::load(
            &store,
            crate::quota::Quota::from_flag(cfg.quota_backend_bytes),
        )?);
        let auth = Arc::new(crate::auth::AuthStore::load(&store, &cfg)?);
        let membership = Arc::new(Membership::new(info.clone()));
        membership.set_local_client_urls(cfg.advertise_client_urls.clone());

        // The backend may be ahead of the persisted commit index (the hard state is synced
        // lazily); everything applied was committed, so raft may start from there.
        let applied = store.consistent_index();
        let mut hs = wal.hard_state();
        let last = raft::Storage::last_index(&wal).map_err(|e| anyhow::anyhow!("{e}"))?;
        if restarting && applied > last {
            // Entries the backend applied are gone from the log (a damaged WAL cut short):
            // raft cannot start from a commit index past its log, and going on would give new
            // entries indexes the backend has already applied, skipping them.
            anyhow::bail!(
                "the WAL {} ends at index {last} but the backend {} has applied up to index \
                 {applied}: the WAL lost applied entries and is damaged",
                cfg.wal_dir.display(),
                cfg.backend_path().display()
            );
        }
        if hs.commit < applied {
            hs.commit = applied;
            wal.append(&[], Some(&hs), true)?;
        }

        let lessor = Arc::new(Lessor::for_timing(
            cfg.heartbeat_interval_ms,
            cfg.election_timeout_ms,
        ));
        lessor.recover(store.leases()?, store.keys_with_lease()?);
        wal.enable_snapshots(Snapshotter::new(
            snap_dir(&cfg),
            store.clone(),
            cfg.max_snapshots,
        ));
        let watch_hub = WatchHub::new(store.clone());
        watch_hub.set_progress_interval(cfg.watch_progress_notify_interval);

        let raft_cfg = raft::Config {
            id: info.local_id,
            election_tick: cfg.election_ticks(),
            heartbeat_tick: 1,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 512,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let logger = crate::raft::logger::raft_logger();
        let mut node = raft::RawNode::new(&raft_cfg, wal.clone(), &logger)?;
        let sole_voter = node.raft.prs().conf().voters().ids().len() == 1
            && node.raft.prs().conf().voters().contains(info.local_id);
        if sole_voter {
            // Nobody else can vote: waiting an election timeout would only delay start-up.
            node.campaign()?;
        }

        let status = Arc::new(NodeStatus::default());
        status
            .term
            .store(node.raft.term, std::sync::atomic::Ordering::Release);
        let waiters = Arc::new(Waiters::default());
        let (node_tx, node_rx) = crossbeam_channel::unbounded();
        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let (applied_tx, applied_rx) = tokio::sync::watch::channel(applied);

        let transport = Transport::new(
            info.cluster_id,
            info.local_id,
            node_tx.clone(),
            tokio::runtime::Handle::current(),
            snap_dir(&cfg),
            crate::tls::PeerDialer::from_config(&cfg),
        );
        for m in info.members.iter().filter(|m| m.id != info.local_id) {
            transport.add_peer(m.id, m.peer_urls.clone());
        }
        let applier = Applier {
            store: store.clone(),
            lessor: lessor.clone(),
            watch_hub: watch_hub.clone(),
            waiters: waiters.clone(),
            status: status.clone(),
            node_tx: node_tx.clone(),
            applied_tx,
            storage: wal.clone(),
            member_id: info.local_id,
            cluster_id: info.cluster_id,
            snapshot_count: cfg.snapshot_count,
            membership: membership.clone(),
            max_snapshots: cfg.max_snapshots,
            conf: crate::apply_conf::ConfApplier {
                membership: membership.clone(),
                transport: transport.clone(),
                node_tx: node_tx.clone(),
                local_id: info.local_id,
                max_learners: cfg.max_learners,
                stop_delay: std::time::Duration::from_millis(10 * cfg.heartbeat_interval_ms),
            },
            alarms: alarms.clone(),
            auth: auth.clone(),
        };
        std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || applier.run(apply_rx))?;
        let node_loop = NodeLoop {
            node,
            storage: wal.clone(),
            rx: node_rx,
            apply_tx,
            status: status.clone(),
            waiters: waiters.clone(),
            on_step_down: {
                let lessor = lessor.clone();
                Box::new(move || lessor.demote())
            },
            peers: Box::new(transport.clone()),
            pending_props: Default::default(),
            tick: std::time::Duration::from_millis(cfg.heartbeat_interval_ms),
            snap_dir: snap_dir(&cfg),
        };
        std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || node_loop.run())?;

        let raft = RaftHandle::new(HandleParts {
            tx: node_tx,
            status,
            waiters: waiters.clone(),
            applied: applied_rx,
            member_id: info.local_id,
            cluster_id: info.cluster_id,
            max_request_bytes: cfg.max_request_bytes as usize,
            request_timeout: request_timeout(&cfg),
        });
        alarms.spawn_raiser(raft.clone(), waiters.clone());
        Ok(Arc::new(EtcdServer {
            cfg,
            store,
            lessor,
            watch_hub,
            raft,
            membership,
            wal,
            transport,
            alarms,
            auth,
        }))
    }
}

impl EtcdServer {
    /// Binds every --listen-peer-urls address and serves the peer protocol on it (over TLS for
    /// `https://` URLs). Binding happens before returning, so a taken port fails start-up.
    pub async fn serve_peers(self: &Arc<Self>) -> anyhow::Result<()> {
        let tls = crate::tls::peer_acceptor(&self.cfg)?;
        for url in &self.cfg.listen_peer_urls {
            let listener = crate::http::bind(url).await?;
            let svc = PeerService::new(
                self.cluster_id(),
                self.member_id(),
                self.raft.node_sender(),
                snap_dir(&self.cfg),
            )
            .with_control(self.clone());
            // Followers forward lease renewals and TTL queries to the leader's peer port.
            let mut routes = peer_routes(svc);
            routes.add_service(oxcd_api::etcdserverpb::lease_server::LeaseServer::new(
                crate::grpc::lease::LeaseService::new(self.clone()),
            ));
            let app = routes.routes().into_axum_router();
            let raw = url.raw.clone();
            let tls = (url.scheme == "https").then(|| tls.clone()).flatten();
            // etcd names the address without the scheme.
            let address = format!("{}:{}", url.host, url.port);
            tracing::info!(address = %address, "serving peer traffic");
            tokio::spawn(async move {
                if let Err(e) = crate::http::serve(listener, app, 0, tls).await {
                    tracing::error!(address = %raw, "peer listener failed: {e}");
                }
            });
        }
        Ok(())
    }
}

/// Ends the process of a member that has been removed from the cluster: its data dir can never
/// serve again, as etcd says when it stops such a member.
pub fn exit_removed() -> ! {
    // etcd's two lines, word for word.
    tracing::warn!(
        error = crate::raft::peer_service::REMOVED_TEXT,
        "server error"
    );
    tracing::warn!("data-dir used by this member must be removed");
    std::process::exit(REMOVED_EXIT_CODE)
}

/// The exit code of a member that stops because it was removed.
const REMOVED_EXIT_CODE: i32 = 0;

/// How often publishing this member's attributes is retried until it is committed.
const PUBLISH_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

impl EtcdServer {
    /// Publishes this member's name and client URLs through raft, as etcd does after start, and
    /// returns once it is applied here — by then every earlier entry is applied too, so the
    /// member answers clients with the cluster's current view. Retries until committed.
    pub async fn publish(self: &Arc<Self>) {
        loop {
            let req = InternalRaftRequest {
                cluster_member_attr_set: Some(
                    oxcd_api::membershippb::ClusterMemberAttrSetRequest {
                        member_id: self.member_id(),
                        member_attributes: Some(oxcd_api::membershippb::Attributes {
                            name: self.cfg.name.clone(),
                            client_urls: self.cfg.advertise_client_urls.clone(),
                        }),
                    },
                ),
                ..Default::default()
            };
            match self.propose(req).await {
                Ok(_) => {
                    tracing::info!(
                        local_member_id = %format!("{:x}", self.member_id()),
                        local_member_attributes = %format!(
                            "{{Name:{} ClientURLs:[{}]}}",
                            self.cfg.name,
                            self.cfg.advertise_client_urls.join(" ")
                        ),
                        request_path = %format!("/0/members/{:x}/attributes", self.member_id()),
                        cluster_id = %format!("{:x}", self.cluster_id()),
                        publish_timeout = %crate::logging::go_duration(request_timeout(&self.cfg)),
                        "published local member to cluster through raft"
                    );
                    // oxcd's cluster version is fixed (every member speaks the same API), so it
                    // is in force as soon as this member is part of the cluster.
                    let version = crate::ETCD_CLUSTER_VERSION
                        .rsplit_once('.')
                        .map_or(crate::ETCD_CLUSTER_VERSION, |(v, _)| v);
                    tracing::info!(
                        cluster_id = %format!("{:x}", self.cluster_id()),
                        local_member_id = %format!("{:x}", self.member_id()),
                        cluster_version = version,
                        "set initial cluster version"
                    );
                    tracing::info!(
                        cluster_version = version,
                        "enabled capabilities for version"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!("failed to publish local member to cluster through raft: {e}");
                    tokio::time::sleep(PUBLISH_RETRY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};
    use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

    use super::*;
    use crate::config::parse_flags;

    fn config(dir: &std::path::Path) -> Config {
        let args: Vec<String> = [
            "oxcd",
            "--name",
            "m1",
            "--data-dir",
            &dir.display().to_string(),
            "--initial-cluster",
            "m1=http://127.0.0.1:1,m2=http://127.0.0.1:2,m3=http://127.0.0.1:3",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Config::from_flags(parse_flags(&args, &[]).unwrap()).unwrap()
    }

    fn put(store: &MvccStore, key: &str, index: u64, term: u64) {
        let mut b = store.write().unwrap();
        b.put(
            &PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            },
            &|_| false,
        )
        .unwrap();
        b.set_consistent_index(index, term);
        b.commit(true).unwrap();
    }

    /// A member that crashed after recording a received snapshot in its WAL but before the
    /// snapshot's database replaced its backend installs it at restart, keeping its identity.
    #[tokio::test]
    async fn restart_installs_a_snapshot_the_wal_has_but_the_backend_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let info = ClusterInfo::bootstrap(&cfg).unwrap();
        let voters: Vec<u64> = info.members.iter().map(|m| m.id).collect();
        let conf_state = ConfState {
            voters: voters.clone(),
            ..Default::default()
        };

        // The member's own state: bootstrapped, five entries applied.
        {
            let store = MvccStore::open(&cfg.backend_path()).unwrap();
            let mut b = store.write().unwrap();
            b.meta_put(META_KEY, &info.encode()).unwrap();
            b.commit(true).unwrap();
            put(&store, "mine", 5, 2);
            let wal = WalStorage::open(&cfg.wal_dir).unwrap();
            wal.bootstrap(conf_state.clone()).unwrap();
            let ents: Vec<Entry> = (1..=5)
                .map(|index| Entry {
                    index,
                    term: 2,
                    ..Default::default()
                })
                .collect();
            let hs = HardState {
                term: 2,
                commit: 5,
                ..Default::default()
            };
            wal.append(&ents, Some(&hs), true).unwrap();

            // The leader's snapshot at index 50, received into member/snap ...
            let leader_dir = tempfile::tempdir().unwrap();
            let leader = MvccStore::open(&leader_dir.path().join("db")).unwrap();
            let mut leader_info = info.clone();
            leader_info.local_id = voters
                .iter()
                .copied()
                .find(|&id| id != info.local_id)
                .unwrap();
            let mut b = leader.write().unwrap();
            b.meta_put(META_KEY, &leader_info.encode()).unwrap();
            b.commit(true).unwrap();
            put(&leader, "theirs", 49, 3);
            put(&leader, "theirs2", 50, 3);
            let file = snap_dir(&cfg).join(crate::raft::snapshot::file_name(3, 50));
            assert_eq!(leader.snapshot_to(&file).unwrap(), (50, 3));

            // ... and recorded in the WAL; then the crash.
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = 50;
            snap.mut_metadata().term = 3;
            snap.mut_metadata().set_conf_state(conf_state);
            snap.data = crate::raft::snapshot::file_name(3, 50).into_bytes().into();
            wal.apply_snapshot(&snap).unwrap();
        }

        let server = EtcdServer::start(cfg.clone()).unwrap();
        assert_eq!(server.store.consistent_index(), 50);
        assert_eq!(server.member_id(), info.local_id);
        assert_eq!(server.membership.local_id(), info.local_id);
        let stored =
            ClusterInfo::decode(&server.store.meta_get(META_KEY).unwrap().unwrap()).unwrap();
        assert_eq!(stored.local_id, info.local_id);
        let keys: Vec<Vec<u8>> = server
            .store
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, vec![b"theirs".to_vec(), b"theirs2".to_vec()]);
        assert!(crate::raft::snapshot::list(&snap_dir(&cfg)).is_empty());
        server.raft.stop();
    }
}
