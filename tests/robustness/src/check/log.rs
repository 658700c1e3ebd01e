//! The global event log: every revision's events, combined from all watch streams (step 1).
//!
//! Each stream reports all events of its key range for every revision it reports (a revision is
//! never split over streams' responses), so a stream watching every key gives a revision's
//! complete event list, and narrower streams give the part of their range.

use std::collections::BTreeMap;

use crate::history::{Event, History};

use super::anomalies::Anomalies;
use super::keys::{show, KeyRange};

/// What the log knows of one revision.
#[derive(Default)]
pub(crate) struct LogRevision<'h> {
    /// Events per key, in the order the reporting stream gave them, with that stream's index.
    pub(crate) keys: BTreeMap<&'h [u8], (usize, Vec<&'h Event>)>,
    /// Reported by a stream over every key: `keys` is the whole revision.
    pub(crate) complete: bool,
    /// Otherwise, the ranges of the streams that reported it.
    pub(crate) covered: Vec<KeyRange>,
}

impl<'h> LogRevision<'h> {
    /// Whether the log would know about an event of `key` at this revision.
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        self.complete || self.covered.iter().any(|r| r.contains(key))
    }

    pub(crate) fn events(&self) -> impl Iterator<Item = &'h Event> + '_ {
        self.keys.values().flat_map(|(_, evs)| evs.iter().copied())
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.values().map(|(_, evs)| evs.len()).sum()
    }
}

/// One stream's events by revision (duplicates dropped), with the stream's key range.
pub(crate) struct StreamEvents<'h> {
    pub(crate) range: KeyRange,
    pub(crate) by_rev: BTreeMap<i64, Vec<&'h Event>>,
}

pub(crate) struct EventLog<'h> {
    pub(crate) revs: BTreeMap<i64, LogRevision<'h>>,
    pub(crate) streams: Vec<StreamEvents<'h>>,
}

impl EventLog<'_> {
    pub(crate) fn last_revision(&self) -> i64 {
        self.revs.keys().next_back().copied().unwrap_or(1)
    }

    pub(crate) fn event_count(&self) -> usize {
        self.revs.values().map(LogRevision::len).sum()
    }
}

/// Two reports of the same event agree: same kind and kv, and same prev_kv when both have one.
pub(crate) fn same_event(a: &Event, b: &Event) -> bool {
    a.kind == b.kind
        && a.kv == b.kv
        && (a.prev_kv.is_none() || b.prev_kv.is_none() || a.prev_kv == b.prev_kv)
}

pub(crate) fn show_event(e: &Event) -> String {
    let kv = &e.kv;
    let mut s = match e.kind {
        crate::history::EventKind::Put => format!(
            "PUT {}={} mod {} create {} ver {}",
            show(&kv.key),
            show(&kv.value),
            kv.mod_revision,
            kv.create_revision,
            kv.version
        ),
        crate::history::EventKind::Delete => {
            format!("DELETE {} mod {}", show(&kv.key), kv.mod_revision)
        }
    };
    if kv.lease != 0 {
        s.push_str(&format!(" lease {}", kv.lease));
    }
    if let Some(p) = &e.prev_kv {
        s.push_str(&format!(
            " (prev {}={} mod {} ver {})",
            show(&p.key),
            show(&p.value),
            p.mod_revision,
            p.version
        ));
    }
    s
}

pub(crate) fn show_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    let parts: Vec<String> = events.into_iter().map(show_event).collect();
    if parts.is_empty() {
        "no events".to_string()
    } else {
        parts.join("; ")
    }
}

/// Reads every stream's events (reporting duplicates and order violations within a stream) and
/// merges them into the log (reporting streams that disagree about a revision).
pub(crate) fn build<'h>(h: &'h History, out: &mut Anomalies) -> EventLog<'h> {
    let streams: Vec<StreamEvents<'h>> = h
        .watches
        .iter()
        .enumerate()
        .map(|(si, w)| stream_events(si, w, out))
        .collect();
    let mut revs: BTreeMap<i64, LogRevision<'h>> = BTreeMap::new();
    for (si, s) in streams.iter().enumerate() {
        for (rev, events) in &s.by_rev {
            let entry = revs.entry(*rev).or_default();
            if s.range.is_everything() {
                entry.complete = true;
            } else if !entry.covered.contains(&s.range) {
                entry.covered.push(s.range.clone());
            }
            let mut by_key: BTreeMap<&'h [u8], Vec<&'h Event>> = BTreeMap::new();
            for &e in events {
                by_key.entry(&e.kv.key).or_default().push(e);
            }
            for (key, evs) in by_key {
                match entry.keys.get(key) {
                    None => {
                        entry.keys.insert(key, (si, evs));
                    }
                    Some((other, known)) => {
                        let agree = known.len() == evs.len()
                            && known.iter().zip(&evs).all(|(a, b)| same_event(a, b));
                        if !agree {
                            let other = *other;
                            out.add("watch event mismatch", || {
                                (
                                    format!(
                                        "streams {other} and {si} disagree on key {} at revision {rev}: {} vs {}",
                                        show(key),
                                        show_events(known.iter().copied()),
                                        show_events(evs.iter().copied())
                                    ),
                                    vec![],
                                    vec![other, si],
                                )
                            });
                        }
                    }
                }
            }
        }
    }
    EventLog { revs, streams }
}

/// One stream's events grouped by revision. An event equal to one the stream already reported
/// is a duplicate; an event below the highest revision seen so far is out of order.
fn stream_events<'h>(
    si: usize,
    w: &'h crate::history::WatchStream,
    out: &mut Anomalies,
) -> StreamEvents<'h> {
    let mut by_rev: BTreeMap<i64, Vec<&'h Event>> = BTreeMap::new();
    let mut last = i64::MIN;
    let (mut duplicates, mut disorders) = (Vec::new(), Vec::new());
    for resp in &w.responses {
        for e in &resp.events {
            let rev = e.kv.mod_revision;
            let known = by_rev.entry(rev).or_default();
            // Two events of one revision with the same kind and kv can only be one event sent
            // twice (a key put twice by one txn differs in value or version).
            if known.iter().any(|k| k.kind == e.kind && k.kv == e.kv) {
                duplicates.push(e);
                continue;
            }
            if rev < last {
                disorders.push((e, last));
            }
            last = last.max(rev);
            known.push(e);
        }
    }
    // One anomaly per stream and kind: a broken stream tends to break many events.
    if let Some(first) = duplicates.first() {
        let n = duplicates.len();
        out.add("watch duplicate", || {
            (
                format!(
                    "stream {si} reported {n} event(s) twice, first: {}",
                    show_event(first)
                ),
                vec![],
                vec![si],
            )
        });
    }
    if let Some((first, after)) = disorders.first() {
        let n = disorders.len();
        out.add("watch out of order", || {
            (
                format!(
                    "stream {si} reported {n} event(s) after a later revision, first: {} after revision {after}",
                    show_event(first)
                ),
                vec![],
                vec![si],
            )
        });
    }
    StreamEvents {
        range: KeyRange::new(&w.key, &w.range_end),
        by_rev,
    }
}
