#!/usr/bin/env bash
# Configures and builds everything into ./build (or $CRM_BUILD_DIR) with $CRM_JOBS parallel jobs (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="${CRM_BUILD_DIR:-$root/build}"
jobs="${CRM_JOBS:-2}"
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$jobs" "$@"
