//! Child processes that never outlive their test.
//!
//! Every child runs in its own process group (so a kill reaches whatever it forked) and gets
//! `SIGKILL` from the kernel when the thread that spawned it ends (`PR_SET_PDEATHSIG`), which
//! covers a test thread that panics, the test binary being killed, and a forgotten `Drop`.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Puts the command's child in its own process group that dies with the spawning thread.
pub fn isolate(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Sends `signal` to the child's whole process group.
pub fn signal_group(child: &Child, signal: i32) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: plain syscall; a stale group id at worst yields ESRCH.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// `kill -9` of the child's process group, then reaps the child.
pub fn kill_group(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        // Already exited; still kill anything it left in its group.
        signal_group(child, libc::SIGKILL);
        return Some(status);
    }
    signal_group(child, libc::SIGKILL);
    let _ = child.kill();
    child.wait().ok()
}

/// Waits for the child to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
