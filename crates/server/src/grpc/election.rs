//! The v3election Election service, and the waiting both it and the Lock service do.
//!
//! etcd serves these with its client-side `concurrency` package over an in-process client; this
//! does the same steps against the server's own store, watch hub and raft, as the caller (so auth
//! applies as in etcd):
//! - a candidate (or lock waiter) owns `<name>/<lease id in hex>`, created with its lease by a txn
//!   (or reused if it exists already);
//! - it waits until every key under `<name>/` created before its own is gone, watching the newest
//!   of them each round;
//! - the leader (lock holder) is the key with the smallest create revision under the prefix.
//!
//! Errors that etcd's concurrency package passes through (its own, and the server's as its client
//! sees them) reach the caller with code Unknown and the same text, as etcd's do.
//!
//! Unlike etcd 3.4, a wait also ends when the waiter's own key goes away because its lease
//! expired or was revoked (`etcdserver: requested lease not found`): etcd would wait on and then
//! answer with a key that no longer exists. A caller that goes away ends the wait, and its key
//! is deleted, as etcd does.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use oxcd_api::etcdserverpb::lease_server::Lease;
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, InternalRaftRequest,
    LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse, WatchCreateRequest,
};
use oxcd_api::mvccpb::{event::EventType, KeyValue};
use oxcd_api::v3electionpb::election_server::Election;
use oxcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::error::EtcdError;
use crate::mvcc::watch_hub::{WatchOutput, WatchStream};
use crate::server::{ApplyResponse, EtcdServer};

/// TTL of the lease etcd's session grants when a request names none (concurrency's default).
const SESSION_TTL: i64 = 60;
pub const ERR_NOT_LEADER: &str = "election: not leader";
pub const ERR_NO_LEADER: &str = "election: no leader";
pub const ERR_MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// An error as etcd's concurrency package hands it to grpc-go: code Unknown, the same text.
pub(super) fn passed_through(s: Status) -> Status {
    Status::unknown(s.message().to_string())
}

fn etcd(e: EtcdError) -> Status {
    passed_through(e.into())
}

/// The end of the range of every key starting with `prefix` (clientv3.GetPrefixRangeEnd).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// The key a session with `lease` owns under `prefix` (`<prefix><lease in lower-case hex>`).
pub(super) fn own_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("{:x}", lease).as_bytes());
    k
}

fn op(r: request_op::Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

pub(super) fn op_get(key: &[u8]) -> RequestOp {
    op(request_op::Request::RequestRange(RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }))
}

/// The oldest key under `prefix` (clientv3.WithFirstCreate).
pub(super) fn first_create(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..Default::default()
    }
}

pub(super) fn op_put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    op(request_op::Request::RequestPut(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }))
}

fn op_delete(key: &[u8]) -> RequestOp {
    op(request_op::Request::RequestDeleteRange(
        DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        },
    ))
}

pub(super) fn create_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        range_end: Vec::new(),
    }
}

/// The `i`th response of a txn as a range response (what the txn's Get ops produce).
pub(super) fn range_at(resp: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match resp.responses.get(i)?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => Some(r),
        _ => None,
    }
}

/// One request's client of the server itself: what etcd's in-process clientv3 does for the
/// concurrency package, with the caller's identity.
#[derive(Clone)]
pub(super) struct Session {
    pub server: Arc<EtcdServer>,
    pub caller: Caller,
}

impl Session {
    pub fn new<T>(server: &Arc<EtcdServer>, req: &Request<T>) -> Session {
        Session {
            server: server.clone(),
            caller: Caller::of(req),
        }
    }

    /// A linearizable Get.
    pub async fn get(&self, r: &RangeRequest) -> Result<RangeResponse, Status> {
        self.server.read_index().await.map_err(etcd)?;
        let who = self.server.auth_info(&self.caller).await.map_err(etcd)?;
        self.server
            .auth
            .check_range(who.as_ref(), &r.key, &r.range_end)
            .map_err(etcd)?;
        let mut resp = self.server.store.range(r).map_err(etcd)?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        resp.header = Some(self.server.header_at(revision));
        Ok(resp)
    }

    async fn propose(&self, ir: InternalRaftRequest) -> Result<ApplyResponse, Status> {
        self.server.propose_as(&self.caller, ir).await.map_err(etcd)
    }

    pub async fn txn(&self, t: TxnRequest) -> Result<TxnResponse, Status> {
        self.server
            .check_quota(crate::quota::txn_cost(&t))
            .await
            .map_err(etcd)?;
        let ir = InternalRaftRequest {
            txn: Some(t),
            ..Default::default()
        };
        match self.propose(ir).await? {
            ApplyResponse::Txn(r) => Ok(r),
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// The session's lease: the caller's, or (lease 0) a fresh one of etcd's default TTL.
    pub async fn lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let mut req = Request::new(LeaseGrantRequest {
            ttl: SESSION_TTL,
            id: 0,
        });
        if let Some(token) = &self.caller.token {
            if let Ok(v) = token.parse() {
                req.metadata_mut().insert(crate::auth::TOKEN_METADATA, v);
            }
        }
        if let Some(cn) = &self.caller.common_name {
            req.extensions_mut().insert(crate::tls::PeerIdentity {
                common_name: cn.clone(),
            });
        }
        let svc = super::lease::LeaseService::new(self.server.clone());
        let resp = svc.lease_grant(req).await.map_err(passed_through)?;
        Ok(resp.into_inner().id)
    }

    /// Deletes `key` if it is still the one created at `rev` (Election.Resign).
    pub async fn delete_if_created_at(&self, key: &[u8], rev: i64) -> Result<TxnResponse, Status> {
        self.txn(TxnRequest {
            compare: vec![create_rev_is(key, rev)],
            success: vec![op_delete(key)],
            failure: Vec::new(),
        })
        .await
    }

    pub async fn delete(&self, key: &[u8]) -> Result<ResponseHeader, Status> {
        let ir = InternalRaftRequest {
            delete_range: Some(DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.propose(ir).await? {
            ApplyResponse::DeleteRange(r) => Ok(r.header.unwrap_or_default()),
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// concurrency's waitDeletes: until no key under `prefix` created at or below
    /// `max_create_rev` is left, watching the newest each round. Also ends when `own` (the
    /// waiter's key and lease) is deleted because its lease is gone.
    pub async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_rev: i64,
        own: (&[u8], i64),
    ) -> Result<ResponseHeader, Status> {
        let mut stream = self.server.watch_hub.open_stream();
        let (own_key, own_lease) = own;
        let own_now = self
            .get(&RangeRequest {
                key: own_key.to_vec(),
                ..Default::default()
            })
            .await?;
        if own_now.kvs.is_empty() && !self.server.lessor.exists(own_lease) {
            return Err(etcd(EtcdError::LeaseNotFound));
        }
        let own_rev = own_now.header.as_ref().map_or(0, |h| h.revision);
        let own_watch = watch(&mut stream, own_key, own_rev + 1)?;
        loop {
            let resp = self
                .get(&RangeRequest {
                    key: prefix.to_vec(),
                    range_end: prefix_end(prefix),
                    sort_order: SortOrder::Descend as i32,
                    sort_target: SortTarget::Create as i32,
                    limit: 1,
                    max_create_revision: max_create_rev,
                    ..Default::default()
                })
                .await?;
            let header = resp.header.unwrap_or_default();
            let Some(last) = resp.kvs.first() else {
                return Ok(header);
            };
            let id = watch(&mut stream, &last.key, header.revision)?;
            loop {
                match next_deletes(&mut stream).await? {
                    d if d.contains(&id) => break,
                    // Deleted by someone else while the lease lives: etcd waits on.
                    d if d.contains(&own_watch) && !self.server.lessor.exists(own_lease) => {
                        return Err(etcd(EtcdError::LeaseNotFound));
                    }
                    _ => {}
                }
            }
            stream.cancel(id);
        }
    }
}

/// Adds a watcher on one key from `rev`; its watch id.
pub(super) fn watch(stream: &mut WatchStream, key: &[u8], rev: i64) -> Result<i64, Status> {
    let created = stream.create(&WatchCreateRequest {
        key: key.to_vec(),
        start_revision: rev,
        ..Default::default()
    });
    if created.canceled {
        return Err(Status::unknown(created.cancel_reason));
    }
    Ok(created.watch_id)
}

/// The watch ids that saw a delete in the stream's next output.
async fn next_deletes(stream: &mut WatchStream) -> Result<Vec<i64>, Status> {
    match stream.next().await {
        WatchOutput::Events {
            watch_id, events, ..
        } => Ok(
            if events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                vec![watch_id]
            } else {
                Vec::new()
            },
        ),
        WatchOutput::Progress { .. } => Ok(Vec::new()),
        WatchOutput::Canceled {
            compact_revision,
            reason,
            ..
        } => Err(if compact_revision > 0 {
            etcd(EtcdError::Compacted)
        } else {
            Status::unknown(reason)
        }),
    }
}

/// Runs `cleanup` in the background if dropped while armed: a caller that goes away mid-wait
/// gets its key removed, as etcd's Campaign (Resign) and Lock (Unlock) do on a canceled context.
pub(super) struct CleanupOnDrop {
    job: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl CleanupOnDrop {
    pub fn new(job: impl std::future::Future<Output = ()> + Send + 'static) -> CleanupOnDrop {
        CleanupOnDrop {
            job: Some(Box::pin(job)),
        }
    }

    pub fn disarm(&mut self) {
        self.job = None;
    }
}

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            tokio::spawn(job);
        }
    }
}

pub struct ElectionService {
    server: Arc<EtcdServer>,
}

impl ElectionService {
    pub fn new(server: Arc<EtcdServer>) -> ElectionService {
        ElectionService { server }
    }
}

fn election_prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// Election.Proclaim on a session: replace the value if `key` is still the one created at `rev`.
async fn proclaim(
    s: &Session,
    key: &[u8],
    rev: i64,
    lease: i64,
    value: &[u8],
) -> Result<ResponseHeader, Status> {
    let resp = s
        .txn(TxnRequest {
            compare: vec![create_rev_is(key, rev)],
            success: vec![op_put(key, value, lease)],
            failure: Vec::new(),
        })
        .await?;
    if !resp.succeeded {
        return Err(Status::unknown(ERR_NOT_LEADER));
    }
    Ok(resp.header.unwrap_or_default())
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let s = Session::new(&self.server, &req);
        let r = req.into_inner();
        let lease = s.lease(r.lease).await?;
        let prefix = election_prefix(&r.name);
        let key = own_key(&prefix, lease);
        let resp = s
            .txn(TxnRequest {
                compare: vec![create_rev_is(&key, 0)],
                success: vec![op_put(&key, &r.value, lease)],
                failure: vec![op_get(&key)],
            })
            .await?;
        let header = resp.header.unwrap_or_default();
        let mut rev = header.revision;
        if !resp.succeeded {
            let kv = range_at(&resp, 0)
                .and_then(|g| g.kvs.first())
                .ok_or_else(|| etcd(EtcdError::LeaseNotFound))?;
            rev = kv.create_revision;
            if kv.value != r.value {
                if let Err(e) = proclaim(&s, &key, rev, lease, &r.value).await {
                    let _ = s.delete_if_created_at(&key, rev).await;
                    return Err(e);
                }
            }
        }
        let mut cleanup = {
            let (s, key) = (s.clone(), key.clone());
            CleanupOnDrop::new(async move {
                let _ = s.delete_if_created_at(&key, rev).await;
            })
        };
        let waited = s.wait_deletes(&prefix, rev - 1, (&key, lease)).await;
        cleanup.disarm();
        waited?;
        Ok(Response::new(CampaignResponse {
            header: Some(header),
            leader: Some(LeaderKey {
                name: r.name,
                key,
                rev,
                lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let s = Session::new(&self.server, &req);
        let r = req.into_inner();
        let leader = r
            .leader
            .ok_or_else(|| Status::unknown(ERR_MISSING_LEADER_KEY))?;
        let lease = s.lease(leader.lease).await?;
        let header = proclaim(&s, &leader.key, leader.rev, lease, &r.value).await?;
        Ok(Response::new(ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let s = Session::new(&self.server, &req);
        let prefix = election_prefix(&req.into_inner().name);
        let resp = s.get(&first_create(&prefix)).await?;
        let kv = resp
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| Status::unknown(ERR_NO_LEADER))?;
        Ok(Response::new(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let s = Session::new(&self.server, &req);
        let prefix = election_prefix(&req.into_inner().name);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            tokio::select! {
                _ = observe(&s, &prefix, &tx) => {}
                _ = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let s = Session::new(&self.server, &req);
        let leader = req
            .into_inner()
            .leader
            .ok_or_else(|| Status::unknown(ERR_MISSING_LEADER_KEY))?;
        let resp = s.delete_if_created_at(&leader.key, leader.rev).await?;
        Ok(Response::new(ResignResponse {
            header: resp.header,
        }))
    }
}

/// concurrency's Election.observe: the leader's key-value now and on every change, until the
/// stream fails or the client leaves. The stream simply ends on a failure, as etcd's does.
async fn observe(s: &Session, prefix: &[u8], tx: &mpsc::Sender<Result<LeaderResponse, Status>>) {
    let mut stream = s.server.watch_hub.open_stream();
    loop {
        let Ok(resp) = s.get(&first_create(prefix)).await else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        let (mut rev, kv): (i64, KeyValue) = match resp.kvs.into_iter().next() {
            Some(kv) => (header.revision, kv),
            None => {
                // Wait for the first put under the prefix.
                let Ok(id) = watch_prefix(&mut stream, prefix, header.revision) else {
                    return;
                };
                let kv = loop {
                    match stream.next().await {
                        WatchOutput::Events { events, .. } => {
                            if let Some(kv) = events
                                .into_iter()
                                .find(|e| e.r#type == EventType::Put as i32)
                                .and_then(|e| e.kv)
                            {
                                break kv;
                            }
                        }
                        WatchOutput::Progress { .. } => {}
                        WatchOutput::Canceled { .. } => return,
                    }
                };
                stream.cancel(id);
                (kv.mod_revision, kv)
            }
        };
        let first = LeaderResponse {
            header: Some(s.server.header_at(rev)),
            kv: Some(kv.clone()),
        };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let Ok(id) = watch(&mut stream, &kv.key, rev + 1) else {
            return;
        };
        'key: loop {
            match stream.next().await {
                WatchOutput::Events {
                    revision, events, ..
                } => {
                    for ev in events {
                        if ev.r#type == EventType::Delete as i32 {
                            break 'key;
                        }
                        rev = revision;
                        let resp = LeaderResponse {
                            header: Some(s.server.header_at(rev)),
                            kv: ev.kv,
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
                WatchOutput::Progress { .. } => {}
                WatchOutput::Canceled { .. } => return,
            }
        }
        stream.cancel(id);
    }
}

fn watch_prefix(stream: &mut WatchStream, prefix: &[u8], rev: i64) -> Result<i64, Status> {
    let created = stream.create(&WatchCreateRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        start_revision: rev,
        ..Default::default()
    });
    if created.canceled {
        return Err(Status::unknown(created.cancel_reason));
    }
    Ok(created.watch_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_like_concurrency() {
        assert_eq!(own_key(b"e/", 0x694d7f1a2b3c4d5e), b"e/694d7f1a2b3c4d5e");
        assert_eq!(own_key(b"e/", 10), b"e/a");
        assert_eq!(prefix_end(b"e/"), b"e0");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
