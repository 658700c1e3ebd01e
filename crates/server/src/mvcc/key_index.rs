//! The in-memory key index: user key -> the revisions at which it was written.
//!
//! A port of etcd's `keyIndex`/`treeIndex`, keeping its exact semantics because they decide what a
//! read at an old revision sees, what version a put gets and what compaction keeps. Each key holds
//! a list of generations; a generation is one life of the key from its creation to its deletion
//! (the tombstone is the generation's last revision). The last generation is the live one, or empty
//! when the key is currently deleted. Values live only in redb; the index holds revisions, so a
//! range can be answered (count, filter, sort by revision/version) before touching the disk.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::revision::Revision;

/// One life of a key: created at `created`, written at `revs`; `ver` is the version of the last
/// rev (versions of earlier revs are derived from it, so compaction can drop revs from the front
/// without losing version numbers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    pub ver: i64,
    pub created: i64,
    pub revs: Vec<Revision>,
}

impl Generation {
    /// Index of the newest rev with main <= at (etcd's `walk`).
    fn newest_at(&self, at: i64) -> Option<usize> {
        self.revs.iter().rposition(|r| r.main <= at)
    }
}

/// What a key looked like at some revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The revision of the row holding the value (its mod revision).
    pub rev: Revision,
    pub created: i64,
    pub ver: i64,
}

/// A row dropped by compaction: the caller deletes it from the key table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedRev {
    pub rev: Revision,
    pub tombstone: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIndex {
    gens: Vec<Generation>,
}

impl KeyIndex {
    /// A key first seen while rebuilding from disk: its oldest surviving row may be mid-life
    /// (older rows compacted away), so creation and version come from the stored value.
    pub fn restore(created: i64, modified: Revision, ver: i64) -> KeyIndex {
        KeyIndex {
            gens: vec![Generation {
                ver,
                created,
                revs: vec![modified],
            }],
        }
    }

    /// The index of a key from its oldest surviving row, while rebuilding from disk (rows in
    /// revision order; the older ones may have been compacted away).
    pub fn restore_first(created: i64, rev: Revision, ver: i64, tombstone: bool) -> KeyIndex {
        let mut ki = KeyIndex::restore(created, rev, ver);
        // A tombstone with no earlier row: the one a compaction at its revision keeps for
        // watches from that revision. Indexed as a deleted key, so the next compaction deletes
        // the row.
        if tombstone {
            ki.gens.push(Generation::default());
        }
        ki
    }

    /// Replays the key's next row, while rebuilding from disk.
    pub fn restore_next(&mut self, rev: Revision, tombstone: bool) {
        if tombstone {
            self.tombstone(rev);
        } else {
            self.put(rev);
        }
    }

    /// True when nothing is left (no revisions in any generation).
    pub fn is_empty(&self) -> bool {
        self.gens.len() <= 1 && self.gens.first().is_none_or(|g| g.revs.is_empty())
    }

    /// The newest revision written (live or tombstone).
    pub fn modified(&self) -> Option<Revision> {
        self.gens.iter().rev().find_map(|g| g.revs.last().copied())
    }

    pub fn put(&mut self, rev: Revision) {
        debug_assert!(self.modified().is_none_or(|m| rev > m));
        // Most keys hold one generation of one revision. A first push would reserve room for
        // four (Vec's smallest growth), which for 1M keys written once was 170 MB more than the
        // same index rebuilt at start-up; later pushes grow as usual.
        if self.gens.is_empty() {
            self.gens.reserve_exact(1);
            self.gens.push(Generation::default());
        }
        let g = self.gens.last_mut().expect("one generation");
        if g.revs.is_empty() {
            g.created = rev.main;
        }
        if g.revs.capacity() == 0 {
            g.revs.reserve_exact(1);
        }
        g.revs.push(rev);
        g.ver += 1;
    }

    /// Ends the live generation at `rev`. False (and no change) if the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if self.gens.last().is_none_or(|g| g.revs.is_empty()) {
            return false;
        }
        self.put(rev);
        self.gens.push(Generation::default());
        true
    }

    /// The generation holding the key's state at `at`, if the key was live then.
    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.gens.len().checked_sub(1)?;
        for (i, g) in self.gens.iter().enumerate().rev() {
            let (Some(first), Some(tomb)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            // A closed generation whose tombstone is at or before `at`: deleted then.
            if i != last && tomb.main <= at {
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The key's live row as of revision `at` (etcd's `keyIndex.get`).
    pub fn get(&self, at: i64) -> Option<Hit> {
        let g = self.find_generation(at)?;
        let n = g.newest_at(at)?;
        Some(Hit {
            rev: g.revs[n],
            created: g.created,
            ver: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// etcd's `doCompact`: the first generation whose tombstone is after `at` (or the last one),
    /// and the newest rev <= at in it.
    fn compaction_point(&self, at: i64) -> (usize, Option<usize>) {
        let mut gi = 0;
        while gi + 1 < self.gens.len() {
            match self.gens[gi].revs.last() {
                Some(tomb) if tomb.main > at => break,
                _ => gi += 1,
            }
        }
        (gi, self.gens[gi].newest_at(at))
    }

    /// Drops every revision a read at >= `at` can no longer need: per key the newest revision
    /// <= at survives unless it is a tombstone (etcd's `keyIndex.compact`). Dropped rows are
    /// appended to `removed`.
    pub fn compact(&mut self, at: i64, removed: &mut Vec<RemovedRev>) {
        if self.is_empty() {
            return;
        }
        let (mut gi, ri) = self.compaction_point(at);
        let last = self.gens.len() - 1;
        let g = &mut self.gens[gi];
        if !g.revs.is_empty() {
            if let Some(ri) = ri {
                // Revisions before the kept one are puts (a tombstone is always last).
                removed.extend(g.revs.drain(..ri).map(|rev| RemovedRev {
                    rev,
                    tombstone: false,
                }));
            }
            // Only the tombstone is left: the key was deleted at or before `at`.
            if g.revs.len() == 1 && gi != last && g.revs[0].main != at {
                gi += 1;
            }
        }
        let mut kept = None;
        for mut g in self.gens.drain(..gi) {
            let n = g.revs.len();
            // A tombstone written at exactly `at` stays (alone in its generation) until a later
            // compaction: a watch from `at` is allowed and must still get that delete. etcd 3.4
            // drops it, and such a watch silently misses the event.
            if g.revs.last().is_some_and(|t| t.main == at) {
                let tomb = g
                    .revs
                    .pop()
                    .expect("a closed generation ends with its tombstone");
                removed.extend(g.revs.drain(..).map(|rev| RemovedRev {
                    rev,
                    tombstone: false,
                }));
                g.revs.push(tomb);
                kept = Some(g);
                continue;
            }
            removed.extend(g.revs.into_iter().enumerate().map(|(i, rev)| RemovedRev {
                rev,
                // Every dropped generation is closed, so its last rev is its tombstone.
                tombstone: i + 1 == n,
            }));
        }
        if let Some(g) = kept {
            self.gens.insert(0, g);
        }
    }

    /// The revision compaction at `at` would keep as the key's state at `at` (etcd's `keep`).
    pub fn keep(&self, at: i64) -> Option<Revision> {
        if self.is_empty() {
            return None;
        }
        let (gi, ri) = self.compaction_point(at);
        let g = &self.gens[gi];
        let ri = ri?;
        if ri + 1 == g.revs.len() && gi + 1 != self.gens.len() {
            return None; // a tombstone
        }
        Some(g.revs[ri])
    }

    /// Every revision, oldest first.
    #[cfg(test)]
    fn revs(&self) -> Vec<Revision> {
        self.gens
            .iter()
            .flat_map(|g| g.revs.iter().copied())
            .collect()
    }
}

/// A key range as etcd's Range/DeleteRange/Compare/Watch interpret `key` + `range_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// `range_end` empty: exactly `key`.
    Single(&'a [u8]),
    /// `[start, end)`; `end == None` for `range_end == "\0"` (every key >= start).
    Span(&'a [u8], Option<&'a [u8]>),
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::Span(key, None),
            end => KeyRange::Span(key, Some(end)),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => k == key,
            KeyRange::Span(start, end) => k >= start && end.is_none_or(|e| k < e),
        }
    }
}

/// All keys, ordered (ranges come back in key order, as etcd's btree gives them).
#[derive(Default)]
pub struct KeyIndexTree {
    map: BTreeMap<Box<[u8]>, KeyIndex>,
}

impl KeyIndexTree {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn key_index(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.map.get(key)
    }

    /// Used by the rebuild at open, which sees rows in revision order.
    pub fn restore(&mut self, key: &[u8], created: i64, rev: Revision, ver: i64, tombstone: bool) {
        match self.map.get_mut(key) {
            Some(ki) => ki.restore_next(rev, tombstone),
            None => {
                let ki = KeyIndex::restore_first(created, rev, ver, tombstone);
                self.map.insert(key.into(), ki);
            }
        }
    }

    /// The tree of keys already sorted and unique (the bulk rebuild at start-up).
    pub fn from_sorted(keys: Vec<(Box<[u8]>, KeyIndex)>) -> KeyIndexTree {
        debug_assert!(keys.windows(2).all(|w| w[0].0 < w[1].0));
        // Sorted input is built bottom-up in one pass, without a search per key.
        KeyIndexTree {
            map: keys.into_iter().collect(),
        }
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<Hit> {
        self.map.get(key)?.get(at)
    }

    /// Records a put at `rev` and returns the (create_revision, version) of the new value.
    pub fn put(&mut self, key: &[u8], rev: Revision) -> (i64, i64) {
        match self.map.get_mut(key) {
            Some(ki) => {
                let (created, ver) = ki
                    .get(rev.main)
                    .map_or((rev.main, 1), |h| (h.created, h.ver + 1));
                ki.put(rev);
                (created, ver)
            }
            None => {
                let mut ki = KeyIndex::default();
                ki.put(rev);
                self.map.insert(key.into(), ki);
                (rev.main, 1)
            }
        }
    }

    /// Records a delete at `rev`; false if the key was not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.map.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Calls `f` for every indexed key in `range`, in key order, until it returns false.
    pub fn visit<'s>(
        &'s self,
        range: KeyRange<'_>,
        mut f: impl FnMut(&'s [u8], &'s KeyIndex) -> bool,
    ) {
        match range {
            KeyRange::Single(key) => {
                if let Some((k, ki)) = self.map.get_key_value(key) {
                    f(k, ki);
                }
            }
            KeyRange::Span(start, end) => {
                // BTreeMap::range panics on an inverted range; etcd answers it with nothing.
                if end.is_some_and(|e| e <= start) {
                    return;
                }
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                for (k, ki) in self.map.range::<[u8], _>((Bound::Included(start), upper)) {
                    if !f(k, ki) {
                        break;
                    }
                }
            }
        }
    }

    /// Like `visit`, in descending key order.
    pub fn visit_rev<'s>(
        &'s self,
        range: KeyRange<'_>,
        mut f: impl FnMut(&'s [u8], &'s KeyIndex) -> bool,
    ) {
        match range {
            KeyRange::Single(_) => self.visit(range, f),
            KeyRange::Span(start, end) => {
                if end.is_some_and(|e| e <= start) {
                    return;
                }
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                for (k, ki) in self
                    .map
                    .range::<[u8], _>((Bound::Included(start), upper))
                    .rev()
                {
                    if !f(k, ki) {
                        break;
                    }
                }
            }
        }
    }

    /// Compacts up to `max_keys` keys after `after` (all from the start when None); returns the
    /// last key handled when more may follow. Chunking lets the caller release the lock between
    /// chunks so readers are not stalled by compacting a large index.
    pub fn compact_chunk(
        &mut self,
        at: i64,
        after: Option<&[u8]>,
        max_keys: usize,
        removed: &mut Vec<RemovedRev>,
    ) -> Option<Box<[u8]>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut emptied: Vec<Box<[u8]>> = Vec::new();
        let mut last: Option<&[u8]> = None;
        let mut n = 0;
        for (k, ki) in self.map.range_mut::<[u8], _>((lower, Bound::Unbounded)) {
            if n == max_keys {
                break;
            }
            n += 1;
            ki.compact(at, removed);
            if ki.is_empty() {
                emptied.push(k.clone());
            }
            last = Some(k);
        }
        let cursor = if n == max_keys {
            last.map(Box::from)
        } else {
            None
        };
        for k in emptied {
            self.map.remove(&k);
        }
        cursor
    }

    /// The revision per key that compaction at `at` would keep (for HashKV).
    pub fn keep(&self, at: i64, mut f: impl FnMut(Revision)) {
        for ki in self.map.values() {
            if let Some(r) = ki.keep(at) {
                f(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// The start-up rebuild gives the index the writes built, for a mixed history of puts and
    /// deletes over a few keys, in key order; and a key written once holds no spare capacity.
    #[test]
    fn rebuild_matches_incremental_index() {
        let mut live = KeyIndexTree::default();
        let mut rows = Vec::new();
        let mut seed = 7u64;
        for main in 2..400 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{}", (seed >> 33) % 13).into_bytes();
            let rev = r(main);
            if (seed >> 20).is_multiple_of(4) {
                if live.tombstone(&key, rev) {
                    rows.push((key, 0, rev, 0, true));
                }
            } else {
                let (created, ver) = live.put(&key, rev);
                rows.push((key, created, rev, ver, false));
            }
        }
        let mut built = KeyIndexTree::default();
        for (key, created, rev, ver, tomb) in &rows {
            built.restore(key, *created, *rev, *ver, *tomb);
        }
        let mut a = Vec::new();
        live.visit(KeyRange::Span(b"", None), |k, ki| {
            a.push((k.to_vec(), ki.clone()));
            true
        });
        let mut c = Vec::new();
        built.visit(KeyRange::Span(b"", None), |k, ki| {
            c.push((k.to_vec(), ki.clone()));
            true
        });
        assert_eq!(a, c);

        let mut once = KeyIndexTree::default();
        once.put(b"k", r(2));
        let ki = once.key_index(b"k").unwrap();
        assert_eq!((ki.gens.capacity(), ki.gens[0].revs.capacity()), (1, 1));
    }

    /// etcd's canonical test history: put 2, 4, del 6 | put 8, 10, del 12 | put 14, 14.1, del 16 | live.
    fn history() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(4));
        assert!(ki.tombstone(r(6)));
        ki.put(r(8));
        ki.put(r(10));
        assert!(ki.tombstone(r(12)));
        ki.put(r(14));
        ki.put(Revision::new(14, 1));
        assert!(ki.tombstone(r(16)));
        ki
    }

    #[test]
    fn get_follows_generations() {
        let ki = history();
        assert_eq!(ki.get(1), None);
        let h = ki.get(2).unwrap();
        assert_eq!((h.rev, h.created, h.ver), (r(2), 2, 1));
        let h = ki.get(5).unwrap();
        assert_eq!((h.rev, h.created, h.ver), (r(4), 2, 2));
        assert_eq!(ki.get(6), None);
        assert_eq!(ki.get(7), None);
        let h = ki.get(11).unwrap();
        assert_eq!((h.rev, h.created, h.ver), (r(10), 8, 2));
        let h = ki.get(15).unwrap();
        assert_eq!((h.rev, h.created, h.ver), (Revision::new(14, 1), 14, 2));
        assert_eq!(ki.get(16), None);
        assert_eq!(ki.get(100), None);
        assert_eq!(ki.modified(), Some(r(16)));
    }

    #[test]
    fn tombstone_of_dead_key_is_refused() {
        let mut ki = KeyIndex::default();
        assert!(!ki.tombstone(r(1)));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        assert!(!ki.tombstone(r(4)));
        // Recreated: version restarts at 1.
        ki.put(r(5));
        let h = ki.get(5).unwrap();
        assert_eq!((h.created, h.ver), (5, 1));
    }

    fn compacted(at: i64) -> (KeyIndex, Vec<RemovedRev>) {
        let mut ki = history();
        let mut removed = Vec::new();
        ki.compact(at, &mut removed);
        (ki, removed)
    }

    #[test]
    fn compaction_keeps_newest_live_revision() {
        let (ki, removed) = compacted(1);
        assert!(removed.is_empty());
        assert_eq!(ki, history());

        // At 5: rev 4 is the state at 5, rev 2 goes.
        let (ki, removed) = compacted(5);
        assert_eq!(
            removed,
            vec![RemovedRev {
                rev: r(2),
                tombstone: false
            }]
        );
        assert_eq!(ki.revs()[0], r(4));
        assert_eq!(ki.get(5).unwrap().ver, 2, "version survives compaction");
        assert_eq!(ki.keep(5), Some(r(4)));

        // At 6: the key is deleted at 6, so its first life goes except the tombstone, which a
        // watch from 6 still needs; reads at 6 and later see the key deleted.
        let (ki, removed) = compacted(6);
        assert_eq!(
            removed,
            vec![
                RemovedRev {
                    rev: r(2),
                    tombstone: false
                },
                RemovedRev {
                    rev: r(4),
                    tombstone: false
                },
            ]
        );
        assert_eq!(ki.revs()[..2], [r(6), r(8)]);
        assert_eq!(ki.get(6), None);
        assert_eq!(ki.get(9).unwrap().rev, r(8));
        assert_eq!(history().keep(6), None);
        assert_eq!(
            ki.keep(6),
            None,
            "HashKV skips the kept tombstone, as etcd's"
        );
        // The next compaction takes the tombstone too.
        let mut ki = ki;
        let mut removed = Vec::new();
        ki.compact(7, &mut removed);
        assert_eq!(
            removed,
            vec![RemovedRev {
                rev: r(6),
                tombstone: true
            }]
        );
        assert_eq!(ki.revs()[0], r(8));

        // At 7 the same.
        let (ki, _) = compacted(7);
        assert_eq!(ki.revs()[0], r(8));

        // At 11: rev 10 kept.
        let (ki, removed) = compacted(11);
        assert_eq!(removed.len(), 4);
        assert_eq!(ki.revs()[0], r(10));
        assert_eq!(ki.get(11).unwrap().ver, 2);
        assert_eq!(ki.get(15).unwrap().ver, 2);

        // At 16: everything but the last tombstone goes; beyond, the key is empty.
        let (mut ki, removed) = compacted(16);
        assert_eq!(removed.len(), 8);
        assert_eq!(ki.revs(), vec![r(16)]);
        assert_eq!(ki.get(16), None);
        let mut removed = Vec::new();
        ki.compact(17, &mut removed);
        assert_eq!(removed.len(), 1);
        assert!(ki.is_empty());
        let (ki, _) = compacted(100);
        assert!(ki.is_empty());
    }

    #[test]
    fn compaction_of_live_key() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(3));
        ki.put(r(4));
        let mut removed = Vec::new();
        ki.compact(10, &mut removed);
        assert_eq!(removed.len(), 2);
        assert_eq!(ki.revs(), vec![r(4)]);
        let h = ki.get(10).unwrap();
        assert_eq!((h.created, h.ver), (2, 3));
        assert_eq!(ki.keep(10), Some(r(4)));
    }

    #[test]
    fn tree_ranges() {
        let mut t = KeyIndexTree::default();
        for (i, k) in ["a", "b", "ba", "c", "d"].iter().enumerate() {
            assert_eq!(t.put(k.as_bytes(), r(i as i64 + 2)), (i as i64 + 2, 1));
        }
        let keys = |range: KeyRange| {
            let mut v = Vec::new();
            t.visit(range, |k, _| {
                v.push(String::from_utf8(k.to_vec()).unwrap());
                true
            });
            v
        };
        assert_eq!(keys(KeyRange::new(b"b", b"")), ["b"]);
        assert_eq!(keys(KeyRange::new(b"bb", b"")), Vec::<String>::new());
        assert_eq!(keys(KeyRange::new(b"b", b"c")), ["b", "ba"]);
        assert_eq!(keys(KeyRange::new(b"b", b"\0")), ["b", "ba", "c", "d"]);
        assert_eq!(
            keys(KeyRange::new(b"\0", b"\0")),
            ["a", "b", "ba", "c", "d"]
        );
        assert_eq!(keys(KeyRange::new(b"c", b"b")), Vec::<String>::new());
        assert_eq!(keys(KeyRange::new(b"c", b"c")), Vec::<String>::new());
        assert!(KeyRange::new(b"b", b"c").contains(b"ba"));
        assert!(!KeyRange::new(b"b", b"c").contains(b"c"));
        assert!(KeyRange::new(b"b", b"\0").contains(b"zzz"));
        assert!(!KeyRange::new(b"b", b"").contains(b"ba"));

        // Second put of a key: same creation, version 2.
        assert_eq!(t.put(b"a", r(10)), (2, 2));
        assert!(t.tombstone(b"a", r(11)));
        assert!(!t.tombstone(b"a", r(12)));
        assert_eq!(t.put(b"a", r(13)), (13, 1));
    }

    #[test]
    fn chunked_compaction_drops_empty_keys() {
        let mut t = KeyIndexTree::default();
        for i in 0..10u8 {
            t.put(&[i], r(i as i64 * 2 + 2));
            t.tombstone(&[i], r(i as i64 * 2 + 3));
        }
        let mut removed = Vec::new();
        let mut cursor: Option<Box<[u8]>> = None;
        let mut chunks = 0;
        loop {
            chunks += 1;
            cursor = t.compact_chunk(11, cursor.as_deref(), 3, &mut removed);
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(chunks, 4);
        // Keys 0..=3 died before 11 (tombstones at 3,5,7,9): gone entirely. Key 4's tombstone
        // at exactly 11 stays for watches from 11.
        assert_eq!(t.len(), 6);
        assert_eq!(removed.len(), 9);
        assert!(removed.iter().filter(|r| r.tombstone).count() == 4);
    }
}
