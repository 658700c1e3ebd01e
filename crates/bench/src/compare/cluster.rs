//! A 3-member cluster of etcd or oxcd on loopback, every member with the very same flags:
//!
//! ```text
//! --name mN --data-dir <dir>/mN
//! --listen-client-urls http://127.0.0.1:C --advertise-client-urls http://127.0.0.1:C
//! --listen-peer-urls http://127.0.0.1:P --initial-advertise-peer-urls http://127.0.0.1:P
//! --initial-cluster m1=http://127.0.0.1:P1,m2=...,m3=...
//! --initial-cluster-token oxbench-compare --initial-cluster-state new
//! --logger zap --log-level warn
//! ```
//!
//! and everything else (quota, snapshot count, heartbeat, election timeout) at its default.
//! Ports are free ones the kernel hands out for port 0. A member's output goes to
//! `<dir>/logs/mN-K.log` (K counts its runs). Dropping the cluster kills what still runs.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::{RangeRequest, StatusRequest, StatusResponse};
use tonic::transport::{Channel, Endpoint};

use super::procs;

/// Members per cluster.
pub const MEMBERS: usize = 3;
/// How long a fresh cluster may take to elect a leader and serve.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a member may take to exit after `SIGTERM`.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
    runs: u32,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    pub members: Vec<Member>,
    /// For the gRPC probes.
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// Starts the members under `dir` and waits until they have a leader and serve; on new
    /// ports when another process took one of the free ones first.
    pub fn start(bin: &Path, dir: &Path) -> Result<Cluster, String> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Cluster::start_once(bin, dir) {
                Err(e) if tries < 3 && e.contains("in use") => {
                    let _ = std::fs::remove_dir_all(dir);
                }
                r => return r,
            }
        }
    }

    fn start_once(bin: &Path, dir: &Path) -> Result<Cluster, String> {
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let mut ports = free_ports(2 * MEMBERS)?.into_iter();
        let members = (1..=MEMBERS)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports.next().unwrap_or_default(),
                peer_port: ports.next().unwrap_or_default(),
                data_dir: dir.join(format!("m{i}")),
                child: None,
                runs: 0,
            })
            .collect();
        let mut c = Cluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            members,
            rt,
        };
        for i in 0..MEMBERS {
            c.spawn(i)?;
        }
        c.wait_ready(READY_TIMEOUT)?;
        Ok(c)
    }

    fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let flags = [
            ("--name", m.name.clone()),
            ("--data-dir", m.data_dir.display().to_string()),
            ("--listen-client-urls", client.clone()),
            ("--advertise-client-urls", client),
            ("--listen-peer-urls", peer.clone()),
            ("--initial-advertise-peer-urls", peer),
            ("--initial-cluster", initial.join(",")),
            ("--initial-cluster-token", "oxbench-compare".to_string()),
            ("--initial-cluster-state", "new".to_string()),
            ("--logger", "zap".to_string()),
            ("--log-level", "warn".to_string()),
        ];
        flags
            .into_iter()
            .flat_map(|(f, v)| [f.to_string(), v])
            .collect()
    }

    /// Starts member `i` (again) with its flags.
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        let args = self.args(i);
        let m = &mut self.members[i];
        m.runs += 1;
        let log = self
            .dir
            .join("logs")
            .join(format!("{}-{}.log", m.name, m.runs));
        let out = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&args).stdin(Stdio::null()).stdout(out).stderr(err);
        // Both servers read ETCD_* variables as flags: the same settings means none of them.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let child =
            procs::spawn(&mut cmd).map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        m.child = Some(child);
        Ok(())
    }

    /// Stops member `i` with `SIGTERM` and waits for it to exit.
    pub fn stop(&mut self, i: usize) -> Result<(), String> {
        let Some(mut child) = self.members[i].child.take() else {
            return Ok(());
        };
        procs::signal(&child, libc::SIGTERM);
        if procs::wait(&mut child, STOP_TIMEOUT).is_none() {
            procs::kill(&mut child);
            return Err(format!(
                "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed)",
                self.members[i].name
            ));
        }
        Ok(())
    }

    /// Stops every member with `SIGTERM` (and `SIGKILL` when one takes too long).
    pub fn stop_all(&mut self) {
        for m in &self.members {
            if let Some(c) = &m.child {
                procs::signal(c, libc::SIGTERM);
            }
        }
        for i in 0..MEMBERS {
            let _ = self.stop(i);
        }
    }

    /// An error naming the member that exited, if one did, with its log's tail.
    fn check_alive(&mut self) -> Result<(), String> {
        for i in 0..MEMBERS {
            let Some(child) = self.members[i].child.as_mut() else {
                continue;
            };
            if let Some(status) = procs::try_reap(child) {
                self.members[i].child = None;
                let m = &self.members[i];
                let log = self
                    .dir
                    .join("logs")
                    .join(format!("{}-{}.log", m.name, m.runs));
                return Err(format!(
                    "{} exited ({status}); log tail: {}",
                    m.name,
                    tail(&log)
                ));
            }
        }
        Ok(())
    }

    /// Waits until every member reports the same leader and the leader serves a
    /// linearizable read.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let last = match self.leader() {
                Ok(l) => match self.range(l, b"foo", false) {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("cluster not ready after {timeout:?}: {last}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Status of member `i`.
    pub fn status(&self, i: usize) -> Result<StatusResponse, String> {
        let ep = self.members[i].endpoint();
        self.rt.block_on(async {
            let ch = channel(&ep).await?;
            MaintenanceClient::new(ch)
                .status(StatusRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|s| format!("{ep}: {}", s.message()))
        })
    }

    /// The index of the leader all members agree on.
    pub fn leader(&self) -> Result<usize, String> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for i in 0..MEMBERS {
            let st = self.status(i)?;
            ids.push(st.header.map_or(0, |h| h.member_id));
            leaders.push(st.leader);
        }
        let l = leaders[0];
        if l == 0 || leaders.iter().any(|x| *x != l) {
            return Err(format!("no agreed leader yet: {leaders:x?}"));
        }
        ids.iter()
            .position(|id| *id == l)
            .ok_or_else(|| format!("leader {l:x} is no member"))
    }

    /// A member that is not the leader.
    pub fn follower(&self) -> Result<usize, String> {
        let l = self.leader()?;
        Ok((l + 1) % MEMBERS)
    }

    /// A Range of `key` on member `i` alone.
    pub fn range(&self, i: usize, key: &[u8], serializable: bool) -> Result<(), String> {
        let ep = self.members[i].endpoint();
        self.rt.block_on(async {
            let ch = channel(&ep).await?;
            let req = RangeRequest {
                key: key.to_vec(),
                serializable,
                ..Default::default()
            };
            KvClient::new(ch)
                .range(req)
                .await
                .map(|_| ())
                .map_err(|s| format!("{ep}: {}", s.message()))
        })
    }

    /// Whether member `i`'s `GET /health` says `{"health":"true"}`.
    pub fn healthy(&self, i: usize) -> Result<(), String> {
        let ep = self.members[i].endpoint();
        let text = http_get(&ep, "/health").map_err(|e| format!("{ep}/health: {e}"))?;
        if text.starts_with("HTTP/1.1 200") && text.contains(r#""health":"true""#) {
            Ok(())
        } else {
            Err(format!(
                "{ep}/health: {}",
                text.lines().next().unwrap_or("")
            ))
        }
    }

    /// Whether member `i` exited; an error with its log tail when it did.
    pub fn alive(&mut self, i: usize) -> Result<(), String> {
        match self.members[i].child.as_mut().map(procs::try_reap) {
            Some(None) => Ok(()),
            _ => {
                self.members[i].child = None;
                self.check_alive()?;
                Err(format!("{} is not running", self.members[i].name))
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                procs::kill(&mut c);
            }
        }
    }
}

async fn channel(ep: &str) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{ep}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| format!("{ep}: {e}"))
}

/// A plain HTTP/1.1 GET; the whole response.
fn http_get(ep: &str, path: &str) -> std::io::Result<String> {
    let addr = ep
        .parse()
        .map_err(|_| std::io::Error::other("bad address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {ep}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `n` distinct loopback ports that were free a moment ago.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    // All held at once, so they differ.
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// The last lines of a log, on one line.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
