//! Where the programs under test and the oracle programs are.
//!
//! oxcd and oxctl come from the same target directory as the running test binary
//! (`<target>/debug/deps/<test>` -> `<target>/debug/oxcd`), so `CARGO_TARGET_DIR` and
//! `build.target-dir` are respected. `OXCD_BIN`, `OXCTL_BIN`, `ETCD_BIN` and `ETCDCTL_BIN`
//! override any of them.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding the workspace's debug binaries.
pub fn profile_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        // <target>/debug/deps/<test binary>
        if let Some(dir) = exe.parent().and_then(Path::parent) {
            if dir.join("oxcd").exists() || dir.join("oxctl").exists() {
                return dir.to_path_buf();
            }
        }
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() {
                workspace_root().join(dir)
            } else {
                dir
            }
        }
        None => workspace_root().join("target"),
    };
    target.join("debug")
}

fn pick(var: &str, default: PathBuf) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => default,
    }
}

/// The oxcd server binary.
pub fn oxcd() -> PathBuf {
    pick("OXCD_BIN", profile_dir().join("oxcd"))
}

/// The oxctl client binary.
pub fn oxctl() -> PathBuf {
    pick("OXCTL_BIN", profile_dir().join("oxctl"))
}

/// The real etcd server (Debian package etcd-server).
pub fn etcd() -> PathBuf {
    pick("ETCD_BIN", PathBuf::from("/usr/bin/etcd"))
}

/// The real etcdctl (Debian package etcd-client).
pub fn etcdctl() -> PathBuf {
    pick("ETCDCTL_BIN", PathBuf::from("/usr/bin/etcdctl"))
}

/// Panics with a helpful message when `path` does not exist.
pub fn require(path: &Path) {
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build --workspace --bins` first \
         (scripts/test.sh does), and install etcd-server and etcd-client for /usr/bin/etcd*",
        path.display()
    );
}
