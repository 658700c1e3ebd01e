//! The scenarios: which run, their totals, and the throughput ones run as the other
//! subcommands' command lines.

use std::time::Duration;

use clap::Parser;
use oxcd_api::etcdserverpb::PutRequest;

use super::cluster::Cluster;
use super::{measure, take_panic, Throughput, Value};
use crate::conn::{self, err_text};
use crate::report::Summary;
use crate::{fail, kv, lease, varint_key, watch, Cli, Cmd, Global};

/// Every scenario, in table order.
pub const ALL: [&str; 12] = [
    "put-1",
    "put-100",
    "range-lin",
    "range-ser",
    "txn-put",
    "watch",
    "lease-keepalive",
    "mem-idle",
    "load-1m",
    "mem-1m",
    "disk-1m",
    "startup-1m",
];

/// The scenarios run on the second cluster, after `load-1m`, in this order.
const BIG: [&str; 4] = ["load-1m", "mem-1m", "disk-1m", "startup-1m"];

/// Key size of load-1m's keys (`--sequential-keys`: `--keys` distinct ones).
const LOAD_KEY_SIZE: usize = 16;

/// How much each scenario does.
#[derive(Clone, Debug)]
pub struct Totals {
    pub put1: usize,
    pub put100: usize,
    pub range: usize,
    pub txn: usize,
    /// Puts of the watch scenario; each is an event for 100 watchers.
    pub watch_puts: usize,
    pub lease: usize,
    pub keys: usize,
    /// Idle time after the start before mem-idle.
    pub idle: Duration,
    /// Idle time after load-1m before mem-1m's second look.
    pub settle: Duration,
    /// Restarts of a follower in startup-1m.
    pub restarts: usize,
}

impl Totals {
    pub fn new(quick: bool, keys: usize) -> Totals {
        if quick {
            Totals {
                put1: 200,
                put100: 2_000,
                range: 2_000,
                txn: 1_000,
                watch_puts: 20,
                lease: 2_000,
                keys,
                idle: Duration::from_secs(1),
                settle: Duration::from_secs(1),
                restarts: 3,
            }
        } else {
            Totals {
                put1: 5_000,
                put100: 100_000,
                range: 100_000,
                txn: 50_000,
                watch_puts: 1_000,
                lease: 100_000,
                keys,
                idle: Duration::from_secs(5),
                settle: Duration::from_secs(5),
                restarts: 3,
            }
        }
    }
}

/// The scenarios chosen, in table order, and their totals.
pub struct Plan {
    pub names: Vec<&'static str>,
    pub totals: Totals,
}

impl Plan {
    pub fn new(chosen: &[String], totals: Totals) -> Result<Plan, String> {
        for c in chosen {
            if !ALL.contains(&c.as_str()) {
                return Err(format!("unknown scenario {c:?} (one of {})", ALL.join(",")));
            }
        }
        let implies_load = chosen.iter().any(|c| BIG.contains(&c.as_str()));
        let names = ALL
            .into_iter()
            .filter(|n| {
                chosen.is_empty() || chosen.iter().any(|c| c == n) || (implies_load && *n == BIG[0])
            })
            .collect();
        Ok(Plan { names, totals })
    }

    /// The first cluster's scenarios in run order: mem-idle first, right after the start.
    pub fn small(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self
            .names
            .iter()
            .copied()
            .filter(|n| !BIG.contains(n))
            .collect();
        v.sort_by_key(|n| *n != "mem-idle");
        v
    }

    /// The second cluster's scenarios in run order.
    pub fn big(&self) -> Vec<&'static str> {
        BIG.into_iter().filter(|n| self.names.contains(n)).collect()
    }
}

/// The oxbench arguments (after `--endpoints`) of a throughput scenario.
pub fn args(name: &str, t: &Totals) -> Option<String> {
    let sizes = "--key-size 8 --val-size 256";
    let a = match name {
        "put-1" => format!(
            "--clients 1 --conns 1 put {sizes} --total {} --key-space-size 100000",
            t.put1
        ),
        "put-100" => format!(
            "--clients 100 --conns 10 put {sizes} --total {} --key-space-size 100000",
            t.put100
        ),
        "range-lin" | "range-ser" => format!(
            "--clients 100 --conns 10 range foo --consistency {} --total {}",
            if name == "range-lin" { "l" } else { "s" },
            t.range
        ),
        "txn-put" => format!(
            "--clients 100 --conns 10 txn-put {sizes} --txn-ops 1 --total {} --key-space-size 100000",
            t.txn
        ),
        "watch" => format!(
            "--clients 10 --conns 10 watch --streams 10 --watch-per-stream 100 \
             --watched-key-total 10 --key-space-size 10 --sequential-keys --put-total {}",
            t.watch_puts
        ),
        "lease-keepalive" => format!(
            "--clients 100 --conns 10 lease-keepalive --total {}",
            t.lease
        ),
        "load-1m" => format!(
            "--clients 200 --conns 20 put --key-size {LOAD_KEY_SIZE} --val-size 256 --total {0} \
             --key-space-size {0} --sequential-keys",
            t.keys
        ),
        _ => return None,
    };
    Some(a)
}

/// Runs one scenario on the cluster.
pub fn run(
    c: &mut Cluster,
    name: &'static str,
    t: &Totals,
    timeout: Duration,
) -> Result<Value, String> {
    match name {
        "mem-idle" => measure::mem_idle(c, t.idle),
        "mem-1m" => measure::mem_loaded(c, t.settle),
        "disk-1m" => measure::disk(c),
        "startup-1m" => measure::startup(c, &varint_key(LOAD_KEY_SIZE, 0), t.restarts),
        _ => {
            let args = args(name, t).ok_or_else(|| format!("no scenario {name}"))?;
            let eps: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
            let mut argv = vec![
                "oxbench".to_string(),
                "--endpoints".to_string(),
                eps.join(","),
            ];
            argv.extend(args.split_whitespace().map(String::from));
            let s = bench(argv, name.starts_with("range-"), timeout)?;
            throughput(&s, name != "watch").map(Value::Throughput)
        }
    }
}

/// Runs an oxbench command line in-process on a runtime of its own (whatever it leaves
/// running is dropped with it); a `fail` or panic anywhere in it is the scenario's error.
fn bench(argv: Vec<String>, put_foo: bool, timeout: Duration) -> Result<Summary, String> {
    let cli = Cli::try_parse_from(&argv).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    take_panic();
    let res = rt.block_on(async move {
        let task = tokio::spawn(async move {
            if put_foo {
                put_key(&cli.global, b"foo").await;
            }
            dispatch(&cli.global, &cli.cmd).await
        });
        let panicked = async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(p) = take_panic() {
                    return p;
                }
            }
        };
        tokio::select! {
            r = task => r.map_err(|e| take_panic().unwrap_or_else(|| e.to_string())),
            p = panicked => Err(p),
            _ = tokio::time::sleep(timeout) => Err(format!("timed out after {timeout:?}")),
        }
    });
    rt.shutdown_background();
    res
}

async fn dispatch(g: &Global, cmd: &Cmd) -> Summary {
    match cmd {
        Cmd::Put(a) => kv::put_run(g, a).await,
        Cmd::Range(a) => kv::range_run(g, a).await,
        Cmd::TxnPut(a) => kv::txn_put_run(g, a).await,
        Cmd::Watch(a) => watch::watch_run(g, a, |_| {}).await,
        Cmd::LeaseKeepalive(a) => lease::keepalive_run(g, a).await,
        _ => fail("not a compare scenario"),
    }
}

/// The key the range scenarios read.
async fn put_key(g: &Global, key: &[u8]) {
    let c = conn::clients(g, 1, 1).await.remove(0);
    let req = PutRequest {
        key: key.to_vec(),
        value: b"bar".to_vec(),
        ..Default::default()
    };
    if let Err(s) = c.kv().put(c.req(req)).await {
        fail(&err_text(&s));
    }
}

/// The table's numbers from a report; an error when no request succeeded.
fn throughput(s: &Summary, latency: bool) -> Result<Throughput, String> {
    let st = &s.stats;
    let mut errors: Vec<(String, usize)> = st.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if st.lats.is_empty() {
        let errs: Vec<String> = errors.iter().map(|(e, n)| format!("[{n}] {e}")).collect();
        return Err(format!("no request succeeded: {}", errs.join("; ")));
    }
    // Nearest rank.
    let rank = (st.lats.len() as f64 * 0.99).ceil() as usize;
    let p99 = st.lats[rank.clamp(1, st.lats.len()) - 1];
    Ok(Throughput {
        rps: st.rps,
        avg_ms: latency.then_some(st.average * 1e3),
        p99_ms: latency.then_some(p99 * 1e3),
        count: st.lats.len(),
        secs: st.total,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_orders_and_implies_load() {
        let p = Plan::new(&[], Totals::new(true, 10)).unwrap();
        assert_eq!(p.names, ALL.to_vec());
        assert_eq!(p.small()[0], "mem-idle");
        assert_eq!(p.big(), BIG.to_vec());
        let p = Plan::new(&["disk-1m".into(), "put-1".into()], Totals::new(true, 10)).unwrap();
        assert_eq!(p.names, vec!["put-1", "load-1m", "disk-1m"]);
        assert!(Plan::new(&["nope".into()], Totals::new(true, 10)).is_err());
    }

    #[test]
    fn every_throughput_scenario_parses() {
        let t = Totals::new(false, 1_000_000);
        for name in ALL {
            let Some(a) = args(name, &t) else { continue };
            let mut argv = vec!["oxbench".to_string()];
            argv.extend(a.split_whitespace().map(String::from));
            Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
