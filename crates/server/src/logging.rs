//! Log lines shaped like etcd's zap logger (`--logger=zap`): one JSON object a line with
//! `level` (lowercase), `ts` (ISO 8601, milliseconds, UTC), `caller` (the last two path
//! components and the line, as zap's short caller), `msg`, then the event's fields in the order
//! they were given. Field names written with `_` (Rust identifiers) come out with `-`, etcd's
//! spelling (`local_member_id` → `local-member-id`). An event may name its own `caller` field
//! (raft-rs's records do), which replaces the call site's.
//!
//! `--log-outputs` takes etcd's values: `default` and `stderr` (standard error), `stdout`, or file
//! paths (appended to, created if missing); every line goes to each output.

use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// etcd's name of a level.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

/// zap's short caller: the last two components of `file`, then `:line`.
pub fn short_caller(file: &str, line: u32) -> String {
    let file = file.replace('\\', "/");
    let mut parts = file.rsplitn(3, '/');
    let name = parts.next().unwrap_or_default();
    match parts.next() {
        Some(dir) => format!("{dir}/{name}:{line}"),
        None => format!("{name}:{line}"),
    }
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// A duration as Go prints it (`0s`, `689.613µs`, `100ms`, `1.5s`, `1m30s`), etcd's spelling
/// of `took`, `expected-duration` and the configured intervals.
pub fn go_duration(d: std::time::Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if d < std::time::Duration::from_secs(60) {
        return format!("{d:?}");
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let rest = std::time::Duration::new(secs % 60, d.subsec_nanos());
    let s = if rest.is_zero() {
        "0s".to_string()
    } else {
        format!("{rest:?}")
    };
    if h > 0 {
        format!("{h}h{m}m{s}")
    } else {
        format!("{m}m{s}")
    }
}

/// etcd's (Go's) name of this machine's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Marks a field value that is already JSON (see [`strings`]).
const RAW_JSON: &str = "\u{0}json:";

/// A field value written as a JSON array of strings, as zap's `zap.Strings` (etcd's URL lists):
/// `tracing::info!(listen_peer_urls = ?logging::strings(&urls), ...)`.
pub fn strings<S: AsRef<str>>(items: &[S]) -> RawJson {
    let list: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    RawJson(serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()))
}

/// A field value that is already JSON; use with `?` in a tracing macro.
pub struct RawJson(String);

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{RAW_JSON}{}", self.0)
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    msg: String,
    caller: Option<String>,
    /// `,"key":value` for each field, in order.
    rest: String,
}

impl Fields {
    fn key(&mut self, field: &Field) {
        self.rest.push(',');
        push_json_str(&mut self.rest, &field.name().replace('_', "-"));
        self.rest.push(':');
    }
    fn text(&mut self, field: &Field, value: &str) {
        if let Some(raw) = value.strip_prefix(RAW_JSON) {
            self.key(field);
            self.rest.push_str(raw);
            return;
        }
        match field.name() {
            "message" => self.msg = value.to_string(),
            "caller" => self.caller = Some(value.to_string()),
            _ => {
                self.key(field);
                push_json_str(&mut self.rest, value);
            }
        }
    }
    fn raw(&mut self, field: &Field, value: std::fmt::Arguments) {
        if matches!(field.name(), "message" | "caller") {
            return self.text(field, &value.to_string());
        }
        self.key(field);
        let _ = self.rest.write_fmt(value);
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            self.text(field, &value.to_string());
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, &value.to_string());
    }
}

/// Formats one event as etcd's zap JSON line.
pub fn format_line(event: &Event<'_>, now: std::time::SystemTime) -> String {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let caller = fields.caller.take().unwrap_or_else(|| {
        short_caller(meta.file().unwrap_or("<unknown>"), meta.line().unwrap_or(0))
    });
    let mut line = String::with_capacity(96 + fields.msg.len() + fields.rest.len());
    line.push_str("{\"level\":\"");
    line.push_str(level_name(meta.level()));
    line.push_str("\",\"ts\":\"");
    let _ = write!(line, "{}", humantime::format_rfc3339_millis(now));
    line.push_str("\",\"caller\":");
    push_json_str(&mut line, &caller);
    line.push_str(",\"msg\":");
    push_json_str(&mut line, &fields.msg);
    line.push_str(&fields.rest);
    line.push_str("}\n");
    line
}

/// The `FormatEvent` of `tracing_subscriber::fmt` writing etcd's zap lines.
pub struct ZapFormat;

impl<S, N> FormatEvent<S, N> for ZapFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        writer.write_str(&format_line(event, std::time::SystemTime::now()))
    }
}

enum Sink {
    Stderr,
    Stdout,
    File(Mutex<std::fs::File>),
}

/// `--log-outputs`: where every line goes.
#[derive(Clone)]
pub struct Outputs(Arc<Vec<Sink>>);

impl Outputs {
    /// Opens etcd's `--log-outputs` values; a file is appended to and created if missing.
    pub fn open(outputs: &[String]) -> std::io::Result<Outputs> {
        let mut sinks = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for o in outputs {
            let o = if o.is_empty() || o == "default" {
                "stderr"
            } else {
                o
            };
            if !seen.insert(o.to_string()) {
                continue;
            }
            sinks.push(match o {
                "stderr" => Sink::Stderr,
                "stdout" => Sink::Stdout,
                path => Sink::File(Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| std::io::Error::new(e.kind(), format!("open {path}: {e}")))?,
                )),
            });
        }
        if sinks.is_empty() {
            sinks.push(Sink::Stderr);
        }
        Ok(Outputs(Arc::new(sinks)))
    }
}

impl std::io::Write for Outputs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        for sink in self.0.iter() {
            // A line that cannot be written is dropped, as zap drops it.
            let _ = match sink {
                Sink::Stderr => std::io::stderr().lock().write_all(buf),
                Sink::Stdout => std::io::stdout().lock().write_all(buf),
                Sink::File(f) => f.lock().write_all(buf),
            };
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        for sink in self.0.iter() {
            let _ = match sink {
                Sink::Stderr => std::io::stderr().flush(),
                Sink::Stdout => std::io::stdout().flush(),
                Sink::File(f) => f.lock().flush(),
            };
        }
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = Outputs;
    fn make_writer(&'a self) -> Outputs {
        self.clone()
    }
}

/// The filter for `--log-level`: raft-rs logs at info about every vote and append, as etcd's
/// raft does; below debug only its warnings show, and oxcd logs the leader changes itself.
pub fn filter(level: &str) -> String {
    let level = match level {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        _ => "error",
    };
    if level == "debug" {
        "debug".to_string()
    } else {
        format!("{level},raft=warn")
    }
}

/// Installs the process's logger: etcd's zap lines at `level` to `outputs`.
pub fn init(level: &str, outputs: &[String]) -> std::io::Result<()> {
    let writer = Outputs::open(outputs)?;
    tracing_subscriber::fmt()
        .event_format(ZapFormat)
        .with_writer(writer)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter(level)))
        .init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn durations_as_go_prints_them() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_nanos(689_613)), "689.613µs");
    }

    #[test]
    fn short_caller_keeps_two_components() {
        assert_eq!(
            short_caller("crates/server/src/raft/storage.rs", 12),
            "raft/storage.rs:12"
        );
        assert_eq!(short_caller("src/main.rs", 3), "src/main.rs:3");
        assert_eq!(short_caller("main.rs", 3), "main.rs:3");
    }

    struct Capture(Arc<Mutex<Vec<String>>>);
    impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0
                .lock()
                .push(format_line(event, std::time::UNIX_EPOCH));
        }
    }

    #[test]
    fn lines_have_zaps_keys_in_order() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(
                local_member_id = %format!("{:x}", 0xabu64),
                took = "1.5s",
                "expected-duration" = "1s",
                count = 3u64,
                ok = true,
                urls = ?strings(&["http://a", "b\"c"]),
                "slow \"fdatasync\""
            );
            tracing::info!(caller = "raft/raft.rs:9", "x");
        });
        let lines = lines.lock();
        let line = lines[0].trim_end();
        assert!(line.starts_with(
            r#"{"level":"warn","ts":"1970-01-01T00:00:00.000Z","caller":"src/logging.rs:"#
        ));
        assert!(line.ends_with(
            r#","msg":"slow \"fdatasync\"","local-member-id":"ab","took":"1.5s","expected-duration":"1s","count":3,"ok":true,"urls":["http://a","b\"c"]}"#
        ), "{line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["count"], 3);
        assert_eq!(
            lines[1].trim_end(),
            r#"{"level":"info","ts":"1970-01-01T00:00:00.000Z","caller":"raft/raft.rs:9","msg":"x"}"#
        );
    }
}
