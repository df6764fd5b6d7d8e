#!/bin/bash
# The systemd units as built, checked by systemd itself (no systemd as
# PID 1 needed): systemd-analyze verify loads qmproxy@vm1.service and
# qmproxy@vm1.socket, checks every directive, that ExecStart's program is
# executable and that the Documentation= man pages open (with the built
# pages on MANPATH); systemd-analyze security --offline rates the
# hardening and the exposure must stay below 3.0 ("OK").
#   systemd-verify.sh UNIT_DIR QMPROXY MAN_DIR
# MAN_DIR "-": the man pages are installed, man finds them itself.
set -euo pipefail
units=$1 qmproxy=$2 mandir=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the units name the installed qmproxy; point them at this build's
sed "s#^ExecStart=[^ ]*/qmproxy #ExecStart=$qmproxy #" \
  "$units/qmproxy@.service" >"$work/qmproxy@.service"
grep -q "^ExecStart=$qmproxy " "$work/qmproxy@.service"
cp "$units/qmproxy@.socket" "$work/"
manpath=
if [ "$mandir" != - ]; then
  for page in "$mandir"/*.[0-9]; do
    section=${page##*.}
    mkdir -p "$work/man/man$section"
    ln -s "$page" "$work/man/man$section/"
  done
  manpath=$work/man
fi
cd "$work"
# any complaint fails, also those verify only warns about (unknown keys)
complaints=$(env ${manpath:+MANPATH=$manpath} systemd-analyze verify \
  "$work/qmproxy@vm1.service" "$work/qmproxy@vm1.socket" 2>&1) ||
  { echo "$complaints" >&2; exit 1; }
[ -z "$complaints" ] || { echo "$complaints" >&2; exit 1; }
echo "systemd-analyze verify: qmproxy@vm1.service qmproxy@vm1.socket clean"
security=$(systemd-analyze security --offline=true --no-pager \
           "$work/qmproxy@vm1.service" 2>&1)
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' \
           <<<"$security")
[ -n "$exposure" ] || { echo "$security" >&2; exit 1; }
echo "systemd-analyze security: exposure $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e < 3.0) }' ||
  { echo "$security" >&2; echo "exposure $exposure is 3.0 or more" >&2; exit 1; }
