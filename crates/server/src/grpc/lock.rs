//! The v3lock Lock service: etcd's concurrency.Mutex run for the caller (see `election` for the
//! shared waiting). The lock key is `<name>/<lease id in hex>`, held while the lease lives or
//! until Unlock deletes it.

use std::sync::Arc;

use oxcd_api::etcdserverpb::TxnRequest;
use oxcd_api::v3lockpb::lock_server::Lock;
use oxcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::election::{
    create_rev_is, first_create, op_get, op_put, own_key, range_at, CleanupOnDrop, Session,
};
use crate::server::EtcdServer;

pub struct LockService {
    server: Arc<EtcdServer>,
}

impl LockService {
    pub fn new(server: Arc<EtcdServer>) -> LockService {
        LockService { server }
    }
}

fn first_create_op(prefix: &[u8]) -> oxcd_api::etcdserverpb::RequestOp {
    oxcd_api::etcdserverpb::RequestOp {
        request: Some(oxcd_api::etcdserverpb::request_op::Request::RequestRange(
            first_create(prefix),
        )),
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let s = Session::new(&self.server, &req);
        let r = req.into_inner();
        let lease = s.lease(r.lease).await?;
        let mut prefix = r.name.clone();
        prefix.push(b'/');
        let key = own_key(&prefix, lease);
        // Join the waiters (or find the key this lease already has) and learn the holder, in
        // one round.
        let resp = s
            .txn(TxnRequest {
                compare: vec![create_rev_is(&key, 0)],
                success: vec![op_put(&key, b"", lease), first_create_op(&prefix)],
                failure: vec![op_get(&key), first_create_op(&prefix)],
            })
            .await?;
        let mut header = resp.header.unwrap_or_default();
        let mut rev = header.revision;
        if !resp.succeeded {
            if let Some(kv) = range_at(&resp, 0).and_then(|g| g.kvs.first()) {
                rev = kv.create_revision;
            }
        }
        let owner = range_at(&resp, 1).and_then(|g| g.kvs.first());
        if owner.is_some_and(|o| o.create_revision != rev) {
            let mut cleanup = {
                let (s, key) = (s.clone(), key.clone());
                CleanupOnDrop::new(async move {
                    let _ = s.delete(&key).await;
                })
            };
            let waited = s.wait_deletes(&prefix, rev - 1, (&key, lease)).await;
            cleanup.disarm();
            match waited {
                Ok(h) => header = h,
                Err(e) => {
                    // Leave the queue, as etcd's Mutex does when its wait fails.
                    let _ = s.delete(&key).await;
                    return Err(e);
                }
            }
        }
        Ok(Response::new(LockResponse {
            header: Some(header),
            key,
        }))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let s = Session::new(&self.server, &req);
        let header = s.delete(&req.into_inner().key).await?;
        Ok(Response::new(UnlockResponse {
            header: Some(header),
        }))
    }
}
