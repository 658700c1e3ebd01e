//! `make-mirror [options] <destination>`: copies every key (or those under
//! `--prefix`) of the source cluster (the global endpoints) to the
//! destination at one revision, then follows a watch from the next revision,
//! replaying each source revision as one txn on the destination, in order.
//! Like etcdctl 3.4 (mirror.Syncer + makeMirror): prints the number of keys
//! synced every 30 seconds, runs until killed (no signal handler: SIGINT and
//! SIGTERM end it as they end etcdctl), and exits 1 on a compacted watch or
//! any failed request.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::{
    request_op, watch_request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use oxcd_api::mvccpb::event::EventType;

use crate::cli::{GlobalArgs, MakeMirrorArgs};
use crate::client::Client;
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::global::{ClientConfig, TlsConfig};
use crate::print::outln;

/// mirror.batchLimit: keys per range request of the initial copy.
const BATCH_LIMIT: i64 = 1000;
/// How often etcdctl prints the running total.
const PRINT_EVERY: Duration = Duration::from_secs(30);
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// etcdctl's modifyPrefix: strings.Replace(key, prefix, dest, 1), i.e. the
/// first occurrence of `from` (the start of the key for an empty `from`).
fn modify_prefix(key: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let pos = if from.is_empty() {
        Some(0)
    } else {
        key.windows(from.len()).position(|w| w == from)
    };
    match pos {
        Some(i) => [&key[..i], to, &key[i + from.len()..]].concat(),
        None => key.to_vec(),
    }
}

/// The destination client: only the destination flags' TLS, no auth, the
/// global timeouts (etcdctl's clientConfig with acfg nil).
fn dest_config(a: &MakeMirrorArgs, src: &ClientConfig) -> ClientConfig {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ClientConfig {
        endpoints: vec![a.args[0].clone()],
        dial_timeout: src.dial_timeout,
        command_timeout: src.command_timeout,
        keepalive_time: src.keepalive_time,
        keepalive_timeout: src.keepalive_timeout,
        auth: None,
        tls: TlsConfig {
            cacert: opt(&a.dest_cacert),
            cert: opt(&a.dest_cert),
            key: opt(&a.dest_key),
            insecure_transport: a.dest_insecure_transport,
            insecure_skip_verify: false,
        },
    }
}

/// The range a prefix covers (clientv3.WithPrefix / WithFromKey on "\0"
/// for the whole key space).
fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), super::prefix_end(prefix))
    }
}

pub async fn run(g: &GlobalArgs, a: &MakeMirrorArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "make-mirror takes one destination argument",
        ));
    }
    let (src, _) = super::client(g).await?;
    let dst = Client::connect(&dest_config(a, &src.cfg)).await?;

    let total = Arc::new(AtomicI64::new(0));
    let printer = {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PRINT_EVERY).await;
                outln(&total.load(Ordering::Relaxed).to_string());
            }
        })
    };
    let res = mirror(&src, &dst, a, &total).await;
    printer.abort();
    res
}

async fn mirror(src: &Client, dst: &Client, a: &MakeMirrorArgs, total: &AtomicI64) -> Result<()> {
    let prefix = a.prefix.as_bytes();
    // SyncBase: the revision to copy at comes from a Get of "foo".
    let rev = src
        .range(RangeRequest {
            key: b"foo".to_vec(),
            ..Default::default()
        })
        .await?
        .header
        .map(|h| h.revision)
        .unwrap_or(0);

    // etcdctl checks the prefix flags only once the copy has started.
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix = if !a.no_dest_prefix && a.dest_prefix.is_empty() {
        a.prefix.as_bytes()
    } else {
        a.dest_prefix.as_bytes()
    };
    let map = |k: &[u8]| modify_prefix(k, prefix, dest_prefix);

    let (mut key, range_end) = prefix_range(prefix);
    loop {
        let resp = src
            .range(RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                limit: BATCH_LIMIT,
                revision: rev,
                ..Default::default()
            })
            .await?;
        for kv in &resp.kvs {
            dst.put(PutRequest {
                key: map(&kv.key),
                value: kv.value.clone(),
                ..Default::default()
            })
            .await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match resp.kvs.last() {
            Some(last) if resp.more => {
                key = last.key.clone();
                key.push(0);
            }
            _ => break,
        }
    }

    // SyncUpdates: watch from the next revision; one txn per source revision.
    let (wkey, wend) = prefix_range(prefix);
    let mut next_rev = rev + 1;
    loop {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: wkey.clone(),
                    range_end: wend.clone(),
                    start_revision: next_rev,
                    ..Default::default()
                },
            )),
        };
        let (_tx, mut stream) = src
            .open_bidi(vec![create], None, |ch, req| async move {
                WatchClient::new(ch).watch(req).await
            })
            .await?;
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                // Connection lost: resume where we were, as clientv3 does.
                Ok(None) | Err(_) => break,
            };
            if resp.compact_revision != 0 {
                return Err(CtlError::new(EXIT_ERROR, COMPACTED));
            }
            if resp.canceled {
                return Err(CtlError::new(EXIT_ERROR, resp.cancel_reason));
            }
            let mut ops: Vec<RequestOp> = Vec::new();
            let mut last_rev = 0;
            for ev in &resp.events {
                let Some(kv) = &ev.kv else { continue };
                if last_rev != 0 && kv.mod_revision > last_rev {
                    commit(dst, std::mem::take(&mut ops)).await?;
                }
                last_rev = kv.mod_revision;
                let req = if ev.r#type == EventType::Delete as i32 {
                    request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key: map(&kv.key),
                        ..Default::default()
                    })
                } else {
                    request_op::Request::RequestPut(PutRequest {
                        key: map(&kv.key),
                        value: kv.value.clone(),
                        ..Default::default()
                    })
                };
                ops.push(RequestOp { request: Some(req) });
                total.fetch_add(1, Ordering::Relaxed);
            }
            if !ops.is_empty() {
                commit(dst, ops).await?;
            }
            if last_rev != 0 {
                next_rev = last_rev + 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One revision's operations as one txn on the destination.
async fn commit(dst: &Client, ops: Vec<RequestOp>) -> Result<()> {
    dst.txn(TxnRequest {
        success: ops,
        ..Default::default()
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::modify_prefix;

    #[test]
    fn modify_prefix_like_strings_replace() {
        assert_eq!(modify_prefix(b"a/k", b"a/", b"b/"), b"b/k");
        assert_eq!(modify_prefix(b"a/k", b"a/", b""), b"k");
        assert_eq!(modify_prefix(b"k", b"", b"x/"), b"x/k");
        assert_eq!(modify_prefix(b"k", b"", b""), b"k");
        assert_eq!(modify_prefix(b"zz", b"q", b"r"), b"zz");
    }
}
