//! etcd's JSON gateway (grpc-gateway) on the client port: `POST /v3/<service>/<method>` with a
//! proto3-JSON body, answered with the response message in proto3 JSON as etcd 3.4 writes it
//! (original field names, defaults left out, 64-bit integers as strings, bytes as base64).
//!
//! Each route calls the gRPC service implementation in-process, with the `Authorization` header
//! as the `authorization` metadata the services read the token from, so auth, errors and
//! forwarding are exactly the gRPC API's. Errors become `{"error","message","code"}` with
//! grpc-gateway's HTTP status for the code. Streaming RPCs (watch, lease keep-alive, snapshot)
//! answer one `{"result":...}` object a line; their request bodies may hold several JSON
//! objects, each one stream message.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post, MethodRouter};
use futures::{Stream, StreamExt};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{DecodeBuf, Decoder, Streaming};
use tonic::{Code, Status};

use oxcd_api::etcdserverpb::{
    auth_server::Auth, cluster_server::Cluster, kv_server::Kv, lease_server::Lease,
    maintenance_server::Maintenance, watch_server::Watch,
};
use oxcd_api::v3electionpb::election_server::Election;
use oxcd_api::v3lockpb::lock_server::Lock;

use crate::grpc::{auth::AuthService, cluster::ClusterService, kv::KvService};
use crate::grpc::{election::ElectionService, lock::LockService};
use crate::grpc::{lease::LeaseService, maintenance::MaintenanceService, watch::WatchService};
use crate::server::EtcdServer;

/// The path prefixes etcd 3.4 serves the gateway under (`/v3alpha` is gone since 3.4).
const PREFIXES: &[&str] = &["/v3", "/v3beta"];

/// grpc-gateway refuses requests from a client certificate with a common name: the gateway
/// itself talks to the server, so the CN could not be used as the caller's identity.
const CN_REFUSED: &str = "CommonName of client sending a request against gateway will be ignored \
                          and not used as expected\n";

struct Services {
    kv: KvService,
    watch: WatchService,
    lease: LeaseService,
    cluster: ClusterService,
    maintenance: MaintenanceService,
    auth: AuthService,
    election: ElectionService,
    lock: LockService,
    /// Largest request body accepted, as the gRPC port's receive limit.
    max_body: usize,
}

type Svc = State<Arc<Services>>;

/// A unary route: `$trait::$method` of the service in field `$svc`.
macro_rules! unary {
    ($svc:ident, $tr:ident :: $method:ident) => {
        post(|State(s): Svc, req: Request| async move {
            let max = s.max_body;
            unary(req, max, |r| async move { $tr::$method(&s.$svc, r).await }).await
        })
    };
}

/// A server-streaming route: one JSON request, then `{"result":...}` lines.
macro_rules! server_stream {
    ($svc:ident, $tr:ident :: $method:ident) => {
        post(|State(s): Svc, req: Request| async move {
            let max = s.max_body;
            server_stream(req, max, |r| async move { $tr::$method(&s.$svc, r).await }).await
        })
    };
}

/// A bidirectional-streaming route.
macro_rules! bidi {
    ($svc:ident, $tr:ident :: $method:ident) => {
        post(|State(s): Svc, req: Request| async move {
            let max = s.max_body;
            let s2 = s.clone();
            bidi(req, max, |r| async move { $tr::$method(&s2.$svc, r).await }).await
        })
    };
}

/// Every gateway route of etcd 3.4, under `/v3` and `/v3beta`.
pub fn router(server: Arc<EtcdServer>) -> axum::Router {
    let services = Arc::new(Services {
        kv: KvService::new(server.clone()),
        watch: WatchService::new(server.clone()),
        lease: LeaseService::new(server.clone()),
        cluster: ClusterService::new(server.clone()),
        maintenance: MaintenanceService::new(server.clone()),
        auth: AuthService::new(server.clone()),
        election: ElectionService::new(server.clone()),
        lock: LockService::new(server.clone()),
        max_body: crate::grpc::max_recv_bytes(&server),
    });
    let routes: Vec<(&str, MethodRouter<Arc<Services>>)> = vec![
        ("/kv/range", unary!(kv, Kv::range)),
        ("/kv/put", unary!(kv, Kv::put)),
        ("/kv/deleterange", unary!(kv, Kv::delete_range)),
        ("/kv/txn", unary!(kv, Kv::txn)),
        ("/kv/compaction", unary!(kv, Kv::compact)),
        ("/watch", bidi!(watch, Watch::watch)),
        ("/lease/grant", unary!(lease, Lease::lease_grant)),
        ("/lease/revoke", unary!(lease, Lease::lease_revoke)),
        ("/kv/lease/revoke", unary!(lease, Lease::lease_revoke)),
        ("/lease/keepalive", bidi!(lease, Lease::lease_keep_alive)),
        (
            "/lease/timetolive",
            unary!(lease, Lease::lease_time_to_live),
        ),
        (
            "/kv/lease/timetolive",
            unary!(lease, Lease::lease_time_to_live),
        ),
        ("/lease/leases", unary!(lease, Lease::lease_leases)),
        ("/kv/lease/leases", unary!(lease, Lease::lease_leases)),
        ("/cluster/member/add", unary!(cluster, Cluster::member_add)),
        (
            "/cluster/member/remove",
            unary!(cluster, Cluster::member_remove),
        ),
        (
            "/cluster/member/update",
            unary!(cluster, Cluster::member_update),
        ),
        (
            "/cluster/member/list",
            unary!(cluster, Cluster::member_list),
        ),
        (
            "/cluster/member/promote",
            unary!(cluster, Cluster::member_promote),
        ),
        (
            "/maintenance/alarm",
            unary!(maintenance, Maintenance::alarm),
        ),
        (
            "/maintenance/status",
            unary!(maintenance, Maintenance::status),
        ),
        (
            "/maintenance/defragment",
            unary!(maintenance, Maintenance::defragment),
        ),
        // etcd 3.4 binds Hash and HashKV to the same path; Hash is the one that answers.
        ("/maintenance/hash", unary!(maintenance, Maintenance::hash)),
        (
            "/maintenance/snapshot",
            server_stream!(maintenance, Maintenance::snapshot),
        ),
        (
            "/maintenance/transfer-leadership",
            unary!(maintenance, Maintenance::move_leader),
        ),
        ("/election/campaign", unary!(election, Election::campaign)),
        ("/election/proclaim", unary!(election, Election::proclaim)),
        ("/election/leader", unary!(election, Election::leader)),
        (
            "/election/observe",
            server_stream!(election, Election::observe),
        ),
        ("/election/resign", unary!(election, Election::resign)),
        ("/lock/lock", unary!(lock, Lock::lock)),
        ("/lock/unlock", unary!(lock, Lock::unlock)),
        ("/auth/enable", unary!(auth, Auth::auth_enable)),
        ("/auth/disable", unary!(auth, Auth::auth_disable)),
        ("/auth/authenticate", unary!(auth, Auth::authenticate)),
        ("/auth/user/add", unary!(auth, Auth::user_add)),
        ("/auth/user/get", unary!(auth, Auth::user_get)),
        ("/auth/user/list", unary!(auth, Auth::user_list)),
        ("/auth/user/delete", unary!(auth, Auth::user_delete)),
        (
            "/auth/user/changepw",
            unary!(auth, Auth::user_change_password),
        ),
        ("/auth/user/grant", unary!(auth, Auth::user_grant_role)),
        ("/auth/user/revoke", unary!(auth, Auth::user_revoke_role)),
        ("/auth/role/add", unary!(auth, Auth::role_add)),
        ("/auth/role/get", unary!(auth, Auth::role_get)),
        ("/auth/role/list", unary!(auth, Auth::role_list)),
        ("/auth/role/delete", unary!(auth, Auth::role_delete)),
        (
            "/auth/role/grant",
            unary!(auth, Auth::role_grant_permission),
        ),
        (
            "/auth/role/revoke",
            unary!(auth, Auth::role_revoke_permission),
        ),
    ];
    let mut router = axum::Router::new();
    for prefix in PREFIXES {
        for (path, route) in &routes {
            let route = route.clone().fallback(method_not_allowed);
            router = router.route(&format!("{prefix}{path}"), route);
        }
        // grpc-gateway's own 404 for any other path under its prefixes.
        router = router.route(&format!("{prefix}/{{*rest}}"), any(gateway_not_found));
    }
    router
        .with_state(services)
        .layer(axum::middleware::from_fn_with_state(
            server,
            refuse_common_name,
        ))
        .layer(axum::middleware::map_response(cors))
}

/// grpc-gateway's CORS headers, which etcd sends on every gateway answer.
async fn cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    resp
}

/// A plain-text answer as Go's `http.Error` writes it.
fn plain_text(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    plain_text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

async fn gateway_not_found() -> Response {
    plain_text(StatusCode::NOT_FOUND, "Not Found\n")
}

/// HTTP status grpc-gateway (v1, as vendored by etcd 3.4) gives a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error":..,"message":..,"code":..}` with the code's HTTP status.
fn error_response(status: &Status) -> Response {
    // grpc-gateway's field order: error, message, code.
    let msg = serde_json::Value::from(status.message()).to_string();
    let body = format!(
        r#"{{"error":{msg},"message":{msg},"code":{}}}"#,
        status.code() as i32
    );
    json(http_status(status.code()), body)
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// etcd's access check in front of the gateway: with client certificate auth and auth both on,
/// a request over TLS whose verified certificate has a common name gets HTTP 400, because the
/// gateway's own call to the server could not carry the CN as the caller's identity.
async fn refuse_common_name(
    State(server): State<Arc<EtcdServer>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let has_cn = req
        .extensions()
        .get::<crate::tls::PeerIdentity>()
        .is_some_and(|id| !id.common_name.is_empty());
    if has_cn && server.cfg.client_tls.client_cert_auth && server.auth.enabled() {
        return plain_text(StatusCode::BAD_REQUEST, CN_REFUSED);
    }
    next.run(req).await
}

/// A gRPC request carrying the HTTP caller's token as the services expect it.
fn grpc_request<T>(headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| tonic::metadata::MetadataValue::try_from(v.as_bytes()).ok())
    {
        req.metadata_mut()
            .insert(crate::auth::TOKEN_METADATA_GATEWAY, token);
    }
    req
}

/// One JSON message; an empty body is the message with every field at its default.
fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Status::invalid_argument(e.to_string()))
}

async fn read_body(body: Body, max: usize) -> Result<Bytes, Status> {
    axum::body::to_bytes(body, max)
        .await
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

async fn unary<Req, Resp, F, Fut>(req: Request, max: usize, call: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let (parts, body) = req.into_parts();
    let msg = match read_body(body, max).await.and_then(|b| decode::<Req>(&b)) {
        Ok(msg) => msg,
        Err(status) => return error_response(&status),
    };
    match call(grpc_request(&parts.headers, msg)).await {
        Ok(resp) => match serde_json::to_string(resp.get_ref()) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => error_response(&Status::internal(e.to_string())),
        },
        Err(status) => error_response(&status),
    }
}

/// Decodes the gRPC frames the gateway makes from the JSON messages of a streaming body.
struct ProstFrames<T>(std::marker::PhantomData<T>);

impl<T: prost::Message + Default> Decoder for ProstFrames<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// A gRPC-framed message: uncompressed flag, big-endian length, protobuf bytes.
fn frame<T: prost::Message>(msg: &T) -> Bytes {
    let payload = msg.encode_to_vec();
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.into()
}

/// The JSON objects of a streaming request body, decoded as they arrive.
struct JsonMessages {
    data: axum::body::BodyDataStream,
    buf: Vec<u8>,
    max: usize,
}

impl JsonMessages {
    fn new(body: Body, max: usize) -> JsonMessages {
        JsonMessages {
            data: body.into_data_stream(),
            buf: Vec::new(),
            max,
        }
    }

    /// The next message; None at the end of the body. A malformed one is grpc-gateway's
    /// Unknown error.
    async fn next<Req: DeserializeOwned>(&mut self) -> Option<Result<Req, Status>> {
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            self.buf.drain(..start);
            if !self.buf.is_empty() {
                let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Req>();
                let parsed = match it.next() {
                    Some(Ok(msg)) => Some(Ok((msg, it.byte_offset()))),
                    Some(Err(e)) if !e.is_eof() => Some(Err(Status::unknown(e.to_string()))),
                    _ => None,
                };
                match parsed {
                    Some(Ok((msg, used))) => {
                        self.buf.drain(..used);
                        return Some(Ok(msg));
                    }
                    Some(Err(status)) => return Some(Err(status)),
                    None => {}
                }
            }
            match self.data.next().await {
                Some(Ok(chunk)) if self.buf.len() + chunk.len() <= self.max => {
                    self.buf.extend_from_slice(&chunk)
                }
                Some(Ok(_)) => return Some(Err(Status::resource_exhausted("request too large"))),
                Some(Err(e)) => return Some(Err(Status::unknown(e.to_string()))),
                None if self.buf.is_empty() => return None,
                None => return Some(Err(Status::unknown("unexpected EOF"))),
            }
        }
    }
}

/// The stream of requests a streaming service reads: `first`, then the body's further JSON
/// messages, each passed on as a gRPC frame. A malformed message ends the stream.
fn request_stream<Req>(first: Option<Req>, mut rest: JsonMessages) -> Streaming<Req>
where
    Req: DeserializeOwned + prost::Message + Default + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let Some(first) = first else { return };
        if tx.send(Ok(frame(&first))).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = rest.next::<Req>().await {
            if tx.send(Ok(frame(&msg))).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx));
    Streaming::new_request(
        ProstFrames::<Req>(std::marker::PhantomData),
        body,
        None,
        None,
    )
}

/// A streamed answer: `{"result":<message>}` a line, or `{"error":{...}}` and the end.
fn stream_response<Resp, S>(stream: S) -> Response
where
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
{
    let lines = stream.map(|item| {
        let line = match item {
            Ok(msg) => match serde_json::to_string(&msg) {
                Ok(m) => format!("{{\"result\":{m}}}\n"),
                Err(e) => stream_error(&Status::internal(e.to_string())),
            },
            Err(status) => stream_error(&status),
        };
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    let mut failed = false;
    // Nothing follows an error line.
    let lines = lines.take_while(move |l| {
        let go = !failed;
        if let Ok(l) = l {
            failed = l.starts_with(b"{\"error\"");
        }
        futures::future::ready(go)
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// grpc-gateway's error object inside a stream.
fn stream_error(status: &Status) -> String {
    let http = http_status(status.code());
    let msg = serde_json::Value::from(status.message()).to_string();
    format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{msg},\"http_status\":\"{}\"}}}}\n",
        status.code() as i32,
        http.as_u16(),
        http.canonical_reason().unwrap_or("")
    )
}

async fn bidi<Req, Resp, S, F, Fut>(req: Request, max: usize, call: F) -> Response
where
    Req: DeserializeOwned + prost::Message + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: FnOnce(tonic::Request<Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let (parts, body) = req.into_parts();
    // As grpc-gateway: a malformed first message is answered with an error instead of a stream.
    let mut messages = JsonMessages::new(body, max);
    let first = match messages.next::<Req>().await {
        Some(Ok(msg)) => Some(msg),
        Some(Err(status)) => return error_response(&status),
        None => None,
    };
    let requests = request_stream(first, messages);
    match call(grpc_request(&parts.headers, requests)).await {
        Ok(resp) => stream_response(resp.into_inner()),
        Err(status) => error_response(&status),
    }
}

/// A server-streaming call: the request from the body, the answers as lines.
async fn server_stream<Req, Resp, S, F, Fut>(req: Request, max: usize, call: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let (parts, body) = req.into_parts();
    let msg = match read_body(body, max).await.and_then(|b| decode::<Req>(&b)) {
        Ok(msg) => msg,
        Err(status) => return error_response(&status),
    };
    match call(grpc_request(&parts.headers, msg)).await {
        Ok(resp) => stream_response(resp.into_inner()),
        Err(status) => error_response(&status),
    }
}
