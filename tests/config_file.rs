//! `--config-file`: the same etcd YAML file starts the real etcd and oxcd, with and without TLS;
//! flags and `ETCD_*` variables beside it are ignored as etcd ignores them; bad files fail with
//! etcd's exit codes; and a member under systemd's `Type=notify` sends `READY=1`.

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_process_tests::ctl::{self, Ctl, Output};
use oxcd_process_tests::tls::MtlsSet;
use oxcd_process_tests::{ports, proc, Kind};
use serde_json::Value;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One server started from a configuration file, killed when dropped.
struct Server {
    kind: Kind,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// etcdctl flags that reach it: the endpoint and, for TLS, the client certificate.
    ctl_flags: Vec<String>,
}

impl Server {
    /// A temp dir and two ports; nothing runs yet.
    fn new(kind: Kind) -> Server {
        Server {
            kind,
            dir: tempfile::Builder::new()
                .prefix(&format!("oxcd-test-config-{kind}-"))
                .tempdir()
                .expect("temp dir"),
            client_port: ports::free_port(),
            peer_port: ports::free_port(),
            child: None,
            ctl_flags: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A single-member configuration on this server's ports; `scheme` is "http" or "https".
    fn yaml(&self, scheme: &str, extra: &str) -> String {
        let (c, p) = (self.client_port, self.peer_port);
        format!(
            "name: m1\n\
             data-dir: {data}\n\
             listen-client-urls: {scheme}://127.0.0.1:{c}\n\
             advertise-client-urls: {scheme}://127.0.0.1:{c}\n\
             listen-peer-urls: {scheme}://127.0.0.1:{p}\n\
             initial-advertise-peer-urls: {scheme}://127.0.0.1:{p}\n\
             initial-cluster: m1={scheme}://127.0.0.1:{p}\n\
             initial-cluster-token: file-token\n\
             initial-cluster-state: new\n\
             heartbeat-interval: 50\n\
             election-timeout: 500\n\
             snapshot-count: 5000\n\
             quota-backend-bytes: 104857600\n\
             max-request-bytes: 2097152\n\
             auto-compaction-mode: revision\n\
             auto-compaction-retention: \"100\"\n\
             strict-reconfig-check: true\n\
             enable-v2: false\n\
             logger: zap\n\
             log-level: info\n\
             log-outputs: [stderr]\n\
             {extra}",
            data = self.path("data").display(),
        )
    }

    /// Writes `text` as the configuration file and returns its path.
    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("conf.yml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// The server's command with `args` and `env`, nothing inherited from `ETCD_*`.
    fn command(&self, args: &[String], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(self.kind.bin());
        cmd.args(args).current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") || key == "NOTIFY_SOCKET" {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts it and waits until `member list` answers.
    fn start(&mut self, args: &[String], env: &[(String, String)]) {
        let mut cmd = self.command(args, env);
        cmd.stdin(Stdio::null())
            .stdout(File::create(self.path("out.log")).expect("log"))
            .stderr(File::create(self.path("err.log")).expect("log"));
        proc::isolate(&mut cmd);
        self.child = Some(cmd.spawn().expect("spawn server"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{} exited with {status}\n{}", self.kind, self.logs());
            }
            if self.ctl(&["endpoint", "health"]).code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready\n{}",
                self.kind,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs the server to its exit (it is expected to refuse its configuration).
    fn run_to_exit(&self, args: &[String]) -> Output {
        ctl::run(self.command(args, &[]), None, Duration::from_secs(20))
    }

    /// Runs the real etcdctl against it.
    fn ctl(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = self.ctl_flags.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        let scheme = if self.ctl_flags.is_empty() {
            "http"
        } else {
            "https"
        };
        let endpoint = format!("{scheme}://127.0.0.1:{}", self.client_port);
        ctl::ctl(Ctl::Etcdctl, &endpoint, &all)
    }

    /// `member list -w json` with this server's ports and IDs taken out, for comparing.
    fn members(&self) -> Vec<String> {
        let out = self.ctl(&["member", "list", "-w", "json"]);
        assert_eq!(out.code, 0, "{out}");
        let v: Value = serde_json::from_str(&out.stdout).expect("json");
        v["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                format!("{} {} {}", m["name"], m["peerURLs"], m["clientURLs"])
                    .replace(&format!(":{}", self.client_port), ":CLIENT")
                    .replace(&format!(":{}", self.peer_port), ":PEER")
            })
            .collect()
    }

    fn logs(&self) -> String {
        let read = |n| std::fs::read_to_string(self.path(n)).unwrap_or_default();
        format!(
            "[{} stdout]\n{}[{} stderr]\n{}",
            self.kind,
            read("out.log"),
            self.kind,
            read("err.log")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            proc::kill_group(&mut child);
        }
    }
}

fn config_args(path: &Path) -> Vec<String> {
    vec!["--config-file".into(), path.display().to_string()]
}

/// The same file starts etcd and oxcd alike; flags and variables beside it do not count.
#[test]
fn same_file_starts_etcd_and_oxcd_and_flags_are_ignored() {
    let mut lists = Vec::new();
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let mut s = Server::new(kind);
        let conf = s.write_config(&s.yaml("http", ""));
        let mut args = config_args(&conf);
        // Ignored as etcd ignores them: another name, data dir and token.
        args.extend(
            ["--name", "flag-name", "--data-dir", "flag.etcd"]
                .iter()
                .map(|a| a.to_string()),
        );
        let env = [
            ("ETCD_NAME".to_string(), "env-name".to_string()),
            ("ETCD_INITIAL_CLUSTER_TOKEN".to_string(), "env".to_string()),
            ("ETCD_HEARTBEAT_INTERVAL".to_string(), "bogus".to_string()),
        ];
        s.start(&args, &env);
        let members = s.members();
        assert!(members[0].starts_with("\"m1\""), "{kind}: {members:?}");
        assert!(
            s.path("data/member").is_dir(),
            "{kind}: the file's data dir"
        );
        assert!(!s.path("flag.etcd").exists(), "{kind}: the flag's data dir");
        let put = s.ctl(&["put", "k", "v"]);
        assert_eq!(put.code, 0, "{kind}: {put}");
        let logs = s.logs();
        // Both log it in the same words (etcd with `logger: zap`).
        let said = "loaded server configuration, other configuration command line flags and \
                    environment variables will be ignored if provided";
        assert!(logs.contains(said), "{kind}\n{logs}");
        if kind == Kind::Oxcd {
            assert!(
                logs.contains("configuration key not supported by oxcd; ignored")
                    && logs.contains("\"key\":\"enable-v2\""),
                "{logs}"
            );
        }
        lists.push(members);
    }
    assert_eq!(lists[0], lists[1], "etcd vs oxcd member list");
}

/// `ETCD_CONFIG_FILE` names the file when the flag does not.
#[test]
fn config_file_from_environment() {
    let mut s = Server::new(Kind::Oxcd);
    let conf = s.write_config(&s.yaml("http", ""));
    s.start(
        &[],
        &[("ETCD_CONFIG_FILE".to_string(), conf.display().to_string())],
    );
    assert!(s.members()[0].starts_with("\"m1\""));
    assert!(s.path("data/member").is_dir());
}

/// Client and peer TLS from the nested security blocks, the same on both servers.
#[test]
fn tls_blocks() {
    let mut lists = Vec::new();
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let mut s = Server::new(kind);
        let pki = MtlsSet::new(s.dir.path());
        let ca = pki.pki.ca_file().display().to_string();
        let block = |name: &str, files: &oxcd_process_tests::tls::Files| {
            format!(
                "{name}:\n  cert-file: {}\n  key-file: {}\n  client-cert-auth: true\n  \
                 trusted-ca-file: {ca}\n  auto-tls: false\n",
                files.cert.display(),
                files.key.display()
            )
        };
        let extra = block("client-transport-security", &pki.server)
            + &block("peer-transport-security", &pki.peer);
        let conf = s.write_config(&s.yaml("https", &extra));
        s.ctl_flags = pki.ctl_flags();
        s.start(&config_args(&conf), &[]);
        let put = s.ctl(&["put", "k", "v"]);
        assert_eq!(put.code, 0, "{kind}: {put}");
        // client-cert-auth: a client without a certificate is refused.
        let bare = ctl::ctl(
            Ctl::Etcdctl,
            &format!("https://127.0.0.1:{}", s.client_port),
            &[
                &format!("--cacert={ca}"),
                "--dial-timeout=2s",
                "--command-timeout=3s",
                "get",
                "k",
            ],
        );
        assert_ne!(bare.code, 0, "{kind}: {bare}");
        lists.push(s.members());
    }
    assert!(lists[0][0].contains("https://127.0.0.1:PEER"), "{lists:?}");
    assert_eq!(lists[0], lists[1], "etcd vs oxcd member list");
}

/// Bad files stop both servers with the same exit code; oxcd names the key.
#[test]
fn bad_files_fail_like_etcd() {
    let cases: &[(&str, &str, &str)] = &[
        // (what, file text, what oxcd's error says)
        (
            "bad value",
            "heartbeat-interval: abc\n",
            r#"invalid value "abc" for key "heartbeat-interval""#,
        ),
        (
            "wrong type",
            "strict-reconfig-check: 1\n",
            r#"key "strict-reconfig-check": expected true or false"#,
        ),
        ("bad YAML", "name: [1\n", "invalid YAML"),
        (
            "failed validation",
            "election-timeout: 10\n",
            "--election-timeout[10ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        ),
    ];
    for (what, text, says) in cases {
        let mut codes = Vec::new();
        for kind in [Kind::Etcd, Kind::Oxcd] {
            let s = Server::new(kind);
            let conf = s.write_config(text);
            let out = s.run_to_exit(&config_args(&conf));
            assert!(!out.timed_out, "{kind} {what}: still running\n{out}");
            assert!(
                out.stderr.contains("error verifying flags"),
                "{kind} {what}: {out}"
            );
            if kind == Kind::Oxcd {
                assert!(out.stderr.contains(says), "{what}: {out}");
            }
            codes.push(out.code);
        }
        assert_eq!(codes, [1, 1], "{what}: exit codes of etcd, oxcd");
    }
    // A missing file, and a bad flag beside a good file (the command line is still parsed).
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let s = Server::new(kind);
        let out = s.run_to_exit(&config_args(&s.path("missing.yml")));
        assert_eq!(out.code, 1, "{kind}: {out}");
        assert!(out.stderr.contains("missing.yml"), "{kind}: {out}");
        let conf = s.write_config(&s.yaml("http", ""));
        let mut args = config_args(&conf);
        args.push("--bogus-flag".into());
        let out = s.run_to_exit(&args);
        assert_eq!(out.code, 2, "{kind}: {out}");
    }
    // etcd 3.4 ignores an unknown key silently; oxcd refuses it so a typo cannot go unnoticed.
    let s = Server::new(Kind::Oxcd);
    let conf = s.write_config(&s.yaml("http", "data-dri: /tmp/typo\n"));
    let out = s.run_to_exit(&config_args(&conf));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains(r#"unknown key "data-dri""#), "{out}");
}

/// Under `Type=notify` both servers send READY=1 on `NOTIFY_SOCKET` once they serve clients.
#[test]
fn ready_notification() {
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let mut s = Server::new(kind);
        let socket_path = s.path("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(READY_TIMEOUT))
            .expect("timeout");
        let conf = s.write_config(&s.yaml("http", ""));
        let env = [(
            "NOTIFY_SOCKET".to_string(),
            socket_path.display().to_string(),
        )];
        s.start(&config_args(&conf), &env);
        let mut buf = [0u8; 256];
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{kind}: no notification: {e}\n{}", s.logs()));
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.lines().any(|l| l == "READY=1"), "{kind}: {got:?}");
    }
}
