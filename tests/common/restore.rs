//! Disaster recovery: snapshot files, the offline tools that read them, and clusters restored
//! from them.
//!
//! The servers keep their backends in different formats (etcd: bolt, oxcd: redb), so a file is
//! read by the tool of its server: `etcdctl snapshot status|restore` for etcd's files,
//! `oxutl` or `oxctl` for oxcd's ([`Tool::offline_for`]). What the tools print is compared
//! after normalisation: exit code, stdout, the `msg` of each log line on stderr and the plain
//! stderr lines.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::bins;
use crate::cluster::Cluster;
use crate::ctl::{run, Output, CTL_TIMEOUT};
use crate::member::Kind;

/// The oxutl binary (next to oxcd; `OXUTL_BIN` overrides).
pub fn oxutl() -> PathBuf {
    match std::env::var_os("OXUTL_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => bins::profile_dir().join("oxutl"),
    }
}

/// A program that reads or writes snapshot files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Etcdctl,
    Oxctl,
    Oxutl,
}

impl Tool {
    pub fn bin(self) -> PathBuf {
        match self {
            Tool::Etcdctl => bins::etcdctl(),
            Tool::Oxctl => bins::oxctl(),
            Tool::Oxutl => oxutl(),
        }
    }

    /// The tool that reads `kind`'s backend files offline.
    pub fn offline_for(kind: Kind) -> Tool {
        match kind {
            Kind::Etcd => Tool::Etcdctl,
            Kind::Oxcd => Tool::Oxutl,
        }
    }

    /// Runs the tool with `args` (no endpoints, nothing from the caller's `ETCDCTL_*`).
    pub fn run(self, args: &[&str]) -> Output {
        let bin = self.bin();
        bins::require(&bin);
        let mut cmd = std::process::Command::new(bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("ETCDCTL_API", "3");
        cmd.args(args);
        run(cmd, None, CTL_TIMEOUT)
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tool::Etcdctl => "etcdctl",
            Tool::Oxctl => "oxctl",
            Tool::Oxutl => "oxutl",
        })
    }
}

/// Progress lines that only appear when a step takes long; never part of a comparison.
const PROGRESS_MSGS: [&str; 3] = [
    "downloading snapshot",
    "copying snapshot database",
    "copied snapshot database",
];

/// The `msg` of each JSON log line on stderr, in order, leaving out the Go client library's
/// lines (`"caller":"clientv3/..."`) and the progress lines of long steps.
pub fn log_msgs(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            !v["caller"]
                .as_str()
                .is_some_and(|c| c.starts_with("clientv3/"))
        })
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .filter(|m| !PROGRESS_MSGS.contains(&m.as_str()))
        .collect()
}

/// The stderr lines that are not JSON log lines (e.g. `Error: ...`).
pub fn plain_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .map(str::to_string)
        .collect()
}

/// A tool's outcome for a transcript: exit code, stdout, log messages and plain stderr lines,
/// with each `(text, placeholder)` of `subs` replaced.
pub fn outcome(out: &Output, subs: &[(&str, &str)]) -> String {
    let replace = |s: &str| {
        subs.iter()
            .fold(s.to_string(), |acc, (from, to)| acc.replace(from, to))
    };
    format!(
        "exit code {}\n--- stdout ---\n{}--- log ---\n{}\n--- stderr ---\n{}\n",
        out.code,
        replace(&out.stdout),
        log_msgs(&out.stderr).join("\n"),
        replace(&plain_lines(&out.stderr).join("\n"))
    )
}

/// `snapshot status -w json` of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapStatus {
    pub hash: u64,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// Runs `tool snapshot status FILE -w json` and parses it.
pub fn status(tool: Tool, file: &Path) -> Result<SnapStatus, String> {
    let f = file.display().to_string();
    let out = tool.run(&["snapshot", "status", &f, "-w", "json"]);
    if out.code != 0 {
        return Err(format!("{tool} snapshot status {f}: {out}"));
    }
    let v: Value = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("{tool} snapshot status printed no JSON ({e}): {out}"))?;
    match (
        v["hash"].as_u64(),
        v["revision"].as_i64(),
        v["totalKey"].as_u64(),
        v["totalSize"].as_u64(),
    ) {
        (Some(hash), Some(revision), Some(total_key), Some(total_size)) => Ok(SnapStatus {
            hash,
            revision,
            total_key,
            total_size,
        }),
        _ => Err(format!("{tool} snapshot status: unexpected JSON: {out}")),
    }
}

/// `tool snapshot restore FILE` for member `i` of the (unstarted) cluster `c`: its name, peer
/// URL, data dir, and the cluster's `--initial-cluster` and token.
pub fn restore_member(
    tool: Tool,
    c: &Cluster,
    i: usize,
    file: &Path,
    skip_hash_check: bool,
) -> Output {
    let f = file.display().to_string();
    let ic = c.initial_cluster();
    let peer = c.peer_url(i);
    let data_dir = c.data_dir(i).display().to_string();
    let mut args = vec![
        "snapshot",
        "restore",
        &f,
        "--name",
        c.name(i),
        "--initial-cluster",
        &ic,
        "--initial-cluster-token",
        &c.token,
        "--initial-advertise-peer-urls",
        &peer,
        "--data-dir",
        &data_dir,
    ];
    if skip_hash_check {
        args.push("--skip-hash-check");
    }
    tool.run(&args)
}

/// A cluster of `kind` restored from `file`: a new cluster of `size` members (new temp dir,
/// new ports, new token), member `i` restored by `tools[i % tools.len()]`, then started. The
/// restore outputs are returned in member order. Panics if a restore fails or the cluster does
/// not come up (a lost port race is retried with new ports).
pub fn restore_cluster(
    kind: Kind,
    size: usize,
    file: &Path,
    skip_hash_check: bool,
    tools: &[Tool],
) -> (Cluster, Vec<Output>) {
    assert!(!tools.is_empty(), "at least one tool");
    let mut last_error = String::new();
    for _attempt in 0..4 {
        let mut c = Cluster::unstarted(kind, size);
        let outs: Vec<Output> = c
            .all()
            .into_iter()
            .map(|i| restore_member(tools[i % tools.len()], &c, i, file, skip_hash_check))
            .collect();
        for (i, out) in outs.iter().enumerate() {
            if out.code != 0 {
                panic!(
                    "{} snapshot restore of {} for {} failed: {out}",
                    tools[i % tools.len()],
                    file.display(),
                    c.name(i)
                );
            }
        }
        match c.launch() {
            Ok(()) => return (c, outs),
            Err(e) if e.contains("address already in use") => last_error = e,
            Err(e) => panic!("restored {kind} cluster did not become ready: {e}"),
        }
    }
    panic!("restored {kind} cluster could not bind its ports: {last_error}");
}

/// Copies `from` to a new file `to` (e.g. a member's `member/snap/db`).
pub fn copy_file(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// `<data-dir>/member/snap/db` of member `i`.
pub fn backend_path(c: &Cluster, i: usize) -> PathBuf {
    c.data_dir(i).join("member").join("snap").join("db")
}

/// What a restored cluster serves, as text to compare with what the original served: a
/// command's exit code, its stdout without response headers (they carry the cluster and
/// member IDs, which a restore makes new) and its plain stderr lines, with remaining lease
/// TTLs normalised (a restore starts leases over).
pub fn served(out: &Output) -> String {
    static HEADER: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#""header":\{[^}]*\},?"#).unwrap());
    crate::normalize::generic(&format!(
        "exit code {}\n{}{}\n",
        out.code,
        HEADER.replace_all(&out.stdout, ""),
        plain_lines(&out.stderr).join("\n")
    ))
}

/// Panics with every (command, [`served`] text) of `got` that differs from `want`'s, under
/// the heading `what`. With `OXCD_TEST_DUMP=1`, prints every answer of `got`.
pub fn same_answers(what: &str, want: &[(String, String)], got: &[(String, String)]) {
    if std::env::var_os("OXCD_TEST_DUMP").is_some() {
        for (cmd, text) in got {
            eprintln!("=== {what}: etcdctl {cmd}\n{text}");
        }
    }
    assert_eq!(want.len(), got.len(), "{what}: number of answers");
    let diffs: Vec<String> = want
        .iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|((cmd, w), (_, g))| format!("etcdctl {cmd}\n--- want ---\n{w}--- got ---\n{g}"))
        .collect();
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_msgs_skip_client_library_and_progress() {
        let stderr = r#"{"level":"info","ts":1,"caller":"snapshot/v3_snapshot.go:119","msg":"created temporary db file","path":"x"}
{"level":"info","ts":"2026","caller":"clientv3/maintenance.go:200","msg":"opened snapshot stream; downloading"}
{"level":"info","ts":1,"caller":"cmd/snapshot.rs:1","msg":"downloading snapshot","received":"1 MB"}
Error: boom
"#;
        assert_eq!(log_msgs(stderr), vec!["created temporary db file"]);
        assert_eq!(plain_lines(stderr), vec!["Error: boom"]);
        let out = Output {
            stdout: "Snapshot saved at /tmp/x/s.db\n".into(),
            stderr: stderr.into(),
            code: 0,
            timed_out: false,
        };
        assert_eq!(
            outcome(&out, &[("/tmp/x/s.db", "<FILE>")]),
            "exit code 0\n--- stdout ---\nSnapshot saved at <FILE>\n--- log ---\ncreated temporary db file\n--- stderr ---\nError: boom\n"
        );
    }
}
