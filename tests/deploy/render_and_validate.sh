#!/usr/bin/env bash
# Renders every overlay under deploy/k8s/overlays with `kubectl kustomize` and validates each rendered object
# offline (tests/deploy/validate-k8s.js): Kubernetes, cert-manager, Gateway API and Prometheus Operator schemas,
# unknown fields, and this project's rules (probes, security, shard addresses, network policies, no Namespace or
# volume claim an overlay delete would take along, the site's settings where they belong, no placeholder, ...).
# Each overlay is rendered as shipped and again with every optional component (gateway-api, ingress-nginx,
# prometheus-operator); an overlay shipped with its site.env to fill in must refuse to render, naming the setting. The data files come from deploy/config itself (a
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

# 2. Render and validate every overlay, as shipped and with every optional component. An overlay whose site.env
# still has settings commented out (prod ships that way) must refuse to render, naming the first missing setting;
# it is then validated as rendered with a site's settings filled in (tests/deploy/lib.sh, test_site_env).
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

validate() {  # validate <overlay> <rendered.yaml> <site.env> [what]
  if ! CRM_SITE_ENV="$3" node "$here/validate-k8s.js" "$1" "$2"; then failures+=("validate $1${4:-}"); fi
}

for o in "${overlays[@]}"; do
  dir="$root/deploy/k8s/overlays/$o"
  if site_settings_unset "$dir"; then
    # Shipped with settings to fill in: the render must stop and say which.
    if kubectl kustomize "$dir" >/dev/null 2>"$tmp/$o.err"; then
      echo "FAIL: deploy/k8s/overlays/$o renders although site.env leaves settings commented out" >&2
      failures+=("placeholder $o")
    elif ! grep -qE 'fieldPath `data\.[a-z_]+` is missing for replacement source ConfigMap.*/crm-site' "$tmp/$o.err"; then
      echo "FAIL: deploy/k8s/overlays/$o: the render fails, but not naming the missing site.env setting:" >&2
      cat "$tmp/$o.err" >&2
      failures+=("placeholder $o")
    else
      echo "$o as shipped refuses to render: $(grep -oE 'fieldPath `data\.[a-z_]+` is missing' "$tmp/$o.err") (site.env)"
    fi
  fi
  for variant in shipped components; do
    if site=$(render_overlay_copy "$root" "$o" "$tmp" "$tmp/$o-$variant.yaml" "$variant"); then
      validate "$o" "$tmp/$o-$variant.yaml" "$site" " ($variant)"
    else
      failures+=("render $o ($variant)")
    fi
  done
done

if ((${#failures[@]})); then
  echo "render_and_validate: FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "render_and_validate: OK (overlays: ${overlays[*]})"
