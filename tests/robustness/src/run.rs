//! One robustness run: a cluster, traffic, a scenario's faults, then the history and its check.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::check::{check, Report};
use crate::client::MemberClient;
use crate::cluster::{Cluster, ClusterOpts};
use crate::faults::{SlowFsync, SmallDisk};
use crate::history::{History, Outcome, Request, Response};
use crate::recorder::Recorder;
use crate::scenarios::Scenario;
use crate::traffic::{Traffic, TrafficConfig};

/// Client id of the operations the harness itself sends (compactions, defrags, lease clean-up).
pub const HARNESS_CLIENT: u32 = 1_000_000;

/// How long and how hard a run drives the cluster.
#[derive(Clone, Debug)]
pub struct Profile {
    /// How long traffic runs while the scenario injects faults.
    pub duration: Duration,
    pub traffic: TrafficConfig,
}

impl Profile {
    /// The profile of the test command: seconds per scenario.
    pub fn short() -> Profile {
        Profile {
            duration: Duration::from_secs(8),
            traffic: TrafficConfig::default(),
        }
    }

    /// The soak profile: longer runs, more clients.
    pub fn soak(duration: Duration) -> Profile {
        Profile {
            duration,
            traffic: TrafficConfig {
                clients: 12,
                watchers: 4,
                ..TrafficConfig::default()
            },
        }
    }
}

/// What one run found.
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub history: History,
    pub report: Report,
    /// The faults injected, one line each with its time.
    pub faults: Vec<String>,
    /// Where the whole history was written when the check failed.
    pub saved: Option<PathBuf>,
}

impl RunResult {
    /// A failure message: the seed to replay, the faults and the anomalies with the minimal
    /// history that shows them.
    pub fn failure(&self) -> String {
        let minimal = self.report.minimal_history(&self.history);
        format!(
            "scenario {} seed {} found anomalies (replay: cargo run -p oxcd-robustness --bin oxcd-robustness -- run {} --seed {})\n{}\nfaults:\n  {}\nminimal history:\n{}\nwhole history: {}",
            self.scenario,
            self.seed,
            self.scenario,
            self.seed,
            self.report,
            self.faults.join("\n  "),
            serde_json::to_string_pretty(&minimal).unwrap_or_default(),
            self.saved
                .as_ref()
                .map_or("not saved".to_string(), |p| p.display().to_string()),
        )
    }
}

/// What a scenario's fault injection can do while traffic runs.
pub struct Ctx<'a> {
    pub cluster: &'a mut Cluster,
    pub rng: StdRng,
    pub recorder: Arc<Recorder>,
    /// The last revision the all-keys watcher saw (compactions stay at or below it).
    pub progress: Arc<AtomicI64>,
    pub disk: Option<SmallDisk>,
    pub fsync: Option<SlowFsync>,
    pub deadline: Instant,
    started: Instant,
    faults: Vec<String>,
    burst_seq: u64,
}

impl Ctx<'_> {
    /// Whether the scenario should go on injecting.
    pub fn active(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Logs a fault (with the time since the traffic started).
    pub fn fault(&mut self, what: impl Into<String>) {
        let line = format!(
            "{:>7.2}s {}",
            self.started.elapsed().as_secs_f64(),
            what.into()
        );
        self.faults.push(line);
    }

    /// Sleeps a random time in `lo..hi` milliseconds.
    pub fn wait(&mut self, lo: u64, hi: u64) {
        let ms = self.rng.random_range(lo..hi.max(lo + 1));
        std::thread::sleep(Duration::from_millis(ms));
    }

    pub fn size(&self) -> usize {
        self.cluster.members.len()
    }

    pub fn random_member(&mut self) -> usize {
        self.rng.random_range(0..self.size())
    }

    /// The current leader, or a random member when none is agreed on within a few seconds.
    pub fn leader_or_random(&mut self) -> usize {
        match self.cluster.wait_leader(Duration::from_secs(5)) {
            Ok(l) => l,
            Err(_) => self.random_member(),
        }
    }

    /// A member other than `not`.
    pub fn other_than(&mut self, not: usize) -> usize {
        let n = self.size();
        (not + self.rng.random_range(1..n)) % n
    }

    /// Sends `req` to member `i` as the harness's client, recorded like any operation.
    pub fn call(&mut self, i: usize, req: Request) -> Outcome {
        let client: MemberClient = self.cluster.client(i);
        let (id, call) = self.recorder.begin();
        let outcome = self.cluster.runtime.block_on(client.call(&req));
        self.recorder
            .finish(id, HARNESS_CLIENT, i, call, req, outcome.clone());
        outcome
    }

    /// `n` puts through member `i`, one after another, recorded like any operation: a burst
    /// that puts a cut-off member far enough behind to need a snapshot.
    pub fn burst(&mut self, i: usize, n: usize) -> usize {
        let mut ok = 0;
        for _ in 0..n {
            let k = self.rng.random_range(0..10);
            self.burst_seq += 1;
            let req = Request::Put {
                key: crate::traffic::key(k),
                value: format!("burst-{}", self.burst_seq).into_bytes(),
                lease: 0,
            };
            ok += usize::from(matches!(self.call(i, req), Outcome::Ok(_)));
        }
        ok
    }

    /// Compacts at a revision the all-keys watcher has already seen, through member `i`.
    /// Returns the revision when the compaction was acknowledged.
    pub fn compact(&mut self, i: usize, physical: bool) -> Option<i64> {
        let seen = self.progress.load(Ordering::SeqCst);
        if seen < 3 {
            return None;
        }
        let revision = (seen - self.rng.random_range(0..10)).max(2);
        self.fault(format!("compact at {revision} through m{}", i + 1));
        match self.call(i, Request::Compact { revision, physical }) {
            Outcome::Ok(_) => Some(revision),
            Outcome::Err { .. } => None,
        }
    }
}

/// Runs `scenario` with `seed`: starts its cluster, traffic for `profile.duration` while the
/// scenario injects faults, heals everything, collects the final state and checks the history.
pub fn run(scenario: &Scenario, seed: u64, profile: &Profile) -> Result<RunResult> {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    );
    let mut opts = ClusterOpts::default();
    let mut disk = None;
    let mut fsync = None;
    if let Some(size) = scenario.small_disk {
        let d =
            SmallDisk::mount(size).context("the full-disk scenario needs a small filesystem")?;
        opts.data_root = Some(d.path().to_path_buf());
        disk = Some(d);
    }
    let fsync_dir = tempfile::Builder::new()
        .prefix("oxcd-test-robustness-fsync-")
        .tempdir()?;
    if scenario.slow_fsync {
        let f = SlowFsync::build(fsync_dir.path())?;
        opts.env.extend(f.env());
        fsync = Some(f);
    }
    (scenario.setup)(&mut opts);
    let mut cluster = Cluster::start(runtime.clone(), opts)?;
    for i in cluster.all() {
        if let Some(fp) = (scenario.failpoints)(i) {
            cluster.members[i].env = vec![("FAILPOINTS".to_string(), fp)];
            cluster.restart(i)?;
        }
    }
    cluster.wait_leader(Duration::from_secs(30))?;
    let recorder = Arc::new(Recorder::new());
    let mut traffic_cfg = profile.traffic.clone();
    (scenario.traffic)(&mut traffic_cfg);
    let mut traffic = Traffic::start(
        runtime.clone(),
        &cluster.urls(),
        &traffic_cfg,
        seed,
        recorder.clone(),
    );
    let started = Instant::now();
    let mut ctx = Ctx {
        rng: StdRng::seed_from_u64(seed ^ 0xfa17),
        recorder: recorder.clone(),
        progress: traffic.reference_progress.clone(),
        disk,
        fsync,
        deadline: started + profile.duration,
        started,
        faults: Vec::new(),
        burst_seq: 0,
        cluster: &mut cluster,
    };
    let injected = (scenario.inject)(&mut ctx);
    // Whatever the scenario left behind is undone before the end: no failpoint, no slow disk.
    if let Some(f) = &ctx.fsync {
        f.set_delay(Duration::ZERO);
    }
    if let Some(d) = &ctx.disk {
        let _ = d.free_filler();
    }
    let Ctx { mut faults, .. } = ctx;
    traffic.stop_clients();
    // Members still running with failpoints would crash again (a compaction resumed after a
    // restart fires its failpoint anew): restart them without.
    for i in cluster.all() {
        if !cluster.members[i].env.is_empty() {
            cluster.members[i].env.clear();
            if cluster.is_running(i) {
                faults.push(format!("end: restart m{} without failpoints", i + 1));
                cluster.restart(i)?;
            }
        }
    }
    let ended = (|| {
        injected.context("the scenario's fault injection failed")?;
        cluster.heal_and_converge(Duration::from_secs(60))?;
        revoke_leases(&cluster, &recorder);
        let converged = cluster.heal_and_converge(Duration::from_secs(60))?;
        let (final_revision, final_kvs, members) = cluster.final_state()?;
        Ok::<_, anyhow::Error>((converged, final_revision, final_kvs, members))
    })();
    let (converged, final_revision, final_kvs, members) = match ended {
        Ok(e) => e,
        Err(e) => {
            let keep = keep_logs(&cluster, scenario.name, seed);
            return Err(e.context(format!(
                "member logs in {keep}; faults:\n  {}\n",
                faults.join("\n  ")
            )));
        }
    };
    let caught_up = traffic.stop_watchers(final_revision.max(converged), Duration::from_secs(30));
    if !caught_up {
        eprintln!("warning: the all-keys watcher did not reach revision {final_revision}");
    }
    let (ops, watches) = recorder.take();
    let history = History {
        seed,
        scenario: scenario.name.to_string(),
        ops,
        watches,
        members,
        final_kvs,
        final_revision,
    };
    let report = check(&history);
    let mut result = RunResult {
        scenario: scenario.name.to_string(),
        seed,
        history,
        report,
        faults,
        saved: None,
    };
    if !result.report.is_ok() {
        let path =
            std::env::temp_dir().join(format!("oxcd-robustness-{}-{seed}.json", scenario.name));
        if std::fs::write(&path, serde_json::to_vec(&result.history)?).is_ok() {
            result.saved = Some(path);
        }
        keep_logs(&cluster, scenario.name, seed);
    }
    Ok(result)
}

/// Copies the members' logs out of the cluster's temp dir (removed with the cluster).
fn keep_logs(cluster: &Cluster, scenario: &str, seed: u64) -> String {
    let keep = std::env::temp_dir().join(format!("oxcd-robustness-{scenario}-{seed}-logs"));
    match copy_dir(&cluster.logs_dir(), &keep) {
        Ok(()) => keep.display().to_string(),
        Err(e) => format!("(not kept: {e})"),
    }
}

/// Revokes every lease still alive (recorded), so no lease expires after the final state is
/// taken.
fn revoke_leases(cluster: &Cluster, recorder: &Recorder) {
    use oxcd_api::etcdserverpb as pb;
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    let client = cluster.client(0);
    let leases = cluster.runtime.block_on(async {
        LeaseClient::new(client.channel())
            .lease_leases(pb::LeaseLeasesRequest {})
            .await
            .map(|r| r.into_inner().leases)
    });
    for lease in leases.unwrap_or_default() {
        let req = Request::LeaseRevoke { id: lease.id };
        let (id, call) = recorder.begin();
        let outcome = cluster.runtime.block_on(client.call(&req));
        let outcome = match outcome {
            // Expired meanwhile: nothing was revoked by this call.
            Outcome::Err { ref message, .. } if message.contains("lease not found") => {
                Outcome::Ok(Response::LeaseRevoke { revision: 0 })
            }
            o => o,
        };
        if matches!(outcome, Outcome::Ok(Response::LeaseRevoke { revision: 0 })) {
            continue;
        }
        recorder.finish(id, HARNESS_CLIENT + 1, 0, call, req, outcome);
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}
