//! The scenarios: each named after a failure etcd's robustness tests found, injecting its
//! faults while traffic runs until the run's deadline.

use std::time::Duration;

use anyhow::Result;
use rand::Rng;

use crate::cluster::ClusterOpts;
use crate::history::Request;
use crate::run::Ctx;
use crate::traffic::TrafficConfig;
use crate::watcher::{run_stream, WatchSpec};

pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// Cluster settings beyond the defaults.
    pub setup: fn(&mut ClusterOpts),
    /// Traffic settings beyond the profile's.
    pub traffic: fn(&mut TrafficConfig),
    /// `FAILPOINTS` for member `i` (needs an oxcd built with `--features failpoints`).
    pub failpoints: fn(usize) -> Option<String>,
    /// Size of a small filesystem for the data dirs (the full-disk scenario).
    pub small_disk: Option<u64>,
    pub slow_fsync: bool,
    pub inject: fn(&mut Ctx) -> Result<()>,
}

fn no_setup(_: &mut ClusterOpts) {}
fn no_traffic(_: &mut TrafficConfig) {}
fn no_failpoints(_: usize) -> Option<String> {
    None
}

const BASE: Scenario = Scenario {
    name: "",
    about: "",
    setup: no_setup,
    traffic: no_traffic,
    failpoints: no_failpoints,
    small_disk: None,
    slow_fsync: false,
    inject: |_| Ok(()),
};

/// Every scenario, in the order the test command runs them.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "crash_under_high_load",
            about: "kill -9 of a random member or the leader under many clients, then restart",
            traffic: |t| t.clients *= 2,
            inject: crash_under_high_load,
            ..BASE
        },
        Scenario {
            name: "crash_during_compaction",
            about: "compactions while members crash between (or during) compaction batches",
            failpoints: |_| {
                Some(
                    "compact-before-commit-batch=10%return;compact-after-commit-batch=10%return"
                        .into(),
                )
            },
            setup: |o| {
                o.flags
                    .extend(["--experimental-compaction-batch-limit".into(), "50".into()])
            },
            inject: crash_during_compaction,
            ..BASE
        },
        Scenario {
            name: "crash_during_defrag",
            about:
                "defragmentation while members crash before the copy, before or after the file swap",
            failpoints: |_| {
                Some("defrag-before-copy=10%return;defrag-before-rename=30%return;defrag-after-rename=30%return".into())
            },
            inject: crash_during_defrag,
            ..BASE
        },
        Scenario {
            name: "watch_across_partition",
            about: "members (the leader too) cut off and healed while watches run on them",
            inject: watch_across_partition,
            ..BASE
        },
        Scenario {
            name: "watch_at_compaction_revision",
            about: "watches opened at, before and after the revision just compacted",
            inject: watch_at_compaction_revision,
            ..BASE
        },
        Scenario {
            name: "two_snapshots_in_short_time",
            about: "a follower cut off long enough to need a snapshot, twice in a row",
            setup: |o| o.snapshot_count = 20,
            inject: two_snapshots_in_short_time,
            ..BASE
        },
        Scenario {
            name: "leader_pause_then_reads",
            about: "the leader stopped (SIGSTOP) past an election, reads sent to it, then resumed",
            inject: leader_pause_then_reads,
            ..BASE
        },
        Scenario {
            name: "member_churn_under_load",
            about: "members removed and added back with empty data dirs under load",
            inject: member_churn_under_load,
            ..BASE
        },
        Scenario {
            name: "network_partitions",
            about: "minority, no-majority and isolated-leader partitions, delayed and lossy links",
            inject: network_partitions,
            ..BASE
        },
        Scenario {
            name: "slow_fsync",
            about: "fsync slowed to hundreds of milliseconds, members crashed while slow",
            slow_fsync: true,
            inject: slow_fsync,
            ..BASE
        },
        Scenario {
            name: "full_disk",
            about: "the data dirs' filesystem filled up, then space freed and members restarted",
            small_disk: Some(640 << 20),
            setup: |o| o.snapshot_count = 200,
            inject: full_disk,
            ..BASE
        },
    ]
}

/// The scenarios that run deliberately broken servers: the checker must report `expect`.
pub fn broken() -> Vec<(Scenario, &'static [&'static str])> {
    vec![
        (
            Scenario {
                name: "bug_stale_follower_read",
                about: "linearizable reads served without ReadIndex by cut-off followers",
                failpoints: |_| Some("bug-linearizable-read-without-read-index=return".into()),
                inject: isolate_followers,
                ..BASE
            },
            &["stale read"],
        ),
        (
            Scenario {
                name: "bug_acknowledged_put_dropped",
                about: "some puts answered without being applied",
                failpoints: |_| Some("bug-ack-put-without-apply=5%return".into()),
                inject: traffic_only,
                ..BASE
            },
            &["lost write", "stale read", "wrong read result"],
        ),
        (
            Scenario {
                name: "bug_watch_event_skipped",
                about: "watch events dropped by the server",
                failpoints: |_| Some("bug-watch-skip-event=3%return".into()),
                inject: traffic_only,
                ..BASE
            },
            &["watch gap", "event log gap", "watch event mismatch"],
        ),
    ]
}

pub fn by_name(name: &str) -> Option<Scenario> {
    all()
        .into_iter()
        .chain(broken().into_iter().map(|(s, _)| s))
        .find(|s| s.name == name)
}

fn crash_under_high_load(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(500, 1500);
        let victim = if ctx.rng.random_bool(0.5) {
            ctx.leader_or_random()
        } else {
            ctx.random_member()
        };
        ctx.fault(format!("kill -9 m{}", victim + 1));
        ctx.cluster.kill9(victim);
        ctx.wait(200, 1000);
        ctx.fault(format!("restart m{}", victim + 1));
        ctx.cluster.restart(victim)?;
    }
    Ok(())
}

/// Restarts members that died by themselves (a failpoint that aborts), logging it.
fn restart_crashed(ctx: &mut Ctx) -> Result<()> {
    for i in ctx.cluster.all() {
        if !ctx.cluster.is_running(i) {
            ctx.fault(format!("m{} crashed by itself (failpoint); restart", i + 1));
            ctx.cluster.restart(i)?;
        }
    }
    Ok(())
}

fn crash_during_compaction(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(600, 1500);
        let via = ctx.random_member();
        let physical = ctx.rng.random_bool(0.5);
        ctx.compact(via, physical);
        if ctx.rng.random_bool(0.3) {
            // Or a crash from outside while the background compactor deletes rows.
            ctx.wait(0, 80);
            let victim = ctx.random_member();
            ctx.fault(format!("kill -9 m{} during compaction", victim + 1));
            ctx.cluster.kill9(victim);
            ctx.wait(50, 300);
            ctx.cluster.restart(victim)?;
        }
        ctx.wait(100, 400);
        restart_crashed(ctx)?;
    }
    Ok(())
}

fn crash_during_defrag(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(500, 1200);
        let i = ctx.random_member();
        if ctx.rng.random_bool(0.5) {
            let via = ctx.other_than(i);
            ctx.compact(via, false);
        }
        ctx.fault(format!("defragment m{}", i + 1));
        let client = ctx.cluster.client(i);
        let kill_after = ctx
            .rng
            .random_bool(0.3)
            .then(|| ctx.rng.random_range(0..60));
        let (id, call) = ctx.recorder.begin();
        let task = ctx.cluster.runtime.spawn({
            let client = client.clone();
            async move { client.call(&Request::Defragment).await }
        });
        if let Some(ms) = kill_after {
            std::thread::sleep(Duration::from_millis(ms));
            ctx.fault(format!("kill -9 m{} during defrag", i + 1));
            ctx.cluster.kill9(i);
        }
        let outcome = ctx.cluster.runtime.block_on(task)?;
        if kill_after.is_some() {
            ctx.cluster.restart(i)?;
        }
        ctx.recorder.finish(
            id,
            crate::run::HARNESS_CLIENT,
            i,
            call,
            Request::Defragment,
            outcome,
        );
        restart_crashed(ctx)?;
    }
    Ok(())
}

fn watch_across_partition(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(400, 1200);
        let victim = if ctx.rng.random_bool(0.5) {
            ctx.leader_or_random()
        } else {
            ctx.random_member()
        };
        ctx.fault(format!("isolate m{}", victim + 1));
        ctx.cluster.network.isolate(victim, ctx.size());
        ctx.wait(1000, 3000);
        ctx.fault("heal");
        ctx.cluster.network.heal_all();
    }
    Ok(())
}

fn watch_at_compaction_revision(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(500, 1200);
        let via = ctx.random_member();
        let physical = ctx.rng.random_bool(0.5);
        let Some(rev) = ctx.compact(via, physical) else {
            continue;
        };
        // One watch per member at the compacted revision (allowed), one below it (compacted)
        // and one above it, each for a moment, recorded with the rest.
        let mut tasks = Vec::new();
        for i in ctx.cluster.all() {
            for (n, start) in [(0u32, rev), (1, rev - 1), (2, rev + 1)] {
                let spec = WatchSpec {
                    watcher: 100 + 10 * i as u32 + n,
                    key: vec![0],
                    range_end: vec![0],
                    start_revision: start,
                    prev_kv: true,
                    lifetime: Some(Duration::from_millis(700)),
                };
                let member = ctx.cluster.client(i);
                let recorder = ctx.recorder.clone();
                tasks.push(ctx.cluster.runtime.spawn(async move {
                    let stop = std::sync::atomic::AtomicBool::new(false);
                    let deadline = tokio::time::Instant::now() + spec.lifetime.unwrap_or_default();
                    run_stream(
                        &member,
                        &spec,
                        start,
                        &recorder,
                        &stop,
                        Some(deadline),
                        None,
                    )
                    .await;
                }));
            }
        }
        ctx.fault(format!("watches at {}, {} and {}", rev - 1, rev, rev + 1));
        for t in tasks {
            let _ = ctx.cluster.runtime.block_on(t);
        }
    }
    Ok(())
}

/// What a follower logs when it replaced its database with a snapshot from the leader.
const SNAPSHOT_INSTALLED: &str = "restored database from snapshot";

fn two_snapshots_in_short_time(ctx: &mut Ctx) -> Result<()> {
    let mut pairs = 0;
    while ctx.active() {
        let mut leader = ctx.leader_or_random();
        let follower = ctx.other_than(leader);
        let mut installed = 0;
        for round in 1..=2 {
            if round == 2 {
                // A leader keeps the entries after a snapshot it sent for a while (the follower
                // needs them next), so the second snapshot comes from another leader.
                let third = (0..ctx.size())
                    .find(|&m| m != leader && m != follower)
                    .unwrap_or(leader);
                ctx.fault(format!("move the leader to m{}", third + 1));
                if ctx.cluster.move_leader(leader, third).is_ok() {
                    leader = third;
                }
            }
            let before = ctx.cluster.log_count(follower, SNAPSHOT_INSTALLED);
            ctx.fault(format!("isolate m{} (snapshot {round})", follower + 1));
            ctx.cluster.network.isolate(follower, ctx.size());
            // Far enough for the leader to compact its log past the follower (20 entries).
            ctx.wait(300, 600);
            let written = ctx.burst(leader, 80);
            ctx.fault(format!("{written} puts through the leader m{}", leader + 1));
            ctx.fault("heal");
            ctx.cluster.network.heal_all();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while ctx.cluster.log_count(follower, SNAPSHOT_INSTALLED) == before
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if ctx.cluster.log_count(follower, SNAPSHOT_INSTALLED) > before {
                installed += 1;
                ctx.fault(format!("m{} installed a snapshot", follower + 1));
            }
        }
        pairs += usize::from(installed == 2);
        ctx.wait(300, 800);
    }
    anyhow::ensure!(
        pairs > 0,
        "no follower installed two snapshots in a row: the scenario did not test what it says"
    );
    Ok(())
}

fn leader_pause_then_reads(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(500, 1000);
        let leader = ctx.leader_or_random();
        ctx.fault(format!("SIGSTOP m{} (leader)", leader + 1));
        ctx.cluster.pause(leader);
        ctx.wait(1200, 3000);
        ctx.fault(format!("SIGCONT m{}", leader + 1));
        ctx.cluster.resume(leader);
    }
    Ok(())
}

fn member_churn_under_load(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(800, 1500);
        let victim = if ctx.rng.random_bool(0.3) {
            ctx.leader_or_random()
        } else {
            ctx.random_member()
        };
        let via = ctx.other_than(victim);
        ctx.fault(format!(
            "member remove m{} through m{}",
            victim + 1,
            via + 1
        ));
        if let Err(e) = ctx.cluster.remove_member(victim, via) {
            ctx.fault(format!("member remove refused: {e}"));
            continue;
        }
        ctx.wait(300, 1000);
        let via = ctx.other_than(victim);
        ctx.fault(format!("member add m{} through m{}", victim + 1, via + 1));
        let mut added = false;
        for _ in 0..10 {
            match ctx.cluster.add_member(victim, via) {
                Ok(()) => {
                    added = true;
                    break;
                }
                Err(e) => {
                    ctx.fault(format!("member add refused ({e}); retry"));
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        anyhow::ensure!(added, "m{} could not be added back", victim + 1);
        ctx.cluster.wait_leader(Duration::from_secs(20))?;
    }
    Ok(())
}

fn network_partitions(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.size();
    while ctx.active() {
        ctx.wait(300, 1000);
        match ctx.rng.random_range(0..5) {
            0 => {
                let l = ctx.leader_or_random();
                ctx.fault(format!("isolate the leader m{}", l + 1));
                ctx.cluster.network.isolate(l, n);
            }
            1 => {
                let m = ctx.random_member();
                ctx.fault(format!("minority partition: m{} alone", m + 1));
                ctx.cluster.network.isolate(m, n);
            }
            2 => {
                ctx.fault("no majority: every member cut off from every other");
                for m in 0..n {
                    ctx.cluster.network.isolate(m, n);
                }
            }
            3 => {
                let (a, b) = (ctx.random_member(), ctx.random_member());
                let base = Duration::from_millis(ctx.rng.random_range(5..60));
                ctx.fault(format!("delay m{}->m{} by {base:?} +-50%", a + 1, b + 1));
                ctx.cluster.network.delay(a, b, base, base / 2);
                ctx.cluster.network.delay(b, a, base, base / 2);
            }
            _ => {
                let (a, b) = (ctx.random_member(), ctx.other_than(0));
                ctx.fault(format!("m{}->m{} loses 2% of its chunks", a + 1, b + 1));
                ctx.cluster.network.drop_rate(a, b, 0.02);
            }
        }
        ctx.wait(800, 2500);
        ctx.fault("heal");
        ctx.cluster.network.heal_all();
    }
    Ok(())
}

fn slow_fsync(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(300, 800);
        let ms = [20u64, 100, 300][ctx.rng.random_range(0..3)];
        ctx.fault(format!("fsync delayed {ms} ms on every member"));
        if let Some(f) = &ctx.fsync {
            f.set_delay(Duration::from_millis(ms));
        }
        ctx.wait(800, 2000);
        if ctx.rng.random_bool(0.4) {
            let victim = ctx.leader_or_random();
            ctx.fault(format!("kill -9 m{} while fsync is slow", victim + 1));
            ctx.cluster.kill9(victim);
            ctx.wait(200, 600);
            ctx.cluster.restart(victim)?;
        }
        ctx.fault("fsync back to normal");
        if let Some(f) = &ctx.fsync {
            f.set_delay(Duration::ZERO);
        }
    }
    Ok(())
}

fn full_disk(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(800, 1500);
        if let Some(d) = &ctx.disk {
            d.fill(0)?;
        }
        ctx.fault(format!(
            "data filesystem filled ({} bytes left)",
            ctx.disk.as_ref().map_or(0, |d| d.available())
        ));
        ctx.wait(1000, 2500);
        if let Some(d) = &ctx.disk {
            d.free_filler()?;
        }
        ctx.fault("space freed");
        for i in ctx.cluster.all() {
            if !ctx.cluster.is_running(i) {
                ctx.fault(format!("m{} exited on the full disk; restart", i + 1));
                ctx.cluster.restart(i)?;
            }
        }
    }
    Ok(())
}

/// No fault: the bug alone must show in the history.
fn traffic_only(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        ctx.wait(200, 400);
    }
    Ok(())
}

/// Cuts one follower off at a time (the broken-read scenario: its reads go stale).
fn isolate_followers(ctx: &mut Ctx) -> Result<()> {
    while ctx.active() {
        let leader = ctx.leader_or_random();
        let f = ctx.other_than(leader);
        ctx.fault(format!("isolate m{}", f + 1));
        ctx.cluster.network.isolate(f, ctx.size());
        ctx.wait(1500, 2500);
        ctx.fault("heal");
        ctx.cluster.network.heal_all();
        ctx.wait(300, 600);
    }
    Ok(())
}
