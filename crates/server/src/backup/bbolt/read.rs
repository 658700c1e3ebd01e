//! Reading a bbolt file, page by page: from bytes in memory or from an open file (positioned
//! reads, so a file of any size is read with a few pages in memory at a time).
//!
//! Nothing here trusts the file: every offset and length is checked before it is used, page ids
//! must lie below the high-water mark and inside the file, a tree walk refuses to visit a page
//! twice (a cycle, or two parents sharing a child) and to go deeper than any real tree, and
//! buckets nest only so far. A damaged file gives an [`Error`] naming the page, never a panic.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::page::{
    u64_at, BucketHeader, Meta, PageHeader, BRANCH_ELEM_LEN, BRANCH_PAGE, BUCKET_HEADER_LEN,
    BUCKET_LEAF_FLAG, FREELIST_PAGE, LEAF_ELEM_LEN, LEAF_PAGE, META_LEN, META_PAGE, NO_FREELIST,
    PAGE_HEADER_LEN, PAGE_SIZES,
};
use super::{Error, Result};

/// Branch levels in one bucket's tree. A tree of 4 KiB pages this deep would hold far more
/// keys than a file can; anything deeper is damage.
const MAX_TREE_DEPTH: usize = 32;
/// Buckets inside buckets. etcd nests none; bbolt allows any, so allow a generous few.
const MAX_BUCKET_DEPTH: usize = 32;

/// Pages already visited: one bit per page below the high-water mark (which `Db::open` bounds
/// by the file's size), so a check of a large file stays small.
struct Seen(Vec<u64>);

impl Seen {
    fn new(hwm: u64) -> Seen {
        Seen(vec![0; hwm.div_ceil(64) as usize])
    }

    /// Marks page `id` (below the high-water mark); false if it was marked already.
    fn insert(&mut self, id: u64) -> bool {
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    fn contains(&self, id: u64) -> bool {
        self.0[(id / 64) as usize] & (1u64 << (id % 64)) != 0
    }
}

/// Where a file's bytes are.
#[derive(Clone, Copy)]
pub enum Source<'s> {
    Bytes(&'s [u8]),
    /// An open file and its length.
    File(&'s File, u64),
}

impl<'s> From<&'s [u8]> for Source<'s> {
    fn from(b: &'s [u8]) -> Source<'s> {
        Source::Bytes(b)
    }
}

impl<'s> From<&'s Vec<u8>> for Source<'s> {
    fn from(b: &'s Vec<u8>) -> Source<'s> {
        Source::Bytes(b)
    }
}

impl<'s> Source<'s> {
    /// The whole of an open file.
    pub fn file(f: &'s File) -> std::io::Result<Source<'s>> {
        Ok(Source::File(f, f.metadata()?.len()))
    }

    pub fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::File(_, len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` bytes at `off`, or `None` if they are not all in the file.
    fn read(&self, off: u64, len: usize) -> std::io::Result<Option<Vec<u8>>> {
        let end = off.checked_add(len as u64);
        if end.is_none_or(|end| end > self.len()) {
            return Ok(None);
        }
        match self {
            Source::Bytes(b) => Ok(Some(b[off as usize..off as usize + len].to_vec())),
            Source::File(f, _) => {
                let mut buf = vec![0u8; len];
                f.read_exact_at(&mut buf, off)?;
                Ok(Some(buf))
            }
        }
    }

    /// Up to `len` bytes at `off` (fewer at the end of the file).
    fn read_upto(&self, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let len = (self.len().saturating_sub(off)).min(len as u64) as usize;
        Ok(self.read(off, len)?.unwrap_or_default())
    }
}

fn io_err(page: u64, e: std::io::Error) -> Error {
    Error::page(page, format!("read: {e}"))
}

/// An open bbolt file: where its bytes are and the meta page in force.
pub struct Db<'s> {
    src: Source<'s>,
    page_size: usize,
    meta: Meta,
}

/// A bucket: its tree's root page, or the page stored inline in its value.
#[derive(Clone)]
pub struct Bucket<'s> {
    src: Source<'s>,
    page_size: usize,
    hwm: u64,
    root: Root,
    /// How deep this bucket is nested (the root bucket is 0).
    depth: usize,
}

#[derive(Clone)]
enum Root {
    Page(u64),
    /// The inline page's bytes, and the page of the leaf holding them (for errors).
    Inline(Vec<u8>, u64),
}

/// A bucket entry's value, as a walk hands it out: a value borrowed from the page being read,
/// or a nested bucket.
pub enum Item<'p, 's> {
    Value(&'p [u8]),
    Bucket(Bucket<'s>),
}

/// An entry found by key, owned.
enum Found<'s> {
    Value(Vec<u8>),
    Bucket(Bucket<'s>),
}

/// What a walk calls for each entry: the key, and the value or bucket.
pub type EntryFn<'f, 's> = dyn FnMut(&[u8], Item<'_, 's>) -> Result<()> + 'f;

/// A leaf element.
struct LeafElem<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

impl<'s> Db<'s> {
    /// Finds the meta page in force (the valid one with the highest transaction id) and checks
    /// that the pages it claims are in the file.
    pub fn open(src: impl Into<Source<'s>>) -> Result<Db<'s>> {
        let src = src.into();
        // Both meta pages lie within the largest page size bbolt uses, plus one meta.
        let head_len = PAGE_SIZES[PAGE_SIZES.len() - 1] + PAGE_HEADER_LEN + META_LEN;
        let head = src.read_upto(0, head_len).map_err(|e| io_err(0, e))?;
        let meta_at = |off: usize, page: u64| -> Result<Meta> {
            let body = head
                .get(off + PAGE_HEADER_LEN..)
                .and_then(Meta::parse)
                .ok_or_else(|| Error::page(page, "meta page runs past the end of the file"))?;
            body.validate(page)?;
            Ok(body)
        };
        let m0 = meta_at(0, 0);
        // Page 1 is one page size in; when page 0 is unreadable, try every size bbolt uses.
        let m1 = match &m0 {
            Ok(m) => meta_at(m.page_size as usize, 1),
            Err(_) => PAGE_SIZES
                .iter()
                .map(|&p| meta_at(p, 1).and_then(|m| check_size(m, p)))
                .find(Result::is_ok)
                .unwrap_or_else(|| meta_at(4096, 1)),
        };
        let meta = match (m0, m1) {
            (Ok(a), Ok(b)) => {
                if a.page_size != b.page_size {
                    return Err(Error::new(format!(
                        "meta pages disagree on the page size ({} and {})",
                        a.page_size, b.page_size
                    )));
                }
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(e), Err(_)) => return Err(e),
        };
        let page_size = meta.page_size as usize;
        let size = meta
            .pgid
            .checked_mul(page_size as u64)
            .ok_or_else(|| Error::new(format!("high-water mark {} is absurd", meta.pgid)))?;
        if meta.pgid < 3 || size > src.len() {
            return Err(Error::new(format!(
                "the meta page claims {} pages of {} bytes, but the file holds {} bytes \
                 (truncated?)",
                meta.pgid,
                page_size,
                src.len()
            )));
        }
        if meta.root.root == 0 {
            return Err(Error::new("the root bucket has no root page"));
        }
        Ok(Db {
            src,
            page_size,
            meta,
        })
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Bytes of the database: high-water mark times page size (bbolt's `Tx.Size`).
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size as u64
    }

    pub fn root(&self) -> Bucket<'s> {
        Bucket {
            src: self.src,
            page_size: self.page_size,
            hwm: self.meta.pgid,
            root: Root::Page(self.meta.root.root),
            depth: 0,
        }
    }

    /// The structural check bbolt's `Tx.Check` makes: every tree readable, no page reached
    /// twice, and every page below the high-water mark either in a tree, free, or a meta or
    /// freelist page.
    pub fn check(&self) -> Result<()> {
        let mut seen = Seen::new(self.meta.pgid);
        for id in [0, 1] {
            seen.insert(id);
        }
        self.root().mark_pages(&mut seen)?;
        if self.meta.freelist == NO_FREELIST {
            // The free pages are not stored: unreachable ones cannot be told from free ones.
            return Ok(());
        }
        for id in self.free_pages()? {
            if !seen.insert(id) {
                return Err(Error::page(id, "page is both free and in use"));
            }
        }
        if let Some(id) = (0..self.meta.pgid).find(|&id| !seen.contains(id)) {
            return Err(Error::page(id, "page is neither in use nor free"));
        }
        Ok(())
    }

    /// The freelist page and its overflow, then the free page ids it lists.
    fn free_pages(&self) -> Result<Vec<u64>> {
        let id = self.meta.freelist;
        let (h, p) = page_at(self.src, self.page_size, self.meta.pgid, id)?;
        if h.flags != FREELIST_PAGE {
            return Err(Error::page(
                id,
                format!("expected a freelist page, found flags {:#04x}", h.flags),
            ));
        }
        let mut ids: Vec<u64> = (id..=id + u64::from(h.overflow)).collect();
        let (count, start) = if h.count == u16::MAX {
            let n = u64_at(&p, PAGE_HEADER_LEN)
                .ok_or_else(|| Error::page(id, "freelist count runs past the page end"))?;
            (n, PAGE_HEADER_LEN + 8)
        } else {
            (u64::from(h.count), PAGE_HEADER_LEN)
        };
        let fits = (p.len().saturating_sub(start) / 8) as u64;
        if count > fits {
            return Err(Error::page(
                id,
                format!("freelist of {count} ids runs past the page end"),
            ));
        }
        for i in 0..count as usize {
            let free = u64_at(&p, start + i * 8).unwrap_or(u64::MAX);
            if free < 2 || free >= self.meta.pgid {
                return Err(Error::page(
                    id,
                    format!("freelist names page {free}, outside the file"),
                ));
            }
            ids.push(free);
        }
        Ok(ids)
    }
}

/// A meta page found by trying page sizes is only believed if it names the size it was at.
fn check_size(m: Meta, at: usize) -> Result<Meta> {
    if m.page_size as usize == at {
        Ok(m)
    } else {
        Err(Error::page(1, "meta page does not name its own page size"))
    }
}

/// Page `id` with its overflow pages: its header and all its bytes.
fn page_at(src: Source<'_>, page_size: usize, hwm: u64, id: u64) -> Result<(PageHeader, Vec<u8>)> {
    if id < 2 || id >= hwm {
        return Err(Error::page(
            id,
            format!("page id out of range (the file has pages 2..{hwm} for data)"),
        ));
    }
    // Below the high-water mark, which `Db::open` found inside the file: no overflow.
    let start = id * page_size as u64;
    let head = src
        .read(start, PAGE_HEADER_LEN)
        .map_err(|e| io_err(id, e))?
        .as_deref()
        .and_then(PageHeader::parse)
        .ok_or_else(|| Error::page(id, "page runs past the end of the file"))?;
    if head.id != id {
        return Err(Error::page(
            id,
            format!("page header names page {} (damaged page)", head.id),
        ));
    }
    let pages = u64::from(head.overflow) + 1;
    if id + pages > hwm {
        return Err(Error::page(
            id,
            format!(
                "{} overflow pages run past the high-water mark",
                head.overflow
            ),
        ));
    }
    let bytes = src
        .read(start, pages as usize * page_size)
        .map_err(|e| io_err(id, e))?
        .ok_or_else(|| Error::page(id, "page runs past the end of the file"))?;
    Ok((head, bytes))
}

/// Element `i` of a leaf page (`p` starts with the page header).
fn leaf_elem(p: &[u8], id: u64, count: usize, i: usize) -> Result<LeafElem<'_>> {
    let past = || Error::page(id, format!("leaf element {i} runs past the page end"));
    let at = PAGE_HEADER_LEN + i * LEAF_ELEM_LEN;
    if count * LEAF_ELEM_LEN + PAGE_HEADER_LEN > p.len() {
        return Err(Error::page(
            id,
            format!("{count} leaf elements run past the page end"),
        ));
    }
    let word = |n: usize| super::page::u32_at(p, at + 4 * n).ok_or_else(past);
    let (flags, pos, ksize, vsize) = (word(0)?, word(1)?, word(2)?, word(3)?);
    let kstart = at.checked_add(pos as usize).ok_or_else(past)?;
    let kend = kstart.checked_add(ksize as usize).ok_or_else(past)?;
    let vend = kend.checked_add(vsize as usize).ok_or_else(past)?;
    if vend > p.len() {
        return Err(past());
    }
    Ok(LeafElem {
        flags,
        key: &p[kstart..kend],
        value: &p[kend..vend],
    })
}

/// Element `i` of a branch page: its key and child page.
fn branch_elem(p: &[u8], id: u64, count: usize, i: usize) -> Result<(&[u8], u64)> {
    let past = || Error::page(id, format!("branch element {i} runs past the page end"));
    if count * BRANCH_ELEM_LEN + PAGE_HEADER_LEN > p.len() {
        return Err(Error::page(
            id,
            format!("{count} branch elements run past the page end"),
        ));
    }
    let at = PAGE_HEADER_LEN + i * BRANCH_ELEM_LEN;
    let pos = super::page::u32_at(p, at).ok_or_else(past)? as usize;
    let ksize = super::page::u32_at(p, at + 4).ok_or_else(past)? as usize;
    let child = u64_at(p, at + 8).ok_or_else(past)?;
    let kstart = at.checked_add(pos).ok_or_else(past)?;
    let kend = kstart.checked_add(ksize).ok_or_else(past)?;
    let key = p.get(kstart..kend).ok_or_else(past)?;
    Ok((key, child))
}

impl<'s> Bucket<'s> {
    /// Calls `f` with every entry in key order. Stops at the first error, `f`'s or the file's.
    pub fn for_each(&self, f: &mut EntryFn<'_, 's>) -> Result<()> {
        let mut seen = Seen::new(self.hwm);
        self.walk(&mut seen, f)
    }

    /// The entry at `key`, copied out of its page.
    fn find(&self, key: &[u8]) -> Result<Option<Found<'s>>> {
        let mut found = None;
        self.for_each(&mut |k, item| {
            if k == key {
                found = Some(match item {
                    Item::Value(v) => Found::Value(v.to_vec()),
                    Item::Bucket(b) => Found::Bucket(b),
                });
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// The nested bucket at `name`, if there is one (a plain value there is an error).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'s>>> {
        match self.find(name)? {
            None => Ok(None),
            Some(Found::Bucket(b)) => Ok(Some(b)),
            Some(Found::Value(_)) => Err(Error::new(format!(
                "{} is a value, not a bucket",
                String::from_utf8_lossy(name)
            ))),
        }
    }

    /// The value at `key`, if there is one (a bucket there is an error).
    pub fn value(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.find(key)? {
            None => Ok(None),
            Some(Found::Value(v)) => Ok(Some(v)),
            Some(Found::Bucket(_)) => Err(Error::new(format!(
                "{} is a bucket, not a value",
                String::from_utf8_lossy(key)
            ))),
        }
    }

    /// Adds every page of this bucket's tree and of the buckets inside it to `seen`, failing
    /// on a page already there.
    fn mark_pages(&self, seen: &mut Seen) -> Result<()> {
        let mut nested = Vec::new();
        self.walk(seen, &mut |_, item| {
            if let Item::Bucket(b) = item {
                nested.push(b);
            }
            Ok(())
        })?;
        for b in nested {
            b.mark_pages(seen)?;
        }
        Ok(())
    }

    /// Walks the tree in key order, adding each page (and its overflow) to `seen`.
    fn walk(&self, seen: &mut Seen, f: &mut EntryFn<'_, 's>) -> Result<()> {
        match &self.root {
            Root::Inline(p, holder) => {
                let head = PageHeader::parse(p).ok_or_else(|| {
                    Error::page(*holder, "inline bucket page is shorter than its header")
                })?;
                if head.flags != LEAF_PAGE {
                    return Err(Error::page(
                        *holder,
                        format!(
                            "inline bucket page has flags {:#04x}, not a leaf",
                            head.flags
                        ),
                    ));
                }
                self.leaf(p, *holder, head.count as usize, f)
            }
            Root::Page(id) => self.walk_page(*id, 0, seen, f),
        }
    }

    fn walk_page(
        &self,
        id: u64,
        depth: usize,
        seen: &mut Seen,
        f: &mut EntryFn<'_, 's>,
    ) -> Result<()> {
        if depth > MAX_TREE_DEPTH {
            return Err(Error::page(
                id,
                "tree is deeper than any real one (a cycle?)",
            ));
        }
        let (head, p) = page_at(self.src, self.page_size, self.hwm, id)?;
        for pid in id..=id + u64::from(head.overflow) {
            if !seen.insert(pid) {
                return Err(Error::page(
                    pid,
                    "page reached twice (a cycle, or a page shared by two parents)",
                ));
            }
        }
        let count = head.count as usize;
        match head.flags {
            LEAF_PAGE => self.leaf(&p, id, count, f),
            BRANCH_PAGE => {
                for i in 0..count {
                    let (_, child) = branch_elem(&p, id, count, i)?;
                    self.walk_page(child, depth + 1, seen, f)?;
                }
                Ok(())
            }
            META_PAGE | FREELIST_PAGE => Err(Error::page(
                id,
                format!(
                    "expected a branch or leaf page, found a {} page",
                    if head.flags == META_PAGE {
                        "meta"
                    } else {
                        "freelist"
                    }
                ),
            )),
            other => Err(Error::page(
                id,
                format!("expected a branch or leaf page, found flags {other:#04x}"),
            )),
        }
    }

    fn leaf(&self, p: &[u8], id: u64, count: usize, f: &mut EntryFn<'_, 's>) -> Result<()> {
        for i in 0..count {
            let e = leaf_elem(p, id, count, i)?;
            let item = if e.flags & BUCKET_LEAF_FLAG != 0 {
                Item::Bucket(self.nested(e.value, id, i)?)
            } else {
                Item::Value(e.value)
            };
            f(e.key, item)?;
        }
        Ok(())
    }

    /// The bucket whose header is `value`, element `i` of leaf page `id`.
    fn nested(&self, value: &[u8], id: u64, i: usize) -> Result<Bucket<'s>> {
        if self.depth >= MAX_BUCKET_DEPTH {
            return Err(Error::page(id, "buckets nested deeper than any real file"));
        }
        let h = BucketHeader::parse(value).ok_or_else(|| {
            Error::page(id, format!("leaf element {i}: bucket value is too short"))
        })?;
        let root = if h.root == 0 {
            Root::Inline(value[BUCKET_HEADER_LEN..].to_vec(), id)
        } else {
            Root::Page(h.root)
        };
        Ok(Bucket {
            src: self.src,
            page_size: self.page_size,
            hwm: self.hwm,
            root,
            depth: self.depth + 1,
        })
    }
}
