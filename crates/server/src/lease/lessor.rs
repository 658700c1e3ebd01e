//! The in-memory lease table.
//!
//! Two kinds of callers:
//! - the apply loop, in raft log order (`grant`, `revoke`, `on_put`, `on_delete`, `recover`,
//!   `promote`, `demote`). Their results depend only on the log, never on the clock, so every
//!   member reaches the same decisions; the clock is used only for expiry bookkeeping.
//! - the leader's Lease service and expiry loop (`renew`, `time_to_live`, `leases`, `expired`).
//!
//! Expiries are meaningful only while this member is the primary (the leader, after `promote`):
//! a follower never sees keep-alives, so its clock says nothing about a lease's liveness. This is
//! why `expired` returns nothing and `renew` refuses unless primary, exactly like etcd's lessor.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{LEASE_REVOKE_RATE, MAX_LEASE_TTL, NO_LEASE};
use crate::error::{EtcdError, Result};

/// After `expired` hands a lease to the revoker, it is offered again only after this long, in
/// case the LeaseRevoke proposal was lost (leader change, timeout). etcd's
/// `expiredLeaseRetryInterval`.
const EXPIRED_RETRY: Duration = Duration::from_secs(3);

/// The minimum lease TTL etcd derives from the raft timing: a lease must outlive a leader
/// election, or it could expire merely because the cluster changed leader. etcd computes
/// `(3 * electionTicks / 2) * heartbeat` (integer tick arithmetic) and rounds up to whole seconds:
/// 2s with the default 100ms heartbeat and 1000ms election timeout.
pub fn min_ttl_from(heartbeat_ms: u64, election_ms: u64) -> i64 {
    let election_ticks = election_ms.checked_div(heartbeat_ms).unwrap_or(0);
    let min_ms = (3 * election_ticks / 2) * heartbeat_ms;
    min_ms.div_ceil(1000) as i64
}

struct Lease {
    /// Granted TTL in seconds (after raising to the minimum).
    ttl: i64,
    /// When the lease dies unless renewed. Meaningful only while primary.
    expiry: Instant,
    /// Position in `Inner::queue`: normally `expiry`, pushed back by `EXPIRED_RETRY` once the
    /// lease has been handed out for revocation.
    queue_at: Instant,
    /// Attached keys; a BTreeSet so `revoke` returns them sorted without a sort.
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    /// key -> the lease it is attached to (keys without a lease are absent).
    key_lease: HashMap<Vec<u8>, i64>,
    /// (queue_at, id) for every lease, ordered by time: `expired` only looks at the front, so it
    /// stays cheap with millions of leases.
    queue: BTreeSet<(Instant, i64)>,
    /// True while this member is the leader and has promoted the lessor.
    primary: bool,
    /// Number of promotions so far; lets a conditional demotion detect a racing promotion.
    epoch: u64,
}

impl Inner {
    /// Moves lease `id` to a new position in the expiry queue.
    fn requeue(&mut self, id: i64, at: Instant) {
        if let Some(l) = self.leases.get_mut(&id) {
            self.queue.remove(&(l.queue_at, id));
            l.queue_at = at;
            self.queue.insert((at, id));
        }
    }

    /// Sets every lease's expiry to `now + ttl + extend` and rebuilds the queue.
    fn refresh_all(&mut self, now: Instant, extend: Duration) {
        self.queue.clear();
        for (&id, l) in self.leases.iter_mut() {
            l.expiry = deadline(now, l.ttl, extend);
            l.queue_at = l.expiry;
            self.queue.insert((l.queue_at, id));
        }
    }
}

/// `now + ttl seconds + extend`, saturating far in the future instead of overflowing `Instant`
/// (TTLs go up to 9e9 seconds).
fn deadline(now: Instant, ttl_secs: i64, extend: Duration) -> Instant {
    let d = Duration::from_secs(ttl_secs.max(0) as u64).saturating_add(extend);
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Whole seconds from `now` until `t`, truncated toward zero and negative once `t` has passed:
/// etcd reports `int64(remaining.Seconds())`, so a lease granted 5s ago with a 10s TTL shows 4
/// during most of its fifth second.
fn secs_until(now: Instant, t: Instant) -> i64 {
    if t >= now {
        (t - now).as_secs() as i64
    } else {
        -((now - t).as_secs() as i64)
    }
}

pub struct Lessor {
    min_ttl: i64,
    /// Added to every expiry on `promote`: etcd extends leases by an election timeout when a new
    /// leader takes over, so clients get time to find the new leader and resume keep-alives.
    promote_extend: Duration,
    inner: Mutex<Inner>,
}

impl Lessor {
    /// A lessor whose leases get at least `min_ttl_secs` seconds (see [`min_ttl_from`]).
    /// `promote` extends expiries by nothing; use [`Lessor::for_timing`] to get etcd's extension.
    pub fn new(min_ttl_secs: i64) -> Lessor {
        Lessor {
            min_ttl: min_ttl_secs,
            promote_extend: Duration::ZERO,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A lessor configured from the raft timing as etcd does: minimum TTL from
    /// [`min_ttl_from`] and leases extended by one election timeout on `promote`.
    pub fn for_timing(heartbeat_ms: u64, election_ms: u64) -> Lessor {
        Lessor {
            promote_extend: Duration::from_millis(election_ms),
            ..Lessor::new(min_ttl_from(heartbeat_ms, election_ms))
        }
    }

    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    // ---- apply side: called in log order, results deterministic -------------------------------

    /// Replaces the whole table with the persisted state (start-up, raft snapshot install).
    /// `leases` is (id, granted ttl), `keys` is (key, lease id) for every key that has a lease.
    /// Every expiry restarts at now + ttl: the time a lease had left before the restart is not
    /// persisted, as in etcd. Keys naming an unknown lease are ignored.
    pub fn recover(&self, leases: Vec<(i64, i64)>, keys: Vec<(Vec<u8>, i64)>) {
        self.recover_at(Instant::now(), leases, keys)
    }

    fn recover_at(&self, now: Instant, leases: Vec<(i64, i64)>, keys: Vec<(Vec<u8>, i64)>) {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.leases.clear();
        inner.key_lease.clear();
        inner.queue.clear();
        for (id, ttl) in leases {
            if id == NO_LEASE {
                continue;
            }
            let ttl = ttl.max(self.min_ttl);
            let expiry = deadline(now, ttl, Duration::ZERO);
            inner.leases.insert(
                id,
                Lease {
                    ttl,
                    expiry,
                    queue_at: expiry,
                    keys: BTreeSet::new(),
                },
            );
            inner.queue.insert((expiry, id));
        }
        for (key, id) in keys {
            if let Some(l) = inner.leases.get_mut(&id) {
                l.keys.insert(key.clone());
                inner.key_lease.insert(key, id);
            }
        }
    }

    /// Applies a LeaseGrant. Returns the granted TTL (raised to the minimum TTL).
    /// Errors, checked in etcd's order: id 0 -> LeaseNotFound (the proposer must pick an id);
    /// ttl > 9e9 -> LeaseTtlTooLarge; id in use -> LeaseExist.
    pub fn grant(&self, id: i64, ttl: i64) -> Result<i64> {
        self.grant_at(Instant::now(), id, ttl)
    }

    fn grant_at(&self, now: Instant, id: i64, ttl: i64) -> Result<i64> {
        if id == NO_LEASE {
            return Err(EtcdError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let mut inner = self.inner.lock();
        if inner.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        let ttl = ttl.max(self.min_ttl);
        let expiry = deadline(now, ttl, Duration::ZERO);
        inner.leases.insert(
            id,
            Lease {
                ttl,
                expiry,
                queue_at: expiry,
                keys: BTreeSet::new(),
            },
        );
        inner.queue.insert((expiry, id));
        crate::metrics::LEASE_GRANTED.inc();
        crate::metrics::LEASE_TTL.observe(ttl as f64);
        Ok(ttl)
    }

    /// Applies a LeaseRevoke: removes the lease and returns its attached keys, sorted, which the
    /// apply loop must delete in the same store transaction. LeaseNotFound if absent.
    pub fn revoke(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let lease = inner.leases.remove(&id).ok_or(EtcdError::LeaseNotFound)?;
        crate::metrics::LEASE_REVOKED.inc();
        inner.queue.remove(&(lease.queue_at, id));
        for k in &lease.keys {
            // Only drop the mapping if it still points here; it always should.
            if inner.key_lease.get(k) == Some(&id) {
                inner.key_lease.remove(k);
            }
        }
        Ok(lease.keys.into_iter().collect())
    }

    pub fn exists(&self, id: i64) -> bool {
        self.inner.lock().leases.contains_key(&id)
    }

    /// `key` was put with `lease` (0: no lease): attach it there and detach it from the lease it
    /// had before. Pass the lease recorded in the stored KeyValue, so a put with `ignore_lease`
    /// (which keeps the old lease) is a no-op here. An unknown lease leaves the key detached:
    /// the apply loop must have rejected such a put already.
    pub fn on_put(&self, key: &[u8], lease: i64) {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let prev = inner.key_lease.get(key).copied().unwrap_or(NO_LEASE);
        if prev == lease {
            return;
        }
        if prev != NO_LEASE {
            if let Some(l) = inner.leases.get_mut(&prev) {
                l.keys.remove(key);
            }
        }
        match inner.leases.get_mut(&lease) {
            Some(l) if lease != NO_LEASE => {
                l.keys.insert(key.to_vec());
                inner.key_lease.insert(key.to_vec(), lease);
            }
            _ => {
                inner.key_lease.remove(key);
            }
        }
    }

    /// `key` was deleted: detach it from its lease, if any.
    pub fn on_delete(&self, key: &[u8]) {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if let Some(prev) = inner.key_lease.remove(key) {
            if let Some(l) = inner.leases.get_mut(&prev) {
                l.keys.remove(key);
            }
        }
    }

    /// This member became leader and has applied every entry of earlier terms (call it when the
    /// leader's empty entry of its new term is applied, as etcd does): start keeping time.
    /// Every expiry restarts at now + ttl (+ an election timeout with [`Lessor::for_timing`]),
    /// because the old leader's keep-alives are unknown here. With many leases, expiries are
    /// spread out so at most 3/4 of the revoke rate expire in any one second.
    pub fn promote(&self) {
        self.promote_at(Instant::now())
    }

    fn promote_at(&self, now: Instant) {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.primary = true;
        inner.epoch += 1;
        inner.refresh_all(now, self.promote_extend);
        if inner.leases.len() < LEASE_REVOKE_RATE {
            return;
        }
        // etcd's pile-up avoidance: walk leases by expiry in one-second windows; once a window
        // holds more than the target, push the surplus later in proportion to the excess.
        let target = (3 * LEASE_REVOKE_RATE / 4) as f64;
        let order: Vec<(Instant, i64)> = inner.queue.iter().copied().collect();
        let Some(&(first, _)) = order.first() else {
            return;
        };
        let mut base = first - now;
        let mut next_window = base + Duration::from_secs(1);
        let mut expires = 0usize;
        for (at, id) in order {
            let remaining = at - now;
            if remaining > next_window {
                base = remaining;
                next_window = base + Duration::from_secs(1);
                expires = 1;
                continue;
            }
            expires += 1;
            if expires as f64 <= target {
                continue;
            }
            let delay = (expires as f64 / target - (remaining - base).as_secs_f64()).max(0.0);
            let delay = Duration::from_secs_f64(delay);
            next_window = base + delay;
            if let Some(l) = inner.leases.get_mut(&id) {
                l.expiry = deadline(now, l.ttl, delay + self.promote_extend);
                let at = l.expiry;
                inner.requeue(id, at);
            }
        }
    }

    /// This member stopped being leader: stop keeping time. Until the next `promote`, nothing
    /// expires and renewals are refused (a new leader's keep-alives are not seen here).
    pub fn demote(&self) {
        self.inner.lock().primary = false;
    }

    /// Counts promotions. Read it before checking leadership, then pass it to
    /// [`Lessor::demote_if_epoch`], so a promotion in between is not undone.
    pub fn promotion_epoch(&self) -> u64 {
        self.inner.lock().epoch
    }

    /// `demote`, unless `promote` has been called since `promotion_epoch` returned `epoch`.
    pub fn demote_if_epoch(&self, epoch: u64) {
        let mut inner = self.inner.lock();
        if inner.epoch == epoch {
            inner.primary = false;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.inner.lock().primary
    }

    // ---- leader side -----------------------------------------------------------------------------

    /// A keep-alive: the lease now expires at now + ttl. Returns the granted TTL.
    /// NotLeader when not primary. LeaseNotFound when absent, and also when the lease has
    /// already expired: it is about to be revoked, and etcd refuses to resurrect it (the caller
    /// should wait until it is gone, see [`Lessor::exists`]).
    pub fn renew(&self, id: i64) -> Result<i64> {
        self.renew_at(Instant::now(), id)
    }

    fn renew_at(&self, now: Instant, id: i64) -> Result<i64> {
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Err(EtcdError::NotLeader);
        }
        let Some(l) = inner.leases.get_mut(&id) else {
            return Err(EtcdError::LeaseNotFound);
        };
        if l.expiry <= now {
            return Err(EtcdError::LeaseNotFound);
        }
        l.expiry = deadline(now, l.ttl, Duration::ZERO);
        let (ttl, at) = (l.ttl, l.expiry);
        inner.requeue(id, at);
        crate::metrics::LEASE_RENEWED.inc();
        Ok(ttl)
    }

    /// (remaining seconds, granted TTL, attached keys if `with_keys`, sorted), or None if the
    /// lease does not exist. Remaining is truncated toward zero like etcd's and goes negative
    /// for an expired lease not yet revoked. Only the primary's remaining time is meaningful.
    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        self.time_to_live_at(Instant::now(), id, with_keys)
    }

    fn time_to_live_at(
        &self,
        now: Instant,
        id: i64,
        with_keys: bool,
    ) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        let inner = self.inner.lock();
        let l = inner.leases.get(&id)?;
        let keys = if with_keys {
            l.keys.iter().cloned().collect()
        } else {
            Vec::new()
        };
        Some((secs_until(now, l.expiry), l.ttl, keys))
    }

    /// All lease ids, the one expiring first first (as etcd lists them), ties by id.
    pub fn leases(&self) -> Vec<i64> {
        let inner = self.inner.lock();
        let mut ids: Vec<(Instant, i64)> =
            inner.leases.iter().map(|(&id, l)| (l.expiry, id)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Up to `limit` leases whose expiry has passed, earliest first, for the expiry loop to
    /// revoke. Each returned lease is not offered again for `EXPIRED_RETRY` (its revocation is
    /// in flight); if it still exists then, it is offered again. Empty unless primary.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        self.expired_at(Instant::now(), limit)
    }

    fn expired_at(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Vec::new();
        }
        let due: Vec<i64> = inner
            .queue
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|&(_, id)| id)
            .collect();
        let retry_at = now + EXPIRED_RETRY;
        for &id in &due {
            inner.requeue(id, retry_at);
        }
        due
    }

    /// The lease `key` is attached to, or 0.
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.inner
            .lock()
            .key_lease
            .get(key)
            .copied()
            .unwrap_or(NO_LEASE)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn primary(min_ttl: i64, now: Instant) -> Lessor {
        let l = Lessor::new(min_ttl);
        l.promote_at(now);
        l
    }

    #[test]
    fn min_ttl_matches_etcd() {
        // Defaults: 10 election ticks -> 15 ticks * 100ms = 1.5s -> 2s.
        assert_eq!(min_ttl_from(100, 1000), 2);
        // 5 ticks -> 7 (integer) * 100ms = 0.7s -> 1s.
        assert_eq!(min_ttl_from(100, 500), 1);
        // 10 ticks * 3/2 = 15 * 300ms = 4.5s -> 5s.
        assert_eq!(min_ttl_from(300, 3000), 5);
        assert_eq!(min_ttl_from(100, 2000), 3);
        assert_eq!(min_ttl_from(0, 1000), 0);
    }

    #[test]
    fn for_timing_sets_min_ttl() {
        assert_eq!(Lessor::for_timing(100, 1000).min_ttl(), 2);
    }

    #[test]
    fn grant_raises_to_min_and_rejects() {
        let l = Lessor::new(2);
        assert_eq!(l.grant(1, 1), Ok(2));
        assert_eq!(l.grant(2, 0), Ok(2));
        assert_eq!(l.grant(3, -5), Ok(2));
        assert_eq!(l.grant(4, 10), Ok(10));
        assert_eq!(
            l.grant(-3, 5),
            Ok(5),
            "negative ids are accepted, as in etcd"
        );
        assert_eq!(l.grant(1, 10), Err(EtcdError::LeaseExist));
        assert_eq!(l.grant(5, MAX_LEASE_TTL), Ok(MAX_LEASE_TTL));
        assert_eq!(
            l.grant(6, MAX_LEASE_TTL + 1),
            Err(EtcdError::LeaseTtlTooLarge)
        );
        assert_eq!(l.grant(0, 10), Err(EtcdError::LeaseNotFound));
        // Too large is checked before existence, as in etcd.
        assert_eq!(
            l.grant(1, MAX_LEASE_TTL + 1),
            Err(EtcdError::LeaseTtlTooLarge)
        );
        assert!(l.exists(1) && !l.exists(6));
        // Listed by expiry (as etcd lists them): TTL 2 (in grant order), 5, 10, the maximum.
        assert_eq!(l.leases(), vec![1, 2, 3, -3, 4, 5]);
    }

    #[test]
    fn attach_detach_and_revoke() {
        let l = Lessor::new(2);
        l.grant(1, 10).unwrap();
        l.grant(2, 10).unwrap();
        l.on_put(b"b", 1);
        l.on_put(b"a", 1);
        l.on_put(b"c", 1);
        l.on_put(b"c", 1); // re-put with the same lease: unchanged
        l.on_put(b"x", 2);
        l.on_put(b"x", 1); // moves from lease 2 to lease 1
        l.on_put(b"c", 0); // detached by a put without lease
        l.on_put(b"y", 99); // unknown lease: stays detached
        l.on_delete(b"b");
        l.on_delete(b"zzz"); // never attached: no-op
        assert_eq!(l.lease_of(b"x"), 1);
        assert_eq!(l.lease_of(b"c"), 0);
        assert_eq!(l.lease_of(b"y"), 0);
        assert_eq!(l.time_to_live(2, true).unwrap().2, Vec::<Vec<u8>>::new());
        assert_eq!(
            l.time_to_live(1, true).unwrap().2,
            vec![b"a".to_vec(), b"x".to_vec()]
        );
        assert_eq!(l.time_to_live(1, false).unwrap().2, Vec::<Vec<u8>>::new());
        assert_eq!(l.revoke(1), Ok(vec![b"a".to_vec(), b"x".to_vec()]));
        assert_eq!(l.lease_of(b"a"), 0);
        assert_eq!(l.revoke(1), Err(EtcdError::LeaseNotFound));
        assert!(!l.exists(1));
        // The apply loop deletes the revoked keys; the resulting deletes are no-ops here.
        l.on_delete(b"a");
        l.on_delete(b"x");
        // A key re-put with a revoked lease id stays detached.
        l.on_put(b"a", 1);
        assert_eq!(l.lease_of(b"a"), 0);
        assert_eq!(l.revoke(2), Ok(vec![]));
        assert!(l.is_empty());
    }

    #[test]
    fn time_to_live_truncates_and_goes_negative() {
        let t0 = Instant::now();
        let l = primary(2, t0);
        l.grant_at(t0, 7, 5).unwrap();
        assert_eq!(l.time_to_live_at(t0, 7, false).unwrap().0, 5);
        let t = t0 + Duration::from_millis(10);
        assert_eq!(l.time_to_live_at(t, 7, false).unwrap(), (4, 5, vec![]));
        assert_eq!(l.time_to_live_at(t0 + secs(7), 7, false).unwrap().0, -2);
        assert!(l.time_to_live_at(t0, 8, false).is_none());
    }

    #[test]
    fn renew_requires_primary_and_live_lease() {
        let t0 = Instant::now();
        let l = Lessor::new(2);
        l.grant_at(t0, 1, 10).unwrap();
        assert_eq!(l.renew_at(t0, 1), Err(EtcdError::NotLeader));
        l.promote_at(t0);
        assert_eq!(l.renew_at(t0 + secs(8), 1), Ok(10));
        // Renewed at t0+8: expires at t0+18, not t0+10.
        assert!(l.expired_at(t0 + secs(17), 10).is_empty());
        assert_eq!(l.time_to_live_at(t0 + secs(9), 1, false).unwrap().0, 9);
        assert_eq!(l.renew_at(t0, 2), Err(EtcdError::LeaseNotFound));
        // Past its expiry, a lease is awaiting revocation and cannot be renewed.
        assert_eq!(l.renew_at(t0 + secs(18), 1), Err(EtcdError::LeaseNotFound));
        assert!(l.exists(1));
        l.demote();
        assert_eq!(l.renew_at(t0 + secs(9), 1), Err(EtcdError::NotLeader));
    }

    #[test]
    fn expired_in_order_with_limit_and_retry() {
        let t0 = Instant::now();
        let l = primary(1, t0);
        l.grant_at(t0, 30, 3).unwrap();
        l.grant_at(t0, 10, 1).unwrap();
        l.grant_at(t0, 20, 2).unwrap();
        l.grant_at(t0, 40, 100).unwrap();
        assert!(l.expired_at(t0, 10).is_empty());
        assert_eq!(l.expired_at(t0 + secs(5), 2), vec![10, 20]);
        // 10 and 20 are being revoked: not offered again right away.
        assert_eq!(l.expired_at(t0 + secs(5), 10), vec![30]);
        assert!(l.expired_at(t0 + secs(6), 10).is_empty());
        // Revoked ones vanish; one whose revocation got lost is offered again after the retry.
        l.revoke(10).unwrap();
        assert_eq!(l.expired_at(t0 + secs(8), 10), vec![20, 30]);
        // Renewal of an expired lease is refused, so it cannot escape.
        assert_eq!(l.renew_at(t0 + secs(8), 20), Err(EtcdError::LeaseNotFound));
    }

    #[test]
    fn nothing_expires_unless_primary() {
        let t0 = Instant::now();
        let l = Lessor::new(1);
        l.grant_at(t0, 1, 1).unwrap();
        assert!(l.expired_at(t0 + secs(100), 10).is_empty());
        l.promote_at(t0 + secs(100));
        // Promotion restarts the clock: expires at t0+101, not t0+1.
        assert!(l.expired_at(t0 + secs(100), 10).is_empty());
        assert_eq!(l.expired_at(t0 + secs(101), 10), vec![1]);
        l.demote();
        assert!(l.expired_at(t0 + secs(200), 10).is_empty());
    }

    #[test]
    fn conditional_demote_spares_a_newer_promotion() {
        let t0 = Instant::now();
        let l = Lessor::new(1);
        let epoch = l.promotion_epoch();
        l.promote_at(t0);
        l.demote_if_epoch(epoch);
        assert!(l.is_primary());
        l.demote_if_epoch(l.promotion_epoch());
        assert!(!l.is_primary());
    }

    #[test]
    fn promote_extends_by_election_timeout() {
        let t0 = Instant::now();
        let l = Lessor::for_timing(100, 1000);
        l.grant_at(t0, 1, 5).unwrap();
        l.promote_at(t0);
        assert!(l.expired_at(t0 + secs(5), 10).is_empty());
        assert_eq!(l.expired_at(t0 + Duration::from_millis(6000), 10), vec![1]);
    }

    #[test]
    fn promote_spreads_a_pile_up() {
        let t0 = Instant::now();
        let l = Lessor::new(1);
        let n = 3 * LEASE_REVOKE_RATE;
        for id in 1..=n as i64 {
            l.grant_at(t0, id, 10).unwrap();
        }
        l.promote_at(t0);
        // Without spreading, all would expire at t0+10; with it, at most 3/4 of the revoke rate
        // expire in the first second.
        let first = l.expired_at(t0 + Duration::from_millis(10_999), usize::MAX);
        assert!(!first.is_empty());
        assert!(
            first.len() <= 3 * LEASE_REVOKE_RATE / 4 + 1,
            "{}",
            first.len()
        );
        for id in &first {
            l.revoke(*id).unwrap();
        }
        // The rest are pushed back by up to n / target seconds, none dropped.
        let rest = l.expired_at(t0 + secs(15), usize::MAX);
        assert_eq!(first.len() + rest.len(), n);
    }

    #[test]
    fn recover_rebuilds_table_and_restarts_clock() {
        let t0 = Instant::now();
        let l = primary(2, t0);
        l.grant_at(t0, 99, 5).unwrap();
        l.on_put(b"old", 99);
        l.recover_at(
            t0 + secs(50),
            vec![(1, 10), (2, 1)],
            vec![
                (b"k2".to_vec(), 1),
                (b"k1".to_vec(), 1),
                (b"orphan".to_vec(), 7),
            ],
        );
        assert!(!l.exists(99));
        assert_eq!(l.lease_of(b"old"), 0);
        assert_eq!(l.lease_of(b"orphan"), 0);
        // Lease 2's TTL (1, raised to the minimum 2) ends before lease 1's.
        assert_eq!(l.leases(), vec![2, 1]);
        let (remaining, granted, keys) = l.time_to_live_at(t0 + secs(50), 1, true).unwrap();
        assert_eq!((remaining, granted), (10, 10));
        assert_eq!(keys, vec![b"k1".to_vec(), b"k2".to_vec()]);
        // A TTL below the minimum is raised, as at grant.
        assert_eq!(l.time_to_live_at(t0 + secs(50), 2, false).unwrap().1, 2);
        assert_eq!(l.expired_at(t0 + secs(52), 10), vec![2]);
        assert_eq!(l.revoke(1), Ok(vec![b"k1".to_vec(), b"k2".to_vec()]));
    }

    #[test]
    fn huge_ttl_does_not_overflow() {
        let t0 = Instant::now();
        let l = primary(2, t0);
        assert_eq!(l.grant_at(t0, 1, MAX_LEASE_TTL), Ok(MAX_LEASE_TTL));
        assert_eq!(l.renew_at(t0, 1), Ok(MAX_LEASE_TTL));
        assert!(l.time_to_live_at(t0, 1, false).unwrap().0 > 1_000_000_000);
    }
}
