//! `--config-file`: etcd's YAML configuration file, read into the same `Flags` the command line
//! gives, so one validation (`Config::from_flags`) covers both.
//!
//! The file's keys are etcd's flag names, except the TLS settings, which live in the nested
//! `client-transport-security` and `peer-transport-security` blocks. Values are typed as etcd
//! types them: numbers and booleans as YAML scalars of that type, durations as nanoseconds,
//! `cipher-suites` and `log-outputs` as lists. A missing or empty (null) key keeps the default.
//!
//! etcd silently ignores keys it does not know, which hides typos (a misspelt `data-dir` starts
//! an empty member elsewhere); oxcd refuses them, naming the key. Keys etcd knows but oxcd does
//! not implement (discovery, the v2 proxy, pprof, ...) are accepted and reported by `main`.

use std::any::TypeId;
use std::time::Duration;

use clap::FromArgMatches;
use serde_yaml_ng::Value;

use crate::config::{command, from_clap, FlagError, Flags};

/// The flags set by a key of a transport security block, for the client and the peer side;
/// `None` where oxcd has no such setting.
const SECURITY_KEYS: &[(&str, Option<&str>, Option<&str>)] = &[
    ("cert-file", Some("cert-file"), Some("peer-cert-file")),
    ("key-file", Some("key-file"), Some("peer-key-file")),
    (
        "client-cert-auth",
        Some("client-cert-auth"),
        Some("peer-client-cert-auth"),
    ),
    (
        "trusted-ca-file",
        Some("trusted-ca-file"),
        Some("peer-trusted-ca-file"),
    ),
    ("auto-tls", Some("auto-tls"), Some("peer-auto-tls")),
    ("crl-file", Some("client-crl-file"), Some("peer-crl-file")),
    (
        "allowed-hostname",
        Some("client-cert-allowed-hostname"),
        Some("peer-cert-allowed-hostname"),
    ),
    ("allowed-cn", None, Some("peer-cert-allowed-cn")),
    // The certificate a member presents when it dials as a client, and etcd 2's CA key.
    ("client-cert-file", None, None),
    ("client-key-file", None, None),
    ("ca-file", None, None),
];

/// Flags that are not keys of the file's top level: etcd reads the TLS settings only from the
/// security blocks, and a top-level `cert-file` would silently do nothing there.
const NOT_TOP_LEVEL: &[&str] = &[
    "version",
    "config-file",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "client-crl-file",
    "client-cert-allowed-hostname",
    "trusted-ca-file",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "peer-auto-tls",
    "peer-crl-file",
];

/// etcd's keys for features oxcd does not implement: accepted so an etcd file works unchanged.
const ETCD_ONLY: &[&str] = &[
    "backend-batch-interval",
    "backend-batch-limit",
    "backend-bbolt-freelist-type",
    "cors",
    "debug",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "enable-grpc-gateway",
    "enable-log-rotation",
    "enable-pprof",
    "enable-v2",
    "experimental-backend-bbolt-freelist-type",
    "experimental-bootstrap-defrag-threshold-megabytes",
    "experimental-downgrade-check-time",
    "experimental-enable-distributed-tracing",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "experimental-enable-v2v3",
    "experimental-memory-mlock",
    "experimental-snapshot-catchup-entries",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-warning-apply-duration",
    "grpc-keepalive-interval",
    "grpc-keepalive-min-time",
    "grpc-keepalive-timeout",
    "host-whitelist",
    "initial-election-tick-advance",
    "listen-client-http-urls",
    "log-output",
    "log-package-levels",
    "log-rotation-config-json",
    "pre-vote",
    "proxy",
    "proxy-dial-timeout",
    "proxy-failure-wait",
    "proxy-read-timeout",
    "proxy-refresh-interval",
    "proxy-write-timeout",
    "socket-reuse-address",
    "socket-reuse-port",
    "unsafe-no-fsync",
    "v2-deprecation",
];

/// Keys for which etcd treats an empty string as absent.
const KEEP_DEFAULT_WHEN_EMPTY: &[&str] = &[
    "listen-peer-urls",
    "listen-client-urls",
    "initial-advertise-peer-urls",
    "advertise-client-urls",
    "listen-metrics-urls",
    "initial-cluster-state",
];

/// How a flag's value is written in the file, as etcd's Go types decode it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Text,
    Number,
    Bool,
    /// A Go `time.Duration`: an integer of nanoseconds.
    Duration,
    /// A Go `[]string`, which oxcd's flag takes comma-separated.
    List,
}

/// Reads the file at `path` into flags, as if each key had been given as its flag and nothing
/// else had: the defaults fill the rest.
pub fn load(path: &str) -> Result<Flags, FlagError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FlagError::Verify(format!("open {path}: {e}")))?;
    let mut flags = from_str(&text).map_err(|e| FlagError::Verify(format!("{path}: {e}")))?;
    flags.config_file = Some(path.to_string());
    Ok(flags)
}

/// Parses a configuration file's text; the error names the offending key.
pub fn from_str(text: &str) -> Result<Flags, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    let top = match doc {
        Value::Null => serde_yaml_ng::Mapping::new(),
        Value::Mapping(m) => m,
        _ => return Err("the configuration must be a mapping of keys to values".into()),
    };
    let mut args = vec!["oxcd".to_string()];
    let mut ignored = Vec::new();
    for (key, value) in &top {
        let key = key_name(key, "")?;
        let side = match key.as_str() {
            "client-transport-security" => Some(false),
            "peer-transport-security" => Some(true),
            _ => None,
        };
        if let Some(peer) = side {
            security_block(&key, value, peer, &mut args, &mut ignored)?;
        } else if ETCD_ONLY.contains(&key.as_str()) && flag_kind(&key).is_none() {
            ignored.push(key);
        } else if NOT_TOP_LEVEL.contains(&key.as_str()) {
            return Err(format!(
                "key {key:?} is not read at the top level; set TLS in \
                 client-transport-security or peer-transport-security"
            ));
        } else {
            let Some(kind) = flag_kind(&key) else {
                return Err(format!("unknown key {key:?}"));
            };
            push_flag(&key, &key, kind, value, &mut args)?;
        }
    }
    let matches = command().try_get_matches_from(&args).map_err(|e| {
        // Each value was checked alone, so only a clash between keys can end here.
        from_clap(e, false).to_string()
    })?;
    let mut flags = Flags::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    flags.config_file_ignored = ignored;
    Ok(flags)
}

/// One of the two transport security blocks.
fn security_block(
    block: &str,
    value: &Value,
    peer: bool,
    args: &mut Vec<String>,
    ignored: &mut Vec<String>,
) -> Result<(), String> {
    let map = match value {
        Value::Null => return Ok(()),
        Value::Mapping(m) => m,
        _ => return Err(format!("key {block:?} must be a mapping")),
    };
    for (key, value) in map {
        let key = key_name(key, block)?;
        let full = format!("{block}.{key}");
        let Some((_, client_flag, peer_flag)) = SECURITY_KEYS.iter().find(|(k, ..)| *k == key)
        else {
            return Err(format!("unknown key {full:?}"));
        };
        match if peer { peer_flag } else { client_flag } {
            Some(flag) => {
                let kind = flag_kind(flag).expect("security keys name real flags");
                push_flag(&full, flag, kind, value, args)?;
            }
            None if value.is_null() => {}
            None => ignored.push(full),
        }
    }
    Ok(())
}

fn key_name(key: &Value, block: &str) -> Result<String, String> {
    match key {
        Value::String(s) => Ok(s.clone()),
        other => {
            let shown = serde_yaml_ng::to_string(other).unwrap_or_default();
            let inside = if block.is_empty() {
                String::new()
            } else {
                format!(" in {block:?}")
            };
            Err(format!("key {:?}{inside} is not a string", shown.trim()))
        }
    }
}

/// The kind of value flag `long` takes, or `None` when there is no such flag.
fn flag_kind(long: &str) -> Option<Kind> {
    let cmd = command();
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
    let ty = arg.get_value_parser().type_id();
    Some(if ty == TypeId::of::<bool>() {
        Kind::Bool
    } else if ty == TypeId::of::<u64>() || ty == TypeId::of::<i64>() || ty == TypeId::of::<u32>() {
        Kind::Number
    } else if ty == TypeId::of::<Duration>() {
        Kind::Duration
    } else if matches!(long, "cipher-suites" | "log-outputs") {
        Kind::List
    } else {
        Kind::Text
    })
}

/// Appends `--flag=value` for `key` after checking the value's YAML type and the flag's own
/// parsing, so the error names the key rather than the flag.
fn push_flag(
    key: &str,
    flag: &str,
    kind: Kind,
    value: &Value,
    args: &mut Vec<String>,
) -> Result<(), String> {
    let text = match (kind, value) {
        (_, Value::Null) => return Ok(()),
        // etcd keeps the default URLs, and bootstraps a new cluster, for an empty string.
        (_, Value::String(s)) if s.is_empty() && KEEP_DEFAULT_WHEN_EMPTY.contains(&key) => {
            return Ok(())
        }
        (Kind::Text | Kind::List, Value::String(s)) => s.clone(),
        (Kind::Number, Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        (Kind::Bool, Value::Bool(b)) => b.to_string(),
        (Kind::Duration, Value::Number(n)) if n.is_u64() => {
            format!("{}ns", n.as_u64().unwrap_or_default())
        }
        // A readable duration ("10m") is accepted too, beyond etcd's nanoseconds.
        (Kind::Duration, Value::String(s)) => s.clone(),
        (Kind::List, Value::Sequence(items)) => {
            let items: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            items
                .ok_or_else(|| format!("key {key:?} must be a list of strings"))?
                .join(",")
        }
        _ => {
            let want = match kind {
                Kind::Text => "a string",
                Kind::Number => "an integer",
                Kind::Bool => "true or false",
                Kind::Duration => "a duration in nanoseconds",
                Kind::List => "a list of strings",
            };
            let got = serde_yaml_ng::to_string(value).unwrap_or_default();
            return Err(format!(
                "invalid value {:?} for key {key:?}: expected {want}",
                got.trim()
            ));
        }
    };
    let arg = format!("--{flag}={text}");
    if let Err(e) = command().try_get_matches_from(["oxcd", arg.as_str()]) {
        // "invalid value "abc" for flag -heartbeat-interval: parse error" -> the key's name.
        let msg = from_clap(e, false).to_string();
        let msg = msg.replace(&format!("flag -{flag}"), &format!("key {key:?}"));
        return Err(msg.replace(&format!("for -{flag}"), &format!("for key {key:?}")));
    }
    args.push(arg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn err(text: &str) -> String {
        from_str(text).unwrap_err()
    }

    #[test]
    fn keys_become_flags() {
        let f = from_str(
            "name: m1\n\
             data-dir: /var/lib/m1\n\
             wal-dir:\n\
             heartbeat-interval: 200\n\
             election-timeout: 2000\n\
             quota-backend-bytes: -1\n\
             strict-reconfig-check: false\n\
             auto-compaction-retention: \"1\"\n\
             experimental-corrupt-check-time: 60000000000\n\
             log-outputs: [stderr]\n\
             cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n\
             enable-v2: true\n\
             proxy: 'off'\n",
        )
        .unwrap();
        assert_eq!(f.name, "m1");
        assert_eq!(
            f.data_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/m1"))
        );
        assert_eq!(f.wal_dir, None, "an empty key keeps the default");
        assert_eq!((f.heartbeat_interval, f.election_timeout), (200, 2000));
        assert_eq!(f.quota_backend_bytes, -1);
        assert!(!f.strict_reconfig_check);
        assert_eq!(f.auto_compaction_retention, "1");
        assert_eq!(f.experimental_corrupt_check_time, Duration::from_secs(60));
        assert_eq!(f.log_outputs, "stderr");
        assert!(f.cipher_suites.contains(",TLS_ECDHE_RSA_WITH_AES_256"));
        assert_eq!(f.config_file_ignored, vec!["enable-v2", "proxy"]);
        // Untouched keys keep the flag defaults.
        assert_eq!(f.snapshot_count, 100_000);
        assert_eq!(f.initial_cluster_token, "etcd-cluster");
        Config::from_flags(f).unwrap();
    }

    #[test]
    fn security_blocks() {
        let f = from_str(
            "client-transport-security:\n\
            \x20 cert-file: s.crt\n\
            \x20 key-file: s.key\n\
            \x20 client-cert-auth: true\n\
            \x20 trusted-ca-file: ca.crt\n\
            \x20 crl-file: c.crl\n\
            \x20 allowed-cn: ignored\n\
            peer-transport-security:\n\
            \x20 cert-file: p.crt\n\
            \x20 key-file: p.key\n\
            \x20 client-cert-auth: true\n\
            \x20 trusted-ca-file: pca.crt\n\
            \x20 auto-tls: false\n\
            \x20 allowed-cn: peer\n\
            \x20 allowed-hostname: h\n",
        )
        .unwrap();
        assert_eq!(
            (f.cert_file.as_str(), f.key_file.as_str()),
            ("s.crt", "s.key")
        );
        assert!(f.client_cert_auth && f.peer_client_cert_auth);
        assert_eq!(f.client_crl_file, "c.crl");
        assert_eq!(f.peer_cert_file, "p.crt");
        assert_eq!(f.peer_trusted_ca_file, "pca.crt");
        assert_eq!(f.peer_cert_allowed_cn, "peer");
        assert_eq!(f.peer_cert_allowed_hostname, "h");
        assert_eq!(
            f.config_file_ignored,
            vec!["client-transport-security.allowed-cn"]
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(err("bogus-key: 1\n"), r#"unknown key "bogus-key""#);
        assert_eq!(
            err("peer-transport-security:\n  cert: x\n"),
            r#"unknown key "peer-transport-security.cert""#
        );
        assert_eq!(
            err("heartbeat-interval: abc\n"),
            r#"invalid value "abc" for key "heartbeat-interval": expected an integer"#
        );
        assert_eq!(
            err("auto-compaction-retention: 1\n"),
            r#"invalid value "1" for key "auto-compaction-retention": expected a string"#
        );
        assert_eq!(
            err("client-transport-security:\n  client-cert-auth: 1\n"),
            r#"invalid value "1" for key "client-transport-security.client-cert-auth": expected true or false"#
        );
        assert_eq!(
            err("snapshot-count: -1\n"),
            r#"invalid value "-1" for key "snapshot-count": parse error"#
        );
        assert_eq!(
            err("listen-client-urls: ftp://x:1\n"),
            "invalid value \"ftp://x:1\" for key \"listen-client-urls\": \
             URL scheme must be http, https, unix, or unixs: ftp://x:1"
        );
        assert!(err("cert-file: x\n").contains("client-transport-security"));
        assert!(err("name: [1\n").starts_with("invalid YAML"));
        assert!(err("- a\n").contains("mapping"));
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let f = from_str("").unwrap();
        assert_eq!(f.name, "default");
        let f = from_str("# only a comment\n").unwrap();
        assert_eq!(f.listen_client_urls, "http://localhost:2379");
        let f = from_str("listen-client-urls: ''\ninitial-cluster-state: ''\nname: ''\n").unwrap();
        assert_eq!(f.listen_client_urls, "http://localhost:2379");
        assert_eq!(f.initial_cluster_state, "new");
        assert_eq!(f.name, "", "other strings are taken as they are");
    }

    /// The example in deploy/ is what operators copy: it must load and validate.
    #[test]
    fn deploy_example_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/oxcd.conf.yml");
        let f = load(path).unwrap();
        assert!(
            f.config_file_ignored.is_empty(),
            "{:?}",
            f.config_file_ignored
        );
        let c = Config::from_flags(f).unwrap();
        assert_eq!(c.initial_cluster.len(), 3);
        assert!(c.client_tls.client_cert_auth && c.peer_tls.client_cert_auth);
        assert_eq!(c.listen_client_urls[0].scheme, "https");
    }
}
