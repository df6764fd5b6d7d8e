"""A peer that closes with bytes it never read resets the connection:
qmproxy's next recvmsg() fails with ECONNRESET.  The control-message
buffer then holds nothing the kernel wrote, and walking it (as
conn.c:on_read did) handed a garbage length to memcpy: ASan's
"negative-size-param" in QEMU 7.2's iotest 200 under qmproxy, a crash or
random descriptors closed without ASan.  Clients that reset must leave
the proxy serving the others, whatever the stack held.
"""
import os
import socket
import select
import unittest

from qmptest import ProxyTestCase


class ResetByPeer(ProxyTestCase):
    def test_clients_that_reset(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        for i in range(40):
            c = self.proxy.client()
            c.negotiate()
            # a descriptor passed on to QEMU first: what the proxy's
            # sendmsg() leaves on the stack is an SCM_RIGHTS header
            c.send({"execute": "getfd", "arguments": {"fdname": "f%d" % i}}, fds=[w])
            self.assertEqual(c.read_reply(), {"return": {}})
            # a big reply it never reads, then a close with it unread: RST
            c.sock.sendall(b'{"execute": "query-qmp-schema"}\n'
                           b'{"execute": "query-qmp-schema"}\n')
            # closed with part of it unread: the proxy's next read fails
            # with ECONNRESET (unix_release_sock)
            select.select([c.sock], [], [], 10)
            c.close()
        # the proxy goes on serving
        self.assertIn("status", self.client().ok("query-status"))
        self.assertIsNone(self.proxy.proc.poll())
        self.proxy.stop()
        with open(self.proxy.stderr_path, errors="replace") as f:
            text = f.read()
        for marker in ("ERROR: AddressSanitizer", "runtime error:"):
            self.assertNotIn(marker, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
