//! The failpoints do what they are for (a failpoint build only: `--features failpoints`): a
//! crash point aborts the process and leaves a store that opens with all its data; a bug point
//! changes behaviour only while it fires. Its own test binary: the fail-rs registry is global.

#![cfg(feature = "failpoints")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest};
use oxcd_server::failpoints::BUG_WATCH_SKIP_EVENT;
use oxcd_server::mvcc::watch_hub::{WatchOutput, WatchStream};
use oxcd_server::mvcc::{MvccStore, WatchHub};

/// One applied put, announced to the hub as the apply loop does.
fn put(store: &MvccStore, hub: &WatchHub, key: &str, value: &str) -> i64 {
    let mut b = store.write().unwrap();
    b.put(
        &PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        },
        &|_| true,
    )
    .unwrap();
    let rev = b.revision();
    let events = b.commit(true).unwrap();
    hub.notify(&events, rev);
    rev
}

/// Keys and revisions of the events the stream yields until it is idle for a moment.
async fn drain(ws: &mut WatchStream) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(o) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
        if let WatchOutput::Events { events, .. } = o {
            for ev in events {
                let kv = ev.kv.unwrap();
                out.push(format!(
                    "{}@{}",
                    String::from_utf8_lossy(&kv.key),
                    kv.mod_revision
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn watch_skip_event_leaves_a_gap_only_while_it_fires() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MvccStore::open(&dir.path().join("db")).unwrap());
    let hub = WatchHub::new(store.clone());
    let mut ws = hub.open_stream();
    let c = ws.create(&WatchCreateRequest {
        key: "k".into(),
        range_end: "l".into(),
        ..Default::default()
    });
    assert!(!c.canceled);
    put(&store, &hub, "k1", "a");
    fail::cfg(BUG_WATCH_SKIP_EVENT, "return").unwrap();
    put(&store, &hub, "k2", "b");
    fail::cfg(BUG_WATCH_SKIP_EVENT, "off").unwrap();
    put(&store, &hub, "k3", "c");
    fail::remove(BUG_WATCH_SKIP_EVENT);
    assert_eq!(drain(&mut ws).await, ["k1@2", "k3@4"]);
}

const CHILD_ENV: &str = "OXCD_FAILPOINT_TEST_DIR";

fn fill(path: &Path) {
    let store = MvccStore::open(path).unwrap();
    for i in 0..50 {
        let mut b = store.write().unwrap();
        b.put(
            &PutRequest {
                key: format!("key{i:02}").into_bytes(),
                value: vec![b'v'; 1000],
                ..Default::default()
            },
            &|_| true,
        )
        .unwrap();
        b.commit(true).unwrap();
    }
}

/// Run by [`defrag_before_rename_aborts_and_the_store_survives`] in a child process.
#[test]
#[ignore = "run in a child process by defrag_before_rename_aborts_and_the_store_survives"]
fn defrag_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = MvccStore::open(&Path::new(&dir).join("db")).unwrap();
    fail::cfg("defrag-before-rename", "return").unwrap();
    let _ = store.defragment();
    unreachable!("defrag-before-rename=return must abort the process");
}

#[test]
fn defrag_before_rename_aborts_and_the_store_survives() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    fill(&db);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "defrag_crash_child", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(6), "not aborted: {stderr}");
    assert!(
        stderr.contains("failpoint defrag-before-rename fired"),
        "{stderr}"
    );
    // The unfinished copy is left behind; the database file is untouched.
    assert!(dir.path().join("db.defrag").exists());
    let store = MvccStore::open(&db).unwrap();
    let r = store
        .range(&RangeRequest {
            key: "key".into(),
            range_end: "kez".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.count, 50);
    assert_eq!(store.current_revision(), 51);
    store.defragment().unwrap();
    assert!(!dir.path().join("db.defrag").exists());
}
