//! Key intervals as etcd requests name them (`key` plus `range_end`).

use std::ops::Bound;

/// Borrowed bounds of a key interval, for `BTreeMap::range`.
pub(crate) type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys a request or a watch covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// `range_end` empty: the single key.
    Single(Vec<u8>),
    /// `range_end == [0]`: every key from `key` on.
    From(Vec<u8>),
    /// `[key, range_end)`; empty when `range_end <= key`.
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else if range_end == [0] {
            KeyRange::From(key.to_vec())
        } else {
            KeyRange::Between(key.to_vec(), range_end.to_vec())
        }
    }

    pub(crate) fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => key.as_slice() == k,
            KeyRange::From(key) => k >= key.as_slice(),
            KeyRange::Between(start, end) => k >= start.as_slice() && k < end.as_slice(),
        }
    }

    /// Whether the range holds every key a client can write (keys are never empty, so "from
    /// `\0`" is everything).
    pub(crate) fn is_everything(&self) -> bool {
        matches!(self, KeyRange::From(key) if key.as_slice() <= [0u8].as_slice())
    }

    /// Bounds for `BTreeMap::range`; None for an empty interval (which `range` would reject).
    pub(crate) fn bounds(&self) -> Option<KeyBounds<'_>> {
        match self {
            KeyRange::Single(key) => Some((Bound::Included(key), Bound::Included(key))),
            KeyRange::From(key) => Some((Bound::Included(key), Bound::Unbounded)),
            KeyRange::Between(start, end) if start < end => {
                Some((Bound::Included(start), Bound::Excluded(end)))
            }
            KeyRange::Between(..) => None,
        }
    }
}

/// Bytes as readable text: printable ASCII as is, the rest escaped.
pub(crate) fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

impl std::fmt::Display for KeyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRange::Single(key) => write!(f, "{}", show(key)),
            KeyRange::From(key) => write!(f, "[{}, end)", show(key)),
            KeyRange::Between(start, end) => write!(f, "[{}, {})", show(start), show(end)),
        }
    }
}
