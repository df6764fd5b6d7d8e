"""--metrics against the real components: a proxy in front of a real QEMU
with traffic, block jobs and an operation done, its scrape checked by
promtool (Debian's prometheus package), and a real Prometheus server
scraping it and answering through its HTTP API what the test did."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from qmptest import ProxyTestCase, Proxy, wait_for, write_policy, TIMEOUT

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
MiB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=TIMEOUT) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def parse(text):
    """{(name, frozenset(labels.items())): value} of an exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in series:
            name, rest = series.split("{", 1)
            for part in rest.rstrip("}").split('",'):
                if part:
                    k, v = part.split("=", 1)
                    labels[k] = v.strip('"')
        else:
            name = series
        samples[(name, frozenset(labels.items()))] = float(value)
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


@unittest.skipUnless(PROMTOOL and PROMETHEUS, "needs Debian's prometheus package")
class Metrics(ProxyTestCase):
    disks = 2

    def start_proxy(self, args=None, **kw):
        self.port = free_port()
        self.ro = os.path.join(self.workdir, "ro.sock")
        policy = os.path.join(self.workdir, "policy.xml")
        write_policy(policy, '<listeners><listener name="default" role="full"/>'
                     '<listener name="ro" role="monitor"/></listeners>')
        p = Proxy(self.workdir, self.qemu.monitors[0],
                  args=["--metrics", "tcp:127.0.0.1:%d" % self.port,
                        "--listen", "ro=unix:" + self.ro, "--extras", "default",
                        "--policy", policy])
        self.addCleanup(p.stop)
        return p

    def scrape(self):
        status, ctype, text = http_get(self.port)
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        return text

    def promtool(self, text):
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip() + r.stderr.strip(), "", "lint findings")

    def test_scrape_after_traffic_jobs_and_an_operation(self):
        c = self.client()
        ro = self.client(path=self.ro)
        for _ in range(7):
            c.ok("query-status")
        self.assertEqual(c.cmd("no-such-command")["error"]["class"], "CommandNotFound")
        # refused by the built-in monitor role: QEMU never sees it
        self.assertIn("not allowed by policy", ro.cmd("stop")["error"]["desc"])
        # an operation: a snapshot of disk0 and its copy, left ready
        dest = os.path.join(self.workdir, "dest")
        os.makedirs(dest)
        r = c.cmd("qmproxy-snapshot-mirror", {"name": "m", "disks": [{
            "disk": "disk0", "snapshot-file": os.path.join(self.workdir, "snap0.qcow2"),
            "mirror-file": os.path.join(dest, "snap0.qcow2")}]})
        self.assertEqual(r["return"]["state"], "ready", r)
        # a job of QEMU's own, at a set speed, on disk1 with data to copy
        self.assertNotIn("error", self.qemu.io(c, 1, "write -P 0x5a 0 %d" % (2 * MiB)))
        c.ok("drive-mirror", {"device": "disk1", "job-id": "copy1", "sync": "full",
                              "target": os.path.join(dest, "copy1.qcow2"),
                              "format": "qcow2", "speed": 1 << 30})
        c.wait_event("BLOCK_JOB_READY", pred=lambda e: e["data"]["device"] == "copy1")
        text = self.scrape()
        self.promtool(text)
        s = parse(text)
        self.assertEqual(value(s, "qmproxy_commands_total", command="query-status", outcome="return"), 7)
        self.assertEqual(value(s, "qmproxy_commands_total", command="other", outcome="CommandNotFound"), 1)
        self.assertEqual(value(s, "qmproxy_commands_total", command="stop", outcome="GenericError"), 1)
        self.assertEqual(value(s, "qmproxy_commands_total", command="qmproxy-snapshot-mirror", outcome="return"), 1)
        self.assertEqual(value(s, "qmproxy_command_duration_seconds_count", command="query-status"), 7)
        self.assertEqual(value(s, "qmproxy_command_duration_seconds_bucket", command="query-status", le="+Inf"), 7)
        self.assertIsNone(value(s, "qmproxy_command_duration_seconds_count", command="stop"))
        refusals = {dict(k[1])["rule"]: v for k, v in s.items() if k[0] == "qmproxy_policy_refusals_total"}
        self.assertEqual(list(refusals.values()), [1])
        self.assertTrue(list(refusals)[0].startswith("monitor/"), refusals)
        self.assertEqual(value(s, "qmproxy_clients", listener="default"), 1)
        self.assertEqual(value(s, "qmproxy_clients", listener="ro"), 1)
        self.assertEqual(value(s, "qmproxy_upstream_state", state="ready"), 1)
        self.assertEqual(value(s, "qmproxy_upstream_state", state="closed"), 0)
        self.assertEqual(value(s, "qmproxy_upstream_reconnects_total"), 0)
        self.assertEqual(value(s, "qmproxy_chain_depth", disk="disk0"), 2)
        self.assertEqual(value(s, "qmproxy_chain_depth", disk="disk1"), 1)
        self.assertEqual(value(s, "qmproxy_operations", state="ready"), 1)
        self.assertEqual(value(s, "qmproxy_operations", state="failed"), 0)
        self.assertEqual(value(s, "qmproxy_block_job_ready", disk="disk1", job="copy1"), 1)
        self.assertEqual(value(s, "qmproxy_block_job_speed_bytes_per_second", disk="disk1", job="copy1"), 1 << 30)
        self.assertEqual(value(s, "qmproxy_block_job_progress_ratio", disk="disk1", job="copy1", type="mirror"), 1)
        jobs0 = [k for k in s if k[0] == "qmproxy_block_job_ready" and dict(k[1])["disk"] == "disk0"]
        self.assertEqual(len(jobs0), 1, jobs0)
        self.assertEqual(s[jobs0[0]], 1)
        self.assertGreaterEqual(value(s, "qmproxy_events_total", event="BLOCK_JOB_READY"), 2)
        self.assertGreaterEqual(value(s, "qmproxy_events_total", event="QMPROXY_OPERATION"), 1)
        self.assertEqual(value(s, "qmproxy_traffic_log_lost_lines_total"), 0)
        for peer in ("client", "qemu"):
            self.assertGreater(value(s, "qmproxy_received_bytes_total", peer=peer), 0)
            self.assertGreater(value(s, "qmproxy_sent_bytes_total", peer=peer), 0)
        # the operation's copy is ready and in step; QEMU's own job is no
        # operation's copy, so it has no lag series
        self.assertEqual(value(s, "qmproxy_replica_lag_bytes", operation="m", disk="disk0"), 0)
        self.assertEqual(value(s, "qmproxy_replica_lag_seconds", operation="m", disk="disk0"), 0)
        self.assertEqual(len([k for k in s if k[0] == "qmproxy_replica_lag_bytes"]), 1)

    def test_progress_of_a_running_copy_moves(self):
        c = self.client()
        self.assertNotIn("error", self.qemu.io(c, 0, "write -P 0x5a 0 %d" % (8 * MiB)))
        # 2 MiB/s in 256 KiB pieces: QEMU sends no event for the 4 s it
        # copies, so only the refresh a scrape asks for moves the figure
        c.ok("drive-mirror", {"device": "disk0", "job-id": "slow", "sync": "full",
                              "target": os.path.join(self.workdir, "slow.qcow2"),
                              "format": "qcow2", "speed": 2 * MiB, "buf-size": 256 * 1024})
        seen = []

        def two_steps_under_1():
            p = value(parse(self.scrape()), "qmproxy_block_job_progress_ratio",
                      disk="disk0", job="slow", type="mirror")
            if p is not None and 0 < p < 1 and (not seen or p > seen[-1]):
                seen.append(p)
            return len(seen) >= 2
        wait_for(two_steps_under_1, interval=0.2, what="the copy's progress to move")
        self.assertEqual(value(parse(self.scrape()), "qmproxy_block_job_speed_bytes_per_second",
                               disk="disk0", job="slow"), 2 * MiB)
        c.ok("block-job-cancel", {"device": "slow", "force": True})

    def test_client_bytes_are_exact(self):
        before = parse(self.scrape())
        c = self.proxy.client()
        sent = b'{"execute": "qmp_capabilities"}\n{"execute": "query-name"}\n'
        c.send(sent)
        got = c.read_line() + c.read_line()
        after = parse(self.scrape())
        c.close()
        d_in = value(after, "qmproxy_received_bytes_total", peer="client") \
            - value(before, "qmproxy_received_bytes_total", peer="client")
        d_out = value(after, "qmproxy_sent_bytes_total", peer="client") \
            - value(before, "qmproxy_sent_bytes_total", peer="client")
        self.assertEqual(d_in, len(sent))
        self.assertEqual(d_out, len(c.greeting) + len(got))

    def test_names_nobody_knows_fold_into_other(self):
        c = self.client()
        for i in range(300):
            c.send({"execute": "bogus-%d" % i})
        for i in range(300):
            self.assertEqual(c.read_reply()["error"]["class"], "CommandNotFound")
        s = parse(self.scrape())
        names = {dict(k[1])["command"] for k in s if k[0] == "qmproxy_commands_total"}
        self.assertEqual(names, {"other"})
        self.assertEqual(value(s, "qmproxy_commands_total", command="other", outcome="CommandNotFound"), 300)

    def test_http_errors_and_a_stalled_scraper_do_not_hold_qmp(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            http_get(self.port, "/nope")
        self.assertEqual(e.exception.code, 404)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.port, data=b"x")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=TIMEOUT)
        self.assertEqual(e.exception.code, 405)
        # a scraper that sends half a request and never reads
        stalled = socket.create_connection(("127.0.0.1", self.port))
        self.addCleanup(stalled.close)
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        c = self.client()
        for _ in range(20):
            c.ok("query-status")
        self.scrape()

    def test_prometheus_reads_back_what_the_test_did(self):
        c = self.client()
        for _ in range(11):
            c.ok("query-status")
        c.ok("query-block")
        prom = PrometheusServer(self.workdir, self.port)
        self.addCleanup(prom.stop)
        expect = {
            'qmproxy_commands_total{command="query-status",outcome="return"}': 11,
            'qmproxy_commands_total{command="query-block",outcome="return"}': 1,
            'qmproxy_clients{listener="default"}': 1,
            'qmproxy_upstream_state{state="ready"}': 1,
            'qmproxy_chain_depth{disk="disk1"}': 1,
            'qmproxy_command_duration_seconds_count{command="query-status"}': 11,
            'up{job="qmproxy"}': 1,
        }
        got = {}

        def all_there():
            for q in expect:
                got[q] = prom.query(q)
            return got == expect
        wait_for(all_there, timeout=60, interval=0.5,
                 what="Prometheus to scrape the proxy (%s)" % got)
        # the values move: more commands, read back after the next scrape
        for _ in range(5):
            c.ok("query-status")
        q = 'qmproxy_commands_total{command="query-status",outcome="return"}'
        wait_for(lambda: prom.query(q) == 16, timeout=60, interval=0.5,
                 what="Prometheus to see 16 query-status")
        rate = prom.query('sum(qmproxy_received_bytes_total{peer="client"})')
        self.assertGreater(rate, 0)


@unittest.skipUnless(PROMTOOL, "needs Debian's prometheus package")
class MetricsOverUnixAndReconnects(ProxyTestCase):
    """--metrics unix:PATH, and QEMU going away and coming back."""

    def start_proxy(self, args=None, **kw):
        self.msock = os.path.join(self.workdir, "metrics.sock")
        return super().start_proxy(args=["--metrics", "unix:" + self.msock,
                                         "--reconnect"])

    def scrape(self, method="GET"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(TIMEOUT)
        s.connect(self.msock)
        s.sendall(("%s /metrics HTTP/1.0\r\n\r\n" % method).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head)
        return head.decode(), body.decode()

    def test_unix_socket_head_and_reconnect(self):
        self.assertEqual(os.stat(self.msock).st_mode & 0o777, 0o600)
        head, body = self.scrape("HEAD")
        self.assertEqual(body, "")
        c = self.client()
        c.ok("query-status")
        c.close()
        # QEMU goes; the proxy waits for it (--reconnect)
        self.qemu.stop()
        wait_for(lambda: value(parse(self.scrape()[1]), "qmproxy_upstream_state",
                               state="ready") == 0, what="the proxy to see QEMU go")
        s = parse(self.scrape()[1])
        self.assertEqual(value(s, "qmproxy_upstream_reconnects_total"), 0)
        self.assertEqual(value(s, "qmproxy_clients", listener="default"), 0)
        # and comes back at the same socket
        from qmptest import QEMU
        self.qemu = QEMU(self.workdir, disks=self.disks, monitors=self.monitors)
        self.addCleanup(self.qemu.stop)
        wait_for(lambda: value(parse(self.scrape()[1]), "qmproxy_upstream_reconnects_total") == 1,
                 what="the proxy to reconnect")
        c = self.client()
        c.ok("query-status")
        text = self.scrape()[1]
        s = parse(text)
        self.assertEqual(value(s, "qmproxy_upstream_state", state="ready"), 1)
        self.assertEqual(value(s, "qmproxy_commands_total", command="query-status", outcome="return"), 2)
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.proxy.stop()
        self.assertFalse(os.path.exists(self.msock))


@unittest.skipUnless(PROMTOOL, "needs Debian's prometheus package")
class UpstreamCommandsByOrigin(ProxyTestCase):
    """qmproxy_upstream_commands_total and _command_bytes_total: what QEMU
    answered, the proxy's own questions apart from clients' commands,
    against two witnesses: the traffic log (every command the proxy itself
    wrote, logged as client 0) and the byte counters of the connection."""
    disks = 2

    def start_proxy(self, args=None, **kw):
        self.port = free_port()
        self.tlog = os.path.join(self.workdir, "traffic.jsonl")
        ro = os.path.join(self.workdir, "ro.sock")
        policy = os.path.join(self.workdir, "policy.xml")
        write_policy(policy, '<listeners><listener name="default" role="full"/>'
                     '<listener name="ro" role="monitor"/></listeners>')
        self.ro = ro
        p = Proxy(self.workdir, self.qemu.monitors[0],
                  args=["--metrics", "tcp:127.0.0.1:%d" % self.port,
                        "--traffic-log", self.tlog, "--listen", "ro=unix:" + ro,
                        "--policy", policy, "--extras", "default"])
        self.addCleanup(p.stop)
        return p

    def quiet_scrape(self):
        """A scrape once nothing is in flight and two scrapes agree (the
        proxy's questions after a change all answered)."""
        last = [None]

        def settled():
            s = parse(http_get(self.port)[2])
            same = s == last[0]
            last[0] = s
            return same and value(s, "qmproxy_upstream_commands_in_flight") == 0
        wait_for(settled, interval=0.3, what="the proxy's questions to be answered")
        return last[0]

    def logged_own_commands(self):
        """The traffic log's commands of client 0 (the proxy's own), by name."""
        counts = {}

        def complete():
            counts.clear()
            with open(self.tlog) as f:
                for line in f:
                    e = json.loads(line)
                    if e.get("kind") == "command" and e.get("client") == 0:
                        name = e["msg"]["execute"]
                        counts[name] = counts.get(name, 0) + 1
            return counts == self.by_origin(self.quiet_scrape(), "proxy")
        # the log's writer thread may lag the scrape by a few lines
        wait_for(complete, interval=0.3, timeout=30,
                 what="the traffic log to agree with the metrics")
        return counts

    @staticmethod
    def by_origin(s, origin):
        return {dict(k[1])["command"]: v for k, v in s.items()
                if k[0] == "qmproxy_upstream_commands_total"
                and dict(k[1])["origin"] == origin}

    def test_the_proxy_own_commands_are_counted_apart(self):
        c = self.client()
        ro = self.client(path=self.ro)
        for _ in range(5):
            c.ok("query-status")
        self.assertIn("not allowed by policy", ro.cmd("stop")["error"]["desc"])
        # a snapshot through the proxy: the chain model asks QEMU after it
        c.ok("transaction", {"actions": [{"type": "blockdev-snapshot-sync", "data": {
            "device": "disk%d" % i, "format": "qcow2",
            "snapshot-file": os.path.join(self.workdir, "s%d.qcow2" % i)}}
            for i in range(2)]})
        c.ok("qmproxy-query-chain")
        # a snapshot behind the proxy's back: found by the next query
        self.direct().ok("blockdev-snapshot-sync", {
            "device": "disk1", "format": "qcow2",
            "snapshot-file": os.path.join(self.workdir, "behind.qcow2")})
        chain = c.ok("qmproxy-query-chain")
        self.assertIn("behind.qcow2", json.dumps(chain))
        s = self.quiet_scrape()
        self.promtool_ok(http_get(self.port)[2])
        clients = self.by_origin(s, "client")
        # what the clients sent that QEMU answered, and nothing else: the
        # refused stop and the proxy's own qmproxy-* commands never went up
        self.assertEqual(clients, {"query-status": 5, "transaction": 1}, clients)
        own = self.by_origin(s, "proxy")
        self.assertEqual(own.get("qmp_capabilities"), 1, own)
        self.assertNotIn("stop", own)
        self.assertTrue(any(n != "qmp_capabilities" for n in own), own)
        # the traffic log saw the same commands of the proxy's own
        self.assertEqual(self.logged_own_commands(), own)
        # every byte written to QEMU was a command QEMU answered, the
        # proxy's or a client's; what came back also held the greeting and
        # the events
        sent = {o: value(s, "qmproxy_upstream_command_bytes_total", origin=o,
                         direction="sent") for o in ("proxy", "client")}
        self.assertEqual(sum(sent.values()), value(s, "qmproxy_sent_bytes_total", peer="qemu"), sent)
        total_received = sum(value(s, "qmproxy_upstream_command_bytes_total", origin=o,
                                   direction="received") for o in ("proxy", "client"))
        self.assertGreater(value(s, "qmproxy_upstream_command_bytes_total",
                                 origin="proxy", direction="received"), 0)
        self.assertLess(total_received, value(s, "qmproxy_received_bytes_total", peer="qemu"))

    def promtool_ok(self, text):
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip() + r.stderr.strip(), "", "lint findings")


class PrometheusServer:
    """Debian's Prometheus, scraping one target every second, its data in
    a temporary directory."""

    def __init__(self, workdir, target_port):
        self.dir = tempfile.mkdtemp(prefix="prom-", dir=workdir)
        self.port = free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: qmproxy\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % target_port)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file", config,
             "--storage.tsdb.path", os.path.join(self.dir, "data"),
             "--web.listen-address", "127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._ready, timeout=60, interval=0.2, what="Prometheus to start")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited: " + self.read_log())
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def read_log(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def query(self, expr):
        """The instant value of a one-series query, or None."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            body = json.load(r)
        if body["status"] != "success" or len(body["data"]["result"]) != 1:
            return None
        return float(body["data"]["result"][0]["value"][1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


if __name__ == "__main__":
    unittest.main()
