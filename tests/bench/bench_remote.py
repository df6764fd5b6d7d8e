#!/usr/bin/env python3
"""Benchmark of a copy to another host; prints figures, asserts nothing.

Mirror throughput to a remote NBD export (qmproxy-block-copy, answered when
the copy is ready) against `qemu-img convert` of the same image to the same
kind of export, and against the same drive-mirror sent to QEMU directly
with each buffer (QEMU's default 16 MiB, split into 1 MiB requests, and
32 MiB, 2 MiB requests as qemu-img convert sends, which qmproxy gives a
copy to an NBD export on QEMU before 10.0): the one qmproxy uses on this
QEMU shows what qmproxy's sequence costs on top of QEMU's own mirror, the
other what qmproxy's choice gains, all from the
sending "host" to qemu-storage-daemon on the receiving one (network namespaces on a veth bridge, tests/integration/
hosts.py).  Each round gets a freshly made destination image, so neither
side writes over clusters the other allocated.  Target ratio (mirror
throughput / convert throughput) >= 0.9.

    tests/bench/bench_remote.py [--data-mib 512] [--rounds 3]   (as root)
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
import hosts  # noqa: E402
from qmptest import QMPClient, QEMU_IO, qemu_img  # noqa: E402

MiB = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-remote-")
    h = hosts.Hosts(2)
    try:
        run(h, work, args.data_mib, args.rounds)
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


# what qmproxy passes drive-mirror for an NBD target on QEMU before
# 10.0 (step-mirror.c); on 10.0 it leaves QEMU's default
BIG_BUF_SIZE = 32 * MiB
BIG_BUF_UNTIL = (10, 0)


def is_bare(event):
    return event["data"].get("device") == "bare"


def run(h, work, data_mib, rounds):
    src = os.path.join(work, "src")
    dest = os.path.join(work, "dest")
    os.makedirs(src)
    os.makedirs(dest)
    size = "%dM" % data_mib
    image = os.path.join(src, "disk0.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", image, size)
    print("writing %d MiB into the source image..." % data_mib, flush=True)
    subprocess.run([QEMU_IO, "-c", "write -P 0xaa 0 %dM" % data_mib, image],
                   check=True, capture_output=True)
    qemu = h[0].qemu(src, shape="none", monitors=2, image_dir=src)
    proxy = h[0].proxy(src, qemu.monitors[0])
    c = QMPClient(proxy.listen, timeout=600)
    c.negotiate()
    direct = QMPClient(qemu.monitors[1], timeout=600)
    direct.negotiate()
    qsd = None
    target = os.path.join(dest, "disk0.qcow2")

    def fresh_export():
        nonlocal qsd
        if qsd:
            qsd.stop()
        if os.path.exists(target):
            os.unlink(target)
        h[1].run(["qemu-img", "create", "-q", "-f", "qcow2", target, size])
        qsd = h[1].storage_daemon(dest, {"disk0": target})
        return qsd.uri("disk0")

    v = direct.ok("query-version")["qemu"]
    qmproxy_big = (v["major"], v["minor"]) < BIG_BUF_UNTIL
    convert, mirror, big, default = [], [], [], []
    for r in range(rounds):
        uri = fresh_export()
        t0 = time.monotonic()
        h[0].run(["qemu-img", "convert", "-U", "-n", "-f", "qcow2", "-O", "raw",
                  image, uri], timeout=3600)
        convert.append(time.monotonic() - t0)

        uri = fresh_export()
        t0 = time.monotonic()
        reply = c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": uri})
        mirror.append(time.monotonic() - t0)
        assert "return" in reply, reply
        c.ok("qmproxy-reopen", {"disk": "disk0", "file": image})   # drop it

        def bare_mirror(extra):
            uri = fresh_export()
            direct.events = []    # the events of qmproxy's jobs, seen here too
            args = {"device": "disk0", "job-id": "bare", "target": uri,
                    "format": "raw", "sync": "full", "mode": "existing"}
            args.update(extra)
            t0 = time.monotonic()
            direct.ok("drive-mirror", args)
            direct.wait_event("BLOCK_JOB_READY", timeout=3600, pred=is_bare)
            took = time.monotonic() - t0
            direct.ok("block-job-cancel", {"device": "bare"})
            direct.wait_event("BLOCK_JOB_COMPLETED", timeout=600,
                              pred=is_bare)
            return took

        big.append(bare_mirror({"buf-size": BIG_BUF_SIZE}))
        default.append(bare_mirror({}))
        print("round %d: convert %.2fs, qmproxy %.2fs, drive-mirror %.2fs "
              "(32 MiB buffer), %.2fs (default buffer)"
              % (r + 1, convert[-1], mirror[-1], big[-1], default[-1]),
              flush=True)
    qsd.stop()
    t_convert = statistics.median(convert)
    t_mirror = statistics.median(mirror)
    t_big = statistics.median(big)
    t_default = statistics.median(default)
    t_bare, t_other = (t_big, t_default) if qmproxy_big else (t_default, t_big)
    print("\nCopy of %d MiB to an NBD export on another host (median of %d)"
          % (data_mib, rounds))
    print("  qemu-img convert:           %7.2f s  %8.1f MiB/s"
          % (t_convert, data_mib / t_convert))
    print("  qmproxy-block-copy (ready): %7.2f s  %8.1f MiB/s"
          % (t_mirror, data_mib / t_mirror))
    mark = ("", "  <- qmproxy's") if qmproxy_big else ("  <- qmproxy's", "")
    print("  drive-mirror, no qmproxy, QEMU %d.%d:" % (v["major"], v["minor"]))
    print("    buf-size 16 MiB (default): %7.2f s  %8.1f MiB/s%s"
          % (t_default, data_mib / t_default, mark[0]))
    print("    buf-size 32 MiB:           %7.2f s  %8.1f MiB/s%s"
          % (t_big, data_mib / t_big, mark[1]))
    print("  ratio mirror/convert throughput: %.2f (target >= 0.9)"
          % (t_convert / t_mirror))
    print("  ratio qmproxy/bare drive-mirror throughput: %.2f"
          % (t_bare / t_mirror))
    print("  ratio bare drive-mirror/convert throughput: %.2f with qmproxy's "
          "buffer, %.2f with the other" % (t_convert / t_bare,
                                           t_convert / t_other))
    c.close()
    direct.close()
    proxy.stop()
    qemu.stop()


if __name__ == "__main__":
    main()
