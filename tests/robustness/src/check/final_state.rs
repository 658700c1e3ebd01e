//! The end of the run (step 8): the final range read and the members' hashes agree with the
//! log; and the light lease check (step 9).

use std::collections::{BTreeMap, HashMap};

use crate::history::{History, KeyValue, Outcome, Request, Response, Time};

use super::anomalies::Anomalies;
use super::keys::{show, KeyRange};
use super::log::EventLog;
use super::state::VersionedState;

pub(crate) fn check_final(
    h: &History,
    log: &EventLog,
    state: &VersionedState,
    out: &mut Anomalies,
) {
    if h.final_revision > 0 {
        let expected: BTreeMap<&[u8], &KeyValue> = state
            .range(&KeyRange::From(Vec::new()), h.final_revision)
            .into_iter()
            .map(|kv| (kv.key.as_slice(), kv))
            .collect();
        let got: BTreeMap<&[u8], &KeyValue> = h
            .final_kvs
            .iter()
            .map(|kv| (kv.key.as_slice(), kv))
            .collect();
        let mut diffs = Vec::new();
        for (k, e) in &expected {
            match got.get(k) {
                None => diffs.push(format!("{} missing", show(k))),
                Some(g) if g != e => diffs.push(format!(
                    "{}: expected {} mod {} ver {}, got {} mod {} ver {}",
                    show(k),
                    show(&e.value),
                    e.mod_revision,
                    e.version,
                    show(&g.value),
                    g.mod_revision,
                    g.version
                )),
                Some(_) => {}
            }
        }
        for k in got.keys().filter(|k| !expected.contains_key(*k)) {
            diffs.push(format!("{} should not exist", show(k)));
        }
        if !diffs.is_empty() {
            let rev = h.final_revision;
            out.add("final state mismatch", || {
                let more = diffs.len().saturating_sub(10);
                diffs.truncate(10);
                let tail = if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                };
                (
                    format!(
                        "final range at revision {rev} differs from the log: {}{tail}",
                        diffs.join("; ")
                    ),
                    vec![],
                    vec![],
                )
            });
        }
        let last = log.last_revision();
        if last > h.final_revision {
            let rev = h.final_revision;
            out.add("final state mismatch", || {
                (
                    format!("the log has revisions up to {last}, beyond the final revision {rev}"),
                    vec![],
                    vec![],
                )
            });
        }
    }
    if let Some(first) = h.members.first() {
        if h.members
            .iter()
            .any(|m| m.hash_kv != first.hash_kv || m.revision != first.revision)
        {
            let all: Vec<String> = h
                .members
                .iter()
                .map(|m| {
                    format!(
                        "member {} revision {} hash {:#010x}",
                        m.member, m.revision, m.hash_kv
                    )
                })
                .collect();
            out.add("hash mismatch", || (all.join("; "), vec![], vec![]));
        }
    }
}

/// A keep-alive must not find a lease alive once its revoke was acknowledged.
pub(crate) fn check_keep_alives(h: &History, out: &mut Anomalies) {
    let mut revoked: HashMap<i64, (Time, usize)> = HashMap::new();
    for op in &h.ops {
        if let (Request::LeaseRevoke { id }, Outcome::Ok(_), Some(ret)) =
            (&op.req, &op.outcome, op.ret)
        {
            let e = revoked.entry(*id).or_insert((ret, op.id));
            if ret < e.0 {
                *e = (ret, op.id);
            }
        }
    }
    for op in &h.ops {
        if let (Request::LeaseKeepAlive { id }, Outcome::Ok(Response::LeaseKeepAlive { ttl, .. })) =
            (&op.req, &op.outcome)
        {
            if let Some(&(ret, revoke)) = revoked
                .get(id)
                .filter(|(ret, _)| *ttl > 0 && *ret < op.call)
            {
                let ka = op.id;
                out.add("lease", || {
                    (
                        format!("lease {id} kept alive (ttl {ttl}) after its revoke (op {revoke}) returned at {ret} ns"),
                        vec![revoke, ka],
                        vec![],
                    )
                });
            }
        }
    }
}
