//! `oxbench compare --quick`: a 3-member etcd cluster and a 3-member oxcd cluster, every
//! scenario against each. The table has a row for every scenario with positive numbers for
//! both systems, nothing failed, and the work dir is gone afterwards. No time or ratio is
//! asserted.

use std::process::{Command, Stdio};
use std::time::Duration;

use oxcd_process_tests::{bins, proc};

/// The most the quick comparison may take on a busy machine before the test gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

const SCENARIOS: [&str; 12] = [
    "put-1",
    "put-100",
    "range-lin",
    "range-ser",
    "txn-put",
    "watch",
    "lease-keepalive",
    "mem-idle",
    "load-1m",
    "mem-1m",
    "disk-1m",
    "startup-1m",
];

/// A positive number as the table prints it (thousands separated).
fn positive(cell: &str, row: &str) -> f64 {
    let v: f64 = cell
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?} in {row}"));
    assert!(v > 0.0, "not positive: {cell:?} in {row}");
    v
}

#[test]
fn quick_comparison() {
    let (oxcd, etcd) = (bins::oxcd(), bins::etcd());
    bins::require(&oxcd);
    bins::require(&etcd);
    let work = tempfile::Builder::new()
        .prefix("oxbench-compare-test-")
        .tempdir()
        .expect("temp dir");
    let outs = tempfile::tempdir().expect("temp dir");
    let (md, json) = (outs.path().join("table.md"), outs.path().join("r.json"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxbench"))
        .arg("compare")
        .args(["--quick", "--keys", "2000"])
        .arg("--oxcd")
        .arg(&oxcd)
        .arg("--etcd")
        .arg(&etcd)
        .arg("--work-dir")
        .arg(work.path())
        .arg("--out")
        .arg(&md)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oxbench compare");
    if proc::wait_timeout(&mut child, RUN_TIMEOUT).is_none() {
        // Its members die with it (PR_SET_PDEATHSIG).
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "compare failed ({:?})\n{ctx}",
        out.status
    );
    assert!(!stdout.contains("failed"), "a scenario failed\n{ctx}");
    assert!(!stdout.contains("Failures"), "errors were counted\n{ctx}");
    assert!(stdout.contains("etcd Version: "), "{ctx}");
    assert!(stdout.contains("oxcd Version: "), "{ctx}");
    // No progress bars, one line per scenario and system.
    assert!(!stderr.contains("100.00%"), "{ctx}");
    for s in SCENARIOS {
        for sys in ["etcd", "oxcd"] {
            assert!(
                stderr.contains(&format!("{sys} {s} … done: ")),
                "{sys} {s}\n{ctx}"
            );
        }
    }

    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("| ") && !l.starts_with("| scenario") && !l.starts_with("| measure")
        })
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    for s in SCENARIOS {
        let mine: Vec<&Vec<&str>> = rows
            .iter()
            .filter(|r| r[0].split_whitespace().next() == Some(s))
            .collect();
        assert!(!mine.is_empty(), "no row for {s}\n{ctx}");
        for r in mine {
            let row = r.join(" | ");
            if r.len() == 9 {
                // scenario | etcd req/s | oxcd req/s | ratio | avg ms x2 | p99 ms x2 | errors
                positive(r[1], &row);
                positive(r[2], &row);
                positive(r[3], &row);
                for cell in &r[4..8] {
                    if s != "watch" {
                        positive(cell, &row);
                    }
                }
                assert_eq!(r[8], "0 / 0", "errors in {row}");
            } else {
                // measure | unit | etcd | oxcd | ratio
                assert_eq!(r.len(), 5, "{row}");
                positive(r[2], &row);
                positive(r[3], &row);
                positive(r[4], &row);
            }
        }
    }

    assert_eq!(
        std::fs::read_to_string(&md).expect("--out file"),
        stdout,
        "--out holds the printed tables"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("--json file")).expect("json");
    let results = j["results"].as_array().expect("results");
    assert_eq!(results.len(), 2 * SCENARIOS.len(), "{j}");
    assert!(results.iter().all(|r| r["ok"] == true), "{j}");

    let left: Vec<_> = std::fs::read_dir(work.path())
        .expect("read work dir parent")
        .collect();
    assert!(left.is_empty(), "work dir left behind: {left:?}");
}
