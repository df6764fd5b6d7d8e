#!/usr/bin/env python3
"""Benchmark of a replica's catch-up after a link outage; prints figures,
asserts nothing.

A replica on another host (the policy's on="connect" rule, its target an
NBD server: qemu-storage-daemon on a second "host", tests/integration/
hosts.py) is first copied whole: that is the full recopy a replica
without catch-up pays after every failure.  Then the receiving daemon
goes away (the connection reset: QEMU's mirror pauses on the write
errors, its dirty bitmap kept), the guest writes, the daemon comes back
and qmproxy resumes the copy: the catch-up.  Bytes (from the job's
progress) and time of both, in the same run, and their ratios.

    tests/bench/bench_replica.py [--disk-mib 512] [--write-mib 16]
                                 [--speed-mib N]   (as root)

The catch-up's time has a fixed part (the resume backoff, QEMU's
reconnection) and the copy of the changes; --speed-mib stands for a link
slower than the veth, where the copy dominates.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import hosts  # noqa: E402
from qmptest import QMPClient, QEMU_IO, qemu_img, wait_for, write_policy  # noqa: E402

MiB = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-mib", type=int, default=512)
    ap.add_argument("--write-mib", type=int, default=16)
    ap.add_argument("--speed-mib", type=int, default=0,
                    help="the rule's speed, MiB/s (a slower link); 0: none")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-replica-")
    h = hosts.Hosts(2)
    try:
        run(h, work, args.disk_mib, args.write_mib, args.speed_mib)
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


def run(h, work, disk_mib, write_mib, speed_mib):
    src = os.path.join(work, "src")
    dest = os.path.join(work, "dest")
    os.makedirs(src)
    os.makedirs(dest)
    image = os.path.join(src, "disk0.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", image, "%dM" % disk_mib)
    print("writing %d MiB into the source image..." % disk_mib, flush=True)
    subprocess.run([QEMU_IO, "-c", "write -P 0xaa 0 %dM" % disk_mib, image],
                   check=True, capture_output=True)
    replica = os.path.join(dest, "disk0-replica.qcow2")
    h[1].run(["qemu-img", "create", "-q", "-f", "qcow2", replica,
              "%dM" % disk_mib])
    qsd = h[1].storage_daemon(dest, {"disk0-replica": replica})
    policy = os.path.join(work, "policy.xml")
    write_policy(policy, '<mirroring><rule name="away" disks="disk0" '
                 'on="connect" target="nbd://%s" backoff-ms="200" '
                 'max-backoff-ms="200" outage-budget-ms="600000" '
                 'speed="%d"/></mirroring>' % (h[1].addr, speed_mib * MiB))
    qemu = h[0].qemu(src, shape="none", monitors=1, image_dir=src)
    t0 = time.monotonic()
    proxy = h[0].proxy(src, qemu.monitors[0], args=("--policy", policy))
    c = QMPClient(proxy.listen, timeout=600)
    c.negotiate()

    def disk():
        ops = c.ok("qmproxy-query-operations")
        return ops[-1]["disks"][0] if ops else {}

    def in_sync():
        d = disk()
        return d.get("job-status") == "ready" and d["offset"] == d["len"]

    wait_for(lambda: c.ok("qmproxy-query-operations")
             and c.ok("qmproxy-query-operations")[-1]["state"] == "ready",
             timeout=3600, interval=0.05, what="the full copy")
    t_full = time.monotonic() - t0
    full_bytes = disk()["offset"]
    before = disk()["offset"]

    qsd.stop()                      # the link's other end goes away
    out = c.ok("human-monitor-command", {"command-line":
               'qemu-io disk0 "write -P 0x55 %d %dM"' % (8 * MiB, write_mib)})
    assert "error" not in out.lower(), out
    wait_for(lambda: disk().get("job-status") == "standby", timeout=60,
             what="the copy to pause")
    qsd = h[1].storage_daemon(dest, {"disk0-replica": replica}, name="qsd2")
    t0 = time.monotonic()           # serving again
    wait_for(lambda: disk()["offset"] - before >= write_mib * MiB
             and in_sync(), timeout=3600, interval=0.05, what="the catch-up")
    t_catch = time.monotonic() - t0
    catch_bytes = disk()["offset"] - before
    qsd.stop()

    print("\nReplica of a %d MiB disk on another host, %d MiB written while "
          "its link was down (copy speed %s)" % (disk_mib, write_mib,
          "%d MiB/s" % speed_mib if speed_mib else "unlimited"))
    print("  full recopy (first sync):  %10d bytes  %7.2f s"
          % (full_bytes, t_full))
    print("  catch-up after the outage: %10d bytes  %7.2f s (from the "
          "receiving side's return, resume backoff 200 ms included)"
          % (catch_bytes, t_catch))
    print("  ratio catch-up/full bytes: %.4f" % (catch_bytes / full_bytes))
    print("  ratio catch-up/full time:  %.4f" % (t_catch / t_full))
    c.close()
    proxy.stop()
    qemu.stop()


if __name__ == "__main__":
    main()
