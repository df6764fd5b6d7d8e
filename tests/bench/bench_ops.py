#!/usr/bin/env python3
"""Benchmarks of the high-level operations; prints figures, asserts nothing.

1. Aborting a snapshot costs O(changes in the new overlay): a base with
   1 GiB of data, an overlay with 4 MiB of changes; qmproxy-snapshot-abort
   (cancel the copy, fold the overlay back by active commit) against the
   O(disk) alternative the RFC's reviewer feared (stream the whole chain
   into the top).  Target ratio <= 0.05.
2. The cost of the proxy running the sequence: snapshot-with-mirror of 4
   disks through qmproxy against the same QMP sequence sent by hand
   directly (one transaction, four drive-mirrors, four READY events).
   Target ratio <= 1.2.

    tests/bench/bench_ops.py [--data-mib 1024] [--rounds 9]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from qmptest import QEMU, QMPClient, Proxy, QEMU_IO, qemu_img  # noqa: E402


def wait_jobs(client, event, jobs):
    left = set(jobs)
    while left:
        ev = client.wait_event(event, timeout=600)
        left.discard(ev["data"]["device"])


def abort_benchmark(work, data_mib, direct_io=True):
    src = os.path.join(work, "abort")
    os.makedirs(src)
    os.makedirs(work, exist_ok=True)
    base = os.path.join(src, "disk0.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", base, "%dM" % (data_mib + 64))
    print("writing %d MiB into the base image (%s)..." % (
        data_mib, "cache=none" if direct_io else "page cache"), flush=True)
    subprocess.run([QEMU_IO, "-c", "write -P 0xaa 0 %dM" % data_mib, base],
                   check=True, capture_output=True)
    # direct I/O, as production VMs run (libvirt's cache='none'): through
    # the page cache, "O(disk)" would only measure memory bandwidth
    qemu = QEMU(src, shape="none", monitors=2, image_dir=src,
                drive_opts=",cache=none" if direct_io else "")
    proxy = Proxy(src, qemu.monitors[0])
    try:
        c = QMPClient(proxy.listen)
        c.negotiate()
        dest = os.path.join(src, "dest")
        os.makedirs(dest)

        def changes():
            c.hmp('qemu-io disk0 "write -P 0xbb 0 4M"')

        # the proxy's abort: O(changes)
        r = c.cmd("qmproxy-snapshot-mirror", {"name": "a", "disks": [{
            "disk": "disk0", "snapshot-file": os.path.join(src, "overlay-a.qcow2"),
            "mirror-file": os.path.join(dest, "overlay-a.qcow2")}]})
        assert r["return"]["state"] == "ready", r
        changes()
        t0 = time.monotonic()
        r = c.cmd("qmproxy-snapshot-abort", {"name": "a"})
        t_abort = time.monotonic() - t0
        assert r["return"]["state"] == "aborted", r

        # the alternative: pull the whole chain into the overlay
        c.ok("blockdev-snapshot-sync", {"device": "disk0", "format": "qcow2",
                                        "snapshot-file": os.path.join(src, "overlay-b.qcow2")})
        changes()
        t0 = time.monotonic()
        c.ok("block-stream", {"device": "disk0", "job-id": "pull"})
        wait_jobs(c, "BLOCK_JOB_COMPLETED", ["pull"])
        t_stream = time.monotonic() - t0
        print("\nO(changes) abort: base %d MiB of data, overlay 4 MiB of changes, %s"
              % (data_mib, "cache=none" if direct_io else "page cache"))
        print("  qmproxy-snapshot-abort            %8.3f s" % t_abort)
        print("  stream the chain into the overlay %8.3f s" % t_stream)
        print("  abort/stream ratio                %8.4f   (target <= 0.05)" % (t_abort / t_stream))
        return t_abort / t_stream
    finally:
        proxy.stop()
        qemu.stop()


def overhead_benchmark(work, rounds):
    base = os.path.join(work, "overhead")
    qemu = QEMU(base, shape="none", disks=4, monitors=2, image_dir=base)
    proxy = Proxy(base, qemu.monitors[0])
    try:
        via = QMPClient(proxy.listen)
        via.negotiate()
        direct = QMPClient(qemu.monitors[1])
        direct.negotiate()
        dest = os.path.join(base, "dest")
        os.makedirs(dest)
        t_proxy, t_direct = [], []
        for r in range(rounds):
            # through qmproxy: one command, answered when all four are ready
            disks = [{"disk": "disk%d" % i,
                      "snapshot-file": os.path.join(base, "p%d-%d.qcow2" % (r, i)),
                      "mirror-file": os.path.join(dest, "p%d-%d.qcow2" % (r, i))}
                     for i in range(4)]
            t0 = time.monotonic()
            rep = via.cmd("qmproxy-snapshot-mirror", {"name": "p%d" % r, "disks": disks})
            t_proxy.append(time.monotonic() - t0)
            assert rep["return"]["state"] == "ready", rep
            via.ok("qmproxy-snapshot-abort", {"name": "p%d" % r})

            # by hand, directly: the same sequence
            actions = [{"type": "blockdev-snapshot-sync", "data": {
                "device": "disk%d" % i, "format": "qcow2",
                "snapshot-file": os.path.join(base, "d%d-%d.qcow2" % (r, i))}}
                for i in range(4)]
            t0 = time.monotonic()
            direct.ok("transaction", {"actions": actions})
            for i in range(4):
                direct.ok("drive-mirror", {"device": "disk%d" % i, "job-id": "m%d" % i,
                                           "sync": "top", "format": "qcow2",
                                           "target": os.path.join(dest, "d%d-%d.qcow2" % (r, i))})
            wait_jobs(direct, "BLOCK_JOB_READY", ["m%d" % i for i in range(4)])
            t_direct.append(time.monotonic() - t0)
            # put things back the same way, untimed
            for i in range(4):
                direct.ok("block-job-cancel", {"device": "m%d" % i, "force": True})
            wait_jobs(direct, "BLOCK_JOB_CANCELLED", ["m%d" % i for i in range(4)])
            for i in range(4):
                direct.ok("block-commit", {"device": "disk%d" % i, "job-id": "c%d" % i})
            wait_jobs(direct, "BLOCK_JOB_READY", ["c%d" % i for i in range(4)])
            for i in range(4):
                direct.ok("block-job-complete", {"device": "c%d" % i})
            wait_jobs(direct, "BLOCK_JOB_COMPLETED", ["c%d" % i for i in range(4)])
            direct.events.clear()
            via.events.clear()
        mp, md = statistics.median(t_proxy), statistics.median(t_direct)
        print("\nsnapshot-with-mirror of 4 disks, %d rounds each (medians)" % rounds)
        print("  qmproxy-snapshot-mirror        %8.2f ms" % (mp * 1000))
        print("  the same sequence by hand      %8.2f ms" % (md * 1000))
        print("  proxy/by-hand ratio            %8.3f   (target <= 1.2)" % (mp / md))
        return mp / md
    finally:
        proxy.stop()
        qemu.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="qmpbench-ops-")
    try:
        r1 = abort_benchmark(work, a.data_mib)
        abort_benchmark(os.path.join(work, "cached"), a.data_mib, direct_io=False)
        r2 = overhead_benchmark(work, a.rounds)
        print("\nsummary: abort/stream %.4f (target <= 0.05); snapshot-mirror "
              "proxy/by-hand %.3f (target <= 1.2)" % (r1, r2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
