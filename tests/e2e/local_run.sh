# Sourced by the e2e scripts that start the README's local run (deploy/local/run.sh) in the background.
# Needs $root, $build and $tmp set; defines run_pid, fail() (prints run.sh's last lines) and
#   start_local_run [run.sh arguments...]    starts it with --data "$tmp/data" and waits until it reports the
#                                            backend running (its output in $tmp/run.out)
#   stop_local_run                           SIGTERM and wait (call it from the script's EXIT trap)
run_pid=""
fail() { echo "FAIL: $*" >&2; echo "--- run.sh output:" >&2; tail -n 30 "$tmp/run.out" >&2 || true; exit 1; }

start_local_run() {
  CRM_BUILD_DIR="$build" "$root/deploy/local/run.sh" --data "$tmp/data" "$@" >"$tmp/run.out" 2>&1 &
  run_pid=$!
  for _ in $(seq 1 600); do
    grep -q "Ctrl-C stops everything" "$tmp/run.out" && return 0
    kill -0 "$run_pid" 2>/dev/null || fail "run.sh exited"
    sleep 0.5
  done
  fail "run.sh did not report the backend running"
}

stop_local_run() {
  if [[ -n "$run_pid" ]]; then
    kill -TERM "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
}
