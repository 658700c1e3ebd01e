#!/usr/bin/env bash
# How latency and throughput grow with load, for etcd and oxcd in one run (docs/benchmarks.md).
#
#   scripts/bench-sweep.sh [--quick] OUT_DIR
#
# For each system (etcd first, then oxcd; never both at once) a fresh 3-member cluster on
# loopback, started with the flags `oxbench compare` uses, then:
#   - clients: puts from 1, 10, 100 and 1000 clients (at most 10 connections);
#   - curve:   puts from 100 clients over 10 connections at fixed offered rates, then unlimited:
#              the points of latency against throughput.
# Each run appends a line to OUT_DIR/sweep.csv:
#   system,sweep,clients,rate,total,reqs_per_sec,avg_ms,p50_ms,p99_ms,max_rss_mib
# `scripts/plot-sweep.py OUT_DIR/sweep.csv FILE.svg` draws the curve.
#
# Needs the release build (`cargo build --release`) and Debian's etcd-server (/usr/bin/etcd).
set -euo pipefail

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
out=${1:?usage: bench-sweep.sh [--quick] OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${OXCD_BIN_DIR:-$root/target/release}
etcd=${ETCD_BIN:-/usr/bin/etcd}
for b in "$bin/oxcd" "$bin/oxbench" "$etcd"; do
  [ -x "$b" ] || { echo "bench-sweep: $b is missing (cargo build --release; apt-get install etcd-server)" >&2; exit 1; }
done
mkdir -p "$out"
csv=$out/sweep.csv
# A new file each run: two runs in one CSV would be drawn as one curve.
echo "system,sweep,clients,rate,total,reqs_per_sec,avg_ms,p50_ms,p99_ms,max_rss_mib" > "$csv"

if [ $quick = 1 ]; then
  clients=(1 10 100); rates=(1000 0); secs=1
else
  clients=(1 10 100 1000); rates=(1000 2000 4000 6000 8000 10000 12000 14000 16000 0); secs=5
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/oxcd-sweep.XXXXXX")
pids=()
stop_cluster() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
# The members' logs are kept when the run failed, for the message that points at them.
trap 'status=$?; stop_cluster; [ $status -eq 0 ] && rm -rf "$work"; exit $status' EXIT

# answers ENDPOINT: one linearizable read through ENDPOINT succeeded.
answers() {
  local report
  report=$(timeout 5 "$bin/oxbench" --endpoints "$1" range ready --total 1 2>/dev/null) &&
    grep -q 'Requests/sec' <<<"$report" && ! grep -q 'Error distribution' <<<"$report"
}

# start_cluster SYSTEM BASE_PORT: three members on 127.0.0.1, BASE+10*i (client) and +1 (peer).
start_cluster() {
  local sys=$1 base=$2 server initial="" i
  server=$([ "$sys" = etcd ] && echo "$etcd" || echo "$bin/oxcd")
  for i in 1 2 3; do initial="$initial${initial:+,}m$i=http://127.0.0.1:$((base + 10 * i + 1))"; done
  for i in 1 2 3; do
    local c=http://127.0.0.1:$((base + 10 * i)) p=http://127.0.0.1:$((base + 10 * i + 1))
    "$server" --name "m$i" --data-dir "$work/$sys-$base/m$i" \
      --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
      --initial-cluster "$initial" --initial-cluster-token oxcd-sweep \
      --initial-cluster-state new --logger zap --log-level warn \
      > "$work/$sys-$base-m$i.log" 2>&1 &
    pids+=($!)
  done
  endpoints="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20)),127.0.0.1:$((base + 30))"
  # Ready when every member runs and a linearizable read through each of them succeeds (a
  # leader is elected and reachable). oxbench exits 0 even when requests fail, so its report
  # must show no error.
  local tries=0 p e
  for e in ${endpoints//,/ }; do
    until answers "$e"; do
      tries=$((tries + 1))
      [ $tries -lt 200 ] || { echo "bench-sweep: $sys cluster did not start; logs in $work" >&2; exit 1; }
      sleep 0.1
    done
  done
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "bench-sweep: a $sys member exited; logs in $work" >&2; exit 1; }
  done
}

max_rss_mib() {
  local m=0 r p
  for p in "${pids[@]}"; do
    r=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    [ "${r:-0}" -gt $m ] && m=$r
  done
  echo $((m / 1024))
}

# run SYSTEM SWEEP CLIENTS RATE TOTAL: one oxbench put run, one CSV line.
run() {
  local sys=$1 sweep=$2 c=$3 rate=$4 total=$5 conns report
  conns=$((c < 10 ? c : 10))
  report=$("$bin/oxbench" --endpoints "$endpoints" --conns $conns --clients "$c" \
    put --key-size 8 --val-size 256 --total "$total" --key-space-size 100000 --rate "$rate" 2>/dev/null)
  local rps avg p50 p99
  rps=$(awk '/Requests\/sec:/ {printf "%.0f", $2}' <<<"$report")
  avg=$(awk '/Average:/ {printf "%.2f", $2 * 1000}' <<<"$report")
  p50=$(awk '$1 == "50%" {printf "%.2f", $3 * 1000}' <<<"$report")
  p99=$(awk '$1 == "99%" {printf "%.2f", $3 * 1000}' <<<"$report")
  echo "$sys,$sweep,$c,$rate,$total,$rps,$avg,$p50,$p99,$(max_rss_mib)" | tee -a "$csv"
}

base=32300
for sys in etcd oxcd; do
  start_cluster $sys $base
  for c in "${clients[@]}"; do
    # About `secs` seconds of work at the rate this many clients can drive (capped).
    total=$((c == 1 ? 1000 * secs : (c == 10 ? 4000 * secs : 10000 * secs)))
    run $sys clients "$c" 0 $total
  done
  for r in "${rates[@]}"; do
    total=$((r == 0 ? 15000 * secs : r * secs))
    run $sys curve 100 "$r" $total
  done
  stop_cluster
  base=$((base + 100))
done
echo "bench-sweep: wrote $csv"
