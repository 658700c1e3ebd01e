//! Multi-member clusters: agreement on members, leader and data; leader failover; loss of a
//! minority and of a majority; five members; `kill -9` of every member mid-stream.
//!
//! Every scenario runs against a real etcd cluster (the oracle) and an oxcd cluster with the
//! same flags (see [`oxcd_process_tests::cluster`]). A scenario asserts the outcomes on either
//! server (one leader all agree on, every acknowledged write on every member, equal revisions
//! and hashes, the right error while there is no quorum) and records a transcript: normalised
//! outputs where they are deterministic, outcomes where timing decides (which member leads,
//! how often the client retried). The oxcd transcript must equal etcd's.
//!
//! Tests: `<scenario>::oxcd` (oxcd must pass the checks and match etcd),
//! `<scenario>::etcd_oracle` (the checks hold on etcd) and, ignored,
//! `<scenario>::etcd_twice` (two etcd runs give the same transcript).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_process_tests::b64;
use oxcd_process_tests::cluster::{
    canon_json, canon_table, deadline_outcome, failure_outcome, shown, sorted_lines,
    status_summary, status_table, Cluster, Transcript,
};
use oxcd_process_tests::http;
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::normalize::Norm;
use oxcd_process_tests::put_stream::put_stream;
use oxcd_process_tests::scenario::clip;
use serde_json::Value;

/// `--command-timeout` for a put that must fail for lack of quorum: longer than etcd's request
/// timeout (5 s + 2 * election timeout = 7 s here), so the server's answer shows. etcd 3.4 on a
/// member without a leader holds the proposal until that timeout and then answers
/// `rpc error: code = Unknown desc = context deadline exceeded` (not retried by etcdctl).
const NO_QUORUM_TIMEOUT: &str = "--command-timeout=15s";

/// `--command-timeout` for a linearizable read without quorum: etcd answers
/// `etcdserver: request timed out` (Unavailable) after 7 s, the client retries until its own
/// deadline, so only the outcome is compared.
const READ_NO_QUORUM_TIMEOUT: &str = "--command-timeout=10s";

oxcd_process_tests::cluster_tests!(
    three_members,
    leader_failover,
    minority_and_majority,
    five_members,
    kill_all_mid_stream,
);

/// The member with role `role`.
fn by_role(roles: &[String], role: &str) -> usize {
    roles
        .iter()
        .position(|r| r == role)
        .unwrap_or_else(|| panic!("no member has role {role}: {roles:?}"))
}

/// A scenario's cluster, its roles and normaliser, and the transcript.
struct Run {
    c: Cluster,
    roles: Vec<String>,
    norm: Norm,
    t: Transcript,
}

impl Run {
    fn new(c: Cluster, roles: Vec<String>) -> Run {
        let norm = c.norm(&roles);
        Run {
            c,
            roles,
            norm,
            t: Transcript::new(),
        }
    }

    /// The transcript, with the members' log tails if a check failed.
    fn finish(mut self) -> Transcript {
        if !self.t.problems.is_empty() {
            self.t.logs = self.c.all_logs();
        }
        std::mem::take(&mut self.t)
    }

    fn at(&self, role: &str) -> usize {
        by_role(&self.roles, role)
    }

    fn ats(&self, roles: &[&str]) -> Vec<usize> {
        roles.iter().map(|r| self.at(r)).collect()
    }

    /// Runs etcdctl against `role`, which must succeed; records the normalised stdout.
    fn ok(&mut self, role: &str, args: &[&str]) -> String {
        let out = self.c.ctl_ok(self.at(role), args);
        self.t.add(
            format!("etcdctl {} (via {role})", display(args)),
            self.norm.apply(&out.stdout),
        );
        out.stdout
    }

    /// `put key value -w json` via `role`; returns the revision.
    fn put(&mut self, role: &str, key: &str, value: &str) -> i64 {
        let stdout = self.ok(role, &["put", key, value, "-w", "json"]);
        let json: Value = serde_json::from_str(stdout.trim()).expect("put -w json");
        json["header"]["revision"].as_i64().expect("revision")
    }

    /// `put key value -w json` via `role` right after the cluster healed: it must succeed at
    /// once; if it does not, that is a failed check, and the put is retried (bounded) to tell
    /// "heals late" from "never heals".
    fn put_after_heal(&mut self, role: &str, key: &str, value: &str) {
        let args = ["put", key, value, "-w", "json"];
        let i = self.at(role);
        let mut out = self.c.ctl(i, &args);
        if out.code != 0 {
            let first = out.clone();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut tries = 1;
            while out.code != 0 && tries < 10 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(500));
                out = self.c.ctl(i, &args);
                tries += 1;
            }
            let then = if out.code == 0 {
                format!("it succeeded on try {tries}")
            } else {
                format!("it still fails after {tries} tries")
            };
            self.t.problem(format!(
                "put {key} {value} via {role} after the cluster healed failed: {}; {then}",
                clip(&first.to_string(), 300, 8)
            ));
            if out.code != 0 {
                self.c.fail(&format!("the cluster does not heal: {out}"));
            }
        }
        self.t.add(
            format!("etcdctl {} (via {role})", display(&args)),
            self.norm.apply(&out.stdout),
        );
    }

    /// `get "" --prefix -w json` via `role` (linearizable unless `extra` says otherwise);
    /// returns (header revision, [(key, value)]).
    fn get_all(&mut self, role: &str, extra: &[&str]) -> (i64, Vec<(String, String)>) {
        let mut args = vec!["get", "", "--prefix", "-w", "json"];
        args.extend_from_slice(extra);
        let stdout = self.ok(role, &args);
        parse_kvs(&stdout)
    }

    /// Every one of `roles` reads the same keys and values, equal to `want`, at the same
    /// revision (linearizable reads).
    fn all_read(&mut self, roles: &[&str], want: &[(&str, &str)]) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut revision = None;
        for role in roles {
            let (rev, kvs) = self.get_all(role, &[]);
            if kvs != want {
                self.t.problem(format!(
                    "linearizable read via {role} saw {kvs:?}, expected {want:?}"
                ));
            }
            match revision {
                None => revision = Some(rev),
                Some(r) if r != rev => self.t.problem(format!(
                    "via {role} the revision is {rev}, via {} {r}",
                    roles[0]
                )),
                Some(_) => {}
            }
        }
    }

    /// Waits until `roles` converge (same revision and hash, polled per member); records the
    /// revision and, when every member runs, `endpoint hashkv --cluster` via the first role.
    fn converged(&mut self, roles: &[&str]) {
        let members = self.ats(roles);
        let (rev, _hash) = self.c.wait_converged(&members);
        self.t.add(
            format!("revision of {roles:?} once converged"),
            format!("{rev}\n"),
        );
        if members.len() == self.c.nodes.len() {
            self.hashkv_cluster(roles[0]);
        }
    }

    /// `endpoint hashkv --cluster` via `role`: every member's hash is the same.
    fn hashkv_cluster(&mut self, role: &str) {
        let label = format!("etcdctl endpoint hashkv --cluster (via {role})");
        let out = self
            .c
            .ctl(self.at(role), &["endpoint", "hashkv", "--cluster"]);
        if out.code != 0 {
            self.t.problem(format!(
                "{label} failed (exit code {}; see the step)",
                out.code
            ));
            self.t.add(label, shown(&out, &self.norm));
            return;
        }
        let hashes: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.rsplit(", ").next())
            .collect();
        if hashes.len() != self.c.nodes.len() || hashes.windows(2).any(|w| w[0] != w[1]) {
            // `--cluster` asks the members `member list` names with client URLs.
            let list = self.c.ctl(self.at(role), &["member", "list"]);
            self.t.problem(format!(
                "{label}: not one equal hash per member: {}\n`member list` via {role} now: {}",
                clip(&out.to_string(), 300, 12),
                clip(&list.to_string(), 300, 12)
            ));
        }
        self.t
            .add(label, sorted_lines(&self.norm.apply(&out.stdout)));
    }

    /// `endpoint status -w json` of `roles` (or with `--cluster` via the first): exactly one
    /// leader that all agree on.
    fn status(&mut self, roles: &[&str], cluster: bool) {
        let members = self.ats(roles);
        let (out, label) = if cluster {
            (
                self.c.ctl(
                    members[0],
                    &["endpoint", "status", "--cluster", "-w", "json"],
                ),
                format!(
                    "etcdctl endpoint status --cluster -w json (via {})",
                    roles[0]
                ),
            )
        } else {
            (
                self.c
                    .ctl_on(&members, &["endpoint", "status", "-w", "json"]),
                format!("etcdctl endpoint status -w json (via {roles:?})"),
            )
        };
        if out.code != 0 {
            self.t.problem(format!(
                "{label} failed (exit code {}; see the step)",
                out.code
            ));
            self.t.add(label, shown(&out, &self.norm));
            return;
        }
        match status_summary(&out.stdout) {
            Ok(summary) => self.t.add(label, summary),
            Err(e) => {
                self.t.problem(format!("{label}: {}", clip(&e, 300, 3)));
                self.t.add(label, self.norm.apply(&out.stdout));
            }
        }
    }

    /// Records `member list -w json` via `role` once every running member's list agrees,
    /// normalised with members sorted by role; returns the normalised members (without the
    /// header, which names `role`).
    fn member_list(&mut self, role: &str) -> String {
        let running = self.c.running();
        if let Err(e) = self.c.wait_member_lists_agree(&running) {
            self.t.problem(e);
        }
        let out = self
            .c
            .ctl_ok(self.at(role), &["member", "list", "-w", "json"]);
        self.t.add(
            format!("etcdctl member list -w json (via {role})"),
            canon_json(&out.stdout, &self.norm),
        );
        let json = self.c.json(&out, "member list");
        canon_json(&json["members"].to_string(), &self.norm)
    }
}

/// Arguments as a shell would need them (`''` for an empty one).
fn display(args: &[&str]) -> String {
    args.iter()
        .map(|a| if a.is_empty() { "''" } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

/// (header revision, [(key, value)]) of `get -w json` output.
fn parse_kvs(stdout: &str) -> (i64, Vec<(String, String)>) {
    let json: Value = serde_json::from_str(stdout.trim()).expect("get -w json");
    let kvs = json["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    (
                        b64::decode_str(kv["key"].as_str().unwrap_or("")),
                        b64::decode_str(kv["value"].as_str().unwrap_or("")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (json["header"]["revision"].as_i64().unwrap_or(0), kvs)
}

/// Scenario 1: three members agree on the member list, the leader and the data.
fn three_members(kind: Kind) -> Transcript {
    let c = Cluster::start(kind, 3);
    let leader = c.wait_leader(&c.all());
    let roles = c.roles_by_leader(leader);
    let mut r = Run::new(c, roles);
    let everyone = ["L", "F1", "F2"];

    // The member list, the same through every member.
    let lists: Vec<String> = everyone.iter().map(|role| r.member_list(role)).collect();
    if lists.iter().any(|l| *l != lists[0]) {
        r.t.problem(format!("members disagree on the member list: {lists:#?}"));
    }
    for format in ["simple", "table"] {
        let out = r.c.ctl_ok(r.at("F1"), &["member", "list", "-w", format]);
        r.t.add(
            format!("etcdctl member list -w {format} (via F1)"),
            if format == "table" {
                canon_table(&out.stdout, &r.norm)
            } else {
                sorted_lines(&r.norm.apply(&out.stdout))
            },
        );
    }

    // One leader, the same for everyone.
    for role in everyone {
        r.status(&[role], true);
    }
    let out = r.c.ctl(
        r.at("F2"),
        &["endpoint", "status", "--cluster", "-w", "table"],
    );
    let label = "etcdctl endpoint status --cluster -w table (via F2)";
    match status_table(&out.stdout) {
        Ok(table) => r.t.add(label, table),
        Err(e) => {
            r.t.problem(format!("{label}: {}", clip(&e, 300, 3)));
            r.t.add(label, shown(&out, &r.norm));
        }
    }

    // A put through any member is read (linearizable) through every member.
    let mut want: Vec<(String, String)> = Vec::new();
    for writer in everyone {
        let key = format!("key-from-{writer}");
        let value = format!("value-from-{writer}");
        r.put(writer, &key, &value);
        want.push((key.clone(), value.clone()));
        for reader in everyone {
            let stdout = r.ok(reader, &["get", &key, "-w", "json"]);
            let (_, kvs) = parse_kvs(&stdout);
            if kvs != vec![(key.clone(), value.clone())] {
                r.t.problem(format!(
                    "{writer} wrote {key}={value}, linearizable read via {reader} saw {kvs:?}"
                ));
            }
        }
    }
    want.sort();
    let want_ref: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    r.all_read(&everyone, &want_ref);
    r.converged(&everyone);
    for role in everyone {
        r.get_all(role, &["--consistency=s"]);
    }
    let out = r.c.ctl(
        r.at("L"),
        &["endpoint", "hashkv", "--cluster", "-w", "json"],
    );
    r.t.add(
        "etcdctl endpoint hashkv --cluster -w json (via L)",
        format!(
            "exit code {}\n{}",
            out.code,
            canon_json(&out.stdout, &r.norm)
        ),
    );
    // etcdctl prints the health lines on stderr, in the order the answers came.
    let out = r.c.ctl(r.at("L"), &["endpoint", "health", "--cluster"]);
    r.t.add(
        "etcdctl endpoint health --cluster (via L)",
        format!(
            "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}",
            out.code,
            sorted_lines(&r.norm.apply(&out.stdout)),
            sorted_lines(&r.norm.apply(&out.stderr))
        ),
    );
    r.finish()
}

/// Scenario 2: `kill -9` of the leader: the others elect a new one and keep taking writes;
/// the old leader restarts on its data dir, rejoins and catches up.
fn leader_failover(kind: Kind) -> Transcript {
    let mut c = Cluster::start(kind, 3);
    let old = c.wait_leader(&c.all());
    // Roles are known only after the second election; use the final ones throughout.
    let out = c.ctl_ok(old, &["put", "a", "1", "-w", "json"]);
    c.kill9(old);
    let survivors: Vec<usize> = c.all().into_iter().filter(|&i| i != old).collect();
    let new = c.wait_leader(&survivors);
    let roles: Vec<String> = c
        .all()
        .into_iter()
        .map(|i| {
            if i == old {
                "OLD".to_string()
            } else if i == new {
                "NEW".to_string()
            } else {
                "F".to_string()
            }
        })
        .collect();
    let mut r = Run::new(c, roles);
    r.t.add(
        "etcdctl put a 1 -w json (via OLD)",
        r.norm.apply(&out.stdout),
    );

    r.status(&["NEW", "F"], false);
    r.put("NEW", "b", "2");
    r.put("F", "c", "3");
    r.all_read(&["NEW", "F"], &[("a", "1"), ("b", "2"), ("c", "3")]);
    // The killed member is still a member.
    r.member_list("F");
    r.converged(&["NEW", "F"]);

    // The old leader comes back on its data dir and catches up.
    let old = r.at("OLD");
    r.c.restart(&[old]);
    r.c.wait_leader(&r.c.all());
    r.converged(&["OLD", "NEW", "F"]);
    r.get_all("OLD", &["--consistency=s"]);
    r.put_after_heal("OLD", "d", "4");
    r.all_read(
        &["OLD", "NEW", "F"],
        &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
    );
    r.converged(&["OLD", "NEW", "F"]);
    r.status(&["OLD"], true);
    r.member_list("OLD");
    r.finish()
}

/// Scenario 3: stop one of three: reads and writes go on. Stop a second: writes and
/// linearizable reads fail as on etcd (after its request timeout), serializable reads answer
/// the old data. Restart both: the cluster heals by itself.
fn minority_and_majority(kind: Kind) -> Transcript {
    let c = Cluster::start(kind, 3);
    let leader = c.wait_leader(&c.all());
    let roles = c.roles_by_leader(leader);
    let mut r = Run::new(c, roles);
    r.put("L", "a", "1");

    // A minority is gone.
    let f2 = r.at("F2");
    r.c.stop(f2);
    r.put("L", "b", "2");
    r.put("F1", "c", "3");
    let abc = [("a", "1"), ("b", "2"), ("c", "3")];
    r.all_read(&["L", "F1"], &abc);
    r.status(&["L", "F1"], false);

    // A majority is gone: F1 is alone.
    let (l, f1) = (r.at("L"), r.at("F1"));
    r.c.stop(l);
    r.c.wait_no_leader(&[f1]);
    let out = r.c.ctl(f1, &["endpoint", "status", "-w", "json"]);
    r.t.add(
        "etcdctl endpoint status -w json (via F1, alone)",
        shown(&out, &r.norm),
    );

    let out = r.c.ctl(f1, &["put", "d", "4", NO_QUORUM_TIMEOUT]);
    if out.code == 0 {
        r.t.problem("put without quorum succeeded");
    }
    r.t.add(
        format!("etcdctl put d 4 {NO_QUORUM_TIMEOUT} (via F1, alone)"),
        shown(&out, &r.norm),
    );

    let out = r.c.ctl(f1, &["get", "a", READ_NO_QUORUM_TIMEOUT]);
    if out.code == 0 {
        r.t.problem("linearizable get without quorum succeeded");
    }
    r.t.add(
        format!("etcdctl get a {READ_NO_QUORUM_TIMEOUT} (via F1, alone): outcome"),
        failure_outcome(&out),
    );

    let (_, kvs) = r.get_all("F1", &["--consistency=s"]);
    if kvs.len() != 3 {
        r.t.problem(format!("serializable read via F1 alone saw {kvs:?}"));
    }
    r.ok("F1", &["get", "a", "--consistency=s"]);

    let health = http::get(r.c.nodes[f1].client_port, "/health")
        .map(|resp| format!("{} {}\n", resp.status, resp.body))
        .unwrap_or_else(|e| format!("error: {e}\n"));
    r.t.add("GET /health (via F1, alone)", health);
    let out = r.c.ctl(f1, &["endpoint", "health", "--command-timeout=2s"]);
    if out.code == 0 {
        r.t.problem("endpoint health without quorum succeeded");
    }
    // Whether the server's or the client's end of the 2 s deadline fires first is a race.
    r.t.add(
        "etcdctl endpoint health --command-timeout=2s (via F1, alone): outcome",
        deadline_outcome(&out, &r.norm),
    );

    // The majority comes back: the cluster heals by itself.
    r.c.restart(&[l, f2]);
    r.c.wait_leader(&r.c.all());
    r.put_after_heal("F1", "d", "4");
    let everyone = ["L", "F1", "F2"];
    r.all_read(&everyone, &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    r.converged(&everyone);
    r.status(&["F2"], true);
    r.finish()
}

/// Scenario 4: five members: two may go (the leader among them), a third may not; they all
/// come back.
fn five_members(kind: Kind) -> Transcript {
    let c = Cluster::start(kind, 5);
    let leader = c.wait_leader(&c.all());
    let roles = c.roles_by_leader(leader);
    let mut r = Run::new(c, roles);
    r.put("L", "a", "1");

    let (l, f1, f2) = (r.at("L"), r.at("F1"), r.at("F2"));
    r.c.kill9(l);
    r.c.kill9(f1);
    let survivors = r.ats(&["F2", "F3", "F4"]);
    r.c.wait_leader(&survivors);
    r.status(&["F2", "F3", "F4"], false);
    r.put("F2", "b", "2");
    r.put("F3", "c", "3");
    r.put("F4", "d", "4");
    let abcd = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
    r.all_read(&["F2", "F3", "F4"], &abcd);

    // A third goes: no quorum.
    r.c.kill9(f2);
    let (f3, f4) = (r.at("F3"), r.at("F4"));
    r.c.wait_no_leader(&[f3, f4]);
    let out = r.c.ctl(f3, &["put", "e", "5", NO_QUORUM_TIMEOUT]);
    if out.code == 0 {
        r.t.problem("put with 2 of 5 members succeeded");
    }
    r.t.add(
        format!("etcdctl put e 5 {NO_QUORUM_TIMEOUT} (via F3, 2 of 5 up)"),
        shown(&out, &r.norm),
    );
    r.get_all("F4", &["--consistency=s"]);

    // Everyone comes back.
    r.c.restart(&[l, f1, f2]);
    r.c.wait_leader(&r.c.all());
    r.put_after_heal("L", "e", "5");
    let everyone = ["L", "F1", "F2", "F3", "F4"];
    r.all_read(
        &everyone,
        &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")],
    );
    r.converged(&everyone);
    r.status(&["F4"], true);
    r.member_list("F1");
    r.finish()
}

/// How many sequential puts the stream sends at most, and after how many acknowledged ones
/// every member is killed.
const STREAM_PUTS: usize = 200;
const KILL_AFTER: usize = 100;

/// Scenario 5: `kill -9` of every member in the middle of a stream of acknowledged puts through
/// alternating members; after a restart every acknowledged put is on every member with its
/// revision, and the members are identical.
fn kill_all_mid_stream(kind: Kind) -> Transcript {
    let mut c = Cluster::start(kind, 3);
    let mut t = Transcript::new();
    c.wait_leader(&c.all());
    let endpoints: Vec<String> = c.all().into_iter().map(|i| c.endpoint(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (stop, count) = (stop.clone(), count.clone());
        std::thread::spawn(move || put_stream(&endpoints, 0..STREAM_PUTS, &stop, &count))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::SeqCst) < KILL_AFTER
        && !stream.is_finished()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in c.all() {
        c.kill9(i);
    }
    stop.store(true, Ordering::SeqCst);
    let acked = stream.join().expect("put stream thread");
    if acked.len() < KILL_AFTER {
        c.fail(&format!(
            "only {} of {KILL_AFTER} puts were acknowledged before the kill",
            acked.len()
        ));
    }
    t.add(
        format!("at least {KILL_AFTER} puts acknowledged before kill -9 of every member"),
        "true\n",
    );
    // The put in flight at the kill may or may not have been applied.
    let maybe = acked.last().map(|(i, _)| i + 1).unwrap_or(0);

    c.restart(&c.all());
    c.wait_leader(&c.all());
    let (revision, _) = c.wait_converged(&c.all());
    let mut dumps = Vec::new();
    for i in c.all() {
        for consistency in ["l", "s"] {
            let out = c.ctl_ok(
                i,
                &[
                    "get",
                    "k/",
                    "--prefix",
                    "-w",
                    "json",
                    &format!("--consistency={consistency}"),
                ],
            );
            let json = c.json(&out, "get k/ --prefix");
            let kvs: Vec<(String, String, i64, i64)> = json["kvs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|kv| {
                    (
                        b64::decode_str(kv["key"].as_str().unwrap_or("")),
                        b64::decode_str(kv["value"].as_str().unwrap_or("")),
                        kv["mod_revision"].as_i64().unwrap_or(0),
                        kv["version"].as_i64().unwrap_or(0),
                    )
                })
                .collect();
            let rev = json["header"]["revision"].as_i64().unwrap_or(0);
            if rev != revision {
                c.fail(&format!(
                    "{} (--consistency={consistency}) is at revision {rev}, the others at \
                     {revision}",
                    c.name(i)
                ));
            }
            for (idx, acked_rev) in &acked {
                let key = format!("k/{idx:05}");
                match kvs.iter().find(|kv| kv.0 == key) {
                    Some((_, value, modrev, version)) => {
                        if *value != format!("v{idx}") || modrev != acked_rev || *version != 1 {
                            c.fail(&format!(
                                "{}: acknowledged {key}=v{idx} at revision {acked_rev}, found \
                                 value {value} at revision {modrev} version {version}",
                                c.name(i)
                            ));
                        }
                    }
                    None => c.fail(&format!(
                        "{}: acknowledged put {key} (revision {acked_rev}) is lost",
                        c.name(i)
                    )),
                }
            }
            for (key, ..) in &kvs {
                let idx: usize = key[2..].parse().unwrap_or(usize::MAX);
                if !acked.iter().any(|(a, _)| *a == idx) && idx != maybe {
                    c.fail(&format!("{}: {key} exists but was never sent", c.name(i)));
                }
            }
            // Revisions 2..=revision are exactly the stream's puts.
            let mut revs: Vec<i64> = kvs.iter().map(|kv| kv.2).collect();
            revs.sort_unstable();
            if revs != (2..=revision).collect::<Vec<_>>() {
                c.fail(&format!(
                    "{}: revisions are not exactly 2..={revision}: {revs:?}",
                    c.name(i)
                ));
            }
            dumps.push(kvs);
        }
    }
    if dumps.windows(2).any(|w| w[0] != w[1]) {
        c.fail("members hold different data after the restart");
    }
    t.add(
        "every acknowledged put on every member, same data and revision everywhere",
        "true\n",
    );
    // Equal per member (polled above); and as `endpoint hashkv --cluster` reports them.
    let out = c.ctl(0, &["endpoint", "hashkv", "--cluster"]);
    let hashes: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.rsplit(", ").next())
        .collect();
    let equal = out.code == 0 && hashes.len() == 3 && hashes.windows(2).all(|w| w[0] == w[1]);
    if !equal {
        t.problem(format!(
            "endpoint hashkv --cluster: {}",
            clip(&format!("{out}"), 300, 8)
        ));
    }
    t.add(
        "endpoint hashkv --cluster equal on every member",
        format!("{equal}\n"),
    );

    // The cluster takes writes again, and the revision goes on from where it was.
    let out = c.ctl_ok(1, &["put", "after", "restart", "-w", "json"]);
    let json = c.json(&out, "put after restart");
    let rev = json["header"]["revision"].as_i64().unwrap_or(0);
    if rev != revision + 1 {
        c.fail(&format!(
            "first put after the restart got revision {rev}, expected {}",
            revision + 1
        ));
    }
    t.add("put after restart gets the next revision", "true\n");
    if !t.problems.is_empty() {
        t.logs = c.all_logs();
    }
    t
}
