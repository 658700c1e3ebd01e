//! The Maintenance service: status, hashes and alarms of this member.

use std::sync::Arc;

use oxcd_api::etcdserverpb::maintenance_server::Maintenance;
use oxcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use crate::auth::Caller;

use crate::server::EtcdServer;

pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        MaintenanceService { server }
    }
}

type SnapshotStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

impl MaintenanceService {
    /// Defragment, Snapshot, Hash and HashKV are for root alone.
    async fn admin_only<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.server
            .check_admin(&Caller::of(req))
            .await
            .map_err(auth_package_error)
    }
}

/// etcd 3.4's maintenance service returns the auth package's own errors, untranslated: code
/// Unknown and an `auth: ` prefix instead of `etcdserver: `.
fn auth_package_error(e: crate::error::EtcdError) -> Status {
    let text = e.to_string();
    match text.strip_prefix("etcdserver: ") {
        Some(rest) => Status::unknown(format!("auth: {rest}")),
        None => e.into(),
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No permission is needed, but a token that is sent must be valid.
        self.server
            .auth_info(&Caller::of(&req))
            .await
            .map_err(auth_package_error)?;
        // Through raft, as etcd does; its answer has no header.
        Ok(Response::new(self.server.alarm(req.into_inner()).await?))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let s = &self.server;
        let mut errors = vec![];
        if s.raft.leader() == 0 {
            errors.push(crate::error::EtcdError::NoLeader.to_string());
        }
        for a in s.alarms.get(0) {
            errors.push(crate::alarm::alarm_text(&a));
        }
        Ok(Response::new(StatusResponse {
            header: Some(s.header()),
            version: crate::ETCD_VERSION.to_string(),
            db_size: s.store.db_size() as i64,
            leader: s.raft.leader(),
            raft_index: s.raft.commit_index(),
            raft_term: s.raft.term(),
            raft_applied_index: s.raft.applied_index(),
            errors,
            db_size_in_use: s.store.db_size_in_use() as i64,
            is_learner: s.membership.local_is_learner(),
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin_only(&req).await?;
        // Unlike etcd, the member keeps serving meanwhile (see mvcc::defrag).
        tracing::info!("starting to defragment the storage backend...");
        let store = self.server.store.clone();
        let report = tokio::task::spawn_blocking(move || store.defragment())
            .await
            .map_err(|e| Status::internal(format!("defrag: {e}")))?;
        let r = match report {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "failed to defragment the storage backend");
                return Err(e.into());
            }
        };
        tracing::info!(
            "current-db-size-bytes-diff" = r.size_after as i64 - r.size_before as i64,
            "current-db-size-bytes" = r.size_after,
            "writes-held" = ?r.writes_held,
            "catch-up-rounds" = r.rounds,
            took = ?r.took,
            "finished defragmenting the storage backend"
        );
        // etcd answers an empty message here: no header (its gateway shows `{}`).
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin_only(&req).await?;
        let (hash, _) = self.server.store.hash_kv(0)?;
        Ok(Response::new(HashResponse {
            header: Some(self.server.header()),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin_only(&req).await?;
        let rev = req.into_inner().revision;
        let header = self.server.header();
        let (hash, compact_revision) = self.server.store.hash_kv(rev)?;
        Ok(Response::new(HashKvResponse {
            hash_revision: if rev == 0 { header.revision } else { rev },
            header: Some(header),
            hash,
            compact_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// A consistent copy of this member's backend, in chunks, then its SHA-256 (local: works
    /// on any member, with or without a leader).
    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin_only(&req).await?;
        let db = self.server.cfg.backend_path();
        let snap_dir = db.parent().map_or_else(|| db.clone(), |d| d.to_path_buf());
        let stream = crate::backup::stream::snapshot_stream(self.server.store.clone(), snap_dir);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.server.move_leader(req.into_inner().target_id).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.server.header()),
        }))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("oxcd: downgrade is not supported"))
    }
}
