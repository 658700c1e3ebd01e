//! The KV service: request validation with etcd's errors, linearizable reads through ReadIndex,
//! writes through raft.

use std::collections::HashSet;
use std::sync::Arc;

use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
};
use tonic::{Request as GrpcRequest, Response, Status};

use super::check_size;
use crate::auth::Caller;
use crate::error::EtcdError;
use crate::failpoints::{self, BUG_ACK_PUT_WITHOUT_APPLY, BUG_READ_WITHOUT_READ_INDEX};
use crate::server::{ApplyResponse, EtcdServer};

pub struct KvService {
    server: Arc<EtcdServer>,
    max_recv: usize,
}

impl KvService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        KvService {
            max_recv: super::max_recv_bytes(&server),
            server,
        }
    }
}

fn unexpected(r: ApplyResponse) -> Status {
    Status::internal(format!("unexpected apply result {r:?}"))
}

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// etcd's checks on a txn: op counts, every op valid, and no key written twice in one branch
/// (including inside nested txns and overlapping delete ranges).
pub fn check_txn(r: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    if r.compare.len() > max_ops || r.success.len() > max_ops || r.failure.len() > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &r.compare {
        if c.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
    }
    for ops in [&r.success, &r.failure] {
        for op in ops.iter() {
            check_op(op, max_ops)?;
        }
        check_branch_intervals(ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(t)) => check_txn(t, max_ops),
        None => Ok(()),
    }
}

/// Written keys and deleted ranges of one branch (nested txns: each of their branches may write
/// what the other writes, but neither may overlap the outer branch).
#[derive(Default)]
struct Writes {
    puts: HashSet<Vec<u8>>,
    dels: Vec<(Vec<u8>, Vec<u8>)>,
}

fn in_range(key: &[u8], (start, end): &(Vec<u8>, Vec<u8>)) -> bool {
    if end.is_empty() {
        key == start.as_slice()
    } else if end.as_slice() == b"\0" {
        key >= start.as_slice()
    } else {
        key >= start.as_slice() && key < end.as_slice()
    }
}

fn collect_writes(ops: &[RequestOp]) -> Result<Writes, EtcdError> {
    let mut w = Writes::default();
    for op in ops {
        match &op.request {
            // Recording the key is the check: a second insert means it is written twice.
            Some(Request::RequestPut(p)) if !w.puts.insert(p.key.clone()) => {
                return Err(EtcdError::DuplicateKey);
            }
            Some(Request::RequestDeleteRange(d)) => {
                w.dels.push((d.key.clone(), d.range_end.clone()))
            }
            Some(Request::RequestTxn(t)) => {
                let a = collect_writes(&t.success)?;
                let b = collect_writes(&t.failure)?;
                // Only one nested branch runs: either may write what the other writes, but
                // neither may touch what the outer branch writes.
                let nested: HashSet<Vec<u8>> = a.puts.union(&b.puts).cloned().collect();
                for k in nested {
                    if !w.puts.insert(k) {
                        return Err(EtcdError::DuplicateKey);
                    }
                }
                w.dels.extend(a.dels);
                w.dels.extend(b.dels);
            }
            _ => {}
        }
    }
    for k in &w.puts {
        if w.dels.iter().any(|d| in_range(k, d)) {
            return Err(EtcdError::DuplicateKey);
        }
    }
    Ok(w)
}

fn check_branch_intervals(ops: &[RequestOp]) -> Result<(), EtcdError> {
    collect_writes(ops).map(|_| ())
}

/// A read-only txn may skip the read barrier only if every range in it asks to.
fn txn_is_serializable(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(r.failure.iter())
        .all(|op| match &op.request {
            Some(Request::RequestRange(rr)) => rr.serializable,
            Some(Request::RequestTxn(t)) => txn_is_serializable(t),
            _ => true,
        })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        req: GrpcRequest<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        check_size(&r, self.max_recv)?;
        if !r.serializable && self.server.membership.local_is_learner() {
            return Err(crate::error::EtcdError::NotSupportedForLearner.into());
        }
        check_range(&r)?;
        if !r.serializable && !failpoints::fires(BUG_READ_WITHOUT_READ_INDEX) {
            self.server.read_index().await?;
        }
        let who = self.server.auth_info(&caller).await?;
        self.server
            .auth
            .check_range(who.as_ref(), &r.key, &r.range_end)?;
        let mut resp = self.server.store.range(&r)?;
        // The revision is the one the read saw, which a later header could overstate.
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        resp.header = Some(self.server.header_at(revision));
        Ok(Response::new(resp))
    }

    async fn put(&self, req: GrpcRequest<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        check_size(&r, self.max_recv)?;
        self.server.check_quota(crate::quota::put_cost(&r)).await?;
        check_put(&r)?;
        if failpoints::fires(BUG_ACK_PUT_WITHOUT_APPLY) {
            // Deliberately wrong: the write is acknowledged, never proposed.
            let revision = self.server.store.current_revision() + 1;
            return Ok(Response::new(PutResponse {
                header: Some(self.server.header_at(revision)),
                prev_kv: None,
            }));
        }
        let ir = InternalRaftRequest {
            put: Some(r),
            ..Default::default()
        };
        match self.server.propose_as(&caller, ir).await? {
            ApplyResponse::Put(p) => Ok(Response::new(p)),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        check_size(&r, self.max_recv)?;
        check_delete(&r)?;
        let ir = InternalRaftRequest {
            delete_range: Some(r),
            ..Default::default()
        };
        match self.server.propose_as(&caller, ir).await? {
            ApplyResponse::DeleteRange(p) => Ok(Response::new(p)),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: GrpcRequest<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        check_size(&r, self.max_recv)?;
        self.server.check_quota(crate::quota::txn_cost(&r)).await?;
        check_txn(&r, self.server.cfg.max_txn_ops as usize)?;
        if crate::mvcc::is_txn_read_only(&r) {
            // Compares and reads from one snapshot need no raft entry, only the read barrier.
            if !txn_is_serializable(&r) && !failpoints::fires(BUG_READ_WITHOUT_READ_INDEX) {
                self.server.read_index().await?;
            }
            let who = self.server.auth_info(&caller).await?;
            self.server.auth.check_txn_reads(who.as_ref(), &r)?;
            let mut resp = self.server.store.read_txn(&r)?;
            let revision = resp.header.as_ref().map_or(0, |h| h.revision);
            resp.header = Some(self.server.header_at(revision));
            return Ok(Response::new(resp));
        }
        let ir = InternalRaftRequest {
            txn: Some(r),
            ..Default::default()
        };
        match self.server.propose_as(&caller, ir).await? {
            ApplyResponse::Txn(p) => Ok(Response::new(p)),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        req: GrpcRequest<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        let (rev, physical) = (r.revision, r.physical);
        let ir = InternalRaftRequest {
            compaction: Some(r),
            ..Default::default()
        };
        match self.server.propose_as(&caller, ir).await? {
            ApplyResponse::Compaction(p) => {
                // `physical`: answer once the compacted rows are gone from this member's backend.
                if physical {
                    self.server.store.wait_compacted(rev).await;
                }
                Ok(Response::new(p))
            }
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::etcdserverpb::RequestOp;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec(),
                range_end: end.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn duplicate_puts_and_overlapping_deletes_are_rejected() {
        let t = TxnRequest {
            success: vec![put("a"), put("a")],
            ..Default::default()
        };
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        let t = TxnRequest {
            success: vec![put("b"), del("a", "c")],
            ..Default::default()
        };
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        let t = TxnRequest {
            success: vec![put("a")],
            failure: vec![put("a")],
            ..Default::default()
        };
        assert_eq!(check_txn(&t, 128), Ok(()));
    }

    #[test]
    fn too_many_ops() {
        let t = TxnRequest {
            success: (0..3).map(|i| put(&format!("k{i}"))).collect(),
            ..Default::default()
        };
        assert_eq!(check_txn(&t, 2), Err(EtcdError::TooManyOps));
        assert_eq!(check_txn(&t, 3), Ok(()));
    }
}
