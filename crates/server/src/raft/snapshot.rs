//! Raft snapshots: copies of the whole MVCC database in `<data-dir>/member/snap`, sent to a
//! follower that needs entries the leader's WAL no longer holds.
//!
//! A snapshot is the file `<term>-<index>.snap.db` (both 16 hex digits, etcd's snapshot naming):
//! a redb database made by [`MvccStore::snapshot_to`] whose consistent index and term are those of
//! the name. The raft `Snapshot` that travels in `MsgSnapshot` carries only that file name as its
//! data; the file itself is streamed separately (`SendSnapshot`) and lands under the same name in
//! the receiver's snap dir before the message is stepped into its raft node.
//!
//! Leader side, [`Snapshotter`] produces them on demand, in the background: raft asks
//! `Storage::snapshot`, which answers "temporarily unavailable" while a copy is being written and
//! the snapshot once it is there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::mvcc::MvccStore;

const SUFFIX: &str = ".snap.db";
/// Produced or received snapshot files kept in the snap dir (plus any not installed yet).
/// etcd's --max-snapshots default; 0 keeps every file.
pub const DEFAULT_MAX_SNAPSHOTS: usize = 5;
/// After a failed attempt, how long before producing a snapshot is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// How long after raft last took a snapshot the WAL keeps the entries right after it, so the
/// follower that installs it can go on with entries instead of needing another snapshot.
const PIN_ENTRIES_FOR: Duration = Duration::from_secs(60);

/// `<term>-<index>.snap.db`.
pub fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

/// (term, index) of a snapshot file name; None for anything else (including paths).
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    let term = u64::from_str_radix(term, 16).ok()?;
    let index = u64::from_str_radix(index, 16).ok()?;
    Some((term, index))
}

/// Snapshot files in `dir` as (index, term, path), oldest first.
pub fn list(dir: &Path) -> Vec<(u64, u64, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if let Some((term, index)) = name.to_str().and_then(parse_file_name) {
            out.push((index, term, e.path()));
        }
    }
    out.sort();
    out
}

/// Deletes snapshot files but the newest `keep` (0: none deleted), never one newer than `applied`
/// (a received snapshot not installed yet), and every leftover temporary file when `tmp_too`.
pub fn purge(dir: &Path, applied: u64, tmp_too: bool, keep: usize) {
    let files = list(dir);
    let n = files.len();
    for (i, (index, _, path)) in files.into_iter().enumerate() {
        if keep > 0 && i + keep < n && index <= applied {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("failed to remove old snapshot {}: {e}", path.display());
            }
        }
    }
    if tmp_too {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                // `.part`: a client's snapshot (Maintenance.Snapshot) cut short by a crash.
                let leftover = |n: &str| n.ends_with(".tmp") || n.ends_with(".part");
                if e.file_name().to_str().is_some_and(leftover) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A snapshot file ready to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub index: u64,
    pub term: u64,
    pub name: String,
}

#[derive(Default)]
struct State {
    ready: Option<Ready>,
    producing: bool,
    failed_at: Option<Instant>,
    /// Index of the snapshot raft last took, and when.
    served: Option<(u64, Instant)>,
}

/// Produces snapshot files of the store in the background, one at a time.
pub struct Snapshotter {
    dir: PathBuf,
    /// --max-snapshots: snapshot files kept on disk.
    keep: usize,
    store: Arc<MvccStore>,
    state: Mutex<State>,
}

impl Snapshotter {
    /// Leftover temporary files in `dir` (a crash mid-copy or mid-receive) are removed.
    pub fn new(dir: PathBuf, store: Arc<MvccStore>, keep: usize) -> Arc<Snapshotter> {
        purge(&dir, 0, true, keep);
        Arc::new(Snapshotter {
            dir,
            keep,
            store,
            state: Mutex::new(State::default()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest produced snapshot if its index is at least `min_index` and its file is still
    /// there; otherwise starts producing one (unless one is being produced, or the store has
    /// nothing newer) and returns None. Never blocks: called from the raft node thread.
    pub fn get(self: &Arc<Self>, min_index: u64) -> Option<Ready> {
        let mut st = self.state.lock();
        if let Some(r) = st.ready.clone() {
            if r.index >= min_index && self.dir.join(&r.name).exists() {
                st.served = Some((r.index, Instant::now()));
                return Some(r);
            }
        }
        if st.producing
            || st
                .failed_at
                .is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE)
        {
            return None;
        }
        let applied = self.store.consistent_index();
        if applied < min_index || st.ready.as_ref().is_some_and(|r| r.index >= applied) {
            // Nothing newer to copy yet (the apply loop is behind the log's start).
            return None;
        }
        st.producing = true;
        drop(st);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || me.produce());
        if let Err(e) = spawned {
            tracing::warn!("failed to start creating a database snapshot: {e}");
            let mut st = self.state.lock();
            st.producing = false;
            st.failed_at = Some(Instant::now());
        }
        None
    }

    /// The highest index the WAL may be compacted to now: a snapshot raft took recently is
    /// probably still on its way to a follower, which will need the entries after it.
    pub fn compact_limit(&self) -> Option<u64> {
        let st = self.state.lock();
        st.served
            .filter(|(_, at)| at.elapsed() < PIN_ENTRIES_FOR)
            .map(|(index, _)| index)
    }

    fn produce(&self) {
        let start = Instant::now();
        let r = self.write_file();
        let mut st = self.state.lock();
        st.producing = false;
        match r {
            Ok(ready) => {
                let size = std::fs::metadata(self.dir.join(&ready.name)).map_or(0, |m| m.len());
                tracing::info!(
                    "snapshot-index" = ready.index,
                    "snapshot-term" = ready.term,
                    "snapshot-size" = %human_size(size),
                    took = ?start.elapsed(),
                    "created database snapshot"
                );
                st.ready = Some(ready);
                st.failed_at = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to create database snapshot");
                st.failed_at = Some(Instant::now());
            }
        }
        drop(st);
        purge(&self.dir, self.store.consistent_index(), false, self.keep);
    }

    fn write_file(&self) -> anyhow::Result<Ready> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self
            .dir
            .join(format!("{:016x}.create.tmp", self.store.consistent_index()));
        let (index, term) = match self.store.snapshot_to(&tmp) {
            Ok(it) => it,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        let name = file_name(term, index);
        std::fs::rename(&tmp, self.dir.join(&name))?;
        sync_dir(&self.dir)?;
        Ok(Ready { index, term, name })
    }
}

/// fsync of a directory, so a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Bytes as etcd prints sizes in logs ("3.2 MB").
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = file_name(3, 0x1234);
        assert_eq!(n, "0000000000000003-0000000000001234.snap.db");
        assert_eq!(parse_file_name(&n), Some((3, 0x1234)));
        assert_eq!(parse_file_name("../x.snap.db"), None);
        assert_eq!(parse_file_name("db"), None);
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
    }

    #[test]
    fn purge_keeps_newest_and_pending() {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=5 {
            std::fs::write(dir.path().join(file_name(1, i * 10)), b"x").unwrap();
        }
        std::fs::write(dir.path().join("00.recv.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("client-snapshot-1-1.db.part"), b"x").unwrap();
        // Index 50 is newer than what is applied: kept whatever the count.
        purge(dir.path(), 40, true, 2);
        let left: Vec<u64> = list(dir.path()).iter().map(|f| f.0).collect();
        assert_eq!(left, vec![40, 50]);
        assert!(!dir.path().join("00.recv.tmp").exists());
        assert!(!dir.path().join("client-snapshot-1-1.db.part").exists());
    }

    #[test]
    fn produces_in_the_background_then_serves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MvccStore::open(&dir.path().join("snap/db")).unwrap());
        let set_index = |i: u64| {
            let mut b = store.write().unwrap();
            b.set_consistent_index(i, 2);
            b.commit(false).unwrap();
        };
        set_index(40);
        std::fs::write(
            dir.path()
                .join("snap/0000000000000001-0000000000000007.snap.db"),
            b"x",
        )
        .unwrap();
        std::fs::write(dir.path().join("snap/7.recv.tmp"), b"x").unwrap();
        let s = Snapshotter::new(dir.path().join("snap"), store.clone(), 2);
        assert!(!dir.path().join("snap/7.recv.tmp").exists());
        // Nothing applied reaches index 41: nothing to produce.
        assert_eq!(s.get(41), None);
        assert!(!s.state.lock().producing);
        let mut got = None;
        for _ in 0..500 {
            got = s.get(30);
            if got.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = got.expect("a snapshot within 5 s");
        assert_eq!((r.index, r.term), (40, 2));
        assert_eq!(r.name, file_name(2, 40));
        assert!(dir.path().join("snap").join(&r.name).exists());
        // Served again while usable; replaced once raft needs a later one.
        assert_eq!(s.get(40), Some(r.clone()));
        assert_eq!(s.compact_limit(), Some(40));
        set_index(90);
        assert_eq!(s.get(50), None);
        let mut later = None;
        for _ in 0..500 {
            later = s.get(50);
            if later.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(later.expect("a newer snapshot").index, 90);
        let left: Vec<u64> = list(&dir.path().join("snap")).iter().map(|f| f.0).collect();
        assert_eq!(left, vec![40, 90]);
    }
}
