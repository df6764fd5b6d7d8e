"""Helpers for qmproxy's integration tests: a real QEMU 7.2 in either of
the two shapes the design names, qmproxy in front of it, and raw QMP
clients that see exactly the bytes on the wire.

Only the Python standard library is used, so a fresh Debian machine needs
nothing beyond python3.
"""
import array
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("QMPROXY_BUILD", os.path.join(ROOT, "build"))
QMPROXY = os.environ.get("QMPROXY_BIN", os.path.join(BUILD, "qmproxy"))
QEMU_BIN = os.environ.get("QEMU_BIN", shutil.which("qemu-system-x86_64") or "qemu-system-x86_64")
QEMU_IMG = shutil.which("qemu-img") or "qemu-img"
QEMU_IO = shutil.which("qemu-io") or "qemu-io"

TIMEOUT = float(os.environ.get("QMPTEST_TIMEOUT", "20"))


def qemu_version():
    """The QEMU these tests run against, as its -version says."""
    out = subprocess.run([QEMU_BIN, "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown QEMU at %s" % QEMU_BIN


_announced = False


def announce_qemu():
    """Say once, on stderr, which QEMU a test run used (bisecting)."""
    global _announced
    if not _announced:
        _announced = True
        import sys
        print("qmptest: %s (%s)" % (qemu_version(), QEMU_BIN), file=sys.stderr)

SHAPES = ("none", "q35")


def wait_for(predicate, timeout=TIMEOUT, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def qemu_img(*args):
    return subprocess.run([QEMU_IMG] + list(args), check=True,
                          capture_output=True, text=True).stdout


def write_policy(path, body):
    """A policy file with body inside <policy>."""
    with open(path, "w") as f:
        f.write('<?xml version="1.0"?>\n<policy>\n%s\n</policy>\n' % body)


def _serves(path):
    """Whether the QMP monitor at path greets a connection now (closed at
    once: the monitor then serves its next client).  A connection that is
    only accepted is not enough: QEMU sets its monitors up in an I/O
    thread, and a client it takes in while that is under way can be
    greeted twice and then never read (QEMU 7.2 did this to qmproxy about
    once in 2,000 starts).  Once a monitor has greeted, it is set up."""
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return s.recv(1) != b""
    except (ConnectionRefusedError, FileNotFoundError, BlockingIOError,
            socket.timeout):
        return False
    finally:
        s.close()


class QEMU:
    """A throwaway QEMU with one disk per image and several QMP monitors.

    shape "none": -M none with -drive if=none,id=diskN (legacy device names)
    shape "q35":  -M q35 -S -nodefaults with -blockdev and virtio-blk-pci
                  (how current libvirt runs QEMU; device names are empty,
                  the qdev ids are diskN)
    """

    def __init__(self, workdir, shape="none", disks=1, monitors=2,
                 disk_size="64M", extra_args=(), image_dir=None, drive_opts="",
                 wrapper=()):
        self.workdir = workdir
        self.shape = shape
        self.monitors = [os.path.join(workdir, "qmp%d.sock" % i) for i in range(monitors)]
        self.images = []
        image_dir = image_dir or workdir
        os.makedirs(image_dir, exist_ok=True)
        for i in range(disks):
            img = os.path.join(image_dir, "disk%d.qcow2" % i)
            if not os.path.exists(img):
                qemu_img("create", "-q", "-f", "qcow2", img, disk_size)
            self.images.append(img)
        announce_qemu()
        args = [QEMU_BIN, "-nodefaults", "-display", "none", "-no-user-config"]
        if shape == "none":
            args += ["-M", "none"]
            for i, img in enumerate(self.images):
                args += ["-drive", "if=none,id=disk%d,file=%s,format=qcow2%s"
                         % (i, img, drive_opts)]
        elif shape == "q35":
            args += ["-M", "q35", "-S", "-m", "64"]
            for i, img in enumerate(self.images):
                args += ["-blockdev",
                         "driver=file,filename=%s,node-name=file%d" % (img, i),
                         "-blockdev",
                         "driver=qcow2,file=file%d,node-name=fmt%d" % (i, i),
                         "-device", "virtio-blk-pci,drive=fmt%d,id=disk%d" % (i, i)]
        else:
            raise ValueError(shape)
        for m in self.monitors:
            args += ["-qmp", "unix:%s,server=on,wait=off" % m]
        args += list(extra_args)
        self.log = open(os.path.join(workdir, "qemu.log"), "ab")
        # wrapper: a command prefix, such as another host's `ip netns exec`
        self.proc = subprocess.Popen(list(wrapper) + args, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        # QEMU binds a monitor's socket a moment before it listens on it,
        # and greets only once the monitor is set up: wait for a greeting
        # from each one, not just for its file
        wait_for(lambda: all(_serves(m) for m in self.monitors) or self.proc.poll() is not None,
                 what="QEMU's monitor sockets")
        if self.proc.poll() is not None:
            raise RuntimeError("QEMU exited: %s" % self.read_log())

    def disk(self, i=0):
        """How a QMP client names disk i in this shape."""
        return "disk%d" % i

    def io(self, client, i, command):
        """qemu-io on disk i as the guest sees it (through its BlockBackend,
        so it follows pivots); returns qemu-io's output."""
        if self.shape == "none":
            line = 'qemu-io disk%d "%s"' % (i, command)
        else:
            # the qdev id names the PCI proxy; the disk is its backend
            line = 'qemu-io -d /machine/peripheral/disk%d/virtio-backend "%s"' % (i, command)
        return client.hmp(line)

    def device_arg(self, i=0):
        """The 'device' argument block jobs take for disk i."""
        return "disk%d" % i if self.shape == "none" else "fmt%d" % i

    def read_log(self):
        with open(os.path.join(self.workdir, "qemu.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class Proxy:
    """qmproxy in front of a QEMU monitor socket."""

    def __init__(self, workdir, upstream, listen=None, args=(), env=None,
                 name="proxy", wait=True, pass_fds=(), binary=None, wrapper=()):
        self.workdir = workdir
        self.listen = listen or os.path.join(workdir, "%s.sock" % name)
        self.stderr_path = os.path.join(workdir, "%s.stderr" % name)
        self.stderr = open(self.stderr_path, "ab")
        cmd = [binary or QMPROXY, "--upstream", "unix:" + upstream, "-v"]
        if listen is not False:
            cmd += ["--listen", "unix:" + self.listen]
        cmd += list(args)
        self.cmd = cmd
        self.proc = subprocess.Popen(list(wrapper) + cmd, stdout=subprocess.PIPE,
                                     stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, env=env, pass_fds=pass_fds)
        if wait and listen is not False:
            wait_for(lambda: os.path.exists(self.listen) or self.proc.poll() is not None,
                     what="qmproxy's socket")
            if self.proc.poll() is not None:
                raise RuntimeError("qmproxy exited: %s" % self.read_stderr())

    def read_stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def client(self, path=None, **kw):
        """A QMPClient of this qmproxy, its greeting read.  A client that
        gets no greeting says why only in qmproxy's log, which the test's
        cleanup deletes: the failure shows its end."""
        try:
            return QMPClient(path or self.listen, **kw)
        except (socket.timeout, OSError) as e:
            raise AssertionError("no greeting from qmproxy (%s); its log ends:\n%s"
                                 % (e, self.read_stderr()[-4000:])) from e

    def rss_kib(self, field="VmHWM"):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return None

    def terminate(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("qmproxy did not exit on SIGTERM")

    def wait(self, timeout=15):
        return self.proc.wait(timeout)

    def stop(self):
        """End it gracefully (so sanitizers can report), then check that
        no sanitizer complained during the whole run."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        self.check_sanitizers()

    def check_sanitizers(self):
        text = self.read_stderr()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                       # qmproxy's own "cannot happen" (an illegal transition)
                       ": bug: "):
            if marker in text:
                raise AssertionError("qmproxy sanitizer or bug report:\n" + text[-6000:])


class QMPClient:
    """A raw QMP connection: every byte is visible."""

    def __init__(self, path, timeout=TIMEOUT, read_greeting=True, family=socket.AF_UNIX):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.read_line() if read_greeting else None

    def close(self):
        self.sock.close()

    def send(self, data, fds=()):
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, dict):
            data = json.dumps(data).encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)

    def read_line(self):
        """One message as QEMU frames it: bytes up to and including CRLF."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; had %r" % self.buf[:200])
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def read_message(self):
        return json.loads(self.read_line())

    def read_reply(self):
        """The next reply; events met on the way are kept in .events."""
        while True:
            msg = self.read_message()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def read_reply_raw(self):
        while True:
            line = self.read_line()
            if b'"event"' in line and "event" in json.loads(line):
                self.events.append(json.loads(line))
                continue
            return line

    def negotiate(self, oob=False):
        cmd = {"execute": "qmp_capabilities"}
        if oob:
            cmd["arguments"] = {"enable": ["oob"]}
        self.send(cmd)
        reply = self.read_reply()
        assert reply == {"return": {}}, reply
        return self

    def cmd(self, name, args=None, **kw):
        """Run a command, return the whole reply."""
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        msg.update(kw)
        self.send(msg)
        return self.read_reply()

    def ok(self, name, args=None):
        reply = self.cmd(name, args)
        if "return" not in reply:
            raise AssertionError("%s failed: %s" % (name, reply))
        return reply["return"]

    def wait_event(self, name, timeout=TIMEOUT, pred=None):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name and (pred is None or pred(ev)):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s event within %ss (have %s)" % (
                    name, timeout, [e["event"] for e in self.events]))
            self.sock.settimeout(left)
            try:
                msg = self.read_message()
            finally:
                self.sock.settimeout(TIMEOUT)
            if "event" in msg:
                self.events.append(msg)
            else:
                raise AssertionError("unexpected reply while waiting for %s: %s" % (name, msg))

    def hmp(self, line):
        return self.ok("human-monitor-command", {"command-line": line})

    def at_eof(self, timeout=5):
        """True when the peer closed (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)


class ProxyTestCase(unittest.TestCase):
    """A QEMU and a qmproxy per test, torn down whatever happens."""

    shape = "none"
    disks = 1
    monitors = 2
    proxy_args = ()
    image_dir = None

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="qmptest-", dir=os.environ.get("QMPTEST_TMP"))
        self.addCleanup(self._cleanup_dir)
        self.prepare_images()
        self.qemu = QEMU(self.workdir, shape=self.shape, disks=self.disks,
                         monitors=self.monitors,
                         image_dir=os.path.join(self.workdir, self.image_dir)
                         if self.image_dir else None)
        self.addCleanup(self.qemu.stop)
        self.proxy = self.start_proxy()

    def prepare_images(self):
        """Before QEMU starts (and locks its images)."""

    def _cleanup_dir(self):
        if os.environ.get("QMPTEST_KEEP"):
            print("kept", self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start_proxy(self, args=None, **kw):
        p = Proxy(self.workdir, self.qemu.monitors[0],
                  args=self.proxy_args if args is None else args, **kw)
        self.addCleanup(p.stop)
        return p

    def client(self, negotiate=True, oob=False, path=None, extras=False):
        """A client of the proxy; extras=True asks for the proxy's own
        events and commands (qmproxy-capabilities), which a client does not
        see by default."""
        c = self.proxy.client(path)
        self.addCleanup(c.close)
        if negotiate:
            c.negotiate(oob=oob)
            if extras:
                c.ok("qmproxy-capabilities")
        return c

    def direct(self, negotiate=True, oob=False, monitor=1):
        c = QMPClient(self.qemu.monitors[monitor])
        self.addCleanup(c.close)
        if negotiate:
            c.negotiate(oob=oob)
        return c


def for_each_shape(cls):
    """Run a ProxyTestCase class once per QEMU shape (Name_none, Name_q35).

    The undecorated class itself is not collected: the decorator leaves
    None under its name."""
    import sys
    module = sys.modules[cls.__module__]
    for shape in SHAPES:
        name = "%s_%s" % (cls.__name__, shape)
        sub = type(name, (cls,), {"shape": shape, "__module__": cls.__module__})
        setattr(module, name, sub)
    return None


@contextlib.contextmanager
def listening_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    try:
        yield s
    finally:
        s.close()
