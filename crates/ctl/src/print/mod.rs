//! Output printers, one per `--write-out` format, mirroring etcdctl's
//! `printer` interface: every command hands its response to `Display`, which
//! renders it in the chosen format or fails the way etcdctl does when a
//! format does not support that response.

pub mod auth;
pub mod fields;
pub mod json;
pub mod protobuf;
pub mod simple;
pub mod table;

use std::io::Write;

use oxcd_api::etcdserverpb::{
    AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, MemberListResponse,
    PutResponse, RangeResponse, ResponseHeader, StatusResponse, TxnResponse, WatchResponse,
};
use oxcd_api::etcdserverpb::{
    HashKvResponse, MemberAddResponse, MemberPromoteResponse, MemberRemoveResponse,
    MemberUpdateResponse, MoveLeaderResponse,
};

use crate::error::{CtlError, Result, EXIT_BAD_FEATURE};

/// The `--write-out` formats etcdctl knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Protobuf,
    Table,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "simple" => Some(Format::Simple),
            "json" => Some(Format::Json),
            "fields" => Some(Format::Fields),
            "protobuf" => Some(Format::Protobuf),
            "table" => Some(Format::Table),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Protobuf => "protobuf",
            Format::Table => "table",
        }
    }
}

/// One endpoint's `endpoint status` result.
pub struct EpStatus {
    pub ep: String,
    pub resp: StatusResponse,
}

/// One endpoint's `endpoint health` result.
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

/// One endpoint's `endpoint hashkv` result.
pub struct EpHashKv {
    pub ep: String,
    pub resp: HashKvResponse,
}

/// Renders responses to stdout in the selected format.
pub struct Display {
    pub format: Format,
    pub hex: bool,
    /// `get --print-value-only`
    pub value_only: bool,
}

/// Writes bytes to stdout. A reader that went away (`| head`) ends the
/// process the way SIGPIPE ends etcdctl (shell status 141), so endless
/// commands like `watch` do not keep running into a closed pipe.
pub fn out(b: &[u8]) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(b).and_then(|_| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
    }
}

pub fn outln(s: &str) {
    let mut line = Vec::with_capacity(s.len() + 1);
    line.extend_from_slice(s.as_bytes());
    line.push(b'\n');
    out(&line);
}

pub fn errln(s: &str) {
    let _ = std::io::stdout().flush();
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes());
    let _ = e.write_all(b"\n");
}

pub(crate) fn unsupported(f: Format) -> CtlError {
    CtlError::new(
        EXIT_BAD_FEATURE,
        format!("{} not supported as output format", f.name()),
    )
}

/// A response without a header prints as zeros (etcdctl would crash).
pub fn hdr(h: &Option<ResponseHeader>) -> ResponseHeader {
    h.unwrap_or_default()
}

impl Display {
    pub fn new(format: Format, hex: bool) -> Self {
        Display {
            format,
            hex,
            value_only: false,
        }
    }

    pub fn put(&self, r: &PutResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::put(self, r),
            Format::Json => outln(&json::put(r)),
            Format::Fields => fields::put(r),
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn get(&self, r: &RangeResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::get(self, r),
            Format::Json => outln(&json::range(r)),
            Format::Fields => fields::get(r),
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn del(&self, r: &DeleteRangeResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::del(self, r),
            Format::Json => outln(&json::delete(r)),
            Format::Fields => fields::del(r),
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn txn(&self, r: &TxnResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::txn(self, r),
            Format::Json => outln(&json::txn(r)),
            Format::Fields => fields::txn(r),
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// A watch response as clientv3 hands it to etcdctl.
    pub fn watch(&self, r: &WatchResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::watch(self, r),
            Format::Json => outln(&json::watch(r)),
            Format::Fields => fields::watch(r),
            Format::Protobuf => protobuf::watch(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn grant(&self, r: &LeaseGrantResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::grant(r),
            Format::Json => outln(&json::grant(r)),
            Format::Fields => fields::grant(r),
            Format::Protobuf => protobuf::header_of(&r.header),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn revoke(&self, id: i64, r: &LeaseRevokeResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::revoke(id),
            Format::Json => outln(&json::header_only(&r.header)),
            Format::Fields => fields::hdr(&hdr(&r.header)),
            Format::Protobuf => return Err(protobuf::revoke_unsupported(r)),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn keep_alive(&self, r: &LeaseKeepAliveResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::keep_alive(r),
            Format::Json => outln(&json::keep_alive(r)),
            Format::Fields => fields::keep_alive(r),
            Format::Protobuf => protobuf::header_of(&r.header),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn time_to_live(&self, r: &LeaseTimeToLiveResponse, keys: bool) -> Result<()> {
        match self.format {
            Format::Simple => simple::time_to_live(r, keys),
            Format::Json => outln(&json::time_to_live(r)),
            Format::Fields => fields::time_to_live(r),
            Format::Protobuf => protobuf::header_of(&r.header),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn leases(&self, r: &LeaseLeasesResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::leases(r),
            Format::Json => outln(&json::leases(r)),
            Format::Fields => fields::leases(r),
            Format::Protobuf => protobuf::header_of(&r.header),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn member_list(&self, r: &MemberListResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::member_list(r),
            Format::Json => outln(&json::member_list(r)),
            Format::Fields => fields::member_list(r),
            Format::Protobuf => protobuf::message(r),
            Format::Table => out(table::member_list(r).as_bytes()),
        }
        Ok(())
    }

    pub fn endpoint_status(&self, list: &[EpStatus]) -> Result<()> {
        match self.format {
            Format::Simple => simple::endpoint_status(list),
            Format::Json => outln(&json::endpoint_status(list)),
            Format::Fields => fields::endpoint_status(list),
            Format::Protobuf => return Err(unsupported(self.format)),
            Format::Table => out(table::endpoint_status(list).as_bytes()),
        }
        Ok(())
    }

    pub fn endpoint_health(&self, list: &[EpHealth]) -> Result<()> {
        match self.format {
            Format::Simple => simple::endpoint_health(list),
            Format::Json => outln(&json::endpoint_health(list)),
            Format::Fields => fields::endpoint_health(list),
            Format::Protobuf => return Err(unsupported(self.format)),
            Format::Table => out(table::endpoint_health(list).as_bytes()),
        }
        Ok(())
    }

    /// The membership changes: simple, json and protobuf only.
    fn member_change<M: prost::Message>(&self, simple: String, json: String, r: &M) -> Result<()> {
        match self.format {
            Format::Simple => outln(&simple),
            Format::Json => outln(&json),
            Format::Protobuf => protobuf::message(r),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn member_add(&self, r: &MemberAddResponse) -> Result<()> {
        let id = r.member.as_ref().map(|m| m.id).unwrap_or(0);
        let simple = format!(
            "Member {:16x} added to cluster {:16x}",
            id,
            hdr(&r.header).cluster_id
        );
        self.member_change(simple, json::member_add(r), r)
    }

    pub fn member_remove(&self, id: u64, r: &MemberRemoveResponse) -> Result<()> {
        let simple = format!(
            "Member {:16x} removed from cluster {:16x}",
            id,
            hdr(&r.header).cluster_id
        );
        self.member_change(simple, json::members_only(&r.header, &r.members), r)
    }

    pub fn member_update(&self, id: u64, r: &MemberUpdateResponse) -> Result<()> {
        let simple = format!(
            "Member {:16x} updated in cluster {:16x}",
            id,
            hdr(&r.header).cluster_id
        );
        self.member_change(simple, json::members_only(&r.header, &r.members), r)
    }

    pub fn member_promote(&self, id: u64, r: &MemberPromoteResponse) -> Result<()> {
        let simple = format!(
            "Member {:16x} promoted in cluster {:16x}",
            id,
            hdr(&r.header).cluster_id
        );
        self.member_change(simple, json::members_only(&r.header, &r.members), r)
    }

    pub fn move_leader(&self, leader: u64, target: u64, r: &MoveLeaderResponse) -> Result<()> {
        let simple = format!("Leadership transferred from {leader:x} to {target:x}");
        self.member_change(simple, json::header_only(&r.header), r)
    }

    pub fn endpoint_hashkv(&self, list: &[EpHashKv]) -> Result<()> {
        match self.format {
            Format::Simple => {
                for row in rows::hashes(list) {
                    outln(&row.join(", "));
                }
            }
            Format::Json => outln(&json::endpoint_hashkv(list)),
            Format::Fields => fields::endpoint_hashkv(list),
            Format::Protobuf => return Err(unsupported(self.format)),
            Format::Table => out(table::render(&rows::HASH_HDR, &rows::hashes(list)).as_bytes()),
        }
        Ok(())
    }

    pub fn alarm(&self, r: &AlarmResponse) -> Result<()> {
        match self.format {
            Format::Simple => simple::alarm(r),
            Format::Json => outln(&json::alarm(r)),
            Format::Fields => fields::alarm(r),
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }
}

/// Columns shared by the simple and table printers (etcdctl's make*Table).
pub mod rows {
    use super::{EpHealth, EpStatus};
    use crate::gostr::humanize_bytes;
    use oxcd_api::etcdserverpb::MemberListResponse;

    pub const MEMBER_HDR: [&str; 6] = [
        "ID",
        "Status",
        "Name",
        "Peer Addrs",
        "Client Addrs",
        "Is Learner",
    ];

    pub fn members(r: &MemberListResponse) -> Vec<Vec<String>> {
        r.members
            .iter()
            .map(|m| {
                vec![
                    format!("{:x}", m.id),
                    if m.name.is_empty() {
                        "unstarted"
                    } else {
                        "started"
                    }
                    .to_string(),
                    m.name.clone(),
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner.to_string(),
                ]
            })
            .collect()
    }

    pub const STATUS_HDR: [&str; 10] = [
        "endpoint",
        "ID",
        "version",
        "db size",
        "is leader",
        "is learner",
        "raft term",
        "raft index",
        "raft applied index",
        "errors",
    ];

    pub fn statuses(list: &[EpStatus]) -> Vec<Vec<String>> {
        list.iter()
            .map(|s| {
                let member_id = s.resp.header.as_ref().map(|h| h.member_id).unwrap_or(0);
                vec![
                    s.ep.clone(),
                    format!("{:x}", member_id),
                    s.resp.version.clone(),
                    humanize_bytes(s.resp.db_size as u64),
                    (s.resp.leader == member_id).to_string(),
                    s.resp.is_learner.to_string(),
                    s.resp.raft_term.to_string(),
                    s.resp.raft_index.to_string(),
                    s.resp.raft_applied_index.to_string(),
                    s.resp.errors.join(", "),
                ]
            })
            .collect()
    }

    pub const HASH_HDR: [&str; 2] = ["endpoint", "hash"];

    pub fn hashes(list: &[super::EpHashKv]) -> Vec<Vec<String>> {
        list.iter()
            .map(|h| vec![h.ep.clone(), h.resp.hash.to_string()])
            .collect()
    }

    pub const HEALTH_HDR: [&str; 4] = ["endpoint", "health", "took", "error"];

    pub fn healths(list: &[EpHealth]) -> Vec<Vec<String>> {
        list.iter()
            .map(|h| {
                vec![
                    h.ep.clone(),
                    h.health.to_string(),
                    h.took.clone(),
                    h.error.clone(),
                ]
            })
            .collect()
    }
}
