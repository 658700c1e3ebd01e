//! `put`, `range`, `txn-put` and `txn-mixed`.

use std::time::{Duration, Instant};

use clap::Args;
use oxcd_api::etcdserverpb::{
    request_op, CompactionRequest, HashKvRequest, PutRequest, RangeRequest, RequestOp,
    StatusRequest, TxnRequest,
};

use crate::conn::{self, err_text, Conn};
use crate::progress::Bar;
use crate::report::{Recorder, Summary};
use crate::{fail, gofmt, rand_bytes, run_pool, varint_key, Global, Limiter};

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Key size of put request
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of put request
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum puts per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
    /// Use sequential keys
    #[arg(long)]
    sequential_keys: bool,
    /// Interval to compact database (e.g. --compact-interval=5m compacts every 5-minute)
    #[arg(long, default_value = "0", value_parser = gofmt::parse_go_duration)]
    compact_interval: Duration,
    /// Delta between current revision and compact revision (e.g. current revision 10000, compact at 9000)
    #[arg(long, default_value_t = 1000)]
    compact_index_delta: i64,
    /// 'true' to check hashkv
    #[arg(long)]
    check_hashkv: bool,
}

fn check_key_space(n: i64) {
    if n <= 0 {
        fail(&format!("expected positive --key-space-size, got ({n})"));
    }
}

pub async fn put(g: &Global, a: &PutArgs) {
    let summary = put_run(g, a).await;
    println!("{}", summary.render(g.precision()));
    if a.check_hashkv {
        hash_kv(g).await;
    }
}

/// Runs `put` without printing the report.
pub async fn put_run(g: &Global, a: &PutArgs) -> Summary {
    check_key_space(a.key_space_size);
    let clients = conn::clients(g, g.clients, g.conns).await;
    let value = rand_bytes(a.val_size);
    let (ks, seq, key_size) = (a.key_space_size, a.sequential_keys, a.key_size);
    let bar = Bar::start(a.total as u64);
    let rec = Recorder::new();
    if !a.compact_interval.is_zero() {
        let (c, every, delta) = (
            clients[0].clone(),
            a.compact_interval,
            a.compact_index_delta,
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                compact(&c, delta).await;
            }
        });
    }
    run_pool(
        &clients,
        a.total,
        Limiter::new(a.rate),
        move |i| {
            let n = if seq {
                i as i64 % ks
            } else {
                rand::random_range(0..ks)
            };
            PutRequest {
                key: varint_key(key_size, n),
                value: value.clone(),
                ..Default::default()
            }
        },
        |c: Conn, req: PutRequest| async move {
            c.kv()
                .put(c.req(req))
                .await
                .map(|_| ())
                .map_err(|s| err_text(&s))
        },
        &rec,
        &bar,
    )
    .await;
    bar.finish();
    rec.summary(g.sample)
}

/// Compacts to `delta` revisions behind the current one.
async fn compact(c: &Conn, delta: i64) {
    let resp = c
        .kv()
        .range(c.req(RangeRequest {
            key: b"foo".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap_or_else(|s| fail(&err_text(&s)));
    let rev = resp.into_inner().header.map_or(0, |h| h.revision);
    let req = CompactionRequest {
        revision: (rev - delta).max(0),
        physical: false,
    };
    if let Err(s) = c.kv().compact(c.req(req)).await {
        fail(&err_text(&s));
    }
}

async fn hash_kv(g: &Global) {
    let host = conn::first_endpoint(g);
    let c = conn::single(g, &host).await;
    let st = Instant::now();
    let hash = match c
        .maintenance()
        .hash_kv(c.req(HashKvRequest { revision: 0 }))
        .await
    {
        Ok(r) => r.into_inner().hash,
        Err(s) => fail(&format!(
            "Failed to get the hashkv of endpoint {host} ({})",
            err_text(&s)
        )),
    };
    let took = st.elapsed();
    let db = match c.maintenance().status(c.req(StatusRequest {})).await {
        Ok(r) => r.into_inner().db_size,
        Err(s) => fail(&format!(
            "Failed to get the status of endpoint {host} ({})",
            err_text(&s)
        )),
    };
    println!(
        "HashKV Summary:\n\tHashKV: {hash}\n\tEndpoint: {host}\n\tTime taken to get hashkv: {}\n\tDB size: {}",
        gofmt::go_duration(took),
        gofmt::humanize_bytes(db.max(0) as u64)
    );
}

#[derive(Args, Debug)]
pub struct RangeArgs {
    /// key (the first key of the range)
    #[arg(id = "range_key", value_name = "KEY")]
    key: String,
    /// end of the range (exclusive)
    #[arg(id = "range_end", value_name = "END")]
    end: Option<String>,
    /// Maximum range requests per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of range requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Maximum number of results to return from range request (0 is no limit)
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// Only returns the count of keys
    #[arg(long)]
    count_only: bool,
}

/// Prints the consistency banner; false for an unknown level.
fn consistency_banner(c: &str) -> bool {
    match c {
        "l" => println!("bench with linearizable range"),
        "s" => println!("bench with serializable range"),
        _ => return false,
    }
    true
}

pub async fn range(g: &Global, a: &RangeArgs) {
    if !consistency_banner(&a.consistency) {
        fail("Usage:\n  oxbench range key [end-range] [flags]");
    }
    let summary = range_run(g, a).await;
    print!("{}", summary.render(g.precision()));
}

/// Runs `range` (of a known consistency) without printing anything.
pub async fn range_run(g: &Global, a: &RangeArgs) -> Summary {
    let clients = conn::clients(g, g.clients, g.conns).await;
    let req = RangeRequest {
        key: a.key.as_bytes().to_vec(),
        range_end: a.end.clone().unwrap_or_default().into_bytes(),
        limit: a.limit,
        serializable: a.consistency == "s",
        count_only: a.count_only,
        ..Default::default()
    };
    let bar = Bar::start(a.total as u64);
    let rec = Recorder::new();
    run_pool(
        &clients,
        a.total,
        Limiter::new(a.rate),
        move |_| req.clone(),
        |c: Conn, req: RangeRequest| async move {
            c.kv()
                .range(c.req(req))
                .await
                .map(|_| ())
                .map_err(|s| err_text(&s))
        },
        &rec,
        &bar,
    )
    .await;
    bar.finish();
    rec.summary(g.sample)
}

#[derive(Args, Debug)]
pub struct TxnPutArgs {
    /// Key size of txn put
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of txn put
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Number of puts per txn
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    txn_ops: i64,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

pub async fn txn_put(g: &Global, a: &TxnPutArgs) {
    let summary = txn_put_run(g, a).await;
    println!("{}", summary.render(g.precision()));
}

/// Runs `txn-put` without printing the report.
pub async fn txn_put_run(g: &Global, a: &TxnPutArgs) -> Summary {
    check_key_space(a.key_space_size);
    if a.txn_ops <= 0 {
        fail(&format!("expected positive --txn-ops, got ({})", a.txn_ops));
    }
    let clients = conn::clients(g, g.clients, g.conns).await;
    let value = rand_bytes(a.val_size);
    let (ops, ks, key_size) = (a.txn_ops, a.key_space_size, a.key_size);
    let bar = Bar::start(a.total as u64);
    let rec = Recorder::new();
    run_pool(
        &clients,
        a.total,
        Limiter::new(a.rate),
        move |i| TxnRequest {
            success: (0..ops)
                .map(|j| {
                    let n = (i as i64 * ops + j) % ks;
                    put_op(varint_key(key_size, n), value.clone())
                })
                .collect(),
            ..Default::default()
        },
        |c: Conn, req: TxnRequest| async move {
            c.kv()
                .txn(c.req(req))
                .await
                .map(|_| ())
                .map_err(|s| err_text(&s))
        },
        &rec,
        &bar,
    )
    .await;
    bar.finish();
    rec.summary(g.sample)
}

#[derive(Args, Debug)]
pub struct TxnMixedArgs {
    /// key (accepted as etcd's tool accepts it; reads cover the whole key space)
    #[arg(id = "mixed_key", value_name = "KEY")]
    key: Option<String>,
    /// end of the range (accepted, unused, as in etcd's tool)
    #[arg(id = "mixed_end", value_name = "END")]
    end: Option<String>,
    /// Key size of mixed txn
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of mixed txn
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Read operation range end key. By default, we do full range query with the default limit of 1000.
    #[arg(long, default_value = "")]
    end_key: String,
    /// Read operation range result limit
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Read/write ops ratio
    #[arg(long, default_value_t = 1.0)]
    rw_ratio: f64,
}

pub async fn txn_mixed(g: &Global, a: &TxnMixedArgs) {
    check_key_space(a.key_space_size);
    if !consistency_banner(&a.consistency) {
        fail("Usage:\n  oxbench txn-mixed key [end-range] [flags]");
    }
    let clients = conn::clients(g, g.clients, g.conns).await;
    let value = rand_bytes(a.val_size);
    let (ks, key_size, limit, ratio) = (a.key_space_size, a.key_size, a.limit, a.rw_ratio);
    let serializable = a.consistency == "s";
    let bar = Bar::start(a.total as u64);
    let reads = Recorder::new();
    let writes = Recorder::new();
    let read_ops = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let write_ops = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (r2, w2) = (read_ops.clone(), write_ops.clone());
    // One recorder per kind: the pool's own recorder is unused, each request records itself.
    let unused = Recorder::new();
    let (rr, wr) = (reads.clone(), writes.clone());
    run_pool(
        &clients,
        a.total,
        Limiter::new(a.rate),
        move |i| {
            use std::sync::atomic::Ordering::Relaxed;
            if rand::random::<f64>() < ratio / (1.0 + ratio) {
                r2.fetch_add(1, Relaxed);
                // The whole key space from "\0" (a prefix of nothing), limited.
                let op = RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: vec![0],
                        range_end: vec![0],
                        limit,
                        serializable,
                        ..Default::default()
                    })),
                };
                (false, op)
            } else {
                w2.fetch_add(1, Relaxed);
                let n = i as i64 % ks;
                (true, put_op(varint_key(key_size, n), value.clone()))
            }
        },
        move |c: Conn, (write, op): (bool, RequestOp)| {
            let (rr, wr) = (rr.clone(), wr.clone());
            async move {
                let st = Instant::now();
                let req = TxnRequest {
                    success: vec![op],
                    ..Default::default()
                };
                let r = c.kv().txn(c.req(req)).await;
                let err = r.err().map(|s| err_text(&s));
                if write { &wr } else { &rr }.done(st, err);
                Ok(())
            }
        },
        &unused,
        &bar,
    )
    .await;
    bar.finish();
    use std::sync::atomic::Ordering::Relaxed;
    print!("Total Read Ops: {}\nDetails:", read_ops.load(Relaxed));
    println!("{}", reads.finish(g.precision(), g.sample));
    print!("Total Write Ops: {}\nDetails:", write_ops.load(Relaxed));
    println!("{}", writes.finish(g.precision(), g.sample));
}
