#!/usr/bin/env bash
# A development certificate authority and one certificate per process, for mutual TLS between the processes of
# a local run (and of the end-to-end tests). Each process gets a folder in the layout cert-manager writes into a
# Kubernetes Secret, which is what --tls_dir reads: tls.crt, tls.key, ca.crt.
#
#   deploy/local/dev-pki.sh DIR NAME...     e.g. dev-pki.sh data/tls gateway customer-profile ...
#
# A certificate's common name is the process name (the services check it against the caller's signed
# assertion); its subject alternative names cover how processes reach each other locally (127.0.0.1,
# localhost, the name). EC P-256 keys, valid for 825 days. Safe to run again: what exists and is not about to
# expire is kept. For development only: production certificates come from cert-manager (deploy/README.md).
set -euo pipefail
dir="$1"
shift
mkdir -p "$dir"
(
  cd "$dir"
  umask 077
  if [[ ! -s ca.key || ! -s ca.crt ]] || ! openssl x509 -in ca.crt -noout -checkend 86400 >/dev/null 2>&1; then
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 825 -subj "/O=CRM development/CN=CRM development CA" \
      -out ca.crt 2>/dev/null
    for name in "$@"; do rm -rf -- "$name"; done  # certificates of an earlier CA no longer verify
  fi
  for name in "$@"; do
    mkdir -p "$name"
    if [[ -s "$name/tls.crt" ]] && openssl x509 -in "$name/tls.crt" -noout -checkend 86400 >/dev/null 2>&1; then
      continue
    fi
    openssl ecparam -name prime256v1 -genkey -noout -out "$name/tls.key" 2>/dev/null
    openssl req -new -key "$name/tls.key" -subj "/O=CRM development/CN=$name" -out "$name/tls.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" \
      >"$name/ext.cnf"
    openssl x509 -req -in "$name/tls.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 825 \
      -extfile "$name/ext.cnf" -out "$name/tls.crt" 2>/dev/null
    cp ca.crt "$name/ca.crt"
    rm -f "$name/tls.csr" "$name/ext.cnf"
  done
)
