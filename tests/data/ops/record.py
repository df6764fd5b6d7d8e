#!/usr/bin/env python3
"""Record real operations for the operations' unit tests
(tests/unit/test_operations.c), which replay them through a scripted QEMU
peer without starting QEMU.

    python3 tests/data/ops/record.py [OUTDIR]   (default: this folder)

Each scenario starts QEMU 7.2 (-M none, two -drive disks, as
tests/integration/qmptest.py does) and qmproxy with --traffic-log, runs
one client's commands, and keeps the traffic log as the recording: every
line the proxy wrote to QEMU, every line QEMU wrote back (replies and
events, in the order the proxy read them), and the client's commands and
the replies it got.  The images live under a fixed folder (/tmp/qmpops) so
the paths do not change between recordings; the replay makes the same
folders.
"""
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

import qmptest  # noqa: E402

ROOT = "/tmp/qmpops"


def scenario(name, out_dir, steps):
    shutil.rmtree(ROOT, ignore_errors=True)
    for sub in ("src", "dest"):
        os.makedirs(os.path.join(ROOT, sub))
    qemu = qmptest.QEMU(ROOT, shape="none", disks=2, monitors=1,
                        image_dir=os.path.join(ROOT, "src"))
    tlog = os.path.join(ROOT, "traffic.jsonl")
    proxy = qmptest.Proxy(ROOT, qemu.monitors[0], args=["--traffic-log", tlog])
    try:
        c = qmptest.QMPClient(proxy.listen).negotiate()
        for cmd in steps:
            reply = c.cmd(cmd["execute"], cmd.get("arguments"), id=cmd["id"])
            if "error" in reply:
                raise RuntimeError("%s: %s" % (cmd["id"], reply))
        c.close()
        time.sleep(0.3)
    finally:
        proxy.stop()
        qemu.stop()
    with open(tlog) as f, open(os.path.join(out_dir, name + ".jsonl"), "w") as out:
        for line in f:
            entry = json.loads(line)
            if "note" in entry:
                continue
            del entry["time"]
            entry.pop("latency_us", None)
            out.write(json.dumps(entry) + "\n")
    print("recorded", name)


def snapshot_mirror(name):
    return {"execute": "qmproxy-snapshot-mirror", "id": "snapmirror", "arguments": {
        "name": name, "disks": [
            {"disk": "disk%d" % i, "snapshot-file": "%s/src/snap%d.qcow2" % (ROOT, i),
             "mirror-file": "%s/dest/snap%d.qcow2" % (ROOT, i)} for i in (0, 1)]}}


# The client asks for the chains at the end: the job events' predictions
# are checked with QEMU then (the proxy asks nothing because of an event),
# so the recording ends with QEMU's answers about the chains as they are.
CHECK = {"execute": "qmproxy-query-chain", "id": "check"}


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else HERE
    scenario("mirror-reopen", out_dir, [
        snapshot_mirror("move"),
        {"execute": "qmproxy-snapshot-reopen", "id": "reopen",
         "arguments": {"name": "move", "target": "mirror"}},
        CHECK])
    scenario("mirror-abort", out_dir, [
        snapshot_mirror("undo"),
        {"execute": "qmproxy-snapshot-abort", "id": "abort", "arguments": {"name": "undo"}},
        CHECK])


if __name__ == "__main__":
    main()
