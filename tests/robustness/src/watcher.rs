//! Watchers: every message of every watch stream recorded as it arrives.
//!
//! [`follow`] keeps one watch alive across member failures, reopening it on another member from
//! the revision after the last event it saw, as etcd's clients do; the all-keys watcher from
//! revision 1 is one of these and gives the checker the full event log. [`random_watches`] opens
//! short-lived watches on one key or on every key, from now or from a recent (maybe compacted)
//! revision.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use oxcd_api::etcdserverpb as pb;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::client::{header_revision, kv_of, MemberClient, REQUEST_TIMEOUT};
use crate::history::{Event, EventKind, WatchResponse, WatchStream};
use crate::recorder::Recorder;
use crate::traffic::{key, KEYS_END, KEY_PREFIX};

/// How often a waiting watcher looks at its stop flag and at whether it fell behind.
const TICK: Duration = Duration::from_millis(250);
/// A watcher that got nothing for this long while clients saw newer revisions reconnects
/// elsewhere (its member may be paused or cut off).
const STALL: Duration = Duration::from_secs(3);

/// What one watcher watches.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub watcher: u32,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// 0: from now.
    pub start_revision: i64,
    pub prev_kv: bool,
    /// How long one stream lives before the watcher closes it (None: until it breaks).
    pub lifetime: Option<Duration>,
}

/// How a stream ended.
pub struct Ended {
    pub last_event: i64,
    pub compacted: bool,
}

/// Keeps `spec` watched until `stop`, moving to the next member whenever a stream breaks or
/// stalls, and resuming from the revision after the last event seen. `progress` gets the last
/// event revision seen.
pub async fn follow(
    spec: WatchSpec,
    members: Vec<MemberClient>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    progress: Option<Arc<AtomicI64>>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut member = rng.random_range(0..members.len());
    let mut next = spec.start_revision;
    while !stop.load(Ordering::SeqCst) {
        let ended = run_stream(
            &members[member],
            &spec,
            next,
            &recorder,
            &stop,
            None,
            progress.as_deref(),
        )
        .await;
        if ended.last_event > 0 {
            next = ended.last_event + 1;
        }
        if ended.compacted {
            // Only the harness compacts, never past this watcher: a compacted answer here is
            // itself an anomaly the checker reports (a gap); carry on from now.
            next = 0;
        }
        member = (member + 1) % members.len();
        if !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Short watches on a random key or on every key, from now or from a recent revision, one
/// after another until `stop`.
pub async fn random_watches(
    watcher: u32,
    keys: usize,
    members: Vec<MemberClient>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::SeqCst) {
        let (k, end) = if rng.random_bool(0.5) {
            (key(rng.random_range(0..keys)), Vec::new())
        } else {
            (KEY_PREFIX.as_bytes().to_vec(), KEYS_END.to_vec())
        };
        let start = if rng.random_bool(0.5) {
            0
        } else {
            (recorder.max_revision() - rng.random_range(0..100)).max(1)
        };
        let spec = WatchSpec {
            watcher,
            key: k,
            range_end: end,
            start_revision: start,
            prev_kv: rng.random_bool(0.5),
            lifetime: Some(Duration::from_millis(rng.random_range(500..4000))),
        };
        let member = &members[rng.random_range(0..members.len())];
        let deadline = spec.lifetime.map(|l| Instant::now() + l);
        run_stream(member, &spec, start, &recorder, &stop, deadline, None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One watch stream on `member` from `start`, recorded whole when it ends (broken, canceled,
/// stalled, past `deadline`, or stopped). `progress` gets the revision of every event as it
/// arrives.
pub async fn run_stream(
    member: &MemberClient,
    spec: &WatchSpec,
    start: i64,
    recorder: &Recorder,
    stop: &AtomicBool,
    deadline: Option<Instant>,
    progress: Option<&AtomicI64>,
) -> Ended {
    let mut record = WatchStream {
        watcher: spec.watcher,
        member: member.member,
        key: spec.key.clone(),
        range_end: spec.range_end.clone(),
        start_revision: start,
        prev_kv: spec.prev_kv,
        call: recorder.now(),
        responses: Vec::new(),
        error: None,
    };
    let mut ended = Ended {
        last_event: 0,
        compacted: false,
    };
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: spec.key.clone(),
                range_end: spec.range_end.clone(),
                start_revision: start,
                prev_kv: spec.prev_kv,
                ..Default::default()
            },
        )),
    };
    // The request side stays open: a closed request stream ends the watch on the server.
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let opened = tokio::time::timeout(
        REQUEST_TIMEOUT,
        WatchClient::new(member.channel()).watch(requests),
    )
    .await;
    let mut stream = match opened {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            record.error = Some(format!("{:?}: {}", status.code(), status.message()));
            recorder.push_watch(record);
            return ended;
        }
        Err(_) => {
            record.error = Some("timeout opening the stream".to_string());
            recorder.push_watch(record);
            return ended;
        }
    };
    let mut idle = Duration::ZERO;
    let mut seen = 0i64;
    loop {
        if stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match tokio::time::timeout(TICK, stream.message()).await {
            Err(_) => {
                idle += TICK;
                if idle >= STALL && recorder.max_revision() > seen.max(ended.last_event) {
                    record.error =
                        Some("stalled: no event while clients saw newer revisions".into());
                    break;
                }
            }
            Ok(Ok(Some(r))) => {
                idle = Duration::ZERO;
                let response = watch_response(recorder.now(), r);
                seen = seen.max(response.revision);
                if let Some(last) = response.events.last() {
                    ended.last_event = last.kv.mod_revision;
                    if let Some(p) = progress {
                        p.fetch_max(last.kv.mod_revision, Ordering::SeqCst);
                    }
                }
                let canceled = response.canceled;
                ended.compacted |= response.compact_revision != 0;
                record.responses.push(response);
                if canceled {
                    break;
                }
            }
            Ok(Ok(None)) => {
                record.error = Some("stream closed by the server".to_string());
                break;
            }
            Ok(Err(status)) => {
                record.error = Some(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        }
    }
    recorder.push_watch(record);
    ended
}

fn watch_response(time: u64, r: pb::WatchResponse) -> WatchResponse {
    WatchResponse {
        time,
        revision: header_revision(&r.header),
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        events: r
            .events
            .into_iter()
            .map(|e| Event {
                kind: if e.r#type == 1 {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                kv: kv_of(e.kv.unwrap_or_default()),
                prev_kv: e.prev_kv.map(kv_of),
            })
            .collect(),
    }
}
