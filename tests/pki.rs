//! `oxutl pki` against the real etcd 3.4 and etcdctl: the certificates it makes are what a
//! real deployment needs (client and peer mutual TLS, the gateway's self-dial, CRLs), and
//! `pki show --check-host` answers an operator's "does this certificate cover that member?".
//!
//! Each TLS test makes a CA, server, peer and client certificates with `oxutl pki`, starts a
//! two-member real etcd cluster with `https://` client and peer URLs and `--client-cert-auth`
//! `--peer-client-cert-auth`, and drives it with the real etcdctl.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_process_tests::ctl::{ctl, Ctl, Output};
use oxcd_process_tests::restore::Tool;
use oxcd_process_tests::{bins, ports, proc};
use serde_json::Value;

/// `oxutl args...`; panics (with the output) unless it exits 0.
fn oxutl_ok(args: &[&str]) -> Output {
    let out = Tool::Oxutl.run(args);
    assert_eq!(out.code, 0, "oxutl {args:?}\n{out}");
    out
}

/// `oxutl args...`, which must fail with an `Error: ...` line and no panic.
fn oxutl_err(args: &[&str]) -> Output {
    let out = Tool::Oxutl.run(args);
    assert_ne!(out.code, 0, "oxutl {args:?} should fail\n{out}");
    assert!(out.stderr.contains("Error: "), "oxutl {args:?}\n{out}");
    assert!(!out.stderr.contains("panicked"), "oxutl {args:?}\n{out}");
    out
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The files `oxutl pki` made for one cluster, all in one directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA plus `server`, `peer`, `client` (CN root) and `revoked` (CN alice) certificates of
    /// `key_type`, and `crl.pem` revoking `revoked`.
    fn make(dir: &Path, key_type: &str) -> Pki {
        let d = p(dir);
        oxutl_ok(&["pki", "ca", "--out-dir", d, "--key-type", key_type]);
        let hosts = "127.0.0.1,localhost";
        for (name, usage, cn) in [
            ("server", "server", "server"),
            ("peer", "peer", "peer"),
            ("client", "client", "root"),
            ("revoked", "client", "alice"),
        ] {
            let mut args = vec!["pki", "issue", "--ca-dir", d, "--name", name];
            args.extend(["--usage", usage, "--cn", cn, "--key-type", key_type]);
            if usage != "client" {
                args.extend(["--hosts", hosts]);
            }
            oxutl_ok(&args);
        }
        let revoked = dir.join("revoked.crt");
        let crl = dir.join("crl.pem");
        let out = oxutl_ok(&[
            "pki",
            "crl",
            "--ca-dir",
            d,
            "--revoke",
            p(&revoked),
            "--out",
            p(&crl),
        ]);
        assert!(out.stdout.contains("revoking 1 certificate"), "{out}");
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn file(&self, name: &str) -> String {
        p(&self.dir.join(name)).to_string()
    }

    /// etcdctl's TLS flags for client certificate `name` (`None`: CA only, no certificate).
    fn ctl_flags(&self, name: Option<&str>) -> Vec<String> {
        let mut flags = vec![format!("--cacert={}", self.file("ca.crt"))];
        if let Some(n) = name {
            flags.push(format!("--cert={}", self.file(&format!("{n}.crt"))));
            flags.push(format!("--key={}", self.file(&format!("{n}.key"))));
        }
        flags
    }
}

/// A real etcd cluster on https client and peer URLs, killed on drop.
struct TlsEtcd {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    logs: Vec<PathBuf>,
}

const READY: Duration = Duration::from_secs(30);

impl TlsEtcd {
    fn start(pki: &Pki, dir: &Path, size: usize) -> TlsEtcd {
        bins::require(&bins::etcd());
        let client_ports: Vec<u16> = (0..size).map(|_| ports::free_port()).collect();
        let peer_ports: Vec<u16> = (0..size).map(|_| ports::free_port()).collect();
        let initial: Vec<String> = (0..size)
            .map(|i| format!("m{}=https://127.0.0.1:{}", i + 1, peer_ports[i]))
            .collect();
        let mut cluster = TlsEtcd {
            children: Vec::new(),
            client_ports: client_ports.clone(),
            logs: Vec::new(),
        };
        for i in 0..size {
            let client = format!("https://127.0.0.1:{}", client_ports[i]);
            let peer = format!("https://127.0.0.1:{}", peer_ports[i]);
            // etcd 3.4 logs to stderr; stdout stays empty but is kept apart.
            let log = dir.join(format!("m{}.err", i + 1));
            let mut cmd = Command::new(bins::etcd());
            cmd.args(["--name", &format!("m{}", i + 1)])
                .args(["--data-dir", p(&dir.join(format!("m{}", i + 1)))])
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-token", "oxutl-pki"])
                .args(["--cert-file", &pki.file("server.crt")])
                .args(["--key-file", &pki.file("server.key")])
                .args(["--trusted-ca-file", &pki.file("ca.crt")])
                .arg("--client-cert-auth")
                .args(["--client-crl-file", &pki.file("crl.pem")])
                .args(["--peer-cert-file", &pki.file("peer.crt")])
                .args(["--peer-key-file", &pki.file("peer.key")])
                .args(["--peer-trusted-ca-file", &pki.file("ca.crt")])
                .arg("--peer-client-cert-auth")
                .stdin(Stdio::null())
                .stdout(File::create(log.with_extension("out")).expect("log file"))
                .stderr(File::create(&log).expect("log file"));
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("ETCD_") {
                    cmd.env_remove(key);
                }
            }
            proc::isolate(&mut cmd);
            cluster.children.push(cmd.spawn().expect("spawn etcd"));
            cluster.logs.push(log);
        }
        cluster
    }

    fn endpoint(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.client_ports[i])
    }

    /// Every member's whole log (a short test writes a few dozen lines).
    fn logs(&self) -> String {
        let mut text = String::new();
        for log in &self.logs {
            text.push_str(&format!("[{}]\n", log.display()));
            text.push_str(&std::fs::read_to_string(log).unwrap_or_default());
        }
        text
    }

    /// etcdctl against member `i` with `tls` flags, short timeouts (a refused handshake
    /// otherwise retries until the default 5 s dial timeout).
    fn etcdctl(&self, i: usize, tls: &[String], args: &[&str]) -> Output {
        let mut all: Vec<&str> = vec!["--dial-timeout=3s", "--command-timeout=5s"];
        all.extend(tls.iter().map(String::as_str));
        all.extend(args);
        ctl(Ctl::Etcdctl, &self.endpoint(i), &all)
    }

    /// Waits until every member answers `endpoint health` over mutual TLS.
    fn wait_healthy(&self, tls: &[String]) {
        let deadline = Instant::now() + READY;
        for i in 0..self.children.len() {
            loop {
                let out = self.etcdctl(i, tls, &["endpoint", "health"]);
                if out.code == 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "member {i} not healthy over TLS\n{out}\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        for child in &mut self.children {
            proc::kill_group(child);
        }
    }
}

/// The real etcd and etcdctl accept what `oxutl pki` makes with `key_type`, and refuse clients
/// without a certificate, with a revoked one, or with one from another CA.
fn real_etcd_accepts(key_type: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = Pki::make(&tmp.path().join("pki"), key_type);
    let etcd = TlsEtcd::start(&pki, tmp.path(), 2);
    let client = pki.ctl_flags(Some("client"));
    etcd.wait_healthy(&client);

    // Both members joined over peer mutual TLS with the peer certificates.
    let out = etcd.etcdctl(0, &client, &["member", "list", "-w", "json"]);
    assert_eq!(out.code, 0, "{out}\n{}", etcd.logs());
    let members: Value = serde_json::from_str(&out.stdout).expect("member list json");
    let members = members["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "{out}");
    assert!(members
        .iter()
        .all(|m| m["peerURLs"][0].as_str().unwrap().starts_with("https://")));

    // A write on one member is read on the other: raft traffic flows over peer TLS.
    let out = etcd.etcdctl(0, &client, &["put", "greeting", "hello"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "OK\n"), "{out}");
    let out = etcd.etcdctl(1, &client, &["get", "greeting"]);
    assert_eq!(out.stdout, "greeting\nhello\n", "{out}\n{}", etcd.logs());

    // No client certificate: the handshake is refused.
    let out = etcd.etcdctl(0, &pki.ctl_flags(None), &["get", "greeting"]);
    assert_ne!(out.code, 0, "a client without a certificate got in\n{out}");
    assert!(!out.stdout.contains("hello"), "{out}");

    // A certificate of this CA that the CRL (made by `oxutl pki crl`) revokes.
    let out = etcd.etcdctl(0, &pki.ctl_flags(Some("revoked")), &["get", "greeting"]);
    assert_ne!(out.code, 0, "a revoked client certificate got in\n{out}");

    // A certificate from another CA.
    let other = Pki::make(&tmp.path().join("other"), key_type);
    let mut foreign = pki.ctl_flags(None);
    foreign.extend(other.ctl_flags(Some("client")).into_iter().skip(1));
    let out = etcd.etcdctl(0, &foreign, &["get", "greeting"]);
    assert_ne!(out.code, 0, "a certificate from another CA got in\n{out}");

    // The server certificate carries clientAuth: etcd's gateway dials its own client port with
    // it, and without that usage etcd logs that it refused itself.
    let logs = etcd.logs();
    assert!(
        !logs.contains("incompatible key usage"),
        "etcd refused a certificate made by oxutl for its key usage\n{logs}"
    );
    // Each refusal above was refused for its own reason.
    let serial = revoked_serial(&pki);
    for reason in [
        "didn't provide a certificate".to_string(),
        format!("certificate serial {serial} revoked"),
        "signed by unknown authority".to_string(),
    ] {
        assert!(logs.contains(&reason), "etcd never said {reason:?}\n{logs}");
    }
}

/// The serial of `revoked.crt`, as `oxutl pki show -w json` gives it (etcd logs it in hex too).
fn revoked_serial(pki: &Pki) -> String {
    let out = oxutl_ok(&["-w", "json", "pki", "show", &pki.file("revoked.crt")]);
    let v: Value = serde_json::from_str(&out.stdout).expect("show json");
    v["certificates"][0]["serial"]
        .as_str()
        .expect("serial")
        .to_string()
}

#[test]
fn real_etcd_accepts_ecdsa_certificates() {
    real_etcd_accepts("ecdsa");
}

#[test]
fn real_etcd_accepts_rsa_certificates() {
    real_etcd_accepts("rsa");
}

#[test]
fn show_checks_hosts_before_a_member_is_added() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = p(tmp.path());
    oxutl_ok(&["pki", "ca", "--out-dir", d, "--cn", "test-ca"]);
    oxutl_ok(&[
        "pki",
        "issue",
        "--ca-dir",
        d,
        "--name",
        "node1",
        "--usage",
        "peer",
        "--hosts",
        "10.0.0.1,node1.example",
        "--hosts",
        "*.pods.example",
        "--org",
        "oxcd",
        "--days",
        "30",
    ]);
    let crt = tmp.path().join("node1.crt");
    let crt = p(&crt);

    // Covered: the IP, the name, a name under the wildcard.
    let out = oxutl_ok(&[
        "pki",
        "show",
        crt,
        "--check-host",
        "10.0.0.1",
        "--check-host",
        "node1.example",
        "--check-host",
        "x.pods.example",
    ]);
    for want in [
        "subject:     O=oxcd, CN=node1",
        "issuer:      CN=test-ca",
        "SANs:        DNS:node1.example, DNS:*.pods.example, IP:10.0.0.1",
        "ext usage:   serverAuth, clientAuth",
        "host 10.0.0.1 is covered",
        "host x.pods.example is covered",
    ] {
        assert!(out.stdout.contains(want), "missing {want:?}\n{out}");
    }

    // Not covered: the new member's address is missing; the tool names it and fails.
    let out = oxutl_err(&[
        "pki",
        "show",
        crt,
        "--check-host",
        "node1.example",
        "--check-host",
        "10.0.0.2",
    ]);
    assert!(out.stderr.contains("host 10.0.0.2 is NOT covered"), "{out}");
    assert!(!out.stderr.contains("node1.example is NOT"), "{out}");

    // Expiry: 30 days left is fine for --min-days 7, not for 60.
    oxutl_ok(&["pki", "show", crt, "--min-days", "7"]);
    let out = oxutl_err(&["pki", "show", crt, "--min-days", "60"]);
    assert!(out.stderr.contains("expires on"), "{out}");

    // JSON for scripts.
    let out = oxutl_ok(&["-w", "json", "pki", "show", crt, "--check-host", "10.0.0.1"]);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    let cert = &v["certificates"][0];
    assert_eq!(cert["common_name"], "node1");
    assert_eq!(cert["ip_addresses"][0], "10.0.0.1");
    assert_eq!(cert["is_ca"], false);
    assert_eq!(v["host_checks"][0]["covered"], true);
    let serial = cert["serial"].as_str().expect("serial").to_string();

    // A CRL by serial number, shown back.
    let crl = tmp.path().join("crl.pem");
    oxutl_ok(&[
        "pki",
        "crl",
        "--ca-dir",
        d,
        "--revoke",
        &serial,
        "--out",
        p(&crl),
    ]);
    let out = oxutl_ok(&["pki", "show", p(&crl)]);
    assert!(
        out.stdout.contains(&format!("revoked:     {serial}")),
        "{out}"
    );
}

/// `openssl args...` (a second, independent verifier), or `None` when openssl is not installed.
fn openssl(args: &[&str]) -> Option<Output> {
    let bin = Path::new("/usr/bin/openssl");
    if !bin.exists() {
        eprintln!("skipped: no {}", bin.display());
        return None;
    }
    let mut cmd = Command::new(bin);
    cmd.args(args);
    Some(oxcd_process_tests::ctl::run(
        cmd,
        None,
        Duration::from_secs(30),
    ))
}

/// A CA's certificate and key in `dir`: made by openssl with a SEC1 EC key or a PKCS#1 RSA key
/// (as cfssl also writes them), or by `oxutl pki ca`.
fn make_ca(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    if kind == "oxutl" {
        oxutl_ok(&["pki", "ca", "--out-dir", p(dir)]);
        return (dir.join("ca.crt"), dir.join("ca.key"));
    }
    let (ca, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (genkey, label) = match kind {
        "openssl-ec" => (
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                p(&key),
            ],
            "EC PRIVATE KEY",
        ),
        _ => (
            vec!["genrsa", "-traditional", "-out", p(&key), "2048"],
            "RSA PRIVATE KEY",
        ),
    };
    let out = openssl(&genkey).unwrap();
    assert_eq!(out.code, 0, "{out}");
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.contains(&format!("BEGIN {label}")), "{pem}");
    let mut req = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        p(&key),
        "-subj",
        "/CN=legacy-ca",
    ];
    req.extend(["-days", "10", "-out", p(&ca)]);
    req.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    req.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    let out = openssl(&req).unwrap();
    assert_eq!(out.code, 0, "{out}");
    (ca, key)
}

/// A CA made elsewhere (openssl, as cfssl also writes keys: SEC1 EC and PKCS#1 RSA) keeps
/// issuing through `--ca-cert --ca-key`; openssl verifies the chain, the purposes and the CRLs
/// of what `oxutl pki` issues, from those CAs and from its own.
#[test]
fn openssl_verifies_and_openssl_cas_keep_issuing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    if openssl(&["version"]).is_none() {
        return;
    }
    for kind in ["openssl-ec", "openssl-rsa", "oxutl"] {
        let dir = tmp.path().join(kind);
        let (ca, key) = make_ca(&dir, kind);
        let ca_flags = ["--ca-cert", p(&ca), "--ca-key", p(&key)];
        let mut args = vec!["pki", "issue", "--name", "server", "--usage", "server"];
        args.extend(["--hosts", "127.0.0.1", "--days", "5"]);
        args.extend(ca_flags);
        oxutl_ok(&args);
        let mut args = vec!["pki", "issue", "--name", "client", "--usage", "client"];
        args.extend(ca_flags);
        oxutl_ok(&args);
        let mut args = vec!["pki", "crl", "--revoke", "client.crt", "--out"];
        let crl = dir.join("crl.pem");
        args.push(p(&crl));
        args.extend(ca_flags);
        // `client.crt` is relative to the current directory, not the CA's: refused, not guessed.
        oxutl_err(&args);
        let client = dir.join("client.crt");
        args[3] = p(&client);
        oxutl_ok(&args);

        // openssl: the chain holds, the usages fit the purposes, the CRL revokes the client.
        let verify = |purpose: &str, cert: &str, extra: &[&str]| {
            let mut a = vec!["verify", "-purpose", purpose, "-CAfile", p(&ca)];
            a.extend(extra);
            a.push(cert);
            openssl(&a).unwrap()
        };
        let server = dir.join("server.crt");
        for (purpose, cert) in [
            ("sslserver", p(&server)),
            ("sslclient", p(&server)),
            ("sslclient", p(&client)),
        ] {
            let out = verify(purpose, cert, &[]);
            assert_eq!(out.code, 0, "{kind} {purpose} {cert}\n{out}");
        }
        let out = verify("sslserver", p(&client), &[]);
        assert_ne!(
            out.code, 0,
            "a client certificate passed as a server's\n{out}"
        );
        let out = verify(
            "sslclient",
            p(&client),
            &["-crl_check", "-CRLfile", p(&crl)],
        );
        assert_ne!(out.code, 0, "{out}");
        assert!(
            out.stdout.contains("revoked") || out.stderr.contains("revoked"),
            "{out}"
        );
        let out = verify(
            "sslserver",
            p(&server),
            &["-crl_check", "-CRLfile", p(&crl)],
        );
        assert_eq!(out.code, 0, "{out}");
    }
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = p(tmp.path());
    let out = oxutl_err(&[
        "pki", "issue", "--ca-dir", d, "--name", "n", "--usage", "client",
    ]);
    assert!(out.stderr.contains("ca.crt: no such file"), "{out}");

    oxutl_ok(&["pki", "ca", "--out-dir", d]);
    let out = oxutl_err(&["pki", "ca", "--out-dir", d]);
    assert!(out.stderr.contains("already exists"), "{out}");
    oxutl_ok(&["pki", "ca", "--out-dir", d, "--force"]);

    let issue = |extra: &[&str]| {
        let mut args = vec!["pki", "issue", "--ca-dir", d, "--name", "n"];
        args.extend(extra);
        Tool::Oxutl.run(&args)
    };
    for (extra, want) in [
        (&["--usage", "server"][..], "--hosts is required"),
        (&["--usage", "both", "--hosts", "h"][..], "unknown usage"),
        (
            &["--usage", "server", "--hosts", "https://h:2379"][..],
            "invalid host",
        ),
        (
            &["--usage", "client", "--key-type", "dsa"][..],
            "unknown key type",
        ),
        (&["--usage", "client", "--days", "0"][..], "--days"),
    ] {
        let out = issue(extra);
        assert_ne!(out.code, 0, "{extra:?}\n{out}");
        assert!(out.stderr.contains(want), "{extra:?}: want {want:?}\n{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
    let out = oxutl_err(&[
        "pki", "issue", "--ca-dir", d, "--name", "../x", "--usage", "client",
    ]);
    assert!(out.stderr.contains("invalid --name"), "{out}");

    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let out = oxutl_err(&["pki", "show", p(&garbage)]);
    assert!(out.stderr.contains("garbage.pem"), "{out}");
    let out = oxutl_err(&[
        "pki",
        "crl",
        "--ca-dir",
        d,
        "--revoke",
        "not-hex",
        "--out",
        p(&tmp.path().join("crl.pem")),
    ]);
    assert!(out.stderr.contains("invalid serial"), "{out}");

    // Another CA with the same default name: its certificates are not this CA's to revoke.
    let other = tmp.path().join("other");
    let o = p(&other);
    oxutl_ok(&["pki", "ca", "--out-dir", o]);
    oxutl_ok(&[
        "pki", "issue", "--ca-dir", o, "--name", "c", "--usage", "client",
    ]);
    let out = oxutl_err(&[
        "pki",
        "crl",
        "--ca-dir",
        d,
        "--revoke",
        p(&other.join("c.crt")),
        "--out",
        p(&tmp.path().join("crl.pem")),
    ]);
    assert!(out.stderr.contains("was not issued by this CA"), "{out}");
}
