"""The traffic log and live taps, against a real QEMU."""
import json
import os
import re
import signal
import socket
import subprocess
import time
import unittest

from qmptest import QMPROXY, Proxy, ProxyTestCase, wait_for

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def read_lines(path):
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


class TrafficLog(ProxyTestCase):

    def setUp(self):
        super().setUp()

    def start_proxy(self, args=None, **kw):
        self.log = os.path.join(self.workdir, "traffic.jsonl")
        self.tap_path = os.path.join(self.workdir, "tap.sock")
        return super().start_proxy(args=["--traffic-log", self.log,
                                         "--tap", "unix:" + self.tap_path], **kw)

    def wait_log(self, pred, what):
        return wait_for(lambda: [l for l in read_lines(self.log) if pred(l)], what=what)

    def test_every_message_both_ways(self):
        c = self.client()
        c.cmd("query-status", id="q1")
        c.send(b'{"execute": "bogus", "id": 2}')
        c.read_reply()
        c.send(b"{'execute': 'query-version', 'id': 'sq'}")
        c.read_reply()
        c.send(b'[1, 2')
        c.send(b']')
        c.read_reply()
        c.send(b'\xff')
        c.read_reply()
        c.ok("stop")
        c.wait_event("STOP")
        self.wait_log(lambda l: l.get("kind") == "event", "the STOP event in the log")
        lines = read_lines(self.log)
        for l in lines:
            self.assertRegex(l["time"], TIME_RE)
            self.assertIn(l["dir"], ("in", "out"))
        cmds = [l for l in lines if l["dir"] == "in" and l.get("client") == 1]
        self.assertEqual(cmds[0]["msg"], {"execute": "qmp_capabilities"})
        self.assertEqual(cmds[1]["msg"], {"execute": "query-status", "id": "q1"})
        # QEMU's single quotes are logged as standard JSON
        self.assertIn({"execute": "query-version", "id": "sq"}, [c_["msg"] for c_ in cmds])
        # JSON that is not a command is logged as it is; input that is not
        # JSON is kept as a string
        self.assertIn([1, 2], [c_["msg"] for c_ in cmds])
        bad = [l for l in cmds if l.get("malformed")]
        self.assertEqual([b["msg"] for b in bad], ["\ufffd"])
        replies = [l for l in lines if l["dir"] == "out" and l.get("client") == 1
                   and l["kind"] == "reply"]
        status = [r for r in replies if r["msg"].get("id") == "q1"][0]
        self.assertEqual(status["from"], "qemu")
        self.assertGreater(status["latency_us"], 0)
        caps = replies[0]
        self.assertEqual(caps["from"], "qmproxy")
        self.assertNotIn("latency_us", caps)
        ev = [l for l in lines if l.get("kind") == "event"][0]
        self.assertNotIn("client", ev)
        self.assertEqual(ev["msg"]["event"], "STOP")
        # the proxy's own conversation with QEMU is there too, as client 0
        own = [l for l in lines if l.get("client") == 0]
        self.assertEqual(own[0]["kind"], "greeting")
        self.assertEqual(own[1]["msg"]["execute"], "qmp_capabilities")

    def test_sighup_reopens_for_rotation(self):
        c = self.client()
        c.cmd("query-status", id="before")
        self.wait_log(lambda l: l["msg"] == {"execute": "query-status", "id": "before"}
                      if "msg" in l else False, "the first command")
        os.rename(self.log, self.log + ".1")
        self.proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: os.path.exists(self.log), what="a new log file")
        c.cmd("query-status", id="after")
        self.wait_log(lambda l: l.get("msg", {}).get("id") == "after" if isinstance(l.get("msg"), dict) else False,
                      "the second command in the new file")
        old = read_lines(self.log + ".1")
        self.assertFalse([l for l in old if isinstance(l.get("msg"), dict)
                          and l["msg"].get("id") == "after"])

    def test_tap_observers(self):
        obs = socket.socket(socket.AF_UNIX)
        obs.connect(self.tap_path)
        obs.settimeout(10)
        self.addCleanup(obs.close)
        # what an observer says is ignored
        obs.sendall(b'{"execute": "quit"}')
        time.sleep(0.2)
        c = self.client()
        c.cmd("query-status", id="tapped")
        buf = b""
        deadline = time.monotonic() + 10
        while b'"tapped"' not in buf or buf.count(b"\n") < 4:
            self.assertLess(time.monotonic(), deadline)
            buf += obs.recv(65536)
        lines = [json.loads(l) for l in buf.splitlines() if l]
        self.assertTrue(any(l.get("msg") == {"execute": "query-status", "id": "tapped"}
                            for l in lines))
        self.assertIn("status", c.ok("query-status"))  # QEMU did not quit

    def test_slow_observer_cut_off(self):
        slow = socket.socket(socket.AF_UNIX)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(self.tap_path)
        self.addCleanup(slow.close)
        time.sleep(0.2)
        c = self.client()
        t0 = time.monotonic()
        for _ in range(40):
            c.ok("query-qmp-schema")  # 186 KB lines the observer never reads
        elapsed = time.monotonic() - t0
        wait_for(lambda: "too slow" in self.proxy.read_stderr(), what="the cut-off")
        self.assertLess(elapsed, 20)
        slow.settimeout(5)
        got = 0
        try:
            while True:
                chunk = slow.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        except socket.timeout:
            self.fail("the slow observer was not disconnected")
        self.assertLess(got, 40 * 186000)


class LostLines(ProxyTestCase):
    """A log that cannot keep up loses lines; clients are not slowed."""

    def start_proxy(self, args=None, **kw):
        return None

    def test_full_log_loses_lines_not_time(self):
        # the traffic log is a pipe nobody reads: the writer blocks
        p = Proxy(self.workdir, self.qemu.monitors[0], args=["--traffic-log", "-"])
        self.addCleanup(p.stop)
        c = p.client()
        self.addCleanup(c.close)
        c.negotiate()
        t0 = time.monotonic()
        for _ in range(60):
            c.ok("query-qmp-schema")
        self.assertLess(time.monotonic() - t0, 30)
        wait_for(lambda: "cannot keep up" in p.read_stderr(), what="the lost-lines warning")
        # now read the pipe: the lines that fit, then a note counting the rest
        import threading
        chunks = []
        reader = threading.Thread(target=lambda: chunks.append(p.proc.stdout.read()))
        reader.start()
        wait_for(lambda: True, timeout=1)
        time.sleep(1)
        c.close()
        self.assertEqual(p.terminate(), 0)
        reader.join(30)
        out = b"".join(chunks).splitlines()
        notes = [json.loads(l) for l in out if b'"note"' in l[:60]]
        self.assertTrue(notes, "no lost-lines note")
        self.assertEqual(notes[0]["note"], "lost")
        self.assertGreater(notes[-1]["total"], 0)


def sanitized():
    """ASan keeps freed memory in quarantine: RSS says nothing there."""
    with open(QMPROXY, "rb") as f:
        return b"__asan_init" in f.read()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class Bursts(ProxyTestCase):
    """The writer is woken per batch, not per line: nothing may be lost or
    left behind by that."""

    def start_proxy(self, args=None, **kw):
        self.log = os.path.join(self.workdir, "traffic.jsonl")
        self.tap_path = os.path.join(self.workdir, "tap.sock")
        return super().start_proxy(args=["--traffic-log", self.log,
                                         "--tap", "unix:" + self.tap_path], **kw)

    def burst(self, c, n, prefix):
        """n commands written at once, then every reply read."""
        c.sock.sendall(b"".join(b'{"execute": "query-version", "id": "%s-%d"}'
                                % (prefix.encode(), i) for i in range(n)))
        for _ in range(n):
            c.read_reply()

    def ids(self, path, prefix):
        found = []
        for l in read_lines(path):
            msg = l.get("msg")
            if isinstance(msg, dict) and str(msg.get("id", "")).startswith(prefix + "-"):
                found.append((l["dir"], msg["id"]))
        return found

    def assertComplete(self, lines, n, prefix):
        """Every command and every reply, each direction in order (how
        they interleave depends on how QEMU's replies come in)."""
        want = ["%s-%d" % (prefix, i) for i in range(n)]
        self.assertEqual([i for d, i in lines if d == "in"], want)
        self.assertEqual([i for d, i in lines if d == "out"], want)
        self.assertEqual(len(lines), 2 * n)

    def test_burst_reaches_the_file_unprompted(self):
        # no exit, no SIGHUP, no more traffic: the writer's own timer
        # must bring every line of the burst to the file, in order
        c = self.client()
        self.burst(c, 3000, "b")
        wait_for(lambda: len(self.ids(self.log, "b")) == 6000, what="the burst's 6000 lines")
        self.assertComplete(self.ids(self.log, "b"), 3000, "b")
        self.assertFalse([l for l in read_lines(self.log) if "note" in l])

    def test_burst_then_sigterm_flushes_everything(self):
        c = self.client()
        self.burst(c, 2000, "t")
        self.proxy.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proxy.wait(), 0)
        self.assertComplete(self.ids(self.log, "t"), 2000, "t")

    def test_burst_then_sighup_lands_in_the_old_file(self):
        # the reopen travels in the ring behind the lines: once the new
        # file exists, everything before the signal is in the old one
        c = self.client()
        self.burst(c, 2000, "h")
        os.rename(self.log, self.log + ".1")
        self.proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: os.path.exists(self.log), what="a new log file")
        self.assertComplete(self.ids(self.log + ".1", "h"), 2000, "h")
        c.cmd("query-status", id="h-after")
        wait_for(lambda: self.ids(self.log, "h"), what="a line in the new file")
        self.assertEqual(self.ids(self.log + ".1", "h-after"), [])

    def test_tap_gets_the_whole_burst(self):
        obs = socket.socket(socket.AF_UNIX)
        obs.connect(self.tap_path)
        obs.settimeout(20)
        self.addCleanup(obs.close)
        time.sleep(0.2)
        c = self.client()
        self.burst(c, 1000, "o")
        buf = b""
        while buf.count(b'"o-999"') < 2:
            chunk = obs.recv(1 << 16)
            self.assertTrue(chunk, "the tap closed")
            buf += chunk
        got = [(l["dir"], l["msg"]["id"]) for l in map(json.loads, buf.splitlines())
               if isinstance(l.get("msg"), dict)
               and str(l["msg"].get("id", "")).startswith("o-")]
        self.assertComplete(got, 1000, "o")

    @unittest.skipIf(sanitized(), "ASan's quarantine keeps freed memory resident")
    def test_memory_given_back_after_a_refused_64mib_message(self):
        warm = self.client()
        for _ in range(3):
            warm.ok("query-qmp-schema")
        obs = socket.socket(socket.AF_UNIX)  # a tap line is formatted too
        obs.connect(self.tap_path)
        self.addCleanup(obs.close)
        time.sleep(0.3)
        before = rss_kib(self.proxy.proc.pid)
        c = self.proxy.client(timeout=120)
        self.addCleanup(c.close)
        c.negotiate()
        c.send(b'{"execute": "query-status", "arguments": {"x": "'
               + b"A" * (64 << 20) + b'"}}')
        reply = json.loads(c.read_line())
        self.assertEqual(reply["error"]["desc"], "JSON token size limit exceeded")
        # the client stays connected and idle; the proxy must not keep
        # what the message needed (was: +64 MiB for good)
        try:
            wait_for(lambda: rss_kib(self.proxy.proc.pid) <= before + 2048,
                     what="RSS back within 2 MiB")
        except AssertionError:
            self.fail("RSS %d KiB before, %d KiB after" % (before, rss_kib(self.proxy.proc.pid)))
        lost = [l for l in read_lines(self.log) if l.get("note") == "lost"]
        self.assertEqual(lost[0]["lines"], 1, "the 64 MiB line does not fit the ring")


if __name__ == "__main__":
    unittest.main(verbosity=2)
