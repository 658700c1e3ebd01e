//! Server flags, environment and the plain HTTP endpoints: `--version`, unknown flags and bad
//! values, `ETCD_*` variables, several client URLs, `/health`, `/version`, `/metrics`, and a
//! start with no flags at all. Each check runs against etcd as well, so the test itself is
//! known to describe etcd's behaviour.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oxcd_process_tests::ctl::{run, Output};
use oxcd_process_tests::member::{Kind, Member, MemberOpts};
use oxcd_process_tests::{http, ports, proc};

/// Runs the server binary with `args` and `env` in `cwd`; a server that starts instead of
/// exiting is killed after `timeout` (and the output says `timed_out`).
fn run_server(kind: Kind, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut cmd = Command::new(kind.bin());
    cmd.args(args).current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, None, Duration::from_secs(10))
}

/// Flags that keep a server that wrongly starts away from the default ports and cwd.
fn safe_flags(dir: &Path) -> Vec<String> {
    let (c, p) = (ports::free_port(), ports::free_port());
    vec![
        format!("--data-dir={}", dir.join("data").display()),
        format!("--listen-client-urls=http://127.0.0.1:{c}"),
        format!("--advertise-client-urls=http://127.0.0.1:{c}"),
        format!("--listen-peer-urls=http://127.0.0.1:{p}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
        format!("--initial-cluster=default=http://127.0.0.1:{p}"),
    ]
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxcd-test-flags-")
        .tempdir()
        .expect("temp dir")
}

fn version_flag(kind: Kind) -> Output {
    let dir = tmp();
    let out = run_server(kind, &["--version"], &[], dir.path());
    assert_eq!(out.code, 0, "{kind} --version: {out}");
    assert!(
        out.stdout.contains("Version: "),
        "{kind} --version prints no version: {out}"
    );
    out
}

#[test]
fn version_flag_etcd() {
    let out = version_flag(Kind::Etcd);
    assert!(out.stdout.starts_with("etcd Version: "), "{out}");
}

#[test]
fn version_flag_oxcd() {
    version_flag(Kind::Oxcd);
}

/// Runs with one bad flag (plus safe flags); returns the output, which must be an error exit
/// naming `name`.
fn bad_flag(kind: Kind, bad: &[&str], env: &[(&str, &str)], name: &str) -> Output {
    let dir = tmp();
    let mut args: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
    args.extend(safe_flags(dir.path()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_server(kind, &args, env, dir.path());
    assert!(
        !out.timed_out,
        "{kind} {bad:?} {env:?} started instead of failing: {out}"
    );
    assert_ne!(out.code, 0, "{kind} {bad:?} {env:?} exited 0: {out}");
    assert!(
        out.stderr.contains(name) || out.stdout.contains(name),
        "{kind} {bad:?} {env:?}: the error does not name {name}: {out}"
    );
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The flag errors exactly like etcd's (first line of stderr and exit code).
fn bad_flag_like_etcd(bad: &[&str], env: &[(&str, &str)], name: &str) {
    let want = bad_flag(Kind::Etcd, bad, env, name);
    let got = bad_flag(Kind::Oxcd, bad, env, name);
    let strip = |s: &str| {
        // etcd's capnslog prefix: time, level and package ("2026-11-21 05:46:02.253451 E |
        // etcdmain: ").
        match s.find(" | ") {
            Some(i) if s.starts_with("20") => {
                let rest = &s[i + 3..];
                rest.split_once(": ")
                    .map_or(rest, |(_, msg)| msg)
                    .to_string()
            }
            _ => s.to_string(),
        }
    };
    assert_eq!(
        (strip(first_line(&got.stderr)), got.code),
        (strip(first_line(&want.stderr)), want.code),
        "oxcd {bad:?} {env:?} does not fail like etcd\n--- oxcd ---\n{got}\n--- etcd ---\n{want}"
    );
}

#[test]
fn unknown_flag_fails_naming_it() {
    bad_flag(Kind::Etcd, &["--bogus-flag", "1"], &[], "bogus-flag");
    bad_flag(Kind::Oxcd, &["--bogus-flag", "1"], &[], "bogus-flag");
}

#[test]
fn unknown_flag_message_like_etcd() {
    bad_flag_like_etcd(&["--bogus-flag", "1"], &[], "bogus-flag");
}

#[test]
fn bad_flag_value_fails_naming_it() {
    for kind in [Kind::Etcd, Kind::Oxcd] {
        bad_flag(
            kind,
            &["--heartbeat-interval", "abc"],
            &[],
            "heartbeat-interval",
        );
        bad_flag(kind, &["--snapshot-count=-x"], &[], "snapshot-count");
        bad_flag(
            kind,
            &[],
            &[("ETCD_HEARTBEAT_INTERVAL", "abc")],
            "ETCD_HEARTBEAT_INTERVAL",
        );
    }
}

#[test]
fn bad_flag_value_message_like_etcd() {
    bad_flag_like_etcd(&["--heartbeat-interval", "abc"], &[], "heartbeat-interval");
    bad_flag_like_etcd(
        &[],
        &[("ETCD_HEARTBEAT_INTERVAL", "abc")],
        "ETCD_HEARTBEAT_INTERVAL",
    );
}

#[test]
fn env_shadowed_by_flag_fails() {
    for kind in [Kind::Etcd, Kind::Oxcd] {
        // `default` matches the safe flags' --initial-cluster: only the conflict is wrong.
        bad_flag(
            kind,
            &["--name", "default"],
            &[("ETCD_NAME", "other")],
            "ETCD_NAME",
        );
    }
}

/// Name, client URLs and cluster given by `ETCD_*` variables only.
fn env_configured(kind: Kind) -> String {
    let opts = MemberOpts {
        name: Some("envname".into()),
        omit: [
            "name",
            "listen-client-urls",
            "advertise-client-urls",
            "initial-cluster",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env: vec![
            ("ETCD_NAME".into(), "envname".into()),
            ("ETCD_LISTEN_CLIENT_URLS".into(), "{client_url}".into()),
            ("ETCD_ADVERTISE_CLIENT_URLS".into(), "{client_url}".into()),
            ("ETCD_INITIAL_CLUSTER".into(), "envname={peer_url}".into()),
        ],
        ..Default::default()
    };
    let member = Member::start_opts(kind, opts);
    let out = member.etcdctl(&["member", "list"]);
    assert_eq!(out.code, 0, "{kind}: member list: {out}");
    member.norm().apply(&out.stdout)
}

#[test]
fn etcd_env_vars_are_honoured() {
    let want = env_configured(Kind::Etcd);
    assert!(want.contains(", envname, "), "{want}");
    assert_eq!(env_configured(Kind::Oxcd), want);
}

fn several_client_urls(kind: Kind) {
    let extra = ports::free_port();
    let opts = MemberOpts {
        omit: vec!["listen-client-urls".into()],
        args: vec![format!(
            "--listen-client-urls=http://127.0.0.1:{{client_port}},http://127.0.0.1:{extra}"
        )],
        ..Default::default()
    };
    let member = Member::start_opts(kind, opts);
    let out = member.etcdctl(&["put", "k", "v"]);
    assert_eq!(out.code, 0, "{kind}: put on the first URL: {out}");
    let health = http::get(extra, "/health").expect("second URL answers /health");
    assert_eq!(health.status, 200, "{kind}: {health:?}");
    let out = oxcd_process_tests::ctl(
        oxcd_process_tests::Ctl::Etcdctl,
        &format!("127.0.0.1:{extra}"),
        &["get", "k", "--print-value-only"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "v\n"),
        "{kind}: get on the second URL: {out}"
    );
}

#[test]
fn several_listen_client_urls_etcd() {
    several_client_urls(Kind::Etcd);
}

#[test]
fn several_listen_client_urls_oxcd() {
    several_client_urls(Kind::Oxcd);
}

#[test]
fn health_and_version_endpoints() {
    let etcd = Member::start(Kind::Etcd);
    let oxcd = Member::start(Kind::Oxcd);
    let want = http::get(etcd.client_port, "/health").expect("etcd /health");
    let got = http::get(oxcd.client_port, "/health").expect("oxcd /health");
    assert_eq!(want.status, 200);
    let parsed: serde_json::Value = serde_json::from_str(&got.body)
        .unwrap_or_else(|e| panic!("oxcd /health is not JSON ({e}): {got:?}"));
    assert_eq!(parsed["health"], "true", "oxcd /health: {got:?}");
    assert_eq!(
        (got.status, got.body.trim()),
        (want.status, want.body.trim()),
        "oxcd /health differs from etcd's"
    );

    for member in [&etcd, &oxcd] {
        let v = http::get(member.client_port, "/version").expect("/version");
        assert_eq!(v.status, 200, "{} /version: {v:?}", member.kind);
        let json: serde_json::Value = serde_json::from_str(&v.body)
            .unwrap_or_else(|e| panic!("{} /version is not JSON ({e}): {v:?}", member.kind));
        for key in ["etcdserver", "etcdcluster"] {
            assert!(
                json[key].as_str().is_some_and(|s| !s.is_empty()),
                "{} /version has no {key}: {}",
                member.kind,
                v.body
            );
        }
    }
}

#[test]
fn metrics_endpoint_has_etcd_names() {
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let member = Member::start(kind);
        let out = member.etcdctl(&["put", "k", "v"]);
        assert_eq!(out.code, 0, "{out}");
        let m = http::get(member.client_port, "/metrics").expect("/metrics");
        assert_eq!(m.status, 200, "{kind} /metrics: {}", m.status);
        for line in ["etcd_server_has_leader 1", "etcd_server_is_leader 1"] {
            assert!(
                m.body.lines().any(|l| l == line),
                "{kind} /metrics lacks `{line}`"
            );
        }
        for name in [
            "etcd_mvcc_db_total_size_in_bytes",
            "etcd_server_proposals_committed_total",
            "etcd_disk_wal_fsync_duration_seconds_bucket",
            "etcd_debugging_mvcc_keys_total",
        ] {
            assert!(
                m.body.lines().any(|l| l.starts_with(name)),
                "{kind} /metrics lacks {name}"
            );
        }
    }
}

/// `oxcd` with no flags: listens on localhost:2379/2380 and keeps data in ./default.etcd.
fn no_flags(kind: Kind) {
    if !ports::is_free(2379) || !ports::is_free(2380) {
        eprintln!("note: 127.0.0.1:2379 or :2380 is in use; skipping the no-flag start of {kind}");
        return;
    }
    let dir = tmp();
    let mut cmd = Command::new(kind.bin());
    cmd.current_dir(dir.path())
        .stdout(std::fs::File::create(dir.path().join("out.log")).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("err.log")).expect("log"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(key);
        }
    }
    proc::isolate(&mut cmd);
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("err.log")).unwrap_or_default();
            if log.contains("address already in use") {
                eprintln!(
                    "note: lost the race for 2379/2380; skipping the no-flag start of {kind}"
                );
                return;
            }
            panic!("{kind} with no flags exited with {status}:\n{log}");
        }
        if let Ok(r) = http::get(2379, "/health") {
            if r.status == 200 {
                ready = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = oxcd_process_tests::ctl(
        oxcd_process_tests::Ctl::Etcdctl,
        "localhost:2379",
        &["member", "list"],
    );
    proc::kill_group(&mut child);
    let log = std::fs::read_to_string(dir.path().join("err.log")).unwrap_or_default();
    assert!(
        ready,
        "{kind} with no flags never answered /health on 2379:\n{log}"
    );
    assert!(
        dir.path().join("default.etcd").join("member").is_dir(),
        "{kind} with no flags did not create ./default.etcd/member"
    );
    assert!(
        out.stdout
            .contains(", default, http://localhost:2380, http://localhost:2379"),
        "{kind} member list with no flags: {out}"
    );
}

#[test]
fn no_flags_uses_defaults() {
    // One after the other: both want 2379 and 2380.
    no_flags(Kind::Etcd);
    no_flags(Kind::Oxcd);
}
