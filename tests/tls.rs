//! TLS for clients and peers: mutual TLS clusters driven by the real etcdctl and by oxctl,
//! refused clients (no certificate, another CA, revoked), certificate rotation under a write
//! load without a restart, a peer with a disallowed CN that cannot join, and `--auto-tls`.
//!
//! Certificates come from `oxcd_pki` ([`oxcd_process_tests::tls`]). Every wait is a bounded
//! loop; no duration is asserted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxcd_pki::Usage;
use oxcd_process_tests::cluster::{Cluster, Secure};
use oxcd_process_tests::ctl::{ctl, Ctl};
use oxcd_process_tests::member::Kind;
use oxcd_process_tests::tls::{client_config, getter, presented_serial, Files, MtlsSet, Pki};

/// How long to wait for a change to show (a rotated certificate, a log line).
const WAIT: Duration = Duration::from_secs(20);

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxcd-test-tls-")
        .tempdir()
        .expect("temp dir")
}

/// Polls `f` until it returns true or [`WAIT`] passes.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn logs_contain(c: &Cluster, i: usize, text: &str) -> bool {
    c.logs(i, 100_000).contains(text)
}

/// A 3-member cluster with client and peer mTLS: etcdctl and oxctl with `--cacert --cert
/// --key` put, get, list members and check health on every member; a client without a
/// certificate or with one from another CA is refused.
#[test]
fn mtls_cluster_serves_etcdctl_and_oxctl_and_refuses_others() {
    let dir = tempdir();
    let set = MtlsSet::new(dir.path());
    let c = Cluster::start_secure(Kind::Oxcd, 3, set.secure(&[]));
    for which in [Ctl::Etcdctl, Ctl::Oxctl] {
        for i in c.all() {
            let key = format!("k-{which}-{i}");
            let out = c.ctl_with(which, i, &["put", &key, "v"]);
            assert_eq!(out.code, 0, "{which} put on m{}: {out}", i + 1);
            // Read back through another member: the write went through the peers' TLS.
            let out = c.ctl_with(which, (i + 1) % 3, &["get", &key, "--print-value-only"]);
            assert_eq!(out.stdout.trim(), "v", "{which} get: {out}");
            let out = c.ctl_with(which, i, &["member", "list"]);
            assert_eq!(out.code, 0, "{which} member list: {out}");
            assert_eq!(out.stdout.matches("https://127.0.0.1:").count(), 6, "{out}");
            let out = c.ctl_with(which, i, &["endpoint", "health"]);
            assert_eq!(out.code, 0, "{which} endpoint health: {out}");
            assert!(out.stdout.contains("is healthy") || out.stderr.contains("is healthy"));
        }
    }

    // Lease calls a follower forwards to the leader go over the peers' TLS port: keep-alive
    // and time-to-live answered by every member.
    let leader = c.wait_leader(&c.all());
    let out = c.ctl_with(Ctl::Etcdctl, leader, &["lease", "grant", "60"]);
    assert_eq!(out.code, 0, "lease grant: {out}");
    let id = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    for i in c.all() {
        let out = c.ctl_with(Ctl::Etcdctl, i, &["lease", "keep-alive", "--once", &id]);
        assert!(
            out.code == 0 && out.stdout.contains("keepalived with TTL"),
            "keep-alive through m{} (leader m{}): {out}",
            i + 1,
            leader + 1
        );
        let out = c.ctl_with(Ctl::Etcdctl, i, &["lease", "timetolive", &id]);
        assert!(
            out.code == 0 && out.stdout.contains("granted with TTL(60s)"),
            "timetolive through m{}: {out}",
            i + 1
        );
    }

    // No client certificate: refused during the handshake.
    let ca = format!("--cacert={}", set.pki.ca_file().display());
    let refused = ["get", "k", "--dial-timeout=2s", "--command-timeout=3s"];
    let mut args = vec![ca.as_str()];
    args.extend(refused);
    let out = ctl(Ctl::Etcdctl, &c.endpoint(0), &args);
    assert_ne!(
        out.code, 0,
        "a client without a certificate was served: {out}"
    );
    assert!(eventually(|| logs_contain(
        &c,
        0,
        "tls: client didn't provide a certificate"
    )));

    // A certificate from another CA: refused too.
    let other = Pki::new(&dir.path().join("other"), "other-ca");
    let stranger = other.issue("client", "root", Usage::Client);
    let mut args: Vec<String> = vec![ca.clone()];
    args.extend(stranger.flags("cert", "key"));
    args.extend(refused.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctl(Ctl::Etcdctl, &c.endpoint(0), &args);
    assert_ne!(out.code, 0, "a client from another CA was served: {out}");
    assert!(eventually(|| logs_contain(
        &c,
        0,
        "certificate signed by unknown authority"
    )));
    // oxctl is refused the same way.
    let out = ctl(Ctl::Oxctl, &c.endpoint(1), &args);
    assert_ne!(
        out.code, 0,
        "oxctl with a certificate from another CA: {out}"
    );
}

/// A revoked client certificate (in `--client-crl-file`) is refused; an unrevoked one from the
/// same CA is served; a CRL written later is read without a restart.
#[test]
fn revoked_client_certificate_is_refused() {
    let dir = tempdir();
    let set = MtlsSet::new(dir.path());
    let revoked = set.pki.issue("revoked", "alice", Usage::Client);
    let crl = set.pki.crl("clients", &[&revoked]);
    let crl_flag = format!("--client-crl-file={}", crl.display());
    let c = Cluster::start_secure(Kind::Oxcd, 1, set.secure(&[crl_flag.as_str()]));
    let ca = format!("--cacert={}", set.pki.ca_file().display());
    let with = |files: &Files| {
        let mut args = vec![ca.clone()];
        args.extend(files.flags("cert", "key"));
        args.extend(
            ["put", "k", "v", "--dial-timeout=2s", "--command-timeout=3s"]
                .iter()
                .map(|s| s.to_string()),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(Ctl::Etcdctl, &c.endpoint(0), &args)
    };
    let out = with(&revoked);
    assert_ne!(out.code, 0, "a revoked certificate was served: {out}");
    let serial = format!("transport: certificate serial {} revoked", revoked.serial());
    assert!(
        eventually(|| logs_contain(&c, 0, &serial)),
        "{}",
        c.logs(0, 40)
    );
    assert_eq!(
        with(&set.client).code,
        0,
        "an unrevoked certificate was refused"
    );

    // Revoking the other one too: the member reads the new CRL for the next connection.
    set.pki.crl("clients", &[&revoked, &set.client]);
    assert!(
        eventually(|| with(&set.client).code != 0),
        "the rewritten CRL was not applied"
    );
}

/// Replacing the server and peer certificate files (same CA, new serials) while a writer puts
/// keys over TLS: new connections present the new certificates, no put fails, no member
/// restarts; a member restarted afterwards rejoins with the new peer certificate.
#[test]
fn certificates_rotate_without_restart() {
    let dir = tempdir();
    let set = MtlsSet::new(dir.path());
    let mut c = Cluster::start_secure(Kind::Oxcd, 3, set.secure(&[]));
    let pids: Vec<Option<u32>> = c.all().iter().map(|&i| c.pid(i)).collect();
    let tls = client_config(Some(&set.pki.ca_file()), Some(&set.client));
    let old_server = set.server.serial();
    let old_peer = set.peer.serial();
    for i in c.all() {
        assert_eq!(
            presented_serial(&tls, c.nodes[i].client_port).unwrap(),
            old_server
        );
        assert_eq!(
            presented_serial(&tls, c.nodes[i].peer_port).unwrap(),
            old_peer
        );
    }

    // The writer: one etcdctl process (a new TLS connection) per put, round robin.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
        let endpoints: Vec<String> = c.all().iter().map(|&i| c.endpoint(i)).collect();
        let flags = set.ctl_flags();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("rot/{n:05}");
                let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
                args.extend(["put", key.as_str(), "v", "--command-timeout=5s"]);
                let out = ctl(Ctl::Etcdctl, &endpoints[n % endpoints.len()], &args);
                if out.code == 0 {
                    acked.lock().unwrap().push(key);
                } else {
                    failed.lock().unwrap().push(format!("{key}: {out}"));
                }
                n += 1;
            }
        })
    };
    let written = |n: usize| eventually(|| acked.lock().unwrap().len() >= n);
    assert!(written(10), "the writer made no progress");

    // Rotate: write to a temporary file and rename (oxcd_pki::write_pem_files does).
    let server = set.pki.issue("server", "server", Usage::Server);
    let peer = set.pki.issue("peer", "peer", Usage::Peer);
    let (new_server, new_peer) = (server.serial(), peer.serial());
    assert_ne!(new_server, old_server);
    for i in c.all() {
        let (client_port, peer_port) = (c.nodes[i].client_port, c.nodes[i].peer_port);
        assert!(
            eventually(|| presented_serial(&tls, client_port).ok() == Some(new_server.clone())),
            "m{} still presents the old server certificate",
            i + 1
        );
        assert!(
            eventually(|| presented_serial(&tls, peer_port).ok() == Some(new_peer.clone())),
            "m{} still presents the old peer certificate",
            i + 1
        );
    }
    let after = acked.lock().unwrap().len();
    assert!(written(after + 10), "the writer stalled after the rotation");

    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "puts failed during the rotation: {failed:#?}"
    );
    for i in c.all() {
        assert_eq!(c.pid(i), pids[i], "m{} restarted", i + 1);
    }

    // New peer connections: restart m3 (the writer is done: a killed member fails the puts
    // it is serving); it dials with the new peer certificate, the others accept it and it
    // accepts theirs.
    c.restart(&[2]);
    let out = c.ctl(2, &["put", "after-restart", "v"]);
    assert_eq!(out.code, 0, "put through the restarted member: {out}");
    let third = c.nodes[2].peer_port;
    assert_eq!(presented_serial(&tls, third).unwrap(), new_peer);

    let acked = acked.lock().unwrap().len();
    let out = c.ctl(0, &["get", "rot/", "--prefix", "--keys-only", "-w", "json"]);
    let count = c.json(&out, "get")["count"].as_u64().unwrap_or(0);
    assert_eq!(count as usize, acked, "acknowledged puts missing");
    assert!(logs_contain(&c, 0, "reloaded certificate files"));
}

/// A member whose peer certificate's CN is not `--peer-cert-allowed-cn` cannot join.
#[test]
fn peer_with_disallowed_cn_cannot_join() {
    let dir = tempdir();
    let set = MtlsSet::new(dir.path());
    let evil = set.pki.issue("evil", "evil", Usage::Peer);
    assert_cannot_join(
        &set,
        &["--peer-cert-allowed-cn=peer"],
        &evil,
        "client certificate authentication failed",
    );
}

/// A member whose peer certificate is revoked (`--peer-crl-file`), or comes from another CA,
/// cannot join either.
#[test]
fn peer_with_revoked_or_foreign_certificate_cannot_join() {
    let dir = tempdir();
    let set = MtlsSet::new(dir.path());
    let revoked = set.pki.issue("revoked-peer", "peer", Usage::Peer);
    let crl = set.pki.crl("peers", &[&revoked]);
    let crl_flag = format!("--peer-crl-file={}", crl.display());
    let text = format!("transport: certificate serial {} revoked", revoked.serial());
    assert_cannot_join(&set, &[&crl_flag], &revoked, &text);

    let other = Pki::new(&dir.path().join("other"), "other-ca");
    let foreign = other.issue("peer", "peer", Usage::Peer);
    assert_cannot_join(
        &set,
        &[],
        &foreign,
        "certificate signed by unknown authority",
    );
}

/// Starts a one-member mTLS cluster with `flags`, announces a learner and starts it with the
/// peer certificate `bad`: it must get no member list and stop, the cluster must never see it
/// started, and the member must log `refusal`.
fn assert_cannot_join(set: &MtlsSet, flags: &[&str], bad: &Files, refusal: &str) {
    let mut c = Cluster::start_secure(Kind::Oxcd, 1, set.secure(flags));
    let i = c.push_node("m2");
    let peer_url = c.peer_url(i);
    // A learner, so the one voter keeps its quorum while the newcomer fails.
    let add = ["member", "add", "m2", "--learner"];
    let urls = format!("--peer-urls={peer_url}");
    let out = c.ctl(0, &[&add[..], &[urls.as_str()]].concat());
    assert_eq!(out.code, 0, "member add: {out}");

    // The standard command line of a joining member, with the bad certificate.
    let mut args = c.args(i);
    if let Some(p) = args.iter().position(|a| a == "--initial-cluster-state") {
        args[p + 1] = "existing".to_string();
    }
    args.retain(|a| !a.starts_with("--peer-cert-file=") && !a.starts_with("--peer-key-file="));
    args.extend(bad.flags("peer-cert-file", "peer-key-file"));
    c.spawn_args(i, args);

    let status = c.wait_exit(i, WAIT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "the member with a bad certificate did not stop with an error: {status:?}\n{}",
        c.logs(i, 20)
    );
    assert!(
        c.logs(i, 20)
            .contains("cannot fetch cluster info from peer urls"),
        "{}",
        c.logs(i, 20)
    );
    assert!(
        eventually(|| logs_contain(&c, 0, refusal)),
        "m1 did not log {refusal:?}:\n{}",
        c.logs(0, 40)
    );
    let out = c.ctl(0, &["member", "list", "-w", "json"]);
    let list = c.json(&out, "member list");
    let m2 = list["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["peerURLs"][0] == peer_url.as_str()))
        .cloned()
        .unwrap_or_default();
    assert!(
        m2["name"].as_str().unwrap_or("").is_empty(),
        "the member with a bad certificate started: {m2}"
    );
}

/// `--auto-tls --peer-auto-tls`: a single member serves https with a generated certificate,
/// kept under `<data-dir>/fixtures`; etcdctl works with `--insecure-skip-tls-verify` and with
/// `--cacert` naming the generated certificate.
#[test]
fn auto_tls_single_member() {
    let secure = Secure {
        client_https: true,
        peer_https: true,
        server_flags: vec!["--auto-tls".to_string(), "--peer-auto-tls".to_string()],
        ctl_flags: vec![
            "--insecure-transport=false".to_string(),
            "--insecure-skip-tls-verify".to_string(),
        ],
        get: Some(getter(client_config(None, None))),
    };
    let c = Cluster::start_secure(Kind::Oxcd, 1, secure);
    let out = c.ctl(0, &["put", "k", "v"]);
    assert_eq!(out.code, 0, "put with --insecure-skip-tls-verify: {out}");
    let fixtures = c.data_dir(0).join("fixtures");
    for side in ["client", "peer"] {
        for file in ["cert.pem", "key.pem"] {
            assert!(
                fixtures.join(side).join(file).exists(),
                "{side}/{file} missing"
            );
        }
    }
    let cacert = format!("--cacert={}", fixtures.join("client/cert.pem").display());
    let out = ctl(
        Ctl::Etcdctl,
        &c.endpoint(0),
        &[&cacert, "get", "k", "--print-value-only"],
    );
    assert_eq!(
        out.stdout.trim(),
        "v",
        "get with the generated certificate as CA: {out}"
    );
}

/// Moving the whole cluster to a new CA with rolling restarts, as docs/security.md describes:
/// (1) every member trusts both CAs (a bundle in the trusted CA files), restarted one at a time;
/// (2) the server, peer and client certificates are re-issued by the new CA (files replaced, no
/// restart); (3) the old CA is dropped, again one member at a time. The cluster serves
/// throughout, and at the end a client certificate from the old CA is refused.
#[test]
fn ca_replaced_with_rolling_restarts() {
    let dir = tempdir();
    let set = MtlsSet::new(dir.path());
    let mut c = Cluster::start_secure(Kind::Oxcd, 3, set.secure(&[]));
    let old_ca = std::fs::read_to_string(set.pki.ca_file()).unwrap();
    let new_dir = dir.path().join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let new_pki = Pki::new(&new_dir, "ca2");
    let new_ca = std::fs::read_to_string(new_pki.ca_file()).unwrap();
    let old_client = set.pki.issue("old-client", "root", Usage::Client);

    let mut writes = 0u64;
    let mut put_everywhere = |c: &Cluster, stage: &str| {
        for i in c.all() {
            writes += 1;
            let key = format!("ca/{writes:03}");
            let out = c.ctl_with(Ctl::Etcdctl, i, &["put", &key, stage]);
            assert_eq!(out.code, 0, "{stage}: put through m{}: {out}", i + 1);
        }
    };
    let rolling_restart = |c: &mut Cluster, stage: &str| {
        for i in c.all() {
            c.restart(&[i]);
            c.wait_leader(&c.all());
            let out = c.ctl_with(Ctl::Etcdctl, i, &["get", "ca/", "--prefix", "--keys-only"]);
            assert_eq!(out.code, 0, "{stage}: m{} after its restart: {out}", i + 1);
        }
    };

    // (1) Trust both CAs.
    replace_file(&set.pki.ca_file(), &format!("{old_ca}{new_ca}"));
    rolling_restart(&mut c, "both CAs trusted");
    put_everywhere(&c, "both-cas");

    // (2) Certificates from the new CA, in place of the old ones.
    for (stem, cn, usage, files) in [
        ("server", "server", Usage::Server, &set.server),
        ("peer", "peer", Usage::Peer, &set.peer),
        ("client", "root", Usage::Client, &set.client),
    ] {
        let issued = new_pki.issue(stem, cn, usage);
        replace_file(&files.key, &std::fs::read_to_string(&issued.key).unwrap());
        replace_file(&files.cert, &std::fs::read_to_string(&issued.cert).unwrap());
    }
    // The harness's own TLS client re-reads the files it trusts and presents.
    c.set_secure(set.secure(&[]));
    put_everywhere(&c, "new-certs");

    // (3) Drop the old CA.
    replace_file(&set.pki.ca_file(), &new_ca);
    c.set_secure(set.secure(&[]));
    rolling_restart(&mut c, "new CA only");
    put_everywhere(&c, "new-ca-only");
    let out = c.ctl_with(Ctl::Etcdctl, 0, &["get", "ca/", "--prefix", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
    assert_eq!(
        v["count"].as_u64(),
        Some(writes),
        "every put is there: {out}"
    );

    // A client certificate from the old CA is refused now.
    let mut args: Vec<String> = vec![format!("--cacert={}", set.pki.ca_file().display())];
    args.extend(old_client.flags("cert", "key"));
    args.extend(["get", "k", "--dial-timeout=2s", "--command-timeout=3s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctl(Ctl::Etcdctl, &c.endpoint(0), &args);
    assert_ne!(out.code, 0, "a client of the dropped CA was served: {out}");
}

/// Replaces `path` by writing a temporary file and renaming it over, so a reader never sees
/// half a file.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
