//! `member list`

use oxcd_api::etcdserverpb::MemberListRequest;

use crate::cli::{GlobalArgs, MemberCmd};
use crate::error::Result;

pub async fn run(g: &GlobalArgs, cmd: &MemberCmd) -> Result<()> {
    match cmd {
        MemberCmd::List(_) => {
            let (c, d) = super::client(g).await?;
            let resp = c
                .member_list(MemberListRequest {
                    linearizable: false,
                })
                .await?;
            d.member_list(&resp)
        }
    }
}
