#!/usr/bin/env bash
# Get QEMU's own iotests (tests/qemu-iotests and python/ of Debian's
# source package, the version of the QEMU under test) and a halting BIOS
# image into a cache directory outside the source tree, reused when present.
#
#   tests/iotests/setup.sh [--qemu 7.2|10.0] [CACHE]
#                                       prints the ready source directory
#
# --qemu (default $QMPROXY_IOTESTS_QEMU_VERSION, else 7.2) picks the QEMU:
# 7.2 is Debian 12's installed one; 10.0 the one contrib/qemu10.sh unpacks
# from bookworm-backports (its source comes from bookworm-backports too).
#
# CACHE defaults to $QMPROXY_IOTESTS_CACHE, else /var/cache/qmproxy-iotests
# (root) or ${XDG_CACHE_HOME:-~/.cache}/qmproxy-iotests.  Layout:
#   CACHE/qemu-VERSION/{tests/qemu-iotests,python}   the suite
#   CACHE/halt.bin                                    the BIOS image
# Needs root only to add a deb-src entry when Debian's has none.
set -euo pipefail

qemu=${QMPROXY_IOTESTS_QEMU_VERSION:-7.2}
case ${1:-} in
  --qemu) qemu=${2:?setup.sh: --qemu wants 7.2 or 10.0}; shift 2 ;;
  --qemu=*) qemu=${1#*=}; shift ;;
esac
case $qemu in 7.2|10.0) ;; *) echo "setup.sh: --qemu wants 7.2 or 10.0, not $qemu" >&2; exit 2 ;; esac
cache=${1:-${QMPROXY_IOTESTS_CACHE:-}}
if [ -z "$cache" ]; then
  if [ "$(id -u)" -eq 0 ]; then cache=/var/cache/qmproxy-iotests
  else cache=${XDG_CACHE_HOME:-$HOME/.cache}/qmproxy-iotests; fi
fi
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

log() { echo "iotests-setup: $*" >&2; }

# --- the BIOS: 64 KiB mapped just below 4 GiB; the CPU starts at
# F000:FFF0, i.e. offset 0xFFF0 of the image.  There: cli; hlt; jmp back to
# the hlt (an NMI or SMI would wake it).  Everything else is hlt too.
make_bios() {
  local out=$1 tmp
  tmp=$(mktemp "$out.XXXXXX")
  # 0xF4 (hlt) everywhere, so a stray jump also halts
  head -c 65536 /dev/zero | tr '\0' '\364' >"$tmp"
  # FFF0: FA cli / F4 hlt / EB FD jmp -3 (back to the hlt)
  printf '\372\364\353\375' | dd of="$tmp" bs=1 seek=$((0xFFF0)) conv=notrunc status=none
  mv -f "$tmp" "$out"
}
bios=$cache/halt.bin
if [ ! -s "$bios" ] || [ "$(stat -c %s "$bios")" -ne 65536 ]; then
  make_bios "$bios"
  log "made $bios"
fi

# --- the version of the QEMU under test, whose source we want
suite=
if [ "$qemu" = 10.0 ]; then
  # the version of the packages contrib/qemu10.sh unpacked (their changelog)
  here=$(cd "$(dirname "$0")" && pwd)
  bin=$("$here/../../contrib/qemu10.sh") || { log "contrib/qemu10.sh failed"; exit 1; }
  ver=$(zcat "$(dirname "$bin")/usr/share/doc/qemu-system-x86/changelog.Debian.gz" 2>/dev/null |
        sed -n '1s/^qemu (\([^)]*\)).*/\1/p')
  [ -n "$ver" ] || { log "cannot read the version of QEMU 10 under $(dirname "$bin")"; exit 1; }
  suite=bookworm-backports
else
  ver=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || true)
  if [ -z "$ver" ]; then
    log "qemu-system-x86 is not installed"; exit 1
  fi
fi
upver=${ver#*:}                 # 7.2+dfsg-7+deb12u18, 10.0.2+ds-2+deb13u1~bpo12+1
src=$cache/qemu-$upver
if [ -f "$src/.complete" ]; then
  echo "$src"; exit 0
fi

# --- a deb-src twin of every Debian deb entry, if there is no deb-src yet
have_debsrc() {
  apt-get indextargets --format '$(CREATED_BY)' 2>/dev/null | grep -x Sources >/dev/null
}
if ! have_debsrc; then
  if [ "$(id -u)" -ne 0 ]; then
    log "no deb-src entry in apt's sources; run as root once to add one"; exit 1
  fi
  twin=/etc/apt/sources.list.d/qmproxy-deb-src.sources
  : >"$twin.tmp"
  # deb822 files: copy each stanza whose Types include deb and whose URIs
  # are Debian's, with Types: deb-src
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    [ "$f" = "$twin" ] && continue
    awk -v RS= -v ORS='\n\n' '
      /(^|\n)Types:[^\n]*deb([ \n]|$)/ && /(^|\n)URIs:[^\n]*debian/ {
        n = split($0, l, "\n"); out = ""
        for (i = 1; i <= n; i++) {
          if (l[i] ~ /^#/) continue
          if (l[i] ~ /^Types:/) l[i] = "Types: deb-src"
          out = out l[i] "\n"
        }
        printf "%s\n", out
      }' "$f" >>"$twin.tmp"
  done
  # one-line files: deb -> deb-src for Debian's URIs
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    sed -n -E 's/^[[:space:]]*deb([[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]*debian)/deb-src\1/p' "$f" >>"$twin.tmp.list" || true
  done
  if [ -s "$twin.tmp" ]; then mv "$twin.tmp" "$twin"; log "added $twin"; else rm -f "$twin.tmp"; fi
  if [ -s "$twin.tmp.list" ]; then
    mv "$twin.tmp.list" /etc/apt/sources.list.d/qmproxy-deb-src.list; log "added qmproxy-deb-src.list"
  else rm -f "$twin.tmp.list"; fi
  apt-get update -q >&2
fi
# the backports' sources: a deb-src twin of the bookworm-backports entry
# contrib/qemu10.sh added (the one above predates it on some machines)
have_backports_src() {
  apt-get indextargets --format '$(CREATED_BY) $(SUITE) $(CODENAME)' 2>/dev/null |
    grep -qE '^Sources (bookworm-backports|oldstable-backports) '
}
if [ -n "$suite" ] && ! have_backports_src; then
  if [ "$(id -u)" -ne 0 ]; then
    log "no deb-src entry for $suite; run as root once to add one"; exit 1
  fi
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { log "cannot find Debian's mirror in the apt sources"; exit 1; }
  cat >/etc/apt/sources.list.d/qmproxy-deb-src-backports.sources <<SRC
Types: deb-src
URIs: $uri
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  log "added qmproxy-deb-src-backports.sources"
  apt-get update -q >&2
fi

# --- download (as the _apt-less root, into the cache) and extract
dl=$cache/download
mkdir -p "$dl"
cd "$dl"
orig=qemu_${upver%-*}.orig.tar.xz   # qemu_10.0.2+ds.orig.tar.xz
if ! ls qemu_"$upver".dsc >/dev/null 2>&1; then
  log "downloading the source of qemu $ver"
  # apt checks each file against the signed Sources index as it arrives;
  # Debian's mirror has been seen to lack the backport's .dsc and
  # .debian.tar.xz (404) while serving its upstream tarball
  apt-get source --download-only -q ${suite:+-t "$suite"} "qemu=$ver" >&2 ||
    [ -f "$orig" ] || exit 1
fi
tmpx=$(mktemp -d "$cache/extract.XXXXXX")
trap 'rm -rf "$tmpx"' EXIT
if [ -f "qemu_$upver.dsc" ]; then
  command -v dpkg-source >/dev/null || { log "dpkg-source missing (package dpkg-dev)"; exit 1; }
  log "extracting (patches applied)"
  dpkg-source --no-check -x "qemu_$upver.dsc" "$tmpx/qemu" >/dev/null
else
  # the upstream tarball only: Debian's patches do not touch the iotests
  log "no qemu_$upver.dsc on the mirror: extracting the upstream $orig (without Debian's patches)"
  mkdir -p "$tmpx/qemu"
  tar -xJf "$orig" -C "$tmpx/qemu" --strip-components=1 --wildcards \
    '*/tests/qemu-iotests' '*/python' '*/VERSION'
fi
rm -rf "$src.tmp"
mkdir -p "$src.tmp/tests"
mv "$tmpx/qemu/tests/qemu-iotests" "$src.tmp/tests/"
mv "$tmpx/qemu/python" "$src.tmp/"
mv "$tmpx/qemu/VERSION" "$src.tmp/" 2>/dev/null || true
touch "$src.tmp/.complete"
rm -rf "$src"
mv "$src.tmp" "$src"
log "ready: $src"
echo "$src"
