//! One member's gRPC clients, and the translation of a recorded [`Request`] into the etcd call
//! and of its answer into a recorded [`Outcome`].

use std::time::Duration;

use oxcd_api::etcdserverpb as pb;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::mvccpb;
use tonic::transport::{Channel, Endpoint};

use crate::history::{
    Compare, CompareResult, CompareTarget, KeyValue, Outcome, Request, Response, TxnOp, TxnResult,
};

/// How long a client waits for one answer before it records the operation as failed (its
/// effect unknown). Longer than a leader election (500 ms election timeout), shorter than a
/// scenario's fault, so that clients stuck on a cut-off member soon try another.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// Clients of one member, on one lazily (re)connected HTTP/2 connection.
#[derive(Clone)]
pub struct MemberClient {
    pub member: usize,
    channel: Channel,
}

impl MemberClient {
    /// Clients of the member serving `url` (`http://127.0.0.1:port`). Connects on first use
    /// and again after the connection breaks, as etcd's client does.
    pub fn new(member: usize, url: &str) -> MemberClient {
        let channel = Endpoint::from_shared(url.to_string())
            .expect("a client URL")
            .connect_timeout(Duration::from_secs(1))
            // No per-request timeout on the channel: it would also cut long watch streams.
            // Unary calls are bounded by `call`'s own timeout.
            .connect_lazy();
        MemberClient { member, channel }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Sends `req` and waits (at most [`REQUEST_TIMEOUT`]) for its answer.
    pub async fn call(&self, req: &Request) -> Outcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send(req)).await {
            Ok(Ok(resp)) => Outcome::Ok(resp),
            Ok(Err(status)) => Outcome::Err {
                code: status.code() as i32,
                message: status.message().to_string(),
            },
            Err(_) => Outcome::Err {
                code: tonic::Code::DeadlineExceeded as i32,
                message: "client timeout".to_string(),
            },
        }
    }

    async fn send(&self, req: &Request) -> Result<Response, tonic::Status> {
        let mut kv = KvClient::new(self.channel.clone());
        match req {
            Request::Range {
                key,
                range_end,
                revision,
                limit,
                serializable,
            } => {
                let r = kv
                    .range(pb::RangeRequest {
                        key: key.clone(),
                        range_end: range_end.clone(),
                        revision: *revision,
                        limit: *limit,
                        serializable: *serializable,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                Ok(Response::Range {
                    revision: header_revision(&r.header),
                    kvs: r.kvs.into_iter().map(kv_of).collect(),
                    count: r.count,
                    more: r.more,
                })
            }
            Request::Put { key, value, lease } => {
                let r = kv.put(put_request(key, value, *lease)).await?.into_inner();
                Ok(Response::Put {
                    revision: header_revision(&r.header),
                })
            }
            Request::Delete { key, range_end } => {
                let r = kv
                    .delete_range(delete_request(key, range_end))
                    .await?
                    .into_inner();
                Ok(Response::Delete {
                    revision: header_revision(&r.header),
                    deleted: r.deleted,
                })
            }
            Request::Txn {
                compares,
                success,
                failure,
            } => {
                let r = kv
                    .txn(pb::TxnRequest {
                        compare: compares.iter().map(compare_of).collect(),
                        success: success.iter().map(request_op).collect(),
                        failure: failure.iter().map(request_op).collect(),
                    })
                    .await?
                    .into_inner();
                Ok(Response::Txn {
                    revision: header_revision(&r.header),
                    succeeded: r.succeeded,
                    results: r.responses.into_iter().map(txn_result).collect(),
                })
            }
            Request::LeaseGrant { id, ttl } => {
                let r = LeaseClient::new(self.channel.clone())
                    .lease_grant(pb::LeaseGrantRequest { ttl: *ttl, id: *id })
                    .await?
                    .into_inner();
                if !r.error.is_empty() {
                    return Err(tonic::Status::unknown(r.error));
                }
                Ok(Response::LeaseGrant {
                    revision: header_revision(&r.header),
                    id: r.id,
                    ttl: r.ttl,
                })
            }
            Request::LeaseRevoke { id } => {
                let r = LeaseClient::new(self.channel.clone())
                    .lease_revoke(pb::LeaseRevokeRequest { id: *id })
                    .await?
                    .into_inner();
                Ok(Response::LeaseRevoke {
                    revision: header_revision(&r.header),
                })
            }
            Request::LeaseKeepAlive { id } => {
                let once = futures::stream::iter([pb::LeaseKeepAliveRequest { id: *id }]);
                let mut stream = LeaseClient::new(self.channel.clone())
                    .lease_keep_alive(once)
                    .await?
                    .into_inner();
                match stream.message().await? {
                    Some(r) => Ok(Response::LeaseKeepAlive {
                        revision: header_revision(&r.header),
                        ttl: r.ttl,
                    }),
                    None => Err(tonic::Status::unavailable("keep-alive stream closed")),
                }
            }
            Request::Compact { revision, physical } => {
                let r = kv
                    .compact(pb::CompactionRequest {
                        revision: *revision,
                        physical: *physical,
                    })
                    .await?
                    .into_inner();
                Ok(Response::Compact {
                    revision: header_revision(&r.header),
                })
            }
            Request::Defragment => {
                MaintenanceClient::new(self.channel.clone())
                    .defragment(pb::DefragmentRequest {})
                    .await?;
                Ok(Response::Defragment)
            }
        }
    }

    /// Maintenance Status of this member.
    pub async fn status(&self) -> Result<pb::StatusResponse, tonic::Status> {
        let mut client = MaintenanceClient::new(self.channel.clone());
        let call = client.status(pb::StatusRequest {});
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(r) => r.map(|r| r.into_inner()),
            Err(_) => Err(tonic::Status::deadline_exceeded("client timeout")),
        }
    }

    /// HashKV of this member at `revision` (0: its current revision).
    pub async fn hash_kv(&self, revision: i64) -> Result<pb::HashKvResponse, tonic::Status> {
        let mut client = MaintenanceClient::new(self.channel.clone());
        let call = client.hash_kv(pb::HashKvRequest { revision });
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(r) => r.map(|r| r.into_inner()),
            Err(_) => Err(tonic::Status::deadline_exceeded("client timeout")),
        }
    }
}

pub fn header_revision(h: &Option<pb::ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

pub fn kv_of(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn put_request(key: &[u8], value: &[u8], lease: i64) -> pb::PutRequest {
    pb::PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }
}

fn delete_request(key: &[u8], range_end: &[u8]) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        ..Default::default()
    }
}

fn compare_of(c: &Compare) -> pb::Compare {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let (target, union) = match &c.target {
        CompareTarget::Value(v) => (T::Value, U::Value(v.clone())),
        CompareTarget::ModRevision(r) => (T::Mod, U::ModRevision(*r)),
        CompareTarget::CreateRevision(r) => (T::Create, U::CreateRevision(*r)),
        CompareTarget::Version(v) => (T::Version, U::Version(*v)),
    };
    let result = match c.result {
        CompareResult::Equal => R::Equal,
        CompareResult::Greater => R::Greater,
        CompareResult::Less => R::Less,
        CompareResult::NotEqual => R::NotEqual,
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key.clone(),
        target_union: Some(union),
        range_end: Vec::new(),
    }
}

fn request_op(op: &TxnOp) -> pb::RequestOp {
    use pb::request_op::Request as R;
    let request = match op {
        TxnOp::Range { key, range_end } => R::RequestRange(pb::RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            ..Default::default()
        }),
        TxnOp::Put { key, value, lease } => R::RequestPut(put_request(key, value, *lease)),
        TxnOp::Delete { key, range_end } => R::RequestDeleteRange(delete_request(key, range_end)),
    };
    pb::RequestOp {
        request: Some(request),
    }
}

fn txn_result(r: pb::ResponseOp) -> TxnResult {
    use pb::response_op::Response as R;
    match r.response {
        Some(R::ResponseRange(r)) => TxnResult::Range {
            kvs: r.kvs.into_iter().map(kv_of).collect(),
            count: r.count,
        },
        Some(R::ResponseDeleteRange(r)) => TxnResult::Delete { deleted: r.deleted },
        Some(R::ResponsePut(_)) | Some(R::ResponseTxn(_)) | None => TxnResult::Put,
    }
}
