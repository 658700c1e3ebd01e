//! Attributes every revision of the log to the one write that created it (step 3), and checks
//! acknowledged writes against the state they were applied to.
//!
//! An acknowledged write names its revision in its response header; a write whose outcome is
//! unknown is found by its unique put value, or for pure deletes by trying the few unknown
//! deletes that touch the deleted key. Deletes of every key of a lease that no op explains are
//! a lease expiry.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{EventKind, History, Outcome, Request, Response, TxnOp, TxnResult};

use super::anomalies::Anomalies;
use super::candidates::{candidates, may_delete, Candidates};
use super::effect::{effect, is_write, matches_log, Effect};
use super::keys::show;
use super::log::{show_events, EventLog, LogRevision};
use super::state::VersionedState;

/// Where the checked operations sit in the linearization the revisions propose.
#[derive(Default)]
pub(crate) struct Attribution {
    /// Op index -> position: `2r` for the write that created revision r, `2r + 1` for an
    /// operation that observed the state at r (only linearizable operations).
    pub(crate) pos: HashMap<usize, i64>,
    /// Acknowledged writes that changed something.
    pub(crate) acknowledged: usize,
    /// Writes without a successful answer whose effect is in the log.
    pub(crate) unknown_applied: usize,
}

/// Whether a txn that ran `branch` with `results` changed anything.
fn txn_changed(branch: &[TxnOp], results: &[TxnResult]) -> bool {
    branch.iter().enumerate().any(|(j, op)| match op {
        TxnOp::Put { .. } => true,
        TxnOp::Delete { .. } => {
            matches!(results.get(j), Some(TxnResult::Delete { deleted }) if *deleted > 0)
        }
        TxnOp::Range { .. } => false,
    })
}

/// The txn branch the response says ran.
fn answered_branch(outcome: &Outcome) -> Option<bool> {
    match outcome {
        Outcome::Ok(Response::Txn { succeeded, .. }) => Some(*succeeded),
        _ => None,
    }
}

struct Attributor<'a> {
    h: &'a History,
    state: &'a VersionedState,
    out: &'a mut Anomalies,
    result: Attribution,
}

pub(crate) fn attribute(
    h: &History,
    log: &EventLog,
    state: &VersionedState,
    out: &mut Anomalies,
) -> Attribution {
    // Acknowledged writes by the revision their answer names.
    let mut claims: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    let mut revokes: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    let mut read_like: Vec<(usize, i64)> = Vec::new();
    for (i, op) in h.ops.iter().enumerate() {
        let Outcome::Ok(resp) = &op.outcome else {
            continue;
        };
        match (&op.req, resp) {
            (Request::Put { .. }, Response::Put { revision }) => {
                claims.entry(*revision).or_default().push(i)
            }
            (Request::Delete { .. }, Response::Delete { revision, deleted }) => {
                if *deleted > 0 {
                    claims.entry(*revision).or_default().push(i)
                } else {
                    read_like.push((i, *revision))
                }
            }
            (
                Request::Txn {
                    success, failure, ..
                },
                Response::Txn {
                    revision,
                    succeeded,
                    results,
                },
            ) => {
                let branch = if *succeeded { success } else { failure };
                if txn_changed(branch, results) {
                    claims.entry(*revision).or_default().push(i)
                } else {
                    read_like.push((i, *revision))
                }
            }
            (Request::LeaseRevoke { .. }, Response::LeaseRevoke { revision }) => {
                revokes.entry(*revision).or_default().push(i)
            }
            _ => {}
        }
    }
    let granted: HashSet<i64> = h
        .ops
        .iter()
        .filter_map(|op| match op.req {
            Request::LeaseGrant { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    let cands = candidates(h);
    let mut a = Attributor {
        h,
        state,
        out,
        result: Attribution::default(),
    };
    let mut applied_unknown: HashSet<usize> = HashSet::new();
    let none = Vec::new();
    for (&rev, entry) in &log.revs {
        let mut explained = false;
        for &i in claims.get(&rev).unwrap_or(&none) {
            explained |= a.check_claim(i, rev, Some(entry), explained);
        }
        for &i in revokes.get(&rev).unwrap_or(&none) {
            if !explained && a.revoke_applied(i, rev, entry) {
                explained = true;
            }
            a.revoke_read_like(i, rev);
        }
        if explained {
            continue;
        }
        // An expiry is tried before unknown deletes: it constrains nothing in time, while
        // blaming a delete called later than the revision was observed would be a false alarm.
        if a.lease_expiry(rev, entry, &granted) {
            continue;
        }
        if let Some(i) = a.find_unknown(rev, entry, &cands, &applied_unknown) {
            applied_unknown.insert(i);
            a.result.pos.insert(i, 2 * rev);
            a.result.unknown_applied += 1;
            continue;
        }
        a.unexplained(rev, entry, &cands);
    }
    for (&rev, ops) in &claims {
        if !log.revs.contains_key(&rev) {
            for &i in ops {
                a.check_claim(i, rev, None, false);
            }
        }
    }
    for (&rev, ops) in &revokes {
        if !log.revs.contains_key(&rev) {
            for &i in ops {
                a.revoke_read_like(i, rev);
            }
        }
    }
    for (i, rev) in read_like {
        a.check_read_like(i, rev);
    }
    a.result
}

impl Attributor<'_> {
    fn id(&self, i: usize) -> usize {
        self.h.ops[i].id
    }

    /// Checks that the txn's answer (branch, results) is what the state at `at` gives.
    fn check_txn_answer(&mut self, i: usize, eff: &Effect, at: i64) {
        let id = self.id(i);
        let Outcome::Ok(Response::Txn {
            succeeded, results, ..
        }) = &self.h.ops[i].outcome
        else {
            return;
        };
        if let Some(holds) = eff.compares_hold {
            if holds != *succeeded {
                self.out.add("wrong txn branch", || {
                    (
                        format!("txn answered succeeded={succeeded} but its compares are {holds} on the state at revision {at}"),
                        vec![id],
                        vec![],
                    )
                });
            }
        }
        if *results != eff.results {
            let (exp, got) = (format!("{:?}", eff.results), format!("{results:?}"));
            self.out.add("wrong read result", || {
                (
                    format!("txn results on the state at revision {at}: expected {exp}, got {got}"),
                    vec![id],
                    vec![],
                )
            });
        }
    }

    /// An acknowledged write that changed something claims revision `rev`: the log's events
    /// there must be its effect on the state at `rev - 1`. Returns whether they are.
    fn check_claim(
        &mut self,
        i: usize,
        rev: i64,
        entry: Option<&LogRevision>,
        taken: bool,
    ) -> bool {
        self.result.pos.insert(i, 2 * rev);
        self.result.acknowledged += 1;
        let op = &self.h.ops[i];
        let Some(eff) = effect(&op.req, answered_branch(&op.outcome), self.state, rev - 1) else {
            return false;
        };
        self.check_txn_answer(i, &eff, rev - 1);
        let id = op.id;
        if let Outcome::Ok(Response::Delete { deleted, .. }) = op.outcome {
            let expected = eff.events.len() as i64;
            if deleted != expected {
                self.out.add("wrong read result", || {
                    (
                        format!("delete answered deleted={deleted} but {expected} key(s) existed at revision {}", rev - 1),
                        vec![id],
                        vec![],
                    )
                });
            }
        }
        let matched = !taken && entry.is_some_and(|e| matches_log(&eff.events, e, false));
        // The write is there but without its lease: it still explains the revision.
        let lease_only =
            !matched && !taken && entry.is_some_and(|e| matches_log(&eff.events, e, true));
        if !matched {
            let kind = if lease_only { "lease" } else { "lost write" };
            let exp = show_events(&eff.events);
            let got = entry.map_or("nothing (revision missing from the log)".to_string(), |e| {
                show_events(e.events())
            });
            let also = if taken {
                " (another write already explains that revision)"
            } else {
                ""
            };
            self.out.add(kind, || {
                (
                    format!(
                        "write acknowledged at revision {rev}: expected {exp}; log has {got}{also}"
                    ),
                    vec![id],
                    vec![],
                )
            });
        }
        // A put of this write's unique value at that revision, even with wrong metadata, is
        // still this write: the revision is not also reported as unexplained.
        let ours = !taken
            && entry.is_some_and(|e| {
                e.events().any(|got| {
                    got.kind == EventKind::Put
                        && eff.events.iter().any(|exp| {
                            exp.kind == EventKind::Put
                                && exp.kv.key == got.kv.key
                                && exp.kv.value == got.kv.value
                        })
                })
            });
        matched || lease_only || ours
    }

    /// Whether an acknowledged revoke's deletes (all keys of its lease) are the revision's
    /// events.
    fn revoke_applied(&mut self, i: usize, rev: i64, entry: &LogRevision) -> bool {
        let Some(eff) = effect(&self.h.ops[i].req, None, self.state, rev - 1) else {
            return false;
        };
        if eff.events.is_empty() || !matches_log(&eff.events, entry, false) {
            return false;
        }
        self.result.acknowledged += 1;
        true
    }

    /// Every acknowledged revoke: its lease has no key left at its revision. It is placed as
    /// having observed that revision even when it made it: the same deletes may be the lease's
    /// expiry, which no client called, so the revoke's call time must not constrain them (and
    /// an observer of revision r sits after its maker anyway).
    fn revoke_read_like(&mut self, i: usize, rev: i64) {
        self.result.pos.insert(i, 2 * rev + 1);
        let Request::LeaseRevoke { id: lease } = self.h.ops[i].req else {
            return;
        };
        let left = self.state.lease_keys_at(lease, rev);
        if !left.is_empty() {
            let keys: Vec<String> = left.iter().map(|kv| show(&kv.key)).collect();
            let id = self.id(i);
            self.out.add("lease", || {
                (
                    format!("lease {lease} revoked (answered at revision {rev}) but keys still attached there: {}", keys.join(", ")),
                    vec![id],
                    vec![],
                )
            });
        }
    }

    /// An acknowledged write that changed nothing observed the state at `rev`: its answer must
    /// be what that state gives.
    fn check_read_like(&mut self, i: usize, rev: i64) {
        self.result.pos.insert(i, 2 * rev + 1);
        let op = &self.h.ops[i];
        let Some(eff) = effect(&op.req, answered_branch(&op.outcome), self.state, rev) else {
            return;
        };
        self.check_txn_answer(i, &eff, rev);
        if matches!(op.req, Request::Delete { .. }) && !eff.events.is_empty() {
            let id = op.id;
            let keys: Vec<String> = eff.events.iter().map(|e| show(&e.kv.key)).collect();
            self.out.add("wrong read result", || {
                (
                    format!("delete answered deleted=0 at revision {rev} but these keys existed there: {}", keys.join(", ")),
                    vec![id],
                    vec![],
                )
            });
        }
    }

    /// A write without a successful answer whose effect is exactly the revision's events.
    fn find_unknown(
        &self,
        rev: i64,
        entry: &LogRevision,
        cands: &Candidates,
        applied: &HashSet<usize>,
    ) -> Option<usize> {
        let mut found: Vec<usize> = Vec::new();
        let mut any_put = false;
        for e in entry.events() {
            if e.kind == EventKind::Put {
                any_put = true;
                if let Some(list) = cands
                    .puts
                    .get(&(e.kv.key.as_slice(), e.kv.value.as_slice()))
                {
                    found.extend(list);
                }
            }
        }
        if !any_put {
            let key = entry.keys.keys().next()?;
            if let Some(list) = cands.single_deletes.get(*key) {
                found.extend(list);
            }
            found.extend(
                cands
                    .other_deletes
                    .iter()
                    .filter(|&&i| may_delete(self.h, i, key, self.state, rev)),
            );
        }
        // Among equal candidates (deletes of the same key) the earliest called constrains the
        // real-time order least.
        found.sort_unstable_by_key(|&i| (self.h.ops[i].call, i));
        found.dedup();
        found.into_iter().find(|&i| {
            let op = &self.h.ops[i];
            matches!(op.outcome, Outcome::Err { .. })
                && is_write(&op.req)
                && !applied.contains(&i)
                && effect(&op.req, None, self.state, rev - 1)
                    .is_some_and(|eff| matches_log(&eff.events, entry, false))
        })
    }

    /// Deletes of exactly the keys attached to one granted lease: the lease expired.
    fn lease_expiry(&self, rev: i64, entry: &LogRevision, granted: &HashSet<i64>) -> bool {
        let mut lease = None;
        for (key, (_, evs)) in &entry.keys {
            if evs.len() != 1 || evs[0].kind != EventKind::Delete {
                return false;
            }
            let Some(kv) = self.state.get(key, rev - 1) else {
                return false;
            };
            if kv.lease == 0 || lease.is_some_and(|l| l != kv.lease) {
                return false;
            }
            lease = Some(kv.lease);
        }
        let Some(lease) = lease else { return false };
        granted.contains(&lease)
            && self
                .state
                .lease_keys_at(lease, rev - 1)
                .iter()
                .filter(|kv| entry.covers(&kv.key))
                .count()
                == entry.keys.len()
    }

    fn unexplained(&mut self, rev: i64, entry: &LogRevision, cands: &Candidates) {
        let mut related: Vec<usize> = Vec::new();
        for e in entry.events() {
            if let Some(list) = cands
                .puts
                .get(&(e.kv.key.as_slice(), e.kv.value.as_slice()))
            {
                related.extend(list.iter().map(|&i| self.h.ops[i].id));
            }
        }
        related.sort_unstable();
        related.dedup();
        let evs = show_events(entry.events());
        let streams: Vec<usize> = entry.keys.values().map(|(s, _)| *s).take(1).collect();
        self.out.add("unexplained event", || {
            (
                format!("no write explains revision {rev}: {evs}"),
                related,
                streams,
            )
        });
    }
}
