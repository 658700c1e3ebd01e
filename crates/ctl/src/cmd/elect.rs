//! `elect <election-name> [proposal]` and `elect -l <election-name>`, over the Election service,
//! with etcdctl's outputs and errors; and the session (a lease kept alive in the background)
//! that `elect` and `lock` share, like clientv3's concurrency.Session.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, RangeRequest, RangeResponse,
};
use oxcd_api::v3electionpb::election_client::ElectionClient;
use oxcd_api::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use tokio::sync::watch;

use crate::cli::{ElectArgs, GlobalArgs};
use crate::client::Client;
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR};

/// clientv3's concurrency.Session default TTL (seconds).
pub const DEFAULT_SESSION_TTL: i64 = 60;
pub const CONTEXT_CANCELED: &str = "context canceled";

/// A lease kept alive until it is gone; `done` turns true then (concurrency.Session.Done).
pub struct Session {
    pub lease: i64,
    done: watch::Receiver<bool>,
}

impl Session {
    pub async fn new(c: &Arc<Client>, ttl: i64) -> Result<Session> {
        let resp = c.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await?;
        let lease = resp.id;
        let (tx, done) = watch::channel(false);
        let c = c.clone();
        tokio::spawn(async move {
            keep_alive(&c, lease, resp.ttl).await;
            let _ = tx.send(true);
        });
        Ok(Session { lease, done })
    }

    /// Resolves once the lease has expired or was revoked.
    pub async fn done(&mut self) {
        let _ = self.done.wait_for(|d| *d).await;
    }
}

/// clientv3's keep-alive loop: renew every third of the TTL, reopen the stream after failures,
/// and stop when the server says the lease is gone or it has not been renewed for a whole TTL.
async fn keep_alive(c: &Client, lease: i64, ttl: i64) {
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(ttl.max(1) as u64);
    loop {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        let opened = c
            .open_bidi(
                vec![LeaseKeepAliveRequest { id: lease }],
                Some(deadline - tokio::time::Instant::now()),
                |ch, req| async move { LeaseClient::new(ch).lease_keep_alive(req).await },
            )
            .await;
        let Ok((tx, mut stream)) = opened else {
            continue;
        };
        loop {
            let next = tokio::time::timeout_at(deadline, stream.message()).await;
            match next {
                Err(_) => return,
                Ok(Ok(Some(r))) if r.ttl <= 0 => return,
                Ok(Ok(Some(r))) => {
                    deadline = tokio::time::Instant::now() + Duration::from_secs(r.ttl as u64);
                    tokio::time::sleep(Duration::from_secs((r.ttl as u64 / 3).max(1))).await;
                    if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                        break;
                    }
                }
                Ok(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// SIGINT or SIGTERM, as etcdctl's signal.Notify.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

pub async fn run(g: &GlobalArgs, a: &ElectArgs) -> Result<()> {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    if a.listen && a.args.len() == 2 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "proposal given but -l is set"));
    }
    if !a.listen && a.args.len() != 2 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "no proposal argument but -l not set",
        ));
    }
    let (c, d) = super::client(g).await?;
    let c = Arc::new(c);
    let name = a.args[0].as_bytes().to_vec();
    if a.listen {
        return observe(&c, &d, name).await;
    }
    campaign(&c, &d, name, a.args[1].as_bytes().to_vec()).await
}

async fn observe(c: &Client, d: &crate::print::Display, name: Vec<u8>) -> Result<()> {
    let watch = async {
        let req = c.request(LeaderRequest { name });
        let mut stream = ElectionClient::new(c.channel(0))
            .observe(req)
            .await?
            .into_inner();
        while let Ok(Some(r)) = stream.message().await {
            d.get(&RangeResponse {
                header: r.header,
                kvs: r.kv.into_iter().collect(),
                ..Default::default()
            })?;
        }
        Ok::<(), CtlError>(())
    };
    tokio::select! {
        _ = interrupted() => Ok(()),
        r = watch => {
            r?;
            Err(CtlError::new(EXIT_ERROR, "elect: observer lost"))
        }
    }
}

async fn campaign(
    c: &Arc<Client>,
    d: &crate::print::Display,
    name: Vec<u8>,
    value: Vec<u8>,
) -> Result<()> {
    let mut s = Session::new(c, DEFAULT_SESSION_TTL).await?;
    let req = c.request(CampaignRequest {
        name,
        lease: s.lease,
        value,
    });
    let mut client = ElectionClient::new(c.channel(0));
    let leader = tokio::select! {
        _ = interrupted() => return Err(CtlError::new(EXIT_ERROR, CONTEXT_CANCELED)),
        r = client.campaign(req) => r?.into_inner().leader.unwrap_or_default(),
    };
    let resp = c
        .range(RangeRequest {
            key: leader.key.clone(),
            ..Default::default()
        })
        .await?;
    d.get(&resp)?;
    tokio::select! {
        _ = interrupted() => {}
        _ = s.done() => return Err(CtlError::new(EXIT_ERROR, "elect: session expired")),
    }
    let req = c.request(ResignRequest {
        leader: Some(leader),
    });
    client.resign(req).await?;
    Ok(())
}
