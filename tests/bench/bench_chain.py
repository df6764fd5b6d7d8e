#!/usr/bin/env python3
"""The chain model's cost with the size of the VM; prints figures, asserts
nothing.

For 1, 16 and 64 disks, each with a backing chain 1, 25 and 100 deep
(qcow2 images made with qemu-img, QEMU 7.2 -M none with -drive disks),
measured in the same run against QEMU answering directly:

  query-chain   qmproxy-query-chain (nothing changed since the last one:
                the proxy asks for the block graph and reads each layer's
                image header, the freshness check) against one direct
                query-block.  Target at 16 x 25: <= 1.0.
  snapshot      a transaction of blockdev-snapshot-sync of every disk through
                qmproxy against the same transaction sent directly (the proxy
                follows it and asks QEMU afterwards).  Target at 16 x 25:
                <= 1.05.
  job event     one copy (drive-mirror sync=top, READY, cancelled) on disk 0:
                the proxy's own commands to QEMU from the copy's start to
                its end (count and bytes, both ways), per job event QEMU
                sent, against what one whole-VM question costs (query-block,
                query-block-jobs and x-debug-query-block-graph asked
                directly: what the proxy asked twice per job before its
                events were predicted).  Then the first qmproxy-query-chain
                after the copy's end: the check it pays (commands, bytes)
                and its time against a direct query-block.  Target: traffic
                per job event bounded by the disks the event concerns, not
                by the whole VM.
  behind        a snapshot of every disk through a second monitor, then
                qmproxy-query-chain (it finds the change and asks QEMU
                again): its time against a direct query-block.

Medians of --rounds; proxy and direct rounds alternate.  A snapshot's time
is mostly QEMU creating the overlay files, which varies a lot on a shared
disk, so the proxy's own share is printed too: the client's time less
QEMU's time for the command as qmproxy measured it (its round trip, from
writing the command to reading the reply).

Everything the proxy itself counts is read from its --metrics endpoint (on
a loopback port), scraped only between the timed commands, never during
them: QEMU's time for a command (qmproxy_command_duration_seconds), the
proxy's own commands to QEMU by name and their bytes both ways
(qmproxy_upstream_commands_total and _command_bytes_total, origin
"proxy"), and QEMU's events (qmproxy_events_total).  Counters lose
nothing, whatever the size of QEMU's answers (a traffic log's ring did, at
64 x 100); no traffic log is written.

    tests/bench/bench_chain.py [--disks 1,16,64] [--depths 1,25,100]
                               [--rounds 9] [--work DIR]

The images are kept in --work (default /tmp/qmproxy-bench-chain) and reused
by the next run: making 64 chains of 100 takes a minute or two.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from qmptest import QEMU_BIN, QEMU_IMG, QMPClient, Proxy, wait_for  # noqa: E402
from test_metrics import free_port, http_get, parse  # noqa: E402


def make_chains(work, disks, depth, size="64M"):
    """disks chains of depth qcow2 images (layer 0 the base), made with
    qemu-img, two at a time; returns each disk's top file."""
    tops = []
    pending = []
    for d in range(disks):
        folder = os.path.join(work, "images", "disk%d" % d)
        os.makedirs(folder, exist_ok=True)
        tops.append(os.path.join(folder, "layer%d.qcow2" % (depth - 1)))
    for layer in range(depth):
        for d in range(disks):
            folder = os.path.join(work, "images", "disk%d" % d)
            path = os.path.join(folder, "layer%d.qcow2" % layer)
            if os.path.exists(path):
                continue
            args = [QEMU_IMG, "create", "-q", "-f", "qcow2"]
            if layer:
                # -u: the backing is not opened (it exists; its size is given)
                args += ["-u", "-b", "layer%d.qcow2" % (layer - 1), "-F", "qcow2"]
            pending.append(subprocess.Popen(args + [path, size]))
            if len(pending) >= 2:
                for p in pending:
                    if p.wait() != 0:
                        raise RuntimeError("qemu-img create failed")
                pending = []
    for p in pending:
        if p.wait() != 0:
            raise RuntimeError("qemu-img create failed")
    return tops


class Cell:
    """A QEMU with disks x depth and a qmproxy in front of it."""

    def __init__(self, work, tops):
        self.dir = os.path.join(work, "run")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.monitors = [os.path.join(self.dir, "qmp%d.sock" % i) for i in range(3)]
        args = [QEMU_BIN, "-nodefaults", "-display", "none", "-no-user-config",
                "-M", "none"]
        for i, top in enumerate(tops):
            args += ["-drive", "if=none,id=disk%d,file=%s,format=qcow2" % (i, top)]
        for m in self.monitors:
            args += ["-qmp", "unix:%s,server=on,wait=off" % m]
        self.log = open(os.path.join(self.dir, "qemu.log"), "ab")
        self.qemu = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_for(lambda: all(os.path.exists(m) for m in self.monitors)
                 or self.qemu.poll() is not None, timeout=300, what="QEMU's monitors")
        if self.qemu.poll() is not None:
            raise RuntimeError("QEMU exited")
        self.metrics_port = free_port()
        self.proxy = Proxy(self.dir, self.monitors[0],
                           args=["--metrics", "tcp:127.0.0.1:%d" % self.metrics_port])
        self.p = QMPClient(self.proxy.listen, timeout=600)
        self.p.negotiate()
        self.p.ok("qmproxy-capabilities")
        self.d = QMPClient(self.monitors[1], timeout=600)
        self.d.negotiate()
        self.behind = QMPClient(self.monitors[2], timeout=600)
        self.behind.negotiate()
        self.snaps = 0

    def stop(self):
        for c in (self.p, self.d, self.behind):
            c.close()
        self.proxy.stop()
        self.qemu.terminate()
        try:
            self.qemu.wait(30)
        except subprocess.TimeoutExpired:
            self.qemu.kill()
            self.qemu.wait()
        self.log.close()


def timed(client, name, args=None):
    t0 = time.perf_counter()
    r = client.cmd(name, args)
    elapsed = time.perf_counter() - t0
    if "return" not in r:
        raise RuntimeError("%s: %s" % (name, r))
    return elapsed


def snapshot_actions(cell, disks):
    cell.snaps += 1
    return {"actions": [{"type": "blockdev-snapshot-sync", "data": {
        "device": "disk%d" % i, "format": "qcow2",
        "snapshot-file": os.path.join(cell.dir, "s%d-%d.qcow2" % (cell.snaps, i))}}
        for i in range(disks)]}


def scrape(cell):
    """The proxy's metrics, {(name, frozenset(labels)): value}."""
    return parse(http_get(cell.metrics_port)[2])


def quiet_scrape(cell, settle=0.5, tries=60):
    """A scrape once the proxy has nothing in flight to QEMU and two
    scrapes settle apart agree on its own commands (its questions after a
    change all answered)."""
    last = None
    for _ in range(tries):
        s = scrape(cell)
        own = own_traffic(s)
        if last == own and s.get(("qmproxy_upstream_commands_in_flight",
                                  frozenset())) == 0:
            return s
        last = own
        time.sleep(settle)
    raise RuntimeError("the proxy's questions to QEMU did not settle")


def own_traffic(s):
    """The proxy's own commands to QEMU (name -> count), the bytes of those
    commands and of QEMU's answers to them, and QEMU's job events."""
    commands, events = {}, 0
    sent = received = 0
    for (name, labels), v in s.items():
        labels = dict(labels)
        if name == "qmproxy_upstream_commands_total" and labels["origin"] == "proxy":
            commands[labels["command"]] = int(v)
        elif name == "qmproxy_upstream_command_bytes_total" \
                and labels["origin"] == "proxy":
            if labels["direction"] == "sent":
                sent = int(v)
            else:
                received = int(v)
        elif name == "qmproxy_events_total" and "JOB" in labels["event"]:
            events += int(v)
    return {"commands": commands, "sent": sent, "replies": received,
            "events": events}


def traffic_between(before, after):
    """What own_traffic counted from the scrape before to the one after."""
    a, b = own_traffic(before), own_traffic(after)
    commands = {k: v - a["commands"].get(k, 0) for k, v in b["commands"].items()
                if v != a["commands"].get(k, 0)}
    return {"commands": commands, "sent": b["sent"] - a["sent"],
            "replies": b["replies"] - a["replies"],
            "events": b["events"] - a["events"]}


def qemu_seconds(s, command):
    """The sum of QEMU's round trips for clients' commands of this name."""
    return s.get(("qmproxy_command_duration_seconds_sum",
                  frozenset({"command": command}.items())), 0.0)


def measure(cell, disks, rounds):
    out = {}
    p, d = cell.p, cell.d
    timed(p, "qmproxy-query-chain")
    qb, qc, qg = [], [], []
    for _ in range(rounds):
        qb.append(timed(d, "query-block"))
        qc.append(timed(p, "qmproxy-query-chain"))
        qg.append(timed(d, "x-debug-query-block-graph"))
    out["query-block"] = statistics.median(qb)
    out["query-chain"] = statistics.median(qc)
    out["graph"] = statistics.median(qg)

    sp, sd, added = [], [], []
    for _ in range(rounds):
        before = qemu_seconds(scrape(cell), "transaction")
        sp.append(timed(p, "transaction", snapshot_actions(cell, disks)))
        # QEMU's time for this proxied transaction (creating the overlays
        # dominates and varies with the disk): what the proxy added is the
        # rest
        added.append(sp[-1] - (qemu_seconds(scrape(cell), "transaction") - before))
        timed(p, "qmproxy-query-chain")   # the proxy's questions answered
        sd.append(timed(d, "transaction", snapshot_actions(cell, disks)))
        timed(p, "qmproxy-query-chain")   # found behind its back
    out["snap-proxy"] = statistics.median(sp)
    out["snap-direct"] = statistics.median(sd)
    out["snap-added"] = statistics.median(added)

    bh = []
    for _ in range(rounds):
        cell.behind.ok("transaction", snapshot_actions(cell, disks))
        bh.append(timed(p, "qmproxy-query-chain"))
    out["behind"] = statistics.median(bh)

    # one copy on disk 0, from start to end
    before = quiet_scrape(cell)
    target = os.path.join(cell.dir, "copy.qcow2")
    p.ok("drive-mirror", {"device": "disk0", "job-id": "bench-copy", "sync": "top",
                          "target": target, "format": "qcow2"})
    p.wait_event("BLOCK_JOB_READY", timeout=600)
    p.ok("block-job-cancel", {"device": "bench-copy"})
    p.wait_event("BLOCK_JOB_COMPLETED", timeout=600)
    # the job's own questions, and no client's: the job's last event, then
    # the proxy's counters settled with nothing in flight (its answers all
    # in); no job is left for a scrape to ask QEMU the progress of
    p.wait_event("JOB_STATUS_CHANGE", timeout=600,
                 pred=lambda e: e["data"].get("status") == "null")
    ended = quiet_scrape(cell)
    out["job"] = traffic_between(before, ended)
    # the check, paid by the first query after the job's end
    out["after-job"] = timed(p, "qmproxy-query-chain")
    out["check"] = traffic_between(ended, quiet_scrape(cell))
    # one whole-VM question, asked directly: its answers' bytes
    out["query-block-bytes"] = len(json.dumps(d.cmd("query-block")))
    out["whole-vm-bytes"] = sum(
        len(json.dumps(d.cmd(q))) + 2 + len('{"execute": "%s"}' % q) + 2
        for q in ("query-block", "query-block-jobs", "x-debug-query-block-graph"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--disks", default="1,16,64")
    ap.add_argument("--depths", default="1,25,100")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--work", default="/tmp/qmproxy-bench-chain")
    a = ap.parse_args()
    disk_counts = [int(x) for x in a.disks.split(",")]
    depths = [int(x) for x in a.depths.split(",")]
    os.makedirs(a.work, exist_ok=True)
    print("making images (qemu-img, kept in %s)..." % a.work, flush=True)
    t0 = time.monotonic()
    make_chains(a.work, max(disk_counts), max(depths))
    print("  %.0f s" % (time.monotonic() - t0), flush=True)

    rows = []
    for disks in disk_counts:
        for depth in depths:
            tops = [os.path.join(a.work, "images", "disk%d" % i,
                                 "layer%d.qcow2" % (depth - 1)) for i in range(disks)]
            cell = Cell(a.work, tops)
            try:
                r = measure(cell, disks, a.rounds)
            finally:
                cell.stop()
            rows.append((disks, depth, r))
            print("  %2d disks x %3d: done" % (disks, depth), flush=True)

    ms = lambda s: "%8.2f" % (s * 1000)  # noqa: E731
    print("\nTimes in ms (medians of %d); ratios against QEMU answering directly,"
          " measured in this run" % a.rounds)
    print("\nqmproxy-query-chain (nothing changed; one x-debug-query-block-graph"
          " and every layer's image header read to check) and after a snapshot"
          " through another monitor (found, asked again)")
    print("disks depth | query-block | query-chain ratio | graph (direct) | behind  ratio")
    for disks, depth, r in rows:
        print("%5d %5d | %s    | %s  %5.2f | %s       | %s %5.2f" % (
            disks, depth, ms(r["query-block"]), ms(r["query-chain"]),
            r["query-chain"] / r["query-block"], ms(r["graph"]),
            ms(r["behind"]), r["behind"] / r["query-block"]))
    print("\nA transaction of one blockdev-snapshot-sync per disk; 'added' is the"
          " client's time through qmproxy less QEMU's own time for it")
    print("disks depth | direct   | qmproxy  ratio | added by qmproxy  (added/direct)")
    for disks, depth, r in rows:
        print("%5d %5d | %s | %s %5.2f | %s         %5.3f" % (
            disks, depth, ms(r["snap-direct"]), ms(r["snap-proxy"]),
            r["snap-proxy"] / r["snap-direct"], ms(r["snap-added"]),
            r["snap-added"] / r["snap-direct"]))
    def names(commands):
        return ", ".join("%s %d" % (k.replace("query-", "q-").replace(
            "x-debug-q-block-graph", "graph"), v)
            for k, v in sorted(commands.items())) or "-"

    print("\nOne copy on disk 0 (drive-mirror, READY, cancel, end): the proxy's own"
          " commands to QEMU per job event (bytes both ways), against one whole-VM"
          " question asked directly (query-block + query-block-jobs + graph; the"
          " proxy asked two per job before its events were predicted)")
    print("disks depth | events | commands/event | bytes/event | whole-VM question"
          " bytes | per event / whole-VM")
    for disks, depth, r in rows:
        j = r["job"]
        per_event = (j["sent"] + j["replies"]) / max(j["events"], 1)
        print("%5d %5d | %6d | %14.2f | %11.1f | %22d | %8.4f" % (
            disks, depth, j["events"], sum(j["commands"].values()) / max(j["events"], 1),
            per_event, r["whole-vm-bytes"], per_event / r["whole-vm-bytes"]))
    print("\nThe first qmproxy-query-chain after the copy's end: the check it pays"
          " (the copy left QEMU's graph as it was: one x-debug-query-block-graph"
          " confirms the prediction)")
    print("disks depth | commands                                     | bytes"
          "      | ms       | / direct query-block")
    for disks, depth, r in rows:
        k = r["check"]
        print("%5d %5d | %-44s | %10d | %s | %5.2f" % (
            disks, depth, names(k["commands"]), k["sent"] + k["replies"],
            ms(r["after-job"]), r["after-job"] / r["query-block"]))
    for disks, depth, r in rows:
        if (disks, depth) == (16, 25):
            print("\ntargets at 16 disks x 25 layers:")
            print("  qmproxy-query-chain / direct query-block = %.2f (target <= 1.0)"
                  % (r["query-chain"] / r["query-block"]))
            print("  snapshot transaction through qmproxy / direct = %.2f, of which"
                  " qmproxy's own %.3f (target <= 1.05)"
                  % (r["snap-proxy"] / r["snap-direct"],
                     1 + r["snap-added"] / r["snap-direct"]))
    per_disks = {}
    for disks, _, r in rows:
        if r["job"]:
            n = sum(r["job"]["commands"].values())
            per_disks[disks] = max(per_disks.get(disks, 0), n)
    print("  the proxy's own commands to QEMU during a copy's job events: %s"
          " (target: bounded by the disks the event concerns, not by the whole"
          " VM; met when this does not grow with the disks)" % ", ".join(
              "%d at %d disk(s)" % (n, disks) for disks, n in sorted(per_disks.items())))

if __name__ == "__main__":
    main()
