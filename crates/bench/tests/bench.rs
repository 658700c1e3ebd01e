//! oxbench against a real single-member oxcd and a real etcd: each subcommand exits 0 and
//! prints etcd's report layout, and the keys it writes are there. No timing is asserted.

use std::process::{Command, Stdio};
use std::time::Duration;

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::tls::MtlsSet;
use oxcd_process_tests::{Kind, Member};

/// The most one small run may take on a busy machine before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

struct Run {
    stdout: String,
}

fn oxbench(m: &Member, args: &[&str]) -> Run {
    oxbench_at(&m.endpoint(), &m.kind.to_string(), args)
}

fn oxbench_at(endpoints: &str, what: &str, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxbench"))
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oxbench");
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    loop {
        if child.try_wait().expect("wait oxbench").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("oxbench output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "oxbench {args:?} against {what} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // The progress bar goes to stderr only.
    assert!(!stdout.contains(" / "), "progress bar on stdout:\n{stdout}");
    assert!(
        stderr.contains("100.00%"),
        "no finished progress bar:\n{stderr}"
    );
    Run { stdout }
}

fn secs(line: &str, label: &str) -> f64 {
    let rest = line
        .strip_prefix(&format!("  {label}:\t"))
        .unwrap_or_else(|| panic!("expected `  {label}:\\t`: {line:?}"));
    let num = rest
        .strip_suffix(" secs.")
        .unwrap_or_else(|| panic!("expected ` secs.`: {line:?}"));
    fixed4(num)
}

/// A number printed with `%4.4f`.
fn fixed4(s: &str) -> f64 {
    let (_, frac) = s
        .split_once('.')
        .unwrap_or_else(|| panic!("no decimals: {s:?}"));
    assert_eq!(frac.len(), 4, "not four decimals: {s:?}");
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// Checks one report (the text from its "Summary:" on) and returns its request count
/// (the histogram's total).
fn check_report(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "Summary:")
        .unwrap_or_else(|| panic!("no Summary:\n{text}"));
    assert_eq!(lines[at - 1], "", "a blank line before Summary:");
    let total = secs(lines[at + 1], "Total");
    let slowest = secs(lines[at + 2], "Slowest");
    let fastest = secs(lines[at + 3], "Fastest");
    let average = secs(lines[at + 4], "Average");
    secs(lines[at + 5], "Stddev");
    let rps = fixed4(
        lines[at + 6]
            .strip_prefix("  Requests/sec:\t")
            .unwrap_or_else(|| panic!("Requests/sec line: {:?}", lines[at + 6])),
    );
    assert!(total > 0.0 || rps > 0.0, "{text}");
    assert!(rps > 0.0, "Requests/sec must be positive:\n{text}");
    assert!(fastest <= average && average <= slowest, "{text}");

    assert_eq!(lines[at + 7], "");
    assert_eq!(lines[at + 8], "Response time histogram:");
    let mut count = 0;
    let mut edges = Vec::new();
    for l in &lines[at + 9..at + 20] {
        let (head, bar) = l
            .split_once("\t|")
            .unwrap_or_else(|| panic!("histogram line: {l:?}"));
        assert!(bar.chars().all(|c| c == '∎'), "bar: {l:?}");
        assert!(bar.chars().count() <= 40, "bar too long: {l:?}");
        let head = head.strip_prefix("  ").expect("indent");
        let (edge, n) = head.split_once(" [").expect("edge [count]");
        edges.push(fixed4(edge));
        count += n
            .strip_suffix(']')
            .expect("]")
            .parse::<usize>()
            .expect("count");
    }
    assert_eq!(edges.len(), 11);
    assert!(
        edges.windows(2).all(|w| w[0] <= w[1]),
        "edges ascend: {edges:?}"
    );
    assert_eq!(lines[at + 20], "");
    assert_eq!(lines[at + 21], "Latency distribution:");
    let pcts = ["10", "25", "50", "75", "90", "95", "99", "99.9"];
    let mut i = at + 22;
    let mut seen = 0;
    while i < lines.len() && lines[i].starts_with("  ") && lines[i].contains("% in ") {
        let l = lines[i];
        let (p, v) = l[2..].split_once("% in ").expect("% in");
        assert_eq!(p, pcts[seen], "percentiles in order: {l:?}");
        fixed4(v.strip_suffix(" secs.").expect("secs."));
        seen += 1;
        i += 1;
    }
    if count >= 10 {
        assert!(seen >= 1, "latency distribution lines:\n{text}");
    }
    assert!(!text.contains("Error distribution:"), "errors:\n{text}");
    count
}

/// How many keys the member holds, via the real etcdctl.
fn key_count(m: &Member) -> i64 {
    let out = m.etcdctl(&["get", "", "--prefix", "--keys-only", "-w", "json"]);
    assert_eq!(out.code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    v["count"].as_i64().unwrap_or(0)
}

fn scenario(kind: Kind) {
    let m = Member::start(kind);

    // put: 200 sequential keys over 2 connections and 4 clients.
    let r = oxbench(
        &m,
        &[
            "put",
            "--total",
            "200",
            "--clients",
            "4",
            "--conns",
            "2",
            "--key-space-size",
            "200",
            "--sequential-keys",
        ],
    );
    assert_eq!(check_report(&r.stdout), 200);
    assert!(
        r.stdout.ends_with("\n\n"),
        "put prints the report with Println"
    );
    assert_eq!(key_count(&m), 200, "the 200 keys written by put");

    // Flags before and after the subcommand, as cobra's persistent flags.
    let r = oxbench(&m, &["put", "--total", "10", "--precise", "--sample"]);
    assert!(r.stdout.contains("Summary:"));
    assert!(r.stdout.contains("UNIX-SECOND,MIN-LATENCY-MS"));

    // Failed requests: counted per error text, no summary, still exit 0 (as etcd's tool).
    let r = oxbench(&m, &["put", "--total", "3", "--val-size", "2000000"]);
    assert!(
        r.stdout.starts_with("\nError distribution:\n  [3]\t"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Summary:"));

    // range: linearizable and serializable.
    let out = m.etcdctl(&["put", "foo", "bar"]);
    assert_eq!(out.code, 0, "{out}");
    let r = oxbench(&m, &["range", "foo", "--total", "50", "--clients", "2"]);
    assert!(r.stdout.starts_with("bench with linearizable range\n"));
    assert_eq!(check_report(&r.stdout), 50);
    let r = oxbench(
        &m,
        &["range", "a", "z", "--total", "20", "--consistency", "s"],
    );
    assert!(r.stdout.starts_with("bench with serializable range\n"));
    assert_eq!(check_report(&r.stdout), 20);

    // txn-put: 4 puts per txn over the same 200-key space.
    let r = oxbench(
        &m,
        &[
            "txn-put",
            "--total",
            "50",
            "--txn-ops",
            "4",
            "--key-space-size",
            "200",
            "--clients",
            "2",
        ],
    );
    assert_eq!(check_report(&r.stdout), 50);
    assert_eq!(
        key_count(&m),
        201,
        "txn-put wrote into put's key space, plus foo"
    );

    // watch: creation and events.
    let r = oxbench(
        &m,
        &[
            "watch",
            "--streams",
            "2",
            "--watch-per-stream",
            "5",
            "--watched-key-total",
            "2",
            "--key-space-size",
            "2",
            "--sequential-keys",
            "--put-total",
            "10",
            "--clients",
            "2",
            "--conns",
            "2",
        ],
    );
    let (create, events) = r
        .stdout
        .split_once("Watch events received summary:\n")
        .expect("events summary");
    assert!(create.starts_with("Watch creation summary:\n"));
    assert_eq!(check_report(create), 10);
    // 10 puts on 2 keys, each key watched 5 times: 50 events.
    assert_eq!(check_report(events), 50);

    // lease-keepalive.
    let r = oxbench(&m, &["lease-keepalive", "--total", "40", "--clients", "2"]);
    assert_eq!(check_report(&r.stdout), 40);

    // The others run and report.
    let r = oxbench(
        &m,
        &["txn-mixed", "--total", "40", "--key-space-size", "10"],
    );
    let (read, write) = r
        .stdout
        .split_once("Total Write Ops: ")
        .expect("write part");
    let reads = check_report(read.split_once("Details:").expect("read details").1);
    let writes = check_report(write.split_once("Details:").expect("write details").1);
    assert_eq!(reads + writes, 40);
    let r = oxbench(&m, &["watch-get", "--watchers", "10", "--events", "3"]);
    assert!(r.stdout.starts_with("Get during watch summary:\n"));
    let r = oxbench(
        &m,
        &[
            "watch-latency",
            "--total",
            "10",
            "--put-rate",
            "1000",
            "--clients",
            "2",
        ],
    );
    assert_eq!(check_report(&r.stdout), 20);
    let r = oxbench(
        &m,
        &[
            "stm",
            "--total",
            "20",
            "--keys",
            "4",
            "--keys-per-txn",
            "2",
            "--clients",
            "2",
        ],
    );
    assert_eq!(check_report(&r.stdout), 20);
    let r = oxbench(
        &m,
        &[
            "stm",
            "--total",
            "10",
            "--keys",
            "4",
            "--clients",
            "2",
            "--stm-locker",
            "lock-rpc",
        ],
    );
    assert_eq!(check_report(&r.stdout), 10);
}

#[test]
fn against_oxcd() {
    scenario(Kind::Oxcd);
}

#[test]
fn against_etcd() {
    scenario(Kind::Etcd);
}

/// TLS with a client certificate: verified against the CA, and with
/// `--insecure-skip-tls-verify`; `--target-leader` finds the (only) member as the leader.
fn tls_scenario(kind: Kind) {
    let dir = tempfile::Builder::new()
        .prefix("oxbench-tls-")
        .tempdir()
        .expect("temp dir");
    let set = MtlsSet::new(dir.path());
    let c = Cluster::start_secure(kind, 1, set.secure(&[]));
    let ep = c.endpoint(0);
    let what = format!("TLS {kind}");
    let ctl = set.ctl_flags();
    let mut args: Vec<&str> = ctl.iter().map(String::as_str).collect();
    args.extend(["--target-leader", "put", "--total", "20", "--clients", "2"]);
    assert_eq!(check_report(&oxbench_at(&ep, &what, &args).stdout), 20);
    let client = set.client.flags("cert", "key");
    let mut args: Vec<&str> = client.iter().map(String::as_str).collect();
    args.extend(["--insecure-skip-tls-verify", "range", "k", "--total", "20"]);
    assert_eq!(check_report(&oxbench_at(&ep, &what, &args).stdout), 20);
}

#[test]
fn tls_against_oxcd() {
    tls_scenario(Kind::Oxcd);
}

#[test]
fn tls_against_etcd() {
    tls_scenario(Kind::Etcd);
}
