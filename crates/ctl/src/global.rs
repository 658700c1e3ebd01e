//! Global flags turned into a client configuration: endpoints, timeouts,
//! output format, credentials. Mirrors etcdctl's global.go, including when
//! each check happens and which exit code it uses.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::cli::GlobalArgs;
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::print::{Display, Format};

/// Everything a command needs to reach the cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Endpoints exactly as the user wrote them (etcdctl prints them so).
    pub endpoints: Vec<String>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub auth: Option<(String, String)>,
    pub tls: TlsConfig,
}

#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub insecure_transport: bool,
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    /// etcdctl uses TLS as soon as any TLS file is given, or when plain
    /// text is refused with `--insecure-transport=false`.
    pub fn wanted(&self) -> bool {
        self.cacert.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || !self.insecure_transport
    }
}

/// `--write-out` / `--hex` to a printer; etcdctl checks this when it builds
/// the client, i.e. before talking to the server.
pub fn display_from(g: &GlobalArgs) -> Result<Display> {
    match Format::parse(&g.write_out) {
        Some(f) => Ok(Display::new(f, g.hex)),
        None => Err(CtlError::new(EXIT_BAD_FEATURE, "unsupported output format")),
    }
}

/// Builds the client configuration (etcdctl's clientConfigFromCmd): also
/// validates the output format and asks for a password when needed.
pub fn client_config(g: &GlobalArgs) -> Result<ClientConfig> {
    verify_env(&g.cli_set)?;
    if g.debug {
        print_debug_env(g);
    }
    let tls = tls_from(g)?;
    // The output format is validated here, before dialing, like etcdctl.
    display_from(g)?;
    let auth = auth_from(g)?;
    Ok(ClientConfig {
        endpoints: g.endpoints.clone(),
        dial_timeout: g.dial_timeout,
        command_timeout: g.command_timeout,
        keepalive_time: g.keepalive_time,
        keepalive_timeout: g.keepalive_timeout,
        auth,
        tls,
    })
}

fn tls_from(g: &GlobalArgs) -> Result<TlsConfig> {
    for (name, v) in [("cert", &g.cert), ("key", &g.key), ("cacert", &g.cacert)] {
        if let Some(v) = v {
            if v.is_empty() {
                return Err(CtlError::new(
                    EXIT_BAD_ARGS,
                    format!("empty string is passed to --{name} option"),
                ));
            }
        }
    }
    Ok(TlsConfig {
        cacert: g.cacert.clone(),
        cert: g.cert.clone(),
        key: g.key.clone(),
        insecure_transport: g.insecure_transport,
        insecure_skip_verify: g.insecure_skip_tls_verify,
    })
}

/// `--user name[:password]` / `--password`; prompts when the password is
/// missing, as etcdctl does.
/// Like clientv3, an empty user name or password means no Authenticate at
/// all: requests then go without a token (`user name is empty` when auth is
/// on).
fn auth_from(g: &GlobalArgs) -> Result<Option<(String, String)>> {
    if g.user.is_empty() {
        return Ok(None);
    }
    let (user, password) = if !g.password.is_empty() {
        (g.user.clone(), g.password.clone())
    } else {
        match g.user.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => {
                let pw = prompt_password("Password: ").map_err(|e| CtlError::new(EXIT_ERROR, e))?;
                (g.user.clone(), pw)
            }
        }
    };
    if user.is_empty() || password.is_empty() {
        return Ok(None);
    }
    Ok(Some((user, password)))
}

/// Reads a password without echo when stdin is a terminal (like speakeasy).
pub fn prompt_password(prompt: &str) -> std::result::Result<String, String> {
    let mut so = std::io::stdout();
    let _ = so.write_all(prompt.as_bytes());
    let _ = so.flush();
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        stty("-echo");
    }
    let mut line = String::new();
    let res = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
    }
    let _ = so.write_all(b"\n");
    res.map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `--debug` prints the effective ETCDCTL_* settings like etcdctl.
fn print_debug_env(g: &GlobalArgs) {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let dur = |d: Duration| crate::gostr::duration_string(d);
    let lines = [
        ("CACERT", opt(&g.cacert)),
        ("CERT", opt(&g.cert)),
        ("COMMAND_TIMEOUT", dur(g.command_timeout)),
        ("DEBUG", g.debug.to_string()),
        ("DIAL_TIMEOUT", dur(g.dial_timeout)),
        ("DISCOVERY_SRV", g.discovery_srv.clone()),
        ("DISCOVERY_SRV_NAME", g.discovery_srv_name.clone()),
        ("ENDPOINTS", format!("[{}]", g.endpoints.join(","))),
        ("HEX", g.hex.to_string()),
        ("INSECURE_DISCOVERY", g.insecure_discovery.to_string()),
        (
            "INSECURE_SKIP_TLS_VERIFY",
            g.insecure_skip_tls_verify.to_string(),
        ),
        ("INSECURE_TRANSPORT", g.insecure_transport.to_string()),
        ("KEEPALIVE_TIME", dur(g.keepalive_time)),
        ("KEEPALIVE_TIMEOUT", dur(g.keepalive_timeout)),
        ("KEY", opt(&g.key)),
        ("PASSWORD", g.password.clone()),
        ("USER", g.user.clone()),
        ("WRITE_OUT", g.write_out.clone()),
    ];
    let mut e = std::io::stderr().lock();
    for (k, v) in lines {
        let _ = writeln!(e, "ETCDCTL_{k}={v}");
    }
}

/// Global flag names that may come from ETCDCTL_* (plus the variables
/// etcdctl reads itself); anything else gets etcdctl's warning.
const KNOWN_ENV: [&str; 21] = [
    "API",
    "CACERT",
    "CERT",
    "COMMAND_TIMEOUT",
    "DEBUG",
    "DIAL_TIMEOUT",
    "DISCOVERY_SRV",
    "DISCOVERY_SRV_NAME",
    "ENDPOINTS",
    "HEX",
    "INSECURE_DISCOVERY",
    "INSECURE_SKIP_TLS_VERIFY",
    "INSECURE_TRANSPORT",
    "KEEPALIVE_TIME",
    "KEEPALIVE_TIMEOUT",
    "KEY",
    "PASSWORD",
    "USER",
    "WRITE_OUT",
    "WATCH_KEY",
    "WATCH_RANGE_END",
];

/// etcd's pkg/flags check of the environment, run when the client is
/// configured: a variable shadowed by a flag given on the command line is
/// fatal, unknown ETCDCTL_* variables get a warning.
fn verify_env(cli_set: &[String]) -> Result<()> {
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let Some(name) = k.strip_prefix("ETCDCTL_") else {
            continue;
        };
        let ts = crate::gostr_time::now_capnslog();
        if cli_set.iter().any(|f| f == name) {
            let _ = writeln!(
                std::io::stderr(),
                "{ts} C | pkg/flags: conflicting environment variable \"{k}\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
            );
            return Err(CtlError::silent(EXIT_ERROR));
        }
        if KNOWN_ENV.contains(&name) {
            continue;
        }
        let _ = writeln!(
            std::io::stderr(),
            "{ts} W | pkg/flags: unrecognized environment variable {k}={}",
            v.to_string_lossy()
        );
    }
    Ok(())
}
