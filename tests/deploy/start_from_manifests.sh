#!/usr/bin/env bash
# Renders each overlay and starts every container it defines as a local process exactly as the manifest
# runs it, then probes it as the kubelet would (tests/deploy/start-from-manifests.mjs says what is replaced).
# Uses the manifests' own ports (50050-50055, 8080, 9150-9155) on 127.0.0.1.
#   tests/deploy/start_from_manifests.sh [overlay ...]     (default: every overlay; CRM_BUILD_DIR: ./build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="${CRM_BUILD_DIR:-$root/build}"
source "$here/lib.sh"
command -v kubectl >/dev/null || { echo "FAIL: kubectl is not installed" >&2; exit 1; }
ensure_node_modules "$here"
overlays=("$@")
if ((${#overlays[@]} == 0)); then
  for d in "$root"/deploy/k8s/overlays/*/; do overlays+=("$(basename "$d")"); done
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for overlay in "${overlays[@]}"; do
  echo "== $overlay"
  # An overlay shipped with its site settings to fill in (prod) is rendered with a site's settings.
  render_overlay_copy "$root" "$overlay" "$tmp" "$tmp/$overlay.yaml" >/dev/null
  node "$here/start-from-manifests.mjs" "$tmp/$overlay.yaml" "$build" || status=1
done
exit $status
