#!/usr/bin/env bash
# Runs every fuzz harness for SECONDS each (default 60) and prints one line
# per harness: "name: N execs, M exec/s, crashes: K". Exits non-zero when
# any harness crashed (or could not be built or run).
#
#   tests/fuzz/run.sh [SECONDS]
#
# Builds the harnesses first (CC=clang, -Dfuzz=true) in $FUZZ_BUILD_DIR
# (default: build-fuzz at the top of the checkout). Each harness starts
# from a copy of its seeds (tests/fuzz/corpus/<name>/) plus its regression
# inputs (tests/fuzz/regressions/<name>/); the checked-in corpus is never
# modified. A crashing input is kept in $FUZZ_BUILD_DIR/fuzz-artifacts/<name>/
# with the fuzzer's log: replay it with
#   $FUZZ_BUILD_DIR/tests/fuzz/fuzz_<name> FILE
# and, once fixed, add it to tests/fuzz/regressions/<name>/.
#
# Environment: FUZZ_HARNESSES (space-separated names, default all),
# FUZZ_JOBS (harnesses run at once, default 1), FUZZ_FLAGS (extra libFuzzer
# options).
set -uo pipefail

secs="${1:-60}"
case "$secs" in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
names="${FUZZ_HARNESSES:-npy index corrector record wal pairs_file parse base64}"
jobs="${FUZZ_JOBS:-1}"

# --- build -------------------------------------------------------------------
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$root" -Dfuzz=true >"$build.setup.log" 2>&1 || {
    cat "$build.setup.log" >&2; echo "fuzz build: meson setup failed" >&2; exit 2; }
  rm -f "$build.setup.log"
elif ! grep -q 'fuzz_npy' "$build/build.ninja"; then
  meson configure "$build" -Dfuzz=true >/dev/null || {
    echo "fuzz build: cannot enable -Dfuzz=true in $build" >&2; exit 2; }
fi
targets=()
for n in $names; do targets+=("tests/fuzz/fuzz_$n"); done
ninja -C "$build" "${targets[@]}" >"$build/fuzz-build.log" 2>&1 || {
  cat "$build/fuzz-build.log" >&2; echo "fuzz build failed" >&2; exit 2; }

# --- scratch space (tmpfs when there is one: the log harness syncs) ------------
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  work="$(mktemp -d /dev/shm/freshd-fuzz.XXXXXX)"
else
  work="$(mktemp -d "${TMPDIR:-/tmp}/freshd-fuzz.XXXXXX")"
fi
trap 'rm -rf "$work"' EXIT
artifacts="$build/fuzz-artifacts"

# Runs one harness; writes its summary line to $work/<name>.line.
run_one() {
  local name="$1" dir="$work/$1" bin="$build/tests/fuzz/fuzz_$1"
  local log rc execs rate crashes dict=()
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  log="$dir/log"
  [ -d "$here/corpus/$name" ] && cp -r "$here/corpus/$name/." "$dir/corpus/"
  [ -d "$here/regressions/$name" ] && cp -r "$here/regressions/$name/." "$dir/corpus/"
  [ -f "$here/$name.dict" ] && dict=("-dict=$here/$name.dict")
  # shellcheck disable=SC2086
  TMPDIR="$dir/tmp" "$bin" "$dir/corpus" "${dict[@]}" \
    -max_total_time="$secs" -print_final_stats=1 -timeout=20 \
    -rss_limit_mb=4096 -artifact_prefix="$dir/artifacts/" ${FUZZ_FLAGS:-} \
    >"$log" 2>&1
  rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  crashes="$(find "$dir/artifacts" -type f | wc -l)"
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # died without an artifact (e.g. a failed start)
  fi
  if [ "$crashes" -gt 0 ]; then
    rm -rf "${artifacts:?}/$name"
    mkdir -p "$artifacts/$name"
    cp "$dir/artifacts/." "$artifacts/$name/" -r 2>/dev/null
    cp "$log" "$artifacts/$name/fuzzer.log"
  fi
  echo "$name: ${execs:-0} execs, ${rate:-0} exec/s, crashes: $crashes" \
    >"$work/$name.line"
}

running=0
for n in $names; do
  run_one "$n" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

status=0
for n in $names; do
  if [ -f "$work/$n.line" ]; then
    cat "$work/$n.line"
    grep -q 'crashes: 0$' "$work/$n.line" || status=1
  else
    echo "$n: did not run, crashes: 1"
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "crashing inputs and logs: $artifacts/<name>/" >&2
  for n in $names; do
    if [ -f "$artifacts/$n/fuzzer.log" ] && ! grep -q 'crashes: 0$' "$work/$n.line" 2>/dev/null; then
      echo "--- $n (end of log)" >&2
      tail -n 30 "$artifacts/$n/fuzzer.log" >&2
    fi
  done
fi
exit "$status"
