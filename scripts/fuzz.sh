#!/usr/bin/env bash
# Builds the libFuzzer targets (debug, -sanitize=fuzzer,address, scratch path .build-fuzz) and runs each for
# SECONDS (default 60) on a temporary copy of its seed corpus fuzz/corpus/<Target>, one after the other.
# Nothing is written into the repository. Exits non-zero when a target crashes or breaks an invariant, after
# printing the saved crash input and the first lines of the sanitizer's report (the temp directory is then kept).
#
# Usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. bash scripts/fuzz.sh 120 FuzzWAL FuzzLZ4
# Extra libFuzzer flags: FUZZ_FLAGS="-dict=... -jobs=1" bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

all=(FuzzWAL FuzzLZ4 FuzzStreamRecord FuzzReplicaURL FuzzConfig FuzzShellWords FuzzS3XML)
seconds=${1:-60}
[ $# -gt 0 ] && shift
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: ${all[*]})" >&2
  exit 64
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
for t in "${targets[@]}"; do
  if [ ! -d "fuzz/corpus/$t" ]; then
    echo "unknown fuzz target $t (targets: ${all[*]})" >&2
    exit 64
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/launcher-fuzz.XXXXXX")
keep=0
cleanup() { if [ "$keep" = 0 ]; then rm -rf "$work"; fi; }
trap cleanup EXIT

# Debug on purpose: optimised builds fold away the comparisons libFuzzer needs (TESTING.md §8.1).
for t in "${targets[@]}"; do
  echo "== building $t"
  if ! swift build -c debug --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address --product "$t" \
      >"$work/build-$t.log" 2>&1; then
    grep -v "Cannot export local symbol" "$work/build-$t.log" | tail -40
    echo "fuzz: build of $t failed" >&2
    exit 1
  fi
done

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$work/$t-corpus"
  artifacts="$work/$t-artifacts/"
  cp -r "fuzz/corpus/$t" "$corpus"
  mkdir -p "$artifacts"
  log="$work/$t.log"
  echo "== fuzzing $t for ${seconds}s"
  set +e
  # The Swift backtracer would wait for a debugger after a trap; libFuzzer reports the crash itself.
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:${ASAN_OPTIONS:-} \
    /usr/bin/time -f "%U %S" -o "$work/$t.time" \
    ".build-fuzz/debug/$t" -max_total_time="$seconds" -max_len=8192 -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" ${FUZZ_FLAGS:-} "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  cpu=$(awk 'NF==2 && $1 ~ /^[0-9.]+$/ { c = $1 + $2 } END { if (c != "") printf "%.0f", c }' "$work/$t.time" 2>/dev/null || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    summary+=("$(printf '%-18s %6ss cpu %8s execs  ok' "$t" "${cpu:-?}" "${execs:-?}")")
  else
    failed+=("$t")
    keep=1
    summary+=("$(printf '%-18s %6ss cpu %8s execs  FAILED (exit %s)' "$t" "${cpu:-?}" "${execs:-?}" "$rc")")
    echo "---- $t failed (exit $rc); crash input(s):"
    ls -1 "$artifacts"* 2>/dev/null || echo "(none saved; log: $log)"
    echo "---- first lines of the report:"
    grep -v "Cannot export local symbol" "$log" \
      | grep -m1 -A14 -E "ERROR: (AddressSanitizer|libFuzzer)|Fatal error|Precondition failed|fuzz invariant|Assertion failed" \
      || tail -20 "$log"
    echo "---- full log: $log"
  fi
done

echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; inputs and logs kept in $work" >&2
  echo "reproduce: SWIFT_BACKTRACE=enable=no .build-fuzz/debug/<Target> <crash file>" >&2
  exit 1
fi
