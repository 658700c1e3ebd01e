//! The backend quota (`--quota-backend-bytes`), as etcd 3.4 applies it.
//!
//! A write request has a cost: the estimated bytes it adds to the backend (a put: its key-value
//! record plus a fixed overhead; a txn: the larger of its two branches' puts; a lease grant: a
//! fixed overhead; anything else, deletes included: nothing). A request with no cost always
//! passes. One with a cost passes while the backend's size plus that cost stays below the quota.
//! The check runs twice, as in etcd: before proposing (in the gRPC services, where a refusal
//! raises the NOSPACE alarm) and when applying (the write is applied, but the client is told
//! the space is exceeded and the applying member raises the alarm).

use oxcd_api::etcdserverpb::request_op::Request;
use oxcd_api::etcdserverpb::{PutRequest, TxnRequest};
use oxcd_api::mvccpb::KeyValue;
use prost::Message as _;

/// The quota when `--quota-backend-bytes` is 0: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// Above this (8 GiB) etcd warns at start-up.
pub const MAX_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;
/// Estimated bytes a key's bookkeeping adds besides its record.
const KV_OVERHEAD: usize = 256;
/// Estimated bytes a lease takes.
const LEASE_OVERHEAD: usize = 64;

/// A request's estimated cost in backend bytes.
pub fn put_cost(r: &PutRequest) -> usize {
    let kv = KeyValue {
        key: r.key.clone(),
        value: r.value.clone(),
        lease: r.lease,
        ..Default::default()
    };
    kv.encoded_len() + KV_OVERHEAD
}

/// Only one branch of a txn runs: the larger one counts. Nested txns count nothing, as in etcd.
pub fn txn_cost(r: &TxnRequest) -> usize {
    let branch = |ops: &[oxcd_api::etcdserverpb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

pub fn lease_grant_cost() -> usize {
    LEASE_OVERHEAD
}

/// The quota this member enforces; `None` when disabled (a negative flag value).
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    max_bytes: Option<u64>,
}

impl Quota {
    /// The quota `--quota-backend-bytes` sets, logged as etcd logs it when the server starts.
    pub fn from_flag(bytes: i64) -> Quota {
        const NAME: &str = "v3-applier";
        if bytes < 0 {
            tracing::info!(
                "quota-name" = NAME,
                "quota-size-bytes" = bytes,
                "disabled backend quota"
            );
            return Quota { max_bytes: None };
        }
        if bytes == 0 {
            tracing::info!(
                "quota-name" = NAME,
                "quota-size-bytes" = DEFAULT_QUOTA_BYTES,
                "quota-size" = %human_bytes(DEFAULT_QUOTA_BYTES as u64),
                "enabled backend quota with default value"
            );
            return Quota {
                max_bytes: Some(DEFAULT_QUOTA_BYTES as u64),
            };
        }
        if bytes > MAX_QUOTA_BYTES {
            tracing::warn!(
                "quota-name" = NAME,
                "quota-size-bytes" = bytes,
                "quota-size" = %human_bytes(bytes as u64),
                "quota-maximum-size-bytes" = MAX_QUOTA_BYTES,
                "quota-maximum-size" = %human_bytes(MAX_QUOTA_BYTES as u64),
                "quota exceeds the maximum value"
            );
        }
        tracing::info!(
            "quota-name" = NAME,
            "quota-size-bytes" = bytes,
            "quota-size" = %human_bytes(bytes as u64),
            "enabled backend quota"
        );
        Quota {
            max_bytes: Some(bytes as u64),
        }
    }

    pub fn disabled() -> Quota {
        Quota { max_bytes: None }
    }

    /// The limit in bytes, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// Whether a request of `cost` fits in a backend of `size` bytes.
    pub fn available(&self, size: u64, cost: usize) -> bool {
        match self.max_bytes {
            None => true,
            _ if cost == 0 => true,
            Some(max) => size.saturating_add(cost as u64) < max,
        }
    }
}

/// Sizes as etcd's logs print them (go-humanize's SI `Bytes`: "4.2 MB", "17 MB").
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let v = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[e])
    } else {
        format!("{v:.0} {}", UNITS[e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::etcdserverpb::{DeleteRangeRequest, RequestOp};

    fn put(k: &str, v: &str) -> PutRequest {
        PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }
    }

    #[test]
    fn costs() {
        // KeyValue{key: "k", value: "v"}: two 3-byte fields.
        assert_eq!(put_cost(&put("k", "v")), 6 + 256);
        let op = |r| RequestOp { request: Some(r) };
        let t = TxnRequest {
            success: vec![op(Request::RequestPut(put("k", "v")))],
            failure: vec![
                op(Request::RequestPut(put("k", "v"))),
                op(Request::RequestDeleteRange(DeleteRangeRequest::default())),
                op(Request::RequestPut(put("k2", "v"))),
            ],
            ..Default::default()
        };
        assert_eq!(txn_cost(&t), 262 + 263);
        let reads = TxnRequest::default();
        assert_eq!(txn_cost(&reads), 0);
    }

    #[test]
    fn availability() {
        let q = Quota {
            max_bytes: Some(1000),
        };
        assert!(q.available(900, 99));
        assert!(!q.available(900, 100));
        // Requests that add nothing always pass, even over the quota.
        assert!(q.available(5000, 0));
        assert!(Quota::disabled().available(u64::MAX, 10));
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(4194304), "4.2 MB");
        assert_eq!(human_bytes(16777216), "17 MB");
        assert_eq!(human_bytes(2147483648), "2.1 GB");
        assert_eq!(human_bytes(8589934592), "8.6 GB");
        assert_eq!(human_bytes(20480), "20 kB");
    }
}
