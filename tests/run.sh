#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite with CTest.
#   tests/run.sh                 everything but the container image (unit, integration, e2e, eval, fuzz, deploy,
#                                smoke)
#   tests/run.sh -L unit         only one label
#   tests/run.sh -L container    the container image built for real with podman (tests/deploy/build_image.sh:
#                                root, tens of minutes); left out unless an argument names it (container,
#                                build_image) or the caller passes its own -LE
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/local/install-deps.sh" --test
"$root/deploy/local/build.sh"
cd "${CRM_BUILD_DIR:-$root/build}"
exclude=(-LE container)
for arg in "$@"; do
  if [[ "$arg" == *container* || "$arg" == *build_image* || "$arg" == -LE || "$arg" == --label-exclude ]]; then
    exclude=()
  fi
done
ctest --output-on-failure -j "${CRM_JOBS:-2}" "${exclude[@]}" "$@"
