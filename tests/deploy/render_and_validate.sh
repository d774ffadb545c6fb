#!/usr/bin/env bash
# Renders every overlay under deploy/k8s/overlays with `kubectl kustomize` and validates each rendered object
# offline (tests/deploy/validate-k8s.js): Kubernetes schema, unknown fields, and this project's rules (probes,
# security, shard addresses, network policies, ...). The data files come from deploy/config itself (a
# kustomize Component), so there is no copy to compare.
# Installs its Node.js packages into tests/deploy/node_modules (npm, exact versions from package-lock.json)
# when they are missing or out of date. Exits non-zero and prints every failure if anything is wrong.
#   tests/deploy/render_and_validate.sh [overlay ...]     (default: every overlay)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
failures=()

source "$here/lib.sh"
if ! command -v kubectl >/dev/null; then
  echo "FAIL: kubectl is not installed (it renders the overlays with its built-in kustomize)" >&2
  exit 1
fi

# The service registry the binaries use (names and ports), when the build has tools/crm-services: the
# validator checks the manifests' ports against it.
build="${CRM_BUILD_DIR:-$root/build}"
if [[ -x "$build/tools/crm-services" ]]; then
  CRM_SERVICES=$("$build/tools/crm-services")
  export CRM_SERVICES
else
  echo "note: $build/tools/crm-services not built; the ports are not checked against the registry" >&2
fi

# 1. Node.js packages for the validator.
ensure_node_modules "$here" || exit 1

# 2. Render and validate every overlay.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
overlays=("$@")
if ((${#overlays[@]} == 0)); then
  for dir in "$root"/deploy/k8s/overlays/*/; do overlays+=("$(basename "$dir")"); done
fi
if ((${#overlays[@]} == 0)); then
  echo "FAIL: no overlay under deploy/k8s/overlays" >&2
  exit 1
fi
for o in "${overlays[@]}"; do
  if ! kubectl kustomize "$root/deploy/k8s/overlays/$o" >"$tmp/$o.yaml" 2>"$tmp/$o.err"; then
    echo "FAIL: kubectl kustomize deploy/k8s/overlays/$o:" >&2
    cat "$tmp/$o.err" >&2
    failures+=("render $o")
    continue
  fi
  if ! node "$here/validate-k8s.js" "$o" "$tmp/$o.yaml"; then
    failures+=("validate $o")
  fi
done

if ((${#failures[@]})); then
  echo "render_and_validate: FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "render_and_validate: OK (overlays: ${overlays[*]})"
