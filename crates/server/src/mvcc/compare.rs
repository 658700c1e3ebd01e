//! Txn compares, with etcd's `applyCompare`/`compareKV` semantics.
//!
//! A compare over a range holds only if it holds for every live key in it. On a range with no live
//! key, a VALUE compare fails (a missing value cannot be told from an empty one) while the other
//! targets compare against zero, so `create_revision == 0` is the idiomatic "key absent" guard.

use std::cmp::Ordering;

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::Compare;

use super::key_index::{Hit, KeyIndexTree, KeyRange};
use super::range::{with_row, KeyTable};
use crate::error::Result;

/// Evaluates one compare at revision `at` (the txn's starting revision).
pub fn holds<T: KeyTable + ?Sized>(
    index: &KeyIndexTree,
    table: &T,
    c: &Compare,
    at: i64,
) -> Result<bool> {
    let target = CompareTarget::try_from(c.target).ok();
    let mut any = false;
    let mut ok = true;
    let mut err = None;
    index.visit(KeyRange::new(&c.key, &c.range_end), |_, ki| {
        let Some(h) = ki.get(at) else { return true };
        any = true;
        match compare_hit(table, c, target, &h) {
            Ok(true) => true,
            Ok(false) => {
                ok = false;
                false
            }
            Err(e) => {
                err = Some(e);
                false
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if !any {
        if target == Some(CompareTarget::Value) {
            return Ok(false);
        }
        return Ok(check(c, compare_fields(c, target, 0, &[])));
    }
    Ok(ok)
}

fn compare_hit<T: KeyTable + ?Sized>(
    table: &T,
    c: &Compare,
    target: Option<CompareTarget>,
    h: &Hit,
) -> Result<bool> {
    let ord = match target {
        // Only these two need the row; the rest is in the index.
        Some(CompareTarget::Value) | Some(CompareTarget::Lease) => with_row(table, h.rev, |kv| {
            compare_fields(c, target, kv.lease, kv.value)
        })?,
        Some(CompareTarget::Version) => h.ver.cmp(&int_operand(c)),
        Some(CompareTarget::Create) => h.created.cmp(&int_operand(c)),
        Some(CompareTarget::Mod) => h.rev.main.cmp(&int_operand(c)),
        None => Ordering::Equal,
    };
    Ok(check(c, ord))
}

/// The compare's integer operand, 0 when the union holds another kind (etcd reads it that way).
fn int_operand(c: &Compare) -> i64 {
    let target = CompareTarget::try_from(c.target).ok();
    match (target, &c.target_union) {
        (Some(CompareTarget::Version), Some(TargetUnion::Version(v)))
        | (Some(CompareTarget::Create), Some(TargetUnion::CreateRevision(v)))
        | (Some(CompareTarget::Mod), Some(TargetUnion::ModRevision(v)))
        | (Some(CompareTarget::Lease), Some(TargetUnion::Lease(v))) => *v,
        _ => 0,
    }
}

/// Compares a key's lease/value (the fields not in the index) or zero values for an absent key.
fn compare_fields(
    c: &Compare,
    target: Option<CompareTarget>,
    lease: i64,
    value: &[u8],
) -> Ordering {
    match target {
        Some(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            value.cmp(want)
        }
        Some(CompareTarget::Lease) => lease.cmp(&int_operand(c)),
        // Absent key: version, create and mod revisions are all 0.
        Some(_) => 0i64.cmp(&int_operand(c)),
        None => Ordering::Equal,
    }
}

fn check(c: &Compare, ord: Ordering) -> bool {
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        // etcd's switch falls through to true for an unknown result.
        Err(_) => true,
    }
}
