#!/usr/bin/env bash
# The ratios issue 23 tracks, each from one run of crm-bench with the measures side by side, and
# their spread over several runs (the machine is shared: absolute figures move, ratios less):
# reads against an echo server measured beside them, the 360-degree view against one GetCustomer
# and against its slowest section at one call in flight, and the event delivery lag at 1, 8 and 64
# writers. Writes the section "Ratios to the ceiling" at the end of docs/benchmarks.md (bench.sh
# keeps it). Prints figures; never fails a test run (not part of one).
#   tests/load/ratios.sh [--runs N] [--out FILE]
# A rerun replaces the section's first paragraph and table and keeps the prose written into it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=3
out="$root/docs/benchmarks.md"
while (($#)); do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
build="${CRM_BUILD_DIR:-$root/build}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 1; i <= runs; i++)); do
  echo "run $i of $runs" >&2
  "$build/tests/load/crm-bench" --suites=profile,loyalty,orders,system --customers=20000 \
    --order_customers=1000 --system_customers=1000 --warmup_s=1 --duration_s=3 \
    --markdown="$tmp/run$i.md" >"$tmp/run$i.log" 2>&1
done
python3 - "$tmp" "$runs" "$out" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import re, statistics, sys
tmp, runs, out, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def rows(text):
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 10 and cells[1].replace(".", "").isdigit():
            table[cells[0]] = {"calls": float(cells[1]), "p50": float(cells[2])}
    return table

def note(text, pattern):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None

# The view's fan-out floor: a row per shape of the system suite's floor, whose note names the shape.
floors = [
    ("floor: the view over five servers that answer at once ÷ one GetCustomer to one, mutual TLS",
     "five servers that answer at once, mutual TLS"),
    ("floor: the same, plaintext", "five servers that answer at once, plaintext"),
    ("floor: three servers (profile, orders and tickets in one), plaintext",
     "three servers (profile, orders and tickets in one), plaintext"),
    ("floor: one server answering all five calls, plaintext",
     "one server answering all five calls at once, plaintext"),
]
measures = [
    ("GetCustomer ÷ echo (throughput, 32 in flight)", "≥ 0.80",
     lambda t, r: r["GetCustomer"]["calls"] / r["Echo (baseline)"]["calls"]),
    ("GetOrder ÷ echo", "≥ 0.80",
     lambda t, r: r["GetOrder"]["calls"] / r["Echo (beside GetOrder)"]["calls"]),
    ("GetMembership (10k ledger entries) ÷ echo", "≥ 0.80",
     lambda t, r: r["GetMembership (10k ledger entries)"]["calls"] / r["Echo (beside GetMembership)"]["calls"]),
    ("360° view p50 ÷ GetCustomer through the gateway, 1 in flight", "≤ 2×",
     lambda t, r: note(t, r"360° view ÷ GetCustomer through the gateway, 1 in flight \(1k customers\): p50 ([0-9.]+)x")),
    ("360° view p50 ÷ its slowest section alone, 1 in flight", "-",
     lambda t, r: note(t, r"p50 ([0-9.]+) ms; its slowest") / note(t, r"its slowest section alone \([a-z ]+\) ([0-9.]+) ms")),
    *[(label, "-", lambda t, r, shape=shape: note(t, "fan-out floor, " + re.escape(shape) + r": .*?p50 ([0-9.]+)x"))
      for label, shape in floors],
    ("event delivery lag p99 at 1 writer (ms)", "-",
     lambda t, r: note(t, r"lag at 1 writer\(s\).*?p99 ([0-9.]+) ms")),
    ("event delivery lag p99 at 8 writers (ms)", "-",
     lambda t, r: note(t, r"lag at 8 writer\(s\).*?p99 ([0-9.]+) ms")),
    ("event delivery lag p99 at 64 writers (ms)", "< 25",
     lambda t, r: note(t, r"lag at 64 writer\(s\).*?p99 ([0-9.]+) ms")),
]
texts = [open(f"{tmp}/run{i}.md").read() for i in range(1, runs + 1)]
lines = ["## Ratios to the ceiling (issue 23)", "",
         f"Written by `tests/load/ratios.sh` ({runs} runs of crm-bench's profile, loyalty, orders and system suites,",
         f"quick sizes, commit {commit}). Each figure comes from one run with its measures side by side; the spread",
         "is the lowest and highest of the runs.", "",
         "| measure | goal | " + " | ".join(f"run {i}" for i in range(1, runs + 1)) + " | median | spread |",
         "|---|---|" + "---:|" * (runs + 2)]
for name, goal, f in measures:
    values = []
    for t in texts:
        try:
            v = f(t, rows(t))
        except (KeyError, TypeError, ZeroDivisionError):
            v = None
        values.append(v)
    got = [v for v in values if v is not None]
    cell = lambda v: "-" if v is None else f"{v:.2f}"
    lines.append(f"| {name} | {goal} | " + " | ".join(cell(v) for v in values) + " | " +
                 (f"{statistics.median(got):.2f} | {min(got):.2f}-{max(got):.2f}" if got else "- | -") + " |")
section = "\n".join(lines) + "\n"
print(section)
try:
    doc = open(out).read()
except FileNotFoundError:
    doc = "# Benchmarks\n"
# An existing section keeps the prose written into it by hand (what the figures mean, where the time
# goes): only its first paragraph and its table are replaced.
found = re.search(r"\n## Ratios to the ceiling \(issue 23\)\n.*?(?=\n## |\Z)", doc, flags=re.S)
if found:
    old = found.group(0)
    intro = re.search(r"\nWritten by `tests/load/ratios.sh`.*?\n\n", old, flags=re.S)
    table = re.search(r"\n\| measure \|.*?(?=\n[^|]|\n?\Z)", old, flags=re.S)
    new_intro = section[section.index("Written by"):section.index("| measure |")]
    new_table = "\n" + section[section.index("| measure |"):].rstrip("\n")
    if intro and table:
        kept = old.replace(intro.group(0), "\n" + new_intro, 1).replace(table.group(0), new_table, 1)
        open(out, "w").write(doc.replace(old, kept, 1).rstrip("\n") + "\n")
        sys.exit(0)
    doc = doc.replace(old, "")
open(out, "w").write(doc.rstrip("\n") + "\n\n" + section)
PY
