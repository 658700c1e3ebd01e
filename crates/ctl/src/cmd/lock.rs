//! `lock <lockname> [exec-command arg1 arg2 ...]` over the Lock service, with etcdctl's outputs
//! and errors: holds the lock until interrupted, or runs the command under it with
//! `ETCD_LOCK_KEY` and `ETCD_LOCK_REV` in its environment.

use std::sync::Arc;

use oxcd_api::etcdserverpb::RangeRequest;
use oxcd_api::v3lockpb::lock_client::LockClient;
use oxcd_api::v3lockpb::{LockRequest, UnlockRequest};

use super::elect::{interrupted, Session, CONTEXT_CANCELED};
use crate::cli::{GlobalArgs, LockArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::gostr::quote;

pub async fn run(g: &GlobalArgs, a: &LockArgs) -> Result<()> {
    if a.args.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "lock takes a lock name argument and an optional command to execute",
        ));
    }
    let (c, d) = super::client(g).await?;
    let c = Arc::new(c);
    let mut s = Session::new(&c, a.ttl).await?;
    let mut client = LockClient::new(c.channel(0));
    let req = c.request(LockRequest {
        name: a.args[0].as_bytes().to_vec(),
        lease: s.lease,
    });
    let locked = tokio::select! {
        _ = interrupted() => return Err(CtlError::new(EXIT_ERROR, CONTEXT_CANCELED)),
        r = client.lock(req) => r?.into_inner(),
    };
    let key = locked.key.clone();
    let unlock = |client: &mut LockClient<_>| {
        let req = c.request(UnlockRequest { key: key.clone() });
        let mut client = client.clone();
        async move { client.unlock(req).await.map(|_| ()) }
    };
    if a.args.len() > 1 {
        let rev = locked.header.as_ref().map_or(0, |h| h.revision);
        let status = run_command(&a.args[1..], &key, rev);
        let unlocked = unlock(&mut client).await;
        status?;
        unlocked?;
        return Ok(());
    }
    let resp = c
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await?;
    if resp.kvs.is_empty() {
        return Err(CtlError::new(EXIT_ERROR, "lock lost on init"));
    }
    d.get(&resp)?;
    tokio::select! {
        _ = interrupted() => {
            unlock(&mut client).await?;
            Ok(())
        }
        _ = s.done() => Err(CtlError::new(EXIT_ERROR, "session expired")),
    }
}

/// Runs the command with the lock's variables ahead of the environment (a variable already set
/// wins, as with Go's exec), its stdio the terminal's; Go's texts for a failure.
fn run_command(args: &[String], key: &[u8], rev: i64) -> Result<()> {
    let mut cmd = std::process::Command::new(&args[0]);
    cmd.args(&args[1..]);
    if std::env::var_os("ETCD_LOCK_KEY").is_none() {
        cmd.env("ETCD_LOCK_KEY", String::from_utf8_lossy(key).as_ref());
    }
    if std::env::var_os("ETCD_LOCK_REV").is_none() {
        cmd.env("ETCD_LOCK_REV", rev.to_string());
    }
    let err = match cmd.status() {
        Ok(s) if s.success() => return Ok(()),
        Ok(s) => match s.code() {
            Some(code) => format!("exit status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = s.signal().unwrap_or(0);
                format!("signal: {}", signal_name(sig))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
            "exec: {}: executable file not found in $PATH",
            quote(args[0].as_bytes())
        ),
        Err(e) => e.to_string(),
    };
    Err(CtlError::new(EXIT_ERROR, err))
}

/// Go's names of the signals a command commonly dies of.
fn signal_name(sig: i32) -> String {
    match sig {
        1 => "hangup".into(),
        2 => "interrupt".into(),
        6 => "aborted".into(),
        9 => "killed".into(),
        11 => "segmentation fault".into(),
        13 => "broken pipe".into(),
        15 => "terminated".into(),
        n => format!("signal {n}"),
    }
}
