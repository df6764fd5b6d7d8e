#!/usr/bin/env python3
"""What a Prometheus scrape costs the proxy; prints figures, asserts nothing.

A real QEMU with 16 disks, each with a snapshot (chain depth 2) and a
mirror job left ready; qmproxy in front of it with --metrics and 64
negotiated clients that have sent 30 different commands.  The proxy's
CPU time (every thread's, from /proc/PID/task/*/schedstat, in ns) is
measured over N scrapes on one keep-alive connection, and over an idle
period of the same length in the same run (the baseline: timers, nothing
else), so that per scrape = (busy - idle) / N.  Target: under 1 ms.

    tests/bench/bench_metrics.py [--scrapes 2000] [--rounds 3]
"""
import argparse
import glob
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from qmptest import QEMU, QMPClient, Proxy  # noqa: E402
from test_metrics import free_port  # noqa: E402

DISKS = 16
CLIENTS = 64
COMMANDS = ["query-status", "query-name", "query-uuid", "query-version",
            "query-kvm", "query-block", "query-block-jobs", "query-chardev",
            "query-commands", "query-events", "query-iothreads",
            "query-machines", "query-cpus-fast", "query-hotpluggable-cpus",
            "query-memdev", "query-mice", "query-migrate",
            "query-migrate-capabilities", "query-migrate-parameters",
            "query-named-block-nodes", "query-pci", "query-rocker",
            "query-tpm", "query-vnc", "query-spice", "query-target",
            "query-balloon", "query-dump", "qmproxy-query-chain",
            "qmproxy-query-operations"]


def cpu_ns(pid):
    total = 0
    for path in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total


def setup(work):
    qemu = QEMU(work, shape="none", disks=DISKS, monitors=2)
    port = free_port()
    proxy = Proxy(work, qemu.monitors[0],
                  args=["--metrics", "tcp:127.0.0.1:%d" % port])
    clients = [QMPClient(proxy.listen).negotiate() for _ in range(CLIENTS)]
    c = clients[0]
    dest = os.path.join(work, "dest")
    os.makedirs(dest)
    for i in range(DISKS):
        c.ok("blockdev-snapshot-sync", {
            "device": "disk%d" % i, "format": "qcow2",
            "snapshot-file": os.path.join(work, "snap%d.qcow2" % i)})
        c.ok("drive-mirror", {"device": "disk%d" % i, "job-id": "m%d" % i,
                              "sync": "top", "format": "qcow2",
                              "target": os.path.join(dest, "m%d.qcow2" % i)})
    for _ in range(DISKS):
        c.wait_event("BLOCK_JOB_READY", timeout=120)
    for k, cl in enumerate(clients):
        for name in COMMANDS[k % 3::3]:
            cl.cmd(name)
    return qemu, proxy, clients, port


def scrapes(port, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    size = 0
    for _ in range(n):
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, r.status
        size = len(body)
    conn.close()
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-metrics-")
    qemu = proxy = None
    try:
        qemu, proxy, clients, port = setup(work)
        pid = proxy.proc.pid
        scrapes(port, 50)  # warm up: buffers grown, code paged in
        per_scrape, idle_rates = [], []
        for _ in range(args.rounds):
            t0, c0 = time.monotonic(), cpu_ns(pid)
            size = scrapes(port, args.scrapes)
            t1, c1 = time.monotonic(), cpu_ns(pid)
            time.sleep(t1 - t0)  # the idle baseline, as long as the scrapes
            t2, c2 = time.monotonic(), cpu_ns(pid)
            idle = (c2 - c1) / (t2 - t1)  # ns of CPU per second, idle
            idle_rates.append(idle)
            per_scrape.append(((c1 - c0) - idle * (t1 - t0)) / args.scrapes)
        med = statistics.median(per_scrape)
        print("qmproxy with %d clients, %d disks (chain depth 2, a ready "
              "mirror each), %d commands seen" % (CLIENTS, DISKS, len(COMMANDS)))
        print("scrape size: %d bytes" % size)
        print("idle baseline: %.1f us of CPU per second" % (statistics.median(idle_rates) / 1e3))
        print("proxy CPU per scrape: %s us (median %.1f us over %d rounds "
              "of %d scrapes)" % (", ".join("%.1f" % (x / 1e3) for x in per_scrape),
                                  med / 1e3, args.rounds, args.scrapes))
        print("ratio to the 1 ms target: %.3f" % (med / 1e6))
    finally:
        if proxy:
            proxy.stop()
        if qemu:
            qemu.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
