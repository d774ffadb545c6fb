# Sourced by the scripts that run Node.js tests (tests/deploy, tests/e2e/js).

# Installs $dir/package.json's packages (exact versions from package-lock.json) into
# $dir/node_modules, unless they are already there for this package.json and package-lock.json.
# Safe when several scripts run at once (CTest -j): one installs, the others wait.
ensure_node_modules() {
  local dir="$1"
  for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
      echo "FAIL: $tool is not installed (Debian: apt-get install nodejs npm)" >&2
      return 1
    fi
  done
  mkdir -p "$dir/node_modules"
  (
    flock 9
    local stamp="$dir/node_modules/.crm-deploy-tests.stamp"
    local want
    want=$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then exit 0; fi
    echo "Installing Node.js packages into $dir/node_modules..."
    local log
    log=$(mktemp)
    if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >"$log" 2>&1); then
      cat "$log" >&2
      rm -f "$log"
      echo "FAIL: npm install in $dir" >&2
      exit 1
    fi
    rm -f "$log"
    echo "$want" >"$stamp"
  ) 9>"$dir/node_modules/.crm-deploy-tests.lock"
}

# Whether overlay folder $1 ships its site.env with settings still to fill in (commented KEY=value lines):
# kustomize then refuses to render it (deploy/k8s/components/site).
site_settings_unset() {
  grep -qE '^# *[a-z_]+=' "$1/site.env" 2>/dev/null
}

# A site's settings as a site would set them, each different from every shipped default, so that the checks
# see every one land where it belongs.
test_site_env() {
  printf '%s\n' \
    image=registry.shop.test/crm/crm-backend:9.9.9 \
    jwt_issuer=https://login.shop.test/ \
    jwt_audience=crm-shop-api \
    cors_allowed_origins=https://www.shop.test,https://m.shop.test \
    storage_class=shop-ssd \
    monitoring_namespace=observability \
    public_host=crm.shop.test \
    public_grpc_host=grpc.crm.shop.test \
    public_tls_secret=crm-shop-tls \
    gateway_api_parent_name=shop-edge \
    gateway_api_parent_namespace=edge \
    ingress_class=nginx-public \
    prometheus_release=prom-shop
}

# render_overlay_copy <repo root> <overlay> <work dir> <out.yaml> [components]
# Renders the overlay from a copy of deploy/ in <work dir>: with test_site_env's settings when its site.env has
# settings to fill in, and with every optional component uncommented when the fifth argument is "components".
# Prints the site.env the copy used; on failure prints kustomize's error to stderr and returns 1.
render_overlay_copy() {
  local root=$1 o=$2 work=$3 out=$4 components=${5:-}
  local copy="$work/copy-$o"
  rm -rf "$copy" && mkdir -p "$copy" && cp -r "$root/deploy" "$copy/"
  local kdir="$copy/deploy/k8s/overlays/$o"
  if site_settings_unset "$kdir"; then test_site_env >"$kdir/site.env"; fi
  if [[ "$components" == components ]]; then
    sed -i -E 's@^  # - (\.\./\.\./components/(gateway-api|ingress-nginx|prometheus-operator))$@  - \1@' "$kdir/kustomization.yaml"
    local c
    for c in gateway-api ingress-nginx prometheus-operator; do
      if ! grep -q "^  - ../../components/$c\$" "$kdir/kustomization.yaml"; then
        echo "deploy/k8s/overlays/$o/kustomization.yaml does not list the optional component $c (commented)" >&2
        return 1
      fi
    done
  fi
  kubectl kustomize "$kdir" >"$out" || return 1
  echo "$kdir/site.env"
}
