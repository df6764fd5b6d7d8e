"""Invisible by default: a client of qmproxy sees exactly what a client of
QEMU's monitor would (greeting, replies, events, command list), nothing QEMU
sent is lost when it closes, no reply of QEMU's can desynchronise the
routing, and every way a monitor is attached (listening, a connected
socket, connecting out, standard input/output) is served.

Against a real QEMU 7.2, except where a race must be forced: a scripted
QEMU then plays its part at the exact moment.
"""
import json
import os
import socket
import subprocess
import threading
import time
import unittest

from qmptest import (QMPROXY, Proxy, ProxyTestCase, QMPClient, for_each_shape,
                     wait_for)


def snapshot(client, qemu, workdir, name):
    path = os.path.join(workdir, name)
    if qemu.shape == "none":
        client.ok("blockdev-snapshot-sync", {"device": "disk0", "snapshot-file": path,
                                             "format": "qcow2"})
    else:
        client.ok("blockdev-snapshot-sync", {"node-name": "fmt0", "snapshot-file": path,
                                             "snapshot-node-name": "snap-" + name,
                                             "format": "qcow2"})
    return path


@for_each_shape
class DefaultInvisible(ProxyTestCase):
    """A client that asks for nothing sees QEMU, byte for byte."""

    def test_greeting_and_query_commands_are_qemus(self):
        plain = self.client(negotiate=False)
        direct = self.direct(negotiate=False)
        self.assertEqual(plain.greeting, direct.greeting)
        plain.negotiate()
        direct.negotiate()
        for c in (plain, direct):
            c.send(b'{"execute": "query-commands", "id": 1}')
        self.assertEqual(plain.read_reply_raw(), direct.read_reply_raw())

    def test_proxy_events_only_for_those_who_asked(self):
        plain = self.client()
        asked = self.client(extras=True)
        events_only = self.client()
        self.assertEqual(events_only.ok("qmproxy-capabilities", {"enable": ["events"]}),
                         {"enabled": ["events"]})
        snapshot(plain, self.qemu, self.workdir, "s1.qcow2")
        asked.wait_event("QMPROXY_CHAIN_CHANGED")
        events_only.wait_event("QMPROXY_CHAIN_CHANGED")
        # a command after the event: whatever the plain client was sent in
        # between is in front of this reply
        plain.send(b'{"execute": "query-status", "id": "after"}')
        self.assertEqual(json.loads(plain.read_reply_raw())["id"], "after")
        self.assertEqual([e["event"] for e in plain.events], [])
        # events only: query-commands is QEMU's
        names = [c["name"] for c in events_only.ok("query-commands")]
        self.assertNotIn("qmproxy-query-chain", names)
        names = [c["name"] for c in asked.ok("query-commands")]
        self.assertIn("qmproxy-query-chain", names)
        self.assertIn("qmproxy-capabilities", names)

    def test_proxy_commands_work_for_everyone(self):
        plain = self.client()
        chain = plain.ok("qmproxy-query-chain")
        self.assertEqual(chain[0]["disk"], "disk0")
        self.assertEqual(plain.ok("qmproxy-capabilities", {"enable": ["commands"]}),
                         {"enabled": ["commands"]})

    def test_capabilities_arguments_checked_as_qemu_would(self):
        plain = self.client()
        for args, words in [
                ({"enable": ["bogus"]}, "'bogus'"),
                ({"enable": "events"}, "expected: array"),
                ({"other": 1}, "Parameter 'other' is unexpected")]:
            r = plain.cmd("qmproxy-capabilities", args, id="x")
            self.assertEqual(r["error"]["class"], "GenericError", r)
            self.assertIn(words, r["error"]["desc"])
            self.assertEqual(r["id"], "x")


class ListenerExtras(ProxyTestCase):
    """--extras NAME gives a listener's clients the extras without asking."""
    proxy_args = ("--extras", "default")

    def test_listener_grants_extras(self):
        c = self.client()
        names = [x["name"] for x in c.ok("query-commands")]
        self.assertIn("qmproxy-snapshot-mirror", names)
        snapshot(c, self.qemu, self.workdir, "s1.qcow2")
        c.wait_event("QMPROXY_CHAIN_CHANGED")


class PrettyClient(ProxyTestCase):
    """A client used to QEMU's pretty-printing monitor (-qmp-pretty, as
    some of QEMU's own tests ask for) gets the very same bytes through
    --pretty as from such a monitor."""
    proxy_args = ("--pretty", "default")

    def setUp(self):
        self.pretty_sock = None
        super().setUp()

    def prepare_images(self):
        pass

    def start_proxy(self, args=None, **kw):
        # a third monitor of QEMU's, pretty, to compare with
        self.qemu.stop()
        from qmptest import QEMU
        self.pretty_sock = os.path.join(self.workdir, "pretty.sock")
        self.qemu = QEMU(os.path.join(self.workdir), shape=self.shape, disks=1, monitors=2,
                         extra_args=["-chardev", "socket,id=pm,path=%s,server=on,wait=off"
                                     % self.pretty_sock, "-mon", "chardev=pm,mode=control,pretty=on"])
        self.addCleanup(self.qemu.stop)
        wait_for(lambda: os.path.exists(self.pretty_sock), what="the pretty monitor")
        return super().start_proxy(args=args, **kw)

    @staticmethod
    def read_pretty(c):
        """One pretty message: lines up to the closing brace at column 0."""
        lines = []
        while True:
            line = c.read_line()
            lines.append(line)
            if line == b"}\r\n":
                return b"".join(lines)

    def connect(self, path):
        c = QMPClient(path, read_greeting=False)
        self.addCleanup(c.close)
        return c

    def test_same_bytes_as_a_pretty_monitor(self):
        direct = self.connect(self.pretty_sock)
        proxied = self.connect(self.proxy.listen)
        d, p = self.read_pretty(direct), self.read_pretty(proxied)
        self.assertEqual(p, d)
        self.assertIn(b'\r\n    "QMP": {\r\n', p)
        replies = {}
        for cmd in (b'{"execute": "qmp_capabilities"}',
                    b'{"execute": "query-status", "id": "s"}',
                    b'{"execute": "query-block"}',
                    b'{"execute": "query-commands", "id": [1, {"a": []}]}',
                    b'{"execute": "no-such-command", "id": -1e999}',
                    b'{"execute": "query-version"}',
                    b'{"execute": "query-block-jobs"}',
                    b'{"execute": "stop"}'):
            direct.send(cmd)
            proxied.send(cmd)
            d, p = self.read_pretty(direct), self.read_pretty(proxied)
            if b'"event"' in d:     # STOP may come before stop's reply
                d = self.read_pretty(direct)
            if b'"event"' in p:
                p = self.read_pretty(proxied)
            self.assertEqual(p, d, cmd)
            replies[cmd] = p
        # an empty list and an empty object, as QEMU lays them out
        self.assertEqual(replies[b'{"execute": "query-block-jobs"}'],
                         b'{\r\n    "return": [\r\n    ]\r\n}\r\n')
        self.assertEqual(replies[b'{"execute": "stop"}'],
                         b'{\r\n    "return": {\r\n    }\r\n}\r\n')


@for_each_shape
class NonFiniteIds(ProxyTestCase):
    """QEMU accepts 1e999 as an id and echoes it as inf: not JSON.  The
    reply still goes to the command it answers, as QEMU's bytes, and nobody
    else's replies move."""

    def exchange(self, client, data):
        client.send(data)
        return client.read_reply_raw()

    def test_infinite_ids_routed_and_echoed_as_qemu_does(self):
        proxied = self.client(oob=True)
        other = self.client()
        direct = self.direct(oob=True)
        for cmd in (b'{"execute": "query-status", "id": -1e999}',
                    b'{"execute": "query-status", "id": 1e999}',
                    b'{"execute": "query-status", "id": [1e999, {"a": -1e999}]}',
                    b'{"execute": "no-such-command", "id": -1e999}',
                    b'{"exec-oob": "migrate-pause", "id": -1e999}',
                    b'{"exec-oob": "migrate-pause", "id": {"x": 1e999}}'):
            want = self.exchange(direct, cmd)
            self.assertIn(b"inf", want)
            self.assertEqual(self.exchange(proxied, cmd), want, cmd)
            # every client's next replies are still its own
            for n in range(3):
                other.send({"execute": "query-status", "id": "o%d" % n})
            for n in range(3):
                self.assertEqual(other.read_reply()["id"], "o%d" % n)
            proxied.send({"execute": "query-status", "id": "p"})
            self.assertEqual(proxied.read_reply()["id"], "p")

    def test_traffic_log_stays_json(self):
        tlog = os.path.join(self.workdir, "traffic.jsonl")
        p = Proxy(self.workdir, self.qemu.monitors[1], args=["--traffic-log", tlog],
                  name="logged")
        self.addCleanup(p.stop)
        c = self.client(path=p.listen)
        c.send(b'{"execute": "query-status", "id": -1e999}')
        raw = c.read_reply_raw()
        self.assertIn(b'"id": -inf', raw)

        def logged():
            with open(tlog) as f:
                lines = [json.loads(line) for line in f]
            return [l for l in lines if l.get("malformed") and "-inf" in l["msg"]]
        line = wait_for(logged, what="the reply in the traffic log")[0]
        self.assertEqual(line["from"], "qemu")
        self.assertEqual(line["msg"] + "\r\n", raw.decode())

    def test_proxy_own_command_with_infinite_id(self):
        c = self.client()
        reply = self.exchange(c, b'{"execute": "qmproxy-query-chain", "id": -1e999}')
        self.assertTrue(reply.endswith(b'"id": -inf}\r\n'), reply)
        c.send({"execute": "query-status", "id": "next"})
        self.assertEqual(c.read_reply()["id"], "next")


@for_each_shape
class QuitWithJobs(ProxyTestCase):
    """quit while a block job lives: QEMU sends SHUTDOWN, the jobs' cancel
    events and the reply, then closes; all of it reaches the client."""

    def run_once(self, i):
        c = self.client()
        target = os.path.join(self.workdir, "copy%d.qcow2" % i)
        c.ok("drive-mirror", {"device": self.qemu.device_arg(0), "job-id": "m",
                              "target": target, "sync": "full", "format": "qcow2"})
        c.wait_event("BLOCK_JOB_READY")
        c.send({"execute": "quit", "id": "bye"})
        seen = []
        while True:
            try:
                msg = c.read_message()
            except EOFError:
                break
            seen.append(msg.get("event") or msg)
        self.assertIn({"return": {}, "id": "bye"}, seen, seen)
        self.assertIn("SHUTDOWN", seen)
        self.assertTrue({"BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"}
                        & {m for m in seen if isinstance(m, str)}, seen)

    def test_quit_reply_and_last_events_never_lost(self):
        for i in range(8):
            if i:
                self.qemu.stop()
                self.proxy.stop()
                self.setUp_again(i)
            self.run_once(i)
            self.assertEqual(self.proxy.wait(15), 0)

    def setUp_again(self, i):
        from qmptest import QEMU
        d = os.path.join(self.workdir, "round%d" % i)
        os.makedirs(d)
        self.qemu = QEMU(d, shape=self.shape, disks=1, monitors=1)
        self.addCleanup(self.qemu.stop)
        self.proxy = Proxy(d, self.qemu.monitors[0])
        self.addCleanup(self.proxy.stop)


class ScriptedQemu:
    """Plays QEMU's part on a socket: the greeting, empty answers to the
    proxy's questions, and on a chosen command a last burst followed by a
    close, having first shut its reading side, so that any write of the
    proxy's after the burst fails (EPIPE) as it does when QEMU is gone."""

    GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                b'"package": ""}, "capabilities": ["oob"]}}\r\n')
    ANSWERS = {"query-block": [], "query-block-jobs": [], "query-named-block-nodes": [],
               "x-debug-query-block-graph": {"nodes": [], "edges": []}}

    def __init__(self, path, trigger, burst):
        self.path = path
        self.trigger = trigger
        self.burst = burst
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.error = None
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(20)
            conn.sendall(self.GREETING)
            buf = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                # the proxy sends one JSON object per command, no newline
                while buf:
                    try:
                        cmd, end = json.JSONDecoder().raw_decode(buf.decode())
                    except ValueError:
                        break
                    buf = buf[len(buf.decode()[:end].encode()):].lstrip()
                    name = cmd.get("execute")
                    if name == self.trigger:
                        conn.shutdown(socket.SHUT_RD)
                        time.sleep(0.05)
                        conn.sendall(self.burst)
                        conn.close()
                        return
                    ret = self.ANSWERS.get(name, {})
                    reply = {"return": ret}
                    if "id" in cmd:
                        reply["id"] = cmd["id"]
                    conn.sendall(json.dumps(reply).encode() + b"\r\n")
        except Exception as e:  # reported by the test
            self.error = e


class NothingLostOnClose(unittest.TestCase):
    """What QEMU wrote before closing reaches the client, then EOF, even
    when the proxy's own query meets the closing socket."""

    def setUp(self):
        import tempfile
        import shutil
        self.workdir = tempfile.mkdtemp(prefix="qmptest-")
        self.addCleanup(shutil.rmtree, self.workdir, True)

    def run_burst(self, trigger, events):
        burst = b"".join(
            b'{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "%s", "data": %s}\r\n'
            % (name.encode(), data.encode()) for name, data in events)
        burst += b'{"return": {}, "id": "last"}\r\n'
        qemu = ScriptedQemu(os.path.join(self.workdir, "qemu.sock"), trigger, burst)
        proxy = Proxy(self.workdir, qemu.path)
        self.addCleanup(proxy.stop)
        c = proxy.client()
        self.addCleanup(c.close)
        c.negotiate()
        c.send({"execute": trigger, "id": "last"})
        got = b""
        while True:
            try:
                got += c.read_line()
            except EOFError:
                break
        self.assertEqual(got, burst)
        self.assertEqual(proxy.wait(15), 0)
        self.assertIsNone(qemu.error)

    def test_quit_burst(self):
        self.run_burst("quit", [
            ("SHUTDOWN", '{"guest": false, "reason": "host-qmp-quit"}'),
            ("BLOCK_JOB_CANCELLED", '{"device": "m", "len": 1, "offset": 1, "speed": 0, "type": "mirror"}'),
            ("JOB_STATUS_CHANGE", '{"status": "null", "id": "m"}')])

    def test_write_failure_discards_nothing(self):
        # no SHUTDOWN: the proxy does query after the job event, and that
        # write fails; what follows it on the wire must still be delivered
        self.run_burst("stop", [
            ("BLOCK_JOB_CANCELLED", '{"device": "m", "len": 1, "offset": 1, "speed": 0, "type": "mirror"}'),
            ("JOB_STATUS_CHANGE", '{"status": "null", "id": "m"}'),
            ("STOP", "{}")])


class ClientModes(ProxyTestCase):
    """--client: a connected socket, connecting out, standard I/O."""

    def start_proxy(self, args=None, **kw):
        return None  # each test starts its own

    def launch(self, client_spec, pass_fds=(), **popen):
        cmd = [QMPROXY, "--upstream", "unix:" + self.qemu.monitors[0], "--client", client_spec]
        stderr = open(os.path.join(self.workdir, "proxy.stderr"), "ab")
        self.addCleanup(stderr.close)
        p = subprocess.Popen(cmd, stderr=stderr, pass_fds=pass_fds, **popen)
        self.addCleanup(self.check_stderr)
        self.addCleanup(lambda: p.poll() is None and (p.terminate(), p.wait()))
        return p

    def check_stderr(self):
        with open(os.path.join(self.workdir, "proxy.stderr"), errors="replace") as f:
            text = f.read()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            self.assertNotIn(marker, text)

    def converse(self, c):
        c.negotiate()
        self.assertIn("status", c.ok("query-status"))
        direct = self.direct()
        c.send({"execute": "stop"})
        self.assertEqual(c.read_reply(), {"return": {}})
        c.wait_event("STOP")
        direct.wait_event("STOP")
        return direct

    def test_connected_socket(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        p = self.launch("fd:%d" % theirs.fileno(), pass_fds=[theirs.fileno()])
        theirs.close()
        c = QMPClient.__new__(QMPClient)
        c.sock, c.buf, c.events = ours, b"", []
        ours.settimeout(20)
        c.greeting = c.read_line()
        self.assertIn(b'"QMP"', c.greeting)
        direct = self.converse(c)
        # the client leaving is not the end: QEMU's going is
        ours.close()
        time.sleep(0.2)
        self.assertIsNone(p.poll())
        direct.send({"execute": "quit"})
        self.assertEqual(p.wait(15), 0)

    def test_connect_out(self):
        path = os.path.join(self.workdir, "client.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(1)
        self.addCleanup(lsock.close)
        p = self.launch("unix:" + path)
        lsock.settimeout(20)
        conn, _ = lsock.accept()
        c = QMPClient.__new__(QMPClient)
        c.sock, c.buf, c.events = conn, b"", []
        conn.settimeout(20)
        self.addCleanup(conn.close)
        c.greeting = c.read_line()
        self.converse(c)
        c.send({"execute": "quit"})
        self.assertEqual(c.read_reply(), {"return": {}})
        self.assertEqual(p.wait(15), 0)

    def test_connect_out_refused(self):
        p = self.launch("unix:" + os.path.join(self.workdir, "nobody.sock"))
        self.assertEqual(p.wait(15), 1)
        with open(os.path.join(self.workdir, "proxy.stderr")) as f:
            self.assertIn("nobody.sock", f.read())

    def test_stdio(self):
        p = self.launch("stdio", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out = p.stdout
        greeting = out.readline()
        self.assertIn(b'"QMP"', greeting)
        self.assertTrue(greeting.endswith(b"\r\n"))
        p.stdin.write(b'{"execute": "qmp_capabilities"}\n')
        p.stdin.flush()
        self.assertEqual(out.readline(), b'{"return": {}}\r\n')
        p.stdin.write(b'{"execute": "query-status", "id": 7}\n')
        p.stdin.flush()
        reply = json.loads(out.readline())
        self.assertEqual(reply["id"], 7)
        p.stdin.write(b'{"execute": "quit"}\n')
        p.stdin.flush()
        rest = out.read()
        self.assertIn(b'{"return": {}}\r\n', rest)
        self.assertEqual(p.wait(15), 0)
        p.stdin.close()
        out.close()

    def test_bad_client_specs(self):
        for spec, words in (("fd:999", "not an open descriptor"),
                            ("tcp:nohost", "expected tcp:HOST:PORT")):
            r = subprocess.run([QMPROXY, "--upstream", "unix:/nonexistent", "--client", spec],
                               capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0, r.stderr)
            self.assertIn(words, r.stderr)



if __name__ == "__main__":
    unittest.main(verbosity=2)
