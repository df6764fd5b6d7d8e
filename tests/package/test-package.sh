#!/usr/bin/env bash
# The Debian package, end to end, on this machine (root): build it
# (contrib/build-deb.sh: dpkg-buildpackage, lintian without errors),
# install it with dpkg -i, check what an administrator would use (man
# pages through man, the units through systemd-analyze verify with the
# installed binary and pages, the unit's command line behind its socket,
# the libvirt wrapper, the completion), run contrib/demo.sh against the
# installed binaries, then purge it and check that nothing it installed
# is left.  ctest label "package" (slow: a full package build).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "test-package: needs root (dpkg -i)" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' qmproxy 2>/dev/null | grep 'installed' >/dev/null; then
  echo "test-package: a qmproxy package is installed already; not touching it" >&2
  exit 1
fi
work=$(mktemp -d /tmp/qmproxy-pkgtest.XXXXXX)
installed=
cleanup() {
  if [ -n "$installed" ]; then
    dpkg --purge qmproxy >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "== $*"; }

step "build the package"
"$root/contrib/build-deb.sh" --out "$work/deb"
deb=$(ls "$work"/deb/qmproxy_*.deb)

step "dpkg -i $(basename "$deb")"
installed=yes
dpkg -i "$deb"
dpkg -L qmproxy | sort >"$work/files"
for f in /usr/sbin/qmproxy /usr/bin/qmproxyctl /usr/libexec/qmproxy/qemu-wrapper \
         /lib/systemd/system/qmproxy@.service /lib/systemd/system/qmproxy@.socket \
         /usr/share/qmproxy/qmproxy.rng /usr/share/doc/qmproxy/examples/instance.conf \
         /usr/share/doc/qmproxy/examples/operator.xml \
         /usr/share/bash-completion/completions/qmproxyctl \
         /usr/share/man/man8/qmproxy.8.gz /usr/share/man/man5/qmproxy-policy.5.gz \
         /usr/share/man/man1/qmproxyctl.1.gz; do
  grep -qx "$f" "$work/files" || { echo "not in the package: $f" >&2; exit 1; }
  [ -e "$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
/usr/sbin/qmproxy --version
/usr/sbin/qmproxy --check-policy /usr/share/doc/qmproxy/examples/operator.xml
# the installed schema is the one built in: an example validates with it
if command -v xmllint >/dev/null; then
  xmllint --noout --relaxng /usr/share/qmproxy/qmproxy.rng \
    /usr/share/doc/qmproxy/examples/operator.xml
fi

step "man qmproxy, man qmproxyctl, man 5 qmproxy-policy"
[ "$(man -w qmproxy)" = /usr/share/man/man8/qmproxy.8.gz ]
[ "$(man -w qmproxyctl)" = /usr/share/man/man1/qmproxyctl.1.gz ]
[ "$(man -w 5 qmproxy-policy)" = /usr/share/man/man5/qmproxy-policy.5.gz ]
MANWIDTH=80 man qmproxy 2>"$work/man.err" | col -b >"$work/qmproxy.txt"
[ ! -s "$work/man.err" ] || { cat "$work/man.err" >&2; exit 1; }
grep -q '^SYSTEMD' "$work/qmproxy.txt"
grep -q -- '--listen systemd' "$work/qmproxy.txt" ||
  grep -q 'socket activation' "$work/qmproxy.txt"
MANWIDTH=80 man qmproxyctl | col -b | grep '^EXIT STATUS' >/dev/null
MANWIDTH=80 man 5 qmproxy-policy | col -b | grep '^NAME' >/dev/null
for page in /usr/share/man/man*/qmproxy*.gz; do
  lines=$(man -l "$page" 2>/dev/null | wc -l)
  [ "$lines" -ge 20 ] || { echo "man -l $page: $lines lines" >&2; exit 1; }
  echo "man -l $page: $lines lines"
done

step "the installed units (systemd-analyze verify, the installed man pages)"
"$root/tests/systemd-verify.sh" /lib/systemd/system /usr/sbin/qmproxy -

step "the unit's command line behind its socket (installed binary and units)"
(cd "$root/tests/integration" &&
 QMPROXY_BIN=/usr/sbin/qmproxy QMPROXY_UNIT_DIR=/lib/systemd/system \
 PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -v test_systemd.UnitCommandLine)

step "the libvirt wrapper passes other command lines to QEMU"
env -i PATH=/usr/bin:/bin HOME=/nonexistent /usr/libexec/qmproxy/qemu-wrapper -version |
  grep -q 'QEMU emulator version'

step "bash completion"
bash -c '. /usr/share/bash-completion/completions/qmproxyctl && complete -p qmproxyctl'

step "contrib/demo.sh against the installed files"
QMPROXY_PREFIX=/usr "$root/contrib/demo.sh" >"$work/demo.log" 2>&1 ||
  { tail -30 "$work/demo.log" >&2; exit 1; }
grep -q 'the installed qmproxy: /usr/sbin/qmproxy' "$work/demo.log"
tail -3 "$work/demo.log"

step "dpkg --purge: nothing left"
dpkg --purge qmproxy
installed=
if dpkg-query -W -f='${Status}' qmproxy 2>/dev/null | grep 'installed' >/dev/null; then
  echo "qmproxy still known to dpkg" >&2
  exit 1
fi
left=0
while read -r f; do
  # directories the package shared with others stay (/usr, /usr/share/man...)
  if [ -e "$f" ] && [ ! -d "$f" ]; then
    echo "left behind: $f" >&2
    left=1
  fi
done <"$work/files"
for d in /usr/libexec/qmproxy /usr/share/qmproxy /usr/share/doc/qmproxy /etc/qmproxy; do
  [ ! -e "$d" ] || { echo "left behind: $d" >&2; left=1; }
done
[ $left -eq 0 ]
echo "package test: built, lintian clean of errors, installed, used, purged clean"
