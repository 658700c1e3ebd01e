//! `make-mirror`: oxctl (and the real etcdctl) mirroring one single-member cluster to another,
//! oxcd and etcd 3.4 on either side. Keys written before the mirror starts (the initial copy)
//! and while it runs (the watch: puts, overwrites, deletes, a txn putting and deleting in one
//! revision) must end up on the destination exactly as on the source, under `--prefix` and
//! `--dest-prefix` / `--no-dest-prefix` too. Like etcdctl, the mirror prints how many keys it
//! synced every 30 seconds and dies of the SIGTERM that stops it.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oxcd_process_tests::b64;
use oxcd_process_tests::ctl::{self, Ctl};
use oxcd_process_tests::member::{Kind, Member};
use oxcd_process_tests::proc;

type Kvs = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every key and value of a member, read with the real etcdctl.
fn all_kvs(m: &Member) -> Kvs {
    let out = m.etcdctl(&["get", "", "--prefix", "-w", "json"]);
    assert_eq!(out.code, 0, "get failed on {}: {out}", m.kind);
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("get json");
    let mut kvs = Kvs::new();
    for kv in json["kvs"].as_array().cloned().unwrap_or_default() {
        let field = |name: &str| b64::decode(kv[name].as_str().unwrap_or("")).expect("base64");
        kvs.insert(field("key"), field("value"));
    }
    kvs
}

/// The source's keys under `prefix`, renamed as the mirror writes them on the destination.
fn expected(src: &Member, prefix: &str, dest_prefix: &str) -> Kvs {
    all_kvs(src)
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix.as_bytes()))
        .map(|(k, v)| {
            let mut key = dest_prefix.as_bytes().to_vec();
            key.extend_from_slice(&k[prefix.len()..]);
            (key, v)
        })
        .collect()
}

fn show(kvs: &Kvs) -> String {
    kvs.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls until the destination holds `want` (at most 20 seconds).
fn wait_synced(dst: &Member, want: &Kvs, mirror: &mut Mirror) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = all_kvs(dst);
        if &got == want {
            return;
        }
        if Instant::now() >= deadline || mirror.exited() {
            panic!(
                "destination never matched\nwant: {}\ngot:  {}\nmirror stdout: {}\nmirror stderr: {}",
                show(want),
                show(&got),
                mirror.stdout(),
                mirror.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running `make-mirror`, its output in temp files, stopped by its pid.
struct Mirror {
    child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

impl Mirror {
    fn start(tool: Ctl, src: &Member, dst: &Member, opts: &[&str]) -> Mirror {
        let mut args = vec!["make-mirror"];
        args.extend_from_slice(opts);
        let dest = dst.endpoint();
        args.push(&dest);
        let mut cmd = ctl::command(tool, &src.endpoint(), &args);
        let out = tempfile::NamedTempFile::new().expect("temp file");
        let err = tempfile::NamedTempFile::new().expect("temp file");
        cmd.stdin(Stdio::null())
            .stdout(out.reopen().expect("reopen"))
            .stderr(err.reopen().expect("reopen"));
        proc::isolate(&mut cmd);
        let child = cmd.spawn().expect("spawn make-mirror");
        Mirror { child, out, err }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.err.path()).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM to this process (by its pid), then its exit status.
    fn terminate(&mut self) -> ExitStatus {
        // SAFETY: plain syscall on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        proc::wait_timeout(&mut self.child, Duration::from_secs(10))
            .expect("make-mirror did not exit on SIGTERM")
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        proc::kill_group(&mut self.child);
    }
}

fn put(m: &Member, key: &str, value: &str) {
    let out = m.etcdctl(&["put", key, value]);
    assert_eq!(out.code, 0, "put {key}: {out}");
}

fn del(m: &Member, key: &str) {
    let out = m.etcdctl(&["del", key]);
    assert_eq!(out.code, 0, "del {key}: {out}");
}

/// Writes before the mirror starts: after them the source holds a/1=x2 and b/1=z.
fn write_before(src: &Member) {
    put(src, "a/1", "x");
    put(src, "a/2", "y");
    put(src, "b/1", "z");
    put(src, "a/1", "x2");
    del(src, "a/2");
}

/// Writes while the mirror runs: 6 events (a delete of a missing key makes none).
fn write_during(src: &Member) {
    put(src, "a/3", "v3");
    put(src, "a/1", "x3");
    del(src, "b/1");
    put(src, "b/2", "q");
    let out = src.ctl_stdin(Ctl::Etcdctl, &["txn"], "\nput a/4 t\ndel a/3\n\n\n");
    assert_eq!(out.code, 0, "txn: {out}");
    del(src, "a/none");
    put(src, "a/5", "with space");
}

/// Keys synced by the whole-keyspace run: 2 in the initial copy, 7 events (in 6 revisions).
const FULL_TOTAL: &str = "9";

/// Mirrors `src` to `dst` with `opts`; checks the destination after the initial copy and after
/// the live writes, then (with `count`) the total printed at 30 seconds, then the SIGTERM exit.
fn run_mirror(
    tool: Ctl,
    src_kind: Kind,
    dst_kind: Kind,
    opts: &[&str],
    prefix: &str,
    dest_prefix: &str,
    count: Option<&str>,
) {
    let src = Member::start(src_kind);
    let dst = Member::start(dst_kind);
    write_before(&src);
    let dst_rev = dst.revision();
    let started = Instant::now();
    let mut mirror = Mirror::start(tool, &src, &dst, opts);
    wait_synced(&dst, &expected(&src, prefix, dest_prefix), &mut mirror);
    write_during(&src);
    wait_synced(&dst, &expected(&src, prefix, dest_prefix), &mut mirror);
    if let Some(total) = count {
        // One put per key copied, then one txn per source revision (the txn's put and delete
        // stay together): 2 + 6 revisions on the destination.
        assert_eq!(dst.revision() - dst_rev, 8, "destination revisions");
        let deadline = started + Duration::from_secs(45);
        while mirror.stdout().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        let printed = mirror.stdout();
        assert_eq!(
            printed.lines().next(),
            Some(total),
            "{tool} make-mirror should print the keys synced after 30s; stderr: {}",
            mirror.stderr()
        );
    } else {
        assert_eq!(mirror.stdout(), "", "nothing printed before 30s");
    }
    let status = mirror.terminate();
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "{tool} make-mirror dies of SIGTERM like etcdctl: {status:?}, stderr: {}",
        mirror.stderr()
    );
    assert_eq!(mirror.stderr(), "", "{tool} make-mirror stderr");
}

/// The whole key space from one oxcd to another.
fn whole_oxcd_to_oxcd(tool: Ctl) {
    run_mirror(tool, Kind::Oxcd, Kind::Oxcd, &[], "", "", Some(FULL_TOTAL));
}

#[test]
fn oxctl_oxcd_to_oxcd() {
    whole_oxcd_to_oxcd(Ctl::Oxctl);
}

#[test]
fn etcdctl_oxcd_to_oxcd() {
    whole_oxcd_to_oxcd(Ctl::Etcdctl);
}

#[test]
fn oxctl_etcd_to_oxcd_dest_prefix() {
    run_mirror(
        Ctl::Oxctl,
        Kind::Etcd,
        Kind::Oxcd,
        &["--prefix", "a/", "--dest-prefix", "c/"],
        "a/",
        "c/",
        None,
    );
}

#[test]
fn oxctl_oxcd_to_etcd_no_dest_prefix() {
    run_mirror(
        Ctl::Oxctl,
        Kind::Oxcd,
        Kind::Etcd,
        &["--prefix=a/", "--no-dest-prefix"],
        "a/",
        "",
        None,
    );
}

#[test]
fn oxctl_oxcd_to_etcd_same_prefix() {
    run_mirror(
        Ctl::Oxctl,
        Kind::Oxcd,
        Kind::Etcd,
        &["--prefix", "b/"],
        "b/",
        "b/",
        None,
    );
}

/// Argument errors: the same text and exit code as etcdctl.
#[test]
fn argument_errors_like_etcdctl() {
    let src = Member::start(Kind::Oxcd);
    let dest = src.endpoint();
    for args in [
        vec!["make-mirror"],
        vec!["make-mirror", "a", "b"],
        vec![
            "make-mirror",
            "--dest-prefix",
            "x/",
            "--no-dest-prefix",
            &dest,
        ],
    ] {
        let want = src.ctl(Ctl::Etcdctl, &args);
        let got = src.ctl(Ctl::Oxctl, &args);
        assert_eq!(want.code, 128, "etcdctl {args:?}: {want}");
        assert_eq!(
            (got.code, got.stdout, got.stderr),
            (want.code, want.stdout, want.stderr),
            "oxctl {args:?}"
        );
    }
}
