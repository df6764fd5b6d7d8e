#!/usr/bin/env python3
"""A tiny QMP client for trying qmproxy by hand (or from scripts).

    contrib/qmpclient.py SOCKET 'query-status' '{"execute": "query-block"}' ...

Each argument is a command name or a whole JSON command.  It prints the
greeting, then each command and its reply, and the events that arrived on
the way, one per line.  Exits 1 if a command failed and --check was given.
"""
import argparse
import json
import socket
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("socket")
    ap.add_argument("commands", nargs="*")
    ap.add_argument("--check", action="store_true", help="exit 1 on an error reply")
    ap.add_argument("--quiet-greeting", action="store_true")
    ap.add_argument("--extras", action="store_true",
                    help="ask qmproxy for its own events (qmproxy-capabilities)")
    a = ap.parse_args()

    s = socket.socket(socket.AF_UNIX)
    s.connect(a.socket)
    f = s.makefile("rb")

    def message():
        line = f.readline()
        if not line:
            sys.exit("qmpclient: the connection closed")
        return json.loads(line)

    greeting = message()
    if not a.quiet_greeting:
        print("<- " + json.dumps(greeting))
    failed = False
    first = ["qmp_capabilities"] + (["qmproxy-capabilities"] if a.extras else [])
    for c in first + a.commands:
        cmd = json.loads(c) if c.lstrip().startswith("{") else {"execute": c}
        print("-> " + json.dumps(cmd))
        s.sendall(json.dumps(cmd).encode())
        while True:
            m = message()
            print("<- " + json.dumps(m))
            if "event" not in m:
                failed |= "error" in m
                break
    sys.exit(1 if failed and a.check else 0)


if __name__ == "__main__":
    main()
