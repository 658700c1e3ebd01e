//! One module per etcdctl command. Each checks its arguments in the same
//! order etcdctl does (argument errors before dialing, output-format
//! checks after the response when etcdctl does them there).

pub mod alarm;
pub mod auth;
pub mod check;
pub mod compaction;
pub mod defrag;
pub mod del;
pub mod elect;
pub mod endpoint;
pub mod get;
pub mod lease;
pub mod lock;
pub mod make_mirror;
pub mod member;
pub mod move_leader;
pub mod put;
pub mod role;
pub mod snapshot;
pub mod txn;
pub mod user;
pub mod version;
pub mod watch;

use crate::cli::GlobalArgs;
use crate::client::Client;
use crate::error::Result;
use crate::global::{client_config, display_from};
use crate::print::Display;

/// etcdctl's mustClientFromCmd: validates global flags, then connects.
pub async fn client(g: &GlobalArgs) -> Result<(Client, Display)> {
    let cfg = client_config(g)?;
    let display = display_from(g)?;
    let c = Client::connect(&cfg).await?;
    Ok((c, display))
}

/// The end of the range holding every key with prefix `key`
/// (clientv3.GetPrefixRangeEnd): "\0" when no such end exists.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    oxcd_server::grpc::election::prefix_end(key)
}

/// Parses a hexadecimal lease ID argument (leaseFromArgs).
pub fn lease_from_arg(arg: &str) -> Result<i64> {
    crate::gostr::parse_int(arg, 16).map_err(|e| {
        crate::error::CtlError::new(
            crate::error::EXIT_BAD_ARGS,
            format!("bad lease ID arg ({e}), expecting ID in Hex"),
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_end_like_clientv3() {
        assert_eq!(super::prefix_end(b"abc"), b"abd");
        assert_eq!(super::prefix_end(b"a\xff"), b"b");
        assert_eq!(super::prefix_end(b"\xff\xff"), b"\x00");
    }
}
