//! A real client library from another ecosystem against oxcd, with a real etcd as the oracle.
//!
//! - `node_etcd3_workload`: the Node `etcd3` package (npm, pinned in
//!   tests/clients/node/package.json and package-lock.json; gRPC by @grpc/grpc-js) runs
//!   tests/clients/node/workload.js against a fresh single-member etcd 3.4 and a fresh oxcd:
//!   put/get, range with a prefix, delete, txn (compare + then/else), a watch that receives the
//!   events of the puts made after it started (and a replay from an old revision), lease grant,
//!   put with a lease, keepalive (once, and the library's automatic keepalive past the TTL),
//!   revoke (keys gone), expiry, the library's lock (lease + txn recipe) with two contenders
//!   showing mutual exclusion, and its election (campaign, proclaim, observe, resign). The
//!   script prints one JSON line per step; every step must pass on both servers and the step
//!   results must be equal.
//!
//! The npm dependencies are installed with `npm ci` into tests/clients/node/node_modules
//! (gitignored) when missing; scripts/test.sh does it beforehand. Without node/npm or the
//! registry the test fails when `CI` is set and skips, printing why, otherwise.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use oxcd_process_tests::bins::workspace_root;
use oxcd_process_tests::member::{Kind, Member};
use oxcd_process_tests::proc;

/// How long `npm ci` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the whole workload may take on one server.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// Serializes installs between tests of this binary.
static INSTALL: Mutex<()> = Mutex::new(());

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

/// Fails in CI, skips (returns `false`) elsewhere.
fn unavailable(reason: &str) -> bool {
    if in_ci() {
        panic!("client library test cannot run in CI: {reason}");
    }
    eprintln!("SKIPPED client library test: {reason} (set CI=true to make this a failure)");
    false
}

fn node_dir() -> PathBuf {
    workspace_root().join("tests/clients/node")
}

/// Runs `program args` in `dir` with a timeout; the combined outcome as text on failure.
fn run(program: &str, args: &[&str], dir: &Path, timeout: Duration) -> Result<String, String> {
    let log_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out_path = log_dir.path().join("out");
    let err_path = log_dir.path().join("err");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).map_err(|e| e.to_string())?)
        .stderr(File::create(&err_path).map_err(|e| e.to_string())?);
    proc::isolate(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let status = proc::wait_timeout(&mut child, timeout);
    if status.is_none() {
        proc::kill_group(&mut child);
    }
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => Err(format!(
            "`{program} {}` exited with {s}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
            args.join(" ")
        )),
        None => Err(format!(
            "`{program} {}` did not finish in {timeout:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
            args.join(" ")
        )),
    }
}

/// Makes sure node and the pinned npm dependencies are there; `false` to skip.
fn prepare_node() -> bool {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = node_dir();
    match run("node", &["--version"], &dir, Duration::from_secs(30)) {
        Ok(v) => eprintln!("node {}", v.trim()),
        Err(e) => return unavailable(&format!("node is not installed or does not run: {e}")),
    }
    if dir.join("node_modules/etcd3/package.json").exists() {
        return true;
    }
    if let Err(e) = run("npm", &["--version"], &dir, Duration::from_secs(30)) {
        return unavailable(&format!("npm is not installed or does not run: {e}"));
    }
    eprintln!("npm ci in {}", dir.display());
    if let Err(e) = run(
        "npm",
        &["ci", "--no-audit", "--no-fund"],
        &dir,
        INSTALL_TIMEOUT,
    ) {
        return unavailable(&format!(
            "`npm ci` could not install the etcd3 package (is the npm registry reachable?): {e}"
        ));
    }
    if !dir.join("node_modules/etcd3/package.json").exists() {
        return unavailable("`npm ci` succeeded but node_modules/etcd3 is missing");
    }
    true
}

/// One step of the workload as printed by the script.
#[derive(Debug)]
struct StepLine {
    step: String,
    result: serde_json::Value,
}

/// Runs the workload against `member`; panics with the script's output when a step fails.
fn workload(member: &Member) -> Vec<StepLine> {
    let output = run(
        "node",
        &["workload.js", &member.client_url()],
        &node_dir(),
        WORKLOAD_TIMEOUT,
    )
    .unwrap_or_else(|e| {
        panic!(
            "the etcd3 workload failed against {}: {e}\n--- server logs ---\n{}",
            member.kind,
            member.logs()
        )
    });
    let mut steps = Vec::new();
    for line in output.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("bad JSON line from workload.js: {e}: {line}"));
        assert_eq!(
            v["ok"],
            serde_json::Value::Bool(true),
            "step failed against {}: {line}",
            member.kind
        );
        steps.push(StepLine {
            step: v["step"].as_str().unwrap_or_default().to_string(),
            result: v["result"].clone(),
        });
    }
    steps
}

const STEPS: &[&str] = &[
    "put_get",
    "range_prefix",
    "delete",
    "txn",
    "watch",
    "lease",
    "lease_auto_keepalive",
    "lease_expiry",
    "lock",
    "election",
];

#[test]
fn node_etcd3_workload() {
    if !prepare_node() {
        return;
    }
    // Members are started on this thread (their processes die with the thread that spawned
    // them); the two workloads run side by side.
    let etcd = Member::start(Kind::Etcd);
    let oxcd = Member::start(Kind::Oxcd);
    let (etcd_steps, oxcd_steps) = std::thread::scope(|s| {
        let e = s.spawn(|| workload(&etcd));
        let o = s.spawn(|| workload(&oxcd));
        (
            e.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            o.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let names = |steps: &[StepLine]| steps.iter().map(|s| s.step.clone()).collect::<Vec<_>>();
    assert_eq!(names(&etcd_steps), STEPS, "steps run against etcd");
    assert_eq!(names(&oxcd_steps), STEPS, "steps run against oxcd");
    for (e, o) in etcd_steps.iter().zip(&oxcd_steps) {
        assert_eq!(
            o.result, e.result,
            "step {}: oxcd's result (left) differs from etcd's (right)",
            e.step
        );
        eprintln!("{}: {}", e.step, e.result);
    }
}
