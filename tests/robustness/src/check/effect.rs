//! What a write does to a given state: the events it produces, its txn branch and results.
//! The checker compares these with what the server reported.

use std::collections::BTreeMap;

use crate::history::{
    Compare, CompareResult, CompareTarget, Event, EventKind, KeyValue, Request, TxnOp, TxnResult,
};

use super::keys::KeyRange;
use super::log::LogRevision;
use super::state::{Overlay, VersionedState};

/// The effect of one operation applied on the state at `at`, as a write at revision `at + 1`.
pub(crate) struct Effect {
    pub(crate) events: Vec<Event>,
    /// For a txn: the branch its compares choose on that state.
    pub(crate) compares_hold: Option<bool>,
    /// For a txn: the results of the branch that was run.
    pub(crate) results: Vec<TxnResult>,
}

/// Evaluates a txn compare like etcd: a value compare on a missing key fails, the other targets
/// compare against zeros.
fn compare_holds(ov: &Overlay, c: &Compare) -> bool {
    let kv = ov.get(&c.key);
    let ord = match (&c.target, kv.as_ref()) {
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::ModRevision(n), kv) => kv.map_or(0, |k| k.mod_revision).cmp(n),
        (CompareTarget::CreateRevision(n), kv) => kv.map_or(0, |k| k.create_revision).cmp(n),
        (CompareTarget::Version(n), kv) => kv.map_or(0, |k| k.version).cmp(n),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => !ord.is_eq(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

fn run_branch(ov: &mut Overlay, ops: &[TxnOp], rev: i64) -> (Vec<Event>, Vec<TxnResult>) {
    let mut events = Vec::new();
    let mut results = Vec::new();
    for op in ops {
        match op {
            TxnOp::Range { key, range_end } => {
                let kvs = ov.range(&KeyRange::new(key, range_end));
                let count = kvs.len() as i64;
                results.push(TxnResult::Range { kvs, count });
            }
            TxnOp::Put { key, value, lease } => {
                events.push(ov.put(key, value, *lease, rev));
                results.push(TxnResult::Put);
            }
            TxnOp::Delete { key, range_end } => {
                let deleted = ov.delete(&KeyRange::new(key, range_end), rev);
                results.push(TxnResult::Delete {
                    deleted: deleted.len() as i64,
                });
                events.extend(deleted);
            }
        }
    }
    (events, results)
}

/// The effect of a write request on the state at `at`. For a txn, `branch` forces the branch
/// (the one the server said it ran); None takes the one the compares choose. None for requests
/// that write nothing.
pub(crate) fn effect(
    req: &Request,
    branch: Option<bool>,
    state: &VersionedState,
    at: i64,
) -> Option<Effect> {
    let rev = at + 1;
    let mut ov = Overlay::new(state, at);
    let (events, compares_hold, results) = match req {
        Request::Put { key, value, lease } => (vec![ov.put(key, value, *lease, rev)], None, vec![]),
        Request::Delete { key, range_end } => {
            (ov.delete(&KeyRange::new(key, range_end), rev), None, vec![])
        }
        Request::Txn {
            compares,
            success,
            failure,
        } => {
            let holds = compares.iter().all(|c| compare_holds(&ov, c));
            let ops = if branch.unwrap_or(holds) {
                success
            } else {
                failure
            };
            let (events, results) = run_branch(&mut ov, ops, rev);
            (events, Some(holds), results)
        }
        Request::LeaseRevoke { id } => (lease_deletes(&ov, *id, rev), None, vec![]),
        _ => return None,
    };
    Some(Effect {
        events,
        compares_hold,
        results,
    })
}

/// The deletes revoking or expiring `lease` produces: every key attached to it.
pub(crate) fn lease_deletes(ov: &Overlay, lease: i64, rev: i64) -> Vec<Event> {
    ov.state()
        .lease_keys_at(lease, ov.at())
        .into_iter()
        .map(|kv| Event {
            kind: EventKind::Delete,
            kv: super::state::deleted_kv(&kv.key, rev),
            prev_kv: Some(kv.clone()),
        })
        .collect()
}

/// Whether `expected` events are what the log holds at a revision: per key the same sequence
/// (kind and kv; a delete's kv only by key and revision), for the keys the log covers. prev_kv
/// is left to the watch checks. `ignore_lease` compares puts without their lease, to tell a
/// wrong lease from a different write.
pub(crate) fn matches_log(expected: &[Event], actual: &LogRevision, ignore_lease: bool) -> bool {
    let mut by_key: BTreeMap<&[u8], Vec<&Event>> = BTreeMap::new();
    for e in expected {
        if actual.covers(&e.kv.key) {
            by_key.entry(&e.kv.key).or_default().push(e);
        }
    }
    by_key.len() == actual.keys.len()
        && by_key.iter().all(|(key, exp)| {
            actual.keys.get(key).is_some_and(|(_, got)| {
                got.len() == exp.len()
                    && exp
                        .iter()
                        .zip(got)
                        .all(|(e, g)| event_matches(e, g, ignore_lease))
            })
        })
}

fn event_matches(e: &Event, g: &Event, ignore_lease: bool) -> bool {
    if e.kind != g.kind {
        return false;
    }
    match e.kind {
        EventKind::Delete => e.kv.key == g.kv.key && e.kv.mod_revision == g.kv.mod_revision,
        EventKind::Put if ignore_lease => {
            let strip = |kv: &KeyValue| KeyValue {
                lease: 0,
                ..kv.clone()
            };
            strip(&e.kv) == strip(&g.kv)
        }
        EventKind::Put => e.kv == g.kv,
    }
}

/// Whether the request could write anything at all (the ones the attribution considers).
pub(crate) fn is_write(req: &Request) -> bool {
    matches!(
        req,
        Request::Put { .. }
            | Request::Delete { .. }
            | Request::Txn { .. }
            | Request::LeaseRevoke { .. }
    )
}
