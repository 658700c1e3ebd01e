//! Indexes of the writes a revision of the log can be attributed to: every put by its (key,
//! value) (put values are unique per request), and the writes without a successful answer that
//! delete keys, by the key or as a short list, so a revision of pure deletes can be matched
//! without trying every failed write.

use std::collections::HashMap;

use crate::history::{History, Outcome, Request, TxnOp};

use super::keys::KeyRange;
use super::state::VersionedState;

/// Indexes of the writes a revision can be matched with.
pub(crate) struct Candidates<'h> {
    /// (key, value) of every put of every write (put values are unique per request).
    pub(crate) puts: HashMap<(&'h [u8], &'h [u8]), Vec<usize>>,
    /// Unknown-outcome writes deleting a single key, by that key.
    pub(crate) single_deletes: HashMap<&'h [u8], Vec<usize>>,
    /// Unknown-outcome writes deleting ranges or revoking leases.
    pub(crate) other_deletes: Vec<usize>,
}

pub(crate) fn candidates(h: &History) -> Candidates<'_> {
    let mut c = Candidates {
        puts: HashMap::new(),
        single_deletes: HashMap::new(),
        other_deletes: Vec::new(),
    };
    for (i, op) in h.ops.iter().enumerate() {
        let unknown = matches!(op.outcome, Outcome::Err { .. });
        match &op.req {
            Request::Put { key, value, .. } => c.puts.entry((key, value)).or_default().push(i),
            Request::Delete { key, range_end } if unknown => {
                if range_end.is_empty() {
                    c.single_deletes.entry(key).or_default().push(i);
                } else {
                    c.other_deletes.push(i);
                }
            }
            Request::Txn {
                success, failure, ..
            } => {
                let mut ranged = false;
                for top in success.iter().chain(failure) {
                    match top {
                        TxnOp::Put { key, value, .. } => {
                            c.puts.entry((key, value)).or_default().push(i)
                        }
                        TxnOp::Delete { key, range_end } if unknown => {
                            if range_end.is_empty() {
                                c.single_deletes.entry(key).or_default().push(i);
                            } else {
                                ranged = true;
                            }
                        }
                        _ => {}
                    }
                }
                if ranged {
                    c.other_deletes.push(i);
                }
            }
            Request::LeaseRevoke { .. } if unknown => c.other_deletes.push(i),
            _ => {}
        }
    }
    for list in c.single_deletes.values_mut() {
        list.dedup();
    }
    c
}

/// Whether op `i` (one of `other_deletes`) could have deleted `key` at revision `rev`.
pub(crate) fn may_delete(
    h: &History,
    i: usize,
    key: &[u8],
    state: &VersionedState,
    rev: i64,
) -> bool {
    match &h.ops[i].req {
        Request::Delete { key: k, range_end } => KeyRange::new(k, range_end).contains(key),
        Request::Txn {
            success, failure, ..
        } => success.iter().chain(failure).any(|top| {
            matches!(top, TxnOp::Delete { key: k, range_end } if KeyRange::new(k, range_end).contains(key))
        }),
        Request::LeaseRevoke { id } => state.get(key, rev - 1).is_some_and(|kv| kv.lease == *id),
        _ => false,
    }
}
