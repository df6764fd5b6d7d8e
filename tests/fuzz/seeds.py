#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora from what the project already
records, so no corpus is committed:

- tests/data/qemu-7.2-transcript.qmp: what QEMU 7.2 writes (replies,
  events, the greeting), for the JSON and line readers and the chain model;
- tests/integration/test_core.py: CONVERSATION (well-formed commands, ids
  of every JSON type) and MALFORMED (input QEMU refuses), for the client
  side;
- policy/examples/*.xml and the snapshot XML of the docs and tests.

    seeds.py OUTDIR      writes OUTDIR/TARGET/seed-*

Each target's input format is described at the top of its fuzz_*.c; the
prefixes written here (flag bytes, chunk seeds, script letters) follow it.
"""
import ast
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_SEED = 4096  # libFuzzer's default -max_len; larger seeds raise it


def transcript_lines():
    with open(os.path.join(ROOT, "tests/data/qemu-7.2-transcript.qmp"), "rb") as f:
        return [l for l in f.read().split(b"\r\n") if l]


def test_core_lists():
    with open(os.path.join(ROOT, "tests/integration/test_core.py")) as f:
        tree = ast.parse(f.read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", None)
            if name in ("CONVERSATION", "MALFORMED"):
                found[name] = ast.literal_eval(node.value)
    return found.get("CONVERSATION", []), found.get("MALFORMED", [])


class Corpus:
    def __init__(self, outdir, target, max_seed=MAX_SEED):
        self.dir = os.path.join(outdir, target)
        os.makedirs(self.dir, exist_ok=True)
        self.n = 0
        self.max_seed = max_seed

    def add(self, data):
        if isinstance(data, str):
            data = data.encode()
        if len(data) > self.max_seed:
            return
        with open(os.path.join(self.dir, "seed-%04d" % self.n), "wb") as f:
            f.write(data)
        self.n += 1


def small(lines, limit=MAX_SEED - 64):
    return [l for l in lines if len(l) <= limit]


def groups(lines, size=MAX_SEED - 64):
    """Consecutive lines packed into chunks of about size bytes."""
    out, cur = [], b""
    for l in small(lines):
        if cur and len(cur) + len(l) + 2 > size:
            out.append(cur)
            cur = b""
        cur += l + b"\r\n"
    if cur:
        out.append(cur)
    return out


SNAPSHOT_XML = [
    """<domainsnapshot>
  <name>before-upgrade</name>
  <disks>
    <disk name='vda' snapshot='external'>
      <source file='/src/vda-snap.qcow2'/>
      <mirror file='/dest/vda-snap.qcow2'/>
      <driver type='qcow2'/>
    </disk>
  </disks>
</domainsnapshot>""",
    "<domainsnapshot><disks><disk name='disk1'><source file='/s/t1.qcow2'/>"
    "<mirror file='/d/t1.qcow2'/></disk><disk name='disk2' snapshot='no'/>"
    "</disks></domainsnapshot>",
    "<?xml version='1.0' encoding='UTF-8'?><domainsnapshot><name>n</name>"
    "<disks><disk name='/tmp/x/base.qcow2'><source file='/tmp/s.qcow2'/>"
    "</disk></disks></domainsnapshot>",
    "<domainsnapshot><disks>\n  <disk name='disk0'>\n    <source file='/x'>\n</disks>",
    "<domainsnapshot><disks><disk><source file='/x'/></disk></disks></domainsnapshot>",
    "<snapshot/>",
    "<domainsnapshot><disks><disk name='d' snapshot='internal'><source file='/x'/>"
    "</disk></disks></domainsnapshot>",
    "<domainsnapshot><disks><disk name='d'><source file='/x'/><mirror/></disk>"
    "</disks></domainsnapshot>",
    "<domainsnapshot><disks><extra/></disks></domainsnapshot>",
    "<domainsnapshot><name>a<![CDATA[b]]>&amp;</name><disks/></domainsnapshot>",
]

STATE = {
    "format": "qmproxy-state", "version": 1, "saved": "2026-11-29T00:00:00.000000Z",
    "state": {
        "chain": {
            "disks": [{"disk": "disk0", "device": "disk0", "qdev": "", "node-name": "fmt0",
                       "chain": [{"file": "/tmp/x/snap.qcow2", "format": "qcow2",
                                  "node-name": "snap1", "read-only": False,
                                  "virtual-size": 67108864},
                                 {"file": "/tmp/x/base.qcow2", "format": "qcow2",
                                  "node-name": "fmt0", "read-only": True}],
                       "mirror": {"file": "/d/snap.qcow2", "format": "qcow2", "job": "disk0",
                                  "type": "copy", "status": "ready", "ready": "yes"}},
                      {"disk": "gone", "chain": [{"file": "/vm/gone.qcow2"}]}],
            "jobs": [{"id": "disk0", "type": "mirror", "status": "ready", "offset": 0,
                      "len": 0, "ready": True, "started-by": 1,
                      "started-at": "2026-11-29T00:00:00.000000Z", "operation": "op1",
                      "disk": "disk0", "target-file": "/d/snap.qcow2",
                      "target-format": "qcow2", "mode": "existing", "sync": "top",
                      "active-commit": False, "pivot-requested": False,
                      "cancel-requested": False, "manual-finalize": True}],
            "blockdev-nodes": {"n1": {"file": "/vm/n1.qcow2", "format": "qcow2"}},
        },
        "operations": [
            {"name": "op1", "type": "snapshot-mirror", "state": "mirroring",
             "disks": [{"disk": "disk0", "state": "mirroring",
                        "snapshot-file": "/tmp/x/snap.qcow2", "mirror-file": "/d/snap.qcow2",
                        "format": "qcow2", "job": "disk0", "offset": 1, "len": 2,
                        "job-status": "running", "mode": "existing", "sync": "top",
                        "speed": 0, "old-top-file": "/tmp/x/base.qcow2",
                        "old-top-node": "fmt0", "new-top-node": "snap1",
                        "own-job": True, "manual-finalize": True, "ready": False}],
             "started-by": 1, "started-at": "2026-11-29T00:00:00.000000Z", "seq": 7},
            {"name": "r", "type": "auto-mirror", "state": "failed", "rule": "follow",
             "error": "x", "disks": []},
        ],
    },
}

POLICY_CHECKS = [
    # listener byte, command index byte (see fuzz_policy_check.c), arguments
    (0, 0, {"actions": [{"type": "blockdev-snapshot-sync",
                         "data": {"device": "d", "snapshot-file": "%D/allowed/s.qcow2"}},
                        {"type": "drive-mirror",
                         "data": {"device": "d", "target": "%D/allowed/out/x", "sync": "top"}}]}),
    (0, 1, {"driver": "qcow2", "node-name": "n",
            "file": {"driver": "file", "filename": "%D/allowed/image.qcow2"}}),
    (0, 1, {"driver": "nbd", "node-name": "n",
            "server": {"type": "unix", "path": "%D/allowed/nbd.sock"}, "export": "e"}),
    (0, 1, {"driver": "https", "url": "https://example.org/x.img", "node-name": "h"}),
    (0, 2, {"job-id": "j", "options": {"driver": "file", "filename": "%D/allowed/up/outside/x", "size": 0}}),
    (0, 3, {"device": "d", "snapshot-file": "%D/allowed/sub/../image.qcow2"}),
    (0, 4, {"device": "d", "target": "nbd+unix:///e?socket=%D/allowed/nbd.sock", "sync": "full"}),
    (0, 4, {"device": "d", "target": "nbd://localhost:10809/e", "sync": "full"}),
    (0, 4, {"device": "d", "target": "json:{\"driver\": \"ssh\", \"path\": \"/x\"}", "sync": "full"}),
    (0, 5, {"device": "d", "target": "%D/allowed/dangling", "sync": "full"}),
    (0, 6, {"device": "d", "filename": "%D/allowed/loop/x"}),
    (0, 10, {"addr": {"type": "inet", "data": {"host": "localhost", "port": "10809"}}}),
    (0, 12, {"uri": "exec:cat > /tmp/x"}),
    (0, 12, {"uri": "unix:%D/allowed/mig.sock"}),
    (0, 12, {"uri": "file:%D/allowed/etc/passwd"}),
    (1, 14, {"paging": False, "protocol": "file:%D/outside/core"}),
    (1, 15, {"filename": "%D/allowed/sub-up/shot.ppm"}),
    (0, 18, {"id": "c", "backend": {"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": "%D/allowed/c.sock"}}, "server": True}}}),
    (0, 20, {"qom-type": "memory-backend-file", "id": "m", "mem-path": "%D/allowed/m", "size": 4096}),
    (0, 21, {"name": "s", "disks": [{"disk": "d", "snapshot-file": "%D/allowed/s.qcow2", "mirror-file": "%D/allowed/m.qcow2"}]}),
    (2, 26, {}),
    (3, 27, {}),
]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: seeds.py OUTDIR")
    out = sys.argv[1]
    lines = transcript_lines()
    conversation, malformed = test_core_lists()
    client = conversation + malformed

    c = Corpus(out, "fuzz_jsonstream")
    for flags in (b"\x00", b"\x01"):
        for text in client:
            c.add(flags + b"\x12\x34\x56\x78" + text + b"\n")
        for chunk in groups(small(lines, 700), 700):
            c.add(flags + b"\x9a\xbc\xde\xf0" + chunk)
    c.add(b"\x03\x01\x02\x03\x04" + b'{"execute": "query-status", "arguments": {"a": "long string"}}')

    c = Corpus(out, "fuzz_jsonstream_diff")
    for text in conversation + small(lines, 1024):
        c.add(text)

    c = Corpus(out, "fuzz_qmp")
    for text in client:
        c.add(b"\x01" + text)
        c.add(b"\x00" + text)

    c = Corpus(out, "fuzz_linestream")
    for chunk in groups(lines, 1024):
        c.add(b"\x11\x22\x33\x44" + chunk)
    c.add(b"\x00\x00\x00\x01" + b'{"return": {}, "id": inf}\r\n{"return": {}, "id": nan}\r\n')

    c = Corpus(out, "fuzz_policy_load")
    for path in sorted(glob.glob(os.path.join(ROOT, "policy/examples/*.xml"))):
        with open(path, "rb") as f:
            c.add(f.read())
    c.add('<policy><paths><allow dir="/var/lib/vms"/><allow nbd="unix:/run/nbd.sock"/>'
          '<allow nbd="tcp:localhost:10809"/><allow protocol="https"/></paths>'
          '<mirroring><rule name="r" disks="vd*" on="connect" target="/var/lib/vms/r"'
          ' retries="3" backoff-ms="10" max-backoff-ms="99999999999"/></mirroring></policy>')
    c.add('<policy><roles><role name="full"/></roles><listeners default-role="nope">'
          '<listener name="a" role="x"/><listener name="a" role="full"/></listeners></policy>')

    c = Corpus(out, "fuzz_policy_check")
    for listener, cmd, args in POLICY_CHECKS:
        c.add(bytes([listener, cmd]) + json.dumps(args).encode())
    c.add(bytes([0, 255]) + b"block-commit\n" + b'{"device": "d", "top": "%D/allowed/x"}')

    c = Corpus(out, "fuzz_snapshot_xml")
    for doc in SNAPSHOT_XML:
        c.add(doc)

    c = Corpus(out, "fuzz_statefile")
    c.add(json.dumps(STATE, indent=1))
    c.add(json.dumps(STATE))
    bare = dict(STATE, state={"chain": {"disks": []}, "operations": []})
    c.add(json.dumps(bare))
    c.add("")
    c.add('{"format": "qmproxy-state", "version": 2, "state": {}}')

    # the chain model: its first questions answered as QEMU did (query-block,
    # query-block-jobs, query-named-block-nodes, then the graph refused),
    # then what QEMU wrote afterwards: events and replies, in order
    # (QEMU's answers about a disk are a few KB each: larger seeds)
    c = Corpus(out, "fuzz_chain", 16384)
    qblock = [l for l in lines if l.startswith(b'{"return": [{"device": "disk0"')]
    qjobs = [l for l in lines if l.startswith(b'{"return": [{"auto-finalize"')]
    qnodes = [l for l in lines if l.startswith(b'{"return": [{"iops_rd"')]
    refused = b'{"error": {"class": "GenericError", "desc": "not here"}}'
    events = [l for l in lines if b'"event"' in l[:80] or b'"event": ' in l]
    answers = [b"R" + qblock[0], b'R{"return": []}', b"R" + qnodes[0], b"R" + refused]
    c.add(b"\n".join(answers + [b"Qdisk0"]))
    for i in range(0, len(events), 6):
        c.add(b"\n".join(answers + [b"R" + e for e in events[i:i + 6]] + [b"S", b"R" + qblock[min(i // 6, len(qblock) - 1)], b"R" + qjobs[min(i // 6, len(qjobs) - 1)]]))
    for cmd in (b'Cblockdev-snapshot-sync 1{"device": "disk0", "snapshot-file": "/tmp/x/s2.qcow2", "snapshot-node-name": "s2"}',
                b'Cdrive-mirror 1{"device": "disk0", "job-id": "m", "target": "/d/x.qcow2", "sync": "top", "mode": "existing"}',
                b'Cblock-commit 1{"device": "disk0", "job-id": "c"}',
                b'Cblock-stream 1{"device": "disk0", "job-id": "st"}',
                b'Cblockdev-add 1{"node-name": "n1", "driver": "qcow2", "file": {"driver": "file", "filename": "/vm/n1.qcow2"}}',
                b'Cblockdev-snapshot 1{"node": "disk0", "overlay": "n1"}',
                b'Ctransaction 1{"actions": [{"type": "blockdev-snapshot-sync", "data": {"device": "disk0", "snapshot-file": "/t.qcow2"}}]}',
                b'Cblock-job-complete 1{"device": "m"}',
                b'Cblock-job-cancel 1{"device": "m"}'):
        c.add(b"\n".join(answers + [cmd, b"Om op1", b"Qdisk0", b"S", b"R" + qblock[-1], b"R" + qjobs[0], b"T", b"U", b"D" + json.dumps(STATE["state"]["chain"]).encode()]))

    total = sum(len(os.listdir(os.path.join(out, d))) for d in os.listdir(out))
    print("seeds: %d files in %s" % (total, out))


if __name__ == "__main__":
    main()
