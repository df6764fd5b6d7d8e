"""qmproxy core against a real QEMU 7.2: transparency, routing, events,
fd passing, quit, backpressure, inherited listening sockets."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from qmptest import (QEMU, QMPClient, Proxy, ProxyTestCase, for_each_shape,
                     wait_for, TIMEOUT)

# A conversation of QEMU commands whose replies do not change from one run
# to the next: errors, ids of every JSON type, no id, the schema, HMP.
CONVERSATION = [
    b'{"execute": "query-version"}',
    b'{"execute": "query-status", "id": "s1"}',
    b'{"execute": "query-status", "id": 17}',
    b'{"execute": "query-status", "id": -4}',
    b'{"execute": "query-status", "id": 0}',
    b'{"execute": "query-status", "id": 18446744073709551615}',
    b'{"execute": "query-status", "id": 123456789012345678901234567890}',
    b'{"execute": "query-status", "id": 1.5}',
    b'{"execute": "query-status", "id": 1e3}',
    b'{"execute": "query-status", "id": -0.0}',
    b'{"execute": "query-status", "id": true}',
    b'{"execute": "query-status", "id": false}',
    b'{"execute": "query-status", "id": null}',
    b'{"execute": "query-status", "id": {"b": [1, {"c": null}], "a": "x", "zz": {}}}',
    b'{"execute": "query-status", "id": [1, "two", 3.0, [], {}]}',
    b'{"execute": "query-status", "id": "\\u00e9t\\u00e9 \xc3\xa9 \\ud83d\\ude00 \\/ \\n"}',
    b"{'execute': 'query-status', 'id': 'single \\' quoted'}",
    b'{"id": "id-first", "execute": "query-status"}',
    b'{"execute": "no-such-command", "id": "x"}',
    b'{"execute": "no-such-command"}',
    b'{"execute": "query-block"}',
    b'{"execute": "query-named-block-nodes", "arguments": {"flat": true}}',
    b'{"execute": "query-qmp-schema", "id": "schema"}',
    b'{"execute": "human-monitor-command", "arguments": {"command-line": "info version"}}',
    b'{"execute": "human-monitor-command", "arguments": {"command-line": "info block"}, "id": 5}',
    b'{"execute": "human-monitor-command", "arguments": {"command-line": "bogus-hmp"}}',
    b'{"execute": "human-monitor-command", "arguments": {}}',
    b'{"execute": "query-kvm"}',
    b'{"execute": "query-name"}',
    b'{"execute": "query-uuid"}',
    b'{"execute": "query-block-jobs"}',
    b'{"execute": "query-jobs"}',
    b'{"execute": "query-fdsets"}',
    b'{"execute": "query-iothreads"}',
    b'{"execute": "query-target"}',
    b'{"execute": "query-migrate"}',
    b'{"execute": "query-memdev"}',
    b'{"execute": "qom-list", "arguments": {"path": "/"}}',
    b'{"execute": "block-job-cancel", "arguments": {"device": "nodev"}}',
    b'{"execute": "block-job-complete", "arguments": {"device": "disk0"}, "id": [0]}',
    b'{"execute": "drive-mirror", "arguments": {"device": "disk0", "target": "/nonexistent/x.qcow2", "sync": "top"}}',
    b'{"execute": "drive-mirror", "arguments": {"device": "disk0", "target": "/x", "sync": "bogus"}}',
    b'{"execute": "drive-mirror", "arguments": {"device": "disk0", "target": "/x", "sync": "top", "speed": "fast"}}',
    b'{"execute": "drive-mirror", "arguments": {"device": "disk0"}}',
    b'{"execute": "query-status", "arguments": {"bogus": 1}}',
    b'{"execute":"query-version","id":"compact"}',
    b'  {\n  "execute" :\t"query-version" ,\r\n "id" : "spaced"\n}\n',
    b'{"execute": "query-version", "id": "last"}',
]

# Input QEMU refuses; each is followed by a sentinel command so every
# reply it causes (some cause several) is collected.
MALFORMED = [
    b'[1]', b'1 ', b'"str"', b'true ', b'null ', b'{}', b'[]',
    b'{"execute": 1}', b'{"arguments": {}}', b'{"execute": "query-status", "bogus": 1}',
    b'{"execute": "query-status", "bogus": 1, "id": "with-id"}',
    b'{"execute": "query-status", "arguments": 1}',
    b'{"execute": "query-status", "arguments": [], "id": 3}',
    b'{"execute": "query-status", "execute": "query-version"}',
    b'{"execute": "query-status"}}', b']', b'}', b':', b',',
    b'{"execute": /x}', b'{"a" 1}', b'{"a":1 "b":2}', b'[1 2]', b'{1: 2}', b'{true: 2}',
    b'{{"a": 1}: 2}', b'{"execute": "query-status",}', b'[1,]', b'{"execute": tru}',
    b'{"execute": "q\\x"}', b'{"execute": "\\ud800"}', b'{"execute": "\\u12G4"}',
    b'{"execute": "\\uDBFF\\uDFFF"}', b'{"execute": "\\ud83d\\u0041"}',
    b'{"execute": "\xff"}', b'\xfe', b'\xff{"execute": "query-status"}',
    b'{"execute": "a\x01b"}', b'{"execute": "\xc3"}', b'{"execute": "\xc0\xaf"}',
    b'{"execute": "\xed\xa0\x80"}', b'{"execute": "\xef\xbf\xbe"}',
    b'{"exec-oob": "query-status"}', b'{"exec-oob": "query-status", "id": 9}',
    b'{"execute": "query-status", "exec-oob": "x"}',
    b'{"execute": "query-status", "id": 1, "control": 1}',
    b'01 ', b'- ', b'1. ', b'1e ', b'1e+ ', b'-01 ', b'{"execute": "x", "id": 1.5e}',
    b'{"execute": "query-status", "arguments": {"x": -0}}',
    b'{"execute": "query-status", "i\\u0064": "escaped-key"}',
    b'{"execute": [}]',
    b'{"execute": "query-status"  "id": 2}',
    b'{"\xc0\x80": 1}',
    b'{"execute": "query-status", "id": "\\u0000"}',
]


def exchange(client, inputs, sentinel=True):
    """Send each input; collect every line it causes (up to a sentinel)."""
    out = []
    for i, data in enumerate(inputs):
        client.send(data)
        if sentinel:
            tag = "sentinel-%d" % i
            client.send(json.dumps({"execute": "query-version", "id": tag}))
            lines = []
            while True:
                line = client.read_line()
                if tag.encode() in line:
                    break
                lines.append(line)
            out.append((data, lines))
        else:
            out.append((data, [client.read_reply_raw()]))
    return out


@for_each_shape
class Transparency(ProxyTestCase):

    def test_greeting_byte_identical(self):
        d = self.direct(negotiate=False)
        p = self.client(negotiate=False)
        self.assertEqual(d.greeting, p.greeting)
        self.assertIn(b'"capabilities": ["oob"]', p.greeting)

    def test_conversation_byte_identical(self):
        self.assertGreaterEqual(len(CONVERSATION), 30)
        d = self.direct()
        p = self.client()
        direct = exchange(d, CONVERSATION, sentinel=False)
        proxied = exchange(p, CONVERSATION, sentinel=False)
        for (cmd, a), (_, b) in zip(direct, proxied):
            self.assertEqual(a, b, "reply to %r differs" % cmd)
        schema = [r for c, r in proxied if b'"schema"' in c][0][0]
        self.assertGreater(len(schema), 100000)

    def test_malformed_input_gets_qemus_errors(self):
        d = self.direct()
        p = self.client()
        direct = exchange(d, MALFORMED)
        proxied = exchange(p, MALFORMED)
        for (cmd, a), (_, b) in zip(direct, proxied):
            self.assertEqual(a, b, "replies to %r differ" % cmd)
        # and nothing of it reached QEMU: the proxy's upstream saw only
        # the sentinels (checked through the traffic of a fresh client)
        self.assertEqual(p.cmd("query-status")["return"]["status"],
                         d.cmd("query-status")["return"]["status"])

    def test_before_and_during_negotiation(self):
        inputs = [
            b'{"execute": "query-status", "id": 1}',
            b'{"execute": "query-status"',
            b'}',
            b'[2]',
            b'{"exec-oob": "qmp_capabilities", "id": 2}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": ["bogus"]}}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": [1]}}',
            b'{"execute": "qmp_capabilities", "arguments": {"foo": 1}}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": null}}',
            b'{"execute": "qmp_capabilities", "id": {"b": 1, "a": 2}}',
            b'{"execute": "qmp_capabilities", "id": "again"}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}',
            b'{"exec-oob": "qmp_capabilities", "id": "x"}',
            b'{"execute": "qmp_capabilities", "arguments": {"bogus": 1}}',
        ]
        d = self.direct(negotiate=False)
        p = self.client(negotiate=False)
        direct = [(i, [d.send(i) or d.read_line()]) if not i.endswith(b'"query-status"') else (i, [d.send(i)])
                  for i in inputs]
        proxied = [(i, [p.send(i) or p.read_line()]) if not i.endswith(b'"query-status"') else (i, [p.send(i)])
                   for i in inputs]
        for (cmd, a), (_, b) in zip(direct, proxied):
            self.assertEqual(a, b, "replies to %r differ" % cmd)

    def test_input_split_at_every_byte(self):
        p = self.client()
        msg = b'{"execute": "query-status", "id": "split"}'
        expected = self.direct().cmd("query-status", id="split")
        for cut in range(1, len(msg)):
            p.send(msg[:cut])
            time.sleep(0.001)
            p.send(msg[cut:])
            self.assertEqual(p.read_reply(), expected)
        # many texts in one write, no delimiters
        p.send(msg * 50)
        for _ in range(50):
            self.assertEqual(p.read_reply(), expected)

    def test_exec_oob_ids_restored(self):
        d = self.direct(oob=True)
        p = self.client(oob=True)
        for data in [b'{"exec-oob": "migrate-pause", "id": "oob-1"}',
                     b'{"exec-oob": "migrate-pause", "id": {"b": 2, "a": [1.0]}}',
                     b'{"exec-oob": "migrate-pause", "id": 7}',
                     b'{"id": "first", "exec-oob": "migrate-pause"}',
                     b'{"exec-oob": "migrate-pause"}',
                     b'{"exec-oob": "query-status", "id": "not-oob-capable"}',
                     b'{"exec-oob": "no-such", "id": null}']:
            d.send(data)
            p.send(data)
            self.assertEqual(d.read_reply_raw(), p.read_reply_raw(), data)
        # the proxy's own ids never show
        self.assertNotIn(b"qmproxy", p.buf)

    def test_oob_reply_overtakes_nothing_it_should_not(self):
        p = self.client(oob=True)
        # in-band and oob mixed, same ids: every reply keeps its own id
        for i in range(20):
            p.send({"execute": "query-status", "id": "same"})
            p.send({"exec-oob": "migrate-pause", "id": "same"})
        replies = [p.read_reply() for _ in range(40)]
        self.assertEqual(sum(1 for r in replies if "return" in r), 20)
        self.assertEqual(sum(1 for r in replies if "error" in r), 20)
        self.assertTrue(all(r["id"] == "same" for r in replies))


@for_each_shape
class Clients(ProxyTestCase):

    def _interleave(self, n):
        clients = [self.client() for _ in range(n)]
        rounds = 30
        errors = []

        def run(i, c):
            try:
                for k in range(rounds):
                    # identical ids across clients; each expects its own
                    c.send({"execute": "human-monitor-command", "id": "same",
                            "arguments": {"command-line": "p/d %d" % (i * 1000 + k)}})
                    c.send({"execute": "query-status"})
                    r1, r2 = c.read_reply(), c.read_reply()
                    assert r1 == {"return": "%d\r\n" % (i * 1000 + k), "id": "same"}, r1
                    assert "status" in r2["return"] and "id" not in r2, r2
            except Exception as e:  # noqa
                errors.append((i, e))

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])

    def test_two_clients_same_ids(self):
        self._interleave(2)

    def test_sixteen_clients_same_ids(self):
        self._interleave(16)

    def test_pipelined_replies_stay_in_order(self):
        c = self.client()
        n = 500
        c.send(b"".join(json.dumps({"execute": "human-monitor-command", "id": k,
                                    "arguments": {"command-line": "p/d %d" % k}}).encode()
                        for k in range(n)))
        for k in range(n):
            self.assertEqual(c.read_reply(), {"return": "%d\r\n" % k, "id": k})

    def test_events_only_to_negotiated_clients(self):
        a = self.client()
        b = self.client()
        silent = self.client(negotiate=False)
        if self.shape == "q35":
            a.ok("cont")
            a.wait_event("RESUME")
            b.wait_event("RESUME")
        a.ok("stop")
        a.wait_event("STOP")
        b.wait_event("STOP")
        b.ok("cont")
        a.wait_event("RESUME")
        b.wait_event("RESUME")
        # the unnegotiated client got nothing but its greeting
        self.assertFalse(silent.at_eof(timeout=0.5))
        self.assertEqual(silent.buf, b"")
        silent.negotiate()
        a.ok("stop")
        silent.wait_event("STOP")

    def test_add_fd_with_scm_rights(self):
        c = self.client()
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        c.send(json.dumps({"execute": "add-fd", "arguments": {"opaque": "from-test"}}), fds=[w])
        reply = c.read_reply()
        self.assertIn("return", reply, reply)
        fdset = reply["return"]["fdset-id"]
        sets = c.ok("query-fdsets")
        found = [s for s in sets if s["fdset-id"] == fdset]
        self.assertEqual(len(found), 1)
        self.assertEqual(found[0]["fds"][0]["opaque"], "from-test")
        # the traffic log says the descriptor came with it
        # getfd too (what virsh save uses), and closefd
        c.send(json.dumps({"execute": "getfd", "arguments": {"fdname": "fromtest"}}), fds=[r])
        self.assertEqual(c.read_reply(), {"return": {}})
        self.assertEqual(c.cmd("closefd", {"fdname": "fromtest"}), {"return": {}})
        # without an fd, QEMU's own error comes back
        self.assertEqual(c.cmd("getfd", {"fdname": "nofd"})["error"]["desc"],
                         "No file descriptor supplied via SCM_RIGHTS")

    def test_quit(self):
        a = self.client()
        b = self.client()
        a.send({"execute": "quit"})
        ev = a.read_message()
        self.assertEqual(ev["event"], "SHUTDOWN")
        self.assertEqual(a.read_message(), {"return": {}})
        self.assertTrue(a.at_eof())
        self.assertEqual(b.read_message()["event"], "SHUTDOWN")
        self.assertTrue(b.at_eof())
        self.assertEqual(self.proxy.wait(15), 0)
        self.assertFalse(os.path.exists(self.proxy.listen))

    def test_sigterm_exits_cleanly(self):
        c = self.client()
        self.assertEqual(self.proxy.terminate(), 0)
        self.assertTrue(c.at_eof())
        self.assertFalse(os.path.exists(self.proxy.listen))
        # QEMU is untouched and still answers on its other monitor
        self.assertIn("status", self.direct().ok("query-status"))


class Robustness(ProxyTestCase):
    """Cases a code review found; each once crashed or hung qmproxy."""

    def test_qemu_dies_with_a_command_in_flight(self):
        c = self.client()
        self.qemu.proc.send_signal(signal.SIGSTOP)
        c.send({"execute": "query-status", "id": "never"})
        time.sleep(0.2)
        self.qemu.proc.kill()
        self.assertTrue(c.at_eof(timeout=10))
        self.assertEqual(self.proxy.wait(15), 0)

    def test_event_reaches_everyone_when_one_client_is_gone(self):
        gone, b, c = self.client(), self.client(), self.client()
        gone.sock.shutdown(socket.SHUT_RD)  # writes to it now fail
        b.ok("stop")
        b.wait_event("STOP")
        c.wait_event("STOP")
        b.ok("cont")
        c.wait_event("RESUME")

    def test_exec_oob_overtakes_a_blocked_command(self):
        """An OOB command is answered while an in-band one holds QEMU's
        main loop (opening a FIFO blocks it until someone writes)."""
        fifo = os.path.join(self.workdir, "fifo")
        os.mkfifo(fifo)
        c = self.client(oob=True)
        # blkdebug reads its rules with a blocking open of the file
        c.send({"execute": "blockdev-add", "id": "blocked", "arguments": {
            "driver": "blkdebug", "node-name": "f", "config": fifo,
            "image": {"driver": "null-co"}}})
        time.sleep(0.3)
        c.send({"exec-oob": "migrate-pause", "id": "oob"})
        first = c.read_reply()
        self.assertEqual(first["id"], "oob", first)
        fd = os.open(fifo, os.O_WRONLY)  # let QEMU's open() return
        os.close(fd)
        second = c.read_reply()
        self.assertEqual(second["id"], "blocked", second)


class Backpressure(ProxyTestCase):

    def test_flooding_client_bounded_rss(self):
        polite = self.client()
        self.assertIn("status", polite.ok("query-status"))
        flood = self.client()
        cmd = b'{"execute": "query-qmp-schema"}' * 64
        stop = threading.Event()
        sent = [0]

        def flooder():
            flood.sock.settimeout(0.5)
            while not stop.is_set():
                try:
                    flood.sock.sendall(cmd)
                    sent[0] += len(cmd)
                except (socket.timeout, BlockingIOError):
                    continue
                except OSError:
                    return

        t = threading.Thread(target=flooder)
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(stop.set)
        time.sleep(1.0)
        rss = []
        latencies = []
        for _ in range(20):
            t0 = time.monotonic()
            self.assertIn("status", polite.ok("query-status"))
            latencies.append(time.monotonic() - t0)
            rss.append(self.proxy.rss_kib("VmRSS"))
            time.sleep(0.1)
        stop.set()
        t.join()
        peak = self.proxy.rss_kib("VmHWM")
        print("\nflood: %d KiB offered, proxy RSS %d..%d KiB, peak %d KiB, "
              "polite client max latency %.1f ms" % (
                  sent[0] >> 10, min(rss), max(rss), peak, max(latencies) * 1000))
        # the flooder's replies are 186 KB each and it reads none: without
        # backpressure the proxy would hold gigabytes
        self.assertLess(peak, 48 * 1024)
        self.assertLess(max(latencies), 5.0)


class ListenFd(ProxyTestCase):

    def setUp(self):
        super().setUp()

    def start_proxy(self, args=None, **kw):
        return None  # started by the test itself

    def test_inherited_listening_socket(self):
        path = os.path.join(self.workdir, "inherited.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(8)
        fd = s.fileno()
        p = Proxy(self.workdir, self.qemu.monitors[0], listen=False,
                  args=["--listen", "fd:%d" % fd], pass_fds=[fd])
        self.addCleanup(p.stop)
        s.close()  # the proxy holds its own copy
        c = QMPClient(path)
        self.addCleanup(c.close)
        c.negotiate()
        self.assertIn("status", c.ok("query-status"))
        # a second connection on the same inherited socket (libvirtd restart)
        c2 = QMPClient(path)
        self.addCleanup(c2.close)
        c2.negotiate()
        self.assertIn("status", c2.ok("query-status"))
        self.assertEqual(p.terminate(), 0)
        # the socket file is libvirt's, not the proxy's: it stays
        self.assertTrue(os.path.exists(path))


class Startup(ProxyTestCase):

    def setUp(self):
        import tempfile
        import shutil
        self.workdir = tempfile.mkdtemp(prefix="qmptest-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def test_clients_wait_for_qemu(self):
        """qmproxy starts before QEMU; early clients are served once it is up."""
        mon = os.path.join(self.workdir, "qmp0.sock")
        p = Proxy(self.workdir, mon, args=["--connect-timeout", "20"])
        self.addCleanup(p.stop)
        early = QMPClient(p.listen, read_greeting=False)
        self.addCleanup(early.close)
        time.sleep(0.5)
        qemu = QEMU(self.workdir)
        self.addCleanup(qemu.stop)
        early.greeting = early.read_line()
        self.assertIn(b'"QMP"', early.greeting)
        early.negotiate()
        self.assertIn("status", early.ok("query-status"))

    def test_gives_up_when_qemu_never_comes(self):
        mon = os.path.join(self.workdir, "never.sock")
        p = Proxy(self.workdir, mon, args=["--connect-timeout", "1"])
        self.addCleanup(p.stop)
        self.assertEqual(p.wait(10), 1)
        self.assertIn("never.sock", p.read_stderr())
        self.assertFalse(os.path.exists(p.listen))

    def test_bad_command_lines(self):
        for args, words in [
            ([], "--upstream is required"),
            (["--upstream", "unix:/x"], "--listen is required"),
            (["--upstream", "unix:/x", "--listen", "bogus:1"], "expected unix:PATH"),
            (["--upstream", "unix:/x", "--listen", "fd:abc"], "fd:N"),
            (["--upstream", "fd:3", "--listen", "unix:/tmp/x"], "not allowed"),
            (["--upstream", "unix:/x", "--listen", "unix:/tmp/y", "--socket-mode", "999"], "octal"),
            (["--upstream", "unix:/x", "--listen", "unix:/tmp/y", "--max-message", "12"], "between"),
            (["--upstream", "unix:/x", "--listen", "unix:/tmp/y", "extra"], "unexpected argument"),
        ]:
            r = subprocess.run([self._bin()] + args, capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(words, r.stderr, (args, r.stderr))
        r = subprocess.run([self._bin(), "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^qmproxy \d+\.\d+")
        r = subprocess.run([self._bin(), "--help"], capture_output=True, text=True)
        self.assertIn("--upstream", r.stdout)

    def _bin(self):
        from qmptest import QMPROXY
        return QMPROXY


class Reconnect(ProxyTestCase):
    proxy_args = ("--reconnect", "--socket-mode", "0660")

    def test_reconnects_when_qemu_comes_back(self):
        mode = os.stat(self.proxy.listen).st_mode & 0o777
        self.assertEqual(mode, 0o660)
        c = self.client()
        c.send({"execute": "quit"})
        self.assertEqual(c.read_message()["event"], "SHUTDOWN")
        self.assertEqual(c.read_message(), {"return": {}})
        self.assertTrue(c.at_eof())
        self.qemu.proc.wait(10)
        time.sleep(0.3)
        self.assertIsNone(self.proxy.proc.poll(), "qmproxy exited despite --reconnect")
        self.assertTrue(os.path.exists(self.proxy.listen))
        for m in self.qemu.monitors:
            if os.path.exists(m):
                os.unlink(m)
        self.qemu = QEMU(self.workdir, shape=self.shape)
        self.addCleanup(self.qemu.stop)
        c2 = wait_for(lambda: self._try_client(), what="a served client after reconnect")
        self.assertIn("status", c2.ok("query-status"))

    def _try_client(self):
        try:
            c = QMPClient(self.proxy.listen, timeout=2)
        except OSError:
            return None
        self.addCleanup(c.close)
        c.negotiate()
        return c


if __name__ == "__main__":
    unittest.main(verbosity=2)
