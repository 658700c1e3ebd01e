//! oxctl: the etcdctl v3 command line client for oxcd (and etcd).
//!
//! Same commands, flags, `ETCDCTL_*` variables, output formats and exit
//! codes as etcdctl, so scripts written for etcdctl keep working.

mod argify;
mod clap_err;
mod cli;
mod client;
mod cmd;
mod error;
mod global;
mod gostr;
mod gostr_time;
mod print;
mod usage;

use std::io::Write;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use cli::{Cli, Command};
use error::Result;

async fn dispatch(cli: &Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.cmd {
        Command::Put(a) => cmd::put::run(g, a).await,
        Command::Get(a) => cmd::get::run(g, a).await,
        Command::Del(a) => cmd::del::run(g, a).await,
        Command::Txn(a) => cmd::txn::run(g, a).await,
        Command::Compaction(a) => cmd::compaction::run(g, a).await,
        Command::Watch(a) => cmd::watch::run(g, a).await,
        Command::Lease { cmd } => cmd::lease::run(g, cmd).await,
        Command::Endpoint(a) => cmd::endpoint::run(g, a).await,
        Command::Member { cmd } => cmd::member::run(g, cmd).await,
        Command::Alarm { cmd } => cmd::alarm::run(g, cmd).await,
        Command::Defrag(a) => cmd::defrag::run(g, a).await,
        Command::Elect(a) => cmd::elect::run(g, a).await,
        Command::Lock(a) => cmd::lock::run(g, a).await,
        Command::Check { cmd } => cmd::check::run(g, cmd).await,
        Command::Snapshot { cmd } => cmd::snapshot::run(g, cmd, command_timeout_set()).await,
        Command::Auth { cmd } => cmd::auth::run(g, cmd).await,
        Command::User { cmd } => cmd::user::run(g, cmd).await,
        Command::Role { cmd } => cmd::role::run(g, cmd).await,
        Command::MoveLeader(a) => cmd::move_leader::run(g, a).await,
        Command::MakeMirror(a) => cmd::make_mirror::run(g, a).await,
        Command::Version(_) => {
            cmd::version::run();
            Ok(())
        }
    }
}

/// Whether the user chose a command timeout (snapshot save only applies
/// one then).
fn command_timeout_set() -> bool {
    std::env::var_os("ETCDCTL_COMMAND_TIMEOUT").is_some()
        || std::env::args().any(|a| a == "--command-timeout" || a.starts_with("--command-timeout="))
}

/// Global flags the user typed (clap propagates globals to the leaf
/// subcommand's matches).
fn flags_on_command_line(m: &ArgMatches) -> Vec<String> {
    let mut leaf = m;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    cli::GLOBAL_IDS
        .iter()
        .filter(|id| {
            leaf.try_get_raw(id).ok().flatten().is_some()
                && leaf.value_source(id) == Some(ValueSource::CommandLine)
        })
        .map(|id| id.to_uppercase())
        .collect()
}

fn run() -> i32 {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_err::report(e),
    };
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return clap_err::report(e),
    };
    cli.global.cli_set = flags_on_command_line(&matches);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return error::EXIT_ERROR;
        }
    };
    let res = rt.block_on(dispatch(&cli));
    let _ = std::io::stdout().flush();
    match res {
        Ok(()) => 0,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            if let Some(raw) = &e.raw_stderr {
                let _ = err.write_all(raw.as_bytes());
            }
            if !e.silent {
                let _ = writeln!(err, "Error: {}", e.msg);
            }
            e.code
        }
    }
}

fn main() {
    let code = run();
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
