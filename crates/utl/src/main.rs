//! `oxutl`: offline operations on data dirs and snapshot files, in etcdutl's shape.
//!
//! - `snapshot status FILE [-w simple|table|json|fields]`: hash, revision, total keys, size;
//! - `snapshot restore FILE --name --initial-cluster --initial-cluster-token
//!   --initial-advertise-peer-urls --data-dir [--wal-dir] [--skip-hash-check]`: the data dir of
//!   a member of a new cluster holding the snapshot's data.
//!
//! - `snapshot convert --format etcd|oxcd IN OUT [--skip-hash-check]`: the snapshot IN in the
//!   other format: etcd 3.4's (a bbolt file, for `etcdctl snapshot restore`) or oxcd's.
//!
//! - `defrag --data-dir DIR`: rewrites the stopped member's backend into a packed file.
//!
//! - `pki ca|issue|show|crl`: a certificate authority for the cluster's TLS (see `pki.rs`).
//!
//! Both snapshot commands share `oxcd_server::backup` with `oxctl snapshot ...`, so the two print the same.

mod pki;

use clap::{ArgAction, Args, Parser, Subcommand};
use oxcd_server::backup::{self, log::Sink, RestoreOptions};

/// etcdctl's ExitBadArgs.
const EXIT_BAD_ARGS: i32 = 128;

#[derive(Parser)]
#[command(
    name = "oxutl",
    about = "A simple command line client for oxcd data files."
)]
struct Cli {
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long, global = true, default_value = "simple")]
    write_out: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Defragments the storage of the etcd
    Defrag(DefragArgs),
    /// Manages etcd node snapshots
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Makes and inspects TLS certificates: a CA, server/peer/client certificates, CRLs
    Pki {
        #[command(subcommand)]
        cmd: pki::PkiCmd,
    },
    /// Prints the version of oxutl
    Version,
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Restores an etcd member snapshot to an etcd directory
    #[command(override_usage = "oxutl snapshot restore <filename> [options]")]
    Restore(RestoreArgs),
    /// Gets backend snapshot status of a given file
    #[command(
        override_usage = "oxutl snapshot status <filename>",
        long_about = "Gets backend snapshot status of a given file\n\n\
            When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\n\
            The items in the lists are hash, revision, total keys, total size."
    )]
    Status(FileArgs),
    /// Converts a snapshot file between oxcd's format and etcd 3.4's (bbolt)
    #[command(
        override_usage = "oxutl snapshot convert --format <etcd|oxcd> <input> <output> [--skip-hash-check]",
        long_about = "Converts a snapshot file between oxcd's format and etcd 3.4's (bbolt)\n\n\
            The input's format is recognised from its bytes; --format names the output's. An etcd\n\
            snapshot written here (a bbolt database followed by its SHA-256) is accepted by\n\
            `etcdctl snapshot status` and `etcdctl snapshot restore`; an oxcd one by `oxutl snapshot\n\
            restore`. Both `snapshot status` and `snapshot restore` of oxutl also accept etcd\n\
            snapshots directly."
    )]
    Convert(ConvertArgs),
}

#[derive(Args)]
struct ConvertArgs {
    /// Output format: etcd (etcd 3.4's bbolt snapshot) or oxcd
    #[arg(long)]
    format: String,
    /// Ignore the input's integrity hash (required if copied from a data directory)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    skip_hash_check: bool,
    #[arg(hide = true)]
    args: Vec<String>,
}

#[derive(Args)]
struct DefragArgs {
    /// Required. Defragments a data directory not in use by etcd.
    #[arg(long, default_value = "", hide_default_value = true)]
    data_dir: String,
}

#[derive(Args)]
struct FileArgs {
    #[arg(hide = true)]
    args: Vec<String>,
}

/// Go's strconv.ParseBool, as pflag reads `--flag=value`.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

#[derive(Args)]
struct RestoreArgs {
    /// Path to the data directory
    #[arg(long, default_value = "", hide_default_value = true)]
    data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long, default_value = "", hide_default_value = true)]
    wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    skip_hash_check: bool,
    #[arg(hide = true)]
    args: Vec<String>,
}

/// What a failed command prints (`Error: ...` on stderr) and exits with.
struct Failure {
    code: i32,
    msg: String,
}

impl From<backup::Error> for Failure {
    fn from(e: backup::Error) -> Failure {
        Failure {
            code: e.code,
            msg: e.msg,
        }
    }
}

fn one_arg(args: &[String], cmd: &str) -> Result<String, Failure> {
    match args {
        [one] => Ok(one.clone()),
        _ => Err(Failure {
            code: EXIT_BAD_ARGS,
            msg: format!("snapshot {cmd} requires exactly one argument"),
        }),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::Defrag(a) => defrag(&a.data_dir),
        Cmd::Pki { cmd } => pki::run(cmd, &cli.write_out),
        Cmd::Version => {
            println!("oxutl version: {}", env!("CARGO_PKG_VERSION"));
            println!("API version: {}", api_version());
            Ok(())
        }
        Cmd::Snapshot {
            cmd: SnapshotCmd::Status(a),
        } => {
            let file = one_arg(&a.args, "status")?;
            if !matches!(
                cli.write_out.as_str(),
                "simple" | "json" | "fields" | "protobuf" | "table"
            ) {
                return Err(Failure {
                    code: backup::EXIT_BAD_FEATURE,
                    msg: "unsupported output format".into(),
                });
            }
            let st = backup::status(std::path::Path::new(&file))?;
            print!("{}", backup::render_status(&st, &cli.write_out)?);
            Ok(())
        }
        Cmd::Snapshot {
            cmd: SnapshotCmd::Convert(a),
        } => {
            let [input, output] = &a.args[..] else {
                return Err(Failure {
                    code: EXIT_BAD_ARGS,
                    msg: "snapshot convert requires an input and an output file".into(),
                });
            };
            let to: backup::convert::Format = a.format.parse()?;
            backup::convert::convert(input.as_ref(), output.as_ref(), to, a.skip_hash_check)?;
            println!("Snapshot converted to {} at {output}", a.format);
            Ok(())
        }
        Cmd::Snapshot {
            cmd: SnapshotCmd::Restore(a),
        } => {
            let file = one_arg(&a.args, "restore")?;
            backup::restore(&RestoreOptions {
                name: a.name,
                initial_cluster: a.initial_cluster,
                initial_cluster_token: a.initial_cluster_token,
                initial_advertise_peer_urls: a.initial_advertise_peer_urls,
                data_dir: a.data_dir,
                wal_dir: a.wal_dir,
                skip_hash_check: a.skip_hash_check,
                log: Sink::Stderr,
                ..RestoreOptions::new(file)
            })?;
            Ok(())
        }
    }
}

/// etcdutl's `defrag --data-dir`: nothing on stdout, its log lines on stderr.
fn defrag(data_dir: &str) -> Result<(), Failure> {
    use oxcd_server::backup::humanize_bytes;
    use oxcd_server::backup_caller;
    use serde_json::Value;
    if data_dir.is_empty() {
        return Err(Failure {
            code: 1,
            msg: "required flag(s) \"data-dir\" not set".into(),
        });
    }
    let fail = |why: String| Failure {
        code: 1,
        msg: format!("Failed to defragment etcd data[{data_dir}] ({why})"),
    };
    let db = std::path::Path::new(data_dir)
        .join("member")
        .join("snap")
        .join("db");
    let size = match std::fs::metadata(&db) {
        Ok(m) => m.len(),
        Err(_) => {
            return Err(fail(format!(
                "open {}: no such file or directory",
                db.display()
            )))
        }
    };
    let path = Value::from(db.display().to_string());
    let start = std::time::Instant::now();
    Sink::Stderr.info(
        &backup_caller!(),
        "defragmenting",
        &[
            ("path", path.clone()),
            ("current-db-size-bytes", Value::from(size)),
            ("current-db-size", Value::from(humanize_bytes(size))),
        ],
    );
    let (before, after) = oxcd_server::mvcc::defrag_file(&db).map_err(|e| fail(e.to_string()))?;
    Sink::Stderr.info(
        &backup_caller!(),
        "finished defragmenting directory",
        &[
            ("path", path),
            (
                "current-db-size-bytes-diff",
                Value::from(after as i64 - before as i64),
            ),
            ("current-db-size-bytes", Value::from(after)),
            ("current-db-size", Value::from(humanize_bytes(after))),
            ("took", Value::from(format!("{:?}", start.elapsed()))),
        ],
    );
    Ok(())
}

fn main() {
    if let Err(f) = run(Cli::parse()) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!("Error: {}", f.msg);
        std::process::exit(f.code);
    }
}

/// etcdutl prints the major.minor API version it speaks.
fn api_version() -> String {
    let v = oxcd_server::ETCD_VERSION;
    v.rsplit_once('.')
        .map(|(mm, _)| mm.to_string())
        .unwrap_or_else(|| v.to_string())
}
