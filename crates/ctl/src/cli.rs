//! Command line definition: etcdctl v3's commands and flags, parsed with
//! clap. Values use Go's syntax (durations like "5s", pflag booleans such as
//! `--prefix=false`, integers with 0x prefixes) so existing scripts keep
//! working, and every global flag can come from its `ETCDCTL_*` variable.

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::gostr;

fn go_bool(s: &str) -> Result<bool, String> {
    gostr::parse_bool(s)
}
fn go_duration(s: &str) -> Result<Duration, String> {
    gostr::parse_duration(s)
}
fn go_int(s: &str) -> Result<i64, String> {
    gostr::parse_int(s, 0)
}

/// oxctl: a command line client for oxcd and etcd v3 (etcdctl compatible).
#[derive(Parser, Debug)]
#[command(
    name = "oxctl",
    version,
    disable_version_flag = true,
    about = "A simple command line client for etcd3 and oxcd (etcdctl v3 compatible).",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global Options")]
pub struct GlobalArgs {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        hide_env = true
    )]
    pub endpoints: Vec<String>,

    /// dial timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s",
          value_parser = go_duration, hide_env = true)]
    pub dial_timeout: Duration,

    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s",
          value_parser = go_duration, hide_env = true)]
    pub command_timeout: Duration,

    /// keepalive time for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIME", default_value = "2s",
          value_parser = go_duration, hide_env = true)]
    pub keepalive_time: Duration,

    /// keepalive timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIMEOUT", default_value = "6s",
          value_parser = go_duration, hide_env = true)]
    pub keepalive_timeout: Duration,

    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long,
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple",
        hide_env = true
    )]
    pub write_out: String,

    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          action = ArgAction::Set, hide_env = true)]
    pub hex: bool,

    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_USER",
        default_value = "",
        hide_env = true,
        hide_default_value = true
    )]
    pub user: String,

    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_PASSWORD",
        default_value = "",
        hide_env = true,
        hide_default_value = true
    )]
    pub password: String,

    /// disable transport security for client connections
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true",
          value_parser = go_bool, action = ArgAction::Set, hide_env = true)]
    pub insecure_transport: bool,

    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false",
          value_parser = go_bool, action = ArgAction::Set, hide_env = true)]
    pub insecure_skip_tls_verify: bool,

    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true",
          value_parser = go_bool, action = ArgAction::Set, hide_env = true)]
    pub insecure_discovery: bool,

    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT", hide_env = true)]
    pub cacert: Option<String>,

    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT", hide_env = true)]
    pub cert: Option<String>,

    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY", hide_env = true)]
    pub key: Option<String>,

    /// domain name to query for SRV records describing cluster endpoints
    #[arg(
        short = 'd',
        long,
        global = true,
        env = "ETCDCTL_DISCOVERY_SRV",
        default_value = "",
        hide_env = true,
        hide_default_value = true
    )]
    pub discovery_srv: String,

    /// service name to query when using DNS discovery
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_DISCOVERY_SRV_NAME",
        default_value = "",
        hide_env = true,
        hide_default_value = true
    )]
    pub discovery_srv_name: String,

    /// enable client-side debug logging
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          action = ArgAction::Set, hide_env = true)]
    pub debug: bool,

    /// Global flags given on the command line, as ETCDCTL_* suffixes
    /// (filled in after parsing; used for etcd's env conflict check).
    #[arg(skip)]
    pub cli_set: Vec<String>,
}

/// Ids of the global flags (clap ids are the field names).
pub const GLOBAL_IDS: [&str; 18] = [
    "endpoints",
    "dial_timeout",
    "command_timeout",
    "keepalive_time",
    "keepalive_timeout",
    "write_out",
    "hex",
    "user",
    "password",
    "insecure_transport",
    "insecure_skip_tls_verify",
    "insecure_discovery",
    "cacert",
    "cert",
    "key",
    "discovery_srv",
    "discovery_srv_name",
    "debug",
];

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Puts the given key into the store
    Put(PutArgs),
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(TxnArgs),
    /// Compacts the event history in etcd
    Compaction(CompactionArgs),
    /// Watches events stream on keys or prefixes
    Watch(WatchArgs),
    /// Lease related commands
    Lease {
        #[command(subcommand)]
        cmd: LeaseCmd,
    },
    /// Endpoint related commands
    Endpoint(EndpointArgs),
    /// Membership related commands
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// Alarm related commands
    Alarm {
        #[command(subcommand)]
        cmd: AlarmCmd,
    },
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(DefragArgs),
    /// Observes and participates in leader election
    Elect(ElectArgs),
    /// Acquires a named lock
    Lock(LockArgs),
    /// commands for checking properties of the etcd cluster
    #[command(override_usage = "oxctl check <subcommand>")]
    Check {
        #[command(subcommand)]
        cmd: CheckCmd,
    },
    /// Manages etcd node snapshots
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Enable or disable authentication
    #[command(override_usage = "oxctl auth <enable or disable>")]
    Auth {
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// User related commands
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Role related commands
    Role {
        #[command(subcommand)]
        cmd: RoleCmd,
    },
    #[command(
        about = "Transfers leadership to another etcd cluster member.",
        override_usage = "oxctl move-leader <transferee-member-id>"
    )]
    MoveLeader(Rest),
    /// Makes a mirror at the destination etcd cluster
    #[command(override_usage = "oxctl make-mirror [options] <destination>")]
    MakeMirror(MakeMirrorArgs),
    /// Prints the version of etcdctl
    Version(Rest),
}

/// Positional arguments only; etcdctl checks their number itself.
#[derive(Args, Debug)]
pub struct Rest {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// `make-mirror`: the destination's own TLS flags and the key prefixes.
#[derive(Args, Debug, Clone)]
pub struct MakeMirrorArgs {
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long, default_value = "", hide_default_value = true)]
    pub dest_cacert: String,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long, default_value = "", hide_default_value = true)]
    pub dest_cert: String,
    /// Identify secure client using this TLS key file
    #[arg(long, default_value = "", hide_default_value = true)]
    pub dest_key: String,
    /// Disable transport security for client connections
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub dest_insecure_transport: bool,
    /// Key-value prefix to mirror
    #[arg(long, default_value = "", hide_default_value = true)]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "", hide_default_value = true)]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub no_dest_prefix: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// Puts the given key into the store.
///
/// When <value> begins with '-', <value> is interpreted as a flag.
/// Insert '--' for workaround:
///
/// $ put <key> -- <value>
/// $ put -- <key> <value>
///
/// If <value> isn't given as a command line argument and '--ignore-value' is not specified,
/// this command tries to read the value from standard input.
#[derive(Args, Debug)]
#[command(
    override_usage = "oxctl put [options] <key> <value> (<value> can also be given from stdin)"
)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub ignore_lease: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "oxctl get [options] <key> [range_end]")]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "", hide_default_value = true)]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "", hide_default_value = true)]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value = "0", value_parser = go_int, allow_negative_numbers = true)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value = "0", value_parser = go_int, allow_negative_numbers = true)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub keys_only: bool,
    /// Get only the count
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub print_value_only: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "oxctl del [options] <key> [range_end]")]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub from_key: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// Txn reads multiple etcd requests from standard input and applies them as a single atomic transaction.
///
/// A transaction consists of three components:
/// 1) a list of conditions,
/// 2) a list of requests to apply if all the conditions are true,
/// 3) a list of requests to apply if any condition is false.
#[derive(Args, Debug)]
#[command(override_usage = "oxctl txn [options]")]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          action = ArgAction::Set)]
    pub interactive: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "oxctl compaction [options] <revision>")]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub physical: bool,
    #[arg(allow_negative_numbers = true, hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
#[command(
    override_usage = "oxctl watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]"
)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          action = ArgAction::Set)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value = "0", value_parser = go_int, allow_negative_numbers = true)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prev_kv: bool,
    /// get periodic watch progress notification from server
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub progress_notify: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "oxctl elect <election-name> [proposal] [flags]")]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          action = ArgAction::Set)]
    pub listen: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "oxctl lock <lockname> [exec-command arg1 arg2 ...] [flags]")]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value = "10", value_parser = go_int, allow_negative_numbers = true)]
    pub ttl: i64,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum LeaseCmd {
    /// Creates leases
    #[command(override_usage = "oxctl lease grant <ttl>")]
    Grant(Rest),
    /// Revokes leases
    #[command(override_usage = "oxctl lease revoke <leaseID>")]
    Revoke(Rest),
    /// Get lease information
    #[command(override_usage = "oxctl lease timetolive <leaseID> [options]")]
    Timetolive(TimeToLiveArgs),
    /// List all active leases
    List(Rest),
    /// Keeps leases alive (renew)
    #[command(
        name = "keep-alive",
        override_usage = "oxctl lease keep-alive [options] <leaseID>"
    )]
    KeepAlive(KeepAliveArgs),
}

#[derive(Args, Debug)]
pub struct TimeToLiveArgs {
    /// Get keys attached to this lease
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub keys: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KeepAliveArgs {
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub once: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          action = ArgAction::Set)]
    pub cluster: bool,
    #[command(subcommand)]
    pub cmd: EndpointCmd,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCmd {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health(Rest),
    /// Prints out the status of endpoints specified in `--endpoints` flag
    ///
    /// When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
    /// The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.
    Status(Rest),
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv(HashKvArgs),
}

#[derive(Args, Debug)]
pub struct HashKvArgs {
    /// maximum revision to hash (default: all revisions)
    #[arg(long, default_value = "0", value_parser = go_int, allow_negative_numbers = true)]
    pub rev: i64,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Adds a member into the cluster
    #[command(override_usage = "oxctl member add <memberName> [options]")]
    Add(MemberAddArgs),
    /// Removes a member from the cluster
    #[command(override_usage = "oxctl member remove <memberID>")]
    Remove(Rest),
    /// Updates a member in the cluster
    #[command(override_usage = "oxctl member update <memberID> [options]")]
    Update(MemberUpdateArgs),
    /// Promotes a non-voting member in the cluster
    ///
    /// Promotes a non-voting learner member to a voting one in the cluster.
    #[command(override_usage = "oxctl member promote <memberID>")]
    Promote(Rest),
    /// Lists all members in the cluster
    ///
    /// When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
    /// The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.
    List(Rest),
}

#[derive(Args, Debug)]
pub struct MemberAddArgs {
    #[arg(
        long,
        default_value = "",
        hide_default_value = true,
        help = "comma separated peer URLs for the new member."
    )]
    pub peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub learner: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MemberUpdateArgs {
    #[arg(
        long,
        default_value = "",
        hide_default_value = true,
        help = "comma separated peer URLs for the updated member."
    )]
    pub peer_urls: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AlarmCmd {
    /// Lists all alarms
    List(Rest),
    /// Disarms all alarms
    Disarm(Rest),
}

#[derive(Args, Debug)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub cluster: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// Check the performance of the etcd cluster
    #[command(override_usage = "oxctl check perf [options]")]
    Perf(CheckPerfArgs),
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    #[command(
        override_usage = "oxctl check datascale [options]",
        long_about = "If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used."
    )]
    Datascale(CheckDatascaleArgs),
}

#[derive(Args, Debug)]
pub struct CheckPerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub auto_defrag: bool,
}

#[derive(Args, Debug)]
pub struct CheckDatascaleArgs {
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the datascale check's keys.
    #[arg(long, default_value = "/etcdctl-check-datascale/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub auto_defrag: bool,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Restores an etcd member snapshot to an etcd directory
    #[command(override_usage = "oxctl snapshot restore <filename> [options]")]
    Restore(SnapshotRestoreArgs),
    /// Stores an etcd node backend snapshot to a given file
    #[command(override_usage = "oxctl snapshot save <filename> [--format oxcd|etcd]")]
    Save(SnapshotSaveArgs),
    /// Gets backend snapshot status of a given file
    #[command(override_usage = "oxctl snapshot status <filename>")]
    Status(Rest),
}

#[derive(Args, Debug)]
pub struct SnapshotSaveArgs {
    /// File format: oxcd (the server's backend as it sends it, the default) or etcd (an etcd
    /// 3.4 bbolt snapshot, which `etcdctl snapshot restore` accepts)
    #[arg(long, default_value = "oxcd")]
    pub format: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SnapshotRestoreArgs {
    /// Path to the data directory
    #[arg(long, default_value = "", hide_default_value = true)]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long, default_value = "", hide_default_value = true)]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_hash_check: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Enables authentication
    Enable(Rest),
    /// Disables authentication
    Disable(Rest),
    /// Returns authentication status
    Status(Rest),
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Adds a new user
    #[command(override_usage = "oxctl user add <user name or user:password> [options]")]
    Add(UserAddArgs),
    /// Deletes a user
    #[command(override_usage = "oxctl user delete <user name>")]
    Delete(Rest),
    /// Gets detailed information of a user
    #[command(override_usage = "oxctl user get <user name> [options]")]
    Get(UserGetArgs),
    /// Lists all users
    List(Rest),
    /// Changes password of user
    #[command(override_usage = "oxctl user passwd <user name> [options]")]
    Passwd(UserPasswdArgs),
    /// Grants a role to a user
    #[command(override_usage = "oxctl user grant-role <user name> <role name>")]
    GrantRole(Rest),
    /// Revokes a role from a user
    #[command(override_usage = "oxctl user revoke-role <user name> <role name>")]
    RevokeRole(Rest),
}

#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// Read password from stdin instead of interactive terminal
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub interactive: bool,
    /// Supply password from the command line flag
    #[arg(long, default_value = "", hide_default_value = true)]
    pub new_user_password: String,
    /// Create a user without password (CN based auth only)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub no_password: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UserGetArgs {
    /// Show permissions of roles granted to the user
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub detail: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UserPasswdArgs {
    /// If true, read password from stdin instead of interactive terminal
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub interactive: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// Adds a new role
    #[command(override_usage = "oxctl role add <role name>")]
    Add(Rest),
    /// Deletes a role
    #[command(override_usage = "oxctl role delete <role name>")]
    Delete(Rest),
    /// Gets detailed information of a role
    #[command(override_usage = "oxctl role get <role name>")]
    Get(Rest),
    /// Lists all roles
    List(Rest),
    /// Grants a key to a role
    #[command(
        override_usage = "oxctl role grant-permission [options] <role name> <permission type> <key> [endkey]"
    )]
    GrantPermission(PermArgs),
    /// Revokes a key from a role
    #[command(override_usage = "oxctl role revoke-permission <role name> <key> [endkey]")]
    RevokePermission(RevokePermArgs),
}

#[derive(Args, Debug)]
pub struct PermArgs {
    /// grant a prefix permission
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prefix: bool,
    /// grant a permission of keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub from_key: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RevokePermArgs {
    /// revoke a prefix permission
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub prefix: bool,
    /// revoke a permission of keys that are greater than or equal to the given key using byte compare
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub from_key: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}
