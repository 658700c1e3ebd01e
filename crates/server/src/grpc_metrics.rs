//! go-grpc-prometheus's server metrics (`grpc_server_*`) and etcd's client gRPC byte counters,
//! counted by a middleware around the gRPC routes.
//!
//! Every known method's series exist from the start with zero values, as grpc-prometheus
//! pre-registers them. A request costs a map lookup of its path and atomic increments: the
//! counters of each (method, code) pair are resolved once. `grpc_server_handling_seconds` exists
//! only with `--metrics extensive`, as in etcd.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use prometheus::{
    register_histogram_vec, register_int_counter_vec, Histogram, HistogramVec, IntCounter,
    IntCounterVec,
};

/// (service, method, grpc_type) of every method served on the client port.
const METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.KV", "Range", "unary"),
    ("etcdserverpb.KV", "Put", "unary"),
    ("etcdserverpb.KV", "DeleteRange", "unary"),
    ("etcdserverpb.KV", "Txn", "unary"),
    ("etcdserverpb.KV", "Compact", "unary"),
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseGrant", "unary"),
    ("etcdserverpb.Lease", "LeaseRevoke", "unary"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseTimeToLive", "unary"),
    ("etcdserverpb.Lease", "LeaseLeases", "unary"),
    ("etcdserverpb.Cluster", "MemberAdd", "unary"),
    ("etcdserverpb.Cluster", "MemberRemove", "unary"),
    ("etcdserverpb.Cluster", "MemberUpdate", "unary"),
    ("etcdserverpb.Cluster", "MemberList", "unary"),
    ("etcdserverpb.Cluster", "MemberPromote", "unary"),
    ("etcdserverpb.Maintenance", "Alarm", "unary"),
    ("etcdserverpb.Maintenance", "Status", "unary"),
    ("etcdserverpb.Maintenance", "Defragment", "unary"),
    ("etcdserverpb.Maintenance", "Hash", "unary"),
    ("etcdserverpb.Maintenance", "HashKV", "unary"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("etcdserverpb.Maintenance", "MoveLeader", "unary"),
    ("etcdserverpb.Auth", "AuthEnable", "unary"),
    ("etcdserverpb.Auth", "AuthDisable", "unary"),
    ("etcdserverpb.Auth", "Authenticate", "unary"),
    ("etcdserverpb.Auth", "UserAdd", "unary"),
    ("etcdserverpb.Auth", "UserGet", "unary"),
    ("etcdserverpb.Auth", "UserList", "unary"),
    ("etcdserverpb.Auth", "UserDelete", "unary"),
    ("etcdserverpb.Auth", "UserChangePassword", "unary"),
    ("etcdserverpb.Auth", "UserGrantRole", "unary"),
    ("etcdserverpb.Auth", "UserRevokeRole", "unary"),
    ("etcdserverpb.Auth", "RoleAdd", "unary"),
    ("etcdserverpb.Auth", "RoleGet", "unary"),
    ("etcdserverpb.Auth", "RoleList", "unary"),
    ("etcdserverpb.Auth", "RoleDelete", "unary"),
    ("etcdserverpb.Auth", "RoleGrantPermission", "unary"),
    ("etcdserverpb.Auth", "RoleRevokePermission", "unary"),
    ("grpc.health.v1.Health", "Check", "unary"),
    ("grpc.health.v1.Health", "Watch", "server_stream"),
    ("v3electionpb.Election", "Campaign", "unary"),
    ("v3electionpb.Election", "Proclaim", "unary"),
    ("v3electionpb.Election", "Leader", "unary"),
    ("v3electionpb.Election", "Observe", "server_stream"),
    ("v3electionpb.Election", "Resign", "unary"),
    ("v3lockpb.Lock", "Lock", "unary"),
    ("v3lockpb.Lock", "Unlock", "unary"),
];

/// gRPC status codes by number, as grpc-go names them.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// A counter by (grpc_type, grpc_service, grpc_method).
macro_rules! method_counter {
    ($name:ident, $metric:literal, $help:literal) => {
        static $name: LazyLock<IntCounterVec> = LazyLock::new(|| {
            register_int_counter_vec!(
                $metric,
                $help,
                &["grpc_type", "grpc_service", "grpc_method"]
            )
            .expect("metric registers once")
        });
    };
}

static EXTENSIVE: AtomicBool = AtomicBool::new(false);

/// `--metrics extensive`: adds `grpc_server_handling_seconds`. Call before the first request.
pub fn set_extensive(on: bool) {
    EXTENSIVE.store(on, Ordering::Relaxed);
}

method_counter!(
    STARTED,
    "grpc_server_started_total",
    "Total number of RPCs started on the server."
);
static HANDLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grpc_server_handled_total",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        &["grpc_type", "grpc_service", "grpc_method", "grpc_code"]
    )
    .expect("metric registers once")
});
method_counter!(
    MSG_RECEIVED,
    "grpc_server_msg_received_total",
    "Total number of RPC stream messages received on the server."
);
method_counter!(
    MSG_SENT,
    "grpc_server_msg_sent_total",
    "Total number of gRPC stream messages sent by the server."
);
static HANDLING: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "grpc_server_handling_seconds",
        "Histogram of response latency (seconds) of gRPC that had been application-level \
         handled by the server.",
        &["grpc_type", "grpc_service", "grpc_method"],
        prometheus::DEFAULT_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

/// One method's series, resolved once.
struct Series {
    started: IntCounter,
    msg_received: IntCounter,
    msg_sent: IntCounter,
    handled: Vec<IntCounter>,
    handling: Option<Histogram>,
}

struct Table {
    by_path: HashMap<String, usize>,
    series: Vec<Series>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let extensive = EXTENSIVE.load(Ordering::Relaxed);
    let mut by_path = HashMap::new();
    let mut series = Vec::new();
    for (i, &(service, method, kind)) in METHODS.iter().enumerate() {
        by_path.insert(format!("/{service}/{method}"), i);
        let l = [kind, service, method];
        series.push(Series {
            started: STARTED.with_label_values(&l),
            msg_received: MSG_RECEIVED.with_label_values(&l),
            msg_sent: MSG_SENT.with_label_values(&l),
            handled: CODES
                .iter()
                .map(|c| HANDLED.with_label_values(&[kind, service, method, c]))
                .collect(),
            handling: extensive.then(|| HANDLING.with_label_values(&l)),
        });
    }
    Table { by_path, series }
});

/// Registers every method's series so they are listed from the first scrape.
pub fn init() {
    LazyLock::force(&TABLE);
}

/// The middleware: counts the call, its messages both ways, their bytes and its final code.
pub async fn track(req: Request, next: Next) -> Response {
    let Some(&i) = TABLE.by_path.get(req.uri().path()) else {
        return next.run(req).await;
    };
    let series = &TABLE.series[i];
    series.started.inc();
    let start = Instant::now();
    let req = req.map(|b| {
        Body::new(Counted {
            inner: b,
            framer: Framer::default(),
            msgs: &series.msg_received,
            bytes: &crate::metrics::CLIENT_GRPC_RECEIVED_BYTES,
            end: None,
        })
    });
    let resp = next.run(req).await;
    // A trailers-only answer (an error before any message) carries the status in its headers.
    let code = status_code(resp.headers());
    let end = End {
        series,
        start,
        code,
        done: false,
    };
    resp.map(|b| {
        Body::new(Counted {
            inner: b,
            framer: Framer::default(),
            msgs: &series.msg_sent,
            bytes: &crate::metrics::CLIENT_GRPC_SENT_BYTES,
            end: Some(end),
        })
    })
}

fn status_code(h: &http::HeaderMap) -> Option<usize> {
    let v = h.get("grpc-status")?.to_str().ok()?.parse::<usize>().ok()?;
    Some(if v < CODES.len() { v } else { UNKNOWN })
}

/// Records the call's completion once: at the end of the response, or when it is dropped (the
/// client went away: Canceled, as grpc-go reports it).
struct End {
    series: &'static Series,
    start: Instant,
    code: Option<usize>,
    done: bool,
}

impl End {
    fn finish(&mut self, code: usize) {
        if self.done {
            return;
        }
        self.done = true;
        self.series.handled[code].inc();
        if let Some(h) = &self.series.handling {
            h.observe(self.start.elapsed().as_secs_f64());
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(CANCELED);
        self.finish(code);
    }
}

/// Splits a gRPC body into length-prefixed messages as its bytes go by.
#[derive(Default)]
struct Framer {
    /// Bytes of the 5-byte prefix seen so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl Framer {
    /// Returns (messages started, payload bytes) in `data`.
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut msgs, mut payload) = (0, 0);
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                payload += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                self.header_len = 0;
                msgs += 1;
                let h = &self.header;
                self.remaining = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
            }
        }
        (msgs, payload)
    }
}

struct Counted {
    inner: Body,
    framer: Framer,
    msgs: &'static IntCounter,
    bytes: &'static IntCounter,
    end: Option<End>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let (msgs, payload) = this.framer.feed(data);
                    if msgs > 0 {
                        this.msgs.inc_by(msgs);
                    }
                    if payload > 0 {
                        this.bytes.inc_by(payload);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(end) = &mut this.end {
                        if let Some(code) = status_code(trailers) {
                            end.code = Some(code);
                        }
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(end) = &mut this.end {
                    // A body that ends without a status is an error in gRPC.
                    let code = end.code.unwrap_or(UNKNOWN);
                    end.finish(code);
                }
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::Framer;

    #[test]
    fn framer_counts_messages_split_anywhere() {
        let mut body = vec![0, 0, 0, 0, 3, b'a', b'b', b'c'];
        body.extend_from_slice(&[0, 0, 0, 0, 0]);
        body.extend_from_slice(&[0, 0, 0, 0, 1, b'z']);
        for split in 0..body.len() {
            let mut f = Framer::default();
            let (m1, p1) = f.feed(&body[..split]);
            let (m2, p2) = f.feed(&body[split..]);
            assert_eq!((m1 + m2, p1 + p2), (3, 4), "split at {split}");
        }
    }
}
