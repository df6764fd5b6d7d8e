"""SIGTERM while qmproxy is already ending (writing out the traffic log,
up to 5 s) must not kill it: it is ending anyway, and exits 0 as SIGTERM
promises.  QEMU 7.2's iotests met it: a wrapper stops its qmproxy with
SIGTERM when QEMU is gone, which can be just as qmproxy itself ends.
"""
import json
import os
import signal
import socket
import subprocess
import time
import unittest

from qmptest import QMPROXY, ProxyTestCase


class TermWhileEnding(ProxyTestCase):
    monitors = 2

    def start_proxy(self, args=None, **kw):
        return None  # started by the test

    def test_sigterm_during_the_last_traffic_log_flush(self):
        fifo = os.path.join(self.workdir, "traffic.fifo")
        os.mkfifo(fifo)
        # a reader that never reads: the log's writer blocks once the pipe
        # is full, so the final flush waits its 5 s
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, rfd)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        stderr = open(os.path.join(self.workdir, "proxy.stderr"), "wb")
        self.addCleanup(stderr.close)
        p = subprocess.Popen([QMPROXY, "--upstream", "unix:" + self.qemu.monitors[0],
                              "--client", "fd:%d" % theirs.fileno(), "--traffic-log", fifo],
                             pass_fds=[theirs.fileno()], stderr=stderr)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        theirs.close()
        ours.settimeout(20)
        f = ours.makefile("rb")
        self.assertIn(b'"QMP"', f.readline())
        ours.sendall(b'{"execute": "qmp_capabilities"}\n')
        self.assertEqual(json.loads(f.readline()), {"return": {}})
        for _ in range(3):   # well over the pipe's 64 KiB of traffic log
            ours.sendall(b'{"execute": "query-qmp-schema"}\n')
            self.assertIn("return", json.loads(f.readline()))
        self.direct().send({"execute": "quit"})
        # qmproxy passes QEMU's end on and leaves its loop: end of file
        while f.readline():
            pass
        time.sleep(0.3)
        self.assertIsNone(p.poll(), "qmproxy should still be flushing its log")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(20), 0)
        f.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
