#!/usr/bin/env bash
# Checks deploy/container/Dockerfile as far as this machine can without a container engine:
#   1. the build stage installs the same -dev packages as deploy/local/install-deps.sh;
#   2. the runtime stage installs every Debian package whose shared libraries the built binaries load
#      (ldd on each binary under $CRM_BUILD_DIR, default ./build, then dpkg -S on each library) and every
#      package it names exists in the apt lists;
#   3. the build context the Dockerfile sees (the repository minus Dockerfile.dockerignore) configures with
#      CMake (-DCRM_BUILD_TESTS=OFF, as in the image) and has a target for every binary the image copies;
#      a service whose folder does not exist yet is reported as a note, not a failure;
#   4. the image's binaries are the ones the Kubernetes manifests run, and its user is 10001;
#   5. its default command prints deploy/container/usage.txt (kept in the build context).
# tests/deploy/build_image.sh builds the image for real with podman and runs it.
# Exits non-zero and prints what failed. Needs cmake, dpkg and apt-cache (Debian); step 2 is skipped, with a
# note, when no binary has been built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dockerfile="$root/deploy/container/Dockerfile"
build="${CRM_BUILD_DIR:-$root/build}"
failures=()
fail() { echo "FAIL: $*" >&2; failures+=("$1"); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The packages an `apt-get install` in a given stage of the Dockerfile names.
stage_packages() {  # stage_packages <stage name>
  awk -v stage="$1" '
    /^FROM / { cur = ($0 ~ (" AS " stage "$")) ; next }
    cur && /apt-get install/ { inst = 1 }
    cur && inst {
      line = $0; sub(/#.*/, "", line)
      n = split(line, w, /[[:space:]\\]+/)
      for (i = 1; i <= n; i++) if (w[i] ~ /^[a-z0-9][a-z0-9+.-]+$/ && w[i] != "apt-get" && w[i] != "install" && w[i] != "run" && w[i] != "rm" && w[i] != "update" && w[i] != "env") print w[i]
      if (line !~ /\\[[:space:]]*$/ || line ~ /&&[[:space:]]*rm /) inst = 0
    }' "$dockerfile" | grep -v -e '^-' -e '^DEBIAN_FRONTEND' | sort -u
}

# 1. Build stage = install-deps.sh's build packages.
echo "== build-stage packages match deploy/local/install-deps.sh"
stage_packages build >"$tmp/build-stage"
sed -n '/^packages=(/,/)/p' "$root/deploy/local/install-deps.sh" | tr -s ' ()\n' '\n' | grep -E '^[a-z0-9][a-z0-9+.-]+$' |
  grep -v '^packages=' | sort -u >"$tmp/install-deps"
if ! diff "$tmp/install-deps" "$tmp/build-stage" >"$tmp/diff1"; then
  cat "$tmp/diff1" >&2
  fail "build-stage packages" "(< only in install-deps.sh, > only in the Dockerfile's build stage)"
fi

# 2. Runtime stage covers every shared library.
echo "== runtime-stage packages cover the binaries' shared libraries"
stage_packages runtime >"$tmp/runtime-stage"
if [[ ! -s "$tmp/runtime-stage" ]]; then fail "runtime packages" "no apt-get install found in the runtime stage"; fi
binaries=()
for dir in "$build"/services/*/; do
  name=$(basename "$dir" | tr _ -)
  [[ -x "$dir/$name" && -f "$dir/$name" ]] && binaries+=("$dir/$name")
done
if ((${#binaries[@]} == 0)); then
  echo "NOTE: no binary under $build/services (build first: deploy/local/build.sh); shared libraries not checked"
else
  : >"$tmp/needed"
  for b in "${binaries[@]}"; do
    if ldd "$b" | grep -q "not found"; then fail "ldd $(basename "$b")" "$(ldd "$b" | grep "not found")"; fi
    ldd "$b" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' >>"$tmp/needed"
  done
  sort -u "$tmp/needed" | while read -r lib; do
    pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true)
    pkg=${pkg%%:*}
    echo "${pkg:-UNKNOWN($lib)}"
  done | sort -u >"$tmp/needed-packages"
  # In debian:bookworm-slim already (Essential: yes), so the runtime stage need not name them.
  essential="libc6"
  while read -r pkg; do
    if [[ "$pkg" == UNKNOWN* ]]; then fail "runtime packages" "no Debian package owns ${pkg#UNKNOWN}"; continue; fi
    if grep -qx "$pkg" <<<"$essential"; then continue; fi
    if ! grep -qx "$pkg" "$tmp/runtime-stage"; then
      fail "runtime packages" "the binaries load a library of $pkg, which the runtime stage does not install"
    fi
  done <"$tmp/needed-packages"
  echo "   $(wc -l <"$tmp/needed-packages") packages needed by ${#binaries[@]} binaries: $(tr '\n' ' ' <"$tmp/needed-packages")"
fi
while read -r pkg; do
  if ! apt-cache show "$pkg" >/dev/null 2>&1; then
    fail "runtime packages" "$pkg (runtime stage) is not a known Debian package here (apt-get update first?)"
  fi
done <"$tmp/runtime-stage"

# 3. The build context configures, and has a target per binary.
echo "== the Docker build context configures with -DCRM_BUILD_TESTS=OFF"
services=$(sed -n 's/^ARG CRM_SERVICES="\(.*\)"$/\1/p' "$dockerfile")
if [[ -z "$services" ]]; then fail "CRM_SERVICES" "no ARG CRM_SERVICES=\"...\" in the Dockerfile"; fi
python3 - "$root" "$root/deploy/container/Dockerfile.dockerignore" "$tmp/context" <<'PY'
import fnmatch, os, shutil, sys
root, ignore_file, out = sys.argv[1:]
patterns = []  # (pattern, excludes): a "!pattern" brings back what an earlier one left out
for line in open(ignore_file):
    line = line.strip()
    if line and not line.startswith("#"):
        excludes = not line.startswith("!")
        patterns.append((line.lstrip("!").rstrip("/"), excludes))
def matches(p, rel):
    if p.startswith("**/"):
        return any(fnmatch.fnmatch(part, p[3:]) for part in rel.split("/"))
    return fnmatch.fnmatch(rel, p)
def ignored(rel):  # as Docker: the last pattern that matches decides
    result = False
    for p, excludes in patterns:
        if matches(p, rel):
            result = excludes
    return result
for dirpath, dirnames, filenames in os.walk(root):
    rel_dir = os.path.relpath(dirpath, root)
    rel_dir = "" if rel_dir == "." else rel_dir
    dirnames[:] = [d for d in dirnames if not ignored(os.path.join(rel_dir, d) if rel_dir else d)]
    for f in filenames:
        rel = os.path.join(rel_dir, f) if rel_dir else f
        if ignored(rel):
            continue
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(root, rel), dst)
PY
if ! cmake -S "$tmp/context" -B "$tmp/cmake" -DCMAKE_BUILD_TYPE=Release -DCRM_BUILD_TESTS=OFF >"$tmp/cmake.log" 2>&1; then
  tail -n 30 "$tmp/cmake.log" >&2
  fail "cmake configure" "the build context (repository minus Dockerfile.dockerignore) does not configure"
else
  cmake --build "$tmp/cmake" --target help >"$tmp/targets"
  for s in $services; do
    if grep -q "^\.\.\. $s\$" "$tmp/targets"; then continue; fi
    folder="services/$(tr - _ <<<"$s")"
    if [[ ! -d "$root/$folder" ]]; then
      rest=$(tr ' ' '\n' <<<"$services" | grep -vx "$s" | tr '\n' ' ')
      echo "NOTE: $folder does not exist yet: until it does, build the image with --build-arg CRM_SERVICES=\"${rest% }\""
    else
      fail "target $s" "$folder exists but CMake has no target $s (the image copies build/$folder/$s)"
    fi
  done
fi

# 4. Same binaries and user as the Kubernetes manifests.
echo "== the image matches the Kubernetes manifests"
for s in $services; do
  if ! grep -rqs "/usr/local/bin/$s\"" "$root/deploy/k8s/base/"; then
    fail "manifests" "no manifest in deploy/k8s/base runs /usr/local/bin/$s"
  fi
done
for f in "$root"/deploy/k8s/base/*.yaml; do
  { grep -o '/usr/local/bin/[a-z-]*' "$f" || true; } | while read -r cmd; do
    if ! grep -qw "${cmd#/usr/local/bin/}" <<<"$services"; then echo "$cmd"; fi
  done
done >"$tmp/unknown-cmds"
if [[ -s "$tmp/unknown-cmds" ]]; then fail "manifests" "manifests run binaries the image does not have: $(tr '\n' ' ' <"$tmp/unknown-cmds")"; fi
if ! grep -qx 'USER 10001:10001' "$dockerfile"; then fail "user" "the runtime stage does not end as USER 10001:10001"; fi

# 5. Run without a command, the image prints its usage (deploy/container/usage.txt, in the build context) and
#    exits 0; tests/deploy/build_image.sh runs it for real.
echo "== the default command prints the usage"
if ! grep -qx 'CMD \["/bin/cat", "/usr/local/share/crm/usage.txt"\]' "$dockerfile"; then
  fail "CMD" "the image's default command is not to print /usr/local/share/crm/usage.txt"
fi
if [[ ! -f "$tmp/context/deploy/container/usage.txt" ]]; then
  fail "usage" "deploy/container/usage.txt is not in the build context (Dockerfile.dockerignore)"
elif ! grep -q '^Binaries (/usr/local/bin): @BINARIES@$' "$tmp/context/deploy/container/usage.txt"; then
  fail "usage" "deploy/container/usage.txt has no line 'Binaries (/usr/local/bin): @BINARIES@' for the build to fill in"
fi

if ((${#failures[@]})); then
  echo "check_container: FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "check_container: OK"
