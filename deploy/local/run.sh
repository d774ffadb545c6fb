#!/usr/bin/env bash
# The run command: installs what is missing, builds, and starts every process locally, each with its
# RocksDB under one data folder. Ctrl-C stops them all cleanly (SIGTERM, then wait). Data is kept.
#
#   deploy/local/run.sh [--data DIR] [--port-base N] [--metrics-base N] [--http-port N]
#     --data DIR          data folder (default ./data; env CRM_DATA)
#     --port-base N       gateway gRPC on N, the services on N+1.. (default 50050; env CRM_PORT_BASE)
#     --metrics-base N    /metrics ports N (gateway), N+1.. (default 9150; env CRM_METRICS_BASE)
#     --http-port N       the gateway's gRPC-Web/Connect port for browsers (default 8080; env CRM_HTTP_PORT)
#     --demo              load a small demo data set through the gateway once everything is up (catalog,
#                         customers, orders in every state, tickets, points); a second time does nothing
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data="${CRM_DATA:-$root/data}"
port_base="${CRM_PORT_BASE:-50050}"
metrics_base="${CRM_METRICS_BASE:-9150}"
http_port="${CRM_HTTP_PORT:-8080}"
demo=""
while (($#)); do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --port-base) port_base="$2"; shift 2 ;;
    --metrics-base) metrics_base="$2"; shift 2 ;;
    --http-port) http_port="$2"; shift 2 ;;
    --demo) demo=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

"$root/deploy/local/install-deps.sh"
"$root/deploy/local/build.sh"
build="${CRM_BUILD_DIR:-$root/build}"

# The data services, from the registry the binaries use (tools/crm-services prints rpc::DataServices()):
# name, binary (relative to the build folder), port offset from 50050 (the metrics port has the same offset
# from 9150); then the gateway. Every process learns where the others are from the address flags.
services=()
addresses=()
while IFS=$'\t' read -r name grpc_port _ address_flag; do
  offset=$((grpc_port - 50050))
  services+=("$name services/${name//-/_}/$name $offset")
  addresses+=("$address_flag=127.0.0.1:$((port_base + offset))")
done < <("$build/tools/crm-services")
services+=("gateway services/gateway/gateway 0")
process_names=()
for entry in "${services[@]}"; do process_names+=("${entry%% *}"); done

mkdir -p "$data/logs"
data=$(cd "$data" && pwd)
exec 9>"$data/.run.lock"
if ! flock -n 9; then
  echo "error: the backend is already running on $data (another deploy/local/run.sh holds $data/.run.lock)." >&2
  echo "       Stop it with Ctrl-C in its terminal, or use --data for a second, separate instance." >&2
  exit 1
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_in_use "$http_port"; then
  echo "error: port $http_port (the gateway's HTTP port) is already in use. Free it or pass --http-port." >&2
  exit 1
fi
# The gateway checks bearer tokens against this secret (HS256); crm-token mints tokens with it.
mkdir -p "$data/gateway" "$data/secrets"
if [[ ! -s "$data/gateway/jwt-secret" ]]; then
  (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$data/gateway/jwt-secret")
fi
# The deployment's internal key: the processes sign their calls to each other (and page tokens) with it.
if [[ ! -s "$data/secrets/internal-key" ]]; then
  (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$data/secrets/internal-key")
fi
# Mutual TLS between the processes: a development CA and a certificate per process (deploy/local/dev-pki.sh).
"$root/deploy/local/dev-pki.sh" "$data/tls" "${process_names[@]}"
for entry in "${services[@]}"; do
  read -r name _ offset <<<"$entry"
  for port in $((port_base + offset)) $((metrics_base + offset)); do
    if port_in_use "$port"; then
      echo "error: port $port (for $name) is already in use. Free it or pass --port-base / --metrics-base." >&2
      exit 1
    fi
  done
done

pids=()
stop() {
  trap - INT TERM
  echo
  echo "Stopping: SIGTERM to every process, waiting for them to drain and close their stores..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "Stopped. Data kept in $data"
  exit 0
}
trap stop INT TERM

for entry in "${services[@]}"; do
  read -r name binary offset <<<"$entry"
  log="$data/logs/$name.log"
  config=()
  case "$name" in
    loyalty) config=(--rules_file="$root/deploy/config/loyalty-rules.textproto") ;;
    order-tracking) config=(--return_policy_file="$root/deploy/config/return-policy.txt") ;;
    complaint-ticket) config=(--lexicon_file="$root/deploy/config/complaint-lexicon.textproto"
                              --severity_model_file="$root/deploy/config/complaint-severity-model.tsv"
                              --sla_rules_file="$root/deploy/config/sla-rules.textproto") ;;
    customer-profile) config=(--segment_rules_file="$root/deploy/config/segment-rules.textproto") ;;
    gateway) config=(--http_listen="127.0.0.1:$http_port" --jwt_secret_file="$data/gateway/jwt-secret"
                     --cors_allowed_origins="http://localhost:3000,http://127.0.0.1:3000,http://localhost:5173") ;;
  esac
  "$build/$binary" --listen="127.0.0.1:$((port_base + offset))" "${config[@]}" \
    --metrics_listen="127.0.0.1:$((metrics_base + offset))" \
    --internal_key_file="$data/secrets/internal-key" --tls_dir="$data/tls/$name" \
    --data_dir="$data/$name" "${addresses[@]}" >>"$log" 2>&1 &
  pids+=("$!")
done

# Each process logs {"message":"serving",...} once its store is open and health is SERVING.
for i in "${!services[@]}"; do
  read -r name _ _ <<<"${services[$i]}"
  log="$data/logs/$name.log"
  for _ in $(seq 1 600); do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "error: $name exited during start-up; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      stop
    fi
    if [[ -n $(tail -n 5 "$log" | grep '"message":"serving"' || true) ]]; then break; fi
    sleep 0.1
  done
done

demo_customer_id=""
demo_sku=""
if [[ -n "$demo" ]]; then
  demo_out=$("$build/tools/crm-demo" --gateway="127.0.0.1:$port_base" --jwt_secret_file="$data/gateway/jwt-secret") ||
    { echo "$demo_out"; stop; }
  grep -v '^demo_' <<<"$demo_out" || true
  demo_customer_id=$(sed -n 's/^demo_customer_id=//p' <<<"$demo_out")
  demo_sku=$(sed -n 's/^demo_sku=//p' <<<"$demo_out")
fi

echo
echo "CRM backend running, data in $data (logs in $data/logs)"
for entry in "${services[@]}"; do
  read -r name _ offset <<<"$entry"
  printf '  %-18s gRPC 127.0.0.1:%-6s metrics http://127.0.0.1:%s/metrics\n' "$name" \
    "$((port_base + offset))" "$((metrics_base + offset))"
done
echo
printf '  %-18s gRPC-Web and Connect for browsers: http://127.0.0.1:%s\n' "gateway" "$http_port"
echo
echo "Try it through the gateway (Connect JSON over HTTP; mint a token first):"
echo "  TOKEN=\$($build/services/gateway/crm-token --secret_file=$data/gateway/jwt-secret --role=admin --subject=me)"
echo "  curl -s -H \"Authorization: Bearer \$TOKEN\" -H 'Content-Type: application/json' \\"
echo "    -d '{\"requestId\":\"r1\",\"email\":\"li.na@example.com\"}' \\"
echo "    http://127.0.0.1:$http_port/crm.v1.CustomerProfileService/RegisterCustomer"
echo
if [[ -n "$demo_customer_id" ]]; then
  # Ready-made tokens (an hour each) for the demo customer and a support agent.
  token_cmd=("$build/services/gateway/crm-token" --secret_file="$data/gateway/jwt-secret")
  customer_token=$("${token_cmd[@]}" --role=customer --subject="$demo_customer_id")
  agent_token=$("${token_cmd[@]}" --role=agent --subject=agent-demo)
  echo "Demo data: customer $demo_customer_id (demo0@example.com), an item to try: $demo_sku"
  echo "  export CUSTOMER_ID=$demo_customer_id SKU=$demo_sku"
  echo "  export CUSTOMER_TOKEN=$customer_token"
  echo "  export AGENT_TOKEN=$agent_token"
  echo "  curl -s -H \"Authorization: Bearer \$CUSTOMER_TOKEN\" -H 'Content-Type: application/json' \\"
  echo "    -d \"{\\\"customerId\\\":\\\"\$CUSTOMER_ID\\\"}\" http://127.0.0.1:$http_port/crm.v1.CustomerProfileService/GetCustomer"
  echo
fi
echo "Ctrl-C stops everything."
wait
