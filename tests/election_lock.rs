//! Election and lock: `oxctl elect`/`lock` and the real `etcdctl elect`/`lock` mixed against one
//! server, run against oxcd and against a real etcd with the same expectations (the same
//! observable outcome): one leader at a time, leadership passing on resign and when the leader's
//! process is killed (its lease expires), observers seeing every leader; mutual exclusion of
//! commands run under `lock NAME -- cmd`, the lock passing on when its holder dies; a revoked
//! session ending `elect` and `lock` with etcdctl's errors; and the Election/Lock gRPC services'
//! answers to misuse compared with etcd's.
//!
//! Waits are bounded polls; no duration is asserted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_api::v3electionpb::election_client::ElectionClient;
use oxcd_api::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use oxcd_api::v3lockpb::lock_client::LockClient;
use oxcd_api::v3lockpb::{LockRequest, UnlockRequest};
use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::ctl::{command, ctl, Ctl};
use oxcd_process_tests::member::{Kind, Member};
use oxcd_process_tests::proc;

/// Bound on any wait for something that should happen (a lease of 60 s expiring included).
const PATIENCE: Duration = Duration::from_secs(120);

/// A ctl process in the background with its output in files.
struct Proc {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    label: String,
}

impl Proc {
    fn spawn(dir: &Path, label: &str, which: Ctl, endpoint: &str, args: &[&str]) -> Proc {
        let out = dir.join(format!("{label}.out"));
        let err = dir.join(format!("{label}.err"));
        let mut cmd = command(which, endpoint, args);
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"));
        proc::isolate(&mut cmd);
        let child = cmd.spawn().expect("spawn ctl");
        Proc {
            child,
            out,
            err,
            label: label.to_string(),
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, sig: i32) {
        proc::signal_group(&self.child, sig);
    }

    /// Waits for the exit code.
    fn wait_exit(&mut self) -> i32 {
        match proc::wait_timeout(&mut self.child, PATIENCE) {
            Some(s) => s.code().unwrap_or(-1),
            None => panic!("{} did not exit; stderr: {}", self.label, self.stderr()),
        }
    }

    fn kill9(&mut self) {
        proc::kill_group(&mut self.child);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        proc::kill_group(&mut self.child);
    }
}

/// Polls `cond` until it holds; panics with `what` after [`PATIENCE`].
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The values (every second line) of `key\nvalue\n` pairs printed by `elect`.
fn values(out: &str) -> Vec<String> {
    out.lines().skip(1).step_by(2).map(str::to_string).collect()
}

/// The campaign's leader key once it leads: its first line.
fn elected(p: &Proc) -> bool {
    p.stdout().lines().count() >= 2
}

fn elect_scenario(kind: Kind) {
    let m = Member::start(kind);
    let ep = m.endpoint();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let mut obs_ox = Proc::spawn(d, "obs-oxctl", Ctl::Oxctl, &ep, &["elect", "-l", "job"]);
    let mut obs_etcd = Proc::spawn(d, "obs-etcdctl", Ctl::Etcdctl, &ep, &["elect", "-l", "job"]);

    let mut c1 = Proc::spawn(d, "c1", Ctl::Oxctl, &ep, &["elect", "job", "p1"]);
    until("c1 to lead", || elected(&c1));
    let key1 = c1.stdout().lines().next().unwrap().to_string();
    assert!(key1.starts_with("job/"), "{key1}");
    assert_eq!(values(&c1.stdout()), ["p1"]);

    let candidates = || {
        ctl(
            Ctl::Etcdctl,
            &ep,
            &["get", "job/", "--prefix", "--keys-only"],
        )
        .stdout
        .lines()
        .filter(|l| !l.is_empty())
        .count()
    };
    // Queued in this order (two, then three candidate keys) while c1 leads.
    let mut c2 = Proc::spawn(d, "c2", Ctl::Etcdctl, &ep, &["elect", "job", "p2"]);
    until("two candidates", || candidates() == 2);
    let mut c3 = Proc::spawn(d, "c3", Ctl::Oxctl, &ep, &["elect", "job", "p3"]);
    until("three candidates", || candidates() == 3);
    let leader = ctl(
        Ctl::Oxctl,
        &ep,
        &["get", "job/", "--prefix", "--limit=1", "--sort-by=CREATE"],
    );
    assert_eq!(values(&leader.stdout), ["p1"]);
    assert!(
        !elected(&c2) && !elected(&c3),
        "a second leader while c1 leads"
    );

    // c1 resigns (interrupt): c2 (the older candidate) leads next.
    c1.signal(libc::SIGINT);
    assert_eq!(c1.wait_exit(), 0, "c1: {}", c1.stderr());
    until("c2 to lead", || elected(&c2));
    assert_eq!(values(&c2.stdout()), ["p2"]);
    assert!(!elected(&c3), "c3 leads together with c2");

    // c2's process dies: its lease expires (etcdctl's session TTL), then c3 leads.
    c2.kill9();
    until("c3 to lead", || elected(&c3));
    assert_eq!(values(&c3.stdout()), ["p3"]);

    until("observers to see p3", || {
        values(&obs_ox.stdout()).last().map(String::as_str) == Some("p3")
            && values(&obs_etcd.stdout()).last().map(String::as_str) == Some("p3")
    });
    for obs in [&obs_ox, &obs_etcd] {
        assert_eq!(values(&obs.stdout()), ["p1", "p2", "p3"], "{}", obs.label);
    }
    c3.signal(libc::SIGINT);
    assert_eq!(c3.wait_exit(), 0, "c3: {}", c3.stderr());
    for obs in [&mut obs_ox, &mut obs_etcd] {
        assert!(obs.running(), "{} ended: {}", obs.label, obs.stderr());
        obs.signal(libc::SIGINT);
        assert_eq!(obs.wait_exit(), 0, "{}: {}", obs.label, obs.stderr());
    }
}

/// A command run under the lock: records its start and end and notices if another holder is
/// inside (mkdir is atomic).
const CRITICAL: &str = r#"
mkdir "$DIR/busy" 2>/dev/null || echo OVERLAP >> "$DIR/log"
echo "in $ETCD_LOCK_KEY $ETCD_LOCK_REV" >> "$DIR/log"
sleep 0.2
echo out >> "$DIR/log"
rmdir "$DIR/busy"
"#;

/// Four processes (oxctl and etcdctl, the k-th on `endpoints[k % len]`) run [`CRITICAL`] under
/// one lock three times each: never two inside at once, every round run.
fn mutual_exclusion(endpoints: &[String], d: &Path) {
    let rounds = 3;
    let clients = [Ctl::Oxctl, Ctl::Etcdctl, Ctl::Oxctl, Ctl::Etcdctl];
    let workers: Vec<std::thread::JoinHandle<Vec<i32>>> = clients
        .into_iter()
        .enumerate()
        .map(|(k, which)| {
            let (ep, d) = (endpoints[k % endpoints.len()].clone(), d.to_path_buf());
            std::thread::spawn(move || {
                (0..rounds)
                    .map(|_| {
                        let mut cmd: Command =
                            command(which, &ep, &["lock", "mutex", "--", "sh", "-c", CRITICAL]);
                        cmd.env("DIR", &d);
                        let out = oxcd_process_tests::ctl::run(cmd, None, PATIENCE);
                        assert!(!out.timed_out, "{which} lock timed out: {out}");
                        out.code
                    })
                    .collect()
            })
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().expect("worker"), vec![0; rounds]);
    }
    let log = std::fs::read_to_string(d.join("log")).expect("log");
    assert!(!log.contains("OVERLAP"), "two holders at once:\n{log}");
    let ins: Vec<&str> = log.lines().filter(|l| l.starts_with("in ")).collect();
    assert_eq!(ins.len(), 4 * rounds, "{log}");
    for l in &ins {
        let f: Vec<&str> = l.split(' ').collect();
        assert!(
            f[1].starts_with("mutex/") && f[2].parse::<i64>().is_ok(),
            "{l}"
        );
    }
    // Strictly alternating: every "in" is followed by its "out".
    let seq: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(seq.chunks(2).all(|p| p == ["in", "out"]), "{log}");
}

fn lock_scenario(kind: Kind) {
    let m = Member::start(kind);
    let ep = m.endpoint();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_path_buf();
    mutual_exclusion(std::slice::from_ref(&ep), &d);

    // A holder that dies releases the lock once its lease (--ttl) expires, whichever client.
    for (holder_ctl, waiter_ctl) in [(Ctl::Oxctl, Ctl::Etcdctl), (Ctl::Etcdctl, Ctl::Oxctl)] {
        let name = format!("held-{holder_ctl}");
        let mut holder = Proc::spawn(
            &d,
            &format!("{name}-holder"),
            holder_ctl,
            &ep,
            &["lock", "--ttl=2", &name],
        );
        until("the holder to hold", || {
            holder.stdout().starts_with(&format!("{name}/"))
        });
        let waiter = Proc::spawn(
            &d,
            &format!("{name}-waiter"),
            waiter_ctl,
            &ep,
            &["lock", &name, "--", "echo", "got it"],
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            waiter.stdout(),
            "",
            "the waiter ran while the lock was held"
        );
        holder.kill9();
        until("the waiter to get the lock", || {
            waiter.stdout() == "got it\n"
        });
    }

    // A revoked session ends a holding `lock` and a leading `elect` with etcdctl's errors.
    for which in [Ctl::Oxctl, Ctl::Etcdctl] {
        let mut l = Proc::spawn(&d, &format!("rv-lock-{which}"), which, &ep, &["lock", "rv"]);
        let mut e = Proc::spawn(
            &d,
            &format!("rv-elect-{which}"),
            which,
            &ep,
            &["elect", "rv-e", "v"],
        );
        until("lock and election held", || {
            l.stdout().starts_with("rv/") && elected(&e)
        });
        let leases = ctl(Ctl::Etcdctl, &ep, &["lease", "list"]).stdout;
        for id in leases.lines().skip(1) {
            ctl(Ctl::Etcdctl, &ep, &["lease", "revoke", id]);
        }
        assert_eq!(l.wait_exit(), 1);
        assert_eq!(l.stderr(), "Error: session expired\n", "{which}");
        assert_eq!(e.wait_exit(), 1);
        assert_eq!(e.stderr(), "Error: elect: session expired\n", "{which}");
    }
}

/// Three members: lock holders and election candidates on different members.
fn cluster_scenario(kind: Kind) {
    let c = Cluster::start(kind, 3);
    let eps: Vec<String> = (0..3).map(|i| c.endpoint(i)).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    mutual_exclusion(&eps, dir.path());
    let d = dir.path();
    let mut obs = Proc::spawn(d, "obs", Ctl::Oxctl, &eps[2], &["elect", "-l", "job"]);
    let mut c1 = Proc::spawn(d, "c1", Ctl::Etcdctl, &eps[0], &["elect", "job", "p1"]);
    until("c1 to lead", || elected(&c1));
    let mut c2 = Proc::spawn(d, "c2", Ctl::Oxctl, &eps[1], &["elect", "job", "p2"]);
    until("two candidates", || {
        ctl(
            Ctl::Etcdctl,
            &eps[2],
            &["get", "job/", "--prefix", "--keys-only"],
        )
        .stdout
        .lines()
        .filter(|l| !l.is_empty())
        .count()
            == 2
    });
    assert!(!elected(&c2), "a second leader while c1 leads");
    c1.signal(libc::SIGINT);
    assert_eq!(c1.wait_exit(), 0, "c1: {}", c1.stderr());
    until("c2 to lead", || elected(&c2));
    until("the observer to see p2", || {
        values(&obs.stdout()) == ["p1", "p2"]
    });
    c2.signal(libc::SIGINT);
    assert_eq!(c2.wait_exit(), 0, "c2: {}", c2.stderr());
    obs.signal(libc::SIGINT);
    assert_eq!(obs.wait_exit(), 0, "obs: {}", obs.stderr());
}

/// The services' answers to misuse, as `OK`/`ERR <code> <message>` lines.
fn grpc_scenario(kind: Kind) -> Vec<String> {
    let m = Member::start(kind);
    let url = m.client_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ch = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let mut e = ElectionClient::new(ch.clone());
        let mut l = LockClient::new(ch);
        fn show<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
            match r {
                Ok(_) => "OK".into(),
                Err(s) => format!("ERR {:?} {}", s.code(), s.message()),
            }
        }
        let bogus = LeaderKey {
            name: b"e".to_vec(),
            key: b"e/1234".to_vec(),
            rev: 1,
            lease: 0x1234,
        };
        let mut out = vec![
            show(
                e.leader(LeaderRequest {
                    name: b"e".to_vec(),
                })
                .await,
            ),
            show(
                e.proclaim(ProclaimRequest {
                    leader: Some(bogus.clone()),
                    value: b"v".to_vec(),
                })
                .await,
            ),
            show(
                e.proclaim(ProclaimRequest {
                    leader: None,
                    value: b"v".to_vec(),
                })
                .await,
            ),
            show(e.resign(ResignRequest { leader: None }).await),
            show(
                e.resign(ResignRequest {
                    leader: Some(bogus),
                })
                .await,
            ),
            show(
                e.campaign(CampaignRequest {
                    name: b"e".to_vec(),
                    lease: 0x1234,
                    value: b"v".to_vec(),
                })
                .await,
            ),
            show(
                l.lock(LockRequest {
                    name: b"l".to_vec(),
                    lease: 0x1234,
                })
                .await,
            ),
            show(
                l.unlock(UnlockRequest {
                    key: b"l/none".to_vec(),
                })
                .await,
            ),
        ];
        // A real campaign with a lease: Leader answers its key and value; Proclaim changes the
        // value; Resign ends it.
        let lease = ctl(Ctl::Etcdctl, &m.endpoint(), &["lease", "grant", "100"]).stdout;
        let lease = i64::from_str_radix(lease.split(' ').nth(1).expect("lease id"), 16).unwrap();
        let won = e
            .campaign(CampaignRequest {
                name: b"e".to_vec(),
                lease,
                value: b"v1".to_vec(),
            })
            .await
            .expect("campaign")
            .into_inner()
            .leader
            .expect("leader key");
        out.push(format!(
            "key is e/<lease>: {}",
            won.key == format!("e/{lease:x}").into_bytes()
        ));
        out.push(show(
            e.proclaim(ProclaimRequest {
                leader: Some(won.clone()),
                value: b"v2".to_vec(),
            })
            .await,
        ));
        let kv = e
            .leader(LeaderRequest {
                name: b"e".to_vec(),
            })
            .await
            .expect("leader")
            .into_inner()
            .kv
            .unwrap();
        out.push(format!(
            "leader value {}",
            String::from_utf8_lossy(&kv.value)
        ));
        out.push(show(
            e.resign(ResignRequest {
                leader: Some(won.clone()),
            })
            .await,
        ));
        out.push(show(
            e.proclaim(ProclaimRequest {
                leader: Some(won),
                value: b"v3".to_vec(),
            })
            .await,
        ));
        out.push(show(
            e.leader(LeaderRequest {
                name: b"e".to_vec(),
            })
            .await,
        ));
        let locked = l
            .lock(LockRequest {
                name: b"l".to_vec(),
                lease,
            })
            .await
            .expect("lock")
            .into_inner();
        out.push(format!(
            "lock key is l/<lease>: {}",
            locked.key == format!("l/{lease:x}").into_bytes()
        ));
        out.push(show(l.unlock(UnlockRequest { key: locked.key }).await));
        out
    })
}

const GRPC_EXPECTED: &[&str] = &[
    "ERR Unknown election: no leader",
    "ERR Unknown election: not leader",
    "ERR Unknown \"leader\" field must be provided",
    "ERR Unknown \"leader\" field must be provided",
    "OK",
    "ERR Unknown etcdserver: requested lease not found",
    "ERR Unknown etcdserver: requested lease not found",
    "OK",
    "key is e/<lease>: true",
    "OK",
    "leader value v2",
    "OK",
    "ERR Unknown election: not leader",
    "ERR Unknown election: no leader",
    "lock key is l/<lease>: true",
    "OK",
];

mod oxcd {
    use super::*;

    #[test]
    fn elect() {
        elect_scenario(Kind::Oxcd);
    }

    #[test]
    fn lock() {
        lock_scenario(Kind::Oxcd);
    }

    #[test]
    fn grpc() {
        assert_eq!(grpc_scenario(Kind::Oxcd), GRPC_EXPECTED);
    }

    #[test]
    fn cluster() {
        cluster_scenario(Kind::Oxcd);
    }
}

mod etcd {
    use super::*;

    #[test]
    fn elect() {
        elect_scenario(Kind::Etcd);
    }

    #[test]
    fn lock() {
        lock_scenario(Kind::Etcd);
    }

    #[test]
    fn grpc() {
        assert_eq!(grpc_scenario(Kind::Etcd), GRPC_EXPECTED);
    }

    #[test]
    fn cluster() {
        cluster_scenario(Kind::Etcd);
    }
}
