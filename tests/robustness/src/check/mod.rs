//! Checks of a recorded [`crate::history::History`].
//!
//! A revision-witness linearizability check: the server's revisions propose the order of the
//! operations; the checker verifies that this order explains every result and respects real
//! time. It replays the event log the watch streams reported (`log`, `state`), attributes each
//! revision to the one write that made it (`writes`, `candidates`, `effect`), checks reads
//! against the replayed state (`reads`), the real-time order (`order`), every watch stream
//! (`watch`) and the final state (`final_state`).

mod anomalies;
mod candidates;
mod describe;
mod effect;
mod final_state;
mod keys;
mod log;
mod order;
mod reads;
mod state;
mod watch;
mod writes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::history::History;

/// Every anomaly kind the checker reports (`Anomaly::kind` is one of these).
pub const KINDS: [&str; 17] = [
    "stale read",
    "read from the future",
    "wrong read result",
    "lost write",
    "wrong txn branch",
    "unexplained event",
    "event log gap",
    "watch duplicate",
    "watch gap",
    "watch out of order",
    "watch wrong start",
    "watch event mismatch",
    "watch wrong compact revision",
    "revision went backwards",
    "hash mismatch",
    "final state mismatch",
    "lease",
];

/// One violation of etcd's guarantees found in a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// One of the fixed kind names ("stale read", "lost write", "watch gap", ...).
    pub kind: &'static str,
    pub detail: String,
    /// `Op::id` of the operations involved.
    pub ops: Vec<usize>,
    /// Indexes into `History::watches` of the streams involved.
    pub streams: Vec<usize>,
}

/// The outcome of checking a history.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
    /// Operations in the history.
    pub ops: usize,
    /// Acknowledged writes that changed something.
    pub writes_acknowledged: usize,
    /// Writes without a successful answer whose effect is in the event log.
    pub writes_unknown_applied: usize,
    /// Events in the combined event log.
    pub events: usize,
    /// The last revision (of the log or the final read, whichever is higher).
    pub revisions: i64,
    /// Anomalies found beyond the per-kind cap, by kind.
    suppressed: BTreeMap<&'static str, usize>,
    /// Descriptions of the operations and streams the anomalies name, for `Display`.
    described_ops: BTreeMap<usize, String>,
    described_streams: BTreeMap<usize, String>,
}

/// Checks a history; see the module documentation for what is checked.
pub fn check(h: &History) -> Report {
    let mut out = anomalies::Anomalies::default();
    let log = log::build(h, &mut out);
    let state = state::VersionedState::from_log(&log);
    let last = log.last_revision().max(h.final_revision);
    event_log_gaps(&log, last, &mut out);
    let mut placed = writes::attribute(h, &log, &state, &mut out);
    for (i, rev, linearizable) in reads::check_ranges(h, &state, &mut out) {
        if linearizable {
            placed.pos.insert(i, 2 * rev + 1);
        }
    }
    // Every placed operation is linearizable (writes, and reads that are not serializable).
    let linearizable: HashSet<usize> = placed.pos.keys().copied().collect();
    order::check_real_time(h, &placed.pos, &mut out);
    order::check_members(h, &linearizable, &mut out);
    watch::check_streams(h, &log, &state, &mut out);
    final_state::check_final(h, &log, &state, &mut out);
    final_state::check_keep_alives(h, &mut out);

    let suppressed = out.suppressed();
    let anomalies = out.list;
    let named: HashSet<usize> = anomalies
        .iter()
        .flat_map(|a| a.ops.iter().copied())
        .collect();
    let described_ops = h
        .ops
        .iter()
        .filter(|op| named.contains(&op.id))
        .map(|op| (op.id, describe::op(op)))
        .collect();
    let described_streams = anomalies
        .iter()
        .flat_map(|a| a.streams.iter())
        .filter_map(|&s| h.watches.get(s).map(|w| (s, describe::stream(s, w))))
        .collect();
    Report {
        anomalies,
        ops: h.ops.len(),
        writes_acknowledged: placed.acknowledged,
        writes_unknown_applied: placed.unknown_applied,
        events: log.event_count(),
        revisions: last,
        suppressed,
        described_ops,
        described_streams,
    }
}

/// Every revision from 2 (the first write) to the last has at least one event: a revision is
/// only created by a write that changed something.
fn event_log_gaps(log: &log::EventLog, last: i64, out: &mut anomalies::Anomalies) {
    let mut expected = 2;
    let report = |from: i64, to: i64, out: &mut anomalies::Anomalies| {
        out.add("event log gap", || {
            let which = if from == to {
                format!("revision {from} has")
            } else {
                format!("revisions {from}..={to} have")
            };
            (
                format!("{which} no event in any watch stream"),
                vec![],
                vec![],
            )
        })
    };
    for &rev in log.revs.keys().filter(|r| **r >= 2 && **r <= last) {
        if rev > expected {
            report(expected, rev - 1, out);
        }
        expected = rev + 1;
    }
    if expected <= last {
        report(expected, last, out);
    }
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The history cut down to the operations and watch streams the first anomaly names (with
    /// the run's identity and final state), for printing or replaying it.
    pub fn minimal_history(&self, h: &History) -> History {
        let Some(first) = self.anomalies.first() else {
            return History {
                seed: h.seed,
                scenario: h.scenario.clone(),
                ..History::default()
            };
        };
        let ops: HashSet<usize> = first.ops.iter().copied().collect();
        History {
            seed: h.seed,
            scenario: h.scenario.clone(),
            ops: h
                .ops
                .iter()
                .filter(|op| ops.contains(&op.id))
                .cloned()
                .collect(),
            watches: first
                .streams
                .iter()
                .filter_map(|&s| h.watches.get(s).cloned())
                .collect(),
            members: h.members.clone(),
            final_kvs: h.final_kvs.clone(),
            final_revision: h.final_revision,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} ops ({} acknowledged writes, {} unknown writes applied), {} events up to revision {}: {}",
            self.ops,
            self.writes_acknowledged,
            self.writes_unknown_applied,
            self.events,
            self.revisions,
            if self.is_ok() {
                "no anomaly".to_string()
            } else {
                format!("{} anomalies", self.anomalies.len() + self.suppressed.values().sum::<usize>())
            }
        )?;
        for a in &self.anomalies {
            writeln!(f, "{}: {}", a.kind, a.detail)?;
            for id in &a.ops {
                match self.described_ops.get(id) {
                    Some(d) => writeln!(f, "    {d}")?,
                    None => writeln!(f, "    op {id}")?,
                }
            }
            for s in &a.streams {
                match self.described_streams.get(s) {
                    Some(d) => writeln!(f, "    {d}")?,
                    None => writeln!(f, "    stream {s}")?,
                }
            }
        }
        for (kind, n) in &self.suppressed {
            writeln!(f, "... and {n} more {kind}")?;
        }
        Ok(())
    }
}
