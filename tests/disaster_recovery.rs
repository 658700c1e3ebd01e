//! Disaster recovery: `snapshot save` from a surviving member, `snapshot status`, and
//! `snapshot restore` into a new cluster, from a saved snapshot or straight from a dead
//! member's `member/snap/db`.
//!
//! The cluster scenarios run on a real etcd cluster (the oracle, restored with etcdctl 3.4) and
//! on an oxcd cluster (restored with oxctl and oxutl); each checks the outcome on its server
//! (every key back at its revision, a new cluster ID, the three new members) and records a
//! transcript of normalised outputs, and the two transcripts must be equal. Snapshot files are
//! not comparable across servers (bolt against redb), so hashes, key counts and sizes are
//! checked per server and only revisions go into the transcripts.
//!
//! The single-member tests compare the tools' texts directly: `snapshot status` of oxctl and
//! oxutl (identical), and of etcdctl and oxctl in every format; the errors of `status`,
//! `save` and `restore`.

use std::path::{Path, PathBuf};

use oxcd_process_tests::b64;
use oxcd_process_tests::cluster::{canon_json, shown, status_summary, Cluster, Transcript};
use oxcd_process_tests::ctl::{ctl, Ctl, Output};
use oxcd_process_tests::member::{Kind, Member};
use oxcd_process_tests::normalize::{granted_lease, Norm};
use oxcd_process_tests::restore::{
    backend_path, copy_file, log_msgs, outcome, restore_cluster, restore_member, status, Tool,
};
use oxcd_process_tests::scenario::clip;
use regex::Regex;
use serde_json::Value;

oxcd_process_tests::cluster_tests!(majority_loss_restore, restore_from_member_db);

/// The tools that restore `kind`'s files: etcdctl for etcd; for oxcd, oxctl restores the first
/// member and oxutl the others, so both are exercised on the same cluster.
fn restore_tools(kind: Kind) -> Vec<Tool> {
    match kind {
        Kind::Etcd => vec![Tool::Etcdctl],
        Kind::Oxcd => vec![Tool::Oxctl, Tool::Oxutl, Tool::Oxutl],
    }
}

/// The member with role `role`.
fn by_role(roles: &[String], role: &str) -> usize {
    roles
        .iter()
        .position(|r| r == role)
        .unwrap_or_else(|| panic!("no member has role {role}: {roles:?}"))
}

/// A temp dir for snapshot files, kept with `OXCD_TEST_KEEP=1`.
struct Files(Option<tempfile::TempDir>);

impl Files {
    fn new() -> Files {
        Files(Some(
            tempfile::Builder::new()
                .prefix("oxcd-test-backup-")
                .tempdir()
                .expect("temp dir"),
        ))
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.as_ref().expect("dir").path().join(name)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        if std::env::var_os("OXCD_TEST_KEEP").is_some() {
            if let Some(d) = self.0.take() {
                eprintln!("kept {}", d.keep().display());
            }
        }
    }
}

/// The data every scenario writes before the disaster, through member `via`: ten keys, one
/// deleted, one overwritten, a key attached to a 600 s lease, a compaction at revision 5.
/// Returns the lease id.
fn write_data(c: &Cluster, via: usize) -> u64 {
    for i in 1..=10 {
        c.ctl_ok(via, &["put", &format!("k{i:02}"), &format!("v{i}")]);
    }
    c.ctl_ok(via, &["del", "k03"]);
    c.ctl_ok(via, &["put", "k04", "v4-again"]);
    let out = c.ctl_ok(via, &["lease", "grant", "600"]);
    let lease = granted_lease(&out.stdout).expect("lease id");
    c.ctl_ok(via, &["put", "leased", "x", &format!("--lease={lease:x}")]);
    c.ctl_ok(via, &["compaction", "5"]);
    lease
}

/// The keys of `get "" --prefix -w json` with everything but the header: key, value,
/// revisions, version and lease (as `<LEASE>`).
fn kvs_text(stdout: &str, lease: u64) -> String {
    let json: Value = match serde_json::from_str(stdout.trim()) {
        Ok(v) => v,
        Err(_) => return format!("no JSON: {stdout}"),
    };
    let mut text = format!(
        "revision {}, count {}\n",
        json["header"]["revision"], json["count"]
    );
    for kv in json["kvs"].as_array().cloned().unwrap_or_default() {
        let l = kv["lease"].as_u64().unwrap_or(0);
        text.push_str(&format!(
            "{}={} create {} mod {} version {} lease {}\n",
            b64::decode_str(kv["key"].as_str().unwrap_or("")),
            b64::decode_str(kv["value"].as_str().unwrap_or("")),
            kv["create_revision"],
            kv["mod_revision"],
            kv["version"],
            if l == 0 {
                "0".to_string()
            } else if l == lease {
                "<LEASE>".to_string()
            } else {
                format!("{l:x} (not the lease granted before)")
            }
        ));
    }
    text
}

/// The restored cluster, checked and recorded: a new cluster ID and new member IDs, three
/// started members named like before, every key at its revision through every member, the
/// compaction, the lease with its key, and writes going on from the old revision.
fn check_restored(
    t: &mut Transcript,
    old: &Cluster,
    n: &Cluster,
    before_kvs: &str,
    rev_before: i64,
    lease: u64,
) {
    let leader = n.wait_leader(&n.all());
    let roles = n.roles_by_leader(leader);
    let mut norm: Norm = n.norm(&roles);
    norm.lease(lease);
    if n.cluster_id() == old.cluster_id() {
        t.problem(format!(
            "the restored cluster kept the old cluster ID {:x}",
            old.cluster_id()
        ));
    }
    for i in n.all() {
        if old.index_of(n.id(i)).is_some() {
            t.problem(format!(
                "restored member {} kept an old member ID {:x}",
                n.name(i),
                n.id(i)
            ));
        }
    }
    t.add(
        "restored cluster: new cluster ID and member IDs",
        format!(
            "cluster ID differs: {}\n",
            n.cluster_id() != old.cluster_id()
        ),
    );

    // The members: the new ones, all started.
    if let Err(e) = n.wait_member_lists_agree(&n.all()) {
        t.problem(e);
    }
    let out = n.ctl_ok(leader, &["member", "list", "-w", "json"]);
    let members = n.json(&out, "member list")["members"].clone();
    let listed = members.as_array().map_or(0, |m| m.len());
    if listed != 3 {
        t.problem(format!(
            "member list shows {listed} members: {}",
            out.stdout
        ));
    }
    t.add(
        "etcdctl member list -w json (via L)",
        canon_json(&out.stdout, &norm),
    );

    // The data, through every member, at the revisions it had.
    for (i, role) in roles.iter().enumerate() {
        let out = n.ctl_ok(i, &["get", "", "--prefix", "-w", "json"]);
        let kvs = kvs_text(&out.stdout, lease);
        if kvs != before_kvs {
            t.problem(format!(
                "via {role} after the restore:\n{kvs}\nbefore the disaster:\n{before_kvs}"
            ));
        }
    }
    let out = n.ctl_ok(leader, &["get", "", "--prefix", "-w", "json"]);
    t.add(
        "etcdctl get '' --prefix -w json (via L), keys only",
        kvs_text(&out.stdout, lease),
    );
    let out = n.ctl(leader, &["get", "k01", "--rev=4"]);
    t.add("etcdctl get k01 --rev=4 (via L)", shown(&out, &norm));
    let out = n.ctl(leader, &["get", "k04", "--rev=6", "-w", "json"]);
    t.add(
        "etcdctl get k04 --rev=6 -w json (via L), keys only",
        kvs_text(&out.stdout, lease),
    );

    // The lease and its key.
    let out = n.ctl(leader, &["lease", "list"]);
    t.add("etcdctl lease list (via L)", shown(&out, &norm));
    let out = n.ctl(
        leader,
        &["lease", "timetolive", &format!("{lease:x}"), "--keys"],
    );
    t.add(
        "etcdctl lease timetolive LEASE --keys (via L)",
        shown(&out, &norm),
    );

    // Writes go on from the old revision, on every member.
    let f1 = by_role(&roles, "F1");
    let out = n.ctl_ok(f1, &["put", "after-restore", "yes", "-w", "json"]);
    let json = n.json(&out, "put");
    let rev = json["header"]["revision"].as_i64().unwrap_or(0);
    if rev != rev_before + 1 {
        t.problem(format!(
            "the first put after the restore got revision {rev}, expected {}",
            rev_before + 1
        ));
    }
    t.add(
        "etcdctl put after-restore yes -w json (via F1)",
        norm.apply(&out.stdout),
    );
    let (rev, _) = n.wait_converged(&n.all());
    t.add("revision once converged", format!("{rev}\n"));
    let out = n.ctl(leader, &["endpoint", "status", "--cluster", "-w", "json"]);
    match status_summary(&out.stdout) {
        Ok(s) => t.add("etcdctl endpoint status --cluster -w json (via L)", s),
        Err(e) => t.problem(format!("endpoint status --cluster: {}", clip(&e, 300, 5))),
    }
}

/// Checks a snapshot file's status with the server's tool (and, for oxcd, that oxctl says
/// the same as oxutl); records the revision.
fn check_status(t: &mut Transcript, kind: Kind, file: &Path, rev_before: i64, hashed: bool) {
    let tool = Tool::offline_for(kind);
    let st = match status(tool, file) {
        Ok(st) => st,
        Err(e) => {
            t.problem(e);
            return;
        }
    };
    let file_size = std::fs::metadata(file).map_or(0, |m| m.len());
    let want_size = if hashed { file_size - 32 } else { file_size };
    if st.total_size != want_size || st.total_key == 0 || st.hash == 0 {
        t.problem(format!(
            "{tool} snapshot status of a {file_size}-byte file: {st:?} (expected size {want_size})"
        ));
    }
    if st.revision != rev_before {
        t.problem(format!(
            "snapshot status says revision {}, the cluster was at {rev_before}",
            st.revision
        ));
    }
    if kind == Kind::Oxcd {
        match status(Tool::Oxctl, file) {
            Ok(s) if s == st => {}
            other => t.problem(format!("oxctl snapshot status {other:?}, oxutl {st:?}")),
        }
    }
    let name = file
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    t.add(
        format!("snapshot status {name} -w json: revision"),
        format!("{}\n", st.revision),
    );
}

/// Records each member's restore: exit code, output, log messages.
fn record_restores(t: &mut Transcript, n: &Cluster, file: &Path, outs: &[Output]) {
    let f = file.display().to_string();
    for (i, out) in outs.iter().enumerate() {
        let dir = n.data_dir(i).display().to_string();
        t.add(
            format!("snapshot restore FILE --name {} ...", n.name(i)),
            outcome(out, &[(&f, "<FILE>"), (&dir, "<DATA_DIR>")]),
        );
    }
}

/// A majority of a three-member cluster is lost for good. The survivor (no leader, but it
/// still answers) gives a snapshot; `snapshot status` reads it; a new three-member cluster
/// (new ports, new data dirs, new token) restored from it has every key.
fn majority_loss_restore(kind: Kind) -> Transcript {
    let mut t = Transcript::new();
    let files = Files::new();
    let mut c = Cluster::start(kind, 3);
    let leader = c.wait_leader(&c.all());
    let roles = c.roles_by_leader(leader);
    let lease = write_data(&c, leader);
    let (rev_before, _) = c.wait_converged(&c.all());
    t.add("revision before the disaster", format!("{rev_before}\n"));
    let out = c.ctl_ok(leader, &["get", "", "--prefix", "-w", "json"]);
    let before_kvs = kvs_text(&out.stdout, lease);
    t.add("data before the disaster", before_kvs.clone());

    // The leader and one follower are gone for good.
    let (f1, f2) = (by_role(&roles, "F1"), by_role(&roles, "F2"));
    c.kill9(leader);
    c.kill9(f1);
    c.wait_no_leader(&[f2]);

    // A snapshot from the survivor, with the real etcdctl and with oxctl.
    let file = files.path("backup.db");
    let f = file.display().to_string();
    let out = ctl(Ctl::Etcdctl, &c.endpoint(f2), &["snapshot", "save", &f]);
    t.add(
        "etcdctl snapshot save FILE (via F2)",
        outcome(&out, &[(&f, "<FILE>")]),
    );
    let file2 = files.path("backup-oxctl.db");
    let f_2 = file2.display().to_string();
    let out = ctl(Ctl::Oxctl, &c.endpoint(f2), &["snapshot", "save", &f_2]);
    t.add(
        "oxctl snapshot save FILE (via F2)",
        outcome(&out, &[(&f_2, "<FILE>")]),
    );
    if !file.exists() {
        c.fail("etcdctl snapshot save wrote no file");
    }
    check_status(&mut t, kind, &file, rev_before, true);
    check_status(&mut t, kind, &file2, rev_before, true);

    // A new cluster from the snapshot; the old one is gone.
    c.kill9(f2);
    let (n, outs) = restore_cluster(kind, 3, &file, false, &restore_tools(kind));
    record_restores(&mut t, &n, &file, &outs);
    check_restored(&mut t, &c, &n, &before_kvs, rev_before, lease);
    if !t.problems.is_empty() {
        t.logs = n.all_logs();
    }
    t
}

/// Every member is lost and no snapshot was saved: the backend file of a dead member
/// (`member/snap/db`, copied) is restored with `--skip-hash-check`; without it, restore
/// refuses the file. A copy of a member killed with `kill -9` has a readable status too.
fn restore_from_member_db(kind: Kind) -> Transcript {
    let mut t = Transcript::new();
    let files = Files::new();
    let mut c = Cluster::start(kind, 3);
    let leader = c.wait_leader(&c.all());
    let roles = c.roles_by_leader(leader);
    let lease = write_data(&c, leader);
    let (rev_before, _) = c.wait_converged(&c.all());
    t.add("revision before the disaster", format!("{rev_before}\n"));
    let out = c.ctl_ok(leader, &["get", "", "--prefix", "-w", "json"]);
    let before_kvs = kvs_text(&out.stdout, lease);

    // One member dies hard, the others stop; their data dirs are all that is left.
    let (f1, f2) = (by_role(&roles, "F1"), by_role(&roles, "F2"));
    c.kill9(f2);
    c.stop(leader);
    c.stop(f1);
    let killed = files.path("killed-db");
    copy_file(&backend_path(&c, f2), &killed);
    let killed_status = status(Tool::offline_for(kind), &killed);
    if let Err(e) = &killed_status {
        t.problem(format!("status of a killed member's backend: {e}"));
    }
    t.add(
        "snapshot status of a killed member's member/snap/db",
        format!("ok: {}\n", killed_status.is_ok()),
    );

    let file = files.path("db");
    copy_file(&backend_path(&c, f1), &file);
    check_status(&mut t, kind, &file, rev_before, false);

    // Without --skip-hash-check the bare database is refused.
    let f = file.display().to_string();
    let scratch = files.path("refused");
    let s = scratch.display().to_string();
    let out = Tool::offline_for(kind).run(&["snapshot", "restore", &f, "--data-dir", &s]);
    t.add(
        "snapshot restore DB (no --skip-hash-check)",
        outcome(&out, &[(&f, "<FILE>"), (&s, "<DATA_DIR>")]),
    );

    let (n, outs) = restore_cluster(kind, 3, &file, true, &restore_tools(kind));
    record_restores(&mut t, &n, &file, &outs);
    check_restored(&mut t, &c, &n, &before_kvs, rev_before, lease);
    if !t.problems.is_empty() {
        t.logs = n.all_logs();
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Single-member tests: the tools' texts.
// ---------------------------------------------------------------------------------------------

/// The same writes on a fresh member of either server; returns the revision.
fn fill(m: &Member) -> i64 {
    for i in 1..=5 {
        let out = m.etcdctl(&["put", &format!("key{i}"), &format!("value{i}")]);
        assert_eq!(out.code, 0, "put: {out}");
    }
    let out = m.etcdctl(&["del", "key2"]);
    assert_eq!(out.code, 0, "del: {out}");
    m.revision()
}

/// `which snapshot save` of member `m` into `file`, which must succeed.
fn save(which: Ctl, m: &Member, file: &Path) -> Output {
    let out = m.ctl(which, &["snapshot", "save", &file.display().to_string()]);
    assert_eq!(out.code, 0, "{which} snapshot save: {out}");
    assert!(
        out.stdout == format!("Snapshot saved at {}\n", file.display()),
        "{out}"
    );
    out
}

/// A status output with what legitimately differs between a bolt and a redb file (hash, key
/// count, size) replaced.
fn norm_status(text: &str, format: &str) -> String {
    let rules: &[(&str, &str)] = match format {
        "simple" => &[(
            r"(?m)^[0-9a-f]+, (\d+), \d+, [0-9.]+ [kMG]?B$",
            "<HASH>, $1, <KEYS>, <SIZE>",
        )],
        "json" => &[
            (r#""hash":\d+"#, r#""hash":<HASH>"#),
            (r#""totalKey":\d+"#, r#""totalKey":<KEYS>"#),
            (r#""totalSize":\d+"#, r#""totalSize":<SIZE>"#),
        ],
        "fields" => &[
            (r#""Hash" : \d+"#, r#""Hash" : <HASH>"#),
            (r#""Keys" : \d+"#, r#""Keys" : <KEYS>"#),
            (r#""Size" : \d+"#, r#""Size" : <SIZE>"#),
        ],
        "table" => &[
            (
                r"(?m)^\|[ 0-9a-f]+\|([ 0-9]+)\|[ 0-9]+\|[ 0-9.kMGB]+\|$",
                "| <HASH> |$1| <KEYS> | <SIZE> |",
            ),
            (r"(?m)^\|   HASH   \|", "| HASH |"),
            (r"(?m)^\|  HASH   \|", "| HASH |"),
            (r"(?m)^\+-+\+", "+-+"),
        ],
        _ => &[],
    };
    let mut text = text.to_string();
    for (re, with) in rules {
        text = Regex::new(re)
            .expect("regex")
            .replace_all(&text, *with)
            .into_owned();
    }
    // Column widths follow the hash and size widths.
    if format == "table" {
        text = text
            .lines()
            .map(|l| {
                if l.starts_with('|') {
                    let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                    format!("| {} |\n", cells.join(" | "))
                } else if l.starts_with('+') {
                    "+-+\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
    }
    text
}

const FORMATS: [&str; 6] = ["simple", "table", "json", "fields", "protobuf", "yaml"];

#[test]
fn snapshot_status_oxctl_and_oxutl_print_the_same() {
    let files = Files::new();
    let m = Member::start(Kind::Oxcd);
    let rev = fill(&m);
    let file = files.path("s.db");
    save(Ctl::Oxctl, &m, &file);
    let f = file.display().to_string();
    for format in FORMATS {
        let a = Tool::Oxctl.run(&["snapshot", "status", &f, "-w", format]);
        let b = Tool::Oxutl.run(&["snapshot", "status", &f, "-w", format]);
        assert_eq!(a, b, "-w {format}: oxctl\n{a}\noxutl\n{b}");
    }
    let out = Tool::Oxutl.run(&["snapshot", "status", &f]);
    let re = Regex::new(&format!(r"^[0-9a-f]+, {rev}, \d+, [0-9.]+ [kMG]?B\n$")).unwrap();
    assert!(re.is_match(&out.stdout), "{out}");
    // A bare member/snap/db (no hash) reads the same as the saved snapshot of the same data.
    let st = status(Tool::Oxutl, &file).unwrap();
    assert_eq!(st.revision, rev);
    assert_eq!(
        st.total_size + 32,
        std::fs::metadata(&file).unwrap().len(),
        "total size is the database without its hash"
    );
}

#[test]
fn snapshot_status_like_etcdctl() {
    let files = Files::new();
    let e = Member::start(Kind::Etcd);
    let o = Member::start(Kind::Oxcd);
    assert_eq!(fill(&e), fill(&o));
    let (ef, of) = (files.path("etcd.db"), files.path("oxcd.db"));
    save(Ctl::Etcdctl, &e, &ef);
    save(Ctl::Etcdctl, &o, &of);
    let (ef, of) = (ef.display().to_string(), of.display().to_string());
    let mut diffs = Vec::new();
    for format in FORMATS {
        let want = Tool::Etcdctl.run(&["snapshot", "status", &ef, "-w", format]);
        for tool in [Tool::Oxctl, Tool::Oxutl] {
            let got = tool.run(&["snapshot", "status", &of, "-w", format]);
            let (w, g) = (
                format!(
                    "{}\n{}{}",
                    want.code,
                    norm_status(&want.stdout, format),
                    want.stderr
                ),
                format!(
                    "{}\n{}{}",
                    got.code,
                    norm_status(&got.stdout, format),
                    got.stderr
                ),
            );
            if w != g {
                diffs.push(format!(
                    "-w {format}: etcdctl (normalised)\n{w}\n{tool} (normalised)\n{g}"
                ));
            }
        }
    }
    // Errors: the texts and exit codes are etcdctl's.
    let junk = files.path("junk.db");
    std::fs::write(&junk, b"hello\n").unwrap();
    let junk = junk.display().to_string();
    let missing = files.path("missing.db").display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["snapshot", "status"],
        vec!["snapshot", "status", &ef, &ef],
        vec!["snapshot", "status", &missing],
        vec!["snapshot", "status", &missing, "-w", "json"],
        vec!["snapshot", "status", &junk],
        vec!["snapshot", "status", &junk, "-w", "table"],
        vec!["snapshot", "status", &junk, "-w", "foo"],
    ];
    for args in cases {
        let want = Tool::Etcdctl.run(&args);
        for tool in [Tool::Oxctl, Tool::Oxutl] {
            let got = tool.run(&args);
            if (got.code, &got.stdout, &got.stderr) != (want.code, &want.stdout, &want.stderr) {
                diffs.push(format!("{args:?}: etcdctl\n{want}\n{tool}\n{got}"));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

#[test]
fn snapshot_save_like_etcdctl() {
    let files = Files::new();
    let e = Member::start(Kind::Etcd);
    let o = Member::start(Kind::Oxcd);
    fill(&e);
    fill(&o);
    let f = files.path("s.db");
    let fs = f.display().to_string();
    let want = e.ctl(Ctl::Etcdctl, &["snapshot", "save", &fs]);
    std::fs::remove_file(&f).unwrap();
    let want = outcome(&want, &[(&fs, "<FILE>")]);
    let mut diffs = Vec::new();
    for (which, m) in [(Ctl::Oxctl, &o), (Ctl::Etcdctl, &o), (Ctl::Oxctl, &e)] {
        let got = m.ctl(which, &["snapshot", "save", &fs]);
        std::fs::remove_file(&f).ok();
        let got = outcome(&got, &[(&fs, "<FILE>")]);
        if got != want {
            diffs.push(format!(
                "{which} against {}:\n{got}\netcdctl against etcd:\n{want}",
                m.kind
            ));
        }
    }
    // No such directory; no argument; several endpoints.
    let bad = files.path("no/such/dir/s.db").display().to_string();
    for args in [
        vec!["snapshot", "save", bad.as_str()],
        vec!["snapshot", "save"],
    ] {
        let want = e.ctl(Ctl::Etcdctl, &args);
        let got = o.ctl(Ctl::Oxctl, &args);
        let (w, g) = (
            outcome(&want, &[(&bad, "<FILE>")]),
            outcome(&got, &[(&bad, "<FILE>")]),
        );
        if w != g {
            diffs.push(format!("{args:?}: oxctl\n{g}\netcdctl\n{w}"));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// Replaces Go's `%v` of a byte slice (`[59 230 ...]`) by `<SHA>`.
fn norm_sha(text: &str) -> String {
    Regex::new(r"\[[0-9 ]+\]")
        .unwrap()
        .replace_all(text, "<SHA>")
        .into_owned()
}

#[test]
fn snapshot_restore_errors_like_etcdctl() {
    let files = Files::new();
    let e = Member::start(Kind::Etcd);
    let o = Member::start(Kind::Oxcd);
    fill(&e);
    fill(&o);
    // Per server: a saved snapshot, one with a damaged body, and a bare backend file.
    let mut sets = Vec::new();
    for m in [&e, &o] {
        let saved = files.path(&format!("{}-saved.db", m.kind));
        save(Ctl::Etcdctl, m, &saved);
        let bad = files.path(&format!("{}-bad.db", m.kind));
        let mut bytes = std::fs::read(&saved).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        std::fs::write(&bad, bytes).unwrap();
        let raw = files.path(&format!("{}-raw.db", m.kind));
        copy_file(&m.data_dir().join("member/snap/db"), &raw);
        sets.push((saved, bad, raw));
    }
    let exists = files.path("exists");
    std::fs::create_dir_all(exists.join("wal")).unwrap();
    let ex = exists.display().to_string();
    let wal = exists.join("wal").display().to_string();
    let missing = files.path("missing.db").display().to_string();

    let mut diffs = Vec::new();
    let mut n = 0;
    let mut run_case = |name: &str, args: &dyn Fn(&str) -> Vec<String>| {
        let mut outs = Vec::new();
        for (i, tool) in [Tool::Etcdctl, Tool::Oxctl, Tool::Oxutl].iter().enumerate() {
            let (saved, bad, raw) = &sets[i.min(1)];
            n += 1;
            let dir = files.path(&format!("restore-{n}"));
            let d = dir.display().to_string();
            let a: Vec<String> = args(&d)
                .into_iter()
                .map(|s| {
                    s.replace("{saved}", &saved.display().to_string())
                        .replace("{bad}", &bad.display().to_string())
                        .replace("{raw}", &raw.display().to_string())
                })
                .collect();
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let out = tool.run(&a);
            let subs = [
                (saved.display().to_string(), "<FILE>".to_string()),
                (bad.display().to_string(), "<FILE>".to_string()),
                (raw.display().to_string(), "<FILE>".to_string()),
                (d.clone(), "<DIR>".to_string()),
            ];
            let subs: Vec<(&str, &str)> =
                subs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            outs.push((*tool, norm_sha(&outcome(&out, &subs))));
        }
        for (tool, got) in &outs[1..] {
            if *got != outs[0].1 {
                diffs.push(format!("{name}: {tool}\n{got}\netcdctl\n{}", outs[0].1));
            }
        }
    };
    let base = |file: &str, d: &str| -> Vec<String> {
        vec![
            "snapshot".into(),
            "restore".into(),
            file.into(),
            "--data-dir".into(),
            d.into(),
        ]
    };
    run_case("no argument", &|_| {
        vec!["snapshot".into(), "restore".into()]
    });
    run_case("missing file", &|d| base(&missing, d));
    run_case("bare backend without --skip-hash-check", &|d| {
        base("{raw}", d)
    });
    run_case("damaged snapshot", &|d| base("{bad}", d));
    run_case("data dir exists", &|_| base("{saved}", &ex));
    run_case("wal dir exists", &|d| {
        let mut a = base("{saved}", d);
        a.extend(["--wal-dir".to_string(), wal.clone()]);
        a
    });
    run_case("name not in the initial cluster", &|d| {
        let mut a = base("{saved}", d);
        a.extend(["--name".to_string(), "other".to_string()]);
        a
    });
    run_case("bad initial cluster", &|d| {
        let mut a = base("{saved}", d);
        a.extend(["--initial-cluster".to_string(), "bad".to_string()]);
        a
    });
    run_case("duplicate peer URL", &|d| {
        let mut a = base("{saved}", d);
        a.extend([
            "--initial-cluster".to_string(),
            "default=http://localhost:2380,x=http://localhost:2380".to_string(),
        ]);
        a
    });
    run_case("a good restore", &|d| base("{saved}", d));
    run_case("a bare backend with --skip-hash-check", &|d| {
        let mut a = base("{raw}", d);
        a.push("--skip-hash-check".to_string());
        a
    });
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// `log_msgs` is what the transcripts compare of the tools' stderr; make sure restore's lines
/// are the ones etcdctl prints, in order.
#[test]
fn restore_logs_etcdctls_lines() {
    let files = Files::new();
    let o = Member::start(Kind::Oxcd);
    fill(&o);
    let saved = files.path("s.db");
    save(Ctl::Oxctl, &o, &saved);
    let d = files.path("r").display().to_string();
    let out = Tool::Oxutl.run(&[
        "snapshot",
        "restore",
        &saved.display().to_string(),
        "--data-dir",
        &d,
        "--name",
        "b",
        "--initial-cluster",
        "a=http://127.0.0.1:1,b=http://127.0.0.1:2",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2",
    ]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        log_msgs(&out.stderr),
        vec![
            "restoring snapshot",
            "added member",
            "added member",
            "restored snapshot"
        ],
        "{out}"
    );
    let first: Value = serde_json::from_str(out.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(first["data-dir"], d.as_str());
    assert_eq!(first["wal-dir"], format!("{d}/member/wal").as_str());
    assert_eq!(first["snap-dir"], format!("{d}/member/snap").as_str());
}

/// `restore_member` is used by the scenarios; this keeps its flags honest against etcdctl's
/// parser as well (an unknown flag would fail there first).
#[test]
fn restore_member_flags_parse_everywhere() {
    let files = Files::new();
    let c = Cluster::unstarted(Kind::Oxcd, 1);
    let missing = files.path("missing.db");
    for tool in [Tool::Etcdctl, Tool::Oxctl, Tool::Oxutl] {
        let out = restore_member(tool, &c, 0, &missing, true);
        assert!(
            out.stderr.contains("no such file or directory") && out.code == 1,
            "{tool}: {out}"
        );
    }
}
