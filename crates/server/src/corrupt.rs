//! Corruption checks, as etcd 3.4 runs them:
//!
//! - `--experimental-initial-corrupt-check`: a member restarting with data compares its HashKV
//!   at its own revision with each peer's at that revision, before raft starts and before it
//!   serves anything; a peer that has the same compact revision and a different hash makes it
//!   refuse to start (`<id> found data inconsistency with peers`). Peers that cannot answer
//!   (down, behind, compacted past the revision) are logged and skipped.
//! - `--experimental-corrupt-check-time`: every interval the leader hashes its state, asks every
//!   peer for its hash at the leader's revision, and raises a CORRUPT alarm (through raft) for a
//!   member whose revision or compact revision is ahead of the leader's, or whose hash differs
//!   at the same compact revision; for itself if its own hash changed at an unchanged revision.
//!
//! Peers answer over the peer protocol (`oxcdpeer.Peer/HashKv`), as etcd's peers answer over
//! their peer URLs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::etcdserverpb::{AlarmRequest, AlarmType, InternalRaftRequest};
use oxcd_api::oxcdpeer::peer_client::PeerClient;
use oxcd_api::oxcdpeer::{HashKvRequest, HashKvResponse};

use crate::config::Config;
use crate::error::{EtcdError, Result};
use crate::membership::ClusterInfo;
use crate::mvcc::MvccStore;
use crate::server::{request_timeout, EtcdServer};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// (hash, revision, compact revision) of the store at its current revision.
pub fn hash_now(store: &MvccStore) -> Result<(u32, i64, i64)> {
    loop {
        let before = store.current_revision();
        let (hash, compact) = store.hash_kv(0)?;
        if store.current_revision() == before {
            return Ok((hash, before, compact));
        }
    }
}

/// This member's answer to a peer's `HashKv`.
pub fn local_hash_kv(store: &MvccStore, member_id: u64, revision: i64) -> Result<HashKvResponse> {
    let (hash, revision, compact_revision) = if revision == 0 {
        hash_now(store)?
    } else {
        let (h, c) = store.hash_kv(revision)?;
        (h, store.current_revision(), c)
    };
    Ok(HashKvResponse {
        member_id,
        revision,
        hash,
        compact_revision,
    })
}

/// One peer's answer (or why there is none).
struct PeerHash {
    id: u64,
    endpoints: Vec<String>,
    resp: std::result::Result<HashKvResponse, EtcdError>,
}

fn remote_error(status: &tonic::Status) -> EtcdError {
    [EtcdError::Compacted, EtcdError::FutureRev]
        .into_iter()
        .find(|e| e.to_string() == status.message())
        .unwrap_or_else(|| EtcdError::Internal(status.message().to_string()))
}

/// Asks every peer (all members but `local_id`) for its hash at `revision`, trying each of its
/// peer URLs in turn, all peers at once.
async fn peer_hashes(
    dialer: &crate::tls::PeerDialer,
    info: &ClusterInfo,
    local_id: u64,
    revision: i64,
    timeout: Duration,
) -> Vec<PeerHash> {
    let peers: Vec<(u64, Vec<String>)> = info
        .members
        .iter()
        .filter(|m| m.id != local_id)
        .map(|m| (m.id, m.peer_urls.clone()))
        .collect();
    let asks = peers.into_iter().map(|(id, urls)| async move {
        let mut last = EtcdError::Internal("no peer URL".to_string());
        for url in &urls {
            match ask(dialer, url, revision, timeout).await {
                Ok(r) => {
                    return PeerHash {
                        id,
                        endpoints: urls.clone(),
                        resp: Ok(r),
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "local-member-id" = %format_args!("{local_id:x}"),
                        "requested-revision" = revision,
                        "remote-peer-endpoint" = %url,
                        error = %e,
                        "failed hash kv request"
                    );
                    last = e;
                }
            }
        }
        PeerHash {
            id,
            endpoints: urls,
            resp: Err(last),
        }
    });
    futures::future::join_all(asks).await
}

async fn ask(
    dialer: &crate::tls::PeerDialer,
    url: &str,
    revision: i64,
    timeout: Duration,
) -> std::result::Result<HashKvResponse, EtcdError> {
    let endpoint = crate::tls::PeerDialer::endpoint(url)
        .map_err(|e| EtcdError::Internal(format!("{url}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout);
    let ch = dialer.connect_lazy(url, endpoint);
    let call = async move {
        PeerClient::new(ch)
            .hash_kv(HashKvRequest { revision })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| remote_error(&s))
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(EtcdError::Timeout))
}

/// Runs `f` to completion on a runtime of its own, from synchronous start-up code (which may
/// itself run inside a runtime).
fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the initial corruption check")
                .block_on(f)
        })
        .join()
        .expect("initial corruption check panicked")
    })
}

/// The refusal to start on a damaged backend file: names the file and says what is wrong.
fn damaged(path: &std::path::Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the backend database file {} is damaged ({what}); refusing to start rather than serve \
         wrong data: restore this member from a snapshot, or remove it and add it back",
        path.display()
    )
}

/// Opens the member's backend, refusing a damaged file with a message naming it: an empty file
/// where the WAL says data was written, a file that is not a database or is truncated, or one
/// whose pages cannot be read back.
pub fn open_backend(
    path: &std::path::Path,
    wal_dir: &std::path::Path,
) -> anyhow::Result<MvccStore> {
    let wal_has_data = std::fs::read_dir(wal_dir).is_ok_and(|mut d| d.next().is_some());
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 && wal_has_data => return Err(damaged(path, "the file is empty")),
        Ok(m) if m.len() > 0 => {
            // Opened on its own first, for redb's own verdict on the file.
            let probe = std::panic::catch_unwind(|| open_checked(path))
                .map_err(|panic| damaged(path, &panic_text(&*panic)))?;
            match probe {
                Ok(()) => {}
                Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(what))) => {
                    return Err(damaged(path, &what))
                }
                // A page that points past the end of the file reads short: damage too.
                Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Err(damaged(path, &e.to_string()))
                }
                Err(e) => anyhow::bail!("opening backend {}: {e}", path.display()),
            }
        }
        _ => {}
    }
    // Reading every key back (the index rebuild) may trip over a damaged page.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| MvccStore::open(path))) {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e)) => Err(anyhow::anyhow!("opening backend {}: {e}", path.display())),
        Err(panic) => Err(damaged(path, &panic_text(&*panic))),
    }
}

/// Opens the database at `path` and has redb verify every page's checksum before the handle is
/// closed. Closing writes to the file; on some damaged files redb panics in there and panics
/// again while unwinding, which aborts the process (found by fuzzing). A handle on a file that
/// failed the check, or whose check panicked, is leaked instead of closed.
pub fn open_checked(path: &std::path::Path) -> Result<(), redb::DatabaseError> {
    let mut db = crate::mvcc::open_db(path)?;
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.check_integrity()));
    match verdict {
        Ok(Ok(_repaired_or_sound)) => {
            drop(db);
            Ok(())
        }
        Ok(Err(e)) => {
            std::mem::forget(db);
            Err(e)
        }
        Err(panic) => {
            std::mem::forget(db);
            std::panic::resume_unwind(panic)
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "reading it failed".to_string())
}

/// `--experimental-initial-corrupt-check` on a restarting member, before raft starts.
pub fn initial_check(cfg: &Config, store: &MvccStore, info: &ClusterInfo) -> anyhow::Result<()> {
    let local = info.local_id;
    let timeout = request_timeout(cfg);
    tracing::info!(
        "local-member-id" = %format_args!("{local:x}"),
        timeout = ?timeout,
        "starting initial corruption check"
    );
    let (hash, rev, crev) = hash_now(store)?;
    let dialer = crate::tls::PeerDialer::from_config(cfg);
    let peers = block_on(peer_hashes(&dialer, info, local, rev, timeout));
    let mut mismatch = 0;
    for p in peers {
        let eps = p.endpoints.join(",");
        match p.resp {
            Ok(r) if r.hash != hash => {
                // Equal compact revisions and different hashes: the data differs. Different
                // compact revisions hash different histories, which proves nothing.
                let same_compaction = r.compact_revision == crev;
                let what = if same_compaction {
                    mismatch += 1;
                    "found different hash values from remote peer"
                } else {
                    "found different compact revision values from remote peer"
                };
                tracing::warn!(
                    "local-member-id" = %format_args!("{local:x}"),
                    "local-member-revision" = rev,
                    "local-member-compact-revision" = crev,
                    "local-member-hash" = hash,
                    "remote-peer-id" = %format_args!("{:x}", p.id),
                    "remote-peer-endpoints" = %eps,
                    "remote-peer-compact-revision" = r.compact_revision,
                    "remote-peer-hash" = r.hash,
                    "{what}"
                );
            }
            Ok(_) => {}
            Err(e) => {
                let msg = match e {
                    EtcdError::FutureRev => "cannot fetch hash from slow remote peer",
                    EtcdError::Compacted => {
                        "cannot fetch hash from remote peer; local member is behind"
                    }
                    _ => continue,
                };
                tracing::warn!(
                    "local-member-id" = %format_args!("{local:x}"),
                    "local-member-revision" = rev,
                    "local-member-compact-revision" = crev,
                    "local-member-hash" = hash,
                    "remote-peer-id" = %format_args!("{:x}", p.id),
                    "remote-peer-endpoints" = %eps,
                    error = %e,
                    "{msg}"
                );
            }
        }
    }
    if mismatch > 0 {
        bail!("{local:x} found data inconsistency with peers");
    }
    tracing::info!(
        "local-member-id" = %format_args!("{local:x}"),
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// Starts the leader's periodic check (`--experimental-corrupt-check-time`), if enabled.
pub fn spawn_monitor(server: Arc<EtcdServer>) {
    let interval = server.cfg.corrupt_check_time;
    if interval.is_zero() {
        return;
    }
    tracing::info!(
        "local-member-id" = %format_args!("{:x}", server.member_id()),
        interval = ?interval,
        "enabled corruption checking"
    );
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if !server.is_leader() {
                continue;
            }
            if let Err(e) = check(&server).await {
                tracing::warn!(error = %e, "failed to check hash KV");
            }
        }
    });
}

/// One pass of the leader's check.
async fn check(server: &Arc<EtcdServer>) -> Result<()> {
    let store = server.store.clone();
    let (h, rev, crev) = tokio::task::spawn_blocking(move || hash_now(&store))
        .await
        .map_err(|e| EtcdError::Internal(e.to_string()))??;
    let info = server.membership.snapshot();
    let peers = peer_hashes(
        server.transport.dialer(),
        &info,
        server.member_id(),
        rev,
        request_timeout(&server.cfg),
    )
    .await;
    server.read_index().await?;
    let store = server.store.clone();
    let (h2, rev2, crev2) = tokio::task::spawn_blocking(move || hash_now(&store))
        .await
        .map_err(|e| EtcdError::Internal(e.to_string()))??;

    let mut alarmed = false;
    let mut mismatch = |id: u64| {
        if alarmed {
            return;
        }
        alarmed = true;
        let server = server.clone();
        tokio::spawn(async move {
            let req = InternalRaftRequest {
                alarm: Some(AlarmRequest {
                    action: AlarmAction::Activate as i32,
                    member_id: id,
                    alarm: AlarmType::Corrupt as i32,
                }),
                ..Default::default()
            };
            let _ = server.propose(req).await;
        });
    };

    if h2 != h && rev2 == rev && crev == crev2 {
        tracing::warn!(
            "revision-1" = rev,
            "compact-revision-1" = crev,
            "hash-1" = h,
            "revision-2" = rev2,
            "compact-revision-2" = crev2,
            "hash-2" = h2,
            "found hash mismatch"
        );
        mismatch(server.member_id());
    }
    let mut checked = 0;
    for p in peers {
        let Ok(r) = p.resp else { continue };
        checked += 1;
        let id = r.member_id;
        let peer = format!("{id:x}");
        if r.revision > rev2 {
            tracing::warn!(
                "leader-revision" = rev2,
                "follower-revision" = r.revision,
                "follower-peer-id" = %peer,
                "revision from follower must be less than or equal to leader's"
            );
            mismatch(id);
        }
        if r.compact_revision > crev2 {
            tracing::warn!(
                "leader-compact-revision" = crev2,
                "follower-compact-revision" = r.compact_revision,
                "follower-peer-id" = %peer,
                "compact revision from follower must be less than or equal to leader's"
            );
            mismatch(id);
        }
        if r.compact_revision == crev && r.hash != h {
            tracing::warn!(
                "leader-compact-revision" = crev,
                "leader-hash" = h,
                "follower-compact-revision" = r.compact_revision,
                "follower-hash" = r.hash,
                "follower-peer-id" = %peer,
                "same compact revision then hashes must match"
            );
            mismatch(id);
        }
    }
    tracing::info!(
        "number-of-peers-checked" = checked,
        "finished peer corruption check"
    );
    Ok(())
}
