#!/usr/bin/env bash
# Get QEMU 7.2's own iotests (tests/qemu-iotests and python/ of Debian's
# source package, the version of the installed QEMU) and a halting BIOS
# image into a cache directory outside the source tree, reused when present.
#
#   tests/iotests/setup.sh [CACHE]      prints the ready source directory
#
# CACHE defaults to $QMPROXY_IOTESTS_CACHE, else /var/cache/qmproxy-iotests
# (root) or ${XDG_CACHE_HOME:-~/.cache}/qmproxy-iotests.  Layout:
#   CACHE/qemu-VERSION/{tests/qemu-iotests,python}   the suite
#   CACHE/halt.bin                                    the BIOS image
# Needs root only to add a deb-src entry when Debian's has none.
set -euo pipefail

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

# --- the version of the installed QEMU, whose source we want
ver=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || true)
if [ -z "$ver" ]; then
  log "qemu-system-x86 is not installed"; exit 1
fi
upver=${ver#*:}                 # 7.2+dfsg-7+deb12u18
src=$cache/qemu-$upver
if [ -f "$src/.complete" ]; then
  echo "$src"; exit 0
fi

# --- a deb-src twin of every Debian deb entry, if there is no deb-src yet
have_debsrc() {
  apt-get indextargets --format '$(CREATED_BY)' 2>/dev/null | grep -qx Sources
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

# --- download (as the _apt-less root, into the cache) and extract
dl=$cache/download
mkdir -p "$dl"
cd "$dl"
if ! ls qemu_"$upver".dsc >/dev/null 2>&1; then
  log "downloading the source of qemu $ver"
  apt-get source --download-only -q "qemu=$ver" >&2
fi
command -v dpkg-source >/dev/null || { log "dpkg-source missing (package dpkg-dev)"; exit 1; }
tmpx=$(mktemp -d "$cache/extract.XXXXXX")
trap 'rm -rf "$tmpx"' EXIT
log "extracting (patches applied)"
dpkg-source --no-check -x "qemu_$upver.dsc" "$tmpx/qemu" >/dev/null
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
