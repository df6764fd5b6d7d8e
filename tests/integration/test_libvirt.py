"""A real libvirt 9.0 drives its VMs through qmproxy.

Domains use contrib/libvirt/qemu-wrapper as their <emulator>: libvirt's
monitor (an inherited listening socket) is served by qmproxy, QEMU gets a
private monitor socket.  Every step is checked for its real effect: the
data in the images, the chain QEMU reports, the processes and sockets that
exist afterwards, and libvirt's conversation in qmproxy's traffic log.

The test sets libvirt up itself, without systemd (see the reference notes
on libvirt 9.0): it creates the libvirt-qemu user if missing, writes a
minimal /etc/libvirt/qemu.conf (restoring any earlier one afterwards),
starts `libvirtd -d` unless a libvirtd is already running, and stops the
one it started.  It needs root and the packages contrib/deps.sh installs;
without them it is skipped, saying why.

WrapperAlone checks the wrapper without libvirt (an inherited listening
socket passed the way libvirt passes it).
"""
import glob
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

from qmptest import QMPROXY, QEMU_BIN, QEMU_IMG, QEMU_IO, QMPClient, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRAPPER = os.path.join(ROOT, "contrib", "libvirt", "qemu-wrapper")
LIBVIRTD = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
VIRSH = shutil.which("virsh") or "/usr/bin/virsh"
URI = "qemu:///system"
QEMU_CONF = "/etc/libvirt/qemu.conf"
QEMU_CONF_BACKUP = QEMU_CONF + ".qmproxy-test-backup"
LIBVIRTD_PIDFILE = "/run/libvirtd.pid"
LIBVIRT_SOCK = "/run/libvirt/libvirt-sock"
DOMAIN_LOG_DIR = "/var/log/libvirt/qemu"
CAPS_CACHE = "/var/cache/libvirt/qemu/capabilities"

# What the reference notes found to work here: QEMU as root (no
# re-probing because of /dev/kvm permissions), no security driver or
# namespaces, and QEMU's output to a file so no virtlogd is needed.
MINIMAL_QEMU_CONF = """\
# written by qmproxy's tests/integration/test_libvirt.py
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
stdio_handler = "file"
"""

PRIVATE_SOCKET = "qmproxy-qemu.sock"   # the wrapper's name for QEMU's own
# The guest disk as HMP's qemu-io -d finds it (virtio-blk's backend)
QDEV = "/machine/peripheral/virtio-disk0/virtio-backend"
MiB = 1024 * 1024
# Patterns written at distinct offsets, so each check reads only its own
P_BASE = (0x11, 0)          # written into the base image before the VM runs
P_TOP = (0x22, 1 * MiB)     # written by the guest's disk before a job
P_AFTER = (0x33, 2 * MiB)   # written by the guest's disk after a job
CHUNK = 64 * 1024

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


def run(cmd, timeout=120, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (
            " ".join(shlex.quote(c) for c in cmd), p.returncode, p.stdout,
            p.stderr))
    return p


def proc_cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def alive(pid):
    """Running, not a zombie: a zombie has closed everything it had (and
    where nothing reaps orphans, qmproxy's zombie may stay a while)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "zombie" not in line and "(dead)" not in line
    except OSError:
        return False
    return False


def find_processes(pred):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            args = proc_cmdline(d)
            if args and pred(args):
                found.append(int(d))
    return found


def qmproxy_pids(private):
    """qmproxy processes serving the QEMU whose private socket is this."""
    return [p for p in find_processes(
        lambda a: os.path.basename(a[0]) == os.path.basename(QMPROXY)
        and "unix:" + private in a) if alive(p)]


def unix_socket_of(pid, fd):
    """(path, listening) of the Unix socket that is descriptor fd of the
    process, or None if it is none."""
    try:
        link = os.readlink("/proc/%d/fd/%d" % (pid, fd))
    except OSError:
        return None
    m = re.fullmatch(r"socket:\[(\d+)\]", link)
    if not m:
        return None
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 7 and parts[6] == m[1]:
                # flags 0x10000: __SO_ACCEPTCON, a listening socket
                return (parts[7] if len(parts) >= 8 else None,
                        bool(int(parts[3], 16) & 0x10000))
    return None


def held_fds(pid):
    """{descriptor: what it is (socket:[inode], pipe:[inode], a path)}"""
    held = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            held[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return held


def monitor_fd(args):
    """The descriptor of libvirt's monitor chardev (fd=N) on a command line."""
    chardev = [a for a in args if a.startswith("socket,id=charmonitor,")]
    assert len(chardev) == 1, args
    return int(re.search(r"(?:^|,)fd=(\d+)(?:,|$)", chardev[0])[1])


def unix_sockets_named(paths):
    """Sockets (bound, listening or connected) the kernel still has under
    these paths, whether or not the file is still there."""
    found = []
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7] in paths:
                found.append(parts[7])
    return found


def pattern_in_image(path, pattern, offset, length=CHUNK):
    """Does the image (read through its backing chain, as QEMU would)
    hold this byte pattern there?  -U: QEMU may have it open."""
    p = run([QEMU_IO, "-U", "-r", "-f", "qcow2", "-c",
             "read -P 0x%02x %d %d" % (pattern, offset, length), path], check=False)
    out = p.stdout + p.stderr
    if p.returncode != 0 and "Pattern verification failed" not in out:
        raise AssertionError("qemu-io on %s failed: %s" % (path, out))
    return "Pattern verification failed" not in out and \
        ("read %d/%d bytes" % (length, length)) in out


def image_backing(path):
    info = json.loads(run([QEMU_IMG, "info", "-U", "--output=json", path]).stdout)
    return info.get("full-backing-filename") or info.get("backing-filename")


def allocated_here(path):
    """(offset, length) of the data an image holds itself, not its
    backing file."""
    out = run([QEMU_IMG, "map", "-U", "--output=json", path]).stdout
    return [(e["start"], e["length"]) for e in json.loads(out)
            if e["depth"] == 0 and e["data"]]


def write_base_pattern(path, pattern, offset):
    run([QEMU_IO, "-f", "qcow2", "-c", "write -P 0x%02x %d %d" % (pattern, offset, CHUNK), path])


def domain_xml(name, emulator, disk, machine="pc", acpi=False, devices=""):
    """A small domain (TCG, 64 MiB, one virtio qcow2 disk); the start-up
    benchmark uses it too.  acpi: PCI hotplug (attach-disk) needs it on
    i440fx; devices: more of <devices>' XML."""
    return """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='%s'>hvm</type></os>%s
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%s</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>%s
  </devices>
</domain>
""" % (name, machine, "\n  <features><acpi/></features>" if acpi else "",
       emulator, disk, devices)


def wrapper_emulator(folder, traffic_dir, qmproxy_args, extra_conf=""):
    """The <emulator> for domains behind qmproxy: the wrapper under a name
    of its own in folder, so that its configuration (<emulator path>.conf,
    written here) is this run's.  qmproxy_args: the QMPROXY_ARGS array's
    contents, in shell syntax; extra_conf: more lines for the file."""
    emulator = os.path.join(folder, "qemu-qmproxy")
    os.symlink(WRAPPER, emulator)
    with open(emulator + ".conf", "w") as f:
        f.write("# qmproxy's libvirt test\n"
                "QEMU=%s\n" % shlex.quote(os.path.abspath(QEMU_BIN)) +
                "QMPROXY=%s\n" % shlex.quote(os.path.abspath(QMPROXY)) +
                'QMPROXY_TRAFFIC_LOG=%s/"$DOMAIN_NAME".jsonl\n' % shlex.quote(traffic_dir) +
                "QMPROXY_ARGS=(%s)\n" % qmproxy_args + extra_conf)
    return emulator


def forget_capabilities(emulator):
    """libvirt caches what it probed per emulator path: forget this one."""
    if not os.path.isdir(CAPS_CACHE):
        return
    for name in os.listdir(CAPS_CACHE):
        path = os.path.join(CAPS_CACHE, name)
        try:
            with open(path, errors="replace") as f:
                if "<emulator>%s</emulator>" % emulator in f.read():
                    os.unlink(path)
        except OSError:
            pass


class LibvirtSetup:
    """The libvirt daemon for the whole test class: ours if none runs."""

    def __init__(self):
        self.owned_pid = None
        self.conf_written = False
        self.had_conf = False

    def skip_reason(self):
        if os.geteuid() != 0:
            return "libvirt's system daemon needs root (running as uid %d)" % os.geteuid()
        for tool in (LIBVIRTD, VIRSH):
            if not os.access(tool, os.X_OK):
                return ("%s is missing: libvirt is not installed (contrib/deps.sh "
                        "installs libvirt-daemon, libvirt-daemon-driver-qemu, "
                        "libvirt-clients)" % tool)
        if not glob.glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"):
            return "libvirt's QEMU driver (libvirt-daemon-driver-qemu) is not installed"
        if not os.access(QEMU_BIN, os.X_OK):
            return "QEMU (%s) is not installed" % QEMU_BIN
        return None

    def daemon_responds(self):
        return run([VIRSH, "-c", URI, "version"], check=False, timeout=60).returncode == 0

    def libvirtd_running(self):
        try:
            with open(LIBVIRTD_PIDFILE) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        args = proc_cmdline(pid)
        if args and os.path.basename(args[0]) == "libvirtd" and alive(pid):
            return pid
        return None

    def ensure_user(self):
        """Without libvirt-daemon-system nobody creates the user libvirt's
        QEMU driver insists on parsing, even when QEMU runs as root."""
        for group in ("libvirt-qemu", "kvm"):
            try:
                grp.getgrnam(group)
            except KeyError:
                run(["groupadd", "-r", group])
        try:
            pwd.getpwnam("libvirt-qemu")
        except KeyError:
            run(["useradd", "-r", "-g", "kvm", "-G", "libvirt-qemu", "-d",
                 "/var/lib/libvirt", "-M", "-s", "/usr/sbin/nologin", "libvirt-qemu"])

    def write_conf(self):
        self.had_conf = os.path.exists(QEMU_CONF)
        if self.had_conf and not os.path.exists(QEMU_CONF_BACKUP):
            shutil.copy2(QEMU_CONF, QEMU_CONF_BACKUP)
        with open(QEMU_CONF, "w") as f:
            f.write(MINIMAL_QEMU_CONF)
        self.conf_written = True

    def restore_conf(self):
        if not self.conf_written:
            return
        if os.path.exists(QEMU_CONF_BACKUP):
            os.replace(QEMU_CONF_BACKUP, QEMU_CONF)
        elif not self.had_conf:
            os.unlink(QEMU_CONF)
        self.conf_written = False

    def start_daemon(self):
        """libvirtd -d; returns its pid once it answers."""
        run([LIBVIRTD, "-d"], timeout=60)
        wait_for(lambda: os.path.exists(LIBVIRT_SOCK), timeout=60, interval=0.1,
                 what="libvirtd's socket")
        wait_for(self.daemon_responds, timeout=120, interval=0.5,
                 what="libvirtd to answer")
        return wait_for(self.libvirtd_running, timeout=10, what="libvirtd's pid file")

    def stop_daemon(self, pid, timeout=60):
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(lambda: not alive(pid), timeout=timeout, interval=0.1,
                     what="libvirtd to exit")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not alive(pid), timeout=10, what="libvirtd to die")

    def start(self):
        reason = self.skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        self.ensure_user()
        # libvirtd -d logs there and refuses to start without the folder
        os.makedirs(DOMAIN_LOG_DIR, exist_ok=True)
        if self.libvirtd_running():
            # someone else's daemon: use it as it is configured
            if not self.daemon_responds():
                raise unittest.SkipTest("a libvirtd is running but does not answer")
            return
        self.write_conf()
        try:
            self.owned_pid = self.start_daemon()
        except AssertionError as e:
            self.restore_conf()
            raise unittest.SkipTest("libvirtd did not start (%s); its log ends:\n%s" % (
                e, self.log_tail("/var/log/libvirt/libvirtd.log")))

    def restart(self):
        """Stop our libvirtd while domains run, start a new one."""
        self.stop_daemon(self.owned_pid)
        self.owned_pid = self.start_daemon()

    def stop(self):
        if self.owned_pid:
            self.stop_daemon(self.owned_pid)
            self.owned_pid = None
        self.restore_conf()

    @staticmethod
    def log_tail(path, n=30):
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError as e:
            return "(%s)" % e


class Domain:
    """A transient libvirt domain (virsh create) behind the wrapper."""

    def __init__(self, test, name, disk, emulator, acpi=False, devices=""):
        self.test = test
        self.name = name
        self.disk = disk
        self.xml = os.path.join(os.path.dirname(disk), name + ".xml")
        with open(self.xml, "w") as f:
            f.write(domain_xml(name, emulator, disk, acpi=acpi, devices=devices))
        self.log_path = os.path.join(DOMAIN_LOG_DIR, name + ".log")
        self.log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.qemu_pid = None
        self.home = None

    # -- virsh --------------------------------------------------------------
    def virsh(self, *args, check=True, timeout=120):
        try:
            p = run([VIRSH, "-c", URI] + list(args), check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("virsh %s hung (%d s)\n%s" % (
                " ".join(args), timeout, self.diagnosis())) from None
        if check and p.returncode != 0:
            raise AssertionError("virsh %s failed (%d):\n%s%s\n%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr, self.diagnosis()))
        return p

    def diagnosis(self):
        """What a failure report needs: the end of the domain log (QEMU's
        and qmproxy's output) and of libvirt's conversation."""
        path = os.path.join(self.test.traffic_dir, self.name + ".jsonl")
        try:
            with open(path, errors="replace") as f:
                conversation = "".join(line.rstrip("\n")[:300] + "\n" for line in f.readlines()[-8:])
        except OSError as e:
            conversation = "(%s)\n" % e
        return "-- domain log:\n%s\n-- traffic log ends:\n%s" % (
            self.log_text()[-2500:], conversation)

    def create(self):
        self.virsh("create", self.xml)
        self.attach()

    def attach(self):
        """Find the running QEMU libvirt started for the domain."""
        with open("/run/libvirt/qemu/%s.pid" % self.name) as f:
            self.qemu_pid = int(f.read().strip())
        with open("/proc/%d/environ" % self.qemu_pid, "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        # libvirt's HOME for the emulator is the domain's own folder
        self.home = env[b"HOME"].decode()

    def qmp(self, command, arguments=None):
        """A QMP command through libvirt (qemu-monitor-command); the reply."""
        cmd = {"execute": command}
        if arguments is not None:
            cmd["arguments"] = arguments
        out = self.virsh("qemu-monitor-command", self.name, json.dumps(cmd)).stdout
        return json.loads(out)

    def qmp_ok(self, command, arguments=None):
        reply = self.qmp(command, arguments)
        if "return" not in reply:
            raise AssertionError("%s: %s" % (command, reply))
        return reply["return"]

    def qemu_io(self, command):
        """qemu-io through HMP on the guest's disk (its output goes to
        QEMU's stdout, the domain log)."""
        self.virsh("qemu-monitor-command", self.name, "--hmp",
                   'qemu-io -d %s "%s"' % (QDEV, command))

    def write(self, pattern, offset):
        self.qemu_io("write -P 0x%02x %d %d" % (pattern, offset, CHUNK))
        self.flush()

    def flush(self):
        """Write QEMU's cached image metadata out (qcow2 keeps its tables
        in memory), so qemu-io on the image files sees what QEMU sees."""
        self.qemu_io("flush")

    def state(self):
        return self.virsh("domstate", self.name).stdout.strip()

    def blklist(self):
        """{target: source} as libvirt sees the disks."""
        out = self.virsh("domblklist", self.name).stdout
        rows = {}
        for line in out.splitlines()[2:]:
            parts = line.split(None, 1)
            if len(parts) == 2:
                rows[parts[0]] = parts[1].strip()
        return rows

    def block_chain(self):
        """The guest disk's chain of files as QEMU itself reports it."""
        block = self.qmp_ok("query-block")
        disks = [b for b in block if b.get("qdev") == QDEV]
        self.test.assertEqual(len(disks), 1, block)
        chain = []
        image = disks[0]["inserted"]["image"]
        while image:
            chain.append(image["filename"])
            image = image.get("backing-image")
        return chain

    def proxy_chain(self):
        """The chain qmproxy's own model has (qmproxy-query-chain), or None
        when this qmproxy does not have the command."""
        reply = self.qmp("qmproxy-query-chain")
        if reply.get("error", {}).get("class") == "CommandNotFound":
            return None
        self.test.assertIn("return", reply)
        disks = [d for d in reply["return"] if d.get("qdev") == QDEV
                 or d.get("disk") == "virtio-disk0"]
        self.test.assertEqual(len(disks), 1, reply)
        return [layer["file"] for layer in disks[0]["chain"]]

    def assert_chain(self, files):
        self.test.assertEqual(self.block_chain(), files, "query-block's chain")
        proxy = self.proxy_chain()
        if proxy is not None:
            self.test.assertEqual(proxy, files, "qmproxy-query-chain's chain")
            self.assert_matches_dumpxml()
        self.test.assertEqual(self.blklist().get("vda"), files[0], "domblklist")

    def libvirt_disk(self, dev="vda"):
        """A <disk> of libvirt's own live XML (virsh dumpxml), by target."""
        root = ET.fromstring(self.virsh("dumpxml", self.name).stdout)
        for disk in root.iter("disk"):
            target = disk.find("target")
            if target is not None and target.get("dev") == dev:
                return disk
        raise AssertionError("no %s in virsh dumpxml" % dev)

    def proxy_disk(self, alias=None):
        """qmproxy-query-chain's XML for a guest disk, by libvirt's alias
        (the disk's own, read from virsh dumpxml when not given)."""
        reply = self.qmp("qmproxy-query-chain", {"format": "xml"})
        self.test.assertIn("return", reply)
        root = ET.fromstring(reply["return"])
        alias = alias or "virtio-disk0"
        names = (alias, "/machine/peripheral/%s/virtio-backend" % alias)
        disks = [d for d in root.iter("disk")
                 if d.find("alias") is not None
                 and d.find("alias").get("name") in names]
        self.test.assertEqual(len(disks), 1, reply["return"])
        return disks[0]

    @staticmethod
    def disk_summary(disk):
        """What both XML forms must agree on: the chain's files and formats
        in order (<source>, then each nested <backingStore>), and the
        <mirror>'s file, format and job."""
        chain = []
        node = disk
        while node is not None and node.find("source") is not None:
            # the active layer's format is in <driver>, a backing layer's
            # in <format>
            fmt = node.find("driver" if node is disk else "format")
            chain.append((node.find("source").get("file"),
                          fmt.get("type") if fmt is not None else None))
            node = node.find("backingStore")
        mirror = disk.find("mirror")
        if mirror is not None:
            source = mirror.find("source")
            fmt = mirror.find("format")
            mirror = (mirror.get("file") or (source.get("file") if source is not None else None),
                      mirror.get("format") or (fmt.get("type") if fmt is not None else None),
                      mirror.get("job"))
        return {"chain": chain, "mirror": mirror}

    def assert_matches_dumpxml(self, dev="vda"):
        """qmproxy's XML and libvirt's say the same of the disk: the same
        files, in the same order, with the same formats, and the same copy."""
        theirs = self.libvirt_disk(dev)
        alias = theirs.find("alias").get("name")
        self.test.assertEqual(self.disk_summary(self.proxy_disk(alias)),
                              self.disk_summary(theirs),
                              "qmproxy-query-chain's XML against virsh dumpxml (%s)" % dev)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                f.seek(self.log_start)
                return f.read()
        except OSError:
            return ""

    # -- the processes and sockets around QEMU ------------------------------
    @property
    def private(self):
        return os.path.join(self.home, PRIVATE_SOCKET)

    @property
    def monitor(self):
        return os.path.join(self.home, "monitor.sock")

    def proxies(self):
        return qmproxy_pids(self.private)

    def destroy_and_check(self):
        """virsh destroy: QEMU, qmproxy and every socket gone."""
        pid, private, monitor, home = self.qemu_pid, self.private, self.monitor, self.home
        proxies = self.proxies()
        self.test.assertEqual(len(proxies), 1, "one qmproxy for the domain")
        self.virsh("destroy", self.name)
        wait_for(lambda: not alive(pid), timeout=30, what="QEMU to end")
        wait_for(lambda: not any(alive(p) for p in proxies), timeout=15,
                 what="qmproxy to end with QEMU")
        wait_for(lambda: not os.path.exists(home), timeout=15,
                 what="libvirt to remove %s" % home)
        self.test.assertEqual(unix_sockets_named({private, monitor}), [],
                              "sockets left behind")
        self.test.assertNotIn(self.name, self.virsh("list", "--name").stdout.split())
        self.qemu_pid = None
        self.check_sanitizers()

    def check_sanitizers(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError("qmproxy sanitizer report in %s:\n%s" % (
                    self.log_path, text[-6000:]))

    def cleanup(self):
        """Whatever happened, leave no domain running."""
        if self.qemu_pid and alive(self.qemu_pid):
            self.virsh("destroy", self.name, check=False)


def runs_qemu(exe):
    """Is exe (a process's /proc/PID/exe) QEMU_BIN?  QEMU_BIN may itself be
    a script that execs the emulator, as contrib/qemu10.sh's is."""
    exe = os.path.realpath(exe)
    return exe == os.path.realpath(QEMU_BIN) or (
        os.path.basename(exe) == "qemu-system-x86_64"
        and open(QEMU_BIN, "rb").read(2) == b"#!")


def traffic(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def client_commands(lines, name=None):
    return [t for t in lines if t["dir"] == "in" and t["from"] == "client"
            and (name is None or t["msg"].get("execute") == name)]


def reply_to(lines, command):
    """The reply qmproxy delivered for a logged client command (same
    client, same id, the first after it)."""
    started = False
    for t in lines:
        if t is command:
            started = True
        elif (started and t["dir"] == "out" and t.get("client") == command["client"]
              and t["kind"] == "reply" and t["msg"].get("id") == command["msg"].get("id")):
            return t
    return None


class LibvirtThroughQmproxy(unittest.TestCase):
    """Real libvirt, QEMU behind qmproxy through the wrapper."""

    @classmethod
    def setUpClass(cls):
        cls.libvirt = LibvirtSetup()
        cls.libvirt.start()
        cls.tmp = tempfile.mkdtemp(prefix="qmproxy-libvirt-", dir=os.environ.get("QMPTEST_TMP"))
        os.chmod(cls.tmp, 0o755)   # a libvirtd configured otherwise may run QEMU as another user
        cls.traffic_dir = os.path.join(cls.tmp, "traffic")
        cls.emulator = wrapper_emulator(cls.tmp, cls.traffic_dir,
                                        '-v --state "$DOMAIN_DIR/qmproxy.state"')

    @classmethod
    def tearDownClass(cls):
        try:
            cls.libvirt.stop()
        finally:
            forget_capabilities(cls.emulator)
            if os.environ.get("QMPTEST_KEEP"):
                print("kept", cls.tmp)
            else:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix=self._testMethodName[5:] + "-", dir=self.tmp)
        os.chmod(self.dir, 0o755)

    # -- helpers --------------------------------------------------------------
    def images(self, chain=True):
        """base.qcow2 holding P_BASE, and top.qcow2 over it (or base alone)."""
        base = os.path.join(self.dir, "base.qcow2")
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", base, "64M"])
        write_base_pattern(base, *P_BASE)
        if not chain:
            return base, None
        top = os.path.join(self.dir, "top.qcow2")
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top])
        return base, top

    def domain(self, disk, acpi=False, devices=""):
        """acpi: PCI hotplug (attach-disk) needs it on i440fx; devices:
        more of <devices>' XML."""
        name = "qmpx-" + self._testMethodName[5:][:15]
        dom = Domain(self, name, disk, self.emulator, acpi=acpi, devices=devices)
        dom.virsh("destroy", name, check=False)   # a leftover of an aborted run
        self.addCleanup(dom.cleanup)
        dom.create()
        self.assertEqual(dom.state(), "running")
        return dom

    def traffic(self, dom):
        return traffic(os.path.join(self.traffic_dir, dom.name + ".jsonl"))

    def assert_holds(self, image, *patterns):
        for pattern, offset in patterns:
            self.assertTrue(pattern_in_image(image, pattern, offset),
                            "%s lacks 0x%02x at %d" % (image, pattern, offset))

    def assert_lacks(self, image, pattern, offset):
        self.assertFalse(pattern_in_image(image, pattern, offset),
                         "%s unexpectedly holds 0x%02x at %d" % (image, pattern, offset))

    # -- the tests --------------------------------------------------------------
    def test_create_monitor_suspend_resume_stats(self):
        base, top = self.images()
        dom = self.domain(top)

        # libvirt's pid is QEMU's (the wrapper exec'd it); qmproxy beside it
        exe = os.readlink("/proc/%d/exe" % dom.qemu_pid)
        self.assertTrue(runs_qemu(exe), exe)
        args = proc_cmdline(dom.qemu_pid)
        # QEMU's command line is libvirt's; its monitor descriptor is the
        # private socket qmproxy made, listening, not libvirt's
        self.assertEqual(unix_socket_of(dom.qemu_pid, monitor_fd(args)),
                         (dom.private, True))
        proxies = dom.proxies()
        self.assertEqual(len(proxies), 1)
        pargs = proc_cmdline(proxies[0])
        self.assertTrue(any(a.startswith("fd:") for a in pargs), pargs)
        # the state file the configuration asked for
        wait_for(lambda: os.path.exists(os.path.join(dom.home, "qmproxy.state")),
                 what="qmproxy's state file")

        self.assertEqual(dom.blklist(), {"vda": top})
        block = dom.qmp_ok("query-block")
        self.assertEqual(block[0]["inserted"]["file"], top)
        self.assertEqual(block[0]["inserted"]["image"]["backing-image"]["filename"], base)
        schema = dom.virsh("qemu-monitor-command", dom.name,
                           '{"execute": "query-qmp-schema"}').stdout
        self.assertGreater(len(schema), 100000)
        names = {e.get("name") for e in json.loads(schema)["return"]}
        self.assertTrue({"query-block", "blockdev-mirror", "getfd"} <= names)

        dom.virsh("suspend", dom.name)
        self.assertEqual(dom.state(), "paused")
        self.assertEqual(dom.qmp_ok("query-status")["status"], "paused")
        dom.virsh("resume", dom.name)
        self.assertEqual(dom.state(), "running")
        self.assertEqual(dom.qmp_ok("query-status")["status"], "running")

        # HMP through libvirt and qmproxy reaches the guest's disk
        self.assert_lacks(top, *P_TOP)
        dom.write(*P_TOP)
        self.assert_holds(top, P_BASE, P_TOP)

        # the statistics libvirt gathers from QEMU (blockstats, the nodes'
        # sizes), with the backing chain
        stats = dom.virsh("domstats", "--block", "--backing", dom.name).stdout
        fields = dict(line.strip().split("=", 1) for line in stats.splitlines() if "=" in line)
        self.assertEqual(fields.get("block.count"), "2", stats)
        self.assertEqual(fields.get("block.0.name"), "vda")
        self.assertEqual(fields.get("block.0.path"), top)
        self.assertEqual(fields.get("block.1.path"), base)
        self.assertEqual(fields.get("block.0.capacity"), str(64 * MiB), stats)
        self.assertIn("block.0.rd.reqs", fields)
        self.assertIn("block.0.allocation", fields)

        # libvirt's whole conversation went through qmproxy (the log is
        # written by a thread of its own: wait for the last replies)
        names = ("query-block", "query-qmp-schema", "stop", "cont",
                 "query-blockstats", "human-monitor-command")

        def logged():
            log = self.traffic(dom)
            return log if all(client_commands(log, n)
                              and reply_to(log, client_commands(log, n)[-1])
                              for n in names) else None
        log = wait_for(logged, what="libvirt's commands and replies in the traffic log")
        cmds = client_commands(log)
        self.assertEqual(cmds[0]["msg"], {"execute": "qmp_capabilities", "id": "libvirt-1"})
        self.assertTrue(all(str(c["msg"].get("id", "")).startswith("libvirt-") for c in cmds))
        for name in names:
            sent = client_commands(log, name)
            self.assertTrue(sent, "no %s in the traffic log" % name)
            reply = reply_to(log, sent[-1])
            self.assertIsNotNone(reply, "no reply to %s" % name)
            self.assertIn("return", reply["msg"])
        events = {t["msg"]["event"] for t in log if t["kind"] == "event"}
        self.assertTrue({"STOP", "RESUME"} <= events, events)

        dom.destroy_and_check()

    def test_snapshot_disk_only(self):
        base, _ = self.images(chain=False)
        dom = self.domain(base)
        overlay = os.path.join(self.dir, "overlay.qcow2")
        self.assertFalse(os.path.exists(overlay))
        dom.virsh("snapshot-create-as", dom.name, "--disk-only", "--no-metadata",
                  "--diskspec", "vda,file=%s" % overlay)
        self.assertTrue(os.path.exists(overlay))
        self.assertEqual(image_backing(overlay), base)
        dom.assert_chain([overlay, base])
        # new writes land in the overlay, the old data reads through it
        dom.write(*P_AFTER)
        self.assert_holds(overlay, P_BASE, P_AFTER)
        self.assert_lacks(base, *P_AFTER)
        log = self.traffic(dom)
        self.assertTrue(client_commands(log, "transaction") or
                        client_commands(log, "blockdev-snapshot"), "no snapshot command")
        dom.destroy_and_check()

    def test_blockcopy_pivot(self):
        base, top = self.images()
        dom = self.domain(top)
        dom.write(*P_TOP)
        dest = os.path.join(self.dir, "copy.qcow2")
        out = dom.virsh("blockcopy", dom.name, "vda", dest, "--transient-job",
                        "--wait", "--verbose", "--pivot").stdout
        self.assertIn("Successfully pivoted", out)
        dom.flush()
        # a full copy: one image, no backing, holding everything
        dom.assert_chain([dest])
        self.assertIsNone(image_backing(dest))
        self.assert_holds(dest, P_BASE, P_TOP)
        dom.write(*P_AFTER)
        self.assert_holds(dest, P_AFTER)
        self.assert_lacks(top, *P_AFTER)
        self.assertTrue(client_commands(self.traffic(dom), "blockdev-mirror"))
        dom.destroy_and_check()

    def test_blockcopy_shallow_then_blockjob_pivot_and_abort(self):
        base, top = self.images()
        dom = self.domain(top)
        dom.write(*P_TOP)
        dest = os.path.join(self.dir, "shallow.qcow2")
        out = dom.virsh("blockcopy", dom.name, "vda", dest, "--shallow",
                        "--transient-job", "--wait", "--verbose").stdout
        self.assertIn("Now in mirroring phase", out)
        info = dom.virsh("blockjob", dom.name, "vda", "--info")
        self.assertIn("Block Copy", info.stdout + info.stderr)
        # the copy, named by reference in libvirt's blockdev-add, as libvirt says
        dom.assert_matches_dumpxml()
        dom.virsh("blockjob", dom.name, "vda", "--pivot")
        dom.flush()
        # shallow: the copy of the top sits on the same base
        dom.assert_chain([dest, base])
        self.assertEqual(image_backing(dest), base)
        self.assert_holds(dest, P_BASE, P_TOP)

        # a second copy, abandoned: the disk stays where it was
        dest2 = os.path.join(self.dir, "abandoned.qcow2")
        out = dom.virsh("blockcopy", dom.name, "vda", dest2, "--shallow",
                        "--transient-job", "--wait", "--verbose").stdout
        self.assertIn("Now in mirroring phase", out)
        dom.assert_matches_dumpxml()
        dom.virsh("blockjob", dom.name, "vda", "--abort")
        info = dom.virsh("blockjob", dom.name, "vda", "--info")
        self.assertIn("No current block job", info.stdout + info.stderr)
        self.assertEqual(dom.qmp_ok("query-block-jobs"), [])
        dom.assert_chain([dest, base])
        dom.write(*P_AFTER)
        self.assert_holds(dest, P_AFTER)
        if os.path.exists(dest2):
            self.assert_lacks(dest2, *P_AFTER)
        log = self.traffic(dom)
        self.assertTrue(client_commands(log, "job-complete") or
                        client_commands(log, "block-job-complete"), "no pivot")
        self.assertTrue(client_commands(log, "job-cancel") or
                        client_commands(log, "block-job-cancel"), "no abort")
        dom.destroy_and_check()

    def test_blockcommit_active_pivot(self):
        base, top = self.images()
        dom = self.domain(top)
        dom.write(*P_TOP)
        self.assert_lacks(base, *P_TOP)
        out = dom.virsh("blockcommit", dom.name, "vda", "--active", "--pivot",
                        "--wait", "--verbose").stdout
        self.assertIn("Successfully pivoted", out)
        dom.flush()
        dom.assert_chain([base])
        self.assert_holds(base, P_BASE, P_TOP)
        dom.write(*P_AFTER)
        self.assert_holds(base, P_AFTER)
        self.assertTrue(client_commands(self.traffic(dom), "block-commit"))
        dom.destroy_and_check()

    def test_blockpull(self):
        base, top = self.images()
        dom = self.domain(top)
        dom.write(*P_TOP)
        # QEMU 7.2 crashes (bdrv_refresh_filename under
        # query-named-block-nodes) when the block graph is queried while the
        # stream job is concluded but not yet dismissed: qmproxy's own
        # queries must wait for the job to be dismissed (status "null").
        dom.virsh("blockpull", dom.name, "vda", "--wait", "--verbose")
        dom.flush()
        # the top stands alone now and holds what its base held
        dom.assert_chain([top])
        self.assertIsNone(image_backing(top))
        self.assert_holds(top, P_BASE, P_TOP)
        dom.write(*P_AFTER)
        self.assert_holds(top, P_AFTER)
        self.assertTrue(client_commands(self.traffic(dom), "block-stream"))
        dom.destroy_and_check()

    def test_backup_pull_with_scratch(self):
        """A pull-mode backup puts QEMU's copy-before-write filter on the
        disk; neither libvirt nor qmproxy lists it as an image."""
        base, top = self.images()
        dom = self.domain(top)
        scratch = os.path.join(self.dir, "scratch.qcow2")
        backup_xml = os.path.join(self.dir, "backup.xml")
        with open(backup_xml, "w") as f:
            f.write("""<domainbackup mode='pull'>
  <server transport='unix' socket='%s'/>
  <disks>
    <disk name='vda' backup='yes' type='file'><scratch file='%s'/></disk>
  </disks>
</domainbackup>
""" % (os.path.join(self.dir, "nbd.sock"), scratch))
        dom.virsh("backup-begin", dom.name, backup_xml)
        files = self.block_files_with_formats(dom)
        self.assertIn("copy-before-write", [fmt for _, fmt in files], files)
        dom.assert_matches_dumpxml()
        model = [d for d in dom.qmp_ok("qmproxy-query-chain")
                 if d.get("qdev") == QDEV][0]
        self.assertEqual([l["file"] for l in model["chain"]], [top, base])
        self.assertEqual([f["driver"] for f in model.get("filters", [])],
                         ["copy-before-write"])
        dom.virsh("domjobabort", dom.name)
        wait_for(lambda: dom.qmp_ok("query-block-jobs") == [], timeout=30,
                 what="the backup job to end")
        dom.assert_chain([top, base])
        model = [d for d in dom.qmp_ok("qmproxy-query-chain")
                 if d.get("qdev") == QDEV][0]
        self.assertNotIn("filters", model)
        self.assertTrue(client_commands(self.traffic(dom), "blockdev-backup")
                        or client_commands(self.traffic(dom), "transaction"))
        dom.destroy_and_check()

    def write_file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def backup_xml(self, name, mode, disk, incremental=None):
        """A <domainbackup> of vda: disk is the <disk>'s inside (a push's
        <target>, a pull's <scratch>)."""
        return self.write_file(name, """<domainbackup mode='%s'>%s%s
  <disks>
    <disk name='vda' backup='yes' type='file'>%s</disk>
  </disks>
</domainbackup>
""" % (mode, "<incremental>%s</incremental>" % incremental if incremental else "",
       "<server transport='unix' socket='%s'/>" % os.path.join(self.dir, name + ".sock")
       if mode == "pull" else "", disk))

    @staticmethod
    def wait_backup_over(dom):
        """libvirt's backup job over (its nodes deleted, its filter gone)."""
        wait_for(lambda: "None" in dom.virsh("domjobinfo", dom.name).stdout
                 and dom.qmp_ok("query-block-jobs") == [], timeout=60,
                 what="the backup job to end")

    @staticmethod
    def proxy_model(dom, qdev=QDEV):
        return [d for d in dom.qmp_ok("qmproxy-query-chain") if d.get("qdev") == qdev][0]

    def test_backup_push(self):
        """A push backup (libvirt creates the target with blockdev-create,
        a job of its own, then blockdev-backup sync=full): qmproxy's chain
        is libvirt's right after backup-begin (the copy of a small image may
        be over already) and once the job is over, when no job or filter
        stays in the model."""
        base, top = self.images()
        dom = self.domain(top)
        dom.write(*P_TOP)
        target = os.path.join(self.dir, "push.qcow2")
        xml = self.backup_xml("push.xml", "push",
                              "<driver type='qcow2'/><target file='%s'/>" % target)
        dom.virsh("backup-begin", dom.name, xml)
        dom.assert_matches_dumpxml()
        self.wait_backup_over(dom)
        dom.assert_chain([top, base])
        model = self.proxy_model(dom)
        self.assertNotIn("filters", model)
        self.assertNotIn("job", model)
        self.assert_holds(target, P_BASE, P_TOP)
        self.assertIsNone(image_backing(target))
        self.assertTrue(client_commands(self.traffic(dom), "blockdev-backup")
                        or client_commands(self.traffic(dom), "transaction"))
        dom.destroy_and_check()

    def test_checkpoints_push_and_pull(self):
        """A checkpoint (a persistent dirty bitmap in the top image), an
        incremental push backup that takes a second checkpoint with it,
        then an incremental pull backup, abandoned: after each step
        qmproxy's chain is libvirt's, and the backups hold what changed."""
        base, top = self.images()
        dom = self.domain(top)
        dom.virsh("checkpoint-create-as", dom.name, "cp1", "--diskspec",
                  "vda,checkpoint=bitmap")
        dom.assert_chain([top, base])
        dom.write(*P_AFTER)
        inc = os.path.join(self.dir, "inc.qcow2")
        push = self.backup_xml("inc.xml", "push",
                               "<driver type='qcow2'/><target file='%s'/>" % inc,
                               incremental="cp1")
        cp2 = self.write_file("cp2.xml", "<domaincheckpoint><name>cp2</name><disks>"
                              "<disk name='vda' checkpoint='bitmap'/></disks>"
                              "</domaincheckpoint>\n")
        dom.virsh("backup-begin", dom.name, push, cp2)
        dom.assert_matches_dumpxml()
        self.wait_backup_over(dom)
        dom.assert_chain([top, base])
        # what changed since cp1, and nothing else (libvirt makes the
        # target read the rest through a backing file)
        self.assert_holds(inc, P_AFTER)
        self.assertEqual(allocated_here(inc), [(P_AFTER[1], CHUNK)])
        names = dom.virsh("checkpoint-list", dom.name, "--name").stdout.split()
        self.assertEqual(sorted(names), ["cp1", "cp2"])
        dom.write(*P_TOP)
        scratch = os.path.join(self.dir, "scratch.qcow2")
        pull = self.backup_xml("pull.xml", "pull", "<scratch file='%s'/>" % scratch,
                               incremental="cp2")
        dom.virsh("backup-begin", dom.name, pull)
        dom.assert_matches_dumpxml()
        self.assertEqual([f["driver"] for f in self.proxy_model(dom).get("filters", [])],
                         ["copy-before-write"])
        dom.virsh("domjobabort", dom.name)
        self.wait_backup_over(dom)
        dom.assert_chain([top, base])
        self.assertNotIn("filters", self.proxy_model(dom))
        dom.destroy_and_check()

    def test_scsi_attach_detach(self):
        """A disk on a virtio-scsi controller, attached and detached live
        (SCSI unplug needs no guest): after DEVICE_DELETED and libvirt's
        blockdev-del, qmproxy no longer has the disk, as QEMU and libvirt
        no longer do."""
        base, top = self.images()
        dom = self.domain(top, devices="\n    <controller type='scsi' index='0' "
                                      "model='virtio-scsi'/>")
        base2 = os.path.join(self.dir, "base2.qcow2")
        top2 = os.path.join(self.dir, "top2.qcow2")
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", base2, "32M"])
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", base2, "-F", "qcow2", top2])
        disk = self.write_file("sda.xml", """<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source file='%s'/>
  <target dev='sda' bus='scsi'/>
</disk>
""" % top2)
        dom.virsh("attach-device", dom.name, disk, "--live")
        dom.assert_matches_dumpxml("sda")
        dom.assert_matches_dumpxml("vda")
        self.assertEqual([f for f, _ in self.disk_summary_of(dom, "sda")["chain"]],
                         [top2, base2])
        # QEMU names a device that has an id by its id (a virtio disk's
        # block device is its unnamed virtio-backend's: a path)
        qdev = dom.libvirt_disk("sda").find("alias").get("name")
        self.assertEqual([l["file"] for l in self.proxy_model(dom, qdev)["chain"]],
                         [top2, base2])
        dom.virsh("detach-device", dom.name, disk, "--live")
        wait_for(lambda: "sda" not in dom.blklist(), timeout=30,
                 what="libvirt to drop sda")
        files = lambda d: [l["file"] for l in d["chain"]]
        self.assertEqual([d for d in dom.qmp_ok("qmproxy-query-chain")
                          if d.get("qdev") == qdev or top2 in files(d)], [])
        self.assertEqual([b for b in dom.qmp_ok("query-block") if b.get("qdev") == qdev], [])
        dom.assert_chain([top, base])
        log = self.traffic(dom)
        self.assertTrue(client_commands(log, "device_del"))
        self.assertTrue(client_commands(log, "blockdev-del"))
        self.assertIn("DEVICE_DELETED", {t["msg"].get("event") for t in log
                                         if t["kind"] == "event"})
        dom.destroy_and_check()

    @staticmethod
    def block_files_with_formats(dom):
        """QEMU's own query-block chain of the guest disk, with formats
        (filters included, as QEMU lists them)."""
        disk = [b for b in dom.qmp_ok("query-block") if b.get("qdev") == QDEV][0]
        out, image = [], disk["inserted"]["image"]
        while image:
            out.append((image["filename"], image["format"]))
            image = image.get("backing-image")
        return out

    def test_attach_then_snapshot_two_disks(self):
        """A disk attached with its own chain, then a disk-only snapshot of
        both disks at once (one transaction): qmproxy's chains are
        libvirt's after each.  (Detaching needs a guest that answers the
        ACPI unplug request; these domains run none.)"""
        base, top = self.images()
        dom = self.domain(top, acpi=True)
        base2 = os.path.join(self.dir, "base2.qcow2")
        top2 = os.path.join(self.dir, "top2.qcow2")
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", base2, "32M"])
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", base2, "-F", "qcow2", top2])
        dom.virsh("attach-disk", dom.name, top2, "vdb", "--driver", "qemu",
                  "--subdriver", "qcow2", "--live")
        dom.assert_matches_dumpxml("vda")
        dom.assert_matches_dumpxml("vdb")
        self.assertEqual(len(self.disk_summary_of(dom, "vdb")["chain"]), 2)
        s1 = os.path.join(self.dir, "s1.qcow2")
        s2 = os.path.join(self.dir, "s2.qcow2")
        dom.virsh("snapshot-create-as", dom.name, "--disk-only", "--no-metadata",
                  "--diskspec", "vda,file=%s" % s1, "--diskspec", "vdb,file=%s" % s2)
        dom.assert_matches_dumpxml("vda")
        dom.assert_matches_dumpxml("vdb")
        self.assertEqual([f for f, _ in self.disk_summary_of(dom, "vdb")["chain"]],
                         [s2, top2, base2])
        dom.assert_chain([s1, top, base])
        dom.destroy_and_check()

    @staticmethod
    def disk_summary_of(dom, dev):
        return dom.disk_summary(dom.libvirt_disk(dev))

    def three_layers(self):
        """base <- mid <- top, base holding P_BASE."""
        base, _ = self.images(chain=False)
        mid = os.path.join(self.dir, "mid.qcow2")
        top = os.path.join(self.dir, "top.qcow2")
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", mid])
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", mid, "-F", "qcow2", top])
        return base, mid, top

    def test_blockcommit_intermediate(self):
        base, mid, top = self.three_layers()
        dom = self.domain(top)
        dom.assert_chain([top, mid, base])
        dom.virsh("blockcommit", dom.name, "vda", "--top", mid, "--base", base,
                  "--wait", "--verbose")
        dom.assert_chain([top, base])
        self.assertTrue(client_commands(self.traffic(dom), "block-commit"))
        dom.destroy_and_check()

    def test_blockpull_with_base(self):
        base, mid, top = self.three_layers()
        dom = self.domain(top)
        dom.virsh("blockpull", dom.name, "vda", "--base", base, "--wait", "--verbose")
        dom.assert_chain([top, base])
        self.assertTrue(client_commands(self.traffic(dom), "block-stream"))
        dom.destroy_and_check()

    def test_blockcopy_reuse_external_onto_a_chain(self):
        """The copy's destination made beforehand, on the same base: while
        it mirrors and after the pivot, qmproxy's chain is libvirt's."""
        base, top = self.images()
        dom = self.domain(top)
        dest = os.path.join(self.dir, "dest.qcow2")
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", dest])
        out = dom.virsh("blockcopy", dom.name, "vda", dest, "--shallow",
                        "--reuse-external", "--transient-job", "--wait",
                        "--verbose").stdout
        self.assertIn("Now in mirroring phase", out)
        dom.assert_matches_dumpxml()
        dom.virsh("blockjob", dom.name, "vda", "--pivot")
        dom.assert_chain([dest, base])
        dom.destroy_and_check()

    def test_blockresize(self):
        """libvirt resizes by node-name; the size is right at once."""
        base, top = self.images()
        dom = self.domain(top)
        dom.virsh("blockresize", dom.name, "vda", "128M")
        model = [d for d in dom.qmp_ok("qmproxy-query-chain")
                 if d.get("qdev") == QDEV][0]
        self.assertEqual(model["chain"][0]["virtual-size"], 128 * MiB)
        self.assertEqual(model["chain"][1]["virtual-size"], 64 * MiB)
        info = dom.virsh("domblkinfo", dom.name, "vda").stdout
        self.assertRegex(info, r"Capacity:\s+%d" % (128 * MiB))
        dom.assert_chain([top, base])
        dom.destroy_and_check()

    def test_save_and_restore(self):
        base, top = self.images()
        dom = self.domain(top)
        dom.write(*P_TOP)
        first_pid = dom.qemu_pid
        first_proxy = dom.proxies()
        saved = os.path.join(self.dir, "saved.img")
        # A healthy save takes a second or two.  It hangs while anyone but
        # QEMU keeps the descriptor libvirt passed with getfd (the write end
        # of the pipe to libvirt_iohelper, which waits for EOF): qmproxy
        # must not keep a duplicate of it once QEMU has consumed it.
        dom.virsh("save", dom.name, saved, timeout=60)
        # the state went into the file through the fd qmproxy passed on
        with open(saved, "rb") as f:
            self.assertEqual(f.read(16), b"LibvirtQemudSave")
        self.assertGreater(os.path.getsize(saved), 64 * 1024)
        self.assertNotIn(dom.name, dom.virsh("list", "--name").stdout.split())
        wait_for(lambda: not alive(first_pid), what="the saved QEMU to end")
        wait_for(lambda: not any(alive(p) for p in first_proxy), what="its qmproxy to end")

        log = self.traffic(dom)
        getfd = client_commands(log, "getfd")
        self.assertTrue(getfd, "libvirt sent no getfd")
        # QEMU answers getfd without an fd with "No file descriptor
        # supplied via SCM_RIGHTS": success means the fd arrived
        reply = reply_to(log, getfd[-1])
        self.assertEqual(reply["msg"].get("return"), {}, reply)
        migrate = client_commands(log, "migrate")
        self.assertTrue(migrate)
        self.assertEqual(migrate[-1]["msg"]["arguments"]["uri"],
                         "fd:" + getfd[-1]["msg"]["arguments"]["fdname"])

        dom.virsh("restore", saved)
        self.assertEqual(dom.state(), "running")
        dom.attach()
        self.assertNotEqual(dom.qemu_pid, first_pid)
        self.assertEqual(dom.qmp_ok("query-status")["status"], "running")
        dom.assert_chain([top, base])
        dom.write(*P_AFTER)
        self.assert_holds(top, P_BASE, P_TOP, P_AFTER)
        self.assertTrue(client_commands(self.traffic(dom), "migrate-incoming"))
        dom.destroy_and_check()

    def test_libvirtd_restart(self):
        if not self.libvirt.owned_pid:
            self.skipTest("libvirtd was not started by this test: "
                          "not restarting someone else's daemon")
        base, top = self.images()
        dom = self.domain(top)
        proxies = dom.proxies()
        before = len(self.traffic(dom))
        self.libvirt.restart()
        # the domain lived on; the new libvirtd found it and reconnected
        wait_for(lambda: dom.name in dom.virsh("list", "--name").stdout.split(),
                 what="libvirt to list the domain again")
        self.assertTrue(alive(dom.qemu_pid))
        self.assertEqual(dom.proxies(), proxies, "the same qmproxy serves the new libvirtd")
        self.assertEqual(dom.qmp_ok("query-status")["status"], "running")
        self.assertEqual(dom.state(), "running")
        dom.write(*P_TOP)
        self.assert_holds(top, P_TOP)
        log = self.traffic(dom)[before:]
        caps = client_commands(log, "qmp_capabilities")
        self.assertTrue(caps, "the new libvirtd did not negotiate through qmproxy")
        self.assertGreater(caps[0]["client"], 1)
        self.assertEqual(reply_to(log, caps[0])["msg"], {"return": {}, "id": "libvirt-1"})
        dom.destroy_and_check()


class WrapperAlone(unittest.TestCase):
    """The wrapper without libvirt: what it does with the command line and
    the inherited socket, and what happens when QEMU does not start."""

    def setUp(self):
        if not os.access(QEMU_BIN, os.X_OK):
            self.skipTest("QEMU (%s) is not installed" % QEMU_BIN)
        self.dir = tempfile.mkdtemp(prefix="qmproxy-wrapper-", dir=os.environ.get("QMPTEST_TMP"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.conf = os.path.join(self.dir, "wrapper.conf")
        self.procs = []
        self.addCleanup(self._kill_all)

    def _kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in qmproxy_pids(os.path.join(self.dir, PRIVATE_SOCKET)):
            os.kill(pid, signal.SIGKILL)

    def configure(self, **values):
        with open(self.conf, "w") as f:
            for key, value in values.items():
                f.write("%s=%s\n" % (key, value))

    def fake_qemu(self, status=0):
        """A stand-in QEMU that records its arguments and its pid."""
        path = os.path.join(self.dir, "fake-qemu")
        with open(path, "w") as f:
            f.write('#!/bin/sh\necho $$ >"%s/fake.pid"\n'
                    'for a in "$@"; do printf "%%s\\n" "$a"; done >"%s/fake.args"\n'
                    'exit %d\n' % (self.dir, self.dir, status))
        os.chmod(path, 0o755)
        return path

    def wrapper(self, args, pass_fds=()):
        """Run the wrapper as libvirt would (a bare environment, HOME the
        domain's folder); its output, and so qmproxy's, goes to a file."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.dir,
               "QMPROXY_WRAPPER_CONF": self.conf}
        self.output = os.path.join(self.dir, "wrapper.out")
        with open(self.output, "ab") as out:
            p = subprocess.Popen([WRAPPER] + args, env=env, pass_fds=pass_fds,
                                 stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def read_output(self):
        with open(self.output, errors="replace") as f:
            return f.read()

    def check_sanitizers(self):
        """Once qmproxy has ended: nothing from ASan/UBSan in its output."""
        text = self.read_output()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError("qmproxy sanitizer report:\n" + text[-6000:])

    def listening_socket(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(self.dir, "monitor.sock")
        s.bind(path)
        s.listen(8)
        self.addCleanup(s.close)
        return s, path

    def test_probing_passes_through_untouched(self):
        self.configure(QEMU=self.fake_qemu(), QMPROXY="/nonexistent/qmproxy")
        args = ["-S", "-no-user-config", "-nodefaults", "-nographic", "-machine",
                "none,accel=tcg", "-qmp", "unix:/x/qmp.monitor,server=on,wait=off",
                "-pidfile", "/x/qmp.pid", "-daemonize"]
        p = self.wrapper(args)
        self.assertEqual(p.wait(30), 0, self.read_output())
        with open(os.path.join(self.dir, "fake.args")) as f:
            self.assertEqual(f.read().splitlines(), args)
        with open(os.path.join(self.dir, "fake.pid")) as f:
            self.assertEqual(int(f.read()), p.pid, "QEMU was not exec'd")

    def test_monitor_fd_is_served_by_qmproxy(self):
        traffic_log = os.path.join(self.dir, "traffic")
        self.configure(QEMU=shlex.quote(QEMU_BIN), QMPROXY=shlex.quote(os.path.abspath(QMPROXY)),
                       QMPROXY_TRAFFIC_LOG='%s/"$DOMAIN_NAME-$DOMAIN_UUID".jsonl' % traffic_log,
                       QMPROXY_ARGS="(-v)")
        lsock, path = self.listening_socket()
        # another descriptor for QEMU alone, as libvirt passes tap devices
        # or a restore stream: qmproxy must not keep it
        other_r, other_w = os.pipe()
        self.addCleanup(os.close, other_r)
        self.addCleanup(os.close, other_w)
        uuid = "c7a5fdbd-cdaf-9455-926a-d65c16db1809"
        chardev = "socket,id=charmonitor,fd=%d,server=on,wait=off" % lsock.fileno()
        p = self.wrapper(["-name", "guest=a,,b,debug-threads=on", "-uuid", uuid, "-S",
                          "-M", "none", "-display", "none", "-nodefaults",
                          "-chardev", chardev,
                          "-mon", "chardev=charmonitor,id=monitor,mode=control"],
                         pass_fds=[lsock.fileno(), other_w])
        # like libvirt: connect at once, before QEMU or qmproxy are up
        client = QMPClient(path)
        self.addCleanup(client.close)
        self.assertIn(b'"QMP"', client.greeting)
        client.negotiate()
        self.assertEqual(client.ok("query-status")["status"], "prelaunch")

        private = os.path.join(self.dir, PRIVATE_SOCKET)
        exe = os.readlink("/proc/%d/exe" % p.pid)
        self.assertTrue(runs_qemu(exe), "the wrapper did not exec QEMU: %s runs" % exe)
        # QEMU's command line as libvirt wrote it, its descriptor the
        # private socket, listening
        self.assertIn(chardev, proc_cmdline(p.pid))
        self.assertEqual(unix_socket_of(p.pid, lsock.fileno()), (private, True))
        proxies = qmproxy_pids(private)
        self.assertEqual(len(proxies), 1)
        with open("/proc/%d/stat" % proxies[0]) as f:
            self.assertEqual(int(f.read().rsplit(")", 1)[1].split()[1]), p.pid,
                             "qmproxy is not QEMU's child")
        # only qmproxy accepts on libvirt's socket: QEMU does not hold it;
        # and qmproxy holds neither QEMU's socket nor what was QEMU's alone
        qemu_held = held_fds(p.pid)
        qemu_fds, proxy_fds = set(qemu_held.values()), set(held_fds(proxies[0]).values())
        libvirt_sock = "socket:[%d]" % os.fstat(lsock.fileno()).st_ino
        other = "pipe:[%d]" % os.fstat(other_w).st_ino
        self.assertNotIn(libvirt_sock, qemu_fds)
        self.assertIn(libvirt_sock, proxy_fds)
        self.assertIn(other, qemu_fds)
        self.assertNotIn(other, proxy_fds)
        self.assertNotIn(qemu_held[lsock.fileno()], proxy_fds)
        # the configuration saw the domain's name (commas undoubled) and uuid
        # (the log is written by a thread of its own: wait for the line)
        log_path = os.path.join(traffic_log, "a,b-%s.jsonl" % uuid)
        wait_for(lambda: os.path.exists(log_path)
                 and client_commands(traffic(log_path), "query-status"),
                 what="query-status in the traffic log")

        # QEMU ends: qmproxy delivers the last messages and ends too
        client.send({"execute": "quit"})
        self.assertEqual(client.read_reply(), {"return": {}})
        self.assertTrue(client.at_eof(10))
        p.wait(15)
        wait_for(lambda: not qmproxy_pids(private), timeout=15, what="qmproxy to end")
        self.check_sanitizers()

    def test_qmproxy_is_connected_before_qemu_runs(self):
        """The private socket exists, listening, before QEMU starts, and
        qmproxy's connection waits in it: nothing polls for QEMU's socket.
        The stand-in QEMU waits for a go file, then execs the real QEMU."""
        go = os.path.join(self.dir, "go")
        late = os.path.join(self.dir, "late-qemu")
        with open(late, "w") as f:
            f.write('#!/bin/bash\n'
                    'for ((i = 0; i < 3000; i++)); do [ -e %s ] && break; sleep 0.01; done\n'
                    'exec %s "$@"\n' % (shlex.quote(go), shlex.quote(QEMU_BIN)))
        os.chmod(late, 0o755)
        self.configure(QEMU=shlex.quote(late), QMPROXY=shlex.quote(os.path.abspath(QMPROXY)),
                       QMPROXY_ARGS="(-v)")
        lsock, path = self.listening_socket()
        p = self.wrapper(["-name", "guest=late", "-S", "-M", "none", "-display", "none",
                          "-nodefaults", "-chardev",
                          "socket,id=charmonitor,fd=%d,server=on,wait=off" % lsock.fileno(),
                          "-mon", "chardev=charmonitor,id=monitor,mode=control"],
                         pass_fds=[lsock.fileno()])
        private = os.path.join(self.dir, PRIVATE_SOCKET)
        wait_for(lambda: "connected to QEMU at unix:%s" % private in self.read_output(),
                 what="qmproxy to connect")
        # connected, and QEMU has not even started (the process that
        # becomes QEMU gets the socket as its descriptor a moment after
        # the fork, hence the wait)
        wait_for(lambda: unix_socket_of(p.pid, lsock.fileno()) == (private, True),
                 what="the private socket as the monitor descriptor")
        self.assertFalse(os.path.exists(go))
        self.assertNotEqual(os.path.realpath(os.readlink("/proc/%d/exe" % p.pid)),
                            os.path.realpath(QEMU_BIN))
        client = QMPClient(path, read_greeting=False)
        self.addCleanup(client.close)
        with open(go, "w"):
            pass
        self.assertIn(b'"QMP"', client.read_line())
        client.negotiate()
        self.assertEqual(client.ok("query-status")["status"], "prelaunch")
        self.assertNotIn("could not reach", self.read_output())
        client.send({"execute": "quit"})
        self.assertEqual(client.read_reply(), {"return": {}})
        p.wait(15)
        wait_for(lambda: not qmproxy_pids(private), timeout=15, what="qmproxy to end")
        self.check_sanitizers()

    def test_qmproxy_ends_when_qemu_does_not_start(self):
        self.configure(QEMU=self.fake_qemu(status=1),
                       QMPROXY=shlex.quote(os.path.abspath(QMPROXY)),
                       QMPROXY_CONNECT_TIMEOUT=60)
        lsock, _ = self.listening_socket()
        p = self.wrapper(["-name", "guest=f", "-chardev",
                          "socket,id=charmonitor,fd=%d,server=on,wait=off" % lsock.fileno()],
                         pass_fds=[lsock.fileno()])
        self.assertEqual(p.wait(30), 1)
        private = os.path.join(self.dir, PRIVATE_SOCKET)
        # only QEMU held the private socket: its end resets qmproxy's
        # waiting connection, and qmproxy does not wait its 60 s
        wait_for(lambda: not qmproxy_pids(private), timeout=10,
                 what="qmproxy to end when QEMU failed")
        self.check_sanitizers()

    def test_qmproxy_ends_when_qemu_cannot_be_executed(self):
        self.configure(QEMU=shlex.quote(os.path.join(self.dir, "no-such-qemu")),
                       QMPROXY=shlex.quote(os.path.abspath(QMPROXY)))
        lsock, _ = self.listening_socket()
        p = self.wrapper(["-name", "guest=f", "-chardev",
                          "socket,id=charmonitor,fd=%d,server=on,wait=off" % lsock.fileno()],
                         pass_fds=[lsock.fileno()])
        self.assertNotEqual(p.wait(30), 0)
        self.assertIn("cannot execute", self.read_output())
        wait_for(lambda: not qmproxy_pids(os.path.join(self.dir, PRIVATE_SOCKET)),
                 timeout=10, what="qmproxy to end when QEMU could not be executed")
        self.check_sanitizers()

    def test_refuses_a_monitor_it_cannot_serve(self):
        self.configure(QEMU=self.fake_qemu(), QMPROXY=shlex.quote(os.path.abspath(QMPROXY)))
        p = self.wrapper(["-chardev", "socket,id=charmonitor,path=/x/monitor.sock,"
                          "server=on,wait=off"])
        self.assertEqual(p.wait(30), 1)
        self.assertIn("unsupported monitor chardev", self.read_output())
        self.assertFalse(os.path.exists(os.path.join(self.dir, "fake.args")),
                         "QEMU ran without qmproxy")


if __name__ == "__main__":
    unittest.main()
