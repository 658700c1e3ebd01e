//! Running etcdctl or oxctl with a timeout.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{bins, proc};

/// How long one ctl invocation may run before it is killed.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which client program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ctl {
    /// The real `/usr/bin/etcdctl` (run with `ETCDCTL_API=3`).
    Etcdctl,
    /// This workspace's `oxctl`.
    Oxctl,
}

impl Ctl {
    /// The binary to run.
    pub fn bin(self) -> PathBuf {
        match self {
            Ctl::Etcdctl => bins::etcdctl(),
            Ctl::Oxctl => bins::oxctl(),
        }
    }
}

impl std::fmt::Display for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ctl::Etcdctl => "etcdctl",
            Ctl::Oxctl => "oxctl",
        })
    }
}

/// What a finished command printed and returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The exit code; -1 when killed by a signal (or by the timeout).
    pub code: i32,
    /// Killed by the harness because it ran too long.
    pub timed_out: bool,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code,
            if self.timed_out { " (timed out)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// A command for a ctl program with `ETCDCTL_API=3`, the endpoint and nothing inherited from
/// the caller's `ETCDCTL_*` environment.
pub fn command(which: Ctl, endpoint: &str, args: &[&str]) -> Command {
    bins::require(&which.bin());
    let mut cmd = Command::new(which.bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("ETCDCTL_API", "3");
    cmd.arg(format!("--endpoints={endpoint}"));
    cmd.args(args);
    cmd
}

/// Runs `which --endpoints=<endpoint> args...` with no stdin.
pub fn ctl(which: Ctl, endpoint: &str, args: &[&str]) -> Output {
    run(command(which, endpoint, args), None, CTL_TIMEOUT)
}

/// Runs `which --endpoints=<endpoint> args...` with `stdin`.
pub fn ctl_stdin(which: Ctl, endpoint: &str, args: &[&str], stdin: &str) -> Output {
    run(command(which, endpoint, args), Some(stdin), CTL_TIMEOUT)
}

/// Runs any command to completion, with stdin from a string, stdout and stderr captured in
/// temp files (no pipes to fill up), killed after `timeout`.
pub fn run(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let mut job = Background::spawn_with(&mut cmd, stdin);
    match proc::wait_timeout(&mut job.child, timeout) {
        Some(_) => job.finish(),
        None => {
            let mut out = job.kill();
            out.timed_out = true;
            out
        }
    }
}

/// A command running in the background with its output going to temp files, e.g. a `watch`.
pub struct Background {
    child: Child,
    stdout: File,
    stderr: File,
    done: Option<Output>,
}

impl Background {
    /// Starts `which --endpoints=<endpoint> args...` in the background.
    pub fn ctl(which: Ctl, endpoint: &str, args: &[&str]) -> Background {
        Background::spawn_with(&mut command(which, endpoint, args), None)
    }

    /// Starts any command in the background.
    pub fn spawn_with(cmd: &mut Command, stdin: Option<&str>) -> Background {
        let stdout = tempfile::tempfile().expect("temp file");
        let stderr = tempfile::tempfile().expect("temp file");
        let input = match stdin {
            Some(text) => {
                let mut file = tempfile::tempfile().expect("temp file");
                file.write_all(text.as_bytes()).expect("write stdin");
                file.seek(SeekFrom::Start(0)).expect("seek stdin");
                Stdio::from(file)
            }
            None => Stdio::null(),
        };
        cmd.stdin(input)
            .stdout(stdout.try_clone().expect("dup"))
            .stderr(stderr.try_clone().expect("dup"));
        proc::isolate(cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        Background {
            child,
            stdout,
            stderr,
            done: None,
        }
    }

    /// Reads everything written so far with positional reads. The child writes through a
    /// duplicate of this descriptor, which shares its file offset: seeking here to read from the
    /// start made the child's next write land at offset 0, over the beginning of its output
    /// (seen once in CI as a watch whose first header lines were overwritten).
    fn read(file: &mut File) -> String {
        use std::os::unix::fs::FileExt;
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file
                .read_at(&mut chunk, bytes.len() as u64)
                .expect("read output");
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// What it printed on stdout so far.
    pub fn stdout_now(&mut self) -> String {
        Self::read(&mut self.stdout)
    }

    /// What it printed on stderr so far.
    pub fn stderr_now(&mut self) -> String {
        Self::read(&mut self.stderr)
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.done.is_some() || matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for it to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> Option<Output> {
        proc::wait_timeout(&mut self.child, timeout).map(|_| self.finish())
    }

    fn finish(&mut self) -> Output {
        if let Some(out) = &self.done {
            return out.clone();
        }
        let status = proc::kill_group(&mut self.child);
        let out = Output {
            stdout: self.stdout_now(),
            stderr: self.stderr_now(),
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            timed_out: false,
        };
        self.done = Some(out.clone());
        out
    }

    /// Kills it (if still running) and returns everything it printed.
    pub fn kill(&mut self) -> Output {
        self.finish()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        proc::kill_group(&mut self.child);
    }
}
