//! Routes raft-rs's slog records into the server's tracing output.

use std::fmt::Write as _;

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

struct KvText(String);

impl Serializer for KvText {
    fn emit_arguments(&mut self, key: Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = format!("{}{}", record.msg(), kv.0);
        // The record's own source line, as etcd's raft lines name raft/raft.go.
        let file = record.file().rsplit('/').next().unwrap_or_default();
        let caller = format!("raft/{file}:{}", record.line());
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", caller = %caller, "{msg}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", caller = %caller, "{msg}"),
            slog::Level::Info => tracing::info!(target: "raft", caller = %caller, "{msg}"),
            _ => tracing::debug!(target: "raft", caller = %caller, "{msg}"),
        }
        Ok(())
    }
}

pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
