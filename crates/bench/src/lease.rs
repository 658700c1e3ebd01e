//! `lease-keepalive`: each client grants a lease, then keeps it alive once per request.

use clap::Args;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};

use crate::conn::{self, err_text, Conn};
use crate::progress::Bar;
use crate::report::{Recorder, Summary};
use crate::{fail, run_pool, Global, Limiter};

#[derive(Args, Debug)]
pub struct LeaseKeepaliveArgs {
    /// Total number of lease keepalive requests
    #[arg(long, default_value_t = 10000)]
    total: usize,
}

/// One keep-alive on a stream of its own, as the Go client's `KeepAliveOnce`.
async fn keepalive_once(c: &Conn, id: i64) -> Result<(), String> {
    let req = tokio_stream::iter(vec![LeaseKeepAliveRequest { id }]);
    let mut stream = c
        .lease()
        .lease_keep_alive(c.req(req))
        .await
        .map_err(|s| err_text(&s))?
        .into_inner();
    match stream.message().await {
        Ok(Some(r)) if r.ttl <= 0 => Err("etcdserver: requested lease not found".to_string()),
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("rpc error: code = Canceled desc = keepalive stream ended".to_string()),
        Err(s) => Err(err_text(&s)),
    }
}

pub async fn keepalive(g: &Global, a: &LeaseKeepaliveArgs) {
    let summary = keepalive_run(g, a).await;
    print!("{}", summary.render(g.precision()));
}

/// Runs `lease-keepalive` without printing the report.
pub async fn keepalive_run(g: &Global, a: &LeaseKeepaliveArgs) -> Summary {
    let clients = conn::clients(g, g.clients, g.conns).await;
    let mut workers = Vec::with_capacity(clients.len());
    for c in clients {
        let grant = c
            .lease()
            .lease_grant(c.req(LeaseGrantRequest { ttl: 100, id: 0 }))
            .await
            .unwrap_or_else(|s| fail(&err_text(&s)));
        workers.push((c, grant.into_inner().id));
    }
    let bar = Bar::start(a.total as u64);
    let rec = Recorder::new();
    run_pool(
        &workers,
        a.total,
        Limiter::new(0),
        |_| (),
        |(c, id): (Conn, i64), ()| async move { keepalive_once(&c, id).await },
        &rec,
        &bar,
    )
    .await;
    bar.finish();
    rec.summary(g.sample)
}
