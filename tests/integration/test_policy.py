"""Policies against a real QEMU 7.2: roles per listener (also inside
transactions), the read-only monitor seat, image directories (.. and
symlink escapes, relative paths), automatic mirroring on snapshot and on
connect (with a target filesystem that fills up), reloads under traffic,
and --check-policy."""
import glob
import json
import os
import socket
import signal
import subprocess
import threading
import time
import unittest

from qmptest import (write_policy, ProxyTestCase, for_each_shape, QMPClient, QMPROXY, Proxy, qemu_img,
                     wait_for, QEMU_IO, ROOT)
from test_chain import qemu_chain, proxy_chain

MiB = 1 << 20


class CheckPolicy(unittest.TestCase):

    def run_check(self, path):
        return subprocess.run([QMPROXY, "--check-policy", path], capture_output=True,
                              text=True, timeout=20)

    def test_examples_are_valid(self):
        examples = glob.glob(os.path.join(ROOT, "policy", "examples", "*.xml"))
        self.assertGreaterEqual(len(examples), 4)
        for ex in examples:
            r = self.run_check(ex)
            self.assertEqual(r.returncode, 0, (ex, r.stderr))
            self.assertIn("a valid qmproxy policy", r.stdout)

    def test_bad_policies_name_file_and_line(self):
        import tempfile
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        cases = [
            # (two lines come before the body: the XML declaration, <policy>)
            ('<roles>\n<role name="x" default="maybe"/>\n</roles>', ":4: Invalid attribute default"),
            ('<listeners>\n<listener name="a" role="nosuch"/>\n</listeners>',
             ":4: listener 'a' is given role 'nosuch', which is not defined"),
            ('<bogus/>', ":3: Did not expect element bogus"),
            ('<roles>\n<role name="monitor"/>\n</roles>', "built in"),
            ('<paths><allow dir="relative/dir"/></paths>', "Element allow failed"),
            ('<roles>', "not well-formed XML"),
        ]
        for i, (body, words) in enumerate(cases):
            path = os.path.join(d, "bad%d.xml" % i)
            write_policy(path, body)
            r = self.run_check(path)
            self.assertNotEqual(r.returncode, 0, body)
            self.assertIn(path, r.stderr)
            self.assertIn(words, r.stderr, (body, r.stderr))
        r = self.run_check(os.path.join(d, "missing.xml"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cannot read it", r.stderr)

    def test_broken_encoding_is_one_error_line(self):
        """Bytes the declared encoding cannot read: libxml2 reports them
        outside the parser's own errors; they come back in the error, one
        line naming the file, and nothing else reaches stderr."""
        import tempfile
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        cases = [
            (b'<?xml version="1.0" encoding="ISO-2022-JP"?>\n<policy>\x1b$B\xff\xff</policy>\n',
             "do not follow the encoding its XML declaration names: input conversion failed"),
            (b'<?xml version="1.0" encoding="UTF-8"?>\n<policy>\xff\xfe</policy>\n',
             "not proper UTF-8"),
        ]
        for i, (data, words) in enumerate(cases):
            path = os.path.join(d, "enc%d.xml" % i)
            with open(path, "wb") as f:
                f.write(data)
            r = self.run_check(path)
            self.assertNotEqual(r.returncode, 0, data)
            lines = r.stderr.splitlines()
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertTrue(lines[0].startswith(path + ":2"), r.stderr)
            self.assertIn(words, lines[0], r.stderr)


class Roles(ProxyTestCase):

    def start_proxy(self, args=None, **kw):
        self.policy = os.path.join(self.workdir, "policy.xml")
        write_policy(self.policy, """
  <roles>
    <role name="operator" default="deny">
      <deny command="quit"/>
      <deny command="human-monitor-command"/>
      <allow command="query-*"/>
      <allow command="qmproxy-*"/>
      <allow command="transaction"/>
      <allow command="blockdev-snapshot-sync"/>
      <allow command="stop"/>
      <allow command="cont"/>
    </role>
  </roles>
  <listeners>
    <listener name="mgmt" role="full"/>
    <listener name="ro" role="monitor"/>
    <listener name="op" role="operator"/>
  </listeners>""")
        self.tlog = os.path.join(self.workdir, "traffic.jsonl")
        self.socks = {n: os.path.join(self.workdir, "%s.sock" % n) for n in ("mgmt", "ro", "op", "other")}
        largs = []
        for n, path in self.socks.items():
            largs += ["--listen", "%s=unix:%s" % (n, path)]
        p = Proxy(self.workdir, self.qemu.monitors[0], listen=False,
                  args=["--policy", self.policy, "--traffic-log", self.tlog] + largs)
        self.addCleanup(p.stop)
        wait_for(lambda: all(os.path.exists(x) for x in self.socks.values()),
                 what="the listeners")
        return p

    def seat(self, name):
        return self.client(path=self.socks[name])

    def test_monitor_seat(self):
        mgmt, ro = self.seat("mgmt"), self.seat("ro")
        self.assertIn("status", ro.ok("query-status"))
        self.assertIsInstance(ro.ok("qmproxy-query-chain"), list)
        r = ro.cmd("stop", id="no")
        self.assertEqual(r["error"]["class"], "GenericError")
        self.assertIn("not allowed by policy", r["error"]["desc"])
        self.assertIn("for listener 'ro'", r["error"]["desc"])
        self.assertEqual(r["id"], "no")
        self.assertIn("running", json.dumps(mgmt.ok("query-status")))
        # but it sees what others do
        mgmt.ok("stop")
        ro.wait_event("STOP")
        mgmt.ok("cont")
        ro.wait_event("RESUME")
        for cmd in ("quit", "human-monitor-command", "qmproxy-snapshot-abort", "device_del"):
            self.assertIn("not allowed by policy", ro.cmd(cmd)["error"]["desc"])
        # refused commands never reached QEMU
        sent = [json.loads(l) for l in open(self.tlog)]
        upstream = [l for l in sent if l["dir"] == "in" and l.get("client") == 0]
        self.assertFalse([l for l in upstream if l["msg"].get("execute") == "quit"])
        self.assertIn("not allowed by policy", self.proxy.read_stderr())

    def test_operator_rules_and_transaction_actions(self):
        op = self.seat("op")
        self.assertIn("status", op.ok("query-status"))
        r = op.cmd("quit")
        self.assertIn("rule <deny command='quit'/>", r["error"]["desc"])
        self.assertIn("of role 'operator'", r["error"]["desc"])
        r = op.cmd("human-monitor-command", {"command-line": "info status"})
        self.assertIn("not allowed by policy", r["error"]["desc"])
        r = op.cmd("device_del", {"id": "x"})
        self.assertIn("denies what no rule allows", r["error"]["desc"])
        # inside a transaction, each action is a command of its own
        snap = os.path.join(self.workdir, "s.qcow2")
        r = op.cmd("transaction", {"actions": [
            {"type": "blockdev-snapshot-sync", "data": {"device": "disk0", "snapshot-file": snap}},
            {"type": "drive-backup", "data": {"device": "disk0", "target": "/tmp/b", "sync": "full"}}]})
        self.assertIn("transaction action 1: command 'drive-backup' is not allowed", r["error"]["desc"])
        self.assertFalse(os.path.exists(snap))
        r = op.cmd("transaction", {"actions": [
            {"type": "blockdev-snapshot-sync", "data": {"device": "disk0", "snapshot-file": snap,
                                                        "format": "qcow2"}}]})
        self.assertEqual(r, {"return": {}})
        # a listener the policy does not name has no role
        other = self.seat("other")
        self.assertIn("gives no role for listener 'other'", other.cmd("query-status")["error"]["desc"])
        # QEMU itself never heard of any of it and still runs
        self.assertIn("status", self.seat("mgmt").ok("query-status"))


class Paths(ProxyTestCase):

    def start_proxy(self, args=None, **kw):
        self.allowed = os.path.join(self.workdir, "allowed")
        self.outside = os.path.join(self.workdir, "outside")
        os.makedirs(self.allowed)
        os.makedirs(self.outside)
        os.symlink(self.outside, os.path.join(self.allowed, "link"))
        self.policy = os.path.join(self.workdir, "policy.xml")
        write_policy(self.policy, '<paths><allow dir="%s"/><allow dir="%s"/></paths>'
                     % (self.allowed, self.workdir + "/dest"))
        os.makedirs(self.workdir + "/dest")
        return super().start_proxy(args=["--policy", self.policy])

    def snap(self, c, path):
        return c.cmd("blockdev-snapshot-sync", {"device": "disk0", "snapshot-file": path,
                                                "format": "qcow2"})

    def test_escapes_refused(self):
        c = self.client()
        for path, words in [
            (self.allowed + "/../outside/a.qcow2", "that is %s/a.qcow2" % self.outside),
            (self.allowed + "/link/b.qcow2", "that is %s/b.qcow2" % self.outside),
            (self.allowed + "/new/../../outside/c.qcow2", "is not allowed by policy"),
            ("relative.qcow2", "only absolute paths"),
            ("/etc/d.qcow2", "images may be created or opened only under"),
        ]:
            r = self.snap(c, path)
            self.assertIn(words, r["error"]["desc"], path)
        self.assertEqual(os.listdir(self.outside), [])
        for cmd, args in [
            ("drive-mirror", {"device": "disk0", "target": self.outside + "/m.qcow2", "sync": "full"}),
            ("blockdev-add", {"driver": "qcow2", "node-name": "x",
                              "file": {"driver": "file", "filename": self.outside + "/x"}}),
            ("qmproxy-snapshot-mirror", {"disks": [{"disk": "disk0",
                                                    "snapshot-file": self.allowed + "/s.qcow2",
                                                    "mirror-file": self.outside + "/s.qcow2"}]}),
            ("qmproxy-block-copy", {"disk": "disk0", "target": self.outside + "/c.qcow2"}),
            ("qmproxy-snapshot-mirror-xml", {"xml": "<domainsnapshot><disks><disk name='disk0'>"
                                             "<source file='%s/x.qcow2'/><mirror file='%s/x.qcow2'/>"
                                             "</disk></disks></domainsnapshot>"
                                             % (self.allowed, self.outside)}),
            ("__com.redhat_drive-mirror", {"device": "disk0", "target": self.outside + "/r.qcow2"}),
        ]:
            r = c.cmd(cmd, args)
            self.assertIn("not allowed by policy", r["error"]["desc"], cmd)
        self.assertEqual(os.listdir(self.outside), [])
        self.assertEqual(qemu_chain(c)[0], self.qemu.images)

    def test_dangling_symlinks_refused(self):
        """A link in an allowed folder whose target does not exist yet:
        QEMU would create the file where it points."""
        c = self.client()
        os.symlink(self.outside + "/snap.qcow2", self.allowed + "/dangling.qcow2")
        os.symlink("../outside/not-yet", self.allowed + "/dangling-dir")
        os.symlink(self.outside + "/created.img", self.allowed + "/create.img")
        r = self.snap(c, self.allowed + "/dangling.qcow2")
        self.assertIn("that is %s/snap.qcow2" % self.outside, r["error"]["desc"])
        r = self.snap(c, self.allowed + "/dangling-dir/x.qcow2")
        self.assertIn("is not allowed by policy", r["error"]["desc"])
        r = c.cmd("blockdev-create", {"job-id": "mk", "options": {
            "driver": "file", "filename": self.allowed + "/create.img", "size": 1048576}})
        self.assertIn("that is %s/created.img" % self.outside, r["error"]["desc"])
        self.assertEqual(os.listdir(self.outside), [])

    def test_network_children_confined(self):
        """An NBD server in a forbidden folder (QEMU connected to it), and
        protocols the policy does not allow."""
        c = self.client()
        sock = os.path.join(self.outside, "x.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(sock)
        lsock.listen(1)
        lsock.settimeout(0.5)
        self.addCleanup(lsock.close)
        r = c.cmd("blockdev-add", {"driver": "nbd", "node-name": "remote", "export": "e",
                                   "server": {"type": "unix", "path": sock}})
        self.assertIn("the NBD server unix:%s is not allowed" % sock, r["error"]["desc"])
        with self.assertRaises(socket.timeout):
            lsock.accept()   # QEMU never heard of it
        for args, words in [
                ({"driver": "ssh", "node-name": "s", "server": {"host": "169.254.9.9"},
                  "path": "/x"}, '<allow protocol="ssh"/>'),
                ({"driver": "raw", "node-name": "r", "file": {
                    "driver": "nbd", "server": {"type": "inet", "host": "169.254.9.9",
                                                "port": "10809"}}}, "tcp:169.254.9.9:10809")]:
            r = c.cmd("blockdev-add", args)
            self.assertIn(words, r["error"]["desc"])
        r = c.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {
            "path": os.path.join(self.outside, "server.sock")}}})
        self.assertIn("not allowed by policy", r["error"]["desc"])
        r = c.cmd("migrate", {"uri": "exec:touch %s/pwned" % self.outside})
        self.assertIn('<allow protocol="exec"/>', r["error"]["desc"])
        self.assertEqual(sorted(os.listdir(self.outside)), ["x.sock"])
        # a server in an allowed folder is fine: QEMU gets to try
        r = c.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {
            "path": os.path.join(self.allowed, "server.sock")}}})
        self.assertEqual(r, {"return": {}})

    def test_commands_nobody_declared(self):
        """Under a path policy, a command that can name a place and that
        nobody declared is refused (read from QEMU's own schema); so is HMP,
        which can name anything."""
        c = self.client()
        r = c.cmd("human-monitor-command", {"command-line": "info status"})
        self.assertIn("can name any file, socket or program", r["error"]["desc"])
        r = c.cmd("display-update", {"type": "vnc", "addresses": [
            {"type": "inet", "host": "169.254.9.9", "port": "5900"}]})
        self.assertIn("can name a place outside QEMU (its argument addresses.", r["error"]["desc"])
        r = c.cmd("blockdev-reopen", {"options": [{"driver": "qcow2", "node-name": "x",
                                                   "file": {"driver": "file",
                                                            "filename": self.outside + "/r"}}]})
        self.assertIn("not allowed by policy", r["error"]["desc"])
        # what names no place is untouched
        self.assertIn("status", c.ok("query-status"))
        self.assertTrue(c.ok("qom-list", {"path": "/machine"}))

    def test_allowed_paths_work(self):
        c = self.client()
        self.assertEqual(self.snap(c, self.allowed + "/ok.qcow2"), {"return": {}})
        r = c.cmd("qmproxy-snapshot-mirror", {"name": "in", "disks": [{
            "disk": "disk0", "snapshot-file": self.allowed + "/s2.qcow2",
            "mirror-file": self.workdir + "/dest/s2.qcow2"}]})
        self.assertEqual(r["return"]["state"], "ready", r)


@for_each_shape
class OwnImagesByDescriptor(ProxyTestCase):
    """Under a path policy the proxy's own operations do not let QEMU
    resolve the paths of the images they have it create or open: the proxy
    opens them beneath the allowed folder, following no symbolic link, and
    hands QEMU the descriptor (add-fd, /dev/fdset/N).  What is swapped in
    between the policy's check and the use cannot take the image outside."""

    image_dir = "allowed"   # the disks' images may be named too
    disks = 2

    def start_proxy(self, args=None, **kw):
        self.allowed = os.path.join(self.workdir, "allowed")
        self.outside = os.path.join(self.workdir, "outside")
        os.makedirs(os.path.join(self.allowed, "sub"), exist_ok=True)
        os.makedirs(self.outside, exist_ok=True)   # (started again: restart)
        self.policy = os.path.join(self.workdir, "policy.xml")
        write_policy(self.policy, '<paths><allow dir="%s"/></paths>' % self.allowed)
        self.tlog = os.path.join(self.workdir, "traffic.jsonl")
        self.state = os.path.join(self.workdir, "state.json")
        return super().start_proxy(args=["--policy", self.policy, "--traffic-log", self.tlog,
                                         "--state", self.state])

    def setUp(self):
        super().setUp()
        self.c = self.client(extras=True)

    def snapshot_below(self):
        """A layer in the allowed folder over the disk's image, so that a
        shallow copy names a backing file."""
        args = {"snapshot-file": os.path.join(self.allowed, "top.qcow2"), "format": "qcow2"}
        if self.shape == "none":
            args["device"] = "disk0"
        else:
            args["node-name"] = qemu_chain(self.c)[2]
            args["snapshot-node-name"] = "topnode"
        self.c.ok("blockdev-snapshot-sync", args)

    def sent_by_proxy(self, command):
        with open(self.tlog) as f:
            msgs = [json.loads(l) for l in f if l.endswith("\n")]
        return [m["msg"] for m in msgs if m["dir"] == "in" and m.get("client") == 0
                and m["msg"].get("execute") == command]

    def sent_once(self, command):
        """What the proxy sent, once its traffic log (written by a thread
        of its own) has the command."""
        wait_for(lambda: self.sent_by_proxy(command), what=command + " in the log")
        return self.sent_by_proxy(command)

    def header(self, image):
        return json.loads(qemu_img("info", "-U", "--output=json", image))

    def test_block_copy_by_descriptor(self):
        self.snapshot_below()
        hmp = self.direct()   # HMP is refused under a path policy
        self.qemu.io(hmp, 0, "write -P 0x5a 0 1M")
        target = os.path.join(self.allowed, "sub", "copy.qcow2")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target,
                                              "shallow": True})
        self.assertEqual(r["return"]["state"], "ready", r)
        # QEMU got a descriptor, not the path: a node on /dev/fdset/N
        [add] = self.sent_once("add-fd")
        fdset = add["arguments"]["fdset-id"]
        self.assertIn(target, add["arguments"]["opaque"])
        [file_node] = [a["arguments"]["file"] for a in self.sent_once("blockdev-add")]
        self.assertEqual(file_node["filename"], "/dev/fdset/%d" % fdset)
        self.assertEqual(len(self.sent_once("blockdev-mirror")), 1)
        self.assertEqual(self.sent_by_proxy("drive-mirror"), [])
        # the header QEMU wrote names the real backing file, and clients
        # see the real path
        self.assertEqual(self.header(target)["backing-filename"], self.qemu.images[0])
        self.assertEqual(proxy_chain(self.c)["mirror"]["file"], target)
        r = self.c.cmd("qmproxy-reopen", {"disk": "disk0", "file": target})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        # QEMU calls the layer by its fd set; the proxy by its path
        self.assertEqual(qemu_chain(self.c)[0],
                         ["/dev/fdset/%d" % fdset, self.qemu.images[0]])
        self.assertEqual([l["file"] for l in proxy_chain(self.c)["chain"]],
                         [target, self.qemu.images[0]])
        # the operation over, its fd set was removed: QEMU keeps only the
        # descriptor its node uses
        self.assertEqual(self.sent_once("remove-fd"),
                         [{"execute": "remove-fd", "arguments": {"fdset-id": fdset}}])
        running = self.c.ok("query-status")["running"]
        for s in self.c.ok("query-fdsets"):
            if s["fdset-id"] == fdset and running:
                # (QEMU 7.2 closes a removed one only while the VM runs)
                self.assertEqual(s["fds"], [], s)
        self.assertNotIn("fail", self.qemu.io(hmp, 0, "read -P 0x5a 0 1M").lower())
        # a client's blockdev-snapshot-sync over it would have QEMU write
        # /dev/fdset/N into the new header: refused, saying what to use
        over = os.path.join(self.allowed, "over.qcow2")
        args = {"snapshot-file": over, "format": "qcow2"}
        if self.shape == "none":
            args["device"] = "disk0"
        else:
            args["node-name"] = qemu_chain(self.c)[2]
        for cmd, a in (("blockdev-snapshot-sync", args),
                       ("transaction", {"actions": [{"type": "blockdev-snapshot-sync",
                                                     "data": args}]})):
            r = self.c.cmd(cmd, a)
            self.assertEqual(r["error"]["class"], "GenericError", r)
            self.assertIn("/dev/fdset/N, into the new overlay's header", r["error"]["desc"])
            self.assertIn("qmproxy-snapshot-mirror", r["error"]["desc"])
        self.assertFalse(os.path.exists(over))
        # the same for a copy of the layer above it that QEMU would create
        # naming it as the backing: a snapshot over it first (the proxy's,
        # its copy dropped), then drive-mirror sync top
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "above2", "disks": [{
            "disk": "disk0", "snapshot-file": os.path.join(self.allowed, "above2.qcow2"),
            "mirror-file": os.path.join(self.allowed, "above2-copy.qcow2")}]})
        self.assertEqual(r["return"]["state"], "ready", r)
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "above2", "target": "source"})
        self.assertIn(r["return"]["state"], ("pivoted", "aborted"), r)
        r = self.c.cmd("drive-mirror", {"device": self.qemu.device_arg(0) if self.shape == "none"
                                        else qemu_chain(self.c)[2],
                                        "target": os.path.join(self.allowed, "m.qcow2"),
                                        "sync": "top", "format": "qcow2"})
        self.assertIn("/dev/fdset/N, into the new copy's header", r["error"]["desc"])
        self.assertFalse(os.path.exists(os.path.join(self.allowed, "m.qcow2")))
        # the copy holds the data, and its chain opens from its header
        out = subprocess.run([QEMU_IO, "-U", "-r", "-c", "read -P 0x5a 0 1M", target],
                             capture_output=True, text=True).stdout
        self.assertIn("read 1048576/1048576 bytes", out)
        self.assertEqual(os.listdir(self.outside), [])

    def test_snapshot_mirror_copy_by_descriptor(self):
        """qmproxy-snapshot-mirror's copy: created by the proxy over the
        image below the new overlay, named by its path in the header."""
        snap = os.path.join(self.allowed, "s.qcow2")
        copy = os.path.join(self.allowed, "sub", "s-copy.qcow2")
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "sm", "disks": [{
            "disk": "disk0", "snapshot-file": snap, "mirror-file": copy}]})
        self.assertEqual(r["return"]["state"], "ready", r)
        # the overlay and the copy were both handed over, the overlay
        # taken by blockdev-snapshot onto its node
        wait_for(lambda: len(self.sent_by_proxy("add-fd")) == 2, what="two add-fd")
        adds = self.sent_by_proxy("add-fd")
        self.assertIn(snap, adds[0]["arguments"]["opaque"])
        self.assertIn(copy, adds[1]["arguments"]["opaque"])
        [tr] = self.sent_once("transaction")
        self.assertEqual([a["type"] for a in tr["arguments"]["actions"]], ["blockdev-snapshot"])
        self.assertNotIn(snap, json.dumps(self.sent_by_proxy("blockdev-add")))
        # both headers name the image below by its path
        self.assertEqual(self.header(snap)["backing-filename"], self.qemu.images[0])
        self.assertEqual(self.header(copy)["backing-filename"], self.qemu.images[0])
        r = self.c.cmd("qmproxy-snapshot-reopen", {"name": "sm", "target": "mirror"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual([l["file"] for l in proxy_chain(self.c)["chain"]],
                         [copy, self.qemu.images[0]])
        # a later snapshot over the layer QEMU calls /dev/fdset/N: its
        # header names the layer by its path
        later = os.path.join(self.allowed, "later.qcow2")
        later_copy = os.path.join(self.allowed, "later-copy.qcow2")
        r = self.c.cmd("qmproxy-snapshot-mirror", {"disks": [{
            "disk": "disk0", "snapshot-file": later, "mirror-file": later_copy}]})
        self.assertEqual(r["return"]["state"], "ready", r)
        self.assertEqual(self.header(later)["backing-filename"], copy)
        self.assertEqual(self.header(later_copy)["backing-filename"], copy)
        self.assertEqual([l["file"] for l in proxy_chain(self.c)["chain"]],
                         [later, copy, self.qemu.images[0]])
        out = subprocess.run([QEMU_IO, "-U", "-r", "-c", "read 0 1M", later],
                             capture_output=True, text=True)
        self.assertIn("read 1048576/1048576 bytes", out.stdout, out.stderr)
        # the copy's image cannot be opened (a link on the way): the
        # overlay made for it already is removed, no snapshot is taken
        os.symlink(os.path.join(self.allowed, "sub"), os.path.join(self.allowed, "dirlink"))
        before = qemu_chain(self.c, 1)[0]
        r = self.c.cmd("qmproxy-snapshot-mirror", {"disks": [
            {"disk": "disk1", "snapshot-file": os.path.join(self.allowed, "t1.qcow2"),
             "mirror-file": os.path.join(self.allowed, "dirlink", "t1.qcow2")}]})
        self.assertIn("goes through a symbolic link", r["error"]["desc"])
        self.assertIn("nothing was done", r["error"]["desc"])
        self.assertFalse(os.path.exists(os.path.join(self.allowed, "t1.qcow2")))
        self.assertEqual(qemu_chain(self.c, 1)[0], before)

    def test_snapshot_mirror_abort_by_descriptor(self):
        """Undoing a snapshot whose overlay was handed over: the overlay is
        folded back (active commit) and the disk runs on its image again."""
        hmp = self.direct()
        r = self.c.cmd("qmproxy-snapshot-mirror", {"name": "undo", "disks": [{
            "disk": "disk0", "snapshot-file": os.path.join(self.allowed, "u.qcow2"),
            "mirror-file": os.path.join(self.allowed, "u-copy.qcow2")}]})
        self.assertEqual(r["return"]["state"], "ready", r)
        self.qemu.io(hmp, 0, "write -P 0x6b 0 1M")
        r = self.c.cmd("qmproxy-snapshot-abort", {"name": "undo"})
        self.assertEqual(r["return"]["state"], "aborted", r)
        self.assertEqual(qemu_chain(self.c)[0], [self.qemu.images[0]])
        self.assertEqual([l["file"] for l in proxy_chain(self.c)["chain"]],
                         [self.qemu.images[0]])
        self.assertNotIn("fail", self.qemu.io(hmp, 0, "read -P 0x6b 0 1M").lower())
        wait_for(lambda: len(self.sent_by_proxy("remove-fd")) == 2, what="both fd sets removed")

    def test_restarted_proxy_knows_its_fd_sets(self):
        """Killed while a copy handed over is ready: the next run still
        calls it by its path (the state file keeps the fd sets' names),
        reopens onto it and removes the set when the operation ends."""
        target = os.path.join(self.allowed, "kept.qcow2")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target})
        self.assertEqual(r["return"]["state"], "ready", r)
        [add] = self.sent_once("add-fd")

        def saved_ready():
            try:
                with open(self.state) as f:
                    saved = json.load(f)["state"]
            except (OSError, ValueError):
                return False
            return [o["state"] for o in saved.get("operations", [])] == ["ready"]
        wait_for(saved_ready, what="the ready operation saved")
        self.c.close()
        self.proxy.proc.send_signal(signal.SIGKILL)
        self.proxy.proc.wait()
        os.unlink(self.proxy.listen)
        self.proxy = self.start_proxy()
        self.c = self.client(extras=True)
        self.assertEqual(proxy_chain(self.c)["mirror"]["file"], target)
        r = self.c.cmd("qmproxy-reopen", {"disk": "disk0", "file": target})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual([l["file"] for l in proxy_chain(self.c)["chain"]], [target])
        self.assertEqual(self.sent_once("remove-fd"), [{"execute": "remove-fd", "arguments": {
            "fdset-id": add["arguments"]["fdset-id"]}}])

    def test_existing_target_by_descriptor(self):
        """mode existing: the image made beforehand is opened, not
        created (on QEMU 10 with -blockdev: blockdev-add of /dev/fdset/N)."""
        self.snapshot_below()
        target = os.path.join(self.allowed, "made.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.qemu.images[0],
                 target, "64M")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target,
                                              "shallow": True, "mode": "existing"})
        self.assertEqual(r["return"]["state"], "ready", r)
        self.assertEqual(len(self.sent_once("add-fd")), 1)
        self.assertNotIn(target, json.dumps(self.sent_by_proxy("drive-mirror")
                                            + self.sent_once("blockdev-add")))
        r = self.c.cmd("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual([l["file"] for l in proxy_chain(self.c)["chain"]],
                         [target, self.qemu.images[0]])
        self.assertEqual(self.header(target)["backing-filename"], self.qemu.images[0])

    def test_links_refused_at_the_open(self):
        """Links the resolver lets through (they point inside the folder)
        are not followed when the proxy opens the image: the policy's check
        and the open could see different links, so the open follows none."""
        os.symlink(os.path.join(self.allowed, "sub"), os.path.join(self.allowed, "dirlink"))
        os.symlink(os.path.join(self.allowed, "sub", "c.qcow2"),
                   os.path.join(self.allowed, "filelink.qcow2"))
        for target in (os.path.join(self.allowed, "dirlink", "c.qcow2"),
                       os.path.join(self.allowed, "filelink.qcow2")):
            r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target})
            self.assertEqual(r["error"]["class"], "GenericError", r)
            self.assertIn("goes through a symbolic link", r["error"]["desc"])
            self.assertIn("nothing was done", r["error"]["desc"])
        self.assertEqual(os.listdir(os.path.join(self.allowed, "sub")), [])
        self.assertEqual(self.sent_by_proxy("add-fd"), [])
        # an allowed folder named through a link: said how to name it
        os.symlink(self.allowed, os.path.join(self.workdir, "alias"))
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": os.path.join(
            self.workdir, "alias", "d.qcow2")})
        self.assertIn("name it beneath one of them as it lies there", r["error"]["desc"])

    def test_refused_copy_leaves_no_image(self):
        """The image the proxy created for a copy that never ran is
        removed, so that asking again works."""
        target = os.path.join(self.allowed, "again.qcow2")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target,
                                              "format": "nosuch"})
        self.assertIn("qemu-img could not format", r["error"]["desc"])
        wait_for(lambda: not os.path.exists(target), what="the image to go")
        r = self.c.cmd("qmproxy-block-copy", {"disk": "disk0", "target": target})
        self.assertEqual(r["return"]["state"], "ready", r)

    def swapped_under_the_op(self, target, swap):
        """QEMU stopped, ask for a copy to target; once the proxy has
        checked it and the operation runs (the commands wait in QEMU's
        socket), swap() redirects the name; then QEMU goes on."""
        # a job on the other disk: the proxy's model then takes no answer of
        # QEMU's to settle, and the operation runs while QEMU is stopped
        self.c.ok("drive-mirror", {"device": self.qemu.device_arg(1), "job-id": "slow",
                                   "target": os.path.join(self.allowed, "slow.qcow2"),
                                   "sync": "full", "speed": 1})
        wait_for(lambda: "job" in proxy_chain(self.c, "disk1"), what="the job in the model")
        os.kill(self.qemu.proc.pid, signal.SIGSTOP)
        try:
            self.c.send({"execute": "qmproxy-block-copy", "id": "race",
                         "arguments": {"disk": "disk0", "target": target}})
            # the proxy's first command of the copy went up (by the
            # descriptor, or the name)
            wait_for(lambda: self.sent_by_proxy("add-fd") or self.sent_by_proxy("drive-mirror"),
                     what="the operation's first command")
            swap()
        finally:
            os.kill(self.qemu.proc.pid, signal.SIGCONT)
        return self.c.read_reply()

    def test_name_swapped_for_a_link(self):
        """The target's name becomes a link to a forbidden folder after the
        policy's check: QEMU still writes the file the proxy created."""
        target = os.path.join(self.allowed, "race.qcow2")

        def swap():
            if os.path.lexists(target):
                os.unlink(target)
            os.symlink(os.path.join(self.outside, "race.qcow2"), target)
        r = self.swapped_under_the_op(target, swap)
        self.assertEqual(r["return"]["state"], "ready", r)
        self.assertEqual(os.listdir(self.outside), [])

    def test_folder_swapped_for_a_link(self):
        """The same with a folder on the way replaced by a link."""
        folder = os.path.join(self.allowed, "racedir")
        os.makedirs(folder)

        def swap():
            os.rename(folder, folder + ".old")
            os.symlink(self.outside, folder)
        r = self.swapped_under_the_op(os.path.join(folder, "r.qcow2"), swap)
        self.assertEqual(r["return"]["state"], "ready", r)
        self.assertEqual(os.listdir(self.outside), [])
        # the image is where it was made, beneath the allowed folder
        self.assertEqual(self.header(os.path.join(folder + ".old", "r.qcow2"))["format"],
                         "qcow2")


class AutoMirrorOnSnapshot(ProxyTestCase):

    def start_proxy(self, args=None, **kw):
        self.dest = os.path.join(self.workdir, "dest")
        os.makedirs(self.dest)
        self.policy = os.path.join(self.workdir, "policy.xml")
        write_policy(self.policy, '<mirroring><rule name="follow" disks="disk*" on="snapshot" '
                     'target="%s" pivot="never" precreate="yes"/></mirroring>' % self.dest)
        return super().start_proxy(args=["--policy", self.policy])

    def test_plain_snapshot_gets_a_mirror(self):
        c = self.client(extras=True)
        c.hmp('qemu-io disk0 "write -P 0x11 0 1M"')
        snap = os.path.join(self.workdir, "snap.qcow2")
        c.ok("blockdev-snapshot-sync", {"device": "disk0", "snapshot-file": snap, "format": "qcow2"})
        ev = c.wait_event("QMPROXY_OPERATION", pred=lambda e: e["data"]["state"] == "ready")
        self.assertEqual(ev["data"]["type"], "auto-mirror")
        self.assertEqual(ev["data"]["rule"], "follow")
        target = os.path.join(self.dest, "snap.qcow2")
        self.assertEqual(ev["data"]["disks"][0]["mirror-file"], target)
        self.assertTrue(os.path.exists(target))
        # precreated over the destination's copy of the layer below
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", target],
                                         capture_output=True, text=True).stdout)
        self.assertEqual(info["backing-filename"], os.path.join(self.dest, "disk0.qcow2"))
        self.assertEqual(proxy_chain(c)["mirror"]["file"], target)
        c.hmp('qemu-io disk0 "write -P 0x22 1M 1M"')
        # the older layers go to the destination, then the switch
        subprocess.run(["cp", self.qemu.images[0], os.path.join(self.dest, "disk0.qcow2")], check=True)
        r = c.cmd("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual(qemu_chain(c)[0][0], target)
        c.send({"execute": "quit"})
        self.qemu.proc.wait(10)
        for pat, off in ((0x11, 0), (0x22, MiB)):
            out = subprocess.run([QEMU_IO, "-r", "-c", "read -P 0x%02x %d 1M" % (pat, off), target],
                                 capture_output=True, text=True).stdout
            self.assertNotIn("fail", out.lower(), out)


class AutoMirrorByDescriptor(ProxyTestCase):
    """Automatic mirroring under a path policy: the destination overlay is
    made by the proxy beneath the target folder, formatted over the
    destination's copy of the older layers (as precreate does), and handed
    to QEMU by descriptor."""

    def start_proxy(self, args=None, **kw):
        self.dest = os.path.join(self.workdir, "dest")
        os.makedirs(self.dest, exist_ok=True)
        self.policy = os.path.join(self.workdir, "policy.xml")
        write_policy(self.policy, '<paths><allow dir="%s"/></paths>'
                     '<mirroring><rule name="follow" disks="disk*" on="snapshot" '
                     'target="%s" pivot="never" precreate="yes"/></mirroring>'
                     % (self.workdir, self.dest))
        self.tlog = os.path.join(self.workdir, "traffic.jsonl")
        return super().start_proxy(args=["--policy", self.policy, "--traffic-log", self.tlog])

    def test_snapshot_mirrored_by_descriptor(self):
        c = self.client(extras=True)
        snap = os.path.join(self.workdir, "snap.qcow2")
        c.ok("blockdev-snapshot-sync", {"device": "disk0", "snapshot-file": snap,
                                        "format": "qcow2"})
        ev = c.wait_event("QMPROXY_OPERATION", pred=lambda e: e["data"]["state"] == "ready")
        target = os.path.join(self.dest, "snap.qcow2")
        self.assertEqual(ev["data"]["disks"][0]["mirror-file"], target)

        def sent(command):
            with open(self.tlog) as f:
                msgs = [json.loads(l) for l in f if l.endswith("\n")]
            return [m["msg"] for m in msgs if m["dir"] == "in" and m.get("client") == 0
                    and m["msg"].get("execute") == command]
        wait_for(lambda: sent("blockdev-mirror"), what="blockdev-mirror in the log")
        [add] = sent("add-fd")
        self.assertIn(target, add["arguments"]["opaque"])
        self.assertNotIn(target, json.dumps(sent("blockdev-add") + sent("drive-mirror")))
        info = json.loads(qemu_img("info", "-U", "--output=json", target))
        self.assertEqual(info["backing-filename"], os.path.join(self.dest, "disk0.qcow2"))
        self.assertEqual(proxy_chain(c)["mirror"]["file"], target)
        subprocess.run(["cp", self.qemu.images[0], os.path.join(self.dest, "disk0.qcow2")],
                       check=True)
        r = c.cmd("qmproxy-reopen", {"disk": "disk0"})
        self.assertEqual(r["return"]["state"], "pivoted", r)
        self.assertEqual([l["file"] for l in proxy_chain(c)["chain"]],
                         [target, os.path.join(self.dest, "disk0.qcow2")])


class ReplicationToFullFilesystem(ProxyTestCase):
    """A continuous copy whose target fills up: retried with backoff,
    reported, and the source untouched."""

    def prepare_images(self):
        img = os.path.join(self.workdir, "disk0.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", img, "64M")
        # data the replica cannot hold
        subprocess.run([QEMU_IO, "-c", "write -P 0x33 0 16M", img],
                       check=True, capture_output=True)

    def start_proxy(self, args=None, **kw):
        if os.geteuid() != 0:
            self.skipTest("mounting a small tmpfs needs root")
        self.mnt = os.path.join(self.workdir, "small")
        os.makedirs(self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if r.returncode:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt])
        self.policy = os.path.join(self.workdir, "policy.xml")
        write_policy(self.policy, '<mirroring><rule name="replica" disks="disk0" on="connect" '
                     'target="%s" on-error="retry" retries="2" backoff-ms="200" '
                     'max-backoff-ms="400"/></mirroring>' % self.mnt)
        return super().start_proxy(args=["--policy", self.policy])

    def test_retries_then_reports(self):
        c = self.client(extras=True)
        ev = c.wait_event("QMPROXY_OPERATION", timeout=60,
                          pred=lambda e: e["data"]["state"] == "failed")
        op = ev["data"]
        self.assertEqual(op["type"], "auto-mirror")
        self.assertEqual(op["rule"], "replica")
        self.assertIn("every retry did", op["error"])
        self.assertIn("No space left on device", op["error"])
        notes = [e["data"]["disks"][0].get("note", "") for e in c.events
                 if e["event"] == "QMPROXY_OPERATION"]
        self.assertTrue(any("next attempt in 200 ms" in n for n in notes), notes)
        self.assertTrue(any("next attempt in 400 ms" in n for n in notes), notes)
        self.assertIn("attempt 1 of 3 failed", self.proxy.read_stderr())
        # the source is untouched and whole
        self.assertEqual(qemu_chain(c)[0], self.qemu.images)
        out = c.hmp('qemu-io disk0 "read -P 0x33 0 16M"')
        self.assertNotIn("fail", out.lower(), out)
        self.assertNotIn("job", proxy_chain(c))


class Reload(ProxyTestCase):

    def start_proxy(self, args=None, **kw):
        self.policy = os.path.join(self.workdir, "policy.xml")
        self.ro = os.path.join(self.workdir, "ro.sock")
        write_policy(self.policy, '<listeners default-role="full"><listener name="ro" role="monitor"/></listeners>')
        return super().start_proxy(args=["--policy", self.policy, "--listen", "ro=unix:" + self.ro])

    def test_valid_and_invalid_reloads_under_traffic(self):
        busy = self.client()
        stop = threading.Event()
        errors = []

        def traffic():
            while not stop.is_set():
                try:
                    busy.ok("query-status")
                except Exception as e:  # noqa
                    errors.append(e)
                    return

        t = threading.Thread(target=traffic)
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(stop.set)
        ro = self.client(path=self.ro)
        self.assertIn("not allowed by policy", ro.cmd("stop")["error"]["desc"])
        # a valid new policy: the ro seat becomes a full one
        write_policy(self.policy, '<listeners default-role="full"/>')
        self.proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in self.proxy.read_stderr(), what="the reload")
        self.assertEqual(ro.cmd("stop"), {"return": {}})
        ro.ok("cont")
        # an invalid one is refused, the one in force stays
        write_policy(self.policy, '<listeners default-role="nosuch"/>')
        self.proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "refused" in self.proxy.read_stderr(), what="the refusal")
        self.assertIn("default-role 'nosuch' is no role", self.proxy.read_stderr())
        self.assertEqual(ro.cmd("stop"), {"return": {}})
        ro.ok("cont")
        stop.set()
        t.join()
        self.assertEqual(errors, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
