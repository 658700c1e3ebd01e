//! Outgoing raft traffic: one long-lived gRPC client stream per peer (oxcd's own `oxcdpeer.Peer`
//! protocol, not etcd's rafthttp).
//!
//! The node thread calls [`Transport::send`] between fsyncs, so it only moves messages into a
//! per-peer queue and wakes that peer's stream; it never blocks, allocates per message or
//! encodes. Encoding happens when h2 polls the request body for the next batch, so everything
//! that queued up while the previous batch was on the wire goes out as one `RaftBatch`: the
//! busier the link, the bigger the batches.
//!
//! Each peer has one tokio task that dials the peer's URLs in order, checks with `Probe` that the
//! peer belongs to this cluster and is the member it expects, then keeps one `Send` stream open
//! until it breaks, and reconnects with backoff. While a peer is down its messages are dropped and
//! raft is told (`NodeMsg::Unreachable`) so the leader stops optimistic replication to it; raft
//! retransmits whatever was lost once the peer answers again.
//!
//! A raft snapshot (`MsgSnapshot`) does not go on that stream: a task dials the peer anew and
//! streams the database file the message names with `SendSnapshot`, one snapshot at a time per
//! peer, then reports the outcome to raft (`NodeMsg::ReportSnapshot`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use oxcd_api::oxcdpeer::{peer_client::PeerClient, ProbeRequest, RaftBatch, SnapshotChunk};
use parking_lot::{Mutex, RwLock};
use prost::bytes::Bytes;
use protobuf::{CodedOutputStream, Message as _};
use raft::eraftpb::{Message, MessageType};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::tls::PeerDialer;

use super::node::{NodeMsg, PeerSender};

/// Messages waiting for one peer before new ones are dropped (and the peer reported unreachable).
/// A healthy stream drains the queue every round trip; a full queue means the peer or the link
/// cannot keep up, and raft's flow control must take over.
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// Soft limit on one batch's encoded size: big enough to amortise gRPC framing, small enough that
/// a heartbeat queued behind a burst of appends is not delayed by megabytes. A single larger
/// message still goes out on its own.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Largest batch a member accepts: etcd caps one raft message at 512 MiB (rafthttp's
/// readBytesLimit); a batch is at most one such message plus `MAX_BATCH_BYTES` of others.
pub const MAX_DECODE_BYTES: usize = 512 * 1024 * 1024 + 2 * MAX_BATCH_BYTES;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a connected peer is probed for etcd_network_peer_round_trip_time_seconds.
const RTT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a silently dead link (a partition sends no RST) within a few seconds,
/// comparable to etcd's 5 s stream read timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// A peer that stays down is logged again at this interval, like etcd's prober (30 s).
const LOG_REPEAT: Duration = Duration::from_secs(30);

/// Sends raft messages to the other members. Cheap to clone; the peers' tasks stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    ids: Ids,
    node_tx: Sender<NodeMsg>,
    rt: Handle,
    peers: RwLock<HashMap<u64, Peer>>,
    /// Where the snapshot files that `MsgSnapshot`s name are.
    snap_dir: PathBuf,
    dialer: PeerDialer,
}

#[derive(Clone, Copy)]
struct Ids {
    cluster_id: u64,
    local_id: u64,
}

struct Peer {
    link: Arc<Link>,
    task: JoinHandle<()>,
    urls: Vec<String>,
    /// Held by the task sending a snapshot to this peer, so snapshots go one at a time.
    snap_lock: Arc<tokio::sync::Mutex<()>>,
}

/// What the node thread and a peer's stream share.
struct Link {
    id: u64,
    queue: Mutex<Queue>,
    /// Since when the stream to the peer has been up; None while it is not (etcd's ActiveSince).
    active_since: Mutex<Option<Instant>>,
    /// Wakes the stream's batch source when messages arrive (`notify_one`, which keeps a permit
    /// if the source is busy) and retires old sources on reconnect (`notify_waiters`).
    notify: Notify,
}

struct Queue {
    msgs: Vec<Message>,
    state: LinkState,
    /// Bumped whenever a stream ends, so a batch source of a broken stream that h2 still polls
    /// ends instead of stealing messages meant for the new stream.
    generation: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LinkState {
    /// Dialing for the first time: queue, so the first election's votes are not lost to
    /// start-up order.
    Connecting,
    Active,
    /// Not connected after a failed dial or a broken stream: drop and report unreachable.
    Down,
    /// The peer was removed: everything ends.
    Closed,
}

impl Transport {
    /// `rt` runs the peers' tasks; `node_tx` receives `Unreachable` and `ReportSnapshot`
    /// reports; `snap_dir` holds the snapshot files to send; `dialer` connects to peers.
    pub fn new(
        cluster_id: u64,
        local_id: u64,
        node_tx: Sender<NodeMsg>,
        rt: Handle,
        snap_dir: PathBuf,
        dialer: PeerDialer,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                ids: Ids {
                    cluster_id,
                    local_id,
                },
                node_tx,
                rt,
                peers: RwLock::new(HashMap::new()),
                snap_dir,
                dialer,
            }),
        }
    }

    /// Starts streaming to member `id` at the first of `peer_urls` that answers. Replaces an
    /// existing peer with the same ID (its URLs changed).
    pub fn add_peer(&self, id: u64, peer_urls: Vec<String>) {
        let link = Arc::new(Link {
            id,
            queue: Mutex::new(Queue {
                msgs: Vec::new(),
                state: LinkState::Connecting,
                generation: 0,
            }),
            active_since: Mutex::new(None),
            notify: Notify::new(),
        });
        let task = self.inner.rt.spawn(
            PeerTask {
                link: link.clone(),
                urls: peer_urls.clone(),
                ids: self.inner.ids,
                node_tx: self.inner.node_tx.clone(),
                dialer: self.inner.dialer.clone(),
            }
            .run(),
        );
        let peer = Peer {
            link,
            task,
            urls: peer_urls,
            snap_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        let old = self.inner.peers.write().insert(id, peer);
        if let Some(old) = old {
            old.stop();
        }
    }

    /// How this member dials its peers (for one-off calls such as hash checks and promotions).
    pub fn dialer(&self) -> &PeerDialer {
        &self.inner.dialer
    }

    /// Since when the stream to `id` has been up; None if it is down or `id` is no peer.
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        let peers = self.inner.peers.read();
        let p = peers.get(&id)?;
        let since = *p.link.active_since.lock();
        since
    }

    /// Makes the peers exactly `members` (ID and peer URLs; the local member is skipped):
    /// after a snapshot replaced the member list.
    pub fn sync(&self, members: &[(u64, Vec<String>)]) {
        let local = self.inner.ids.local_id;
        let current: Vec<(u64, Vec<String>)> = self
            .inner
            .peers
            .read()
            .iter()
            .map(|(id, p)| (*id, p.urls.clone()))
            .collect();
        for (id, _) in &current {
            if !members.iter().any(|(m, _)| m == id) {
                self.remove_peer(*id);
            }
        }
        for (id, urls) in members {
            if *id == local {
                continue;
            }
            let same = current.iter().any(|(c, u)| c == id && u == urls);
            if !same {
                self.add_peer(*id, urls.clone());
            }
        }
    }

    /// Stops streaming to member `id` and drops what was queued for it.
    pub fn remove_peer(&self, id: u64) {
        let old = self.inner.peers.write().remove(&id);
        if let Some(old) = old {
            old.stop();
        }
    }

    /// Queues raft messages for their peers. Never blocks: called from the node thread.
    pub fn send(&self, msgs: Vec<Message>) {
        let peers = self.inner.peers.read();
        // raft emits messages mostly grouped by recipient (a broadcast is one per peer), so each
        // run of messages to one peer takes that peer's lock once and wakes its stream once.
        let mut run: Option<Run<'_>> = None;
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let peer = peers.get(&m.to);
                self.send_snapshot(m, peer);
                continue;
            }
            if run.as_ref().is_none_or(|r| r.to != m.to) {
                if let Some(r) = run.take() {
                    r.finish(&self.inner.node_tx);
                }
                run = Some(Run::start(m.to, peers.get(&m.to)));
            }
            if let Some(r) = run.as_mut() {
                r.push(m);
            }
        }
        if let Some(r) = run {
            r.finish(&self.inner.node_tx);
        }
    }

    /// Hands a `MsgSnapshot` to a task that streams its database file to the peer.
    fn send_snapshot(&self, m: Message, peer: Option<&Peer>) {
        let to = m.to;
        let Some(peer) = peer else {
            tracing::debug!("dropping raft snapshot to unknown peer {to:x}");
            let _ = self
                .inner
                .node_tx
                .try_send(NodeMsg::ReportSnapshot(to, false));
            return;
        };
        let sender = SnapshotSender {
            ids: self.inner.ids,
            to,
            urls: peer.urls.clone(),
            snap_dir: self.inner.snap_dir.clone(),
            dialer: self.inner.dialer.clone(),
        };
        let lock = peer.snap_lock.clone();
        let node_tx = self.inner.node_tx.clone();
        self.inner.rt.spawn(async move {
            let _one_at_a_time = lock.lock().await;
            let ok = sender.send(m).await;
            let _ = node_tx.send(NodeMsg::ReportSnapshot(to, ok));
        });
    }
}

impl PeerSender for Transport {
    fn send(&self, msgs: Vec<Message>) {
        Transport::send(self, msgs);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, p) in self.peers.get_mut().drain() {
            p.stop();
        }
    }
}

impl Peer {
    fn stop(self) {
        self.task.abort();
        // The request body is polled by the HTTP/2 connection, not by the task: tell it to end
        // so the stream and the connection close.
        let dropped = {
            let mut q = self.link.queue.lock();
            q.state = LinkState::Closed;
            q.generation += 1;
            std::mem::take(&mut q.msgs)
        };
        self.link.notify.notify_waiters();
        drop(dropped);
    }
}

/// Messages to one peer within one `send` call.
struct Run<'a> {
    to: u64,
    link: Option<&'a Link>,
    queue: Option<parking_lot::MutexGuard<'a, Queue>>,
    queued: bool,
    dropped: bool,
}

impl<'a> Run<'a> {
    fn start(to: u64, peer: Option<&'a Peer>) -> Run<'a> {
        let link = peer.map(|p| &*p.link);
        Run {
            to,
            link,
            queue: link.map(|l| l.queue.lock()),
            queued: false,
            dropped: false,
        }
    }

    fn push(&mut self, m: Message) {
        let Some(q) = self.queue.as_mut() else {
            // raft may talk to a member the transport has not been told about yet (a conf change
            // applied just now); raft retries once the peer is added.
            tracing::debug!("dropping raft message to unknown peer {:x}", self.to);
            self.dropped = true;
            return;
        };
        let open = matches!(q.state, LinkState::Connecting | LinkState::Active);
        if !open || q.msgs.len() >= MAX_QUEUED_MESSAGES {
            self.dropped = true;
        } else {
            q.msgs.push(m);
            self.queued = true;
        }
    }

    fn finish(self, node_tx: &Sender<NodeMsg>) {
        drop(self.queue);
        if self.queued {
            if let Some(l) = self.link {
                l.notify.notify_one();
            }
        }
        if self.dropped {
            crate::metrics::PEER_SENT_FAILURES
                .with_label_values(&[&crate::metrics::peer_label(self.to)])
                .inc();
            // try_send: the node thread must not block on its own inbox.
            let _ = node_tx.try_send(NodeMsg::Unreachable(self.to));
        }
    }
}

/// Bytes of the database file per `SnapshotChunk`.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Streams one snapshot to one peer.
struct SnapshotSender {
    ids: Ids,
    to: u64,
    urls: Vec<String>,
    snap_dir: PathBuf,
    dialer: PeerDialer,
}

impl SnapshotSender {
    /// True once the peer has stored the file and taken the message.
    async fn send(self, m: Message) -> bool {
        let meta = m.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        let peer = format!("{:x}", self.to);
        let start = Instant::now();
        match self.stream(m).await {
            Ok(size) => {
                tracing::info!(
                    "remote-peer-id" = %peer,
                    "snapshot-index" = index,
                    "snapshot-term" = term,
                    bytes = size,
                    size = %super::snapshot::human_size(size),
                    took = ?start.elapsed(),
                    "sent database snapshot"
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "remote-peer-id" = %peer,
                    "snapshot-index" = index,
                    error = %e,
                    "failed to send database snapshot"
                );
                false
            }
        }
    }

    async fn stream(&self, m: Message) -> Result<u64, String> {
        let name = std::str::from_utf8(&m.get_snapshot().data)
            .ok()
            .filter(|n| super::snapshot::parse_file_name(n).is_some())
            .ok_or("the snapshot message names no snapshot file")?
            .to_string();
        let path = self.snap_dir.join(&name);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| format!("stat {}: {e}", path.display()))?
            .len();
        let message = m
            .write_to_bytes()
            .map_err(|e| format!("encoding snapshot message: {e}"))?;
        tracing::info!(
            "remote-peer-id" = %format_args!("{:x}", self.to),
            "snapshot-index" = m.get_snapshot().get_metadata().index,
            bytes = size,
            size = %super::snapshot::human_size(size),
            "sending database snapshot"
        );
        let mut client = self.dial().await?;
        // A read error ends the body early; the peer then refuses the incomplete file and the
        // cause is reported from here.
        let read_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let source = ChunkSource {
            file,
            remaining: size,
            message: Some(message),
            ids: self.ids,
            to: self.to,
            error: read_error.clone(),
        };
        let body = futures::stream::unfold(source, |mut s| async move {
            let chunk = s.next_chunk().await?;
            Some((chunk, s))
        });
        let r = client.send_snapshot(body).await;
        if let Some(e) = read_error.lock().take() {
            return Err(e);
        }
        match r {
            Ok(_) => Ok(size),
            Err(status) => {
                let mut why = status.message().to_string();
                if let Some(cause) = std::error::Error::source(&status) {
                    why.push_str(": ");
                    why.push_str(&error_chain(cause));
                }
                Err(why)
            }
        }
    }

    /// A connection of its own, so the file does not share HTTP/2 flow control with raft traffic.
    /// The peer checks the cluster and member IDs of the first chunk itself.
    async fn dial(&self) -> Result<PeerClient<Channel>, String> {
        let mut last = "no peer URLs".to_string();
        for url in &self.urls {
            match dial(&self.dialer, url, None).await {
                Ok(channel) => return Ok(PeerClient::new(channel)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The request body of one `SendSnapshot` call: the file in chunks, the message in the first.
struct ChunkSource {
    file: tokio::fs::File,
    remaining: u64,
    message: Option<Vec<u8>>,
    ids: Ids,
    to: u64,
    error: Arc<Mutex<Option<String>>>,
}

impl ChunkSource {
    async fn next_chunk(&mut self) -> Option<SnapshotChunk> {
        use tokio::io::AsyncReadExt;
        if self.message.is_none() && self.remaining == 0 {
            return None;
        }
        let n = self.remaining.min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
        let mut data = vec![0u8; n];
        if let Err(e) = self.file.read_exact(&mut data).await {
            *self.error.lock() = Some(format!("reading snapshot file: {e}"));
            return None;
        }
        self.remaining -= n as u64;
        Some(SnapshotChunk {
            cluster_id: self.ids.cluster_id,
            from: self.ids.local_id,
            to: self.to,
            message: self.message.take().unwrap_or_default(),
            data,
            last: self.remaining == 0,
        })
    }
}

/// Why a peer could not be reached.
enum LinkError {
    /// Dialing, probing or streaming failed.
    Io(String),
    /// The peer says this member was removed from the cluster.
    Removed,
    /// The peer answered as another cluster or another member: never send to it.
    Mismatch { cluster_id: u64, member_id: u64 },
}

/// The task that owns one peer's connection.
struct PeerTask {
    link: Arc<Link>,
    urls: Vec<String>,
    ids: Ids,
    node_tx: Sender<NodeMsg>,
    dialer: PeerDialer,
}

impl PeerTask {
    async fn run(self) {
        let peer = format!("{:x}", self.link.id);
        let local = format!("{:x}", self.ids.local_id);
        let mut backoff = MIN_BACKOFF;
        // When a "still unhealthy" line was last logged; None while the peer is healthy.
        let mut last_log: Option<Instant> = None;
        loop {
            let err = match self.connect().await {
                Ok(client) => {
                    backoff = MIN_BACKOFF;
                    let generation = {
                        let mut q = self.link.queue.lock();
                        q.state = LinkState::Active;
                        q.generation
                    };
                    *self.link.active_since.lock() = Some(Instant::now());
                    tracing::info!(
                        "peer-id" = %peer,
                        "local-member-id" = %local,
                        "peer became active"
                    );
                    let err = self.stream(client, generation).await;
                    tracing::warn!(
                        "peer-id" = %peer,
                        "local-member-id" = %local,
                        error = %err,
                        "peer became inactive (message send to peer failed)"
                    );
                    self.mark_down();
                    // The next failed dial says why the peer is gone.
                    last_log = None;
                    None
                }
                Err(e) => {
                    self.mark_down();
                    Some(e)
                }
            };
            if let Some(LinkError::Removed) = err {
                self.exit_removed();
            }
            if let Some(e) = err {
                let due = last_log.is_none_or(|t| t.elapsed() >= LOG_REPEAT);
                if due {
                    last_log = Some(Instant::now());
                    match &e {
                        LinkError::Io(error) => tracing::warn!(
                            "remote-peer-id" = %peer,
                            "local-member-id" = %local,
                            error = %error,
                            "prober detected unhealthy status"
                        ),
                        LinkError::Mismatch {
                            cluster_id,
                            member_id,
                        } if *cluster_id != self.ids.cluster_id => tracing::error!(
                            "remote-peer-id" = %peer,
                            "remote-peer-cluster-id" = %format_args!("{cluster_id:x}"),
                            "remote-peer-member-id" = %format_args!("{member_id:x}"),
                            "local-member-id" = %local,
                            "local-member-cluster-id" = %format_args!("{:x}", self.ids.cluster_id),
                            "request sent was ignored by remote peer due to cluster ID mismatch"
                        ),
                        LinkError::Removed => {}
                        LinkError::Mismatch { member_id, .. } => tracing::error!(
                            "remote-peer-id" = %peer,
                            "remote-peer-member-id" = %format_args!("{member_id:x}"),
                            "local-member-id" = %local,
                            "request sent was ignored by remote peer due to member ID mismatch"
                        ),
                    }
                } else if let LinkError::Io(error) = &e {
                    tracing::debug!("peer {peer} still unreachable: {error}");
                }
                if matches!(e, LinkError::Mismatch { .. }) {
                    // A misconfigured peer will not fix itself within milliseconds.
                    backoff = MAX_BACKOFF;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The peer said this member was removed from the cluster: it stops, as etcd does.
    fn exit_removed(&self) -> ! {
        tracing::error!(
            "remote-peer-id" = %format_args!("{:x}", self.link.id),
            "local-member-id" = %format_args!("{:x}", self.ids.local_id),
            "{}", super::peer_service::REMOVED_TEXT
        );
        crate::server::exit_removed()
    }

    /// Marks the link down, drops what was queued and tells raft.
    fn mark_down(&self) {
        *self.link.active_since.lock() = None;
        let dropped = {
            let mut q = self.link.queue.lock();
            q.state = LinkState::Down;
            q.generation += 1;
            std::mem::take(&mut q.msgs)
        };
        // Retire the batch source of the stream that just ended.
        self.link.notify.notify_waiters();
        let _ = self.node_tx.try_send(NodeMsg::Unreachable(self.link.id));
        drop(dropped);
    }

    /// Dials the peer's URLs in order and probes the first that answers.
    async fn connect(&self) -> Result<PeerClient<Channel>, LinkError> {
        let mut last = LinkError::Io("no peer URLs".to_string());
        for url in &self.urls {
            match self.dial(url).await {
                Ok(client) => return Ok(client),
                Err(e @ (LinkError::Mismatch { .. } | LinkError::Removed)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn dial(&self, url: &str) -> Result<PeerClient<Channel>, LinkError> {
        let io = |e: &dyn std::fmt::Display| LinkError::Io(format!("dial {url}: {e}"));
        let channel = dial(&self.dialer, url, None).await.map_err(LinkError::Io)?;
        let mut client = PeerClient::new(channel).max_decoding_message_size(MAX_DECODE_BYTES);
        let probe = client.probe(ProbeRequest {
            cluster_id: self.ids.cluster_id,
            from: self.ids.local_id,
        });
        let resp = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return Err(io(&status.message())),
            Err(_) => return Err(io(&"probe timed out")),
        };
        if resp.removed {
            return Err(LinkError::Removed);
        }
        if resp.cluster_id != self.ids.cluster_id || resp.member_id != self.link.id {
            return Err(LinkError::Mismatch {
                cluster_id: resp.cluster_id,
                member_id: resp.member_id,
            });
        }
        Ok(client)
    }

    /// Probes the peer every `RTT_PROBE_INTERVAL` while its stream is up, into
    /// etcd_network_peer_round_trip_time_seconds (etcd's prober does the same); never returns.
    async fn measure_rtt(&self, mut client: PeerClient<Channel>) -> std::convert::Infallible {
        let rtt = crate::metrics::PEER_RTT
            .with_label_values(&[&crate::metrics::peer_label(self.link.id)]);
        loop {
            let start = Instant::now();
            let probe = client.probe(ProbeRequest {
                cluster_id: self.ids.cluster_id,
                from: self.ids.local_id,
            });
            if let Ok(Ok(resp)) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                // A member removed while its streams stay up (it had not received the entry
                // removing it, and the leader no longer sends it any) learns it here.
                if resp.get_ref().removed {
                    self.exit_removed();
                }
                rtt.observe(start.elapsed().as_secs_f64());
            }
            tokio::time::sleep(RTT_PROBE_INTERVAL).await;
        }
    }

    /// Runs one `Send` stream until it breaks; returns why.
    async fn stream(&self, mut client: PeerClient<Channel>, generation: u64) -> String {
        let source = BatchSource {
            link: self.link.clone(),
            generation,
            ids: self.ids,
            pending: Vec::new(),
            ends: Vec::new(),
            sent: crate::metrics::PEER_SENT_BYTES
                .with_label_values(&[&crate::metrics::peer_label(self.link.id)]),
        };
        let body = futures::stream::unfold(source, |mut s| async move {
            let batch = s.next_batch().await?;
            Some((batch, s))
        });
        let rtt = self.measure_rtt(client.clone());
        // The body never ends on its own while the link is up, so the call returning at all means
        // the stream is gone.
        let sent = tokio::select! {
            r = client.send(body) => r,
            never = rtt => match never {},
        };
        match sent {
            Ok(_) => "stream closed by remote peer".to_string(),
            Err(status) => {
                let mut why = status.message().to_string();
                // A broken connection shows up as a bare "transport error"; the cause is below.
                if let Some(cause) = std::error::Error::source(&status) {
                    why.push_str(": ");
                    why.push_str(&error_chain(cause));
                }
                why
            }
        }
    }
}

/// Why a request forwarded to another member's peer port failed.
pub enum ForwardError {
    /// The member answered with an error: the client gets it as it is.
    Refused(tonic::Status),
    /// The member could not be reached.
    Io(String),
}

impl ForwardError {
    pub fn into_etcd(self) -> crate::error::EtcdError {
        match self {
            ForwardError::Refused(s) => crate::error::EtcdError::from_remote(&s),
            ForwardError::Io(e) => {
                tracing::warn!("forwarding to the leader failed: {e}");
                crate::error::EtcdError::NoLeader
            }
        }
    }
}

/// Connects to one peer URL with the transport's HTTP/2 settings; `call_timeout` bounds each
/// call on the channel (None for streams). Every connection to a peer port is made here.
pub async fn dial(
    dialer: &PeerDialer,
    url: &str,
    call_timeout: Option<Duration>,
) -> Result<Channel, String> {
    let mut endpoint = PeerDialer::endpoint(url)
        .map_err(|e| format!("dial {url}: {e}"))?
        .connect_timeout(DIAL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if let Some(t) = call_timeout {
        endpoint = endpoint.timeout(t);
    }
    dialer
        .connect(url, endpoint)
        .await
        .map_err(|e| format!("dial {url}: {}", error_chain(&e)))
}

/// A one-off client for a member's peer port.
async fn peer_client(
    dialer: &PeerDialer,
    url: &str,
    timeout: Duration,
) -> Result<PeerClient<Channel>, ForwardError> {
    let channel = dial(dialer, url, Some(timeout))
        .await
        .map_err(ForwardError::Io)?;
    Ok(PeerClient::new(channel).max_decoding_message_size(MAX_DECODE_BYTES))
}

/// Asks the member at `url` (the leader) to promote learner `id`; returns the member list after.
pub async fn promote_at(
    dialer: &PeerDialer,
    url: &str,
    id: u64,
    timeout: Duration,
) -> Result<Vec<crate::membership::Member>, ForwardError> {
    let mut client = peer_client(dialer, url, timeout).await?;
    let resp = client
        .promote(oxcd_api::oxcdpeer::PromoteRequest { member_id: id })
        .await
        .map_err(|s| {
            if s.code() == tonic::Code::Unavailable && s.message().contains("transport") {
                ForwardError::Io(s.message().to_string())
            } else {
                ForwardError::Refused(s)
            }
        })?
        .into_inner();
    serde_json::from_slice(&resp.members).map_err(|e| ForwardError::Io(e.to_string()))
}

/// The cluster as the member at `url` knows it (for a member joining an existing cluster).
pub async fn fetch_cluster(
    dialer: &PeerDialer,
    url: &str,
    timeout: Duration,
) -> Result<crate::membership::ClusterInfo, String> {
    let mut client = peer_client(dialer, url, timeout)
        .await
        .map_err(|e| match e {
            ForwardError::Io(e) => e,
            ForwardError::Refused(s) => s.message().to_string(),
        })?;
    let resp = client
        .members(oxcd_api::oxcdpeer::MembersRequest {})
        .await
        .map_err(|s| format!("{url}: {}", s.message()))?
        .into_inner();
    crate::membership::ClusterInfo::decode(&resp.members).map_err(|e| format!("{e:#}"))
}

/// `Display` of an error and its sources: tonic's transport errors say only "transport error" at
/// the top.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The request body of one `Send` stream: waits for queued messages and encodes them as batches.
struct BatchSource {
    link: Arc<Link>,
    generation: u64,
    ids: Ids,
    /// Messages taken from the queue but not yet sent (a batch hit `MAX_BATCH_BYTES`). Swapped
    /// with the queue's vector, so the two allocations are reused forever.
    pending: Vec<Message>,
    /// Reused scratch: end offset of each message in the batch buffer.
    ends: Vec<usize>,
    /// etcd_network_peer_sent_bytes_total for this peer.
    sent: prometheus::IntCounter,
}

impl BatchSource {
    /// The next batch, or `None` when this stream must end (the link was torn down or removed).
    async fn next_batch(&mut self) -> Option<RaftBatch> {
        loop {
            // Created before looking at the queue so a notification in between is not missed.
            let notified = self.link.notify.notified();
            {
                let mut q = self.link.queue.lock();
                if q.generation != self.generation || q.state == LinkState::Closed {
                    return None;
                }
                if self.pending.is_empty() {
                    std::mem::swap(&mut q.msgs, &mut self.pending);
                }
            }
            if !self.pending.is_empty() {
                drop(notified);
                return Some(self.encode());
            }
            notified.await;
        }
    }

    /// Encodes a prefix of `pending` into one buffer; each message is a slice of it, so a batch
    /// costs one buffer however many messages it carries.
    fn encode(&mut self) -> RaftBatch {
        let mut total = 0;
        let mut n = 0;
        for m in &self.pending {
            // compute_size caches nested sizes for write_to_with_cached_sizes below.
            let size = m.compute_size() as usize;
            if n > 0 && total + size > MAX_BATCH_BYTES {
                break;
            }
            total += size;
            n += 1;
        }
        let mut buf = Vec::with_capacity(total);
        self.ends.clear();
        for m in self.pending.drain(..n) {
            let start = buf.len();
            let mut os = CodedOutputStream::vec(&mut buf);
            let written = m
                .write_to_with_cached_sizes(&mut os)
                .and_then(|()| os.flush());
            drop(os);
            match written {
                Ok(()) => self.ends.push(buf.len()),
                // proto3 messages always encode; should one not, raft retransmits.
                Err(e) => {
                    buf.truncate(start);
                    tracing::warn!("encoding raft message to {:x}: {e}", m.to);
                }
            }
        }
        self.sent.inc_by(buf.len() as u64);
        let buf = Bytes::from(buf);
        let mut start = 0;
        let mut messages = Vec::with_capacity(self.ends.len());
        for &end in &self.ends {
            messages.push(buf.slice(start..end));
            start = end;
        }
        RaftBatch {
            cluster_id: self.ids.cluster_id,
            from: self.ids.local_id,
            to: self.link.id,
            messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::peer_service::{peer_router, PeerService};
    use crossbeam_channel::Receiver;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use raft::eraftpb::Entry;
    use std::net::SocketAddr;
    use tokio::net::TcpListener;

    const CLUSTER: u64 = 0xc1;
    const WAIT: Duration = Duration::from_secs(10);

    /// Serves `router` like the peer listener will; aborting the handle closes every connection.
    fn serve(listener: TcpListener, router: axum::Router) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let svc = TowerToHyperService::new(router.clone());
                conns.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        })
    }

    struct Member {
        id: u64,
        addr: SocketAddr,
        tx: Sender<NodeMsg>,
        rx: Receiver<NodeMsg>,
        server: JoinHandle<()>,
        transport: Transport,
        /// Snap dir of this member: snapshots to send and received ones.
        snap: tempfile::TempDir,
    }

    impl Member {
        async fn start(cluster_id: u64, id: u64) -> Member {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = crossbeam_channel::unbounded();
            let snap = tempfile::tempdir().unwrap();
            let server = serve(
                listener,
                peer_router(PeerService::new(
                    cluster_id,
                    id,
                    tx.clone(),
                    snap.path().to_path_buf(),
                )),
            );
            let transport = Transport::new(
                cluster_id,
                id,
                tx.clone(),
                Handle::current(),
                snap.path().to_path_buf(),
                PeerDialer::plain(),
            );
            Member {
                id,
                addr,
                tx,
                rx,
                server,
                transport,
                snap,
            }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// Takes the peer port down, connections included.
        fn stop_server(&self) {
            self.server.abort();
        }

        async fn restart_server(&mut self, cluster_id: u64) {
            let deadline = Instant::now() + WAIT;
            let listener = loop {
                match TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("rebinding {}: {e}", self.addr),
                }
            };
            self.server = serve(
                listener,
                peer_router(PeerService::new(
                    cluster_id,
                    self.id,
                    self.tx.clone(),
                    self.snap.path().to_path_buf(),
                )),
            );
        }
    }

    impl Drop for Member {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    fn heartbeat(from: u64, to: u64, seq: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = to;
        m.term = 1;
        m.commit = seq;
        m
    }

    fn append(from: u64, to: u64, seq: u64, payload: usize) -> Message {
        let mut m = heartbeat(from, to, seq);
        m.set_msg_type(MessageType::MsgAppend);
        m.entries.push(Entry {
            index: seq,
            term: 1,
            data: Bytes::from(vec![(seq % 251) as u8; payload]),
            ..Default::default()
        });
        m
    }

    /// Next raft message stepped into this member, skipping other node messages.
    async fn next_step(rx: &Receiver<NodeMsg>, within: Duration) -> Option<Message> {
        let deadline = Instant::now() + within;
        loop {
            match rx.try_recv() {
                Ok(NodeMsg::Step(m)) => return Some(*m),
                Ok(_) => {}
                Err(_) if Instant::now() >= deadline => return None,
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    fn drain_unreachable(rx: &Receiver<NodeMsg>, id: u64) -> bool {
        let mut seen = false;
        while let Ok(m) = rx.try_recv() {
            if let NodeMsg::Unreachable(u) = m {
                seen |= u == id;
            }
        }
        seen
    }

    /// Checks that `n` messages numbered `0..n` arrive in order, payloads intact.
    async fn expect_in_order(rx: &Receiver<NodeMsg>, from: u64, n: u64) {
        for seq in 0..n {
            let m = next_step(rx, WAIT)
                .await
                .unwrap_or_else(|| panic!("message {seq} from {from:x} never arrived"));
            assert_eq!((m.from, m.commit), (from, seq));
            if m.get_msg_type() == MessageType::MsgAppend {
                let data = &m.entries[0].data;
                assert!(data.iter().all(|&b| b == (seq % 251) as u8));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_flow_both_ways() {
        let a = Member::start(CLUSTER, 1).await;
        let b = Member::start(CLUSTER, 2).await;
        a.transport.add_peer(2, vec![b.url()]);
        // An unreachable URL first: the transport moves on to the next.
        b.transport
            .add_peer(1, vec!["http://127.0.0.1:1".to_string(), a.url()]);

        // Rounds of many small messages (batched) and a few large appends that exceed one
        // batch's soft limit.
        let mut seq = 0;
        for round in 0..6 {
            let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
            for _ in 0..500 {
                let payload = if round == 5 && seq % 100 == 0 {
                    3 * 1024 * 1024
                } else {
                    16
                };
                to_b.push(append(1, 2, seq, payload));
                to_a.push(heartbeat(2, 1, seq));
                seq += 1;
            }
            a.transport.send(to_b);
            b.transport.send(to_a);
        }
        let (ra, rb) = (a.rx.clone(), b.rx.clone());
        tokio::join!(expect_in_order(&rb, 1, seq), expect_in_order(&ra, 2, seq));
        assert!(!drain_unreachable(&a.rx, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_id_mismatch_is_refused() {
        let b = Member::start(CLUSTER, 2).await;
        let c = Member::start(CLUSTER + 1, 3).await;
        c.transport.add_peer(2, vec![b.url()]);
        let deadline = Instant::now() + WAIT;
        let mut unreachable = false;
        while !unreachable && Instant::now() < deadline {
            c.transport.send(vec![heartbeat(3, 2, 0)]);
            tokio::time::sleep(Duration::from_millis(20)).await;
            unreachable = drain_unreachable(&c.rx, 2);
        }
        assert!(
            unreachable,
            "a peer of another cluster must be reported unreachable"
        );
        assert!(next_step(&b.rx, Duration::from_millis(300)).await.is_none());

        // A member at the right address but with another ID is not sent to either.
        let a = Member::start(CLUSTER, 1).await;
        a.transport.add_peer(9, vec![b.url()]);
        a.transport.send(vec![heartbeat(1, 9, 0)]);
        let deadline = Instant::now() + WAIT;
        while !drain_unreachable(&a.rx, 9) {
            assert!(Instant::now() < deadline, "wrong member ID not detected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(next_step(&b.rx, Duration::from_millis(300)).await.is_none());

        // The receiving side refuses batches for another cluster or member by itself.
        let mut client = PeerClient::connect(b.url()).await.unwrap();
        for (cluster_id, to, what) in [
            (CLUSTER + 1, 2, "cluster ID mismatch"),
            (CLUSTER, 7, "member ID mismatch"),
        ] {
            let batch = RaftBatch {
                cluster_id,
                from: 3,
                to,
                messages: vec![Bytes::from(heartbeat(3, to, 0).write_to_bytes().unwrap())],
            };
            let err = client
                .send(futures::stream::iter([batch]))
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition);
            assert!(err.message().starts_with(what), "{}", err.message());
        }
        assert!(next_step(&b.rx, Duration::from_millis(100)).await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnects_after_peer_restart() {
        let a = Member::start(CLUSTER, 1).await;
        let mut b = Member::start(CLUSTER, 2).await;
        a.transport.add_peer(2, vec![b.url()]);
        a.transport.send(vec![heartbeat(1, 2, 0)]);
        assert_eq!(next_step(&b.rx, WAIT).await.unwrap().commit, 0);

        b.stop_server();
        let deadline = Instant::now() + WAIT;
        while !drain_unreachable(&a.rx, 2) {
            assert!(Instant::now() < deadline, "peer going down not reported");
            a.transport.send(vec![heartbeat(1, 2, 1)]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        b.restart_server(CLUSTER).await;
        // Raft keeps sending heartbeats; once the link is back they arrive again.
        let deadline = Instant::now() + WAIT;
        loop {
            a.transport.send(vec![heartbeat(1, 2, 2)]);
            if let Some(m) = next_step(&b.rx, Duration::from_millis(20)).await {
                if m.commit == 2 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no message after the peer came back"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overflow_snapshot_and_unknown_peers_are_reported() {
        // A peer that accepts TCP but never speaks: its queue fills up.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let a = Member::start(CLUSTER, 1).await;
        a.transport.add_peer(5, vec![url]);
        let msgs = (0..MAX_QUEUED_MESSAGES as u64 + 10)
            .map(|i| heartbeat(1, 5, i))
            .collect();
        a.transport.send(msgs);
        assert!(drain_unreachable(&a.rx, 5));

        a.transport.send(vec![heartbeat(1, 6, 0)]);
        assert!(drain_unreachable(&a.rx, 6));

        let b = Member::start(CLUSTER, 2).await;
        a.transport.add_peer(2, vec![b.url()]);
        // A snapshot whose file is missing fails (raft is told) without holding up messages.
        let snap = snapshot_msg(1, 2, 7, 1000);
        a.transport.send(vec![snap, heartbeat(1, 2, 1)]);
        assert_eq!(next_step(&b.rx, WAIT).await.unwrap().commit, 1);
        assert_eq!(next_report(&a.rx, WAIT).await, Some((2, false)));
        // To an unknown peer, too.
        a.transport.send(vec![snapshot_msg(1, 6, 7, 1000)]);
        assert_eq!(next_report(&a.rx, WAIT).await, Some((6, false)));

        a.transport.remove_peer(2);
        a.transport.send(vec![heartbeat(1, 2, 2)]);
        assert!(drain_unreachable(&a.rx, 2));
        assert!(next_step(&b.rx, Duration::from_millis(200)).await.is_none());
        drop(silent);
    }

    fn snapshot_msg(from: u64, to: u64, term: u64, index: u64) -> Message {
        let mut m = heartbeat(from, to, 0);
        m.set_msg_type(MessageType::MsgSnapshot);
        let snap = m.mut_snapshot();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.data = crate::raft::snapshot::file_name(term, index)
            .into_bytes()
            .into();
        m
    }

    /// Next snapshot report, skipping other node messages.
    async fn next_report(rx: &Receiver<NodeMsg>, within: Duration) -> Option<(u64, bool)> {
        let deadline = Instant::now() + within;
        loop {
            match rx.try_recv() {
                Ok(NodeMsg::ReportSnapshot(id, ok)) => return Some((id, ok)),
                Ok(_) => {}
                Err(_) if Instant::now() >= deadline => return None,
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_file_is_streamed_then_stepped() {
        let a = Member::start(CLUSTER, 1).await;
        let b = Member::start(CLUSTER, 2).await;
        a.transport.add_peer(2, vec![b.url()]);
        // Several chunks and a partial last one.
        let body: Vec<u8> = (0..(2 * SNAPSHOT_CHUNK_BYTES + 12345))
            .map(|i| (i % 253) as u8)
            .collect();
        let name = crate::raft::snapshot::file_name(3, 4242);
        std::fs::write(a.snap.path().join(&name), &body).unwrap();
        a.transport
            .send(vec![heartbeat(1, 2, 0), snapshot_msg(1, 2, 3, 4242)]);
        // The heartbeat is not held up; the snapshot message arrives once its file is stored.
        assert_eq!(next_step(&b.rx, WAIT).await.unwrap().commit, 0);
        let m = next_step(&b.rx, WAIT).await.expect("snapshot message");
        assert_eq!(m.get_msg_type(), MessageType::MsgSnapshot);
        assert_eq!(m.get_snapshot().get_metadata().index, 4242);
        assert_eq!(std::fs::read(b.snap.path().join(&name)).unwrap(), body);
        assert_eq!(next_report(&a.rx, WAIT).await, Some((2, true)));
        let leftovers: Vec<_> = std::fs::read_dir(b.snap.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A snapshot message on the raft stream is refused: its file would be missing.
        let mut client = PeerClient::connect(b.url()).await.unwrap();
        let batch = RaftBatch {
            cluster_id: CLUSTER,
            from: 1,
            to: 2,
            messages: vec![Bytes::from(
                snapshot_msg(1, 2, 3, 4243).write_to_bytes().unwrap(),
            )],
        };
        let err = client
            .send(futures::stream::iter([batch]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        // A snapshot for another cluster is refused before anything is written.
        let chunk = SnapshotChunk {
            cluster_id: CLUSTER + 1,
            from: 1,
            to: 2,
            message: snapshot_msg(1, 2, 3, 4244).write_to_bytes().unwrap(),
            data: vec![1, 2, 3],
            last: true,
        };
        let err = client
            .send_snapshot(futures::stream::iter([chunk]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        // An incomplete one leaves nothing behind.
        let chunk = SnapshotChunk {
            cluster_id: CLUSTER,
            from: 1,
            to: 2,
            message: snapshot_msg(1, 2, 3, 4245).write_to_bytes().unwrap(),
            data: vec![1, 2, 3],
            last: false,
        };
        assert!(client
            .send_snapshot(futures::stream::iter([chunk]))
            .await
            .is_err());
        assert!(next_step(&b.rx, Duration::from_millis(200)).await.is_none());
        let names: Vec<String> = std::fs::read_dir(b.snap.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![name]);
    }
}
