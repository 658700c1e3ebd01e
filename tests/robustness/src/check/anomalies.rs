//! Collects anomalies as the checks find them, keeping at most [`CAP`] per kind so a badly
//! broken run still produces a readable report quickly.

use std::collections::BTreeMap;

use super::Anomaly;

/// Anomalies kept per kind; the others are only counted.
pub(crate) const CAP: usize = 20;

#[derive(Default)]
pub(crate) struct Anomalies {
    pub(crate) list: Vec<Anomaly>,
    per_kind: BTreeMap<&'static str, usize>,
}

impl Anomalies {
    /// Records one anomaly of `kind`. `make` builds the detail, the op ids and the stream
    /// indexes; it only runs while the kind is under the cap, as details can be costly.
    pub(crate) fn add(
        &mut self,
        kind: &'static str,
        make: impl FnOnce() -> (String, Vec<usize>, Vec<usize>),
    ) {
        debug_assert!(
            super::KINDS.contains(&kind),
            "unknown anomaly kind {kind:?}"
        );
        let seen = self.per_kind.entry(kind).or_default();
        *seen += 1;
        if *seen <= CAP {
            let (detail, ops, streams) = make();
            self.list.push(Anomaly {
                kind,
                detail,
                ops,
                streams,
            });
        }
    }

    /// How many anomalies of each kind were found beyond the cap.
    pub(crate) fn suppressed(&self) -> BTreeMap<&'static str, usize> {
        self.per_kind
            .iter()
            .filter(|(_, n)| **n > CAP)
            .map(|(k, n)| (*k, n - CAP))
            .collect()
    }
}
