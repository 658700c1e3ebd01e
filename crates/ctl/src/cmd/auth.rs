//! `auth enable|disable|status`

use oxcd_api::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthStatusRequest,
    AuthUserGrantRoleRequest,
};

use crate::cli::{AuthCmd, GlobalArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};
use crate::print::outln;

/// The server's answer when the root user lacks the root role.
const ROOT_ROLE_NOT_EXIST: &str = "etcdserver: root user does not have root role";

pub async fn run(g: &GlobalArgs, cmd: &AuthCmd) -> Result<()> {
    match cmd {
        AuthCmd::Enable(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "auth enable command does not accept any arguments",
                ));
            }
            let (c, _) = super::client(g).await?;
            // Like etcdctl: give root the root role when that is all that
            // is missing, then try again.
            loop {
                match c.auth_enable(AuthEnableRequest {}).await {
                    Ok(_) => break,
                    Err(e) if e.msg == ROOT_ROLE_NOT_EXIST => {
                        c.role_add(AuthRoleAddRequest {
                            name: "root".into(),
                        })
                        .await?;
                        c.user_grant_role(AuthUserGrantRoleRequest {
                            user: "root".into(),
                            role: "root".into(),
                        })
                        .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            outln("Authentication Enabled");
            Ok(())
        }
        AuthCmd::Disable(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "auth disable command does not accept any arguments",
                ));
            }
            let (c, _) = super::client(g).await?;
            c.auth_disable(AuthDisableRequest {}).await?;
            outln("Authentication Disabled");
            Ok(())
        }
        // etcdctl 3.5's command (3.4 has neither the command nor the RPC).
        AuthCmd::Status(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "auth status command does not accept any arguments",
                ));
            }
            let (c, d) = super::client(g).await?;
            let r = c.auth_status(AuthStatusRequest {}).await?;
            d.auth_status(&r)
        }
    }
}
