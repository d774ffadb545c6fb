#!/usr/bin/env bash
# The benchmark command: installs what is missing, builds, runs every suite against its baselines in one run
# on this machine, prints the table and writes docs/benchmarks.md and docs/benchmarks.json.
#   tests/load/bench.sh            quick mode (under 5 minutes on 2 cores): smaller data sets, scaling 10k -> 100k
#   tests/load/bench.sh --full     the default data sets and the scaling curve 10k -> 100k -> 1M customers
#   tests/load/bench.sh --out DIR  write the report files to DIR instead of docs/
# Benchmarks print figures and never pass or fail anything; they are not part of the test run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mode=quick
out="$root/docs"
while (($#)); do
  case "$1" in
    --quick) mode=quick; shift ;;
    --full) mode=full; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
"$root/deploy/local/install-deps.sh" --test
"$root/deploy/local/build.sh"
build="${CRM_BUILD_DIR:-$root/build}"
if [[ "$mode" == quick ]]; then
  args=(--customers=20000 --order_customers=1000 --open_tickets=20000 --reco_items=20000 --reco_customers=20000
        --reco_interactions=200000 --scaling_customers=10000,100000 --warmup_s=1 --duration_s=3)
else
  args=(--scaling_customers=10000,100000,1000000 --warmup_s=1 --duration_s=5)
fi
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
"$build/tests/load/crm-bench" "${args[@]}" --markdown="$tmp/report.md" --json="$out/benchmarks.json"
took=$(( $(date +%s) - start ))
# Sections written by other benchmarks (tests/load/availability.sh) are kept as they are.
kept=$(sed -n '/^## Availability: restart and recovery of a shard/,$p' "$out/benchmarks.md" 2>/dev/null || true)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`tests/load/bench.sh$([[ $mode == full ]] && echo " --full")\` ($mode mode, ${took} s) on $(date -u +%Y-%m-%d)," \
       "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), " \
       "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)," \
       "load generator, services and proxies all on the same cores (absolute numbers mean little; compare the ratios)."
  echo "Arguments: \`${args[*]}\`."
  echo
  echo "Each row is a closed-loop load (32 calls in flight over 4 connections unless it says otherwise); \"vs"
  echo "baseline\" is the throughput ratio to the row named, measured in the same run. Server CPU is the"
  echo "serving process's user+system time per call (nginx: its master process only)."
  echo
  cat "$tmp/report.md"
  if [[ -n "$kept" ]]; then echo; echo "$kept"; fi
} >"$out/benchmarks.md"
echo "Wrote $out/benchmarks.md and $out/benchmarks.json (${took} s)."
