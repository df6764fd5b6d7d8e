"""Several "hosts" on one machine, for the tests that move disks between
hosts: one network namespace per host, all joined by a bridge that lives in
a namespace of its own (the "switch"), link-local addresses only
(169.254.0.0/16), loopback up in each.  Processes (QEMU, qemu-storage-daemon,
qmproxy, qemu-img...) run inside a host with `ip netns exec`; their unix
sockets are still reachable from the test, since the file system is shared.

Everything is torn down whatever happens: every process started inside a
namespace is killed (also the ones started by hand: `ip netns pids`), then
the namespaces are deleted, from close(), from a unittest cleanup, and at
interpreter exit.  Namespace names carry the test process's pid and a
counter, so parallel ctest runs never collide, and namespaces left behind
by a run that was killed outright are swept by the next one (their pid is
gone).

A link can be taken down and brought up again (`Host.link_down()`), which
is what the fault tests do to a copy in flight.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2.
"""
import atexit
import itertools
import os
import re
import signal
import subprocess
import sys
import time

from qmptest import QEMU, Proxy, TIMEOUT, wait_for

# 169.254.0.0/16 is link-local: never routed, so nothing a test does can
# reach another machine.  One /16 is shared by all hosts of a run; runs do
# not see each other (separate namespaces).
SUBNET = "169.254.77"
PREFIX = "qmph"           # every namespace this module makes starts so
QSD = os.environ.get("QSD_BIN", "qemu-storage-daemon")

_counter = itertools.count()
_live = []                # Hosts not closed yet, closed at exit


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                       timeout=30)
    if check and r.returncode:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def _kill_namespace(ns):
    """Kill what runs in ns (bounded: a few rounds), then delete it."""
    for _ in range(5):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    _ip("netns", "del", ns, check=False)


def sweep_stale():
    """Delete namespaces of earlier runs whose process is gone."""
    for line in _ip("netns", "list", check=False).splitlines():
        m = re.match(r"(%s(\d+)x\d+[a-z0-9]*)\b" % PREFIX, line)
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            _kill_namespace(m.group(1))


class Host:
    """One host: a namespace with eth0 on the shared link."""

    def __init__(self, hosts, index, ns):
        self.hosts = hosts
        self.index = index
        self.ns = ns
        self.addr = "%s.%d" % (SUBNET, index + 1)
        self.port_name = "p%d" % index       # its port on the switch
        self.procs = []
        self.files = []           # logs to close once the processes end

    def __repr__(self):
        return "<Host %d %s %s>" % (self.index, self.ns, self.addr)

    def prefix(self):
        """What a command is prefixed with to run inside this host."""
        return ["ip", "netns", "exec", self.ns]

    def run(self, args, check=True, timeout=60, **kw):
        """Run a command inside the host to its end; returns the
        CompletedProcess (text, output captured)."""
        r = subprocess.run(self.prefix() + list(args), capture_output=True,
                           text=True, timeout=timeout, **kw)
        if check and r.returncode:
            raise RuntimeError("on %r: %s exited %d: %s" % (
                self, " ".join(args), r.returncode, r.stderr.strip()))
        return r

    def popen(self, args, **kw):
        """Start a process inside the host; it is killed by close()."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.prefix() + list(args), **kw)
        self.procs.append(p)
        return p

    def qemu(self, workdir, **kw):
        """A qmptest.QEMU running inside this host."""
        q = QEMU(workdir, wrapper=self.prefix(), **kw)
        self.procs.append(q.proc)
        return q

    def proxy(self, workdir, upstream, **kw):
        """A qmptest.Proxy (qmproxy) running inside this host."""
        p = Proxy(workdir, upstream, wrapper=self.prefix(), **kw)
        self.procs.append(p.proc)
        return p

    def storage_daemon(self, workdir, exports, port=10809, unix_socket=None,
                       extra_args=(), name="qsd", tls_creds=None):
        """qemu-storage-daemon serving images over NBD from this host.

        exports: {export-name: image path} (qcow2 images, writable
        exports).  It listens on this host's address and port (TCP), or on
        unix_socket.  Returns a StorageDaemon once it has started
        serving.  tls_creds: the id of a tls-creds-x509 object (given in
        extra_args) the NBD server then requires."""
        return StorageDaemon(self, workdir, exports, port, unix_socket,
                             extra_args, name, tls_creds)

    def link_down(self):
        """Cut this host off the link (its port on the switch goes down):
        TCP connections stall, as when a cable is pulled."""
        _ip("-n", self.hosts.switch, "link", "set", self.port_name, "down")

    def link_up(self):
        _ip("-n", self.hosts.switch, "link", "set", self.port_name, "up")

    def can_reach(self, other, timeout=1.0):
        """Whether a TCP connection from this host gets an answer from
        another: a port nobody listens on answers with a reset when the
        link is up, and nothing at all when it is down (no ping needed)."""
        probe = ("import socket,sys\n"
                 "s=socket.socket(); s.settimeout(%r)\n"
                 "try: s.connect((%r, 9))\n"
                 "except ConnectionRefusedError: sys.exit(0)\n"
                 "except OSError: sys.exit(1)\n"
                 "sys.exit(0)\n" % (timeout, other.addr))
        r = subprocess.run(self.prefix() + [sys.executable, "-c", probe],
                           capture_output=True, text=True,
                           timeout=timeout + 10)
        return r.returncode == 0

    def stop_processes(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        for f in self.files:
            f.close()
        self.files = []


class StorageDaemon:
    """qemu-storage-daemon on a host: NBD exports of qcow2 images and a QMP
    monitor (socket in workdir) for whatever else a test needs."""

    def __init__(self, host, workdir, exports, port, unix_socket, extra_args,
                 name, tls_creds=None):
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        self.monitor = os.path.join(workdir, "%s-qmp.sock" % name)
        self.pidfile = os.path.join(workdir, "%s.pid" % name)
        self.log_path = os.path.join(workdir, "%s.log" % name)
        if unix_socket:
            addr = "addr.type=unix,addr.path=%s" % unix_socket
        else:
            addr = "addr.type=inet,addr.host=%s,addr.port=%d" % (host.addr, port)
        if tls_creds:
            addr += ",tls-creds=%s" % tls_creds
        # objects (extra_args) first: the NBD server may name them
        args = [QSD] + list(extra_args) + ["--chardev", "socket,id=m,path=%s,server=on,wait=off"
                % self.monitor, "--monitor", "chardev=m",
                "--nbd-server", addr, "--pidfile", self.pidfile]
        for i, (export, image) in enumerate(sorted(exports.items())):
            args += ["--blockdev", "driver=file,filename=%s,node-name=f%d"
                     % (image, i),
                     "--blockdev", "driver=qcow2,file=f%d,node-name=n%d"
                     % (i, i),
                     "--export", "type=nbd,id=e%d,node-name=n%d,name=%s,"
                     "writable=on" % (i, i, export)]
        self.log = open(self.log_path, "ab")
        host.files.append(self.log)
        self.proc = host.popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        # the pid file is written once the exports are served
        wait_for(lambda: os.path.exists(self.pidfile)
                 or self.proc.poll() is not None,
                 what="qemu-storage-daemon's pid file")
        if self.proc.poll() is not None:
            raise RuntimeError("qemu-storage-daemon exited: %s" % self.read_log())

    def uri(self, export):
        """The export as an NBD URI, as a client on another host names it."""
        if self.unix_socket:
            return "nbd+unix:///%s?socket=%s" % (export, self.unix_socket)
        return "nbd://%s:%d/%s" % (self.host.addr, self.port, export)

    def read_log(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        """End it as an operator would (SIGTERM): it flushes its images
        and exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(30)
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)


class Hosts:
    """n hosts on one link; use as a context manager, or call close()
    (a unittest's addCleanup(hosts.close))."""

    def __init__(self, n=2):
        if not 1 <= n <= 8:
            raise ValueError("1 to 8 hosts")
        sweep_stale()
        tag = "%s%dx%d%s" % (PREFIX, os.getpid(), next(_counter),
                             os.urandom(2).hex())
        self.tag = tag
        self.switch = tag + "sw"
        self.hosts = []
        self.namespaces = []
        _live.append(self)
        try:
            self._make_switch()
            for i in range(n):
                self._make_host(i)
            self._wait_link()
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, ns):
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def _make_switch(self):
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def _make_host(self, i):
        ns = "%sh%d" % (self.tag, i)
        self._add_namespace(ns)
        host = Host(self, i, ns)
        # made in the switch, one end moved into the host (veth names need
        # only be unique per namespace)
        _ip("-n", self.switch, "link", "add", host.port_name, "type", "veth",
            "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.switch, "link", "set", host.port_name, "master", "br0")
        _ip("-n", self.switch, "link", "set", host.port_name, "up")
        _ip("-n", ns, "addr", "add", host.addr + "/16", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        self.hosts.append(host)

    def _wait_link(self):
        # the bridge forwards once its ports are up (no STP by default)
        first = self.hosts[0]
        for other in self.hosts[1:]:
            wait_for(lambda: first.can_reach(other), timeout=TIMEOUT,
                     interval=0.1, what="%r to reach %r" % (first, other))

    def __getitem__(self, i):
        return self.hosts[i]

    def __len__(self):
        return len(self.hosts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for host in self.hosts:
            host.stop_processes()
        for ns in reversed(self.namespaces):
            _kill_namespace(ns)
        self.namespaces = []
        if self in _live:
            _live.remove(self)


@atexit.register
def _close_all():
    for hosts in list(_live):
        hosts.close()
