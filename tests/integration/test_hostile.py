"""Hostile input, measured (issue 12).

One client of qmproxy sends hostile input of many kinds while a second
client keeps working.  After each kind (and throughout, from a thread) the
second client's replies must be correct and in order; the hostile client
must get exactly what a direct QEMU monitor gives it where that is defined
(the same bytes sent to QEMU's second monitor, replies compared byte for
byte); and qmproxy's memory (VmRSS/VmHWM) and descriptors must come back
near where they were.

Every load loop is bounded in count and in time.  Run it under the ASan
build too (QMPROXY_BIN=.../build-asan/qmproxy): Proxy.stop() checks the
sanitizers' output.
"""
import json
import os
import socket
import sys
import threading
import time
import unittest

from qmptest import ProxyTestCase, QMPClient, Proxy, wait_for, TIMEOUT

MiB = 1 << 20
# how far qmproxy's resident memory may stay above where it started
RSS_SLACK_KIB = 16 * 1024
# how long the working client may wait for one round trip under attack
MAX_LATENCY = 10.0
KINDS = []        # every kind of hostile input exercised, by name


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def is_event(line):
    return line.startswith(b'{"timestamp"') and b'"event"' in line


class Client(QMPClient):
    """QMPClient with a reader that stays linear for lines of many MiB."""

    def read_line(self):
        buf = bytearray(self.buf)
        start = 0
        while True:
            i = buf.find(b"\r\n", start)
            if i >= 0:
                self.buf = bytes(buf[i + 2:])
                return bytes(buf[:i + 2])
            start = max(0, len(buf) - 1)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                self.buf = bytes(buf)
                raise EOFError("connection closed; had %r" % bytes(buf[:200]))
            buf += chunk


class Worker(threading.Thread):
    """The second client: pipelined commands with ids, every reply checked
    for its id and its content, until told to stop (or a bound)."""

    MAX_ROUNDS = 100000

    def __init__(self, client, version, proxy):
        super().__init__(daemon=True)
        self.c = client
        self.c.sock.settimeout(120)   # a stall is measured, not an error
        self.version = version
        self.proxy = proxy
        self.rounds = 0
        self.errors = []
        self.latency = 0.0          # the worst round trip since reset_latency
        self.max_latency = 0.0      # the worst overall
        self.rss_peak = 0
        self.halt = threading.Event()
        self.slow = 1

    def run(self):
        c = self.c
        try:
            for k in range(self.MAX_ROUNDS):
                if self.halt.is_set():
                    return
                t0 = time.monotonic()
                c.send(b"".join([
                    json.dumps({"execute": "human-monitor-command", "id": k,
                                "arguments": {"command-line": "p/d %d" % k}}).encode(),
                    json.dumps({"execute": "query-status", "id": "s-%d" % k}).encode(),
                    json.dumps({"execute": "query-version", "id": ["v", k]}).encode()]))
                r1, r2, r3 = c.read_reply(), c.read_reply(), c.read_reply()
                dt = time.monotonic() - t0
                if r1 != {"return": "%d\r\n" % k, "id": k}:
                    raise AssertionError("round %d: hmp reply %r" % (k, r1))
                if r2.get("id") != "s-%d" % k or "status" not in r2.get("return", {}):
                    raise AssertionError("round %d: query-status reply %r" % (k, r2))
                if r3 != {"return": self.version, "id": ["v", k]}:
                    raise AssertionError("round %d: query-version reply %r" % (k, r3))
                c.events.clear()
                self.latency = max(self.latency, dt)
                self.max_latency = max(self.max_latency, dt)
                self.rounds = k + 1
                try:
                    self.rss_peak = max(self.rss_peak, proc_status(self.proxy.proc.pid, "VmRSS"))
                except (OSError, TypeError):
                    pass
                time.sleep(0.01)
        except Exception as e:  # noqa: reported by the test
            self.errors.append(e)

    def check(self, kind, rounds=3, timeout=30, max_latency=None):
        """The worker is still right and still moving after `kind`."""
        max_latency = max_latency or MAX_LATENCY * self.slow
        start = self.rounds
        deadline = time.monotonic() + max(timeout, max_latency * 2)
        while self.rounds < start + rounds and not self.errors and self.is_alive():
            if time.monotonic() > deadline:
                raise AssertionError("%s: the other client stalled (%d rounds in %ds)"
                                     % (kind, self.rounds - start, timeout))
            time.sleep(0.01)
        if self.errors:
            raise AssertionError("%s: the other client got a wrong reply: %s"
                                 % (kind, self.errors[0]))
        if not self.is_alive():
            raise AssertionError("%s: the other client's thread ended" % kind)
        lat, self.latency = self.latency, 0.0
        if lat > max_latency:
            raise AssertionError("%s: the other client waited %.1fs" % (kind, lat))
        return lat


# Under ASan, freed memory sits in a 256 MiB quarantine and the allocator
# keeps its pages: the proxy's RSS then says nothing about what the proxy
# holds.  A small quarantine (use-after-free is still caught within it)
# and pages given back to the system make the figures mean the same as
# without ASan.  Settings the environment already has come last and win.
ASAN_FOR_RSS = "quarantine_size_mb=8:allocator_release_to_os_interval_ms=0"


class HostileBase(ProxyTestCase):
    """A QEMU, qmproxy, a working client in a thread, and a memory record."""

    def start_proxy(self, args=None, **kw):
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ASAN_FOR_RSS + (":" + env["ASAN_OPTIONS"]
                                              if env.get("ASAN_OPTIONS") else "")
        return super().start_proxy(args=args, env=env, **kw)

    def setUp(self):
        super().setUp()
        self.pid = self.proxy.proc.pid
        with open("/proc/%d/maps" % self.pid) as f:
            self.asan = "libasan" in f.read()
        # under ASan the shadow and allocator metadata of the heap touched
        # at the peak stay resident: a wider bound (the plain build's
        # figures are the proxy's own), and slower round trips
        self.rss_slack = RSS_SLACK_KIB * (3 if self.asan else 1)
        self.slow = 3 if self.asan else 1
        work = self.client()
        version = work.ok("query-version")
        self.worker = Worker(work, version, self.proxy)
        self.worker.slow = self.slow
        self.worker.start()
        self.addCleanup(self.worker.join, 10)
        self.addCleanup(self.worker.halt.set)
        self.worker.check("start", rounds=2)
        self.fds_before = nfds(self.pid)
        self.rss_before = proc_status(self.pid, "VmRSS")
        self.figures = []
        self.direct_client = None
        self.hostiles = []

    def kind(self, name, max_latency=None):
        """One kind of hostile input is done: the other client is still
        right, the proxy still there; note the memory."""
        KINDS.append(name)
        self.assertIsNone(self.proxy.proc.poll(), "%s: qmproxy exited" % name)
        lat = self.worker.check(name, max_latency=(max_latency or MAX_LATENCY) * self.slow)
        self.figures.append((name, proc_status(self.pid, "VmRSS"),
                             proc_status(self.pid, "VmHWM"), lat))

    def finish(self, title):
        """Memory and descriptors back near where they were."""
        for c in self.hostiles:
            c.close()
        self.worker.check(title)

        def settled():
            rss = proc_status(self.pid, "VmRSS")
            return rss if rss - self.rss_before <= self.rss_slack else None
        try:
            after = wait_for(settled, timeout=5, interval=0.1, what="RSS to settle")
        except AssertionError:
            after = proc_status(self.pid, "VmRSS")
        peak = proc_status(self.pid, "VmHWM")
        lines = ["", "%s%s: qmproxy VmRSS before %d KiB, peak (VmHWM) %d KiB, after %d KiB; "
                 "other client's worst round trip %.0f ms" % (
                     "[ASan] " if self.asan else "", title, self.rss_before, peak, after,
                     self.worker.max_latency * 1000)]
        for name, rss, hwm, lat in self.figures:
            lines.append("  %-44s RSS %7d KiB  HWM %7d KiB  other client %6.0f ms"
                         % (name, rss, hwm, lat * 1000))
        print("\n".join(lines), file=sys.stderr)
        self.assertLessEqual(after - self.rss_before, self.rss_slack,
                             "%s: RSS stayed %d KiB above where it was"
                             % (title, after - self.rss_before))
        wait_for(lambda: nfds(self.pid) == self.fds_before, timeout=5,
                 what="qmproxy's descriptors back to %d (now %d)"
                 % (self.fds_before, nfds(self.pid)))

    # ---- the hostile client and its direct twin ----------------------

    def hostile(self, negotiate=True, oob=False, path=None):
        c = Client(path or self.proxy.listen)
        self.addCleanup(c.close)
        self.hostiles.append(c)
        if negotiate:
            c.negotiate(oob=oob)
        return c

    def twin(self, negotiate=True, oob=False):
        """A fresh connection to QEMU's second monitor (one at a time)."""
        if self.direct_client:
            self.direct_client.close()
        c = self.direct_client = Client(self.qemu.monitors[1])
        self.addCleanup(c.close)
        if negotiate:
            c.negotiate(oob=oob)
        return c

    @staticmethod
    def collect(client, inputs, sentinel=True):
        """Send each input, then (if sentinel) a sentinel command; return
        every line each input caused, events left out.  Sending runs in a
        thread of its own: a client that does not read while it writes is
        pushed back by the proxy (QEMU buffers without bound)."""
        out = []
        for i, data in enumerate(inputs):
            tag = b"sentinel-%d" % i
            failed = []

            def send(data=data, tag=tag):
                try:
                    client.send(data)
                    if sentinel:
                        client.send(b'{"execute": "query-version", "id": "' + tag + b'"}')
                except OSError as e:
                    failed.append(e)
            t = threading.Thread(target=send, daemon=True)
            t.start()
            if not sentinel:
                t.join(TIMEOUT)
                continue
            lines = []
            while True:
                line = client.read_line()
                if is_event(line):
                    continue
                if tag in line:
                    break
                lines.append(line)
            t.join(TIMEOUT)
            if failed:
                raise failed[0]
            out.append(lines)
        return out

    def compare(self, name, inputs, negotiate=True, oob=False, each=None, max_latency=None):
        """The hostile client gets what a direct monitor gives, byte for
        byte; `each` says how many lines each input causes, if known.  The
        direct monitor and the proxy are fed at the same time."""
        d = self.twin(negotiate=negotiate, oob=oob)
        h = self.hostile(negotiate=negotiate, oob=oob)
        box = {}

        def direct():
            try:
                box["want"] = self.collect(d, inputs)
            except Exception as e:  # noqa: reported below
                box["error"] = e
        t = threading.Thread(target=direct, daemon=True)
        t.start()
        got = self.collect(h, inputs)
        t.join(300)
        if "error" in box:
            raise box["error"]
        want = box["want"]
        for data, a, b in zip(inputs, want, got):
            shown = data[:120] + (b"..." if len(data) > 120 else b"")
            self.assertEqual(len(a), len(b), "%s: %r: %d replies direct, %d through qmproxy"
                             % (name, shown, len(a), len(b)))
            for x, y in zip(a, b):
                self.assertEqual(x, y, "%s: reply to %r differs" % (name, shown))
            if each is not None:
                self.assertEqual(len(a), each, (name, shown, a[:3]))
        h.close()
        self.kind(name, max_latency)
        return got


# QEMU 7.2 reads its QMP socket one byte per main-loop iteration
# (monitor_can_read() returns 1): about 8 us a byte here, so a 1 MiB
# command takes QEMU ~8 s to read, and every other client of the proxy's
# one monitor waits behind it (see the report of issue 12).  What the
# proxy answers itself is compared at full size; a big command is sent to
# QEMU only at 1 MiB.
FORWARDED_MIB_LATENCY = 60.0


class Sizes(HostileBase):

    def scaled(self, template, fill, size, small=16):
        """The reply QEMU gives to template with a small filler, grown to
        size: QEMU's own bytes, for a text too big to feed it quickly."""
        d = self.twin(negotiate=self.negotiated)
        lines = self.collect(d, [template % (fill * small)])[0]
        return [l.replace(fill * small, fill * size) for l in lines]

    def test_sizes(self):
        # 1 MiB through QEMU (it echoes the id: as big a reply)
        data = b'{"execute": "query-status", "id": "' + b"A" * MiB + b'"}'
        got = self.compare("size: 1 MiB command to QEMU and reply", [data], each=1,
                           max_latency=FORWARDED_MIB_LATENCY)
        self.assertGreater(len(got[0][0]), MiB)
        # 16 MiB texts the proxy answers itself, as QEMU would: before
        # negotiation (the id comes back), and with a bad escape at the end
        for negotiate in (False, True):
            self.negotiated = negotiate
            h = self.hostile(negotiate=negotiate)
            for template in (b'{"execute": "query-status", "id": "%s"}',
                             b'{"execute": "query-status", "id": "%s\\x"}',
                             b'{"execute": "query-status", "id": ["%s", 1e999, {"k": -0.0}]}',
                             b'{"execute": "query-status", "junk": 1, "id": "%s"}'):
                if negotiate and b"\\x" not in template and b"junk" not in template:
                    continue  # a valid command goes to QEMU: 16 MiB would take it minutes
                want = self.scaled(template, b"B", 16 * MiB)
                self.assertEqual(self.collect(h, [template % (b"B" * (16 * MiB))])[0], want,
                                 template)
            h.close()
        self.kind("size: 16 MiB texts answered by the proxy")
        # a single token of 64 MiB + 1 bytes: QEMU's lexer gives up on it
        # once it passes 64 MiB ("token size limit"), then lexes what is
        # left afresh: here 'A"}', QEMU's two errors for that
        self.negotiated = True
        tail = self.collect(self.twin(), [b'A"}'])[0]
        limit = [b'{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}\r\n']
        h = self.hostile()
        big = b'{"execute": "query-status", "id": "' + b"A" * (64 * MiB + 1) + b'"}'
        self.assertEqual(self.collect(h, [big])[0], limit + tail)
        del big
        # 64 MiB of tokens, none of them large: the streamer's limit
        many = b"[" + b",".join([b'"' + b"C" * (MiB - 3) + b'"'] * 64) + b"]"
        got = self.collect(h, [many])[0]
        self.assertEqual(got, limit + self.collect(self.twin(), [b"]"])[0])
        del many
        h.close()
        self.kind("size: one 64 MiB+1 token, 64 MiB of tokens")
        self.finish("sizes")


class MaxMessage(HostileBase):
    """With a small --max-message: a text one byte under is QEMU's to
    answer, one at the limit is refused with QEMU's own words, and what
    follows the refused text is lexed afresh, as QEMU does past its limit."""
    LIMIT = 4096
    proxy_args = ("--max-message", str(LIMIT))

    def message(self, length):
        head = b'{"execute":"query-status","id":"'
        tail = b'"}'
        data = head + b"X" * (length - len(head) - len(tail)) + tail
        self.assertEqual(len(data), length)
        return data

    def test_just_under_and_over(self):
        d = self.twin()
        h = self.hostile()
        # the largest accepted: tokens plus one under the limit
        under = self.message(self.LIMIT - 1)
        want = self.collect(d, [under])
        self.assertEqual(self.collect(h, [under]), want)
        self.assertIn(b'"return"', want[0][0])
        self.kind("max-message: one byte under")
        # at the limit and just over.  QEMU's streamer refuses the first
        # token that brings the text's tokens (plus one) over the limit: if
        # that is the closing brace the text ends there; if it is the id,
        # the closing brace is a text of its own ("expecting value")
        closing = self.collect(d, [b"}"])[0]
        refused = [b'{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}\r\n']
        for length, want in ((self.LIMIT, refused), (self.LIMIT + 1, refused + closing)):
            self.assertEqual(self.collect(h, [self.message(length)]), [want], length)
        self.kind("max-message: at and just over")
        # a single token over the limit: QEMU's lexer cuts it the moment it
        # passes the limit and lexes the rest afresh (here a stray 'X',
        # then recovery up to the closing brace)
        over = self.message(self.LIMIT + 1000)
        rest = over[len(b'{"execute":"query-status","id":"') - 1 + self.LIMIT + 1:]
        self.assertEqual(self.collect(h, [over]), [refused + self.collect(d, [rest])[0]])
        token = b'"' + b"X" * (self.LIMIT + 10) + b'"'
        self.assertEqual(self.collect(h, [token]),
                         [refused + self.collect(d, [b"X" * 10 + b'"'])[0]])
        # and cut at every byte boundary of the reads, the same replies
        for cut in (1, 100, self.LIMIT - 1, self.LIMIT, self.LIMIT + 1, self.LIMIT + 2):
            h.send(token[:cut])
            time.sleep(0.01)
            self.assertEqual(self.collect(h, [token[cut:]]),
                             [refused + self.collect(d, [b"X" * 10 + b'"'])[0]], cut)
        self.kind("max-message: one token over")
        self.finish("max-message")


def nest_array(n):
    return b"[" * n + b"]" * n


def nest_object(n):
    return b'{"a":' * (n - 1) + b"{}" + b"}" * (n - 1)


class Nesting(HostileBase):

    def test_nesting(self):
        for n in (1023, 1024, 1025):
            for shape, make in (("arrays", nest_array), ("objects", nest_object)):
                # as a text of its own, and as an id inside a command
                self.compare("nesting: %d deep %s" % (n, shape), [
                    make(n),
                    b'{"execute": "query-status", "id": ' + make(n - 1) + b"}",
                    b'{"execute": "query-status", "id": ' + make(n) + b"}",
                ])
        t0 = time.monotonic()
        self.compare("nesting: 100000 deep arrays", [nest_array(100000)])
        self.compare("nesting: 100000 deep objects", [nest_object(100000)])
        self.assertLess(time.monotonic() - t0, 90)
        self.finish("nesting")


ENCODINGS = [
    # invalid UTF-8: lone continuation, truncated sequences, 0xF8.. lead bytes
    b'{"execute": "query-status", "id": "\x80"}',
    b'{"execute": "query-status", "id": "\xc3"}',
    b'{"execute": "query-status", "id": "\xe2\x82"}',
    b'{"execute": "query-status", "id": "\xf0\x9f\x98"}',
    b'{"execute": "query-status", "id": "\xf8\x88\x80\x80\x80"}',
    b'{"execute": "query-status", "id": "\xfc\x84\x80\x80\x80\x80"}',
    b'{"execute": "query-stat\xc3\xa9s"}',
    # overlong forms
    b'{"execute": "query-status", "id": "\xc0\xaf"}',
    b'{"execute": "query-status", "id": "\xc1\xbf"}',
    b'{"execute": "query-status", "id": "\xe0\x80\xaf"}',
    b'{"execute": "query-status", "id": "\xf0\x80\x80\xaf"}',
    b'{"execute": "\xc0\xafquery-status"}',
    # modified UTF-8's NUL, alone and in a command name and a key
    b'{"execute": "query-status", "id": "\xc0\x80"}',
    b'{"execute": "query-status\xc0\x80"}',
    b'{"execute": "query-status", "i\xc0\x80d": 1}',
    # surrogates: escaped alone, escaped pairs, encoded
    b'{"execute": "query-status", "id": "\\ud800"}',
    b'{"execute": "query-status", "id": "\\udc00"}',
    b'{"execute": "query-status", "id": "\\ud800x"}',
    b'{"execute": "query-status", "id": "\\ud800\\ud800"}',
    b'{"execute": "query-status", "id": "\\ud83d\\ude00"}',
    b'{"execute": "query-status", "id": "\\udbff\\udfff"}',
    b'{"execute": "query-status", "id": "\\ude00\\ud83d"}',
    b'{"execute": "query-status", "id": "\xed\xa0\x80"}',
    b'{"execute": "query-status", "id": "\xed\xa0\xbd\xed\xb8\x80"}',
    b'{"execute": "query-status", "id": "\\ud8"}',
    # NUL: escaped, raw inside a string, raw between texts
    b'{"execute": "query-status", "id": "\\u0000"}',
    b'{"execute": "query-status", "id": "a\x00b"}',
    b'\x00{"execute": "query-status", "id": "after-nul"}',
    b'{"execute": "query-status", "id": "nul-after"}\x00',
    b'{"execute"\x00: "query-status"}',
    # single quotes, \' in both kinds of strings, mixed quotes
    b"{'execute': 'query-status', 'id': 'sq'}",
    b"{'execute': 'query-status', 'id': 'it\\'s'}",
    b'{"execute": "query-status", "id": "it\\\'s"}',
    b"{'execute': \"query-status\", \"id\": 'mixed \" inside'}",
    b"{'execute': 'query-status', 'id': 'control\x01}",
    b"'\x02",
    # 0xFE/0xFF bytes, alone, in strings, repeated, before a command
    b'\xfe',
    b'\xff',
    b'\xfe\xff\xfe\xff',
    b'{"execute": "query-status", "id": "\xfe"}',
    b'{"execute": "query-status", "id": "\xff\xff"}',
    b'\xff{"execute": "query-status", "id": "after-ff"}',
    # byte order marks: UTF-8, UTF-16 both ways, inside a string
    b'\xef\xbb\xbf{"execute": "query-status", "id": "bom"}',
    b'\xfe\xff{"execute": "query-status", "id": "bom16be"}',
    b'\xff\xfe{"execute": "query-status", "id": "bom16le"}',
    b'{"execute": "query-status", "id": "\xef\xbb\xbf"}',
    b'{"execute": "query-status", "id": "\\ufeff"}',
    # noncharacters, the replacement character, the last code points
    b'{"execute": "query-status", "id": "\xef\xbf\xbe\xef\xbf\xbf"}',
    b'{"execute": "query-status", "id": "\xef\xbf\xbd"}',
    b'{"execute": "query-status", "id": "\xf4\x8f\xbf\xbf"}',
    b'{"execute": "query-status", "id": "\xf4\x90\x80\x80"}',
    # control characters raw in strings and escaped
    b'{"execute": "query-status", "id": "tab\there"}',
    b'{"execute": "query-status", "id": "\x1f"}',
    b'{"execute": "query-status", "id": "\\u001f\\b\\f\\n\\r\\t\\/\\\\\\""}',
    b'{"execute": "query-status", "id": "\x7f"}',
    b'{"execute": "query-status", "id": "\\x41"}',
    b'{"execute": "query-status", "id": "\\u00"}',
]


class Encodings(HostileBase):

    def test_encodings(self):
        groups = [
            ("encoding: invalid UTF-8", ENCODINGS[0:7]),
            ("encoding: overlong forms", ENCODINGS[7:12]),
            ("encoding: \\xC0\\x80 (modified UTF-8 NUL)", ENCODINGS[12:15]),
            ("encoding: surrogates alone and paired", ENCODINGS[15:25]),
            ("encoding: NUL bytes and \\u0000", ENCODINGS[25:30]),
            ("encoding: single quotes and \\' escapes", ENCODINGS[30:36]),
            ("encoding: 0xFE/0xFF bytes", ENCODINGS[36:42]),
            ("encoding: byte order marks", ENCODINGS[42:47]),
            ("encoding: noncharacters and control characters", ENCODINGS[47:]),
        ]
        self.assertEqual(sum(len(g) for _, g in groups), len(ENCODINGS))
        for name, inputs in groups:
            self.compare(name, inputs)
        self.finish("encodings")


IDS = [
    b'"string"', b'""', b'"\\u00e9\\ud83d\\ude00 \xc3\xa9"',
    b'0', b'1', b'-1', b'9223372036854775807', b'-9223372036854775808',
    b'9223372036854775808', b'18446744073709551615',
    b'18446744073709551616', b'-9223372036854775809',
    b'123456789012345678901234567890123456789012345678901234567890',
    b'-123456789012345678901234567890',
    b'0.1', b'1.5', b'-0.0', b'1e3', b'1E-3', b'2.5e+10', b'5e-324', b'1e-400',
    b'1.7976931348623157e308', b'0.30000000000000004', b'100000000000000000000.0',
    b'1e999', b'-1e999', b'[1e999, -1e999, {"x": 1e999}]',
    b'null', b'true', b'false',
    b'[]', b'{}', b'[1, "two", 3.0, null, true, [], {}]',
    b'{"b": 1, "a": 2, "execute": "x", "id": {"id": null}, "zz": [0.5]}',
    b'{"' + b'k' * 300 + b'": "long key"}',
    b'"' + b"long id " * 5000 + b'"',
]


def deep_id(n):
    return b"[" * n + b'"deep"' + b"]" * n


class Ids(HostileBase):
    """Ids of every type, on commands QEMU answers, on errors the proxy
    answers itself, and on exec-oob (whose id the proxy replaces and
    restores): each reply as QEMU writes it."""

    def test_ids(self):
        def forms(ident):
            return [
                b'{"execute": "query-status", "id": ' + ident + b'}',
                b'{"id": ' + ident + b', "execute": "no-such-command"}',
                b'{"execute": "query-status", "junk": 1, "id": ' + ident + b'}',
                b'{"execute": "qmp_capabilities", "id": ' + ident + b'}',
                b'{"execute": "query-status", "arguments": [], "id": ' + ident + b'}',
            ]
        self.compare("ids: strings", sum((forms(i) for i in IDS[0:3]), []))
        self.compare("ids: integers, negative, int64 edges", sum((forms(i) for i in IDS[3:10]), []))
        self.compare("ids: huge integers beyond int64/uint64", sum((forms(i) for i in IDS[10:14]), []))
        self.compare("ids: floats", sum((forms(i) for i in IDS[14:25]), []))
        self.compare("ids: 1e999 and -1e999 (inf)", sum((forms(i) for i in IDS[25:28]), []))
        self.compare("ids: null, true, false", sum((forms(i) for i in IDS[28:31]), []))
        self.compare("ids: arrays and objects", sum((forms(i) for i in IDS[31:]), []))
        self.compare("ids: deeply nested", [
            b'{"execute": "query-status", "id": ' + deep_id(1000) + b'}',
            b'{"execute": "query-status", "id": ' + deep_id(1023) + b'}',
            b'{"execute": "query-status", "id": ' + deep_id(1024) + b'}',
            b'{"execute": "no-such", "id": ' + deep_id(1023) + b'}',
        ])
        # exec-oob: the proxy sends its own id up and writes the client's
        # back itself, so this is where its writer must be QEMU's
        oob = [b'{"exec-oob": "migrate-pause", "id": ' + i + b'}' for i in IDS]
        oob += [b'{"exec-oob": "no-such-command", "id": ' + i + b'}' for i in IDS[::3]]
        oob += [b'{"exec-oob": "migrate-pause", "id": ' + deep_id(1023) + b'}']
        self.compare("ids: every type on exec-oob", oob, oob=True, each=1)
        self.finish("ids")


class ExecOob(HostileBase):

    def test_exec_oob_abuse(self):
        # without negotiating oob (QEMU refuses the member)
        self.compare("exec-oob: without negotiation", [
            b'{"exec-oob": "migrate-pause", "id": 1}',
            b'{"exec-oob": "query-status"}',
            b'{"exec-oob": "no-such-command", "id": "x"}',
            b'{"execute": "query-status", "exec-oob": "query-status"}',
            b'{"exec-oob": 1}',
            b'{"exec-oob": null, "id": null}',
        ])
        # negotiated: unknown commands, commands that are not oob-capable,
        # both members, wrong types, qmp_capabilities out of band
        self.compare("exec-oob: unknown and not oob-capable commands", [
            b'{"exec-oob": "no-such-command", "id": 1}',
            b'{"exec-oob": "", "id": 2}',
            b'{"exec-oob": "query-status", "id": 3}',
            b'{"exec-oob": "quit", "id": 4}',
            b'{"exec-oob": "qmp_capabilities", "id": 5}',
            b'{"exec-oob": "migrate-pause", "execute": "query-status", "id": 6}',
            b'{"exec-oob": ["migrate-pause"], "id": 7}',
            b'{"exec-oob": "migrate-pause", "arguments": {"x": 1}, "id": 8}',
            b'{"exec-oob": "migrate-pause", "arguments": [], "id": 9}',
            b'{"exec-oob": "migrate-pause", "junk": 1, "id": 10}',
            b'{"exec-oob": "migrate-pause", "id": 11, "control": {"run-oob": true}}',
        ], oob=True)
        # a flood of exec-oob, and one with in-band commands mixed in:
        # every reply comes, each with its own id
        n = 2000
        flood = b"".join(b'{"exec-oob": "migrate-pause", "id": %d}' % k for k in range(n))
        d = self.twin(oob=True)
        h = self.hostile(oob=True)
        t0 = time.monotonic()
        want = self.collect(d, [flood])[0]
        got = self.collect(h, [flood])[0]
        self.assertEqual(len(want), n)
        self.assertEqual(got, want)
        self.assertLess(time.monotonic() - t0, 60)
        self.kind("exec-oob: flood of %d" % n)
        mixed = b"".join(b'{"exec-oob": "migrate-pause", "id": "o%d"}'
                         b'{"execute": "query-version", "id": "i%d"}' % (k, k)
                         for k in range(500))
        h.send(mixed)
        ids = [h.read_reply()["id"] for _ in range(1000)]
        self.assertEqual(sorted(ids), sorted(["o%d" % k for k in range(500)]
                                             + ["i%d" % k for k in range(500)]))
        inband = [i for i in ids if i.startswith("i")]
        self.assertEqual(inband, ["i%d" % k for k in range(500)])
        self.kind("exec-oob: flood mixed with in-band")
        self.finish("exec-oob")


class Protocol(HostileBase):

    def test_protocol_abuse(self):
        self.compare("protocol: commands before qmp_capabilities", [
            b'{"execute": "query-status", "id": 1}',
            b'{"execute": "quit"}',
            b'{"execute": "stop", "id": "stop"}',
            b'{"execute": "no-such-command"}',
            b'{"execute": "qmproxy-query-chain", "id": 2}',
            b'{"exec-oob": "migrate-pause", "id": 3}',
            b'{"execute": "human-monitor-command", "arguments": {"command-line": "quit"}}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": ["bogus"]}, "id": 4}',
        ], negotiate=False)
        self.compare("protocol: a second qmp_capabilities", [
            b'{"execute": "qmp_capabilities"}',
            b'{"execute": "qmp_capabilities", "id": "again"}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}',
            b'{"execute": "qmp_capabilities", "arguments": {"enable": ["bogus"]}}',
            b'{"execute": "qmp_capabilities", "arguments": {"x": 1}}',
            b'{"exec-oob": "qmp_capabilities"}',
        ])
        self.compare("protocol: unknown members next to execute", [
            b'{"execute": "query-status", "junk": 1}',
            b'{"execute": "query-status", "junk": 1, "more": 2, "id": 1}',
            b'{"execute": "query-status", "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, '
            b'"g": 7, "h": 8, "i": 9, "j": 10, "k": 11, "l": 12, "m": 13, "n": 14, '
            b'"o": 15, "p": 16, "q": 17, "r": 18, "s": 19}',
            b'{"execute": "query-status", "arguments": {}, "id": 2, "control": 1}',
            b'{"execute": "query-status", "Execute": "x"}',
            b'{"execute": "query-status", "": 1}',
            b'{"execute": "query-status", "\\u0065xecute": "x"}',
            b'{"execute": "query-status", "arguments": {"junk": 1}}',
            b'{"arguments": {}, "id": 3}',
            b'{"id": 4}',
            b'{}',
        ])
        self.compare("protocol: execute of the wrong type", [
            b'{"execute": 1}', b'{"execute": 1.5, "id": 1}', b'{"execute": null}',
            b'{"execute": true}', b'{"execute": ["query-status"]}',
            b'{"execute": {"query-status": 1}}', b'{"execute": ""}',
            b'{"execute": "query-status\\u0000"}', b'{"execute": " query-status"}',
            b'{"execute": "QUERY-STATUS"}', b'{"execute": "' + b"q" * 100000 + b'"}',
            b'["execute", "query-status"]', b'"query-status"', b'42', b'null',
        ])
        self.compare("protocol: whitespace only, garbage between messages", [
            b" \t\r\n" * 1000,
            b"garbage",
            b'{"execute": "query-status", "id": 1} garbage {"execute": "query-status", "id": 2}',
            b"@#$%^&*",
            b"\x01\x02\x03\x1b[0m]",
            b"}}}]]]",
            b",,,:::",
            b"tru fals nul undefined NaN Infinity",
            b"0x10 -- +1 .5 01",
            b'{"execute": "query-status", "id": 3}\r\n\r\n\t\t{"execute": "query-status", "id": 4}',
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ])
        self.finish("protocol")


class Floods(HostileBase):

    def test_pipelined_flood(self):
        """10,000 commands without reading replies, then reading them."""
        version = self.worker.version
        n = 10000
        h = self.hostile()
        data = b"".join(b'{"execute": "query-version", "id": %d}' % k for k in range(n))
        sent = threading.Event()
        box = []

        def sender():
            try:
                h.sock.sendall(data)   # blocks while the proxy pushes back
                sent.set()
            except OSError as e:
                box.append(e)
        t = threading.Thread(target=sender, daemon=True)
        t0 = time.monotonic()
        t.start()
        # the proxy stops reading a client that does not read its replies
        time.sleep(2)
        self.worker.check("flood: while 10,000 commands wait unread")
        peak = proc_status(self.pid, "VmRSS")
        for k in range(n):
            r = h.read_reply()
            self.assertEqual(r, {"return": version, "id": k})
            if time.monotonic() - t0 > 120:
                self.fail("flood: replies too slow (%d of %d)" % (k, n))
        t.join(30)
        self.assertTrue(sent.is_set(), box)
        print("\nflood: %d commands in %.1fs, RSS while unread %d KiB"
              % (n, time.monotonic() - t0, peak), file=sys.stderr)
        self.kind("flood: 10,000 pipelined commands unread")
        # a flood that is never read at all, then dropped
        h2 = self.hostile()
        h2.sock.settimeout(5)
        try:
            h2.sock.sendall(b'{"execute": "query-qmp-schema"}' * 2000)
        except (socket.timeout, OSError):
            pass
        time.sleep(1)
        self.worker.check("flood: schema flood unread")
        h2.close()
        self.kind("flood: schema flood never read, then closed")
        self.finish("floods")

    def test_slow_reader(self):
        """A client reading a byte every 10 ms while events and a large
        reply are due to it; afterwards it has every byte, in order."""
        slow = self.hostile()
        eventer = self.hostile()
        slow.send(b'{"execute": "query-qmp-schema", "id": "schema"}')
        slow.send(b'{"execute": "query-status", "id": "after-schema"}')
        stop = threading.Event()
        sent_events = []

        def make_events():
            for k in range(200):
                if stop.is_set():
                    return
                for cmd in ("stop", "cont"):
                    eventer.send({"execute": cmd, "id": "%s%d" % (cmd, k)})
                    r = eventer.read_reply()
                    if r.get("id") != "%s%d" % (cmd, k):
                        sent_events.append(("bad reply", r))
                        return
                sent_events.append(k)
                time.sleep(0.01)
        t = threading.Thread(target=make_events, daemon=True)
        t.start()
        got = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            chunk = slow.sock.recv(1)
            if not chunk:
                break
            got += chunk
            time.sleep(0.01)
        stop.set()
        t.join(30)
        self.worker.check("slow reader")
        self.assertTrue(sent_events and all(isinstance(k, int) for k in sent_events), sent_events[-3:])
        # now read the rest quickly: the schema, the status, every event
        slow.buf = got
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = slow.read_line()
            lines.append(line)
            if b'"after-schema"' in line:
                break
        replies = [json.loads(l) for l in lines if not is_event(l)]
        self.assertEqual([r.get("id") for r in replies], ["schema", "after-schema"])
        # (events may come before it: the other client's stop and cont)
        schema = next(l for l in lines if not is_event(l))
        self.assertGreater(len(schema), 100000)
        # the events it was sent are all there, STOP and RESUME alternating
        slow.send(b'{"execute": "query-status", "id": "last"}')
        while True:
            line = slow.read_line()
            if b'"last"' in line and not is_event(line):
                break
            lines.append(line)
        events = [json.loads(l)["event"] for l in lines if is_event(l)]
        self.assertEqual(events, ["STOP", "RESUME"] * len(sent_events))
        self.kind("slow reader (1 byte / 10 ms) while events arrive")
        self.finish("slow reader")


class Disconnects(HostileBase):

    def test_disconnects(self):
        halves = [
            b'{"execute": "query-sta',
            b'{"execute": "query-status", "id": "\xc3',
            b'{"execute": "query-status", "id": "\\u12',
            b'{"execute": "query-status", "id": [[[[',
            b"{'execute': 'query-status",
            b'{"execute": "query-status", "id": "' + b"x" * (4 * MiB),
            b'{"execute": "query-status", "arguments": {"a": 1e',
            b'{"execute": "query-status"',
            b'{"execute": "human-monitor-command", "arguments": {"command-line": "stop"}',
        ]
        for data in halves:
            h = self.hostile()
            h.send(data)
            time.sleep(0.05)
            h.close()
        self.kind("half messages, then disconnect")
        # half a message before negotiating, and before even reading the greeting
        for data in halves[:4]:
            h = self.hostile(negotiate=False)
            h.send(data)
            h.close()
            h = QMPClient(self.proxy.listen, read_greeting=False)
            h.send(data)
            h.close()
        self.kind("half messages unnegotiated, then disconnect")
        # many commands in flight, then gone (in-band, exec-oob, big replies)
        for k in range(5):
            h = self.hostile(oob=True)
            h.send(b"".join(b'{"execute": "human-monitor-command", "id": %d, '
                            b'"arguments": {"command-line": "info version"}}' % i
                            for i in range(500)))
            h.send(b"".join(b'{"exec-oob": "migrate-pause", "id": %d}' % i for i in range(50)))
            h.send(b'{"execute": "query-qmp-schema"}' * 20)
            time.sleep(0.02 * k)
            h.close()
        self.kind("disconnect with many commands in flight")
        # rapid connect/disconnect: before the greeting, after it, after
        # negotiating, with a reset instead of a close (bounded: 300, 20 s)
        t0 = time.monotonic()
        count = 0
        for k in range(300):
            if time.monotonic() - t0 > 20:
                break
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(self.proxy.listen)
            mode = k % 4
            if mode == 1:
                s.recv(1)
            elif mode == 2:
                s.sendall(b'{"execute": "qmp_capabilities"}{"execute": "query-status"}')
            elif mode == 3:
                import struct
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.sendall(b'{"execute": "qmp_capabilities"}')
            s.close()
            count += 1
        self.assertGreaterEqual(count, 50)
        print("\nrapid connect/disconnect: %d in %.1fs" % (count, time.monotonic() - t0),
              file=sys.stderr)
        self.kind("rapid connect/disconnect (%d)" % count)
        self.finish("disconnects")


class FdPassing(HostileBase):

    def fds(self, n):
        out = []
        for _ in range(n):
            r, w = os.pipe()
            os.close(w)
            out.append(r)
        self.addCleanup(lambda: [os.close(f) for f in out])
        return out

    def test_fd_junk(self):
        # descriptors with no command (one space), then gone
        h = self.hostile()
        h.send(b" ", fds=self.fds(1))
        h.send(b" ", fds=self.fds(3))
        time.sleep(0.1)
        h.close()
        self.kind("SCM_RIGHTS with no command, then disconnect")
        # 20 descriptors at once (more than QEMU's chardev takes), with junk
        h = self.hostile()
        h.send(b"\n", fds=self.fds(20))
        h.send(b"garbage", fds=self.fds(20))
        for k in range(10):
            h.send(b" ", fds=self.fds(10))
        h.send(b'{"execute": "query-status", "id": "with-fds"}', fds=self.fds(20))
        replies = []
        while not replies or replies[-1].get("id") != "with-fds":
            replies.append(h.read_reply())
        # "garbage" is QEMU's parse error; nothing else
        self.assertEqual(len(replies), 2, replies)
        self.assertIn("invalid keyword", replies[0]["error"]["desc"])
        h.close()
        self.kind("SCM_RIGHTS: 20 descriptors at once, repeatedly")
        # with a command that takes one: getfd with 20, then without
        d = self.twin()
        h = self.hostile()
        for c in (d, h):
            c.send(b'{"execute": "getfd", "arguments": {"fdname": "twenty"}, "id": 1}',
                   fds=self.fds(20))
            c.send(b'{"execute": "getfd", "arguments": {"fdname": "none"}, "id": 2}')
            c.send(b'{"execute": "closefd", "arguments": {"fdname": "twenty"}, "id": 3}')
        self.assertEqual([h.read_reply_raw() for _ in range(3)],
                         [d.read_reply_raw() for _ in range(3)])
        h.close()
        self.kind("SCM_RIGHTS: getfd with 20 descriptors")
        self.finish("fd passing")

    def test_fds_left_in_qemu_reach_another_client(self):
        """A client's descriptors that go up with a command that does not
        take them stay in QEMU's chardev, shared by every client: the next
        getfd of any other client takes them.  A direct monitor is a
        chardev of its own, so there the other client is told that it
        passed no descriptor."""
        victim = self.hostile()
        want = self.twin().cmd("getfd", {"fdname": "mine"}, id="v")
        self.assertEqual(want["error"]["desc"], "No file descriptor supplied via SCM_RIGHTS")
        carriers = [
            b'{"execute": "query-status", "id": "carrier"}',
            b'{"execute": "no-such-command", "id": "carrier"}',
            b'{"execute": "getfd", "arguments": {"fdname": 1}, "id": "carrier"}',
            b'{"execute": "getfd", "id": "carrier"}',
            b'{"execute": "add-fd", "arguments": {"fdset-id": "x"}, "id": "carrier"}',
            b'{"execute": "human-monitor-command", "id": "carrier", '
            b'"arguments": {"command-line": "getfd x"}}',
        ]
        for carrier in carriers:
            h = self.hostile()
            h.send(carrier, fds=self.fds(1))
            self.assertEqual(h.read_reply()["id"], "carrier")
            got = victim.cmd("getfd", {"fdname": "mine"}, id="v")
            self.assertEqual(got, want, "after %s with a descriptor, another client's "
                             "getfd without one" % carrier)
            h.close()
        self.kind("SCM_RIGHTS: descriptors with a command that does not take them")

    def test_descriptors_wait_for_their_clients_getfd(self):
        """What a direct monitor does: a descriptor sent with a command
        that does not take it is there for the same client's next getfd."""
        replies = {}
        for name, c in (("direct", self.twin()), ("proxy", self.hostile())):
            c.send(b'{"execute": "query-status", "id": 1}', fds=self.fds(1))
            c.send(b'{"execute": "getfd", "arguments": {"fdname": 1}, "id": 2}', fds=self.fds(1))
            c.send(b'{"execute": "getfd", "arguments": {"fdname": "later"}, "id": 3}')
            c.send(b'{"execute": "getfd", "arguments": {"fdname": "again"}, "id": 4}')
            c.send(b'{"execute": "closefd", "arguments": {"fdname": "later"}, "id": 5}')
            replies[name] = [c.read_reply_raw() for _ in range(5)]
        self.assertEqual(replies["proxy"], replies["direct"])
        self.assertEqual(json.loads(replies["direct"][2]), {"return": {}, "id": 3})
        self.kind("SCM_RIGHTS: descriptors wait for the client's own getfd")
        self.finish("own getfd")


    def add_fd_inode(self, client, qemu_pid, fds_with_cmd, junk_fds=()):
        """Pass junk_fds (each batch with a space), then add-fd with
        fds_with_cmd; return the pipe inode of the descriptor QEMU put in
        the new fdset (read in /proc before it is removed again)."""
        for batch in junk_fds:
            client.send(b" ", fds=batch)
            time.sleep(0.05)
        client.send(b'{"execute": "add-fd", "id": "add"}', fds=fds_with_cmd)
        r = client.read_reply()
        self.assertEqual(r.get("id"), "add", r)
        ino = os.stat("/proc/%d/fd/%d" % (qemu_pid, r["return"]["fd"])).st_ino
        client.cmd("remove-fd", {"fdset-id": r["return"]["fdset-id"]})
        return ino

    def test_which_descriptor_qemu_gets(self):
        """QEMU's chardev keeps the descriptors of the last message that
        brought some, and add-fd takes the first of them: descriptors sent
        earlier with junk are replaced, not queued in front."""
        qpid = self.qemu.proc.pid
        for name, client in (("direct", self.twin()), ("proxy", self.hostile())):
            older, newer = self.fds(1), self.fds(1)
            got = self.add_fd_inode(client, qpid, newer, junk_fds=[older])
            which = {os.fstat(older[0]).st_ino: "older (sent with junk)",
                     os.fstat(newer[0]).st_ino: "newer (sent with add-fd)"}.get(got, "neither")
            print("\n%s: add-fd took the %s descriptor" % (name, which), file=sys.stderr)
            self.assertEqual(which, "newer (sent with add-fd)", name)
        self.kind("SCM_RIGHTS: junk descriptors, then add-fd with its own")
        self.finish("which descriptor")


    def test_getfd_race_between_clients(self):
        """Two clients at once: one's getfd without a descriptor, then the
        other's with one.  A direct monitor each would tell the first that
        it passed none.  Through the proxy both go up the one socket; QEMU
        (oob negotiated) reads on while the first waits to be dispatched,
        takes the descriptor in with the first byte of the second, and
        the first getfd gets it.  Not fixed: the proxy would have to hold
        a command that carries descriptors until QEMU has answered every
        earlier one (upstream-queue.c); see the report of issue 12.  Stops at
        the first wrong answer (seen in ~7% of the rounds here)."""
        a, b = self.hostile(), self.hostile()
        t0 = time.monotonic()
        for k in range(500):
            if time.monotonic() - t0 > 30:
                break
            b.send(b'{"execute": "getfd", "arguments": {"fdname": "b%d"}, "id": "b%d"}' % (k, k))
            a.send(b'{"execute": "getfd", "arguments": {"fdname": "a%d"}, "id": "a%d"}' % (k, k),
                   fds=self.fds(1))
            ra, rb = a.read_reply(), b.read_reply()
            if "return" not in ra or "error" not in rb:
                print("\ngetfd race, round %d: the descriptor went to the other client: "
                      "%s / %s" % (k, ra, rb), file=sys.stderr)
            self.assertEqual((ra, rb["error"]["desc"] if "error" in rb else rb),
                             ({"return": {}, "id": "a%d" % k},
                              "No file descriptor supplied via SCM_RIGHTS"), k)
            a.cmd("closefd", {"fdname": "a%d" % k})
        self.kind("SCM_RIGHTS: two clients' getfd at once, one with a descriptor")
        self.finish("getfd race")

    @unittest.expectedFailure
    def test_descriptor_names_are_per_client(self):
        """getfd names live on a monitor: a direct client cannot see, use
        or close another monitor's.  Through the proxy every client shares
        the proxy's one monitor, so one client closes (or uses) the
        descriptor another named.  Not fixed: the proxy would have to give
        each client names of its own (rewrite fdname, fd:NAME and every
        argument naming one), not a small change; see the report of
        issue 12."""
        owner, other = self.hostile(), self.hostile()
        owner.send(b'{"execute": "getfd", "arguments": {"fdname": "migrate"}, "id": 1}',
                   fds=self.fds(1))
        self.assertEqual(owner.read_reply(), {"return": {}, "id": 1})
        want = self.twin().cmd("closefd", {"fdname": "migrate"}, id=2)
        got = other.cmd("closefd", {"fdname": "migrate"}, id=2)
        self.assertEqual(got, want)

POLICY = """<?xml version="1.0"?>
<policy>
  <listeners default-role="full">
    <listener name="ro" role="monitor"/>
  </listeners>
</policy>
"""


class ReadOnlyQuit(HostileBase):
    """A read-only seat (the built-in `monitor` role) tries to quit QEMU
    every way it can be spelled; QEMU must not see one."""

    def start_proxy(self, args=None, **kw):
        policy = os.path.join(self.workdir, "policy.xml")
        with open(policy, "w") as f:
            f.write(POLICY)
        self.ro = os.path.join(self.workdir, "ro.sock")
        p = super().start_proxy(args=["--policy", policy, "--listen", "ro=unix:" + self.ro])
        wait_for(lambda: os.path.exists(self.ro), what="the ro listener")
        return p

    def test_quit_from_read_only(self):
        h = self.hostile(path=self.ro, oob=True)
        attempts = [
            b'{"execute": "quit"}',
            b'{"execute": "quit", "id": "q"}',
            b"{'execute': 'quit'}",
            b'{"execute": "qu\\u0069t"}',
            b'{"execute": "\\u0071\\u0075\\u0069\\u0074", "id": 1e999}',
            b'{"id": "x", "execute": "quit", "arguments": {}}',
            b'{"execute": "human-monitor-command", "arguments": {"command-line": "quit"}}',
            b'{"execute": "human-monitor-command", "arguments": {"command-line": "q"}}',
            b'{"execute": "transaction", "arguments": {"actions": []}}',
            b'{"execute": "stop"}',
            b'{"execute": "system_reset"}',
            b'{"execute": "system_powerdown"}',
            b'{"execute": "qom-set", "arguments": {"path": "/machine", "property": "x", "value": 1}}',
            b'{"execute": "device_del", "arguments": {"id": "x"}}',
        ]
        for a in attempts:
            h.send(a)
            r = h.read_reply_raw()
            self.assertIn(b"not allowed by policy", r, (a, r))
        # out of band, QEMU's own answer (quit is not oob-capable)
        h.send(b'{"exec-oob": "quit", "id": "oob"}')
        r = h.read_reply()
        self.assertIn("error", r)
        # malformed or duplicated: QEMU's parse errors, never a quit
        for a in (b'{"execute": "quit", "execute": "quit"}', b'{"execute": "quit"',
                  b'}', b'{"execute": "quit" "id": 1}'):
            h.send(a)
        h.send(b'{"execute": "query-status", "id": "still"}')
        while True:
            r = h.read_reply()
            self.assertNotEqual(r, {"return": {}}, "a quit went through")
            if r.get("id") == "still":
                break
        self.assertIsNone(self.qemu.proc.poll(), "QEMU quit")
        self.kind("quit from a read-only (monitor) seat, every spelling")
        self.assertIn("status", self.direct().ok("query-status"))
        self.finish("read-only quit")


def tearDownModule():
    kinds = sorted(set(KINDS))
    print("\nhostile kinds exercised: %d\n  %s" % (len(kinds), "\n  ".join(kinds)),
          file=sys.stderr)


class QemuAssertions(ProxyTestCase):
    """Commands QEMU answers by aborting (found running QEMU 10.0's iotests
    by hand): qmproxy refuses them with a GenericError and the VM lives."""

    def test_blockdev_reopen_of_no_node(self):
        c = self.client()
        # QEMU 7.2 and 10.0.2 abort in bdrv_reopen_multiple() on this
        r = c.cmd("blockdev-reopen", {"options": []})
        self.assertEqual(r["error"]["class"], "GenericError", r)
        self.assertIn("lists no node to reopen", r["error"]["desc"])
        self.assertIsNone(self.qemu.proc.poll())
        self.assertIn("status", c.ok("query-status"))
        # a real reopen still reaches QEMU (and fails there on a bad node)
        r = c.cmd("blockdev-reopen", {"options": [{"driver": "qcow2",
                                                   "node-name": "no-such-node"}]})
        self.assertEqual(r["error"]["class"], "GenericError", r)
        self.assertNotIn("lists no node", r["error"]["desc"])
        self.assertIsNone(self.qemu.proc.poll())


if __name__ == "__main__":
    unittest.main(verbosity=2)
