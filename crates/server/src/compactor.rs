//! Automatic history compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), with
//! etcd 3.4's rules:
//!
//! - **periodic** (retention is a duration; a bare number is hours): the revision is sampled every
//!   tenth of the retention (of one hour, for retentions above an hour), keeping the last
//!   `retention / interval + 1` samples. Once a whole retention has passed since start, and then
//!   every retention (at most every hour), the oldest sample (the revision of one retention ago) is
//!   compacted. A failed compaction is retried at the next sample.
//! - **revision** (retention is a revision count): every five minutes, `current - retention` is
//!   compacted, unless it is not positive or was compacted by the previous round.
//!
//! Every member runs the loop, but only the leader proposes: the compaction goes through raft as a
//! client's Compact does, so every member compacts at the same revision. An "already compacted"
//! answer counts as success.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::{CompactionRequest, InternalRaftRequest};
use tokio::task::JoinHandle;

use crate::error::EtcdError;
use crate::server::EtcdServer;

/// How often revision mode compacts (etcd's `revInterval`).
pub const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Periodic mode samples the revision this many times per retention (etcd's `retryDivisor`).
const RETRY_DIVISOR: u32 = 10;
const HOUR: Duration = Duration::from_secs(3600);

/// A validated `--auto-compaction-*` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Periodic(Duration),
    Revision(i64),
}

impl AutoCompaction {
    /// Reads the flags as etcd does: the mode must be `periodic` or `revision` (checked with the
    /// other flags); the retention is an integer (hours, or revisions) or else a Go duration,
    /// whatever the mode (so `revision` with `5m` retains 300000000000 revisions, as in etcd).
    /// `Ok(None)` means auto-compaction is off (a zero retention).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
        let as_int = go_atoi(retention).filter(|h| *h >= 0);
        let nanos: i128 = match as_int {
            Some(h) if mode == "revision" => i128::from(h),
            Some(h) => i128::from(h) * 3_600_000_000_000,
            None => parse_go_duration(retention)
                .map_err(|e| format!("error parsing CompactionRetention: {e}"))?,
        };
        // Go multiplies in int64 and wraps; anything that large is "never" anyway.
        let nanos = i64::try_from(nanos).unwrap_or(i64::MAX);
        if nanos <= 0 {
            // Zero is etcd's "off"; a negative duration would make etcd's loop spin.
            return Ok(None);
        }
        Ok(Some(match mode {
            "revision" => AutoCompaction::Revision(nanos),
            _ => AutoCompaction::Periodic(Duration::from_nanos(nanos as u64)),
        }))
    }

    /// The retention as etcd logs it (a Go duration, also in revision mode: `10` is "10ns").
    pub fn retention_string(&self) -> String {
        match *self {
            AutoCompaction::Periodic(d) => {
                go_duration_string(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            }
            AutoCompaction::Revision(n) => go_duration_string(n),
        }
    }
}

/// The message for an `--auto-compaction-mode` etcd does not know, or None.
pub fn check_mode(mode: &str) -> Option<String> {
    match mode {
        "" | "periodic" | "revision" => None,
        other => Some(format!("unknown auto-compaction-mode {other:?}")),
    }
}

/// Starts the compactor for `ac`. It holds the server weakly and ends with it.
pub fn spawn(server: &Arc<EtcdServer>, ac: AutoCompaction) -> JoinHandle<()> {
    let weak = Arc::downgrade(server);
    match ac {
        AutoCompaction::Periodic(period) => tokio::spawn(periodic(weak, period)),
        AutoCompaction::Revision(retention) => tokio::spawn(revision(weak, retention)),
    }
}

/// Sampling interval of periodic mode: a tenth of the retention, capped at a tenth of an hour.
pub fn retry_interval(period: Duration) -> Duration {
    period.min(HOUR) / RETRY_DIVISOR
}

/// How many samples periodic mode keeps; the oldest is the revision one retention ago.
pub fn retentions(period: Duration) -> usize {
    let itv = retry_interval(period).as_nanos().max(1);
    (period.as_nanos() / itv) as usize + 1
}

/// Pure state of periodic mode, driven by the loop (and by tests with a fake clock).
#[derive(Debug)]
pub struct PeriodicState {
    compact_interval: Duration,
    keep: usize,
    revs: std::collections::VecDeque<i64>,
    last_success: Instant,
    base_interval: Duration,
}

impl PeriodicState {
    pub fn new(period: Duration, now: Instant) -> PeriodicState {
        PeriodicState {
            compact_interval: period.min(HOUR),
            keep: retentions(period),
            revs: std::collections::VecDeque::new(),
            last_success: now,
            base_interval: period,
        }
    }

    /// Records the current revision (at the start of every round).
    pub fn sample(&mut self, rev: i64) {
        self.revs.push_back(rev);
        if self.revs.len() > self.keep {
            self.revs.pop_front();
        }
    }

    /// After a round's wait: the revision to compact now, if it is time.
    pub fn due(&mut self, now: Instant) -> Option<i64> {
        if now.saturating_duration_since(self.last_success) < self.base_interval {
            return None;
        }
        // The first compaction waits a whole retention; later ones, the compaction interval.
        self.base_interval = self.compact_interval;
        self.revs.front().copied()
    }

    pub fn succeeded(&mut self, now: Instant) {
        self.last_success = now;
    }

    pub fn last_success(&self) -> Instant {
        self.last_success
    }
}

async fn periodic(weak: Weak<EtcdServer>, period: Duration) {
    let retry = retry_interval(period);
    let mut st = PeriodicState::new(period, Instant::now());
    let period_s = go_duration_string(i64::try_from(period.as_nanos()).unwrap_or(i64::MAX));
    loop {
        {
            let Some(server) = weak.upgrade() else { return };
            st.sample(server.store.current_revision());
        }
        tokio::time::sleep(retry).await;
        let Some(server) = weak.upgrade() else { return };
        // A follower's compactor is paused: it keeps sampling but never proposes.
        if !server.is_leader() {
            continue;
        }
        let Some(rev) = st.due(Instant::now()) else {
            continue;
        };
        tracing::info!(
            revision = rev,
            "compact-period" = %period_s,
            "starting auto periodic compaction"
        );
        match compact(&server, rev).await {
            Ok(()) => {
                tracing::info!(
                    revision = rev,
                    "compact-period" = %period_s,
                    took = %go_duration_string(st.last_success().elapsed().as_nanos() as i64),
                    "completed auto periodic compaction"
                );
                st.succeeded(Instant::now());
            }
            Err(e) => tracing::warn!(
                revision = rev,
                "compact-period" = %period_s,
                "retry-interval" = %go_duration_string(retry.as_nanos() as i64),
                error = %e,
                "failed auto periodic compaction"
            ),
        }
    }
}

async fn revision(weak: Weak<EtcdServer>, retention: i64) {
    let mut prev = 0i64;
    loop {
        tokio::time::sleep(REVISION_INTERVAL).await;
        let Some(server) = weak.upgrade() else { return };
        if !server.is_leader() {
            continue;
        }
        let rev = server.store.current_revision().saturating_sub(retention);
        if rev <= 0 || rev == prev {
            continue;
        }
        let start = Instant::now();
        tracing::info!(
            revision = rev,
            "revision-compaction-retention" = retention,
            "starting auto revision compaction"
        );
        match compact(&server, rev).await {
            Ok(()) => {
                prev = rev;
                tracing::info!(
                    revision = rev,
                    "revision-compaction-retention" = retention,
                    took = %go_duration_string(start.elapsed().as_nanos() as i64),
                    "completed auto revision compaction"
                );
            }
            Err(e) => tracing::warn!(
                revision = rev,
                "revision-compaction-retention" = retention,
                "retry-interval" = %go_duration_string(REVISION_INTERVAL.as_nanos() as i64),
                error = %e,
                "failed auto revision compaction"
            ),
        }
    }
}

/// Proposes a compaction at `rev` as a client's Compact would; already compacted is success.
async fn compact(server: &EtcdServer, rev: i64) -> Result<(), EtcdError> {
    let req = InternalRaftRequest {
        compaction: Some(CompactionRequest {
            revision: rev,
            physical: false,
        }),
        ..Default::default()
    };
    match server.propose(req).await {
        Ok(_) | Err(EtcdError::Compacted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Go's `strconv.Atoi`: optional sign, decimal digits only.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go's `time.ParseDuration`, in nanoseconds, with Go's error texts.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        // The number: digits, optionally a fraction.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(invalid());
            }
        } else if int_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {s:?}"));
        }
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut v = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut f_scale = scale;
        for d in frac_part.bytes() {
            f_scale /= 10;
            if f_scale == 0 {
                break;
            }
            v += i128::from(d - b'0') * f_scale;
        }
        total += v;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
    }
    Ok(if neg { -total } else { total })
}

/// Go's `time.Duration.String`: "2h0m0s", "5s", "1.5s", "300ms", "10ns", "0s".
pub fn go_duration_string(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |v: u64, digits: u32| -> String {
        let div = 10u64.pow(digits);
        let (w, f) = (v / div, v % div);
        if f == 0 {
            w.to_string()
        } else {
            let s = format!("{f:0width$}", width = digits as usize);
            format!("{w}.{}", s.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}\u{b5}s", frac(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 6));
    }
    let secs_total = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let (h, m, s) = (secs_total / 3600, (secs_total / 60) % 60, secs_total % 60);
    let secs = frac(s * 1_000_000_000 + sub, 9);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_like_etcd() {
        use AutoCompaction::*;
        let p = |m, r| AutoCompaction::parse(m, r);
        assert_eq!(p("periodic", "0"), Ok(None));
        assert_eq!(p("periodic", "1"), Ok(Some(Periodic(HOUR))));
        assert_eq!(
            p("periodic", "5s"),
            Ok(Some(Periodic(Duration::from_secs(5))))
        );
        assert_eq!(
            p("periodic", "30m"),
            Ok(Some(Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(p("revision", "1000"), Ok(Some(Revision(1000))));
        assert_eq!(p("revision", "5m"), Ok(Some(Revision(300_000_000_000))));
        assert_eq!(
            p("periodic", "abc"),
            Err("error parsing CompactionRetention: time: invalid duration \"abc\"".into())
        );
        assert_eq!(
            p("periodic", "-1"),
            Err("error parsing CompactionRetention: time: missing unit in duration \"-1\"".into())
        );
        assert_eq!(
            p("periodic", "1.5"),
            Err("error parsing CompactionRetention: time: missing unit in duration \"1.5\"".into())
        );
        assert_eq!(
            p("periodic", "5x"),
            Err(
                "error parsing CompactionRetention: time: unknown unit \"x\" in duration \"5x\""
                    .into()
            )
        );
        assert_eq!(p("periodic", "0s"), Ok(None));
        assert_eq!(
            p("periodic", "1h30m").unwrap().unwrap().retention_string(),
            "1h30m0s"
        );
        assert_eq!(
            p("revision", "10").unwrap().unwrap().retention_string(),
            "10ns"
        );
        assert_eq!(
            check_mode("foo").unwrap(),
            "unknown auto-compaction-mode \"foo\""
        );
        assert!(check_mode("revision").is_none());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration(".5ms"), Ok(500_000));
        assert_eq!(parse_go_duration("1h2m3s4ms"), Ok(3_723_004_000_000));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration(".s").is_err());
        assert_eq!(go_duration_string(7_200_000_000_000), "2h0m0s");
        assert_eq!(go_duration_string(5_000_000_000), "5s");
        assert_eq!(go_duration_string(5_021_631_491), "5.021631491s");
        assert_eq!(go_duration_string(11_657), "11.657\u{b5}s");
        assert_eq!(go_duration_string(300_000_000), "300ms");
        assert_eq!(go_duration_string(90_000_000_000), "1m30s");
    }

    #[test]
    fn periodic_intervals_like_etcd() {
        let s = Duration::from_secs;
        assert_eq!(retry_interval(s(5)), Duration::from_millis(500));
        assert_eq!(retentions(s(5)), 11);
        assert_eq!(retry_interval(s(3600)), s(360));
        assert_eq!(retry_interval(s(24 * 3600)), s(360));
        assert_eq!(retentions(s(24 * 3600)), 241);
    }

    #[test]
    fn periodic_compacts_the_revision_one_retention_ago() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut st = PeriodicState::new(Duration::from_secs(5), t0);
        // Sample i at t = i*500ms with revision 100+i; check 500ms later.
        let mut compacted = Vec::new();
        for i in 0..40u64 {
            st.sample(100 + i as i64);
            let now = t0 + ms(500 * (i + 1));
            if let Some(rev) = st.due(now) {
                compacted.push((i, rev));
                st.succeeded(now);
            }
        }
        // First after 5s (round 9), with the first sample; then every 5s, with the sample
        // taken 10 rounds (5s) before the newest.
        assert_eq!(compacted, vec![(9, 100), (19, 109), (29, 119), (39, 129)]);
    }
}
