#!/usr/bin/env bash
# The one command that runs every test of oxcd:
#   1. installs the real etcd and etcdctl (the oracle of the process tests) if missing, promtool,
#      and node, npm and the pinned npm packages of tests/clients/node,
#   2. builds every binary of the workspace (debug profile, with oxcd's failpoints built in),
#   3. runs every test: unit tests and the process tests in tests/.
#
# Usage: bash scripts/test.sh [extra arguments for `cargo test`]
#   e.g. bash scripts/test.sh -p oxcd-process-tests --test kv_compat
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# apt_install PACKAGE...: Debian packages, with sudo when not root.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo="sudo"
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ]; then
    log "installing etcd-server and etcd-client (the reference etcd 3.4)"
    apt_install etcd-server etcd-client
fi
# sed, not head: head exits after one line and the writer's SIGPIPE fails the pipeline (pipefail).
/usr/bin/etcd --version | sed -n 1p
ETCDCTL_API=3 /usr/bin/etcdctl version | sed -n 1p

# promtool checks and tests the alert rules in deploy/prometheus (tests/metrics.rs).
if ! command -v promtool >/dev/null 2>&1; then
    log "installing prometheus (for promtool)"
    apt_install prometheus
fi

# The Node etcd3 client library that tests/client_library.rs runs against oxcd and etcd: node and
# npm (Debian's packages when missing), then the versions pinned in package-lock.json.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs and npm (for tests/clients/node)"
    apt_install nodejs npm
fi
node --version
if [ ! -f tests/clients/node/node_modules/etcd3/package.json ]; then
    log "npm ci in tests/clients/node (the etcd3 client library)"
    (cd tests/clients/node && timeout 300 npm ci --no-audit --no-fund)
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a Rust toolchain (https://rustup.rs), 1.90 or newer" >&2
    exit 1
fi
cargo --version

start=$(date +%s)
# Tests run on a failpoint build (crates/server/src/failpoints.rs; inert unless FAILPOINTS is set),
# so the robustness harness can crash members and start deliberately broken ones. The shipped
# release build is made without the feature.
log "cargo build --workspace --bins --features oxcd/failpoints"
cargo build --workspace --bins --features oxcd/failpoints

log "cargo test --workspace"
status=0
cargo test --workspace --no-fail-fast --features oxcd/failpoints "$@" || status=$?

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
