//! Runtime reconfiguration: the membership procedures operators run by hand, each on a real
//! etcd cluster (the oracle, driven by etcdctl) and on an oxcd cluster (driven by oxctl and,
//! for most, by the real etcdctl too), with data written before and verified after.
//!
//! Each scenario asserts its outcomes (a failed check is reported, the scenario goes on) and
//! records a transcript of normalised outputs (see [`oxcd_process_tests::reconfig`]); the
//! transcript of every other run must equal etcd's with etcdctl.
//!
//! Tests per scenario: `etcd_oracle` (the checks hold on etcd with etcdctl), `oxctl_oxcd`,
//! `etcdctl_oxcd`, `oxctl_etcd` (compared with etcd + etcdctl) and, ignored, `etcd_twice`.

use oxcd_process_tests::cluster::{sorted_lines, Transcript};
use oxcd_process_tests::ctl::Ctl;
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::reconfig::{
    copy_dir, excerpt, flag_value, phrases_found, with_flag, Reconf,
};
use oxcd_process_tests::reconfig_tests;

reconfig_tests!(
    scale_out_and_in => [oxctl_oxcd, etcdctl_oxcd, oxctl_etcd],
    learner => [oxctl_oxcd, etcdctl_oxcd, oxctl_etcd],
    replace_failed_member => [oxctl_oxcd, etcdctl_oxcd, oxctl_etcd],
    update_peer_url => [oxctl_oxcd, oxctl_etcd],
    migrate_data_dir => [oxctl_oxcd, oxctl_etcd],
    remove_and_move_leader => [oxctl_oxcd, etcdctl_oxcd, oxctl_etcd],
    removed_member_stays_out => [oxctl_oxcd, oxctl_etcd],
    reconfig_errors => [oxctl_oxcd, etcdctl_oxcd, oxctl_etcd],
    force_new_cluster => [oxctl_oxcd, etcdctl_oxcd, oxctl_etcd],
);

/// What etcd logs when it finds itself removed.
const REMOVED: &str = "the member has been permanently removed from the cluster";

/// etcd's texts for a join whose `--initial-cluster` does not match the cluster.
const JOIN_ERRORS: &[&str] = &[
    "error validating peerURLs",
    "member count is unequal",
    "PeerURLs: no match found for existing member",
];

/// Scenario 1: scale 3 -> 5 -> 3. Two members are added one at a time (`member add`, then
/// started with `existing`), each catches up and serves; then both are removed and exit.
fn scale_out_and_in(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    r.member_lists("F1");

    r.add_member("L", "N4", false);
    // Listed as unstarted: no name, no client URLs.
    r.member_lists("F1");
    r.join("N4");
    r.member_lists("N4");
    r.put("N4", "b", "2");
    r.read("N4", false, &[("a", "1"), ("b", "2")]);

    r.add_member("F2", "N5", false);
    r.member_lists("N4");
    r.join("N5");
    r.read("N5", true, &[("a", "1"), ("b", "2")]);
    r.read("N5", false, &[("a", "1"), ("b", "2")]);
    r.put("N5", "c", "3");
    let five = ["L", "F1", "F2", "N4", "N5"];
    r.converged(&five);
    r.status_cluster("N5");
    r.member_lists("L");

    r.remove_member("L", "N4");
    r.removed_member_exits("N4", false);
    r.member_lists("F1");
    r.remove_member("F2", "N5");
    r.removed_member_exits("N5", false);
    r.member_lists("F1");

    r.put("F1", "d", "4");
    let abcd = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
    for role in ["L", "F1", "F2"] {
        r.read(role, false, &abcd);
    }
    r.converged(&["L", "F1", "F2"]);
    r.status_cluster("F2");
    r.finish()
}

/// Scenario 2: a learner: added (`--learner`), listed as such, the documented errors (a second
/// learner, promoting it before it runs, promoting a voter or an unknown id), started, caught
/// up, refusing writes and linearizable reads but serving serializable ones, promoted, then a
/// voter; a second learner is then allowed, and removed again.
fn learner(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");

    r.add_member("L", "N4", true);
    r.member_lists("F1");
    let p5 = r.scratch_peer("M5_PEER");
    r.reconfig_fails(
        "L",
        &[
            "member",
            "add",
            "m5",
            &format!("--peer-urls={p5}"),
            "--learner",
        ],
        "etcdserver: too many learner members in cluster",
    );
    let n4 = r.hex_id("N4");
    r.reconfig_fails(
        "L",
        &["member", "promote", &n4],
        "etcdserver: can only promote a learner member which is in sync with leader",
    );

    r.join("N4");
    r.member_lists("F1");
    r.ok("N4", &["endpoint", "status", "-w", "json"]);
    let learner_error = "etcdserver: rpc not supported for learner";
    r.fails("N4", &["put", "b", "2"], learner_error);
    r.fails("N4", &["get", "a"], learner_error);
    r.read("N4", true, &[("a", "1")]);
    r.ok("N4", &["get", "a", "--consistency=s"]);
    r.fails("N4", &["member", "list"], learner_error);

    let l = r.hex_id("L");
    r.reconfig_fails(
        "F1",
        &["member", "promote", &l],
        "etcdserver: can only promote a learner member",
    );
    r.reconfig_fails(
        "F1",
        &["member", "promote", "1234"],
        "etcdserver: member not found",
    );
    r.reconfig("F1", &["member", "promote", &n4]);
    let i = r.at("N4");
    r.learner[i] = false;
    r.member_lists("N4");
    r.put("N4", "b", "2");
    r.read("N4", false, &[("a", "1"), ("b", "2")]);
    r.converged(&["L", "F1", "F2", "N4"]);
    r.status_cluster("L");

    // With no learner left, another one may come; a learner may be removed.
    r.add_member("F2", "N5", true);
    r.join("N5");
    r.read("N5", true, &[("a", "1"), ("b", "2")]);
    r.remove_member("L", "N5");
    r.removed_member_exits("N5", false);
    r.member_lists("F2");
    r.read("F2", false, &[("a", "1"), ("b", "2")]);
    r.finish()
}

/// Scenario 3: replace a failed member: one of three is killed, removed, and a new member on
/// new ports is added and started with `existing`; it holds all the data.
fn replace_failed_member(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    r.put("F1", "b", "2");
    let f2 = r.at("F2");
    r.c.kill9(f2);
    r.put("L", "c", "3");
    // Still a member, still listed as started.
    r.member_lists("F1");
    r.remove_member("L", "F2");
    r.member_lists("F1");

    r.add_member("F1", "N4", false);
    r.join("N4");
    let abc = [("a", "1"), ("b", "2"), ("c", "3")];
    r.read("N4", true, &abc);
    r.read("N4", false, &abc);
    r.put("N4", "d", "4");
    let abcd = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
    for role in ["L", "F1", "N4"] {
        r.read(role, false, &abcd);
    }
    r.converged(&["L", "F1", "N4"]);
    r.member_lists("N4");
    r.status_cluster("N4");
    r.finish()
}

/// Scenario 4: `member update` a member's peer URL, then restart it listening there; the
/// cluster is healthy and it serves the data.
fn update_peer_url(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    let f1 = r.at("F1");
    let id = r.hex_id("F1");
    let url = r.new_peer_port(f1);
    r.reconfig(
        "L",
        &["member", "update", &id, &format!("--peer-urls={url}")],
    );
    r.member_lists("F2");
    r.put("L", "b", "2");

    // Restart it on the new peer URL (same data dir, same client URL).
    r.c.stop(f1);
    r.start_member(f1);
    let all = r.c.all();
    r.c.wait_leader(&all);
    r.converged(&["L", "F1", "F2"]);
    r.read("F1", false, &[("a", "1"), ("b", "2")]);
    r.put("F1", "c", "3");
    r.read("F2", false, &[("a", "1"), ("b", "2"), ("c", "3")]);
    health_cluster(&mut r, "F1");
    r.status_cluster("F1");
    r.member_lists("F1");
    r.finish()
}

/// Scenario 5: migrate a member: stop it, copy its data dir elsewhere, `member update` its
/// peer URL, start it from the copy on the new peer port (the old data dir is gone); it keeps
/// its member id and its data.
fn migrate_data_dir(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    r.put("F1", "b", "2");
    let f1 = r.at("F1");
    let id_before = r.c.id(f1);

    r.c.stop(f1);
    let old_dir = r.c.data_dir(f1);
    let new_dir = r.c.dir().join(format!("{}-moved", r.c.name(f1)));
    copy_dir(&old_dir, &new_dir).expect("copy the data dir");
    std::fs::remove_dir_all(&old_dir).expect("remove the old data dir");
    let id = r.hex_id("F1");
    let url = r.new_peer_port(f1);
    r.reconfig(
        "L",
        &["member", "update", &id, &format!("--peer-urls={url}")],
    );
    r.put("L", "c", "3");

    let args = with_flag(&r.c.args(f1), "data-dir", &new_dir.display().to_string());
    r.set_args(f1, args);
    r.start_member(f1);
    let all = r.c.all();
    r.c.wait_leader(&all);
    r.converged(&["L", "F1", "F2"]);
    let same_id = match r.c.status(f1) {
        Ok(s) => s.member_id == id_before,
        Err(e) => {
            r.t.problem(format!("endpoint status of the moved member: {e}"));
            false
        }
    };
    if !same_id {
        r.t.problem("the moved member has another member id");
    }
    r.t.add(
        "the moved member keeps its member id",
        format!("{same_id}\n"),
    );
    let abc = [("a", "1"), ("b", "2"), ("c", "3")];
    r.read("F1", true, &abc);
    r.read("F1", false, &abc);
    r.put("F1", "d", "4");
    r.read(
        "L",
        false,
        &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
    );
    r.member_lists("F1");
    r.status_cluster("L");
    r.finish()
}

/// Scenario 6: `move-leader` to a named follower (leadership moves there), its errors, then
/// `member remove` of the (new) leader: it exits, the others elect a leader and go on.
fn remove_and_move_leader(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    let all = r.c.all();
    let f1 = r.hex_id("F1");

    // etcdctl sends MoveLeader to the leader, which must be among the endpoints.
    let out = r.run_on(&all, &["move-leader", &f1]);
    let text = r.shown(&out);
    if out.code != 0 || !text.contains("Leadership transferred from <L> to <F1>") {
        r.t.problem(format!("move-leader to F1: {out}"));
    }
    r.record("ctl move-leader <F1> (via [L, F1, F2])".into(), &out);
    let leader = r.c.wait_leader(&all);
    let role = r.roles[leader].clone();
    if role != "F1" {
        r.t.problem(format!("after move-leader to F1 the leader is {role}"));
    }
    r.t.add("leader after move-leader", format!("{role}\n"));

    let f2 = r.hex_id("F2");
    r.fails("F2", &["move-leader", &f2], "no leader endpoint given at");
    let out = r.run_on(&all, &["move-leader", "1234"]);
    if out.code == 0 || !out.stderr.contains("etcdserver: bad leader transferee") {
        r.t.problem(format!("move-leader to an unknown member: {out}"));
    }
    r.record("ctl move-leader 1234 (via [L, F1, F2])".into(), &out);

    // Remove the leader (F1 now).
    r.remove_member("F2", "F1");
    r.removed_member_exits("F1", false);
    let survivors = r.ats(&["L", "F2"]);
    r.c.wait_leader(&survivors);
    r.put("F2", "b", "2");
    r.read("L", false, &[("a", "1"), ("b", "2")]);
    r.read("F2", false, &[("a", "1"), ("b", "2")]);
    r.converged(&["L", "F2"]);
    r.member_lists("L");
    r.status_cluster("L");
    r.finish()
}

/// Scenario 7: a removed member exits by itself (logging that it was removed); restarted on
/// its old data dir it exits again and stays out of the member list.
fn removed_member_stays_out(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    r.remove_member("L", "F2");
    let f2 = r.at("F2");
    r.removed_member_exits("F2", true);
    let logs = r.c.logs(f2, usize::MAX);
    r.t.add("removed member F2 logs", phrases_found(&logs, &[REMOVED]));
    r.put("L", "b", "2");

    let args = r.c.args(f2);
    let (code, logs) = r.run_to_exit(f2, args);
    if code.is_none() {
        r.t.problem("the removed member, restarted on its data dir, still runs after 20 s");
    }
    r.t.add(
        "removed member F2 restarted on its old data dir",
        format!(
            "exits by itself: {}; exit code: {code:?}\n{}",
            code.is_some(),
            phrases_found(&logs, &[REMOVED])
        ),
    );
    r.member_lists("F1");
    r.read("L", false, &[("a", "1"), ("b", "2")]);
    r.read("F1", false, &[("a", "1"), ("b", "2")]);
    r.converged(&["L", "F1"]);
    r.status_cluster("F1");
    r.finish()
}

/// Scenario 8: the errors: an existing peer URL, unknown ids; a member started with a wrong
/// `--initial-cluster` (a member short, a wrong peer URL) exits with etcd's message and the
/// cluster is untouched (started right, it then joins); the strict reconfiguration check on a
/// one-member cluster.
fn reconfig_errors(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    let f1_peer = r.c.peer_url(r.at("F1"));
    r.reconfig_fails(
        "L",
        &["member", "add", "mx", &format!("--peer-urls={f1_peer}")],
        "etcdserver: Peer URLs already exists",
    );
    r.reconfig_fails(
        "L",
        &["member", "remove", "1234"],
        "etcdserver: member not found",
    );
    let scratch = r.scratch_peer("SCRATCH_PEER");
    r.reconfig_fails(
        "L",
        &[
            "member",
            "update",
            "1234",
            &format!("--peer-urls={scratch}"),
        ],
        "etcdserver: member not found",
    );

    let f1 = r.hex_id("F1");
    let l_peer = r.c.peer_url(r.at("L"));
    r.reconfig_fails(
        "L",
        &["member", "update", &f1, &format!("--peer-urls={l_peer}")],
        "etcdserver: Peer URLs already exists",
    );
    // Refused by the client.
    r.fails(
        "L",
        &["member", "add", "mz", "--peer-urls=foo"],
        "URL scheme must be http, https, unix, or unixs",
    );
    r.fails(
        "L",
        &["member", "add", "mz"],
        "member peer urls not provided",
    );
    r.fails("L", &["member", "remove", "zz"], "bad member ID arg");
    r.fails("L", &["member", "promote"], "member ID is not provided");

    // Joins with a wrong --initial-cluster.
    let n4 = r.add_member("L", "N4", false);
    let good = r.args_of(n4);
    let initial = flag_value(&good, "initial-cluster");
    let f2_name = r.c.name(r.at("F2")).to_string();
    let f2_url = r.c.peer_url(r.at("F2"));
    let short: Vec<&str> = initial
        .split(',')
        .filter(|item| !item.starts_with(&format!("{f2_name}=")))
        .collect();
    let wrong_url = r.scratch_peer("WRONG_PEER");
    let wrong = initial.replace(&f2_url, &wrong_url);
    for (what, ic) in [
        ("a member short", short.join(",")),
        ("a wrong peer URL", wrong),
    ] {
        let (code, logs) = r.run_to_exit(n4, with_flag(&good, "initial-cluster", &ic));
        if code.is_none() || code == Some(0) {
            r.t.problem(format!(
                "joining with {what} in --initial-cluster: exit code {code:?}"
            ));
        }
        r.t.add(
            format!("N4 started with {what} in --initial-cluster"),
            format!(
                "exits by itself: {}; exit code: {code:?}\n{}{}",
                code.is_some(),
                phrases_found(&logs, JOIN_ERRORS),
                // Up to the resolver error, which names whichever flag member was tried last.
                excerpt(&logs, "PeerURLs: no match", ", last resolver error")
                    .map(|e| format!("{}\n", r.norm().apply(&e)))
                    .unwrap_or_default()
            ),
        );
    }
    // Untouched: N4 is still unstarted, the cluster takes writes.
    r.member_lists("L");
    r.put("F1", "b", "2");
    r.join("N4");
    r.read("N4", false, &[("a", "1"), ("b", "2")]);
    r.converged(&["L", "F1", "F2", "N4"]);
    r.member_lists("N4");

    // Strict reconfiguration check on a one-member cluster: a second member may be added (to
    // grow a cluster restored on one member), a third not while the second has not started.
    let mut s = Reconf::start(kind, ctl, 1);
    s.put("L", "a", "1");
    s.add_member("L", "N2", false);
    s.member_lists("L");
    let p3 = s.scratch_peer("M3_PEER");
    let peer = format!("--peer-urls={p3}");
    s.reconfig_fails(
        "L",
        &["member", "add", "m3", &peer],
        "etcdserver: re-configuration failed due to not enough started members",
    );
    s.reconfig_fails(
        "L",
        &["member", "add", "m3", &peer, "--learner"],
        "etcdserver: unhealthy cluster",
    );
    s.read("L", true, &[("a", "1")]);
    r.absorb("one member", s);
    r.finish()
}

/// Scenario 9: majority failure, then `--force-new-cluster` on the survivor: it comes back as
/// the only member with all its data, keeping its member and cluster IDs; the cluster is grown
/// back to three with `member add`, and an old member restarted on its data dir stays out.
fn force_new_cluster(kind: Kind, ctl: Ctl) -> Transcript {
    let mut r = Reconf::start(kind, ctl, 3);
    r.put("L", "a", "1");
    r.put("F1", "b", "2");
    r.converged(&["L", "F1", "F2"]);
    let (l, f1, f2) = (r.at("L"), r.at("F1"), r.at("F2"));
    // Stopped, not killed: etcd persists its commit index lazily, and --force-new-cluster drops
    // what its WAL does not show as committed (a kill -9 there loses acknowledged writes).
    r.c.stop(f1);
    r.c.stop(f2);
    // Lost for good: the scenario no longer counts them as voters.
    r.removed[f1] = true;
    r.removed[f2] = true;
    r.c.stop(l);
    let mut args = r.args_of(l);
    args.push("--force-new-cluster".to_string());
    r.set_args(l, args);
    r.start_member(l);
    r.member_lists("L");
    r.read("L", false, &[("a", "1"), ("b", "2")]);
    r.put("L", "c", "3");
    r.read("L", true, &[("a", "1"), ("b", "2"), ("c", "3")]);
    r.status_cluster("L");

    // Grow back to three.
    r.add_member("L", "N4", false);
    r.join("N4");
    r.add_member("N4", "N5", false);
    r.join("N5");
    let abc = [("a", "1"), ("b", "2"), ("c", "3")];
    for role in ["L", "N4", "N5"] {
        r.read(role, false, &abc);
    }
    r.put("N5", "d", "4");
    r.converged(&["L", "N4", "N5"]);
    r.member_lists("N5");
    r.status_cluster("N4");

    // An old member started on its data dir was removed by the forced restart: it exits.
    let old = r.c.args(f1);
    let (code, logs) = r.run_to_exit(f1, old);
    r.t.add(
        "old member F1 restarted on its data dir",
        format!(
            "exits by itself: {}; exit code: {code:?}\n{}",
            code.is_some(),
            phrases_found(&logs, &[REMOVED])
        ),
    );
    r.member_lists("L");
    r.finish()
}

/// `endpoint health --cluster` via `role`: every member healthy; lines sorted.
fn health_cluster(r: &mut Reconf, role: &str) {
    let out = r.run_on(&[r.at(role)], &["endpoint", "health", "--cluster"]);
    if out.code != 0 {
        r.t.problem(format!("endpoint health --cluster via {role}: {out}"));
    }
    let norm = r.norm();
    let text = format!(
        "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.code,
        sorted_lines(&norm.apply(&out.stdout)),
        sorted_lines(&norm.apply(&out.stderr))
    );
    r.t.add(format!("ctl endpoint health --cluster (via {role})"), text);
}

/// oxcd keeps every acknowledged write when every member is killed with `kill -9` and one is
/// restarted with `--force-new-cluster` (etcd 3.4 may drop the last ones there: its WAL's
/// commit index is written lazily, and the forced restart discards what it does not cover).
#[test]
fn force_new_cluster_after_kill9_keeps_acknowledged_writes() {
    let mut r = Reconf::start(Kind::Oxcd, Ctl::Oxctl, 3);
    let roles = ["L", "F1", "F2"];
    let keys: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
    for (i, k) in keys.iter().enumerate() {
        r.put(roles[i % 3], k, "v");
    }
    for role in roles {
        let i = r.at(role);
        r.c.kill9(i);
    }
    for role in ["F1", "F2"] {
        let i = r.at(role);
        r.removed[i] = true;
    }
    let l = r.at("L");
    let mut args = r.args_of(l);
    args.push("--force-new-cluster".to_string());
    r.set_args(l, args);
    r.start_member(l);
    let want: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    r.read("L", true, &want);
    r.put("L", "after", "force");
    let t = r.finish();
    assert!(
        t.problems.is_empty(),
        "acknowledged writes lost: {:?}\n{}",
        t.problems,
        t.logs
    );
}
