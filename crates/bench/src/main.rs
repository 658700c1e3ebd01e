//! oxbench: a load generator with the subcommands, flags and report of etcd's `benchmark`
//! tool, for oxcd and etcd alike.

mod compare;
mod conn;
mod gofmt;
mod insecure;
mod kv;
mod lease;
mod progress;
mod report;
mod stm;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use tokio::sync::{mpsc, Mutex};

use progress::Bar;
use report::{Precision, Recorder};

/// A low-level benchmark tool for etcd3 APIs: it uses the gRPC API directly.
#[derive(Parser, Debug)]
#[command(name = "oxbench", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The flags every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of gRPC clients
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// use full floating point precision
    #[arg(long, global = true)]
    pub precise: bool,
    /// 'true' to sample requests for every second
    #[arg(long, global = true)]
    pub sample: bool,
    /// identify HTTPS client using this SSL certificate file
    #[arg(long, global = true)]
    pub cert: Option<String>,
    /// identify HTTPS client using this SSL key file
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// verify certificates of HTTPS-enabled servers using this CA bundle
    #[arg(long, global = true)]
    pub cacert: Option<String>,
    /// skip server certificate verification (only the first endpoint is used)
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// provide username:password
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// dial timeout for client connections
    #[arg(long, global = true, default_value = "0", value_parser = gofmt::parse_go_duration)]
    pub dial_timeout: Duration,
    /// connect only to the leader node
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// duration of periodic client endpoint sync (accepted; endpoints are not re-synced)
    #[arg(long, global = true, default_value = "0", value_parser = gofmt::parse_go_duration)]
    pub auto_sync_interval: Duration,
}

impl Global {
    pub fn precision(&self) -> Precision {
        if self.precise {
            Precision::Full
        } else {
            Precision::Fixed4
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Benchmark put
    Put(kv::PutArgs),
    /// Benchmark range
    Range(kv::RangeArgs),
    /// Benchmark txn-put
    #[command(name = "txn-put")]
    TxnPut(kv::TxnPutArgs),
    /// Benchmark a mixed load of txn-put & txn-range.
    #[command(name = "txn-mixed")]
    TxnMixed(kv::TxnMixedArgs),
    /// Benchmark watch
    Watch(watch::WatchArgs),
    /// Benchmark watch with get
    #[command(name = "watch-get")]
    WatchGet(watch::WatchGetArgs),
    /// Benchmark watch latency
    #[command(name = "watch-latency")]
    WatchLatency(watch::WatchLatencyArgs),
    /// Benchmark lease keepalive
    #[command(name = "lease-keepalive")]
    LeaseKeepalive(lease::LeaseKeepaliveArgs),
    /// Benchmark STM
    Stm(stm::StmArgs),
    /// Run the same scenarios against a 3-member etcd cluster and a 3-member oxcd cluster
    /// (started here, one after the other) and print a comparison table
    Compare(compare::CompareArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Compare(a) = &cli.cmd {
        // On this thread, with runtimes of its own: members die with the thread that
        // spawned them.
        std::process::exit(compare::main(a));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let g = &cli.global;
        match &cli.cmd {
            Cmd::Put(a) => kv::put(g, a).await,
            Cmd::Range(a) => kv::range(g, a).await,
            Cmd::TxnPut(a) => kv::txn_put(g, a).await,
            Cmd::TxnMixed(a) => kv::txn_mixed(g, a).await,
            Cmd::Watch(a) => watch::watch(g, a).await,
            Cmd::WatchGet(a) => watch::watch_get(g, a).await,
            Cmd::WatchLatency(a) => watch::watch_latency(g, a).await,
            Cmd::LeaseKeepalive(a) => lease::keepalive(g, a).await,
            Cmd::Stm(a) => stm::stm(g, a).await,
            Cmd::Compare(_) => unreachable!("compare runs outside the runtime"),
        }
    });
    // Exit at once: shutting the runtime down would close connections under watch streams
    // and workers still running, whose errors must not turn a finished run into a failure.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(0);
}

/// Set by `compare`: [`fail`] then panics with a [`Failure`] instead of exiting, so one
/// scenario's failure ends only that scenario.
static FAIL_PANICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The panic payload of [`fail`] under `compare`.
#[derive(Debug)]
pub struct Failure(pub String);

/// Prints a message on stderr and exits 1, as etcd's tool does on bad input.
pub fn fail(msg: &str) -> ! {
    if FAIL_PANICS.load(std::sync::atomic::Ordering::Relaxed) {
        std::panic::panic_any(Failure(msg.to_string()));
    }
    eprintln!("{msg}");
    std::process::exit(1)
}

/// Go's `binary.PutVarint` into a zeroed key of `size` bytes (cut short when it does not fit).
pub fn varint_key(size: usize, x: i64) -> Vec<u8> {
    let mut ux = ((x as u64) << 1) ^ ((x >> 63) as u64);
    let mut k = vec![0u8; size];
    let mut i = 0;
    while ux >= 0x80 && i < size {
        k[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    if i < size {
        k[i] = ux as u8;
    }
    k
}

/// `n` random bytes.
pub fn rand_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::Rng::fill(&mut rand::rng(), &mut v[..]);
    v
}

/// A limiter of `rate` events per second with a burst of one; 0 is no limit.
#[derive(Clone)]
pub struct Limiter {
    next: Option<Arc<std::sync::Mutex<Instant>>>,
    every: Duration,
}

impl Limiter {
    pub fn new(rate: u64) -> Limiter {
        if rate == 0 {
            return Limiter {
                next: None,
                every: Duration::ZERO,
            };
        }
        Limiter {
            next: Some(Arc::new(std::sync::Mutex::new(Instant::now()))),
            every: Duration::from_secs_f64(1.0 / rate as f64),
        }
    }

    pub async fn wait(&self) {
        let Some(next) = &self.next else { return };
        let at = {
            let mut n = next.lock().unwrap();
            let at = (*n).max(Instant::now());
            *n = at + self.every;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Runs `total` requests made by `make(i)` on the clients, each worker taking the next one
/// from a shared queue (as etcd's tool does), timing each and recording its error.
pub async fn run_pool<C, T, M, F, Fut>(
    clients: &[C],
    total: usize,
    limit: Limiter,
    mut make: M,
    work: F,
    rec: &Recorder,
    bar: &Bar,
) where
    C: Clone + Send + 'static,
    T: Send + 'static,
    M: FnMut(usize) -> T + Send + 'static,
    F: Fn(C, T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let (tx, rx) = mpsc::channel::<T>(clients.len().max(1));
    let rx = Arc::new(Mutex::new(rx));
    tokio::spawn(async move {
        for i in 0..total {
            if tx.send(make(i)).await.is_err() {
                break;
            }
        }
    });
    let mut tasks = Vec::new();
    for c in clients {
        let (c, rx, work, rec, bar, limit) = (
            c.clone(),
            rx.clone(),
            work.clone(),
            rec.clone(),
            bar.clone(),
            limit.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let item = rx.lock().await.recv().await;
                let Some(item) = item else { break };
                limit.wait().await;
                let st = Instant::now();
                let r = work(c.clone(), item).await;
                rec.done(st, r.err());
                bar.inc();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_keys_as_go() {
        assert_eq!(varint_key(8, 0), vec![0; 8]);
        assert_eq!(varint_key(8, 1), vec![2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(varint_key(8, -1), vec![1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(varint_key(4, 64), vec![0x80, 1, 0, 0]);
        assert_eq!(varint_key(1, 1000), vec![0xd0]);
    }
}
