//! gRPC connections as etcd's benchmark makes them: `--conns` connections, each to all of
//! `--endpoints` (or only the leader with `--target-leader`), and `--clients` workers assigned
//! to them round-robin. TLS with `--cacert/--cert/--key`; `--user` authenticates once and every
//! request carries the token.

use std::time::Duration;

use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::{AuthenticateRequest, StatusRequest};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use crate::Global;

/// One gRPC connection and the auth token to send on it.
#[derive(Clone)]
pub struct Conn {
    ch: Channel,
    token: Option<AsciiMetadataValue>,
}

impl Conn {
    /// A request carrying the auth token, if any.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("token", t.clone());
        }
        r
    }

    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.ch.clone()).max_decoding_message_size(usize::MAX)
    }

    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.ch.clone()).max_decoding_message_size(usize::MAX)
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.ch.clone())
    }

    pub fn lock(&self) -> oxcd_api::v3lockpb::lock_client::LockClient<Channel> {
        oxcd_api::v3lockpb::lock_client::LockClient::new(self.ch.clone())
    }

    pub fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.ch.clone())
    }
}

/// A gRPC status as the Go client's error prints it: etcd's own errors by their text
/// ("etcdserver: ..."), others as "rpc error: code = X desc = Y".
pub fn err_text(s: &Status) -> String {
    let msg = s.message();
    if msg.starts_with("etcdserver: ") || msg.starts_with("mvcc: ") {
        return msg.to_string();
    }
    let code = match s.code() {
        Code::Ok => "OK".to_string(),
        Code::Cancelled => "Canceled".to_string(),
        c => format!("{c:?}"),
    };
    format!("rpc error: code = {code} desc = {msg}")
}

fn fail(msg: String) -> ! {
    crate::fail(&msg)
}

fn read_file(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| fail(format!("bad tls config: open {path}: {e}")))
}

/// Whether TLS is wanted: any TLS flag, or an https:// endpoint.
fn tls_wanted(g: &Global) -> bool {
    g.cacert.is_some()
        || g.cert.is_some()
        || g.key.is_some()
        || g.insecure_skip_tls_verify
        || g.endpoints.iter().any(|e| e.starts_with("https://"))
}

fn url(ep: &str, tls: bool) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else if tls {
        format!("https://{ep}")
    } else {
        format!("http://{ep}")
    }
}

fn endpoint(g: &Global, ep: &str) -> Endpoint {
    let tls = tls_wanted(g);
    let mut e = Endpoint::from_shared(url(ep, tls))
        .unwrap_or_else(|e| fail(format!("dial error: bad endpoint {ep}: {e}")));
    if !g.dial_timeout.is_zero() {
        e = e.connect_timeout(g.dial_timeout);
    }
    e = e
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if tls {
        let mut c = ClientTlsConfig::new();
        c = match &g.cacert {
            Some(ca) => c.ca_certificate(Certificate::from_pem(read_file(ca))),
            None => c.with_native_roots(),
        };
        match (&g.cert, &g.key) {
            (Some(cert), Some(key)) => {
                c = c.identity(Identity::from_pem(read_file(cert), read_file(key)))
            }
            (None, None) => {}
            _ => fail("bad tls config: --cert and --key go together".to_string()),
        }
        e = e
            .tls_config(c)
            .unwrap_or_else(|e| fail(format!("bad tls config: {e}")));
    }
    e
}

/// Why a dial failed, with the causes tonic keeps behind "transport error".
fn dial_error(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        cause = c.source();
    }
    text
}

/// An endpoint for `--insecure-skip-tls-verify`: plain `Endpoint` settings, TLS done by our
/// own connector.
fn insecure_endpoint(g: &Global, ep: &str) -> Endpoint {
    // The connector does the TLS; tonic refuses an https:// URI without its own TLS.
    let plain = url(ep, true).replacen("https://", "http://", 1);
    let mut e = Endpoint::from_shared(plain)
        .unwrap_or_else(|e| fail(format!("dial error: bad endpoint {ep}: {e}")));
    if !g.dial_timeout.is_zero() {
        e = e.connect_timeout(g.dial_timeout);
    }
    e.tcp_nodelay(true)
}

async fn dial(g: &Global, eps: &[String]) -> Channel {
    if g.insecure_skip_tls_verify {
        let cfg = crate::insecure::config(g.cert.as_deref(), g.key.as_deref())
            .unwrap_or_else(|e| fail(format!("bad tls config: {e}")));
        // One endpoint per connection here: the first one (the leader with --target-leader).
        let e = insecure_endpoint(g, &eps[0]);
        return e
            .connect_with_connector(crate::insecure::Connector(cfg))
            .await
            .unwrap_or_else(|e| fail(format!("dial error: {}", dial_error(&e))));
    }
    if eps.len() == 1 {
        endpoint(g, &eps[0])
            .connect()
            .await
            .unwrap_or_else(|e| fail(format!("dial error: {}", dial_error(&e))))
    } else {
        Channel::balance_list(eps.iter().map(|ep| endpoint(g, ep)))
    }
}

/// The endpoint whose member is the leader, asked of each endpoint in turn.
async fn find_leader(g: &Global) -> String {
    for ep in &g.endpoints {
        let ch = if g.insecure_skip_tls_verify {
            dial(g, std::slice::from_ref(ep)).await
        } else {
            let Ok(ch) = endpoint(g, ep).connect().await else {
                continue;
            };
            ch
        };
        let Ok(st) = MaintenanceClient::new(ch).status(StatusRequest {}).await else {
            continue;
        };
        let st = st.into_inner();
        if st.leader != 0 && st.header.map(|h| h.member_id) == Some(st.leader) {
            return ep.clone();
        }
    }
    fail("dial error: no leader found among --endpoints".to_string())
}

async fn token(g: &Global, ch: &Channel) -> Option<AsciiMetadataValue> {
    let user = g.user.as_ref()?;
    let (name, password) = match user.split_once(':') {
        Some((n, p)) => (n.to_string(), p.to_string()),
        None => fail(format!(
            "bad user information: {user} the password must be given as --user name:password"
        )),
    };
    let resp = AuthClient::new(ch.clone())
        .authenticate(AuthenticateRequest { name, password })
        .await;
    match resp {
        Ok(r) => Some(
            AsciiMetadataValue::try_from(r.into_inner().token)
                .unwrap_or_else(|e| fail(format!("dial error: {e}"))),
        ),
        Err(s) if s.message() == "etcdserver: authentication is not enabled" => None,
        Err(s) => fail(format!("dial error: {}", err_text(&s))),
    }
}

/// `--conns` connections, then `clients` handles on them round-robin.
pub async fn clients(g: &Global, clients: usize, conns: usize) -> Vec<Conn> {
    let eps = if g.target_leader {
        vec![find_leader(g).await]
    } else {
        g.endpoints.clone()
    };
    let mut made = Vec::with_capacity(conns);
    for _ in 0..conns.max(1) {
        let ch = dial(g, &eps).await;
        let token = token(g, &ch).await;
        made.push(Conn { ch, token });
    }
    (0..clients.max(1))
        .map(|i| made[i % made.len()].clone())
        .collect()
}

/// The first endpoint as given (for HashKV and Status after `put --check-hashkv`).
pub fn first_endpoint(g: &Global) -> String {
    g.endpoints.first().cloned().unwrap_or_default()
}

/// A connection to one endpoint only.
pub async fn single(g: &Global, ep: &str) -> Conn {
    let ch = dial(g, &[ep.to_string()]).await;
    let token = token(g, &ch).await;
    Conn { ch, token }
}
