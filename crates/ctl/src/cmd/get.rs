//! `get [options] <key> [range_end]`

use oxcd_api::etcdserverpb::RangeRequest;

use crate::cli::{GetArgs, GlobalArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_BAD_FEATURE};
use crate::print::Format;

/// RangeRequest sort orders and targets (proto enum values).
const SORT_NONE: i32 = 0;
const SORT_ASCEND: i32 = 1;
const SORT_DESCEND: i32 = 2;
const TARGET_KEY: i32 = 0;

/// Builds the request like etcdctl's getGetOp (same checks, same order).
pub fn get_op(a: &GetArgs) -> Result<RangeRequest> {
    let bad = |m: &str| CtlError::new(EXIT_BAD_ARGS, m);
    if a.args.is_empty() {
        return Err(bad(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(bad(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if a.keys_only && a.count_only {
        return Err(bad(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ));
    }
    let mut req = RangeRequest::default();
    match a.consistency.as_str() {
        "s" => req.serializable = true,
        "l" => {}
        other => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!(
                    "unknown consistency flag {}",
                    crate::gostr::quote(other.as_bytes())
                ),
            ))
        }
    }
    req.key = a.args[0].clone().into_bytes();
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(bad(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = a.args[1].clone().into_bytes();
    }
    req.limit = a.limit;
    if a.rev > 0 {
        req.revision = a.rev;
    }
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SORT_ASCEND,
        "DESCEND" => SORT_DESCEND,
        "" => SORT_NONE,
        _ => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!("bad sort order {}", a.order),
            ))
        }
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => 2,
        "KEY" => TARGET_KEY,
        "MODIFY" => 3,
        "VALUE" => 4,
        "VERSION" => 1,
        "" => TARGET_KEY,
        _ => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!("bad sort target {}", a.sort_by),
            ))
        }
    };
    // clientv3.WithSort: ascending by key is the server's natural order.
    req.sort_order = if target == TARGET_KEY && order == SORT_ASCEND {
        SORT_NONE
    } else {
        order
    };
    req.sort_target = target;
    if a.prefix {
        if req.key.is_empty() {
            req.key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = super::prefix_end(&req.key);
        }
    }
    if a.from_key {
        if req.key.is_empty() {
            req.key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.keys_only = a.keys_only;
    req.count_only = a.count_only;
    Ok(req)
}

pub async fn run(g: &GlobalArgs, a: &GetArgs) -> Result<()> {
    let req = get_op(a)?;
    let (c, mut d) = super::client(g).await?;
    let resp = c.range(req).await?;
    if a.count_only && d.format != Format::Fields {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "--count-only is only for `--write-out=fields`",
        ));
    }
    if a.print_value_only {
        if d.format != Format::Simple {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "print-value-only is only for `--write-out=simple`",
            ));
        }
        d.value_only = true;
    }
    d.get(&resp)
}
