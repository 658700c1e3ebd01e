//! Real-time order (steps 5 and 6): an operation that started after another one ended must not
//! sit before it in the order the revisions give.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{History, Outcome, Request, Time};

use super::anomalies::Anomalies;

/// An operation with its interval and its position in the order being checked.
#[derive(Clone, Copy)]
struct Timed {
    op: usize,
    call: Time,
    ret: Time,
    pos: i64,
}

/// Every pair (a, b) of indexes into `items` where `a` ended before `b` started but `a.pos >
/// b.pos`, naming for each `b` the earlier-ended item with the highest position. Sorting by end
/// time with a running maximum makes this O(n log n).
fn violations(items: &[Timed]) -> Vec<(usize, usize)> {
    let mut by_ret: Vec<usize> = (0..items.len()).collect();
    by_ret.sort_by_key(|&i| items[i].ret);
    let rets: Vec<Time> = by_ret.iter().map(|&i| items[i].ret).collect();
    let mut best: Vec<usize> = Vec::with_capacity(items.len());
    for (k, &i) in by_ret.iter().enumerate() {
        let b = if k == 0 || items[i].pos > items[best[k - 1]].pos {
            i
        } else {
            best[k - 1]
        };
        best.push(b);
    }
    let mut found = Vec::new();
    for (b, item) in items.iter().enumerate() {
        let k = rets.partition_point(|&t| t < item.call);
        if k > 0 && items[best[k - 1]].pos > item.pos {
            found.push((best[k - 1], b));
        }
    }
    found
}

fn ms(t: Time) -> String {
    if t == Time::MAX {
        "never".to_string()
    } else {
        format!("{:.3} ms", t as f64 / 1e6)
    }
}

/// The end time that constrains: an unanswered operation may take effect at any later time.
fn ret_of(h: &History, i: usize) -> Time {
    let op = &h.ops[i];
    match op.outcome {
        Outcome::Ok(_) => op.ret.unwrap_or(Time::MAX),
        Outcome::Err { .. } => Time::MAX,
    }
}

/// Step 5 over the linearizable operations placed by the attribution and the reads.
pub(crate) fn check_real_time(h: &History, pos: &HashMap<usize, i64>, out: &mut Anomalies) {
    let items: Vec<Timed> = pos
        .iter()
        .map(|(&op, &p)| Timed {
            op,
            call: h.ops[op].call,
            ret: ret_of(h, op),
            pos: p,
        })
        .collect();
    for (a, b) in violations(&items) {
        let (a, b) = (items[a], items[b]);
        let kind = if b.pos % 2 == 1 {
            "stale read"
        } else if a.pos % 2 == 1 {
            "read from the future"
        } else {
            "revision went backwards"
        };
        let what = |p: i64| {
            if p % 2 == 0 {
                format!("wrote revision {}", p / 2)
            } else {
                format!("observed revision {}", p / 2)
            }
        };
        let (ida, idb) = (h.ops[a.op].id, h.ops[b.op].id);
        out.add(kind, || {
            (
                format!(
                    "op {idb} {} but started at {}, after op {ida} ({}) returned at {}",
                    what(b.pos),
                    ms(b.call),
                    what(a.pos),
                    ms(a.ret)
                ),
                vec![ida, idb],
                vec![],
            )
        });
    }
}

/// Step 6: per member, the header revisions of its answers never go backwards in real time.
/// Pairs of linearizable operations are left to step 5.
pub(crate) fn check_members(h: &History, linearizable: &HashSet<usize>, out: &mut Anomalies) {
    let mut per_member: BTreeMap<usize, Vec<Timed>> = BTreeMap::new();
    for (i, op) in h.ops.iter().enumerate() {
        let Outcome::Ok(resp) = &op.outcome else {
            continue;
        };
        if matches!(op.req, Request::Defragment | Request::LeaseKeepAlive { .. }) {
            continue;
        }
        let rev = resp.revision();
        if rev > 0 {
            per_member.entry(op.member).or_default().push(Timed {
                op: i,
                call: op.call,
                ret: op.ret.unwrap_or(Time::MAX),
                pos: rev,
            });
        }
    }
    for (member, items) in per_member {
        for (a, b) in violations(&items) {
            let (a, b) = (items[a], items[b]);
            if linearizable.contains(&a.op) && linearizable.contains(&b.op) {
                continue;
            }
            let (ida, idb) = (h.ops[a.op].id, h.ops[b.op].id);
            out.add("revision went backwards", || {
                (
                    format!(
                        "member {member} answered op {idb} at revision {} after answering op {ida} at revision {} (op {ida} returned at {}, op {idb} started at {})",
                        b.pos, a.pos, ms(a.ret), ms(b.call)
                    ),
                    vec![ida, idb],
                    vec![],
                )
            });
        }
    }
}
