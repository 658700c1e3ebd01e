//! `compaction [options] <revision>`

use oxcd_api::etcdserverpb::CompactionRequest;

use crate::cli::{CompactionArgs, GlobalArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::print::outln;

pub async fn run(g: &GlobalArgs, a: &CompactionArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "compaction command needs 1 argument",
        ));
    }
    let rev = crate::gostr::parse_int(&a.args[0], 10).map_err(|e| CtlError::new(EXIT_ERROR, e))?;
    let (c, _) = super::client(g).await?;
    c.compact(CompactionRequest {
        revision: rev,
        physical: a.physical,
    })
    .await?;
    outln(&format!("compacted revision {rev}"));
    Ok(())
}
