#!/usr/bin/env bash
# Builds deploy/container/Dockerfile for real with podman, offline from any container registry, and checks
# the image it makes:
#   1. a Debian bookworm base made with debootstrap (minbase) from Debian's apt archive, imported as the local
#      image localhost/crm-debian-base:bookworm-<ISO week> (kept for the week, so reruns skip it);
#   2. the image, built with --build-arg DEBIAN_IMAGE=<that base> (the build's apt-get and compile run with the
#      host's network, for the apt archive; 2 compile jobs, CRM_JOBS);
#   3. its user is 10001, its default command prints the usage (every binary) and exits 0;
#   4. every binary starts with a read-only root filesystem (no writable /tmp either, as Kubernetes'
#      readOnlyRootFilesystem) as uid 10001 and lists its own flags in --help;
#   5. every data service starts read-only (its store on a tmpfs, loyalty's on a named volume) as uid 10001
#      and answers gRPC health SERVING, then the gateway does, wired to them. The containers share the host's
#      network and listen on free 127.0.0.1 ports only; nothing else is reached.
# Needs root (podman, apt-get). Installs podman, debootstrap and runc when missing. Its containers.conf and
# storage.conf (runc, ulimits the host allows, its own storage) live in $CRM_CONTAINER_HOME, not in /etc.
#   tests/deploy/build_image.sh                  base (if not cached), build, check
#   tests/deploy/build_image.sh --check-only     check the image already built ($CRM_IMAGE)
# Environment: CRM_IMAGE (default localhost/crm-backend:test), CRM_JOBS (default 2),
#   CRM_CONTAINER_HOME (default /var/tmp/crm-container: config, image storage, logs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
image="${CRM_IMAGE:-localhost/crm-backend:test}"
jobs="${CRM_JOBS:-2}"
home="${CRM_CONTAINER_HOME:-/var/tmp/crm-container}"
check_only=""
case "${1:-}" in
  --check-only) check_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--check-only]" >&2; exit 2 ;;
esac
if ((EUID != 0)); then
  echo "FAIL: build_image.sh needs root (podman's own storage, debootstrap, apt-get)" >&2
  exit 1
fi
source "$here/lib.sh"

# --- tools ------------------------------------------------------------------------------------------------
missing=()
for tool in podman:podman debootstrap:debootstrap runc:runc node:nodejs npm:npm; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
  echo "Installing ${missing[*]}..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi
ensure_node_modules "$here"

# --- podman's configuration -------------------------------------------------------------------------------
# runc, not crun: on a VM with hybrid cgroups crun refuses to start a container. Every ulimit podman would set
# is one the host allows (its defaults raise nofile and nproc above the hard limits here: "setrlimit: Operation
# not permitted"). cgroupfs and a file event log: no systemd or journald needed.
mkdir -p "$home/config" "$home/logs"
export CONTAINERS_CONF="$home/config/containers.conf"
export CONTAINERS_STORAGE_CONF="$home/config/storage.conf"
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[[ "$nofile" == unlimited ]] && nofile=1048576
if [[ "$nproc" == unlimited ]] || ((nproc > 32768)); then nproc=32768; else nproc=$((nproc / 2)); fi
cat >"$CONTAINERS_CONF" <<EOF
# Written by tests/deploy/build_image.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
storage_driver="${CRM_STORAGE_DRIVER:-overlay}"
write_storage_conf() {
  cat >"$CONTAINERS_STORAGE_CONF" <<EOF
# Written by tests/deploy/build_image.sh.
[storage]
driver = "$storage_driver"
graphroot = "$home/storage-$storage_driver"
runroot = "$home/run-$storage_driver"
EOF
}
write_storage_conf
# Kernel overlayfs where the file system allows it; else vfs (slower, full copies, but works anywhere).
if ! podman info >"$home/logs/podman-info.txt" 2>&1; then
  storage_driver=vfs
  write_storage_conf
  podman info >"$home/logs/podman-info.txt" 2>&1 || { cat "$home/logs/podman-info.txt" >&2; exit 1; }
fi
echo "podman $(podman version --format '{{.Client.Version}}'), runtime runc, storage $storage_driver in $home"

failures=()
fail() { echo "FAIL: $*" >&2; failures+=("$1"); }
tmp=$(mktemp -d)
label="crm-build-image-check=$$"
cleanup() {
  podman ps -aq --filter "label=$label" | xargs -r podman rm -f -t 5 >/dev/null 2>&1 || true
  podman volume ls -q --filter "label=$label" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

services=$(sed -n 's/^ARG CRM_SERVICES="\(.*\)"$/\1/p' "$root/deploy/container/Dockerfile")
[[ -n "$services" ]] || { echo "FAIL: no ARG CRM_SERVICES=\"...\" in the Dockerfile" >&2; exit 1; }

if [[ -z "$check_only" ]]; then
  # --- 1. the base ----------------------------------------------------------------------------------------
  base="localhost/crm-debian-base:bookworm-$(date +%G-w%V)"
  if podman image exists "$base"; then
    echo "== base $base (kept from an earlier run this week)"
  else
    echo "== base $base: debootstrap --variant=minbase bookworm"
    rootfs="$tmp/rootfs"
    start=$SECONDS
    if ! debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$home/logs/debootstrap.log" 2>&1; then
      tail -n 20 "$home/logs/debootstrap.log" >&2
      echo "FAIL: debootstrap (log: $home/logs/debootstrap.log)" >&2
      exit 1
    fi
    # As debian:bookworm-slim: the updates and security suites, no documentation, no downloaded packages.
    cat >"$rootfs/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/cache/apt/archives/*.deb \
      "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
    tar -C "$rootfs" --numeric-owner -c . |
      podman import -q --change 'CMD ["/bin/bash"]' --message "debootstrap --variant=minbase bookworm" - "$base" >/dev/null
    rm -rf "$rootfs"
    # Older weeks' bases are no longer used.
    podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/crm-debian-base:' | grep -vx "$base" |
      xargs -r podman rmi >/dev/null 2>&1 || true
    echo "   made in $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "$base" | numfmt --to=si)B"
  fi

  # --- 2. the image ---------------------------------------------------------------------------------------
  # --layers=false: every intermediate layer is dropped (the compile stage alone holds gigabytes of objects,
  # and any change to the sources rebuilds it anyway). --pull=never: nothing comes from a registry.
  echo "== build $image from $base ($jobs compile jobs; log: $home/logs/build.log)"
  old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  start=$SECONDS
  if ! nice -n 10 podman build --pull=never --layers=false --network=host --jobs=1 \
      --ignorefile "$root/deploy/container/Dockerfile.dockerignore" -f "$root/deploy/container/Dockerfile" \
      --build-arg DEBIAN_IMAGE="$base" --build-arg CRM_JOBS="$jobs" -t "$image" "$root" >"$home/logs/build.log" 2>&1; then
    tail -n 40 "$home/logs/build.log" >&2
    echo "FAIL: podman build (log: $home/logs/build.log)" >&2
    exit 1
  fi
  echo "   built in $((SECONDS - start)) s"
  new_id=$(podman image inspect --format '{{.Id}}' "$image")
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
fi

podman image exists "$image" || { echo "FAIL: no image $image (build it: $0)" >&2; exit 1; }
echo "== image $image: $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=si)B"

# --- 3. user and default command ----------------------------------------------------------------------------
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[[ "$user" == 10001:10001 ]] || fail "user" "the image runs as '$user', not 10001:10001"
usage_status=0
usage=$(podman run --rm --read-only --read-only-tmpfs=false --network=none "$image" 2>&1) || usage_status=$?
if ((usage_status == 0)); then
  for s in $services; do
    grep -q "\b$s\b" <<<"$(grep '^Binaries' <<<"$usage")" || fail "usage" "the default command's usage does not name $s"
  done
  grep -q "@BINARIES@" <<<"$usage" && fail "usage" "the usage still says @BINARIES@"
  echo "   default command: exit 0, $(wc -l <<<"$usage") lines of usage naming every binary"
else
  echo "$usage" >&2
  fail "usage" "the default command exits $usage_status, not 0"
fi

# --- 4. every binary starts read-only as uid 10001 and lists its own flags ----------------------------------
own_flags() {  # the flags only this binary has (as tests/e2e/help_lists_flags.sh), and some every service has
  case "$1" in
    customer-profile) echo segment_rules_file churn_model_file quiet_hours smtp_server notification_webhook_url listen data_dir ;;
    order-tracking) echo return_policy_file listen data_dir ;;
    loyalty) echo rules_file maintenance_interval_s listen data_dir ;;
    complaint-ticket) echo lexicon_file sla_sweep_interval_s listen data_dir ;;
    recommendation) echo bestseller_cache_s reminder_sweep_interval_s listen data_dir ;;
    gateway) echo jwt_secret_file http_listen listen ;;
    *) echo listen ;;
  esac
}
echo "== every binary's --help, read-only, uid 10001"
for s in $services; do
  out=$(podman run --rm --read-only --read-only-tmpfs=false --network=none "$image" "/usr/local/bin/$s" --help 2>&1 || true)  # Abseil's --help exits 1
  missing_flags=()
  for flag in $(own_flags "$s"); do grep -q -- "--$flag " <<<"$out" || missing_flags+=("--$flag"); done
  if ((${#missing_flags[@]})); then
    head -n 5 <<<"$out" >&2
    fail "help $s" "$s --help does not list ${missing_flags[*]}"
  else
    echo "   $s: --help lists $(own_flags "$s" | sed 's/\([a-z_]*\)/--\1/g')"
  fi
done
uid=$(podman run --rm --read-only --read-only-tmpfs=false --network=none "$image" /usr/bin/id -u 2>&1 || true)
[[ "$uid" == 10001 ]] || fail "uid" "a container of the image runs as uid '$uid'"
if out=$(podman run --rm --read-only --read-only-tmpfs=false --network=none "$image" /usr/bin/touch /usr/local/bin/x 2>&1); then
  fail "read-only" "a container started with --read-only could write to /usr/local/bin"
elif ! grep -q "Read-only file system" <<<"$out"; then
  fail "read-only" "writing to /usr/local/bin failed otherwise than read-only: $out"
fi

# --- 5. the services start read-only and serve ---------------------------------------------------------------
# Free loopback ports for every process: gRPC, plaintext health, metrics (+ HTTP for the gateway).
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 20000))
next_free_port() {  # sets port to the next free one (no subshell: it counts on from the last)
  port=$((port + 1))
  while port_in_use "$port"; do port=$((port + 1)); done
}
declare -A grpc_port health_port metrics_port
for s in $services; do
  next_free_port; grpc_port[$s]=$port
  next_free_port; health_port[$s]=$port
  next_free_port; metrics_port[$s]=$port
done
next_free_port; http_port=$port
data_services=$(tr ' ' '\n' <<<"$services" | grep -vx gateway | tr '\n' ' ')
addresses=()
for s in $data_services; do addresses+=("--${s//-/_}_address=127.0.0.1:${grpc_port[$s]}"); done

# The deployment's secrets, readable by uid 10001 through a read-only bind mount.
mkdir -p "$tmp/secrets"
head -c 48 /dev/urandom | base64 -w0 >"$tmp/secrets/internal-key"
head -c 48 /dev/urandom | base64 -w0 >"$tmp/secrets/jwt-secret"
chmod 0755 "$tmp" "$tmp/secrets"
chmod 0644 "$tmp/secrets"/*

cat >"$tmp/health.cjs" <<'EOF'
// node health.cjs <node_modules> <port> <seconds> <pid>: waits until 127.0.0.1:<port> answers grpc.health.v1
// Check with SERVING; exits 1 if it has not within <seconds>, or as soon as process <pid> has ended.
const [modules, port, seconds, pid] = process.argv.slice(2);
const grpc = require(`${modules}/@grpc/grpc-js`);
const { existsSync } = require("node:fs");
function serving() {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest("/grpc.health.v1.Health/Check", (x) => x, (b) => b, Buffer.alloc(0), new grpc.Metadata(),
      { deadline: Date.now() + 1000 }, (err, res) => { client.close(); resolve(!err && res.length === 2 && res[1] === 1); });
  });
}
(async () => {
  const end = Date.now() + Number(seconds) * 1000;
  while (Date.now() < end && existsSync(`/proc/${pid}`)) {
    if (await serving()) process.exit(0);
    await new Promise((r) => setTimeout(r, 200));
  }
  process.exit(1);
})();
EOF

start_process() {  # start_process <binary> <flag>...; /var/lib/crm is what the array store says
  local s="$1"
  shift
  podman run -d --name "crm-check-$s-$$" --label "$label" --read-only --read-only-tmpfs=false --network=host \
    "${store[@]}" -v "$tmp/secrets:/run/secrets/crm:ro" "$image" "/usr/local/bin/$s" \
    --listen="127.0.0.1:${grpc_port[$s]}" --health_listen="127.0.0.1:${health_port[$s]}" \
    --metrics_listen="127.0.0.1:${metrics_port[$s]}" --internal_key_file=/run/secrets/crm/internal-key "$@" >/dev/null
}
config_flags() {  # the data file each service reads, from the image's /etc/crm (as the manifests give it)
  case "$1" in
    loyalty) echo --rules_file=/etc/crm/loyalty-rules.textproto ;;
    order-tracking) echo --return_policy_file=/etc/crm/return-policy.txt ;;
    complaint-ticket) echo --lexicon_file=/etc/crm/complaint-lexicon.textproto ;;
    customer-profile) echo --segment_rules_file=/etc/crm/segment-rules.textproto ;;
  esac
}
check_serving() {  # check_serving <binary>: health SERVING on both ports, uid 10001, read-only root
  local s="$1" name="crm-check-$1-$$" pid
  local ok=1
  pid=$(podman inspect --format '{{.State.Pid}}' "$name" 2>/dev/null || echo 0)
  for p in "${health_port[$s]}" "${grpc_port[$s]}"; do
    if ((pid == 0)) || ! node "$tmp/health.cjs" "$here/node_modules" "$p" 120 "$pid"; then
      fail "serving $s" "$s does not answer health SERVING on 127.0.0.1:$p"
      ok=""
    fi
  done
  if [[ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != true ]]; then
    fail "running $s" "$s is not running"
    ok=""
  else
    [[ "$(stat -c %u "/proc/$pid")" == 10001 ]] || { fail "uid $s" "$s runs as uid $(stat -c %u "/proc/$pid")"; ok=""; }
    [[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" == true ]] ||
      { fail "read-only $s" "$s's root filesystem is writable"; ok=""; }
  fi
  if [[ -n "$ok" ]]; then
    echo "   $s: health SERVING on 127.0.0.1:${health_port[$s]} and :${grpc_port[$s]}, uid 10001, read-only root"
  else
    podman logs --tail 20 "$name" >&2 || true
  fi
}

echo "== every process starts read-only as uid 10001 and serves (host network, 127.0.0.1 only)"
for s in $data_services; do
  if [[ "$s" == loyalty ]]; then
    # A named volume, as a PersistentVolumeClaim: it starts with the image's /var/lib/crm (owned by 10001).
    podman volume create --label "$label" "crm-check-loyalty-$$" >/dev/null
    store=(-v "crm-check-loyalty-$$:/var/lib/crm")
  else
    store=(--tmpfs "/var/lib/crm:rw,size=512m,mode=0700,U")
  fi
  # shellcheck disable=SC2046  # config_flags prints one flag or none
  start_process "$s" --data_dir=/var/lib/crm/db --block_cache_mb=64 $(config_flags "$s") "${addresses[@]}" ||
    fail "start $s" "podman run of $s failed"
done
for s in $data_services; do check_serving "$s"; done
if grep -qw gateway <<<"$services"; then
  store=(--tmpfs "/var/lib/crm:rw,size=64m,mode=0700,U")
  start_process gateway --http_listen="127.0.0.1:$http_port" --jwt_secret_file=/run/secrets/crm/jwt-secret \
    "${addresses[@]}" || fail "start gateway" "podman run of gateway failed"
  check_serving gateway
fi

if ((${#failures[@]})); then
  echo "build_image: FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "build_image: OK ($image)"
