#!/usr/bin/env python3
"""qmproxy's core benchmark: QMP round trips and pipelined throughput
direct to QEMU, through qmproxy and through a plain socat relay, all
against one QEMU in one run (each endpoint is a separate monitor of the
same QEMU), and qmproxy's peak RSS with 64 connected clients.

With --baseline-qmproxy PATH, a qmproxy of another build (main before a
change, say) runs beside this build's in front of its own monitor of the
same QEMU, in the same interleaved runs, and the ratios of this build
against it are printed: whether a change made the passthrough cost grow,
measured against the same QEMU at the same moment.  A second instance of
this build ("control") runs too: this build against itself shows how far
apart two identical proxies land in the same run, the noise to read the
baseline ratios with.

Prints figures and ratios; it asserts nothing (see the README for the
targets and the figures measured).

    tests/bench/bench_core.py [--count 20000] [--schema-count 20000]
                              [--baseline-qmproxy PATH]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from qmptest import QEMU, QMPClient, Proxy, BUILD, wait_for  # noqa: E402

QMPBENCH = os.environ.get("QMPBENCH_BIN", os.path.join(BUILD, "tests", "bench", "qmpbench"))
RELAYFLOOR = os.path.join(BUILD, "tests", "bench", "relayfloor")


def run_bench(targets, command, count, pipeline=0):
    args = [QMPBENCH, "--count", str(count), "--command", command]
    floor = None
    for name, path in targets:
        if name == "floor":
            # relayfloor serves one client: a fresh one per run, in front
            # of the monitor given as this target's path
            upstream = path
            path = os.path.join(os.path.dirname(upstream), "floor.sock")
            floor = subprocess.Popen([RELAYFLOOR, path, upstream])
            wait_for(lambda: os.path.exists(path), what="relayfloor")
        args += ["--target", "%s=%s" % (name, path)]
    if pipeline:
        args += ["--pipeline", str(pipeline)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    if floor:
        floor.wait(10)
    return {r["target"]: r for r in map(json.loads, out.splitlines())}


def latency_table(title, res):
    d, p, s = res["direct"], res["qmproxy"], res["socat"]
    print("\n%s (%d round trips each, interleaved)" % (title, d["count"]))
    print("  %-8s %12s %12s %12s" % ("", "median us", "p99 us", "mean us"))
    for name in ("direct", "qmproxy", "socat", "baseline", "control"):
        if name not in res:
            continue
        r = res[name]
        print("  %-8s %12.1f %12.1f %12.1f" % (name, r["median_us"], r["p99_us"], r["mean_us"]))
    if "baseline" in res:
        b, c = res["baseline"], res["control"]
        print("  proxied/baseline median %.3f   p99 %.3f   (proxied/control, "
              "the same build twice: median %.3f   p99 %.3f)" % (
                  p["median_us"] / b["median_us"], p["p99_us"] / b["p99_us"],
                  p["median_us"] / c["median_us"], p["p99_us"] / c["p99_us"]))
    print("  proxied/direct median %.3f   p99 %.3f" % (p["median_us"] / d["median_us"],
                                                      p["p99_us"] / d["p99_us"]))
    print("  proxied/socat  median %.3f   p99 %.3f" % (p["median_us"] / s["median_us"],
                                                      p["p99_us"] / s["p99_us"]))
    b, c = res.get("baseline"), res.get("control")
    return (p["median_us"] / d["median_us"], p["median_us"] / s["median_us"],
            p["median_us"] / b["median_us"] if b else None,
            p["median_us"] / c["median_us"] if c else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--schema-count", type=int, default=20000)
    ap.add_argument("--pipeline", type=int, default=32)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--baseline-qmproxy", metavar="PATH",
                    help="another qmproxy binary to compare this build with")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="qmpbench-")
    qemu = QEMU(work, shape="none", monitors=6 if a.baseline_qmproxy else 4)
    proxy = socat = baseline = control = None
    try:
        proxy = Proxy(work, qemu.monitors[1])
        relay = os.path.join(work, "socat.sock")
        socat = subprocess.Popen(["socat", "UNIX-LISTEN:%s,fork" % relay,
                                  "UNIX-CONNECT:%s" % qemu.monitors[2]],
                                 stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(relay), what="socat")
        targets = [("direct", qemu.monitors[0]), ("qmproxy", proxy.listen),
                   ("socat", relay)]
        if a.baseline_qmproxy:
            baseline = Proxy(work, qemu.monitors[4], name="baseline",
                             binary=a.baseline_qmproxy)
            control = Proxy(work, qemu.monitors[5], name="control")
            targets += [("baseline", baseline.listen), ("control", control.listen)]
        print("qmproxy benchmark: QEMU %s, %d cores" % (
            subprocess.run([qemu_bin(), "--version"], capture_output=True,
                           text=True).stdout.split("\n")[0], os.cpu_count()))
        r1 = latency_table("query-version", run_bench(targets, '{"execute": "query-version"}', a.count))
        r2 = latency_table("query-qmp-schema (%d bytes)" % schema_size(qemu.monitors[0]),
                           run_bench(targets, '{"execute": "query-qmp-schema"}', a.schema_count))
        tp = run_bench(targets, '{"execute": "query-version"}', a.count, pipeline=a.pipeline)
        print("\npipelined query-version, %d in flight" % a.pipeline)
        for name in ("direct", "qmproxy", "socat"):
            print("  %-8s %10.0f commands/s" % (name, tp[name]["per_second"]))
        print("  proxied/direct throughput %.3f   proxied/socat %.3f" % (
            tp["qmproxy"]["per_second"] / tp["direct"]["per_second"],
            tp["qmproxy"]["per_second"] / tp["socat"]["per_second"]))
        if baseline:
            print("  baseline %10.0f commands/s   proxied/baseline throughput %.3f" % (
                tp["baseline"]["per_second"],
                tp["qmproxy"]["per_second"] / tp["baseline"]["per_second"]))
            print("  control  %10.0f commands/s   proxied/control throughput %.3f" % (
                tp["control"]["per_second"],
                tp["qmproxy"]["per_second"] / tp["control"]["per_second"]))

        # context: what any extra hop costs here, qmproxy or not
        fl = run_bench([("direct", qemu.monitors[0]), ("qmproxy", proxy.listen),
                        ("floor", qemu.monitors[3])], '{"execute": "query-version"}',
                       a.count // 2)
        floor_ratio = fl["floor"]["median_us"] / fl["direct"]["median_us"]
        print("\nthe hop itself: a bare read/write relay (relayfloor) against direct, "
              "%d round trips" % fl["direct"]["count"])
        print("  floor/direct median %.3f   qmproxy/direct %.3f   qmproxy/floor %.3f" % (
            floor_ratio, fl["qmproxy"]["median_us"] / fl["direct"]["median_us"],
            fl["qmproxy"]["median_us"] / fl["floor"]["median_us"]))

        # the memory figure: 64 clients connected, each having talked
        clients = []
        for _ in range(a.clients):
            c = QMPClient(proxy.listen)
            c.negotiate()
            c.ok("query-status")
            clients.append(c)
        for c in clients:
            c.ok("query-qmp-schema")
        rss = proxy.rss_kib("VmRSS")
        hwm = proxy.rss_kib("VmHWM")
        print("\nqmproxy with %d connected clients: RSS %.2f MiB, peak RSS %.2f MiB" % (
            a.clients, rss / 1024, hwm / 1024))
        for c in clients:
            c.close()
        print("\nsummary: query-version proxied/direct %.3f (target <= 1.10; a bare "
              "relay's floor here %.3f), proxied/socat %.3f (target <= 1.0); "
              "schema proxied/direct %.3f, proxied/socat %.3f; pipelined "
              "proxied/direct %.3f; peak RSS %.2f MiB with %d clients (target <= 8)"
              % (r1[0], floor_ratio, r1[1], r2[0], r2[1],
                 tp["qmproxy"]["per_second"] / tp["direct"]["per_second"],
                 hwm / 1024, a.clients))
        if baseline:
            print("against the baseline (%s), this build / baseline: query-version "
                  "median %.3f, schema median %.3f, pipelined throughput %.3f; "
                  "this build against itself (the noise): %.3f, %.3f, %.3f. The "
                  "passthrough cost must not grow: latency <= ~1.0, throughput "
                  ">= ~1.0, within the noise" % (
                      a.baseline_qmproxy, r1[2], r2[2],
                      tp["qmproxy"]["per_second"] / tp["baseline"]["per_second"],
                      r1[3], r2[3],
                      tp["qmproxy"]["per_second"] / tp["control"]["per_second"]))
    finally:
        if socat:
            socat.kill()
        if proxy:
            proxy.stop()
        for extra in (baseline, control):
            if extra:
                extra.stop()
        qemu.stop()
        shutil.rmtree(work, ignore_errors=True)


def qemu_bin():
    from qmptest import QEMU_BIN
    return QEMU_BIN


def schema_size(path):
    c = QMPClient(path)
    c.negotiate()
    c.send(b'{"execute": "query-qmp-schema"}')
    n = len(c.read_line())
    c.close()
    return n


if __name__ == "__main__":
    main()
