//! A cluster of real `oxcd` processes on loopback whose peer traffic passes through the fault
//! proxies of a [`Network`]: each member listens on its own peer port and advertises its
//! proxy's address, so every byte between two members crosses a proxy the scenario controls.
//!
//! Members can be killed (`kill -9`), restarted on their data dir, paused (SIGSTOP) and resumed,
//! removed and added back with an empty data dir. Processes are spawned from the calling thread
//! and die with it (`PR_SET_PDEATHSIG`), so call these methods from the test's own thread.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use oxcd_api::etcdserverpb as pb;
use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_process_tests::{bins, ports, proc};
use tempfile::TempDir;
use tokio::runtime::Runtime;

use crate::client::{header_revision, kv_of, MemberClient, REQUEST_TIMEOUT};
use crate::history::{KeyValue, MemberState};
use crate::proxy::Network;

/// Raft timing of the members: etcd's defaults are 100 ms and 1 s; faster elections make
/// short scenarios see more of them.
pub const HEARTBEAT_MS: u64 = 50;
pub const ELECTION_MS: u64 = 500;

/// How the members are started.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    pub size: usize,
    /// Where data dirs go (a small filesystem for the full-disk scenario); a temp dir if None.
    pub data_root: Option<PathBuf>,
    /// Environment for every member (LD_PRELOAD of the slow-fsync library, ...).
    pub env: Vec<(String, String)>,
    /// `--snapshot-count`: small values make the leader compact its log often, so lagging
    /// members get raft snapshots.
    pub snapshot_count: u64,
    /// More flags for every member.
    pub flags: Vec<String>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            size: 3,
            data_root: None,
            env: Vec::new(),
            snapshot_count: 500,
            flags: Vec::new(),
        }
    }
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// The address this member advertises: its proxy.
    pub proxy: SocketAddr,
    pub data_dir: PathBuf,
    /// Member id, learnt once it runs (changes when it is removed and added back).
    pub id: u64,
    /// Per-member environment for its next start (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    runs: u32,
    pub paused: bool,
}

pub struct Cluster {
    pub runtime: Arc<Runtime>,
    pub network: Network,
    pub members: Vec<Member>,
    opts: ClusterOpts,
    token: String,
    dir: TempDir,
}

impl Cluster {
    /// Starts `opts.size` members and waits until they have a leader. A member that lost a
    /// port race with another process (its port taken between choosing and binding it) makes
    /// the whole cluster start again on new ports.
    pub fn start(runtime: Arc<Runtime>, opts: ClusterOpts) -> Result<Cluster> {
        let mut last = None;
        for _ in 0..3 {
            match Cluster::start_once(runtime.clone(), opts.clone()) {
                Ok(c) => return Ok(c),
                Err(e) if format!("{e:#}").contains("Address already in use") => {
                    if let Some(root) = &opts.data_root {
                        // The data dirs of the failed attempt, on a filesystem the run reuses.
                        for i in 0..opts.size {
                            let _ = std::fs::remove_dir_all(root.join(format!("m{}.etcd", i + 1)));
                        }
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts failed"))
    }

    fn start_once(runtime: Arc<Runtime>, opts: ClusterOpts) -> Result<Cluster> {
        let oxcd = bins::oxcd();
        bins::require(&oxcd);
        let dir = tempfile::Builder::new()
            .prefix("oxcd-test-robustness-")
            .tempdir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let root = opts
            .data_root
            .clone()
            .unwrap_or_else(|| dir.path().to_path_buf());
        let network = Network::new();
        let mut members = Vec::new();
        for i in 0..opts.size {
            let peer_port = ports::free_port();
            let target: SocketAddr = format!("127.0.0.1:{peer_port}").parse()?;
            let proxy = network.add_member(i, target)?;
            members.push(Member {
                name: format!("m{}", i + 1),
                client_port: ports::free_port(),
                peer_port,
                proxy,
                data_dir: root.join(format!("m{}.etcd", i + 1)),
                id: 0,
                env: Vec::new(),
                child: None,
                runs: 0,
                paused: false,
            });
        }
        let token = format!("oxcd-test-robustness-{}", std::process::id());
        let mut cluster = Cluster {
            runtime,
            network,
            members,
            opts,
            token,
            dir,
        };
        let initial = cluster.initial_cluster(&cluster.all());
        for i in cluster.all() {
            cluster.spawn(i, &initial, "new")?;
        }
        cluster.wait_leader(Duration::from_secs(60))?;
        cluster.learn_ids()?;
        Ok(cluster)
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.members.len()).collect()
    }

    pub fn urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    pub fn client(&self, i: usize) -> MemberClient {
        let _guard = self.runtime.enter();
        MemberClient::new(i, &self.urls()[i])
    }

    fn initial_cluster(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|&i| format!("{}=http://{}", self.members[i].name, self.members[i].proxy))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, initial_cluster: &str, state: &str) -> Result<()> {
        let m = &self.members[i];
        let args: Vec<String> = [
            ("name", m.name.clone()),
            ("data-dir", m.data_dir.display().to_string()),
            ("initial-cluster", initial_cluster.to_string()),
            ("initial-cluster-token", self.token.clone()),
            ("initial-cluster-state", state.to_string()),
            (
                "listen-peer-urls",
                format!("http://127.0.0.1:{}", m.peer_port),
            ),
            ("initial-advertise-peer-urls", format!("http://{}", m.proxy)),
            (
                "listen-client-urls",
                format!("http://127.0.0.1:{}", m.client_port),
            ),
            (
                "advertise-client-urls",
                format!("http://127.0.0.1:{}", m.client_port),
            ),
            ("heartbeat-interval", HEARTBEAT_MS.to_string()),
            ("election-timeout", ELECTION_MS.to_string()),
            ("snapshot-count", self.opts.snapshot_count.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [format!("--{flag}"), value])
        .chain(self.opts.flags.iter().cloned())
        .collect();
        let m = &mut self.members[i];
        m.runs += 1;
        let logs = self.dir.path().join("logs");
        let out = File::create(logs.join(format!("{}-run-{}.out", m.name, m.runs)))?;
        let err = File::create(logs.join(format!("{}-run-{}.err", m.name, m.runs)))?;
        let mut cmd = Command::new(bins::oxcd());
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("ETCD_") || key == "FAILPOINTS" {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.opts.env.iter().cloned());
        cmd.envs(m.env.iter().cloned());
        proc::isolate(&mut cmd);
        let child = cmd.spawn().context("spawn oxcd")?;
        self.network.set_pid(i, Some(child.id()));
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// Whether member `i`'s process is alive (it may exit by itself, e.g. on a failpoint).
    pub fn is_running(&mut self, i: usize) -> bool {
        match &mut self.members[i].child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn running(&mut self) -> Vec<usize> {
        self.all()
            .into_iter()
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// `kill -9` of member `i` (nothing if it is not running).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            proc::kill_group(&mut child);
        }
        self.members[i].paused = false;
        self.network.set_pid(i, None);
    }

    /// Starts member `i` again on its data dir.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill9(i);
        let initial = self.initial_cluster(&self.all());
        self.spawn(i, &initial, "new")
    }

    pub fn pause(&mut self, i: usize) {
        if let Some(c) = &self.members[i].child {
            proc::signal_group(c, libc::SIGSTOP);
            self.members[i].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if let Some(c) = &self.members[i].child {
            proc::signal_group(c, libc::SIGCONT);
        }
        self.members[i].paused = false;
    }

    /// Status of member `i`.
    pub fn status(&self, i: usize) -> Result<pb::StatusResponse> {
        let c = self.client(i);
        self.runtime
            .block_on(c.status())
            .map_err(|s| anyhow!("status of m{}: {}", i + 1, s.message()))
    }

    /// The index of the member every answering member names as leader, waiting up to
    /// `timeout` for one.
    pub fn wait_leader(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut leaders = Vec::new();
            let mut ids = HashMap::new();
            for i in self.running() {
                if self.members[i].paused {
                    continue;
                }
                match self.status(i) {
                    Ok(s) => {
                        ids.insert(s.header.as_ref().map_or(0, |h| h.member_id), i);
                        leaders.push(s.leader);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if let Some(&l) = leaders.first() {
                if l != 0 && leaders.iter().all(|&x| x == l) {
                    if let Some(&i) = ids.get(&l) {
                        return Ok(i);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "no leader within {timeout:?} ({last})\n{}",
            self.logs_tail(40)
        )
    }

    fn learn_ids(&mut self) -> Result<()> {
        for i in self.all() {
            if self.is_running(i) {
                let s = self.status(i)?;
                self.members[i].id = s.header.map_or(0, |h| h.member_id);
            }
        }
        Ok(())
    }

    /// Moves the leadership from `leader` to member `to` (MoveLeader on the leader).
    pub fn move_leader(&self, leader: usize, to: usize) -> Result<()> {
        use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
        let target_id = self.members[to].id;
        let channel = self.client(leader).channel();
        self.runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                MaintenanceClient::new(channel).move_leader(pb::MoveLeaderRequest { target_id }),
            )
            .await
            .map_err(|_| anyhow!("move leader timed out"))?
            .map_err(|s| anyhow!("move leader: {}", s.message()))
        })?;
        Ok(())
    }

    /// Removes member `i` from the cluster (through member `via`), stops it and deletes its
    /// data dir.
    pub fn remove_member(&mut self, i: usize, via: usize) -> Result<()> {
        let id = self.members[i].id;
        let channel = self.client(via).channel();
        self.runtime.block_on(async {
            tokio::time::timeout(
                REQUEST_TIMEOUT,
                ClusterClient::new(channel).member_remove(pb::MemberRemoveRequest { id }),
            )
            .await
            .map_err(|_| anyhow!("member remove timed out"))?
            .map_err(|s| anyhow!("member remove: {}", s.message()))
        })?;
        // A removed member exits by itself once it learns it; make sure.
        std::thread::sleep(Duration::from_millis(500));
        self.kill9(i);
        let _ = std::fs::remove_dir_all(&self.members[i].data_dir);
        Ok(())
    }

    /// Adds member `i` back (new member id, empty data dir) through member `via` and starts it
    /// with `--initial-cluster-state existing`.
    pub fn add_member(&mut self, i: usize, via: usize) -> Result<()> {
        let url = format!("http://{}", self.members[i].proxy);
        let channel = self.client(via).channel();
        let added = self.runtime.block_on(async {
            tokio::time::timeout(
                REQUEST_TIMEOUT,
                ClusterClient::new(channel).member_add(pb::MemberAddRequest {
                    peer_ur_ls: vec![url],
                    is_learner: false,
                }),
            )
            .await
            .map_err(|_| anyhow!("member add timed out"))?
            .map_err(|s| anyhow!("member add: {}", s.message()))
        })?;
        let added = added.into_inner();
        self.members[i].id = added.member.map_or(0, |m| m.id);
        let initial = self.initial_cluster(&self.all());
        self.spawn(i, &initial, "existing")
    }

    /// Heals the network, resumes paused members and restarts stopped ones, then waits until
    /// every member has the same revision. Returns that revision.
    pub fn heal_and_converge(&mut self, timeout: Duration) -> Result<i64> {
        self.network.heal_all();
        for i in self.all() {
            if self.members[i].paused {
                self.resume(i);
            }
            if !self.is_running(i) {
                self.restart(i)?;
            }
        }
        self.wait_leader(timeout)?;
        let deadline = Instant::now() + timeout;
        loop {
            let revs: Vec<Result<i64, String>> = self
                .all()
                .into_iter()
                .map(|i| {
                    self.status(i)
                        .map(|s| header_revision(&s.header))
                        .map_err(|e| e.to_string())
                })
                .collect();
            if let Ok(r) = revs.iter().cloned().collect::<Result<Vec<i64>, String>>() {
                if r.iter().all(|&x| x == r[0]) {
                    return Ok(r[0]);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "members did not converge within {timeout:?}: {revs:?}\n{}",
                    self.logs_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every key at one linearizable revision, and every member's HashKV at that revision.
    pub fn final_state(&self) -> Result<(i64, Vec<KeyValue>, Vec<MemberState>)> {
        let channel = self.client(0).channel();
        let (revision, kvs) = self.runtime.block_on(async {
            let r = tokio::time::timeout(
                REQUEST_TIMEOUT,
                KvClient::new(channel).range(pb::RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                }),
            )
            .await
            .map_err(|_| anyhow!("final range timed out"))?
            .map_err(|s| anyhow!("final range: {}", s.message()))?
            .into_inner();
            Ok::<_, anyhow::Error>((
                header_revision(&r.header),
                r.kvs.into_iter().map(kv_of).collect::<Vec<_>>(),
            ))
        })?;
        let mut states = Vec::new();
        for i in self.all() {
            let c = self.client(i);
            let h = self
                .runtime
                .block_on(c.hash_kv(revision))
                .map_err(|s| anyhow!("hashkv of m{}: {}", i + 1, s.message()))?;
            let st = self.status(i)?;
            states.push(MemberState {
                member: i,
                revision: header_revision(&st.header),
                compact_revision: h.compact_revision,
                hash_kv: h.hash,
            });
        }
        Ok((revision, kvs, states))
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// The last `lines` lines of every member's latest log, for failure messages.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            let path = self
                .logs_dir()
                .join(format!("{}-run-{}.err", m.name, m.runs.max(1)));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ({})\n", m.name, path.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// How many lines of member `i`'s logs, over all its runs, contain `needle`.
    pub fn log_count(&self, i: usize, needle: &str) -> usize {
        let m = &self.members[i];
        (1..=m.runs)
            .map(|run| {
                let path = self.logs_dir().join(format!("{}-run-{run}.err", m.name));
                std::fs::read_to_string(path)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count()
            })
            .sum()
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in self.all() {
            self.kill9(i);
        }
    }
}
