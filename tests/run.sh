#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite with CTest.
#   tests/run.sh                 everything but the container image (unit, integration, e2e, eval, fuzz, deploy,
#                                smoke)
#   tests/run.sh -L unit         only one label
#   tests/run.sh -L container    the container image built for real with podman (tests/deploy/build_image.sh:
#                                root, tens of minutes); left out unless an argument names it (container,
#                                build_image)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/local/install-deps.sh" --test
"$root/deploy/local/build.sh"
cd "${CRM_BUILD_DIR:-$root/build}"
# The container label only when an argument names it; a caller's own -LE <regex> gets "|container" added.
args=()
excluded=""
asked=""
while (($#)); do
  case "$1" in
    -LE|--label-exclude) args+=("$1" "${2:-}|container"); excluded=1; shift 2 || shift ;;
    *) [[ "$1" == *container* || "$1" == *build_image* ]] && asked=1; args+=("$1"); shift ;;
  esac
done
if [[ -n "$asked" ]]; then
  args=("${args[@]/%|container/}")
  export CRM_CONTAINER_TESTS=1
elif [[ -z "$excluded" ]]; then
  args+=(-LE container)
fi
ctest --output-on-failure -j "${CRM_JOBS:-2}" "${args[@]}"
