//! Multi-member clusters of oxcd or of the real etcd on loopback ports, and transcripts that
//! compare what a scenario saw on each.
//!
//! Every member of a [`Cluster`] gets the very same flags, whichever the server:
//!
//! ```text
//! --name mN --data-dir <tmp>/mN
//! --initial-cluster m1=http://127.0.0.1:P1,m2=http://127.0.0.1:P2,...
//! --initial-cluster-token <token> --initial-cluster-state new
//! --listen-peer-urls http://127.0.0.1:Pn --initial-advertise-peer-urls http://127.0.0.1:Pn
//! --listen-client-urls http://127.0.0.1:Cn --advertise-client-urls http://127.0.0.1:Cn
//! --heartbeat-interval 100 --election-timeout 1000
//! ```
//!
//! A restarted member keeps its ports and data dir (the `--initial-*` flags are then ignored,
//! as etcd does). Member `i` logs to `<tmp>/logs/mN-run-K.{out,err}`; the tails of every
//! member's logs are printed when a test panics. `OXCD_TEST_KEEP=1` keeps the temp dir.
//!
//! Members are addressed by index (`0` is `m1`). Which member leads is up to the election, so
//! scenarios give members *roles* (`L` for the leader, `F1`, `F2` for followers, ...) once they
//! know them, and normalise outputs with [`Cluster::norm`], which replaces each member's id,
//! name and addresses by its role. A [`Transcript`] of normalised outputs (or, for
//! timing-dependent steps, of outcomes) is then comparable between an etcd run and an oxcd run.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::ctl::{ctl, Ctl, Output};
use crate::member::{Kind, READY_TIMEOUT};
use crate::normalize::{canon_tables, diff, Norm};
use crate::scenario::clip;
use crate::{bins, http, ports, proc};

/// `--heartbeat-interval` of every member (ms).
pub const HEARTBEAT_MS: u64 = 100;
/// `--election-timeout` of every member (ms). etcd's request timeout is then
/// 5 s + 2 * 1 s = 7 s.
pub const ELECTION_MS: u64 = 1000;
/// How long to wait for a (new) leader that every running member agrees on.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait until every running member has the same revision and hash.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);

/// One member of a cluster.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
    runs: u32,
}

/// A running cluster of `kind` (members may be killed and restarted).
pub struct Cluster {
    pub kind: Kind,
    pub token: String,
    pub nodes: Vec<Node>,
    /// Member ids by index, learnt from `member list` once the cluster is up.
    ids: Vec<u64>,
    cluster_id: u64,
    /// Extra flags after the standard ones.
    extra: Vec<String>,
    /// https URLs, certificates and client flags; plain http by default.
    secure: Secure,
    dir: Option<TempDir>,
    /// The logs were already part of a panic message.
    logs_shown: Cell<bool>,
}

/// `/health` over TLS: GET `path` on `127.0.0.1:port`.
pub type TlsGet = Arc<dyn Fn(u16, &str) -> std::io::Result<http::Response> + Send + Sync>;

/// TLS for a cluster (see `crate::tls` for certificates made for it).
#[derive(Clone, Default)]
pub struct Secure {
    /// `https://` client URLs.
    pub client_https: bool,
    /// `https://` peer URLs.
    pub peer_https: bool,
    /// Flags for every member (certificate files, ...), after the standard ones.
    pub server_flags: Vec<String>,
    /// Flags for every etcdctl/oxctl run the cluster makes (`--cacert`, `--cert`, `--key`).
    pub ctl_flags: Vec<String>,
    /// How to GET `/health` over TLS (required with `client_https`).
    pub get: Option<TlsGet>,
}

fn unique_token() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "oxcd-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

impl Cluster {
    /// Starts `size` members with the standard flags and waits until every member's `/health`
    /// says true (which needs an elected leader).
    pub fn start(kind: Kind, size: usize) -> Cluster {
        Cluster::start_with(kind, size, &[])
    }

    /// Starts `size` members with `extra` flags appended to the standard ones.
    pub fn start_with(kind: Kind, size: usize, extra: &[&str]) -> Cluster {
        let secure = Secure {
            server_flags: extra.iter().map(|s| s.to_string()).collect(),
            ..Secure::default()
        };
        Cluster::start_secure(kind, size, secure)
    }

    /// Starts `size` members with TLS as `secure` says.
    pub fn start_secure(kind: Kind, size: usize, secure: Secure) -> Cluster {
        bins::require(&kind.bin());
        assert!(size >= 1, "a cluster needs a member");
        let mut last_error = String::new();
        for _attempt in 0..4 {
            let mut cluster = Cluster::unstarted(kind, size);
            cluster.set_secure(secure.clone());
            match cluster.launch() {
                Ok(()) => return cluster,
                // Lost a port race with another process: new ports, new data dirs.
                Err(e) if e.contains("address already in use") => last_error = e,
                Err(e) => panic!("{kind} cluster of {size} did not become ready: {e}"),
            }
        }
        panic!("{kind} cluster could not bind its ports: {last_error}");
    }

    /// A cluster of `size` members with the standard flags, none started: ports and temp dir
    /// are chosen, data dirs do not exist yet (e.g. for `snapshot restore` to create them).
    /// Start the members with [`Cluster::launch`].
    pub fn unstarted(kind: Kind, size: usize) -> Cluster {
        bins::require(&kind.bin());
        assert!(size >= 1, "a cluster needs a member");
        let dir = tempfile::Builder::new()
            .prefix(&format!("oxcd-test-cluster-{kind}-"))
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("create logs dir");
        let nodes = (1..=size)
            .map(|n| Node {
                name: format!("m{n}"),
                client_port: ports::free_port(),
                peer_port: ports::free_port(),
                child: None,
                runs: 0,
            })
            .collect();
        Cluster {
            kind,
            token: unique_token(),
            nodes,
            ids: Vec::new(),
            cluster_id: 0,
            extra: Vec::new(),
            secure: Secure::default(),
            dir: Some(dir),
            logs_shown: Cell::new(false),
        }
    }

    /// Starts every member of an [`Cluster::unstarted`] cluster at once, waits until each
    /// one's `/health` says true and learns the member ids. `Err` holds the reason and every
    /// member's logs; the members are then killed.
    pub fn launch(&mut self) -> Result<(), String> {
        let all = self.all();
        for &i in &all {
            self.spawn(i);
        }
        match self.wait_ready(&all, READY_TIMEOUT) {
            Ok(()) => {
                self.learn_ids();
                Ok(())
            }
            Err(e) => {
                let logs = self.all_logs();
                for &i in &all {
                    self.kill9(i);
                }
                self.logs_shown.set(true);
                Err(format!("{e}\n{logs}"))
            }
        }
    }

    /// Makes an unstarted cluster's URLs, member flags and clients use TLS as `secure` says.
    pub fn set_secure(&mut self, secure: Secure) {
        self.extra = secure.server_flags.clone();
        self.secure = secure;
    }

    /// The TLS flags every ctl run gets, followed by `args`.
    pub fn ctl_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = self.secure.ctl_flags.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        all
    }

    /// GET `path` on a client port, over TLS when the client URLs are https.
    pub fn http_get(&self, port: u16, path: &str) -> std::io::Result<http::Response> {
        match (&self.secure.get, self.secure.client_https) {
            (Some(get), true) => get(port, path),
            _ => http::get(port, path),
        }
    }

    /// Every member index.
    pub fn all(&self) -> Vec<usize> {
        (0..self.nodes.len()).collect()
    }

    /// The temp dir (data dirs and logs live below it).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// `--data-dir` of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir().join(&self.nodes[i].name)
    }

    /// `127.0.0.1:C` of member `i`, the form `--endpoints` takes.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The endpoints of the given members, comma-separated.
    pub fn endpoints(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|&i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `http://127.0.0.1:C` (or `https://`) of member `i`.
    pub fn client_url(&self, i: usize) -> String {
        let scheme = if self.secure.client_https {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// `http://127.0.0.1:P` (or `https://`) of member `i`.
    pub fn peer_url(&self, i: usize) -> String {
        let scheme = if self.secure.peer_https {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.nodes[i].peer_port)
    }

    /// The name (`m1`, ...) of member `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The member id of member `i`.
    pub fn id(&self, i: usize) -> u64 {
        self.ids[i]
    }

    /// The index of the member with id `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|x| *x == id)
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// `m1=http://127.0.0.1:P1,...`.
    pub fn initial_cluster(&self) -> String {
        (0..self.nodes.len())
            .map(|i| format!("{}={}", self.nodes[i].name, self.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The full command line (without the program) of member `i`.
    pub fn args(&self, i: usize) -> Vec<String> {
        let mut args: Vec<String> = [
            ("name", self.nodes[i].name.clone()),
            ("data-dir", self.data_dir(i).display().to_string()),
            ("initial-cluster", self.initial_cluster()),
            ("initial-cluster-token", self.token.clone()),
            ("initial-cluster-state", "new".to_string()),
            ("listen-peer-urls", self.peer_url(i)),
            ("initial-advertise-peer-urls", self.peer_url(i)),
            ("listen-client-urls", self.client_url(i)),
            ("advertise-client-urls", self.client_url(i)),
            ("heartbeat-interval", HEARTBEAT_MS.to_string()),
            ("election-timeout", ELECTION_MS.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [format!("--{flag}"), value])
        .collect();
        args.extend(self.extra.iter().cloned());
        args
    }

    fn log_path(&self, i: usize, run: u32, stream: &str) -> PathBuf {
        self.dir()
            .join("logs")
            .join(format!("{}-run-{run}.{stream}", self.nodes[i].name))
    }

    fn spawn(&mut self, i: usize) {
        let args = self.args(i);
        self.spawn_args(i, args);
    }

    /// Spawns member `i` with the given command line (without the program) instead of
    /// [`Cluster::args`], logging like any run, without waiting for readiness.
    pub fn spawn_args(&mut self, i: usize, args: Vec<String>) {
        assert!(self.nodes[i].child.is_none(), "member {i} already running");
        self.nodes[i].runs += 1;
        let run = self.nodes[i].runs;
        let out = File::create(self.log_path(i, run, "out")).expect("create log");
        let err = File::create(self.log_path(i, run, "err")).expect("create log");
        let mut cmd = Command::new(self.kind.bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .current_dir(self.dir());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(key);
            }
        }
        proc::isolate(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.kind.bin().display()));
        self.nodes[i].child = Some(child);
    }

    /// Polls `GET /health` of the given members until each answered 200 with `"true"` once.
    pub fn wait_ready(&mut self, members: &[usize], timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<usize> = members.to_vec();
        let mut last = String::new();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &i in &pending {
                let node = &mut self.nodes[i];
                match node.child.as_mut() {
                    None => return Err(format!("{} is not running", node.name)),
                    Some(child) => {
                        if let Ok(Some(status)) = child.try_wait() {
                            node.child = None;
                            return Err(format!(
                                "{} ({}) exited early with {status}",
                                node.name, self.kind
                            ));
                        }
                    }
                }
                let port = node.client_port;
                let name = &self.nodes[i].name;
                match self.http_get(port, "/health") {
                    Ok(resp) if resp.status == 200 && resp.body.contains("\"true\"") => {}
                    Ok(resp) => {
                        last = format!("{name}: /health answered {} {:?}", resp.status, resp.body);
                        still.push(i);
                    }
                    Err(e) => {
                        last = format!("{name}: /health: {e}");
                        still.push(i);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = pending.iter().map(|&i| self.name(i)).collect();
                return Err(format!(
                    "{names:?} not ready after {timeout:?}; last: {last}"
                ));
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Reads the member ids (by name) and the cluster id from `member list`.
    fn learn_ids(&mut self) {
        let out = self.ctl(0, &["member", "list", "-w", "json"]);
        let json = self.json(&out, "member list");
        self.cluster_id = json["header"]["cluster_id"].as_u64().unwrap_or(0);
        let members = json["members"].as_array().cloned().unwrap_or_default();
        let mut ids = vec![0; self.nodes.len()];
        for m in &members {
            let name = m["name"].as_str().unwrap_or("");
            if let Some(i) = self.nodes.iter().position(|n| n.name == name) {
                ids[i] = m["ID"].as_u64().unwrap_or(0);
            }
        }
        if ids.contains(&0) || members.len() != self.nodes.len() {
            self.fail(&format!("member list does not name every member: {out}"));
        }
        self.ids = ids;
    }

    /// Parses a ctl output's stdout as JSON or panics with the output and the logs.
    pub fn json(&self, out: &Output, what: &str) -> Value {
        if out.code != 0 {
            self.fail(&format!("{what} failed: {out}"));
        }
        match serde_json::from_str(out.stdout.trim()) {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{what} printed no JSON ({e}): {out}")),
        }
    }

    /// Whether member `i` is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// The running members.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// Adds a member that does not run yet (e.g. one announced with `member add`) with fresh
    /// ports and no id; returns its index. Its data dir is `<tmp>/<name>`.
    pub fn push_node(&mut self, name: &str) -> usize {
        self.nodes.push(Node {
            name: name.to_string(),
            client_port: ports::free_port(),
            peer_port: ports::free_port(),
            child: None,
            runs: 0,
        });
        self.ids.push(0);
        self.nodes.len() - 1
    }

    /// Sets the member id of member `i` (e.g. as `member add` printed it).
    pub fn set_id(&mut self, i: usize, id: u64) {
        self.ids[i] = id;
    }

    /// Waits up to `timeout` for member `i` to exit by itself; returns its exit status (and
    /// forgets the process) if it did.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.nodes[i].child.as_mut()?;
        let status = proc::wait_timeout(child, timeout)?;
        if let Some(mut child) = self.nodes[i].child.take() {
            proc::kill_group(&mut child);
        }
        Some(status)
    }

    /// `kill -9` of member `i` (its process group), no grace.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            proc::kill_group(&mut child);
        }
    }

    /// `SIGTERM` to member `i`, up to 10 s of grace, then `kill -9`.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            proc::signal_group(&child, libc::SIGTERM);
            if proc::wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                proc::kill_group(&mut child);
            } else {
                proc::signal_group(&child, libc::SIGKILL);
            }
        }
    }

    /// Starts the given members again on their data dirs and ports (killing any that still
    /// run), all at once, and waits until each one's `/health` says true.
    pub fn restart(&mut self, members: &[usize]) {
        for &i in members {
            self.kill9(i);
        }
        for &i in members {
            self.spawn(i);
        }
        if let Err(e) = self.wait_ready(members, READY_TIMEOUT) {
            self.fail(&format!("did not become ready after restart: {e}"));
        }
    }

    /// Runs the real etcdctl against member `i` alone.
    pub fn ctl(&self, i: usize, args: &[&str]) -> Output {
        ctl(Ctl::Etcdctl, &self.endpoint(i), &self.ctl_args(args))
    }

    /// Runs the real etcdctl with the given members as `--endpoints`.
    pub fn ctl_on(&self, members: &[usize], args: &[&str]) -> Output {
        ctl(Ctl::Etcdctl, &self.endpoints(members), &self.ctl_args(args))
    }

    /// Runs `which` against member `i` alone.
    pub fn ctl_with(&self, which: Ctl, i: usize, args: &[&str]) -> Output {
        ctl(which, &self.endpoint(i), &self.ctl_args(args))
    }

    /// Runs etcdctl against member `i` and panics (with the logs) unless it exits 0.
    pub fn ctl_ok(&self, i: usize, args: &[&str]) -> Output {
        let out = self.ctl(i, args);
        if out.code != 0 {
            self.fail(&format!(
                "`etcdctl {}` against {} failed: {out}",
                args.join(" "),
                self.name(i)
            ));
        }
        out
    }

    /// `endpoint status` of member `i` alone.
    pub fn status(&self, i: usize) -> Result<Status, String> {
        let out = self.ctl(
            i,
            &[
                "endpoint",
                "status",
                "-w",
                "json",
                "--command-timeout=3s",
                "--dial-timeout=2s",
            ],
        );
        if out.code != 0 {
            return Err(format!("{}: {out}", self.name(i)));
        }
        let json: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| {
            format!(
                "{}: endpoint status printed no JSON ({e}): {out}",
                self.name(i)
            )
        })?;
        Status::from_json(&json[0]).ok_or_else(|| format!("{}: no status in {json}", self.name(i)))
    }

    /// Polls `endpoint status` of each of `members` until all name the same leader, which is
    /// one of them and says so itself; returns the leader's index.
    pub fn wait_leader(&self, members: &[usize]) -> usize {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let mut last = String::new();
        for _poll in 0..1000 {
            match self.agreed_leader(members) {
                Ok(i) => return i,
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.fail(&format!(
            "no leader agreed on by {:?} within {LEADER_TIMEOUT:?}; last: {last}",
            self.names(members)
        ))
    }

    fn agreed_leader(&self, members: &[usize]) -> Result<usize, String> {
        let mut leader = None;
        for &i in members {
            let s = self.status(i)?;
            if s.leader == 0 {
                return Err(format!("{} has no leader", self.name(i)));
            }
            match leader {
                None => leader = Some(s.leader),
                Some(l) if l != s.leader => {
                    return Err(format!(
                        "{} says {:x}, another says {l:x}",
                        self.name(i),
                        s.leader
                    ))
                }
                Some(_) => {}
            }
        }
        let id = leader.ok_or("no members")?;
        let i = self
            .index_of(id)
            .filter(|i| members.contains(i))
            .ok_or_else(|| format!("leader {id:x} is not one of {:?}", self.names(members)))?;
        Ok(i)
    }

    /// Polls until none of `members` has a leader (e.g. after a majority is gone).
    pub fn wait_no_leader(&self, members: &[usize]) {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let mut last = String::new();
        for _poll in 0..1000 {
            let mut all_leaderless = true;
            for &i in members {
                match self.status(i) {
                    Ok(s) if s.leader == 0 => {}
                    Ok(s) => {
                        all_leaderless = false;
                        last = format!("{} still has leader {:x}", self.name(i), s.leader);
                    }
                    Err(e) => {
                        all_leaderless = false;
                        last = e;
                    }
                }
            }
            if all_leaderless {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.fail(&format!(
            "{:?} still have a leader after {LEADER_TIMEOUT:?}; last: {last}",
            self.names(members)
        ))
    }

    /// Polls `member list -w json` of each of `members` until all list the same members, each
    /// with its client URLs (a member publishes them through raft once it has started).
    /// `Err` holds the last lists seen.
    pub fn wait_member_lists_agree(&self, members: &[usize]) -> Result<(), String> {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut last = String::new();
        for _poll in 0..1000 {
            let mut lists = Vec::new();
            for &i in members {
                let out = self.ctl(i, &["member", "list", "-w", "json", "--command-timeout=3s"]);
                let list = serde_json::from_str::<Value>(out.stdout.trim())
                    .map(|v| v["members"].clone())
                    .unwrap_or(Value::Null);
                lists.push((self.name(i).to_string(), list, out));
            }
            let complete = |l: &Value| {
                l.as_array().is_some_and(|a| {
                    a.len() == self.nodes.len()
                        && a.iter()
                            .all(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()))
                })
            };
            if lists
                .iter()
                .all(|(_, l, _)| complete(l) && *l == lists[0].1)
            {
                return Ok(());
            }
            last = lists
                .iter()
                .map(|(name, _, out)| format!("via {name}: {}", out.stdout.trim()))
                .collect::<Vec<_>>()
                .join("\n");
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        Err(format!(
            "member lists of {:?} did not agree (every member with client URLs) within \
             {CONVERGE_TIMEOUT:?}; last:\n{last}",
            self.names(members)
        ))
    }

    /// `endpoint hashkv` of member `i` alone: (header revision, hash).
    pub fn hashkv(&self, i: usize) -> Result<(i64, u64), String> {
        let out = self.ctl(
            i,
            &[
                "endpoint",
                "hashkv",
                "-w",
                "json",
                "--command-timeout=3s",
                "--dial-timeout=2s",
            ],
        );
        if out.code != 0 {
            return Err(format!("{}: {out}", self.name(i)));
        }
        let json: Value = serde_json::from_str(out.stdout.trim())
            .map_err(|e| format!("{}: hashkv printed no JSON ({e}): {out}", self.name(i)))?;
        let h = &json[0]["HashKV"];
        match (h["header"]["revision"].as_i64(), h["hash"].as_u64()) {
            (Some(rev), Some(hash)) => Ok((rev, hash)),
            _ => Err(format!("{}: no revision/hash in {json}", self.name(i))),
        }
    }

    /// Polls until every one of `members` has the same revision and the same hashkv; returns
    /// them.
    pub fn wait_converged(&self, members: &[usize]) -> (i64, u64) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut last = String::new();
        for _poll in 0..1000 {
            let got: Result<Vec<(i64, u64)>, String> =
                members.iter().map(|&i| self.hashkv(i)).collect();
            match got {
                Ok(v) if v.windows(2).all(|w| w[0] == w[1]) && !v.is_empty() => return v[0],
                Ok(v) => {
                    last = members
                        .iter()
                        .zip(&v)
                        .map(|(&i, (rev, hash))| {
                            format!("{}: revision {rev} hash {hash}", self.name(i))
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                }
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.fail(&format!(
            "{:?} did not converge to one revision and hash within {CONVERGE_TIMEOUT:?}; \
             last: {last}",
            self.names(members)
        ))
    }

    /// The names of the given members.
    pub fn names(&self, members: &[usize]) -> Vec<String> {
        members.iter().map(|&i| self.name(i).to_string()).collect()
    }

    /// Roles for the members: `leader` is `L`, the others `F1`, `F2`, ... in name order.
    pub fn roles_by_leader(&self, leader: usize) -> Vec<String> {
        let mut n = 0;
        (0..self.nodes.len())
            .map(|i| {
                if i == leader {
                    "L".to_string()
                } else {
                    n += 1;
                    format!("F{n}")
                }
            })
            .collect()
    }

    /// A normaliser replacing each member's id and name by `<ROLE>`, its client address by
    /// `<ROLE_CLIENT>` and its peer address by `<ROLE_PEER>` (`roles[i]` for member `i`), and
    /// the cluster id by `<CLUSTER_ID>`.
    pub fn norm(&self, roles: &[String]) -> Norm {
        assert_eq!(roles.len(), self.nodes.len(), "one role per member");
        let mut norm = Norm::new();
        norm.id(self.cluster_id, "<CLUSTER_ID>");
        for (i, role) in roles.iter().enumerate() {
            norm.id(self.ids[i], &format!("<{role}>"));
            norm.literal(&self.endpoint(i), &format!("<{role}_CLIENT>"));
            norm.literal(
                &format!("127.0.0.1:{}", self.nodes[i].peer_port),
                &format!("<{role}_PEER>"),
            );
            norm.literal(&self.nodes[i].name, &format!("<{role}>"));
        }
        norm
    }

    /// The tails (last `lines` lines) of member `i`'s current run's stdout and stderr.
    pub fn logs(&self, i: usize, lines: usize) -> String {
        let node = &self.nodes[i];
        let mut text = String::new();
        for stream in ["out", "err"] {
            let path = self.log_path(i, node.runs, stream);
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = content.lines().collect();
            text.push_str(&format!(
                "[{} {} run {} std{stream}]\n",
                self.kind, node.name, node.runs
            ));
            for line in &all[all.len().saturating_sub(lines)..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Every member's log tails.
    pub fn all_logs(&self) -> String {
        let lines = if self.nodes.len() > 3 { 25 } else { 40 };
        (0..self.nodes.len())
            .map(|i| self.logs(i, lines))
            .collect::<Vec<_>>()
            .join("")
    }

    /// Panics with `msg` and every member's log tails.
    pub fn fail(&self, msg: &str) -> ! {
        // The panic message already holds the logs; Drop need not print them again.
        let logs = self.all_logs();
        self.logs_shown.set(true);
        panic!("{} cluster: {msg}\n--- logs ---\n{logs}", self.kind);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() && !self.logs_shown.get() {
            eprintln!("--- {} cluster logs ---\n{}", self.kind, self.all_logs());
        }
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        if std::env::var_os("OXCD_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept {}", dir.keep().display());
            }
        }
    }
}

/// What `endpoint status` says about one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub member_id: u64,
    pub leader: u64,
    pub revision: i64,
    pub raft_term: u64,
    pub is_learner: bool,
    pub errors: Vec<String>,
}

impl Status {
    /// From one element of `endpoint status -w json`.
    pub fn from_json(v: &Value) -> Option<Status> {
        let s = &v["Status"];
        Some(Status {
            member_id: s["header"]["member_id"].as_u64()?,
            leader: s["leader"].as_u64().unwrap_or(0),
            revision: s["header"]["revision"].as_i64().unwrap_or(0),
            raft_term: s["raftTerm"].as_u64().unwrap_or(0),
            is_learner: s["isLearner"].as_bool().unwrap_or(false),
            errors: s["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| e.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The lines of `text`, sorted (for outputs whose order follows member ids or timing).
pub fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Normalises JSON output whose arrays follow member-id order: a top-level array and any
/// `members` array are sorted by their elements' normalised text.
pub fn canon_json(text: &str, norm: &Norm) -> String {
    let mut v: Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(_) => return norm.apply(text),
    };
    let sort = |a: &mut Vec<Value>| {
        a.sort_by_cached_key(|e| norm.apply(&e.to_string()));
    };
    if let Some(a) = v.as_array_mut() {
        sort(a);
    }
    if let Some(a) = v.get_mut("members").and_then(Value::as_array_mut) {
        sort(a);
    }
    format!("{}\n", norm.apply(&v.to_string()))
}

/// Normalises `-w table` output and sorts the rows of each table (a header is a group of one
/// row, so sorting every group of consecutive rows is enough).
pub fn canon_table(text: &str, norm: &Norm) -> String {
    let text = norm.apply(text);
    let mut out: Vec<&str> = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        if line.starts_with('|') {
            rows.push(line);
            continue;
        }
        rows.sort_unstable();
        out.append(&mut rows);
        out.push(line);
    }
    rows.sort_unstable();
    out.append(&mut rows);
    out.join("\n")
}

/// Checks `endpoint status --cluster -w json` (every member answers, exactly one says it
/// leads, all name the same leader) and summarises it independent of who leads: one line per
/// member, sorted.
pub fn status_summary(text: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("no JSON ({e}): {text}"))?;
    let all = v
        .as_array()
        .ok_or_else(|| format!("not an array: {text}"))?;
    let statuses: Vec<Status> = all
        .iter()
        .map(|e| Status::from_json(e).ok_or_else(|| format!("no status in {e}")))
        .collect::<Result<_, _>>()?;
    let leaders: Vec<u64> = statuses.iter().map(|s| s.leader).collect();
    let selves = statuses
        .iter()
        .filter(|s| s.leader != 0 && s.leader == s.member_id)
        .count();
    if selves != 1 {
        return Err(format!("{selves} members say they lead: {text}"));
    }
    if leaders.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("members disagree on the leader: {text}"));
    }
    let mut lines: Vec<String> = statuses
        .iter()
        .map(|s| {
            format!(
                "leader={} revision={} learner={} errors={:?}",
                if s.leader == s.member_id {
                    "self"
                } else {
                    "other"
                },
                s.revision,
                s.is_learner,
                s.errors
            )
        })
        .collect();
    lines.sort_unstable();
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

/// Checks `endpoint status --cluster -w table` (exactly one `IS LEADER` true) and returns it
/// with endpoint and id cells blanked and rows sorted.
pub fn status_table(text: &str) -> Result<String, String> {
    let canon = canon_tables(text);
    let mut lines: Vec<String> = canon.split('\n').map(str::to_string).collect();
    let header_at = lines
        .iter()
        .position(|l| l.starts_with("| ENDPOINT |"))
        .ok_or_else(|| format!("no status table: {text}"))?;
    let header: Vec<String> = lines[header_at]
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (leader_col, endpoint_col, id_col) = match (col("IS LEADER"), col("ENDPOINT"), col("ID")) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return Err(format!("unexpected status table header: {text}")),
    };
    let mut leaders = 0;
    for line in lines.iter_mut().skip(header_at + 2) {
        if !line.starts_with('|') {
            break;
        }
        let mut cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if cells.get(leader_col).map(String::as_str) == Some("true") {
            leaders += 1;
        }
        cells[endpoint_col] = "<ANY>".into();
        cells[id_col] = "<ANY>".into();
        // Which row leads depends on the election.
        cells[leader_col] = "<BOOL>".into();
        *line = format!("| {} |", cells.join(" | "));
    }
    if leaders != 1 {
        return Err(format!("{leaders} rows say IS LEADER true: {text}"));
    }
    Ok(canon_table(&lines.join("\n"), &Norm::new()))
}

/// Whether an etcdctl error output belongs to the "request timed out" family: etcd's server
/// side request timeout or the client's own deadline.
pub fn is_timeout_error(out: &Output) -> bool {
    out.code != 0
        && out
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("Error:"))
            .is_some_and(|l| {
                l.contains("etcdserver: request timed out")
                    || l.contains("context deadline exceeded")
            })
}

/// The outcome of a timing-dependent failing command: exit code, whether the final `Error:`
/// line is a timeout, and the distinct server errors in the retry warnings (not the client's
/// own deadline).
pub fn failure_outcome(out: &Output) -> String {
    let mut server_errors: Vec<String> = Vec::new();
    for line in out.stderr.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(e) = v["error"].as_str() {
            if e.contains("context deadline exceeded") {
                continue;
            }
            if !server_errors.iter().any(|x| x == e) {
                server_errors.push(e.to_string());
            }
        }
    }
    server_errors.sort_unstable();
    format!(
        "exit code {}; timeout error: {}; server errors: {:?}\n",
        out.code,
        is_timeout_error(out),
        server_errors
    )
}

/// The outcome of a command that fails on a deadline whose two ends (server and client) race:
/// exit code and every output line except the client's retry warnings, with the deadline
/// error, whichever end reported it, as `<DEADLINE>`.
pub fn deadline_outcome(out: &Output, norm: &Norm) -> String {
    let mut text = format!("exit code {}\n", out.code);
    for line in norm
        .apply(&out.stdout)
        .lines()
        .chain(norm.apply(&out.stderr).lines())
    {
        if line.starts_with('{') && line.contains("\"level\":\"warn\"") {
            continue;
        }
        let line = line
            .replace(
                "rpc error: code = Unknown desc = context deadline exceeded",
                "<DEADLINE>",
            )
            .replace(
                "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                "<DEADLINE>",
            )
            .replace("context deadline exceeded", "<DEADLINE>");
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Normalised stdout, stderr and exit code of one command, for a transcript.
pub fn shown(out: &Output, norm: &Norm) -> String {
    format!(
        "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.code,
        norm.apply(&out.stdout),
        norm.apply(&out.stderr)
    )
}

/// What a scenario saw, normalised, step by step: comparable between an etcd and an oxcd run.
/// `problems` are failed checks that did not stop the scenario (so that one run reports every
/// difference); a check after which going on makes no sense panics instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    pub entries: Vec<(String, String)>,
    pub problems: Vec<String>,
    /// The members' log tails, kept when a check failed.
    pub logs: String,
}

impl Transcript {
    pub fn new() -> Transcript {
        Transcript::default()
    }

    /// Adds one step: a label (what was run, with roles instead of members) and its text.
    pub fn add(&mut self, label: impl Into<String>, text: impl Into<String>) {
        self.entries.push((label.into(), text.into()));
    }

    /// Records a failed check and goes on.
    pub fn problem(&mut self, msg: impl Into<String>) {
        self.problems.push(msg.into());
    }

    /// Every entry, for `OXCD_TEST_DUMP=1`.
    pub fn dump(&self) -> String {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, (l, t))| format!("=== step {}: {l}\n{t}", i + 1))
            .collect()
    }

    fn problems_report(&self, kind: Kind) -> String {
        let mut text = format!("{} failed checks on {kind}:\n", self.problems.len());
        for p in &self.problems {
            text.push_str(&format!("* {}\n", clip(p, 2000, 60)));
        }
        text
    }
}

/// Compares two transcripts; `Err` holds a report of every differing step.
pub fn check_transcripts(
    name: &str,
    expected: &Transcript,
    got_kind: Kind,
    got: &Transcript,
) -> Result<(), String> {
    let mut report = String::new();
    let mut bad = Vec::new();
    let n = expected.entries.len().max(got.entries.len());
    let missing = (String::from("<missing>"), String::new());
    for i in 0..n {
        let e = expected.entries.get(i).unwrap_or(&missing);
        let g = got.entries.get(i).unwrap_or(&missing);
        if e == g {
            continue;
        }
        bad.push(i + 1);
        if bad.len() > 12 {
            continue;
        }
        report.push_str(&format!("\n=== step {}: {}\n", i + 1, clip(&g.0, 300, 1)));
        if e.0 != g.0 {
            report.push_str(&format!("(etcd's step {} was: {})\n", i + 1, e.0));
        }
        report.push_str(&format!(
            "--- (- etcd, + {got_kind}; normalised) ---\n{}",
            clip(&diff(&e.1, &g.1), 2000, 200)
        ));
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "cluster scenario `{name}`: {got_kind} differs from etcd in {} of {} steps {:?}\n{report}",
        bad.len(),
        n,
        bad
    ))
}

type Cache = Mutex<HashMap<String, Arc<OnceLock<Arc<Transcript>>>>>;

/// The etcd run of a scenario, computed once per test binary (its checks must pass).
pub fn reference(name: &str, scenario: fn(Kind) -> Transcript) -> Arc<Transcript> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let t = scenario(Kind::Etcd);
        if std::env::var_os("OXCD_TEST_DUMP").is_some() {
            eprintln!("##### {name}: etcd\n{}", t.dump());
        }
        Arc::new(t)
    })
    .clone()
}

/// Runs `scenario` on oxcd, then on etcd (once per binary); panics with oxcd's failed checks
/// and every step whose output differs from etcd's.
pub fn run_oxcd(name: &str, scenario: fn(Kind) -> Transcript) {
    let got = scenario(Kind::Oxcd);
    if std::env::var_os("OXCD_TEST_DUMP").is_some() {
        eprintln!("##### {name}: oxcd\n{}", got.dump());
    }
    let expected = reference(name, scenario);
    assert!(
        expected.problems.is_empty(),
        "cluster scenario `{name}` fails on etcd itself: {}",
        expected.problems_report(Kind::Etcd)
    );
    let mut report = String::new();
    if !got.problems.is_empty() {
        report.push_str(&format!(
            "cluster scenario `{name}`: {}",
            got.problems_report(Kind::Oxcd)
        ));
    }
    if let Err(diff) = check_transcripts(name, &expected, Kind::Oxcd, &got) {
        report.push_str(&diff);
    }
    if !report.is_empty() && !got.logs.is_empty() {
        report.push_str(&format!(
            "\n--- oxcd logs at the end of the scenario ---\n{}",
            got.logs
        ));
    }
    if !report.is_empty() {
        panic!("{report}");
    }
}

/// Runs `scenario` on etcd: its checks must pass (the oracle for the oxcd run).
pub fn run_etcd_oracle(name: &str, scenario: fn(Kind) -> Transcript) {
    let t = reference(name, scenario);
    assert!(
        t.problems.is_empty(),
        "cluster scenario `{name}`: {}\n--- logs ---\n{}",
        t.problems_report(Kind::Etcd),
        t.logs
    );
}

/// Runs `scenario` on etcd a second time: the transcript must be the same (the scenario is
/// deterministic where it claims to be).
pub fn run_etcd_twice(name: &str, scenario: fn(Kind) -> Transcript) {
    let first = reference(name, scenario);
    let second = scenario(Kind::Etcd);
    assert!(
        second.problems.is_empty(),
        "cluster scenario `{name}`: {}",
        second.problems_report(Kind::Etcd)
    );
    if let Err(report) = check_transcripts(name, &first, Kind::Etcd, &second) {
        panic!("{report}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_summary_needs_one_leader() {
        let two = r#"[{"Endpoint":"a","Status":{"header":{"member_id":1,"revision":2},"leader":1}},{"Endpoint":"b","Status":{"header":{"member_id":2,"revision":2},"leader":1}}]"#;
        assert_eq!(
            status_summary(two).unwrap(),
            "leader=other revision=2 learner=false errors=[]\nleader=self revision=2 learner=false errors=[]\n"
        );
        let split = r#"[{"Status":{"header":{"member_id":1},"leader":1}},{"Status":{"header":{"member_id":2},"leader":2}}]"#;
        assert!(status_summary(split).is_err());
        let none = r#"[{"Status":{"header":{"member_id":1},"errors":["etcdserver: no leader"]}}]"#;
        assert!(status_summary(none).is_err());
    }

    #[test]
    fn status_table_blanks_identity() {
        let t = "\
+-----+----+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
| ENDPOINT | ID | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |
+-----+----+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
| http://127.0.0.1:2 | 2b | 3.4.23 | 20 kB | false | false | 2 | 8 | 8 |  |
| http://127.0.0.1:1 | 1a | 3.4.23 | 20 kB | true | false | 2 | 8 | 8 |  |
+-----+----+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
";
        let got = status_table(t).unwrap();
        assert_eq!(
            got,
            "+-+\n| ENDPOINT | ID | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |\n+-+\n| <ANY> | <ANY> | <VERSION> | <DBSIZE> | <BOOL> | false | <TERM> | <INDEX> | <INDEX> |  |\n| <ANY> | <ANY> | <VERSION> | <DBSIZE> | <BOOL> | false | <TERM> | <INDEX> | <INDEX> |  |\n+-+\n"
        );
        assert!(status_table(&t.replace("| true |", "| false |")).is_err());
    }

    #[test]
    fn canon_json_sorts_members() {
        let mut n = Norm::new();
        n.literal("m1", "<B>").literal("m2", "<A>");
        assert_eq!(
            canon_json(r#"{"members":[{"name":"m1"},{"name":"m2"}]}"#, &n),
            "{\"members\":[{\"name\":\"<A>\"},{\"name\":\"<B>\"}]}\n"
        );
    }

    #[test]
    fn failure_outcome_ignores_client_deadline() {
        let out = Output {
            stderr: "{\"level\":\"warn\",\"error\":\"rpc error: code = Unavailable desc = etcdserver: request timed out\"}\n{\"level\":\"warn\",\"error\":\"rpc error: code = Unknown desc = context deadline exceeded\"}\nError: rpc error: code = Unknown desc = context deadline exceeded\n".into(),
            code: 1,
            ..Default::default()
        };
        assert_eq!(
            failure_outcome(&out),
            "exit code 1; timeout error: true; server errors: [\"rpc error: code = Unavailable desc = etcdserver: request timed out\"]\n"
        );
    }
}
