//! `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]`
//! and `watch -i` (interactive: "watch ..." and "progress" lines on stdin).

use std::io::{BufRead, Write};
use std::sync::Arc;

use clap::Parser;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc::Sender;

use crate::cli::{GlobalArgs, WatchArgs};
use crate::client::Client;
use crate::error::{
    CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT,
};
use crate::gostr::quote;
use crate::print::{errln, outln, Display};

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";

/// What one watch subscribes to.
#[derive(Clone, Debug)]
struct WatchSpec {
    key: Vec<u8>,
    range_end: Vec<u8>,
    rev: i64,
    prev_kv: bool,
    progress_notify: bool,
}

fn env_keys() -> (String, String) {
    (
        std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default(),
        std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default(),
    )
}

pub async fn run(g: &GlobalArgs, a: &WatchArgs) -> Result<()> {
    let (env_key, env_range) = env_keys();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            format!(
                "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
                quote(env_range.as_bytes())
            ),
        ));
    }
    if a.interactive {
        return interactive(g, a, &env_key, &env_range).await;
    }
    let raw: Vec<String> = std::env::args().collect();
    let (watch_args, exec_args) = parse_watch_args(&raw, &a.args, &env_key, &env_range)
        .map_err(|m| CtlError::new(EXIT_BAD_ARGS, m))?;
    let spec = watch_spec(&watch_args, a.prefix, a.rev, a.prev_kv, a.progress_notify)
        .map_err(|m| CtlError::new(EXIT_BAD_ARGS, m))?;
    let (c, d) = super::client(g).await?;
    let c = Arc::new(c);
    watch_loop(&c, &d, spec, &exec_args, None).await?;
    Err(CtlError::new(
        EXIT_INTERRUPTED,
        "watch is canceled by the server",
    ))
}

/// etcdctl's parseWatchArgs for the command line: splits the positional
/// arguments into watch arguments and the command after "--", using the
/// raw process arguments to find the separator (clap drops it).
fn parse_watch_args(
    os_args: &[String],
    command_args: &[String],
    env_key: &str,
    env_range: &str,
) -> std::result::Result<(Vec<String>, Vec<String>), String> {
    let raw: Vec<String> = match os_args.iter().position(|x| x == "watch") {
        Some(i) => os_args[i + 1..].to_vec(),
        None => os_args.to_vec(),
    };
    let sep = raw.iter().position(|x| x == "--");
    if let Some(i) = sep {
        if i == raw.len() - 1 {
            return Err(BAD_ARGS_SEPARATOR.into());
        }
    }
    if sep.is_none() && raw.is_empty() && env_key.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    let exec_args: Vec<String> = match sep {
        Some(i) => raw[i + 1..].to_vec(),
        None => vec![],
    };
    // Positional arguments given before "--".
    let before = command_args.len().saturating_sub(exec_args.len());
    if !env_key.is_empty()
        && ((sep.is_some() && before > 0) || (sep.is_none() && !command_args.is_empty()))
    {
        return Err(BAD_ARGS_CONFLICT_ENV.into());
    }
    let mut watch_args: Vec<String> = Vec::new();
    if !env_key.is_empty() {
        watch_args.push(env_key.to_string());
        if !env_range.is_empty() {
            watch_args.push(env_range.to_string());
        }
    }
    if sep.is_some() {
        watch_args.extend_from_slice(&command_args[..before]);
    } else {
        watch_args.extend_from_slice(command_args);
    }
    Ok((watch_args, exec_args))
}

/// etcdctl's getWatchChan argument checks.
fn watch_spec(
    args: &[String],
    prefix: bool,
    rev: i64,
    prev_kv: bool,
    progress_notify: bool,
) -> std::result::Result<WatchSpec, String> {
    if args.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    let mut key = args[0].clone().into_bytes();
    let mut range_end = Vec::new();
    if args.len() == 2 {
        if prefix {
            return Err("`range_end` and `--prefix` are mutually exclusive".into());
        }
        range_end = args[1].clone().into_bytes();
    }
    if prefix {
        if key.is_empty() {
            key = vec![0];
            range_end = vec![0];
        } else {
            range_end = super::prefix_end(&key);
        }
    }
    Ok(WatchSpec {
        key,
        range_end,
        rev,
        prev_kv,
        progress_notify,
    })
}

fn create_request(spec: &WatchSpec) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: spec.key.clone(),
                range_end: spec.range_end.clone(),
                start_revision: spec.rev,
                progress_notify: spec.progress_notify,
                prev_kv: spec.prev_kv,
                ..Default::default()
            },
        )),
    }
}

fn progress_request() -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    }
}

/// clientv3's WatchResponse.Err() for a canceled watch.
fn cancel_error(r: &WatchResponse) -> String {
    if r.compact_revision != 0 {
        return COMPACTED.into();
    }
    if !r.cancel_reason.is_empty() {
        // A watch refused at creation (e.g. permission denied): clientv3
        // reports the server's reason as it is.
        if r.cancel_reason.starts_with("etcdserver: ") || r.created || r.watch_id == -1 {
            return r.cancel_reason.clone();
        }
        return format!(
            "rpc error: code = FailedPrecondition desc = {}",
            r.cancel_reason
        );
    }
    FUTURE_REV.into()
}

fn is_progress_notify(r: &WatchResponse) -> bool {
    r.events.is_empty()
        && !r.canceled
        && !r.created
        && r.compact_revision == 0
        && r.header.as_ref().map(|h| h.revision).unwrap_or(0) != 0
}

/// Watches until the server cancels the watch. Reconnects (resuming after
/// the last seen revision) when the connection drops, like clientv3.
/// `progress` receives the stream's sender so "progress" lines can use it.
async fn watch_loop(
    c: &Arc<Client>,
    d: &Display,
    mut spec: WatchSpec,
    exec_args: &[String],
    progress: Option<tokio::sync::mpsc::UnboundedSender<Sender<WatchRequest>>>,
) -> Result<()> {
    loop {
        let (tx, mut stream) = c
            .open_bidi(vec![create_request(&spec)], None, |ch, req| async move {
                WatchClient::new(ch).watch(req).await
            })
            .await?;
        if let Some(p) = &progress {
            let _ = p.send(tx.clone());
        }
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                // Connection lost: reconnect and resume.
                Ok(None) | Err(_) => break,
            };
            if resp.created && resp.events.is_empty() && !resp.canceled {
                // clientv3 does not hand the "created" notice to etcdctl.
                continue;
            }
            if resp.canceled {
                errln(&format!("watch was canceled ({})", cancel_error(&resp)));
            }
            if is_progress_notify(&resp) {
                outln(&format!(
                    "progress notify: {}",
                    resp.header.as_ref().map(|h| h.revision).unwrap_or(0)
                ));
            }
            d.watch(&resp)?;
            let _ = std::io::stdout().flush();
            if !exec_args.is_empty() {
                run_exec(exec_args, &resp)?;
            }
            if resp.canceled {
                return Ok(());
            }
            if let Some(last) = resp.events.last().and_then(|e| e.kv.as_ref()) {
                spec.rev = last.mod_revision + 1;
            }
        }
        drop(tx);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Runs the exec command once per event with the ETCD_WATCH_* variables.
fn run_exec(exec_args: &[String], resp: &WatchResponse) -> Result<()> {
    let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    for ev in &resp.events {
        let kv = ev.kv.clone().unwrap_or_default();
        let status = std::process::Command::new(&exec_args[0])
            .args(&exec_args[1..])
            .env("ETCD_WATCH_REVISION", rev.to_string())
            .env(
                "ETCD_WATCH_EVENT_TYPE",
                quote(crate::print::simple::event_type_name(ev.r#type).as_bytes()),
            )
            .env("ETCD_WATCH_KEY", quote(&kv.key))
            .env("ETCD_WATCH_VALUE", quote(&kv.value))
            .status();
        let err = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(match s.code() {
                Some(code) => format!("exit status {code}"),
                None => "signal: killed".to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "exec: {}: executable file not found in $PATH",
                quote(exec_args[0].as_bytes())
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(err) = err {
            let quoted: Vec<String> = exec_args.iter().map(|a| quote(a.as_bytes())).collect();
            errln(&format!("command [{}] error ({err})", quoted.join(" ")));
            return Err(CtlError::silent(EXIT_ERROR));
        }
    }
    Ok(())
}

/// Flags of an interactive "watch ..." line.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct InteractiveLine {
    #[command(flatten)]
    args: WatchArgs,
}

/// `watch -i`: each stdin line starts a watch or asks for progress.
async fn interactive(g: &GlobalArgs, a: &WatchArgs, env_key: &str, env_range: &str) -> Result<()> {
    let (c, d) = super::client(g).await?;
    let c = Arc::new(c);
    let d = Arc::new(d);
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<Sender<WatchRequest>>();
    let mut senders: Vec<Sender<WatchRequest>> = Vec::new();

    // Stdin is read on a blocking thread; lines arrive over a channel.
    let (ltx, mut lrx) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<String>>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut r = stdin.lock();
        loop {
            let mut buf = Vec::new();
            let res = match r.read_until(b'\n', &mut buf) {
                Ok(_) if buf.last() == Some(&b'\n') => {
                    Ok(String::from_utf8_lossy(&buf).into_owned())
                }
                Ok(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "EOF",
                )),
                Err(e) => Err(e),
            };
            let stop = res.is_err();
            if ltx.send(res).is_err() || stop {
                break;
            }
        }
    });

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<CtlError>();
    loop {
        let line = tokio::select! {
            l = lrx.recv() => l,
            Some(e) = done_rx.recv() => return Err(e),
        };
        while let Ok(s) = prx.try_recv() {
            senders.push(s);
        }
        let l = match line {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                return Err(CtlError::new(
                    EXIT_INVALID_INPUT,
                    format!("Error reading watch request line: {e}"),
                ))
            }
            None => return Ok(()),
        };
        let l = l.strip_suffix('\n').unwrap_or(&l).to_string();
        let args = crate::argify::argify(&l)?;
        if args.is_empty() {
            errln(&format!(
                "Invalid command: {l} (watch and progress supported)"
            ));
            continue;
        }
        match args[0].as_str() {
            "watch" => {
                if args.len() < 2 && env_key.is_empty() {
                    errln(&format!(
                        "Invalid command {l} (command type or key is not provided)"
                    ));
                    continue;
                }
                let (watch_args, exec_args, flags) =
                    parse_interactive(&args[1..], env_key, env_range)
                        .map_err(|m| CtlError::new(EXIT_BAD_ARGS, m))?;
                let spec = match watch_spec(
                    &watch_args,
                    flags.prefix,
                    flags.rev,
                    flags.prev_kv,
                    a.progress_notify,
                ) {
                    Ok(s) => s,
                    Err(m) => {
                        errln(&format!("Invalid command {l} ({m})"));
                        continue;
                    }
                };
                let (c, d, ptx, done) = (c.clone(), d.clone(), ptx.clone(), done_tx.clone());
                tokio::spawn(async move {
                    if let Err(e) = watch_loop(&c, &d, spec, &exec_args, Some(ptx)).await {
                        let _ = done.send(e);
                    }
                });
            }
            "progress" => {
                for s in &senders {
                    let _ = s.send(progress_request()).await;
                }
            }
            _ => errln(&format!("Invalid command {l} (only support watch)")),
        }
    }
}

/// parseWatchArgs for an interactive line (after "watch").
fn parse_interactive(
    args: &[String],
    env_key: &str,
    env_range: &str,
) -> std::result::Result<(Vec<String>, Vec<String>, WatchArgs), String> {
    let sep = args.iter().position(|x| x == "--");
    if let Some(i) = sep {
        if i == args.len() - 1 {
            return Err(BAD_ARGS_SEPARATOR.into());
        }
    }
    let before: &[String] = match sep {
        Some(i) => &args[..i],
        None => args,
    };
    let parsed = InteractiveLine::try_parse_from(before).map_err(|e| {
        let e = crate::clap_err::describe(&e);
        e.msg
    })?;
    let flags = parsed.args;
    if sep.is_none() && env_key.is_empty() && flags.args.is_empty() {
        return Err(BAD_ARGS_NUM.into());
    }
    if sep.is_none() && !flags.args.is_empty() && !env_key.is_empty() {
        return Err(BAD_ARGS_CONFLICT_ENV.into());
    }
    let exec_args = match sep {
        Some(i) => args[i + 1..].to_vec(),
        None => vec![],
    };
    let mut watch_args = Vec::new();
    if !env_key.is_empty() {
        watch_args.push(env_key.to_string());
        if !env_range.is_empty() {
            watch_args.push(env_range.to_string());
        }
    }
    watch_args.extend(flags.args.iter().cloned());
    Ok((watch_args, exec_args, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn exec_args_after_separator() {
        let (w, e) = parse_watch_args(
            &s(&["oxctl", "watch", "foo", "--rev", "1", "--", "echo", "hi"]),
            &s(&["foo", "echo", "hi"]),
            "",
            "",
        )
        .unwrap();
        assert_eq!((w, e), (s(&["foo"]), s(&["echo", "hi"])));
    }

    #[test]
    fn argument_errors_match_etcdctl() {
        assert_eq!(
            parse_watch_args(&s(&["oxctl", "watch"]), &[], "", ""),
            Err(BAD_ARGS_NUM.into())
        );
        assert_eq!(
            parse_watch_args(&s(&["oxctl", "watch", "a", "--"]), &s(&["a"]), "", ""),
            Err(BAD_ARGS_SEPARATOR.into())
        );
        assert_eq!(
            parse_watch_args(&s(&["oxctl", "watch", "y"]), &s(&["y"]), "x", ""),
            Err(BAD_ARGS_CONFLICT_ENV.into())
        );
        let (w, e) = parse_watch_args(
            &s(&["oxctl", "watch", "--", "echo"]),
            &s(&["echo"]),
            "x",
            "z",
        )
        .unwrap();
        assert_eq!((w, e), (s(&["x", "z"]), s(&["echo"])));
        assert_eq!(
            watch_spec(&s(&["a", "b"]), true, 0, false, false).unwrap_err(),
            "`range_end` and `--prefix` are mutually exclusive"
        );
    }
}
