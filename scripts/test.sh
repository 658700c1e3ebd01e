#!/usr/bin/env bash
# The one command that runs every test of oxcd:
#   1. installs the real etcd and etcdctl (the oracle of the process tests) if missing,
#   2. builds every binary of the workspace (debug profile),
#   3. runs every test: unit tests and the process tests in tests/.
#
# Usage: bash scripts/test.sh [extra arguments for `cargo test`]
#   e.g. bash scripts/test.sh -p oxcd-process-tests --test kv_compat
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ]; then
    log "installing etcd-server and etcd-client (the reference etcd 3.4)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends etcd-server etcd-client prometheus
fi
/usr/bin/etcd --version | head -n 1
ETCDCTL_API=3 /usr/bin/etcdctl version | head -n 1

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a Rust toolchain (https://rustup.rs), 1.90 or newer" >&2
    exit 1
fi
cargo --version

start=$(date +%s)
log "cargo build --workspace --bins"
cargo build --workspace --bins

log "cargo test --workspace"
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?

# The harness kills every process it starts (process groups, PR_SET_PDEATHSIG); report any
# survivor, found by the temp-dir prefix the harness gives every member.
if command -v pgrep >/dev/null 2>&1; then
    if leftovers=$(pgrep -a -f -- '--data-dir[= ][^ ]*oxcd-test-'); then
        echo "warning: processes left behind by the tests:" >&2
        echo "$leftovers" >&2
    fi
fi

log "scripts/test.sh: $(( $(date +%s) - start ))s for build and tests, exit status $status"
exit "$status"
