//! docs/migrating-from-etcd.md, followed step by step with the real etcdctl:
//!
//! - the offline cut-over: a 3-member etcd 3.4 with history (puts over many revisions,
//!   deletes, a compaction, a lease with keys, a user and a role, auth on) is frozen,
//!   `etcdctl snapshot save`d, checked with `oxutl snapshot status`, restored with `oxutl
//!   snapshot restore` into each member of a new 3-member oxcd cluster, which must then answer
//!   every read the runbook's checks make as the etcd did (keys now and at old revisions,
//!   leases with their keys, users, roles, the same `endpoint hashkv`); writes go on there;
//! - the way back: `oxctl snapshot save --format etcd` of that oxcd cluster restored with
//!   `etcdctl snapshot restore` into a fresh 3-member etcd, which serves the oxcd-era writes;
//! - the live cut-over: `oxctl make-mirror` from a 3-member etcd into a 3-member oxcd while a
//!   bounded write load runs; after the freeze a fence key written to the source shows the
//!   mirror has drained, and the destination then equals the source key by key, with its own
//!   revisions (one per key copied, then one per source revision), and leases dropped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oxcd_process_tests::b64;
use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::ctl::{ctl, Background, Ctl, Output};
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::normalize::granted_lease;
use oxcd_process_tests::restore::{
    plain_lines, restore_cluster, same_answers, served, status, Tool,
};
use serde_json::Value;

const ROOT: &str = "--user=root:rootpw";
/// Cheap password hashes: every read of the comparisons authenticates.
const FAST_BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];
/// The revision the load compacts at (its keys' history before it is gone).
const COMPACTED_AT: i64 = 16;

/// The etcd cluster's life before the migration, written round-robin through every member
/// with etcdctl: 30 puts over 7 keys (revisions 2..=31), two deletes (32, 33), a 600 s lease
/// with two keys (34, 35), a deleted key put back (36), a compaction, then users root and app (role app: readwrite on the
/// `app/` prefix) and auth on. Returns the lease.
fn load(c: &Cluster) -> u64 {
    let n = c.nodes.len();
    for i in 1..=30 {
        c.ctl_ok(
            i % n,
            &["put", &format!("app/k{}", i % 7), &format!("v{i}")],
        );
    }
    c.ctl_ok(1 % n, &["del", "app/k3"]);
    c.ctl_ok(2 % n, &["del", "app/k6"]);
    let out = c.ctl_ok(0, &["lease", "grant", "600"]);
    let lease = granted_lease(&out.stdout).expect("lease id");
    for key in ["svc/a", "svc/b"] {
        c.ctl_ok(1 % n, &["put", key, "up", &format!("--lease={lease:x}")]);
    }
    c.ctl_ok(2 % n, &["put", "app/k3", "back"]);
    c.ctl_ok(0, &["compaction", &COMPACTED_AT.to_string()]);
    for cmd in [
        "user add root:rootpw",
        "role add root",
        "user grant-role root root",
        "role add app",
        "role grant-permission app readwrite app/ --prefix",
        "user add app:apppw",
        "user grant-role app app",
        "auth enable",
    ] {
        c.ctl_ok(0, &cmd.split(' ').collect::<Vec<_>>());
    }
    lease
}

/// The runbook's read checks against member `i`: the whole key space now and at `revs`, a
/// compacted revision, the lease with its keys, users, roles, and auth being on (no user
/// refused; the app user inside and outside its permission).
fn answers(c: &Cluster, i: usize, lease: u64, revs: &[i64]) -> Vec<(String, String)> {
    let lease = format!("{lease:x}");
    let revs: Vec<String> = revs.iter().map(|r| format!("--rev={r}")).collect();
    let compacted = format!("--rev={}", COMPACTED_AT - 1);
    let mut cmds: Vec<Vec<&str>> = vec![vec![ROOT, "get", "", "--prefix", "-w", "json"]];
    for rev in revs.iter().chain([&compacted]) {
        cmds.push(vec![ROOT, "get", "", "--prefix", "-w", "json", rev]);
    }
    cmds.extend([
        vec![ROOT, "lease", "timetolive", &lease, "--keys"],
        vec![ROOT, "lease", "list"],
        vec![ROOT, "user", "list"],
        vec![ROOT, "user", "get", "app"],
        vec![ROOT, "role", "list"],
        vec![ROOT, "role", "get", "app"],
        vec!["get", "app/k1"],
        vec!["--user=app:apppw", "get", "app/", "--prefix"],
        vec!["--user=app:apppw", "get", "svc/a"],
    ]);
    cmds.into_iter()
        .map(|cmd| (cmd.join(" "), served(&c.ctl(i, &cmd))))
        .collect()
}

/// `endpoint status` and `endpoint hashkv` of every member at once, as the runbook checks a
/// cluster (HashKV needs the root user once auth is on): polls until every member reports
/// the same revision and hash, and returns them.
fn settled(c: &Cluster) -> (i64, u64) {
    let eps = c.endpoints(&c.all());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let status = c.ctl_on(&c.all(), &["endpoint", "status", "-w", "json"]);
        let hashkv = c.ctl_on(&c.all(), &[ROOT, "endpoint", "hashkv", "-w", "json"]);
        let parse = |out: &Output| serde_json::from_str::<Value>(out.stdout.trim()).ok();
        if let (Some(status), Some(hashkv)) = (parse(&status), parse(&hashkv)) {
            let revs: Vec<Option<i64>> = (0..c.nodes.len())
                .map(|i| status[i]["Status"]["header"]["revision"].as_i64())
                .collect();
            let hashes: Vec<Option<u64>> = (0..c.nodes.len())
                .map(|i| hashkv[i]["HashKV"]["hash"].as_u64())
                .collect();
            if let (Some(Some(rev)), Some(Some(hash))) = (revs.first(), hashes.first()) {
                if revs.iter().all(|r| *r == Some(*rev)) && hashes.iter().all(|h| *h == Some(*hash))
                {
                    return (*rev, *hash);
                }
            }
            last = format!("revisions {revs:?}, hashes {hashes:?}");
        } else {
            last = format!("{status}\n{hashkv}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    c.fail(&format!("{eps} never agreed on revision and hash: {last}"))
}

/// The revision member 0 of `c` is at (a read's header; no auth).
fn revision(c: &Cluster) -> i64 {
    let out = c.ctl_ok(0, &["get", "any", "-w", "json"]);
    c.json(&out, "get -w json")["header"]["revision"]
        .as_i64()
        .expect("a revision in the header")
}

/// The revision of a write through member 0 (as root).
fn put_revision(c: &Cluster, key: &str, value: &str) -> i64 {
    let out = c.ctl_ok(0, &[ROOT, "put", key, value, "-w", "json"]);
    c.json(&out, "put -w json")["header"]["revision"]
        .as_i64()
        .expect("a revision in the header")
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxcd-test-migration-")
        .tempdir()
        .expect("temp dir")
}

/// The checks of a cluster restored from a snapshot taken at revision and HashKV
/// `at`: every member is there, and answers the runbook's reads as `want` says.
fn check_restored(
    c: &Cluster,
    at: (i64, u64),
    lease: u64,
    revs: &[i64],
    want: &[(String, String)],
) {
    assert_eq!(settled(c), at, "{} revision and hash", c.kind);
    for i in c.all() {
        let got = answers(c, i, lease, revs);
        same_answers(&format!("restored {} {}", c.kind, c.name(i)), want, &got);
    }
}

/// Runs an offline tool and panics unless it exits 0.
fn tool_ok(tool: Tool, args: &[&str]) -> Output {
    let out = tool.run(args);
    assert_eq!(out.code, 0, "{tool} {}: {out}", args.join(" "));
    out
}

/// Offline cut-over (runbook part A) and the way back (part C).
#[test]
fn offline_cut_over_and_back() {
    let files = temp_dir();
    let etcd = Cluster::start_with(Kind::Etcd, 3, &FAST_BCRYPT);
    let lease = load(&etcd);

    // A.1 Writes are frozen (the load is over); every member is at one revision and hash.
    let (etcd_rev, etcd_hash) = settled(&etcd);
    assert_eq!(etcd_rev, 36, "revision after the load");
    let revs = [COMPACTED_AT, 20, 31, 33, etcd_rev];
    let want = answers(&etcd, 0, lease, &revs);

    // A.2 The snapshot, and what oxutl reads in it.
    let snap = files.path().join("etcd-backup.db");
    let s = snap.display().to_string();
    etcd.ctl_ok(0, &[ROOT, "snapshot", "save", &s]);
    let table = tool_ok(Tool::Oxutl, &["snapshot", "status", &s, "-w", "table"]);
    assert_eq!(
        table.stdout,
        tool_ok(Tool::Etcdctl, &["snapshot", "status", &s, "-w", "table"]).stdout
    );
    assert_eq!(
        status(Tool::Oxutl, &snap).map(|st| st.revision),
        Ok(etcd_rev)
    );
    drop(etcd);

    // A.3, A.4 `oxutl snapshot restore` for each member of the new cluster, then start them.
    let (oxcd, _) = restore_cluster(Kind::Oxcd, 3, &snap, false, &[Tool::Oxutl]);

    // A.5 Checks: one revision (etcd's) and etcd's HashKV on every member; the same answers.
    check_restored(&oxcd, (etcd_rev, etcd_hash), lease, &revs, &want);

    // A.6 Clients write to oxcd: revisions go on from etcd's; users and leases work.
    assert_eq!(put_revision(&oxcd, "app/after", "oxcd-1"), etcd_rev + 1);
    let out = oxcd.ctl_ok(1, &["--user=app:apppw", "put", "app/k1", "from-app"]);
    assert_eq!(out.stdout, "OK\n");
    oxcd.ctl_ok(2, &[ROOT, "del", "app/k2"]);
    oxcd.ctl_ok(
        0,
        &[ROOT, "put", "svc/c", "up", &format!("--lease={lease:x}")],
    );
    let (oxcd_rev, oxcd_hash) = settled(&oxcd);
    assert_eq!(oxcd_rev, etcd_rev + 4);
    let revs = [COMPACTED_AT, 31, etcd_rev, etcd_rev + 2, oxcd_rev];
    let want = answers(&oxcd, 0, lease, &revs);

    // C.1 The way back: a snapshot in etcd's format, read by etcdctl.
    let back = files.path().join("oxcd-backup.db");
    let b = back.display().to_string();
    let out = oxcd.ctl_with(
        Ctl::Oxctl,
        0,
        &[ROOT, "snapshot", "save", "--format", "etcd", &b],
    );
    assert_eq!(out.code, 0, "oxctl snapshot save --format etcd: {out}");
    assert_eq!(
        status(Tool::Etcdctl, &back).map(|st| st.revision),
        Ok(oxcd_rev)
    );
    drop(oxcd);

    // C.2 `etcdctl snapshot restore` for each member of a fresh etcd cluster, started: it
    // serves the oxcd-era writes, and goes on from oxcd's revision.
    let (etcd, _) = restore_cluster(Kind::Etcd, 3, &back, false, &[Tool::Etcdctl]);
    check_restored(&etcd, (oxcd_rev, oxcd_hash), lease, &revs, &want);
    assert_eq!(put_revision(&etcd, "app/back", "etcd-again"), oxcd_rev + 1);
}

type Kvs = BTreeMap<String, String>;

/// Every key and value member `i` of `c` holds (etcdctl `get "" --prefix -w json`).
fn key_values(c: &Cluster, i: usize) -> Kvs {
    let out = c.ctl(i, &["get", "", "--prefix", "-w", "json"]);
    let json = c.json(&out, "get --prefix -w json");
    let text = |v: &Value| {
        let bytes = b64::decode(v.as_str().unwrap_or("")).expect("base64");
        String::from_utf8(bytes).expect("utf-8")
    };
    json["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (text(&kv["key"]), text(&kv["value"])))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls (at most 30 s) until `ready` holds for member 0 of `dest`; panics with the mirror's
/// output otherwise.
fn wait_for(dest: &Cluster, mirror: &mut Background, what: &str, ready: impl Fn(&Kvs) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kvs = key_values(dest, 0);
        if ready(&kvs) {
            return;
        }
        if Instant::now() >= deadline || mirror.exited() {
            let out = mirror.kill();
            dest.fail(&format!("{what}: not on the destination; mirror: {out}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bounded write load of the live cut-over: 120 writes over 25 keys, every fifth a delete
/// of the key written just before it, round-robin through the etcd members, one etcdctl each
/// as an application's writes.
fn write_load(endpoints: Vec<String>) {
    for i in 0..120 {
        let key = format!("live/{:02}", i % 25);
        let value = format!("w{i}");
        let previous = format!("live/{:02}", (i + 24) % 25);
        let args: Vec<&str> = if i % 5 == 4 {
            vec!["del", &previous]
        } else {
            vec!["put", &key, &value]
        };
        let out = ctl(Ctl::Etcdctl, &endpoints[i % endpoints.len()], &args);
        assert_eq!(out.code, 0, "write {i}: {out}");
    }
}

/// Live cut-over with make-mirror (runbook part B).
#[test]
fn live_cut_over_with_make_mirror() {
    let etcd = Cluster::start(Kind::Etcd, 3);
    let oxcd = Cluster::start(Kind::Oxcd, 3);
    // What the source holds before the mirror starts: 40 keys (some overwritten), a leased key.
    for i in 0..60 {
        etcd.ctl_ok(
            i % 3,
            &["put", &format!("app/{:02}", i % 40), &format!("v{i}")],
        );
    }
    let out = etcd.ctl_ok(0, &["lease", "grant", "600"]);
    let lease = granted_lease(&out.stdout).expect("lease id");
    etcd.ctl_ok(1, &["put", "svc/a", "up", &format!("--lease={lease:x}")]);
    let source = key_values(&etcd, 0);
    let source_start = revision(&etcd);
    let dest_start = revision(&oxcd);

    // B.2 The mirror: its initial copy first.
    let mut mirror = Background::ctl(
        Ctl::Oxctl,
        &etcd.endpoints(&etcd.all()),
        &["make-mirror", &oxcd.endpoint(0)],
    );
    wait_for(&oxcd, &mut mirror, "the initial copy", |kvs| kvs == &source);

    // B.3 Applications keep writing to etcd while the mirror follows (the mirror is its own
    // process: these writes and its watch run side by side).
    write_load(etcd.all().iter().map(|&i| etcd.endpoint(i)).collect());

    // B.4 The freeze (the load is over), then a fence key: the mirror applies the source's
    // revisions in order, so once the fence is on the destination, so is everything before it.
    let out = etcd.ctl_ok(0, &["put", "migration/fence", "frozen", "-w", "json"]);
    let fence = etcd.json(&out, "put -w json")["header"]["revision"]
        .as_i64()
        .expect("a revision in the header");
    wait_for(&oxcd, &mut mirror, "the fence", |kvs| {
        kvs.get("migration/fence").map(String::as_str) == Some("frozen")
    });
    // B.5 Stop the mirror; the destination equals the source key by key.
    let out = mirror.kill();
    assert_eq!(
        plain_lines(&out.stderr),
        Vec::<String>::new(),
        "mirror: {out}"
    );
    let want = key_values(&etcd, 0);
    for i in oxcd.all() {
        assert_eq!(key_values(&oxcd, i), want, "{} against etcd", oxcd.name(i));
    }

    // Revisions are the destination's own: one put per key of the initial copy, then one txn
    // per source revision after it.
    let dest_end = revision(&oxcd);
    assert_eq!(
        dest_end - dest_start,
        source.len() as i64 + (fence - source_start)
    );
    // The leased key arrived without its lease: make-mirror copies keys and values only.
    let out = oxcd.ctl_ok(0, &["get", "svc/a", "-w", "json"]);
    let kv = &oxcd.json(&out, "get -w json")["kvs"][0];
    assert_eq!(kv["key"].as_str(), Some("c3ZjL2E="), "svc/a on oxcd: {kv}");
    assert_eq!(kv["lease"].as_u64(), None, "lease of svc/a on oxcd: {kv}");
    let out = oxcd.ctl_ok(0, &["lease", "list"]);
    assert_eq!(out.stdout, "found 0 leases\n");
}
