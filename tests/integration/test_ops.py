"""The high-level operations against a real QEMU 7.2: snapshot-with-mirror,
reopen, abort, block copy, their failures and rollbacks, the XML request,
the RHEL-6 names, and operations across a proxy restart.  Data is written
through the guest's view of each disk and read back afterwards."""
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from qmptest import (ProxyTestCase, for_each_shape, qemu_img,
                     wait_for, QEMU_IO)
from test_chain import qemu_chain, proxy_chain

MiB = 1 << 20


def qemu_io_offline(image, command):
    r = subprocess.run([QEMU_IO, "-r", "-U", "-c", command, image],
                       capture_output=True, text=True)
    return r.stdout + r.stderr


class OpsTestCase(ProxyTestCase):
    image_dir = "src"
    # the listener grants the proxy's events to all its clients
    proxy_args = ("--extras", "default")

    def setUp(self):
        super().setUp()
        self.c = self.client()
        self.src = os.path.join(self.workdir, "src")
        self.dest = os.path.join(self.workdir, "dest")
        os.makedirs(self.dest, exist_ok=True)

    def start_proxy(self, args=None, **kw):
        # the traffic log shows which QMP commands the proxy itself sent
        args = list(self.proxy_args if args is None else args)
        if "--traffic-log" not in args:
            self.tlog = os.path.join(self.workdir, "traffic.jsonl")
            args += ["--traffic-log", self.tlog]
        return super().start_proxy(args=args, **kw)

    def own_commands(self):
        """The commands the proxy sent QEMU on its own, in order."""
        out = []
        with open(self.tlog) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("from") == "qmproxy" and rec.get("kind") == "command":
                    out.append(rec["msg"])
        return out

    def blockdev_way(self):
        """Does the proxy copy this shape's disks QEMU 10's way (blockdev-add,
        blockdev-mirror, blockdev-reopen) on this QEMU?  Only -blockdev disks
        (shape q35) on QEMU >= 10.0; drive-mirror otherwise."""
        v = self.c.ok("query-version")["qemu"]
        return self.shape == "q35" and (v["major"], v["minor"]) >= (10, 0)

    def assert_copy_way(self, pivoted):
        # the log is written by a thread of its own, a little later: wait
        # for the last command the operation sent
        last = "block-job-complete" if pivoted else (
            "blockdev-del" if self.blockdev_way() else "block-job-cancel")
        names = wait_for(lambda: [m["execute"] for m in self.own_commands()]
                         if last in [m["execute"] for m in self.own_commands()] else None,
                         what="%s in the traffic log" % last)
        if self.blockdev_way():
            self.assertNotIn("drive-mirror", names)
            self.assertIn("blockdev-mirror", names)
            add = [m for m in self.own_commands() if m["execute"] == "blockdev-add"]
            self.assertTrue(add, names)
            # the copy is added without a backing: it gets one before the pivot
            self.assertIsNone(add[0]["arguments"]["backing"], add[0])
            if pivoted:
                self.assertIn("blockdev-reopen", names)
                self.assertLess(names.index("blockdev-reopen"),
                                names.index("block-job-complete"), names)
            else:
                self.assertIn("blockdev-del", names)
        else:
            self.assertIn("drive-mirror", names)
            for cmd in ("blockdev-mirror", "blockdev-reopen", "blockdev-add"):
                self.assertNotIn(cmd, names)

    def write(self, disk, pattern, offset, size):
        out = self.qemu.io(self.c, disk, "write -P 0x%02x %d %d" % (pattern, offset, size))
        self.assertNotIn("error", out.lower(), out)

    def check(self, disk, pattern, offset, size):
        out = self.qemu.io(self.c, disk, "read -P 0x%02x %d %d" % (pattern, offset, size))
        self.assertNotIn("fail", out.lower(), out)
        self.assertNotIn("error", out.lower(), out)

    def tops(self):
        return [qemu_chain(self.c, i)[0][0] for i in range(self.disks)]

    def op(self, name):
        ops = self.c.ok("qmproxy-query-operations", {"name": name})
        self.assertEqual(len(ops), 1)
        return ops[0]

    def snapshot_mirror(self, name, disks, **kw):
        specs = []
        for i in disks:
            spec = {"disk": "disk%d" % i,
                    "snapshot-file": os.path.join(self.src, "snap%d.qcow2" % i),
                    "mirror-file": os.path.join(self.dest, "snap%d.qcow2" % i)}
            spec.update(kw)
            specs.append(spec)
        return self.c.cmd("qmproxy-snapshot-mirror", {"name": name, "disks": specs})


@for_each_shape
class OvirtFlow(OpsTestCase):
    """The mirrored live block migration of the RFC, end to end."""

    def test_snapshot_mirror_copy_base_reopen(self):
        base = self.qemu.images[0]
        self.write(0, 0x11, 0, MiB)
        # the destination overlay, pre-created over a base not copied yet
        dest_base = os.path.join(self.dest, "disk0.qcow2")
        dest_snap = os.path.join(self.dest, "snap0.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", dest_base, "-F", "qcow2",
                 dest_snap, "64M")
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "mig", "disks": [{
            "disk": "disk0", "snapshot-file": os.path.join(self.src, "snap0.qcow2"),
            "mirror-file": dest_snap, "mirror-mode": "existing"}]})
        self.assertEqual(r["return"]["state"], "ready", r)
        self.write(0, 0x22, MiB, MiB)
        # copy the now read-only base while the guest goes on writing
        cp = subprocess.Popen(["cp", base, dest_base])
        for k in range(8):
            self.write(0, 0x30 + k, 4 * MiB + k * 256 * 1024, 256 * 1024)
        self.assertEqual(cp.wait(30), 0)
        self.write(0, 0x44, 2 * MiB, MiB)
        # a reopen before the base is there would have been refused; now:
        r = self.c.cmd("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        files, _, _ = qemu_chain(self.c)
        self.assertEqual(files, [dest_snap, dest_base])
        self.assertEqual([l["file"] for l in proxy_chain(self.c)["chain"]], files)
        self.assertEqual(self.op("mig")["state"], "pivoted")
        # source and destination chains hold the same data
        # QEMU 10, -blockdev: blockdev-add + blockdev-mirror, and the base
        # attached with blockdev-reopen before the pivot; else drive-mirror
        self.assert_copy_way(pivoted=True)
        cmp = subprocess.run(["qemu-img", "compare", "-U",
                              os.path.join(self.src, "snap0.qcow2"), dest_snap],
                             capture_output=True, text=True)
        self.assertEqual(cmp.returncode, 0, cmp.stdout + cmp.stderr)
        self.assertIn("Images are identical", cmp.stdout)
        # QEMU runs only on dest/: the source can go
        shutil.rmtree(self.src)
        self.write(0, 0x55, 3 * MiB, MiB)
        patterns = [(0x11, 0, MiB), (0x22, MiB, MiB), (0x44, 2 * MiB, MiB), (0x55, 3 * MiB, MiB)]
        patterns += [(0x30 + k, 4 * MiB + k * 256 * 1024, 256 * 1024) for k in range(8)]
        for pattern, off, size in patterns:
            self.check(0, pattern, off, size)
        # and from the destination's files once QEMU has let go of them
        self.c.send({"execute": "quit"})
        self.qemu.proc.wait(10)
        for pattern, off, size in patterns:
            out = qemu_io_offline(dest_snap, "read -P 0x%02x %d %d" % (pattern, off, size))
            self.assertNotIn("fail", out.lower(), out)


@for_each_shape
class ManyDisks(OpsTestCase):
    disks = 4

    def _run(self, disks):
        for i in disks:
            self.write(i, 0x10 + i, 0, MiB)
        r = self.snapshot_mirror("many", disks)
        self.assertEqual(r["return"]["state"], "ready", r)
        for i in disks:
            self.write(i, 0x20 + i, MiB, MiB)
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "many", "target": "mirror"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        for i in disks:
            self.assertEqual(qemu_chain(self.c, i)[0][0],
                             os.path.join(self.dest, "snap%d.qcow2" % i))
            self.check(i, 0x10 + i, 0, MiB)
            self.check(i, 0x20 + i, MiB, MiB)
        for i in set(range(4)) - set(disks):
            self.assertEqual(qemu_chain(self.c, i)[0], [self.qemu.images[i]])

    def test_two_disks(self):
        self._run([0, 2])

    def test_four_disks(self):
        self._run([0, 1, 2, 3])

    def test_reopen_all_or_nothing(self):
        r = self.snapshot_mirror("aon", [0, 1])
        self.assertEqual(r["return"]["state"], "ready", r)
        jobs = {d["disk"]: d["job"] for d in r["return"]["disks"]}
        # disk1's copy is held back (paused) by someone else
        other = self.direct()
        other.ok("job-pause", {"id": jobs["disk1"]})
        wait_for(lambda: proxy_chain(self.c, "disk1")["job"]["status"] == "standby",
                 what="the pause to be seen")
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "aon", "target": "mirror"})
        self.assertIn("error", r)
        self.assertIn("is not ready", r["error"]["desc"])
        self.assertIn("nothing was switched", r["error"]["desc"])
        # neither pivoted; disk0's copy still runs, ready
        self.assertEqual(self.tops(), [os.path.join(self.src, "snap0.qcow2"),
                                       os.path.join(self.src, "snap1.qcow2")] +
                         self.qemu.images[2:])
        self.assertEqual(proxy_chain(self.c, "disk0")["mirror"]["ready"], "yes")
        self.assertEqual(self.op("aon")["state"], "ready")
        # once it can, all of them go
        other.ok("job-resume", {"id": jobs["disk1"]})
        wait_for(lambda: proxy_chain(self.c, "disk1")["job"]["status"] == "ready",
                 what="the resume to be seen")
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "aon", "target": "mirror"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual(self.tops()[:2], [os.path.join(self.dest, "snap0.qcow2"),
                                           os.path.join(self.dest, "snap1.qcow2")])

    def test_reopen_onto_source_drops_copies(self):
        r = self.snapshot_mirror("keep", [0, 1])
        self.assertEqual(r["return"]["state"], "ready", r)
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "keep", "target": "source"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual([d["state"] for d in r["return"]["disks"]], ["on source"] * 2)
        self.assertEqual(self.tops()[:2], [os.path.join(self.src, "snap0.qcow2"),
                                           os.path.join(self.src, "snap1.qcow2")])
        self.assertNotIn("mirror", proxy_chain(self.c, "disk0"))


@for_each_shape
class ExistingCopyDropped(OpsTestCase):
    """A copy onto an existing image, dropped: nothing of it stays in QEMU."""

    def test_drop_existing_copy(self):
        dest_snap = os.path.join(self.dest, "snap0.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", "-b", self.qemu.images[0], "-F", "qcow2",
                 dest_snap)
        r = self.snapshot_mirror("drop", [0], **{"mirror-mode": "existing"})
        self.assertEqual(r["return"]["state"], "ready", r)
        job = r["return"]["disks"][0]["job"]
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "drop", "target": "source"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual(r["return"]["disks"][0]["state"], "on source", r)
        self.assertEqual(self.tops()[0], os.path.join(self.src, "snap0.qcow2"))
        self.assert_copy_way(pivoted=False)
        # the copy's node (QEMU 10's way) was deleted with it
        nodes = [n.get("node-name") for n in self.c.ok("query-named-block-nodes")]
        self.assertFalse([n for n in nodes if n and n.startswith(job)], nodes)
        self.assertEqual(self.c.ok("query-block-jobs"), [])

    def test_abort_existing_copy(self):
        # no backing: the image can be written alone once QEMU lets go
        dest_snap = os.path.join(self.dest, "snap0.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", dest_snap, "64M")
        before = qemu_chain(self.c)[0]
        r = self.snapshot_mirror("undo", [0], **{"mirror-mode": "existing"})
        self.assertEqual(r["return"]["state"], "ready", r)
        job = r["return"]["disks"][0]["job"]
        r = self.c.cmd("qmproxy-snapshot-abort", {"name": "undo"})
        self.assertEqual(r["return"]["state"], "aborted", r)
        self.assertEqual(qemu_chain(self.c)[0], before)
        # (the log lags a little: wait for the commit, sent after the delete)
        names = wait_for(lambda: [m["execute"] for m in self.own_commands()]
                         if "block-commit" in [m["execute"] for m in self.own_commands()]
                         else None, what="block-commit in the traffic log")
        # the copy's node went with the rollback (QEMU 10's way only)
        self.assertEqual("blockdev-del" in names, self.blockdev_way(), names)
        nodes = [n.get("node-name") for n in self.c.ok("query-named-block-nodes")]
        self.assertFalse([n for n in nodes if n and n.startswith(job)], nodes)
        # and QEMU no longer holds the copy's image: it can be written
        out = subprocess.run([QEMU_IO, "-c", "write 0 512", dest_snap],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


@for_each_shape
class Failures(OpsTestCase):
    disks = 2

    def assert_untouched(self):
        self.assertEqual(self.tops(), self.qemu.images)
        for i in range(2):
            self.assertNotIn("job", proxy_chain(self.c, "disk%d" % i))

    def test_mirror_directory_missing(self):
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "nodir", "disks": [
            {"disk": "disk0", "snapshot-file": os.path.join(self.src, "s0.qcow2"),
             "mirror-file": os.path.join(self.dest, "s0.qcow2")},
            {"disk": "disk1", "snapshot-file": os.path.join(self.src, "s1.qcow2"),
             "mirror-file": "/nonexistent/dir/s1.qcow2"}]})
        self.assertEqual(r["error"]["class"], "GenericError")
        self.assertIn("folder /nonexistent/dir does not exist", r["error"]["desc"])
        self.assertIn("nothing was done", r["error"]["desc"])
        self.assert_untouched()
        self.assertFalse(os.path.exists(os.path.join(self.src, "s0.qcow2")))

    def test_second_snapshot_refused_leaves_both(self):
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "tx", "disks": [
            {"disk": "disk0", "snapshot-file": os.path.join(self.src, "s0.qcow2"),
             "mirror-file": os.path.join(self.dest, "s0.qcow2")},
            {"disk": "disk1", "snapshot-file": os.path.join(self.src, "s1.qcow2"),
             "mirror-file": os.path.join(self.dest, "s1.qcow2"), "format": "bogus"}]})
        desc = r["error"]["desc"]
        self.assertIn("snapshot transaction was refused", desc)
        self.assertIn("disk0: untouched", desc)
        self.assertIn("disk1: untouched", desc)
        self.assert_untouched()
        self.assertEqual(self.op("tx")["state"], "failed")

    def test_mirror_refused_after_snapshot_rolls_back(self):
        self.write(0, 0x61, 0, MiB)
        bad = os.path.join(self.dest, "not-an-image.qcow2")
        open(bad, "w").close()  # exists, but is no qcow2 image
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "rb", "disks": [
            {"disk": "disk0", "snapshot-file": os.path.join(self.src, "s0.qcow2"),
             "mirror-file": os.path.join(self.dest, "s0.qcow2")},
            {"disk": "disk1", "snapshot-file": os.path.join(self.src, "s1.qcow2"),
             "mirror-file": bad, "mirror-mode": "existing"}]})
        desc = r["error"]["desc"]
        self.assertIn("was refused", desc)
        self.assertIn("disk0: rolled back", desc)
        self.assertIn("disk1: rolled back", desc)
        self.assertIn("s0.qcow2 was created and is no longer used", desc)
        self.assert_untouched()
        self.check(0, 0x61, 0, MiB)
        # the undo is an active commit onto the old top, named by its
        # node-name (block-commit's "base" is deprecated since QEMU 3.1)
        commits = wait_for(lambda: [m["arguments"] for m in self.own_commands()
                                    if m["execute"] == "block-commit"] or None,
                           what="block-commit in the traffic log")
        self.assertTrue(all("base-node" in a and "base" not in a for a in commits), commits)

    def test_target_write_errors(self):
        conf = os.path.join(self.workdir, "blkdebug.conf")
        with open(conf, "w") as f:
            f.write('[inject-error]\nevent = "write_aio"\nerrno = "5"\n')
        target = os.path.join(self.dest, "t0.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", target, "64M")
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "eio", "disks": [
            {"disk": "disk0", "snapshot-file": os.path.join(self.src, "s0.qcow2"),
             "mirror-file": "blkdebug:%s:%s" % (conf, target), "mirror-mode": "existing"},
            {"disk": "disk1", "snapshot-file": os.path.join(self.src, "s1.qcow2"),
             "mirror-file": os.path.join(self.dest, "s1.qcow2")}]})
        self.assertEqual(r["return"]["state"], "ready", r)
        # the guest writes: the copy of disk0 cannot be written
        self.write(0, 0x71, 0, MiB)
        self.c.wait_event("QMPROXY_OPERATION", pred=lambda e: e["data"]["state"] == "failed")
        op = self.op("eio")
        self.assertEqual(op["state"], "failed")
        self.assertIn("failed after it was ready", op["error"])
        self.assertIn("disk0: rolled back", op["error"])
        self.assertIn("disk1: rolled back", op["error"])
        self.assert_untouched()
        self.check(0, 0x71, 0, MiB)  # the guest's write is in the base now

    def test_client_disconnect_mid_operation(self):
        c = self.proxy.client()
        c.negotiate()
        c.send({"execute": "qmproxy-snapshot-mirror", "arguments": {"name": "orphan", "disks": [
            {"disk": "disk0", "snapshot-file": os.path.join(self.src, "s0.qcow2"),
             "mirror-file": os.path.join(self.dest, "s0.qcow2")}]}})
        c.close()  # gone before any answer
        # it starts once the model is known fresh (a block-graph check),
        # which may be after the client left

        def orphan_ready():
            r = self.c.cmd("qmproxy-query-operations", {"name": "orphan"})
            return "return" in r and r["return"][0]["state"] == "ready"
        wait_for(orphan_ready, what="the orphan to finish")
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "orphan", "target": "mirror"})
        self.assertEqual(r["return"]["state"], "pivoted", r)

    def test_bad_requests(self):
        s = os.path.join(self.src, "x.qcow2")
        m = os.path.join(self.dest, "x.qcow2")
        for args, words in [
            ({"disks": []}, "no disks given"),
            ({"disks": [{"disk": "nope", "snapshot-file": s, "mirror-file": m}]}, "No disk named 'nope'"),
            ({"disks": [{"disk": "disk0", "snapshot-file": s}]}, "Parameter 'disks[0].mirror-file' is missing"),
            ({"disks": [{"disk": "disk0", "snapshot-file": "rel.qcow2", "mirror-file": m}]}, "must be an absolute path"),
            ({"disks": [{"disk": "disk0", "snapshot-file": self.qemu.images[1], "mirror-file": m}]}, "already exists"),
            ({"disks": [{"disk": "disk0", "snapshot-file": s, "mirror-file": m, "mirror-mode": "existing"}]}, "does not exist"),
            ({"disks": [{"disk": "disk0", "snapshot-file": s, "mirror-file": m, "speed": -1}]}, "must not be negative"),
            ({"disks": [{"disk": "disk0", "snapshot-file": s, "mirror-file": m},
                        {"disk": "disk0", "snapshot-file": s, "mirror-file": m}]}, "named twice"),
            ({"disks": [{"disk": "disk0", "snapshot-file": s, "mirror-file": m, "mirror-mode": "x"}]},
             "Parameter 'disks[0].mirror-mode' does not accept value 'x'"),
        ]:
            r = self.c.cmd("qmproxy-snapshot-mirror", args)
            self.assertIn("error", r, args)
            self.assertIn(words, r["error"]["desc"], args)
        self.assert_untouched()
        for cmd, args, words in [
            ("qmproxy-reopen", {"disk": "disk0"}, "has no copy to reopen onto"),
            ("qmproxy-reopen", {"disk": "nope"}, "No disk named 'nope'"),
            ("qmproxy-snapshot-reopen", {"name": "nope", "target": "mirror"}, "No operation named 'nope'"),
            ("qmproxy-snapshot-reopen", {"name": "x", "target": "sideways"}, "does not accept value 'sideways'"),
            ("qmproxy-snapshot-abort", {"name": "nope"}, "No operation named 'nope'"),
            ("qmproxy-block-copy", {"disk": "disk0", "target": "/nonexistent/x"}, "does not exist"),
            ("qmproxy-query-operations", {"name": "nope"}, "No operation named 'nope'"),
        ]:
            r = self.c.cmd(cmd, args)
            self.assertIn(words, r["error"]["desc"], (cmd, args))


@for_each_shape
class AbortAndCopy(OpsTestCase):

    def test_abort_restores_chain_keeps_data(self):
        self.write(0, 0x81, 0, MiB)
        before = qemu_chain(self.c)[0]
        r = self.snapshot_mirror("undo", [0])
        self.assertEqual(r["return"]["state"], "ready", r)
        self.write(0, 0x82, MiB, MiB)
        r = self.c.cmd("qmproxy-snapshot-abort", {"name": "undo"})
        self.assertEqual(r["return"]["state"], "aborted", r)
        self.assertEqual(qemu_chain(self.c)[0], before)
        self.assertNotIn("job", proxy_chain(self.c))
        self.check(0, 0x81, 0, MiB)
        self.check(0, 0x82, MiB, MiB)  # folded back into the base
        r = self.c.cmd("qmproxy-snapshot-abort", {"name": "undo"})
        self.assertIn("is aborted", r["error"]["desc"])

    def test_block_copy_full_then_reopen(self):
        self.write(0, 0x91, 0, MiB)
        target = os.path.join(self.dest, "copy.qcow2")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target})
        self.assertEqual(r["return"]["state"], "ready", r)
        self.assertEqual(proxy_chain(self.c)["mirror"]["file"], target)
        self.write(0, 0x92, MiB, MiB)
        r = self.c.cmd("qmproxy-reopen", {"disk": "disk0", "file": target})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual(qemu_chain(self.c)[0], [target])
        self.check(0, 0x91, 0, MiB)
        self.check(0, 0x92, MiB, MiB)

    def test_block_copy_completed_by_another_client(self):
        """Another monitor pivots the copy: the operation says pivoted once
        QEMU's answer is in, not "copy dropped" from the model's view
        before it (and does not stay ready forever)."""
        target = os.path.join(self.dest, "copy.qcow2")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target})
        job = r["return"]["disks"][0]["job"]
        other = self.direct()
        other.ok("block-job-complete", {"device": job})
        other.wait_event("BLOCK_JOB_PENDING")
        other.ok("job-finalize", {"id": job})
        other.wait_event("BLOCK_JOB_COMPLETED")
        name = r["return"]["name"]
        wait_for(lambda: self.op(name)["state"] != "ready", what="the operation to end")
        op = self.op(name)
        self.assertEqual(op["state"], "pivoted", op)
        self.assertEqual(op["disks"][0]["state"], "pivoted", op)
        self.assertEqual(qemu_chain(self.c)[0][0], target)

    def test_block_copy_shallow_keeps_backing(self):
        snap = os.path.join(self.src, "top.qcow2")
        args = {"snapshot-file": snap, "format": "qcow2"}
        if self.shape == "none":
            args["device"] = "disk0"
        else:
            args["node-name"] = qemu_chain(self.c)[2]
            args["snapshot-node-name"] = "topnode"
        self.c.ok("blockdev-snapshot-sync", args)
        target = os.path.join(self.dest, "shallow.qcow2")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target,
                                              "shallow": True})
        self.assertEqual(r["return"]["state"], "ready", r)
        # a reopen onto neither file is refused with both named
        r = self.c.cmd("qmproxy-reopen", {"disk": "disk0", "file": "/elsewhere.qcow2"})
        self.assertIn("is neither the copy", r["error"]["desc"])
        r = self.c.cmd("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual(qemu_chain(self.c)[0], [target, self.qemu.images[0]])

    def test_pipelined_reopen_after_snapshot(self):
        """Both in one write: the reopen waits for the snapshot's answer,
        then runs, and both are answered."""
        disks = [{"disk": "disk0", "snapshot-file": os.path.join(self.src, "p.qcow2"),
                  "mirror-file": os.path.join(self.dest, "p.qcow2")}]
        self.c.send(json.dumps({"execute": "qmproxy-snapshot-mirror", "id": 1,
                                "arguments": {"name": "pipe", "disks": disks}}) +
                    json.dumps({"execute": "qmproxy-snapshot-reopen", "id": 2,
                                "arguments": {"name": "pipe", "target": "mirror"}}))
        r1, r2 = self.c.read_reply(), self.c.read_reply()
        self.assertEqual((r1["id"], r1["return"]["state"]), (1, "ready"), r1)
        self.assertEqual((r2["id"], r2["return"]["state"]), (2, "pivoted"), r2)
        self.assertEqual(qemu_chain(self.c)[0][0], os.path.join(self.dest, "p.qcow2"))

    def test_abort_and_reopen_race(self):
        r = self.snapshot_mirror("race", [0])
        self.assertEqual(r["return"]["state"], "ready", r)
        other = self.client()
        # two clients at once: whichever the proxy reads first wins, the
        # other is told why, and nobody is left waiting
        self.c.send({"execute": "qmproxy-snapshot-abort", "id": "a",
                     "arguments": {"name": "race"}})
        other.send({"execute": "qmproxy-snapshot-reopen", "id": "r",
                    "arguments": {"name": "race", "target": "mirror"}})
        ra, rr = self.c.read_reply(), other.read_reply()
        self.assertEqual(("return" in ra) + ("return" in rr), 1, (ra, rr))
        if "return" in ra:
            self.assertEqual(ra["return"]["state"], "aborted")
            self.assertRegex(rr["error"]["desc"], "busy: a abort of it|is aborted")
            self.assertEqual(qemu_chain(self.c)[0], self.qemu.images)
        else:
            self.assertEqual(rr["return"]["state"], "pivoted")
            self.assertRegex(ra["error"]["desc"], "busy: a reopen of it|is pivoted")

    def test_operation_events(self):
        r = self.snapshot_mirror("ev", [0])
        states = []
        for e in self.c.events:
            if e["event"] == "QMPROXY_OPERATION" and e["data"]["name"] == "ev":
                states.append(e["data"]["state"])
        self.assertEqual(states[0], "running")
        self.assertEqual(states[-1], "ready")
        self.assertIn("mirroring", states)
        ev = [e for e in self.c.events if e["event"] == "QMPROXY_OPERATION"][-1]
        self.assertEqual(ev["data"]["disks"][0]["disk"], "disk0")
        self.assertIn("seconds", ev["timestamp"])


class XmlRequests(OpsTestCase):
    shape = "q35"
    disks = 2

    def xml(self, body):
        return self.c.cmd("qmproxy-snapshot-mirror-xml", {"xml": body})

    def test_rfc_example_by_path_device_and_node(self):
        node1 = qemu_chain(self.c, 1)[2]
        doc = """<domainsnapshot>
  <name>rfc</name>
  <disks>
    <disk name='%s' snapshot='external'>
      <source file='%s/s0.qcow2'/>
      <mirror file='%s/s0.qcow2'/>
      <driver type='qcow2'/>
    </disk>
    <disk name='%s' snapshot='external'>
      <source file='%s/s1.qcow2'/>
      <mirror file='%s/s1.qcow2'/>
    </disk>
  </disks>
</domainsnapshot>""" % (self.qemu.images[0], self.src, self.dest, node1, self.src, self.dest)
        r = self.xml(doc)
        self.assertEqual(r["return"]["name"], "rfc", r)
        self.assertEqual(r["return"]["state"], "ready")
        self.assertEqual([d["disk"] for d in r["return"]["disks"]], ["disk0", "disk1"])
        r = self.c.cmd("qmproxy-snapshot-abort", {"name": "rfc"})
        self.assertEqual(r["return"]["state"], "aborted", r)
        # by qdev id, and a disk left out
        doc = ("<domainsnapshot><disks><disk name='disk1'><source file='%s/t1.qcow2'/>"
               "<mirror file='%s/t1.qcow2'/></disk><disk name='disk0' snapshot='no'/>"
               "</disks></domainsnapshot>" % (self.src, self.dest))
        r = self.xml(doc)
        self.assertEqual([d["disk"] for d in r["return"]["disks"]], ["disk1"], r)

    def test_bad_xml_does_nothing(self):
        for doc, words in [
            ("<domainsnapshot><disks>\n  <disk name='disk0'>\n    <source file='/x'>\n</disks>",
             "line 4, column"),
            ("<domainsnapshot><disks><disk><source file='/x'/></disk></disks></domainsnapshot>",
             "needs a name attribute"),
            ("<snapshot/>", "root element must be <domainsnapshot>"),
            ("<domainsnapshot><disks><disk name='nope'><source file='%s/n.qcow2'/>"
             "<mirror file='%s/n.qcow2'/></disk></disks></domainsnapshot>" % (self.src, self.dest),
             "No disk named 'nope'"),
            ("""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<domainsnapshot><name>&lol3;</name><disks/></domainsnapshot>""", "line 2, column 1: a DOCTYPE"),
            ("""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<domainsnapshot><name>&x;</name><disks/></domainsnapshot>""", "DOCTYPE or ENTITY declaration is not accepted"),
            # the same DTD in UTF-7 (found by tests/fuzz/fuzz_snapshot_xml)
            ("""<?xml version="1.0" encoding="UTF-7"?>
+ADw-!DOCTYPE d +AFs-+ADw-!ENTITY x SYSTEM "file:///etc/passwd"+AD4-+AF0-+AD4-
<domainsnapshot><name>&x;</name><disks/></domainsnapshot>""", "not well-formed"),
            ("<domainsnapshot>" + "x" * (1 << 20) + "</domainsnapshot>", "at most 1048576"),
        ]:
            r = self.xml(doc)
            self.assertIn("error", r, doc[:80])
            self.assertIn(words, r["error"]["desc"], doc[:80])
            self.assertIn("nothing was done", r["error"]["desc"])
        self.assertEqual(self.tops(), self.qemu.images)
        self.assertEqual(os.listdir(self.dest), [])


class RhelNames(OpsTestCase):
    """RHEL-6-era clients, unchanged: -drive devices, as they had."""
    shape = "none"

    def test_listed_in_query_commands(self):
        names = [c["name"] for c in self.c.ok("query-commands")]
        for n in ("__com.redhat_drive-mirror", "__com.redhat_drive-reopen",
                  "qmproxy-snapshot-mirror", "qmproxy-reopen", "qmproxy-snapshot-reopen",
                  "qmproxy-snapshot-abort", "qmproxy-block-copy", "qmproxy-query-operations",
                  "qmproxy-snapshot-mirror-xml"):
            self.assertIn(n, names)

    def test_mixed_transaction_then_reopen_with_witness(self):
        self.write(0, 0xa1, 0, MiB)
        snap = os.path.join(self.src, "ovirt-snap.qcow2")
        mirror = os.path.join(self.dest, "ovirt-snap.qcow2")
        r = self.c.cmd("transaction", {"actions": [
            {"type": "blockdev-snapshot-sync",
             "data": {"device": "disk0", "snapshot-file": snap, "format": "qcow2"}},
            {"type": "__com.redhat_drive-mirror",
             "data": {"device": "disk0", "target": mirror, "format": "qcow2"}}]})
        self.assertEqual(r, {"return": {}})
        # the copy runs under the device's name, as on RHEL
        self.c.wait_event("BLOCK_JOB_READY", pred=lambda e: e["data"]["device"] == "disk0")
        ops = [o for o in self.c.ok("qmproxy-query-operations") if o["type"] == "transaction"]
        self.assertEqual(len(ops), 1)
        wait_for(lambda: self.op(ops[0]["name"])["state"] == "ready", what="ready")
        self.write(0, 0xa2, MiB, MiB)
        # the witness: a pipe passed with getfd; one byte on success
        rfd, wfd = os.pipe()
        self.addCleanup(os.close, rfd)
        self.c.send(json.dumps({"execute": "getfd", "arguments": {"fdname": "witness"}}), fds=[wfd])
        os.close(wfd)
        self.assertEqual(self.c.read_reply(), {"return": {}})
        r = self.c.cmd("__com.redhat_drive-reopen", {"device": "disk0", "new-image-file": mirror,
                                                     "witness": "witness"})
        self.assertEqual(r, {"return": {}} if "return" in r and r["return"] == {} else r)
        self.assertIn("return", r)
        os.set_blocking(rfd, False)
        self.assertEqual(os.read(rfd, 16), b"\0")
        self.assertEqual(qemu_chain(self.c)[0][0], mirror)
        self.check(0, 0xa1, 0, MiB)
        self.check(0, 0xa2, MiB, MiB)
        self.assertEqual(self.c.cmd("closefd", {"fdname": "witness"}), {"return": {}})
        r = self.c.cmd("__com.redhat_drive-reopen", {"device": "disk0", "new-image-file": mirror,
                                                     "witness": "witness"})
        self.assertIn("witness 'witness' names no file descriptor", r["error"]["desc"])

    def test_rhel_drive_mirror_alone(self):
        target = os.path.join(self.dest, "full.qcow2")
        self.write(0, 0xb1, 0, MiB)
        self.assertEqual(self.c.cmd("__com.redhat_drive-mirror",
                                    {"device": "disk0", "target": target, "format": "qcow2",
                                     "full": True}), {"return": {}})
        self.c.wait_event("BLOCK_JOB_READY")
        self.assertEqual(proxy_chain(self.c)["mirror"]["file"], target)
        r = self.c.cmd("__com.redhat_drive-mirror", {"device": "disk0", "target": target})
        self.assertEqual(r["error"]["class"], "GenericError")  # QEMU's own refusal
        self.c.ok("block-job-cancel", {"device": "disk0"})
        self.c.wait_event("BLOCK_JOB_COMPLETED")
        out = qemu_io_offline(target, "read -P 0xb1 0 1M")
        self.assertNotIn("fail", out.lower(), out)


class Restart(OpsTestCase):
    """Operations live in the state file."""
    disks = 2

    def start_proxy(self, args=None, **kw):
        self.state = os.path.join(self.workdir, "state.json")
        return super().start_proxy(args=list(self.proxy_args) + ["--state", self.state], **kw)

    def _saved_state(self, name):
        try:
            saved = json.load(open(self.state))
        except (OSError, ValueError):
            return None
        for op in saved["state"].get("operations", []):
            if op["name"] == name:
                return op["state"]
        return None

    def _kill_and_restart(self):
        self.c.close()
        self.proxy.proc.send_signal(signal.SIGKILL)
        self.proxy.proc.wait()
        os.unlink(self.proxy.listen)
        self.proxy = self.start_proxy()
        self.c = self.client()

    def test_ready_operation_carried_on(self):
        r = self.snapshot_mirror("survivor", [0, 1])
        self.assertEqual(r["return"]["state"], "ready", r)
        wait_for(lambda: self._saved_state("survivor") == "ready", what="saved ready")
        self._kill_and_restart()
        self.assertEqual(self.op("survivor")["state"], "ready")
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "survivor", "target": "mirror"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual(self.tops(), [os.path.join(self.dest, "snap0.qcow2"),
                                       os.path.join(self.dest, "snap1.qcow2")])

    def test_copy_lost_while_away_reported(self):
        r = self.snapshot_mirror("victim", [0, 1])
        jobs = [d["job"] for d in r["return"]["disks"]]
        wait_for(lambda: self._saved_state("victim") == "ready", what="saved ready")
        self.c.close()
        self.proxy.proc.send_signal(signal.SIGKILL)
        self.proxy.proc.wait()
        os.unlink(self.proxy.listen)
        other = self.direct()
        other.ok("block-job-cancel", {"device": jobs[1], "force": True})
        other.wait_event("BLOCK_JOB_CANCELLED")
        self.proxy = self.start_proxy()
        self.c = self.client()
        op = self.op("victim")
        self.assertEqual(op["state"], "failed")
        self.assertIn("copies of disk1 gone", op["error"])
        self.assertIn("disk1: copy lost", op["error"])
        self.assertEqual(op["disks"][0]["state"], "ready")


if __name__ == "__main__":
    unittest.main(verbosity=2)
