//! `defrag [--cluster]`: defragments each endpoint in turn.

use oxcd_api::etcdserverpb::DefragmentRequest;

use crate::cli::{DefragArgs, GlobalArgs};
use crate::error::{CtlError, Result, EXIT_ERROR};
use crate::print::{errln, outln};

pub async fn run(g: &GlobalArgs, a: &DefragArgs) -> Result<()> {
    let (c, _) = super::client(g).await?;
    let mut failures = 0;
    for ep in super::endpoint::endpoints(g, a.cluster).await? {
        let res = match c.for_endpoint(&ep) {
            Ok(one) => one.defragment(DefragmentRequest {}).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(_) => outln(&format!("Finished defragmenting etcd member[{ep}]")),
            Err(e) => {
                failures += 1;
                errln(&format!(
                    "Failed to defragment etcd member[{ep}] ({})",
                    e.msg
                ));
            }
        }
    }
    if failures != 0 {
        return Err(CtlError::silent(EXIT_ERROR));
    }
    Ok(())
}
