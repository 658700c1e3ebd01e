//! Revisioned key-value store on redb: etcd's mvcc package.
//!
//! - `revision`: revisions and the on-disk row key encoding (etcd's "key" bucket layout)
//! - `key_index`: the in-memory index of key -> generations of revisions
//! - `range`, `compare`, `txn`: Range / Txn semantics, exactly etcd's
//! - `store`: `MvccStore`, the read side; `batch`: `WriteBatch`, the apply loop's writer
//! - `codec`, `hash`: row formats and HashKV's CRC-32C
//! - `defrag`: rewriting the backend into a packed file while serving, or offline
//! - `watch_hub`: delivery of events to watchers

mod batch;
mod codec;
mod compaction;
mod compare;
pub mod defrag;
mod hash;
pub mod key_index;
mod range;
pub mod raw;
mod rebuild;
pub mod revision;
mod store;
mod txn;
pub mod watch_hub;

pub use codec::LeaseRecord;
pub use defrag::{defrag_file, DefragReport};
pub use hash::Crc32c;
pub use store::{create_db, open_db, FileStats, MvccStore, WriteBatch};
pub use txn::is_read_only as is_txn_read_only;
pub use watch_hub::WatchHub;

#[cfg(test)]
mod tests;
