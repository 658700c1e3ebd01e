//! The cluster members `compare` starts, and how they never outlive it.
//!
//! Each member runs in its own process group (a Ctrl-C in the terminal reaches oxbench only)
//! and gets `SIGKILL` from the kernel when the thread that spawned it ends
//! (`PR_SET_PDEATHSIG`): members are spawned on the main thread, so that is whenever oxbench
//! ends, however it ends. Every live member is also in a registry: on Ctrl-C or `SIGTERM`
//! oxbench kills them by process id, removes the work dir and exits 130. Nothing is ever
//! killed by name.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The process ids of the members spawned and not yet reaped.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Spawns `cmd` in a process group of its own that dies with this thread, and registers it.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
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
    let mut live = LIVE.lock().unwrap();
    let child = cmd.spawn()?;
    live.push(child.id());
    Ok(child)
}

/// Sends `sig` to the child's process group, unless it was reaped already.
pub fn signal(child: &Child, sig: i32) {
    let live = LIVE.lock().unwrap();
    if live.contains(&child.id()) {
        // SAFETY: plain syscall on a registered (unreaped, so not reused) process group.
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), sig);
        }
    }
}

/// Whether the child has exited (then reaped and unregistered).
pub fn try_reap(child: &mut Child) -> Option<ExitStatus> {
    let mut live = LIVE.lock().unwrap();
    let status = match child.try_wait() {
        Ok(Some(status)) => status,
        Ok(None) => return None,
        // Not our child any more: treat as gone.
        Err(_) => ExitStatus::default(),
    };
    live.retain(|p| *p != child.id());
    Some(status)
}

/// Waits up to `timeout` for the child to exit.
pub fn wait(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = try_reap(child) {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `SIGKILL` to the child's group, then reaps it.
pub fn kill(child: &mut Child) {
    signal(child, libc::SIGKILL);
    // SIGKILL cannot be caught; the wait is only for the kernel to tear it down.
    if wait(child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        LIVE.lock().unwrap().retain(|p| *p != child.id());
    }
}

/// On Ctrl-C or `SIGTERM`: kills every registered member, removes `work_dir` (when given)
/// and exits 130.
pub fn on_interrupt(work_dir: Option<PathBuf>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("compare: no signal handling ({e}); members still die with oxbench");
            return;
        }
    };
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            // Held until exit: no member is spawned or reaped after this.
            let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            for pid in live.iter() {
                // SAFETY: plain syscall on registered (unreaped) process groups.
                unsafe {
                    libc::kill(-(*pid as libc::pid_t), libc::SIGKILL);
                }
            }
            eprintln!("compare: interrupted; members killed");
            if let Some(dir) = &work_dir {
                // A member being torn down may still have created a file: try again.
                for _ in 0..10 {
                    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            std::process::exit(130);
        });
    });
}
