//! Incoming raft traffic: the `oxcdpeer.Peer` gRPC service served on the peer URLs.
//!
//! Each other member keeps one `Send` stream open to this one; every message in a batch is
//! handed to the node thread as it arrives. Batches for another cluster or another member are
//! refused, which ends the stream: a misconfigured member must never feed raft.
//!
//! A raft snapshot arrives on a `SendSnapshot` stream of its own: the database file is written to
//! a temporary file in the snap dir, synced and renamed to the name the snapshot message gives,
//! and only then is the message stepped into raft, so raft never restores a snapshot whose
//! database is not on disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use oxcd_api::oxcdpeer::{
    peer_server::{Peer, PeerServer},
    HashKvRequest, HashKvResponse, MembersRequest, MembersResponse, ProbeRequest, ProbeResponse,
    PromoteRequest, PromoteResponse, RaftBatch, SendAck, SnapshotAck, SnapshotChunk,
};
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tonic::{Request, Response, Status, Streaming};

use super::node::NodeMsg;
use super::transport::MAX_DECODE_BYTES;
use crate::error::EtcdError;
use crate::membership::{ClusterInfo, Member};

/// A misconfigured member retries every couple of seconds; say so once in a while, not each time.
const MISMATCH_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// What the peer service asks of the server beyond stepping raft messages.
#[tonic::async_trait]
pub trait PeerControl: Send + Sync + 'static {
    /// The member list as this member knows it.
    fn cluster(&self) -> ClusterInfo;
    fn is_removed(&self, id: u64) -> bool;
    /// Promotes a learner (asked of the leader by a follower).
    async fn promote(&self, id: u64) -> Result<Vec<Member>, EtcdError>;
    /// This member's HashKV at `revision` (0: current), for the corruption checks.
    fn hash_kv(&self, _revision: i64) -> Result<HashKvResponse, EtcdError> {
        Err(EtcdError::NotCapable)
    }
}

/// The text a removed member gets from the others, as etcd's peers answer it.
pub const REMOVED_TEXT: &str = "the member has been permanently removed from the cluster";

pub struct PeerService {
    control: Option<std::sync::Arc<dyn PeerControl>>,
    cluster_id: u64,
    local_id: u64,
    node_tx: Sender<NodeMsg>,
    last_mismatch_log: Mutex<Option<Instant>>,
    /// `<data-dir>/member/snap`: received snapshot files go there.
    snap_dir: PathBuf,
    /// Makes temporary file names unique across concurrent receives.
    recv_seq: AtomicU64,
}

impl PeerService {
    pub fn new(
        cluster_id: u64,
        local_id: u64,
        node_tx: Sender<NodeMsg>,
        snap_dir: PathBuf,
    ) -> PeerService {
        PeerService {
            control: None,
            cluster_id,
            local_id,
            node_tx,
            last_mismatch_log: Mutex::new(None),
            snap_dir,
            recv_seq: AtomicU64::new(0),
        }
    }

    /// Connects the service to the server, for membership questions and removed members.
    pub fn with_control(mut self, control: std::sync::Arc<dyn PeerControl>) -> PeerService {
        self.control = Some(control);
        self
    }

    fn is_removed(&self, id: u64) -> bool {
        self.control.as_ref().is_some_and(|c| c.is_removed(id))
    }

    fn log_cluster_mismatch(&self, remote_id: u64, remote_cluster_id: u64) {
        {
            let mut last = self.last_mismatch_log.lock();
            if last.is_some_and(|t| t.elapsed() < MISMATCH_LOG_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        tracing::warn!(
            "local-member-id" = %format_args!("{:x}", self.local_id),
            "local-member-cluster-id" = %format_args!("{:x}", self.cluster_id),
            "remote-peer-id" = %format_args!("{remote_id:x}"),
            "remote-peer-cluster-id" = %format_args!("{remote_cluster_id:x}"),
            "request cluster ID mismatch"
        );
    }

    fn check(&self, cluster_id: u64, from: u64, to: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            self.log_cluster_mismatch(from, cluster_id);
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: member {:x} is in cluster {:x}, request is for cluster {:x}",
                self.local_id, self.cluster_id, cluster_id
            )));
        }
        if self.is_removed(from) {
            return Err(Status::failed_precondition(REMOVED_TEXT));
        }
        if to != self.local_id {
            return Err(Status::failed_precondition(format!(
                "member ID mismatch: this is member {:x}, request is for member {:x}",
                self.local_id, to
            )));
        }
        Ok(())
    }

    /// Receives one snapshot: its message from the first chunk, its file from all of them.
    /// Returns the message once the file is durable under its final name.
    async fn receive_snapshot(
        &self,
        stream: &mut Streaming<SnapshotChunk>,
    ) -> Result<(Message, u64), Status> {
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.check(first.cluster_id, first.from, first.to)?;
        let msg = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("malformed raft message: {e}")))?;
        let meta = msg.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        let name = std::str::from_utf8(&msg.get_snapshot().data)
            .ok()
            .filter(|n| super::snapshot::parse_file_name(n) == Some((term, index)))
            .filter(|_| msg.get_msg_type() == MessageType::MsgSnapshot)
            .ok_or_else(|| Status::invalid_argument("not a raft snapshot message"))?
            .to_string();
        tracing::info!(
            "remote-peer-id" = %format_args!("{:x}", first.from),
            "snapshot-index" = index,
            "receiving database snapshot"
        );
        let io = |what: &str, e: std::io::Error| Status::internal(format!("{what}: {e}"));
        tokio::fs::create_dir_all(&self.snap_dir)
            .await
            .map_err(|e| io("creating snap dir", e))?;
        let seq = self.recv_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = TempFile(self.snap_dir.join(format!("{index:016x}-{seq}.recv.tmp")));
        let mut file = tokio::fs::File::create(&tmp.0)
            .await
            .map_err(|e| io("creating snapshot file", e))?;
        let mut size = 0u64;
        let mut chunk = first;
        loop {
            use tokio::io::AsyncWriteExt;
            file.write_all(&chunk.data)
                .await
                .map_err(|e| io("writing snapshot file", e))?;
            size += chunk.data.len() as u64;
            if chunk.last {
                break;
            }
            chunk = stream
                .message()
                .await?
                .ok_or_else(|| Status::invalid_argument("snapshot stream ended early"))?;
        }
        file.sync_all()
            .await
            .map_err(|e| io("syncing snapshot file", e))?;
        drop(file);
        let final_path = self.snap_dir.join(&name);
        tokio::fs::rename(&tmp.0, &final_path)
            .await
            .map_err(|e| io("renaming snapshot file", e))?;
        std::mem::forget(tmp);
        let dir = self.snap_dir.clone();
        tokio::task::spawn_blocking(move || super::snapshot::sync_dir(&dir))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| io("syncing snap dir", e))?;
        Ok((msg, size))
    }
}

/// Removes a partly received file unless forgotten.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<SendAck>, Status> {
        let mut stream = req.into_inner();
        // etcd_network_peer_received_bytes_total of the sender, resolved at its first batch.
        let mut received: Option<prometheus::IntCounter> = None;
        while let Some(batch) = stream.message().await? {
            self.check(batch.cluster_id, batch.from, batch.to)?;
            let counter = received.get_or_insert_with(|| {
                crate::metrics::PEER_RECEIVED_BYTES
                    .with_label_values(&[&crate::metrics::peer_label(batch.from)])
            });
            counter.inc_by(batch.messages.iter().map(|m| m.len() as u64).sum());
            for bytes in &batch.messages {
                // Parsing from `Bytes` lets entry payloads share the received frame's buffer.
                let msg = Message::parse_from_carllerche_bytes(bytes).map_err(|e| {
                    Status::invalid_argument(format!("malformed raft message: {e}"))
                })?;
                if msg.get_msg_type() == MessageType::MsgSnapshot {
                    // Its database file comes with SendSnapshot; without it raft must not see it.
                    return Err(Status::invalid_argument(
                        "raft snapshot messages go through SendSnapshot",
                    ));
                }
                if self.node_tx.send(NodeMsg::Step(Box::new(msg))).is_err() {
                    return Err(Status::unavailable("etcdserver: server stopped"));
                }
            }
        }
        Ok(Response::new(SendAck {}))
    }

    async fn send_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let mut stream = req.into_inner();
        let start = Instant::now();
        let (msg, size) = match self.receive_snapshot(&mut stream).await {
            Ok(r) => r,
            Err(status) => {
                tracing::warn!(
                    "local-member-id" = %format_args!("{:x}", self.local_id),
                    error = %status.message(),
                    "failed to receive database snapshot"
                );
                return Err(status);
            }
        };
        tracing::info!(
            "remote-peer-id" = %format_args!("{:x}", msg.from),
            "snapshot-index" = msg.get_snapshot().get_metadata().index,
            bytes = size,
            size = %super::snapshot::human_size(size),
            took = ?start.elapsed(),
            "received and saved database snapshot"
        );
        if self.node_tx.send(NodeMsg::Step(Box::new(msg))).is_err() {
            return Err(Status::unavailable("etcdserver: server stopped"));
        }
        Ok(Response::new(SnapshotAck {}))
    }

    async fn probe(&self, req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let req = req.into_inner();
        // Answered either way: the sender compares and logs both sides' IDs.
        if req.cluster_id != self.cluster_id {
            self.log_cluster_mismatch(req.from, req.cluster_id);
        }
        let removed = req.cluster_id == self.cluster_id && self.is_removed(req.from);
        if removed {
            tracing::warn!(
                "remote-peer-id" = %format_args!("{:x}", req.from),
                "rejected connection from removed member"
            );
        }
        Ok(Response::new(ProbeResponse {
            cluster_id: self.cluster_id,
            member_id: self.local_id,
            removed,
        }))
    }

    async fn members(
        &self,
        _req: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let Some(c) = &self.control else {
            return Err(Status::unavailable("membership is not served here"));
        };
        let info = c.cluster();
        Ok(Response::new(MembersResponse {
            cluster_id: info.cluster_id,
            members: info.encode(),
        }))
    }

    async fn promote(
        &self,
        req: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        let Some(c) = &self.control else {
            return Err(Status::unavailable("membership is not served here"));
        };
        let members = c.promote(req.into_inner().member_id).await?;
        Ok(Response::new(PromoteResponse {
            members: serde_json::to_vec(&members).map_err(|e| Status::internal(e.to_string()))?,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let Some(c) = &self.control else {
            return Err(Status::unavailable("hashes are not served here"));
        };
        let c = c.clone();
        let rev = req.into_inner().revision;
        // Hashing reads the whole key table: off the async workers.
        let r = tokio::task::spawn_blocking(move || c.hash_kv(rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(r?))
    }
}

/// The peer listener's gRPC routes, to be served on each --listen-peer-urls listener.
pub fn peer_router(svc: PeerService) -> axum::Router {
    peer_routes(svc).routes().into_axum_router()
}

/// The peer protocol's routes, to which the server adds the services it also offers its peers.
pub fn peer_routes(svc: PeerService) -> tonic::service::RoutesBuilder {
    let mut b = tonic::service::Routes::builder();
    b.add_service(PeerServer::new(svc).max_decoding_message_size(MAX_DECODE_BYTES));
    b
}
