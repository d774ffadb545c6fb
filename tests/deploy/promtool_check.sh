#!/usr/bin/env bash
# Checks the Prometheus files in deploy/prometheus:
#   promtool check config   prometheus-local.yml and prometheus-k8s.yml (see below for kubernetes_sd_configs)
#   promtool check rules    alerts.yml
#   promtool test rules     alerts_test.yml (every alert firing and not firing)
#   check-alerts.js         severity/summary/description/runbook on every alert, runbook anchors present in
#                           deploy/README.md, every alert tested both ways, metric names known
# Exits non-zero and prints what failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prom="$root/deploy/prometheus"
source "$here/lib.sh"
failures=()

if ! command -v promtool >/dev/null; then
  echo "FAIL: promtool is not installed (Debian: apt-get install prometheus)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() {  # run <label> <command...>: runs it, prints its output, records a failure
  local label="$1"
  shift
  echo "== $label"
  if ! "$@"; then
    echo "FAIL: $label" >&2
    failures+=("$label")
  fi
}

run "promtool check config prometheus-local.yml" promtool check config "$prom/prometheus-local.yml"

# Debian's Prometheus is built without Kubernetes service discovery, so its promtool rejects
# kubernetes_sd_configs. When that is the case, check a copy in which each kubernetes_sd_configs block is
# replaced by an empty static_configs (everything else -- relabelling, regexes, TLS, auth -- is still
# checked), and check the discovery blocks themselves here: only role (pod|node|service|endpoints|
# endpointslice|ingress) and namespaces are used.
k8s="$prom/prometheus-k8s.yml"
k8s_check=$(promtool check config "$k8s" 2>&1 || true)
if grep -q "field kubernetes_sd_configs not found" <<<"$k8s_check"; then
  echo "== promtool check config prometheus-k8s.yml (this promtool has no Kubernetes discovery: checking a copy with static_configs in its place)"
  bad=$(awk '
    /^[[:space:]]*kubernetes_sd_configs:[[:space:]]*$/ { insd = 1; ind = match($0, /[^ ]/); next }
    insd {
      cur = match($0, /[^ ]/)
      if ($0 ~ /^[[:space:]]*$/) next
      if (cur <= ind) { insd = 0; next }
      if ($0 !~ /^[[:space:]]*- role: (pod|node|service|endpoints|endpointslice|ingress)[[:space:]]*$/ &&
          $0 !~ /^[[:space:]]*namespaces:/ && $0 !~ /^[[:space:]]*names:/ && $0 !~ /^[[:space:]]*- [a-z0-9-]+[[:space:]]*$/)
        print NR": "$0
    }' "$k8s")
  if [[ -n "$bad" ]]; then
    echo "FAIL: prometheus-k8s.yml: unexpected lines in kubernetes_sd_configs:" >&2
    echo "$bad" >&2
    failures+=("kubernetes_sd_configs blocks")
  fi
  sed -E -e 's/^([[:space:]]*)kubernetes_sd_configs:[[:space:]]*$/\1static_configs:/' \
         -e 's/^([[:space:]]*)- role: [a-z]+[[:space:]]*$/\1- targets: []/' "$k8s" >"$tmp/prometheus-k8s.yml"
  cp "$prom/alerts.yml" "$tmp/alerts.yml"
  # The token and CA files exist only inside a pod; the check needs them to exist.
  mkdir -p "$tmp/sa"
  : >"$tmp/sa/token"
  : >"$tmp/sa/ca.crt"
  sed -i -e "s#/var/run/secrets/kubernetes.io/serviceaccount/#$tmp/sa/#g" "$tmp/prometheus-k8s.yml"
  run "promtool check config prometheus-k8s.yml (copy)" promtool check config "$tmp/prometheus-k8s.yml"
else
  run "promtool check config prometheus-k8s.yml" promtool check config "$k8s"
fi

run "promtool check rules alerts.yml" promtool check rules "$prom/alerts.yml"
run "promtool test rules alerts_test.yml" promtool test rules "$prom/alerts_test.yml"

if ensure_node_modules "$here"; then
  run "check-alerts.js" node "$here/check-alerts.js" "$prom/alerts.yml" "$prom/alerts_test.yml" "$root/deploy/README.md"
else
  failures+=("npm install")
fi

if ((${#failures[@]})); then
  echo "promtool_check: FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "promtool_check: OK"
