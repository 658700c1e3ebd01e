//! Leases: time-bounded ownership of keys.
//!
//! A lease is created and destroyed only through raft (LeaseGrant / LeaseRevoke entries applied in
//! log order), so every member holds the same table of leases and attached keys. Liveness is not
//! replicated: only the leader keeps the clock ("primary" in etcd's words). Keep-alives go to the
//! leader and move the lease's expiry there; when a lease's expiry passes, the leader's expiry
//! loop proposes a LeaseRevoke, whose apply deletes the attached keys on every member.
//!
//! - [`Lessor`] (lessor.rs): the in-memory table, called by the apply loop and the Lease service.
//! - [`spawn_expiry_loop`] (expiry.rs): the leader task that revokes expired leases.

mod expiry;
mod lessor;

pub use expiry::spawn_expiry_loop;
pub use lessor::{min_ttl_from, Lessor};

/// Lease id meaning "no lease" (a key put without a lease).
pub const NO_LEASE: i64 = 0;

/// The largest TTL a lease may be granted with, in seconds (etcd's `MaxLeaseTTL`). Larger requests
/// fail with `EtcdError::LeaseTtlTooLarge`.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How many expired leases the leader revokes per second at most (etcd's `leaseRevokeRate`), so
/// that a mass expiry (e.g. after a long leader outage) cannot flood raft with revocations.
pub const LEASE_REVOKE_RATE: usize = 1000;
