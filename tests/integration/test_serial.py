"""A client without oob has its commands executed one at a time, each once
the reply to the one before has been written to it, as QEMU's monitor does
(it reads such a client a byte at a time and stops reading while a
command runs).  Otherwise what QEMU does for the next command (a message
on its stderr, a file written) can come before the reply to this one:
QEMU 7.2's iotest 071 sees qemu-io's "read failed" move above a reply.

A scripted QEMU notes whether the second command arrived before it
answered the first.  A client that negotiated oob may have several in
QEMU's hands, as QEMU queues up to 8 of them.
"""
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest

from qmptest import Proxy


class SlowQemu:
    """QEMU's part: greeting, empty answers to the proxy's questions, and
    for the client's command "slow" a reply after 0.3 s, noting whether
    any other client command had arrived meanwhile."""

    GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                b'"package": ""}, "capabilities": ["oob"]}}\r\n')
    ANSWERS = {"query-block": [], "query-block-jobs": [], "query-named-block-nodes": [],
               "x-debug-query-block-graph": {"nodes": [], "edges": []}}

    def __init__(self, path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.error = None
        self.early = []          # client commands seen while "slow" ran
        self.seen = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def commands(self, conn, buf, timeout):
        """Parse what has arrived (waiting up to timeout for more)."""
        conn.settimeout(timeout)
        try:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        except socket.timeout:
            pass
        out = []
        while buf.strip():
            try:
                cmd, end = json.JSONDecoder().raw_decode(buf.decode())
            except ValueError:
                break
            buf = buf[len(buf.decode()[:end].encode()):].lstrip()
            out.append(cmd)
        return out, buf

    def serve(self):
        try:
            conn, _ = self.listener.accept()
            conn.sendall(self.GREETING)
            buf = b""
            pending = []
            for _ in range(2000):                      # bounded: ~10 s idle at most
                if not pending:
                    cmds, buf = self.commands(conn, buf, 0.005)
                    pending += cmds
                    continue
                cmd = pending.pop(0)
                name = cmd.get("execute")
                self.seen.append(name)
                if name == "slow":
                    # answer after 0.3 s; whatever comes meanwhile was early
                    deadline = time.monotonic() + 0.3
                    while time.monotonic() < deadline:
                        cmds, buf = self.commands(conn, buf, 0.05)
                        pending += cmds
                    self.early += [c.get("id") for c in pending
                                   if c.get("execute") not in self.ANSWERS]
                    ret = {}
                elif name == "quit":
                    conn.sendall(b'{"return": {}, "id": %s}\r\n' % json.dumps(cmd.get("id")).encode())
                    conn.close()
                    return
                else:
                    ret = self.ANSWERS.get(name, {})
                reply = {"return": ret}
                if "id" in cmd:
                    reply["id"] = cmd["id"]
                conn.sendall(json.dumps(reply).encode() + b"\r\n")
        except EOFError:
            return
        except Exception as e:  # reported by the test
            self.error = e


class OneAtATime(unittest.TestCase):
    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="qmptest-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.qemu = SlowQemu(os.path.join(self.workdir, "qemu.sock"))
        self.proxy = Proxy(self.workdir, self.qemu.path)
        self.addCleanup(self.proxy.stop)

    def pipeline(self, oob):
        c = self.proxy.client()
        self.addCleanup(c.close)
        c.negotiate(oob=oob)
        c.sock.sendall(b'{"execute": "slow", "id": 1}\n'
                       b'{"execute": "next", "id": 2}\n'
                       b'{"execute": "next", "id": 3}\n')
        self.assertEqual([c.read_reply()["id"] for _ in range(3)], [1, 2, 3])
        c.send({"execute": "quit", "id": 4})
        self.assertEqual(c.read_reply()["id"], 4)
        self.assertIsNone(self.qemu.error)
        self.assertIn("slow", self.qemu.seen)

    def test_without_oob_the_next_command_waits_for_the_reply(self):
        self.pipeline(oob=False)
        self.assertEqual(self.qemu.early, [])

    def test_with_oob_commands_are_queued_in_qemu(self):
        self.pipeline(oob=True)
        self.assertEqual(self.qemu.early, [2, 3])


if __name__ == "__main__":
    unittest.main(verbosity=2)
