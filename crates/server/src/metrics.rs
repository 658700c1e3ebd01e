//! Prometheus metrics under etcd's names, so existing dashboards and alerts work unchanged.
//!
//! Counters and histograms are updated where things happen; gauges that mirror server state are
//! refreshed when `/metrics` is scraped, which costs nothing between scrapes.

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, register_gauge_vec, register_histogram, register_int_counter,
    register_int_gauge, GaugeVec, Histogram, IntCounter, IntGauge,
};

use crate::server::EtcdServer;

macro_rules! gauge {
    ($name:ident, $metric:literal, $help:literal) => {
        pub static $name: LazyLock<IntGauge> =
            LazyLock::new(|| register_int_gauge!($metric, $help).expect("metric registers once"));
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

pub static LEADER_CHANGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen."
    )
    .expect("metric registers once")
});

pub static PROPOSALS_FAILED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen."
    )
    .expect("metric registers once")
});

pub static WAL_FSYNC: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
    )
    .expect("metric registers once")
});

pub static BACKEND_COMMIT: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
        exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
    )
    .expect("metric registers once")
});

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
    PROCESS_RESIDENT_MEMORY,
    "process_resident_memory_bytes",
    "Resident memory size in bytes."
);
gauge!(
    PROCESS_VIRTUAL_MEMORY,
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes."
);

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

/// Refreshes the gauges that mirror server state, just before a scrape.
pub fn refresh(server: &EtcdServer) {
    if let Some((rss, vsz)) = process_memory() {
        PROCESS_RESIDENT_MEMORY.set(rss);
        PROCESS_VIRTUAL_MEMORY.set(vsz);
    }
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
    // Touch the event-driven metrics so they are listed from the first scrape on.
    LazyLock::force(&LEADER_CHANGES);
    LazyLock::force(&PROPOSALS_FAILED);
    LazyLock::force(&WAL_FSYNC);
    LazyLock::force(&BACKEND_COMMIT);
}
