//! `role add|delete|get|list|grant-permission|revoke-permission`

use oxcd_api::authpb::Permission;
use oxcd_api::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest,
    AuthRoleListRequest, AuthRoleRevokePermissionRequest,
};

use crate::cli::{GlobalArgs, PermArgs, Rest, RevokePermArgs, RoleCmd};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};

pub async fn run(g: &GlobalArgs, cmd: &RoleCmd) -> Result<()> {
    match cmd {
        RoleCmd::Add(a) => {
            let role = one_role(a, "role add command requires role name as its argument")?;
            let (c, d) = super::client(g).await?;
            let r = c
                .role_add(AuthRoleAddRequest { name: role.clone() })
                .await?;
            d.header_response(&format!("Role {role} created"), &r.header, &r)
        }
        RoleCmd::Delete(a) => {
            let role = one_role(a, "role delete command requires role name as its argument")?;
            let (c, d) = super::client(g).await?;
            let r = c
                .role_delete(AuthRoleDeleteRequest { role: role.clone() })
                .await?;
            d.header_response(&format!("Role {role} deleted"), &r.header, &r)
        }
        RoleCmd::Get(a) => {
            let role = one_role(a, "role get command requires role name as its argument")?;
            let (c, d) = super::client(g).await?;
            let r = c
                .role_get(AuthRoleGetRequest { role: role.clone() })
                .await?;
            d.role_get(&role, &r)
        }
        RoleCmd::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "role list command requires no arguments",
                ));
            }
            let (c, d) = super::client(g).await?;
            let r = c.role_list(AuthRoleListRequest {}).await?;
            d.role_list(&r)
        }
        RoleCmd::GrantPermission(a) => grant(g, a).await,
        RoleCmd::RevokePermission(a) => revoke(g, a).await,
    }
}

fn one_role(a: &Rest, msg: &str) -> Result<String> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, msg));
    }
    Ok(a.args[0].clone())
}

/// etcdctl's permRange: the key and range end a permission covers.
fn perm_range(args: &[String], prefix: bool, from_key: bool) -> Result<(Vec<u8>, Vec<u8>)> {
    let bad = |m: &str| CtlError::new(EXIT_BAD_ARGS, m);
    let key = args[0].as_bytes().to_vec();
    if key.is_empty() {
        if prefix && from_key {
            return Err(bad("--from-key and --prefix flags are mutually exclusive"));
        }
        // The empty prefix means every key: ["\0", "\0").
        let end = if prefix || from_key { vec![0] } else { vec![] };
        return Ok((vec![0], end));
    }
    let end = if args.len() == 1 {
        match (prefix, from_key) {
            (true, true) => {
                return Err(bad("--from-key and --prefix flags are mutually exclusive"))
            }
            (true, false) => super::prefix_end(&key),
            (false, true) => vec![0],
            (false, false) => vec![],
        }
    } else if prefix {
        return Err(bad("unexpected endkey argument with --prefix flag"));
    } else if from_key {
        return Err(bad("unexpected endkey argument with --from-key flag"));
    } else {
        args[1].as_bytes().to_vec()
    };
    Ok((key, end))
}

async fn grant(g: &GlobalArgs, a: &PermArgs) -> Result<()> {
    if a.args.len() < 3 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        ));
    }
    let perm_type = match a.args[1].to_uppercase().as_str() {
        "READ" => 0,
        "WRITE" => 1,
        "READWRITE" => 2,
        _ => {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                format!("invalid permission type: {}", a.args[1]),
            ))
        }
    };
    let (key, range_end) = perm_range(&a.args[2..], a.prefix, a.from_key)?;
    let role = a.args[0].clone();
    let (c, d) = super::client(g).await?;
    let r = c
        .role_grant_permission(AuthRoleGrantPermissionRequest {
            name: role.clone(),
            perm: Some(Permission {
                perm_type,
                key,
                range_end,
            }),
        })
        .await?;
    d.header_response(&format!("Role {role} updated"), &r.header, &r)
}

async fn revoke(g: &GlobalArgs, a: &RevokePermArgs) -> Result<()> {
    if a.args.len() < 2 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "role revoke-permission command requires role name and key [endkey] as its argument",
        ));
    }
    let (key, range_end) = perm_range(&a.args[1..], a.prefix, a.from_key)?;
    let role = a.args[0].clone();
    let (c, d) = super::client(g).await?;
    let r = c
        .role_revoke_permission(AuthRoleRevokePermissionRequest {
            role: role.clone(),
            key,
            range_end: range_end.clone(),
        })
        .await?;
    let k = &a.args[1];
    let text = if range_end.is_empty() {
        format!("Permission of key {k} is revoked from role {role}")
    } else if range_end != b"\x00" {
        format!(
            "Permission of range [{k}, {}) is revoked from role {role}",
            String::from_utf8_lossy(&range_end)
        )
    } else {
        format!("Permission of range [{k}, <open ended> is revoked from role {role}")
    };
    d.header_response(&text, &r.header, &r)
}
