//! The etcd v3 Lease service.
//!
//! Grant and revoke are raft proposals (applied by the apply loop through `Lessor::grant` /
//! `Lessor::revoke`). Keep-alive and time-to-live are answered from the leader's lessor, the only
//! one that keeps time. A follower forwards them to the leader, as etcd does (etcd uses the peer
//! connection; we call the leader's own Lease service at its advertised `http://` client URL).
//! A follower answers "no leader" when there is none, "not leader" when the leader has no known
//! plain-http client URL, and "request timed out" when the leader cannot be reached; clients
//! retry (clientv3 reopens a failed keep-alive stream after 500ms).
//!
//! Answers mirror etcd 3.4 (checked against a real etcd 3.4.23):
//! - grant of TTL 1 -> TTL 2 (raised to the minimum); ID 0 -> server-chosen positive id; a
//!   negative id is accepted; same id twice -> FailedPrecondition "etcdserver: lease already
//!   exists"; TTL > 9e9 -> OutOfRange "etcdserver: too large lease TTL".
//! - revoke of an unknown lease -> NotFound "etcdserver: requested lease not found".
//! - keep-alive of an unknown lease -> a normal response {ID, TTL: 0} (no error).
//! - time-to-live of an unknown lease -> {ID, TTL: -1, grantedTTL: 0} (no error; etcdctl prints
//!   "lease 00000000000004d2 already expired").

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::lease_server::Lease;
use oxcd_api::etcdserverpb::{
    InternalRaftRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::error::EtcdError;
use crate::lease::{MAX_LEASE_TTL, NO_LEASE};
use crate::server::{ApplyResponse, EtcdServer};

/// How long a keep-alive waits for the leader's lessor to settle: for an expired lease to be
/// revoked (etcd waits rather than resurrect it), or for a fresh leader to promote its lessor.
const RENEW_WAIT: Duration = Duration::from_secs(5);
const RENEW_POLL: Duration = Duration::from_millis(50);
/// Keep-alives of one stream that may wait (slow path) at the same time; beyond this the stream
/// stops reading until one finishes, which pushes back on the client.
const MAX_WAITING_PER_STREAM: usize = 128;
/// Queue of responses per keep-alive stream.
const KEEPALIVE_BUFFER: usize = 64;
/// A server-chosen id can collide with a client-chosen one committed meanwhile; try again.
const GRANT_ID_ATTEMPTS: usize = 3;

/// Marks a call a follower forwarded to the leader, so it is never forwarded again: two members
/// with stale ideas of who leads would otherwise bounce it between them.
const FORWARDED: &str = "oxcd-lease-forwarded";
/// Bound on one forwarded call (the leader itself may wait up to `RENEW_WAIT`).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(7);

type StatusResult<T> = std::result::Result<T, Status>;

pub struct LeaseService {
    server: Arc<EtcdServer>,
    forwarder: Arc<Forwarder>,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        LeaseService {
            server,
            forwarder: Arc::new(Forwarder::default()),
        }
    }

    /// A fresh server-chosen id, skipping ones known to be taken. Like etcd: the raft request-id
    /// generator's next value (member id prefix + clock-seeded counter, unique across members
    /// and restarts) with the sign bit cleared, so ids are positive.
    fn pick_id(&self) -> i64 {
        loop {
            let id = (self.server.raft.next_id() & i64::MAX as u64) as i64;
            if id != NO_LEASE && !self.server.lessor.exists(id) {
                return id;
            }
        }
    }
}

/// Follower -> leader calls through the leader's Lease service, one lazily connected channel
/// per leader URL (HTTP/2 multiplexes all forwarded calls on it).
#[derive(Default)]
struct Forwarder {
    channels: parking_lot::Mutex<HashMap<String, Channel>>,
}

impl Forwarder {
    /// A client of the Lease service the leader serves on its peer port (as etcd forwards
    /// lease calls over the peer transport): reached with the peer TLS settings, whatever the
    /// client URLs require.
    async fn leader_client(&self, server: &EtcdServer) -> StatusResult<LeaseClient<Channel>> {
        let leader = server.raft.leader();
        if leader == 0 {
            return Err(EtcdError::NoLeader.into());
        }
        let url = server
            .membership
            .members()
            .into_iter()
            .find(|m| m.id == leader && leader != server.member_id())
            .and_then(|m| m.peer_urls.into_iter().next())
            .ok_or_else(|| Status::from(EtcdError::NotLeader))?;
        if let Some(ch) = self.channels.lock().get(&url) {
            return Ok(LeaseClient::new(ch.clone()));
        }
        let ch = crate::raft::transport::dial(server.transport.dialer(), &url, None)
            .await
            .map_err(|e| {
                tracing::debug!("forwarding lease call to the leader failed: {e}");
                Status::from(EtcdError::Timeout)
            })?;
        self.channels.lock().insert(url, ch.clone());
        Ok(LeaseClient::new(ch))
    }

    fn mark<T>(msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut()
            .insert(FORWARDED, MetadataValue::from_static("1"));
        req
    }

    /// The leader's TTL for `id` (0 if it does not know the lease).
    async fn renew(&self, server: &EtcdServer, id: i64) -> StatusResult<i64> {
        let mut client = self.leader_client(server).await?;
        let call = async move {
            let once = futures::stream::iter([LeaseKeepAliveRequest { id }]);
            let mut responses = client
                .lease_keep_alive(Self::mark(once))
                .await?
                .into_inner();
            match responses.message().await? {
                Some(r) => Ok(r.ttl),
                None => Err(Status::from(EtcdError::Timeout)),
            }
        };
        tokio::time::timeout(FORWARD_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(EtcdError::Timeout.into()))
            .map_err(Self::transport_error)
    }

    /// Keeps the leader's own etcd errors; a failure to reach it (connection refused, reset)
    /// becomes etcd's "request timed out", which is what an etcd follower answers when its
    /// forwarding to the leader fails, and which clients treat as retryable.
    fn transport_error(status: Status) -> Status {
        if status.message().starts_with("etcdserver: ") {
            status
        } else {
            tracing::debug!("forwarding lease call to the leader failed: {status}");
            EtcdError::Timeout.into()
        }
    }

    async fn time_to_live(
        &self,
        server: &EtcdServer,
        req: LeaseTimeToLiveRequest,
    ) -> StatusResult<LeaseTimeToLiveResponse> {
        let mut client = self.leader_client(server).await?;
        let call = async move { client.lease_time_to_live(Self::mark(req)).await };
        match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
            Ok(r) => Ok(r.map_err(Self::transport_error)?.into_inner()),
            Err(_) => Err(EtcdError::Timeout.into()),
        }
    }
}

/// Renews on this member if it is the leader, else on the leader (unless this call was itself
/// forwarded). Ok(0) when the lease does not exist, which is how etcd tells a keep-alive client
/// its lease is gone.
async fn renew(
    server: Arc<EtcdServer>,
    forwarder: Arc<Forwarder>,
    forwarded: bool,
    id: i64,
) -> StatusResult<i64> {
    let deadline = Instant::now() + RENEW_WAIT;
    let mut synced = false;
    loop {
        if !server.is_leader() {
            if forwarded {
                return Err(EtcdError::NotLeader.into());
            }
            return forwarder.renew(&server, id).await;
        }
        match server.lessor.renew(id) {
            Ok(ttl) => return Ok(ttl),
            Err(EtcdError::LeaseNotFound) if !server.lessor.exists(id) => {
                if synced {
                    return Ok(0);
                }
                // The grant may be committed (through another member) but not yet applied
                // here: catch up once before declaring the lease unknown.
                server.read_index().await?;
                synced = true;
                continue;
            }
            // Expired, revocation in flight: wait for it rather than renew a doomed lease.
            Err(EtcdError::LeaseNotFound) if Instant::now() >= deadline => return Ok(0),
            Err(EtcdError::LeaseNotFound) => {}
            // Leader, but its lessor is not promoted yet (the new term's first entry is not
            // applied): wait, since the expiries it holds are stale.
            Err(EtcdError::NotLeader) if Instant::now() >= deadline => {
                return Err(EtcdError::Timeout.into())
            }
            Err(EtcdError::NotLeader) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(RENEW_POLL).await;
    }
}

fn keep_alive_response(server: &EtcdServer, id: i64, ttl: i64) -> LeaseKeepAliveResponse {
    LeaseKeepAliveResponse {
        header: Some(server.header()),
        id,
        ttl,
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = StatusResult<LeaseKeepAliveResponse>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> StatusResult<Response<LeaseGrantResponse>> {
        let caller = crate::auth::Caller::of(&request);
        let mut req = request.into_inner();
        self.server
            .check_quota(crate::quota::lease_grant_cost())
            .await?;
        // Checked here too so a hopeless request costs no raft round; the apply checks it again.
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        let server_chosen = req.id == NO_LEASE;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if server_chosen {
                req.id = self.pick_id();
            }
            let proposal = InternalRaftRequest {
                lease_grant: Some(req),
                ..Default::default()
            };
            match self.server.propose_as(&caller, proposal).await {
                Ok(ApplyResponse::LeaseGrant(resp)) => return Ok(Response::new(resp)),
                Ok(other) => {
                    return Err(EtcdError::Internal(format!(
                        "unexpected apply response to lease grant: {other:?}"
                    ))
                    .into())
                }
                Err(EtcdError::LeaseExist) if server_chosen && attempt < GRANT_ID_ATTEMPTS => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> StatusResult<Response<LeaseRevokeResponse>> {
        let caller = crate::auth::Caller::of(&request);
        let proposal = InternalRaftRequest {
            lease_revoke: Some(request.into_inner()),
            ..Default::default()
        };
        match self.server.propose_as(&caller, proposal).await? {
            ApplyResponse::LeaseRevoke(resp) => Ok(Response::new(resp)),
            other => Err(EtcdError::Internal(format!(
                "unexpected apply response to lease revoke: {other:?}"
            ))
            .into()),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    /// One response per request, each {header, ID, TTL}; TTL 0 when the lease does not exist.
    /// Most renewals are answered at once, in order; one that must wait (lease expiring, grant
    /// not yet applied here, follower forwarding) runs on its own task so it does not hold up
    /// the other leases sharing the stream (clients multiplex all their leases on one stream).
    /// Any other failure ends the stream with that error; clients then open a new one.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> StatusResult<Response<Self::LeaseKeepAliveStream>> {
        let forwarded = request.metadata().contains_key(FORWARDED);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_BUFFER);
        let server = self.server.clone();
        let forwarder = self.forwarder.clone();
        tokio::spawn(async move {
            let waiting = Arc::new(Semaphore::new(MAX_WAITING_PER_STREAM));
            loop {
                let req = tokio::select! {
                    r = inbound.message() => r,
                    // The client went away (or an error ended the stream): stop reading.
                    _ = tx.closed() => break,
                };
                let id = match req {
                    Ok(Some(req)) => req.id,
                    // End of the client's stream, or a transport error: nothing to answer.
                    Ok(None) | Err(_) => break,
                };
                if server.is_leader() {
                    if let Ok(ttl) = server.lessor.renew(id) {
                        let resp = keep_alive_response(&server, id, ttl);
                        if tx.send(Ok(resp)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                }
                let Ok(permit) = waiting.clone().acquire_owned().await else {
                    break;
                };
                let (server, forwarder, tx) = (server.clone(), forwarder.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let item = renew(server.clone(), forwarder, forwarded, id)
                        .await
                        .map(|ttl| keep_alive_response(&server, id, ttl));
                    let _ = tx.send(item).await;
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> StatusResult<Response<LeaseTimeToLiveResponse>> {
        let forwarded = request.metadata().contains_key(FORWARDED);
        let req = request.into_inner();
        if !self.server.is_leader() {
            if forwarded {
                return Err(EtcdError::NotLeader.into());
            }
            let mut resp = self.forwarder.time_to_live(&self.server, req).await?;
            // As etcd: the header is the answering member's, not the leader's.
            resp.header = Some(self.server.header());
            return Ok(Response::new(resp));
        }
        // Linearizable: a lease granted or revoked before this call started is seen as such.
        self.server.read_index().await?;
        let resp = match self.server.lessor.time_to_live(req.id, req.keys) {
            Some((remaining, granted, keys)) => LeaseTimeToLiveResponse {
                header: Some(self.server.header()),
                id: req.id,
                ttl: remaining,
                granted_ttl: granted,
                keys,
            },
            // etcd answers an unknown lease with TTL -1 rather than an error.
            None => LeaseTimeToLiveResponse {
                header: Some(self.server.header()),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    /// Every member knows all leases (they are replicated), so any member answers; ids ascending.
    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> StatusResult<Response<LeaseLeasesResponse>> {
        self.server.read_index().await?;
        let leases = self
            .server
            .lessor
            .leases()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.server.header()),
            leases,
        }))
    }
}
