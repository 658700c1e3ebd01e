//! The Watch service: one bidirectional stream per call, any number of watchers on it.
//!
//! Each call gets a task that owns a [`WatchStream`] of the hub and multiplexes three things:
//! requests from the client (create / cancel / progress), responses the stream produces, and
//! the client going away. Responses go out through a small channel; when the client reads
//! slowly the task waits on it, the hub's channel for this stream fills, and its watchers fall
//! back to catching up from the store — writers and other streams never wait for it.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::{
    watch_request::RequestUnion, watch_server::Watch, WatchRequest, WatchResponse,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::EtcdError;
use crate::mvcc::watch_hub::{WatchOutput, WatchStream};
use crate::server::EtcdServer;

/// Responses buffered towards the transport per stream (etcd's ctrlStream holds 16).
const OUT_BUFFER: usize = 16;
/// etcd fragments watch responses above --max-request-bytes plus this gRPC allowance.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's maxNoLeaderCnt: a stream that requires a leader is ended after this many election
/// timeouts without one (reconnecting costs more than rejecting new streams, so it waits).
const MAX_NO_LEADER_CHECKS: u32 = 3;

pub struct WatchService {
    server: Arc<EtcdServer>,
}

impl WatchService {
    pub fn new(server: Arc<EtcdServer>) -> WatchService {
        WatchService { server }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // clientv3.WithRequireLeader (etcdctl watch uses it) sets this: such a stream is refused
        // while the member has no leader, and ended if it loses the leader for good.
        let require_leader = request
            .metadata()
            .get("hasleader")
            .and_then(|v| v.to_str().ok())
            == Some("true");
        if require_leader && self.server.raft.leader() == 0 {
            return Err(EtcdError::NoLeader.into());
        }
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        let session = Session {
            caller: crate::auth::Caller::of(&request),
            require_leader,
            max_bytes: self.server.cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES,
            stream: self.server.watch_hub.open_stream(),
            server: self.server.clone(),
            tx,
        };
        tokio::spawn(session.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Session {
    /// Who opened the stream: each watch it creates is checked for read access.
    caller: crate::auth::Caller,
    require_leader: bool,
    server: Arc<EtcdServer>,
    stream: WatchStream,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    max_bytes: usize,
}

/// The client is gone; stop serving the stream.
struct Gone;

impl Session {
    async fn run(mut self, mut requests: Streaming<WatchRequest>) {
        let mut receiving = true;
        let election = Duration::from_millis(self.server.cfg.election_timeout_ms.max(1));
        let mut leader_check = tokio::time::interval_at(Instant::now() + election, election);
        let mut no_leader = 0;
        loop {
            let step = tokio::select! {
                _ = leader_check.tick(), if self.require_leader => {
                    if self.server.raft.leader() == 0 {
                        no_leader += 1;
                    } else {
                        no_leader = 0;
                    }
                    if no_leader >= MAX_NO_LEADER_CHECKS {
                        let _ = self.tx.send(Err(EtcdError::NoLeader.into())).await;
                        break;
                    }
                    Ok(())
                }
                req = requests.message(), if receiving => match req {
                    Ok(Some(req)) => self.on_request(req).await,
                    // The client closed its side: like etcd, keep sending until it goes away.
                    Ok(None) => {
                        receiving = false;
                        Ok(())
                    }
                    Err(_) => Err(Gone),
                },
                out = self.stream.next() => self.on_output(out).await,
                _ = self.tx.closed() => Err(Gone),
            };
            if step.is_err() {
                break;
            }
        }
        // Dropping `self.stream` removes every watcher of this stream from the hub.
    }

    async fn check_read(&self, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        let who = self.server.auth_info(&self.caller).await?;
        self.server.auth.check_range(who.as_ref(), key, range_end)
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Gone> {
        self.tx.send(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn on_request(&mut self, req: WatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                if let Err(e) = self.check_read(&c.key, &c.range_end).await {
                    // Refused watches get id -1 and the error in grpc-go's words, as in etcd.
                    let resp = WatchResponse {
                        header: Some(self.server.header()),
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: crate::error::grpc_go_text(&e.into()),
                        ..Default::default()
                    };
                    return self.send(resp).await;
                }
                let created = self.stream.create(&c);
                let resp = WatchResponse {
                    header: Some(self.server.header_at(created.revision)),
                    watch_id: created.watch_id,
                    created: true,
                    canceled: created.canceled,
                    cancel_reason: created.cancel_reason,
                    ..Default::default()
                };
                self.send(resp).await
            }
            Some(RequestUnion::CancelRequest(c)) => match self.stream.cancel(c.watch_id) {
                Some(rev) => {
                    let resp = WatchResponse {
                        header: Some(self.server.header_at(rev)),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await
                }
                // etcd answers nothing for an id it does not know.
                None => Ok(()),
            },
            Some(RequestUnion::ProgressRequest(_)) => {
                self.stream.request_progress();
                Ok(())
            }
            // etcd ignores an empty request rather than ending the stream.
            None => Ok(()),
        }
    }

    async fn on_output(&mut self, out: WatchOutput) -> Result<(), Gone> {
        match out {
            WatchOutput::Events {
                watch_id,
                revision,
                events,
                fragment,
            } => {
                let resp = WatchResponse {
                    header: Some(self.server.header_at(revision)),
                    watch_id,
                    events,
                    ..Default::default()
                };
                if fragment {
                    self.send_fragments(resp).await
                } else {
                    self.send(resp).await
                }
            }
            WatchOutput::Progress { watch_id, revision } => {
                let resp = WatchResponse {
                    header: Some(self.server.header_at(revision)),
                    watch_id,
                    ..Default::default()
                };
                self.send(resp).await
            }
            WatchOutput::Canceled {
                watch_id,
                compact_revision,
                reason,
            } => {
                // etcd's compaction notice carries header revision 0 and no reason text; the
                // client derives "required revision has been compacted" from compact_revision.
                let resp = WatchResponse {
                    header: Some(self.server.header_at(0)),
                    watch_id,
                    canceled: true,
                    compact_revision,
                    cancel_reason: reason,
                    ..Default::default()
                };
                self.send(resp).await
            }
        }
    }

    /// etcd's `sendFragments`: responses of at least `max_bytes` with two or more events go out
    /// in pieces, each as large as fits (at least one event), all but the last marked fragment.
    async fn send_fragments(&self, resp: WatchResponse) -> Result<(), Gone> {
        for part in fragment(resp, self.max_bytes) {
            self.send(part).await?;
        }
        Ok(())
    }
}

/// Encoded size of one element of the repeated `events` field (tag 11, length-delimited).
fn event_field_len(ev: &oxcd_api::mvccpb::Event) -> usize {
    let n = ev.encoded_len();
    1 + prost::length_delimiter_len(n) + n
}

fn fragment(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.events.len() < 2 || resp.encoded_len() < max_bytes {
        return vec![resp];
    }
    let mut rest = resp.events.into_iter().peekable();
    let base = WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..resp
    };
    let base_len = base.encoded_len();
    let mut parts = Vec::new();
    while rest.peek().is_some() {
        let mut part = base.clone();
        let mut size = base_len;
        while let Some(ev) = rest.peek() {
            let n = event_field_len(ev);
            // Always at least one event per part; stop before the one that reaches the limit.
            if !part.events.is_empty() && size + n >= max_bytes {
                break;
            }
            size += n;
            part.events.push(rest.next().expect("peeked"));
        }
        if rest.peek().is_none() {
            part.fragment = false;
        }
        parts.push(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::mvccpb::{Event, KeyValue};

    fn ev(key: &str, size: usize, rev: i64) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: key.into(),
                value: vec![b'x'; size],
                mod_revision: rev,
                create_revision: rev,
                version: 1,
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_like_etcd() {
        // Four 700 kB events against etcd's default limit (1.5 MiB + 512 KiB): etcd 3.4 sent
        // two responses of two events each, the first marked fragment.
        let resp = WatchResponse {
            watch_id: 3,
            events: (0..4).map(|i| ev("g", 700_000, 15 + i)).collect(),
            ..Default::default()
        };
        let parts = fragment(resp, 1_572_864 + GRPC_OVERHEAD_BYTES);
        let shape: Vec<(usize, bool, i64)> = parts
            .iter()
            .map(|p| (p.events.len(), p.fragment, p.watch_id))
            .collect();
        assert_eq!(shape, vec![(2, true, 3), (2, false, 3)]);

        // Small or single-event responses are never split.
        let one = WatchResponse {
            events: vec![ev("a", 5_000_000, 2)],
            ..Default::default()
        };
        assert_eq!(fragment(one, 1000).len(), 1);
        let small = WatchResponse {
            events: vec![ev("a", 10, 2), ev("b", 10, 2)],
            ..Default::default()
        };
        let parts = fragment(small, 1000);
        assert_eq!(parts.len(), 1);
        assert!(!parts[0].fragment);

        // Every part holds at least one event, even if that event alone is over the limit.
        let big = WatchResponse {
            events: vec![ev("a", 3000, 2), ev("b", 3000, 2), ev("c", 10, 2)],
            ..Default::default()
        };
        let shape: Vec<(usize, bool)> = fragment(big, 1000)
            .iter()
            .map(|p| (p.events.len(), p.fragment))
            .collect();
        assert_eq!(shape, vec![(1, true), (1, true), (1, false)]);
    }
}
