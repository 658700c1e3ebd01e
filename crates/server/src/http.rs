//! The client listener: gRPC, the plain HTTP endpoints (`/health`, `/version`, `/metrics`) and
//! the JSON gateway (`/v3/...`, see `gateway`) share each client URL, as on etcd's :2379, over
//! TLS for `https://` URLs.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

use crate::config::Url;
use crate::h2_authority::AuthorityFix;
use crate::server::EtcdServer;
use crate::tls::{Acceptor, PeerIdentity};

/// How long /health waits for a linearizable read before calling the member unhealthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(server: Arc<EtcdServer>) -> axum::Router {
    let gateway = crate::gateway::router(server.clone());
    let http = axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server.clone());
    crate::grpc::router(server)
        .merge(http)
        .merge(gateway)
        .fallback(not_found)
}

/// Unknown gRPC methods get gRPC's Unimplemented; any other unknown path is a plain 404, as on
/// etcd's client port.
async fn not_found(req: axum::extract::Request) -> axum::response::Response {
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if is_grpc {
        tonic::Status::unimplemented("").into_http()
    } else {
        (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
    }
}

async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    // As etcd 3.4: any active alarm makes the member unhealthy.
    let alarms = server.alarms.get(0);
    for a in &alarms {
        tracing::warn!(alarm = %crate::alarm::alarm_text(a), "/health error due to an alarm");
    }
    let healthy = alarms.is_empty()
        && server.raft.leader() != 0
        && matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, server.read_index()).await,
            Ok(Ok(()))
        );
    if healthy {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"health":"true"}"#,
        )
    } else {
        // etcd answers an unhealthy probe through Go's http.Error: plain text, newline-ended.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "{\"health\":\"false\"}\n",
        )
    }
}

async fn version() -> impl IntoResponse {
    let body = format!(
        r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
        crate::ETCD_VERSION,
        crate::ETCD_CLUSTER_VERSION
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    crate::metrics::refresh(&server);
    let encoder = prometheus::TextEncoder::new();
    let body = encoder
        .encode_to_string(&prometheus::gather())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Binds a listen URL (`http://` or `https://`; TLS is added by `serve`); binding happens before
/// serving so a taken port fails start-up loudly.
pub async fn bind(url: &Url) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = url.bind_addr();
    tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("listen tcp {addr}: {e}"))
}

/// Serves one listener until it fails, over TLS when `tls` is given. HTTP/1.1 and HTTP/2 share
/// the port; an HTTP/2 connection may carry `max_streams` concurrent streams
/// (`--max-concurrent-streams`, advertised in SETTINGS; 0 means unlimited, as in grpc-go), by
/// default as many as the client opens, so one connection can carry thousands of watches.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    max_streams: u32,
    tls: Option<Arc<Acceptor>>,
) -> std::io::Result<()> {
    let max_streams = if max_streams == 0 {
        u32::MAX
    } else {
        max_streams
    };
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_transient_accept_error(&e) => {
                // Out of file descriptors or a connection reset before accept: back off, retry.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        // Small request/response pairs: Nagle's algorithm would only add latency.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(tcp, app, None, max_streams).await,
                Some(acceptor) => {
                    if let Some((stream, identity)) = acceptor.accept(tcp, remote).await {
                        serve_connection(stream, app, identity, max_streams).await;
                    }
                }
            }
        });
    }
}

/// Serves the requests of one accepted (and, over TLS, handshaken) connection. A verified client
/// certificate's identity goes into every request's extensions.
async fn serve_connection<S>(
    io: S,
    app: axum::Router,
    identity: Option<PeerIdentity>,
    max_streams: u32,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
            if let Some(id) = &identity {
                req.extensions_mut().insert(id.clone());
            }
            req
        })
        .service(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(max_streams);
    if let Err(e) = builder
        // etcdctl 3.4 sends `:authority: http://host:port`, which h2 rejects.
        .serve_connection_with_upgrades(
            TokioIo::new(AuthorityFix::new(io)),
            TowerToHyperService::new(svc),
        )
        .await
    {
        tracing::debug!("client connection closed: {e}");
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}
