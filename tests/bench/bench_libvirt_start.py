#!/usr/bin/env python3
"""How much longer `virsh start` takes behind qmproxy; prints figures,
asserts nothing.

A small q35 domain (TCG, 64 MiB, one virtio disk) is defined twice: once
with the real QEMU as its <emulator>, once with contrib/libvirt/qemu-wrapper
(configured as the README says: a traffic log and a state file).  Each round
starts and destroys both, in alternating order, and times `virsh start`.
The medians and their ratio are printed (target: proxied/direct <= 1.05),
then where the proxied starts spent their time, from the wrapper's trace
(QMPROXY_WRAPPER_TRACE) and the traffic log's time stamps.

libvirt is set up and started as tests/integration/test_libvirt.py does
(root, libvirt 9.0, no systemd needed), in a mount namespace of its own
(unless --shared): private /run, /var/lib/libvirt, /var/cache/libvirt,
/var/log/libvirt and a copy of /etc/libvirt, so that a libvirtd someone
else runs or restarts on the same machine neither disturbs nor is disturbed.

Then the same start is taken apart (unless --no-replay): the read-only
commands libvirt sent during the last proxied start (its qom-get and
query-* sequence, from the traffic log) are replayed in order, one after
the other as libvirt sends them, against one paused q35 QEMU three ways:
directly, through qmproxy (traffic log and state file, as the wrapper runs
it), and through relayfloor, a relay that does nothing but copy bytes.
What the sequence costs through each says how much of the start's ratio
is qmproxy's own work and how much any extra process on the monitor path
costs on this machine.

    tests/bench/bench_libvirt_start.py [--rounds 5] [--max-seconds 600] [--shared]
                                       [--replays 20] [--no-replay]
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import test_libvirt as tl  # noqa: E402
from qmptest import BUILD, QEMU, QEMU_BIN, QEMU_IMG, Proxy, wait_for  # noqa: E402

QMPBENCH = os.path.join(BUILD, "tests", "bench", "qmpbench")
RELAYFLOOR = os.path.join(BUILD, "tests", "bench", "relayfloor")

NAMESPACE_MARK = "QMPROXY_BENCH_PRIVATE_LIBVIRT"
PRIVATE_DIRS = ("/run", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")


def isolate():
    """Run the rest of this script in a mount namespace where libvirt's
    folders are its own (re-executing it under unshare once)."""
    if os.environ.get(NAMESPACE_MARK) != "1":
        os.environ[NAMESPACE_MARK] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private",
                              sys.executable] + sys.argv)
    etc = tempfile.mkdtemp(prefix="qmproxy-bench-etc-")
    shutil.copytree("/etc/libvirt", os.path.join(etc, "libvirt"), symlinks=True)
    tl.run(["mount", "--bind", os.path.join(etc, "libvirt"), "/etc/libvirt"])
    for d in PRIVATE_DIRS:
        os.makedirs(d, exist_ok=True)
        tl.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", d])
    for d in ("/run/lock", "/var/lib/libvirt/qemu", "/var/cache/libvirt/qemu"):
        os.makedirs(d, exist_ok=True)
    return etc


def libvirt_debug_log():
    """libvirtd logs what it sends QEMU and when (and process set-up)."""
    with open("/etc/libvirt/libvirtd.conf", "a") as f:
        f.write('\nlog_filters="1:qemu.qemu_monitor 1:qemu.qemu_process '
                '1:util.command 3:*"\n'
                'log_outputs="1:file:/var/log/libvirt/libvirtd.log"\n')


LIBVIRT_LOG_LINE = re.compile(r"^(\S+ \S+)\+0000: \d+: \w+ : (\w+):\d+ : (.*)")


def libvirt_phases(path, names):
    """From libvirtd's debug log: per domain start, ms from launching the
    emulator to libvirt connecting its monitor, to QEMU's greeting, to the
    first answer (QEMU answers commands once its main loop runs, which may
    be well after the greeting), and from that answer to `cont` (libvirt's
    conversation), for both kinds."""
    found = {kind: [] for kind in names}
    current = None
    with open(path, errors="replace") as f:
        for line in f:
            m = LIBVIRT_LOG_LINE.match(line)
            if not m:
                continue
            when = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            fn, msg = m[2], m[3]
            if fn == "qemuProcessLaunch" and " name=" in msg:
                name = re.search(r" name=(\S+)", msg)[1]
                kind = [k for k, n in names.items() if n == name]
                current = {"kind": kind[0], "t0": when} if kind else None
                if current:
                    found[current["kind"]].append(current)
            elif current is None:
                continue
            elif fn == "qemuMonitorOpenInternal":
                current.setdefault("monitor", when)
            elif fn == "qemuMonitorJSONIOProcessLine" and '{"QMP"' in msg:
                current.setdefault("greeting", when)
            elif fn == "qemuMonitorJSONIOProcessLine" and '{"return"' in msg:
                current.setdefault("answer", when)
            elif fn == "qemuMonitorSend" and '"execute":"cont"' in msg:
                current.setdefault("cont", when)
                current["commands"] = current.get("commands", 0) + 1
            elif fn == "qemuMonitorSend":
                current["commands"] = current.get("commands", 0) + 1
    phases = {}
    for kind, starts in found.items():
        starts = [s for s in starts[1:] if {"monitor", "greeting", "answer", "cont"} <= set(s)]
        if starts:
            phases[kind] = {
                "starts": len(starts),
                "launch to monitor connected": statistics.median(
                    (s["monitor"] - s["t0"]) * 1000 for s in starts),
                "launch to QEMU's greeting": statistics.median(
                    (s["greeting"] - s["t0"]) * 1000 for s in starts),
                "launch to first answer": statistics.median(
                    (s["answer"] - s["t0"]) * 1000 for s in starts),
                "first answer to cont": statistics.median(
                    (s["cont"] - s["answer"]) * 1000 for s in starts),
                "commands": statistics.median(s["commands"] for s in starts),
            }
    return phases


def virsh(*args, timeout=120, check=True):
    return tl.run([tl.VIRSH, "-c", tl.URI] + list(args), timeout=timeout, check=check)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def children(pid):
    """The processes whose parent is pid (qmproxy is QEMU's child)."""
    found = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return found


def cpu_ms(pid):
    """CPU time the process has used so far, all its threads (schedstat)."""
    total = 0
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError):
        pass
    return total / 1e6


def wall(stamp):
    """The traffic log's time stamp as seconds since the epoch."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class Bench:
    def __init__(self, work):
        self.work = work
        self.traffic_dir = os.path.join(work, "traffic")
        self.trace = os.path.join(work, "wrapper.trace")
        # as the README's installation has it: a traffic log, a state file
        self.emulator = tl.wrapper_emulator(
            work, self.traffic_dir, '--state "$DOMAIN_DIR/qmproxy.state"',
            "QMPROXY_WRAPPER_TRACE=%s\n" % self.trace)
        self.domains = {}
        for kind, emulator in (("direct", os.path.abspath(QEMU_BIN)),
                               ("qmproxy", self.emulator)):
            name = "qmpx-bench-" + kind
            disk = os.path.join(work, name + ".qcow2")
            tl.run([QEMU_IMG, "create", "-q", "-f", "qcow2", disk, "64M"])
            xml = os.path.join(work, name + ".xml")
            with open(xml, "w") as f:
                f.write(tl.domain_xml(name, emulator, disk, machine="q35"))
            virsh("destroy", name, check=False)     # leftovers of an aborted run
            virsh("undefine", name, check=False)
            virsh("define", xml)
            self.domains[kind] = name

    def start(self, kind):
        """virsh start, timed; then destroy, and wait until QEMU (and
        qmproxy) are gone.  Returns (seconds, breakdown or None)."""
        name = self.domains[kind]
        log = os.path.join(self.traffic_dir, name + ".jsonl")
        log_at = os.path.getsize(log) if os.path.exists(log) else 0
        if os.path.exists(self.trace):
            os.unlink(self.trace)
        t0 = time.time()
        virsh("start", name)
        t1 = time.time()
        with open("/run/libvirt/qemu/%s.pid" % name) as f:
            pid = int(f.read().strip())
        breakdown = self.breakdown(log, log_at, t0, t1) if kind == "qmproxy" else None
        proxies = [p for p in children(pid) if tl.alive(p)]
        if breakdown is not None:
            # CPU time is what a loaded machine cannot blur
            breakdown["(qmproxy's CPU time, ms)"] = sum(cpu_ms(p) for p in proxies)
            breakdown["(QEMU's CPU time, ms)"] = cpu_ms(pid)
        virsh("destroy", name)
        wait_for(lambda: not tl.alive(pid), timeout=30, what="QEMU to end")
        wait_for(lambda: not any(tl.alive(p) for p in proxies), timeout=30,
                 what="qmproxy to end")
        return t1 - t0, breakdown

    def breakdown(self, log, log_at, t0, t1):
        """Milliseconds from `virsh start` to each step of the proxied start."""
        steps = {}
        try:
            with open(self.trace) as f:
                for line in f:
                    when, _pid, step = line.split()
                    steps.setdefault("wrapper " + step, float(when))
        except OSError:
            pass
        with open(log) as f:
            f.seek(log_at)
            lines = [json.loads(x) for x in f if x.strip()]
        own = [t for t in lines if t.get("client") == 0]
        libvirt = [t for t in lines if t.get("client") == 1]
        if own:
            steps["qmproxy has QEMU's greeting"] = wall(own[0]["time"])
        accepted = [t for t in libvirt if t.get("kind") == "greeting"]
        if accepted:
            before = [t for t in own if t["time"] <= accepted[0]["time"]]
            if before:
                steps["qmproxy's own queries answered"] = wall(before[-1]["time"])
            steps["libvirt gets its greeting"] = wall(accepted[0]["time"])
        commands = [t for t in libvirt if t["dir"] == "in" and t["kind"] == "command"]
        replies = [t for t in libvirt if t["dir"] == "out" and t["kind"] == "reply"]
        if replies:
            steps["libvirt's last reply"] = wall(replies[-1]["time"])
        steps["virsh start returns"] = t1
        result = {k: (v - t0) * 1000 for k, v in steps.items()}
        result["(libvirt commands)"] = len(commands)
        result["(QEMU's time for them, ms)"] = sum(
            t.get("latency_us", 0) for t in replies) / 1000
        result["(qmproxy's own commands)"] = len(
            [t for t in own if t["dir"] == "in" and t["kind"] == "command"])
        return result

    def libvirt_sequence(self):
        """The read-only commands libvirt sent during the proxied domain's
        last start, in order, as it sent them (its ids included)."""
        log = os.path.join(self.traffic_dir, self.domains["qmproxy"] + ".jsonl")
        with open(log) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        starts = [i for i, t in enumerate(lines)
                  if t.get("client") == 0 and t.get("kind") == "greeting"]
        last = lines[starts[-1]:] if starts else lines
        sent = [t["msg"] for t in last if t.get("client") == 1
                and t["dir"] == "in" and t["kind"] == "command"]
        replayable = [m for m in sent if m.get("execute", "").startswith(
            ("query-", "qom-list", "qom-get"))]
        return sent, replayable

    def cleanup(self):
        for name in self.domains.values():
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
        tl.forget_capabilities(self.emulator)


def replay(work, sequence, count):
    """Time libvirt's start sequence directly, through qmproxy and through
    relayfloor, alternated; returns {name: median ms per sequence}."""
    rdir = os.path.join(work, "replay")
    os.makedirs(rdir)
    script = os.path.join(rdir, "libvirt-start.qmp")
    with open(script, "w") as f:
        for m in sequence:
            f.write(json.dumps(m) + "\n")
    qemu = QEMU(rdir, shape="q35", disks=1, monitors=3)
    proxy = floor = None
    try:
        proxy = Proxy(rdir, qemu.monitors[1], args=(
            "--traffic-log", os.path.join(rdir, "traffic.jsonl"),
            "--state", os.path.join(rdir, "qmproxy.state")))
        floor_sock = os.path.join(rdir, "floor.sock")
        floor = subprocess.Popen([RELAYFLOOR, floor_sock, qemu.monitors[2]])
        wait_for(lambda: os.path.exists(floor_sock), what="relayfloor")
        out = subprocess.run(
            [QMPBENCH, "--script", script, "--count", str(count),
             "--target", "direct=" + qemu.monitors[0],
             "--target", "qmproxy=" + proxy.listen,
             "--target", "relayfloor=" + floor_sock],
            check=True, capture_output=True, text=True).stdout
        return {r["target"]: r["median_us"] / 1000
                for r in (json.loads(x) for x in out.splitlines())}
    finally:
        if floor and floor.poll() is None:
            floor.kill()
            floor.wait()
        if proxy:
            proxy.stop()
        qemu.stop()


def print_replay(work, bench, count, direct_start, proxied_start):
    sent, sequence = bench.libvirt_sequence()
    ms = replay(work, sequence, count)
    d, q, f = ms["direct"], ms["qmproxy"], ms["relayfloor"]
    print("\nlibvirt's start sequence replayed (%d of its %d commands: the "
          "read-only ones), medians of %d, ms:" % (len(sequence), len(sent), count))
    print("  direct      %7.1f" % d)
    print("  qmproxy     %7.1f  (+%.1f, %.1f us a command)" % (
        q, q - d, (q - d) * 1000 / len(sequence)))
    print("  relayfloor  %7.1f  (+%.1f, %.1f us a command)" % (
        f, f - d, (f - d) * 1000 / len(sequence)))
    print("  qmproxy's own work beyond a bare relay: %+.1f ms a start" % (q - f))
    print("  the start's gap (%.1f ms) against the sequence's: qmproxy %.0f%%, "
          "a bare relay %.0f%%" % (proxied_start - direct_start,
                                   100 * (q - d) / (proxied_start - direct_start),
                                   100 * (f - d) / (proxied_start - direct_start))
          if proxied_start > direct_start else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-seconds", type=float, default=600,
                    help="stop after the round that passes this (default 600)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--replays", type=int, default=20,
                    help="how many times to replay libvirt's start sequence (default 20)")
    ap.add_argument("--no-replay", action="store_true",
                    help="skip the replay that takes the start's ratio apart")
    ap.add_argument("--shared", action="store_true",
                    help="use the machine's libvirt folders (and a libvirtd already running)")
    ap.add_argument("--libvirt-debug", action="store_true",
                    help="(with the private namespace) libvirtd logs its monitor traffic "
                    "to /var/log/libvirt/libvirtd.log, copied to the kept folder")
    opts = ap.parse_args()
    if not opts.shared and os.geteuid() == 0:
        isolate()
        if opts.libvirt_debug:
            libvirt_debug_log()

    setup = tl.LibvirtSetup()
    try:
        setup.start()
    except tl.unittest.SkipTest as e:
        print("cannot run: %s" % e)
        return 77
    work = tempfile.mkdtemp(prefix="qmproxy-bench-libvirt-")
    os.chmod(work, 0o755)
    bench = None
    try:
        bench = Bench(work)
        # the first start of each probes the emulator's capabilities
        for kind in ("direct", "qmproxy"):
            bench.start(kind)
        times = {"direct": [], "qmproxy": []}
        breakdowns = []
        began = time.monotonic()
        load_before = loadavg()
        for i in range(opts.rounds):
            order = ("direct", "qmproxy") if i % 2 == 0 else ("qmproxy", "direct")
            for kind in order:
                seconds, breakdown = bench.start(kind)
                times[kind].append(seconds)
                if breakdown:
                    breakdowns.append(breakdown)
            print("round %d: direct %.0f ms, qmproxy %.0f ms" % (
                i + 1, times["direct"][-1] * 1000, times["qmproxy"][-1] * 1000), flush=True)
            if time.monotonic() - began > opts.max_seconds:
                print("(stopping: --max-seconds %g passed)" % opts.max_seconds)
                break
        direct = statistics.median(times["direct"])
        proxied = statistics.median(times["qmproxy"])
        print("\nvirsh start of a small q35 domain, medians of %d:" % len(times["direct"]))
        print("  direct   %7.1f ms  (%s)" % (direct * 1000, " ".join(
            "%.0f" % (t * 1000) for t in times["direct"])))
        print("  qmproxy  %7.1f ms  (%s)" % (proxied * 1000, " ".join(
            "%.0f" % (t * 1000) for t in times["qmproxy"])))
        print("  ratio    %7.3f    (target <= 1.05)" % (proxied / direct))
        print("  paired   %7.3f    (median of each round's qmproxy/direct)" % statistics.median(
            q / d for q, d in zip(times["qmproxy"], times["direct"])))
        print("  load average before and after: %s; %s" % (load_before, loadavg()))
        print("\nwhere the proxied start spends its time (ms after `virsh start`, medians):")
        keys = []
        for b in breakdowns:
            keys += [k for k in b if k not in keys]
        for k in sorted((k for k in keys if not k.startswith("(")),
                        key=lambda k: statistics.median(b[k] for b in breakdowns if k in b)):
            print("  %8.1f  %s" % (statistics.median(b[k] for b in breakdowns if k in b), k))
        for k in (k for k in keys if k.startswith("(")):
            print("  %8.1f  %s" % (statistics.median(b[k] for b in breakdowns if k in b), k))
        if not opts.no_replay:
            print_replay(work, bench, opts.replays, direct * 1000, proxied * 1000)
        if opts.libvirt_debug and not opts.shared:
            phases = libvirt_phases("/var/log/libvirt/libvirtd.log", bench.domains)
            print("\nfrom libvirtd's debug log (slower than without it; ms, medians):")
            for kind, p in phases.items():
                print("  %-8s %s" % (kind, ", ".join(
                    "%s %.0f" % (k, v) for k, v in p.items())))
    finally:
        if bench:
            bench.cleanup()
        setup.stop()
        if opts.keep:
            if not opts.shared:
                shutil.copytree("/var/log/libvirt", os.path.join(work, "libvirt-log"))
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
