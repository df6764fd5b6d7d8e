"""The several-hosts harness itself (hosts.py): hosts reach each other over
link-local addresses and nothing else, a link taken down cuts a host off
and comes back, processes run inside a host, and everything (namespaces,
processes) is gone after close(), also when the test failed midway."""
import os
import subprocess
import tempfile
import unittest

import hosts


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True,
                         text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class Harness(unittest.TestCase):

    def test_hosts_reach_each_other_and_links_go_down(self):
        with hosts.Hosts(3) as h:
            self.assertEqual([x.addr for x in h],
                             ["169.254.77.1", "169.254.77.2", "169.254.77.3"])
            self.assertTrue(h[0].can_reach(h[1]))
            self.assertTrue(h[2].can_reach(h[0]))
            # only link-local addresses and loopback inside a host
            addrs = h[1].run(["ip", "-o", "-4", "addr"]).stdout
            for line in addrs.splitlines():
                addr = line.split()[3]
                self.assertTrue(addr.startswith("169.254.")
                                or addr.startswith("127."), line)
            h[1].link_down()
            self.assertFalse(h[0].can_reach(h[1], timeout=0.5))
            self.assertTrue(h[0].can_reach(h[2]))
            h[1].link_up()
            hosts.wait_for(lambda: h[0].can_reach(h[1]), interval=0.1,
                           what="the link back up")

    def test_processes_run_inside_and_are_killed(self):
        with hosts.Hosts(2) as h:
            inside = h[0].run(["readlink", "/proc/self/ns/net"]).stdout
            self.assertNotEqual(inside.strip(), os.readlink("/proc/self/ns/net"))
            # started by hand, not through popen(): still killed
            subprocess.run(h[1].prefix() + ["sh", "-c", "sleep 600 &"],
                           check=True, timeout=30)
            p = h[0].popen(["sleep", "600"])
            names = set(h.namespaces)
            self.assertEqual(len(names), 3)
        self.assertIsNotNone(p.poll())
        self.assertFalse(names & namespaces())

    def test_cleanup_after_a_failure(self):
        names = None
        with self.assertRaises(ZeroDivisionError):
            with hosts.Hosts(2) as h:
                names = set(h.namespaces)
                h[0].popen(["sleep", "600"])
                1 / 0
        self.assertTrue(names)
        self.assertFalse(names & namespaces())

    def test_namespaces_of_a_killed_run_are_swept(self):
        """A run killed outright leaves its namespaces; the next run deletes
        those whose process is gone, and only those."""
        dead = next(pid for pid in range(4194000, 4194300)
                    if not os.path.exists("/proc/%d" % pid))
        stale = "%s%dx0dead" % (hosts.PREFIX, dead)
        mine = "%s%dx999live" % (hosts.PREFIX, os.getpid())
        for ns in (stale, mine):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", mine])
        self.addCleanup(subprocess.run, ["ip", "netns", "del", stale],
                        capture_output=True)
        hosts.sweep_stale()
        self.assertNotIn(stale, namespaces())
        self.assertIn(mine, namespaces())

    def test_storage_daemon_serves_across_hosts(self):
        work = tempfile.mkdtemp(prefix="qmptest-hosts-")
        self.addCleanup(subprocess.run, ["rm", "-rf", work])
        h = hosts.Hosts(2)
        self.addCleanup(h.close)
        img = os.path.join(work, "dest.qcow2")
        h[1].run(["qemu-img", "create", "-q", "-f", "qcow2", img, "4M"])
        qsd = h[1].storage_daemon(work, {"d0": img})
        uri = qsd.uri("d0")
        self.assertEqual(uri, "nbd://169.254.77.2:10809/d0")
        h[0].run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", uri])
        out = h[0].run(["qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 64k",
                        uri]).stdout
        self.assertNotIn("fail", out)
        # not reachable from outside the hosts
        r = subprocess.run(["qemu-io", "-f", "raw", "-c", "read 0 512", uri],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    unittest.main()
