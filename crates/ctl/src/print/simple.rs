//! `--write-out=simple`, the default: etcdctl's human-oriented lines.

use oxcd_api::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, MemberListResponse, PutResponse, RangeResponse,
    TxnResponse, WatchResponse,
};
use oxcd_api::mvccpb::KeyValue;

use super::{errln, out, outln, rows, Display, EpHealth, EpStatus};
use crate::gostr::string_slice;

/// Go's `%016x` of a signed lease ID.
pub fn lease_hex(id: i64) -> String {
    if id < 0 {
        format!("-{:015x}", id.unsigned_abs())
    } else {
        format!("{id:016x}")
    }
}

/// `--hex` rendering: every byte as `\xNN`.
fn hex_bytes(b: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(b.len() * 4);
    for x in b {
        s.extend_from_slice(format!("\\x{x:02x}").as_bytes());
    }
    s
}

/// etcdctl's printKV: key line (unless value-only), then value line.
pub fn print_kv(d: &Display, kv: &KeyValue) {
    let (k, v) = if d.hex {
        (hex_bytes(&kv.key), hex_bytes(&kv.value))
    } else {
        (kv.key.clone(), kv.value.clone())
    };
    let mut buf = Vec::with_capacity(k.len() + v.len() + 2);
    if !d.value_only {
        buf.extend_from_slice(&k);
        buf.push(b'\n');
    }
    buf.extend_from_slice(&v);
    buf.push(b'\n');
    out(&buf);
}

pub fn del(d: &Display, r: &DeleteRangeResponse) {
    outln(&r.deleted.to_string());
    for kv in &r.prev_kvs {
        print_kv(d, kv);
    }
}

pub fn get(d: &Display, r: &RangeResponse) {
    for kv in &r.kvs {
        print_kv(d, kv);
    }
}

pub fn put(d: &Display, r: &PutResponse) {
    outln("OK");
    if let Some(kv) = &r.prev_kv {
        print_kv(d, kv);
    }
}

pub fn txn(d: &Display, r: &TxnResponse) {
    outln(if r.succeeded { "SUCCESS" } else { "FAILURE" });
    for op in &r.responses {
        outln("");
        match &op.response {
            Some(response_op::Response::ResponseDeleteRange(x)) => del(d, x),
            Some(response_op::Response::ResponsePut(x)) => put(d, x),
            Some(response_op::Response::ResponseRange(x)) => get(d, x),
            // etcdctl has no case for nested txn responses.
            other => outln(&format!("unexpected response {other:?}")),
        }
    }
}

pub fn event_type_name(t: i32) -> String {
    match t {
        0 => "PUT".into(),
        1 => "DELETE".into(),
        n => n.to_string(),
    }
}

pub fn watch(d: &Display, r: &WatchResponse) {
    for e in &r.events {
        outln(&event_type_name(e.r#type));
        if let Some(p) = &e.prev_kv {
            print_kv(d, p);
        }
        print_kv(d, &e.kv.clone().unwrap_or_default());
    }
}

pub fn grant(r: &LeaseGrantResponse) {
    outln(&format!(
        "lease {} granted with TTL({}s)",
        lease_hex(r.id),
        r.ttl
    ));
}

pub fn revoke(id: i64) {
    outln(&format!("lease {} revoked", lease_hex(id)));
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) {
    outln(&format!(
        "lease {} keepalived with TTL({})",
        lease_hex(r.id),
        r.ttl
    ));
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse, keys: bool) {
    if r.granted_ttl == 0 && r.ttl == -1 {
        outln(&format!("lease {} already expired", lease_hex(r.id)));
        return;
    }
    let mut txt = format!(
        "lease {} granted with TTL({}s), remaining({}s)",
        lease_hex(r.id),
        r.granted_ttl,
        r.ttl
    );
    if keys {
        let ks: Vec<String> = r
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        txt.push_str(&format!(", attached keys({})", string_slice(&ks)));
    }
    outln(&txt);
}

pub fn leases(r: &LeaseLeasesResponse) {
    outln(&format!("found {} leases", r.leases.len()));
    for l in &r.leases {
        outln(&lease_hex(l.id));
    }
}

/// Alarm type names from the AlarmType enum.
pub fn alarm_name(a: i32) -> String {
    match a {
        0 => "NONE".into(),
        1 => "NOSPACE".into(),
        2 => "CORRUPT".into(),
        n => n.to_string(),
    }
}

/// Go's `%+v` of an AlarmMember: gogoproto's compact text form, which
/// leaves out zero fields and ends with a space.
pub fn alarm(r: &AlarmResponse) {
    for a in &r.alarms {
        let mut s = String::new();
        if a.member_id != 0 {
            s.push_str(&format!("memberID:{} ", a.member_id));
        }
        if a.alarm != 0 {
            s.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
        }
        outln(&s);
    }
}

pub fn member_list(r: &MemberListResponse) {
    for row in rows::members(r) {
        outln(&row.join(", "));
    }
}

pub fn endpoint_status(list: &[EpStatus]) {
    for row in rows::statuses(list) {
        outln(&row.join(", "));
    }
}

/// etcdctl 3.4 reports health on stderr, healthy or not.
pub fn endpoint_health(list: &[EpHealth]) {
    for h in list {
        if h.error.is_empty() {
            errln(&format!(
                "{} is healthy: successfully committed proposal: took = {}",
                h.ep, h.took
            ));
        } else {
            errln(&format!(
                "{} is unhealthy: failed to commit proposal: {}",
                h.ep, h.error
            ));
        }
    }
}
