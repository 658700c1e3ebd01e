//! `put [options] <key> <value>`

use std::io::Read;

use oxcd_api::etcdserverpb::PutRequest;

use crate::cli::{GlobalArgs, PutArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};

const NEEDS_ARGS: &str = "put command needs 1 argument and input from stdin or 2 arguments";

/// Builds the request like etcdctl's getPutOp; `stdin` supplies the value
/// when only the key is given.
pub fn put_op(a: &PutArgs, stdin: &mut dyn Read) -> Result<PutRequest> {
    if a.args.is_empty() {
        return Err(CtlError::new(EXIT_BAD_ARGS, NEEDS_ARGS));
    }
    let key = a.args[0].clone();
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        if a.args.len() > 1 {
            value = a.args[1].clone().into_bytes();
        } else {
            let ok = stdin.read_to_end(&mut value).is_ok();
            if !ok || value.is_empty() {
                return Err(CtlError::new(EXIT_BAD_ARGS, NEEDS_ARGS));
            }
        }
    }
    let lease = crate::gostr::parse_int(&a.lease, 16).map_err(|e| {
        CtlError::new(
            EXIT_BAD_ARGS,
            format!("bad lease ID ({e}), expecting ID in Hex"),
        )
    })?;
    Ok(PutRequest {
        key: key.into_bytes(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

pub async fn run(g: &GlobalArgs, a: &PutArgs) -> Result<()> {
    let req = put_op(a, &mut std::io::stdin().lock())?;
    let (c, d) = super::client(g).await?;
    let resp = c.put(req).await?;
    d.put(&resp)
}
