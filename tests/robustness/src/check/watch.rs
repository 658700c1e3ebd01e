//! Watch stream guarantees (step 7): each stream reports, from its start revision on, every
//! revision touching its range, once, in order, with the log's events and correct prev_kv; a
//! stream refused for compaction names a compaction that happened.

use std::collections::BTreeSet;

use crate::history::{EventKind, History, KeyValue, Request, Time};

use super::anomalies::Anomalies;
use super::keys::show;
use super::log::{show_event, EventLog};
use super::state::VersionedState;

/// Revisions listed in a detail: the first few, then how many more.
fn revisions(list: &[i64]) -> String {
    let shown: Vec<String> = list.iter().take(10).map(|r| r.to_string()).collect();
    let more = list.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The compactions clients asked for (answered or not), to tell which compact revision a
/// refused watch may name.
struct Compactions {
    /// (call time, highest revision asked for by any compaction called up to then).
    by_call: Vec<(Time, i64)>,
}

impl Compactions {
    fn new(h: &History) -> Compactions {
        let mut calls: Vec<(Time, i64)> = h
            .ops
            .iter()
            .filter_map(|op| match op.req {
                Request::Compact { revision, .. } => Some((op.call, revision)),
                _ => None,
            })
            .collect();
        calls.sort_unstable();
        let mut highest = 0;
        for c in &mut calls {
            highest = highest.max(c.1);
            c.1 = highest;
        }
        Compactions { by_call: calls }
    }

    /// The highest revision a compaction called before `t` asked for (0: none).
    fn highest_before(&self, t: Time) -> i64 {
        let n = self.by_call.partition_point(|(call, _)| *call < t);
        if n == 0 {
            0
        } else {
            self.by_call[n - 1].1
        }
    }
}

pub(crate) fn check_streams(
    h: &History,
    log: &EventLog,
    state: &VersionedState,
    out: &mut Anomalies,
) {
    let compactions = Compactions::new(h);
    for (si, w) in h.watches.iter().enumerate() {
        let stream = &log.streams[si];
        let start = if w.start_revision != 0 {
            Some(w.start_revision)
        } else {
            w.responses
                .iter()
                .find(|r| r.created)
                .map(|r| r.revision + 1)
        };
        let mut refused = false;
        for resp in w.responses.iter().filter(|r| r.compact_revision != 0) {
            refused = true;
            let c = resp.compact_revision;
            let bound = compactions.highest_before(resp.time);
            if start.is_none_or(|s| s >= c) || c > bound {
                let start = start.map_or("unknown".to_string(), |s| s.to_string());
                out.add("watch wrong compact revision", || {
                    (
                        format!("stream {si} starting at revision {start} was refused with compact revision {c}; highest compaction requested by then: {bound}"),
                        vec![],
                        vec![si],
                    )
                });
            }
        }
        let Some(start) = start else { continue };
        if refused {
            continue;
        }
        let first = stream.by_rev.keys().next().copied();
        if let Some(f) = first.filter(|f| *f < start) {
            out.add("watch wrong start", || {
                (
                    format!(
                        "stream {si} should start at revision {start} but reported revision {f}"
                    ),
                    vec![],
                    vec![si],
                )
            });
        }
        // How far the stream is known to have caught up: its last event, or a progress
        // notification (an empty response; etcd sends those only to watchers that are synced).
        let progress = w
            .responses
            .iter()
            .filter(|r| r.events.is_empty() && !r.created && !r.canceled && r.compact_revision == 0)
            .map(|r| r.revision)
            .max();
        let last = stream.by_rev.keys().next_back().copied();
        let upto = last.max(progress).unwrap_or(i64::MIN);
        let (mut late, mut gaps, mut differ) = (Vec::new(), Vec::new(), Vec::new());
        if start <= upto {
            for (r, entry) in log.revs.range(start..=upto) {
                let expected: BTreeSet<&[u8]> = entry
                    .keys
                    .keys()
                    .copied()
                    .filter(|k| stream.range.contains(k))
                    .collect();
                match stream.by_rev.get(r) {
                    None if expected.is_empty() => {}
                    None if first.is_some_and(|f| *r < f) => late.push(*r),
                    None => gaps.push(*r),
                    Some(evs) => {
                        let got: BTreeSet<&[u8]> =
                            evs.iter().map(|e| e.kv.key.as_slice()).collect();
                        if got != expected {
                            differ.push(*r);
                        }
                    }
                }
            }
        }
        for (r, evs) in &stream.by_rev {
            if evs.iter().any(|e| !stream.range.contains(&e.kv.key)) {
                differ.push(*r);
            }
        }
        differ.sort_unstable();
        differ.dedup();
        if !late.is_empty() {
            let f = first.unwrap_or_default();
            out.add("watch wrong start", || {
                (
                    format!("stream {si} should start at revision {start} but its first event is at {f}, missing revisions {}", revisions(&late)),
                    vec![],
                    vec![si],
                )
            });
        }
        if !gaps.is_empty() {
            out.add("watch gap", || {
                (
                    format!(
                        "stream {si} ({}) from revision {start} skipped revisions {}",
                        stream.range,
                        revisions(&gaps)
                    ),
                    vec![],
                    vec![si],
                )
            });
        }
        if !differ.is_empty() {
            out.add("watch event mismatch", || {
                (
                    format!(
                        "stream {si} ({}) reported other keys than the log at revisions {}",
                        stream.range,
                        revisions(&differ)
                    ),
                    vec![],
                    vec![si],
                )
            });
        }
        if w.prev_kv {
            check_prev_kvs(si, stream, state, out);
        }
    }
}

/// A prev_kv, when present, is the key's value just before the event (the state at the previous
/// revision, or the earlier event of the same key in the same txn).
fn check_prev_kvs(
    si: usize,
    stream: &super::log::StreamEvents,
    state: &VersionedState,
    out: &mut Anomalies,
) {
    let mut wrong = Vec::new();
    for (r, evs) in &stream.by_rev {
        let mut current: Vec<(&[u8], Option<KeyValue>)> = Vec::new();
        for e in evs {
            let key = e.kv.key.as_slice();
            let before = match current.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => v.clone(),
                None => state.get(key, r - 1).cloned(),
            };
            if e.prev_kv.is_some() && e.prev_kv != before {
                wrong.push((e, before));
            }
            let after = match e.kind {
                EventKind::Put => Some(e.kv.clone()),
                EventKind::Delete => None,
            };
            current.retain(|(k, _)| *k != key);
            current.push((key, after));
        }
    }
    if let Some((e, before)) = wrong.first() {
        let n = wrong.len();
        let before = before.as_ref().map_or("nothing".to_string(), |kv| {
            format!(
                "{}={} mod {} ver {}",
                show(&kv.key),
                show(&kv.value),
                kv.mod_revision,
                kv.version
            )
        });
        let e = show_event(e);
        out.add("watch event mismatch", || {
            (
                format!("stream {si}: {n} event(s) with a wrong prev_kv, first: {e}, expected prev {before}"),
                vec![],
                vec![si],
            )
        });
    }
}
