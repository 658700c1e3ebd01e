//! The leader's expiry loop: turns expired leases into LeaseRevoke proposals.
//!
//! Revocation goes through raft like any write, so every member deletes the lease's keys at the
//! same revision. Only the leader proposes (followers' clocks know nothing of keep-alives), and at
//! a bounded rate, as etcd does: a burst of expiries (say, after a partition heals) must not crowd
//! clients' writes out of raft.

use std::sync::{Arc, Weak};
use std::time::Duration;

use oxcd_api::etcdserverpb::{InternalRaftRequest, LeaseRevokeRequest};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::LEASE_REVOKE_RATE;
use crate::error::EtcdError;
use crate::server::EtcdServer;

/// How often the loop looks for expired leases (etcd checks every 500ms).
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Upper bound on one revoke proposal, so a stuck proposal cannot hold a slot forever. The
/// lease is offered again by the lessor after its retry interval if it still exists.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the expiry loop. It holds the server only weakly and ends once the server is dropped
/// (or with the runtime). Every tick, if this member is the leader, it takes up to half the
/// per-second revoke rate of expired leases from the lessor and proposes a LeaseRevoke for each,
/// with at most `LEASE_REVOKE_RATE` proposals in flight. A LeaseNotFound answer means the lease
/// was revoked meanwhile (by a client): fine.
///
/// It also demotes the lessor when it sees this member is no longer leader, as a safety net in
/// case the raft layer did not call `Lessor::demote` on step-down: a stale primary lessor would
/// otherwise revoke live leases right after this member is re-elected, before `promote`.
pub fn spawn_expiry_loop(server: Arc<EtcdServer>) -> JoinHandle<()> {
    let weak: Weak<EtcdServer> = Arc::downgrade(&server);
    drop(server);
    tokio::spawn(async move {
        let in_flight = Arc::new(Semaphore::new(LEASE_REVOKE_RATE));
        let per_tick = (LEASE_REVOKE_RATE as u128 * CHECK_INTERVAL.as_millis() / 1000) as usize;
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(server) = weak.upgrade() else {
                return;
            };
            // Read the epoch before asking raft: if this member gets promoted between the two
            // calls, the epoch changes and the demotion below is skipped.
            let epoch = server.lessor.promotion_epoch();
            if !server.is_leader() {
                server.lessor.demote_if_epoch(epoch);
                continue;
            }
            let budget = per_tick.min(in_flight.available_permits());
            if budget == 0 {
                continue;
            }
            for id in server.lessor.expired(budget) {
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    // Cannot happen (budget <= available permits, only this task acquires);
                    // the lessor offers the lease again after its retry interval anyway.
                    break;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    revoke_expired(&server, id).await;
                });
            }
        }
    })
}

async fn revoke_expired(server: &EtcdServer, id: i64) {
    let req = InternalRaftRequest {
        lease_revoke: Some(LeaseRevokeRequest { id }),
        ..Default::default()
    };
    match tokio::time::timeout(REVOKE_TIMEOUT, server.propose_as_root(req)).await {
        Ok(Ok(_)) | Ok(Err(EtcdError::LeaseNotFound)) => {}
        // Leadership moved: the new leader's lessor takes over.
        Ok(Err(EtcdError::NotLeader | EtcdError::NoLeader | EtcdError::Stopped)) => {}
        Ok(Err(e)) => tracing::warn!(
            lease_id = format!("{id:016x}"),
            error = %e,
            "failed to revoke lease"
        ),
        Err(_) => tracing::warn!(
            lease_id = format!("{id:016x}"),
            "failed to revoke lease: timed out"
        ),
    }
}
