#!/usr/bin/env bash
# Docs that run as written: starts the local run exactly as README says (deploy/local/run.sh --demo, default
# ports: README's examples call 127.0.0.1:8080 and :50050), then runs every code block of README.md and
# deploy/README.md by its tag (tests/e2e/doc_blocks.py says what each tag means) from a folder laid out like the
# repository root, with the demo customer, SKU and tokens run.sh prints exported. Cluster commands go to
# offline stand-ins for kubectl, kind, docker and podman (written below); nothing leaves loopback.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${CRM_BUILD_DIR:-$root/build}" && pwd)
tmp=$(mktemp -d)
source "$root/tests/e2e/local_run.sh"
trap 'stop_local_run; rm -rf "$tmp"' EXIT
start_local_run --demo

# A folder that looks like the repository root to the blocks: the build, the local run's data, the sources.
work="$tmp/work"
mkdir -p "$work/stand-ins"
ln -s "$build" "$work/build"
ln -s "$tmp/data" "$work/data"
for d in deploy tests tools docs proto services libs; do ln -s "$root/$d" "$work/$d"; done
# The key files a reader brings (deploy/README's Secret commands name them).
for f in public.pem jwt-public.pem loyalty.crt loyalty.key ca.crt; do printf -- '-----BEGIN PUBLIC KEY-----\nstand-in\n-----END PUBLIC KEY-----\n' >"$work/$f"; done

# kubectl: renders what apply -k / kustomize names (an overlay whose site.env is still to fill in, with a site's
# settings, as tests/deploy does), checks that apply -f and --from-file name files that exist, runs create
# secret/configmap with --dry-run=client against no server, and checks any other verb exists.
cat >"$work/stand-ins/kubectl" <<EOF
#!/usr/bin/env bash
set -euo pipefail
export KUBECONFIG=/dev/null
real=$(command -v kubectl)
# lib.sh runs kubectl kustomize: the real one, not this stand-in.
export PATH="$(dirname "$(command -v kubectl)"):\$PATH"
source "$root/tests/deploy/lib.sh"
args=()
while ((\$#)); do
  case "\$1" in
    -n|--namespace) shift 2 ;;
    *) args+=("\$1"); shift ;;
  esac
done
set -- "\${args[@]}"
render() {
  local dir=\${1%/} out=\$(mktemp)
  [[ -d "\$dir" ]] || { echo "kubectl stand-in: no folder \$dir" >&2; exit 1; }
  if [[ "\$dir" == */overlays/* ]]; then
    render_overlay_copy "$root" "\$(basename "\$dir")" "\$(mktemp -d)" "\$out" >/dev/null
  else
    "\$real" kustomize "\$dir" >"\$out"
  fi
}
case "\${1:-}" in
  kustomize) render "\$2" ;;
  apply|delete)
    shift
    while ((\$#)); do
      case "\$1" in
        -k) render "\$2"; shift 2 ;;
        -f) if [[ "\$2" == - ]]; then grep -q '^kind:' || { echo "kubectl stand-in: stdin is not a manifest" >&2; exit 1; }
            else [[ -f "\$2" ]] && grep -q '^kind:' "\$2" || { echo "kubectl stand-in: \$2 is not a manifest" >&2; exit 1; }; fi
            shift 2 ;;
        *) shift ;;
      esac
    done ;;
  create)
    # Secrets and ConfigMaps are built for real, with no server (the files they name must exist); printed
    # only when the command asks for the object itself (a pipe into kubectl apply -f -).
    if [[ "\${2:-}" == secret || "\${2:-}" == configmap ]]; then
      if [[ " \$* " == *" --dry-run=client "* ]]; then "\$real" "\$@"; else "\$real" "\$@" --dry-run=client -o yaml >/dev/null; fi
    fi ;;
  # A pod's log as the services write it, for the runbooks' filters.
  logs) echo '{"time":"2026-12-04T10:00:00Z","level":"warning","service":"loyalty","message":"stand-in"}' ;;
  *) "\$real" "\$1" --help >/dev/null ;;
esac
EOF
# docker and podman: a build's Dockerfile must exist; kind: nothing to check.
for engine in docker podman; do
  cat >"$work/stand-ins/$engine" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
if [[ "${1:-}" == build ]]; then
  while (($#)); do
    if [[ "$1" == -f ]]; then [[ -f "$2" ]] || { echo "stand-in: no Dockerfile $2" >&2; exit 1; }; fi
    shift
  done
fi
EOF
done
printf '#!/usr/bin/env bash\nexit 0\n' >"$work/stand-ins/kind"
# curl, for commands addressed to a cluster's gateway: the URL must name a method of the public API.
cat >"$work/stand-ins/curl" <<EOF
#!/usr/bin/env bash
for a in "\$@"; do
  if [[ "\$a" =~ ^https?://[^/]+/crm\.v1\.([A-Za-z]+)/([A-Za-z]+)\$ ]]; then
    grep -rqs "rpc \${BASH_REMATCH[2]}(" "$root/proto/crm/v1" && exit 0
    echo "curl stand-in: no method \${BASH_REMATCH[2]} in proto/crm/v1" >&2; exit 1
  fi
done
echo "curl stand-in: no crm.v1 method URL in: \$*" >&2; exit 1
EOF
chmod +x "$work/stand-ins/"*

# The JavaScript examples use the npm clients tests/e2e/js installs (Connect, grpc-js, protobuf-es).
source "$root/tests/deploy/lib.sh"
ensure_node_modules "$root/tests/e2e/js"
export NODE_PATH="$root/tests/e2e/js/node_modules"
python3 "$root/tests/e2e/doc_blocks.py" "$root" "$work" "$tmp/run.out"
