#!/usr/bin/env bash
# QEMU 10.0 from Debian 12's backports, beside Debian 12's QEMU 7.2 (which
# stays the system QEMU): the packages are unpacked into a private prefix,
# never installed, and small wrappers in PREFIX/bin run them with their own
# firmware and data.
#
#   contrib/qemu10.sh [PREFIX]     set up (idempotent); prints PREFIX/bin
#
# PREFIX defaults to $QMPROXY_QEMU10_PREFIX or /opt/qmproxy/qemu-10.0.
# Needs root the first time (an apt source for bookworm-backports).
set -euo pipefail
prefix=${1:-${QMPROXY_QEMU10_PREFIX:-/opt/qmproxy/qemu-10.0}}
want=10.0
# every package that carries modules too: QEMU 10 looks for a module in
# its own folder first and then in the system's, and a 7.2 module found
# there makes it abort (libvirt's probing loads them all)
packages=(qemu-system-x86 qemu-system-common qemu-system-data qemu-utils
          qemu-block-extra qemu-system-gui qemu-system-modules-opengl
          qemu-system-modules-spice)

# The wrappers in DIR/bin that run the prefix's programs (paths of $prefix:
# DIR is $prefix or the $prefix.new about to become it).  Each is written
# aside and renamed over the old one, so a wrapper running meanwhile (other
# tests use the prefix) keeps reading the file it started with.
# The system emulator finds its firmware and option ROMs in the prefix, and
# SeaBIOS (not part of these packages) where Debian puts it.  exec -a "$0"
# would name QEMU after this script whatever name its caller exec'ed it
# under (bash sets $0 to the script's path), and QEMU's iotests filter
# QEMU's messages by the name they gave: a caller may set QMPROXY_ARGV0.
write_wrappers() {
  local dir=$1 real=$prefix/usr/bin tool
  mkdir -p "$dir/bin"
  cat > "$dir/bin/qemu-system-x86_64.tmp" <<WRAP
#!/bin/bash
export QEMU_MODULE_DIR=$prefix/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)/qemu
exec -a "\${QMPROXY_ARGV0:-\$0}" "$real/qemu-system-x86_64" -L "$prefix/usr/share/qemu" -L /usr/share/seabios "\$@"
WRAP
  for tool in qemu-img qemu-io qemu-nbd qemu-storage-daemon; do
    cat > "$dir/bin/$tool.tmp" <<WRAP
#!/bin/bash
exec -a "\$0" "$real/$tool" "\$@"
WRAP
  done
  for tool in qemu-system-x86_64 qemu-img qemu-io qemu-nbd qemu-storage-daemon; do
    chmod 755 "$dir/bin/$tool.tmp"
    mv -f "$dir/bin/$tool.tmp" "$dir/bin/$tool"
  done
}

if [ -x "$prefix/bin/qemu-system-x86_64" ] &&
   grep -q QEMU_MODULE_DIR "$prefix/bin/qemu-system-x86_64" &&
   "$prefix/bin/qemu-system-x86_64" -version 2>/dev/null | grep "version $want" >/dev/null; then
  # wrappers of an older qemu10.sh: rewrite them in place, nothing else
  grep -q QMPROXY_ARGV0 "$prefix/bin/qemu-system-x86_64" || write_wrappers "$prefix"
  echo "$prefix/bin"
  exit 0
fi

src=/etc/apt/sources.list.d/qmproxy-backports.sources
if ! apt-cache policy 2>/dev/null | grep bookworm-backports >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "qemu10.sh: run as root once, to add bookworm-backports" >&2; exit 1; }
  # the same mirror Debian's own entry uses
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "qemu10.sh: cannot find Debian's mirror in the apt sources" >&2; exit 1; }
  cat > "$src" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -q >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && chmod 755 . && apt-get download -q "${packages[@]/%//bookworm-backports}" >&2)
rm -rf "$prefix.new"
mkdir -p "$prefix.new"
for deb in "$work"/*.deb; do
  dpkg -x "$deb" "$prefix.new"
done
write_wrappers "$prefix.new"
rm -rf "$prefix"
mv "$prefix.new" "$prefix"
"$prefix/bin/qemu-system-x86_64" -version | head -1 >&2
echo "$prefix/bin"
