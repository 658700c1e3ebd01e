//! Progress lines of the snapshot commands, shaped like etcdctl's (zap's JSON encoder):
//! `{"level":"info","ts":1700000000.123,"caller":"backup/restore.rs:42","msg":"restoring snapshot",...}`
//! one per line on stderr, fields in the order given.

use std::io::Write;

use serde_json::Value;

/// Where log lines go. `Stderr` for the command line tools; `Silent` for tests and callers
/// that report progress their own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    Silent,
}

/// A JSON log line: level, ts (seconds since the epoch, as etcdctl's snapshot lines print it),
/// caller, msg, then `fields` in order.
pub fn line(level: &str, caller: &str, msg: &str, fields: &[(&str, Value)]) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut s = format!(
        "{{\"level\":{},\"ts\":{},\"caller\":{},\"msg\":{}",
        Value::from(level),
        Value::from(ts),
        Value::from(caller),
        Value::from(msg)
    );
    for (k, v) in fields {
        s.push(',');
        s.push_str(&Value::from(*k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push('}');
    s
}

impl Sink {
    pub fn info(self, caller: &str, msg: &str, fields: &[(&str, Value)]) {
        self.emit("info", caller, msg, fields);
    }

    pub fn emit(self, level: &str, caller: &str, msg: &str, fields: &[(&str, Value)]) {
        if self == Sink::Silent {
            return;
        }
        let text = line(level, caller, msg, fields);
        let _ = std::io::stdout().flush();
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{text}");
    }
}

/// `"backup/restore.rs:42"` for the line it is used on.
#[macro_export]
macro_rules! backup_caller {
    () => {{
        let f = file!();
        let f = f.rsplit_once("src/").map_or(f, |(_, rest)| rest);
        format!("{}:{}", f, line!())
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order() {
        let l = line(
            "info",
            "backup/x.rs:1",
            "restoring snapshot",
            &[("path", "s.db".into()), ("a", Value::from(vec!["u"]))],
        );
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "restoring snapshot");
        assert!(v["ts"].as_f64().unwrap() > 1e9);
        assert!(l.ends_with(
            r#""caller":"backup/x.rs:1","msg":"restoring snapshot","path":"s.db","a":["u"]}"#
        ));
    }
}
