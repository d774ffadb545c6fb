#!/usr/bin/env bash
# Checks the Grafana dashboard deploy/grafana/crm-dashboard.json:
#   - it is valid JSON (python3 -m json.tool);
#   - it is what deploy/grafana/build_dashboard.py generates (edit the generator, not the JSON);
#   - structure, data source variable, layout, rows and metric names (check-dashboard.js);
#   - every query is valid PromQL (promtool check rules on the queries turned into recording rules).
# Needs python3, node and promtool; no npm packages. Exits non-zero and prints what failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dashboard="$root/deploy/grafana/crm-dashboard.json"
failures=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for tool in python3 node promtool; do
  if ! command -v "$tool" >/dev/null; then
    echo "FAIL: $tool is not installed" >&2
    exit 1
  fi
done

echo "== python3 -m json.tool crm-dashboard.json"
if ! python3 -m json.tool "$dashboard" >/dev/null; then
  echo "FAIL: deploy/grafana/crm-dashboard.json is not valid JSON" >&2
  exit 1
fi

echo "== crm-dashboard.json is up to date with build_dashboard.py"
python3 "$root/deploy/grafana/build_dashboard.py" --stdout >"$tmp/generated.json"
if ! diff -u "$dashboard" "$tmp/generated.json" >"$tmp/diff"; then
  head -n 40 "$tmp/diff" >&2
  echo "FAIL: deploy/grafana/crm-dashboard.json differs from what deploy/grafana/build_dashboard.py writes." >&2
  echo "      Edit the generator and run: python3 deploy/grafana/build_dashboard.py" >&2
  failures+=("generated")
fi

echo "== check-dashboard.js"
if ! node "$here/check-dashboard.js" "$dashboard" "$root/deploy/prometheus/alerts.yml" --rules "$tmp/queries.json"; then
  failures+=("check-dashboard.js")
fi

if [[ -f "$tmp/queries.json" ]]; then
  echo "== promtool check rules (every dashboard query)"
  if ! promtool check rules "$tmp/queries.json"; then
    echo "FAIL: a dashboard query is not valid PromQL (see above; rule dashboard:panel_<id>:<refId>)" >&2
    failures+=("PromQL")
  fi
fi

if ((${#failures[@]})); then
  echo "check_dashboard: FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "check_dashboard: OK"
