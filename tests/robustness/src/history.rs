//! What a robustness run records: every client request with its invocation and completion time
//! and its result, every watch response, and the members' final state.
//!
//! The types are plain data (serde), so a run's history can be written to a file and checked
//! again later (`oxcd-robustness check FILE`), or cut down to the few operations that show an
//! anomaly.

use serde::{Deserialize, Serialize};

/// Nanoseconds since the start of the run (one monotonic clock for every client).
pub type Time = u64;

/// A key-value pair as the server returned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// What a compare looks at, with the value it is compared to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(Vec<u8>),
    ModRevision(i64),
    CreateRevision(i64),
    Version(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// One compare of a txn (on a single key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub target: CompareTarget,
    pub result: CompareResult,
}

/// One operation inside a txn branch. An empty `range_end` means the single key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
}

/// A request as a client sent it. An empty `range_end` means the single key; `revision` 0 means
/// the newest; `limit` 0 means no limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
        revision: i64,
        limit: i64,
        serializable: bool,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// The client chooses the lease id, so a grant whose answer was lost can still be named.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// One keep-alive round trip of a lease.
    LeaseKeepAlive {
        id: i64,
    },
    Compact {
        revision: i64,
        physical: bool,
    },
    Defragment,
}

/// The result of one operation of a txn branch, in the order of the branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    Range { kvs: Vec<KeyValue>, count: i64 },
    Put,
    Delete { deleted: i64 },
}

/// A successful answer. `revision` is the response header's revision: the store's revision
/// after the operation (for a write that changed something, the revision it created).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Range {
        revision: i64,
        kvs: Vec<KeyValue>,
        count: i64,
        more: bool,
    },
    Put {
        revision: i64,
    },
    Delete {
        revision: i64,
        deleted: i64,
    },
    Txn {
        revision: i64,
        succeeded: bool,
        results: Vec<TxnResult>,
    },
    LeaseGrant {
        revision: i64,
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
    /// `ttl` 0 or less: the lease was not found (expired or revoked).
    LeaseKeepAlive {
        revision: i64,
        ttl: i64,
    },
    Compact {
        revision: i64,
    },
    Defragment,
}

impl Response {
    /// The response header's revision (0 for Defragment, which has none worth checking).
    pub fn revision(&self) -> i64 {
        match self {
            Response::Range { revision, .. }
            | Response::Put { revision }
            | Response::Delete { revision, .. }
            | Response::Txn { revision, .. }
            | Response::LeaseGrant { revision, .. }
            | Response::LeaseRevoke { revision }
            | Response::LeaseKeepAlive { revision, .. }
            | Response::Compact { revision } => *revision,
            Response::Defragment => 0,
        }
    }
}

/// How an operation ended. An error does not tell whether a write was applied (a timeout, a
/// broken connection, a member killed after it proposed), so the checker treats every failed
/// write as "maybe applied" and learns from the watch events whether it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok(Response),
    /// gRPC status code (as a number) and message.
    Err {
        code: i32,
        message: String,
    },
}

/// One client operation. `ret` is None when the run ended before it returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Index of the operation in the history (stable, used in reports).
    pub id: usize,
    /// Which client sent it (one client sends one operation at a time).
    pub client: u32,
    /// Index of the member whose endpoint it was sent to.
    pub member: usize,
    pub call: Time,
    pub ret: Option<Time>,
    pub req: Request,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// A watch event. For a delete, `kv` holds the key and the deleting revision as `mod_revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// One message received on a watch stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    pub time: Time,
    /// Header revision.
    pub revision: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub events: Vec<Event>,
}

/// One watch stream, from its create request to its end. A watcher that loses its stream opens
/// a new one from the revision after the last event it saw: a new `WatchStream` with the same
/// `watcher` and `start_revision` set to that revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStream {
    pub watcher: u32,
    pub member: usize,
    pub key: Vec<u8>,
    /// Empty: the single key.
    pub range_end: Vec<u8>,
    /// 0: from "now" (the revision after the created response's header revision).
    pub start_revision: i64,
    pub prev_kv: bool,
    /// When the create request was sent.
    pub call: Time,
    pub responses: Vec<WatchResponse>,
    /// Why the stream ended, if it ended with an error.
    pub error: Option<String>,
}

/// A member's state when the run ended (after the faults were healed and traffic stopped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub member: usize,
    pub revision: i64,
    pub compact_revision: i64,
    pub hash_kv: u32,
}

/// Everything one run recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Seed of the run (traffic and fault schedule), to replay it.
    pub seed: u64,
    pub scenario: String,
    pub ops: Vec<Op>,
    pub watches: Vec<WatchStream>,
    /// Every member's final state; HashKV is taken at one common revision.
    pub members: Vec<MemberState>,
    /// A linearizable range over every key at the end, with its header revision.
    pub final_kvs: Vec<KeyValue>,
    pub final_revision: i64,
}
