#!/usr/bin/env bash
# Every binary's --help lists its own flags (not "No flags matched"): for each, one flag only it has, and the
# flags every process shares from libs/ where it is a service.
set -euo pipefail
build="${CRM_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}"
failures=0
check() {  # check <binary relative to the build folder> <flag it must list>...
  local binary="$1" out
  shift
  out=$("$build/$binary" --help 2>&1 || true)  # Abseil's --help exits 1
  if grep -q "No flags matched" <<<"$out"; then
    echo "FAIL: $binary --help lists no flags" >&2
    failures=$((failures + 1))
  fi
  for flag in "$@"; do
    if ! grep -q -- "--$flag " <<<"$out"; then
      echo "FAIL: $binary --help does not list --$flag" >&2
      failures=$((failures + 1))
    fi
  done
}
check services/customer_profile/customer-profile segment_rules_file churn_model_file listen data_dir
check services/order_tracking/order-tracking return_policy_file listen data_dir
check services/loyalty/loyalty rules_file maintenance_interval_s listen data_dir
check services/complaint_ticket/complaint-ticket lexicon_file sla_sweep_interval_s listen data_dir
check services/recommendation/recommendation bestseller_cache_s listen data_dir
check services/gateway/gateway jwt_secret_file http_listen listen
check services/gateway/crm-token secret_file
check tools/crm-import gateway state_file
check tools/crm-demo gateway
check tests/load/crm-availability target_mib rounds
if ((failures > 0)); then exit 1; fi
echo "help_lists_flags: every binary's --help lists its own flags"
