//! gRPC services, one file each, and the router that serves them all on a client listener.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use std::sync::Arc;

use oxcd_api::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};

use oxcd_api::v3electionpb::election_server::ElectionServer;
use oxcd_api::v3lockpb::lock_server::LockServer;

use crate::server::EtcdServer;

/// gRPC framing and fields add to the raft entry; etcd lets requests this much over
/// --max-request-bytes through the transport so its own check can answer with its own error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The transport accepts up to twice the limit so that `check_size` can refuse a message with
/// grpc-go's own words, which clients and scripts match on, while memory stays bounded.
const DECODE_SLACK: usize = 2;

/// Refuses a request larger than the server's receive limit exactly as grpc-go does.
pub fn check_size<M: prost::Message>(msg: &M, max_recv: usize) -> Result<(), tonic::Status> {
    let len = msg.encoded_len();
    if len > max_recv {
        return Err(tonic::Status::resource_exhausted(format!(
            "grpc: received message larger than max ({len} vs. {max_recv})"
        )));
    }
    Ok(())
}

/// The receive limit of the client port: --max-request-bytes plus gRPC overhead.
pub fn max_recv_bytes(server: &EtcdServer) -> usize {
    server.cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES
}

/// Every gRPC service of the v3 API, as one axum router.
pub fn router(server: Arc<EtcdServer>) -> axum::Router {
    let max_recv = max_recv_bytes(&server) * DECODE_SLACK;
    let max_send = usize::MAX;
    let mut b = tonic::service::Routes::builder();
    b.add_service(
        KvServer::new(kv::KvService::new(server.clone()))
            .max_decoding_message_size(max_recv)
            .max_encoding_message_size(max_send),
    );
    b.add_service(
        WatchServer::new(watch::WatchService::new(server.clone()))
            .max_decoding_message_size(max_recv)
            .max_encoding_message_size(max_send),
    );
    b.add_service(
        LeaseServer::new(lease::LeaseService::new(server.clone()))
            .max_decoding_message_size(max_recv)
            .max_encoding_message_size(max_send),
    );
    b.add_service(
        ClusterServer::new(cluster::ClusterService::new(server.clone()))
            .max_decoding_message_size(max_recv),
    );
    b.add_service(
        MaintenanceServer::new(maintenance::MaintenanceService::new(server.clone()))
            .max_decoding_message_size(max_recv)
            .max_encoding_message_size(max_send),
    );
    b.add_service(
        AuthServer::new(auth::AuthService::new(server.clone())).max_decoding_message_size(max_recv),
    );
    b.add_service(
        ElectionServer::new(election::ElectionService::new(server.clone()))
            .max_decoding_message_size(max_recv),
    );
    b.add_service(
        LockServer::new(lock::LockService::new(server.clone())).max_decoding_message_size(max_recv),
    );
    b.routes()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(server, learner_guard))
}

/// What a learner serves, as in etcd 3.4: its own status and serializable reads (checked by the
/// KV service, which sees the request). Everything else, streams included, gets etcd's learner
/// error.
fn learner_may_serve(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.Maintenance/Status" | "/etcdserverpb.KV/Range"
    )
}

async fn learner_guard(
    axum::extract::State(server): axum::extract::State<Arc<EtcdServer>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if server.membership.local_is_learner() && !learner_may_serve(req.uri().path()) {
        return tonic::Status::from(crate::error::EtcdError::NotSupportedForLearner).into_http();
    }
    next.run(req).await
}
