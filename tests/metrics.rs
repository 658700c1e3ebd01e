//! Prometheus metrics and health probes, with a real etcd cluster as the oracle.
//!
//! - `scrape_matches_etcd_and_moves`: a 3-member etcd cluster and a 3-member oxcd cluster (both
//!   with `--metrics extensive`) each take a short load, lose their leader, then their quorum.
//!   Every metric the operability issue lists must exist on oxcd with etcd's type and label
//!   names (from etcd's own scrapes), and the values must move the same way on both: fsync and
//!   commit histograms count up, proposals committed and applied grow, puts/ranges/txns and the
//!   gRPC counters grow, db size equals `endpoint status` dbSize, leader changes are seen after
//!   the leader is killed, peer send failures are counted. `/health` (plain, `?exclude=NOSPACE`,
//!   `?serializable=true`) answers as etcd's with and without quorum; `/livez` and `/readyz`
//!   (etcd 3.5; etcd 3.4 answers 404) answer as etcd 3.5's.
//! - `metrics_listener_and_nospace`: `--listen-metrics-urls` serves `/metrics` and `/health`
//!   on both; with a NOSPACE alarm `/health` fails and `/health?exclude=NOSPACE` passes, as on
//!   etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::ports::free_port;

/// The metrics the issue lists (etcd's names).
const REQUIRED: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_quota_backend_bytes",
    "etcd_server_id",
    "etcd_server_version",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_disk_backend_defrag_duration_seconds",
    "etcd_disk_backend_snapshot_duration_seconds",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "grpc_server_handling_seconds",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_ttl_total",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_start_time_seconds",
];

/// One metric family of a scrape: its type, its label names (without `le`) and its samples
/// (full sample name with labels -> value).
#[derive(Debug, Default, Clone)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    samples: BTreeMap<String, f64>,
}

type Scrape = BTreeMap<String, Family>;

/// Parses Prometheus text format.
fn parse(text: &str) -> Scrape {
    let mut out: Scrape = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                out.entry(name.to_string()).or_default().kind = kind.to_string();
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        // A histogram's `_bucket`, `_sum` and `_count` samples belong to its family.
        let family = ["", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                out.get(base)
                    .is_some_and(|f| suffix.is_empty() || f.kind == "histogram")
                    .then(|| base.to_string())
            })
            .unwrap_or_else(|| name.to_string());
        let f = out.entry(family).or_default();
        for kv in split_labels(labels) {
            let key = kv.split('=').next().unwrap_or_default();
            if key != "le" && !key.is_empty() {
                f.labels.insert(key.to_string());
            }
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        f.samples.insert(series.to_string(), v);
    }
    out
}

/// `a="x",b="y,z"` -> [`a="x"`, `b="y,z"`] (commas inside quotes kept).
fn split_labels(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn scrape_port(c: &Cluster, port: u16) -> Scrape {
    let r = c
        .http_get(port, "/metrics")
        .unwrap_or_else(|e| c.fail(&format!("GET /metrics on {port}: {e}")));
    assert_eq!(r.status, 200, "{}: /metrics answered {}", c.kind, r.status);
    parse(&r.body)
}

fn scrape(c: &Cluster, i: usize) -> Scrape {
    scrape_port(c, c.nodes[i].client_port)
}

/// Sum of the samples of `name` (a sample name without labels, e.g. `x_count`) whose labels
/// contain every `key="value"` of `with`.
fn sum(s: &Scrape, name: &str, with: &[&str]) -> f64 {
    s.values()
        .flat_map(|f| f.samples.iter())
        .filter(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            let labels = labels.trim_end_matches('}');
            n == name
                && with
                    .iter()
                    .all(|w| split_labels(labels).iter().any(|l| l == w))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Merges `b` into `a` (families seen in any scrape).
fn merge(a: &mut Scrape, b: &Scrape) {
    for (name, f) in b {
        let e = a.entry(name.clone()).or_default();
        if e.kind.is_empty() {
            e.kind = f.kind.clone();
        }
        e.labels.extend(f.labels.iter().cloned());
        e.samples
            .extend(f.samples.iter().map(|(k, v)| (k.clone(), *v)));
    }
}

/// A short load through member `i`: puts, gets, a delete, a lease's life.
fn load(c: &Cluster, i: usize, round: usize) {
    for k in 0..8 {
        let key = format!("load/{round}/{k}");
        c.ctl_ok(i, &["put", &key, "value"]);
        c.ctl_ok(i, &["get", &key]);
    }
    c.ctl_ok(i, &["del", &format!("load/{round}/0")]);
    let lease = c.ctl_ok(i, &["lease", "grant", "60"]);
    let id = lease
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| c.fail(&format!("no lease id in {lease}")))
        .to_string();
    c.ctl_ok(i, &["put", "--lease", &id, &format!("leased/{round}"), "v"]);
    c.ctl_ok(i, &["lease", "keep-alive", "--once", &id]);
    c.ctl_ok(i, &["lease", "revoke", &id]);
}

/// Runs `etcdctl txn` with a body on stdin.
fn txn(c: &Cluster, i: usize, round: usize) {
    use std::io::Write;
    let mut child = std::process::Command::new(oxcd_process_tests::bins::etcdctl())
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &c.endpoint(i), "txn"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn etcdctl txn");
    let body = format!("\nput txn/{round}/a 1\nput txn/{round}/b 2\n\n\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write txn");
    let out = child.wait_with_output().expect("etcdctl txn");
    assert!(
        out.status.success(),
        "{}: etcdctl txn failed: {}",
        c.kind,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `endpoint status` dbSize of member `i`.
fn db_size(c: &Cluster, i: usize) -> f64 {
    let out = c.ctl_ok(i, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| c.fail(&format!("{e}: {out}")));
    v[0]["Status"]["dbSize"]
        .as_f64()
        .unwrap_or_else(|| c.fail(&format!("no dbSize in {v}")))
}

fn get(c: &Cluster, port: u16, path: &str) -> (u16, String) {
    match c.http_get(port, path) {
        Ok(r) => (r.status, r.body),
        Err(e) => (0, format!("error: {e}")),
    }
}

const HEALTH_PATHS: &[&str] = &[
    "/health",
    "/health?exclude=NOSPACE",
    "/health?serializable=true",
];

/// GETs each of `paths` on `port`, recording (`<step> <path>`, status, body) in `out`.
fn answers(c: &Cluster, port: u16, step: &str, paths: &[&str], out: &mut Answers) {
    for path in paths {
        let (code, body) = get(c, port, path);
        out.push((format!("{step} {path}"), code, body));
    }
}

type Answers = Vec<(String, u16, String)>;

/// What a scenario saw: every family of every scrape, and the health answers by step.
struct Seen {
    families: Scrape,
    health: Answers,
    probes: Answers,
}

/// Asserts `after > before` for `what`.
fn grew(kind: Kind, what: &str, before: f64, after: f64) {
    assert!(
        after > before,
        "{kind}: {what} did not grow: {before} -> {after}"
    );
}

fn scenario(kind: Kind) -> Seen {
    let mut c = Cluster::start_with(kind, 3, &["--metrics", "extensive"]);
    let leader = c.wait_leader(&c.all());
    let mut families = Scrape::new();
    let before: Vec<Scrape> = c.all().iter().map(|&i| scrape(&c, i)).collect();
    let target = (leader + 1) % 3;
    load(&c, target, 0);
    txn(&c, target, 0);
    let snap = c.dir().join("metrics.snapshot.db");
    c.ctl_ok(target, &["snapshot", "save", &snap.display().to_string()]);
    c.ctl_ok(target, &["defrag"]);
    // The round-trip-time prober runs every few seconds (etcd's every 30 s: long enough that
    // etcd's scrape may lack the histogram; then its type comes from etcd's source).
    std::thread::sleep(Duration::from_secs(6));
    let after: Vec<Scrape> = c.all().iter().map(|&i| scrape(&c, i)).collect();
    for s in before.iter().chain(&after) {
        merge(&mut families, s);
    }

    for i in c.all() {
        let (b, a) = (&before[i], &after[i]);
        let name = c.name(i).to_string();
        let w = |what: &str| format!("{name} {what}");
        for h in [
            "etcd_disk_wal_fsync_duration_seconds_count",
            "etcd_disk_backend_commit_duration_seconds_count",
            "etcd_server_proposals_committed_total",
            "etcd_server_proposals_applied_total",
            "etcd_mvcc_put_total",
            "etcd_mvcc_delete_total",
            "etcd_debugging_lease_granted_total",
            "etcd_debugging_lease_revoked_total",
            "etcd_network_peer_sent_bytes_total",
            "etcd_network_peer_received_bytes_total",
        ] {
            grew(kind, &w(h), sum(b, h, &[]), sum(a, h, &[]));
        }
        assert_eq!(sum(a, "etcd_server_has_leader", &[]), 1.0, "{kind} {name}");
        assert_eq!(
            sum(a, "etcd_server_proposals_pending", &[]),
            0.0,
            "{kind} {name}"
        );
        assert!(sum(a, "process_resident_memory_bytes", &[]) > 0.0);
        assert!(sum(a, "process_open_fds", &[]) > 0.0);
        assert_eq!(
            sum(
                a,
                "etcd_server_id",
                &[&format!("server_id=\"{:x}\"", c.id(i))]
            ),
            1.0,
            "{kind} {name}: etcd_server_id"
        );
        // db size: no writes between the status and the scrape.
        let status = db_size(&c, i);
        let scraped = sum(&scrape(&c, i), "etcd_mvcc_db_total_size_in_bytes", &[]);
        assert_eq!(status, scraped, "{kind} {name}: dbSize vs metric");
    }
    let is_leader: f64 = after
        .iter()
        .map(|s| sum(s, "etcd_server_is_leader", &[]))
        .sum();
    assert_eq!(is_leader, 1.0, "{kind}: one leader");
    let (b, a) = (&before[target], &after[target]);
    for (h, with) in [
        ("etcd_mvcc_range_total", vec![]),
        ("etcd_mvcc_txn_total", vec![]),
        ("etcd_debugging_lease_renewed_total", vec![]),
        ("etcd_disk_backend_snapshot_duration_seconds_count", vec![]),
        ("etcd_disk_backend_defrag_duration_seconds_count", vec![]),
        ("etcd_network_client_grpc_sent_bytes_total", vec![]),
        ("etcd_network_client_grpc_received_bytes_total", vec![]),
        ("grpc_server_started_total", vec!["grpc_method=\"Put\""]),
        (
            "grpc_server_handled_total",
            vec!["grpc_method=\"Range\"", "grpc_code=\"OK\""],
        ),
        (
            "grpc_server_msg_received_total",
            vec!["grpc_method=\"Txn\""],
        ),
        ("grpc_server_msg_sent_total", vec!["grpc_method=\"Txn\""]),
        (
            "grpc_server_handling_seconds_count",
            vec!["grpc_method=\"LeaseGrant\""],
        ),
    ] {
        if h == "etcd_debugging_lease_renewed_total" && target != leader {
            // Renewals are counted by the leader that serves them.
            continue;
        }
        grew(kind, h, sum(b, h, &with), sum(a, h, &with));
    }

    // Healthy: every /health variant says true.
    let mut health = Vec::new();
    let mut probes = Vec::new();
    let port = c.nodes[target].client_port;
    answers(&c, port, "healthy", HEALTH_PATHS, &mut health);
    answers(
        &c,
        port,
        "healthy",
        &["/livez", "/readyz", "/readyz?verbose"],
        &mut probes,
    );

    // Kill the leader: the survivors see a leader change and count failed sends to it.
    let survivors: Vec<usize> = c.all().into_iter().filter(|&i| i != leader).collect();
    let changes_before: Vec<f64> = survivors
        .iter()
        .map(|&i| sum(&scrape(&c, i), "etcd_server_leader_changes_seen_total", &[]))
        .collect();
    c.kill9(leader);
    let new_leader = c.wait_leader(&survivors);
    c.ctl_ok(new_leader, &["put", "after/kill", "v"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now: Vec<Scrape> = survivors.iter().map(|&i| scrape(&c, i)).collect();
        let changed = now
            .iter()
            .zip(&changes_before)
            .all(|(s, b)| sum(s, "etcd_server_leader_changes_seen_total", &[]) > *b)
            && now
                .iter()
                .any(|s| sum(s, "etcd_network_peer_sent_failures_total", &[]) > 0.0);
        if changed {
            for s in &now {
                merge(&mut families, s);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind}: no leader change or no send failure seen after killing the leader: \
             {changes_before:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Lose the quorum: /health fails whatever the parameters; /livez still passes (a local
    // read), /readyz fails on the linearizable read.
    let last = new_leader;
    let other = survivors
        .into_iter()
        .find(|&i| i != last)
        .expect("two left");
    c.kill9(other);
    c.wait_no_leader(&[last]);
    let port = c.nodes[last].client_port;
    answers(&c, port, "no quorum", HEALTH_PATHS, &mut health);
    answers(&c, port, "no quorum", &["/livez", "/readyz"], &mut probes);
    let s = scrape(&c, last);
    assert_eq!(sum(&s, "etcd_server_has_leader", &[]), 0.0, "{kind}");
    merge(&mut families, &s);
    Seen {
        families,
        health,
        probes,
    }
}

/// etcd's type and label names for the families etcd lists only once they have a sample.
fn fallback(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    match name {
        "etcd_network_peer_round_trip_time_seconds" => Some(("histogram", &["To"])),
        "etcd_network_peer_sent_failures_total" => Some(("counter", &["To"])),
        _ => None,
    }
}

#[test]
fn scrape_matches_etcd_and_moves() {
    let etcd = scenario(Kind::Etcd);
    let oxcd = scenario(Kind::Oxcd);
    let mut problems = Vec::new();
    for &name in REQUIRED {
        let Some(ox) = oxcd.families.get(name) else {
            problems.push(format!("{name}: missing on oxcd"));
            continue;
        };
        let (kind, labels): (String, BTreeSet<String>) = match etcd.families.get(name) {
            Some(f) => (f.kind.clone(), f.labels.clone()),
            None => match fallback(name) {
                Some((k, l)) => (k.to_string(), l.iter().map(|s| s.to_string()).collect()),
                None => {
                    problems.push(format!("{name}: missing on etcd too"));
                    continue;
                }
            },
        };
        if ox.kind != kind {
            problems.push(format!("{name}: type {} on oxcd, {kind} on etcd", ox.kind));
        }
        if ox.labels != labels {
            problems.push(format!(
                "{name}: labels {:?} on oxcd, {labels:?} on etcd",
                ox.labels
            ));
        }
    }
    // The same gRPC series (method, service, type) as etcd's, for etcd's methods.
    for family in ["grpc_server_started_total", "grpc_server_handled_total"] {
        let series = |s: &Scrape| -> BTreeSet<String> {
            s.get(family)
                .map(|f| f.samples.keys().cloned().collect())
                .unwrap_or_default()
        };
        let missing: Vec<String> = series(&etcd.families)
            .difference(&series(&oxcd.families))
            .cloned()
            .collect();
        if !missing.is_empty() {
            problems.push(format!("{family}: oxcd lacks {missing:?}"));
        }
    }
    assert_eq!(
        oxcd.health, etcd.health,
        "/health answers differ (left oxcd, right etcd)"
    );
    assert!(
        problems.is_empty(),
        "metrics differ:\n{}",
        problems.join("\n")
    );
    // etcd 3.4 has no /livez or /readyz: oxcd answers them as etcd 3.5 does.
    for (step, code, _) in &etcd.probes {
        assert_eq!(*code, 404, "etcd 3.4 {step}");
    }
    let probes: Vec<(&str, u16, &str)> = oxcd
        .probes
        .iter()
        .map(|(s, c, b)| (s.as_str(), *c, b.as_str()))
        .collect();
    assert_eq!(
        probes,
        vec![
            ("healthy /livez", 200, "ok"),
            ("healthy /readyz", 200, "ok"),
            (
                "healthy /readyz?verbose",
                200,
                "[+]data_corruption ok\n[+]linearizable_read ok\n[+]serializable_read ok\n\
                 readyz check passed\n"
            ),
            ("no quorum /livez", 200, "ok"),
            (
                "no quorum /readyz",
                503,
                "[+]data_corruption ok\n[-]linearizable_read failed: etcdserver: request timed \
                 out\n[+]serializable_read ok\nreadyz check failed\n"
            ),
        ]
    );
}

/// `--listen-metrics-urls`, and `/health?exclude=NOSPACE` with a real NOSPACE alarm.
fn listener_scenario(kind: Kind) -> Vec<(String, u16, String)> {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let c = Cluster::start_with(
        kind,
        1,
        &[
            "--listen-metrics-urls",
            &url,
            "--quota-backend-bytes",
            "300000",
        ],
    );
    let mut seen = Vec::new();
    let s = scrape_port(&c, port);
    assert_eq!(sum(&s, "etcd_server_has_leader", &[]), 1.0, "{kind}");
    assert_eq!(
        sum(&s, "etcd_server_quota_backend_bytes", &[]),
        300000.0,
        "{kind}"
    );
    let (code, body) = get(&c, port, "/health");
    seen.push(("metrics port /health".to_string(), code, body));
    // Fill the backend until the NOSPACE alarm is raised.
    let value = "x".repeat(60_000);
    let mut raised = false;
    for k in 0..60 {
        let out = c.ctl(0, &["put", &format!("big/{k}"), &value]);
        if out.code != 0 {
            assert!(
                out.stderr.contains("database space exceeded"),
                "{kind}: {out}"
            );
            raised = true;
            break;
        }
    }
    assert!(raised, "{kind}: no NOSPACE alarm after filling the backend");
    let client = c.nodes[0].client_port;
    for path in [
        "/health",
        "/health?exclude=NOSPACE",
        "/health?exclude=CORRUPT",
        "/health?exclude=CORRUPT&exclude=NOSPACE",
    ] {
        let (code, body) = get(&c, client, path);
        seen.push((format!("NOSPACE {path}"), code, body));
    }
    let (code, body) = get(&c, port, "/health?exclude=NOSPACE");
    seen.push((
        "NOSPACE metrics port /health?exclude=NOSPACE".into(),
        code,
        body,
    ));
    seen
}

#[test]
fn metrics_listener_and_nospace() {
    let etcd = listener_scenario(Kind::Etcd);
    let oxcd = listener_scenario(Kind::Oxcd);
    assert_eq!(oxcd, etcd, "left oxcd, right etcd");
    assert_eq!(oxcd[0].1, 200);
    assert_eq!(oxcd[1].1, 503, "NOSPACE makes /health fail: {oxcd:?}");
    assert_eq!(oxcd[2].1, 200, "?exclude=NOSPACE ignores it: {oxcd:?}");
}

#[test]
fn parser_reads_histograms_and_labels() {
    let s = parse(
        "# HELP h x\n# TYPE h histogram\nh_bucket{To=\"a,b\",le=\"1\"} 2\nh_sum{To=\"a,b\"} 3\n\
         h_count{To=\"a,b\"} 2\n# TYPE c counter\nc 5\n",
    );
    assert_eq!(s["h"].kind, "histogram");
    assert_eq!(s["h"].labels, BTreeSet::from(["To".to_string()]));
    assert_eq!(sum(&s, "h_count", &["To=\"a,b\""]), 2.0);
    assert_eq!(sum(&s, "c", &[]), 5.0);
}

/// `deploy/<rel>` of the workspace.
fn deploy_file(rel: &str) -> std::path::PathBuf {
    oxcd_process_tests::bins::workspace_root()
        .join("deploy")
        .join(rel)
}

/// The PromQL expressions of the Grafana dashboard, with its variables filled in.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_file("grafana/oxcd-dashboard.json"))
        .expect("read the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "oxcd-overview");
    let panels = dash["panels"].as_array().expect("panels");
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("a target has an expr")
                .replace("$__rate_interval", "5m")
                .replace("$job", ".+")
                .replace("$instance", ".+")
        })
        .collect();
    assert!(
        exprs.len() >= 20,
        "the dashboard has {} queries",
        exprs.len()
    );
    exprs
}

/// Every metric the alert rules and the dashboard use is one the scrape test checks on oxcd.
#[test]
fn deploy_files_use_checked_metric_names() {
    let rules = std::fs::read_to_string(deploy_file("prometheus/oxcd-alerts.yml"))
        .expect("read the alert rules");
    let names = regex::Regex::new(r"\b(?:etcd|grpc_server|process)_[a-z_]+").expect("regex");
    let mut used = BTreeSet::new();
    for text in std::iter::once(rules).chain(dashboard_exprs()) {
        for m in names.find_iter(&text) {
            let n = m.as_str();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n);
            used.insert(base.to_string());
        }
    }
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !REQUIRED.contains(&n.as_str()))
        .collect();
    assert!(unknown.is_empty(), "unchecked metric names: {unknown:?}");
    assert!(used.len() >= 25, "only {} metric names used", used.len());
}

/// `promtool check rules` and `promtool test rules` on deploy/prometheus, and the dashboard's
/// queries parsed by promtool as recording rules. Skipped (with the reason printed) without
/// promtool (Debian package `prometheus`).
#[test]
fn alert_rules_pass_promtool() {
    let promtool = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    if std::process::Command::new(&promtool)
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED alert_rules_pass_promtool: promtool not found (apt-get install prometheus)"
        );
        return;
    }
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let rules = deploy_file("prometheus/oxcd-alerts.yml");
    run(&["check".as_ref(), "rules".as_ref(), rules.as_os_str()]);
    let tests = deploy_file("prometheus/oxcd-alerts.test.yml");
    run(&["test".as_ref(), "rules".as_ref(), tests.as_os_str()]);
    // The dashboard's queries as recording rules: promtool parses each one.
    let recording: Vec<serde_json::Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({ "record": format!("dashboard_query_{i}"), "expr": e }))
        .collect();
    let file = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": recording }] });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, file.to_string()).expect("write");
    run(&["check".as_ref(), "rules".as_ref(), path.as_os_str()]);
}
