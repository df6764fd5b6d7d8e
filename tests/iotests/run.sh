#!/usr/bin/env bash
# QEMU's own iotests, directly and through qmproxy.
#
#   tests/iotests/run.sh [--qemu 7.2|10.0] [--direct|--proxied] [--qmproxy PATH] [-j N]
#                        [--timeout SECONDS] [--work DIR] [--traffic-log]
#                        [--reuse-direct SECONDS] [TESTS...]
#
# --qemu (default $QMPROXY_IOTESTS_QEMU_VERSION, else 7.2) picks the QEMU
# and its suite: 7.2 is Debian 12's (/usr/bin), 10.0 the one
# contrib/qemu10.sh unpacks from bookworm-backports, with its own qemu-img,
# qemu-io, qemu-nbd and qemu-storage-daemon and its own iotests.  A
# tests.list line with a third field "qemu=V" runs only against QEMU V.
#
# Without --direct/--proxied, every test runs first directly (the chosen
# QEMU, through the wrapper only for -accel qtest) to learn which pass on
# this machine, then through qmproxy; the run fails if a test that passes
# directly fails through qmproxy.  --direct or --proxied runs one mode only
# (and fails on any failure).  TESTS are names as in tests.list ("030",
# "tests/image-fleecing", "raw:045"); default: every test in tests.list.
#
# Direct verdicts are also kept in the suite's cache
# (CACHE/direct-VERSION.results); --reuse-direct SECONDS takes a test's
# direct verdict from there when it is at most that old, instead of running
# it directly again (an ASan run after a release run on the same machine).
#
# A proxied test also fails when qmproxy leaves a sanitizer report, exits
# with a status other than 0, or outlives QEMU (the wrapper's guard had to
# kill it).  Build qmproxy with -DQMPROXY_SANITIZE=ON and pass it with
# --qmproxy to run the suite under ASan/UBSan.
#
# The last line is "N passed, M failed" (the proxied results when both
# modes run).  Everything a test left (its output, .out.bad, qmproxy's
# logs) is kept under the work folder (default: a new folder in /tmp, or
# $QMPROXY_IOTESTS_WORK).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

mode=both
qemu=${QMPROXY_IOTESTS_QEMU_VERSION:-7.2}
qmproxy=
jobs=2
timeout_s=300
work=${QMPROXY_IOTESTS_WORK:-}
traffic=
reuse=0
tests=()
while [ $# -gt 0 ]; do
  case $1 in
  --qemu) qemu=$2; shift ;;
  --qemu=*) qemu=${1#*=} ;;
  --direct) mode=direct ;;
  --proxied) mode=proxied ;;
  --qmproxy) qmproxy=$2; shift ;;
  --qmproxy=*) qmproxy=${1#*=} ;;
  -j) jobs=$2; shift ;;
  --timeout) timeout_s=$2; shift ;;
  --work) work=$2; shift ;;
  --traffic-log) traffic=1 ;;
  --reuse-direct) reuse=$2; shift ;;
  -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
  -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  *) tests+=("$1") ;;
  esac
  shift
done
case $jobs in ''|*[!0-9]*|0) echo "run.sh: -j wants a positive number" >&2; exit 2 ;; esac
case $reuse in ''|*[!0-9]*) echo "run.sh: --reuse-direct wants seconds" >&2; exit 2 ;; esac
case $timeout_s in ''|*[!0-9]*|0) echo "run.sh: --timeout wants seconds" >&2; exit 2 ;; esac

if [ "$mode" != direct ]; then
  [ -n "$qmproxy" ] || qmproxy=$root/build/qmproxy
  [ -x "$qmproxy" ] || { echo "run.sh: no qmproxy at $qmproxy (build it, or --qmproxy PATH)" >&2; exit 2; }
  qmproxy=$(cd "$(dirname "$qmproxy")" && pwd)/$(basename "$qmproxy")
fi

case $qemu in 7.2|10.0) ;; *) echo "run.sh: --qemu wants 7.2 or 10.0" >&2; exit 2 ;; esac
src=$("$here/setup.sh" --qemu "$qemu") || { echo "run.sh: setup failed" >&2; exit 2; }
cache=$(dirname "$src")
bios=$cache/halt.bin
iotests=$src/tests/qemu-iotests

# the list: "FORMAT NAME" lines of tests.list unless named
declare -a run_fmt=() run_name=()
add_test() {   # add_test SPEC  ("030", "raw:045", "tests/image-fleecing")
  local spec=$1 fmt=qcow2 name line
  case $spec in *:*) fmt=${spec%%:*}; name=${spec#*:} ;; *) name=$spec ;; esac
  if [ "$spec" = "$name" ]; then
    # a bare name takes the format tests.list gives it
    line=$(awk -v n="$name" '$1 !~ /^#/ && $2 == n { print $1; exit }' "$here/tests.list")
    [ -n "$line" ] && fmt=$line
  fi
  [ -e "$iotests/$name" ] || { echo "run.sh: no test $name in $iotests" >&2; exit 2; }
  run_fmt+=("$fmt"); run_name+=("$name")
}
if [ ${#tests[@]} -eq 0 ]; then
  while read -r fmt name only _; do
    case $fmt in ''|'#'*) continue ;; esac
    case $only in qemu=*) [ "${only#qemu=}" = "$qemu" ] || continue ;; esac
    add_test "$fmt:$name"
  done <"$here/tests.list"
else
  for t in "${tests[@]}"; do add_test "$t"; done
fi

if [ -z "$work" ]; then work=$(mktemp -d /tmp/qmproxy-iotests-run.XXXXXX); fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
echo "iotests: QEMU $(cat "$src/VERSION" 2>/dev/null), suite in $src"
echo "iotests: work folder $work"

if [ "$qemu" = 10.0 ]; then
  bin=$("$root/contrib/qemu10.sh") || { echo "run.sh: contrib/qemu10.sh failed" >&2; exit 2; }
else
  bin=/usr/bin
fi
export QEMU_PROG=$here/qemu-wrapper
export QEMU_IMG_PROG=$bin/qemu-img QEMU_IO_PROG=$bin/qemu-io
export QEMU_NBD_PROG=$bin/qemu-nbd QSD_PROG=$bin/qemu-storage-daemon
export QMPROXY_IOTESTS_QEMU=$bin/qemu-system-x86_64
export QMPROXY_IOTESTS_BIOS=$bios
export PYTHONPATH=$src/python${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1
unset QEMU_OPTIONS IMGOPTS

# one test in one mode; writes its verdict to DIR/result:
#   "pass|fail|notrun SECONDS WHY"
run_one() {  # run_one MODE FORMAT NAME
  local m=$1 fmt=$2 name=$3 d t0 rc verdict why el out sock
  d=$work/$m/${fmt}-${name//\//_}
  rm -rf "$d"; mkdir -p "$d/test" "$d/log"
  # sockets under a short name: a Unix socket path holds 107 bytes, and
  # the work folder (a build tree) can be deep
  sock=$(mktemp -d /tmp/qmpio.XXXXXX) || return 1
  t0=$(date +%s.%N)
  (
    cd "$iotests" || exit 2
    export TEST_DIR=$d/test SOCK_DIR=$sock TMPDIR=$sock
    export QMPROXY_IOTESTS_MODE=$m QMPROXY_IOTESTS_LOGDIR=$d/log
    export QMPROXY_IOTESTS_QMPROXY=$qmproxy
    [ -n "$traffic" ] && export QMPROXY_IOTESTS_TRAFFIC=1
    export QMPROXY_IOTESTS_SANITIZER_OPTIONS=detect_leaks=1:abort_on_error=0:print_stacktrace=1
    # check names the tests of tests/ without their folder
    exec timeout -k 10 "$timeout_s" ./check "-$fmt" -file "${name#tests/}"
  ) >"$d/check.out" 2>&1 </dev/null
  rc=$?
  rm -rf "$sock"
  el=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  out=$d/check.out
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    verdict=fail; why="timed out after ${timeout_s}s"
  elif grep -q "^Not run: " "$out"; then
    verdict=notrun
    why=$(grep -m1 -E "^${name#tests/}[[:space:]].*not run" "$out" | sed -E 's/.*\.\.\.[[:space:]]*//')
    [ -n "$why" ] || why="not run"
  elif [ $rc -eq 0 ] && grep -q "^Passed all 1 iotests" "$out"; then
    verdict=pass; why=
  else
    verdict=fail
    why=$(grep -m1 -E "^${name#tests/}[[:space:]]+fail" "$out" | sed -E 's/.*(failed|output mismatch)/\1/')
    [ -n "$why" ] || why="check exited $rc"
  fi
  if [ "$m" = proxied ]; then
    local f bad=()
    for f in "$d"/log/sanitizer-*; do
      [ -e "$f" ] && bad+=("sanitizer report $(basename "$f")")
    done
    for f in "$d"/log/qmproxy-*.log; do
      [ -e "$f" ] && grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$f" &&
        bad+=("sanitizer report in $(basename "$f")")
    done
    for f in "$d"/log/status-*; do
      [ -e "$f" ] || continue
      [ "$(cat "$f")" = 0 ] || bad+=("qmproxy ${f##*/status-} exited $(cat "$f")")
    done
    [ -s "$d/log/guard.log" ] && bad+=("qmproxy outlived QEMU: $(head -1 "$d/log/guard.log")")
    if [ ${#bad[@]} -gt 0 ]; then
      # what qmproxy itself did wrong, one a line: never put down to a race
      printf '%s\n' "${bad[@]}" >"$d/qmproxy-faults"
      [ "$verdict" = fail ] && why="$why; " || why=
      verdict=fail
      why="$why$(IFS=';'; echo "${bad[*]}")"
    fi
  fi
  echo "$verdict $el $why" >"$d/result"
  printf '%-7s %-7s %-34s %6ss %s\n' "$m" "$verdict" "$fmt:$name" "$el" "$why"
}

# run MODE over the indices given, JOBS at a time; prints one line a test
run_mode() {  # run_mode MODE INDEX...
  local m=$1; shift
  local i running=0 pids=()
  for i in "$@"; do
    run_one "$m" "${run_fmt[i]}" "${run_name[i]}" &
    pids+=($!)
    running=$((running + 1))
    if [ $running -ge "$jobs" ]; then
      wait -n; running=$((running - 1))
    fi
  done
  wait
}

verdict_of() {  # no result file (the runner itself died) is a failure
  local r
  r=$(awk '{print $1}' "$work/$1/${run_fmt[$2]}-${run_name[$2]//\//_}/result" 2>/dev/null)
  echo "${r:-fail}"
}

all=()
for ((i = 0; i < ${#run_name[@]}; i++)); do all+=("$i"); done

t_start=$SECONDS
proxied_set=("${all[@]}")
if [ "$mode" != proxied ]; then
  t0=$SECONDS
  # direct verdicts learned recently enough on this machine
  baseline=$cache/direct-$(basename "$src").results
  declare -A known=()
  if [ "$reuse" -gt 0 ] && [ -f "$baseline" ]; then
    now=$(date +%s)
    while read -r key v when; do
      [ $((now - when)) -le "$reuse" ] && known[$key]=$v
    done <"$baseline"
  fi
  fresh=()
  for i in "${all[@]}"; do
    key=${run_fmt[i]}:${run_name[i]}
    if [ -n "${known[$key]:-}" ]; then
      d=$work/direct/${run_fmt[i]}-${run_name[i]//\//_}
      mkdir -p "$d"; echo "${known[$key]} 0 (from $baseline)" >"$d/result"
    else
      fresh+=("$i")
    fi
  done
  [ ${#fresh[@]} -lt ${#all[@]} ] &&
    echo "direct: $(( ${#all[@]} - ${#fresh[@]} )) verdicts reused from $baseline"
  [ ${#fresh[@]} -gt 0 ] && run_mode direct "${fresh[@]}"
  # remember them (merged with the others, atomically)
  {
    now=$(date +%s)
    [ -f "$baseline" ] && cat "$baseline"
    for i in "${fresh[@]}"; do
      echo "${run_fmt[i]}:${run_name[i]} $(verdict_of direct "$i") $now"
    done
  } | awk '{ last[$1] = $0 } END { for (k in last) print last[k] }' | sort >"$baseline.$$" &&
    mv -f "$baseline.$$" "$baseline"
  dp=0; df=0; dn=0; proxied_set=()
  for i in "${all[@]}"; do
    case $(verdict_of direct "$i") in
    pass) dp=$((dp + 1)); proxied_set+=("$i") ;;
    notrun) dn=$((dn + 1)) ;;
    *) df=$((df + 1)) ;;
    esac
  done
  echo "direct: $dp passed, $df failed, $dn not run in $((SECONDS - t0))s"
  if [ "$mode" = direct ]; then
    echo "$dp passed, $df failed"
    [ $df -eq 0 ]; exit
  fi
fi

t0=$SECONDS
pp=0; pf=0; pn=0; failed=(); flaky=()
if [ ${#proxied_set[@]} -gt 0 ]; then
  run_mode proxied "${proxied_set[@]}"
fi
# A test whose output differed through qmproxy runs once more, alone:
# some of the suite's tests race with QEMU's exit on a loaded machine
# (qemu-img finding the image still locked, a postcopy switch missed),
# directly too.  It counts as passed only if it passes then; its first
# run is kept beside it (DIR.first) and named below.  A test where qmproxy
# itself went wrong (a sanitizer report, an exit status, outliving QEMU:
# run_one lists them in DIR/qmproxy-faults) is never run again.
again=()
for i in "${proxied_set[@]}"; do
  d=$work/proxied/${run_fmt[i]}-${run_name[i]//\//_}
  if [ "$(verdict_of proxied "$i")" = fail ] && [ ! -e "$d/qmproxy-faults" ]; then
    again+=("$i")
  fi
done
for i in "${again[@]}"; do
  d=$work/proxied/${run_fmt[i]}-${run_name[i]//\//_}
  rm -rf "$d.first"; mv "$d" "$d.first"
  run_one proxied "${run_fmt[i]}" "${run_name[i]}"
  [ "$(verdict_of proxied "$i")" = pass ] && flaky+=("${run_fmt[i]}:${run_name[i]}")
done
for i in "${proxied_set[@]}"; do
  case $(verdict_of proxied "$i") in
  pass) pp=$((pp + 1)) ;;
  notrun) pn=$((pn + 1)) ;;
  *) pf=$((pf + 1)); failed+=("${run_fmt[i]}:${run_name[i]}") ;;
  esac
done
echo "proxied ($qmproxy): $pp passed, $pf failed, $pn not run in $((SECONDS - t0))s"
[ $pf -gt 0 ] && echo "failed through qmproxy: ${failed[*]} (details under $work/proxied)"
[ ${#flaky[@]} -gt 0 ] && echo "failed once through qmproxy, passed when run again alone: ${flaky[*]} (the first run under $work/proxied/*.first)"
echo "iotests: total $((SECONDS - t_start))s"
echo "$pp passed, $pf failed"
[ $pf -eq 0 ]
