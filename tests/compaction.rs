//! Automatic compaction in both modes, compared with etcd: history older than the retention is
//! compacted away ("required revision has been compacted"), newer history stays readable. Also
//! the compaction and stream-limit flag errors, the HTTP/2 stream limit oxcd advertises, and the
//! output format of `check perf`. No step asserts a duration; every wait is a bounded loop.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use oxcd_process_tests::cluster::{check_transcripts, Cluster, Transcript};
use oxcd_process_tests::ctl::{command, run, Ctl, Output};
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::ports;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// The `Error:` line of a failed command (etcdctl also logs its retries as JSON lines), or the
/// output of a successful one.
fn outcome(out: &Output) -> String {
    if out.code == 0 {
        return out.stdout.clone();
    }
    let err = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or("<no Error: line>");
    format!("exit code {}: {err}\n", out.code)
}

fn get_rev(c: &Cluster, key: &str, rev: i64) -> Output {
    c.ctl(0, &["get", key, &format!("--rev={rev}")])
}

/// Waits (bounded) until a read at `rev` fails as compacted; false if it never did.
fn wait_compacted(c: &Cluster, rev: i64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let out = get_rev(c, "k", rev);
        if out.code != 0 && out.stderr.contains(COMPACTED) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// Periodic mode with a 2s retention: once the history of two seconds ago is compacted, the
/// older revision is gone and the compacted one and later ones read.
fn periodic(kind: Kind) -> Transcript {
    let c = Cluster::start_with(kind, 1, &["--auto-compaction-retention", "2s"]);
    let mut t = Transcript::new();
    t.add("put k v1", outcome(&c.ctl_ok(0, &["put", "k", "v1"]))); // rev 2
    t.add("put k v2", outcome(&c.ctl_ok(0, &["put", "k", "v2"]))); // rev 3
    if !wait_compacted(&c, 2, Duration::from_secs(60)) {
        t.problem("revision 2 was never compacted");
    }
    t.add("get k --rev=2", outcome(&get_rev(&c, "k", 2)));
    // Revision 3 is where the compaction of the quiet history stops: still readable.
    t.add("get k --rev=3", outcome(&get_rev(&c, "k", 3)));
    // A new write: the revision before it stays readable until two seconds pass.
    t.add("put k v3", outcome(&c.ctl_ok(0, &["put", "k", "v3"]))); // rev 4
    t.add("get k --rev=3 again", outcome(&get_rev(&c, "k", 3)));
    t.add("get k", outcome(&c.ctl_ok(0, &["get", "k"])));
    if !wait_compacted(&c, 3, Duration::from_secs(60)) {
        t.problem("revision 3 was never compacted after the next write");
    }
    t.add("get k --rev=4", outcome(&get_rev(&c, "k", 4)));
    if kind == Kind::Oxcd {
        let logs = c.logs(0, 400);
        for msg in [
            "starting auto periodic compaction",
            "completed auto periodic compaction",
        ] {
            if !logs.contains(msg) {
                t.problem(format!("oxcd never logged {msg:?}"));
            }
        }
    }
    t.logs = c.all_logs();
    t
}

/// Revision mode retaining 5 revisions: five minutes after start (etcd's fixed interval), the
/// revision five behind the current one is compacted.
fn revision(kind: Kind) -> Transcript {
    let c = Cluster::start_with(
        kind,
        1,
        &[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "5",
        ],
    );
    let mut t = Transcript::new();
    for i in 1..=20 {
        c.ctl_ok(0, &["put", "k", &format!("v{i}")]); // revs 2..=21
    }
    // Compaction at 21 - 5 = 16, once, at the five-minute tick.
    if !wait_compacted(&c, 15, Duration::from_secs(7 * 60)) {
        t.problem("revision 15 was never compacted");
    }
    t.add("get k --rev=15", outcome(&get_rev(&c, "k", 15)));
    t.add("get k --rev=16", outcome(&get_rev(&c, "k", 16)));
    t.add("get k --rev=21", outcome(&get_rev(&c, "k", 21)));
    t.add("compaction 16", outcome(&c.ctl(0, &["compaction", "16"])));
    t.logs = c.all_logs();
    t
}

/// Runs a scenario on oxcd and etcd at once (they are slow), then compares.
fn compare_in_parallel(name: &str, scenario: fn(Kind) -> Transcript) {
    let (got, want) = std::thread::scope(|s| {
        let o = s.spawn(|| scenario(Kind::Oxcd));
        let e = s.spawn(|| scenario(Kind::Etcd));
        (o.join().unwrap(), e.join().unwrap())
    });
    assert!(
        want.problems.is_empty(),
        "{name} fails on etcd itself: {}",
        want.dump()
    );
    assert!(got.problems.is_empty(), "{name} on oxcd: {}", got.dump());
    if let Err(report) = check_transcripts(name, &want, Kind::Oxcd, &got) {
        panic!("{report}\n{}", got.logs);
    }
}

#[test]
fn periodic_auto_compaction_like_etcd() {
    compare_in_parallel("periodic auto-compaction", periodic);
}

#[test]
fn revision_auto_compaction_like_etcd() {
    compare_in_parallel("revision auto-compaction", revision);
}

/// A server started with `args` (plus harmless ports) that must fail; returns its output.
fn failing_server(kind: Kind, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (c, p) = (ports::free_port(), ports::free_port());
    let mut cmd = std::process::Command::new(kind.bin());
    cmd.args(args)
        .arg(format!("--data-dir={}", dir.path().join("d").display()))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{p}"
        ))
        .arg(format!("--initial-cluster=default=http://127.0.0.1:{p}"))
        .current_dir(dir.path());
    run(cmd, None, Duration::from_secs(10))
}

#[test]
fn compaction_and_stream_flag_errors_like_etcd() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--auto-compaction-mode=foo"],
            "unknown auto-compaction-mode \"foo\"",
        ),
        (
            &["--auto-compaction-retention=abc"],
            "error parsing CompactionRetention: time: invalid duration \"abc\"",
        ),
        (
            &["--auto-compaction-retention=-1"],
            "error parsing CompactionRetention: time: missing unit in duration \"-1\"",
        ),
        (
            &["--max-concurrent-streams=abc"],
            "invalid value \"abc\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"abc\": invalid syntax",
        ),
        (
            &["--max-concurrent-streams=5000000000"],
            "strconv.ParseUint: parsing \"5000000000\": value out of range",
        ),
    ];
    for (args, msg) in cases {
        let want = failing_server(Kind::Etcd, args);
        let got = failing_server(Kind::Oxcd, args);
        assert!(
            !want.timed_out && want.stderr.contains(msg),
            "etcd {args:?}: {want}"
        );
        assert!(
            !got.timed_out && got.stderr.contains(msg),
            "oxcd {args:?}: {got}"
        );
        assert_eq!(got.code, want.code, "exit code of {args:?}: {got}");
    }
}

/// The SETTINGS_MAX_CONCURRENT_STREAMS an h2c client is told on connecting.
fn advertised_max_streams(port: u16) -> Option<u32> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").ok()?;
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).ok()?; // empty SETTINGS
    for _ in 0..8 {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).ok()?;
        if head[3] == 4 && head[4] & 1 == 0 {
            return body.chunks(6).find_map(|p| {
                (u16::from_be_bytes([p[0], p[1]]) == 3)
                    .then(|| u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
            });
        }
    }
    None
}

#[test]
fn max_concurrent_streams_is_advertised() {
    let c = Cluster::start_with(Kind::Oxcd, 1, &["--max-concurrent-streams", "7"]);
    assert_eq!(advertised_max_streams(c.nodes[0].client_port), Some(7));
    // Requests still work within the limit.
    c.ctl_ok(0, &["put", "a", "1"]);
    let d = Cluster::start(Kind::Oxcd, 1);
    assert_eq!(
        advertised_max_streams(d.nodes[0].client_port),
        Some(u32::MAX)
    );
}

/// The report lines of `check perf`, in etcdctl's format, and the exit code they imply.
fn assert_perf_report(which: &str, out: &Output) {
    let text = out.stdout.replace('\r', "\n");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail: Vec<&str> = lines.iter().rev().take(4).rev().copied().collect();
    let pats = [
        r"^(.*PASS: Throughput is \d+ writes/s|.*FAIL: Throughput too low: \d+ writes/s)$",
        r"^(PASS: Slowest request took|Slowest request took too long:) \d+\.\d{6}s$",
        r"^(PASS: Stddev is|Stddev too high:) \d+\.\d{6}s$",
        r"^(PASS|FAIL)$",
    ];
    assert_eq!(tail.len(), 4, "{which}: {out}");
    for (line, pat) in tail.iter().zip(pats) {
        let re = regex::Regex::new(pat).unwrap();
        assert!(
            re.is_match(line),
            "{which}: {line:?} is not like {pat}\n{out}"
        );
    }
    let passed = tail[3] == "PASS";
    assert_eq!(
        out.code == 0,
        passed,
        "{which}: exit code vs verdict: {out}"
    );
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("0 / 60")),
        "{which}: no progress bar: {out}"
    );
}

#[test]
fn check_perf_reports_in_etcdctls_format() {
    let c = Cluster::start(Kind::Oxcd, 1);
    let ep = c.endpoint(0);
    let (ours, theirs) = std::thread::scope(|s| {
        let ep = &ep;
        let o = s.spawn(move || {
            run(
                command(Ctl::Oxctl, ep, &["check", "perf", "--load", "s"]),
                None,
                Duration::from_secs(180),
            )
        });
        let e = s.spawn(move || {
            run(
                command(
                    Ctl::Etcdctl,
                    ep,
                    &[
                        "check",
                        "perf",
                        "--load=s",
                        "--prefix=/etcdctl-check-perf-2/",
                    ],
                ),
                None,
                Duration::from_secs(180),
            )
        });
        (o.join().unwrap(), e.join().unwrap())
    });
    assert_perf_report("oxctl check perf", &ours);
    assert_perf_report("etcdctl check perf against oxcd", &theirs);
    // Both deleted their keys.
    let left = c.ctl_ok(
        0,
        &["get", "/etcdctl-check-perf", "--prefix", "--keys-only"],
    );
    assert!(left.stdout.is_empty(), "keys left behind: {left}");
}

#[test]
fn check_errors_like_etcdctl() {
    let c = Cluster::start(Kind::Oxcd, 1);
    c.ctl_ok(0, &["put", "/etcdctl-check-perf/x", "1"]);
    for args in [
        &["check", "perf", "--load", "xxl"][..],
        &["check", "datascale", "--load", "huge"][..],
        &["check", "perf"][..],
    ] {
        let want = c.ctl(0, args);
        let got = c.ctl_with(Ctl::Oxctl, 0, args);
        assert_eq!(
            (outcome(&got), got.code),
            (outcome(&want), want.code),
            "{args:?}\n--- oxctl ---\n{got}\n--- etcdctl ---\n{want}"
        );
    }
}
