//! `move-leader <transferee-member-id>`: finds the leader among the given
//! endpoints and asks it to hand leadership over.

use oxcd_api::etcdserverpb::{MoveLeaderRequest, StatusRequest};

use crate::cli::{GlobalArgs, Rest};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS};

pub async fn run(g: &GlobalArgs, a: &Rest) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "move-leader command needs 1 argument",
        ));
    }
    let target =
        super::member::parse_hex_u64(&a.args[0]).map_err(|e| CtlError::new(EXIT_BAD_ARGS, e))?;
    let (c, d) = super::client(g).await?;
    for ep in &g.endpoints {
        let one = c.for_endpoint(ep)?;
        let st = one.status(StatusRequest {}).await?;
        let member_id = st.header.map(|h| h.member_id).unwrap_or(0);
        if member_id == st.leader {
            let resp = one
                .move_leader(MoveLeaderRequest { target_id: target })
                .await?;
            return d.move_leader(st.leader, target, &resp);
        }
    }
    Err(CtlError::new(
        EXIT_BAD_ARGS,
        format!(
            "no leader endpoint given at {}",
            crate::gostr::string_slice(&g.endpoints)
        ),
    ))
}
