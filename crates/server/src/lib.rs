//! oxcd: one member of an etcd v3 compatible cluster.
//!
//! Request flow: gRPC service (`grpc`) validates -> `server::EtcdServer::propose` -> raft node
//! (`raft`) -> committed entries -> `apply` -> `mvcc` / `lease` -> waiter woken, watchers notified.

pub mod alarm;
pub mod apply;
pub mod apply_conf;
pub mod auth;
pub mod backup;
pub mod bootstrap;
pub mod compactor;
pub mod config;
pub mod config_file;
pub mod corrupt;
pub mod error;
pub mod failpoints;
pub mod fuzzing;
pub mod gateway;
pub mod grpc;
pub mod grpc_metrics;
pub mod h2_authority;
pub mod http;
pub mod lease;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod quota;
pub mod raft;
pub mod reconfig;
pub mod sd_notify;
pub mod server;
pub mod tls;

/// The etcd server version this build speaks for: version-gated clients read it from Status and
/// /version to decide which features they may use.
pub const ETCD_VERSION: &str = "3.5.17";
/// The etcd cluster version (major.minor) implemented.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";
