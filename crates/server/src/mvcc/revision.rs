//! Revisions and their on-disk encoding.
//!
//! The key table is keyed by revision, not by user key, exactly like etcd's "key" bucket: 8 bytes
//! main revision (big-endian), `_`, 8 bytes sub revision (big-endian), plus a trailing `t` for a
//! tombstone. Big-endian makes byte order equal numeric order, so a table range scan walks history
//! in revision order (what watch catch-up and compaction need), and keeping etcd's exact layout lets
//! a snapshot be converted to and from an etcd bbolt file byte for byte.

/// Length of an encoded revision without the tombstone mark.
pub const REV_BYTES_LEN: usize = 17;
/// Length of an encoded tombstone revision.
pub const TOMBSTONE_REV_BYTES_LEN: usize = REV_BYTES_LEN + 1;
const TOMBSTONE_MARK: u8 = b't';

/// One write: `main` is the revision of the request (one per write request), `sub` the index of
/// the change within that request (a txn's puts and deletes share `main`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The 17-byte key of a live row.
    pub fn to_bytes(self) -> [u8; REV_BYTES_LEN] {
        let mut b = [0u8; REV_BYTES_LEN];
        b[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8] = b'_';
        b[9..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        b
    }

    /// The 18-byte key of a tombstone row.
    pub fn to_tombstone_bytes(self) -> [u8; TOMBSTONE_REV_BYTES_LEN] {
        let mut b = [0u8; TOMBSTONE_REV_BYTES_LEN];
        b[..REV_BYTES_LEN].copy_from_slice(&self.to_bytes());
        b[REV_BYTES_LEN] = TOMBSTONE_MARK;
        b
    }

    /// Decodes a row key (live or tombstone). `None` if it is not a revision key at all.
    pub fn from_bytes(b: &[u8]) -> Option<Revision> {
        if b.len() < REV_BYTES_LEN || b[8] != b'_' {
            return None;
        }
        let main = u64::from_be_bytes(b[..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(b[9..REV_BYTES_LEN].try_into().ok()?) as i64;
        Some(Revision { main, sub })
    }
}

/// Whether a row key carries the tombstone mark.
pub fn is_tombstone(b: &[u8]) -> bool {
    b.len() == TOMBSTONE_REV_BYTES_LEN && b[REV_BYTES_LEN] == TOMBSTONE_MARK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_sorts_numerically() {
        let r = Revision::new(0x0102_0304_0506_0708, 5);
        let b = r.to_bytes();
        assert_eq!(&b[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b[8], b'_');
        assert_eq!(&b[9..], &5u64.to_be_bytes());
        assert_eq!(Revision::from_bytes(&b), Some(r));
        assert!(!is_tombstone(&b));

        let t = r.to_tombstone_bytes();
        assert_eq!(t.len(), 18);
        assert!(is_tombstone(&t));
        assert_eq!(Revision::from_bytes(&t), Some(r));

        // Byte order is numeric order, and a tombstone sorts right after its live twin.
        let (a, c) = (
            Revision::new(255, 9).to_bytes(),
            Revision::new(256, 0).to_bytes(),
        );
        assert!(a < c);
        assert!(Revision::new(3, 1).to_bytes()[..] < Revision::new(3, 1).to_tombstone_bytes()[..]);
        assert!(Revision::new(3, 1).to_tombstone_bytes()[..] < Revision::new(3, 2).to_bytes()[..]);
        assert!(Revision::new(3, 0) < Revision::new(3, 1));
        assert!(Revision::new(3, 9) < Revision::new(4, 0));
    }

    #[test]
    fn rejects_foreign_keys() {
        assert_eq!(Revision::from_bytes(b"short"), None);
        assert_eq!(Revision::from_bytes(&[0u8; 17]), None);
    }
}
