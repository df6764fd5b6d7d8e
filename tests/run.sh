#!/usr/bin/env bash
# Set up, build and run every qmproxy test: unit tests (Check) and
# integration tests against a real QEMU 7.2.
#
#   tests/run.sh              release build in build/
#   tests/run.sh --sanitize   ASan+UBSan build in build-asan/, same tests
#
# Installs missing Debian packages when run as root.  The last line is
# ctest's summary ("100% tests passed, 0 tests failed out of N").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../contrib/deps.sh
. contrib/deps.sh
ensure_deps

build=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
ctest_args=()
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan
  cmake_args+=(-DQMPROXY_SANITIZE=ON)
  # the .deb is built from the sources with Debian's flags: once is enough
  ctest_args+=(-LE package)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

# QEMU 10.0 beside Debian 12's 7.2, unpacked into a private prefix: the
# integration tests run against both (set QMPROXY_SKIP_QEMU10=1 to skip)
if [ -z "${QMPROXY_SKIP_QEMU10:-}" ]; then
  qemu10_bin=$(contrib/qemu10.sh)
  cmake_args+=(-DQMPROXY_QEMU10_BIN="$qemu10_bin")
  # and libvirt 11.3 driving it, in a mount namespace of its own (root)
  if [ "$(id -u)" -eq 0 ] && contrib/libvirt11.sh setup >/dev/null; then
    cmake_args+=(-DQMPROXY_LIBVIRT11=ON)
  fi
fi

cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 1200 "${ctest_args[@]}"
