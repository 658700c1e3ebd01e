//! `stm`: software transactional memory transactions as the Go client's `concurrency.STM`
//! runs them: read the keys, buffer the writes, commit in one txn that checks nothing read
//! has changed since, and retry the whole transaction when it has.

use std::collections::{HashMap, HashSet};

use clap::Args;
use oxcd_api::etcdserverpb::{
    compare, request_op, Compare, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use oxcd_api::v3lockpb::{LockRequest, UnlockRequest};

use crate::conn::{self, err_text, Conn};
use crate::progress::Bar;
use crate::report::Recorder;
use crate::{fail, rand_bytes, run_pool, varint_key, Global, Limiter};

#[derive(Args, Debug)]
pub struct StmArgs {
    /// Read Committed (c), Repeatable Reads (r), Serializable (s), or Snapshot (ss)
    #[arg(long, default_value = "r")]
    isolation: String,
    /// Total unique keys accessible by the benchmark
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    keys: i64,
    /// Total number of completed STM transactions
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Number of keys to access per transaction
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    keys_per_txn: i64,
    /// Percentage of keys to overwrite per transaction
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    txn_wr_percent: i64,
    /// Wrap STM transaction with a custom locking mechanism (stm, lock-rpc)
    #[arg(long, default_value = "stm")]
    stm_locker: String,
    /// Value size of each STM put request
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum STM transactions per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    ReadCommitted,
    Repeatable,
    Serializable,
    Snapshot,
}

struct Txn {
    keys: Vec<Vec<u8>>,
    writes: usize,
    val_size: usize,
    iso: Isolation,
}

/// One STM transaction, retried until its commit succeeds.
async fn run(c: &Conn, t: &Txn) -> Result<(), String> {
    loop {
        let mut read_rev: HashMap<&[u8], i64> = HashMap::new();
        let mut first_rev = 0;
        for k in &t.keys {
            // Serializable and snapshot isolation read every key at the first read's revision.
            let at = match t.iso {
                Isolation::Serializable | Isolation::Snapshot => first_rev,
                _ => 0,
            };
            let req = RangeRequest {
                key: k.clone(),
                revision: at,
                serializable: at != 0,
                ..Default::default()
            };
            let r = c.kv().range(c.req(req)).await.map_err(|s| err_text(&s))?;
            let r = r.into_inner();
            let hdr = r.header.map_or(0, |h| h.revision);
            if first_rev == 0 {
                first_rev = hdr;
            }
            let rev = r.kvs.first().map_or(hdr, |kv| kv.mod_revision);
            read_rev.insert(k, rev);
        }
        let compare = if t.iso == Isolation::ReadCommitted {
            vec![]
        } else {
            t.keys
                .iter()
                .map(|k| Compare {
                    result: compare::CompareResult::Less as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: k.clone(),
                    target_union: Some(compare::TargetUnion::ModRevision(read_rev[&k[..]] + 1)),
                    ..Default::default()
                })
                .collect()
        };
        let success = t
            .keys
            .iter()
            .take(t.writes)
            .map(|k| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: k.clone(),
                    value: rand_bytes(t.val_size),
                    ..Default::default()
                })),
            })
            .collect();
        let req = TxnRequest {
            compare,
            success,
            failure: vec![],
        };
        let r = c.kv().txn(c.req(req)).await.map_err(|s| err_text(&s))?;
        if r.into_inner().succeeded {
            return Ok(());
        }
    }
}

/// A session lease as the Go client's `concurrency.NewSession` makes it: 60 s, kept alive in
/// the background every 20 s for as long as the program runs.
async fn session(c: &Conn) -> i64 {
    let id = c
        .lease()
        .lease_grant(c.req(LeaseGrantRequest { ttl: 60, id: 0 }))
        .await
        .unwrap_or_else(|s| fail(&err_text(&s)))
        .into_inner()
        .id;
    let c = c.clone();
    tokio::spawn(async move {
        // The first keep-alive is queued before the call: a server may send the response
        // headers only with its first answer.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(LeaseKeepAliveRequest { id }).await;
        let Ok(resp) = c
            .lease()
            .lease_keep_alive(c.req(tokio_stream::wrappers::ReceiverStream::new(rx)))
            .await
        else {
            return;
        };
        let mut resp = resp.into_inner();
        while let Ok(Some(_)) = resp.message().await {
            tokio::time::sleep(std::time::Duration::from_secs(20)).await;
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                return;
            }
        }
    });
    id
}

pub async fn stm(g: &Global, a: &StmArgs) {
    if a.keys <= 0 {
        fail(&format!("expected positive --keys, got ({})", a.keys));
    }
    if !(0..=100).contains(&a.txn_wr_percent) {
        fail(&format!(
            "expected [0, 100] --txn-wr-percent, got ({})",
            a.txn_wr_percent
        ));
    }
    if a.keys_per_txn < 0 || a.keys_per_txn > a.keys {
        fail(&format!(
            "expected --keys-per-txn between 0 and {}, got ({})",
            a.keys, a.keys_per_txn
        ));
    }
    let iso = match a.isolation.as_str() {
        "c" => Isolation::ReadCommitted,
        "r" => Isolation::Repeatable,
        "s" => Isolation::Serializable,
        "ss" => Isolation::Snapshot,
        _ => fail("Usage:\n  oxbench stm [flags]"),
    };
    let lock_rpc = match a.stm_locker.as_str() {
        "stm" => false,
        "lock-rpc" => true,
        other => fail(&format!("unexpected stm locker {other:?}")),
    };
    let clients = conn::clients(g, g.clients, g.conns).await;
    // With lock-rpc each client holds a session lease and takes the Lock service's "stmlock"
    // around every transaction.
    let mut workers = Vec::with_capacity(clients.len());
    for c in clients {
        let lease = if lock_rpc {
            Some(session(&c).await)
        } else {
            None
        };
        workers.push((c, lease));
    }
    let (keys, per_txn, pct, val_size) = (
        a.keys,
        a.keys_per_txn as usize,
        a.txn_wr_percent,
        a.val_size,
    );
    let bar = Bar::start(a.total as u64);
    let rec = Recorder::new();
    run_pool(
        &workers,
        a.total,
        Limiter::new(a.rate),
        move |_| {
            let mut set = HashSet::new();
            while set.len() != per_txn {
                set.insert(varint_key(16, rand::random_range(0..keys)));
            }
            Txn {
                writes: (per_txn as f32 * pct as f32 / 100.0) as usize,
                keys: set.into_iter().collect(),
                val_size,
                iso,
            }
        },
        |(c, lease): (Conn, Option<i64>), t: Txn| async move {
            let Some(lease) = lease else {
                return run(&c, &t).await;
            };
            let req = LockRequest {
                name: b"stmlock".to_vec(),
                lease,
            };
            let key = c
                .lock()
                .lock(c.req(req))
                .await
                .map_err(|s| err_text(&s))?
                .into_inner()
                .key;
            let r = run(&c, &t).await;
            c.lock()
                .unlock(c.req(UnlockRequest { key }))
                .await
                .map_err(|s| err_text(&s))?;
            r
        },
        &rec,
        &bar,
    )
    .await;
    bar.finish();
    print!("{}", rec.finish(g.precision(), g.sample));
}
