//! Random concurrent histories of a correct model server: overlapping operations, writes whose
//! answer was lost (applied or not), a lagging member serving serializable reads, leases revoked
//! and expiring, compactions, a watcher reconnecting, narrow watchers and progress
//! notifications. Every one must pass; each seeded corruption must be noticed.

use crate::history::{
    CompareResult, CompareTarget, History, Outcome, Request, Response, TxnOp, WatchResponse,
    WatchStream,
};

use super::check;
use super::sim::{k, ms, Sim};

/// splitmix64: a small deterministic generator, enough for test traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// A progress notification: the stream is known to have seen everything up to `rev`.
fn progress(stream: &mut WatchStream, rev: i64, time: u64) {
    stream.responses.push(WatchResponse {
        time,
        revision: rev,
        created: false,
        canceled: false,
        compact_revision: 0,
        cancel_reason: String::new(),
        events: vec![],
    });
}

pub(super) fn random_history(seed: u64, steps: usize) -> History {
    let mut r = Rng(seed);
    let mut s = Sim::new();
    let mut t: u64 = 10;
    let mut value = 0u64;
    let mut fresh = || {
        value += 1;
        leak(format!("v{value}"))
    };
    // Revision member 2 (lagging, serving serializable reads only) has reached.
    let mut lag: i64 = 1;
    let (mut next_lease, mut live_leases): (i64, Vec<i64>) = (1, Vec::new());
    let mut compacted: i64 = 0;
    // Watcher 0 reconnects after these revisions.
    let mut splits: Vec<(i64, u64)> = Vec::new();
    let mut extra: Vec<WatchStream> = Vec::new();
    let mut narrow: Vec<(&str, &str, i64, u64)> = Vec::new();
    for _ in 0..steps {
        t += 1 + r.below(3);
        // The operation takes effect at t, inside its interval.
        let (call, ret) = (t - r.below(4), t + r.below(4));
        let member = r.below(2) as usize;
        match r.below(100) {
            0..=21 => {
                let lease = if !live_leases.is_empty() && r.below(4) == 0 {
                    live_leases[r.below(live_leases.len() as u64) as usize]
                } else {
                    0
                };
                let v = fresh();
                s.put(member, call, ret, r.pick(&KEYS), v, lease);
            }
            22..=29 => {
                s.delete(member, call, ret, r.pick(&KEYS));
            }
            30..=41 => {
                let key = r.pick(&KEYS);
                let (target, result) = match r.below(3) {
                    0 => (
                        CompareTarget::Value(k(r.pick(&["v1", "v2", "v3"]))),
                        CompareResult::NotEqual,
                    ),
                    1 => (
                        CompareTarget::ModRevision(r.below(s.rev as u64 + 1) as i64),
                        CompareResult::Less,
                    ),
                    _ => (
                        CompareTarget::Version(r.below(3) as i64),
                        CompareResult::Equal,
                    ),
                };
                let compare = crate::history::Compare {
                    key: k(key),
                    target,
                    result,
                };
                let mut branch = |r: &mut Rng| -> Vec<TxnOp> {
                    (0..r.below(3))
                        .map(|_| {
                            let key = k(r.pick(&KEYS));
                            match r.below(3) {
                                0 => TxnOp::Range {
                                    key,
                                    range_end: vec![],
                                },
                                1 => TxnOp::Put {
                                    key,
                                    value: k(fresh()),
                                    lease: 0,
                                },
                                _ => TxnOp::Delete {
                                    key,
                                    range_end: vec![],
                                },
                            }
                        })
                        .collect()
                };
                let (success, failure) = (branch(&mut r), branch(&mut r));
                // etcd refuses a txn writing one key twice; keep branches to distinct keys.
                let distinct = |ops: &[TxnOp]| {
                    let mut keys: Vec<&[u8]> = ops
                        .iter()
                        .map(|op| match op {
                            TxnOp::Range { key, .. }
                            | TxnOp::Put { key, .. }
                            | TxnOp::Delete { key, .. } => key.as_slice(),
                        })
                        .collect();
                    let n = keys.len();
                    keys.sort();
                    keys.dedup();
                    keys.len() == n
                };
                if distinct(&success) && distinct(&failure) {
                    s.txn(member, call, ret, vec![compare], success, failure, None);
                }
            }
            42..=55 => {
                let (key, end, limit) = match r.below(3) {
                    0 => (r.pick(&KEYS), "", 0),
                    1 => ("b", "d", 0),
                    _ => ("\0", "\0", r.below(3) as i64),
                };
                s.range(member, call, ret, key, end, 0, limit, false);
            }
            56..=65 => {
                lag += r.below((s.rev - lag + 1) as u64) as i64;
                s.range(2, call, ret, r.pick(&KEYS), "", lag, 0, true);
            }
            66..=71 => {
                let v = fresh();
                let applied = r.below(2) == 0;
                let id = s.put_unknown(call, r.pick(&KEYS), v, applied);
                if r.below(3) == 0 {
                    s.h.ops[id].ret = None;
                }
            }
            72..=74 => {
                let applied = r.below(2) == 0;
                s.delete_unknown(call, r.pick(&KEYS), applied);
            }
            75..=78 => {
                let id = next_lease;
                next_lease += 1;
                s.ok(0, call, ret, Request::LeaseGrant { id, ttl: 5 });
                live_leases.push(id);
            }
            79..=81 if !live_leases.is_empty() => {
                let lease = live_leases.remove(r.below(live_leases.len() as u64) as usize);
                s.end_lease(lease, call, ret, r.below(2) == 0);
            }
            82..=83 if !live_leases.is_empty() => {
                let lease = live_leases[r.below(live_leases.len() as u64) as usize];
                s.ok(0, call, ret, Request::LeaseKeepAlive { id: lease });
            }
            84..=85 if s.rev > compacted + 2 => {
                compacted = s.rev - r.below(2) as i64;
                s.ok(
                    member,
                    call,
                    ret,
                    Request::Compact {
                        revision: compacted,
                        physical: false,
                    },
                );
                // A watch at exactly the compacted revision is served; one below it is refused.
                extra.push(s.watch_all(10, compacted, ret + 1));
                let mut refused = s.watch_all(11, compacted - 1, ret + 1);
                refused.responses.truncate(1);
                refused.responses.push(WatchResponse {
                    time: ms(ret + 2),
                    revision: s.rev,
                    created: false,
                    canceled: true,
                    compact_revision: compacted,
                    cancel_reason: "compacted".to_string(),
                    events: vec![],
                });
                extra.push(refused);
            }
            86..=89 => splits.push((s.rev, t)),
            90..=92 => {
                let (key, end) = match r.below(3) {
                    0 => (r.pick(&KEYS), ""),
                    1 => ("b", "d"),
                    _ => ("c", "\0"),
                };
                narrow.push((key, end, s.rev, t));
            }
            93..=96 if s.rev > compacted.max(1) => {
                let low = compacted.max(1);
                let past = low + r.below((s.rev - low + 1) as u64) as i64;
                let id = s.range(member, call, ret, r.pick(&KEYS), "", past, 0, false);
                let current = s.rev;
                let op = &mut s.h.ops[id];
                if let Request::Range { revision, .. } = &mut op.req {
                    *revision = past;
                }
                if let Outcome::Ok(Response::Range { revision, .. }) = &mut op.outcome {
                    *revision = current;
                }
            }
            _ => {}
        }
    }
    let last = s.rev;
    // Watcher 0: one stream per connection, each from the revision after the last it saw.
    let mut watches = Vec::new();
    let mut from = 1;
    for (upto, at) in splits.into_iter().chain([(last, t)]) {
        if upto < from {
            continue;
        }
        let mut stream = s.watch_all(0, from, 0);
        stream.responses.retain(|resp| resp.revision <= upto);
        progress(&mut stream, upto, ms(at));
        watches.push(stream);
        from = upto + 1;
    }
    for (i, (key, end, created, at)) in narrow.into_iter().enumerate() {
        let mut stream = s.watch(20 + i as u32, key, end, 0, created, at);
        progress(&mut stream, last, ms(t + 1));
        watches.push(stream);
    }
    watches.extend(extra);
    s.finish_streams(watches)
}

#[test]
fn random_correct_histories_pass() {
    for seed in 0..100 {
        let h = random_history(seed, 400);
        let report = check(&h);
        assert!(report.is_ok(), "seed {seed}: {report}");
        assert!(report.writes_acknowledged > 50, "seed {seed}: {report}");
    }
}

/// Corruptions that any checker of etcd's guarantees must notice, each applied to many random
/// histories.
#[test]
fn random_corruptions_are_noticed() {
    type Corruption = fn(&mut History, &mut Rng) -> bool;
    let corruptions: [(&str, Corruption); 6] = [
        ("drop a revision from every stream", |h, r| {
            let rev = 2 + r.below(h.final_revision as u64 - 1) as i64;
            for w in &mut h.watches {
                for resp in &mut w.responses {
                    resp.events.retain(|e| e.kv.mod_revision != rev);
                }
            }
            true
        }),
        ("change a value a read returned", |h, r| {
            let reads: Vec<usize> = (0..h.ops.len())
                .filter(|&i| matches!(&h.ops[i].outcome, Outcome::Ok(Response::Range { kvs, .. }) if !kvs.is_empty()))
                .collect();
            if reads.is_empty() {
                return false;
            }
            let i = reads[r.below(reads.len() as u64) as usize];
            if let Outcome::Ok(Response::Range { kvs, .. }) = &mut h.ops[i].outcome {
                kvs[0].value = k("corrupt");
            }
            true
        }),
        ("flip a txn's branch", |h, r| {
            let txns: Vec<usize> = (0..h.ops.len())
                .filter(|&i| matches!(h.ops[i].outcome, Outcome::Ok(Response::Txn { .. })))
                .collect();
            if txns.is_empty() {
                return false;
            }
            let i = txns[r.below(txns.len() as u64) as usize];
            if let Outcome::Ok(Response::Txn { succeeded, .. }) = &mut h.ops[i].outcome {
                *succeeded = !*succeeded;
            }
            true
        }),
        (
            "acknowledge a write at a revision another write made",
            |h, r| {
                let puts: Vec<usize> = (0..h.ops.len())
                .filter(|&i| matches!(h.ops[i].outcome, Outcome::Ok(Response::Put { revision }) if revision > 2))
                .collect();
                if puts.is_empty() {
                    return false;
                }
                let i = puts[r.below(puts.len() as u64) as usize];
                if let Outcome::Ok(Response::Put { revision }) = &mut h.ops[i].outcome {
                    *revision -= 1;
                }
                true
            },
        ),
        ("repeat a watch response", |h, r| {
            let w = &mut h.watches[0];
            if w.responses.len() < 3 {
                return false;
            }
            let i = 1 + r.below(w.responses.len() as u64 - 2) as usize;
            if w.responses[i].events.is_empty() {
                return false;
            }
            let again = w.responses[i].clone();
            w.responses.insert(i + 1, again);
            true
        }),
        ("lose the last write from the final read", |h, _| {
            h.final_kvs.pop().is_some()
        }),
    ];
    for seed in 0..50 {
        for (name, corrupt) in &corruptions {
            let mut h = random_history(seed, 200);
            let mut r = Rng(seed ^ 0xdead);
            if corrupt(&mut h, &mut r) {
                assert!(!check(&h).is_ok(), "seed {seed}: {name} went unnoticed");
            }
        }
    }
}

/// The report prints each anomaly with its kind and detail, then the operations and streams it
/// names, one per line.
#[test]
fn report_lists_anomalies_with_their_operations() {
    let mut h = random_history(3, 100);
    h.final_kvs.pop();
    let stream = h
        .watches
        .iter()
        .position(|w| w.responses.len() > 4)
        .unwrap();
    h.watches[stream].responses.swap(2, 3);
    let read = h
        .ops
        .iter()
        .position(|op| matches!(op.outcome, Outcome::Ok(Response::Range { .. })))
        .unwrap();
    if let Outcome::Ok(Response::Range { revision, .. }) = &mut h.ops[read].outcome {
        *revision += 3;
    }
    let report = check(&h);
    let text = report.to_string();
    for expected in [
        "watch out of order: stream",
        "final state mismatch: final range",
        "read from the future: op",
        "    stream 1: watcher 0 member 0",
        &format!("    op {read} client 3 member "),
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    let first = report.minimal_history(&h);
    assert_eq!(first.watches.len(), 1);
    assert!(first.ops.is_empty());
}
