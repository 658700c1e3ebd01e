//! `endpoint health|status [--cluster]`

use std::time::Instant;

use futures::StreamExt;

use oxcd_api::etcdserverpb::{HashKvRequest, MemberListRequest, RangeRequest, StatusRequest};

use crate::cli::{EndpointArgs, EndpointCmd, GlobalArgs};
use crate::client::Client;
use crate::error::{CtlError, Result, EXIT_ERROR};
use crate::global::{client_config, display_from};
use crate::print::{errln, EpHashKv, EpHealth, EpStatus};

const PERMISSION_DENIED: &str = "etcdserver: permission denied";

pub async fn run(g: &GlobalArgs, a: &EndpointArgs) -> Result<()> {
    match &a.cmd {
        EndpointCmd::Health(_) => health(g, a.cluster).await,
        EndpointCmd::Status(_) => status(g, a.cluster).await,
        EndpointCmd::Hashkv(h) => hashkv(g, a.cluster, h.rev).await,
    }
}

/// The endpoints to visit: `--endpoints`, or with `--cluster` every client
/// URL in the member list.
pub async fn endpoints(g: &GlobalArgs, cluster: bool) -> Result<Vec<String>> {
    if !cluster {
        return Ok(g.endpoints.clone());
    }
    let (c, _) = super::client(g).await?;
    let resp = c
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await
        .map_err(|e| {
            CtlError::new(
                EXIT_ERROR,
                format!(
                    "failed to fetch endpoints from etcd cluster member list: {}",
                    e.msg
                ),
            )
        })?;
    Ok(resp
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

/// Reads a key through each endpoint; success (or permission denied, which
/// still went through consensus) means healthy.
async fn health(g: &GlobalArgs, cluster: bool) -> Result<()> {
    let eps = endpoints(g, cluster).await?;
    let cfg = client_config(g)?;
    let d = display_from(g)?;
    let checks = eps.into_iter().map(|ep| {
        let mut cfg = cfg.clone();
        cfg.endpoints = vec![ep.clone()];
        async move {
            let c = match Client::connect(&cfg).await {
                Ok(c) => c,
                Err(e) => {
                    return EpHealth {
                        ep,
                        health: false,
                        took: String::new(),
                        error: e.msg,
                    }
                }
            };
            let st = Instant::now();
            let res = c
                .range(RangeRequest {
                    key: b"health".to_vec(),
                    ..Default::default()
                })
                .await;
            let took = crate::gostr::duration_string(st.elapsed());
            match res {
                Err(e) if e.msg != PERMISSION_DENIED => EpHealth {
                    ep,
                    health: false,
                    took,
                    error: e.msg,
                },
                _ => EpHealth {
                    ep,
                    health: true,
                    took,
                    error: String::new(),
                },
            }
        }
    });
    // Reported in the order the checks finish, like etcdctl's goroutines.
    let list: Vec<EpHealth> = checks
        .collect::<futures::stream::FuturesUnordered<_>>()
        .collect()
        .await;
    d.endpoint_health(&list)?;
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::new(EXIT_ERROR, "unhealthy cluster"));
    }
    Ok(())
}

async fn status(g: &GlobalArgs, cluster: bool) -> Result<()> {
    let (c, d) = super::client(g).await?;
    let eps = endpoints(g, cluster).await?;
    let mut list = Vec::new();
    let mut failed = false;
    for ep in eps {
        let res = match c.for_endpoint(&ep) {
            Ok(one) => one.status(StatusRequest {}).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(resp) => list.push(EpStatus { ep, resp }),
            Err(e) => {
                failed = true;
                errln(&format!(
                    "Failed to get the status of endpoint {ep} ({})",
                    e.msg
                ));
            }
        }
    }
    d.endpoint_status(&list)?;
    if failed {
        return Err(CtlError::silent(EXIT_ERROR));
    }
    Ok(())
}

async fn hashkv(g: &GlobalArgs, cluster: bool, rev: i64) -> Result<()> {
    let (c, d) = super::client(g).await?;
    let eps = endpoints(g, cluster).await?;
    let mut list = Vec::new();
    let mut last_err = None;
    for ep in eps {
        let res = match c.for_endpoint(&ep) {
            Ok(one) => one.hash_kv(HashKvRequest { revision: rev }).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(resp) => list.push(EpHashKv { ep, resp }),
            Err(e) => {
                errln(&format!(
                    "Failed to get the hash of endpoint {ep} ({})",
                    e.msg
                ));
                last_err = Some(e);
            }
        }
    }
    d.endpoint_hashkv(&list)?;
    match last_err {
        Some(e) => Err(e.with_code(EXIT_ERROR)),
        None => Ok(()),
    }
}
