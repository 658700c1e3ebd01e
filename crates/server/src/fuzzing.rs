//! Entry points for fuzzing: each takes arbitrary bytes, feeds them to one path of oxcd that
//! reads untrusted input, and must return (never panic) whatever the bytes are. Errors are the
//! expected outcome for most inputs and are dropped.
//!
//! The `cargo fuzz` targets in `fuzz/` call these; the tests below run the same bodies on seeds
//! and cheap mutations of them, so the suite covers them without libFuzzer.
//!
//! Targets that need files write the input to a fresh directory under `/dev/shm` (or the temp
//! dir) and remove it afterwards; none binds a socket.

use std::path::{Path, PathBuf};

use oxcd_api::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthUserAddRequest, AuthenticateRequest, CompactionRequest,
    DeleteRangeRequest, InternalRaftRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    TxnRequest, WatchRequest,
};
use prost::Message;

use crate::grpc::kv::{check_delete, check_put, check_range, check_txn};
use crate::mvcc::MvccStore;

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes` plus gRPC's overhead.
const MAX_RECV: usize = 1536 * 1024 + 512 * 1024;

/// A directory of its own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Option<Scratch> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "oxcd-fuzz-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        Some(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store holding a few keys over several revisions, one compacted, for requests to run on.
fn small_store(dir: &Path) -> Option<MvccStore> {
    let store = MvccStore::open(&dir.join("db")).ok()?;
    for (k, v) in [
        ("a", "1"),
        ("b", "2"),
        ("a", "3"),
        ("c/d", "4"),
        ("foo", "bar"),
    ] {
        let mut b = store.write().ok()?;
        b.put(
            &PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            },
            &|_| true,
        )
        .ok()?;
        b.commit(false).ok()?;
    }
    let mut b = store.write().ok()?;
    b.compact(2).ok()?;
    b.commit(false).ok()?;
    Some(store)
}

/// The kinds of request [`request_validation`] decodes, chosen by the input's first byte.
const REQUEST_KINDS: u8 = 12;

/// Decodes the input (after its first byte, which picks the message type) as one of etcd's
/// request messages, runs oxcd's checks on it as the gRPC services do, and, if it passes, runs
/// it on a small store as the apply loop or a read would.
pub fn request_validation(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % REQUEST_KINDS {
        0 => {
            if let Ok(r) = RangeRequest::decode(body) {
                run_range(&r);
            }
        }
        1 => {
            if let Ok(r) = PutRequest::decode(body) {
                run_put(&r);
            }
        }
        2 => {
            if let Ok(r) = DeleteRangeRequest::decode(body) {
                run_delete(&r);
            }
        }
        3 => {
            if let Ok(r) = TxnRequest::decode(body) {
                run_txn(&r);
            }
        }
        4 => {
            if let Ok(r) = CompactionRequest::decode(body) {
                with_store(|s| {
                    let cur = s.current_revision();
                    if r.revision <= cur && r.revision > s.compact_revision() {
                        if let Ok(mut b) = s.write() {
                            let _ = b.compact(r.revision);
                            let _ = b.commit(false);
                        }
                        let _ = s.hash_kv(0);
                    }
                });
            }
        }
        5 => {
            if let Ok(r) = LeaseGrantRequest::decode(body) {
                if r.ttl <= crate::lease::MAX_LEASE_TTL {
                    with_store(|s| {
                        if let Ok(mut b) = s.write() {
                            let _ = b.put_lease(r.id, r.ttl);
                            let _ = b.commit(false);
                        }
                        let _ = s.leases();
                    });
                }
            }
        }
        6 => {
            if let Ok(r) = WatchRequest::decode(body) {
                if let Some(oxcd_api::etcdserverpb::watch_request::RequestUnion::CreateRequest(c)) =
                    r.request_union
                {
                    with_store(|s| {
                        let to = s.current_revision();
                        let _ = s.events_between(&c.key, &c.range_end, c.start_revision, to, 0);
                    });
                }
            }
        }
        7 => {
            if let Ok(r) = AuthenticateRequest::decode(body) {
                let _ = crate::auth::token::simple_token_index(&r.name);
                let _ = crate::auth::token::simple_token_index(&r.password);
            }
        }
        8 => {
            let _ = AuthUserAddRequest::decode(body);
            let _ = AuthRoleGrantPermissionRequest::decode(body);
        }
        9 => {
            // What the apply loop decodes from every committed entry.
            if let Ok(r) = InternalRaftRequest::decode(body) {
                if let Some(p) = &r.put {
                    run_put(p);
                }
                if let Some(d) = &r.delete_range {
                    run_delete(d);
                }
                if let Some(t) = &r.txn {
                    run_txn(t);
                }
                if let Some(q) = &r.range {
                    run_range(q);
                }
            }
        }
        10 => {
            // The JSON gateway's bodies.
            if let Ok(r) = serde_json::from_slice::<TxnRequest>(body) {
                run_txn(&r);
            } else if let Ok(r) = serde_json::from_slice::<RangeRequest>(body) {
                run_range(&r);
            } else if let Ok(r) = serde_json::from_slice::<PutRequest>(body) {
                run_put(&r);
            }
        }
        _ => {
            let _ = crate::membership::ClusterInfo::decode(body);
        }
    }
}

fn with_store(f: impl FnOnce(&MvccStore)) {
    let Some(dir) = Scratch::new("store") else {
        return;
    };
    if let Some(s) = small_store(&dir.0) {
        f(&s);
    }
}

fn run_range(r: &RangeRequest) {
    if check_range(r).is_ok() && crate::grpc::check_size(r, MAX_RECV).is_ok() {
        with_store(|s| {
            let _ = s.range(r);
        });
    }
}

fn run_put(r: &PutRequest) {
    if check_put(r).is_ok() && crate::grpc::check_size(r, MAX_RECV).is_ok() {
        with_store(|s| {
            if let Ok(mut b) = s.write() {
                let _ = b.put(r, &|id| id % 2 == 0);
                let _ = b.commit(false);
            }
        });
    }
}

fn run_delete(r: &DeleteRangeRequest) {
    if check_delete(r).is_ok() && crate::grpc::check_size(r, MAX_RECV).is_ok() {
        with_store(|s| {
            if let Ok(mut b) = s.write() {
                let _ = b.delete_range(r);
                let _ = b.commit(false);
            }
        });
    }
}

fn run_txn(r: &TxnRequest) {
    if check_txn(r, MAX_TXN_OPS).is_err() || crate::grpc::check_size(r, MAX_RECV).is_err() {
        return;
    }
    with_store(|s| {
        if crate::mvcc::is_txn_read_only(r) {
            let _ = s.read_txn(r);
        }
        if let Ok(mut b) = s.write() {
            let _ = b.txn(r, &|id| id % 2 == 0);
            let _ = b.commit(false);
        }
        let _ = s.range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        });
    });
}

/// Command-line arguments and `ETCD_*` variables from the input, one per line (or NUL-separated):
/// a line `ETCD_X=v` is a variable, anything else an argument.
fn split_args(data: &[u8]) -> (Vec<String>, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(data);
    let mut args = vec!["oxcd".to_string()];
    let mut env = Vec::new();
    for part in text.split(['\n', '\0']) {
        // A configuration file would be read from disk: not this target's business.
        if part.to_ascii_lowercase().contains("config") {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) if k.starts_with("ETCD_") => env.push((k.to_string(), v.to_string())),
            _ => args.push(part.to_string()),
        }
    }
    (args, env)
}

/// The command line and environment, through flag parsing and verification into a `Config`,
/// and on to the checks made before anything is opened (auto-compaction's retention).
pub fn flag_parsing(data: &[u8]) {
    let (args, env) = split_args(data);
    let Ok(flags) = crate::config::parse_flags(&args, &env) else {
        return;
    };
    verify(flags);
}

fn verify(flags: crate::config::Flags) {
    if let Ok(cfg) = crate::config::Config::from_flags(flags) {
        let _ = crate::compactor::AutoCompaction::parse(
            &cfg.auto_compaction_mode,
            &cfg.auto_compaction_retention,
        );
        let _ = cfg.election_ticks();
        let _ = cfg.backend_path();
    }
}

/// A `--config-file`'s text through the YAML reader and the same verification as flags.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(flags) = crate::config_file::from_str(text) {
        verify(flags);
    }
}

/// The input as a snapshot file: `snapshot status` (which copies the database out and checks
/// for a trailing hash), then the hash check and a restore into a new data dir.
pub fn snapshot_file(data: &[u8]) {
    let Some(dir) = Scratch::new("snapshot") else {
        return;
    };
    let file = dir.0.join("snap.db");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    if let Ok(st) = crate::backup::status(&file) {
        let _ = crate::backup::render_status(&st, "json");
    }
    let out = dir.0.join("copy");
    if let Ok(found) = crate::backup::file::copy_out(&file, &out, &mut |_, _| {}) {
        let _ = found.check(false);
        let _ = found.has_hash();
    }
    let mut o = crate::backup::RestoreOptions::new(&file);
    o.data_dir = dir.0.join("restored").to_string_lossy().into_owned();
    o.skip_hash_check = true;
    o.log = crate::backup::log::Sink::Silent;
    let _ = crate::backup::restore(&o);
}

/// The input as a member's backend file (`member/snap/db`), opened as a starting member opens
/// it, then read whole.
pub fn backend_open(data: &[u8]) {
    let Some(dir) = Scratch::new("backend") else {
        return;
    };
    let db = dir.0.join("member").join("snap").join("db");
    let wal = dir.0.join("member").join("wal");
    if std::fs::create_dir_all(db.parent().unwrap_or(&dir.0)).is_err()
        || std::fs::create_dir_all(&wal)
            .and_then(|_| std::fs::write(wal.join("0000000000000001.raftlog"), b"x"))
            .is_err()
        || std::fs::write(&db, data).is_err()
    {
        return;
    }
    let Ok(store) = crate::corrupt::open_backend(&db, &wal) else {
        return;
    };
    let _ = store.range(&RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    });
    let _ = store.hash_kv(0);
    let _ = store.leases();
    let _ = store.meta_get(crate::membership::META_KEY);
    let _ = store.events_between(b"\0", b"\0", 0, store.current_revision(), 0);
}

/// The input as the member's one raft-engine log file, opened as a starting member opens its
/// WAL; then the raft state, every entry, and each entry's request decoded as the apply loop
/// decodes them.
pub fn wal_open(data: &[u8]) {
    let Some(dir) = Scratch::new("wal") else {
        return;
    };
    let wal = dir.0.join("wal");
    if std::fs::create_dir_all(&wal).is_err()
        || std::fs::write(wal.join("0000000000000001.raftlog"), data).is_err()
    {
        return;
    }
    let Ok(w) = crate::raft::storage::WalStorage::open(&wal) else {
        return;
    };
    read_wal(&w);
}

fn read_wal(w: &crate::raft::storage::WalStorage) {
    use raft::Storage;
    let _ = w.initial_state();
    let _ = w.snapshot_meta();
    let (Ok(first), Ok(last)) = (w.first_index(), w.last_index()) else {
        return;
    };
    let _ = w.term(last);
    let Ok(entries) = w.entries_between(first, last.saturating_add(1)) else {
        return;
    };
    for e in entries {
        let _ = InternalRaftRequest::decode(&e.data[..]);
    }
}

/// Seed inputs for each target, made by oxcd itself: what the seed corpus in `fuzz/corpus`
/// holds (`cargo test -p oxcd --lib fuzzing::tests::write_corpus` rewrites it,
/// given `OXCD_FUZZ_CORPUS=<dir>`).
pub mod seeds {
    use super::*;
    use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
    use oxcd_api::etcdserverpb::request_op::Request;
    use oxcd_api::etcdserverpb::{Compare, RequestOp, WatchCreateRequest};

    fn tagged(kind: u8, body: Vec<u8>) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend(body);
        v
    }

    fn put(k: &str, v: &str) -> PutRequest {
        PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }
    }

    pub fn request_validation() -> Vec<Vec<u8>> {
        let range = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 2,
            revision: 3,
            sort_order: 1,
            sort_target: 3,
            ..Default::default()
        };
        let txn = TxnRequest {
            compare: vec![Compare {
                key: b"a".to_vec(),
                result: CompareResult::Greater as i32,
                target: CompareTarget::Version as i32,
                target_union: Some(TargetUnion::Version(1)),
                ..Default::default()
            }],
            success: vec![
                RequestOp {
                    request: Some(Request::RequestPut(put("x", "1"))),
                },
                RequestOp {
                    request: Some(Request::RequestRange(range.clone())),
                },
            ],
            failure: vec![RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: b"a".to_vec(),
                    range_end: vec![0],
                    prev_kv: true,
                })),
            }],
        };
        let watch = WatchRequest {
            request_union: Some(
                oxcd_api::etcdserverpb::watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: b"a".to_vec(),
                        range_end: vec![0],
                        start_revision: 2,
                        prev_kv: true,
                        ..Default::default()
                    },
                ),
            ),
        };
        let internal = InternalRaftRequest {
            txn: Some(txn.clone()),
            ..Default::default()
        };
        vec![
            tagged(0, range.encode_to_vec()),
            tagged(1, put("k", "v").encode_to_vec()),
            tagged(
                2,
                DeleteRangeRequest {
                    key: b"a".to_vec(),
                    range_end: b"c".to_vec(),
                    prev_kv: true,
                }
                .encode_to_vec(),
            ),
            tagged(3, txn.encode_to_vec()),
            tagged(
                4,
                CompactionRequest {
                    revision: 4,
                    physical: true,
                }
                .encode_to_vec(),
            ),
            tagged(5, LeaseGrantRequest { ttl: 60, id: 8 }.encode_to_vec()),
            tagged(6, watch.encode_to_vec()),
            tagged(
                7,
                AuthenticateRequest {
                    name: "root".into(),
                    password: "pw".into(),
                }
                .encode_to_vec(),
            ),
            tagged(9, internal.encode_to_vec()),
            tagged(
                10,
                br#"{"compare":[{"key":"YQ==","result":"EQUAL","target":"VALUE","value":"MQ=="}],"success":[{"requestPut":{"key":"eA==","value":"MQ=="}}]}"#.to_vec(),
            ),
            tagged(10, br#"{"key":"YQ==","range_end":"AA=="}"#.to_vec()),
        ]
    }

    pub fn flag_parsing() -> Vec<Vec<u8>> {
        vec![
            b"--name=m1\n--data-dir=/tmp/m1.etcd\n--listen-client-urls=http://127.0.0.1:2379\n--advertise-client-urls=http://127.0.0.1:2379\n--listen-peer-urls=http://127.0.0.1:2380\n--initial-advertise-peer-urls=http://127.0.0.1:2380\n--initial-cluster=m1=http://127.0.0.1:2380\n--initial-cluster-state=new\n--auto-compaction-mode=periodic\n--auto-compaction-retention=1h".to_vec(),
            b"--heartbeat-interval\n50\n--election-timeout=500\n--quota-backend-bytes=100000\nETCD_MAX_TXN_OPS=64\nETCD_LOG_LEVEL=debug".to_vec(),
            b"--initial-cluster=a=https://10.0.0.1:2380,b=https://10.0.0.2:2380\n--client-cert-auth\n--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n--tls-min-version=TLS1.2".to_vec(),
        ]
    }

    pub fn config_file() -> Vec<Vec<u8>> {
        vec![
            b"name: m1\ndata-dir: /tmp/m1.etcd\nlisten-client-urls: http://127.0.0.1:2379\nadvertise-client-urls: http://127.0.0.1:2379\ninitial-cluster: m1=http://127.0.0.1:2380\ninitial-cluster-state: new\nheartbeat-interval: 100\nelection-timeout: 1000\nauto-compaction-mode: revision\nauto-compaction-retention: \"1000\"\n".to_vec(),
            b"client-transport-security:\n  cert-file: /a.crt\n  key-file: /a.key\n  client-cert-auth: true\npeer-transport-security:\n  auto-tls: true\nlog-outputs: [stderr]\nquota-backend-bytes: 0\n".to_vec(),
        ]
    }

    /// A small backend made by the store: keys, a compaction, a lease.
    pub fn backend() -> Vec<u8> {
        let Some(dir) = Scratch::new("seed-backend") else {
            return Vec::new();
        };
        if let Some(s) = small_store(&dir.0) {
            if let Ok(mut b) = s.write() {
                let _ = b.put_lease(7, 30);
                let _ = b.meta_put(crate::membership::META_KEY, b"{}");
                let _ = b.commit(true);
            }
            drop(s);
        }
        std::fs::read(dir.0.join("db")).unwrap_or_default()
    }

    /// The backend followed by its SHA-256, as a snapshot file is.
    pub fn snapshot() -> Vec<u8> {
        let mut db = backend();
        let h = crate::backup::file::sha256(&db);
        db.extend_from_slice(&h);
        db
    }

    /// The seed backend as an etcd 3.4 snapshot (bbolt and its SHA-256): `snapshot status` and
    /// `restore` read those too.
    pub fn etcd_snapshot() -> Vec<u8> {
        let Some(dir) = Scratch::new("seed-etcd-snapshot") else {
            return Vec::new();
        };
        let (db, out) = (dir.0.join("db"), dir.0.join("etcd.db"));
        // The export reads the membership; the seed backend's is a placeholder.
        let info = crate::membership::ClusterInfo {
            cluster_id: 1,
            local_id: 2,
            members: Vec::new(),
            removed: Vec::new(),
        };
        let set_members = |_: Option<&[u8]>| Ok(info.encode());
        if std::fs::write(&db, backend()).is_err()
            || MvccStore::update_meta_in_file(&db, crate::membership::META_KEY, set_members)
                .is_err()
            || crate::backup::etcd::export::export(&db, &out).is_err()
        {
            return Vec::new();
        }
        std::fs::read(out).unwrap_or_default()
    }

    /// A raft-engine log file with the bootstrap records, a few entries and a hard state.
    pub fn wal() -> Vec<u8> {
        let Some(dir) = Scratch::new("seed-wal") else {
            return Vec::new();
        };
        let path = dir.0.join("wal");
        {
            let Ok(w) = crate::raft::storage::WalStorage::open(&path) else {
                return Vec::new();
            };
            let _ = w.bootstrap(raft::eraftpb::ConfState {
                voters: vec![1],
                ..Default::default()
            });
            let entries: Vec<raft::eraftpb::Entry> = (2..5)
                .map(|i| raft::eraftpb::Entry {
                    index: i,
                    term: 2,
                    data: InternalRaftRequest {
                        put: Some(put("k", "v")),
                        ..Default::default()
                    }
                    .encode_to_vec()
                    .into(),
                    ..Default::default()
                })
                .collect();
            let hs = raft::eraftpb::HardState {
                term: 2,
                vote: 1,
                commit: 4,
                ..Default::default()
            };
            let _ = w.append(&entries, Some(&hs), true);
        }
        std::fs::read(path.join("0000000000000001.raftlog")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-seed xorshift: the same mutations on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }

    /// One cheap mutation of `seed`: bit flips, a truncation, an insertion, a removal, an
    /// overwrite with an "interesting" value, or a splice of two places.
    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let len = b.len();
            match rng.below(6) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    b[i] ^= 1 << rng.below(8);
                }
                1 => b.truncate(rng.below(len + 1)),
                2 => {
                    let at = rng.below(len + 1);
                    let n = 1 + rng.below(16);
                    let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    b.splice(at..at, ins);
                }
                3 if len > 0 => {
                    let at = rng.below(len);
                    let end = (at + 1 + rng.below(16)).min(len);
                    b.drain(at..end);
                }
                4 if len > 0 => {
                    let at = rng.below(len);
                    let v = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
                    let end = (at + 1 + rng.below(8)).min(len);
                    b[at..end].fill(v);
                }
                _ if len > 1 => {
                    let from = rng.below(len);
                    let to = rng.below(len);
                    let n = rng.below(len - from.max(to)).min(64);
                    let chunk = b[from..from + n].to_vec();
                    b[to..to + n].copy_from_slice(&chunk);
                }
                _ => {}
            }
        }
        b
    }

    /// Feeds `target` its seeds, then mutations of them, for at most `budget` (checked between
    /// inputs) or `max` inputs.
    fn drive(
        name: &str,
        target: fn(&[u8]),
        seeds: &[Vec<u8>],
        max: usize,
        budget: std::time::Duration,
    ) {
        let started = std::time::Instant::now();
        for s in seeds {
            target(s);
        }
        target(&[]);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let mut n = 0;
        while n < max && started.elapsed() < budget {
            let seed = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, seed);
            target(&input);
            n += 1;
        }
        assert!(n > 0, "{name}: no mutations ran");
    }

    const BUDGET: std::time::Duration = std::time::Duration::from_secs(4);

    #[test]
    fn request_validation_survives_mutations() {
        drive(
            "request_validation",
            request_validation,
            &seeds::request_validation(),
            3000,
            BUDGET,
        );
    }

    #[test]
    fn flag_parsing_survives_mutations() {
        drive(
            "flag_parsing",
            flag_parsing,
            &seeds::flag_parsing(),
            3000,
            BUDGET,
        );
    }

    #[test]
    fn config_file_survives_mutations() {
        drive(
            "config_file",
            config_file,
            &seeds::config_file(),
            3000,
            BUDGET,
        );
    }

    #[test]
    fn snapshot_file_survives_mutations() {
        let seed = seeds::snapshot();
        assert!(seed.len() > 32);
        let etcd = seeds::etcd_snapshot();
        assert!(crate::backup::bbolt::looks_like_bbolt(&etcd));
        drive("snapshot_file", snapshot_file, &[seed, etcd], 2000, BUDGET);
    }

    #[test]
    fn backend_open_survives_mutations() {
        let seed = seeds::backend();
        assert!(!seed.is_empty());
        drive("backend_open", backend_open, &[seed], 2000, BUDGET);
    }

    #[test]
    fn wal_open_survives_mutations() {
        let seed = seeds::wal();
        assert!(!seed.is_empty());
        drive("wal_open", wal_open, &[seed], 3000, BUDGET);
    }

    /// The seed WAL opens and reads back its entries; damage in its middle is refused, a torn
    /// tail is cut off.
    #[test]
    fn wal_seed_damage() {
        use raft::Storage;
        let seed = seeds::wal();
        let open = |bytes: &[u8]| {
            let dir = Scratch::new("wal-damage").unwrap();
            let wal = dir.0.join("wal");
            std::fs::create_dir_all(&wal).unwrap();
            let file = wal.join("0000000000000001.raftlog");
            std::fs::write(&file, bytes).unwrap();
            let r = crate::raft::storage::WalStorage::open(&wal)
                .map(|w| (w.last_index().unwrap(), w.hard_state().commit));
            let after = std::fs::read(&file).unwrap();
            (r, after)
        };
        let (r, _) = open(&seed);
        assert_eq!(r.unwrap(), (4, 4));
        // Zeros after the last record (raft-engine's space allocated ahead): no change.
        let mut padded = seed.clone();
        padded.extend(std::iter::repeat_n(0u8, 4096));
        let (r, _) = open(&padded);
        assert_eq!(r.unwrap(), (4, 4));
        // Garbage after the last record: cut off.
        let mut garbage = seed.clone();
        garbage.extend((0..100u32).map(|i| (i * 37 + 11) as u8));
        let (r, after) = open(&garbage);
        assert_eq!(r.unwrap(), (4, 4));
        assert_eq!(after, seed);
        // The last record cut short: the records before it remain.
        let (r, _) = open(&seed[..seed.len() - 3]);
        let (last, _) = r.unwrap();
        assert!(last >= 1, "{last}");
        // A byte flipped in the first record, records after it: refused, the file untouched.
        let mut flipped = seed.clone();
        flipped[69 + 20] ^= 0x55;
        let (r, after) = open(&flipped);
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("0000000000000001.raftlog"), "{e}");
        assert_eq!(after, flipped);
    }

    /// Replays an input `cargo fuzz` saved (`OXCD_FUZZ_REPRO=<file>`) through the target named
    /// by `OXCD_FUZZ_TARGET` (default `backend_open`) in a debug build; without the variable,
    /// nothing.
    #[test]
    fn repro_from_env() {
        let Ok(path) = std::env::var("OXCD_FUZZ_REPRO") else {
            return;
        };
        let data = std::fs::read(path).unwrap();
        let target = std::env::var("OXCD_FUZZ_TARGET").unwrap_or_default();
        match target.as_str() {
            "request_validation" => request_validation(&data),
            "flag_parsing" => flag_parsing(&data),
            "config_file" => config_file(&data),
            "snapshot_file" => snapshot_file(&data),
            "wal_open" => wal_open(&data),
            _ => backend_open(&data),
        }
    }

    /// Writes the seed corpus for `cargo fuzz` into `$OXCD_FUZZ_CORPUS/<target>/` (a temp dir
    /// when unset), one file per seed, and checks every target got its seeds.
    #[test]
    fn write_corpus() {
        let scratch = tempfile::tempdir().unwrap();
        let root = std::env::var("OXCD_FUZZ_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| scratch.path().to_path_buf());
        let sets: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("request_validation", seeds::request_validation()),
            ("flag_parsing", seeds::flag_parsing()),
            ("config_file", seeds::config_file()),
            (
                "snapshot_file",
                vec![seeds::snapshot(), seeds::etcd_snapshot()],
            ),
            ("backend_open", vec![seeds::backend()]),
            ("wal_open", vec![seeds::wal()]),
        ];
        for (name, inputs) in sets {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            assert!(!inputs.is_empty(), "{name} has no seed");
            for (i, input) in inputs.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), input).unwrap();
                assert!(dir.join(format!("seed-{i}")).exists());
            }
        }
    }
}
