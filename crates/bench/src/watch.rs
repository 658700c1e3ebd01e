//! `watch`, `watch-get` and `watch-latency`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use clap::Args;
use oxcd_api::etcdserverpb::{
    watch_request, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::conn::{self, err_text, Conn};
use crate::progress::Bar;
use crate::report::{Recorder, Summary};
use crate::{fail, rand_bytes, varint_key, Global, Limiter};

fn create(key: Vec<u8>, start_revision: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key,
                start_revision,
                ..Default::default()
            },
        )),
    }
}

/// Opens a watch stream whose first requests are already queued (a server may send the
/// response headers only with its first message). The sender stays open for more requests.
async fn open(
    c: &Conn,
    first: Vec<WatchRequest>,
) -> (mpsc::Sender<WatchRequest>, Streaming<WatchResponse>) {
    let (tx, rx) = mpsc::channel(first.len() + 16);
    for r in first {
        tx.send(r).await.expect("queue watch request");
    }
    match c.watch().watch(c.req(ReceiverStream::new(rx))).await {
        Ok(s) => (tx, s.into_inner()),
        Err(s) => fail(&format!("Failed to create watch stream: {}", err_text(&s))),
    }
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Total watch streams
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Total watchers per stream
    #[arg(long, default_value_t = 100)]
    watch_per_stream: usize,
    /// Total number of keys to be watched
    #[arg(long, default_value_t = 1)]
    watched_key_total: usize,
    /// Number of keys to put per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    put_rate: u64,
    /// Number of put requests
    #[arg(long, default_value_t = 1000)]
    put_total: usize,
    /// Key size of watch request
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
    /// Use sequential keys
    #[arg(long)]
    sequential_keys: bool,
}

pub async fn watch(g: &Global, a: &WatchArgs) {
    let prec = g.precision();
    let events = watch_run(g, a, |created| {
        print!("Watch creation summary:\n{}", created.render(prec));
    })
    .await;
    print!("Watch events received summary:\n{}", events.render(prec));
}

/// Runs `watch`: hands the watch creation summary to `on_created` once every watcher is made,
/// and returns the summary of the events received.
pub async fn watch_run(g: &Global, a: &WatchArgs, on_created: impl FnOnce(Summary)) -> Summary {
    if a.key_space_size <= 0 {
        fail(&format!(
            "expected positive --key-space-size, got ({})",
            a.key_space_size
        ));
    }
    let grpc_conns = g.clients.min(g.conns);
    let wanted = 1 + a.streams / 100;
    if grpc_conns < wanted {
        eprintln!(
            "warning: grpc limits 100 streams per client connection, have {grpc_conns} but need {wanted}"
        );
    }
    let clients = conn::clients(g, g.clients, g.conns).await;
    let watched: Vec<Vec<u8>> = (0..a.watched_key_total.max(1))
        .map(|i| {
            let n = if a.sequential_keys {
                i as i64 % a.key_space_size
            } else {
                rand::random_range(0..a.key_space_size)
            };
            varint_key(a.key_size, n)
        })
        .collect();
    let mut num_watchers: HashMap<Vec<u8>, usize> = HashMap::new();

    // Creation: each stream creates its watchers; a watcher is made when its create
    // request is answered.
    let creates = a.streams * a.watch_per_stream;
    let bar = Bar::start(creates as u64);
    let rec = Recorder::new();
    let events: Arc<OnceLock<(Recorder, Bar)>> = Arc::new(OnceLock::new());
    let remaining = Arc::new(AtomicI64::new(i64::MAX));
    let all_events = Arc::new(Notify::new());
    let (created, mut created_rx) = mpsc::unbounded_channel::<()>();
    let mut live = Vec::new();
    for s in 0..a.streams {
        let c = clients[s % clients.len()].clone();
        let keys: Vec<Vec<u8>> = (0..a.watch_per_stream)
            .map(|j| watched[(s * a.watch_per_stream + j) % watched.len()].clone())
            .collect();
        for k in &keys {
            *num_watchers.entry(k.clone()).or_default() += 1;
        }
        let (rec, bar, events, remaining, all_events, created) = (
            rec.clone(),
            bar.clone(),
            events.clone(),
            remaining.clone(),
            all_events.clone(),
            created.clone(),
        );
        live.push(tokio::spawn(async move {
            let mut starts: VecDeque<Instant> = VecDeque::new();
            let reqs: Vec<WatchRequest> = keys
                .into_iter()
                .map(|k| {
                    starts.push_back(Instant::now());
                    create(k, 0)
                })
                .collect();
            let want = reqs.len();
            let (_tx, mut stream) = open(&c, reqs).await;
            let mut made = 0;
            if want == 0 {
                let _ = created.send(());
            }
            loop {
                let msg = match stream.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(s) => fail(&format!("watch stream failed: {}", err_text(&s))),
                };
                if msg.created {
                    if let Some(st) = starts.pop_front() {
                        rec.done(st, None);
                        bar.inc();
                    }
                    made += 1;
                    if made == want {
                        let _ = created.send(());
                    }
                }
                for _ in &msg.events {
                    let Some((erec, ebar)) = events.get() else {
                        continue;
                    };
                    erec.done(Instant::now(), None);
                    ebar.inc();
                    if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                        all_events.notify_one();
                    }
                }
            }
        }));
    }
    for _ in 0..a.streams {
        let _ = created_rx.recv().await;
    }
    bar.finish();
    on_created(rec.summary(g.sample));

    // Puts: every put of a watched key is one event for each watcher of that key.
    let events_total: usize = (0..a.put_total)
        .map(|i| {
            num_watchers
                .get(&watched[i % watched.len()])
                .copied()
                .unwrap_or(0)
        })
        .sum();
    let ebar = Bar::start(events_total as u64);
    let erec = Recorder::new();
    remaining.store(events_total as i64, Ordering::SeqCst);
    let _ = events.set((erec.clone(), ebar.clone()));
    let (tx, rx) = mpsc::channel::<Vec<u8>>(clients.len());
    let put_total = a.put_total;
    let keys = watched.clone();
    tokio::spawn(async move {
        for i in 0..put_total {
            if tx.send(keys[i % keys.len()].clone()).await.is_err() {
                break;
            }
        }
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let limit = Limiter::new(a.put_rate);
    for c in &clients {
        let (c, rx, limit) = (c.clone(), rx.clone(), limit.clone());
        tokio::spawn(async move {
            loop {
                let key = rx.lock().await.recv().await;
                let Some(key) = key else { break };
                limit.wait().await;
                let req = PutRequest {
                    key,
                    value: b"data".to_vec(),
                    ..Default::default()
                };
                if let Err(s) = c.kv().put(c.req(req)).await {
                    fail(&err_text(&s));
                }
            }
        });
    }
    if events_total > 0 {
        all_events.notified().await;
    }
    ebar.finish();
    let summary = erec.summary(g.sample);
    for t in live {
        t.abort();
    }
    summary
}

#[derive(Args, Debug)]
pub struct WatchGetArgs {
    /// Total number of watchers
    #[arg(long, default_value_t = 10000)]
    watchers: usize,
    /// Total number of watcher streams
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Number of events per watcher
    #[arg(long, default_value_t = 8)]
    events: usize,
}

pub async fn watch_get(g: &Global, a: &WatchGetArgs) {
    let clients = conn::clients(g, g.clients, g.conns).await;
    let get_client = conn::clients(g, 1, 1).await.remove(0);
    let mut watch_rev = 0;
    for i in 0..a.events {
        let c = &clients[0];
        let req = PutRequest {
            key: b"watchkey".to_vec(),
            value: i.to_string().into_bytes(),
            ..Default::default()
        };
        let resp = c
            .kv()
            .put(c.req(req))
            .await
            .unwrap_or_else(|s| fail(&err_text(&s)));
        if i == 0 {
            watch_rev = resp.into_inner().header.map_or(0, |h| h.revision);
        }
    }
    let streams = a.streams.max(1);
    let bar = Bar::start((a.watchers * a.events) as u64);
    let rec = Recorder::new();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Serializable gets while the unsynced watchers catch up.
    let getter = {
        let (rec, stopped) = (rec.clone(), stopped.clone());
        tokio::spawn(async move {
            while !stopped.load(Ordering::SeqCst) {
                let st = Instant::now();
                let req = RangeRequest {
                    key: b"abc".to_vec(),
                    serializable: true,
                    ..Default::default()
                };
                let r = get_client.kv().range(get_client.req(req)).await;
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                rec.done(st, r.err().map(|s| err_text(&s)));
            }
        })
    };

    let mut tasks = Vec::new();
    for s in 0..streams {
        let watchers = (0..a.watchers).filter(|i| i % streams == s).count();
        let c = clients[s % clients.len()].clone();
        let bar = bar.clone();
        let want = (watchers * a.events) as u64;
        tasks.push(tokio::spawn(async move {
            if watchers == 0 {
                return;
            }
            let reqs = (0..watchers)
                .map(|_| create(b"watchkey".to_vec(), watch_rev))
                .collect();
            let (_tx, mut stream) = open(&c, reqs).await;
            let mut got = 0u64;
            while got < want {
                match stream.message().await {
                    Ok(Some(m)) => {
                        got += m.events.len() as u64;
                        bar.add(m.events.len() as u64);
                    }
                    Ok(None) => break,
                    Err(s) => fail(&format!("watch stream failed: {}", err_text(&s))),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stopped.store(true, Ordering::SeqCst);
    let _ = getter.await;
    bar.finish();
    print!(
        "Get during watch summary:\n{}",
        rec.finish(g.precision(), g.sample)
    );
}

#[derive(Args, Debug)]
pub struct WatchLatencyArgs {
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
    /// Number of keys to put per second
    #[arg(long, default_value_t = 100)]
    put_rate: u64,
    /// Key size of watch response
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Value size of watch response
    #[arg(long, default_value_t = 32)]
    val_size: usize,
}

pub async fn watch_latency(g: &Global, a: &WatchLatencyArgs) {
    let key = rand_bytes(a.key_size);
    let value = rand_bytes(a.val_size);
    let clients = conn::clients(g, g.clients, g.conns).await;
    let put_client = conn::clients(g, 1, 1).await.remove(0);

    // One watcher per client; each forwards the arrival time of every event.
    let mut arrivals = Vec::new();
    let mut ready = Vec::new();
    for c in &clients {
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        arrivals.push(rx);
        let (c, key) = (c.clone(), key.clone());
        let (rtx, rrx) = tokio::sync::oneshot::channel::<()>();
        ready.push(rrx);
        tokio::spawn(async move {
            let (_tx, mut stream) = open(&c, vec![create(key, 0)]).await;
            let mut rtx = Some(rtx);
            while let Ok(Some(m)) = stream.message().await {
                if m.created {
                    if let Some(r) = rtx.take() {
                        let _ = r.send(());
                    }
                }
                for _ in &m.events {
                    let _ = tx.send(Instant::now());
                }
            }
        });
    }
    for r in ready {
        let _ = r.await;
    }

    let bar = Bar::start(a.total as u64);
    let rec = Recorder::new();
    let limit = Limiter::new(a.put_rate);
    for _ in 0..a.total {
        limit.wait().await;
        let st = Instant::now();
        let req = PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        };
        if let Err(s) = put_client.kv().put(put_client.req(req)).await {
            fail(&format!(
                "Failed to Put for watch latency benchmark: {}",
                err_text(&s)
            ));
        }
        for rx in arrivals.iter_mut() {
            match rx.recv().await {
                Some(at) => rec.done_at(st, at, None),
                None => fail("watch stream ended"),
            }
        }
        bar.inc();
    }
    bar.finish();
    print!("{}", rec.finish(g.precision(), g.sample));
}
