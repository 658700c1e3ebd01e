//! The key-value state at any revision, replayed from the event log.
//!
//! Each key keeps the list of its values by revision, so "key at revision r" is a binary
//! search and a range read walks only the keys in its interval: no copy of the whole state per
//! revision.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::history::{Event, EventKind, KeyValue};

use super::keys::KeyRange;
use super::log::EventLog;

#[derive(Default)]
pub(crate) struct VersionedState {
    /// Per key: (revision, value after that revision; None once deleted), revisions ascending.
    keys: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>>,
    /// Every key ever put with a lease, by lease id (which of them are still attached at a
    /// revision is read from `keys`).
    lease_keys: HashMap<i64, BTreeSet<Vec<u8>>>,
}

fn value_at(versions: &[(i64, Option<KeyValue>)], rev: i64) -> Option<&KeyValue> {
    let i = versions.partition_point(|(r, _)| *r <= rev);
    if i == 0 {
        None
    } else {
        versions[i - 1].1.as_ref()
    }
}

impl VersionedState {
    pub(crate) fn from_log(log: &EventLog) -> VersionedState {
        let mut state = VersionedState::default();
        for (rev, entry) in &log.revs {
            for (key, (_, events)) in &entry.keys {
                // Within one revision only the last event of a key is visible afterwards.
                let Some(last) = events.last() else { continue };
                let after = match last.kind {
                    EventKind::Put => Some(last.kv.clone()),
                    EventKind::Delete => None,
                };
                for e in events {
                    if e.kind == EventKind::Put && e.kv.lease != 0 {
                        state
                            .lease_keys
                            .entry(e.kv.lease)
                            .or_default()
                            .insert(key.to_vec());
                    }
                }
                state
                    .keys
                    .entry(key.to_vec())
                    .or_default()
                    .push((*rev, after));
            }
        }
        state
    }

    pub(crate) fn get(&self, key: &[u8], rev: i64) -> Option<&KeyValue> {
        self.keys.get(key).and_then(|v| value_at(v, rev))
    }

    /// The live keys of `range` at `rev`, ordered by key.
    pub(crate) fn range(&self, range: &KeyRange, rev: i64) -> Vec<&KeyValue> {
        let Some(bounds) = range.bounds() else {
            return Vec::new();
        };
        self.keys
            .range::<[u8], _>(bounds)
            .filter_map(|(_, v)| value_at(v, rev))
            .collect()
    }

    /// The keys attached to `lease` at `rev`, ordered.
    pub(crate) fn lease_keys_at(&self, lease: i64, rev: i64) -> Vec<&KeyValue> {
        let Some(keys) = self.lease_keys.get(&lease) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| self.get(k, rev))
            .filter(|kv| kv.lease == lease)
            .collect()
    }
}

/// Pending writes of one operation on top of the state at a revision: what a txn's later
/// operations see of its earlier ones.
pub(crate) struct Overlay<'a> {
    state: &'a VersionedState,
    at: i64,
    changes: BTreeMap<Vec<u8>, Option<KeyValue>>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(state: &'a VersionedState, at: i64) -> Overlay<'a> {
        Overlay {
            state,
            at,
            changes: BTreeMap::new(),
        }
    }

    pub(crate) fn state(&self) -> &'a VersionedState {
        self.state
    }

    pub(crate) fn at(&self) -> i64 {
        self.at
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<KeyValue> {
        match self.changes.get(key) {
            Some(v) => v.clone(),
            None => self.state.get(key, self.at).cloned(),
        }
    }

    pub(crate) fn range(&self, range: &KeyRange) -> Vec<KeyValue> {
        let Some(bounds) = range.bounds() else {
            return Vec::new();
        };
        let mut merged: BTreeMap<Vec<u8>, KeyValue> = self
            .state
            .range(range, self.at)
            .into_iter()
            .map(|kv| (kv.key.clone(), kv.clone()))
            .collect();
        for (k, v) in self.changes.range::<[u8], _>(bounds) {
            match v {
                Some(kv) => merged.insert(k.clone(), kv.clone()),
                None => merged.remove(k),
            };
        }
        merged.into_values().collect()
    }

    /// Puts a key as a write at revision `rev`; returns the event etcd reports for it.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8], lease: i64, rev: i64) -> Event {
        let prev = self.get(key);
        let kv = KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        self.changes.insert(key.to_vec(), Some(kv.clone()));
        Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev,
        }
    }

    /// Deletes every live key of `range` at revision `rev`; returns one event per key.
    pub(crate) fn delete(&mut self, range: &KeyRange, rev: i64) -> Vec<Event> {
        let doomed = self.range(range);
        doomed
            .into_iter()
            .map(|prev| {
                self.changes.insert(prev.key.clone(), None);
                Event {
                    kind: EventKind::Delete,
                    kv: deleted_kv(&prev.key, rev),
                    prev_kv: Some(prev),
                }
            })
            .collect()
    }
}

/// The kv of a delete event: only the key and the deleting revision.
pub(crate) fn deleted_kv(key: &[u8], rev: i64) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: rev,
        version: 0,
        lease: 0,
    }
}
