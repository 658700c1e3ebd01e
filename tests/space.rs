//! Space and integrity: the "database space exceeded" runbook on a 3-member cluster with a
//! small quota (compared with etcd step by step, with the real etcdctl and with oxctl), alarms
//! that survive a restart, members whose backend file is damaged, and the corruption checks
//! (`--experimental-initial-corrupt-check`, `--experimental-corrupt-check-time`).
//!
//! etcd's bbolt and oxcd's redb grow differently, so transcripts hold outcomes (which command
//! failed, with which error; which alarms are listed) rather than sizes or revision counts.

use std::time::{Duration, Instant};

use oxcd_process_tests::cluster::{shown, sorted_lines, Cluster, Transcript};
use oxcd_process_tests::ctl::{ctl, ctl_stdin, Ctl, Output};
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::Norm;
use serde_json::Value;

/// The quota of the runbook's members: 16 MiB.
const QUOTA: &str = "--quota-backend-bytes=16777216";
/// The runbook overwrites this many keys, so that a compaction frees nearly everything.
const KEYS: usize = 8;
/// Bound on the puts that fill the quota (each carries `VALUE_BYTES`).
const MAX_FILL_PUTS: usize = 600;
const VALUE_BYTES: usize = 100 * 1024;
const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

oxcd_process_tests::cluster_tests!(runbook_etcdctl, runbook_oxctl);

/// The runbook with the real etcdctl on both servers.
fn runbook_etcdctl(kind: Kind) -> Transcript {
    runbook(kind, Ctl::Etcdctl)
}

/// The runbook with oxctl against oxcd, compared with etcdctl against etcd.
fn runbook_oxctl(kind: Kind) -> Transcript {
    let which = match kind {
        Kind::Etcd => Ctl::Etcdctl,
        _ => Ctl::Oxctl,
    };
    runbook(kind, which)
}

/// The last `Error:` line of a failed command (the client's retry warnings vary).
fn error_line(out: &Output) -> String {
    out.stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or("<no Error: line>")
        .to_string()
}

fn outcome(out: &Output) -> String {
    if out.code == 0 {
        format!("exit code 0\n{}", out.stdout)
    } else {
        format!("exit code {}\n{}\n", out.code, error_line(out))
    }
}

/// Checks that `text` lists only NOSPACE alarms of members of the cluster (one line each, as
/// etcdctl prints them) and at least one; returns the sorted lines.
fn nospace_lines(text: &str, norm: &Norm, t: &mut Transcript, what: &str) -> Vec<String> {
    let lines: Vec<String> = norm
        .apply(text)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let shape = regex::Regex::new(r"^memberID:<(L|F1|F2)> alarm:NOSPACE $").unwrap();
    if lines.is_empty() || lines.iter().any(|l| !shape.is_match(l)) {
        t.problem(format!("{what}: expected NOSPACE alarms, got {lines:?}"));
    }
    let mut sorted = lines;
    sorted.sort();
    sorted
}

fn runbook(kind: Kind, which: Ctl) -> Transcript {
    let c = Cluster::start_with(kind, 3, &[QUOTA]);
    let leader = c.wait_leader(&c.all());
    let roles = c.roles_by_leader(leader);
    let norm = c.norm(&roles);
    let mut t = Transcript::new();
    let at = |role: &str| roles.iter().position(|r| r == role).unwrap();
    let run = |role: &str, args: &[&str]| ctl(which, &c.endpoint(at(role)), args);

    // Fill: overwrite a few keys with large values until the quota is hit.
    let value = "x".repeat(VALUE_BYTES);
    let mut failure = None;
    for n in 0..MAX_FILL_PUTS {
        let key = format!("key{}", n % KEYS);
        let out = ctl_stdin(which, &c.endpoint(at("F1")), &["put", &key], &value);
        if out.code != 0 {
            failure = Some(out);
            break;
        }
    }
    let Some(failure) = failure else {
        c.fail(&format!("{MAX_FILL_PUTS} puts never exceeded the quota"));
    };
    t.add("fill until a put fails (via F1)", outcome(&failure));
    if !failure.stderr.contains(NOSPACE) {
        t.problem(format!(
            "the failing put did not say {NOSPACE:?}: {failure}"
        ));
    }

    // Every member lists the same NOSPACE alarm(s).
    let mut lists = Vec::new();
    for role in ["L", "F1", "F2"] {
        let out = run(role, &["alarm", "list"]);
        let lines = nospace_lines(
            &out.stdout,
            &norm,
            &mut t,
            &format!("alarm list via {role}"),
        );
        lists.push(lines);
        t.add(
            format!("alarm list (via {role})"),
            format!("exit code {}; only NOSPACE alarms\n", out.code),
        );
    }
    if lists.iter().any(|l| *l != lists[0]) {
        t.problem(format!("members list different alarms: {lists:?}"));
    }

    // Reads and deletes work, writes and lease grants fail.
    t.add(
        "get key0 --keys-only (via L)",
        outcome(&run("L", &["get", "key0", "--keys-only"])),
    );
    t.add(
        "put foo bar (via L)",
        outcome(&run("L", &["put", "foo", "bar"])),
    );
    t.add(
        "put foo bar (via F2)",
        outcome(&run("F2", &["put", "foo", "bar"])),
    );
    t.add(
        "lease grant 60 (via F2)",
        outcome(&run("F2", &["lease", "grant", "60"])),
    );
    t.add("del key7 (via L)", outcome(&run("L", &["del", "key7"])));

    // endpoint status shows the alarm in ERRORS; its JSON gives the revision.
    let out = run("L", &["endpoint", "status", "-w", "json"]);
    let json: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    let rev = json[0]["Status"]["header"]["revision"]
        .as_i64()
        .unwrap_or(0);
    let errors: Vec<String> = json[0]["Status"]["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    nospace_lines(&errors.join("\n"), &norm, &mut t, "endpoint status errors");
    t.add(
        "endpoint status -w json (via L)",
        format!(
            "exit code {}; revision > 0: {}; errors are NOSPACE alarms\n",
            out.code,
            rev > 0
        ),
    );
    let out = run("L", &["endpoint", "status"]);
    let simple = norm.apply(&out.stdout);
    if !simple.contains("alarm:NOSPACE") {
        t.problem(format!("endpoint status shows no alarm: {simple}"));
    }

    // The fix: compact, defragment, disarm.
    let out = run("L", &["compaction", &rev.to_string()]);
    t.add(
        "compaction $rev (via L)",
        outcome(&out).replace(&rev.to_string(), "<REV>"),
    );
    let out = run("F1", &["defrag", "--cluster"]);
    t.add(
        "defrag --cluster (via F1)",
        format!(
            "exit code {}\n{}",
            out.code,
            sorted_lines(&norm.apply(&out.stdout))
        ),
    );
    let out = run("F2", &["alarm", "disarm"]);
    nospace_lines(&out.stdout, &norm, &mut t, "alarm disarm");
    t.add(
        "alarm disarm (via F2)",
        format!("exit code {}; disarmed NOSPACE alarms\n", out.code),
    );
    t.add(
        "alarm list (via L)",
        shown(&run("L", &["alarm", "list"]), &norm),
    );
    t.add(
        "put newkey 123 (via L)",
        outcome(&run("L", &["put", "newkey", "123"])),
    );
    t.add(
        "get newkey (via F2)",
        outcome(&run("F2", &["get", "newkey"])),
    );
    t.add("lease grant 60 (via F1)", {
        let out = run("F1", &["lease", "grant", "60"]);
        format!("exit code {}", out.code)
    });
    if !t.problems.is_empty() {
        t.logs = c.all_logs();
    }
    t
}

/// Polls `f` until it returns Some, for at most `timeout`.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts member `i` again on its data dir and waits until it answers `endpoint status` (its
/// `/health` is false while an alarm is active, as etcd's).
fn start_again(c: &mut Cluster, i: usize, extra: &[&str]) {
    let mut args = c.args(i);
    args.extend(extra.iter().map(|s| s.to_string()));
    c.spawn_args(i, args);
    if poll(Duration::from_secs(30), || c.status(i).ok()).is_none() {
        c.fail("the member did not answer after its restart");
    }
}

/// A NOSPACE alarm is in the backend: a restarted member still has it and still refuses puts.
#[test]
fn alarm_survives_restart() {
    // Below the size of an empty backend: the first put exceeds it.
    let mut c = Cluster::start_with(Kind::Oxcd, 1, &["--quota-backend-bytes=100000"]);
    let out = c.ctl(0, &["put", "a", "1"]);
    assert!(out.stderr.contains(NOSPACE), "put over the quota: {out}");
    let id = c.id(0);
    let want = format!("memberID:{id} alarm:NOSPACE \n");
    assert_eq!(c.ctl_ok(0, &["alarm", "list"]).stdout, want);
    c.stop(0);
    start_again(&mut c, 0, &[]);
    assert_eq!(c.ctl_ok(0, &["alarm", "list"]).stdout, want);
    let out = c.ctl(0, &["put", "b", "2"]);
    assert!(out.stderr.contains(NOSPACE), "put after restart: {out}");
    let out = c.ctl(0, &["endpoint", "status"]);
    assert!(out.stdout.trim_end().ends_with(want.trim_end()), "{out}");
    // Disarmed, the member takes the same put... and raises the alarm again, since the quota
    // is still below the backend's size.
    let out = c.ctl_ok(0, &["alarm", "disarm"]);
    assert_eq!(out.stdout, want);
    assert_eq!(c.ctl_ok(0, &["alarm", "list"]).stdout, "");
    let out = c.ctl(0, &["put", "b", "2"]);
    assert!(out.stderr.contains(NOSPACE), "{out}");
    // A put refused when applied raises the alarm through raft after answering (as etcd's
    // capped applier does), so the alarm shows up shortly after, not necessarily at once.
    let listed = poll(Duration::from_secs(10), || {
        let list = c.ctl_ok(0, &["alarm", "list"]).stdout;
        (list == want).then_some(list)
    });
    assert!(listed.is_some(), "NOSPACE not raised again within 10 s");
}

/// Damages member `m`'s backend file with `damage`, starts it again, and returns what it said
/// when it refused to start.
fn refused_start(c: &mut Cluster, damage: impl Fn(&std::path::Path)) -> String {
    let db = c.data_dir(0).join("member").join("snap").join("db");
    damage(&db);
    let args = c.args(0);
    c.spawn_args(0, args);
    let Some(status) = c.wait_exit(0, Duration::from_secs(20)) else {
        c.fail("a member with a damaged backend kept running");
    };
    assert!(!status.success(), "exit status {status}");
    let stderr = c.logs(0, 5);
    assert!(
        stderr.contains(&db.display().to_string()) && stderr.contains("is damaged"),
        "the refusal names the file: {stderr}"
    );
    stderr
}

/// A member whose backend file is truncated, overwritten with garbage, emptied or has
/// scrambled pages refuses to start, naming the file, rather than serve wrong data.
#[test]
fn damaged_backend_refuses_to_start() {
    let mut c = Cluster::start(Kind::Oxcd, 1);
    for i in 0..50 {
        c.ctl_ok(0, &["put", &format!("k{i}"), &"v".repeat(1000)]);
    }
    c.stop(0);
    let db = c.data_dir(0).join("member").join("snap").join("db");
    let good = std::fs::read(&db).unwrap();
    let len = good.len();
    let restore = |p: &std::path::Path| std::fs::write(p, &good).unwrap();
    refused_start(&mut c, |p| {
        restore(p);
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len as u64 / 2)
            .unwrap();
    });
    refused_start(&mut c, |p| {
        let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(p, garbage).unwrap();
    });
    refused_start(&mut c, |p| std::fs::write(p, b"").unwrap());
    refused_start(&mut c, |p| {
        let mut b = good.clone();
        for i in (4096..b.len()).step_by(997) {
            b[i] ^= 0xff;
        }
        std::fs::write(p, b).unwrap();
    });
    // Given its file back, it starts and serves the data.
    restore(&db);
    c.restart(&[0]);
    assert_eq!(
        c.ctl_ok(0, &["get", "k49", "--print-value-only"])
            .stdout
            .len(),
        1001
    );
}

/// Changes the stored value `from` into `to` (same length) inside a closed backend file, as a
/// flipped bit on disk would: the database stays readable, the data is wrong.
fn rewrite_value(db: &std::path::Path, from: &[u8], to: &[u8]) {
    // Through redb's own API, in a proper transaction: the file stays sound page by page (the
    // start-up integrity check would refuse a byte-patched one), only its data is wrong.
    use redb::ReadableTable;
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("key");
    let db = redb::Database::open(db).expect("open the member's backend");
    let txn = db.begin_write().unwrap();
    let mut found = 0;
    {
        let mut t = txn.open_table(table).unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = t
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        for (k, v) in rows {
            if let Some(at) = v.windows(from.len()).position(|w| w == from) {
                let mut changed = v.clone();
                changed[at..at + from.len()].copy_from_slice(to);
                t.insert(&k[..], &changed[..]).unwrap();
                found += 1;
            }
        }
    }
    txn.commit().unwrap();
    assert!(found > 0, "value not found in the backend");
}

/// A member whose data silently differs from its peers' refuses to start with
/// `--experimental-initial-corrupt-check`; started without it, the leader's periodic check
/// raises a CORRUPT alarm, after which writes fail as etcd's do.
#[test]
fn corruption_checks() {
    let mut c = Cluster::start_with(Kind::Oxcd, 3, &["--experimental-corrupt-check-time=1s"]);
    let leader = c.wait_leader(&c.all());
    let victim = (leader + 1) % 3;
    let good = format!("good-{}", "A".repeat(40));
    let bad = format!("bad!-{}", "A".repeat(40));
    c.ctl_ok(leader, &["put", "precious", &good]);
    c.ctl_ok(leader, &["put", "other", "x"]);
    c.wait_converged(&c.all());
    // A clean restart with the check passes.
    c.stop(victim);
    let mut args = c.args(victim);
    args.push("--experimental-initial-corrupt-check".into());
    c.spawn_args(victim, args.clone());
    if let Err(e) = c.wait_ready(&[victim], Duration::from_secs(30)) {
        c.fail(&format!("clean member with the initial check: {e}"));
    }
    c.stop(victim);

    let db = c.data_dir(victim).join("member").join("snap").join("db");
    rewrite_value(&db, good.as_bytes(), bad.as_bytes());
    c.spawn_args(victim, args);
    let Some(status) = c.wait_exit(victim, Duration::from_secs(30)) else {
        c.fail("a member with data unlike its peers' passed the initial corruption check");
    };
    assert!(!status.success());
    let logs = c.logs(victim, 5);
    let text = format!("{:x} found data inconsistency with peers", c.id(victim));
    assert!(logs.contains(&text), "expected {text:?} in {logs}");

    // Without the initial check it starts; the leader's periodic check finds it.
    start_again(&mut c, victim, &[]);
    let alarms = poll(Duration::from_secs(30), || {
        let out = c.ctl(leader, &["alarm", "list"]);
        out.stdout.contains("alarm:CORRUPT").then_some(out.stdout)
    });
    let Some(alarms) = alarms else {
        c.fail("no CORRUPT alarm after the periodic checks");
    };
    assert!(
        alarms.contains(&format!("memberID:{} alarm:CORRUPT ", c.id(victim))),
        "{alarms}"
    );
    let out = c.ctl(leader, &["put", "k", "v"]);
    assert!(
        out.stderr.contains("etcdserver: corrupt cluster"),
        "put with a CORRUPT alarm: {out}"
    );
    // Reads are still served.
    let out = c.ctl_ok(leader, &["get", "other", "--print-value-only"]);
    assert_eq!(out.stdout, "x\n");
    let out = c.ctl(leader, &["endpoint", "status"]);
    assert!(out.stdout.contains("alarm:CORRUPT"), "{out}");
}
