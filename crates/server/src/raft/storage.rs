//! Raft log and hard state on raft-engine: the member's write-ahead log.
//!
//! Everything raft must remember across a crash lives here: the entries, the `HardState`
//! (term, vote, commit), the `ConfState`, and the index/term at which the log was last compacted.
//! Writes are batched per `Ready` and fsync'd before raft is told they are persisted.

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::sync::{Arc, OnceLock};

/// etcd's `warnSyncDuration`: a WAL sync slower than this is logged as a slow fdatasync.
const WARN_SYNC_DURATION: std::time::Duration = std::time::Duration::from_secs(1);

use parking_lot::{Mutex, RwLock};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{
    Config as EngineConfig, Engine, LogBatch, MessageExt, ReadableSize, RecoveryMode,
};

use super::entry_cache::EntryCache;
use super::snapshot::Snapshotter;

/// raft-engine keeps many raft groups apart by id; a member has exactly one.
const GROUP: u64 = 1;
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
/// Where the log of a freshly bootstrapped member starts: right after this index.
pub const BOOTSTRAP_INDEX: u64 = 1;

#[derive(Clone)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// What `Storage` needs that raft-engine does not keep in its memtable, cached in memory.
#[derive(Default)]
struct Cached {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry folded into the state machine and dropped from the log.
    snapshot_meta: SnapshotMetadata,
}

/// The WAL. Cheap to clone: clones share the engine.
#[derive(Clone)]
pub struct WalStorage {
    engine: Arc<Engine>,
    cached: Arc<RwLock<Cached>>,
    /// Serialises the writers of the snapshot metadata: compaction (apply thread) and snapshot
    /// install (node thread).
    meta_lock: Arc<Mutex<()>>,
    /// Produces the snapshots raft sends to lagging followers; unset in tests that need none.
    snapshotter: Arc<OnceLock<Arc<Snapshotter>>>,
    /// The newest entries, so raft's term and entry look-ups near the tail skip the file.
    tail: Arc<Mutex<EntryCache>>,
}

fn engine_config(dir: &Path, mode: RecoveryMode) -> EngineConfig {
    EngineConfig {
        dir: dir.to_string_lossy().into_owned(),
        recovery_mode: mode,
        // Proposals are small; compressing every batch costs more latency than it saves.
        batch_compression_threshold: ReadableSize::kb(64),
        target_file_size: ReadableSize::mb(64),
        // raft-engine purges compacted files only once the log passes this size; at 1 GiB a
        // busy member kept (and replayed at every start) a gigabyte of log it no longer needed.
        // etcd keeps five 64 MiB WAL files (`--max-wals`).
        purge_threshold: ReadableSize::mb(256),
        // No reuse of purged files: a reused file keeps its old records after the new header,
        // and if a crash cut the header's rewrite, the torn-tail check (`is_torn_tail`) would
        // take those stale records for intact data after the damage. Fresh files hold only
        // what was written to them.
        enable_log_recycle: false,
        ..Default::default()
    }
}

/// raft-engine's name for a file of its append queue.
const LOG_SUFFIX: &str = ".raftlog";
/// raft-engine's file header: magic, format version, alignment (format 2).
const LOG_FILE_HEADER_LEN: usize = 53 + 8 + 8;
/// raft-engine's batch header: length and compression type, offset of the item footer.
const BATCH_HEADER_LEN: usize = 16;

/// The append-queue log file with the highest sequence number: the one being written.
fn last_log_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seq: u64 = name.strip_suffix(LOG_SUFFIX)?.parse().ok()?;
            Some((seq, e.path()))
        })
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, p)| p)
}

/// Opens the engine refusing any damage; if it is damaged, opens it again letting raft-engine
/// cut the last file at its first bad record, and keeps that only if what was cut off is a
/// torn tail. Otherwise the file is put back as it was and the start refused.
fn open_engine(dir: &Path) -> anyhow::Result<Engine> {
    check_headers(dir)?;
    let strict = match Engine::open(engine_config(dir, RecoveryMode::AbsoluteConsistency)) {
        Ok(engine) => return Ok(engine),
        Err(raft_engine::Error::Io(e)) => anyhow::bail!("opening WAL {}: {e}", dir.display()),
        Err(e) => e,
    };
    let last = last_log_file(dir);
    let original = match &last {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("reading WAL file {}", p.display()))?)
        }
        None => None,
    };
    let lenient = Engine::open(engine_config(dir, RecoveryMode::TolerateTailCorruption));
    let (Some(last), Some(original)) = (last, original) else {
        anyhow::bail!("WAL {} is damaged: {strict}", dir.display());
    };
    let kept = std::fs::metadata(&last).map_or(0, |m| m.len() as usize);
    // A last file no longer than a header holds no entry: a crash or a full disk stopped its
    // creation (raft-engine writes the header first), and raft-engine gives it a fresh header.
    // The soak's full-disk scenario left such files empty.
    let torn = original.len() <= LOG_FILE_HEADER_LEN
        || (kept <= original.len() && is_torn_tail(&original, kept));
    match lenient {
        Ok(engine) if torn => {
            if kept < original.len() {
                tracing::warn!(
                    path = %last.display(),
                    offset = kept,
                    "dropped-bytes" = original.len() - kept,
                    "repaired the torn tail of the last WAL file"
                );
            }
            Ok(engine)
        }
        other => {
            let lenient_failed = other.is_err();
            drop(other);
            let now = std::fs::read(&last).ok();
            if now.as_deref() != Some(&original[..]) {
                // Leave the evidence as it was found.
                let mut f = std::fs::File::create(&last)
                    .with_context(|| format!("restoring WAL file {}", last.display()))?;
                std::io::Write::write_all(&mut f, &original)?;
                f.sync_all()?;
            }
            if lenient_failed {
                // The damage is not in the last file: name the first file that does not read
                // as a chain of well-formed records, if one does not.
                let file = damaged_file(dir, &last);
                let what = file.as_deref().unwrap_or(dir).display().to_string();
                anyhow::bail!("WAL file {what} is damaged: {strict}");
            }
            anyhow::bail!(
                "WAL file {} is damaged at offset {kept}, with intact records after the damage \
                 (not a torn tail): {strict}",
                last.display()
            )
        }
    }
}

/// The first log file other than `last` (by name) whose records do not run from its header to
/// its end.
fn damaged_file(dir: &Path, last: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.as_path() != last)
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(LOG_SUFFIX) || n.ends_with(".rewrite"))
        })
        .collect();
    files.sort();
    files.into_iter().find(|p| {
        std::fs::read(p).is_ok_and(|b| {
            b.len() > LOG_FILE_HEADER_LEN
                && !chain_reaches_end(&b, LOG_FILE_HEADER_LEN, &mut Default::default())
        })
    })
}

const LOG_FILE_MAGIC: &[u8] = b"RAFT-LOG-FILE-HEADER-9986AB3E47F320B394C8E84916EB0ED5";

/// Refuses log files whose header raft-engine would read a block alignment from: raft-engine
/// 0.4 only ever writes 0 there, and trusts any other value so far as to allocate buffers of
/// that size (a damaged header aborted the process on a failed allocation).
fn check_headers(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.ends_with(LOG_SUFFIX) || name.ends_with(".rewrite")) {
            continue;
        }
        let mut head = Vec::with_capacity(LOG_FILE_HEADER_LEN);
        let read = std::fs::File::open(&path).and_then(|f| {
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, LOG_FILE_HEADER_LEN as u64),
                &mut head,
            )
        });
        if read.is_err() || head.len() < LOG_FILE_HEADER_LEN || !head.starts_with(LOG_FILE_MAGIC) {
            // Too short or not a log file: raft-engine's own checks answer that.
            continue;
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let (version, alignment) = (word(LOG_FILE_MAGIC.len()), word(LOG_FILE_MAGIC.len() + 8));
        if version == 2 && alignment != 0 {
            anyhow::bail!(
                "WAL file {} is damaged: its header gives a block alignment of {alignment}",
                path.display()
            );
        }
    }
    Ok(())
}

/// The length of the raft-engine batch at `at` in `b`, if a plausible batch header is there and
/// the batch fits in `b`.
fn batch_len(b: &[u8], at: usize) -> Option<usize> {
    let h = b.get(at..at.checked_add(BATCH_HEADER_LEN)?)?;
    let len_and_type = u64::from_be_bytes(h[..8].try_into().ok()?);
    let footer = u64::from_be_bytes(h[8..].try_into().ok()?);
    let len = usize::try_from(len_and_type >> 8).ok()?;
    let footer = usize::try_from(footer).ok()?;
    // Compression: none (0) or lz4 (1).
    if len_and_type & 0xff > 1 || footer < BATCH_HEADER_LEN || footer > len {
        return None;
    }
    (len <= b.len() - at).then_some(len)
}

/// Whether the bytes of log file `b` from `from` on are a torn tail: zeros, or bytes from which
/// no chain of well-formed batches runs to the end of the file (or to its zero padding). A
/// record damaged in place, with intact records after it, is not a torn tail.
pub fn is_torn_tail(b: &[u8], from: usize) -> bool {
    let from = from.min(b.len());
    if b[from..].iter().all(|&x| x == 0) {
        return true;
    }
    let mut reaches_end: std::collections::HashMap<usize, bool> = Default::default();
    let start = (from + 1).max(LOG_FILE_HEADER_LEN);
    !(start..b.len()).any(|p| chain_reaches_end(b, p, &mut reaches_end))
}

fn chain_reaches_end(
    b: &[u8],
    start: usize,
    memo: &mut std::collections::HashMap<usize, bool>,
) -> bool {
    let mut visited = Vec::new();
    let mut at = start;
    let verdict = loop {
        if let Some(v) = memo.get(&at) {
            break *v;
        }
        if !visited.is_empty() && b[at..].iter().all(|&x| x == 0) {
            break true;
        }
        match batch_len(b, at) {
            Some(len) => {
                visited.push(at);
                at += len;
            }
            None => break false,
        }
    };
    for p in visited {
        memo.insert(p, verdict);
    }
    verdict
}

fn engine_err(e: raft_engine::Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl WalStorage {
    /// Opens the log in `dir`. A torn tail of the last log file (a record cut short by a crash,
    /// or the zero-filled space allocated ahead of it) is cut off, as etcd repairs its WAL; any
    /// other damage is refused with an error naming the file.
    pub fn open(dir: &Path) -> anyhow::Result<WalStorage> {
        std::fs::create_dir_all(dir)?;
        let engine = open_engine(dir)?;
        let mut cached = Cached::default();
        if let Some(hs) = engine.get_message::<HardState>(GROUP, KEY_HARD_STATE)? {
            cached.hard_state = hs;
        }
        if let Some(cs) = engine.get_message::<ConfState>(GROUP, KEY_CONF_STATE)? {
            cached.conf_state = cs;
        }
        if let Some(m) = engine.get_message::<SnapshotMetadata>(GROUP, KEY_SNAPSHOT_META)? {
            cached.snapshot_meta = m;
        }
        Ok(WalStorage {
            engine: Arc::new(engine),
            cached: Arc::new(RwLock::new(cached)),
            meta_lock: Arc::new(Mutex::new(())),
            snapshotter: Arc::new(OnceLock::new()),
            tail: Arc::new(Mutex::new(EntryCache::default())),
        })
    }

    /// Lets raft send snapshots made by `s` (shared by every clone).
    pub fn enable_snapshots(&self, s: Arc<Snapshotter>) {
        let _ = self.snapshotter.set(s);
    }

    /// Index, term and configuration of the last entry dropped from the log (by compaction or
    /// by installing a snapshot).
    pub fn snapshot_meta(&self) -> SnapshotMetadata {
        self.cached.read().snapshot_meta.clone()
    }

    /// Follower side of a raft snapshot: the log restarts right after `snap`. Drops every entry,
    /// records the snapshot's index, term and configuration, and raises the commit index to it,
    /// in one synced write. The state machine is replaced separately (the apply loop installs the
    /// database file); until it is, a restart finds the WAL ahead of the backend and installs the
    /// file first.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> anyhow::Result<()> {
        let _g = self.meta_lock.lock();
        let meta = snap.get_metadata();
        let mut hs = self.hard_state();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        let mut batch = LogBatch::default();
        batch.add_command(GROUP, raft_engine::Command::Clean);
        batch.put_message(GROUP, KEY_SNAPSHOT_META.to_vec(), meta)?;
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), meta.get_conf_state())?;
        batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), &hs)?;
        self.engine.write(&mut batch, true)?;
        self.tail.lock().clear();
        {
            let mut c = self.cached.write();
            c.snapshot_meta = meta.clone();
            c.conf_state = meta.get_conf_state().clone();
            c.hard_state = hs;
        }
        self.engine.purge_expired_files()?;
        Ok(())
    }

    /// True when the log has never been written: the member must bootstrap.
    pub fn is_empty(&self) -> bool {
        let c = self.cached.read();
        c.conf_state.voters.is_empty() && c.conf_state.learners.is_empty()
    }

    /// First boot: record the initial configuration and the starting point of the log, as if a
    /// snapshot at index 1 (term 1) held that configuration.
    ///
    /// The log starts after index 1 rather than 0 so that entry 1 is never in any member's log:
    /// a member added later (whose log is empty) then always gets a snapshot from the leader,
    /// which carries the configuration and the data, instead of a replay of the log from the
    /// start that would lack the bootstrap configuration.
    pub fn bootstrap(&self, conf_state: ConfState) -> anyhow::Result<()> {
        let mut batch = LogBatch::default();
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), &conf_state)?;
        let mut meta = SnapshotMetadata::default();
        meta.set_conf_state(conf_state.clone());
        meta.index = BOOTSTRAP_INDEX;
        meta.term = 1;
        batch.put_message(GROUP, KEY_SNAPSHOT_META.to_vec(), &meta)?;
        // etcd bootstraps its log at term 1, so the first election lands on term 2; starting
        // from the same term keeps `raft_term` in responses identical to etcd's.
        let hs = HardState {
            term: 1,
            commit: BOOTSTRAP_INDEX,
            ..Default::default()
        };
        batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), &hs)?;
        self.engine.write(&mut batch, true)?;
        let mut c = self.cached.write();
        c.conf_state = conf_state;
        c.snapshot_meta = meta;
        c.hard_state = hs;
        Ok(())
    }

    /// `--force-new-cluster`: drops entries that were never committed, appends `forced` (the
    /// conf changes that remove every other member) right after the commit index as committed
    /// entries of the current term, and makes `conf_state` the configuration, in one synced
    /// write. Returns the new commit index.
    pub fn force_new_cluster(
        &self,
        forced: Vec<Entry>,
        conf_state: ConfState,
    ) -> anyhow::Result<u64> {
        let _g = self.meta_lock.lock();
        let mut hs = self.hard_state();
        let meta = self.snapshot_meta();
        let commit = hs.commit.max(meta.index);
        let last = raft::Storage::last_index(self).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut batch = LogBatch::default();
        let mut entries = Vec::new();
        if last > commit {
            tracing::info!(
                "commit-index" = commit,
                "last-index" = last,
                "discarding uncommitted WAL entries"
            );
            if commit > meta.index {
                // Appending at an index the log holds truncates everything after it.
                let e = self
                    .engine
                    .get_entry::<EntryExt>(GROUP, commit)?
                    .ok_or_else(|| anyhow::anyhow!("committed entry {commit} is missing"))?;
                entries.push(e);
            } else {
                batch.add_command(GROUP, raft_engine::Command::Clean);
                batch.put_message(GROUP, KEY_SNAPSHOT_META.to_vec(), &meta)?;
            }
        }
        let mut index = commit;
        for mut e in forced {
            index += 1;
            e.index = index;
            e.term = hs.term;
            entries.push(e);
        }
        if !entries.is_empty() {
            batch.add_entries::<EntryExt>(GROUP, &entries)?;
        }
        hs.commit = index;
        batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), &hs)?;
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), &conf_state)?;
        self.engine.write(&mut batch, true)?;
        self.tail.lock().clear();
        let mut c = self.cached.write();
        c.hard_state = hs;
        c.conf_state = conf_state;
        Ok(index)
    }

    /// The entries in `[low, high)`, for start-up inspection of the log.
    pub fn entries_between(&self, low: u64, high: u64) -> anyhow::Result<Vec<Entry>> {
        let mut out = Vec::new();
        if high > low {
            self.engine
                .fetch_entries_to::<EntryExt>(GROUP, low, high, None, &mut out)?;
        }
        Ok(out)
    }

    /// Persists new entries (replacing any conflicting suffix) and the hard state, in one write.
    pub fn append(
        &self,
        entries: &[Entry],
        hs: Option<&HardState>,
        sync: bool,
    ) -> anyhow::Result<()> {
        let mut batch = LogBatch::with_capacity(entries.len());
        if !entries.is_empty() {
            // A new leader may overwrite a suffix; raft-engine's memtable truncates the old one
            // when entries at indexes it already holds are appended.
            batch.add_entries::<EntryExt>(GROUP, entries)?;
        }
        if let Some(hs) = hs {
            batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), hs)?;
        }
        if !batch.is_empty() {
            let start = std::time::Instant::now();
            self.engine.write(&mut batch, sync)?;
            self.tail.lock().append(entries);
            if sync {
                let took = start.elapsed();
                crate::metrics::WAL_FSYNC.observe(took.as_secs_f64());
                if took > WARN_SYNC_DURATION {
                    tracing::warn!(
                        took = %crate::logging::go_duration(took),
                        "expected-duration" = %crate::logging::go_duration(WARN_SYNC_DURATION),
                        "slow fdatasync"
                    );
                }
            }
        }
        if let Some(hs) = hs {
            self.cached.write().hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records a new commit index (from a LightReady) without touching entries.
    pub fn set_commit(&self, commit: u64) -> anyhow::Result<()> {
        let mut hs = self.cached.read().hard_state.clone();
        if hs.commit >= commit {
            return Ok(());
        }
        hs.commit = commit;
        self.append(&[], Some(&hs), false)
    }

    pub fn set_conf_state(&self, cs: ConfState) -> anyhow::Result<()> {
        // Compaction writes the configuration too; neither may overwrite the other's newer one.
        let _g = self.meta_lock.lock();
        let mut batch = LogBatch::default();
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), &cs)?;
        self.engine.write(&mut batch, true)?;
        self.cached.write().conf_state = cs;
        Ok(())
    }

    pub fn conf_state(&self) -> ConfState {
        self.cached.read().conf_state.clone()
    }

    pub fn hard_state(&self) -> HardState {
        self.cached.read().hard_state.clone()
    }

    /// Drops entries up to and including `index`, which the state machine has made durable, but
    /// none after a snapshot raft recently sent (its follower will need them). Returns the index
    /// the log now starts after.
    pub fn compact(&self, index: u64) -> anyhow::Result<u64> {
        let _g = self.meta_lock.lock();
        let mut meta = self.cached.read().snapshot_meta.clone();
        let limit = self.snapshotter.get().and_then(|s| s.compact_limit());
        let index = limit.map_or(index, |l| index.min(l));
        if index <= meta.index {
            // Already dropped (an installed snapshot starts the log later).
            return Ok(meta.index);
        }
        let term = raft::Storage::term(self, index).map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::failpoints::crash_point!("wal-before-compact");
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state());
        let mut batch = LogBatch::default();
        batch.put_message(GROUP, KEY_SNAPSHOT_META.to_vec(), &meta)?;
        // raft-engine keeps a log file while any key it holds is current. The configuration is
        // written rarely; written again here, it no longer pins the oldest file, so compaction
        // lets the files behind it be purged instead of keeping up to `purge_threshold` of log
        // (which every start then had to replay).
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), meta.get_conf_state())?;
        batch.add_command(GROUP, raft_engine::Command::Compact { index: index + 1 });
        self.engine.write(&mut batch, true)?;
        self.tail.lock().compact(index);
        self.cached.write().snapshot_meta = meta;
        self.engine.purge_expired_files()?;
        Ok(index)
    }

    /// Total bytes the WAL files use.
    pub fn used_size(&self) -> usize {
        self.engine.get_used_size()
    }
}

impl raft::Storage for WalStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.cached.read();
        Ok(RaftState::new(c.hard_state.clone(), c.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first = self.first_index()?;
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let last = self.last_index()?;
        if high > last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into();
        if let Some(hit) = self.tail.lock().slice(low, high, max_size) {
            return Ok(hit);
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let max = max_size.map(|m| m as usize);
        self.engine
            .fetch_entries_to::<EntryExt>(GROUP, low, high, max, &mut out)
            .map_err(engine_err)?;
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        {
            let c = self.cached.read();
            if idx == c.snapshot_meta.index {
                return Ok(c.snapshot_meta.term);
            }
            if idx < c.snapshot_meta.index {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
        }
        if let Some(term) = self.tail.lock().term(idx) {
            return Ok(term);
        }
        match self
            .engine
            .get_entry::<EntryExt>(GROUP, idx)
            .map_err(engine_err)?
        {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(match self.engine.first_index(GROUP) {
            Some(i) => i,
            None => self.cached.read().snapshot_meta.index + 1,
        })
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(match self.engine.last_index(GROUP) {
            Some(i) => i,
            None => self.cached.read().snapshot_meta.index,
        })
    }

    /// A snapshot for a follower that needs entries before `first_index`: the latest database
    /// copy, if it reaches at least `first_index - 1` (so the follower can go on with entries)
    /// and `request_index`; otherwise one is started in the background and raft asks again (on
    /// the follower's next heartbeat response).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let Some(s) = self.snapshotter.get() else {
            return Err(unavailable());
        };
        let min = request_index.max(self.first_index()?.saturating_sub(1));
        let ready = s.get(min).filter(|r| r.index > 0).ok_or_else(unavailable)?;
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = ready.index;
        meta.term = ready.term;
        meta.set_conf_state(self.conf_state());
        snap.data = ready.name.into_bytes().into();
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    #[test]
    fn append_overwrite_compact_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = WalStorage::open(dir.path()).unwrap();
        assert!(s.is_empty());
        s.bootstrap(ConfState {
            voters: vec![7],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.first_index().unwrap(), 2);
        assert_eq!(s.last_index().unwrap(), 1);
        let ents: Vec<Entry> = (2..=10).map(|i| entry(i, 1)).collect();
        let hs = HardState {
            term: 1,
            commit: 5,
            ..Default::default()
        };
        s.append(&ents, Some(&hs), true).unwrap();
        assert_eq!(s.last_index().unwrap(), 10);
        assert_eq!(s.term(10).unwrap(), 1);
        // A new leader at term 2 replaces the suffix from index 8.
        s.append(&[entry(8, 2), entry(9, 2)], None, true).unwrap();
        assert_eq!(s.last_index().unwrap(), 9);
        assert_eq!(s.term(8).unwrap(), 2);
        let got = s
            .entries(3, 6, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );

        s.compact(4).unwrap();
        assert_eq!(s.first_index().unwrap(), 5);
        assert_eq!(s.term(4).unwrap(), 1);
        assert!(s.term(3).is_err());
        assert!(s
            .entries(3, 6, None, GetEntriesContext::empty(false))
            .is_err());
        drop(s);

        let s = WalStorage::open(dir.path()).unwrap();
        assert!(!s.is_empty());
        assert_eq!(s.hard_state().commit, 5);
        assert_eq!(s.first_index().unwrap(), 5);
        assert_eq!(s.last_index().unwrap(), 9);
        assert_eq!(s.term(9).unwrap(), 2);
        assert_eq!(s.conf_state().voters, vec![7]);
    }

    /// A new log file left empty or with half a header (its creation hit a full disk): the
    /// next start goes on from the entries before it, and entries written then survive.
    #[test]
    fn log_file_cut_at_creation_is_not_damage() {
        for cut in [0usize, 30, 61] {
            let dir = tempfile::tempdir().unwrap();
            let s = WalStorage::open(dir.path()).unwrap();
            s.bootstrap(ConfState {
                voters: vec![7],
                ..Default::default()
            })
            .unwrap();
            let hs = HardState {
                term: 1,
                commit: 4,
                ..Default::default()
            };
            let ents: Vec<Entry> = (2..=4).map(|i| entry(i, 1)).collect();
            s.append(&ents, Some(&hs), true).unwrap();
            drop(s);
            let first = last_log_file(dir.path()).unwrap();
            let seq: u64 = first
                .file_name()
                .and_then(|n| n.to_str()?.strip_suffix(LOG_SUFFIX)?.parse().ok())
                .unwrap();
            let header = std::fs::read(&first).unwrap()[..cut].to_vec();
            let next = dir.path().join(format!("{:016}{LOG_SUFFIX}", seq + 1));
            std::fs::write(&next, &header).unwrap();

            let s = WalStorage::open(dir.path()).unwrap_or_else(|e| panic!("cut {cut}: {e:#}"));
            assert_eq!(s.last_index().unwrap(), 4, "cut {cut}");
            let more: Vec<Entry> = (5..=8).map(|i| entry(i, 1)).collect();
            s.append(&more, None, true).unwrap();
            drop(s);
            let s = WalStorage::open(dir.path()).unwrap();
            assert_eq!(s.last_index().unwrap(), 8, "cut {cut}");
            assert_eq!(s.hard_state().commit, 4);
        }
    }

    #[test]
    fn apply_snapshot_then_append_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = WalStorage::open(dir.path()).unwrap();
        s.bootstrap(ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        })
        .unwrap();
        // A follower with a stale log, partly beyond the snapshot, with a conflicting term.
        let ents: Vec<Entry> = (2..=30).map(|i| entry(i, 1)).collect();
        let hs = HardState {
            term: 2,
            vote: 3,
            commit: 12,
            ..Default::default()
        };
        s.append(&ents, Some(&hs), true).unwrap();
        s.compact(5).unwrap();

        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 20;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().set_conf_state(ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        });
        s.apply_snapshot(&snap).unwrap();
        assert_eq!(s.first_index().unwrap(), 21);
        assert_eq!(s.last_index().unwrap(), 20);
        assert_eq!(s.term(20).unwrap(), 3);
        assert!(s.term(19).is_err());
        assert!(
            s.term(25).is_err(),
            "entries after the snapshot are dropped"
        );
        assert_eq!(s.hard_state().commit, 20);
        assert_eq!(s.hard_state().term, 3);
        assert_eq!(s.hard_state().vote, 3);
        assert_eq!(s.snapshot_meta().index, 20);
        // A compaction behind the snapshot (the apply loop racing it) is a no-op.
        s.compact(10).unwrap();
        assert_eq!(s.snapshot_meta().index, 20);

        s.append(&[entry(21, 3), entry(22, 3)], None, true).unwrap();
        assert_eq!(s.last_index().unwrap(), 22);
        let got = s
            .entries(21, 23, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![21, 22]
        );
        drop(s);

        let s = WalStorage::open(dir.path()).unwrap();
        assert!(!s.is_empty());
        assert_eq!(s.first_index().unwrap(), 21);
        assert_eq!(s.last_index().unwrap(), 22);
        assert_eq!(s.term(20).unwrap(), 3);
        assert_eq!(s.term(22).unwrap(), 3);
        assert_eq!(s.hard_state().commit, 20);
        assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
        assert_eq!(s.snapshot_meta().term, 3);
        // Without a snapshotter, raft is told to wait.
        assert_eq!(
            s.snapshot(0, 2).unwrap_err(),
            raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
        );
    }

    #[test]
    fn force_new_cluster_drops_uncommitted_and_appends_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = WalStorage::open(dir.path()).unwrap();
        s.bootstrap(ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        })
        .unwrap();
        let ents: Vec<Entry> = (2..=9).map(|i| entry(i, 2)).collect();
        let hs = HardState {
            term: 2,
            commit: 6,
            ..Default::default()
        };
        s.append(&ents, Some(&hs), true).unwrap();
        let forced = vec![Entry::default(), Entry::default()];
        let commit = s
            .force_new_cluster(
                forced,
                ConfState {
                    voters: vec![1],
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(commit, 8);
        drop(s);
        let s = WalStorage::open(dir.path()).unwrap();
        assert_eq!(s.last_index().unwrap(), 8);
        assert_eq!(s.hard_state().commit, 8);
        assert_eq!(s.conf_state().voters, vec![1]);
        let got = s.entries_between(6, 9).unwrap();
        assert_eq!(got[0].data, entry(6, 2).data, "the committed entry stays");
        assert!(got[1].data.is_empty() && got[2].data.is_empty());
        assert_eq!(got[2].term, 2);
    }
}
