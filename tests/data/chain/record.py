#!/usr/bin/env python3
"""Record what a real QEMU 7.2 says to the chain model's commands, for the
unit tests of the model (tests/unit/test_chain_model.c), which replay it
through a scripted QEMU peer without starting QEMU.

    python3 tests/data/chain/record.py [OUTDIR]   (default: this folder)

Each scenario starts a fresh QEMU in one of the two shapes the integration
tests use (tests/integration/qmptest.py: "none" is -M none with -drive
if=none, "q35" is -M q35 -S with -blockdev and virtio-blk) and writes the
conversation on its first monitor to OUTDIR/<shape>.qmp, one message per
line: each command as it was sent (with an "id" naming the step, so a test
finds QEMU's reply by that id), then whatever QEMU wrote, exactly, events
included, in the order QEMU wrote it.  After each step the four questions
the proxy asks (query-block, query-block-jobs, query-named-block-nodes
flat, x-debug-query-block-graph) are asked with ids "<step>/<command>".

The images live under a fixed folder (/tmp/qmpc) so the paths in the
fixtures do not change from one recording to the next; it is emptied first.
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

import qmptest  # noqa: E402  (QEMU as the integration tests start it)

ROOT = "/tmp/qmpc"
SIZE = "64M"   # a throttled copy of 32 MiB stays running
QUERIES = (("query-block", None), ("query-block-jobs", None),
           ("query-named-block-nodes", {"flat": True}),
           ("x-debug-query-block-graph", None))


class Recorder:
    def __init__(self, shape, disks, out, name=None):
        self.dir = os.path.join(ROOT, name or shape)
        os.makedirs(self.dir)
        self.qemu = qmptest.QEMU(self.dir, shape=shape, disks=disks,
                                 disk_size=SIZE)
        self.mon = qmptest.QMPClient(self.qemu.monitors[0])
        self.other = qmptest.QMPClient(self.qemu.monitors[1]).negotiate()
        self.out = open(out, "w")
        self.write(self.mon.greeting)
        self.send("qmp_capabilities", None, None)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, raw):
        self.out.write(raw.decode().rstrip("\r\n") + "\n")

    def send(self, command, args, label):
        msg = {"execute": command}
        if args is not None:
            msg["arguments"] = args
        if label is not None:
            msg["id"] = label
        text = json.dumps(msg)
        self.write(text.encode())
        self.seen = []
        self.mon.send(text)
        while True:
            line = self.mon.read_line()
            self.write(line)
            reply = json.loads(line)
            if "event" in reply:
                self.seen.append(reply)
            else:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (label, reply))
                return reply

    def step(self, label, command, args, ready=None, gone=None, ask=True):
        """Send a command, wait for job ready's BLOCK_JOB_READY or for job
        gone's end, then ask the four questions (with ids "ask/...": ask
        is the label, another name, or False for none)."""
        self.send(command, args, label)
        if ready:
            self.until("BLOCK_JOB_READY", device=ready)
        if gone:
            self.job_gone(gone)
        if ask:
            self.queries(label if ask is True else ask)

    def until(self, event, **data):
        """Read (and record) up to the event whose data has these members
        (QEMU may have sent it before its reply to the last command)."""
        def wanted(msg):
            return msg.get("event") == event and all(
                msg.get("data", {}).get(k) == v for k, v in data.items())
        for msg in self.seen:
            if wanted(msg):
                return msg
        while True:
            line = self.mon.read_line()
            self.write(line)
            msg = json.loads(line)
            if wanted(msg):
                return msg

    def job_gone(self, job):
        self.until("JOB_STATUS_CHANGE", id=job, status="null")

    def queries(self, step):
        for command, args in QUERIES:
            self.send(command, args, "%s/%s" % (step, command))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.mon.close()
        self.other.close()
        self.qemu.stop()
        self.out.close()


def record_none(out):
    """-M none, two -drive if=none disks: device names, generated node
    names, every kind of job."""
    with Recorder("none", 2, out) as r:
        none_steps(r)


def none_steps(r):
    d0, d1 = "disk0", "disk1"
    r.queries("seed")

    r.step("snap", "blockdev-snapshot-sync",
           {"device": d0, "snapshot-file": r.path("d0-s1.qcow2"),
            "snapshot-node-name": "d0s1", "format": "qcow2"})

    r.step("txn", "transaction", {"actions": [
        {"type": "blockdev-snapshot-sync",
         "data": {"device": d0, "snapshot-file": r.path("d0-s2.qcow2"),
                  "snapshot-node-name": "d0s2", "format": "qcow2"}},
        {"type": "blockdev-snapshot-sync",
         "data": {"device": d1, "snapshot-file": r.path("d1-s1.qcow2"),
                  "snapshot-node-name": "d1s1", "format": "qcow2"}}]})

    # another monitor takes a snapshot the proxy never sees, then this one
    # takes one: QEMU's chain has a layer the prediction lacks
    r.other.ok("blockdev-snapshot-sync",
               {"device": d1, "snapshot-file": r.path("d1-s2.qcow2"),
                "snapshot-node-name": "d1s2", "format": "qcow2"})
    r.step("behind", "blockdev-snapshot-sync",
           {"device": d1, "snapshot-file": r.path("d1-s3.qcow2"),
            "snapshot-node-name": "d1s3", "format": "qcow2"})

    # a copy of the active layer, with data to copy and held back
    # (1 byte/s) to be seen running, then let go, then pivoted
    r.qemu.io(r.other, 0, "write 0 32M")
    r.step("mirror", "drive-mirror",
           {"device": d0, "job-id": "m0", "target": r.path("d0-m.qcow2"),
            "format": "qcow2", "sync": "top", "mode": "absolute-paths",
            "speed": 1})
    r.step("speed", "block-job-set-speed", {"device": "m0", "speed": 0},
           ready="m0", ask="ready")
    r.step("complete", "block-job-complete", {"device": "m0"}, gone="m0")

    # a copy cancelled once ready: QEMU reports it COMPLETED, no pivot
    r.step("mirror2", "drive-mirror",
           {"device": d0, "job-id": "m1", "target": r.path("d0-m2.qcow2"),
            "format": "qcow2", "sync": "top", "mode": "absolute-paths"},
           ready="m1")
    r.step("cancel", "block-job-cancel", {"device": "m1"}, gone="m1")

    # an intermediate commit: d0-s1 folded into disk0.qcow2
    r.step("commit", "block-commit",
           {"device": d0, "job-id": "c0", "top": r.path("d0-s1.qcow2"),
            "base": r.path("disk0.qcow2")}, gone="c0")

    # an active commit, pivoted: the disk is its base again
    r.step("acommit", "block-commit", {"device": d0, "job-id": "c1"},
           ready="c1")
    r.step("acomplete", "block-job-complete", {"device": "c1"}, gone="c1")

    # a stream down to d1-s1: d1-s2 goes
    r.step("stream", "block-stream",
           {"device": d1, "job-id": "st0", "base": r.path("d1-s1.qcow2")},
           gone="st0")


def record_q35(out):
    """-M q35 -S, -blockdev and virtio-blk (libvirt's way): no device
    names, the qdev id names the disk, node-names are libvirt's."""
    with Recorder("q35", 1, out) as r:
        q35_steps(r)


def q35_steps(r):
    r.queries("seed")

    r.step("snap", "blockdev-snapshot-sync",
           {"node-name": "fmt0", "snapshot-file": r.path("q-s1.qcow2"),
            "snapshot-node-name": "qs1", "format": "qcow2"})

    # libvirt: the image made beforehand, its nodes added, then attached
    qmptest.qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                     r.path("q-s1.qcow2"), r.path("q-s2.qcow2"), SIZE)
    r.step("add-file", "blockdev-add",
           {"driver": "file", "filename": r.path("q-s2.qcow2"),
            "node-name": "qs2-file"}, ask=False)
    r.step("add-fmt", "blockdev-add",
           {"driver": "qcow2", "file": "qs2-file", "node-name": "qs2",
            "backing": None}, ask=False)
    r.step("bsnap", "blockdev-snapshot", {"node": "qs1", "overlay": "qs2"})

    # libvirt's copy: the target added as nodes, blockdev-mirror, pivot
    qmptest.qemu_img("create", "-q", "-f", "qcow2", r.path("q-m.qcow2"), SIZE)
    r.step("add-mfile", "blockdev-add",
           {"driver": "file", "filename": r.path("q-m.qcow2"),
            "node-name": "qm-file"}, ask=False)
    r.step("add-mfmt", "blockdev-add",
           {"driver": "qcow2", "file": "qm-file", "node-name": "qm"},
           ask=False)
    r.step("bmirror", "blockdev-mirror",
           {"device": "qs2", "job-id": "bm0", "target": "qm",
            "sync": "full"}, ready="bm0")
    r.step("bcomplete", "block-job-complete", {"device": "bm0"},
           gone="bm0")


def record_filters(out):
    """q35 as libvirt runs it: a pull-mode backup puts QEMU's
    copy-before-write filter on the disk (query-block lists it as an
    image), then block_resize by node-name."""
    with Recorder("q35", 1, out, name="filters") as r:
        filters_steps(r)


def filters_steps(r):
    r.queries("seed")
    # libvirt's scratch: an image whose backing is the disk's node
    qmptest.qemu_img("create", "-q", "-f", "qcow2", r.path("scratch.qcow2"),
                     SIZE)
    r.step("add-scratch", "blockdev-add",
           {"driver": "qcow2", "node-name": "scratch", "backing": "fmt0",
            "file": {"driver": "file", "filename": r.path("scratch.qcow2")}},
           ask=False)
    r.step("backup", "blockdev-backup",
           {"job-id": "pull", "device": "fmt0", "target": "scratch",
            "sync": "none"})
    r.step("bcancel", "block-job-cancel", {"device": "pull"}, gone="pull")
    # the scratch holds the disk's node as its backing: a resize waits
    r.step("del-scratch", "blockdev-del", {"node-name": "scratch"}, ask=False)
    r.step("resize", "block_resize", {"node-name": "fmt0",
                                      "size": 128 << 20})


RECORDINGS = {"none": record_none, "q35": record_q35,
              "filters": record_filters}


def main():
    """record.py [OUTDIR [NAME...]]: every recording, or those named."""
    outdir = sys.argv[1] if len(sys.argv) > 1 else HERE
    names = sys.argv[2:] or list(RECORDINGS)
    shutil.rmtree(ROOT, ignore_errors=True)
    try:
        for name in names:
            RECORDINGS[name](os.path.join(outdir, name + ".qmp"))
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
