#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite with CTest.
#   tests/run.sh                 everything (unit, integration, e2e, eval, fuzz, deploy, smoke)
#   tests/run.sh -L unit         only one label
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/local/install-deps.sh" --test
"$root/deploy/local/build.sh"
cd "${CRM_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${CRM_JOBS:-2}" "$@"
