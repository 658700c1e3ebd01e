//! Harness for oxcd's process-level tests.
//!
//! Real processes on loopback: `oxcd` members from this workspace's `target/debug`, real
//! `/usr/bin/etcd` members as the oracle, and the real `/usr/bin/etcdctl` or `oxctl` as clients.
//!
//! * [`b64`]: base64 as in etcdctl's json output.
//! * [`bins`]: where the binaries are.
//! * [`ports`]: free loopback ports.
//! * [`proc`]: child processes in their own process group, killed with their parent.
//! * [`http`]: a tiny HTTP/1.1 GET for `/health` and `/version`.
//! * [`grpc`]: blocking gRPC calls with an auth token, their outcomes as stable text.
//! * [`member`]: one single-member cluster of oxcd or etcd ([`Member`]).
//! * [`ctl`]: run etcdctl or oxctl with a timeout ([`ctl()`]).
//! * [`normalize`]: make outputs of two different servers comparable ([`Norm`]).
//! * [`reconfig`]: members added, removed and moved at runtime, compared with etcd.
//! * [`scenario`]: run the same ctl steps against etcd and oxcd and compare ([`compare`]).
//! * [`restore`]: snapshot files, the offline tools that read them, restored clusters.
//! * [`watch`]: the same for a long-running `watch` while writes happen.
//! * [`tls`]: certificates for TLS clusters and a rustls client reading what a listener presents.

pub mod b64;
pub mod bins;
pub mod cluster;
pub mod ctl;
pub mod grpc;
pub mod http;
pub mod member;
pub mod normalize;
pub mod ports;
pub mod proc;
pub mod put_stream;
pub mod reconfig;
pub mod restore;
pub mod scenario;
pub mod tls;
pub mod watch;

pub use ctl::{ctl, Ctl, Output};
pub use member::{Kind, Member, MemberOpts};
pub use normalize::Norm;
pub use scenario::{compare, run_scenario, step, Runnable, Scenario, Setup, Step, Target};
pub use watch::WatchScenario;

/// Declares `oxcd`, `etcd_oracle` and (ignored) `etcd_twice` for each cluster scenario function
/// `fn name(kind: Kind) -> Transcript` (see [`cluster::run_oxcd`]).
#[macro_export]
macro_rules! cluster_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::cluster::{run_etcd_oracle, run_etcd_twice, run_oxcd};
                #[test]
                fn oxcd() {
                    run_oxcd(stringify!($name), super::$name);
                }
                #[test]
                fn etcd_oracle() {
                    run_etcd_oracle(stringify!($name), super::$name);
                }
                #[test]
                #[ignore = "self-check of the scenario against etcd twice"]
                fn etcd_twice() {
                    run_etcd_twice(stringify!($name), super::$name);
                }
            }
        )*
    };
}

/// Declares the usual tests for one scenario function `fn name() -> Scenario`:
///
/// * `etcdctl_oxcd`: the real etcdctl against oxcd must print what it prints against etcd;
/// * `oxctl_oxcd`: oxctl against oxcd must print what etcdctl prints against etcd;
/// * `oxctl_etcd`: oxctl against etcd must print what etcdctl prints against etcd;
/// * `etcdctl_etcd` (ignored; `cargo test -- --ignored`): the scenario is deterministic.
#[macro_export]
macro_rules! compat_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::scenario::{compare, Target};
                #[test]
                fn etcdctl_oxcd() {
                    compare(stringify!($name), Target::EtcdctlOxcd, super::$name);
                }
                #[test]
                fn oxctl_oxcd() {
                    compare(stringify!($name), Target::OxctlOxcd, super::$name);
                }
                #[test]
                fn oxctl_etcd() {
                    compare(stringify!($name), Target::OxctlEtcd, super::$name);
                }
                #[test]
                #[ignore = "self-check of the scenario against etcd twice"]
                fn etcdctl_etcd() {
                    compare(stringify!($name), Target::EtcdctlEtcd, super::$name);
                }
            }
        )*
    };
}
