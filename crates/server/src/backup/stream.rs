//! The server side of Maintenance `Snapshot`: a consistent point-in-time copy of this member's
//! backend, streamed as etcd streams it.
//!
//! The copy ([`MvccStore::snapshot_to`], one redb read transaction) is written to a temporary
//! file in the snap dir, which is unlinked as soon as it is open again for reading, so nothing
//! is left behind whatever happens to the stream. Then the file goes out in 32 KiB chunks, each
//! with the bytes still to come after it (`remaining_bytes`), and a last message whose blob is
//! the SHA-256 of everything sent before (remaining 0), which the client appends to the file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oxcd_api::etcdserverpb::SnapshotResponse;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::file::Hasher;
use crate::mvcc::MvccStore;

/// Bytes per message, as etcd's server sends them.
pub const CHUNK: usize = 32 * 1024;

/// Messages buffered ahead of a slow client.
const QUEUE: usize = 16;

/// The prefix of the temporary copies in the snap dir.
pub const TEMP_PREFIX: &str = "client-snapshot-";

/// Removes a file when dropped (unless it was already removed).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts copying the backend into `snap_dir` in a blocking thread and returns the stream of
/// `SnapshotResponse`s. A client that goes away stops the copy at its next message.
pub fn snapshot_stream(
    store: Arc<MvccStore>,
    snap_dir: PathBuf,
) -> ReceiverStream<Result<SnapshotResponse, Status>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        if let Err(st) = produce(&store, &snap_dir, &tx) {
            tracing::warn!("failed to send snapshot to a client: {}", st.message());
            let _ = tx.blocking_send(Err(st));
        }
    });
    ReceiverStream::new(rx)
}

fn temp_path(dir: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "{TEMP_PREFIX}{}-{}.db.part",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn produce(
    store: &MvccStore,
    dir: &Path,
    tx: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), Status> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Status::internal(format!("snapshot: create {}: {e}", dir.display())))?;
    let path = temp_path(dir);
    let guard = RemoveOnDrop(path.clone());
    let (index, _) = store.snapshot_to(&path)?;
    let mut f = std::fs::File::open(&path)
        .map_err(|e| Status::internal(format!("snapshot: open {}: {e}", path.display())))?;
    // Unlinked now; the open file stays readable.
    drop(guard);
    let total = f
        .metadata()
        .map_err(|e| Status::internal(format!("snapshot: stat: {e}")))?
        .len();
    tracing::info!(
        "size" = total,
        "consistent-index" = index,
        "sending database snapshot to client"
    );
    let mut remaining = total;
    let mut sha = Hasher::default();
    while remaining > 0 {
        let want = (remaining as usize).min(CHUNK);
        let mut blob = vec![0u8; want];
        f.read_exact(&mut blob)
            .map_err(|e| Status::internal(format!("snapshot: read: {e}")))?;
        sha.update(&blob);
        remaining -= want as u64;
        let msg = SnapshotResponse {
            remaining_bytes: remaining,
            blob,
            ..Default::default()
        };
        if tx.blocking_send(Ok(msg)).is_err() {
            // The client went away.
            return Ok(());
        }
    }
    let _ = tx.blocking_send(Ok(SnapshotResponse {
        remaining_bytes: 0,
        blob: sha.finish().to_vec(),
        ..Default::default()
    }));
    tracing::info!("size" = total, "sent database snapshot to client");
    Ok(())
}
