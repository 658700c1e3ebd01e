//! Load for the defragmentation measurement in `docs/benchmarks.md` (works against oxcd and
//! etcd alike: plain etcd v3 gRPC).
//!
//! ```text
//! defrag_load fill  --endpoint HOST:PORT --keys N --value-size BYTES [--keep PERCENT]
//! defrag_load load  --endpoint HOST:PORT --seconds S [--writers W] [--readers R]
//! ```
//!
//! `fill` writes N keys of BYTES each (16 at a time), deletes all but `--keep` percent of them
//! and compacts at the last revision: a large file with mostly free pages.
//!
//! `load` runs W writers (puts of 128-byte values over 1000 keys) and R readers (linearizable
//! gets) for S seconds, each request with a 30 s deadline, and prints one JSON line: requests,
//! failures, the longest latency of a write and of a read, and every request slower than 100 ms
//! (start as Unix time in ms, latency in ms), so a stall can be placed on the timeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
use tonic::transport::Channel;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

async fn connect(endpoint: &str) -> KvClient<Channel> {
    let ch = Channel::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    KvClient::new(ch).max_decoding_message_size(64 << 20)
}

async fn fill(endpoint: &str, keys: usize, size: usize, keep: usize) {
    let value = vec![b'x'; size];
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (mut c, value) = (connect(endpoint).await, value.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..keys).step_by(16) {
                c.put(PutRequest {
                    key: format!("fill/{i:08}").into_bytes(),
                    value: value.clone(),
                    ..Default::default()
                })
                .await
                .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = connect(endpoint).await;
    // Delete all but every (100/keep)-th key.
    let step = 100 / keep.max(1);
    let mut deleted = 0;
    for i in 0..keys {
        if keep > 0 && i % step == 0 {
            continue;
        }
        c.delete_range(DeleteRangeRequest {
            key: format!("fill/{i:08}").into_bytes(),
            ..Default::default()
        })
        .await
        .expect("delete");
        deleted += 1;
    }
    let rev = c
        .range(RangeRequest {
            key: b"fill/".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner()
        .header
        .unwrap()
        .revision;
    c.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .expect("compact");
    println!("{{\"filled\":{keys},\"deleted\":{deleted},\"compacted\":{rev}}}");
}

#[derive(Default)]
struct Stats {
    ok: u64,
    failed: u64,
    max_ms: f64,
    slow: Vec<(u128, u128)>,
    errors: Vec<String>,
}

async fn load(endpoint: &str, seconds: u64, writers: usize, readers: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..writers + readers {
        let (mut c, stop) = (connect(endpoint).await, stop.clone());
        let is_writer = w < writers;
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            let mut i = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("load/{:04}", i % 1000).into_bytes();
                let t = Instant::now();
                let fut = async {
                    if is_writer {
                        c.put(PutRequest {
                            key,
                            value: vec![b'v'; 128],
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                    } else {
                        c.range(RangeRequest {
                            key,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                    }
                };
                let r = tokio::time::timeout(Duration::from_secs(30), fut).await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match r {
                    Ok(Ok(())) => st.ok += 1,
                    Ok(Err(e)) => {
                        st.failed += 1;
                        st.errors.push(e.message().to_string());
                    }
                    Err(_) => {
                        st.failed += 1;
                        st.errors.push("timeout".into());
                    }
                }
                st.max_ms = st.max_ms.max(ms);
                if ms >= 100.0 {
                    let at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        - t.elapsed().as_millis();
                    st.slow.push((at, t.elapsed().as_millis()));
                }
            }
            (is_writer, st)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut w, mut r) = (Stats::default(), Stats::default());
    for t in tasks {
        let (is_writer, st) = t.await.unwrap();
        let to = if is_writer { &mut w } else { &mut r };
        to.ok += st.ok;
        to.failed += st.failed;
        to.max_ms = to.max_ms.max(st.max_ms);
        to.slow.extend(st.slow);
        to.errors.extend(st.errors);
    }
    w.slow.sort_unstable();
    r.slow.sort_unstable();
    w.errors.truncate(5);
    r.errors.truncate(5);
    println!(
        "{{\"writes\":{},\"write_failures\":{},\"max_write_ms\":{:.1},\"reads\":{},\"read_failures\":{},\"max_read_ms\":{:.1},\"slow_writes\":{:?},\"slow_reads\":{:?},\"errors\":{:?}}}",
        w.ok, w.failed, w.max_ms, r.ok, r.failed, r.max_ms, w.slow, r.slow,
        [w.errors, r.errors].concat()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = arg(&args, "--endpoint", "127.0.0.1:2379");
    match args.get(1).map(String::as_str) {
        Some("fill") => {
            fill(
                &endpoint,
                arg(&args, "--keys", "10000").parse().unwrap(),
                arg(&args, "--value-size", "10000").parse().unwrap(),
                arg(&args, "--keep", "10").parse().unwrap(),
            )
            .await
        }
        Some("load") => {
            load(
                &endpoint,
                arg(&args, "--seconds", "10").parse().unwrap(),
                arg(&args, "--writers", "4").parse().unwrap(),
                arg(&args, "--readers", "2").parse().unwrap(),
            )
            .await
        }
        _ => {
            eprintln!("usage: defrag_load fill|load --endpoint HOST:PORT ...");
            std::process::exit(2);
        }
    }
}
