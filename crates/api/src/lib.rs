//! The etcd v3 wire contract for oxcd.
//!
//! oxcd must be a drop-in replacement for etcd, so every package, service,
//! method, message and field number here matches etcd's own protobuf API:
//! stock etcd clients (etcdctl, client libraries) talk to oxcd unmodified.
//! The `.proto` sources live in `proto/` and are compiled at build time by
//! `build.rs` (prost messages + tonic clients and servers).
//!
//! The modules mirror etcd's protobuf packages and are siblings at the crate
//! root, which is what prost's generated cross-package paths
//! (`super::mvccpb::...`) expect.

/// MVCC storage types: `KeyValue` and watch `Event`.
#[allow(clippy::all, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Persisted auth records: users, roles and permissions.
#[allow(clippy::all, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// Membership records carried in raft entries (member attributes).
#[allow(clippy::all, missing_docs)]
pub mod membershippb {
    tonic::include_proto!("membershippb");
    include!(concat!(env!("OUT_DIR"), "/membershippb.serde.rs"));
}

/// The main client API (KV, Watch, Lease, Cluster, Maintenance, Auth) plus
/// the internal raft request envelope.
#[allow(clippy::all, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// Leader election service.
#[allow(clippy::all, missing_docs)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// Distributed lock service.
#[allow(clippy::all, missing_docs)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// oxcd's own member-to-member protocol (raft message streams). Not part of
/// etcd's contract: only oxcd members speak it, on the peer port.
#[allow(clippy::all, missing_docs)]
pub mod oxcdpeer {
    tonic::include_proto!("oxcdpeer");
}

#[cfg(test)]
mod tests {
    use super::etcdserverpb::{
        compare, request_op, watch_create_request::FilterType, watch_request, Compare,
        InternalRaftRequest, PutRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
    };
    use super::mvccpb::{event::EventType, Event, KeyValue};
    use prost::Message;

    #[test]
    fn put_request_field_numbers() {
        let req = PutRequest {
            key: b"a".to_vec(),
            value: b"b".to_vec(),
            ..Default::default()
        };
        assert_eq!(req.encode_to_vec(), [0x0a, 1, b'a', 0x12, 1, b'b']);

        let req = PutRequest {
            lease: 7,
            prev_kv: true,
            ignore_value: true,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(req.encode_to_vec(), [0x18, 7, 0x20, 1, 0x28, 1, 0x30, 1]);
    }

    #[test]
    fn watch_create_request_field_numbers() {
        let req = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"k".to_vec(),
                    start_revision: 5,
                    prev_kv: true,
                    filters: vec![FilterType::Nodelete as i32],
                    watch_id: 9,
                    ..Default::default()
                },
            )),
        };
        // create_request = 1 (len-delimited), then inside: key = 1,
        // start_revision = 3, filters = 5 (packed), prev_kv = 6, watch_id = 7.
        let inner = [0x0a, 1, b'k', 0x18, 5, 0x2a, 1, 1, 0x30, 1, 0x38, 9];
        let mut expected = vec![0x0a, inner.len() as u8];
        expected.extend_from_slice(&inner);
        assert_eq!(req.encode_to_vec(), expected);

        let cancel = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CancelRequest(
                super::etcdserverpb::WatchCancelRequest { watch_id: 3 },
            )),
        };
        assert_eq!(cancel.encode_to_vec(), [0x12, 2, 0x08, 3]);
    }

    #[test]
    fn compare_and_txn_field_numbers() {
        let cmp = Compare {
            result: compare::CompareResult::NotEqual as i32,
            target: compare::CompareTarget::Mod as i32,
            key: b"x".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(4)),
            range_end: b"y".to_vec(),
        };
        // range_end = 64 -> tag (64 << 3 | 2) = 514 = varint [0x82, 0x04].
        assert_eq!(
            cmp.encode_to_vec(),
            [0x08, 3, 0x10, 2, 0x1a, 1, b'x', 0x30, 4, 0x82, 0x04, 1, b'y']
        );

        let txn = TxnRequest {
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest::default())),
            }],
            ..Default::default()
        };
        // failure = 3 -> RequestOp { request_put = 2 -> empty }.
        assert_eq!(txn.encode_to_vec(), [0x1a, 2, 0x12, 0]);
    }

    #[test]
    fn event_and_raft_envelope_field_numbers() {
        let ev = Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                mod_revision: 2,
                ..Default::default()
            }),
            prev_kv: None,
        };
        assert_eq!(ev.encode_to_vec(), [0x08, 1, 0x12, 2, 0x18, 2]);

        let env = InternalRaftRequest {
            id: 1,
            put: Some(PutRequest::default()),
            ..Default::default()
        };
        assert_eq!(env.encode_to_vec(), [0x08, 1, 0x22, 0]);
    }

    #[test]
    fn member_attr_set_field_numbers() {
        use super::membershippb::{Attributes, ClusterMemberAttrSetRequest};
        let env = InternalRaftRequest {
            cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
                member_id: 5,
                member_attributes: Some(Attributes {
                    name: "n".into(),
                    client_urls: vec!["u".into()],
                }),
            }),
            ..Default::default()
        };
        // 1301 << 3 | 2 = 10410 = varint [0xaa, 0x51]; inside: member_ID = 1,
        // member_attributes = 2 { name = 1, client_urls = 2 }.
        let attrs = [0x0a, 1, b'n', 0x12, 1, b'u'];
        let mut inner = vec![0x08, 5, 0x12, attrs.len() as u8];
        inner.extend_from_slice(&attrs);
        let mut expected = vec![0xaa, 0x51, inner.len() as u8];
        expected.extend_from_slice(&inner);
        assert_eq!(env.encode_to_vec(), expected);
    }

    #[test]
    fn raft_batch_round_trip() {
        use super::oxcdpeer::RaftBatch;
        let batch = RaftBatch {
            cluster_id: 1,
            from: 2,
            to: 3,
            messages: vec![
                prost::bytes::Bytes::from_static(b"ab"),
                prost::bytes::Bytes::new(),
            ],
        };
        let wire = batch.encode_to_vec();
        assert_eq!(
            wire,
            [0x08, 1, 0x10, 2, 0x18, 3, 0x22, 2, b'a', b'b', 0x22, 0]
        );
        assert_eq!(RaftBatch::decode(&wire[..]).unwrap(), batch);
    }
}
