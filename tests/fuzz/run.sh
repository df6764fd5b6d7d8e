#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan+UBSan) in build-fuzz/, seed their
# corpora from the project's recordings, replay the regression inputs, and
# run each target for a number of executions or seconds, one at a time.
#
#   tests/fuzz/run.sh [--runs N] [--seconds S] [TARGET...]
#
# TARGET is a name (fuzz_jsonstream or jsonstream); default: every target.
# Default: --seconds 20.  --runs N alone is still bounded in time, by
# --seconds 3600; with both, whichever comes first ends a target.  The
# corpora grow in build-fuzz/corpus/TARGET (kept between runs), logs go to
# build-fuzz/logs/TARGET.log, and anything found to
# build-fuzz/artifacts/TARGET/ (replay one with build-fuzz/tests/fuzz/TARGET
# FILE).  Prints, per target, the executions, executions per second,
# coverage (libFuzzer's cov and ft), the seconds it ran, what ended it
# (runs: the executions asked for were done; time: the time bound came
# first) and findings; exits non-zero if any target found a crash, leak or
# sanitizer report.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=../../contrib/deps.sh
. contrib/deps.sh
ensure_deps

runs=
seconds=
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs|--seconds)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] \
        || { echo "$1 takes a positive number, not '${2:-}'" >&2; exit 2; }
      if [ "$1" = --runs ]; then runs=$2; else seconds=$2; fi
      shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("fuzz_${1#fuzz_}"); shift ;;
  esac
done

# every run is bounded in time, a number of executions too if asked
if [ -z "$seconds" ]; then
  if [ -n "$runs" ]; then seconds=3600; else seconds=20; fi
fi
limit=(-max_total_time="$seconds")
[ -z "$runs" ] || limit+=(-runs="$runs")

build=build-fuzz
CC=clang cmake -S . -B "$build" -DQMPROXY_FUZZ=ON -DQMPROXY_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
bindir=$build/tests/fuzz
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do
    targets+=("$(basename "$f" .c)")
  done
fi

python3 tests/fuzz/seeds.py "$build/corpus" >/dev/null
# what was found and fixed must stay fixed
ctest --test-dir "$build" -L fuzz --output-on-failure >/dev/null \
  || { echo "fuzz regression inputs fail: ctest --test-dir $build -L fuzz" >&2; exit 1; }

# Searching runs without allocation stacks (malloc_context_size=0): saving
# one for every allocation was a third of fuzz_jsonstream's time.  Nothing
# is missed for it (ASan and LSan still see every error and every leak);
# a finding is replayed below with the stacks, for the report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/logs"
status=0
row='%-22s %12s %9s %7s %7s %7s %5s  %s\n'
# shellcheck disable=SC2059
printf "$row" target executions exec/s cov ft seconds ended findings
for t in "${targets[@]}"; do
  bin=$bindir/$t
  [ -x "$bin" ] || { echo "no such target: $t" >&2; exit 2; }
  corpus=$build/corpus/$t artifacts=$build/artifacts/$t/ log=$build/logs/$t.log
  mkdir -p "$corpus" "$artifacts"
  case "$t" in
    fuzz_chain|fuzz_statefile) opts=(-dict=tests/fuzz/chain.dict) ;;
    fuzz_policy_*|fuzz_snapshot_xml) opts=(-dict=tests/fuzz/xml.dict) ;;
    *) opts=(-dict=tests/fuzz/json.dict) ;;
  esac
  # libFuzzer raises its length limit as a run goes on, to 4 KB, and the
  # stream targets' time grows with it (fuzz_qmp fell from 5,000 exec/s to
  # 2,800, fuzz_jsonstream from 2,700 to 1,400).  A request's checks do
  # not depend on its size; a stream of 1,100 bytes still nests past
  # QEMU's limit of 1,024 and holds dozens of texts and errors.
  case "$t" in
    fuzz_qmp) opts+=(-max_len=512) ;;
    fuzz_jsonstream) opts+=(-max_len=1100) ;;
  esac
  rc=0
  start=$SECONDS
  "$bin" "${limit[@]}" "${opts[@]}" -timeout=25 \
    -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$artifacts" \
    "$corpus" >"$log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  ft=$( (grep -o 'ft: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  found=$(grep -hoE '(ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z -]+|runtime error: .*|fuzz invariant failed: .*)' "$log" | head -1 || true)
  ended=time
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    status=1 ended=found
    for a in "$artifacts"*; do
      [ -f "$a" ] || continue
      echo "== replayed with allocation stacks: $a" >>"$log"
      ASAN_OPTIONS=detect_leaks=1 "$bin" "$a" >>"$log" 2>&1 || true
    done
    found="${found:-exit status $rc} (log: $log; inputs: $(ls "$artifacts" | tr '\n' ' '))"
  elif [ -n "$runs" ] && [ "${execs:-0}" -ge "$runs" ]; then
    ended=runs
  fi
  # shellcheck disable=SC2059
  printf "$row" "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" \
    "$took" "$ended" "${found:-none}"
done
exit $status
