//! Row values: prost-encoded `mvccpb.KeyValue` (etcd's exact bytes) and `leasepb.Lease`.
//!
//! Reads parse a row in place into a borrowed view instead of a full prost decode, so that a scan
//! that only needs the key or the lease (index rebuild, watch catch-up filtering, keys-only ranges)
//! copies nothing, and a full read copies key and value exactly once.

use oxcd_api::mvccpb::KeyValue;
use prost::encoding::decode_varint;

use crate::error::{EtcdError, Result};

/// A stored `KeyValue`, borrowed from the row bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvView<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl KvView<'_> {
    pub fn to_kv(self, keys_only: bool) -> KeyValue {
        KeyValue {
            key: self.key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: if keys_only {
                Vec::new()
            } else {
                self.value.to_vec()
            },
            lease: self.lease,
        }
    }
}

fn corrupt(what: &str) -> EtcdError {
    EtcdError::Internal(format!("mvcc: corrupt key table row: {what}"))
}

/// Parses the protobuf wire format of `mvccpb.KeyValue` (fields 1..=6), skipping unknown fields.
pub fn parse_kv(mut buf: &[u8]) -> Result<KvView<'_>> {
    let mut kv = KvView::default();
    let varint = |b: &mut &[u8]| decode_varint(b).map_err(|_| corrupt("varint"));
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                let v = varint(&mut buf)? as i64;
                match field {
                    2 => kv.create_revision = v,
                    3 => kv.mod_revision = v,
                    4 => kv.version = v,
                    6 => kv.lease = v,
                    _ => {}
                }
            }
            2 => {
                let len = varint(&mut buf)? as usize;
                if len > buf.len() {
                    return Err(corrupt("truncated field"));
                }
                let (data, rest) = buf.split_at(len);
                buf = rest;
                match field {
                    1 => kv.key = data,
                    5 => kv.value = data,
                    _ => {}
                }
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if n > buf.len() {
                    return Err(corrupt("truncated field"));
                }
                buf = &buf[n..];
            }
            _ => return Err(corrupt("wire type")),
        }
    }
    Ok(kv)
}

/// etcd's `leasepb.Lease`, the value of the "lease" table.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn parse_matches_prost() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 300,
            version: 7,
            value: vec![9; 200],
            lease: -5,
        };
        let b = kv.encode_to_vec();
        let v = parse_kv(&b).unwrap();
        assert_eq!(v.to_kv(false), kv);
        let ko = v.to_kv(true);
        assert!(ko.value.is_empty());
        assert_eq!(ko.key, kv.key);

        // A tombstone row holds only the key.
        let t = KeyValue {
            key: b"gone".to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(parse_kv(&t).unwrap().key, b"gone");
        assert!(parse_kv(&b[..b.len() - 3]).is_err());
    }
}
