//! The resource scenarios: resident memory (`VmRSS`), disk use of the data dirs, and the
//! start-up time of a restarted follower.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::cluster::{Cluster, MEMBERS};
use super::{Measure, Value};

/// How long a restarted member may take to serve.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

const MIB: f64 = 1024.0 * 1024.0;
const MB: f64 = 1e6;

fn row(label: impl Into<String>, unit: &'static str, value: f64) -> Measure {
    Measure {
        label: label.into(),
        unit,
        value,
    }
}

/// `VmRSS` of a process, in bytes.
fn rss(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("{path}: no VmRSS"))?;
    Ok(kib * 1024.0)
}

/// Every member's `VmRSS` in MiB.
fn rss_all(c: &mut Cluster) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for i in 0..MEMBERS {
        c.alive(i)?;
        let pid = c.members[i].pid().ok_or("member not running")?;
        out.push(rss(pid)? / MIB);
    }
    Ok(out)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// `mem-idle`: memory of each member `wait` after the cluster is up.
pub fn mem_idle(c: &mut Cluster, wait: Duration) -> Result<Value, String> {
    std::thread::sleep(wait);
    let v = rss_all(c)?;
    Ok(Value::Measures(
        vec![
            row("mem-idle max", "MiB", max(&v)),
            row("mem-idle mean", "MiB", mean(&v)),
        ],
        json!({ "rss_mib": v, "after_secs": wait.as_secs_f64() }),
    ))
}

/// `mem-1m`: memory right after load-1m and `settle` later.
pub fn mem_loaded(c: &mut Cluster, settle: Duration) -> Result<Value, String> {
    let loaded = rss_all(c)?;
    std::thread::sleep(settle);
    let idle = rss_all(c)?;
    let s = settle.as_secs();
    Ok(Value::Measures(
        vec![
            row("mem-1m max (after load)", "MiB", max(&loaded)),
            row("mem-1m mean (after load)", "MiB", mean(&loaded)),
            row(format!("mem-1m max ({s} s later)"), "MiB", max(&idle)),
            row(format!("mem-1m mean ({s} s later)"), "MiB", mean(&idle)),
        ],
        json!({ "rss_mib_after_load": loaded, "rss_mib_idle": idle, "idle_secs": s }),
    ))
}

/// Sum of the lengths and of the allocated blocks of the files under `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut sum = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return sum;
    };
    for e in entries.flatten() {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        if md.is_dir() {
            let (a, b) = dir_size(&e.path());
            sum = (sum.0 + a, sum.1 + b);
        } else if md.is_file() {
            sum = (sum.0 + md.len(), sum.1 + md.blocks() * 512);
        }
    }
    sum
}

/// `disk-1m`: each member's data dir (file lengths, and blocks allocated) and its MVCC
/// database file (`member/snap/db` for both).
pub fn disk(c: &mut Cluster) -> Result<Value, String> {
    let mut dirs = Vec::new();
    let mut alloc = Vec::new();
    let mut dbs = Vec::new();
    for m in &c.members {
        let (len, blocks) = dir_size(&m.data_dir);
        dirs.push(len as f64 / MB);
        alloc.push(blocks as f64 / MB);
        let db = m.data_dir.join("member/snap/db");
        let md = std::fs::metadata(&db).map_err(|e| format!("{}: {e}", db.display()))?;
        dbs.push(md.len() as f64 / MB);
    }
    Ok(Value::Measures(
        vec![
            row("disk-1m data dir max", "MB", max(&dirs)),
            row("disk-1m data dir allocated max", "MB", max(&alloc)),
            row("disk-1m db file max", "MB", max(&dbs)),
        ],
        json!({ "data_dir_mb": dirs, "allocated_mb": alloc, "db_file_mb": dbs }),
    ))
}

/// `startup-1m`: `times` times, a follower is stopped with `SIGTERM` and started again with
/// the same flags; timed from the spawn until it answers both a serializable Range of `key`
/// and `GET /health` with `{"health":"true"}`. The median.
pub fn startup(c: &mut Cluster, key: &[u8], times: usize) -> Result<Value, String> {
    let mut took = Vec::new();
    for _ in 0..times {
        let i = c.follower()?;
        c.stop(i)?;
        let t0 = Instant::now();
        c.spawn(i)?;
        loop {
            c.alive(i)?;
            if c.range(i, key, true).is_ok() && c.healthy(i).is_ok() {
                break;
            }
            if t0.elapsed() > STARTUP_TIMEOUT {
                return Err(format!(
                    "restarted member not serving after {STARTUP_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        took.push(t0.elapsed().as_secs_f64());
        c.wait_ready(Duration::from_secs(60))?;
    }
    let mut sorted = took.clone();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.is_empty() {
        0.0
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    Ok(Value::Measures(
        vec![row(format!("startup-1m median of {times}"), "s", median)],
        json!({ "startup_secs": took }),
    ))
}
