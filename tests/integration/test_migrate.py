"""Live migration with storage (qmproxy-migrate) between two "hosts"
(network namespaces made by hosts.py, link-local addresses): a source QEMU
with two disks behind qmproxy, a destination QEMU started with
`-incoming defer` behind its own qmproxy, prepared by the test through
that qmproxy as a management tool would (images of the right size made on
the destination host, nbd-server-start, writable block-export-add,
migrate-incoming).  Data written on the source before and during the
copies (qemu-io through human-monitor-command) is read back on the
destination after the switch-over, and each destination image is compared
(`qemu-img compare`) with the source's image as the source left it when it
stopped.  Also: cancel before the switch-over, the destination killed in
the middle of the copies, and requests refused with what to fix."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest

import hosts
import tlscerts
from qmptest import BUILD, QMPClient, wait_for, write_policy

QMPROXYCTL = os.environ.get("QMPROXYCTL_BIN", os.path.join(BUILD, "qmproxyctl"))

MiB = 1 << 20
SIZE = "64M"
DISKS = 2
MIGRATION_PORT = 4444
NBD_PORT = 10809
DEST_QMP_PORT = 4445
# the copies are slowed so that the guest's writes land while they run
# (each write is checked to have been made before the copies were ready):
# FILL MiB of data at SLOW bytes/s leave seconds for a dozen writes, and
# the copies are sped up once the writes are done
SLOW = 4 * MiB
FILL = 48


class MigrateTestCase(unittest.TestCase):

    shape = "none"     # qmptest.QEMU's: -M none and -drive, or q35

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="qmptest-migrate-",
                                        dir=os.environ.get("QMPTEST_TMP"))
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)
        self.srcdir = os.path.join(self.workdir, "src")
        self.destdir = os.path.join(self.workdir, "dest")
        os.makedirs(os.path.join(self.srcdir, "img"))
        os.makedirs(os.path.join(self.destdir, "img"))
        self.hosts = hosts.Hosts(2)
        self.addCleanup(self.hosts.close)
        self.source, self.target = self.hosts[0], self.hosts[1]
        self.qemu = self.source.qemu(self.srcdir, disks=DISKS,
                                     shape=self.shape,
                                     disk_size=SIZE,
                                     image_dir=os.path.join(self.srcdir, "img"))
        self.addCleanup(self.qemu.stop)
        self.proxy = self.source.proxy(self.srcdir, self.qemu.monitors[0])
        self.addCleanup(self.proxy.stop)
        self.c = self.client(self.proxy.listen)
        # progress: the proxy's own events
        self.c.ok("qmproxy-capabilities", {"enable": ["events"]})
        self.writer = self.client(self.proxy.listen)
        self.start_destination()

    def client(self, path):
        c = QMPClient(path)
        self.addCleanup(c.close)
        c.negotiate()
        return c

    # ---- the destination: prepared as libvirt prepares it ----

    def start_destination(self, prelaunch=False):
        """Images of the source's size made on the destination host, a
        QEMU waiting for its state (-incoming defer; prelaunch: and -S, as
        libvirt starts it), its own qmproxy."""
        for i in range(DISKS):
            self.target.run(["qemu-img", "create", "-q", "-f", "qcow2",
                             self.dest_image(i), SIZE])
        self.dest_qemu = self.target.qemu(
            self.destdir, disks=DISKS, disk_size=SIZE, monitors=1,
            shape=self.shape,
            image_dir=os.path.join(self.destdir, "img"),
            extra_args=("-incoming", "defer") + (("-S",) if prelaunch else ()))
        self.addCleanup(self.dest_qemu.stop)
        # its monitor over TCP too, for the source's qmproxy to reach
        self.dest_monitor = "tcp:%s:%d" % (self.target.addr, DEST_QMP_PORT)
        self.dest_proxy = self.target.proxy(
            self.destdir, self.dest_qemu.monitors[0],
            args=("--listen", self.dest_monitor))
        self.addCleanup(self.dest_proxy.stop)
        self.d = self.client(self.dest_proxy.listen)

    def dest_image(self, i):
        return os.path.join(self.destdir, "img", "disk%d.qcow2" % i)

    def prepare_destination(self, incoming=True, tls_creds=None):
        start = {"addr": {"type": "inet", "data": {
            "host": self.target.addr, "port": str(NBD_PORT)}}}
        if tls_creds:
            # the same credentials for the NBD server and the migration
            start["tls-creds"] = tls_creds
            self.d.ok("migrate-set-parameters", {"tls-creds": tls_creds})
        self.d.ok("nbd-server-start", start)
        for i, dev in enumerate(self.d.ok("query-block")):
            self.d.ok("block-export-add", {
                "type": "nbd", "id": "e%d" % i, "writable": True,
                "node-name": dev["inserted"]["node-name"],
                "name": dev["device"]})
        if incoming:
            self.d.ok("migrate-incoming", {"uri": self.uri()})

    def clean_destination(self):
        """What the caller does after a cancel or a failure."""
        for i in range(DISKS):
            self.d.ok("block-export-del", {"id": "e%d" % i})
        self.d.ok("nbd-server-stop")

    def uri(self):
        return "tcp:%s:%d" % (self.target.addr, MIGRATION_PORT)

    def export(self, i):
        return "nbd://%s:%d/disk%d" % (self.target.addr, NBD_PORT, i)

    def migrate_args(self, **kw):
        args = {"name": "move", "uri": self.uri(),
                "disks": [{"disk": "disk%d" % i, "target": self.export(i)}
                          for i in range(DISKS)]}
        args.update(kw)
        return args

    # ---- the source's qmproxy killed and started again ----

    def use_stateful_proxy(self):
        """The source's qmproxy with --state (clients reconnected)."""
        self.state = os.path.join(self.workdir, "state.json")
        for x in (self.c, self.writer):
            x.close()
        self.proxy.stop()
        self.proxy = self.start_stateful_proxy()
        self.c = self.client(self.proxy.listen)
        self.writer = self.client(self.proxy.listen)

    def start_stateful_proxy(self):
        p = self.source.proxy(self.srcdir, self.qemu.monitors[0],
                              name="stateful", args=("--state", self.state))
        self.addCleanup(p.stop)
        return p

    def wait_saved(self, *states):
        def saved():
            # the operation's own state: a disk's may say "mirroring" while
            # the operation is still preparing the destination
            try:
                return self.saved_op()["state"] in states
            except (OSError, ValueError, KeyError, IndexError):
                return False
        wait_for(saved, what="the migration saved as %s" % (states,))

    def restart_stateful_proxy(self):
        self.proxy.proc.kill()
        self.proxy.proc.wait(10)
        os.unlink(self.proxy.listen)
        self.proxy = self.start_stateful_proxy()
        self.writer = self.client(self.proxy.listen)

    def saved_op(self):
        """The migration as the source's qmproxy saved it last."""
        with open(self.state) as f:
            ops = json.load(f)["state"]["operations"]
        return [op for op in ops if op["name"] == "move"][-1]

    def wait_until_migrated_and_source_quit(self):
        """The source quits once the destination has the VM, and its
        qmproxy with it: the state file tells how the migration ended."""
        self.qemu.proc.wait(120)
        wait_for(lambda: self.proxy.proc.poll() is not None,
                 what="the source's qmproxy to exit with its QEMU")
        op = self.saved_op()
        self.assertEqual(op["state"], "migrated", op)

    def unthrottle(self):
        """The copies at full speed again (slowed to be caught running)."""
        for disk in self.writer.ok("qmproxy-query-operations",
                                   {"name": "move"})[-1]["disks"]:
            self.writer.cmd("block-job-set-speed", {"device": disk["job"],
                                                   "speed": 0})

    def compare_with_source(self, i):
        r = self.target.run(["qemu-img", "compare", "-U", "-f", "qcow2",
                             "-F", "qcow2", self.qemu.images[i],
                             self.dest_image(i)], check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    # ---- the guest's view ----

    def write(self, i, pattern, offset, size=MiB):
        out = self.qemu.io(self.writer, i, "write -P 0x%02x %d %d"
                           % (pattern, offset, size))
        self.assertNotIn("error", out.lower(), out)

    def ctl_migrate(self, disks, *options):
        """qmproxyctl migrate of disks (its words) with options, --wait:
        must succeed; the CompletedProcess."""
        r = subprocess.run(
            [QMPROXYCTL, "-s", self.proxy.listen, "migrate", self.uri()]
            + list(disks) + list(options) + ["--name", "move", "--wait"],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, NO_COLOR="1"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def ctl_migrate_through_its_proxy(self, *options):
        """The destination prepared through its qmproxy, with qmproxyctl:
        the source quits, the destination runs."""
        r = self.ctl_migrate(["disk%d" % i for i in range(DISKS)],
                             "--destination", self.dest_monitor, *options)
        self.assertIn("migrated", r.stdout + r.stderr)
        # the source quit (and its qmproxy let its clients go)
        self.qemu.proc.wait(60)
        self.assertEqual(self.d.ok("query-status")["status"], "running")

    def read_on_destination(self, i, pattern, offset, size=MiB):
        out = self.d.hmp('qemu-io disk%d "read -P 0x%02x %d %d"'
                         % (i, pattern, offset, size))
        self.assertNotIn("fail", out.lower(), out)

    def op_state(self):
        """The migration's state; None until qmproxy has started it (the
        command may wait for the chain model to settle first)."""
        r = self.writer.cmd("qmproxy-query-operations", {"name": "move"})
        return r["return"][-1]["state"] if "return" in r else None

    def write_while_copying(self, limit=12):
        """Writes while the copies run: each counts only if the copies
        were still not ready after it (the source cannot have stopped).
        Returns the writes made, [(disk, pattern, offset)]."""
        made = []
        wait_for(lambda: self.op_state() is not None, what="the migration")
        for n in range(limit):
            disk, pattern, offset = n % DISKS, 0x40 + n, (8 + n) * MiB
            if self.op_state() not in ("running", "mirroring"):
                break
            self.write(disk, pattern, offset)
            state = self.op_state()
            self.assertIn(state, ("running", "mirroring", "ready"),
                          "a write raced the switch-over: slow the copies")
            made.append((disk, pattern, offset))
            if state != "mirroring":
                break
        return made

    def source_status(self):
        return self.writer.ok("query-status")["status"]

    def source_jobs(self):
        return self.writer.ok("query-block-jobs")


class Migrate(MigrateTestCase):

    def test_vm_and_disks_move_with_writes_during_the_copies(self):
        for i in range(DISKS):
            self.write(i, 0x11 + i, 0, FILL * MiB)
            self.write(i, 0x21 + i, 40 * MiB)
        self.prepare_destination()
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.migrate_args(speed=SLOW)})
        during = self.write_while_copying()
        self.assertGreaterEqual(len(during), 3, "writes landed while the copies ran: %r" % during)
        for disk in self.writer.ok("qmproxy-query-operations",
                                   {"name": "move"})[-1]["disks"]:
            self.writer.cmd("block-job-set-speed", {"device": disk["job"],
                                                   "speed": 0})
        reply = self.c.read_reply()
        self.assertIn("return", reply, reply)
        self.assertEqual(reply["return"]["state"], "migrated", reply)
        # progress as it went, in the operations' events
        states = [ev["data"]["state"] for ev in self.c.events
                  if ev["event"] == "QMPROXY_OPERATION"
                  and ev["data"]["name"] == "move"]
        for state in ("mirroring", "ready", "migrating", "switching",
                      "migrated"):
            self.assertIn(state, states)
        self.assertEqual(states[-1], "migrated")
        # the source quits once the destination has the VM
        self.qemu.proc.wait(60)
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        for i in range(DISKS):
            r = self.target.run(["qemu-img", "compare", "-U", "-f", "qcow2",
                                 "-F", "qcow2", self.qemu.images[i],
                                 self.dest_image(i)], check=False)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.read_on_destination(i, 0x11 + i, 0, 8 * MiB)
            self.read_on_destination(i, 0x21 + i, 40 * MiB)
        for disk, pattern, offset in during:
            self.read_on_destination(disk, pattern, offset)
        # the destination's disks are its own now: it writes to them
        out = self.d.hmp('qemu-io disk0 "write -P 0x77 0 1M"')
        self.assertNotIn("error", out.lower(), out)

    def test_qmproxyctl_migrate_leaves_the_source_paused_when_asked(self):
        self.write(0, 0x31, 0)
        self.prepare_destination()
        self.ctl_migrate(["disk%d=%s" % (i, self.export(i)) for i in range(DISKS)],
                         "--pause-source")
        self.assertEqual(self.op_state(), "migrated")
        self.assertEqual(self.source_status(), "postmigrate")
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        self.read_on_destination(0, 0x31, 0)

    def test_synchronous_writes(self):
        """copy-mode write-blocking: the guest's writes once the copies
        are ready reach the destination before they complete."""
        self.write(0, 0x35, 0, 8 * MiB)
        self.prepare_destination()
        op = self.c.ok("qmproxy-migrate", self.migrate_args(
            **{"synchronous-writes": True}))
        self.assertEqual(op["state"], "migrated")
        self.assertEqual([d["copy-mode"] for d in op["disks"]],
                         ["write-blocking"] * DISKS)
        self.qemu.proc.wait(60)
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        self.read_on_destination(0, 0x35, 0, 8 * MiB)

    def test_cancel_before_the_switch_over(self):
        self.write(0, 0x51, 0)
        tops = [dev["inserted"]["file"] for dev in self.writer.ok("query-block")]
        self.prepare_destination()
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.migrate_args(speed=MiB)})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        op = self.writer.ok("qmproxy-migrate-cancel", {"name": "move"})
        self.assertEqual(op["state"], "aborted", op)
        reply = self.c.read_reply()
        self.assertIn("cancelled", reply["error"]["desc"], reply)
        # the source runs on as before: its disks, no jobs left
        self.assertEqual(self.source_status(), "running")
        self.assertEqual(self.source_jobs(), [])
        self.assertEqual([dev["inserted"]["file"]
                          for dev in self.writer.ok("query-block")], tops)
        self.write(0, 0x52, MiB)
        # the destination is the caller's to clean up
        self.clean_destination()
        refused = self.writer.cmd("qmproxy-migrate-cancel", {"name": "move"})
        self.assertIn("aborted", refused["error"]["desc"])

    def test_destination_killed_during_the_copies(self):
        self.write(0, 0x61, 0)
        self.prepare_destination()
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.migrate_args(speed=MiB)})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        self.dest_qemu.proc.kill()
        self.dest_qemu.proc.wait(10)
        reply = self.c.read_reply()
        desc = reply["error"]["desc"]
        self.assertIn("the copy of disk", desc)
        self.assertIn("the source runs as before", desc)
        ops = self.writer.ok("qmproxy-query-operations", {"name": "move"})
        self.assertEqual(ops[-1]["state"], "failed")
        self.assertEqual(self.source_status(), "running")
        wait_for(lambda: self.source_jobs() == [], what="no jobs left")
        self.write(0, 0x62, MiB)

    def test_migration_failing_after_the_copies_undoes_them(self):
        """The copies ready, the VM state has nowhere to go (the
        destination never called migrate-incoming): QEMU's migration
        fails, the copies are cancelled, the source runs on."""
        self.write(0, 0x71, 0)
        self.prepare_destination(incoming=False)
        r = self.c.cmd("qmproxy-migrate", self.migrate_args())
        desc = r["error"]["desc"]
        self.assertIn("the migration to %s failed" % self.uri(), desc)
        self.assertIn("the source runs as before", desc)
        self.assertEqual(self.source_status(), "running")
        wait_for(lambda: self.source_jobs() == [], what="no jobs left")
        self.write(0, 0x72, MiB)
        self.clean_destination()

    def test_source_qmproxy_restarted_mid_copy_carries_on(self):
        """The source's qmproxy killed while the copies run and started
        again with the same --state: it finds the copies still running in
        QEMU and carries the migration on to its end.  An earlier
        migration that failed (QEMU still says so) is not taken for it."""
        self.use_stateful_proxy()
        direct = self.client(self.qemu.monitors[1])
        direct.ok("migrate", {"uri": "tcp:%s:4999" % self.target.addr})
        wait_for(lambda: direct.ok("query-migrate").get("status") == "failed",
                 what="the earlier migration to fail")
        self.write(0, 0xe1, 0, 16 * MiB)
        self.prepare_destination()
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.migrate_args(speed=MiB)})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        self.wait_saved("mirroring")
        self.restart_stateful_proxy()
        self.unthrottle()
        self.wait_until_migrated_and_source_quit()
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        self.read_on_destination(0, 0xe1, 0, 16 * MiB)
        for i in range(DISKS):
            self.compare_with_source(i)

class DestinationThroughItsProxy(MigrateTestCase):
    """"destination" names the destination qmproxy's TCP listener: the
    source's qmproxy prepares it (NBD server, exports, migrate-incoming),
    starts it, and cleans it up after a failure."""

    def dest_args(self, **kw):
        args = {"name": "move", "uri": self.uri(),
                "destination": self.dest_monitor,
                "disks": [{"disk": "disk%d" % i} for i in range(DISKS)]}
        args.update(kw)
        return args

    def test_prepared_started_and_cleaned_up_by_qmproxy(self):
        for i in range(DISKS):
            self.write(i, 0xa1 + i, 0, 4 * MiB)
        op = self.c.ok("qmproxy-migrate", self.dest_args())
        self.assertEqual(op["state"], "migrated", op)
        self.assertEqual([d["mirror-file"] for d in op["disks"]],
                         [self.export(i) for i in range(DISKS)])
        self.qemu.proc.wait(60)
        self.assertEqual(self.d.ok("query-status")["status"], "running")
        # its exports and NBD server are gone: the VM's disks are its own
        self.assertEqual(self.d.ok("query-block-exports"), [])
        for i in range(DISKS):
            self.read_on_destination(i, 0xa1 + i, 0, 4 * MiB)
            r = self.target.run(["qemu-img", "compare", "-U", "-f", "qcow2",
                                 "-F", "qcow2", self.qemu.images[i],
                                 self.dest_image(i)], check=False)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def restart_destination_with_dash_S(self):
        self.d.close()
        self.dest_proxy.stop()
        self.dest_qemu.stop()
        self.start_destination(prelaunch=True)

    def test_destination_started_with_dash_S_is_continued(self):
        self.restart_destination_with_dash_S()
        op = self.c.ok("qmproxy-migrate", self.dest_args())
        self.assertEqual(op["state"], "migrated", op)
        self.assertEqual(self.d.ok("query-status")["status"], "running")

    def test_qmproxyctl(self):
        self.write(0, 0xc1, 0)
        self.ctl_migrate_through_its_proxy("--synchronous-writes")
        self.read_on_destination(0, 0xc1, 0)

    def test_left_paused_when_asked(self):
        """paused holds for a destination started with -S: one without
        starts itself once it has the VM (QEMU's autostart)."""
        self.restart_destination_with_dash_S()
        op = self.c.ok("qmproxy-migrate", self.dest_args(paused=True,
                                                         source="pause"))
        self.assertEqual(op["state"], "migrated", op)
        self.assertEqual(self.d.ok("query-status")["status"], "paused")
        self.assertEqual(self.source_status(), "postmigrate")

    def test_cancel_cleans_up_the_destination(self):
        self.write(0, 0xb1, 0, 16 * MiB)
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.dest_args(speed=MiB)})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        op = self.writer.ok("qmproxy-migrate-cancel", {"name": "move"})
        self.assertEqual(op["state"], "aborted", op)
        self.c.read_reply()
        self.assertEqual(self.source_status(), "running")
        self.assertEqual(self.source_jobs(), [])
        # the destination QEMU was told to quit
        self.dest_qemu.proc.wait(60)

    def test_destination_killed_mid_copy(self):
        """The destination's QEMU and qmproxy killed while the copies run:
        the failure says what became of each side."""
        self.write(0, 0xd1, 0, 16 * MiB)
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.dest_args(speed=MiB)})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        self.dest_qemu.proc.kill()
        self.dest_proxy.proc.kill()
        desc = self.c.read_reply()["error"]["desc"]
        self.assertIn("the copy of disk", desc)
        self.assertIn("the source runs as before", desc)
        self.assertIn("cleaning up the destination failed", desc)
        self.assertIn("went away", desc)
        self.assertEqual(self.source_status(), "running")
        wait_for(lambda: self.source_jobs() == [], what="no jobs left")
        self.write(0, 0xd2, MiB)

    def test_source_qmproxy_restarted_during_the_copies(self):
        """Killed while the copies run, started again with its --state:
        it reconnects to the destination's qmproxy and carries on."""
        self.use_stateful_proxy()
        for i in range(DISKS):
            self.write(i, 0x5a + i, 0, 16 * MiB)
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.dest_args(speed=MiB)})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        self.wait_saved("mirroring")
        self.restart_stateful_proxy()
        self.unthrottle()
        self.wait_until_migrated_and_source_quit()
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        # cleaned up there as after an uninterrupted migration
        self.assertEqual(self.d.ok("query-block-exports"), [])
        for i in range(DISKS):
            self.read_on_destination(i, 0x5a + i, 0, 16 * MiB)
            self.compare_with_source(i)

    def test_unreachable_destination(self):
        r = self.c.cmd("qmproxy-migrate", self.dest_args(
            destination="tcp:%s:4446" % self.target.addr))
        desc = r["error"]["desc"]
        self.assertIn("could not be reached", desc)
        self.assertIn("nothing was done on either side", desc)
        self.assertEqual(self.source_status(), "running")

    def test_refused_with_what_to_fix(self):
        for args, words in [
                (self.dest_args(disks=[{"disk": "disk0",
                                        "target": self.export(0)}]),
                 "give no target with destination"),
                (self.dest_args(uri="unix:/tmp/x.sock"),
                 "uri must be tcp:HOST:PORT"),
                (self.dest_args(destination="bogus:x"), "destination")]:
            r = self.c.cmd("qmproxy-migrate", args)
            self.assertIn(words, r["error"]["desc"])
            self.assertIn("nothing was done", r["error"]["desc"])
        r = self.c.cmd("qmproxy-migrate", {"uri": self.uri(), "disks": [
            {"disk": "disk0"}]})
        self.assertIn("no target for disk0", r["error"]["desc"])


class TlsThroughItsProxy(MigrateTestCase):
    """"tls" with "destination": qmproxy makes the tls-creds-x509 objects
    on both sides from folders of certificates (as libvirt does from
    migrate_tls_x509_cert_dir), and the copies and the VM state go over
    TLS; the destination's NBD server and incoming migration check the
    source's client certificate, the source checks the destination's."""

    def setUp(self):
        super().setUp()
        tls = os.path.join(self.workdir, "tls")
        ca = tlscerts.CA(os.path.join(tls, "ca"))
        self.server = ca.issue(os.path.join(tls, "server"), "server",
                               ip=self.target.addr)
        self.client_dir = ca.issue(os.path.join(tls, "client"), "client")
        other = tlscerts.CA(os.path.join(tls, "other-ca"), name="someone else")
        self.wrong = other.issue(os.path.join(tls, "wrong"), "client")

    def tls_args(self, source_dir, **kw):
        args = {"name": "move", "uri": self.uri(),
                "destination": self.dest_monitor,
                "disks": [{"disk": "disk%d" % i} for i in range(DISKS)],
                "tls": {"source-creds-dir": source_dir,
                        "dest-creds-dir": self.server}}
        args.update(kw)
        return args

    def objects(self, client):
        return [o["name"] for o in client.ok("qom-list",
                                             {"path": "/objects"})
                if o["name"].startswith("qmproxy-")]

    def test_whole_migration_over_tls(self):
        for i in range(DISKS):
            self.write(i, 0x13 + i, 0, 4 * MiB)
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.tls_args(self.client_dir,
                                                source="pause")})
        # while it runs: the NBD server of the destination takes TLS only
        wait_for(lambda: self.op_state() in ("mirroring", "ready",
                                             "migrating", "switching",
                                             "migrated"),
                 what="the copies")
        reply = self.c.read_reply()
        self.assertIn("return", reply, reply)
        op = reply["return"]
        self.assertEqual(op["state"], "migrated", op)
        for d in op["disks"]:
            self.assertIn('"tls-creds"', d["mirror-file"])
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        # nothing of the migration left on the destination, which runs on
        self.assertEqual(self.d.ok("query-block-exports"), [])
        self.assertEqual(self.objects(self.d), [])
        self.assertEqual(self.d.ok("query-migrate-parameters")["tls-creds"],
                         "")
        # the source (left paused) keeps none of it either
        self.assertEqual(self.objects(self.writer), [])
        self.assertEqual(self.source_status(), "postmigrate")
        for i in range(DISKS):
            self.read_on_destination(i, 0x13 + i, 0, 4 * MiB)
            r = self.target.run(["qemu-img", "compare", "-U", "-f", "qcow2",
                                 "-F", "qcow2", self.qemu.images[i],
                                 self.dest_image(i)], check=False)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_the_stream_really_is_tls(self):
        """A client without credentials is refused by the NBD server
        qmproxy started on the destination (checked mid-copy)."""
        self.write(0, 0x14, 0, 16 * MiB)
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.tls_args(self.client_dir, speed=MiB)})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        r = self.target.run(["qemu-img", "info", "--image-opts",
                             "driver=nbd,host=%s,port=%d,export=disk0"
                             % (self.target.addr, NBD_PORT)], check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("TLS", r.stderr)
        op = self.writer.ok("qmproxy-migrate-cancel", {"name": "move"})
        self.assertEqual(op["state"], "aborted", op)
        self.c.read_reply()
        self.assertEqual(self.objects(self.writer), [])
        self.assertEqual(self.source_status(), "running")
        self.dest_qemu.proc.wait(60)

    def test_a_certificate_of_another_ca_is_refused(self):
        """Source credentials from a CA the destination does not know:
        the first connection (the copy of a disk) fails, the error names
        it, the source runs on unchanged and the destination is removed."""
        self.write(0, 0x15, 0)
        tops = [dev["inserted"]["file"] for dev in self.writer.ok("query-block")]
        params = self.writer.ok("query-migrate-parameters")
        r = self.c.cmd("qmproxy-migrate", self.tls_args(self.wrong))
        desc = r["error"]["desc"]
        self.assertIn("disk0", desc)
        self.assertIn("certificate", desc.lower())
        self.assertIn("the source runs as before", desc)
        self.assertIn("the destination's exports were removed", desc)
        self.assertEqual(self.source_status(), "running")
        wait_for(lambda: self.source_jobs() == [], what="no jobs left")
        self.assertEqual([dev["inserted"]["file"]
                          for dev in self.writer.ok("query-block")], tops)
        wait_for(lambda: self.objects(self.writer) == [],
                 what="the source's credentials removed")
        after = self.writer.ok("query-migrate-parameters")
        self.assertEqual(after.get("tls-creds"), params.get("tls-creds"))
        self.write(0, 0x16, MiB)
        self.dest_qemu.proc.wait(60)

    def test_source_qmproxy_restarted_during_the_copies(self):
        """Killed mid-copy and started again with its --state: it carries
        the migration on over TLS and removes the credentials on both
        sides at the end, as an uninterrupted one does."""
        self.use_stateful_proxy()
        self.write(0, 0x18, 0, 16 * MiB)
        self.c.send({"execute": "qmproxy-migrate",
                     "arguments": self.tls_args(self.client_dir, speed=MiB,
                                                source="pause")})
        wait_for(lambda: self.op_state() == "mirroring", what="mirroring")
        self.wait_saved("mirroring")
        self.restart_stateful_proxy()
        self.unthrottle()
        wait_for(lambda: self.op_state() in ("migrated", "failed"),
                 timeout=120, what="the migration to end")
        op = self.writer.ok("qmproxy-query-operations", {"name": "move"})[-1]
        self.assertEqual(op["state"], "migrated", op)
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        wait_for(lambda: self.objects(self.writer) == []
                 and self.objects(self.d) == [],
                 what="the credentials removed on both sides")
        self.assertEqual(self.d.ok("query-block-exports"), [])
        self.read_on_destination(0, 0x18, 0, 16 * MiB)
        self.compare_with_source(0)

    def test_qmproxyctl(self):
        self.write(0, 0x17, 0)
        self.ctl_migrate_through_its_proxy(
            "--tls-source-dir", self.client_dir, "--tls-dest-dir", self.server,
            "--tls-hostname", self.target.addr)
        self.read_on_destination(0, 0x17, 0)

    def test_refused_with_what_to_fix(self):
        for args, words in [
                (self.tls_args("relative/dir"), "must be an absolute path"),
                (self.tls_args(self.client_dir, **{"tls-creds": "x"}),
                 "not both"),
                ({"uri": self.uri(), "disks": [{"disk": "disk0",
                                                "target": self.export(0)}],
                  "tls": {"source-creds-dir": self.client_dir,
                          "dest-creds-dir": self.server}},
                 "needs destination")]:
            r = self.c.cmd("qmproxy-migrate", args)
            self.assertIn(words, r["error"]["desc"])
            self.assertIn("nothing was done", r["error"]["desc"])
        r = self.c.cmd("qmproxy-migrate", self.tls_args("/nonexistent"))
        self.assertIn("making the source's TLS credentials from /nonexistent",
                      r["error"]["desc"])
        self.assertIn("nothing was done on either side", r["error"]["desc"])
        self.assertEqual(self.d.ok("query-status")["status"], "inmigrate")


class Q35(MigrateTestCase):
    """A VM as libvirt runs one (q35, -blockdev, virtio-blk, RAM, the
    firmware running), moved with the destination prepared by qmproxy."""

    shape = "q35"

    def test_running_guest_with_virtio_disks(self):
        self.writer.ok("cont")
        for i in range(DISKS):
            self.write(i, 0xf1 + i, 0, 4 * MiB)
        op = self.c.ok("qmproxy-migrate", {
            "name": "move", "uri": self.uri(),
            "destination": self.dest_monitor,
            "disks": [{"disk": "disk%d" % i} for i in range(DISKS)]})
        self.assertEqual(op["state"], "migrated", op)
        self.qemu.proc.wait(60)
        self.assertEqual(self.d.ok("query-status")["status"], "running")
        for i in range(DISKS):
            out = self.dest_qemu.io(self.d, i, "read -P 0x%02x 0 %d"
                                    % (0xf1 + i, 4 * MiB))
            self.assertNotIn("fail", out.lower(), out)

    def test_source_qmproxy_restarted_after_migrate_started(self):
        """Frozen while QEMU migrates the RAM (slowed so that it is caught
        there), killed once QEMU stopped the source at the switch-over
        (waiting for qmproxy to complete the copies), started again: it
        completes the copies, lets the migration finish, starts the
        destination and leaves the source paused, as asked."""
        self.use_stateful_proxy()
        self.writer.ok("cont")
        direct = self.client(self.qemu.monitors[1])
        direct.ok("migrate-set-parameters", {"max-bandwidth": 128 * 1024})
        for i in range(DISKS):
            self.write(i, 0x6a + i, 0, 8 * MiB)
        self.c.send({"execute": "qmproxy-migrate", "arguments": {
            "name": "move", "uri": self.uri(), "source": "pause",
            "destination": self.dest_monitor,
            "disks": [{"disk": "disk%d" % i} for i in range(DISKS)]}})
        wait_for(lambda: self.op_state() in ("migrating", "switching",
                                             "migrated", "failed"),
                 what="the migration to start")
        # qmproxy counts it started when it sends migrate: QEMU may not
        # have run the command yet
        wait_for(lambda: "status" in direct.ok("query-migrate"),
                 what="QEMU to begin migrating")
        os.kill(self.proxy.proc.pid, signal.SIGSTOP)
        self.assertIn(direct.ok("query-migrate")["status"],
                      ("setup", "active"), "frozen while the RAM moves")
        wait_for(lambda: direct.ok("query-migrate").get("status")
                 in ("pre-switchover", "completed", "failed", "cancelled"),
                 timeout=120, what="QEMU's migration to stop")
        self.assertEqual(direct.ok("query-migrate")["status"],
                         "pre-switchover")
        self.assertEqual(direct.ok("query-status")["status"], "finish-migrate")
        # (what it saved may trail: QEMU's state is what it goes by)
        self.restart_stateful_proxy()
        wait_for(lambda: self.op_state() in ("migrated", "failed"),
                 timeout=120, what="the migration to end")
        op = self.writer.ok("qmproxy-query-operations", {"name": "move"})[-1]
        self.assertEqual(op["state"], "migrated", op)
        self.assertEqual(self.source_status(), "postmigrate")
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        self.assertEqual(self.d.ok("query-block-exports"), [])
        for i in range(DISKS):
            out = self.dest_qemu.io(self.d, i, "read -P 0x%02x 0 %d"
                                    % (0x6a + i, 8 * MiB))
            self.assertNotIn("fail", out.lower(), out)
            self.compare_with_source(i)

    def test_writes_until_the_source_stops(self):
        """A writer keeps writing (each write at a new offset) until the
        source stops, through the copies, their readiness and the RAM
        copy: every write that finished while the source still ran is on
        the destination (the last one, made as it stopped, is left out:
        it may have landed after)."""
        self.writer.ok("cont")
        confirmed = []
        writer = self.client(self.proxy.listen)

        def write_until_stopped():
            for n in range(48):
                if writer.ok("query-status")["status"] != "running":
                    return
                out = self.qemu.io(writer, n % DISKS, "write -P 0x%02x %d %d"
                                   % (n + 1, (8 + n) * MiB, MiB))
                if "error" in out.lower():
                    return
                if writer.ok("query-status")["status"] != "running":
                    return
                confirmed.append(n)
        thread = threading.Thread(target=write_until_stopped, daemon=True)
        thread.start()
        try:
            op = self.c.ok("qmproxy-migrate", {
                "name": "move", "uri": self.uri(),
                "destination": self.dest_monitor,
                "disks": [{"disk": "disk%d" % i} for i in range(DISKS)]})
        finally:
            thread.join(120)
        self.assertEqual(op["state"], "migrated", op)
        self.assertTrue(confirmed)
        for n in confirmed:
            out = self.dest_qemu.io(self.d, n % DISKS, "read -P 0x%02x %d %d"
                                    % (n + 1, (8 + n) * MiB, MiB))
            self.assertNotIn("fail", out.lower(), (n, out))


class Tls(MigrateTestCase):
    """The copies and the VM state over TLS: the destination's NBD server
    and its incoming migration take only what its CA signed."""

    def setUp(self):
        super().setUp()
        tls = os.path.join(self.workdir, "tls")
        ca = tlscerts.CA(os.path.join(tls, "ca"))
        server = ca.issue(os.path.join(tls, "server"), "server",
                          ip=self.target.addr)
        client = ca.issue(os.path.join(tls, "client"), "client")
        other = tlscerts.CA(os.path.join(tls, "other-ca"), name="someone else")
        wrong = other.issue(os.path.join(tls, "wrong"), "client")
        self.d.ok("object-add", {"qom-type": "tls-creds-x509", "id": "tls0",
                                 "dir": server, "endpoint": "server",
                                 "verify-peer": True})
        for id, folder in (("tls0", client), ("bad", wrong)):
            self.c.ok("object-add", {"qom-type": "tls-creds-x509", "id": id,
                                     "dir": folder, "endpoint": "client"})
        self.prepare_destination(tls_creds="tls0")

    def tls_args(self, creds):
        """The copies with the right certificate; the migration with
        creds."""
        return self.migrate_args(**{"tls-creds": creds}, disks=[
            {"disk": "disk%d" % i, "target": {
                "server": {"type": "inet", "host": self.target.addr,
                           "port": str(NBD_PORT)},
                "export": "disk%d" % i, "tls-creds": "tls0"}}
            for i in range(DISKS)])

    def test_migration_over_tls(self):
        self.write(0, 0x81, 0)
        self.write(1, 0x82, 2 * MiB)
        op = self.c.ok("qmproxy-migrate", self.tls_args("tls0"))
        self.assertEqual(op["state"], "migrated")
        self.qemu.proc.wait(60)
        wait_for(lambda: self.d.ok("query-status")["status"] == "running",
                 what="the destination to run")
        self.read_on_destination(0, 0x81, 0)
        self.read_on_destination(1, 0x82, 2 * MiB)

    def test_migration_with_a_certificate_the_destination_refuses(self):
        self.write(0, 0x91, 0)
        r = self.c.cmd("qmproxy-migrate", self.tls_args("bad"))
        desc = r["error"]["desc"]
        self.assertIn("the migration to %s failed" % self.uri(), desc)
        # QEMU's own reason, as query-migrate gives it
        self.assertIn("certificate", desc.lower())
        self.assertIn("the source runs as before", desc)
        self.assertEqual(self.source_status(), "running")
        wait_for(lambda: self.source_jobs() == [], what="no jobs left")
        self.write(0, 0x92, MiB)


class Refused(MigrateTestCase):

    def test_bad_requests_say_what_to_fix(self):
        cases = [
            (self.migrate_args(uri="169.254.77.2:4444"),
             "not a migration URI"),
            (self.migrate_args(disks=[]), "no disks given"),
            (self.migrate_args(disks=[{"disk": "disk0",
                                       "target": "/tmp/x.qcow2"}]),
             "not an NBD export"),
            (self.migrate_args(disks=[{"disk": "nope",
                                       "target": self.export(0)}]),
             "nope"),
            (self.migrate_args(disks=[{"disk": "disk0",
                                       "target": self.export(0)}] * 2),
             "named twice"),
            (self.migrate_args(speed=-1), "speed"),
        ]
        for args, words in cases:
            r = self.c.cmd("qmproxy-migrate", args)
            self.assertEqual(r["error"]["class"], "GenericError", r)
            self.assertIn(words, r["error"]["desc"])
            self.assertIn("nothing was done", r["error"]["desc"])
        self.assertEqual(self.source_status(), "running")
        r = self.c.cmd("qmproxy-migrate-cancel", {"name": "nothing"})
        self.assertIn("No operation named", r["error"]["desc"])

    def test_policy_judges_the_uri_and_the_exports(self):
        """A restricted listener (on QEMU's second monitor) may name only
        the NBD servers and migration transports its policy allows."""
        policy = os.path.join(self.workdir, "policy.xml")
        outside = os.path.join(self.workdir, "outside")
        os.makedirs(outside)
        write_policy(policy, '<paths><allow dir="%s"/><allow nbd="tcp:%s:%d"/>'
                     '</paths>' % (self.srcdir, self.target.addr, NBD_PORT))
        restricted = self.source.proxy(self.srcdir, self.qemu.monitors[1],
                                       name="restricted",
                                       args=("--policy", policy))
        self.addCleanup(restricted.stop)
        c = self.client(restricted.listen)
        r = c.cmd("qmproxy-migrate", self.migrate_args(
            uri="exec:touch %s/pwned" % outside))
        self.assertIn('<allow protocol="exec"/>', r["error"]["desc"])
        r = c.cmd("qmproxy-migrate", self.migrate_args(disks=[
            {"disk": "disk0", "target": "nbd://%s:10810/disk0"
             % self.target.addr}]))
        self.assertIn("is not allowed by policy", r["error"]["desc"])
        self.assertEqual(os.listdir(outside), [])
        self.assertEqual(self.source_status(), "running")


if __name__ == "__main__":
    unittest.main()
