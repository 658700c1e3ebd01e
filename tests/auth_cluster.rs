//! Auth across a 3-member cluster, the same steps on etcd and on oxcd: users, roles and the
//! enabled flag are replicated (every member answers the same allowed/denied), a token made on
//! one member is honoured by the others, a member that was down while auth changed catches up
//! (on oxcd from a raft snapshot: `--snapshot-count 10` compacts its log away), and everything
//! survives a restart of the whole cluster.

use std::time::Duration;

use oxcd_process_tests::cluster::{Cluster, Transcript};
use oxcd_process_tests::ctl::Output;
use oxcd_process_tests::member::Kind;

oxcd_process_tests::cluster_tests!(auth_across_members);

/// Writes while the third member is down: enough entries for oxcd to compact its log past it.
const WRITES_WHILE_DOWN: usize = 30;

/// Exit code, stdout and the `Error:` lines: what an operator sees, without the client's retry
/// warnings (which carry timestamps and random client ids).
fn outcome(out: &Output) -> String {
    let errors: Vec<&str> = out.stderr.lines().filter(|l| !l.starts_with('{')).collect();
    format!(
        "exit code {}\n{}{}\n",
        out.code,
        out.stdout,
        errors.join("\n")
    )
}

/// Waits until every member reports the same revision (`endpoint status` needs no user, where
/// `endpoint hashkv` would need root).
fn wait_same_revision(c: &Cluster, t: &mut Transcript) {
    let mut last = Vec::new();
    for _poll in 0..300 {
        last = c
            .all()
            .iter()
            .map(|&i| c.status(i).map(|s| s.revision))
            .collect();
        if last.iter().all(|r| r.is_ok() && *r == last[0]) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    t.problem(format!("members did not reach the same revision: {last:?}"));
}

fn step(c: &Cluster, t: &mut Transcript, i: usize, args: &[&str]) {
    let out = c.ctl(i, args);
    t.add(format!("m{} {}", i + 1, args.join(" ")), outcome(&out));
}

fn setup(c: &Cluster, t: &mut Transcript) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "k"],
        &["user", "add", "ro:ropw"],
        &["user", "grant-role", "ro", "reader"],
        &["put", "k", "v"],
        &["auth", "enable"],
    ] {
        step(c, t, 0, args);
    }
}

fn auth_across_members(kind: Kind) -> Transcript {
    let mut c = Cluster::start_with(kind, 3, &["--snapshot-count", "10"]);
    c.wait_leader(&c.all());
    let mut t = Transcript::new();
    setup(&c, &mut t);

    // Every member knows the users, roles and the enabled flag.
    for i in c.all() {
        step(&c, &mut t, i, &["--user", "ro:ropw", "get", "k"]);
        step(&c, &mut t, i, &["--user", "ro:ropw", "put", "k", "x"]);
        step(&c, &mut t, i, &["get", "k"]);
        step(&c, &mut t, i, &["--user", "root:rootpw", "user", "list"]);
    }
    // A client given every endpoint authenticates on one member and may send to another.
    for _ in 0..3 {
        let out = c.ctl_on(&c.all(), &["--user", "ro:ropw", "get", "k"]);
        t.add("all members: ro get k", outcome(&out));
    }

    // Auth changes while the third member is down.
    c.kill9(2);
    c.wait_leader(&[0, 1]);
    let root = ["--user", "root:rootpw"];
    for args in [
        &["user", "add", "u2:pw2"][..],
        &["role", "grant-permission", "reader", "read", "k2"],
        &["user", "grant-role", "u2", "reader"],
        &["role", "revoke-permission", "reader", "k"],
    ] {
        let args: Vec<&str> = root.iter().chain(args).copied().collect();
        step(&c, &mut t, 0, &args);
    }
    for n in 0..WRITES_WHILE_DOWN {
        let v = format!("v{n}");
        let out = c.ctl(0, &["--user", "root:rootpw", "put", "k2", &v]);
        if out.code != 0 {
            t.problem(format!("put {n} while m3 is down failed: {out}"));
        }
    }
    c.restart(&[2]);
    wait_same_revision(&c, &mut t);
    step(&c, &mut t, 2, &["--user", "u2:pw2", "get", "k2"]);
    step(&c, &mut t, 2, &["--user", "ro:ropw", "get", "k"]);
    step(
        &c,
        &mut t,
        2,
        &["--user", "root:rootpw", "role", "get", "reader"],
    );

    // The whole cluster restarted: auth is still on, with the same users and roles.
    c.restart(&c.all());
    c.wait_leader(&c.all());
    for i in c.all() {
        step(&c, &mut t, i, &["get", "k2"]);
        step(&c, &mut t, i, &["--user", "u2:pw2", "get", "k2"]);
    }
    step(&c, &mut t, 1, &["--user", "root:rootpw", "auth", "disable"]);
    for i in c.all() {
        step(&c, &mut t, i, &["get", "k"]);
    }
    t
}
