"""The operations with their copy on another host: qmproxy-block-copy,
qmproxy-snapshot-mirror and qmproxy-snapshot-mirror-xml onto an NBD export
served by qemu-storage-daemon on a second "host" (network namespaces made
by hosts.py, link-local addresses), then reopen onto the export (QEMU then
runs on the other host's image) or abort.  The destination image is
created on the receiving host by the test, as the receiving side's tooling
would.  Data written before and during each copy (qemu-io through
human-monitor-command) is compared with `qemu-img compare` against the
source, and data written after the reopen is read back on the receiving
host.  Also: bad targets get a clear error, and a policy that does not name
the NBD server refuses the copy."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import hosts
import tlscerts
from qmptest import BUILD, QMPROXY, TIMEOUT, QMPClient, wait_for
from test_chain import qemu_chain

QMPROXYCTL = os.environ.get("QMPROXYCTL_BIN", os.path.join(BUILD, "qmproxyctl"))
MiB = 1 << 20
SIZE = "64M"


class RemoteTestCase(unittest.TestCase):
    """A source host (QEMU and qmproxy) and a destination host
    (qemu-storage-daemon serving the images it made)."""

    proxy_args = ("--extras", "default")

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="qmptest-remote-",
                                        dir=os.environ.get("QMPTEST_TMP"))
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)
        self.src = os.path.join(self.workdir, "src")
        self.dest = os.path.join(self.workdir, "dest")
        os.makedirs(self.src)
        os.makedirs(self.dest)
        self.hosts = hosts.Hosts(2)
        self.addCleanup(self.hosts.close)
        self.source, self.target = self.hosts[0], self.hosts[1]
        self.qemu = self.source.qemu(self.workdir, image_dir=self.src)
        self.addCleanup(self.qemu.stop)
        self.image = self.qemu.images[0]
        self.proxy = self.start_proxy(self.proxy_args)
        self.c = self.proxy.client()
        self.addCleanup(self.c.close)
        self.c.negotiate()

    def start_proxy(self, args):
        # every qmproxy of a test keeps its state in the same file
        self.state = os.path.join(self.workdir, "state.json")
        p = self.source.proxy(self.workdir, self.qemu.monitors[0],
                              args=tuple(args) + ("--state", self.state))
        self.addCleanup(p.stop)
        return p

    def saved_state(self):
        try:
            with open(self.state) as f:
                return f.read()
        except OSError:
            return ""

    def kill_proxy(self):
        """qmproxy killed outright, once it has saved a ready operation."""
        # an operation (or disk) state, not the "ready": false every disk
        # is saved with from the start
        wait_for(lambda: re.search(r'"state": ?"ready"', self.saved_state()),
                 what="saved ready")
        self.c.close()
        self.proxy.proc.kill()
        self.proxy.proc.wait()
        os.unlink(self.proxy.listen)

    def restart_proxy(self):
        self.proxy = self.start_proxy(self.proxy_args)
        self.c = self.proxy.client()
        self.addCleanup(self.c.close)
        self.c.negotiate()

    def other_monitor(self):
        """A client of QEMU's other monitor, not through qmproxy."""
        other = QMPClient(self.qemu.monitors[1])
        self.addCleanup(other.close)
        other.negotiate()
        return other

    def complete_elsewhere(self, job):
        """Another client pivots the copy (completes and finalizes it)."""
        other = self.other_monitor()
        other.ok("block-job-complete", {"device": job})
        other.wait_event("BLOCK_JOB_PENDING")
        other.ok("job-finalize", {"id": job})
        other.wait_event("BLOCK_JOB_COMPLETED")

    # ---- the receiving host's side ----

    def make_dest(self, name, backing=None):
        """An image made on the receiving host (never by the sender)."""
        path = os.path.join(self.dest, name)
        args = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if backing:
            args += ["-b", backing, "-F", "qcow2"]
        self.target.run(args + [path, SIZE])
        return path

    def serve(self, exports, **kw):
        qsd = self.target.storage_daemon(self.workdir, exports, **kw)
        self.addCleanup(qsd.kill)
        return qsd

    # ---- the guest's view ----

    def write(self, pattern, offset, size=MiB):
        out = self.qemu.io(self.c, 0, "write -P 0x%02x %d %d" % (pattern, offset, size))
        self.assertNotIn("error", out.lower(), out)

    def check(self, pattern, offset, size=MiB):
        out = self.qemu.io(self.c, 0, "read -P 0x%02x %d %d" % (pattern, offset, size))
        self.assertNotIn("fail", out.lower(), out)

    def flush(self):
        self.qemu.io(self.c, 0, "flush")

    def top(self):
        return qemu_chain(self.c, 0)[0][0]

    def op(self, name=None):
        ops = self.c.ok("qmproxy-query-operations", {"name": name} if name else {})
        return ops[-1]

    def compare(self, source_image, uri):
        """qemu-img compare of a (no longer used) source image with the
        export, run on the receiving host."""
        r = self.target.run(["qemu-img", "compare", "-U", "-f", "qcow2",
                             "-F", "raw", source_image, uri], check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def read_on_target(self, uri, pattern, offset, size=MiB):
        out = self.target.run(["qemu-io", "-f", "raw", "-c", "read -P 0x%02x %d %d"
                               % (pattern, offset, size), uri]).stdout
        self.assertNotIn("fail", out.lower(), out)
        self.assertIn("read %d/%d bytes" % (size, size), out)


class BlockCopy(RemoteTestCase):

    def start_copy(self, target, **kw):
        args = {"disk": "disk0", "target": target}
        args.update(kw)
        return self.c.cmd("qmproxy-block-copy", args)

    def test_copy_to_export_then_reopen_runs_on_it(self):
        self.write(0x11, 0)
        dest = self.make_dest("disk0.qcow2")
        qsd = self.serve({"disk0": dest})
        uri = qsd.uri("disk0")
        r = self.start_copy(uri)
        self.assertIn("return", r)
        op = self.op()
        self.assertEqual(op["state"], "ready")
        self.assertEqual(op["disks"][0]["mirror-file"], uri)
        self.assertEqual(op["disks"][0]["format"], "raw")
        self.write(0x22, 4 * MiB)                 # during the copy
        self.c.ok("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(self.top(), uri)         # QEMU runs on the export
        self.compare(self.image, uri)
        self.check(0x11, 0)
        self.check(0x22, 4 * MiB)
        self.write(0x33, 8 * MiB)                 # after: on the other host
        self.read_on_target(uri, 0x33, 8 * MiB)
        self.read_on_target(uri, 0x22, 4 * MiB)
        self.assertEqual(self.op()["state"], "pivoted")

    def test_structured_target_over_unix_socket_then_drop(self):
        self.write(0x44, 0)
        dest = self.make_dest("disk0.qcow2")
        sock = os.path.join(self.dest, "nbd.sock")
        qsd = self.serve({"d0": dest}, unix_socket=sock)
        r = self.start_copy({"server": {"type": "unix", "path": sock},
                             "export": "d0"})
        self.assertIn("return", r)
        uri = "nbd+unix:///d0?socket=%s" % sock
        self.assertEqual(qsd.uri("d0"), uri)
        self.assertEqual(self.op()["disks"][0]["mirror-file"], uri)
        self.write(0x55, 2 * MiB)
        self.flush()
        # the copy has everything so far
        wait_for(lambda: self.target.run(
            ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw",
             self.image, uri], check=False).returncode == 0,
            what="the export to match the source")
        # abort: drop the copy, stay on the source image
        self.c.ok("qmproxy-reopen", {"disk": "disk0", "file": self.image})
        self.assertEqual(self.top(), self.image)
        self.write(0x66, 6 * MiB)
        self.check(0x55, 2 * MiB)
        out = self.target.run(["qemu-io", "-f", "raw", "-c",
                               "read -P 0x66 %d %d" % (6 * MiB, MiB), uri],
                              check=False).stdout
        self.assertIn("Pattern verification failed", out)

    def test_destination_qemu_serves_qmproxyctl_copies(self):
        """The other server: the destination QEMU's own NBD server
        (nbd-server-start, block-export-add), driven with qmproxyctl."""
        self.write(0x12, 0)
        destdir = os.path.join(self.workdir, "destvm")
        os.makedirs(os.path.join(destdir, "img"))
        dest = os.path.join(destdir, "img", "disk0.qcow2")
        self.target.run(["qemu-img", "create", "-q", "-f", "qcow2", dest, "64M"])
        qd = self.target.qemu(destdir, image_dir=os.path.join(destdir, "img"),
                              monitors=1)
        self.addCleanup(qd.stop)
        d = QMPClient(qd.monitors[0])
        self.addCleanup(d.close)
        d.negotiate()
        d.ok("nbd-server-start", {"addr": {"type": "inet", "data": {
            "host": self.target.addr, "port": "10809"}}})
        node = d.ok("query-block")[0]["inserted"]["node-name"]
        d.ok("block-export-add", {"type": "nbd", "id": "e0", "node-name": node,
                                  "name": "vda", "writable": True})
        uri = "nbd://%s:10809/vda" % self.target.addr
        env = dict(os.environ, NO_COLOR="1")
        r = subprocess.run([QMPROXYCTL, "-s", self.proxy.listen, "block-copy",
                            "disk0", uri, "--wait"], capture_output=True,
                           text=True, timeout=120, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.write(0x23, 3 * MiB)
        r = subprocess.run([QMPROXYCTL, "-s", self.proxy.listen, "reopen",
                            "disk0"], capture_output=True, text=True,
                           timeout=120, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.top(), uri)
        self.compare(self.image, uri)
        self.write(0x34, 5 * MiB)
        # the destination QEMU sees the guest's writes in its own disk
        out = d.hmp('qemu-io disk0 "read -P 0x34 %d %d"' % (5 * MiB, MiB))
        self.assertNotIn("fail", out.lower(), out)

    def test_storage_daemon_killed_while_ready(self):
        """The receiving side goes away: the copy fails, the guest stays on
        its own image with all its data, the operation says so."""
        self.write(0x11, 0)
        dest = self.make_dest("disk0.qcow2")
        qsd = self.serve({"disk0": dest})
        self.c.ok("qmproxy-block-copy", {"disk": "disk0", "target": qsd.uri("disk0")})
        qsd.kill()
        # the mirror writes through to the target, and fails there
        for i in range(8):
            self.write(0x20 + i, i * MiB)
            if self.op()["state"] == "failed":
                break
        wait_for(lambda: self.op()["state"] == "failed", what="the copy to fail")
        op = self.op()
        self.assertIn("disk0", op["error"])
        self.assertEqual(self.top(), self.image)
        for i in range(8):
            self.check(0x20 + i, i * MiB)
        self.c.ok("qmproxy-block-copy", {"disk": "disk0", "target":
                                         os.path.join(self.src, "again.qcow2")})

    def test_receiving_side_gone_longer_than_reconnect_delay(self):
        """Past the budget the target gave QEMU (reconnect-delay), the copy
        fails cleanly: the guest stays on its image with all its data."""
        self.write(0x11, 0)
        dest = self.make_dest("disk0.qcow2")
        qsd = self.serve({"disk0": dest})
        self.c.ok("qmproxy-block-copy", {"disk": "disk0", "target": {
            "server": {"type": "inet", "host": self.target.addr, "port": "10809"},
            "export": "disk0", "reconnect-delay": 1}})
        qsd.stop()
        written = {}
        for i in range(20):
            written[(i % 8) * MiB] = 0x30 + i
            self.write(0x30 + i, (i % 8) * MiB)
            if self.op()["state"] == "failed":
                break
            time.sleep(0.5)
        wait_for(lambda: self.op()["state"] == "failed", timeout=60,
                 what="the copy to fail")
        self.assertIn("failed after it was ready", self.op()["error"])
        self.assertEqual(self.top(), self.image)
        for offset, pattern in written.items():
            self.check(pattern, offset)

    def test_bad_targets_refused_with_what_to_fix(self):
        cases = [
            ("nbd://:10809/x", "names no host"),
            ("nbd://169.254.77.2:99999/x", "not a port number"),
            ("nbd://169.254.77.2:10809/x?a=b", "takes no query"),
            ("nbd+unix:///x", "socket=PATH"),
            ("nbd+unix:///x?socket=rel.sock", "must be an absolute path"),
            ({"export": "x"}, "needs 'server'"),
            ({"server": {"type": "inet", "host": "169.254.77.2"}},
             "needs 'host' and 'port'"),
            ({"server": {"type": "unix", "path": "/x"}, "bogus": 1},
             "unknown member 'bogus'"),
            ({"driver": "file", "filename": "/x"}, "only an NBD export"),
            (42, "expected: string or object"),
        ]
        for target, words in cases:
            r = self.start_copy(target)
            self.assertEqual(r["error"]["class"], "GenericError", (target, r))
            self.assertIn(words, r["error"]["desc"], target)
            self.assertIn("nothing was done", r["error"]["desc"], target)
        r = self.start_copy("nbd://169.254.77.2:10809/x", mode="absolute-paths")
        self.assertIn("use mode 'existing'", r["error"]["desc"])
        self.assertEqual(self.c.ok("qmproxy-query-operations"), [])
        self.assertEqual(self.top(), self.image)

    def test_export_not_there_fails_cleanly(self):
        # nothing listens on the destination host
        r = self.start_copy("nbd://%s:10809/none" % self.target.addr)
        self.assertIn("error", r)
        self.assertIn("refused", r["error"]["desc"])
        self.assertEqual(self.top(), self.image)
        self.write(0x77, 0)


class Faults(RemoteTestCase):
    """The network and the receiving side misbehave during a copy."""

    def test_link_down_for_seconds_mid_copy(self):
        """A short outage mid-copy: TCP and QEMU's NBD client ride it out,
        the copy completes, and it holds everything written meanwhile."""
        for i in range(8):
            self.write(0x40 + i, i * MiB)
        dest = self.make_dest("disk0.qcow2")
        qsd = self.serve({"disk0": dest})
        uri = qsd.uri("disk0")
        other = self.proxy.client()
        self.addCleanup(other.close)
        other.negotiate()
        # slow enough to be mid-copy when the link goes (the speed counts
        # the whole 64 MiB disk, unallocated parts too: about 8 s)
        other.send({"execute": "qmproxy-block-copy", "arguments": {
            "disk": "disk0", "target": uri, "speed": 8 * MiB}})
        wait_for(lambda: self.c.ok("qmproxy-query-operations")
                 and self.op()["state"] == "mirroring", what="the copy to run")
        self.target.link_down()
        try:
            # the fault lasts a few seconds; the guest writes all along
            for i in range(3):
                self.write(0x50 + i, (16 + i) * MiB)
                time.sleep(1)
            self.assertNotEqual(self.op()["state"], "failed")
        finally:
            self.target.link_up()
        other.sock.settimeout(120)    # the rest of the copy, then ready
        r = other.read_reply()
        self.assertIn("return", r, r)
        self.write(0x60, 24 * MiB)
        self.c.ok("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(self.top(), uri)
        self.compare(self.image, uri)

    def test_storage_daemon_restarted_with_reconnect_delay(self):
        """The receiving side's daemon restarts while the copy is ready:
        with reconnect-delay (QEMU's NBD reconnect, given through the
        target) the copy waits for it and carries on."""
        self.write(0x11, 0)
        dest = self.make_dest("disk0.qcow2")
        qsd = self.serve({"disk0": dest})
        uri = qsd.uri("disk0")
        self.c.ok("qmproxy-block-copy", {"disk": "disk0", "target": {
            "server": {"type": "inet", "host": self.target.addr, "port": "10809"},
            "export": "disk0", "reconnect-delay": 30}})
        qsd.stop()
        self.write(0x22, 2 * MiB)            # dirty while the server is gone
        self.assertEqual(self.op()["state"], "ready")
        qsd = self.serve({"disk0": dest})
        self.write(0x33, 4 * MiB)
        self.c.ok("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(self.op()["state"], "pivoted")
        self.assertEqual(self.top(), uri)
        self.compare(self.image, uri)


class Restart(RemoteTestCase):
    """The sending side's qmproxy killed while a copy to another host is
    ready, and started again with its --state: the operation carries on."""

    def test_ready_copy_to_export_survives_a_restart(self):
        self.write(0x11, 0)
        snap_base = os.path.join(self.dest, "base.qcow2")
        self.flush()
        self.target.run(["qemu-img", "convert", "-U", "-O", "qcow2", self.image,
                         snap_base])
        snap = self.make_dest("snap.qcow2", backing=snap_base)
        qsd = self.serve({"snap": snap})
        uri = qsd.uri("snap")
        local = os.path.join(self.src, "snap.qcow2")
        self.c.ok("qmproxy-snapshot-mirror", {"name": "move", "disks": [
            {"disk": "disk0", "snapshot-file": local, "mirror-file": uri}]})
        self.kill_proxy()
        out = self.qemu.io(self.other_monitor(), 0, "write -P 0x22 %d %d"
                           % (4 * MiB, MiB))       # while qmproxy is away
        self.assertNotIn("error", out.lower(), out)
        self.restart_proxy()
        op = self.op("move")
        self.assertEqual(op["state"], "ready", op)
        self.assertEqual(op["disks"][0]["mirror-format"], "raw")
        self.c.ok("qmproxy-snapshot-reopen", {"name": "move", "target": "mirror"})
        self.assertEqual(self.top(), uri)
        self.compare(local, uri)
        self.check(0x22, 4 * MiB)



class Tls(RemoteTestCase):
    """NBD over TLS: the receiving side's server takes only clients whose
    certificate its CA signed, and the sender checks the server's."""

    def setUp(self):
        super().setUp()
        tls = os.path.join(self.workdir, "tls")
        ca = tlscerts.CA(os.path.join(tls, "ca"))
        self.server_creds = ca.issue(os.path.join(tls, "server"), "server",
                                     ip=self.target.addr)
        self.client_creds = ca.issue(os.path.join(tls, "client"), "client")
        other = tlscerts.CA(os.path.join(tls, "other-ca"), name="someone else")
        self.wrong_creds = other.issue(os.path.join(tls, "wrong"), "client")
        self.dest_image = self.make_dest("disk0.qcow2")
        self.qsd = self.serve({"disk0": self.dest_image}, extra_args=[
            "--object", "tls-creds-x509,id=tls0,endpoint=server,dir=%s"
            % self.server_creds], tls_creds="tls0")

    def creds(self, id, folder):
        self.c.ok("object-add", {"qom-type": "tls-creds-x509", "id": id,
                                 "dir": folder, "endpoint": "client"})

    def target_with(self, creds):
        t = {"server": {"type": "inet", "host": self.target.addr,
                        "port": "10809"}, "export": "disk0"}
        if creds:
            t["tls-creds"] = creds
        return t

    def test_copy_over_tls_then_reopen(self):
        self.creds("tls0", self.client_creds)
        self.write(0x11, 0)
        self.c.ok("qmproxy-block-copy", {"disk": "disk0",
                                         "target": self.target_with("tls0")})
        mirror = self.op()["disks"][0]["mirror-file"]
        self.assertTrue(mirror.startswith("json:"), mirror)
        self.assertIn('"tls-creds":"tls0"', mirror)
        self.write(0x22, 4 * MiB)
        self.c.ok("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(self.op()["state"], "pivoted")
        self.assertNotEqual(self.top(), self.image)
        self.write(0x33, 8 * MiB)
        self.check(0x22, 4 * MiB)
        # read back on the receiving host, in its image
        self.flush()          # through the export, into the image
        self.qsd.kill()
        out = self.target.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c",
                               "read -P 0x33 %d %d" % (8 * MiB, MiB), "-c",
                               "read -P 0x22 %d %d" % (4 * MiB, MiB), "-c",
                               "read -P 0x11 0 %d" % MiB, self.dest_image]).stdout
        self.assertNotIn("fail", out.lower(), out)

    def test_pivot_while_the_proxy_was_away_is_recognised(self):
        """QEMU names the export by its URI, without the TLS options the
        operation's target keeps: a restarted qmproxy still knows the disk
        runs on its copy."""
        self.creds("tls0", self.client_creds)
        self.c.ok("qmproxy-block-copy", {"disk": "disk0",
                                         "target": self.target_with("tls0")})
        job = self.op()["disks"][0]["job"]
        self.kill_proxy()
        self.complete_elsewhere(job)
        self.restart_proxy()
        op = self.op()
        self.assertEqual(op["disks"][0]["state"], "pivoted", op)
        self.assertIn("pivoted while the proxy was away", op["disks"][0]["note"])
        self.assertEqual(self.top(), "nbd://%s:10809/disk0" % self.target.addr)

    def test_pivot_by_another_client_is_recognised(self):
        """Another monitor completes the copy: the operation sees the disk
        pivoted once QEMU's next answer is in (not the model's guess from
        before it)."""
        self.creds("tls0", self.client_creds)
        self.c.ok("qmproxy-block-copy", {"disk": "disk0",
                                         "target": self.target_with("tls0")})
        self.complete_elsewhere(self.op()["disks"][0]["job"])
        wait_for(lambda: self.op()["state"] != "ready", what="the operation to end")
        op = self.op()
        self.assertEqual(op["state"], "pivoted", op)
        self.assertEqual(op["disks"][0]["state"], "pivoted", op)
        self.assertEqual(self.top(), "nbd://%s:10809/disk0" % self.target.addr)

    def test_wrong_certificate_refused(self):
        self.creds("bad", self.wrong_creds)
        self.write(0x11, 0)
        for creds in ("bad", None):
            r = self.c.cmd("qmproxy-block-copy", {
                "disk": "disk0", "target": self.target_with(creds)})
            self.assertEqual(r["error"]["class"], "GenericError", r)
            self.assertIn("was refused", r["error"]["desc"])
            self.assertEqual(self.top(), self.image)
        self.check(0x11, 0)


class SnapshotMirror(RemoteTestCase):
    """The RFC's mirrored snapshot, its copy on another host.  The older
    layers are on the receiving host before the copy starts (copied there
    while the guest is quiet): the export serves the whole disk once QEMU
    reopens onto it."""

    def prepare_target(self):
        self.write(0x11, 0)
        self.flush()
        base = os.path.join(self.dest, "base.qcow2")
        # the receiving host copies the older layer (read over the shared
        # file system here; over any transport in real life)
        self.target.run(["qemu-img", "convert", "-U", "-O", "qcow2",
                         self.image, base])
        return self.make_dest("snap.qcow2", backing=base)

    def test_structured_target_reopen_onto_mirror(self):
        snap = self.prepare_target()
        qsd = self.serve({"snap": snap})
        uri = qsd.uri("snap")
        local = os.path.join(self.src, "snap.qcow2")
        self.c.ok("qmproxy-snapshot-mirror", {"name": "move", "disks": [
            {"disk": "disk0", "snapshot-file": local,
             "mirror-file": {"server": {"type": "inet",
                                        "host": self.target.addr,
                                        "port": "10809"},
                             "export": "snap"}}]})
        op = self.op("move")
        self.assertEqual(op["state"], "ready")
        self.assertEqual(op["disks"][0]["mirror-file"], uri)
        self.assertEqual(op["disks"][0]["mirror-format"], "raw")
        self.write(0x22, 4 * MiB)
        self.c.ok("qmproxy-snapshot-reopen", {"name": "move", "target": "mirror"})
        self.assertEqual(self.op("move")["state"], "pivoted")
        self.assertEqual(self.top(), uri)
        self.compare(local, uri)                   # with its backing file
        self.write(0x33, 8 * MiB)
        self.read_on_target(uri, 0x33, 8 * MiB)
        self.read_on_target(uri, 0x11, 0)

    def test_xml_unix_uri_then_abort(self):
        snap = self.prepare_target()
        sock = os.path.join(self.dest, "nbd.sock")
        qsd = self.serve({"snap": snap}, unix_socket=sock)
        local = os.path.join(self.src, "snap.qcow2")
        xml = ("<domainsnapshot><name>away</name><disks>"
               "<disk name='disk0' snapshot='external'><source file='%s'/>"
               "<mirror file='%s'/></disk></disks></domainsnapshot>"
               % (local, qsd.uri("snap")))
        self.c.ok("qmproxy-snapshot-mirror-xml", {"xml": xml})
        self.assertEqual(self.op("away")["state"], "ready")
        self.assertEqual(self.top(), local)
        self.write(0x22, 4 * MiB)
        self.c.ok("qmproxy-snapshot-abort", {"name": "away"})
        self.assertEqual(self.op("away")["state"], "aborted")
        self.assertEqual(self.top(), self.image)   # back on its image
        self.check(0x11, 0)
        self.check(0x22, 4 * MiB)                  # folded back


class ReplicaCase(RemoteTestCase):
    """The policy's on="connect" rule keeps a replica on another host: its
    target names the NBD server, the receiving side exports DISK-replica.
    (No tests of its own: the classes below share its set-up.)"""

    rule_attrs = ""     # more attributes of the rule, per test class

    def start_proxy(self, args):
        # the receiving side first: its export is there when qmproxy starts
        if not hasattr(self, "replica"):
            self.replica = self.make_dest("disk0-replica.qcow2")
            self.qsd = self.serve({"disk0-replica": self.replica})
        path = os.path.join(self.workdir, "policy.xml")
        with open(path, "w") as f:
            f.write('<?xml version="1.0"?>\n<policy><mirroring>'
                    '<rule name="away" disks="disk0" on="connect" '
                    'target="nbd://%s" %s/></mirroring></policy>\n'
                    % (self.target.addr, self.rule_attrs))
        return super().start_proxy(tuple(args) + ("--policy", path))

    def wait_ready(self):
        wait_for(lambda: self.c.ok("qmproxy-query-operations")
                 and self.op()["state"] == "ready", what="the replica")


class Replica(ReplicaCase):
    """A replica on another host: kept, its lag shown, bad rules refused."""

    def test_replica_on_another_host(self):
        uri = "nbd://%s:10809/disk0-replica" % self.target.addr
        self.wait_ready()
        op = self.op()
        self.assertEqual(op["type"], "auto-mirror")
        self.assertEqual(op["rule"], "away")
        self.assertEqual(op["disks"][0]["mirror-file"], uri)
        self.assertEqual(op["disks"][0]["format"], "raw")
        for i in range(4):
            self.write(0x70 + i, i * 3 * MiB)
        self.flush()
        # the replica follows the writes (the mirror copies them at once)
        wait_for(lambda: self.target.run(
            ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw",
             self.image, uri], check=False).returncode == 0,
            what="the replica to match the disk")
        self.assertEqual(self.top(), self.image)   # the guest stays home

    def test_lag_shown_while_the_link_is_down(self):
        """The replica's lag (bytes not copied yet, seconds since it was in
        sync) in qmproxy-query-operations: nothing while in sync, growing
        while the receiving host is cut off, nothing again once caught
        up."""
        uri = "nbd://%s:10809/disk0-replica" % self.target.addr
        wait_for(lambda: self.c.ok("qmproxy-query-operations")
                 and self.op()["state"] == "ready", what="the replica")
        disk = self.op()["disks"][0]
        self.assertEqual((disk["lag-bytes"], disk["lag-seconds"]), (0, 0), disk)
        self.target.link_down()
        try:
            self.write(0x81, 0, 4 * MiB)
            wait_for(lambda: self.op()["disks"][0]["lag-bytes"] > 0,
                     what="the lag to show")
            disk = self.op()["disks"][0]
            self.assertGreater(disk["lag-seconds"], 0, disk)
            self.assertLessEqual(disk["lag-bytes"], 4 * MiB, disk)
            out = subprocess.run([QMPROXYCTL, "-s", self.proxy.listen, "ops"],
                                 capture_output=True, text=True, timeout=60,
                                 env=dict(os.environ, NO_COLOR="1")).stdout
            self.assertRegex(out, r"disk0 ready \d+% lag \d+\.\d MiB for \d+\.\d s", out)
            self.assertEqual(self.op()["state"], "ready")
        finally:
            self.target.link_up()
        wait_for(lambda: self.op()["disks"][0]["lag-bytes"] == 0, timeout=120,
                 interval=0.2, what="the replica to catch up")
        self.assertEqual(self.op()["disks"][0]["lag-seconds"], 0)
        self.flush()
        wait_for(lambda: self.target.run(
            ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw",
             self.image, uri], check=False).returncode == 0,
            what="the replica to match the disk")

    def test_bad_rules_refused_with_line(self):
        def check(rule):
            path = os.path.join(self.workdir, "bad.xml")
            with open(path, "w") as f:
                f.write('<?xml version="1.0"?>\n<policy><mirroring>\n%s\n'
                        '</mirroring></policy>\n' % rule)
            r = subprocess.run([QMPROXY, "--check-policy", path],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stdout)
            return r.stdout + r.stderr
        out = check('<rule name="r" disks="d*" on="snapshot" target="nbd://h"/>')
        self.assertIn("bad.xml:3: rule 'r': an NBD server as the target takes "
                      "a replica of the whole disk", out)
        out = check('<rule name="r" disks="d*" on="connect" target="nbd://h/vda"/>')
        self.assertIn("names an export (vda)", out)
        out = check('<rule name="r" disks="d*" on="connect" target="nbd://:5"/>')
        self.assertIn("names no host", out)


class ReplicaOutage(ReplicaCase):
    """The link to the replica's host fails for a while, within the rule's
    outage budget: the replica catches up copying only what the guest
    wrote meanwhile (QEMU's mirror keeps its dirty bitmap while its
    connection is stalled, or while paused on write errors and resumed by
    qmproxy), and the lag is announced as it goes."""

    rule_attrs = 'backoff-ms="500" max-backoff-ms="1000" outage-budget-ms="60000"'
    WRITES = 3          # MiB written during the outage

    def copied(self):
        disk = self.op()["disks"][0]
        return disk["offset"], disk["len"]

    def in_sync(self):
        offset, length = self.copied()
        return offset == length

    def write_during_outage(self):
        for i in range(self.WRITES):
            self.write(0x90 + i, (20 + 2 * i) * MiB)
        self.flush()

    def lag_events(self):
        return [e for e in self.c.events if e["event"] == "QMPROXY_REPLICA_LAG"]

    def synced(self, timeout=TIMEOUT):
        """The replica equal to the disk, and its job seen in sync (QEMU's
        mirror counts a write only when its loop next runs: the data
        compared first), then the job's offset."""
        self.flush()
        uri = "nbd://%s:10809/disk0-replica" % self.target.addr
        wait_for(lambda: self.target.run(
            ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw",
             self.image, uri], check=False).returncode == 0,
            timeout=timeout, interval=0.2, what="the replica to match the disk")
        wait_for(self.in_sync, timeout=timeout, interval=0.2,
                 what="the replica's job in sync")
        return self.copied()[0]

    def catch_up(self, before):
        """Bytes copied since before, once caught up."""
        return self.synced(timeout=120) - before

    def assert_only_changes(self, copied):
        written = self.WRITES * MiB
        # what was written, in whole chunks of the mirror's granularity
        # (64 KiB for a 64 MiB disk): nothing of the rest of the disk
        self.assertGreaterEqual(copied, written)
        self.assertLessEqual(copied, written + MiB)
        self.assertLess(copied, 64 * MiB // 8)

    def test_link_down_then_back_copies_only_the_changes(self):
        """Packets dropped (no reset): the copy stalls, nothing fails;
        once the link is back only the changes are copied."""
        self.wait_ready()
        self.write(0x11, 0, 8 * MiB)
        before = self.synced()
        self.target.link_down()
        try:
            self.write_during_outage()
            wait_for(lambda: any(e["data"]["state"] == "stalled"
                                 for e in self.lag_events()) or
                     (self.op() and False), timeout=30, interval=0.5,
                     what="the replica announced stalled")
            self.assertEqual(self.op()["state"], "ready")
        finally:
            self.target.link_up()
        copied = self.catch_up(before)
        self.assert_only_changes(copied)
        wait_for(lambda: self.op() and self.lag_events()[-1]["data"]["state"]
                 == "in-sync", what="in-sync announced")
        self.assert_rate_limited()

    def test_receiving_daemon_gone_pauses_and_resumes(self):
        """The connection reset (the receiving daemon restarted): QEMU's
        mirror pauses on the write errors (on-target-error=stop), qmproxy
        resumes it on its backoff until the export is back, and only the
        changes are copied."""
        self.wait_ready()
        self.write(0x11, 0, 8 * MiB)
        before = self.synced()
        # stopped, not killed: a daemon killed outright loses the writes
        # its qcow2 cache held, which the mirror counted as copied
        self.qsd.stop()
        self.write_during_outage()
        wait_for(lambda: self.op()["disks"][0].get("job-status") == "standby",
                 timeout=30, interval=0.2, what="the copy to pause")
        time.sleep(3)         # a few resumes that fail again
        op = self.op()
        self.assertEqual(op["state"], "ready", op)
        self.assertIn("paused", [e["data"]["state"] for e in self.lag_events()])
        self.qsd = self.serve({"disk0-replica": self.replica}, name="qsd2")
        copied = self.catch_up(before)
        self.assert_only_changes(copied)
        self.assertEqual(self.op()["state"], "ready")
        self.assert_rate_limited()

    def test_paused_copy_resumed_by_a_restarted_proxy(self):
        """qmproxy killed while the copy is paused on errors, started again
        with its --state: it finds the copy paused (QEMU's io-status, the
        events were missed), resumes it once the other side is back, and
        only the changes are copied."""
        self.wait_ready()
        self.write(0x11, 0, 8 * MiB)
        before = self.synced()
        self.qsd.stop()
        self.write_during_outage()
        wait_for(lambda: self.op()["disks"][0].get("job-status") == "standby",
                 timeout=30, interval=0.2, what="the copy to pause")
        self.kill_proxy()
        self.qsd = self.serve({"disk0-replica": self.replica}, name="qsd2")
        self.restart_proxy()
        op = self.op()
        self.assertEqual(op["state"], "ready", op)
        copied = self.catch_up(before)
        self.assert_only_changes(copied)
        self.assertEqual(self.op()["state"], "ready")
        self.assertIn("watched again after a restart", self.proxy.read_stderr())

    def assert_rate_limited(self):
        """QMPROXY_REPLICA_LAG: on changes only, at most once a second."""
        events = self.lag_events()
        self.assertTrue(events)
        for e in events:
            self.assertEqual(e["data"]["disk"], "disk0")
            self.assertIn(e["data"]["state"], ("in-sync", "behind", "stalled",
                                               "paused"))
        stamps = [e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
                  for e in events]
        for a, b in zip(stamps, stamps[1:]):
            self.assertGreaterEqual(b - a, 0.5, stamps)
        for a, b in zip(events, events[1:]):
            self.assertNotEqual((a["data"]["state"], a["data"]["lag-bytes"]),
                                (b["data"]["state"], b["data"]["lag-bytes"]))


class ReplicaPastBudget(ReplicaCase):
    """A link down for longer than the rule's outage budget: the copy is
    given up cleanly (the hung NBD connection cut, the job cancelled), the
    guest keeps running on its own image with all its data, and the
    operation says why."""

    rule_attrs = 'backoff-ms="500" max-backoff-ms="1000" outage-budget-ms="4000"'

    def test_link_down_past_the_budget_fails_cleanly(self):
        self.wait_ready()
        self.target.link_down()
        self.addCleanup(self.target.link_up)
        for i in range(4):
            self.write(0xa0 + i, i * MiB)
        wait_for(lambda: self.op()["state"] == "failed", timeout=60,
                 interval=0.5, what="the copy to be given up")
        op = self.op()
        self.assertIn("outage budget of 4 s", op["error"])
        self.assertIn("no progress", op["error"])
        self.assertEqual(self.c.ok("query-block-jobs"), [])
        self.assertEqual(self.top(), self.image)
        for i in range(4):
            self.check(0xa0 + i, i * MiB)
        self.write(0xb0, 8 * MiB)          # the guest carries on
        self.check(0xb0, 8 * MiB)

    def test_daemon_gone_past_the_budget_fails_cleanly(self):
        self.wait_ready()
        self.qsd.kill()
        self.write(0xa0, 0)
        wait_for(lambda: self.op()["state"] == "failed", timeout=60,
                 interval=0.5, what="the copy to be given up")
        op = self.op()
        self.assertIn("the copy paused on write errors", op["error"])
        self.assertEqual(self.c.ok("query-block-jobs"), [])
        self.assertEqual(self.top(), self.image)
        self.check(0xa0, 0)


class Policy(RemoteTestCase):
    """A restricted listener may name only the NBD servers the policy
    allows, however it names them."""

    def start_proxy(self, args):
        path = os.path.join(self.workdir, "policy.xml")
        with open(path, "w") as f:
            f.write('<?xml version="1.0"?>\n<policy><paths>'
                    '<allow dir="%s"/><allow nbd="tcp:169.254.77.2:10809"/>'
                    '</paths></policy>\n' % self.src)
        return super().start_proxy(tuple(args) + ("--policy", path))

    def test_only_allowed_servers(self):
        dest = self.make_dest("disk0.qcow2")
        sock = os.path.join(self.dest, "nbd.sock")
        self.serve({"disk0": dest})
        refused = [
            {"disk": "disk0", "target": "nbd://169.254.77.2:10810/disk0"},
            {"disk": "disk0", "target": "nbd://169.254.77.3/disk0"},
            {"disk": "disk0", "target": "nbd+unix:///disk0?socket=%s" % sock},
            {"disk": "disk0", "target": {"server": {"type": "unix", "path": sock},
                                         "export": "disk0"}},
            {"disk": "disk0", "target": {"server": {"type": "inet",
                                                    "host": "169.254.77.2",
                                                    "port": "10810"},
                                         "export": "disk0"}},
        ]
        for args in refused:
            r = self.c.cmd("qmproxy-block-copy", args)
            self.assertEqual(r["error"]["class"], "GenericError", args)
            self.assertIn("is not allowed by policy", r["error"]["desc"], args)
            self.assertIn("<allow nbd=", r["error"]["desc"], args)
        r = self.c.cmd("qmproxy-snapshot-mirror", {"disks": [
            {"disk": "disk0", "snapshot-file": os.path.join(self.src, "s.qcow2"),
             "mirror-file": {"server": {"type": "unix", "path": sock},
                             "export": "disk0"}}]})
        self.assertIn("is not allowed by policy", r["error"]["desc"])
        xml = ("<domainsnapshot><disks><disk name='disk0'><source file='%s'/>"
               "<mirror file='nbd+unix:///disk0?socket=%s'/></disk></disks>"
               "</domainsnapshot>" % (os.path.join(self.src, "s.qcow2"), sock))
        r = self.c.cmd("qmproxy-snapshot-mirror-xml", {"xml": xml})
        self.assertIn("is not allowed by policy", r["error"]["desc"])
        self.assertEqual(self.top(), self.image)
        # the allowed one, by URI and by structure
        self.c.ok("qmproxy-block-copy", {"disk": "disk0", "target": {
            "server": {"type": "inet", "host": "169.254.77.2", "port": "10809"},
            "export": "disk0"}})
        self.c.ok("qmproxy-reopen", {"disk": "disk0", "file": self.image})


if __name__ == "__main__":
    unittest.main()
