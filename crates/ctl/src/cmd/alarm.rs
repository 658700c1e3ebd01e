//! `alarm list|disarm`

use oxcd_api::etcdserverpb::{AlarmRequest, AlarmResponse};

use crate::cli::{AlarmCmd, GlobalArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};

const GET: i32 = 0;
const DEACTIVATE: i32 = 2;

pub async fn run(g: &GlobalArgs, cmd: &AlarmCmd) -> Result<()> {
    match cmd {
        AlarmCmd::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "alarm list command accepts no arguments",
                ));
            }
            let (c, d) = super::client(g).await?;
            let resp = c
                .alarm(AlarmRequest {
                    action: GET,
                    member_id: 0,
                    alarm: 0,
                })
                .await?;
            d.alarm(&resp)
        }
        AlarmCmd::Disarm(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    "alarm disarm command accepts no arguments",
                ));
            }
            let (c, d) = super::client(g).await?;
            // clientv3.AlarmDisarm with no member: list, then disarm each.
            let list = c
                .alarm(AlarmRequest {
                    action: GET,
                    member_id: 0,
                    alarm: 0,
                })
                .await?;
            let mut ret = AlarmResponse::default();
            for am in list.alarms {
                let r = c
                    .alarm(AlarmRequest {
                        action: DEACTIVATE,
                        member_id: am.member_id,
                        alarm: am.alarm,
                    })
                    .await?;
                ret.alarms.extend(r.alarms);
            }
            d.alarm(&ret)
        }
    }
}
