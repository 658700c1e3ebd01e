use std::path::{Path, PathBuf};

use oxcd_api::authpb::{permission::Type, Permission, Role, User, UserAddOptions};
use oxcd_api::etcdserverpb::{
    AlarmMember, AlarmResponse, DeleteRangeRequest, PutRequest, RangeRequest,
};
use prost::Message;

use super::super::bbolt::{Db, Node, Tree};
use super::*;
use crate::alarm::META_ALARMS;
use crate::auth::store::{State, StoredAuth, META_AUTH};
use crate::membership::{ClusterInfo, Member, META_KEY};
use crate::mvcc::MvccStore;

fn auth() -> StoredAuth {
    StoredAuth {
        enabled: true,
        revision: 9,
        users: vec![User {
            name: b"root".to_vec(),
            password: b"$2a$04$abcdefghijklmnopqrstuu".to_vec(),
            roles: vec!["root".into()],
            options: Some(UserAddOptions { no_password: false }),
        }],
        roles: vec![
            Role {
                name: b"r1".to_vec(),
                key_permission: vec![Permission {
                    perm_type: Type::Readwrite as i32,
                    key: b"foo".to_vec(),
                    range_end: b"fop".to_vec(),
                }],
            },
            Role {
                name: b"root".to_vec(),
                key_permission: vec![],
            },
        ],
    }
}

/// An oxcd backend with history, a deleted key, a compaction, a lease, auth, an alarm and a
/// membership; returns its path and the store's answers to compare against.
fn backend(dir: &Path) -> PathBuf {
    let path = dir.join("src/db");
    let s = MvccStore::open(&path).unwrap();
    // One batch, one revision per request.
    let mut b = s.write().unwrap();
    let mut rows: Vec<(String, String, i64)> = (0..200)
        .map(|i| (format!("k{:03}", i % 50), "v".repeat(i), 0))
        .collect();
    rows.push(("big".into(), "x".repeat(10_000), 0));
    rows.push(("leased".into(), "l".into(), 7));
    for (key, value, lease) in rows {
        let req = PutRequest {
            key: key.into_bytes(),
            value: value.into_bytes(),
            lease,
            ..Default::default()
        };
        b.put(&req, &|_| true).unwrap();
    }
    b.put_lease(7, 600).unwrap();
    b.delete_range(&DeleteRangeRequest {
        key: b"k001".to_vec(),
        ..Default::default()
    })
    .unwrap();
    b.compact(100).unwrap();
    b.meta_put(META_AUTH, &auth().encode_to_vec()).unwrap();
    let alarms = AlarmResponse {
        alarms: vec![AlarmMember {
            member_id: 5,
            alarm: 1,
        }],
        ..Default::default()
    };
    b.meta_put(META_ALARMS, &alarms.encode_to_vec()).unwrap();
    let info = ClusterInfo {
        cluster_id: 1,
        local_id: 0xabc,
        members: vec![Member {
            id: 0xabc,
            name: "m1".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec![],
            is_learner: false,
        }],
        removed: vec![0xdef],
    };
    b.meta_put(META_KEY, &info.encode()).unwrap();
    b.set_consistent_index(42, 3);
    b.commit(true).unwrap();
    drop(s);
    path
}

fn all(s: &MvccStore, rev: i64) -> String {
    let r = s.range(&RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        ..Default::default()
    });
    format!("{:?}", r.map(|r| r.kvs))
}

#[test]
fn export_then_import_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let src = backend(dir.path());
    let snap = dir.path().join("etcd.db");
    let size = export::export(&src, &snap).unwrap();
    let bytes = std::fs::read(&snap).unwrap();
    assert_eq!(bytes.len() as u64, size);
    // etcd's rule for a hashed file: 512 * n + 32 bytes, the last 32 the SHA-256 of the rest.
    assert_eq!(size % 512, 32);
    let (db, hash) = bytes.split_at(bytes.len() - 32);
    assert_eq!(hash, crate::backup::file::sha256(db));
    assert!(is_bbolt_file(&snap));

    // The layout: etcd's buckets and rows.
    let tree = Tree::read(&Db::open(db).unwrap()).unwrap();
    let bucket = |n: &[u8]| match &tree.0[n] {
        Node::Bucket(t) => t.0.clone(),
        Node::Value(_) => panic!("not a bucket"),
    };
    let names: Vec<&[u8]> = tree.0.keys().map(|k| k.as_slice()).collect();
    assert_eq!(
        names,
        [
            ALARM,
            AUTH,
            AUTH_ROLES,
            AUTH_USERS,
            CLUSTER,
            KEY,
            LEASE,
            MEMBERS,
            MEMBERS_REMOVED,
            META
        ]
    );
    assert_eq!(bucket(AUTH)[AUTH_ENABLED], Node::Value(vec![1]));
    assert_eq!(
        bucket(AUTH)[AUTH_REVISION],
        Node::Value(9u64.to_be_bytes().to_vec())
    );
    assert_eq!(
        bucket(MEMBERS)[&b"abc"[..]],
        Node::Value(br#"{"id":2748,"peerURLs":["http://127.0.0.1:2380"],"name":"m1"}"#.to_vec())
    );
    assert_eq!(
        bucket(MEMBERS_REMOVED)[&b"def"[..]],
        Node::Value(b"removed".to_vec())
    );
    let meta = bucket(META);
    assert_eq!(
        meta.keys().map(|k| k.as_slice()).collect::<Vec<_>>(),
        [
            &b"consistent_index"[..],
            b"finishedCompactRev",
            b"scheduledCompactRev"
        ]
    );

    let st = status(&bytes).unwrap();
    let before = MvccStore::open(&src).unwrap();
    assert_eq!(st.revision, before.current_revision());
    assert_eq!(st.total_size, db.len() as u64);

    // Back into oxcd's backend: the same answers at every revision.
    let back = dir.path().join("back/db");
    std::fs::create_dir_all(back.parent().unwrap()).unwrap();
    import::import(db, &back).unwrap();
    let after = MvccStore::open(&back).unwrap();
    assert_eq!(after.current_revision(), before.current_revision());
    assert_eq!(after.compact_revision(), 100);
    for rev in [0, 100, 150, 202] {
        assert_eq!(all(&after, rev), all(&before, rev), "at {rev}");
    }
    assert!(all(&after, 99).contains("Compacted"));
    assert_eq!(after.leases().unwrap(), vec![(7, 600)]);
    assert_eq!(
        after.keys_with_lease().unwrap(),
        vec![(b"leased".to_vec(), 7)]
    );
    let st = State::decode(after.meta_get(META_AUTH).unwrap()).unwrap();
    let want = State::decode(Some(auth().encode_to_vec())).unwrap();
    assert_eq!(st.encode(), want.encode());
    assert_eq!(
        after.meta_get(META_ALARMS).unwrap(),
        before.meta_get(META_ALARMS).unwrap()
    );
    assert_eq!(
        after.meta_get(META_KEY).unwrap(),
        None,
        "a restore writes its own"
    );
}

#[test]
fn damaged_etcd_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = backend(dir.path());
    let snap = dir.path().join("etcd.db");
    export::export(&src, &snap).unwrap();
    let good = std::fs::read(&snap).unwrap();
    let cuts = [100, 4096, 8192 + 7, good.len() / 2, good.len() - 33 - 4096];
    for (n, cut) in cuts.into_iter().enumerate() {
        let e = import::import(&good[..cut], &dir.path().join(format!("t{n}"))).unwrap_err();
        assert!(e.msg.starts_with("bbolt: "), "{}", e.msg);
        assert!(status(&good[..cut]).is_err());
    }
    // A key row that is not a revision is not etcd's layout.
    let mut root = Tree::default();
    let mut key = Tree::default();
    key.0.insert(b"nonsense".to_vec(), Node::Value(vec![]));
    root.0.insert(KEY.to_vec(), Node::Bucket(key));
    let file = root.to_file(4096).unwrap();
    let e = import::import(&file, &dir.path().join("bad")).unwrap_err();
    assert_eq!(
        e.msg,
        "etcd snapshot: bucket key: row 6e6f6e73656e7365: not a revision"
    );
    assert!(!dir.path().join("bad").exists());
}

/// A snapshot a real etcd 3.4.23 wrote (see testdata/README.md).
const REAL: &[u8] = include_bytes!("testdata/etcd-3.4.23-snapshot.db");

#[test]
fn reads_a_real_etcd_snapshot() {
    // What etcdctl prints for it.
    let st = status(REAL).unwrap();
    assert_eq!(
        (st.hash, st.revision, st.total_key, st.total_size),
        (1788819874, 7, 18, 32768)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    import::import(&REAL[..REAL.len() - 32], &path).unwrap();
    let s = MvccStore::open(&path).unwrap();
    assert_eq!(s.current_revision(), 7);
    assert_eq!(s.compact_revision(), 3);
    let kvs = s
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap()
        .kvs;
    let keys: Vec<_> = kvs
        .iter()
        .map(|kv| {
            (
                kv.key.as_slice(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [(&b"a"[..], 2, 4, 2), (b"c", 6, 6, 1), (b"d", 7, 7, 1)]
    );
    assert_eq!(kvs[2].value.len(), 5000);
    let lease = 0x7af9_a1ff_e392_cf09;
    assert_eq!(kvs[1].lease, lease);
    assert_eq!(s.leases().unwrap(), vec![(lease, 600)]);
    // Revision 3 is the compacted one, and still readable: b's value then.
    let at3 = s
        .range(&RangeRequest {
            key: b"b".to_vec(),
            revision: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(at3.kvs[0].value, b"2");

    let auth = State::decode(s.meta_get(META_AUTH).unwrap()).unwrap();
    assert!(auth.enabled);
    assert_eq!(
        auth.users.keys().collect::<Vec<_>>(),
        [&"root".to_string(), &"u1".to_string()]
    );
    // etcd's bcrypt hashes verify as they are.
    let hash = String::from_utf8(auth.users["u1"].password.clone()).unwrap();
    assert!(bcrypt::verify("pw1", &hash).unwrap());
    assert!(!bcrypt::verify("pw2", &hash).unwrap());
    assert_eq!(auth.users["u1"].roles, ["r1"]);
    let perm = &auth.roles["r1"].key_permission[0];
    assert_eq!(
        (
            perm.perm_type,
            perm.key.as_slice(),
            perm.range_end.as_slice()
        ),
        (Type::Readwrite as i32, &b"foo"[..], &b"fop"[..])
    );
}
