//! `user add|delete|get|list|passwd|grant-role|revoke-role`

use std::io::BufRead;

use oxcd_api::authpb::UserAddOptions;
use oxcd_api::etcdserverpb::{
    AuthRoleGetRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest,
};

use crate::cli::{GlobalArgs, Rest, UserAddArgs, UserCmd, UserGetArgs, UserPasswdArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};
use crate::global::prompt_password;
use crate::print::outln;

pub async fn run(g: &GlobalArgs, cmd: &UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add(a) => add(g, a).await,
        UserCmd::Delete(a) => {
            let name = one_name(a, "user delete command requires user name as its argument")?;
            let (c, d) = super::client(g).await?;
            let r = c
                .user_delete(AuthUserDeleteRequest { name: name.clone() })
                .await?;
            d.header_response(&format!("User {name} deleted"), &r.header, &r)
        }
        UserCmd::Get(a) => get(g, a).await,
        UserCmd::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "user list command requires no arguments",
                ));
            }
            let (c, d) = super::client(g).await?;
            let r = c.user_list(AuthUserListRequest {}).await?;
            d.user_list(&r)
        }
        UserCmd::Passwd(a) => passwd(g, a).await,
        UserCmd::GrantRole(a) => {
            if a.args.len() != 2 {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "user grant command requires user name and role name as its argument",
                ));
            }
            let (user, role) = (a.args[0].clone(), a.args[1].clone());
            let (c, d) = super::client(g).await?;
            let r = c
                .user_grant_role(AuthUserGrantRoleRequest {
                    user: user.clone(),
                    role: role.clone(),
                })
                .await?;
            d.header_response(
                &format!("Role {role} is granted to user {user}"),
                &r.header,
                &r,
            )
        }
        UserCmd::RevokeRole(a) => {
            if a.args.len() != 2 {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "user revoke-role requires user name and role name as its argument",
                ));
            }
            let (name, role) = (a.args[0].clone(), a.args[1].clone());
            let (c, d) = super::client(g).await?;
            let r = c
                .user_revoke_role(AuthUserRevokeRoleRequest {
                    name: name.clone(),
                    role: role.clone(),
                })
                .await?;
            d.header_response(
                &format!("Role {role} is revoked from user {name}"),
                &r.header,
                &r,
            )
        }
    }
}

fn one_name(a: &Rest, msg: &str) -> Result<String> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, msg));
    }
    Ok(a.args[0].clone())
}

/// `fmt.Scanf("%s")`: the first word of the next stdin line.
fn scan_word() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    line.split_whitespace().next().unwrap_or("").to_string()
}

/// Asks twice, like etcdctl's readPasswordInteractive.
fn read_password_interactive(name: &str) -> Result<String> {
    let bad = |m: String| CtlError::new(EXIT_BAD_ARGS, m);
    let p1 = prompt_password(&format!("Password of {name}: "))
        .map_err(|e| bad(format!("failed to ask password: {e}")))?;
    if p1.is_empty() {
        return Err(bad("empty password".into()));
    }
    let p2 = prompt_password(&format!("Type password of {name} again for confirmation: "))
        .map_err(|e| bad(format!("failed to ask password: {e}")))?;
    if p1 != p2 {
        return Err(bad("given passwords are different".into()));
    }
    Ok(p1)
}

async fn add(g: &GlobalArgs, a: &UserAddArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "user add command requires user name as its argument",
        ));
    }
    let arg = &a.args[0];
    let (user, password) = if a.no_password {
        (arg.clone(), String::new())
    } else if !a.new_user_password.is_empty() {
        (arg.clone(), a.new_user_password.clone())
    } else {
        match arg.split_once(':') {
            None if !a.interactive => (arg.clone(), scan_word()),
            None => (arg.clone(), read_password_interactive(arg)?),
            Some((u, p)) => {
                if u.is_empty() {
                    return Err(CtlError::new(
                        EXIT_BAD_ARGS,
                        "empty user name is not allowed",
                    ));
                }
                (u.to_string(), p.to_string())
            }
        }
    };
    let (c, d) = super::client(g).await?;
    let r = c
        .user_add(AuthUserAddRequest {
            name: user.clone(),
            password,
            options: Some(UserAddOptions {
                no_password: a.no_password,
            }),
            hashed_password: String::new(),
        })
        .await?;
    d.header_response(&format!("User {user} created"), &r.header, &r)
}

async fn get(g: &GlobalArgs, a: &UserGetArgs) -> Result<()> {
    let name = one_name(
        &Rest {
            args: a.args.clone(),
        },
        "user get command requires user name as its argument",
    )?;
    let (c, d) = super::client(g).await?;
    let r = c
        .user_get(AuthUserGetRequest { name: name.clone() })
        .await?;
    if !a.detail {
        return d.user_get(&name, &r);
    }
    outln(&format!("User: {name}"));
    for role in &r.roles {
        outln("");
        let rr = c
            .role_get(AuthRoleGetRequest { role: role.clone() })
            .await?;
        d.role_get(role, &rr)?;
    }
    Ok(())
}

async fn passwd(g: &GlobalArgs, a: &UserPasswdArgs) -> Result<()> {
    let name = one_name(
        &Rest {
            args: a.args.clone(),
        },
        "user passwd command requires user name as its argument",
    )?;
    let password = if a.interactive {
        read_password_interactive(&name)?
    } else {
        scan_word()
    };
    let (c, d) = super::client(g).await?;
    let r = c
        .user_change_password(AuthUserChangePasswordRequest {
            name,
            password,
            hashed_password: String::new(),
        })
        .await?;
    d.header_response("Password updated", &r.header, &r)
}
