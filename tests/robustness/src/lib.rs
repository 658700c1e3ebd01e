//! oxcd's robustness harness.
//!
//! A run starts a cluster of real `oxcd` processes on loopback whose peer links pass through
//! in-process fault proxies, drives random traffic from many clients while a scenario injects
//! faults, records every request and watch response ([`history`]), and checks the history
//! ([`check`]): linearizable KV operations, watch guarantees, no lost acknowledged write,
//! revisions never going backwards, equal HashKV on every member.

pub mod check;
pub mod client;
pub mod cluster;
pub mod faults;
pub mod history;
pub mod proxy;
pub mod recorder;
pub mod run;
pub mod scenarios;
pub mod traffic;
pub mod watcher;
