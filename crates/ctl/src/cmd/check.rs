//! `check perf` and `check datascale`: etcdctl's built-in load checks, with its workloads, its
//! progress bar and its PASS/FAIL lines.
//!
//! `perf` writes 1 KiB values under random 256-byte keys at a fixed rate from many clients for a
//! minute and judges throughput (more than 90% of the target rate), the slowest request (at most
//! 500 ms) and the standard deviation of latencies (at most 100 ms). `datascale` writes a fixed
//! number of keys as fast as it can and reports how much the first endpoint's resident memory grew
//! (`process_resident_memory_bytes` on its `/metrics`). Both delete their keys afterwards, then
//! optionally compact (physically) and defragment.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};

use crate::cli::{CheckCmd, CheckDatascaleArgs, CheckPerfArgs, GlobalArgs};
use crate::client::Client;
use crate::error::{CtlError, Result, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::global::client_config;
use crate::print::outln;

pub async fn run(g: &GlobalArgs, cmd: &CheckCmd) -> Result<()> {
    match cmd {
        CheckCmd::Perf(a) => perf(g, a).await,
        CheckCmd::Datascale(a) => datascale(g, a).await,
    }
}

/// Workload names and their aliases, as etcdctl accepts them.
fn model(load: &str) -> Option<&'static str> {
    Some(match load {
        "s" | "small" => "s",
        "m" | "medium" => "m",
        "l" | "large" => "l",
        "xl" | "xLarge" => "xl",
        _ => return None,
    })
}

fn unknown_load(load: &str) -> CtlError {
    CtlError::new(EXIT_BAD_FEATURE, format!("unknown load option {load}"))
}

/// (writes per second, clients, seconds) of a perf workload.
fn perf_cfg(model: &str) -> (u32, usize, u64) {
    match model {
        "s" => (150, 50, 60),
        "m" => (1000, 200, 60),
        "l" => (8000, 500, 60),
        _ => (15000, 1000, 60),
    }
}

/// (keys, bytes per key-value, clients) of a datascale workload.
fn datascale_cfg(model: &str) -> (u64, usize, usize) {
    match model {
        "s" => (10_000, 1024, 50),
        "m" => (100_000, 1024, 200),
        "l" => (1_000_000, 1024, 500),
        _ => (3_000_000, 1024, 1000),
    }
}

/// One client (one connection per endpoint) per simulated client, as etcdctl makes them.
async fn clients(g: &GlobalArgs, n: usize) -> Result<Vec<Arc<Client>>> {
    let cfg = client_config(g)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Arc::new(Client::connect(&cfg).await?));
    }
    Ok(out)
}

/// Fails like etcdctl when the prefix already holds keys.
async fn check_prefix_empty(c: &Client, prefix: &str) -> Result<()> {
    let resp = c
        .range(RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: super::prefix_end(prefix.as_bytes()),
            limit: 1,
            ..Default::default()
        })
        .await?;
    if !resp.kvs.is_empty() {
        return Err(CtlError::new(
            EXIT_INVALID_INPUT,
            format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {prefix} first",
                crate::gostr::quote(prefix.as_bytes())
            ),
        ));
    }
    Ok(())
}

/// Random keys as etcdctl makes them: a random non-negative int63, varint-encoded into the front
/// of a reused zeroed buffer (bytes a shorter number leaves are kept from earlier keys).
struct KeyGen {
    buf: Vec<u8>,
    state: u64,
}

impl KeyGen {
    fn new(size: usize) -> KeyGen {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            | 1;
        KeyGen {
            buf: vec![0; size],
            state: seed,
        }
    }

    fn next(&mut self, prefix: &str) -> Vec<u8> {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 1) as i64;
        // binary.PutVarint: zig-zag, then base-128.
        let mut ux = (x as u64) << 1;
        if x < 0 {
            ux = !ux;
        }
        let mut i = 0;
        while ux >= 0x80 {
            self.buf[i] = (ux as u8) | 0x80;
            ux >>= 7;
            i += 1;
        }
        self.buf[i] = ux as u8;
        let mut key = prefix.as_bytes().to_vec();
        key.extend_from_slice(&self.buf);
        key
    }
}

/// Latencies of the successful requests and the errors, by message (etcd's report package).
#[derive(Default)]
struct Report {
    lats: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

struct Stats {
    rps: f64,
    slowest: f64,
    stddev: f64,
    errors: BTreeMap<String, u64>,
}

impl Report {
    fn stats(self, total: Duration) -> Stats {
        let n = self.lats.len() as f64;
        let avg = self.lats.iter().sum::<f64>() / n;
        let var = self.lats.iter().map(|l| (l - avg) * (l - avg)).sum::<f64>() / n;
        Stats {
            rps: n / total.as_secs_f64(),
            slowest: self.lats.iter().copied().fold(0.0, f64::max),
            stddev: var.sqrt(),
            errors: self.errors,
        }
    }
}

/// Runs puts from `rx` on every client until the channel closes; returns the report and the time
/// from the start of the workers to the last result.
async fn run_workers(
    clients: &[Arc<Client>],
    rx: tokio::sync::mpsc::Receiver<PutRequest>,
    bar: Option<Arc<Bar>>,
) -> (Report, Duration) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let report = Arc::new(Mutex::new(Report::default()));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        let (c, rx, report, bar) = (c.clone(), rx.clone(), report.clone(), bar.clone());
        tasks.spawn(async move {
            loop {
                let Some(req) = rx.lock().await.recv().await else {
                    return;
                };
                let st = Instant::now();
                let r = c.put(req).await;
                let took = st.elapsed().as_secs_f64();
                {
                    let mut rep = report.lock().unwrap();
                    match r {
                        Ok(_) => rep.lats.push(took),
                        Err(e) => *rep.errors.entry(e.msg).or_default() += 1,
                    }
                }
                if let Some(b) = &bar {
                    b.add(1);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let total = start.elapsed();
    let report = std::mem::take(&mut *report.lock().unwrap());
    (report, total)
}

/// Deletes the check's keys; returns the revision after the delete.
async fn delete_prefix(c: &Client, prefix: &str) -> Result<i64> {
    let resp = c
        .delete_range(DeleteRangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: super::prefix_end(prefix.as_bytes()),
            prev_kv: false,
        })
        .await?;
    Ok(resp.header.map_or(0, |h| h.revision))
}

/// `--auto-compact`, `--auto-defrag`: etcdctl's lines around each step.
async fn cleanup(g: &GlobalArgs, c: &Client, rev: i64, compact: bool, defrag: bool) -> Result<()> {
    if compact {
        outln(&format!("Compacting with revision {rev}"));
        c.compact(CompactionRequest {
            revision: rev,
            physical: true,
        })
        .await?;
        outln(&format!("Compacted with revision {rev}"));
    }
    if defrag {
        for ep in &g.endpoints {
            let q = crate::gostr::quote(ep.as_bytes());
            outln(&format!("Defragmenting {q}"));
            c.for_endpoint(ep)?.defragment(DefragmentRequest {}).await?;
            outln(&format!("Defragmented {q}"));
        }
    }
    Ok(())
}

fn print_errors(errors: &BTreeMap<String, u64>) {
    outln("FAIL: too many errors");
    for (k, v) in errors {
        outln(&format!("FAIL: ERROR({k}) -> {v}"));
    }
}

async fn perf(g: &GlobalArgs, a: &CheckPerfArgs) -> Result<()> {
    let model = model(&a.load).ok_or_else(|| unknown_load(&a.load))?;
    let (limit, nclients, duration) = perf_cfg(model);
    let clients = clients(g, nclients).await?;
    check_prefix_empty(&clients[0], &a.prefix).await?;

    let bar = Bar::start(duration);
    let (tx, rx) = tokio::sync::mpsc::channel(nclients);
    let prefix = a.prefix.clone();
    // One put every 1/limit seconds (a rate limiter with a burst of one) until the minute is up.
    tokio::spawn(async move {
        let mut keys = KeyGen::new(256);
        let value = vec![0u8; 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(duration);
        let step = Duration::from_secs(1) / limit;
        let mut next = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            if next > deadline {
                return;
            }
            tokio::time::sleep_until(next).await;
            next += step;
            let req = PutRequest {
                key: keys.next(&prefix),
                value: value.clone(),
                ..Default::default()
            };
            if tx.send(req).await.is_err() {
                return;
            }
        }
    });
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            for _ in 0..duration {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.add(1);
            }
        })
    };
    let (report, total) = run_workers(&clients, rx, None).await;
    ticker.abort();
    bar.finish();
    let s = report.stats(total);

    let rev = delete_prefix(&clients[0], &a.prefix).await?;
    cleanup(g, &clients[0], rev, a.auto_compact, a.auto_defrag).await?;

    let mut ok = true;
    if !s.errors.is_empty() {
        print_errors(&s.errors);
        ok = false;
    }
    let writes = s.rps as i64 + 1;
    if s.rps / f64::from(limit) <= 0.9 {
        outln(&format!("FAIL: Throughput too low: {writes} writes/s"));
        ok = false;
    } else {
        outln(&format!("PASS: Throughput is {writes} writes/s"));
    }
    if s.slowest > 0.5 {
        outln(&format!("Slowest request took too long: {:.6}s", s.slowest));
        ok = false;
    } else {
        outln(&format!("PASS: Slowest request took {:.6}s", s.slowest));
    }
    if s.stddev > 0.1 {
        outln(&format!("Stddev too high: {:.6}s", s.stddev));
        ok = false;
    } else {
        outln(&format!("PASS: Stddev is {:.6}s", s.stddev));
    }
    if ok {
        outln("PASS");
        Ok(())
    } else {
        outln("FAIL");
        Err(CtlError::silent(EXIT_ERROR))
    }
}

async fn datascale(g: &GlobalArgs, a: &CheckDatascaleArgs) -> Result<()> {
    let model = model(&a.load).ok_or_else(|| unknown_load(&a.load))?;
    let (limit, kv_size, nclients) = datascale_cfg(model);
    let clients = clients(g, nclients).await?;
    let ep = g.endpoints.first().cloned().unwrap_or_default();
    check_prefix_empty(&clients[0], &a.prefix).await?;

    let before = resident_memory(&ep).await;
    if before == 0.0 {
        outln("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        return Err(CtlError::silent(EXIT_ERROR));
    }
    outln(&format!(
        "Start data scale check for work load [{limit} key-value pairs, {kv_size} bytes per key-value, {nclients} concurrent clients]."
    ));
    let bar = Bar::start(limit);
    let (tx, rx) = tokio::sync::mpsc::channel(nclients);
    let prefix = a.prefix.clone();
    tokio::spawn(async move {
        let mut keys = KeyGen::new(512);
        let value = vec![0u8; 512];
        for _ in 0..limit {
            let req = PutRequest {
                key: keys.next(&prefix),
                value: value.clone(),
                ..Default::default()
            };
            if tx.send(req).await.is_err() {
                return;
            }
        }
    });
    let (report, total) = run_workers(&clients, rx, Some(bar.clone())).await;
    bar.finish();
    let s = report.stats(total);

    let after = resident_memory(&ep).await;
    if after == 0.0 {
        outln("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        return Err(CtlError::silent(EXIT_ERROR));
    }
    let rev = delete_prefix(&clients[0], &a.prefix).await?;
    cleanup(g, &clients[0], rev, a.auto_compact, a.auto_defrag).await?;

    if !s.errors.is_empty() {
        print_errors(&s.errors);
        return Err(CtlError::silent(EXIT_ERROR));
    }
    let mb = (after - before) / (1024.0 * 1024.0);
    outln(&format!(
        "PASS: Approximate system memory used : {mb:.2} MB."
    ));
    Ok(())
}

/// `process_resident_memory_bytes` from the endpoint's `/metrics` (plain HTTP, as etcdctl reads
/// it); 0 after printing why when it cannot be read.
async fn resident_memory(ep: &str) -> f64 {
    const KEY: &str = "process_resident_memory_bytes";
    let host = ep.strip_prefix("http://").unwrap_or(ep);
    let url = format!("http://{host}/metrics");
    let body = match http_get(host).await {
        Ok(b) => b,
        Err(e) => {
            outln(&format!(
                "fetch error: Get {}: {e}",
                crate::gostr::quote(url.as_bytes())
            ));
            return 0.0;
        }
    };
    let Some(value) = body
        .lines()
        .find_map(|l| l.strip_prefix(KEY))
        .map(|v| v.trim().to_string())
    else {
        outln(&format!("could not find: {KEY}"));
        return 0.0;
    };
    match value.parse::<f64>() {
        Ok(v) => v,
        Err(_) => {
            outln(&format!(
                "parse error: strconv.ParseFloat: parsing {}: invalid syntax",
                crate::gostr::quote(value.as_bytes())
            ));
            0.0
        }
    }
}

/// GET /metrics over HTTP/1.0 (no chunking): the body as text.
async fn http_get(host: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string()))
}

/// cheggaaa/pb v1 with etcdctl's "Bom !" format, printed to stdout every 200 ms: counters, a
/// bar when stdout is a terminal, percent and the time left.
struct Bar {
    total: u64,
    current: AtomicU64,
    start: Instant,
    changed: Mutex<Instant>,
    done: AtomicBool,
    width: usize,
}

impl Bar {
    fn start(total: u64) -> Arc<Bar> {
        let width = if std::io::stdout().is_terminal() {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(80)
        } else {
            0
        };
        let bar = Arc::new(Bar {
            total,
            current: AtomicU64::new(0),
            start: Instant::now(),
            changed: Mutex::new(Instant::now()),
            done: AtomicBool::new(false),
            width,
        });
        bar.print();
        let b = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if b.done.load(Ordering::Acquire) {
                    return;
                }
                b.print();
            }
        });
        bar
    }

    fn add(&self, n: u64) {
        self.current.fetch_add(n, Ordering::AcqRel);
        *self.changed.lock().unwrap() = Instant::now();
    }

    fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.print();
            crate::print::out(b"\n");
        }
    }

    fn print(&self) {
        let line = self.render(self.current.load(Ordering::Acquire));
        crate::print::out(format!("\r{line}").as_bytes());
    }

    fn render(&self, current: u64) -> String {
        let total = self.total;
        let percent = if total > 0 {
            current as f64 / (total as f64 / 100.0)
        } else {
            current as f64 / 100.0
        };
        let percent_box = format!(" {percent:6.2}%");
        let counters = format!(" {current} / {total} ");
        let mut time_left = String::new();
        if current > 0 && current < total {
            let per = self.start.elapsed() / current as u32;
            let left = (per * (total - current) as u32)
                .saturating_sub(self.changed.lock().unwrap().elapsed());
            let left = Duration::from_secs(left.as_secs());
            if !left.is_zero() {
                time_left = format!(" {}", pb_duration(left));
            }
        }
        let fixed = counters.len() + 2 + percent_box.len() + time_left.len();
        let mut bar = String::new();
        if self.width > fixed && total > 0 {
            let size = self.width - fixed;
            let cur = ((current as f64 / total as f64) * size as f64).ceil() as usize;
            let cur = cur.min(size);
            let empty = size - cur;
            bar.push('B');
            if empty == 0 {
                bar.push_str(&"o".repeat(cur));
            } else if cur > 0 {
                bar.push_str(&"o".repeat(cur - 1));
                bar.push('m');
            }
            bar.push_str(&" ".repeat(empty));
            bar.push('!');
        }
        let out = format!("{counters}{bar}{percent_box}{time_left}");
        let pad = self.width.saturating_sub(out.chars().count());
        format!("{out}{}", " ".repeat(pad))
    }
}

/// pb's duration format: "00m59s", "1h02m03s".
fn pb_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = String::new();
    if s > 24 * 3600 {
        out.push_str(&format!("{}d", s / (24 * 3600)));
        s %= 24 * 3600;
    }
    if s > 3600 {
        out.push_str(&format!("{}h", s / 3600));
        s %= 3600;
    }
    out.push_str(&format!("{:02}m{:02}s", s / 60, s % 60));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_aliases() {
        assert_eq!(model("small"), Some("s"));
        assert_eq!(model("xLarge"), Some("xl"));
        assert_eq!(model("xxl"), None);
        assert_eq!(perf_cfg("s"), (150, 50, 60));
        assert_eq!(datascale_cfg("m"), (100_000, 1024, 200));
    }

    #[test]
    fn bar_without_terminal_like_pb() {
        let bar = Bar {
            total: 60,
            current: AtomicU64::new(0),
            start: Instant::now(),
            changed: Mutex::new(Instant::now()),
            done: AtomicBool::new(true),
            width: 0,
        };
        assert_eq!(bar.render(0), " 0 / 60    0.00%");
        assert_eq!(bar.render(60), " 60 / 60  100.00%");
        assert_eq!(pb_duration(Duration::from_secs(59)), "00m59s");
        assert_eq!(pb_duration(Duration::from_secs(3723)), "1h02m03s");
    }

    #[test]
    fn keys_have_the_prefix_and_size() {
        let mut g = KeyGen::new(256);
        let k = g.next("/p/");
        assert_eq!(k.len(), 3 + 256);
        assert!(k.starts_with(b"/p/"));
        assert_ne!(g.next("/p/"), k);
    }
}
