//! Store-level tests: revision numbering, Range/Txn semantics as etcd 3.4 answers them (the
//! expected values were checked against a real etcd), compaction, reopen, watch catch-up.

use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::response_op::Response;
use oxcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use oxcd_api::mvccpb::{event::EventType, Event, KeyValue};
use tempfile::TempDir;

use super::MvccStore;
use crate::error::EtcdError;

fn open() -> (TempDir, MvccStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = MvccStore::open(&dir.path().join("member/snap/db")).unwrap();
    (dir, s)
}

fn reopen(dir: &TempDir, s: MvccStore) -> MvccStore {
    drop(s);
    MvccStore::open(&dir.path().join("member/snap/db")).unwrap()
}

fn any_lease(_: i64) -> bool {
    true
}

fn no_lease(_: i64) -> bool {
    false
}

fn preq(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

fn put(s: &MvccStore, k: &str, v: &str) -> i64 {
    let mut b = s.write().unwrap();
    let r = b.put(&preq(k, v), &any_lease).unwrap();
    b.commit(true).unwrap();
    r.header.unwrap().revision
}

fn del(s: &MvccStore, k: &str, end: &str) -> (i64, i64) {
    let mut b = s.write().unwrap();
    let r = b
        .delete_range(&DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: false,
        })
        .unwrap();
    b.commit(true).unwrap();
    (r.deleted, r.header.unwrap().revision)
}

fn rreq(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

fn get(s: &MvccStore, k: &str) -> Option<KeyValue> {
    s.range(&rreq(k, "")).unwrap().kvs.pop()
}

fn kv(k: &str, v: &str, create: i64, m: i64, ver: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
        create_revision: create,
        mod_revision: m,
        version: ver,
        lease: 0,
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(preq(k, v))),
    }
}

fn op_get(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(rreq(k, end))),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: false,
        })),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: k.into(),
        target_union: Some(u),
        range_end: Vec::new(),
    }
}

fn txn(s: &MvccStore, t: &TxnRequest) -> Result<TxnResponse, EtcdError> {
    let mut b = s.write().unwrap();
    let r = b.txn(t, &any_lease)?;
    b.commit(true).unwrap();
    Ok(r)
}

fn hdr(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

#[test]
fn store_is_shareable() {
    fn check<T: Send + Sync>() {}
    check::<MvccStore>();
}

#[test]
fn empty_store_is_at_revision_one() {
    let (_d, s) = open();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(s.consistent_index(), 0);
    let r = s.range(&rreq("foo", "")).unwrap();
    assert_eq!(r.header, hdr(1));
    assert_eq!((r.count, r.more, r.kvs.len()), (0, false, 0));
    assert!(s.db_size() > 0);
    assert!(s.db_size_in_use() <= s.db_size());
}

#[test]
fn put_and_delete_revision_numbering() {
    let (_d, s) = open();
    assert_eq!(put(&s, "a", "1"), 2);
    assert_eq!(get(&s, "a"), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(put(&s, "a", "2"), 3);
    assert_eq!(get(&s, "a"), Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(del(&s, "a", ""), (1, 4));
    assert_eq!(get(&s, "a"), None);
    // Deleting nothing does not create a revision.
    assert_eq!(del(&s, "a", ""), (0, 4));
    assert_eq!(s.current_revision(), 4);
    // Recreated: new create revision, version restarts.
    assert_eq!(put(&s, "a", "3"), 5);
    assert_eq!(get(&s, "a"), Some(kv("a", "3", 5, 5, 1)));
    // History stays readable.
    let mut r = rreq("a", "");
    r.revision = 3;
    assert_eq!(s.range(&r).unwrap().kvs, vec![kv("a", "2", 2, 3, 2)]);
    r.revision = 4;
    assert!(s.range(&r).unwrap().kvs.is_empty());
    // Header carries the current revision, not the one read at.
    assert_eq!(s.range(&r).unwrap().header, hdr(5));
}

#[test]
fn put_options() {
    let (_d, s) = open();
    let mut b = s.write().unwrap();
    // ignore_value / ignore_lease need an existing key.
    let mut p = preq("k", "");
    p.ignore_value = true;
    assert_eq!(b.put(&p, &any_lease), Err(EtcdError::KeyNotFound));
    p.ignore_value = false;
    p.ignore_lease = true;
    assert_eq!(b.put(&p, &any_lease), Err(EtcdError::KeyNotFound));
    // Lease checked first.
    let mut p = preq("k", "v");
    p.lease = 7;
    p.ignore_value = true;
    assert_eq!(b.put(&p, &no_lease), Err(EtcdError::LeaseNotFound));
    assert_eq!(b.revision(), 1);
    p.ignore_value = false;
    let r = b.put(&p, &any_lease).unwrap();
    assert_eq!((r.header, r.prev_kv), (hdr(2), None));
    // ignore_value keeps the value, takes the new lease; prev_kv returned.
    let mut p = preq("k", "");
    p.ignore_value = true;
    p.lease = 8;
    p.prev_kv = true;
    let r = b.put(&p, &any_lease).unwrap();
    let mut prev = kv("k", "v", 2, 2, 1);
    prev.lease = 7;
    assert_eq!(r.prev_kv, Some(prev));
    // ignore_lease keeps the lease.
    let mut p = preq("k", "w");
    p.ignore_lease = true;
    b.put(&p, &any_lease).unwrap();
    let events = b.commit(true).unwrap();
    let mut want = kv("k", "w", 2, 4, 3);
    want.lease = 8;
    assert_eq!(get(&s, "k"), Some(want.clone()));
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].kv, Some(want));
    assert_eq!(events[1].kv.as_ref().unwrap().value, b"v");
}

fn abc(s: &MvccStore) {
    // a@2 b@3 ba@4 c@5 d@6, then a updated @7, ba deleted @8.
    for k in ["a", "b", "ba", "c", "d"] {
        put(s, k, &format!("v{k}"));
    }
    put(s, "a", "z");
    del(s, "ba", "");
}

#[test]
fn range_end_semantics() {
    let (_d, s) = open();
    abc(&s);
    let r = |k: &str, e: &str| keys(&s.range(&rreq(k, e)).unwrap());
    assert_eq!(r("b", ""), ["b"]);
    assert_eq!(r("ba", ""), Vec::<String>::new());
    assert_eq!(r("b", "c"), ["b"]);
    assert_eq!(r("b", "\0"), ["b", "c", "d"]);
    assert_eq!(r("\0", "\0"), ["a", "b", "c", "d"]);
    assert_eq!(r("a", "a"), Vec::<String>::new());
    assert_eq!(r("d", "a"), Vec::<String>::new());
    // At revision 6 "ba" was alive and "a" had its first value.
    let mut q = rreq("\0", "\0");
    q.revision = 6;
    let resp = s.range(&q).unwrap();
    assert_eq!(keys(&resp), ["a", "b", "ba", "c", "d"]);
    assert_eq!(resp.kvs[0].value, b"va");
    assert_eq!(resp.header, hdr(8));
}

#[test]
fn range_limit_count_more() {
    let (_d, s) = open();
    abc(&s);
    let mut q = rreq("\0", "\0");
    q.limit = 1;
    let r = s.range(&q).unwrap();
    // etcd: count is everything in range, more = true.
    assert_eq!(
        (keys(&r), r.count, r.more),
        (vec!["a".to_string()], 4, true)
    );
    q.limit = 4;
    let r = s.range(&q).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (4, 4, false));
    q.limit = 0;
    q.count_only = true;
    let r = s.range(&q).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 4, false));
    q.count_only = false;
    q.keys_only = true;
    let r = s.range(&q).unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty() && kv.version > 0));
    assert_eq!(r.count, 4);
}

#[test]
fn range_sort_and_filters() {
    let (_d, s) = open();
    abc(&s); // a: create 2 mod 7 ver 2 "z"; b: 3/3/1 "vb"; c: 5/5/1 "vc"; d: 6/6/1 "vd"
    let q = |target: SortTarget, order: SortOrder, limit: i64| {
        let mut q = rreq("\0", "\0");
        q.sort_target = target as i32;
        q.sort_order = order as i32;
        q.limit = limit;
        let r = s.range(&q).unwrap();
        (keys(&r), r.more)
    };
    use SortOrder::*;
    use SortTarget::*;
    assert_eq!(q(Key, Descend, 0).0, ["d", "c", "b", "a"]);
    assert_eq!(q(Key, Descend, 2), (vec!["d".into(), "c".into()], true));
    assert_eq!(q(Key, Ascend, 2), (vec!["a".into(), "b".into()], true));
    assert_eq!(q(Mod, Descend, 0).0, ["a", "d", "c", "b"]);
    assert_eq!(q(Mod, Ascend, 2), (vec!["b".into(), "c".into()], true));
    assert_eq!(q(Create, Descend, 1).0, ["d"]);
    // Version ties keep key order.
    assert_eq!(q(Version, Descend, 0).0, ["a", "b", "c", "d"]);
    assert_eq!(q(Version, Ascend, 0).0, ["b", "c", "d", "a"]);
    assert_eq!(q(Value, Descend, 0).0, ["a", "d", "c", "b"]);
    assert_eq!(
        q(Value, Ascend, 3),
        (vec!["b".into(), "c".into(), "d".into()], true)
    );
    // Target != KEY with order NONE sorts ascending, but (etcd quirk) only the first limit+1
    // keys of the range: a, b -> by mod: b(3), a(7) -> b.
    assert_eq!(q(Mod, None, 1), (vec!["b".into()], true));
    assert_eq!(q(Mod, None, 0).0, ["b", "c", "d", "a"]);
    // Keys-only still sorts by value.
    let mut kq = rreq("\0", "\0");
    kq.sort_target = Value as i32;
    kq.sort_order = Ascend as i32;
    kq.keys_only = true;
    let r = s.range(&kq).unwrap();
    assert_eq!(keys(&r), ["b", "c", "d", "a"]);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));

    // Filters prune but do not change count.
    let mut f = rreq("\0", "\0");
    f.min_mod_revision = 4;
    let r = s.range(&f).unwrap();
    assert_eq!(
        (keys(&r), r.count),
        (vec!["a".into(), "c".into(), "d".into()], 4)
    );
    f.max_mod_revision = 6;
    assert_eq!(keys(&s.range(&f).unwrap()), ["c", "d"]);
    let mut f = rreq("\0", "\0");
    f.min_create_revision = 3;
    f.max_create_revision = 5;
    f.limit = 1;
    let r = s.range(&f).unwrap();
    assert_eq!((keys(&r), r.more, r.count), (vec!["b".into()], true, 4));
}

#[test]
fn range_revision_bounds() {
    let (_d, s) = open();
    abc(&s);
    let mut q = rreq("a", "");
    q.revision = 9;
    assert_eq!(s.range(&q), Err(EtcdError::FutureRev));
    q.revision = 8;
    assert!(s.range(&q).is_ok());
    let mut b = s.write().unwrap();
    b.compact(5).unwrap();
    b.commit(true).unwrap();
    assert_eq!(s.compact_revision(), 5);
    q.revision = 4;
    assert_eq!(s.range(&q), Err(EtcdError::Compacted));
    // Exactly at the compacted revision is readable, and complete.
    let mut all = rreq("\0", "\0");
    all.revision = 5;
    let r = s.range(&all).unwrap();
    assert_eq!(keys(&r), ["a", "b", "ba", "c"]);
    assert_eq!(r.kvs[0].value, b"va");
    all.revision = 6;
    assert_eq!(keys(&s.range(&all).unwrap()), ["a", "b", "ba", "c", "d"]);
}

#[test]
fn compaction_rules_and_rows() {
    let (d, s) = open();
    abc(&s);
    put(&s, "e", "1"); // 9
    del(&s, "e", ""); // 10
    let mut b = s.write().unwrap();
    assert_eq!(b.compact(11), Err(EtcdError::FutureRev));
    b.compact(10).unwrap();
    assert_eq!(b.compact(10), Err(EtcdError::Compacted));
    assert_eq!(b.compact(3), Err(EtcdError::Compacted));
    b.commit(true).unwrap();
    // Rows left: newest live revision per key: a@7, b@3, c@5, d@6, and e's tombstone at exactly
    // the compacted revision, so that a watch from 10 still gets that delete (etcd 3.4 loses it).
    let at_compaction = s.events_between(b"\0", b"\0", 10, 10, 0).unwrap();
    assert_eq!(at_compaction.len(), 1);
    assert_eq!(at_compaction[0].kv.as_ref().unwrap().key, b"e");
    assert_eq!(at_compaction[0].kv.as_ref().unwrap().mod_revision, 10);
    let all = s.events_between(b"\0", b"\0", 10, 100, 0);
    assert_eq!(all, Ok(at_compaction));
    assert_eq!(
        s.events_between(b"\0", b"\0", 9, 100, 0),
        Err(EtcdError::Compacted)
    );
    assert_eq!(
        keys(&s.range(&rreq("\0", "\0")).unwrap()),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        s.index_len(),
        5,
        "e stays indexed (deleted) until the next compaction"
    );
    // Reopen: compacted state and revision survive, e's kept tombstone included.
    let s = reopen(&d, s);
    assert_eq!((s.current_revision(), s.compact_revision()), (10, 10));
    assert_eq!(s.index_len(), 5);
    assert_eq!(s.events_between(b"\0", b"\0", 10, 10, 0).unwrap().len(), 1);
    assert_eq!(get(&s, "e"), None);
    assert_eq!(get(&s, "a"), Some(kv("a", "z", 2, 7, 2)));
    assert_eq!(put(&s, "a", "y"), 11);
    assert_eq!(get(&s, "a"), Some(kv("a", "y", 2, 11, 3)));
}

#[test]
fn compaction_of_the_batch_own_writes() {
    let (_d, s) = open();
    put(&s, "a", "1");
    let mut b = s.write().unwrap();
    b.put(&preq("a", "2"), &any_lease).unwrap(); // 3
    b.put(&preq("b", "1"), &any_lease).unwrap(); // 4
    b.compact(4).unwrap();
    // Readers are never shown a revision the index lost.
    assert_eq!(s.current_revision(), 4);
    assert_eq!(get(&s, "a"), Some(kv("a", "2", 2, 3, 2)));
    let events = b.commit(false).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!((s.current_revision(), s.compact_revision()), (4, 4));
}

#[test]
fn delete_range_prev_kvs_and_delete_keys() {
    let (_d, s) = open();
    abc(&s);
    let mut b = s.write().unwrap();
    let r = b
        .delete_range(&DeleteRangeRequest {
            key: "b".into(),
            range_end: "d".into(),
            prev_kv: true,
        })
        .unwrap();
    assert_eq!(r.deleted, 2);
    assert_eq!(r.header, hdr(9));
    assert_eq!(
        r.prev_kvs,
        vec![kv("b", "vb", 3, 3, 1), kv("c", "vc", 5, 5, 1)]
    );
    // Lease revoke: one revision for all, missing keys skipped.
    let rev = b
        .delete_keys(&[b"a".to_vec(), b"nope".to_vec(), b"d".to_vec()])
        .unwrap();
    assert_eq!(rev, 10);
    assert_eq!(b.delete_keys(&[b"nope".to_vec()]).unwrap(), 10);
    let events = b.commit(true).unwrap();
    let del = |k: &str, m: i64| Event {
        r#type: EventType::Delete as i32,
        kv: Some(KeyValue {
            key: k.into(),
            mod_revision: m,
            ..Default::default()
        }),
        prev_kv: None,
    };
    assert_eq!(
        events,
        vec![del("b", 9), del("c", 9), del("a", 10), del("d", 10)]
    );
    assert_eq!(s.range(&rreq("\0", "\0")).unwrap().count, 0);
}

#[test]
fn uncommitted_writes_are_invisible_and_dropped_batches_roll_back() {
    let (_d, s) = open();
    put(&s, "a", "1");
    {
        let mut b = s.write().unwrap();
        b.put(&preq("a", "2"), &any_lease).unwrap();
        b.put(&preq("new", "x"), &any_lease).unwrap();
        b.delete_range(&DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(b.revision(), 5);
        assert_eq!(get(&s, "a"), Some(kv("a", "1", 2, 2, 1)));
        assert_eq!(get(&s, "new"), None);
        assert_eq!(s.current_revision(), 2);
        // The batch sees its own writes.
        assert_eq!(b.range(&rreq("a", "")).unwrap().kvs, vec![]);
        assert_eq!(b.range(&rreq("new", "")).unwrap().count, 1);
        assert_eq!(b.range(&rreq("new", "")).unwrap().header, hdr(5));
    }
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.range(&rreq("\0", "\0")).unwrap().count, 1);
    assert_eq!(put(&s, "a", "3"), 3);
    assert_eq!(get(&s, "a"), Some(kv("a", "3", 2, 3, 2)));
}

#[test]
fn txn_revisions_and_responses() {
    let (_d, s) = open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "2"); // 3
                       // Like `etcdctl txn`: mod(a) > 0 -> put x 1; get a; del nothere; del b.
    let t = TxnRequest {
        compare: vec![cmp(
            "a",
            CompareTarget::Mod,
            CompareResult::Greater,
            TargetUnion::ModRevision(0),
        )],
        success: vec![
            op_put("x", "1"),
            op_get("a", ""),
            op_del("nothere", ""),
            op_del("b", ""),
        ],
        failure: vec![],
    };
    let r = txn(&s, &t).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header, hdr(4));
    let rs: Vec<_> = r
        .responses
        .into_iter()
        .map(|o| o.response.unwrap())
        .collect();
    let Response::ResponsePut(p) = &rs[0] else {
        panic!()
    };
    assert_eq!(p.header, hdr(4));
    let Response::ResponseRange(g) = &rs[1] else {
        panic!()
    };
    assert_eq!(g.header, hdr(4));
    assert_eq!(g.kvs, vec![kv("a", "1", 2, 2, 1)]);
    let Response::ResponseDeleteRange(d1) = &rs[2] else {
        panic!()
    };
    assert_eq!((d1.header, d1.deleted), (hdr(4), 0));
    let Response::ResponseDeleteRange(d2) = &rs[3] else {
        panic!()
    };
    assert_eq!((d2.header, d2.deleted), (hdr(4), 1));
    // One main revision, sub revisions 0 and 1.
    let ev = s.events_between(b"\0", b"\0", 4, 4, 0).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].kv.as_ref().unwrap().key, b"x");
    assert_eq!(ev[1].r#type, EventType::Delete as i32);

    // A read-only txn does not bump the revision; its header is the current one.
    let ro = TxnRequest {
        compare: vec![],
        success: vec![op_get("a", "")],
        failure: vec![],
    };
    let r = txn(&s, &ro).unwrap();
    assert_eq!(r.header, hdr(4));
    assert_eq!(s.current_revision(), 4);
    let r2 = s.read_txn(&ro).unwrap();
    assert_eq!(r, r2);
    assert!(super::is_txn_read_only(&ro));
    assert!(!super::is_txn_read_only(&t));
    assert!(s.read_txn(&t).is_err());

    // A txn whose first op is a range sees the pre-txn revision; after a write, the new one.
    let t = TxnRequest {
        compare: vec![],
        success: vec![op_get("a", ""), op_put("a", "2"), op_get("a", "")],
        failure: vec![],
    };
    let r = txn(&s, &t).unwrap();
    let Some(Response::ResponseRange(g0)) = &r.responses[0].response else {
        panic!()
    };
    let Some(Response::ResponseRange(g2)) = &r.responses[2].response else {
        panic!()
    };
    assert_eq!(
        (g0.header, g0.kvs[0].value.clone()),
        (hdr(4), b"1".to_vec())
    );
    assert_eq!(
        (g2.header, g2.kvs[0].clone()),
        (hdr(5), kv("a", "2", 2, 5, 2))
    );
}

#[test]
fn nested_txn_paths_and_headers() {
    let (_d, s) = open();
    put(&s, "a", "1"); // 2
    let absent = |k: &str| {
        cmp(
            k,
            CompareTarget::Create,
            CompareResult::Equal,
            TargetUnion::CreateRevision(0),
        )
    };
    // Outer: a absent? (false) -> failure: nested txn (b absent? true) -> put b; put c.
    // Nested compares are evaluated before the txn writes: "c absent" holds even though the
    // outer failure branch puts c first.
    let inner = TxnRequest {
        compare: vec![absent("b"), absent("c")],
        success: vec![op_put("b", "1")],
        failure: vec![op_put("nope", "1")],
    };
    let t = TxnRequest {
        compare: vec![absent("a")],
        success: vec![op_put("nope", "1")],
        failure: vec![
            op_put("c", "1"),
            RequestOp {
                request: Some(Request::RequestTxn(inner)),
            },
        ],
    };
    let r = txn(&s, &t).unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.header, hdr(3));
    let Some(Response::ResponseTxn(n)) = &r.responses[1].response else {
        panic!()
    };
    assert!(n.succeeded);
    assert_eq!(n.header, Some(ResponseHeader::default()));
    let Some(Response::ResponsePut(p)) = &n.responses[0].response else {
        panic!()
    };
    assert_eq!(p.header, hdr(3));
    assert_eq!(get(&s, "b"), Some(kv("b", "1", 3, 3, 1)));
    assert_eq!(get(&s, "c"), Some(kv("c", "1", 3, 3, 1)));
    assert_eq!(get(&s, "nope"), None);
    let ev = s.events_between(b"\0", b"\0", 3, 3, 0).unwrap();
    let ks: Vec<_> = ev
        .iter()
        .map(|e| e.kv.as_ref().unwrap().key.clone())
        .collect();
    assert_eq!(ks, [b"c".to_vec(), b"b".to_vec()]);
}

#[test]
fn failing_txn_changes_nothing() {
    let (_d, s) = open();
    put(&s, "a", "1"); // 2
    let mut leased = preq("y", "1");
    leased.lease = 5;
    let mut ignore = preq("missing", "");
    ignore.ignore_value = true;
    let mut future = rreq("a", "");
    future.revision = 3;
    // etcd's txn check: revision < compactMainRev, which is -1 when never compacted.
    let mut compacted = rreq("a", "");
    compacted.revision = -2;
    let nested = |op: RequestOp| TxnRequest {
        compare: vec![],
        success: vec![
            op_put("x", "1"),
            RequestOp {
                request: Some(Request::RequestTxn(TxnRequest {
                    compare: vec![],
                    success: vec![op_del("a", ""), op],
                    failure: vec![],
                })),
            },
        ],
        failure: vec![],
    };
    let cases = [
        (
            RequestOp {
                request: Some(Request::RequestPut(leased)),
            },
            EtcdError::LeaseNotFound,
        ),
        (
            RequestOp {
                request: Some(Request::RequestPut(ignore)),
            },
            EtcdError::KeyNotFound,
        ),
        (
            RequestOp {
                request: Some(Request::RequestRange(future)),
            },
            EtcdError::FutureRev,
        ),
        (
            RequestOp {
                request: Some(Request::RequestRange(compacted)),
            },
            EtcdError::Compacted,
        ),
    ];
    for (op, want) in cases {
        let mut b = s.write().unwrap();
        assert_eq!(b.txn(&nested(op), &no_lease), Err(want));
        assert_eq!(b.revision(), 2);
        assert!(b.events().is_empty());
        assert!(b.commit(true).unwrap().is_empty());
        assert_eq!(s.current_revision(), 2);
        assert_eq!(get(&s, "x"), None);
        assert_eq!(get(&s, "a"), Some(kv("a", "1", 2, 2, 1)));
    }
    // A put's check runs before a range's check, as in etcd.
    let mut leased = preq("y", "1");
    leased.lease = 5;
    let mut future = rreq("a", "");
    future.revision = 30;
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp {
                request: Some(Request::RequestRange(future)),
            },
            RequestOp {
                request: Some(Request::RequestPut(leased)),
            },
        ],
        failure: vec![],
    };
    let mut b = s.write().unwrap();
    assert_eq!(b.txn(&t, &no_lease), Err(EtcdError::LeaseNotFound));
}

#[test]
fn every_compare_target_and_result() {
    let (_d, s) = open();
    put(&s, "k", "m"); // 2
    put(&s, "k", "m"); // 3: create 2, mod 3, version 2
    let mut lp = preq("l", "v");
    lp.lease = 9;
    let mut b = s.write().unwrap();
    b.put(&lp, &any_lease).unwrap(); // 4
    b.commit(true).unwrap();

    use CompareResult::*;
    use CompareTarget as T;
    let check = |c: Compare| {
        txn(
            &s,
            &TxnRequest {
                compare: vec![c],
                success: vec![],
                failure: vec![],
            },
        )
        .unwrap()
        .succeeded
    };
    let cases: Vec<(&str, T, TargetUnion, [bool; 4])> = vec![
        // [EQUAL, GREATER, LESS, NOT_EQUAL] of key value vs operand.
        (
            "k",
            T::Version,
            TargetUnion::Version(2),
            [true, false, false, false],
        ),
        (
            "k",
            T::Version,
            TargetUnion::Version(1),
            [false, true, false, true],
        ),
        (
            "k",
            T::Create,
            TargetUnion::CreateRevision(3),
            [false, false, true, true],
        ),
        (
            "k",
            T::Mod,
            TargetUnion::ModRevision(3),
            [true, false, false, false],
        ),
        (
            "k",
            T::Value,
            TargetUnion::Value(b"l".to_vec()),
            [false, true, false, true],
        ),
        (
            "k",
            T::Value,
            TargetUnion::Value(b"n".to_vec()),
            [false, false, true, true],
        ),
        (
            "k",
            T::Value,
            TargetUnion::Value(b"m".to_vec()),
            [true, false, false, false],
        ),
        (
            "l",
            T::Lease,
            TargetUnion::Lease(9),
            [true, false, false, false],
        ),
        (
            "k",
            T::Lease,
            TargetUnion::Lease(0),
            [true, false, false, false],
        ),
        // Absent key: numbers compare as 0, value compares always fail.
        (
            "zz",
            T::Create,
            TargetUnion::CreateRevision(0),
            [true, false, false, false],
        ),
        (
            "zz",
            T::Version,
            TargetUnion::Version(-1),
            [false, true, false, true],
        ),
        (
            "zz",
            T::Mod,
            TargetUnion::ModRevision(1),
            [false, false, true, true],
        ),
        (
            "zz",
            T::Lease,
            TargetUnion::Lease(0),
            [true, false, false, false],
        ),
        (
            "zz",
            T::Value,
            TargetUnion::Value(vec![]),
            [false, false, false, false],
        ),
        // Mismatched union: the operand reads as 0.
        (
            "k",
            T::Version,
            TargetUnion::ModRevision(2),
            [false, true, false, true],
        ),
    ];
    for (k, target, u, want) in cases {
        for (res, w) in [Equal, Greater, Less, NotEqual].into_iter().zip(want) {
            assert_eq!(
                check(cmp(k, target, res, u.clone())),
                w,
                "{k} {target:?} {res:?} {u:?}"
            );
        }
    }

    // Ranges: every live key must satisfy the compare.
    let ranged = |end: &str, v: i64| {
        let mut c = cmp("k", T::Version, Greater, TargetUnion::Version(v));
        c.range_end = end.into();
        check(c)
    };
    assert!(ranged("m", 0)); // k (ver 2), l (ver 1)
    assert!(!ranged("m", 1)); // l has version 1
    assert!(ranged("\0", 0));
    let mut c = cmp("x", T::Create, Equal, TargetUnion::CreateRevision(0));
    c.range_end = "y".into();
    assert!(check(c), "an empty range compares as absent");
    // Several compares: all must hold.
    let t = TxnRequest {
        compare: vec![
            cmp("k", T::Value, Equal, TargetUnion::Value(b"m".to_vec())),
            cmp("l", T::Lease, Equal, TargetUnion::Lease(8)),
        ],
        success: vec![],
        failure: vec![],
    };
    assert!(!txn(&s, &t).unwrap().succeeded);
}

#[test]
fn reopen_rebuilds_everything() {
    let (d, s) = open();
    abc(&s);
    let mut b = s.write().unwrap();
    b.put_lease(7, 60).unwrap();
    b.put_lease(8, 30).unwrap();
    b.delete_lease(8).unwrap();
    let mut p = preq("leased", "v");
    p.lease = 7;
    b.put(&p, &any_lease).unwrap(); // 9
    b.meta_put("cluster", b"abc").unwrap();
    b.set_consistent_index(42, 3);
    b.commit(true).unwrap();
    assert_eq!((s.consistent_index(), s.consistent_term()), (42, 3));
    let before = s.range(&rreq("\0", "\0")).unwrap();
    let hash = s.hash_kv(0).unwrap();

    let s = reopen(&d, s);
    assert_eq!(s.current_revision(), 9);
    assert_eq!((s.consistent_index(), s.consistent_term()), (42, 3));
    assert_eq!(s.range(&rreq("\0", "\0")).unwrap(), before);
    assert_eq!(s.leases().unwrap(), vec![(7, 60)]);
    assert_eq!(s.keys_with_lease().unwrap(), vec![(b"leased".to_vec(), 7)]);
    assert_eq!(s.meta_get("cluster").unwrap(), Some(b"abc".to_vec()));
    assert_eq!(s.meta_get("other").unwrap(), None);
    assert_eq!(s.hash_kv(0).unwrap(), hash);
    // Old revisions are still there, versions continue.
    let mut q = rreq("a", "");
    q.revision = 2;
    assert_eq!(s.range(&q).unwrap().kvs, vec![kv("a", "va", 2, 2, 1)]);
    assert_eq!(put(&s, "ba", "again"), 10);
    assert_eq!(get(&s, "ba"), Some(kv("ba", "again", 10, 10, 1)));
}

#[test]
fn events_between_and_kv_at() {
    let (_d, s) = open();
    abc(&s);
    let ev = s.events_between(b"\0", b"\0", 1, 100, 0).unwrap();
    assert_eq!(ev.len(), 7);
    assert!(ev.windows(2).all(|w| {
        w[0].kv.as_ref().unwrap().mod_revision < w[1].kv.as_ref().unwrap().mod_revision
    }));
    let last = ev.last().unwrap();
    assert_eq!(last.r#type, EventType::Delete as i32);
    assert_eq!(
        last.kv,
        Some(KeyValue {
            key: b"ba".to_vec(),
            mod_revision: 8,
            ..Default::default()
        })
    );
    assert_eq!(ev[5].kv, Some(kv("a", "z", 2, 7, 2)));
    // Key filtering and limits count whole revisions.
    let ev = s.events_between(b"b", b"c", 1, 100, 0).unwrap();
    assert_eq!(ev.len(), 3);
    let ev = s.events_between(b"a", b"", 3, 100, 0).unwrap();
    assert_eq!(ev.len(), 1);
    let ev = s.events_between(b"\0", b"\0", 3, 100, 2).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].kv.as_ref().unwrap().mod_revision, 4);
    // Clamped to the current revision.
    assert_eq!(s.events_between(b"\0", b"\0", 9, 100, 0).unwrap(), vec![]);
    // One txn revision with several events is never split.
    let mut b = s.write().unwrap();
    b.delete_keys(&[b"a".to_vec(), b"b".to_vec()]).unwrap(); // 9
    b.commit(true).unwrap();
    let ev = s.events_between(b"\0", b"\0", 8, 100, 2).unwrap();
    assert_eq!(ev.len(), 3);
    let ev = s.events_between(b"\0", b"\0", 9, 100, 1).unwrap();
    assert_eq!(ev.len(), 2);

    assert_eq!(s.kv_at(b"a", 6).unwrap(), Some(kv("a", "va", 2, 2, 1)));
    assert_eq!(s.kv_at(b"a", 8).unwrap(), Some(kv("a", "z", 2, 7, 2)));
    assert_eq!(s.kv_at(b"a", 9).unwrap(), None);
    assert_eq!(s.kv_at(b"ba", 7).unwrap().unwrap().value, b"vba");
    assert_eq!(s.kv_at(b"zz", 7).unwrap(), None);
    let mut b = s.write().unwrap();
    b.compact(7).unwrap();
    b.commit(true).unwrap();
    assert_eq!(s.kv_at(b"a", 6).unwrap(), None);
    assert_eq!(s.kv_at(b"a", 7).unwrap(), Some(kv("a", "z", 2, 7, 2)));
    assert_eq!(
        s.events_between(b"\0", b"\0", 6, 100, 0),
        Err(EtcdError::Compacted)
    );
    // Starting at the compacted revision is allowed, as in etcd's watch.
    assert_eq!(s.events_between(b"\0", b"\0", 7, 100, 0).unwrap().len(), 4);
}

#[test]
fn hash_kv_is_deterministic() {
    let (_d1, s1) = open();
    let (_d2, s2) = open();
    abc(&s1);
    abc(&s2);
    // The values etcd 3.4.23 reports after the same writes (`etcdctl endpoint hashkv`), with
    // compact_revision -1 for "never compacted".
    assert_eq!(s1.hash_kv(0).unwrap(), (1850303943, -1));
    assert_eq!(s1.hash_kv(5).unwrap(), (408197949, -1));
    assert_eq!(s1.hash_kv(0).unwrap(), s2.hash_kv(0).unwrap());
    assert_eq!(s1.hash_kv(5).unwrap(), s2.hash_kv(5).unwrap());
    assert_ne!(s1.hash_kv(5).unwrap(), s1.hash_kv(6).unwrap());
    // etcd after `compact 6` on the same history.
    let mut b = s2.write().unwrap();
    b.compact(6).unwrap();
    b.commit(true).unwrap();
    assert_eq!(s2.hash_kv(0).unwrap(), (37542900, 6));
    assert_eq!(s2.hash_kv(7).unwrap(), (2907582701, 6));
    assert_eq!(s2.hash_kv(6), Err(EtcdError::Compacted));
    let (_d2, s2) = open();
    abc(&s2);
    assert_eq!(s1.hash_kv(9), Err(EtcdError::FutureRev));
    put(&s1, "a", "1");
    assert_ne!(s1.hash_kv(0).unwrap(), s2.hash_kv(0).unwrap());
    for s in [&s1, &s2] {
        let mut b = s.write().unwrap();
        b.compact(6).unwrap();
        b.commit(true).unwrap();
    }
    assert_eq!(s1.hash_kv(8).unwrap(), s2.hash_kv(8).unwrap());
    assert_eq!(s1.hash_kv(8).unwrap().1, 6);
    assert_eq!(s1.hash_kv(6), Err(EtcdError::Compacted));
}

#[test]
fn concurrent_readers_see_committed_states_only() {
    use std::sync::Arc;
    let (_d, s) = open();
    let s = Arc::new(s);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Each batch writes x and y to the same value: a reader must see them equal.
                    let r = s.range(&rreq("x", "z")).unwrap();
                    if r.kvs.len() == 2 {
                        assert_eq!(r.kvs[0].value, r.kvs[1].value);
                    }
                    match s.range(&RangeRequest {
                        revision: r.header.unwrap().revision.max(2) - 1,
                        ..rreq("x", "z")
                    }) {
                        Ok(_) | Err(EtcdError::Compacted) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for i in 0..200 {
        let mut b = s.write().unwrap();
        let v = i.to_string();
        b.put(&preq("x", &v), &any_lease).unwrap();
        b.put(&preq("y", &v), &any_lease).unwrap();
        if i % 20 == 19 {
            let rev = b.revision();
            b.compact(rev - 3).unwrap();
        }
        b.commit(false).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn large_ranges_read_rows_in_any_layout() {
    let (_d, s) = open();
    let mut b = s.write().unwrap();
    for i in 0..100 {
        b.put(&preq(&format!("k{i:03}"), "old"), &any_lease)
            .unwrap(); // 2..=101
    }
    // Rewrite half the keys in reverse key order: row order no longer follows key order.
    for i in (0..100).rev().step_by(2) {
        b.put(&preq(&format!("k{i:03}"), &format!("new{i}")), &any_lease)
            .unwrap();
    }
    b.commit(true).unwrap();
    let check = |s: &MvccStore| {
        let r = s.range(&rreq("k", "l")).unwrap();
        assert_eq!(r.count, 100);
        for (i, kv) in r.kvs.iter().enumerate() {
            assert_eq!(kv.key, format!("k{i:03}").into_bytes());
            let want = if i % 2 == 1 {
                format!("new{i}")
            } else {
                "old".to_string()
            };
            assert_eq!(kv.value, want.into_bytes());
        }
    };
    check(&s); // dense: revisions 2..=151 for 100 rows
    let mut b = s.write().unwrap();
    for _ in 0..1000 {
        b.put(&preq("other", "x"), &any_lease).unwrap();
    }
    b.put(&preq("k000", "old"), &any_lease).unwrap(); // 1152: now sparse
    b.commit(true).unwrap();
    check(&s);
    let mut q = rreq("k", "l");
    q.keys_only = true;
    q.sort_order = SortOrder::Descend as i32;
    let r = s.range(&q).unwrap();
    assert_eq!(r.kvs.len(), 100);
    assert_eq!(r.kvs[0].key, b"k099");
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn compaction_bookkeeping_like_etcd() {
    let (d, s) = open();
    // Fresh etcd 3.4: hash of the empty key bucket, compact_revision -1.
    assert_eq!(s.hash_kv(0).unwrap(), (1084519789, -1));
    // etcd accepts compacting at 0 once; then compact_revision is 0, no longer -1.
    let mut b = s.write().unwrap();
    b.compact(0).unwrap();
    assert_eq!(b.compact(0), Err(EtcdError::Compacted));
    b.commit(true).unwrap();
    assert_eq!(s.hash_kv(0).unwrap(), (1084519789, 0));
    let s = reopen(&d, s);
    assert_eq!(s.hash_kv(0).unwrap(), (1084519789, 0));
    assert_eq!(s.compact_revision(), 0);
    let mut b = s.write().unwrap();
    assert_eq!(b.compact(0), Err(EtcdError::Compacted));
    assert_eq!(b.compact(2), Err(EtcdError::FutureRev));
    b.compact(1).unwrap();
    b.commit(true).unwrap();
    assert_eq!(s.hash_kv(0).unwrap(), (1084519789, 1));
    assert_eq!(s.compact_revision(), 1);
}
