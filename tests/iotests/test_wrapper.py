"""The iotests' QEMU wrapper, on its own, against Debian's QEMU: every way
a QMP monitor can be given (a connected socket, connecting out, a server
socket, stdio) ends up behind a qmproxy; QEMU's exit status and messages
are what QEMU gives; qmproxy ends with QEMU, also when QEMU fails to start.

    QMPROXY_BIN=build/qmproxy python3 tests/iotests/test_wrapper.py
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPER = os.path.join(HERE, "qemu-wrapper")
QMPROXY = os.path.abspath(os.environ.get("QMPROXY_BIN",
                                         os.path.join(HERE, "../../build/qmproxy")))
BASE = ["-nodefaults", "-display", "none", "-accel", "qtest"]


def wait_for(pred, timeout=15.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Wrapper(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="qmproxy-wrapper-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.logdir = os.path.join(self.dir, "log")
        bios = os.path.join(self.dir, "halt.bin")
        with open(bios, "wb") as f:
            img = bytearray(b"\xf4" * 65536)
            img[0xFFF0:0xFFF4] = b"\xfa\xf4\xeb\xfd"
            f.write(img)
        self.env = dict(os.environ, QMPROXY_IOTESTS_MODE="proxied",
                        QMPROXY_IOTESTS_QMPROXY=QMPROXY,
                        QMPROXY_IOTESTS_BIOS=bios,
                        QMPROXY_IOTESTS_LOGDIR=self.logdir,
                        QMPROXY_IOTESTS_TRAFFIC="1",
                        TMPDIR=self.dir)
        self.addCleanup(self.check_logs)

    def start(self, args, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen([WRAPPER] + BASE + args, env=self.env, **kw)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        return p

    def proxies(self):
        """pids of the qmproxy processes this test started"""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0] == QMPROXY.encode() and any(self.dir.encode() in a for a in argv):
                out.append(int(pid))
        return out

    def check_logs(self):
        """after the test: every qmproxy gone, exit 0, no sanitizer report"""
        self.assertTrue(wait_for(lambda: not self.proxies(), 20), "qmproxy outlived QEMU")
        if not os.path.isdir(self.logdir):
            return
        for name in os.listdir(self.logdir):
            path = os.path.join(self.logdir, name)
            self.assertFalse(name.startswith("sanitizer-"), name)
            if name.startswith("status-"):
                with open(path) as f:
                    self.assertEqual(f.read().strip(), "0", name)
            if name == "guard.log":
                with open(path) as f:
                    self.fail("guard: " + f.read())

    def converse(self, rfile, write):
        greeting = json.loads(rfile.readline())
        self.assertEqual(greeting["QMP"]["version"]["qemu"]["major"], 7)
        write(b'{"execute": "qmp_capabilities"}\n')
        self.assertEqual(json.loads(rfile.readline()), {"return": {}})
        write(b'{"execute": "query-commands"}\n')
        names = {c["name"] for c in json.loads(rfile.readline())["return"]}
        self.assertIn("query-status", names)
        self.assertFalse([n for n in names if n.startswith("qmproxy")])  # invisible
        write(b'{"execute": "quit"}\n')
        rest = [json.loads(x) for x in rfile.read().splitlines() if x.strip()]
        self.assertIn({"return": {}}, rest)
        self.assertIn("SHUTDOWN", [m.get("event") for m in rest])

    def traffic_clients(self):
        """how many qmproxy traffic logs show a client's conversation (the
        monitor was proxied)"""
        n = 0
        for name in os.listdir(self.logdir):
            if name.startswith("traffic-"):
                with open(os.path.join(self.logdir, name)) as f:
                    n += '"client": 1' in f.read()
        return n

    def test_connected_socket(self):
        ours, theirs = socket.socketpair()
        p = self.start(["-chardev", "socket,id=mon,fd=%d" % theirs.fileno(),
                        "-mon", "chardev=mon,mode=control"], pass_fds=[theirs.fileno()])
        theirs.close()
        rfile = ours.makefile("rb")
        self.converse(rfile, ours.sendall)
        self.assertEqual(p.wait(20), 0)
        rfile.close()
        ours.close()
        self.assertEqual(self.traffic_clients(), 1)

    def test_connect_out(self):
        path = os.path.join(self.dir, "client.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(1)
        lsock.settimeout(20)
        p = self.start(["-chardev", "socket,id=mon,path=" + path,
                        "-mon", "chardev=mon,mode=control"])
        conn, _ = lsock.accept()
        lsock.close()
        rfile = conn.makefile("rb")
        self.converse(rfile, conn.sendall)
        self.assertEqual(p.wait(20), 0)
        rfile.close()
        conn.close()
        self.traffic_clients()

    def test_server_socket(self):
        path = os.path.join(self.dir, "qmp.sock")
        p = self.start(["-qmp", "unix:%s,server=on,wait=off" % path])
        self.assertTrue(wait_for(lambda: os.path.exists(path)))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(path)
        rfile = s.makefile("rb")
        self.converse(rfile, s.sendall)
        self.assertEqual(p.wait(20), 0)
        rfile.close()
        s.close()
        self.traffic_clients()

    def test_stdio_and_two_monitors(self):
        # -qmp stdio and a second QMP monitor on a server socket
        path = os.path.join(self.dir, "qmp2.sock")
        p = self.start(["-qmp", "stdio", "-chardev", "socket,id=m2,path=%s,server=on,wait=off" % path,
                        "-mon", "chardev=m2,mode=control"], stdin=subprocess.PIPE)

        def write(b):
            p.stdin.write(b)
            p.stdin.flush()
        self.converse(p.stdout, write)
        self.assertEqual(p.wait(20), 0)
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
        self.assertEqual(self.traffic_clients(), 1)   # nobody connected to m2
        self.assertEqual(len([n for n in os.listdir(self.logdir) if n.startswith("cmdline-")]), 2)

    def test_qemu_error_and_status_are_qemus(self):
        # QEMU fails before creating its monitor: its message, its status,
        # under the name it was run as; qmproxy ends at once
        p = self.start(["-qmp", "stdio", "-no-such-option"])
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(out, b"")
        self.assertEqual(err, b"qemu-wrapper: -no-such-option: invalid option\n")

    def test_killed_qemu_takes_qmproxy_along(self):
        ours, theirs = socket.socketpair()
        p = self.start(["-chardev", "socket,id=mon,fd=%d" % theirs.fileno(),
                        "-mon", "chardev=mon,mode=control"], pass_fds=[theirs.fileno()])
        theirs.close()
        self.assertIn(b'"QMP"', ours.makefile("rb").readline())
        p.send_signal(signal.SIGKILL)        # the pid is QEMU's
        self.assertEqual(p.wait(20), -signal.SIGKILL)
        ours.settimeout(20)
        self.assertEqual(ours.recv(100), b"")  # end of file: qmproxy is gone
        ours.close()

    def test_pretty_monitor_served_pretty(self):
        # QEMU's private monitor is compact; the test gets the pretty form
        p = self.start(["-qmp-pretty", "stdio"], stdin=subprocess.PIPE)
        out, err = p.communicate(b'{"execute": "qmp_capabilities"}\n'
                                 b'{"execute": "quit"}\n', timeout=20)
        self.assertEqual(p.returncode, 0, err)
        self.assertTrue(out.startswith(b'{\r\n    "QMP": {\r\n'), out[:200])
        self.assertIn(b'{\r\n    "return": {\r\n    }\r\n}\r\n', out)
        with open(next(os.path.join(self.logdir, n) for n in os.listdir(self.logdir)
                       if n.startswith("cmdline-"))) as f:
            self.assertIn("--pretty default", f.read())

    def test_accel_and_bios(self):
        # direct mode: only -accel qtest is replaced (tcg and the halting
        # BIOS); HMP on stdio is left alone
        env = dict(self.env, QMPROXY_IOTESTS_MODE="direct")
        r = subprocess.run([WRAPPER] + BASE + ["-monitor", "stdio"], env=env,
                           input=b"info status\nquit\n", capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"VM status: running", r.stdout)
        self.assertFalse(os.path.exists(self.logdir))


if __name__ == "__main__":
    unittest.main(verbosity=2)
