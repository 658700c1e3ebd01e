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
        .merge(probes())
        .with_state(server.clone());
    crate::grpc::router(server)
        .layer(axum::middleware::from_fn(crate::grpc_metrics::track))
        .merge(http)
        .merge(gateway)
        .fallback(not_found)
}

/// What a --listen-metrics-urls listener serves: /metrics and the health probes, as etcd's.
pub fn metrics_router(server: Arc<EtcdServer>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .merge(probes())
        .with_state(server)
        .fallback(not_found)
}

/// etcd 3.5's /livez and /readyz (and /livez/<check>, /readyz/<check>).
fn probes() -> axum::Router<Arc<EtcdServer>> {
    axum::Router::new()
        .route("/livez", get(probe_route))
        .route("/livez/{check}", get(probe_route))
        .route("/readyz", get(probe_route))
        .route("/readyz/{check}", get(probe_route))
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

/// The values of query parameter `name` (`?exclude=NOSPACE&exclude=CORRUPT`).
fn query_values<'a>(query: &'a Option<String>, name: &'a str) -> impl Iterator<Item = &'a str> {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(move |kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn query_has(query: &Option<String>, name: &str) -> bool {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == name || kv.starts_with(&format!("{name}=")))
}

/// `/health`, with etcd's `?exclude=<ALARM>` (an active alarm of that type does not count) and
/// `?serializable=true`.
async fn health(
    State(server): State<Arc<EtcdServer>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> impl IntoResponse {
    let excluded: Vec<&str> = query_values(&query, "exclude").collect();
    let serializable = query_values(&query, "serializable").any(|v| v == "true");
    let alarms: Vec<_> = server
        .alarms
        .get(0)
        .into_iter()
        .filter(|a| !excluded.contains(&alarm_name(a.alarm)))
        .collect();
    for a in &alarms {
        tracing::warn!(alarm = %crate::alarm::alarm_text(a), "/health error due to an alarm");
    }
    // As etcd 3.4: `serializable` only skips the leader check; the read is a quorum read either
    // way (etcd 3.4's v2 QGET), so a member without quorum is unhealthy.
    let healthy = alarms.is_empty()
        && (serializable || server.raft.leader() != 0)
        && linearizable_read(&server).await;
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

fn alarm_name(alarm: i32) -> &'static str {
    oxcd_api::etcdserverpb::AlarmType::try_from(alarm).map_or("", |t| t.as_str_name())
}

/// A local read of one key, as etcd's serializable health check.
fn serializable_read(server: &EtcdServer) -> bool {
    let req = oxcd_api::etcdserverpb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        limit: 1,
        keys_only: true,
        serializable: true,
        ..Default::default()
    };
    server.store.range(&req).is_ok()
}

async fn linearizable_read(server: &EtcdServer) -> bool {
    matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, server.read_index()).await,
        Ok(Ok(()))
    )
}

/// The checks behind /livez and /readyz, in the order they are listed.
const LIVEZ: &[&str] = &["serializable_read"];
const READYZ: &[&str] = &["data_corruption", "linearizable_read", "serializable_read"];

/// One named check: None when it passes, else why it failed.
async fn run_check(server: &EtcdServer, name: &str) -> Option<String> {
    match name {
        "data_corruption" => {
            let corrupt = oxcd_api::etcdserverpb::AlarmType::Corrupt as i32;
            (!server.alarms.get(corrupt).is_empty()).then(|| "Active Alarm: CORRUPT".to_string())
        }
        "serializable_read" => (!serializable_read(server)).then(|| "read failed".to_string()),
        "linearizable_read" => {
            (!linearizable_read(server).await).then(|| "etcdserver: request timed out".to_string())
        }
        _ => Some("unknown check".to_string()),
    }
}

/// etcd 3.5's (Kubernetes-style) probe answer: `ok`, or with `?verbose` each check's line; a
/// failure lists every check and answers 503.
async fn probe(
    server: &EtcdServer,
    kind: &str,
    checks: &[&str],
    query: &Option<String>,
) -> axum::response::Response {
    let excluded: Vec<&str> = query_values(query, "exclude").collect();
    let mut out = String::new();
    let mut failed = false;
    for &name in checks {
        if excluded.contains(&name) {
            out.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match run_check(server, name).await {
            None => out.push_str(&format!("[+]{name} ok\n")),
            Some(why) => {
                failed = true;
                out.push_str(&format!("[-]{name} failed: {why}\n"));
            }
        }
    }
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if failed {
        tracing::warn!(checks = %out.trim_end().replace('\n', ", "), "/{kind} failed");
        let body = format!("{out}{kind} check failed\n");
        return (StatusCode::SERVICE_UNAVAILABLE, text, body).into_response();
    }
    if query_has(query, "verbose") {
        return (StatusCode::OK, text, format!("{out}{kind} check passed\n")).into_response();
    }
    (StatusCode::OK, text, "ok").into_response()
}

/// `/livez`, `/readyz`, `/livez/<check>` and `/readyz/<check>`.
async fn probe_route(
    State(server): State<Arc<EtcdServer>>,
    uri: axum::http::Uri,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    let path = uri.path().trim_start_matches('/');
    let (kind, one) = path
        .split_once('/')
        .map_or((path, None), |(k, c)| (k, Some(c)));
    let checks = if kind == "livez" { LIVEZ } else { READYZ };
    match one {
        None => probe(&server, kind, checks, &query).await,
        Some(check) => match checks.iter().find(|&&c| c == check) {
            Some(&c) => probe(&server, kind, &[c], &query).await,
            None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
        },
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
