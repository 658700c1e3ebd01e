//! Txn: etcd's `applierV3backend.Txn`.
//!
//! Every compare of the txn and of the nested txns on the taken path is evaluated first, against
//! the state before the txn (etcd's `compareToPath`). The taken branch is then checked completely
//! (puts: ignore_value/ignore_lease need the key, the lease must exist; ranges: revision not future,
//! not compacted) before anything is written, so a txn either applies whole or changes nothing.
//! All writes share one main revision; a txn that writes nothing does not bump the revision.
//!
//! Response headers as etcd fills them: the top-level header carries the revision after the txn;
//! each nested Range/Put/DeleteRange response carries its own revision; a nested TxnResponse's
//! header is present but empty (the gRPC layer fills cluster/member/term on the top one only).

use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::{RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse};

use super::batch::{header, BatchState, KeyTableMut, OpCtx};
use super::compare;
use super::key_index::KeyIndexTree;
use super::range::{self, KeyTable};
use super::store::MvccStore;
use crate::error::{EtcdError, Result};

/// etcd's `isTxnReadonly`: every op of both branches is a Range (a nested txn counts as a write).
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

/// Compare outcomes of this txn and of every nested txn on the taken path, in pre-order.
fn compare_path<T: KeyTable + ?Sized>(
    idx: &KeyIndexTree,
    table: &T,
    req: &TxnRequest,
    at: i64,
    path: &mut Vec<bool>,
) -> Result<()> {
    let mut ok = true;
    for c in &req.compare {
        if !compare::holds(idx, table, c, at)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in if ok { &req.success } else { &req.failure } {
        if let Some(Request::RequestTxn(t)) = &op.request {
            compare_path(idx, table, t, at, path)?;
        }
    }
    Ok(())
}

/// Calls `f` on every non-txn op of the taken path.
fn for_each_op<'r>(
    req: &'r TxnRequest,
    path: &[bool],
    pos: &mut usize,
    f: &mut dyn FnMut(&'r RequestOp) -> Result<()>,
) -> Result<()> {
    let ok = path[*pos];
    *pos += 1;
    for op in if ok { &req.success } else { &req.failure } {
        match &op.request {
            Some(Request::RequestTxn(t)) => for_each_op(t, path, pos, f)?,
            _ => f(op)?,
        }
    }
    Ok(())
}

/// etcd's `checkRange`: note a negative revision is "compacted" here though a plain Range reads
/// it as the current revision; etcd behaves the same.
fn check_ranges(req: &TxnRequest, path: &[bool], at: i64, compact: i64) -> Result<()> {
    for_each_op(req, path, &mut 0, &mut |op| match &op.request {
        Some(Request::RequestRange(r)) if r.revision != 0 => {
            if r.revision > at {
                Err(EtcdError::FutureRev)
            } else if r.revision < compact {
                Err(EtcdError::Compacted)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    })
}

/// The write path, run by `WriteBatch::txn`.
pub(super) fn apply(
    st: &mut BatchState,
    store: &MvccStore,
    table: &mut KeyTableMut<'_>,
    ctx: &mut OpCtx,
    req: &TxnRequest,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<TxnResponse> {
    let at = ctx.read_rev();
    let compact = store.compact_raw();
    let path = {
        let idx = store.index.read();
        let mut path = Vec::new();
        compare_path(&idx, &*table, req, at, &mut path)?;
        // etcd's checkPut pass, then its checkRange pass.
        for_each_op(req, &path, &mut 0, &mut |op| {
            if let Some(Request::RequestPut(p)) = &op.request {
                if (p.ignore_value || p.ignore_lease) && idx.get(&p.key, at).is_none() {
                    return Err(EtcdError::KeyNotFound);
                }
                if p.lease != 0 && !lease_exists(p.lease) {
                    return Err(EtcdError::LeaseNotFound);
                }
            }
            Ok(())
        })?;
        check_ranges(req, &path, at, compact)?;
        path
    };
    let (succeeded, responses) = exec(st, store, table, ctx, req, &path, &mut 0)?;
    Ok(TxnResponse {
        header: header(ctx.read_rev()),
        succeeded,
        responses,
    })
}

fn exec(
    st: &mut BatchState,
    store: &MvccStore,
    table: &mut KeyTableMut<'_>,
    ctx: &mut OpCtx,
    req: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
) -> Result<(bool, Vec<ResponseOp>)> {
    let ok = path[*pos];
    *pos += 1;
    let ops = if ok { &req.success } else { &req.failure };
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                let idx = store.index.read();
                let at = ctx.read_rev();
                let resp = range::range(&idx, &*table, r, at, store.compact_raw())?;
                Some(Response::ResponseRange(resp))
            }
            Some(Request::RequestPut(p)) => {
                Some(Response::ResponsePut(st.apply_put(store, table, ctx, p)?))
            }
            Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(
                st.apply_delete(store, table, ctx, d)?,
            )),
            Some(Request::RequestTxn(t)) => {
                let (succeeded, responses) = exec(st, store, table, ctx, t, path, pos)?;
                Some(Response::ResponseTxn(TxnResponse {
                    header: Some(ResponseHeader::default()),
                    succeeded,
                    responses,
                }))
            }
            None => None,
        };
        out.push(ResponseOp { response });
    }
    Ok((ok, out))
}

/// A read-only txn (`is_read_only`) on a snapshot at `cur`.
pub(super) fn read_only<T: KeyTable + ?Sized>(
    idx: &KeyIndexTree,
    table: &T,
    req: &TxnRequest,
    cur: i64,
    compact: i64,
) -> Result<TxnResponse> {
    if !is_read_only(req) {
        return Err(EtcdError::Internal(
            "mvcc: read_txn given a txn that writes".into(),
        ));
    }
    let mut path = Vec::new();
    compare_path(idx, table, req, cur, &mut path)?;
    check_ranges(req, &path, cur, compact)?;
    let mut responses = Vec::new();
    for op in if path[0] { &req.success } else { &req.failure } {
        if let Some(Request::RequestRange(r)) = &op.request {
            responses.push(ResponseOp {
                response: Some(Response::ResponseRange(range::range(
                    idx, table, r, cur, compact,
                )?)),
            });
        }
    }
    Ok(TxnResponse {
        header: header(cur),
        succeeded: path[0],
        responses,
    })
}
