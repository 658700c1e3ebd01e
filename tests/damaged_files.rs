//! A member whose WAL or backend was damaged while it was down: a torn tail of the last WAL
//! file (a record cut short by the crash, or junk after the last record) is cut off as etcd
//! repairs its WAL, and the member serves every acknowledged write; damage anywhere else is
//! refused at start-up with a non-zero exit and a message naming the file. Never is a member
//! started on damaged files silently serving less (or other) data than was acknowledged.
//!
//! Damaged backends (truncated, garbage, emptied, scrambled pages) are in `space.rs`; here only
//! a backend missing next to a WAL with data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::member::Kind;

const KEYS: usize = 20;

/// A one-member oxcd with keys k0..k19 written (each acknowledged), then killed with -9.
fn crashed_member() -> Cluster {
    let mut c = Cluster::start(Kind::Oxcd, 1);
    for i in 0..KEYS {
        c.ctl_ok(0, &["put", &format!("k{i}"), &format!("v{i}")]);
    }
    c.kill9(0);
    c
}

fn wal_dir(c: &Cluster) -> PathBuf {
    c.data_dir(0).join("member").join("wal")
}

/// The raft-engine file being written: the `.raftlog` with the highest sequence number.
fn last_log_file(c: &Cluster) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wal_dir(c))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "raftlog"))
        .collect();
    files.sort();
    files.pop().expect("a raft-engine log file")
}

/// Where the records of a log file end: raft-engine allocates space ahead with zeros, so the
/// last non-zero byte ends the last record (its checksum's last byte may itself be zero: then
/// this is a few bytes short, inside the last record).
fn records_end(b: &[u8]) -> usize {
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1)
}

fn write_at(path: &Path, at: usize, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    if b.len() < at + bytes.len() {
        b.resize(at + bytes.len(), 0);
    }
    b[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

/// Starts member 0 again and waits until it answers.
fn starts(c: &mut Cluster) {
    c.restart(&[0]);
}

/// Every acknowledged key is served with its value, and nothing else is there.
fn serves_all_keys(c: &Cluster) {
    let out = c.ctl_ok(0, &["get", "k", "--prefix", "--write-out=json"]);
    let v = c.json(&out, "get --prefix");
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    assert_eq!(kvs.len(), KEYS, "every acknowledged key: {out}");
    for i in 0..KEYS {
        let got = c.ctl_ok(0, &["get", &format!("k{i}"), "--print-value-only"]);
        assert_eq!(got.stdout, format!("v{i}\n"), "k{i}");
    }
}

/// Member 0, started on damaged files, exits non-zero and says which file is damaged.
fn refused(c: &mut Cluster, names: &Path) -> String {
    let args = c.args(0);
    c.spawn_args(0, args);
    let Some(status) = c.wait_exit(0, Duration::from_secs(30)) else {
        c.fail("a member with a damaged WAL kept running");
    };
    assert!(!status.success(), "exit status {status}");
    let logs = c.logs(0, 20);
    assert!(
        logs.contains(&names.display().to_string()),
        "the refusal names {}: {logs}",
        names.display()
    );
    assert!(!logs.contains("panicked"), "{logs}");
    logs
}

/// A half-written record after the last one (a batch header promising more bytes than were
/// written), then junk at the end of the allocated space: both cut off, every key served,
/// and the repaired file starts again.
#[test]
fn torn_wal_tail_is_repaired() {
    let mut c = crashed_member();
    let file = last_log_file(&c);
    let b = std::fs::read(&file).unwrap();
    let end = records_end(&b);
    // A batch header: length 4096 (no compression), item footer at 4000; then some of its body.
    let mut half = Vec::new();
    half.extend_from_slice(&(4096u64 << 8).to_be_bytes());
    half.extend_from_slice(&4000u64.to_be_bytes());
    half.extend((0..300u32).map(|i| (i * 31 + 7) as u8));
    write_at(&file, end, &half);
    // And junk past the allocated space.
    let mut b = std::fs::read(&file).unwrap();
    b.extend((0..777u32).map(|i| (i * 131 + 17) as u8));
    std::fs::write(&file, &b).unwrap();
    starts(&mut c);
    serves_all_keys(&c);
    let logs = c.logs(0, 200);
    assert!(
        logs.contains("repaired the torn tail of the last WAL file"),
        "the repair is logged: {logs}"
    );
    // The member writes on after the repair, and starts again on its own files.
    c.ctl_ok(0, &["put", "after", "repair"]);
    c.kill9(0);
    starts(&mut c);
    serves_all_keys(&c);
    assert_eq!(
        c.ctl_ok(0, &["get", "after", "--print-value-only"]).stdout,
        "repair\n"
    );
}

/// Zeros after the last record (as raft-engine leaves the space it allocated ahead when the
/// member is killed) are no damage: a plain crash and restart.
#[test]
fn zero_filled_wal_tail_is_no_damage() {
    let mut c = crashed_member();
    let file = last_log_file(&c);
    let mut b = std::fs::read(&file).unwrap();
    b.extend(std::iter::repeat_n(0u8, 64 * 1024));
    std::fs::write(&file, &b).unwrap();
    starts(&mut c);
    serves_all_keys(&c);
}

/// The last record cut short (the file truncated inside it): the member either starts and
/// serves every key whose record is before the cut (the last record held only raft's hard
/// state), or, if the cut record held an entry the backend had applied, refuses naming the
/// WAL. It never panics and never serves a key with another value.
#[test]
fn wal_cut_inside_last_record() {
    let mut c = crashed_member();
    let file = last_log_file(&c);
    let b = std::fs::read(&file).unwrap();
    let end = records_end(&b);
    std::fs::write(&file, &b[..end - 5]).unwrap();
    let args = c.args(0);
    c.spawn_args(0, args);
    if let Some(status) = c.wait_exit(0, Duration::from_secs(5)) {
        assert!(!status.success());
        let logs = c.logs(0, 20);
        assert!(logs.contains(&wal_dir(&c).display().to_string()), "{logs}");
        assert!(!logs.contains("panicked"), "{logs}");
        eprintln!("refused: {logs}");
        return;
    }
    eprintln!("started: {}", c.logs(0, 200));
    c.kill9(0);
    starts(&mut c);
    serves_all_keys(&c);
    c.ctl_ok(0, &["put", "after", "cut"]);
    assert_eq!(
        c.ctl_ok(0, &["get", "after", "--print-value-only"]).stdout,
        "cut\n"
    );
}

/// A byte flipped inside an early record, with intact records after it, is not a torn tail:
/// the member refuses to start, names the file, and leaves it as it was.
#[test]
fn wal_damaged_in_the_middle_is_refused() {
    let mut c = crashed_member();
    let file = last_log_file(&c);
    let mut b = std::fs::read(&file).unwrap();
    let end = records_end(&b);
    // Well inside the records: past the file header (69 bytes), before the second half.
    let at = 69 + (end - 69) / 3;
    b[at] ^= 0x5a;
    b[at + 1] ^= 0xa5;
    std::fs::write(&file, &b).unwrap();
    let logs = refused(&mut c, &file);
    assert!(logs.contains("is damaged"), "{logs}");
    eprintln!("{logs}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b,
        "the damaged file is kept as found"
    );
    // Twice: the refusal repaired nothing behind the operator's back.
    refused(&mut c, &file);
}

/// The backend removed while the WAL holds the member's history: refused, naming the backend,
/// rather than started empty.
#[test]
fn missing_backend_is_refused() {
    let mut c = crashed_member();
    let db = c.data_dir(0).join("member").join("snap").join("db");
    std::fs::remove_file(&db).unwrap();
    let logs = refused(&mut c, &db);
    assert!(logs.contains("damaged"), "{logs}");
}
