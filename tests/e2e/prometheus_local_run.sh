#!/usr/bin/env bash
# The operator's first try, end to end: the README's run command (deploy/local/run.sh --demo) starts all six
# processes on their own ports and loads the demo data through the gateway, a real Prometheus (Debian package) scrapes them with
# deploy/prometheus/prometheus-local.yml (ports shifted for the test) and loads the alert rules, a few calls
# go through the gateway, and the test queries Prometheus's HTTP API until every target is up and the RPC
# metrics of those calls are there. Uses ports 21050-21190 (below those other tests pick, tests/support/process.cc).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="${CRM_BUILD_DIR:-$root/build}"
tmp=$(mktemp -d)
prom_pid=""
source "$root/tests/e2e/local_run.sh"
cleanup() {
  [[ -n "$prom_pid" ]] && kill "$prom_pid" 2>/dev/null || true
  stop_local_run
  rm -rf "$tmp"
}
trap cleanup EXIT

command -v prometheus >/dev/null || fail "prometheus is not installed (deploy/local/install-deps.sh --test)"

start_local_run --port-base 21050 --metrics-base 21150 --http-port 21080 --demo

# The local scrape config with the test's metrics ports and an absolute path to the rules.
sed -e 's/127\.0\.0\.1:915\([0-5]\)/127.0.0.1:2115\1/' -e "s|- alerts.yml|- $root/deploy/prometheus/alerts.yml|" \
  "$root/deploy/prometheus/prometheus-local.yml" >"$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus" \
  --web.listen-address=127.0.0.1:21190 >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!

# A few calls through the gateway, as a frontend would make them.
token=$("$build/services/gateway/crm-token" --secret_file="$tmp/data/gateway/jwt-secret" --role=admin --subject=ops)
for i in 1 2 3; do
  curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"requestId\":\"prom-$i\",\"email\":\"prom$i@example.com\"}" \
    http://127.0.0.1:21080/crm.v1.CustomerProfileService/RegisterCustomer >/dev/null || fail "RegisterCustomer through the gateway"
done

# The ready-made demo customer and tokens run.sh prints, used as printed.
eval "$(grep -E '^  export (CUSTOMER_ID|SKU|CUSTOMER_TOKEN|AGENT_TOKEN)=' "$tmp/run.out")"
[[ -n "${CUSTOMER_ID:-}" && -n "${SKU:-}" && -n "${CUSTOMER_TOKEN:-}" && -n "${AGENT_TOKEN:-}" ]] ||
  fail "run.sh --demo did not print the demo customer, a SKU and the two tokens"
for who in CUSTOMER_TOKEN AGENT_TOKEN; do
  got=$(curl -sf -H "Authorization: Bearer ${!who}" -H 'Content-Type: application/json' \
    -d "{\"customerId\":\"$CUSTOMER_ID\"}" http://127.0.0.1:21080/crm.v1.CustomerProfileService/GetCustomer) ||
    fail "GetCustomer with the printed $who"
  grep -q "\"customerId\":\"$CUSTOMER_ID\"" <<<"$got" || fail "GetCustomer with the printed $who answered $got"
done
# README's 360° view (agent) and cart recommendations (the customer, the printed SKU in the cart), as written.
got=$(curl -sf -H "Authorization: Bearer $AGENT_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"customerId\":\"$CUSTOMER_ID\",\"recommendationCount\":5}" \
  http://127.0.0.1:21080/crm.v1.CustomerViewService/GetCustomerView) || fail "GetCustomerView with AGENT_TOKEN"
grep -q '"purchases"' <<<"$got" || fail "GetCustomerView answered $got"
curl -sf -H "Authorization: Bearer $CUSTOMER_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"customerId\":\"$CUSTOMER_ID\",\"placement\":\"PLACEMENT_CART\",\"count\":4,\"contextSkus\":[\"$SKU\"]}" \
  http://127.0.0.1:21080/crm.v1.RecommendationService/Recommend >/dev/null || fail "Recommend with CUSTOMER_TOKEN"

query() { curl -sf --get --data-urlencode "query=$1" http://127.0.0.1:21190/api/v1/query; }
ok=""
for _ in $(seq 1 60); do
  sleep 1
  up=$(query 'sum(up{job="crm"})' 2>/dev/null | grep -o '"value":\[[^]]*\]' | grep -o '"[0-9.]*"]' | tr -d '"]' || true)
  handled=$(query 'sum(grpc_server_handled_total{service="customer-profile",grpc_method="RegisterCustomer",grpc_code="OK"})' 2>/dev/null |
            grep -o '"[0-9.]*"]' | tr -d '"]' || true)
  routed=$(query 'sum(crm_gateway_requests_total{route="/crm.v1.CustomerProfileService/RegisterCustomer",code="OK"})' \
           2>/dev/null | grep -o '"[0-9.]*"]' | tr -d '"]' || true)
  gateway_handled=$(query 'sum(grpc_server_handled_total{service="gateway",grpc_method="RegisterCustomer",grpc_code="OK"})' \
                    2>/dev/null | grep -o '"[0-9.]*"]' | tr -d '"]' || true)
  orders=$(query 'sum(crm_orders_created_total)' 2>/dev/null | grep -o '"[0-9.]*"]' | tr -d '"]' || true)
  # The demo data (8 customers, 20 orders) and our 3 registrations, all through the gateway.
  if [[ "$up" == "6" && "$handled" == "11" && "$routed" == "11" && "$gateway_handled" == "11" && "$orders" == "20" ]]; then
    ok=1
    break
  fi
done
[[ -n "$ok" ]] || fail "Prometheus: up=$up (want 6), RegisterCustomer handled=$handled, routed=$routed, gateway grpc_server=$gateway_handled (want 11), orders=$orders (want 20)"
rules=$(curl -sf http://127.0.0.1:21190/api/v1/rules | grep -o '"type":"alerting"' | wc -l)
[[ "$rules" -gt 0 ]] || fail "Prometheus loaded no alerting rules"
echo "ok: 6 targets up, the demo data and 3 more registrations seen by the services and the gateway, $rules alerting rules loaded, the printed demo customer and tokens work"
