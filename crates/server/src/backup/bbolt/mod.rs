//! bbolt's file format, read and written by our own code: etcd keeps its backend (and so its
//! snapshots) in a bbolt database, and oxcd restores from and exports to such files.
//!
//! - [`page`]: page and meta layouts, checksums, detection by the meta magic;
//! - [`read`]: a reader over the file's bytes that rejects damage with an error naming the
//!   page, never a panic;
//! - [`mod@write`]: a streaming writer producing a compact file bbolt (and etcd) opens.

pub mod page;
pub mod read;
pub mod write;

use std::collections::BTreeMap;

pub use page::looks_like_bbolt;
pub use read::{Bucket, Db, EntryFn, Item, Source};
pub use write::{BucketValue, BucketWriter, Writer};

/// A damaged or unreadable bbolt file, or a write that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error(format!("bbolt: {}", msg.into()))
    }

    pub fn page(id: u64, msg: impl Into<String>) -> Error {
        Error(format!("bbolt: page {id}: {}", msg.into()))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A bucket's whole contents in memory, for small buckets and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree(pub BTreeMap<Vec<u8>, Node>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Value(Vec<u8>),
    Bucket(Tree),
}

impl Tree {
    /// Reads the whole file: the structural check first (so no page is reached twice, and
    /// buckets pointing at each other cannot make the walk blow up), then every bucket.
    pub fn read(db: &Db<'_>) -> Result<Tree> {
        db.check()?;
        Tree::read_bucket(&db.root())
    }

    fn read_bucket(b: &Bucket<'_>) -> Result<Tree> {
        let mut out = BTreeMap::new();
        b.for_each(&mut |k, item| {
            let node = match item {
                Item::Value(v) => Node::Value(v.to_vec()),
                Item::Bucket(nested) => Node::Bucket(Tree::read_bucket(&nested)?),
            };
            out.insert(k.to_vec(), node);
            Ok(())
        })?;
        Ok(Tree(out))
    }

    /// Writes this tree as bucket contents with `w`.
    pub fn write<W: std::io::Write + std::io::Seek>(
        &self,
        w: &mut Writer<W>,
        into: &mut BucketWriter,
    ) -> Result<()> {
        for (k, n) in &self.0 {
            match n {
                Node::Value(v) => into.put(w, k, v)?,
                Node::Bucket(t) => {
                    let mut child = BucketWriter::new();
                    t.write(w, &mut child)?;
                    let v = child.finish(w)?;
                    into.put_bucket(w, k, v)?;
                }
            }
        }
        Ok(())
    }

    /// A whole file holding this tree as its root bucket.
    pub fn to_file(&self, page_size: usize) -> Result<Vec<u8>> {
        let mut w = Writer::new(std::io::Cursor::new(Vec::new()), page_size)?;
        let mut root = BucketWriter::new();
        self.write(&mut w, &mut root)?;
        Ok(w.finish(root)?.into_inner())
    }
}

#[cfg(test)]
mod tests;
