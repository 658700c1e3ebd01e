//! A `watch` running as a child process while writes happen, compared between servers.
//!
//! The watcher's output must not depend on timing, so the harness puts *fences*: after the
//! watcher starts and after every action it puts a key in the watched range with the value
//! `fence-N` and waits until the watcher has printed that value. Every action's events are thus
//! delivered (and batched) the same way on every run:
//!
//! * a watch with `--rev` below the current revision first prints its history in one response;
//!   the harness waits for that before the first fence;
//! * a watch with `--rev {next}` (the revision after the last setup write) starts in the
//!   future, and fence 0 is delivered alone whether the watcher connected early or late;
//! * a watch without `--rev` ([`WatchScenario::live_sync`]) must see a write it was not yet
//!   connected for: the harness puts the fence key with value `sync` until the watcher prints
//!   something, then drops those leading `sync` events (simple format only, where revisions are
//!   not printed and the number of sync writes does not show).

use std::time::{Duration, Instant};

use crate::ctl::{Background, Ctl, Output};
use crate::member::{Member, MemberOpts};
use crate::scenario::{Runnable, Setup, Step, StepResult};

/// How long to wait for one fence (or the history, or the sync) to show up.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(15);

/// A watch and the writes to make while it runs.
#[derive(Clone, Debug, Default)]
pub struct WatchScenario {
    pub opts: MemberOpts,
    /// Written with etcdctl before the watcher starts.
    pub setup: Vec<Step>,
    /// The watcher's arguments (`watch ...`); `{next}` is the revision after the setup.
    pub watch: Vec<String>,
    /// The fence key: ending in `/` means fresh keys `<fence>fence-N`, else that very key.
    pub fence: String,
    /// The watch has no `--rev`: synchronise with `sync` writes first (simple format only).
    pub live_sync: bool,
    /// Written with etcdctl while the watcher runs, each followed by a fence.
    pub actions: Vec<Step>,
}

/// The output format named in a watch's arguments.
pub fn output_format(args: &[String]) -> String {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-w" || a == "--write-out" {
            if let Some(f) = it.next() {
                return f.clone();
            }
        } else if let Some(f) = a.strip_prefix("--write-out=").or(a.strip_prefix("-w=")) {
            return f.to_string();
        }
    }
    "simple".to_string()
}

/// Whether the watcher output shows `value` as a value.
pub fn shows_value(output: &str, format: &str, value: &str) -> bool {
    match format {
        "json" => output.contains(&format!(
            "\"value\":\"{}\"",
            crate::b64::encode(value.as_bytes())
        )),
        "fields" => output
            .lines()
            .any(|l| l == format!("\"Value\" : \"{value}\"")),
        _ => output.lines().any(|l| l == value),
    }
}

/// Drops the leading events whose value is `sync` from simple-format watch output.
pub fn strip_sync(output: &str) -> String {
    let lines: Vec<&str> = output.split('\n').collect();
    // Events start at a PUT or DELETE line; the last line of an event is its value.
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "PUT" || **l == "DELETE")
        .map(|(i, _)| i)
        .collect();
    let mut cut = 0;
    for (n, start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let mut last = end;
        while last > *start + 1 && lines[last - 1].is_empty() && end == lines.len() {
            last -= 1;
        }
        if *start == cut && lines[last - 1] == "sync" {
            cut = end;
        } else {
            break;
        }
    }
    lines[cut..].join("\n")
}

fn wait_for(watcher: &mut Background, what: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + FENCE_TIMEOUT;
    loop {
        if what(&watcher.stdout_now()) {
            return true;
        }
        if watcher.exited() || Instant::now() >= deadline {
            return what(&watcher.stdout_now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn put(member: &Member, key: &str, value: &str) {
    let out = member.etcdctl(&["put", key, value]);
    assert_eq!(out.code, 0, "fence put {key}={value} failed: {out}");
}

fn run_steps(member: &Member, steps: &[Step]) {
    for step in steps {
        let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
        let out = match &step.stdin {
            Some(stdin) => member.ctl_stdin(Ctl::Etcdctl, &args, stdin),
            None => member.etcdctl(&args),
        };
        assert!(!out.timed_out, "{} timed out", step.display());
    }
}

impl Runnable for WatchScenario {
    fn run(&self, setup: Setup) -> Vec<StepResult> {
        run_watch(setup, self)
    }
}

/// Runs the watch scenario against a fresh member of `setup`; one result: the watcher's.
pub fn run_watch(setup: Setup, scenario: &WatchScenario) -> Vec<StepResult> {
    let Setup(kind, which) = setup;
    let member = Member::start_opts(kind, scenario.opts.clone());
    let norm = member.norm();
    run_steps(&member, &scenario.setup);
    let next = (member.revision() + 1).to_string();
    let args: Vec<String> = scenario
        .watch
        .iter()
        .map(|a| a.replace("{next}", &next))
        .collect();
    let format = output_format(&args);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut watcher = Background::ctl(which, &member.endpoint(), &arg_refs);
    let mut notes = Vec::new();
    let fence_key = |n: usize| {
        if scenario.fence.ends_with('/') {
            format!("{}fence-{n}", scenario.fence)
        } else {
            scenario.fence.clone()
        }
    };

    let pinned_future = scenario.watch.iter().any(|a| a.contains("{next}"));
    let has_rev = scenario
        .watch
        .iter()
        .any(|a| a == "--rev" || a.starts_with("--rev="));
    assert!(
        has_rev || scenario.live_sync,
        "a watch without --rev needs live_sync"
    );
    let starts_in_past = has_rev && !pinned_future && !scenario.live_sync;
    let mut ok = true;
    if scenario.live_sync {
        assert_eq!(format, "simple", "live_sync needs the simple format");
        let sync_key = if scenario.fence.ends_with('/') {
            format!("{}sync", scenario.fence)
        } else {
            scenario.fence.clone()
        };
        let deadline = Instant::now() + FENCE_TIMEOUT;
        loop {
            put(&member, &sync_key, "sync");
            std::thread::sleep(Duration::from_millis(100));
            if !watcher.stdout_now().is_empty() {
                break;
            }
            if watcher.exited() || Instant::now() >= deadline {
                notes.push("<harness: the watcher never printed a sync event>".to_string());
                ok = false;
                break;
            }
        }
    } else if starts_in_past && !wait_for(&mut watcher, |out| !out.is_empty()) {
        notes.push("<harness: the watcher printed no history>".to_string());
        ok = false;
    }
    let fences = scenario.actions.len() + 1;
    for n in 0..fences {
        if !ok {
            break;
        }
        if n > 0 {
            run_steps(&member, &scenario.actions[n - 1..n]);
        }
        let value = format!("fence-{n}");
        put(&member, &fence_key(n), &value);
        if !wait_for(&mut watcher, |out| shows_value(out, &format, &value)) {
            notes.push(format!("<harness: the watcher never printed {value}>"));
            ok = false;
        }
    }
    let raw = watcher.kill();
    let mut stdout = norm.apply(&raw.stdout);
    if scenario.live_sync {
        stdout = strip_sync(&stdout);
    }
    let mut stderr = norm.apply(&raw.stderr);
    for note in notes {
        stderr.push_str(&note);
        stderr.push('\n');
    }
    let normed = Output {
        stdout,
        stderr,
        // Killed by the harness on success; a watcher that exited early shows its own code.
        code: if ok { 0 } else { raw.code },
        timed_out: false,
    };
    vec![StepResult {
        command: format!("{which} {}", Step::args(&arg_refs).display()),
        stdin: None,
        raw,
        norm: normed,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_args() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(output_format(&args("watch foo")), "simple");
        assert_eq!(output_format(&args("watch foo -w json")), "json");
        assert_eq!(
            output_format(&args("watch --write-out=fields foo")),
            "fields"
        );
    }

    #[test]
    fn values_in_each_format() {
        assert!(shows_value("PUT\nk\nfence-1\n", "simple", "fence-1"));
        assert!(!shows_value("PUT\nk\nfence-10\n", "simple", "fence-1"));
        assert!(shows_value(
            "\"Value\" : \"fence-0\"\n",
            "fields",
            "fence-0"
        ));
        let json = format!(
            "{{\"kv\":{{\"value\":\"{}\"}}}}",
            crate::b64::encode(b"fence-2")
        );
        assert!(shows_value(&json, "json", "fence-2"));
    }

    #[test]
    fn strips_leading_sync_events() {
        let out = "PUT\nk\nsync\nPUT\nk\nsync\nk\nsync\nPUT\nk\nsync\nk\nv1\nDELETE\nk\nv1\nk\n\n";
        assert_eq!(strip_sync(out), "PUT\nk\nsync\nk\nv1\nDELETE\nk\nv1\nk\n\n");
        assert_eq!(strip_sync("PUT\na\nsync\n"), "");
        assert_eq!(strip_sync("PUT\na\nb\n"), "PUT\na\nb\n");
    }
}
