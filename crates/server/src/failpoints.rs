//! Failpoints for the robustness harness, with the `fail` crate (tikv/fail-rs), as etcd's
//! robustness tests use gofail.
//!
//! Built only with the `failpoints` feature (`cargo build -p oxcd --features failpoints`); without
//! it every `fail_point!` compiles to nothing and [`fires`] to `false`. With it, the `oxcd` binary
//! configures them at start from the `FAILPOINTS` environment variable, fail-rs syntax:
//! `FAILPOINTS="name=action;name=action"`, an action being `[p%][cnt*]task[(arg)]` and tasks
//! chained with `->`: `defrag-before-rename=return`, `apply-after-commit=10%return`,
//! `raft-before-save=100*off->return` (the 101st time), `compact-before-commit-batch=sleep(500)`,
//! `pause`, `panic`, `off`. Unset, every point is inert.
//!
//! Crash points: their `return` action aborts the process at once ([`crash`]: no unwinding, no
//! flushing, nothing cleaned up, as close to a power loss as a process gets); the other tasks do
//! what fail-rs defines (`sleep(ms)` and `pause` stall the thread there, `panic` panics it).
//! - `raft-before-save`: node thread, a Ready with entries or a hard state, before they are
//!   written to the WAL (committed entries of that Ready may already be with the apply loop, and
//!   a leader's messages sent).
//! - `raft-after-save`: node thread, after the WAL write (and fsync), before the messages that
//!   had to wait for it are sent and the Ready is advanced.
//! - `apply-before-commit`: apply loop, a batch of entries applied to the backend write
//!   transaction (consistent index set), before it is committed.
//! - `apply-after-commit`: apply loop, after the backend commit, before watchers are notified
//!   and clients answered.
//! - `compact-before-commit-batch` / `compact-after-commit-batch`: the background compactor,
//!   around the commit of each batch of row deletions (the last one records the finished
//!   compaction).
//! - `defrag-before-copy`: online defragmentation, the temporary file created, nothing copied.
//! - `defrag-before-rename`: the copy complete and fsynced, before it is renamed over the
//!   database file (the writer lock held).
//! - `defrag-after-rename`: after the rename, the directory fsync and the switch to the new file.
//! - `snapshot-install-before-rename` / `snapshot-install-after-rename`: a raft snapshot's
//!   database file (rewritten for this member) around its rename over the backend, by the apply
//!   loop of a follower or at start-up for a snapshot the WAL has but the backend lacks; "after"
//!   is past the directory fsync, before the store switches to it.
//! - `wal-before-compact`: raft log compaction (after a snapshot), before the WAL is truncated.
//!
//! Deliberate bugs, to show the robustness checker catches them: `return` turns the bug on each
//! time the point fires (`1%return`: about one time in a hundred).
//! - `bug-linearizable-read-without-read-index`: a linearizable Range, or read-only Txn, is
//!   served from local state without the ReadIndex round (stale reads on a partitioned member).
//! - `bug-ack-put-without-apply`: a Put is answered with success (header revision = current
//!   revision + 1) without being proposed: an acknowledged write that is lost.
//! - `bug-watch-skip-event`: the watch hub drops an event it would send to a synced watcher (a
//!   gap in the watch stream); evaluated once per event and watcher.

/// Every failpoint of oxcd (the crash points, then the bugs).
pub const ALL: &[&str] = &[
    "raft-before-save",
    "raft-after-save",
    "apply-before-commit",
    "apply-after-commit",
    "compact-before-commit-batch",
    "compact-after-commit-batch",
    "defrag-before-copy",
    "defrag-before-rename",
    "defrag-after-rename",
    "snapshot-install-before-rename",
    "snapshot-install-after-rename",
    "wal-before-compact",
    BUG_READ_WITHOUT_READ_INDEX,
    BUG_ACK_PUT_WITHOUT_APPLY,
    BUG_WATCH_SKIP_EVENT,
];

pub const BUG_READ_WITHOUT_READ_INDEX: &str = "bug-linearizable-read-without-read-index";
pub const BUG_ACK_PUT_WITHOUT_APPLY: &str = "bug-ack-put-without-apply";
pub const BUG_WATCH_SKIP_EVENT: &str = "bug-watch-skip-event";

/// The `return` action of a crash point: the process dies on the spot.
#[cold]
pub fn crash(name: &str) -> ! {
    // Unbuffered, so the log shows why the member is gone.
    eprintln!("oxcd: failpoint {name} fired: aborting the process");
    std::process::abort()
}

/// A crash point: its `return` action aborts the process ([`crash`]).
macro_rules! crash_point {
    ($name:literal) => {
        fail::fail_point!($name, |_| $crate::failpoints::crash($name))
    };
}
pub(crate) use crash_point;

/// Whether the bug point `name` fires now (its `return` action; other actions do their thing and
/// answer false). Always false without the `failpoints` feature.
#[inline(always)]
pub fn fires(name: &str) -> bool {
    fail::fail_point!(name, |_| true);
    let _ = name;
    false
}

/// Configures the failpoints named in `FAILPOINTS` and logs them (warn); the returned scenario
/// must live as long as the process. Panics on a malformed `FAILPOINTS`.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    let scenario = fail::FailScenario::setup();
    let mut configured = fail::list();
    configured.sort();
    if configured.is_empty() {
        tracing::info!("built with failpoints; none configured (FAILPOINTS is not set)");
    }
    for (name, actions) in configured {
        if ALL.contains(&name.as_str()) {
            tracing::warn!(failpoint = %name, actions = %actions, "failpoint configured");
        } else {
            tracing::warn!(failpoint = %name, actions = %actions, "FAILPOINTS names none of oxcd's own failpoints (a typo, or one of raft-engine's)");
        }
    }
    scenario
}

#[cfg(test)]
mod tests {
    /// Every listed name is placed somewhere in the sources, and every placed one is listed.
    #[test]
    fn every_failpoint_is_listed_and_placed() {
        let sources = [
            include_str!("raft/node.rs"),
            include_str!("raft/storage.rs"),
            include_str!("apply.rs"),
            include_str!("mvcc/compaction.rs"),
            include_str!("mvcc/defrag.rs"),
            include_str!("mvcc/store.rs"),
            include_str!("grpc/kv.rs"),
            include_str!("mvcc/watch_hub.rs"),
        ]
        .concat();
        let mut placed: Vec<String> = sources
            .split("crash_point!(\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_string())
            .collect();
        for arg in sources.split("failpoints::fires(").skip(1) {
            let arg = arg.split(')').next().unwrap();
            let name = match arg.rsplit("::").next().unwrap() {
                "BUG_READ_WITHOUT_READ_INDEX" => super::BUG_READ_WITHOUT_READ_INDEX,
                "BUG_ACK_PUT_WITHOUT_APPLY" => super::BUG_ACK_PUT_WITHOUT_APPLY,
                "BUG_WATCH_SKIP_EVENT" => super::BUG_WATCH_SKIP_EVENT,
                other => panic!("fires({other}): not a listed bug point"),
            };
            if !placed.iter().any(|p| p == name) {
                placed.push(name.to_string());
            }
        }
        let mut listed: Vec<String> = super::ALL.iter().map(|s| s.to_string()).collect();
        placed.sort();
        listed.sort();
        assert_eq!(placed, listed);
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn fires_only_on_return() {
        let name = "test-fires-only-on-return";
        assert!(!super::fires(name));
        fail::cfg(name, "return").unwrap();
        assert!(super::fires(name));
        fail::cfg(name, "off").unwrap();
        assert!(!super::fires(name));
        fail::cfg(name, "1*return->off").unwrap();
        assert!(super::fires(name));
        assert!(!super::fires(name));
        fail::remove(name);
    }
}
