//! Raft snapshots between real oxcd members: a follower that was down while the leader compacted
//! its log past everything the follower has must catch up from a snapshot of the leader's
//! database (sent over the peer port, installed in order with the log), then go on with entries.
//!
//! Three members with `--snapshot-count 100` (so the leader keeps only 100 entries behind each
//! compaction): one follower is killed (`kill -9`), ~6000 keys (plus leases, deletes and a
//! compaction) are written through the others, and the follower is restarted. It must reach the
//! same revision, `endpoint hashkv` and keys as the others, keep its lease table (a revoke through
//! it deletes the same keys everywhere), keep its identity, and restart again cleanly.

use std::time::{Duration, Instant};

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::ctl::{ctl, ctl_stdin, Ctl};
use oxcd_process_tests::member::Kind;
use serde_json::Value;

/// Keys written while the follower is down, in transactions of `PER_TXN` puts.
const KEYS: usize = 6000;
const PER_TXN: usize = 30;
/// Single puts made while the follower restarts and catches up.
const DURING: usize = 100;
/// How long the restarted follower may take to have every key.
const CATCH_UP: Duration = Duration::from_secs(60);

/// One txn of puts through `endpoint`.
fn txn_puts(endpoint: &str, keys: std::ops::Range<usize>) -> Result<(), String> {
    let mut stdin = String::from("\n");
    for k in keys {
        stdin.push_str(&format!("put key/{k:05} value-{k}\n"));
    }
    stdin.push_str("\n\n");
    let out = ctl_stdin(Ctl::Etcdctl, endpoint, &["txn"], &stdin);
    if out.code != 0 || !out.stdout.starts_with("SUCCESS") {
        return Err(format!("txn through {endpoint} failed: {out}"));
    }
    Ok(())
}

/// Every key and value with its revisions, read from member `i` alone (serializable).
fn all_kvs(c: &Cluster, i: usize) -> Vec<Value> {
    let out = c.ctl(
        i,
        &[
            "get",
            "",
            "--prefix",
            "--consistency=s",
            "-w",
            "json",
            "--command-timeout=20s",
        ],
    );
    let v = c.json(&out, "get --prefix");
    v["kvs"].as_array().cloned().unwrap_or_default()
}

fn log_of_run(c: &Cluster, i: usize) -> String {
    c.logs(i, usize::MAX / 2)
}

/// Polls until member `i` alone has exactly the keys of member `of`.
fn wait_same_keys(c: &Cluster, i: usize, of: usize) -> usize {
    let want = all_kvs(c, of);
    let deadline = Instant::now() + CATCH_UP;
    for _poll in 0..600 {
        let got = all_kvs(c, i);
        if got == want {
            return got.len();
        }
        if Instant::now() >= deadline {
            c.fail(&format!(
                "{} has {} keys, {} has {}",
                c.name(i),
                got.len(),
                c.name(of),
                want.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!("bounded by the deadline")
}

#[test]
fn lagging_follower_catches_up_from_a_snapshot() {
    let mut c = Cluster::start_with(Kind::Oxcd, 3, &["--snapshot-count", "100"]);
    let all = c.all();
    let leader = c.wait_leader(&all);
    let f = *all.iter().find(|&&i| i != leader).unwrap();
    let other = *all.iter().find(|&&i| i != leader && i != f).unwrap();
    c.ctl_ok(leader, &["put", "before", "kill"]);
    c.wait_converged(&all);
    c.kill9(f);

    // A lease with keys, to be revoked later through the restarted follower.
    let out = c.ctl_ok(leader, &["lease", "grant", "600"]);
    let lease = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| c.fail(&format!("no lease id in {out}")))
        .to_string();
    for k in 0..10 {
        c.ctl_ok(
            other,
            &[
                "put",
                &format!("leased/{k}"),
                "x",
                &format!("--lease={lease}"),
            ],
        );
    }

    // ~6000 keys in ~200 raft entries, from a few clients at once, through both live members;
    // a compaction and some deletes in between.
    let batches: Vec<std::ops::Range<usize>> = (0..KEYS)
        .step_by(PER_TXN)
        .map(|s| s..(s + PER_TXN).min(KEYS))
        .collect();
    let (first, second) = batches.split_at(batches.len() / 2);
    let endpoints = [c.endpoint(leader), c.endpoint(other)];
    let write = |part: &[std::ops::Range<usize>]| {
        let errors: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = part
                .chunks(part.len().div_ceil(4))
                .enumerate()
                .map(|(t, chunk)| {
                    let endpoint = &endpoints[t % 2];
                    s.spawn(move || {
                        chunk
                            .iter()
                            .try_for_each(|r| txn_puts(endpoint, r.clone()))
                            .err()
                    })
                })
                .collect();
            workers
                .into_iter()
                .filter_map(|w| w.join().expect("writer thread"))
                .collect()
        });
        if !errors.is_empty() {
            c.fail(&errors.join("\n"));
        }
    };
    write(first);
    for k in 0..20 {
        c.ctl_ok(leader, &["put", &format!("key/{k:05}"), "overwritten"]);
    }
    let (rev, _) = c.hashkv(leader).unwrap_or_else(|e| c.fail(&e));
    c.ctl_ok(leader, &["compaction", &rev.to_string()]);
    c.ctl_ok(other, &["del", "key/0010", "--prefix"]);
    write(second);
    c.ctl_ok(leader, &["put", "after", "everything"]);
    let live = [leader, other];
    let (rev, _) = c.wait_converged(&live);

    // The leader's log no longer holds what the follower needs.
    let log = log_of_run(&c, leader);
    assert!(
        log.contains("compacted raft logs"),
        "the leader never compacted its log:\n{}",
        c.logs(leader, 30)
    );

    // Writes go on while the follower restarts and installs the snapshot: the entries after the
    // snapshot must be applied after it, in order.
    let writer = {
        let endpoint = c.endpoint(other);
        std::thread::spawn(move || -> Result<(), String> {
            for k in 0..DURING {
                let out = ctl(
                    Ctl::Etcdctl,
                    &endpoint,
                    &["put", &format!("during/{k:03}"), "d"],
                );
                if out.code != 0 {
                    return Err(format!("put during catch-up failed: {out}"));
                }
            }
            Ok(())
        })
    };
    c.restart(&[f]);
    if let Err(e) = writer.join().expect("writer thread") {
        c.fail(&e);
    }
    let (rev_after, _) = c.wait_converged(&all);
    assert_eq!(rev_after, rev + DURING as i64);
    let n = wait_same_keys(&c, f, leader);
    assert_eq!(
        n,
        2 + 10 + KEYS - 10 + DURING,
        "before, after, leased/*, key/* but key/0010*, during/*"
    );

    let flog = log_of_run(&c, f);
    assert!(
        flog.contains("received and saved database snapshot")
            && flog.contains("restored database from snapshot"),
        "the follower did not catch up from a snapshot:\n{}",
        c.logs(f, 40)
    );
    let llog = log_of_run(&c, leader);
    assert!(
        llog.contains("sending database snapshot") && llog.contains("sent database snapshot"),
        "the leader did not send a snapshot:\n{}",
        c.logs(leader, 40)
    );

    // Its lessor was rebuilt from the snapshot: revoking through it deletes the same keys on
    // every member (the revoke is applied by each member's own lessor).
    c.ctl_ok(f, &["lease", "revoke", &lease]);
    c.ctl_ok(f, &["put", "via-follower", "y"]);
    c.wait_converged(&all);
    let out = c.ctl_ok(f, &["get", "leased/", "--prefix", "--keys-only"]);
    assert_eq!(out.stdout.trim(), "", "{out}");

    // It is still itself, and a restart after the install finds a consistent data dir.
    let s = c.status(f).unwrap_or_else(|e| c.fail(&e));
    assert_eq!(s.member_id, c.id(f));
    c.kill9(f);
    c.restart(&[f]);
    c.ctl_ok(leader, &["put", "after-restart", "z"]);
    c.wait_converged(&all);
    let s = c.status(f).unwrap_or_else(|e| c.fail(&e));
    assert_eq!(s.member_id, c.id(f));
    let out = c.ctl_ok(f, &["member", "list"]);
    assert_eq!(out.stdout.lines().count(), 3, "{out}");
    wait_same_keys(&c, f, leader);
}
