//! Key-range permissions: does the union of a user's granted ranges cover a requested range?
//!
//! A permission, like a request, names a key and a range end with etcd's conventions: an empty
//! end is the single key, the end `"\0"` means every key from `key` on, anything else is the
//! half-open range `[key, end)`. Coverage is checked against the union of all ranges granted
//! through the user's roles, so two adjacent grants together allow a range that spans both.

use oxcd_api::authpb::permission::Type as PermType;
use oxcd_api::authpb::Permission;

/// A half-open key interval; `end == None` is unbounded above.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// The interval a (key, range_end) pair denotes, as etcd reads it.
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = match range_end {
            [] => Some(single_key_end(key)),
            [0] => None,
            e => Some(e.to_vec()),
        };
        Interval {
            start: key.to_vec(),
            end,
        }
    }

    fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|e| *e <= self.start)
    }
}

/// The smallest key after `key`: the end of the one-key interval.
fn single_key_end(key: &[u8]) -> Vec<u8> {
    let mut e = key.to_vec();
    e.push(0);
    e
}

/// Whether a permission of type `granted` allows an operation needing `wanted`.
fn allows(granted: i32, wanted: PermType) -> bool {
    granted == PermType::Readwrite as i32 || granted == wanted as i32
}

/// Whether the permissions of `perms` of the right type cover the request `[key, range_end)`.
pub fn covers<'a>(
    perms: impl IntoIterator<Item = &'a Permission>,
    wanted: PermType,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let want = Interval::of(key, range_end);
    if want.is_empty() {
        // etcd allows an empty range (nothing to read or write) only if the start key is allowed.
        return covers(perms, wanted, key, &[]);
    }
    let mut granted: Vec<Interval> = perms
        .into_iter()
        .filter(|p| allows(p.perm_type, wanted))
        .map(|p| Interval::of(&p.key, &p.range_end))
        .filter(|i| !i.is_empty())
        .collect();
    granted.sort_by(|a, b| a.start.cmp(&b.start));
    // Sweep the sorted grants, extending the covered prefix of `want` while they touch it.
    let mut reached = want.start.clone();
    for g in granted {
        if g.start > reached {
            break;
        }
        match g.end {
            None => return true,
            Some(end) if end > reached => reached = end,
            Some(_) => {}
        }
        if want.end.as_ref().is_some_and(|e| reached >= *e) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &str) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
        }
    }

    #[test]
    fn single_key_grant_covers_only_that_key() {
        let p = [perm(PermType::Read, "foo", "")];
        assert!(covers(&p, PermType::Read, b"foo", b""));
        assert!(!covers(&p, PermType::Read, b"foo1", b""));
        assert!(!covers(&p, PermType::Read, b"foo", b"fop"));
        assert!(!covers(&p, PermType::Write, b"foo", b""));
    }

    #[test]
    fn readwrite_allows_both() {
        let p = [perm(PermType::Readwrite, "a", "c")];
        assert!(covers(&p, PermType::Read, b"b", b""));
        assert!(covers(&p, PermType::Write, b"a", b"c"));
        assert!(!covers(&p, PermType::Write, b"a", b"d"));
    }

    #[test]
    fn adjacent_grants_join() {
        let p = [
            perm(PermType::Read, "b", "c"),
            perm(PermType::Readwrite, "a", "b"),
        ];
        assert!(covers(&p, PermType::Read, b"a", b"c"));
        assert!(!covers(&p, PermType::Read, b"a", b"c\0"));
        let gap = [
            perm(PermType::Read, "a", "b"),
            perm(PermType::Read, "b1", "c"),
        ];
        assert!(!covers(&gap, PermType::Read, b"a", b"c"));
    }

    #[test]
    fn from_key_is_unbounded() {
        let p = [perm(PermType::Write, "k", "\0")];
        assert!(covers(&p, PermType::Write, b"k", b"\0"));
        assert!(covers(&p, PermType::Write, b"zzz", b""));
        assert!(!covers(&p, PermType::Write, b"j", b"\0"));
        let bounded = [perm(PermType::Write, "k", "z")];
        assert!(!covers(&bounded, PermType::Write, b"k", b"\0"));
    }

    #[test]
    fn prefix_grant() {
        // `--prefix foo` grants [foo, fop).
        let p = [perm(PermType::Read, "foo", "fop")];
        assert!(covers(&p, PermType::Read, b"foo/bar", b""));
        assert!(covers(&p, PermType::Read, b"foo", b"fop"));
        assert!(!covers(&p, PermType::Read, b"fo", b"fop"));
    }
}
