//! bbolt's on-disk page format: the page header, the meta page, and the leaf and branch
//! element headers. All integers are little-endian (the format is written by the host's byte
//! order, and every platform etcd ships on is little-endian).

use super::{Error, Result};

/// Identifies a bbolt file (at offset 16 of pages 0 and 1).
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only file format version bbolt has.
pub const VERSION: u32 = 2;

pub const PAGE_HEADER_LEN: usize = 16;
pub const META_LEN: usize = 64;
/// A leaf element header: flags u32, pos u32, ksize u32, vsize u32.
pub const LEAF_ELEM_LEN: usize = 16;
/// A branch element header: pos u32, ksize u32, pgid u64.
pub const BRANCH_ELEM_LEN: usize = 16;
/// A bucket value starts with {root pgid u64, sequence u64}.
pub const BUCKET_HEADER_LEN: usize = 16;

pub const BRANCH_PAGE: u16 = 0x01;
pub const LEAF_PAGE: u16 = 0x02;
pub const META_PAGE: u16 = 0x04;
pub const FREELIST_PAGE: u16 = 0x10;

/// Leaf element flag: the value is a nested bucket.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// A meta page's freelist pgid when the freelist is not stored (bbolt's NoFreelistSync).
pub const NO_FREELIST: u64 = u64::MAX;

/// The page sizes a file may use. bbolt takes the OS page size; these cover every platform.
pub const PAGE_SIZES: [usize; 8] = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The 16-byte header every page (and every inline bucket page) starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    /// Pages after this one that belong to it.
    pub overflow: u32,
}

impl PageHeader {
    pub fn parse(b: &[u8]) -> Option<PageHeader> {
        Some(PageHeader {
            id: u64_at(b, 0)?,
            flags: u16_at(b, 8)?,
            count: u16_at(b, 10)?,
            overflow: u32_at(b, 12)?,
        })
    }

    pub fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// The root bucket reference and sequence stored in a meta page and in a bucket value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketHeader {
    /// 0 for an inline bucket, whose page follows the header in the value.
    pub root: u64,
    pub sequence: u64,
}

impl BucketHeader {
    pub fn parse(b: &[u8]) -> Option<BucketHeader> {
        Some(BucketHeader {
            root: u64_at(b, 0)?,
            sequence: u64_at(b, 8)?,
        })
    }

    pub fn to_bytes(self) -> [u8; BUCKET_HEADER_LEN] {
        let mut b = [0u8; BUCKET_HEADER_LEN];
        b[..8].copy_from_slice(&self.root.to_le_bytes());
        b[8..].copy_from_slice(&self.sequence.to_le_bytes());
        b
    }
}

/// The body of a meta page (after its page header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    pub root: BucketHeader,
    pub freelist: u64,
    /// The high-water mark: pages `0..pgid` are in use or free; the database's size is
    /// `pgid * page_size`.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

/// Bytes of a meta body covered by its checksum (all but the checksum).
const META_SUMMED: usize = 56;

/// FNV-1a, 64 bits: the meta page checksum.
pub fn fnv1a64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Meta {
    /// Parses the meta body `b` (starting after the page header). `None` if it is short.
    pub fn parse(b: &[u8]) -> Option<Meta> {
        Some(Meta {
            magic: u32_at(b, 0)?,
            version: u32_at(b, 4)?,
            page_size: u32_at(b, 8)?,
            flags: u32_at(b, 12)?,
            root: BucketHeader::parse(b.get(16..32)?)?,
            freelist: u64_at(b, 32)?,
            pgid: u64_at(b, 40)?,
            txid: u64_at(b, 48)?,
            checksum: u64_at(b, 56)?,
        })
    }

    pub fn to_bytes(self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..32].copy_from_slice(&self.root.to_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&b[..META_SUMMED]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Checks magic, version and checksum, as bbolt does before trusting a meta page.
    pub fn validate(&self, page: u64) -> Result<()> {
        if self.magic != MAGIC {
            return Err(Error::page(page, "invalid magic (not a bbolt file)"));
        }
        if self.version != VERSION {
            return Err(Error::page(
                page,
                format!("unsupported version {}", self.version),
            ));
        }
        let mut copy = *self;
        copy.checksum = 0;
        let want = fnv1a64(&copy.to_bytes()[..META_SUMMED]);
        if want != self.checksum {
            return Err(Error::page(page, "meta checksum mismatch"));
        }
        if !PAGE_SIZES.contains(&(self.page_size as usize)) {
            return Err(Error::page(
                page,
                format!("unsupported page size {}", self.page_size),
            ));
        }
        Ok(())
    }
}

/// Whether `b` starts like a bbolt file: the meta magic and version on page 0, or, when page 0
/// is damaged, a valid meta page 1 at one of the page sizes bbolt uses. A redb file (oxcd's
/// backend) starts with redb's own magic and never counts, whatever its pages hold.
pub fn looks_like_bbolt(b: &[u8]) -> bool {
    if b.starts_with(b"redb") {
        return false;
    }
    let magic_at = |off: usize| {
        u32_at(b, off + PAGE_HEADER_LEN) == Some(MAGIC)
            && u32_at(b, off + PAGE_HEADER_LEN + 4) == Some(VERSION)
    };
    let meta1_at = |p: usize| {
        b.get(p + PAGE_HEADER_LEN..)
            .and_then(Meta::parse)
            .is_some_and(|m| m.validate(1).is_ok() && m.page_size as usize == p)
    };
    magic_at(0) || PAGE_SIZES.iter().any(|&p| meta1_at(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_checks_its_sum() {
        let m = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: 4096,
            root: BucketHeader {
                root: 3,
                sequence: 0,
            },
            freelist: 2,
            pgid: 4,
            txid: 9,
            ..Meta::default()
        };
        let b = m.to_bytes();
        let back = Meta::parse(&b).unwrap();
        assert_eq!(back.pgid, 4);
        back.validate(0).unwrap();
        let mut bad = b;
        bad[45] ^= 1;
        let e = Meta::parse(&bad).unwrap().validate(1).unwrap_err();
        assert_eq!(e.to_string(), "bbolt: page 1: meta checksum mismatch");
    }

    #[test]
    fn detection_needs_the_magic_or_a_valid_page_1() {
        let mut file = vec![0u8; 8192];
        assert!(!looks_like_bbolt(&file));
        file[16..20].copy_from_slice(&MAGIC.to_le_bytes());
        file[20..24].copy_from_slice(&VERSION.to_le_bytes());
        assert!(looks_like_bbolt(&file));
        // Page 0 gone: page 1 must be a whole valid meta naming its own page size.
        file[16..24].fill(0);
        let m = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: 4096,
            ..Meta::default()
        };
        file[4096 + 16..4096 + 16 + META_LEN].copy_from_slice(&m.to_bytes());
        assert!(looks_like_bbolt(&file));
        file[4096 + 60] ^= 1;
        assert!(!looks_like_bbolt(&file));
        let mut redb = b"redb".to_vec();
        redb.extend_from_slice(&file[4..]);
        redb[16..24].copy_from_slice(&file[4096 + 16..4096 + 24]);
        assert!(!looks_like_bbolt(&redb));
    }

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
