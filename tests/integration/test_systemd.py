"""qmproxy as a systemd service, without systemd as PID 1: the
notification protocol against a NOTIFY_SOCKET datagram socket this test
listens on (READY=1 only once QEMU's greeting is read, STATUS= following
the clients, WATCHDOG=1 pings, RELOADING=1/READY=1 around SIGHUP,
STOPPING=1), socket activation through systemd's own
systemd-socket-activate (LISTEN_FDS/LISTEN_FDNAMES, the names becoming the
listener names the policy sees), and journald's <N> priority prefixes.
Every QEMU here is a real one.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import unittest

from qmptest import BUILD, QEMU, QMPClient, QMPROXY, TIMEOUT, wait_for, write_policy

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
# bounds of every wait below: messages, not seconds
MAX_DATAGRAMS = 200


class Notifications:
    """The service manager's end: a datagram socket and what came."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(TIMEOUT)
        self.seen = []

    def close(self):
        self.sock.close()

    def next(self):
        data = self.sock.recv(4096).decode()
        msg = dict(line.split("=", 1) for line in data.split("\n") if line)
        self.seen.append(msg)
        return msg

    def until(self, pred, what):
        for _ in range(MAX_DATAGRAMS):
            msg = self.next()
            if pred(msg):
                return msg
        raise AssertionError("no %s among %r" % (what, self.seen))

    def pending(self):
        """What has arrived and not been read, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(TIMEOUT)
        return out


class ServiceTestCase(unittest.TestCase):
    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="qmptest-svc-",
                                        dir=os.environ.get("QMPTEST_TMP"))
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.notify_path = os.path.join(self.workdir, "notify")
        self.notes = Notifications(self.notify_path)
        self.addCleanup(self.notes.close)
        self.listen = os.path.join(self.workdir, "proxy.sock")
        self.stderr_path = os.path.join(self.workdir, "proxy.stderr")
        # after every proxy has stopped (cleanups run last first)
        self.addCleanup(self.check_sanitizers)

    def check_sanitizers(self):
        if not os.path.exists(self.stderr_path):
            return
        text = self.stderr()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", ": bug: "):
            if marker in text:
                raise AssertionError("qmproxy sanitizer report:\n" + text[-6000:])

    def start_qemu(self):
        q = QEMU(self.workdir, monitors=1)
        self.addCleanup(q.stop)
        return q

    def start_proxy(self, upstream, args=(), env=None, prefix=()):
        e = dict(os.environ)
        e["NOTIFY_SOCKET"] = self.notify_path
        e.update(env or {})
        cmd = list(prefix) + [QMPROXY, "--upstream", "unix:" + upstream, "-v"]
        cmd += list(args)
        err = open(self.stderr_path, "ab")
        self.addCleanup(err.close)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, env=e)

        def stop():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.addCleanup(stop)
        return p

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()


class Relay:
    """QEMU's monitor as the proxy sees it, held back until released: the
    proxy connects, and QEMU's greeting reaches it only on release()."""

    def __init__(self, path, qemu_monitor):
        self.qemu_monitor = qemu_monitor
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.server.settimeout(TIMEOUT)
        self.threads = []
        self.conn = None
        self.up = None

    def accept(self):
        self.conn, _ = self.server.accept()

    def release(self):
        up = self.up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(self.qemu_monitor)
        for a, b in ((self.conn, up), (up, self.conn)):
            t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.server.close()
        for s in (self.conn, self.up):
            if s:
                s.close()
        for t in self.threads:
            t.join(TIMEOUT)


class Notify(ServiceTestCase):
    def test_ready_only_after_qemus_greeting(self):
        qemu = self.start_qemu()
        relay = Relay(os.path.join(self.workdir, "relay.sock"), qemu.monitors[0])
        self.addCleanup(relay.close)
        proxy = self.start_proxy(relay.server.getsockname(),
                                 ["--listen", "unix:" + self.listen])
        first = self.notes.next()
        self.assertTrue(first["STATUS"].startswith("waiting for QEMU"), first)
        self.assertNotIn("READY", first)
        relay.accept()
        wait_for(lambda: "connected to QEMU" in self.stderr(),
                 what="the proxy's connection to QEMU")
        # connected, no greeting yet: nothing said since
        self.assertEqual(self.notes.pending(), [])
        relay.release()
        ready = self.notes.until(lambda m: "READY" in m, "READY=1")
        self.assertEqual(ready["READY"], "1")
        self.assertIn("0 clients", ready["STATUS"])
        # and the proxy does serve then
        c = QMPClient(self.listen)
        self.addCleanup(c.close)
        self.assertIn(b"QMP", c.greeting)
        self.assertIsNone(proxy.poll())

    def test_status_follows_clients(self):
        qemu = self.start_qemu()
        self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen])
        self.notes.until(lambda m: "READY" in m, "READY=1")
        c = QMPClient(self.listen)
        st = self.notes.until(lambda m: "STATUS" in m, "STATUS=")
        self.assertIn("1 client,", st["STATUS"])
        d = QMPClient(self.listen)
        st = self.notes.until(lambda m: "STATUS" in m, "STATUS=")
        self.assertIn("2 clients", st["STATUS"])
        c.negotiate()
        c.close()
        d.close()
        self.notes.until(lambda m: "0 clients" in m.get("STATUS", ""),
                         "STATUS= with 0 clients")

    def test_watchdog_pings(self):
        qemu = self.start_qemu()
        # WATCHDOG_PID names another process: the pings are not ours
        other = self.start_proxy(qemu.monitors[0],
                                 ["--listen", "unix:" + self.listen],
                                 env={"WATCHDOG_USEC": "200000",
                                      "WATCHDOG_PID": "1"})
        self.notes.until(lambda m: "READY" in m, "READY=1")
        other.send_signal(signal.SIGTERM)
        self.assertEqual(other.wait(15), 0)
        self.notes.until(lambda m: "STOPPING" in m, "STOPPING=1")
        self.assertNotIn("WATCHDOG", str(self.notes.seen))
        self.assertNotIn("the service manager's watchdog", self.stderr())
        # WATCHDOG_PID unset: ours, a ping every 100 ms
        self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen],
                         env={"WATCHDOG_USEC": "200000"})
        pings = 0
        for _ in range(MAX_DATAGRAMS):
            if self.notes.next().get("WATCHDOG") == "1":
                pings += 1
                if pings == 3:
                    break
        self.assertEqual(pings, 3, self.notes.seen)
        self.assertIn("a ping every 100 ms", self.stderr())

    def test_reload_and_stop(self):
        qemu = self.start_qemu()
        policy = os.path.join(self.workdir, "policy.xml")
        write_policy(policy, '<listeners default-role="full"/>')
        proxy = self.start_proxy(qemu.monitors[0],
                                 ["--listen", "unix:" + self.listen,
                                  "--policy", policy])
        self.notes.until(lambda m: "READY" in m, "READY=1")
        proxy.send_signal(signal.SIGHUP)
        reloading = self.notes.until(lambda m: "RELOADING" in m, "RELOADING=1")
        self.assertEqual(reloading["RELOADING"], "1")
        self.assertGreater(int(reloading["MONOTONIC_USEC"]), 0)
        done = self.notes.until(lambda m: "READY" in m, "READY=1 after reload")
        self.assertIn("policy reloaded", done["STATUS"])
        # a policy that does not validate: still READY, saying so
        with open(policy, "w") as f:
            f.write("<policy><nonsense/></policy>\n")
        proxy.send_signal(signal.SIGHUP)
        self.notes.until(lambda m: "RELOADING" in m, "RELOADING=1")
        done = self.notes.until(lambda m: "READY" in m, "READY=1 after reload")
        self.assertIn("refused", done["STATUS"])
        proxy.send_signal(signal.SIGTERM)
        self.notes.until(lambda m: "STOPPING" in m, "STOPPING=1")
        self.assertEqual(proxy.wait(15), 0)

    def test_stopping_when_qemu_ends(self):
        qemu = self.start_qemu()
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen])
        self.notes.until(lambda m: "READY" in m, "READY=1")
        c = QMPClient(self.listen)
        self.addCleanup(c.close)
        c.negotiate()
        c.send({"execute": "quit"})
        self.notes.until(lambda m: "STOPPING" in m, "STOPPING=1")
        self.assertEqual(proxy.wait(15), 0)

    def test_a_manager_that_does_not_read(self):
        # pings every millisecond into a socket nobody reads: the proxy's
        # sends fail with EAGAIN, yet it serves on, and once the manager
        # reads again READY=1 and the latest status still arrive
        qemu = self.start_qemu()
        self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen],
                         env={"WATCHDOG_USEC": "2000"})
        wait_for(lambda: "is full: notifications wait" in self.stderr(),
                 what="the notification socket to fill")
        c = QMPClient(self.listen)
        self.addCleanup(c.close)
        c.negotiate()
        self.assertIn("status", c.ok("query-status"))
        self.notes.until(lambda m: "READY" in m, "READY=1")
        self.notes.until(lambda m: "1 client," in m.get("STATUS", ""),
                         "STATUS= with the client")
        wait_for(lambda: "takes notifications again" in self.stderr(),
                 what="the backlog to drain")
        self.assertNotIn("dropping", self.stderr())

    def test_abstract_notify_socket(self):
        name = "qmproxy-test-%d" % os.getpid()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind("\0" + name)
        s.settimeout(TIMEOUT)
        qemu = self.start_qemu()
        self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen],
                         env={"NOTIFY_SOCKET": "@" + name})
        for _ in range(MAX_DATAGRAMS):
            if "READY=1" in s.recv(4096).decode().split("\n"):
                break
        else:
            self.fail("no READY=1 on the abstract socket")

    def test_unusable_notify_socket(self):
        qemu = self.start_qemu()
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen],
                                 env={"NOTIFY_SOCKET": "relative/path"})
        self.assertEqual(proxy.wait(15), 1)
        self.assertIn("NOTIFY_SOCKET='relative/path'", self.stderr())


class Journal(ServiceTestCase):
    def test_priority_prefixes(self):
        qemu = self.start_qemu()
        proxy = self.start_proxy(qemu.monitors[0],
                                 ["--listen", "unix:" + self.listen,
                                  "--log-priorities"])
        self.notes.until(lambda m: "READY" in m, "READY=1")
        proxy.send_signal(signal.SIGTERM)
        self.assertEqual(proxy.wait(15), 0)
        lines = self.stderr().splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<[3467]>(error|warning|info|debug): ")
        self.assertTrue(any(l.startswith("<6>info: connected to QEMU") for l in lines), lines)

    def test_journal_stream_detected(self):
        # JOURNAL_STREAM names standard error's device and inode, as
        # systemd sets it when StandardError=journal
        qemu = self.start_qemu()
        open(self.stderr_path, "ab").close()
        st = os.stat(self.stderr_path)
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen],
                                 env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        self.notes.until(lambda m: "READY" in m, "READY=1")
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(15)
        self.assertTrue(self.stderr().startswith("<6>info: "), self.stderr()[:300])
        # another file's: time-stamped lines as usual
        os.unlink(self.stderr_path)
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen],
                                 env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        self.notes.until(lambda m: "READY" in m, "READY=1")
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(15)
        self.assertRegex(self.stderr(), r"^\d{4}-\d\d-\d\dT.* qmproxy info: ")

    def test_journal_gets_startup_errors_as_errors(self):
        # a start that fails on its command line, before any logging is
        # set up, still says so at the journal's error priority
        qemu = self.start_qemu()
        open(self.stderr_path, "ab").close()
        st = os.stat(self.stderr_path)
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen,
                                                    "--max-message", "lots"],
                                 env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        self.assertEqual(proxy.wait(15), 2)
        self.assertTrue(self.stderr().startswith("<3>qmproxy: --max-message wants"),
                        self.stderr()[:300])
        # outside the journal, as a command-line tool says it
        os.unlink(self.stderr_path)
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "unix:" + self.listen,
                                                    "--max-message", "lots"])
        self.assertEqual(proxy.wait(15), 2)
        self.assertTrue(self.stderr().startswith("qmproxy: --max-message wants"),
                        self.stderr()[:300])


@unittest.skipUnless(SOCKET_ACTIVATE, "systemd-socket-activate is not installed")
class SocketActivation(ServiceTestCase):
    def test_two_named_sockets_and_the_policy(self):
        qemu = self.start_qemu()
        mgmt = os.path.join(self.workdir, "mgmt.sock")
        ro = os.path.join(self.workdir, "ro.sock")
        policy = os.path.join(self.workdir, "policy.xml")
        write_policy(policy, '<listeners default-role="monitor">'
                     '<listener name="mgmt" role="full"/>'
                     '<listener name="ro" role="monitor"/></listeners>')
        # systemd's tool binds both, and execs qmproxy (same pid, so
        # LISTEN_PID is qmproxy's) at the first connection
        self.start_proxy(qemu.monitors[0],
                         ["--listen", "systemd", "--policy", policy],
                         prefix=[SOCKET_ACTIVATE, "-l", mgmt, "-l", ro,
                                 "--fdname=mgmt:ro",
                                 "-E", "NOTIFY_SOCKET=" + self.notify_path])
        wait_for(lambda: os.path.exists(mgmt) and os.path.exists(ro),
                 what="systemd-socket-activate's sockets")
        a = QMPClient(mgmt)   # this connection starts qmproxy
        self.addCleanup(a.close)
        self.assertIn(b"QMP", a.greeting)
        self.notes.until(lambda m: "READY" in m, "READY=1")
        a.negotiate()
        self.assertEqual(a.cmd("stop"), {"return": {}})
        b = QMPClient(ro)
        self.addCleanup(b.close)
        b.negotiate()
        refused = b.cmd("cont")
        self.assertEqual(refused["error"]["class"], "GenericError", refused)
        self.assertIn("ro", refused["error"]["desc"])
        self.assertIn("status", b.ok("query-status"))

    def test_no_sockets_passed(self):
        qemu = self.start_qemu()
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "systemd"])
        self.assertEqual(proxy.wait(15), 1)
        self.assertIn("--listen systemd: no sockets were passed", self.stderr())

    def test_sockets_of_another_process(self):
        # LISTEN_PID names someone else: a parent's sockets, not ours
        qemu = self.start_qemu()
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "systemd"],
                                 env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
        self.assertEqual(proxy.wait(15), 1)
        self.assertIn("the passed sockets are not this process's (LISTEN_PID=1",
                      self.stderr())

    def test_a_name_the_policy_cannot_use(self):
        qemu = self.start_qemu()
        sock = os.path.join(self.workdir, "s.sock")
        proxy = self.start_proxy(qemu.monitors[0], ["--listen", "systemd"],
                                 prefix=[SOCKET_ACTIVATE, "-l", sock,
                                         "--fdname=qmproxy@vm1.socket"])
        wait_for(lambda: os.path.exists(sock), what="the socket")
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(c.close)
        c.connect(sock)
        self.assertEqual(proxy.wait(15), 1)
        self.assertIn("named 'qmproxy@vm1.socket'", self.stderr())
        self.assertIn("FileDescriptorName=", self.stderr())


def unit_file(name):
    """A unit as built (or installed: QMPROXY_UNIT_DIR), as {key: [values]}."""
    unit_dir = os.environ.get("QMPROXY_UNIT_DIR", os.path.join(BUILD, "systemd"))
    out = {}
    with open(os.path.join(unit_dir, name)) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


def expand_exec(line, env):
    """ExecStart='s variables as systemd expands them: ${VAR} is one
    word, $VAR alone as a word splits at whitespace (systemd.service(5))."""
    words = []
    for word in line.split():
        if word.startswith("${") and word.endswith("}"):
            words.append(env.get(word[2:-1], ""))
        elif word.startswith("$") and not word.startswith("$$"):
            words += env.get(word[1:], "").split()
        else:
            words.append(word)
    return words


@unittest.skipUnless(SOCKET_ACTIVATE, "systemd-socket-activate is not installed")
class UnitCommandLine(ServiceTestCase):
    """The command line of qmproxy@vm1.service with an instance
    configuration in the form of the shipped example, run the way
    qmproxy@vm1.socket runs it (its ListenStream moved into the test's
    folder, its FileDescriptorName kept)."""

    def test_the_units_command_line_serves(self):
        qemu = self.start_qemu()
        service = unit_file("qmproxy@.service")
        sock = unit_file("qmproxy@.socket")
        self.assertEqual(service["Type"], ["notify"])
        self.assertEqual(service["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        listen = os.path.join(self.workdir, os.path.basename(
            sock["ListenStream"][0].replace("%i", "vm1")))
        conf = {"QMPROXY_UPSTREAM": "unix:" + qemu.monitors[0],
                "QMPROXY_LISTEN": "systemd",
                "QMPROXY_OPTIONS": "--reconnect --state %s/vm1.state "
                                   "--traffic-log %s/vm1.jsonl"
                                   % (self.workdir, self.workdir)}
        argv = expand_exec(service["ExecStart"][0].replace("%i", "vm1"), conf)
        self.assertTrue(argv[0].endswith("/qmproxy"), argv)
        argv[0] = QMPROXY
        err = open(self.stderr_path, "ab")
        self.addCleanup(err.close)
        p = subprocess.Popen(
            [SOCKET_ACTIVATE, "-l", listen,
             "--fdname=" + sock["FileDescriptorName"][0],
             "-E", "NOTIFY_SOCKET=" + self.notify_path] + argv,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err)
        self.addCleanup(lambda: (p.poll() is None and p.terminate(), p.wait(15)))
        wait_for(lambda: os.path.exists(listen), what="the socket")
        c = QMPClient(listen)
        self.addCleanup(c.close)
        c.negotiate()
        self.assertIn("status", c.ok("query-status"))
        self.notes.until(lambda m: "READY" in m, "READY=1")
        p.send_signal(signal.SIGHUP)
        self.notes.until(lambda m: "RELOADING" in m, "RELOADING=1")
        self.notes.until(lambda m: "READY" in m, "READY=1 after reload")
        p.terminate()
        self.assertEqual(p.wait(15), 0)
        with open(os.path.join(self.workdir, "vm1.jsonl")) as f:
            self.assertIn("query-status", f.read())


if __name__ == "__main__":
    unittest.main()
