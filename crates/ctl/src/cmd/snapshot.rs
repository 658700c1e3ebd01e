//! `snapshot save <filename>`: streams the backend snapshot of one member
//! into `<filename>.part`, syncs it, then renames it into place.

use std::io::Write;

use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::SnapshotRequest;
use tokio_stream::StreamExt;

use crate::cli::{GlobalArgs, SnapshotCmd};
use crate::client::with_token;
use crate::error::{CtlError, Result, DEADLINE_EXCEEDED, EXIT_BAD_ARGS, EXIT_INTERRUPTED};
use crate::print::outln;

pub async fn run(g: &GlobalArgs, cmd: &SnapshotCmd, timeout_set: bool) -> Result<()> {
    let SnapshotCmd::Save(a) = cmd;
    if a.args.len() != 1 {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "snapshot save expects one argument",
        ));
    }
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
    // Without an explicit --command-timeout a snapshot may take as long as
    // it needs (etcdctl does the same).
    let work = save(&c, &path);
    let res = if timeout_set {
        match tokio::time::timeout(g.command_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DEADLINE_EXCEEDED.to_string()),
        }
    } else {
        work.await
    };
    res.map_err(|e| CtlError::new(EXIT_INTERRUPTED, e))?;
    outln(&format!("Snapshot saved at {path}"));
    Ok(())
}

async fn save(c: &crate::client::Client, path: &str) -> std::result::Result<(), String> {
    let part = format!("{path}.part");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&part)
        .map_err(|e| format!("could not open {part} ({})", go_io_err("open", &part, &e)))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    let token = c.request(()).metadata().get("token").cloned();
    let mut stream = MaintenanceClient::new(c.channel(0))
        .snapshot(with_token(SnapshotRequest {}, &token))
        .await
        .map_err(|s| crate::error::status_text(&s))?
        .into_inner();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|s| crate::error::status_text(&s))?;
        f.write_all(&msg.blob).map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())?;
    drop(f);
    std::fs::rename(&part, path).map_err(|e| {
        format!(
            "could not rename {part} to {path} ({})",
            go_io_err("rename", &part, &e)
        )
    })?;
    Ok(())
}

/// Go's *PathError text: "open /x: permission denied".
fn go_io_err(op: &str, path: &str, e: &std::io::Error) -> String {
    let msg = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("{op} {path}: {msg}")
}
