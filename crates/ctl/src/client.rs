//! Connection to the cluster: one lazily-dialed gRPC channel per endpoint,
//! failover to the next endpoint when one cannot be reached (in the spirit
//! of clientv3's balancer), the command timeout around every call, and the
//! auth token attached to every request.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::*;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use crate::error::{
    CtlError, Result, DEADLINE_EXCEEDED, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR,
};
use crate::global::ClientConfig;
use oxcd_server::tls::{PeerDialer, TlsInfo, TlsOptions};

/// etcd's answer when auth is off; clientv3 then just proceeds without a token.
const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
/// The token expired or the server restarted: authenticate again and retry.
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";

pub struct Client {
    pub cfg: ClientConfig,
    channels: Vec<Channel>,
    /// Index of the endpoint that answered last; calls start there.
    current: AtomicUsize,
    token: Mutex<Option<AsciiMetadataValue>>,
}

/// The URL tonic dials for an etcdctl endpoint ("host:port" or a URL):
/// http:// is always plain text, https:// always TLS, and a bare
/// host:port uses TLS when TLS files were given (like clientv3).
fn endpoint_url(ep: &str, tls: bool) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else if tls {
        format!("https://{ep}")
    } else {
        format!("http://{ep}")
    }
}

/// Reads a PEM file named by a TLS flag; failures are bad arguments, with
/// Go's "open <path>: <reason>" text.
fn read_pem(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        CtlError::new(EXIT_BAD_ARGS, format!("open {path}: {why}"))
    })
}

/// The TLS setup for `--cacert/--cert/--key` (system roots without a CA).
fn tls_config(t: &crate::global::TlsConfig) -> Result<ClientTlsConfig> {
    let mut c = ClientTlsConfig::new();
    match &t.cacert {
        Some(ca) => c = c.ca_certificate(Certificate::from_pem(read_pem(ca)?)),
        None => c = c.with_native_roots(),
    }
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            c = c.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "open : no such file or directory",
            ));
        }
        (None, None) => {}
    }
    Ok(c)
}

/// The dialer for `--insecure-skip-tls-verify`: the server's peer dialer with verification
/// skipped (as for self-signed peers), presenting `--cert/--key` when given.
fn insecure_dialer(t: &crate::global::TlsConfig) -> Result<PeerDialer> {
    let (cert_file, key_file) = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            read_pem(cert)?;
            read_pem(key)?;
            (cert.clone(), key.clone())
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "open : no such file or directory",
            ));
        }
        (None, None) => Default::default(),
    };
    let info = TlsInfo {
        cert_file,
        key_file,
        self_signed: true,
        ..Default::default()
    };
    Ok(PeerDialer::new(&info, &TlsOptions::default()))
}

/// Errors that mean "this endpoint is unreachable", worth trying another.
fn is_transport_failure(s: &Status) -> bool {
    match s.code() {
        Code::Unavailable => !s.message().starts_with("etcdserver: "),
        // A connection torn down during the handshake (e.g. TLS refused).
        Code::Cancelled => s.message() == "operation was canceled",
        Code::Unknown => {
            let m = s.message();
            m.contains("transport") || m.contains("connect") || m.contains("connection")
        }
        _ => false,
    }
}

impl Client {
    /// Prepares channels for `cfg.endpoints` (no dialing yet) and, when a
    /// user is configured, fetches the auth token like clientv3.New does.
    pub async fn connect(cfg: &ClientConfig) -> Result<Client> {
        let c = Client::new_lazy(cfg)?;
        c.authenticate().await?;
        Ok(c)
    }

    fn new_lazy(cfg: &ClientConfig) -> Result<Client> {
        let mut channels = Vec::new();
        for ep in &cfg.endpoints {
            let url = endpoint_url(ep, cfg.tls.wanted());
            let bad_ep = |e: &dyn std::fmt::Display| {
                CtlError::new(EXIT_BAD_ARGS, format!("invalid endpoint {ep}: {e}"))
            };
            // tonic's TLS always verifies the server: skipping is done by a dialer that
            // does TLS itself over an endpoint it makes plain.
            let skip_verify =
                url.starts_with("https://") && cfg.tls.insecure_skip_verify && cfg.tls.wanted();
            let mut endpoint = if skip_verify {
                PeerDialer::endpoint(&url).map_err(|e| bad_ep(&e))?
            } else {
                Endpoint::from_shared(url.clone()).map_err(|e| bad_ep(&e))?
            }
            .connect_timeout(cfg.dial_timeout)
            .tcp_nodelay(true)
            // grpc-go raises keepalive pings to at least 10s; faster
            // pings make etcd close the connection ("too many pings").
            .http2_keep_alive_interval(cfg.keepalive_time.max(Duration::from_secs(10)))
            .keep_alive_timeout(cfg.keepalive_timeout);
            if skip_verify {
                endpoint = endpoint.origin(url.parse().map_err(|e| bad_ep(&e))?);
                channels.push(insecure_dialer(&cfg.tls)?.connect_lazy(&url, endpoint));
                continue;
            }
            if url.starts_with("https://") {
                endpoint = endpoint.tls_config(tls_config(&cfg.tls)?).map_err(|e| {
                    CtlError::new(EXIT_BAD_ARGS, format!("invalid TLS configuration: {e}"))
                })?;
            }
            channels.push(endpoint.connect_lazy());
        }
        if channels.is_empty() {
            return Err(CtlError::new(
                EXIT_ERROR,
                "etcdclient: no available endpoints",
            ));
        }
        Ok(Client {
            cfg: cfg.clone(),
            channels,
            current: AtomicUsize::new(0),
            token: Mutex::new(None),
        })
    }

    /// A client for one endpoint of this client, sharing its credentials
    /// (endpoint status/health/defrag address each member directly).
    pub fn for_endpoint(&self, ep: &str) -> Result<Client> {
        let mut cfg = self.cfg.clone();
        cfg.endpoints = vec![ep.to_string()];
        let c = Client::new_lazy(&cfg)?;
        *c.token.lock().unwrap() = self.token.lock().unwrap().clone();
        Ok(c)
    }

    /// Wraps a message in a request carrying the auth token.
    pub fn request<M>(&self, msg: M) -> Request<M> {
        let mut r = Request::new(msg);
        if let Some(t) = self.token.lock().unwrap().clone() {
            r.metadata_mut().insert("token", t);
        }
        r
    }

    fn start_index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.channels.len()
    }

    /// A channel to the endpoint currently in use (for streams).
    pub fn channel(&self, attempt: usize) -> Channel {
        let i = (self.start_index() + attempt) % self.channels.len();
        self.channels[i].clone()
    }

    pub fn mark_good(&self, attempt: usize) {
        let i = (self.start_index() + attempt) % self.channels.len();
        self.current.store(i, Ordering::Relaxed);
    }

    /// Runs one unary RPC with endpoint failover, bounded by `timeout`.
    async fn call_within<T, F, Fut>(&self, timeout: Duration, f: &F) -> Result<T>
    where
        F: Fn(Channel, Option<AsciiMetadataValue>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let attempt = async {
            let n = self.channels.len();
            loop {
                let start = self.start_index();
                for k in 0..n {
                    let i = (start + k) % n;
                    let token = self.token.lock().unwrap().clone();
                    match f(self.channels[i].clone(), token).await {
                        Ok(r) => {
                            self.current.store(i, Ordering::Relaxed);
                            return Ok(r.into_inner());
                        }
                        Err(s) if is_transport_failure(&s) => continue,
                        Err(s) => return Err(CtlError::from(s)),
                    }
                }
                // Every endpoint is down: keep retrying until the deadline,
                // as clientv3 does.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(CtlError::new(EXIT_ERROR, DEADLINE_EXCEEDED)),
        }
    }

    /// Runs one unary RPC within the command timeout; an expired token is
    /// renewed once, like clientv3's retry.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Channel, Option<AsciiMetadataValue>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        match self.call_within(self.cfg.command_timeout, &f).await {
            Err(e) if e.msg == INVALID_TOKEN && self.cfg.auth.is_some() => {
                self.authenticate().await?;
                self.call_within(self.cfg.command_timeout, &f).await
            }
            r => r,
        }
    }

    /// Gets an auth token for `--user` (within the dial timeout). A failure
    /// here is a connection failure for etcdctl (exit code 2).
    async fn authenticate(&self) -> Result<()> {
        let Some((name, password)) = self.cfg.auth.clone() else {
            return Ok(());
        };
        *self.token.lock().unwrap() = None;
        let req = AuthenticateRequest { name, password };
        let res = self
            .call_within(self.cfg.dial_timeout, &|ch, _| {
                let req = req.clone();
                async move { AuthClient::new(ch).authenticate(Request::new(req)).await }
            })
            .await;
        match res {
            Ok(r) => {
                let v = AsciiMetadataValue::try_from(r.token.as_str())
                    .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.to_string()))?;
                *self.token.lock().unwrap() = Some(v);
                Ok(())
            }
            Err(e) if e.msg == AUTH_NOT_ENABLED => Ok(()),
            Err(e) => Err(e.with_code(EXIT_BAD_CONNECTION)),
        }
    }
}

/// Attaches the token to a request built inside a call closure.
pub fn with_token<M>(msg: M, token: &Option<AsciiMetadataValue>) -> Request<M> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.clone());
    }
    r
}

/// Generates one Client method per unary RPC.
macro_rules! unary {
    ($name:ident, $client:ident, $req:ty, $resp:ty) => {
        pub async fn $name(&self, req: $req) -> Result<$resp> {
            self.call(|ch, tok| {
                let req = with_token(req.clone(), &tok);
                async move { $client::new(ch).$name(req).await }
            })
            .await
        }
    };
}

impl Client {
    unary!(range, KvClient, RangeRequest, RangeResponse);
    unary!(
        auth_enable,
        AuthClient,
        AuthEnableRequest,
        AuthEnableResponse
    );
    unary!(
        auth_status,
        AuthClient,
        AuthStatusRequest,
        AuthStatusResponse
    );
    unary!(
        auth_disable,
        AuthClient,
        AuthDisableRequest,
        AuthDisableResponse
    );
    unary!(
        user_add,
        AuthClient,
        AuthUserAddRequest,
        AuthUserAddResponse
    );
    unary!(
        user_get,
        AuthClient,
        AuthUserGetRequest,
        AuthUserGetResponse
    );
    unary!(
        user_list,
        AuthClient,
        AuthUserListRequest,
        AuthUserListResponse
    );
    unary!(
        user_delete,
        AuthClient,
        AuthUserDeleteRequest,
        AuthUserDeleteResponse
    );
    unary!(
        user_change_password,
        AuthClient,
        AuthUserChangePasswordRequest,
        AuthUserChangePasswordResponse
    );
    unary!(
        user_grant_role,
        AuthClient,
        AuthUserGrantRoleRequest,
        AuthUserGrantRoleResponse
    );
    unary!(
        user_revoke_role,
        AuthClient,
        AuthUserRevokeRoleRequest,
        AuthUserRevokeRoleResponse
    );
    unary!(
        role_add,
        AuthClient,
        AuthRoleAddRequest,
        AuthRoleAddResponse
    );
    unary!(
        role_get,
        AuthClient,
        AuthRoleGetRequest,
        AuthRoleGetResponse
    );
    unary!(
        role_list,
        AuthClient,
        AuthRoleListRequest,
        AuthRoleListResponse
    );
    unary!(
        role_delete,
        AuthClient,
        AuthRoleDeleteRequest,
        AuthRoleDeleteResponse
    );
    unary!(
        role_grant_permission,
        AuthClient,
        AuthRoleGrantPermissionRequest,
        AuthRoleGrantPermissionResponse
    );
    unary!(
        role_revoke_permission,
        AuthClient,
        AuthRoleRevokePermissionRequest,
        AuthRoleRevokePermissionResponse
    );
    unary!(
        member_add,
        ClusterClient,
        MemberAddRequest,
        MemberAddResponse
    );
    unary!(
        member_remove,
        ClusterClient,
        MemberRemoveRequest,
        MemberRemoveResponse
    );
    unary!(
        member_update,
        ClusterClient,
        MemberUpdateRequest,
        MemberUpdateResponse
    );
    unary!(
        member_promote,
        ClusterClient,
        MemberPromoteRequest,
        MemberPromoteResponse
    );
    unary!(
        move_leader,
        MaintenanceClient,
        MoveLeaderRequest,
        MoveLeaderResponse
    );
    unary!(hash_kv, MaintenanceClient, HashKvRequest, HashKvResponse);
    unary!(put, KvClient, PutRequest, PutResponse);
    unary!(
        delete_range,
        KvClient,
        DeleteRangeRequest,
        DeleteRangeResponse
    );
    unary!(txn, KvClient, TxnRequest, TxnResponse);
    unary!(compact, KvClient, CompactionRequest, CompactionResponse);
    unary!(
        lease_grant,
        LeaseClient,
        LeaseGrantRequest,
        LeaseGrantResponse
    );
    unary!(
        lease_revoke,
        LeaseClient,
        LeaseRevokeRequest,
        LeaseRevokeResponse
    );
    unary!(
        lease_time_to_live,
        LeaseClient,
        LeaseTimeToLiveRequest,
        LeaseTimeToLiveResponse
    );
    unary!(
        lease_leases,
        LeaseClient,
        LeaseLeasesRequest,
        LeaseLeasesResponse
    );
    unary!(
        member_list,
        ClusterClient,
        MemberListRequest,
        MemberListResponse
    );
    unary!(alarm, MaintenanceClient, AlarmRequest, AlarmResponse);
    unary!(status, MaintenanceClient, StatusRequest, StatusResponse);
    unary!(
        defragment,
        MaintenanceClient,
        DefragmentRequest,
        DefragmentResponse
    );
}

/// Sending half and response stream of an open bidirectional stream.
pub type Bidi<Req, Resp> = (tokio::sync::mpsc::Sender<Req>, tonic::Streaming<Resp>);

impl Client {
    /// Opens a bidirectional stream on the first endpoint that accepts it,
    /// sending `first` right away. Retries over all endpoints until
    /// `deadline` (forever when `None`, like a clientv3 watch).
    pub async fn open_bidi<Req, Resp, F, Fut>(
        &self,
        first: Vec<Req>,
        deadline: Option<Duration>,
        open: F,
    ) -> Result<Bidi<Req, Resp>>
    where
        Req: Clone + Send + 'static,
        F: Fn(Channel, Request<tokio_stream::wrappers::ReceiverStream<Req>>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<tonic::Streaming<Resp>>, Status>>,
    {
        let attempt = async {
            loop {
                for k in 0..self.channels.len() {
                    let (tx, rx) = tokio::sync::mpsc::channel(16);
                    for m in &first {
                        let _ = tx.send(m.clone()).await;
                    }
                    let mut req = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
                    if let Some(t) = self.token.lock().unwrap().clone() {
                        req.metadata_mut().insert("token", t);
                    }
                    // Like clientv3.WithRequireLeader: fail rather than hang
                    // on a member cut off from the leader.
                    req.metadata_mut()
                        .insert("hasleader", AsciiMetadataValue::from_static("true"));
                    match open(self.channel(k), req).await {
                        Ok(s) => {
                            self.mark_good(k);
                            return Ok((tx, s.into_inner()));
                        }
                        Err(s) if is_transport_failure(&s) => continue,
                        Err(s) => return Err(CtlError::from(s)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        match deadline {
            None => attempt.await,
            Some(d) => match tokio::time::timeout(d, attempt).await {
                Ok(r) => r,
                Err(_) => Err(CtlError::new(EXIT_ERROR, DEADLINE_EXCEEDED)),
            },
        }
    }
}
