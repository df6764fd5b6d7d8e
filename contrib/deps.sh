#!/usr/bin/env bash
# The Debian 12 packages qmproxy needs to build, test and demonstrate, in
# one place.  Sourced by tests/run.sh, contrib/demo.sh and .ci/run:
#   ensure_deps        install what is missing (as root), else say what is
#   deps.sh --list     print the package names
QMPROXY_DEPS=(
  build-essential cmake pkg-config
  libevent-dev libjson-c-dev libxml2-dev check
  libedit-dev   # qmproxyctl's shell
  qemu-system-x86 qemu-utils
  python3 socat
  # qmproxyctl's terminal tests run it inside tmux; chain --dot is drawn
  # with Graphviz in the tests and for docs/; its bash completion is
  # tested with bash-completion's helpers
  tmux graphviz bash-completion
  # libFuzzer targets (tests/fuzz/run.sh): clang and its libFuzzer
  clang libfuzzer-14-dev
  # QEMU's own iotests (tests/iotests): the suite comes from Debian's
  # source package (dpkg-source)
  dpkg-dev xz-utils
  # real libvirt for tests/integration/test_libvirt.py, started there
  # without systemd (not libvirt-daemon-system: it pulls in systemd)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  # man pages (scdoc builds them, mandoc lints them, man renders them);
  # systemd for systemd-analyze and systemd-socket-activate (the units'
  # tests; no systemd as PID 1 needed); the .deb (contrib/build-deb.sh)
  scdoc mandoc man-db systemd debhelper lintian
  # the tests across hosts: network namespaces (ip netns), and the
  # certificates of NBD over TLS (certtool)
  iproute2 gnutls-bin
  # --metrics: promtool checks a scrape, a real Prometheus scrapes the
  # proxy in tests/integration/test_metrics.py
  prometheus
)

missing_deps() {
  local p
  for p in "${QMPROXY_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

ensure_deps() {
  local missing
  missing=$(missing_deps | tr '\n' ' ')
  [ -z "${missing// }" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "qmproxy needs these Debian packages: $missing" >&2
    echo "install them as root: apt-get install -y $missing" >&2
    return 1
  fi
  echo "installing: $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    --list) printf '%s\n' "${QMPROXY_DEPS[@]}" ;;
    *) ensure_deps ;;
  esac
fi
