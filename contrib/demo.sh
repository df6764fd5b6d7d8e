#!/usr/bin/env bash
# qmproxy on a throwaway VM: installs what is missing (Debian packages, as
# root), builds, starts a small QEMU with qmproxy in front of it, talks to
# QEMU through the proxy, shows the traffic log, and cleans up.
#
#   QMPROXY_PREFIX=/usr contrib/demo.sh
# runs the installed qmproxy and qmproxyctl (PREFIX/sbin, PREFIX/bin, as
# the Debian package puts them) instead of building the tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=deps.sh
. contrib/deps.sh
ensure_deps

if [ -n "${QMPROXY_PREFIX:-}" ]; then
  qmproxy=$QMPROXY_PREFIX/sbin/qmproxy
  qmproxyctl=$QMPROXY_PREFIX/bin/qmproxyctl
  echo "== the installed qmproxy: $qmproxy ($("$qmproxy" --version))"
  [ -x "$qmproxyctl" ] || { echo "no $qmproxyctl" >&2; exit 1; }
else
  echo "== building"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc)" >/dev/null
  qmproxy=$root/build/qmproxy
  qmproxyctl=$root/build/qmproxyctl
fi

work=$(mktemp -d /tmp/qmproxy-demo.XXXXXX)
qemu_pid= proxy_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== a throwaway VM: q35, paused, one 64 MiB qcow2 disk on virtio-blk"
qemu-img create -q -f qcow2 "$work/disk0.qcow2" 64M
qemu-system-x86_64 -M q35 -S -m 64 -nodefaults -display none -no-user-config \
  -blockdev driver=file,filename="$work/disk0.qcow2",node-name=file0 \
  -blockdev driver=qcow2,file=file0,node-name=fmt0 \
  -device virtio-blk-pci,drive=fmt0,id=disk0 \
  -qmp unix:"$work/qmp.sock",server=on,wait=off &
qemu_pid=$!

echo "== qmproxy in front of it"
"$qmproxy" --upstream unix:"$work/qmp.sock" --listen unix:"$work/qmproxy.sock" \
  --traffic-log "$work/traffic.jsonl" -v 2>"$work/qmproxy.log" &
proxy_pid=$!
for _ in $(seq 100); do [ -S "$work/qmproxy.sock" ] && break; sleep 0.05; done

echo "== a conversation through the proxy"
python3 contrib/qmpclient.py "$work/qmproxy.sock" \
  query-version query-status \
  '{"execute": "query-block", "id": "blocks"}' \
  cont stop \
  '{"execute": "human-monitor-command", "arguments": {"command-line": "info block"}}' \
  '{"execute": "no-such-command", "id": 7}' | cut -c1-160

ctl() { "$qmproxyctl" -s "$work/qmproxy.sock" "$@"; }

echo "== the proxy tracks the backing chain: a snapshot, then the chain (qmproxyctl)"
ctl exec blockdev-snapshot-sync node-name=fmt0 snapshot-file="$work/snap1.qcow2" snapshot-node-name=snap1
ctl chain disk0
echo "-- the same as libvirt's <disk> XML:"
ctl chain --xml disk0

echo "== the RFC's mirrored live migration: snapshot-with-mirror, then reopen onto the copy"
echo "   (a client that does not ask for the proxy's events, with"
echo "    qmproxy-capabilities, sees only what QEMU itself sends)"
mkdir -p "$work/dest"
ctl snapshot-mirror --name move --disk disk0 --snapshot "$work/snap2.qcow2" --mirror "$work/dest/snap2.qcow2" --wait
ctl exec human-monitor-command command-line='qemu-io -d /machine/peripheral/disk0/virtio-backend "write -P 0x5a 0 1M"' | cut -c1-120
ctl snapshot-reopen move --to mirror
ctl ops move
echo "-- the chain of disk0 now, active layer first (QEMU writes to dest/):"
ctl chain disk0

echo "== the same operation in raw QMP, for scripts (this client asks for the proxy's extras)"
python3 contrib/qmpclient.py --quiet-greeting --extras "$work/qmproxy.sock" \
  '{"execute": "qmproxy-query-operations", "arguments": {"name": "move"}}' | cut -c1-200

echo "== a second client at the same time gets its own replies"
python3 contrib/qmpclient.py --quiet-greeting "$work/qmproxy.sock" \
  '{"execute": "query-status", "id": "second-client"}' | cut -c1-160

echo "== the traffic log ($work/traffic.jsonl), one JSON object per message"
sleep 0.2
cut -c1-170 "$work/traffic.jsonl"

echo "== stopping: qmproxy exits 0 on SIGTERM and removes its socket"
kill -TERM "$proxy_pid"
wait "$proxy_pid"
proxy_pid=
[ ! -e "$work/qmproxy.sock" ]
echo "demo finished"
