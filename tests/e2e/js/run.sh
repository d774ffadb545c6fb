#!/usr/bin/env bash
# Runs one of the gateway's end-to-end test files (node --test) against the built binaries, installing the
# npm packages first when needed (exact versions from package-lock.json).
#   tests/e2e/js/run.sh grpc_js.test.js     (CRM_BUILD_DIR: the build folder, default ./build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../deploy/lib.sh"
ensure_node_modules "$here"
cd "$here"
exec node --test --test-reporter=spec "$@"
