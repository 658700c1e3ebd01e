//! The comparison as markdown tables (and as JSON): a header naming versions and machine,
//! the throughput table, the resources table, how each scenario ran, and any failures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::scenarios::{args, Plan};
use super::{Measure, Outcome, System, Throughput, Value};

/// What the numbers were measured with.
pub struct Header {
    etcd: (PathBuf, String),
    oxcd: (PathBuf, String),
    cpus: usize,
    model: String,
    memory_gib: f64,
    kernel: String,
    load: String,
}

/// The first line `bin --version` prints.
fn version(bin: &Path) -> String {
    match std::process::Command::new(bin).arg("--version").output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

fn proc_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Header {
    pub fn collect(etcd: &Path, oxcd: &Path) -> Header {
        let cpuinfo = proc_file("/proc/cpuinfo");
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown CPU".to_string());
        let meminfo = proc_file("/proc/meminfo");
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let load = proc_file("/proc/loadavg");
        Header {
            etcd: (etcd.to_path_buf(), version(etcd)),
            oxcd: (oxcd.to_path_buf(), version(oxcd)),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            model,
            memory_gib: kib / 1024.0 / 1024.0,
            kernel: proc_file("/proc/sys/kernel/osrelease").trim().to_string(),
            load: load
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Thousands separated.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(x: f64) -> String {
    if x >= 100.0 {
        grouped(x.round() as u64)
    } else {
        format!("{x:.1}")
    }
}

fn measure(m: &Measure) -> String {
    match m.unit {
        "MiB" => format!("{:.1}", m.value),
        "MB" => format!("{:.2}", m.value),
        _ => format!("{:.3}", m.value),
    }
}

fn ratio(etcd: Option<f64>, oxcd: Option<f64>) -> String {
    match (etcd, oxcd) {
        (Some(e), Some(o)) if e > 0.0 => format!("{:.2}", o / e),
        _ => "–".to_string(),
    }
}

/// A failure's cell: the start of its error (all of it is listed under the tables).
fn failed(e: &str) -> String {
    let mut short: String = e
        .chars()
        .map(|c| if c == '|' || c == '\n' { ' ' } else { c })
        .take(80)
        .collect();
    if e.chars().count() > 80 {
        short.push('…');
    }
    format!("failed: {short}")
}

/// The stderr line of a finished scenario.
pub fn line(scenario: &str, v: &Result<Value, String>) -> String {
    match v {
        Ok(Value::Throughput(t)) => {
            let (unit, what) = if scenario == "watch" {
                ("events/s", "events")
            } else {
                ("req/s", "requests")
            };
            let mut s = format!(
                "done: {} {unit} ({} {what} in {:.1} s)",
                rate(t.rps),
                grouped(t.count as u64),
                t.secs
            );
            let errs: usize = t.errors.iter().map(|e| e.1).sum();
            if errs > 0 {
                let _ = write!(s, ", {errs} errors");
            }
            s
        }
        Ok(Value::Measures(rows, _)) => {
            let parts: Vec<String> = rows
                .iter()
                .map(|m| format!("{} {} {}", m.label, measure(m), m.unit))
                .collect();
            format!("done: {}", parts.join(", "))
        }
        Err(e) => format!("FAILED: {e}"),
    }
}

struct View<'a> {
    plan: &'a Plan,
    outcomes: &'a [Outcome],
}

impl View<'_> {
    fn get(&self, sys: System, scenario: &str) -> Option<&Result<Value, String>> {
        self.outcomes
            .iter()
            .find(|o| o.system == sys && o.scenario == scenario)
            .map(|o| &o.value)
    }

    fn throughput(&self, sys: System, scenario: &str) -> Option<&Throughput> {
        match self.get(sys, scenario) {
            Some(Ok(Value::Throughput(t))) => Some(t),
            _ => None,
        }
    }

    /// A system's cell: `show` of its numbers, failed, or – when not run.
    fn cell(&self, sys: System, scenario: &str, show: impl Fn(&Value) -> Option<String>) -> String {
        match self.get(sys, scenario) {
            None => "–".to_string(),
            Some(Err(e)) => failed(e),
            Some(Ok(v)) => show(v).unwrap_or_else(|| "–".to_string()),
        }
    }

    fn throughput_table(&self, s: &mut String) {
        s.push_str("| scenario | etcd req/s | oxcd req/s | ratio | etcd avg ms | oxcd avg ms | etcd p99 ms | oxcd p99 ms | errors etcd / oxcd |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let [e, o] = System::ALL;
        for &name in self.plan.names.iter().filter(|n| is_throughput(n)) {
            let label = if name == "watch" {
                "watch (events/s)".to_string()
            } else {
                name.to_string()
            };
            let tp = |sys, f: fn(&Throughput) -> Option<String>| {
                self.cell(sys, name, |v| match v {
                    Value::Throughput(t) => f(t),
                    Value::Measures(..) => None,
                })
            };
            let rps = |t: &Throughput| Some(rate(t.rps));
            let avg = |t: &Throughput| t.avg_ms.map(|x| format!("{x:.3}"));
            let p99 = |t: &Throughput| t.p99_ms.map(|x| format!("{x:.3}"));
            let errs =
                |t: &Throughput| Some(t.errors.iter().map(|e| e.1).sum::<usize>().to_string());
            let r = ratio(
                self.throughput(e, name).map(|t| t.rps),
                self.throughput(o, name).map(|t| t.rps),
            );
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {r} | {} | {} | {} | {} | {} / {} |",
                tp(e, rps),
                tp(o, rps),
                tp(e, avg),
                tp(o, avg),
                tp(e, p99),
                tp(o, p99),
                tp(e, errs),
                tp(o, errs),
            );
        }
    }

    fn measures(&self, sys: System, scenario: &str) -> Option<&[Measure]> {
        match self.get(sys, scenario) {
            Some(Ok(Value::Measures(rows, _))) => Some(rows),
            _ => None,
        }
    }

    fn resources_table(&self, s: &mut String) {
        s.push_str("| measure | unit | etcd | oxcd | ratio oxcd/etcd |\n");
        s.push_str("|---|---|---:|---:|---:|\n");
        for &name in self.plan.names.iter().filter(|n| !is_throughput(n)) {
            let rows = System::ALL.iter().find_map(|sys| self.measures(*sys, name));
            let Some(rows) = rows else {
                let [e, o] = System::ALL.map(|sys| self.cell(sys, name, |_| None));
                let _ = writeln!(s, "| {name} | | {e} | {o} | – |");
                continue;
            };
            for m in rows {
                let find = |sys| {
                    self.measures(sys, name)
                        .and_then(|r| r.iter().find(|x| x.label == m.label))
                };
                let [e, o] =
                    System::ALL.map(|sys| self.cell(sys, name, |_| find(sys).map(measure)));
                let r = ratio(
                    find(System::Etcd).map(|x| x.value),
                    find(System::Oxcd).map(|x| x.value),
                );
                let _ = writeln!(s, "| {} | {} | {e} | {o} | {r} |", m.label, m.unit);
            }
        }
    }
}

fn is_throughput(name: &str) -> bool {
    args(name, &super::Totals::new(true, 1)).is_some()
}

/// What a scenario does, for the list under the tables.
fn describe(name: &str, plan: &Plan) -> String {
    let t = &plan.totals;
    if let Some(a) = args(name, t) {
        let mut d = format!("`oxbench --endpoints <m1>,<m2>,<m3> {a}`");
        if name.starts_with("range") {
            d.push_str(" (after a put of `foo`)");
        }
        if name == "watch" {
            d.push_str(": 1,000 watchers on 10 keys, events received per second; no latency");
        }
        return d;
    }
    match name {
        "mem-idle" => format!(
            "VmRSS of each member {} s after the fresh cluster is up",
            t.idle.as_secs()
        ),
        "mem-1m" => format!(
            "VmRSS of each member right after load-1m and {} s later",
            t.settle.as_secs()
        ),
        "disk-1m" => "after mem-1m: sum of the file lengths in each member's data dir, the \
                      blocks they take, and the length of `member/snap/db` (the MVCC \
                      database of both)"
            .to_string(),
        "startup-1m" => format!(
            "{} times: a follower gets SIGTERM, exits, and is started with the same flags; \
             time from the spawn until it answers a serializable Range of one key and \
             `GET /health` with `{{\"health\":\"true\"}}`",
            t.restarts
        ),
        _ => String::new(),
    }
}

/// The whole markdown text.
pub fn markdown(h: &Header, plan: &Plan, systems: &[System], outcomes: &[Outcome]) -> String {
    let v = View { plan, outcomes };
    let mut s = String::from("## oxbench compare: etcd and oxcd\n\n");
    let _ = writeln!(s, "- etcd: `{}` (`{}`)", h.etcd.1, h.etcd.0.display());
    let _ = writeln!(s, "- oxcd: `{}` (`{}`)", h.oxcd.1, h.oxcd.0.display());
    let _ = writeln!(
        s,
        "- machine: {} CPUs ({}), {:.1} GiB memory, Linux {}; load average {} at the start",
        h.cpus, h.model, h.memory_gib, h.kernel, h.load
    );
    let ran: Vec<&str> = systems.iter().map(|s| s.name()).collect();
    let _ = writeln!(
        s,
        "- clusters ({}): 3 members on 127.0.0.1 with the same flags (`--logger zap \
         --log-level warn`, the rest default), one system at a time; a fresh cluster for the \
         throughput scenarios and mem-idle, another for the {} keys of load-1m and what follows",
        ran.join(", "),
        plan.totals.keys
    );
    s.push_str("- clients: oxbench in-process on the same machine, endpoints: all 3 members\n");
    s.push_str("\n### Throughput\n\n");
    v.throughput_table(&mut s);
    s.push_str("\n### Resources\n\n");
    v.resources_table(&mut s);
    s.push_str("\nratio: oxcd / etcd (req/s: above 1 is oxcd faster; resources: above 1 is oxcd using more).\n");
    s.push_str("\n### Scenarios\n\n");
    for name in &plan.names {
        let _ = writeln!(s, "- `{name}`: {}", describe(name, plan));
    }
    let mut failures = String::new();
    for o in outcomes {
        match &o.value {
            Err(e) => {
                let _ = writeln!(failures, "- {} {}: {e}", o.system.name(), o.scenario);
            }
            Ok(Value::Throughput(t)) => {
                for (e, n) in &t.errors {
                    let _ = writeln!(failures, "- {} {}: [{n}] {e}", o.system.name(), o.scenario);
                }
            }
            Ok(_) => {}
        }
    }
    if !failures.is_empty() {
        let _ = write!(s, "\n### Failures and request errors\n\n{failures}");
    }
    s
}

/// The raw results.
pub fn json(h: &Header, plan: &Plan, outcomes: &[Outcome]) -> serde_json::Value {
    let results: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let mut r = json!({
                "system": o.system.name(),
                "scenario": o.scenario,
                "command": args(o.scenario, &plan.totals),
                "ok": o.value.is_ok(),
            });
            match &o.value {
                Err(e) => r["error"] = json!(e),
                Ok(Value::Throughput(t)) => {
                    r["requests_per_sec"] = json!(t.rps);
                    r["avg_ms"] = json!(t.avg_ms);
                    r["p99_ms"] = json!(t.p99_ms);
                    r["requests"] = json!(t.count);
                    r["secs"] = json!(t.secs);
                    r["errors"] = json!(t.errors);
                }
                Ok(Value::Measures(rows, raw)) => {
                    let rows: Vec<_> = rows
                        .iter()
                        .map(|m| json!({"label": m.label, "unit": m.unit, "value": m.value}))
                        .collect();
                    r["measures"] = json!(rows);
                    r["raw"] = raw.clone();
                }
            }
            r
        })
        .collect();
    json!({
        "etcd": {"binary": h.etcd.0, "version": h.etcd.1},
        "oxcd": {"binary": h.oxcd.0, "version": h.oxcd.1},
        "machine": {
            "cpus": h.cpus, "model": h.model, "memory_gib": h.memory_gib,
            "kernel": h.kernel, "load_average": h.load,
        },
        "keys": plan.totals.keys,
        "results": results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(14_000), "14,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(ratio(Some(2.0), Some(3.0)), "1.50");
        assert_eq!(ratio(None, Some(3.0)), "–");
    }
}
