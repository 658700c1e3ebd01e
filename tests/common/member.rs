//! One single-member cluster of oxcd or of the real etcd, on loopback ports.
//!
//! Both get the very same flags:
//!
//! ```text
//! --name m1 --data-dir <tmp>/data
//! --listen-client-urls http://127.0.0.1:P --advertise-client-urls http://127.0.0.1:P
//! --listen-peer-urls http://127.0.0.1:Q --initial-advertise-peer-urls http://127.0.0.1:Q
//! --initial-cluster m1=http://127.0.0.1:Q
//! ```
//!
//! Output goes to `<tmp>/logs/run-N.{out,err}` (N counts restarts); the logs' tails are printed
//! when a test panics while the member is alive. `OXCD_TEST_KEEP=1` keeps the temp dir.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ctl::{ctl, ctl_stdin, Ctl, Output};
use crate::normalize::Norm;
use crate::{bins, http, ports, proc};

/// How long a member may take to answer `/health` after it was spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// This workspace's `oxcd`.
    Oxcd,
    /// The real `/usr/bin/etcd`.
    Etcd,
}

impl Kind {
    /// The binary to run.
    pub fn bin(self) -> PathBuf {
        match self {
            Kind::Oxcd => bins::oxcd(),
            Kind::Etcd => bins::etcd(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Oxcd => "oxcd",
            Kind::Etcd => "etcd",
        })
    }
}

/// Extra settings for a member.
///
/// In `args` and in `env` values, `{client_port}`, `{peer_port}`, `{client_url}`, `{peer_url}`,
/// `{data_dir}` and `{name}` are replaced by the member's own values.
#[derive(Clone, Debug, Default)]
pub struct MemberOpts {
    /// Member name; `m1` when `None`.
    pub name: Option<String>,
    /// Flags appended after the standard ones.
    pub args: Vec<String>,
    /// Standard flags to leave out (without dashes, e.g. `"name"`), e.g. to give them by env.
    pub omit: Vec<String>,
    /// Environment variables for the server.
    pub env: Vec<(String, String)>,
}

impl MemberOpts {
    /// Options with extra flags.
    pub fn args<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MemberOpts {
            args: args.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
}

/// A running (or killed) single-member cluster.
pub struct Member {
    pub kind: Kind,
    pub opts: MemberOpts,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    dir: Option<TempDir>,
    child: Option<Child>,
    runs: u32,
    /// The logs were already part of a panic message.
    logs_shown: bool,
}

impl Member {
    /// Starts a member with the standard flags and waits until `/health` says true.
    pub fn start(kind: Kind) -> Member {
        Member::start_opts(kind, MemberOpts::default())
    }

    /// Starts a member with extra options and waits until it is ready.
    pub fn start_opts(kind: Kind, opts: MemberOpts) -> Member {
        bins::require(&kind.bin());
        let mut last_error = String::new();
        for _attempt in 0..4 {
            let dir = tempfile::Builder::new()
                .prefix(&format!("oxcd-test-{kind}-"))
                .tempdir()
                .expect("create temp dir");
            std::fs::create_dir_all(dir.path().join("logs")).expect("create logs dir");
            let mut member = Member {
                kind,
                name: opts.name.clone().unwrap_or_else(|| "m1".to_string()),
                opts: opts.clone(),
                client_port: ports::free_port(),
                peer_port: ports::free_port(),
                dir: Some(dir),
                child: None,
                runs: 0,
                logs_shown: false,
            };
            match member.spawn_and_wait() {
                Ok(()) => return member,
                Err(e) => {
                    let logs = member.logs();
                    member.kill9();
                    member.logs_shown = true;
                    if logs.contains("address already in use") {
                        // Lost a port race with another process: new ports, new data dir.
                        last_error = e;
                        continue;
                    }
                    panic!("{kind} did not become ready: {e}\n--- logs ---\n{logs}");
                }
            }
        }
        panic!("{kind} could not bind its ports: {last_error}");
    }

    /// Spawns the process without waiting for readiness, and waits (returns the error text).
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawn();
        self.wait_ready(READY_TIMEOUT)
    }

    /// The temp dir of this member (data and logs live below it).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// `127.0.0.1:P`, the form etcdctl's `--endpoints` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:P`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:Q`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{client_port}", &self.client_port.to_string())
            .replace("{peer_port}", &self.peer_port.to_string())
            .replace("{client_url}", &self.client_url())
            .replace("{peer_url}", &self.peer_url())
            .replace("{data_dir}", &self.data_dir().display().to_string())
            .replace("{name}", &self.name)
    }

    /// The full command line (without the program) this member runs with.
    pub fn args(&self) -> Vec<String> {
        let standard = [
            ("name", self.name.clone()),
            ("data-dir", self.data_dir().display().to_string()),
            ("listen-client-urls", self.client_url()),
            ("advertise-client-urls", self.client_url()),
            ("listen-peer-urls", self.peer_url()),
            ("initial-advertise-peer-urls", self.peer_url()),
            (
                "initial-cluster",
                format!("{}={}", self.name, self.peer_url()),
            ),
        ];
        let mut args = Vec::new();
        for (flag, value) in standard {
            if !self.opts.omit.iter().any(|o| o == flag) {
                args.push(format!("--{flag}"));
                args.push(value);
            }
        }
        args.extend(self.opts.args.iter().map(|a| self.expand(a)));
        args
    }

    fn log_path(&self, run: u32, stream: &str) -> PathBuf {
        self.dir().join("logs").join(format!("run-{run}.{stream}"))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "member already running");
        self.runs += 1;
        let out = File::create(self.log_path(self.runs, "out")).expect("create log");
        let err = File::create(self.log_path(self.runs, "err")).expect("create log");
        let mut cmd = Command::new(self.kind.bin());
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .current_dir(self.dir());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(key);
            }
        }
        for (key, value) in &self.opts.env {
            cmd.env(key, self.expand(value));
        }
        proc::isolate(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.kind.bin().display())),
        );
    }

    /// Polls `GET /health` until it answers 200 with `"health":"true"`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("{} exited early with {status}", self.kind));
                }
            } else {
                return Err(format!("{} is not running", self.kind));
            }
            match http::get(self.client_port, "/health") {
                Ok(resp) if resp.status == 200 && resp.body.contains("\"true\"") => return Ok(()),
                Ok(resp) => last = format!("/health answered {} {:?}", resp.status, resp.body),
                Err(e) => last = format!("/health: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {timeout:?}; last: {last}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id, when running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` (the whole process group), no grace.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            proc::kill_group(&mut child);
        }
    }

    /// `SIGTERM`, up to 10 s of grace, then `kill -9`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            proc::signal_group(&child, libc::SIGTERM);
            if proc::wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                proc::kill_group(&mut child);
            } else {
                proc::signal_group(&child, libc::SIGKILL);
            }
        }
    }

    /// Starts the member again on the same data dir and ports (killing it first if needed),
    /// and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(e) = self.spawn_and_wait() {
            self.logs_shown = true;
            panic!(
                "{} did not become ready after restart: {e}\n--- logs ---\n{}",
                self.kind,
                self.logs()
            );
        }
    }

    /// The tails of this run's stdout and stderr (last 60 lines each).
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for stream in ["out", "err"] {
            let path = self.log_path(self.runs, stream);
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            text.push_str(&format!(
                "[{} run {} std{}]\n",
                self.kind, self.runs, stream
            ));
            for line in tail {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Runs a ctl program against this member.
    pub fn ctl(&self, which: Ctl, args: &[&str]) -> Output {
        ctl(which, &self.endpoint(), args)
    }

    /// Runs a ctl program against this member with `stdin`.
    pub fn ctl_stdin(&self, which: Ctl, args: &[&str], stdin: &str) -> Output {
        ctl_stdin(which, &self.endpoint(), args, stdin)
    }

    /// Runs the real etcdctl against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.ctl(Ctl::Etcdctl, args)
    }

    /// The response header of a harmless read, via the real etcdctl.
    pub fn header(&self) -> serde_json::Value {
        let out = self.etcdctl(&["get", "oxcd-test-probe", "-w", "json"]);
        assert_eq!(
            out.code, 0,
            "probe read failed against {}: {out}",
            self.kind
        );
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("probe read printed no JSON ({e}): {out}"));
        json["header"].clone()
    }

    /// The current store revision.
    pub fn revision(&self) -> i64 {
        self.header()["revision"]
            .as_i64()
            .expect("header.revision is a number")
    }

    /// A normaliser that knows this member's ids and addresses.
    pub fn norm(&self) -> Norm {
        let header = self.header();
        let mut norm = Norm::new();
        if let Some(id) = header["cluster_id"].as_u64() {
            norm.id(id, "<CLUSTER_ID>");
        }
        if let Some(id) = header["member_id"].as_u64() {
            norm.id(id, "<MEMBER_ID>");
        }
        norm.literal(&self.endpoint(), "<CLIENT>");
        norm.literal(&format!("127.0.0.1:{}", self.peer_port), "<PEER>");
        norm
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() && !self.logs_shown {
            eprintln!(
                "--- {} member (client {}) logs ---\n{}",
                self.kind,
                self.endpoint(),
                self.logs()
            );
        }
        self.kill9();
        if std::env::var_os("OXCD_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept {}", dir.keep().display());
            }
        }
    }
}
