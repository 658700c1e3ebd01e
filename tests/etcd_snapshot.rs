//! Snapshots in etcd 3.4's format (a bbolt database and its SHA-256), both ways:
//! - a real etcd's snapshot (and its stopped member's `member/snap/db`) restored into oxcd with
//!   `oxutl`/`oxctl snapshot restore` serves what the etcd served, and `snapshot status` of
//!   the file prints what etcdctl prints;
//! - `oxctl snapshot save --format etcd` (and `oxutl snapshot convert --format etcd`) of an
//!   oxcd cluster is a file that etcdctl reads and restores, and the real etcd started on it
//!   serves what the oxcd cluster served;
//! - damaged or truncated bbolt files are refused with an error, never a crash.
//!
//! "What a cluster serves" is the same list of etcdctl commands for both, with the response
//! headers (cluster and member IDs) removed and lease TTLs normalised: keys at several
//! revisions, a compacted revision, a lease with its keys, users, roles, and whether auth is
//! on (a request without a user refused, a user's permission and password honoured).

use std::path::{Path, PathBuf};

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::ctl::{ctl_stdin, Ctl};
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::normalize::granted_lease;
use oxcd_process_tests::restore::{
    backend_path, copy_file, plain_lines, restore_cluster, same_answers, served, status, Tool,
};

const ROOT: &str = "--user=root:rootpw";
/// Cheap password hashes: every command here authenticates.
const FAST_BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];

/// Writes, through member 0 with etcdctl: keys over revisions 2..=12 (overwrites, a delete, a
/// key on a 600 s lease), a compaction at 6, txns of 150 keys and a 100 kB value (so the key
/// bucket spans several leaf pages under a branch page, and has overflow pages), then users
/// root and u1 (role r1: readwrite on [foo, fop)) and auth on. Returns the lease.
fn load(c: &Cluster) -> u64 {
    for i in 1..=8 {
        c.ctl_ok(0, &["put", &format!("k{}", i % 4), &format!("v{i}")]);
    }
    c.ctl_ok(0, &["del", "k1"]);
    let out = c.ctl_ok(0, &["lease", "grant", "600"]);
    let lease = granted_lease(&out.stdout).expect("lease id");
    c.ctl_ok(0, &["put", "leased", "x", &format!("--lease={lease:x}")]);
    c.ctl_ok(0, &["put", "k2", "last"]);
    c.ctl_ok(0, &["compaction", "6"]);
    // Two txns: etcd allows 128 operations in one.
    for part in [0..75, 75..150] {
        let puts: String = part
            .map(|i| format!("put bulk/{i:03} value-{i}-{}\n", "x".repeat(i % 40)))
            .collect();
        let out = ctl_stdin(
            Ctl::Etcdctl,
            &c.endpoint(0),
            &["txn"],
            &format!("\n{puts}\n\n"),
        );
        assert!(
            out.code == 0 && out.stdout.starts_with("SUCCESS"),
            "txn: {out}"
        );
    }
    c.ctl_ok(0, &["put", "huge", &"h".repeat(100_000)]);
    for cmd in [
        "user add root:rootpw",
        "role add root",
        "user grant-role root root",
        "role add r1",
        "role grant-permission r1 readwrite foo fop",
        "user add u1:pw1",
        "user grant-role u1 r1",
        "auth enable",
    ] {
        c.ctl_ok(0, &cmd.split(' ').collect::<Vec<_>>());
    }
    lease
}

/// What member `i` of `c` serves, command by command.
fn answers(c: &Cluster, i: usize, lease: u64) -> Vec<(String, String)> {
    let lease = format!("{lease:x}");
    let mut cmds: Vec<Vec<&str>> = vec![vec![ROOT, "get", "", "--prefix", "-w", "json"]];
    let revs = ["--rev=5", "--rev=6", "--rev=8", "--rev=10", "--rev=12"];
    for rev in &revs {
        cmds.push(vec![ROOT, "get", "", "--prefix", "-w", "json", rev]);
    }
    cmds.extend([
        vec![ROOT, "lease", "timetolive", &lease, "--keys"],
        vec![ROOT, "lease", "list"],
        vec![ROOT, "user", "list"],
        vec![ROOT, "user", "get", "u1"],
        vec![ROOT, "role", "list"],
        vec![ROOT, "role", "get", "r1"],
        vec![ROOT, "role", "get", "root"],
        // Auth is on: no user, a user inside and outside its permission, a wrong password.
        vec!["get", "k2"],
        vec!["--user=u1:pw1", "get", "foo"],
        vec!["--user=u1:pw1", "get", "k2"],
        vec!["--user=u1:nope", "get", "foo"],
    ]);
    cmds.into_iter()
        .map(|cmd| (cmd.join(" "), served(&c.ctl(i, &cmd))))
        .collect()
}

/// The revision of a new write through member 0: writes go on from the restored revision.
fn next_revision(c: &Cluster) -> i64 {
    let out = c.ctl_ok(0, &[ROOT, "put", "after", "x", "-w", "json"]);
    c.json(&out, "put -w json")["header"]["revision"]
        .as_i64()
        .expect("a revision in the header")
}

/// `snapshot status` of `file` in every format etcdctl prints: `tools` must print what
/// etcdctl prints.
fn same_status(file: &Path, tools: &[Tool]) {
    let f = file.display().to_string();
    for w in ["simple", "table", "json", "fields"] {
        let want = Tool::Etcdctl.run(&["snapshot", "status", &f, "-w", w]);
        assert_eq!(want.code, 0, "etcdctl snapshot status: {want}");
        for tool in tools {
            let got = tool.run(&["snapshot", "status", &f, "-w", w]);
            assert_eq!(
                (got.code, &got.stdout),
                (0, &want.stdout),
                "{tool} snapshot status -w {w} {f}: {got}"
            );
        }
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxcd-test-etcd-snapshot-")
        .tempdir()
        .expect("temp dir")
}

#[test]
fn etcd_snapshot_restores_into_oxcd() {
    let files = temp_dir();
    let mut etcd = Cluster::start_with(Kind::Etcd, 1, &FAST_BCRYPT);
    let lease = load(&etcd);
    let want = answers(&etcd, 0, lease);
    let snap = files.path().join("etcd.db");
    let s = snap.display().to_string();
    etcd.ctl_ok(0, &[ROOT, "snapshot", "save", &s]);
    same_status(&snap, &[Tool::Oxutl, Tool::Oxctl]);
    // Converted offline into oxcd's format: a snapshot at the same revision.
    let own = files.path().join("oxcd.db");
    let o = own.display().to_string();
    let out = Tool::Oxutl.run(&["snapshot", "convert", "--format", "oxcd", &s, &o]);
    assert_eq!(out.code, 0, "oxutl snapshot convert --format oxcd: {out}");
    assert_eq!(
        status(Tool::Oxutl, &own).map(|st| st.revision),
        status(Tool::Etcdctl, &snap).map(|st| st.revision)
    );
    // What etcd's next write would get (not made: the member's backend is restored below).
    let out = etcd.ctl_ok(0, &[ROOT, "get", "k2", "-w", "json"]);
    let next = etcd.json(&out, "get -w json")["header"]["revision"]
        .as_i64()
        .expect("a revision in the header")
        + 1;

    // oxutl restores two members and oxctl one, of a new 3-member oxcd cluster.
    let (oxcd, _) = restore_cluster(Kind::Oxcd, 3, &snap, false, &[Tool::Oxutl, Tool::Oxctl]);
    for i in oxcd.all() {
        same_answers(
            &format!("oxcd member {} restored from etcd's snapshot", oxcd.name(i)),
            &want,
            &answers(&oxcd, i, lease),
        );
    }
    assert_eq!(next_revision(&oxcd), next);
    drop(oxcd);

    // The stopped etcd member's backend: no hash, so only with --skip-hash-check, as etcdctl.
    etcd.stop(0);
    let db = files.path().join("member.db");
    copy_file(&backend_path(&etcd, 0), &db);
    same_status(&db, &[Tool::Oxutl]);
    let d = db.display().to_string();
    let refused = |tool: Tool| {
        let dir = files.path().join(format!("refused-{tool}"));
        let out = tool.run(&[
            "snapshot",
            "restore",
            &d,
            "--data-dir",
            &dir.display().to_string(),
        ]);
        (out.code, plain_lines(&out.stderr))
    };
    let (code, errors) = refused(Tool::Oxutl);
    assert_eq!(
        code, 1,
        "oxutl restore of a member db without --skip-hash-check"
    );
    assert_eq!((code, errors), refused(Tool::Etcdctl));
    assert!(!files.path().join("refused-oxutl").exists());
    let (oxcd, _) = restore_cluster(Kind::Oxcd, 1, &db, true, &[Tool::Oxutl]);
    same_answers(
        "oxcd restored from etcd's member/snap/db",
        &want,
        &answers(&oxcd, 0, lease),
    );
    assert_eq!(next_revision(&oxcd), next);
}

#[test]
fn oxcd_snapshot_in_etcd_format_restores_into_etcd() {
    let files = temp_dir();
    let oxcd = Cluster::start_with(Kind::Oxcd, 3, &FAST_BCRYPT);
    let lease = load(&oxcd);
    let want = answers(&oxcd, 0, lease);
    let snap = files.path().join("etcd.db");
    let s = snap.display().to_string();
    let out = oxcd.ctl_with(
        Ctl::Oxctl,
        0,
        &[ROOT, "snapshot", "save", "--format", "etcd", &s],
    );
    assert_eq!(out.code, 0, "oxctl snapshot save --format etcd: {out}");
    assert_eq!(out.stdout, format!("Snapshot saved at {s}\n"));
    same_status(&snap, &[Tool::Oxutl, Tool::Oxctl]);

    // The same from a snapshot in oxcd's format, converted offline.
    let own = files.path().join("oxcd.db");
    let o = own.display().to_string();
    let out = oxcd.ctl_with(Ctl::Oxctl, 0, &[ROOT, "snapshot", "save", &o]);
    assert_eq!(out.code, 0, "oxctl snapshot save: {out}");
    let converted = files.path().join("converted.db");
    let c = converted.display().to_string();
    let out = Tool::Oxutl.run(&["snapshot", "convert", "--format", "etcd", &o, &c]);
    assert_eq!(out.code, 0, "oxutl snapshot convert: {out}");
    same_status(&converted, &[Tool::Oxutl]);
    let next = next_revision(&oxcd);
    drop(oxcd);

    for file in [&snap, &converted] {
        let (etcd, _) = restore_cluster(Kind::Etcd, 1, file, false, &[Tool::Etcdctl]);
        same_answers(
            &format!("etcd restored from {}", file.display()),
            &want,
            &answers(&etcd, 0, lease),
        );
        assert_eq!(next_revision(&etcd), next);
    }
}

/// `tool snapshot status` and `restore` of a damaged file: both must fail with `Error: ...`
/// (whose text must contain `expect`), exit 1, and leave no data dir.
fn refused(dir: &Path, file: &Path, skip_hash_check: bool, expect: &str) {
    let f = file.display().to_string();
    for tool in [Tool::Oxutl, Tool::Oxctl] {
        let status = tool.run(&["snapshot", "status", &f]);
        let data_dir = dir.join(format!("restored-{tool}"));
        let dd = data_dir.display().to_string();
        let mut args = vec!["snapshot", "restore", &f, "--data-dir", &dd];
        if skip_hash_check {
            args.push("--skip-hash-check");
        }
        let restore = tool.run(&args);
        for (what, out) in [("status", &status), ("restore", &restore)] {
            let errors = plain_lines(&out.stderr).join("\n");
            assert!(
                out.code == 1 && errors.starts_with("Error: ") && !errors.contains("panicked"),
                "{tool} snapshot {what} of {f}: {out}"
            );
        }
        let errors = plain_lines(&restore.stderr).join("\n");
        assert!(
            errors.contains(expect),
            "{tool} snapshot restore {f}: {restore}"
        );
        assert!(!data_dir.exists(), "{tool} left {dd} behind");
    }
}

/// `data` followed by its SHA-256, written to `dir/name`.
fn with_hash(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    use std::process::Command;
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write");
    let out = Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout);
    let hash: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let mut all = data.to_vec();
    all.extend_from_slice(&hash);
    std::fs::write(&path, all).expect("write");
    path
}

#[test]
fn damaged_etcd_snapshots_are_refused() {
    let files = temp_dir();
    let etcd = Cluster::start(Kind::Etcd, 1);
    for i in 0..50 {
        etcd.ctl_ok(0, &["put", &format!("key{i}"), &"v".repeat(200)]);
    }
    let snap = files.path().join("good.db");
    etcd.ctl_ok(0, &["snapshot", "save", &snap.display().to_string()]);
    drop(etcd);
    let good = std::fs::read(&snap).expect("read");
    let db = &good[..good.len() - 32];
    let page = 4096;

    // Cut short: without its hash (refused as etcdctl refuses it), and, skipping the check,
    // without the pages the meta page names.
    let cut = files.path().join("cut.db");
    std::fs::write(&cut, &good[..good.len() / 2]).expect("write");
    refused(files.path(), &cut, false, "snapshot missing hash");
    refused(files.path(), &cut, true, "bbolt: ");

    // Every data page zeroed, with a matching hash: the tree cannot be read.
    let mut zeroed = db.to_vec();
    zeroed[2 * page..].fill(0);
    let zeroed = with_hash(files.path(), "zeroed.db", &zeroed);
    refused(files.path(), &zeroed, false, "bbolt: page ");

    // Both meta pages damaged.
    let mut metas = db.to_vec();
    metas[16 + 48] ^= 0x55;
    metas[page + 16 + 48] ^= 0x55;
    let metas = with_hash(files.path(), "metas.db", &metas);
    refused(files.path(), &metas, false, "meta checksum mismatch");

    // A leaf element pointing far past its page, in every leaf.
    let mut elems = db.to_vec();
    for p in 2..elems.len() / page {
        let at = p * page;
        if elems[at + 8] == 0x02 && elems[at + 10] > 0 {
            elems[at + 16 + 4..at + 16 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        }
    }
    let elems = with_hash(files.path(), "elems.db", &elems);
    refused(files.path(), &elems, false, "runs past the page end");
}
