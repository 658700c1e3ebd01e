//! Blocking gRPC calls to one member (`127.0.0.1:port`), each on its own connection and a
//! current-thread runtime, with an optional auth token sent as the `token` metadata as etcd's
//! clientv3 does. Outcomes are rendered as stable text, `OK <fields>` or
//! `ERR <gRPC code> <message>`, so that transcripts of etcd and oxcd compare equal.

use std::fmt;
use std::future::Future;

use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthUserChangePasswordRequest,
    AuthUserDeleteRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
    AuthenticateRequest, PutRequest, RangeRequest,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// A call the server refused: its gRPC code name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERR {} {}", self.code, self.message)
    }
}

/// Sends `msg` (with `token` as metadata) through `rpc` on a new connection to `endpoint`.
fn call<M, T, F, Fut>(endpoint: &str, token: Option<&str>, msg: M, rpc: F) -> Result<T, Failure>
where
    F: FnOnce(Channel, Request<M>) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let channel = Channel::from_shared(format!("http://{endpoint}"))
            .expect("an endpoint URL")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("gRPC connection to {endpoint}: {e:?}"));
        let mut request = Request::new(msg);
        if let Some(token) = token {
            let value = token.parse().expect("a token usable as metadata");
            request.metadata_mut().insert("token", value);
        }
        rpc(channel, request)
            .await
            .map(Response::into_inner)
            .map_err(|s| Failure {
                code: format!("{:?}", s.code()),
                message: s.message().to_string(),
            })
    })
}

/// `OK` for a call that succeeded (its answer beside the point), else the failure.
pub fn done<T>(r: Result<T, Failure>) -> String {
    match r {
        Ok(_) => "OK".to_string(),
        Err(f) => f.to_string(),
    }
}

/// Authenticate: the token, or why not.
pub fn authenticate(
    endpoint: &str,
    name: &str,
    password: &str,
    token: Option<&str>,
) -> Result<String, Failure> {
    let msg = AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    };
    call(endpoint, token, msg, |ch, r| async move {
        AuthClient::new(ch).authenticate(r).await
    })
    .map(|r| r.token)
}

/// Range of one key: `OK count=N key=value...`.
pub fn range(endpoint: &str, key: &str, token: Option<&str>) -> String {
    let msg = RangeRequest {
        key: key.into(),
        ..Default::default()
    };
    let r = call(endpoint, token, msg, |ch, r| async move {
        KvClient::new(ch).range(r).await
    });
    match r {
        Ok(r) => {
            let mut out = format!("OK count={}", r.count);
            for kv in r.kvs {
                out.push_str(&format!(
                    " {}={}",
                    String::from_utf8_lossy(&kv.key),
                    String::from_utf8_lossy(&kv.value)
                ));
            }
            out
        }
        Err(f) => f.to_string(),
    }
}

/// Put `key` = `value`: `OK` or the failure.
pub fn put(endpoint: &str, key: &str, value: &str, token: Option<&str>) -> String {
    let msg = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    done(call(endpoint, token, msg, |ch, r| async move {
        KvClient::new(ch).put(r).await
    }))
}

/// An Auth request whose answer is only a header, and the RPC that sends it.
pub trait AuthRpc: Sized {
    fn send(
        client: AuthClient<Channel>,
        request: Request<Self>,
    ) -> impl Future<Output = Result<(), Status>>;
}

macro_rules! auth_rpcs {
    ($($request:ident => $method:ident),* $(,)?) => {
        $(
            impl AuthRpc for $request {
                fn send(
                    mut client: AuthClient<Channel>,
                    request: Request<Self>,
                ) -> impl Future<Output = Result<(), Status>> {
                    async move { client.$method(request).await.map(|_| ()) }
                }
            }
        )*
    };
}

auth_rpcs!(
    AuthEnableRequest => auth_enable,
    AuthDisableRequest => auth_disable,
    AuthUserChangePasswordRequest => user_change_password,
    AuthUserDeleteRequest => user_delete,
    AuthUserGrantRoleRequest => user_grant_role,
    AuthUserRevokeRoleRequest => user_revoke_role,
    AuthRoleAddRequest => role_add,
);

/// An Auth management call: `OK` or the failure.
pub fn auth<M: AuthRpc>(endpoint: &str, token: Option<&str>, msg: M) -> String {
    done(call(endpoint, token, msg, |ch, r| async move {
        M::send(AuthClient::new(ch), r).await.map(Response::new)
    }))
}
