//! Runs oxctl and the real etcdctl side by side against a real etcd and
//! requires identical stdout, stderr and exit status. Skipped (with a note)
//! when `etcd`/`etcdctl` are not installed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Etcd {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_etcd(etcd: &PathBuf) -> Etcd {
    let (client, peer) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("oxctl-test-etcd-{}-{client}", std::process::id()));
    let endpoint = format!("127.0.0.1:{client}");
    let child = Command::new(etcd)
        .args(["--data-dir", dir.to_str().unwrap(), "--name", "default"])
        .args(["--listen-client-urls", &format!("http://{endpoint}")])
        .args(["--advertise-client-urls", &format!("http://{endpoint}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    Etcd {
        child,
        dir,
        endpoint,
    }
}

fn run(bin: &str, ep: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut c = Command::new(bin)
        .arg("--endpoints")
        .arg(ep)
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = c.stdin.take().unwrap().write_all(stdin.as_bytes());
    c.wait_with_output().unwrap()
}

/// etcdctl's client library logs retries as JSON on stderr; oxctl does not.
fn clean_stderr(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .filter(|l| !l.starts_with("{\"level\""))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn outputs_match_etcdctl() {
    let (Some(etcd), Some(etcdctl)) = (which("etcd"), which("etcdctl")) else {
        eprintln!("etcd/etcdctl not installed: skipping the side-by-side comparison");
        return;
    };
    let etcdctl = etcdctl.to_str().unwrap().to_string();
    let oxctl = env!("CARGO_BIN_EXE_oxctl");
    let server = start_etcd(&etcd);
    let ep = server.endpoint.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run(&etcdctl, &ep, &["endpoint", "health"], "")
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "etcd did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (k, v) in [("a", "1"), ("ab", "2"), ("b", "3"), ("foo", "bar\n\"q\"")] {
        assert!(run(oxctl, &ep, &["put", k, v], "").status.success());
    }
    let failing_txn = "val(\"a\") = \"nope\"\n\nput a x\n\nget a\nget --prefix a --keys-only\n\n";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["get", "foo"], ""),
        (vec!["get", "--prefix", "", "-w", "json"], ""),
        (vec!["get", "--prefix", "a", "-w", "fields"], ""),
        (vec!["get", "--prefix", "", "-w", "protobuf"], ""),
        (vec!["get", "--from-key", "ab", "--hex"], ""),
        (
            vec![
                "get",
                "--prefix",
                "",
                "--sort-by",
                "VALUE",
                "--order",
                "DESCEND",
                "--limit",
                "2",
            ],
            "",
        ),
        (vec!["get", "foo", "-w", "table"], ""),
        (vec!["get", "foo", "-w", "bogus"], ""),
        (vec!["get", "--rev", "abc", "foo"], ""),
        (vec!["get", "--rev", "1000", "foo"], ""),
        (vec!["get"], ""),
        (vec!["put"], ""),
        (vec!["put", "--lease", "zz", "a", "b"], ""),
        (vec!["del", "a", "b", "c"], ""),
        (vec!["txn"], failing_txn),
        (vec!["txn", "-w", "json"], failing_txn),
        (vec!["txn"], "mod(k1) > 0\n\n\n\n"),
        (vec!["txn"], "\nfoo a b\n\n\n"),
        (vec!["member", "list", "-w", "table"], ""),
        (vec!["member", "list", "-w", "json"], ""),
        (vec!["lease", "timetolive", "1234"], ""),
        (vec!["lease", "revoke", "xyz"], ""),
        (vec!["compaction", "abc"], ""),
        (vec!["watch", "--prefix", "a", "b"], ""),
        (vec!["bogus"], ""),
    ];
    let mut failures = Vec::new();
    for (args, stdin) in &cases {
        let want = run(&etcdctl, &ep, args, stdin);
        let got = run(oxctl, &ep, args, stdin);
        if want.stdout != got.stdout
            || clean_stderr(&want.stderr) != clean_stderr(&got.stderr)
            || want.status.code() != got.status.code()
        {
            failures.push(format!(
                "{args:?}\n  etcdctl: {:?} {:?} {:?}\n  oxctl:   {:?} {:?} {:?}",
                want.status.code(),
                String::from_utf8_lossy(&want.stdout),
                clean_stderr(&want.stderr),
                got.status.code(),
                String::from_utf8_lossy(&got.stdout),
                clean_stderr(&got.stderr),
            ));
        }
    }
    assert!(failures.is_empty(), "differences:\n{}", failures.join("\n"));
}
