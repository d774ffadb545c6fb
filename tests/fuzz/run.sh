#!/usr/bin/env bash
# Builds the gateway's request-parsing fuzzer with clang and libFuzzer (AddressSanitizer and
# UndefinedBehaviorSanitizer on) and runs it for a bounded number of inputs from a small seed corpus.
#   tests/fuzz/run.sh [runs]      (default 100000; CRM_BUILD_DIR: the build folder with generated protos)
# Exit status: 0 when no input crashed. Findings are kept in $CRM_BUILD_DIR/fuzz/crash-*.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="${CRM_BUILD_DIR:-$root/build}"
runs="${1:-100000}"
gen="$build/proto/gen"
out="$build/fuzz"
mkdir -p "$out/corpus"
cxx=$(command -v clang++-14 || command -v clang++ || true)
if [[ -z "$cxx" ]]; then
  echo "FAIL: clang++ is not installed (deploy/local/install-deps.sh --test installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi
for f in customer_profile common options; do
  [[ -f "$gen/crm/v1/$f.pb.cc" ]] || { echo "FAIL: $gen/crm/v1/$f.pb.cc missing: build the project first" >&2; exit 1; }
done

binary="$out/gateway_request_fuzz"
sources=("$root/tests/fuzz/gateway_request_fuzz.cc" "$root/services/gateway/web_protocol.cc" "$root/libs/log/log.cc"
         "$root/libs/text/sensitive.cc"
         "$gen/crm/v1/customer_profile.pb.cc" "$gen/crm/v1/common.pb.cc" "$gen/crm/v1/options.pb.cc")
if [[ ! -x "$binary" || -n "$(find "${sources[@]}" -newer "$binary" 2>/dev/null)" ]]; then
  echo "Building $binary..."
  # shellcheck disable=SC2046
  "$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root" -I"$gen" "${sources[@]}" -o "$binary" \
    $(pkg-config --libs absl_strings absl_status absl_statusor absl_time absl_synchronization protobuf zlib)
fi

# Seeds: one valid body per wire format, so mutations start from the shapes a client really sends.
json='{"customerId":"c1","customer":{"name":"Li","birthday":{"year":1990,"month":5,"day":2}},"updateMask":"name,birthday"}'
frame() {  # flag 0, 4-byte big-endian length, payload
  local n=${#1}
  # shellcheck disable=SC2059
  printf "$(printf '\\x00\\x%02x\\x%02x\\x%02x\\x%02x' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
  printf '%s' "$1"
}
printf '\x02%s' "$json" >"$out/corpus/connect-json"
{ printf '\x04'; frame "$json"; } >"$out/corpus/connect-stream-json"
{ printf '\x00'; frame "abc"; } >"$out/corpus/grpc-web"
{ printf '\x01'; frame "abc" | base64 -w0; } >"$out/corpus/grpc-web-text"
{ printf '\x02'; printf '%s' "$json" | gzip -c; } >"$out/corpus/connect-json-gzip"
printf '\x02connect=v1&encoding=json&message=%%7B%%22customerId%%22%%3A%%22c1%%22%%7D' >"$out/corpus/connect-get-query"

cd "$out"
ASAN_OPTIONS=detect_leaks=1 "$binary" -runs="$runs" -max_len=4096 -timeout=10 -print_final_stats=1 corpus 2>&1 | tail -15
