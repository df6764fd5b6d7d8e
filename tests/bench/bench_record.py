#!/usr/bin/env python3
"""What recording costs: the traffic log and the tap at line rate, and
memory given back after a huge message.  One run against one QEMU (every
endpoint a separate monitor of it), every figure printed against its
target:

  1. query-version round trips, interleaved between two plain qmproxies,
     qmproxy --traffic-log and qmproxy --tap with 16 reading observers
     (plus one that never reads, which must be cut off): log/plain <= 1.03,
     tap/plain <= 1.05, plain being the mean of the two plain proxies
     (whose own ratio shows the noise), the median of --repeat runs;
  2. how long a line takes to reach the file when nothing else happens
     (<= 100 ms);
  3. sustained recording: one client pipelining query-version as fast as
     QEMU answers, with the log on, until 10^6 lines or --record-seconds:
     the rate reached and the lines lost (0), next to QEMU's own rate
     (the same client straight to a monitor, 10 s);
  4. qmproxy's RSS before, at the peak and after a refused 64 MiB message
     and after an 8 MiB command QEMU answers (after <= before + 2 MiB).

With --baseline BIN (another qmproxy build, e.g. main's) the same figures
are measured for it in the same run, interleaved, for a before/after.

    tests/bench/bench_record.py [--count 5000] [--baseline /tmp/qmproxy.main]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import qmptest  # noqa: E402
from qmptest import QEMU, QMPClient, Proxy, BUILD, wait_for  # noqa: E402

QMPBENCH = os.environ.get("QMPBENCH_BIN", os.path.join(BUILD, "tests", "bench", "qmpbench"))
NEW_BIN = qmptest.QMPROXY

TARGETS = {"log_ratio": 1.03, "tap_ratio": 1.05, "delay_ms": 100,
           "lost": 0, "rss_over_mib": 2.0}

results = []   # (what, figure, target, ok)


def verdict(what, figure, target, ok):
    results.append((what, figure, target, ok))
    print("  => %s: %s (target %s) %s" % (what, figure, target, "ok" if ok else "MISSED"))


def start_proxy(work, upstream, name, binary, args=()):
    qmptest.QMPROXY = binary
    try:
        return Proxy(work, upstream, args=list(args), name=name)
    finally:
        qmptest.QMPROXY = NEW_BIN


class Observers:
    """n processes reading a tap (socat into /dev/null), plus one socket
    that never reads, with a small receive buffer: the slow observer."""

    def __init__(self, path, n):
        self.procs = [subprocess.Popen(["socat", "-u", "UNIX-CONNECT:" + path, "/dev/null"],
                                       stderr=subprocess.DEVNULL) for _ in range(n)]
        self.slow = socket.socket(socket.AF_UNIX)
        self.slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.slow.connect(path)

    def alive(self):
        return sum(1 for p in self.procs if p.poll() is None)

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.slow.close()


def latency(targets, count):
    args = [QMPBENCH, "--count", str(count), "--command", '{"execute": "query-version"}']
    for name, path in targets:
        args += ["--target", "%s=%s" % (name, path)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return {r["target"]: r for r in map(json.loads, out.splitlines())}


def line_delay(proxy, log, probes):
    """Send a command, then watch the file until its line is there."""
    c = QMPClient(proxy.listen)
    c.negotiate()
    delays = []
    with open(log, "rb") as f:
        f.seek(0, os.SEEK_END)
        for i in range(probes):
            tag = b'"probe-%d-%d"' % (os.getpid(), i)
            t0 = time.monotonic()
            c.send(b'{"execute": "query-version", "id": %s}' % tag)
            c.read_reply()
            seen = b""
            deadline = t0 + 10
            while tag not in seen and time.monotonic() < deadline:
                chunk = f.read()
                if chunk:
                    seen = seen[-200:] + chunk
                else:
                    time.sleep(0.0005)
            delays.append((time.monotonic() - t0) * 1000 if tag in seen else float("inf"))
            time.sleep(0.05)  # the writer is idle again before the next probe
    c.close()
    return sorted(delays)


def sustained(work, upstream, binary, name, messages, seconds):
    log = os.path.join(work, "%s.jsonl" % name)
    p = start_proxy(work, upstream, name, binary, ["--traffic-log", log])
    commands = (messages + 1) // 2
    try:
        out = subprocess.run([QMPBENCH, "--count", str(commands), "--pipeline", "32",
                              "--seconds", str(seconds), "--warmup", "0",
                              "--target", "rec=" + p.listen],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
    finally:
        p.stop()   # SIGTERM: the log is flushed on exit
    got = lost_noted = 0
    mine = b'"client": 1,'
    with open(log, "rb") as f:
        for line in f:
            if mine in line[:80]:
                got += 1
            elif b'"note": "lost"' in line:
                lost_noted += json.loads(line)["lines"]
    # greeting, qmp_capabilities and its reply, then a command and a reply each
    expected = 3 + 2 * r["commands"]
    os.unlink(log)
    return {"commands": r["commands"], "seconds": r["seconds"],
            "lines_per_s": 2 * r["commands"] / r["seconds"],
            "lines": got, "expected": expected, "lost": expected - got,
            "lost_noted": lost_noted,
            "warned": "cannot keep up" in p.read_stderr()}


def rss_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory(work, upstream, binary, name):
    """RSS around a refused 64 MiB message and an 8 MiB one QEMU answers,
    with the traffic log and a tap observer on."""
    tap = os.path.join(work, "%s-observe.sock" % name)
    p = start_proxy(work, upstream, name, binary,
                    ["--traffic-log", os.path.join(work, "%s.jsonl" % name), "--tap", "unix:" + tap])
    obs = subprocess.Popen(["socat", "-u", "UNIX-CONNECT:" + tap, "/dev/null"])
    out = {}
    try:
        warm = QMPClient(p.listen)
        warm.negotiate()
        for _ in range(3):
            warm.ok("query-qmp-schema")
        warm.close()
        for case, size in (("refused 64 MiB", 64 << 20), ("answered 8 MiB", 8 << 20)):
            # a client of its own: after a refused text QEMU's rules leave
            # the rest of that client's stream out of step
            c = QMPClient(p.listen, timeout=300)
            c.negotiate()
            time.sleep(0.3)
            before = rss_kib(p.proc.pid, "VmRSS")
            # reset the peak (VmHWM) to now, so the peak is this message's
            with open("/proc/%d/clear_refs" % p.proc.pid, "w") as f:
                f.write("5")
            c.send(b'{"execute": "query-status", "arguments": {"x": "' + b"A" * size + b'"}}')
            reply = c.read_line()
            time.sleep(0.5)
            after = rss_kib(p.proc.pid, "VmRSS")
            out[case] = (before, rss_kib(p.proc.pid, "VmHWM"), after,
                         json.loads(reply).get("error", {}).get("desc"))
            c.close()
    finally:
        obs.kill()
        obs.wait()
        p.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--observers", type=int, default=16)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--record-messages", type=int, default=1000000)
    ap.add_argument("--record-seconds", type=float, default=90)
    ap.add_argument("--baseline", help="another qmproxy binary to measure alongside")
    ap.add_argument("--parts", default="1,2,3,4", help="which parts to run (1,2 share proxies)")
    a = ap.parse_args()
    parts = set(a.parts.split(","))

    work = tempfile.mkdtemp(prefix="qmpbench-rec-")
    builds = [("new", NEW_BIN)] + ([("base", a.baseline)] if a.baseline else [])
    qemu = QEMU(work, shape="none", monitors=6 * len(builds) + 1)
    mon = iter(qemu.monitors)
    proxies, observers = [], []
    try:
        print("qmproxy recording benchmark: %d cores; %s" % (
            os.cpu_count(), ", ".join("%s = %s" % b for b in builds)))
        targets = []
        logs = {}
        for tag, binary in (builds if parts & {"1", "2"} else []):
            # two plain proxies: their mean is the baseline, their ratio
            # shows what identical proxies differ by here (the noise)
            plain = start_proxy(work, next(mon), tag, binary)
            plain2 = start_proxy(work, next(mon), tag + "2", binary)
            logs[tag] = os.path.join(work, "%s-log.jsonl" % tag)
            logged = start_proxy(work, next(mon), tag + "-log", binary,
                                 ["--traffic-log", logs[tag]])
            tap = os.path.join(work, "%s-observe.sock" % tag)
            tapped = start_proxy(work, next(mon), tag + "-tap", binary, ["--tap", "unix:" + tap])
            observers.append(Observers(tap, a.observers))
            proxies += [plain, plain2, logged, tapped]
            targets += [(tag, plain.listen), (tag + "2", plain2.listen),
                        (tag + "-log", logged.listen), (tag + "-tap", tapped.listen)]
        time.sleep(0.5)

        if "1" in parts:
            print("\n1. query-version round trips, %d each per run, interleaved, %d runs "
                  "(median us of each run)" % (a.count, a.repeat))
            runs = [latency(targets, a.count) for _ in range(a.repeat)]
            for name, _ in targets:
                print("  %-10s %s" % (name, "  ".join("%7.1f" % r[name]["median_us"] for r in runs)))

            def ratio(tag, what):
                # per run: what / mean of the two plain proxies; then the median run
                v = sorted(r[tag + what]["median_us"] * 2
                           / (r[tag]["median_us"] + r[tag + "2"]["median_us"]) for r in runs)
                return v[len(v) // 2], v

            for (tag, _), obs in zip(builds, observers):
                noise = sorted(r[tag + "2"]["median_us"] / r[tag]["median_us"] for r in runs)
                lr, lrs = ratio(tag, "-log")
                tr, trs = ratio(tag, "-tap")
                print("  %s: log/plain %s, tap/plain %s (identical plain proxies differ by %s); "
                      "%d of %d observers still connected" % (
                          tag, " ".join("%.3f" % x for x in lrs), " ".join("%.3f" % x for x in trs),
                          " ".join("%.3f" % x for x in noise), obs.alive(), a.observers))
                verdict("%s traffic log / no log, median" % tag, "%.3f" % lr,
                        "<= %.2f" % TARGETS["log_ratio"], lr <= TARGETS["log_ratio"])
                verdict("%s tap with %d observers / no tap, median" % (tag, a.observers), "%.3f" % tr,
                        "<= %.2f" % TARGETS["tap_ratio"], tr <= TARGETS["tap_ratio"])
            for tag, p in zip([b[0] for b in builds], proxies[3::4]):
                # 10 schemas (2 MB of lines): past the slow observer's 1 MiB queue
                c = QMPClient(p.listen)
                c.negotiate()
                for _ in range(10):
                    c.ok("query-qmp-schema")
                c.close()
                try:
                    wait_for(lambda: "too slow" in p.read_stderr(), timeout=10)
                    cut = True
                except AssertionError:
                    cut = False
                obs = observers[[b[0] for b in builds].index(tag)]
                verdict("%s slow observer cut off, readers kept" % tag,
                        "%s, %d/%d" % ("cut" if cut else "not cut", obs.alive(), a.observers),
                        "cut, all", cut and obs.alive() == a.observers)

        if "2" in parts:
            print("\n2. from a command to its line in the file, %d probes (ms)" % a.probes)
            for (tag, _), p in zip(builds, proxies[2::4]):
                d = line_delay(p, logs[tag], a.probes)
                print("  %s: median %.1f  max %.1f" % (tag, d[len(d) // 2], d[-1]))
                verdict("%s line delay, max" % tag, "%.1f ms" % d[-1],
                        "<= %d ms" % TARGETS["delay_ms"], d[-1] <= TARGETS["delay_ms"])
        for obs in observers:
            obs.close()
        observers = []
        for p in proxies:
            p.stop()
        proxies = []

        if "3" in parts:
            print("\n3. sustained recording: pipelined query-version (32 in flight), "
                  "up to %d lines or %.0f s" % (a.record_messages, a.record_seconds))
            # QEMU's own rate, for scale: the same client straight to a monitor
            out = subprocess.run([QMPBENCH, "--count", "1000000", "--pipeline", "32",
                                  "--seconds", "10", "--target", "direct=" + next(mon)],
                                 check=True, capture_output=True, text=True).stdout
            d = json.loads(out)
            print("  QEMU direct, no proxy: %.0f commands/s (%.0f lines/s had they been logged)"
                  % (d["per_second"], 2 * d["per_second"]))
            for tag, binary in builds:
                s = sustained(work, next(mon), binary, tag + "-rec", a.record_messages,
                              a.record_seconds)
                print("  %s: %d commands in %.1f s = %.0f lines/s; lines %d of %d, lost %d "
                      "(noted %d)%s" % (tag, s["commands"], s["seconds"], s["lines_per_s"],
                                       s["lines"], s["expected"], s["lost"], s["lost_noted"],
                                       "; warned on stderr" if s["warned"] else ""))
                verdict("%s lines lost at %.0f lines/s (%d lines)" % (tag, s["lines_per_s"], s["expected"]),
                        "%d" % s["lost"], "0", s["lost"] == 0)

        if "4" in parts:
            print("\n4. RSS around huge messages, log and one tap observer on (MiB)")
            for tag, binary in builds:
                m = memory(work, next(mon), binary, tag + "-mem")
                for case, (before, peak, after, desc) in m.items():
                    over = (after - before) / 1024
                    print("  %s %s (%s): before %.1f  peak %.1f  after %.1f" % (
                        tag, case, desc, before / 1024, peak / 1024, after / 1024))
                    verdict("%s RSS after %s, above before" % (tag, case), "%+.1f MiB" % over,
                            "<= %.0f MiB" % TARGETS["rss_over_mib"], over <= TARGETS["rss_over_mib"])

        print("\nsummary")
        for what, figure, target, ok in results:
            print("  %-58s %12s  target %-9s %s" % (what, figure, target, "ok" if ok else "MISSED"))
    finally:
        for obs in observers:
            obs.close()
        for p in proxies:
            p.stop()
        qemu.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
