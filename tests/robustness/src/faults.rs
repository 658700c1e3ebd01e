//! Disk faults for members: slow fsync (an LD_PRELOAD library) and a small disk (a tmpfs of a
//! given size that can be filled up to provoke ENOSPC).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

/// The LD_PRELOAD library's source; compiled at run time so the crate needs no build script and
/// the harness no prebuilt artefact.
const SLOW_FSYNC_C: &str = include_str!("slow_fsync.c");

/// Names the file the library reads the delay (microseconds) from.
pub const DELAY_FILE_ENV: &str = "OXCD_FAULT_FSYNC_DELAY_FILE";

/// Makes `fsync`, `fdatasync`, `syncfs` and `sync_file_range` of the processes started with
/// [`SlowFsync::env`] sleep before doing their work. The delay can be changed while they run
/// ([`SlowFsync::set_delay`]); they pick it up within 100 ms.
pub struct SlowFsync {
    lib: PathBuf,
    delay_file: PathBuf,
}

impl SlowFsync {
    /// Compiles the library into `dir` (with `cc`, else `gcc`) and creates the delay file with no
    /// delay.
    pub fn build(dir: &Path) -> anyhow::Result<SlowFsync> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let src = dir.join("slow_fsync.c");
        let lib = dir.join("libslow_fsync.so");
        fs::write(&src, SLOW_FSYNC_C).with_context(|| format!("writing {}", src.display()))?;
        let mut errors = Vec::new();
        let mut built = false;
        for compiler in ["cc", "gcc"] {
            let out = Command::new(compiler)
                .args(["-shared", "-fPIC", "-O2", "-o"])
                .arg(&lib)
                .arg(&src)
                .arg("-ldl")
                .output();
            match out {
                Ok(out) if out.status.success() => {
                    built = true;
                    break;
                }
                Ok(out) => errors.push(format!(
                    "{compiler}: {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => errors.push(format!("{compiler}: {e}")),
            }
        }
        if !built {
            bail!(
                "compiling the slow-fsync library failed: {}",
                errors.join("; ")
            );
        }
        let s = SlowFsync {
            lib: fs::canonicalize(&lib)?,
            delay_file: fs::canonicalize(dir)?.join("fsync_delay_us"),
        };
        s.set_delay(Duration::ZERO);
        Ok(s)
    }

    /// The environment variables that make a member's fsyncs slow (absolute paths, so they hold
    /// whatever the member's working directory).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            (DELAY_FILE_ENV.into(), self.delay_file.display().to_string()),
        ]
    }

    /// Sets the delay every fsync of the preloaded processes waits (from their next re-read of
    /// the file, at most 100 ms later).
    /// Panics if the file cannot be written: it lives in the harness's own directory, so that
    /// is a broken run, not a fault to inject.
    pub fn set_delay(&self, d: Duration) {
        // Written aside and renamed over, so a reader never sees a half-written number.
        let tmp = self.delay_file.with_extension("tmp");
        fs::write(&tmp, d.as_micros().to_string())
            .and_then(|()| fs::rename(&tmp, &self.delay_file))
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.delay_file.display()));
    }
}

/// A tmpfs of a fixed size mounted on a fresh temporary directory, for a member's data dir:
/// filling it makes the member's writes fail with ENOSPC. Needs root (CAP_SYS_ADMIN).
pub struct SmallDisk {
    dir: PathBuf,
}

const FILLER: &str = ".oxcd-filler";

impl SmallDisk {
    /// Mounts a tmpfs of `size` bytes. Fails with a clear error when not root or when mounting is
    /// not allowed, so a scenario can report itself skipped.
    pub fn mount(size: u64) -> anyhow::Result<SmallDisk> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            bail!("SmallDisk needs root to mount a tmpfs");
        }
        let dir = tempfile::Builder::new()
            .prefix("oxcd-small-disk")
            .tempdir()?
            .keep();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(&dir)
            .output();
        let failed = match out {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            let _ = fs::remove_dir(&dir);
            bail!(
                "mounting a {size}-byte tmpfs on {} failed: {why}",
                dir.display()
            );
        }
        Ok(SmallDisk { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Bytes still available to an unprivileged writer.
    pub fn available(&self) -> u64 {
        statvfs_available(&self.dir).unwrap_or(0)
    }

    /// Writes a filler file until only about `leave_free` bytes remain (tmpfs counts whole
    /// pages). Filling on top of an existing filler appends to it.
    pub fn fill(&self, leave_free: u64) -> anyhow::Result<()> {
        let path = self.dir.join(FILLER);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let block = vec![0xa5u8; 1 << 20];
        loop {
            let avail = statvfs_available(&self.dir)?;
            if avail <= leave_free {
                return Ok(());
            }
            let n = (avail - leave_free).min(block.len() as u64) as usize;
            match f.write_all(&block[..n]) {
                Ok(()) => {}
                // Someone else (the member) took the rest first: the disk is as full as it gets.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
                Err(e) => return Err(e).context("writing the filler"),
            }
        }
    }

    /// Removes the filler, giving its space back.
    pub fn free_filler(&self) -> io::Result<()> {
        match fs::remove_file(self.dir.join(FILLER)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a member that still has files open there must not make the unmount fail.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = fs::remove_dir(&self.dir);
    }
}

fn statvfs_available(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs only writes into the zeroed struct we pass; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn dd(s: &SlowFsync, dir: &Path, conv: &str) -> Duration {
        let start = Instant::now();
        let status = Command::new("dd")
            .args(["if=/dev/zero", "bs=4096", "count=1", "status=none"])
            .arg(format!("of={}", dir.join("out").display()))
            .arg(format!("conv={conv}"))
            .envs(s.env())
            .status()
            .unwrap();
        assert!(status.success());
        start.elapsed()
    }

    #[test]
    fn slow_fsync_delays_fsync_and_fdatasync() {
        let dir = tempfile::tempdir().unwrap();
        let s = SlowFsync::build(dir.path()).unwrap();
        let env = s.env();
        assert_eq!(env[0].0, "LD_PRELOAD");
        assert!(Path::new(&env[0].1).is_file());
        assert_eq!(fs::read_to_string(&env[1].1).unwrap(), "0");
        // No delay: the library is loaded and the call still works.
        dd(&s, dir.path(), "fsync");
        let delay = Duration::from_millis(300);
        s.set_delay(delay);
        assert!(dd(&s, dir.path(), "fsync") >= delay);
        assert!(dd(&s, dir.path(), "fdatasync") >= delay);
        // A missing file means no delay (nothing to assert on time; the call must succeed).
        fs::remove_file(&env[1].1).unwrap();
        dd(&s, dir.path(), "fsync");
    }

    #[test]
    fn small_disk_fills_up_and_frees() {
        let disk = match SmallDisk::mount(8 << 20) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: {e:#}");
                return;
            }
        };
        let dir = disk.path().to_path_buf();
        assert!(disk.available() > 7 << 20);
        disk.fill(1 << 20).unwrap();
        let avail = disk.available();
        assert!(avail <= (1 << 20) + 8192 && avail > 0, "{avail}");
        disk.fill(0).unwrap();
        assert!(disk.available() < 8192);
        let data = vec![1u8; 256 << 10];
        let err = fs::write(dir.join("x"), &data).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        disk.free_filler().unwrap();
        assert!(disk.available() > 7 << 20);
        fs::write(dir.join("x"), &data).unwrap();
        drop(disk);
        assert!(!dir.exists());
    }
}
