"""A client that stops sending is not a client that stops reading.

QEMU's monitor answers every command it read before end of file (a client
that did not negotiate oob has its commands read one at a time).  Then a
socket chardev is closed; a stdio monitor keeps sending events, since only
standard input ended.  QEMU 7.2's iotests rely on both: their bash tests
feed `-qmp stdio` a here-document ending with quit.
"""
import json
import os
import socket
import subprocess
import unittest

from qmptest import QMPROXY, ProxyTestCase


def lines(raw):
    return [json.loads(x) for x in raw.split(b"\r\n") if x.strip()]


class HalfClose(ProxyTestCase):
    # 0: the listening proxy, 1: direct, 2: a proxy serving stdio
    monitors = 3

    def test_socket_client_gets_every_reply_then_eof(self):
        c = self.client(negotiate=False)
        c.sock.sendall(b'{"execute": "qmp_capabilities"}\n'
                       b'{"execute": "query-status", "id": 1}\n'
                       b'{"execute": "query-name", "id": 2}\n'
                       b'{"execute": "stop", "id": 3}\n')
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(15)
        raw = c.buf
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                break                      # closed once all is answered
            raw += chunk
        msgs = [m for m in lines(raw) if "event" not in m]
        self.assertEqual(msgs[0], {"return": {}})
        self.assertEqual([m.get("id") for m in msgs[1:]], [1, 2, 3])
        self.assertTrue(all("return" in m for m in msgs))
        # the proxy and QEMU go on serving others
        d = self.direct()
        self.assertEqual(d.ok("query-status")["status"], "paused")
        self.assertIn("status", self.client().ok("query-status"))

    def stdio_proxy(self):
        stderr = open(os.path.join(self.workdir, "stdio.stderr"), "ab")
        self.addCleanup(stderr.close)
        p = subprocess.Popen([QMPROXY, "--upstream", "unix:" + self.qemu.monitors[2],
                              "--client", "stdio"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        return p

    def check_stderr(self):
        with open(os.path.join(self.workdir, "stdio.stderr"), errors="replace") as f:
            text = f.read()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            self.assertNotIn(marker, text)

    def test_stdio_here_document_with_quit(self):
        p = self.stdio_proxy()
        # all at once, then end of file: `qemu -qmp stdio <<EOF ... quit EOF`
        out, _ = p.communicate(b'{"execute": "qmp_capabilities"}\n'
                               b'{"execute": "query-status"}\n'
                               b'{"execute": "quit"}\n', timeout=20)
        msgs = lines(out)
        self.assertIn("QMP", msgs[0])
        replies = [m for m in msgs[1:] if "event" not in m]
        self.assertEqual(replies[0], {"return": {}})
        self.assertEqual(replies[1]["return"]["status"], "running")
        self.assertEqual(replies[2], {"return": {}})
        self.assertIn("SHUTDOWN", [m.get("event") for m in msgs])
        self.assertEqual(p.returncode, 0)
        self.check_stderr()

    def test_stdio_keeps_getting_events_after_stdin_ends(self):
        p = self.stdio_proxy()
        p.stdin.write(b'{"execute": "qmp_capabilities"}\n{"execute": "query-status"}\n')
        p.stdin.close()
        self.assertIn(b'"QMP"', p.stdout.readline())
        self.assertEqual(p.stdout.readline(), b'{"return": {}}\r\n')
        self.assertIn(b'"running"', p.stdout.readline())
        d = self.direct()
        d.ok("stop")
        line = p.stdout.readline()
        self.assertEqual(json.loads(line)["event"], "STOP")
        self.assertIsNone(p.poll())
        d.send({"execute": "quit"})
        rest = p.stdout.read()
        self.assertIn(b'"SHUTDOWN"', rest)
        self.assertEqual(p.wait(15), 0)
        p.stdout.close()
        self.check_stderr()


if __name__ == "__main__":
    unittest.main(verbosity=2)
