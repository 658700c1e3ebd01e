//! Defragmentation on a 3-member cluster, oxcd against etcd as the oracle.
//!
//! The backend is filled with large values that are then overwritten, deleted and compacted, so
//! most of the file is free pages. While a steady stream of puts and gets runs against every
//! member (one etcdctl process per request), `defrag --cluster` defragments each member in
//! turn. Then:
//!
//! * no client request failed (etcd stalls a member while it defragments; oxcd keeps serving);
//! * every member's file shrank to about its in-use size (`dbSize` vs `dbSizeInUse`);
//! * the data is intact: `endpoint hashkv --rev` at the revision before the load gives the
//!   same hash on every member as before the defrag, and the members converge afterwards;
//! * the outputs of `defrag --cluster` (etcdctl and oxctl) and of `defrag` with an endpoint
//!   that does not answer are etcd's, after normalisation;
//! * a stopped member's data dir is defragmented offline (`oxutl defrag --data-dir`, against
//!   `etcdctl defrag --data-dir` for etcd's files), shrinks, and the member restarts with its
//!   data and catches up.
//!
//! Nothing here asserts a duration: the stall is measured in `docs/benchmarks.md`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxcd_process_tests::cluster::{sorted_lines, Cluster, Transcript};
use oxcd_process_tests::ctl::{ctl, ctl_stdin, Ctl};
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::ports;
use oxcd_process_tests::restore::Tool;
use serde_json::Value;

oxcd_process_tests::cluster_tests!(defrag_under_load);

/// Large values: 30 per txn (under the 1.5 MiB request limit), `ROUNDS` times over the keys.
const VALUE_BYTES: usize = 20_000;
const BIG_KEYS: usize = 300;
const PER_TXN: usize = 30;
const ROUNDS: usize = 2;
/// Large keys that stay (live data the defrag must keep).
const KEEP_KEYS: usize = 20;
/// Requests of the load before and after the defrag (bounded loops, no timing).
const LOAD_BEFORE: usize = 10;
const LOAD_AFTER: usize = 10;

fn txn(endpoint: &str, lines: &[String]) -> Result<(), String> {
    let mut stdin = String::from("\n");
    for l in lines {
        stdin.push_str(l);
        stdin.push('\n');
    }
    stdin.push_str("\n\n");
    let out = ctl_stdin(
        Ctl::Etcdctl,
        endpoint,
        &["txn", "--command-timeout=30s"],
        &stdin,
    );
    if out.code != 0 || !out.stdout.starts_with("SUCCESS") {
        return Err(format!("txn failed: {out}"));
    }
    Ok(())
}

/// Fills the backend with mostly garbage: large values written `ROUNDS` times, all deleted but
/// `KEEP_KEYS`, compacted at the last revision.
fn fragment(c: &Cluster, t: &mut Transcript) {
    let ep = c.endpoint(0);
    for round in 0..ROUNDS {
        for chunk in (0..BIG_KEYS).collect::<Vec<_>>().chunks(PER_TXN) {
            let fill = (b'a' + round as u8) as char;
            let lines: Vec<String> = chunk
                .iter()
                .map(|k| format!("put big/{k:04} {}", fill.to_string().repeat(VALUE_BYTES)))
                .collect();
            if let Err(e) = txn(&ep, &lines) {
                c.fail(&e);
            }
        }
    }
    let lines: Vec<String> = (0..KEEP_KEYS)
        .map(|k| format!("put keep/{k:04} {}", "k".repeat(VALUE_BYTES)))
        .collect();
    if let Err(e) = txn(&ep, &lines) {
        c.fail(&e);
    }
    let out = c.ctl_ok(0, &["del", "big/", "--prefix"]);
    t.add("del big/ --prefix", out.stdout.clone());
    let rev = c.status(0).unwrap_or_else(|e| c.fail(&e)).revision;
    let out = c.ctl_ok(0, &["compaction", "--physical", &rev.to_string()]);
    t.add(
        "compaction --physical",
        out.stdout.replace(&rev.to_string(), "<REV>"),
    );
    // hashkv --rev needs a revision above the compacted one.
    c.ctl_ok(0, &["put", "marker", "after-compaction"]);
}

/// (dbSize, dbSizeInUse) of member `i`.
fn sizes(c: &Cluster, i: usize) -> (u64, u64) {
    let out = c.ctl_ok(i, &["endpoint", "status", "-w", "json"]);
    let v = c.json(&out, "endpoint status");
    let s = &v[0]["Status"];
    match (s["dbSize"].as_u64(), s["dbSizeInUse"].as_u64()) {
        (Some(size), Some(used)) => (size, used),
        _ => c.fail(&format!("no dbSize/dbSizeInUse in {v}")),
    }
}

/// `endpoint hashkv --rev rev` of member `i`.
fn hashkv_at(c: &Cluster, i: usize, rev: i64) -> u64 {
    let out = c.ctl_ok(
        i,
        &[
            "endpoint",
            "hashkv",
            "--rev",
            &rev.to_string(),
            "-w",
            "json",
        ],
    );
    let v = c.json(&out, "endpoint hashkv");
    v[0]["HashKV"]["hash"]
        .as_u64()
        .unwrap_or_else(|| c.fail(&format!("no hash in {v}")))
}

/// The `keep/` keys as member `i` serves them alone.
fn kept(c: &Cluster, i: usize) -> Value {
    let out = c.ctl_ok(
        i,
        &["get", "keep/", "--prefix", "--consistency=s", "-w", "json"],
    );
    c.json(&out, "get keep/")["kvs"].clone()
}

/// A steady stream of requests, alternating over the members: puts in one thread, gets in
/// another, each request its own etcdctl process, until `stop`.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(c: &Cluster) -> Load {
        let endpoints: Vec<String> = c.all().iter().map(|&i| c.endpoint(i)).collect();
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicUsize::new(0)),
            failures: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        let mut threads = Vec::new();
        for writer in [true, false] {
            let (stop, done, failures) =
                (load.stop.clone(), load.done.clone(), load.failures.clone());
            let endpoints = endpoints.clone();
            threads.push(std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let ep = &endpoints[i % endpoints.len()];
                    let key = format!("load/{:03}", i % 50);
                    let value = format!("v{i}");
                    let args: Vec<&str> = if writer {
                        vec!["put", &key, &value, "--command-timeout=30s"]
                    } else {
                        vec!["get", &key, "--command-timeout=30s"]
                    };
                    let out = ctl(Ctl::Etcdctl, ep, &args);
                    if out.code != 0 {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} via {ep}: {out}", args.join(" ")));
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            }));
        }
        Load { threads, ..load }
    }

    /// Waits (bounded) until `n` more requests have finished.
    fn wait_requests(&self, n: usize) {
        let target = self.done.load(Ordering::SeqCst) + n;
        for _ in 0..3000 {
            if self.done.load(Ordering::SeqCst) >= target {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let f = self.failures.lock().unwrap().clone();
        f
    }
}

fn outcome(out: &oxcd_process_tests::Output, norm: &oxcd_process_tests::Norm) -> String {
    let stderr: Vec<&str> = out.stderr.lines().filter(|l| !l.starts_with('{')).collect();
    format!(
        "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.code,
        sorted_lines(&norm.apply(&out.stdout)),
        norm.apply(&stderr.join("\n"))
    )
}

fn defrag_under_load(kind: Kind) -> Transcript {
    let mut t = Transcript::new();
    let mut c = Cluster::start(kind, 3);
    let all = c.all();
    let leader = c.wait_leader(&all);
    let roles = c.roles_by_leader(leader);
    let mut norm = c.norm(&roles);

    fragment(&c, &mut t);
    let (rev0, hash0) = c.wait_converged(&all);
    let before: Vec<(u64, u64)> = all.iter().map(|&i| sizes(&c, i)).collect();
    let kept0 = kept(&c, 0);
    if kept0.as_array().map_or(0, Vec::len) != KEEP_KEYS {
        t.problem(format!("expected {KEEP_KEYS} keep/ keys, got {kept0}"));
    }

    // Online, under load, every member in turn.
    let load = Load::start(&c);
    load.wait_requests(LOAD_BEFORE);
    let out = ctl(Ctl::Etcdctl, &c.endpoint(0), &["defrag", "--cluster"]);
    t.add("etcdctl defrag --cluster", outcome(&out, &norm));
    let out = ctl(Ctl::Oxctl, &c.endpoint(1), &["defrag", "--cluster"]);
    t.add("oxctl defrag --cluster", outcome(&out, &norm));
    load.wait_requests(LOAD_AFTER);
    let failures = load.finish();
    if !failures.is_empty() {
        t.problem(format!(
            "{} client requests failed during defrag, first: {}",
            failures.len(),
            failures[0]
        ));
    }
    for (&i, &(size, used)) in all.iter().zip(&before) {
        let (after, used_after) = sizes(&c, i);
        if after >= size / 2 || after > used_after + used_after / 2 + (1 << 20) {
            t.problem(format!(
                "{}: db size {size} (in use {used}) became {after} (in use {used_after})",
                c.name(i)
            ));
        }
        let h = hashkv_at(&c, i, rev0);
        if h != hash0 {
            t.problem(format!(
                "{}: hashkv at {rev0} was {hash0}, after defrag {h}",
                c.name(i)
            ));
        }
        if kept(&c, i) != kept0 {
            t.problem(format!("{}: keep/ keys changed by the defrag", c.name(i)));
        }
    }
    c.wait_converged(&all);

    // An endpoint that does not answer.
    let dead = ports::free_port();
    norm.literal(&format!("127.0.0.1:{dead}"), "<DEAD>");
    // The leader's endpoint: its role name is the same on both servers.
    let leader = c.wait_leader(&c.all());
    let eps = format!("{},127.0.0.1:{dead}", c.endpoint(leader));
    for which in [Ctl::Etcdctl, Ctl::Oxctl] {
        let out = ctl(
            which,
            &eps,
            &["defrag", "--command-timeout=2s", "--dial-timeout=1s"],
        );
        t.add(
            format!(
                "{} defrag with a dead endpoint",
                if which == Ctl::Etcdctl {
                    "etcdctl"
                } else {
                    "oxctl"
                }
            ),
            outcome(&out, &norm),
        );
    }

    // Offline, on a stopped follower; it restarts with its data and catches up.
    let f = (leader + 1) % all.len();
    c.ctl_ok(leader, &["put", "while-stopped", "no"]);
    c.stop(f);
    c.ctl_ok(leader, &["put", "while-stopped", "yes"]);
    let data_dir = c.data_dir(f);
    let db = data_dir.join("member/snap/db");
    let size = std::fs::metadata(&db).map_or(0, |m| m.len());
    let dir = data_dir.to_string_lossy().to_string();
    let out = Tool::offline_for(kind).run(&["defrag", "--data-dir", &dir]);
    t.add(
        "offline defrag --data-dir",
        format!("exit {}\n--- stdout ---\n{}", out.code, out.stdout),
    );
    let after = std::fs::metadata(&db).map_or(0, |m| m.len());
    if out.code != 0 || after > size {
        t.problem(format!(
            "offline defrag of {dir}: {size} -> {after} bytes: {out}"
        ));
    }
    c.restart(&[f]);
    c.wait_converged(&all);
    if kept(&c, f) != kept0 {
        t.problem(format!(
            "{}: keep/ keys changed by offline defrag",
            c.name(f)
        ));
    }
    let out = c.ctl_ok(f, &["get", "while-stopped", "--print-value-only"]);
    t.add("get after restart", out.stdout);
    if hashkv_at(&c, f, rev0) != hash0 {
        t.problem(format!("{}: hashkv at {rev0} changed", c.name(f)));
    }
    t
}
