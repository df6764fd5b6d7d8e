"""Backing-chain tracking against a real QEMU 7.2: snapshots, commits,
streams, mirrors (and their pivots and cancellations) done by a plain
client through the proxy; the XML form; persistence across a restart."""
import json
import os
import shutil
import signal
import subprocess
import time
import unittest
import xml.etree.ElementTree as ET

from qmptest import (QEMU, ProxyTestCase, Proxy, for_each_shape,
                     qemu_img, wait_for)


def qemu_chain(client, disk_index=0):
    """(files, formats, top node-name) of a disk, straight from query-block."""
    blocks = client.ok("query-block")
    b = blocks[disk_index]
    ins = b["inserted"]
    files, formats = [], []
    img = ins["image"]
    while img:
        name = img["filename"]
        if name.startswith("json:"):
            inner = json.loads(name[5:])
            while "filename" not in inner:
                inner = inner["file"]
            name = inner["filename"]
        files.append(name)
        formats.append(img["format"])
        img = img.get("backing-image")
    return files, formats, ins["node-name"]


def image_chain(client, disk_index=0):
    """query-block's image of a disk and its backing images, in order."""
    img = client.ok("query-block")[disk_index]["inserted"]["image"]
    out = []
    while img:
        out.append(img)
        img = img.get("backing-image")
    return out


def qemu_info(path):
    """qemu-img info of an image QEMU has open (-U)."""
    return json.loads(qemu_img("info", "-U", "--output=json", path))


def proxy_chain(client, disk="disk0"):
    reply = client.cmd("qmproxy-query-chain", {"disk": disk})
    assert "return" in reply, reply
    return reply["return"][0]


class ChainTestCase(ProxyTestCase):

    def setUp(self):
        super().setUp()
        self.c = self.client(extras=True)
        self.snapn = 0

    def dev(self):
        """The device argument block commands take for disk0 now."""
        if self.shape == "none":
            return "disk0"
        return qemu_chain(self.c)[2]

    def assert_matches_qemu(self, disk="disk0"):
        files, formats, node = qemu_chain(self.c)
        model = proxy_chain(self.c, disk)
        self.assertEqual([l["file"] for l in model["chain"]], files)
        self.assertEqual([l["format"] for l in model["chain"]], formats)
        self.assertEqual(model["chain"][0]["node-name"], node)
        self.assertEqual(model["node-name"], node)
        self.assertFalse(model["chain"][0]["read-only"])
        self.assertTrue(all(l["read-only"] for l in model["chain"][1:]))
        self.assertTrue(all("node-name" in l for l in model["chain"]), model)
        return model

    def snapshot(self, name=None):
        self.snapn += 1
        path = os.path.join(self.workdir, name or "snap%d.qcow2" % self.snapn)
        args = {"snapshot-file": path, "format": "qcow2"}
        if self.shape == "none":
            args["device"] = "disk0"
        else:
            args["node-name"] = self.dev()
            args["snapshot-node-name"] = "snapnode%d" % self.snapn
        self.c.ok("blockdev-snapshot-sync", args)
        return path

    def wait_job_event(self, name, job):
        return self.c.wait_event(name, pred=lambda e: e["data"]["device"] == job)


@for_each_shape
class Snapshots(ChainTestCase):

    def test_seeded_from_query_block(self):
        model = self.assert_matches_qemu()
        self.assertEqual(model["disk"], "disk0")
        self.assertEqual(len(model["chain"]), 1)
        self.assertEqual(model["chain"][0]["virtual-size"], 64 << 20)
        # reachable by its top node-name too
        self.assertEqual(proxy_chain(self.c, model["node-name"])["disk"], "disk0")

    def test_one_three_and_twenty_five_snapshots(self):
        for count in (1, 3, 25):
            while self.snapn < count:
                self.snapshot()
            model = self.assert_matches_qemu()
            self.assertEqual(len(model["chain"]), count + 1)
        # 26 levels of backing-image nest deeper than json-c's default 32
        self.assertEqual(model["chain"][-1]["file"], self.qemu.images[0])

    def test_chain_changed_event(self):
        path = self.snapshot()
        ev = self.c.wait_event("QMPROXY_CHAIN_CHANGED")
        self.assertEqual(ev["data"]["disk"], "disk0")
        self.assertEqual([l["file"] for l in ev["data"]["chain"]],
                         [path, self.qemu.images[0]])
        self.assertIn("seconds", ev["timestamp"])
        # a second client that asked sees it as well; one that never
        # negotiated does not, nor one that did not ask (invisible by default)
        other = self.client(extras=True)
        silent = self.client(negotiate=False)
        plain = self.client()
        self.snapshot()
        other.wait_event("QMPROXY_CHAIN_CHANGED")
        self.assertFalse(silent.at_eof(timeout=0.3))
        self.assertEqual(silent.buf, b"")
        self.assertFalse(plain.at_eof(timeout=0.3))
        self.assertEqual(plain.buf, b"")

    def test_snapshot_in_transaction(self):
        path = os.path.join(self.workdir, "tx.qcow2")
        data = {"snapshot-file": path, "format": "qcow2"}
        if self.shape == "none":
            data["device"] = "disk0"
        else:
            data["node-name"] = self.dev()
            data["snapshot-node-name"] = "txnode"
        self.c.ok("transaction", {"actions": [{"type": "blockdev-snapshot-sync", "data": data}]})
        model = self.assert_matches_qemu()
        self.assertEqual(model["chain"][0]["file"], path)

    def test_failed_snapshot_changes_nothing(self):
        before = self.assert_matches_qemu()
        r = self.c.cmd("blockdev-snapshot-sync", {
            "device": "disk0" if self.shape == "none" else self.dev(),
            "snapshot-file": "/nonexistent/dir/s.qcow2", "format": "qcow2"})
        self.assertIn("error", r)
        self.assertEqual(self.assert_matches_qemu()["chain"], before["chain"])


@for_each_shape
class Jobs(ChainTestCase):

    def test_intermediate_commit(self):
        s1, s2, s3 = self.snapshot(), self.snapshot(), self.snapshot()
        base = self.qemu.images[0]
        self.c.ok("block-commit", {"device": self.dev(), "job-id": "ic",
                                   "top": s2, "base": s1})
        self.wait_job_event("BLOCK_JOB_COMPLETED", "ic")
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [s3, s1, base])
        self.assertNotIn("job", model)

    def test_active_commit_with_pivot(self):
        s1 = self.snapshot()
        self.snapshot()
        self.c.hmp('qemu-io %s "write -P 0x33 0 1M"' % self.dev())
        # into s1, the layer below (QEMU's default would be the bottom)
        self.c.ok("block-commit", {"device": self.dev(), "job-id": "ac", "base": s1})
        self.wait_job_event("BLOCK_JOB_READY", "ac")
        during = proxy_chain(self.c)
        self.assertEqual(during["job"]["type"], "commit")
        self.assertEqual(during["mirror"]["type"], "active-commit")
        self.assertEqual(during["mirror"]["file"], s1)
        self.assertEqual(during["mirror"]["ready"], "yes")
        self.c.ok("block-job-complete", {"device": "ac"})
        self.wait_job_event("BLOCK_JOB_COMPLETED", "ac")
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [s1, self.qemu.images[0]])
        self.assertNotIn("mirror", model)
        # and with QEMU's default base, the whole chain folds into the bottom
        self.c.ok("block-commit", {"device": self.dev(), "job-id": "ac2"})
        self.wait_job_event("BLOCK_JOB_READY", "ac2")
        self.assertEqual(proxy_chain(self.c)["mirror"]["file"], self.qemu.images[0])
        self.c.ok("block-job-complete", {"device": "ac2"})
        self.wait_job_event("BLOCK_JOB_COMPLETED", "ac2")
        self.assertEqual(len(self.assert_matches_qemu()["chain"]), 1)

    def test_stream(self):
        s1 = self.snapshot()
        s2 = self.snapshot()
        self.c.ok("block-stream", {"device": self.dev(), "job-id": "st"})
        self.wait_job_event("BLOCK_JOB_COMPLETED", "st")
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [s2])
        del s1

    def test_mirror_onto_existing_destination_chain(self):
        dest = os.path.join(self.workdir, "dest")
        os.mkdir(dest)
        src_snap = self.snapshot("src-snap.qcow2")
        # the destination: a copy of the base, and an overlay on top of it
        dest_base = os.path.join(dest, "base.qcow2")
        shutil.copy(self.qemu.images[0], dest_base)
        dest_snap = os.path.join(dest, "snap.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", "-b", dest_base, "-F", "qcow2", dest_snap)
        self.c.hmp('qemu-io %s "write -P 0x44 0 512k"' % self.dev())
        self.c.ok("drive-mirror", {"device": self.dev(), "job-id": "m", "target": dest_snap,
                                   "format": "qcow2", "sync": "top", "mode": "existing"})
        self.wait_job_event("BLOCK_JOB_READY", "m")
        during = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in during["chain"]], [src_snap, self.qemu.images[0]])
        m = during["mirror"]
        self.assertEqual((m["file"], m["format"], m["job"], m["type"], m["ready"]),
                         (dest_snap, "qcow2", "m", "copy", "yes"))
        self.assertEqual(m["offset"], m["len"])
        self.assertEqual(during["job"]["status"], "ready")
        self.assertEqual(during["job"]["started-by"], 1)
        xml = ET.fromstring(self.c.ok("qmproxy-query-chain", {"disk": "disk0", "format": "xml"}))
        mirror = xml.find("mirror")
        self.assertEqual(mirror.get("file"), dest_snap)
        self.assertEqual(mirror.get("job"), "copy")
        self.assertEqual(mirror.get("ready"), "yes")
        self.assertEqual(mirror.find("source").get("file"), dest_snap)
        self.c.ok("block-job-complete", {"device": "m"})
        self.wait_job_event("BLOCK_JOB_COMPLETED", "m")
        after = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in after["chain"]], [dest_snap, dest_base])
        self.assertNotIn("mirror", after)

    def test_blockdev_mirror_onto_nodes_named_by_reference(self):
        """libvirt's block copy: the copy's storage node, then a format node
        whose file names it, then blockdev-mirror onto the format node."""
        target = os.path.join(self.workdir, "copy.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", target, "64M")
        self.c.ok("blockdev-add", {"driver": "file", "filename": target,
                                   "node-name": "libvirt-6-storage"})
        self.c.ok("blockdev-add", {"driver": "qcow2", "file": "libvirt-6-storage",
                                   "node-name": "libvirt-6-format"})
        device = self.dev() if self.shape == "q35" else qemu_chain(self.c)[2]
        self.c.ok("blockdev-mirror", {"job-id": "copy", "device": device,
                                      "target": "libvirt-6-format", "sync": "full"})
        self.wait_job_event("BLOCK_JOB_READY", "copy")
        m = proxy_chain(self.c)["mirror"]
        self.assertEqual((m["file"], m["format"], m["ready"]), (target, "qcow2", "yes"))
        self.c.ok("block-job-cancel", {"device": "copy"})
        self.wait_job_event("BLOCK_JOB_COMPLETED", "copy")

    def test_cancelled_ready_mirror_leaves_chain(self):
        s1 = self.snapshot()
        target = os.path.join(self.workdir, "copy.qcow2")
        args = {"device": self.dev(), "target": target, "format": "qcow2", "sync": "top"}
        if self.shape == "q35":
            args["job-id"] = "copyjob"  # a node-name is no job id
        self.c.ok("drive-mirror", args)
        job = args.get("job-id", "disk0")
        self.wait_job_event("BLOCK_JOB_READY", job)
        self.assertEqual(proxy_chain(self.c)["mirror"]["file"], target)
        self.c.ok("block-job-cancel", {"device": job})
        self.wait_job_event("BLOCK_JOB_COMPLETED", job)
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [s1, self.qemu.images[0]])
        self.assertNotIn("mirror", model)

    def test_job_started_by_another_monitor_is_found(self):
        """A job the proxy never saw start shows up once an event names it."""
        other = self.direct()
        self.snapshot()
        other.ok("block-commit", {"device": self.dev(), "job-id": "behind"})
        self.c.wait_event("BLOCK_JOB_READY", pred=lambda e: e["data"]["device"] == "behind")
        model = proxy_chain(self.c)
        self.assertEqual(model["job"]["id"], "behind")
        other.ok("block-job-cancel", {"device": "behind"})
        self.c.wait_event("BLOCK_JOB_COMPLETED")
        self.assertNotIn("job", proxy_chain(self.c))


@for_each_shape
class Truth(ChainTestCase):
    """The model is QEMU's truth at the moment it answers: filters are not
    layers, sizes follow block_resize, and what another monitor did is seen
    by the next qmproxy-query-chain."""

    def assert_no_disagreement(self):
        self.assertNotIn("differs from what the traffic said",
                         self.proxy.read_stderr())

    def test_snapshots_through_another_monitor_are_seen_at_once(self):
        other = self.direct()
        top = self.qemu.images[0]
        for i in range(25):
            path = os.path.join(self.workdir, "behind%d.qcow2" % i)
            args = {"snapshot-file": path, "format": "qcow2"}
            if self.shape == "none":
                args["device"] = "disk0"
            else:
                args["node-name"] = qemu_chain(other)[2]
                args["snapshot-node-name"] = "behind%d" % i
            other.ok("blockdev-snapshot-sync", args)
            top = path
        # no event told the proxy: its next answer must still be right
        model = self.assert_matches_qemu()
        self.assertEqual(len(model["chain"]), 26)
        self.assertEqual(model["chain"][0]["file"], top)
        # and a disk named by a node-name made behind its back is found
        if self.shape == "q35":
            self.assertEqual(proxy_chain(self.c, "behind24")["disk"], "disk0")
        # found, not mistaken for a prediction gone wrong
        self.assertIn("changed behind the proxy's back", self.proxy.read_stderr())
        self.assert_no_disagreement()

    def test_hmp_through_another_monitor_is_seen_at_once(self):
        """HMP's snapshot_blkdev and drive_add on a second monitor: a new
        layer and a new disk, each in the very next qmproxy-query-chain."""
        if self.shape != "none":
            self.skipTest("HMP's snapshot_blkdev names a device; -blockdev disks have none")
        other = self.direct()
        snap = os.path.join(self.workdir, "hmp-snap.qcow2")
        self.assertEqual(other.hmp("snapshot_blkdev disk0 %s qcow2" % snap), "")
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [snap, self.qemu.images[0]])
        extra = os.path.join(self.workdir, "extra.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", extra, "16M")
        other.hmp("drive_add 0 if=none,id=extra,file=%s,format=qcow2" % extra)
        model = proxy_chain(self.c, "extra")
        self.assertEqual([l["file"] for l in model["chain"]], [extra])
        self.assertEqual(model["chain"][0]["virtual-size"], 16 << 20)
        self.assert_no_disagreement()

    def test_reopen_without_backing(self):
        """blockdev-reopen of the active layer with backing null: the
        chain QEMU has, without a warning (a reopen is not predicted)."""
        if self.shape != "q35":
            self.skipTest("the -drive disk's nodes have generated names")
        snap = self.snapshot()
        files = [n for n in self.c.ok("query-named-block-nodes", {"flat": True})
                 if n["drv"] == "file" and n["file"] == snap]
        self.assertEqual(len(files), 1, files)
        self.c.ok("blockdev-reopen", {"options": [{
            "driver": "qcow2", "node-name": "snapnode1",
            "file": files[0]["node-name"], "backing": None}]})
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [snap])
        self.assert_no_disagreement()

    def test_unchanged_model_is_answered_without_a_reconciliation(self):
        self.snapshot()
        self.assert_matches_qemu()
        self.c.ok("query-status")  # the reconciliation's replies are in
        before = self.proxy.read_stderr().count("changed behind the proxy")
        for _ in range(3):
            proxy_chain(self.c)
        self.assertEqual(self.proxy.read_stderr().count("changed behind the proxy"),
                         before)
        self.direct().ok("blockdev-snapshot-sync", dict(
            {"snapshot-file": os.path.join(self.workdir, "b.qcow2"),
             "format": "qcow2"},
            **({"device": "disk0"} if self.shape == "none"
               else {"node-name": self.dev(), "snapshot-node-name": "b"})))
        self.assertEqual(len(proxy_chain(self.c)["chain"]), 3)
        self.assertEqual(self.proxy.read_stderr().count("changed behind the proxy"),
                         before + 1)

    def test_pull_backup_filter_is_not_a_layer(self):
        """libvirt's pull-mode backup: blockdev-backup sync=none into a
        scratch image backed by the disk; QEMU puts a copy-before-write
        filter on the disk, which libvirt does not list as an image."""
        scratch = os.path.join(self.workdir, "scratch.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", scratch, "64M")
        node = self.dev() if self.shape == "q35" else qemu_chain(self.c)[2]
        self.c.ok("blockdev-add", {"driver": "qcow2", "node-name": "scratch",
                                   "file": {"driver": "file", "filename": scratch},
                                   "backing": node})
        self.c.ok("blockdev-backup", {"job-id": "pull", "device": node,
                                      "target": "scratch", "sync": "none"})
        files, formats, _ = qemu_chain(self.c)
        self.assertEqual(formats, ["copy-before-write", "qcow2"])
        model = proxy_chain(self.c)
        self.assertEqual([l["file"] for l in model["chain"]], [self.qemu.images[0]])
        self.assertEqual([l["format"] for l in model["chain"]], ["qcow2"])
        self.assertEqual(model["chain"][0]["node-name"], node)
        self.assertEqual([(f["driver"], f["layer"]) for f in model["filters"]],
                         [("copy-before-write", 0)])
        self.assertEqual(model["job"]["type"], "backup")
        xml = ET.fromstring(self.c.ok("qmproxy-query-chain",
                                      {"disk": "disk0", "format": "xml"}))
        self.assertEqual([s.get("file") for s in xml.iter("source")],
                         [self.qemu.images[0]])
        self.assertEqual(len(xml.findall("backingStore")), 1)
        self.assertEqual([f.get("driver") for f in xml.findall("filter")],
                         ["copy-before-write"])
        self.c.ok("block-job-cancel", {"device": "pull"})
        self.c.wait_event("BLOCK_JOB_CANCELLED")
        model = proxy_chain(self.c)
        self.assertNotIn("filters", model)
        self.assertNotIn("job", model)
        self.assert_matches_qemu()
        self.assert_no_disagreement()

    def test_medium_changes_are_followed(self):
        """eject and blockdev-change-medium (a drive without a device, or
        a CD-ROM): followed, and QEMU's answer completes them quietly."""
        if self.shape != "none":
            self.skipTest("a -blockdev disk behind virtio-blk has no medium to change")
        other = os.path.join(self.workdir, "other.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", other, "32M")
        self.c.ok("eject", {"device": "disk0"})
        self.assertEqual(proxy_chain(self.c)["chain"], [])
        self.c.ok("blockdev-change-medium", {"device": "disk0", "filename": other,
                                             "format": "qcow2"})
        model = self.assert_matches_qemu()
        self.assertEqual(model["chain"][0]["virtual-size"], 32 << 20)
        self.c.ok("query-status")
        self.assert_no_disagreement()

    def test_block_resize_shows_at_once(self):
        self.snapshot()
        forms = [("node-name", lambda: qemu_chain(self.c)[2])]
        if self.shape == "none":
            forms.insert(0, ("device", lambda: "disk0"))
        size = 64 << 20
        for form, name in forms:
            size += 16 << 20
            self.c.ok("block_resize", {form: name(), "size": size})
            model = proxy_chain(self.c)
            self.assertEqual(model["chain"][0]["virtual-size"], size, form)
            # the backing file keeps its size
            self.assertEqual(model["chain"][1]["virtual-size"], 64 << 20)
            top = self.c.ok("query-block")[0]["inserted"]["image"]
            self.assertEqual(top["virtual-size"], size)
        self.assert_no_disagreement()

    def top_node_of(self, client):
        return "disk0" if self.shape == "none" else qemu_chain(client)[2]

    def test_resize_through_another_monitor_is_seen_at_once(self):
        """block_resize on a second monitor: no event, no change in the
        block graph; the next qmproxy-query-chain has the new size."""
        self.snapshot()
        self.assert_matches_qemu()
        other = self.direct()
        form = "device" if self.shape == "none" else "node-name"
        for size in (96 << 20, 128 << 20):
            other.ok("block_resize", {form: self.top_node_of(other), "size": size})
            model = proxy_chain(self.c)
            self.assertEqual(model["chain"][0]["virtual-size"], size)
            self.assertEqual(model["chain"][1]["virtual-size"], 64 << 20)
            self.assertEqual(qemu_info(model["chain"][0]["file"])["virtual-size"], size)
        self.assertEqual(self.proxy.read_stderr().count(
            "an image's size changed behind the proxy's back"), 2)
        self.assert_matches_qemu()
        self.assert_no_disagreement()

    def change_backing_file(self, client, layer, backing):
        """change-backing-file of the disk's layer-th image (by its
        node-name, as the model and QEMU know it)."""
        node = proxy_chain(self.c)["chain"][layer]["node-name"]
        client.ok("change-backing-file", {"device": self.top_node_of(client),
                                          "image-node-name": node,
                                          "backing-file": backing})

    def test_change_backing_file(self):
        """change-backing-file rewrites an image's header, not what QEMU
        reads from: through the proxy and through another monitor, the
        chain stays the backing nodes QEMU has (whose file names QEMU now
        gives as json:{...}, the header no longer naming them), and
        qemu-img info reads the new string.  A snapshot afterwards, whose
        new overlay's header gets such a name, is followed too."""
        s1, s2 = self.snapshot(), self.snapshot()
        base = self.qemu.images[0]
        # a relative name for the same base (s1 sits in the same folder)
        self.change_backing_file(self.c, 1, os.path.basename(base))
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [s2, s1, base])
        self.assertEqual(qemu_info(s1)["backing-filename"], os.path.basename(base))
        # QEMU itself now names s1 by its options
        names = [b["filename"] for b in image_chain(self.c)]
        self.assertTrue(names[1].startswith("json:"), names)
        # another monitor points s2's header at another file: QEMU still
        # reads s1, and so does the model
        elsewhere = os.path.join(self.workdir, "elsewhere.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", elsewhere, "64M")
        self.change_backing_file(self.direct(), 0, elsewhere)
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [s2, s1, base])
        self.assertEqual(qemu_info(s2)["backing-filename"], elsewhere)
        s3 = self.snapshot()
        model = self.assert_matches_qemu()
        self.assertEqual([l["file"] for l in model["chain"]], [s3, s2, s1, base])
        self.assert_no_disagreement()

    def test_x_blockdev_change_on_a_quorum(self):
        """x-blockdev-change adds and removes a quorum's children: the
        disk's one image is the quorum, which QEMU names by its options
        (json:{"children": [...]}); after each change, made through the
        proxy or through another monitor, the model says what QEMU says."""
        files = {}
        for name in ("a", "b"):
            files[name] = os.path.join(self.workdir, "q%s.qcow2" % name)
            qemu_img("create", "-q", "-f", "qcow2", files[name], "16M")
        self.c.hmp("drive_add 0 if=none,id=qdisk,node-name=quorum0,driver=quorum,"
                   "vote-threshold=1,children.0.driver=qcow2,children.0.file.driver=file,"
                   "children.0.file.filename=%s" % files["a"])

        def assert_quorum(children):
            qemu = [b for b in self.c.ok("query-block") if b["device"] == "qdisk"][0]
            image = qemu["inserted"]["image"]
            named = [c["file"]["filename"]
                     for c in json.loads(image["filename"][5:])["children"]]
            self.assertEqual(named, [files[n] for n in children])
            model = proxy_chain(self.c, "qdisk")
            self.assertEqual([(l["file"], l["format"], l["node-name"]) for l in model["chain"]],
                             [(image["filename"], "quorum", "quorum0")])

        assert_quorum("a")
        self.c.ok("blockdev-add", {"driver": "qcow2", "node-name": "qb",
                                   "file": {"driver": "file", "filename": files["b"]}})
        self.c.ok("x-blockdev-change", {"parent": "quorum0", "node": "qb"})
        assert_quorum("ab")
        self.direct().ok("x-blockdev-change", {"parent": "quorum0", "child": "children.0"})
        assert_quorum("b")
        self.assert_no_disagreement()


def traffic_lines(path):
    """The traffic log's lines once its writer thread has caught up (the
    count stable over a few reads; at most 50 reads, 5 s)."""
    last = None
    for _ in range(50):
        time.sleep(0.1)
        with open(path) as f:
            lines = f.readlines()
        if last is not None and len(lines) == len(last):
            return lines
        last = lines
    return last


def own_commands(lines):
    """The proxy's own commands to QEMU among traffic-log lines (names)."""
    out = []
    for line in lines:
        e = json.loads(line)
        if e.get("client") == 0 and e.get("kind") == "command":
            out.append(e["msg"]["execute"])
    return out


def job_events(lines):
    """QEMU's job events among traffic-log lines."""
    return [json.loads(l)["msg"]["event"] for l in lines
            if '"kind": "event"' in l and '"from": "qemu"' in l
            and ("JOB" in json.loads(l)["msg"]["event"])]


@for_each_shape
class JobEventTraffic(ChainTestCase):
    """A job's events make the proxy ask QEMU nothing: QMP has no per-disk
    query, so anything asked would be about the whole VM.  The job's start
    and end are predicted for its disk and checked when someone asks, so
    the proxy's own traffic per job event does not grow with the VM's
    disks (1 against 8 here), and qmproxy-query-chain right after the
    events still answers QEMU's truth."""

    def one_vm(self, disks, job, prepare=None):
        """A VM of disks disks behind a proxy with a traffic log; prepare
        (c, qemu) runs first, outside the count; job(c, qemu) runs a job on
        disk 0 through client c and waits for its last event.  Returns
        (the proxy's own commands while the job ran, QEMU's job events
        then, the proxy's commands for the qmproxy-query-chain after)."""
        work = os.path.join(self.workdir, "vm%d" % disks)
        os.makedirs(work)
        qemu = QEMU(work, shape=self.shape, disks=disks)
        tlog = os.path.join(work, "traffic.jsonl")
        proxy = Proxy(work, qemu.monitors[0], args=["--traffic-log", tlog])
        c = None
        try:
            c = proxy.client().negotiate()
            c.ok("qmproxy-capabilities")
            if prepare:
                prepare(c, qemu)
            before = len(traffic_lines(tlog))
            job(c, qemu)
            during = traffic_lines(tlog)
            asked = own_commands(during[before:])
            events = job_events(during[before:])
            # right after the events the model is still QEMU's truth: one
            # qmproxy-query-chain of every disk against QEMU's query-block
            models = c.ok("qmproxy-query-chain")
            check = own_commands(traffic_lines(tlog)[len(during):])
            self.assertEqual(len(models), disks)
            for i, model in enumerate(models):
                files, formats, node = qemu_chain(c, i)
                self.assertEqual(model["disk"], "disk%d" % i)
                self.assertEqual([l["file"] for l in model["chain"]], files)
                self.assertEqual([l["format"] for l in model["chain"]], formats)
                self.assertEqual(model["node-name"], node)
                self.assertNotIn("job", model)
            self.assertNotIn("differs from what the traffic said",
                             proxy.read_stderr())
            return asked, events, check
        finally:
            if c:
                c.close()
            proxy.stop()
            qemu.stop()

    def copy_and_pivot(self, c, qemu):
        """A copy of disk 0 (drive-mirror sync full), ready, pivoted onto."""
        target = os.path.join(os.path.dirname(qemu.images[0]), "copy.qcow2")
        c.ok("drive-mirror", {"device": qemu.device_arg(0), "job-id": "copy",
                              "target": target, "format": "qcow2", "sync": "full"})
        c.wait_event("BLOCK_JOB_READY", pred=lambda e: e["data"]["device"] == "copy")
        c.ok("block-job-complete", {"device": "copy"})
        c.wait_event("JOB_STATUS_CHANGE", pred=lambda e: e["data"] == {
            "id": "copy", "status": "null"})
        self.assertEqual(qemu_chain(c)[0], [target])

    def snapshot(self, c, qemu):
        """An overlay on disk 0 (a command: asked about as before)."""
        args = {"snapshot-file": os.path.join(os.path.dirname(qemu.images[0]),
                                              "over.qcow2"), "format": "qcow2"}
        if self.shape == "none":
            args["device"] = "disk0"
        else:
            args["node-name"] = "fmt0"
            args["snapshot-node-name"] = "over"
        c.ok("blockdev-snapshot-sync", args)
        c.wait_event("QMPROXY_CHAIN_CHANGED")  # QEMU's answer is in

    def commit(self, c, qemu):
        """An active commit of the overlay, pivoted: the layer leaves."""
        c.ok("block-commit", {"device": "disk0" if self.shape == "none" else "over",
                              "job-id": "fold"})
        c.wait_event("BLOCK_JOB_READY", pred=lambda e: e["data"]["device"] == "fold")
        c.ok("block-job-complete", {"device": "fold"})
        c.wait_event("JOB_STATUS_CHANGE", pred=lambda e: e["data"] == {
            "id": "fold", "status": "null"})
        self.assertEqual(qemu_chain(c)[0], [qemu.images[0]])

    def two_snapshots(self, c, qemu):
        """Two overlays on disk 0 (commands: asked about as before)."""
        for n in ("over", "over2"):
            args = {"snapshot-file": os.path.join(
                os.path.dirname(qemu.images[0]), n + ".qcow2"), "format": "qcow2"}
            if self.shape == "none":
                args["device"] = "disk0"
            else:
                args["node-name"] = "fmt0" if n == "over" else "over"
                args["snapshot-node-name"] = n
            c.ok("blockdev-snapshot-sync", args)
            c.wait_event("QMPROXY_CHAIN_CHANGED")

    def stream(self, c, qemu):
        """A stream of everything below into the top: the layers leave."""
        c.ok("block-stream", {"device": "disk0" if self.shape == "none" else "over2",
                              "job-id": "pull"})
        c.wait_event("JOB_STATUS_CHANGE", pred=lambda e: e["data"] == {
            "id": "pull", "status": "null"})
        self.assertEqual(qemu_chain(c)[0], [os.path.join(
            os.path.dirname(qemu.images[0]), "over2.qcow2")])

    def assert_bounded(self, job, prepare=None):
        small, small_events, small_check = self.one_vm(1, job, prepare)
        large, large_events, large_check = self.one_vm(8, job, prepare)
        self.assertGreaterEqual(len(small_events), 5, small_events)
        self.assertEqual(len(small_events), len(large_events))
        # nothing asked because of an event, at 1 disk as at 8
        self.assertEqual(small, [])
        self.assertEqual(large, [])
        # the check when asked: the same questions at 1 and 8 disks
        self.assertEqual(small_check, large_check)
        self.assertIn("query-block", small_check)

    def test_copy_events_ask_nothing_at_any_size(self):
        self.assert_bounded(self.copy_and_pivot)

    def test_commit_events_ask_nothing_at_any_size(self):
        self.assert_bounded(self.commit, prepare=self.snapshot)

    def test_stream_events_ask_nothing_at_any_size(self):
        self.assert_bounded(self.stream, prepare=self.two_snapshots)

@for_each_shape
class XmlForm(ChainTestCase):

    def test_xml_parses_back(self):
        s1 = self.snapshot()
        s2 = self.snapshot()
        xml = self.c.ok("qmproxy-query-chain", {"disk": "disk0", "format": "xml"})
        disk = ET.fromstring(xml)
        self.assertEqual(disk.tag, "disk")
        self.assertEqual(disk.get("type"), "file")
        self.assertEqual(disk.find("source").get("file"), s2)
        # libvirt's form: the active layer's format in <driver>
        self.assertEqual(disk.find("driver").get("type"), "qcow2")
        self.assertEqual(disk.find("driver").get("name"), "qemu")
        self.assertIsNone(disk.find("format"))
        self.assertEqual(disk.find("target").get("dev"), "disk0")
        files = []
        bs = disk.find("backingStore")
        index = 1
        while len(bs):
            self.assertEqual(bs.get("type"), "file")
            self.assertEqual(bs.get("index"), str(index))
            self.assertEqual(bs.find("format").get("type"), "qcow2")
            files.append(bs.find("source").get("file"))
            bs = bs.find("backingStore")
            index += 1
        # the chain ends in an empty <backingStore/>
        self.assertEqual(bs.attrib, {})
        self.assertEqual(files, [s1, self.qemu.images[0]])
        self.assertIsNone(disk.find("mirror"))
        everything = ET.fromstring(self.c.ok("qmproxy-query-chain", {"format": "xml"}))
        self.assertEqual(everything.tag, "disks")
        self.assertEqual(len(everything.findall("disk")), 1)

    def test_bad_requests(self):
        for args, words in [
            ({"disk": "nosuch"}, "No disk named 'nosuch'"),
            ({"format": "yaml"}, "Parameter 'format' does not accept value 'yaml'"),
            ({"disk": 7}, "Invalid parameter type for 'disk', expected: string"),
            ({"extra": 1}, "Parameter 'extra' is unexpected"),
        ]:
            r = self.c.cmd("qmproxy-query-chain", args, id="bad")
            self.assertEqual(r["error"]["class"], "GenericError", r)
            self.assertIn(words, r["error"]["desc"])
            self.assertEqual(r["id"], "bad")

    def test_listed_in_query_commands_only_through_proxy(self):
        names = [c["name"] for c in self.c.ok("query-commands")]
        self.assertIn("qmproxy-query-chain", names)
        self.assertIn("query-block", names)
        direct = [c["name"] for c in self.direct().ok("query-commands")]
        self.assertNotIn("qmproxy-query-chain", direct)
        self.assertEqual(len(names), len(direct) + len([n for n in names if n.startswith("qmproxy-")
                                                        or n.startswith("__com.redhat")]))


class Persistence(ChainTestCase):
    """--state: the model survives the proxy's own death."""

    def start_proxy(self, args=None, **kw):
        self.state = os.path.join(self.workdir, "state.json")
        self.tlog = os.path.join(self.workdir, "traffic.jsonl")
        return super().start_proxy(args=["--state", self.state, "--traffic-log", self.tlog], **kw)

    def test_restart_after_kill_finds_changes(self):
        s1 = self.snapshot()
        wait_for(lambda: os.path.exists(self.state) and s1 in open(self.state).read(),
                 what="the state file to hold the snapshot")
        saved = json.load(open(self.state))
        self.assertEqual(saved["format"], "qmproxy-state")
        self.c.close()
        self.proxy.proc.send_signal(signal.SIGKILL)
        self.proxy.proc.wait()
        os.unlink(self.proxy.listen)  # a killed proxy leaves its socket
        # the chain changes behind its back, through QEMU's other monitor
        other = self.direct()
        s2 = os.path.join(self.workdir, "behind-its-back.qcow2")
        other.ok("blockdev-snapshot-sync", {"device": "disk0", "snapshot-file": s2,
                                            "format": "qcow2"})
        self.proxy = self.start_proxy()
        c = self.client()
        model = proxy_chain(c)
        files, _, node = qemu_chain(c)
        self.assertEqual([l["file"] for l in model["chain"]], files)
        self.assertEqual(files, [s2, s1, self.qemu.images[0]])
        wait_for(lambda: "while qmproxy was away, the chain of disk disk0 changed"
                 in self.proxy.read_stderr(), what="the log line")
        # the writer thread writes the line within milliseconds, not at once
        def away_events():
            events = [json.loads(l) for l in open(self.tlog) if "QMPROXY_CHAIN_CHANGED" in l]
            return [e for e in events if e["msg"]["data"].get("reason") == "changed-while-away"]
        ev = wait_for(away_events, what="the changed-while-away event in the traffic log")
        self.assertEqual(ev[0]["msg"]["data"]["before"], "%s <- %s" % (s1, self.qemu.images[0]))

    def test_corrupt_state_file_set_aside(self):
        self.c.close()
        self.proxy.terminate()
        with open(self.state, "w") as f:
            f.write('{"format": "qmproxy-state", "version": 1, "state": {"chain": {"disks": [')
        self.proxy = self.start_proxy()
        c = self.c = self.client()
        self.assertEqual(len(proxy_chain(c)["chain"]), 1)
        err = self.proxy.read_stderr()
        self.assertIn("cannot be trusted (it is not complete JSON", err)
        aside = [f for f in os.listdir(self.workdir) if f.startswith("state.json.corrupt-")]
        self.assertEqual(len(aside), 1, os.listdir(self.workdir))
        self.assertIn("moved to " + os.path.join(self.workdir, aside[0]), err)
        # and the proxy writes a good one again
        self.snapshot()
        wait_for(lambda: os.path.exists(self.state)
                 and json.load(open(self.state))["format"] == "qmproxy-state",
                 what="a new state file")


if __name__ == "__main__":
    unittest.main(verbosity=2)
