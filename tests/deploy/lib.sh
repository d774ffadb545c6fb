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
