//! `del [options] <key> [range_end]`

use oxcd_api::etcdserverpb::DeleteRangeRequest;

use crate::cli::{DelArgs, GlobalArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};

/// Builds the request like etcdctl's getDelOp.
pub fn del_op(a: &DelArgs) -> Result<DeleteRangeRequest> {
    let bad = |m: &str| CtlError::new(EXIT_BAD_ARGS, m);
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(bad(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(bad(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut req = DeleteRangeRequest {
        key: a.args[0].clone().into_bytes(),
        ..Default::default()
    };
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(bad(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = a.args[1].clone().into_bytes();
    }
    if a.prefix {
        if req.key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = super::prefix_end(&req.key);
        }
    }
    req.prev_kv = a.prev_kv;
    if a.from_key {
        if req.key.is_empty() {
            req.key = vec![0];
        }
        req.range_end = vec![0];
    }
    Ok(req)
}

pub async fn run(g: &GlobalArgs, a: &DelArgs) -> Result<()> {
    let req = del_op(a)?;
    let (c, d) = super::client(g).await?;
    let resp = c.delete_range(req).await?;
    d.del(&resp)
}
