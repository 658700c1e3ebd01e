//! An in-process fault proxy in front of every member's peer listener.
//!
//! Member `i` listens on its real peer port but advertises the address of proxy `i`, so every
//! connection to member `i`'s peer port (raft streams, snapshots, member-list fetches) passes
//! through the proxy. To fault one direction of one link (A->B) the proxy must know which member
//! opened an accepted connection: loopback connections carry no identity, so the source port is
//! resolved to the process owning that socket (`/proc/net/tcp{,6}` gives the socket inode,
//! `/proc/<pid>/fd` of the registered member pids tells whose it is).
//!
//! On a connection from member A to proxy B, the client->server bytes are the A->B direction and
//! the server->client bytes (replies) belong to B->A. Faults are looked up per chunk, so a fault
//! set while a long-lived raft stream is open applies to it at once.
//!
//! Each direction of a connection is a reader task feeding a writer task through a small queue of
//! chunks stamped with their release time: a delayed chunk waits at the head of the queue, which
//! keeps the order within the connection while different connections (and chunks) get different
//! delays.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Size of one read; a chunk is whatever one read returned, at most this.
const CHUNK: usize = 64 * 1024;
/// Chunks queued per direction before the reader stops reading (backpressure towards the sender
/// instead of unbounded memory while a delay holds chunks back).
const QUEUE_CHUNKS: usize = 256;
/// How long source resolution retries before a connection is forwarded as unknown: long enough
/// to cover a harness that registers a restarted member's pid just after the member dialled.
const RESOLVE_ATTEMPTS: u32 = 20;
const RESOLVE_RETRY: Duration = Duration::from_millis(10);

/// Counters over the proxy's whole life (all members, all links).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStats {
    /// Bytes written to the far side (both directions).
    pub bytes_forwarded: u64,
    /// Bytes read and thrown away by a blackhole or a drop.
    pub bytes_dropped: u64,
    /// Chunks held back by a delay fault.
    pub chunks_delayed: u64,
    /// Chunks thrown away (blackholed or dropped).
    pub chunks_dropped: u64,
    pub connections_accepted: u64,
    /// Accepted connections whose source was not a registered member (forwarded unfaulted).
    pub connections_unknown_source: u64,
    /// Connections the proxy reset because of a fault (a drop, or a heal after lost bytes).
    pub connections_reset: u64,
    /// Accepted connections whose member could not be reached (closed at once).
    pub connections_refused: u64,
    /// Calls that set a fault (`blackhole`, `delay`, `drop_rate`, per link).
    pub faults_set: u64,
    /// Links healed (per link and direction, by `heal` or `heal_all`).
    pub links_healed: u64,
}

/// The fault proxies of one cluster. Cheap to clone; the proxies stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while dropping.
    rt: Option<Runtime>,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // shutdown_background, not a plain drop: the last clone may be dropped inside an async
        // context (a tokio test), where blocking on the runtime's shutdown panics. Dropping the
        // tasks closes the listeners and every proxied connection.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The faults on one direction of one link. They combine (a link can be both delayed and
/// dropping); `heal` clears them all.
#[derive(Clone, Copy, Debug, Default)]
struct LinkFault {
    blackhole: bool,
    delay: Option<(Duration, Duration)>,
    drop_rate: f64,
}

impl LinkFault {
    fn is_clear(&self) -> bool {
        !self.blackhole && self.delay.is_none() && self.drop_rate <= 0.0
    }
}

/// A directed link: (from, to).
type Link = (usize, usize);

#[derive(Default)]
struct Shared {
    pids: Mutex<HashMap<usize, u32>>,
    faults: Mutex<HashMap<Link, LinkFault>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    accept_tasks: Mutex<HashMap<usize, JoinHandle<()>>>,
    next_conn: AtomicU64,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    bytes_forwarded: AtomicU64,
    bytes_dropped: AtomicU64,
    chunks_delayed: AtomicU64,
    chunks_dropped: AtomicU64,
    connections_accepted: AtomicU64,
    connections_unknown_source: AtomicU64,
    connections_reset: AtomicU64,
    connections_refused: AtomicU64,
    faults_set: AtomicU64,
    links_healed: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One proxied connection from a known member.
struct Conn {
    /// The link of each direction: [client->server, server->client].
    links: [Link; 2],
    /// Whether a direction lost bytes (blackholed): its peer's h2 framing is broken, so the
    /// connection must be reset when the link heals.
    lost: [AtomicBool; 2],
    killed: AtomicBool,
    kill: watch::Sender<bool>,
}

impl Conn {
    /// Resets the connection (RST on both sockets, done by the writers that own the sockets'
    /// write halves). Returns whether this call did it.
    fn kill(&self) -> bool {
        if self.killed.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.kill.send_replace(true);
        true
    }
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

impl Network {
    pub fn new() -> Network {
        let rt = tokio::runtime::Builder::new_multi_thread()
            // Peer traffic of a small cluster is light; the proxy must not compete with the
            // members (and other harness work) for the few cores there are.
            .worker_threads(2)
            .thread_name("oxcd-proxy")
            .enable_all()
            .build()
            .expect("building the proxy runtime");
        Network {
            inner: Arc::new(Inner {
                rt: Some(rt),
                shared: Arc::new(Shared::default()),
            }),
        }
    }

    fn rt(&self) -> &Runtime {
        self.inner
            .rt
            .as_ref()
            .expect("runtime lives as long as the Network")
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Starts the proxy in front of member `member` whose real peer listener is `target`;
    /// returns the address to advertise (127.0.0.1:random port). Calling it again for the same
    /// member replaces that member's proxy (the old listener closes, its connections stay).
    pub fn add_member(&self, member: usize, target: SocketAddr) -> io::Result<SocketAddr> {
        // Bound here, synchronously, so the caller gets the error and the address is listening
        // before it is advertised.
        let std_listener = StdTcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _guard = self.rt().enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = self.shared().clone();
        let task = self
            .rt()
            .spawn(accept_loop(shared, listener, member, addr, target));
        if let Some(old) = self
            .shared()
            .accept_tasks
            .lock()
            .unwrap()
            .insert(member, task)
        {
            old.abort();
        }
        Ok(addr)
    }

    /// The pid of member `member` (updated by the harness after every restart), for source
    /// resolution. `None` while the member is down.
    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        let mut pids = self.shared().pids.lock().unwrap();
        match pid {
            Some(pid) => pids.insert(member, pid),
            None => pids.remove(&member),
        };
    }

    fn set_fault(&self, from: usize, to: usize, f: impl FnOnce(&mut LinkFault)) {
        f(self
            .shared()
            .faults
            .lock()
            .unwrap()
            .entry((from, to))
            .or_default());
        bump(&self.shared().stats.faults_set, 1);
    }

    /// Bytes from `from` to `to` are silently dropped; connections are left open (as in a real
    /// partition, the sender notices only by timeouts).
    pub fn blackhole(&self, from: usize, to: usize) {
        self.set_fault(from, to, |f| f.blackhole = true);
    }

    /// Each chunk from `from` to `to` is held `base` ± `jitter` (uniform). The order within a
    /// connection is kept (a chunk never overtakes an earlier one); chunks on different
    /// connections get different delays, which reorders messages across connections.
    pub fn delay(&self, from: usize, to: usize, base: Duration, jitter: Duration) {
        self.set_fault(from, to, |f| f.delay = Some((base, jitter)));
    }

    /// Each chunk from `from` to `to` is lost with probability `p`; a connection that lost a
    /// chunk is reset at once (its h2 framing is broken), and both ends reconnect.
    pub fn drop_rate(&self, from: usize, to: usize, p: f64) {
        self.set_fault(from, to, |f| f.drop_rate = p.clamp(0.0, 1.0));
    }

    /// Clears every fault on the link from `from` to `to`. Connections that lost bytes on it are
    /// reset so the members reconnect with clean streams, as after a real partition.
    pub fn heal(&self, from: usize, to: usize) {
        if self
            .shared()
            .faults
            .lock()
            .unwrap()
            .remove(&(from, to))
            .is_some()
        {
            bump(&self.shared().stats.links_healed, 1);
        }
        self.shared().reset_lost(|link| link == (from, to));
    }

    /// Blackholes every link between a member of `a` and a member of `b`, both ways.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.blackhole(x, y);
                    self.blackhole(y, x);
                }
            }
        }
    }

    /// Cuts member `m` off from the other members of an `n_members` cluster, both ways.
    pub fn isolate(&self, m: usize, n_members: usize) {
        let others: Vec<usize> = (0..n_members).filter(|&o| o != m).collect();
        self.partition(&[m], &others);
    }

    /// Clears every fault on every link, resetting the connections that lost bytes.
    pub fn heal_all(&self) {
        let healed = {
            let mut faults = self.shared().faults.lock().unwrap();
            let n = faults.len();
            faults.clear();
            n
        };
        bump(&self.shared().stats.links_healed, healed as u64);
        self.shared().reset_lost(|_| true);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared().stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            bytes_forwarded: get(&c.bytes_forwarded),
            bytes_dropped: get(&c.bytes_dropped),
            chunks_delayed: get(&c.chunks_delayed),
            chunks_dropped: get(&c.chunks_dropped),
            connections_accepted: get(&c.connections_accepted),
            connections_unknown_source: get(&c.connections_unknown_source),
            connections_reset: get(&c.connections_reset),
            connections_refused: get(&c.connections_refused),
            faults_set: get(&c.faults_set),
            links_healed: get(&c.links_healed),
        }
    }
}

impl Shared {
    fn fault(&self, link: Option<Link>) -> LinkFault {
        match link {
            Some(link) => self
                .faults
                .lock()
                .unwrap()
                .get(&link)
                .copied()
                .unwrap_or_default(),
            None => LinkFault::default(),
        }
    }

    /// Resets the connections that lost bytes in a direction whose link matches and is now
    /// clear of faults.
    fn reset_lost(&self, matches: impl Fn(Link) -> bool) {
        let conns: Vec<Arc<Conn>> = self.conns.lock().unwrap().values().cloned().collect();
        for conn in conns {
            let hit = (0..2).any(|d| {
                matches(conn.links[d])
                    && conn.lost[d].load(Ordering::SeqCst)
                    && self.fault(Some(conn.links[d])).is_clear()
            });
            if hit && conn.kill() {
                bump(&self.stats.connections_reset, 1);
            }
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    member: usize,
    addr: SocketAddr,
    target: SocketAddr,
) {
    loop {
        let (client, src) = match listener.accept().await {
            Ok(c) => c,
            // EMFILE and the like: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        bump(&shared.stats.connections_accepted, 1);
        tokio::spawn(handle(shared.clone(), client, src, member, addr, target));
    }
}

async fn handle(
    shared: Arc<Shared>,
    client: TcpStream,
    src: SocketAddr,
    member: usize,
    addr: SocketAddr,
    target: SocketAddr,
) {
    let _ = client.set_nodelay(true);
    let resolve = {
        let shared = shared.clone();
        async move {
            for attempt in 0..RESOLVE_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(RESOLVE_RETRY).await;
                }
                let pids: Vec<(usize, u32)> = shared
                    .pids
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(&m, &p)| (m, p))
                    .collect();
                let found = tokio::task::spawn_blocking(move || {
                    resolve_source(src.port(), addr.port(), &pids)
                })
                .await
                .ok()
                .flatten();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
    };
    // Dial the member while resolving: the connect does not depend on who the source is.
    let (from, server) = tokio::join!(resolve, TcpStream::connect(target));
    let server = match server {
        Ok(s) => s,
        Err(_) => {
            // The member is down: the client sees its connection reset, as close as a proxy
            // gets to a refused connect.
            bump(&shared.stats.connections_refused, 1);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let from = from.filter(|&f| f != member);
    if from.is_none() {
        bump(&shared.stats.connections_unknown_source, 1);
    }
    let (kill, _) = watch::channel(false);
    let links = match from {
        Some(f) => [(f, member), (member, f)],
        // Never matched by a fault lookup (which is skipped for unknown sources).
        None => [(usize::MAX, member), (member, usize::MAX)],
    };
    let conn = Arc::new(Conn {
        links,
        lost: [AtomicBool::new(false), AtomicBool::new(false)],
        killed: AtomicBool::new(false),
        kill,
    });
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    if from.is_some() {
        shared.conns.lock().unwrap().insert(id, conn.clone());
    }
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let link = |d: usize| from.map(|_| conn.links[d]);
    let (c2s_tx, c2s_rx) = mpsc::channel(QUEUE_CHUNKS);
    let (s2c_tx, s2c_rx) = mpsc::channel(QUEUE_CHUNKS);
    tokio::join!(
        read_side(&shared, &conn, 0, link(0), client_rd, c2s_tx),
        write_side(&shared, &conn, server_wr, c2s_rx),
        read_side(&shared, &conn, 1, link(1), server_rd, s2c_tx),
        write_side(&shared, &conn, client_wr, s2c_rx),
    );
    shared.conns.lock().unwrap().remove(&id);
}

enum Chunk {
    /// Bytes to write once the release time has come.
    Data(Instant, Vec<u8>),
    /// The reader saw EOF: half-close the far side once everything before it is written.
    Eof,
}

/// Reads one direction and applies the link's faults to each chunk.
async fn read_side(
    shared: &Shared,
    conn: &Conn,
    dir: usize,
    link: Option<Link>,
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<Chunk>,
) {
    let mut kill = conn.kill.subscribe();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = tokio::select! {
            r = rd.read(&mut buf) => r,
            _ = kill.wait_for(|k| *k) => return,
        };
        let fault = shared.fault(link);
        let n = match read {
            Ok(n) if n > 0 => n,
            end => {
                if fault.blackhole {
                    // The end of the stream is lost too: the far side keeps waiting, as across
                    // a partition, until the heal resets the connection.
                    conn.lost[dir].store(true, Ordering::SeqCst);
                    let _ = kill.wait_for(|k| *k).await;
                } else if end.is_ok() {
                    let _ = tx.send(Chunk::Eof).await;
                } else {
                    // A reset (or error) on one side is passed on as a reset of the other.
                    conn.kill();
                }
                return;
            }
        };
        if fault.blackhole {
            conn.lost[dir].store(true, Ordering::SeqCst);
            bump(&shared.stats.bytes_dropped, n as u64);
            bump(&shared.stats.chunks_dropped, 1);
            continue;
        }
        if fault.drop_rate > 0.0 && rand::rng().random_bool(fault.drop_rate) {
            bump(&shared.stats.bytes_dropped, n as u64);
            bump(&shared.stats.chunks_dropped, 1);
            if conn.kill() {
                bump(&shared.stats.connections_reset, 1);
            }
            return;
        }
        let mut release = Instant::now();
        if let Some((base, jitter)) = fault.delay {
            let j = jitter.as_secs_f64();
            let offset = if j > 0.0 {
                rand::rng().random_range(-j..=j)
            } else {
                0.0
            };
            let d = (base.as_secs_f64() + offset).max(0.0);
            release += Duration::from_secs_f64(d);
            bump(&shared.stats.chunks_delayed, 1);
        }
        let sent = tokio::select! {
            r = tx.send(Chunk::Data(release, buf[..n].to_vec())) => r.is_ok(),
            _ = kill.wait_for(|k| *k) => false,
        };
        if !sent {
            return;
        }
    }
}

/// Writes one direction's chunks in order, each not before its release time. On a kill it resets
/// its socket: the two writers own the two sockets' write halves, so both ends see an RST.
async fn write_side(
    shared: &Shared,
    conn: &Conn,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Chunk>,
) {
    let mut kill = conn.kill.subscribe();
    let killed = loop {
        let step = async {
            match rx.recv().await {
                Some(Chunk::Data(release, data)) => {
                    tokio::time::sleep_until(release).await;
                    match wr.write_all(&data).await {
                        Ok(()) => {
                            bump(&shared.stats.bytes_forwarded, data.len() as u64);
                            Ok(true)
                        }
                        Err(_) => Err(()),
                    }
                }
                Some(Chunk::Eof) => {
                    let _ = wr.shutdown().await;
                    Ok(false)
                }
                None => Ok(false),
            }
        };
        let step = tokio::select! {
            s = step => s,
            _ = kill.wait_for(|k| *k) => break true,
        };
        match step {
            Ok(true) => {}
            Ok(false) => break false,
            Err(()) => {
                conn.kill();
                break true;
            }
        }
    };
    // The reader of this direction may have killed the connection and gone (closing the queue)
    // before this writer saw the kill.
    if killed || conn.killed.load(Ordering::SeqCst) {
        let _ = wr.as_ref().set_zero_linger();
        // Not a shutdown: a FIN before the RST would look like a clean end of stream.
        wr.forget();
    }
}

/// Which registered member owns the socket with local port `src_port` connected to `dst_port`
/// on loopback.
fn resolve_source(src_port: u16, dst_port: u16, pids: &[(usize, u32)]) -> Option<usize> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .find_map(|table| find_inode(&table, src_port, dst_port))?;
    let want = format!("socket:[{inode}]");
    pids.iter().find_map(|&(member, pid)| {
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.filter_map(|e| e.ok())
            .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
            .then_some(member)
    })
}

/// The inode of the socket in a `/proc/net/tcp{,6}` table whose local port is `src_port` and
/// remote port `dst_port` (both ends on this host, so the ports pin down the connection; the
/// proxy's own accepted socket has them the other way round). Inode 0 (a socket already closed,
/// in TIME_WAIT) does not count.
fn find_inode(table: &str, src_port: u16, dst_port: u16) -> Option<u64> {
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || port(f[1])? != src_port || port(f[2])? != dst_port {
            return None;
        }
        f[9].parse::<u64>().ok().filter(|&i| i != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream as StdTcpStream;
    use std::time::Instant as StdInstant;

    const WAIT: Duration = Duration::from_secs(10);
    /// How long a read must stay empty to count as "nothing arrived".
    const QUIET: Duration = Duration::from_millis(300);

    /// A proxy for "member 1" in front of a plain listener, this process registered as member 0.
    struct Setup {
        net: Network,
        proxy: SocketAddr,
        server: StdTcpListener,
    }

    fn setup(register_self: bool) -> Setup {
        let net = Network::new();
        let server = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = net.add_member(1, server.local_addr().unwrap()).unwrap();
        if register_self {
            net.set_pid(0, Some(std::process::id()));
        }
        Setup { net, proxy, server }
    }

    impl Setup {
        /// Opens a connection through the proxy: (client end, server end).
        fn connect(&self) -> (StdTcpStream, StdTcpStream) {
            let c = StdTcpStream::connect(self.proxy).unwrap();
            self.server.set_nonblocking(true).unwrap();
            let deadline = StdInstant::now() + WAIT;
            let s = loop {
                match self.server.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock && StdInstant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("proxy did not connect to the server: {e}"),
                }
            };
            s.set_nonblocking(false).unwrap();
            for s in [&c, &s] {
                s.set_read_timeout(Some(WAIT)).unwrap();
            }
            (c, s)
        }
    }

    fn read_exact(s: &mut StdTcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        s.read_exact(&mut buf).unwrap();
        buf
    }

    /// Asserts that nothing arrives within QUIET.
    fn assert_quiet(s: &mut StdTcpStream) {
        s.set_read_timeout(Some(QUIET)).unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected nothing, got {other:?}"),
        }
        s.set_read_timeout(Some(WAIT)).unwrap();
    }

    /// Asserts that the connection ends in a reset (RST, not a clean end of stream) within
    /// WAIT, skipping bytes that were still in flight.
    fn assert_reset(s: &mut StdTcpStream) {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => panic!("expected a reset, got an end of stream"),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("expected a reset, got {e}"),
            }
        }
    }

    /// Asserts that the connection ends, by a reset or an end of stream, within WAIT.
    fn assert_closed(s: &mut StdTcpStream) {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("expected the connection to end, got {e}"),
            }
        }
    }

    fn wait_for(mut cond: impl FnMut() -> bool) {
        let deadline = StdInstant::now() + WAIT;
        while !cond() {
            assert!(StdInstant::now() < deadline, "condition not met in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn roundtrip(c: &mut StdTcpStream, s: &mut StdTcpStream) {
        c.write_all(b"ping").unwrap();
        assert_eq!(read_exact(s, 4), b"ping");
        s.write_all(b"pong").unwrap();
        assert_eq!(read_exact(c, 4), b"pong");
    }

    #[test]
    fn find_inode_parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 20 4 30 10 -1\n\
   1: 0100007F:0050 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 67890 1 0 20 4 30 10 -1\n";
        assert_eq!(find_inode(table, 0x1F90, 0x50), Some(12345));
        assert_eq!(find_inode(table, 0x50, 0x1F90), Some(67890));
        assert_eq!(find_inode(table, 0x50, 0x51), None);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n";
        assert_eq!(find_inode(v6, 0x1F90, 0x50), Some(4242));
    }

    #[test]
    fn forwards_both_ways_and_resolves_the_source() {
        let t = setup(true);
        let (mut c, mut s) = t.connect();
        roundtrip(&mut c, &mut s);
        // A bigger transfer crosses several chunks and stays intact.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut c = c.try_clone().unwrap();
            let big = big.clone();
            std::thread::spawn(move || c.write_all(&big).unwrap())
        };
        assert_eq!(read_exact(&mut s, big.len()), big);
        writer.join().unwrap();
        // The counter is bumped just after the write the reader saw.
        wait_for(|| t.net.stats().bytes_forwarded == 8 + big.len() as u64);
        let st = t.net.stats();
        assert_eq!(st.connections_accepted, 1);
        assert_eq!(st.connections_unknown_source, 0);
        assert_eq!(t.net.shared().conns.lock().unwrap().len(), 1);
        // A clean close passes through as an end of stream.
        drop(c);
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn blackhole_drops_one_direction_and_heal_resets() {
        let t = setup(true);
        let (mut c, mut s) = t.connect();
        roundtrip(&mut c, &mut s);
        t.net.blackhole(0, 1);
        c.write_all(b"lost").unwrap();
        assert_quiet(&mut s);
        // The other direction still flows.
        s.write_all(b"back").unwrap();
        assert_eq!(read_exact(&mut c, 4), b"back");
        wait_for(|| t.net.stats().bytes_dropped == 4);
        assert_eq!(t.net.stats().chunks_dropped, 1);
        t.net.heal(0, 1);
        // The connection lost bytes, so the heal resets both of its ends.
        assert_reset(&mut c);
        assert_reset(&mut s);
        assert_eq!(t.net.stats().connections_reset, 1);
        assert_eq!(t.net.stats().links_healed, 1);
        let (mut c, mut s) = t.connect();
        roundtrip(&mut c, &mut s);
    }

    #[test]
    fn heal_keeps_connections_that_lost_nothing() {
        let t = setup(true);
        let (mut c, mut s) = t.connect();
        t.net.blackhole(0, 1);
        // Only the unfaulted direction carries bytes during the blackhole.
        s.write_all(b"back").unwrap();
        assert_eq!(read_exact(&mut c, 4), b"back");
        t.net.heal(0, 1);
        roundtrip(&mut c, &mut s);
        assert_eq!(t.net.stats().connections_reset, 0);
    }

    #[test]
    fn blackhole_applies_to_replies_of_the_reverse_link() {
        let t = setup(true);
        let (mut c, mut s) = t.connect();
        // 1->0 is the reply direction of this connection (opened by 0 to 1).
        t.net.blackhole(1, 0);
        s.write_all(b"lost").unwrap();
        assert_quiet(&mut c);
        // Only a connection that lost bytes is reset by the heal.
        wait_for(|| t.net.stats().bytes_dropped == 4);
        c.write_all(b"over").unwrap();
        assert_eq!(read_exact(&mut s, 4), b"over");
        t.net.heal(1, 0);
        assert_reset(&mut c);
    }

    #[test]
    fn delay_holds_chunks_and_keeps_their_order() {
        let t = setup(true);
        let (mut c, mut s) = t.connect();
        let base = Duration::from_millis(200);
        t.net.delay(0, 1, base, Duration::from_millis(50));
        let start = StdInstant::now();
        c.write_all(b"a").unwrap();
        assert_eq!(read_exact(&mut s, 1), b"a");
        assert!(start.elapsed() >= base - Duration::from_millis(50));
        // Many separate chunks with random delays still arrive in order.
        let msgs: Vec<u8> = (0..20u8).collect();
        for m in &msgs {
            c.write_all(&[*m]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(read_exact(&mut s, msgs.len()), msgs);
        // The reverse direction is not delayed by this fault (no time asserted, just flow).
        s.write_all(b"r").unwrap();
        assert_eq!(read_exact(&mut c, 1), b"r");
        assert!(t.net.stats().chunks_delayed >= 2);
        // Without jitter the hold is at least the base.
        t.net.delay(0, 1, base, Duration::ZERO);
        let start = StdInstant::now();
        c.write_all(b"b").unwrap();
        assert_eq!(read_exact(&mut s, 1), b"b");
        assert!(start.elapsed() >= base);
        t.net.heal(0, 1);
        // Nothing was lost, so the connection survives the heal.
        roundtrip(&mut c, &mut s);
    }

    #[test]
    fn drop_rate_one_resets_the_connection() {
        let t = setup(true);
        let (mut c, mut s) = t.connect();
        t.net.drop_rate(0, 1, 1.0);
        c.write_all(b"gone").unwrap();
        assert_reset(&mut s);
        assert_reset(&mut c);
        // Counted just after the reset was set off.
        wait_for(|| t.net.stats().connections_reset == 1);
        assert_eq!(t.net.stats().bytes_dropped, 4);
        // Zero probability forwards everything.
        t.net.drop_rate(0, 1, 0.0);
        let (mut c, mut s) = t.connect();
        roundtrip(&mut c, &mut s);
        t.net.heal(0, 1);
        roundtrip(&mut c, &mut s);
    }

    #[test]
    fn partition_and_isolate_blackhole_both_ways() {
        let t = setup(true);
        t.net.partition(&[0, 3], &[1, 2]);
        {
            let faults = t.net.shared().faults.lock().unwrap();
            for (a, b) in [(0, 1), (0, 2), (3, 1), (3, 2)] {
                assert!(faults[&(a, b)].blackhole && faults[&(b, a)].blackhole);
            }
            assert!(!faults.contains_key(&(0, 3)) && !faults.contains_key(&(1, 2)));
        }
        let (mut c, mut s) = t.connect();
        c.write_all(b"x").unwrap();
        s.write_all(b"y").unwrap();
        assert_quiet(&mut s);
        assert_quiet(&mut c);
        wait_for(|| t.net.stats().bytes_dropped == 2);
        t.net.heal_all();
        assert!(t.net.shared().faults.lock().unwrap().is_empty());
        assert_reset(&mut c);
        let (mut c, mut s) = t.connect();
        roundtrip(&mut c, &mut s);

        t.net.isolate(1, 3);
        {
            let faults = t.net.shared().faults.lock().unwrap();
            assert_eq!(faults.len(), 4);
            for o in [0, 2] {
                assert!(faults[&(1, o)].blackhole && faults[&(o, 1)].blackhole);
            }
        }
        c.write_all(b"x").unwrap();
        assert_quiet(&mut s);
        wait_for(|| t.net.stats().bytes_dropped == 3);
        t.net.heal_all();
        assert_reset(&mut s);
        assert_eq!(t.net.stats().connections_reset, 2);
    }

    #[test]
    fn unknown_sources_pass_unfaulted() {
        // This process is not registered, so the connection's source stays unknown.
        let t = setup(false);
        t.net.isolate(1, 2);
        let (mut c, mut s) = t.connect();
        roundtrip(&mut c, &mut s);
        assert_eq!(t.net.stats().connections_unknown_source, 1);
        assert_eq!(t.net.stats().bytes_dropped, 0);
    }

    #[test]
    fn a_down_member_resets_the_client() {
        let net = Network::new();
        // A port nobody listens on: bind, note it, close.
        let gone = StdTcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = net.add_member(1, gone).unwrap();
        let mut c = StdTcpStream::connect(proxy).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        assert_reset(&mut c);
        wait_for(|| net.stats().connections_refused == 1);
    }

    #[test]
    fn dropping_the_network_stops_the_proxies() {
        let t = setup(true);
        let (mut c, mut s) = t.connect();
        roundtrip(&mut c, &mut s);
        let clone = t.net.clone();
        drop(t.net);
        // One clone still runs it.
        roundtrip(&mut c, &mut s);
        drop(clone);
        assert_closed(&mut c);
        wait_for(|| StdTcpStream::connect(t.proxy).is_err());
    }
}
