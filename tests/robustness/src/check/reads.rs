//! Range reads (step 4): each successful range returns the state at the revision it read.

use crate::history::{History, KeyValue, Outcome, Request, Response};

use super::anomalies::Anomalies;
use super::keys::{show, KeyRange};
use super::state::VersionedState;

fn show_kvs(kvs: &[KeyValue]) -> String {
    let parts: Vec<String> = kvs
        .iter()
        .map(|kv| {
            format!(
                "{}={}@{}/{}/v{}{}",
                show(&kv.key),
                show(&kv.value),
                kv.mod_revision,
                kv.create_revision,
                kv.version,
                if kv.lease != 0 {
                    format!("/lease {}", kv.lease)
                } else {
                    String::new()
                }
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Checks every successful range; returns (op index, header revision, linearizable) of each.
pub(crate) fn check_ranges(
    h: &History,
    state: &VersionedState,
    out: &mut Anomalies,
) -> Vec<(usize, i64, bool)> {
    let mut checked = Vec::new();
    for (i, op) in h.ops.iter().enumerate() {
        let (
            Request::Range {
                key,
                range_end,
                revision: asked,
                limit,
                serializable,
            },
            Outcome::Ok(Response::Range {
                revision,
                kvs,
                count,
                more,
            }),
        ) = (&op.req, &op.outcome)
        else {
            continue;
        };
        checked.push((i, *revision, !serializable));
        if *asked > *revision {
            let (id, header) = (op.id, *revision);
            out.add("wrong read result", || {
                (
                    format!("range at revision {asked} answered by a member at revision {header}"),
                    vec![id],
                    vec![],
                )
            });
        }
        // A read at a past revision shows that revision; otherwise the one in its header.
        let at = if *asked != 0 { *asked } else { *revision };
        let all = state.range(&KeyRange::new(key, range_end), at);
        let exp_count = all.len() as i64;
        let truncated = *limit > 0 && exp_count > *limit;
        let shown = if truncated {
            *limit as usize
        } else {
            all.len()
        };
        let exp_kvs: Vec<KeyValue> = all[..shown].iter().map(|kv| (*kv).clone()).collect();
        if exp_kvs != *kvs || exp_count != *count || truncated != *more {
            let id = op.id;
            let detail = format!(
                "range at revision {at}: expected {} count {exp_count} more {truncated}, got {} count {count} more {more}",
                show_kvs(&exp_kvs),
                show_kvs(kvs)
            );
            out.add("wrong read result", || (detail, vec![id], vec![]));
        }
    }
    checked
}
