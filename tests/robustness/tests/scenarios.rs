//! The short profile of every robustness scenario (run by the test command), and the proof that
//! the checker catches deliberately broken servers.
//!
//! Each run prints its seed; `OXCD_ROBUSTNESS_SEED=N` replays one. The scenarios share the
//! machine's two cores, so they run one at a time.

use std::sync::Mutex;

use oxcd_robustness::run::{run, Profile, RunResult};
use oxcd_robustness::scenarios::{self, Scenario};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn seed() -> u64 {
    match std::env::var("OXCD_ROBUSTNESS_SEED") {
        Ok(s) => s.parse().expect("OXCD_ROBUSTNESS_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn run_one(scenario: &Scenario) -> Option<RunResult> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    eprintln!("scenario {} seed {seed}: {}", scenario.name, scenario.about);
    match run(scenario, seed, &Profile::short()) {
        Ok(r) => {
            eprintln!(
                "scenario {} seed {seed}: {} operations, {} watch streams, {} faults, final revision {}\n  {}",
                scenario.name,
                r.history.ops.len(),
                r.history.watches.len(),
                r.faults.len(),
                r.history.final_revision,
                r.faults.join("\n  ")
            );
            Some(r)
        }
        Err(e)
            if scenario.small_disk.is_some() && format!("{e:#}").contains("small filesystem") =>
        {
            eprintln!("scenario {} skipped: {e:#}", scenario.name);
            None
        }
        Err(e) => panic!(
            "scenario {} seed {seed} could not run: {e:#}",
            scenario.name
        ),
    }
}

fn scenario(name: &str) {
    let s = scenarios::by_name(name).expect("a scenario of that name");
    if let Some(r) = run_one(&s) {
        assert!(r.report.is_ok(), "{}", r.failure());
        assert!(
            r.report.writes_acknowledged > 0,
            "scenario {} acknowledged no write: the traffic did not run\n{}",
            name,
            r.report
        );
    }
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scenario(stringify!($name));
            }
        )*
    };
}

scenario_tests!(
    crash_under_high_load,
    crash_during_compaction,
    crash_during_defrag,
    watch_across_partition,
    watch_at_compaction_revision,
    two_snapshots_in_short_time,
    leader_pause_then_reads,
    member_churn_under_load,
    network_partitions,
    slow_fsync,
    full_disk,
);

/// A broken server must be caught: the check reports one of the expected anomaly kinds.
fn caught(name: &str) {
    let (s, expected) = scenarios::broken()
        .into_iter()
        .find(|(s, _)| s.name == name)
        .expect("a broken scenario of that name");
    let r = run_one(&s).expect("the broken scenarios need no special filesystem");
    let kinds: Vec<&str> = r.report.anomalies.iter().map(|a| a.kind).collect();
    assert!(
        kinds.iter().any(|k| expected.contains(k)),
        "the checker missed the bug of {name} (expected one of {expected:?}, found {kinds:?}); \
         is oxcd built with --features failpoints?\n{}",
        r.report
    );
    eprintln!("{name}: caught as {kinds:?}\n{}", r.failure());
}

#[test]
fn checker_catches_stale_follower_reads() {
    caught("bug_stale_follower_read");
}

#[test]
fn checker_catches_dropped_acknowledged_puts() {
    caught("bug_acknowledged_put_dropped");
}

#[test]
fn checker_catches_skipped_watch_events() {
    caught("bug_watch_event_skipped");
}
