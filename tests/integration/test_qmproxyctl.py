"""qmproxyctl, the operator's command line, against a real QEMU through
qmproxy (and, for the generic commands, against QEMU's own monitor):
each command's output, its --json form, and its exit status.

The terminal tests run qmproxyctl inside tmux (send-keys, capture-pane)
for what only a terminal shows: the progress bars redrawn in place."""
import json
import os
import shutil
import signal
import subprocess
import time
import unittest
import uuid

from qmptest import (BUILD, ProxyTestCase, for_each_shape, listening_socket,
                     qemu_img, wait_for, TIMEOUT)
from test_chain import qemu_chain, proxy_chain

QMPROXYCTL = os.environ.get("QMPROXYCTL_BIN", os.path.join(BUILD, "qmproxyctl"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20

# the exit codes the README documents
OK, QMP_ERROR, USAGE, CONNECTION, TIMEOUT_EXIT, OP_FAILED, INTERRUPTED, ABORTED = range(8)


class CtlTestCase(ProxyTestCase):
    image_dir = "src"

    def setUp(self):
        super().setUp()
        self.c = self.client(extras=True)
        self.src = os.path.join(self.workdir, "src")
        self.dest = os.path.join(self.workdir, "dest")
        os.makedirs(self.dest, exist_ok=True)

    def ctl(self, *args, socket=None, expect=OK, env=None):
        """Run qmproxyctl; check its exit status; (stdout, stderr)."""
        cmd = [QMPROXYCTL, "-s", socket or self.proxy.listen] + list(args)
        e = dict(os.environ, NO_COLOR="1")
        e.update(env or {})
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL, env=e)
        self.assertEqual(r.returncode, expect,
                         "%s exited %d\nstdout: %s\nstderr: %s"
                         % (args, r.returncode, r.stdout, r.stderr))
        return r.stdout, r.stderr

    def ctl_json(self, *args, **kw):
        out, _ = self.ctl("--json", *args, **kw)
        return json.loads(out)

    def write(self, disk, pattern, offset, size):
        out = self.qemu.io(self.c, disk, "write -P 0x%02x %d %d" % (pattern, offset, size))
        self.assertNotIn("error", out.lower(), out)

    def op(self, name):
        ops = self.c.ok("qmproxy-query-operations", {"name": name})
        self.assertEqual(len(ops), 1, ops)
        return ops[0]

    def ops_of_type(self, type_):
        return [o for o in self.c.ok("qmproxy-query-operations") if o["type"] == type_]


class Exec(CtlTestCase):
    def test_simple_syntax_values_and_dotted_keys(self):
        # JSON values where they parse, strings elsewhere, dotted keys nest
        img = os.path.join(self.workdir, "extra.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", img, "1M")
        self.ctl("exec", "blockdev-add", "driver=qcow2", "node-name=extra",
                 "read-only=true", "file.driver=file", "file.filename=" + img)
        nodes = {n["node-name"]: n for n in self.c.ok("query-named-block-nodes")}
        self.assertIn("extra", nodes)
        self.assertTrue(nodes["extra"]["ro"])
        self.assertEqual(nodes["extra"]["file"], img)

    def test_json_request_and_output(self):
        ver = self.ctl_json("exec", '{"execute": "query-version"}')
        self.assertEqual(ver, self.c.ok("query-version"))
        status = self.ctl_json("exec", "query-status")
        self.assertEqual(status["status"], self.c.ok("query-status")["status"])
        # arguments as one JSON object
        self.ctl("exec", "query-chardev")
        out, _ = self.ctl("exec", "human-monitor-command", '{"command-line": "info version"}')
        self.assertIn(self.c.ok("query-version")["package"].split()[0], out)

    def test_errors_and_exit_codes(self):
        _, err = self.ctl("exec", "no-such-command", expect=QMP_ERROR)
        self.assertIn("CommandNotFound: The command no-such-command has not been found", err)
        _, err = self.ctl("exec", "blockdev-snapshot-sync", "device=nosuch",
                          "snapshot-file=/nonexistent/x.qcow2", expect=QMP_ERROR)
        self.assertIn("GenericError", err)
        self.ctl("exec", "query-status", "not-key-value", expect=USAGE)
        self.ctl("exec", "query-status", "a.b=1", "a=2", expect=USAGE)
        self.ctl("exec", '{"execute": ', expect=USAGE)
        self.ctl("no-such-subcommand", expect=USAGE)
        self.ctl(expect=USAGE)
        _, err = self.ctl("exec", "query-status",
                          socket=os.path.join(self.workdir, "nothing.sock"),
                          expect=CONNECTION)
        self.assertIn("cannot connect", err)
        # a peer that never greets: --timeout ends the wait
        silent = os.path.join(self.workdir, "silent.sock")
        with listening_socket(silent):
            self.ctl("--timeout", "0.5", "exec", "query-status", socket=silent,
                     expect=TIMEOUT_EXIT)

    def test_plain_qemu(self):
        # the generic commands work on QEMU's own monitor
        mon = self.qemu.monitors[1]
        status = self.ctl_json("exec", "query-status", socket=mon)
        self.assertIn("status", status)
        out, _ = self.ctl("chain", socket=mon)
        self.assertIn(self.qemu.images[0], out)
        chain = self.ctl_json("chain", socket=mon)
        self.assertEqual(chain[0]["chain"][0]["file"], self.qemu.images[0])
        _, err = self.ctl("ops", socket=mon, expect=QMP_ERROR)
        self.assertIn("CommandNotFound", err)
        _, err = self.ctl("chain", "--xml", socket=mon, expect=QMP_ERROR)
        self.assertIn("needs qmproxy", err)


@for_each_shape
class Chain(CtlTestCase):
    def snapshot(self, name):
        f = os.path.join(self.src, name)
        self.c.ok("blockdev-snapshot-sync", {
            "device" if self.shape == "none" else "node-name":
                "disk0" if self.shape == "none" else qemu_chain(self.c)[2],
            "snapshot-file": f, "format": "qcow2",
            "snapshot-node-name": "n-" + name.split(".")[0]})
        return f

    def test_tree_json_xml_dot(self):
        base = self.qemu.images[0]
        s1 = self.snapshot("s1.qcow2")
        out, _ = self.ctl("chain")
        lines = out.splitlines()
        self.assertEqual(lines[0].split()[0], "disk0")
        self.assertIn(s1, lines[1])
        self.assertIn("qcow2", lines[1])
        self.assertIn("64 MiB", lines[1])
        self.assertIn("node ", lines[1])
        self.assertIn("└── " + base, lines[2])
        # --json is qmproxy-query-chain's answer
        self.assertEqual(self.ctl_json("chain"), self.c.ok("qmproxy-query-chain"))
        self.assertEqual(self.ctl_json("chain", "disk0"),
                         self.c.ok("qmproxy-query-chain", {"disk": "disk0"}))
        xml, _ = self.ctl("chain", "disk0", "--xml")
        self.assertEqual(xml.strip(), self.c.ok(
            "qmproxy-query-chain", {"disk": "disk0", "format": "xml"}).strip())
        self.assertIn("<backingStore", xml)
        dot, _ = self.ctl("chain", "--dot")
        self.assertTrue(dot.startswith("digraph"))
        self.assertIn('"backing"', dot)
        if shutil.which("dot"):
            r = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("<svg", r.stdout)
            self.assertIn(os.path.basename(s1), r.stdout)
        _, err = self.ctl("chain", "nosuch", expect=QMP_ERROR)
        self.assertIn("No disk named 'nosuch'", err)

    def test_copy_in_progress(self):
        self.write(0, 0x22, 0, 16 * MiB)
        target = os.path.join(self.dest, "copy.qcow2")
        out, _ = self.ctl("block-copy", "disk0", target, "--speed", "1M")
        self.assertIn("started", out)
        out, _ = self.ctl("chain", "disk0")
        self.assertIn("copy → " + target, out)
        dot, _ = self.ctl("chain", "--dot")
        self.assertIn("style=dashed", dot)
        self.assertIn(target, dot)


    def test_pull_backup_filter(self):
        """A pull backup's copy-before-write is said as a filter, not drawn
        as a layer of the tree."""
        scratch = os.path.join(self.src, "scratch.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", scratch, "64M")
        node = qemu_chain(self.c)[2]
        self.c.ok("blockdev-add", {"driver": "qcow2", "node-name": "scratch",
                                   "file": {"driver": "file", "filename": scratch},
                                   "backing": node})
        self.c.ok("blockdev-backup", {"job-id": "pull", "device": node,
                                      "target": "scratch", "sync": "none"})
        out, _ = self.ctl("chain", "disk0")
        self.assertIn("filter copy-before-write on " + self.qemu.images[0], out)
        self.assertEqual(out.count(self.qemu.images[0]), 2, out)  # layer, filter
        self.c.ok("block-job-cancel", {"device": "pull"})


class Operations(CtlTestCase):
    def test_snapshot_mirror_wait_reopen(self):
        self.write(0, 0x33, 0, MiB)
        snap = os.path.join(self.src, "snap.qcow2")
        mirror = os.path.join(self.dest, "snap.qcow2")
        out, err = self.ctl("snapshot-mirror", "--name", "mig", "--disk", "disk0",
                            "--snapshot", snap, "--mirror", mirror, "--speed", "64M",
                            "--wait")
        self.assertIn("operation mig: ready", out)
        self.assertEqual(self.op("mig")["state"], "ready")
        self.assertEqual(proxy_chain(self.c)["mirror"]["file"], mirror)
        ops = self.ctl_json("ops")
        self.assertEqual([o["name"] for o in ops], ["mig"])
        out, _ = self.ctl("ops")
        self.assertIn("mig", out)
        self.assertIn("ready", out)
        # a second operation of the same name is refused up front: exit 1
        _, err = self.ctl("snapshot-mirror", "--name", "mig", "--disk", "disk0",
                          "--snapshot", snap + "2", "--mirror", mirror + "2",
                          "--wait", expect=QMP_ERROR)
        self.assertIn("GenericError", err)
        ret = self.ctl_json("snapshot-reopen", "mig", "--to", "mirror")
        self.assertEqual(ret["state"], "pivoted")
        self.assertEqual(qemu_chain(self.c)[0][0], mirror)
        self.ctl("snapshot-reopen", "mig", "--to", "sideways", expect=USAGE)

    def test_snapshot_mirror_json_and_abort(self):
        snap = os.path.join(self.src, "snap.qcow2")
        ret = self.ctl_json("snapshot-mirror", "--name", "s", "--disk", "disk0",
                            "--snapshot", snap, "--mirror",
                            os.path.join(self.dest, "snap.qcow2"), "--wait")
        self.assertEqual(ret["name"], "s")
        self.assertEqual(ret["state"], "ready")
        self.assertEqual(qemu_chain(self.c)[0][0], snap)
        out, _ = self.ctl("abort", "s")
        self.assertIn("operation s: aborted", out)
        self.assertEqual(qemu_chain(self.c)[0], [self.qemu.images[0]])
        _, err = self.ctl("abort", "s", expect=QMP_ERROR)
        self.assertIn("aborted", err)

    def test_snapshot_mirror_xml(self):
        xml = os.path.join(self.workdir, "snap.xml")
        with open(xml, "w") as f:
            f.write("""<domainsnapshot><name>x1</name><disks>
  <disk name='disk0' snapshot='external'>
    <source file='%s'/><mirror file='%s'/><driver type='qcow2'/>
  </disk></disks></domainsnapshot>""" % (os.path.join(self.src, "x.qcow2"),
                                          os.path.join(self.dest, "x.qcow2")))
        out, _ = self.ctl("snapshot-mirror-xml", xml, "--wait")
        self.assertIn("operation x1: ready", out)
        self.assertEqual(self.op("x1")["state"], "ready")

    def test_snapshot_mirror_xml_in_another_encoding(self):
        # qmproxy reads the request as UTF-8 whatever its declaration says,
        # and so does qmproxyctl looking for the name: the bytes it cannot
        # read are qmproxy's error, not libxml2's lines on stderr
        xml = os.path.join(self.workdir, "jis.xml")
        with open(xml, "wb") as f:
            f.write(b'<?xml version="1.0" encoding="ISO-2022-JP"?>\n'
                    b'<domainsnapshot><name>x\x1b$B\xff\xff</name><disks/>'
                    b'</domainsnapshot>\n')
        _, err = self.ctl("snapshot-mirror-xml", xml, "--wait", expect=QMP_ERROR)
        self.assertNotIn("encoding error", err)
        self.assertNotIn("I/O error", err)
        self.assertEqual([l for l in err.splitlines() if l.strip()][0][:11], "qmproxyctl:", err)
        self.assertEqual(self.ops_of_type("snapshot-mirror"), [])

    def test_usage_errors(self):
        self.ctl("snapshot-mirror", "--name", "n", expect=USAGE)
        self.ctl("snapshot-mirror", "--snapshot", "/a", "--disk", "disk0", expect=USAGE)
        self.ctl("snapshot-mirror", "--disk", "disk0", "--snapshot", "/a", expect=USAGE)
        self.ctl("block-copy", "disk0", expect=USAGE)
        self.ctl("block-copy", "disk0", "/x", "--speed", "fast", expect=USAGE)
        self.ctl("reopen", expect=USAGE)
        # relative paths are refused by the proxy, nothing started
        _, err = self.ctl("block-copy", "disk0", "rel.qcow2", "--wait", expect=QMP_ERROR)
        self.assertIn("GenericError", err)
        self.assertEqual(self.ops_of_type("block-copy"), [])

    def test_block_copy_wait_progress_lines_then_reopen(self):
        self.write(0, 0x44, 0, 8 * MiB)
        target = os.path.join(self.dest, "full.qcow2")
        out, err = self.ctl("block-copy", "disk0", target, "--speed", "16M", "--wait")
        self.assertIn("ready", out)
        # not a terminal: plain progress lines, the last one complete
        lines = [l for l in err.splitlines() if l.startswith("disk0")]
        self.assertTrue(lines, err)
        self.assertIn("100%", lines[-1])
        self.assertNotIn("\033[", err)
        out, _ = self.ctl("reopen", "disk0")
        self.assertIn("pivoted", out)
        self.assertEqual(qemu_chain(self.c)[0][0], target)

    def test_start_without_wait_then_follow(self):
        self.write(0, 0x55, 0, 8 * MiB)
        target = os.path.join(self.dest, "full.qcow2")
        out, _ = self.ctl("block-copy", "disk0", target, "--speed", "1M")
        self.assertRegex(out, r"operation block-copy-\d+ started")
        name = out.split()[1]
        # qmproxyctl is gone; the operation goes on
        self.assertIn(self.op(name)["state"], ("running", "mirroring"))
        _, err = self.ctl("--timeout", "0.5", "ops", name, "--follow",
                          expect=TIMEOUT_EXIT)
        self.c.ok("block-job-set-speed", {"device": self.op(name)["disks"][0]["job"],
                                          "speed": 0})
        wait_for(lambda: self.op(name)["state"] == "ready", what="the copy ready")
        out, _ = self.ctl("reopen", "disk0")
        self.assertIn("pivoted", out)
        out, _ = self.ctl("ops", name, "--follow")
        self.assertIn("pivoted", out)

    def test_timeout_leaves_the_operation(self):
        self.write(0, 0x66, 0, 8 * MiB)
        target = os.path.join(self.dest, "full.qcow2")
        _, err = self.ctl("--timeout", "1", "block-copy", "disk0", target,
                          "--speed", "64K", "--wait", expect=TIMEOUT_EXIT)
        self.assertIn("goes on", err)
        [op] = self.ops_of_type("block-copy")
        self.assertIn(op["state"], ("running", "mirroring"))

    def interrupted(self, *extra):
        """block-copy --wait, slowed down, then Ctrl-C once it runs."""
        self.write(0, 0x77, 0, 8 * MiB)
        target = os.path.join(self.dest, "full.qcow2")
        p = subprocess.Popen([QMPROXYCTL, "-s", self.proxy.listen, "block-copy",
                              "disk0", target, "--speed", "64K", "--wait"] + list(extra),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        op = wait_for(lambda: (self.ops_of_type("block-copy") or [None])[0],
                      what="the operation")
        wait_for(lambda: self.op(op["name"])["state"] == "mirroring", what="mirroring")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=TIMEOUT)
        return p.returncode, op["name"], err

    def test_interrupt_leaves_it_running(self):
        rc, name, err = self.interrupted()
        self.assertEqual(rc, INTERRUPTED, err)
        self.assertIn("left running", err)
        self.assertEqual(self.op(name)["state"], "mirroring")

    def test_interrupt_aborts(self):
        rc, name, err = self.interrupted("--abort-on-interrupt")
        self.assertEqual(rc, ABORTED, err)
        wait_for(lambda: self.op(name)["state"] == "failed", what="the copy dropped")
        self.assertEqual(qemu_chain(self.c)[0], [self.qemu.images[0]])


class Policy(CtlTestCase):
    examples = os.path.join(ROOT, "policy", "examples")

    def test_check(self):
        for f in sorted(os.listdir(self.examples)):
            path = os.path.join(self.examples, f)
            out, _ = self.ctl("policy", "check", path)
            self.assertIn("a valid qmproxy policy", out)
            # the same verdict as the daemon's --check-policy
            r = subprocess.run([os.environ.get("QMPROXY_BIN", os.path.join(BUILD, "qmproxy")),
                                "--check-policy", path], capture_output=True)
            self.assertEqual(r.returncode, 0)
        bad = os.path.join(self.workdir, "bad.xml")
        with open(bad, "w") as f:
            f.write("<policy>\n<roles><role name='r' default='maybe'/></roles>\n</policy>\n")
        _, err = self.ctl("policy", "check", bad, expect=QMP_ERROR)
        self.assertIn(bad + ":2:", err)
        self.assertEqual(self.ctl_json("policy", "check", bad, expect=QMP_ERROR)["valid"], False)

    def test_explain(self):
        pol = os.path.join(self.examples, "operator.xml")
        out, _ = self.ctl("policy", "explain", "--policy", pol, "quit", expect=QMP_ERROR)
        self.assertIn("<deny command='quit'/>", out)
        self.assertIn("role 'operator'", out)
        out, _ = self.ctl("policy", "explain", "--policy", pol, "query-block")
        self.assertIn("<allow command='query-*'/>", out)
        out, _ = self.ctl("policy", "explain", "--policy", pol, "--listener", "admin", "quit")
        self.assertIn("role 'full' (built in)", out)
        out, _ = self.ctl("policy", "explain", "--policy", pol, "device_del",
                          expect=QMP_ERROR)
        self.assertIn("no rule matches: its default, deny", out)
        # the role allows it, the place does not
        res = self.ctl_json("policy", "explain", "--policy", pol, "qmproxy-block-copy",
                            '{"disk": "disk0", "target": "/etc/x.qcow2"}', expect=QMP_ERROR)
        self.assertFalse(res["allowed"])
        self.assertIn("/etc/x.qcow2", res["refused"])
        res = self.ctl_json("policy", "explain", "--policy", pol, "qmproxy-block-copy",
                            '{"disk": "disk0", "target": "/var/lib/vms/x.qcow2"}')
        self.assertTrue(res["allowed"])


@unittest.skipUnless(shutil.which("tmux"), "tmux is not installed")
class Terminal(CtlTestCase):
    """qmproxyctl on a terminal: tmux runs it, capture-pane reads it."""

    def setUp(self):
        super().setUp()
        self.tmux_socket = "qmptest-%s" % uuid.uuid4().hex[:8]
        self.tmux("new-session", "-d", "-x", "120", "-y", "30", "-s", "t",
                  "env NO_COLOR= TERM=xterm bash --norc --noprofile")
        self.addCleanup(self.tmux, "kill-server", check=False)

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-L", self.tmux_socket] + list(args),
                              capture_output=True, text=True, check=check).stdout

    def pane(self):
        return self.tmux("capture-pane", "-p", "-t", "t")

    def run_in_pane(self, command):
        # the marker is split so that the typed line does not show it
        self.tmux("send-keys", "-t", "t", command + '; echo "E"XIT=$?', "Enter")

    def test_progress_bar_redrawn_in_place(self):
        self.write(0, 0x11, 0, 8 * MiB)
        target = os.path.join(self.dest, "full.qcow2")
        self.run_in_pane("%s -s %s block-copy disk0 %s --speed 2M --wait"
                         % (QMPROXYCTL, self.proxy.listen, target))
        # while it runs: one bar for the disk, partly filled
        seen = wait_for(lambda: [l for l in self.pane().splitlines()
                                 if l.startswith("disk0") and "[" in l and "%" in l],
                        what="a progress bar")
        self.assertRegex(seen[0], r"disk0\s+\[[#>.]{30}\]\s+\d+%")
        wait_for(lambda: "EXIT=" in self.pane(), timeout=60, what="the copy ready")
        text = self.pane()
        self.assertIn("EXIT=0", text)
        self.assertIn("operation block-copy-", text)
        # redrawn in place: one bar line in the end, full
        bars = [l for l in text.splitlines() if l.startswith("disk0 ")]
        self.assertEqual(len(bars), 1, text)
        self.assertIn("[" + "#" * 30 + "]", bars[0])
        self.assertIn("100%", bars[0])

    def test_top_redrawn_in_place(self):
        self.proxy.stop()
        tap = os.path.join(self.workdir, "tap.sock")
        self.proxy = self.start_proxy(args=("--tap", "unix:" + tap),
                                      listen=os.path.join(self.workdir, "p2.sock"))
        c = self.client()
        self.run_in_pane("%s top --tap %s --interval 0.3" % (QMPROXYCTL, tap))
        wait_for(lambda: "COMMAND" in self.pane(), what="top's table")
        for _ in range(3):
            c.ok("query-status")
        rows = wait_for(lambda: [l for l in self.pane().splitlines()
                                 if l.startswith("query-status ") and l.split()[1] == "3"],
                        what="query-status counted")
        # in place: the screen holds one table, not one per refresh
        self.assertEqual(self.pane().count("COMMAND"), 1)
        self.tmux("send-keys", "-t", "t", "C-c")
        wait_for(lambda: "EXIT=" in self.pane(), what="top to end")
        self.assertIn("EXIT=0", self.pane())

    def test_shell_completion_events_history(self):
        hist = os.path.join(self.workdir, "history")
        self.run_in_pane("QMPROXYCTL_HISTORY=%s %s -s %s" % (hist, QMPROXYCTL, self.proxy.listen))
        try:
            wait_for(lambda: "(QEMU)" in self.pane(), what="the prompt")
        except AssertionError:
            raise AssertionError("no prompt:\n" + self.pane())
        # a command name from query-commands (the proxy's among them)
        self.tmux("send-keys", "-t", "t", "query-chardev-b", "Tab")
        wait_for(lambda: "(QEMU) query-chardev-backends" in self.pane(),
                 what="the command name completed")
        self.tmux("send-keys", "-t", "t", "C-u", "qmproxy-snapshot-re", "Tab")
        wait_for(lambda: "(QEMU) qmproxy-snapshot-reopen" in self.pane(),
                 what="the proxy's command completed")
        # argument names: the proxy's from its table, QEMU's from its schema
        self.tmux("send-keys", "-t", "t", "ta", "Tab")
        wait_for(lambda: "(QEMU) qmproxy-snapshot-reopen target=" in self.pane(),
                 what="the argument completed")
        self.tmux("send-keys", "-t", "t", "C-u", "blockdev-snapshot-sync snapshot-f", "Tab")
        wait_for(lambda: "blockdev-snapshot-sync snapshot-file=" in self.pane(),
                 what="QEMU's argument completed")
        # an event arrives while a line is being typed: shown above it,
        # the line kept
        self.tmux("send-keys", "-t", "t", "C-u", "query-sta")
        self.c.ok("stop")
        wait_for(lambda: "] STOP" in self.pane(), what="the event shown")
        wait_for(lambda: self.pane().rstrip().endswith("(QEMU) query-sta"),
                 what="the line redrawn")
        self.tmux("send-keys", "-t", "t", "tus", "Enter")
        wait_for(lambda: '"status": "paused"' in self.pane(), what="the answer")
        self.tmux("send-keys", "-t", "t", "C-d")
        wait_for(lambda: "EXIT=" in self.pane(), what="the shell to end")
        self.assertIn("EXIT=0", self.pane())
        with open(hist) as f:
            self.assertIn("query-status", f.read())

    def test_ctrl_c_on_a_terminal(self):
        self.write(0, 0x12, 0, 8 * MiB)
        target = os.path.join(self.dest, "full.qcow2")
        self.run_in_pane("%s -s %s block-copy disk0 %s --speed 64K --wait"
                         % (QMPROXYCTL, self.proxy.listen, target))
        wait_for(lambda: "%" in self.pane(), what="a progress bar")
        self.tmux("send-keys", "-t", "t", "C-c")
        wait_for(lambda: "EXIT=" in self.pane(), what="qmproxyctl to end")
        text = self.pane()
        self.assertIn("EXIT=%d" % INTERRUPTED, text)
        self.assertIn("left running", text)


class Traffic(CtlTestCase):
    """watch and top follow the proxy's --tap socket."""

    def start_proxy(self, args=None, **kw):
        self.tap = os.path.join(self.workdir, "tap.sock")
        return super().start_proxy(args=("--tap", "unix:" + self.tap), **kw)

    def popen(self, *args):
        p = subprocess.Popen([QMPROXYCTL] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, env=dict(os.environ, NO_COLOR="1"))
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def wait_observer(self):
        # the tap says in qmproxy's -v output when an observer arrives
        wait_for(lambda: "tap observer" in self.proxy.read_stderr(),
                 what="the observer attached")

    def test_watch_lines_and_filters(self):
        every = self.popen("watch", "--tap", self.tap, "--count", "4")
        self.wait_observer()
        errors = self.popen("watch", "--tap", self.tap, "--errors", "--count", "1")
        stops = self.popen("watch", "--tap", self.tap, "--event", "STO*",
                           "--command", "stop", "--count", "3")
        wait_for(lambda: self.proxy.read_stderr().count("tap observer") >= 3,
                 what="three observers")
        self.c.cmd("no-such-command")
        self.c.ok("stop")
        out, _ = every.communicate(timeout=TIMEOUT)
        lines = out.splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertRegex(lines[0], r"^\d\d:\d\d:\d\d\.\d{3}\s+c\d+\s+→ no-such-command$")
        self.assertRegex(lines[1], r"← no-such-command  error CommandNotFound: "
                         r"The command no-such-command has not been found  [\d.]+ (µs|ms)$")
        self.assertIn("→ stop", lines[2])
        out, _ = errors.communicate(timeout=TIMEOUT)
        self.assertEqual(len(out.splitlines()), 1, out)
        self.assertIn("error CommandNotFound", out)
        out, _ = stops.communicate(timeout=TIMEOUT)
        self.assertIn("→ stop", out)
        self.assertIn("event STOP", out)
        self.assertIn("← stop  ok", out)
        self.assertEqual(every.returncode, 0)
        self.assertNotIn("no-such-command", out)

    def test_watch_json_and_client_filter(self):
        other = self.client()
        w = self.popen("--json", "watch", "--tap", self.tap, "--client", "1",
                       "--count", "2")
        self.wait_observer()
        other.ok("query-name")      # client 2: filtered out
        self.c.ok("query-version")  # client 1
        out, _ = w.communicate(timeout=TIMEOUT)
        lines = [json.loads(l) for l in out.splitlines()]
        self.assertEqual([l["client"] for l in lines], [1, 1])
        self.assertEqual(lines[0]["msg"], {"execute": "query-version"})
        self.assertEqual(lines[1]["kind"], "reply")

    def test_top_batch(self):
        t = self.popen("top", "--tap", self.tap, "--interval", "0.5", "-n", "1")
        self.wait_observer()
        for _ in range(5):
            self.c.ok("query-status")
        self.c.cmd("no-such-command")
        out, err = t.communicate(timeout=TIMEOUT)
        self.assertEqual(t.returncode, 0, err)
        rows = {l.split()[0]: l.split() for l in out.splitlines() if l.strip()}
        # a command counted when answered; p50/p90/p99 are numbers
        if "query-status" in rows:   # the interval may end before the replies
            self.assertLessEqual(int(rows["query-status"][1]), 5)
        self.assertIn("COMMAND", out)
        self.assertIn("CLIENT", out)
        self.assertIn("EVENT", out)

    def test_top_counts_everything_it_saw(self):
        t = self.popen("top", "--tap", self.tap, "--interval", "0.3", "-n", "200")
        self.wait_observer()
        for _ in range(5):
            self.c.ok("query-status")
        self.c.cmd("no-such-command")
        # the refreshes go on; read until one shows all six answered
        seen = None
        for _ in range(200):
            line = t.stdout.readline()
            if not line:
                break
            if line.startswith("commands ") and "errors 1" in line:
                seen = line
                break
        t.kill()
        t.communicate()
        self.assertIsNotNone(seen, "no refresh counted the error")
        self.assertRegex(seen, r"commands 6 ")

    def test_top_json(self):
        t = self.popen("--json", "top", "--tap", self.tap, "--interval", "0.3", "-n", "200")
        self.wait_observer()
        for _ in range(3):
            self.c.ok("query-status")
        self.c.cmd("no-such-command")
        seen = None
        for _ in range(200):
            line = t.stdout.readline()
            if not line:
                break
            refresh = json.loads(line)
            if refresh["errors"] == 1 and refresh["commands"] == 4:
                seen = refresh
                break
        t.kill()
        t.communicate()
        self.assertIsNotNone(seen, "no refresh counted everything")
        rows = {r["name"]: r for r in seen["by-command"]}
        self.assertEqual(rows["query-status"]["count"], 3)
        self.assertEqual(rows["no-such-command"]["errors"], 1)
        self.assertLessEqual(rows["query-status"]["p50-us"], rows["query-status"]["p99-us"])
        self.assertEqual([r["count"] for r in seen["by-client"]], [4])

    def test_top_shows_operations(self):
        t = self.popen("top", "--tap", self.tap, "--interval", "0.3", "-n", "200")
        self.wait_observer()
        self.c.ok("qmproxy-snapshot-mirror", {"name": "mig", "disks": [{
            "disk": "disk0", "snapshot-file": os.path.join(self.src, "s.qcow2"),
            "mirror-file": os.path.join(self.dest, "s.qcow2")}]})
        row = None
        for _ in range(2000):
            line = t.stdout.readline()
            if not line:
                break
            if line.startswith("mig "):
                row = line.split()
                if row[2] == "ready":
                    break
        t.kill()
        t.communicate()
        self.assertIsNotNone(row, "no operation row")
        self.assertEqual(row[:3], ["mig", "snapshot-mirror", "ready"])
        self.assertIn("disk0", row)


class ShellScript(CtlTestCase):
    """The shell with its input not a terminal: lines run one by one."""

    def test_lines_answers_and_events(self):
        lines = "\n".join([
            "query-status",
            "# a comment",
            "no-such-command",
            'qom-list path="/machine"',
            '{"execute": "query-version"}',
            "stop",
            "cont",
            "query-name",
        ]) + "\n"
        r = subprocess.run([QMPROXYCTL, "-s", self.proxy.listen, "shell"], input=lines,
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, NO_COLOR="1"))
        out = r.stdout
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"status": "running"', out)
        self.assertIn("error CommandNotFound: The command no-such-command has not been found", out)
        self.assertIn('"name": "peripheral"', out)
        self.assertIn('"major": ', out)
        self.assertRegex(out, r"event \[\d+\.\d{6}\] STOP")
        self.assertRegex(out, r"event \[\d+\.\d{6}\] RESUME")
        # the answers in order: query-status's first, query-name's last
        self.assertLess(out.index('"status"'), out.index("CommandNotFound"))
        self.assertLess(out.index("CommandNotFound"), out.index('"peripheral"'))

    def test_plain_qemu(self):
        r = subprocess.run([QMPROXYCTL, "-s", self.qemu.monitors[1], "shell"],
                           input="query-status\n", capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"status"', r.stdout)


BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


@unittest.skipUnless(os.path.exists(BASH_COMPLETION), "bash-completion is not installed")
class BashCompletion(CtlTestCase):
    """contrib/bash-completion/qmproxyctl, asked as bash asks it."""

    def complete(self, *words):
        script = """
. %s
. %s
PATH=%s:$PATH
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
_qmproxyctl
printf '%%s\\n' "${COMPREPLY[@]}"
""" % (BASH_COMPLETION, os.path.join(ROOT, "contrib", "bash-completion", "qmproxyctl"),
       os.path.dirname(QMPROXYCTL))
        r = subprocess.run(["bash", "-c", script, "qmproxyctl", "qmproxyctl"] + list(words),
                           capture_output=True, text=True, timeout=30)
        return sorted(w for w in r.stdout.split("\n") if w)

    def test_commands_flags_and_names_from_the_monitor(self):
        self.assertEqual(self.complete("snapshot-"),
                         ["snapshot-mirror", "snapshot-mirror-xml", "snapshot-reopen"])
        self.assertIn("--abort-on-interrupt", self.complete("block-copy", "--"))
        self.assertEqual(self.complete("snapshot-reopen", "x", "--to", ""), ["mirror", "source"])
        self.assertEqual(self.complete("-s", self.proxy.listen, "chain", ""), ["disk0"])
        self.c.ok("qmproxy-snapshot-mirror", {"name": "mig", "disks": [{
            "disk": "disk0", "snapshot-file": os.path.join(self.src, "s.qcow2"),
            "mirror-file": os.path.join(self.dest, "s.qcow2")}]})
        self.assertEqual(self.complete("-s", self.proxy.listen, "abort", ""), ["mig"])


if __name__ == "__main__":
    unittest.main()
