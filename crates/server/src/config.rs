//! Server configuration: etcd's flag names, defaults and `ETCD_*` environment variables,
//! parsed into one validated `Config`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

/// Command-line flags, named as etcd names them so existing unit files and scripts work.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "oxcd",
    about = "oxcd: a distributed, reliable key-value store, compatible with etcd v3",
    disable_version_flag = true
)]
pub struct Flags {
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,

    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory (default: "<name>.etcd").
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Path to the dedicated WAL directory (default: <data-dir>/member/wal).
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,

    /// Comma-separated URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,

    /// Comma-separated client URLs of this member, advertised to the cluster and clients.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,

    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,

    /// Comma-separated peer URLs of this member, advertised to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping: name=peerURL,...
    /// (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state ("new" or "existing").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Number of committed transactions that trigger a snapshot (and raft log compaction).
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,

    /// Duration of periodic watch progress notifications (e.g. "10m", "500ms").
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        value_parser = parse_duration
    )]
    pub experimental_watch_progress_notify_interval: std::time::Duration,

    /// Log level: debug, info, warn, error, panic, or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Logger: only "zap" (structured JSON) is supported, as in etcd 3.5.
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,

    /// Log destinations: "default" (stderr), "stderr", "stdout", or file paths.
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,
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
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub quota_backend_bytes: i64,
    pub max_request_bytes: u32,
    pub max_txn_ops: u32,
    pub log_level: String,
    pub log_outputs: Vec<String>,
    pub watch_progress_notify_interval: std::time::Duration,
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

/// Go-style durations as etcd's flags take them ("10m", "1h30m", "250ms").
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
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
            bail!("--heartbeat-interval must be greater than 0");
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
        if f.max_txn_ops == 0 {
            bail!("--max-txn-ops must be greater than 0");
        }
        if f.max_request_bytes == 0 {
            bail!("--max-request-bytes must be greater than 0");
        }
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
            heartbeat_interval_ms: f.heartbeat_interval,
            election_timeout_ms: f.election_timeout,
            quota_backend_bytes: f.quota_backend_bytes,
            max_request_bytes: f.max_request_bytes,
            max_txn_ops: f.max_txn_ops,
            log_level: f.log_level,
            log_outputs: split_list(&f.log_outputs),
            watch_progress_notify_interval: f.experimental_watch_progress_notify_interval,
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

    fn cfg(args: &[&str]) -> anyhow::Result<Config> {
        let mut v = vec!["oxcd"];
        v.extend_from_slice(args);
        Config::from_flags(Flags::try_parse_from(v)?)
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
        let e = cfg(&["--listen-client-urls", "127.0.0.1:1"]).unwrap_err();
        assert!(format!("{e:#}").contains("listen-client-urls"), "{e:#}");
        let e = cfg(&["--initial-cluster-state", "bogus"]).unwrap_err();
        assert!(format!("{e:#}").contains("initial-cluster-state"));
        let e = cfg(&["--election-timeout", "200"]).unwrap_err();
        assert!(format!("{e:#}").contains("election-timeout"));
        assert!(Flags::try_parse_from(["oxcd", "--heartbeat-interval", "abc"]).is_err());
        assert!(Flags::try_parse_from(["oxcd", "--no-such-flag"]).is_err());
    }

    #[test]
    fn initial_cluster_groups_urls_by_name() {
        let m = parse_initial_cluster("a=http://h:1,b=http://h:2,a=http://h:3").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, vec!["http://h:1", "http://h:3"]);
    }
}
