//! The robustness harness from the command line:
//!
//! ```text
//! oxcd-robustness list
//! oxcd-robustness run NAME [--seed N] [--seconds S]      one run (replays a seed)
//! oxcd-robustness soak [--duration 1h] [--seconds S] [--scenario NAME]...
//! oxcd-robustness check FILE                              check a saved history again
//! ```
//!
//! It runs the oxcd of the workspace's debug build (`cargo build --features oxcd/failpoints`
//! first; `OXCD_BIN` overrides).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use oxcd_robustness::check::check;
use oxcd_robustness::history::History;
use oxcd_robustness::run::{run, Profile, RunResult};
use oxcd_robustness::scenarios;

fn usage() -> ExitCode {
    eprintln!(
        "usage: oxcd-robustness list\n       oxcd-robustness run NAME [--seed N] [--seconds S]\n       oxcd-robustness soak [--duration 1h] [--seconds S] [--scenario NAME]...\n       oxcd-robustness check FILE"
    );
    ExitCode::from(2)
}

/// `--flag value` pairs after the positional arguments.
fn option<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        return usage();
    };
    match cmd.as_str() {
        "list" => {
            for s in scenarios::all() {
                println!("{:32} {}", s.name, s.about);
            }
            for (s, expected) in scenarios::broken() {
                println!(
                    "{:32} {} (broken server; expect {expected:?})",
                    s.name, s.about
                );
            }
            ExitCode::SUCCESS
        }
        "run" => {
            let Some(name) = args.get(1) else {
                return usage();
            };
            let Some(scenario) = scenarios::by_name(name) else {
                eprintln!("no scenario {name}; see `oxcd-robustness list`");
                return ExitCode::from(2);
            };
            let seed = option(&args, "--seed")
                .first()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(fresh_seed);
            let mut profile = Profile::short();
            if let Some(s) = option(&args, "--seconds")
                .first()
                .and_then(|s| s.parse().ok())
            {
                profile.duration = Duration::from_secs(s);
            }
            match run(&scenario, seed, &profile) {
                Ok(r) => report_run(&r),
                Err(e) => {
                    eprintln!("scenario {name} seed {seed} could not run: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        "soak" => soak(&args),
        "check" => {
            let Some(path) = args.get(1) else {
                return usage();
            };
            let history: History = match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    return ExitCode::from(2);
                }
            };
            let report = check(&history);
            println!("{report}");
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => usage(),
    }
}

fn report_run(r: &RunResult) -> ExitCode {
    println!(
        "scenario {} seed {}: {} operations, {} watch streams, {} faults, final revision {}",
        r.scenario,
        r.seed,
        r.history.ops.len(),
        r.history.watches.len(),
        r.faults.len(),
        r.history.final_revision
    );
    for f in &r.faults {
        println!("  {f}");
    }
    if r.report.is_ok() {
        println!("{}", r.report);
        ExitCode::SUCCESS
    } else {
        println!("{}", r.failure());
        ExitCode::FAILURE
    }
}

/// Runs the scenarios round-robin with fresh seeds until the duration is used up, and reports
/// runs, operations, faults injected and anomalies found.
fn soak(args: &[String]) -> ExitCode {
    let duration = option(args, "--duration")
        .first()
        .map(|d| humantime::parse_duration(d))
        .transpose();
    let duration = match duration {
        Ok(d) => d.unwrap_or(Duration::from_secs(3600)),
        Err(e) => {
            eprintln!("--duration: {e}");
            return ExitCode::from(2);
        }
    };
    let per_run = option(args, "--seconds")
        .first()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);
    let names = option(args, "--scenario");
    let chosen: Vec<_> = scenarios::all()
        .into_iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .collect();
    if chosen.is_empty() {
        eprintln!("no scenario chosen; see `oxcd-robustness list`");
        return ExitCode::from(2);
    }
    let profile = Profile::soak(per_run);
    let started = Instant::now();
    let (mut runs, mut ops, mut faults, mut anomalies, mut errors) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut i = 0;
    while started.elapsed() < duration {
        let scenario = &chosen[i % chosen.len()];
        i += 1;
        let seed = fresh_seed();
        let t = Instant::now();
        match run(scenario, seed, &profile) {
            Ok(r) => {
                runs += 1;
                ops += r.history.ops.len();
                faults += r.faults.len();
                anomalies += r.report.anomalies.len();
                println!(
                    "[{:>6.0}s] {:32} seed {:20} {:>7} ops {:>4} faults {:>3} anomalies ({:.0}s)",
                    started.elapsed().as_secs_f64(),
                    r.scenario,
                    seed,
                    r.history.ops.len(),
                    r.faults.len(),
                    r.report.anomalies.len(),
                    t.elapsed().as_secs_f64()
                );
                if !r.report.is_ok() {
                    println!("{}", r.failure());
                }
            }
            Err(e) => {
                errors += 1;
                println!(
                    "[{:>6.0}s] {:32} seed {:20} could not run: {e:#}",
                    started.elapsed().as_secs_f64(),
                    scenario.name,
                    seed
                );
            }
        }
    }
    println!(
        "soak: {:.0} s, {runs} runs, {ops} operations, {faults} faults injected, {anomalies} anomalies found, {errors} runs that could not complete",
        started.elapsed().as_secs_f64()
    );
    if anomalies == 0 && errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
