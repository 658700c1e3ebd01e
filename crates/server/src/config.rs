//! Server configuration: etcd's flag names, defaults and `ETCD_*` environment variables,
//! parsed into one validated `Config`.
//!
//! Flags are read the way etcd reads them with Go's `flag` package (`-name` or `--name`,
//! `--name=v` or `--name v`, numbers in Go syntax), and every flag `--some-flag` can instead be
//! given as the variable `ETCD_SOME_FLAG`. Bad input fails with etcd's texts and exit codes
//! (see `FlagError`).

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

/// Command-line flags, named as etcd names them so existing unit files and scripts work.
/// Parse them with `parse_flags`, which also reads the `ETCD_*` variables.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "oxcd",
    about = "oxcd: a distributed, reliable key-value store, compatible with etcd v3",
    disable_version_flag = true
)]
pub struct Flags {
    /// Print the version and exit.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        hide_default_value = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub version: bool,

    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,

    /// Path to the data directory (default: "<name>.etcd").
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Path to the dedicated WAL directory (default: <data-dir>/member/wal).
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,

    /// Comma-separated URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379", value_parser = url_list)]
    pub listen_client_urls: String,

    /// Comma-separated client URLs of this member, advertised to the cluster and clients.
    #[arg(long, default_value = "http://localhost:2379", value_parser = url_list)]
    pub advertise_client_urls: String,

    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380", value_parser = url_list)]
    pub listen_peer_urls: String,

    /// Comma-separated peer URLs of this member, advertised to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_parser = url_list)]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping: name=peerURL,...
    /// (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long)]
    pub initial_cluster: Option<String>,

    /// Initial cluster state ("new" or "existing").
    #[arg(long, default_value = "new", value_parser = cluster_state)]
    pub initial_cluster_state: String,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Number of committed transactions that trigger a snapshot (and raft log compaction).
    #[arg(long, default_value = "100000", value_parser = go_uint)]
    pub snapshot_count: u64,

    /// Maximum number of snapshot files to retain (0 is unlimited).
    #[arg(long, default_value = "5", value_parser = go_uint)]
    pub max_snapshots: u64,

    /// Maximum number of WAL files to retain (0 is unlimited). Accepted for etcd compatibility:
    /// raft-engine deletes a log file as soon as compaction leaves no live entry in it, so the
    /// WAL never holds more than the entries raft still needs.
    #[arg(long, default_value = "5", value_parser = go_uint)]
    pub max_wals: u64,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value = "100", value_parser = go_uint)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value = "1000", value_parser = go_uint)]
    pub election_timeout: u64,

    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, default_value = "0", value_parser = go_int)]
    pub quota_backend_bytes: i64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value = "1572864", value_parser = go_u32)]
    pub max_request_bytes: u32,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value = "128", value_parser = go_u32)]
    pub max_txn_ops: u32,

    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, default_value = "4294967295", value_parser = strconv_u32)]
    pub max_concurrent_streams: u32,

    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, default_value = "", value_parser = url_list_or_empty)]
    pub listen_metrics_urls: String,

    /// Set level of detail for exported metrics, specify 'extensive' to include server side
    /// grpc histogram metrics.
    #[arg(long, default_value = "basic")]
    pub metrics: String,

    /// Auto compaction retention length. 0 means disable auto compaction.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,

    /// Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration
    /// based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision'
    /// for revision number based retention.
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// Maximum revisions deleted in each compaction batch.
    #[arg(long, default_value = "1000", value_parser = go_int)]
    pub experimental_compaction_batch_limit: i64,

    /// Duration of periodic watch progress notifications (e.g. "10m", "500ms").
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: std::time::Duration,

    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub strict_reconfig_check: bool,

    /// Force to create a new one member cluster.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub force_new_cluster: bool,

    /// Sets the maximum number of learners that can be available in the cluster membership.
    #[arg(long, default_value = "1", value_parser = go_int)]
    pub experimental_max_learners: i64,

    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub experimental_initial_corrupt_check: bool,

    /// Duration of time between cluster corruption check passes.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub experimental_corrupt_check_time: std::time::Duration,

    /// Specify auth token type and its options: "simple" or "jwt,pub-key=...,priv-key=...,
    /// sign-method=...,ttl=...".
    #[arg(long, default_value = "simple")]
    pub auth_token: String,

    /// Time (in seconds) of the auth-token-ttl.
    #[arg(long, default_value = "300", value_parser = go_uint)]
    pub auth_token_ttl: u64,

    /// Specify bcrypt algorithm cost factor for auth password hashing.
    #[arg(long, default_value = "10", value_parser = go_uint)]
    pub bcrypt_cost: u64,

    /// Path to the client server TLS cert file.
    #[arg(long, default_value = "")]
    pub cert_file: String,

    /// Path to the client server TLS key file.
    #[arg(long, default_value = "")]
    pub key_file: String,

    /// Enable client cert authentication.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub client_cert_auth: bool,

    /// Path to the client certificate revocation list file.
    #[arg(long, default_value = "")]
    pub client_crl_file: String,

    /// Allowed TLS hostname for client cert authentication.
    #[arg(long, default_value = "")]
    pub client_cert_allowed_hostname: String,

    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, default_value = "")]
    pub trusted_ca_file: String,

    /// Client TLS using generated certificates.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub auto_tls: bool,

    /// Path to the peer server TLS cert file.
    #[arg(long, default_value = "")]
    pub peer_cert_file: String,

    /// Path to the peer server TLS key file.
    #[arg(long, default_value = "")]
    pub peer_key_file: String,

    /// Enable peer client cert authentication.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub peer_client_cert_auth: bool,

    /// Path to the peer server TLS trusted CA file.
    #[arg(long, default_value = "")]
    pub peer_trusted_ca_file: String,

    /// Required CN for client certs connecting to the peer endpoint.
    #[arg(long, default_value = "")]
    pub peer_cert_allowed_cn: String,

    /// Allowed TLS hostname for inter peer authentication.
    #[arg(long, default_value = "")]
    pub peer_cert_allowed_hostname: String,

    /// Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub peer_auto_tls: bool,

    /// Path to the peer certificate revocation list file.
    #[arg(long, default_value = "")]
    pub peer_crl_file: String,

    /// Comma-separated list of supported TLS cipher suites between client/server and peers (empty: rustls' defaults).
    #[arg(long, default_value = "")]
    pub cipher_suites: String,

    /// Minimum TLS version supported by oxcd. Possible values: TLS1.2, TLS1.3.
    #[arg(long, default_value = "TLS1.2")]
    pub tls_min_version: String,

    /// Maximum TLS version supported by oxcd. Possible values: TLS1.2, TLS1.3 (empty: no limit).
    #[arg(long, default_value = "")]
    pub tls_max_version: String,

    /// The validity period of the client and peer certificates generated by --auto-tls and
    /// --peer-auto-tls, in years.
    #[arg(long, default_value = "1", value_parser = go_uint)]
    pub self_signed_cert_validity: u64,

    /// Skip verification of SAN field in client certificate for peer connections.
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = go_bool
    )]
    pub experimental_peer_skip_client_san_verification: bool,

    /// Log level: debug, info, warn, error, panic, or fatal.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Logger: only "zap" (structured JSON) is supported, as in etcd 3.5.
    #[arg(long, default_value = "zap")]
    pub logger: String,

    /// Log destinations: "default" (stderr), "stderr", "stdout", or file paths.
    #[arg(long, default_value = "default")]
    pub log_outputs: String,

    /// Path to a YAML configuration file in etcd's schema; when given, the other flags and the
    /// environment are ignored.
    #[arg(long)]
    pub config_file: Option<String>,

    /// Keys of the configuration file that etcd knows but oxcd does not implement; `main` logs
    /// them once logging is set up.
    #[arg(skip)]
    pub config_file_ignored: Vec<String>,

    /// Arguments after the flags: etcd takes none, and neither does oxcd.
    #[arg(hide = true)]
    pub positional: Vec<String>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// (name, peer URLs) of every member in the initial cluster, in flag order.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state_new: bool,
    pub initial_cluster_token: String,
    pub snapshot_count: u64,
    pub max_snapshots: usize,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub quota_backend_bytes: i64,
    pub max_request_bytes: u32,
    pub max_txn_ops: u32,
    /// --max-concurrent-streams: HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// --listen-metrics-urls: extra listeners serving /metrics and the health probes.
    pub listen_metrics_urls: Vec<Url>,
    /// --metrics extensive: grpc_server_handling_seconds too.
    pub metrics_extensive: bool,
    /// --auto-compaction-mode and --auto-compaction-retention as given; the retention is parsed
    /// (with etcd's start-up error) by `compactor::AutoCompaction::parse`.
    pub auto_compaction_mode: String,
    pub auto_compaction_retention: String,
    /// --experimental-compaction-batch-limit: rows deleted per compaction batch (<= 0: 1000).
    pub compaction_batch_limit: usize,
    pub log_level: String,
    pub log_outputs: Vec<String>,
    pub watch_progress_notify_interval: std::time::Duration,
    /// --strict-reconfig-check: refuse membership changes that risk the quorum.
    pub strict_reconfig_check: bool,
    /// --force-new-cluster: restart as the only member of the cluster, keeping the data.
    pub force_new_cluster: bool,
    /// --experimental-max-learners.
    pub max_learners: usize,
    /// --experimental-initial-corrupt-check: compare this member's hash with its peers' before
    /// serving (restarts only).
    pub initial_corrupt_check: bool,
    /// --experimental-corrupt-check-time: how often the leader compares every member's hash;
    /// zero disables it.
    pub corrupt_check_time: std::time::Duration,
    /// --auth-token as given ("simple" or "jwt,..."); the auth module parses its options.
    pub auth_token: String,
    /// --auth-token-ttl: how long a simple token lives without use.
    pub auth_token_ttl: std::time::Duration,
    /// --bcrypt-cost, checked against bcrypt's range (4..=31).
    pub bcrypt_cost: u32,
    /// Client TLS (--cert-file, --key-file, --trusted-ca-file, ...); auto TLS is applied at
    /// start-up by `tls::auto::apply`.
    pub client_tls: crate::tls::TlsInfo,
    /// Peer TLS (--peer-cert-file, ...).
    pub peer_tls: crate::tls::TlsInfo,
    /// --cipher-suites, --tls-min-version, --tls-max-version, for both sides.
    pub tls_options: crate::tls::TlsOptions,
    /// --self-signed-cert-validity, in years.
    pub self_signed_cert_validity: u32,
}

/// A listen URL split into what the listener needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub raw: String,
}

impl Url {
    pub fn parse(raw: &str) -> anyhow::Result<Url> {
        let (scheme, rest) = raw
            .split_once("://")
            .with_context(|| format!("URL scheme must be http, https, unix, or unixs: {raw}"))?;
        if !matches!(scheme, "http" | "https") {
            bail!("URL scheme must be http, https, unix, or unixs: {raw}");
        }
        let hostport = rest.trim_end_matches('/');
        if hostport.contains('/') {
            bail!("URL must not contain a path: {raw}");
        }
        let (host, port) = hostport
            .rsplit_once(':')
            .with_context(|| format!("URL address does not have the form \"host:port\": {raw}"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("URL address has an invalid port: {raw}"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Url {
            scheme: scheme.to_string(),
            host,
            port,
            raw: raw.to_string(),
        })
    }

    /// The address to bind: "localhost" is bound on loopback, as etcd resolves it.
    pub fn bind_addr(&self) -> String {
        let host = if self.host == "localhost" {
            "127.0.0.1"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Why the flags were refused. `Display` gives etcd's text; `exit_code` etcd's exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// `-h`/`--help`: the help text, for stdout; exit code 0.
    Help(String),
    /// The command line does not parse; Go's `flag` package text, followed by a usage summary
    /// on stderr; exit code 2.
    CommandLine(String),
    /// The flags parse but say something wrong, or an `ETCD_*` value does not parse; exit code 1.
    Verify(String),
    /// This `ETCD_*` variable is set and its flag is given too; exit code 1.
    Shadowed(String),
}

impl FlagError {
    pub fn exit_code(&self) -> i32 {
        match self {
            FlagError::Help(_) => 0,
            FlagError::CommandLine(_) => 2,
            FlagError::Verify(_) | FlagError::Shadowed(_) => 1,
        }
    }
}

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlagError::Help(text) | FlagError::CommandLine(text) => f.write_str(text),
            FlagError::Verify(msg) => write!(f, "error verifying flags, {msg}. See 'etcd --help'."),
            FlagError::Shadowed(var) => write!(
                f,
                "conflicting environment variable {var:?} is shadowed by corresponding \
                 command-line flag (either unset environment variable or disable flag)"
            ),
        }
    }
}

impl std::error::Error for FlagError {}

/// Reads the command line `args` (program name first) and the `ETCD_*` variables in `env` as
/// etcd does: the command line first, then each variable whose flag was not given; a variable
/// whose flag was given too is an error, even when empty, and an empty variable is ignored.
pub fn parse_flags(args: &[String], env: &[(String, String)]) -> Result<Flags, FlagError> {
    let cmd = command();
    let argv = go_style_args(&cmd, args);
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| from_clap(e, false))?;
    let flags = Flags::from_arg_matches(&matches).map_err(|e| from_clap(e, false))?;
    if let Some(arg) = flags.positional.first() {
        return Err(FlagError::Verify(format!("'{arg}' is not a valid flag")));
    }
    if flags.version {
        // etcd prints its version before it looks at the environment.
        return Ok(flags);
    }
    // A configuration file replaces the command line and the environment entirely; its own
    // variable is read first, to know whether the others count.
    let config_file = flags.config_file.clone().or_else(|| {
        env.iter()
            .find(|(k, v)| k == "ETCD_CONFIG_FILE" && !v.is_empty())
            .map(|(_, v)| v.clone())
    });
    if let Some(path) = config_file {
        return crate::config_file::load(&path);
    }
    let mut given = HashSet::new();
    let mut from_env = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let var = env_var(long);
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            given.insert(var);
        } else if let Some((_, value)) = env.iter().find(|(k, v)| *k == var && !v.is_empty()) {
            from_env.push((long.to_string(), value.clone()));
        }
    }
    if let Some((var, _)) = env.iter().find(|(k, _)| given.contains(k)) {
        return Err(FlagError::Shadowed(var.clone()));
    }
    if from_env.is_empty() {
        return Ok(flags);
    }
    // etcd sets variables in flag-name order and reports the last bad one; clap reports the
    // first, so give them in reverse order. They go before the command line's own flags.
    from_env.sort();
    let argv = argv
        .iter()
        .take(1)
        .cloned()
        .chain(
            from_env
                .iter()
                .rev()
                .map(|(long, v)| format!("--{long}={v}")),
        )
        .chain(argv.iter().skip(1).cloned());
    let matches = cmd
        .try_get_matches_from(argv)
        .map_err(|e| from_clap(e, true))?;
    let mut flags = Flags::from_arg_matches(&matches).map_err(|e| from_clap(e, true))?;
    // Read, as etcd reads it, but too late to print the version.
    flags.version = false;
    Ok(flags)
}

/// The variable that sets the flag `long`: `data-dir` is `ETCD_DATA_DIR`.
pub fn env_var(long: &str) -> String {
    format!("ETCD_{}", long.to_uppercase().replace('-', "_"))
}

/// The clap command, with each flag's variable named in its help.
pub(crate) fn command() -> clap::Command {
    Flags::command().mut_args(|arg| match arg.get_long() {
        // ETCD_VERSION is read too, but never prints the version.
        Some(long) if long != "version" => {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let var = env_var(long);
            arg.help(format!("{help} [env: {var}]"))
        }
        _ => arg,
    })
}

/// Rewrites a command line for Go's `flag` package into one clap reads the same way:
/// `-name` is `--name`; a flag that needs a value takes the next argument whatever it looks
/// like (`--name v` becomes `--name=v`); the first non-flag argument ends the flags (a `--` is
/// put before it).
fn go_style_args(cmd: &clap::Command, args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().take(1).cloned().collect();
    let mut i = 1;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let body = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .unwrap_or("");
        if body.is_empty() {
            // "--", "-" or a non-flag argument: the flags end here.
            if arg != "--" {
                out.push("--".to_string());
            }
            out.extend(args[i - 1..].iter().cloned());
            break;
        }
        if body.starts_with(['-', '=']) {
            out.push(arg.clone()); // clap refuses it too: "bad flag syntax"
            continue;
        }
        let name = body.split('=').next().unwrap_or(body);
        if name == "h" || name == "help" {
            out.push("--help".to_string());
            continue;
        }
        let needs_value = !body.contains('=')
            && cmd.get_arguments().any(|a| {
                a.get_long() == Some(name)
                    && a.get_action().takes_values()
                    && !a.is_require_equals_set()
            });
        match args.get(i) {
            Some(value) if needs_value => {
                out.push(format!("--{body}={value}"));
                i += 1;
            }
            _ => out.push(format!("--{body}")),
        }
    }
    out
}

/// The `FlagError` for a clap error; `from_env` when the command line alone parsed, so the bad
/// value came from a variable.
pub(crate) fn from_clap(e: clap::Error, from_env: bool) -> FlagError {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    // "--heartbeat-interval <HEARTBEAT_INTERVAL>", "--version[=<BOOL>]" or "--bogus".
    let raw = context(ContextKind::InvalidArg);
    let raw = raw.split([' ', '[']).next().unwrap_or_default();
    let body = raw
        .strip_prefix("--")
        .or_else(|| raw.strip_prefix('-'))
        .unwrap_or(raw);
    let flag = body.split('=').next().unwrap_or_default();
    let value = context(ContextKind::InvalidValue);
    let cause = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<ValueError>());
    let reason = cause.map_or("parse error", |c| c.reason.as_str());
    let text = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            return FlagError::Help(e.render().to_string())
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue if from_env => {
            let var = env_var(flag);
            return FlagError::Verify(format!("invalid value {value:?} for {var}: {reason}"));
        }
        ErrorKind::UnknownArgument if body.starts_with(['-', '=']) => {
            format!("bad flag syntax: {raw}")
        }
        ErrorKind::UnknownArgument => format!("flag provided but not defined: -{flag}"),
        ErrorKind::InvalidValue if value.is_empty() => format!("flag needs an argument: -{flag}"),
        ErrorKind::ValueValidation if cause.is_some_and(|c| c.boolean) => {
            format!("invalid boolean value {value:?} for -{flag}: {reason}")
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            format!("invalid value {value:?} for flag -{flag}: {reason}")
        }
        // Nothing else should come from these flags; clap's own text, without its usage.
        _ => e
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    FlagError::CommandLine(text)
}

/// A flag value that does not parse; `reason` is what Go's flag package says about it.
#[derive(Debug)]
struct ValueError {
    reason: String,
    /// A boolean flag, for which Go words the error differently.
    boolean: bool,
}

impl ValueError {
    fn new(reason: impl Into<String>) -> Self {
        ValueError {
            reason: reason.into(),
            boolean: false,
        }
    }
    fn parse() -> Self {
        ValueError::new("parse error")
    }
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ValueError {}

/// A boolean as Go's `strconv.ParseBool` reads it.
fn go_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ValueError {
            boolean: true,
            ..ValueError::parse()
        }),
    }
}

/// An unsigned number as Go's flag package reads it (`strconv.ParseUint(s, 0, 64)`): decimal,
/// or `0x`, `0o`, `0b`, `0` prefixed; underscores may separate digits.
fn go_uint(s: &str) -> Result<u64, ValueError> {
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = match lower.get(..2) {
        Some("0x") => (16, &s[2..]),
        Some("0o") => (8, &s[2..]),
        Some("0b") => (2, &s[2..]),
        _ if s.len() > 1 && s.starts_with('0') => (8, &s[1..]),
        _ => (10, s),
    };
    let prefixed = digits.len() < s.len();
    let bad_underscores =
        (!prefixed && digits.starts_with('_')) || digits.ends_with('_') || digits.contains("__");
    let digits = digits.replace('_', "");
    if bad_underscores || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ValueError::parse());
    }
    u64::from_str_radix(&digits, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => ValueError::new("value out of range"),
        _ => ValueError::parse(),
    })
}

/// A signed number as Go's flag package reads it (`strconv.ParseInt(s, 0, 64)`).
fn go_int(s: &str) -> Result<i64, ValueError> {
    let (negative, magnitude) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = i128::from(go_uint(magnitude)?);
    i64::try_from(if negative { -n } else { n }).map_err(|_| ValueError::new("value out of range"))
}

/// A Go `uint` flag stored in 32 bits: larger values are out of range rather than cut.
fn go_u32(s: &str) -> Result<u32, ValueError> {
    u32::try_from(go_uint(s)?).map_err(|_| ValueError::new("value out of range"))
}

/// A 32-bit unsigned flag of etcd's own type (`strconv.ParseUint(s, 0, 32)`), whose errors carry
/// strconv's text.
fn strconv_u32(s: &str) -> Result<u32, ValueError> {
    let err = |what: &str| ValueError::new(format!("strconv.ParseUint: parsing {s:?}: {what}"));
    match go_uint(s) {
        Ok(n) => u32::try_from(n).map_err(|_| err("value out of range")),
        Err(e) if e.reason == "value out of range" => Err(err("value out of range")),
        Err(_) => Err(err("invalid syntax")),
    }
}

/// Durations as etcd's flags take them ("10m", "1h30m", "250ms").
fn parse_duration(s: &str) -> Result<std::time::Duration, ValueError> {
    humantime::parse_duration(s).map_err(|_| ValueError::parse())
}

/// A comma-separated list of URLs, each checked as etcd checks them when the flag is set.
fn url_list(s: &str) -> Result<String, ValueError> {
    for url in s.split(',') {
        Url::parse(url).map_err(|e| ValueError::new(e.to_string()))?;
    }
    Ok(s.to_string())
}

/// A URL list that may be empty (`--listen-metrics-urls`).
fn url_list_or_empty(s: &str) -> Result<String, ValueError> {
    if s.is_empty() {
        return Ok(String::new());
    }
    url_list(s)
}

/// `--initial-cluster-state`: one of etcd's two values.
fn cluster_state(s: &str) -> Result<String, ValueError> {
    match s {
        "new" | "existing" => Ok(s.to_string()),
        _ => Err(ValueError::new("invalid value")),
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_urls(flag: &str, s: &str) -> anyhow::Result<Vec<Url>> {
    let urls = split_list(s)
        .iter()
        .map(|u| Url::parse(u))
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("invalid value {s:?} for flag --{flag}"))?;
    if urls.is_empty() {
        bail!("--{flag} must not be empty");
    }
    Ok(urls)
}

impl Config {
    pub fn from_flags(f: Flags) -> anyhow::Result<Config> {
        let data_dir = f
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", f.name)));
        let wal_dir = f
            .wal_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("member").join("wal"));
        let listen_client_urls = parse_urls("listen-client-urls", &f.listen_client_urls)?;
        let listen_peer_urls = parse_urls("listen-peer-urls", &f.listen_peer_urls)?;
        let advertise_client_urls = split_list(&f.advertise_client_urls);
        for u in &advertise_client_urls {
            Url::parse(u)
                .with_context(|| format!("invalid value {u:?} for flag --advertise-client-urls"))?;
        }
        let initial_advertise_peer_urls = split_list(&f.initial_advertise_peer_urls);
        for u in &initial_advertise_peer_urls {
            Url::parse(u).with_context(|| {
                format!("invalid value {u:?} for flag --initial-advertise-peer-urls")
            })?;
        }
        let initial_cluster_raw = f
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", f.name, initial_advertise_peer_urls.join(",")));
        let initial_cluster = parse_initial_cluster(&initial_cluster_raw)?;
        let initial_cluster_state_new = match f.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            other => bail!(
                "invalid value {other:?} for flag --initial-cluster-state: valid values are \"new\", \"existing\""
            ),
        };
        if f.experimental_watch_progress_notify_interval.is_zero() {
            bail!("--experimental-watch-progress-notify-interval must be greater than 0");
        }
        if f.heartbeat_interval == 0 {
            bail!("--heartbeat-interval must be >0 (set to 0ms)");
        }
        if f.election_timeout < 5 * f.heartbeat_interval {
            bail!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                f.election_timeout,
                f.heartbeat_interval
            );
        }
        if f.election_timeout > 50_000 {
            bail!(
                "--election-timeout[{}ms] is too long, and should be set less than 50000ms",
                f.election_timeout
            );
        }
        if !matches!(
            f.log_level.as_str(),
            "debug" | "info" | "warn" | "error" | "dpanic" | "panic" | "fatal"
        ) {
            bail!("invalid value {:?} for flag --log-level", f.log_level);
        }
        if f.logger != "zap" {
            bail!(
                "invalid value {:?} for flag --logger: only \"zap\" is supported",
                f.logger
            );
        }
        if let Some(msg) = crate::compactor::check_mode(&f.auto_compaction_mode) {
            bail!("{msg}");
        }
        if f.max_txn_ops == 0 {
            bail!("--max-txn-ops must be greater than 0");
        }
        if f.max_request_bytes == 0 {
            bail!("--max-request-bytes must be greater than 0");
        }
        if f.experimental_max_learners < 1 {
            bail!(
                "--experimental-max-learners must be greater than 0, got {}",
                f.experimental_max_learners
            );
        }
        let (client_tls, peer_tls, tls_options) = tls_config(&f)?;
        Ok(Config {
            name: f.name,
            data_dir,
            wal_dir,
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state_new,
            initial_cluster_token: f.initial_cluster_token,
            snapshot_count: f.snapshot_count,
            max_snapshots: usize::try_from(f.max_snapshots).unwrap_or(usize::MAX),
            heartbeat_interval_ms: f.heartbeat_interval,
            election_timeout_ms: f.election_timeout,
            quota_backend_bytes: f.quota_backend_bytes,
            max_request_bytes: f.max_request_bytes,
            max_txn_ops: f.max_txn_ops,
            max_concurrent_streams: f.max_concurrent_streams,
            listen_metrics_urls: split_list(&f.listen_metrics_urls)
                .iter()
                .map(|u| Url::parse(u))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| {
                    format!(
                        "invalid value {:?} for flag --listen-metrics-urls",
                        f.listen_metrics_urls
                    )
                })?,
            metrics_extensive: f.metrics == "extensive",
            auto_compaction_mode: f.auto_compaction_mode,
            auto_compaction_retention: f.auto_compaction_retention,
            compaction_batch_limit: usize::try_from(f.experimental_compaction_batch_limit)
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or(1000),
            log_level: f.log_level,
            log_outputs: split_list(&f.log_outputs),
            watch_progress_notify_interval: f.experimental_watch_progress_notify_interval,
            strict_reconfig_check: f.strict_reconfig_check,
            force_new_cluster: f.force_new_cluster,
            max_learners: usize::try_from(f.experimental_max_learners).unwrap_or(1),
            initial_corrupt_check: f.experimental_initial_corrupt_check,
            corrupt_check_time: f.experimental_corrupt_check_time,
            auth_token: f.auth_token,
            auth_token_ttl: std::time::Duration::from_secs(f.auth_token_ttl),
            bcrypt_cost: u32::try_from(f.bcrypt_cost).unwrap_or(u32::MAX),
            client_tls,
            peer_tls,
            tls_options,
            self_signed_cert_validity: u32::try_from(f.self_signed_cert_validity)
                .unwrap_or(u32::MAX),
        })
    }

    /// Path of the MVCC database, where etcd keeps its bbolt file.
    pub fn backend_path(&self) -> PathBuf {
        self.data_dir.join("member").join("snap").join("db")
    }

    /// Election timeout in heartbeat ticks, as raft counts it.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout_ms / self.heartbeat_interval_ms) as usize
    }
}

/// The client and peer TLS settings and the protocol options, checked as etcd checks them.
fn tls_config(
    f: &Flags,
) -> anyhow::Result<(
    crate::tls::TlsInfo,
    crate::tls::TlsInfo,
    crate::tls::TlsOptions,
)> {
    let client = crate::tls::TlsInfo {
        cert_file: f.cert_file.clone(),
        key_file: f.key_file.clone(),
        trusted_ca_file: f.trusted_ca_file.clone(),
        client_cert_auth: f.client_cert_auth,
        crl_file: f.client_crl_file.clone(),
        allowed_hostname: f.client_cert_allowed_hostname.clone(),
        auto_tls: f.auto_tls,
        ..Default::default()
    };
    let peer = crate::tls::TlsInfo {
        cert_file: f.peer_cert_file.clone(),
        key_file: f.peer_key_file.clone(),
        trusted_ca_file: f.peer_trusted_ca_file.clone(),
        client_cert_auth: f.peer_client_cert_auth,
        crl_file: f.peer_crl_file.clone(),
        allowed_cn: f.peer_cert_allowed_cn.clone(),
        allowed_hostname: f.peer_cert_allowed_hostname.clone(),
        auto_tls: f.peer_auto_tls,
        skip_client_san_verify: f.experimental_peer_skip_client_san_verification,
        ..Default::default()
    };
    let options = crate::tls::TlsOptions::parse(
        &split_list(&f.cipher_suites),
        &f.tls_min_version,
        &f.tls_max_version,
    )
    .map_err(anyhow::Error::msg)?;
    if f.self_signed_cert_validity == 0 {
        bail!("--self-signed-cert-validity must be greater than 0");
    }
    Ok((client, peer, options))
}

/// Parses "name1=url1,name1=url2,name2=url3" into members in first-seen order; one member may
/// have several peer URLs, as in etcd.
pub fn parse_initial_cluster(s: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in split_list(s) {
        let (name, url) = part
            .split_once('=')
            .with_context(|| format!("invalid value {s:?} for flag --initial-cluster"))?;
        Url::parse(url)
            .with_context(|| format!("invalid value {s:?} for flag --initial-cluster"))?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.is_empty() {
        bail!("--initial-cluster must not be empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Flags, FlagError> {
        let args: Vec<String> = std::iter::once("oxcd")
            .chain(args.iter().copied())
            .map(str::to_string)
            .collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_flags(&args, &env)
    }

    fn cfg(args: &[&str]) -> anyhow::Result<Config> {
        Config::from_flags(parse(args, &[])?)
    }

    /// The error's text and exit code.
    fn err(args: &[&str], env: &[(&str, &str)]) -> (String, i32) {
        let e = parse(args, env).unwrap_err();
        (e.to_string(), e.exit_code())
    }

    #[test]
    fn defaults_match_etcd() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.wal_dir, PathBuf::from("default.etcd/member/wal"));
        assert_eq!(c.listen_client_urls[0].bind_addr(), "127.0.0.1:2379");
        assert_eq!(
            c.initial_cluster,
            vec![(
                "default".to_string(),
                vec!["http://localhost:2380".to_string()]
            )]
        );
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.election_ticks(), 10);
    }

    #[test]
    fn several_listen_urls_and_bad_values() {
        let c = cfg(&[
            "--listen-client-urls",
            "http://127.0.0.1:1,http://127.0.0.2:2",
        ])
        .unwrap();
        assert_eq!(c.listen_client_urls.len(), 2);
        let e = cfg(&["--election-timeout", "200"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--election-timeout[200ms] should be at least as 5 times as --heartbeat-interval[100ms]"
        );
    }

    #[test]
    fn go_flag_syntax() {
        let f = parse(&["-name", "a", "--data-dir=d", "-wal-dir=w"], &[]).unwrap();
        assert_eq!(f.name, "a");
        assert_eq!(f.data_dir, Some(PathBuf::from("d")));
        assert_eq!(f.wal_dir, Some(PathBuf::from("w")));
        // A flag that needs a value takes the next argument, whatever it looks like.
        let f = parse(
            &["--name", "--data-dir", "--quota-backend-bytes", "-5"],
            &[],
        )
        .unwrap();
        assert_eq!((f.name.as_str(), f.data_dir), ("--data-dir", None));
        assert_eq!(f.quota_backend_bytes, -5);
        assert_eq!(parse(&["--name="], &[]).unwrap().name, "");
        // Numbers as Go reads them.
        let f = parse(
            &["--snapshot-count=0x10", "--heartbeat-interval", "1_000"],
            &[],
        )
        .unwrap();
        assert_eq!((f.snapshot_count, f.heartbeat_interval), (16, 1000));
        assert_eq!(
            parse(&["--election-timeout=010"], &[])
                .unwrap()
                .election_timeout,
            8
        );
        assert!(parse(&["--version"], &[]).unwrap().version);
        assert!(parse(&["-version=true"], &[]).unwrap().version);
        assert!(!parse(&["--version=0"], &[]).unwrap().version);
    }

    #[test]
    fn command_line_errors_like_go_flag() {
        let bad = |args: &[&str], want: &str| assert_eq!(err(args, &[]), (want.to_string(), 2));
        bad(
            &["--bogus-flag", "1"],
            "flag provided but not defined: -bogus-flag",
        );
        bad(
            &["-bogus-flag=1"],
            "flag provided but not defined: -bogus-flag",
        );
        bad(&["-x"], "flag provided but not defined: -x");
        bad(&["---name", "x"], "bad flag syntax: ---name");
        bad(&["--name"], "flag needs an argument: -name");
        bad(
            &["--heartbeat-interval", "abc"],
            r#"invalid value "abc" for flag -heartbeat-interval: parse error"#,
        );
        bad(
            &["-snapshot-count=-x"],
            r#"invalid value "-x" for flag -snapshot-count: parse error"#,
        );
        bad(
            &["--heartbeat-interval="],
            r#"invalid value "" for flag -heartbeat-interval: parse error"#,
        );
        bad(
            &["--snapshot-count=99999999999999999999"],
            r#"invalid value "99999999999999999999" for flag -snapshot-count: value out of range"#,
        );
        bad(
            &["--experimental-watch-progress-notify-interval", "xyz"],
            r#"invalid value "xyz" for flag -experimental-watch-progress-notify-interval: parse error"#,
        );
        bad(
            &["--version=abc"],
            r#"invalid boolean value "abc" for -version: parse error"#,
        );
        bad(
            &["--initial-cluster-state", "bogus"],
            r#"invalid value "bogus" for flag -initial-cluster-state: invalid value"#,
        );
        bad(
            &["--listen-client-urls", "ftp://127.0.0.1:1"],
            "invalid value \"ftp://127.0.0.1:1\" for flag -listen-client-urls: \
             URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:1",
        );
        // The first bad flag is the one reported.
        bad(
            &["--bogus", "--heartbeat-interval=abc"],
            "flag provided but not defined: -bogus",
        );
    }

    #[test]
    fn arguments_after_the_flags_are_refused() {
        let not_a_flag = |args: &[&str], arg: &str| {
            let want =
                format!("error verifying flags, '{arg}' is not a valid flag. See 'etcd --help'.");
            assert_eq!(err(args, &[]), (want, 1));
        };
        not_a_flag(&["foo"], "foo");
        // Go's flag package stops at the first argument that is not a flag.
        not_a_flag(&["--name", "a", "foo", "--bogus"], "foo");
        not_a_flag(&["--", "--name"], "--name");
        not_a_flag(&["-"], "-");
    }

    #[test]
    fn help_and_version() {
        for h in ["-h", "--help", "-help"] {
            let e = parse(&[h], &[]).unwrap_err();
            assert!(
                matches!(&e, FlagError::Help(t) if t.contains("--data-dir")),
                "{e:?}"
            );
            assert!(e.to_string().contains("[env: ETCD_DATA_DIR]"), "{e}");
            assert!(!e.to_string().contains("ETCD_VERSION"), "{e}");
            assert_eq!(e.exit_code(), 0);
        }
        // --version does not look at the environment.
        let f = parse(&["--version"], &[("ETCD_VERSION", "1"), ("ETCD_NAME", "x")]).unwrap();
        assert!(f.version);
    }

    #[test]
    fn environment() {
        let f = parse(
            &["--data-dir", "d"],
            &[
                ("ETCD_NAME", "envname"),
                ("ETCD_HEARTBEAT_INTERVAL", "0x20"),
                ("ETCD_WAL_DIR", ""),
                ("ETCD_BOGUS", "1"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!((f.name.as_str(), f.heartbeat_interval), ("envname", 32));
        assert_eq!(f.wal_dir, None, "an empty variable is ignored");
        // Parsed, as etcd does, but too late to print the version.
        assert!(!parse(&[], &[("ETCD_VERSION", "true")]).unwrap().version);
        assert_eq!(
            err(&[], &[("ETCD_HEARTBEAT_INTERVAL", "abc")]),
            (
                "error verifying flags, invalid value \"abc\" for ETCD_HEARTBEAT_INTERVAL: \
                 parse error. See 'etcd --help'."
                    .to_string(),
                1
            )
        );
        // etcd reports the last bad variable in flag-name order.
        let (text, _) = err(
            &[],
            &[
                ("ETCD_SNAPSHOT_COUNT", "x"),
                ("ETCD_HEARTBEAT_INTERVAL", "y"),
            ],
        );
        assert!(text.contains("ETCD_SNAPSHOT_COUNT"), "{text}");
        // A bad command line is reported before any variable.
        assert_eq!(
            err(&["--bogus"], &[("ETCD_HEARTBEAT_INTERVAL", "abc")]).1,
            2
        );
    }

    #[test]
    fn variable_shadowed_by_its_flag() {
        let shadowed = |var: &str| {
            format!(
                "conflicting environment variable \"{var}\" is shadowed by corresponding \
                 command-line flag (either unset environment variable or disable flag)"
            )
        };
        for args in [&["--name", "default"][..], &["-name=default"], &["--name="]] {
            assert_eq!(
                err(args, &[("ETCD_NAME", "other")]),
                (shadowed("ETCD_NAME"), 1)
            );
        }
        // Even an empty variable, and before a bad value in another variable.
        assert_eq!(
            err(
                &["--heartbeat-interval", "100"],
                &[
                    ("ETCD_SNAPSHOT_COUNT", "x"),
                    ("ETCD_HEARTBEAT_INTERVAL", "")
                ]
            ),
            (shadowed("ETCD_HEARTBEAT_INTERVAL"), 1)
        );
        // A default value is not a flag given.
        assert!(parse(&[], &[("ETCD_NAME", "other")]).is_ok());
    }

    #[test]
    fn go_numbers() {
        assert_eq!(go_uint("0").unwrap(), 0);
        assert_eq!(go_uint("0b101").unwrap(), 5);
        assert_eq!(go_uint("0o17").unwrap(), 15);
        assert_eq!(go_uint("0x_1F").unwrap(), 31);
        for bad in ["", "+1", "-1", "08", "0x", "_1", "1_", "1__0", " 1", "1.5"] {
            assert!(go_uint(bad).is_err(), "{bad:?}");
        }
        assert_eq!(go_int("-0x10").unwrap(), -16);
        assert_eq!(go_int("+7").unwrap(), 7);
        assert_eq!(go_int("-9223372036854775808").unwrap(), i64::MIN);
        assert_eq!(
            go_int("9223372036854775808").unwrap_err().reason,
            "value out of range"
        );
        assert_eq!(
            go_u32("4294967296").unwrap_err().reason,
            "value out of range"
        );
    }

    #[test]
    fn tls_flags() {
        let c = cfg(&[
            "--cert-file=s.crt",
            "--key-file=s.key",
            "--trusted-ca-file=ca.crt",
            "--peer-client-cert-auth",
            "--peer-cert-allowed-cn=peer",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ])
        .unwrap();
        assert!(c.client_tls.requires_client_cert());
        assert!(!c.client_tls.client_cert_auth);
        assert!(c.peer_tls.client_cert_auth && c.peer_tls.is_empty());
        assert_eq!(c.peer_tls.allowed_cn, "peer");
        assert_eq!(c.self_signed_cert_validity, 1);
        let e = cfg(&["--cipher-suites=BOGUS"]).unwrap_err();
        assert_eq!(e.to_string(), "unexpected TLS cipher suite \"BOGUS\"");
        let e = cfg(&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        assert!(cfg(&["--self-signed-cert-validity=0"]).is_err());
    }

    #[test]
    fn initial_cluster_groups_urls_by_name() {
        let m = parse_initial_cluster("a=http://h:1,b=http://h:2,a=http://h:3").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, vec!["http://h:1", "http://h:3"]);
    }
}
