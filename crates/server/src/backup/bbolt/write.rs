//! Writing a new bbolt file, streaming: pages are written as they fill, children before the
//! branch pages and buckets that point at them, and the two meta pages last.
//!
//! The file is what a freshly compacted bbolt database looks like: meta pages 0 and 1, an empty
//! freelist on page 2, then the pages of every tree, with no free pages in between (so bbolt's
//! consistency check finds every page in use). Leaves are filled up to a page; an element
//! larger than a page gets a leaf of its own with overflow pages. Small buckets without nested
//! buckets are stored inline in their parent's leaf, as bbolt stores them.

use std::io::{Seek, SeekFrom, Write};

use super::page::{
    BucketHeader, Meta, PageHeader, BRANCH_ELEM_LEN, BRANCH_PAGE, BUCKET_LEAF_FLAG, FREELIST_PAGE,
    LEAF_ELEM_LEN, LEAF_PAGE, MAGIC, META_PAGE, PAGE_HEADER_LEN, PAGE_SIZES, VERSION,
};
use super::{Error, Result};

/// The page allocator and output of one file.
pub struct Writer<W: Write + Seek> {
    out: W,
    page_size: usize,
    /// The next page id to write (the high-water mark once finished).
    next: u64,
}

/// A bucket's value as its parent stores it: the bucket header, and the inline page if it has
/// one.
#[derive(Debug, Clone)]
pub struct BucketValue(Vec<u8>);

/// One node (page) being filled: elements (flags, key, value) and its size in bytes.
#[derive(Default)]
struct Node {
    elems: Vec<(u32, Vec<u8>, Vec<u8>)>,
    size: usize,
}

impl Node {
    fn new() -> Node {
        Node {
            elems: Vec::new(),
            size: PAGE_HEADER_LEN,
        }
    }
}

/// Builds one bucket. Keys must come in strictly increasing byte order.
pub struct BucketWriter {
    leaf: Node,
    /// (first key, page) of every leaf written so far.
    leaves: Vec<(Vec<u8>, u64)>,
    has_nested: bool,
    last: Option<Vec<u8>>,
    sequence: u64,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts a file with `page_size`-byte pages: reserves the meta pages and writes the empty
    /// freelist.
    pub fn new(mut out: W, page_size: usize) -> Result<Writer<W>> {
        if !PAGE_SIZES.contains(&page_size) {
            return Err(Error::new(format!("unsupported page size {page_size}")));
        }
        out.write_all(&vec![0u8; 2 * page_size]).map_err(io)?;
        let mut w = Writer {
            out,
            page_size,
            next: 2,
        };
        w.write_page(FREELIST_PAGE, 0, &[])?;
        Ok(w)
    }

    /// Writes a page (and as many overflow pages as `body` needs) at the next id.
    fn write_page(&mut self, flags: u16, count: usize, body: &[u8]) -> Result<u64> {
        let count = u16::try_from(count)
            .map_err(|_| Error::new(format!("{count} elements do not fit in one page")))?;
        let len = PAGE_HEADER_LEN + body.len();
        let pages = len.div_ceil(self.page_size).max(1);
        let id = self.next;
        let overflow = u32::try_from(pages - 1)
            .map_err(|_| Error::new(format!("a page of {len} bytes is too large")))?;
        let mut head = [0u8; PAGE_HEADER_LEN];
        PageHeader {
            id,
            flags,
            count,
            overflow,
        }
        .write(&mut head);
        self.out.write_all(&head).map_err(io)?;
        self.out.write_all(body).map_err(io)?;
        self.out
            .write_all(&vec![0u8; pages * self.page_size - len])
            .map_err(io)?;
        self.next += pages as u64;
        Ok(id)
    }

    /// Writes the meta pages, making `root` the root bucket, and returns the output, positioned
    /// at the end of the database.
    pub fn finish(mut self, root: BucketWriter) -> Result<W> {
        let root = root.finish_pages(&mut self)?;
        for (id, txid) in [(0u64, 1u64), (1, 2)] {
            let meta = Meta {
                magic: MAGIC,
                version: VERSION,
                page_size: self.page_size as u32,
                flags: 0,
                root: BucketHeader { root, sequence: 0 },
                freelist: 2,
                pgid: self.next,
                txid,
                checksum: 0,
            };
            let mut page = vec![0u8; self.page_size];
            PageHeader {
                id,
                flags: META_PAGE,
                count: 0,
                overflow: 0,
            }
            .write(&mut page);
            page[PAGE_HEADER_LEN..PAGE_HEADER_LEN + super::page::META_LEN]
                .copy_from_slice(&meta.to_bytes());
            self.out
                .seek(SeekFrom::Start(id * self.page_size as u64))
                .map_err(io)?;
            self.out.write_all(&page).map_err(io)?;
        }
        self.out
            .seek(SeekFrom::Start(self.next * self.page_size as u64))
            .map_err(io)?;
        self.out.flush().map_err(io)?;
        Ok(self.out)
    }
}

fn io(e: std::io::Error) -> Error {
    Error::new(format!("write: {e}"))
}

/// A node's page body: element headers, then keys and values. `branch` elements carry a page
/// id in the value slot (8 bytes) instead of a value.
fn node_body(elems: &[(u32, Vec<u8>, Vec<u8>)], branch: bool) -> Vec<u8> {
    let elem_len = if branch {
        BRANCH_ELEM_LEN
    } else {
        LEAF_ELEM_LEN
    };
    let headers = elems.len() * elem_len;
    let mut body = vec![0u8; headers];
    for (i, (flags, key, value)) in elems.iter().enumerate() {
        let at = i * elem_len;
        // An element's key is found at its own position plus `pos`.
        let pos = (body.len() - at) as u32;
        let h = &mut body[at..at + elem_len];
        if branch {
            h[0..4].copy_from_slice(&pos.to_le_bytes());
            h[4..8].copy_from_slice(&(key.len() as u32).to_le_bytes());
            h[8..16].copy_from_slice(value);
            body.extend_from_slice(key);
        } else {
            h[0..4].copy_from_slice(&flags.to_le_bytes());
            h[4..8].copy_from_slice(&pos.to_le_bytes());
            h[8..12].copy_from_slice(&(key.len() as u32).to_le_bytes());
            h[12..16].copy_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(key);
            body.extend_from_slice(value);
        }
    }
    body
}

impl Default for BucketWriter {
    fn default() -> Self {
        BucketWriter::new()
    }
}

impl BucketWriter {
    pub fn new() -> BucketWriter {
        BucketWriter {
            leaf: Node::new(),
            leaves: Vec::new(),
            has_nested: false,
            last: None,
            sequence: 0,
        }
    }

    /// Sets the bucket's sequence (bbolt's `NextSequence` counter).
    pub fn set_sequence(&mut self, seq: u64) {
        self.sequence = seq;
    }

    pub fn put<W: Write + Seek>(
        &mut self,
        w: &mut Writer<W>,
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        self.add(w, 0, key, value.to_vec())
    }

    /// Adds the finished bucket `child` under `key`.
    pub fn put_bucket<W: Write + Seek>(
        &mut self,
        w: &mut Writer<W>,
        key: &[u8],
        child: BucketValue,
    ) -> Result<()> {
        self.has_nested = true;
        self.add(w, BUCKET_LEAF_FLAG, key, child.0)
    }

    fn add<W: Write + Seek>(
        &mut self,
        w: &mut Writer<W>,
        flags: u32,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<()> {
        if key.is_empty() {
            return Err(Error::new("bbolt keys may not be empty"));
        }
        if self.last.as_deref().is_some_and(|last| last >= key) {
            return Err(Error::new(format!(
                "keys must be added in increasing order ({:?} after {:?})",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(self.last.as_deref().unwrap_or_default())
            )));
        }
        self.last = Some(key.to_vec());
        let size = LEAF_ELEM_LEN + key.len() + value.len();
        if !self.leaf.elems.is_empty() && self.leaf.size + size > w.page_size {
            self.flush_leaf(w)?;
        }
        self.leaf.size += size;
        self.leaf.elems.push((flags, key.to_vec(), value));
        Ok(())
    }

    fn flush_leaf<W: Write + Seek>(&mut self, w: &mut Writer<W>) -> Result<()> {
        let node = std::mem::replace(&mut self.leaf, Node::new());
        let first = node.elems.first().map(|e| e.1.clone()).unwrap_or_default();
        let id = w.write_page(LEAF_PAGE, node.elems.len(), &node_body(&node.elems, false))?;
        self.leaves.push((first, id));
        Ok(())
    }

    /// Finishes the bucket as a value for its parent: inline if bbolt would inline it (no
    /// nested buckets, no page written yet, at most a quarter page), else on pages.
    pub fn finish<W: Write + Seek>(self, w: &mut Writer<W>) -> Result<BucketValue> {
        let sequence = self.sequence;
        if !self.has_nested && self.leaves.is_empty() && self.leaf.size <= w.page_size / 4 {
            let mut v = BucketHeader { root: 0, sequence }.to_bytes().to_vec();
            let mut head = [0u8; PAGE_HEADER_LEN];
            PageHeader {
                id: 0,
                flags: LEAF_PAGE,
                count: self.leaf.elems.len() as u16,
                overflow: 0,
            }
            .write(&mut head);
            v.extend_from_slice(&head);
            v.extend_from_slice(&node_body(&self.leaf.elems, false));
            return Ok(BucketValue(v));
        }
        let root = self.finish_pages(w)?;
        Ok(BucketValue(
            BucketHeader { root, sequence }.to_bytes().to_vec(),
        ))
    }

    /// Writes the last leaf and the branch levels above the leaves; returns the root page.
    fn finish_pages<W: Write + Seek>(mut self, w: &mut Writer<W>) -> Result<u64> {
        if !self.leaf.elems.is_empty() || self.leaves.is_empty() {
            self.flush_leaf(w)?;
        }
        let mut level = self.leaves;
        while level.len() > 1 {
            let mut up = Vec::new();
            let mut node = Node::new();
            let mut first = Vec::new();
            for (key, id) in level {
                let size = BRANCH_ELEM_LEN + key.len();
                // At least two children per branch page, so every level is smaller.
                if node.elems.len() >= 2 && node.size + size > w.page_size {
                    let id =
                        w.write_page(BRANCH_PAGE, node.elems.len(), &node_body(&node.elems, true))?;
                    up.push((std::mem::take(&mut first), id));
                    node = Node::new();
                }
                if node.elems.is_empty() {
                    first = key.clone();
                }
                node.size += size;
                node.elems.push((0, key, id.to_le_bytes().to_vec()));
            }
            let id = w.write_page(BRANCH_PAGE, node.elems.len(), &node_body(&node.elems, true))?;
            up.push((first, id));
            level = up;
        }
        Ok(level[0].1)
    }
}
