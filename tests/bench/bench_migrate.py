#!/usr/bin/env python3
"""Benchmark of qmproxy-migrate's downtime; prints figures, asserts nothing.

The downtime is the time from the source's STOP to the destination's
RESUME (QEMU's event timestamps, one clock: both "hosts" are network
namespaces of this machine, tests/integration/hosts.py).  A VM with a
1 GiB disk full of data moves to another host while a writer keeps
writing to the disk (qemu-io through the source's second monitor, until
the source stops):

  - with storage: qmproxy-migrate, the disk copied to the destination's
    NBD export, the copy completed at the switch-over;
  - the same with synchronous-writes (copy-mode write-blocking): the
    guest's writes reach the destination before they complete, so there
    is nothing left to drain at the switch-over;
  - baseline, measured in the same run: the same VM moved with plain
    `migrate` on shared storage (the destination opens the same image),
    what the downtime is when no disk has to be completed.

    tests/bench/bench_migrate.py [--disk-mib 1024] [--rounds 3]
                                 [--write-mib-per-s 32]     (as root)
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import hosts  # noqa: E402
from qmptest import QMPClient, QEMU_IO  # noqa: E402

MiB = 1 << 20
PORT = 4444
NBD_PORT = 10809


def event_time(ev):
    return ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6


class Writer(threading.Thread):
    """Writes 1 MiB at a time all over the disk through the source's own
    monitor, rate MiB/s at most (a guest busy writing; one writing as fast
    as the host allows would keep the copy from ever converging), until
    the source stops (bounded in count and time)."""

    def __init__(self, monitor, disk_mib, rate):
        super().__init__(daemon=True)
        self.c = QMPClient(monitor, timeout=120)
        self.c.negotiate()
        self.disk_mib = disk_mib
        self.rate = rate
        self.writes = 0
        self.stop = threading.Event()

    def run(self):
        start = time.monotonic()
        deadline = start + 600
        for n in range(1000000):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            ahead = start + n / self.rate - time.monotonic()
            if ahead > 0 and self.stop.wait(ahead):
                break
            try:
                if self.c.ok("query-status")["status"] != "running":
                    break
                self.c.hmp('qemu-io disk0 "write -P 0x%02x %d 1M"'
                           % (n % 256, (n * 37 % self.disk_mib) * MiB))
            except (EOFError, OSError, AssertionError):
                break     # the source quit under us: the migration is over
            self.writes += 1
        self.c.close()


def source_vm(h, work, tag, disk_mib):
    d = os.path.join(work, "src-%s" % tag)
    os.makedirs(d)
    image = os.path.join(d, "disk0.qcow2")
    h[0].run(["qemu-img", "create", "-q", "-f", "qcow2", image,
              "%dM" % disk_mib])
    subprocess.run([QEMU_IO, "-c", "write -P 0xaa 0 %dM" % disk_mib, image],
                   check=True, capture_output=True, timeout=600)
    qemu = h[0].qemu(d, shape="none", monitors=2, image_dir=d)
    proxy = h[0].proxy(d, qemu.monitors[0])
    c = QMPClient(proxy.listen, timeout=600)
    c.negotiate()
    return qemu, proxy, c, image


def one_round(h, work, tag, disk_mib, rate, with_storage, synchronous=False):
    qemu, proxy, c, image = source_vm(h, work, tag, disk_mib)
    ddir = os.path.join(work, "dest-%s" % tag)
    if with_storage:
        dimage = os.path.join(ddir, "disk0.qcow2")
        os.makedirs(ddir)
        # made on the destination host; the QEMU helper takes it as is
        h[1].run(["qemu-img", "create", "-q", "-f", "qcow2", dimage,
                  "%dM" % disk_mib])
        dq = h[1].qemu(ddir, shape="none", monitors=1, image_dir=ddir,
                       extra_args=("-incoming", "defer"))
    else:
        # shared storage: the destination opens the source's image
        os.makedirs(ddir)
        os.symlink(image, os.path.join(ddir, "disk0.qcow2"))
        dq = h[1].qemu(ddir, shape="none", monitors=1, image_dir=ddir,
                       extra_args=("-incoming", "defer"))
    dproxy = h[1].proxy(ddir, dq.monitors[0])
    d = QMPClient(dproxy.listen, timeout=600)
    d.negotiate()
    uri = "tcp:%s:%d" % (h[1].addr, PORT)
    if with_storage:
        d.ok("nbd-server-start", {"addr": {"type": "inet", "data": {
            "host": h[1].addr, "port": str(NBD_PORT)}}})
        node = d.ok("query-block")[0]["inserted"]["node-name"]
        d.ok("block-export-add", {"type": "nbd", "id": "e0", "writable": True,
                                  "node-name": node, "name": "disk0"})
    d.ok("migrate-incoming", {"uri": uri})
    writer = Writer(qemu.monitors[1], disk_mib, rate)
    writer.start()
    t0 = time.monotonic()
    if with_storage:
        reply = c.cmd("qmproxy-migrate", {
            "uri": uri, "synchronous-writes": synchronous, "disks": [
                {"disk": "disk0",
                 "target": "nbd://%s:%d/disk0" % (h[1].addr, NBD_PORT)}]})
        assert "return" in reply, reply
    else:
        c.ok("migrate", {"uri": uri})
    stop = c.wait_event("STOP", timeout=600)
    copied = None
    if with_storage:
        # the copy completed at the switch-over: where the downtime goes
        copied = event_time(c.wait_event("BLOCK_JOB_COMPLETED", timeout=600))
    resume = d.wait_event("RESUME", timeout=600)
    total = time.monotonic() - t0
    writer.stop.set()
    writer.join(60)
    downtime = event_time(resume) - event_time(stop)
    completing = copied - event_time(stop) if copied else 0.0
    for x in (c, d):
        x.close()
    for p in (proxy, dproxy):
        p.stop()
    qemu.stop()
    dq.stop()
    return downtime, completing, total, writer.writes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write-mib-per-s", type=float, default=32)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-migrate-")
    h = hosts.Hosts(2)
    kinds = (("shared", "shared storage (migrate)"),
             ("storage", "with storage (qmproxy-migrate)"),
             ("sync", "with storage, synchronous-writes"))
    results = {k: [] for k, _ in kinds}
    completing = {k: [] for k, _ in kinds}
    try:
        for r in range(args.rounds):
            for kind, label in kinds:
                downtime, copy_end, total, writes = one_round(
                    h, work, "%d%s" % (r, kind), args.disk_mib,
                    args.write_mib_per_s, kind != "shared", synchronous=kind == "sync")
                results[kind].append(downtime)
                completing[kind].append(copy_end)
                print("round %d, %s: downtime %.1f ms (completing the copy "
                      "%.1f ms of it), whole migration %.2f s, %d writes of "
                      "1 MiB meanwhile" % (r + 1, label, downtime * 1000,
                                           copy_end * 1000, total, writes),
                      flush=True)
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results["shared"])
    print("\nDowntime (source STOP to destination RESUME), %d MiB disk, "
          "%g MiB/s of writes going on, median of %d"
          % (args.disk_mib, args.write_mib_per_s, args.rounds))
    for kind, label in kinds:
        med = statistics.median(results[kind])
        print("  %-34s %8.1f ms  (completing the copy %6.1f ms)  ratio to "
              "shared storage %.2f" % (label, med * 1000,
                                       statistics.median(completing[kind])
                                       * 1000, med / base))

if __name__ == "__main__":
    main()
