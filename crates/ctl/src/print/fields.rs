//! `--write-out=fields`: one `"Name" : value` line per field, strings
//! quoted with Go's `%q`.

use oxcd_api::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, MemberListResponse, PutResponse, RangeResponse,
    ResponseHeader, TxnResponse, WatchResponse,
};
use oxcd_api::mvccpb::KeyValue;

use super::simple::{alarm_name, event_type_name};
use super::{hdr as header, outln, EpHealth, EpStatus};
use crate::gostr::{quote, string_slice};

fn kv(pfx: &str, kv: &KeyValue) {
    outln(&format!("\"{pfx}Key\" : {}", quote(&kv.key)));
    outln(&format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
    outln(&format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
    outln(&format!("\"{pfx}Version\" : {}", kv.version));
    outln(&format!("\"{pfx}Value\" : {}", quote(&kv.value)));
    outln(&format!("\"{pfx}Lease\" : {}", kv.lease));
}

pub fn hdr(h: &ResponseHeader) {
    outln(&format!("\"ClusterID\" : {}", h.cluster_id));
    outln(&format!("\"MemberID\" : {}", h.member_id));
    outln(&format!("\"Revision\" : {}", h.revision));
    outln(&format!("\"RaftTerm\" : {}", h.raft_term));
}

pub fn del(r: &DeleteRangeResponse) {
    hdr(&header(&r.header));
    outln(&format!("\"Deleted\" : {}", r.deleted));
    for p in &r.prev_kvs {
        kv("Prev", p);
    }
}

pub fn get(r: &RangeResponse) {
    hdr(&header(&r.header));
    for k in &r.kvs {
        kv("", k);
    }
    outln(&format!("\"More\" : {}", r.more));
    outln(&format!("\"Count\" : {}", r.count));
}

pub fn put(r: &PutResponse) {
    hdr(&header(&r.header));
    if let Some(p) = &r.prev_kv {
        kv("Prev", p);
    }
}

pub fn txn(r: &TxnResponse) {
    hdr(&header(&r.header));
    outln(&format!("\"Succeeded\" : {}", r.succeeded));
    for op in &r.responses {
        match &op.response {
            Some(response_op::Response::ResponseDeleteRange(x)) => del(x),
            Some(response_op::Response::ResponsePut(x)) => put(x),
            Some(response_op::Response::ResponseRange(x)) => get(x),
            other => outln(&format!(
                "\"Unknown\" : {}",
                quote(format!("{other:?}").as_bytes())
            )),
        }
    }
}

pub fn watch(r: &WatchResponse) {
    hdr(&header(&r.header));
    for e in &r.events {
        outln(&format!("\"Type\" : {}", event_type_name(e.r#type)));
        if let Some(p) = &e.prev_kv {
            kv("Prev", p);
        }
        kv("", &e.kv.clone().unwrap_or_default());
    }
}

pub fn grant(r: &LeaseGrantResponse) {
    hdr(&header(&r.header));
    outln(&format!("\"ID\" : {}", r.id));
    outln(&format!("\"TTL\" : {}", r.ttl));
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) {
    hdr(&header(&r.header));
    outln(&format!("\"ID\" : {}", r.id));
    outln(&format!("\"TTL\" : {}", r.ttl));
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse) {
    hdr(&header(&r.header));
    outln(&format!("\"ID\" : {}", r.id));
    outln(&format!("\"TTL\" : {}", r.ttl));
    outln(&format!("\"GrantedTTL\" : {}", r.granted_ttl));
    for k in &r.keys {
        outln(&format!("\"Key\" : {}", quote(k)));
    }
}

pub fn leases(r: &LeaseLeasesResponse) {
    hdr(&header(&r.header));
    for l in &r.leases {
        outln(&format!("\"ID\" : {}", l.id));
    }
}

pub fn member_list(r: &MemberListResponse) {
    hdr(&header(&r.header));
    for m in &r.members {
        outln(&format!("\"ID\" : {}", m.id));
        outln(&format!("\"Name\" : {}", quote(m.name.as_bytes())));
        for u in &m.peer_ur_ls {
            outln(&format!("\"PeerURL\" : {}", quote(u.as_bytes())));
        }
        for u in &m.client_ur_ls {
            outln(&format!("\"ClientURL\" : {}", quote(u.as_bytes())));
        }
        outln(&format!("\"IsLearner\" : {}", m.is_learner));
        outln("");
    }
}

pub fn endpoint_health(list: &[EpHealth]) {
    for h in list {
        outln(&format!("\"Endpoint\" : {}", quote(h.ep.as_bytes())));
        outln(&format!("\"Health\" : {}", h.health));
        outln(&format!("\"Took\" : {}", h.took));
        outln(&format!("\"Error\" : {}", h.error));
        outln("");
    }
}

pub fn endpoint_status(list: &[EpStatus]) {
    for s in list {
        let r = &s.resp;
        hdr(&header(&r.header));
        outln(&format!("\"Version\" : {}", quote(r.version.as_bytes())));
        outln(&format!("\"DBSize\" : {}", r.db_size));
        outln(&format!("\"Leader\" : {}", r.leader));
        outln(&format!("\"IsLearner\" : {}", r.is_learner));
        outln(&format!("\"RaftIndex\" : {}", r.raft_index));
        outln(&format!("\"RaftTerm\" : {}", r.raft_term));
        outln(&format!("\"RaftAppliedIndex\" : {}", r.raft_applied_index));
        outln(&format!("\"Errors\" : {}", string_slice(&r.errors)));
        outln(&format!("\"Endpoint\" : {}", quote(s.ep.as_bytes())));
        outln("");
    }
}

pub fn alarm(r: &AlarmResponse) {
    hdr(&header(&r.header));
    for a in &r.alarms {
        outln(&format!("\"MemberID\" : {}", a.member_id));
        outln(&format!("\"AlarmType\" : {}", alarm_name(a.alarm)));
        outln("");
    }
}

pub fn endpoint_hashkv(list: &[super::EpHashKv]) {
    for h in list {
        hdr(&header(&h.resp.header));
        outln(&format!("\"Endpoint\" : {}", quote(h.ep.as_bytes())));
        outln(&format!("\"Hash\" : {}", h.resp.hash));
        outln("");
    }
}
