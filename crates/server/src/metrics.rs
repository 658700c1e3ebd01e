//! Prometheus metrics under etcd's names, so existing dashboards and alerts work unchanged.
//!
//! Counters and histograms are updated where things happen; gauges that mirror server state are
//! refreshed when `/metrics` is scraped, which costs nothing between scrapes.

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, register_counter, register_gauge, register_gauge_vec, register_histogram,
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    Counter, Gauge, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
};

use crate::server::EtcdServer;

macro_rules! gauge {
    ($name:ident, $metric:literal, $help:literal) => {
        pub static $name: LazyLock<IntGauge> =
            LazyLock::new(|| register_int_gauge!($metric, $help).expect("metric registers once"));
    };
}

macro_rules! counter {
    ($name:ident, $metric:literal, $help:literal) => {
        pub static $name: LazyLock<IntCounter> =
            LazyLock::new(|| register_int_counter!($metric, $help).expect("metric registers once"));
    };
}

macro_rules! counter_vec {
    ($name:ident, $metric:literal, $help:literal, $label:literal) => {
        pub static $name: LazyLock<IntCounterVec> = LazyLock::new(|| {
            register_int_counter_vec!($metric, $help, &[$label]).expect("metric registers once")
        });
    };
}

/// A histogram with exponential buckets: `start, factor, count`, as etcd declares them.
macro_rules! histogram {
    ($name:ident, $metric:literal, $help:literal, exponential_buckets($($b:expr),*)) => {
        pub static $name: LazyLock<Histogram> = LazyLock::new(|| {
            let buckets = exponential_buckets($($b),*).expect("valid buckets");
            register_histogram!($metric, $help, buckets).expect("metric registers once")
        });
    };
}

gauge!(
    HAS_LEADER,
    "etcd_server_has_leader",
    "Whether or not a leader exists. 1 is existence, 0 is not."
);
gauge!(
    IS_LEADER,
    "etcd_server_is_leader",
    "Whether or not this member is a leader. 1 if is, 0 otherwise."
);
gauge!(
    PROPOSALS_COMMITTED,
    "etcd_server_proposals_committed_total",
    "The total number of consensus proposals committed."
);
gauge!(
    PROPOSALS_APPLIED,
    "etcd_server_proposals_applied_total",
    "The total number of consensus proposals applied."
);
gauge!(
    DB_TOTAL_SIZE,
    "etcd_mvcc_db_total_size_in_bytes",
    "Total size of the underlying database physically allocated in bytes."
);
gauge!(
    DB_IN_USE_SIZE,
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "Total size of the underlying database logically in use in bytes."
);
gauge!(
    KEYS_TOTAL,
    "etcd_debugging_mvcc_keys_total",
    "Total number of keys."
);
gauge!(
    CURRENT_REVISION,
    "etcd_debugging_mvcc_current_revision",
    "The current revision of store."
);
gauge!(
    COMPACT_REVISION,
    "etcd_debugging_mvcc_compact_revision",
    "The revision of the last compaction in store."
);
gauge!(
    QUOTA_BACKEND_BYTES,
    "etcd_server_quota_backend_bytes",
    "Current backend storage quota size in bytes."
);

counter!(
    LEADER_CHANGES,
    "etcd_server_leader_changes_seen_total",
    "The number of leader changes seen."
);

counter!(
    PROPOSALS_FAILED,
    "etcd_server_proposals_failed_total",
    "The total number of failed proposals seen."
);

histogram!(
    WAL_FSYNC,
    "etcd_disk_wal_fsync_duration_seconds",
    "The latency distributions of fsync called by WAL.",
    exponential_buckets(0.001, 2.0, 14)
);

histogram!(
    BACKEND_COMMIT,
    "etcd_disk_backend_commit_duration_seconds",
    "The latency distributions of commit called by backend.",
    exponential_buckets(0.001, 2.0, 14)
);

pub static SERVER_VERSION: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        &["server_version"]
    )
    .expect("metric registers once")
});

/// etcd's default backend quota when --quota-backend-bytes is 0.
const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

gauge!(
    PROPOSALS_PENDING,
    "etcd_server_proposals_pending",
    "The current number of pending proposals to commit."
);

pub static SERVER_ID: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &["server_id"]
    )
    .expect("metric registers once")
});

counter!(
    MVCC_PUT,
    "etcd_mvcc_put_total",
    "Total number of puts seen by this member."
);
counter!(
    MVCC_DELETE,
    "etcd_mvcc_delete_total",
    "Total number of deletes seen by this member."
);
counter!(
    MVCC_RANGE,
    "etcd_mvcc_range_total",
    "Total number of ranges seen by this member."
);
counter!(
    MVCC_TXN,
    "etcd_mvcc_txn_total",
    "Total number of txns seen by this member."
);
counter!(
    LEASE_GRANTED,
    "etcd_debugging_lease_granted_total",
    "The total number of granted leases."
);
counter!(
    LEASE_RENEWED,
    "etcd_debugging_lease_renewed_total",
    "The number of renewed leases seen by the leader."
);
counter!(
    LEASE_REVOKED,
    "etcd_debugging_lease_revoked_total",
    "The total number of revoked leases."
);
counter!(
    CLIENT_GRPC_SENT_BYTES,
    "etcd_network_client_grpc_sent_bytes_total",
    "The total number of bytes sent to grpc clients."
);
counter!(
    CLIENT_GRPC_RECEIVED_BYTES,
    "etcd_network_client_grpc_received_bytes_total",
    "The total number of bytes received from grpc clients."
);

histogram!(
    LEASE_TTL,
    "etcd_debugging_lease_ttl_total",
    "Bucketed histogram of lease TTLs.",
    exponential_buckets(1.0, 2.0, 24)
);

histogram!(
    DEFRAG,
    "etcd_disk_backend_defrag_duration_seconds",
    "The latency distribution of backend defragmentation.",
    exponential_buckets(0.1, 2.0, 13)
);

histogram!(
    BACKEND_SNAPSHOT,
    "etcd_disk_backend_snapshot_duration_seconds",
    "The latency distribution of backend snapshots.",
    exponential_buckets(0.01, 2.0, 17)
);

counter_vec!(
    PEER_SENT_BYTES,
    "etcd_network_peer_sent_bytes_total",
    "The total number of bytes sent to peers.",
    "To"
);

counter_vec!(
    PEER_RECEIVED_BYTES,
    "etcd_network_peer_received_bytes_total",
    "The total number of bytes received from peers.",
    "From"
);

counter_vec!(
    PEER_SENT_FAILURES,
    "etcd_network_peer_sent_failures_total",
    "The total number of send failures from peers.",
    "To"
);

pub static PEER_RTT: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "etcd_network_peer_round_trip_time_seconds",
        "Round-Trip-Time histogram between peers",
        &["To"],
        exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")
    )
    .expect("metric registers once")
});

/// A peer's ID as etcd's peer metrics label it.
pub fn peer_label(id: u64) -> String {
    format!("{id:x}")
}

/// Counts a proposal as pending until dropped.
pub struct PendingProposal;

impl PendingProposal {
    pub fn start() -> PendingProposal {
        PROPOSALS_PENDING.inc();
        PendingProposal
    }
}

impl Drop for PendingProposal {
    fn drop(&mut self) {
        PROPOSALS_PENDING.dec();
    }
}

gauge!(
    PROCESS_RESIDENT_MEMORY,
    "process_resident_memory_bytes",
    "Resident memory size in bytes."
);
gauge!(
    PROCESS_VIRTUAL_MEMORY,
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes."
);
gauge!(
    PROCESS_OPEN_FDS,
    "process_open_fds",
    "Number of open file descriptors."
);
gauge!(
    PROCESS_MAX_FDS,
    "process_max_fds",
    "Maximum number of open file descriptors."
);

pub static PROCESS_CPU: LazyLock<Counter> = LazyLock::new(|| {
    register_counter!(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds."
    )
    .expect("metric registers once")
});

pub static PROCESS_VIRTUAL_MEMORY_MAX: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes."
    )
    .expect("metric registers once")
});

pub static PROCESS_START_TIME: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds."
    )
    .expect("metric registers once")
});

/// VmRSS and VmSize of this process in bytes, from /proc (Linux), as Go's process collector
/// reports them (`etcdctl check datascale` reads the first).
fn process_memory() -> Option<(i64, i64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |field: &str| -> Option<i64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        let n: i64 = line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(n * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmSize:")?))
}

/// Clock ticks per second of /proc/self/stat's times (USER_HZ, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// CPU seconds (user + system) and start time (seconds since the epoch) from /proc.
fn process_times() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime is field 14, starttime field 22.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3)?.parse::<f64>().ok();
    let cpu = (ticks(14)? + ticks(15)?) / CLOCK_TICKS;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some((cpu, boot + ticks(22)? / CLOCK_TICKS))
}

/// The soft limit named `name` in /proc/self/limits; None when unlimited.
fn process_limit(name: &str) -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

fn refresh_process() {
    if let Some((rss, vsz)) = process_memory() {
        PROCESS_RESIDENT_MEMORY.set(rss);
        PROCESS_VIRTUAL_MEMORY.set(vsz);
    }
    if let Some((cpu, start)) = process_times() {
        let seen = PROCESS_CPU.get();
        if cpu > seen {
            PROCESS_CPU.inc_by(cpu - seen);
        }
        PROCESS_START_TIME.set(start);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        PROCESS_OPEN_FDS.set(dir.count() as i64);
    }
    if let Some(n) = process_limit("Max open files") {
        PROCESS_MAX_FDS.set(n);
    }
    // Go reports an unlimited address space as 2^64-1.
    PROCESS_VIRTUAL_MEMORY_MAX
        .set(process_limit("Max address space").map_or(u64::MAX as f64, |n| n as f64));
}

/// Refreshes the gauges that mirror server state, just before a scrape.
pub fn refresh(server: &EtcdServer) {
    refresh_process();
    HAS_LEADER.set((server.raft.leader() != 0) as i64);
    IS_LEADER.set(server.is_leader() as i64);
    PROPOSALS_COMMITTED.set(server.raft.commit_index() as i64);
    PROPOSALS_APPLIED.set(server.raft.applied_index() as i64);
    DB_TOTAL_SIZE.set(server.store.db_size() as i64);
    DB_IN_USE_SIZE.set(server.store.db_size_in_use() as i64);
    KEYS_TOTAL.set(server.store.index_len() as i64);
    CURRENT_REVISION.set(server.store.current_revision());
    COMPACT_REVISION.set(server.store.compact_revision());
    QUOTA_BACKEND_BYTES.set(match server.cfg.quota_backend_bytes {
        q if q <= 0 => DEFAULT_QUOTA_BYTES,
        q => q,
    });
    SERVER_VERSION
        .with_label_values(&[crate::ETCD_VERSION])
        .set(1.0);
    SERVER_ID
        .with_label_values(&[&peer_label(server.member_id())])
        .set(1.0);
    // Touch the event-driven metrics so they are listed from the first scrape on.
    LazyLock::force(&LEADER_CHANGES);
    LazyLock::force(&PROPOSALS_FAILED);
    LazyLock::force(&WAL_FSYNC);
    LazyLock::force(&BACKEND_COMMIT);
    for c in [
        &MVCC_PUT,
        &MVCC_DELETE,
        &MVCC_RANGE,
        &MVCC_TXN,
        &LEASE_GRANTED,
        &LEASE_RENEWED,
        &LEASE_REVOKED,
        &CLIENT_GRPC_SENT_BYTES,
        &CLIENT_GRPC_RECEIVED_BYTES,
    ] {
        LazyLock::force(c);
    }
    for h in [&LEASE_TTL, &DEFRAG, &BACKEND_SNAPSHOT] {
        LazyLock::force(h);
    }
    LazyLock::force(&PEER_SENT_BYTES);
    LazyLock::force(&PEER_RECEIVED_BYTES);
    LazyLock::force(&PEER_SENT_FAILURES);
    LazyLock::force(&PEER_RTT);
    crate::grpc_metrics::init();
}
