//! `snapshot restore FILE`: the data dir of one member of a new cluster, holding the data of
//! the snapshot.
//!
//! What it builds, and why a plain `oxcd` start on it comes up in the new cluster:
//! - `<data-dir>/member/snap/db`: the snapshot's database with the membership replaced by the
//!   one `--initial-cluster`, `--initial-cluster-token` and `--name` bootstrap (the same IDs a
//!   fresh bootstrap derives, so every restored member agrees on the cluster ID), and the
//!   consistent index and term where a bootstrapped log starts (`BOOTSTRAP_INDEX`, term 1: the
//!   backend holds everything up to there). Keys, revisions, compaction and leases stay as
//!   they were.
//! - `<wal-dir>` (default `<data-dir>/member/wal`): a WAL bootstrapped with every member as a
//!   voter, as a fresh member's first start writes it. A WAL that is not empty makes `oxcd`
//!   restart from the data dir, so its `--initial-*` flags are then ignored.
//!
//! The checks and their order are etcd's: flag values, then the bootstrap configuration, then
//! existing directories (refused), then the snapshot's hash. Unlike etcd, a failed restore
//! removes the directories it created, so it can simply be run again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use super::file::copy_out;
use super::log::Sink;
use super::{go_path_err, go_quote, humanize_bytes, Error, Result};
use crate::backup_caller;
use crate::config::Url;
use crate::membership::{ClusterInfo, InitialCluster, META_KEY};
use crate::mvcc::MvccStore;
use crate::raft::storage::{WalStorage, BOOTSTRAP_INDEX};

/// `snapshot restore`'s flags, with etcd's defaults in [`RestoreOptions::new`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub snapshot: PathBuf,
    pub name: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
    /// Empty: `<name>.etcd`.
    pub data_dir: String,
    /// Empty: `<data-dir>/member/wal`.
    pub wal_dir: String,
    pub skip_hash_check: bool,
    pub log: Sink,
}

impl RestoreOptions {
    /// etcdctl's defaults for everything but the file.
    pub fn new(snapshot: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            snapshot: snapshot.into(),
            name: "default".into(),
            initial_cluster: "default=http://localhost:2380".into(),
            initial_cluster_token: "etcd-cluster".into(),
            initial_advertise_peer_urls: "http://localhost:2380".into(),
            data_dir: String::new(),
            wal_dir: String::new(),
            skip_hash_check: false,
            log: Sink::Stderr,
        }
    }
}

/// What a restore made.
#[derive(Debug, Clone)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub cluster: ClusterInfo,
}

/// `a,b` split as etcd's flag values are (empty parts dropped).
fn split_list(s: &str) -> Vec<&str> {
    s.split(',').filter(|p| !p.is_empty()).collect()
}

/// `--initial-cluster` as etcd's `types.NewURLsMap` reads it: `name=url` pairs, a name may
/// repeat; each member's URLs must be valid (etcd's texts) and are kept sorted.
fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in split_list(s) {
        let (name, url) = part.split_once('=').unwrap_or((part, ""));
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    for (_, urls) in &mut out {
        for u in urls.iter() {
            Url::parse(u).map_err(|e| Error::new(e.to_string()))?;
        }
        urls.sort();
    }
    Ok(out)
}

fn parse_urls(s: &str) -> Result<Vec<String>> {
    let urls: Vec<String> = split_list(s).into_iter().map(str::to_string).collect();
    for u in &urls {
        Url::parse(u).map_err(|e| Error::new(e.to_string()))?;
    }
    Ok(urls)
}

/// Removes what a failed restore created.
struct Cleanup {
    paths: Vec<PathBuf>,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            for p in &self.paths {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// fsync of a directory, so the files and directories made in it survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| go_path_err("sync", dir, &e))
}

/// Replaces the etcd (bbolt) database at `db` with the oxcd backend holding the same data.
fn import_etcd(db: &Path) -> Result<()> {
    let f = std::fs::File::open(db).map_err(|e| go_path_err("open", db, &e))?;
    let src = super::bbolt::Source::file(&f).map_err(|e| go_path_err("stat", db, &e))?;
    let converted = db.with_extension("import");
    let _ = std::fs::remove_file(&converted);
    super::etcd::import::import(src, &converted)?;
    std::fs::rename(&converted, db).map_err(|e| go_path_err("rename", &converted, &e))
}

/// Restores the snapshot into a new data dir (see the module comment). Logs etcdctl's lines
/// ("restoring snapshot", "added member" for each member, "restored snapshot") to `o.log`.
pub fn restore(o: &RestoreOptions) -> Result<Restored> {
    let initial = parse_initial_cluster(&o.initial_cluster)?;
    let advertise = parse_urls(&o.initial_advertise_peer_urls)?;
    let cluster = ClusterInfo::from_initial(&InitialCluster {
        name: &o.name,
        initial_cluster: &initial,
        token: &o.initial_cluster_token,
        advertise_peer_urls: &advertise,
        advertise_client_urls: &[],
    })
    .map_err(|e| Error::new(e.to_string()))?;

    let data_dir = if o.data_dir.is_empty() {
        PathBuf::from(format!("{}.etcd", o.name))
    } else {
        PathBuf::from(&o.data_dir)
    };
    let member_dir = data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    let wal_dir = if o.wal_dir.is_empty() {
        member_dir.join("wal")
    } else {
        PathBuf::from(&o.wal_dir)
    };
    if exists(&data_dir) {
        return Err(Error::new(format!(
            "data-dir {} exists",
            go_quote(&data_dir.display().to_string())
        )));
    }
    if exists(&wal_dir) {
        return Err(Error::new(format!(
            "wal-dir {} exists",
            go_quote(&wal_dir.display().to_string())
        )));
    }
    let where_fields = || -> Vec<(&'static str, Value)> {
        vec![
            ("path", json!(o.snapshot.display().to_string())),
            ("wal-dir", json!(wal_dir.display().to_string())),
            ("data-dir", json!(data_dir.display().to_string())),
            ("snap-dir", json!(snap_dir.display().to_string())),
        ]
    };
    o.log
        .info(&backup_caller!(), "restoring snapshot", &where_fields());

    let mut cleanup = Cleanup {
        paths: vec![data_dir.clone(), wal_dir.clone()],
        armed: true,
    };
    std::fs::create_dir_all(&snap_dir).map_err(|e| go_path_err("mkdir", &snap_dir, &e))?;

    // The database, copied out of the snapshot file and checked.
    let db = snap_dir.join("db");
    let started = Instant::now();
    let log = o.log;
    let found = copy_out(&o.snapshot, &db, &mut |done, total| {
        log.info(
            &backup_caller!(),
            "copying snapshot database",
            &[
                ("copied", json!(humanize_bytes(done))),
                ("total", json!(humanize_bytes(total))),
            ],
        );
    })?;
    found.check(o.skip_hash_check)?;
    if super::etcd::is_bbolt_file(&db) {
        import_etcd(&db)?;
    }
    if started.elapsed().as_secs() >= 1 {
        o.log.info(
            &backup_caller!(),
            "copied snapshot database",
            &[
                ("size", json!(humanize_bytes(found.db_len))),
                ("took", json!(format!("{:?}", started.elapsed()))),
            ],
        );
    }

    // The new membership replaces the old; the log starts afresh.
    // redb panics on some damaged files: an invalid database, not a crash of the tool.
    let compacted = std::panic::catch_unwind(|| {
        MvccStore::reset_file_for_restore(&db, META_KEY, &cluster.encode(), (BOOTSTRAP_INDEX, 1))
    })
    .map_err(|_| Error::new(format!("{}: invalid database", db.display())))?
    .map_err(|e| Error::new(format!("{}: {e}", db.display())))?;
    if let Some(rev) = compacted {
        o.log.info(
            &backup_caller!(),
            "restored last compact revision",
            &[
                ("meta-bucket-name", json!("meta")),
                ("meta-bucket-name-key", json!("finishedCompactRev")),
                ("restored-compact-revision", json!(rev)),
            ],
        );
    }
    let mut members = cluster.members.clone();
    members.sort_by_key(|m| m.id);
    for m in &members {
        o.log.info(
            &backup_caller!(),
            "added member",
            &[
                ("cluster-id", json!(format!("{:x}", cluster.cluster_id))),
                ("local-member-id", json!("0")),
                ("added-peer-id", json!(format!("{:x}", m.id))),
                ("added-peer-peer-urls", json!(m.peer_urls)),
            ],
        );
    }

    let wal = WalStorage::open(&wal_dir)
        .map_err(|e| Error::new(format!("opening WAL {}: {e:#}", wal_dir.display())))?;
    wal.bootstrap(raft::eraftpb::ConfState {
        voters: cluster.members.iter().map(|m| m.id).collect(),
        ..Default::default()
    })
    .map_err(|e| Error::new(format!("bootstrapping WAL {}: {e:#}", wal_dir.display())))?;
    drop(wal);

    for dir in [&snap_dir, &member_dir, &data_dir] {
        sync_dir(dir)?;
    }
    if let Some(parent) = wal_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    cleanup.armed = false;
    o.log
        .info(&backup_caller!(), "restored snapshot", &where_fields());
    Ok(Restored {
        data_dir,
        wal_dir,
        cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::file::sha256;
    use crate::raft::ids;
    use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};

    /// A snapshot file (database + hash) of a store holding `n` keys and a lease.
    fn snapshot(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
        let store = MvccStore::open(&dir.join("src/member/snap/db")).unwrap();
        for i in 0..n {
            let mut b = store.write().unwrap();
            b.put(
                &PutRequest {
                    key: format!("k{i}").into_bytes(),
                    value: b"v".to_vec(),
                    lease: if i == 0 { 7 } else { 0 },
                    ..Default::default()
                },
                &|_| true,
            )
            .unwrap();
            if i == 0 {
                b.put_lease(7, 60).unwrap();
            }
            b.meta_put(META_KEY, b"{\"old\":1}").unwrap();
            b.set_consistent_index(100 + i as u64, 3);
            b.commit(false).unwrap();
        }
        let raw = dir.join("raw.db");
        store.snapshot_to(&raw).unwrap();
        let mut bytes = std::fs::read(&raw).unwrap();
        let h = sha256(&bytes);
        bytes.extend_from_slice(&h);
        let hashed = dir.join("snap.db");
        std::fs::write(&hashed, bytes).unwrap();
        (hashed, raw)
    }

    fn opts(snap: &Path, data_dir: &Path) -> RestoreOptions {
        RestoreOptions {
            name: "m2".into(),
            initial_cluster: "m1=http://127.0.0.1:1,m2=http://127.0.0.1:2,m3=http://127.0.0.1:3"
                .into(),
            initial_cluster_token: "tok".into(),
            initial_advertise_peer_urls: "http://127.0.0.1:2".into(),
            data_dir: data_dir.display().to_string(),
            log: Sink::Silent,
            ..RestoreOptions::new(snap)
        }
    }

    #[test]
    fn restores_a_member_of_a_new_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let (snap, raw) = snapshot(dir.path(), 5);
        let st = crate::backup::status(&snap).unwrap();
        assert_eq!(st, crate::backup::status(&raw).unwrap());
        assert_eq!(st.revision, 6);
        assert_eq!(st.total_size, std::fs::metadata(&raw).unwrap().len());

        let out = dir.path().join("new");
        let r = restore(&opts(&snap, &out)).unwrap();
        let id = |port: u16| ids::member_id(&[format!("http://127.0.0.1:{port}")], "tok");
        assert_eq!(r.cluster.local_id, id(2));
        assert_eq!(
            r.cluster.cluster_id,
            ids::cluster_id(&[id(1), id(2), id(3)])
        );

        let store = MvccStore::open(&out.join("member/snap/db")).unwrap();
        assert_eq!(store.consistent_index(), BOOTSTRAP_INDEX);
        assert_eq!(store.consistent_term(), 1);
        assert_eq!(store.current_revision(), 6);
        assert_eq!(store.leases().unwrap(), vec![(7, 60)]);
        let all = store
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.count, 5);
        let info = ClusterInfo::decode(&store.meta_get(META_KEY).unwrap().unwrap()).unwrap();
        assert_eq!(info.cluster_id, r.cluster.cluster_id);
        assert_eq!(info.local_id, id(2));
        assert!(info.members.iter().all(|m| m.client_urls.is_empty()));
        drop(store);

        let wal = WalStorage::open(&out.join("member/wal")).unwrap();
        assert!(!wal.is_empty());
        assert_eq!(wal.snapshot_meta().index, BOOTSTRAP_INDEX);
        let mut voters = wal.snapshot_meta().get_conf_state().voters.clone();
        voters.sort_unstable();
        let mut want = vec![id(1), id(2), id(3)];
        want.sort_unstable();
        assert_eq!(voters, want);
    }

    #[test]
    fn restores_the_backend_of_a_member_that_died() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead/member/snap/db");
        let store = MvccStore::open(&path).unwrap();
        for i in 0..4 {
            let mut b = store.write().unwrap();
            b.put(
                &PutRequest {
                    key: format!("k{i}").into_bytes(),
                    value: b"v".to_vec(),
                    ..Default::default()
                },
                &|_| true,
            )
            .unwrap();
            // The last write is not durable, as the apply loop's between two syncs.
            b.commit(i < 3).unwrap();
        }
        // Never closed, as after `kill -9`: redb must repair a copy of the file.
        std::mem::forget(store);
        let st = crate::backup::status(&path).unwrap();
        assert!(st.revision >= 4, "{st:?}");
        let out = dir.path().join("new");
        restore(&RestoreOptions {
            skip_hash_check: true,
            ..opts(&path, &out)
        })
        .unwrap();
        let restored = MvccStore::open(&out.join("member/snap/db")).unwrap();
        let all = restored
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        assert!(all.count >= 3, "{all:?}");
    }

    #[test]
    fn refuses_and_cleans_up_like_etcd() {
        let dir = tempfile::tempdir().unwrap();
        let (snap, raw) = snapshot(dir.path(), 2);
        let out = dir.path().join("a");

        // A bare database needs --skip-hash-check; the failed attempt leaves nothing behind.
        let e = restore(&opts(&raw, &out)).unwrap_err();
        assert_eq!(e.msg, "snapshot missing hash but --skip-hash-check=false");
        assert!(!out.exists());
        restore(&RestoreOptions {
            skip_hash_check: true,
            ..opts(&raw, &out)
        })
        .unwrap();

        let e = restore(&opts(&snap, &out)).unwrap_err();
        assert_eq!(e.msg, format!("data-dir \"{}\" exists", out.display()));

        let wal = dir.path().join("a/member/wal");
        let e = restore(&RestoreOptions {
            wal_dir: wal.display().to_string(),
            ..opts(&snap, &dir.path().join("b"))
        })
        .unwrap_err();
        assert_eq!(e.msg, format!("wal-dir \"{}\" exists", wal.display()));

        let e = restore(&RestoreOptions {
            name: "foo".into(),
            ..opts(&snap, &dir.path().join("c"))
        })
        .unwrap_err();
        assert_eq!(
            e.msg,
            "couldn't find local name \"foo\" in the initial cluster configuration"
        );
        let e = restore(&RestoreOptions {
            initial_cluster: "bad".into(),
            ..opts(&snap, &dir.path().join("c"))
        })
        .unwrap_err();
        assert_eq!(e.msg, "URL scheme must be http, https, unix, or unixs: ");
        assert!(!dir.path().join("c").exists());
    }
}
