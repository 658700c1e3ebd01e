#!/usr/bin/env bash
# Runs every cargo-fuzz target of oxcd (fuzz/fuzz_targets/*.rs) for a bounded time each.
#   1. installs cargo-fuzz from crates.io if it is missing,
#   2. runs each target for SECONDS (default 60) on its corpus fuzz/corpus/<target>/ (the
#      committed seed-* files, plus whatever earlier runs found there),
#   3. prints each target's runs, speed and crashes; crashing inputs land in
#      fuzz/artifacts/<target>/ and make the script exit non-zero.
#
# Usage: bash scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]
#   FUZZ_BUILD_FLAGS="-O": build without debug assertions (faster runs, no overflow checks);
#   by default cargo fuzz builds optimised with debug assertions.
#
# cargo fuzz needs nightly flags (-Zsanitizer); on a stable toolchain RUSTC_BOOTSTRAP=1 allows
# them. The fuzz crate is its own workspace: `cargo build` of the main workspace never builds it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
# See -detect_leaks=0 below; this also silences the leak check at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    mkdir -p "fuzz/corpus/$t"
    log="$(mktemp)"
    status=0
    # -detect_leaks=0: LeakSanitizer reports the thread-local destructor registrations of threads
    # raft-engine's recovery pool leaves, and strings formatted while redb panics (caught) on a
    # damaged database; neither grows with the input.
    (cd fuzz && cargo fuzz run ${FUZZ_BUILD_FLAGS:-} "$t" -- -max_total_time="$secs" -print_final_stats=1 -detect_leaks=0) >"$log" 2>&1 || status=$?
    # libFuzzer's last status line ("#N DONE cov: ... exec/s: ...") and final stats.
    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec' "$log" | tail -n 3 || true
    if [ "$status" -ne 0 ]; then
        echo "!! $t failed (exit $status):"
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|error(\[|:)' "$log" | head -n 20 || tail -n 40 "$log"
        failed+=("$t")
    else
        echo "   crashes: 0"
    fi
    rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== crashed or failed: ${failed[*]}"
    exit 1
fi
echo "== all ${#targets[@]} targets ran ${secs}s without a crash"
