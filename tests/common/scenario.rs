//! The same sequence of ctl invocations against a fresh etcd and a fresh oxcd, compared step by
//! step after normalisation.
//!
//! The reference is always the real etcdctl against a real etcd; a [`Target`] names what is
//! compared with it. In step arguments and stdin, `{lease1}`, `{lease2}`, ... stand for the hex
//! id of the first, second, ... lease granted in this run (`{lease1_dec}` for decimal), so
//! scenarios can use leases although each server picks its own ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::ctl::{Ctl, Output};
use crate::member::{Kind, Member, MemberOpts};
use crate::normalize::{diff, granted_lease};

/// How long a step with [`Step::until`] is retried.
pub const UNTIL_TIMEOUT: Duration = Duration::from_secs(30);

/// One ctl invocation.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub args: Vec<String>,
    pub stdin: Option<String>,
    /// Re-run (bounded by [`UNTIL_TIMEOUT`]) until the normalised stdout is exactly this.
    pub until_stdout: Option<String>,
}

/// A step from a command line, split like a shell would on whitespace, with `'...'` and
/// `"..."` quoting (no escapes): `step("put 'a b' v")`.
pub fn step(cmdline: &str) -> Step {
    Step::args(
        &split(cmdline)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
}

/// Shell-like split on whitespace with single and double quotes.
pub fn split(cmdline: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in cmdline.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    args.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unterminated quote in {cmdline:?}");
    if in_word {
        args.push(cur);
    }
    args
}

impl Step {
    /// A step from separate arguments.
    pub fn args(args: &[&str]) -> Step {
        Step {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Feeds `text` on stdin.
    pub fn stdin(mut self, text: &str) -> Step {
        self.stdin = Some(text.to_string());
        self
    }

    /// Repeats the step until its normalised stdout is `stdout` (e.g. a key gone after its
    /// lease expired). Only the last run is compared.
    pub fn until(mut self, stdout: &str) -> Step {
        self.until_stdout = Some(stdout.to_string());
        self
    }

    /// The same step with `-w <format>` appended.
    pub fn format(&self, format: &str) -> Step {
        let mut s = self.clone();
        s.args.push("-w".to_string());
        s.args.push(format.to_string());
        s
    }

    /// How the step is shown in reports.
    pub fn display(&self) -> String {
        self.args
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `cmdline` once per output format: `-w simple`, `-w json`, ...
pub fn formats(cmdline: &str, formats: &[&str]) -> Vec<Step> {
    let base = step(cmdline);
    formats.iter().map(|f| base.format(f)).collect()
}

/// `cmdline` in simple, json and fields format.
pub fn all_formats(cmdline: &str) -> Vec<Step> {
    formats(cmdline, &["simple", "json", "fields"])
}

/// A member configuration and the steps to run against it.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    pub opts: MemberOpts,
    pub steps: Vec<Step>,
}

impl From<Vec<Step>> for Scenario {
    fn from(steps: Vec<Step>) -> Scenario {
        Scenario {
            opts: MemberOpts::default(),
            steps,
        }
    }
}

/// What is compared with etcdctl against etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The real etcdctl against oxcd: the server is under test.
    EtcdctlOxcd,
    /// oxctl against oxcd: both are under test.
    OxctlOxcd,
    /// oxctl against etcd: the client is under test.
    OxctlEtcd,
    /// etcdctl against a second etcd: the scenario itself must be deterministic.
    EtcdctlEtcd,
}

impl Target {
    /// The server and client of this target.
    pub fn setup(self) -> Setup {
        match self {
            Target::EtcdctlOxcd => Setup(Kind::Oxcd, Ctl::Etcdctl),
            Target::OxctlOxcd => Setup(Kind::Oxcd, Ctl::Oxctl),
            Target::OxctlEtcd => Setup(Kind::Etcd, Ctl::Oxctl),
            Target::EtcdctlEtcd => Setup(Kind::Etcd, Ctl::Etcdctl),
        }
    }
}

/// A server program and a client program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Setup(pub Kind, pub Ctl);

impl Setup {
    /// The reference: etcdctl against etcd.
    pub const REFERENCE: Setup = Setup(Kind::Etcd, Ctl::Etcdctl);
}

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.0, self.1)
    }
}

/// One executed step.
#[derive(Clone, Debug)]
pub struct StepResult {
    /// The command as run (placeholders filled in).
    pub command: String,
    pub stdin: Option<String>,
    pub raw: Output,
    pub norm: Output,
}

/// Substitutes `{leaseN}` / `{leaseN_dec}` and `{endpoint}`.
fn fill(text: &str, leases: &[u64], endpoint: &str) -> String {
    let mut text = text.replace("{endpoint}", endpoint);
    // Highest first so {lease1} does not eat the prefix of {lease10}.
    for (i, id) in leases.iter().enumerate().rev() {
        let n = i + 1;
        text = text
            .replace(&format!("{{lease{n}_dec}}"), &id.to_string())
            .replace(&format!("{{lease{n}}}"), &format!("{id:016x}"));
    }
    text
}

/// Runs `scenario` against a fresh member of `setup`, returning every step normalised.
pub fn run_scenario(setup: Setup, scenario: &Scenario) -> Vec<StepResult> {
    let Setup(kind, which) = setup;
    let member = Member::start_opts(kind, scenario.opts.clone());
    let mut norm = member.norm();
    let endpoint = member.endpoint();
    let mut results = Vec::new();
    for step in &scenario.steps {
        let args: Vec<String> = step
            .args
            .iter()
            .map(|a| fill(a, norm.leases(), &endpoint))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stdin = step
            .stdin
            .as_ref()
            .map(|s| fill(s, norm.leases(), &endpoint));
        let deadline = Instant::now() + UNTIL_TIMEOUT;
        let (raw, normed) = loop {
            let raw = match &stdin {
                Some(text) => member.ctl_stdin(which, &args, text),
                None => member.ctl(which, &args),
            };
            if args.len() >= 2 && args[0] == "lease" && args[1] == "grant" {
                if let Some(id) = granted_lease(&raw.stdout) {
                    norm.lease(id);
                }
            }
            let normed = Output {
                stdout: norm.apply(&raw.stdout),
                stderr: norm.apply(&raw.stderr),
                code: raw.code,
                timed_out: raw.timed_out,
            };
            match &step.until_stdout {
                Some(want) if *want != normed.stdout && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                _ => break (raw, normed),
            }
        };
        results.push(StepResult {
            command: format!("{which} {}", step_display(&args)),
            stdin,
            raw,
            norm: normed,
        });
    }
    results
}

fn step_display(args: &[&str]) -> String {
    Step::args(args).display()
}

type Cache = Mutex<HashMap<String, Arc<OnceLock<Arc<Vec<StepResult>>>>>>;

/// Something that can be run against a server and client and compared: a [`Scenario`] of ctl
/// steps or a [`crate::watch::WatchScenario`].
pub trait Runnable {
    /// Runs against a fresh member of `setup`; the results are normalised.
    fn run(&self, setup: Setup) -> Vec<StepResult>;
}

impl Runnable for Scenario {
    fn run(&self, setup: Setup) -> Vec<StepResult> {
        run_scenario(setup, self)
    }
}

/// The reference run of a scenario, computed once per test binary.
pub fn reference<S: Runnable>(name: &str, scenario: &S) -> Arc<Vec<StepResult>> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| Arc::new(scenario.run(Setup::REFERENCE)))
        .clone()
}

/// Shortens long lines to `width` characters and texts to `lines` lines, for reports.
pub fn clip(text: &str, width: usize, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in all.iter().take(lines) {
        let n = line.chars().count();
        if n > width {
            let head: String = line.chars().take(width).collect();
            out.push_str(&format!("{head}... ({} more characters)\n", n - width));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if all.len() > lines {
        out.push_str(&format!("... ({} more lines)\n", all.len() - lines));
    }
    out
}

/// Compares two runs step by step; `Err` holds a readable report of every differing step.
pub fn check(
    name: &str,
    expected_setup: Setup,
    expected: &[StepResult],
    got_setup: Setup,
    got: &[StepResult],
) -> Result<(), String> {
    let mut report = String::new();
    let mut bad = Vec::new();
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        if e.norm.stdout == g.norm.stdout
            && e.norm.stderr == g.norm.stderr
            && e.norm.code == g.norm.code
        {
            continue;
        }
        bad.push(i + 1);
        if bad.len() > 12 {
            continue;
        }
        report.push_str(&format!(
            "\n=== step {}: {}\n",
            i + 1,
            clip(&g.command, 300, 1)
        ));
        if let Some(stdin) = &g.stdin {
            report.push_str(&format!("--- stdin ---\n{}", clip(stdin, 200, 30)));
        }
        if e.norm.code != g.norm.code {
            report.push_str(&format!(
                "exit code: {expected_setup} {} / {got_setup} {}\n",
                e.norm.code, g.norm.code
            ));
        }
        for (what, a, b) in [
            ("stdout", &e.norm.stdout, &g.norm.stdout),
            ("stderr", &e.norm.stderr, &g.norm.stderr),
        ] {
            if a != b {
                report.push_str(&format!(
                    "--- {what} (- {expected_setup}, + {got_setup}; normalised) ---\n{}",
                    clip(&diff(a, b), 2000, 200)
                ));
            }
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "scenario `{name}`: {got_setup} differs from {expected_setup} in {} of {} steps {:?}\n{report}",
        bad.len(),
        expected.len(),
        bad
    ))
}

/// Prints every step's command and normalised output (set `OXCD_TEST_DUMP=1`).
pub fn dump(name: &str, setup: Setup, results: &[StepResult]) {
    let mut text = format!("##### {name}: {setup}\n");
    for (i, r) in results.iter().enumerate() {
        text.push_str(&format!(
            "=== step {}: {} (exit {})\n",
            i + 1,
            r.command,
            r.norm.code
        ));
        if let Some(stdin) = &r.stdin {
            text.push_str(&format!("--- stdin ---\n{stdin}"));
        }
        text.push_str(&format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            r.norm.stdout, r.norm.stderr
        ));
    }
    eprintln!("{text}");
}

/// Runs scenario `f` for the reference (cached) and for `target`, and panics with a readable
/// report if any step's normalised stdout, stderr or exit code differ.
pub fn compare<S: Runnable>(name: &str, target: Target, f: fn() -> S) {
    let scenario = f();
    let expected = reference(name, &scenario);
    let got_setup = target.setup();
    let got = scenario.run(got_setup);
    if std::env::var_os("OXCD_TEST_DUMP").is_some() {
        dump(name, got_setup, &got);
    }
    if let Err(report) = check(name, Setup::REFERENCE, &expected, got_setup, &got) {
        panic!("{report}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_shortens() {
        assert_eq!(
            clip("abcdef\nx\ny\n", 3, 2),
            "abc... (3 more characters)\nx\n... (1 more lines)\n"
        );
        assert_eq!(clip("ab", 3, 2), "ab\n");
    }

    #[test]
    fn split_handles_quotes() {
        assert_eq!(split("put foo bar"), vec!["put", "foo", "bar"]);
        assert_eq!(split("put 'a b' \"\""), vec!["put", "a b", ""]);
        assert_eq!(split("  get  ''  --prefix "), vec!["get", "", "--prefix"]);
    }

    #[test]
    fn fill_leases() {
        let leases = [0x694d7b0c5cbf4a0b, 2];
        assert_eq!(
            fill(
                "put k v --lease={lease1} {lease2_dec} {endpoint}",
                &leases,
                "e:1"
            ),
            "put k v --lease=694d7b0c5cbf4a0b 2 e:1"
        );
    }

    #[test]
    fn formats_append_flag() {
        let steps = all_formats("get foo");
        assert_eq!(steps[1].args, vec!["get", "foo", "-w", "json"]);
        assert_eq!(steps[2].display(), "get foo -w fields");
        assert_eq!(step("put '' x").display(), "put '' x");
    }

    fn result(stdout: &str, code: i32) -> StepResult {
        let out = Output {
            stdout: stdout.to_string(),
            code,
            ..Default::default()
        };
        StepResult {
            command: "etcdctl get foo".into(),
            stdin: None,
            raw: out.clone(),
            norm: out,
        }
    }

    #[test]
    fn check_reports_differences() {
        let a = vec![result("foo\nbar\n", 0), result("x\n", 0)];
        let b = vec![result("foo\nbar\n", 0), result("y\n", 1)];
        let s = Setup::REFERENCE;
        assert!(check("t", s, &a, s, &a).is_ok());
        let err = check("t", s, &a, s, &b).unwrap_err();
        assert!(err.contains("in 1 of 2 steps [2]"), "{err}");
        assert!(err.contains("- x\n+ y\n"), "{err}");
        assert!(
            err.contains("exit code: etcd via etcdctl 0 / etcd via etcdctl 1"),
            "{err}"
        );
    }
}
