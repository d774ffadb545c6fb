#!/usr/bin/env bash
# Availability of one shard (issue 21): how long an order-tracking shard with ~1 GiB in its RocksDB
# directory takes to serve again after its process is SIGKILLed (a crash, a node failure, a
# force-deleted pod: RocksDB replays its write-ahead log) or SIGTERMed (a pod deleted or drained: it
# drains, closes its store and exits), restarted on the same data directory; and whether any write
# acknowledged before a SIGKILL is lost (RPO). Three rounds by default; prints every restart and
# the median and spread. Loopback only; everything it starts is stopped when it ends.
# A benchmark: prints figures and never fails anything; not part of the test run.
#   tests/load/availability.sh [--target-mib N] [--rounds N] [--markdown FILE] [--no-build]
# Needs about 1.5 GiB free under ${TMPDIR:-/tmp} and takes 5-8 minutes on 2 cores (most of it
# filling the shard through its API).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="${CRM_BUILD_DIR:-$root/build}"
args=()
build_first=1
while (($#)); do
  case "$1" in
    --target-mib) args+=("--target_mib=$2"); shift 2 ;;
    --rounds) args+=("--rounds=$2"); shift 2 ;;
    --markdown) args+=("--markdown=$2"); shift 2 ;;
    --no-build) build_first=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ((build_first)); then
  if ! "$root/deploy/local/build.sh" --target crm-availability order-tracking customer-profile \
      > /tmp/crm-availability-build.$$.log 2>&1; then
    echo "availability: the build failed; not measured (see /tmp/crm-availability-build.$$.log)"
    exit 0
  fi
  rm -f /tmp/crm-availability-build.$$.log
fi
bin="$build/tests/load/crm-availability"
[[ -x "$bin" ]] || { echo "availability: $bin is not built; not measured"; exit 0; }

work=$(mktemp -d "${TMPDIR:-/tmp}/crm-availability.XXXXXX")
free_mib=$(df -Pm "$work" | awk 'NR == 2 {print $4}')
if ((free_mib < 2048)); then
  echo "availability: only ${free_mib} MiB free under $work (needs about 1.5 GiB); not measured"
  rm -rf "$work"
  exit 0
fi
# In a process group of its own, so that whatever happens to this script, the driver and the
# services it started (its children) are ended by their group id and nothing else.
setsid "$bin" --work_dir="$work/data" "${args[@]}" &
driver=$!
cleanup() {
  kill -KILL -- "-$driver" 2> /dev/null
  wait "$driver" 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Other work on the machine shows in the figures: say how busy it was.
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM," \
     "data under $work ($(df -PT "$work" | awk 'NR == 2 {print $2}')), load average at the start: $(load)"
wait "$driver"
code=$?
# The order-tracking directory as an operator would measure the volume.
if [[ -d "$work/data/order-tracking" ]]; then
  echo "du -sh of the shard's data directory at the end: $(du -sh "$work/data/order-tracking" | cut -f1)"
fi
echo "load average at the end: $(load)"
((code == 0)) || echo "availability: the driver stopped early (exit $code); figures above are partial"
exit 0
