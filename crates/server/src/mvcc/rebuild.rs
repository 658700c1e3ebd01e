//! Rebuilding the key index from the key table when a backend is opened.
//!
//! The table is ordered by revision and the index by key. Inserting a million rows one at a
//! time into the index's B-tree was most of a member's start-up: every step of every search a
//! `memcmp` on a pointer, in random key order. Instead the revision span is cut into one part per
//! core; each part is read by its own thread and sorted by key (stably, so one key's rows stay in
//! revision order, with an 8-byte key prefix compared first so most comparisons touch no
//! pointer); the sorted parts are merged, each key's rows folded into its [`KeyIndex`], and the
//! map is built from the sorted result in one pass.
//!
//! The same pass notes which live keys hold a lease, which the lessor needs at start-up and
//! would otherwise read back from the table a second time.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::codec::parse_kv;
use super::key_index::{KeyIndex, KeyIndexTree};
use super::revision::{is_tombstone, Revision};
use super::store::KEY_TABLE;
use crate::error::{EtcdError, Result};

/// Below this many revisions one thread does it all: a thread costs more than it saves.
const REVS_PER_THREAD: i64 = 50_000;
/// More threads than this only contend for the disk.
const MAX_THREADS: usize = 4;

/// What the key table holds, in the index's terms.
pub(super) struct Rebuilt {
    pub index: KeyIndexTree,
    /// The newest main revision of any row (0 for an empty table).
    pub last_rev: i64,
    /// Live keys attached to a lease, sorted by key (the lessor's input).
    pub leased: Vec<(Vec<u8>, i64)>,
}

/// One row of the key table, as the index needs it.
struct Row {
    /// The key's first 8 bytes, big-endian, zero-padded: orders like the key on those bytes.
    prefix: u64,
    key: Box<[u8]>,
    rev: Revision,
    created: i64,
    ver: i64,
    lease: i64,
    tombstone: bool,
}

impl Row {
    fn cmp_key(&self, other: &Row) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.key.cmp(&other.key))
    }
}

fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Reads the whole key table of `db` into an index.
pub(super) fn rebuild(db: &Database) -> Result<Rebuilt> {
    rebuild_split(db, threads(), REVS_PER_THREAD)
}

/// [`rebuild`] with up to `threads` parts of at least `per_thread` revisions each.
pub(super) fn rebuild_split(db: &Database, threads: usize, per_thread: i64) -> Result<Rebuilt> {
    let (first, last) = {
        let txn = db.begin_read()?;
        let table = txn.open_table(KEY_TABLE)?;
        let first = table
            .first()?
            .map(|(k, _)| row_rev(k.value()))
            .transpose()?;
        let last = table.last()?.map(|(k, _)| row_rev(k.value())).transpose()?;
        match (first, last) {
            (Some(f), Some(l)) => (f.main, l.main),
            _ => {
                return Ok(Rebuilt {
                    index: KeyIndexTree::default(),
                    last_rev: 0,
                    leased: Vec::new(),
                })
            }
        }
    };
    let bounds = split(first, last, threads, per_thread);
    let parts: Vec<Result<Vec<Row>>> = if bounds.len() <= 2 {
        vec![read_part(db, None, None)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = bounds
                .windows(2)
                .enumerate()
                .map(|(i, w)| {
                    let from = (i > 0).then_some(w[0]);
                    let to = (i + 2 < bounds.len()).then_some(w[1]);
                    s.spawn(move || read_part(db, from, to))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
    let (index, leased) = fold(parts);
    Ok(Rebuilt {
        index,
        last_rev: last,
        leased,
    })
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
}

/// Main revisions cutting `first..=last` into up to `threads` parts of at least `per_thread`
/// revisions: `[first, b1, ..., last + 1]`.
fn split(first: i64, last: i64, threads: usize, per_thread: i64) -> Vec<i64> {
    let span = last.saturating_sub(first).saturating_add(1).max(1);
    let parts = (span / per_thread.max(1)).clamp(1, threads.max(1) as i64);
    (0..=parts)
        .map(|i| first + (span as i128 * i as i128 / parts as i128) as i64)
        .collect()
}

fn row_rev(k: &[u8]) -> Result<Revision> {
    Revision::from_bytes(k)
        .ok_or_else(|| EtcdError::Internal("mvcc: key table row with a malformed revision".into()))
}

/// The rows with main revision in `from..to` (unbounded where `None`), sorted by key with each
/// key's rows in revision order.
fn read_part(db: &Database, from: Option<i64>, to: Option<i64>) -> Result<Vec<Row>> {
    let txn = db.begin_read()?;
    let table = txn.open_table(KEY_TABLE)?;
    let lo = from.map(|m| Revision::new(m, 0).to_bytes());
    let hi = to.map(|m| Revision::new(m, 0).to_bytes());
    let range = match (&lo, &hi) {
        (Some(lo), Some(hi)) => table.range::<&[u8]>(&lo[..]..&hi[..])?,
        (Some(lo), None) => table.range::<&[u8]>(&lo[..]..)?,
        (None, Some(hi)) => table.range::<&[u8]>(..&hi[..])?,
        (None, None) => table.iter()?,
    };
    let mut rows = Vec::new();
    for entry in range {
        let (k, v) = entry?;
        let k = k.value();
        let rev = row_rev(k)?;
        let kv = parse_kv(v.value())?;
        rows.push(Row {
            prefix: key_prefix(kv.key),
            key: kv.key.into(),
            rev,
            created: kv.create_revision,
            ver: kv.version,
            lease: kv.lease,
            tombstone: is_tombstone(k),
        });
    }
    // Stable: a key's rows keep their revision order.
    rows.sort_by(Row::cmp_key);
    Ok(rows)
}

/// Merges parts (each sorted by key; part i's revisions all below part i+1's) into the index.
fn fold(parts: Vec<Vec<Row>>) -> (KeyIndexTree, Vec<(Vec<u8>, i64)>) {
    let total = parts.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = parts.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<Row>> = iters.iter_mut().map(Iterator::next).collect();
    let mut keys: Vec<(Box<[u8]>, KeyIndex)> = Vec::with_capacity(total);
    let mut leased = Vec::new();
    // The key being folded, its index so far, and its newest row.
    let mut cur: Option<(Row, KeyIndex)> = None;
    loop {
        // The smallest key among the parts' heads; on a tie the earliest part (older rows).
        let mut pick: Option<usize> = None;
        for (i, head) in heads.iter().enumerate() {
            let Some(row) = head else { continue };
            let better = match pick.and_then(|p| heads[p].as_ref()) {
                Some(best) => row.cmp_key(best).is_lt(),
                None => true,
            };
            if better {
                pick = Some(i);
            }
        }
        let Some(i) = pick else { break };
        let next = iters[i].next();
        let row = std::mem::replace(&mut heads[i], next).expect("picked a head");
        match &mut cur {
            Some((newest, ki)) if newest.key == row.key => {
                ki.restore_next(row.rev, row.tombstone);
                // The first row's key is the one kept; this row's copy goes.
                newest.lease = row.lease;
                newest.tombstone = row.tombstone;
            }
            _ => {
                if let Some(done) = cur.take() {
                    finish(done, &mut keys, &mut leased);
                }
                let ki = KeyIndex::restore_first(row.created, row.rev, row.ver, row.tombstone);
                cur = Some((row, ki));
            }
        }
    }
    if let Some(done) = cur.take() {
        finish(done, &mut keys, &mut leased);
    }
    (KeyIndexTree::from_sorted(keys), leased)
}

fn finish(
    (newest, ki): (Row, KeyIndex),
    keys: &mut Vec<(Box<[u8]>, KeyIndex)>,
    leased: &mut Vec<(Vec<u8>, i64)>,
) {
    if !newest.tombstone && newest.lease != 0 {
        leased.push((newest.key.to_vec(), newest.lease));
    }
    keys.push((newest.key, ki));
}

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest};

    use super::super::key_index::KeyRange;
    use super::super::MvccStore;
    use super::*;

    fn entries(t: &KeyIndexTree) -> Vec<(Vec<u8>, KeyIndex)> {
        let mut out = Vec::new();
        t.visit(KeyRange::Span(b"", None), |k, ki| {
            out.push((k.to_vec(), ki.clone()));
            true
        });
        out
    }

    /// Splitting into parts, merging and folding gives what replaying rows one at a time gives,
    /// also where compaction removed a key's oldest rows (a first row mid-life, a lone tombstone).
    #[test]
    fn split_rebuild_equals_row_by_row_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = MvccStore::open(&dir.path().join("db")).unwrap();
        let mut seed = 11u64;
        for i in 0..600 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("key{}", (seed >> 33) % 23).into_bytes();
            let mut b = store.write().unwrap();
            if (seed >> 20).is_multiple_of(5) {
                b.delete_range(&DeleteRangeRequest {
                    key,
                    ..Default::default()
                })
                .unwrap();
            } else {
                let put = PutRequest {
                    key,
                    value: format!("v{i}").into_bytes(),
                    lease: ((seed >> 40) % 3) as i64,
                    ..Default::default()
                };
                b.put(&put, &|_| true).unwrap();
            }
            b.commit(false).unwrap();
        }
        let db = store.db();
        // What a compaction leaves: the oldest rows gone.
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(KEY_TABLE).unwrap();
            let old: Vec<Vec<u8>> = t
                .iter()
                .unwrap()
                .take(150)
                .map(|r| r.unwrap().0.value().to_vec())
                .collect();
            for k in old {
                t.remove(&k[..]).unwrap();
            }
        }
        txn.commit().unwrap();

        let mut replayed = KeyIndexTree::default();
        let mut newest: std::collections::BTreeMap<Vec<u8>, (bool, i64)> = Default::default();
        let txn = db.begin_read().unwrap();
        for row in txn.open_table(KEY_TABLE).unwrap().iter().unwrap() {
            let (k, v) = row.unwrap();
            let (rev, kv) = (row_rev(k.value()).unwrap(), parse_kv(v.value()).unwrap());
            let tomb = is_tombstone(k.value());
            replayed.restore(kv.key, kv.create_revision, rev, kv.version, tomb);
            newest.insert(kv.key.to_vec(), (tomb, kv.lease));
        }
        let leased: Vec<(Vec<u8>, i64)> = newest
            .into_iter()
            .filter(|(_, (tomb, lease))| !tomb && *lease != 0)
            .map(|(k, (_, lease))| (k, lease))
            .collect();
        assert!(!leased.is_empty());

        for (threads, per) in [(1, i64::MAX), (2, 50), (4, 7), (3, 1)] {
            let r = rebuild_split(&db, threads, per).unwrap();
            assert_eq!(entries(&r.index), entries(&replayed), "{threads} x {per}");
            assert_eq!(r.leased, leased, "{threads} x {per}");
            assert_eq!(r.last_rev, store.current_revision());
        }
    }

    #[test]
    fn split_covers_the_span_once() {
        let per = REVS_PER_THREAD;
        assert_eq!(split(1, 10, 4, per), vec![1, 11]);
        let b = split(1, 400_000, 4, per);
        assert_eq!(b, vec![1, 100_001, 200_001, 300_001, 400_001]);
        let b = split(5, 120_004, 4, per);
        assert_eq!((b[0], *b.last().unwrap(), b.len()), (5, 120_005, 3));
        assert_eq!(split(7, 7, 2, per), vec![7, 8]);
        assert_eq!(split(1, 10, 3, 3), vec![1, 4, 7, 11]);
    }

    #[test]
    fn prefix_orders_like_the_key() {
        let keys: [&[u8]; 6] = [b"", b"a", b"a\0", b"ab", b"abcdefgh", b"abcdefgh\0"];
        for w in keys.windows(2) {
            assert!(key_prefix(w[0]) <= key_prefix(w[1]));
        }
    }
}
