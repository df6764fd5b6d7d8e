#!/usr/bin/env bash
# libvirt 11.3 from Debian 12's backports beside Debian 12's libvirt 9.0,
# never installed: unpacked into a private prefix and run in a mount
# namespace of its own where the prefix's files are bind-mounted over the
# system's libvirt (9.0 stays what everything else on the machine sees).
#
#   contrib/libvirt11.sh setup            unpack (idempotent); needs root
#   contrib/libvirt11.sh run CMD [ARGS]   run CMD seeing libvirt 11.3
#
# PREFIX: $QMPROXY_LIBVIRT11_PREFIX or /opt/qmproxy/libvirt-11.3.
set -euo pipefail
prefix=${QMPROXY_LIBVIRT11_PREFIX:-/opt/qmproxy/libvirt-11.3}
want=11.3
packages=(libvirt0 libvirt-common libvirt-clients libvirt-daemon
          libvirt-daemon-common libvirt-daemon-log libvirt-daemon-lock
          libvirt-daemon-driver-qemu libvirt-daemon-plugin-lockd)
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

setup() {
  if [ -x "$prefix/usr/sbin/libvirtd" ] &&
     LD_LIBRARY_PATH=$prefix/usr/lib/$arch "$prefix/usr/sbin/libvirtd" --version 2>/dev/null | grep " $want" >/dev/null; then
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { echo "libvirt11.sh: setup needs root" >&2; exit 1; }
  # the backports source (contrib/qemu10.sh adds it)
  "$(dirname "$0")/qemu10.sh" >/dev/null
  local work deb
  work=$(mktemp -d)
  chmod 755 "$work"
  (cd "$work" && apt-get download -q "${packages[@]/%//bookworm-backports}" >&2)
  rm -rf "$prefix.new"
  mkdir -p "$prefix.new"
  for deb in "$work"/*.deb; do
    dpkg -x "$deb" "$prefix.new"
  done
  rm -rf "$work" "$prefix"
  mv "$prefix.new" "$prefix"
}

# In the namespace: the prefix's libvirt over the system's.
bind_over() {
  local from=$prefix$1
  [ -e "$from" ] && [ -e "$1" ] && mount --bind "$from" "$1"
}

case "${1:-}" in
  setup)
    setup
    echo "$prefix"
    ;;
  run)
    shift
    setup
    exec unshare --mount --propagation private -- bash -c '
      set -e
      prefix=$1 arch=$2; shift 2
      for p in /usr/sbin/libvirtd /usr/bin/virsh /usr/lib/$arch/libvirt \
               /usr/lib/libvirt /usr/share/libvirt /usr/sbin/virtlogd \
               /usr/sbin/virtlockd; do
        [ -e "$prefix$p" ] && [ -e "$p" ] && mount --bind "$prefix$p" "$p"
      done
      for lib in "$prefix"/usr/lib/$arch/libvirt*.so.0; do
        [ -e "/usr/lib/$arch/${lib##*/}" ] && mount --bind "$lib" "/usr/lib/$arch/${lib##*/}"
      done
      # its own state and configuration: a libvirt 9.0 running beside it
      # (another test run) sees neither
      etc=$(mktemp -d /tmp/libvirt11-etc.XXXXXX)
      cp -a /etc/libvirt/. "$etc/"
      mount --bind "$etc" /etc/libvirt
      for d in /run /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
        mkdir -p "$d"
        mount -t tmpfs tmpfs "$d"
      done
      mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu
      exec "$@"' libvirt11 "$prefix" "$arch" "$@"
    ;;
  *)
    echo "usage: $0 setup | run CMD [ARGS...]" >&2
    exit 2
    ;;
esac
