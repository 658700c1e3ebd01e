//! Tests of the checker: a correct history built with a model server passes, and each kind of
//! anomaly is reported when a correct history is broken minimally.

mod random;
mod sim;

use std::collections::BTreeSet;

use crate::history::{History, Outcome, Request, Response, WatchResponse, WatchStream};

use super::check;
use sim::{k, ms, tget, tput, value_is, Sim, W};

/// A history exercising everything a correct server does: puts, deletes (also of nothing),
/// txns taking either branch and read-only, writes whose outcome is unknown (applied or not),
/// lease revoke and expiry, compaction with a watch at exactly the compacted revision and one
/// refused below it, serializable reads from a lagging member, a range with a limit.
fn correct() -> History {
    let mut s = Sim::new();
    s.ok(0, 1, 2, Request::LeaseGrant { id: 100, ttl: 10 });
    s.ok(0, 3, 4, Request::LeaseGrant { id: 200, ttl: 1 });
    s.put(0, 5, 6, "a", "1", 0); // rev 2
    s.put(1, 7, 8, "b", "1", 100); // rev 3
    s.put(2, 9, 10, "c", "1", 0); // rev 4
    s.range(1, 11, 12, "a", "", 0, 0, false);
    s.txn(
        0,
        13,
        14,
        vec![value_is("a", "1")],
        vec![tput("a", "2")],
        vec![tput("a", "x")],
        None,
    ); // rev 5
    s.txn(
        1,
        15,
        16,
        vec![value_is("a", "1")],
        vec![tput("a", "3")],
        vec![tput("d", "1")],
        None,
    ); // rev 6
    s.txn(
        2,
        17,
        18,
        vec![value_is("d", "1")],
        vec![tget("a")],
        vec![tget("b")],
        None,
    );
    s.put_unknown(19, "e", "1", true); // rev 7
    s.put_unknown(20, "e", "2", false);
    s.delete(0, 21, 22, "c"); // rev 8
    s.delete(1, 23, 24, "zz");
    s.put(0, 25, 26, "f", "1", 200); // rev 9
    s.ok(0, 27, 28, Request::LeaseKeepAlive { id: 200 });
    s.end_lease(200, 29, 30, false); // rev 10: expiry
    s.end_lease(100, 31, 32, true); // rev 11: revoke
    s.ok(
        0,
        33,
        34,
        Request::Compact {
            revision: 4,
            physical: true,
        },
    );
    // Member 2 lags behind but never goes back.
    s.range(2, 35, 36, "a", "z", 6, 0, true);
    s.range(2, 37, 38, "a", "z", 8, 0, true);
    s.range(0, 39, 40, "a", "z", 0, 1, false);
    s.put(1, 41, 42, "g", "1", 0); // rev 12
    s.delete_unknown(43, "d", true); // rev 13
    s.delete_unknown(44, "g", false);
    // Keys [a, e) from "now" when the revision was 4, with prev_kv.
    let narrow = s.watch(3, "a", "e", 0, 4, 12);
    let at_compacted = s.watch_all(1, 4, 45);
    let mut refused = s.watch_all(2, 2, 46);
    refused.responses.truncate(1);
    refused.responses.push(WatchResponse {
        time: ms(47),
        revision: s.rev,
        created: false,
        canceled: true,
        compact_revision: 4,
        cancel_reason: "mvcc: required revision has been compacted".to_string(),
        events: vec![],
    });
    s.finish(vec![at_compacted, refused, narrow])
}

/// A few writes on member 0 to build small broken histories on.
fn base() -> Sim {
    let mut s = Sim::new();
    s.put(0, 1, 2, "a", "1", 0); // rev 2
    s.put(0, 3, 4, "a", "2", 0); // rev 3
    s.put(0, 5, 6, "b", "1", 0); // rev 4
    s
}

fn kinds(h: &History) -> BTreeSet<&'static str> {
    check(h).anomalies.iter().map(|a| a.kind).collect()
}

/// The checker reports `kind` and nothing else.
fn assert_only(h: &History, kind: &'static str) {
    let report = check(h);
    let found: BTreeSet<&str> = report.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(found, BTreeSet::from([kind]), "{report}");
}

#[test]
fn correct_history_passes() {
    let h = correct();
    let report = check(&h);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.revisions, 13);
    assert_eq!(report.writes_unknown_applied, 2);
    // Puts a b c f g, two txns, delete c, revoke.
    assert_eq!(report.writes_acknowledged, 9);
    assert_eq!(report.events, 12);
    assert!(report.to_string().contains("no anomaly"));
    assert!(base().finish(vec![]).ops.len() == 3 && check(&base().finish(vec![])).is_ok());
}

#[test]
fn stale_read() {
    let mut s = base();
    s.range(1, 7, 8, "a", "", 2, 0, false);
    assert_only(&s.finish(vec![]), "stale read");
}

#[test]
fn read_from_the_future() {
    let mut s = base();
    s.put(0, 10, 11, "c", "1", 0); // rev 5, called at 10 ms
    s.range(1, 7, 8, "c", "", 0, 0, false); // returned at 8 ms, yet saw revision 5
    assert_only(&s.finish(vec![]), "read from the future");
}

#[test]
fn unknown_write_seen_before_it_was_sent() {
    let mut s = base();
    s.put_unknown(20, "x", "1", true); // rev 5, called at 20 ms
    s.range(1, 10, 12, "x", "", 0, 0, false); // returned at 12 ms, yet saw it
    assert_only(&s.finish(vec![]), "read from the future");
}

#[test]
fn lost_write() {
    let mut h = correct();
    let revision = h.final_revision + 1;
    h.ops.push(crate::history::Op {
        id: h.ops.len(),
        client: 9,
        member: 0,
        call: ms(100),
        ret: Some(ms(101)),
        req: Request::Put {
            key: k("lost"),
            value: k("1"),
            lease: 0,
        },
        outcome: Outcome::Ok(Response::Put { revision }),
    });
    assert_only(&h, "lost write");
    let report = check(&h);
    let min = report.minimal_history(&h);
    assert_eq!(min.ops.len(), 1);
    assert!(
        report.to_string().contains("put lost=1 -> ok rev 14"),
        "{report}"
    );
}

#[test]
fn watch_duplicate() {
    let mut h = correct();
    let again = h.watches[0].responses[3].clone();
    h.watches[0].responses.insert(4, again);
    assert_only(&h, "watch duplicate");
}

#[test]
fn watch_out_of_order() {
    let mut h = correct();
    h.watches[0].responses.swap(3, 4);
    assert_only(&h, "watch out of order");
}

#[test]
fn watch_gap() {
    let mut h = correct();
    // Stream 1 watches from revision 4: responses are created, 4, 5, 6...
    assert_eq!(h.watches[1].responses[2].revision, 5);
    h.watches[1].responses.remove(2);
    assert_only(&h, "watch gap");
}

#[test]
fn watch_starting_late() {
    let mut h = correct();
    h.watches[1].responses.remove(1);
    assert_only(&h, "watch wrong start");
}

#[test]
fn watch_starting_early() {
    let mut s = base();
    let mut w = s.watch_all(1, 3, 7);
    w.start_revision = 4;
    s.put(0, 8, 9, "c", "1", 0);
    let h = s.finish(vec![w]);
    assert_only(&h, "watch wrong start");
}

#[test]
fn watch_refused_at_the_compacted_revision() {
    let mut h = correct();
    // Stream 1 starts at exactly the compacted revision 4: it must be served, not refused.
    let stream = &mut h.watches[1];
    assert_eq!(stream.start_revision, 4);
    stream.responses.truncate(1);
    stream.responses.push(WatchResponse {
        time: ms(48),
        revision: 12,
        created: false,
        canceled: true,
        compact_revision: 4,
        cancel_reason: "compacted".to_string(),
        events: vec![],
    });
    assert_only(&h, "watch wrong compact revision");
}

#[test]
fn watch_refused_above_any_compaction() {
    let mut h = correct();
    h.watches[2].responses[1].compact_revision = 6;
    assert_only(&h, "watch wrong compact revision");
}

#[test]
fn watch_wrong_prev_kv() {
    let mut h = correct();
    let ev = &mut h.watches[1].responses[2].events[0];
    ev.prev_kv.as_mut().unwrap().value = k("bogus");
    assert_only(&h, "watch event mismatch");
}

#[test]
fn member_revision_went_backwards() {
    let mut s = base();
    s.range(2, 7, 8, "a", "", 4, 0, true);
    s.range(2, 9, 10, "a", "", 3, 0, true);
    assert_only(&s.finish(vec![]), "revision went backwards");
}

#[test]
fn hash_mismatch() {
    let mut h = correct();
    h.members[1].hash_kv ^= 1;
    assert_only(&h, "hash mismatch");
}

#[test]
fn final_state_mismatch() {
    let mut h = correct();
    h.final_kvs[0].value = k("other");
    assert_only(&h, "final state mismatch");
}

#[test]
fn wrong_txn_branch() {
    let mut s = base();
    s.txn(
        0,
        7,
        8,
        vec![value_is("a", "2")],
        vec![tput("c", "1")],
        vec![tput("c", "2")],
        Some(false),
    );
    assert_only(&s.finish(vec![]), "wrong txn branch");
}

#[test]
fn wrong_read_result() {
    let mut h = correct();
    let op = h
        .ops
        .iter_mut()
        .find(|op| matches!(op.req, Request::Range { .. }))
        .unwrap();
    let Outcome::Ok(Response::Range { kvs, .. }) = &mut op.outcome else {
        panic!()
    };
    kvs[0].version += 1;
    assert_only(&h, "wrong read result");
}

#[test]
fn unexplained_event() {
    let mut s = base();
    s.apply(&[W::Put("x", "ghost", 0)], ms(7));
    assert_only(&s.finish(vec![]), "unexplained event");
}

#[test]
fn unknown_write_applied_twice() {
    let mut s = base();
    s.put_unknown(7, "x", "1", true);
    s.apply(&[W::Put("x", "1", 0)], ms(8));
    assert_only(&s.finish(vec![]), "unexplained event");
}

#[test]
fn put_without_its_lease() {
    let mut s = base();
    s.ok(0, 7, 8, Request::LeaseGrant { id: 5, ttl: 10 });
    s.put(0, 9, 10, "x", "1", 5);
    let mut h = s.finish(vec![]);
    let last = h.watches[0].responses.last_mut().unwrap();
    last.events[0].kv.lease = 0;
    h.final_kvs.iter_mut().for_each(|kv| kv.lease = 0);
    assert_only(&h, "lease");
}

#[test]
fn narrow_watch_missing_a_revision() {
    let mut h = correct();
    // Stream 3 watches [a, e) from revision 5: its second response is revision 6.
    assert_eq!(h.watches[3].responses[2].revision, 6);
    h.watches[3].responses.remove(2);
    assert_only(&h, "watch gap");
}

#[test]
fn narrow_watch_reporting_a_key_outside_its_range() {
    let mut h = correct();
    let stranger = h.watches[0]
        .responses
        .iter()
        .find(|r| r.revision == 7)
        .unwrap()
        .clone();
    h.watches[3].responses.insert(3, stranger);
    assert_only(&h, "watch event mismatch");
}

#[test]
fn keep_alive_after_revoke() {
    let mut h = correct();
    h.ops.push(crate::history::Op {
        id: h.ops.len(),
        client: 9,
        member: 0,
        call: ms(100),
        ret: Some(ms(101)),
        req: Request::LeaseKeepAlive { id: 100 },
        outcome: Outcome::Ok(Response::LeaseKeepAlive {
            revision: 13,
            ttl: 5,
        }),
    });
    assert_only(&h, "lease");
}

#[test]
fn event_log_gap() {
    let mut s = base();
    s.put(0, 7, 8, "c", "1", 0);
    let mut h = s.finish(vec![]);
    // Revision 3 reached no watch stream.
    h.watches[0]
        .responses
        .retain(|r| r.revision != 3 || r.created);
    assert!(kinds(&h).contains("event log gap"), "{}", check(&h));
}

#[test]
fn streams_disagree() {
    let s = base();
    let mut w = s.watch_all(1, 2, 7);
    w.responses[1].events[0].kv.version = 9;
    let h = s.finish(vec![w]);
    assert!(kinds(&h).contains("watch event mismatch"), "{}", check(&h));
}

#[test]
fn history_serde_round_trip() {
    let h = correct();
    let json = serde_json::to_string(&h).unwrap();
    let back: History = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
}

/// A long history checks quickly: 100k puts over 100 keys and 100k reads.
#[test]
fn large_history_is_fast() {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let keys: Vec<&'static str> = (0..100).map(|i| leak(format!("k{i:02}"))).collect();
    let mut s = Sim::with_snapshots(false);
    let values: Vec<&'static str> = (0..100_000).map(|i| leak(format!("v{i}"))).collect();
    for (i, v) in values.iter().enumerate() {
        let t = 4 * i as u64;
        s.put(i % 3, t, t + 1, keys[i % 100], v, 0);
        s.range(
            i % 3,
            t + 2,
            t + 3,
            keys[(i * 7) % 100],
            "",
            0,
            0,
            i % 2 == 0,
        );
    }
    let h = s.finish(Vec::<WatchStream>::new());
    let started = std::time::Instant::now();
    let report = check(&h);
    let took = started.elapsed();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.ops, 200_000);
    assert!(took.as_secs() < 20, "took {took:?}");
    eprintln!("checked 200k ops in {took:?}");
}

#[test]
fn put_with_a_wrong_version() {
    let mut h = correct();
    // Revision 3 puts b for the first time: version 1.
    for w in &mut h.watches {
        for resp in &mut w.responses {
            for e in resp.events.iter_mut().filter(|e| e.kv.mod_revision == 3) {
                e.kv.version = 2;
            }
        }
    }
    let found = kinds(&h);
    assert!(found.contains("lost write"), "{}", check(&h));
    assert!(!found.contains("unexplained event"), "{}", check(&h));
}

#[test]
fn anomalies_are_capped_per_kind() {
    let mut s = base();
    for i in 0..30 {
        s.range(1, 10 + 2 * i, 11 + 2 * i, "a", "", 2, 0, false);
    }
    let report = check(&s.finish(vec![]));
    assert_eq!(report.anomalies.len(), 20);
    assert!(
        report.to_string().contains("... and 10 more stale read"),
        "{report}"
    );
}
