//! `kill -9` in the middle of a stream of writes, restart on the same data dir: every
//! acknowledged write is there with its value and revision, revisions continue without gaps
//! or duplicates, and nothing else changed. Also: state (compaction, leases, deletes) survives
//! both a `kill -9` and a graceful stop.
//!
//! Each test runs against etcd too, as the oracle of what "survives" means.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_process_tests::b64;
use oxcd_process_tests::member::{Kind, Member};
use oxcd_process_tests::put_stream::{put_stream, Acked};
use serde_json::Value;

/// Every key with its value, create/mod revision and version, and the header revision.
struct Dump {
    revision: i64,
    kvs: Vec<(String, String, i64, i64, i64)>,
}

fn dump(member: &Member) -> Dump {
    let out = member.etcdctl(&["get", "", "--prefix", "-w", "json"]);
    assert_eq!(out.code, 0, "{}: get everything failed: {out}", member.kind);
    let json: Value = serde_json::from_str(out.stdout.trim()).expect("json");
    let kvs = json["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        b64::decode_str(kv["key"].as_str().unwrap_or("")),
                        b64::decode_str(kv["value"].as_str().unwrap_or("")),
                        kv["create_revision"].as_i64().unwrap_or(0),
                        kv["mod_revision"].as_i64().unwrap_or(0),
                        kv["version"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Dump {
        revision: json["header"]["revision"].as_i64().expect("revision"),
        kvs,
    }
}

fn kill_mid_stream(kind: Kind) {
    let mut member = Member::start(kind);
    let mut all_acked: Acked = Vec::new();
    // Indexes that were sent but not acknowledged: they may or may not have been applied.
    let mut maybe: Vec<usize> = Vec::new();
    let mut next_index = 0;
    for (cycle, kill_after) in [37usize, 61, 89].into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let limit = 100;
        let stream = {
            let (endpoint, stop, count) = (member.endpoint(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                put_stream(&[endpoint], next_index..next_index + limit, &stop, &count)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while count.load(Ordering::SeqCst) < kill_after
            && !stream.is_finished()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        member.kill9();
        stop.store(true, Ordering::SeqCst);
        let acked = stream.join().expect("put stream thread");
        assert!(
            acked.len() >= kill_after.min(limit),
            "{kind}: only {} of {kill_after} puts were acknowledged before the kill \
             (cycle {cycle})",
            acked.len()
        );
        let last = acked.last().map(|(i, _)| *i).unwrap_or(next_index);
        maybe.push(last + 1);
        next_index = last + 2;
        all_acked.extend(acked);

        member.restart();
        let d = dump(&member);
        // One `z/after<n>` put per earlier cycle.
        check_dump(kind, &d, &all_acked, &maybe, cycle);

        // The revision continues: the next write gets exactly revision + 1.
        let out = member.etcdctl(&["put", &format!("z/after{cycle}"), "x", "-w", "json"]);
        assert_eq!(out.code, 0, "{kind}: put after restart failed: {out}");
        let json: Value = serde_json::from_str(out.stdout.trim()).expect("json");
        assert_eq!(
            json["header"]["revision"].as_i64(),
            Some(d.revision + 1),
            "{kind}: first put after restart did not get revision {} + 1",
            d.revision
        );
    }
}

fn check_dump(kind: Kind, d: &Dump, acked: &Acked, maybe: &[usize], extra_puts: usize) {
    let mut seen_revs = Vec::new();
    let mut stream_keys = 0;
    for (key, value, create, modrev, version) in &d.kvs {
        seen_revs.push(*modrev);
        assert_eq!(create, modrev, "{kind}: {key} was written twice");
        assert_eq!(*version, 1, "{kind}: {key} has version {version}");
        if let Some(i) = key.strip_prefix("k/") {
            let i: usize = i.parse().expect("index");
            stream_keys += 1;
            assert_eq!(value, &format!("v{i}"), "{kind}: {key} has the wrong value");
            match acked.iter().find(|(a, _)| *a == i) {
                Some((_, rev)) => assert_eq!(
                    modrev, rev,
                    "{kind}: {key} has revision {modrev}, acknowledged {rev}"
                ),
                None => assert!(
                    maybe.contains(&i),
                    "{kind}: {key} exists but was never sent"
                ),
            }
        }
    }
    for (i, rev) in acked {
        let key = format!("k/{i:05}");
        assert!(
            d.kvs.iter().any(|kv| kv.0 == key),
            "{kind}: acknowledged put {key} (revision {rev}) is lost after kill -9"
        );
    }
    // Every revision from 2 up to the current one belongs to exactly one key.
    seen_revs.sort_unstable();
    let want: Vec<i64> = (2..=d.revision).collect();
    assert_eq!(
        seen_revs, want,
        "{kind}: revisions are not exactly 2..={} ({stream_keys} stream keys, {extra_puts} \
         other puts)",
        d.revision
    );
}

#[test]
fn kill9_mid_stream_etcd() {
    kill_mid_stream(Kind::Etcd);
}

#[test]
fn kill9_mid_stream_oxcd() {
    kill_mid_stream(Kind::Oxcd);
}

/// Reads whose output must be identical before and after a restart.
fn snapshot(member: &Member, lease: &str) -> Vec<(String, String, i32)> {
    let norm = member.norm();
    let cmds: Vec<Vec<&str>> = vec![
        vec!["get", "", "--prefix", "-w", "json"],
        vec!["get", "a", "--rev", "3"],
        vec!["get", "a", "--rev", "4", "-w", "json"],
        vec!["get", "a", "--rev", "5", "-w", "json"],
        vec!["lease", "list"],
        vec!["lease", "timetolive", lease, "--keys"],
        vec!["compaction", "3"],
        vec!["get", "gone"],
    ];
    cmds.iter()
        .map(|args| {
            let out = member.etcdctl(args);
            let stderr = norm.apply(&out.stderr);
            (norm.apply(&out.stdout), stderr, out.code)
        })
        .collect()
}

fn state_survives_restart(kind: Kind, graceful: bool) {
    let mut member = Member::start(kind);
    for args in [
        vec!["put", "a", "1"],
        vec!["put", "a", "2"],
        vec!["put", "a", "3"],
        vec!["put", "gone", "x"],
        vec!["del", "gone"],
        vec!["compaction", "4"],
    ] {
        let out = member.etcdctl(&args);
        assert_eq!(out.code, 0, "{kind}: {args:?}: {out}");
    }
    let out = member.etcdctl(&["lease", "grant", "600"]);
    let lease = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{kind}: lease grant: {out}"))
        .to_string();
    let out = member.etcdctl(&["put", "l", "leased", "--lease", &lease]);
    assert_eq!(out.code, 0, "{kind}: put with lease: {out}");

    let before = snapshot(&member, &lease);
    if graceful {
        member.stop();
        member.restart();
    } else {
        member.kill9();
        member.restart();
    }
    let after = snapshot(&member, &lease);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            b,
            a,
            "{kind}: output changed across a {} restart",
            if graceful { "graceful" } else { "kill -9" }
        );
    }
}

#[test]
fn state_survives_kill9_etcd() {
    state_survives_restart(Kind::Etcd, false);
}

#[test]
fn state_survives_kill9_oxcd() {
    state_survives_restart(Kind::Oxcd, false);
}

#[test]
fn state_survives_graceful_restart_etcd() {
    state_survives_restart(Kind::Etcd, true);
}

#[test]
fn state_survives_graceful_restart_oxcd() {
    state_survives_restart(Kind::Oxcd, true);
}
