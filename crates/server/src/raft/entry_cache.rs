//! The newest raft log entries, kept in memory beside the WAL.
//!
//! raft-engine keeps only the file position of each entry in memory, so every `term(i)` and
//! `entries(lo, hi)` raft asks of the storage is a file read, a checksum and a decode. A leader
//! asks both for each append response (the term of the index it may commit, the entries a
//! follower needs next), all of them near the tail of the log. Serving those from memory removed
//! the WAL reads from the write path's profile. Entry payloads are `Bytes`, so a hit copies no
//! data.

use std::collections::VecDeque;

use raft::eraftpb::Entry;

/// Bytes kept at most (payloads and entry structs); older entries are read from the WAL as
/// before. A follower that far behind is catching up, not on the hot path.
const MAX_BYTES: usize = 4 << 20;

/// A contiguous run of the log's newest entries, identical to what the WAL holds for those
/// indexes.
#[derive(Default)]
pub struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

fn size(e: &Entry) -> usize {
    e.data.len() + e.context.len() + std::mem::size_of::<Entry>()
}

impl EntryCache {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// Mirrors an append the WAL has just made durable (or written): entries at indexes the cache
    /// holds replace them and everything after, as in the WAL.
    pub fn append(&mut self, new: &[Entry]) {
        let Some(start) = new.first().map(|e| e.index) else {
            return;
        };
        match (self.first(), self.entries.back().map(|e| e.index)) {
            (Some(first), Some(last)) if start >= first && start <= last + 1 => {
                let keep = (start - first) as usize;
                for e in self.entries.drain(keep..) {
                    self.bytes -= size(&e);
                }
            }
            // Not adjacent (a snapshot restarted the log, or the cache was empty): start over.
            _ => self.clear(),
        }
        for e in new {
            self.bytes += size(e);
            self.entries.push_back(e.clone());
        }
        while self.bytes > MAX_BYTES && self.entries.len() > 1 {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= size(&e);
            }
        }
    }

    /// The WAL dropped entries up to and including `index`.
    pub fn compact(&mut self, index: u64) {
        while self.first().is_some_and(|i| i <= index) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= size(&e);
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        let first = self.first()?;
        let at = index.checked_sub(first)?;
        self.entries.get(at as usize).map(|e| e.term)
    }

    /// Entries `[low, high)` if the cache holds all of them, cut to `max_size` bytes as raft
    /// expects (always at least one entry).
    pub fn slice(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.first()?;
        let last = self.entries.back()?.index;
        if low < first || high > last + 1 || low >= high {
            return None;
        }
        let from = (low - first) as usize;
        let to = (high - first) as usize;
        let mut out: Vec<Entry> = self.entries.range(from..to).cloned().collect();
        raft::util::limit_size(&mut out, max_size);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    fn indexes(c: &EntryCache) -> Vec<(u64, u64)> {
        c.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn append_overwrites_suffix_like_the_wal() {
        let mut c = EntryCache::default();
        c.append(&[e(5, 1), e(6, 1), e(7, 1)]);
        c.append(&[e(8, 1)]);
        assert_eq!(c.term(8), Some(1));
        // A new leader overwrites 7 and 8.
        c.append(&[e(7, 2)]);
        assert_eq!(indexes(&c), vec![(5, 1), (6, 1), (7, 2)]);
        assert_eq!(c.term(8), None);
        assert_eq!(c.term(4), None);
        // A gap (snapshot installed further on) restarts the cache.
        c.append(&[e(20, 3)]);
        assert_eq!(indexes(&c), vec![(20, 3)]);
        assert_eq!(c.bytes, size(&e(20, 3)));
    }

    #[test]
    fn slice_only_when_whole_and_limited_in_size() {
        let mut c = EntryCache::default();
        c.append(&(3..=9).map(|i| e(i, 1)).collect::<Vec<_>>());
        assert!(c.slice(2, 5, None).is_none());
        assert!(c.slice(8, 11, None).is_none());
        let s = c.slice(4, 8, None).unwrap();
        assert_eq!(
            s.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        assert_eq!(c.slice(4, 8, Some(0)).unwrap().len(), 1);
        c.compact(6);
        assert_eq!(c.term(6), None);
        assert_eq!(c.term(7), Some(1));
        assert_eq!(c.bytes, 3 * size(&e(7, 1)));
    }

    #[test]
    fn bounded_in_bytes() {
        let mut c = EntryCache::default();
        let big = Entry {
            index: 1,
            term: 1,
            data: vec![0u8; MAX_BYTES / 2].into(),
            ..Default::default()
        };
        for i in 1..=5 {
            c.append(&[Entry {
                index: i,
                ..big.clone()
            }]);
        }
        assert!(c.bytes <= MAX_BYTES);
        assert_eq!(c.entries.back().unwrap().index, 5);
        assert!(c.term(1).is_none());
    }
}
