//! `lease grant|revoke|timetolive|list|keep-alive`

use std::time::Duration;

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use tokio_stream::StreamExt;

use crate::cli::{GlobalArgs, KeepAliveArgs, LeaseCmd, Rest, TimeToLiveArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR};
use crate::print::{outln, Format};

use super::lease_from_arg;

const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

pub async fn run(g: &GlobalArgs, cmd: &LeaseCmd) -> Result<()> {
    match cmd {
        LeaseCmd::Grant(a) => grant(g, a).await,
        LeaseCmd::Revoke(a) => revoke(g, a).await,
        LeaseCmd::Timetolive(a) => time_to_live(g, a).await,
        LeaseCmd::List(_) => list(g).await,
        LeaseCmd::KeepAlive(a) => keep_alive(g, a).await,
    }
}

async fn grant(g: &GlobalArgs, a: &Rest) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "lease grant command needs TTL argument",
        ));
    }
    let ttl = crate::gostr::parse_int(&a.args[0], 10)
        .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("bad TTL ({e})")))?;
    let (c, d) = super::client(g).await?;
    let resp = c
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to grant lease ({})", e.msg)))?;
    d.grant(&resp)
}

async fn revoke(g: &GlobalArgs, a: &Rest) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "lease revoke command needs 1 argument",
        ));
    }
    let id = lease_from_arg(&a.args[0])?;
    let (c, d) = super::client(g).await?;
    let resp = c
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .map_err(|e| CtlError::new(EXIT_ERROR, format!("failed to revoke lease ({})", e.msg)))?;
    d.revoke(id, &resp)
}

async fn time_to_live(g: &GlobalArgs, a: &TimeToLiveArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "lease timetolive command needs lease ID as argument",
        ));
    }
    let id = lease_from_arg(&a.args[0])?;
    let (c, d) = super::client(g).await?;
    let resp = c
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: a.keys })
        .await
        .map_err(|e| e.with_code(EXIT_BAD_CONNECTION))?;
    d.time_to_live(&resp, a.keys)
}

async fn list(g: &GlobalArgs) -> Result<()> {
    let (c, d) = super::client(g).await?;
    let resp = c
        .lease_leases(LeaseLeasesRequest {})
        .await
        .map_err(|e| e.with_code(EXIT_BAD_CONNECTION))?;
    d.leases(&resp)
}

/// Streams keep-alives like clientv3.KeepAlive: one request now, the next
/// a third of the returned TTL later, until the lease is gone.
async fn keep_alive(g: &GlobalArgs, a: &KeepAliveArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "lease keep-alive command needs lease ID as argument",
        ));
    }
    let id = lease_from_arg(&a.args[0])?;
    let (c, d) = super::client(g).await?;

    let (tx, mut stream) = c
        .open_bidi(
            vec![LeaseKeepAliveRequest { id }],
            Some(g.command_timeout),
            |ch, req| async move { LeaseClient::new(ch).lease_keep_alive(req).await },
        )
        .await
        .map_err(|e| e.with_code(EXIT_BAD_CONNECTION))?;

    loop {
        let msg = stream.next().await;
        let resp = match msg {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                if a.once {
                    return Err(CtlError::from(e).with_code(EXIT_BAD_CONNECTION));
                }
                break;
            }
            None => break,
        };
        if resp.ttl <= 0 {
            if a.once {
                return Err(CtlError::new(EXIT_BAD_CONNECTION, LEASE_NOT_FOUND));
            }
            break;
        }
        d.keep_alive(&resp)?;
        if a.once {
            return Ok(());
        }
        let wait = Duration::from_secs((resp.ttl as u64 / 3).max(1));
        tokio::time::sleep(wait).await;
        if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            break;
        }
    }
    if d.format == Format::Simple {
        outln(&format!(
            "lease {} expired or revoked.",
            crate::print::simple::lease_hex(id)
        ));
    }
    Ok(())
}
