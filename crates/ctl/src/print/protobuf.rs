//! `--write-out=protobuf`: the response marshalled to wire bytes. etcdctl
//! writes them with `fmt.Printf(string(b))`, so `%` bytes get Go's format
//! treatment; we reproduce that instead of writing raw bytes.

use oxcd_api::etcdserverpb::{LeaseRevokeResponse, ResponseHeader, WatchResponse};
use prost::Message;

use super::out;
use crate::error::{CtlError, EXIT_BAD_FEATURE};
use crate::gostr::printf_no_args;

pub fn message<M: Message>(m: &M) {
    out(&printf_no_args(&m.encode_to_vec()));
}

/// clientv3's lease responses embed `*pb.ResponseHeader`, whose Marshal
/// method is what etcdctl ends up calling: only the header is written.
pub fn header_of(h: &Option<ResponseHeader>) {
    message(&h.unwrap_or_default());
}

/// etcdctl re-packs clientv3's watch response; watch_id and the cancel
/// reason do not survive.
pub fn watch(r: &WatchResponse) {
    let wr = WatchResponse {
        header: Some(r.header.unwrap_or_default()),
        events: r.events.clone(),
        compact_revision: r.compact_revision,
        canceled: r.canceled,
        created: r.created,
        ..Default::default()
    };
    message(&wr);
}

/// gogoproto's compact text of a header ("cluster_id:1 revision:2 ").
fn header_text(h: &ResponseHeader) -> String {
    let mut s = String::new();
    if h.cluster_id != 0 {
        s.push_str(&format!("cluster_id:{} ", h.cluster_id));
    }
    if h.member_id != 0 {
        s.push_str(&format!("member_id:{} ", h.member_id));
    }
    if h.revision != 0 {
        s.push_str(&format!("revision:{} ", h.revision));
    }
    if h.raft_term != 0 {
        s.push_str(&format!("raft_term:{} ", h.raft_term));
    }
    s
}

/// etcdctl cannot marshal the revoke response (it is passed by value).
pub fn revoke_unsupported(r: &LeaseRevokeResponse) -> CtlError {
    let inner = match &r.header {
        Some(h) => header_text(h),
        None => "<nil>".into(),
    };
    CtlError::new(
        EXIT_BAD_FEATURE,
        format!("marshal unsupported for type clientv3.LeaseRevokeResponse ({{{inner}}})"),
    )
}
