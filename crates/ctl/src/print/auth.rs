//! Printers for the auth, user and role commands.

use oxcd_api::authpb::Permission;
use oxcd_api::etcdserverpb::{
    AuthRoleGetResponse, AuthRoleListResponse, AuthStatusResponse, AuthUserGetResponse,
    AuthUserListResponse, ResponseHeader,
};

use super::json::{self, Obj};
use super::{fields, hdr, out, outln, protobuf, unsupported, Display, Format};
use crate::cmd::prefix_end;
use crate::error::Result;
use crate::gostr::quote;

/// Permission.Type names.
fn perm_name(t: i32) -> String {
    match t {
        0 => "READ".into(),
        1 => "WRITE".into(),
        2 => "READWRITE".into(),
        n => n.to_string(),
    }
}

fn perm_json(p: &Permission) -> String {
    Obj::new()
        .int("permType", p.perm_type, true)
        .bytes("key", &p.key)
        .bytes("range_end", &p.range_end)
        .done()
}

/// One permission line of `role get`: a key, or a range with its end.
fn perm_line(p: &Permission) -> Vec<u8> {
    let mut l = b"\t".to_vec();
    if p.range_end.is_empty() {
        l.extend_from_slice(&p.key);
    } else {
        l.push(b'[');
        l.extend_from_slice(&p.key);
        if p.range_end != b"\x00" {
            l.extend_from_slice(b", ");
            l.extend_from_slice(&p.range_end);
            l.push(b')');
        } else {
            l.extend_from_slice(b", <open ended>");
        }
        if prefix_end(&p.key) == p.range_end {
            l.extend_from_slice(b" (prefix ");
            l.extend_from_slice(&p.key);
            l.push(b')');
        }
    }
    l.push(b'\n');
    l
}

impl Display {
    /// Responses that carry only a header: simple prints `text`.
    pub fn header_response<M: prost::Message>(
        &self,
        text: &str,
        h: &Option<ResponseHeader>,
        m: &M,
    ) -> Result<()> {
        match self.format {
            Format::Simple => outln(text),
            Format::Json => outln(&json::header_only(h)),
            Format::Fields => fields::hdr(&hdr(h)),
            Format::Protobuf => protobuf::message(m),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `auth status`, as etcdctl 3.5 prints it.
    pub fn auth_status(&self, r: &AuthStatusResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                outln(&format!("Authentication Status: {}", r.enabled));
                outln(&format!("AuthRevision: {}", r.auth_revision));
            }
            Format::Json => outln(
                &Obj::new()
                    .opt("header", r.header.map(|h| json::header(&h)))
                    .boolean("enabled", r.enabled, true)
                    .int("authRevision", r.auth_revision, true)
                    .done(),
            ),
            Format::Fields => {
                fields::hdr(&hdr(&r.header));
                outln(&format!("\"Enabled\" : {}", r.enabled));
                outln(&format!("\"AuthRevision\" : {}", r.auth_revision));
            }
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn role_get(&self, role: &str, r: &AuthRoleGetResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                let mut b = format!("Role {role}\nKV Read:\n").into_bytes();
                for p in r
                    .perm
                    .iter()
                    .filter(|p| p.perm_type == 0 || p.perm_type == 2)
                {
                    b.extend(perm_line(p));
                }
                b.extend_from_slice(b"KV Write:\n");
                for p in r
                    .perm
                    .iter()
                    .filter(|p| p.perm_type == 1 || p.perm_type == 2)
                {
                    b.extend(perm_line(p));
                }
                out(&b);
            }
            Format::Json => outln(
                &Obj::new()
                    .opt("header", r.header.map(|h| json::header(&h)))
                    .list("perm", r.perm.iter().map(perm_json).collect())
                    .done(),
            ),
            Format::Fields => {
                fields::hdr(&hdr(&r.header));
                for p in &r.perm {
                    // etcdctl's Println puts two spaces after the colon here.
                    outln(&format!("\"PermType\" :  {}", perm_name(p.perm_type)));
                    outln(&format!("\"Key\" : {}", quote(&p.key)));
                    outln(&format!("\"RangeEnd\" : {}", quote(&p.range_end)));
                }
            }
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn role_list(&self, r: &AuthRoleListResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                for role in &r.roles {
                    outln(role);
                }
            }
            Format::Json => outln(&names_json(&r.header, "roles", &r.roles)),
            Format::Fields => {
                fields::hdr(&hdr(&r.header));
                let mut l = String::from("\"Roles\" :");
                for role in &r.roles {
                    l.push(' ');
                    l.push_str(&quote(role.as_bytes()));
                }
                outln(&l);
            }
            Format::Protobuf => protobuf::message(r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn user_get(&self, name: &str, r: &AuthUserGetResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                let mut l = format!("User: {name}\nRoles:");
                for role in &r.roles {
                    l.push(' ');
                    l.push_str(role);
                }
                outln(&l);
            }
            Format::Json => outln(&names_json(&r.header, "roles", &r.roles)),
            Format::Protobuf => protobuf::message(r),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    pub fn user_list(&self, r: &AuthUserListResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                for u in &r.users {
                    outln(u);
                }
            }
            Format::Json => outln(&names_json(&r.header, "users", &r.users)),
            Format::Protobuf => protobuf::message(r),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }
}

fn names_json(h: &Option<ResponseHeader>, key: &str, names: &[String]) -> String {
    Obj::new()
        .opt("header", h.map(|h| json::header(&h)))
        .list(key, names.iter().map(|n| json::string(n)).collect())
        .done()
}
