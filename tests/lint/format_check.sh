#!/usr/bin/env bash
# Every C++ file of the project is as clang-format (.clang-format: Google style, 100 columns) writes
# it, so no change carries someone else's reformatting. Fix with:
#   git ls-files '*.cc' '*.h' | grep -v node_modules | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/../.."
format=$(command -v clang-format || command -v clang-format-14 || true)
if [[ -z "$format" ]]; then
  echo "clang-format is not installed (deploy/local/install-deps.sh --test installs it)" >&2
  exit 1
fi
mapfile -t files < <(find services libs tests tools -name node_modules -prune -o \
  \( -name '*.cc' -o -name '*.h' \) -type f -print | sort)
if ! "$format" --dry-run --Werror "${files[@]}" 2> /tmp/crm-format-check.$$; then
  grep -E '^[^ ].*(warning|error):' /tmp/crm-format-check.$$ | cut -d: -f1 | sort -u |
    sed 's/^/not clang-formatted: /' >&2
  rm -f /tmp/crm-format-check.$$
  exit 1
fi
rm -f /tmp/crm-format-check.$$
echo "${#files[@]} C++ files clang-formatted"
