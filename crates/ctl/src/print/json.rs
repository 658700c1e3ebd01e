//! `--write-out=json`: what Go's encoding/json makes of the structs etcdctl
//! prints. Field names are the Go json tags (the proto names for gogoproto
//! messages, Go field names for clientv3 wrappers), zero values are left out
//! where the tag says omitempty, bytes are base64 and 64-bit ints are
//! numbers.

use base64::Engine;
use oxcd_api::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, Member, MemberListResponse, PutResponse,
    RangeResponse, ResponseHeader, ResponseOp, StatusResponse, TxnResponse, WatchResponse,
};
use oxcd_api::mvccpb::{Event, KeyValue};

use super::{EpHealth, EpStatus};

/// encoding/json's string escaping, including its HTML-safe escapes.
pub fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                o.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A Go string holding arbitrary bytes: invalid UTF-8 becomes U+FFFD.
fn bytes_as_string(b: &[u8]) -> String {
    string(&String::from_utf8_lossy(b))
}

fn b64(b: &[u8]) -> String {
    format!(
        "\"{}\"",
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

/// Builds one JSON object field by field, in Go struct order.
pub struct Obj {
    buf: String,
    empty: bool,
}

impl Obj {
    pub fn new() -> Self {
        Obj {
            buf: String::from("{"),
            empty: true,
        }
    }
    pub fn raw(&mut self, key: &str, v: &str) -> &mut Self {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        self.buf.push('"');
        self.buf.push_str(key);
        self.buf.push_str("\":");
        self.buf.push_str(v);
        self
    }
    /// An integer; `omit` drops it when zero (omitempty).
    pub fn int(&mut self, key: &str, v: impl Into<i128>, omit: bool) -> &mut Self {
        let v = v.into();
        if omit && v == 0 {
            return self;
        }
        self.raw(key, &v.to_string())
    }
    pub fn boolean(&mut self, key: &str, v: bool, omit: bool) -> &mut Self {
        if omit && !v {
            return self;
        }
        self.raw(key, if v { "true" } else { "false" })
    }
    pub fn str(&mut self, key: &str, v: &str, omit: bool) -> &mut Self {
        if omit && v.is_empty() {
            return self;
        }
        self.raw(key, &string(v))
    }
    /// `[]byte` with omitempty.
    pub fn bytes(&mut self, key: &str, v: &[u8]) -> &mut Self {
        if v.is_empty() {
            return self;
        }
        self.raw(key, &b64(v))
    }
    pub fn opt(&mut self, key: &str, v: Option<String>) -> &mut Self {
        match v {
            Some(v) => self.raw(key, &v),
            None => self,
        }
    }
    /// A slice with omitempty: left out when empty.
    pub fn list(&mut self, key: &str, items: Vec<String>) -> &mut Self {
        if items.is_empty() {
            return self;
        }
        self.raw(key, &array(items))
    }
    pub fn done(&mut self) -> String {
        let mut s = std::mem::take(&mut self.buf);
        s.push('}');
        s
    }
}

impl Default for Obj {
    fn default() -> Self {
        Self::new()
    }
}

pub fn array(items: Vec<String>) -> String {
    format!("[{}]", items.join(","))
}

/// The fields of a ResponseHeader, written into `o` (also used flattened,
/// for clientv3 structs that embed `*pb.ResponseHeader`).
fn header_fields(o: &mut Obj, h: &ResponseHeader) {
    o.int("cluster_id", h.cluster_id, true)
        .int("member_id", h.member_id, true)
        .int("revision", h.revision, true)
        .int("raft_term", h.raft_term, true);
}

pub fn header(h: &ResponseHeader) -> String {
    let mut o = Obj::new();
    header_fields(&mut o, h);
    o.done()
}

fn opt_header(h: &Option<ResponseHeader>) -> Option<String> {
    h.as_ref().map(header)
}

pub fn kv(k: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &k.key)
        .int("create_revision", k.create_revision, true)
        .int("mod_revision", k.mod_revision, true)
        .int("version", k.version, true)
        .bytes("value", &k.value)
        .int("lease", k.lease, true)
        .done()
}

pub fn range(r: &RangeResponse) -> String {
    Obj::new()
        .opt("header", opt_header(&r.header))
        .list("kvs", r.kvs.iter().map(kv).collect())
        .boolean("more", r.more, true)
        .int("count", r.count, true)
        .done()
}

pub fn put(r: &PutResponse) -> String {
    Obj::new()
        .opt("header", opt_header(&r.header))
        .opt("prev_kv", r.prev_kv.as_ref().map(kv))
        .done()
}

pub fn delete(r: &DeleteRangeResponse) -> String {
    Obj::new()
        .opt("header", opt_header(&r.header))
        .int("deleted", r.deleted, true)
        .list("prev_kvs", r.prev_kvs.iter().map(kv).collect())
        .done()
}

fn response_op(op: &ResponseOp) -> String {
    // The oneof wrapper has no json tags, so Go uses its field names.
    let inner = match &op.response {
        None => "null".to_string(),
        Some(response_op::Response::ResponseRange(x)) => {
            Obj::new().raw("ResponseRange", &range(x)).done()
        }
        Some(response_op::Response::ResponsePut(x)) => {
            Obj::new().raw("ResponsePut", &put(x)).done()
        }
        Some(response_op::Response::ResponseDeleteRange(x)) => {
            Obj::new().raw("ResponseDeleteRange", &delete(x)).done()
        }
        Some(response_op::Response::ResponseTxn(x)) => {
            Obj::new().raw("ResponseTxn", &txn(x)).done()
        }
    };
    Obj::new().raw("Response", &inner).done()
}

pub fn txn(r: &TxnResponse) -> String {
    Obj::new()
        .opt("header", opt_header(&r.header))
        .boolean("succeeded", r.succeeded, true)
        .list("responses", r.responses.iter().map(response_op).collect())
        .done()
}

fn event(e: &Event) -> String {
    Obj::new()
        .int("type", e.r#type, true)
        .opt("kv", e.kv.as_ref().map(kv))
        .opt("prev_kv", e.prev_kv.as_ref().map(kv))
        .done()
}

/// clientv3.WatchResponse: a value header and untagged fields.
pub fn watch(r: &WatchResponse) -> String {
    // clientv3 always converts the events into a fresh (non-nil) slice.
    let events = array(r.events.iter().map(event).collect());
    Obj::new()
        .raw("Header", &header(&r.header.unwrap_or_default()))
        .raw("Events", &events)
        .int("CompactRevision", r.compact_revision, false)
        .boolean("Canceled", r.canceled, false)
        .boolean("Created", r.created, false)
        .done()
}

fn flat_header(o: &mut Obj, h: &Option<ResponseHeader>) {
    if let Some(h) = h {
        header_fields(o, h);
    }
}

pub fn grant(r: &LeaseGrantResponse) -> String {
    let mut o = Obj::new();
    flat_header(&mut o, &r.header);
    o.int("ID", r.id, false)
        .int("TTL", r.ttl, false)
        .str("Error", &r.error, false)
        .done()
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) -> String {
    let mut o = Obj::new();
    flat_header(&mut o, &r.header);
    o.int("ID", r.id, false).int("TTL", r.ttl, false).done()
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse) -> String {
    let mut o = Obj::new();
    flat_header(&mut o, &r.header);
    let keys = if r.keys.is_empty() {
        "null".to_string()
    } else {
        array(r.keys.iter().map(|k| b64(k)).collect())
    };
    o.int("id", r.id, false)
        .int("ttl", r.ttl, false)
        .int("granted-ttl", r.granted_ttl, false)
        .raw("keys", &keys)
        .done()
}

pub fn leases(r: &LeaseLeasesResponse) -> String {
    let mut o = Obj::new();
    flat_header(&mut o, &r.header);
    let ls = array(
        r.leases
            .iter()
            .map(|l| Obj::new().int("id", l.id, false).done())
            .collect(),
    );
    o.raw("leases", &ls).done()
}

pub fn header_only(h: &Option<ResponseHeader>) -> String {
    Obj::new().opt("header", opt_header(h)).done()
}

fn strings(v: &[String]) -> Vec<String> {
    v.iter().map(|s| string(s)).collect()
}

fn member(m: &Member) -> String {
    Obj::new()
        .int("ID", m.id, true)
        .str("name", &m.name, true)
        .list("peerURLs", strings(&m.peer_ur_ls))
        .list("clientURLs", strings(&m.client_ur_ls))
        .boolean("isLearner", m.is_learner, true)
        .done()
}

pub fn member_list(r: &MemberListResponse) -> String {
    Obj::new()
        .opt("header", opt_header(&r.header))
        .list("members", r.members.iter().map(member).collect())
        .done()
}

pub fn member_add(r: &oxcd_api::etcdserverpb::MemberAddResponse) -> String {
    Obj::new()
        .opt("header", opt_header(&r.header))
        .opt("member", r.member.as_ref().map(member))
        .list("members", r.members.iter().map(member).collect())
        .done()
}

/// Remove/update/promote responses: a header and the new member list.
pub fn members_only(h: &Option<ResponseHeader>, members: &[Member]) -> String {
    Obj::new()
        .opt("header", opt_header(h))
        .list("members", members.iter().map(member).collect())
        .done()
}

/// HashKVResponse as etcd 3.4 knows it.
pub fn endpoint_hashkv(list: &[super::EpHashKv]) -> String {
    array(
        list.iter()
            .map(|h| {
                let inner = Obj::new()
                    .opt("header", opt_header(&h.resp.header))
                    .int("hash", h.resp.hash, true)
                    .int("compact_revision", h.resp.compact_revision, true)
                    .done();
                Obj::new()
                    .str("Endpoint", &h.ep, false)
                    .raw("HashKV", &inner)
                    .done()
            })
            .collect(),
    )
}

/// StatusResponse as etcd 3.4 knows it.
fn status(r: &StatusResponse) -> String {
    Obj::new()
        .opt("header", opt_header(&r.header))
        .str("version", &r.version, true)
        .int("dbSize", r.db_size, true)
        .int("leader", r.leader, true)
        .int("raftIndex", r.raft_index, true)
        .int("raftTerm", r.raft_term, true)
        .int("raftAppliedIndex", r.raft_applied_index, true)
        .list("errors", strings(&r.errors))
        .int("dbSizeInUse", r.db_size_in_use, true)
        .boolean("isLearner", r.is_learner, true)
        .done()
}

pub fn endpoint_status(list: &[EpStatus]) -> String {
    array(
        list.iter()
            .map(|s| {
                Obj::new()
                    .str("Endpoint", &s.ep, false)
                    .raw("Status", &status(&s.resp))
                    .done()
            })
            .collect(),
    )
}

pub fn endpoint_health(list: &[EpHealth]) -> String {
    array(
        list.iter()
            .map(|h| {
                Obj::new()
                    .str("endpoint", &h.ep, false)
                    .boolean("health", h.health, false)
                    .str("took", &h.took, false)
                    .str("error", &h.error, true)
                    .done()
            })
            .collect(),
    )
}

pub fn alarm(r: &AlarmResponse) -> String {
    let alarms = r
        .alarms
        .iter()
        .map(|a| {
            Obj::new()
                .int("memberID", a.member_id, true)
                .int("alarm", a.alarm, true)
                .done()
        })
        .collect();
    Obj::new()
        .opt("header", opt_header(&r.header))
        .list("alarms", alarms)
        .done()
}

/// Go would print a `[]byte` member holding text; used for keys in errors.
#[allow(dead_code)]
pub fn text_bytes(b: &[u8]) -> String {
    bytes_as_string(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: 324952591200643719,
            member_id: 3319814642761637952,
            revision: 2,
            raft_term: 2,
        })
    }

    #[test]
    fn get_matches_etcdctl() {
        let r = RangeResponse {
            header: hdr(),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            range(&r),
            r#"{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":2,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"YmFy"}],"count":1}"#
        );
    }

    #[test]
    fn lease_ttl_matches_etcdctl() {
        let mut h = hdr().unwrap();
        h.revision = 16;
        let r = LeaseTimeToLiveResponse {
            header: Some(h),
            id: 2324035513906703660,
            ttl: 299,
            granted_ttl: 300,
            keys: vec![],
        };
        assert_eq!(
            time_to_live(&r),
            r#"{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":16,"raft_term":2,"id":2324035513906703660,"ttl":299,"granted-ttl":300,"keys":null}"#
        );
    }

    #[test]
    fn txn_matches_etcdctl() {
        let r = TxnResponse {
            header: hdr(),
            succeeded: true,
            responses: vec![ResponseOp {
                response: Some(response_op::Response::ResponsePut(PutResponse {
                    header: Some(ResponseHeader {
                        revision: 18,
                        ..Default::default()
                    }),
                    prev_kv: None,
                })),
            }],
        };
        assert_eq!(
            txn(&r),
            r#"{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":2,"raft_term":2},"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":18}}}}]}"#
        );
    }

    #[test]
    fn watch_delete_event_matches_etcdctl() {
        let mut h = hdr().unwrap();
        h.revision = 25;
        let r = WatchResponse {
            header: Some(h),
            events: vec![Event {
                r#type: 1,
                kv: Some(KeyValue {
                    key: b"wk".to_vec(),
                    mod_revision: 25,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            watch(&r),
            r#"{"Header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":25,"raft_term":2},"Events":[{"type":1,"kv":{"key":"d2s=","mod_revision":25}}],"CompactRevision":0,"Canceled":false,"Created":false}"#
        );
    }

    #[test]
    fn strings_escape_like_go() {
        assert_eq!(
            string("a<b>&\"\\\n\u{1}"),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001""#
        );
    }
}
