//! The client listener: gRPC and the plain HTTP endpoints (`/health`, `/version`, `/metrics`)
//! share each client URL, as on etcd's :2379.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;

use crate::config::Url;
use crate::server::EtcdServer;

/// How long /health waits for a linearizable read before calling the member unhealthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(server: Arc<EtcdServer>) -> axum::Router {
    let http = axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server.clone());
    crate::grpc::router(server).merge(http)
}

async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let healthy = server.raft.leader() != 0
        && matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, server.read_index()).await,
            Ok(Ok(()))
        );
    let (code, body) = if healthy {
        (StatusCode::OK, r#"{"health":"true"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn version() -> impl IntoResponse {
    let body = format!(
        r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
        crate::ETCD_VERSION,
        crate::ETCD_CLUSTER_VERSION
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics() -> impl IntoResponse {
    let encoder = prometheus::TextEncoder::new();
    let body = encoder
        .encode_to_string(&prometheus::gather())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Binds a client URL; binding happens before serving so a taken port fails start-up loudly.
pub async fn bind(url: &Url) -> anyhow::Result<tokio::net::TcpListener> {
    if url.scheme != "http" {
        anyhow::bail!(
            "listen URL {}: TLS is not supported by this build yet",
            url.raw
        );
    }
    let addr = url.bind_addr();
    tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("listen tcp {addr}: {e}"))
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Arc<EtcdServer>,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Small request/response pairs: Nagle's algorithm would only add latency.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(server)).await
}
