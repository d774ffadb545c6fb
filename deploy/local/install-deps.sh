#!/usr/bin/env bash
# Installs the Debian 12 packages this project needs that are not installed yet. Safe to run again: it
# only calls apt-get when something is missing. Uses sudo when not root.
#   deploy/local/install-deps.sh          build + run
#   deploy/local/install-deps.sh --test   also what the tests need
set -euo pipefail

packages=(cmake make g++ pkg-config
          libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
          libabsl-dev librocksdb-dev prometheus-cpp-dev zlib1g-dev libssl-dev
          libnghttp2-dev libevent-dev libhttp-parser-dev libjemalloc-dev libcurl4-openssl-dev)
# nghttp2 (HTTP/2 framing, both ends), libevent (the event loops) and http-parser (HTTP/1.1): the gateway's
# front door, one event loop per core instead of a thread per connection.
# libcurl (OpenSSL flavour): notification e-mail over SMTP (libs/notify/smtp_sender.h says why libcurl).
# openssl: the local run's development CA for mutual TLS between the processes (deploy/local/dev-pki.sh).
packages+=(openssl)
if [[ "${1:-}" == "--test" ]]; then
  # prometheus: promtool checks; chromium: the gateway's browser test (driven by puppeteer-core from npm);
  # clang-14 with libclang-rt-14-dev: libFuzzer for the gateway's request-parsing fuzzer; nginx: the
  # proxy the gateway benchmark compares with (grpc_pass), also run briefly by the bench smoke test;
  # clang-format: the formatting check (tests/lint/format_check.sh); python3-aiosmtpd: the SMTP server the
  # e-mail sender's tests deliver to (tests/support/smtp_sink.py).
  packages+=(catch2 prometheus chromium clang-14 libclang-rt-14-dev nginx clang-format python3-aiosmtpd)
  # Node.js runs the end-to-end clients; a machine may already have it (with npm) from elsewhere.
  if ! command -v npm >/dev/null; then packages+=(nodejs npm); fi
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "Installing missing Debian packages: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "error: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  sudo="sudo"
fi
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Installed: ${missing[*]}"
