//! Log lines shaped like etcd's zap logger, with a real etcd (`--logger=zap`) as the oracle.
//!
//! - `lines_are_etcds_zap_json`: a 1-member etcd and a 1-member oxcd; every stderr line of
//!   oxcd parses as a JSON object whose first keys are `level`, `ts`, `caller`, `msg` (in that
//!   order, as etcd's), with etcd's value shapes (lowercase level, `2026-11-21T11:07:02.368Z`,
//!   `dir/file:line`); the messages both log at start-up ("serving client traffic insecurely",
//!   "published local member to cluster through raft", "set initial cluster version", "enabled
//!   capabilities for version") carry the same field names with the same JSON types. oxcd also
//!   logs "ready to serve client requests" (etcd 3.5's zap line; etcd 3.4 prints it only with
//!   capnslog).
//! - `log_outputs_and_level`: `--log-outputs=stderr,<file>` writes every line to both, and
//!   `--log-level=warn` drops the info lines; each checked on etcd too.
//! - `read_index_retry_is_logged`: a 3-member cluster that lost two members logs "waiting for
//!   ReadIndex response took too long, retrying" (warn, `retry-timeout` 500ms) for a
//!   linearizable get, as etcd does.

use std::collections::BTreeMap;

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::member::Kind;
use serde_json::Value;

/// Messages both etcd and oxcd log when a fresh 1-member cluster starts.
const COMMON: [&str; 4] = [
    "serving client traffic insecurely; this is strongly discouraged!",
    "published local member to cluster through raft",
    "set initial cluster version",
    "enabled capabilities for version",
];

/// The JSON lines of `text` (other lines, such as the harness's headers, skipped).
fn json_lines(text: &str) -> Vec<(String, Value)> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (l.to_string(), v)
        })
        .collect()
}

/// Field name → JSON type name, for one line.
fn shape(v: &Value) -> BTreeMap<String, &'static str> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let t = match v {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            (k.clone(), t)
        })
        .collect()
}

/// Checks the four leading keys of `line` and their values' shapes.
fn check_head(line: &str, v: &Value) {
    assert!(
        line.starts_with(r#"{"level":""#),
        "level is not the first key: {line}"
    );
    let order: Vec<usize> = ["\"level\":", "\"ts\":", "\"caller\":", "\"msg\":"]
        .iter()
        .map(|k| line.find(k).unwrap_or_else(|| panic!("no {k}: {line}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "key order: {line}");
    let level = v["level"].as_str().unwrap();
    assert!(
        ["debug", "info", "warn", "error"].contains(&level),
        "{line}"
    );
    let ts = v["ts"].as_str().unwrap();
    let b = ts.as_bytes();
    assert!(
        ts.len() == 24
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && ts.ends_with('Z')
            && ts[20..23].bytes().all(|c| c.is_ascii_digit()),
        "ts {ts:?}: {line}"
    );
    let caller = v["caller"].as_str().unwrap();
    let (path, no) = caller.rsplit_once(':').unwrap_or_else(|| panic!("{line}"));
    assert!(
        no.parse::<u32>().is_ok() && path.matches('/').count() <= 1 && !path.is_empty(),
        "caller {caller:?}: {line}"
    );
    assert!(v["msg"].is_string(), "{line}");
}

fn start(kind: Kind, extra: &[&str]) -> Cluster {
    let mut flags = vec!["--logger=zap"];
    flags.extend_from_slice(extra);
    Cluster::start_with(kind, 1, &flags)
}

#[test]
fn lines_are_etcds_zap_json() {
    let mut shapes = Vec::new();
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let c = start(kind, &[]);
        c.ctl_ok(0, &["put", "k", "v"]);
        // The cluster-version lines come just after publishing; give them a moment.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let logs = c.logs(0, usize::MAX);
        let lines = json_lines(&logs);
        assert!(lines.len() >= 5, "{kind:?} logged too little:\n{logs}");
        let mut by_msg = BTreeMap::new();
        for (line, v) in &lines {
            check_head(line, v);
            by_msg
                .entry(v["msg"].as_str().unwrap().to_string())
                .or_insert_with(|| shape(v));
        }
        for msg in COMMON {
            assert!(
                by_msg.contains_key(msg),
                "{kind:?} never logged {msg:?}:\n{logs}"
            );
        }
        // Every non-JSON line in the member's output is a harness header.
        for l in logs.lines().filter(|l| !l.starts_with('{')) {
            assert!(l.starts_with('['), "{kind:?} wrote a non-JSON line {l:?}");
        }
        shapes.push(by_msg);
    }
    for msg in COMMON {
        assert_eq!(
            shapes[1][msg], shapes[0][msg],
            "oxcd's {msg:?} fields (right: etcd's)"
        );
    }
}

#[test]
fn log_outputs_and_level() {
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("member.log");
        let outputs = format!("--log-outputs=stderr,{}", file.display());
        let c = start(kind, &[&outputs]);
        c.ctl_ok(0, &["put", "k", "v"]);
        let logs = c.logs(0, usize::MAX);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let in_file = json_lines(&text);
        for (line, v) in &in_file {
            check_head(line, v);
        }
        assert!(
            in_file.iter().any(|(_, v)| v["msg"] == COMMON[1]),
            "{kind:?}: the log file lacks the publish line:\n{text}"
        );
        assert!(
            logs.contains(COMMON[1]),
            "{kind:?}: stderr lacks the publish line:\n{logs}"
        );
        drop(c);

        let c = start(kind, &["--log-level=warn"]);
        c.ctl_ok(0, &["put", "k", "v"]);
        let logs = c.logs(0, usize::MAX);
        for (line, v) in json_lines(&logs) {
            assert!(
                v["level"] != "info" && v["level"] != "debug",
                "{kind:?} --log-level=warn logged {line}"
            );
        }
        assert!(!logs.contains(COMMON[1]), "{kind:?}: {logs}");
    }
}

/// A linearizable read on a member that lost its quorum: raft never answers the ReadIndex, and
/// the member logs etcd's retry warning every 500 ms until the request times out.
#[test]
fn read_index_retry_is_logged() {
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let mut c = Cluster::start_with(kind, 3, &["--logger=zap"]);
        c.ctl_ok(0, &["put", "k", "v"]);
        c.stop(1);
        c.stop(2);
        let out = c.ctl(0, &["get", "k", "--command-timeout=3s"]);
        assert_ne!(
            out.code, 0,
            "{kind:?}: a read without quorum succeeded\n{out}"
        );
        let logs = c.logs(0, usize::MAX);
        let retry = json_lines(&logs)
            .into_iter()
            .find(|(_, v)| v["msg"] == "waiting for ReadIndex response took too long, retrying");
        let (line, v) = retry.unwrap_or_else(|| panic!("{kind:?} logged no retry:\n{logs}"));
        check_head(&line, &v);
        assert_eq!(v["level"], "warn", "{line}");
        assert_eq!(v["retry-timeout"], "500ms", "{line}");
    }
}
