#!/usr/bin/env bash
# The onboarding benchmark: starts the six processes locally on a fresh data folder (deploy/local/run.sh on
# ports of its own), imports the shipped Online Retail export with crm-import, and prints how long the
# import took and when every consumer had caught up (the sum of crm_outbox_backlog_events over the producers
# reached 0; the backlog gauge is refreshed every 2 s, so the figure is within ~2 s). Prints figures, never
# fails anything; not part of the test run.
#   tests/load/import_bench.sh [--file PATH]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
file="$root/tests/data/online-retail/transactions-2010-12-to-2011-09.csv.gz"
while (($#)); do
  case "$1" in
    --file) file="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
build="${CRM_BUILD_DIR:-$root/build}"
work=$(mktemp -d)
port_base=52050 metrics_base=9350 http_port=8280
CRM_DATA="$work/data" CRM_PORT_BASE=$port_base CRM_METRICS_BASE=$metrics_base CRM_HTTP_PORT=$http_port \
  setsid "$root/deploy/local/run.sh" > "$work/run.log" 2>&1 &
run_pid=$!
cleanup() {
  kill -INT -- "-$run_pid" 2> /dev/null || true
  wait "$run_pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  grep -q "Ctrl-C stops everything" "$work/run.log" 2> /dev/null && break
  sleep 1
done
grep -q "Ctrl-C stops everything" "$work/run.log" || { echo "the local run did not start:"; tail -20 "$work/run.log"; exit 0; }

backlog() {
  local total=0 port
  for port in $(seq $((metrics_base + 1)) $((metrics_base + 5))); do
    total=$((total + $(curl -s "127.0.0.1:$port/metrics" | awk '/^crm_outbox_backlog_events/ {s += $2} END {print s + 0}')))
  done
  echo "$total"
}
start=$(date +%s.%N)
"$build/tools/crm-import" --gateway="127.0.0.1:$port_base" --jwt_secret_file="$work/data/gateway/jwt-secret" \
  "$file" 2> "$work/import.err" | tee "$work/import.out"
imported=$(date +%s.%N)
sleep 3  # one refresh of the backlog gauge after the last write
while [[ "$(backlog)" != 0 ]]; do sleep 1; done
caught_up=$(date +%s.%N)
head -1 "$work/import.err"
printf 'import through the gateway: %.1f s; every consumer caught up: %.1f s after the start\n' \
  "$(echo "$imported - $start" | bc)" "$(echo "$caught_up - $start" | bc)"
