//! `oxutl`: offline operations on data dirs and snapshot files, in etcdutl's shape.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "oxutl",
    about = "A simple command line client for oxcd data files."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prints the version of oxutl
    Version,
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Version => {
            println!("oxutl version: {}", env!("CARGO_PKG_VERSION"));
            println!("API version: {}", api_version());
        }
    }
}

/// etcdutl prints the major.minor API version it speaks.
fn api_version() -> String {
    let v = oxcd_server::ETCD_VERSION;
    v.rsplit_once('.')
        .map(|(mm, _)| mm.to_string())
        .unwrap_or_else(|| v.to_string())
}
