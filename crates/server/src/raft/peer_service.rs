//! Incoming raft traffic: the `oxcdpeer.Peer` gRPC service served on the peer URLs.
//!
//! Each other member keeps one `Send` stream open to this one; every message in a batch is
//! handed to the node thread as it arrives. Batches for another cluster or another member are
//! refused, which ends the stream: a misconfigured member must never feed raft.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use oxcd_api::oxcdpeer::{
    peer_server::{Peer, PeerServer},
    ProbeRequest, ProbeResponse, RaftBatch, SendAck,
};
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status, Streaming};

use super::node::NodeMsg;
use super::transport::MAX_DECODE_BYTES;

/// A misconfigured member retries every couple of seconds; say so once in a while, not each time.
const MISMATCH_LOG_INTERVAL: Duration = Duration::from_secs(30);

pub struct PeerService {
    cluster_id: u64,
    local_id: u64,
    node_tx: Sender<NodeMsg>,
    last_mismatch_log: Mutex<Option<Instant>>,
}

impl PeerService {
    pub fn new(cluster_id: u64, local_id: u64, node_tx: Sender<NodeMsg>) -> PeerService {
        PeerService {
            cluster_id,
            local_id,
            node_tx,
            last_mismatch_log: Mutex::new(None),
        }
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

    fn check(&self, batch: &RaftBatch) -> Result<(), Status> {
        if batch.cluster_id != self.cluster_id {
            self.log_cluster_mismatch(batch.from, batch.cluster_id);
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: member {:x} is in cluster {:x}, request is for cluster {:x}",
                self.local_id, self.cluster_id, batch.cluster_id
            )));
        }
        if batch.to != self.local_id {
            return Err(Status::failed_precondition(format!(
                "member ID mismatch: this is member {:x}, request is for member {:x}",
                self.local_id, batch.to
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<SendAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            self.check(&batch)?;
            for bytes in &batch.messages {
                // Parsing from `Bytes` lets entry payloads share the received frame's buffer.
                let msg = Message::parse_from_carllerche_bytes(bytes).map_err(|e| {
                    Status::invalid_argument(format!("malformed raft message: {e}"))
                })?;
                if self.node_tx.send(NodeMsg::Step(Box::new(msg))).is_err() {
                    return Err(Status::unavailable("etcdserver: server stopped"));
                }
            }
        }
        Ok(Response::new(SendAck {}))
    }

    async fn probe(&self, req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let req = req.into_inner();
        // Answered either way: the sender compares and logs both sides' IDs.
        if req.cluster_id != self.cluster_id {
            self.log_cluster_mismatch(req.from, req.cluster_id);
        }
        Ok(Response::new(ProbeResponse {
            cluster_id: self.cluster_id,
            member_id: self.local_id,
        }))
    }
}

/// The peer listener's gRPC routes, to be served on each --listen-peer-urls listener.
pub fn peer_router(svc: PeerService) -> axum::Router {
    let mut b = tonic::service::Routes::builder();
    b.add_service(PeerServer::new(svc).max_decoding_message_size(MAX_DECODE_BYTES));
    b.routes().into_axum_router()
}
