//! `compare`: the same scenarios against a 3-member etcd cluster and a 3-member oxcd cluster
//! started here on loopback (one system after the other, never both at once), then one table
//! of the numbers side by side.
//!
//! Each system gets a fresh cluster for the throughput scenarios (`mem-idle` first, right
//! after the start) and another fresh one for the big-data scenarios (`load-1m`, then
//! `mem-1m`, `disk-1m`, `startup-1m` on what it wrote). The benchmarks are the other
//! subcommands' own code, run in-process from their command lines (printed under the
//! table) with the bars hidden; one line per scenario goes to stderr.

mod cluster;
mod measure;
mod procs;
mod scenarios;
mod table;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::gofmt;
use cluster::Cluster;
use scenarios::{Plan, Totals};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// oxcd server binary [default: `oxcd` next to this oxbench, else on PATH]
    #[arg(long)]
    oxcd: Option<PathBuf>,
    /// etcd server binary
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Directory in which a fresh work dir (members' data and logs) is made [default: the temp dir]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work dir (it is removed at the end otherwise)
    #[arg(long)]
    keep: bool,
    /// Systems to run (etcd always runs first)
    #[arg(long, value_delimiter = ',', default_value = "etcd,oxcd")]
    systems: Vec<String>,
    /// Scenarios to run [default: all]; mem-1m, disk-1m and startup-1m imply load-1m
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Tiny totals: the whole comparison takes about a minute
    #[arg(long)]
    quick: bool,
    /// Distinct keys written by load-1m
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Also write the tables (markdown) to this file
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the raw results (JSON) to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Longest one scenario may run before it counts as failed
    #[arg(long, default_value = "30m", value_parser = gofmt::parse_go_duration)]
    scenario_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum System {
    Etcd,
    Oxcd,
}

impl System {
    pub const ALL: [System; 2] = [System::Etcd, System::Oxcd];

    pub fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Oxcd => "oxcd",
        }
    }
}

/// A throughput scenario's numbers.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub rps: f64,
    /// None where latency means nothing (watch events).
    pub avg_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub count: usize,
    pub secs: f64,
    /// Failed requests by error text, most frequent first.
    pub errors: Vec<(String, usize)>,
}

/// One row of the resources table.
#[derive(Clone, Debug)]
pub struct Measure {
    pub label: String,
    pub unit: &'static str,
    pub value: f64,
}

#[derive(Clone, Debug)]
pub enum Value {
    Throughput(Throughput),
    /// Rows, and the raw per-member numbers for `--json`.
    Measures(Vec<Measure>, serde_json::Value),
}

pub struct Outcome {
    pub system: System,
    pub scenario: &'static str,
    pub value: Result<Value, String>,
}

/// The last panic message seen (a [`crate::Failure`] or any other), for the scenario runner.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

pub fn take_panic() -> Option<String> {
    LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Failures (`fail`) become silent panics recorded for the scenario runner; other panics
/// are recorded and printed as usual.
fn catch_failures() {
    crate::FAIL_PANICS.store(true, std::sync::atomic::Ordering::Relaxed);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let text = if let Some(f) = p.downcast_ref::<crate::Failure>() {
            f.0.clone()
        } else if let Some(s) = p.downcast_ref::<&str>() {
            format!("panic: {s}")
        } else if let Some(s) = p.downcast_ref::<String>() {
            format!("panic: {s}")
        } else {
            "panic".to_string()
        };
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        if !p.is::<crate::Failure>() {
            default(info);
        }
    }));
}

/// The oxcd binary next to this executable, else `oxcd` from PATH.
fn default_oxcd() -> PathBuf {
    let here = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("oxcd")));
    if let Some(p) = here.filter(|p| p.is_file()) {
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("oxcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("oxcd"))
}

/// The work dir: made fresh, removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(parent: Option<&Path>, keep: bool) -> Result<WorkDir, String> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let path = parent.join(format!("oxbench-compare-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("compare: work dir kept: {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("compare: remove {}: {e}", self.path.display());
        }
    }
}

/// Runs the comparison; the process exit code (1 when a scenario failed).
pub fn main(a: &CompareArgs) -> i32 {
    match run(a) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("compare: {e}");
            2
        }
    }
}

/// Whether every scenario succeeded.
fn run(a: &CompareArgs) -> Result<bool, String> {
    crate::progress::hide_all();
    catch_failures();
    let plan = Plan::new(&a.scenarios, Totals::new(a.quick, a.keys))?;
    let mut systems = Vec::new();
    for s in &a.systems {
        let sys = System::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| format!("unknown system {s:?} (etcd, oxcd)"))?;
        systems.push(sys);
    }
    let oxcd = a.oxcd.clone().unwrap_or_else(default_oxcd);
    let bin = |s: System| match s {
        System::Etcd => a.etcd.clone(),
        System::Oxcd => oxcd.clone(),
    };
    let header = table::Header::collect(&bin(System::Etcd), &bin(System::Oxcd));
    for s in System::ALL.into_iter().filter(|s| systems.contains(s)) {
        let b = bin(s);
        // A bare name is looked up on PATH when spawned.
        if b.components().count() > 1 && !b.is_file() {
            return Err(format!("{} binary {} not found", s.name(), b.display()));
        }
    }
    let work = WorkDir::new(a.work_dir.as_deref(), a.keep)?;
    eprintln!("compare: work dir {}", work.path.display());
    procs::on_interrupt((!a.keep).then(|| work.path.clone()));

    let mut outcomes = Vec::new();
    for s in System::ALL.into_iter().filter(|s| systems.contains(s)) {
        run_system(
            s,
            &bin(s),
            &work.path.join(s.name()),
            &plan,
            a,
            &mut outcomes,
        );
    }
    let text = table::markdown(&header, &plan, &systems, &outcomes);
    print!("{text}");
    if let Some(out) = &a.out {
        std::fs::write(out, &text).map_err(|e| format!("write {}: {e}", out.display()))?;
    }
    if let Some(path) = &a.json {
        let j = table::json(&header, &plan, &outcomes);
        let body = serde_json::to_string_pretty(&j).map_err(|e| e.to_string())?;
        std::fs::write(path, body).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(outcomes.iter().all(|o| o.value.is_ok()))
}

/// One system: a cluster for the throughput scenarios, another for the big-data ones.
fn run_system(
    sys: System,
    bin: &Path,
    dir: &Path,
    plan: &Plan,
    a: &CompareArgs,
    out: &mut Vec<Outcome>,
) {
    for (phase, names) in [("bench", plan.small()), ("big", plan.big())] {
        if names.is_empty() {
            continue;
        }
        let at = dir.join(phase);
        eprintln!("{}: starting 3 members in {}", sys.name(), at.display());
        let mut c = match Cluster::start(bin, &at) {
            Ok(c) => c,
            Err(e) => {
                for s in names {
                    eprintln!("{} {s} failed: cluster start: {e}", sys.name());
                    let value = Err(format!("cluster start: {e}"));
                    out.push(Outcome {
                        system: sys,
                        scenario: s,
                        value,
                    });
                }
                continue;
            }
        };
        for s in names {
            let value = scenarios::run(&mut c, s, &plan.totals, a.scenario_timeout);
            eprintln!("{} {s} … {}", sys.name(), table::line(s, &value));
            out.push(Outcome {
                system: sys,
                scenario: s,
                value,
            });
        }
        c.stop_all();
    }
}
