//! `snapshot save|status|restore`, as in etcdctl 3.4.
//!
//! `save <filename>` streams the backend snapshot of one member into `<filename>.part`, checks
//! the SHA-256 the server appends, syncs the file and renames it into place. It logs etcdctl's
//! lines on stderr and shows how much has arrived: a live line on a terminal, otherwise a log
//! line at most once a second.
//!
//! With `--format etcd`, the snapshot (which must come from an oxcd server) is then converted
//! into etcd 3.4's format, a bbolt file with its SHA-256, for `etcdctl snapshot restore`.
//!
//! `status` and `restore` work on files only, of either format; they share oxcd's `backup`
//! module with oxutl.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::SnapshotRequest;
use oxcd_server::backup::convert::{convert, Format as FileFormat};
use oxcd_server::backup::file::{go_bytes, Hasher, HASH_LEN};
use oxcd_server::backup::log::Sink;
use oxcd_server::backup::{self, humanize_bytes, RestoreOptions};
use serde_json::json;
use tokio_stream::StreamExt;

use crate::cli::{GlobalArgs, Rest, SnapshotCmd, SnapshotRestoreArgs, SnapshotSaveArgs};
use crate::client::with_token;
use crate::error::{CtlError, Result, DEADLINE_EXCEEDED, EXIT_BAD_ARGS, EXIT_INTERRUPTED};
use crate::print::{outln, Format};

pub async fn run(g: &GlobalArgs, cmd: &SnapshotCmd, timeout_set: bool) -> Result<()> {
    match cmd {
        SnapshotCmd::Save(a) => save_cmd(g, a, timeout_set).await,
        SnapshotCmd::Status(a) => status_cmd(g, a),
        SnapshotCmd::Restore(a) => restore_cmd(a),
    }
}

fn backup_err(e: backup::Error) -> CtlError {
    CtlError::new(e.code, e.msg)
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Simple => "simple",
        Format::Json => "json",
        Format::Fields => "fields",
        Format::Protobuf => "protobuf",
        Format::Table => "table",
    }
}

fn status_cmd(g: &GlobalArgs, a: &Rest) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "snapshot status requires exactly one argument",
        ));
    }
    let display = crate::global::display_from(g)?;
    let st = backup::status(std::path::Path::new(&a.args[0])).map_err(backup_err)?;
    let text = backup::render_status(&st, format_name(display.format)).map_err(backup_err)?;
    crate::print::out(text.as_bytes());
    Ok(())
}

fn restore_cmd(a: &SnapshotRestoreArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "snapshot restore requires exactly one argument",
        ));
    }
    let o = RestoreOptions {
        name: a.name.clone(),
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        initial_advertise_peer_urls: a.initial_advertise_peer_urls.clone(),
        data_dir: a.data_dir.clone(),
        wal_dir: a.wal_dir.clone(),
        skip_hash_check: a.skip_hash_check,
        log: Sink::Stderr,
        ..RestoreOptions::new(&a.args[0])
    };
    backup::restore(&o).map_err(backup_err)?;
    Ok(())
}

async fn save_cmd(g: &GlobalArgs, a: &SnapshotSaveArgs, timeout_set: bool) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "snapshot save expects one argument",
        ));
    }
    let format: FileFormat = a
        .format
        .parse()
        .map_err(|e: backup::Error| CtlError::new(EXIT_BAD_ARGS, e.msg))?;
    let path = a.args[0].clone();
    let (c, _) = super::client(g).await?;
    if g.endpoints.len() != 1 {
        return Err(CtlError::new(
            EXIT_INTERRUPTED,
            format!(
                "snapshot must be requested to one selected node, not multiple {}",
                crate::gostr::string_slice(&g.endpoints)
            ),
        ));
    }
    // An etcd-format file is converted from the server's own snapshot, fetched beside it under
    // a temporary name of the save's own (like etcdctl's `<path>.part`), never a name a user's
    // file may have.
    let fetched = match format {
        FileFormat::Oxcd => path.clone(),
        FileFormat::Etcd => format!("{path}.part.oxcd-{}", std::process::id()),
    };
    // Without an explicit --command-timeout a snapshot may take as long as
    // it needs (etcdctl does the same).
    let work = save(&c, &fetched, &g.endpoints[0]);
    let res = if timeout_set {
        match tokio::time::timeout(g.command_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DEADLINE_EXCEEDED.to_string()),
        }
    } else {
        work.await
    };
    res.map_err(|e| CtlError::new(EXIT_INTERRUPTED, e))?;
    if format == FileFormat::Etcd {
        let made = to_etcd(&fetched, &path);
        let _ = std::fs::remove_file(&fetched);
        made?;
    }
    outln(&format!("Snapshot saved at {path}"));
    Ok(())
}

/// Converts the oxcd snapshot at `fetched` into an etcd one at `path` (replacing it, as a save
/// replaces its file).
fn to_etcd(fetched: &str, path: &str) -> Result<()> {
    if FileFormat::of_file(std::path::Path::new(fetched)) == FileFormat::Etcd {
        // The server is an etcd: its snapshot already is one.
        return std::fs::rename(fetched, path)
            .map_err(|e| CtlError::new(EXIT_INTERRUPTED, go_io_err("rename", fetched, &e)));
    }
    let part = format!("{path}.part");
    let _ = std::fs::remove_file(&part);
    let size = convert(
        std::path::Path::new(fetched),
        std::path::Path::new(&part),
        FileFormat::Etcd,
        false,
    )
    .map_err(|e| CtlError::new(EXIT_INTERRUPTED, e.msg))?;
    std::fs::rename(&part, path)
        .map_err(|e| CtlError::new(EXIT_INTERRUPTED, go_io_err("rename", &part, &e)))?;
    log(
        "converted snapshot to etcd format",
        &[("path", json!(path)), ("size", json!(humanize_bytes(size)))],
    );
    Ok(())
}

/// etcdctl's own log lines (its "snapshot" package's; the client library's are left out).
fn log(msg: &str, fields: &[(&str, serde_json::Value)]) {
    Sink::Stderr.info(&oxcd_server::backup_caller!(), msg, fields);
}

/// How the download shows progress on stderr.
struct Progress {
    tty: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            tty: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            shown: false,
        }
    }

    fn update(&mut self, received: u64, total: u64) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let pct = received
            .saturating_mul(100)
            .checked_div(total)
            .unwrap_or(100);
        if self.tty {
            let mut e = std::io::stderr().lock();
            let _ = write!(
                e,
                "\rreceived {} of {} ({pct}%)\x1b[K",
                humanize_bytes(received),
                humanize_bytes(total)
            );
            let _ = e.flush();
            self.shown = true;
        } else {
            log(
                "downloading snapshot",
                &[
                    ("received", json!(humanize_bytes(received))),
                    ("total", json!(humanize_bytes(total))),
                    ("percent", json!(pct)),
                    ("took", json!(self.started.elapsed().as_secs_f64())),
                ],
            );
        }
    }

    /// Clears the live line, if one was drawn.
    fn done(&mut self) {
        if self.shown {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}

/// The SHA-256 of every byte but the last 32, and those last 32.
#[derive(Default)]
struct TrailingHash {
    sha: Hasher,
    tail: Vec<u8>,
}

impl TrailingHash {
    fn update(&mut self, b: &[u8]) {
        self.tail.extend_from_slice(b);
        if self.tail.len() > HASH_LEN {
            let cut = self.tail.len() - HASH_LEN;
            self.sha.update(&self.tail[..cut]);
            self.tail.drain(..cut);
        }
    }
}

async fn save(
    c: &crate::client::Client,
    path: &str,
    endpoint: &str,
) -> std::result::Result<(), String> {
    let part = format!("{path}.part");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&part)
        .map_err(|e| format!("could not open {part} ({})", go_io_err("open", &part, &e)))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    log("created temporary db file", &[("path", json!(part))]);
    let started = Instant::now();
    let token = c.request(()).metadata().get("token").cloned();
    let mut stream = MaintenanceClient::new(c.channel(0))
        .snapshot(with_token(SnapshotRequest {}, &token))
        .await
        .map_err(|s| crate::error::status_text(&s))?
        .into_inner();
    log("fetching snapshot", &[("endpoint", json!(endpoint))]);
    let mut progress = Progress::new();
    let mut hash = TrailingHash::default();
    let (mut received, mut total) = (0u64, None);
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|s| crate::error::status_text(&s))?;
        f.write_all(&msg.blob).map_err(|e| e.to_string())?;
        hash.update(&msg.blob);
        received += msg.blob.len() as u64;
        // The first message tells the size: its chunk, what follows, and the hash.
        let total = *total.get_or_insert(received + msg.remaining_bytes + HASH_LEN as u64);
        progress.update(received.min(total), total);
    }
    progress.done();
    let size = received;
    let TrailingHash { sha, tail } = hash;
    let computed = sha.finish();
    if tail.len() != HASH_LEN || (size % 512 != HASH_LEN as u64 && tail[..] != computed[..]) {
        return Err(format!("sha256 checksum not found [bytes: {size}]"));
    }
    if tail[..] != computed[..] {
        return Err(format!(
            "expected sha256 {}, got {}",
            go_bytes(&tail),
            go_bytes(&computed)
        ));
    }
    f.sync_all().map_err(|e| e.to_string())?;
    drop(f);
    log(
        "fetched snapshot",
        &[
            ("endpoint", json!(endpoint)),
            ("size", json!(humanize_bytes(size))),
            ("took", json!(started.elapsed().as_secs_f64())),
        ],
    );
    std::fs::rename(&part, path).map_err(|e| {
        format!(
            "could not rename {part} to {path} ({})",
            go_io_err("rename", &part, &e)
        )
    })?;
    log("saved", &[("path", json!(path))]);
    Ok(())
}

/// Go's *PathError text: "open /x: permission denied".
fn go_io_err(op: &str, path: &str, e: &std::io::Error) -> String {
    format!("{op} {path}: {}", backup::go_errno_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_hash_splits_the_last_32_bytes() {
        let body: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut all = body.clone();
        all.extend_from_slice(&backup::file::sha256(&body));
        let mut h = TrailingHash::default();
        for chunk in all.chunks(7) {
            h.update(chunk);
        }
        assert_eq!(h.tail, backup::file::sha256(&body));
        assert_eq!(h.sha.finish(), backup::file::sha256(&body));
    }
}
